#!/usr/bin/env bash
# site-render.sh OPTIONS: prints the nginx site of profile-site.conf.in for
# one instance (used by deploy/install.sh and scripts/stack.sh).
#   --listen ADDR            nginx listen (80, 127.0.0.1:8000...)
#   --server-name NAME       server_name (default _)
#   --web HOST:PORT          the web server (upstream)
#   --proxy-address IP       source address towards the web server, the one
#                            [web] trusted_proxies must name (default 127.0.0.2)
#   --max-bytes N            [picture] max_bytes (10M, 10485760...); the body
#                            limit adds 64 KiB of multipart envelope
#   --login-rate RATE        limit_req rate per client address (default 30r/m)
#   --login-burst N          burst passed at once (default 10)
#   --login-exempt "IP ..."  addresses never rate-limited (default none)
#   --access-log PATH        --headers PATH (the headers snippet)
#   --pictures DIR           --static DIR    --errors DIR (error pages)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
server_name=_ proxy_address=127.0.0.2 max_bytes=10M rate=30r/m burst=10 exempt=""
listen="" web="" access_log="" headers="" pictures="" static="" errors=""
while [ $# -gt 0 ]; do
    case "$1" in
    --listen) listen=$2 ;;
    --server-name) server_name=$2 ;;
    --web) web=$2 ;;
    --proxy-address) proxy_address=$2 ;;
    --max-bytes) max_bytes=$2 ;;
    --login-rate) rate=$2 ;;
    --login-burst) burst=$2 ;;
    --login-exempt) exempt=$2 ;;
    --access-log) access_log=$2 ;;
    --headers) headers=$2 ;;
    --pictures) pictures=$2 ;;
    --static) static=$2 ;;
    --errors) errors=$2 ;;
    *) echo "site-render.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift 2
done
for v in listen web access_log headers pictures static errors; do
    [ -n "${!v}" ] || { echo "site-render.sh: --${v//_/-} is required" >&2; exit 2; }
done

# [picture] max_bytes as config.c reads it: digits, optional K/M/G (+ B or iB).
if [[ ! $max_bytes =~ ^([0-9]+)([KkMmGg]?)(i?B)?$ ]]; then
    echo "site-render.sh: bad --max-bytes $max_bytes" >&2
    exit 2
fi
bytes=${BASH_REMATCH[1]}
case "${BASH_REMATCH[2]}" in K | k) bytes=$((bytes << 10)) ;; M | m) bytes=$((bytes << 20)) ;; G | g) bytes=$((bytes << 30)) ;; esac
# Exactly the web server's caps (src/web/server.c: MULTIPART_OVERHEAD = 64 KiB).
max_body=$((bytes + 65536))

# Retry-After: seconds until the limiter lets the next request through.
if [[ $rate =~ ^([0-9]+)r/s$ ]]; then
    retry=1
elif [[ $rate =~ ^([0-9]+)r/m$ ]] && [ "${BASH_REMATCH[1]}" -gt 0 ]; then
    retry=$(((60 + BASH_REMATCH[1] - 1) / BASH_REMATCH[1]))
else
    echo "site-render.sh: bad --login-rate $rate (N r/s or N r/m)" >&2
    exit 2
fi

geo=""
for ip in $exempt; do geo+="    $ip 1;"$'\n'; done
[ -n "$geo" ] || geo="    # (no exempt addresses)"$'\n'

exec "$HERE/render.sh" "$HERE/profile-site.conf.in" LISTEN="$listen" SERVER_NAME="$server_name" \
    WEB_ADDRESS="$web" PROXY_ADDRESS="$proxy_address" MAX_BODY="$max_body" PICTURE_BODY="$bytes" \
    PICTURE_MAX="$max_bytes bytes" LOGIN_RATE="$rate" LOGIN_BURST="$burst" RETRY_AFTER_S="$retry" \
    LOGIN_EXEMPT_GEO="${geo%$'\n'}" ACCESS_LOG="$access_log" HEADERS_SNIPPET="$headers" \
    PICTURE_DIR="$pictures" STATIC_DIR="$static" ERRORS_DIR="$errors"
