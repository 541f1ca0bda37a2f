#!/usr/bin/env bash
# stack.sh: bring the profile service up and down on one machine.
#
#   scripts/stack.sh [--config etc/profile.ini] <command> [args]
#
# Commands (each acts on the instance the config describes; the dev instance
# lives under var/, the test instance of etc/test.ini under var/test/):
#   deps                  apt-get install the Debian packages that are missing
#   build                 cmake + make into build/
#   start | stop          everything in the background | stop all of it
#   run                   start, then stay in the foreground showing the logs;
#                         Ctrl-C (or SIGTERM) stops everything
#   status                what is running
#   mysql-start | mysql-stop | redis-start | redis-stop
#   schema                apply sql/schema.sql
#   populate [N] [opts]   build/profile-populate (default N: [stack] users)
#   core-start | core-stop | web-start | web-stop
#   nginx-start | nginx-stop  the private nginx in front of the web server
#                         ([nginx] enabled=1; config rendered into
#                         <var_dir>/nginx/ from deploy/nginx/)
#   nginx-config          render that config only; nginx-test: nginx -t on it
#   test                  test instance up (etc/test.ini, users reloaded afresh:
#                         PROFILE_TEST_USERS, default 20000), ctest, test
#                         instance down (also on failure); exits with ctest's status
#   test-up | test-down   the test instance alone, for running tests by hand
#   secrets               create the secrets files (.env, .env.web) if missing
#   e2e-deps              npm ci in tests/e2e (playwright-core, axe-core) when
#                         its node_modules is missing or older than the lock file
#   get SECTION KEY [DEF] print one configuration value (INI + environment), as
#                         the servers see it; var_dir and paths made absolute
#                         by the caller (used by bench/run.sh)
#
# Values come from the INI file (sections as in src/common/config.h plus
# [stack]) overridden by PROFILE_<SECTION>_<KEY> environment variables, the
# same rule the C programs follow. Private MariaDB and Redis instances are
# started only when [stack] manage_mysql / manage_redis are 1; with 0 the
# config names servers someone else runs. Every process this script starts
# has a pid file under <var_dir>/run and a log under <var_dir>/log; stop acts
# only on those pids, so nothing else on the machine is touched.
# PROFILE_BUILD_DIR (default build) names the build directory whose programs
# are run, e.g. build-asan for the sanitizer build.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CALLER_PWD=$PWD
cd "$ROOT"

CONFIG=""
while [ $# -gt 0 ]; do
    case "$1" in
    -c | --config)
        [ $# -ge 2 ] || { echo "stack.sh: $1 needs a file" >&2; exit 2; }
        CONFIG=$2
        shift 2
        ;;
    --config=*) CONFIG=${1#--config=}; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) break ;;
    esac
done
[ $# -ge 1 ] || { echo "usage: scripts/stack.sh [--config FILE] <command> (see --help)" >&2; exit 2; }
COMMAND=$1
shift
CONFIG_EXPLICIT=${CONFIG:+1}
# Where the programs are built (e.g. build-asan for the sanitizer build).
BUILD_DIR=${PROFILE_BUILD_DIR:-build}
CONFIG=${CONFIG:-etc/profile.ini}

# chromium and the fonts are for the browser tests (tests/e2e): emoji and CJK
# nicknames must render as glyphs, not empty boxes, in Debian's chromium.
PACKAGES="build-essential cmake pkg-config libmicrohttpd-dev libprotobuf-c-dev protobuf-c-compiler
libmariadb-dev mariadb-server mariadb-client redis-server libhiredis-dev libsodium-dev libjwt-dev
libjansson-dev libvips-dev libinih-dev libcmocka-dev libsystemd-dev nginx wrk sysstat curl python3
logrotate systemd gnuplot-nox chromium fonts-noto-color-emoji fonts-droid-fallback"
# Node.js and npm (browser tests) may come from another source than Debian
# (e.g. NodeSource's nodejs, which bundles npm and conflicts with Debian's
# npm): Debian's packages are installed only when the commands are missing.
NODE_PACKAGES="nodejs npm"

say() { printf '%s\n' "stack: $*" >&2; }
die() { printf '%s\n' "stack: error: $*" >&2; exit 1; }

# --- configuration -------------------------------------------------------------

# Makes CONFIG a path relative to ROOT (or absolute) that exists.
resolve_config() {
    local c=$CONFIG
    case "$c" in
    /*) ;;
    *) if [ -f "$CALLER_PWD/$c" ] && [ ! "$CALLER_PWD/$c" -ef "$ROOT/$c" ]; then c="$CALLER_PWD/$c"; fi ;;
    esac
    [ -f "$c" ] || die "config file $CONFIG not found"
    CONFIG=$c
}

# ini_file_get FILE SECTION KEY: the last value of KEY in [SECTION], like inih
# reads it (';' or '#' starts a comment line, ' ;' an inline comment).
ini_file_get() {
    awk -v want_s="$2" -v want_k="$3" '
        function trim(s) { sub(/^[ \t\r]+/, "", s); sub(/[ \t\r]+$/, "", s); return s }
        { line = trim($0) }
        line == "" || line ~ /^[;#]/ { next }
        line ~ /^\[/ { sect = line; sub(/^\[/, "", sect); sub(/\].*$/, "", sect); sect = trim(sect); next }
        sect != want_s { next }
        {
            eq = index(line, "="); if (eq == 0) eq = index(line, ":"); if (eq == 0) next
            k = trim(substr(line, 1, eq - 1)); if (k != want_k) next
            v = substr(line, eq + 1); sub(/[ \t];.*$/, "", v); val = trim(v); found = 1
        }
        END { if (found) print val; exit(found ? 0 : 1) }
    ' "$1"
}

# cfg SECTION KEY DEFAULT: environment PROFILE_<SECTION>_<KEY>, else the INI
# file, else DEFAULT (keep the defaults equal to src/common/config.c).
cfg() {
    local var="PROFILE_${1^^}_${2^^}" v
    if [ -n "${!var+x}" ]; then printf '%s\n' "${!var}"; return; fi
    if v=$(ini_file_get "$CONFIG" "$1" "$2"); then printf '%s\n' "$v"; else printf '%s\n' "$3"; fi
}

abspath() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$ROOT/$1" ;; esac; }

load_config() {
    resolve_config
    VAR=$(abspath "$(cfg stack var_dir var)")
    RUN_DIR=$VAR/run
    LOG_DIR=$VAR/log
    MANAGE_MYSQL=$(cfg stack manage_mysql 1)
    MANAGE_REDIS=$(cfg stack manage_redis 1)
    USERS=$(cfg stack users 10000000)
    # CPU scheduling policy of the servers, MariaDB and Redis (docs/performance.md).
    case $(cfg stack cpu_scheduling batch) in
    batch) SCHED=(chrt --batch 0) ;;
    other) SCHED=() ;;
    *) die "[stack] cpu_scheduling must be batch or other" ;;
    esac
    WEB_HOST=$(cfg web host 127.0.0.1)
    WEB_PORT=$(cfg web port 8080)
    CORE_HOST=$(cfg core host 127.0.0.1)
    CORE_PORT=$(cfg core port 9090)
    ENV_FILE=$(abspath "$(cfg core env_file .env)")
    WEB_ENV_FILE=$(abspath "$(cfg web env_file .env.web)")
    PICTURE_DIR=$(abspath "$(cfg picture dir var/data/pictures)")
    MYSQL_HOST=$(cfg mysql host 127.0.0.1)
    MYSQL_PORT=$(cfg mysql port 13306)
    MYSQL_USER=$(cfg mysql user profile)
    MYSQL_DB=$(cfg mysql database profile)
    REDIS_HOST=$(cfg redis host 127.0.0.1)
    REDIS_PORT=$(cfg redis port 16379)
    NGINX_ENABLED=$(cfg nginx enabled 1)
    NGINX_HOST=$(cfg nginx host 127.0.0.1)
    NGINX_PORT=$(cfg nginx port 8000)
    NGINX_PROXY_ADDRESS=$(cfg nginx proxy_address 127.0.0.2)
    NGINX_LOGIN_RATE=$(cfg nginx login_rate 30r/m)
    NGINX_LOGIN_BURST=$(cfg nginx login_burst 10)
    NGINX_LOGIN_EXEMPT=$(cfg nginx login_exempt "")
    NGINX_DIR=$VAR/nginx
    NGINX_CONF=$NGINX_DIR/nginx.conf
    NGINX_PIDFILE=$RUN_DIR/nginx.pid
    STATIC_DIR=$(abspath "$(cfg web static_dir web/static)")
    MAX_BYTES=$(cfg picture max_bytes 10M)
    MYSQL_SOCKET=$RUN_DIR/mysqld.sock
    MYSQL_CNF=$RUN_DIR/my.cnf
    MYSQL_PIDFILE=$RUN_DIR/mysqld.pid
    REDIS_PIDFILE=$RUN_DIR/redis.pid
    ME=$(id -un)
}

ensure_dirs() { mkdir -p "$RUN_DIR" "$LOG_DIR" "$PICTURE_DIR"; }

# --- secrets ------------------------------------------------------------------------

random_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }

# Creates the secrets file (mode 0600) when missing and adds whichever of
# JWT_SECRET / MYSQL_PASSWORD it lacks; sets MYSQL_PASSWORD for this script.
ensure_secrets() {
    mkdir -p "$(dirname "$ENV_FILE")"
    if [ ! -f "$ENV_FILE" ]; then
        (umask 077 && printf '# Secrets of the profile service. Mode 0600, never commit.\n' >"$ENV_FILE")
        say "created $ENV_FILE (mode 0600)"
    fi
    chmod 600 "$ENV_FILE"
    grep -q '^[[:space:]]*JWT_SECRET[[:space:]]*=' "$ENV_FILE" || printf 'JWT_SECRET=%s\n' "$(random_hex 32)" >>"$ENV_FILE"
    grep -q '^[[:space:]]*MYSQL_PASSWORD[[:space:]]*=' "$ENV_FILE" || printf 'MYSQL_PASSWORD=%s\n' "$(random_hex 16)" >>"$ENV_FILE"
    if [ -z "${MYSQL_PASSWORD+x}" ]; then
        # Same reading as config_load_secrets(): last line wins, trimmed, quotes removed.
        MYSQL_PASSWORD=$(sed -n 's/^[[:space:]]*MYSQL_PASSWORD[[:space:]]*=[[:space:]]*//p' "$ENV_FILE" |
            tail -n 1 | sed "s/[[:space:]]*\$//; s/^\"\\(.*\\)\"\$/\\1/; s/^'\\(.*\\)'\$/\\1/")
    fi
    [ -n "$MYSQL_PASSWORD" ] || die "$ENV_FILE: MYSQL_PASSWORD is empty"
    ensure_web_secrets
}

# The web server's own secrets file: CSRF_SECRET only (the key of the HTML
# forms' CSRF tokens, shared by every web process of this instance so forms
# survive restarts), never the JWT secret or the database password.
ensure_web_secrets() {
    mkdir -p "$(dirname "$WEB_ENV_FILE")"
    if [ ! -f "$WEB_ENV_FILE" ]; then
        (umask 077 && printf '# Secrets of the profile web server. Mode 0600, never commit.\n' >"$WEB_ENV_FILE")
        say "created $WEB_ENV_FILE (mode 0600)"
    fi
    chmod 600 "$WEB_ENV_FILE"
    grep -q '^[[:space:]]*CSRF_SECRET[[:space:]]*=' "$WEB_ENV_FILE" || printf 'CSRF_SECRET=%s\n' "$(random_hex 32)" >>"$WEB_ENV_FILE"
}

# --- processes ------------------------------------------------------------------------

# pid_alive PIDFILE PATTERN: prints the pid when the file names a live process
# whose command line contains PATTERN (a fixed string that names this
# instance where it can, so a recycled pid is never mistaken for ours).
pid_alive() {
    local pid
    [ -f "$1" ] || return 1
    pid=$(tr -dc '0-9' <"$1")
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$2" || return 1
    printf '%s\n' "$pid"
}

# spawned_alive PIDFILE: the process spawn() just started still exists.
spawned_alive() {
    local pid
    pid=$(tr -dc '0-9' <"$1" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ -d "/proc/$pid" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# wait_for SECONDS DESCRIPTION PIDFILE NAME COMMAND...: polls COMMAND until it
# succeeds; fails early when the process behind PIDFILE has died. (NAME is
# kept for the callers' symmetry with pid_alive.)
wait_for() {
    local secs=$1 what=$2 pidfile=$3 name=$4 i
    shift 4
    for ((i = 0; i < secs * 10; i++)); do
        if "$@"; then return 0; fi
        # The process we just spawned must still exist. (Not pid_alive: for a
        # moment after the fork the child's command line is still this
        # script's, so a name check could report a live server as dead.)
        if [ -n "$pidfile" ] && ! spawned_alive "$pidfile"; then
            say "$what exited during start-up"
            return 1
        fi
        sleep 0.1
    done
    say "$what did not answer within $secs s"
    return 1
}

# stop_process PIDFILE NAME DESCRIPTION GRACE_SECONDS: SIGTERM, wait, SIGKILL.
stop_process() {
    local pidfile=$1 name=$2 what=$3 grace=$4 pid i
    if ! pid=$(pid_alive "$pidfile" "$name"); then
        rm -f "$pidfile"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
        [ -d "/proc/$pid" ] || break
        sleep 0.1
    done
    if [ -d "/proc/$pid" ]; then
        say "$what (pid $pid) still running after $grace s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    fi
    rm -f "$pidfile"
    say "$what stopped"
}

# spawn PIDFILE LOG COMMAND...: starts COMMAND in its own session (so Ctrl-C
# in the terminal reaches only this script, which then stops it in order).
spawn() {
    local pidfile=$1 log=$2
    shift 2
    printf '\n==== %s start: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$log"
    setsid "$@" >>"$log" 2>&1 </dev/null &
    echo $! >"$pidfile"
}

tail_log() { [ -f "$1" ] && tail -n "${2:-20}" "$1" | sed 's/^/    | /' >&2 || true; }

# --- MariaDB ------------------------------------------------------------------------

mysql_root() { mariadb --no-defaults --socket="$MYSQL_SOCKET" -u "$ME" "$@"; }

mysql_app() {
    MYSQL_PWD=$MYSQL_PASSWORD mariadb --no-defaults --protocol=TCP -h "$MYSQL_HOST" -P "$MYSQL_PORT" \
        -u "$MYSQL_USER" "$@"
}

mysql_ping() { mariadb-admin --no-defaults --socket="$MYSQL_SOCKET" -u "$ME" ping >/dev/null 2>&1; }

sql_quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/\\\\/\\\\\\\\/g; s/'/''/g")"; }

write_mysql_cnf() {
    local user_line="" pool logsz
    [ "$(id -u)" -eq 0 ] && user_line="user                           = root"
    pool=$(cfg stack mysql_buffer_pool 2G)
    logsz=$(cfg stack mysql_log_file_size 512M)
    mkdir -p "$VAR/mysql" "$VAR/mysql-tmp"
    sed -e "s|@USER_LINE@|$user_line|" -e "s|@DATADIR@|$VAR/mysql|" -e "s|@SOCKET@|$MYSQL_SOCKET|" \
        -e "s|@PIDFILE@|$RUN_DIR/mysqld.server.pid|" -e "s|@ERRLOG@|$LOG_DIR/mysql.log|" \
        -e "s|@TMPDIR@|$VAR/mysql-tmp|" -e "s|@PORT@|$MYSQL_PORT|" -e "s|@BUFFER_POOL@|$pool|" \
        -e "s|@LOG_FILE_SIZE@|$logsz|" deploy/mariadb/my.cnf >"$MYSQL_CNF.tmp"
    mv "$MYSQL_CNF.tmp" "$MYSQL_CNF"
}

mysql_start() {
    ensure_dirs
    ensure_secrets
    if [ "$MANAGE_MYSQL" != 1 ]; then
        say "MySQL: using the server at $MYSQL_HOST:$MYSQL_PORT ([stack] manage_mysql=0)"
        mysql_app -e 'SELECT 1' "$MYSQL_DB" >/dev/null || die "cannot reach MySQL at $MYSQL_HOST:$MYSQL_PORT as $MYSQL_USER"
        apply_schema
        return
    fi
    # (localhost would make the C client look for the system's socket, not ours.)
    [ "$MYSQL_HOST" = 127.0.0.1 ] ||
        die "[mysql] host is $MYSQL_HOST: the private instance listens on 127.0.0.1 (set [stack] manage_mysql=0 for another server)"
    if pid_alive "$MYSQL_PIDFILE" "$MYSQL_CNF" >/dev/null; then
        say "MariaDB already running on 127.0.0.1:$MYSQL_PORT"
    else
        port_open 127.0.0.1 "$MYSQL_PORT" && die "port $MYSQL_PORT is taken by another process"
        write_mysql_cnf
        if [ ! -d "$VAR/mysql/mysql" ]; then
            say "MariaDB: creating the data directory $VAR/mysql"
            mariadb-install-db --defaults-file="$MYSQL_CNF" --auth-root-authentication-method=socket \
                --auth-root-socket-user="$ME" --skip-test-db >>"$LOG_DIR/mysql-install.log" 2>&1 ||
                { tail_log "$LOG_DIR/mysql-install.log"; die "mariadb-install-db failed (log: $LOG_DIR/mysql-install.log)"; }
        fi
        say "MariaDB: starting on 127.0.0.1:$MYSQL_PORT (log $LOG_DIR/mysql.log)"
        spawn "$MYSQL_PIDFILE" "$LOG_DIR/mysql.out" "${SCHED[@]}" mariadbd --defaults-file="$MYSQL_CNF"
        wait_for 120 MariaDB "$MYSQL_PIDFILE" "$MYSQL_CNF" mysql_ping ||
            { tail_log "$LOG_DIR/mysql.log"; die "MariaDB did not start"; }
    fi
    local pw user_sql=""
    pw=$(sql_quote "$MYSQL_PASSWORD")
    for h in 127.0.0.1 localhost; do
        user_sql+="CREATE USER IF NOT EXISTS '$MYSQL_USER'@'$h' IDENTIFIED BY $pw;
ALTER USER '$MYSQL_USER'@'$h' IDENTIFIED BY $pw;
GRANT ALL PRIVILEGES ON \`$MYSQL_DB\`.* TO '$MYSQL_USER'@'$h';
"
    done
    mysql_root <<SQL || die "cannot create the database and user"
CREATE DATABASE IF NOT EXISTS \`$MYSQL_DB\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
$user_sql
SQL
    apply_schema
}

apply_schema() {
    mysql_app "$MYSQL_DB" <sql/schema.sql || die "applying sql/schema.sql failed"
}

mysql_stop() {
    [ "$MANAGE_MYSQL" = 1 ] || return 0
    # A clean InnoDB shutdown flushes the buffer pool: give it time.
    stop_process "$MYSQL_PIDFILE" "$MYSQL_CNF" MariaDB 300
}

# --- Redis --------------------------------------------------------------------------

redis_ping() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

redis_start() {
    ensure_dirs
    if [ "$MANAGE_REDIS" != 1 ]; then
        say "Redis: using the server at $REDIS_HOST:$REDIS_PORT ([stack] manage_redis=0)"
        return
    fi
    if pid_alive "$REDIS_PIDFILE" "redis-server 127.0.0.1:$REDIS_PORT" >/dev/null; then
        say "Redis already running on 127.0.0.1:$REDIS_PORT"
        return
    fi
    port_open 127.0.0.1 "$REDIS_PORT" && die "port $REDIS_PORT is taken by another process"
    mkdir -p "$VAR/redis"
    rm -f "$REDIS_PIDFILE"
    say "Redis: starting on 127.0.0.1:$REDIS_PORT (log $LOG_DIR/redis.log)"
    # Sessions and cache only: nothing to persist.
    "${SCHED[@]}" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
        --daemonize yes --pidfile "$REDIS_PIDFILE" --logfile "$LOG_DIR/redis.log" --dir "$VAR/redis" ||
        die "redis-server failed to start"
    wait_for 20 Redis "" "" redis_ping || { tail_log "$LOG_DIR/redis.log"; die "Redis did not start"; }
}

redis_stop() {
    [ "$MANAGE_REDIS" = 1 ] || return 0
    stop_process "$REDIS_PIDFILE" "redis-server 127.0.0.1:$REDIS_PORT" Redis 10
}

# --- core and web servers -------------------------------------------------------------

# server_start NAME PORT: NAME is core or web; binary build/profile-NAME.
server_start() {
    local name=$1 host=$2 port=$3 bin="$BUILD_DIR/profile-$1" pidfile="$RUN_DIR/$1.pid"
    ensure_dirs
    [ -x "$bin" ] || die "$bin not built (run: make build)"
    if pid_alive "$pidfile" "profile-$name" >/dev/null; then
        say "$name already running on $host:$port"
        return
    fi
    port_open "$host" "$port" && die "port $port is taken by another process"
    say "$name: starting on $host:$port (log $LOG_DIR/$name.log)"
    spawn "$pidfile" "$LOG_DIR/$name.log" "${SCHED[@]}" "$bin" -c "$CONFIG"
    wait_for 30 "$name" "$pidfile" "profile-$name" port_open "$host" "$port" ||
        { tail_log "$LOG_DIR/$name.log"; die "$name did not start"; }
}

server_stop() { stop_process "$RUN_DIR/$1.pid" "profile-$1" "$1" 10; }

# --- nginx ----------------------------------------------------------------------------

# Renders <var_dir>/nginx/{nginx.conf,site.conf,headers.conf} for this instance.
nginx_config() {
    local user_line="" proxies
    mkdir -p "$NGINX_DIR/tmp" "$LOG_DIR"
    [ "$(id -u)" -eq 0 ] && user_line="user root;"
    proxies=$(cfg web trusted_proxies "")
    case ",${proxies// /}," in
    *",$NGINX_PROXY_ADDRESS,"*) ;;
    *) say "warning: [web] trusted_proxies ($proxies) lacks nginx's [nginx] proxy_address $NGINX_PROXY_ADDRESS: client addresses behind nginx will be logged as $NGINX_PROXY_ADDRESS" ;;
    esac
    deploy/nginx/render.sh deploy/nginx/headers.conf.in >"$NGINX_DIR/headers.conf"
    deploy/nginx/site-render.sh --listen "$NGINX_HOST:$NGINX_PORT" --server-name "$NGINX_HOST" \
        --web "$WEB_HOST:$WEB_PORT" --proxy-address "$NGINX_PROXY_ADDRESS" --max-bytes "$MAX_BYTES" \
        --login-rate "$NGINX_LOGIN_RATE" --login-burst "$NGINX_LOGIN_BURST" \
        --login-exempt "$NGINX_LOGIN_EXEMPT" --access-log "$LOG_DIR/nginx-access.log" \
        --headers "$NGINX_DIR/headers.conf" --pictures "$PICTURE_DIR" --static "$STATIC_DIR" \
        --errors "$ROOT/deploy/nginx/errors" >"$NGINX_DIR/site.conf"
    deploy/nginx/render.sh deploy/nginx/nginx-dev.conf.in USER_LINE="$user_line" PREFIX="$NGINX_DIR" \
        ERROR_LOG="$LOG_DIR/nginx-error.log" SITE="$NGINX_DIR/site.conf" >"$NGINX_CONF"
}

nginx_test() {
    nginx_config
    nginx -t -q -c "$NGINX_CONF" -p "$NGINX_DIR" -e stderr
}

nginx_url() { printf 'http://%s:%s/\n' "$NGINX_HOST" "$NGINX_PORT"; }

nginx_start() {
    [ "$NGINX_ENABLED" = 1 ] || return 0
    ensure_dirs
    if pid_alive "$NGINX_PIDFILE" "$NGINX_CONF" >/dev/null; then
        say "nginx already running on $NGINX_HOST:$NGINX_PORT"
        return
    fi
    port_open "$NGINX_HOST" "$NGINX_PORT" && die "port $NGINX_PORT is taken by another process"
    nginx_test || die "nginx -t failed for $NGINX_CONF"
    say "nginx: starting on $NGINX_HOST:$NGINX_PORT (logs $LOG_DIR/nginx-*.log)"
    spawn "$NGINX_PIDFILE" "$LOG_DIR/nginx.out" nginx -c "$NGINX_CONF" -p "$NGINX_DIR" \
        -e "$LOG_DIR/nginx-error.log" -g 'daemon off;'
    wait_for 20 nginx "$NGINX_PIDFILE" "$NGINX_CONF" port_open "$NGINX_HOST" "$NGINX_PORT" ||
        { tail_log "$LOG_DIR/nginx-error.log"; die "nginx did not start"; }
}

nginx_stop() { stop_process "$NGINX_PIDFILE" "$NGINX_CONF" nginx 10; }

# --- population -------------------------------------------------------------------------

populate() {
    [ -x "$BUILD_DIR/profile-populate" ] || die "$BUILD_DIR/profile-populate not built (run: make build)"
    ensure_secrets
    local n=$USERS
    case "${1:-}" in [0-9]*) n=$1; shift ;; esac
    "$BUILD_DIR/profile-populate" -c "$CONFIG" -n "$n" "$@"
}

# --- whole instance ---------------------------------------------------------------------

url() { printf 'http://%s:%s/\n' "$WEB_HOST" "$WEB_PORT"; }

# start_all [POPULATE_OPTIONS]: default --if-empty, so a populated database is
# kept whatever its size (make populate N=... changes it).
start_all() {
    local popt=("$@")
    [ ${#popt[@]} -gt 0 ] || popt=(--if-empty)
    ensure_dirs
    rm -f "$(stop_mark)"
    ensure_secrets
    mysql_start
    redis_start
    populate "$USERS" "${popt[@]}"
    server_start core "$CORE_HOST" "$CORE_PORT"
    server_start web "$WEB_HOST" "$WEB_PORT"
    nginx_start
    say "ready: open $(front_url)  (log in as user1 / password123)"
}

# The URL users should open: nginx when it runs in front, else the web server.
front_url() { if [ "$NGINX_ENABLED" = 1 ]; then nginx_url; else url; fi; }

# Written by stop_all before it stops anything, removed by start_all: tells a
# `run` supervising this instance (make run in another terminal) that the
# servers going away were stopped on purpose (make stop), not crashed.
stop_mark() { printf '%s/stop-requested\n' "$RUN_DIR"; }

stop_all() {
    [ -d "$RUN_DIR" ] && : >"$(stop_mark)"
    nginx_stop
    server_stop web
    server_stop core
    redis_stop
    mysql_stop
}

status_line() {
    local what=$1 pidfile=$2 name=$3 where=$4 pid
    if pid=$(pid_alive "$pidfile" "$name"); then
        printf '%-8s running  pid %-8s %s\n' "$what" "$pid" "$where"
    else
        printf '%-8s stopped\n' "$what"
    fi
}

status_all() {
    if [ "$MANAGE_MYSQL" = 1 ]; then
        status_line mysql "$MYSQL_PIDFILE" "$MYSQL_CNF" "127.0.0.1:$MYSQL_PORT"
    else
        printf '%-8s external %s:%s\n' mysql "$MYSQL_HOST" "$MYSQL_PORT"
    fi
    if [ "$MANAGE_REDIS" = 1 ]; then
        status_line redis "$REDIS_PIDFILE" "redis-server 127.0.0.1:$REDIS_PORT" "127.0.0.1:$REDIS_PORT"
    else
        printf '%-8s external %s:%s\n' redis "$REDIS_HOST" "$REDIS_PORT"
    fi
    status_line core "$RUN_DIR/core.pid" profile-core "$CORE_HOST:$CORE_PORT"
    status_line web "$RUN_DIR/web.pid" profile-web "$(url)"
    if [ "$NGINX_ENABLED" = 1 ]; then
        status_line nginx "$NGINX_PIDFILE" "$NGINX_CONF" "$(nginx_url)"
    fi
}

run_foreground() {
    local tail_pid="" stopped_elsewhere=0
    on_exit() {
        trap '' INT TERM HUP
        [ -n "$tail_pid" ] && kill "$tail_pid" 2>/dev/null
        echo >&2
        # make stop is stopping everything already: do not race it
        [ "$stopped_elsewhere" = 1 ] && return
        say "stopping everything..."
        stop_all
    }
    # make stop (stop_all) ran elsewhere: end without a second stop_all.
    end_stopped_elsewhere() {
        say "stopped from elsewhere (make stop): ending the run"
        stopped_elsewhere=1
        exit 0
    }
    trap on_exit EXIT
    # Ctrl-C is how a user ends `make run`: a clean stop is a success.
    trap 'exit 0' INT TERM
    trap 'exit 129' HUP
    start_all "$@"
    echo
    if [ "$NGINX_ENABLED" = 1 ]; then
        echo "  Profile service: $(nginx_url)  (through nginx)"
        echo "  Web server directly: $(url)"
    else
        echo "  Profile service: $(url)"
    fi
    echo "  Log in as user1 / password123 (user1 .. user$USERS all work)."
    echo "  Logs: $LOG_DIR/{core,web,nginx-access}.log   Press Ctrl-C to stop."
    echo
    tail -n 0 -F "$LOG_DIR/core.log" "$LOG_DIR/web.log" &
    tail_pid=$!
    # Supervise until a signal arrives, as systemd's Restart=always would: a
    # server that dies is started again after a pause, so the other one keeps
    # serving (the web server answers 503 while the core is away). A server
    # that keeps dying (5 restarts within a minute) ends the run.
    local -A restarts=()
    local -A window=()
    while :; do
        for s in core web; do
            if ! pid_alive "$RUN_DIR/$s.pid" "profile-$s" >/dev/null; then
                [ -e "$(stop_mark)" ] && end_stopped_elsewhere
                local now
                now=$(date +%s)
                if [ $((now - ${window[$s]:-0})) -gt 60 ]; then
                    window[$s]=$now
                    restarts[$s]=0
                fi
                restarts[$s]=$((${restarts[$s]:-0} + 1))
                if [ "${restarts[$s]}" -gt 5 ]; then
                    say "$s keeps exiting (see $LOG_DIR/$s.log); giving up"
                    exit 1
                fi
                say "$s exited unexpectedly (see $LOG_DIR/$s.log); restarting it in 2 s"
                sleep 2
                [ -e "$(stop_mark)" ] && end_stopped_elsewhere
                if [ "$s" = core ]; then
                    server_start core "$CORE_HOST" "$CORE_PORT" || say "core did not come back"
                else
                    server_start web "$WEB_HOST" "$WEB_PORT" || say "web did not come back"
                fi
                # A make stop that began while it was starting may have missed it.
                if [ -e "$(stop_mark)" ]; then
                    server_stop "$s"
                    end_stopped_elsewhere
                fi
            fi
        done
        if [ "$NGINX_ENABLED" = 1 ] && ! pid_alive "$NGINX_PIDFILE" "$NGINX_CONF" >/dev/null; then
            [ -e "$(stop_mark)" ] && end_stopped_elsewhere
            say "nginx exited unexpectedly (see $LOG_DIR/nginx-error.log)"
            exit 1
        fi
        sleep 1 &
        wait $! || true
    done
}

use_test_config() {
    if [ -z "$CONFIG_EXPLICIT" ]; then CONFIG=etc/test.ini; fi
    load_config
    USERS=${PROFILE_TEST_USERS:-$USERS}
}

test_up() {
    # Fresh data every run: the tests change nicknames and pictures.
    case "$PICTURE_DIR/" in
    "$VAR"/*) rm -rf "$PICTURE_DIR" ;;
    *) say "not clearing $PICTURE_DIR: it is outside $VAR" ;;
    esac
    start_all --force
}

# The browser tests' npm packages (tests/e2e/package-lock.json), installed
# exactly as locked when node_modules is missing or older than the lock file.
e2e_deps() {
    local dir=tests/e2e
    command -v npm >/dev/null || die "npm not found (run: scripts/stack.sh deps)"
    if [ -d "$dir/node_modules" ] && [ ! "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
        return 0
    fi
    say "e2e: npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund) || die "npm ci in $dir failed"
    touch "$dir/node_modules"
}

run_tests() {
    local rc=0
    e2e_deps
    trap 'stop_all' EXIT
    trap 'exit 130' INT TERM
    test_up
    PROFILE_WEB_URL="http://$WEB_HOST:$WEB_PORT" PROFILE_CONFIG="$CONFIG" PROFILE_STACK=scripts/stack.sh \
        ctest --test-dir "$BUILD_DIR" --output-on-failure || rc=$?
    say "ctest exited with status $rc"
    if [ "$NGINX_ENABLED" = 1 ]; then
        # The same integration suite again, every request through nginx.
        say "integration tests again through nginx at $(nginx_url)"
        PROFILE_WEB_URL="http://$NGINX_HOST:$NGINX_PORT" PROFILE_VIA_NGINX=1 PROFILE_CONFIG="$CONFIG" \
            PROFILE_STACK=scripts/stack.sh ctest --test-dir "$BUILD_DIR" --output-on-failure \
            -L integration || rc=$?
        say "ctest through nginx: status $rc"
    fi
    exit "$rc"
}

deps() {
    local missing=() p
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        for p in $NODE_PACKAGES; do
            dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
        done
    fi
    if [ ${#missing[@]} -eq 0 ]; then
        say "deps: all Debian packages present"
        return
    fi
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    say "deps: installing ${missing[*]}"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

build() {
    cmake -S . -B "$BUILD_DIR" -G "Unix Makefiles" >/dev/null
    make -C "$BUILD_DIR" -j"$(nproc)"
}

case "$COMMAND" in
deps) deps ;;
build) build ;;
secrets) load_config; ensure_secrets ;;
e2e-deps) e2e_deps ;;
get) resolve_config; [ $# -ge 2 ] || die "usage: get SECTION KEY [DEFAULT]"; cfg "$1" "$2" "${3:-}" ;;
mysql-start) load_config; mysql_start ;;
mysql-stop) load_config; mysql_stop ;;
schema) load_config; ensure_secrets; apply_schema ;;
redis-start) load_config; redis_start ;;
redis-stop) load_config; redis_stop ;;
populate) load_config; populate "$@" ;;
core-start) load_config; ensure_secrets; server_start core "$CORE_HOST" "$CORE_PORT" ;;
core-stop) load_config; server_stop core ;;
web-start) load_config; ensure_web_secrets; server_start web "$WEB_HOST" "$WEB_PORT" ;;
web-stop) load_config; server_stop web ;;
nginx-start) load_config; nginx_start ;;
nginx-stop) load_config; nginx_stop ;;
nginx-config) load_config; nginx_config; printf '%s\n' "$NGINX_CONF" ;;
nginx-test) load_config; nginx_test ;;
start) load_config; start_all "$@" ;;
stop) load_config; stop_all ;;
status) load_config; status_all ;;
run) load_config; run_foreground "$@" ;;
test) use_test_config; run_tests ;;
test-up) use_test_config; test_up ;;
test-down) use_test_config; stop_all ;;
*) die "unknown command $COMMAND (see --help)" ;;
esac
