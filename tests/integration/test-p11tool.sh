#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# GnuTLS's p11tool drives a real kysod through kyso-pkcs11.so: token list,
# key generation (RSA and ECDSA), object lists (public and, logged in,
# private), and signatures made through kyso and verified by GnuTLS.
[ -n "${KYSO_SOCKET:-}" ] || exec "$(dirname "$0")/with-kysod.sh" "$0" "$@"
set -euo pipefail
. "$(dirname "$0")/lib.sh"

cd "$WORK"
TOKEN_URI="pkcs11:token=$(uri_escape "$KYSO_TEST_LABEL")"
# Without GNUTLS_PIN in the environment p11tool would prompt; every command that
# needs the PIN gets it explicitly (--set-pin or GNUTLS_PIN), and stdin is /dev/null.
unset GNUTLS_PIN GNUTLS_SO_PIN

gtool() {
    t p11tool --provider "$KYSO_MODULE" "$@"
}

list_tokens() {
    gtool --list-tokens >out
    cat out
    expect_contains out "^[[:space:]]+Label: $KYSO_TEST_LABEL\$"
    expect_contains out "URL: pkcs11:.*token=$KYSO_TEST_LABEL"
}
check "p11tool --list-tokens shows '$KYSO_TEST_LABEL'" list_tokens

list_token_urls() {
    gtool --list-token-urls >out
    cat out
    expect_contains out "token=$KYSO_TEST_LABEL"
}
check "p11tool --list-token-urls" list_token_urls

gen_rsa() {
    gtool --login --set-pin="$KYSO_TEST_PIN" --generate-privkey rsa --bits 2048 \
        --label gnutls-rsa --outfile rsa-gen.pem "$TOKEN_URI"
    openssl pkey -pubin -in rsa-gen.pem -text -noout | grep 'Public-Key: (2048 bit)' >/dev/null
}
check "p11tool --generate-privkey rsa 2048 (PIN by --set-pin)" gen_rsa

gen_ec() {
    GNUTLS_PIN=$KYSO_TEST_PIN gtool --login --generate-privkey ecdsa --curve secp256r1 \
        --label gnutls-ec --outfile ec-gen.pem "$TOKEN_URI"
    openssl pkey -pubin -in ec-gen.pem -text -noout | grep 'NIST CURVE: P-256' >/dev/null
}
check "p11tool --generate-privkey ecdsa secp256r1 (PIN by GNUTLS_PIN)" gen_ec

list_all() {
    gtool --list-all "$TOKEN_URI" >out
    cat out
    expect_contains out 'object=gnutls-rsa;type=public'
    expect_contains out 'Type: Public key \(RSA-2048\)'
    expect_contains out 'object=gnutls-ec;type=public'
    # Not logged in: private keys are CKA_PRIVATE and must not be listed.
    if grep -q 'type=private' out; then fail "private keys visible without login"; fi
}
check "p11tool --list-all shows the public keys (and no private key without login)" list_all

list_privkeys() {
    GNUTLS_PIN=$KYSO_TEST_PIN gtool --login --list-all-privkeys "$TOKEN_URI" >out
    cat out
    expect_contains out 'object=gnutls-rsa;type=private'
    expect_contains out 'object=gnutls-ec;type=private'
    expect_contains out 'CKA_SENSITIVE'
}
check "p11tool --login --list-all-privkeys shows both private keys" list_privkeys

export_pubkey() {
    GNUTLS_PIN=$KYSO_TEST_PIN gtool --login --export-pubkey "$TOKEN_URI;object=gnutls-rsa;type=private" --outfile rsa-exp.pem
    cmp <(openssl pkey -pubin -in rsa-gen.pem -outform DER) <(openssl pkey -pubin -in rsa-exp.pem -outform DER)
}
check "p11tool --export-pubkey returns the key generated earlier" export_pubkey

test_sign() {
    local key=$1
    GNUTLS_PIN=$KYSO_TEST_PIN gtool --login --test-sign "$TOKEN_URI;object=$key;type=private" >out 2>&1 ||
        { cat out; return 1; }
    cat out
    expect_contains out 'Signing using .*\.\.\. ok'
    expect_contains out 'Verifying against public key in the token\.\.\. ok'
}
check "p11tool --test-sign with the RSA key (signed through kyso, verified by GnuTLS)" test_sign gnutls-rsa
check "p11tool --test-sign with the ECDSA key" test_sign gnutls-ec

test_sign_wrong_pin() {
    if GNUTLS_PIN=0000000000 gtool --login --test-sign "$TOKEN_URI;object=gnutls-rsa;type=private" >out 2>&1; then
        cat out
        fail "p11tool signed with a wrong PIN"
    fi
    cat out
    expect_contains out 'Wrong PIN'
}
check "p11tool --test-sign with a wrong PIN fails" test_sign_wrong_pin

finish
