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
# Packages ensure_package installed in this run (space-separated).
JUST_INSTALLED=""
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
    JUST_INSTALLED="${JUST_INSTALLED:-} $pkg"
    command -v "$cmd" >/dev/null 2>&1 || die "$pkg was installed but $cmd is still not on PATH"
}

require_rust() {
    command -v cargo >/dev/null 2>&1 \
        || die "Rust is missing: install it with rustup (https://rustup.rs), then run this again"
}

# Node.js and npm build the web app (web/) and run the browser tests (e2e/).
require_node() {
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        die "Node.js and npm are missing; they build the web app. Install Node.js 20.19 or later (https://nodejs.org, or: sudo apt-get install nodejs npm), then run this again"
    fi
    node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 22 || (a === 22 && b >= 12) || (a === 20 && b >= 19) ? 0 : 1)' \
        || die "Node.js $(node --version) is too old to build the web app; install 20.19 or later (https://nodejs.org), then run this again"
}

# npm_install DIR: `npm ci` in DIR when node_modules is missing or older than the lock file.
npm_install() {
    local dir=$1
    if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        say "installing the npm packages of $dir/ (npm ci)"
        (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error) \
            || die "npm ci failed in $dir/; check the network or the npm registry, then run this again"
    fi
}

# Builds the web app into web/dist, which cargo then embeds in the binary.
build_web() {
    require_node
    npm_install web
    say "building the web app (web/dist)"
    (cd web && npm run --silent build) || die "the web app did not build (see above)"
}

# The Chromium the browser tests drive: $CHROMIUM_PATH, else Debian's /usr/bin/chromium
# (installed when missing). On Ubuntu, chromium is a snap, which Playwright cannot launch.
ensure_chromium() {
    if [ -n "${CHROMIUM_PATH:-}" ]; then
        [ -x "$CHROMIUM_PATH" ] || die "CHROMIUM_PATH=$CHROMIUM_PATH is not an executable"
        return 0
    fi
    local os_id=""
    if [ -r /etc/os-release ]; then
        os_id=$(. /etc/os-release && echo "${ID:-}")
    fi
    if [ "$os_id" = ubuntu ]; then
        if [ ! -x /usr/bin/chromium ] || grep -qs snap /usr/bin/chromium; then
            die "on Ubuntu, chromium is a snap, which the browser tests cannot drive. Install a Chromium or Chrome .deb (for example google-chrome-stable from https://www.google.com/chrome/) and run again with CHROMIUM_PATH=/usr/bin/google-chrome, or set POCKETDEV_SKIP_E2E=1 to skip the browser tests"
        fi
        return 0
    fi
    ensure_package chromium chromium
}

# keep_service_off PACKAGE SERVICE: a service the tests run by hand (nginx, fail2ban) that its
# package just enabled and started on a systemd machine is stopped and disabled again, so
# running the tests leaves no service behind.
keep_service_off() {
    local pkg=$1 service=$2
    case " $JUST_INSTALLED " in *" $pkg "*) ;; *) return 0 ;; esac
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        as_root systemctl disable --now --quiet "$service" 2>/dev/null || true
    fi
}
