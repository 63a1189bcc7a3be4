#!/usr/bin/env bash
# Installs or upgrades pocketdev on a Debian 12 or Ubuntu 22.04/24.04 server: packages, the
# binary, a system user, config, data dir, systemd units, the nginx site and a certificate.
# Re-running it upgrades; it never overwrites an existing config or data.
#
#   sudo scripts/deploy.sh --domain dev.example.com --email you@example.com [--binary PATH]
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
PORT=8112

usage() {
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
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
        -h|--help) usage 0 ;;
        *) printf 'unknown option: %s\n\n' "$1" >&2; usage 2 ;;
    esac
done

if [ "$TLS" -eq 1 ] && [ -z "$DOMAIN" ]; then
    die "give --domain (the name pointing at this server), or --no-tls to serve plain HTTP by IP"
fi
if [ "$TLS" -eq 1 ] && [ -z "$EMAIL" ] && [ -z "$PREFIX" ]; then
    die "give --email for Let's Encrypt (expiry notices)"
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
system "install tmux, nginx, certbot and the account tools (passwd) from the distribution" \
    env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux nginx certbot passwd

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
else
    write_config() {
        umask 027
        cat >"$ETC/pocketdev.toml" <<EOF
# pocketdev's configuration; every key is described in pocketdev.example.toml.
listen = "127.0.0.1:$PORT"
data_dir = "/var/lib/pocketdev"
# nginx on this machine tells pocketdev the client's address.
trusted_proxies = ["127.0.0.1/32"]
EOF
        chmod 0640 "$ETC/pocketdev.toml"
    }
    change "write $ETC/pocketdev.toml (0640): listen 127.0.0.1:$PORT, data /var/lib/pocketdev, nginx trusted" write_config
fi
change "create $DATA (0711: accounts reach their own folders)" install -d -m 0711 "$DATA"
change "create $DATA/server (0700, root only: keys and database)" install -d -m 0700 "$DATA/server"
change "install the example config in $SHARE" \
    install -D -m 0644 pocketdev.example.toml "$SHARE/pocketdev.example.toml"
install_tools() {
    install -D -m 0755 scripts/start.sh "$SHARE/scripts/start.sh"
    install -D -m 0644 scripts/lib/common.sh "$SHARE/scripts/lib/common.sh"
    install -d "$(dirname "$CTL")"
    ln -sfn /usr/local/share/pocketdev/scripts/start.sh "$CTL"
}
change "install scripts/start.sh as $CTL (status, logs, backup, restore)" install_tools
install_docs() {
    install -D -m 0644 DEPLOYMENT.md "$DOC/DEPLOYMENT.md"
    install -D -m 0644 README.md "$DOC/README.md"
}
change "install DEPLOYMENT.md and README.md in $DOC" install_docs

say "5. systemd"
change "install $UNITS/pocketdev.service" install -D -m 0644 config/pocketdev.service "$UNITS/pocketdev.service"
change "install $UNITS/pocketdev.slice" install -D -m 0644 config/pocketdev.slice "$UNITS/pocketdev.slice"
system "reload systemd" systemctl daemon-reload
# An upgrade restarts pocketdev alone: KillMode=process leaves the agents' tmux server running.
system "enable and (re)start pocketdev" bash -c "systemctl enable pocketdev.service && systemctl restart pocketdev.service"

say "6. nginx"
change "create $ACME for Let's Encrypt's HTTP challenge" install -d -m 0755 "$ACME"
if [ "$TLS" -eq 1 ]; then
    CERT="/etc/letsencrypt/live/$DOMAIN/fullchain.pem"
    KEY="/etc/letsencrypt/live/$DOMAIN/privkey.pem"
    render_site() {
        install -d "$(dirname "$SITE")"
        render_nginx config/nginx.conf "$SITE" \
            UPSTREAM="127.0.0.1:$PORT" HTTP_LISTEN=80 HTTPS_LISTEN=443 SERVER_NAME="$DOMAIN" \
            ACCESS_LOG=/var/log/nginx/pocketdev.access.log ACME_ROOT=/var/www/pocketdev-acme \
            TLS_CERT="$CERT" TLS_KEY="$KEY" MAX_BODY=2048m BASE_PATH=/
    }
    if [ -z "$PREFIX" ] && [ ! -e "$CERT" ]; then
        # The HTTPS site needs the certificate; get it first through a bare HTTP site.
        system "serve the HTTP challenge while the certificate is issued" bash -c \
            "printf 'server { listen 80; server_name %s; location /.well-known/acme-challenge/ { root /var/www/pocketdev-acme; } }\n' '$DOMAIN' >/etc/nginx/sites-enabled/pocketdev && systemctl reload nginx"
        system "get a certificate for $DOMAIN from Let's Encrypt" \
            certbot certonly --webroot -w /var/www/pocketdev-acme -d "$DOMAIN" -m "$EMAIL" --agree-tos --non-interactive
    else
        step "certificate for $DOMAIN: $CERT (from Let's Encrypt; renewed by certbot's timer)"
    fi
    change "write the HTTPS site $SITE for $DOMAIN" render_site
else
    say "WARNING: --no-tls serves pocketdev over plain HTTP. Passwords and agent sessions cross the network unencrypted. Use it only on a private network, and redeploy with --domain soon."
    render_plain() {
        install -d "$(dirname "$SITE")"
        cat >"$SITE" <<EOF
# pocketdev over plain HTTP (deployed with --no-tls).
server {
    listen 80 default_server;
    server_tokens off;
    client_max_body_size 2048m;
    proxy_http_version 1.1;
    proxy_set_header Host \$host;
    proxy_set_header X-Forwarded-For \$remote_addr;
    proxy_set_header X-Forwarded-Proto \$scheme;
    location /ws/ {
        proxy_set_header Upgrade \$http_upgrade;
        proxy_set_header Connection "upgrade";
        proxy_read_timeout 1h;
        proxy_pass http://127.0.0.1:$PORT;
    }
    location / {
        proxy_pass http://127.0.0.1:$PORT;
    }
}
EOF
    }
    change "write the plain HTTP site $SITE" render_plain
fi
enable_site() {
    install -d "$(dirname "$SITE_LINK")"
    ln -sfn /etc/nginx/sites-available/pocketdev "$SITE_LINK"
}
change "enable the site ($SITE_LINK)" enable_site
system "check and reload nginx" bash -c "nginx -t && systemctl reload nginx"

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
URL="http://<this server's address>/"
if [ "$TLS" -eq 1 ]; then URL="https://$DOMAIN/"; fi
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
