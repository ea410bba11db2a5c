#!/usr/bin/env bash
# `make demo`: on a fresh machine, builds what it needs, starts a local control plane, installs Airlock's
# CRDs and walks through them. Stops everything at the end unless AIRLOCK_DEMO_KEEP=1.
#
# TODO(issues 3, 5, 7): sidecar injection, rejection of an unprotected model server, a benign prompt passing
# and an injection blocked through the sidecar, `kubectl airlock status`.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export AIRLOCK_ENV_DIR=${AIRLOCK_DEMO_ENV_DIR:-$root/.airlock/demo}
export AIRLOCK_PORT_BASE=${AIRLOCK_DEMO_PORT_BASE:-16640}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }

step "Building the control plane from pinned upstream Go modules (cached after the first run)"
bin=$(e2e/controlplane/build.sh)
export PATH="$bin:$PATH"
cargo build -q -p airlock-crds --bin crdgen

if [[ "${AIRLOCK_DEMO_KEEP:-0}" != 1 ]]; then
  trap 'step "Stopping the demo environment"; e2e/controlplane/down.sh "$AIRLOCK_ENV_DIR"' EXIT
fi

step "Starting etcd, kube-apiserver, controller-manager, scheduler and kwok on loopback"
export KUBECONFIG=$(e2e/controlplane/up.sh)
show kubectl version
show kubectl get nodes

step "Installing Airlock's CRDs (server-side apply, as the Helm chart does)"
target/debug/crdgen --plain | kubectl apply --server-side --field-manager=airlock -f -
kubectl wait --for=condition=Established --timeout=60s crd -l app.kubernetes.io/part-of=airlock >/dev/null
show kubectl api-resources --api-group=airlock.dev

step "The CRDs document themselves"
show kubectl explain aisecurityprofile.spec.dataProtection

step "Applying the example profiles, runtime instance and address groups"
show kubectl apply -f charts/airlock/examples/
show kubectl get airlock

step "The API server rejects a mistake with the rule's message"
cat <<'BAD' | sed 's/^/    /'
apiVersion: airlock.dev/v1alpha1
kind: DynamicAddressGroup
metadata: {name: demo-empty}
spec: {match: "  "}
BAD
if out=$(kubectl apply -f - 2>&1 <<'BAD'
apiVersion: airlock.dev/v1alpha1
kind: DynamicAddressGroup
metadata: {name: demo-empty}
spec: {match: "  "}
BAD
); then
  echo "unexpected: the invalid group was accepted" >&2
  exit 1
fi
echo "$out"

step "Summary"
echo "control plane: $(kubectl version -o json | sed -n 's/.*"gitVersion": "\([^"]*\)".*/\1/p' | tail -n1) with $(kubectl get nodes --no-headers | wc -l) simulated nodes"
echo "Airlock objects: $(kubectl get airlock --no-headers 2>/dev/null | wc -l)"
if [[ "${AIRLOCK_DEMO_KEEP:-0}" == 1 ]]; then
  echo "left running (AIRLOCK_DEMO_KEEP=1): export KUBECONFIG=$KUBECONFIG; stop with: e2e/controlplane/down.sh $AIRLOCK_ENV_DIR"
fi
