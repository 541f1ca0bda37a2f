/* api: see api.h. */
#include "web/api.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/validate.h"
#include "web/reply.h"

#define API_PASSWORD_MAX 4096 /* bytes; argon2id takes any length, this keeps requests small */

static enum MHD_Result body_failed(struct web_request *req)
{
    return reply_json_error(req, req->body_error, req->body_error_code, req->body_error_msg);
}

static enum MHD_Result unavailable(struct web_request *req)
{
    return reply_json_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
                            REQUEST_UNAVAILABLE_MSG);
}

static enum MHD_Result no_token(struct web_request *req)
{
    return reply_json_error(req, MHD_HTTP_UNAUTHORIZED, "invalid_session",
                            "Log in first: this request carries no session token.");
}

/* Answers a non-OK core response with its status, code and message. */
static enum MHD_Result rpc_failed(struct web_request *req, const Rpc__Response *resp, int nickname)
{
    int st = request_http_status(resp->status, nickname);
    if (st == MHD_HTTP_OK) st = MHD_HTTP_INTERNAL_SERVER_ERROR; /* OK but no profile: a bug */
    const char *code =
        resp->error_code && resp->error_code[0] ? resp->error_code : request_error_code(st);
    const char *msg = resp->message && resp->message[0] ? resp->message : request_error_message(st);
    return reply_json_error(req, st, code, msg);
}

static json_t *profile_json(const Rpc__Profile *p)
{
    json_t *url = p->picture_url && p->picture_url[0] ? json_string(p->picture_url) : json_null();
    /* "o" steals url, also when packing fails. */
    return json_pack("{s:s, s:s, s:o}", "username", p->username, "nickname", p->nickname,
                     "picture_url", url);
}

/* Answers a core response that carries a profile on success. */
static enum MHD_Result profile_reply(struct web_request *req, const Rpc__Response *resp,
                                     int nickname)
{
    if (resp->status == RPC__STATUS__STATUS_OK && resp->profile != NULL)
        return reply_json(req, MHD_HTTP_OK, profile_json(resp->profile));
    return rpc_failed(req, resp, nickname);
}

/*
 * Parses the buffered body as a JSON object (RFC 8259). JSON_ALLOW_NUL
 * keeps "\u0000" inside strings so validation can refuse it by name instead
 * of the parser hiding it. Returns the object (owned by req, parsed once), or NULL
 * after queueing 400 into *q.
 */
static json_t *body_object(struct web_request *req, enum MHD_Result *q)
{
    /* A fast-lane handler runs twice (before and after its RPC, see
     * request.h): the second run takes the first one's parse. */
    if (req->body_json != NULL) return req->body_json;
    json_error_t jerr;
    json_t *root = json_loadb(req->body.data ? req->body.data : "", req->body.len,
                              JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        *q = reply_json_error(req, MHD_HTTP_BAD_REQUEST, "malformed_json",
                              "The request body is not valid JSON.");
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        *q = reply_json_error(req, MHD_HTTP_BAD_REQUEST, "invalid_request",
                              "The request body must be a JSON object.");
        return NULL;
    }
    req->body_json = root;
    return root;
}

/* Sends rr (which answers with a profile) and replies with the profile or
 * the error; nickname tells request_http_status() how to map
 * INVALID_ARGUMENT. */
static enum MHD_Result profile_call(struct web_request *req, Rpc__Request *rr, int nickname)
{
    Rpc__Response *resp = NULL;
    enum MHD_Result q;
    if (request_rpc(req, rr, &resp) != 0)
        q = unavailable(req);
    else
        q = profile_reply(req, resp, nickname);
    rpc_call_free(resp);
    return q;
}

enum MHD_Result api_login(struct web_request *req)
{
    enum MHD_Result q;
    Rpc__Response *resp = NULL;
    if (req->body_error) return body_failed(req);
    json_t *root = body_object(req, &q);
    if (root == NULL) return q;
    json_t *ju = json_object_get(root, "username");
    json_t *jp = json_object_get(root, "password");
    if (!json_is_string(ju) || !json_is_string(jp)) {
        q = reply_json_error(req, MHD_HTTP_BAD_REQUEST, "invalid_request",
                             "The body must hold the strings \"username\" and \"password\".");
        goto done;
    }
    const char *user = json_string_value(ju);
    const char *pw = json_string_value(jp);
    size_t pw_len = json_string_length(jp);
    if (!validate_username(user, json_string_length(ju))) {
        log_info(req->rid, "login outcome=refused reason=invalid_username ip=%s", req->client_ip);
        q = reply_json_error(req, MHD_HTTP_BAD_REQUEST, "invalid_username", REQUEST_USERNAME_MSG);
        goto done;
    }
    if (pw_len == 0 || pw_len > API_PASSWORD_MAX || strlen(pw) != pw_len) {
        q = reply_json_error(req, MHD_HTTP_BAD_REQUEST, "invalid_password",
                             "A password is 1 to 4096 bytes and cannot contain NUL.");
        goto done;
    }

    Rpc__Request rr = RPC__REQUEST__INIT;
    rr.method = RPC__METHOD__METHOD_LOGIN;
    rr.username = (char *)user;
    rr.password = (char *)pw;
    if (request_rpc(req, &rr, &resp) != 0) {
        q = unavailable(req);
    } else if (resp->status == RPC__STATUS__STATUS_OK && resp->profile != NULL) {
        long ttl = resp->token_ttl_s ? (long)resp->token_ttl_s : req->app->cfg->core.token_ttl_s;
        if (reply_set_session_cookie(req, resp->token, ttl) != 0)
            q = reply_json_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal_error",
                                 request_error_message(500));
        else
            q = profile_reply(req, resp, 0);
    } else {
        q = rpc_failed(req, resp, 0);
    }
done:
    rpc_call_free(resp);
    return q;
}

enum MHD_Result api_profile_get(struct web_request *req)
{
    enum MHD_Result q;
    char *token = request_token(req);
    if (token == NULL) return no_token(req);
    Rpc__Request rr = RPC__REQUEST__INIT;
    rr.method = RPC__METHOD__METHOD_GET_PROFILE;
    rr.token = token;
    q = profile_call(req, &rr, 0);
    free(token);
    return q;
}

enum MHD_Result api_profile_patch(struct web_request *req)
{
    enum MHD_Result q;
    json_t *root = NULL;
    if (req->body_error) return body_failed(req);
    char *token = request_token(req);
    if (token == NULL) return no_token(req);
    root = body_object(req, &q);
    if (root == NULL) goto done;
    json_t *jn = json_object_get(root, "nickname");
    if (!json_is_string(jn)) {
        q = reply_json_error(req, MHD_HTTP_BAD_REQUEST, "invalid_request",
                             "The body must hold the string \"nickname\".");
        goto done;
    }
    const char *nick = json_string_value(jn);
    size_t start, len;
    int err = validate_nickname(nick, json_string_length(jn), &start, &len);
    if (err != NICKNAME_OK) {
        q = reply_json_error(req, MHD_HTTP_UNPROCESSABLE_CONTENT, "invalid_nickname",
                             validate_nickname_message(err));
        goto done;
    }
    Rpc__Request rr = RPC__REQUEST__INIT;
    rr.method = RPC__METHOD__METHOD_UPDATE_PROFILE;
    rr.token = token;
    rr.set_nickname = 1;
    rr.nickname = (char *)nick;
    q = profile_call(req, &rr, 1);
done:
    free(token);
    return q;
}

enum MHD_Result api_picture_put(struct web_request *req)
{
    enum MHD_Result q;
    if (req->body_error) return body_failed(req);
    char *token = request_token(req);
    if (token == NULL) return no_token(req);
    if (req->body.len == 0) {
        q = reply_json_error(req, MHD_HTTP_BAD_REQUEST, "empty_body",
                             "The request body is empty: send the image bytes.");
        goto done;
    }
    Rpc__Request rr = RPC__REQUEST__INIT;
    rr.method = RPC__METHOD__METHOD_UPDATE_PROFILE;
    rr.token = token;
    rr.set_picture = 1;
    rr.picture.data = (uint8_t *)req->body.data;
    rr.picture.len = req->body.len;
    q = profile_call(req, &rr, 0);
done:
    free(token);
    return q;
}

enum MHD_Result api_logout(struct web_request *req)
{
    Rpc__Response *resp = NULL;
    if (req->body_error) return body_failed(req);
    char *token = request_token(req);
    if (token != NULL) {
        Rpc__Request rr = RPC__REQUEST__INIT;
        rr.method = RPC__METHOD__METHOD_LOGOUT;
        rr.token = token;
        int rc = request_rpc(req, &rr, &resp);
        free(token);
        if (rc != 0) return unavailable(req);
        /* An already dead session is logged out too; a store failure is not. */
        if (resp->status != RPC__STATUS__STATUS_OK &&
            resp->status != RPC__STATUS__STATUS_UNAUTHENTICATED) {
            enum MHD_Result q = rpc_failed(req, resp, 0);
            rpc_call_free(resp);
            return q;
        }
        rpc_call_free(resp);
    }
    (void)reply_set_session_cookie(req, NULL, 0);
    return reply_empty(req, MHD_HTTP_NO_CONTENT);
}
