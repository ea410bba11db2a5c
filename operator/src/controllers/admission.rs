//! Keeps the admission webhook reachable and trusted: the serving certificate in its Secret (created,
//! renewed and rotated by [`crate::certs`], or left to cert-manager) and Airlock's two webhook
//! configurations (restored by [`crate::webhooks`] when someone deletes or edits them).
//!
//! The API server never sends webhook configurations to webhooks, so nothing stops an admin from
//! deleting them; this loop watches both by name and repairs them within a second or two, recording an
//! Event and `airlock_operator_webhook_configuration_repairs_total`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use tokio::sync::Notify;

use super::group::FIELD_MANAGER;
use crate::certs::{self, CertConfig, Plan};
use crate::webhooks::{self, ClientTarget, WebhookConfig};
use crate::{CertificateMode, Context, Error, Result};

/// Longest wait between two passes when nothing happens.
const IDLE_CHECK: Duration = Duration::from_secs(30);
/// Wait after a failed pass.
const RETRY: Duration = Duration::from_secs(2);

/// Runs until aborted.
pub async fn run(ctx: Arc<Context>) {
    let wake = Arc::new(Notify::new());
    let mut watches = tokio::task::JoinSet::new();
    watches.spawn(wake_on::<MutatingWebhookConfiguration>(
        Api::all(ctx.client.clone()),
        webhooks::MUTATING_CONFIGURATION.to_owned(),
        wake.clone(),
    ));
    watches.spawn(wake_on::<ValidatingWebhookConfiguration>(
        Api::all(ctx.client.clone()),
        webhooks::VALIDATING_CONFIGURATION.to_owned(),
        wake.clone(),
    ));
    watches.spawn(wake_on::<Secret>(
        Api::namespaced(ctx.client.clone(), &ctx.args.namespace),
        ctx.args.webhook_secret.clone(),
        wake.clone(),
    ));
    let cert_config = match cert_config(&ctx.args) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "certificate configuration is unusable; webhook configurations not managed");
            return;
        }
    };
    let mut installed = false;
    loop {
        let started = Instant::now();
        let wait = match reconcile(&ctx, &cert_config, installed).await {
            Ok(next) => {
                installed = true;
                next.min(IDLE_CHECK)
            }
            Err(error) => {
                ctx.metrics.reconcile_failure("webhooks", error.metric_label());
                tracing::warn!(%error, "webhook certificate/configuration pass failed; retrying");
                RETRY
            }
        };
        ctx.metrics.reconciled("webhooks", started.elapsed());
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Wakes `wake` on every event of the object called `name`.
async fn wake_on<K>(api: Api<K>, name: String, wake: Arc<Notify>)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(api, config).default_backoff().boxed();
    while let Some(event) = stream.next().await {
        if event.is_ok() {
            wake.notify_one();
        }
    }
}

/// The certificate configuration from the flags.
pub fn cert_config(args: &crate::Args) -> Result<CertConfig> {
    let mut config = CertConfig::new(&args.webhook_service, &args.namespace);
    for san in &args.cert_extra_sans {
        match san.parse::<IpAddr>() {
            Ok(ip) => config.extra_ips.push(ip),
            Err(_) if !san.trim().is_empty() => config.extra_dns.push(san.trim().to_owned()),
            Err(_) => {}
        }
    }
    let hours = i64::try_from(args.cert_validity_hours)
        .ok()
        .filter(|h| *h > 0)
        .ok_or_else(|| Error::Config("--cert-validity-hours must be a positive number of hours".into()))?;
    config.serving_validity = time::Duration::hours(hours);
    config.ca_overlap = time::Duration::seconds(i64::from(args.ca_overlap_seconds));
    if config.serving_validity > config.ca_validity {
        config.ca_validity = config.serving_validity * 4;
    }
    Ok(config)
}

/// One pass: certificates, then webhook configurations. Returns when to look again.
///
/// `installed` is false until the first pass succeeded: a configuration missing then is being
/// installed, not repaired. New certificates reach the webhook configurations *before* the Secret:
/// the new bundle trusts both the old and the new CA, so the API server already accepts the new serving
/// certificate by the time a webhook pod loads it.
async fn reconcile(ctx: &Context, cert_config: &CertConfig, installed: bool) -> Result<Duration> {
    let prepared = match ctx.args.certificates {
        CertificateMode::Operator => prepare_certificates(ctx, cert_config).await?,
        CertificateMode::External => external_certificates(ctx).await?,
    };
    let bundle = prepared
        .data
        .get(certs::CA_BUNDLE)
        .or_else(|| prepared.data.get(certs::CA_CRT))
        .map(|b| b.0.clone())
        .ok_or_else(|| {
            Error::Certificate(format!(
                "Secret {}/{} has no {} or {}{}",
                ctx.args.namespace,
                ctx.args.webhook_secret,
                certs::CA_BUNDLE,
                certs::CA_CRT,
                match ctx.args.certificates {
                    CertificateMode::External => "; is cert-manager's Certificate ready?",
                    CertificateMode::Operator => "",
                }
            ))
        })?;
    if ctx.args.manage_webhooks {
        let client = match &ctx.args.webhook_url {
            Some(url) => ClientTarget::Url(url.clone()),
            None => ClientTarget::Service {
                namespace: ctx.args.namespace.clone(),
                name: ctx.args.webhook_service.clone(),
                port: ctx.args.webhook_port,
            },
        };
        let mut config = WebhookConfig::new(client, bundle, &ctx.args.namespace);
        config.mutate_failure_policy = ctx.args.mutate_failure_policy;
        config.validate_failure_policy = ctx.args.validate_failure_policy;
        config.timeout_seconds = ctx.args.webhook_timeout_seconds;
        if let Some(role) = &ctx.args.owner_cluster_role {
            let roles: Api<ClusterRole> = Api::all(ctx.client.clone());
            let Some(owner) = roles.get_opt(role).await? else {
                // The chart installs this ClusterRole with the operator; without it Airlock is being
                // uninstalled (or was never installed properly), and a recreated configuration would
                // outlive the webhook it points at.
                tracing::warn!(cluster_role = %role, "the ClusterRole that owns Airlock's webhook configurations \
                    does not exist; not installing or repairing them (is Airlock being uninstalled?)");
                return Ok(IDLE_CHECK);
            };
            config.owner = owner_reference(&owner);
        }
        // New certificates change `caBundle` on purpose: that is an update, not a repair.
        let new_bundle = prepared.write.is_some();
        repair(
            ctx,
            &Api::all(ctx.client.clone()),
            webhooks::mutating(&config),
            installed,
            new_bundle,
        )
        .await?;
        repair(
            ctx,
            &Api::all(ctx.client.clone()),
            webhooks::validating(&config),
            installed,
            new_bundle,
        )
        .await?;
    }
    if let Some((secret, plan)) = &prepared.write {
        let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.args.namespace);
        api.patch(
            &ctx.args.webhook_secret,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(secret),
        )
        .await?;
        ctx.metrics.certificate_rotation(plan.label());
        tracing::info!(plan = plan.label(), reason = %plan_reason(plan), "webhook certificates updated");
        if let Some(event) = certificate_event(plan, cert_config.ca_overlap) {
            let reference = ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Secret".to_owned()),
                name: Some(ctx.args.webhook_secret.clone()),
                namespace: Some(ctx.args.namespace.clone()),
                ..ObjectReference::default()
            };
            if let Err(error) = ctx.recorder.publish(&event, &reference).await {
                tracing::debug!(%error, "could not record an event");
            }
        }
    }
    if let Some(dir) = &ctx.args.cert_dir {
        mirror(dir, &prepared.data).await?;
    }
    Ok(prepared.next)
}

/// Whether the only drift is the CA bundle (what a certificate change causes).
fn is_ca_bundle_change(reason: &webhooks::DriftReason) -> bool {
    matches!(
        reason,
        webhooks::DriftReason::Changed {
            field: "clientConfig.caBundle",
            ..
        }
    )
}

/// A reference to `owner` for its dependents; `None` when it has no uid (not read from the API server).
fn owner_reference(owner: &ClusterRole) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "rbac.authorization.k8s.io/v1".to_owned(),
        kind: "ClusterRole".to_owned(),
        name: owner.metadata.name.clone()?,
        uid: owner.metadata.uid.clone()?,
        block_owner_deletion: None,
        controller: None,
    })
}

/// The certificate material to use, and the Secret to write when it changed.
struct Prepared {
    data: BTreeMap<String, ByteString>,
    write: Option<(Secret, Plan)>,
    next: Duration,
}

async fn repair<C>(ctx: &Context, api: &Api<C>, desired: C, installed: bool, new_bundle: bool) -> Result<()>
where
    C: webhooks::WebhookConfiguration
        + Resource<DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let name = Resource::meta(&desired).name.clone().unwrap_or_default();
    let actual = api.get_opt(&name).await?;
    let Some(reason) = webhooks::drift(actual.as_ref(), &desired) else {
        return Ok(());
    };
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&desired),
    )
    .await?;
    if !installed {
        tracing::info!(configuration = %name, %reason, "installed Airlock's webhook configuration");
        return Ok(());
    }
    if new_bundle && is_ca_bundle_change(&reason) {
        tracing::info!(configuration = %name, "gave Airlock's webhook configuration the new CA bundle");
        return Ok(());
    }
    tracing::warn!(configuration = %name, %reason, "restored Airlock's webhook configuration");
    record_repair::<C>(
        ctx,
        &name,
        reason.label(),
        "WebhookConfigurationRestored",
        format!(
            "{name} was restored ({reason}); Airlock's admission webhooks are managed by the operator — \
             change them through the Helm values instead"
        ),
    )
    .await;
    Ok(())
}

/// Records that Airlock's cluster-scoped admission object `name` of kind `K`, changed or deleted by
/// someone else, was restored: `airlock_operator_webhook_configuration_repairs_total{reason}` and a
/// Warning Event (`event_reason`, `note`) on the object.
pub(super) async fn record_repair<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    name: &str,
    reason: &'static str,
    event_reason: &str,
    note: String,
) {
    ctx.metrics.webhook_repair(name, reason);
    let reference = ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: Some(name.to_owned()),
        ..ObjectReference::default()
    };
    let event = Event {
        type_: EventType::Warning,
        reason: event_reason.into(),
        note: Some(note),
        action: "Repair".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &reference).await {
        tracing::debug!(%error, "could not record an event");
    }
}

/// Decides (and generates) the certificates the Secret should hold.
async fn prepare_certificates(ctx: &Context, config: &CertConfig) -> Result<Prepared> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.args.namespace);
    let secret = api.get_opt(&ctx.args.webhook_secret).await?;
    let now = time::OffsetDateTime::now_utc();
    let (plan, material) = certs::plan_secret(secret.as_ref(), config, now);
    match certs::execute(&plan, material.as_ref(), config, now)? {
        Some(contents) => {
            let desired = certs::secret(
                &ctx.args.webhook_secret,
                &ctx.args.namespace,
                contents.data.clone(),
                contents.annotations,
            );
            Ok(Prepared {
                data: contents.data,
                write: Some((desired, plan)),
                // Look again soon: a rotation is followed by dropping the old CA after the overlap.
                next: Duration::from_secs(1),
            })
        }
        None => {
            let next = match &plan {
                Plan::Keep { next_check } => {
                    let seconds = (*next_check - now).whole_seconds().max(1);
                    Duration::from_secs(u64::try_from(seconds).unwrap_or(1))
                }
                _ => IDLE_CHECK,
            };
            Ok(Prepared {
                data: secret.and_then(|s| s.data).unwrap_or_default(),
                write: None,
                next,
            })
        }
    }
}

/// The Event recorded on the Secret when `plan` changed it: the security team's audit trail of every
/// certificate change. Replacing unusable material is a warning; scheduled and requested changes are not.
fn certificate_event(plan: &Plan, overlap: time::Duration) -> Option<Event> {
    let (type_, reason, note) = match plan {
        Plan::Keep { .. } => return None,
        Plan::Create {
            reason: reason @ certs::Reason::NoMaterial,
        } => (
            EventType::Normal,
            "CertificatesCreated",
            format!("new CA and serving certificate ({reason})"),
        ),
        Plan::Create { reason } => (
            EventType::Warning,
            "CertificatesReplaced",
            format!("new CA and serving certificate without an overlap: {reason}"),
        ),
        Plan::RenewServing { reason } => (
            EventType::Normal,
            "ServingCertificateRenewed",
            format!("new serving certificate from the same CA: {reason}"),
        ),
        Plan::RotateCa { reason } => (
            EventType::Normal,
            "CARotated",
            format!(
                "new CA and serving certificate: {reason}; the old CA stays trusted for {} s",
                overlap.whole_seconds()
            ),
        ),
        Plan::DropOldCa => (
            EventType::Normal,
            "OldCARemoved",
            "the CA overlap ended; caBundle trusts the current CA alone".to_owned(),
        ),
        Plan::RepairBundle => (
            EventType::Warning,
            "CABundleRepaired",
            "the CA bundle lacked the current CA or held unreadable blocks; rewritten".to_owned(),
        ),
    };
    Some(Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Certificates".into(),
        secondary: None,
    })
}

fn plan_reason(plan: &Plan) -> String {
    match plan {
        Plan::Create { reason } | Plan::RenewServing { reason } | Plan::RotateCa { reason } => {
            reason.to_string()
        }
        Plan::DropOldCa => "the CA overlap ended".into(),
        Plan::RepairBundle => "the CA bundle was incomplete".into(),
        Plan::Keep { .. } => "nothing to do".into(),
    }
}

/// The certificates cert-manager (or another issuer) wrote into the Secret.
async fn external_certificates(ctx: &Context) -> Result<Prepared> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.args.namespace);
    let secret = api.get_opt(&ctx.args.webhook_secret).await?;
    Ok(Prepared {
        data: secret.and_then(|s| s.data).unwrap_or_default(),
        write: None,
        next: IDLE_CHECK,
    })
}

/// Writes `tls.crt` and `tls.key` to `dir` when they differ (development: a webhook outside the cluster).
/// Each file is replaced atomically; the webhook only swaps its certificate once the pair matches.
async fn mirror(dir: &Path, data: &BTreeMap<String, ByteString>) -> Result<()> {
    for key in [certs::TLS_KEY, certs::TLS_CRT] {
        let Some(bytes) = data.get(key) else { continue };
        let path = dir.join(key);
        if tokio::fs::read(&path).await.ok().as_deref() == Some(&bytes.0[..]) {
            continue;
        }
        let tmp = dir.join(format!(".{key}.tmp"));
        let io = |source| Error::Serve {
            what: "certificate files",
            source,
        };
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
        tokio::fs::write(&tmp, &bytes.0).await.map_err(io)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn args(flags: &[&str]) -> crate::Args {
        crate::Args::try_parse_from(std::iter::once("airlock-operator").chain(flags.iter().copied()))
            .expect("flags parse")
    }

    #[test]
    fn the_certificate_flags_reach_the_certificate_configuration() {
        let config = cert_config(&args(&[
            "--cert-validity-hours",
            "24",
            "--ca-overlap-seconds",
            "45",
            "--cert-extra-san",
            "127.0.0.1,localhost",
        ]))
        .expect("usable configuration");
        assert_eq!(config.serving_validity, time::Duration::hours(24));
        assert_eq!(config.ca_overlap, time::Duration::seconds(45));
        assert_eq!(config.extra_ips, [IpAddr::from([127, 0, 0, 1])]);
        assert_eq!(config.extra_dns, ["localhost"]);

        let defaults = cert_config(&args(&[])).expect("usable defaults");
        assert_eq!(defaults.ca_overlap, CertConfig::DEFAULT_CA_OVERLAP);
    }

    #[test]
    fn every_certificate_change_is_recorded_and_only_replacements_warn() {
        let overlap = time::Duration::minutes(10);
        let event = |plan: Plan| certificate_event(&plan, overlap);
        assert!(
            event(Plan::Keep {
                next_check: time::OffsetDateTime::UNIX_EPOCH
            })
            .is_none()
        );

        let rotated = event(Plan::RotateCa {
            reason: certs::Reason::Requested,
        })
        .expect("an event");
        assert_eq!(rotated.reason, "CARotated");
        assert_eq!(rotated.type_, EventType::Normal);
        let note = rotated.note.expect("a note");
        assert!(
            note.contains("airlock.dev/rotate-ca") && note.contains("600 s"),
            "{note}"
        );

        let replaced = event(Plan::Create {
            reason: certs::Reason::CaKeyMismatch,
        })
        .expect("an event");
        assert_eq!(
            (replaced.type_, replaced.reason.as_str()),
            (EventType::Warning, "CertificatesReplaced")
        );
        let first = event(Plan::Create {
            reason: certs::Reason::NoMaterial,
        })
        .expect("an event");
        assert_eq!(
            (first.type_, first.reason.as_str()),
            (EventType::Normal, "CertificatesCreated")
        );
        assert_eq!(event(Plan::DropOldCa).expect("an event").reason, "OldCARemoved");
    }

    #[test]
    fn a_new_ca_bundle_is_an_update_and_any_other_drift_a_repair() {
        let bundle = webhooks::DriftReason::Changed {
            webhook: "inject.airlock.dev".to_owned(),
            field: "clientConfig.caBundle",
        };
        assert!(is_ca_bundle_change(&bundle));
        let policy = webhooks::DriftReason::Changed {
            webhook: "inject.airlock.dev".to_owned(),
            field: "failurePolicy",
        };
        assert!(!is_ca_bundle_change(&policy));
        assert!(!is_ca_bundle_change(&webhooks::DriftReason::Missing));
    }

    #[test]
    fn an_overlap_out_of_range_is_refused_at_startup() {
        for bad in ["0", "86401", "-5", "ten"] {
            let parsed = crate::Args::try_parse_from(["airlock-operator", "--ca-overlap-seconds", bad]);
            assert!(parsed.is_err(), "--ca-overlap-seconds {bad} was accepted");
        }
    }
}
