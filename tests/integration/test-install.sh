#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# `meson install` of this build into a DESTDIR puts kyso-pkcs11.so in p11-kit's
# module directory, kyso.module in p11-kit's module config directory, the
# kysod.service unit (Type=notify) and the man pages where they belong. Then
# the installed module, registered through p11-kit's per-user configuration
# (p11-kit ignores user configuration for root, so those clients run as
# nobody), shows up in `p11-kit list-modules` with the daemon's token, and a
# p11-kit-proxy application (pkcs11-tool on p11-kit-proxy.so, p11tool on its
# default p11-kit module list) sees the token through kyso.
[ -n "${KYSO_SOCKET:-}" ] || exec "$(dirname "$0")/with-kysod.sh" "$0" "$@"
set -euo pipefail
. "$(dirname "$0")/lib.sh"

: "${KYSO_BUILD_ROOT:?KYSO_BUILD_ROOT must name the meson build directory}"
cd "$WORK"
DESTDIR=$WORK/destdir

# Where things must go: the build's options, or p11-kit's own directories.
meson introspect "$KYSO_BUILD_ROOT" --buildoptions >options.json
opt() {
    python3 -c 'import json,sys; o={x["name"]: x["value"] for x in json.load(open(sys.argv[1]))}; print(o.get(sys.argv[2], ""))' \
        options.json "$1"
}
PREFIX=$(opt prefix)
abs() { case "$1" in /*) echo "$1" ;; *) echo "$PREFIX/$1" ;; esac; }
MODULE_DIR=$(opt p11_module_path)
[ -n "$MODULE_DIR" ] || MODULE_DIR=$(pkg-config --variable p11_module_path p11-kit-1)
CONFIG_DIR=$(opt p11_module_configs)
[ -n "$CONFIG_DIR" ] || CONFIG_DIR=$(pkg-config --variable p11_module_configs p11-kit-1)
UNIT_DIR=$(opt systemd_unit_dir)
[ -n "$UNIT_DIR" ] || UNIT_DIR=$PREFIX/lib/systemd/system
SBINDIR=$(abs "$(opt sbindir)")
MANDIR=$(abs "$(opt mandir)")
P11_KIT_PROXY=
for p in /usr/lib/x86_64-linux-gnu/p11-kit-proxy.so /usr/lib/*/p11-kit-proxy.so; do
    [ -f "$p" ] && { P11_KIT_PROXY=$p; break; }
done
echo "# prefix $PREFIX; p11-kit modules $MODULE_DIR, configs $CONFIG_DIR; units $UNIT_DIR"

meson_install() {
    t meson install -C "$KYSO_BUILD_ROOT" --destdir "$DESTDIR" --no-rebuild --quiet
    [ -d "$DESTDIR" ] || fail "nothing was installed"
    # Every file meson installed went into DESTDIR.
    grep -v '^#' "$KYSO_BUILD_ROOT/meson-logs/install-log.txt" >installed
    cat installed
    if grep -v -e "^$DESTDIR/" -e "^$DESTDIR\$" installed; then fail "files installed outside DESTDIR (above)"; fi
}
check "meson install --destdir works on this build" meson_install

module_installed() {
    local so=$DESTDIR$MODULE_DIR/kyso-pkcs11.so
    [ -f "$so" ] || fail "no $so"
    # The installed module is the one that was built (install strips nothing it needs).
    nm -D --defined-only "$so" | grep ' T C_GetFunctionList$' >/dev/null || fail "C_GetFunctionList not exported"
    nm -D --defined-only "$so" | grep ' T C_GetInterface$' >/dev/null || fail "C_GetInterface not exported"
    # Only the PKCS#11 entry points are exported.
    nm -D --defined-only "$so" | awk '$2 == "T" {print $3}' | grep -v '^C_' && fail "unexpected exported symbols (above)"
    return 0
}
check "kyso-pkcs11.so is in p11-kit's module directory ($MODULE_DIR), exporting only C_*" module_installed

module_config() {
    local f=$DESTDIR$CONFIG_DIR/kyso.module module
    [ -f "$f" ] || fail "no $f"
    cat "$f"
    module=$(sed -n 's/^module:[[:space:]]*//p' "$f")
    case "$module" in
        /*) [ "$module" = "$MODULE_DIR/kyso-pkcs11.so" ] || fail "module: $module is not where the module is installed" ;;
        kyso-pkcs11.so) [ "$MODULE_DIR" = "$(pkg-config --variable p11_module_path p11-kit-1)" ] ||
            fail "a bare module name, but the module is not in p11-kit's module directory" ;;
        *) fail "unexpected module: line '$module'" ;;
    esac
}
check "kyso.module is in p11-kit's module config directory ($CONFIG_DIR) and names the module" module_config

unit_installed() {
    local f=$DESTDIR$UNIT_DIR/kysod.service exec
    [ -f "$f" ] || fail "no $f"
    grep -Eq '^Type=notify$' "$f" || fail "not Type=notify"
    exec=$(sed -n 's/^ExecStart=[-@:+!]*\([^ ]*\).*/\1/p' "$f")
    echo "ExecStart: $exec"
    [ "$exec" = "$SBINDIR/kysod" ] || fail "ExecStart runs $exec, kysod is installed as $SBINDIR/kysod"
    [ -x "$DESTDIR$SBINDIR/kysod" ] || fail "no $DESTDIR$SBINDIR/kysod"
    grep -Eq '^WantedBy=' "$f" || fail "no [Install] WantedBy="
}
check "kysod.service (Type=notify) is in $UNIT_DIR and starts the installed kysod" unit_installed

man_pages() {
    local page
    for page in man8/kysod.8 man5/kysod.conf.5 man8/kyso-pkcs11.8 man1/kysoctl.1; do
        [ -f "$DESTDIR$MANDIR/$page" ] || [ -f "$DESTDIR$MANDIR/$page.gz" ] || fail "no $MANDIR/$page"
        [ -f "$DESTDIR$MANDIR/$page" ] || continue
        # Renders without groff warnings.
        LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$DESTDIR$MANDIR/$page" 2>warnings
        if [ -s warnings ]; then cat warnings; fail "$page: groff warnings"; fi
    done
    echo "all four pages present"
}
check "man pages kysod(8), kysod.conf(5), kyso-pkcs11(8), kysoctl(1) are installed and render cleanly" man_pages

dbus_files() {
    local datadir policy xml
    datadir=$(abs "$(opt datadir)")
    policy=$DESTDIR$datadir/dbus-1/system.d/org.kyso1.conf
    xml=$DESTDIR$datadir/dbus-1/interfaces/org.kyso1.xml
    [ -f "$policy" ] || fail "no $policy"
    [ -f "$xml" ] || fail "no $xml"
    # Both parse as XML; the policy lets only root (and the service user) own the name.
    python3 - "$policy" "$xml" <<'PY'
import sys, xml.etree.ElementTree as ET
policy = ET.parse(sys.argv[1]).getroot()
owners = [p.get("user") for p in policy.iter("policy") for a in p.iter("allow") if a.get("own") == "org.kyso1"]
assert "root" in owners, owners
assert all(p.get("context") != "default" for p in policy.iter("policy") for a in p.iter("allow") if a.get("own")), \
    "the default context may own org.kyso1"
node = ET.parse(sys.argv[2]).getroot()
names = {i.get("name") for i in node.iter("interface")}
assert names == {"org.kyso1.Manager", "org.kyso1.Token"}, names
PY
}
check "the D-Bus policy (system.d/org.kyso1.conf) and introspection (interfaces/org.kyso1.xml) are installed" dbus_files

# ---- p11-kit sees kyso -------------------------------------------------------

# A user's p11-kit configuration registering the installed module, as the shipped
# kyso.module does, but with the DESTDIR path. p11-kit skips user configuration
# for root, so the p11-kit clients below run as nobody. They get an empty SoftHSM2
# store: SoftHSM2 is registered with p11-kit on this machine, and must not show
# the daemon's token directly.
USER_HOME=$WORK/home
mkdir -p "$USER_HOME/.config/pkcs11/modules" "$WORK/empty-tokens"
printf 'directories.tokendir = %s/empty-tokens/\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$WORK" >"$WORK/empty-softhsm2.conf"

as_user() {
    t setpriv --reuid=nobody --regid=nogroup --clear-groups \
        env HOME="$USER_HOME" SOFTHSM2_CONF="$WORK/empty-softhsm2.conf" KYSO_SOCKET="$KYSO_SOCKET" "$@"
}

user_config() {
    local shipped=$DESTDIR$CONFIG_DIR/kyso.module
    [ -f "$shipped" ] || fail "no installed kyso.module"
    sed "s|^module:.*|module: $DESTDIR$MODULE_DIR/kyso-pkcs11.so|" "$shipped" \
        >"$USER_HOME/.config/pkcs11/modules/kyso.module"
    chmod -R a+rX "$WORK"
    cat "$USER_HOME/.config/pkcs11/modules/kyso.module"
}
check "the installed kyso.module, pointed at the DESTDIR module, as a p11-kit user config" user_config

list_modules() {
    as_user p11-kit list-modules >out 2>&1 || { cat out; return 1; }
    cat out
    # The kyso module's block, up to the next module.
    awk '/^[^ ]/ {inside = ($1 == "kyso:")} inside' out >kyso-block
    [ -s kyso-block ] || fail "kyso is not among p11-kit's modules"
    expect_contains kyso-block "^kyso: $DESTDIR$MODULE_DIR/kyso-pkcs11.so"
    expect_contains kyso-block "^    token: $KYSO_TEST_LABEL\$"
}
check "p11-kit list-modules shows kyso with the token '$KYSO_TEST_LABEL'" list_modules

proxy() {
    [ -n "$P11_KIT_PROXY" ] || fail "p11-kit-proxy.so not found"
    as_user pkcs11-tool --module "$P11_KIT_PROXY" -L >out 2>&1 || { cat out; return 1; }
    cat out
    expect_contains out "token label +: $KYSO_TEST_LABEL\$"
}
check "pkcs11-tool on p11-kit-proxy.so lists kyso's token" proxy

proxy_control() {
    # Without the kyso registration the token is not there: the listing above came through kyso.
    mv "$USER_HOME/.config/pkcs11/modules/kyso.module" "$WORK/kyso.module.off"
    local rc=0
    as_user pkcs11-tool --module "$P11_KIT_PROXY" -L >out 2>&1 || rc=$?
    mv "$WORK/kyso.module.off" "$USER_HOME/.config/pkcs11/modules/kyso.module"
    cat out
    if grep -Eq "token label +: $KYSO_TEST_LABEL\$" out; then
        fail "the token is visible without kyso: the check above proves nothing"
    fi
}
check "control: without kyso.module the proxy does not see the token" proxy_control

gnutls_default() {
    # GnuTLS loads p11-kit's module list when no provider is given.
    as_user p11tool --list-tokens >out 2>&1 || { cat out; return 1; }
    cat out
    expect_contains out "Label: $KYSO_TEST_LABEL\$"
}
check "p11tool (GnuTLS, p11-kit's modules by default) lists kyso's token" gnutls_default

proxy_digest() {
    # An operation through the proxy, not only a listing (nobody writes to its own directory).
    mkdir -p "$WORK/userout"
    chmod 0777 "$WORK/userout"
    head -c 1000 /dev/urandom >data
    chmod a+r data
    as_user pkcs11-tool --module "$P11_KIT_PROXY" --token-label "$KYSO_TEST_LABEL" --hash -m SHA256 \
        -i "$WORK/data" -o "$WORK/userout/hash"
    [ "$(xxd -p -c 64 userout/hash)" = "$(sha256sum data | cut -d' ' -f1)" ] || fail "wrong SHA-256"
}
check "a SHA-256 digest through p11-kit-proxy and kyso equals sha256sum" proxy_digest

finish
