#!/usr/bin/env bash
# Runs every test of the workspace: unit, property, adapter-against-fake, end-to-end, and the
# store/Redis tests against the local PostgreSQL and Redis (started here if they stopped).
# Usage: ./scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

# PostgreSQL, Redis, moto (S3), HAProxy, and headless Chromium with chromedriver and Firefox
# with geckodriver for the console's browser tests: use what the caller exported, else the
# local ones (started or installed here when missing).
while IFS='=' read -r k v; do
  [ -n "$k" ] || continue
  if [ -z "${!k:-}" ]; then export "$k=$v"; fi
done < <(bash scripts/services.sh; bash scripts/haproxy.sh; bash scripts/chromium.sh; bash scripts/firefox.sh)
echo "DATABASE_URL=${DATABASE_URL:-<unset: PostgreSQL tests skipped>}"
echo "REDIS_URL=${REDIS_URL:-<unset: Redis tests skipped>}"
echo "S3_ENDPOINT=${S3_ENDPOINT:-<unset: S3 recordings tests skipped>}"
echo "HAPROXY=${HAPROXY:-<unset: several-instances run skipped>}"
if [ "${CI:-}" = "true" ] && { [ -z "${DATABASE_URL:-}" ] || [ -z "${REDIS_URL:-}" ] || [ -z "${S3_ENDPOINT:-}" ]; }; then
  echo "CI needs PostgreSQL, Redis and an S3-compatible server; one of them could not be started" >&2
  exit 1
fi
if [ "${CI:-}" = "true" ] && [ -z "${HAPROXY:-}" ]; then
  echo "CI needs HAProxy (scripts/haproxy.sh could not install it)" >&2
  exit 1
fi

echo "CHROMEDRIVER=${CHROMEDRIVER:-<unset: console browser tests skipped in Chromium>}"
echo "GECKODRIVER=${GECKODRIVER:-<unset: console browser tests skipped in Firefox>}"
if [ "${CI:-}" = "true" ] && { [ -z "${CHROMEDRIVER:-}" ] || [ -z "${GECKODRIVER:-}" ]; }; then
  echo "CI runs the console's browser tests in Chromium and Firefox; one could not be installed" >&2
  exit 1
fi

# Deployment files (deploy/): Kubernetes schemas, Compose Specification, Dockerfile shape.
bash scripts/lint-deploy.sh

cargo test --workspace --locked "$@"

# OpenTelemetry export (the `otel` feature, off in the default build): its unit tests, and a
# whole call exported to the testkit's fake OTLP/HTTP collector.
cargo test --locked -p switchboard-server --features otel --lib --test otel_export -- telemetry:: a_calls_span

# Several instances behind HAProxy, one restarted mid-run: 20 calls, debug build, no call may
# fail (scripts/multi-instance.sh runs the few-hundred-call version by default).
if [ -n "${HAPROXY:-}" ] && [ -n "${DATABASE_URL:-}" ] && [ -n "${REDIS_URL:-}" ]; then
  MULTI_PREBUILT=1 MULTI_CALLS=20 MULTI_RAMP_S=10 MULTI_DURATION_S=45 MULTI_RESTART_AFTER_S=6 \
    bash scripts/multi-instance.sh
fi
