#!/usr/bin/env bash
# Installs Airlock with its Helm chart into a local control plane started by e2e/controlplane/up.sh, and
# runs the operator and the webhook. Simulated nodes run no containers: the chart's Deployments become
# (simulated) running pods, while the real processes run here, bound to the chart's RBAC through the
# development values in e2e/values-local.yaml, and the webhook configurations use a URL instead of the
# Service.
#
#   e2e/airlock.sh start              [state dir]  build, helm install the chart, start 2 operators and the webhook
#   e2e/airlock.sh stop               [state dir]  stop them and remove the webhook configurations
#   e2e/airlock.sh helm-install       [state dir]  (re)install the chart with the local values
#   e2e/airlock.sh operator-start N   [state dir]  (re)start operator replica N (1 or 2)
#   e2e/airlock.sh webhook-start|webhook-stop [state dir]
#
# Each component runs as its own identity (client certificates `airlock-operator`, `airlock-webhook`) with
# the chart's least-privilege RBAC (docs/operator.md), not as an administrator. The operator (leader-elected, two
# replicas) generates the webhook's CA and serving certificate into the Secret airlock-system/
# airlock-webhook-tls, mirrors them to $dir/pki/webhook for the webhook process (a pod would mount the
# Secret), and installs and repairs the webhook configurations. The webhook reads the mirrored files at
# once (no kubelet refresh), so a CA rotation's overlap is 20 s here instead of 10 minutes.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cmd=${1:-}
if [[ "$cmd" == operator-start ]]; then
  replica=${2:?usage: $0 operator-start N [state dir]}
  shift
fi
dir=${2:-${AIRLOCK_ENV_DIR:-$root/.airlock/dev}}
base=${AIRLOCK_PORT_BASE:-16440}
webhook_port=$((base + 10))
admin_port=$((base + 11))
# Operator replica N serves its admin port on base + 11 + N.
log() { echo "[airlock] $*" >&2; }

bin=$("$here/controlplane/build.sh" --print)
kubectl() { "$bin/kubectl" --kubeconfig "$dir/kubeconfig" "$@"; }
target=${CARGO_TARGET_DIR:-$root/target}/debug

# A kubeconfig for user $1, with a client certificate from the cluster CA.
client_identity() {
  local user=$1 pki=$dir/pki
  if [[ ! -f "$pki/$user.crt" ]]; then
    openssl req -newkey rsa:2048 -nodes -keyout "$pki/$user.key" -out "$pki/$user.csr" \
      -subj "/CN=$user" 2>/dev/null
    # An X.509 v3 client certificate (rustls refuses v1 ones).
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' \
      >"$pki/$user.ext"
    openssl x509 -req -in "$pki/$user.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
      -out "$pki/$user.crt" -days 3650 -extfile "$pki/$user.ext" 2>/dev/null
    rm -f "$pki/$user.csr" "$pki/$user.ext"
  fi
  local kc=$dir/$user.kubeconfig server
  server=$(kubectl config view -o jsonpath='{.clusters[0].cluster.server}')
  rm -f "$kc"
  "$bin/kubectl" config --kubeconfig="$kc" set-cluster local --server="$server" \
    --certificate-authority="$pki/ca.crt" --embed-certs=true >/dev/null
  "$bin/kubectl" config --kubeconfig="$kc" set-credentials "$user" \
    --client-certificate="$pki/$user.crt" --client-key="$pki/$user.key" --embed-certs=true >/dev/null
  "$bin/kubectl" config --kubeconfig="$kc" set-context local --cluster=local --user="$user" >/dev/null
  "$bin/kubectl" config --kubeconfig="$kc" use-context local >/dev/null
}

helm() { "$bin/helm" --kubeconfig "$dir/kubeconfig" "$@"; }

# The chart, with the development values that bind its RBAC to the local processes. --wait: until the
# operator's and the webhook's Deployments are available (kwok runs their pods).
helm_install() {
  helm upgrade --install airlock "$root/charts/airlock" --namespace airlock-system --create-namespace \
    -f "$here/values-local.yaml" --set development.webhookURL="https://127.0.0.1:$webhook_port" \
    --wait --timeout 120s "$@" >"$dir/logs/helm.log" 2>&1 || {
    log "helm install failed:"
    cat "$dir/logs/helm.log" >&2
    exit 1
  }
}

wait_ready() { # name, url, pid file, log file
  local deadline=$((SECONDS + 90))
  until curl -sf "$2" >/dev/null; do
    if ! kill -0 "$(cat "$3")" 2>/dev/null || ((SECONDS >= deadline)); then
      log "$1 did not become ready; last log lines:"
      tail -n 30 "$4" >&2
      exit 1
    fi
    sleep 0.2
  done
}

operator_start() {
  local n=$1 pidf=$dir/pids/airlock-operator-$1.pid
  if [[ -f "$pidf" ]] && kill -0 "$(cat "$pidf")" 2>/dev/null; then return 0; fi
  setsid env KUBECONFIG="$dir/airlock-operator.kubeconfig" AIRLOCK_LOG_FORMAT=json RUST_LOG=info \
    "$target/airlock-operator" --identity "airlock-operator-$n" \
    --admin-addr "127.0.0.1:$((base + 11 + n))" \
    --webhook-url "https://127.0.0.1:$webhook_port" --cert-dir "$dir/pki/webhook" \
    --cert-extra-san 127.0.0.1,localhost --owner-cluster-role airlock-operator \
    --ca-overlap-seconds "${AIRLOCK_CA_OVERLAP_SECONDS:-20}" \
    >>"$dir/logs/airlock-operator-$n.log" 2>&1 </dev/null &
  echo $! >"$pidf"
  wait_ready "operator $n" "http://127.0.0.1:$((base + 11 + n))/ready" "$pidf" "$dir/logs/airlock-operator-$n.log"
}

webhook_start() {
  local pidf=$dir/pids/airlock-webhook.pid
  if [[ -f "$pidf" ]] && kill -0 "$(cat "$pidf")" 2>/dev/null; then return 0; fi
  setsid env KUBECONFIG="$dir/airlock-webhook.kubeconfig" AIRLOCK_LOG_FORMAT=json \
    "$target/airlock-webhook" --addr "127.0.0.1:$webhook_port" --admin-addr "127.0.0.1:$admin_port" \
    --tls-cert "$dir/pki/webhook/tls.crt" --tls-key "$dir/pki/webhook/tls.key" \
    >>"$dir/logs/airlock-webhook.log" 2>&1 </dev/null &
  echo $! >"$pidf"
  wait_ready webhook "http://127.0.0.1:$admin_port/ready" "$pidf" "$dir/logs/airlock-webhook.log"
}

stop_pid() {
  local f=$1
  if [[ -f "$f" ]]; then
    local pid
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$f"
  fi
}

case "$cmd" in
  start)
    (cd "$root" && cargo build -q -p airlock-webhook --bin airlock-webhook -p airlock-operator \
      --bin airlock-operator)
    mkdir -p "$dir/pids" "$dir/logs" "$dir/pki/webhook"
    helm_install
    kubectl wait --for=condition=Established --timeout=60s crd -l app.kubernetes.io/part-of=airlock >/dev/null
    client_identity airlock-operator
    client_identity airlock-webhook
    operator_start 1
    operator_start 2
    # The leader writes the serving certificate (and mirrors it here) before it registers the webhooks.
    deadline=$((SECONDS + 60))
    until [[ -s "$dir/pki/webhook/tls.crt" && -s "$dir/pki/webhook/tls.key" ]]; do
      if ((SECONDS >= deadline)); then
        log "the operator wrote no webhook certificate; last log lines:"
        tail -n 30 "$dir"/logs/airlock-operator-*.log >&2
        exit 1
      fi
      sleep 0.2
    done
    webhook_start
    deadline=$((SECONDS + 60))
    # ...and binds the backstop policy, when the chart installed it.
    until kubectl get validatingwebhookconfiguration airlock-validator >/dev/null 2>&1 &&
      kubectl get mutatingwebhookconfiguration airlock-sidecar-injector >/dev/null 2>&1 &&
      { ! kubectl get validatingadmissionpolicy airlock-backstop >/dev/null 2>&1 ||
        kubectl get validatingadmissionpolicybinding airlock-backstop >/dev/null 2>&1; }; do
      if ((SECONDS >= deadline)); then
        log "the operator did not register the webhooks and bind the backstop; last log lines:"
        tail -n 30 "$dir"/logs/airlock-operator-*.log >&2
        exit 1
      fi
      sleep 0.2
    done
    log "operator (2 replicas, admin http://127.0.0.1:$((base + 12)) and :$((base + 13))) and webhook" \
      "(https://127.0.0.1:$webhook_port, admin http://127.0.0.1:$admin_port) ready; webhooks registered," \
      "backstop bound"
    ;;
  stop)
    stop_pid "$dir/pids/airlock-operator-1.pid"
    stop_pid "$dir/pids/airlock-operator-2.pid"
    # Without the operator nothing restores them; without them the cluster admits freely again.
    kubectl delete mutatingwebhookconfiguration airlock-sidecar-injector --ignore-not-found >/dev/null 2>&1 || true
    kubectl delete validatingwebhookconfiguration airlock-validator --ignore-not-found >/dev/null 2>&1 || true
    stop_pid "$dir/pids/airlock-webhook.pid"
    ;;
  helm-install) helm_install ;;
  operator-start) operator_start "$replica" ;;
  webhook-start) webhook_start ;;
  webhook-stop) stop_pid "$dir/pids/airlock-webhook.pid" ;;
  *)
    echo "usage: $0 start|stop|helm-install|operator-start N|webhook-start|webhook-stop [state dir]" >&2
    exit 2
    ;;
esac
