#include "store/profile_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/log.h"
#include "store/session_store.h"
#include "store/store.h"

#define PROFILE_KEY_PREFIX "prof:"
#define PROFILE_KEY_MAX 96 /* bytes; "prof:" + a username of at most 64 bytes */

static int profile_key(char key[PROFILE_KEY_MAX], const char *username)
{
    int n = snprintf(key, PROFILE_KEY_MAX, PROFILE_KEY_PREFIX "%s", username);
    return (n < 0 || n >= PROFILE_KEY_MAX) ? -1 : n;
}

void profile_cache_entry_free(struct profile_cache_entry *e)
{
    if (e == NULL) return;
    free(e->nickname);
    free(e->picture);
    free(e->password_hash);
    memset(e, 0, sizeof(*e));
}

/* Serialises e as compact JSON (heap, caller frees) or returns NULL. */
static char *entry_encode(const struct profile_cache_entry *e)
{
    json_t *obj = json_object();
    char *s = NULL;

    if (obj == NULL || e->nickname == NULL) goto done;
    if (json_object_set_new(obj, "nickname", json_string(e->nickname)) != 0) goto done;
    if (json_object_set_new(obj, "picture",
                            e->picture != NULL ? json_string(e->picture) : json_null()) != 0)
        goto done;
    if (e->password_hash != NULL &&
        json_object_set_new(obj, "phc", json_string(e->password_hash)) != 0)
        goto done;
    s = json_dumps(obj, JSON_COMPACT);
done:
    json_decref(obj);
    return s;
}

/* Parses len bytes of JSON into *out. Returns STORE_OK, STORE_NOT_FOUND
 * (malformed entry) or STORE_NOMEM. */
static int entry_decode(const char *buf, size_t len, struct profile_cache_entry *out)
{
    json_error_t err;
    json_t *obj = json_loadb(buf, len, 0, &err);
    json_t *nick, *pic, *phc;
    int rc = STORE_NOT_FOUND;

    if (obj == NULL || !json_is_object(obj)) goto done;
    nick = json_object_get(obj, "nickname");
    pic = json_object_get(obj, "picture");
    phc = json_object_get(obj, "phc");
    if (!json_is_string(nick) || (pic != NULL && !json_is_string(pic) && !json_is_null(pic)) ||
        (phc != NULL && !json_is_string(phc)))
        goto done;
    rc = STORE_NOMEM;
    out->nickname = strdup(json_string_value(nick));
    if (out->nickname == NULL) goto done;
    if (json_is_string(pic)) {
        out->picture = strdup(json_string_value(pic));
        if (out->picture == NULL) goto done;
    }
    if (phc != NULL) {
        out->password_hash = strdup(json_string_value(phc));
        if (out->password_hash == NULL) goto done;
    }
    rc = STORE_OK;
done:
    if (rc != STORE_OK) profile_cache_entry_free(out);
    json_decref(obj);
    return rc;
}

int profile_cache_get(struct redis_pool *pool, const char *username,
                      struct profile_cache_entry *out)
{
    char key[PROFILE_KEY_MAX];
    int key_len = profile_key(key, username);
    redisReply *r;
    int rc;

    memset(out, 0, sizeof(*out));
    if (key_len < 0) return STORE_NOT_FOUND;
    const char *argv[] = {"GET", key};
    const size_t argvlen[] = {3, (size_t)key_len};
    rc = redis_pool_command(pool, &r, 2, argv, argvlen);
    if (rc != STORE_OK) return rc;
    if (r->type == REDIS_REPLY_STRING) {
        rc = entry_decode(r->str, (size_t)r->len, out);
        if (rc == STORE_NOT_FOUND) log_warn(0, "event=profile_cache outcome=corrupt_entry");
    } else {
        rc = STORE_NOT_FOUND;
    }
    freeReplyObject(r);
    return rc;
}

int profile_cache_get_many(struct redis_pool *pool, size_t n, const char *const *usernames,
                           struct profile_cache_entry *out, int *status, int wait_ms)
{
    char(*keys)[PROFILE_KEY_MAX] = calloc(n, sizeof(*keys));
    struct redis_cmd *cmds = calloc(n, sizeof(*cmds));
    size_t sent = 0;
    int rc = STORE_NOMEM;

    if (keys == NULL || cmds == NULL) goto done;
    for (size_t i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof(out[i]));
        status[i] = STORE_NOT_FOUND;
        int key_len = profile_key(keys[i], usernames[i]);
        if (key_len < 0) continue; /* no such entry can exist */
        cmds[sent++] = (struct redis_cmd){
            .argc = 2, .argv = {"GET", keys[i]}, .argvlen = {3, (size_t)key_len}, .tag = i};
    }
    rc = redis_pool_pipeline(pool, sent, cmds, wait_ms);
    if (rc != STORE_OK) goto done;
    for (size_t k = 0; k < sent; k++) {
        const redisReply *r = cmds[k].reply;
        size_t i = cmds[k].tag;
        if (r->type == REDIS_REPLY_STRING) {
            status[i] = entry_decode(r->str, (size_t)r->len, &out[i]);
            if (status[i] == STORE_NOT_FOUND)
                log_warn(0, "event=profile_cache outcome=corrupt_entry");
        }
    }
    redis_cmds_free_replies(cmds, sent);
done:
    free(keys);
    free(cmds);
    return rc;
}

static int cache_set(struct redis_pool *pool, const char *username,
                     const struct profile_cache_entry *e, int ttl_s, int only_if_absent)
{
    char key[PROFILE_KEY_MAX], ttl[24];
    int key_len = profile_key(key, username);
    int ttl_len = snprintf(ttl, sizeof(ttl), "%d", ttl_s);
    redisReply *r;
    char *value;
    int rc;

    if (key_len < 0 || ttl_s <= 0) return STORE_ERROR;
    value = entry_encode(e);
    if (value == NULL) return STORE_ERROR; /* invalid UTF-8 or out of memory */
    const char *argv[] = {"SET", key, value, "EX", ttl, "NX"};
    const size_t argvlen[] = {3, (size_t)key_len, strlen(value), 2, (size_t)ttl_len, 2};
    rc = redis_pool_command(pool, &r, only_if_absent ? 6 : 5, argv, argvlen);
    free(value);
    if (rc != STORE_OK) return rc;
    /* +OK, or nil when NX found a (newer) entry: both are fine. */
    freeReplyObject(r);
    return STORE_OK;
}

int profile_cache_fill(struct redis_pool *pool, const char *username,
                       const struct profile_cache_entry *e, int ttl_s)
{
    return cache_set(pool, username, e, ttl_s, 1);
}

int profile_cache_put_many(struct redis_pool *pool, size_t n, const char *const *usernames,
                           const struct profile_cache_entry *entries, int ttl_s, int *status,
                           int wait_ms)
{
    char(*keys)[PROFILE_KEY_MAX] = calloc(n, sizeof(*keys));
    char **values = calloc(n, sizeof(*values));
    struct redis_cmd *cmds = calloc(n, sizeof(*cmds));
    char ttl[24];
    int ttl_len = snprintf(ttl, sizeof(ttl), "%d", ttl_s);
    size_t sent = 0;
    int rc = STORE_NOMEM;

    if (keys == NULL || values == NULL || cmds == NULL) goto done;
    for (size_t i = 0; i < n; i++) {
        int key_len = profile_key(keys[i], usernames[i]);
        values[i] = key_len >= 0 && ttl_s > 0 ? entry_encode(&entries[i]) : NULL;
        status[i] = STORE_ERROR; /* bad key or TTL, invalid UTF-8, out of memory */
        if (values[i] == NULL) continue;
        cmds[sent++] = (struct redis_cmd){
            .argc = 5,
            .argv = {"SET", keys[i], values[i], "EX", ttl},
            .argvlen = {3, (size_t)key_len, strlen(values[i]), 2, (size_t)ttl_len},
            .tag = i};
    }
    rc = sent > 0 ? redis_pool_pipeline(pool, sent, cmds, wait_ms) : STORE_OK;
    if (rc != STORE_OK) goto done;
    for (size_t k = 0; k < sent; k++) {
        const redisReply *r = cmds[k].reply;
        status[cmds[k].tag] = r->type == REDIS_REPLY_ERROR ? STORE_UNAVAILABLE : STORE_OK;
        if (r->type == REDIS_REPLY_ERROR)
            log_error(0, "event=redis_error op=set error=\"%.*s\"", (int)r->len, r->str);
    }
    redis_cmds_free_replies(cmds, sent);
done:
    for (size_t i = 0; values != NULL && i < n; i++)
        free(values[i]);
    free(keys);
    free(values);
    free(cmds);
    return rc;
}

/* Reads one MGET sess:<jti> prof:<user> reply into *out (see profile_cache_session). Returns
 * out->status, or STORE_UNAVAILABLE for a reply of the wrong shape. */
static int session_reply_decode(const redisReply *r, struct profile_cache_session *out)
{
    memset(out, 0, sizeof(*out));
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        log_error(0, "event=redis_error op=mget error=\"unexpected reply type %d\"", r->type);
        return STORE_UNAVAILABLE;
    }
    const redisReply *sess = r->element[0], *prof = r->element[1];
    out->status = STORE_NOT_FOUND;
    if (sess->type == REDIS_REPLY_STRING) {
        out->owner = strndup(sess->str, (size_t)sess->len);
        out->status = out->owner != NULL ? STORE_OK : STORE_NOMEM;
    }
    if (out->status == STORE_OK && prof->type == REDIS_REPLY_STRING) {
        int drc = entry_decode(prof->str, (size_t)prof->len, &out->entry);
        if (drc == STORE_OK)
            out->have_profile = 1;
        else if (drc == STORE_NOT_FOUND)
            log_warn(0, "event=profile_cache outcome=corrupt_entry");
        else
            out->status = drc;
    }
    if (out->status != STORE_OK) {
        int status = out->status;
        profile_cache_session_free(out);
        out->status = status;
    }
    return out->status;
}

void profile_cache_session_free(struct profile_cache_session *s)
{
    free(s->owner);
    profile_cache_entry_free(&s->entry);
    memset(s, 0, sizeof(*s));
}

int profile_cache_get_with_session(struct redis_pool *pool, const char *jti, const char *username,
                                   char **owner, struct profile_cache_entry *out, int *have_profile)
{
    struct profile_cache_session got;
    int rc = profile_cache_get_sessions(pool, 1, &jti, &username, &got, -1);

    *owner = NULL;
    *have_profile = 0;
    memset(out, 0, sizeof(*out));
    if (rc != STORE_OK) return rc;
    if (got.status == STORE_OK) {
        *owner = got.owner;
        *out = got.entry;
        *have_profile = got.have_profile;
    }
    return got.status;
}

/* The two keys of one pipelined MGET. */
struct mget_keys {
    char skey[SESSION_KEY_MAX];
    char pkey[PROFILE_KEY_MAX];
};

int profile_cache_get_sessions(struct redis_pool *pool, size_t n, const char *const *jtis,
                               const char *const *usernames, struct profile_cache_session *out,
                               int wait_ms)
{
    struct mget_keys *keys = calloc(n, sizeof(*keys));
    struct redis_cmd *cmds = calloc(n, sizeof(*cmds));
    size_t sent = 0;
    int rc = STORE_NOMEM;

    if (keys == NULL || cmds == NULL) goto done;
    for (size_t i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof(out[i]));
        int skey_len = session_store_key(keys[i].skey, jtis[i]);
        int pkey_len = profile_key(keys[i].pkey, usernames[i]);
        if (skey_len < 0 || pkey_len < 0) {
            out[i].status = STORE_NOT_FOUND; /* no such key can exist */
            continue;
        }
        cmds[sent++] = (struct redis_cmd){.argc = 3,
                                          .argv = {"MGET", keys[i].skey, keys[i].pkey},
                                          .argvlen = {4, (size_t)skey_len, (size_t)pkey_len},
                                          .tag = i};
    }
    rc = redis_pool_pipeline(pool, sent, cmds, wait_ms);
    if (rc != STORE_OK) goto done;
    for (size_t k = 0; k < sent && rc == STORE_OK; k++)
        if (session_reply_decode(cmds[k].reply, &out[cmds[k].tag]) == STORE_UNAVAILABLE)
            rc = STORE_UNAVAILABLE;
    redis_cmds_free_replies(cmds, sent);
    if (rc != STORE_OK)
        for (size_t i = 0; i < n; i++)
            profile_cache_session_free(&out[i]);
done:
    free(keys);
    free(cmds);
    return rc;
}

int profile_cache_invalidate(struct redis_pool *pool, const char *username)
{
    char key[PROFILE_KEY_MAX];
    int key_len = profile_key(key, username);
    redisReply *r;

    if (key_len < 0) return STORE_OK;
    const char *argv[] = {"DEL", key};
    const size_t argvlen[] = {3, (size_t)key_len};
    int rc = redis_pool_command(pool, &r, 2, argv, argvlen);
    if (rc != STORE_OK) return rc;
    freeReplyObject(r);
    return STORE_OK;
}
