/*
 * user_store: the users table (sql/schema.sql), through prepared statements
 * on the db_pool.
 *
 * Each function borrows one pooled connection for its duration. When a
 * connection that had worked before turns out to be dead (the database was
 * restarted), a read, or a write that had not reached COMMIT, is retried
 * once on a fresh connection, so a restart costs no user-visible error.
 * Thread-safe.
 */
#ifndef PROFILE_STORE_USER_STORE_H
#define PROFILE_STORE_USER_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "store/db_pool.h"

/* One row of users. Strings are heap copies owned by the record. */
struct user_record {
    uint64_t id;         /* users.id */
    char *username;      /* ASCII, 1..64 bytes */
    char *nickname;      /* UTF-8, 1..64 code points */
    char *password_hash; /* argon2id PHC string; NULL when the call did not load it */
    char *picture;       /* file name under the pictures directory; NULL = no picture */
};

/* Frees the strings of u and zeroes it. Safe on a zeroed record and NULL. */
void user_record_free(struct user_record *u);

/*
 * Loads the row whose username equals username (NUL-terminated, compared
 * byte-exact) into *out (free with user_record_free).
 * Returns STORE_OK, STORE_NOT_FOUND (no such user; *out zeroed),
 * STORE_UNAVAILABLE, STORE_ERROR or STORE_NOMEM.
 */
int user_store_get_by_username(struct db_pool *pool, const char *username, struct user_record *out);

/*
 * Replaces the password hash of username with new_hash, but only while it
 * still equals old_hash (so a rehash after login cannot overwrite a hash
 * changed meanwhile). Both are PHC strings.
 * Returns STORE_OK, STORE_NOT_FOUND (no such user or the hash changed),
 * STORE_UNAVAILABLE or STORE_ERROR.
 */
int user_store_set_password_hash(struct db_pool *pool, const char *username, const char *old_hash,
                                 const char *new_hash);

#define USER_STORE_NICKNAMES_MAX 64 /* rows one user_store_set_nicknames call may set */

/*
 * Sets the nicknames of n (1..USER_STORE_NICKNAMES_MAX) distinct users:
 * nicknames[i] (UTF-8, already validated) for usernames[i], with ONE
 * autocommit UPDATE ... CASE for all of them, so a batch of edits costs one
 * round trip and one commit instead of n (the core's group commit,
 * docs/performance.md). When that statement matched fewer rows than n (a
 * user was deleted), each row is set once more alone to learn which one.
 * On STORE_OK, status[i] is STORE_OK or STORE_NOT_FOUND (no such user).
 * Returns STORE_OK, STORE_UNAVAILABLE, STORE_ERROR (also for n too large)
 * or STORE_NOMEM, for all rows. *maybe_written is set to 1 when some row
 * may have been changed although the call failed (a connection died after
 * a statement was sent, or a statement had committed before a later one
 * failed), 0 when no row changed (no connection could be had, MySQL refused
 * the first statement, or the pooled connection was found dead - MySQL
 * restarted or down - and no fresh one could be had).
 */
int user_store_set_nicknames(struct db_pool *pool, size_t n, const char *const *usernames,
                             const char *const *nicknames, int *status, int *maybe_written);

/*
 * Sets the nickname (when nickname is not NULL; UTF-8, already validated)
 * and/or the picture file name (when picture is not NULL) of username in
 * one transaction: the row is locked, the previous picture read, and both
 * columns written by one UPDATE, so no reader ever sees half of a change.
 * On STORE_OK, *updated holds the row as committed, password_hash included
 * (free with user_record_free) and *old_picture the previous picture file
 * name (heap, caller frees) or NULL when there was none.
 * Returns STORE_OK, STORE_NOT_FOUND, STORE_UNAVAILABLE (including a COMMIT
 * whose outcome is unknown because the connection died), STORE_ERROR or
 * STORE_NOMEM; on failure nothing was changed (except in that unknown-COMMIT
 * case, reported by *maybe_written = 1) and *updated / *old_picture are
 * zeroed / NULL.
 */
int user_store_update_profile(struct db_pool *pool, const char *username, const char *nickname,
                              const char *picture, struct user_record *updated, char **old_picture,
                              int *maybe_written);

#endif
