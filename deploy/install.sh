#!/usr/bin/env bash
# install.sh: install the profile service on a Debian 12 host (make install).
#
#   deploy/install.sh [--destdir DIR] [--prefix /usr/local] [--build-dir build]
#                     [--user profile] [--web-port 8080] [--core-port 9090]
#                     [--listen 80] [--server-name _]
#
# Installs, from a built tree (make build):
#   <prefix>/bin/profile-core, profile-web, profile-populate
#   <prefix>/share/profile/    templates, static files, nginx error pages, schema, docs
#   /etc/profile/profile.ini   the configuration (production paths and ports)
#   /etc/profile/secrets.env   JWT_SECRET and MYSQL_PASSWORD, generated, root-only (0600)
#   /etc/systemd/system/       profile-core.socket, profile-core.service, profile-web.service,
#                              profile.target
#   /etc/nginx/sites-available/profile.conf (+ sites-enabled link) and
#   /etc/nginx/snippets/profile-headers.conf
#   /etc/logrotate.d/profile
#   /var/lib/profile/pictures  (owner: the service user), /var/log/profile
# and creates the system user. Re-running it is safe: programs, units and
# the nginx site are replaced; the configuration and the secrets are never
# overwritten (a changed template is left beside it as profile.ini.new);
# users and directories are created only when missing.
#
# --destdir DIR installs into DIR instead of / (packaging and tests): no user
# is created, nothing is chowned, systemd and nginx are not touched.
# MySQL/MariaDB and Redis are not installed or configured here: see
# docs/operations.md ("Install") for the database, user and schema.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DESTDIR=""
PREFIX=/usr/local
BUILD_DIR=build
SVC_USER=profile
WEB_PORT=8080
CORE_PORT=9090
LISTEN=80
SERVER_NAME=_
# nginx connects to the web server from this address (its proxy_bind), the
# only one [web] trusted_proxies believes.
PROXY_ADDRESS=127.0.0.2

die() { printf 'install: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'install: %s\n' "$*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
    --destdir) DESTDIR=${2:?}; shift 2 ;;
    --prefix) PREFIX=${2:?}; shift 2 ;;
    --build-dir) BUILD_DIR=${2:?}; shift 2 ;;
    --user) SVC_USER=${2:?}; shift 2 ;;
    --web-port) WEB_PORT=${2:?}; shift 2 ;;
    --core-port) CORE_PORT=${2:?}; shift 2 ;;
    --listen) LISTEN=${2:?}; shift 2 ;;
    --server-name) SERVER_NAME=${2:?}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
done
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR=$ROOT/$BUILD_DIR ;; esac
if [ -n "$DESTDIR" ]; then
    mkdir -p "$DESTDIR"
    DESTDIR=$(cd "$DESTDIR" && pwd)
else
    [ "$(id -u)" -eq 0 ] || die "run as root (or with --destdir DIR)"
fi

BIN_DIR=$PREFIX/bin
SHARE_DIR=$PREFIX/share/profile
DOC_DIR=$PREFIX/share/doc/profile
CONF_DIR=/etc/profile
STATE_DIR=/var/lib/profile
LOG_DIR=/var/log/profile
UNIT_DIR=/etc/systemd/system
RENDER=$ROOT/deploy/nginx/render.sh

for p in profile-core profile-web profile-populate; do
    [ -x "$BUILD_DIR/$p" ] || die "$BUILD_DIR/$p is not built (run: make build)"
done

d() { printf '%s%s\n' "$DESTDIR" "$1"; } # path under DESTDIR

# --- the service user ------------------------------------------------------------
if [ -z "$DESTDIR" ] && ! id -u "$SVC_USER" >/dev/null 2>&1; then
    say "creating system user $SVC_USER"
    useradd --system --user-group --no-create-home --home-dir "$STATE_DIR" \
        --shell /usr/sbin/nologin "$SVC_USER"
fi
SVC_GROUP=$SVC_USER

# --- programs and shared files ------------------------------------------------------
install -d -m 0755 "$(d "$BIN_DIR")" "$(d "$SHARE_DIR")" "$(d "$DOC_DIR")"
for p in profile-core profile-web profile-populate; do
    # install(1) writes a new file and renames it: a running binary is not
    # modified under the process (upgrade, then restart).
    install -m 0755 "$BUILD_DIR/$p" "$(d "$BIN_DIR")/$p"
done
rm -rf "$(d "$SHARE_DIR")/web.new"
cp -R "$ROOT/web" "$(d "$SHARE_DIR")/web.new"
rm -rf "$(d "$SHARE_DIR")/web"
mv "$(d "$SHARE_DIR")/web.new" "$(d "$SHARE_DIR")/web"
install -d -m 0755 "$(d "$SHARE_DIR")/nginx-errors"
install -m 0644 "$ROOT"/deploy/nginx/errors/* "$(d "$SHARE_DIR")/nginx-errors/"
install -m 0644 "$ROOT/sql/schema.sql" "$(d "$SHARE_DIR")/schema.sql"
install -m 0644 "$ROOT"/docs/*.md "$(d "$DOC_DIR")/"

# --- configuration (kept across re-runs) ----------------------------------------------
# ini_set SECTION KEY VALUE: rewrites KEY's line in [SECTION] of stdin.
ini_set() {
    awk -v s="$1" -v k="$2" -v v="$3" '
        /^[ \t]*\[/ { sect = $0; gsub(/[][ \t]/, "", sect) }
        sect == s && $0 ~ "^[ \t]*" k "[ \t]*=" { print k " = " v; next }
        { print }'
}
render_ini() {
    ini_set web port "$WEB_PORT" <"$ROOT/etc/profile.ini" |
        ini_set web trusted_proxies "$PROXY_ADDRESS" |
        ini_set web templates_dir "$SHARE_DIR/web/templates" |
        ini_set web static_dir "$SHARE_DIR/web/static" |
        ini_set rpc core_port "$CORE_PORT" |
        ini_set core port "$CORE_PORT" |
        ini_set core env_file "" |
        ini_set web env_file "" |
        ini_set picture dir "$STATE_DIR/pictures" |
        ini_set mysql port 3306 |
        ini_set redis port 6379 |
        sed -e 's/^; profile.ini: configuration of the development instance.*/; profile.ini: configuration of the installed profile service (deploy\/install.sh)./'
}
install -d -m 0755 "$(d "$CONF_DIR")"
ini=$(d "$CONF_DIR/profile.ini")
render_ini >"$ini.tmp"
if [ ! -f "$ini" ]; then
    mv "$ini.tmp" "$ini"
    chmod 0644 "$ini"
    say "wrote $CONF_DIR/profile.ini"
elif cmp -s "$ini.tmp" "$ini"; then
    rm -f "$ini.tmp"
else
    mv "$ini.tmp" "$ini.new"
    say "kept $CONF_DIR/profile.ini; the new template is $CONF_DIR/profile.ini.new (compare and merge)"
fi
# The web server's own environment: its CSRF key (never the core's secrets)
# and any PROFILE_<SECTION>_<KEY> overrides. Root-only: systemd reads it.
webenv=$(d "$CONF_DIR/web.env")
if [ ! -f "$webenv" ]; then
    (
        umask 077
        printf '# Environment of profile-web, read by systemd (EnvironmentFile=) as root.\n'
        printf '# CSRF_SECRET keys the form tokens; PROFILE_<SECTION>_<KEY>=value overrides go here too.\n'
    ) >"$webenv"
fi
if ! grep -q '^CSRF_SECRET=' "$webenv"; then
    printf 'CSRF_SECRET=%s\n' "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >>"$webenv"
    say "generated CSRF_SECRET in $CONF_DIR/web.env"
fi
chmod 0600 "$webenv"

secrets=$(d "$CONF_DIR/secrets.env")
if [ ! -f "$secrets" ]; then
    (
        umask 077
        printf '# Secrets of the profile service: read by systemd (EnvironmentFile=) as root.\n'
        printf '# Mode 0600. Rotating JWT_SECRET logs everybody out (docs/operations.md).\n'
        printf 'JWT_SECRET=%s\n' "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
        printf 'MYSQL_PASSWORD=%s\n' "$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
    ) >"$secrets.tmp"
    mv "$secrets.tmp" "$secrets"
    say "generated $CONF_DIR/secrets.env (JWT_SECRET, MYSQL_PASSWORD; mode 0600)"
fi
chmod 0600 "$secrets"

# --- systemd units ----------------------------------------------------------------------
install -d -m 0755 "$(d "$UNIT_DIR")"
for u in core web; do
    "$RENDER" "$ROOT/deploy/systemd/profile-$u.service.in" UNIT_DIR="$UNIT_DIR" DOC_DIR="$DOC_DIR" \
        BIN_DIR="$BIN_DIR" CONF_DIR="$CONF_DIR" STATE_DIR="$STATE_DIR" USER="$SVC_USER" \
        GROUP="$SVC_GROUP" >"$(d "$UNIT_DIR")/profile-$u.service.tmp"
    mv "$(d "$UNIT_DIR")/profile-$u.service.tmp" "$(d "$UNIT_DIR")/profile-$u.service"
    chmod 0644 "$(d "$UNIT_DIR")/profile-$u.service"
done
install -m 0644 "$ROOT/deploy/systemd/profile.target" "$(d "$UNIT_DIR")/profile.target"
"$RENDER" "$ROOT/deploy/systemd/profile-core.socket.in" CORE_LISTEN="127.0.0.1:$CORE_PORT" \
    >"$(d "$UNIT_DIR")/profile-core.socket"
chmod 0644 "$(d "$UNIT_DIR")/profile-core.socket"

# --- nginx site --------------------------------------------------------------------------
max_bytes=$(awk -F= '/^\[picture\]/{p=1;next} /^\[/{p=0} p && $1 ~ /^[ \t]*max_bytes[ \t]*$/ {gsub(/[ \t]/,"",$2); print $2}' "$ini")
install -d -m 0755 "$(d /etc/nginx/sites-available)" "$(d /etc/nginx/sites-enabled)" "$(d /etc/nginx/snippets)"
"$RENDER" "$ROOT/deploy/nginx/headers.conf.in" >"$(d /etc/nginx/snippets/profile-headers.conf)"
"$ROOT/deploy/nginx/site-render.sh" --max-bytes "${max_bytes:-10M}" --listen "$LISTEN" \
    --server-name "$SERVER_NAME" --web "127.0.0.1:$WEB_PORT" --proxy-address "$PROXY_ADDRESS" \
    --access-log /var/log/nginx/profile.access.log --headers /etc/nginx/snippets/profile-headers.conf \
    --pictures "$STATE_DIR/pictures" --static "$SHARE_DIR/web/static" \
    --errors "$SHARE_DIR/nginx-errors" >"$(d /etc/nginx/sites-available/profile.conf)"
ln -sfn ../sites-available/profile.conf "$(d /etc/nginx/sites-enabled/profile.conf)"

# --- logrotate ---------------------------------------------------------------------------
install -d -m 0755 "$(d /etc/logrotate.d)"
install -m 0644 "$ROOT/deploy/logrotate/profile" "$(d /etc/logrotate.d/profile)"

# --- data directories --------------------------------------------------------------------
install -d -m 0755 "$(d "$STATE_DIR")" "$(d "$STATE_DIR/pictures")" "$(d "$LOG_DIR")"
if [ -z "$DESTDIR" ]; then
    chown "$SVC_USER:$SVC_GROUP" "$STATE_DIR" "$STATE_DIR/pictures" "$LOG_DIR"
fi

# --- activate ------------------------------------------------------------------------------
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if command -v nginx >/dev/null 2>&1; then
        nginx -t && systemctl reload nginx || say "nginx: check the site with nginx -t"
    fi
fi
say "installed into ${DESTDIR:-/}"
echo
echo "  Next: create the MySQL database and user (docs/operations.md, \"Install\"), then"
echo "    systemctl daemon-reload && systemctl enable --now profile.target"
echo "  Check: curl -fsS http://127.0.0.1:$WEB_PORT/readyz ; journalctl -u profile-core -u profile-web"
