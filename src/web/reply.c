/* reply: see reply.h. */
#include "web/reply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "web/cookie.h"

static const char *const security_headers[][2] = {
    {"X-Content-Type-Options", "nosniff"},
    {"Referrer-Policy", "same-origin"},
    {"X-Frame-Options", "DENY"},
    /* Scripts and styles only from our files (no inline code, no eval); previews of a chosen
     * file are blob: URLs; forms post only to us. */
    {"Content-Security-Policy",
     "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
     "form-action 'self'; frame-ancestors 'none'"},
};

/* 1 when whatever reply the handler builds now is thrown away by reply_queue:
 * its answer to STATUS_WOULD_BLOCK (the slow lane answers instead), or to an
 * RPC only packed so far (the handler runs again with the answer). Every
 * fast-lane request passes here once with its 503 not yet built: callgrind
 * counted ~14 % of the web's instructions per profile read in building it. */
static int reply_dropped(const struct web_request *req)
{
    return req->retry_slow || req->async_state == REQUEST_ASYNC_PREPARED;
}

enum MHD_Result reply_queue(struct web_request *req, int status, struct MHD_Response *r,
                            const char *cache_control)
{
    char rid[24];
    int ok = 1;
    if (r == NULL) {
        log_error(req->rid, "reply: cannot create a response (out of memory)");
        return MHD_NO;
    }
    for (size_t i = 0; i < sizeof(security_headers) / sizeof(security_headers[0]); i++)
        ok &= MHD_add_response_header(r, security_headers[i][0], security_headers[i][1]) == MHD_YES;
    /* The id the client (nginx) gave us, so its log and ours share it; else ours. */
    snprintf(rid, sizeof(rid), "%llu", (unsigned long long)req->rid);
    ok &= MHD_add_response_header(r, "X-Request-Id",
                                  req->request_tag[0] ? req->request_tag : rid) == MHD_YES;
    if (cache_control != NULL)
        ok &= MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, cache_control) == MHD_YES;
    if (req->set_cookie != NULL)
        ok &= MHD_add_response_header(r, MHD_HTTP_HEADER_SET_COOKIE, req->set_cookie) == MHD_YES;
    if (req->set_csrf_cookie != NULL)
        ok &=
            MHD_add_response_header(r, MHD_HTTP_HEADER_SET_COOKIE, req->set_csrf_cookie) == MHD_YES;
    if (req->allow != NULL)
        ok &= MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, req->allow) == MHD_YES;
    /* Shutting down: the client's next request must go to a new connection (another process,
     * or this one after its restart), never start here while we drain (RFC 9112 9.6). */
    if (atomic_load(&req->app->stopping))
        ok &= MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close") == MHD_YES;
    /* RFC 9110 10.2.3: tell clients when an outage answer is worth retrying. */
    if (status == MHD_HTTP_SERVICE_UNAVAILABLE)
        ok &= MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1") == MHD_YES;
    if (!ok) {
        /* A response without its cookie or security headers must not go out. */
        log_error(req->rid, "reply: cannot add response headers");
        MHD_destroy_response(r);
        return MHD_NO;
    }
    if (reply_dropped(req)) {
        MHD_destroy_response(r);
        return MHD_YES;
    }
    if (req->deferred) {
        /* On a worker thread: the libmicrohttpd thread queues it after resuming. */
        if (req->deferred_response != NULL) MHD_destroy_response(req->deferred_response);
        req->deferred_response = r;
        req->deferred_status = status;
        return MHD_YES;
    }
    enum MHD_Result q = MHD_queue_response(req->conn, (unsigned int)status, r);
    MHD_destroy_response(r);
    if (q == MHD_YES) req->status = status;
    return q;
}

enum MHD_Result reply_bytes(struct web_request *req, int status, const char *content_type,
                            char *body, size_t len)
{
    struct MHD_Response *r;
    if (reply_dropped(req)) {
        free(body);
        return MHD_YES;
    }
    if (body == NULL)
        r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    else
        r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(body);
        return reply_queue(req, status, NULL, NULL);
    }
    if (content_type != NULL &&
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    return reply_queue(req, status, r, REPLY_NO_STORE);
}

enum MHD_Result reply_html(struct web_request *req, int status, struct html_buf *page)
{
    size_t len;
    char *body = html_buf_take(page, &len);
    if (reply_dropped(req)) {
        free(body);
        return MHD_YES;
    }
    if (body == NULL) {
        static const char oom[] = "<!DOCTYPE html><title>Error</title><p>Internal error.</p>";
        char *copy = strdup(oom);
        log_error(req->rid, "reply: page rendering failed");
        return reply_bytes(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/html; charset=utf-8", copy,
                           copy ? strlen(copy) : 0);
    }
    return reply_bytes(req, status, "text/html; charset=utf-8", body, len);
}

enum MHD_Result reply_json(struct web_request *req, int status, json_t *obj)
{
    if (reply_dropped(req)) {
        json_decref(obj);
        return MHD_YES;
    }
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (text == NULL) {
        static const char oom[] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"Internal error.\"}}";
        char *copy = strdup(oom);
        log_error(req->rid, "reply: JSON encoding failed");
        return reply_bytes(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "application/json", copy,
                           copy ? strlen(copy) : 0);
    }
    return reply_bytes(req, status, "application/json", text, strlen(text));
}

enum MHD_Result reply_json_error(struct web_request *req, int status, const char *code,
                                 const char *message)
{
    if (reply_dropped(req)) return MHD_YES;
    return reply_json(req, status,
                      json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message));
}

enum MHD_Result reply_empty(struct web_request *req, int status)
{
    return reply_bytes(req, status, NULL, NULL, 0);
}

enum MHD_Result reply_redirect(struct web_request *req, const char *location)
{
    static const char body[] = "See Other\n";
    if (reply_dropped(req)) return MHD_YES;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(sizeof(body) - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (r == NULL) return reply_queue(req, MHD_HTTP_SEE_OTHER, NULL, NULL);
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, location) != MHD_YES ||
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8") !=
            MHD_YES) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    return reply_queue(req, MHD_HTTP_SEE_OTHER, r, REPLY_NO_STORE);
}

int reply_set_session_cookie(struct web_request *req, const char *token, long ttl_s)
{
    int secure = req->app->cfg->web.cookie_secure;
    char *c = token ? cookie_session_set(token, ttl_s, secure) : cookie_session_clear(secure);
    free(req->set_cookie);
    req->set_cookie = c;
    if (c == NULL) {
        log_error(req->rid, "reply: cannot build the session cookie");
        return -1;
    }
    return 0;
}
