//! Where the policy comes from, and hot reload: the source is read every interval; when its bytes
//! change the new policy is compiled and swapped in, and an invalid one is refused with a log line while
//! the last good policy stays in force.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::admin::ReasonLabels;
use crate::policyset::PolicySet;
use crate::profile::{Policy, ProfileSource};
use crate::proxy::{Active, Proxy};
use crate::{Error, Result};

/// The policy's origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicySource {
    /// `--profile`: a built-in name or an `AISecurityProfile` YAML file.
    Profile(String),
    /// The operator's bundle, `<dir>/policy.json` (the mounted ConfigMap).
    Bundle(PathBuf),
}

impl PolicySource {
    /// The file to watch, if any.
    fn path(&self) -> Option<PathBuf> {
        match self {
            PolicySource::Profile(arg) => match ProfileSource::parse(arg) {
                ProfileSource::File(p) => Some(p),
                ProfileSource::BuiltIn(_) => None,
            },
            PolicySource::Bundle(dir) => Some(dir.join(airlock_crds::bundle::BUNDLE_KEY)),
        }
    }

    /// Loads and compiles the policy. `enforce` applies to standalone profiles.
    pub fn load(&self, enforce: bool) -> Result<(PolicySet, Option<Vec<u8>>)> {
        match self {
            PolicySource::Profile(arg) => {
                let bytes = self
                    .path()
                    .map(|p| std::fs::read(&p).map_err(|source| Error::ProfileRead { path: p, source }))
                    .transpose()?;
                Ok((PolicySet::standalone(Policy::load(arg)?, enforce), bytes))
            }
            PolicySource::Bundle(dir) => {
                let path = dir.join(airlock_crds::bundle::BUNDLE_KEY);
                let bytes = std::fs::read(&path).map_err(|e| Error::Bundle {
                    path: path.clone(),
                    message: format!("cannot read it: {e} (is the airlock-policy ConfigMap mounted?)"),
                })?;
                Ok((PolicySet::from_bundle(&path, &bytes)?, Some(bytes)))
            }
        }
    }
}

/// Polls the source and swaps in changed policies until the task is dropped.
pub async fn watch(
    proxy: Arc<Proxy>,
    source: PolicySource,
    mut last: Option<Vec<u8>>,
    enforce: bool,
    interval: Duration,
) {
    let Some(path) = source.path() else {
        return;
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "policy source unreadable; keeping the current policy");
                continue;
            }
        };
        if last.as_deref() == Some(&bytes[..]) {
            continue;
        }
        let compiled = match &source {
            PolicySource::Profile(arg) => Policy::load(arg).map(|p| PolicySet::standalone(p, enforce)),
            PolicySource::Bundle(_) => PolicySet::from_bundle(&path, &bytes),
        };
        let previous = proxy.active();
        let result =
            compiled.and_then(|set| Active::new(set, Some(&previous), proxy.settings().token_dir.as_deref()));
        match result {
            Ok(active) => {
                tracing::info!(path = %path.display(), profile = %active.set.default.name, instance = %active.set.instance, "policy reloaded");
                proxy.swap(active);
                proxy
                    .metrics
                    .reloads
                    .get_or_create(&ReasonLabels { reason: "ok" })
                    .inc();
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "policy update refused; the last good policy stays in force");
                proxy
                    .metrics
                    .reloads
                    .get_or_create(&ReasonLabels { reason: "invalid" })
                    .inc();
            }
        }
        last = Some(bytes);
    }
}
