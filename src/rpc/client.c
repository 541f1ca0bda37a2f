/* client: see client.h. */
#include "rpc/client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

#define RPC_CONN_BUF_KEEP (64u << 10) /* bytes; larger read buffers are freed after use */

struct rpc_conn {
    int fd;                /* connected TCP socket, non-blocking */
    struct rpc_buf buf;    /* read buffer, reused across calls */
    struct rpc_conn *next; /* next idle connection */
};

struct rpc_pool {
    struct config_rpc cfg; /* private copy */
    pthread_mutex_t mu;
    pthread_cond_t freed;  /* signalled when a connection is returned or closed */
    struct rpc_conn *idle; /* stack of idle connections (LIFO keeps hot ones hot) */
    int open;              /* connections that exist: idle + in use + being opened */
    int idle_count;
    uint64_t connects;
    /* Outside mu: every call updates them, and a third lock per call made
     * 16 web threads queue on mu (futex waits were ~4 per request). */
    _Atomic uint64_t calls, failures;
};

static _Atomic uint64_t rpc_request_counter;

uint64_t rpc_next_request_id(void)
{
    /* Start from a random-ish base so ids from consecutive runs do not collide in logs. */
    uint64_t id = atomic_fetch_add(&rpc_request_counter, 1) + 1;
    return id;
}

struct rpc_pool *rpc_pool_create(const struct config_rpc *cfg)
{
    struct rpc_pool *pool = calloc(1, sizeof(*pool));
    if (pool == NULL) return NULL;
    pool->cfg = *cfg;
    pthread_condattr_t attr;
    if (pthread_mutex_init(&pool->mu, NULL) != 0) goto fail_mutex;
    if (pthread_condattr_init(&attr) != 0) goto fail_cond;
    if (pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&pool->freed, &attr) != 0) {
        pthread_condattr_destroy(&attr);
        goto fail_cond;
    }
    pthread_condattr_destroy(&attr);
    if (atomic_load(&rpc_request_counter) == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        /* high bits from the start time: ids stay unique across restarts */
        uint64_t expected = 0;
        atomic_compare_exchange_strong(&rpc_request_counter, &expected,
                                       ((uint64_t)ts.tv_sec & 0xffffffu) << 32);
    }
    return pool;
fail_cond:
    pthread_mutex_destroy(&pool->mu);
fail_mutex:
    free(pool);
    errno = ENOMEM;
    return NULL;
}

static void conn_close(struct rpc_conn *c)
{
    if (c == NULL) return;
    if (c->fd >= 0) close(c->fd);
    rpc_buf_free(&c->buf);
    free(c);
}

void rpc_pool_destroy(struct rpc_pool *pool)
{
    if (pool == NULL) return;
    while (pool->idle != NULL) {
        struct rpc_conn *c = pool->idle;
        pool->idle = c->next;
        conn_close(c);
    }
    pthread_cond_destroy(&pool->freed);
    pthread_mutex_destroy(&pool->mu);
    free(pool);
}

/* Opens a TCP connection to the core within connect_timeout_ms. Returns the fd or -1. */
static int conn_connect(const struct config_rpc *cfg)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", cfg->core_port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(cfg->core_host, port, &hints, &res) != 0 || res == NULL) return -1;
    int fd = -1;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) continue;
        int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT, .revents = 0};
            int err = 0;
            socklen_t len = sizeof(err);
            do {
                rc = poll(&p, 1, cfg->connect_timeout_ms);
            } while (rc < 0 && errno == EINTR);
            if (rc == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
                rc = 0;
            else
                rc = -1;
        }
        if (rc == 0) {
            int one = 1;
            /* Requests are single small writes; Nagle would only add latency. */
            (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* True when an idle connection has pending input: EOF from a restarted core, or stray bytes. */
static int conn_is_stale(const struct rpc_conn *c)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN, .revents = 0};
    return poll(&p, 1, 0) != 0;
}

/*
 * Takes a connection: an idle one, or a new one while fewer than pool_size
 * exist, waiting up to pool_wait_ms for one to be freed. *reused tells the
 * caller whether the connection had served an earlier call.
 */
static int pool_acquire(struct rpc_pool *pool, struct rpc_conn **out, int *reused)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += pool->cfg.pool_wait_ms / 1000;
    deadline.tv_nsec += (long)(pool->cfg.pool_wait_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) deadline.tv_sec++, deadline.tv_nsec -= 1000000000L;

    pthread_mutex_lock(&pool->mu);
    for (;;) {
        if (pool->idle != NULL) {
            struct rpc_conn *c = pool->idle;
            pool->idle = c->next;
            pool->idle_count--;
            pthread_mutex_unlock(&pool->mu);
            c->next = NULL;
            /* The check is a syscall: never under mu. */
            if (conn_is_stale(c)) {
                conn_close(c);
                pthread_mutex_lock(&pool->mu);
                pool->open--;
                continue;
            }
            *out = c;
            *reused = 1;
            return RPC_OK;
        }
        if (pool->open < pool->cfg.pool_size) {
            pool->open++;
            pool->connects++;
            pthread_mutex_unlock(&pool->mu);
            struct rpc_conn *c = calloc(1, sizeof(*c));
            int fd = c != NULL ? conn_connect(&pool->cfg) : -1;
            if (fd < 0) {
                free(c);
                pthread_mutex_lock(&pool->mu);
                pool->open--;
                pthread_cond_signal(&pool->freed);
                pthread_mutex_unlock(&pool->mu);
                return c == NULL ? RPC_ERR_NOMEM : RPC_ERR_UNAVAILABLE;
            }
            c->fd = fd;
            *out = c;
            *reused = 0;
            return RPC_OK;
        }
        int rc = pthread_cond_timedwait(&pool->freed, &pool->mu, &deadline);
        if (rc == ETIMEDOUT) {
            pthread_mutex_unlock(&pool->mu);
            return RPC_ERR_UNAVAILABLE;
        }
    }
}

/* Returns c to the pool after a clean exchange, or closes it when ok is 0. */
static void pool_release(struct rpc_pool *pool, struct rpc_conn *c, int ok)
{
    if (ok && c->buf.cap > RPC_CONN_BUF_KEEP) rpc_buf_free(&c->buf);
    pthread_mutex_lock(&pool->mu);
    if (ok) {
        c->next = pool->idle;
        pool->idle = c;
        pool->idle_count++;
    } else {
        pool->open--;
    }
    pthread_cond_signal(&pool->freed);
    pthread_mutex_unlock(&pool->mu);
    if (!ok) conn_close(c);
}

/* One request/response exchange on c. *answered becomes 1 once any response byte was read. */
static int conn_exchange(const struct config_rpc *cfg, struct rpc_conn *c, const uint8_t *frame,
                         size_t len, uint64_t id, Rpc__Response **resp)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = rpc_frame_write(c->fd, frame, (uint32_t)len, cfg->io_timeout_ms);
    if (rc != RPC_OK) return rc;
    /* The answer is never there yet: wait first (rpc_frame_read would try a
     * recv, get EAGAIN, then wait; one syscall saved per call). */
    struct pollfd p = {.fd = c->fd, .events = POLLIN, .revents = 0};
    do
        rc = poll(&p, 1, cfg->io_timeout_ms);
    while (rc < 0 && errno == EINTR);
    if (rc == 0) return RPC_ERR_TIMEOUT;
    if (rc < 0) return RPC_ERR_IO;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long waited = (long)(t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    int left = cfg->io_timeout_ms - (int)waited;
    rc = rpc_frame_read(c->fd, &c->buf, cfg->max_frame_bytes, left > 0 ? left : 1);
    if (rc != RPC_OK) return rc;
    Rpc__Response *r = rpc__response__unpack(NULL, c->buf.len, c->buf.data);
    if (r == NULL) return RPC_ERR_DECODE;
    if (r->id != id) {
        rpc__response__free_unpacked(r, NULL);
        return RPC_ERR_MISMATCH;
    }
    *resp = r;
    return RPC_OK;
}

int rpc_call(struct rpc_pool *pool, const Rpc__Request *req, Rpc__Response **resp)
{
    *resp = NULL;
    size_t len = rpc__request__get_packed_size(req);
    if (len == 0 || len > pool->cfg.max_frame_bytes) return RPC_ERR_FRAME;
    uint8_t stack_buf[1024];
    uint8_t *frame = len <= sizeof(stack_buf) ? stack_buf : malloc(len);
    if (frame == NULL) return RPC_ERR_NOMEM;
    rpc__request__pack(req, frame);

    int rc = RPC_ERR_UNAVAILABLE;
    for (int attempt = 0; attempt < 2; attempt++) {
        struct rpc_conn *c = NULL;
        int reused = 0;
        rc = pool_acquire(pool, &c, &reused);
        if (rc != RPC_OK) break;
        rc = conn_exchange(&pool->cfg, c, frame, len, req->id, resp);
        pool_release(pool, c, rc == RPC_OK);
        /*
         * A reused connection that the core closed (restart, idle reap)
         * before answering never delivered our request to a live handler:
         * retry once on a fresh connection. Timeouts are not retried: the
         * core may still be working on the request.
         */
        if (rc == RPC_OK || !reused || (rc != RPC_ERR_CLOSED && rc != RPC_ERR_IO)) break;
        log_debug(req->id, "event=rpc_retry reason=\"%s\"", rpc_status_str(rc));
    }
    if (frame != stack_buf) free(frame);

    atomic_fetch_add(&pool->calls, 1);
    if (rc != RPC_OK) atomic_fetch_add(&pool->failures, 1);
    return rc;
}

void rpc_call_free(Rpc__Response *resp)
{
    if (resp != NULL) rpc__response__free_unpacked(resp, NULL);
}

void rpc_pool_get_stats(struct rpc_pool *pool, struct rpc_pool_stats *out)
{
    pthread_mutex_lock(&pool->mu);
    out->open = pool->open;
    out->idle = pool->idle_count;
    out->calls = atomic_load(&pool->calls);
    out->failures = atomic_load(&pool->failures);
    out->reconnects = pool->connects > 0 ? pool->connects - 1 : 0;
    pthread_mutex_unlock(&pool->mu);
}
