//! Leader election on a `coordination.k8s.io` Lease, and the tasks only the leader runs.
//!
//! Every replica keeps its caches warm; the one holding the lease runs the controllers and writers.
//! When the leader dies, its lease expires after `--lease-duration` seconds and a standby takes it.
//! When a replica learns that another holds the lease, it stops its leader tasks at once; it keeps
//! competing and resumes if it wins again.

use std::sync::Arc;
use std::time::Duration;

use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cache::Synced;
use crate::controllers;
use crate::{Context, Error, Result};

/// Competes for the lease until `stop`, running the leader tasks while holding it.
pub async fn run(
    ctx: Arc<Context>,
    identity: String,
    mut synced: watch::Receiver<Synced>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let manager = LeaseManagerBuilder::new(ctx.client.clone(), &ctx.args.lease_name)
        .with_namespace(&ctx.args.namespace)
        .with_identity(&identity)
        .with_duration(ctx.args.lease_duration)
        .with_grace(ctx.args.lease_grace)
        .build()
        .await
        .map_err(|e| Error::Lease(e.to_string()))?;
    // Lead only with a complete index, or the first status writes would report half the cluster.
    tokio::select! {
        result = synced.wait_for(Synced::all) => { result.map_err(|e| Error::Lease(e.to_string()))?; }
        _ = stop.wait_for(|s| *s) => return Ok(()),
    }
    let mut leading = false;
    let mut tasks: JoinSet<()> = JoinSet::new();
    loop {
        let changed = tokio::select! {
            changed = manager.changed() => changed,
            _ = stop.wait_for(|s| *s) => break,
        };
        match changed {
            Ok(now_leading) if now_leading != leading => {
                leading = now_leading;
                ctx.metrics.set_leader(leading);
                if leading {
                    tracing::info!(%identity, "acquired the leader lease; starting controllers");
                    spawn_leader_tasks(&ctx, &mut tasks);
                } else {
                    tracing::warn!(%identity, "lost the leader lease; stopping controllers");
                    tasks.abort_all();
                }
            }
            Ok(_) => {}
            // The lease manager keeps its own view of who holds the lease and reports only changes, so
            // our state must follow its view: flipping to "not leading" here would never be undone while
            // it keeps renewing (found when the API server restarted). While the API server cannot be
            // reached nobody can take the lease, and our writes fail anyway; once another replica takes
            // it, `changed()` says so and the tasks stop.
            Err(error) => {
                tracing::warn!(%error, "lease update failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    tasks.abort_all();
    if leading {
        release_lease(&manager).await;
    }
    Ok(())
}

async fn release_lease(manager: &LeaseManager) {
    match manager.release().await {
        Ok(()) => tracing::info!("released the leader lease"),
        Err(error) => tracing::warn!(%error, "could not release the leader lease"),
    }
}

fn spawn_leader_tasks(ctx: &Arc<Context>, tasks: &mut JoinSet<()>) {
    // A fresh leader re-derives every group's status: mark them all dirty.
    {
        let mut index = ctx.index_write();
        let names: Vec<String> = index.group_names().map(str::to_owned).collect();
        for name in names {
            index.mark_dirty(&name);
        }
    }
    ctx.groups_dirty.notify_one();
    tasks.spawn(controllers::group::run_status_writer(ctx.clone()));
    tasks.spawn(controllers::instance::run(ctx.clone()));
    tasks.spawn(controllers::admission::run(ctx.clone()));
    tasks.spawn(controllers::backstop::run(ctx.clone()));
}
