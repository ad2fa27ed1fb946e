#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The real smart-card stack, end to end: a virtual CAC card (libcacard over an
# NSS database of three self-signed certificates and RSA keys, whose password
# is the PIN) in vsmartcard's vpcd reader, served by a pcscd of the test's own
# (socket activation on a private socket and port), read by OpenSC's
# opensc-pkcs11.so as kysod's only backend, on a private system bus.
# tests/vcard/vcard-vpcd is the card: SIGUSR1 pulls it out, SIGUSR2 puts it back.
#
# Checks, through kyso-pkcs11.so: the unknown card is refused, kysoctl assigns
# it to root, pkcs11-tool lists it, logs in and signs (SHA256-RSA-PKCS), openssl
# verifies the signature with the certificate read through kyso, a wrong PIN is
# refused; pulling the card is a TokenRemoved signal and Present = false (and
# the card is unusable), putting it back is TokenInserted and signing works
# again; pam_p11 (pamtester, a PAM service file /etc/pam.d/kyso-test-* and a
# test user whose ~/.eid/authorized_certificates holds the card's certificate)
# accepts the right PIN, refuses a wrong one, and is refused once custody ends.
#
# Needs root (pcscd, a user, a PAM service file; all removed afterwards).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
PIN=271828
WRONG_PIN=314159
CARD_LABEL="kyso test card"

if [ "${1:-}" != --inner ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "1..0 # SKIP needs root (pcscd, a test user, /etc/pam.d)"
        exit 77
    fi
    vcard=${KYSO_VCARD:-${KYSO_BUILD_ROOT:-}/tests/vcard/vcard-vpcd}
    opensc=${OPENSC_MODULE:-}
    if [ -z "$opensc" ]; then
        for f in /usr/lib/*/opensc-pkcs11.so /usr/lib64/opensc-pkcs11.so /usr/lib/opensc-pkcs11.so; do
            [ -f "$f" ] && { opensc=$f; break; }
        done
    fi
    vpcd_driver=/usr/lib/pcsc/drivers/serial/libifdvpcd.so
    missing=
    [ -x "$vcard" ] || missing+=" vcard-vpcd (libcacard-dev)"
    [ -n "$opensc" ] || missing+=" opensc-pkcs11.so"
    [ -f "$vpcd_driver" ] || missing+=" vsmartcard-vpcd"
    for p in pcscd systemd-socket-activate certutil pamtester pkcs11-tool openssl dbus-monitor; do
        command -v "$p" >/dev/null || missing+=" $p"
    done
    pam_p11=
    for f in /usr/lib/*/security/pam_p11.so /lib/*/security/pam_p11.so /usr/lib64/security/pam_p11.so; do
        [ -f "$f" ] && pam_p11=$f
    done
    [ -n "$pam_p11" ] || missing+=" pam_p11 (libpam-p11)"
    if [ -n "$missing" ]; then
        echo "1..0 # SKIP missing:$missing"
        exit 77
    fi

    # The rest runs under a private system bus (with-system-bus.sh: this script again).
    if [ "${KYSO_TEST_BUS:-}" != system ]; then
        exec "$here/with-system-bus.sh" "$0" "$@"
    fi

    # How long a daemon-side event may take: kysod runs much slower under valgrind.
    export KYSO_CARD_WAIT=10
    [ -z "${KYSO_TEST_DAEMON_WRAPPER:-}" ] || KYSO_CARD_WAIT=60

    card_dir=$(mktemp -d /tmp/kyso-card.XXXXXX)
    chmod 0755 "$card_dir"
    pcscd_pid='' vcard_pid='' test_user='' pam_file=''
    cleanup_outer() {
        local rc=$? pid
        for pid in $vcard_pid $pcscd_pid; do
            kill -TERM "$pid" 2>/dev/null || continue
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        done
        [ -z "$pam_file" ] || rm -f "$pam_file"
        [ -z "$test_user" ] || userdel "$test_user" 2>/dev/null || true
        if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
            for f in vcard.log pcscd.log; do
                [ -s "$card_dir/$f" ] || continue
                echo "---- $f ----"
                tail -n 30 "$card_dir/$f"
            done
        fi
        rm -rf "$card_dir"
        exit $rc
    }
    trap cleanup_outer EXIT
    trap 'exit 143' TERM INT

    # The card: an NSS database (password = PIN) with three self-signed certificates and their RSA keys.
    # The token label OpenSC shows is the first certificate's CN.
    t0=$(date +%s%N)
    mkdir "$card_dir/nssdb"
    echo "$PIN" >"$card_dir/pin"
    head -c 64 /dev/urandom >"$card_dir/noise"
    certutil -N -d "sql:$card_dir/nssdb" -f "$card_dir/pin"
    for i in 1 2 3; do
        cn="$CARD_LABEL"
        [ "$i" -eq 1 ] || cn="$CARD_LABEL $i"
        certutil -S -d "sql:$card_dir/nssdb" -f "$card_dir/pin" -z "$card_dir/noise" -n "cert$i" \
            -s "CN=$cn" -x -t "CT,CT,CT" -k rsa -g 2048 -v 24 -m "$((RANDOM * 32768 + RANDOM + i))" >/dev/null 2>&1
    done

    # Two free TCP ports in a row: vpcd listens on PORT (its first reader) and PORT+1 (its second).
    port=$(python3 - <<'PY'
import random, socket
for _ in range(200):
    p = random.randrange(20000, 60000)
    try:
        for q in (p, p + 1):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", q))
            s.close()
    except OSError:
        continue
    print(p)
    break
PY
)
    [ -n "$port" ] || { echo "no free TCP ports for vpcd" >&2; exit 1; }

    # pcscd of our own: socket activation gives it a private socket (it starts at the first client).
    mkdir "$card_dir/reader.conf.d"
    cat >"$card_dir/reader.conf.d/vpcd" <<EOF
FRIENDLYNAME "Virtual PCD"
DEVICENAME /dev/null:$port
LIBPATH $vpcd_driver
CHANNELID $port
EOF
    export PCSCLITE_CSOCK_NAME="$card_dir/pcscd.comm"
    systemd-socket-activate -l "$PCSCLITE_CSOCK_NAME" pcscd -f -c "$card_dir/reader.conf.d" \
        >"$card_dir/pcscd.log" 2>&1 &
    pcscd_pid=$! # systemd-socket-activate execs pcscd: the same process
    for _ in $(seq 1 100); do [ -S "$PCSCLITE_CSOCK_NAME" ] && break; sleep 0.05; done
    chmod 666 "$PCSCLITE_CSOCK_NAME"

    # OpenSC's own configuration, so that the system's (file caching, drivers) plays no part.
    export OPENSC_CONF="$card_dir/opensc.conf"
    echo 'app default { framework pkcs15 { use_file_caching = no; } }' >"$OPENSC_CONF"

    "$vcard" --port "$port" --nssdb "$card_dir/nssdb" --certs cert1,cert2,cert3 >"$card_dir/vcard.log" 2>&1 &
    vcard_pid=$!
    seen=0
    for _ in $(seq 1 100); do
        if timeout 10 pkcs11-tool --module "$opensc" -L 2>/dev/null | grep -q "token label *: $CARD_LABEL"; then
            seen=1
            break
        fi
        kill -0 "$vcard_pid" || { echo "vcard-vpcd exited" >&2; exit 1; }
        sleep 0.1
    done
    [ $seen = 1 ] || { echo "OpenSC does not see the virtual card" >&2; exit 1; }
    echo "# card stack up in $((($(date +%s%N) - t0) / 1000000)) ms: pcscd $pcscd_pid, vcard-vpcd $vcard_pid, vpcd port $port"

    # pam_p11's user (its home holds ~/.eid) and service file.
    test_user="kyso-tc$$"
    useradd -M -d "$card_dir/home" -s /usr/sbin/nologin "$test_user"
    mkdir -p "$card_dir/home/.eid"
    pam_file="/etc/pam.d/kyso-test-$test_user"
    echo "auth required pam_p11.so $KYSO_MODULE" >"$pam_file"

    export KYSO_CARD_DIR="$card_dir" KYSO_VCARD_PID=$vcard_pid KYSO_OPENSC="$opensc"
    export KYSO_PAM_USER="$test_user" KYSO_PAM_SERVICE="${pam_file##*/}"
    rc=0
    "$here/with-kysod.sh" --backend-only "$opensc" --config "$here/smartcard.conf" -- "$0" --inner || rc=$?
    exit $rc
fi

. "$here/lib.sh"

ctl() {
    t "$KYSOCTL" "$@"
}

start_signal_monitor

# wait_present SERIAL true|false: kysoctl shows the token present (or not).
wait_present() {
    local i
    for i in $(seq 1 $((KYSO_CARD_WAIT * 10))); do
        [ "$(token_prop "$1" present)" = "$2" ] && return 0
        sleep 0.1
    done
    echo "kysoctl token $1: present is $(token_prop "$1" present), expected $2" >&2
    return 1
}

# elapsed START: milliseconds since START (date +%s%N).
elapsed() {
    echo $((($(date +%s%N) - $1) / 1000000))
}

check "kysod is on the bus as org.kyso1" wait_bus_name
SERIAL=
find_card() {
    local i
    for i in $(seq 1 $((KYSO_CARD_WAIT * 10))); do
        SERIAL=$(serial_of "$CARD_LABEL" 2>/dev/null) && [ -n "$SERIAL" ] && return 0
        sleep 0.1
    done
    ctl tokens
    return 1
}
check "kysod serves the card through OpenSC (kysoctl tokens lists \"$CARD_LABEL\")" find_card
SERIAL=$(serial_of "$CARD_LABEL" 2>/dev/null || echo none)
echo "# card serial: $SERIAL"

# p11c ARGS...: pkcs11-tool through kyso on the card's slot.
p11c() {
    local slot
    slot=$(slot_of "$CARD_LABEL")
    p11 --slot "$slot" "$@"
}

listed() {
    p11 -L >"$WORK/list"
    cat "$WORK/list"
    expect_contains "$WORK/list" "token label *: $CARD_LABEL"
    expect_contains "$WORK/list" "token manufacturer *: Common Access Card"
    expect_contains "$WORK/list" "serial num *: $SERIAL"
}
check "pkcs11-tool through kyso-pkcs11.so lists the CAC token" listed

refused_unknown() {
    local out rc=0
    out=$(p11c -O --login --pin "$PIN" 2>&1) || rc=$?
    echo "$out"
    [ $rc -ne 0 ] || fail "root used a card without a custody record"
    echo "$out" | grep -q CKR_TOKEN_NOT_RECOGNIZED || fail "expected CKR_TOKEN_NOT_RECOGNIZED"
}
check "the card without a custody record is refused (unknown_tokens = deny)" refused_unknown

assign_root() {
    ctl assign "$SERIAL" --kind personal --holder root --decision 1/TEST --decision-date 2026-01-01
    [ "$(token_prop "$SERIAL" state)" = active ]
    [ "$(token_prop "$SERIAL" holder)" = root ]
}
check "kysoctl assigns the card to root" assign_root

objects() {
    p11c -O --login --pin "$PIN" >"$WORK/objects"
    cat "$WORK/objects"
    [ "$(grep -c '^Private Key Object; RSA' "$WORK/objects")" = 3 ] || fail "expected 3 RSA private keys"
    [ "$(grep -c '^Certificate Object' "$WORK/objects")" = 3 ] || fail "expected 3 certificates"
    expect_contains "$WORK/objects" "subject: *DN: CN=$CARD_LABEL\$"
}
check "logged in, the card shows its 3 RSA keys and 3 certificates" objects

read_cert() {
    p11c --read-object --type cert --id 0001 -o "$WORK/cert.der"
    openssl x509 -inform der -in "$WORK/cert.der" -out "$WORK/cert.pem"
    openssl x509 -in "$WORK/cert.pem" -noout -subject | tee /dev/stderr | grep -q "CN *= *$CARD_LABEL\$"
    openssl x509 -in "$WORK/cert.pem" -noout -pubkey >"$WORK/pub.pem"
}
check "the certificate (id 0001) reads through kyso" read_cert

certificates_property() {
    local path
    path=$(busctl --system call org.kyso1 /org/kyso1 org.kyso1.Manager GetToken s "$SERIAL" | cut -d'"' -f2)
    busctl --system get-property org.kyso1 "$path" org.kyso1.Token Certificates | tee "$WORK/certs"
    grep -q '^a(sssxx) 3 ' "$WORK/certs" || fail "expected the card's 3 certificates"
    grep -q 'CN=' "$WORK/certs" || fail "no subject"
    ctl report --format json -o "$WORK/report.json"
    python3 -c '
import json, sys
t = [t for t in json.load(open(sys.argv[1]))["tokens"] if t["serial"] == sys.argv[2]][0]
assert len(t["certificates"]) == 3 and all(c["subject"] and c["not_after"] for c in t["certificates"]), t
' "$WORK/report.json" "$SERIAL"
}
check "kysod read the card's certificates: the Certificates property and the report list their subjects" certificates_property

head -c 1000 /dev/urandom >"$WORK/data"
# sign_verify TAG: sign with the card's key 0001 through kyso and verify the signature with openssl.
sign_verify() {
    local start
    rm -f "$WORK/$1.sig"
    start=$(date +%s%N)
    p11c --login --pin "$PIN" --sign --id 0001 -m SHA256-RSA-PKCS -i "$WORK/data" -o "$WORK/$1.sig"
    echo "signing ($1) took $(elapsed "$start") ms" | tee -a "$WORK/timings"
    [ "$(stat -c %s "$WORK/$1.sig")" = 256 ] || fail "not a 2048-bit RSA signature"
    openssl dgst -sha256 -verify "$WORK/pub.pem" -signature "$WORK/$1.sig" "$WORK/data"
}
check "login with the PIN and sign (SHA256-RSA-PKCS); openssl verifies with the certificate" sign_verify first

wrong_pin() {
    local rc=0
    p11c --login --pin "$WRONG_PIN" --sign --id 0001 -m SHA256-RSA-PKCS -i "$WORK/data" -o "$WORK/bad.sig" || rc=$?
    echo "exit status $rc"
    # libcacard answers a wrong PIN with CKR_GENERAL_ERROR through OpenSC: assert the refusal only.
    if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then fail "a wrong PIN was not refused"; fi
}
check "a wrong PIN is refused" wrong_pin

pull() {
    local start mark
    mark=$(wc -l <"$monitor_log")
    start=$(date +%s%N)
    kill -USR1 "$KYSO_VCARD_PID"
    wait_signal "member=TokenRemoved" "$mark" "$KYSO_CARD_WAIT"
    echo "TokenRemoved $(elapsed "$start") ms after the card was pulled" | tee -a "$WORK/timings"
    tail -n +"$((mark + 1))" "$monitor_log" | grep -A3 "member=TokenRemoved" | grep -q "string \"$SERIAL\"" ||
        fail "TokenRemoved does not name $SERIAL"
    wait_present "$SERIAL" false
    # Still known, with its custody, while out of the reader.
    [ "$(token_prop "$SERIAL" holder)" = root ]
}
check "pulling the card out: TokenRemoved naming it, kysoctl shows it not present, custody kept" pull

unusable() {
    local rc=0
    p11 -L | tee "$WORK/list2"
    ! grep -q "token label *: $CARD_LABEL" "$WORK/list2" || fail "the pulled card is still listed"
    p11 --token-label "$CARD_LABEL" --login --pin "$PIN" --sign --id 0001 -m SHA256-RSA-PKCS \
        -i "$WORK/data" -o "$WORK/gone.sig" || rc=$?
    if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then fail "signed with a card that is out of the reader"; fi
}
check "while out of the reader the card is neither listed nor usable" unusable

put_back() {
    local start mark
    mark=$(wc -l <"$monitor_log")
    start=$(date +%s%N)
    kill -USR2 "$KYSO_VCARD_PID"
    wait_signal "member=TokenInserted" "$mark" "$KYSO_CARD_WAIT"
    echo "TokenInserted $(elapsed "$start") ms after the card was put back" | tee -a "$WORK/timings"
    tail -n +"$((mark + 1))" "$monitor_log" | grep -A4 "member=TokenInserted" | grep -q "string \"$CARD_LABEL\"" ||
        fail "TokenInserted does not carry the label"
    wait_present "$SERIAL" true
    # One token object however often the card comes and goes.
    [ "$(ctl --json tokens | python3 -c 'import json,sys; print(sum(1 for t in json.load(sys.stdin) if t["serial"] == sys.argv[1]))' "$SERIAL")" = 1 ]
}
check "putting the card back: TokenInserted with its label, present again, one token object" put_back
check "after re-insertion, login and signing work again (verified)" sign_verify again

# ---- pam_p11 through kyso-pkcs11.so ----

pam() { # PIN: pamtester authenticates the test user with PIN; its exit status
    printf '%s\n' "$1" | timeout -k 5 "$((KYSO_CARD_WAIT * 3))" pamtester -v "$KYSO_PAM_SERVICE" "$KYSO_PAM_USER" authenticate
}
cp "$WORK/cert.pem" "$KYSO_CARD_DIR/home/.eid/authorized_certificates"

pam_right() {
    local start
    start=$(date +%s%N)
    pam "$PIN"
    echo "pam_p11 authenticated in $(elapsed "$start") ms" | tee -a "$WORK/timings"
}
check "pam_p11 with kyso-pkcs11.so: the card's certificate and the right PIN authenticate" pam_right

pam_refused() { # PIN
    local rc=0
    pam "$1" || rc=$?
    echo "exit status $rc"
    # Debian's pam_p11 may also hang or crash on refusal: any non-zero exit counts as refused.
    [ $rc -ne 0 ] || fail "pam_p11 authenticated"
}
check "pam_p11: a wrong PIN is refused" pam_refused "$WRONG_PIN"

# Debian's libp11 0.4.12 (under pam_p11) never returns when C_OpenSession fails: it waits for a pooled
# session that cannot come (OpenSC/libp11#525, fixed upstream by #579). So when kyso refuses the card,
# pamtester hangs instead of failing: the check waits for kysod's refusal of that very process, then
# stops it. A pamtester that authenticates fails the check.
custody_ends() {
    local pid i rc=0
    ctl report-lost "$SERIAL" --reason "test: card reported lost"
    [ "$(token_prop "$SERIAL" state)" = lost ]
    printf '%s\n' "$PIN" | pamtester -v "$KYSO_PAM_SERVICE" "$KYSO_PAM_USER" authenticate >"$WORK/pam.out" 2>&1 &
    pid=$!
    for i in $(seq 1 $((KYSO_CARD_WAIT * 30))); do
        kill -0 "$pid" 2>/dev/null || break
        grep -Eq "Refused .*$SERIAL.* pid $pid \\(" "$KYSO_TEST_DIR/kysod.log" && break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        sleep 0.5
        kill -KILL "$pid" 2>/dev/null && echo "pamtester hung after the refusal (libp11 0.4.12): stopped"
    fi
    wait "$pid" || rc=$?
    cat "$WORK/pam.out"
    echo "exit status $rc"
    [ $rc -ne 0 ] || fail "pam_p11 authenticated with a card reported lost"
    grep -E "Refused .*$SERIAL.* pid $pid \\(.*reported lost" "$KYSO_TEST_DIR/kysod.log" ||
        fail "kysod did not refuse pamtester (pid $pid) the lost card"
}
check "once the card is reported lost, kyso refuses it to pam_p11 even with the right PIN" custody_ends

# With [policy] refused_tokens = hidden, a card a client may not use is absent for it: libp11 then never
# opens a session, so pam_p11 fails at once instead of hanging.
hidden_for_pam() {
    local rc=0 start
    printf '\n[policy]\nrefused_tokens = hidden\n' >>"$KYSO_TEST_DIR/kysod.conf"
    kill -HUP "$(cat "$KYSO_TEST_DIR/kysod.pid")"
    for _ in $(seq 1 50); do grep -q "Reloaded" "$KYSO_TEST_DIR/kysod.log" && break; sleep 0.1; done
    p11 -L | tee "$WORK/list3"
    ! grep -q "token label *: $CARD_LABEL" "$WORK/list3" || fail "the lost card is still listed as present"
    start=$(date +%s%N)
    printf '%s\n' "$PIN" | timeout -k 2 "$((KYSO_CARD_WAIT * 3))" pamtester -v "$KYSO_PAM_SERVICE" "$KYSO_PAM_USER" \
        authenticate || rc=$?
    echo "exit status $rc after $(elapsed "$start") ms"
    [ $rc -ne 0 ] || fail "pam_p11 authenticated with a card reported lost"
    [ $rc -ne 124 ] && [ $rc -ne 137 ] || fail "pam_p11 hung"
}
check "refused_tokens = hidden: the lost card is not listed, and pam_p11 fails at once (no hang)" hidden_for_pam

[ ! -f "$WORK/timings" ] || sed -e 's/^/# /' "$WORK/timings"
finish
