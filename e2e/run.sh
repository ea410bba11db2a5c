#!/usr/bin/env bash
# Runs the end-to-end tests: builds (or reuses) the control plane, starts a dedicated environment for the
# tests (separate from `make up`'s), runs the airlock-e2e tests against it, and always stops it.
# Extra arguments go to the test harness, e.g. `e2e/run.sh one_kubectl_call` to run matching tests.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export AIRLOCK_ENV_DIR=${AIRLOCK_E2E_ENV_DIR:-$root/.airlock/e2e}
export AIRLOCK_PORT_BASE=${AIRLOCK_E2E_PORT_BASE:-16540}

bin=$(e2e/controlplane/build.sh)
# Compile the tests before the cluster starts, so the cluster's lifetime is spent testing.
cargo test -p airlock-e2e --no-run
cargo build -p airlock-webhook --bin airlock-webhook -p airlock-operator --bin airlock-operator -p airlock-crds --bin crdgen \
  -p kubectl-airlock --bin kubectl-airlock

on_exit() {
  status=$?
  if [[ $status -ne 0 ]]; then
    echo "[e2e] failed; last lines of each component's log:" >&2
    for f in "$AIRLOCK_ENV_DIR"/logs/*.log; do
      echo "--- $f" >&2
      tail -n 15 "$f" >&2 || true
    done
  fi
  e2e/controlplane/down.sh "$AIRLOCK_ENV_DIR"
  exit $status
}
trap on_exit EXIT

kubeconfig=$(e2e/controlplane/up.sh)
e2e/airlock.sh start "$AIRLOCK_ENV_DIR"
echo "[e2e] $("$bin/kubectl" --kubeconfig "$kubeconfig" version 2>/dev/null | tr '\n' ' ')"
AIRLOCK_E2E_KUBECONFIG=$kubeconfig AIRLOCK_E2E_BIN=$bin \
  cargo test -p airlock-e2e --tests -- --test-threads="${AIRLOCK_E2E_THREADS:-4}" --show-output "$@"
