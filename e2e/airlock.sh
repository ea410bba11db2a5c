#!/usr/bin/env bash
# Runs Airlock's webhook next to a local control plane started by e2e/controlplane/up.sh and registers it
# with the API server, the way the Helm chart does in a cluster (URL clientConfig instead of a Service,
# because simulated nodes run no containers).
#
#   e2e/airlock.sh start   [state dir]   build, install the CRDs, start the webhook, register it
#   e2e/airlock.sh stop    [state dir]   remove the configurations, stop the webhook
#   e2e/airlock.sh register|unregister [state dir]
#
# The webhook runs as its own identity (client certificate `airlock-webhook`, RBAC: read instances, profiles
# and namespaces), not as an administrator. Its serving certificate comes from a CA of its own, whose
# certificate is the caBundle.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cmd=${1:-}
dir=${2:-${AIRLOCK_ENV_DIR:-$root/.airlock/dev}}
base=${AIRLOCK_PORT_BASE:-16440}
webhook_port=$((base + 10))
admin_port=$((base + 11))
log() { echo "[airlock] $*" >&2; }

bin=$("$here/controlplane/build.sh" --print)
kubectl() { "$bin/kubectl" --kubeconfig "$dir/kubeconfig" "$@"; }
target=${CARGO_TARGET_DIR:-$root/target}/debug

webhook_certs() {
  local pki=$dir/pki/webhook
  mkdir -p "$pki"
  [[ -f "$pki/tls.crt" ]] && return 0
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -out "$pki/ca.crt" -days 3650 \
    -subj "/CN=airlock-webhook-ca" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout "$pki/tls.key" -out "$pki/tls.csr" \
    -subj "/CN=airlock-webhook.airlock-system.svc" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost,DNS:airlock-webhook.airlock-system.svc\n' >"$pki/tls.ext"
  openssl x509 -req -in "$pki/tls.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -out "$pki/tls.crt" -days 365 -extfile "$pki/tls.ext" 2>/dev/null
  rm -f "$pki/tls.csr" "$pki/tls.ext"
}

identity() {
  local pki=$dir/pki
  if [[ ! -f "$pki/airlock-webhook.crt" ]]; then
    openssl req -newkey rsa:2048 -nodes -keyout "$pki/airlock-webhook.key" -out "$pki/airlock-webhook.csr" \
      -subj "/CN=airlock-webhook" 2>/dev/null
    # An X.509 v3 client certificate (rustls refuses v1 ones).
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' \
      >"$pki/airlock-webhook.ext"
    openssl x509 -req -in "$pki/airlock-webhook.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
      -out "$pki/airlock-webhook.crt" -days 3650 -extfile "$pki/airlock-webhook.ext" 2>/dev/null
    rm -f "$pki/airlock-webhook.csr" "$pki/airlock-webhook.ext"
  fi
  local kc=$dir/airlock-webhook.kubeconfig server
  server=$(kubectl config view -o jsonpath='{.clusters[0].cluster.server}')
  rm -f "$kc"
  "$bin/kubectl" config --kubeconfig="$kc" set-cluster local --server="$server" \
    --certificate-authority="$pki/ca.crt" --embed-certs=true >/dev/null
  "$bin/kubectl" config --kubeconfig="$kc" set-credentials airlock-webhook \
    --client-certificate="$pki/airlock-webhook.crt" --client-key="$pki/airlock-webhook.key" --embed-certs=true >/dev/null
  "$bin/kubectl" config --kubeconfig="$kc" set-context local --cluster=local --user=airlock-webhook >/dev/null
  "$bin/kubectl" config --kubeconfig="$kc" use-context local >/dev/null
  kubectl apply --server-side --field-manager=airlock -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Namespace
metadata:
  name: airlock-system
---
# What the webhook reads to decide: Airlock's instances and profiles, and namespace labels.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: airlock-webhook
rules:
  - apiGroups: [airlock.dev]
    resources: [airuntimeinstances, aisecurityprofiles]
    verbs: [get, list, watch]
  - apiGroups: [""]
    resources: [namespaces]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: airlock-webhook
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: airlock-webhook}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: airlock-webhook}
EOF
}

register() {
  local ca url
  ca=$(base64 -w0 <"$dir/pki/webhook/ca.crt")
  url="https://127.0.0.1:$webhook_port"
  kubectl apply --server-side --field-manager=airlock -f - >/dev/null <<EOF
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: airlock-sidecar-injector
  labels: {app.kubernetes.io/part-of: airlock}
webhooks:
  - name: inject.airlock.dev
    clientConfig: {url: "$url/mutate", caBundle: "$ca"}
    rules:
      - {apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods], scope: Namespaced}
    # Injection fails open: a webhook outage must not stop pods; the validating side fails closed.
    failurePolicy: Ignore
    reinvocationPolicy: IfNeeded
    sideEffects: None
    admissionReviewVersions: [v1]
    timeoutSeconds: 5
    namespaceSelector:
      matchExpressions:
        - {key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system, airlock-system]}
    matchConditions:
      - name: not-a-mirror-pod
        expression: "!has(object.metadata.annotations) || !('kubernetes.io/config.mirror' in object.metadata.annotations)"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: airlock-validator
  labels: {app.kubernetes.io/part-of: airlock}
webhooks:
  - name: workloads.airlock.dev
    clientConfig: {url: "$url/validate", caBundle: "$ca"}
    rules:
      - {apiGroups: [""], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [pods], scope: Namespaced}
      - {apiGroups: [apps], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [deployments, statefulsets, daemonsets, replicasets], scope: Namespaced}
      - {apiGroups: [batch], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [jobs, cronjobs], scope: Namespaced}
    failurePolicy: Fail
    sideEffects: None
    admissionReviewVersions: [v1]
    timeoutSeconds: 5
    namespaceSelector:
      matchExpressions:
        - {key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system, airlock-system]}
    matchConditions:
      - name: not-a-mirror-pod
        expression: "!has(object.metadata.annotations) || !('kubernetes.io/config.mirror' in object.metadata.annotations)"
  - name: resources.airlock.dev
    clientConfig: {url: "$url/validate", caBundle: "$ca"}
    rules:
      - {apiGroups: [airlock.dev], apiVersions: [v1alpha1], operations: [CREATE, UPDATE], resources: [airuntimeinstances, dynamicaddressgroups], scope: Cluster}
      - {apiGroups: [airlock.dev], apiVersions: [v1alpha1], operations: [DELETE], resources: [aisecurityprofiles], scope: Cluster}
    failurePolicy: Fail
    sideEffects: None
    admissionReviewVersions: [v1]
    timeoutSeconds: 5
EOF
}

unregister() {
  kubectl delete mutatingwebhookconfiguration airlock-sidecar-injector --ignore-not-found >/dev/null
  kubectl delete validatingwebhookconfiguration airlock-validator --ignore-not-found >/dev/null
}

case "$cmd" in
  start)
    (cd "$root" && cargo build -q -p airlock-webhook --bin airlock-webhook -p airlock-crds --bin crdgen)
    # CRDs go in with server-side apply, as the chart's install does.
    "$target/crdgen" --plain | kubectl apply --server-side --field-manager=airlock -f - >/dev/null
    kubectl wait --for=condition=Established --timeout=60s crd -l app.kubernetes.io/part-of=airlock >/dev/null
    webhook_certs
    identity
    setsid env KUBECONFIG="$dir/airlock-webhook.kubeconfig" AIRLOCK_LOG_FORMAT=json \
      "$target/airlock-webhook" --addr "127.0.0.1:$webhook_port" --admin-addr "127.0.0.1:$admin_port" \
      --tls-cert "$dir/pki/webhook/tls.crt" --tls-key "$dir/pki/webhook/tls.key" \
      >"$dir/logs/airlock-webhook.log" 2>&1 </dev/null &
    echo $! >"$dir/pids/airlock-webhook.pid"
    deadline=$((SECONDS + 60))
    until curl -sf "http://127.0.0.1:$admin_port/ready" >/dev/null; do
      if ! kill -0 "$(cat "$dir/pids/airlock-webhook.pid")" 2>/dev/null || ((SECONDS >= deadline)); then
        log "the webhook did not become ready; last log lines:"
        tail -n 30 "$dir/logs/airlock-webhook.log" >&2
        exit 1
      fi
      sleep 0.2
    done
    register
    log "webhook ready on https://127.0.0.1:$webhook_port (admin http://127.0.0.1:$admin_port) and registered"
    ;;
  stop)
    unregister || true
    f=$dir/pids/airlock-webhook.pid
    if [[ -f "$f" ]]; then
      kill -TERM "$(cat "$f")" 2>/dev/null || true
      rm -f "$f"
    fi
    ;;
  register) register ;;
  unregister) unregister ;;
  *)
    echo "usage: $0 start|stop|register|unregister [state dir]" >&2
    exit 2
    ;;
esac
