/*
 * server: the web server's HTTP front, on libmicrohttpd.
 *
 * Listens on cfg.web.host:port with a pool of cfg.web.threads threads, each
 * polling its share of the connections with poll() (not epoll: see
 * web_server_start). Routes requests
 * to pages.h (HTML), api.h (JSON) and files.h (pictures, static assets),
 * reads request bodies within their caps (refusing a too-large upload with
 * 413 from its Content-Length before reading it, or as soon as a streamed
 * body passes the limit), and writes one access log line per request
 * (method, path, status, duration_us, rid, ip).
 *
 * No thread waits for the core: a fast request's handler runs up to its
 * RPC, the connection is suspended while the RPC reactor (rpc/async.h)
 * carries the call, and the handler runs again with the answer (see
 * web/request.h); slow requests run on web/workers.h. The connect timeout
 * bounds a call at about a second when the core is down, so every route
 * then answers 503 quickly.
 */
#ifndef PROFILE_WEB_SERVER_H
#define PROFILE_WEB_SERVER_H

#include "common/config.h"

struct web_server;

/*
 * Loads the templates, creates the RPC pool (no connection yet: the core
 * may be down) and starts listening. cfg must outlive the server.
 * cfg->web.port 0 picks a free port (see web_server_port). Returns the
 * server, or NULL after logging why (templates, bad trusted_proxies,
 * address in use...).
 */
struct web_server *web_server_start(const struct config *cfg);

/* The TCP port the server listens on. */
int web_server_port(const struct web_server *srv);

/*
 * Stops accepting connections, gives the open ones up to drain_ms
 * milliseconds to finish, then stops the threads, closes everything and
 * frees srv. NULL is allowed.
 */
void web_server_stop(struct web_server *srv, int drain_ms);

#endif
