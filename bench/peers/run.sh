#!/usr/bin/env bash
# Engine vs DVC vs Snakemake on the same pipeline of N trivial shell stages.
# See bench/peers/BENCHMARKS.md. Not run by CI.
#
#   bench/peers/run.sh                                  # full: N=50,500,5000, 3 reps
#   ENGINE=/path/to/engine bench/peers/run.sh --sizes 50 --reps 1 --quiet-wait 0   # quick
#
# ENGINE defaults to target/release/engine (build it first: cargo build --release).
# Every option of run.py passes through (--help).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export ENGINE="${ENGINE:-$repo/target/release/engine}"
py="${PYTHON:-python3}"
exec "$py" "$here/run.py" "$@"
