#!/usr/bin/env bash
# Installs headless Firefox and its WebDriver for the console's browser tests
# (crates/server/tests/console_browser.rs), when they are missing: Debian's `firefox-esr` with
# apt-get, and geckodriver (not packaged in Debian) with `cargo install geckodriver --locked`
# into the project-local root `.tools/` (gitignored), reused when present. geckodriver is
# MPL-2.0: a test tool run as a separate process, never linked into our binary.
# Idempotent. Prints `GECKODRIVER=<path>` and `FIREFOX=<path>` on success so scripts/test.sh can
# export them; exits 0 without them when they cannot be installed (the Firefox runs of the
# browser tests then skip with a reason).
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS="$PWD/.tools"
find_driver() {
  if [ -x "$TOOLS/bin/geckodriver" ]; then echo "$TOOLS/bin/geckodriver"; else command -v geckodriver || true; fi
}
find_browser() { command -v firefox-esr || command -v firefox || true; }

if [ -z "$(find_browser)" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    echo "installing firefox-esr with apt-get" >&2
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      firefox-esr >&2 || echo "firefox-esr could not be installed" >&2
  else
    echo "apt-get not found: install Firefox yourself" >&2
  fi
fi

if [ -z "$(find_driver)" ]; then
  if command -v cargo >/dev/null 2>&1; then
    echo "installing geckodriver with cargo into $TOOLS" >&2
    # Its own target dir: the workspace's build cache stays as it is.
    CARGO_TARGET_DIR="$TOOLS/build" nice cargo install geckodriver --locked --root "$TOOLS" >&2 \
      || echo "geckodriver could not be installed" >&2
    rm -rf "$TOOLS/build"
  else
    echo "cargo not found: install geckodriver yourself" >&2
  fi
fi

driver="$(find_driver)"
browser="$(find_browser)"
if [ -n "$driver" ] && [ -n "$browser" ]; then
  echo "GECKODRIVER=$driver"
  echo "FIREFOX=$browser"
fi
