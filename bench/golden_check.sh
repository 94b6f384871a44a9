#!/usr/bin/env bash
# An independent check of a deployed replay detector on a golden set made
# with seeds the pipeline never used: generates GOLDEN_PER_LEAGUE videos of
# every basketball league (the drifted ones included), runs each through
# `engine detect` (the production path), and scores the segments with a
# scorer written apart from the engine's (Python, below) against the
# generator's ground truth.
#   ENGINE=target/release/engine STORE=fs://.engine/continual/store \
#     bench/golden_check.sh [SEED] [MODEL]
# Defaults: SEED 4242, MODEL models/basketball@production, PRESET demo,
# GOLDEN_PER_LEAGUE 4. Videos and predictions land in $OUT (default
# /tmp/engine-golden-SEED).
set -euo pipefail
cd "$(dirname "$0")/.."
SEED="${1:-4242}"
MODEL="${2:-models/basketball@production}"
ENGINE="${ENGINE:-engine}"
STORE="${STORE:-fs://.engine/continual/store}"
PRESET="${PRESET:-demo}"
OUT="${OUT:-/tmp/engine-golden-$SEED}"
LEAGUES="${LEAGUES:-hoops-pro court-league baltic-bl ink-league metro-league street-league}"
mkdir -p "$OUT"
for L in $LEAGUES; do
  ls "$OUT"/"$L"-*.mp4 >/dev/null 2>&1 ||
    "$ENGINE" synth --sport basketball --league "$L" --preset "$PRESET" \
      --count "${GOLDEN_PER_LEAGUE:-4}" --seed "$SEED" --out "$OUT" 2>/dev/null
done
for v in "$OUT"/*.mp4; do
  "$ENGINE" detect "$v" --model "$MODEL" --store "$STORE" --json > "${v%.mp4}.pred.json"
done
python3 - "$OUT" "$MODEL" <<'PY'
import json, sys, glob, collections
def f1(tp, np_, nt):
    p = tp / np_ if np_ else (1.0 if nt == 0 else 0.0)
    r = tp / nt if nt else 1.0
    return 0 if p + r == 0 else 2 * p * r / (p + r)
def match(pairs):
    pairs.sort(); used_a, used_b, tp = set(), set(), 0
    for _, a, b in pairs:
        if a not in used_a and b not in used_b:
            used_a.add(a); used_b.add(b); tp += 1
    return tp
def iou(a, b):
    i = max(0, min(a[1], b[1]) - max(a[0], b[0])); return i / ((a[1]-a[0]) + (b[1]-b[0]) - i)
tot = collections.defaultdict(lambda: [0, 0, 0, 0, 0, 0])
for pred_path in sorted(glob.glob(f"{sys.argv[1]}/*.pred.json")):
    pred = json.load(open(pred_path))["segments"]
    truth = json.load(open(pred_path.replace(".pred.json", ".json")))
    league = truth["video"]["league"]
    t = [(r["span"]["start"], r["span"]["end"]) for r in truth["replays"]]
    p = [(s["start"], s["end"]) for s in pred]
    seg = match([(-iou(a, b), i, j) for i, a in enumerate(p) for j, b in enumerate(t) if iou(a, b) >= 0.5])
    st = match([(abs(a[0]-b[0]), i, j) for i, a in enumerate(p) for j, b in enumerate(t) if abs(a[0]-b[0]) <= 1])
    en = match([(abs(a[1]-b[1]), i, j) for i, a in enumerate(p) for j, b in enumerate(t) if abs(a[1]-b[1]) <= 1])
    for k in (league, "all"):
        x = tot[k]; x[0] += seg; x[1] += st; x[2] += en; x[3] += len(p); x[4] += len(t); x[5] += 1
print(f"golden set {sys.argv[1]} (seeds never trained on), model {sys.argv[2]}, through `engine detect`:")
for k, (seg, st, en, np_, nt, nv) in sorted(tot.items()):
    print(f"  {k:>14}: {nv} videos, {nt} replays, {np_} predicted: segment F1@0.5 {f1(seg, np_, nt):.3f}, start F1@1s {f1(st, np_, nt):.3f}, end F1@1s {f1(en, np_, nt):.3f}")
PY
