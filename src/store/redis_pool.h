/*
 * redis_pool: a bounded pool of hiredis (0.14) connections with connect and
 * command timeouts, and a single entry point for commands.
 *
 * Commands are sent with redisCommandArgv, one argument per array element,
 * so keys and values are binary-safe and can never be parsed as extra
 * arguments. Thread-safe.
 */
#ifndef PROFILE_STORE_REDIS_POOL_H
#define PROFILE_STORE_REDIS_POOL_H

#include <stddef.h>

#include <hiredis.h>

#include "common/config.h"

struct redis_pool;

/*
 * Creates a pool of at most cfg->pool_size connections to cfg->host:port
 * (cfg is copied). Connections are opened on demand.
 * Returns the pool (free with redis_pool_destroy) or NULL with errno = ENOMEM.
 */
struct redis_pool *redis_pool_create(const struct config_redis *cfg);

/* Closes the idle connections and frees the pool. No command may be running. */
void redis_pool_destroy(struct redis_pool *pool);

/*
 * Runs one command (argc arguments argv[i] of argvlen[i] bytes) on a pooled
 * connection, waiting at most cfg->timeout_ms for a free connection, for
 * the connect and for the reply. When a connection that had worked before
 * has died (Redis restarted), the command is sent once more on a fresh one:
 * only use this for commands that may run twice (GET, SET, DEL, PING...).
 * On STORE_OK, *reply is the reply (never an error reply; free with
 * freeReplyObject). Returns STORE_OK, or STORE_UNAVAILABLE (no connection,
 * timeout, I/O error, or an error reply such as OOM, LOADING, READONLY;
 * logged) with *reply NULL.
 */
int redis_pool_command(struct redis_pool *pool, redisReply **reply, int argc, const char **argv,
                       const size_t *argvlen);

#define REDIS_CMD_MAX_ARGS 5 /* arguments of the longest pipelined command (SET k v EX ttl) */

/* One command of a pipeline (redis_pool_pipeline). */
struct redis_cmd {
    int argc;                             /* arguments used, <= REDIS_CMD_MAX_ARGS */
    const char *argv[REDIS_CMD_MAX_ARGS]; /* not owned: must outlive the call */
    size_t argvlen[REDIS_CMD_MAX_ARGS];   /* bytes of each argument */
    size_t tag;                           /* the caller's: e.g. which input this answers */
    redisReply *reply;                    /* set on STORE_OK; free with redis_cmds_free_replies */
};

/*
 * Redis pipelining: sends the n commands in one write and reads their n
 * replies, one round trip for all. On STORE_OK every cmds[i].reply is set (a
 * reply may be REDIS_REPLY_ERROR, which the caller judges per command).
 * Returns STORE_UNAVAILABLE (no connection, I/O error, timeout) or
 * STORE_NOMEM with no reply set, after discarding the connection. The
 * commands must be safe to send twice: a pooled connection found closed
 * (Redis restarted) is replaced and the batch sent once more. wait_ms: how
 * long to wait for a free pooled connection, milliseconds; < 0 means [redis]
 * timeout_ms, 0 fails at once (STORE_UNAVAILABLE, not logged) when all are
 * busy, for callers that must not block (the core's event loop hands the
 * work to a worker instead).
 */
int redis_pool_pipeline(struct redis_pool *pool, size_t n, struct redis_cmd *cmds, int wait_ms);

/* Frees the replies the n commands hold and sets them to NULL. */
void redis_cmds_free_replies(struct redis_cmd *cmds, size_t n);

/* Sends PING. Returns STORE_OK or STORE_UNAVAILABLE. */
int redis_pool_ping(struct redis_pool *pool);

#endif
