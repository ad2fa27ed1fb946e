#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The systemd-units test: reads kysod.service, kysod.socket and the sysusers
# file the way systemd does, and fails on anything systemd would complain about.
#
# `systemd-analyze verify` works without systemd as PID 1, but it reports a
# misspelt directive, a bad value or a missing unit only as a warning and still
# exits 0: so every line it prints about our units fails the test. It also
# checks that ExecStart= is executable, so the service is verified with its
# ExecStart= pointing at the kysod of this build instead of @sbindir@/kysod.
#
# Usage: verify-units.sh BUILT-kysod.service kysod.socket kyso.sysusers BUILT-kysod
set -euo pipefail

if [ $# -ne 4 ]; then
        echo "usage: $0 kysod.service kysod.socket kyso.sysusers kysod-binary" >&2
        exit 2
fi
service=$(realpath "$1") socket=$(realpath "$2") sysusers=$(realpath "$3") kysod=$(realpath "$4")
# Never more exposed than this, in tenths (systemd-analyze security's exposure
# level: 0 best, 10 worst; kysod.service scores 1.2). Raise the bound only for a
# reason written into the unit.
max_exposure_tenths=15

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kyso-verify-units.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
units=$tmp/units
mkdir "$units"

# The unit as installed, but with the binary of this build.
sed -E "s|^ExecStart=[^ ]*/kysod( \|$)|ExecStart=$kysod\1|" "$service" >"$units/kysod.service"
if ! grep -q "^ExecStart=$kysod\( \|$\)" "$units/kysod.service"; then
        echo "FAIL: $service has no ExecStart=.../kysod line to point at $kysod" >&2
        exit 1
fi
cp "$socket" "$units/kysod.socket"

failed=0

echo "# systemd-analyze verify kysod.service kysod.socket"
rc=0
out=$(systemd-analyze verify --man=no --generators=no "$units/kysod.service" "$units/kysod.socket" 2>&1) || rc=$?
if [ $rc -ne 0 ]; then
        echo "$out"
        echo "FAIL: systemd-analyze verify exited with status $rc" >&2
        failed=1
        out=
fi
if [ -n "$out" ]; then
        echo "$out"
        # Complaints about units of other packages that ours only name (pcscd.socket,
        # multi-user.target, ...) are not ours to fix: fail only on our own.
        if grep -E -q "$units/|kysod\.(service|socket)" <<<"$out"; then
                echo "FAIL: systemd-analyze verify complains about kyso's units (above)" >&2
                failed=1
        fi
fi

echo "# systemd-analyze security --offline=true kysod.service"
if ! out=$(systemd-analyze security --offline=true --man=no --threshold=$max_exposure_tenths \
                "$units/kysod.service" 2>&1); then
        echo "$out" | grep -E '✗|Overall' || echo "$out"
        echo "FAIL: kysod.service is more exposed than $((max_exposure_tenths / 10)).$((max_exposure_tenths % 10)) (systemd-analyze security, above)" >&2
        failed=1
else
        echo "$out" | grep 'Overall'
fi

echo "# systemd-sysusers --dry-run $(basename "$sysusers")"
mkdir "$tmp/root"
if ! out=$(systemd-sysusers --dry-run --root="$tmp/root" "$sysusers" 2>&1); then
        echo "$out"
        echo "FAIL: systemd-sysusers rejects $sysusers" >&2
        failed=1
else
        echo "$out"
        for want in "Creating user 'kyso'" "Creating group 'kyso'" "Creating group 'kyso-admin'"; do
                if ! grep -q "$want" <<<"$out"; then
                        echo "FAIL: $sysusers: expected \"$want\"" >&2
                        failed=1
                fi
        done
fi

if [ $failed -eq 0 ]; then
        echo "ok: kysod.service, kysod.socket and $(basename "$sysusers") pass"
fi
exit $failed
