#!/usr/bin/env bash
# Quality and training speed of the replay model on the generator's demo
# preset (issue 4): runs pipelines/replay.yaml.j2 with the joint CNN+LSTM
# baseline enabled, on truth labels, and prints the test-split figures of
# the chosen LSTM trial and of the joint model, and both training times.
#   bench/replay_model.sh [VIDEOS_PER_LEAGUE] [SPORT]
# Figures land in $OUT (default /tmp/engine-bench-replay).
source "$(dirname "$0")/../scripts/lib.sh"
cd "$(dirname "$0")/.."
N="${1:-5}"
SPORT="${2:-basketball}"
OUT="${OUT:-/tmp/engine-bench-replay}"
need_ffmpeg
need_torch
if [ -z "${ENGINE:-}" ]; then
  say "building engine and engine-worker (libtorch) (release)"
  cargo build --release --quiet -p engine-cli -p engine-worker
  ENGINE="$PWD/target/release/engine"
fi
mkdir -p "$OUT"
say "running pipelines/replay.yaml.j2 on the demo preset ($N videos per league, store $OUT/store)"
/usr/bin/time -v "$ENGINE" run pipelines/replay.yaml.j2 -f "pipelines/sports/$SPORT.yaml" \
  --store "fs://$OUT/store" --set preset=demo --set videos_per_league="$N" \
  --set clip_window=6 --set clip_labels=truth \
  --set joint=true ${EXTRA:-} > "$OUT/run.txt" 2> "$OUT/time.txt" || { tail -30 "$OUT/time.txt"; exit 1; }
grep -E "Maximum resident|Elapsed" "$OUT/time.txt" || true
show() { "$ENGINE" show "latest/$1" --json --store "fs://$OUT/store"; }
show select > "$OUT/select.json"
show joint > "$OUT/joint.json"
show extract > "$OUT/extract.json"
CHOSEN="$(python3 -c "import json;print(json.load(open('$OUT/select.json'))['task']['values']['chosen'])")"
show "$CHOSEN" > "$OUT/chosen.json"
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
sel, best, joint, ext = (json.load(open(f"{out}/{n}.json"))["task"] for n in ["select", "chosen", "joint", "extract"])
keys = ["segment_f1", "segment_mean_f1", "start_f1_1s", "end_f1_1s"]
print(f"chosen trial: {sel['values']['chosen']}")
for name, t in [("LSTM on cached features", best), ("joint CNN+LSTM", joint)]:
    v = t["values"]
    print(f"{name:>24}: " + ", ".join(f"{k} {v.get(k)}" for k in keys) + f", train {v['train_seconds']:.1f} s")
print(f"speed-up of training on cached features: {joint['values']['train_seconds'] / best['values']['train_seconds']:.1f}x")
print(f"feature extraction: {ext['values']['items_run']} videos run, {ext['values']['items_cached']} cached")
print("per league (LSTM): " + json.dumps({k: v.get("segment_f1") for k, v in sel.get("leagues", {}).items()}))
PY

# A golden set the pipeline never saw (another seed), through `engine detect`
# (the production path), scored against the generator's truth.
GOLDEN="$OUT/golden-${GOLDEN_SEED:-1234}"
if [ ! -d "$GOLDEN" ]; then
  for L in $(sed -n 's/^leagues: \[\(.*\)\]/\1/p' "pipelines/sports/$SPORT.yaml" | tr -d ' ' | tr ',' ' '); do
    "$ENGINE" synth --sport "$SPORT" --league "$L" --preset demo --count "${GOLDEN_PER_LEAGUE:-3}" --seed "${GOLDEN_SEED:-1234}" --out "$GOLDEN" >/dev/null
  done
fi
for v in "$GOLDEN"/*.mp4; do
  "$ENGINE" detect "$v" --model "${MODEL:-latest/select}" --store "fs://$OUT/store" --json > "${v%.mp4}.pred.json"
done
python3 bench/score_golden.py "$GOLDEN"
