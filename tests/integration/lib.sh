# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Shared helpers for the shell integration tests (sourced, not run).
#
# A test script does:
#
#   [ -n "${KYSO_SOCKET:-}" ] || exec "$(dirname "$0")/with-kysod.sh" "$0" "$@"
#   set -euo pipefail
#   . "$(dirname "$0")/lib.sh"
#   check "what is checked" some_function_or_command args...
#   ...
#   finish
#
# check runs its command in a subshell with `set -e` in force (so a check
# function may be written as a plain sequence of commands: the first failing
# one fails the check), captures its output, prints "ok - ..." or
# "not ok - ..." followed by the captured output as "# " lines, and counts
# failures. finish prints a summary and exits non-zero if any check failed.

: "${KYSO_MODULE:?KYSO_MODULE must name kyso-pkcs11.so}"
: "${SOFTHSM_MODULE:=/usr/lib/softhsm/libsofthsm2.so}"
: "${KYSO_TEST_LABEL:=kyso-test}"

# Seconds any single client command may take before it counts as a hang.
: "${KYSO_CLIENT_TIMEOUT:=60}"

# Scratch space of this test; with-kysod.sh removes KYSO_TEST_DIR afterwards.
WORK=$(mktemp -d "${KYSO_TEST_DIR:-/tmp}/work.XXXXXX")
chmod 0755 "$WORK"

_checks=0
_failed=0
_check_log="$WORK/.check.log"

# check DESCRIPTION COMMAND [ARGS...]
check() {
    local desc=$1 rc
    shift
    _checks=$((_checks + 1))
    set +e
    (
        set -e
        "$@"
    ) >"$_check_log" 2>&1 </dev/null
    rc=$?
    set -e
    if [ $rc -eq 0 ]; then
        echo "ok - $desc"
    else
        _failed=$((_failed + 1))
        case $rc in
            124 | 137) echo "not ok - $desc (exit $rc: a command timed out — a hang)" ;;
            *) echo "not ok - $desc (exit $rc)" ;;
        esac
        sed -e 's/^/#   /' "$_check_log" | tail -n 40
        _note_daemon
    fi
    return 0
}

# After a failed check: say so if the daemon the test runs against has died,
# since every later check will fail for that reason alone.
_note_daemon() {
    local pid
    [ -n "${KYSO_TEST_DIR:-}" ] || return 0
    pid=$(cat "$KYSO_TEST_DIR/kysod.pid" 2>/dev/null) || return 0
    [ -n "$pid" ] || return 0
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "#   note: kysod (pid $pid) is no longer running; its log ends with:"
        tail -n 5 "$KYSO_TEST_DIR/kysod.log" 2>/dev/null | sed -e 's/^/#     /'
    fi
    return 0
}

# skip DESCRIPTION REASON: a check that cannot run here (counts as passed, says so).
skip() {
    _checks=$((_checks + 1))
    echo "ok - $1 # SKIP $2"
}

finish() {
    if [ "$_failed" -ne 0 ]; then
        echo "# $_failed of $_checks checks failed"
        exit 1
    fi
    echo "# all $_checks checks passed"
    exit 0
}

# fail MESSAGE: inside a check, fail it with a reason.
fail() {
    echo "$*" >&2
    return 1
}

# expect_contains FILE PATTERN (grep -E): fail showing the file if absent.
expect_contains() {
    if ! grep -Eq -- "$2" "$1"; then
        echo "expected /$2/ in:" >&2
        cat "$1" >&2
        return 1
    fi
}

# flip_byte FILE OFFSET: inverts the bits of one byte (writing a fixed value would leave it unchanged in
# one run of 256).
flip_byte() {
    python3 -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[int(sys.argv[2])] ^= 0xff; open(sys.argv[1], "wb").write(b)' "$1" "$2"
}

# Run a command with the client timeout; exit 124 means it hung.
t() {
    timeout -k 5 "$KYSO_CLIENT_TIMEOUT" "$@"
}

# pkcs11-tool through kyso-pkcs11.so.
p11() {
    t pkcs11-tool --module "$KYSO_MODULE" "$@"
}

# pkcs11-tool through kyso on the test token, logged in as the user.
p11_user() {
    t pkcs11-tool --module "$KYSO_MODULE" --token-label "$KYSO_TEST_LABEL" \
        --login --pin "$KYSO_TEST_PIN" "$@"
}

# pkcs11-tool straight on SoftHSM2 (the same store the daemon serves). Only
# for read-only comparisons, never in parallel with another client.
p11_direct() {
    t pkcs11-tool --module "$SOFTHSM_MODULE" "$@"
}

# Percent-encode a string for a pkcs11: URI path attribute value.
uri_escape() {
    local s=$1 out='' c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case "$c" in
            [a-zA-Z0-9._~-]) out+=$c ;;
            *) out+=$(printf '%%%02X' "'$c") ;;
        esac
    done
    printf '%s' "$out"
}

# can_connect SOCKET: true if something accepts connections on the unix socket.
can_connect() {
    python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect(sys.argv[1])' "$1" 2>/dev/null
}

# wait_socket SOCKET PID: wait (10 s at most) until SOCKET accepts connections
# while process PID runs. Fails if PID exits first or on time-out.
wait_socket() {
    local i
    for i in $(seq 1 200); do
        can_connect "$1" && return 0
        kill -0 "$2" 2>/dev/null || { echo "process $2 exited before $1 accepted connections" >&2; return 1; }
        sleep 0.05
    done
    echo "$1 did not accept connections within 10 s" >&2
    return 1
}

# ---- kysod on D-Bus (tests run under with-system-bus.sh) ----------------------

# wait_bus_name: kysod owns org.kyso1 on the (test's) system bus, within 10 s.
wait_bus_name() {
    local i
    for i in $(seq 1 100); do
        # NameHasOwner, not "busctl status": that one reads the owner's /proc, which umockdev's preload hides.
        busctl --system call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus NameHasOwner s \
            org.kyso1 2>/dev/null | grep -q true && return 0
        sleep 0.1
    done
    echo "org.kyso1 did not appear on the bus" >&2
    return 1
}

# token_field LABEL FIELD: a field of the present-or-not token labelled LABEL, from kysoctl --json tokens
# (FIELD "slot" asks for a present one: pkcs11-tool --token-label matches by prefix, so tests use slots).
token_field() {
    t "$KYSOCTL" --json tokens | python3 -c '
import json, sys
for t in json.load(sys.stdin):
    if t["label"] == sys.argv[1] and (sys.argv[2] != "slot" or t["present"]):
        print(t[sys.argv[2]])
        break
else:
    sys.exit("no token labelled " + sys.argv[1])' "$1" "$2"
}
serial_of() { token_field "$1" serial; }
slot_of() { token_field "$1" slot; }

# token_prop SERIAL KEY: one field of `kysoctl --json token SERIAL` (JSON for what is not a string).
token_prop() {
    t "$KYSOCTL" --json token "$1" | python3 -c '
import json, sys
v = json.load(sys.stdin)[sys.argv[1]]
print(v if isinstance(v, str) else json.dumps(v))' "$2"
}

# start_signal_monitor: every signal kysod sends, as dbus-monitor prints them, into $monitor_log
# (stopped when the test exits).
start_signal_monitor() {
    monitor_log="$WORK/signals.log"
    dbus-monitor --system "type='signal',sender='org.kyso1'" >"$monitor_log" 2>&1 &
    monitor_pid=$!
    trap 'kill $monitor_pid 2>/dev/null || true' EXIT
}

# wait_signal PATTERN [AFTER [SECONDS]]: the monitor saw a line matching PATTERN (grep -E) after line AFTER
# of its log (default 0), within SECONDS (default 5).
wait_signal() {
    local i
    for i in $(seq 1 $((${3:-5} * 10))); do
        tail -n +"$((${2:-0} + 1))" "$monitor_log" | grep -Eq -- "$1" && return 0
        sleep 0.1
    done
    echo "no signal matching /$1/ within ${3:-5} s in:" >&2
    tail -n 40 "$monitor_log" >&2
    return 1
}
