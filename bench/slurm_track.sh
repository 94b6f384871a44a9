#!/usr/bin/env bash
# The engine's own cost of following N Slurm jobs at once: a map stage of N
# one-item batches goes to the cluster as job arrays whose elements are
# held pending (`--begin=now+1hour`, from the profile), so N jobs sit in the
# queue while the run's one poller follows them; after SECONDS the run gets
# Ctrl-C and cancels them all. Two runs (SHORT and LONG seconds) separate
# the one-off cost (plan, N batch documents, the `sbatch` calls) from the
# cost per second of following N jobs (`squeue` calls, parsing their N
# lines, and the `squeue` processes themselves: /usr/bin/time counts the
# children the engine waits for).
#
#   source scripts/lib.sh; start_slurm     # a test cluster on this machine
#   bench/slurm_track.sh [N] [SHORT] [LONG]  # default 10000 jobs, 20 s and 60 s
#
# ENGINE defaults to target/release/engine (or $CARGO_TARGET_DIR's).
set -euo pipefail

N="${1:-10000}"
SHORT="${2:-20}"
LONG="${3:-60}"
ENGINE="${ENGINE:-${CARGO_TARGET_DIR:-$(dirname "$0")/../target}/release/engine}"
ENGINE="$(realpath "$ENGINE")"
[ -x "$ENGINE" ] || { echo "error: no engine binary at $ENGINE; build it (cargo build --release -p engine-cli) or set ENGINE" >&2; exit 1; }
[ -n "${SLURM_CONF:-}" ] || { echo "error: SLURM_CONF is not set; run \`source scripts/lib.sh; start_slurm\` first" >&2; exit 1; }
command -v /usr/bin/time >/dev/null || { echo "error: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }
if [ "$(squeue -h | wc -l)" -ne 0 ]; then
  echo "error: the queue is not empty (squeue lists jobs); this bench needs the cluster to itself" >&2
  exit 1
fi

work="$(mktemp -d /tmp/engine-bench-track.XXXXXX)"
trap 'scancel --name=engine:follow 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/p.yaml" <<YAML
name: bench-track
resources:
  held: { cpus: 1, memory: 64MiB }
stages:
  make:
    uses: builtin.items
    with: { count: $N, prefix: track }
  follow:
    uses: builtin.upper
    resources: held
    map: { over: make.items, batch: 1 }
YAML
# Only the map stage's class is held; \`make\` runs at once.
cat > "$work/engine.toml" <<TOML
[profiles.default.slurm.classes.held]
extra_args = ["--begin=now+1hour"]
TOML

run() { # seconds -> prints "wall_s cpu_s maxrss_kb squeue_calls arrays"
  local secs="$1" dir="$work/run-$1"
  mkdir -p "$dir" && cp "$work/p.yaml" "$work/engine.toml" "$dir/"
  (cd "$dir" && exec /usr/bin/time -f "%e %U %S %M" -o "$dir/time" \
    "$ENGINE" run p.yaml --executor slurm >"$dir/out" 2>"$dir/err") &
  local pid=$!
  # Wait until every element is queued, then follow for `secs` seconds.
  local t=0
  until [ "$(squeue -h -r -t PD -n engine:follow 2>/dev/null | wc -l)" -ge "$N" ]; do
    sleep 0.5; t=$((t + 1))
    [ "$t" -lt 1200 ] || { echo "error: the $N elements never all queued; see $dir/err" >&2; cat "$dir/err" >&2; exit 1; }
  done
  sleep "$secs"
  # Ctrl-C goes to the engine (the child of /usr/bin/time).
  pkill -INT -P "$pid"
  wait "$pid" || true
  local left=0
  for _ in $(seq 1 60); do
    left="$(squeue -h -n engine:follow | wc -l)"
    [ "$left" -eq 0 ] && break
    sleep 0.5
  done
  [ "$left" -eq 0 ] || { echo "error: $left job(s) still queued after the run was cancelled" >&2; exit 1; }
  local stats
  stats="$(cd "$dir" && "$ENGINE" show latest --json | python3 -c '
import json, sys
r = json.load(sys.stdin)
s = r.get("executor_stats") or {}
print(s.get("squeue_calls", 0), round(s.get("seconds", 0), 1), s.get("sbatch_calls", 0), s.get("scancel_calls", 0))')"
  tail -1 "$dir/time" | awk -v s="$stats" '{printf "%s %.2f %s %s\n", $1, $2 + $3, $4, s}'
}

read -r sw sc sm ssq sse ssb ssc <<<"$(run "$SHORT")"
read -r lw lc lm lsq lse lsb lsc <<<"$(run "$LONG")"
python3 - "$N" "$SHORT" "$LONG" "$sw" "$sc" "$sm" "$ssq" "$sse" "$ssb" "$ssc" "$lw" "$lc" "$lm" "$lsq" "$lse" "$lsb" "$lsc" <<'PY'
import sys
n, short, long_ = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
s = dict(zip("wall cpu rss squeue secs sbatch scancel".split(), map(float, sys.argv[4:11])))
l = dict(zip("wall cpu rss squeue secs sbatch scancel".split(), map(float, sys.argv[11:18])))
per_s = (l["cpu"] - s["cpu"]) / (l["wall"] - s["wall"])
polls = (l["squeue"] - s["squeue"]) / (l["wall"] - s["wall"])
one_off = s["cpu"] - per_s * s["wall"]
print(f"following {n} Slurm jobs (array elements held pending), runs of {short:.0f} s and {long_:.0f} s after all were queued")
for name, r in (("short", s), ("long", l)):
    print(f"  {name:5}: wall {r['wall']:.1f} s, engine cpu {r['cpu']:.2f} s (with its squeue children), peak {r['rss'] / 1024:.0f} MiB, "
          f"{r['sbatch']:.0f} sbatch, {r['squeue']:.0f} squeue, {r['scancel']:.0f} scancel")
print(f"  following: {per_s * 100:.1f}% of one core ({per_s * 1000:.0f} ms of cpu per second), {polls:.2f} squeue calls per second")
print(f"  one-off (plan, {n} batch documents, sbatch): about {one_off:.1f} s of cpu")
PY
