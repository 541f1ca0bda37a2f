/*
 * The RPC client pool against a real rpc server (and against misbehaving
 * fake servers): every call gets its own answer under concurrency; a wrong
 * id, a timeout or a framing error closes the connection so a late answer is
 * never read by the next call; an unreachable core fails fast; a restarted
 * core is reconnected to without the caller noticing.
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
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(lfd, 8), 0);
    socklen_t sl = sizeof(a);
    getsockname(lfd, (struct sockaddr *)&a, &sl);
    pthread_t t;
    pthread_create(&t, NULL, wrong_id_server, &lfd);
    struct config_rpc cfg = client_config(ntohs(a.sin_port));
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
    /* Reserve a port and close it: nothing listens there. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    socklen_t sl = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &sl);
    close(fd);
    struct config_rpc cfg = client_config(ntohs(a.sin_port));
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(concurrent_calls_each_get_their_own_answer),
        cmocka_unit_test(timeout_closes_connection_so_late_answer_is_never_read),
        cmocka_unit_test(wrong_response_id_is_refused_and_connection_closed),
        cmocka_unit_test(unreachable_core_fails_fast),
        cmocka_unit_test(restarted_core_is_reconnected_transparently),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
