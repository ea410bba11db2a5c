#!/usr/bin/env bash
# `make up` / `make down`: the local environment a developer works in (state in .airlock/dev).
#   e2e/env.sh up     start the control plane, install the CRDs, run the operator (2 replicas) and the
#                     webhook, which the operator registers;
#                     last line: export KUBECONFIG=...
#   e2e/env.sh down   stop it; nothing is left running
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export AIRLOCK_ENV_DIR=${AIRLOCK_ENV_DIR:-$root/.airlock/dev}

case "${1:-}" in
  up)
    bin=$(e2e/controlplane/build.sh)
    kubeconfig=$(e2e/controlplane/up.sh)
    e2e/airlock.sh start "$AIRLOCK_ENV_DIR"
    echo "[up] kubectl and helm for this cluster are in $bin" >&2
    echo "export PATH=\"$bin:\$PATH\"" >&2
    echo "export KUBECONFIG=$kubeconfig"
    ;;
  down)
    e2e/controlplane/down.sh "$AIRLOCK_ENV_DIR"
    ;;
  *)
    echo "usage: $0 up|down" >&2
    exit 2
    ;;
esac
