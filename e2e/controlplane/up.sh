#!/usr/bin/env bash
# Starts a real local Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler and kwok (simulated nodes, so pods get scheduled, run and get IPs).
#
# Like a real cluster: TLS everywhere (etcd included), client-certificate identities per component,
# service-account signing keys, and `--authorization-mode=Node,RBAC`. Only the admin kubeconfig is in
# `system:masters`.
#
# Environment:
#   AIRLOCK_ENV_DIR   state directory (certificates, data, logs, kubeconfig, pids); default .airlock/dev
#   AIRLOCK_PORT_BASE first of the ports it uses (base .. base+5); default 16440
#   AIRLOCK_NODES     number of simulated nodes; default 2
# Prints the kubeconfig path as its last line.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
dir=${AIRLOCK_ENV_DIR:-$root/.airlock/dev}
base=${AIRLOCK_PORT_BASE:-16440}
nodes=${AIRLOCK_NODES:-2}

log() { echo "[up] $*" >&2; }
die() { log "error: $*"; exit 1; }

bin=$("$here/build.sh")
export PATH="$bin:$PATH"

# A previous run that was not stopped would hold the ports: stop it first.
if compgen -G "$dir/pids/*.pid" >/dev/null; then
  log "stopping the previous environment in $dir"
  "$here/down.sh" "$dir"
fi

etcd_port=$base
etcd_peer_port=$((base + 1))
api_port=$((base + 2))
kcm_port=$((base + 3))
sched_port=$((base + 4))
kwok_port=$((base + 5))

for p in $etcd_port $etcd_peer_port $api_port $kcm_port $sched_port $kwok_port; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    die "port $p on 127.0.0.1 is in use; set AIRLOCK_PORT_BASE to a free range"
  fi
done

mkdir -p "$dir"/{pki,logs,pids}
rm -rf "$dir/etcd"
pki=$dir/pki
started=$(date +%s%N)

# --- certificates ---------------------------------------------------------------------------------------
# One CA signs everything; each component gets its own client identity, as kubeadm does.
ssl() { openssl "$@" 2>/dev/null; }
if [[ ! -f "$pki/ca.crt" ]]; then
  ssl req -x509 -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -out "$pki/ca.crt" -days 3650 \
    -subj "/CN=airlock-e2e-ca"
fi
# cert <name> <subject> [serverAltNames]
cert() {
  local name=$1 subj=$2 san=${3:-}
  [[ -f "$pki/$name.crt" ]] && return 0
  ssl req -newkey rsa:2048 -nodes -keyout "$pki/$name.key" -out "$pki/$name.csr" -subj "$subj"
  local ext="$pki/$name.ext"
  if [[ -n "$san" ]]; then
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=%s\n' "$san" >"$ext"
  else
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >"$ext"
  fi
  ssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -out "$pki/$name.crt" -days 3650 -extfile "$ext"
  rm -f "$pki/$name.csr" "$ext"
}
cert etcd-server "/CN=etcd" "IP:127.0.0.1,DNS:localhost"
cert apiserver-etcd-client "/CN=kube-apiserver-etcd-client"
cert apiserver "/CN=kube-apiserver" \
  "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert admin "/O=system:masters/CN=airlock-e2e-admin"
cert controller-manager "/CN=system:kube-controller-manager"
cert scheduler "/CN=system:kube-scheduler"
cert kwok "/CN=system:kwok-controller"
if [[ ! -f "$pki/sa.key" ]]; then
  ssl genrsa -out "$pki/sa.key" 2048
  ssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub"
fi

server="https://127.0.0.1:$api_port"
kubeconfig() { # kubeconfig <file> <cert name> <user>
  local file=$1 name=$2 user=$3
  rm -f "$file"
  kubectl config --kubeconfig="$file" set-cluster airlock-e2e --server="$server" \
    --certificate-authority="$pki/ca.crt" --embed-certs=true >/dev/null
  kubectl config --kubeconfig="$file" set-credentials "$user" --client-certificate="$pki/$name.crt" \
    --client-key="$pki/$name.key" --embed-certs=true >/dev/null
  kubectl config --kubeconfig="$file" set-context airlock-e2e --cluster=airlock-e2e --user="$user" >/dev/null
  kubectl config --kubeconfig="$file" use-context airlock-e2e >/dev/null
}
kubeconfig "$dir/kubeconfig" admin airlock-e2e-admin
kubeconfig "$dir/controller-manager.kubeconfig" controller-manager system:kube-controller-manager
kubeconfig "$dir/scheduler.kubeconfig" scheduler system:kube-scheduler
kubeconfig "$dir/kwok.kubeconfig" kwok system:kwok-controller
export KUBECONFIG=$dir/kubeconfig

# --- processes ------------------------------------------------------------------------------------------
# start <name> <command...>: own session (so down.sh can stop the whole group), log file, pid file.
start() {
  local name=$1
  shift
  setsid "$@" >"$dir/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$dir/pids/$name.pid"
}
# wait_for <what> <seconds> <command...>: polls the command; fails fast, with the log, if a component died.
wait_for() {
  local what=$1 secs=$2
  shift 2
  local deadline=$((SECONDS + secs)) f name
  until "$@" >/dev/null 2>&1; do
    for f in "$dir"/pids/*.pid; do
      name=$(basename "$f" .pid)
      if ! alive "$name"; then
        log "$name exited while waiting for $what; last log lines:"
        tail -n 30 "$dir/logs/$name.log" >&2 || true
        "$here/down.sh" "$dir" || true
        exit 1
      fi
    done
    if ((SECONDS >= deadline)); then
      log "$what did not become ready in ${secs}s; last log lines:"
      tail -n 30 "$dir/logs/${what%% *}.log" >&2 || true
      "$here/down.sh" "$dir" || true
      exit 1
    fi
    sleep 0.2
  done
}
alive() { kill -0 "$(cat "$dir/pids/$1.pid" 2>/dev/null)" 2>/dev/null; }

start etcd etcd --name=airlock-e2e --data-dir="$dir/etcd" \
  --listen-client-urls="https://127.0.0.1:$etcd_port" --advertise-client-urls="https://127.0.0.1:$etcd_port" \
  --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
  --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
  --initial-cluster="airlock-e2e=http://127.0.0.1:$etcd_peer_port" \
  --cert-file="$pki/etcd-server.crt" --key-file="$pki/etcd-server.key" \
  --client-cert-auth --trusted-ca-file="$pki/ca.crt" \
  --unsafe-no-fsync --quota-backend-bytes=2147483648 --log-level=warn
etcd_ready() {
  curl -sf --cacert "$pki/ca.crt" --cert "$pki/apiserver-etcd-client.crt" \
    --key "$pki/apiserver-etcd-client.key" "https://127.0.0.1:$etcd_port/health" | grep -q '"health":"true"'
}
wait_for etcd 30 etcd_ready

start kube-apiserver kube-apiserver \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
  --etcd-servers="https://127.0.0.1:$etcd_port" --etcd-cafile="$pki/ca.crt" \
  --etcd-certfile="$pki/apiserver-etcd-client.crt" --etcd-keyfile="$pki/apiserver-etcd-client.key" \
  --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
  --service-cluster-ip-range=10.96.0.0/16 \
  --authorization-mode=Node,RBAC \
  --enable-admission-plugins=NodeRestriction \
  --endpoint-reconciler-type=none \
  --allow-privileged=true --profiling=false --v=1
api_ready() { kubectl get --raw /readyz; }
wait_for kube-apiserver 90 api_ready

start kube-controller-manager kube-controller-manager \
  --kubeconfig="$dir/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$dir/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$dir/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$kcm_port" \
  --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
  --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
  --use-service-account-credentials=true --leader-elect=false \
  --profiling=false --v=1
start kube-scheduler kube-scheduler \
  --kubeconfig="$dir/scheduler.kubeconfig" \
  --authentication-kubeconfig="$dir/scheduler.kubeconfig" \
  --authorization-kubeconfig="$dir/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$sched_port" --leader-elect=false --profiling=false --v=1

# kwok acts for the simulated nodes (a kubelet's job): it needs to write node and pod status.
kubectl apply -f - >/dev/null <<'EOF'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: airlock-e2e:kwok-controller
rules:
  - apiGroups: [""]
    resources: [nodes, nodes/status, pods, pods/status]
    verbs: [get, list, watch, create, update, patch, delete]
  - apiGroups: [""]
    resources: [events]
    verbs: [create, patch, update]
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    verbs: [get, list, watch, create, update, patch, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: airlock-e2e:kwok-controller
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: airlock-e2e:kwok-controller
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: User
    name: system:kwok-controller
EOF
start kwok kwok --kubeconfig="$dir/kwok.kubeconfig" --config="$bin/kwok-stages.yaml" \
  --node-lease-duration-seconds=40 \
  --manage-all-nodes=false \
  --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
  --cidr=10.244.0.1/16 --node-ip=10.240.0.1 \
  --server-address="127.0.0.1:$kwok_port"

for i in $(seq 1 "$nodes"); do
  kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: ""
    type: kwok
    topology.kubernetes.io/zone: zone-$(( (i - 1) % 3 + 1 ))
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
EOF
done
nodes_ready() {
  [[ $(kubectl get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True) -eq $nodes ]]
}
wait_for "kwok" 60 nodes_ready
# Pods need their namespace's default ServiceAccount, which the controller manager creates.
wait_for "kube-controller-manager" 60 kubectl get serviceaccount default -n default

elapsed=$(( ($(date +%s%N) - started) / 1000000 ))
version=$(kubectl version -o json 2>/dev/null | sed -n 's/.*"gitVersion": "\([^"]*\)".*/\1/p' | tail -n 1)
log "control plane ${version:-?} up in ${elapsed} ms (state: $dir, binaries: $bin)"
echo "$dir/kubeconfig"
