#!/usr/bin/env bash
# bench/run.sh: the benchmark of issue 3 (`make bench`), against a system that
# `make start` runs (the same config and PROFILE_* environment overrides).
#
#   bench/run.sh                       all scenarios: warm-up + 3 runs of 30 s each
#   BENCH_QUICK=1 bench/run.sh         1 run of 5 s, 2 s warm-up (development)
#   BENCH_ONLY='^profile|^baseline' ...  only the scenarios whose name matches
#                                      (a regular expression: anchor it, e.g.
#                                      '^profile-fixed-c200$' is one scenario)
#
# Scenarios (names as in the report):
#   baseline-c200, baseline-c2000   a private nginx on loopback answering
#                                   `return 200` (bench/nginx-baseline.conf)
#   {login,profile,nickname}-{fixed,random}-c{200,2000}[-nginx]
#       fixed:  c distinct users, each connection as if keeping one user
#       random: every request a uniform draw from a pool of BENCH_POOL (10,000)
#               users spread over the whole id range 1..[stack] users
#       -nginx: the same through the production nginx site (deploy/nginx,
#               rendered on a private port in front of the web server, see
#               site_start); without the suffix: the web server directly.
#               Each is run right after its direct twin.
#   cold-c200        logins of users not logged in before in this run
#                    (a disjoint id range), bound by argon2id; reported next
#                    to the bare verify rate of bench/argon2_verify.c
#   mixed-c100+100   100 connections of cold logins and 100 of random profile
#                    reads at once (two wrk processes); reported as
#                    mixed-cold and mixed-profile
#
# Every response is checked by bench/wrk/scenario.lua (status and a body
# field); failed checks, non-2xx and socket errors are the scenario's errors.
# During each measured run pidstat (-t) samples CPU, RSS, context switches and disk
# IO of wrk, profile-web, profile-core, mariadbd, redis-server (and nginx) once
# a second, and the loopback byte counters are read before and after.
#
# Output: bench/results/<UTC timestamp>/ (raw wrk, pidstat and meta files,
# summary.md, summary.csv, summary.json, charts) and, unless BENCH_DOCS=0,
# docs/performance.md and docs/perf-*.svg regenerated from it
# (bench/report.py). One progress line per scenario on stdout.
#
# Settings (environment):
#   BENCH_DURATION=30  BENCH_RUNS=3  BENCH_WARMUP=5   seconds / count / seconds
#   BENCH_QUICK=1      shorthand for DURATION=5 RUNS=1 WARMUP=2
#   BENCH_THREADS=2    wrk -t
#   BENCH_CONNECTIONS="200 2000"   connection counts of the 3x2 matrix
#   BENCH_POOL=10000   users of the random pool
#   BENCH_TIMEOUT=10s  wrk --timeout (slower responses count as timeouts)
#   BENCH_NGINX_PORT=18000   port of the baseline nginx (127.0.0.1)
#   BENCH_VIA="direct nginx"  the matrix against the web server, through the
#                      site's nginx, or both
#   BENCH_SITE_PORT=18001    port of the site's nginx (127.0.0.1)
#   BENCH_ONLY=REGEX   run only the matching scenarios
#   BENCH_DOCS=0|1     leave docs/ alone / regenerate it (default: 1 for a full
#                      run, 0 with BENCH_QUICK or BENCH_ONLY)
#   BENCH_INSTALL=0    do not apt-get install missing tools, fail instead
#   CONFIG=etc/profile.ini   the instance (as for make start)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

CONFIG=${CONFIG:-etc/profile.ini}
DURATION=${BENCH_DURATION:-30}
RUNS=${BENCH_RUNS:-3}
WARMUP=${BENCH_WARMUP:-5}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    DURATION=${BENCH_DURATION:-5}
    RUNS=${BENCH_RUNS:-1}
    WARMUP=${BENCH_WARMUP:-2}
fi
THREADS=${BENCH_THREADS:-2}
CONNECTIONS=${BENCH_CONNECTIONS:-"200 2000"}
POOL=${BENCH_POOL:-10000}
TIMEOUT=${BENCH_TIMEOUT:-10s}
NGINX_PORT=${BENCH_NGINX_PORT:-18000}
SITE_PORT=${BENCH_SITE_PORT:-18001}
VIA=${BENCH_VIA:-"direct nginx"}
ONLY=${BENCH_ONLY:-.}
# Only a full run replaces the committed figures in docs/ unless asked.
DOCS=1
{ [ "${BENCH_QUICK:-0}" = 1 ] || [ "$ONLY" != . ]; } && DOCS=0
DOCS=${BENCH_DOCS:-$DOCS}
LUA=$ROOT/bench/wrk/scenario.lua

say() { printf '%s\n' "bench: $*" >&2; }
die() { printf '%s\n' "bench: error: $*" >&2; exit 1; }
stack() { scripts/stack.sh --config "$CONFIG" "$@"; }

# --- tools ----------------------------------------------------------------------

# Installs the Debian packages of the tools that are missing (the same names
# are in scripts/stack.sh deps, so `make deps` brings them too).
ensure_tools() {
    local missing=() sudo=""
    command -v wrk >/dev/null || missing+=(wrk)
    command -v pidstat >/dev/null || missing+=(sysstat)
    command -v gnuplot >/dev/null || missing+=(gnuplot-nox)
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
    command -v cc >/dev/null || missing+=(build-essential)
    command -v pkg-config >/dev/null || missing+=(pkg-config)
    pkg-config --exists libsodium 2>/dev/null || missing+=(libsodium-dev)
    command -v python3 >/dev/null || missing+=(python3)
    [ ${#missing[@]} -eq 0 ] && return
    [ "${BENCH_INSTALL:-1}" = 1 ] || die "missing tools: ${missing[*]} (apt-get install them)"
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    say "installing ${missing[*]}"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
}

NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)

# Sizes as etc/profile.ini writes them (19M, 64MiB, 1G, plain bytes) -> bytes.
to_bytes() {
    local v=${1%iB} n
    v=${v%B}
    n=${v%[KkMmGg]}
    case "$v" in
    *[Kk]) echo $((n * 1024)) ;;
    *[Mm]) echo $((n * 1024 * 1024)) ;;
    *[Gg]) echo $((n * 1024 * 1024 * 1024)) ;;
    *) echo "$n" ;;
    esac
}

# abspath PATH: PATH, relative ones taken from the repository (as stack.sh does).
abspath() { case "$1" in /*) echo "$1" ;; *) echo "$ROOT/$1" ;; esac; }

# pid_of NAME: the pid in <var_dir>/run/NAME.pid when that process is alive.
pid_of() {
    local f="$VAR/run/$1.pid" pid
    [ -f "$f" ] || return 1
    pid=$(tr -dc '0-9' <"$f")
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
    echo "$pid"
}

# Bytes received on the loopback interface (each loopback byte is counted
# once as sent and once as received: rx alone is the traffic). The machine is
# shared, so other programs' loopback traffic is included.
lo_bytes() { awk '$1 == "lo:" { print $2 }' /proc/net/dev; }

# --- measuring --------------------------------------------------------------------

# wrk_start PREFIX CONNS DURATION KIND MODE [VAR=VALUE...]: starts one wrk in
# the background (output PREFIX.wrk.txt, figures PREFIX.json); sets WRK_PID.
wrk_start() {
    local prefix=$1 conns=$2 dur=$3 kind=$4 mode=$5 url=$TARGET_URL
    shift 5
    [ "$kind" = baseline ] && url="http://127.0.0.1:$NGINX_PORT"
    rm -f "$prefix.json"
    env BENCH_KIND="$kind" BENCH_MODE="$mode" BENCH_THREADS="$THREADS" BENCH_FIXED_N="$conns" \
        BENCH_OUT="$prefix.json" "$@" \
        wrk -t"$THREADS" -c"$conns" -d"${dur}s" --timeout "$TIMEOUT" --latency -s "$LUA" "$url" \
        >"$prefix.wrk.txt" 2>&1 &
    WRK_PID=$!
}

# measure PREFIX SPEC [SPEC...]: one run of one or more wrk processes at once
# (SPEC = "conns duration kind mode VAR=VALUE ..." as for wrk_start), with
# pidstat sampling every process and the loopback counters around it.
# PREFIX.meta records what the report needs besides the wrk and pidstat files.
measure() {
    local prefix=$1 spec wrk_pids=() i=0 stat_pid lo0 lo1 t0 t1 dur=0 waited
    shift
    waited=$(settle)
    lo0=$(lo_bytes)
    t0=$(date +%s.%N)
    for spec in "$@"; do
        # shellcheck disable=SC2086  # spec is a word list on purpose
        set -- $spec
        [ "$2" -gt "$dur" ] && dur=$2
        # the first wrk writes PREFIX.*, a second one at once PREFIX.1.*
        if [ "$i" -eq 0 ]; then wrk_start "$prefix" "$@"; else wrk_start "$prefix.$i" "$@"; fi
        wrk_pids+=("$WRK_PID")
        i=$((i + 1))
    done
    local pids
    pids=$(IFS=,; echo "${wrk_pids[*]},${SERVER_PIDS}${EXTRA_PIDS:+,$EXTRA_PIDS}")
    # -t: per-thread lines too, the only way to count every thread's context switches
    S_TIME_FORMAT=ISO LC_ALL=C pidstat -t -h -u -r -w -d -p "$pids" 1 "$dur" >"$prefix.pidstat.txt" 2>&1 &
    stat_pid=$!
    local rc=0
    for p in "${wrk_pids[@]}"; do wait "$p" || rc=$?; done
    t1=$(date +%s.%N)
    lo1=$(lo_bytes)
    kill "$stat_pid" 2>/dev/null || true
    wait "$stat_pid" 2>/dev/null || true
    printf 'start=%s\nend=%s\nlo_bytes=%s\nwrk_status=%s\nwrk_pids=%s\nsettle_s=%s\n' \
        "$t0" "$t1" "$((lo1 - lo0))" "$rc" "${wrk_pids[*]}" "$waited" >"$prefix.meta"
}

# cpu_ticks PID...: user + system clock ticks of the processes so far.
cpu_ticks() {
    local p t=0
    for p in "$@"; do
        [ -r "/proc/$p/stat" ] || continue
        # fields 14 and 15 (utime, stime) after the "(comm)" field
        t=$((t + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{ print $12 + $13 }')))
    done
    echo "$t"
}

# settle: waits until profile-web and profile-core are idle (< 5 % of one CPU
# over half a second), at most 120 s. A wrk that ends leaves requests behind
# in the servers (logins queued for argon2id go on being hashed after their
# client left); the next run must not pay for them. Prints the seconds waited.
settle() {
    local t0 a b i hz
    hz=$(getconf CLK_TCK)
    t0=$(date +%s)
    for ((i = 0; i < 240; i++)); do
        a=$(cpu_ticks "$WEB_PID" "$CORE_PID")
        sleep 0.5
        b=$(cpu_ticks "$WEB_PID" "$CORE_PID")
        # < 5 % of a CPU over 0.5 s  <=>  (b - a) / hz < 0.025 s  <=>  (b - a) * 1000 / hz < 25
        [ $(((b - a) * 1000 / hz)) -lt 25 ] && break
    done
    echo $(($(date +%s) - t0))
}

# scenario NAME SPEC [SPEC...]: warm-up, RUNS measured runs, progress line.
SCENARIO_NO=0
scenario() {
    local name=$1 r spec specs=()
    shift
    SCENARIO_NO=$((SCENARIO_NO + 1))
    [[ $name =~ $ONLY ]] || return 0
    mkdir -p "$OUT/$name"
    # SPEC strings hold the duration as @D@, filled in per phase.
    if [ "$WARMUP" -gt 0 ]; then
        specs=()
        for spec in "$@"; do specs+=("${spec//@D@/$WARMUP}"); done
        measure "$OUT/$name/warmup" "${specs[@]}"
    fi
    for ((r = 1; r <= RUNS; r++)); do
        specs=()
        for spec in "$@"; do specs+=("${spec//@D@/$DURATION}"); done
        measure "$OUT/$name/run$r" "${specs[@]}"
    done
    printf '[%2d/%d] %s\n' "$SCENARIO_NO" "$SCENARIO_COUNT" \
        "$(python3 bench/report.py --progress "$OUT/$name")"
}

# --- baseline nginx ------------------------------------------------------------------

NGINX_PID=""
nginx_start() {
    local i attempt
    mkdir -p "$OUT/nginx-tmp"
    sed -e "s|@PORT@|$NGINX_PORT|g" -e "s|@DIR@|$OUT|g" bench/nginx-baseline.conf >"$OUT/nginx.conf"
    # A port inside the ephemeral range (ip_local_port_range) can be held for
    # a while by some client socket of another program: retry a few times.
    for attempt in 1 2 3 4 5 6; do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$NGINX_PORT") 2>/dev/null; then
            "$NGINX_BIN" -p "$OUT" -c "$OUT/nginx.conf" -e "$OUT/nginx-error.log" >"$OUT/nginx.out" 2>&1 &
            NGINX_PID=$!
            for ((i = 0; i < 50; i++)); do
                [ -d "/proc/$NGINX_PID" ] || break
                if (exec 3<>"/dev/tcp/127.0.0.1/$NGINX_PORT") 2>/dev/null; then
                    # master and its workers, for pidstat
                    EXTRA_PIDS=$( (echo "$NGINX_PID"; pgrep -P "$NGINX_PID" || true) | paste -sd,)
                    return 0
                fi
                sleep 0.1
            done
            kill "$NGINX_PID" 2>/dev/null || true
            wait "$NGINX_PID" 2>/dev/null || true
            NGINX_PID=""
        fi
        say "baseline nginx: port $NGINX_PORT busy (attempt $attempt), retrying in 5 s"
        sleep 5
    done
    die "baseline nginx did not start on port $NGINX_PORT: $(tail -n 2 "$OUT/nginx.out" 2>/dev/null) (set BENCH_NGINX_PORT)"
}

# --- the site's nginx (scenarios through nginx) ----------------------------------------

# The production site of deploy/nginx (site-render.sh, as make start and
# deploy/install.sh render it) on a private port in front of the running web
# server. Two changes, both for the load generator: the login rate limit
# exempts 127.0.0.1 (the documented [nginx] login_exempt, as for a monitoring
# host: 15,000 logins a second from one address are the point of the
# scenario), and the access log goes to /dev/null (its lines are formatted and
# written, at no disk cost: a full run would write gigabytes).
SITE_PID=""
SITE_PIDS=""
site_start() {
    local dir=$OUT/site i
    mkdir -p "$dir/tmp"
    deploy/nginx/render.sh deploy/nginx/headers.conf.in >"$dir/headers.conf"
    deploy/nginx/site-render.sh --listen "127.0.0.1:$SITE_PORT" --server-name 127.0.0.1 \
        --web "$WEB_HOST:$WEB_PORT" --proxy-address "$(stack get nginx proxy_address 127.0.0.2)" \
        --max-bytes "$(stack get picture max_bytes 10M)" --login-exempt 127.0.0.1 \
        --access-log /dev/null --headers "$dir/headers.conf" \
        --pictures "$(abspath "$(stack get picture dir var/data/pictures)")" \
        --static "$(abspath "$(stack get web static_dir web/static)")" \
        --errors "$ROOT/deploy/nginx/errors" >"$dir/site.conf"
    deploy/nginx/render.sh deploy/nginx/nginx-dev.conf.in USER_LINE="$([ "$(id -u)" -eq 0 ] && echo 'user root;')" \
        PREFIX="$dir" ERROR_LOG="$dir/error.log" SITE="$dir/site.conf" >"$dir/nginx.conf"
    ! (exec 3<>"/dev/tcp/127.0.0.1/$SITE_PORT") 2>/dev/null ||
        die "port $SITE_PORT (BENCH_SITE_PORT) is taken: the site's nginx cannot start"
    "$NGINX_BIN" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" -g 'daemon off;' >"$dir/nginx.out" 2>&1 &
    SITE_PID=$!
    for ((i = 0; i < 50; i++)); do
        [ -d "/proc/$SITE_PID" ] || break
        if (exec 3<>"/dev/tcp/127.0.0.1/$SITE_PORT") 2>/dev/null; then
            SITE_PIDS=$( (echo "$SITE_PID"; pgrep -P "$SITE_PID" || true) | paste -sd,)
            code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$SITE_PORT/api/v1/profile" || true)
            [ "$code" = 401 ] || die "the site's nginx answered $code for /api/v1/profile, expected 401 (see $dir/error.log)"
            return 0
        fi
        sleep 0.1
    done
    die "the site's nginx did not start on port $SITE_PORT: $(tail -n 2 "$dir/nginx.out" "$dir/error.log" 2>/dev/null)"
}

site_stop() {
    [ -n "$SITE_PID" ] || return 0
    kill -QUIT "$SITE_PID" 2>/dev/null || true
    wait "$SITE_PID" 2>/dev/null || true
    SITE_PID=""
    SITE_PIDS=""
}

nginx_stop() {
    [ -n "$NGINX_PID" ] || return 0
    kill -QUIT "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
    NGINX_PID=""
    EXTRA_PIDS=""
}

# --- main ------------------------------------------------------------------------------

cleanup() {
    nginx_stop
    site_stop
    # wrk and pidstat children of this shell, if interrupted mid-run
    local p
    for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done
}
# Everything below runs from main(), so bash has parsed the whole file before
# the first wrk starts (editing run.sh during a run cannot break that run).
main() {
    trap cleanup EXIT
    trap 'exit 130' INT TERM

    ensure_tools

    VAR=$(stack get stack var_dir var)
    case "$VAR" in /*) ;; *) VAR=$ROOT/$VAR ;; esac
    WEB_HOST=$(stack get web host 127.0.0.1)
    WEB_PORT=$(stack get web port 8080)
    WEB_URL="http://$WEB_HOST:$WEB_PORT"
    TARGET_URL=$WEB_URL
    for v in $VIA; do
        case "$v" in direct | nginx) ;; *) die "BENCH_VIA: '$v' is neither direct nor nginx" ;; esac
    done
    USERS=$(stack get stack users 10000000)
    OPSLIMIT=$(stack get password opslimit 2)
    MEMLIMIT=$(to_bytes "$(stack get password memlimit 19M)")
    NCPU=$(nproc)

    WEB_PID=$(pid_of web) || die "profile-web is not running (start the system with: make start)"
    CORE_PID=$(pid_of core) || die "profile-core is not running (start the system with: make start)"
    SERVER_PIDS="$WEB_PID,$CORE_PID"
    if p=$(pid_of mysqld); then SERVER_PIDS+=",$p"; else say "no private MariaDB pid: not sampled"; fi
    if p=$(pid_of redis); then SERVER_PIDS+=",$p"; else say "no private Redis pid: not sampled"; fi
    code=$(curl -s -o /dev/null -w '%{http_code}' "$WEB_URL/api/v1/profile" || true)
    [ "$code" = 401 ] || die "$WEB_URL/api/v1/profile answered $code, expected 401 (is the system up?)"

    # 2,000 connections need 2,000+ descriptors in wrk (and in the servers,
    # which got theirs from make start).
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    [ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 4200 ] ||
        say "warning: ulimit -n is $(ulimit -n): 2,000 connections may fail"

    STAMP=$(date -u +%Y%m%dT%H%M%SZ)
    OUT=$ROOT/bench/results/$STAMP
    mkdir -p "$OUT"
    say "results in $OUT"

    # What the report needs to describe the run.
    {
        echo "date=$(date -u +%FT%TZ)"
        echo "duration=$DURATION"
        echo "runs=$RUNS"
        echo "warmup=$WARMUP"
        echo "threads=$THREADS"
        echo "connections=$CONNECTIONS"
        echo "via=$VIA"
        echo "pool=$POOL"
        echo "timeout=$TIMEOUT"
        echo "users=$USERS"
        echo "opslimit=$OPSLIMIT"
        echo "memlimit=$MEMLIMIT"
        echo "ncpu=$NCPU"
        echo "url=$WEB_URL"
        echo "config=$CONFIG"
        echo "quick=${BENCH_QUICK:-0}"
        echo "bench_env=$(env | grep -E '^BENCH_' | sort | paste -sd' ' || true)"
        echo "git=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src 2>/dev/null || echo -dirty)"
        echo "loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)"
        echo "ulimit_n=$(ulimit -n)"
    } >"$OUT/run.info"
    {
        lscpu
        echo
        echo "nproc: $NCPU"
        free -h
        echo
        uname -a
        echo
        env | grep -E '^(PROFILE|BENCH)_' | sort || true
    } >"$OUT/machine.txt" 2>&1

    # The micro-benchmark: bare argon2id verifies, configured cost, one thread per CPU.
    mkdir -p build/bench
    cc -std=c11 -O2 -Wall -Wextra -o build/bench/argon2_verify bench/argon2_verify.c \
        $(pkg-config --cflags --libs libsodium) -pthread || die "cannot build bench/argon2_verify.c"

    # Users: the random pool spreads POOL ids evenly over 1..USERS (stride S,
    # offset S/2); the fixed sets take every (POOL/c)-th of them, so they are
    # spread too. Cold logins use ids outside the pool (id % S != S/2).
    STRIDE=$((USERS / POOL))
    [ "$STRIDE" -ge 2 ] || die "[stack] users ($USERS) must be at least twice BENCH_POOL ($POOL)"
    OFFSET=$((STRIDE / 2))
    seq 0 $((POOL - 1)) | awk -v s="$STRIDE" -v o="$OFFSET" '{ print $1 * s + o }' >"$OUT/pool.ids"

    SCENARIO_COUNT=$((2 + 6 * $(wc -w <<<"$CONNECTIONS") * $(wc -w <<<"$VIA") + 2))

    # Sessions for profile and nickname: log the pool in, or reuse the sessions
    # of an earlier run against the same server when each token outlives this
    # run (its estimated length, settling included, plus 10 minutes).
    CACHE=bench/results/.sessions-$WEB_PORT.txt
    ESTIMATE=$((SCENARIO_COUNT * (WARMUP + 30 + RUNS * (DURATION + 30)) + 600))
    REUSE=()
    [ -f "$CACHE" ] && REUSE=(--reuse "$CACHE" --min-valid "$ESTIMATE")
    NEED_SESSIONS=0
    for c in $CONNECTIONS; do
        for n in {profile,nickname}-{fixed,random}-c$c{,-nginx} mixed-c100+100; do
            [[ $n =~ $ONLY ]] && NEED_SESSIONS=1
        done
        # Login scenarios assume the pool was warmed once against this very core
        # process (its credential cache lives in memory): log the pool in afresh,
        # never reuse sessions from a run against an earlier core.
        for n in login-{fixed,random}-c$c{,-nginx}; do
            if [[ $n =~ $ONLY ]]; then
                NEED_SESSIONS=1
                REUSE=()
            fi
        done
    done
    if [ "$NEED_SESSIONS" = 1 ]; then
        say "logging in the $POOL pool users (sessions for profile and nickname)"
        # 10,000 live bearer tokens: readable by their owner only, like .env
        (umask 077 && python3 bench/sessions.py --url "$WEB_URL" --ids "$OUT/pool.ids" \
            --out "$OUT/sessions.txt" "${REUSE[@]}") || die "could not log in the pool users"
        chmod 600 "$OUT/sessions.txt"
        cmp -s "$OUT/sessions.txt" "$CACHE" || (umask 077 && cp "$OUT/sessions.txt" "$CACHE")
        chmod 600 "$CACHE"
    fi

    # Cold logins: each wrk invocation (warm-up and runs, cold and mixed) gets its
    # own slice of SPAN ids, starting at a random place so that consecutive bench
    # runs do not reuse users either.
    COLD_INVOCATIONS=$((2 * (RUNS + 1)))
    SPAN=$((USERS / (COLD_INVOCATIONS + 2)))
    [ "$SPAN" -gt 200000 ] && SPAN=200000
    COLD_NEXT=$((1 + RANDOM * 32768 % (USERS - SPAN * COLD_INVOCATIONS)))
    cold_env() {
        # prints the VAR=VALUE words of one cold invocation and advances the range
        echo "BENCH_COLD_BASE=$COLD_NEXT BENCH_COLD_SPAN=$SPAN BENCH_COLD_MOD=$STRIDE BENCH_COLD_SKIP=$OFFSET"
    }

    local all=(baseline-c{200,2000}) matching=0 n
    for c in $CONNECTIONS; do
        for n in {login,profile,nickname}-{fixed,random}-c$c; do
            for v in $VIA; do
                [ "$v" = nginx ] && all+=("$n-nginx") || all+=("$n")
            done
        done
    done
    all+=(cold-c200 mixed-c100+100)
    for n in "${all[@]}"; do [[ $n =~ $ONLY ]] && matching=$((matching + 1)); done
    if [ "$matching" -eq "${#all[@]}" ]; then
        say "$SCENARIO_COUNT scenarios, warm-up ${WARMUP} s + $RUNS x ${DURATION} s each, wrk -t$THREADS"
    else
        say "$matching of $SCENARIO_COUNT scenarios match BENCH_ONLY, warm-up ${WARMUP} s + $RUNS x ${DURATION} s each, wrk -t$THREADS"
    fi

    # 1. baseline
    if [[ baseline-c200 =~ $ONLY ]] || [[ baseline-c2000 =~ $ONLY ]]; then nginx_start; fi
    for c in $CONNECTIONS; do
        scenario "baseline-c$c" "$c @D@ baseline fixed"
    done
    nginx_stop

    # 2. the matrix, each scenario directly and through the site's nginx
    if [[ " $VIA " == *" nginx "* ]]; then
        for c in $CONNECTIONS; do
            for n in {login,profile,nickname}-{fixed,random}-c$c-nginx; do
                [[ $n =~ $ONLY ]] && [ -z "$SITE_PID" ] && site_start
            done
        done
        [ -z "$SITE_PID" ] || say "site nginx: deploy/nginx's site on 127.0.0.1:$SITE_PORT in front of $WEB_URL"
    fi
    for kind in login profile nickname; do
        for mode in fixed random; do
            for c in $CONNECTIONS; do
                if [ "$kind" = login ]; then
                    file=$OUT/pool.ids
                else
                    file=$OUT/sessions.txt
                fi
                if [ "$mode" = fixed ]; then
                    # c users spread over the pool
                    awk -v step=$((POOL / c > 0 ? POOL / c : 1)) -v c="$c" \
                        '(NR - 1) % step == 0 && n < c { print; n++ }' "$file" >"$OUT/fixed-$kind-c$c.txt"
                    file=$OUT/fixed-$kind-c$c.txt
                fi
                for v in $VIA; do
                    name=$kind-$mode-c$c
                    TARGET_URL=$WEB_URL
                    EXTRA_PIDS=""
                    if [ "$v" = nginx ]; then
                        name+=-nginx
                        TARGET_URL="http://127.0.0.1:$SITE_PORT"
                        EXTRA_PIDS=$SITE_PIDS
                    fi
                    [[ $name =~ $ONLY ]] || { SCENARIO_NO=$((SCENARIO_NO + 1)); continue; }
                    scenario "$name" "$c @D@ $kind $mode BENCH_USERS=$file"
                done
            done
        done
    done
    site_stop
    TARGET_URL=$WEB_URL

    # 3. cold logins, next to the bare argon2id verify rate measured just before.
    if [[ cold-c200 =~ $ONLY ]] || [[ mixed-c100+100 =~ $ONLY ]]; then
        secs=$((DURATION < 10 ? DURATION : 10))
        say "argon2id micro-benchmark: $NCPU threads, opslimit $OPSLIMIT, memlimit $MEMLIMIT, $secs s"
        build/bench/argon2_verify "$OPSLIMIT" "$MEMLIMIT" "$NCPU" "$secs" >"$OUT/argon2.json" ||
            die "argon2 micro-benchmark failed"
    fi
    # Each spec's cold range is fixed when the scenario starts; runs need their
    # own, so the cold scenarios are run phase by phase here.
    cold_scenario() {
        local name=$1 extra=$2 r
        SCENARIO_NO=$((SCENARIO_NO + 1))
        [[ $name =~ $ONLY ]] || return 0
        mkdir -p "$OUT/$name"
        local phases=() d
        [ "$WARMUP" -gt 0 ] && phases+=(warmup)
        for ((r = 1; r <= RUNS; r++)); do phases+=("run$r"); done
        for ph in "${phases[@]}"; do
            d=$DURATION
            [ "$ph" = warmup ] && d=$WARMUP
            local cold_spec="${3:-200} $d cold fixed $(cold_env)"
            COLD_NEXT=$((COLD_NEXT + SPAN))
            if [ -n "$extra" ]; then
                measure "$OUT/$name/$ph" "$cold_spec" "${extra//@D@/$d}"
            else
                measure "$OUT/$name/$ph" "$cold_spec"
            fi
        done
        printf '[%2d/%d] %s\n' "$SCENARIO_NO" "$SCENARIO_COUNT" \
            "$(python3 bench/report.py --progress "$OUT/$name")"
    }
    cold_scenario cold-c200 "" 200
    cold_scenario mixed-c100+100 "100 @D@ profile random BENCH_USERS=$OUT/sessions.txt" 100

    echo "loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/run.info"

    # 4. the report
    report_args=("$OUT")
    [ "$DOCS" = 1 ] && report_args+=(--docs "$ROOT/docs")
    python3 bench/report.py "${report_args[@]}"
    say "done: $OUT/summary.md"
}

# (one line: bash has read the exit before main runs, whatever happens to this file)
main "$@"; exit "$?"
