#!/usr/bin/env bash
# The main job on embedded defaults: local filesystem store (.engine/store),
# SQLite catalog, local executor, generated data. Installs what is missing.
#   ./scripts/demo.sh [SPORT]        (basketball, soccer or hockey)
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
SPORT="${1:-basketball}"
need_rust
need_ffmpeg
say "building the engine (release)"
cargo build --release --quiet --bin engine
ENGINE=target/release/engine
say "validating and planning pipelines/broadcasts.yaml.j2 for $SPORT"
$ENGINE validate pipelines/broadcasts.yaml.j2 -f "pipelines/sports/$SPORT.yaml"
$ENGINE plan pipelines/broadcasts.yaml.j2 -f "pipelines/sports/$SPORT.yaml"
say "running it"
$ENGINE run pipelines/broadcasts.yaml.j2 -f "pipelines/sports/$SPORT.yaml"
say "running it again: everything comes from the cache"
$ENGINE run pipelines/broadcasts.yaml.j2 -f "pipelines/sports/$SPORT.yaml"
$ENGINE runs --limit 2
$ENGINE get latest/report ".engine/report-$SPORT"
say "done: open .engine/report-$SPORT/report.html (per-league table and chart)"
