#include "store/db_pool.h"

#include <errmsg.h>
#include <errno.h>
#include <mysqld_error.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "store/store.h"

/* How long a borrower waits for a busy pool, milliseconds. */
#define DB_POOL_WAIT_MS 1000
/* Socket read/write timeouts, seconds: bounds a query on a hung server. */
#define DB_IO_TIMEOUT_S 5
/* Row-lock waits end quickly with an error we report as "unavailable"
 * instead of holding an RPC thread for InnoDB's default 50 s. */
#define DB_INIT_COMMAND "SET SESSION innodb_lock_wait_timeout = 3"

struct db_pool {
    struct config_mysql cfg;
    struct conn_pool *pool;
};

static pthread_once_t library_once = PTHREAD_ONCE_INIT;
static int library_rc;

static void library_init(void)
{
    /* mysql_library_init is not thread-safe: run it once before any thread
     * opens a connection. */
    library_rc = mysql_library_init(0, NULL, NULL);
}

static void *db_open(void *arg)
{
    struct db_pool *pool = arg;
    struct db_conn *c = calloc(1, sizeof(*c));
    unsigned int connect_timeout =
        (unsigned int)(pool->cfg.connect_timeout_s > 0 ? pool->cfg.connect_timeout_s : 2);
    unsigned int io_timeout = DB_IO_TIMEOUT_S;
    my_bool reconnect = 0;

    if (c == NULL) {
        log_error(0, "event=mysql_connect outcome=failure error=\"out of memory\"");
        return NULL;
    }
    c->mysql = mysql_init(NULL);
    if (c->mysql == NULL) {
        log_error(0, "event=mysql_connect outcome=failure error=\"out of memory\"");
        free(c);
        return NULL;
    }
    if (mysql_options(c->mysql, MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout) != 0 ||
        mysql_options(c->mysql, MYSQL_OPT_READ_TIMEOUT, &io_timeout) != 0 ||
        mysql_options(c->mysql, MYSQL_OPT_WRITE_TIMEOUT, &io_timeout) != 0 ||
        mysql_options(c->mysql, MYSQL_OPT_RECONNECT, &reconnect) != 0 ||
        mysql_options(c->mysql, MYSQL_SET_CHARSET_NAME, "utf8mb4") != 0 ||
        mysql_options(c->mysql, MYSQL_INIT_COMMAND, DB_INIT_COMMAND) != 0) {
        log_error(0, "event=mysql_connect outcome=failure error=\"cannot set options\"");
        goto fail;
    }
    /* CLIENT_FOUND_ROWS: an UPDATE that matched a row but changed nothing
     * still counts it, so "matched" and "changed" are not confused. */
    if (mysql_real_connect(c->mysql, pool->cfg.host, pool->cfg.user, pool->cfg.password,
                           pool->cfg.database, (unsigned int)pool->cfg.port, NULL,
                           CLIENT_FOUND_ROWS) == NULL) {
        char msg[256];
        const char *err = mysql_error(c->mysql);
        log_warn(0, "event=mysql_connect outcome=failure host=%s port=%d errno=%u error=%s",
                 pool->cfg.host, pool->cfg.port, mysql_errno(c->mysql),
                 log_quote(msg, sizeof(msg), err, strlen(err)));
        goto fail;
    }
    log_debug(0, "event=mysql_connect outcome=success host=%s port=%d", pool->cfg.host,
              pool->cfg.port);
    return c;

fail:
    mysql_close(c->mysql);
    free(c);
    return NULL;
}

static void db_close(void *arg, void *conn)
{
    struct db_conn *c = conn;
    (void)arg;
    for (int i = 0; i < DB_STMT_SLOTS; i++)
        if (c->stmts[i] != NULL) mysql_stmt_close(c->stmts[i]);
    mysql_close(c->mysql);
    free(c);
}

static const struct conn_pool_ops db_ops = {.open = db_open, .close = db_close};

struct db_pool *db_pool_create(const struct config_mysql *cfg)
{
    struct db_pool *pool;

    if (pthread_once(&library_once, library_init) != 0 || library_rc != 0) {
        errno = ENOMEM;
        return NULL;
    }
    pool = calloc(1, sizeof(*pool));
    if (pool == NULL) return NULL;
    pool->cfg = *cfg;
    pool->pool = conn_pool_create(cfg->pool_size > 0 ? cfg->pool_size : 1, &db_ops, pool);
    if (pool->pool == NULL) {
        free(pool);
        errno = ENOMEM;
        return NULL;
    }
    return pool;
}

void db_pool_destroy(struct db_pool *pool)
{
    if (pool == NULL) return;
    conn_pool_destroy(pool->pool);
    /* Wipe the copied password before the memory goes back to malloc. */
    memset(pool->cfg.password, 0, sizeof(pool->cfg.password));
    free(pool);
}

int db_pool_acquire(struct db_pool *pool, struct db_conn **out)
{
    struct conn_pool_entry *e;

    *out = NULL;
    if (conn_pool_acquire(pool->pool, DB_POOL_WAIT_MS, &e) != 0) {
        if (errno == ETIMEDOUT)
            log_warn(0, "event=mysql_pool outcome=exhausted wait_ms=%d", DB_POOL_WAIT_MS);
        return STORE_UNAVAILABLE;
    }
    struct db_conn *c = e->conn;
    c->entry = e;
    c->lost = 0;
    *out = c;
    return STORE_OK;
}

void db_pool_release(struct db_pool *pool, struct db_conn *conn)
{
    if (conn == NULL) return;
    conn_pool_release(pool->pool, conn->entry);
}

int db_conn_prepare(struct db_conn *conn, int slot, const char *sql, MYSQL_STMT **out)
{
    *out = NULL;
    if (slot < 0 || slot >= DB_STMT_SLOTS) return STORE_ERROR;
    if (conn->stmts[slot] == NULL) {
        MYSQL_STMT *st = mysql_stmt_init(conn->mysql);
        if (st == NULL) return db_conn_fail(conn, NULL, "mysql_stmt_init");
        if (mysql_stmt_prepare(st, sql, (unsigned long)strlen(sql)) != 0) {
            int rc = db_conn_fail(conn, st, "mysql_stmt_prepare");
            mysql_stmt_close(st);
            return rc;
        }
        conn->stmts[slot] = st;
    }
    *out = conn->stmts[slot];
    return STORE_OK;
}

/* Client-side errors that mean we misused the API: bugs, not outages. */
static int is_client_usage_error(unsigned int err)
{
    switch (err) {
    case CR_COMMANDS_OUT_OF_SYNC:
    case CR_NO_PREPARE_STMT:
    case CR_PARAMS_NOT_BOUND:
    case CR_INVALID_PARAMETER_NO:
    case CR_INVALID_BUFFER_USE:
    case CR_UNSUPPORTED_PARAM_TYPE:
    case CR_NO_DATA:
    case CR_NO_STMT_METADATA:
    case CR_NOT_IMPLEMENTED:
    case CR_STMT_CLOSED:
        return 1;
    default:
        return 0;
    }
}

/* Errors that mean "the server cannot answer now", not "our SQL is wrong". */
static int is_unavailable_error(unsigned int err)
{
    /* Other client-side errors are network trouble: refused, lost, timed out. */
    if (err >= CR_MIN_ERROR && err <= CR_MAX_ERROR) return !is_client_usage_error(err);
    switch (err) {
    case ER_CON_COUNT_ERROR: /* too many connections */
    case ER_TOO_MANY_USER_CONNECTIONS:
    case ER_OUT_OF_RESOURCES:
    case ER_OUTOFMEMORY:
    case ER_CANT_CREATE_THREAD:
    case ER_SERVER_SHUTDOWN:
    case ER_CONNECTION_KILLED:
    case ER_QUERY_INTERRUPTED:
    case ER_STATEMENT_TIMEOUT:
    case ER_LOCK_WAIT_TIMEOUT:
    case ER_LOCK_DEADLOCK:
    case ER_READ_ONLY_MODE:
    case ER_OPTION_PREVENTS_STATEMENT: /* --read-only */
    case ER_ACCESS_DENIED_ERROR:
    case ER_DBACCESS_DENIED_ERROR:
    case ER_HOST_IS_BLOCKED:
    case ER_HOST_NOT_PRIVILEGED:
    case ER_NET_READ_ERROR:
    case ER_NET_READ_INTERRUPTED:
    case ER_NET_ERROR_ON_WRITE:
    case ER_NET_WRITE_INTERRUPTED:
    case ER_NET_PACKETS_OUT_OF_ORDER:
    case ER_MAX_PREPARED_STMT_COUNT_REACHED:
        return 1;
    default:
        return 0;
    }
}

/* Errors after which the connection itself is gone. */
static int is_lost_error(unsigned int err)
{
    return (err >= CR_MIN_ERROR && err <= CR_MAX_ERROR && !is_client_usage_error(err)) ||
           err == ER_SERVER_SHUTDOWN || err == ER_CONNECTION_KILLED;
}

int db_conn_fail(struct db_conn *conn, MYSQL_STMT *stmt, const char *what)
{
    unsigned int err = stmt != NULL ? mysql_stmt_errno(stmt) : mysql_errno(conn->mysql);
    const char *msg = stmt != NULL ? mysql_stmt_error(stmt) : mysql_error(conn->mysql);
    char qmsg[256];
    int unavailable = is_unavailable_error(err);

    /* After any error the protocol state (pending results, an open
     * transaction) is uncertain: closing the connection is the one reset
     * that is always right, and errors are rare. */
    conn->entry->broken = 1;
    if (is_lost_error(err)) conn->lost = 1;
    if (msg == NULL) msg = "";
    if (unavailable)
        log_warn(0, "event=mysql_error op=%s errno=%u error=%s outcome=unavailable", what, err,
                 log_quote(qmsg, sizeof(qmsg), msg, strlen(msg)));
    else
        log_error(0, "event=mysql_error op=%s errno=%u error=%s outcome=failure", what, err,
                  log_quote(qmsg, sizeof(qmsg), msg, strlen(msg)));
    return unavailable ? STORE_UNAVAILABLE : STORE_ERROR;
}

int db_pool_should_retry(struct db_pool *pool, struct db_conn *conn, int rc)
{
    if (rc != STORE_UNAVAILABLE || !conn->lost || conn->entry->uses <= 1) return 0;
    conn_pool_invalidate(pool->pool, conn->entry);
    return 1;
}

int db_pool_ping(struct db_pool *pool)
{
    struct db_conn *c;
    int rc;

    for (int attempt = 0;; attempt++) {
        rc = db_pool_acquire(pool, &c);
        if (rc != STORE_OK) return rc;
        rc = mysql_ping(c->mysql) == 0 ? STORE_OK : db_conn_fail(c, NULL, "mysql_ping");
        int retry = attempt == 0 && db_pool_should_retry(pool, c, rc);
        db_pool_release(pool, c);
        if (!retry) return rc;
    }
}
