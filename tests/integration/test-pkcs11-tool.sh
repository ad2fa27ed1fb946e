#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# OpenSC's pkcs11-tool drives a real kysod through kyso-pkcs11.so: info, slot
# list, --test, key generation, signatures (RSA PKCS#1 v1.5, RSA-PSS, ECDSA)
# checked by OpenSSL against the public keys read back through kyso,
# decryption (RSA PKCS#1, RSA-OAEP, AES-CBC-PAD), digests, PIN change and
# back, and the mechanism list compared with SoftHSM2's own.
[ -n "${KYSO_SOCKET:-}" ] || exec "$(dirname "$0")/with-kysod.sh" "$0" "$@"
set -euo pipefail
. "$(dirname "$0")/lib.sh"

cd "$WORK"
head -c 3000 /dev/urandom >data
IV=000102030405060708090a0b0c0d0e0f

# ---- information -----------------------------------------------------------

show_info() {
    p11 -I >out
    cat out
    expect_contains out '^Cryptoki version 2\.40|^Cryptoki version 3\.'
    expect_contains out '^Manufacturer'
    # It is kyso answering, not a backend loaded by mistake.
    [ "$KYSO_MODULE" = "$SOFTHSM_MODULE" ] || expect_contains out '^Manufacturer +kyso'
}
check "pkcs11-tool -I shows the module's info" show_info

list_slots() {
    p11 -L >out
    cat out
    expect_contains out "token label +: $KYSO_TEST_LABEL\$"
    expect_contains out 'token flags +:.*token initialized'
}
check "pkcs11-tool -L lists token '$KYSO_TEST_LABEL'" list_slots

list_interfaces() {
    p11 --list-interfaces >out
    cat out
    expect_contains out 'PKCS 11'
}
if [ "$KYSO_MODULE" = "$SOFTHSM_MODULE" ]; then
    skip "pkcs11-tool --list-interfaces shows the PKCS #11 3.0 interface" "SoftHSM2 is a 2.40 module"
else
    check "pkcs11-tool --list-interfaces shows the PKCS #11 3.0 interface" list_interfaces
fi

self_test() {
    p11_user --test >out 2>&1 || { cat out; return 1; }
    cat out
    expect_contains out '^No errors'
}
check "pkcs11-tool --test --login passes" self_test

random() {
    p11 --token-label "$KYSO_TEST_LABEL" --generate-random 64 -o rand
    [ "$(stat -c %s rand)" = 64 ] || fail "expected 64 random bytes"
}
check "pkcs11-tool --generate-random 64" random

# ---- mechanisms: exactly SoftHSM2's list -------------------------------------

# Run sequentially, never in parallel with another client (SoftHSM2 #757).
mechanisms() {
    p11 --token-label "$KYSO_TEST_LABEL" -M >kyso.raw
    p11_direct --token-label "$KYSO_TEST_LABEL" -M >direct.raw
    grep '^  ' kyso.raw | sort >kyso.mech
    grep '^  ' direct.raw | sort >direct.mech
    echo "through kyso: $(wc -l <kyso.mech), directly: $(wc -l <direct.mech)"
    [ -s direct.mech ] || fail "SoftHSM2 listed no mechanisms"
    diff -u direct.mech kyso.mech
}
check "pkcs11-tool -M through kyso lists exactly SoftHSM2's mechanisms" mechanisms

# ---- key generation --------------------------------------------------------

gen_rsa() {
    p11_user --keypairgen --key-type rsa:2048 --id 01 --label rsa-key \
        --usage-sign --usage-decrypt >out
    cat out
    expect_contains out 'Public Key Object; RSA 2048 bits'
    p11 --token-label "$KYSO_TEST_LABEL" --read-object --type pubkey --id 01 -o rsa.der
    openssl pkey -pubin -inform DER -in rsa.der -out rsa.pem
    openssl pkey -pubin -in rsa.pem -text -noout | grep 'Public-Key: (2048 bit)' >/dev/null
}
check "RSA-2048 key pair generated, public key read back" gen_rsa

gen_ec() {
    p11_user --keypairgen --key-type EC:prime256v1 --id 02 --label ec-key --usage-sign >out
    cat out
    expect_contains out 'Public Key Object; EC'
    p11 --token-label "$KYSO_TEST_LABEL" --read-object --type pubkey --id 02 -o ec.der
    openssl pkey -pubin -inform DER -in ec.der -out ec.pem
    openssl pkey -pubin -in ec.pem -text -noout | grep 'NIST CURVE: P-256' >/dev/null
}
check "EC P-256 key pair generated, public key read back" gen_ec

list_objects() {
    p11_user -O >out
    cat out
    expect_contains out 'Private Key Object; RSA'
    expect_contains out 'Private Key Object; EC'
    expect_contains out 'label: +rsa-key'
    expect_contains out 'label: +ec-key'
}
check "pkcs11-tool -O --login lists both key pairs" list_objects

# ---- signatures ------------------------------------------------------------

sign_rsa_pkcs() {
    p11_user -s -m SHA256-RSA-PKCS --id 01 -i data -o sig.rsa
    openssl dgst -sha256 -verify rsa.pem -signature sig.rsa data
    p11_user --verify -m SHA256-RSA-PKCS --id 01 -i data --signature-file sig.rsa >out
    expect_contains out 'Signature is valid'
    # A wrong signature must be refused (by OpenSSL and through kyso).
    flip_byte sig.rsa 10
    if openssl dgst -sha256 -verify rsa.pem -signature sig.rsa data; then
        fail "openssl accepted a corrupted signature"
    fi
    if p11_user --verify -m SHA256-RSA-PKCS --id 01 -i data --signature-file sig.rsa >out 2>&1 &&
        grep -q 'Signature is valid' out; then
        fail "kyso accepted a corrupted signature"
    fi
}
check "SHA256-RSA-PKCS signature verifies with openssl (and a corrupted one does not)" sign_rsa_pkcs

sign_rsa_raw_pkcs() {
    # CKM_RSA_PKCS over a DigestInfo prepared by openssl.
    printf '3031300d060960864801650304020105000420%s' "$(openssl dgst -sha256 -binary data | xxd -p -c 64)" |
        xxd -r -p >digestinfo
    p11_user -s -m RSA-PKCS --id 01 -i digestinfo -o sig.raw
    openssl dgst -sha256 -verify rsa.pem -signature sig.raw data
}
check "RSA-PKCS signature of a DigestInfo verifies with openssl" sign_rsa_raw_pkcs

sign_rsa_pss() {
    p11_user -s -m SHA256-RSA-PKCS-PSS --id 01 -i data -o sig.pss
    openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 \
        -verify rsa.pem -signature sig.pss data
    p11_user --verify -m SHA256-RSA-PKCS-PSS --id 01 -i data --signature-file sig.pss >out
    expect_contains out 'Signature is valid'
}
check "SHA256-RSA-PKCS-PSS signature verifies with openssl" sign_rsa_pss

sign_rsa_pss_salt() {
    # Explicit, non-default PSS parameters (CKM_RSA_PKCS_PSS over a SHA-384 hash,
    # MGF1-SHA384, 20-byte salt) must reach the token intact.
    openssl dgst -sha384 -binary data >data.sha384
    p11_user -s -m RSA-PKCS-PSS --hash-algorithm SHA384 --mgf MGF1-SHA384 --salt-len 20 \
        --id 01 -i data.sha384 -o sig.pss384
    openssl dgst -sha384 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:20 \
        -sigopt rsa_mgf1_md:sha384 -verify rsa.pem -signature sig.pss384 data
}
check "RSA-PKCS-PSS (SHA-384, MGF1-SHA384, salt 20) verifies with openssl" sign_rsa_pss_salt

sign_ecdsa() {
    openssl dgst -sha256 -binary data >data.sha256
    p11_user -s -m ECDSA --id 02 -i data.sha256 --signature-format openssl -o sig.ec
    openssl dgst -sha256 -verify ec.pem -signature sig.ec data
    p11_user --verify -m ECDSA --id 02 -i data.sha256 --signature-format openssl \
        --signature-file sig.ec >out
    expect_contains out 'Signature is valid'
}
check "ECDSA P-256 signature verifies with openssl" sign_ecdsa

sign_eddsa() {
    p11_user --keypairgen --key-type EC:edwards25519 --id 05 --label ed-key >/dev/null
    # EdDSA is single-part only (SoftHSM2 refuses C_SignUpdate): a message
    # short enough for pkcs11-tool to use C_Sign.
    head -c 500 data >data.short
    p11_user -s -m EDDSA --id 05 -i data.short -o sig.ed
    # pkcs11-tool 0.23 writes an Ed25519 public key as PEM.
    p11 --token-label "$KYSO_TEST_LABEL" --read-object --type pubkey --id 05 -o ed.pub
    openssl pkey -pubin -in ed.pub -text -noout | grep 'ED25519' >/dev/null
    openssl pkeyutl -verify -pubin -inkey ed.pub -rawin -in data.short -sigfile sig.ed
}
check "EdDSA (Ed25519) key generated; signature verifies with openssl" sign_eddsa

derive_ecdh() {
    # ECDH1-DERIVE (CK_ECDH1_DERIVE_PARAMS carrying the peer's point) against an
    # OpenSSL key: both sides compute the same shared secret.
    p11_user --keypairgen --key-type EC:prime256v1 --id 06 --label ecdh-key --usage-derive >/dev/null
    p11 --token-label "$KYSO_TEST_LABEL" --read-object --type pubkey --id 06 -o ecdh.der
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out peer.pem
    openssl pkey -in peer.pem -pubout -outform DER -out peer.der
    p11_user --derive -m ECDH1-DERIVE --id 06 -i peer.der -o shared.kyso
    openssl pkeyutl -derive -inkey peer.pem -peerkey ecdh.der -peerform DER -out shared.ossl
    [ -s shared.ossl ] || fail "openssl derived nothing"
    cmp shared.kyso shared.ossl
}
check "ECDH1-DERIVE through kyso equals OpenSSL's shared secret" derive_ecdh

# ---- encryption / decryption -------------------------------------------------

printf 'kyso: message to decrypt through the broker' >msg

decrypt_rsa_pkcs() {
    openssl pkeyutl -encrypt -pubin -inkey rsa.pem -in msg -out msg.pkcs
    p11_user --decrypt -m RSA-PKCS --id 01 -i msg.pkcs -o msg.pkcs.out
    cmp msg msg.pkcs.out
}
check "RSA-PKCS: openssl-encrypted data decrypts through kyso" decrypt_rsa_pkcs

decrypt_rsa_oaep() {
    # SoftHSM2 2.6.1 supports OAEP with SHA-1 only (SHA-256 gives CKR_ARGUMENTS_BAD directly too).
    openssl pkeyutl -encrypt -pubin -inkey rsa.pem -pkeyopt rsa_padding_mode:oaep \
        -pkeyopt rsa_oaep_md:sha1 -pkeyopt rsa_mgf1_md:sha1 -in msg -out msg.oaep
    p11_user --decrypt -m RSA-PKCS-OAEP --hash-algorithm SHA-1 --mgf MGF1-SHA1 --id 01 \
        -i msg.oaep -o msg.oaep.out
    cmp msg msg.oaep.out
}
check "RSA-PKCS-OAEP: openssl-encrypted data decrypts through kyso" decrypt_rsa_oaep

aes_roundtrip() {
    p11_user --keygen --key-type AES:32 --id 03 --label aes-key >out
    cat out
    expect_contains out 'Secret Key Object; AES length 32'
    p11_user --encrypt -m AES-CBC-PAD --id 03 --iv "$IV" -i data -o data.aes
    # 3000 bytes padded to the next 16-byte block.
    [ "$(stat -c %s data.aes)" = 3008 ] || fail "ciphertext is $(stat -c %s data.aes) bytes, expected 3008"
    if cmp -s data data.aes; then fail "ciphertext equals plaintext"; fi
    p11_user --decrypt -m AES-CBC-PAD --id 03 --iv "$IV" -i data.aes -o data.aes.out
    cmp data data.aes.out
}
check "AES-256 key generated; AES-CBC-PAD encrypt/decrypt round trip" aes_roundtrip

aes_known_key() {
    # A known key imported through kyso: the ciphertext must be what OpenSSL computes.
    head -c 32 /dev/urandom >aes.key
    p11_user --write-object aes.key --type secrkey --key-type AES:32 --id 04 --label aes-known \
        --usage-decrypt >/dev/null
    p11_user --encrypt -m AES-CBC-PAD --id 04 --iv "$IV" -i data -o data.aes4
    openssl enc -aes-256-cbc -K "$(xxd -p -c 64 aes.key)" -iv "$IV" -in data -out data.aes4.ossl
    cmp data.aes4 data.aes4.ossl
    openssl enc -aes-256-cbc -K "$(xxd -p -c 64 aes.key)" -iv 0f0e0d0c0b0a09080706050403020100 \
        -in data -out data.aes4.iv2
    p11_user --decrypt -m AES-CBC-PAD --id 04 --iv 0f0e0d0c0b0a09080706050403020100 \
        -i data.aes4.iv2 -o data.aes4.out
    cmp data data.aes4.out
}
check "AES-CBC-PAD with a known key matches OpenSSL both ways (IV passed through)" aes_known_key

# ---- digests ---------------------------------------------------------------

digest() {
    local mech=$1 tool=$2
    p11 --token-label "$KYSO_TEST_LABEL" --hash -m "$mech" -i data -o "hash.$mech"
    local got want
    got=$(xxd -p -c 256 "hash.$mech")
    want=$($tool data | cut -d' ' -f1)
    echo "kyso: $got"
    echo "want: $want"
    [ "$got" = "$want" ]
}
check "pkcs11-tool --hash -m SHA256 equals sha256sum" digest SHA256 sha256sum
check "pkcs11-tool --hash -m SHA-1 equals sha1sum" digest SHA-1 sha1sum
check "pkcs11-tool --hash -m SHA512 equals sha512sum" digest SHA512 sha512sum

# ---- PIN change and back -----------------------------------------------------

NEW_PIN=7294061583

login_with() {
    t pkcs11-tool --module "$KYSO_MODULE" --token-label "$KYSO_TEST_LABEL" --login --pin "$1" -O
}

change_pin() {
    p11 --token-label "$KYSO_TEST_LABEL" --change-pin --pin "$KYSO_TEST_PIN" --new-pin "$NEW_PIN" >out
    cat out
    expect_contains out 'PIN successfully changed'
    login_with "$NEW_PIN" >/dev/null
    if login_with "$KYSO_TEST_PIN" >out 2>&1; then
        cat out
        fail "the old PIN still logs in after --change-pin"
    fi
    expect_contains out 'CKR_PIN_INCORRECT'
}
check "--change-pin: the new PIN logs in, the old one is refused" change_pin

change_pin_back() {
    p11 --token-label "$KYSO_TEST_LABEL" --change-pin --pin "$NEW_PIN" --new-pin "$KYSO_TEST_PIN" >out
    cat out
    expect_contains out 'PIN successfully changed'
    login_with "$KYSO_TEST_PIN" >/dev/null
    p11_user -s -m SHA256-RSA-PKCS --id 01 -i data -o sig.after
    openssl dgst -sha256 -verify rsa.pem -signature sig.after data
}
check "--change-pin back: the original PIN logs in and signs again" change_pin_back

wrong_pin() {
    if login_with 0000000000 >out 2>&1; then
        cat out
        fail "a wrong PIN logged in"
    fi
    cat out
    expect_contains out 'CKR_PIN_INCORRECT'
    # and the right one still works (one wrong try must not lock the token)
    login_with "$KYSO_TEST_PIN" >/dev/null
}
check "a wrong PIN is refused with CKR_PIN_INCORRECT" wrong_pin

finish
