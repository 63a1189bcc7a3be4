# Shared helpers for the project's scripts: find or install what they need.
# shellcheck shell=bash

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, through sudo when it is available.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        return 1
    fi
}

APT_UPDATED=0
# ensure_package COMMAND PACKAGE: installs PACKAGE from the distribution when COMMAND is missing.
ensure_package() {
    local cmd=$1 pkg=$2
    command -v "$cmd" >/dev/null 2>&1 && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        die "$cmd is missing; install the package that provides it ($pkg on Debian/Ubuntu) and run this again"
    fi
    say "installing $pkg (needed for $cmd)"
    if [ "$APT_UPDATED" -eq 0 ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
            || die "cannot run apt-get as root; install $pkg yourself (sudo apt-get install $pkg) and run this again"
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null \
        || die "installing $pkg failed; install it yourself (sudo apt-get install $pkg) and run this again"
    command -v "$cmd" >/dev/null 2>&1 || die "$pkg was installed but $cmd is still not on PATH"
}

require_rust() {
    command -v cargo >/dev/null 2>&1 \
        || die "Rust is missing: install it with rustup (https://rustup.rs), then run this again"
}
