/*
 * db_pool: a bounded pool of MariaDB/MySQL connections (MariaDB
 * Connector/C) with a per-connection cache of prepared statements.
 *
 * Every connection is opened with connect/read/write timeouts, the utf8mb4
 * character set (so nicknames round-trip byte-exact), automatic reconnect
 * off (a silent reconnect would invalidate prepared statements and an open
 * transaction behind our back) and a short InnoDB lock wait. Statements are
 * prepared once per connection and reused; no SQL text is ever built from
 * user input. A borrower that sees an error calls db_conn_fail(), which
 * logs it, classifies it (unavailable vs. unexpected) and marks the
 * connection broken so it is closed on release. Thread-safe.
 */
#ifndef PROFILE_STORE_DB_POOL_H
#define PROFILE_STORE_DB_POOL_H

#include <mysql.h>

#include "common/config.h"
#include "store/conn_pool.h"

#define DB_STMT_SLOTS 16 /* prepared statements cached per connection */

/* A borrowed connection. */
struct db_conn {
    MYSQL *mysql;                     /* the Connector/C handle */
    MYSQL_STMT *stmts[DB_STMT_SLOTS]; /* prepared on first use, by caller-chosen slot */
    int lost;                         /* 1: the server went away (network error, restart) */
    struct conn_pool_entry *entry;    /* pool bookkeeping (uses, broken) */
};

struct db_pool;

/*
 * Creates a pool of at most cfg->pool_size connections to the server named
 * by cfg (copied, including the password). No connection is opened yet, so
 * the core starts while the database is down. Returns the pool (free with
 * db_pool_destroy) or NULL with errno = ENOMEM.
 */
struct db_pool *db_pool_create(const struct config_mysql *cfg);

/* Closes all idle connections and frees the pool. Nothing may be borrowed. */
void db_pool_destroy(struct db_pool *pool);

/*
 * Borrows a connection into *out, opening one if needed; waits at most
 * about one second when all pool_size connections are busy. Returns
 * STORE_OK, or STORE_UNAVAILABLE (pool exhausted, server unreachable,
 * "too many connections", access denied; logged). Pair with db_pool_release.
 */
int db_pool_acquire(struct db_pool *pool, struct db_conn **out);

/* Returns conn to the pool, or closes it when it was marked broken. */
void db_pool_release(struct db_pool *pool, struct db_conn *conn);

/*
 * Returns in *out the statement cached in slot (0..DB_STMT_SLOTS-1) of
 * conn, preparing sql (a constant with ? placeholders) on first use.
 * The statement belongs to conn. Returns STORE_OK or the status of
 * db_conn_fail.
 */
int db_conn_prepare(struct db_conn *conn, int slot, const char *sql, MYSQL_STMT **out);

/*
 * Records that the last call on conn (or on stmt when not NULL) failed:
 * logs "what" with the server's error number and message, marks conn
 * broken (and lost for network errors) and returns STORE_UNAVAILABLE for
 * errors that mean the server cannot answer now (network, restart, too
 * many connections, lock wait timeout, deadlock, read-only, out of
 * resources) or STORE_ERROR for anything else (SQL or schema errors).
 */
int db_conn_fail(struct db_conn *conn, MYSQL_STMT *stmt, const char *what);

/*
 * True when an operation that failed with status rc on conn may be retried
 * once on a fresh connection: the connection had been used before and the
 * server went away (typical after a database restart, when every pooled
 * connection is dead). Also discards the pool's other stale connections.
 */
int db_pool_should_retry(struct db_pool *pool, struct db_conn *conn, int rc);

/* Round trip to the server (mysql_ping). Returns STORE_OK or STORE_UNAVAILABLE. */
int db_pool_ping(struct db_pool *pool);

#endif
