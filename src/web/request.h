/*
 * request: the per-request state the web server's handlers share, and the
 * helpers that read a request (client address, session token, content
 * type) and ask the core about it over RPC.
 *
 * One struct web_request lives from the moment libmicrohttpd hands us the
 * request headers until the response has been sent; it holds the body as
 * it streams in, the status we answered with, and what the access log
 * needs. Handlers run in libmicrohttpd's worker threads; a request is only
 * ever touched by one thread at a time.
 */
#ifndef PROFILE_WEB_REQUEST_H
#define PROFILE_WEB_REQUEST_H

#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "profile.pb-c.h"
#include "rpc/async.h"
#include "rpc/client.h"
#include "web/csrf.h"
#include "web/form.h"
#include "web/html.h"

#define REQUEST_TAG_MAX 64     /* bytes of an accepted X-Request-Id */
#define REQUEST_TOKEN_MAX 4096 /* bytes; a longer session token is treated as absent */
#define REQUEST_IP_MAX 46      /* INET6_ADDRSTRLEN */

struct pages;       /* web/pages.h */
struct web_metrics; /* web/metrics.h */

/* What every request shares; built once at start-up, read-only afterwards
 * (except the counter, which is atomic). */
struct web_app {
    const struct config *cfg;       /* loaded configuration; outlives the server */
    struct rpc_async *async;        /* the fast lane's RPC reactor (rpc/async.h) */
    struct rpc_pool *pool;          /* blocking connections for a fast request's second RPC */
    struct rpc_pool *slow_pool;     /* connections to the core for slow requests */
    struct workers *workers;        /* threads that run slow requests (web/workers.h) */
    struct pages *pages;            /* parsed HTML templates */
    struct web_metrics *metrics;    /* request counters for GET /metrics (web/metrics.h) */
    struct in6_addr *proxies;       /* trusted reverse proxies (IPv4 as v4-mapped); heap */
    size_t nproxies;                /* entries in proxies */
    char picture_too_large_msg[96]; /* "The picture is larger than 10 MiB.", built once */
    struct csrf_key csrf;           /* key of the HTML forms' CSRF tokens (web/csrf.h) */
    atomic_int active;              /* requests begun and not yet completed (for draining) */
    atomic_int stopping;            /* web_server_stop began: new requests are answered 503 and
                                       every answer closes its connection */
};

/* Where a fast-lane request's RPC is (see request_rpc and web/server.c). */
enum request_async {
    REQUEST_ASYNC_NONE,      /* no RPC asked for yet */
    REQUEST_ASYNC_PREPARED,  /* the handler packed one: its reply is dropped, finish() sends it */
    REQUEST_ASYNC_SUBMITTED, /* sent, connection suspended until the reactor answers */
    REQUEST_ASYNC_ANSWERED,  /* the handler runs again and request_rpc returns the answer */
    REQUEST_ASYNC_CONSUMED,  /* answer handed over; a further RPC is made blocking */
};

/* How a route takes its request body. */
enum request_body {
    REQUEST_BODY_NONE,   /* no body expected; the handler runs on the headers */
    REQUEST_BODY_FORM,   /* urlencoded or multipart form, parsed by form.h */
    REQUEST_BODY_JSON,   /* Content-Type application/json, buffered */
    REQUEST_BODY_IMAGE,  /* Content-Type image/..., buffered (an uploaded picture) */
    REQUEST_BODY_IGNORE, /* read and thrown away (e.g. the logout form) */
};

struct web_request {
    struct web_app *app;            /* shared state */
    struct MHD_Connection *conn;    /* libmicrohttpd's connection; valid until completion */
    const char *method;             /* "GET"...; owned by libmicrohttpd, valid while handling */
    char method_copy[16];           /* the method again, for the access log (truncated) */
    char *path;                     /* heap copy of the decoded URL path (no query string) */
    uint64_t rid;                   /* request id: in every log line and in the first RPC */
    uint64_t start_us;              /* CLOCK_MONOTONIC at arrival, microseconds */
    int rpc_calls;                  /* RPCs made so far */
    struct rpc_pool *pool;          /* the lane's pool: app->pool, or app->slow_pool */
    char client_ip[REQUEST_IP_MAX]; /* end user's address (see request_identify) */
    char request_tag[REQUEST_TAG_MAX + 1]; /* sane X-Request-Id, or "" */
    size_t metrics_route;                  /* route label index for web/metrics.h */

    /* route handler that answers once the body is in */
    enum MHD_Result (*handler)(struct web_request *req);

    /* body */
    enum request_body body_kind; /* how this route reads its body */
    size_t body_max;             /* bytes accepted in total before answering 413 */
    uint64_t body_seen;          /* bytes received so far, kept or not */
    struct form *form;           /* REQUEST_BODY_FORM parser; heap */
    struct html_buf body;        /* REQUEST_BODY_JSON/IMAGE bytes */
    int body_error;              /* 0, or the HTTP status the body earned (400, 413, 415...) */
    const char *body_error_code; /* static snake_case code for body_error */
    const char *body_error_msg;  /* static sentence for body_error */
    struct json_t *body_json;    /* the JSON body once parsed (jansson), so the replay of a
                                    fast-lane handler does not parse it again; owned, freed
                                    with the request */

    /* response */
    int status;            /* HTTP status queued; 0 until a response was queued */
    char *set_cookie;      /* heap Set-Cookie value of the session cookie to send, or NULL */
    char *set_csrf_cookie; /* heap Set-Cookie value of the pre-session CSRF cookie, or NULL */
    const char *allow;     /* static Allow header value (405 answers), or NULL */

    /* slow lane: the handler runs on a worker while the connection is suspended */
    int slow;           /* 1: the route runs on app->workers */
    int fast_first;     /* 1: a login tried on the fast lane first: its RPC carries fast_only */
    int retry_slow;     /* 1: the core answered STATUS_WOULD_BLOCK: nothing is queued, and
                           finish() runs the handler again on the slow lane */
    int deferred;       /* 1: reply_queue() stores instead of queueing */
    uint64_t queued_us; /* CLOCK_MONOTONIC when handed to the workers, microseconds */
    struct MHD_Response *deferred_response; /* response built by the worker, or NULL */
    int deferred_status;                    /* its HTTP status */
    enum MHD_Result deferred_result;        /* what the handler returned */

    /* fast lane: the handler runs until its RPC, which goes to app->async while the connection
     * is suspended; then it runs again from the top and gets the answer (a replay: handlers are
     * deterministic up to their RPC and have no effect but their reply, which is dropped) */
    int async;                         /* 1: request_rpc() goes through app->async */
    enum request_async async_state;    /* see enum request_async */
    struct rpc_async_call *async_call; /* REQUEST_ASYNC_PREPARED: the packed RPC; heap */
    int async_rc;                      /* REQUEST_ASYNC_ANSWERED: the call's rpc_status */
    Rpc__Response *async_resp;         /* REQUEST_ASYNC_ANSWERED: its answer; heap */
};

/*
 * Parses cfg.web.trusted_proxies ("10.0.0.1, ::1", may be empty) into
 * app->proxies. Returns 0, or -1 with a message on stderr naming the entry
 * that is not an IP address (or on allocation failure).
 */
int request_proxies_parse(struct web_app *app, const char *list);

/*
 * Fills req->client_ip and req->request_tag. The client is the socket
 * peer; only when the peer is a trusted proxy is X-Forwarded-For believed,
 * and then the rightmost address that is not itself a trusted proxy is the
 * client (the leftmost entries are whatever the client chose to send).
 * X-Request-Id is kept when it is 1..64 bytes of [A-Za-z0-9-] (nginx's
 * $request_id is 32 hex digits): it is sent to the core as
 * Request.request_tag, logged as tag= by both servers and echoed in the
 * response's X-Request-Id.
 */
void request_identify(struct web_request *req);

/* Returns 1 when the TCP peer is a loopback address (127.0.0.0/8, ::1 or
 * ::ffff:127.x), else 0 (also when unknown). Proxy headers are not looked at. */
int request_peer_is_loopback(const struct web_request *req);

/* Value of request header name (case-insensitive), owned by libmicrohttpd, or NULL. */
const char *request_header(const struct web_request *req, const char *name);

/*
 * Returns 1 when the Content-Type's media type (before any ';' parameter,
 * compared case-insensitively, RFC 9110 8.3.1) equals type, e.g.
 * "application/json"; when type ends with '/' (e.g. "image/") any subtype
 * matches. Returns 0 when it differs or the header is missing.
 */
int request_content_type_is(const struct web_request *req, const char *type);

/*
 * Returns a heap copy (caller frees) of the session token: the "session"
 * cookie, else an "Authorization: Bearer <token>" header. Returns NULL
 * when neither is present, the value is empty, longer than
 * REQUEST_TOKEN_MAX or contains bytes a JWT cannot hold, or on ENOMEM.
 */
char *request_token(const struct web_request *req);

/*
 * Returns a heap copy (caller frees) of the value of the cookie called name
 * in the Cookie header, or NULL when it is absent, empty, longer than
 * REQUEST_TOKEN_MAX, not valid cookie text (RFC 6265 cookie-octets), or on
 * ENOMEM.
 */
char *request_cookie(const struct web_request *req, const char *name);

/*
 * Sends rr to the core (filling rr->id, client_ip and request_tag from req)
 * and stores the answer in *resp (free with rpc_call_free). Returns 0, or
 * -1 when the core could not be asked (logged; answer 503, *resp NULL).
 * On the fast lane (req->async) the first call only packs rr and returns -1
 * without logging: the reply the handler then builds is dropped, and when
 * the handler runs again with the answer this returns it.
 */
int request_rpc(struct web_request *req, Rpc__Request *rr, Rpc__Response **resp);

/*
 * The HTTP status for an RPC status: OK 200, INVALID_ARGUMENT 422 when
 * nickname is non-zero (the request was about a nickname) else 400,
 * UNAUTHENTICATED 401, NOT_FOUND 404, TOO_LARGE 413,
 * UNSUPPORTED_MEDIA_TYPE 415, UNAVAILABLE 503, INTERNAL and unknown 500.
 */
int request_http_status(int rpc_status, int nickname);

/* Default snake_case error code for an HTTP status ("unauthenticated"...). */
const char *request_error_code(int http_status);

/* Default sentence for an HTTP error status, for when the core sent none. */
const char *request_error_message(int http_status);

/* The sentence shown when validate_username() refuses a name (answer 400). */
#define REQUEST_USERNAME_MSG "A username is 1 to 64 characters: letters, digits, '.', '_' or '-'."

/* The sentence shown for every failed RPC (answer 503). */
#define REQUEST_UNAVAILABLE_MSG "The service is temporarily unavailable, please retry."

#endif
