#include "core/service.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/validate.h"
#include "core/credcache.h"
#include "core/password.h"
#include "core/picture.h"
#include "core/token.h"
#include "rpc/message.h"
#include "rpc/server.h"
#include "store/db_pool.h"
#include "store/profile_cache.h"
#include "store/redis_pool.h"
#include "store/session_store.h"
#include "store/store.h"
#include "store/user_store.h"

/* Writers of one user's profile are serialised on one of these stripes, so
 * two concurrent updates of the same user commit and refresh the cache in
 * the same order (otherwise the older value could be cached last). */
#define SERVICE_USER_LOCKS 1024

/* Requests one fast-path pass or group-commit step takes at once (one
 * pipelined Redis round trip, one UPDATE); equals USER_STORE_NICKNAMES_MAX. */
#define SERVICE_BATCH_MAX 64

/* The rpc_call group (rpc/server.h) of nickname-only edits. */
#define SERVICE_GROUP_NICKNAME 1

#define MSG_DB_UNAVAILABLE "The database is unavailable, please retry."
#define MSG_REDIS_UNAVAILABLE "The session store is unavailable, please retry."
#define MSG_INTERNAL "Something went wrong on our side, please retry."
#define MSG_BAD_CREDENTIALS "Wrong username or password."
#define MSG_BAD_SESSION "Your session is invalid or has expired, please log in again."
#define MSG_UNSUPPORTED "The file is not a JPEG, PNG, GIF or WebP image."

/* Counters since start, served by METRICS (see CoreMetrics in proto/profile.proto). */
struct service_counters {
    _Atomic uint64_t requests;         /* RPC requests handled */
    _Atomic uint64_t logins_succeeded; /* LOGIN answered OK */
    _Atomic uint64_t logins_failed;    /* LOGIN refused: wrong credentials or bad username */
    _Atomic uint64_t cache_hits;       /* GET_PROFILE answered from the Redis cache */
    _Atomic uint64_t cache_misses;     /* GET_PROFILE that read MySQL */
    _Atomic uint64_t mysql_errors;     /* failed MySQL calls (down, timeout, error) */
    _Atomic uint64_t redis_errors;     /* failed Redis calls, the cache's included */
    _Atomic uint64_t nickname_edits;   /* nickname-only edits committed */
    _Atomic uint64_t nickname_commits; /* multi-row UPDATEs that committed them */
};

struct service {
    struct config cfg;                /* copy, read-only after create */
    struct service_counters counters; /* for METRICS */
    struct db_pool *db;               /* users table */
    struct redis_pool *redis;         /* sessions and profile cache */
    struct password_hasher *hasher;   /* argon2id on nice +10 threads */
    struct picture_store *pictures;   /* avatar files */
    struct credcache *creds;          /* recently verified logins (skip argon2id) */
    struct token_cache *tokens;       /* recently verified tokens (skip libjwt); NULL = off */
    pthread_mutex_t user_locks[SERVICE_USER_LOCKS];
};

/* One request being served: what every helper needs for replies and logs. */
struct call {
    struct service *svc;
    const Rpc__Request *req;
    Rpc__Response *resp;
    uint64_t rid;      /* request id, in every log line */
    const char *event; /* audit event name: login, logout, get_profile... */
    char ip[64];       /* client IP, quoted for logs */
    char user[80];     /* username once known, quoted for logs ("-" before) */
};

/* ---------------------------------------------------------------- helpers */

static const char *str_or_empty(const char *s)
{
    return s != NULL ? s : "";
}

static const char *status_name(Rpc__Status st)
{
    switch (st) {
    case RPC__STATUS__STATUS_OK:
        return "ok";
    case RPC__STATUS__STATUS_INVALID_ARGUMENT:
        return "invalid_argument";
    case RPC__STATUS__STATUS_UNAUTHENTICATED:
        return "unauthenticated";
    case RPC__STATUS__STATUS_NOT_FOUND:
        return "not_found";
    case RPC__STATUS__STATUS_TOO_LARGE:
        return "too_large";
    case RPC__STATUS__STATUS_UNSUPPORTED_MEDIA_TYPE:
        return "unsupported_media_type";
    case RPC__STATUS__STATUS_UNAVAILABLE:
        return "unavailable";
    case RPC__STATUS__STATUS_INTERNAL:
        return "internal";
    case RPC__STATUS__STATUS_WOULD_BLOCK:
        return "would_block";
    default:
        return "unknown";
    }
}

static void call_set_user(struct call *c, const char *username)
{
    log_quote(c->user, sizeof(c->user), username, strlen(username));
}

/*
 * Answers with an error status and writes the audit line for it: one line
 * per failed request, at error level for infrastructure failures (someone
 * must look) and info for the user's own mistakes. reason is a log-only
 * detail (never shown to the user: "unknown_user" vs "wrong_password").
 */
__attribute__((format(printf, 5, 6))) static void reply_error(struct call *c, Rpc__Status st,
                                                              const char *code, const char *reason,
                                                              const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    rpc_response_fail(c->resp, st, code, "%s", n < 0 ? "" : msg);
    if (st == RPC__STATUS__STATUS_UNAVAILABLE || st == RPC__STATUS__STATUS_INTERNAL)
        log_error(c->rid, "event=%s outcome=failure status=%s code=%s reason=%s user=%s ip=%s",
                  c->event, status_name(st), code, reason, c->user, c->ip);
    else
        log_info(c->rid, "event=%s outcome=failure status=%s code=%s reason=%s user=%s ip=%s",
                 c->event, status_name(st), code, reason, c->user, c->ip);
}

static void reply_internal(struct call *c, const char *reason)
{
    reply_error(c, RPC__STATUS__STATUS_INTERNAL, "internal_error", reason, MSG_INTERNAL);
}

/* Maps a failed MySQL store call (not NOT_FOUND) to the reply, uncounted. */
static void reply_db_status(struct call *c, int rc)
{
    if (rc == STORE_UNAVAILABLE)
        reply_error(c, RPC__STATUS__STATUS_UNAVAILABLE, "database_unavailable",
                    "database_unavailable", MSG_DB_UNAVAILABLE);
    else
        reply_internal(c, rc == STORE_NOMEM ? "out_of_memory" : "database_error");
}

/* reply_db_status, counting the failed call in METRICS. */
static void reply_db_failure(struct call *c, int rc)
{
    atomic_fetch_add(&c->svc->counters.mysql_errors, 1);
    reply_db_status(c, rc);
}

/* Maps a failed Redis store call (not NOT_FOUND) to the reply, uncounted. */
static void reply_redis_status(struct call *c, int rc)
{
    if (rc == STORE_UNAVAILABLE)
        reply_error(c, RPC__STATUS__STATUS_UNAVAILABLE, "session_store_unavailable",
                    "redis_unavailable", MSG_REDIS_UNAVAILABLE);
    else
        reply_internal(c, rc == STORE_NOMEM ? "out_of_memory" : "redis_error");
}

/* reply_redis_status, counting the failed call in METRICS. */
static void reply_redis_failure(struct call *c, int rc)
{
    atomic_fetch_add(&c->svc->counters.redis_errors, 1);
    reply_redis_status(c, rc);
}

static void reply_bad_session(struct call *c, const char *reason)
{
    reply_error(c, RPC__STATUS__STATUS_UNAUTHENTICATED, "invalid_session", reason, MSG_BAD_SESSION);
}

/* Fills resp->profile. picture_url = url_prefix + file name, "" when none.
 * Returns 0, or -1 on allocation failure (nothing reported yet). */
static int set_profile(struct call *c, const char *username, const char *nickname,
                       const char *picture)
{
    Rpc__Profile *p = rpc_response_profile(c->resp);
    char *url = NULL;
    int rc = -1;

    if (p == NULL) return -1;
    if (picture != NULL && picture[0] != '\0') {
        const char *prefix = c->svc->cfg.picture.url_prefix;
        size_t n = strlen(prefix) + strlen(picture) + 1;
        url = malloc(n);
        if (url == NULL) return -1;
        snprintf(url, n, "%s%s", prefix, picture);
    }
    if (rpc_str_set(&p->username, username) != 0 || rpc_str_set(&p->nickname, nickname) != 0 ||
        rpc_str_set(&p->picture_url, url) != 0)
        goto done;
    rc = 0;
done:
    free(url);
    return rc;
}

static pthread_mutex_t *user_lock(struct service *svc, const char *username)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)username; *p; p++)
        h = (h ^ *p) * 16777619u;
    return &svc->user_locks[h % SERVICE_USER_LOCKS];
}

/*
 * Checks the request's token (RFC 7519: HS256 signature, exp, iat, sub).
 * Returns 0 with *claims filled, or -1 after replying.
 */
static int verify_token(struct call *c, struct token_claims *claims)
{
    struct service *svc = c->svc;
    int trc = token_verify_cached(svc->tokens, svc->cfg.jwt_secret, svc->cfg.jwt_secret_len,
                                  str_or_empty(c->req->token), (int64_t)time(NULL), claims);

    if (trc == TOKEN_ERROR) {
        reply_internal(c, "token_error");
        return -1;
    }
    if (trc == TOKEN_EXPIRED) call_set_user(c, claims->sub);
    if (trc != TOKEN_OK) {
        char reason[32];
        snprintf(reason, sizeof(reason), "token_%s", token_status_str(trc));
        reply_bad_session(c, reason);
        return -1;
    }
    call_set_user(c, claims->sub);
    return 0;
}

/*
 * The Redis half of authentication: sess:<jti> must exist and name the
 * token's subject (a logged-out token dies although its signature is
 * valid). When entry is not NULL the subject's cached profile is fetched
 * in the same round trip (*have_profile says whether there was one).
 * Returns 0, or -1 after replying.
 */
static int check_session(struct call *c, const struct token_claims *claims,
                         struct profile_cache_entry *entry, int *have_profile)
{
    struct service *svc = c->svc;
    char *owner = NULL;
    int rc;
    if (entry != NULL)
        rc = profile_cache_get_with_session(svc->redis, claims->jti, claims->sub, &owner, entry,
                                            have_profile);
    else
        rc = session_store_get(svc->redis, claims->jti, &owner);
    if (rc == STORE_NOT_FOUND) {
        reply_bad_session(c, "session_gone");
        return -1;
    }
    if (rc != STORE_OK) {
        reply_redis_failure(c, rc);
        return -1;
    }
    rc = strcmp(owner, claims->sub) == 0 ? 0 : -1;
    free(owner);
    if (rc != 0) {
        if (entry != NULL) profile_cache_entry_free(entry);
        reply_bad_session(c, "session_mismatch");
    }
    return rc;
}

/* ------------------------------------------------------------------ LOGIN */

/* After a successful login with an outdated hash: store one at today's cost,
 * and make u carry it, so the profile cache filled from u after this never
 * holds the replaced hash. Failures only cost a later retry, so they are
 * logged, not returned. */
static void rehash_if_needed(struct call *c, struct user_record *u, const char *password,
                             size_t len)
{
    struct service *svc = c->svc;
    char phc[PASSWORD_HASH_BYTES];

    if (password_needs_rehash(svc->hasher, u->password_hash) != 1) return;
    if (password_hash(svc->hasher, password, len, phc) != 0) {
        log_warn(c->rid, "event=password_rehash outcome=failure reason=hash_failed user=%s",
                 c->user);
        return;
    }
    int rc = user_store_set_password_hash(svc->db, u->username, u->password_hash, phc);
    char *fresh = rc == STORE_OK ? strdup(phc) : NULL;
    sodium_memzero(phc, sizeof(phc));
    /* The cached profile carries the old hash: drop it (and its credential). */
    credcache_forget(svc->creds, u->username);
    if (profile_cache_invalidate(svc->redis, u->username) != STORE_OK)
        log_warn(c->rid, "event=profile_cache_invalidate outcome=failure user=%s", c->user);
    if (rc == STORE_OK) {
        /* On out of memory fresh is NULL: the entry is then cached without a
         * hash, and logins ask MySQL until it expires. */
        free(u->password_hash);
        u->password_hash = fresh;
        if (fresh != NULL)
            credcache_remember(svc->creds, u->username, fresh, password, len, (int64_t)time(NULL));
        log_info(c->rid, "event=password_rehash outcome=success user=%s", c->user);
    } else {
        /* The row may hold a newer hash than u (a concurrent rehash): never
         * cache u's. */
        free(u->password_hash);
        u->password_hash = NULL;
        log_warn(c->rid, "event=password_rehash outcome=failure reason=%s user=%s",
                 store_status_str(rc), c->user);
    }
}

static void handle_login(struct call *c)
{
    struct service *svc = c->svc;
    const char *username = str_or_empty(c->req->username);
    const char *password = str_or_empty(c->req->password);
    size_t ulen = strlen(username), plen = strlen(password);
    struct user_record u = {0};
    struct token_claims claims;
    char *token = NULL;
    int rc;

    call_set_user(c, username);
    if (!validate_username(username, ulen)) {
        reply_error(c, RPC__STATUS__STATUS_INVALID_ARGUMENT, "invalid_username", "invalid_username",
                    "A username is 1 to 64 letters, digits, '_', '.' or '-'.");
        return;
    }
    if (plen > SERVICE_PASSWORD_MAX_BYTES) {
        reply_error(c, RPC__STATUS__STATUS_INVALID_ARGUMENT, "invalid_password",
                    "password_too_long", "A password is at most %d bytes.",
                    SERVICE_PASSWORD_MAX_BYTES);
        return;
    }

    /* The cached profile carries the stored hash: a returning user needs no
     * MySQL. Any Redis trouble just means the database is asked. */
    struct profile_cache_entry cached = {0};
    int cached_ok = profile_cache_get(svc->redis, username, &cached) == STORE_OK &&
                    cached.password_hash != NULL;
    atomic_fetch_add(cached_ok ? &svc->counters.cache_hits : &svc->counters.cache_misses, 1);
    if (cached_ok) {
        u.username = strdup(username);
        u.nickname = cached.nickname, cached.nickname = NULL;
        u.picture = cached.picture, cached.picture = NULL;
        u.password_hash = cached.password_hash, cached.password_hash = NULL;
        rc = u.username != NULL ? STORE_OK : STORE_NOMEM;
    } else {
        rc = user_store_get_by_username(svc->db, username, &u);
    }
    profile_cache_entry_free(&cached);
    if (rc != STORE_OK && rc != STORE_NOT_FOUND) {
        /* Never fall through to "wrong password": the user may be fine. */
        reply_db_failure(c, rc);
        goto done;
    }
    int prc;
    int64_t now = (int64_t)time(NULL);
    if (rc == STORE_OK &&
        credcache_check(svc->creds, username, u.password_hash, password, plen, now)) {
        prc = PASSWORD_MATCH;
    } else {
        /* An unknown user is verified against the dummy hash: same answer,
         * same time. */
        prc = password_verify(svc->hasher, rc == STORE_OK ? u.password_hash : NULL, password, plen);
        if (prc == PASSWORD_MATCH)
            credcache_remember(svc->creds, username, u.password_hash, password, plen, now);
    }
    if (prc == PASSWORD_ERROR) {
        reply_error(c, RPC__STATUS__STATUS_UNAVAILABLE, "server_busy", "password_hash_failed",
                    "The server is busy, please retry.");
        goto done;
    }
    if (prc != PASSWORD_MATCH) {
        reply_error(c, RPC__STATUS__STATUS_UNAUTHENTICATED, "invalid_credentials",
                    rc == STORE_OK ? "wrong_password" : "unknown_user", MSG_BAD_CREDENTIALS);
        goto done;
    }
    rehash_if_needed(c, &u, password, plen);

    if (token_issue(svc->cfg.jwt_secret, svc->cfg.jwt_secret_len, u.username, (int64_t)time(NULL),
                    svc->cfg.core.token_ttl_s, &token, &claims) != TOKEN_OK) {
        reply_internal(c, "token_issue_failed");
        goto done;
    }
    rc = session_store_put(svc->redis, claims.jti, u.username, svc->cfg.core.token_ttl_s);
    if (rc != STORE_OK) {
        reply_redis_failure(c, rc);
        goto done;
    }
    if (rpc_str_set(&c->resp->token, token) != 0 ||
        set_profile(c, u.username, u.nickname, u.picture) != 0) {
        /* The session exists but the client will never learn its token. */
        (void)session_store_delete(svc->redis, claims.jti);
        reply_internal(c, "out_of_memory");
        goto done;
    }
    c->resp->token_ttl_s = (uint32_t)svc->cfg.core.token_ttl_s;
    c->resp->status = RPC__STATUS__STATUS_OK;

    /* The profile page usually follows: warm the cache (NX: never over a
     * writer's newer entry). A failure here costs one database read later. */
    if (!cached_ok) {
        struct profile_cache_entry entry = {
            .nickname = u.nickname, .picture = u.picture, .password_hash = u.password_hash};
        rc = profile_cache_fill(svc->redis, u.username, &entry, svc->cfg.core.cache_ttl_s);
        if (rc != STORE_OK) {
            atomic_fetch_add(&svc->counters.redis_errors, 1);
            log_warn(c->rid, "event=profile_cache_fill outcome=failure reason=%s user=%s",
                     store_status_str(rc), c->user);
        }
    }
    log_info(c->rid, "event=login outcome=success user=%s ip=%s", c->user, c->ip);
done:
    free(token);
    user_record_free(&u);
}

/* ----------------------------------------------------------------- LOGOUT */

static void handle_logout(struct call *c)
{
    struct service *svc = c->svc;
    struct token_claims claims;
    int trc = token_verify(svc->cfg.jwt_secret, svc->cfg.jwt_secret_len,
                           str_or_empty(c->req->token), (int64_t)time(NULL), &claims);

    if (trc == TOKEN_ERROR) {
        reply_internal(c, "token_error");
        return;
    }
    if (trc != TOKEN_OK && trc != TOKEN_EXPIRED) {
        char reason[32];
        snprintf(reason, sizeof(reason), "token_%s", token_status_str(trc));
        reply_bad_session(c, reason);
        return;
    }
    call_set_user(c, claims.sub);
    /* Deleting a session that is already gone (expired, logged out twice)
     * is a success: the caller's goal, a dead token, holds. */
    int rc = session_store_delete(svc->redis, claims.jti);
    if (rc != STORE_OK) {
        reply_redis_failure(c, rc);
        return;
    }
    c->resp->status = RPC__STATUS__STATUS_OK;
    log_info(c->rid, "event=logout outcome=success user=%s ip=%s", c->user, c->ip);
}

/* ------------------------------------------------------------ GET_PROFILE */

static void handle_get_profile(struct call *c)
{
    struct service *svc = c->svc;
    struct token_claims claims;
    struct profile_cache_entry entry = {0};
    struct user_record u = {0};
    int have_profile = 0, rc;

    /* Session and cached profile in one Redis round trip (the hot path). */
    if (verify_token(c, &claims) != 0 || check_session(c, &claims, &entry, &have_profile) != 0)
        return;
    if (have_profile) {
        atomic_fetch_add(&svc->counters.cache_hits, 1);
        if (set_profile(c, claims.sub, entry.nickname, entry.picture) != 0)
            reply_internal(c, "out_of_memory");
        else
            c->resp->status = RPC__STATUS__STATUS_OK;
        log_debug(c->rid, "event=get_profile outcome=success cache=hit user=%s", c->user);
        profile_cache_entry_free(&entry);
        return;
    }
    atomic_fetch_add(&svc->counters.cache_misses, 1);

    rc = user_store_get_by_username(svc->db, claims.sub, &u);
    if (rc == STORE_NOT_FOUND) {
        /* The account is gone: so is the session. */
        (void)session_store_delete(svc->redis, claims.jti);
        reply_bad_session(c, "user_gone");
        return;
    }
    if (rc != STORE_OK) {
        reply_db_failure(c, rc);
        return;
    }
    entry.nickname = u.nickname;
    entry.picture = u.picture;
    entry.password_hash = u.password_hash;
    rc = profile_cache_fill(svc->redis, u.username, &entry, svc->cfg.core.cache_ttl_s);
    if (rc != STORE_OK) {
        atomic_fetch_add(&svc->counters.redis_errors, 1);
        log_warn(c->rid, "event=profile_cache_fill outcome=failure reason=%s user=%s",
                 store_status_str(rc), c->user);
    }
    if (set_profile(c, u.username, u.nickname, u.picture) != 0)
        reply_internal(c, "out_of_memory");
    else
        c->resp->status = RPC__STATUS__STATUS_OK;
    log_debug(c->rid, "event=get_profile outcome=success cache=miss user=%s", c->user);
    user_record_free(&u);
}

/* --------------------------------------------------------- UPDATE_PROFILE */

/*
 * Writers' cache refresh after their commits: the n rows' entries in one
 * pipelined SET round trip; an entry that could not be stored is deleted
 * instead, so that the next read goes to the database (read-your-writes).
 */
static void refresh_caches(struct service *svc, size_t n, struct call *const *cs,
                           const struct user_record *const *rows)
{
    const char *users[SERVICE_BATCH_MAX] = {0};
    struct profile_cache_entry entries[SERVICE_BATCH_MAX] = {0};
    int status[SERVICE_BATCH_MAX];

    for (size_t i = 0; i < n; i++) {
        users[i] = rows[i]->username;
        entries[i] = (struct profile_cache_entry){.nickname = rows[i]->nickname,
                                                  .picture = rows[i]->picture,
                                                  .password_hash = rows[i]->password_hash};
    }
    int rc = profile_cache_put_many(svc->redis, n, users, entries, svc->cfg.core.cache_ttl_s,
                                    status, -1);
    if (rc != STORE_OK) atomic_fetch_add(&svc->counters.redis_errors, 1); /* one call for all */
    for (size_t i = 0; i < n; i++) {
        if (rc == STORE_OK && status[i] == STORE_OK) continue;
        struct call *c = cs[i];
        int why = rc != STORE_OK ? rc : status[i];
        (void)log_set_tag(c->req->request_tag);
        if (rc == STORE_OK) atomic_fetch_add(&svc->counters.redis_errors, 1);
        log_warn(c->rid, "event=profile_cache_put outcome=failure reason=%s user=%s",
                 store_status_str(why), c->user);
        int drc = profile_cache_invalidate(svc->redis, users[i]);
        if (drc != STORE_OK) atomic_fetch_add(&svc->counters.redis_errors, 1);
        if (drc != STORE_OK)
            log_error(c->rid,
                      "event=profile_cache_invalidate outcome=failure reason=%s user=%s "
                      "note=\"stale profile may be served until the cache TTL ends\"",
                      store_status_str(drc), c->user);
    }
}

static void refresh_cache(struct call *c, const struct user_record *updated)
{
    refresh_caches(c->svc, 1, &c, &updated);
}

/* Maps a picture_prepare/picture_save failure to the reply. */
static void reply_picture_failure(struct call *c, int prc)
{
    switch (prc) {
    case PICTURE_TOO_LARGE: {
        size_t max = c->svc->cfg.picture.max_bytes;
        if (max >= 1024 * 1024 && max % (1024 * 1024) == 0)
            reply_error(c, RPC__STATUS__STATUS_TOO_LARGE, "picture_too_large", "picture_too_large",
                        "The picture is larger than %zu MiB.", max / (1024 * 1024));
        else
            reply_error(c, RPC__STATUS__STATUS_TOO_LARGE, "picture_too_large", "picture_too_large",
                        "The picture is larger than %zu bytes.", max);
        break;
    }
    case PICTURE_UNSUPPORTED:
        reply_error(c, RPC__STATUS__STATUS_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
                    "picture_unsupported", MSG_UNSUPPORTED);
        break;
    case PICTURE_TOO_MANY_PIXELS:
        /* Too big in pixels is still "too large": 413 on every route. */
        reply_error(c, RPC__STATUS__STATUS_TOO_LARGE, "picture_too_many_pixels",
                    "picture_too_many_pixels",
                    "The picture has too many pixels (at most %llu million).",
                    PICTURE_MAX_PIXELS / 1000000ULL);
        break;
    case PICTURE_IO:
        reply_error(c, RPC__STATUS__STATUS_UNAVAILABLE, "storage_unavailable", "picture_io",
                    "The picture could not be stored, please retry.");
        break;
    default:
        reply_internal(c, "picture_error");
        break;
    }
}

/* Writes the nickname_change audit line. */
static void log_nickname_change(struct call *c, const char *nickname)
{
    char q[NICKNAME_MAX_BYTES * 4 + 8];
    log_info(c->rid, "event=nickname_change outcome=success user=%s ip=%s nickname=%s", c->user,
             c->ip, log_quote(q, sizeof(q), nickname, strlen(nickname)));
}

/* One nickname edit of a group (update_nicknames). */
struct nick_edit {
    struct call c;                      /* begun: request, answer, log fields */
    struct token_claims claims;         /* the verified token */
    char *nickname;                     /* validated and trimmed; owned */
    struct profile_cache_session found; /* the session and cached profile (one MGET) */
    struct user_record row;             /* the row as committed: cache and answer */
    int open;                           /* 1 while no answer is set */
};

static int lock_order(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (pthread_mutex_t *const *)a;
    uintptr_t y = (uintptr_t) * (pthread_mutex_t *const *)b;
    return x < y ? -1 : x > y;
}

/* Locks the user stripes of the n edits (distinct, in address order, so
 * two groups can never wait for each other). Returns how many in locks. */
static size_t lock_users(struct service *svc, struct nick_edit *e, size_t n,
                         pthread_mutex_t **locks)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        locks[m++] = user_lock(svc, e[i].claims.sub);
    qsort(locks, m, sizeof(*locks), lock_order);
    size_t u = 0;
    for (size_t i = 0; i < m; i++)
        if (u == 0 || locks[u - 1] != locks[i]) locks[u++] = locks[i];
    for (size_t i = 0; i < u; i++)
        pthread_mutex_lock(locks[i]);
    return u;
}

/*
 * The common edit, a nickname alone, for n (1..SERVICE_BATCH_MAX) edits of
 * distinct users at once: one pipelined Redis round trip for their sessions
 * and cached rows, ONE autocommit UPDATE for all of them (group commit:
 * user_store_set_nicknames), one pipelined cache refresh. The users' locks
 * are taken before the cache is read, so the picture and hash copied into a
 * refreshed entry cannot be older than a concurrent writer's. Answers every
 * edit.
 */
static void update_nicknames(struct service *svc, struct nick_edit *e, size_t n)
{
    pthread_mutex_t *locks[SERVICE_BATCH_MAX];
    const char *jtis[SERVICE_BATCH_MAX], *subs[SERVICE_BATCH_MAX], *nicks[SERVICE_BATCH_MAX];
    struct profile_cache_session found[SERVICE_BATCH_MAX];
    struct call *cs[SERVICE_BATCH_MAX];
    const struct user_record *rows[SERVICE_BATCH_MAX];
    int status[SERVICE_BATCH_MAX];
    size_t idx[SERVICE_BATCH_MAX], m = 0, done = 0;

    for (size_t i = 0; i < n; i++) {
        e[i].open = 1;
        jtis[i] = e[i].claims.jti;
        subs[i] = e[i].claims.sub;
    }
    size_t nlocks = lock_users(svc, e, n, locks);
    /* Failures of the batch's shared calls are logged untagged (they belong
     * to every edit of it), each edit's own lines with its tag. */
    if (n > 1) (void)log_set_tag(NULL);
    int rc = profile_cache_get_sessions(svc->redis, n, jtis, subs, found, -1);
    if (rc != STORE_OK) atomic_fetch_add(&svc->counters.redis_errors, 1); /* one call for all */
    for (size_t i = 0; i < n; i++) {
        struct nick_edit *x = &e[i];
        (void)log_set_tag(x->c.req->request_tag);
        if (rc != STORE_OK) {
            reply_redis_status(&x->c, rc);
        } else if (found[i].status == STORE_NOT_FOUND) {
            reply_bad_session(&x->c, "session_gone");
        } else if (found[i].status != STORE_OK) {
            reply_redis_failure(&x->c, found[i].status);
        } else if (strcmp(found[i].owner, x->claims.sub) != 0) {
            reply_bad_session(&x->c, "session_mismatch");
        } else {
            x->found = found[i], found[i] = (struct profile_cache_session){0};
            subs[m] = x->claims.sub;
            nicks[m] = x->nickname;
            idx[m++] = i;
            continue;
        }
        x->open = 0;
        if (rc == STORE_OK) profile_cache_session_free(&found[i]);
    }

    int maybe_written = 0;
    if (n > 1) (void)log_set_tag(NULL);
    rc = m > 0 ? user_store_set_nicknames(svc->db, m, subs, nicks, status, &maybe_written)
               : STORE_OK;
    if (m > 0 && rc == STORE_OK) atomic_fetch_add(&svc->counters.nickname_commits, 1);
    if (m > 0 && rc != STORE_OK) atomic_fetch_add(&svc->counters.mysql_errors, 1); /* one call */
    for (size_t k = 0; k < m; k++) {
        struct nick_edit *x = &e[idx[k]];
        struct call *c = &x->c;
        (void)log_set_tag(c->req->request_tag);
        x->open = 0;
        if (rc != STORE_OK) {
            /* Sent and then lost, the UPDATE may have been applied: let the next
             * read ask MySQL. Otherwise the cached profile is still the truth,
             * and dropping it would fail this user's reads and logins for as
             * long as MySQL is down (found by a fresh-user trial). */
            if (maybe_written) (void)profile_cache_invalidate(svc->redis, x->claims.sub);
            reply_db_status(c, rc);
            continue;
        }
        if (status[k] == STORE_NOT_FOUND) {
            (void)session_store_delete(svc->redis, x->claims.jti);
            (void)profile_cache_invalidate(svc->redis, x->claims.sub);
            reply_bad_session(c, "user_gone");
            continue;
        }
        struct profile_cache_entry *entry = &x->found.entry;
        int grc;
        if (x->found.have_profile && entry->password_hash != NULL) {
            x->row.username = strdup(x->claims.sub);
            x->row.nickname = strdup(x->nickname);
            x->row.picture = entry->picture, entry->picture = NULL;
            x->row.password_hash = entry->password_hash, entry->password_hash = NULL;
            grc = x->row.username != NULL && x->row.nickname != NULL ? STORE_OK : STORE_NOMEM;
        } else {
            grc = user_store_get_by_username(svc->db, x->claims.sub, &x->row);
        }
        if (grc != STORE_OK) {
            (void)profile_cache_invalidate(svc->redis, x->claims.sub);
            if (grc == STORE_NOT_FOUND)
                reply_bad_session(c, "user_gone");
            else
                reply_db_failure(c, grc); /* NOMEM lands in "internal" there */
            continue;
        }
        x->open = 1; /* committed: answered below */
        cs[done] = c;
        rows[done++] = &x->row;
    }
    if (n > 1) (void)log_set_tag(NULL);
    if (done > 0) refresh_caches(svc, done, cs, rows);
    for (size_t i = 0; i < nlocks; i++)
        pthread_mutex_unlock(locks[i]);

    for (size_t i = 0; i < n; i++) {
        struct nick_edit *x = &e[i];
        if (!x->open) continue;
        (void)log_set_tag(x->c.req->request_tag);
        log_nickname_change(&x->c, x->nickname);
        atomic_fetch_add(&svc->counters.nickname_edits, 1);
        if (set_profile(&x->c, x->row.username, x->row.nickname, x->row.picture) != 0)
            reply_internal(&x->c, "out_of_memory");
        else
            x->c.resp->status = RPC__STATUS__STATUS_OK;
        x->open = 0;
    }
    (void)log_set_tag(NULL);
}

/* Frees what the n edits hold. */
static void nick_edits_free(struct nick_edit *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(e[i].nickname);
        profile_cache_session_free(&e[i].found);
        user_record_free(&e[i].row);
    }
}

/* Validates the request's nickname into *out (trimmed heap copy, caller
 * frees). Returns 0, or -1 after replying. */
static int take_nickname(struct call *c, char **out)
{
    const char *nick = str_or_empty(c->req->nickname);
    size_t start = 0, len = 0;
    int err = validate_nickname(nick, strlen(nick), &start, &len);
    if (err != NICKNAME_OK) {
        reply_error(c, RPC__STATUS__STATUS_INVALID_ARGUMENT, "invalid_nickname", "invalid_nickname",
                    "%s", validate_nickname_message(err));
        return -1;
    }
    *out = strndup(nick + start, len);
    if (*out == NULL) {
        reply_internal(c, "out_of_memory");
        return -1;
    }
    return 0;
}

static void handle_update_profile(struct call *c)
{
    struct service *svc = c->svc;
    const Rpc__Request *req = c->req;
    struct token_claims claims;
    struct picture_blob blob = {0};
    struct user_record updated = {0};
    char *nickname = NULL, *old_picture = NULL;
    pthread_mutex_t *lock = NULL;
    int created = 0, rc;

    if (verify_token(c, &claims) != 0) return;
    if (!req->set_nickname && !req->set_picture) {
        reply_error(c, RPC__STATUS__STATUS_INVALID_ARGUMENT, "nothing_to_update",
                    "nothing_to_update", "Nothing to update: send a nickname or a picture.");
        return;
    }
    if (req->set_nickname) {
        if (take_nickname(c, &nickname) != 0) return;
        if (!req->set_picture) {
            struct nick_edit edit = {.c = *c, .claims = claims, .nickname = nickname};
            update_nicknames(svc, &edit, 1);
            nick_edits_free(&edit, 1);
            (void)log_set_tag(req->request_tag);
            return;
        }
    }
    if (check_session(c, &claims, NULL, NULL) != 0) goto done;
    if (req->set_picture) {
        /* The slow part (decode, resize, encode) runs before any lock. */
        rc = picture_prepare(svc->pictures, claims.sub, req->picture.data, req->picture.len, c->rid,
                             &blob);
        if (rc != PICTURE_OK) {
            reply_picture_failure(c, rc);
            goto done;
        }
    }

    lock = user_lock(svc, claims.sub);
    pthread_mutex_lock(lock);
    if (req->set_picture) {
        rc = picture_save(svc->pictures, &blob, &created);
        if (rc != PICTURE_OK) {
            reply_picture_failure(c, rc);
            goto done;
        }
    }
    int maybe_written = 0;
    rc = user_store_update_profile(svc->db, claims.sub, nickname,
                                   req->set_picture ? blob.name : NULL, &updated, &old_picture,
                                   &maybe_written);
    if (rc != STORE_OK) {
        /* Nothing references the new file, unless the outcome of the COMMIT
         * is unknown: then the row may name it (keep the file), and dropping
         * the cache entry makes the next read see what the database holds. */
        if (created && !maybe_written) (void)picture_remove(svc->pictures, blob.name);
        if (maybe_written || rc == STORE_NOT_FOUND)
            (void)profile_cache_invalidate(svc->redis, claims.sub);
        if (rc == STORE_NOT_FOUND) {
            (void)session_store_delete(svc->redis, claims.jti);
            reply_bad_session(c, "user_gone");
        } else {
            reply_db_failure(c, rc);
        }
        goto done;
    }
    refresh_cache(c, &updated);
    /* Only after the commit, and never the file just stored (the same
     * picture uploaded twice keeps its name). */
    if (req->set_picture && old_picture != NULL && strcmp(old_picture, blob.name) != 0)
        (void)picture_remove(svc->pictures, old_picture);
    pthread_mutex_unlock(lock);
    lock = NULL;

    if (nickname != NULL) log_nickname_change(c, nickname);
    if (req->set_picture)
        log_info(c->rid,
                 "event=picture_change outcome=success user=%s ip=%s picture=%s bytes_in=%zu "
                 "bytes_out=%zu width=%d height=%d old_picture=%s",
                 c->user, c->ip, blob.name, req->picture.len, blob.len, blob.width, blob.height,
                 old_picture != NULL ? old_picture : "-");
    if (set_profile(c, updated.username, updated.nickname, updated.picture) != 0)
        reply_internal(c, "out_of_memory");
    else
        c->resp->status = RPC__STATUS__STATUS_OK;
done:
    if (lock != NULL) pthread_mutex_unlock(lock);
    picture_blob_free(&blob);
    user_record_free(&updated);
    free(old_picture);
    free(nickname);
}

/* ----------------------------------------------------------------- HEALTH */

static void handle_health(struct call *c)
{
    int db = db_pool_ping(c->svc->db);
    int redis = redis_pool_ping(c->svc->redis);

    if (db != STORE_OK) atomic_fetch_add(&c->svc->counters.mysql_errors, 1);
    if (redis != STORE_OK) atomic_fetch_add(&c->svc->counters.redis_errors, 1);
    if (db == STORE_OK && redis == STORE_OK) {
        c->resp->status = RPC__STATUS__STATUS_OK;
        (void)rpc_str_set(&c->resp->message, "ok");
        log_debug(c->rid, "event=health outcome=success");
        return;
    }
    if (db != STORE_OK && redis != STORE_OK)
        reply_error(c, RPC__STATUS__STATUS_UNAVAILABLE, "unavailable", "mysql_and_redis_down",
                    "The database and the session store are unavailable.");
    else if (db != STORE_OK)
        reply_error(c, RPC__STATUS__STATUS_UNAVAILABLE, "database_unavailable", "mysql_down",
                    MSG_DB_UNAVAILABLE);
    else
        reply_error(c, RPC__STATUS__STATUS_UNAVAILABLE, "session_store_unavailable", "redis_down",
                    MSG_REDIS_UNAVAILABLE);
}

/* ---------------------------------------------------------------- METRICS */

static void handle_metrics(struct call *c)
{
    struct service_counters *k = &c->svc->counters;
    Rpc__CoreMetrics *m = malloc(sizeof(*m));
    if (m == NULL) {
        reply_internal(c, "out_of_memory");
        return;
    }
    rpc__core_metrics__init(m);
    m->requests = atomic_load(&k->requests);
    m->logins_succeeded = atomic_load(&k->logins_succeeded);
    m->logins_failed = atomic_load(&k->logins_failed);
    m->cache_hits = atomic_load(&k->cache_hits);
    m->cache_misses = atomic_load(&k->cache_misses);
    m->mysql_errors = atomic_load(&k->mysql_errors);
    m->redis_errors = atomic_load(&k->redis_errors);
    m->nickname_edits = atomic_load(&k->nickname_edits);
    m->nickname_commits = atomic_load(&k->nickname_commits);
    c->resp->core_metrics = m; /* freed by rpc_response_reset */
    c->resp->status = RPC__STATUS__STATUS_OK;
}

/* ------------------------------------------------------------- lifecycle */

/* Starts serving req: fills *c and tags this thread's log lines with the
 * request's. End with log_set_tag(NULL). */
static void call_begin(struct call *c, struct service *svc, const Rpc__Request *req,
                       Rpc__Response *resp)
{
    const char *ip = str_or_empty(req->client_ip);

    *c = (struct call){.svc = svc, .req = req, .resp = resp, .rid = req->id};
    c->event = rpc_method_str(req->method);
    log_quote(c->ip, sizeof(c->ip), ip, strlen(ip));
    snprintf(c->user, sizeof(c->user), "-");
    /* Every line of this request carries the caller's X-Request-Id (nginx's
     * $request_id) as tag=, so nginx, web and core lines join up. A tag that
     * is not [A-Za-z0-9-]{1,64} is dropped: the core trusts no caller. */
    (void)log_set_tag(req->request_tag);
}

/* The fast path for up to SERVICE_BATCH_MAX calls; see service_handle_batch. */
static void batch_get_profiles(struct service *svc, struct rpc_call *const *calls, size_t n)
{
    struct token_claims claims[SERVICE_BATCH_MAX];
    struct profile_cache_session found[SERVICE_BATCH_MAX];
    const char *jtis[SERVICE_BATCH_MAX], *subs[SERVICE_BATCH_MAX];
    size_t idx[SERVICE_BATCH_MAX], m = 0;
    struct call c;

    for (size_t i = 0; i < n; i++) {
        if (calls[i]->req->method != RPC__METHOD__METHOD_GET_PROFILE) continue;
        call_begin(&c, svc, calls[i]->req, calls[i]->resp);
        if (verify_token(&c, &claims[m]) != 0) {
            /* Refused on the token alone: a final answer. */
            atomic_fetch_add(&svc->counters.requests, 1);
            calls[i]->done = 1;
        } else {
            jtis[m] = claims[m].jti;
            subs[m] = claims[m].sub;
            idx[m++] = i;
        }
        (void)log_set_tag(NULL);
    }
    /* On a Redis failure, or when every pooled connection is busy (the loop
     * never waits for one), the workers do these calls, and report failures. */
    if (m == 0 || profile_cache_get_sessions(svc->redis, m, jtis, subs, found, 0) != STORE_OK)
        return;

    for (size_t k = 0; k < m; k++) {
        struct rpc_call *rc = calls[idx[k]];
        struct profile_cache_session *f = &found[k];
        call_begin(&c, svc, rc->req, rc->resp);
        call_set_user(&c, claims[k].sub);
        if (f->status == STORE_NOT_FOUND) {
            reply_bad_session(&c, "session_gone");
            rc->done = 1;
        } else if (f->status == STORE_OK && strcmp(f->owner, claims[k].sub) != 0) {
            reply_bad_session(&c, "session_mismatch");
            rc->done = 1;
        } else if (f->status == STORE_OK && f->have_profile) {
            if (set_profile(&c, claims[k].sub, f->entry.nickname, f->entry.picture) != 0) {
                uint64_t id = rc->resp->id;
                rpc_response_reset(rc->resp); /* the worker starts afresh */
                rc->resp->id = id;
            } else {
                rc->resp->status = RPC__STATUS__STATUS_OK;
                atomic_fetch_add(&svc->counters.cache_hits, 1);
                log_debug(c.rid, "event=get_profile outcome=success cache=hit user=%s", c.user);
                rc->done = 1;
            }
        }
        /* else: not cached (MySQL) or out of memory: a worker does it all. */
        if (rc->done) atomic_fetch_add(&svc->counters.requests, 1);
        profile_cache_session_free(f);
        (void)log_set_tag(NULL);
    }
}

/*
 * Logins of returning users whose password the credential cache vouches for
 * (core/credcache.h) need no argon2id and no MySQL: the batch's stored
 * hashes come in one pipelined GET, its sessions go out in one pipelined SET.
 * Anything else (bad input, uncached profile, unknown credential, a hash to
 * upgrade, any failure) is left for handle_login on a worker, which starts
 * afresh: the fast path only ever answers what handle_login would have.
 */
static void batch_logins(struct service *svc, struct rpc_call *const *calls, size_t n)
{
    const char *users[SERVICE_BATCH_MAX], *jtis[SERVICE_BATCH_MAX], *subs[SERVICE_BATCH_MAX];
    struct profile_cache_entry cached[SERVICE_BATCH_MAX];
    struct token_claims claims[SERVICE_BATCH_MAX];
    char *tokens[SERVICE_BATCH_MAX] = {0};
    int found[SERVICE_BATCH_MAX], stored[SERVICE_BATCH_MAX];
    size_t idx[SERVICE_BATCH_MAX], hit[SERVICE_BATCH_MAX], m = 0, k = 0;
    int64_t now = (int64_t)time(NULL);
    struct call c;

    for (size_t i = 0; i < n; i++) {
        const Rpc__Request *req = calls[i]->req;
        if (req->method != RPC__METHOD__METHOD_LOGIN) continue;
        const char *username = str_or_empty(req->username);
        if (!validate_username(username, strlen(username)) ||
            strlen(str_or_empty(req->password)) > SERVICE_PASSWORD_MAX_BYTES)
            continue; /* refused by handle_login, with its audit line */
        users[m] = username;
        idx[m++] = i;
    }
    if (m > 0 && profile_cache_get_many(svc->redis, m, users, cached, found, 0) != STORE_OK)
        m = 0; /* Redis trouble or no free connection: the workers do these */

    for (size_t j = 0; j < m; j++) {
        const char *password = str_or_empty(calls[idx[j]]->req->password);
        const char *phc = cached[j].password_hash;
        if (found[j] == STORE_OK && phc != NULL && password_needs_rehash(svc->hasher, phc) == 0 &&
            credcache_check(svc->creds, users[j], phc, password, strlen(password), now) &&
            token_issue(svc->cfg.jwt_secret, svc->cfg.jwt_secret_len, users[j], now,
                        svc->cfg.core.token_ttl_s, &tokens[j], &claims[j]) == TOKEN_OK) {
            jtis[k] = claims[j].jti;
            subs[k] = users[j];
            hit[k++] = j;
        }
    }
    int rc = k > 0 ? session_store_put_many(svc->redis, k, jtis, subs, svc->cfg.core.token_ttl_s,
                                            stored, 0)
                   : STORE_ERROR;
    for (size_t t = 0; rc == STORE_OK && t < k; t++) {
        size_t j = hit[t];
        struct rpc_call *call = calls[idx[j]];
        if (stored[t] != STORE_OK) continue;
        call_begin(&c, svc, call->req, call->resp);
        call_set_user(&c, users[j]);
        if (rpc_str_set(&call->resp->token, tokens[j]) != 0 ||
            set_profile(&c, users[j], cached[j].nickname, cached[j].picture) != 0) {
            /* Out of memory: the worker starts afresh; this session was never handed out. */
            uint64_t id = call->resp->id;
            rpc_response_reset(call->resp);
            call->resp->id = id;
            (void)session_store_delete(svc->redis, claims[j].jti);
        } else {
            call->resp->token_ttl_s = (uint32_t)svc->cfg.core.token_ttl_s;
            call->resp->status = RPC__STATUS__STATUS_OK;
            call->done = 1;
            atomic_fetch_add(&svc->counters.requests, 1);
            atomic_fetch_add(&svc->counters.cache_hits, 1);
            atomic_fetch_add(&svc->counters.logins_succeeded, 1);
            log_info(c.rid, "event=login outcome=success user=%s ip=%s", c.user, c.ip);
        }
        (void)log_set_tag(NULL);
    }
    for (size_t j = 0; j < m; j++) {
        free(tokens[j]);
        profile_cache_entry_free(&cached[j]);
    }
    /* The web would rather ask again on its slow lane than wait here. */
    for (size_t i = 0; i < n; i++) {
        struct rpc_call *call = calls[i];
        if (call->done || call->req->method != RPC__METHOD__METHOD_LOGIN || !call->req->fast_only)
            continue;
        call->resp->status = RPC__STATUS__STATUS_WOULD_BLOCK;
        call->done = 1;
        log_debug(call->req->id, "event=login outcome=would_block");
    }
}

/* A nickname-only UPDATE_PROFILE: what update_nicknames does. */
static int is_nickname_edit(const Rpc__Request *req)
{
    return req->method == RPC__METHOD__METHOD_UPDATE_PROFILE && req->set_nickname &&
           !req->set_picture;
}

void service_handle_batch(void *ctx, struct rpc_call *const *calls, size_t n)
{
    for (size_t off = 0; off < n; off += SERVICE_BATCH_MAX) {
        size_t len = n - off < SERVICE_BATCH_MAX ? n - off : SERVICE_BATCH_MAX;
        batch_get_profiles(ctx, calls + off, len);
        batch_logins(ctx, calls + off, len);
    }
    for (size_t i = 0; i < n; i++)
        if (!calls[i]->done && is_nickname_edit(calls[i]->req))
            calls[i]->group = SERVICE_GROUP_NICKNAME;
}

/* Up to SERVICE_BATCH_MAX calls of the nickname group: see service_handle_group. */
static void group_nicknames(struct service *svc, struct rpc_call *const *calls, size_t n)
{
    /* On the worker's stack (1 MiB, RPC_SERVER_STACK_BYTES), ~26 KiB at
     * most: a calloc of this size was a "large" malloc request, and glibc
     * consolidates every free fast-bin chunk before one (malloc_consolidate
     * was 3 % of the core's CPU under edits, docs/performance.md). Only the
     * entries in use are zeroed. */
    struct nick_edit e[SERVICE_BATCH_MAX];
    int later[SERVICE_BATCH_MAX];
    size_t m = 0;

    if (n > SERVICE_BATCH_MAX) n = SERVICE_BATCH_MAX; /* the caller slices; never more */
    memset(later, 0, n * sizeof(later[0]));
    for (size_t i = 0; i < n; i++) {
        const Rpc__Request *req = calls[i]->req;
        if (!is_nickname_edit(req)) {
            later[i] = 1;
            continue;
        }
        struct nick_edit *x = &e[m];
        memset(x, 0, sizeof(*x));
        call_begin(&x->c, svc, req, calls[i]->resp);
        atomic_fetch_add(&svc->counters.requests, 1);
        if (verify_token(&x->c, &x->claims) != 0 || take_nickname(&x->c, &x->nickname) != 0)
            continue; /* answered */
        /* A second edit of the same user waits for the first one's group. */
        for (size_t j = 0; j < m && !later[i]; j++)
            if (strcmp(e[j].claims.sub, x->claims.sub) == 0) later[i] = 1;
        if (later[i]) {
            atomic_fetch_sub(&svc->counters.requests, 1); /* service_handle counts it */
            free(x->nickname);
            memset(x, 0, sizeof(*x));
            continue;
        }
        m++;
    }
    (void)log_set_tag(NULL);
    if (m > 0) update_nicknames(svc, e, m);
    nick_edits_free(e, m);
    for (size_t i = 0; i < n; i++)
        if (later[i]) service_handle(svc, calls[i]->req, calls[i]->resp);
}

void service_handle_group(void *ctx, struct rpc_call *const *calls, size_t n)
{
    for (size_t off = 0; off < n; off += SERVICE_BATCH_MAX) {
        size_t len = n - off < SERVICE_BATCH_MAX ? n - off : SERVICE_BATCH_MAX;
        group_nicknames(ctx, calls + off, len);
    }
}

void service_handle(void *ctx, const Rpc__Request *req, Rpc__Response *resp)
{
    struct call c;

    call_begin(&c, ctx, req, resp);
    atomic_fetch_add(&c.svc->counters.requests, 1);
    switch (req->method) {
    case RPC__METHOD__METHOD_LOGIN:
        handle_login(&c);
        if (resp->status == RPC__STATUS__STATUS_OK)
            atomic_fetch_add(&c.svc->counters.logins_succeeded, 1);
        else if (resp->status == RPC__STATUS__STATUS_UNAUTHENTICATED ||
                 resp->status == RPC__STATUS__STATUS_INVALID_ARGUMENT)
            atomic_fetch_add(&c.svc->counters.logins_failed, 1);
        break;
    case RPC__METHOD__METHOD_LOGOUT:
        handle_logout(&c);
        break;
    case RPC__METHOD__METHOD_GET_PROFILE:
        handle_get_profile(&c);
        break;
    case RPC__METHOD__METHOD_UPDATE_PROFILE:
        handle_update_profile(&c);
        break;
    case RPC__METHOD__METHOD_HEALTH:
        handle_health(&c);
        break;
    case RPC__METHOD__METHOD_METRICS:
        handle_metrics(&c);
        break;
    default:
        reply_error(&c, RPC__STATUS__STATUS_INVALID_ARGUMENT, "unknown_method", "unknown_method",
                    "Unknown method %d.", (int)req->method);
        break;
    }
    (void)log_set_tag(NULL);
}

struct service *service_create(const struct config *cfg)
{
    struct service *svc;
    int locks = 0;

    if (cfg->jwt_secret_len < TOKEN_MIN_KEY_BYTES) {
        log_error(0, "event=core_init outcome=failure error=\"JWT_SECRET shorter than %d bytes\"",
                  TOKEN_MIN_KEY_BYTES);
        return NULL;
    }
    svc = calloc(1, sizeof(*svc));
    if (svc == NULL) goto nomem;
    svc->cfg = *cfg;
    for (; locks < SERVICE_USER_LOCKS; locks++)
        if (pthread_mutex_init(&svc->user_locks[locks], NULL) != 0) goto nomem;
    svc->db = db_pool_create(&cfg->mysql);
    svc->redis = redis_pool_create(&cfg->redis);
    if (svc->db == NULL || svc->redis == NULL) goto nomem;
    svc->hasher = password_hasher_create(&cfg->password, cfg->core.hash_threads);
    if (svc->hasher == NULL) {
        log_error(0,
                  "event=core_init outcome=failure error=\"bad password cost\" opslimit=%llu "
                  "memlimit=%llu",
                  (unsigned long long)cfg->password.opslimit,
                  (unsigned long long)cfg->password.memlimit);
        goto fail;
    }
    svc->pictures = picture_store_create(&cfg->picture, cfg->jwt_secret, cfg->jwt_secret_len);
    if (svc->pictures == NULL) goto fail; /* logged by picture_store_create */
    svc->creds = credcache_create((size_t)cfg->core.credential_cache_entries,
                                  cfg->core.credential_cache_ttl_s);
    if (svc->creds == NULL) {
        picture_store_destroy(svc->pictures);
        goto nomem;
    }
    svc->tokens = token_cache_create((size_t)cfg->core.token_cache_entries);
    if (svc->tokens == NULL && cfg->core.token_cache_entries > 0) {
        credcache_destroy(svc->creds);
        picture_store_destroy(svc->pictures);
        goto nomem;
    }
    return svc;

nomem:
    log_error(0, "event=core_init outcome=failure error=\"out of memory\"");
fail:
    if (svc != NULL) {
        while (locks > 0)
            pthread_mutex_destroy(&svc->user_locks[--locks]);
        password_hasher_destroy(svc->hasher);
        redis_pool_destroy(svc->redis);
        db_pool_destroy(svc->db);
        sodium_memzero(svc, sizeof(*svc));
        free(svc);
    }
    return NULL;
}

void service_destroy(struct service *svc)
{
    if (svc == NULL) return;
    token_cache_destroy(svc->tokens);
    credcache_destroy(svc->creds);
    picture_store_destroy(svc->pictures);
    password_hasher_destroy(svc->hasher);
    redis_pool_destroy(svc->redis);
    db_pool_destroy(svc->db);
    for (int i = 0; i < SERVICE_USER_LOCKS; i++)
        pthread_mutex_destroy(&svc->user_locks[i]);
    /* The copy of the config holds the JWT secret and the MySQL password. */
    sodium_memzero(svc, sizeof(*svc));
    free(svc);
}
