/*
 * profile_cache: cache-aside copy of each user's public profile in Redis.
 *
 * Key "prof:<username>", value a small JSON object (jansson)
 * {"nickname": "...", "picture": "file.jpg" | null, "phc": "$argon2id$..."},
 * TTL set by the caller. The PHC string lets a login find the user's
 * current hash without MySQL (the credential cache in core/credcache.h
 * compares against it); it is the same string MySQL holds, and every
 * writer of the row (profile update, rehash) refreshes or drops the entry.
 * Redis therefore holds argon2id hashes of recently active users: see
 * docs/security.md.
 *
 * Read-your-writes: readers that missed fill the cache with SET NX EX, so a
 * reader that loaded an old row before a writer committed can never
 * overwrite the writer's newer entry; a writer, after its commit, SETs the
 * new value unconditionally (and DELs the key when that fails), so its own
 * next read sees what it wrote. Thread-safe.
 */
#ifndef PROFILE_STORE_PROFILE_CACHE_H
#define PROFILE_STORE_PROFILE_CACHE_H

#include "store/redis_pool.h"

/* A cached profile; strings are heap copies owned by the struct. */
struct profile_cache_entry {
    char *nickname;      /* UTF-8 */
    char *picture;       /* file name under the pictures directory; NULL = none */
    char *password_hash; /* argon2id PHC string; NULL when the entry has none */
};

/* Frees the strings of e and zeroes it. Safe on a zeroed entry and NULL. */
void profile_cache_entry_free(struct profile_cache_entry *e);

/*
 * Looks username up. On STORE_OK fills *out (free with
 * profile_cache_entry_free). Returns STORE_OK, STORE_NOT_FOUND (miss, or an
 * entry that does not parse; *out zeroed), STORE_UNAVAILABLE or STORE_NOMEM.
 */
int profile_cache_get(struct redis_pool *pool, const char *username,
                      struct profile_cache_entry *out);

/*
 * profile_cache_get for n users in one pipelined round trip (the core's
 * batched logins). On STORE_OK status[i] is STORE_OK with out[i] filled
 * (free with profile_cache_entry_free), STORE_NOT_FOUND (no entry, a corrupt
 * one, or an impossible username) or STORE_NOMEM. Returns STORE_UNAVAILABLE
 * or STORE_NOMEM when the batch failed as a whole (nothing in out to free).
 * wait_ms as for redis_pool_pipeline.
 */
int profile_cache_get_many(struct redis_pool *pool, size_t n, const char *const *usernames,
                           struct profile_cache_entry *out, int *status, int wait_ms);

/*
 * Reader's fill after a miss: stores e for ttl_s seconds only if no entry
 * exists (SET NX EX). Returns STORE_OK (stored or already present),
 * STORE_UNAVAILABLE or STORE_ERROR (bad key or TTL, invalid UTF-8, out of
 * memory).
 */
int profile_cache_fill(struct redis_pool *pool, const char *username,
                       const struct profile_cache_entry *e, int ttl_s);

/*
 * Writers' refresh after committed changes: stores entries[i] for
 * usernames[i] for ttl_s seconds, replacing any entry (SET EX), the n
 * commands pipelined in one round trip. On STORE_OK, status[i] is STORE_OK,
 * STORE_ERROR (bad key or TTL, invalid UTF-8, out of memory: not sent) or
 * STORE_UNAVAILABLE (Redis refused it, e.g. OOM); a writer whose entry
 * was not stored invalidates it. Returns STORE_OK, or STORE_UNAVAILABLE /
 * STORE_NOMEM for the whole batch (any of the entries may or may not have
 * been stored: the writers invalidate them all). wait_ms as for
 * redis_pool_pipeline.
 */
int profile_cache_put_many(struct redis_pool *pool, size_t n, const char *const *usernames,
                           const struct profile_cache_entry *entries, int ttl_s, int *status,
                           int wait_ms);

/*
 * The read path of every authenticated request in one round trip:
 * MGET sess:<jti> prof:<username>. On STORE_OK the session exists and
 * *owner is the username it belongs to (heap, caller frees); *out is
 * filled and *have_profile set to 1 when the profile entry was cached too
 * (free with profile_cache_entry_free), else *have_profile is 0.
 * Returns STORE_OK, STORE_NOT_FOUND (no such session), STORE_UNAVAILABLE
 * or STORE_NOMEM.
 */
int profile_cache_get_with_session(struct redis_pool *pool, const char *jti, const char *username,
                                   char **owner, struct profile_cache_entry *out,
                                   int *have_profile);

/* What profile_cache_get_sessions found for one (jti, username) pair. */
struct profile_cache_session {
    int status;                       /* STORE_OK: the session exists, owner set; STORE_NOT_FOUND:
                                         no such session; STORE_NOMEM */
    char *owner;                      /* username the session belongs to; heap */
    struct profile_cache_entry entry; /* the cached profile when have_profile */
    int have_profile;                 /* 1 when prof:<username> was cached and well-formed */
};

/* Frees what s holds and zeroes it. */
void profile_cache_session_free(struct profile_cache_session *s);

/*
 * profile_cache_get_with_session for n pairs at once: n MGETs pipelined in
 * one round trip (redis_pool_pipeline), for the core's batched fast path.
 * On STORE_OK out[i] describes pair i (free each with
 * profile_cache_session_free). Returns STORE_UNAVAILABLE or STORE_NOMEM with
 * nothing in out to free. wait_ms as for redis_pool_pipeline (0: fail at
 * once when every pooled connection is busy).
 */
int profile_cache_get_sessions(struct redis_pool *pool, size_t n, const char *const *jtis,
                               const char *const *usernames, struct profile_cache_session *out,
                               int wait_ms);

/* Deletes the entry of username (DEL; a missing entry is fine).
 * Returns STORE_OK or STORE_UNAVAILABLE. */
int profile_cache_invalidate(struct redis_pool *pool, const char *username);

#endif
