#!/usr/bin/env bash
# Runs every check and test: formatting, lints, unit and integration tests.
# Installs what is missing (tmux) or says what to install.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

require_rust
ensure_package tmux tmux

say "formatting (cargo fmt --check)"
cargo fmt --all -- --check

say "lints (cargo clippy, warnings are errors)"
cargo clippy --locked --all-targets -- -D warnings

say "unit and integration tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --no-fail-fast
else
    say "cargo-nextest not found; using cargo test (install it with: cargo install cargo-nextest --locked)"
    cargo test --locked --no-fail-fast
fi
