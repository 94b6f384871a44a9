#!/usr/bin/env bash
# The main job on embedded defaults: the continual-learning loop for
# basketball (examples/continual/story.sh) with a local filesystem store
# (.engine/continual/store), a SQLite catalog (.engine/continual/catalog.db),
# the local executor and generated broadcasts. Installs what is missing.
#   ./scripts/demo.sh            # demo preset: 224x224 @ 25 fps, 2-minute broadcasts
#   PRESET=small ./scripts/demo.sh   # seconds-long videos, for a quick look
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
if [ $# -gt 0 ] && [ "$1" != basketball ]; then
  echo "error: the continual-learning demo tells basketball's story (its drift leagues: ink-league, metro-league, street-league); \`$1\` is not supported here. The other sports run with pipelines/continual.yaml.j2 -f pipelines/sports/SPORT.yaml" >&2
  exit 2
fi
need_rust
need_ffmpeg
need_torch
say "building the engine and its model worker (engine-worker, libtorch) (release)"
cargo build --release --quiet -p engine-cli -p engine-worker
TARGET="${CARGO_TARGET_DIR:-target}"
case "$TARGET" in /*) ;; *) TARGET="$PWD/$TARGET" ;; esac
ENGINE="$TARGET/release/engine"
export ENGINE
T0=$(date +%s)
examples/continual/story.sh
say "done in $(( $(date +%s) - T0 )) s: open ${WORK:-.engine/continual}/evaluation/evaluation.html (v2 vs v1 per league and signal)"
