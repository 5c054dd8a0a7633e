#!/usr/bin/env bash
# Makes sure HAProxy (the Debian package `haproxy`) is installed, for the several-instances test
# (scripts/multi-instance.sh, the loadgen's --haproxy). Installs it with apt-get when missing;
# does nothing when it is already there. Prints HAPROXY=<path> when it is available.
# Safe to run repeatedly; never starts or configures a HAProxy service.
set -u

if ! command -v haproxy >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  # Another apt-get may hold the lock (shared CI machines): wait for it rather than fail.
  apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends haproxy >/dev/null 2>&1 \
    || { apt-get -o DPkg::Lock::Timeout=300 update >/dev/null 2>&1 \
         && apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends haproxy >/dev/null 2>&1; } \
    || true
  # The package starts its own service on some systems; the tests start theirs on free ports.
  if command -v service >/dev/null 2>&1; then service haproxy stop >/dev/null 2>&1 || true; fi
fi

if command -v haproxy >/dev/null 2>&1; then echo "HAPROXY=$(command -v haproxy)"; fi
