/*
 * cookie: reading the session cookie from a request's Cookie header and
 * writing the Set-Cookie header that creates or clears it (RFC 6265).
 *
 * The session cookie carries the JWT the core issued. It is HttpOnly (no
 * script can read it), SameSite=Lax (cross-site POSTs do not carry it, so
 * forms on other sites cannot act as the user), Path=/ and, when the site is
 * served over HTTPS, Secure.
 */
#ifndef PROFILE_WEB_COOKIE_H
#define PROFILE_WEB_COOKIE_H

#include <stddef.h>

#define COOKIE_SESSION_NAME "session"

/*
 * Finds the cookie called name in a Cookie request header value
 * (RFC 6265 section 4.2.1: "a=b; session=...; c=d"). Parsing is lenient the
 * way section 5.2 asks of user agents: pairs are split at ';', optional
 * white space (space, tab) around names and values is ignored, a pair
 * without '=' is skipped, names compare case-sensitively, and a value
 * wrapped in double quotes is returned without them. When the name occurs
 * more than once the first occurrence wins (RFC 6265 section 5.4 orders
 * the more specific path first).
 * On success points *value into header (not NUL-terminated; valid as long
 * as header is) with *value_len bytes (possibly 0) and returns 1; returns 0
 * when header is NULL or holds no such cookie.
 */
int cookie_get(const char *header, const char *name, const char **value, size_t *value_len);

/*
 * Returns 1 when s[0..len) is a non-empty run of RFC 6265 cookie-octets
 * (printable US-ASCII except DQUOTE, comma, semicolon, backslash and space),
 * i.e. safe to place in a Set-Cookie header without quoting, else 0.
 */
int cookie_value_ok(const char *s, size_t len);

/*
 * Builds the Set-Cookie header value that stores token as the session:
 *   session=<token>; HttpOnly; SameSite=Lax; Path=/; Max-Age=<max_age_s>
 * followed by "; Secure" when secure is non-zero. max_age_s is seconds
 * (negative counts as 0). Returns a heap string (caller frees), or NULL
 * with errno = EINVAL when token is not a valid cookie value (so a hostile
 * token cannot inject header text) or ENOMEM.
 */
char *cookie_session_set(const char *token, long max_age_s, int secure);

/*
 * Builds the Set-Cookie header value that deletes the session cookie:
 * an empty value with Max-Age=0 and the same attributes as above.
 * Returns a heap string (caller frees) or NULL with errno = ENOMEM.
 */
char *cookie_session_clear(int secure);

/*
 * Builds a Set-Cookie header value for another cookie of this site with the
 * same attributes as the session's (HttpOnly; SameSite=Lax; Path=/, Secure
 * when secure is non-zero):
 *   <name>=<value>; HttpOnly; SameSite=Lax; Path=/[; Max-Age=<max_age_s>]
 * max_age_s is seconds; a negative value omits Max-Age (a cookie that lasts
 * until the browser ends its session), 0 deletes the cookie. value may be
 * "" (with max_age_s 0, to delete). Returns a heap string (caller frees), or
 * NULL with errno = EINVAL when name or value are not valid cookie text,
 * or ENOMEM.
 */
char *cookie_set(const char *name, const char *value, long max_age_s, int secure);

#endif
