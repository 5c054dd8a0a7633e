#!/usr/bin/env bash
# A load run with the database cut mid-run (docs/PERFORMANCE.md, "The database away").
#
#   scripts/outage-run.sh ENGINE LOADGEN [CALLS] [CUT_AT_S] [CUT_FOR_S]
#
# ENGINE and LOADGEN are release binaries (`cargo build --release -p switchboard
# -p switchboard-loadgen`). Runs from the repository root against the local PostgreSQL
# (127.0.0.1:5432, trust auth): a fresh database `lg_cut_<pid>` reached through
# scripts/cut-proxy.py on port 6543, which closes every connection and refuses new ones from
# CUT_AT_S (default 20) for CUT_FOR_S (default 25) seconds after the loadgen starts. Prints the
# loadgen's verdict, its errors by kind, the calls by status, the rows stored and the
# call-data writer's outage summary; the report, the details and the loadgen's output (which
# names the engine's log) stay in $OUT (default /tmp/outage-<pid>). The database is dropped at
# the end.
set -euo pipefail

engine=${1:?engine binary}
loadgen=${2:?loadgen binary}
calls=${3:-500}
cut_at=${4:-20}
cut_for=${5:-25}
port=${PROXY_PORT:-6543}
db="lg_cut_$$"
out=${OUT:-/tmp/outage-$$}
mkdir -p "$out"
psql_q() { psql -h 127.0.0.1 -U postgres -d "$db" -tAc "$1"; }

createdb -h 127.0.0.1 -U postgres "$db"
python3 scripts/cut-proxy.py "$port" 5432 &
proxy=$!
cleanup() {
    kill "$proxy" 2>/dev/null || true
    dropdb -h 127.0.0.1 -U postgres --if-exists "$db" || true
}
trap cleanup EXIT
# The proxy listens once its port answers.
for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.05
done

LOADGEN_ENGINE_LOG=${LOADGEN_ENGINE_LOG:-warn,switchboard_server::call::call_data=info} \
    "$loadgen" --spawn-engine "$engine" --spawn-fakes --calls "$calls" --ramp-seconds 10 \
    --duration-seconds 60 --quiet --recording \
    --engine-database-url "postgres://postgres@127.0.0.1:$port/$db" \
    --report "$out/report.json" --details "$out/details.jsonl" >"$out/loadgen.log" 2>&1 &
run=$!
# The run's schedule: the cut is timed from the loadgen's start.
sleep "$cut_at"
kill -USR1 "$proxy"
echo "cut at ${cut_at} s"
sleep "$cut_for"
kill -USR2 "$proxy"
echo "restored at $((cut_at + cut_for)) s"
status=0
wait "$run" || status=$?

python3 - "$out/report.json" <<'EOF'
import collections, json, sys
r = json.load(open(sys.argv[1]))
c = r["calls"]
print(f"calls: started {c['started']}, completed {c['completed']}, failed {c['failed']}")
kinds = collections.Counter(e["kind"] for e in r["errors"])
print("errors by kind:", dict(kinds) or "none")
EOF
echo "calls by status: $(psql_q "SELECT string_agg(status || ' ' || n, ', ') FROM (SELECT status, count(*) n FROM calls GROUP BY status) s")"
echo "rows: transcripts $(psql_q 'SELECT count(*) FROM transcripts'), turn metrics $(psql_q 'SELECT count(*) FROM turn_metrics'), traces $(psql_q 'SELECT count(*) FROM call_traces')"
# The loadgen names the engine's own log on its standard error.
engine_log=$(sed -n 's/.*engine log kept at //p' "$out/loadgen.log" | tail -1)
if [ -n "$engine_log" ]; then
    grep -E "dropped_rows|away_ms" "$engine_log" | tail -3 || true
fi
echo "report, details and loadgen output in $out"
exit "$status"
