/*
 * profile-populate: bulk-loads the test users into the users table.
 *
 *   profile-populate -c etc/profile.ini [-n N] [--force] [--if-empty]
 *
 * Creates users user1 .. userN (id = i, nickname = username), all with the
 * password "password123". Hashing 10 million passwords at the production
 * argon2id cost would take a day, so a pool of hashes with distinct salts is
 * computed once per run (on every CPU) and spread over the users: every
 * login still pays the full verify, only salts repeat every pool-size users.
 *
 * Speed: rows are streamed from memory with LOAD DATA LOCAL INFILE through
 * Connector/C's local-infile callbacks (no temporary file), in id order so
 * InnoDB appends to the clustered index, in chunks of a million rows so the
 * progress bar moves and no statement holds an enormous undo log. The server
 * parses each statement on one thread, so one connection per CPU loads
 * chunks in parallel. The unique index on username is dropped first and
 * rebuilt by one sort afterwards, far cheaper than maintaining it row by row.
 * Measured on the 2-core development box with the private MariaDB of
 * deploy/mariadb/my.cnf: 10 million users in 75-100 s.
 *
 * Idempotence: a row ('populated_users', N) in schema_meta is written only
 * after the whole load and the index build succeeded. A re-run with the same
 * N finds it and does nothing; a different N, --force, or a missing row (an
 * interrupted run) truncates the table and loads again. --if-empty keeps any
 * complete population whatever its N (what `make start` wants).
 *
 * MySQL settings and the password cost come from the config file
 * (config_load); the MySQL password from the secrets file.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/config.h"

#define POPULATE_PASSWORD "password123"
#define POPULATE_DEFAULT_USERS 10000000ULL
#define POPULATE_MAX_USERS 4000000000ULL /* ids are INT UNSIGNED */
#define POPULATE_DEFAULT_POOL 256
#define POPULATE_DEFAULT_CHUNK 1000000ULL
#define POPULATE_META_KEY "populated_users"
/* Longest row: 10-digit id, two 14-byte names, a PHC string, 3 tabs, newline. */
#define POPULATE_ROW_MAX (10 + 2 * 14 + crypto_pwhash_STRBYTES + 4)

/* Command-line options. */
struct populate_opts {
    const char *config_path; /* INI file; NULL = built-in defaults */
    uint64_t users;          /* N: users user1 .. userN */
    unsigned pool;           /* distinct-salt hashes to compute */
    uint64_t chunk;          /* rows per LOAD DATA statement */
    unsigned connections;    /* parallel LOAD DATA connections */
    int force;               /* 1: reload even when already populated */
    int if_empty;            /* 1: keep any complete population */
};

/* --- progress bar --------------------------------------------------------------- */

enum populate_phase { PHASE_HASH, PHASE_LOAD, PHASE_INDEX };

/* Shared between the worker threads / load callbacks and the reporter thread. */
struct progress {
    _Atomic int phase;          /* enum populate_phase */
    _Atomic uint64_t done;      /* units finished in this phase */
    _Atomic uint64_t total;     /* units in this phase */
    _Atomic int64_t started_ns; /* CLOCK_MONOTONIC start of this phase, nanoseconds */
    _Atomic int stop;           /* 1: reporter thread exits */
    int tty;                    /* stderr is a terminal: redraw one line */
    pthread_mutex_t lock;       /* one writer of the progress line at a time */
};

static int64_t now_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return 0; /* cannot fail for this clock */
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void progress_phase(struct progress *p, enum populate_phase phase, uint64_t total)
{
    atomic_store(&p->done, 0);
    atomic_store(&p->total, total);
    atomic_store(&p->started_ns, now_ns());
    atomic_store(&p->phase, (int)phase);
}

/* Writes v with thousands separators into out (out_size bytes); returns out. */
static char *fmt_count(char *out, size_t out_size, uint64_t v)
{
    char digits[32];
    int n = snprintf(digits, sizeof(digits), "%" PRIu64, v);
    size_t o = 0;
    for (int i = 0; i < n && o + 2 < out_size; i++) {
        if (i > 0 && (n - i) % 3 == 0) out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = '\0';
    return out;
}

static void progress_draw(struct progress *p, int final)
{
    static const char *const names[] = {"hashing", "loading", "indexing"};
    int phase = atomic_load(&p->phase);
    uint64_t done = atomic_load(&p->done), total = atomic_load(&p->total);
    double secs = (double)(now_ns() - atomic_load(&p->started_ns)) / 1e9;
    char line[256];
    int len;
    if (phase == PHASE_INDEX) {
        len = snprintf(line, sizeof(line), "%-8s  building the unique index on username  %.0f s",
                       names[phase], secs);
    } else {
        const int width = 24;
        double frac = total ? (double)done / (double)total : 0.0;
        char bar[32], sd[32], st[32], sr[32];
        int fill = (int)(frac * width);
        for (int i = 0; i < width; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[width] = '\0';
        double rate = secs > 0 ? (double)done / secs : 0.0;
        double eta = rate > 0 && total > done ? (double)(total - done) / rate : 0.0;
        len = snprintf(line, sizeof(line), "%-8s  [%s] %5.1f%%  %s/%s %s  %s/s  ETA %d:%02d",
                       names[phase], bar, frac * 100.0, fmt_count(sd, sizeof(sd), done),
                       fmt_count(st, sizeof(st), total), phase == PHASE_HASH ? "hashes" : "rows",
                       fmt_count(sr, sizeof(sr), (uint64_t)rate), (int)eta / 60, (int)eta % 60);
    }
    if (len < 0 || pthread_mutex_lock(&p->lock) != 0) return;
    if (p->tty)
        fprintf(stderr, "\r\033[K%s%s", line, final ? "\n" : "");
    else
        fprintf(stderr, "%s\n", line);
    pthread_mutex_unlock(&p->lock);
}

/* Reporter thread: redraws ~4 times a second on a terminal, every 10 s otherwise. */
static void *progress_main(void *arg)
{
    struct progress *p = arg;
    const int ticks = p->tty ? 1 : 40;
    int n = 0;
    while (!atomic_load(&p->stop)) {
        struct timespec ts = {0, 250 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (++n % ticks == 0 && !atomic_load(&p->stop)) progress_draw(p, 0);
    }
    return NULL;
}

/* --- the hash pool -------------------------------------------------------------- */

/* argon2id PHC strings of the same password with distinct salts. */
struct hash_pool {
    char (*hash)[crypto_pwhash_STRBYTES]; /* count NUL-terminated PHC strings */
    size_t *len;                          /* strlen of each, bytes */
    unsigned count;                       /* entries in hash and len */
    uint64_t opslimit, memlimit;          /* argon2id passes; memory in bytes */
    _Atomic unsigned next;                /* next index a worker takes */
    _Atomic int failed;                   /* 1: crypto_pwhash_str failed (out of memory) */
    struct progress *progress;
};

static void *hash_pool_worker(void *arg)
{
    struct hash_pool *hp = arg;
    for (;;) {
        unsigned i = atomic_fetch_add(&hp->next, 1);
        if (i >= hp->count || atomic_load(&hp->failed)) break;
        if (crypto_pwhash_str(hp->hash[i], POPULATE_PASSWORD, strlen(POPULATE_PASSWORD),
                              hp->opslimit, (size_t)hp->memlimit) != 0) {
            atomic_store(&hp->failed, 1);
            break;
        }
        hp->len[i] = strlen(hp->hash[i]);
        atomic_fetch_add(&hp->progress->done, 1);
    }
    return NULL;
}

/* Fills hp (count hashes) using one thread per CPU. Returns 0 or -1. */
static int hash_pool_make(struct hash_pool *hp, unsigned count, const struct config *cfg,
                          struct progress *progress)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned nthreads = cpus > 0 ? (unsigned)cpus : 1;
    if (nthreads > count) nthreads = count;
    pthread_t *threads = NULL;
    unsigned started = 0;
    int rc = -1;

    hp->count = count;
    hp->opslimit = cfg->password.opslimit;
    hp->memlimit = cfg->password.memlimit;
    hp->progress = progress;
    atomic_store(&hp->next, 0);
    atomic_store(&hp->failed, 0);
    hp->hash = calloc(count, sizeof(*hp->hash));
    hp->len = calloc(count, sizeof(*hp->len));
    threads = calloc(nthreads, sizeof(*threads));
    if (hp->hash == NULL || hp->len == NULL || threads == NULL) {
        fprintf(stderr, "populate: out of memory for the hash pool\n");
        goto done;
    }
    progress_phase(progress, PHASE_HASH, count);
    for (; started < nthreads; started++) {
        int err = pthread_create(&threads[started], NULL, hash_pool_worker, hp);
        if (err != 0) {
            fprintf(stderr, "populate: pthread_create: %s\n", strerror(err));
            atomic_store(&hp->failed, 1);
            break;
        }
    }
    for (unsigned i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    if (atomic_load(&hp->failed) || started == 0) {
        fprintf(stderr,
                "populate: computing argon2id hashes failed (opslimit %" PRIu64
                ", memlimit %" PRIu64 " bytes)\n",
                hp->opslimit, hp->memlimit);
        goto done;
    }
    rc = 0;
done:
    free(threads);
    return rc;
}

static void hash_pool_free(struct hash_pool *hp)
{
    free(hp->hash);
    free(hp->len);
    hp->hash = NULL;
    hp->len = NULL;
}

/* --- the row stream (LOAD DATA LOCAL INFILE callbacks) ----------------------------- */

/* One loader thread's stream; per statement it yields rows next_id .. end_id-1. */
struct row_stream {
    uint64_t next_id;           /* next user id to format */
    uint64_t end_id;            /* one past the last id of this statement */
    char row[POPULATE_ROW_MAX]; /* a formatted row that did not fit the caller's buffer */
    size_t row_len, row_off;    /* bytes in row; bytes of it already handed out */
    uint64_t reported_id;       /* rows before it are already counted in progress->done */
    const struct hash_pool *hp;
    struct progress *progress; /* done += rows handed to the server, summed over threads */
};

/* Writes v in decimal at out; returns the number of bytes (no NUL). */
static size_t put_u64(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

/* One row "id\tuser<id>\tuser<id>\t<PHC>\n" at out (>= POPULATE_ROW_MAX bytes). */
static size_t format_row(char *out, uint64_t id, const struct hash_pool *hp)
{
    size_t n = put_u64(out, id);
    out[n++] = '\t';
    size_t name_start = n;
    memcpy(out + n, "user", 4);
    n += 4;
    n += put_u64(out + n, id);
    size_t name_len = n - name_start;
    out[n++] = '\t';
    memcpy(out + n, out + name_start, name_len);
    n += name_len;
    out[n++] = '\t';
    unsigned h = (unsigned)(id % hp->count);
    memcpy(out + n, hp->hash[h], hp->len[h]);
    n += hp->len[h];
    out[n++] = '\n';
    return n;
}

/*
 * The server names a file in its LOCAL INFILE request; we ignore the name and
 * never open a file, so a hostile server cannot read the client's files.
 */
static int stream_init(void **ptr, const char *filename, void *userdata)
{
    (void)filename;
    *ptr = userdata;
    return 0;
}

/* Fills buf with up to buf_len bytes of rows; 0 at the end of the statement. */
static int stream_read(void *ptr, char *buf, unsigned int buf_len)
{
    struct row_stream *s = ptr;
    size_t n = 0;
    while (n < buf_len) {
        if (s->row_off == s->row_len) {
            if (s->next_id >= s->end_id) break;
            if (buf_len - n >= POPULATE_ROW_MAX) {
                n += format_row(buf + n, s->next_id++, s->hp); /* the common, copy-free case */
                continue;
            }
            s->row_len = format_row(s->row, s->next_id++, s->hp);
            s->row_off = 0;
        }
        size_t take = s->row_len - s->row_off;
        if (take > buf_len - n) take = buf_len - n;
        memcpy(buf + n, s->row + s->row_off, take);
        n += take;
        s->row_off += take;
    }
    atomic_fetch_add(&s->progress->done, s->next_id - s->reported_id);
    s->reported_id = s->next_id;
    return (int)n;
}

static void stream_end(void *ptr)
{
    (void)ptr;
}

static int stream_error(void *ptr, char *msg, unsigned int msg_len)
{
    (void)ptr;
    if (msg_len > 0) snprintf(msg, msg_len, "profile-populate: row stream failed");
    return CR_UNKNOWN_ERROR;
}

/* --- MySQL helpers -------------------------------------------------------------------- */

static int db_exec(MYSQL *db, const char *sql)
{
    if (mysql_query(db, sql) != 0) {
        fprintf(stderr, "populate: %s\n  in: %s\n", mysql_error(db), sql);
        return -1;
    }
    MYSQL_RES *res = mysql_store_result(db);
    if (res != NULL)
        mysql_free_result(res);
    else if (mysql_field_count(db) != 0) {
        fprintf(stderr, "populate: %s\n  in: %s\n", mysql_error(db), sql);
        return -1;
    }
    return 0;
}

/* Runs a query returning one row of one column into out (out_size bytes).
 * Returns 1 (row found), 0 (no row) or -1 (error). */
static int db_query_value(MYSQL *db, const char *sql, char *out, size_t out_size)
{
    if (mysql_query(db, sql) != 0) {
        fprintf(stderr, "populate: %s\n  in: %s\n", mysql_error(db), sql);
        return -1;
    }
    MYSQL_RES *res = mysql_store_result(db);
    if (res == NULL) {
        fprintf(stderr, "populate: %s\n  in: %s\n", mysql_error(db), sql);
        return -1;
    }
    int found = 0;
    MYSQL_ROW row = mysql_fetch_row(res);
    if (row != NULL && row[0] != NULL) {
        snprintf(out, out_size, "%s", row[0]);
        found = 1;
    }
    mysql_free_result(res);
    return found;
}

static MYSQL *db_connect(const struct config *cfg)
{
    MYSQL *db = mysql_init(NULL);
    if (db == NULL) {
        fprintf(stderr, "populate: mysql_init: out of memory\n");
        return NULL;
    }
    unsigned int timeout = (unsigned int)cfg->mysql.connect_timeout_s;
    unsigned int local_infile = 1;
    if (mysql_options(db, MYSQL_OPT_CONNECT_TIMEOUT, &timeout) != 0 ||
        mysql_options(db, MYSQL_OPT_LOCAL_INFILE, &local_infile) != 0 ||
        mysql_options(db, MYSQL_SET_CHARSET_NAME, "utf8mb4") != 0) {
        fprintf(stderr, "populate: mysql_options: %s\n", mysql_error(db));
        mysql_close(db);
        return NULL;
    }
    if (mysql_real_connect(db, cfg->mysql.host, cfg->mysql.user, cfg->mysql.password,
                           cfg->mysql.database, (unsigned int)cfg->mysql.port, NULL, 0) == NULL) {
        fprintf(stderr, "populate: cannot connect to MySQL %s@%s:%d/%s: %s\n", cfg->mysql.user,
                cfg->mysql.host, cfg->mysql.port, cfg->mysql.database, mysql_error(db));
        mysql_close(db);
        return NULL;
    }
    return db;
}

/* Reads schema_meta's populated_users into *users. Returns 1 (present), 0, -1. */
static int meta_read(MYSQL *db, uint64_t *users)
{
    char value[64];
    int rc = db_query_value(db, "SELECT v FROM schema_meta WHERE k = '" POPULATE_META_KEY "'",
                            value, sizeof(value));
    if (rc <= 0) return rc;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(value, &end, 10);
    if (errno || end == value || *end != '\0') {
        fprintf(stderr, "populate: schema_meta %s holds '%s', not a number: reloading\n",
                POPULATE_META_KEY, value);
        return 0;
    }
    *users = v;
    return 1;
}

/* Records a complete population of users rows (a prepared statement). */
static int meta_write(MYSQL *db, uint64_t users)
{
    static const char sql[] = "INSERT INTO schema_meta (k, v) VALUES ('" POPULATE_META_KEY
                              "', ?) ON DUPLICATE KEY UPDATE v = VALUES(v)";
    char value[32];
    int rc = -1;
    int len = snprintf(value, sizeof(value), "%" PRIu64, users);
    MYSQL_STMT *st = mysql_stmt_init(db);
    if (st == NULL || len < 0) {
        fprintf(stderr, "populate: mysql_stmt_init: %s\n", mysql_error(db));
        goto done;
    }
    MYSQL_BIND bind;
    unsigned long value_len = (unsigned long)len;
    memset(&bind, 0, sizeof(bind));
    bind.buffer_type = MYSQL_TYPE_STRING;
    bind.buffer = value;
    bind.buffer_length = sizeof(value);
    bind.length = &value_len;
    if (mysql_stmt_prepare(st, sql, sizeof(sql) - 1) != 0 || mysql_stmt_bind_param(st, &bind) ||
        mysql_stmt_execute(st) != 0) {
        fprintf(stderr, "populate: recording the population: %s\n", mysql_stmt_error(st));
        goto done;
    }
    rc = 0;
done:
    if (st != NULL) mysql_stmt_close(st);
    return rc;
}

/* Returns 1 when users has the unique index on username, 0 when not, -1 on error. */
static int username_index_exists(MYSQL *db)
{
    char value[32];
    int rc = db_query_value(db,
                            "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE "
                            "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'users' AND "
                            "INDEX_NAME = 'uk_users_username'",
                            value, sizeof(value));
    if (rc < 0) return -1;
    return rc == 1 && strcmp(value, "0") != 0;
}

/* Work shared by the loader threads: chunks are handed out in id order. */
struct loader {
    const struct populate_opts *opts;
    const struct config *cfg;
    const struct hash_pool *hp;
    struct progress *progress;
    _Atomic uint64_t next_chunk; /* index of the next chunk to load */
    _Atomic int failed;          /* 1: some thread failed; the others stop */
};

/*
 * Loads one chunk (rows first .. first+rows-1) on db through s. A deadlock or
 * lock wait timeout rolls the whole statement back, so the chunk is simply
 * sent again. Returns 0 or -1.
 */
static int load_chunk(MYSQL *db, struct row_stream *s, uint64_t first, uint64_t rows)
{
    static const char sql[] = "LOAD DATA LOCAL INFILE 'profile-populate.tsv' INTO TABLE users "
                              "CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\\t' "
                              "LINES TERMINATED BY '\\n' (id, username, nickname, password_hash)";
    for (int attempt = 1;; attempt++) {
        s->next_id = first;
        s->end_id = first + rows;
        s->row_len = s->row_off = 0;
        s->reported_id = first;
        if (mysql_real_query(db, sql, sizeof(sql) - 1) == 0) break;
        unsigned err = mysql_errno(db);
        atomic_fetch_sub(&s->progress->done, s->reported_id - first);
        if ((err == ER_LOCK_DEADLOCK || err == ER_LOCK_WAIT_TIMEOUT) && attempt < 5) continue;
        fprintf(stderr, "\npopulate: LOAD DATA of users %" PRIu64 "..%" PRIu64 ": %s\n", first,
                first + rows - 1, mysql_error(db));
        return -1;
    }
    /* LOCAL turns bad or duplicate rows into warnings: insist on none. */
    my_ulonglong loaded = mysql_affected_rows(db);
    unsigned warnings = mysql_warning_count(db);
    if (loaded != rows || warnings != 0) {
        fprintf(stderr,
                "\npopulate: LOAD DATA of users %" PRIu64 "..%" PRIu64
                " stored %llu rows with %u warnings (see SHOW WARNINGS)\n",
                first, first + rows - 1, (unsigned long long)loaded, warnings);
        return -1;
    }
    return 0;
}

/* Session settings for bulk loading. Returns 0 or -1. */
static int load_session(MYSQL *db)
{
    /* READ COMMITTED: parallel inserts into neighbouring id ranges take no gap locks. */
    if (db_exec(db, "SET SESSION unique_checks = 0, foreign_key_checks = 0") < 0 ||
        db_exec(db, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED") < 0)
        return -1;
    if (mysql_query(db, "SET SESSION sql_log_bin = 0") != 0) {
        /* Needs SUPER or BINLOG ADMIN, which the application user lacks; the
         * private instance runs without a binary log anyway. */
    }
    return 0;
}

/*
 * Loader thread: its own connection, then chunks until none are left. The
 * server parses and inserts each LOAD DATA on one thread, so one connection
 * per CPU keeps every core busy.
 */
static void *loader_main(void *arg)
{
    struct loader *l = arg;
    const struct populate_opts *o = l->opts;
    struct row_stream *s = calloc(1, sizeof(*s));
    MYSQL *db = NULL;
    int ok = 0;
    if (s == NULL) {
        fprintf(stderr, "populate: out of memory\n");
        goto done;
    }
    s->hp = l->hp;
    s->progress = l->progress;
    db = db_connect(l->cfg);
    if (db == NULL || load_session(db) < 0) goto done;
    mysql_set_local_infile_handler(db, stream_init, stream_read, stream_end, stream_error, s);
    while (!atomic_load(&l->failed)) {
        uint64_t c = atomic_fetch_add(&l->next_chunk, 1);
        if (c >= (o->users - 1 + o->chunk - 1) / o->chunk) break;
        uint64_t first = 2 + c * o->chunk;
        uint64_t rows = o->users - first + 1 < o->chunk ? o->users - first + 1 : o->chunk;
        if (load_chunk(db, s, first, rows) < 0) goto done;
    }
    ok = 1;
done:
    if (!ok) atomic_store(&l->failed, 1);
    if (db != NULL) mysql_close(db);
    free(s);
    return NULL;
}

/*
 * Loads rows 1..users: row 1 alone on db, then the rest with o->connections
 * threads. InnoDB treats the first insert into an empty table as a bulk
 * insert that deadlocks with concurrent ones; the lone first row keeps that
 * out of the parallel part. Returns 0 or -1.
 */
static int load_rows(MYSQL *db, const struct populate_opts *o, const struct config *cfg,
                     const struct hash_pool *hp, struct progress *progress)
{
    struct loader l = {.opts = o, .cfg = cfg, .hp = hp, .progress = progress};
    struct row_stream *s = calloc(1, sizeof(*s));
    pthread_t *threads = calloc(o->connections, sizeof(*threads));
    unsigned started = 0;
    int rc = -1;
    if (s == NULL || threads == NULL) {
        fprintf(stderr, "populate: out of memory\n");
        goto done;
    }
    progress_phase(progress, PHASE_LOAD, o->users);
    s->hp = hp;
    s->progress = progress;
    mysql_set_local_infile_handler(db, stream_init, stream_read, stream_end, stream_error, s);
    int first_ok = load_session(db) == 0 && load_chunk(db, s, 1, 1) == 0;
    mysql_set_local_infile_default(db);
    if (!first_ok) goto done;
    for (; started < o->connections; started++) {
        int err = pthread_create(&threads[started], NULL, loader_main, &l);
        if (err != 0) {
            fprintf(stderr, "populate: pthread_create: %s\n", strerror(err));
            atomic_store(&l.failed, 1);
            break;
        }
    }
    for (unsigned i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    if (!atomic_load(&l.failed) && started > 0) rc = 0;
done:
    free(threads);
    free(s);
    return rc;
}

/* --- main ------------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: profile-populate [-c config.ini] [-n users] [--force] [--if-empty]\n"
            "                        [--pool hashes] [--chunk rows] [--connections K]\n"
            "Loads users user1..userN (password \"%s\") into MySQL.\n"
            "  -c, --config FILE  INI file (MySQL address, password cost); secrets from\n"
            "                     its [core] env_file\n"
            "  -n, --users N      number of users (default %llu)\n"
            "  -f, --force        reload even when already populated with N users\n"
            "      --if-empty     do nothing when any complete population exists\n"
            "      --pool K       distinct-salt hashes to compute (default %d)\n"
            "      --chunk ROWS   rows per LOAD DATA statement (default %llu)\n"
            "      --connections K  parallel LOAD DATA connections (default: CPUs)\n",
            POPULATE_PASSWORD, POPULATE_DEFAULT_USERS, POPULATE_DEFAULT_POOL,
            POPULATE_DEFAULT_CHUNK);
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end != '\0' || s[0] == '-' || v < min || v > max) return -1;
    *out = v;
    return 0;
}

static int parse_opts(int argc, char **argv, struct populate_opts *o)
{
    enum { OPT_IF_EMPTY = 256, OPT_POOL, OPT_CHUNK, OPT_CONNECTIONS };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"users", required_argument, NULL, 'n'},
        {"force", no_argument, NULL, 'f'},
        {"if-empty", no_argument, NULL, OPT_IF_EMPTY},
        {"pool", required_argument, NULL, OPT_POOL},
        {"chunk", required_argument, NULL, OPT_CHUNK},
        {"connections", required_argument, NULL, OPT_CONNECTIONS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    uint64_t v;
    int c;
    o->config_path = NULL;
    o->users = POPULATE_DEFAULT_USERS;
    o->pool = POPULATE_DEFAULT_POOL;
    o->chunk = POPULATE_DEFAULT_CHUNK;
    o->force = 0;
    o->if_empty = 0;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    o->connections = cpus > 0 ? (unsigned)cpus : 1;
    while ((c = getopt_long(argc, argv, "c:n:fh", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o->config_path = optarg;
            break;
        case 'n':
            if (parse_u64(optarg, 1, POPULATE_MAX_USERS, &o->users) < 0) {
                fprintf(stderr, "populate: -n wants 1..%llu, got '%s'\n", POPULATE_MAX_USERS,
                        optarg);
                return -1;
            }
            break;
        case 'f':
            o->force = 1;
            break;
        case OPT_IF_EMPTY:
            o->if_empty = 1;
            break;
        case OPT_POOL:
            if (parse_u64(optarg, 1, 65536, &v) < 0) {
                fprintf(stderr, "populate: --pool wants 1..65536, got '%s'\n", optarg);
                return -1;
            }
            o->pool = (unsigned)v;
            break;
        case OPT_CHUNK:
            if (parse_u64(optarg, 1, POPULATE_MAX_USERS, &o->chunk) < 0) {
                fprintf(stderr, "populate: --chunk wants a positive number, got '%s'\n", optarg);
                return -1;
            }
            break;
        case OPT_CONNECTIONS:
            if (parse_u64(optarg, 1, 64, &v) < 0) {
                fprintf(stderr, "populate: --connections wants 1..64, got '%s'\n", optarg);
                return -1;
            }
            o->connections = (unsigned)v;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return -1;
    }
    if (o->pool > o->users) o->pool = (unsigned)o->users;
    return 0;
}

int main(int argc, char **argv)
{
    struct populate_opts o;
    struct config *cfg = NULL;
    struct hash_pool hp = {0};
    struct progress progress = {.lock = PTHREAD_MUTEX_INITIALIZER};
    pthread_t reporter;
    int reporter_started = 0;
    MYSQL *db = NULL;
    int rc = 1;

    if (parse_opts(argc, argv, &o) < 0) return 2;
    cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL) {
        fprintf(stderr, "populate: out of memory\n");
        return 1;
    }
    if (config_load(cfg, o.config_path) < 0 || config_load_secrets(cfg, 0) < 0) goto done;
    if (sodium_init() < 0) {
        fprintf(stderr, "populate: sodium_init failed\n");
        goto done;
    }
    if (mysql_library_init(0, NULL, NULL) != 0) {
        fprintf(stderr, "populate: mysql_library_init failed\n");
        goto done;
    }
    db = db_connect(cfg);
    if (db == NULL) goto done;

    uint64_t have_users = 0;
    int have = meta_read(db, &have_users);
    if (have < 0) {
        fprintf(stderr, "populate: is the schema applied? (scripts/stack.sh schema)\n");
        goto done;
    }
    int indexed = username_index_exists(db);
    if (indexed < 0) goto done;
    if (!o.force && have && indexed) {
        if (have_users == o.users || o.if_empty) {
            fprintf(stderr, "populate: already populated with %" PRIu64 " users\n", have_users);
            rc = 0;
            goto done;
        }
    }
    int64_t t0 = now_ns();
    progress.tty = isatty(STDERR_FILENO);
    progress_phase(&progress, PHASE_HASH, o.pool);
    int err = pthread_create(&reporter, NULL, progress_main, &progress);
    if (err != 0) {
        fprintf(stderr, "populate: pthread_create: %s\n", strerror(err));
        goto done;
    }
    reporter_started = 1;

    if (hash_pool_make(&hp, o.pool, cfg, &progress) < 0) goto done;
    progress_draw(&progress, 1);

    /* From here the table is in flux: the meta row goes first, so an interrupted
     * run is never mistaken for a complete one. */
    if (db_exec(db, "DELETE FROM schema_meta WHERE k = '" POPULATE_META_KEY "'") < 0 ||
        db_exec(db, "TRUNCATE TABLE users") < 0)
        goto done;
    if (indexed && db_exec(db, "ALTER TABLE users DROP INDEX uk_users_username") < 0) goto done;

    int64_t t_load = now_ns();
    if (load_rows(db, &o, cfg, &hp, &progress) < 0) goto done;
    progress_draw(&progress, 1);
    int64_t t_index = now_ns();

    progress_phase(&progress, PHASE_INDEX, 0);
    /* Back to full checking: the index build itself must reject duplicates. */
    if (db_exec(db, "SET SESSION unique_checks = 1, foreign_key_checks = 1") < 0) goto done;
    if (db_exec(db, "ALTER TABLE users ADD UNIQUE KEY uk_users_username (username)") < 0) goto done;
    if (meta_write(db, o.users) < 0) goto done;
    atomic_store(&progress.stop, 1);
    pthread_join(reporter, NULL);
    reporter_started = 0;
    progress_draw(&progress, 1);

    int64_t t_end = now_ns();
    double total_s = (double)(t_end - t0) / 1e9;
    char users_s[32], rate_s[32];
    fprintf(stderr,
            "populate: %s users in %.1f s (%s rows/s): hashes %.1f s, load %.1f s, index %.1f s\n"
            "populate: every user's password is \"%s\"\n",
            fmt_count(users_s, sizeof(users_s), o.users), total_s,
            fmt_count(rate_s, sizeof(rate_s), (uint64_t)((double)o.users / total_s)),
            (double)(t_load - t0) / 1e9, (double)(t_index - t_load) / 1e9,
            (double)(t_end - t_index) / 1e9, POPULATE_PASSWORD);
    rc = 0;
done:
    if (reporter_started) {
        atomic_store(&progress.stop, 1);
        pthread_join(reporter, NULL);
        if (progress.tty) fputc('\n', stderr);
    }
    hash_pool_free(&hp);
    if (db != NULL) mysql_close(db);
    mysql_library_end();
    if (cfg != NULL) sodium_memzero(cfg, sizeof(*cfg));
    free(cfg);
    return rc;
}
