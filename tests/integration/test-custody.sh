#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Custody end to end: a real kysod with two SoftHSM2 tokens on a private bus
# that enforces the real system-bus policy plus kyso's policy file, local
# users made for the test, clients run as those users (setpriv), custody
# managed with kysoctl, and a D-Bus listener that records kysod's signals.
#
#   users   kyso-a<N> "alice", kyso-b<N> "bob" (in group kyso-clerks<N>),
#           kyso-c<N> "carol" (in group kyso-admins<N>, the admin group),
#           N unique to the run, so that two runs on one machine do not share users
#
# Grant, deny, group holder, unknown tokens under deny (here) and allow (a
# second daemon at the end), admin methods refused to an ordinary user and
# allowed to the admin group, handover, lost during an open session, a
# validity window ending during an open session, the token objects'
# properties and the signals, export/import (a malformed file changes
# nothing), the store surviving SIGKILL of kysod, and the bus going away.
#
# Needs root (it adds users and groups, and removes them afterwards).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)

if [ "${1:-}" != --inner ] && [ "${1:-}" != --inner-allow ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "1..0 # SKIP needs root to add test users"
        exit 77
    fi
    created_users=()
    created_groups=()
    cleanup_outer() {
        local rc=$?
        for u in "${created_users[@]}"; do userdel "$u" 2>/dev/null || true; done
        for g in "${created_groups[@]}"; do groupdel "$g" 2>/dev/null || true; done
        exit $rc
    }
    trap cleanup_outer EXIT
    export KYSO_T=${KYSO_T:-$$}
    for g in "kyso-clerks$KYSO_T" "kyso-admins$KYSO_T"; do
        if ! getent group "$g" >/dev/null; then groupadd "$g"; created_groups+=("$g"); fi
    done
    for spec in "kyso-a$KYSO_T:" "kyso-b$KYSO_T:kyso-clerks$KYSO_T" "kyso-c$KYSO_T:kyso-admins$KYSO_T"; do
        u=${spec%%:*} g=${spec#*:}
        if ! getent passwd "$u" >/dev/null; then
            useradd -M -d /nonexistent -s /usr/sbin/nologin ${g:+-G "$g"} "$u"
            created_users+=("$u")
        fi
    done

    # The rest runs under a private system bus (with-system-bus.sh; this script again, the users made).
    if [ "${KYSO_TEST_BUS:-}" != system ]; then
        rc=0
        "$here/with-system-bus.sh" "$0" "$@" || rc=$?
        exit $rc
    fi
    # The configurations name this run's admin group.
    conf=$(mktemp -d /tmp/kyso-custody.XXXXXX)
    sed "s/kyso-t-admins/kyso-admins$KYSO_T/" "$here/custody.conf" >"$conf/custody.conf"
    sed "s/kyso-t-admins/kyso-admins$KYSO_T/" "$here/custody-allow.conf" >"$conf/custody-allow.conf"
    rc=0
    # A third token behind the mock backend, as removable hardware that the test pulls and puts back.
    "$here/with-kysod.sh" --tokens 2 --mock usb:hardware=1 --config "$conf/custody.conf" -- "$0" --inner || rc=$?
    # The second daemon: unknown tokens allowed.
    if [ $rc -eq 0 ]; then
        "$here/with-kysod.sh" --tokens 2 --config "$conf/custody-allow.conf" -- "$0" --inner-allow || rc=$?
    fi
    rm -rf "$conf"
    exit $rc
fi

. "$here/lib.sh"
export ALICE=kyso-a$KYSO_T BOB=kyso-b$KYSO_T CAROL=kyso-c$KYSO_T CLERKS=kyso-clerks$KYSO_T
LABEL1=$KYSO_TEST_LABEL LABEL2=$KYSO_TEST_LABEL-2

# as USER CMD...: run a command as a test user (their groups from the account database).
as() {
    local u=$1
    shift
    t setpriv --reuid="$u" --regid="$(id -g "$u")" --init-groups env KYSO_SOCKET="$KYSO_SOCKET" \
        DBUS_SYSTEM_BUS_ADDRESS="$DBUS_SYSTEM_BUS_ADDRESS" "$@"
}

ctl() {
    t "$KYSOCTL" "$@"
}

# p11_as USER LABEL ARGS...: pkcs11-tool through kyso on a token, as a user, logged in.
p11_as() {
    local u=$1 slot
    slot=$(slot_of "$2")
    shift 2
    as "$u" pkcs11-tool --module "$KYSO_MODULE" --slot "$slot" --login --pin "$KYSO_TEST_PIN" "$@"
}

# usable USER LABEL: the user can log in and sign on the token (a session EC key, ECDSA).
usable() {
    p11_as "$1" "$2" --keypairgen --key-type EC:prime256v1 --label "probe-$1" --id 77 >/dev/null 2>&1 &&
        head -c 32 /dev/urandom >"$WORK/data" && chmod 644 "$WORK/data" &&
        p11_as "$1" "$2" --sign --id 77 -m ECDSA -i "$WORK/data" -o /dev/null >/dev/null 2>&1
}

# refused USER LABEL: opening a session is refused with CKR_TOKEN_NOT_RECOGNIZED.
refused() {
    local out rc=0
    out=$(as "$1" pkcs11-tool --module "$KYSO_MODULE" --slot "$(slot_of "$2")" -O 2>&1) || rc=$?
    echo "$out"
    [ $rc -ne 0 ] || fail "$1 could use $2"
    echo "$out" | grep -q CKR_TOKEN_NOT_RECOGNIZED || fail "expected CKR_TOKEN_NOT_RECOGNIZED"
}

start_signal_monitor

if [ "${1:-}" = --inner-allow ]; then
    # ---- [policy] unknown_tokens = allow: tokens without a record serve everyone, records still bind ----
    check "kysod is on the bus" wait_bus_name
    S1=$(serial_of "$LABEL1")
    S2=$(serial_of "$LABEL2")
    check "unknown tokens allowed: alice uses a token without a record" usable "$ALICE" "$LABEL2"
    check "unknown tokens allowed: bob uses it too" usable "$BOB" "$LABEL2"
    check "kysoctl status reports unknown_tokens = allow" bash -c "'$KYSOCTL' status | grep -Ei 'unknown.*allow'"
    check "a token with a record still binds: assign to alice" ctl assign "$S1" --kind personal \
        --holder "$ALICE" --decision "7/QĐ-UBND" --decision-date 2026-02-01
    check "alice uses her token" usable "$ALICE" "$LABEL1"
    hidden() { # USER LABEL: the token is absent for the user (refused_tokens = hidden)
        local out rc=0 slot
        slot=$(slot_of "$2")
        as "$1" pkcs11-tool --module "$KYSO_MODULE" -L >"$WORK/list" 2>&1
        cat "$WORK/list"
        ! grep -q "token label *: $2\$" "$WORK/list" || fail "$1 sees $2"
        out=$(as "$1" pkcs11-tool --module "$KYSO_MODULE" --slot "$slot" -O 2>&1) || rc=$?
        echo "$out"
        [ $rc -ne 0 ] || fail "$1 could use $2"
        echo "$out" | grep -q CKR_TOKEN_NOT_PRESENT || fail "expected CKR_TOKEN_NOT_PRESENT"
        grep -q "Refused C_OpenSession on token $(serial_of "$2").*uid $(id -u "$1")" "$KYSO_TEST_DIR/kysod.log" ||
            fail "the attempt was not recorded"
    }
    check "refused_tokens = hidden: alice's token is absent for bob (not listed, C_OpenSession CKR_TOKEN_NOT_PRESENT, recorded)" \
        hidden "$BOB" "$LABEL1"
    check "and alice still sees and uses it" usable "$ALICE" "$LABEL1"
    finish
fi

# ---- unknown tokens, denied ----

check "kysod is on the bus as org.kyso1" wait_bus_name
S1=$(serial_of "$LABEL1")
S2=$(serial_of "$LABEL2")
echo "# tokens: $LABEL1 = $S1, $LABEL2 = $S2"

check "kysoctl tokens lists both tokens as unassigned" bash -c "
    '$KYSOCTL' tokens | tee /dev/stderr | grep -E '$S1.*unassigned' && '$KYSOCTL' tokens | grep -E '$S2.*unassigned'"
check "unknown token denied: alice is refused (CKR_TOKEN_NOT_RECOGNIZED)" refused "$ALICE" "$LABEL1"
check "unknown token denied: root is refused too" refused root "$LABEL1"
check "the refusal is an AccessDenied signal naming the token, uid and reason" \
    wait_signal "string \"$S1\""
check "AccessDenied carries the uid of alice" bash -c "grep -A8 'member=AccessDenied' '$monitor_log' | grep -q 'uint32 $(id -u $ALICE)'"
listed() {
    as "$ALICE" pkcs11-tool --module "$KYSO_MODULE" -L >"$WORK/list"
    expect_contains "$WORK/list" "$LABEL1"
}
check "a refused user still sees the token listed (C_GetSlotList, C_GetTokenInfo are public)" listed

# ---- admin methods ----

not_admin() {
    local rc=0
    as "$ALICE" "$KYSOCTL" assign "$S1" --kind personal --holder "$ALICE" --decision "1/QĐ" \
        --decision-date 2026-01-05 || rc=$?
    echo "exit status $rc"
    [ $rc -eq 3 ] || fail "expected exit status 3 (permission denied)"
    [ "$(token_prop "$S1" state)" = unassigned ] || fail "the registry changed"
}
check "an ordinary user cannot assign (kysoctl exits 3, nothing changes)" not_admin
check "an ordinary user cannot report a token lost either" bash -c "
    ! setpriv --reuid=$BOB --regid=$(id -g $BOB) --init-groups env DBUS_SYSTEM_BUS_ADDRESS='$DBUS_SYSTEM_BUS_ADDRESS' \
        '$KYSOCTL' report-lost '$S1'"
check "but may read the registry (kysoctl tokens as bob)" as "$BOB" "$KYSOCTL" tokens

assign_alice() {
    ctl assign "$S1" --kind personal --holder "$ALICE" --decision "12/QĐ-UBND" --decision-date 2026-01-05 \
        --signed-by "Nguyễn Văn A" --org "Sở Nội vụ"
    [ "$(token_prop "$S1" state)" = active ]
    [ "$(token_prop "$S1" holder)" = "$ALICE" ]
    [ "$(token_prop "$S1" decision_number)" = "12/QĐ-UBND" ]
    [ "$(token_prop "$S1" decision_signer)" = "Nguyễn Văn A" ]
    [ "$(token_prop "$S1" organization)" = "Sở Nội vụ" ]
    [ "$(token_prop "$S1" kind)" = personal ]
}
check "root assigns token 1 to alice (personal, Vietnamese decision text kept)" assign_alice
# The token's object path (a serial's leading digit is escaped, as sd_bus_path_encode() does).
P1=$(busctl --system call org.kyso1 /org/kyso1 org.kyso1.Manager GetToken s "$S1" | sed -n 's/^o "\(.*\)"$/\1/p')
echo "# token 1 is $P1"
check "PropertiesChanged for token 1's object was emitted" wait_signal "path=$P1; interface=org.freedesktop.DBus.Properties; member=PropertiesChanged"
check "a second assign over an active record is refused (Conflict)" bash -c "! '$KYSOCTL' assign '$S1' --kind personal --holder $BOB --decision 2/X --decision-date 2026-01-06"

check "grant: alice logs in and signs on her token" usable "$ALICE" "$LABEL1"
check "deny: bob is refused alice's token" refused "$BOB" "$LABEL1"
check "deny: root is not the holder either" refused root "$LABEL1"
check "deny: an admin-group member is not the holder either" refused "$CAROL" "$LABEL1"

assign_group() {
    as "$CAROL" "$KYSOCTL" assign "$S2" --kind organization --holder @$CLERKS --decision "3/QĐ-VP" \
        --decision-date 2026-03-01
    [ "$(token_prop "$S2" holder)" = "@$CLERKS" ]
}
check "an admin-group member (carol) assigns token 2 to the clerks' group" assign_group
check "group holder: bob (a member) uses token 2" usable "$BOB" "$LABEL2"
check "group holder: alice (not a member) is refused token 2" refused "$ALICE" "$LABEL2"

# ---- handover ----

handover() {
    as "$CAROL" "$KYSOCTL" handover "$S2" --to "$ALICE" --minutes "BB-05/2026"
    [ "$(token_prop "$S2" holder)" = "$ALICE" ]
    [ "$(token_prop "$S2" pin_change_required)" = true ]
    ctl --json token "$S2" | python3 -c '
import json, os, sys
h = json.load(sys.stdin)["handovers"]
assert len(h) == 1, h
assert h[0]["from"] == "@" + os.environ["CLERKS"] and h[0]["to"] == os.environ["ALICE"], h
assert h[0]["minutes"] == "BB-05/2026", h
'
}
check "handover of token 2 to alice records the minutes and requires a PIN change" handover
pin_change_first() {
    local out rc=0
    out=$(p11_as "$ALICE" "$LABEL2" -O 2>&1) || rc=$?
    echo "$out"
    [ $rc -ne 0 ] && echo "$out" | grep -q CKR_PIN_EXPIRED || fail "alice logged in before changing the PIN"
    # Alice changes the PIN (kysoctl pin change reads the PINs from stdin without a terminal), and back.
    printf '%s\n%s\n%s\n' "$KYSO_TEST_PIN" 7294061583 7294061583 |
        as "$ALICE" "$KYSOCTL" pin change "$S2" --module "$KYSO_MODULE"
    [ "$(token_prop "$S2" pin_change_required)" = false ]
    printf '%s\n%s\n%s\n' 7294061583 "$KYSO_TEST_PIN" "$KYSO_TEST_PIN" |
        as "$ALICE" "$KYSOCTL" pin change "$S2" --module "$KYSO_MODULE"
}
check "after the handover alice must change the PIN before she logs in; she does" pin_change_first
check "after the handover alice uses token 2" usable "$ALICE" "$LABEL2"
check "after the handover bob is refused token 2" refused "$BOB" "$LABEL2"

# ---- lost during an open session ----

session_start() { # USER LABEL: a custody-session client as USER, driven through $WORK/s.in / s.out
    rm -f "$WORK/s.in" "$WORK/s.out"
    mkfifo "$WORK/s.in"
    chmod 666 "$WORK/s.in"
    touch "$WORK/s.out"
    chmod 666 "$WORK/s.out"
    setpriv --reuid="$1" --regid="$(id -g "$1")" --init-groups env KYSO_SOCKET="$KYSO_SOCKET" \
        "$KYSO_BUILD_ROOT/tests/integration/custody-session" "$KYSO_MODULE" "$2" "$KYSO_TEST_PIN" \
        <"$WORK/s.in" >"$WORK/s.out" 2>&1 &
    session_pid=$!
    exec 7>"$WORK/s.in"
    echo 0 >"$WORK/s.read"
    session_read
}
session_read() { # waits for the next answer line and prints it (the count is in a file: callers use $(...))
    local i n
    n=$(($(cat "$WORK/s.read") + 1))
    for i in $(seq 1 100); do
        if [ "$(wc -l <"$WORK/s.out")" -ge "$n" ]; then
            echo "$n" >"$WORK/s.read"
            sed -n "${n}p" "$WORK/s.out"
            return 0
        fi
        sleep 0.1
    done
    echo "(no answer)"
}
session_ask() {
    echo "$1" >&7
    session_read
}
session_stop() {
    echo quit >&7 || true
    exec 7>&-
    wait "$session_pid" 2>/dev/null || true
}

lost_open_session() {
    local a
    session_start "$ALICE" "$LABEL1"
    a=$(session_ask sign)
    [ "$a" = ok ] || fail "alice could not sign before: $a"
    ctl report-lost "$S1" --reason "left on the bus"
    a=$(session_ask sign)
    echo "after report-lost: $a"
    session_stop
    case "$a" in
        CKR_TOKEN_NOT_RECOGNIZED | CKR_SESSION_HANDLE_INVALID | CKR_SESSION_CLOSED) ;;
        *) fail "the open session still signs after the token was reported lost: $a" ;;
    esac
    [ "$(token_prop "$S1" state)" = lost ]
    [ "$(token_prop "$S1" state_reason)" = "left on the bus" ]
}
check "reporting token 1 lost stops alice's open session at once" lost_open_session
check "a lost token is refused even to its holder" refused "$ALICE" "$LABEL1"
check "the log says why" grep -q "Refused.*$S1.*reported lost" "$KYSO_TEST_DIR/kysod.log"

# ---- a token pulled and put back ----

# mock_present 0|1: pull the mock backend's token, or put it back (kysod polls every 200 ms).
mock_present() {
    echo "present=$1" >"$KYSO_TEST_DIR/usb.so.control.tmp"
    mv "$KYSO_TEST_DIR/usb.so.control.tmp" "$KYSO_TEST_DIR/usb.so.control"
}

pull_and_insert() {
    local s3 p3 i
    s3=$(serial_of kyso-usb)
    [ "$(token_prop "$s3" present)" = true ]
    ctl assign "$s3" --kind personal --holder "$BOB" --decision "20/QĐ" --decision-date 2026-05-05
    mock_present 0
    wait_signal "member=TokenRemoved" || fail "no TokenRemoved"
    for i in $(seq 1 30); do [ "$(token_prop "$s3" present)" = false ] && break; sleep 0.1; done
    [ "$(token_prop "$s3" present)" = false ] || fail "Present is still true"
    grep -A2 "member=TokenRemoved" "$monitor_log" | grep -q "string \"$s3\"" || fail "TokenRemoved does not name $s3"
    # Still known (with its custody) while absent.
    [ "$(token_prop "$s3" holder)" = "$BOB" ]
    mock_present 1
    wait_signal "member=TokenInserted" || fail "no TokenInserted"
    grep -A3 "member=TokenInserted" "$monitor_log" | grep -q 'string "kyso-usb"' || fail "TokenInserted does not carry the label"
    for i in $(seq 1 30); do [ "$(token_prop "$s3" present)" = true ] && break; sleep 0.1; done
    [ "$(token_prop "$s3" present)" = true ] || fail "Present did not come back"
    # One object for the token, however often it comes and goes.
    [ "$(ctl --json tokens | python3 -c 'import json,sys; print(sum(1 for t in json.load(sys.stdin) if t["label"] == "kyso-usb"))')" = 1 ]
    usable "$BOB" kyso-usb
}
check "a removable token pulled and put back: TokenRemoved, TokenInserted, Present, custody kept" pull_and_insert

pin_locked() {
    local s3
    s3=$(serial_of kyso-usb)
    # The token now reports its user PIN locked (the mock ORs the flag into C_GetTokenInfo).
    printf 'present=1\ntoken_flags=0x40000\n' >"$KYSO_TEST_DIR/usb.so.control.tmp"
    mv "$KYSO_TEST_DIR/usb.so.control.tmp" "$KYSO_TEST_DIR/usb.so.control"
    p11 -L >/dev/null
    wait_signal "member=PinLocked" || fail "no PinLocked"
    [ "$(token_prop "$s3" pin_state)" = locked ]
    # Its holder is told to hand it back, not to unblock it.
    as "$BOB" "$KYSOCTL" pin status | tee "$WORK/out"
    grep -q "locked" "$WORK/out" && grep -qi "recovery" "$WORK/out" || fail "no return-for-recovery advice"
    printf 'present=1\n' >"$KYSO_TEST_DIR/usb.so.control.tmp"
    mv "$KYSO_TEST_DIR/usb.so.control.tmp" "$KYSO_TEST_DIR/usb.so.control"
}
check "a token that reports its PIN locked: PinLocked, PinState locked, kysoctl tells the holder to return it" pin_locked

# ---- a validity window ending during an open session ----

window() {
    local a until
    ctl return "$S1" --reason "found"
    [ "$(token_prop "$S1" state)" = returned ]
    until=$(($(date +%s) + 3))
    ctl assign "$S1" --kind organization --holder "$ALICE" --decision "15/GP" --decision-date 2026-04-01 \
        --until "@$until"
    session_start "$ALICE" "$LABEL1"
    a=$(session_ask sign)
    [ "$a" = ok ] || fail "alice could not sign inside the window: $a"
    while [ "$(date +%s)" -lt "$until" ]; do sleep 0.2; done
    a=$(session_ask sign)
    echo "after the window: $a"
    session_stop
    [ "$a" = CKR_TOKEN_NOT_RECOGNIZED ] || fail "the open session still signs after the window ended: $a"
}
check "a custody record whose validity ends stops an open session at that moment, no restart" window
check "after the window, new sessions are refused too" refused "$ALICE" "$LABEL1"

# ---- export and import ----

export_import() {
    ctl export -o "$WORK/registry.json"
    python3 - "$WORK/registry.json" "$S1" "$S2" <<'PY'
import json, os, sys
doc = json.load(open(sys.argv[1]))
assert doc["format"] == "kyso-registry" and doc["version"] == 1, doc
by = {r["serial"]: r for r in doc["records"]}
assert by[sys.argv[3]]["holder"] == os.environ["ALICE"], by
assert by[sys.argv[2]]["decision"] == "15/GP", by
PY
    # A malformed second record: nothing of the file may be applied.
    python3 - "$WORK/registry.json" "$WORK/bad.json" "$S2" <<'PY'
import json, os, sys
doc = json.load(open(sys.argv[1]))
doc["records"] = [
    {"serial": "NEW-SERIAL-1", "kind": "personal", "holder": os.environ["BOB"], "decision": "9/QĐ",
     "decision_date": "2026-05-01"},
    {"serial": sys.argv[3], "kind": "borrowed", "holder": os.environ["BOB"], "decision": "9/QĐ",
     "decision_date": "2026-05-01"},
]
json.dump(doc, open(sys.argv[2], "w"))
PY
    local rc=0
    ctl import "$WORK/bad.json" 2>"$WORK/err" || rc=$?
    cat "$WORK/err"
    [ $rc -ne 0 ] || fail "the malformed import succeeded"
    grep -q "record 2" "$WORK/err" || fail "the error does not name record 2"
    ctl export -o "$WORK/after.json"
    python3 - "$WORK/registry.json" "$WORK/after.json" <<'PY'
import json, os, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["records"] == b["records"], "the registry changed after a failed import"
PY
    ! ctl --json tokens | grep -q NEW-SERIAL-1 || fail "the valid first record of the bad file was applied"
    # A good import of a new token's record.
    python3 - "$WORK/good.json" <<'PY'
import json, os, sys
json.dump({"format": "kyso-registry", "version": 1, "records": [
    {"serial": "NEW-SERIAL-1", "kind": "device", "holder": "@" + os.environ["CLERKS"], "decision": "10/QĐ",
     "decision_date": "2026-05-02", "valid_from": "2026-05-02T00:00:00+07:00", "state": "active"}]},
    open(sys.argv[1], "w"))
PY
    ctl import "$WORK/good.json" | tee "$WORK/out"
    grep -q "1" "$WORK/out"
    [ "$(token_prop NEW-SERIAL-1 holder)" = "@$CLERKS" ]
    [ "$(token_prop NEW-SERIAL-1 present)" = false ]
}
check "export, a malformed import that changes nothing, and a good import" export_import
check "an ordinary user cannot import" bash -c "! setpriv --reuid=$BOB --regid=$(id -g $BOB) --init-groups env DBUS_SYSTEM_BUS_ADDRESS='$DBUS_SYSTEM_BUS_ADDRESS' '$KYSOCTL' import '$WORK/good.json'"

# ---- the store survives SIGKILL of kysod ----

crash_safety() {
    local i confirmed=0
    ctl return "$S2" --reason "crash test"
    for i in $(seq 1 12); do
        # A writer that notes each change kysoctl confirmed, killed with kysod mid-stream.
        (
            set +e
            n=0
            while :; do
                if [ $((n % 2)) -eq 0 ]; then
                    "$KYSOCTL" assign "$S2" --kind personal --holder "$BOB" --decision "C-$i-$n" \
                        --decision-date 2026-06-01 >/dev/null 2>&1 || break
                    echo "C-$i-$n" >>"$WORK/acked"
                else
                    "$KYSOCTL" return "$S2" >/dev/null 2>&1 || break
                fi
                n=$((n + 1))
            done
        ) &
        local writer=$!
        sleep "0.$((RANDOM % 6 + 2))"
        kill -KILL "$(cat "$KYSO_TEST_DIR/kysod.pid")"
        wait "$writer" 2>/dev/null || true
        touch "$WORK/acked"
        # Every assign kysoctl confirmed is in the database, and the database is intact.
        python3 - "$KYSO_TEST_STATE_DIR/kyso.db" "$S2" "$WORK/acked" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok", "integrity_check failed"
have = {r[0] for r in db.execute("SELECT decision_ref FROM custody WHERE serial = ?", (sys.argv[2],))}
acked = [l.strip() for l in open(sys.argv[3]) if l.strip()]
lost = [a for a in acked if a not in have]
assert not lost, "confirmed but lost: %s" % lost
print("%d confirmed assign(s) all in the database" % len(acked))
PY
        confirmed=$((confirmed + $(wc -l <"$WORK/acked")))
        rm -f "$WORK/acked"
        "$KYSO_TEST_RESTART"
        wait_bus_name
        # Back to a known state for the next round.
        [ "$(token_prop "$S2" state)" = returned ] || ctl return "$S2" >/dev/null
    done
    echo "assigns confirmed over 12 rounds: $confirmed"
    [ "$confirmed" -gt 0 ] || fail "no change was confirmed: the test did not test anything"
}
check "SIGKILL of kysod in the middle of custody changes: database intact, confirmed changes kept (12 rounds)" crash_safety

# ---- the bus goes away and comes back ----

bus_restart() {
    local bus_pid
    bus_pid=$(cat "$KYSO_TEST_BUS_PIDFILE")
    kill "$bus_pid"
    while kill -0 "$bus_pid" 2>/dev/null; do sleep 0.05; done
    # PKCS#11 goes on without the bus.
    usable "$BOB" "$LABEL2" || usable "$ALICE" "$LABEL2" || p11 -L >/dev/null
    kill -0 "$(cat "$KYSO_TEST_DIR/kysod.pid")" || fail "kysod died with the bus"
    rm -f "$KYSO_TEST_BUS_SOCKET"
    dbus-daemon --config-file="$KYSO_TEST_BUS_CONF" --address="unix:path=$KYSO_TEST_BUS_SOCKET" \
        --nopidfile --nosyslog --fork --print-pid=4 4>"$KYSO_TEST_BUS_PIDFILE"
    wait_bus_name || fail "kysod did not come back on the new bus"
    ctl tokens | grep -q "$S1"
}
check "kysod keeps serving PKCS#11 when the bus dies, and reconnects to a new one" bus_restart

finish
