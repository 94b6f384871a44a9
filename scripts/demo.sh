#!/usr/bin/env bash
# The main job on embedded defaults: local filesystem store (.engine/store),
# SQLite catalog (.engine/catalog.db), local executor, generated data.
# Installs what is missing.
#   ./scripts/demo.sh [basketball|soccer|hockey]
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
SPORT="${1:-basketball}"
case "$SPORT" in
  basketball|soccer) SYNTH_SPORT="$SPORT" ;;
  hockey|ice-hockey) SPORT=hockey; SYNTH_SPORT=ice-hockey ;;
  *) echo "error: unknown sport \`$SPORT\`; use basketball, soccer or hockey" >&2; exit 2 ;;
esac
VALUES="pipelines/sports/$SPORT.yaml"
need_rust
need_ffmpeg
need_torch
say "building the engine with the replay model on libtorch (release)"
cargo build --release --quiet --features engine-cli/torch --bin engine
ENGINE="${CARGO_TARGET_DIR:-target}/release/engine"
if [ ! -d ".engine/videos/$SPORT" ]; then
  say "generating synthetic $SPORT broadcasts (every league and broadcaster style, with drift styles)"
  $ENGINE synth --sport "$SYNTH_SPORT" --count 12 --seed 7 --out ".engine/videos/$SPORT"
fi
say "importing them into the SQLite catalog .engine/catalog.db"
$ENGINE catalog import ".engine/videos/$SPORT"
$ENGINE catalog ls --sport "$SYNTH_SPORT" | tail -3
say "validating and planning pipelines/catalog-report.yaml.j2"
$ENGINE validate pipelines/catalog-report.yaml.j2 -f "$VALUES"
$ENGINE plan pipelines/catalog-report.yaml.j2 -f "$VALUES"
say "running it"
$ENGINE run pipelines/catalog-report.yaml.j2 -f "$VALUES"
say "running it again: the query reruns, every video comes from the cache"
$ENGINE run pipelines/catalog-report.yaml.j2 -f "$VALUES"
REPORT_RUN="$(ls -1 .engine/store/runs | sort | tail -1 | sed 's/.json$//')"
say "replay training data from the catalog: teacher tags, review queue, clips, split (pipelines/replay-data.yaml.j2)"
$ENGINE run pipelines/replay-data.yaml.j2 -f "$VALUES" --set source=catalog
say "the replay detector: backbone, features per video, LSTM sweep in parallel, best trial (pipelines/replay.yaml.j2)"
$ENGINE run pipelines/replay.yaml.j2 -f "$VALUES" --set videos_per_league=5 --set clip_window=4
$ENGINE ref set "models/$SPORT@production" latest/select --note "demo: best trial on the test split"
$ENGINE get "models/$SPORT@production" ".engine/model-$SPORT" >/dev/null
DEMO_VIDEO="$(ls .engine/videos/$SPORT/*.mp4 | head -1)"
say "engine detect $DEMO_VIDEO --model models/$SPORT@production"
$ENGINE detect "$DEMO_VIDEO" --model "models/$SPORT@production"
say "generating inside a pipeline: four leagues in parallel (pipelines/broadcasts.yaml.j2)"
$ENGINE run pipelines/broadcasts.yaml.j2 -f "$VALUES"
$ENGINE runs --limit 3
$ENGINE show latest --html ".engine/run-timeline.html" >/dev/null
$ENGINE get "$REPORT_RUN/report" ".engine/report-$SPORT" >/dev/null
say "done: open .engine/report-$SPORT/report.html (per-league table and chart), .engine/model-$SPORT/report.html (trials, loss curves, test figures per league) and .engine/run-timeline.html"
