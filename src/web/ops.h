/*
 * ops: the operator's endpoints of the web server.
 *
 *   GET /healthz  200 "ok": the process is up and serving HTTP (liveness;
 *                 asks nobody else, so a core outage never gets the web
 *                 server restarted).
 *   GET /readyz   200 "ready" when the core answers the HEALTH RPC with OK,
 *                 i.e. the core, its MySQL and its Redis all answer; 503
 *                 with the reason otherwise (readiness: take this instance
 *                 out of the load balancer).
 *   GET /metrics  Prometheus text format (web/metrics.h): requests by route
 *                 and status, a latency histogram, both RPC pools' in-use
 *                 and idle connections, and the core's counters (METRICS
 *                 RPC). Only for local scrapers: answered 404 unless the TCP
 *                 peer is a loopback address and the request carries no
 *                 proxy header (X-Forwarded-For, Forwarded, X-Real-IP), so
 *                 it is never served through nginx, which always adds one.
 *
 * Answers are text/plain with Cache-Control: no-store.
 */
#ifndef PROFILE_WEB_OPS_H
#define PROFILE_WEB_OPS_H

#include <microhttpd.h>

#include "web/request.h"

/* GET /healthz. */
enum MHD_Result ops_healthz(struct web_request *req);

/* GET /readyz. */
enum MHD_Result ops_readyz(struct web_request *req);

/* GET /metrics. */
enum MHD_Result ops_metrics(struct web_request *req);

#endif
