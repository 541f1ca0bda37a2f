/* message: see message.h. */
#include "rpc/message.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_default(const char *s)
{
    return s == NULL || s == (const char *)protobuf_c_empty_string;
}

int rpc_str_set(char **field, const char *s)
{
    if (!is_default(*field)) free(*field);
    *field = (char *)protobuf_c_empty_string;
    if (s == NULL || *s == '\0') return 0;
    char *copy = strdup(s);
    if (copy == NULL) return -1;
    *field = copy;
    return 0;
}

void rpc_response_fail(Rpc__Response *resp, Rpc__Status status, const char *code, const char *fmt,
                       ...)
{
    resp->status = status;
    (void)rpc_str_set(&resp->error_code, code);
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    (void)rpc_str_set(&resp->message, n < 0 ? "" : msg);
}

Rpc__Profile *rpc_response_profile(Rpc__Response *resp)
{
    if (resp->profile != NULL) return resp->profile;
    Rpc__Profile *p = malloc(sizeof(*p));
    if (p == NULL) return NULL;
    rpc__profile__init(p);
    resp->profile = p;
    return p;
}

static void free_str(char *s)
{
    if (!is_default(s)) free(s);
}

void rpc_response_reset(Rpc__Response *resp)
{
    free_str(resp->message);
    free_str(resp->error_code);
    free_str(resp->token);
    if (resp->profile != NULL) {
        free_str(resp->profile->username);
        free_str(resp->profile->nickname);
        free_str(resp->profile->picture_url);
        free(resp->profile);
    }
    free(resp->core_metrics);
    rpc__response__init(resp);
}

const char *rpc_method_str(int method)
{
    switch (method) {
    case RPC__METHOD__METHOD_LOGIN:
        return "login";
    case RPC__METHOD__METHOD_LOGOUT:
        return "logout";
    case RPC__METHOD__METHOD_GET_PROFILE:
        return "get_profile";
    case RPC__METHOD__METHOD_UPDATE_PROFILE:
        return "update_profile";
    case RPC__METHOD__METHOD_HEALTH:
        return "health";
    case RPC__METHOD__METHOD_METRICS:
        return "metrics";
    default:
        return "unknown";
    }
}
