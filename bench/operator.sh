#!/usr/bin/env bash
# Operator benchmark (make bench): DynamicAddressGroup convergence and memory, side by side in one run
# with a minimal client-go informer controller doing the same job (bench/operator/peer), plus the
# in-process index benchmark (operator/examples/bench_index.rs).
#
# Cluster: its own local control plane (e2e/controlplane/up.sh, state .airlock/bench, ports 16740–16751,
# 4 kwok nodes), stopped on exit. Both controllers use the admin kubeconfig. Load and checks:
# operator/examples/bench_convergence.rs. The Airlock operator writes every group's status, so the two
# controllers run one after the other on the same pods, groups and change sequence:
#   1. with the 100 groups (90 ordinary expressions, some with namespace selectors, and 10 probe groups)
#      but no pods, each controller is started, synced, and its RSS (VmRSS) read: the baseline; both stop;
#   2. BENCH_PODS (2,000) pods are created in 5 namespaces (no controller running, so creating them is
#      not slowed down by thousands of status writes);
#   3. phase A: the Airlock operator starts, lists the pods; once every group's status is what Airlock's
#      own index computes from the cluster, its RSS is read again; then BENCH_CHANGES (200) label
#      changes, one after another, each moving a pod into a probe group (and to another app); latency =
#      patch response → a watch on the group lists the pod; then, after a reset, the same changes again,
#      timed until every group each touched (the probe and the ordinary groups the pod left or joined)
#      shows it;
#   4. phase B: Airlock stops, the pods are relabelled back, the client-go peer starts, and the same
#      (RSS once the groups are current, then the same change sequence).
#   5. the floor: the peer stops, the pods are relabelled back, and the driver itself does the bare
#      round trips every controller needs — pod event in, one status write to the probe group, group event
#      out — with no expression evaluated and none of the other groups written; the same change sequence.
#      No controller can converge faster on this cluster; the summary compares both controllers with it.
# Memory per pod = (RSS with the pods cached − RSS of the same binary with none) / pods. The peer's RSS is
# read after a forced GC (SIGUSR1 → debug.FreeOSMemory), its smallest; its figure without the GC is
# printed too. Airlock's RSS is read as it is (nothing can trim it).
# Targets (issue 4): convergence p99 ≤ 100 ms and ≤ 0.5 × the peer's; memory per pod ≤ 0.3 × the
# peer's; index update p99 ≤ 50 µs. The script prints figures and ratios; it does not fail on a target.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export AIRLOCK_ENV_DIR=$root/.airlock/bench
export AIRLOCK_PORT_BASE=16740
base=$AIRLOCK_PORT_BASE
dir=$AIRLOCK_ENV_DIR
pods=${BENCH_PODS:-2000}
changes=${BENCH_CHANGES:-200}
operator_admin=127.0.0.1:$((base + 12))
peer_addr=127.0.0.1:$((base + 13))
log() { echo "[bench] $*" >&2; }

# --- build -------------------------------------------------------------------------------------------
cargo build -q --release -p airlock-operator --bin airlock-operator --example bench_index \
  --example bench_convergence
cargo build -q -p airlock-crds --bin crdgen
target=${CARGO_TARGET_DIR:-$root/target}
operator=$target/release/airlock-operator
driver=$target/release/examples/bench_convergence

# The peer is built outside the repository, keyed by its sources, like the control plane (build.sh).
peer_src=$root/bench/operator/peer
sum=$(cat "$peer_src"/go.mod "$peer_src"/go.sum "$peer_src"/*.go | sha256sum | cut -c1-12)
peer=${XDG_CACHE_HOME:-$HOME/.cache}/airlock-bench/peer-$sum/peer
if [[ ! -x "$peer" ]]; then
  log "building the client-go peer into $(dirname "$peer")"
  mkdir -p "$(dirname "$peer")"
  (cd "$peer_src" && GOTOOLCHAIN=local GOFLAGS="-mod=readonly -trimpath -buildvcs=false" CGO_ENABLED=0 \
    go build -o "$peer" .)
fi

# --- in-process index (before the cluster starts, on a quieter machine) --------------------------------
log "index benchmark (50,000 pods, 100 groups)"
index_out=$("$target/release/examples/bench_index")
echo "$index_out" >&2
index_line=$(grep -E '^index: [0-9]+ pods, [0-9]+ groups:' <<<"$index_out")

# --- cluster -------------------------------------------------------------------------------------------
stop_pid() { # stop_pid <pid file>: TERM, then KILL after 5 s
  local f=$1 pid
  [[ -f "$f" ]] || return 0
  pid=$(cat "$f")
  rm -f "$f"
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  stop_pid "$dir/pids/bench-peer.pid"
  stop_pid "$dir/pids/airlock-operator.pid"
  e2e/controlplane/down.sh "$dir" >/dev/null 2>&1 || true
}
trap cleanup EXIT

export KUBECONFIG
KUBECONFIG=$(AIRLOCK_NODES=4 e2e/controlplane/up.sh | tail -n 1)
bin=$(e2e/controlplane/build.sh --print)
kubectl() { "$bin/kubectl" "$@"; }
"$target/debug/crdgen" --plain | kubectl apply --server-side --field-manager=airlock -f - >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd -l app.kubernetes.io/part-of=airlock >/dev/null
kubectl create namespace airlock-system >/dev/null
"$driver" setup >&2

wait_ready() { # wait_ready <name> <url> <pid file> <log>
  local deadline=$((SECONDS + 60))
  until curl -sf "$2" >/dev/null; do
    if ! kill -0 "$(cat "$3")" 2>/dev/null || ((SECONDS >= deadline)); then
      log "$1 did not become ready; last log lines:"
      tail -n 30 "$4" >&2
      exit 1
    fi
    sleep 0.1
  done
}
start_operator() {
  # MALLOC_ARENA_MAX as the chart sets it for the operator.
  MALLOC_ARENA_MAX=1 AIRLOCK_LOG_FORMAT=json RUST_LOG=info "$operator" --manage-webhooks false --admin-addr "$operator_admin" \
    --identity bench --namespace airlock-system >>"$dir/logs/airlock-operator.log" 2>&1 </dev/null &
  echo $! >"$dir/pids/airlock-operator.pid"
  wait_ready operator "http://$operator_admin/ready" "$dir/pids/airlock-operator.pid" "$dir/logs/airlock-operator.log"
}
start_peer() {
  "$peer" --kubeconfig "$KUBECONFIG" --addr "$peer_addr" >>"$dir/logs/bench-peer.log" 2>&1 </dev/null &
  echo $! >"$dir/pids/bench-peer.pid"
  wait_ready peer "http://$peer_addr/ready" "$dir/pids/bench-peer.pid" "$dir/logs/bench-peer.log"
}
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$(cat "$dir/pids/$1.pid")/status"; } # KiB
# The peer's RSS after a forced GC that returns free pages to the OS.
peer_rss_gc() {
  kill -USR1 "$(cat "$dir/pids/bench-peer.pid")"
  sleep 1
  rss bench-peer
}

# --- 1: baselines, no pods ------------------------------------------------------------------------------
start_operator
start_peer
sleep 3
a0=$(rss airlock-operator)
p0=$(rss bench-peer)
p0gc=$(peer_rss_gc)
log "baseline RSS (no pods): airlock ${a0} KiB, client-go ${p0} KiB (${p0gc} KiB after GC)"
stop_pid "$dir/pids/bench-peer.pid"
stop_pid "$dir/pids/airlock-operator.pid"

# --- 2: pods ---------------------------------------------------------------------------------------------
"$driver" pods --count "$pods" >&2

# --- 3: phase A, the Airlock operator ----------------------------------------------------------------------
start_operator
"$driver" wait-synced --timeout 120 >&2
sleep 3
a1=$(rss airlock-operator)
log "phase A: airlock RSS with $pods pods ${a1} KiB; $changes label changes"
out_a=$("$driver" converge --who airlock --changes "$changes" --count "$pods")
echo "$out_a" >&2
# The same changes again, timed until every group they touch shows them (a separate run: it watches all
# the groups, which costs the driver more than watching the probes).
"$driver" reset --changes "$changes" --count "$pods" >&2
"$driver" wait-synced --timeout 120 >&2
out_a2=$("$driver" converge --who airlock --every-group --changes "$changes" --count "$pods")
echo "$out_a2" >&2
stop_pid "$dir/pids/airlock-operator.pid"

# --- 4: phase B, the client-go peer -------------------------------------------------------------------------
"$driver" reset --changes "$changes" --count "$pods" >&2
start_peer
"$driver" wait-synced --timeout 120 >&2
sleep 3
p1=$(rss bench-peer)
p1gc=$(peer_rss_gc)
log "phase B: client-go RSS with $pods pods ${p1} KiB (${p1gc} KiB after GC); the same $changes label changes"
out_b=$("$driver" converge --who client-go --changes "$changes" --count "$pods")
echo "$out_b" >&2
"$driver" reset --changes "$changes" --count "$pods" >&2
"$driver" wait-synced --timeout 120 >&2
out_b2=$("$driver" converge --who client-go --every-group --changes "$changes" --count "$pods")
echo "$out_b2" >&2
stop_pid "$dir/pids/bench-peer.pid"

# --- 5: the floor -------------------------------------------------------------------------------------------
"$driver" reset --changes "$changes" --count "$pods" >&2
out_f=$("$driver" floor --changes "$changes" --count "$pods")
echo "$out_f" >&2

# --- summary ----------------------------------------------------------------------------------------------
echo
python3 - "$pods" "$changes" "$out_a" "$out_b" "$a0" "$a1" "$p0" "$p1" "$p0gc" "$p1gc" "$out_f" "$out_a2" "$out_b2" <<'PY'
import sys
pods, changes = int(sys.argv[1]), int(sys.argv[2])
def figures(line):
    return {k: float(v) for k, v in (f.split("=") for f in line.split()[1:]) if k not in ("who",)}
a, b, f = figures(sys.argv[3]), figures(sys.argv[4]), figures(sys.argv[11])
a2, b2 = figures(sys.argv[12]), figures(sys.argv[13])
a0, a1, p0, p1, p0gc, p1gc = (int(x) for x in sys.argv[5:11])
per_pod = lambda before, after: (after - before) / pods  # KiB per pod
ma, mp, mp_nat = per_pod(a0, a1), per_pod(p0gc, p1gc), per_pod(p0, p1)
print(f"Operator benchmark: {pods} pods, 100 groups, {changes} label changes per controller (same cluster, same run)")
print(f"{'controller':<11} {'p50 (ms)':>9} {'p90 (ms)':>9} {'p99 (ms)':>9} {'max (ms)':>9} {'lost':>5}   memory")
print(f"{'airlock':<11} {a['p50_ms']:9.1f} {a['p90_ms']:9.1f} {a['p99_ms']:9.1f} {a['max_ms']:9.1f} {int(a['lost']):5d}"
      f"   {ma:.2f} KiB/pod (RSS {a0/1024:.1f} → {a1/1024:.1f} MiB)")
print(f"{'client-go':<11} {b['p50_ms']:9.1f} {b['p90_ms']:9.1f} {b['p99_ms']:9.1f} {b['max_ms']:9.1f} {int(b['lost']):5d}"
      f"   {mp:.2f} KiB/pod after GC (RSS {p0gc/1024:.1f} → {p1gc/1024:.1f} MiB); {mp_nat:.2f} KiB/pod without")
print(f"{'floor':<11} {f['p50_ms']:9.1f} {f['p90_ms']:9.1f} {f['p99_ms']:9.1f} {f['max_ms']:9.1f} {int(f['lost']):5d}"
      f"   (round trips only: pod event, one status write, group event)")
ratio_p99 = a["p99_ms"] / b["p99_ms"] if b["p99_ms"] else float("inf")
ratio_mem = ma / mp if mp > 0 else float("inf")
print(f"operator: convergence p50 {a['p50_ms']:.1f} ms p99 {a['p99_ms']:.1f} ms (client-go peer p50 {b['p50_ms']:.1f} "
      f"p99 {b['p99_ms']:.1f} ms; ratio p99 {ratio_p99:.2f}, target ≤ 0.5 and ≤ 100 ms); memory per pod "
      f"{ma:.2f} KiB vs {mp:.2f} KiB (ratio {ratio_mem:.2f}, target ≤ 0.3)")
print(f"operator: until every group a change touched shows it ({a2['groups_per_change']:.1f} groups per change, a "
      f"second run): airlock p50 {a2['all_p50_ms']:.1f} ms p99 {a2['all_p99_ms']:.1f} ms, client-go p50 "
      f"{b2['all_p50_ms']:.1f} ms p99 {b2['all_p99_ms']:.1f} ms (ratio p99 {a2['all_p99_ms'] / b2['all_p99_ms']:.2f})")
print(f"operator: the floor on this cluster is p50 {f['p50_ms']:.1f} ms p99 {f['p99_ms']:.1f} ms; airlock p99 "
      f"{a['p99_ms'] / f['p99_ms']:.2f} x the floor, client-go {b['p99_ms'] / f['p99_ms']:.2f} x; 0.5 x the peer's p99 "
      f"is {0.5 * b['p99_ms']:.1f} ms, {'below' if 0.5 * b['p99_ms'] < f['p99_ms'] else 'above'} the floor")
PY
echo "$index_line"
