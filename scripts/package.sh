#!/usr/bin/env bash
# Builds a release tarball that scripts/deploy.sh (or a person) installs from:
#   dist/pocketdev-<version>-linux-<arch>.tar.gz  and its .sha256
# holding the binary, the example config, the systemd units, the nginx template, the fail2ban
# filter, the scripts and the docs. Unpack it on the server and run scripts/deploy.sh inside.
#
#   scripts/package.sh                      # builds the web app and a release binary first
#   scripts/package.sh --binary PATH        # packages a binary built already
#   scripts/package.sh --out DIR            # where the tarball goes (default dist/)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

BINARY=""
OUT=dist
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) BINARY=${2:?--binary needs a path}; shift 2 ;;
        --out) OUT=${2:?--out needs a folder}; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option: $1 (see --help)" ;;
    esac
done

if [ -z "$BINARY" ]; then
    require_rust
    if [ -f web/package.json ]; then
        command -v npm >/dev/null 2>&1 || die "npm is missing: install Node.js 20 or later to build the web app"
        say "building the web app"
        (cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build)
    fi
    say "building pocketdev (release)"
    cargo build --release --locked --bin pocketdev
    BINARY=target/release/pocketdev
fi
[ -x "$BINARY" ] || die "$BINARY is not an executable"

VERSION=$("$BINARY" --version | awk '{print $2}')
NAME="pocketdev-$VERSION-linux-$(uname -m)"
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
ROOT="$STAGE/$NAME"

say "staging $NAME"
install -D -m 0755 "$BINARY" "$ROOT/pocketdev"
for file in README.md DEPLOYMENT.md pocketdev.example.toml \
    config/nginx*.conf config/pocketdev.service config/pocketdev.slice \
    config/fail2ban/pocketdev-filter.conf config/fail2ban/pocketdev-jail.conf; do
    install -D -m 0644 "$file" "$ROOT/$file"
done
for script in scripts/deploy.sh scripts/start.sh; do
    install -D -m 0755 "$script" "$ROOT/$script"
done
for lib in scripts/lib/*.sh; do
    install -D -m 0644 "$lib" "$ROOT/$lib"
done
cp -R docs "$ROOT/docs"

TARBALL="$OUT/$NAME.tar.gz"
# Fixed owners and times so the same inputs make the same tarball.
tar --create --use-compress-program='gzip -n' --file "$TARBALL.partial" --owner=0 --group=0 --numeric-owner \
    --sort=name --mtime="@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}" \
    -C "$STAGE" "$NAME"
mv "$TARBALL.partial" "$TARBALL"
(cd "$OUT" && sha256sum "$NAME.tar.gz" >"$NAME.tar.gz.sha256")
say "wrote $TARBALL ($(du -h "$TARBALL" | cut -f1)) and its .sha256"
printf '%s\n' "$TARBALL"
