/*
 * store: the status values shared by the MySQL and Redis access modules.
 *
 * Every store function returns one of these, so the core can tell "the row
 * or key does not exist" (a fact about the data) from "the database could
 * not be asked" (a fact about the infrastructure). The second kind must
 * reach the user as "unavailable, retry" and never as a wrong password or a
 * dead session.
 */
#ifndef PROFILE_STORE_STORE_H
#define PROFILE_STORE_STORE_H

enum store_status {
    STORE_OK = 0,
    STORE_NOT_FOUND = 1,    /* no such row / key (or a conditional write matched nothing) */
    STORE_UNAVAILABLE = -1, /* server down, unreachable, out of connections, timed out,
                               deadlocked or otherwise unable to answer now: retry later */
    STORE_ERROR = -2,       /* unexpected answer (SQL error, corrupt data): a bug to log */
    STORE_NOMEM = -3,       /* allocation failed */
};

/* Short English name of a store_status, for logs ("unavailable"...). */
const char *store_status_str(int status);

#endif
