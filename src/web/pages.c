/* pages: see pages.h. */
#include "web/pages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/validate.h"
#include "web/html.h"
#include "web/reply.h"

#define PLACEHOLDER_AVATAR "/static/avatar.svg"

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

static enum MHD_Result login_page(struct web_request *req, int status, const char *error,
                                  const char *username, size_t username_len)
{
    struct html_var v[] = {
        VAR("error", error),
        {"username", username, username ? username_len : 0, 0},
    };
    return render(req, status, "Log in", req->app->pages->login, v, NVARS(v));
}

static enum MHD_Result edit_page(struct web_request *req, int status, const char *error,
                                 const char *nickname, size_t nickname_len)
{
    char limit[96];
    size_t max = req->app->cfg->picture.max_bytes;
    if (max >= 1024 * 1024 && max % (1024 * 1024) == 0)
        snprintf(limit, sizeof(limit), "%zu MiB", max / (1024 * 1024));
    else
        snprintf(limit, sizeof(limit), "%zu KiB", (max + 1023) / 1024);
    struct html_var v[] = {
        VAR("error", error),
        {"nickname", nickname, nickname ? nickname_len : 0, 0},
        VAR("picture_limit", limit),
    };
    return render(req, status, "Edit profile", req->app->pages->edit, v, NVARS(v));
}

/* Our own picture URLs are site paths; anything else shows the placeholder. */
static const char *picture_src(const Rpc__Profile *p)
{
    const char *u = p->picture_url;
    if (u == NULL || u[0] != '/' || u[1] == '/') return PLACEHOLDER_AVATAR;
    return u;
}

static enum MHD_Result profile_page(struct web_request *req, const Rpc__Profile *p)
{
    struct html_var v[] = {
        VAR("username", p->username),
        VAR("nickname", p->nickname),
        VAR("picture_url", picture_src(p)),
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

/* The session is gone: clear the stale cookie and send the browser to the login page. */
static enum MHD_Result to_login(struct web_request *req)
{
    (void)reply_set_session_cookie(req, NULL, 0);
    return reply_redirect(req, "/");
}

enum MHD_Result pages_index(struct web_request *req)
{
    Rpc__Response *resp = NULL;
    enum MHD_Result q;
    char *token = request_token(req);
    if (token == NULL) return login_page(req, MHD_HTTP_OK, NULL, NULL, 0);
    if (fetch_profile(req, token, &resp) != 0) {
        q = pages_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, REQUEST_UNAVAILABLE_MSG);
    } else if (resp->status == RPC__STATUS__STATUS_OK) {
        q = reply_redirect(req, "/profile");
    } else if (resp->status == RPC__STATUS__STATUS_UNAUTHENTICATED) {
        (void)reply_set_session_cookie(req, NULL, 0);
        q = login_page(req, MHD_HTTP_OK, NULL, NULL, 0);
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
    if (req->body_error) return login_page(req, req->body_error, req->body_error_msg, NULL, 0);
    const struct form_field *u = form_get(req->form, "username");
    const struct form_field *pw = form_get(req->form, "password");
    const char *user = u ? u->data : "";
    size_t user_len = u ? u->len : 0;
    if (!validate_username(user, user_len)) {
        log_info(req->rid, "login outcome=refused reason=invalid_username ip=%s", req->client_ip);
        /* Echo the name back only when it is printable text. */
        int echo = user_len <= 256 && strlen(user) == user_len;
        return login_page(req, MHD_HTTP_BAD_REQUEST, REQUEST_USERNAME_MSG, echo ? user : NULL,
                          user_len);
    }
    if (pw == NULL || pw->len == 0 || strlen(pw->data) != pw->len)
        return login_page(req, MHD_HTTP_BAD_REQUEST, "Please enter your password.", user, user_len);

    Rpc__Request rr = RPC__REQUEST__INIT;
    rr.method = RPC__METHOD__METHOD_LOGIN;
    rr.username = (char *)user;
    rr.password = pw->data;
    if (request_rpc(req, &rr, &resp) != 0)
        return login_page(req, MHD_HTTP_SERVICE_UNAVAILABLE, REQUEST_UNAVAILABLE_MSG, user,
                          user_len);
    if (resp->status == RPC__STATUS__STATUS_OK) {
        long ttl = resp->token_ttl_s ? (long)resp->token_ttl_s : req->app->cfg->core.token_ttl_s;
        if (reply_set_session_cookie(req, resp->token, ttl) != 0)
            q = login_page(req, MHD_HTTP_INTERNAL_SERVER_ERROR, request_error_message(500), user,
                           user_len);
        else
            q = reply_redirect(req, "/profile");
    } else {
        int st = request_http_status(resp->status, 0);
        q = login_page(req, st, resp_message(resp, st), user, user_len);
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
        q = profile_page(req, resp->profile);
    } else if (resp->status == RPC__STATUS__STATUS_UNAUTHENTICATED) {
        q = to_login(req);
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
 * Shows the edit form with status and error. nickname (may be NULL) is what
 * the user typed; without it the current nickname is fetched to fill the
 * field. A dead session goes back to the login page.
 */
static enum MHD_Result edit_again(struct web_request *req, const char *token, int status,
                                  const char *error, const char *nickname, size_t nickname_len)
{
    Rpc__Response *resp = NULL;
    enum MHD_Result q;
    if (nickname != NULL) return edit_page(req, status, error, nickname, nickname_len);
    if (fetch_profile(req, token, &resp) != 0) {
        q = pages_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, REQUEST_UNAVAILABLE_MSG);
    } else if (resp->status == RPC__STATUS__STATUS_OK && resp->profile != NULL) {
        const char *nick = resp->profile->nickname;
        q = edit_page(req, status, error, nick, strlen(nick));
    } else if (resp->status == RPC__STATUS__STATUS_UNAUTHENTICATED) {
        q = to_login(req);
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
    char *token = request_token(req);
    if (token == NULL) return reply_redirect(req, "/");

    const struct form_field *nick = req->form ? form_get(req->form, "nickname") : NULL;
    const struct form_field *pic = req->form ? form_get(req->form, "picture") : NULL;
    const char *typed = nick ? nick->data : NULL;
    size_t typed_len = nick ? nick->len : 0;
    if (req->body_error) {
        q = edit_again(req, token, req->body_error, req->body_error_msg, typed, typed_len);
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
        q = edit_page(req, MHD_HTTP_SERVICE_UNAVAILABLE, REQUEST_UNAVAILABLE_MSG, typed, typed_len);
    } else if (resp->status == RPC__STATUS__STATUS_OK) {
        q = reply_redirect(req, "/profile");
    } else if (resp->status == RPC__STATUS__STATUS_UNAUTHENTICATED) {
        q = to_login(req);
    } else {
        int st = request_http_status(resp->status, 1);
        q = edit_page(req, st, resp_message(resp, st), typed, typed_len);
    }
    rpc_call_free(resp);
done:
    free(token);
    return q;
}

enum MHD_Result pages_logout(struct web_request *req)
{
    Rpc__Response *resp = NULL;
    char *token = request_token(req);
    if (token != NULL) {
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
    }
    return to_login(req);
}
