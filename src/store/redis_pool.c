#include "store/redis_pool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "common/log.h"
#include "store/conn_pool.h"
#include "store/store.h"

struct redis_pool {
    struct config_redis cfg;
    struct conn_pool *pool;
};

static struct timeval timeout_tv(int ms)
{
    struct timeval tv;
    if (ms <= 0) ms = 1000;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

#define REDIS_POOL_READ_BUF_KEEP (256u << 10) /* bytes of read buffer a connection keeps */

static void *redis_open(void *arg)
{
    struct redis_pool *pool = arg;
    struct timeval tv = timeout_tv(pool->cfg.timeout_ms);
    redisContext *ctx = redisConnectWithTimeout(pool->cfg.host, pool->cfg.port, tv);
    char msg[256];

    if (ctx == NULL) {
        log_warn(0, "event=redis_connect outcome=failure error=\"out of memory\"");
        return NULL;
    }
    if (ctx->err) {
        log_warn(0, "event=redis_connect outcome=failure host=%s port=%d error=%s", pool->cfg.host,
                 pool->cfg.port, log_quote(msg, sizeof(msg), ctx->errstr, strlen(ctx->errstr)));
        redisFree(ctx);
        return NULL;
    }
    /* The connect timeout also applies to every later read and write. */
    if (redisSetTimeout(ctx, tv) != REDIS_OK || redisEnableKeepAlive(ctx) != REDIS_OK) {
        log_warn(0, "event=redis_connect outcome=failure error=\"cannot set socket options\"");
        redisFree(ctx);
        return NULL;
    }
    /* hiredis frees an idle reply buffer above 16 KiB after every reply, and
     * a group's pipelined MGET answer (~40 KiB) regrew it each time: keep up
     * to REDIS_POOL_READ_BUF_KEEP per connection (hiredis README, "Reader
     * max buffer"). */
    ctx->reader->maxbuf = REDIS_POOL_READ_BUF_KEEP;
    log_debug(0, "event=redis_connect outcome=success host=%s port=%d", pool->cfg.host,
              pool->cfg.port);
    return ctx;
}

static void redis_close(void *arg, void *conn)
{
    (void)arg;
    redisFree(conn);
}

static const struct conn_pool_ops redis_ops = {.open = redis_open, .close = redis_close};

struct redis_pool *redis_pool_create(const struct config_redis *cfg)
{
    struct redis_pool *pool = calloc(1, sizeof(*pool));
    if (pool == NULL) return NULL;
    pool->cfg = *cfg;
    pool->pool = conn_pool_create(cfg->pool_size > 0 ? cfg->pool_size : 1, &redis_ops, pool);
    if (pool->pool == NULL) {
        free(pool);
        errno = ENOMEM;
        return NULL;
    }
    return pool;
}

void redis_pool_destroy(struct redis_pool *pool)
{
    if (pool == NULL) return;
    conn_pool_destroy(pool->pool);
    free(pool);
}

/* One attempt; sets *lost when the connection failed at the I/O level. */
static int command_once(struct conn_pool_entry *e, redisReply **reply, int argc, const char **argv,
                        const size_t *argvlen, int *lost)
{
    redisContext *ctx = e->conn;
    redisReply *r = redisCommandArgv(ctx, argc, argv, argvlen);
    char msg[256];

    *lost = 0;
    if (r == NULL) {
        /* I/O error or timeout: the stream position is unknown, close it. */
        e->broken = 1;
        /* EOF or reset: the server closed the socket (typically a restart
         * since the connection was pooled). A timeout is not "lost": sending
         * again would only double the wait. hiredis leaves errno as the
         * failed read/write set it. */
        int saved_errno = errno;
        *lost = ctx->err == REDIS_ERR_EOF ||
                (ctx->err == REDIS_ERR_IO && (saved_errno == ECONNRESET || saved_errno == EPIPE));
        log_warn(0, "event=redis_error op=%.*s error=%s outcome=unavailable",
                 (int)(argvlen[0] > 16 ? 16 : argvlen[0]), argv[0],
                 log_quote(msg, sizeof(msg), ctx->errstr, strlen(ctx->errstr)));
        return STORE_UNAVAILABLE;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        /* OOM, LOADING, READONLY, MISCONF...: the connection is fine but
         * Redis cannot serve us now. */
        log_warn(0, "event=redis_error op=%.*s error=%s outcome=unavailable",
                 (int)(argvlen[0] > 16 ? 16 : argvlen[0]), argv[0],
                 log_quote(msg, sizeof(msg), r->str ? r->str : "", r->str ? (size_t)r->len : 0));
        freeReplyObject(r);
        return STORE_UNAVAILABLE;
    }
    *reply = r;
    return STORE_OK;
}

int redis_pool_command(struct redis_pool *pool, redisReply **reply, int argc, const char **argv,
                       const size_t *argvlen)
{
    struct conn_pool_entry *e;
    int rc, lost;

    *reply = NULL;
    for (int attempt = 0;; attempt++) {
        if (conn_pool_acquire(pool->pool, pool->cfg.timeout_ms, &e) != 0) {
            if (errno == ETIMEDOUT)
                log_warn(0, "event=redis_pool outcome=exhausted wait_ms=%d", pool->cfg.timeout_ms);
            return STORE_UNAVAILABLE;
        }
        rc = command_once(e, reply, argc, argv, argvlen, &lost);
        int retry = attempt == 0 && rc != STORE_OK && lost && e->uses > 1;
        if (retry) conn_pool_invalidate(pool->pool, e);
        conn_pool_release(pool->pool, e);
        if (!retry) return rc;
    }
}

void redis_cmds_free_replies(struct redis_cmd *cmds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (cmds[i].reply != NULL) freeReplyObject(cmds[i].reply);
        cmds[i].reply = NULL;
    }
}

/* One attempt at a pipeline; sets *lost as command_once does. */
static int pipeline_once(struct conn_pool_entry *e, size_t n, struct redis_cmd *cmds, int *lost)
{
    redisContext *ctx = e->conn;
    char msg[256];

    *lost = 0;
    for (size_t i = 0; i < n; i++) {
        if (redisAppendCommandArgv(ctx, cmds[i].argc, cmds[i].argv, cmds[i].argvlen) != REDIS_OK) {
            e->broken = 1; /* part of the batch may sit in the output buffer */
            log_error(0, "event=redis_error op=pipeline error=\"out of memory\"");
            return STORE_NOMEM;
        }
    }
    for (size_t i = 0; i < n; i++) {
        void *r = NULL;
        if (redisGetReply(ctx, &r) != REDIS_OK || r == NULL) {
            int saved_errno = errno;
            e->broken = 1;
            *lost =
                i == 0 &&
                (ctx->err == REDIS_ERR_EOF ||
                 (ctx->err == REDIS_ERR_IO && (saved_errno == ECONNRESET || saved_errno == EPIPE)));
            log_warn(0, "event=redis_error op=pipeline error=%s outcome=unavailable",
                     log_quote(msg, sizeof(msg), ctx->errstr, strlen(ctx->errstr)));
            redis_cmds_free_replies(cmds, i);
            return STORE_UNAVAILABLE;
        }
        cmds[i].reply = r;
    }
    return STORE_OK;
}

int redis_pool_pipeline(struct redis_pool *pool, size_t n, struct redis_cmd *cmds, int wait_ms)
{
    struct conn_pool_entry *e;
    int rc, lost;

    for (size_t i = 0; i < n; i++)
        cmds[i].reply = NULL;
    if (n == 0) return STORE_OK;
    for (int attempt = 0;; attempt++) {
        int wait = wait_ms < 0 ? pool->cfg.timeout_ms : wait_ms;
        if (conn_pool_acquire(pool->pool, wait, &e) != 0) {
            if (errno == ETIMEDOUT && wait > 0)
                log_warn(0, "event=redis_pool outcome=exhausted wait_ms=%d", wait);
            return STORE_UNAVAILABLE;
        }
        rc = pipeline_once(e, n, cmds, &lost);
        int retry = attempt == 0 && rc != STORE_OK && lost && e->uses > 1;
        if (retry) conn_pool_invalidate(pool->pool, e);
        conn_pool_release(pool->pool, e);
        if (!retry) return rc;
    }
}

int redis_pool_ping(struct redis_pool *pool)
{
    const char *argv[] = {"PING"};
    const size_t argvlen[] = {4};
    redisReply *r;
    int rc = redis_pool_command(pool, &r, 1, argv, argvlen);
    if (rc != STORE_OK) return rc;
    freeReplyObject(r);
    return STORE_OK;
}
