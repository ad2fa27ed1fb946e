#!/bin/bash
# The kyso demo: builds kyso, makes a SoftHSM2 token with an RSA and an EC
# key and their certificates (first run only), starts a development kysod
# on it (with a private D-Bus standing in for the system bus), shows that a
# token without a custody record is refused, assigns it to the user running
# the demo with kysoctl, and signs through kyso with pkcs11-tool, verifying
# the signatures with openssl. Everything lives in .kyso-dev/ in the repository; delete it
# to start over. Runs as any user (installing packages needs root or sudo).
#
# Environment: BUILD_DIR (default: build), MESON_SETUP_ARGS (extra options
# for the first "meson setup"), KYSO_NO_DEPS=1 skips installing packages.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

BUILD_DIR=${BUILD_DIR:-build}
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR=$ROOT/$BUILD_DIR ;; esac
DEV=$ROOT/.kyso-dev
SOFTHSM=/usr/lib/softhsm/libsofthsm2.so
KYSOD=$BUILD_DIR/daemon/kysod
KYSOCTL=$BUILD_DIR/tools/kysoctl
MODULE=$BUILD_DIR/pkcs11-module/kyso-pkcs11.so
SOCKET=$DEV/pkcs11.sock
LABEL=kyso-demo
# Demo PINs: 8 digits, neither a sequence nor a repeated digit. Not secrets:
# the token holds nothing but demo keys.
USER_PIN=52917364
SO_PIN=80461937

if [ -t 1 ]; then
        OK=$'\e[32m✔\e[0m' FAIL=$'\e[31m✘\e[0m' BOLD=$'\e[1m' RESET=$'\e[0m'
else
        OK='✔' FAIL='✘' BOLD='' RESET=''
fi

say() { printf '%s\n' "$*"; }
ok() { printf '%s %s\n' "$OK" "$*"; }
section() { printf '\n%s%s%s\n' "$BOLD" "$*" "$RESET"; }
die() {
        printf '%s %s\n' "$FAIL" "$*" >&2
        exit 1
}

# run WHAT CMD...: runs CMD with its output in $DEV/last.log; on failure shows its end and stops.
run() {
        local what=$1
        shift
        if ! "$@" >"$DEV/last.log" 2>&1; then
                printf '%s %s failed:\n  $ %s\n' "$FAIL" "$what" "$*" >&2
                tail -n 40 "$DEV/last.log" | sed 's/^/  | /' >&2
                exit 1
        fi
}

# ---------------------------------------------------------------------------
section "1. Dependencies and build"

if [ "${KYSO_NO_DEPS:-0}" != 1 ]; then
        "$ROOT/scripts/install-deps.sh"
        ok "Debian packages present"
fi

mkdir -p "$DEV"
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
        # shellcheck disable=SC2086 # MESON_SETUP_ARGS is a list of options
        run "meson setup" meson setup "$BUILD_DIR" ${MESON_SETUP_ARGS:-}
fi
run "the build" meson compile -C "$BUILD_DIR"
for f in "$KYSOD" "$KYSOCTL" "$MODULE"; do
        [ -e "$f" ] || die "the build did not produce $f"
done
ok "built kysod, kysoctl and kyso-pkcs11.so in ${BUILD_DIR#"$ROOT"/}"

# ---------------------------------------------------------------------------
section "2. A SoftHSM2 token with demo keys (in .kyso-dev/)"

mkdir -p "$DEV/tokens"
cat >"$DEV/softhsm2.conf" <<EOF
directories.tokendir = $DEV/tokens/
objectstore.backend = file
log.level = ERROR
EOF
export SOFTHSM2_CONF=$DEV/softhsm2.conf

direct() { pkcs11-tool --module "$SOFTHSM" --token-label "$LABEL" "$@"; }

if pkcs11-tool --module "$SOFTHSM" -L 2>/dev/null | grep -Eq "token label +: $LABEL\$"; then
        ok "token \"$LABEL\" exists, reusing it"
else
        run "creating the token" softhsm2-util --init-token --free --label "$LABEL" --so-pin "$SO_PIN" --pin "$USER_PIN"
        ok "created token \"$LABEL\""
fi
say "  user PIN: $USER_PIN   SO PIN: $SO_PIN"

# has_object TYPE LABEL: whether the token holds an object of TYPE (privkey, cert) with LABEL.
has_object() {
        direct --login --pin "$USER_PIN" --list-objects --type "$1" 2>/dev/null | grep -Eq "label: +$2\$"
}

# make_key LABEL ID KEY-TYPE SUBJECT: a key pair generated on the token and a self-signed certificate.
make_key() {
        local label=$1 id=$2 type=$3 subject=$4
        if has_object privkey "$label"; then
                ok "key $label (id $id) is on the token"
        else
                run "generating $label" direct --login --pin "$USER_PIN" --keypairgen --key-type "$type" \
                        --label "$label" --id "$id"
                ok "generated $label ($type) on the token, id $id"
        fi
        if has_object cert "$label"; then
                ok "certificate $label is on the token"
        else
                # openssl signs the certificate with the private key on the token, through
                # libp11's engine; the key never leaves SoftHSM2.
                run "making the certificate for $label" env PKCS11_MODULE_PATH="$SOFTHSM" \
                        openssl req -new -x509 -engine pkcs11 -keyform engine \
                        -key "pkcs11:token=$LABEL;object=$label;type=private;pin-value=$USER_PIN" \
                        -sha256 -days 3650 -subj "$subject" -outform DER -out "$DEV/$label.der"
                run "writing the certificate $label" direct --login --pin "$USER_PIN" \
                        --write-object "$DEV/$label.der" --type cert --label "$label" --id "$id"
                ok "self-signed certificate for $label written to the token"
        fi
}

make_key demo-rsa 01 rsa:2048 "/O=kyso demo/CN=demo-rsa"
make_key demo-ec 02 EC:prime256v1 "/O=kyso demo/CN=demo-ec"

# ---------------------------------------------------------------------------
section "3. kysod, the daemon, in development mode"

KYSOD_PID=
BUS_PID=
cleanup() {
        local rc=$?
        stop_kysod || rc=1
        if [ -n "$BUS_PID" ]; then
                kill "$BUS_PID" 2>/dev/null || true
        fi
        exit "$rc"
}
stop_kysod() {
        local rc=0 st
        if [ -n "$KYSOD_PID" ] && ! kill -0 "$KYSOD_PID" 2>/dev/null; then
                wait "$KYSOD_PID" && st=0 || st=$?
                printf '%s kysod (pid %s) died during the demo (exit status %s). The end of its log:\n' \
                        "$FAIL" "$KYSOD_PID" "$st" >&2
                tail -n 20 "$DEV/kysod.log" | sed 's/^/  | /' >&2
                rc=1
        elif [ -n "$KYSOD_PID" ]; then
                kill -TERM "$KYSOD_PID" 2>/dev/null || true
                for _ in $(seq 50); do
                        kill -0 "$KYSOD_PID" 2>/dev/null || break
                        sleep 0.1
                done
                if kill -0 "$KYSOD_PID" 2>/dev/null; then
                        kill -KILL "$KYSOD_PID" 2>/dev/null || true
                        printf '%s kysod (pid %s) did not stop on SIGTERM; killed it\n' "$FAIL" "$KYSOD_PID" >&2
                        rc=1
                else
                        wait "$KYSOD_PID" 2>/dev/null || true
                        ok "stopped kysod (pid $KYSOD_PID)"
                fi
        fi
        KYSOD_PID=
        return "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if other=$("$KYSOCTL" --socket "$SOCKET" --json status 2>/dev/null); then
        other_pid=$(sed -n 's/^ *"pid": *\([0-9]*\).*/\1/p' <<<"$other" | head -n1)
        die "a kysod (pid ${other_pid:-?}) already serves $SOCKET, perhaps from an interrupted demo: stop it first (kill ${other_pid:-PID})"
fi

# A private bus in the place of the system bus (this machine may have none, and the demo should not
# touch it): kysod publishes org.kyso1 there, kysoctl finds it through DBUS_SYSTEM_BUS_ADDRESS.
rm -f "$DEV/bus"
dbus-daemon --session --fork --nopidfile --address="unix:path=$DEV/bus" --print-pid=3 3>"$DEV/bus.pid" ||
        die "could not start a private dbus-daemon"
BUS_PID=$(cat "$DEV/bus.pid")
export DBUS_SYSTEM_BUS_ADDRESS="unix:path=$DEV/bus"
ok "private D-Bus (pid $BUS_PID) at .kyso-dev/bus"

# The production policy: a token without a custody record is refused. The admin group is the demo
# user's own group, so that the demo can manage custody without root.
printf '[policy]\nunknown_tokens = deny\nadmin_group = %s\n' "$(id -gn)" >"$DEV/kysod.conf"

"$KYSOD" --config "$DEV/kysod.conf" --state-dir "$DEV" --socket "$SOCKET" --backend "$SOFTHSM" \
        >"$DEV/kysod.log" 2>&1 &
KYSOD_PID=$!

ready=0
for _ in $(seq 100); do
        if "$KYSOCTL" --socket "$SOCKET" status >/dev/null 2>&1; then
                ready=1
                break
        fi
        kill -0 "$KYSOD_PID" 2>/dev/null || break
        sleep 0.1
done
if [ "$ready" != 1 ]; then
        if kill -0 "$KYSOD_PID" 2>/dev/null; then
                printf '%s kysod (pid %s) did not answer on %s within 10 s. Its log:\n' "$FAIL" "$KYSOD_PID" "$SOCKET" >&2
        else
                wait "$KYSOD_PID" && st=0 || st=$?
                KYSOD_PID=
                printf '%s kysod exited (status %s) before it was ready. Its log:\n' "$FAIL" "$st" >&2
        fi
        tail -n 20 "$DEV/kysod.log" | sed 's/^/  | /' >&2
        exit 1
fi
ok "kysod (pid $KYSOD_PID) serves $SOCKET with the SoftHSM2 backend; log in .kyso-dev/kysod.log"

# ---------------------------------------------------------------------------
section "4. Custody: a token belongs to whom a written decision names"

export KYSO_SOCKET=$SOCKET
kyso() { pkcs11-tool --module "$MODULE" "$@"; }
kyso_token() { kyso --token-label "$LABEL" "$@"; }

for _ in $(seq 50); do
        "$KYSOCTL" tokens >/dev/null 2>&1 && break
        sleep 0.1
done
serial=$("$KYSOCTL" --json tokens | python3 -c '
import json, sys
for t in json.load(sys.stdin):
    if t["label"] == sys.argv[1] and t["present"]:
        print(t["serial"])' "$LABEL") || true
[ -n "$serial" ] || die "kysoctl tokens does not show the token \"$LABEL\" (is kysod on the bus? see .kyso-dev/kysod.log)"
state=$("$KYSOCTL" --json token "$serial" | python3 -c 'import json,sys; t=json.load(sys.stdin); print(t["state"], t["holder"])')
if [ "$state" = "active $(id -un)" ]; then
        ok "token $serial is already assigned to $(id -un) (from an earlier demo run)"
else
        if kyso_token -O >"$DEV/last.log" 2>&1; then
                die "kysod let a token without a custody record be used"
        fi
        grep -q CKR_TOKEN_NOT_RECOGNIZED "$DEV/last.log" || {
                sed 's/^/  | /' "$DEV/last.log" >&2
                die "expected CKR_TOKEN_NOT_RECOGNIZED for a token without a custody record"
        }
        ok "before any custody record kysod refuses the token: C_OpenSession -> CKR_TOKEN_NOT_RECOGNIZED"
        if [ "${state%% *}" = active ]; then
                run "recording the earlier holder's return" "$KYSOCTL" return "$serial" --reason "demo"
        fi
        run "assigning the token" "$KYSOCTL" assign "$serial" --kind personal --holder "$(id -un)" \
                --decision "01/QĐ-DEMO" --decision-date "$(date +%F)" --signed-by "Giám đốc Sở (demo)" \
                --org "kyso demo"
        ok "kysoctl assign: token $serial now belongs to $(id -un), by decision 01/QĐ-DEMO"
fi
"$KYSOCTL" token "$serial" | sed 's/^/  /'

# ---------------------------------------------------------------------------
section "5. A real PKCS#11 client (pkcs11-tool) through kyso-pkcs11.so"

run "reading the module info (-I)" kyso -I
info=$(cat "$DEV/last.log")
manufacturer=$(sed -n 's/^Manufacturer *//p' <<<"$info" | head -n1)
library=$(sed -n '/^Library/{s/^Library *//; s/Using slot.*//; p}' <<<"$info" | head -n1)
cryptoki=$(sed -n 's/^Cryptoki version *//p' <<<"$info" | head -n1)
ok "module info: ${manufacturer:-?} / ${library:-?}, Cryptoki ${cryptoki:-?}"

run "listing slots (-L)" kyso -L
nslots=$(grep -c '^Slot ' "$DEV/last.log" || true)
grep -Eq "token label +: $LABEL\$" "$DEV/last.log" || {
        sed 's/^/  | /' "$DEV/last.log" >&2
        die "kyso does not show the token \"$LABEL\" (see the slot list above)"
}
ok "listed ${nslots} slot(s); token \"$LABEL\" is present"

run "listing objects (-O)" kyso_token --login --pin "$USER_PIN" -O
for t in "Private Key Object" "Public Key Object" "Certificate Object"; do
        n=$(grep -c "^$t" "$DEV/last.log" || true)
        counts="${counts:+$counts, }$n ${t% Object}"
done
ok "logged in and listed objects: ${counts,,}"

head -c 1024 /dev/urandom >"$DEV/data.bin"
rm -f "$DEV"/*.sig "$DEV"/*-from-kyso.der "$DEV"/*-pub.pem "$DEV/data.sha256"

openssl dgst -sha256 -binary -out "$DEV/data.sha256" "$DEV/data.bin"

# sign_and_verify LABEL ID MECHANISM DESCRIPTION INPUT [pkcs11-tool options...]
sign_and_verify() {
        local label=$1 id=$2 mech=$3 desc=$4 input=$5
        shift 5
        run "signing with $label" kyso_token --login --pin "$USER_PIN" --sign --id "$id" --mechanism "$mech" "$@" \
                --input-file "$input" --output-file "$DEV/$label.sig"
        run "reading the certificate $label back" kyso_token --read-object --type cert --id "$id" \
                --output-file "$DEV/$label-from-kyso.der"
        if [ -f "$DEV/$label.der" ] && ! cmp -s "$DEV/$label.der" "$DEV/$label-from-kyso.der"; then
                die "the certificate $label read through kyso differs from the one written to the token"
        fi
        run "extracting the public key of $label" openssl x509 -inform DER -in "$DEV/$label-from-kyso.der" \
                -pubkey -noout -out "$DEV/$label-pub.pem"
        run "verifying the $label signature with openssl" openssl dgst -sha256 -verify "$DEV/$label-pub.pem" \
                -signature "$DEV/$label.sig" "$DEV/data.bin"
        ok "signed 1 KiB with $label ($desc) through kyso; openssl verified it against the certificate read through kyso"
}

sign_and_verify demo-rsa 01 SHA256-RSA-PKCS "SHA256-RSA-PKCS" "$DEV/data.bin"
# SoftHSM2 2.6 has no CKM_ECDSA_SHA256: the digest is made here and the token signs it
# with CKM_ECDSA, which is what signing applications do anyway.
sign_and_verify demo-ec 02 ECDSA "SHA-256 + ECDSA" "$DEV/data.sha256" --signature-format openssl

# A tampered message must not verify: shows the check above is real.
cp "$DEV/data.bin" "$DEV/tampered.bin"
# Inverted, not overwritten: a fixed byte would leave random data unchanged once in 256 runs.
python3 -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[100] ^= 0xff; open(sys.argv[1], "wb").write(b)' \
        "$DEV/tampered.bin"
if openssl dgst -sha256 -verify "$DEV/demo-rsa-pub.pem" -signature "$DEV/demo-rsa.sig" "$DEV/tampered.bin" >/dev/null 2>&1; then
        die "openssl accepted the RSA signature for a modified file"
fi
ok "a modified file fails verification, as it should"

# ---------------------------------------------------------------------------
section "6. kysoctl status"

"$KYSOCTL" --socket "$SOCKET" status || die "kysoctl status failed"

section "Done: every step passed"
say "To try it by hand, start the daemon in one terminal (the token keeps its custody record):"
say "  SOFTHSM2_CONF=.kyso-dev/softhsm2.conf ${KYSOD#"$ROOT"/} --config .kyso-dev/kysod.conf --bus none \\"
say "      --state-dir .kyso-dev --socket .kyso-dev/pkcs11.sock --backend $SOFTHSM"
say "and use it from another (user PIN $USER_PIN):"
say "  KYSO_SOCKET=.kyso-dev/pkcs11.sock pkcs11-tool --module ${MODULE#"$ROOT"/} -O --login"
