//! Connecting to the cluster the way `kubectl` does: `--kubeconfig`, else `$KUBECONFIG`, else
//! `~/.kube/config`, else the in-cluster service account; `--context` picks a context.

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::error::{Error, Result};

/// A client, and the namespace of the chosen context (`default` when it names none).
pub async fn connect(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<(Client, String)> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(Error::Kubeconfig)?;
            Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(Error::Kubeconfig)?
        }
        None => match Config::from_kubeconfig(&options).await {
            Ok(config) => config,
            // Like kubectl: without a kubeconfig, a pod's service account will do, unless a context was
            // asked for (which only a kubeconfig has).
            Err(e) if context.is_some() => return Err(Error::Kubeconfig(e)),
            Err(e) => Config::incluster().map_err(|_| Error::Kubeconfig(e))?,
        },
    };
    let namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(Error::Client)?;
    Ok((client, namespace))
}

/// Every object of one of Airlock's cluster-scoped kinds; a missing CRD is [`Error::CrdsNotInstalled`].
pub async fn list_airlock<K>(client: &Client) -> Result<Vec<K>>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    kube::Api::<K>::all(client.clone())
        .list(&kube::api::ListParams::default())
        .await
        .map(|list| list.items)
        .map_err(|e| Error::from_airlock_list(format!("list {}s", K::kind(&())), e))
}

/// Airlock's instances, profiles and address groups, which every command that reads the cluster needs.
pub async fn list_instances_profiles_groups(
    client: &Client,
) -> Result<(
    Vec<airlock_crds::AIRuntimeInstance>,
    Vec<airlock_crds::AISecurityProfile>,
    Vec<airlock_crds::DynamicAddressGroup>,
)> {
    Ok((
        list_airlock(client).await?,
        list_airlock(client).await?,
        list_airlock(client).await?,
    ))
}
