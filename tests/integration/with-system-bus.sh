#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Runs a command with a private D-Bus in the place of the system bus: the
# real system bus policy (/usr/share/dbus-1/system.conf) plus kyso's policy
# file, so that what the policy forbids is really forbidden. Stops the bus by
# its PID afterwards.
#
#   with-system-bus.sh COMMAND [ARGS...]
#
# The command sees DBUS_SYSTEM_BUS_ADDRESS (what sd-bus, busctl, dbus-monitor
# and kysoctl use for the system bus), KYSO_TEST_BUS=system (with-kysod.sh then
# starts kysod on it), and, to restart the bus, KYSO_TEST_BUS_CONF,
# KYSO_TEST_BUS_SOCKET and KYSO_TEST_BUS_PIDFILE (the current bus's PID).
set -euo pipefail

: "${KYSO_SOURCE_ROOT:?KYSO_SOURCE_ROOT must name the source tree}"
dir=$(mktemp -d /tmp/kyso-bus.XXXXXX)
# The bus drops to user messagebus, which must reach its socket.
chmod 0755 "$dir"
cleanup() {
    local rc=$?
    [ ! -s "$dir/bus.pid" ] || kill "$(cat "$dir/bus.pid")" 2>/dev/null || true
    rm -rf "$dir"
    exit $rc
}
trap cleanup EXIT

mkdir -p "$dir/system.d"
# Without the service user (sysusers.d makes it on a real system), its stanza would only draw a warning.
if getent passwd kyso >/dev/null; then
    cp "$KYSO_SOURCE_ROOT/data/org.kyso1.conf" "$dir/system.d/"
else
    sed '/<policy user="kyso">/,/<\/policy>/d' "$KYSO_SOURCE_ROOT/data/org.kyso1.conf" >"$dir/system.d/org.kyso1.conf"
fi
cat >"$dir/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <include>/usr/share/dbus-1/system.conf</include>
  <includedir>$dir/system.d</includedir>
</busconfig>
CONF
export KYSO_TEST_BUS_CONF="$dir/bus.conf" KYSO_TEST_BUS_SOCKET="$dir/system_bus_socket"
export KYSO_TEST_BUS_PIDFILE="$dir/bus.pid"
dbus-daemon --config-file="$KYSO_TEST_BUS_CONF" --address="unix:path=$KYSO_TEST_BUS_SOCKET" \
    --nopidfile --nosyslog --fork --print-pid=4 4>"$KYSO_TEST_BUS_PIDFILE"
export DBUS_SYSTEM_BUS_ADDRESS="unix:path=$KYSO_TEST_BUS_SOCKET" KYSO_TEST_BUS=system

"$@"
