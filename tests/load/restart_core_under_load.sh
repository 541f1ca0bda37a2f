#!/usr/bin/env bash
# restart_core_under_load.sh [URL] [SECONDS] [CONNECTIONS]: keeps
# CONNECTIONS (default 200) wrk connections reading GET /api/v1/profile at
# URL (default: the web server of the running test instance) for SECONDS
# (default 20) and restarts the core (scripts/stack.sh core-stop, then
# core-start) a few seconds in. Prints wrk's summary with the answers by
# status: every non-200 answer is a failed read.
# Needs a running instance: scripts/stack.sh --config etc/test.ini test-up.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
CONFIG=${PROFILE_CONFIG:-etc/test.ini}
WEB_PORT=${PROFILE_WEB_PORT:-$(awk -F= '/^\[web\]/{s=1;next} /^\[/{s=0} s&&$1~/^ *port *$/{gsub(/ /,"",$2);print $2}' "$CONFIG")}
URL=${1:-http://127.0.0.1:$WEB_PORT}
SECONDS_TOTAL=${2:-20}
CONNECTIONS=${3:-200}
token=$(curl -fsS -o /dev/null -D - -H 'Content-Type: application/json' \
    -d '{"username":"user910","password":"password123"}' "$URL/api/v1/login" |
    sed -n 's/^[Ss]et-[Cc]ookie: session=\([^;]*\).*/\1/p')
[ -n "$token" ] || { echo "login failed" >&2; exit 1; }
PROFILE_TOKEN=$token wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_TOTAL}s" --latency -s tests/load/profile_read.lua "$URL" \
    >/tmp/restart-under-load.$$ 2>&1 &
wrk_pid=$!
sleep $((SECONDS_TOTAL / 4))
start=$(date +%s.%N)
scripts/stack.sh --config "$CONFIG" core-stop
scripts/stack.sh --config "$CONFIG" core-start
end=$(date +%s.%N)
wait "$wrk_pid" || true
cat /tmp/restart-under-load.$$
rm -f /tmp/restart-under-load.$$
awk -v a="$start" -v b="$end" 'BEGIN { printf "core restart (stop + start) took %.2f s\n", b - a }'
