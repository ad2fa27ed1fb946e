#!/bin/bash
# Installs what kyso needs, builds it and runs every test suite (unit,
# integration, fuzz corpora) with meson. Arguments go to "meson test", e.g.
#   scripts/test.sh --suite unit
#   scripts/test.sh test-wire -v
# Environment: BUILD_DIR (default: build), MESON_SETUP_ARGS (options for a new
# build directory, e.g. "-Dwerror=true"), KYSO_NO_DEPS=1 skips installing packages.
# Exits with meson test's status.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD_DIR=${BUILD_DIR:-build}

if [ "${KYSO_NO_DEPS:-0}" != 1 ]; then
        "$ROOT/scripts/install-deps.sh"
fi

if [ ! -f "$BUILD_DIR/build.ninja" ]; then
        # shellcheck disable=SC2086 # MESON_SETUP_ARGS is a list of options
        meson setup "$BUILD_DIR" ${MESON_SETUP_ARGS:-}
fi
meson compile -C "$BUILD_DIR"
exec meson test -C "$BUILD_DIR" --print-errorlogs "$@"
