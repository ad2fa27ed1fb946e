#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Runs a command against a real kysod serving a fresh SoftHSM2 token, then
# stops the daemon (by its PID) and removes everything it made.
#
#   with-kysod.sh [--tokens N] [--mock NAME:KEY=V,...]... [--config FILE] [--backend-only MODULE]
#                 [--no-daemon] [--] COMMAND [ARGS...]
#
# --config FILE is copied to $KYSO_TEST_DIR/kysod.conf, which kysod reads
# (also on restarts; a test may edit it and send SIGHUP); the
# command line's --socket, --state-dir and --backend still override it. Without
# it, kysod reads unknown-allow.conf beside this script: the test tokens have no
# custody record. kysod runs with --bus "${KYSO_TEST_BUS:-none}".
#
# --backend-only MODULE makes MODULE (e.g. OpenSC's opensc-pkcs11.so) kysod's only backend in the
# place of SoftHSM2 (--mock backends still come after it); the SoftHSM2 store is made all the same
# but not served.
#
# --mock adds a second kind of backend: a copy of tests/mock's wrapping module
# ($KYSO_MOCK_MODULE) named NAME.so over a private copy of SoftHSM2 with its own
# store holding one token labelled "kyso-NAME" (same PINs), configured with the
# given keys (see tests/mock/mock-pkcs11.c: hardware=1, sign_delay_ms=N, ...).
# Its stats file is $KYSO_TEST_DIR/NAME.stats.
#
# Paths come from the environment (meson sets them): KYSOD, KYSO_MODULE,
# SOFTHSM_MODULE, KYSOCTL. The command sees:
#   KYSO_TEST_DIR      scratch directory (removed afterwards)
#   KYSO_SOCKET        the daemon's socket (what kyso-pkcs11.so reads)
#   KYSOD_PID          the daemon's PID
#   SOFTHSM2_CONF      the SoftHSM2 store the daemon serves
#   KYSO_TEST_LABEL    label of the test token ("kyso-test"; more tokens: kyso-test-2, ...)
#   KYSO_TEST_PIN, KYSO_TEST_SO_PIN
#   KYSO_TEST_RESTART  a script that restarts the daemon (same socket and token) and updates KYSOD_PID in
#                      $KYSO_TEST_DIR/kysod.pid
#
# KYSO_TEST_CLOCK, when set, names a file holding Unix seconds that kysod takes as the time
# (--test-clock); KYSO_TEST_STATE_DIR, when set, is kysod's state directory instead of
# $KYSO_TEST_DIR/state (kept afterwards: it is the caller's). The command sees KYSO_TEST_STATE_DIR
# either way (kyso.db is there).
#
# KYSO_TEST_DAEMON_WRAPPER, when set, is a command (split on spaces) that kysod runs under, here and in
# $KYSO_TEST_RESTART, e.g. "valgrind --error-exitcode=99 --log-file=%q{KYSO_TEST_DIR}/daemon-valgrind.%p.log".
# Start-up and SIGTERM then get 120 s instead of 10 s. Whatever the wrapper, the test fails when the
# daemon this script stops does not exit 0 on SIGTERM, or when kysod.log or a wrapper log
# ($KYSO_TEST_DIR/daemon-*.log) holds a sanitizer or valgrind error report.
set -euo pipefail

tokens=1
daemon=1
mocks=()
main_backend=
config_args=(--config "$(dirname "$(realpath "${BASH_SOURCE[0]}")")/unknown-allow.conf")
while [ $# -gt 0 ]; do
    case "$1" in
        --tokens) tokens="$2"; shift 2 ;;
        --mock) mocks+=("$2"); shift 2 ;;
        --config) config_args=(--config "$(realpath "$2")"); shift 2 ;;
        --backend-only) main_backend="$2"; shift 2 ;;
        --no-daemon) daemon=0; shift ;;
        --) shift; break ;;
        *) break ;;
    esac
done

: "${KYSOD:?KYSOD must name the kysod binary}"
: "${SOFTHSM_MODULE:=/usr/lib/softhsm/libsofthsm2.so}"
: "${main_backend:=$SOFTHSM_MODULE}"
# shellcheck disable=SC2206 # the wrapper is a command line, split on spaces on purpose
daemon_wrapper=(${KYSO_TEST_DAEMON_WRAPPER:-})
daemon_wait=10
[ ${#daemon_wrapper[@]} -eq 0 ] || daemon_wait=120

KYSO_TEST_DIR=$(mktemp -d /tmp/kyso-test.XXXXXX)
chmod 0755 "$KYSO_TEST_DIR"
export KYSO_TEST_DIR
export SOFTHSM2_CONF="$KYSO_TEST_DIR/softhsm2.conf"
export KYSO_SOCKET="$KYSO_TEST_DIR/kysod.sock"
export KYSO_TEST_LABEL=kyso-test
export KYSO_TEST_PIN=4815162342
export KYSO_TEST_SO_PIN=9081726354
export KYSO_TEST_RESTART="$KYSO_TEST_DIR/restart-kysod.sh"

state_dir=${KYSO_TEST_STATE_DIR:-$KYSO_TEST_DIR/state}
export KYSO_TEST_STATE_DIR=$state_dir
mkdir -p "$KYSO_TEST_DIR/tokens" "$state_dir"
# The daemon reads a copy: a test may change it and send SIGHUP.
cp "${config_args[1]}" "$KYSO_TEST_DIR/kysod.conf"
config_args=(--config "$KYSO_TEST_DIR/kysod.conf")
clock_args=()
[ -z "${KYSO_TEST_CLOCK:-}" ] || clock_args=(--test-clock "$KYSO_TEST_CLOCK")
printf 'directories.tokendir = %s/tokens/\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$KYSO_TEST_DIR" >"$SOFTHSM2_CONF"
for i in $(seq 1 "$tokens"); do
    label=$KYSO_TEST_LABEL
    [ "$i" -gt 1 ] && label="$KYSO_TEST_LABEL-$i"
    softhsm2-util --init-token --free --label "$label" \
        --so-pin "$KYSO_TEST_SO_PIN" --pin "$KYSO_TEST_PIN" >/dev/null
done

# Each mock backend: its own module copy, its own SoftHSM2 copy (separate state) and store.
extra_backends=()
for spec in "${mocks[@]}"; do
    name=${spec%%:*}
    settings=${spec#*:}
    [ "$settings" = "$spec" ] && settings=
    : "${KYSO_MOCK_MODULE:?KYSO_MOCK_MODULE must name the mock module for --mock}"
    mdir="$KYSO_TEST_DIR/mock-$name"
    mkdir -p "$mdir/tokens"
    cp "$KYSO_MOCK_MODULE" "$KYSO_TEST_DIR/$name.so"
    cp "$SOFTHSM_MODULE" "$mdir/softhsm.so"
    printf 'directories.tokendir = %s/tokens/\nobjectstore.backend = file\nlog.level = ERROR\n' "$mdir" >"$mdir/softhsm2.conf"
    SOFTHSM2_CONF="$mdir/softhsm2.conf" softhsm2-util --init-token --free --label "kyso-$name" \
        --so-pin "$KYSO_TEST_SO_PIN" --pin "$KYSO_TEST_PIN" >/dev/null
    {
        echo "target=$mdir/softhsm.so"
        echo "softhsm2_conf=$mdir/softhsm2.conf"
        echo "stats=$KYSO_TEST_DIR/$name.stats"
        tr ',' '\n' <<<"$settings"
    } >"$KYSO_TEST_DIR/$name.so.conf"
    extra_backends+=(--backend "$KYSO_TEST_DIR/$name.so")
done

wait_for_socket() {
    local i
    for i in $(seq 1 $((daemon_wait * 20))); do
        if python3 - "$KYSO_SOCKET" <<'PY' 2>/dev/null; then return 0; fi
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
PY
        if ! kill -0 "$(cat "$KYSO_TEST_DIR/kysod.pid")" 2>/dev/null; then
            echo "with-kysod: kysod exited during start-up:" >&2
            cat "$KYSO_TEST_DIR/kysod.log" >&2
            return 1
        fi
        sleep 0.05
    done
    echo "with-kysod: kysod did not open $KYSO_SOCKET within $daemon_wait s:" >&2
    cat "$KYSO_TEST_DIR/kysod.log" >&2
    return 1
}

start_kysod() {
    "${daemon_wrapper[@]}" "$KYSOD" "${config_args[@]}" "${clock_args[@]}" --state-dir "$state_dir" --socket "$KYSO_SOCKET" \
        --backend "$main_backend" "${extra_backends[@]}" --log-level "${KYSO_TEST_LOG_LEVEL:-info}" \
        --bus "${KYSO_TEST_BUS:-none}" \
        >>"$KYSO_TEST_DIR/kysod.log" 2>&1 &
    echo $! >"$KYSO_TEST_DIR/kysod.pid"
    child_pid=$!
    wait_for_socket
}

# Stops the daemon; returns non-zero if it was running and did not exit 0 on SIGTERM. Its exit status
# is known only when it is the one start_kysod started (not one started by $KYSO_TEST_RESTART).
child_pid=
stop_kysod() {
    local pid rc=0 status=0
    pid=$(cat "$KYSO_TEST_DIR/kysod.pid" 2>/dev/null) || return 0
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 $((daemon_wait * 10))); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "with-kysod: kysod did not stop on SIGTERM within $daemon_wait s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
            rc=1
        fi
        if [ "$pid" = "$child_pid" ]; then
            wait "$pid" 2>/dev/null || status=$?
            if [ "$status" -ne 0 ]; then
                echo "with-kysod: kysod exited with status $status on SIGTERM (expected 0)" >&2
                rc=1
            fi
        fi
    fi
    [ "$pid" != "$child_pid" ] || wait "$pid" 2>/dev/null || true
    rm -f "$KYSO_TEST_DIR/kysod.pid"
    return $rc
}

# Fails (printing the reports) if the daemon's log or a wrapper's log holds an error report of ASan,
# LSan, UBSan, TSan or valgrind. A valgrind log without an ERROR SUMMARY is of a killed daemon: any
# stack trace in it is an error reported before the kill.
check_daemon_reports() {
    local f bad=0
    for f in "$KYSO_TEST_DIR/kysod.log" "$KYSO_TEST_DIR"/daemon-*.log; do
        [ -f "$f" ] || continue
        if grep -Eq 'ERROR: (Address|Leak|Thread|Memory)Sanitizer|WARNING: ThreadSanitizer|runtime error:' "$f" ||
            grep -Eq '== ERROR SUMMARY: [1-9]' "$f" ||
            { grep -q '^==[0-9]*== Memcheck' "$f" && ! grep -q '== ERROR SUMMARY:' "$f" &&
                grep -Eq '^==[0-9]+== +(at|by) 0x' "$f"; }; then
            echo "with-kysod: error reports in ${f##*/}:" >&2
            cat "$f" >&2
            bad=1
        fi
    done
    return $bad
}

cleanup() {
    local rc=$?
    stop_kysod || rc=1
    if ! check_daemon_reports; then
        echo "with-kysod: the daemon reported errors: test failed" >&2
        rc=1
    elif [ $rc -ne 0 ] && [ -f "$KYSO_TEST_DIR/kysod.log" ]; then
        echo "---- kysod log ----" >&2
        tail -n 60 "$KYSO_TEST_DIR/kysod.log" >&2
    fi
    rm -rf "$KYSO_TEST_DIR"
    exit $rc
}
trap cleanup EXIT

# A restart helper for tests of daemon restarts: kill -9 (or TERM) the old one yourself first if you want.
cat >"$KYSO_TEST_RESTART" <<RESTART
#!/bin/bash
set -e
export SOFTHSM2_CONF="$SOFTHSM2_CONF" KYSO_SOCKET="$KYSO_SOCKET"
pid=\$(cat "$KYSO_TEST_DIR/kysod.pid" 2>/dev/null || true)
if [ -n "\$pid" ] && kill -0 "\$pid" 2>/dev/null; then kill -TERM "\$pid"; while kill -0 "\$pid" 2>/dev/null; do sleep 0.05; done; fi
${daemon_wrapper[*]:-} "$KYSOD" ${config_args[*]:-} ${clock_args[*]:-} --state-dir "$state_dir" --socket "$KYSO_SOCKET" --backend "$main_backend" ${extra_backends[*]:-} \
    --log-level "${KYSO_TEST_LOG_LEVEL:-info}" --bus "${KYSO_TEST_BUS:-none}" >>"$KYSO_TEST_DIR/kysod.log" 2>&1 &
echo \$! >"$KYSO_TEST_DIR/kysod.pid"
for i in \$(seq 1 $((daemon_wait * 20))); do
    python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])' "$KYSO_SOCKET" 2>/dev/null && exit 0
    sleep 0.05
done
echo "restart: kysod did not come back" >&2
exit 1
RESTART
chmod +x "$KYSO_TEST_RESTART"

if [ "$daemon" = 1 ]; then
    start_kysod
    KYSOD_PID=$(cat "$KYSO_TEST_DIR/kysod.pid")
    export KYSOD_PID
fi

"$@"
