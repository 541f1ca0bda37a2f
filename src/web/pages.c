/* pages: see pages.h. */
#include "web/pages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/validate.h"
#include "web/cookie.h"
#include "web/csrf.h"
#include "web/html.h"
#include "web/reply.h"

#define PLACEHOLDER_AVATAR "/static/avatar.svg"

/* Where a dead session sends the browser: the login page says why. */
#define LOGIN_EXPIRED_URL "/?session=expired"
#define EXPIRED_MSG "Your session has expired. Please log in again."

/* Answers to a form POST that fails the CSRF check (403). */
#define CSRF_LOGIN_MSG "The login form had expired. Please log in again."
#define CSRF_EDIT_MSG                                                                              \
    "This form had expired or was not sent from this site, so nothing was changed. Please make "   \
    "your changes again and save."
#define CSRF_OTHER_MSG                                                                             \
    "The form had expired or was not sent from this site, so nothing was done. Go back, reload "   \
    "the page and try again."

struct pages {
    struct html_template *layout;  /* layout.html: the document around every page */
    struct html_template *login;   /* login.html */
    struct html_template *profile; /* profile.html */
    struct html_template *edit;    /* edit.html */
    struct html_template *error;   /* error.html */
};

static struct html_template *load_one(const char *dir, const char *name)
{
    char *path = NULL;
    char err[512];
    if (asprintf(&path, "%s/%s", dir, name) < 0) {
        fprintf(stderr, "pages: out of memory\n");
        return NULL;
    }
    struct html_template *t = html_template_load(path, err, sizeof(err));
    if (t == NULL) fprintf(stderr, "pages: template %s\n", err);
    free(path);
    return t;
}

struct pages *pages_load(const char *dir)
{
    struct pages *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        fprintf(stderr, "pages: out of memory\n");
        return NULL;
    }
    if ((p->layout = load_one(dir, "layout.html")) == NULL ||
        (p->login = load_one(dir, "login.html")) == NULL ||
        (p->profile = load_one(dir, "profile.html")) == NULL ||
        (p->edit = load_one(dir, "edit.html")) == NULL ||
        (p->error = load_one(dir, "error.html")) == NULL) {
        pages_free(p);
        return NULL;
    }
    return p;
}

void pages_free(struct pages *p)
{
    if (p == NULL) return;
    html_template_free(p->layout);
    html_template_free(p->login);
    html_template_free(p->profile);
    html_template_free(p->edit);
    html_template_free(p->error);
    free(p);
}

#define VAR(n, v)                                                                                  \
    {                                                                                              \
        (n), (v), (size_t)-1, 0                                                                    \
    }
#define NVARS(a) (sizeof(a) / sizeof((a)[0]))

/* Renders tpl with vars into the layout and queues it with status. */
static enum MHD_Result render(struct web_request *req, int status, const char *title,
                              const struct html_template *tpl, const struct html_var *vars,
                              size_t nvars)
{
    struct html_buf content, page;
    html_buf_init(&content);
    html_buf_init(&page);
    if (html_render(tpl, vars, nvars, &content) == 0) {
        struct html_var lv[] = {
            VAR("title", title),
            {"content", content.data, content.len, HTML_VAR_RAW},
        };
        if (html_render(req->app->pages->layout, lv, NVARS(lv), &page) != 0) page.failed = 1;
    } else {
        page.failed = 1;
    }
    html_buf_free(&content);
    return reply_html(req, status, &page);
}

static const char *error_heading(int status)
{
    switch (status) {
    case 400:
        return "Bad request";
    case 401:
        return "Please log in";
    case 403:
        return "Request refused";
    case 404:
        return "Not found";
    case 405:
        return "Method not allowed";
    case 413:
        return "Too large";
    case 415:
        return "Unsupported content";
    case 503:
        return "Service unavailable";
    default:
        return status >= 500 ? "Server error" : "Request refused";
    }
}

enum MHD_Result pages_error(struct web_request *req, int status, const char *message)
{
    const char *heading = error_heading(status);
    struct html_var v[] = {VAR("heading", heading), VAR("message", message)};
    return render(req, status, heading, req->app->pages->error, v, NVARS(v));
}

/* Our own picture URLs are site paths; anything else shows the placeholder. */
static const char *picture_src(const Rpc__Profile *p)
{
    const char *u = p->picture_url;
    if (u == NULL || u[0] != '/' || u[1] == '/') return PLACEHOLDER_AVATAR;
    return u;
}

/* The alternative text for a picture shown from src. */
static const char *picture_alt(const char *src)
{
    if (src == NULL) return "";
    return strcmp(src, PLACEHOLDER_AVATAR) == 0 ? "No profile picture yet" : "Your profile picture";
}

/*
 * The value the login form's token is bound to: the browser's pre-session
 * cookie, or a new one, sent with this response. Returns a heap string
 * (caller frees), or NULL on ENOMEM (logged).
 */
static char *login_binding(struct web_request *req)
{
    char *v = request_cookie(req, CSRF_COOKIE);
    if (v != NULL) return v;
    char nonce[CSRF_TOKEN_LEN + 1];
    csrf_nonce(nonce);
    char *c = cookie_set(CSRF_COOKIE, nonce, -1, req->app->cfg->web.cookie_secure);
    if (c == NULL || (v = strdup(nonce)) == NULL) {
        free(c);
        log_error(req->rid, "pages: out of memory for the login CSRF cookie");
        return NULL;
    }
    free(req->set_csrf_cookie);
    req->set_csrf_cookie = c;
    return v;
}

/*
 * The login form with status, an error (wrong credentials...) or a notice
 * (session expired), each NULL when absent, and the username typed.
 */
static enum MHD_Result login_page(struct web_request *req, int status, const char *error,
                                  const char *notice, const char *username, size_t username_len)
{
    char csrf[CSRF_TOKEN_LEN + 1] = "";
    char *binding = login_binding(req);
    if (binding != NULL)
        (void)csrf_token(&req->app->csrf, CSRF_LOGIN, binding, strlen(binding), csrf);
    free(binding);
    struct html_var v[] = {
        VAR("error", error),
        VAR("notice", notice),
        {"username", username, username ? username_len : 0, 0},
        VAR("csrf", csrf),
    };
    return render(req, status, "Log in", req->app->pages->login, v, NVARS(v));
}

/* The form token for the session token (the binding of every logged-in form). */
static void session_csrf(struct web_request *req, const char *token, char out[CSRF_TOKEN_LEN + 1])
{
    if (csrf_token(&req->app->csrf, CSRF_SESSION, token, strlen(token), out) != 0) out[0] = '\0';
}

/*
 * Returns 1 when the form POST is genuine: its Origin (when sent) is this
 * site and its CSRF_FIELD is the token for binding (NULL: none, so no token
 * can match). Logs and returns 0 otherwise.
 */
static int form_genuine(struct web_request *req, enum csrf_purpose purpose, const char *binding)
{
    const char *reason = NULL;
    const struct form_field *t = req->form ? form_get(req->form, CSRF_FIELD) : NULL;
    if (!csrf_origin_ok(request_header(req, "Origin"), request_header(req, MHD_HTTP_HEADER_HOST)))
        reason = "cross_origin";
    else if (t == NULL)
        reason = "no_token";
    else if (binding == NULL)
        reason = purpose == CSRF_LOGIN ? "no_csrf_cookie" : "no_session";
    else if (!csrf_check(&req->app->csrf, purpose, binding, strlen(binding), t->data, t->len))
        reason = "bad_token";
    if (reason == NULL) return 1;
    log_warn(req->rid, "csrf outcome=refused path=%s reason=%s ip=%s", req->path, reason,
             req->client_ip);
    return 0;
}

/* Only the Origin half of form_genuine, for answers decided before the form is read. */
static int origin_ok(struct web_request *req)
{
    if (csrf_origin_ok(request_header(req, "Origin"), request_header(req, MHD_HTTP_HEADER_HOST)))
        return 1;
    log_warn(req->rid, "csrf outcome=refused path=%s reason=cross_origin ip=%s", req->path,
             req->client_ip);
    return 0;
}

/*
 * The edit form. nickname is what the field shows (typed or current);
 * profile (NULL: the core could not be asked) is the current profile,
 * whose picture is shown; token binds the form's CSRF token.
 */
static enum MHD_Result edit_page(struct web_request *req, int status, const char *error,
                                 const char *nickname, size_t nickname_len,
                                 const Rpc__Profile *profile, const char *token)
{
    char limit[96], max_bytes[32], csrf[CSRF_TOKEN_LEN + 1];
    size_t max = req->app->cfg->picture.max_bytes;
    if (max >= 1024 * 1024 && max % (1024 * 1024) == 0)
        snprintf(limit, sizeof(limit), "%zu MiB", max / (1024 * 1024));
    else
        snprintf(limit, sizeof(limit), "%zu KiB", (max + 1023) / 1024);
    snprintf(max_bytes, sizeof(max_bytes), "%zu", max);
    session_csrf(req, token, csrf);
    const char *src = profile ? picture_src(profile) : NULL;
    struct html_var v[] = {
        VAR("error", error),
        {"nickname", nickname, nickname ? nickname_len : 0, 0},
        VAR("picture_url", src),
        VAR("picture_alt", picture_alt(src)),
        VAR("picture_limit", limit),
        VAR("picture_max_bytes", max_bytes),
        VAR("picture_too_large", req->app->picture_too_large_msg),
        VAR("csrf", csrf),
    };
    return render(req, status, "Edit profile", req->app->pages->edit, v, NVARS(v));
}

static enum MHD_Result profile_page(struct web_request *req, const Rpc__Profile *p,
                                    const char *token)
{
    char csrf[CSRF_TOKEN_LEN + 1];
    const char *src = picture_src(p);
    session_csrf(req, token, csrf);
    struct html_var v[] = {
        VAR("username", p->username),
        VAR("nickname", p->nickname),
        VAR("picture_url", src),
        VAR("picture_alt", picture_alt(src)),
        VAR("csrf", csrf),
    };
    return render(req, MHD_HTTP_OK, "Your profile", req->app->pages->profile, v, NVARS(v));
}

static const char *resp_message(const Rpc__Response *resp, int http_status)
{
    if (resp->message != NULL && resp->message[0] != '\0') return resp->message;
    return request_error_message(http_status);
}

/* Asks the core for the session's profile. Returns 0 with *resp, or -1 (answer 503). */
static int fetch_profile(struct web_request *req, const char *token, Rpc__Response **resp)
{
    Rpc__Request rr = RPC__REQUEST__INIT;
    rr.method = RPC__METHOD__METHOD_GET_PROFILE;
    rr.token = (char *)token;
    return request_rpc(req, &rr, resp);
}

/*
 * The session is gone: clear the stale cookie and send the browser to the
 * login page, which says why when expired is non-zero (a session that
 * ended by itself, not by logging out).
 */
static enum MHD_Result to_login(struct web_request *req, int expired)
{
    (void)reply_set_session_cookie(req, NULL, 0);
    return reply_redirect(req, expired ? LOGIN_EXPIRED_URL : "/");
}

enum MHD_Result pages_index(struct web_request *req)
{
    Rpc__Response *resp = NULL;
    enum MHD_Result q;
    const char *why = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "session");
    const char *notice = why != NULL && strcmp(why, "expired") == 0 ? EXPIRED_MSG : NULL;
    char *token = request_token(req);
    if (token == NULL) return login_page(req, MHD_HTTP_OK, NULL, notice, NULL, 0);
    if (fetch_profile(req, token, &resp) != 0) {
        q = pages_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, REQUEST_UNAVAILABLE_MSG);
    } else if (resp->status == RPC__STATUS__STATUS_OK) {
        q = reply_redirect(req, "/profile");
    } else if (resp->status == RPC__STATUS__STATUS_UNAUTHENTICATED) {
        (void)reply_set_session_cookie(req, NULL, 0);
        q = login_page(req, MHD_HTTP_OK, NULL, EXPIRED_MSG, NULL, 0);
    } else {
        int st = request_http_status(resp->status, 0);
        q = pages_error(req, st, resp_message(resp, st));
    }
    rpc_call_free(resp);
    free(token);
    return q;
}

enum MHD_Result pages_login(struct web_request *req)
{
    Rpc__Response *resp = NULL;
    enum MHD_Result q;
    if (req->body_error)
        return login_page(req, req->body_error, req->body_error_msg, NULL, NULL, 0);
    char *binding = request_cookie(req, CSRF_COOKIE);
    int genuine = form_genuine(req, CSRF_LOGIN, binding);
    free(binding);
    if (!genuine) return login_page(req, MHD_HTTP_FORBIDDEN, CSRF_LOGIN_MSG, NULL, NULL, 0);

    const struct form_field *u = form_get(req->form, "username");
    const struct form_field *pw = form_get(req->form, "password");
    const char *user = u ? u->data : "";
    size_t user_len = u ? u->len : 0;
    if (!validate_username(user, user_len)) {
        log_info(req->rid, "login outcome=refused reason=invalid_username ip=%s", req->client_ip);
        /* Echo the name back only when it is printable text. */
        int echo = user_len <= 256 && strlen(user) == user_len;
        return login_page(req, MHD_HTTP_BAD_REQUEST, REQUEST_USERNAME_MSG, NULL, echo ? user : NULL,
                          user_len);
    }
    if (pw == NULL || pw->len == 0 || strlen(pw->data) != pw->len)
        return login_page(req, MHD_HTTP_BAD_REQUEST, "Please enter your password.", NULL, user,
                          user_len);

    Rpc__Request rr = RPC__REQUEST__INIT;
    rr.method = RPC__METHOD__METHOD_LOGIN;
    rr.username = (char *)user;
    rr.password = pw->data;
    if (request_rpc(req, &rr, &resp) != 0)
        return login_page(req, MHD_HTTP_SERVICE_UNAVAILABLE, REQUEST_UNAVAILABLE_MSG, NULL, user,
                          user_len);
    if (resp->status == RPC__STATUS__STATUS_OK) {
        long ttl = resp->token_ttl_s ? (long)resp->token_ttl_s : req->app->cfg->core.token_ttl_s;
        if (reply_set_session_cookie(req, resp->token, ttl) != 0)
            q = login_page(req, MHD_HTTP_INTERNAL_SERVER_ERROR, request_error_message(500), NULL,
                           user, user_len);
        else
            q = reply_redirect(req, "/profile");
    } else {
        int st = request_http_status(resp->status, 0);
        q = login_page(req, st, resp_message(resp, st), NULL, user, user_len);
    }
    rpc_call_free(resp);
    return q;
}

enum MHD_Result pages_profile(struct web_request *req)
{
    Rpc__Response *resp = NULL;
    enum MHD_Result q;
    char *token = request_token(req);
    if (token == NULL) return reply_redirect(req, "/");
    if (fetch_profile(req, token, &resp) != 0) {
        q = pages_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, REQUEST_UNAVAILABLE_MSG);
    } else if (resp->status == RPC__STATUS__STATUS_OK && resp->profile != NULL) {
        q = profile_page(req, resp->profile, token);
    } else if (resp->status == RPC__STATUS__STATUS_UNAUTHENTICATED) {
        q = to_login(req, 1);
    } else {
        int st = request_http_status(resp->status, 0);
        if (st == MHD_HTTP_OK) st = MHD_HTTP_INTERNAL_SERVER_ERROR; /* OK without a profile */
        q = pages_error(req, st, resp_message(resp, st));
    }
    rpc_call_free(resp);
    free(token);
    return q;
}

/*
 * Shows the edit form with status and error, with the current picture
 * fetched from the core. nickname (may be NULL) is what the user typed;
 * without it the field shows the current nickname. A dead session goes back
 * to the login page.
 */
static enum MHD_Result edit_again(struct web_request *req, const char *token, int status,
                                  const char *error, const char *nickname, size_t nickname_len)
{
    Rpc__Response *resp = NULL;
    enum MHD_Result q;
    if (fetch_profile(req, token, &resp) != 0) {
        /* The core is down: keep what the user typed when there is something. */
        if (nickname != NULL)
            q = edit_page(req, status, error, nickname, nickname_len, NULL, token);
        else
            q = pages_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, REQUEST_UNAVAILABLE_MSG);
    } else if (resp->status == RPC__STATUS__STATUS_OK && resp->profile != NULL) {
        const char *nick = nickname ? nickname : resp->profile->nickname;
        size_t nick_len = nickname ? nickname_len : strlen(nick);
        q = edit_page(req, status, error, nick, nick_len, resp->profile, token);
    } else if (resp->status == RPC__STATUS__STATUS_UNAUTHENTICATED) {
        q = to_login(req, 1);
    } else {
        int st = request_http_status(resp->status, 0);
        if (st == MHD_HTTP_OK) st = MHD_HTTP_INTERNAL_SERVER_ERROR;
        q = pages_error(req, st, resp_message(resp, st));
    }
    rpc_call_free(resp);
    return q;
}

enum MHD_Result pages_edit_form(struct web_request *req)
{
    char *token = request_token(req);
    if (token == NULL) return reply_redirect(req, "/");
    enum MHD_Result q = edit_again(req, token, MHD_HTTP_OK, NULL, NULL, 0);
    free(token);
    return q;
}

enum MHD_Result pages_edit_submit(struct web_request *req)
{
    Rpc__Response *resp = NULL;
    enum MHD_Result q;
    /* Another site's POST is refused before anything, even before "log in again". */
    if (!origin_ok(req)) return pages_error(req, MHD_HTTP_FORBIDDEN, CSRF_OTHER_MSG);
    char *token = request_token(req);
    if (token == NULL) return to_login(req, 1);

    const struct form_field *nick = req->form ? form_get(req->form, "nickname") : NULL;
    const struct form_field *pic = req->form ? form_get(req->form, "picture") : NULL;
    const char *typed = nick ? nick->data : NULL;
    size_t typed_len = nick ? nick->len : 0;
    if (req->body_error) {
        /* Nothing is changed; the form is shown again with why (e.g. 413). */
        q = edit_again(req, token, req->body_error, req->body_error_msg, typed, typed_len);
        goto done;
    }
    if (!form_genuine(req, CSRF_SESSION, token)) {
        q = edit_again(req, token, MHD_HTTP_FORBIDDEN, CSRF_EDIT_MSG, typed, typed_len);
        goto done;
    }
    size_t start, len;
    int err = validate_nickname(typed ? typed : "", typed_len, &start, &len);
    if (err != NICKNAME_OK) {
        q = edit_again(req, token, MHD_HTTP_UNPROCESSABLE_CONTENT, validate_nickname_message(err),
                       typed ? typed : "", typed_len);
        goto done;
    }

    Rpc__Request rr = RPC__REQUEST__INIT;
    rr.method = RPC__METHOD__METHOD_UPDATE_PROFILE;
    rr.token = token;
    rr.set_nickname = 1;
    rr.nickname = (char *)typed;
    if (pic != NULL && pic->filename != NULL && pic->len > 0) {
        rr.set_picture = 1;
        rr.picture.data = (uint8_t *)pic->data;
        rr.picture.len = pic->len;
    }
    if (request_rpc(req, &rr, &resp) != 0) {
        /* No second RPC to fetch the picture: the core did not answer this one. */
        q = edit_page(req, MHD_HTTP_SERVICE_UNAVAILABLE, REQUEST_UNAVAILABLE_MSG, typed, typed_len,
                      NULL, token);
    } else if (resp->status == RPC__STATUS__STATUS_OK) {
        q = reply_redirect(req, "/profile");
    } else if (resp->status == RPC__STATUS__STATUS_UNAUTHENTICATED) {
        q = to_login(req, 1);
    } else {
        int st = request_http_status(resp->status, 1);
        q = edit_again(req, token, st, resp_message(resp, st), typed, typed_len);
    }
    rpc_call_free(resp);
done:
    free(token);
    return q;
}

enum MHD_Result pages_logout(struct web_request *req)
{
    Rpc__Response *resp = NULL;
    if (!origin_ok(req)) return pages_error(req, MHD_HTTP_FORBIDDEN, CSRF_OTHER_MSG);
    char *token = request_token(req);
    if (token == NULL) return to_login(req, 0); /* nothing to end */
    if (req->body_error) {
        free(token);
        return pages_error(req, req->body_error, req->body_error_msg);
    }
    if (!form_genuine(req, CSRF_SESSION, token)) {
        free(token);
        return pages_error(req, MHD_HTTP_FORBIDDEN, CSRF_OTHER_MSG);
    }
    Rpc__Request rr = RPC__REQUEST__INIT;
    rr.method = RPC__METHOD__METHOD_LOGOUT;
    rr.token = token;
    int failed = request_rpc(req, &rr, &resp) != 0 ||
                 resp->status == RPC__STATUS__STATUS_UNAVAILABLE ||
                 resp->status == RPC__STATUS__STATUS_INTERNAL;
    rpc_call_free(resp);
    free(token);
    /* The session may still be alive: say so rather than pretend it ended. */
    if (failed) return pages_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, REQUEST_UNAVAILABLE_MSG);
    return to_login(req, 0);
}
