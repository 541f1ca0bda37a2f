/*
 * The event-loop RPC server (rpc/server.h) with raw sockets and the client
 * pool: the batch handler answers what it claims and the workers the rest;
 * a slow request holds neither the loop nor other connections; a second
 * request before the answer, a bad header and a stalled frame close the
 * connection; a peer that leaves while a worker holds its request harms
 * nobody; stopping lets the request in flight finish; calls of a group
 * that arrive while its handler runs wait and go to the next call together.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "rpc/client.h"
#include "rpc/frame.h"
#include "rpc/message.h"
#include "rpc/server.h"

static _Atomic int handler_calls; /* requests the blocking handler served */
static _Atomic int batch_calls;   /* requests the batch handler answered */

/* Blocking handler: message = "worker:" + username, after sleeping password ms. */
static void slow_handler(void *ctx, const Rpc__Request *req, Rpc__Response *resp)
{
    (void)ctx;
    int ms = req->password != NULL ? atoi(req->password) : 0;
    if (ms > 0) {
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    char msg[128];
    snprintf(msg, sizeof(msg), "worker:%s", req->username);
    resp->status = RPC__STATUS__STATUS_OK;
    rpc_str_set(&resp->message, msg);
    handler_calls++;
}

/* Batch handler: answers the requests whose username starts with "fast";
 * puts those starting with "group" in group 1 and "grp9" in group 9 (none). */
static void fast_batch(void *ctx, struct rpc_call *const *calls, size_t n)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++) {
        const char *name = calls[i]->req->username;
        if (name != NULL && strncmp(name, "group", 5) == 0) calls[i]->group = 1;
        if (name != NULL && strncmp(name, "grp9", 4) == 0) calls[i]->group = 9;
        if (name == NULL || strncmp(name, "fast", 4) != 0) continue;
        char msg[128];
        snprintf(msg, sizeof(msg), "batch:%s", name);
        calls[i]->resp->status = RPC__STATUS__STATUS_OK;
        rpc_str_set(&calls[i]->resp->message, msg);
        calls[i]->done = 1;
        batch_calls++;
    }
}

/* Group handler: message = "group<n>:" + username for each of the n calls,
 * after sleeping the first call's password ms. */
static void test_group(void *ctx, struct rpc_call *const *calls, size_t n)
{
    (void)ctx;
    int ms = calls[0]->req->password != NULL ? atoi(calls[0]->req->password) : 0;
    if (ms > 0) {
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    for (size_t i = 0; i < n; i++) {
        char msg[128];
        snprintf(msg, sizeof(msg), "group%zu:%s", n, calls[i]->req->username);
        calls[i]->resp->status = RPC__STATUS__STATUS_OK;
        rpc_str_set(&calls[i]->resp->message, msg);
    }
}

struct running_server {
    struct rpc_server *srv;
    pthread_t thread;
    volatile sig_atomic_t stop;
    int run_rc;
};

static void *server_thread(void *arg)
{
    struct running_server *rs = arg;
    rs->run_rc = rpc_server_run(rs->srv, &rs->stop, 3000);
    return NULL;
}

static struct running_server *server_start(int io_timeout_ms)
{
    struct running_server *rs = calloc(1, sizeof(*rs));
    struct rpc_server_options opt = {.host = "127.0.0.1",
                                     .max_connections = 64,
                                     .io_threads = 1, /* one loop: nothing hides a blocked loop */
                                     .workers = 4,
                                     .max_frame_bytes = 1 << 16,
                                     .io_timeout_ms = io_timeout_ms,
                                     .idle_timeout_ms = 1500,
                                     .handler = slow_handler,
                                     .batch = fast_batch,
                                     .group = test_group,
                                     .group_concurrency = 1};
    rs->srv = rpc_server_create(&opt);
    assert_non_null(rs->srv);
    assert_int_equal(pthread_create(&rs->thread, NULL, server_thread, rs), 0);
    return rs;
}

static void server_stop(struct running_server *rs)
{
    rs->stop = 1;
    pthread_join(rs->thread, NULL);
    assert_int_equal(rs->run_rc, 0);
    rpc_server_destroy(rs->srv);
    free(rs);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

/* Packs a HEALTH request (username name, sleep ms) as a whole frame into out; returns its size. */
static size_t request_frame(uint8_t *out, size_t size, uint64_t id, const char *name, int ms)
{
    Rpc__Request req = RPC__REQUEST__INIT;
    char msbuf[16];
    snprintf(msbuf, sizeof(msbuf), "%d", ms);
    req.id = id;
    req.method = RPC__METHOD__METHOD_HEALTH;
    req.username = (char *)name;
    req.password = msbuf;
    size_t n = rpc__request__get_packed_size(&req);
    assert_true(n + RPC_FRAME_HEADER_BYTES <= size);
    rpc_frame_put_header(out, (uint32_t)n);
    rpc__request__pack(&req, out + RPC_FRAME_HEADER_BYTES);
    return n + RPC_FRAME_HEADER_BYTES;
}

/* Sends one request on fd and reads its answer's message into out. Returns an rpc_status. */
static int raw_call(int fd, uint64_t id, const char *name, int ms, char *out, size_t size)
{
    uint8_t frame[256];
    size_t n = request_frame(frame, sizeof(frame), id, name, ms);
    if (send(fd, frame, n, MSG_NOSIGNAL) != (ssize_t)n) return RPC_ERR_IO;
    struct rpc_buf in = {0};
    int rc = rpc_frame_read(fd, &in, 1 << 16, 5000);
    if (rc == RPC_OK) {
        Rpc__Response *resp = rpc__response__unpack(NULL, in.len, in.data);
        if (resp == NULL || resp->id != id) {
            rc = RPC_ERR_DECODE;
        } else {
            snprintf(out, size, "%s", resp->message);
        }
        if (resp != NULL) rpc__response__free_unpacked(resp, NULL);
    }
    rpc_buf_free(&in);
    return rc;
}

/* Waits up to ms for the server to close fd. Returns 1 when it did. */
static int closed_by_server(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
    int64_t end = now_ms() + ms;
    char buf[256];
    while (now_ms() < end) {
        if (poll(&p, 1, 50) <= 0) continue;
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r <= 0) return 1; /* EOF or reset */
    }
    return 0;
}

struct client_arg {
    struct rpc_pool *pool;
    int index;
    int wrong; /* answers that were not ours or not from the right handler */
};

static void *client_main(void *arg)
{
    struct client_arg *a = arg;
    for (int i = 0; i < 200; i++) {
        Rpc__Request req = RPC__REQUEST__INIT;
        char name[32], want[48];
        /* Half the calls for the batch handler, half for the workers. */
        snprintf(name, sizeof(name), "%s%d-%d", i % 2 ? "fast" : "slow", a->index, i);
        snprintf(want, sizeof(want), "%s:%s", i % 2 ? "batch" : "worker", name);
        req.id = rpc_next_request_id();
        req.method = RPC__METHOD__METHOD_HEALTH;
        req.username = name;
        req.password = "0";
        Rpc__Response *resp = NULL;
        if (rpc_call(a->pool, &req, &resp) != RPC_OK) {
            a->wrong++;
            continue;
        }
        if (resp->message == NULL || strcmp(resp->message, want) != 0) a->wrong++;
        rpc_call_free(resp);
    }
    return NULL;
}

static void batch_answers_its_calls_and_workers_the_rest(void **state)
{
    (void)state;
    struct running_server *rs = server_start(2000);
    struct config_rpc cfg;
    memset(&cfg, 0, sizeof(cfg));
    snprintf(cfg.core_host, sizeof(cfg.core_host), "127.0.0.1");
    cfg.core_port = rpc_server_port(rs->srv);
    cfg.pool_size = 8;
    cfg.connect_timeout_ms = 500;
    cfg.io_timeout_ms = 2000;
    cfg.pool_wait_ms = 2000;
    cfg.max_frame_bytes = 1 << 16;
    struct rpc_pool *pool = rpc_pool_create(&cfg);
    int before_batch = batch_calls, before_handler = handler_calls;
    pthread_t t[8];
    struct client_arg args[8];
    for (int i = 0; i < 8; i++) {
        args[i] = (struct client_arg){pool, i, 0};
        pthread_create(&t[i], NULL, client_main, &args[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(args[i].wrong, 0);
    }
    assert_int_equal(batch_calls - before_batch, 800);
    assert_int_equal(handler_calls - before_handler, 800);
    rpc_pool_destroy(pool);
    server_stop(rs);
}

static void slow_request_holds_neither_loop_nor_other_connections(void **state)
{
    (void)state;
    struct running_server *rs = server_start(2000);
    int port = rpc_server_port(rs->srv);
    int slow = connect_to(port), quick = connect_to(port);
    uint8_t frame[256];
    size_t n = request_frame(frame, sizeof(frame), 1, "slow", 800);
    assert_int_equal(send(slow, frame, n, 0), (ssize_t)n);
    usleep(50 * 1000); /* the worker now sleeps in the handler */
    char got[64];
    int64_t t0 = now_ms();
    assert_int_equal(raw_call(quick, 2, "fast-a", 0, got, sizeof(got)), RPC_OK);
    assert_string_equal(got, "batch:fast-a");
    assert_int_equal(raw_call(quick, 3, "other", 0, got, sizeof(got)), RPC_OK);
    assert_string_equal(got, "worker:other");
    assert_true(now_ms() - t0 < 500);
    /* The slow one still gets its own answer. */
    struct rpc_buf in = {0};
    assert_int_equal(rpc_frame_read(slow, &in, 1 << 16, 3000), RPC_OK);
    Rpc__Response *resp = rpc__response__unpack(NULL, in.len, in.data);
    assert_non_null(resp);
    assert_int_equal(resp->id, 1);
    assert_string_equal(resp->message, "worker:slow");
    rpc__response__free_unpacked(resp, NULL);
    rpc_buf_free(&in);
    close(slow);
    close(quick);
    server_stop(rs);
}

static void second_request_before_the_answer_closes_the_connection(void **state)
{
    (void)state;
    struct running_server *rs = server_start(2000);
    int fd = connect_to(rpc_server_port(rs->srv));
    uint8_t two[512];
    size_t a = request_frame(two, sizeof(two), 1, "fast-1", 0);
    size_t b = request_frame(two + a, sizeof(two) - a, 2, "fast-2", 0);
    assert_int_equal(send(fd, two, a + b, 0), (ssize_t)(a + b));
    assert_true(closed_by_server(fd, 2000));
    close(fd);
    /* And the server still serves everyone else. */
    fd = connect_to(rpc_server_port(rs->srv));
    char got[64];
    assert_int_equal(raw_call(fd, 3, "fast-3", 0, got, sizeof(got)), RPC_OK);
    assert_string_equal(got, "batch:fast-3");
    close(fd);
    server_stop(rs);
}

static void oversized_or_empty_frame_header_closes_the_connection(void **state)
{
    (void)state;
    struct running_server *rs = server_start(2000);
    const uint8_t headers[2][4] = {{0, 2, 0, 0} /* 128 KiB > max 64 KiB */, {0, 0, 0, 0}};
    for (int i = 0; i < 2; i++) {
        int fd = connect_to(rpc_server_port(rs->srv));
        assert_int_equal(send(fd, headers[i], 4, 0), 4);
        assert_true(closed_by_server(fd, 2000));
        close(fd);
    }
    server_stop(rs);
}

static void stalled_frame_is_closed_after_the_io_timeout(void **state)
{
    (void)state;
    struct running_server *rs = server_start(300);
    int fd = connect_to(rpc_server_port(rs->srv));
    uint8_t frame[256];
    size_t n = request_frame(frame, sizeof(frame), 1, "fast-x", 0);
    assert_int_equal(send(fd, frame, n - 2, 0), (ssize_t)(n - 2)); /* never the last bytes */
    int64_t t0 = now_ms();
    assert_true(closed_by_server(fd, 3000));
    int64_t waited = now_ms() - t0;
    assert_true(waited >= 250);
    assert_true(waited < 2000);
    close(fd);
    server_stop(rs);
}

static void peer_leaving_while_a_worker_holds_its_request_harms_nobody(void **state)
{
    (void)state;
    struct running_server *rs = server_start(2000);
    int port = rpc_server_port(rs->srv);
    int before = handler_calls;
    for (int i = 0; i < 20; i++) {
        int fd = connect_to(port);
        uint8_t frame[256];
        size_t n = request_frame(frame, sizeof(frame), (uint64_t)i + 1, "gone", 20);
        assert_int_equal(send(fd, frame, n, 0), (ssize_t)n);
        close(fd); /* before the worker answers */
    }
    int fd = connect_to(port);
    char got[64];
    assert_int_equal(raw_call(fd, 99, "still-here", 0, got, sizeof(got)), RPC_OK);
    assert_string_equal(got, "worker:still-here");
    close(fd);
    /* Each abandoned request was still run (a write the user sent is not lost). */
    int64_t end = now_ms() + 3000;
    while (handler_calls - before < 21 && now_ms() < end)
        usleep(10 * 1000);
    assert_int_equal(handler_calls - before, 21);
    server_stop(rs);
}

static void peer_shutting_its_side_while_a_worker_answers_still_gets_the_answer(void **state)
{
    (void)state;
    struct running_server *rs = server_start(2000);
    int fd = connect_to(rpc_server_port(rs->srv));
    uint8_t frame[256];
    size_t n = request_frame(frame, sizeof(frame), 41, "half-closed", 300);
    assert_int_equal(send(fd, frame, n, 0), (ssize_t)n);
    usleep(50 * 1000); /* the worker now holds the request */
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    struct rpc_buf in = {0};
    assert_int_equal(rpc_frame_read(fd, &in, 1 << 16, 3000), RPC_OK);
    Rpc__Response *resp = rpc__response__unpack(NULL, in.len, in.data);
    assert_non_null(resp);
    assert_int_equal(resp->id, 41);
    assert_string_equal(resp->message, "worker:half-closed");
    rpc__response__free_unpacked(resp, NULL);
    rpc_buf_free(&in);
    assert_true(closed_by_server(fd, 2000)); /* and then the server closes */
    close(fd);
    server_stop(rs);
}

static void request_and_end_of_stream_together_are_answered(void **state)
{
    (void)state;
    struct running_server *rs = server_start(2000);
    const char *names[] = {"fast-eof", "worker-eof"}; /* batch path and worker path */
    const char *want[] = {"batch:fast-eof", "worker:worker-eof"};
    for (int i = 0; i < 2; i++) {
        int fd = connect_to(rpc_server_port(rs->srv));
        uint8_t frame[256];
        size_t n = request_frame(frame, sizeof(frame), 50 + (uint64_t)i, names[i], 0);
        assert_int_equal(send(fd, frame, n, 0), (ssize_t)n);
        assert_int_equal(shutdown(fd, SHUT_WR), 0);
        struct rpc_buf in = {0};
        assert_int_equal(rpc_frame_read(fd, &in, 1 << 16, 3000), RPC_OK);
        Rpc__Response *resp = rpc__response__unpack(NULL, in.len, in.data);
        assert_non_null(resp);
        assert_string_equal(resp->message, want[i]);
        rpc__response__free_unpacked(resp, NULL);
        rpc_buf_free(&in);
        assert_true(closed_by_server(fd, 2000));
        close(fd);
    }
    server_stop(rs);
}

static void silent_and_idle_connections_are_closed(void **state)
{
    (void)state;
    struct running_server *rs = server_start(300);
    int port = rpc_server_port(rs->srv);
    /* Connected, never asks: closed after the I/O timeout (300 ms here). */
    int silent = connect_to(port);
    int64_t t0 = now_ms();
    assert_true(closed_by_server(silent, 3000));
    assert_true(now_ms() - t0 < 2000);
    close(silent);
    /* Served once, then idle: closed after the idle timeout (1.5 s here), not before. */
    int idle = connect_to(port);
    char got[64];
    assert_int_equal(raw_call(idle, 1, "fast-idle", 0, got, sizeof(got)), RPC_OK);
    assert_false(closed_by_server(idle, 800));
    assert_true(closed_by_server(idle, 3000));
    close(idle);
    server_stop(rs);
}

struct stopper {
    struct running_server *rs;
    int after_ms;
};

static void *stop_later(void *arg)
{
    struct stopper *s = arg;
    usleep((useconds_t)s->after_ms * 1000);
    s->rs->stop = 1;
    return NULL;
}

static void stop_lets_the_request_in_flight_finish(void **state)
{
    (void)state;
    struct running_server *rs = server_start(2000);
    int fd = connect_to(rpc_server_port(rs->srv));
    struct stopper s = {rs, 100};
    pthread_t t;
    pthread_create(&t, NULL, stop_later, &s);
    char got[64];
    /* Sent before the stop, answered after it. */
    assert_int_equal(raw_call(fd, 7, "draining", 400, got, sizeof(got)), RPC_OK);
    assert_string_equal(got, "worker:draining");
    assert_true(closed_by_server(fd, 3000)); /* then the idle connection is closed */
    close(fd);
    pthread_join(t, NULL);
    pthread_join(rs->thread, NULL);
    assert_int_equal(rs->run_rc, 0);
    rpc_server_destroy(rs->srv);
    free(rs);
}

/*
 * Group commit: with one group handler allowed at a time, calls of the group
 * that arrive while it runs wait and reach the next call all together; a
 * group number out of range goes to the blocking handler alone.
 */
static void grouped_calls_wait_for_the_running_group_and_go_together(void **state)
{
    (void)state;
    struct running_server *rs = server_start(2000);
    int port = rpc_server_port(rs->srv);
    int fds[6];
    char out[128], want[128];
    uint8_t frame[256];

    for (int i = 0; i < 6; i++)
        fds[i] = connect_to(port);
    /* The first call holds the group's only slot for 400 ms... */
    size_t n = request_frame(frame, sizeof(frame), 1, "group-first", 400);
    assert_int_equal(send(fds[0], frame, n, MSG_NOSIGNAL), (ssize_t)n);
    struct timespec ts = {0, 100 * 1000000L};
    nanosleep(&ts, NULL);
    /* ...so these five, sent meanwhile, wait and go together. */
    for (int i = 1; i < 6; i++) {
        char name[32];
        snprintf(name, sizeof(name), "group-%d", i);
        n = request_frame(frame, sizeof(frame), (uint64_t)(10 + i), name, 0);
        assert_int_equal(send(fds[i], frame, n, MSG_NOSIGNAL), (ssize_t)n);
    }
    for (int i = 0; i < 6; i++) {
        struct rpc_buf in = {0};
        assert_int_equal(rpc_frame_read(fds[i], &in, 1 << 16, 5000), RPC_OK);
        Rpc__Response *resp = rpc__response__unpack(NULL, in.len, in.data);
        assert_non_null(resp);
        assert_int_equal(resp->id, i == 0 ? 1 : 10 + i);
        if (i == 0)
            snprintf(want, sizeof(want), "group1:group-first");
        else
            snprintf(want, sizeof(want), "group5:group-%d", i);
        assert_string_equal(resp->message, want);
        rpc__response__free_unpacked(resp, NULL);
        rpc_buf_free(&in);
    }
    /* The connections serve their next request as usual. */
    assert_int_equal(raw_call(fds[1], 20, "group-again", 0, out, sizeof(out)), RPC_OK);
    assert_string_equal(out, "group1:group-again");
    assert_int_equal(raw_call(fds[2], 21, "grp9-alone", 0, out, sizeof(out)), RPC_OK);
    assert_string_equal(out, "worker:grp9-alone");
    for (int i = 0; i < 6; i++)
        close(fds[i]);
    server_stop(rs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(batch_answers_its_calls_and_workers_the_rest),
        cmocka_unit_test(slow_request_holds_neither_loop_nor_other_connections),
        cmocka_unit_test(second_request_before_the_answer_closes_the_connection),
        cmocka_unit_test(oversized_or_empty_frame_header_closes_the_connection),
        cmocka_unit_test(stalled_frame_is_closed_after_the_io_timeout),
        cmocka_unit_test(peer_leaving_while_a_worker_holds_its_request_harms_nobody),
        cmocka_unit_test(peer_shutting_its_side_while_a_worker_answers_still_gets_the_answer),
        cmocka_unit_test(request_and_end_of_stream_together_are_answered),
        cmocka_unit_test(silent_and_idle_connections_are_closed),
        cmocka_unit_test(stop_lets_the_request_in_flight_finish),
        cmocka_unit_test(grouped_calls_wait_for_the_running_group_and_go_together),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
