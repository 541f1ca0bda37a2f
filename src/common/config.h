/*
 * config: the one configuration struct shared by every program.
 *
 * Values come, in increasing precedence, from the built-in defaults, the INI
 * file (parsed with inih; etc/profile.ini documents every key), and
 * environment variables named PROFILE_<SECTION>_<KEY> in upper case
 * (e.g. PROFILE_WEB_PORT=8081). Secrets never come from the INI file: they
 * are read from the .env file named by [core] env_file (KEY=VALUE lines) or
 * from the process environment, which wins.
 *
 * Loaded once at start-up into one struct and treated as read-only afterwards,
 * so threads may read it without locks.
 */
#ifndef PROFILE_COMMON_CONFIG_H
#define PROFILE_COMMON_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define CONFIG_STR_MAX 256 /* bytes, including the NUL; longer values are an error */

struct config_web {
    char host[CONFIG_STR_MAX]; /* listen address; default 127.0.0.1 */
    int port;                  /* listen TCP port; default 8080 */
    int threads;               /* HTTP event-loop threads; default 4 */
    int cookie_secure;         /* 1: add Secure to cookies (HTTPS site) */
    char
        trusted_proxies[CONFIG_STR_MAX]; /* comma-separated IPs whose X-Forwarded-For is believed */
    char templates_dir[CONFIG_STR_MAX];  /* HTML templates; default web/templates */
    char static_dir[CONFIG_STR_MAX];     /* CSS, images; default web/static */
    int connection_timeout_s;            /* idle HTTP connection timeout, seconds; default 75 */
    char env_file[CONFIG_STR_MAX];       /* the web server's secrets file (CSRF_SECRET only);
                                            default .env.web */
};

struct config_rpc {
    char core_host[CONFIG_STR_MAX]; /* where the web server finds the core; default 127.0.0.1 */
    int core_port;                  /* default 9090 */
    int pool_size;      /* max persistent connections web -> core for fast requests; default 64 */
    int slow_pool_size; /* connections and worker threads for slow requests (logins, uploads);
                           default 16 */
    int connect_timeout_ms; /* TCP connect to the core, milliseconds; default 500 */
    int io_timeout_ms;      /* whole exchange of a fast request (profile read, nickname), ms;
                               default 2000: a hung core costs a web thread at most this long */
    int slow_io_timeout_ms; /* whole exchange of a slow request (login, picture), ms; default 15000
                             */
    int pool_wait_ms;       /* wait for a free pooled connection, milliseconds; default 1000 */
    uint32_t max_frame_bytes; /* largest frame either side accepts, bytes; default 16 MiB */
};

struct config_core {
    char host[CONFIG_STR_MAX];     /* listen address; default 127.0.0.1 */
    int port;                      /* default 9090 */
    int max_connections;           /* open RPC connections; default 256 */
    int io_threads;                /* RPC event-loop threads (rpc/server.h); default 1 */
    int workers;                   /* threads for blocking requests (MySQL, argon2id, pictures);
                                      default 64 */
    int idle_timeout_s;            /* RPC connections without a request for this long are
                                      closed, seconds; default 60 */
    int group_commits;             /* nickname-edit batches (one UPDATE each) in flight at once;
                                      edits arriving meanwhile wait and join the next batch;
                                      default 2 */
    int hash_threads;              /* concurrent argon2id computations; 0 = number of CPUs */
    int token_ttl_s;               /* session (JWT and Redis key) lifetime, seconds; default 3600 */
    int cache_ttl_s;               /* profile cache entry lifetime, seconds; default 300 */
    int credential_cache_entries;  /* verified logins remembered (core/credcache.h); default 262144
                                    */
    int token_cache_entries;       /* verified session tokens remembered (core/token.h); 0 = off;
                                      default 65536 */
    int credential_cache_ttl_s;    /* how long a verified login is trusted, seconds; 0 = off;
                                      default 3600 (the session lifetime) */
    char env_file[CONFIG_STR_MAX]; /* file holding secrets (JWT_SECRET, MYSQL_PASSWORD); default
                                      .env */
};

struct config_password {
    uint64_t opslimit; /* argon2id passes; default 2 (OWASP minimum) */
    uint64_t memlimit; /* argon2id memory, bytes; default 19 MiB (OWASP minimum) */
};

struct config_picture {
    char dir[CONFIG_STR_MAX]; /* where accepted pictures are stored; default var/data/pictures */
    size_t max_bytes;         /* largest accepted upload, bytes; default 10 MiB */
    int max_side_px;          /* avatars are resized to fit this square, pixels; default 256 */
    char url_prefix[64]; /* URL path under which the web server serves them; default /pictures/ */
};

struct config_mysql {
    char host[CONFIG_STR_MAX];     /* default 127.0.0.1 */
    int port;                      /* default 13306 (the private instance) */
    char user[CONFIG_STR_MAX];     /* default profile */
    char database[CONFIG_STR_MAX]; /* default profile */
    int pool_size;                 /* max connections the core opens; default 32 */
    int connect_timeout_s;         /* seconds; default 2 */
    char password[CONFIG_STR_MAX]; /* secret: MYSQL_PASSWORD from .env, never from the INI */
};

struct config_redis {
    char host[CONFIG_STR_MAX]; /* default 127.0.0.1 */
    int port;                  /* default 16379 (the private instance) */
    int pool_size;  /* max connections the core opens; default 80 (> workers + io_threads) */
    int timeout_ms; /* connect and command timeout, milliseconds; default 1000 */
};

struct config_log {
    int level;                 /* enum log_level; default LOG_INFO */
    char file[CONFIG_STR_MAX]; /* append lines here (reopened on SIGHUP); "" = stderr (default) */
    int buffer_kb; /* INFO/DEBUG lines gathered before one write(2), KiB; 0 = a write per line;
                      default 64 (log.h, log_set_buffer) */
};

struct config {
    struct config_web web;
    struct config_rpc rpc;
    struct config_core core;
    struct config_password password;
    struct config_picture picture;
    struct config_mysql mysql;
    struct config_redis redis;
    struct config_log log;
    /* secret: JWT_SECRET from .env, raw bytes after hex decoding */
    unsigned char jwt_secret[64];
    size_t jwt_secret_len; /* bytes; 0 when not loaded (the web server never loads it) */
    /* secret of the web server only: CSRF_SECRET, raw bytes after hex decoding */
    unsigned char csrf_secret[64];
    size_t csrf_secret_len; /* bytes; 0 when not configured (a random key per process is used) */
};

/*
 * Fills *cfg with defaults, then the INI file at path (skipped when path is
 * NULL), then PROFILE_* environment variables. Does not read secrets.
 * Returns 0, or -1 with a message on stderr naming the file, line and key
 * when the file cannot be read or holds an unknown key or a bad value.
 */
int config_load(struct config *cfg, const char *path);

/*
 * Reads the secrets from cfg->core.env_file into cfg (JWT_SECRET as 64 hex
 * digits, MYSQL_PASSWORD); an empty env_file reads no file (secrets come
 * from the environment, e.g. systemd's EnvironmentFile=). When create is non-zero and the file is
 * missing, creates it with mode 0600 and a fresh 256-bit JWT_SECRET from libsodium's CSPRNG.
 * Variables of the same names in the process environment win. Returns 0, or -1 with a message on
 * stderr (unreadable file, bad hex, wrong mode when group/other can read it is only warned about).
 */
int config_load_secrets(struct config *cfg, int create);

/*
 * Reads the web server's one secret, CSRF_SECRET (64 to 128 hex digits),
 * from the file cfg->web.env_file (same KEY=VALUE format; a missing file is
 * not an error) and from the process environment, which wins, into
 * cfg->csrf_secret. Reads no other key, so the web server never holds the
 * JWT secret or the database password. Leaves csrf_secret_len 0 when
 * neither names it. Returns 0, or -1 with a message on stderr (unreadable
 * file, bad hex).
 */
int config_load_web_secrets(struct config *cfg);

#endif
