//! The operator across a kube-apiserver restart: changes made just before the restart and right after it
//! all reach the address group's status — watches resume (re-listing when needed) and no update is lost.
//!
//! In a test binary of its own: the API server goes away for several seconds, which other tests must not
//! see (test binaries run one after the other).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use airlock_crds::DynamicAddressGroup;
use airlock_e2e::{eventually, install_crds, unique_name, with_temp_ns};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn env_dir() -> PathBuf {
    PathBuf::from(std::env::var("AIRLOCK_ENV_DIR").expect("AIRLOCK_ENV_DIR is set by e2e/run.sh"))
}

async fn pod(client: &Client, ns: &str, name: &str, key: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "restart-e2e": key } },
        "spec": { "containers": [{ "name": "app", "image": "python:3.12-slim" }] }
    }))
    .expect("pod literal");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
}

/// The group's member names; with `with_ips`, only once every member has an IP.
///
/// After the restart only names are compared: kwok (the simulated kubelet) sometimes fails to assign an
/// IP to a pod created right after an API server restart ("may specify no more than one IP for each IP
/// family"), which says nothing about Airlock. IP updates are covered in operator.rs.
async fn members(client: &Client, group: &str, with_ips: bool) -> Option<Vec<String>> {
    let groups: Api<DynamicAddressGroup> = Api::all(client.clone());
    let status = groups.get(group).await.ok()?.status?;
    if with_ips && status.members.iter().any(|m| m.ips.is_empty()) {
        return None;
    }
    Some(status.members.iter().map(|m| m.name.clone()).collect())
}

/// Stops the kube-apiserver of the environment and starts it again with the same command line.
#[allow(
    clippy::zombie_processes,
    reason = "the new kube-apiserver outlives the test; e2e/controlplane/down.sh stops it by its pid file"
)]
async fn restart_apiserver(client: &Client) {
    let dir = env_dir();
    let pid_file = dir.join("pids/kube-apiserver.pid");
    let pid = std::fs::read_to_string(&pid_file)
        .expect("apiserver pid file")
        .trim()
        .to_owned();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("apiserver executable");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("apiserver command line");
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .skip(1)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    // SIGKILL: a crash (a graceful stop waits for long-running watches to drain).
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .expect("kill")
            .success()
    );
    eventually("the kube-apiserver to exit", Duration::from_secs(30), || {
        let pid = pid.clone();
        // Gone, or a zombie nobody reaps (its parent, up.sh, exited long ago).
        async move {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            matches!(state, None | Some("Z" | "X")).then_some(())
        }
    })
    .await;
    // The main thread's exit is not the process's: other threads may still hold the listening socket.
    let port: u16 = args
        .iter()
        .find_map(|a| a.strip_prefix("--secure-port="))
        .and_then(|p| p.parse().ok())
        .expect("the apiserver's --secure-port");
    eventually(
        "the kube-apiserver's port to be free",
        Duration::from_secs(30),
        || async move { std::net::TcpListener::bind(("127.0.0.1", port)).ok().map(drop) },
    )
    .await;
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("logs/kube-apiserver.log"))
        .expect("apiserver log");
    let child = Command::new("setsid")
        .arg(exe)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .spawn()
        .expect("start the kube-apiserver again");
    std::fs::write(&pid_file, child.id().to_string()).expect("pid file");
    eventually(
        "the restarted kube-apiserver to be ready",
        Duration::from_secs(90),
        || async {
            client
                .request_text(http::Request::get("/readyz").body(Vec::new()).ok()?)
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
}

#[tokio::test]
async fn no_membership_update_is_lost_across_an_api_server_restart() {
    with_temp_ns(|client, ns| async move {
        install_crds(&client).await;
        let key = unique_name("r");
        let group = unique_name("restart");
        let groups: Api<DynamicAddressGroup> = Api::all(client.clone());
        let g: DynamicAddressGroup = serde_json::from_value(json!({
            "apiVersion": "airlock.dev/v1alpha1", "kind": "DynamicAddressGroup",
            "metadata": { "name": group },
            "spec": { "match": format!("restart-e2e = {key}") }
        }))
        .expect("group literal");
        groups
            .create(&PostParams::default(), &g)
            .await
            .expect("create group");
        for name in ["a", "b", "c"] {
            pod(&client, &ns, name, &key).await;
        }
        eventually("a, b and c to be members", WAIT, || async {
            members(&client, &group, true)
                .await
                .filter(|m| *m == ["a", "b", "c"])
        })
        .await;

        // Changes right before the restart, which the operator may or may not have seen when its watch
        // breaks.
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let patch = json!({ "metadata": { "labels": { "restart-e2e": "elsewhere" } } });
        pods.patch("a", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("relabel a");
        pods.delete("b", &DeleteParams::default().grace_period(0))
            .await
            .expect("delete b");
        restart_apiserver(&client).await;

        // And right after it.
        pod(&client, &ns, "d", &key).await;
        eventually("exactly c and d after the restart", WAIT, || async {
            members(&client, &group, false).await.filter(|m| *m == ["c", "d"])
        })
        .await;
        let _ = groups.delete(&group, &DeleteParams::default()).await;
    })
    .await;
}
