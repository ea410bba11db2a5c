#!/usr/bin/env bash
# Stops the local control plane started by up.sh and checks that nothing is left behind.
#   e2e/controlplane/down.sh [state dir]   (default: $AIRLOCK_ENV_DIR or .airlock/dev)
# Keeps certificates and logs; deletes etcd's data so the next start is clean.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
dir=${1:-${AIRLOCK_ENV_DIR:-$root/.airlock/dev}}
log() { echo "[down] $*" >&2; }
# A process that exited but whose parent (e.g. a still-running up.sh) has not reaped it is a zombie:
# it holds no ports and counts as stopped.
running() { [[ -r "/proc/$1/stat" ]] && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }

shopt -s nullglob
# Reverse start order: simulated nodes and controllers first, etcd last.
order=(airlock-webhook airlock-operator kwok kube-scheduler kube-controller-manager kube-apiserver etcd)
# One at a time, waiting for each: kube-apiserver shuts down slowly if etcd is already gone.
stopped=0
left=()
for name in "${order[@]}" $(cd "$dir/pids" 2>/dev/null && ls -- *.pid 2>/dev/null | sed 's/\.pid$//'); do
  f="$dir/pids/$name.pid"
  [[ -f "$f" ]] || continue
  pid=$(cat "$f")
  rm -f "$f"
  running "$pid" || continue
  # Each component runs in its own session (setsid): signal the whole process group.
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 100); do running "$pid" || break; sleep 0.1; done
  if running "$pid"; then
    log "$name (pid $pid) did not stop in 10s; killing it"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
    sleep 0.2
  fi
  if running "$pid"; then left+=("$name:$pid"); else stopped=$((stopped + 1)); fi
done
rm -rf "$dir/etcd"
if [[ ${#left[@]} -gt 0 ]]; then
  log "error: still running: ${left[*]}"
  exit 1
fi
log "stopped $stopped processes ($dir)"
