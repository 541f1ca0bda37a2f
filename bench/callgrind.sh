#!/usr/bin/env bash
# bench/callgrind.sh: instructions per request of profile-web and profile-core
# (valgrind --tool=callgrind), next to a system that `make start` runs. The
# instruction counts do not depend on how busy the machine is, so they can be
# compared between runs on a noisy machine (docs/performance.md).
#
#   bench/callgrind.sh web       profile-web under callgrind, profile-core plain
#   bench/callgrind.sh core      profile-core under callgrind, profile-web plain
#   bench/callgrind.sh all       both, one after the other (the default)
#
# It starts a second profile-core and a second profile-web from the existing
# build ($PROFILE_BUILD_DIR, default build/) with the instance's CONFIG and
# secrets files, as scripts/stack.sh does (`-c CONFIG`, run from the
# repository root so that the core reads JWT_SECRET and MYSQL_PASSWORD from
# [core] env_file and the web CSRF_SECRET from [web] env_file), on other ports
# through PROFILE_* overrides, against the same MariaDB and Redis. The running
# system is not touched. It needs `make start` to have run (the secrets files,
# MariaDB with the users, Redis).
#
# Per process measured: CALLGRIND_USERS users are logged in through the second
# web (their sessions for profile and nickname; their credentials now in the
# second core's cache, so later logins are warm: no argon2id). An idle run
# (CALLGRIND_IDLE_S seconds without requests) gives the background rate of
# timers. Then for each scenario: CALLGRIND_WARMUP requests not counted,
# `callgrind_control --zero`, exactly CALLGRIND_REQUESTS requests over
# CALLGRIND_CONNECTIONS keep-alive connections (bench/callgrind_load.py, each
# answer checked: status 200, username, nickname / session cookie), then
# `callgrind_control --dump`. Ir per request = Ir of the dump / requests.
# Start-up, log-ins and warm-up are outside every dump.
#
# Scenarios (CALLGRIND_SCENARIOS, a name given twice is run twice: -2, -3):
#   profile    GET /api/v1/profile (Authorization: Bearer), profile in Redis
#   nickname   PATCH /api/v1/profile, alternating two nicknames per user
#   login      POST /api/v1/login of users logged in before (credential cache)
#
# Output: bench/results/callgrind-<UTC timestamp>/ (git-ignored):
#   run.info, users.ids, summary.md (one table for all)
#   <web|core>/core.log, web.log, valgrind.log, sessions.txt, idle.json
#   <web|core>/callgrind.out.<scenario>   the dump (callgrind_annotate reads it)
#   <web|core>/<scenario>.inclusive.txt   callgrind_annotate --inclusive=yes, top CALLGRIND_TOP
#   <web|core>/<scenario>.exclusive.txt   callgrind_annotate (self cost), top CALLGRIND_TOP
#   <web|core>/<scenario>.objects.txt     self cost per library (bench/callgrind_report.py)
#   <web|core>/<scenario>.json            total Ir, requests, Ir/request, shares
#   <web|core>/<scenario>.load.json, .warmup.json   the load client's figures
# One line per scenario on stdout. Everything started is stopped on exit.
# Exit status 1 when a request failed its check or a server did not start.
#
# Settings (environment):
#   CALLGRIND_WEB_PORT=18080  CALLGRIND_CORE_PORT=19090   ports of the second pair (127.0.0.1)
#   CALLGRIND_REQUESTS=5000   requests per scenario (counted)
#   CALLGRIND_WARMUP=500      requests per scenario before the counting
#   CALLGRIND_CONNECTIONS=8   client connections
#   CALLGRIND_USERS=16        users (ids 250, 1250, 2250, ...: outside bench/run.sh's pool)
#   CALLGRIND_SCENARIOS="profile nickname login profile"
#   CALLGRIND_IDLE_S=5        length of the idle run
#   CALLGRIND_TOP=25          functions listed per annotate file
#   CALLGRIND_INSTALL=0       do not apt-get install valgrind when missing, fail instead
#   CONFIG=etc/profile.ini    the instance (as for make start)
#   PROFILE_BUILD_DIR=build   where profile-core and profile-web are
# The second pair gets longer RPC time-outs (PROFILE_RPC_IO_TIMEOUT_MS=30000,
# PROFILE_RPC_SLOW_IO_TIMEOUT_MS=120000: a core under valgrind is ~50x slower)
# and logs to stderr (PROFILE_LOG_FILE=, the files above); nothing else differs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

CONFIG=${CONFIG:-etc/profile.ini}
BUILD_DIR=${PROFILE_BUILD_DIR:-build}
CG_WEB_PORT=${CALLGRIND_WEB_PORT:-18080}
CG_CORE_PORT=${CALLGRIND_CORE_PORT:-19090}
REQUESTS=${CALLGRIND_REQUESTS:-5000}
WARMUP=${CALLGRIND_WARMUP:-500}
CONNECTIONS=${CALLGRIND_CONNECTIONS:-8}
NUSERS=${CALLGRIND_USERS:-16}
SCENARIOS=${CALLGRIND_SCENARIOS:-"profile nickname login profile"}
IDLE_S=${CALLGRIND_IDLE_S:-5}
TOP=${CALLGRIND_TOP:-25}
HOST=127.0.0.1
URL="http://$HOST:$CG_WEB_PORT"

say() { printf '%s\n' "callgrind: $*" >&2; }
die() { printf '%s\n' "callgrind: error: $*" >&2; exit 1; }
stack() { scripts/stack.sh --config "$CONFIG" "$@"; }
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

ensure_tools() {
    local missing=() sudo=""
    command -v valgrind >/dev/null || missing+=(valgrind)
    command -v python3 >/dev/null || missing+=(python3)
    command -v curl >/dev/null || missing+=(curl)
    [ ${#missing[@]} -eq 0 ] && return
    [ "${CALLGRIND_INSTALL:-1}" = 1 ] || die "missing tools: ${missing[*]} (apt-get install them)"
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    say "installing ${missing[*]}"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
}

# --- the second core and web -----------------------------------------------------------

STARTED=()  # pids of the servers this script started

# The environment both servers of the second pair get.
PAIR_ENV=(PROFILE_CORE_HOST="$HOST" PROFILE_CORE_PORT="$CG_CORE_PORT"
    PROFILE_RPC_CORE_HOST="$HOST" PROFILE_RPC_CORE_PORT="$CG_CORE_PORT"
    PROFILE_WEB_HOST="$HOST" PROFILE_WEB_PORT="$CG_WEB_PORT"
    PROFILE_RPC_IO_TIMEOUT_MS=30000 PROFILE_RPC_SLOW_IO_TIMEOUT_MS=120000
    PROFILE_LOG_FILE=)

# server_start NAME MEASURED DIR: starts build/profile-NAME (under callgrind
# when MEASURED is 1) and waits until its port answers; sets SERVER_PID.
server_start() {
    local name=$1 measured=$2 dir=$3 port i
    local cmd=("$BUILD_DIR/profile-$name" -c "$CONFIG")
    [ "$name" = core ] && port=$CG_CORE_PORT || port=$CG_WEB_PORT
    if [ "$measured" = 1 ]; then
        cmd=(valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out"
            --log-file="$dir/valgrind.log" "${cmd[@]}")
    fi
    printf '==== %s start: %s\n' "$(date -u +%FT%TZ)" "${cmd[*]}" >>"$dir/$name.log"
    # env execs the server (or valgrind, which becomes it): $! is its pid
    env "${PAIR_ENV[@]}" "${cmd[@]}" >>"$dir/$name.log" 2>&1 </dev/null &
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
    for ((i = 0; i < 1200; i++)); do
        [ -d "/proc/$SERVER_PID" ] || { tail -n 20 "$dir/$name.log" >&2; die "$name exited at start (log $dir/$name.log)"; }
        port_open "$HOST" "$port" && return 0
        sleep 0.1
    done
    die "$name did not open port $port in 120 s (log $dir/$name.log)"
}

# server_stop PID: SIGTERM, then SIGKILL after 30 s (valgrind writes its last dump on exit).
server_stop() {
    local pid=$1 i
    [ -d "/proc/$pid" ] || return 0
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
        [ -d "/proc/$pid" ] || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
    local p i
    # the servers, the last started first (web before core)
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do server_stop "${STARTED[$i]}"; done
    STARTED=()
    # a load client of this shell, if interrupted mid-run
    for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done
}

# --- measuring -------------------------------------------------------------------------

# dump PID DIR NAME: writes the counts since the last zero to DIR/callgrind.out.NAME.
dump() {
    local pid=$1 dir=$2 name=$3 before after i f
    before=$(find "$dir" -maxdepth 1 -name 'callgrind.out.[0-9]*' | wc -l)
    control "$pid" --dump="$name"
    for ((i = 0; i < 600; i++)); do
        after=$(find "$dir" -maxdepth 1 -name 'callgrind.out.[0-9]*' | wc -l)
        [ "$after" -gt "$before" ] && break
        sleep 0.1
    done
    [ "$after" -gt "$before" ] || die "no dump file appeared for $name"
    # the newest numbered part (callgrind.out.1, .2, ...)
    f=$(find "$dir" -maxdepth 1 -name 'callgrind.out.[0-9]*' | sort -t. -k3 -n | tail -n 1)
    sleep 0.5 # the file is complete once callgrind_control returned; be safe
    mv "$f" "$dir/callgrind.out.$name"
}

# control PID OPTION: callgrind_control OPTION PID; dies unless the process says OK
# (callgrind_control exits 0 even when it finds no such process).
control() {
    local out
    out=$(callgrind_control "$2" "$1" 2>&1) || true
    grep -q 'OK\.' <<<"$out" || die "callgrind_control $2 $1: $out"
}

zero() { control "$1" --zero; }

# load KIND N SESSIONS OUTJSON: N requests of KIND; fails on any failed check.
load() {
    python3 bench/callgrind_load.py --url "$URL" --kind "$1" --requests "$2" \
        --connections "$CONNECTIONS" --sessions "$3" --out "$4" ||
        die "$1: requests failed their check: $(cat "$4" 2>/dev/null)"
}

# annotate DUMP OUT [--inclusive=yes]: callgrind_annotate, header + top TOP functions.
annotate() {
    local dump=$1 out=$2
    shift 2
    callgrind_annotate --auto=no --threshold=100 "$@" "$dump" |
        awk -v top="$TOP" '/file:function/ { fn = 1 } fn && /^ *[0-9.]/ && ++n > top { next } { print }' >"$out"
}

# measure_pass WHICH: one process under callgrind, the other plain.
measure_pass() {
    local which=$1 dir=$OUT/$1 core_measured=0 web_measured=0 pid scen name kind line p
    local -A seen=()
    mkdir -p "$dir"
    [ "$which" = core ] && core_measured=1 || web_measured=1
    for p in "$CG_CORE_PORT" "$CG_WEB_PORT"; do
        port_open "$HOST" "$p" && die "port $p is taken (set CALLGRIND_CORE_PORT / CALLGRIND_WEB_PORT)"
    done
    say "$which: starting core on $HOST:$CG_CORE_PORT and web on $URL ($which under callgrind)"
    server_start core "$core_measured" "$dir"
    local core_pid=$SERVER_PID
    server_start web "$web_measured" "$dir"
    local web_pid=$SERVER_PID
    [ "$which" = core ] && pid=$core_pid || pid=$web_pid
    local code i
    for ((i = 0; i < 100; i++)); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/api/v1/profile" || true)
        [ "$code" = 401 ] && break
        sleep 0.2
    done
    [ "$code" = 401 ] || die "$URL/api/v1/profile answered $code, expected 401"

    # Sessions (and warm credentials in this core): every user logs in once.
    say "$which: logging in $NUSERS users"
    python3 bench/sessions.py --url "$URL" --ids "$OUT/users.ids" --out "$dir/sessions.txt" --workers 4 >&2 ||
        die "could not log in the users through $URL"

    # Background rate: no requests for IDLE_S seconds.
    sleep 1
    zero "$pid"
    sleep "$IDLE_S"
    dump "$pid" "$dir" idle
    python3 - "$dir/callgrind.out.idle" "$IDLE_S" >"$dir/idle.json" <<'EOF'
import sys
sys.path.insert(0, "bench")
import callgrind_report as r
total = r.parse_dump(sys.argv[1])[0]
print('{"idle_s": %s, "total_ir": %d, "ir_per_s": %.0f}' % (sys.argv[2], total, total / float(sys.argv[2])))
EOF

    for scen in $SCENARIOS; do
        kind=$scen
        seen[$kind]=$((${seen[$kind]:-0} + 1))
        name=$kind
        [ "${seen[$kind]}" -gt 1 ] && name=$kind-${seen[$kind]}
        [ "$WARMUP" -gt 0 ] && load "$kind" "$WARMUP" "$dir/sessions.txt" "$dir/$name.warmup.json"
        sleep 1 # work the warm-up left behind (group commits, cache refreshes)
        zero "$pid"
        load "$kind" "$REQUESTS" "$dir/sessions.txt" "$dir/$name.load.json"
        sleep 1 # the same for the counted requests: it belongs to them
        dump "$pid" "$dir" "$name"
        annotate "$dir/callgrind.out.$name" "$dir/$name.inclusive.txt" --inclusive=yes
        annotate "$dir/callgrind.out.$name" "$dir/$name.exclusive.txt"
        line=$(python3 bench/callgrind_report.py scenario "$dir/callgrind.out.$name" \
            "$dir/$name.load.json" "$dir/callgrind.out.idle" "$IDLE_S" "$dir/$name") ||
            die "$which $name: $line"
        printf '%s %s\n' "$which" "$line"
    done

    server_stop "$web_pid"
    server_stop "$core_pid"
    STARTED=()
}

main() {
    local what=${1:-all} passes=()
    case "$what" in
    web | core) passes=("$what") ;;
    all) passes=(web core) ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; return 0 ;;
    *) die "usage: bench/callgrind.sh [web|core|all]" ;;
    esac
    local s
    for s in $SCENARIOS; do
        case "$s" in profile | nickname | login) ;; *) die "unknown scenario '$s' in CALLGRIND_SCENARIOS" ;; esac
    done
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    ensure_tools
    for b in profile-core profile-web; do
        [ -x "$BUILD_DIR/$b" ] || die "$BUILD_DIR/$b not built (run: make build)"
    done
    local env_file web_env_file
    env_file=$(stack get core env_file .env)
    web_env_file=$(stack get web env_file .env.web)
    [ -f "$env_file" ] || die "$env_file missing: start the system once (make start)"
    [ -f "$web_env_file" ] || die "$web_env_file missing: start the system once (make start)"
    local users
    users=$(stack get stack users 10000000)

    STAMP=$(date -u +%Y%m%dT%H%M%SZ)
    OUT=$ROOT/bench/results/callgrind-$STAMP
    mkdir -p "$OUT"
    say "results in $OUT"
    # users 250, 1250, 2250, ...: spread, and not in bench/run.sh's pool (500, 1500, ...)
    seq 0 $((NUSERS - 1)) | awk -v n="$users" '{ id = $1 * 1000 + 250; if (id <= n) print id }' >"$OUT/users.ids"
    [ -s "$OUT/users.ids" ] || die "no users ([stack] users = $users)"
    {
        echo "date=$(date -u +%FT%TZ)"
        echo "requests=$REQUESTS"
        echo "warmup=$WARMUP"
        echo "connections=$CONNECTIONS"
        echo "users=$(wc -l <"$OUT/users.ids")"
        echo "config=$CONFIG"
        echo "git=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src 2>/dev/null || echo -dirty)"
        echo "valgrind=$(valgrind --version)"
    } >"$OUT/run.info"

    for p in "${passes[@]}"; do measure_pass "$p"; done
    python3 bench/callgrind_report.py summary "$OUT"
    say "done: $OUT/summary.md"
}

main "$@"; exit "$?"
