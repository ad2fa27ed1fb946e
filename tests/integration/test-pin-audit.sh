#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# PIN age and quality, the audit log and the subscriber report, end to end:
# a real kysod with two SoftHSM2 tokens, a private system bus, kysoctl, and
# pkcs11-tool through kyso-pkcs11.so. Time is kysod's test clock
# (--test-clock), moved by months without sleeping. The state database sits
# on a small file system of its own (a tmpfs in a private mount namespace),
# so that the test can fill it and see signing refused rather than done
# unrecorded.
#
#   token 1 (kyso-test)    personal, held by root: [pin] mode = enforce
#   token 2 (kyso-test-2)  organization, held by @root: [pin:organization] mode = warn
#
# Needs root (the mount namespace).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
T0=1767225600 # 2026-01-01T00:00:00Z
DAY=86400

if [ "${1:-}" != --inner ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "1..0 # SKIP needs root for a mount namespace"
        exit 77
    fi
    if [ "${KYSO_TEST_BUS:-}" != system ]; then
        rc=0
        "$here/with-system-bus.sh" "$0" "$@" || rc=$?
        exit $rc
    fi
    work=$(mktemp -d /tmp/kyso-pin.XXXXXX)
    chmod 0755 "$work"
    trap 'rm -rf "$work"' EXIT
    echo "$T0" >"$work/clock"
    mkdir -p "$work/state"
    rc=0
    # In the namespace, also a /run/systemd of our own, where the test listens as the journal does:
    # kysod believes it runs under systemd (INVOCATION_ID) and sends its audit records there.
    unshare -m --propagation private bash -c 'mount -t tmpfs -o size=4m,mode=0755 kyso-state "$1" &&
        mount -t tmpfs -o size=1m,mode=0755 kyso-journal /run/systemd && mkdir /run/systemd/journal &&
        shift && exec "$@"' \
        _ "$work/state" env KYSO_TEST_CLOCK="$work/clock" KYSO_TEST_STATE_DIR="$work/state" \
        INVOCATION_ID=0123456789abcdef0123456789abcdef \
        "$here/with-kysod.sh" --tokens 2 --config "$here/pin.conf" -- "$0" --inner || rc=$?
    exit $rc
fi

. "$here/lib.sh"
LABEL1=$KYSO_TEST_LABEL LABEL2=$KYSO_TEST_LABEL-2
PIN=$KYSO_TEST_PIN
GOOD_PIN=7294061583

ctl() { t "$KYSOCTL" "$@"; }

# set_clock SECONDS: kysod's time from now on (written elsewhere and renamed into place).
set_clock() {
    echo "$1" >"$KYSO_TEST_CLOCK.tmp"
    mv "$KYSO_TEST_CLOCK.tmp" "$KYSO_TEST_CLOCK"
}

start_signal_monitor

# The journal's socket, as systemd-journald listens on it: what kysod sends, one datagram a line.
journal_log="$WORK/journal.log"
python3 - "$journal_log" <<'PY' &
import os, socket, sys
path = "/run/systemd/journal/socket"
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o666)
with open(sys.argv[1], "ab", buffering=0) as out:
    while True:
        data = s.recv(1 << 16)
        out.write(data.replace(b"\n", b"\x1e") + b"\n")
PY
journal_pid=$!
trap 'kill $monitor_pid $journal_pid 2>/dev/null || true' EXIT

# wait_for SECONDS CMD...: until CMD succeeds (polling every 0.1 s).
wait_for() {
    local n=$(($1 * 10)) i
    shift
    for i in $(seq 1 "$n"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    "$@"
}

# prop SERIAL NAME: a D-Bus property of the token's object, as busctl prints its value.
prop() {
    local path
    path=$(busctl --system call org.kyso1 /org/kyso1 org.kyso1.Manager GetToken s "$1" | sed -n 's/^o "\(.*\)"$/\1/p')
    busctl --system get-property org.kyso1 "$path" org.kyso1.Token "$2" | sed -e 's/^[a-z] //' -e 's/^"\(.*\)"$/\1/'
}

p11_slot() { # LABEL ARGS...: pkcs11-tool through kyso on the token
    local slot
    slot=$(slot_of "$1")
    shift
    t pkcs11-tool --module "$KYSO_MODULE" --slot "$slot" "$@"
}

sign_with() { # LABEL PIN: make a key if needed and sign; the signature in $WORK/sig
    head -c 32 /dev/urandom >"$WORK/data"
    rm -f "$WORK/sig"
    if ! p11_slot "$1" --login --pin "$2" -O --type privkey 2>/dev/null | grep -q "label: *audit-key"; then
        p11_slot "$1" --login --pin "$2" --keypairgen --key-type EC:prime256v1 --label audit-key --id a1 >/dev/null
    fi
    p11_slot "$1" --login --pin "$2" --sign --id a1 -m ECDSA -i "$WORK/data" -o "$WORK/sig"
}

audit_json() { ctl --json audit "$@"; }

check "kysod is on the bus" wait_bus_name
S1=$(serial_of "$LABEL1")
S2=$(serial_of "$LABEL2")
echo "# tokens: $LABEL1 = $S1, $LABEL2 = $S2; clock at $(date -u -d "@$T0" +%F)"

setup() {
    ctl assign "$S1" --kind personal --holder root --decision "1/QĐ" --decision-date 2026-01-01
    ctl assign "$S2" --kind organization --holder @root --decision "2/QĐ" --decision-date 2026-01-01
    [ "$(prop "$S1" PinState)" = ok ]
    # Counted from the assignment: the clock's now.
    [ "$(prop "$S1" PinDueAt)" = $((T0 + 180 * DAY)) ]
    [ "$(prop "$S1" PinChangedAt)" = 0 ]
    [ "$(prop "$S1" PinMode)" = enforce ]
    [ "$(prop "$S2" PinMode)" = warn ]
}
check "assigned: PIN age counts from the assignment (due in 180 days), modes per kind" setup

# ---- quality ----

quality() { # NEW EXPECTED-CKR
    local rc=0
    p11_slot "$LABEL1" --change-pin --pin "$PIN" --new-pin "$1" >"$WORK/out" 2>&1 || rc=$?
    cat "$WORK/out"
    [ $rc -ne 0 ] || fail "kysod accepted the PIN $1"
    grep -q "$2" "$WORK/out" || fail "expected $2"
}
check "quality: a PIN shorter than 8 is refused (CKR_PIN_LEN_RANGE)" quality 7294061 CKR_PIN_LEN_RANGE
check "quality: 12345678 (a sequence) is refused (CKR_PIN_INVALID)" quality 12345678 CKR_PIN_INVALID
check "quality: 87654321 is refused" quality 87654321 CKR_PIN_INVALID
check "quality: 00000000 (one digit) is refused" quality 00000000 CKR_PIN_INVALID
check "quality: 88888888 (a common PIN) is refused" quality 88888888 CKR_PIN_INVALID
check "quality: the old PIN again is refused" quality "$PIN" CKR_PIN_INVALID
check "the refusals are logged with the rule, never the PIN" bash -c "
    grep -q 'C_SetPIN.*sequence' '$KYSO_TEST_DIR/kysod.log' && ! grep -q 12345678 '$KYSO_TEST_DIR/kysod.log'"

ctl_quality() {
    local rc=0 before after
    before=$(audit_json --event pin-change | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
    printf '%s\n%s\n%s\n' "$PIN" 11111111 11111111 | ctl pin change "$S1" --module "$KYSO_MODULE" >"$WORK/out" 2>&1 || rc=$?
    cat "$WORK/out"
    [ $rc -ne 0 ] || fail "kysoctl pin change accepted 11111111"
    grep -qi "repeated" "$WORK/out" || fail "no plain-words reason"
    after=$(audit_json --event pin-change | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
    [ "$before" = "$after" ] || fail "kysoctl reached the token ($before -> $after pin-change records)"
}
check "kysoctl pin change explains a weak PIN and does not touch the token" ctl_quality

# ---- age: warning, expiry in enforce and warn modes, recovery ----

expiring() {
    set_clock $((T0 + 170 * DAY))
    wait_for 5 bash -c "[ \"\$(busctl --system get-property org.kyso1 \$(busctl --system call org.kyso1 /org/kyso1 org.kyso1.Manager GetToken s $S1 | cut -d'\"' -f2) org.kyso1.Token PinState)\" = 's \"expiring\"' ]"
    grep -A3 "member=PinExpiring" "$monitor_log" | grep -q "string \"$S1\"" ||
        wait_for 3 bash -c "grep -A3 member=PinExpiring '$monitor_log' | grep -q '$S1'"
    sign_with "$LABEL1" "$PIN"
}
check "170 days on: PinState expiring, PinExpiring signal, signing still works" expiring

expired() {
    local rc=0
    set_clock $((T0 + 181 * DAY))
    wait_for 5 bash -c "grep -A3 member=PinExpired '$monitor_log' | grep -q '$S1'"
    [ "$(prop "$S1" PinState)" = expired ]
    p11_slot "$LABEL1" --login --pin "$PIN" -O >"$WORK/out" 2>&1 || rc=$?
    cat "$WORK/out"
    [ $rc -ne 0 ] && grep -q CKR_PIN_EXPIRED "$WORK/out" || fail "expected CKR_PIN_EXPIRED"
    p11_slot "$LABEL1" -T >"$WORK/out" 2>&1 || p11_slot "$LABEL1" -L >"$WORK/out" 2>&1
    grep -Ei "to be changed" "$WORK/out" || { cat "$WORK/out"; fail "C_GetTokenInfo does not show CKF_USER_PIN_TO_BE_CHANGED"; }
}
check "181 days on (enforce): PinExpired signal, C_Login CKR_PIN_EXPIRED, CKF_USER_PIN_TO_BE_CHANGED" expired

warn_mode() {
    [ "$(prop "$S2" PinState)" = expired ]
    sign_with "$LABEL2" "$PIN"
    grep -q "Token $S2: .*mode = warn" "$KYSO_TEST_DIR/kysod.log" || fail "no warning in the log"
}
check "the same age in warn mode (organization token): logins work, the warning is logged" warn_mode

recover() {
    printf '%s\n%s\n%s\n' "$PIN" "$GOOD_PIN" "$GOOD_PIN" | ctl pin change "$S1" --module "$KYSO_MODULE"
    [ "$(prop "$S1" PinState)" = ok ]
    [ "$(prop "$S1" PinChangedAt)" = $((T0 + 181 * DAY)) ]
    [ "$(prop "$S1" PinDueAt)" = $((T0 + 361 * DAY)) ]
    sign_with "$LABEL1" "$GOOD_PIN"
    # And back, with pkcs11-tool (a logged-in C_SetPIN).
    p11_slot "$LABEL1" --login --pin "$GOOD_PIN" --change-pin --pin "$GOOD_PIN" --new-pin 5190372846
    sign_with "$LABEL1" 5190372846
}
check "C_SetPIN with the old PIN (kysoctl pin change, no login) recovers: state ok, due 180 days later" recover
PIN1=5190372846

# ---- handover: the new holder must change the PIN ----

handover() {
    local rc=0
    ctl handover "$S2" --to root --minutes "BB-01"
    [ "$(prop "$S2" PinChangeRequired)" = true ]
    [ "$(prop "$S2" PinState)" = change-required ] || [ "$(prop "$S2" PinState)" = expired ]
    p11_slot "$LABEL2" --login --pin "$PIN" -O >"$WORK/out" 2>&1 || rc=$?
    cat "$WORK/out"
    grep -q CKR_PIN_EXPIRED "$WORK/out" || fail "the new holder could log in before changing the PIN (warn mode too)"
    printf '%s\n%s\n%s\n' "$PIN" "$GOOD_PIN" "$GOOD_PIN" | ctl pin change "$S2" --module "$KYSO_MODULE"
    [ "$(prop "$S2" PinChangeRequired)" = false ]
    [ "$(prop "$S2" PinState)" = ok ]
    sign_with "$LABEL2" "$GOOD_PIN"
}
check "after a handover the new holder must change the PIN before signing, even in warn mode" handover

status() {
    ctl pin status --all | tee "$WORK/out"
    grep -q "$S1" "$WORK/out" && grep -q "$S2" "$WORK/out"
    ctl --json pin status --all | python3 -c '
import json, sys
d = json.load(sys.stdin)
d = d if isinstance(d, list) else d.get("tokens", d)
assert any(t["serial"] == sys.argv[1] for t in d), d' "$S1"
}
check "kysoctl pin status lists both tokens" status

# ---- the audit log ----

audit_records() {
    audit_json >"$WORK/audit.json"
    python3 - "$WORK/audit.json" "$S1" "$S2" <<'PY'
import json, sys
recs = json.load(open(sys.argv[1]))
s1, s2 = sys.argv[2], sys.argv[3]
def has(**kw):
    return any(all(r.get(k) == v for k, v in kw.items()) for r in recs)
assert has(event="login", serial=s1, result="CKR_OK"), "no successful login"
assert has(event="login", serial=s1, result="CKR_PIN_EXPIRED") or has(event="refused", serial=s1), "no refused login"
signs = [r for r in recs if r["event"] == "sign" and r["serial"] == s1 and r["result"] == "CKR_OK"]
assert signs, "no signature"
assert signs[0]["key_id"] == "a1" and signs[0]["key_label"] == "audit-key", signs[0]
assert signs[0]["mechanism"] == "CKM_ECDSA", signs[0]
assert signs[0]["exe"].endswith("pkcs11-tool"), signs[0]
assert signs[0]["uid"] == 0 and signs[0]["pid"] > 0, signs[0]
assert has(event="pin-change", serial=s1, result="CKR_OK"), "no PIN change"
assert has(event="refused", serial=s1), "no refusal (quality)"
assert has(event="custody", serial=s1), "no custody record"
assert has(event="handover", serial=s2), "no handover"
print(len(recs), "records")
PY
}
check "audit records: logins (ok and refused), signatures with key and mechanism, PIN changes, custody, handover, refusals" audit_records

last_sign_key_id() {
    audit_json --token "$S1" --event sign | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["key_id"])'
}

renamed_key() {
    # kysod remembers key names between signatures; a key given another CKA_ID through kyso must be named
    # by its new id in the next record. A session kept logged in meanwhile keeps the token logged in, so
    # the key keeps its handle in kysod's module (SoftHSM2 renumbers private objects at logout).
    local keeper
    sign_with "$LABEL1" "$PIN1"
    rm -f "$WORK/k.in" "$WORK/k.out"
    mkfifo "$WORK/k.in"
    "$KYSO_BUILD_ROOT/tests/integration/custody-session" "$KYSO_MODULE" "$LABEL1" "$PIN1" <"$WORK/k.in" >"$WORK/k.out" 2>&1 &
    keeper=$!
    exec 8>"$WORK/k.in"
    wait_for 10 grep -q ready "$WORK/k.out" || { cat "$WORK/k.out"; fail "the session did not start"; }
    head -c 32 /dev/urandom >"$WORK/data"
    p11_slot "$LABEL1" --login --pin "$PIN1" --sign --id a1 -m ECDSA -i "$WORK/data" -o "$WORK/sig"
    [ "$(last_sign_key_id)" = a1 ] || fail "the signature is not recorded with key a1"
    p11_slot "$LABEL1" --login --pin "$PIN1" --type privkey --id a1 --set-id a2 >/dev/null
    p11_slot "$LABEL1" --login --pin "$PIN1" --sign --id a2 -m ECDSA -i "$WORK/data" -o "$WORK/sig"
    local got; got=$(last_sign_key_id)
    p11_slot "$LABEL1" --login --pin "$PIN1" --type privkey --id a2 --set-id a1 >/dev/null
    echo quit >&8
    exec 8>&-
    wait "$keeper" || true
    [ "$got" = a2 ] || fail "the record names the key by its old id: $got"
}
check "a key given a new CKA_ID is recorded under it at the next signature (the names kysod remembers are dropped)" renamed_key

no_pins() {
    local p
    for p in "$PIN" "$GOOD_PIN" "$PIN1" 12345678 11111111; do
        if grep -a -q -- "$p" "$KYSO_TEST_STATE_DIR"/kyso.db*; then fail "PIN $p is in the database"; fi
        if grep -q -- "$p" "$WORK/audit.json"; then fail "PIN $p is in the audit log"; fi
    done
    if grep -q -- "$PIN" "$KYSO_TEST_DIR/kysod.log"; then fail "a PIN is in kysod's log"; fi
}
check "no PIN in the database, the audit log or kysod's log" no_pins

journal() {
    python3 - "$journal_log" "$S1" <<'PY'
import sys
recs = []
for line in open(sys.argv[1], "rb"):
    fields = {}
    for f in line.rstrip(b"\n").split(b"\x1e"):
        k, _, v = f.partition(b"=")
        fields[k.decode()] = v.decode("utf-8", "replace")
    recs.append(fields)
signs = [r for r in recs if r.get("MESSAGE_ID") == "6d1b99dddbf5458a91e801f676834e83"]
assert signs, "no sign record in the journal (%d datagrams)" % len(recs)
r = [x for x in signs if x.get("KYSO_TOKEN_SERIAL") == sys.argv[2] and x.get("KYSO_RESULT") == "CKR_OK"][0]
assert r["KYSO_EVENT"] == "sign" and r["KYSO_KEY_ID"] == "a1" and r["KYSO_MECHANISM"] == "CKM_ECDSA", r
assert r["KYSO_UID"] == "0" and int(r["KYSO_PID"]) > 0 and len(r["KYSO_AUDIT_HASH"]) == 64, r
assert r["SYSLOG_IDENTIFIER"] == "kysod" and r["PRIORITY"] == "6", r
ids = {x.get("MESSAGE_ID") for x in recs}
for event, mid in (("login", "4f816c39912846fc9ecf4eb80735942c"), ("pin-change", "ac8af7ef00904d1d9611710e71732797"),
                   ("custody", "d022726e25c04a10a828abd0e77cb6a6"), ("refused", "1b8fd9576a2347909d3f259cba35262c")):
    assert mid in ids, "no %s record in the journal" % event
print(len(recs), "journal records,", len(signs), "signatures")
PY
    local p
    for p in "$PIN" "$GOOD_PIN" "$PIN1"; do
        if grep -a -q -- "$p" "$journal_log"; then fail "PIN $p went to the journal"; fi
    done
}
check "under systemd, each audit record also goes to the journal (MESSAGE_ID per event, KYSO_* fields, no PIN)" journal

filters() {
    local n_all n_s2 n_sign
    n_all=$(audit_json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
    n_s2=$(audit_json --token "$S2" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert all(x["serial"]==sys.argv[1] for x in r); print(len(r))' "$S2")
    n_sign=$(audit_json --event sign | python3 -c 'import json,sys; r=json.load(sys.stdin); assert all(x["event"]=="sign" for x in r); print(len(r))')
    echo "all $n_all, token 2 $n_s2, signatures $n_sign"
    [ "$n_s2" -gt 0 ] && [ "$n_s2" -lt "$n_all" ] && [ "$n_sign" -gt 0 ]
    # An ordinary user sees only their own records (none here).
    [ "$(setpriv --reuid=nobody --regid=nogroup --clear-groups "$KYSOCTL" --json audit | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 0 ]
}
check "kysoctl audit filters by token and event; an ordinary user sees only their own records" filters

verify_and_tamper() {
    local rc=0 db="$KYSO_TEST_STATE_DIR/kyso.db"
    ctl audit verify
    # Edit a record in the middle: the chain breaks there.
    python3 -c "
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute(\"UPDATE audit SET result = 'CKR_OK', detail = 'edited' WHERE id = 3\")
db.commit()" "$db"
    ctl audit verify >"$WORK/out" 2>&1 || rc=$?
    cat "$WORK/out"
    [ $rc -ne 0 ] || fail "an edited record was not caught"
    grep -q "3" "$WORK/out" || fail "the first broken record (3) is not named"
    { ctl --json audit verify || true; } | python3 -c 'import json,sys; d=json.load(sys.stdin); assert not d["intact"] and d["first_bad_id"] == 3, d'
}
check "kysoctl audit verify: intact, then an edited record is caught at its id" verify_and_tamper

# ---- the audit log cannot be lost: a full file system stops signing ----

full_disk() {
    local rc=0 i
    # Fill the state file system (a tmpfs of 4 MiB) to the last byte. Records still go into the room
    # left in the audit spool's last page (written, so rightly accepted); a few signatures fill it.
    dd if=/dev/zero of="$KYSO_TEST_STATE_DIR/ballast" bs=4k 2>/dev/null || true
    for i in $(seq 1 30); do
        rc=0
        sign_with "$LABEL1" "$PIN1" >"$WORK/out" 2>&1 || rc=$?
        [ $rc -ne 0 ] && break
    done
    cat "$WORK/out"
    rm -f "$KYSO_TEST_STATE_DIR/ballast"
    [ $rc -ne 0 ] || fail "signing went on with the audit log unwritable"
    [ ! -s "$WORK/sig" ] || fail "a signature came out"
    grep -q "Refused the result of C_Sign.*the audit log cannot be written" "$KYSO_TEST_DIR/kysod.log" ||
        fail "kysod did not say it refused the signature"
    sign_with "$LABEL1" "$PIN1" || fail "signing did not come back with room on disk"
}
check "with the state file system full, signing is refused (no signature out) and comes back after" full_disk

# ---- SIGHUP: [policy] and [pin] change without dropping sessions ----

reload() {
    local a
    # A session open through the reload.
    rm -f "$WORK/s.in" "$WORK/s.out"
    mkfifo "$WORK/s.in"
    "$KYSO_BUILD_ROOT/tests/integration/custody-session" "$KYSO_MODULE" "$LABEL1" "$PIN1" <"$WORK/s.in" >"$WORK/s.out" 2>&1 &
    local s=$!
    exec 7>"$WORK/s.in"
    wait_for 10 grep -q ready "$WORK/s.out" || { cat "$WORK/s.out"; fail "the session did not start"; }
    [ "$(prop "$S2" PinMode)" = warn ]
    printf '\n[pin:organization]\nmode = enforce\n[policy]\nunknown_tokens = allow\n' >>"$KYSO_TEST_DIR/kysod.conf"
    kill -HUP "$(cat "$KYSO_TEST_DIR/kysod.pid")"
    wait_for 5 grep -q "Reloaded" "$KYSO_TEST_DIR/kysod.log"
    [ "$(prop "$S2" PinMode)" = enforce ] || fail "[pin:organization] mode did not change"
    busctl --system get-property org.kyso1 /org/kyso1 org.kyso1.Manager UnknownTokens | grep -q allow ||
        fail "[policy] unknown_tokens did not change"
    echo sign >&7
    wait_for 10 grep -q "^ok" "$WORK/s.out"
    echo quit >&7
    exec 7>&-
    wait $s || true
    cat "$WORK/s.out"
    [ "$(grep -c '^ok' "$WORK/s.out")" = 1 ] || fail "the session opened before the reload could not sign"
    # A broken file is refused as a whole; the daemon keeps its configuration.
    printf '\n[pin]\nmax_age_days = forever\n' >>"$KYSO_TEST_DIR/kysod.conf"
    kill -HUP "$(cat "$KYSO_TEST_DIR/kysod.pid")"
    wait_for 5 grep -q "keeping the one in use" "$KYSO_TEST_DIR/kysod.log"
    [ "$(prop "$S2" PinMode)" = enforce ]
}
check "SIGHUP reloads [policy] and [pin] (a bad file is refused whole); an open session goes on" reload

# ---- the report ----

report() {
    ctl report --format json -o "$WORK/report.json"
    python3 - "$WORK/report.json" "$S1" "$S2" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
by = {t["serial"]: t for t in d["tokens"]}
t1 = by[sys.argv[2]]
assert t1["kind"] == "personal" and t1["holder"] == "root" and t1["decision"] == "1/QĐ", t1
assert t1["signatures"] >= 3, t1
assert t1["pin_state"] == "ok" and t1["pin_changed_at"], t1
assert t1["first_seen"] and t1["last_seen"], t1
t2 = by[sys.argv[3]]
assert t2["kind"] == "organization" and t2["holder"] == "root", t2
PY
    ctl report --format csv -o "$WORK/report.csv"
    python3 - "$WORK/report.csv" "$S1" <<'PY'
import csv, sys
raw = open(sys.argv[1], "rb").read()
assert raw.startswith(b"\xef\xbb\xbf"), "no UTF-8 BOM"
rows = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
head = rows[0]
for col in ("serial", "kind", "holder", "decision", "state", "pin_changed_at", "pin_due_at", "signatures"):
    assert col in head, (col, head)
r = [x for x in rows[1:] if x[head.index("serial")] == sys.argv[2]][0]
assert r[head.index("decision")] == "1/QĐ", r
print(len(rows) - 1, "rows")
PY
}
check "kysoctl report: JSON and CSV (UTF-8 with BOM) with custody, PIN dates and signature counts" report

finish
