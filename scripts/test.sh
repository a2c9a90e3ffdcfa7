#!/usr/bin/env bash
# The test command: system packages, then every test in the workspace (the conformance suite
# included) with one cargo target directory outside the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/flotilla/target}"
cargo test --workspace --all-features --all-targets
