#!/usr/bin/env bash
# CI check of the fuzz targets (fuzz/, a cargo-fuzz workspace of its own): every target
# builds, and every committed seed input replays without a failure (`-runs=0` executes the
# corpus once and stops). Finding new inputs is not CI's job: see fuzz/README.md for runs.
#
# cargo-fuzz passes nightly-only flags (-Zsanitizer, -Cpasses=sancov-module);
# RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them. The build is unoptimized (--dev)
# and without a sanitizer (-s none): the fastest build that still compiles and links every
# target with libFuzzer and coverage instrumentation. Output goes to fuzz/target.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cd fuzz
# The fuzz workspace keeps its own target dir, not the main one (which .cargo/config.toml
# and CI's CARGO_TARGET_DIR name): its flags differ and would only evict the main build.
export CARGO_TARGET_DIR="$PWD/target"
flags=(--dev -s none)
cargo fuzz build "${flags[@]}"
for dir in corpus/*/; do
    target="$(basename "$dir")"
    # A scratch dir first: libFuzzer writes new inputs to the first corpus dir, and the
    # committed seeds must stay as they are.
    mkdir -p "work/$target"
    cargo fuzz run "${flags[@]}" "$target" "work/$target" "$dir" -- -runs=0
done
