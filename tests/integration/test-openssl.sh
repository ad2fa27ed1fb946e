#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# OpenSSL 3 with libengine-pkcs11-openssl (libp11 0.4.12) signs through kyso-pkcs11.so
# by pkcs11: URI — module named in an openssl config file (MODULE_PATH) and by
# the PKCS11_MODULE_PATH environment variable, both of which libp11 honours
# (a wrong path in either makes loading fail) — and `openssl dgst -verify`
# checks the signatures against the public keys read back through kyso.
[ -n "${KYSO_SOCKET:-}" ] || exec "$(dirname "$0")/with-kysod.sh" "$0" "$@"
set -euo pipefail
. "$(dirname "$0")/lib.sh"

cd "$WORK"
head -c 5000 /dev/urandom >data

ENGINE=$(openssl version -e | sed -n 's/^ENGINESDIR: "\(.*\)"$/\1/p')/pkcs11.so
[ -f "$ENGINE" ] || ENGINE=/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so

# SoftHSM2 is registered with p11-kit on this machine, and libp11 falls back to
# p11-kit-proxy.so when no module is named. The OpenSSL processes get an empty
# SoftHSM2 store of their own, so they can reach the test token only through kyso.
mkdir -p empty-tokens
printf 'directories.tokendir = %s/empty-tokens/\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$WORK" >empty-softhsm2.conf

cat >openssl.cnf <<EOF
openssl_conf = openssl_init

[openssl_init]
engines = engine_section

[engine_section]
pkcs11 = pkcs11_section

[pkcs11_section]
engine_id = pkcs11
dynamic_path = $ENGINE
MODULE_PATH = $KYSO_MODULE
init = 0
EOF

# openssl with the engine configured by file.
OSSL_SOFTHSM2_CONF=$WORK/empty-softhsm2.conf
# (Developing these tests with KYSO_MODULE set to SoftHSM2 itself: keep its store.)
[ "$KYSO_MODULE" != "$SOFTHSM_MODULE" ] || OSSL_SOFTHSM2_CONF=$SOFTHSM2_CONF
ossl_conf() {
    SOFTHSM2_CONF=$OSSL_SOFTHSM2_CONF OPENSSL_CONF=$WORK/openssl.cnf t openssl "$@"
}
# openssl with the engine's module named by PKCS11_MODULE_PATH (no config file).
ossl_env() {
    SOFTHSM2_CONF=$OSSL_SOFTHSM2_CONF OPENSSL_CONF=/dev/null PKCS11_MODULE_PATH=$KYSO_MODULE \
        t openssl "$@"
}

TOKEN=$(uri_escape "$KYSO_TEST_LABEL")
PIN=$(uri_escape "$KYSO_TEST_PIN")
RSA_URI="pkcs11:token=$TOKEN;object=ossl-rsa;type=private;pin-value=$PIN"
EC_URI="pkcs11:token=$TOKEN;object=ossl-ec;type=private;pin-value=$PIN"

keys() {
    p11_user --keypairgen --key-type rsa:2048 --id 21 --label ossl-rsa --usage-sign >/dev/null
    p11_user --keypairgen --key-type EC:prime256v1 --id 22 --label ossl-ec --usage-sign >/dev/null
    p11 --token-label "$KYSO_TEST_LABEL" --read-object --type pubkey --id 21 -o rsa.der
    p11 --token-label "$KYSO_TEST_LABEL" --read-object --type pubkey --id 22 -o ec.der
    openssl pkey -pubin -inform DER -in rsa.der -out rsa.pem
    openssl pkey -pubin -inform DER -in ec.der -out ec.pem
}
check "RSA-2048 and EC P-256 keys generated through kyso, public keys read back" keys

engine_loads() {
    ossl_conf engine -t pkcs11 >out 2>&1 || { cat out; return 1; }
    cat out
    expect_contains out '\[ available \]'
}
check "openssl engine -t pkcs11 (libp11) loads with MODULE_PATH = kyso-pkcs11.so" engine_loads

sign_conf_rsa() {
    ossl_conf dgst -sha256 -engine pkcs11 -keyform engine -sign "$RSA_URI" -out rsa.sig data
    openssl dgst -sha256 -verify rsa.pem -signature rsa.sig data
}
check "openssl dgst -sign by pkcs11: URI (RSA, module from openssl.cnf) verifies" sign_conf_rsa

sign_env_rsa() {
    ossl_env dgst -sha256 -engine pkcs11 -keyform engine -sign "$RSA_URI" -out rsa-env.sig data
    openssl dgst -sha256 -verify rsa.pem -signature rsa-env.sig data
}
check "openssl dgst -sign by pkcs11: URI (RSA, module from PKCS11_MODULE_PATH) verifies" sign_env_rsa

sign_conf_ec() {
    ossl_conf dgst -sha256 -engine pkcs11 -keyform engine -sign "$EC_URI" -out ec.sig data
    openssl dgst -sha256 -verify ec.pem -signature ec.sig data
}
check "openssl dgst -sign by pkcs11: URI (ECDSA P-256) verifies" sign_conf_ec

sign_pss() {
    ossl_conf dgst -sha256 -engine pkcs11 -keyform engine -sign "$RSA_URI" \
        -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 -out pss.sig data
    openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 \
        -verify rsa.pem -signature pss.sig data
}
check "openssl dgst -sign with RSA-PSS by pkcs11: URI verifies" sign_pss

bad_signature() {
    cp rsa.sig bad.sig
    flip_byte bad.sig 100
    if openssl dgst -sha256 -verify rsa.pem -signature bad.sig data; then
        fail "a corrupted signature verified"
    fi
    # ... and a signature of other data does not verify either.
    printf 'other' >other
    if openssl dgst -sha256 -verify rsa.pem -signature rsa.sig other; then
        fail "the signature verified for other data"
    fi
}
check "openssl dgst -verify refuses a corrupted signature" bad_signature

wrong_pin() {
    local uri="pkcs11:token=$TOKEN;object=ossl-rsa;type=private;pin-value=0000000000"
    if ossl_conf dgst -sha256 -engine pkcs11 -keyform engine -sign "$uri" -out wrong.sig data >out 2>&1; then
        cat out
        fail "signed with a wrong PIN"
    fi
    cat out
    expect_contains out 'Login failed|PIN incorrect'
}
check "openssl with a wrong pin-value cannot sign" wrong_pin

pubkey_by_uri() {
    ossl_conf pkey -engine pkcs11 -inform engine -pubin \
        -in "pkcs11:token=$TOKEN;object=ossl-rsa;type=public" -pubout -out rsa-engine.pem
    cmp <(openssl pkey -pubin -in rsa.pem -outform DER) <(openssl pkey -pubin -in rsa-engine.pem -outform DER)
}
check "openssl pkey reads the public key by pkcs11: URI (same as pkcs11-tool's)" pubkey_by_uri

self_signed() {
    ossl_conf req -new -x509 -engine pkcs11 -keyform engine -key "$RSA_URI" \
        -subj "/CN=kyso openssl test" -days 30 -sha256 -out cert.pem
    openssl verify -check_ss_sig -partial_chain -CAfile cert.pem cert.pem
    cmp <(openssl x509 -in cert.pem -noout -pubkey | openssl pkey -pubin -outform DER) \
        <(openssl pkey -pubin -in rsa.pem -outform DER)
}
check "openssl req -x509 with the token key makes a valid self-signed certificate" self_signed

finish
