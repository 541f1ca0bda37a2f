/*
 * metrics: the web server's counters and their Prometheus text exposition
 * (https://prometheus.io/docs/instrumenting/exposition_formats/, format
 * 0.0.4), served by GET /metrics.
 *
 * Requests are counted by route and HTTP status, and their duration goes
 * into one histogram per route. Routes are a fixed set of labels chosen at
 * start-up (the routes table, plus "static", "pictures" and "other"), so a
 * client probing random paths cannot grow the series. Recording is a few
 * relaxed atomic increments: no lock on the request path.
 */
#ifndef PROFILE_WEB_METRICS_H
#define PROFILE_WEB_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "web/html.h"

#define METRICS_ROUTES_MAX 32 /* route labels, at most */

struct web_metrics;

/*
 * Creates the counters for nroutes (<= METRICS_ROUTES_MAX) route labels;
 * names[i] is the label of route i (static strings, not copied, no '"' or
 * '\\'). Returns the metrics (free with web_metrics_free), or NULL with
 * errno (EINVAL: too many routes, ENOMEM).
 */
struct web_metrics *web_metrics_create(const char *const *names, size_t nroutes);

/* Frees m. NULL is allowed. */
void web_metrics_free(struct web_metrics *m);

/*
 * Counts one finished request of route (index into the names given to
 * create; out-of-range indexes are ignored) that was answered with HTTP
 * status (0: no response was sent) after duration_us microseconds.
 * Thread-safe, lock-free.
 */
void web_metrics_observe(struct web_metrics *m, size_t route, int status, uint64_t duration_us);

/*
 * Appends the web server's series to out in the text exposition format:
 *   profile_web_http_requests_total{route,status}          counter
 *   profile_web_http_request_duration_seconds{route}       histogram
 * Returns 0, or -1 when out failed to grow (ENOMEM).
 */
int web_metrics_render(const struct web_metrics *m, struct html_buf *out);

/*
 * Appends printf-style text to out (for the other series the /metrics
 * handler adds: RPC pools, core counters). Returns 0, or -1 on ENOMEM or an
 * encoding error.
 */
int web_metrics_printf(struct html_buf *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
