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
echo "model $MODEL:"
python3 bench/score_golden.py "$OUT" ${ERRORS:+--errors}
