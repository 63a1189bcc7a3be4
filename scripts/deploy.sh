#!/usr/bin/env bash
# Installs or upgrades pocketdev on a Debian 12 or Ubuntu 22.04/24.04 server: packages, the
# binary, config, data dir, systemd units, the nginx site and a certificate.
# Re-running it upgrades; it never overwrites an existing config or data.
#
#   sudo scripts/deploy.sh --domain dev.example.com --email you@example.com [--binary PATH]
#   sudo scripts/deploy.sh --domain dev.example.com --cert FULLCHAIN --key KEY   # your own certificate
#   sudo scripts/deploy.sh --no-tls                       # IP only, plain HTTP (not for real use)
#   scripts/deploy.sh --dry-run --prefix /tmp/root ...    # print every change, make none
#
# --prefix DIR writes every file under DIR (for packaging and tests) and skips what changes the
# running system (packages, users, services, certificates, firewall).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
# shellcheck source=scripts/lib/nginx.sh
source scripts/lib/nginx.sh

DOMAIN=""
EMAIL=""
TLS=1
PREFIX=""
DRY_RUN=0
BINARY=""
CERT=""
KEY=""
PORT=8112
PROXY_SOCKET=/run/pocketdev/http.sock

usage() {
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --domain) DOMAIN=${2:?--domain needs a value}; shift 2 ;;
        --email) EMAIL=${2:?--email needs a value}; shift 2 ;;
        --no-tls) TLS=0; shift ;;
        --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        --binary) BINARY=${2:?--binary needs a path}; shift 2 ;;
        --cert) CERT=${2:?--cert needs a path}; shift 2 ;;
        --key) KEY=${2:?--key needs a path}; shift 2 ;;
        -h|--help) usage 0 ;;
        *) printf 'unknown option: %s\n\n' "$1" >&2; usage 2 ;;
    esac
done

if [ "$TLS" -eq 1 ] && [ -z "$DOMAIN" ]; then
    die "give --domain (the name pointing at this server), or --no-tls to serve plain HTTP by IP"
fi
if [ -n "$CERT$KEY" ] && { [ -z "$CERT" ] || [ -z "$KEY" ]; }; then
    die "give both --cert (the certificate chain) and --key (its private key), or neither to get one from Let's Encrypt"
fi
if [ -n "$CERT" ] && [ "$TLS" -eq 0 ]; then
    die "--cert and --key are for HTTPS; drop --no-tls"
fi
if [ "$TLS" -eq 1 ] && [ -z "$CERT" ] && [ -z "$EMAIL" ] && [ -z "$PREFIX" ]; then
    die "give --email for Let's Encrypt (expiry notices), or --cert and --key for a certificate you have"
fi
if [ -z "$PREFIX" ] && [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    die "run this as root (sudo), or with --dry-run to see what it would do"
fi

# Touching the system: on the real root only, and never in a dry run.
LIVE=1
if [ -n "$PREFIX" ] || [ "$DRY_RUN" -eq 1 ]; then LIVE=0; fi

step() { printf '  - %s\n' "$*"; }
# change DESCRIPTION COMMAND...: a change to files under the prefix.
change() {
    local what=$1; shift
    step "$what"
    if [ "$DRY_RUN" -eq 0 ]; then "$@"; fi
}
# system DESCRIPTION COMMAND...: a change to the running system.
system() {
    local what=$1; shift
    if [ "$LIVE" -eq 1 ]; then
        step "$what"
        "$@"
    else
        step "$what (skipped: $([ "$DRY_RUN" -eq 1 ] && echo 'dry run' || echo "--prefix"))"
    fi
}

ETC="$PREFIX/etc/pocketdev"
DATA="$PREFIX/var/lib/pocketdev"
BIN="$PREFIX/usr/local/bin/pocketdev"
UNITS="$PREFIX/etc/systemd/system"
SITE="$PREFIX/etc/nginx/sites-available/pocketdev"
SITE_LINK="$PREFIX/etc/nginx/sites-enabled/pocketdev"
ACME="$PREFIX/var/www/pocketdev-acme"
SHARE="$PREFIX/usr/local/share/pocketdev"
DOC="$PREFIX/usr/local/share/doc/pocketdev"
CTL="$PREFIX/usr/local/bin/pocketdev-ctl"
F2B="$PREFIX/etc/fail2ban"

if [ "$DRY_RUN" -eq 1 ]; then
    say "pocketdev deploy plan (dry run: nothing is changed)"
else
    say "pocketdev deploy"
fi

say "1. packages"
# git and ssh-keygen: the Changes view, clones and the account's SSH key.
PACKAGES=(tmux nginx passwd git openssh-client)
if [ "$TLS" -eq 1 ] && [ -z "$CERT" ]; then PACKAGES+=(certbot); fi
# Installs what is missing, quietly; the package lists are refreshed first, since a fresh
# cloud image may have none.
install_packages() {
    local missing=() pkg log
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        step "already installed: $*"
        return 0
    fi
    log=$(mktemp)
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        die "installing ${missing[*]} failed (above); fix apt and run this again"
    fi
    rm -f "$log"
}
system "install what is missing of ${PACKAGES[*]} from the distribution" install_packages "${PACKAGES[@]}"

say "2. the pocketdev binary"
if [ -z "$BINARY" ] && [ -x ./pocketdev ]; then
    # Run from a release tarball (scripts/package.sh): its binary sits beside the scripts.
    BINARY=./pocketdev
fi
if [ -z "$BINARY" ]; then
    if command -v cargo >/dev/null 2>&1; then
        change "build it with cargo (release)" cargo build --release --locked
        BINARY=target/release/pocketdev
    else
        die "give --binary PATH (built by scripts/run.sh or from a release tarball), or install Rust with rustup to build it here; the distributions' own rustc is too old"
    fi
fi
if [ "$DRY_RUN" -eq 0 ] && [ ! -x "$BINARY" ]; then die "$BINARY is not an executable"; fi
change "install $BINARY as $BIN" install -D -m 0755 "$BINARY" "$BIN"

say "3. accounts"
step "pocketdev runs as root and creates a Unix user per account (pd-<id>, uids 70000-99999), so agents of different people cannot reach each other"

say "4. config and data"
change "create $ETC (0750)" install -d -m 0750 "$ETC"
if [ -e "$ETC/pocketdev.toml" ]; then
    step "keep the existing $ETC/pocketdev.toml"
    # Earlier versions let nginx in over loopback, which agents share: move it to the socket.
    if grep -qx 'trusted_proxies = \["127.0.0.1/32"\]' "$ETC/pocketdev.toml" \
        && ! grep -q '^proxy_socket' "$ETC/pocketdev.toml"; then
        move_to_socket() {
            sed -i "s|^trusted_proxies = \[\"127.0.0.1/32\"\]\$|proxy_socket = \"$PROXY_SOCKET\"|" "$ETC/pocketdev.toml"
        }
        change "let nginx in through $PROXY_SOCKET instead of loopback (trusted_proxies) in $ETC/pocketdev.toml" move_to_socket
    fi
else
    write_config() {
        umask 027
        cat >"$ETC/pocketdev.toml" <<EOF
# pocketdev's configuration; every key is described in pocketdev.example.toml.
listen = "127.0.0.1:$PORT"
data_dir = "/var/lib/pocketdev"
# nginx reaches pocketdev through this socket (root and www-data only), the one listener whose
# forwarded client addresses are believed: agents cannot connect to it.
proxy_socket = "$PROXY_SOCKET"
EOF
        chmod 0640 "$ETC/pocketdev.toml"
    }
    change "write $ETC/pocketdev.toml (0640): listen 127.0.0.1:$PORT, data /var/lib/pocketdev, nginx through $PROXY_SOCKET" write_config
fi
change "create $DATA (0711: accounts reach their own folders)" install -d -m 0711 "$DATA"
change "create $DATA/server (0700, root only: keys and database)" install -d -m 0700 "$DATA/server"
change "install the example config in $SHARE" \
    install -D -m 0644 pocketdev.example.toml "$SHARE/pocketdev.example.toml"
install_tools() {
    install -D -m 0755 scripts/start.sh "$SHARE/scripts/start.sh"
    install -D -m 0644 scripts/lib/common.sh "$SHARE/scripts/lib/common.sh"
    install -d "$(dirname "$CTL")"
    # start.sh finds its library through the link (readlink -f).
    ln -sfn /usr/local/share/pocketdev/scripts/start.sh "$CTL"
}
change "install scripts/start.sh as $CTL (status, logs, backup, restore)" install_tools
install_docs() {
    install -D -m 0644 DEPLOYMENT.md "$DOC/DEPLOYMENT.md"
    install -D -m 0644 README.md "$DOC/README.md"
}
change "install DEPLOYMENT.md and README.md in $DOC" install_docs

SYSCTL="$PREFIX/etc/sysctl.d/60-pocketdev.conf"
write_sysctl() {
    install -d "$(dirname "$SYSCTL")"
    printf '%s\n' "# Written by pocketdev's deploy.sh: accounts' agents must not trick root with links." \
        "fs.protected_symlinks = 1" "fs.protected_hardlinks = 1" >"$SYSCTL"
}
change "keep links protected (fs.protected_symlinks and _hardlinks = 1) in $SYSCTL" write_sysctl
system "apply it" sysctl -q -p "$SYSCTL"

say "5. systemd"
change "install $UNITS/pocketdev.service" install -D -m 0644 config/pocketdev.service "$UNITS/pocketdev.service"
change "install $UNITS/pocketdev.slice" install -D -m 0644 config/pocketdev.slice "$UNITS/pocketdev.slice"
system "reload systemd" systemctl daemon-reload
# An upgrade restarts pocketdev alone: KillMode=process leaves the agents' tmux server running.
system "enable and (re)start pocketdev" bash -c "systemctl enable pocketdev.service && systemctl restart pocketdev.service"

say "6. nginx"
NGINX_SITES="$PREFIX/etc/nginx/sites-enabled"
change "create $ACME for Let's Encrypt's HTTP challenge" install -d -m 0755 "$ACME"
ACCESS_LOG=/var/log/nginx/pocketdev.access.log
if [ "$TLS" -eq 1 ]; then
    if [ -n "$CERT" ]; then
        CERT_PATH=$(realpath -m "$CERT")
        KEY_PATH=$(realpath -m "$KEY")
        if [ "$DRY_RUN" -eq 0 ] && { [ ! -r "$CERT_PATH" ] || [ ! -r "$KEY_PATH" ]; }; then
            die "cannot read the certificate $CERT or the key $KEY"
        fi
        step "certificate for $DOMAIN: $CERT_PATH (yours: renew it yourself)"
    else
        CERT_PATH="/etc/letsencrypt/live/$DOMAIN/fullchain.pem"
        KEY_PATH="/etc/letsencrypt/live/$DOMAIN/privkey.pem"
        if [ -z "$PREFIX" ] && [ ! -e "$CERT_PATH" ]; then
            # The HTTPS site needs the certificate; get it first through a bare HTTP site.
            system "serve the HTTP challenge while the certificate is issued" bash -c \
                "printf 'server { listen 80; server_name %s; location /.well-known/acme-challenge/ { root /var/www/pocketdev-acme; } }\n' '$DOMAIN' >/etc/nginx/sites-enabled/pocketdev && nginx -t && systemctl reload-or-restart nginx"
            system "get a certificate for $DOMAIN from Let's Encrypt" \
                certbot certonly --webroot -w /var/www/pocketdev-acme -d "$DOMAIN" -m "$EMAIL" --agree-tos --non-interactive
        else
            step "certificate for $DOMAIN: $CERT_PATH (from Let's Encrypt; renewed by certbot's timer)"
        fi
    fi
    render_site() {
        install -d "$(dirname "$SITE")"
        render_nginx config/nginx.conf "$SITE.new" \
            UPSTREAM="unix:$PROXY_SOCKET" HTTP_LISTEN=80 HTTPS_LISTEN=443 SERVER_NAME="$DOMAIN" \
            ACCESS_LOG="$ACCESS_LOG" ACME_ROOT=/var/www/pocketdev-acme \
            TLS_CERT="$CERT_PATH" TLS_KEY="$KEY_PATH" MAX_BODY=2048m BASE_PATH=/
    }
    change "write the HTTPS site for $DOMAIN" render_site
else
    say "WARNING: --no-tls serves pocketdev over plain HTTP. Passwords and agent sessions cross the network unencrypted. Use it only on a private network, and redeploy with --domain soon."
    render_plain() {
        install -d "$(dirname "$SITE")"
        render_nginx config/nginx-plain.conf "$SITE.new" \
            UPSTREAM="unix:$PROXY_SOCKET" HTTP_LISTEN=80 ACCESS_LOG="$ACCESS_LOG" \
            MAX_BODY=2048m BASE_PATH=/
    }
    change "write the plain HTTP site" render_plain
fi
# The new site replaces the old one only once nginx accepts it; otherwise everything is put
# back as it was, so a failed deploy never leaves an nginx that cannot start at the next boot.
# Over plain HTTP, the site answers on any address, which the distribution's default site also
# claims (default_server): that one is disabled, and put back if this fails.
enable_site() {
    local default_link="$NGINX_SITES/default" default_target="" backup=""
    install -d "$NGINX_SITES"
    if [ -e "$SITE" ]; then
        backup=$(mktemp)
        cp -p "$SITE" "$backup"
    fi
    mv -f "$SITE.new" "$SITE"
    ln -sfn /etc/nginx/sites-available/pocketdev "$SITE_LINK"
    if [ "$TLS" -eq 0 ] && [ -L "$default_link" ]; then
        default_target=$(readlink "$default_link")
        rm -f "$default_link"
        step "disabled the distribution's default site ($default_link), which also claims port 80"
    fi
    [ "$LIVE" -eq 1 ] || return 0
    local test_output
    if ! test_output=$(nginx -t 2>&1); then
        printf '%s\n' "$test_output" >&2
        if [ -n "$backup" ]; then mv -f "$backup" "$SITE"; else rm -f "$SITE" "$SITE_LINK"; fi
        if [ -n "$default_target" ]; then ln -sfn "$default_target" "$default_link"; fi
        die "nginx refused the new site (above); the previous configuration is back in place"
    fi
    rm -f "$backup"
}
change "enable the site ($SITE_LINK) once nginx accepts it" enable_site
system "start or reload nginx" bash -c "systemctl enable --quiet nginx && systemctl reload-or-restart nginx"

say "7. firewall"
if [ -z "$PREFIX" ] && command -v ufw >/dev/null 2>&1 && ufw status 2>/dev/null | grep -q "Status: active"; then
    system "open ports 80 and 443 in ufw" bash -c "ufw allow 80/tcp && ufw allow 443/tcp"
else
    step "ufw is not active: nothing to open"
fi

say "8. fail2ban"
if [ -d /etc/fail2ban ] || [ -n "$PREFIX" ]; then
    install_fail2ban() {
        install -D -m 0644 config/fail2ban/pocketdev-filter.conf "$F2B/filter.d/pocketdev.conf"
        install -D -m 0644 config/fail2ban/pocketdev-jail.conf "$F2B/jail.d/pocketdev.conf"
    }
    change "install the fail2ban filter and jail for failed sign-ins in $F2B" install_fail2ban
    system "reload fail2ban" bash -c "systemctl reload-or-restart fail2ban"
else
    step "fail2ban is not installed: skipped (to ban repeated failed sign-ins: apt-get install fail2ban python3-systemd, then run this again)"
fi

say "9. done"
if [ "$TLS" -eq 1 ]; then
    URL="https://$DOMAIN/"
else
    # The first address the machine has; behind NAT, the provider's public address instead.
    ADDRESS=$(hostname -I 2>/dev/null | awk '{print $1}')
    URL="http://${ADDRESS:-SERVER-ADDRESS}/"
fi
step "pocketdev: $URL"
PASSWORD_FILE=/var/lib/pocketdev/server/initial-admin-password
if [ "$LIVE" -eq 1 ]; then
    for _ in $(seq 1 20); do [ -e "$PASSWORD_FILE" ] && break; sleep 0.5; done
    if [ -e "$PASSWORD_FILE" ]; then
        step "first admin account: $(tr '\n' ' ' <"$PASSWORD_FILE")"
    else
        step "sign in with your existing accounts (no new admin was created)"
    fi
else
    step "the first admin's password will be in $PASSWORD_FILE after the first start"
fi
