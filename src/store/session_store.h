/*
 * session_store: server-side session state in Redis.
 *
 * A session is the key "sess:<jti>" (jti = the token's JWT ID claim,
 * RFC 7519 section 4.1.7) holding the username, with a TTL equal to the
 * token lifetime. A token is accepted only while its key exists and names
 * the token's subject, so deleting the key (logout) kills a token whose
 * signature is still valid. Thread-safe.
 */
#ifndef PROFILE_STORE_SESSION_STORE_H
#define PROFILE_STORE_SESSION_STORE_H

#include "store/redis_pool.h"

/*
 * Stores session jti (NUL-terminated, at most 100 bytes) -> username for
 * ttl_s seconds (> 0) with SET ... EX. (jti holds 128 random bits, so no
 * NX check: a collision is not a practical event, and a plain SET may be
 * resent safely after a lost connection.)
 * Returns STORE_OK, STORE_UNAVAILABLE, or STORE_ERROR (bad arguments or
 * unexpected reply).
 */
#define SESSION_KEY_PREFIX "sess:"
#define SESSION_KEY_MAX 128 /* bytes; jti is 32 hex digits, we refuse longer ones */

/*
 * Writes the Redis key of session jti ("sess:<jti>", NUL-terminated) into
 * key. Returns its length in bytes, or -1 when jti is too long.
 */
int session_store_key(char key[SESSION_KEY_MAX], const char *jti);

/*
 * Stores session jti for username: SET sess:<jti> <username> EX ttl_s
 * (seconds). Returns STORE_OK, STORE_UNAVAILABLE, or STORE_ERROR (jti too
 * long, ttl_s <= 0, unexpected reply).
 */
int session_store_put(struct redis_pool *pool, const char *jti, const char *username, int ttl_s);

/*
 * session_store_put for n sessions in one pipelined round trip (the core's
 * batched logins). On STORE_OK status[i] is STORE_OK or STORE_ERROR for
 * session i. Returns STORE_UNAVAILABLE or STORE_NOMEM when the batch failed
 * as a whole (some sessions may have been stored: they expire unused), or
 * STORE_ERROR with nothing sent when a jti is too long or ttl_s <= 0.
 * wait_ms as for redis_pool_pipeline.
 */
int session_store_put_many(struct redis_pool *pool, size_t n, const char *const *jtis,
                           const char *const *usernames, int ttl_s, int *status, int wait_ms);

/*
 * Looks session jti up. On STORE_OK *username is a heap copy of the stored
 * username (caller frees). Returns STORE_OK, STORE_NOT_FOUND (logged out or
 * expired), STORE_UNAVAILABLE, STORE_ERROR (unexpected reply type) or
 * STORE_NOMEM; *username is NULL unless STORE_OK.
 */
int session_store_get(struct redis_pool *pool, const char *jti, char **username);

/*
 * Deletes session jti. Deleting a session that is already gone succeeds.
 * Returns STORE_OK or STORE_UNAVAILABLE.
 */
int session_store_delete(struct redis_pool *pool, const char *jti);

#endif
