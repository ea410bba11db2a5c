//! Leader election against the real API server: when the leader is killed (SIGKILL, no lease release),
//! the standby takes the Lease within 15 s and does the leader's work.
//!
//! In a test binary of its own: for several seconds nobody leads, which other tests must not see (test
//! binaries run one after the other).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use airlock_crds::DynamicAddressGroup;
use airlock_e2e::{client, eventually, install_crds, unique_name};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn env_dir() -> PathBuf {
    PathBuf::from(std::env::var("AIRLOCK_ENV_DIR").expect("AIRLOCK_ENV_DIR is set by e2e/run.sh"))
}

async fn leader(client: &Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "airlock-system");
    leases.get("airlock-operator").await.ok()?.spec?.holder_identity
}

#[tokio::test]
async fn the_standby_takes_over_within_fifteen_seconds_when_the_leader_dies() {
    let client = client().await;
    install_crds(&client).await;
    let before = eventually("a leader", WAIT, || leader(&client)).await;
    let replica = before
        .strip_prefix("airlock-operator-")
        .expect("local replicas are named airlock-operator-N")
        .to_owned();
    let pid_file = env_dir().join(format!("pids/airlock-operator-{replica}.pid"));
    let pid = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .to_owned();

    // SIGKILL: no chance to release the lease, as in a node or process crash.
    let killed = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let after = eventually(
        "another replica to hold the lease",
        Duration::from_secs(20),
        || async { leader(&client).await.filter(|l| *l != before) },
    )
    .await;
    let takeover = killed.elapsed();

    // The new leader works: a new group gets its status.
    let groups: Api<DynamicAddressGroup> = Api::all(client.clone());
    let name = unique_name("after-takeover");
    let group: DynamicAddressGroup = serde_json::from_value(json!({
        "apiVersion": "airlock.dev/v1alpha1", "kind": "DynamicAddressGroup",
        "metadata": { "name": name },
        "spec": { "match": "nothing-has-this-label = x" }
    }))
    .expect("group literal");
    groups
        .create(&PostParams::default(), &group)
        .await
        .expect("create group");
    eventually(
        "the new leader to write the group's status",
        Duration::from_secs(15),
        || async {
            let g = groups.get(&name).await.ok()?;
            airlock_crds::conditions::is_ready(&g.status?.conditions).then_some(())
        },
    )
    .await;
    let _ = groups.delete(&name, &DeleteParams::default()).await;

    // Bring the killed replica back as the new standby.
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("airlock.sh");
    let restarted = std::process::Command::new(script)
        .args(["operator-start", &replica])
        .arg(env_dir())
        .status()
        .expect("restart the replica");
    assert!(restarted.success());
    println!(
        "leader {before} killed; {after} took over after {} ms",
        takeover.as_millis()
    );
    assert!(takeover <= Duration::from_secs(15), "takeover took {takeover:?}");
}
