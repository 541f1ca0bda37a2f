/*
 * reply: building and queueing HTTP responses with the headers every answer
 * of this server carries.
 *
 * Every response gets the security headers (X-Content-Type-Options: nosniff,
 * Referrer-Policy: same-origin, X-Frame-Options: DENY and a
 * Content-Security-Policy that allows only our own resources and no
 * framing), an X-Request-Id (the client's sane X-Request-Id, else our
 * request id), the Set-Cookie and Allow
 * values the handler left in the request, and a Cache-Control. Dynamic
 * answers are "no-store": they depend on the session cookie, so no cache
 * may keep them. Each function records the status in req->status for the
 * access log and returns libmicrohttpd's verdict (MHD_NO closes the
 * connection, e.g. after an allocation failure).
 */
#ifndef PROFILE_WEB_REPLY_H
#define PROFILE_WEB_REPLY_H

#include <jansson.h>
#include <microhttpd.h>
#include <stddef.h>

#include "web/html.h"
#include "web/request.h"

#define REPLY_NO_STORE "no-store"

/*
 * Queues response r (consumed: destroyed here whatever happens) with the
 * common headers and cache_control (NULL: no Cache-Control header). On a
 * slow-lane worker (req->deferred) the response is kept in the request and
 * queued by the libmicrohttpd thread once the connection resumes.
 */
enum MHD_Result reply_queue(struct web_request *req, int status, struct MHD_Response *r,
                            const char *cache_control);

/*
 * Queues body (heap, len bytes; ownership passes to libmicrohttpd, which
 * frees it after sending) as content_type with Cache-Control: no-store.
 * body NULL with len 0 sends an empty body.
 */
enum MHD_Result reply_bytes(struct web_request *req, int status, const char *content_type,
                            char *body, size_t len);

/*
 * Queues page as text/html; charset=utf-8 (page's data is taken; page is
 * left empty). When page failed to grow, answers 500 instead.
 */
enum MHD_Result reply_html(struct web_request *req, int status, struct html_buf *page);

/*
 * Queues obj serialised compactly as application/json (obj's reference is
 * stolen; NULL answers 500, so a failed json_pack needs no extra check).
 */
enum MHD_Result reply_json(struct web_request *req, int status, json_t *obj);

/*
 * Queues {"error": {"code": code, "message": message}} with status.
 * code is snake_case; message is a sentence safe to show to a user.
 */
enum MHD_Result reply_json_error(struct web_request *req, int status, const char *code,
                                 const char *message);

/* Queues an empty response with status (e.g. 204). */
enum MHD_Result reply_empty(struct web_request *req, int status);

/*
 * Queues 303 See Other to location (a path of this site, e.g. "/profile")
 * with a short text body for clients that do not follow redirects.
 */
enum MHD_Result reply_redirect(struct web_request *req, const char *location);

/*
 * Replaces req->set_cookie with a Set-Cookie storing token for ttl_s
 * seconds (token NULL: one that clears the session cookie). Returns 0, or
 * -1 when the token is not a valid cookie value or memory ran out (no
 * cookie is then sent).
 */
int reply_set_session_cookie(struct web_request *req, const char *token, long ttl_s);

#endif
