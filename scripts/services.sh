#!/usr/bin/env bash
# Makes sure the local PostgreSQL (127.0.0.1:5432, trust auth, database `test`), Redis
# (127.0.0.1:6379) and S3-compatible server (moto, 127.0.0.1:5050, for the recordings storage
# tests) that the integration tests use are running, starting them if they stopped.
# Prints the URLs to export. Safe to run repeatedly; never touches anything but these three.
# moto: `pip install 'moto[server]'`; it keeps its buckets in memory and checks no credentials.
set -u

pg_up() { (echo > /dev/tcp/127.0.0.1/5432) >/dev/null 2>&1; }
redis_up() { (echo > /dev/tcp/127.0.0.1/6379) >/dev/null 2>&1; }
s3_up() { (echo > /dev/tcp/127.0.0.1/5050) >/dev/null 2>&1; }

if ! pg_up && command -v pg_ctlcluster >/dev/null 2>&1; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start >/dev/null 2>&1 || true
  for _ in $(seq 1 30); do pg_up && break; sleep 0.5; done
fi
if ! redis_up && command -v redis-server >/dev/null 2>&1; then
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null 2>&1 || true
  for _ in $(seq 1 30); do redis_up && break; sleep 0.5; done
fi

if ! s3_up && command -v moto_server >/dev/null 2>&1; then
  mkdir -p /var/log/moto 2>/dev/null || true
  nohup moto_server -H 127.0.0.1 -p 5050 >/var/log/moto/ci.log 2>&1 < /dev/null &
  for _ in $(seq 1 60); do s3_up && break; sleep 0.5; done
fi

if pg_up; then echo "DATABASE_URL=postgres://postgres@127.0.0.1:5432/test"; fi
if redis_up; then echo "REDIS_URL=redis://127.0.0.1:6379"; fi
if s3_up; then echo "S3_ENDPOINT=http://127.0.0.1:5050"; fi
