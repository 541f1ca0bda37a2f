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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "rpc/frame.h"
#include "rpc/message.h"

#define RPC_SERVER_POLL_MS 200            /* how often idle loops look at the stop flag */
#define RPC_SERVER_BUF_KEEP (256u << 10)  /* bytes; larger per-connection buffers are freed */
#define RPC_SERVER_STACK_BYTES (1u << 20) /* per-connection thread stack */

struct rpc_server {
    struct rpc_server_options opt;
    int listen_fd;
    int port;            /* bound port */
    atomic_int stopping; /* 1 once run() saw the stop flag: finish and close */
    pthread_mutex_t mu;
    pthread_cond_t changed; /* signalled when a connection thread exits */
    int active;             /* connection threads alive */
};

struct rpc_session {
    struct rpc_server *srv;
    int fd;
    char peer[64]; /* "ip:port" for logs */
};

struct rpc_server *rpc_server_create(const struct rpc_server_options *opt)
{
    struct rpc_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL) return NULL;
    srv->opt = *opt;
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
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) goto fail_res;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        goto fail_res;
    }
    freeaddrinfo(res);
    srv->listen_fd = fd;
listening:;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(srv->listen_fd, (struct sockaddr *)&ss, &sl) == 0)
        srv->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    pthread_mutex_init(&srv->mu, NULL);
    pthread_cond_init(&srv->changed, NULL);
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

/* Waits until fd is readable, returning 0, or -1 when the server is stopping or the peer left. */
static int session_wait_request(struct rpc_session *s)
{
    for (;;) {
        struct pollfd p = {.fd = s->fd, .events = POLLIN, .revents = 0};
        int rc = poll(&p, 1, RPC_SERVER_POLL_MS);
        if (rc > 0) return 0;
        if (rc < 0 && errno != EINTR) return -1;
        if (atomic_load(&s->srv->stopping)) return -1;
    }
}

/* Serves one connection: a loop with constant memory, one request at a time. */
static void *session_main(void *arg)
{
    struct rpc_session *s = arg;
    struct rpc_server *srv = s->srv;
    struct rpc_buf in = {0}, out = {0};
    Rpc__Response resp = RPC__RESPONSE__INIT;

    while (session_wait_request(s) == 0) {
        int rc = rpc_frame_read(s->fd, &in, srv->opt.max_frame_bytes, srv->opt.io_timeout_ms);
        if (rc == RPC_ERR_CLOSED) break;
        if (rc != RPC_OK) {
            log_warn(0, "event=rpc_read_failed peer=%s reason=\"%s\"", s->peer, rpc_status_str(rc));
            break;
        }
        Rpc__Request *req = rpc__request__unpack(NULL, in.len, in.data);
        if (req == NULL) {
            log_warn(0, "event=rpc_decode_failed peer=%s bytes=%zu", s->peer, in.len);
            break;
        }
        rpc__response__init(&resp);
        resp.id = req->id;
        srv->opt.handler(srv->opt.handler_ctx, req, &resp);
        rpc__request__free_unpacked(req, NULL);

        size_t len = rpc__response__get_packed_size(&resp);
        rc = rpc_buf_reserve(&out, len > 0 ? len : 1);
        if (rc == RPC_OK) {
            rpc__response__pack(&resp, out.data);
            rc = rpc_frame_write(s->fd, out.data, (uint32_t)len, srv->opt.io_timeout_ms);
        }
        rpc_response_reset(&resp);
        if (rc != RPC_OK) {
            log_warn(0, "event=rpc_write_failed peer=%s reason=\"%s\"", s->peer,
                     rpc_status_str(rc));
            break;
        }
        /* A picture upload grows the buffers to megabytes; do not keep that per idle connection. */
        if (in.cap > RPC_SERVER_BUF_KEEP) rpc_buf_free(&in);
        if (out.cap > RPC_SERVER_BUF_KEEP) rpc_buf_free(&out);
        if (atomic_load(&srv->stopping)) break;
    }
    rpc_buf_free(&in);
    rpc_buf_free(&out);
    close(s->fd);
    log_debug(0, "event=rpc_disconnect peer=%s", s->peer);
    free(s);

    pthread_mutex_lock(&srv->mu);
    srv->active--;
    pthread_cond_broadcast(&srv->changed);
    pthread_mutex_unlock(&srv->mu);
    return NULL;
}

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

/* Waits up to one poll interval for fewer than max_connections threads to be
 * alive (so the run loop still ticks while saturated). Returns 1 when a
 * slot is free. */
static int wait_for_slot(struct rpc_server *srv)
{
    pthread_mutex_lock(&srv->mu);
    if (srv->active >= srv->opt.max_connections) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += RPC_SERVER_POLL_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        (void)pthread_cond_timedwait(&srv->changed, &srv->mu, &ts);
    }
    int free_slot = srv->active < srv->opt.max_connections;
    pthread_mutex_unlock(&srv->mu);
    return free_slot;
}

int rpc_server_run(struct rpc_server *srv, volatile sig_atomic_t *stop, int drain_ms)
{
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0) return -1;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, RPC_SERVER_STACK_BYTES);
    int result = 0;

    while (!*stop) {
        if (srv->opt.tick != NULL) srv->opt.tick(srv->opt.tick_ctx);
        if (!wait_for_slot(srv)) continue;
        struct pollfd p = {.fd = srv->listen_fd, .events = POLLIN, .revents = 0};
        int rc = poll(&p, 1, RPC_SERVER_POLL_MS);
        if (rc <= 0) {
            if (rc < 0 && errno != EINTR) {
                result = -1;
                break;
            }
            continue;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(srv->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
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
        struct rpc_session *s = calloc(1, sizeof(*s));
        if (s == NULL) {
            close(fd);
            continue;
        }
        s->srv = srv;
        s->fd = fd;
        format_peer(&ss, s->peer, sizeof(s->peer));
        pthread_mutex_lock(&srv->mu);
        srv->active++;
        pthread_mutex_unlock(&srv->mu);
        pthread_t tid;
        if (pthread_create(&tid, &attr, session_main, s) != 0) {
            log_error(0, "event=rpc_thread_failed peer=%s", s->peer);
            close(fd);
            free(s);
            pthread_mutex_lock(&srv->mu);
            srv->active--;
            pthread_mutex_unlock(&srv->mu);
            continue;
        }
        log_debug(0, "event=rpc_connect peer=%s", s->peer);
    }
    pthread_attr_destroy(&attr);

    /* Drain: stop accepting, let each connection finish the request it is on. */
    atomic_store(&srv->stopping, 1);
    close(srv->listen_fd);
    srv->listen_fd = -1;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += drain_ms / 1000;
    deadline.tv_nsec += (long)(drain_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) deadline.tv_sec++, deadline.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&srv->mu);
    while (srv->active > 0)
        if (pthread_cond_timedwait(&srv->changed, &srv->mu, &deadline) == ETIMEDOUT) break;
    int left = srv->active;
    pthread_mutex_unlock(&srv->mu);
    if (left > 0) log_warn(0, "event=rpc_drain_timeout connections=%d", left);
    return result;
}

void rpc_server_destroy(struct rpc_server *srv)
{
    if (srv == NULL) return;
    if (srv->listen_fd >= 0) close(srv->listen_fd);
    pthread_mutex_lock(&srv->mu);
    int left = srv->active;
    pthread_mutex_unlock(&srv->mu);
    /* Threads still running reference srv: leave it to process exit rather than free it under them.
     */
    if (left > 0) return;
    pthread_cond_destroy(&srv->changed);
    pthread_mutex_destroy(&srv->mu);
    free(srv);
}
