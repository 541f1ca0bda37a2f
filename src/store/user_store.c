#include "store/user_store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "store/store.h"

/* Column sizes from sql/schema.sql, in bytes (utf8mb4 needs 4 per code point). */
#define COL_USERNAME_BYTES 64
#define COL_NICKNAME_BYTES (64 * 4)
#define COL_HASH_BYTES 255
#define COL_PICTURE_BYTES 128

/* Prepared statement slots in each pooled connection. */
enum { ST_GET = 0, ST_SET_HASH = 1, ST_LOCK = 2, ST_UPDATE = 3, ST_SET_NICK = 4 };
/* Slots ST_SET_NICKS + k (k = 1..6) hold the 2^k-row form of SQL_SET_NICKS. */
enum { ST_SET_NICKS = ST_SET_NICK, ST_SET_NICKS_LOG2_MAX = 6 };
_Static_assert(1 << ST_SET_NICKS_LOG2_MAX == USER_STORE_NICKNAMES_MAX, "one slot per row count");
_Static_assert(ST_SET_NICKS + ST_SET_NICKS_LOG2_MAX < DB_STMT_SLOTS, "statement slots");

static const char SQL_GET[] =
    "SELECT id, username, nickname, password_hash, picture FROM users WHERE username = ?";
static const char SQL_SET_HASH[] =
    "UPDATE users SET password_hash = ? WHERE username = ? AND password_hash = ?";
static const char SQL_SET_NICK[] = "UPDATE users SET nickname = ? WHERE username = ?";
static const char SQL_LOCK[] = "SELECT id, nickname, picture, password_hash FROM users "
                               "WHERE username = ? FOR UPDATE";
/* COALESCE keeps a column when its parameter is NULL: one statement covers
 * nickname only, picture only and both. */
static const char SQL_UPDATE[] = "UPDATE users SET nickname = COALESCE(?, nickname), "
                                 "picture = COALESCE(?, picture) WHERE username = ?";

void user_record_free(struct user_record *u)
{
    if (u == NULL) return;
    free(u->username);
    free(u->nickname);
    free(u->password_hash);
    free(u->picture);
    memset(u, 0, sizeof(*u));
}

/* Binds s (NUL-terminated, or NULL for SQL NULL) as a string parameter. */
static void bind_param_str(MYSQL_BIND *b, const char *s, unsigned long *len)
{
    memset(b, 0, sizeof(*b));
    if (s == NULL) {
        b->buffer_type = MYSQL_TYPE_NULL;
        return;
    }
    *len = (unsigned long)strlen(s);
    b->buffer_type = MYSQL_TYPE_STRING;
    b->buffer = (void *)s;
    b->buffer_length = *len;
    b->length = len;
}

/* Binds a result column into buf (cap bytes, one kept for the NUL). */
static void bind_result_str(MYSQL_BIND *b, char *buf, size_t cap, unsigned long *len,
                            my_bool *is_null)
{
    memset(b, 0, sizeof(*b));
    b->buffer_type = MYSQL_TYPE_STRING;
    b->buffer = buf;
    b->buffer_length = (unsigned long)(cap - 1);
    b->length = len;
    b->is_null = is_null;
}

static void bind_result_u32(MYSQL_BIND *b, uint32_t *v)
{
    memset(b, 0, sizeof(*b));
    b->buffer_type = MYSQL_TYPE_LONG;
    b->buffer = v;
    b->is_unsigned = 1;
}

/* Heap copy of a fetched column; NULL column -> *out NULL. Returns 0 or -1. */
static int dup_column(char *buf, unsigned long len, my_bool is_null, char **out)
{
    *out = NULL;
    if (is_null) return 0;
    *out = malloc(len + 1);
    if (*out == NULL) return -1;
    memcpy(*out, buf, len);
    (*out)[len] = '\0';
    return 0;
}

/*
 * Executes st with params bound, fetches at most one row into res.
 * Returns STORE_OK (row fetched), STORE_NOT_FOUND, or a failure status.
 */
static int exec_fetch_one(struct db_conn *c, MYSQL_STMT *st, MYSQL_BIND *params, MYSQL_BIND *res,
                          const char *what)
{
    int rc;

    if (mysql_stmt_bind_param(st, params) != 0 || mysql_stmt_execute(st) != 0 ||
        mysql_stmt_bind_result(st, res) != 0 || mysql_stmt_store_result(st) != 0)
        return db_conn_fail(c, st, what);
    int frc = mysql_stmt_fetch(st);
    if (frc == 0) {
        rc = STORE_OK;
    } else if (frc == MYSQL_NO_DATA) {
        rc = STORE_NOT_FOUND;
    } else if (frc == MYSQL_DATA_TRUNCATED) {
        /* A value longer than the schema allows: the table is not ours. */
        log_error(0, "event=mysql_error op=%s error=\"column value longer than the schema\"", what);
        c->entry->broken = 1;
        rc = STORE_ERROR;
    } else {
        rc = db_conn_fail(c, st, what);
    }
    if (mysql_stmt_free_result(st) != 0 && rc >= 0) rc = db_conn_fail(c, st, what);
    return rc;
}

static int get_by_username(struct db_conn *c, const char *username, struct user_record *out)
{
    MYSQL_STMT *st;
    MYSQL_BIND param[1], res[5];
    unsigned long username_len, lens[5] = {0};
    my_bool nulls[5] = {0};
    uint32_t id = 0;
    char uname[COL_USERNAME_BYTES + 1], nick[COL_NICKNAME_BYTES + 1];
    char hash[COL_HASH_BYTES + 1], pic[COL_PICTURE_BYTES + 1];
    int rc;

    rc = db_conn_prepare(c, ST_GET, SQL_GET, &st);
    if (rc != STORE_OK) return rc;
    bind_param_str(&param[0], username, &username_len);
    bind_result_u32(&res[0], &id);
    bind_result_str(&res[1], uname, sizeof(uname), &lens[1], &nulls[1]);
    bind_result_str(&res[2], nick, sizeof(nick), &lens[2], &nulls[2]);
    bind_result_str(&res[3], hash, sizeof(hash), &lens[3], &nulls[3]);
    bind_result_str(&res[4], pic, sizeof(pic), &lens[4], &nulls[4]);
    rc = exec_fetch_one(c, st, param, res, "get_user");
    if (rc != STORE_OK) return rc;
    out->id = id;
    if (dup_column(uname, lens[1], nulls[1], &out->username) != 0 ||
        dup_column(nick, lens[2], nulls[2], &out->nickname) != 0 ||
        dup_column(hash, lens[3], nulls[3], &out->password_hash) != 0 ||
        dup_column(pic, lens[4], nulls[4], &out->picture) != 0) {
        user_record_free(out);
        return STORE_NOMEM;
    }
    if (out->username == NULL || out->nickname == NULL || out->password_hash == NULL) {
        user_record_free(out);
        log_error(0, "event=mysql_error op=get_user error=\"NULL in a NOT NULL column\"");
        return STORE_ERROR;
    }
    return STORE_OK;
}

int user_store_get_by_username(struct db_pool *pool, const char *username, struct user_record *out)
{
    struct db_conn *c;
    int rc;

    memset(out, 0, sizeof(*out));
    for (int attempt = 0;; attempt++) {
        rc = db_pool_acquire(pool, &c);
        if (rc != STORE_OK) return rc;
        rc = get_by_username(c, username, out);
        int retry = attempt == 0 && db_pool_should_retry(pool, c, rc);
        db_pool_release(pool, c);
        if (!retry) return rc;
    }
}

static int set_password_hash(struct db_conn *c, const char *username, const char *old_hash,
                             const char *new_hash)
{
    MYSQL_STMT *st;
    MYSQL_BIND param[3];
    unsigned long lens[3];
    int rc;

    rc = db_conn_prepare(c, ST_SET_HASH, SQL_SET_HASH, &st);
    if (rc != STORE_OK) return rc;
    bind_param_str(&param[0], new_hash, &lens[0]);
    bind_param_str(&param[1], username, &lens[1]);
    bind_param_str(&param[2], old_hash, &lens[2]);
    if (mysql_stmt_bind_param(st, param) != 0 || mysql_stmt_execute(st) != 0)
        return db_conn_fail(c, st, "set_password_hash");
    my_ulonglong n = mysql_stmt_affected_rows(st);
    if (n == (my_ulonglong)-1) return db_conn_fail(c, st, "set_password_hash");
    return n == 0 ? STORE_NOT_FOUND : STORE_OK;
}

/*
 * SQL_SET_NICKS for 2^k rows: "UPDATE users SET nickname = CASE username
 * WHEN ? THEN ? ... END WHERE username IN (?, ...)". One statement is one
 * round trip and one commit (one redo log write) for all the rows; the unique
 * key on username makes the IN list 2^k index look-ups. Row counts between
 * two powers of two repeat their last pair, which changes nothing, so seven
 * prepared statements cover 1..64 rows.
 */
static char *sql_set_nicks[ST_SET_NICKS_LOG2_MAX + 1];
static pthread_once_t sql_set_nicks_once = PTHREAD_ONCE_INIT;

static void sql_set_nicks_build(void)
{
    for (int k = 1; k <= ST_SET_NICKS_LOG2_MAX; k++) {
        size_t rows = (size_t)1 << k;
        /* "WHEN ? THEN ? " is 14 bytes, "?, " 3, the rest < 100 */
        size_t cap = 100 + rows * 17;
        char *sql = malloc(cap), *p = sql;
        if (sql == NULL) return; /* this size and larger ones then fail with STORE_NOMEM */
        p += sprintf(p, "UPDATE users SET nickname = CASE username ");
        for (size_t i = 0; i < rows; i++)
            p += sprintf(p, "WHEN ? THEN ? ");
        p += sprintf(p, "END WHERE username IN (");
        for (size_t i = 0; i < rows; i++)
            p += sprintf(p, i == 0 ? "?" : ", ?");
        sprintf(p, ")");
        sql_set_nicks[k] = sql;
    }
}

/* One UPDATE for the n (1..64) rows; *found = the rows it matched
 * (CLIENT_FOUND_ROWS: unchanged ones count). */
static int set_nicknames(struct db_conn *c, size_t n, const char *const *usernames,
                         const char *const *nicknames, size_t *found)
{
    MYSQL_BIND param[3 * USER_STORE_NICKNAMES_MAX];
    unsigned long lens[3 * USER_STORE_NICKNAMES_MAX];
    MYSQL_STMT *st;
    int k = 0, rc;

    if (n == 1) {
        rc = db_conn_prepare(c, ST_SET_NICK, SQL_SET_NICK, &st);
        if (rc != STORE_OK) return rc;
        bind_param_str(&param[0], nicknames[0], &lens[0]);
        bind_param_str(&param[1], usernames[0], &lens[1]);
    } else {
        while (((size_t)1 << k) < n)
            k++;
        size_t rows = (size_t)1 << k;
        pthread_once(&sql_set_nicks_once, sql_set_nicks_build);
        if (sql_set_nicks[k] == NULL) return STORE_NOMEM;
        rc = db_conn_prepare(c, ST_SET_NICKS + k, sql_set_nicks[k], &st);
        if (rc != STORE_OK) return rc;
        for (size_t i = 0; i < rows; i++) {
            size_t j = i < n ? i : n - 1; /* padding repeats the last pair */
            bind_param_str(&param[2 * i], usernames[j], &lens[2 * i]);
            bind_param_str(&param[2 * i + 1], nicknames[j], &lens[2 * i + 1]);
            bind_param_str(&param[2 * rows + i], usernames[j], &lens[2 * rows + i]);
        }
    }
    if (mysql_stmt_bind_param(st, param) != 0 || mysql_stmt_execute(st) != 0)
        return db_conn_fail(c, st, "set_nickname");
    my_ulonglong rows_found = mysql_stmt_affected_rows(st);
    if (rows_found == (my_ulonglong)-1) return db_conn_fail(c, st, "set_nickname");
    *found = (size_t)rows_found;
    return STORE_OK;
}

/* set_nicknames, then, when some user was not found, which ones: each row
 * once more alone (setting the same value again changes nothing). *applied
 * is set once the first statement committed (a later failure then leaves
 * rows written). */
static int set_nicknames_status(struct db_conn *c, size_t n, const char *const *usernames,
                                const char *const *nicknames, int *status, int *applied)
{
    size_t found = 0;
    int rc = set_nicknames(c, n, usernames, nicknames, &found);
    if (rc != STORE_OK) return rc;
    *applied = 1;
    for (size_t i = 0; i < n; i++)
        status[i] = STORE_OK;
    if (found == n) return STORE_OK;
    for (size_t i = 0; i < n && n > 1; i++) {
        rc = set_nicknames(c, 1, usernames + i, nicknames + i, &found);
        if (rc != STORE_OK) return rc;
        status[i] = found == 0 ? STORE_NOT_FOUND : STORE_OK;
    }
    if (n == 1) status[0] = STORE_NOT_FOUND;
    return STORE_OK;
}

int user_store_set_nicknames(struct db_pool *pool, size_t n, const char *const *usernames,
                             const char *const *nicknames, int *status, int *maybe_written)
{
    struct db_conn *c;
    int rc, sent = 0; /* a statement may have been applied (connection lost, or committed) */

    *maybe_written = 0;
    if (n == 0) return STORE_OK;
    if (n > USER_STORE_NICKNAMES_MAX) return STORE_ERROR;
    for (int attempt = 0;; attempt++) {
        rc = db_pool_acquire(pool, &c);
        if (rc != STORE_OK) break;
        /* Autocommit statements: running them twice sets the same values. */
        int applied = 0;
        rc = set_nicknames_status(c, n, usernames, nicknames, status, &applied);
        /* A pooled connection found dead (MySQL restarted or down: retried)
         * ran nothing; a connection lost otherwise may have. */
        int retry = attempt == 0 && db_pool_should_retry(pool, c, rc);
        if (applied || (rc == STORE_UNAVAILABLE && !retry)) sent = 1;
        db_pool_release(pool, c);
        if (!retry) break;
    }
    *maybe_written = rc != STORE_OK && sent;
    return rc;
}

int user_store_set_password_hash(struct db_pool *pool, const char *username, const char *old_hash,
                                 const char *new_hash)
{
    struct db_conn *c;
    int rc;

    for (int attempt = 0;; attempt++) {
        rc = db_pool_acquire(pool, &c);
        if (rc != STORE_OK) return rc;
        /* Retrying is safe: the statement is conditional on the old hash. */
        rc = set_password_hash(c, username, old_hash, new_hash);
        int retry = attempt == 0 && db_pool_should_retry(pool, c, rc);
        db_pool_release(pool, c);
        if (!retry) return rc;
    }
}

/* Result of the locking read inside the update transaction. */
struct locked_row {
    uint32_t id;
    char nick[COL_NICKNAME_BYTES + 1];
    char pic[COL_PICTURE_BYTES + 1];
    char hash[COL_HASH_BYTES + 1];
    unsigned long nick_len, pic_len, hash_len;
    my_bool nick_null, pic_null, hash_null;
};

static int lock_row(struct db_conn *c, const char *username, struct locked_row *row)
{
    MYSQL_STMT *st;
    MYSQL_BIND param[1], res[4];
    unsigned long username_len;
    my_bool id_null = 0;
    int rc;

    rc = db_conn_prepare(c, ST_LOCK, SQL_LOCK, &st);
    if (rc != STORE_OK) return rc;
    bind_param_str(&param[0], username, &username_len);
    bind_result_u32(&res[0], &row->id);
    res[0].is_null = &id_null;
    bind_result_str(&res[1], row->nick, sizeof(row->nick), &row->nick_len, &row->nick_null);
    bind_result_str(&res[2], row->pic, sizeof(row->pic), &row->pic_len, &row->pic_null);
    bind_result_str(&res[3], row->hash, sizeof(row->hash), &row->hash_len, &row->hash_null);
    return exec_fetch_one(c, st, param, res, "lock_user");
}

static int run_update(struct db_conn *c, const char *username, const char *nickname,
                      const char *picture)
{
    MYSQL_STMT *st;
    MYSQL_BIND param[3];
    unsigned long lens[3];
    int rc;

    rc = db_conn_prepare(c, ST_UPDATE, SQL_UPDATE, &st);
    if (rc != STORE_OK) return rc;
    bind_param_str(&param[0], nickname, &lens[0]);
    bind_param_str(&param[1], picture, &lens[1]);
    bind_param_str(&param[2], username, &lens[2]);
    if (mysql_stmt_bind_param(st, param) != 0 || mysql_stmt_execute(st) != 0)
        return db_conn_fail(c, st, "update_profile");
    my_ulonglong n = mysql_stmt_affected_rows(st);
    if (n == (my_ulonglong)-1) return db_conn_fail(c, st, "update_profile");
    if (n != 1) {
        /* The row is locked by us: it cannot have vanished. */
        log_error(0, "event=mysql_error op=update_profile error=\"row not updated\" rows=%llu",
                  (unsigned long long)n);
        c->entry->broken = 1;
        return STORE_ERROR;
    }
    return STORE_OK;
}

/* One attempt of user_store_update_profile; *commit_sent tells the caller
 * whether a failure may have been applied after all. */
static int update_profile(struct db_conn *c, const char *username, const char *nickname,
                          const char *picture, struct user_record *updated, char **old_picture,
                          int *commit_sent)
{
    static const char begin[] = "START TRANSACTION";
    struct locked_row row;
    int rc;

    *commit_sent = 0;
    memset(&row, 0, sizeof(row));
    if (mysql_real_query(c->mysql, begin, sizeof(begin) - 1) != 0)
        return db_conn_fail(c, NULL, "begin");
    rc = lock_row(c, username, &row);
    if (rc == STORE_OK) rc = run_update(c, username, nickname, picture);
    if (rc != STORE_OK) {
        /* On errors the connection is marked broken: closing it rolls the
         * transaction back. NOT_FOUND leaves it healthy: roll back here. */
        if (rc == STORE_NOT_FOUND && mysql_rollback(c->mysql) != 0)
            (void)db_conn_fail(c, NULL, "rollback");
        return rc;
    }
    *commit_sent = 1;
    if (mysql_commit(c->mysql) != 0) return db_conn_fail(c, NULL, "commit");

    updated->id = row.id;
    if ((updated->username = strdup(username)) == NULL) goto nomem;
    if (nickname != NULL)
        updated->nickname = strdup(nickname);
    else
        (void)dup_column(row.nick, row.nick_len, row.nick_null, &updated->nickname);
    if (updated->nickname == NULL) goto nomem;
    if (picture != NULL) {
        if ((updated->picture = strdup(picture)) == NULL) goto nomem;
    } else if (dup_column(row.pic, row.pic_len, row.pic_null, &updated->picture) != 0) {
        goto nomem;
    }
    if (dup_column(row.pic, row.pic_len, row.pic_null, old_picture) != 0) goto nomem;
    /* The hash too, so the refreshed cache entry can serve logins (see profile_cache.h). */
    if (dup_column(row.hash, row.hash_len, row.hash_null, &updated->password_hash) != 0 ||
        updated->password_hash == NULL)
        goto nomem;
    return STORE_OK;

nomem:
    /* Committed, but we cannot describe the result: the caller must not
     * trust its cache; report it as an error. */
    user_record_free(updated);
    return STORE_NOMEM;
}

int user_store_update_profile(struct db_pool *pool, const char *username, const char *nickname,
                              const char *picture, struct user_record *updated, char **old_picture,
                              int *maybe_written)
{
    struct db_conn *c;
    int rc, commit_sent = 0;

    memset(updated, 0, sizeof(*updated));
    *old_picture = NULL;
    *maybe_written = 0;
    for (int attempt = 0;; attempt++) {
        rc = db_pool_acquire(pool, &c);
        if (rc != STORE_OK) return rc;
        rc = update_profile(c, username, nickname, picture, updated, old_picture, &commit_sent);
        /* A transaction that died before COMMIT was rolled back by the
         * server: running it again is safe. After COMMIT it is not. */
        int retry = attempt == 0 && !commit_sent && db_pool_should_retry(pool, c, rc);
        db_pool_release(pool, c);
        if (!retry) {
            *maybe_written = rc != STORE_OK && commit_sent;
            return rc;
        }
    }
}
