#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# kysod with no backend named anywhere loads the PKCS#11 modules registered
# with p11-kit, except kyso's own (which would loop) and trust-policy
# modules. p11-kit reads a user's module configuration only for non-root
# programs, so this test runs kysod and its client as nobody, with a HOME
# that registers SoftHSM2 and kyso-pkcs11.so (without the "disable-in:
# kysod" line the shipped kyso.module has, so kysod's own check is what
# keeps it out).
[ -n "${KYSO_SOCKET:-}" ] || exec "$(dirname "$0")/with-kysod.sh" --no-daemon "$0" "$@"
set -euo pipefail
. "$(dirname "$0")/lib.sh"

home="$WORK/home"
store="$WORK/nobody-store"
sock="$home/registry.sock"
log="$WORK/registry-kysod.log"
pidfile="$WORK/registry-kysod.pid"

setup_nobody() {
    mkdir -p "$home/.config/pkcs11/modules" "$store/tokens" "$WORK/state"
    printf 'module: %s\n' "$SOFTHSM_MODULE" >"$home/.config/pkcs11/modules/test-softhsm.module"
    printf 'module: %s\n' "$KYSO_MODULE" >"$home/.config/pkcs11/modules/test-kyso.module"
    printf 'directories.tokendir = %s/tokens/\nobjectstore.backend = file\nlog.level = ERROR\n' "$store" \
        >"$store/softhsm2.conf"
    chown -R nobody:nogroup "$home" "$store" "$WORK/state"
    chmod 0755 "$WORK"
    as_nobody env SOFTHSM2_CONF="$store/softhsm2.conf" softhsm2-util --init-token --free \
        --label registry-token --so-pin "$KYSO_TEST_SO_PIN" --pin "$KYSO_TEST_PIN" >/dev/null
}

as_nobody() {
    setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME="$home" "$@"
}

start_kysod() {
    # Not through the as_nobody function: a backgrounded function is a subshell, and $! would name it
    # instead of kysod.
    setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME="$home" SOFTHSM2_CONF="$store/softhsm2.conf" \
        "$KYSOD" --config "$KYSO_SOURCE_ROOT/tests/integration/unknown-allow.conf" --bus none --state-dir "$WORK/state" --socket "$sock" --log-level debug >"$log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 100); do
        [ -S "$sock" ] && break
        sleep 0.1
    done
    [ -S "$sock" ] || { cat "$log"; fail "kysod did not start"; }
}

stop_kysod() {
    local pid
    pid=$(cat "$pidfile" 2>/dev/null) || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}
trap stop_kysod EXIT

registered_modules_loaded() {
    cat "$log"
    # p11-kit may name SoftHSM2 by its system registration's path: the same module.
    expect_contains "$log" "Loaded PKCS#11 module .*libsofthsm2.so"
    expect_contains "$log" "Skipping p11-kit module .*kyso-pkcs11.so: that is kyso itself"
    if grep -q "Loaded PKCS#11 module .*kyso-pkcs11.so" "$log"; then fail "kysod loaded itself"; fi
    if grep -q "Loaded PKCS#11 module .*p11-kit-trust" "$log"; then fail "kysod loaded the trust module"; fi
}

token_served() {
    as_nobody env KYSO_SOCKET="$sock" timeout 30 pkcs11-tool --module "$KYSO_MODULE" -L >"$WORK/out"
    cat "$WORK/out"
    expect_contains "$WORK/out" 'token label +: registry-token$'
}

check "set up a user-registered SoftHSM2 and kyso for nobody" setup_nobody
check "kysod starts without any --backend" start_kysod
check "it loads the registered modules, not itself, not the trust module" registered_modules_loaded
check "the registered module's token is served through kyso" token_served
finish
