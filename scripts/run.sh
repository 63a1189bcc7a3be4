#!/usr/bin/env bash
# Quick start: builds the web app and pocketdev and starts it on the embedded default (SQLite in ./data).
# Any arguments are passed to `pocketdev serve`, for example --listen 0.0.0.0:8112.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

require_rust
ensure_package tmux tmux
# The web app is built first: cargo embeds web/dist in the binary.
build_web

say "building pocketdev"
cargo build --locked --bin pocketdev
exec target/debug/pocketdev serve "$@"
