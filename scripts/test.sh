#!/usr/bin/env bash
# Runs every test against real components: ffmpeg, PostgreSQL, an S3
# server on loopback and a two-node Slurm cluster (two slurmd on this machine).
# Installs and starts what is missing.
#   ./scripts/test.sh [extra nextest args]
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
need_rust
need_ffmpeg
need_torch
need_chromium
start_postgres
start_s3_server
start_slurm
trap '[ -n "${S3_PID:-}" ] && kill "$S3_PID" 2>/dev/null || true' EXIT
command -v cargo-nextest >/dev/null || { say "installing cargo-nextest"; cargo install --quiet --locked cargo-nextest; }
# The same crate features in every build here, so libtorch's bindings and
# the workspace build once. `engine` never links libtorch; the workspace
# build includes `engine-worker` (the model stages), which does.
FEATURES="engine-cli/torch,bench/torch"
# A clean build's incremental state is only disk on a machine that builds once.
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL=0; fi
free_gb=$(df -Pk . | awk 'NR==2 {print int($4 / 1048576)}')
if [ "$free_gb" -lt 20 ]; then
  say "warning: only ${free_gb} GB free here; a clean test build needs about 20 GB (free some, or set CARGO_TARGET_DIR to a larger disk)"
fi
# Formatting: a failure in CI, a warning on a developer's machine (tests
# still run on unformatted work in progress).
if command -v rustfmt >/dev/null; then
  say "checking the formatting (cargo fmt --check)"
  if ! cargo fmt --check >/dev/null; then
    if [ -n "${CI:-}" ]; then
      echo "error: some files are not formatted; run \`cargo fmt\` and commit the result" >&2
      cargo fmt --check -- --files-with-diff >&2 || true
      exit 1
    fi
    say "warning: some files are not formatted (\`cargo fmt\` fixes them)"
  fi
else
  say "warning: rustfmt is not installed; formatting not checked (rustup component add rustfmt)"
fi
say "checking that the committed JSON Schema is current"
cargo run --quiet -p engine-cli --features engine-cli/torch --bin engine -- schema --check schemas/pipeline.schema.json
say "running the tests (with the torch feature: the replay model on libtorch)"
cargo nextest run --workspace --features "$FEATURES" --no-fail-fast "$@"
say "spec parser fuzz smoke run"
cargo run --quiet --features bench/torch -p bench --bin fuzz_spec -- 3000
