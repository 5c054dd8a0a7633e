#!/usr/bin/env bash
# Several instances behind a real load balancer, with one restarted mid-run (a rolling deploy):
# two engine instances on one PostgreSQL database and one Redis, HAProxy in front of them
# (config generated into a temp dir, 127.0.0.1 ports; scripts/haproxy.sh installs it), the
# provider fakes and the fake Twilio in the loadgen, and a loadgen series across them through
# HAProxy. Instance 0 gets SIGTERM at MULTI_RESTART_AFTER_S, drains its live calls, exits and is
# started again on its port. Fails (exit status 2) if any call failed.
#
# Usage: scripts/multi-instance.sh [extra loadgen args]
# Environment: MULTI_CALLS (default 200), MULTI_RAMP_S (30), MULTI_DURATION_S (60),
#   MULTI_RESTART_AFTER_S (15), MULTI_INSTANCES (2), MULTI_PROFILE (debug | release; default
#   debug), MULTI_REPORT (where the JSON report goes; default a temp file),
#   MULTI_PREBUILT (set: use the binaries in target/ without building),
#   DATABASE_URL / REDIS_URL (default: the local services of scripts/services.sh).
# Each run migrates and uses a fresh PostgreSQL database (dropped at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

while IFS='=' read -r k v; do
  [ -n "$k" ] || continue
  if [ -z "${!k:-}" ]; then export "$k=$v"; fi
done < <(bash scripts/services.sh; bash scripts/haproxy.sh)
for need in DATABASE_URL REDIS_URL HAPROXY; do
  if [ -z "${!need:-}" ]; then
    echo "multi-instance: $need is not available (PostgreSQL, Redis and HAProxy are needed)" >&2
    exit 1
  fi
done
case "$DATABASE_URL" in
  postgres://*|postgresql://*) ;;
  *) echo "multi-instance: DATABASE_URL must be PostgreSQL (the instances share it)" >&2; exit 1 ;;
esac

profile="${MULTI_PROFILE:-debug}"
build_flags=()
[ "$profile" = release ] && build_flags=(--release)
# MULTI_PREBUILT=1: use the binaries already in target/ (scripts/test.sh: `cargo test
# --workspace` built both with the workspace's features; a `cargo build -p` here would select
# other features and rebuild much of the dependency tree).
if [ -z "${MULTI_PREBUILT:-}" ]; then
  nice -n 10 cargo build "${build_flags[@]}" -p switchboard -p switchboard-loadgen >&2
fi

# A database of its own, so runs never see each other's numbers and assistants.
db="switchboard_multi_$$"
base="${DATABASE_URL%/*}"
psql "$DATABASE_URL" -qc "CREATE DATABASE $db" >/dev/null
trap 'psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true' EXIT

report="${MULTI_REPORT:-$(mktemp -t switchboard-multi-XXXXXX.json)}"
echo "uptime: $(uptime)" >&2
set +e
nice -n 5 "target/$profile/switchboard-loadgen" \
  --spawn-engine "target/$profile/switchboard" --spawn-fakes \
  --instances "${MULTI_INSTANCES:-2}" --haproxy "$HAPROXY" \
  --engine-database-url "$base/$db" --database-url "$base/$db" --engine-redis-url "$REDIS_URL" \
  --calls "${MULTI_CALLS:-200}" --ramp-seconds "${MULTI_RAMP_S:-30}" \
  --duration-seconds "${MULTI_DURATION_S:-60}" \
  --restart-after-s "${MULTI_RESTART_AFTER_S:-15}" \
  --report "$report" --quiet "$@"
status=$?
set -e
echo "report: $report" >&2
if [ "$status" -ne 0 ]; then
  echo "multi-instance: FAILED (loadgen exit status $status: a call failed, or the run could not start)" >&2
  exit "$status"
fi
echo "multi-instance: every call completed across the restart" >&2
