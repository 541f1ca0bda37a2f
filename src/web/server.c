/* server: see server.h. */
#include "web/server.h"

#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/net.h"
#include "rpc/client.h"
#include "web/api.h"
#include "web/files.h"
#include "web/metrics.h"
#include "web/ops.h"
#include "web/pages.h"
#include "web/reply.h"
#include "web/request.h"
#include "web/workers.h"

#define SMALL_BODY_MAX (64 * 1024) /* bytes: login forms, JSON bodies */
#define MULTIPART_OVERHEAD                                                                         \
    (64 * 1024)                     /* bytes: part headers and the nickname next to a picture      \
                                     */
#define TEXT_FIELD_MAX 4096         /* bytes in one text form field */
#define FORM_FIELDS_MAX 8           /* distinct names in one form */
#define DRAIN_MAX (8 * 1024 * 1024) /* bytes read and dropped after a 413 before closing */
#define CONNECTION_LIMIT_MAX 4096   /* simultaneous HTTP connections, at most */
#define ANSWER_FLUSH_MS 1000        /* at shutdown, time answers decided last get to go out */
#define MHD_LOG_PER_SECOND 10       /* libmicrohttpd's own log lines written a second, at most */
#define SLOW_QUEUE_MAX                                                                             \
    CONNECTION_LIMIT_MAX /* slow requests waiting for a worker: every                              \
                            connection may have one queued, so a login                             \
                            burst queues instead of failing with 503 */
#define CONNECTION_MEMORY                                                                          \
    (16 * 1024) /* bytes per connection for headers and buffers; 2000                              \
                   connections fit in 32 MiB (libmicrohttpd's default is                           \
                   32 KiB) and a 4 KiB session cookie still fits */

typedef enum MHD_Result (*handler_fn)(struct web_request *req);

/* How a route reads its body; each maps to a request_body and a cap. */
enum body_spec {
    BODY_NONE,
    BODY_FORM_SMALL,    /* login form */
    BODY_FORM_UPLOAD,   /* multipart with a picture */
    BODY_JSON,          /* required Content-Type application/json */
    BODY_JSON_OPTIONAL, /* application/json, or no body and no Content-Type at all */
    BODY_IMAGE,         /* Content-Type image/..., up to picture.max_bytes */
    BODY_IGNORE,        /* small body, dropped */
};

/* Which threads run a handler (see web/workers.h). */
enum lane {
    LANE_FAST,  /* on the libmicrohttpd thread, its RPC through the reactor (rpc/async.h) */
    LANE_SLOW,  /* on a worker, connection suspended: argon2id or libvips in the core */
    LANE_LOGIN, /* as LANE_FAST with fast_only (a returning user: no argon2id), else as
                   LANE_SLOW */
};

struct route_method {
    const char *method; /* "GET" also serves HEAD */
    enum body_spec body;
    handler_fn fn;
    enum lane lane;
};

/* One path and what each method does there (nginx-style: configuration as data). */
struct route {
    const char *path;
    int api;           /* 1: errors are JSON; 0: HTML pages */
    const char *allow; /* the Allow header for 405 answers */
    struct route_method m[2];
};

static const struct route routes[] = {
    {"/", 0, "GET, HEAD", {{"GET", BODY_NONE, pages_index, LANE_FAST}}},
    {"/login", 0, "POST", {{"POST", BODY_FORM_SMALL, pages_login, LANE_LOGIN}}},
    {"/profile", 0, "GET, HEAD", {{"GET", BODY_NONE, pages_profile, LANE_FAST}}},
    {"/edit",
     0,
     "GET, HEAD, POST",
     {{"GET", BODY_NONE, pages_edit_form, LANE_FAST},
      {"POST", BODY_FORM_UPLOAD, pages_edit_submit, LANE_SLOW}}},
    {"/logout", 0, "POST", {{"POST", BODY_FORM_SMALL, pages_logout, LANE_FAST}}},
    {"/api/v1/login", 1, "POST", {{"POST", BODY_JSON, api_login, LANE_LOGIN}}},
    {"/api/v1/profile",
     1,
     "GET, HEAD, PATCH",
     {{"GET", BODY_NONE, api_profile_get, LANE_FAST},
      {"PATCH", BODY_JSON, api_profile_patch, LANE_FAST}}},
    {"/api/v1/profile/picture", 1, "PUT", {{"PUT", BODY_IMAGE, api_picture_put, LANE_SLOW}}},
    {"/api/v1/logout", 1, "POST", {{"POST", BODY_JSON_OPTIONAL, api_logout, LANE_FAST}}},
    {"/healthz", 0, "GET, HEAD", {{"GET", BODY_NONE, ops_healthz, LANE_FAST}}},
    {"/readyz", 0, "GET, HEAD", {{"GET", BODY_NONE, ops_readyz, LANE_FAST}}},
    {"/metrics", 0, "GET, HEAD", {{"GET", BODY_NONE, ops_metrics, LANE_FAST}}},
};

#define NROUTES (sizeof(routes) / sizeof(routes[0]))
/* Metrics labels beyond the routes table: static files, pictures, the rest. */
#define ROUTE_STATIC NROUTES
#define ROUTE_PICTURES (NROUTES + 1)
#define ROUTE_OTHER (NROUTES + 2)

/* Route labels for web/metrics.h, in the order above (filled at start). */
static const char *route_labels[NROUTES + 3];

#define STATIC_PREFIX "/static/"

struct web_server {
    struct MHD_Daemon *daemon; /* NULL until started */
    struct web_app app;        /* shared with every request */
    int port;                  /* bound TCP port */
    int listen_fd;             /* ours, not libmicrohttpd's (see acceptor_main); -1 = none */
    pthread_t acceptor;        /* accepts and hands connections to the daemon */
    int acceptor_started;      /* 1 once acceptor runs */
    atomic_int stopping;       /* web_server_stop began: accept errors end the acceptor */
    atomic_int connections;    /* handed to the daemon and not yet closed by it */
    int max_connections;       /* the acceptor refuses beyond this (connection_limit()) */
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int is_api_path(const char *path)
{
    return strncmp(path, "/api/", 5) == 0;
}

/* ---- errors outside a route's own handler --------------------------------- */

static enum MHD_Result fail(struct web_request *req, int status, const char *code,
                            const char *message)
{
    if (is_api_path(req->path)) return reply_json_error(req, status, code, message);
    return pages_error(req, status, message);
}

/* ---- body -------------------------------------------------------------------- */

static void body_fail(struct web_request *req, int status, const char *code, const char *msg)
{
    if (req->body_error) return; /* the first problem is the one reported */
    req->body_error = status;
    req->body_error_code = code;
    req->body_error_msg = msg;
    /* Nothing more will be parsed: give the memory back now. */
    html_buf_free(&req->body);
}

static void body_too_large(struct web_request *req)
{
    if (req->body_kind == REQUEST_BODY_IMAGE || req->body_max > SMALL_BODY_MAX)
        body_fail(req, MHD_HTTP_CONTENT_TOO_LARGE, "picture_too_large",
                  req->app->picture_too_large_msg);
    else
        body_fail(req, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large",
                  "The request body is too large.");
}

static void form_failed(struct web_request *req, int st)
{
    switch (st) {
    case FORM_ERR_FILE_TOO_LARGE:
        body_too_large(req);
        break;
    case FORM_ERR_FIELD_TOO_LONG:
        body_fail(req, MHD_HTTP_BAD_REQUEST, "field_too_long",
                  "A form field is longer than 4096 bytes.");
        break;
    case FORM_ERR_TOO_MANY_FIELDS:
        body_fail(req, MHD_HTTP_BAD_REQUEST, "too_many_fields", form_status_message(st));
        break;
    case FORM_ERR_NOMEM:
        body_fail(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal_error",
                  request_error_message(500));
        break;
    default:
        body_fail(req, MHD_HTTP_BAD_REQUEST, "malformed_form", form_status_message(st));
        break;
    }
}

/*
 * Prepares the body of a route with spec: checks the Content-Type and the
 * announced Content-Length (a too-large upload is refused before a byte of
 * it is read) and sets up the parser. Problems land in req->body_error.
 */
static void body_begin(struct web_request *req, enum body_spec spec)
{
    const struct config *cfg = req->app->cfg;
    struct form_limits lim = {TEXT_FIELD_MAX, 0, FORM_FIELDS_MAX};
    const char *ct = request_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
    switch (spec) {
    case BODY_NONE: /* a body is not expected, but read and drop a small one */
        req->body_kind = REQUEST_BODY_NONE;
        req->body_max = SMALL_BODY_MAX;
        break;
    case BODY_FORM_SMALL:
    case BODY_FORM_UPLOAD:
        req->body_kind = REQUEST_BODY_FORM;
        req->body_max = SMALL_BODY_MAX;
        if (spec == BODY_FORM_UPLOAD) {
            lim.file_max = cfg->picture.max_bytes;
            req->body_max = cfg->picture.max_bytes + MULTIPART_OVERHEAD;
        }
        break;
    case BODY_JSON:
    case BODY_JSON_OPTIONAL:
        req->body_kind = REQUEST_BODY_JSON;
        req->body_max = SMALL_BODY_MAX;
        if (spec == BODY_JSON_OPTIONAL && ct == NULL) break;
        if (!request_content_type_is(req, "application/json"))
            body_fail(req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
                      "Send the body with Content-Type: application/json.");
        break;
    case BODY_IMAGE:
        req->body_kind = REQUEST_BODY_IMAGE;
        req->body_max = cfg->picture.max_bytes;
        if (!request_content_type_is(req, "image/"))
            body_fail(req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
                      "Send the picture with Content-Type: image/jpeg, image/png, image/gif or "
                      "image/webp.");
        break;
    case BODY_IGNORE:
        req->body_kind = REQUEST_BODY_IGNORE;
        req->body_max = SMALL_BODY_MAX;
        break;
    }
    if (req->body_error) return;

    const char *cl = request_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl != NULL) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        /* libmicrohttpd already refused a malformed length; be safe anyway */
        if (errno != 0 || end == cl || n > req->body_max) {
            body_too_large(req);
            return;
        }
        /* Buffered bodies get their exact size once instead of growing by doubling. */
        if ((req->body_kind == REQUEST_BODY_JSON || req->body_kind == REQUEST_BODY_IMAGE) &&
            html_buf_reserve(&req->body, (size_t)n) != 0) {
            body_fail(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal_error",
                      request_error_message(500));
            return;
        }
    }
    if (req->body_kind == REQUEST_BODY_FORM) {
        req->form = form_create(req->conn, &lim);
        if (req->form == NULL) {
            if (errno == ENOMEM)
                body_fail(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal_error",
                          request_error_message(500));
            else
                body_fail(req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
                          "Send the form as multipart/form-data or "
                          "application/x-www-form-urlencoded.");
        }
    }
}

/*
 * Takes the next size bytes of the body. Returns MHD_NO to drop the
 * connection when a client keeps streaming long after we refused its body.
 */
static enum MHD_Result body_take(struct web_request *req, const char *data, size_t size)
{
    req->body_seen += size;
    if (req->body_error) {
        /* libmicrohttpd 0.9.75 cannot answer before the body ends, so the
         * rest is read and dropped (never stored); a client that goes on
         * and on is cut off instead of getting its 413. */
        if (req->body_seen <= (uint64_t)req->body_max + DRAIN_MAX) return MHD_YES;
        log_warn(req->rid,
                 "http: closing the connection: body still streaming %llu bytes past "
                 "its limit",
                 (unsigned long long)(req->body_seen - req->body_max));
        return MHD_NO;
    }
    if (req->body_seen > req->body_max) {
        body_too_large(req);
        return MHD_YES;
    }
    switch (req->body_kind) {
    case REQUEST_BODY_FORM: {
        int st = form_feed(req->form, data, size);
        if (st != FORM_OK) form_failed(req, st);
        break;
    }
    case REQUEST_BODY_JSON:
    case REQUEST_BODY_IMAGE:
        /* Streamed (chunked) bodies: grow by doubling, but never past the cap. */
        if (req->body.len + size + 1 > req->body.cap) {
            size_t want = req->body.cap * 2;
            if (want < req->body.len + size) want = req->body.len + size;
            if (want > req->body_max) want = req->body_max;
            (void)html_buf_reserve(&req->body, want);
        }
        if (html_buf_append(&req->body, data, size) != 0)
            body_fail(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal_error",
                      request_error_message(500));
        break;
    default:
        break;
    }
    return MHD_YES;
}

/* Answers with the error the body (or the request line) earned. */
static enum MHD_Result body_error_reply(struct web_request *req)
{
    return fail(req, req->body_error, req->body_error_code, req->body_error_msg);
}

/* ---- routing ------------------------------------------------------------------- */

static const struct route *find_route(const char *path)
{
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(routes[i].path, path) == 0) return &routes[i];
    }
    return NULL;
}

static int method_is(const char *method, const char *want)
{
    if (strcmp(method, want) == 0) return 1;
    return strcmp(want, "GET") == 0 && strcmp(method, "HEAD") == 0;
}

static enum MHD_Result not_found(struct web_request *req)
{
    return fail(req, MHD_HTTP_NOT_FOUND, "not_found", request_error_message(404));
}

/* req->allow names the methods the path does take. */
static enum MHD_Result not_allowed(struct web_request *req)
{
    return fail(req, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed", request_error_message(405));
}

/* GET /static/<name>. */
static enum MHD_Result static_file(struct web_request *req)
{
    const char *name = req->path + strlen(STATIC_PREFIX);
    if (!files_static_name_ok(name)) return not_found(req);
    return files_serve(req, req->app->cfg->web.static_dir, name, FILES_STATIC_CACHE);
}

/* GET <picture.url_prefix><name>. */
static enum MHD_Result picture_file(struct web_request *req)
{
    const char *name = req->path + strlen(req->app->cfg->picture.url_prefix);
    if (!files_picture_name_ok(name)) return not_found(req);
    return files_serve(req, req->app->cfg->picture.dir, name, FILES_PICTURE_CACHE);
}

/* Picks the handler for the request and how its body is read. */
static enum body_spec route_request(struct web_request *req)
{
    const char *prefix = req->app->cfg->picture.url_prefix;
    size_t plen = strlen(prefix);
    handler_fn file = NULL;
    req->metrics_route = ROUTE_OTHER;
    if (strncmp(req->path, STATIC_PREFIX, strlen(STATIC_PREFIX)) == 0) {
        file = static_file;
        req->metrics_route = ROUTE_STATIC;
    } else if (plen > 1 && strncmp(req->path, prefix, plen) == 0) {
        file = picture_file;
        req->metrics_route = ROUTE_PICTURES;
    }
    if (file != NULL) {
        if (method_is(req->method, "GET")) {
            req->handler = file;
            return BODY_NONE;
        }
        req->handler = not_allowed;
        req->allow = "GET, HEAD";
        return BODY_IGNORE;
    }

    const struct route *r = find_route(req->path);
    req->handler = not_found;
    if (r == NULL) return BODY_IGNORE;
    req->metrics_route = (size_t)(r - routes);
    for (size_t i = 0; i < 2 && r->m[i].method != NULL; i++) {
        if (method_is(req->method, r->m[i].method)) {
            req->handler = r->m[i].fn;
            if (r->m[i].lane == LANE_SLOW) {
                req->slow = 1;
                req->pool = req->app->slow_pool;
            } else {
                req->async = 1;
            }
            req->fast_first = r->m[i].lane == LANE_LOGIN;
            return r->m[i].body;
        }
    }
    req->handler = not_allowed;
    req->allow = r->allow;
    return BODY_IGNORE;
}

static enum MHD_Result run(struct web_request *req);

/*
 * First call for a request: only the headers are known. The answer waits
 * for the last call, because libmicrohttpd 0.9.75 closes the connection
 * after any response queued this early (it cannot know the body was
 * consumed); only a body we refuse outright is answered now (through run(),
 * so a page that needs the core still never blocks this thread), and
 * closing is then what we want.
 */
static enum MHD_Result begin(struct web_request *req, const char *version)
{
    /* RFC 9112 3.2: a client MUST send Host in HTTP/1.1; a server MUST answer 400 without it. */
    if (strcmp(version, MHD_HTTP_VERSION_1_1) == 0 && request_header(req, "Host") == NULL) {
        route_request(req);
        body_fail(req, MHD_HTTP_BAD_REQUEST, "missing_host", "The request has no Host header.");
        req->handler = body_error_reply;
        return req->handler(req);
    }
    body_begin(req, route_request(req));
    if (req->body_error) return run(req);
    return MHD_YES;
}

/* Answers a slow request 503 without running it (the connection is suspended). */
static void slow_refuse(struct web_request *req)
{
    req->deferred_result =
        fail(req, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", REQUEST_UNAVAILABLE_MSG);
    MHD_resume_connection(req->conn);
}

/*
 * Runs a slow request's handler on a worker, then hands the connection back.
 * A request that waited in the queue longer than its whole RPC budget is
 * answered 503 instead: its client has likely given up (nginx does after
 * 30 s), and a burst of logins must not keep the hashers busy for minutes.
 */
static void slow_job(void *arg)
{
    struct web_request *req = arg;
    uint64_t waited_us = now_us() - req->queued_us;
    if (waited_us > (uint64_t)req->app->cfg->rpc.slow_io_timeout_ms * 1000u) {
        log_warn(req->rid, "http: slow request waited %llu ms for a worker, answering 503",
                 (unsigned long long)(waited_us / 1000u));
        slow_refuse(req);
        return;
    }
    req->deferred_result = req->handler(req);
    MHD_resume_connection(req->conn);
}

/* workers_stop's verdict on a slow request still queued at shutdown. */
static void slow_cancel(void *arg)
{
    slow_refuse(arg);
}

/* Forgets what a dropped run of the handler set for its reply (web/request.h). */
static void reply_state_reset(struct web_request *req)
{
    req->rpc_calls = 0; /* the answering RPC carries the request's id, as the logs expect */
    free(req->set_cookie);
    free(req->set_csrf_cookie);
    req->set_cookie = req->set_csrf_cookie = NULL;
    req->allow = NULL;
}

/* The reactor's answer to a fast request's RPC (rpc/async.h): on the reactor thread. */
static void async_done(void *arg, int status, Rpc__Response *resp)
{
    struct web_request *req = arg;
    req->async_rc = status;
    req->async_resp = resp;
    /* From here on req belongs to its libmicrohttpd thread again. */
    MHD_resume_connection(req->conn);
}

/* Sends the RPC the handler packed; the handler runs again once it is answered. */
static enum MHD_Result async_send(struct web_request *req)
{
    struct rpc_async_call *call = req->async_call;
    req->async_call = NULL;
    req->async_state = REQUEST_ASYNC_SUBMITTED;
    /* Suspend before submitting: the answer may come at once. */
    MHD_suspend_connection(req->conn);
    int rc = rpc_async_submit(req->app->async, call, async_done, req);
    if (rc != RPC_OK) async_done(req, rc, NULL); /* stopping: the replay answers 503 */
    return MHD_YES;
}

/*
 * Runs the handler and sends the request on to where it continues: the
 * RPC it packed to the reactor (fast lane), or the whole request to a
 * worker (slow lane, and a login the core could not answer without
 * argon2id).
 */
static enum MHD_Result run(struct web_request *req)
{
    if (!req->slow || req->body_error) {
        /* A refused body is answered inline, also on a slow route; the page that
         * explains it may need a profile read, which takes the fast lane too. */
        if (req->body_error && req->slow && req->async_state == REQUEST_ASYNC_NONE) {
            req->async = 1;
            req->pool = req->app->pool;
        }
        enum MHD_Result q = req->handler(req);
        if (req->async_state == REQUEST_ASYNC_PREPARED) return async_send(req);
        if (!req->retry_slow) return q;
        /* A login the core could not answer without argon2id: from the top,
         * on the slow lane (the handler had no effect: its reply was dropped). */
        req->retry_slow = 0;
        req->slow = 1;
        req->async = 0;
        req->pool = req->app->slow_pool;
        reply_state_reset(req);
    }
    /* Suspend before queueing: the worker may resume it at once. */
    MHD_suspend_connection(req->conn);
    req->deferred = 1;
    req->queued_us = now_us();
    if (workers_submit(req->app->workers, slow_job, req) != 0) {
        /* At most one line a second however many are refused: an overload must
         * not also fill the disk. */
        static _Atomic long last_warned_s;
        long now_s = (long)(now_us() / 1000000u);
        long last = atomic_load(&last_warned_s);
        if (now_s != last && atomic_compare_exchange_strong(&last_warned_s, &last, now_s))
            log_warn(req->rid, "http: slow-request queue full (%d waiting), answering 503",
                     SLOW_QUEUE_MAX);
        req->deferred_result =
            fail(req, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", REQUEST_UNAVAILABLE_MSG);
        MHD_resume_connection(req->conn);
    }
    return MHD_YES;
}

/* Last call: the whole body has arrived. */
static enum MHD_Result finish(struct web_request *req)
{
    if (req->form != NULL && !req->body_error) {
        int st = form_finish(req->form);
        if (st != FORM_OK) form_failed(req, st);
    }
    return run(req);
}

/* Called again after the reactor resumed the connection: the replay. */
static enum MHD_Result async_resume(struct web_request *req)
{
    req->async_state = REQUEST_ASYNC_ANSWERED;
    reply_state_reset(req);
    return run(req);
}

/* Called again after a slow request's worker resumed the connection. */
static enum MHD_Result finish_deferred(struct web_request *req)
{
    struct MHD_Response *r = req->deferred_response;
    req->deferred_response = NULL;
    if (r == NULL || req->deferred_result != MHD_YES) {
        if (r != NULL) MHD_destroy_response(r);
        if (req->deferred_result == MHD_YES)
            log_error(req->rid, "http: handler for %s queued no response", req->path);
        return MHD_NO;
    }
    enum MHD_Result q = MHD_queue_response(req->conn, (unsigned int)req->deferred_status, r);
    MHD_destroy_response(r);
    if (q == MHD_YES) req->status = req->deferred_status;
    return q;
}

static struct web_request *request_new(struct web_app *app, struct MHD_Connection *conn,
                                       const char *url, const char *method)
{
    struct web_request *req = calloc(1, sizeof(*req));
    if (req == NULL) return NULL;
    req->path = strdup(url);
    if (req->path == NULL) {
        free(req);
        return NULL;
    }
    req->app = app;
    req->pool = app->pool;
    req->conn = conn;
    req->method = method;
    snprintf(req->method_copy, sizeof(req->method_copy), "%s", method);
    req->rid = rpc_next_request_id();
    req->start_us = now_us();
    html_buf_init(&req->body);
    request_identify(req);
    atomic_fetch_add(&app->active, 1);
    return req;
}

static void request_free(struct web_request *req)
{
    atomic_fetch_sub(&req->app->active, 1);
    if (req->deferred_response != NULL) MHD_destroy_response(req->deferred_response);
    rpc_async_call_free(req->async_call);
    rpc_call_free(req->async_resp);
    form_destroy(req->form);
    html_buf_free(&req->body);
    json_decref(req->body_json);
    free(req->set_cookie);
    free(req->set_csrf_cookie);
    free(req->path);
    free(req);
}

/* A handler's last word: something is queued, or on its way (suspended). */
static enum MHD_Result checked(struct web_request *req, enum MHD_Result r)
{
    if (r == MHD_YES && req->status == 0 && !req->deferred &&
        req->async_state != REQUEST_ASYNC_SUBMITTED) {
        log_error(req->rid, "http: handler for %s queued no response", req->path);
        return MHD_NO;
    }
    return r;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
    struct web_request *req = *con_cls;
    if (req == NULL) {
        req = request_new(cls, conn, url, method);
        if (req == NULL) {
            log_error(0, "http: out of memory for a new request");
            return MHD_NO;
        }
        *con_cls = req;
        if (atomic_load(&req->app->stopping)) {
            /* Draining: start nothing new (a write begun now could outlive the drain and be
             * answered 503 after all); the answer closes the connection (reply_queue). */
            route_request(req);
            return fail(req, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", REQUEST_UNAVAILABLE_MSG);
        }
        return begin(req, version);
    }
    if (req->async_state == REQUEST_ASYNC_SUBMITTED) return checked(req, async_resume(req));
    if (req->deferred) return finish_deferred(req);
    if (req->status != 0) { /* answered already; drop whatever still arrives */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        enum MHD_Result r = body_take(req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return r;
    }
    return checked(req, finish(req));
}

static const char *termination_str(enum MHD_RequestTerminationCode toe)
{
    switch (toe) {
    case MHD_REQUEST_TERMINATED_COMPLETED_OK:
        return "ok";
    case MHD_REQUEST_TERMINATED_WITH_ERROR:
        return "error";
    case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED:
        return "timeout";
    case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN:
        return "shutdown";
    case MHD_REQUEST_TERMINATED_READ_ERROR:
        return "read_error";
    case MHD_REQUEST_TERMINATED_CLIENT_ABORT:
        return "client_abort";
    default:
        return "unknown";
    }
}

/* Called by libmicrohttpd once per request, after the response went out (or failed). */
static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    struct web_request *req = *con_cls;
    char path[512];
    (void)cls;
    (void)conn;
    if (req == NULL) return;
    *con_cls = NULL;
    uint64_t duration_us = now_us() - req->start_us;
    web_metrics_observe(req->app->metrics, req->metrics_route, req->status, duration_us);
    log_info(req->rid, "access method=%s path=%s status=%d duration_us=%llu ip=%s%s%s%s%s",
             req->method_copy, log_quote(path, sizeof(path), req->path, strlen(req->path)),
             req->status, (unsigned long long)duration_us, req->client_ip,
             req->request_tag[0] ? " tag=" : "", req->request_tag,
             toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " end=",
             toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : termination_str(toe));
    request_free(req);
}

/*
 * Percent-decodes a URL path or argument in place (libmicrohttpd's own
 * decoder), then turns any decoded NUL into DEL: C strings would otherwise
 * end at "%00" and "/static/a.css%00.png" would be served as a.css. DEL is
 * refused by every name check, so such a path is simply not found.
 * Returns the decoded length.
 */
static size_t unescape_no_nul(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    size_t n = MHD_http_unescape(s);
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\0') s[i] = 0x7f;
    return n;
}

/* libmicrohttpd's lines in the current second, and those not written since the last report. */
static _Atomic long mhd_log_second;
static atomic_int mhd_log_lines, mhd_log_dropped;

/*
 * libmicrohttpd's messages, at most MHD_LOG_PER_SECOND lines a second: it
 * writes one per connection a client abandons ("closed by remote side with
 * incomplete request"), and 4,096 of those from one burst of clients must
 * not fill the log; how many were left out is said with the next line.
 */
static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    (void)cls;
    long now_s = (long)(now_us() / 1000000u);
    long second = atomic_load(&mhd_log_second);
    if (now_s != second && atomic_compare_exchange_strong(&mhd_log_second, &second, now_s)) {
        atomic_store(&mhd_log_lines, 0);
        int dropped = atomic_exchange(&mhd_log_dropped, 0);
        if (dropped > 0)
            log_warn(0, "libmicrohttpd: %d more messages not logged (at most %d a second)", dropped,
                     MHD_LOG_PER_SECOND);
    }
    if (atomic_fetch_add(&mhd_log_lines, 1) >= MHD_LOG_PER_SECOND) {
        atomic_fetch_add(&mhd_log_dropped, 1);
        return;
    }
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    log_warn(0, "libmicrohttpd: %s", msg);
}

static unsigned int connection_limit(void)
{
    struct rlimit rl;
    unsigned int limit = CONNECTION_LIMIT_MAX;
    /* Leave descriptors for RPC connections, picture files and the listener. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < (rlim_t)limit + 128)
        limit = rl.rlim_cur > 256 ? (unsigned int)(rl.rlim_cur - 128) : 64;
    return limit;
}

static void format_size(char *out, size_t out_size, size_t bytes)
{
    if (bytes >= 1024 * 1024 && bytes % (1024 * 1024) == 0)
        snprintf(out, out_size, "%zu MiB", bytes / (1024 * 1024));
    else
        snprintf(out, out_size, "%zu KiB", (bytes + 1023) / 1024);
}

/* libmicrohttpd's connection notifications: counts the connections it holds. */
static void connection_event(void *cls, struct MHD_Connection *conn, void **socket_context,
                             enum MHD_ConnectionNotificationCode toe)
{
    (void)conn;
    (void)socket_context;
    struct web_server *srv = cls;
    if (toe == MHD_CONNECTION_NOTIFY_CLOSED) atomic_fetch_sub(&srv->connections, 1);
}

/* Answers a connection beyond the limit with a bare 503 (best effort: the
 * socket is non-blocking and this fits any send buffer) and closes it. */
static void refuse_connection(int fd)
{
    static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                               "Retry-After: 1\r\nContent-Length: 0\r\n\r\n";
    (void)send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL);
    close(fd);
}

/*
 * The accept loop. libmicrohttpd's poll() mode accepts one connection per
 * thread per pass over its connections, and a pass takes as long as the
 * RPCs of the requests it serves: 2,000 connections opened at once waited
 * up to 10 s to be accepted (nickname edits), so a load test's first
 * requests timed out. Here every connection is accepted at once and handed
 * to the thread (socket mod threads) with room, via MHD_add_connection.
 */
static void *acceptor_main(void *arg)
{
    struct web_server *srv = arg;
    long last_warned_s = 0;

    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(srv->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (atomic_load(&srv->stopping)) break; /* the listening socket was shut down */
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
            long now_s = (long)(now_us() / 1000000u);
            if (now_s != last_warned_s) /* one line a second at most: EMFILE under attack */
                log_error(0, "web: accept failed: %s", strerror(errno));
            last_warned_s = now_s;
            struct timespec ts = {0, 10 * 1000 * 1000}; /* EMFILE, ENOBUFS: let some close */
            nanosleep(&ts, NULL);
            continue;
        }
        /* Never let the daemon refuse a connection itself: 0.9.75 then leaves
         * a worker's mutex locked and that thread serves nothing again (found
         * by a fresh-user trial with 4,500 connections; the daemon's own limit
         * is set higher than this one). */
        if (atomic_load(&srv->connections) >= srv->max_connections) {
            refuse_connection(fd);
            long now_s = (long)(now_us() / 1000000u);
            if (now_s != last_warned_s)
                log_warn(0, "web: %d connections open, the limit: refusing new ones with 503",
                         srv->max_connections);
            last_warned_s = now_s;
            continue;
        }
        /* The daemon owns fd now, and closes it itself when it cannot take it. */
        atomic_fetch_add(&srv->connections, 1);
        if (MHD_add_connection(srv->daemon, fd, (struct sockaddr *)&ss, sl) != MHD_YES) {
            atomic_fetch_sub(&srv->connections, 1);
            long now_s = (long)(now_us() / 1000000u);
            if (now_s != last_warned_s)
                log_warn(0, "web: connection refused by the HTTP daemon: %s", strerror(errno));
            last_warned_s = now_s;
        }
    }
    return NULL;
}

struct web_server *web_server_start(const struct config *cfg)
{
    struct addrinfo hints, *ai = NULL;
    char port[16], limit[48];
    struct web_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        log_error(0, "web: out of memory");
        return NULL;
    }
    srv->app.cfg = cfg;
    srv->listen_fd = -1;
    atomic_init(&srv->stopping, 0);
    atomic_init(&srv->connections, 0);
    srv->max_connections = (int)connection_limit();
    atomic_init(&srv->app.active, 0);
    atomic_init(&srv->app.stopping, 0);
    format_size(limit, sizeof(limit), cfg->picture.max_bytes);
    snprintf(srv->app.picture_too_large_msg, sizeof(srv->app.picture_too_large_msg),
             "The picture is larger than %s.", limit);
    if (request_proxies_parse(&srv->app, cfg->web.trusted_proxies) != 0) goto fail;
    if (csrf_key_init(&srv->app.csrf, cfg->csrf_secret_len ? cfg->csrf_secret : NULL,
                      cfg->csrf_secret_len) != 0) {
        log_error(0, "web: cannot set up the CSRF key (libsodium)");
        goto fail;
    }
    if (cfg->csrf_secret_len == 0)
        log_warn(0,
                 "web: no CSRF_SECRET in %s or the environment: using a random key, so forms "
                 "rendered before a restart or by another web process are refused once (403)",
                 cfg->web.env_file);
    for (size_t i = 0; i < NROUTES; i++)
        route_labels[i] = routes[i].path;
    route_labels[ROUTE_STATIC] = "static";
    route_labels[ROUTE_PICTURES] = "pictures";
    route_labels[ROUTE_OTHER] = "other";
    srv->app.metrics = web_metrics_create(route_labels, NROUTES + 3);
    if (srv->app.metrics == NULL) {
        log_error(0, "web: cannot create the metrics: %s", strerror(errno));
        goto fail;
    }
    srv->app.pages = pages_load(cfg->web.templates_dir);
    if (srv->app.pages == NULL) {
        log_error(0, "web: cannot load the templates from %s", cfg->web.templates_dir);
        goto fail;
    }
    srv->app.async = rpc_async_create(&cfg->rpc);
    if (srv->app.async == NULL) {
        log_error(0, "web: cannot start the RPC reactor: %s", strerror(errno));
        goto fail;
    }
    srv->app.pool = rpc_pool_create(&cfg->rpc);
    struct config_rpc slow_rpc = cfg->rpc;
    slow_rpc.pool_size = cfg->rpc.slow_pool_size;
    slow_rpc.io_timeout_ms = cfg->rpc.slow_io_timeout_ms;
    srv->app.slow_pool = rpc_pool_create(&slow_rpc);
    if (srv->app.pool == NULL || srv->app.slow_pool == NULL) {
        log_error(0, "web: cannot create the RPC pools: %s", strerror(errno));
        goto fail;
    }
    /* One worker per slow-lane connection: a worker never waits for the pool. */
    srv->app.workers = workers_create(cfg->rpc.slow_pool_size, SLOW_QUEUE_MAX);
    if (srv->app.workers == NULL) {
        log_error(0, "web: cannot start the slow-request workers: %s", strerror(errno));
        goto fail;
    }

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%d", cfg->web.port);
    int gai = getaddrinfo(cfg->web.host, port, &hints, &ai);
    if (gai != 0 || ai == NULL) {
        log_error(0, "web: cannot resolve listen address %s: %s", cfg->web.host, gai_strerror(gai));
        goto fail;
    }
    srv->listen_fd = net_listen(ai, 4096);
    if (srv->listen_fd < 0) {
        log_error(0, "web: cannot listen on %s:%d: %s (address in use, or not a local address?)",
                  cfg->web.host, cfg->web.port, strerror(errno));
        freeaddrinfo(ai);
        goto fail;
    }
    /* poll(), not epoll: with 0.9.75's (edge-triggered) epoll mode, connections
     * the client closed while their request was being answered were never
     * noticed: each 2,000-connection load run that ended mid-request left
     * ~1,900 sockets open, and once every thread's share of the connection
     * limit was taken the server accepted nothing more (test_concurrency
     * ConnectionChurnTest). poll() over a thread's ~125 connections at
     * 2,000 costs the same (docs/performance.md). No listening socket of its
     * own: acceptor_main accepts for it. */
    unsigned int flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC |
                         MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    // clang-format off
    /* one option per line */
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, handle, &srv->app,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL, /* first, so every message goes to our log */
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)cfg->web.threads,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)cfg->web.connection_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape_no_nul, NULL,
        /* a quarter above the acceptor's: see acceptor_main */
        MHD_OPTION_CONNECTION_LIMIT, connection_limit() + connection_limit() / 4,
        MHD_OPTION_NOTIFY_CONNECTION, connection_event, srv,
        MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
        MHD_OPTION_END);
    // clang-format on
    freeaddrinfo(ai);
    if (srv->daemon == NULL) {
        log_error(0, "web: cannot start the HTTP daemon (libmicrohttpd) on %s:%d", cfg->web.host,
                  cfg->web.port);
        goto fail;
    }
    int bound = net_local_port(srv->listen_fd);
    srv->port = bound > 0 ? bound : cfg->web.port;
    int err = pthread_create(&srv->acceptor, NULL, acceptor_main, srv);
    if (err != 0) {
        log_error(0, "web: cannot start the accept thread: %s", strerror(err));
        goto fail;
    }
    srv->acceptor_started = 1;
    log_info(0, "web: listening on http://%s:%d threads=%d core=%s:%d", cfg->web.host, srv->port,
             cfg->web.threads, cfg->rpc.core_host, cfg->rpc.core_port);
    return srv;
fail:
    web_server_stop(srv, 0);
    return NULL;
}

int web_server_port(const struct web_server *srv)
{
    return srv->port;
}

/* Waits up to ms milliseconds for the requests in progress to complete. */
static void wait_requests(struct web_app *app, int ms)
{
    uint64_t deadline = now_us() + (uint64_t)(ms > 0 ? ms : 0) * 1000u;
    while (atomic_load(&app->active) > 0 && now_us() < deadline) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

void web_server_stop(struct web_server *srv, int drain_ms)
{
    if (srv == NULL) return;
    /* Refuse new connections at once instead of letting the kernel queue
     * them in the backlog until the process exits (they would then be
     * reset, and a load balancer could not tell that from a failure).
     * shutdown() also wakes the acceptor's accept() (EINVAL). */
    atomic_store(&srv->stopping, 1);
    atomic_store(&srv->app.stopping, 1);
    if (srv->listen_fd >= 0 && shutdown(srv->listen_fd, SHUT_RDWR) != 0)
        log_warn(0, "web: shutdown of the listening socket: %s", strerror(errno));
    if (srv->acceptor_started) pthread_join(srv->acceptor, NULL);
    if (srv->daemon != NULL) {
        /* Idle keep-alive connections are not waited for: only requests in progress. */
        wait_requests(&srv->app, drain_ms);
        /* Fast requests still waiting for the core are answered 503 and slow ones on a
         * worker finish (bounded by io_timeout_ms) before the daemon goes: stopping it
         * under a suspended connection is not allowed. */
        rpc_async_stop(srv->app.async);
        /* queued slow requests are answered 503 (a burst of logins would otherwise keep
         * the process for minutes), running ones finish; later ones are answered 503 */
        workers_stop(srv->app.workers, slow_cancel);
        /* Every request has its answer now; let the resumed ones send it (stopping the
         * daemon closes their connections at once). Bounded: a client may not read. */
        wait_requests(&srv->app, ANSWER_FLUSH_MS);
        MHD_stop_daemon(srv->daemon);
    }
    if (srv->listen_fd >= 0) close(srv->listen_fd);
    workers_destroy(srv->app.workers);
    rpc_async_destroy(srv->app.async);
    if (srv->app.pool != NULL) rpc_pool_destroy(srv->app.pool);
    if (srv->app.slow_pool != NULL) rpc_pool_destroy(srv->app.slow_pool);
    pages_free(srv->app.pages);
    sodium_memzero(&srv->app.csrf, sizeof(srv->app.csrf));
    web_metrics_free(srv->app.metrics);
    free(srv->app.proxies);
    free(srv);
}
