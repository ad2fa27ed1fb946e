#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# NSS (the crypto of Firefox and Thunderbird) uses kyso-pkcs11.so: a fresh NSS
# database, modutil -add, modutil -list; a certificate stored on the token
# through kyso is listed by certutil -L -h all; NSS itself generates a key pair
# and a self-signed certificate on the token through kyso (the signature is
# checked by OpenSSL), and certutil -K lists the token's keys after login.
[ -n "${KYSO_SOCKET:-}" ] || exec "$(dirname "$0")/with-kysod.sh" "$0" "$@"
set -euo pipefail
. "$(dirname "$0")/lib.sh"

cd "$WORK"
DB="sql:$WORK/nssdb"
mkdir nssdb
printf '%s\n' "$KYSO_TEST_PIN" >pinfile
head -c 256 /dev/urandom >noise

nss_init() {
    t certutil -N --empty-password -d "$DB"
    [ -f nssdb/cert9.db ] || fail "no cert9.db created"
}
check "certutil -N creates a fresh NSS database" nss_init

modutil_add() {
    # modutil asks for confirmation when a browser might be running; -force skips it.
    t modutil -add kyso -libfile "$KYSO_MODULE" -dbdir "$DB" -force >out 2>&1 || { cat out; return 1; }
    cat out
    expect_contains out 'Module "kyso" added to database'
}
check "modutil -add kyso -libfile kyso-pkcs11.so" modutil_add

modutil_list() {
    t modutil -list -dbdir "$DB" >out 2>&1 || { cat out; return 1; }
    cat out
    expect_contains out '^ *[0-9]+\. kyso$'
    expect_contains out "library name: $KYSO_MODULE"
    expect_contains out 'status: loaded'
    expect_contains out "token: $KYSO_TEST_LABEL\$"
}
check "modutil -list shows kyso loaded with token '$KYSO_TEST_LABEL'" modutil_list

modutil_list_kyso() {
    t modutil -list kyso -dbdir "$DB" >out 2>&1 || { cat out; return 1; }
    cat out
    expect_contains out "Token Name: $KYSO_TEST_LABEL"
}
check "modutil -list kyso shows the token's details" modutil_list_kyso

store_cert() {
    # A self-signed certificate made by OpenSSL, written to the token through kyso.
    openssl req -x509 -newkey rsa:2048 -nodes -keyout sw.key -subj "/CN=kyso-nss-openssl" \
        -days 30 -out sw.pem 2>/dev/null
    openssl x509 -in sw.pem -outform DER -out sw.der
    p11_user --write-object sw.der --type cert --id 10 --label openssl-cert >/dev/null
}
check "a certificate is written to the token through kyso (pkcs11-tool --write-object)" store_cert

certutil_list() {
    t certutil -L -h all -d "$DB" >out 2>&1 || { cat out; return 1; }
    cat out
    expect_contains out "^$KYSO_TEST_LABEL:openssl-cert "
}
check "certutil -L -h all lists the token's certificate" certutil_list

nss_generate() {
    # NSS generates an RSA key pair on the token and signs its own certificate, all through kyso.
    t certutil -S -s "CN=kyso-nss-made" -n nss-made -x -t u,u,u -h "$KYSO_TEST_LABEL" \
        -d "$DB" -f pinfile -z noise -k rsa -g 2048 -v 12 >out 2>&1 || { cat out; return 1; }
    cat out
    t certutil -L -h all -d "$DB" >out 2>&1 || { cat out; return 1; }
    cat out
    expect_contains out "^$KYSO_TEST_LABEL:nss-made +u,u,u"
    # Read it back through kyso and check the signature the token made.
    p11 --token-label "$KYSO_TEST_LABEL" --read-object --type cert --label nss-made -o made.der
    openssl x509 -inform DER -in made.der -out made.pem
    openssl x509 -in made.pem -noout -subject | grep 'CN *= *kyso-nss-made' >/dev/null
    openssl verify -check_ss_sig -partial_chain -CAfile made.pem made.pem
}
check "certutil -S -x: NSS makes a key and self-signed certificate on the token; OpenSSL verifies it" nss_generate

certutil_keys() {
    t certutil -K -h "$KYSO_TEST_LABEL" -d "$DB" -f pinfile >out 2>&1 || { cat out; return 1; }
    cat out
    expect_contains out "Checking token \"$KYSO_TEST_LABEL\""
    expect_contains out '^< *[0-9]+> rsa .*nss-made'
}
check "certutil -K (logged in through kyso) lists the key NSS generated" certutil_keys

certutil_wrong_pin() {
    printf '0000000000\n' >badpin
    if t certutil -K -h "$KYSO_TEST_LABEL" -d "$DB" -f badpin >out 2>&1; then
        cat out
        fail "certutil -K succeeded with a wrong PIN"
    fi
    cat out
    expect_contains out 'SEC_ERROR_BAD_PASSWORD'
}
check "certutil -K with a wrong PIN fails" certutil_wrong_pin

finish
