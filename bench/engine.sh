#!/usr/bin/env bash
# Detection-engine benchmark (make bench): the engine with every default detector on, side by side in one
# run with the same rules in Vectorscan (Debian's libvectorscan-dev, the Hyperscan fork that Debian ships
# for every architecture) and in the regex crate's RegexSet, and memchr reading the same bytes as the
# physical floor. See sidecar/examples/engine_bench.rs for the texts, the figures and the targets.
#
# BENCH_ENGINE_SECONDS (default 2) is the time spent on each figure. Vectorscan's compile of the ~680 rules
# takes about a minute on the development machine; it is not part of its figures.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
secs=${BENCH_ENGINE_SECONDS:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! pkg-config --exists libhs 2>/dev/null; then
  echo "[bench] installing Vectorscan from Debian's packages" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libvectorscan-dev pkg-config >/dev/null
fi
# shellcheck disable=SC2046 # pkg-config prints several flags
gcc -O2 -Wall -o "$work/hs_peer" bench/engine/hs_peer.c $(pkg-config --cflags --libs libhs)
cargo build -q --release -p airlock-sidecar --example engine_bench
bin=${CARGO_TARGET_DIR:-$root/target}/release
echo "[bench] detection engine vs Vectorscan $(pkg-config --modversion libhs), RegexSet and memchr (${secs}s per figure)" >&2
"$bin/examples/engine_bench" --seconds "$secs" --hs-peer "$work/hs_peer"
