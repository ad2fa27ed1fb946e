#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The daemon's life cycle as clients and administrators see it: no daemon →
# clients fail promptly and cleanly (KYSO_DEBUG=1 says why); kysod's command
# line; two backends (SoftHSM2 with two tokens, p11-kit-trust) appear as one
# slot list; the socket is 0666 and another uid can use it; a second kysod
# refuses a socket that is being served; after kysod is killed, clients fail
# cleanly, and a restarted kysod (over the stale socket) serves them again;
# SIGTERM stops kysod with exit status 0 and removes the socket.
[ -n "${KYSO_SOCKET:-}" ] || exec "$(dirname "$0")/with-kysod.sh" --tokens 2 --no-daemon "$0" "$@"
set -euo pipefail
. "$(dirname "$0")/lib.sh"

: "${KYSOD:?KYSOD must name the kysod binary}"
cd "$WORK"

TRUST_MODULE=
for m in /usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-trust.so /usr/lib/*/pkcs11/p11-kit-trust.so; do
    [ -f "$m" ] && { TRUST_MODULE=$m; break; }
done

# Run a client that must fail promptly: not a time-out, not a signal.
# Leaves its exit status in client.rc and its output in client.out/client.err.
run_failing_client() {
    local rc=0
    timeout -k 2 10 "$@" >client.out 2>client.err || rc=$?
    echo "$rc" >client.rc
    echo "exit status: $rc"
    echo "--- stdout"; cat client.out
    echo "--- stderr"; cat client.err
    [ "$rc" -ne 0 ] || fail "the client succeeded without a daemon"
    [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || fail "the client hung (killed by timeout after 10 s)"
    [ "$rc" -lt 128 ] || fail "the client died of signal $((rc - 128))"
}

# ---- no daemon -------------------------------------------------------------

[ ! -e "$KYSO_SOCKET" ] || { echo "Bail out! $KYSO_SOCKET exists before any kysod ran"; exit 1; }

no_daemon() {
    KYSO_DEBUG='' run_failing_client pkcs11-tool --module "$KYSO_MODULE" -L
    expect_contains client.err 'C_Initialize'
}
check "no daemon: pkcs11-tool -L fails promptly with a PKCS#11 error (no hang, no crash)" no_daemon

no_daemon_debug() {
    KYSO_DEBUG=1 run_failing_client pkcs11-tool --module "$KYSO_MODULE" -L
    # It must say why: the socket it could not reach.
    expect_contains client.err "$KYSO_SOCKET|[Ss]ocket"
}
check "no daemon: with KYSO_DEBUG=1 the module says on stderr that the socket is unreachable" no_daemon_debug

stale_socket() {
    # A socket file nobody listens on (left by a crashed daemon): ECONNREFUSED.
    python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.close()' "$WORK/stale.sock"
    KYSO_SOCKET=$WORK/stale.sock KYSO_DEBUG=1 run_failing_client pkcs11-tool --module "$KYSO_MODULE" -L
    expect_contains client.err "stale\.sock|[Ss]ocket|[Cc]onnect"
}
check "no daemon: a stale socket file nobody serves fails promptly too" stale_socket

p11tool_no_daemon() {
    run_failing_client p11tool --provider "$KYSO_MODULE" --list-tokens
}
check "no daemon: p11tool --list-tokens fails promptly (no hang, no crash)" p11tool_no_daemon

# ---- kysod's command line ----------------------------------------------------

kysod_help() {
    timeout 10 "$KYSOD" --help >out 2>&1 || { cat out; return 1; }
    cat out
    expect_contains out '--socket'
    expect_contains out '--backend'
    expect_contains out '--state-dir'
    expect_contains out '--config'
}
check "kysod --help exits 0 and documents --config, --socket, --state-dir, --backend" kysod_help

kysod_version() {
    timeout 10 "$KYSOD" --version >out 2>&1 || { cat out; return 1; }
    cat out
    expect_contains out '[0-9]+\.[0-9]+\.[0-9]+'
}
check "kysod --version exits 0 and prints a version" kysod_version

kysod_bad_option() {
    local rc=0
    timeout 10 "$KYSOD" --no-such-option >out 2>&1 || rc=$?
    cat out
    echo "exit status: $rc"
    [ "$rc" -ne 0 ] || fail "kysod accepted an unknown option"
    [ "$rc" -ne 124 ] || fail "kysod kept running with an unknown option"
    [ "$rc" -lt 128 ] || fail "kysod died of a signal"
    [ -s out ] || fail "kysod said nothing about the unknown option"
}
check "kysod with an unknown option exits non-zero with a message" kysod_bad_option

# ---- a running daemon with two backends --------------------------------------

start_kysod() {
    local backends=(--backend "$SOFTHSM_MODULE")
    [ -z "$TRUST_MODULE" ] || backends+=(--backend "$TRUST_MODULE")
    "$KYSOD" --config "$KYSO_SOURCE_ROOT/tests/integration/unknown-allow.conf" --bus none --state-dir "$KYSO_TEST_DIR/state" --socket "$KYSO_SOCKET" "${backends[@]}" \
        --log-level info >>"$KYSO_TEST_DIR/kysod.log" 2>&1 </dev/null &
    echo $! >"$KYSO_TEST_DIR/kysod.pid"
    wait_socket "$KYSO_SOCKET" "$!"
}
check "kysod starts with two backends (SoftHSM2${TRUST_MODULE:+ and p11-kit-trust})" start_kysod

socket_mode() {
    local mode
    mode=$(stat -c %a "$KYSO_SOCKET")
    echo "socket mode: $mode"
    [ "$mode" = 666 ] || fail "expected mode 0666"
    [ -S "$KYSO_SOCKET" ] || fail "not a socket"
}
check "the socket is mode 0666" socket_mode

one_slot_list() {
    p11 -L >out
    cat out
    expect_contains out "token label +: $KYSO_TEST_LABEL\$"
    expect_contains out "token label +: $KYSO_TEST_LABEL-2\$"
    if [ -n "$TRUST_MODULE" ]; then
        expect_contains out 'token label +: System Trust$'
    fi
    # Slot ids are unique across backends.
    local ids
    ids=$(sed -n 's/^Slot [0-9]* (\(0x[0-9a-f]*\)).*/\1/p' out)
    [ "$(echo "$ids" | sort | uniq -d)" = "" ] || fail "duplicate slot ids: $ids"
}
check "two backends and two tokens appear as one slot list" one_slot_list

use_second_token() {
    t pkcs11-tool --module "$KYSO_MODULE" --token-label "$KYSO_TEST_LABEL-2" --login --pin "$KYSO_TEST_PIN" \
        --keypairgen --key-type EC:prime256v1 --label second --id 42 >/dev/null
    t pkcs11-tool --module "$KYSO_MODULE" --token-label "$KYSO_TEST_LABEL-2" --login --pin "$KYSO_TEST_PIN" -O >out
    expect_contains out 'label: +second'
    # pkcs11-tool's --token-label matches a prefix ("kyso-test" also picks "kyso-test-2", directly on
    # SoftHSM2 as well): name the first token's slot by its id, read from the exact label.
    local slot
    p11 -L >out
    slot=$(awk -v want="$KYSO_TEST_LABEL" '/^Slot [0-9]+ \(0x/ { id = $3; gsub(/[():]/, "", id) }
        /token label +:/ { sub(/^ *token label +: /, ""); if ($0 == want) print id }' out)
    [ -n "$slot" ] || fail "no slot with the label $KYSO_TEST_LABEL"
    t pkcs11-tool --module "$KYSO_MODULE" --slot "$slot" --login --pin "$KYSO_TEST_PIN" -O >out
    if grep -q 'label: *second' out; then cat out; fail "the key shows up on the other token"; fi
}
check "the second token is usable on its own (a key made there is not on the first)" use_second_token

other_uid() {
    # The module lives in the build tree, which another user may not be able to read: copy it.
    mkdir -p "$WORK/nobody"
    cp "$KYSO_MODULE" "$WORK/nobody/kyso-pkcs11.so"
    chmod 0755 "$WORK/nobody" "$WORK/nobody/kyso-pkcs11.so"
    HOME=$WORK/nobody t setpriv --reuid=nobody --regid=nogroup --clear-groups \
        pkcs11-tool --module "$WORK/nobody/kyso-pkcs11.so" -L >out 2>&1 || { cat out; return 1; }
    cat out
    expect_contains out "token label +: $KYSO_TEST_LABEL\$"
}
check "a client running as uid nobody lists the token through kyso" other_uid

second_daemon() {
    local rc=0 first
    first=$(cat "$KYSO_TEST_DIR/kysod.pid")
    mkdir -p "$WORK/state2"
    # p11-kit-trust (or SoftHSM2 if absent) as backend: never two SoftHSM2 C_Initialize at once.
    timeout -k 2 10 "$KYSOD" --config "$KYSO_SOURCE_ROOT/tests/integration/unknown-allow.conf" --bus none --state-dir "$WORK/state2" --socket "$KYSO_SOCKET" \
        --backend "${TRUST_MODULE:-$SOFTHSM_MODULE}" >out 2>&1 || rc=$?
    cat out
    echo "exit status: $rc"
    [ "$rc" -ne 124 ] || fail "the second kysod started on a socket that is being served"
    [ "$rc" -ne 0 ] || fail "the second kysod exited 0"
    [ "$rc" -lt 128 ] || fail "the second kysod died of signal $((rc - 128))"
    [ -s out ] || fail "the second kysod said nothing"
    kill -0 "$first" || fail "the first kysod is gone"
    [ -S "$KYSO_SOCKET" ] || fail "the socket file was removed"
    p11 -L >out
    expect_contains out "token label +: $KYSO_TEST_LABEL\$"
}
check "a second kysod refuses a socket the first serves; the first keeps serving" second_daemon

# ---- crash and restart -------------------------------------------------------

killed() {
    local pid
    pid=$(cat "$KYSO_TEST_DIR/kysod.pid")
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    KYSO_DEBUG='' run_failing_client pkcs11-tool --module "$KYSO_MODULE" -L
}
check "kysod killed (SIGKILL): clients fail promptly and cleanly" killed

restarted() {
    "$KYSO_TEST_RESTART"
    p11 -L >out
    cat out
    expect_contains out "token label +: $KYSO_TEST_LABEL\$"
}
check "kysod restarted over the stale socket: pkcs11-tool -L works again" restarted

restarted_sign() {
    # The tokens survived the restart: the key made before is there and signs.
    printf 'after restart' >msg
    t pkcs11-tool --module "$KYSO_MODULE" --token-label "$KYSO_TEST_LABEL-2" --login --pin "$KYSO_TEST_PIN" \
        -s -m ECDSA --id 42 -i <(openssl dgst -sha256 -binary msg) --signature-format openssl -o sig
    t pkcs11-tool --module "$KYSO_MODULE" --token-label "$KYSO_TEST_LABEL-2" --read-object --type pubkey \
        --id 42 -o pub.der
    openssl dgst -sha256 -verify <(openssl pkey -pubin -inform DER -in pub.der) -signature sig msg
}
check "after the restart a key made before signs, and OpenSSL verifies it" restarted_sign

# ---- SIGTERM -----------------------------------------------------------------

stop_restarted() {
    # The restarted daemon is not our child: stop it by its PID and wait until it is gone.
    local pid
    pid=$(cat "$KYSO_TEST_DIR/kysod.pid")
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    ! kill -0 "$pid" 2>/dev/null || fail "kysod $pid still runs 10 s after SIGTERM"
    rm -f "$KYSO_TEST_DIR/kysod.pid"
}
check "the restarted kysod stops on SIGTERM" stop_restarted

sigterm() {
    local pid rc=0 i
    # Our own child this time, so its exit status can be collected.
    "$KYSOD" --config "$KYSO_SOURCE_ROOT/tests/integration/unknown-allow.conf" --bus none --state-dir "$KYSO_TEST_DIR/state" --socket "$KYSO_SOCKET" --backend "$SOFTHSM_MODULE" \
        --log-level info >>"$KYSO_TEST_DIR/kysod.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$KYSO_TEST_DIR/kysod.pid"
    wait_socket "$KYSO_SOCKET" "$pid"
    # A client session in progress must not keep it from stopping.
    p11 -L >/dev/null
    kill -TERM "$pid"
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid"
        fail "kysod still ran 10 s after SIGTERM"
    fi
    wait "$pid" || rc=$?
    rm -f "$KYSO_TEST_DIR/kysod.pid"
    echo "exit status: $rc"
    [ "$rc" -eq 0 ] || fail "kysod exited with status $rc on SIGTERM"
    [ ! -e "$KYSO_SOCKET" ] || fail "the socket $KYSO_SOCKET is still there"
}
check "SIGTERM stops kysod cleanly: exit status 0, socket removed" sigterm

after_stop() {
    KYSO_DEBUG='' run_failing_client pkcs11-tool --module "$KYSO_MODULE" -L
}
check "after kysod stopped, clients fail promptly again" after_stop

finish
