/* metrics: see metrics.h. */
#include "web/metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

/* Statuses this server answers with; anything else is counted as "other". */
static const int metrics_statuses[] = {200, 204, 303, 304, 400, 401, 403, 404, 405,
                                       408, 413, 415, 422, 429, 500, 503, 0};
#define NSTATUS (sizeof(metrics_statuses) / sizeof(metrics_statuses[0]) + 1) /* + other */

/* Histogram upper bounds, microseconds (1 ms .. 10 s); +Inf is implicit. */
static const uint64_t metrics_bounds_us[] = {1000,   2500,   5000,   10000,   25000,   50000,
                                             100000, 250000, 500000, 1000000, 2500000, 10000000};
#define NBUCKET (sizeof(metrics_bounds_us) / sizeof(metrics_bounds_us[0]))

struct route_metrics {
    _Atomic uint64_t by_status[NSTATUS]; /* requests per status slot (last: other) */
    _Atomic uint64_t buckets[NBUCKET];   /* requests per duration bucket, not cumulative */
    _Atomic uint64_t count;              /* requests observed */
    _Atomic uint64_t sum_us;             /* their total duration, microseconds */
};

struct web_metrics {
    const char *const *names;     /* route labels, static */
    size_t nroutes;               /* entries in names and routes */
    struct route_metrics *routes; /* heap, nroutes entries */
};

struct web_metrics *web_metrics_create(const char *const *names, size_t nroutes)
{
    if (nroutes == 0 || nroutes > METRICS_ROUTES_MAX) {
        errno = EINVAL;
        return NULL;
    }
    struct web_metrics *m = calloc(1, sizeof(*m));
    if (m == NULL) return NULL;
    m->routes = calloc(nroutes, sizeof(*m->routes)); /* all-zero atomics are valid zeros */
    if (m->routes == NULL) {
        free(m);
        return NULL;
    }
    m->names = names;
    m->nroutes = nroutes;
    return m;
}

void web_metrics_free(struct web_metrics *m)
{
    if (m == NULL) return;
    free(m->routes);
    free(m);
}

static size_t status_slot(int status)
{
    for (size_t i = 0; i < NSTATUS - 1; i++)
        if (metrics_statuses[i] == status) return i;
    return NSTATUS - 1;
}

void web_metrics_observe(struct web_metrics *m, size_t route, int status, uint64_t duration_us)
{
    if (m == NULL || route >= m->nroutes) return;
    struct route_metrics *r = &m->routes[route];
    atomic_fetch_add_explicit(&r->by_status[status_slot(status)], 1, memory_order_relaxed);
    size_t b = 0;
    while (b < NBUCKET && duration_us > metrics_bounds_us[b])
        b++;
    if (b < NBUCKET) atomic_fetch_add_explicit(&r->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->sum_us, duration_us, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->count, 1, memory_order_relaxed);
}

int web_metrics_printf(struct html_buf *out, const char *fmt, ...)
{
    char line[1024]; /* bytes; every caller writes a few short lines at once */
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line)) {
        errno = EOVERFLOW;
        return -1;
    }
    return html_buf_append(out, line, (size_t)n);
}

int web_metrics_render(const struct web_metrics *m, struct html_buf *out)
{
    int rc = 0;
    rc |= web_metrics_printf(out, "# HELP profile_web_http_requests_total HTTP requests answered, "
                                  "by route and status.\n"
                                  "# TYPE profile_web_http_requests_total counter\n");
    for (size_t r = 0; r < m->nroutes; r++) {
        for (size_t s = 0; s < NSTATUS; s++) {
            uint64_t v = atomic_load_explicit(&m->routes[r].by_status[s], memory_order_relaxed);
            if (v == 0) continue;
            char status[16];
            if (s == NSTATUS - 1)
                snprintf(status, sizeof(status), "other");
            else
                snprintf(status, sizeof(status), "%d", metrics_statuses[s]);
            rc |= web_metrics_printf(
                out, "profile_web_http_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
                m->names[r], status, (unsigned long long)v);
        }
    }
    rc |= web_metrics_printf(out, "# HELP profile_web_http_request_duration_seconds Time from "
                                  "the request headers to the response, by route.\n"
                                  "# TYPE profile_web_http_request_duration_seconds histogram\n");
    for (size_t r = 0; r < m->nroutes; r++) {
        const struct route_metrics *rm = &m->routes[r];
        uint64_t count = atomic_load_explicit(&rm->count, memory_order_relaxed);
        if (count == 0) continue;
        uint64_t cumulative = 0;
        for (size_t b = 0; b < NBUCKET; b++) {
            cumulative += atomic_load_explicit(&rm->buckets[b], memory_order_relaxed);
            rc |= web_metrics_printf(
                out,
                "profile_web_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                m->names[r], (double)metrics_bounds_us[b] / 1e6, (unsigned long long)cumulative);
        }
        /* Read count last-ish: a request observed meanwhile may make +Inf
         * exceed the last bucket, never fall below it. */
        if (count < cumulative) count = cumulative;
        rc |= web_metrics_printf(
            out,
            "profile_web_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
            m->names[r], (unsigned long long)count);
        rc |= web_metrics_printf(
            out, "profile_web_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", m->names[r],
            (double)atomic_load_explicit(&rm->sum_us, memory_order_relaxed) / 1e6);
        rc |= web_metrics_printf(
            out, "profile_web_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
            m->names[r], (unsigned long long)count);
    }
    return rc != 0 ? -1 : 0;
}
