/* server: see server.h. */
#include "rpc/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
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
#include "common/net.h"
#include "rpc/frame.h"
#include "rpc/message.h"

#define RPC_SERVER_POLL_MS 200            /* how often loops sweep timeouts and look at stop */
#define RPC_SERVER_DRAIN_POLL_MS 20       /* sweep interval while draining */
#define RPC_SERVER_BUF_KEEP (256u << 10)  /* bytes; larger per-connection buffers are freed */
#define RPC_SERVER_STACK_BYTES (1u << 20) /* worker thread stack (libvips, argon2id callers) */
#define RPC_SERVER_READ_CHUNK 4096        /* bytes asked for by a recv before the header is known */
#define RPC_SERVER_EVENTS 256             /* epoll events taken per pass */
#define RPC_SERVER_WORKERS 64             /* default worker count */
#define RPC_SERVER_GROUP_CONCURRENCY 2    /* default group handlers running per group */
#define RPC_SERVER_GROUP_MAX 64           /* default calls per group handler call */
#define RPC_SERVER_GROUP_MAX_CAP 1024     /* largest group_max accepted */

/* Who may touch a connection's request: the loop (IDLE) or a worker (BUSY). */
enum conn_state {
    CONN_IDLE = 0,       /* no request outstanding: the loop may take the next frame */
    CONN_BUSY = 1,       /* a request is being answered (batch handler or worker) */
    CONN_BUSY_INPUT = 2, /* BUSY, and the loop read bytes meanwhile: the worker hands it back */
};

struct rpc_loop;

struct rpc_conn {
    struct rpc_loop *loop;
    int fd;
    char peer[64];                /* "ip:port" for logs */
    _Atomic int state;            /* enum conn_state */
    _Atomic int refs;             /* the loop's until it closes the connection, a worker's while
                                     it holds a request; the last one closes fd and frees */
    struct rpc_buf in;            /* loop only: bytes read, one frame at most */
    struct rpc_buf out;           /* loop only: a batch answer not yet fully written */
    size_t out_off;               /* bytes of out already written */
    int64_t in_since;             /* ms (CLOCK_MONOTONIC) the bytes in `in` started; 0 = none */
    int64_t last_request;         /* ms the last request was taken, or the connection accepted */
    int served;                   /* loop only: 1 once a request was taken */
    int64_t out_since;            /* ms out has waited for the socket; 0 = not waiting */
    int closed;                   /* loop only: unregistered and shut down */
    int peer_eof;                 /* loop only: the peer ended its stream after a whole request:
                                     answer it, then close (no longer in epoll) */
    struct rpc_conn *prev, *next; /* loop only: its open connections */
    struct rpc_conn *qnext;       /* link in the loop's incoming or ready queue */
};

/* One request between the loop that read it and whoever answers it. */
struct rpc_job {
    struct rpc_call call; /* what the batch handler sees */
    Rpc__Request *req;    /* decoded, owned */
    Rpc__Response resp;   /* answer, reset with rpc_response_reset */
    struct rpc_conn *conn;
    struct rpc_job *next; /* worker queue or group link */
};

/* Calls of one group waiting for a worker (see rpc_group_fn). */
struct rpc_group {
    struct rpc_job *head, *tail; /* waiting, in arrival order */
    size_t waiting;              /* entries of head */
    int running;                 /* group handlers of this group running now */
};

struct rpc_loop {
    struct rpc_server *srv;
    pthread_t thread;
    int started;
    int epfd;
    int evfd;                    /* eventfd: incoming or ready connections were queued */
    pthread_mutex_t mu;          /* guards incoming and ready */
    struct rpc_conn *incoming;   /* accepted, not yet registered */
    struct rpc_conn *ready;      /* answered by a worker while input waited; each holds a ref */
    struct rpc_conn *conns;      /* open connections */
    int nconns;                  /* entries of conns */
    struct rpc_job **batch;      /* requests taken in this pass */
    struct rpc_call **calls;     /* the same, as the batch handler sees them */
    size_t batch_len;            /* entries of batch */
    size_t batch_cap;            /* max_connections: one request per connection per pass */
    struct rpc_conn **graveyard; /* refs to drop at the end of the pass (events may name them) */
    size_t graveyard_len, graveyard_cap;
};

struct rpc_server {
    struct rpc_server_options opt;
    int listen_fd;
    int port;               /* bound port */
    atomic_int open_conns;  /* connections whose fd is open, all loops */
    atomic_int stopping;    /* run() saw the stop flag: close idle connections */
    atomic_int force;       /* the drain deadline passed: close everything */
    struct rpc_loop *loops; /* opt.io_threads of them */
    int nloops;
    pthread_t *workers;
    int nworkers;
    pthread_mutex_t jmu;  /* guards the job queue */
    pthread_cond_t jcond; /* a job or a grouped call was queued, a group slot freed, or jstop set */
    struct rpc_job *jhead, *jtail;
    struct rpc_group groups[RPC_SERVER_GROUPS]; /* group n is groups[n - 1]; under jmu */
    int jstop;              /* set after the loops exit: a worker exits when it finds nothing
                               it may take (a group's calls waiting for a busy slot are taken
                               by that slot's worker when it finishes) */
    pthread_mutex_t mu;     /* guards loops_running */
    pthread_cond_t changed; /* a loop exited */
    int loops_running;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct rpc_server *rpc_server_create(const struct rpc_server_options *opt)
{
    struct rpc_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL) return NULL;
    srv->opt = *opt;
    if (srv->opt.io_threads <= 0) srv->opt.io_threads = 1;
    if (srv->opt.workers <= 0) srv->opt.workers = RPC_SERVER_WORKERS;
    if (srv->opt.max_connections <= 0) srv->opt.max_connections = 1;
    if (srv->opt.idle_timeout_ms <= 0) srv->opt.idle_timeout_ms = 60000;
    if (srv->opt.group_concurrency <= 0) srv->opt.group_concurrency = RPC_SERVER_GROUP_CONCURRENCY;
    if (srv->opt.group_max <= 0) srv->opt.group_max = RPC_SERVER_GROUP_MAX;
    if (srv->opt.group_max > RPC_SERVER_GROUP_MAX_CAP)
        srv->opt.group_max = RPC_SERVER_GROUP_MAX_CAP;
    srv->listen_fd = -1;
    if (opt->inherited_fd > 0) {
        int type = 0;
        socklen_t tl = sizeof(type);
        if (getsockopt(opt->inherited_fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0) goto fail;
        if (type != SOCK_STREAM) {
            errno = ENOTSOCK;
            goto fail;
        }
        srv->listen_fd = opt->inherited_fd;
        goto listening;
    }
    char port[16];
    snprintf(port, sizeof(port), "%d", opt->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(opt->host, port, &hints, &res);
    if (gai != 0 || res == NULL) {
        errno = EADDRNOTAVAIL;
        goto fail;
    }
    int fd = net_listen(res, 4096);
    if (fd < 0) goto fail_res;
    freeaddrinfo(res);
    srv->listen_fd = fd;
listening:;
    int bound = net_local_port(srv->listen_fd);
    if (bound > 0) srv->port = bound;
    pthread_mutex_init(&srv->mu, NULL);
    pthread_cond_init(&srv->changed, NULL);
    pthread_mutex_init(&srv->jmu, NULL);
    pthread_cond_init(&srv->jcond, NULL);
    return srv;
fail_res:
    freeaddrinfo(res);
fail:
    free(srv);
    return NULL;
}

int rpc_server_port(const struct rpc_server *srv)
{
    return srv->port;
}

/* ------------------------------------------------------------ connections */

/* Drops one reference; the last closes the socket and frees the connection. */
static void conn_unref(struct rpc_conn *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1) return;
    struct rpc_server *srv = c->loop->srv;
    close(c->fd);
    log_debug(0, "event=rpc_disconnect peer=%s", c->peer);
    rpc_buf_free(&c->in);
    rpc_buf_free(&c->out);
    free(c);
    atomic_fetch_sub(&srv->open_conns, 1);
}

/* Queues a reference to drop once this pass no longer looks at its events. */
static void loop_defer_unref(struct rpc_loop *loop, struct rpc_conn *c)
{
    if (loop->graveyard_len == loop->graveyard_cap) {
        size_t cap = loop->graveyard_cap ? loop->graveyard_cap * 2 : 64;
        struct rpc_conn **g = realloc(loop->graveyard, cap * sizeof(*g));
        if (g == NULL) {
            /* Cannot defer: keep the reference (a leak of one connection
             * beats a use after free); logged so it is seen. */
            log_error(0, "event=rpc_conn_leak peer=%s reason=\"out of memory\"", c->peer);
            return;
        }
        loop->graveyard = g;
        loop->graveyard_cap = cap;
    }
    loop->graveyard[loop->graveyard_len++] = c;
}

/* Unregisters c and ends the TCP connection; a worker still answering it
 * gets a write error and drops the last reference. */
static void conn_close(struct rpc_conn *c)
{
    struct rpc_loop *loop = c->loop;
    if (c->closed) return;
    c->closed = 1;
    (void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    (void)shutdown(c->fd, SHUT_RDWR);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        loop->conns = c->next;
    if (c->next != NULL) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    loop->nconns--;
    loop_defer_unref(loop, c);
}

/* Sets the epoll interest: input always, output while an answer waits. */
static int conn_watch(struct rpc_conn *c, int op, int want_out)
{
    /* After the peer's end of stream, input would report itself forever. */
    uint32_t in = c->peer_eof ? 0 : EPOLLIN | EPOLLRDHUP;
    struct epoll_event ev = {.events = in | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    return epoll_ctl(c->loop->epfd, op, c->fd, &ev);
}

/*
 * Reads what the socket holds into c->in, never past the first frame by more
 * than a chunk. Returns 0, or -1 when the connection must close: end of
 * stream, socket error, a bad header, or bytes beyond a frame (a second
 * request before the first was answered, which the protocol forbids).
 */
static int conn_read(struct rpc_conn *c)
{
    uint32_t max = c->loop->srv->opt.max_frame_bytes;
    int drained = 0; /* the last recv was short: it took all the socket held */
    for (;;) {
        size_t want = RPC_SERVER_READ_CHUNK;
        uint32_t n = 0;
        if (c->in.len >= RPC_FRAME_HEADER_BYTES) {
            int rc = rpc_frame_parse(c->in.data, c->in.len, max, &n);
            size_t total = RPC_FRAME_HEADER_BYTES + (size_t)n;
            if (rc == RPC_ERR_FRAME || c->in.len > total) {
                log_warn(0, "event=rpc_read_failed peer=%s reason=\"%s\"", c->peer,
                         rpc_status_str(RPC_ERR_FRAME));
                return -1;
            }
            /* The rest of the frame; once whole, a chunk to find out whether
             * the peer sent more than it may. */
            if (total > c->in.len) {
                want = total - c->in.len;
            } else if (drained) {
                /* Exactly one whole frame and nothing more in the socket: the
                 * next recv could only say EAGAIN (one system call per
                 * request). Later bytes are reported by the level-triggered
                 * epoll as they would have been after that EAGAIN. */
                return 0;
            }
        }
        if (rpc_buf_reserve(&c->in, c->in.len + want) != RPC_OK) {
            log_error(0, "event=rpc_read_failed peer=%s reason=\"%s\"", c->peer,
                      rpc_status_str(RPC_ERR_NOMEM));
            return -1;
        }
        ssize_t r = recv(c->fd, c->in.data + c->in.len, want, MSG_DONTWAIT);
        if (r > 0) {
            if (c->in.len == 0) c->in_since = now_ms();
            c->in.len += (size_t)r;
            drained = (size_t)r < want;
            continue;
        }
        if (r == 0) {
            if (c->peer_eof) return 0; /* known already */
            uint32_t n = 0;
            int whole = c->in.len >= RPC_FRAME_HEADER_BYTES &&
                        rpc_frame_parse(c->in.data, c->in.len, max, &n) == RPC_OK &&
                        c->in.len == RPC_FRAME_HEADER_BYTES + (size_t)n;
            int answering =
                c->in.len == 0 && (atomic_load(&c->state) != CONN_IDLE || c->out.len > 0);
            if (whole || answering) {
                /* The peer shut its side after a whole request (read with it,
                 * or being answered): answer it all the same (a write the user
                 * sent is not lost), then close. Input leaves the epoll
                 * interest, or the end of stream would report itself forever;
                 * a worker holding a request hands c back. */
                c->peer_eof = 1;
                if (conn_watch(c, EPOLL_CTL_MOD, c->out.len > 0) != 0) return -1;
                int busy = CONN_BUSY;
                (void)atomic_compare_exchange_strong(&c->state, &busy, CONN_BUSY_INPUT);
                return 0;
            }
            if (c->in.len > 0)
                log_warn(0, "event=rpc_read_failed peer=%s reason=\"%s\"", c->peer,
                         rpc_status_str(RPC_ERR_FRAME));
            return -1;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        log_debug(0, "event=rpc_read_failed peer=%s reason=\"%s\"", c->peer, strerror(errno));
        return -1;
    }
}

/*
 * Takes the request in c->in when c may start one (idle, nothing unwritten,
 * a whole frame): decodes it into a new job and marks c BUSY. Returns 1 with
 * *out set, 0 when there is nothing to take, -1 when c must close.
 */
static int conn_take(struct rpc_conn *c, struct rpc_job **out)
{
    uint32_t n = 0;
    if (c->closed || atomic_load(&c->state) != CONN_IDLE || c->out.len > 0) return 0;
    int rc = rpc_frame_parse(c->in.data, c->in.len, c->loop->srv->opt.max_frame_bytes, &n);
    if (rc == RPC_NEED_MORE) return 0;
    if (rc != RPC_OK || c->in.len > RPC_FRAME_HEADER_BYTES + (size_t)n) {
        log_warn(0, "event=rpc_read_failed peer=%s reason=\"%s\"", c->peer,
                 rpc_status_str(RPC_ERR_FRAME));
        return -1;
    }
    struct rpc_job *job = calloc(1, sizeof(*job));
    if (job == NULL) {
        log_error(0, "event=rpc_read_failed peer=%s reason=\"%s\"", c->peer,
                  rpc_status_str(RPC_ERR_NOMEM));
        return -1;
    }
    job->req = rpc__request__unpack(NULL, n, c->in.data + RPC_FRAME_HEADER_BYTES);
    if (job->req == NULL) {
        log_warn(0, "event=rpc_decode_failed peer=%s bytes=%u", c->peer, n);
        free(job);
        return -1;
    }
    c->in.len = 0;
    c->in_since = 0;
    c->last_request = now_ms();
    c->served = 1;
    /* A picture upload grows the buffer to megabytes; do not keep that per idle connection. */
    if (c->in.cap > RPC_SERVER_BUF_KEEP) rpc_buf_free(&c->in);
    rpc__response__init(&job->resp);
    job->resp.id = job->req->id;
    job->call.req = job->req;
    job->call.resp = &job->resp;
    job->conn = c;
    /* After the peer's end of stream nothing will wake the loop for c:
     * BUSY_INPUT makes the worker hand it back, and the loop closes it. */
    atomic_store(&c->state, c->peer_eof ? CONN_BUSY_INPUT : CONN_BUSY);
    *out = job;
    return 1;
}

static void job_free(struct rpc_job *job)
{
    rpc__request__free_unpacked(job->req, NULL);
    rpc_response_reset(&job->resp);
    free(job);
}

/* Writes what is left of c->out. Returns 0 (written, or waiting for
 * EPOLLOUT), -1 when the connection must close. */
static int conn_flush(struct rpc_conn *c)
{
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            log_warn(0, "event=rpc_write_failed peer=%s reason=\"%s\"", c->peer, strerror(errno));
            return -1;
        }
        if (c->out_since == 0) {
            c->out_since = now_ms();
            if (conn_watch(c, EPOLL_CTL_MOD, 1) != 0) return -1;
        }
        return 0;
    }
    if (c->out_since != 0) {
        c->out_since = 0;
        if (conn_watch(c, EPOLL_CTL_MOD, 0) != 0) return -1;
    }
    c->out.len = c->out_off = 0;
    if (c->out.cap > RPC_SERVER_BUF_KEEP) rpc_buf_free(&c->out);
    return 0;
}

/* Frames resp into c->out and starts writing it. Returns 0 or -1 (close c). */
static int conn_answer(struct rpc_conn *c, const Rpc__Response *resp)
{
    size_t len = rpc__response__get_packed_size(resp);
    if (len > UINT32_MAX - RPC_FRAME_HEADER_BYTES ||
        rpc_buf_reserve(&c->out, RPC_FRAME_HEADER_BYTES + (len > 0 ? len : 1)) != RPC_OK) {
        log_error(0, "event=rpc_write_failed peer=%s reason=\"%s\"", c->peer,
                  rpc_status_str(RPC_ERR_NOMEM));
        return -1;
    }
    rpc_frame_put_header(c->out.data, (uint32_t)len);
    rpc__response__pack(resp, c->out.data + RPC_FRAME_HEADER_BYTES);
    c->out.len = RPC_FRAME_HEADER_BYTES + len;
    c->out_off = 0;
    return conn_flush(c);
}

/* ------------------------------------------------------------------ workers */

static void jobs_push(struct rpc_server *srv, struct rpc_job *job)
{
    job->next = NULL;
    pthread_mutex_lock(&srv->jmu);
    if (srv->jtail != NULL)
        srv->jtail->next = job;
    else
        srv->jhead = job;
    srv->jtail = job;
    pthread_cond_signal(&srv->jcond);
    pthread_mutex_unlock(&srv->jmu);
}

/* Queues job (undone, its call in group 1..RPC_SERVER_GROUPS) for that group's handler. */
static void jobs_push_group(struct rpc_server *srv, struct rpc_job *job)
{
    struct rpc_group *g = &srv->groups[job->call.group - 1];
    job->next = NULL;
    pthread_mutex_lock(&srv->jmu);
    int was_empty = g->head == NULL;
    if (g->tail != NULL)
        g->tail->next = job;
    else
        g->head = job;
    g->tail = job;
    g->waiting++;
    /* With every slot of the group taken, the calls wait and the group grows.
     * Only the call that starts a queue wakes a worker: the one woken takes
     * every call queued by then (worker_take), and a loop pushes a whole
     * pass's calls one by one - a wake-up per call woke ~15 workers per
     * group for nothing (futex calls were 1.7 per edit). */
    if (was_empty && g->running < srv->opt.group_concurrency) pthread_cond_signal(&srv->jcond);
    pthread_mutex_unlock(&srv->jmu);
}

/* Wakes c's loop after queuing c on its ready list (the caller's reference goes with it). */
static void loop_post_ready(struct rpc_loop *loop, struct rpc_conn *c)
{
    uint64_t one = 1;
    pthread_mutex_lock(&loop->mu);
    c->qnext = loop->ready;
    loop->ready = c;
    pthread_mutex_unlock(&loop->mu);
    if (write(loop->evfd, &one, sizeof(one)) != sizeof(one))
        log_error(0, "event=rpc_wakeup_failed error=\"%s\"", strerror(errno));
}

/* Writes job's answer on its connection (the loop writes nothing on a BUSY
 * one); on failure shuts the socket down so that the loop closes it. */
static void worker_reply(struct rpc_server *srv, struct rpc_job *job, struct rpc_buf *buf)
{
    struct rpc_conn *c = job->conn;
    size_t len = rpc__response__get_packed_size(&job->resp);
    int rc = len > UINT32_MAX ? RPC_ERR_NOMEM : rpc_buf_reserve(buf, len > 0 ? len : 1);
    if (rc == RPC_OK) {
        rpc__response__pack(&job->resp, buf->data);
        rc = rpc_frame_write(c->fd, buf->data, (uint32_t)len, srv->opt.io_timeout_ms);
    }
    if (rc != RPC_OK) {
        log_warn(0, "event=rpc_write_failed peer=%s reason=\"%s\"", c->peer, rpc_status_str(rc));
        (void)shutdown(c->fd, SHUT_RDWR); /* the loop sees the hang-up and closes */
    }
    if (buf->cap > RPC_SERVER_BUF_KEEP) rpc_buf_free(buf);
}

/* Frees job and hands its connection back. */
static void worker_release(struct rpc_job *job)
{
    struct rpc_conn *c = job->conn;
    job_free(job);
    /* Input arrived meanwhile (BUSY_INPUT): hand c back still busy, so
     * the loop cannot take its next request before it has taken the
     * hand-back; the loop makes it IDLE. Otherwise c is idle now. */
    int busy = CONN_BUSY;
    if (atomic_compare_exchange_strong(&c->state, &busy, CONN_IDLE))
        conn_unref(c);
    else
        loop_post_ready(c->loop, c);
}

/*
 * Takes work under jmu: up to group_max waiting calls of a group with a
 * free slot (*group set to its index, the chain returned), else the oldest
 * queued job (*group = -1). NULL when there is none.
 */
static struct rpc_job *worker_take(struct rpc_server *srv, int *group)
{
    for (int k = 0; k < RPC_SERVER_GROUPS; k++) {
        struct rpc_group *g = &srv->groups[k];
        if (g->head == NULL || g->running >= srv->opt.group_concurrency) continue;
        struct rpc_job *first = g->head, *last = first;
        size_t n = 1;
        while (n < (size_t)srv->opt.group_max && last->next != NULL)
            last = last->next, n++;
        g->head = last->next;
        if (g->head == NULL) g->tail = NULL;
        last->next = NULL;
        g->waiting -= n;
        g->running++;
        /* More than group_max waited: a free slot takes the rest at once. */
        if (g->head != NULL && g->running < srv->opt.group_concurrency)
            pthread_cond_signal(&srv->jcond);
        *group = k;
        return first;
    }
    struct rpc_job *job = srv->jhead;
    if (job != NULL) {
        srv->jhead = job->next;
        if (srv->jhead == NULL) srv->jtail = NULL;
    }
    *group = -1;
    return job;
}

/* Runs the group handler on the chain of jobs (group index k), answers, releases. */
static void worker_run_group(struct rpc_server *srv, int k, struct rpc_job *chain,
                             struct rpc_buf *buf)
{
    struct rpc_call *calls[RPC_SERVER_GROUP_MAX_CAP];
    size_t n = 0;

    for (struct rpc_job *j = chain; j != NULL; j = j->next)
        calls[n++] = &j->call;
    if (!atomic_load(&srv->force)) {
        if (srv->opt.group != NULL) {
            srv->opt.group(srv->opt.handler_ctx, calls, n);
        } else {
            for (struct rpc_job *j = chain; j != NULL; j = j->next)
                srv->opt.handler(srv->opt.handler_ctx, j->req, &j->resp);
        }
        for (struct rpc_job *j = chain; j != NULL; j = j->next)
            worker_reply(srv, j, buf);
    }
    while (chain != NULL) {
        struct rpc_job *next = chain->next;
        worker_release(chain);
        chain = next;
    }
    pthread_mutex_lock(&srv->jmu);
    struct rpc_group *g = &srv->groups[k];
    g->running--;
    if (g->head != NULL) pthread_cond_signal(&srv->jcond); /* the calls that waited meanwhile */
    pthread_mutex_unlock(&srv->jmu);
}

/*
 * A worker: runs the blocking handler (or a group's) and writes the
 * answers itself, then hands the connections back.
 */
static void *worker_main(void *arg)
{
    struct rpc_server *srv = arg;
    struct rpc_buf buf = {0};

    for (;;) {
        int group;
        pthread_mutex_lock(&srv->jmu);
        struct rpc_job *job = worker_take(srv, &group);
        while (job == NULL && !srv->jstop) {
            pthread_cond_wait(&srv->jcond, &srv->jmu);
            job = worker_take(srv, &group);
        }
        pthread_mutex_unlock(&srv->jmu);
        if (job == NULL) break; /* jstop and nothing left */

        if (group >= 0) {
            worker_run_group(srv, group, job, &buf);
            continue;
        }
        if (!atomic_load(&srv->force)) {
            srv->opt.handler(srv->opt.handler_ctx, job->req, &job->resp);
            worker_reply(srv, job, &buf);
        }
        worker_release(job);
    }
    rpc_buf_free(&buf);
    return NULL;
}

/* -------------------------------------------------------------------- loops */

/* Adds job to this pass's batch (room for one per connection). */
static void loop_batch_add(struct rpc_loop *loop, struct rpc_job *job)
{
    if (loop->batch_len == loop->batch_cap) { /* cannot happen: one per connection */
        atomic_fetch_add(&job->conn->refs, 1);
        jobs_push(loop->srv, job);
        return;
    }
    loop->calls[loop->batch_len] = &job->call;
    loop->batch[loop->batch_len++] = job;
}

/*
 * Takes c's request into the batch if it has one; closes c on a bad frame.
 * Once the server is stopping no new request is started: the sweep closes c
 * as soon as its last answer is out, and the client, which never got a byte
 * of an answer, may retry elsewhere (the web's clients do, once). Without
 * this, clients that keep their connections busy kept the drain going until
 * its deadline, and connections then closed under requests already done.
 */
static void loop_take(struct rpc_loop *loop, struct rpc_conn *c)
{
    if (atomic_load(&loop->srv->stopping)) return;
    struct rpc_job *job = NULL;
    int rc = conn_take(c, &job);
    if (rc > 0) loop_batch_add(loop, job);
    if (rc < 0) conn_close(c);
}

/*
 * Runs the batch: the batch handler answers what it can, answered requests
 * are written here, the rest go to the workers.
 */
static void loop_run_batch(struct rpc_loop *loop)
{
    struct rpc_server *srv = loop->srv;
    if (loop->batch_len == 0) return;
    if (srv->opt.batch != NULL && !atomic_load(&srv->force))
        srv->opt.batch(srv->opt.handler_ctx, loop->calls, loop->batch_len);
    for (size_t i = 0; i < loop->batch_len; i++) {
        struct rpc_job *job = loop->batch[i];
        struct rpc_conn *c = job->conn;
        if (!job->call.done) {
            atomic_fetch_add(&c->refs, 1);
            if (job->call.group >= 1 && job->call.group <= RPC_SERVER_GROUPS)
                jobs_push_group(srv, job);
            else
                jobs_push(srv, job);
            continue;
        }
        int rc = c->closed ? 0 : conn_answer(c, &job->resp);
        job_free(job);
        int prev = atomic_exchange(&c->state, CONN_IDLE);
        if (rc != 0 || (c->peer_eof && c->out.len == 0 && c->in.len == 0))
            conn_close(c); /* failed, or answered the last request of a peer that left */
        else if (prev == CONN_BUSY_INPUT)
            loop_take(loop, c); /* bytes read after the take: a frame error, or a peer_eof one */
    }
    loop->batch_len = 0;
}

/* Registers the connections the acceptor queued; takes back those a worker returned. */
static void loop_take_queues(struct rpc_loop *loop)
{
    uint64_t count;
    if (read(loop->evfd, &count, sizeof(count)) < 0 && errno != EAGAIN)
        log_error(0, "event=rpc_wakeup_failed error=\"%s\"", strerror(errno));
    pthread_mutex_lock(&loop->mu);
    struct rpc_conn *incoming = loop->incoming, *ready = loop->ready;
    loop->incoming = loop->ready = NULL;
    pthread_mutex_unlock(&loop->mu);

    while (incoming != NULL) {
        struct rpc_conn *c = incoming;
        incoming = c->qnext;
        c->qnext = NULL;
        c->next = loop->conns;
        if (loop->conns != NULL) loop->conns->prev = c;
        loop->conns = c;
        loop->nconns++;
        if (conn_watch(c, EPOLL_CTL_ADD, 0) != 0) {
            log_error(0, "event=rpc_accept_failed peer=%s reason=\"%s\"", c->peer, strerror(errno));
            conn_close(c);
        }
    }
    while (ready != NULL) {
        struct rpc_conn *c = ready;
        ready = c->qnext;
        c->qnext = NULL;
        if (c->closed) {
            /* nothing: only the reference to drop */
        } else {
            atomic_store(&c->state, CONN_IDLE); /* the worker left it BUSY_INPUT */
            if (c->peer_eof) {
                /* Answered: take the request that came with the end of stream, or close. */
                if (c->in.len > 0)
                    loop_take(loop, c);
                else
                    conn_close(c);
            } else if (conn_read(c) != 0) {
                conn_close(c);
            } else {
                loop_take(loop, c); /* input arrived while a worker held it */
            }
        }
        loop_defer_unref(loop, c); /* the reference the worker handed over */
    }
}

/* Handles one connection's epoll events. */
static void loop_conn_event(struct rpc_loop *loop, struct rpc_conn *c, uint32_t events)
{
    if (c->closed) return;
    if (events & EPOLLERR) {
        conn_close(c);
        return;
    }
    if ((events & EPOLLHUP) && c->peer_eof) {
        conn_close(c); /* both directions gone: nothing can be delivered */
        return;
    }
    if ((events & EPOLLOUT) && c->out.len > 0) {
        if (conn_flush(c) != 0 || (c->peer_eof && c->out.len == 0 && c->in.len == 0 &&
                                   atomic_load(&c->state) == CONN_IDLE)) {
            conn_close(c);
            return;
        }
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) {
        if (conn_read(c) != 0) {
            conn_close(c);
            return;
        }
        /* Input while a worker holds c: the next request raced the worker's
         * hand-back. Flag it, and the worker returns c to this loop (when
         * the worker is already done, the CAS fails on IDLE: take it now). */
        int busy = CONN_BUSY;
        if (c->in.len > 0 && atomic_compare_exchange_strong(&c->state, &busy, CONN_BUSY_INPUT))
            return;
    }
    loop_take(loop, c);
}

/* Closes connections whose frame or answer is overdue, and idle ones when stopping. */
static void loop_sweep(struct rpc_loop *loop)
{
    struct rpc_server *srv = loop->srv;
    int64_t now = now_ms();
    int stopping = atomic_load(&srv->stopping), force = atomic_load(&srv->force);
    struct rpc_conn *c = loop->conns, *next;

    for (; c != NULL; c = next) {
        next = c->next;
        int idle = atomic_load(&c->state) == CONN_IDLE;
        uint32_t n = 0;
        int partial =
            c->in.len > 0 &&
            rpc_frame_parse(c->in.data, c->in.len, srv->opt.max_frame_bytes, &n) == RPC_NEED_MORE;
        if (partial && idle && now - c->in_since > srv->opt.io_timeout_ms) {
            log_warn(0, "event=rpc_read_failed peer=%s reason=\"%s\"", c->peer,
                     rpc_status_str(RPC_ERR_TIMEOUT));
            conn_close(c);
        } else if (c->out_since != 0 && now - c->out_since > srv->opt.io_timeout_ms) {
            log_warn(0, "event=rpc_write_failed peer=%s reason=\"%s\"", c->peer,
                     rpc_status_str(RPC_ERR_TIMEOUT));
            conn_close(c);
        } else if (force || (stopping && idle && c->out.len == 0)) {
            conn_close(c);
        } else if (idle && c->in.len == 0 && c->out.len == 0 &&
                   now - c->last_request >
                       (c->served ? srv->opt.idle_timeout_ms : srv->opt.io_timeout_ms)) {
            /* Idle too long, or connected and never asked anything: each holds
             * one of max_connections (a local program could take them all). */
            log_info(0, "event=rpc_idle_close peer=%s served=%d", c->peer, c->served);
            conn_close(c);
        }
    }
}

static void *loop_main(void *arg)
{
    struct rpc_loop *loop = arg;
    struct rpc_server *srv = loop->srv;
    struct epoll_event events[RPC_SERVER_EVENTS];
    int64_t last_sweep = now_ms();

    for (;;) {
        int stopping = atomic_load(&srv->stopping);
        int n = epoll_wait(loop->epfd, events, RPC_SERVER_EVENTS,
                           stopping ? RPC_SERVER_DRAIN_POLL_MS : RPC_SERVER_POLL_MS);
        if (n < 0 && errno != EINTR) {
            /* EBADF/EINVAL: a bug, not load; log it and do not spin. */
            log_error(0, "event=rpc_loop_failed error=\"%s\"", strerror(errno));
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (n < 0) n = 0;
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == NULL)
                loop_take_queues(loop);
            else
                loop_conn_event(loop, events[i].data.ptr, events[i].events);
        }
        loop_run_batch(loop);
        int64_t now = now_ms();
        if (stopping || now - last_sweep >= RPC_SERVER_POLL_MS) {
            last_sweep = now;
            loop_sweep(loop);
        }
        for (size_t i = 0; i < loop->graveyard_len; i++)
            conn_unref(loop->graveyard[i]);
        loop->graveyard_len = 0;
        if (stopping && loop->nconns == 0) {
            pthread_mutex_lock(&loop->mu);
            int queued = loop->incoming != NULL || loop->ready != NULL;
            pthread_mutex_unlock(&loop->mu);
            if (!queued) break;
            loop_take_queues(loop); /* close what arrived late, drop handed-back refs */
        }
    }
    pthread_mutex_lock(&srv->mu);
    srv->loops_running--;
    pthread_cond_broadcast(&srv->changed);
    pthread_mutex_unlock(&srv->mu);
    return NULL;
}

static int loop_init(struct rpc_loop *loop, struct rpc_server *srv)
{
    loop->srv = srv;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    loop->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    loop->batch_cap = (size_t)srv->opt.max_connections;
    loop->batch = calloc(loop->batch_cap, sizeof(*loop->batch));
    loop->calls = calloc(loop->batch_cap, sizeof(*loop->calls));
    pthread_mutex_init(&loop->mu, NULL);
    if (loop->epfd < 0 || loop->evfd < 0 || loop->batch == NULL || loop->calls == NULL) return -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    return epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->evfd, &ev);
}

static void loop_fini(struct rpc_loop *loop)
{
    if (loop->epfd >= 0) close(loop->epfd);
    if (loop->evfd >= 0) close(loop->evfd);
    free(loop->batch);
    free(loop->calls);
    free(loop->graveyard);
    pthread_mutex_destroy(&loop->mu);
}

/* ----------------------------------------------------------------- acceptor */

static void format_peer(const struct sockaddr_storage *ss, char *out, size_t size)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        port = ntohs(a->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        port = ntohs(a->sin6_port);
    }
    snprintf(out, size, "%s:%d", host, port);
}

/* Starts loops and workers. Returns 0, or -1 with errno (what started is stopped by stop_threads).
 */
static int start_threads(struct rpc_server *srv)
{
    pthread_attr_t attr;
    int err = 0;

    srv->loops = calloc((size_t)srv->opt.io_threads, sizeof(*srv->loops));
    srv->workers = calloc((size_t)srv->opt.workers, sizeof(*srv->workers));
    if (srv->loops == NULL || srv->workers == NULL) {
        errno = ENOMEM;
        return -1;
    }
    for (int i = 0; i < srv->opt.io_threads; i++)
        srv->loops[i].epfd = srv->loops[i].evfd = -1;
    if (pthread_attr_init(&attr) != 0) return -1;
    pthread_attr_setstacksize(&attr, RPC_SERVER_STACK_BYTES);
    for (; srv->nloops < srv->opt.io_threads; srv->nloops++) {
        struct rpc_loop *loop = &srv->loops[srv->nloops];
        if (loop_init(loop, srv) != 0) {
            err = errno ? errno : ENOMEM;
            srv->nloops++; /* initialised in part: loop_fini it */
            goto out;
        }
        pthread_mutex_lock(&srv->mu);
        srv->loops_running++;
        pthread_mutex_unlock(&srv->mu);
        err = pthread_create(&loop->thread, &attr, loop_main, loop);
        if (err != 0) {
            pthread_mutex_lock(&srv->mu);
            srv->loops_running--;
            pthread_mutex_unlock(&srv->mu);
            srv->nloops++;
            goto out;
        }
        loop->started = 1;
    }
    for (; srv->nworkers < srv->opt.workers; srv->nworkers++) {
        err = pthread_create(&srv->workers[srv->nworkers], &attr, worker_main, srv);
        if (err != 0) goto out;
    }
out:
    pthread_attr_destroy(&attr);
    if (err != 0) {
        errno = err;
        return -1;
    }
    return 0;
}

/* Waits until every loop exited or the deadline (CLOCK_REALTIME) passed. Returns loops left. */
static int wait_loops(struct rpc_server *srv, const struct timespec *deadline)
{
    pthread_mutex_lock(&srv->mu);
    while (srv->loops_running > 0) {
        if (deadline == NULL)
            pthread_cond_wait(&srv->changed, &srv->mu);
        else if (pthread_cond_timedwait(&srv->changed, &srv->mu, deadline) == ETIMEDOUT)
            break;
    }
    int left = srv->loops_running;
    pthread_mutex_unlock(&srv->mu);
    return left;
}

static void wake_loops(struct rpc_server *srv)
{
    uint64_t one = 1;
    for (int i = 0; i < srv->nloops; i++)
        if (srv->loops[i].evfd >= 0 && write(srv->loops[i].evfd, &one, sizeof(one)) < 0)
            log_error(0, "event=rpc_wakeup_failed error=\"%s\"", strerror(errno));
}

/* Drains (up to drain_ms), then stops and joins every thread started. */
static void stop_threads(struct rpc_server *srv, int drain_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += drain_ms / 1000;
    deadline.tv_nsec += (long)(drain_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) deadline.tv_sec++, deadline.tv_nsec -= 1000000000L;

    atomic_store(&srv->stopping, 1);
    wake_loops(srv);
    int left = wait_loops(srv, &deadline);
    if (left > 0) {
        log_warn(0, "event=rpc_drain_timeout connections=%d", atomic_load(&srv->open_conns));
        atomic_store(&srv->force, 1);
        wake_loops(srv);
        (void)wait_loops(srv, NULL);
    }
    for (int i = 0; i < srv->nloops; i++)
        if (srv->loops[i].started) pthread_join(srv->loops[i].thread, NULL);
    pthread_mutex_lock(&srv->jmu);
    srv->jstop = 1;
    pthread_cond_broadcast(&srv->jcond);
    pthread_mutex_unlock(&srv->jmu);
    for (int i = 0; i < srv->nworkers; i++)
        pthread_join(srv->workers[i], NULL);
    /* Connections a worker handed back after its loop exited. */
    for (int i = 0; i < srv->nloops; i++) {
        struct rpc_conn *c = srv->loops[i].ready;
        while (c != NULL) {
            struct rpc_conn *next = c->qnext;
            conn_unref(c);
            c = next;
        }
        srv->loops[i].ready = NULL;
        loop_fini(&srv->loops[i]);
    }
    free(srv->loops);
    free(srv->workers);
    srv->loops = NULL;
    srv->workers = NULL;
    srv->nloops = srv->nworkers = 0;
}

int rpc_server_run(struct rpc_server *srv, volatile sig_atomic_t *stop, int drain_ms)
{
    int result = 0, next_loop = 0;

    if (start_threads(srv) != 0) {
        int saved = errno;
        log_error(0, "event=rpc_start_failed error=\"%s\"", strerror(saved));
        stop_threads(srv, 0);
        errno = saved;
        return -1;
    }
    while (!*stop) {
        if (srv->opt.tick != NULL) srv->opt.tick(srv->opt.tick_ctx);
        /* At the connection cap, leave further connections in the backlog. */
        int full = atomic_load(&srv->open_conns) >= srv->opt.max_connections;
        struct pollfd p = {.fd = full ? -1 : srv->listen_fd, .events = POLLIN, .revents = 0};
        int rc = poll(&p, 1, RPC_SERVER_POLL_MS);
        if (rc <= 0 || full) {
            if (rc < 0 && errno != EINTR) {
                result = -1;
                break;
            }
            continue;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(srv->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                log_error(0, "event=rpc_accept_failed reason=\"%s\"", strerror(errno));
                struct timespec ts = {0, 100 * 1000000L};
                nanosleep(&ts, NULL); /* let connections close instead of spinning */
                continue;
            }
            result = -1;
            break;
        }
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct rpc_conn *c = calloc(1, sizeof(*c));
        if (c == NULL) {
            close(fd);
            continue;
        }
        struct rpc_loop *loop = &srv->loops[next_loop];
        next_loop = (next_loop + 1) % srv->nloops;
        c->loop = loop;
        c->fd = fd;
        c->last_request = now_ms();
        atomic_init(&c->refs, 1);
        atomic_init(&c->state, CONN_IDLE);
        format_peer(&ss, c->peer, sizeof(c->peer));
        atomic_fetch_add(&srv->open_conns, 1);
        log_debug(0, "event=rpc_connect peer=%s", c->peer);
        pthread_mutex_lock(&loop->mu);
        c->qnext = loop->incoming;
        loop->incoming = c;
        pthread_mutex_unlock(&loop->mu);
        uint64_t v = 1;
        if (write(loop->evfd, &v, sizeof(v)) != sizeof(v))
            log_error(0, "event=rpc_wakeup_failed error=\"%s\"", strerror(errno));
    }
    int saved = errno;

    /* Drain: stop accepting, let each connection finish the request it is on. */
    close(srv->listen_fd);
    srv->listen_fd = -1;
    stop_threads(srv, drain_ms);
    errno = saved;
    return result;
}

void rpc_server_destroy(struct rpc_server *srv)
{
    if (srv == NULL) return;
    if (srv->listen_fd >= 0) close(srv->listen_fd);
    pthread_cond_destroy(&srv->changed);
    pthread_mutex_destroy(&srv->mu);
    pthread_cond_destroy(&srv->jcond);
    pthread_mutex_destroy(&srv->jmu);
    free(srv);
}
