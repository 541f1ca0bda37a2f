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

/* The keys and argument vectors of one pipelined SET. */
struct set_args {
    char key[SESSION_KEY_MAX];
    const char *argv[5];
    size_t argvlen[5];
};

int session_store_put_many(struct redis_pool *pool, size_t n, const char *const *jtis,
                           const char *const *usernames, int ttl_s, int *status, int wait_ms)
{
    char ttl[24];
    int ttl_len = snprintf(ttl, sizeof(ttl), "%d", ttl_s);
    struct set_args *a = calloc(n, sizeof(*a));
    const char *const **argv = calloc(n, sizeof(*argv));
    const size_t **argvlen = calloc(n, sizeof(*argvlen));
    int *argc = calloc(n, sizeof(*argc));
    redisReply **replies = calloc(n, sizeof(*replies));
    int rc = STORE_NOMEM;

    if (a == NULL || argv == NULL || argvlen == NULL || argc == NULL || replies == NULL) goto done;
    rc = STORE_ERROR;
    if (ttl_s <= 0) goto done;
    for (size_t i = 0; i < n; i++) {
        int key_len = session_store_key(a[i].key, jtis[i]);
        if (key_len < 0) goto done;
        const char *v[] = {"SET", a[i].key, usernames[i], "EX", ttl};
        const size_t l[] = {3, (size_t)key_len, strlen(usernames[i]), 2, (size_t)ttl_len};
        memcpy(a[i].argv, v, sizeof(v));
        memcpy(a[i].argvlen, l, sizeof(l));
        argc[i] = 5;
        argv[i] = a[i].argv;
        argvlen[i] = a[i].argvlen;
    }
    rc = redis_pool_pipeline(pool, n, argc, argv, argvlen, replies, wait_ms);
    if (rc != STORE_OK) goto done;
    for (size_t i = 0; i < n; i++) {
        status[i] = replies[i]->type == REDIS_REPLY_STATUS ? STORE_OK : STORE_ERROR;
        if (status[i] != STORE_OK)
            log_error(0, "event=session_put outcome=failure error=\"unexpected reply type %d\"",
                      replies[i]->type);
        freeReplyObject(replies[i]);
    }
done:
    free(a);
    free(argv);
    free(argvlen);
    free(argc);
    free(replies);
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
