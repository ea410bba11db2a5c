#!/usr/bin/env bash
# `make up` / `make down`: the local environment a developer works in (state in .airlock/dev).
#   e2e/env.sh up     start the control plane, install Airlock's CRDs; last line: export KUBECONFIG=...
#   e2e/env.sh down   stop it; nothing is left running
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export AIRLOCK_ENV_DIR=${AIRLOCK_ENV_DIR:-$root/.airlock/dev}

case "${1:-}" in
  up)
    bin=$(e2e/controlplane/build.sh)
    cargo build -q -p airlock-crds --bin crdgen
    kubeconfig=$(e2e/controlplane/up.sh)
    # CRDs go in with server-side apply, as the chart's install does.
    target/debug/crdgen --plain | "$bin/kubectl" --kubeconfig "$kubeconfig" apply --server-side \
      --field-manager=airlock -f - >&2
    "$bin/kubectl" --kubeconfig "$kubeconfig" wait --for=condition=Established --timeout=60s \
      crd/aisecurityprofiles.airlock.dev crd/airuntimeinstances.airlock.dev \
      crd/dynamicaddressgroups.airlock.dev >&2
    # TODO(issues 3 and 4): start the operator and webhook and register the webhooks.
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
