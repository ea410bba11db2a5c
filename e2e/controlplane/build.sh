#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
# kwok, helm) from the upstream Go modules pinned in versions.env and modules/*/go.{mod,sum}.
#
# Binaries are cached outside the repository, keyed by the versions and the go.sum contents, so a second
# run on the same machine only checks that they exist. Prints the bin directory as its last line.
#
#   e2e/controlplane/build.sh            build (or reuse) and print the bin directory
#   e2e/controlplane/build.sh --print    print the bin directory without building
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

key="k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}"
sum=$(cat "$here"/modules/*/go.mod "$here"/modules/*/go.sum "$here"/modules/etcd/main.go 2>/dev/null | sha256sum | cut -c1-12)
bin="${XDG_CACHE_HOME:-$HOME/.cache}/airlock-e2e/${key}-${sum}/bin"

if [[ "${1:-}" == "--print" ]]; then
  echo "$bin"
  exit 0
fi

log() { echo "[build] $*" >&2; }

# The modules must pin what versions.env says; a mismatch would cache binaries under the wrong name.
check_pin() {
  local file=$1 module=$2 version=$3
  grep -qE "^require ${module//./\\.} ${version//./\\.}\$" "$file" ||
    { log "error: $file does not require $module $version (versions.env)"; exit 1; }
}
check_pin "$here/modules/kubernetes/go.mod" k8s.io/kubernetes "$KUBERNETES_VERSION"
check_pin "$here/modules/etcd/go.mod" go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
check_pin "$here/modules/kwok/go.mod" sigs.k8s.io/kwok "$KWOK_VERSION"
check_pin "$here/modules/helm/go.mod" helm.sh/helm/v4 "$HELM_VERSION"

want=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm kwok-stages.yaml)
missing=()
for b in "${want[@]}"; do [[ -s "$bin/$b" ]] || missing+=("$b"); done
if [[ ${#missing[@]} -eq 0 ]]; then
  log "cached: $bin"
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { log "error: Go is required to build the control plane (see README prerequisites)"; exit 1; }
mkdir -p "$bin"
# The machine's Go must be new enough for every module: never download another toolchain.
export GOTOOLCHAIN=local
# go.sum is committed: builds must not rewrite it. -trimpath keeps the cache key independent of paths.
# (AIRLOCK_GOMOD=mod is for maintainers bumping a version: it lets go record the new go.sum.)
export GOFLAGS="-mod=${AIRLOCK_GOMOD:-readonly} -trimpath -buildvcs=false"
export CGO_ENABLED=0

start=$(date +%s)
minor=${KUBERNETES_VERSION#v1.}
minor=${minor%%.*}
kver="-X k8s.io/component-base/version.gitVersion=${KUBERNETES_VERSION}"
kver+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor}"
kver+=" -X k8s.io/component-base/version.gitTreeState=clean"
kver+=" -X k8s.io/client-go/pkg/version.gitVersion=${KUBERNETES_VERSION}"
kver+=" -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=${minor}"

build() { # build <module dir> <ldflags> <packages...>
  local dir=$1 ldflags=$2
  shift 2
  log "go build $* (in modules/$(basename "$dir"))"
  (cd "$dir" && go build -ldflags "-s -w $ldflags" -o "$bin/" "$@")
}

build "$here/modules/etcd" "" .
build "$here/modules/kubernetes" "$kver" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubectl
build "$here/modules/kwok" "-X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION}" sigs.k8s.io/kwok/cmd/kwok
# kwok needs Stage configs to move nodes and pods along; use the "fast" set kwokctl uses by default,
# straight from the pinned kwok module (nodes Ready with lease heartbeats, pods Running at once).
kwok_dir=$(cd "$here/modules/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
  pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
  echo "---"
  cat "$kwok_dir/kustomize/stage/$f"
done >"$bin/kwok-stages.yaml"
build "$here/modules/helm" "-X helm.sh/helm/v4/internal/version.version=${HELM_VERSION}" helm.sh/helm/v4/cmd/helm

for b in "${want[@]}"; do [[ -s "$bin/$b" ]] || { log "error: $b was not built"; exit 1; }; done
log "built in $(( $(date +%s) - start ))s: $bin"
echo "$bin"
