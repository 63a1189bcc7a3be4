#!/usr/bin/env bash
# Runs and looks after an installed pocketdev.
#
#   scripts/start.sh [OPTIONS] status | start | stop | restart
#   scripts/start.sh logs [-f]                  # the last 200 lines; -f follows
#   scripts/start.sh backup [DIR]               # a dated archive in DIR (default: the current folder)
#   scripts/start.sh restore ARCHIVE [--yes]    # replaces the data with a backup's (asks first)
#
# With systemd and the pocketdev unit installed (by scripts/deploy.sh) it drives the unit and reads
# the journal. Elsewhere it runs the server in the background itself, with a pid file and a log in
# the data dir's server/ folder. Either way, stop and restart signal the server alone: the agents'
# tmux server keeps running and the next start adopts the agents.
#
# Options: --config PATH (default $POCKETDEV_CONFIG, else /etc/pocketdev/pocketdev.toml when it
# exists), --binary PATH (default: pocketdev on PATH, else /usr/local/bin/pocketdev) and
# --mode systemd|background.
set -euo pipefail
# pocketdev-ctl is a link to this file: its library sits beside the link's target.
# shellcheck source=scripts/lib/common.sh
source "$(dirname "$(readlink -f "$0")")/lib/common.sh"

usage() {
    sed -n '2,18p' "$(readlink -f "$0")" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

UNIT=pocketdev.service
STOP_TIMEOUT=20

CONFIG=${POCKETDEV_CONFIG:-}
BIN=""
MODE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --config) CONFIG=${2:?--config needs a path}; shift 2 ;;
        --binary) BIN=${2:?--binary needs a path}; shift 2 ;;
        --mode) MODE=${2:?--mode needs systemd or background}; shift 2 ;;
        -h|--help) usage 0 ;;
        -*) printf 'unknown option: %s\n\n' "$1" >&2; usage 2 ;;
        *) break ;;
    esac
done
if [ -z "$CONFIG" ] && [ -e /etc/pocketdev/pocketdev.toml ]; then
    CONFIG=/etc/pocketdev/pocketdev.toml
fi
BIN=${BIN:-$(command -v pocketdev || echo /usr/local/bin/pocketdev)}
[ -x "$BIN" ] || die "cannot find the pocketdev binary ($BIN); give --binary PATH"

if [ -z "$MODE" ]; then
    if [ -d /run/systemd/system ] && systemctl cat "$UNIT" >/dev/null 2>&1; then
        MODE=systemd
    else
        MODE=background
    fi
fi
case "$MODE" in systemd|background) ;; *) die "--mode must be systemd or background" ;; esac

pocketdev() {
    if [ -n "$CONFIG" ]; then "$BIN" --config "$CONFIG" "$@"; else "$BIN" "$@"; fi
}

# The effective configuration, read once.
EFFECTIVE=$(pocketdev config) || die "pocketdev cannot read its configuration (see above)"

# setting [SECTION] KEY: a string setting of the effective configuration.
setting() {
    if [ $# -eq 1 ]; then
        sed -n "/^\[/q; s/^$1 = \"\(.*\)\"\$/\1/p" <<<"$EFFECTIVE"
    else
        sed -n "/^\[$1\]/,/^\[/s/^$2 = \"\(.*\)\"\$/\1/p" <<<"$EFFECTIVE"
    fi
}

DATA=$(setting data_dir)
[ -n "$DATA" ] || die "cannot read data_dir from pocketdev's configuration"
DATA=$(realpath -m "$DATA")
SERVER_DIR="$DATA/server"
PID_FILE="$SERVER_DIR/pocketdev.pid"
LOG_FILE="$SERVER_DIR/pocketdev.log"
TMUX_SOCKET=$(setting tmux socket)
TMUX_SOCKET=${TMUX_SOCKET:-$SERVER_DIR/tmux.sock}
# With isolation, each account's agents are in its own tmux server, under the runtime folder.
ISOLATION_RUN_DIR=$(setting isolation run_dir)

# as_owner COMMAND...: runs a command as the data dir's owner (pocketdev's service user), so
# nothing it creates is left owned by root.
as_owner() {
    local owner
    owner=$(stat -c %U "$DATA")
    if [ "$(id -u)" -eq 0 ] && [ "$owner" != root ]; then
        runuser -u "$owner" -- "$@"
    else
        "$@"
    fi
}

health_url() {
    local listen base
    listen=$(setting listen)
    base=$(setting base_path)
    base=${base%/}
    listen=${listen/0.0.0.0/127.0.0.1}
    listen=${listen/\[::\]/[::1]}
    printf 'http://%s%s/api/health' "$listen" "$base"
}
HEALTH_URL=$(health_url)

healthy() {
    command -v curl >/dev/null 2>&1 || return 0
    curl -fsS --max-time 2 "$HEALTH_URL" >/dev/null 2>&1
}

background_pid() {
    local pid
    [ -r "$PID_FILE" ] || return 1
    pid=$(cat "$PID_FILE")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && printf '%s' "$pid"
}

tmux_sockets() {
    local socket
    for socket in "$TMUX_SOCKET" "$ISOLATION_RUN_DIR"/tmux/*/tmux.sock; do
        if [ -S "$socket" ]; then printf '%s\n' "$socket"; fi
    done
}

# tmux_as SOCKET ARGS...: a tmux client run as the owner of the socket's folder. A root client
# against a server an agent controls would hand that agent root.
tmux_as() {
    local socket=$1 owner
    shift
    owner=$(stat -c %u:%g "$(dirname "$socket")")
    if [ "$(id -u)" -eq 0 ] && [ "${owner%%:*}" != 0 ]; then
        setpriv --reuid "${owner%%:*}" --regid "${owner##*:}" --clear-groups -- \
            env -i PATH=/usr/bin:/bin HOME=/ tmux -S "$socket" "$@"
    else
        tmux -S "$socket" "$@"
    fi
}

agents() {
    local socket total=0 count
    while read -r socket; do
        count=$(tmux_as "$socket" list-sessions -F '#{session_name}' 2>/dev/null | grep -c '^pd-' || true)
        total=$((total + count))
    done < <(tmux_sockets)
    printf '%s' "$total"
}

cmd_status() {
    local code=0
    if [ "$MODE" = systemd ]; then
        systemctl status "$UNIT" --no-pager --lines=0 || code=$?
    elif pid=$(background_pid); then
        say "pocketdev is running (pid $pid, log $LOG_FILE)"
    else
        say "pocketdev is not running"
        code=3
    fi
    if healthy; then say "health: ok ($HEALTH_URL)"; elif [ "$code" -eq 0 ]; then say "health: not answering at $HEALTH_URL"; code=1; fi
    say "agents: $(agents) running in tmux"
    return "$code"
}

cmd_start() {
    if [ "$MODE" = systemd ]; then
        systemctl start "$UNIT"
    else
        if pid=$(background_pid); then say "pocketdev is already running (pid $pid)"; return 0; fi
        mkdir -p "$SERVER_DIR"
        (umask 077 && : >>"$LOG_FILE")
        local args=(serve --data-dir "$DATA")
        if [ -n "$CONFIG" ]; then args=(--config "$CONFIG" "${args[@]}"); fi
        # Its own session, so closing this terminal does not hang it up.
        setsid "$BIN" "${args[@]}" >>"$LOG_FILE" 2>&1 </dev/null &
        echo $! >"$PID_FILE"
    fi
    for _ in $(seq 1 60); do
        if healthy; then say "pocketdev is up: $HEALTH_URL"; return 0; fi
        if [ "$MODE" = background ] && ! background_pid >/dev/null; then break; fi
        sleep 0.5
    done
    say "pocketdev did not come up; the last lines of its log:"
    cmd_logs | tail -n 20 >&2
    return 1
}

cmd_stop() {
    if [ "$MODE" = systemd ]; then
        # The unit's KillMode=process signals pocketdev alone; the agents keep running.
        systemctl stop "$UNIT"
        return 0
    fi
    local pid
    if ! pid=$(background_pid); then say "pocketdev is not running"; rm -f "$PID_FILE"; return 0; fi
    # Like the unit: pocketdev alone, never its process group, so the agents' tmux server lives on.
    kill -TERM "$pid"
    for _ in $(seq 1 $((STOP_TIMEOUT * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "pocketdev did not stop in ${STOP_TIMEOUT}s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
    say "pocketdev stopped; $(agents) agents keep running"
}

cmd_logs() {
    if [ "$MODE" = systemd ]; then
        journalctl -u "$UNIT" -n 200 --no-pager "$@"
    else
        tail -n 200 "$@" "$LOG_FILE"
    fi
}

cmd_backup() {
    local dir=${1:-.} stamp archive
    [ -d "$dir" ] || die "no such folder: $dir"
    [ -e "$SERVER_DIR/pocketdev.db" ] || die "no database at $SERVER_DIR/pocketdev.db"
    stamp=$(date -u +%Y%m%d-%H%M%S)
    archive="$(realpath "$dir")/pocketdev-backup-$stamp.tar.gz"
    stage=$(mktemp -d)
    trap 'rm -rf "$stage"' EXIT
    mkdir -p "$stage/data/server"
    chown --reference="$DATA" "$stage" "$stage/data" "$stage/data/server" 2>/dev/null || true
    # A consistent copy of the live database, made by the server's own user.
    as_owner "$BIN" backup-db --data-dir "$DATA" --to "$stage/data/server/pocketdev.db" >/dev/null
    if [ -n "$CONFIG" ]; then install -D -m 0600 "$CONFIG" "$stage/config/pocketdev.toml"; fi
    printf 'pocketdev backup\ncreated %s\nversion %s\nhost %s\n' \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$("$BIN" --version)" "$(hostname)" >"$stage/BACKUP-INFO"
    # Everything in the data dir (keys, workspaces, homes, archived accounts) but the live
    # database, which the copy above replaces, and what only a running server uses.
    local members=(BACKUP-INFO data/server/pocketdev.db)
    if [ -e "$stage/config" ]; then members+=(config); fi
    (umask 077 && tar --create --gzip --file "$archive.partial" --anchored \
        --exclude=./server/pocketdev.db --exclude=./server/pocketdev.db-wal \
        --exclude=./server/pocketdev.db-shm --exclude=./server/run --exclude=./server/tmux.sock \
        --exclude=./server/pocketdev.pid --exclude=./server/pocketdev.log \
        --transform='s,^\./,data/,' -C "$DATA" . -C "$stage" "${members[@]}")
    mv "$archive.partial" "$archive"
    say "backup written: $archive ($(du -h "$archive" | cut -f1))"
}

cmd_restore() {
    local archive="" yes=0
    for arg in "$@"; do
        case "$arg" in --yes) yes=1 ;; *) archive=$arg ;; esac
    done
    [ -n "$archive" ] || die "give the backup archive to restore"
    [ -r "$archive" ] || die "cannot read $archive"
    tar -tzf "$archive" data/server/pocketdev.db >/dev/null 2>&1 \
        || die "$archive is not a pocketdev backup (no data/server/pocketdev.db)"
    if [ "$yes" -eq 0 ]; then
        [ -t 0 ] || die "restore replaces all data and stops every agent; add --yes to go ahead"
        read -r -p "Replace $DATA with the backup and stop every agent? [y/N] " answer
        case "$answer" in y|Y|yes) ;; *) die "nothing changed" ;; esac
    fi
    local owner stamp aside socket
    owner=$(stat -c %U:%G "$DATA" 2>/dev/null || id -un)
    stamp=$(date -u +%Y%m%d-%H%M%S)
    aside="$DATA.before-restore-$stamp"
    cmd_stop
    # The agents belong to the data being replaced.
    while read -r socket; do
        tmux_as "$socket" kill-server 2>/dev/null || true
    done < <(tmux_sockets)
    if [ -e "$DATA" ]; then mv "$DATA" "$aside"; fi
    install -d -m 0711 "$DATA"
    # Owners as numbers: the accounts' files keep their uids, which pocketdev gives the same
    # accounts again when it starts (on a new machine it creates their users with them).
    tar -xzf "$archive" -C "$DATA" --strip-components=1 --same-permissions --numeric-owner data/
    chown "$owner" "$DATA" "$DATA/server" "$DATA/users" 2>/dev/null || true
    chmod 0711 "$DATA"
    chmod 0700 "$DATA/server"
    say "data restored from $archive; the previous data is in $aside"
    if tar -tzf "$archive" config/pocketdev.toml >/dev/null 2>&1; then
        say "the backup's configuration was not applied; compare it with yours: tar -xzf $archive -O config/pocketdev.toml"
    fi
    cmd_start
}

command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
    status) cmd_status ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) if [ "$MODE" = systemd ]; then systemctl restart "$UNIT" && cmd_start; else cmd_stop && cmd_start; fi ;;
    logs) cmd_logs "$@" ;;
    backup) cmd_backup "$@" ;;
    restore) cmd_restore "$@" ;;
    -h|--help|help) usage 0 ;;
    *) usage 2 ;;
esac
