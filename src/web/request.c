/* request: see request.h. */
#include "web/request.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "common/log.h"
#include "rpc/message.h"
#include "web/cookie.h"

/* Parses an IPv4 or IPv6 literal into *out (IPv4 as ::ffff:a.b.c.d). Returns 1 or 0. */
static int parse_ip(const char *s, size_t len, struct in6_addr *out)
{
    char tmp[REQUEST_IP_MAX];
    if (len == 0 || len >= sizeof(tmp)) return 0;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    struct in_addr v4;
    if (inet_pton(AF_INET, tmp, &v4) == 1) {
        memset(out, 0, sizeof(*out));
        out->s6_addr[10] = 0xff;
        out->s6_addr[11] = 0xff;
        memcpy(&out->s6_addr[12], &v4, 4);
        return 1;
    }
    return inet_pton(AF_INET6, tmp, out) == 1;
}

static void ip_to_string(const struct in6_addr *a, char *out, size_t out_size)
{
    const char *ok;
    if (IN6_IS_ADDR_V4MAPPED(a))
        ok = inet_ntop(AF_INET, &a->s6_addr[12], out, (socklen_t)out_size);
    else
        ok = inet_ntop(AF_INET6, a, out, (socklen_t)out_size);
    if (ok == NULL) snprintf(out, out_size, "-");
}

static int is_trusted(const struct web_app *app, const struct in6_addr *a)
{
    for (size_t i = 0; i < app->nproxies; i++) {
        if (memcmp(&app->proxies[i], a, sizeof(*a)) == 0) return 1;
    }
    return 0;
}

static int is_list_space(char c)
{
    return c == ' ' || c == '\t';
}

int request_proxies_parse(struct web_app *app, const char *list)
{
    app->proxies = NULL;
    app->nproxies = 0;
    size_t cap = 0;
    const char *p = list;
    while (*p != '\0') {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        const char *s = p;
        while (s < end && is_list_space(*s))
            s++;
        const char *e = end;
        while (e > s && is_list_space(e[-1]))
            e--;
        p = comma ? comma + 1 : end;
        if (s == e) continue;
        struct in6_addr a;
        if (!parse_ip(s, (size_t)(e - s), &a)) {
            fprintf(stderr, "config: [web] trusted_proxies: '%.*s' is not an IP address\n",
                    (int)(e - s), s);
            goto fail;
        }
        if (app->nproxies == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            struct in6_addr *n = realloc(app->proxies, ncap * sizeof(*n));
            if (n == NULL) {
                fprintf(stderr, "config: out of memory\n");
                goto fail;
            }
            app->proxies = n;
            cap = ncap;
        }
        app->proxies[app->nproxies++] = a;
    }
    return 0;
fail:
    free(app->proxies);
    app->proxies = NULL;
    app->nproxies = 0;
    return -1;
}

/* Peer address of the connection, or 0 when unknown. */
static int peer_address(struct MHD_Connection *conn, struct in6_addr *out)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci == NULL || ci->client_addr == NULL) return 0;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        memset(out, 0, sizeof(*out));
        out->s6_addr[10] = 0xff;
        out->s6_addr[11] = 0xff;
        memcpy(&out->s6_addr[12], &in->sin_addr, 4);
        return 1;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        *out = in6->sin6_addr;
        return 1;
    }
    return 0;
}

/*
 * Walks X-Forwarded-For from the right: each hop appended the address it
 * saw, so the first address from the right that is not one of our proxies
 * is the one the outermost trusted proxy saw. Returns 1 and sets *client,
 * or 0 when the header is missing or the entry there is not an address.
 */
static int forwarded_client(const struct web_app *app, const char *xff, struct in6_addr *client)
{
    size_t end = strlen(xff);
    while (end > 0) {
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',')
            start--;
        size_t s = start, e = end;
        while (s < e && is_list_space(xff[s]))
            s++;
        while (e > s && is_list_space(xff[e - 1]))
            e--;
        struct in6_addr a;
        if (!parse_ip(xff + s, e - s, &a)) return 0;
        *client = a;
        if (!is_trusted(app, &a)) return 1;
        end = start > 0 ? start - 1 : 0;
    }
    return 1; /* every hop is a proxy of ours: the leftmost one is the best we know */
}

static int tag_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > REQUEST_TAG_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-'))
            return 0;
    }
    return 1;
}

void request_identify(struct web_request *req)
{
    struct in6_addr peer;
    snprintf(req->client_ip, sizeof(req->client_ip), "-");
    if (peer_address(req->conn, &peer)) {
        struct in6_addr client = peer;
        const char *xff = request_header(req, "X-Forwarded-For");
        if (xff != NULL && is_trusted(req->app, &peer)) {
            struct in6_addr fwd;
            if (forwarded_client(req->app, xff, &fwd)) client = fwd;
        }
        ip_to_string(&client, req->client_ip, sizeof(req->client_ip));
    }
    const char *tag = request_header(req, "X-Request-Id");
    req->request_tag[0] = '\0';
    if (tag != NULL && tag_ok(tag)) snprintf(req->request_tag, sizeof(req->request_tag), "%s", tag);
}

int request_peer_is_loopback(const struct web_request *req)
{
    struct in6_addr a;
    if (!peer_address(req->conn, &a)) return 0;
    if (IN6_IS_ADDR_LOOPBACK(&a)) return 1;
    return IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127;
}

const char *request_header(const struct web_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

int request_content_type_is(const struct web_request *req, const char *type)
{
    const char *ct = request_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (ct == NULL) return 0;
    while (is_list_space(*ct))
        ct++;
    size_t n = strcspn(ct, ";");
    while (n > 0 && is_list_space(ct[n - 1]))
        n--;
    size_t tlen = strlen(type);
    if (tlen > 0 && type[tlen - 1] == '/') { /* any subtype, which must be non-empty */
        if (n <= tlen || strncasecmp(ct, type, tlen) != 0) return 0;
        return memchr(ct + tlen, '/', n - tlen) == NULL;
    }
    return n == tlen && strncasecmp(ct, type, tlen) == 0;
}

/* A JWT is three base64url parts separated by dots (RFC 7519 section 3). */
static int token_ok(const char *s, size_t len)
{
    if (len == 0 || len > REQUEST_TOKEN_MAX) return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == '='))
            return 0;
    }
    return 1;
}

char *request_token(const struct web_request *req)
{
    const char *v = NULL;
    size_t len = 0;
    const char *cookies = request_header(req, MHD_HTTP_HEADER_COOKIE);
    if (!cookie_get(cookies, COOKIE_SESSION_NAME, &v, &len) || len == 0) {
        v = NULL;
        const char *auth = request_header(req, MHD_HTTP_HEADER_AUTHORIZATION);
        /* RFC 6750 section 2.1: the scheme name is case-insensitive. */
        if (auth != NULL && strncasecmp(auth, "Bearer ", 7) == 0) {
            v = auth + 7;
            while (*v == ' ')
                v++;
            len = strlen(v);
            while (len > 0 && v[len - 1] == ' ')
                len--;
        }
    }
    if (v == NULL || !token_ok(v, len)) return NULL;
    return strndup(v, len);
}

char *request_cookie(const struct web_request *req, const char *name)
{
    const char *v = NULL;
    size_t len = 0;
    const char *cookies = request_header(req, MHD_HTTP_HEADER_COOKIE);
    if (!cookie_get(cookies, name, &v, &len) || len == 0 || len > REQUEST_TOKEN_MAX ||
        !cookie_value_ok(v, len))
        return NULL;
    return strndup(v, len);
}

int request_rpc(struct web_request *req, Rpc__Request *rr, Rpc__Response **resp)
{
    /* The first RPC carries the request's own id so web and core log lines join up. */
    rr->id = req->rpc_calls++ == 0 ? req->rid : rpc_next_request_id();
    rr->client_ip = req->client_ip;
    rr->request_tag = req->request_tag;
    rr->fast_only = req->fast_first && !req->deferred;
    *resp = NULL;
    int rc;
    if (req->async && req->async_state == REQUEST_ASYNC_NONE) {
        rc = rpc_async_pack(rr, req->app->cfg->rpc.max_frame_bytes, &req->async_call);
        if (rc == RPC_OK) {
            req->async_state = REQUEST_ASYNC_PREPARED;
            return -1;
        }
    } else if (req->async && req->async_state == REQUEST_ASYNC_PREPARED) {
        return -1; /* a second RPC in a run whose reply is dropped anyway: never sent */
    } else if (req->async && req->async_state == REQUEST_ASYNC_ANSWERED) {
        rc = req->async_rc;
        *resp = req->async_resp;
        req->async_resp = NULL;
        req->async_state = REQUEST_ASYNC_CONSUMED;
    } else {
        /* the slow lane, or a fast handler's second RPC after its answered first one */
        rc = rpc_call(req->pool, rr, resp);
    }
    if (rc != RPC_OK) {
        log_warn(req->rid, "rpc method=%s rpc_id=%llu outcome=unavailable error=\"%s\"",
                 rpc_method_str(rr->method), (unsigned long long)rr->id, rpc_status_str(rc));
        rpc_call_free(*resp);
        *resp = NULL;
        return -1;
    }
    if (rr->fast_only && (*resp)->status == RPC__STATUS__STATUS_WOULD_BLOCK) {
        /* The login needs argon2id: the handler's failure reply is dropped
         * (reply_queue) and finish() runs it again on a slow-lane worker. */
        rpc_call_free(*resp);
        *resp = NULL;
        req->retry_slow = 1;
        return -1;
    }
    return 0;
}

int request_http_status(int rpc_status, int nickname)
{
    switch (rpc_status) {
    case RPC__STATUS__STATUS_OK:
        return MHD_HTTP_OK;
    case RPC__STATUS__STATUS_INVALID_ARGUMENT:
        return nickname ? MHD_HTTP_UNPROCESSABLE_CONTENT : MHD_HTTP_BAD_REQUEST;
    case RPC__STATUS__STATUS_UNAUTHENTICATED:
        return MHD_HTTP_UNAUTHORIZED;
    case RPC__STATUS__STATUS_NOT_FOUND:
        return MHD_HTTP_NOT_FOUND;
    case RPC__STATUS__STATUS_TOO_LARGE:
        return MHD_HTTP_CONTENT_TOO_LARGE;
    case RPC__STATUS__STATUS_UNSUPPORTED_MEDIA_TYPE:
        return MHD_HTTP_UNSUPPORTED_MEDIA_TYPE;
    case RPC__STATUS__STATUS_UNAVAILABLE:
        return MHD_HTTP_SERVICE_UNAVAILABLE;
    default:
        return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
}

const char *request_error_code(int http_status)
{
    switch (http_status) {
    case 400:
        return "invalid_request";
    case 401:
        return "unauthenticated";
    case 404:
        return "not_found";
    case 405:
        return "method_not_allowed";
    case 413:
        return "too_large";
    case 415:
        return "unsupported_media_type";
    case 422:
        return "invalid_nickname";
    case 503:
        return "unavailable";
    default:
        return "internal_error";
    }
}

const char *request_error_message(int http_status)
{
    switch (http_status) {
    case 400:
        return "The request is malformed.";
    case 401:
        return "Please log in.";
    case 404:
        return "The page you asked for does not exist.";
    case 405:
        return "This address does not accept that method.";
    case 413:
        return "The upload is too large.";
    case 415:
        return "This type of content is not accepted.";
    case 422:
        return "The nickname is not valid.";
    case 503:
        return REQUEST_UNAVAILABLE_MSG;
    default:
        return "Something went wrong on our side; please retry later.";
    }
}
