/*
 * token: session tokens as JSON Web Tokens (RFC 7519) signed with HMAC
 * SHA-256 (JWS "HS256", RFC 7518 section 3.2), through libjwt 1.10.
 *
 * Claims: jti (128 random bits as 32 lowercase hex digits, the Redis
 * session key), sub (username), iat and exp (seconds since the epoch).
 *
 * libjwt 1.10 verifies with whatever algorithm the token's own header names
 * and checks no time claim, so token_verify() itself insists on HS256
 * (refusing "none" and every other algorithm, including HS384/HS512 made
 * with the right key) and checks exp and iat. A valid token is necessary
 * but not sufficient: the caller must also find its session in Redis.
 */
#ifndef PROFILE_CORE_TOKEN_H
#define PROFILE_CORE_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "common/validate.h"

#define TOKEN_JTI_HEX 32       /* hex digits of the 128-bit jti */
#define TOKEN_MAX_BYTES 4096   /* longer strings are refused before parsing */
#define TOKEN_CLOCK_SKEW_S 60  /* iat may be this far in the future (clock drift), seconds */
#define TOKEN_MIN_KEY_BYTES 32 /* HS256 key: at least the hash output size (RFC 7518 3.2) */

enum token_status {
    TOKEN_OK = 0,
    TOKEN_INVALID = -1, /* malformed, bad signature, or missing/ill-formed claims */
    TOKEN_BAD_ALG = -2, /* signed (or not) with an algorithm other than HS256 */
    TOKEN_EXPIRED = -3, /* signature and claims fine, but exp <= now */
    TOKEN_ERROR = -4,   /* key too short or out of memory: not the client's fault */
};

/* The claims of a verified or freshly issued token. */
struct token_claims {
    char jti[TOKEN_JTI_HEX + 1];      /* JWT ID, lowercase hex */
    char sub[USERNAME_MAX_BYTES + 1]; /* subject: the username */
    int64_t iat;                      /* issued at, seconds since the epoch */
    int64_t exp;                      /* expires at, seconds since the epoch */
};

/* Short English name of a token_status for logs. */
const char *token_status_str(int status);

/*
 * Issues a token for username (must pass validate_username) valid from now
 * (seconds since the epoch) for ttl_s seconds (> 0), signed with key
 * (key_len >= TOKEN_MIN_KEY_BYTES bytes). On TOKEN_OK *token is the compact
 * serialisation (heap, caller frees with free()) and *claims what it holds.
 * Returns TOKEN_OK, TOKEN_INVALID (bad username or ttl) or TOKEN_ERROR;
 * *token is NULL on failure.
 */
int token_issue(const unsigned char *key, size_t key_len, const char *username, int64_t now,
                int ttl_s, char **token, struct token_claims *claims);

/*
 * Verifies token (NUL-terminated) against key at time now: HS256 signature,
 * alg exactly HS256, exp > now, iat <= now + TOKEN_CLOCK_SKEW_S, iat < exp,
 * sub a valid username and jti 32 lowercase hex digits. Fills *claims on
 * TOKEN_OK and on TOKEN_EXPIRED (the token is authentic, just too old: a
 * logout may still delete its session); zeroes it otherwise.
 * Returns an enum token_status.
 */
int token_verify(const unsigned char *key, size_t key_len, const char *token, int64_t now,
                 struct token_claims *claims);

/*
 * A cache of verified tokens, so a session's every request does not pay for
 * libjwt's decode (callgrind: 72.5k of the core's 114k instructions per
 * profile read go to token_verify, in HMAC set-up, jansson and base64).
 *
 * Sound because a JWT is immutable: the same bytes verified once under the
 * same key verify again, with the same claims, until exp. So an entry holds
 * the whole token and its claims, a hit needs the whole token to be equal
 * (compared in constant time), and exp is checked against now on every hit.
 * Revocation is unaffected: the caller still checks the session in Redis
 * on every request. The key is not part of the entry: use one cache per key
 * (the core's JWT secret is fixed for the life of the process).
 *
 * 2-way set-associative: a keyed hash (SipHash-2-4, random key per cache) of
 * a token's bytes picks its bucket of two slots, so nobody can aim tokens at
 * another one's bucket. A token is cached in an empty slot of its bucket, or
 * else replaces the entry not used most recently (each bucket remembers
 * which of its two was hit or filled last); so two tokens sharing a bucket
 * both stay cached, and it takes a third to evict one. Locks are striped,
 * both slots of a bucket under the same one; safe from any thread.
 */
struct token_cache;

/* Longer tokens are verified, not cached (ours are ~210-290), bytes. */
#define TOKEN_CACHE_TOKEN_MAX 384

/*
 * Creates a cache holding up to entries tokens: entries slots (~500 bytes
 * each, allocated lazily by the kernel as they are used) in buckets of two,
 * ceil(entries / 2) buckets. An odd entries makes the last bucket one of a
 * single usable slot (direct-mapped, as entries 1 is as a whole), so the
 * cache never holds more than entries tokens. entries 0 gives NULL, which
 * every function below takes as "no cache" (always verifies). Returns NULL
 * with errno ENOMEM on failure too: check entries before calling when that
 * matters.
 */
struct token_cache *token_cache_create(size_t entries);

/* Frees tc (NULL is fine). No call may be in progress. */
void token_cache_destroy(struct token_cache *tc);

/*
 * token_verify() through tc: the same arguments, results and claims. A hit
 * (the same token verified earlier by this cache) costs a hash, a lock and
 * up to two compares; TOKEN_EXPIRED once its exp <= now. Only TOKEN_OK
 * results are cached. tc NULL: plain token_verify().
 */
int token_verify_cached(struct token_cache *tc, const unsigned char *key, size_t key_len,
                        const char *token, int64_t now, struct token_claims *claims);

#endif
