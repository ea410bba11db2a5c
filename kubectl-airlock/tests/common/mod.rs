//! Fixtures shared by the plugin's tests: files under `tests/fixtures/`, read the way the plugin reads
//! manifests, and the built binary.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use kubectl_airlock::manifest::{self, Manifest};

/// Path of a fixture, e.g. `check/workloads.yaml`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Every object in a fixture file.
pub fn manifests(name: &str) -> Vec<Manifest> {
    let path = fixture(name);
    let text = std::fs::read_to_string(&path).unwrap();
    manifest::parse(&path.display().to_string(), &text).unwrap()
}

/// The objects of `kind` in a fixture file, typed.
pub fn objects<T: serde::de::DeserializeOwned>(name: &str, kind: &str) -> Vec<T> {
    manifests(name)
        .into_iter()
        .filter(|m| m.kind == kind)
        .map(|m| serde_json::from_value(m.object).unwrap())
        .collect()
}

/// Runs the built `kubectl-airlock` with `args` and `stdin`, from the crate's directory.
pub fn run(args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubectl-airlock"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        // Never reach a real cluster from unit tests.
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
