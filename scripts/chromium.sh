#!/usr/bin/env bash
# Installs headless Chromium and its WebDriver (Debian `chromium`, `chromium-driver`) for the
# console's browser tests (crates/server/tests/console_browser.rs), when they are missing.
# Idempotent: does nothing when both are on PATH. Prints `CHROMEDRIVER=<path>` on success so
# scripts/test.sh can export it; exits 0 without them when apt-get is unavailable (the tests
# then skip with a reason, or fail when CI=true).
set -euo pipefail

find_driver() { command -v chromedriver || true; }
find_browser() { command -v chromium || command -v chromium-browser || true; }

if [ -z "$(find_driver)" ] || [ -z "$(find_browser)" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    echo "installing chromium and chromium-driver with apt-get" >&2
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      chromium chromium-driver >&2
  else
    echo "apt-get not found: install chromium and chromedriver yourself" >&2
  fi
fi

driver="$(find_driver)"
browser="$(find_browser)"
if [ -n "$driver" ] && [ -n "$browser" ]; then
  echo "CHROMEDRIVER=$driver"
  echo "CHROMIUM=$browser"
fi
