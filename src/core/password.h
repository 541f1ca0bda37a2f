/*
 * password: argon2id password hashing (libsodium crypto_pwhash), stored as
 * PHC strings ("$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>") that carry
 * their own parameters.
 *
 * Hashing costs ~20 MiB and ~10 ms of CPU per call by design, so it runs on
 * a fixed set of max_parallel hashing threads (the rest queue): a burst of
 * logins cannot exhaust memory, and because those threads run at nice +10
 * the threads serving cheap requests (profile reads) get the CPU first.
 * A dummy hash made at start-up with the configured cost lets an unknown
 * user's login take as long as a known user's (no username oracle).
 * Thread-safe.
 */
#ifndef PROFILE_CORE_PASSWORD_H
#define PROFILE_CORE_PASSWORD_H

#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "common/config.h"

#define PASSWORD_HASH_BYTES crypto_pwhash_STRBYTES /* PHC string buffer, including the NUL */

enum password_result {
    PASSWORD_MATCH = 0,
    PASSWORD_MISMATCH = 1, /* wrong password, unknown user, or a malformed stored hash */
    PASSWORD_ERROR = -1,   /* could not compute (out of memory); not the user's fault */
};

struct password_hasher;

/*
 * Creates a hasher with the cost in cfg (opslimit passes, memlimit bytes)
 * that runs at most max_parallel (> 0; 0 = number of online CPUs)
 * computations at once, and computes the dummy hash. sodium_init() must
 * have succeeded. Returns the hasher (free with password_hasher_destroy) or
 * NULL with errno = EINVAL (cost outside libsodium's limits) or ENOMEM.
 */
struct password_hasher *password_hasher_create(const struct config_password *cfg, int max_parallel);

/* Frees h. No call may be in flight. NULL is allowed. */
void password_hasher_destroy(struct password_hasher *h);

/*
 * Hashes password (len bytes, any content) with a fresh random salt at the
 * configured cost into out as a NUL-terminated PHC string.
 * Returns 0, or -1 (out of memory) with out = "".
 */
int password_hash(struct password_hasher *h, const char *password, size_t len,
                  char out[PASSWORD_HASH_BYTES]);

/*
 * Checks password (len bytes) against the PHC string phc in constant time
 * for a given hash. When phc is NULL (unknown user) the dummy hash is
 * verified instead and the result is PASSWORD_MISMATCH, taking the same
 * time. Returns an enum password_result.
 */
int password_verify(struct password_hasher *h, const char *phc, const char *password, size_t len);

/*
 * Gauge for metrics and tests: the largest number of hash computations that
 * ran at the same time since h was created (never above max_parallel).
 */
int password_hasher_peak(const struct password_hasher *h);

/*
 * Returns 1 when phc was made with a cost or algorithm other than the
 * configured one (crypto_pwhash_str_needs_rehash), so it should be replaced
 * after a successful login; 0 when it is current; -1 when phc is not a
 * valid argon2 PHC string.
 */
int password_needs_rehash(const struct password_hasher *h, const char *phc);

#endif
