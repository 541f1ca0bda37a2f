/*
 * client: the web server's side of the RPC, a bounded pool of persistent
 * TCP connections to the core.
 *
 * rpc_call() borrows an idle connection (or opens one while fewer than
 * pool_size exist, or waits up to pool_wait_ms for one to be returned),
 * writes one Request frame, reads one Response frame and checks that its id
 * equals the request's. A connection is returned to the pool only after a
 * clean exchange; after a framing error, a decode error, an id mismatch or a
 * timeout it is closed, so a late answer can never be read by the next
 * request. When a reused connection turns out to have been closed by the
 * core (a restart) before any byte of the answer arrived, the call is
 * retried once on a fresh connection. Thread-safe.
 */
#ifndef PROFILE_RPC_CLIENT_H
#define PROFILE_RPC_CLIENT_H

#include <stdint.h>

#include "common/config.h"
#include "profile.pb-c.h"
#include "rpc/frame.h"

struct rpc_pool;

/* Gauges for metrics and tests. */
struct rpc_pool_stats {
    int open;            /* connections that exist now (idle + in use) */
    int idle;            /* connections waiting in the pool */
    uint64_t calls;      /* rpc_call() invocations */
    uint64_t failures;   /* calls that returned an error */
    uint64_t reconnects; /* connections opened after the first */
};

/*
 * Creates a pool for the core named by cfg (copied; cfg may be freed).
 * No connection is opened yet: the first call connects, so the web server
 * starts even while the core is down.
 * Returns the pool (free with rpc_pool_destroy) or NULL with errno = ENOMEM.
 */
struct rpc_pool *rpc_pool_create(const struct config_rpc *cfg);

/* Closes every idle connection and frees the pool. No call may be in flight. */
void rpc_pool_destroy(struct rpc_pool *pool);

/* Returns a fresh request id: process-unique, never 0. Thread-safe. */
uint64_t rpc_next_request_id(void);

/*
 * Sends req (req->id must be non-zero; the caller owns req) and stores the
 * decoded answer in *resp (free with rpc_call_free). Returns RPC_OK, or
 * RPC_ERR_UNAVAILABLE (cannot connect within connect_timeout_ms, or no
 * pooled connection free within pool_wait_ms), RPC_ERR_TIMEOUT (no answer
 * within io_timeout_ms), RPC_ERR_IO, RPC_ERR_CLOSED, RPC_ERR_FRAME,
 * RPC_ERR_DECODE, RPC_ERR_MISMATCH or RPC_ERR_NOMEM; *resp is NULL then.
 * Every error means the core could not be asked: answer 503.
 */
int rpc_call(struct rpc_pool *pool, const Rpc__Request *req, Rpc__Response **resp);

/* Frees a response returned by rpc_call. NULL is allowed. */
void rpc_call_free(Rpc__Response *resp);

/* Copies the pool's gauges into *out (thread-safe snapshot). */
void rpc_pool_get_stats(struct rpc_pool *pool, struct rpc_pool_stats *out);

#endif
