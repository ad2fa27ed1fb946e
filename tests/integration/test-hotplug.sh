#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# USB hotplug under umockdev: a simulated Feitian ePass2003 (096e:0807, in
# udev/tokens.list) plugged into and pulled out of a umockdev testbed that
# kysod runs in. kysod's libusb hotplug callback must log the device's
# identity and publish it on D-Bus (UsbDeviceAdded/UsbDeviceRemoved and the
# Manager's UsbDevices), seen here through `kysoctl monitor --json`; a device
# announced twice is one device; 100 fast plug/pull cycles leave kysod with
# the right devices and no more file descriptors than before (CI's valgrind
# run checks memory).
#
# The device has no PKCS#11 token behind it (umockdev simulates the USB side
# only): the token side of hotplug, TokenInserted and TokenRemoved from the
# backends' slot events, is in test-custody.sh (mock backend) and
# test-smartcard.sh (pcscd + OpenSC + a virtual card).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)

if [ "${1:-}" != --inner ]; then
    if [ "${KYSO_TEST_BUS:-}" != system ]; then
        rc=0
        "$here/with-system-bus.sh" "$0" "$@" || rc=$?
        exit $rc
    fi
    dir=$(mktemp -d /tmp/kyso-usb.XXXXXX)
    trap 'rm -rf "$dir"' EXIT
    mkfifo "$dir/cmd" "$dir/ack"
    # An ASan kysod under umockdev's preload: the preload comes first, which ASan would refuse.
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
    export KYSO_USB_CMD="$dir/cmd" KYSO_USB_ACK="$dir/ack"
    rc=0
    umockdev-wrapper "$KYSO_BUILD_ROOT/tests/integration/usb-driver" "$dir/cmd" "$dir/ack" -- \
        "$here/with-kysod.sh" --config "$here/unknown-allow.conf" -- "$0" --inner || rc=$?
    exit $rc
fi

. "$here/lib.sh"

exec 8>"$KYSO_USB_CMD" 9<"$KYSO_USB_ACK"
usb() { # add|remove N: the driver plugs or pulls device N and says ok
    local a
    echo "$1 $2" >&8
    read -r -t 10 a <&9 || a="(no answer)"
    [ "$a" = ok ] || fail "usb-driver: $1 $2: $a"
}

events="$WORK/events.jsonl"
"$KYSOCTL" --json monitor >"$events" 2>"$WORK/monitor.err" &
monitor_pid=$!
trap 'kill $monitor_pid 2>/dev/null || true' EXIT

# count EVENT [SERIAL]: how many events of the kind the monitor printed.
count() {
    python3 - "$events" "$1" "${2:-}" <<'PY'
import json, sys
n = 0
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e["event"] == sys.argv[2] and (not sys.argv[3] or e.get("serial") == sys.argv[3]):
        n += 1
print(n)
PY
}

wait_count() { # EVENT SERIAL N: until the monitor printed N such events (10 s)
    local i
    for i in $(seq 1 100); do
        [ "$(count "$1" "$2")" -ge "$3" ] && return 0
        sleep 0.1
    done
    echo "$(count "$1" "$2") $1 events for '$2', expected $3; the monitor printed:" >&2
    tail -n 20 "$events" >&2
    return 1
}

usb_devices() { # the Manager's UsbDevices, as busctl prints it
    busctl --system get-property org.kyso1 /org/kyso1 org.kyso1.Manager UsbDevices
}

check "kysod is on the bus" wait_bus_name
sleep 0.3 # the monitor's match rules in place

plug() {
    usb add 1
    wait_count UsbDeviceAdded KYSO0001 1
    python3 - "$events" <<'PY'
import json, sys
e = [json.loads(l) for l in open(sys.argv[1]) if '"UsbDeviceAdded"' in l][0]
assert e["vendor"] == "096e" and e["product"] == "0807", e
assert "ePass2003" in e["name"], e
assert e["path"] == "1-1", e
PY
    grep -q "USB token 096e:0807 .*ePass2003.*serial KYSO0001, at 1-1 plugged in" "$KYSO_TEST_DIR/kysod.log" ||
        fail "no log line with the device's identity"
    usb_devices | tee /dev/stderr | grep -q '"KYSO0001" "1-1"'
}
check "a simulated ePass2003 plugged in: log line with vendor, product, serial and bus path; UsbDeviceAdded; UsbDevices" plug

unplug() {
    usb remove 1
    wait_count UsbDeviceRemoved KYSO0001 1
    grep -q "USB token 096e:0807 .*serial KYSO0001, at 1-1 pulled out" "$KYSO_TEST_DIR/kysod.log" ||
        fail "no log line for the removal"
    [ "$(usb_devices)" = "a(qqsss) 0" ] || { usb_devices; fail "the device is still listed"; }
}
check "pulled out: log line, UsbDeviceRemoved, UsbDevices empty" unplug

twice() {
    usb add 2
    wait_count UsbDeviceAdded KYSO0002 1
    # The same device announced again (a repeated "add" uevent): still one device, no second signal.
    usb readd 2
    usb readd 2
    sleep 1
    [ "$(count UsbDeviceAdded KYSO0002)" = 1 ] || fail "a repeated announcement made another UsbDeviceAdded"
    usb_devices | grep -q '^a(qqsss) 1 ' || { usb_devices; fail "not exactly one device"; }
    # Pulled and plugged again: a new arrival, a new signal.
    usb remove 2
    usb add 2
    wait_count UsbDeviceAdded KYSO0002 2
    usb_devices | grep -q '^a(qqsss) 1 ' || { usb_devices; fail "not exactly one device"; }
    usb remove 2
    wait_count UsbDeviceRemoved KYSO0002 2
}
check "a device seen again is one device, with one signal per arrival" twice

cycles() {
    local pid fds_before fds_after i
    pid=$(cat "$KYSO_TEST_DIR/kysod.pid")
    fds_before=$(ls /proc/"$pid"/fd | wc -l)
    for i in $(seq 1 100); do
        usb add 3
        usb remove 3
    done
    usb add 4
    wait_count UsbDeviceAdded KYSO0004 1
    # Every arrival of device 3 was followed by its removal: none may be left.
    for i in $(seq 1 50); do
        usb_devices | grep -q '^a(qqsss) 1 .*"KYSO0004"' && break
        sleep 0.1
    done
    usb_devices | tee /dev/stderr | grep -q '^a(qqsss) 1 .*"KYSO0004"' || fail "wrong final state"
    echo "added $(count UsbDeviceAdded KYSO0003), removed $(count UsbDeviceRemoved KYSO0003)"
    [ "$(count UsbDeviceAdded KYSO0003)" = "$(count UsbDeviceRemoved KYSO0003)" ] ||
        fail "arrivals and removals of device 3 do not pair up"
    fds_after=$(ls /proc/"$pid"/fd | wc -l)
    echo "kysod's file descriptors: $fds_before before, $fds_after after"
    [ "$fds_after" -le $((fds_before + 2)) ] || fail "kysod holds more file descriptors than before"
    usb remove 4
}
check "100 fast plug/pull cycles: the right final state, no descriptor left behind" cycles

monitor_text() {
    "$KYSOCTL" monitor >"$WORK/monitor.txt" 2>/dev/null &
    local m=$!
    sleep 0.5
    usb add 5
    sleep 1
    kill $m
    wait $m 2>/dev/null || true
    cat "$WORK/monitor.txt"
    grep -q "UsbDeviceAdded vendor=096e product=0807 name=.*ePass2003.* serial=KYSO0005 path=1-5" "$WORK/monitor.txt"
    usb remove 5
}
check "kysoctl monitor prints human lines" monitor_text

finish
