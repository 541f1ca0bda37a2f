/*
 * conn_pool: a bounded pool of persistent connections of any kind, the
 * common part of the MySQL pool (db_pool.h) and the Redis pool
 * (redis_pool.h).
 *
 * At most `size` connections exist at once. conn_pool_acquire() hands out
 * an idle connection, or opens a new one while fewer than `size` exist, or
 * waits up to wait_ms for one to be released; it never blocks longer, so a
 * saturated or dead server turns into a quick "unavailable" instead of a
 * hung request. Connections are opened outside the pool lock, so a slow
 * connect does not stall threads that only return connections.
 *
 * A connection that failed is released as broken and closed. When a server
 * restarts, every idle connection is dead at once: conn_pool_invalidate()
 * bumps a generation number and idle connections from older generations
 * are closed instead of handed out. Thread-safe.
 */
#ifndef PROFILE_STORE_CONN_POOL_H
#define PROFILE_STORE_CONN_POOL_H

#include <stdint.h>

/* How the pool opens and closes the connections it holds. */
struct conn_pool_ops {
    /* Opens a connection; returns it, or NULL when the server cannot be
     * reached (the callback logs why). Called without the pool lock. */
    void *(*open)(void *arg);
    /* Closes and frees a connection returned by open. */
    void (*close)(void *arg, void *conn);
};

/* One pooled connection, owned by the pool; the borrower may read all
 * fields and set `broken`. */
struct conn_pool_entry {
    void *conn;          /* what ops->open returned */
    uint64_t generation; /* pool generation when it was opened */
    uint64_t uses;       /* times acquired, 1 on the first borrow */
    int broken;          /* borrower sets 1: close on release instead of pooling */
};

struct conn_pool;

/*
 * Creates an empty pool of at most size (>= 1) connections; ops and arg
 * are kept (arg must outlive the pool). No connection is opened yet.
 * Returns the pool, or NULL with errno = ENOMEM or EINVAL.
 */
struct conn_pool *conn_pool_create(int size, const struct conn_pool_ops *ops, void *arg);

/* Closes every idle connection and frees the pool. Nothing may be borrowed. */
void conn_pool_destroy(struct conn_pool *pool);

/*
 * Borrows a connection into *out, waiting at most wait_ms milliseconds
 * (>= 0) for a free slot. Returns 0, or -1 with errno = ETIMEDOUT (all size
 * connections stayed busy) or ECONNREFUSED (ops->open failed). Every
 * successful acquire must be paired with conn_pool_release.
 */
int conn_pool_acquire(struct conn_pool *pool, int wait_ms, struct conn_pool_entry **out);

/* Returns entry to the pool, or closes it when entry->broken is set or it
 * belongs to an older generation. */
void conn_pool_release(struct conn_pool *pool, struct conn_pool_entry *entry);

/* Marks every connection opened up to entry's generation as stale: idle
 * ones are closed on their next acquire, borrowed ones on release. Call
 * when entry, which had worked before, lost its server (a restart): its
 * siblings are dead too. Only the first caller per generation bumps it, so
 * many threads noticing the same restart do not discard fresh connections. */
void conn_pool_invalidate(struct conn_pool *pool, const struct conn_pool_entry *entry);

/* Snapshot of the gauges: connections that exist (idle + borrowed) and idle. */
void conn_pool_stats(struct conn_pool *pool, int *open, int *idle);

#endif
