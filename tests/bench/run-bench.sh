#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Runs kyso-bench against SoftHSM2 directly, through kyso (a real kysod from with-kysod.sh) and
# through p11-kit's remoting (`p11-kit server` + p11-kit-client.so), all serving one fresh SoftHSM2
# token, and prints the table.
#
#   run-bench.sh [kyso-bench options, e.g. --duration 2]
#
# Needs KYSOD, KYSO_MODULE, SOFTHSM_MODULE and KYSO_BENCH (meson sets them; see tests/bench/meson.build).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)

if [ -z "${KYSO_TEST_DIR:-}" ]; then
    : "${KYSO_BENCH:?KYSO_BENCH must name the kyso-bench binary}"
    # Quieter daemon: a log line per connection would be measured too.
    export KYSO_TEST_LOG_LEVEL=${KYSO_TEST_LOG_LEVEL:-warning}
    exec "${WITH_KYSOD:-$here/../integration/with-kysod.sh}" "$0" "$@"
fi

# Inside with-kysod.sh: kysod is up on the token; add p11-kit's server on the same store.
client=${P11KIT_CLIENT_MODULE:-}
if [ -z "$client" ]; then
    for c in /usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so /usr/lib/*/pkcs11/p11-kit-client.so \
             /usr/lib/pkcs11/p11-kit-client.so; do
        [ -e "$c" ] && { client=$c; break; }
    done
fi
p11kit_pid=
cleanup_p11kit() {
    if [ -n "$p11kit_pid" ] && kill -0 "$p11kit_pid" 2>/dev/null; then
        kill -TERM "$p11kit_pid" 2>/dev/null || true
        wait "$p11kit_pid" 2>/dev/null || true
    fi
}
trap cleanup_p11kit EXIT

if [ -n "$client" ] && command -v p11-kit >/dev/null; then
    export XDG_RUNTIME_DIR="$KYSO_TEST_DIR"
    p11-kit server -f -s -n "$KYSO_TEST_DIR/p11-kit.sock" --provider "$SOFTHSM_MODULE" \
        "pkcs11:token=$KYSO_TEST_LABEL" >"$KYSO_TEST_DIR/p11-kit.env" 2>"$KYSO_TEST_DIR/p11-kit.log" &
    p11kit_pid=$!
    for _ in $(seq 1 100); do
        [ -S "$KYSO_TEST_DIR/p11-kit.sock" ] && break
        sleep 0.05
    done
    export P11_KIT_SERVER_ADDRESS="unix:path=$KYSO_TEST_DIR/p11-kit.sock"
    export P11KIT_CLIENT_MODULE="$client"
    echo "run-bench: p11-kit server (pid $p11kit_pid) at $P11_KIT_SERVER_ADDRESS, client $client" >&2
else
    echo "run-bench: p11-kit-client.so or p11-kit not found: skipping the p11-kit rows" >&2
    unset P11KIT_CLIENT_MODULE
fi

echo "run-bench: kysod pid $(cat "$KYSO_TEST_DIR/kysod.pid"), SoftHSM2 $SOFTHSM_MODULE, token $KYSO_TEST_LABEL" >&2
"$KYSO_BENCH" "$@"
