#!/bin/bash
# Installs the Debian 12 packages kyso needs to build, test and run the demo.
# Does nothing (and needs no network) when they are all installed already.
# Usage: scripts/install-deps.sh
set -euo pipefail

packages=(
        # build
        gcc clang meson ninja-build pkg-config
        libsystemd-dev libp11-kit-dev libsqlite3-dev libssl-dev libusb-1.0-0-dev libudev-dev
        libinih-dev libjson-c-dev libnss3-dev libpcsclite-dev libcacard-dev libumockdev-dev
        libcmocka-dev
        # run and test: real PKCS#11 modules, tokens and clients
        p11-kit softhsm2 opensc opensc-pkcs11 pcscd vsmartcard-vpcd
        openssl libengine-pkcs11-openssl gnutls-bin libnss3-tools
        libpam-p11 pamtester
        dbus dbus-daemon systemd umockdev faketime valgrind
        # the scripts and tests (xxd, python3, sqlite3), man page checks (groff)
        python3 xxd sqlite3 groff-base
)

missing=()
for p in "${packages[@]}"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
        [ "$status" = installed ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
        exit 0
fi

echo "Installing ${#missing[@]} Debian package(s): ${missing[*]}" >&2

sudo=()
if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null; then
                echo "error: these packages are missing and sudo is not available; install them as root:" >&2
                echo "  apt-get install ${missing[*]}" >&2
                exit 1
        fi
        sudo=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
