#!/usr/bin/env bash
# A map stage of N trivial items (`builtin.items` feeding `builtin.upper`)
# planned and run on the local executor with an fs store: wall time, peak
# RSS and peak RSS per item, for each N. Issue 12's target: 1,000,000 items
# under 1 GB.
#
#   bench/million.sh                  # N = 10000 100000 1000000, batch 1000
#   bench/million.sh 20000 200000     # other N
#   BATCH=500 bench/million.sh
#
# ENGINE (default $CARGO_TARGET_DIR or target/, release build) is the
# binary measured: `cargo build --release -p engine-cli`. Each N runs in a
# fresh folder under WORK (default a temporary folder under /tmp) that is
# removed afterwards: a million items make about three million small files
# (input blobs, output blobs, item cache entries), some 12 GB of disk
# blocks and three million inodes on ext4.
set -euo pipefail

BATCH="${BATCH:-1000}"
NS=("$@")
[ ${#NS[@]} -gt 0 ] || NS=(10000 100000 1000000)
ENGINE="${ENGINE:-${CARGO_TARGET_DIR:-$(dirname "$0")/../target}/release/engine}"
ENGINE="$(realpath "$ENGINE")"
[ -x "$ENGINE" ] || { echo "error: no engine binary at $ENGINE; build it (cargo build --release -p engine-cli) or set ENGINE" >&2; exit 1; }
command -v /usr/bin/time >/dev/null || { echo "error: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }

work="$(mktemp -d "${WORK:-/tmp}/engine-bench-million.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "map stage of N items, $BATCH per batch; $(nproc) cpus, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%10s  %8s  %8s  %13s  %14s\n' N "plan s" "run s" "peak RSS MiB" "bytes per item"
for n in "${NS[@]}"; do
  dir="$work/$n"
  mkdir -p "$dir"
  cat > "$dir/p.yaml" <<YAML
name: bench-million
resources:
  small: { cpus: 1, memory: 64MiB }
stages:
  make:
    uses: builtin.items
    with: { count: $n, prefix: bench }
  shout:
    uses: builtin.upper
    resources: small
    map: { over: make.items, batch: $BATCH }
YAML
  (cd "$dir" && /usr/bin/time -f "%e %M" -o "$dir/plan.time" "$ENGINE" plan p.yaml >/dev/null 2>"$dir/err") ||
    { cat "$dir/err" >&2; exit 1; }
  (cd "$dir" && /usr/bin/time -f "%e %M" -o "$dir/run.time" "$ENGINE" run p.yaml >/dev/null 2>"$dir/err") ||
    { cat "$dir/err" >&2; exit 1; }
  # The run must have gone through every item.
  got="$(cd "$dir" && "$ENGINE" show latest --json | python3 -c '
import json, sys
r = json.load(sys.stdin)
t = next(t for t in r["tasks"] if t["task"] == "shout")
print(t["items"]["total"], r["status"])')"
  [ "$got" = "$n succeeded" ] || { echo "error: N=$n: the run record says \`$got\`, not \`$n succeeded\`" >&2; exit 1; }
  read -r pw _ < "$dir/plan.time"
  read -r rw rk < "$dir/run.time"
  printf '%10s  %8s  %8s  %13s  %14s\n' "$n" "$pw" "$rw" "$((rk / 1024))" "$((rk * 1024 / n))"
  rm -rf "$dir"
done
