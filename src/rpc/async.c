/* async: see async.h. */
#include "rpc/async.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

#define ASYNC_BUF_FIRST 4096       /* bytes asked of the first recv of an answer */
#define ASYNC_BUF_KEEP (64u << 10) /* bytes; larger read buffers are freed after use */
#define ASYNC_SWEEP_MS 50          /* how often deadlines are checked while calls are pending */
#define ASYNC_EVENTS 128           /* epoll events taken per wake-up */

/* One call from rpc_async_pack() until its done callback (or rpc_async_call_free). */
struct rpc_async_call {
    struct rpc_async_call *next; /* submission, wait or sweep queue */
    uint64_t id;                 /* request id, to check the answer's */
    rpc_async_done_fn done;      /* caller's callback */
    void *arg;                   /* its argument */
    int64_t deadline_ms; /* while waiting for a connection: when to give up (pool_wait_ms) */
    int retried;         /* 1 once resent after a reused connection was found closed */
    int next_addr;       /* after a failed connect: which of the core's addresses to try next */
    size_t len;          /* bytes in frame */
    uint8_t frame[];     /* header + payload, allocated with the call (one malloc a call) */
};

/* A FIFO of calls, linked through their next. */
struct call_queue {
    struct rpc_async_call *head, *tail;
};

enum aconn_state {
    AC_CONNECTING, /* non-blocking connect in progress, call attached */
    AC_BUSY,       /* call written or being written, answer awaited */
    AC_IDLE,       /* in the idle stack, no call */
    AC_CLOSED,     /* fd closed; freed after the current batch of events */
};

/* One connection to the core; only the reactor thread touches it. */
struct aconn {
    int fd;                      /* non-blocking TCP socket, -1 once closed */
    enum aconn_state state;      /* see above */
    int reused;                  /* 1 once it answered a call: a failure may be a stale socket */
    int want_out;                /* 1 while EPOLLOUT is registered */
    struct rpc_async_call *call; /* AC_CONNECTING / AC_BUSY: the call it carries */
    size_t sent;                 /* bytes of call->frame written */
    int answered;                /* 1 once any byte of the answer arrived */
    int64_t deadline_ms;         /* AC_CONNECTING: connect deadline; AC_BUSY: answer deadline */
    int addr_index;     /* which of the core's addresses (rpc_async.addrs) it connects to */
    struct rpc_buf in;  /* answer bytes (header included) */
    struct aconn *prev; /* list of every open connection (for the deadline sweep) */
    struct aconn *next;
    struct aconn *next_idle; /* idle stack (LIFO keeps hot connections hot) */
};

struct rpc_async {
    struct config_rpc cfg; /* private copy */
    int epfd;              /* the reactor's epoll */
    int evfd;              /* eventfd: new submissions or stop */
    pthread_t thread;
    int started; /* 1 while thread must be joined */

    pthread_mutex_t mu;          /* guards the submission queue and stopping */
    struct call_queue submitted; /* calls submitted, not yet seen by the reactor */
    int stopping;                /* rpc_async_stop began */

    /* reactor thread only */
    struct aconn *all;         /* open connections */
    struct aconn *idle;        /* idle stack */
    struct aconn *closed;      /* closed during this batch, freed after it */
    struct call_queue waiting; /* calls waiting for a connection */
    int pending;               /* calls connecting, in flight or waiting */
    struct addrinfo *addrs;    /* the core's addresses, resolved at the first connect
                                  and again after every address failed */

    /* gauges, read by any thread */
    _Atomic int open, idle_count;
    _Atomic uint64_t calls, failures, connects;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- calls ---------------------------------------------------------------------- */

static void call_finish(struct rpc_async *a, struct rpc_async_call *call, int status,
                        Rpc__Response *resp)
{
    a->pending--;
    atomic_fetch_add(&a->calls, 1);
    if (status != RPC_OK) atomic_fetch_add(&a->failures, 1);
    call->done(call->arg, status, resp);
    rpc_async_call_free(call);
}

static void queue_push(struct call_queue *q, struct rpc_async_call *call)
{
    call->next = NULL;
    if (q->tail != NULL)
        q->tail->next = call;
    else
        q->head = call;
    q->tail = call;
}

static struct rpc_async_call *queue_pop(struct call_queue *q)
{
    struct rpc_async_call *call = q->head;
    if (call == NULL) return NULL;
    q->head = call->next;
    if (q->head == NULL) q->tail = NULL;
    call->next = NULL;
    return call;
}

/* ---- connections ---------------------------------------------------------------- */

static int conn_watch(struct rpc_async *a, struct aconn *c, int op, int want_out)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (want_out ? EPOLLOUT : 0u),
                             .data.ptr = c};
    if (epoll_ctl(a->epfd, op, c->fd, &ev) != 0) return -1;
    c->want_out = want_out;
    return 0;
}

/* Closes c and returns the call it carried (NULL when none); c is freed after the batch. */
static struct rpc_async_call *conn_close(struct rpc_async *a, struct aconn *c)
{
    struct rpc_async_call *call = c->call;
    if (c->state == AC_IDLE) {
        /* unlink from the idle stack */
        for (struct aconn **p = &a->idle; *p != NULL; p = &(*p)->next_idle) {
            if (*p == c) {
                *p = c->next_idle;
                break;
            }
        }
        atomic_fetch_sub(&a->idle_count, 1);
    }
    (void)epoll_ctl(a->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->state = AC_CLOSED;
    c->call = NULL;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        a->all = c->next;
    if (c->next != NULL) c->next->prev = c->prev;
    c->next = a->closed;
    a->closed = c;
    atomic_fetch_sub(&a->open, 1);
    return call;
}

static void free_closed(struct rpc_async *a)
{
    while (a->closed != NULL) {
        struct aconn *c = a->closed;
        a->closed = c->next;
        rpc_buf_free(&c->in);
        free(c);
    }
}

/*
 * Starts a non-blocking connect to the core's addresses from number first
 * on (resolved here when not known: a name is looked up once, not per
 * connection, so a slow resolver cannot stall the reactor on every call).
 * Returns the connection (state AC_CONNECTING, registered with epoll) or
 * NULL when no address is left to try (the addresses are then forgotten,
 * so the next connect resolves the name again).
 */
static struct aconn *conn_open(struct rpc_async *a, int first)
{
    if (a->addrs == NULL) {
        char port[16];
        snprintf(port, sizeof(port), "%d", a->cfg.core_port);
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        if (first > 0 || getaddrinfo(a->cfg.core_host, port, &hints, &a->addrs) != 0) {
            a->addrs = NULL;
            return NULL;
        }
    }
    struct addrinfo *ai = a->addrs;
    int i = 0, fd = -1;
    for (; ai != NULL && i < first; ai = ai->ai_next)
        i++;
    for (; ai != NULL; ai = ai->ai_next, i++) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS) break;
        close(fd);
        fd = -1;
    }
    if (fd < 0) {
        freeaddrinfo(a->addrs);
        a->addrs = NULL;
        return NULL;
    }
    struct aconn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return NULL;
    }
    c->fd = fd;
    c->addr_index = i;
    c->state = AC_CONNECTING;
    c->deadline_ms = now_ms() + a->cfg.connect_timeout_ms;
    /* EPOLLOUT reports the end of the connect, success or failure. */
    if (conn_watch(a, c, EPOLL_CTL_ADD, 1) != 0) {
        close(fd);
        free(c);
        return NULL;
    }
    c->next = a->all;
    if (a->all != NULL) a->all->prev = c;
    a->all = c;
    atomic_fetch_add(&a->open, 1);
    atomic_fetch_add(&a->connects, 1);
    return c;
}

/* Closes c, whose connect failed or timed out; returns its call (NULL when none) with the
 * address to try next noted. */
static struct rpc_async_call *conn_connect_failed(struct rpc_async *a, struct aconn *c)
{
    int next = c->addr_index + 1;
    struct rpc_async_call *call = conn_close(a, c);
    if (call != NULL) call->next_addr = next;
    return call;
}

/* A call whose connect failed tries the core's next address, else fails. */
static void call_reconnect(struct rpc_async *a, struct rpc_async_call *call)
{
    struct aconn *again = conn_open(a, call->next_addr);
    if (again != NULL)
        again->call = call;
    else
        call_finish(a, call, RPC_ERR_UNAVAILABLE, NULL);
}

static void conn_fail(struct rpc_async *a, struct aconn *c, int status);
static void dispatch(struct rpc_async *a, struct rpc_async_call *call);

/* Writes what is left of c's call; waits for EPOLLOUT when the socket is full. */
static void conn_send(struct rpc_async *a, struct aconn *c)
{
    struct rpc_async_call *call = c->call;
    while (c->sent < call->len) {
        ssize_t n = send(c->fd, call->frame + c->sent, call->len - c->sent, MSG_NOSIGNAL);
        if (n > 0) {
            c->sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->want_out && conn_watch(a, c, EPOLL_CTL_MOD, 1) != 0)
                conn_fail(a, c, RPC_ERR_IO);
            return;
        }
        conn_fail(a, c, RPC_ERR_IO);
        return;
    }
    if (c->want_out && conn_watch(a, c, EPOLL_CTL_MOD, 0) != 0) conn_fail(a, c, RPC_ERR_IO);
}

/* Puts call on c (connected, not carrying a call) and starts writing it. */
static void conn_start(struct rpc_async *a, struct aconn *c, struct rpc_async_call *call)
{
    c->state = AC_BUSY;
    c->call = call;
    c->sent = 0;
    c->answered = 0;
    c->in.len = 0;
    c->deadline_ms = now_ms() + a->cfg.io_timeout_ms;
    conn_send(a, c);
}

/* Gives every waiting call a connection while one can be had. */
static void serve_waiters(struct rpc_async *a)
{
    while (a->waiting.head != NULL && (a->idle != NULL || atomic_load(&a->open) < a->cfg.pool_size))
        dispatch(a, queue_pop(&a->waiting));
}

/*
 * Closes c after a failure and settles its call: resent once on a fresh
 * connection when c had served earlier calls and the core closed it before
 * answering (a restart: the request never reached a live handler), else
 * finished with status. Timeouts are never resent: the core may still be
 * working on the request.
 */
static void conn_fail(struct rpc_async *a, struct aconn *c, int status)
{
    int stale = c->state == AC_BUSY && c->reused && !c->answered &&
                (status == RPC_ERR_CLOSED || status == RPC_ERR_IO);
    struct rpc_async_call *call = conn_close(a, c);
    if (call != NULL) {
        if (stale && !call->retried) {
            log_debug(call->id, "event=rpc_retry reason=\"%s\"", rpc_status_str(status));
            call->retried = 1;
            struct aconn *fresh = conn_open(a, 0);
            if (fresh != NULL)
                fresh->call = call;
            else
                call_finish(a, call, RPC_ERR_UNAVAILABLE, NULL);
        } else {
            call_finish(a, call, status, NULL);
        }
    }
    serve_waiters(a);
}

/* A whole answer is in c->in: check it, hand it over, make c idle. */
static void conn_answer(struct rpc_async *a, struct aconn *c, uint32_t payload_len)
{
    if (c->in.len != RPC_FRAME_HEADER_BYTES + (size_t)payload_len) {
        conn_fail(a, c, RPC_ERR_FRAME); /* bytes beyond the frame: the protocol forbids them */
        return;
    }
    Rpc__Response *resp =
        rpc__response__unpack(NULL, payload_len, c->in.data + RPC_FRAME_HEADER_BYTES);
    if (resp == NULL) {
        conn_fail(a, c, RPC_ERR_DECODE);
        return;
    }
    if (resp->id != c->call->id) {
        rpc__response__free_unpacked(resp, NULL);
        conn_fail(a, c, RPC_ERR_MISMATCH);
        return;
    }
    struct rpc_async_call *call = c->call;
    c->call = NULL;
    c->state = AC_IDLE;
    c->reused = 1;
    if (c->in.cap > ASYNC_BUF_KEEP) rpc_buf_free(&c->in);
    c->next_idle = a->idle;
    a->idle = c;
    atomic_fetch_add(&a->idle_count, 1);
    call_finish(a, call, RPC_OK, resp);
    serve_waiters(a);
}

/* Reads what arrived of c's answer. */
static void conn_recv(struct rpc_async *a, struct aconn *c)
{
    for (;;) {
        uint32_t payload_len = 0;
        int rc = rpc_frame_parse(c->in.data, c->in.len, a->cfg.max_frame_bytes, &payload_len);
        if (rc == RPC_OK) {
            conn_answer(a, c, payload_len);
            return;
        }
        if (rc == RPC_ERR_FRAME) {
            conn_fail(a, c, RPC_ERR_FRAME);
            return;
        }
        size_t want = ASYNC_BUF_FIRST;
        if (c->in.len >= RPC_FRAME_HEADER_BYTES) {
            /* The header is in: room for exactly this frame, plus one byte so a
             * peer that sends more than the frame is noticed. */
            want = RPC_FRAME_HEADER_BYTES + (size_t)payload_len + 1;
        }
        if (want < c->in.len + 1) want = c->in.len + 1;
        if (rpc_buf_reserve(&c->in, want) != RPC_OK) {
            conn_fail(a, c, RPC_ERR_NOMEM);
            return;
        }
        ssize_t n = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len, 0);
        if (n > 0) {
            c->in.len += (size_t)n;
            c->answered = 1;
            continue;
        }
        if (n == 0) {
            conn_fail(a, c, c->in.len == 0 ? RPC_ERR_CLOSED : RPC_ERR_FRAME);
            return;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) conn_fail(a, c, RPC_ERR_IO);
        return;
    }
}

/* What epoll reported for c. */
static void conn_event(struct rpc_async *a, struct aconn *c, uint32_t events)
{
    switch (c->state) {
    case AC_CONNECTING: {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        if (err == 0 && (events & (EPOLLERR | EPOLLHUP)) != 0) err = ECONNREFUSED;
        if (err != 0) {
            struct rpc_async_call *call = conn_connect_failed(a, c);
            if (call != NULL) call_reconnect(a, call);
            serve_waiters(a);
            return;
        }
        int one = 1;
        /* Requests are single small writes; Nagle would only add latency. */
        (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        conn_start(a, c, c->call);
        return;
    }
    case AC_IDLE:
        /* EOF from a core that restarted or reaped it, or bytes nobody asked for. */
        (void)conn_close(a, c);
        serve_waiters(a);
        return;
    case AC_BUSY:
        if ((events & EPOLLOUT) != 0 && c->sent < c->call->len) {
            conn_send(a, c);
            if (c->state != AC_BUSY) return;
        }
        if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) conn_recv(a, c);
        return;
    case AC_CLOSED:
        return; /* closed earlier in this batch */
    }
}

/* ---- the reactor ---------------------------------------------------------------- */

/* Gives call a connection: an idle one, a new one while fewer than pool_size exist, or a place
 * in the wait queue. */
static void dispatch(struct rpc_async *a, struct rpc_async_call *call)
{
    if (a->idle != NULL) {
        struct aconn *c = a->idle;
        a->idle = c->next_idle;
        atomic_fetch_sub(&a->idle_count, 1);
        conn_start(a, c, call);
        return;
    }
    if (atomic_load(&a->open) < a->cfg.pool_size) {
        struct aconn *c = conn_open(a, 0);
        if (c == NULL) {
            call_finish(a, call, RPC_ERR_UNAVAILABLE, NULL);
            return;
        }
        c->call = call;
        return;
    }
    call->deadline_ms = now_ms() + a->cfg.pool_wait_ms;
    queue_push(&a->waiting, call);
}

/* Fails the calls whose deadline passed: waiting too long for a connection
 * (UNAVAILABLE), for a connect (UNAVAILABLE) or for an answer (TIMEOUT). */
static void sweep(struct rpc_async *a, int64_t now)
{
    while (a->waiting.head != NULL && a->waiting.head->deadline_ms <= now)
        call_finish(a, queue_pop(&a->waiting), RPC_ERR_UNAVAILABLE, NULL);
    /* First only close (the list must not change under the walk otherwise), then settle. */
    struct rpc_async_call *timed_out = NULL, *reconnect = NULL, *call;
    struct aconn *next;
    for (struct aconn *c = a->all; c != NULL; c = next) {
        next = c->next;
        if (c->deadline_ms > now) continue;
        if (c->state == AC_CONNECTING) {
            call = conn_connect_failed(a, c);
            if (call != NULL) call->next = reconnect, reconnect = call;
        } else if (c->state == AC_BUSY) {
            log_debug(c->call->id, "event=rpc_timeout");
            call = conn_close(a, c);
            call->next = timed_out, timed_out = call;
        }
    }
    while ((call = timed_out) != NULL) {
        timed_out = call->next;
        call_finish(a, call, RPC_ERR_TIMEOUT, NULL);
    }
    while ((call = reconnect) != NULL) {
        reconnect = call->next;
        call->next = NULL;
        call_reconnect(a, call);
    }
    serve_waiters(a);
}

/* Takes the submitted calls. Returns 1 when stopping. */
static int take_submissions(struct rpc_async *a)
{
    uint64_t count;
    ssize_t n = read(a->evfd, &count, sizeof(count));
    (void)n; /* EAGAIN: a wake-up already consumed; nothing is lost, the queue is the truth */
    pthread_mutex_lock(&a->mu);
    struct rpc_async_call *call = a->submitted.head;
    a->submitted.head = a->submitted.tail = NULL;
    int stopping = a->stopping;
    pthread_mutex_unlock(&a->mu);
    while (call != NULL) {
        struct rpc_async_call *next = call->next;
        call->next = NULL;
        a->pending++;
        if (stopping)
            call_finish(a, call, RPC_ERR_UNAVAILABLE, NULL);
        else
            dispatch(a, call);
        call = next;
    }
    return stopping;
}

/* Settles everything with UNAVAILABLE and closes every connection. */
static void fail_all(struct rpc_async *a)
{
    struct rpc_async_call *call;
    while ((call = queue_pop(&a->waiting)) != NULL)
        call_finish(a, call, RPC_ERR_UNAVAILABLE, NULL);
    while (a->all != NULL) {
        call = conn_close(a, a->all);
        if (call != NULL) call_finish(a, call, RPC_ERR_UNAVAILABLE, NULL);
    }
    free_closed(a);
}

static void *reactor_main(void *arg)
{
    struct rpc_async *a = arg;
    struct epoll_event ev[ASYNC_EVENTS];
    int64_t last_sweep = now_ms();
    int stopping = 0;
    while (!stopping) {
        int timeout = a->pending > 0 ? ASYNC_SWEEP_MS : -1;
        int n = epoll_wait(a->epfd, ev, ASYNC_EVENTS, timeout);
        if (n < 0 && errno != EINTR) {
            log_error(0, "rpc: async reactor: epoll_wait failed: %s", strerror(errno));
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        int woken = 0;
        for (int i = 0; i < n; i++) {
            if (ev[i].data.ptr == NULL)
                woken = 1;
            else
                conn_event(a, ev[i].data.ptr, ev[i].events);
        }
        if (woken) stopping = take_submissions(a);
        int64_t now = now_ms();
        if (now - last_sweep >= ASYNC_SWEEP_MS) {
            sweep(a, now);
            last_sweep = now;
        }
        free_closed(a);
    }
    fail_all(a);
    return NULL;
}

struct rpc_async *rpc_async_create(const struct config_rpc *cfg)
{
    struct rpc_async *a = calloc(1, sizeof(*a));
    if (a == NULL) return NULL;
    a->cfg = *cfg;
    if (a->cfg.pool_size < 1) a->cfg.pool_size = 1;
    a->epfd = epoll_create1(EPOLL_CLOEXEC);
    a->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int err = errno;
    if (a->epfd < 0 || a->evfd < 0) goto fail;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(a->epfd, EPOLL_CTL_ADD, a->evfd, &ev) != 0) {
        err = errno;
        goto fail;
    }
    if ((err = pthread_mutex_init(&a->mu, NULL)) != 0) goto fail;
    if ((err = pthread_create(&a->thread, NULL, reactor_main, a)) != 0) {
        pthread_mutex_destroy(&a->mu);
        goto fail;
    }
    a->started = 1;
    return a;
fail:
    if (a->epfd >= 0) close(a->epfd);
    if (a->evfd >= 0) close(a->evfd);
    free(a);
    errno = err;
    return NULL;
}

static void wake(struct rpc_async *a)
{
    uint64_t one = 1;
    /* EAGAIN (counter full) still leaves it readable: the wake-up is not lost. */
    ssize_t n = write(a->evfd, &one, sizeof(one));
    (void)n;
}

int rpc_async_pack(const Rpc__Request *req, uint32_t max_frame_bytes, struct rpc_async_call **out)
{
    *out = NULL;
    size_t len = rpc__request__get_packed_size(req);
    if (len == 0 || len > max_frame_bytes) return RPC_ERR_FRAME;
    struct rpc_async_call *call = malloc(sizeof(*call) + RPC_FRAME_HEADER_BYTES + len);
    if (call == NULL) return RPC_ERR_NOMEM;
    memset(call, 0, sizeof(*call));
    rpc_frame_put_header(call->frame, (uint32_t)len);
    rpc__request__pack(req, call->frame + RPC_FRAME_HEADER_BYTES);
    call->id = req->id;
    call->len = RPC_FRAME_HEADER_BYTES + len;
    *out = call;
    return RPC_OK;
}

void rpc_async_call_free(struct rpc_async_call *call)
{
    free(call);
}

int rpc_async_submit(struct rpc_async *a, struct rpc_async_call *call, rpc_async_done_fn done,
                     void *arg)
{
    call->done = done;
    call->arg = arg;
    call->next = NULL;
    pthread_mutex_lock(&a->mu);
    if (a->stopping) {
        pthread_mutex_unlock(&a->mu);
        rpc_async_call_free(call);
        atomic_fetch_add(&a->calls, 1);
        atomic_fetch_add(&a->failures, 1);
        return RPC_ERR_UNAVAILABLE;
    }
    /* Only the first call of a burst wakes the reactor: it takes the whole queue. */
    int first = a->submitted.head == NULL;
    queue_push(&a->submitted, call);
    pthread_mutex_unlock(&a->mu);
    if (first) wake(a);
    return RPC_OK;
}

int rpc_async_call(struct rpc_async *a, const Rpc__Request *req, rpc_async_done_fn done, void *arg)
{
    struct rpc_async_call *call;
    int rc = rpc_async_pack(req, a->cfg.max_frame_bytes, &call);
    if (rc != RPC_OK) return rc;
    return rpc_async_submit(a, call, done, arg);
}

void rpc_async_stop(struct rpc_async *a)
{
    if (a == NULL) return;
    pthread_mutex_lock(&a->mu);
    a->stopping = 1;
    pthread_mutex_unlock(&a->mu);
    wake(a);
    if (a->started) {
        pthread_join(a->thread, NULL);
        a->started = 0;
    }
}

void rpc_async_destroy(struct rpc_async *a)
{
    if (a == NULL) return;
    rpc_async_stop(a);
    pthread_mutex_destroy(&a->mu);
    if (a->addrs != NULL) freeaddrinfo(a->addrs);
    close(a->epfd);
    close(a->evfd);
    free(a);
}

void rpc_async_get_stats(struct rpc_async *a, struct rpc_pool_stats *out)
{
    int open = atomic_load(&a->open);
    uint64_t connects = atomic_load(&a->connects);
    out->open = open;
    out->idle = atomic_load(&a->idle_count);
    out->calls = atomic_load(&a->calls);
    out->failures = atomic_load(&a->failures);
    out->reconnects = connects > 0 ? connects - 1 : 0;
}
