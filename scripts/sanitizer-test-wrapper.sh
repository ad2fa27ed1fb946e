#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# meson's exe_wrapper for the "asan" and "tsan" test setups (root meson.build):
#   sanitizer-test-wrapper.sh TEST-COMMAND [ARGS...]
#
# In a sanitized build the daemon, the unit tests and the C integration test programs are
# instrumented, and the C programs load the instrumented kyso-pkcs11.so. The shell integration tests
# instead load the module into real clients (pkcs11-tool, p11tool, NSS, OpenSSL, p11-kit), which are
# not instrumented and cannot load a sanitized module without the sanitizer runtime preloaded. Tried
# and rejected: preloading ASan's runtime everywhere ("incompatible ASan runtimes" in the instrumented
# programs, leak reports from bash and python), or only into the clients (it finds a use-after-free in
# OpenSC 0.23's pkcs11-tool reading an EC public key, and p11-kit's destructor deadlocks on glibc's
# locale lock at exit). So with KYSO_CLIENT_MODULE set (to kyso-pkcs11.so of an ordinary build), the
# shell tests use that module with the sanitized daemon; without it they run as they are.
#
# SoftHSM2 is C++ and loaded with dlopen: ASan's __cxa_throw interceptor then finds no real
# __cxa_throw and aborts at SoftHSM2's first (internal, caught) exception. Preloading libstdc++
# (harmless elsewhere) gives the interceptor its target.
set -euo pipefail

case "${1:-}" in
*/with-kysod.sh) ;;
*.sh)
        if [ -n "${KYSO_CLIENT_MODULE:-}" ]; then
                [ -f "$KYSO_CLIENT_MODULE" ] || { echo "KYSO_CLIENT_MODULE: no $KYSO_CLIENT_MODULE" >&2; exit 1; }
                export KYSO_MODULE=$KYSO_CLIENT_MODULE
        fi
        ;;
esac

libstdcxx=libstdc++.so.6
export LD_PRELOAD=$libstdcxx${LD_PRELOAD:+:$LD_PRELOAD}
exec "$@"
