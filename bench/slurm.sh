#!/usr/bin/env bash
# A map stage of N trivial items (`builtin.upper`) on the local executor and
# on Slurm (one job array of N/BATCH elements): wall time, the engine's own
# CPU time and peak memory, and how hard the run's one poller worked the
# controller (`executor_stats` in the run record: squeue calls per second).
#
#   source scripts/lib.sh; start_slurm     # a test cluster on this machine
#   bench/slurm.sh [N] [BATCH]             # default 1000 items, 50 per element
#
# ENGINE (default target/debug/engine, or $CARGO_TARGET_DIR's) is the binary
# the jobs run too; the store is an fs:// folder the nodes can read.
set -euo pipefail

N="${1:-1000}"
BATCH="${2:-50}"
ENGINE="${ENGINE:-${CARGO_TARGET_DIR:-$(dirname "$0")/../target}/debug/engine}"
ENGINE="$(realpath "$ENGINE")"
[ -x "$ENGINE" ] || { echo "error: no engine binary at $ENGINE; build it (cargo build -p engine-cli) or set ENGINE" >&2; exit 1; }
[ -n "${SLURM_CONF:-}" ] || { echo "error: SLURM_CONF is not set; run \`source scripts/lib.sh; start_slurm\` first" >&2; exit 1; }
command -v /usr/bin/time >/dev/null || { echo "error: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }

work="$(mktemp -d /tmp/engine-bench-slurm.XXXXXX)"
trap 'rm -rf "$work"' EXIT
cat > "$work/p.yaml" <<YAML
name: bench-slurm
resources:
  small: { cpus: 1, memory: 64MiB }
stages:
  make:
    uses: builtin.items
    with: { count: $N, prefix: bench }
  shout:
    uses: builtin.upper
    resources: small
    map: { over: make.items, batch: $BATCH }
YAML

run() { # executor -> prints "wall_s cpu_s maxrss_kb"
  local ex="$1" dir="$work/$1"
  mkdir -p "$dir" && cp "$work/p.yaml" "$dir/"
  (cd "$dir" && /usr/bin/time -f "%e %U %S %M" -o "$dir/time" \
    "$ENGINE" run p.yaml --executor "$ex" >/dev/null 2>"$dir/err") ||
    { cat "$dir/err" >&2; exit 1; }
  awk '{printf "%s %.2f %s\n", $1, $2 + $3, $4}' "$dir/time"
}

read -r lw lc lm <<<"$(run local)"
read -r sw sc sm <<<"$(run slurm)"
stats="$(cd "$work/slurm" && "$ENGINE" show latest --json | python3 -c '
import json, sys
r = json.load(sys.stdin)
s = r["executor_stats"]
t = next(t for t in r["tasks"] if t["task"] == "shout")
print(s["sbatch_calls"], s["jobs"], s["squeue_calls"], round(s["squeue_calls"] / max(s["seconds"], 1e-3), 2),
      s["scancel_calls"], len(t["jobs"]), len({j.get("node") for j in t["jobs"]}))')"
read -r sb jobs sq sqps scn elements nodes <<<"$stats"
cat <<EOF
map stage of $N items, $BATCH per batch ($(sinfo -h -N -o %N | wc -l) Slurm node(s))
                wall s   engine cpu s   engine peak MiB
local          $(printf '%7s   %12s   %15s' "$lw" "$lc" "$((lm / 1024))")
slurm          $(printf '%7s   %12s   %15s' "$sw" "$sc" "$((sm / 1024))")
slurm: $sb sbatch call(s), $elements array element(s) on $nodes node(s), $jobs job(s) followed,
       $sq squeue call(s) ($sqps/s), $scn scancel call(s)
EOF
