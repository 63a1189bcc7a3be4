# What the tests must not leave behind: test Unix users (pdt*), their cgroups, processes of
# test folders or of test accounts, qemu guests, temporary folders, and the accounts lock
# folder when the run made it.
# shellcheck shell=bash

# leftovers_begin: notes what is there before the tests.
leftovers_begin() {
    LEFTOVERS_MARK=$(mktemp)
    LEFTOVERS_HAD_LOCKS=0
    [ -e /run/pocketdev-locks ] && LEFTOVERS_HAD_LOCKS=1
    LEFTOVERS_TMP_BEFORE=$(find /tmp -maxdepth 1 -name '.tmp*' 2>/dev/null | sort)
    LEFTOVERS_PIDS_BEFORE=" $(ps -eo pid= | tr -s ' \n' ' ') "
}

# leftovers_check: prints what the tests left and fails when there is anything.
leftovers_check() {
    local found=""
    # Give processes that are on their way out (a test's last drop) a moment.
    sleep 2
    local users
    users=$(getent passwd | cut -d: -f1 | grep '^pdt' || true)
    [ -n "$users" ] && found+=$'\n'"Unix users: $(echo "$users" | tr '\n' ' ')"
    local groups
    groups=$(find /sys/fs/cgroup -maxdepth 2 -name 'pdt*' 2>/dev/null || true)
    [ -n "$groups" ] && found+=$'\n'"cgroups: $(echo "$groups" | tr '\n' ' ')"
    # Processes of test accounts or test folders, and what the tests start by name (nginx,
    # tmux, qemu, pocketdev) that was not running before them; not zombies, which are dead
    # already (where PID 1 does not reap, they stay listed).
    local procs
    procs=$(ps -eo pid=,uid=,stat=,args= | awk -v before="$LEFTOVERS_PIDS_BEFORE" '
        $3 !~ /^Z/ && (($2 >= 70000 && $2 <= 99999) || /\/tmp\/\.tmp/ \
            || (/nginx: |tmux|qemu-system|pocketdev/ && index(before, " " $1 " ") == 0))' \
        | grep -v -e ' awk ' -e 'ps -eo' || true)
    [ -n "$procs" ] && found+=$'\n'"processes:"$'\n'"$procs"
    local tmp
    tmp=$(comm -13 <(echo "$LEFTOVERS_TMP_BEFORE") <(find /tmp -maxdepth 1 -name '.tmp*' 2>/dev/null | sort) || true)
    [ -n "$tmp" ] && found+=$'\n'"temporary folders: $(echo "$tmp" | tr '\n' ' ')"
    if [ "$LEFTOVERS_HAD_LOCKS" -eq 0 ] && [ -e /run/pocketdev-locks ]; then
        # pocketdev's own machine-wide lock folder, made by the isolated tests: not a leftover
        # of a test, but of the run; put the machine back as it was.
        as_root rm -rf /run/pocketdev-locks
    fi
    rm -f "$LEFTOVERS_MARK"
    if [ -n "$found" ]; then
        say "the tests left something behind:$found"
        return 1
    fi
    say "the tests left nothing behind (users, cgroups, processes, temporary folders)"
}
