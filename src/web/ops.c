/* ops: see ops.h. */
#include "web/ops.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "rpc/client.h"
#include "web/metrics.h"
#include "web/reply.h"

#define TEXT_PLAIN "text/plain; charset=utf-8"
#define PROMETHEUS_TEXT "text/plain; version=0.0.4; charset=utf-8"

static enum MHD_Result reply_text(struct web_request *req, int status, const char *text)
{
    char *body = strdup(text);
    if (body == NULL) return reply_bytes(req, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, NULL, 0);
    return reply_bytes(req, status, TEXT_PLAIN, body, strlen(body));
}

enum MHD_Result ops_healthz(struct web_request *req)
{
    return reply_text(req, MHD_HTTP_OK, "ok\n");
}

enum MHD_Result ops_readyz(struct web_request *req)
{
    Rpc__Request rr = RPC__REQUEST__INIT;
    Rpc__Response *resp = NULL;
    rr.method = RPC__METHOD__METHOD_HEALTH;
    if (request_rpc(req, &rr, &resp) != 0)
        return reply_text(req, MHD_HTTP_SERVICE_UNAVAILABLE,
                          "not ready: the core does not answer\n");
    enum MHD_Result r;
    if (resp->status == RPC__STATUS__STATUS_OK) {
        r = reply_text(req, MHD_HTTP_OK, "ready\n");
    } else {
        struct html_buf b;
        html_buf_init(&b);
        int bad = html_buf_append_str(&b, "not ready: ") != 0 ||
                  html_buf_append_str(&b, resp->message != NULL ? resp->message : "") != 0 ||
                  html_buf_append_str(&b, "\n") != 0;
        size_t len = 0;
        char *body = bad ? NULL : html_buf_take(&b, &len);
        html_buf_free(&b);
        r = body != NULL ? reply_bytes(req, MHD_HTTP_SERVICE_UNAVAILABLE, TEXT_PLAIN, body, len)
                         : reply_text(req, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready\n");
    }
    rpc_call_free(resp);
    return r;
}

/* True when the request came straight from this machine, not via a proxy. */
static int is_local_scrape(const struct web_request *req)
{
    if (!request_peer_is_loopback(req)) return 0;
    return request_header(req, "X-Forwarded-For") == NULL &&
           request_header(req, "Forwarded") == NULL && request_header(req, "X-Real-IP") == NULL;
}

/* RPC pool series, each family in one group as the text format requires. */
static int render_pools(struct html_buf *b, const struct web_app *app)
{
    struct rpc_pool_stats st[2], extra;
    const char *names[2] = {"fast", "slow"};
    /* "fast": the reactor plus the blocking connections a fast request's second RPC uses. */
    rpc_async_get_stats(app->async, &st[0]);
    rpc_pool_get_stats(app->pool, &extra);
    st[0].open += extra.open;
    st[0].idle += extra.idle;
    st[0].calls += extra.calls;
    st[0].failures += extra.failures;
    st[0].reconnects += extra.reconnects;
    rpc_pool_get_stats(app->slow_pool, &st[1]);
    int rc = web_metrics_printf(b, "# HELP profile_web_rpc_pool_connections Connections to the "
                                   "core, by pool and state.\n"
                                   "# TYPE profile_web_rpc_pool_connections gauge\n");
    for (int i = 0; i < 2; i++) {
        int in_use = st[i].open - st[i].idle;
        rc |= web_metrics_printf(
            b, "profile_web_rpc_pool_connections{pool=\"%s\",state=\"in_use\"} %d\n", names[i],
            in_use > 0 ? in_use : 0);
        rc |= web_metrics_printf(
            b, "profile_web_rpc_pool_connections{pool=\"%s\",state=\"idle\"} %d\n", names[i],
            st[i].idle);
    }
    static const char *const family[3] = {"calls", "failures", "reconnects"};
    static const char *const help[3] = {"RPC calls made", "RPC calls that failed (answered 503)",
                                        "connections to the core opened after the first"};
    for (int f = 0; f < 3; f++) {
        rc |= web_metrics_printf(b,
                                 "# HELP profile_web_rpc_%s_total %s, by pool.\n"
                                 "# TYPE profile_web_rpc_%s_total counter\n",
                                 family[f], help[f], family[f]);
        for (int i = 0; i < 2; i++) {
            uint64_t v = f == 0 ? st[i].calls : f == 1 ? st[i].failures : st[i].reconnects;
            rc |= web_metrics_printf(b, "profile_web_rpc_%s_total{pool=\"%s\"} %llu\n", family[f],
                                     names[i], (unsigned long long)v);
        }
    }
    return rc;
}

/* The core's counters, or profile_core_up 0 when it cannot be asked. */
static int render_core(struct web_request *req, struct html_buf *b)
{
    Rpc__Request rr = RPC__REQUEST__INIT;
    Rpc__Response *resp = NULL;
    rr.method = RPC__METHOD__METHOD_METRICS;
    int up = request_rpc(req, &rr, &resp) == 0 && resp->status == RPC__STATUS__STATUS_OK &&
             resp->core_metrics != NULL;
    int rc = web_metrics_printf(b,
                                "# HELP profile_core_up 1 when the core answered the METRICS "
                                "RPC for this scrape.\n# TYPE profile_core_up gauge\n"
                                "profile_core_up %d\n",
                                up);
    if (up) {
        const Rpc__CoreMetrics *m = resp->core_metrics;
        rc |= web_metrics_printf(
            b,
            "# HELP profile_core_rpc_requests_total RPC requests the core handled.\n"
            "# TYPE profile_core_rpc_requests_total counter\n"
            "profile_core_rpc_requests_total %llu\n"
            "# HELP profile_core_logins_total Logins, by outcome (failed: wrong credentials or "
            "bad username).\n# TYPE profile_core_logins_total counter\n"
            "profile_core_logins_total{outcome=\"succeeded\"} %llu\n"
            "profile_core_logins_total{outcome=\"failed\"} %llu\n",
            (unsigned long long)m->requests, (unsigned long long)m->logins_succeeded,
            (unsigned long long)m->logins_failed);
        rc |= web_metrics_printf(
            b,
            "# HELP profile_core_profile_cache_total Profile reads, by cache result.\n"
            "# TYPE profile_core_profile_cache_total counter\n"
            "profile_core_profile_cache_total{result=\"hit\"} %llu\n"
            "profile_core_profile_cache_total{result=\"miss\"} %llu\n",
            (unsigned long long)m->cache_hits, (unsigned long long)m->cache_misses);
        rc |= web_metrics_printf(b,
                                 "# HELP profile_core_mysql_errors_total Failed MySQL calls.\n"
                                 "# TYPE profile_core_mysql_errors_total counter\n"
                                 "profile_core_mysql_errors_total %llu\n"
                                 "# HELP profile_core_redis_errors_total Failed Redis calls.\n"
                                 "# TYPE profile_core_redis_errors_total counter\n"
                                 "profile_core_redis_errors_total %llu\n",
                                 (unsigned long long)m->mysql_errors,
                                 (unsigned long long)m->redis_errors);
        rc |= web_metrics_printf(
            b,
            "# HELP profile_core_nickname_edits_total Nickname-only edits committed.\n"
            "# TYPE profile_core_nickname_edits_total counter\n"
            "profile_core_nickname_edits_total %llu\n"
            "# HELP profile_core_nickname_commits_total UPDATE statements (group commits) "
            "that committed them.\n# TYPE profile_core_nickname_commits_total counter\n"
            "profile_core_nickname_commits_total %llu\n",
            (unsigned long long)m->nickname_edits, (unsigned long long)m->nickname_commits);
    }
    rpc_call_free(resp);
    return rc;
}

enum MHD_Result ops_metrics(struct web_request *req)
{
    if (!is_local_scrape(req)) {
        log_warn(req->rid, "metrics outcome=refused reason=not_local ip=%s", req->client_ip);
        return reply_text(req, MHD_HTTP_NOT_FOUND, "not found\n");
    }
    struct web_app *app = req->app;
    struct html_buf b;
    html_buf_init(&b);
    int rc = web_metrics_render(app->metrics, &b);
    rc |= web_metrics_printf(&b,
                             "# HELP profile_web_http_requests_in_flight Requests begun and not "
                             "yet answered.\n# TYPE profile_web_http_requests_in_flight gauge\n"
                             "profile_web_http_requests_in_flight %d\n",
                             atomic_load(&app->active));
    rc |= render_pools(&b, app);
    rc |= render_core(req, &b);
    size_t len = 0;
    char *body = rc == 0 ? html_buf_take(&b, &len) : NULL;
    html_buf_free(&b);
    if (body == NULL) {
        log_error(req->rid, "metrics: rendering failed (out of memory)");
        return reply_text(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal error\n");
    }
    return reply_bytes(req, MHD_HTTP_OK, PROMETHEUS_TEXT, body, len);
}
