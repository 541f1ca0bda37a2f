/*
 * The RPC clients, blocking (client.h) and asynchronous (async.h), against a
 * real rpc server (and against misbehaving fake servers): every call gets
 * its own answer under concurrency; a wrong id, a timeout or a framing error
 * closes the connection so a late answer is never read by the next call; an
 * unreachable core fails fast; a restarted core is reconnected to without
 * the caller noticing; the async client bounds its connections, makes calls
 * beyond them wait at most pool_wait_ms, and answers everything on stop.
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
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "rpc/async.h"
#include "rpc/client.h"
#include "rpc/frame.h"
#include "rpc/message.h"
#include "rpc/server.h"

/* Echo handler: answers with message = username, after sleeping password ms. */
static void echo_handler(void *ctx, const Rpc__Request *req, Rpc__Response *resp)
{
    (void)ctx;
    int ms = atoi(req->password);
    if (ms > 0) {
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    resp->status = RPC__STATUS__STATUS_OK;
    rpc_str_set(&resp->message, req->username);
}

struct running_server {
    struct rpc_server *srv;
    pthread_t thread;
    volatile sig_atomic_t stop;
};

static void *server_thread(void *arg)
{
    struct running_server *rs = arg;
    rpc_server_run(rs->srv, &rs->stop, 2000);
    return NULL;
}

static struct running_server *server_start(int port)
{
    struct running_server *rs = calloc(1, sizeof(*rs));
    struct rpc_server_options opt = {.host = "127.0.0.1",
                                     .port = port,
                                     .max_connections = 64,
                                     .max_frame_bytes = 1 << 20,
                                     .io_timeout_ms = 2000,
                                     .handler = echo_handler,
                                     .handler_ctx = NULL};
    rs->srv = rpc_server_create(&opt);
    assert_non_null(rs->srv);
    assert_int_equal(pthread_create(&rs->thread, NULL, server_thread, rs), 0);
    return rs;
}

static void server_stop(struct running_server *rs)
{
    rs->stop = 1;
    pthread_join(rs->thread, NULL);
    rpc_server_destroy(rs->srv);
    free(rs);
}

static struct config_rpc client_config(int port)
{
    struct config_rpc cfg;
    memset(&cfg, 0, sizeof(cfg));
    snprintf(cfg.core_host, sizeof(cfg.core_host), "127.0.0.1");
    cfg.core_port = port;
    cfg.pool_size = 4;
    cfg.connect_timeout_ms = 500;
    cfg.io_timeout_ms = 300;
    cfg.pool_wait_ms = 1000;
    cfg.max_frame_bytes = 1 << 20;
    return cfg;
}

static int call_echo(struct rpc_pool *pool, const char *name, int sleep_ms, char *out, size_t size)
{
    Rpc__Request req = RPC__REQUEST__INIT;
    char ms[16];
    snprintf(ms, sizeof(ms), "%d", sleep_ms);
    req.id = rpc_next_request_id();
    req.method = RPC__METHOD__METHOD_HEALTH;
    req.username = (char *)name;
    req.password = ms;
    Rpc__Response *resp = NULL;
    int rc = rpc_call(pool, &req, &resp);
    if (rc == RPC_OK) {
        snprintf(out, size, "%s", resp->message);
        rpc_call_free(resp);
    }
    return rc;
}

struct worker_arg {
    struct rpc_pool *pool;
    int index;
    int mismatches;
};

static void *worker(void *arg)
{
    struct worker_arg *w = arg;
    for (int i = 0; i < 300; i++) {
        char name[32], got[64];
        snprintf(name, sizeof(name), "user%d-%d", w->index, i);
        if (call_echo(w->pool, name, 0, got, sizeof(got)) != RPC_OK || strcmp(name, got) != 0)
            w->mismatches++;
    }
    return NULL;
}

static void concurrent_calls_each_get_their_own_answer(void **state)
{
    (void)state;
    struct running_server *rs = server_start(0);
    struct config_rpc cfg = client_config(rpc_server_port(rs->srv));
    struct rpc_pool *pool = rpc_pool_create(&cfg);
    pthread_t t[8];
    struct worker_arg args[8];
    for (int i = 0; i < 8; i++) {
        args[i] = (struct worker_arg){pool, i, 0};
        pthread_create(&t[i], NULL, worker, &args[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(args[i].mismatches, 0);
    }
    struct rpc_pool_stats st;
    rpc_pool_get_stats(pool, &st);
    assert_true(st.open <= 4); /* bounded by pool_size */
    rpc_pool_destroy(pool);
    server_stop(rs);
}

static void timeout_closes_connection_so_late_answer_is_never_read(void **state)
{
    (void)state;
    struct running_server *rs = server_start(0);
    struct config_rpc cfg = client_config(rpc_server_port(rs->srv));
    cfg.pool_size = 1; /* one connection: a desync would hit the very next call */
    struct rpc_pool *pool = rpc_pool_create(&cfg);
    char got[64];
    assert_int_equal(call_echo(pool, "slow", 600, got, sizeof(got)), RPC_ERR_TIMEOUT);
    for (int i = 0; i < 5; i++) {
        char name[16];
        snprintf(name, sizeof(name), "next%d", i);
        assert_int_equal(call_echo(pool, name, 0, got, sizeof(got)), RPC_OK);
        assert_string_equal(got, name);
    }
    rpc_pool_destroy(pool);
    server_stop(rs);
}

/* A listening loopback socket on a free port (*port). */
static int listen_loopback(int *port)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(lfd, 8), 0);
    socklen_t sl = sizeof(a);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &sl), 0);
    *port = ntohs(a.sin_port);
    return lfd;
}

/* A loopback port nothing listens on (reserved, then closed). */
static int closed_loopback_port(void)
{
    int port;
    close(listen_loopback(&port));
    return port;
}

/* A fake core that answers every request with id + 1. */
static void *wrong_id_server(void *arg)
{
    int lfd = *(int *)arg;
    int fd = accept(lfd, NULL, NULL);
    struct rpc_buf in = {0};
    while (fd >= 0 && rpc_frame_read(fd, &in, 1 << 20, 2000) == RPC_OK) {
        Rpc__Request *req = rpc__request__unpack(NULL, in.len, in.data);
        Rpc__Response resp = RPC__RESPONSE__INIT;
        resp.id = req->id + 1;
        uint8_t out[64];
        size_t n = rpc__response__pack(&resp, out);
        rpc__request__free_unpacked(req, NULL);
        rpc_frame_write(fd, out, (uint32_t)n, 1000);
    }
    rpc_buf_free(&in);
    if (fd >= 0) close(fd);
    return NULL;
}

static void wrong_response_id_is_refused_and_connection_closed(void **state)
{
    (void)state;
    int port;
    int lfd = listen_loopback(&port);
    pthread_t t;
    pthread_create(&t, NULL, wrong_id_server, &lfd);
    struct config_rpc cfg = client_config(port);
    struct rpc_pool *pool = rpc_pool_create(&cfg);
    char got[64];
    assert_int_equal(call_echo(pool, "x", 0, got, sizeof(got)), RPC_ERR_MISMATCH);
    struct rpc_pool_stats st;
    rpc_pool_get_stats(pool, &st);
    assert_int_equal(st.open, 0); /* closed, not returned to the pool */
    rpc_pool_destroy(pool);
    pthread_join(t, NULL);
    close(lfd);
}

static void unreachable_core_fails_fast(void **state)
{
    (void)state;
    struct config_rpc cfg = client_config(closed_loopback_port());
    struct rpc_pool *pool = rpc_pool_create(&cfg);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char got[64];
    assert_int_equal(call_echo(pool, "x", 0, got, sizeof(got)), RPC_ERR_UNAVAILABLE);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(t1.tv_sec - t0.tv_sec < 2);
    rpc_pool_destroy(pool);
}

static void restarted_core_is_reconnected_transparently(void **state)
{
    (void)state;
    struct running_server *rs = server_start(0);
    int port = rpc_server_port(rs->srv);
    struct config_rpc cfg = client_config(port);
    struct rpc_pool *pool = rpc_pool_create(&cfg);
    char got[64];
    assert_int_equal(call_echo(pool, "before", 0, got, sizeof(got)), RPC_OK);
    server_stop(rs); /* pooled connection now points at a dead server */
    assert_int_equal(call_echo(pool, "down", 0, got, sizeof(got)), RPC_ERR_UNAVAILABLE);
    rs = server_start(port);
    assert_int_equal(call_echo(pool, "after", 0, got, sizeof(got)), RPC_OK);
    assert_string_equal(got, "after");
    rpc_pool_destroy(pool);
    server_stop(rs);
}

/* ---- the asynchronous client ------------------------------------------------------ */

#define ASYNC_MAX 256

/* What the done callbacks delivered, by call index; reset before each async test. */
static struct {
    pthread_mutex_t mu;
    int done;                   /* callbacks so far */
    int status[ASYNC_MAX];      /* rpc_status per call */
    char answer[ASYNC_MAX][64]; /* resp->message per call */
    int64_t at_ms[ASYNC_MAX];   /* when each answer came, CLOCK_MONOTONIC ms */
    int index[ASYNC_MAX];       /* callback argument: the call's own index */
} R;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int async_reset(void **state)
{
    (void)state;
    memset(&R, 0, sizeof(R));
    pthread_mutex_init(&R.mu, NULL);
    return 0;
}

static void on_answer(void *arg, int status, Rpc__Response *resp)
{
    int i = *(int *)arg;
    pthread_mutex_lock(&R.mu);
    R.status[i] = status;
    if (resp != NULL) snprintf(R.answer[i], sizeof(R.answer[0]), "%s", resp->message);
    R.at_ms[i] = mono_ms();
    R.done++;
    pthread_mutex_unlock(&R.mu);
    rpc_call_free(resp);
}

/* Sends echo call i (answer: name, after sleep_ms). Returns rpc_async_call's status. */
static int async_echo(struct rpc_async *a, int i, const char *name, int sleep_ms)
{
    Rpc__Request req = RPC__REQUEST__INIT;
    char ms[16];
    snprintf(ms, sizeof(ms), "%d", sleep_ms);
    req.id = rpc_next_request_id();
    req.method = RPC__METHOD__METHOD_HEALTH;
    req.username = (char *)name;
    req.password = ms;
    R.index[i] = i;
    return rpc_async_call(a, &req, on_answer, &R.index[i]);
}

/* Waits until n answers arrived in all (10 s at most). */
static void async_wait(int n)
{
    int64_t deadline = mono_ms() + 10000;
    int done;
    for (;;) {
        pthread_mutex_lock(&R.mu);
        done = R.done;
        pthread_mutex_unlock(&R.mu);
        if (done >= n || mono_ms() > deadline) break;
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(done, n);
}

/* Call i, sent alone and waited for: asserts its status and (when OK) its answer. */
static void async_expect(struct rpc_async *a, int i, const char *name, int status)
{
    assert_int_equal(async_echo(a, i, name, 0), RPC_OK);
    async_wait(i + 1);
    assert_int_equal(R.status[i], status);
    if (status == RPC_OK) assert_string_equal(R.answer[i], name);
}

static void async_calls_each_get_their_own_answer_over_few_connections(void **state)
{
    (void)state;
    struct running_server *rs = server_start(0);
    struct config_rpc cfg = client_config(rpc_server_port(rs->srv));
    struct rpc_async *a = rpc_async_create(&cfg);
    assert_non_null(a);
    /* 200 calls at once over pool_size 4: 196 wait their turn, none is lost or mixed up. */
    char name[200][32];
    for (int i = 0; i < 200; i++) {
        snprintf(name[i], sizeof(name[i]), "user-%d", i);
        assert_int_equal(async_echo(a, i, name[i], i % 3), RPC_OK);
    }
    async_wait(200);
    for (int i = 0; i < 200; i++) {
        assert_int_equal(R.status[i], RPC_OK);
        assert_string_equal(R.answer[i], name[i]);
    }
    struct rpc_pool_stats st;
    rpc_async_get_stats(a, &st);
    assert_true(st.open <= 4);
    assert_int_equal(st.calls, 200);
    assert_int_equal(st.failures, 0);
    rpc_async_destroy(a);
    server_stop(rs);
}

static void async_timeout_closes_connection_so_late_answer_is_never_read(void **state)
{
    (void)state;
    struct running_server *rs = server_start(0);
    struct config_rpc cfg = client_config(rpc_server_port(rs->srv));
    cfg.pool_size = 1; /* one connection: a desync would hit the very next call */
    struct rpc_async *a = rpc_async_create(&cfg);
    assert_int_equal(async_echo(a, 0, "slow", 600), RPC_OK);
    async_wait(1);
    assert_int_equal(R.status[0], RPC_ERR_TIMEOUT);
    async_expect(a, 1, "next1", RPC_OK);
    async_expect(a, 2, "next2", RPC_OK);
    async_expect(a, 3, "next3", RPC_OK);
    rpc_async_destroy(a);
    server_stop(rs);
}

static void async_wrong_response_id_is_refused_and_connection_closed(void **state)
{
    (void)state;
    int port;
    int lfd = listen_loopback(&port);
    pthread_t t;
    pthread_create(&t, NULL, wrong_id_server, &lfd);
    struct config_rpc cfg = client_config(port);
    struct rpc_async *a = rpc_async_create(&cfg);
    async_expect(a, 0, "x", RPC_ERR_MISMATCH);
    struct rpc_pool_stats st;
    rpc_async_get_stats(a, &st);
    assert_int_equal(st.open, 0); /* closed, not kept for the next call */
    rpc_async_destroy(a);
    pthread_join(t, NULL);
    close(lfd);
}

static void async_unreachable_core_fails_fast(void **state)
{
    (void)state;
    struct config_rpc cfg = client_config(closed_loopback_port());
    struct rpc_async *a = rpc_async_create(&cfg);
    int64_t t0 = mono_ms();
    for (int i = 0; i < 10; i++)
        assert_int_equal(async_echo(a, i, "x", 0), RPC_OK);
    async_wait(10);
    assert_true(mono_ms() - t0 < 2000);
    for (int i = 0; i < 10; i++)
        assert_int_equal(R.status[i], RPC_ERR_UNAVAILABLE);
    rpc_async_destroy(a);
}

static void async_restarted_core_is_reconnected_transparently(void **state)
{
    (void)state;
    struct running_server *rs = server_start(0);
    int port = rpc_server_port(rs->srv);
    struct config_rpc cfg = client_config(port);
    struct rpc_async *a = rpc_async_create(&cfg);
    async_expect(a, 0, "before", RPC_OK);
    /* A restart between two calls: the pooled connection is dead, the caller never knows. */
    server_stop(rs);
    rs = server_start(port);
    async_expect(a, 1, "after", RPC_OK);
    /* Down: refused at once; up again: served. */
    server_stop(rs);
    async_expect(a, 2, "down", RPC_ERR_UNAVAILABLE);
    rs = server_start(port);
    async_expect(a, 3, "again", RPC_OK);
    rpc_async_destroy(a);
    server_stop(rs);
}

static void async_call_beyond_the_pool_waits_at_most_pool_wait_ms(void **state)
{
    (void)state;
    struct running_server *rs = server_start(0);
    struct config_rpc cfg = client_config(rpc_server_port(rs->srv));
    cfg.pool_size = 1;
    cfg.io_timeout_ms = 3000;
    cfg.pool_wait_ms = 200;
    struct rpc_async *a = rpc_async_create(&cfg);
    int64_t t0 = mono_ms();
    assert_int_equal(async_echo(a, 0, "holder", 800), RPC_OK);
    assert_int_equal(async_echo(a, 1, "waiter", 0), RPC_OK);
    async_wait(2);
    /* The waiter gave up after ~200 ms (the sweep runs every 50), before the holder's answer. */
    assert_int_equal(R.status[1], RPC_ERR_UNAVAILABLE);
    assert_true(R.at_ms[1] - t0 >= 200 && R.at_ms[1] - t0 < 600);
    assert_int_equal(R.status[0], RPC_OK);
    assert_string_equal(R.answer[0], "holder");
    rpc_async_destroy(a);
    server_stop(rs);
}

static void async_stop_answers_pending_calls_and_refuses_new_ones(void **state)
{
    (void)state;
    struct running_server *rs = server_start(0);
    struct config_rpc cfg = client_config(rpc_server_port(rs->srv));
    cfg.pool_size = 1;
    cfg.io_timeout_ms = 3000;
    struct rpc_async *a = rpc_async_create(&cfg);
    assert_int_equal(async_echo(a, 0, "in-flight", 500), RPC_OK);
    assert_int_equal(async_echo(a, 1, "waiting", 0), RPC_OK);
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    rpc_async_stop(a);
    assert_int_equal(R.done, 2); /* both answered by the time stop returns */
    assert_int_equal(R.status[0], RPC_ERR_UNAVAILABLE);
    assert_int_equal(R.status[1], RPC_ERR_UNAVAILABLE);
    assert_int_equal(async_echo(a, 2, "late", 0), RPC_ERR_UNAVAILABLE);
    assert_int_equal(R.done, 2); /* and its callback never runs */
    rpc_async_destroy(a);
    server_stop(rs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(concurrent_calls_each_get_their_own_answer),
        cmocka_unit_test(timeout_closes_connection_so_late_answer_is_never_read),
        cmocka_unit_test(wrong_response_id_is_refused_and_connection_closed),
        cmocka_unit_test(unreachable_core_fails_fast),
        cmocka_unit_test(restarted_core_is_reconnected_transparently),
        cmocka_unit_test_setup(async_calls_each_get_their_own_answer_over_few_connections,
                               async_reset),
        cmocka_unit_test_setup(async_timeout_closes_connection_so_late_answer_is_never_read,
                               async_reset),
        cmocka_unit_test_setup(async_wrong_response_id_is_refused_and_connection_closed,
                               async_reset),
        cmocka_unit_test_setup(async_unreachable_core_fails_fast, async_reset),
        cmocka_unit_test_setup(async_restarted_core_is_reconnected_transparently, async_reset),
        cmocka_unit_test_setup(async_call_beyond_the_pool_waits_at_most_pool_wait_ms, async_reset),
        cmocka_unit_test_setup(async_stop_answers_pending_calls_and_refuses_new_ones, async_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
