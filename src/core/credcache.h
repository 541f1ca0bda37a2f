/*
 * credcache: a bounded, time-limited cache of recently verified
 * credentials, so a returning user's login costs a keyed hash instead of an
 * argon2id verify (~15 ms of CPU and 19 MiB at the OWASP cost).
 *
 * The approach of Apache's mod_authn_socache, narrowed: an entry holds no
 * password and no PHC string, only
 *   tag = BLAKE2b-64(user_key, username)                     (which user)
 *   mac = BLAKE2b-256(mac_key, username, phc, password)      (what was verified)
 * with both keys random per process (libsodium's CSPRNG), and an expiry.
 * A hit needs the same username, the same password and the same PHC string
 * that is stored now, so a changed password or a rehash never matches; a
 * miss falls back to the real verify. Wrong passwords are never cached.
 *
 * The trade-off (docs/security.md): someone who can read the core's memory
 * gets both keys and the MACs, and can test password guesses for the cached
 * users at BLAKE2b speed instead of argon2id speed. Entries therefore live
 * at most ttl_s seconds, the keys die with the process, and ttl_s = 0 turns
 * the cache off.
 *
 * Layout: 8-way set-associative, sets chosen by the tag; a set's slots are
 * guarded by one of a few striped mutexes. Thread-safe.
 */
#ifndef PROFILE_CORE_CREDCACHE_H
#define PROFILE_CORE_CREDCACHE_H

#include <stddef.h>
#include <stdint.h>

struct credcache;

/*
 * Creates a cache of about entries credentials (rounded up to a power of
 * two, at least 4) that are trusted for ttl_s seconds. ttl_s <= 0 or
 * entries == 0 gives a disabled cache (every check misses, nothing is
 * stored). Returns the cache (free with credcache_destroy) or NULL with
 * errno = ENOMEM.
 */
struct credcache *credcache_create(size_t entries, int ttl_s);

/* Wipes and frees the cache. NULL is allowed. */
void credcache_destroy(struct credcache *cc);

/*
 * Returns 1 when password (len bytes) was verified for username against
 * exactly the PHC string phc less than ttl_s seconds before now (seconds
 * since the epoch), else 0. Constant-time in the password and MAC.
 */
int credcache_check(struct credcache *cc, const char *username, const char *phc,
                    const char *password, size_t len, int64_t now);

/*
 * Records that password (len bytes) verified for username against phc at
 * now. Replaces the user's previous entry, else an expired or the oldest
 * slot of the set.
 */
void credcache_remember(struct credcache *cc, const char *username, const char *phc,
                        const char *password, size_t len, int64_t now);

/* Drops username's entry (e.g. after its hash changed). */
void credcache_forget(struct credcache *cc, const char *username);

#endif
