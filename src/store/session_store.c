#include "store/session_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "store/store.h"

int session_store_key(char key[SESSION_KEY_MAX], const char *jti)
{
    int n = snprintf(key, SESSION_KEY_MAX, SESSION_KEY_PREFIX "%s", jti);
    return (n < 0 || n >= SESSION_KEY_MAX) ? -1 : n;
}

int session_store_put(struct redis_pool *pool, const char *jti, const char *username, int ttl_s)
{
    char key[SESSION_KEY_MAX], ttl[24];
    int key_len = session_store_key(key, jti);
    int ttl_len = snprintf(ttl, sizeof(ttl), "%d", ttl_s);
    redisReply *r;

    if (key_len < 0 || ttl_s <= 0) return STORE_ERROR;
    const char *argv[] = {"SET", key, username, "EX", ttl};
    const size_t argvlen[] = {3, (size_t)key_len, strlen(username), 2, (size_t)ttl_len};
    int rc = redis_pool_command(pool, &r, 5, argv, argvlen);
    if (rc != STORE_OK) return rc;
    rc = r->type == REDIS_REPLY_STATUS ? STORE_OK : STORE_ERROR;
    if (rc != STORE_OK)
        log_error(0, "event=session_put outcome=failure error=\"unexpected reply type %d\"",
                  r->type);
    freeReplyObject(r);
    return rc;
}

int session_store_put_many(struct redis_pool *pool, size_t n, const char *const *jtis,
                           const char *const *usernames, int ttl_s, int *status, int wait_ms)
{
    char ttl[24];
    int ttl_len = snprintf(ttl, sizeof(ttl), "%d", ttl_s);
    char(*keys)[SESSION_KEY_MAX] = calloc(n, sizeof(*keys));
    struct redis_cmd *cmds = calloc(n, sizeof(*cmds));
    int rc = STORE_NOMEM;

    if (keys == NULL || cmds == NULL) goto done;
    rc = STORE_ERROR;
    if (ttl_s <= 0) goto done;
    for (size_t i = 0; i < n; i++) {
        int key_len = session_store_key(keys[i], jtis[i]);
        if (key_len < 0) goto done;
        cmds[i] = (struct redis_cmd){
            .argc = 5,
            .argv = {"SET", keys[i], usernames[i], "EX", ttl},
            .argvlen = {3, (size_t)key_len, strlen(usernames[i]), 2, (size_t)ttl_len}};
    }
    rc = redis_pool_pipeline(pool, n, cmds, wait_ms);
    if (rc != STORE_OK) goto done;
    for (size_t i = 0; i < n; i++) {
        status[i] = cmds[i].reply->type == REDIS_REPLY_STATUS ? STORE_OK : STORE_ERROR;
        if (status[i] != STORE_OK)
            log_error(0, "event=session_put outcome=failure error=\"unexpected reply type %d\"",
                      cmds[i].reply->type);
    }
    redis_cmds_free_replies(cmds, n);
done:
    free(keys);
    free(cmds);
    return rc;
}

int session_store_get(struct redis_pool *pool, const char *jti, char **username)
{
    char key[SESSION_KEY_MAX];
    int key_len = session_store_key(key, jti);
    redisReply *r;
    int rc;

    *username = NULL;
    if (key_len < 0) return STORE_NOT_FOUND;
    const char *argv[] = {"GET", key};
    const size_t argvlen[] = {3, (size_t)key_len};
    rc = redis_pool_command(pool, &r, 2, argv, argvlen);
    if (rc != STORE_OK) return rc;
    if (r->type == REDIS_REPLY_NIL) {
        rc = STORE_NOT_FOUND;
    } else if (r->type == REDIS_REPLY_STRING) {
        *username = malloc((size_t)r->len + 1);
        if (*username == NULL) {
            rc = STORE_NOMEM;
        } else {
            memcpy(*username, r->str, (size_t)r->len);
            (*username)[r->len] = '\0';
            rc = STORE_OK;
        }
    } else {
        log_error(0, "event=session_get outcome=failure error=\"unexpected reply type %d\"",
                  r->type);
        rc = STORE_ERROR;
    }
    freeReplyObject(r);
    return rc;
}

int session_store_delete(struct redis_pool *pool, const char *jti)
{
    char key[SESSION_KEY_MAX];
    int key_len = session_store_key(key, jti);
    redisReply *r;

    if (key_len < 0) return STORE_OK; /* such a key was never stored */
    const char *argv[] = {"DEL", key};
    const size_t argvlen[] = {3, (size_t)key_len};
    int rc = redis_pool_command(pool, &r, 2, argv, argvlen);
    if (rc != STORE_OK) return rc;
    freeReplyObject(r);
    return STORE_OK;
}
