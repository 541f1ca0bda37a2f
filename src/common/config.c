/* config: see config.h. Keys are data: one table maps "section.key" to a field. */
#include "common/config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

enum config_type { CFG_STR, CFG_INT, CFG_BOOL, CFG_U64, CFG_SIZE, CFG_U32, CFG_LEVEL };

struct config_key {
    const char *section;
    const char *name;
    enum config_type type;
    size_t offset; /* of the field inside struct config */
    size_t size;   /* bytes, for CFG_STR */
    long long min, max;
};

#define F(field) offsetof(struct config, field), sizeof(((struct config *)0)->field)
#define STR(s, k, field)                                                                           \
    {                                                                                              \
        s, k, CFG_STR, F(field), 0, 0                                                              \
    }
#define INT(s, k, field, lo, hi)                                                                   \
    {                                                                                              \
        s, k, CFG_INT, F(field), lo, hi                                                            \
    }

static const struct config_key config_keys[] = {
    STR("web", "host", web.host),
    INT("web", "port", web.port, 0, 65535),
    INT("web", "threads", web.threads, 1, 1024),
    {"web", "cookie_secure", CFG_BOOL, F(web.cookie_secure), 0, 1},
    STR("web", "trusted_proxies", web.trusted_proxies),
    STR("web", "templates_dir", web.templates_dir),
    STR("web", "static_dir", web.static_dir),
    INT("web", "connection_timeout_s", web.connection_timeout_s, 1, 3600),
    STR("web", "env_file", web.env_file),

    STR("rpc", "core_host", rpc.core_host),
    INT("rpc", "core_port", rpc.core_port, 1, 65535),
    INT("rpc", "pool_size", rpc.pool_size, 1, 4096),
    INT("rpc", "slow_pool_size", rpc.slow_pool_size, 1, 4096),
    INT("rpc", "connect_timeout_ms", rpc.connect_timeout_ms, 1, 60000),
    INT("rpc", "io_timeout_ms", rpc.io_timeout_ms, 1, 600000),
    INT("rpc", "slow_io_timeout_ms", rpc.slow_io_timeout_ms, 1, 600000),
    INT("rpc", "pool_wait_ms", rpc.pool_wait_ms, 0, 60000),
    {"rpc", "max_frame_bytes", CFG_U32, F(rpc.max_frame_bytes), 1024, 1LL << 30},

    STR("core", "host", core.host),
    INT("core", "port", core.port, 0, 65535),
    INT("core", "max_connections", core.max_connections, 1, 65536),
    INT("core", "io_threads", core.io_threads, 1, 64),
    INT("core", "workers", core.workers, 1, 4096),
    INT("core", "idle_timeout_s", core.idle_timeout_s, 1, 86400),
    INT("core", "group_commits", core.group_commits, 1, 1024),
    INT("core", "hash_threads", core.hash_threads, 0, 1024),
    INT("core", "token_ttl_s", core.token_ttl_s, 1, 31 * 24 * 3600),
    INT("core", "cache_ttl_s", core.cache_ttl_s, 1, 31 * 24 * 3600),
    INT("core", "credential_cache_entries", core.credential_cache_entries, 0, 1 << 26),
    INT("core", "token_cache_entries", core.token_cache_entries, 0, 1 << 22),
    INT("core", "credential_cache_ttl_s", core.credential_cache_ttl_s, 0, 24 * 3600),
    STR("core", "env_file", core.env_file),

    {"password", "opslimit", CFG_U64, F(password.opslimit), 1, 1000},
    {"password", "memlimit", CFG_U64, F(password.memlimit), 8192, 4LL << 30},

    STR("picture", "dir", picture.dir),
    {"picture", "max_bytes", CFG_SIZE, F(picture.max_bytes), 1, 1LL << 30},
    INT("picture", "max_side_px", picture.max_side_px, 16, 4096),
    STR("picture", "url_prefix", picture.url_prefix),

    STR("mysql", "host", mysql.host),
    INT("mysql", "port", mysql.port, 1, 65535),
    STR("mysql", "user", mysql.user),
    STR("mysql", "database", mysql.database),
    INT("mysql", "pool_size", mysql.pool_size, 1, 4096),
    INT("mysql", "connect_timeout_s", mysql.connect_timeout_s, 1, 600),

    STR("redis", "host", redis.host),
    INT("redis", "port", redis.port, 1, 65535),
    INT("redis", "pool_size", redis.pool_size, 1, 4096),
    INT("redis", "timeout_ms", redis.timeout_ms, 1, 600000),

    {"log", "level", CFG_LEVEL, F(log.level), 0, 0},
    STR("log", "file", log.file),
    INT("log", "buffer_kb", log.buffer_kb, 0, 16384),
};

#define CONFIG_NKEYS (sizeof(config_keys) / sizeof(config_keys[0]))

/* Sections read by other tools (scripts/stack.sh) that the servers accept and ignore. */
static const char *const config_foreign_sections[] = {"stack", "nginx", "bench"};

static void config_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->web.host, sizeof(cfg->web.host), "127.0.0.1");
    cfg->web.port = 8080;
    cfg->web.threads = 4;
    snprintf(cfg->web.templates_dir, sizeof(cfg->web.templates_dir), "web/templates");
    snprintf(cfg->web.static_dir, sizeof(cfg->web.static_dir), "web/static");
    cfg->web.connection_timeout_s = 75; /* 30 cut busy connections at 2,000 (performance.md) */
    snprintf(cfg->web.env_file, sizeof(cfg->web.env_file), ".env.web");

    snprintf(cfg->rpc.core_host, sizeof(cfg->rpc.core_host), "127.0.0.1");
    cfg->rpc.core_port = 9090;
    cfg->rpc.pool_size = 64;
    cfg->rpc.slow_pool_size = 16;
    cfg->rpc.connect_timeout_ms = 500;
    cfg->rpc.io_timeout_ms = 2000;
    cfg->rpc.slow_io_timeout_ms = 15000;
    cfg->rpc.pool_wait_ms = 1000;
    cfg->rpc.max_frame_bytes = 16u << 20;

    snprintf(cfg->core.host, sizeof(cfg->core.host), "127.0.0.1");
    cfg->core.port = 9090;
    cfg->core.max_connections = 256;
    cfg->core.io_threads = 1;
    cfg->core.workers = 64;
    cfg->core.idle_timeout_s = 60;
    cfg->core.group_commits = 2;
    cfg->core.hash_threads = 0;
    cfg->core.token_ttl_s = 3600;
    cfg->core.cache_ttl_s = 300;
    cfg->core.credential_cache_entries = 1 << 18;
    cfg->core.credential_cache_ttl_s = 3600;
    cfg->core.token_cache_entries = 1 << 16;
    snprintf(cfg->core.env_file, sizeof(cfg->core.env_file), ".env");

    cfg->password.opslimit = 2;
    cfg->password.memlimit = 19u << 20;

    snprintf(cfg->picture.dir, sizeof(cfg->picture.dir), "var/data/pictures");
    cfg->picture.max_bytes = 10u << 20;
    cfg->picture.max_side_px = 256;
    snprintf(cfg->picture.url_prefix, sizeof(cfg->picture.url_prefix), "/pictures/");

    snprintf(cfg->mysql.host, sizeof(cfg->mysql.host), "127.0.0.1");
    cfg->mysql.port = 13306;
    snprintf(cfg->mysql.user, sizeof(cfg->mysql.user), "profile");
    snprintf(cfg->mysql.database, sizeof(cfg->mysql.database), "profile");
    cfg->mysql.pool_size = 32;
    cfg->mysql.connect_timeout_s = 2;

    snprintf(cfg->redis.host, sizeof(cfg->redis.host), "127.0.0.1");
    cfg->redis.port = 16379;
    cfg->redis.pool_size = 80; /* > workers + io_threads: the event loop never waits */
    cfg->redis.timeout_ms = 1000;

    cfg->log.level = LOG_INFO;
    cfg->log.buffer_kb = 64;
}

static const struct config_key *config_find(const char *section, const char *name)
{
    for (size_t i = 0; i < CONFIG_NKEYS; i++)
        if (strcmp(config_keys[i].section, section) == 0 && strcmp(config_keys[i].name, name) == 0)
            return &config_keys[i];
    return NULL;
}

static int parse_integer(const char *value, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    /* accept the binary suffixes people write for sizes: 19M, 10MiB... */
    long long mult = 1;
    if (*end == 'K' || *end == 'k')
        mult = 1LL << 10, end++;
    else if (*end == 'M' || *end == 'm')
        mult = 1LL << 20, end++;
    else if (*end == 'G' || *end == 'g')
        mult = 1LL << 30, end++;
    if (mult > 1 && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0)) end += strlen(end);
    if (errno || end == value || *end != '\0') return -1;
    if (v > LLONG_MAX / mult || v < LLONG_MIN / mult) return -1;
    v *= mult;
    if (v < min || v > max) return -1;
    *out = v;
    return 0;
}

/* Stores value into the field described by k. Returns 0, or -1 with a message in err. */
static int config_set(struct config *cfg, const struct config_key *k, const char *value, char *err,
                      size_t err_size)
{
    char *field = (char *)cfg + k->offset;
    long long v;
    switch (k->type) {
    case CFG_STR:
        if (strlen(value) >= k->size) {
            snprintf(err, err_size, "value longer than %zu bytes", k->size - 1);
            return -1;
        }
        memcpy(field, value, strlen(value) + 1);
        return 0;
    case CFG_BOOL:
        if (!strcmp(value, "1") || !strcasecmp(value, "true") || !strcasecmp(value, "yes") ||
            !strcasecmp(value, "on"))
            *(int *)field = 1;
        else if (!strcmp(value, "0") || !strcasecmp(value, "false") || !strcasecmp(value, "no") ||
                 !strcasecmp(value, "off"))
            *(int *)field = 0;
        else {
            snprintf(err, err_size, "expected true or false, got '%s'", value);
            return -1;
        }
        return 0;
    case CFG_LEVEL: {
        int level = log_level_parse(value);
        if (level < 0) {
            snprintf(err, err_size, "expected debug, info, warn or error, got '%s'", value);
            return -1;
        }
        *(int *)field = level;
        return 0;
    }
    case CFG_INT:
    case CFG_U64:
    case CFG_SIZE:
    case CFG_U32:
        if (parse_integer(value, k->min, k->max, &v) < 0) {
            snprintf(err, err_size, "expected an integer in %lld..%lld, got '%s'", k->min, k->max,
                     value);
            return -1;
        }
        if (k->type == CFG_INT)
            *(int *)field = (int)v;
        else if (k->type == CFG_U64)
            *(uint64_t *)field = (uint64_t)v;
        else if (k->type == CFG_SIZE)
            *(size_t *)field = (size_t)v;
        else
            *(uint32_t *)field = (uint32_t)v;
        return 0;
    }
    return -1;
}

struct config_parse_state {
    struct config *cfg;
    const char *path;
    int failed;
};

/* inih handler: returns 0 on a bad key so ini_parse reports the first bad line number. */
static int config_ini_handler(void *user, const char *section, const char *name, const char *value)
{
    struct config_parse_state *st = user;
    for (size_t i = 0; i < sizeof(config_foreign_sections) / sizeof(config_foreign_sections[0]);
         i++)
        if (strcmp(section, config_foreign_sections[i]) == 0) return 1;
    const struct config_key *k = config_find(section, name);
    char err[160];
    if (k == NULL) {
        fprintf(stderr, "%s: unknown key [%s] %s\n", st->path, section, name);
        st->failed = 1;
        return 0;
    }
    if (config_set(st->cfg, k, value, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s: [%s] %s: %s\n", st->path, section, name, err);
        st->failed = 1;
        return 0;
    }
    return 1;
}

static int config_apply_env(struct config *cfg)
{
    int failed = 0;
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        const struct config_key *k = &config_keys[i];
        char var[96];
        int n = snprintf(var, sizeof(var), "PROFILE_%s_%s", k->section, k->name);
        if (n < 0 || (size_t)n >= sizeof(var)) continue;
        for (char *p = var; *p; p++)
            *p = (char)toupper((unsigned char)*p);
        const char *value = getenv(var);
        if (value == NULL) continue;
        char err[160];
        if (config_set(cfg, k, value, err, sizeof(err)) < 0) {
            fprintf(stderr, "environment %s: %s\n", var, err);
            failed = 1;
        }
    }
    return failed ? -1 : 0;
}

int config_load(struct config *cfg, const char *path)
{
    config_defaults(cfg);
    if (path != NULL) {
        struct config_parse_state st = {cfg, path, 0};
        int rc = ini_parse(path, config_ini_handler, &st);
        if (rc == -1) {
            fprintf(stderr, "%s: cannot open: %s\n", path, strerror(errno));
            return -1;
        }
        if (rc == -2) {
            fprintf(stderr, "%s: out of memory while parsing\n", path);
            return -1;
        }
        if (rc > 0) {
            fprintf(stderr, "%s:%d: %s\n", path, rc,
                    st.failed ? "first bad setting is on this line" : "syntax error");
            return -1;
        }
    }
    if (config_apply_env(cfg) < 0) return -1;
    return 0;
}

/* Trims surrounding white space in place; returns s. */
static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static int config_set_jwt_secret(struct config *cfg, const char *hex, const char *origin)
{
    size_t bin_len = 0;
    if (sodium_hex2bin(cfg->jwt_secret, sizeof(cfg->jwt_secret), hex, strlen(hex), NULL, &bin_len,
                       NULL) != 0 ||
        bin_len < 32) {
        fprintf(stderr, "%s: JWT_SECRET must be 64 to 128 hex digits (256 to 512 bits)\n", origin);
        return -1;
    }
    cfg->jwt_secret_len = bin_len;
    return 0;
}

/* Creates the directories leading to path (mode 0700), like mkdir -p of its dirname. */
static int make_parent_dirs(const char *path)
{
    char dir[CONFIG_STR_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return 0;
}

static int config_create_env_file(const char *path)
{
    if (make_parent_dirs(path) < 0) {
        fprintf(stderr, "%s: cannot create its directory: %s\n", path, strerror(errno));
        return -1;
    }
    unsigned char secret[32];
    char hex[65], pw_hex[33];
    unsigned char pw[16];
    randombytes_buf(secret, sizeof(secret));
    randombytes_buf(pw, sizeof(pw));
    sodium_bin2hex(hex, sizeof(hex), secret, sizeof(secret));
    sodium_bin2hex(pw_hex, sizeof(pw_hex), pw, sizeof(pw));
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "%s: cannot create: %s\n", path, strerror(errno));
        return -1;
    }
    char buf[256];
    int n = snprintf(buf, sizeof(buf),
                     "# Secrets of the profile service. Mode 0600, never commit.\n"
                     "JWT_SECRET=%s\nMYSQL_PASSWORD=%s\n",
                     hex, pw_hex);
    int rc = 0;
    if (n < 0 || write(fd, buf, (size_t)n) != n || fsync(fd) != 0) {
        fprintf(stderr, "%s: cannot write: %s\n", path, strerror(errno));
        rc = -1;
    }
    if (close(fd) != 0) rc = -1;
    sodium_memzero(secret, sizeof(secret));
    sodium_memzero(hex, sizeof(hex));
    sodium_memzero(buf, sizeof(buf));
    if (rc < 0) unlink(path);
    return rc;
}

/* Sets one secret of a .env file or the environment; origin names it in messages. */
typedef int (*secret_setter)(struct config *cfg, const char *key, const char *value,
                             const char *origin);

/*
 * Reads the KEY=VALUE lines of the secrets file at path (# comments, blank
 * lines, surrounding quotes allowed) and hands each to set. Lines are wiped
 * from memory after use. Returns 0, 1 when the file does not exist, or -1
 * with a message on stderr (unreadable file, or a value set refused).
 */
static int env_file_read(struct config *cfg, const char *path, secret_setter set)
{
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        if (errno == ENOENT) return 1;
        fprintf(stderr, "%s: cannot open: %s\n", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077) != 0)
        fprintf(stderr, "%s: warning: readable by group or others; chmod 600 it\n", path);
    char *line = NULL;
    size_t cap = 0;
    int failed = 0;
    while (getline(&line, &cap, f) > 0) {
        char *s = trim(line);
        if (*s == '#' || *s == '\0') continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) continue;
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1);
        size_t vl = strlen(value);
        if (vl >= 2 && (value[0] == '"' || value[0] == '\'') && value[vl - 1] == value[0]) {
            value[vl - 1] = '\0';
            value++;
        }
        if (set(cfg, key, value, path) < 0) failed = 1;
    }
    if (line != NULL) sodium_memzero(line, cap);
    free(line);
    fclose(f);
    return failed ? -1 : 0;
}

/* Hands the variables named in keys (NULL-terminated) from the environment to set. */
static int env_vars_read(struct config *cfg, const char *const *keys, secret_setter set)
{
    for (; *keys != NULL; keys++) {
        const char *value = getenv(*keys);
        if (value != NULL && set(cfg, *keys, value, "environment") < 0) return -1;
    }
    return 0;
}

static int core_secret_set(struct config *cfg, const char *key, const char *value,
                           const char *origin)
{
    if (strcmp(key, "JWT_SECRET") == 0) return config_set_jwt_secret(cfg, value, origin);
    if (strcmp(key, "MYSQL_PASSWORD") == 0) {
        if (strlen(value) >= sizeof(cfg->mysql.password)) {
            fprintf(stderr, "%s: MYSQL_PASSWORD too long\n", origin);
            return -1;
        }
        memcpy(cfg->mysql.password, value, strlen(value) + 1);
    }
    return 0; /* other keys (e.g. CSRF_SECRET) are not the core's */
}

int config_load_secrets(struct config *cfg, int create)
{
    static const char *const keys[] = {"JWT_SECRET", "MYSQL_PASSWORD", NULL};
    const char *path = cfg->core.env_file;
    /* Empty: the environment only (systemd's EnvironmentFile= read it as root). */
    if (path[0] != '\0') {
        int rc = env_file_read(cfg, path, core_secret_set);
        if (rc == 1 && create) {
            if (config_create_env_file(path) < 0) return -1;
            fprintf(stderr, "%s: created with a new random JWT_SECRET\n", path);
            rc = env_file_read(cfg, path, core_secret_set);
        }
        if (rc < 0) return -1;
    }
    return env_vars_read(cfg, keys, core_secret_set);
}

static int config_set_csrf_secret(struct config *cfg, const char *hex, const char *origin)
{
    size_t bin_len = 0;
    if (sodium_hex2bin(cfg->csrf_secret, sizeof(cfg->csrf_secret), hex, strlen(hex), NULL, &bin_len,
                       NULL) != 0 ||
        bin_len < 32) {
        fprintf(stderr, "%s: CSRF_SECRET must be 64 to 128 hex digits (256 to 512 bits)\n", origin);
        cfg->csrf_secret_len = 0;
        return -1;
    }
    cfg->csrf_secret_len = bin_len;
    return 0;
}

static int web_secret_set(struct config *cfg, const char *key, const char *value,
                          const char *origin)
{
    /* Only the web's own key: never the core's secrets, even from a shared file. */
    return strcmp(key, "CSRF_SECRET") == 0 ? config_set_csrf_secret(cfg, value, origin) : 0;
}

int config_load_web_secrets(struct config *cfg)
{
    static const char *const keys[] = {"CSRF_SECRET", NULL};
    if (cfg->web.env_file[0] != '\0' && env_file_read(cfg, cfg->web.env_file, web_secret_set) < 0)
        return -1;
    return env_vars_read(cfg, keys, web_secret_set);
}
