#!/usr/bin/env bash
# Runs every check and test: shell scripts, formatting, lints, benchmarks in smoke mode, unit
# and integration tests, the web app's checks and the browser tests. Installs what is missing
# (tmux, git, ssh-keygen, nginx, openssl, curl, shellcheck, fail2ban, bubblewrap, Chromium, vim-tiny, npm packages, the
# pinned Claude Code CLI) or says what to install.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
# shellcheck source=scripts/lib/leftovers.sh
source scripts/lib/leftovers.sh

# nginx lives in /usr/sbin, which is not on every user's PATH.
export PATH="$PATH:/usr/sbin:/sbin"

require_rust
ensure_package tmux tmux
ensure_package git git
# The account's SSH key for forges is made with ssh-keygen.
ensure_package ssh-keygen openssh-client
# The deploy path's end-to-end test runs the distribution's nginx with a self-signed certificate.
ensure_package nginx nginx
keep_service_off nginx nginx
ensure_package openssl openssl
ensure_package curl curl
ensure_package shellcheck shellcheck
require_node
if [ "${POCKETDEV_SKIP_E2E:-0}" != 1 ]; then
    ensure_chromium
    # The browser tests compare a full-screen editor's screen with tmux's.
    ensure_package vim.tiny vim-tiny
fi
# The fail2ban filter is checked against the server's real log with fail2ban-regex.
ensure_package fail2ban-regex fail2ban
keep_service_off fail2ban fail2ban
# Isolation's strict mode runs each account in a bubblewrap sandbox.
ensure_package bwrap bubblewrap
# The deploy test boots a Debian 12 guest (debootstrap, qemu) and drives it over SSH.
if [ "${POCKETDEV_SKIP_VM:-0}" != 1 ]; then
    ensure_package debootstrap debootstrap
    ensure_package qemu-system-x86_64 qemu-system-x86
    ensure_package qemu-img qemu-utils
    ensure_package ssh openssh-client
    ensure_package mkfs.ext4 e2fsprogs
fi

# The real Claude Code CLI, pinned, for the tests that run it against a mock API.
CLAUDE_CODE_VERSION=2.1.328
if [ ! -x .test-tools/node_modules/.bin/claude ] \
    || ! grep -q "\"version\": \"$CLAUDE_CODE_VERSION\"" .test-tools/node_modules/@anthropic-ai/claude-code/package.json 2>/dev/null; then
    if command -v npm >/dev/null 2>&1; then
        say "installing Claude Code $CLAUDE_CODE_VERSION for the tests (into .test-tools/)"
        mkdir -p .test-tools
        npm install --prefix .test-tools --no-audit --no-fund --loglevel=error \
            "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" \
            || say "WARNING: cannot install Claude Code; its tests will be skipped with a message"
    else
        say "WARNING: npm is missing (install Node.js); the Claude Code tests will be skipped"
    fi
fi

say "shell scripts (bash -n, shellcheck)"
for script in scripts/*.sh scripts/lib/*.sh tests/vm/*.sh .ci/run; do
    bash -n "$script"
done
shellcheck -x scripts/*.sh scripts/lib/*.sh tests/vm/*.sh .ci/run

# Before clippy and the tests, so the binary they build embeds the fresh app.
build_web
say "web app: type check (tsc --noEmit) and checks of the build"
(cd web && npm run --silent check && npm test --silent)

say "Markdown (markdownlint-cli2: README, DEPLOYMENT.md, docs/)"
(cd web && npx --no-install markdownlint-cli2 --config ../.markdownlint-cli2.jsonc \
    ../README.md ../DEPLOYMENT.md "../docs/*.md")

say "formatting (cargo fmt --check)"
cargo fmt --all -- --check

say "lints (cargo clippy, warnings are errors)"
cargo clippy --locked --all-targets -- -D warnings

say "benchmarks, smoke mode (full runs: cargo bench)"
for bench in benches/*.rs; do
    cargo bench --locked --profile dev --bench "$(basename "$bench" .rs)" -- --smoke
done

say "systemd units (systemd-analyze verify)"
if command -v systemd-analyze >/dev/null 2>&1; then
    units=$(mktemp -d)
    cp config/pocketdev.slice "$units/"
    # The unit names the installed binary; check it against the one just built.
    sed "s#/usr/local/bin/pocketdev#$PWD/target/debug/pocketdev#" config/pocketdev.service >"$units/pocketdev.service"
    systemd-analyze verify "$units/pocketdev.slice" "$units/pocketdev.service"
    rm -rf "$units"
else
    say "systemd-analyze is not installed here; the units were not verified"
fi

say "unit and integration tests"
status=0
leftovers_begin
# The deploy test boots a whole machine (emulated where KVM is not usable): it runs alone,
# after the others, so it neither slows them nor is slowed by them.
VM_TEST=deploy_vm::
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --no-fail-fast -E "not test($VM_TEST)" || status=$?
else
    say "cargo-nextest not found; using cargo test (install it with: cargo install cargo-nextest --locked)"
    cargo test --locked --no-fail-fast -- --skip "$VM_TEST" || status=$?
fi
if [ "${POCKETDEV_SKIP_VM:-0}" = 1 ]; then
    say "deploy test on a booted Debian 12 skipped (POCKETDEV_SKIP_VM=1)"
else
    say "deploy test on a booted Debian 12 (about 3 minutes under emulation; the guest is built once and cached)"
    if cargo nextest --version >/dev/null 2>&1; then
        cargo nextest run --locked --no-fail-fast -E "test($VM_TEST)" || status=$?
    else
        cargo test --locked --no-fail-fast --test api -- "$VM_TEST" || status=$?
    fi
fi

# Last, after the Rust tests whatever their outcome; the exit status reports both.
if [ "${POCKETDEV_SKIP_E2E:-0}" = 1 ]; then
    say "browser tests skipped (POCKETDEV_SKIP_E2E=1)"
else
    say "browser tests (Playwright in Chromium, phone and desktop profiles)"
    # The binary the Rust tests just built; building it alone would compile again with other
    # features (the tests' dev-dependencies), for nothing.
    [ -x target/debug/pocketdev ] || cargo build --locked --bin pocketdev
    npm_install e2e
    (cd e2e && npx tsc --noEmit -p . && npx playwright test) || status=1
    # Beside the Rust benchmarks' smoke runs, but here: it needs Chromium, e2e's packages and the binary.
    say "page-latency benchmark, smoke mode (full run, in e2e/: node --import ./bench/register.mjs bench/page.ts)"
    (cd e2e && npx tsc --noEmit -p bench && node --import ./bench/register.mjs bench/page.ts --smoke) || status=1
fi

say "what the tests left behind"
leftovers_check || status=1
exit "$status"
