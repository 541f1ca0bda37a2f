/*
 * csrf: cross-site request forgery protection for the HTML forms
 * (POST /login, /edit, /logout), on top of the session cookie's
 * SameSite=Lax.
 *
 * A synchronizer token that needs no server-side state: the token of a form
 * is a keyed hash of a value the browser holds in an HttpOnly cookie,
 *
 *   token = base64url(HMAC-SHA-256(key, purpose || 0x00 || binding))
 *
 * where binding is the session cookie (the JWT) for the forms of a logged-in
 * user and, before a session exists (the login form), a random pre-session
 * cookie (CSRF_COOKIE) set with the login page: the "signed double-submit
 * cookie" pattern of the OWASP CSRF Prevention Cheat Sheet. Another site can
 * neither read those cookies nor compute the hash without the key, so it
 * cannot fill in the hidden CSRF_FIELD; a token is good only for the session
 * (or pre-session) it was made for and dies with it.
 *
 * The key is the web server's own (CSRF_SECRET), never the JWT secret: the
 * web server still cannot mint sessions. With the same CSRF_SECRET, every
 * web process behind a load balancer and every restart accepts the forms
 * the others rendered; without one a random key per process is used (forms
 * rendered before a restart then fail once with 403 and are shown again).
 *
 * As defence in depth a form POST whose Origin header names another site is
 * refused too (csrf_origin_ok), before its token is even looked at.
 */
#ifndef PROFILE_WEB_CSRF_H
#define PROFILE_WEB_CSRF_H

#include <stddef.h>

#define CSRF_FIELD "csrf"        /* name of the hidden form field */
#define CSRF_COOKIE "login_csrf" /* pre-session cookie bound to the login form */
#define CSRF_KEY_BYTES 32        /* HMAC-SHA-256 key */
#define CSRF_TOKEN_LEN 43        /* characters: base64url (no padding) of 32 bytes */

/* What a token is for: part of the hashed input, so a token of one kind
 * never passes as the other. */
enum csrf_purpose {
    CSRF_LOGIN,   /* binding = the CSRF_COOKIE value */
    CSRF_SESSION, /* binding = the session token */
};

struct csrf_key {
    unsigned char bytes[CSRF_KEY_BYTES]; /* HMAC key; secret */
};

/*
 * Sets *key from secret[0..len) (the decoded CSRF_SECRET, 32 to 64 bytes,
 * used as the BLAKE2b key to hash a fixed context string into the HMAC key), or, when
 * secret is NULL, to 32 random bytes from libsodium's CSPRNG. Returns 0, or
 * -1 when libsodium cannot be initialised or len is outside 32..64.
 */
int csrf_key_init(struct csrf_key *key, const unsigned char *secret, size_t len);

/*
 * Writes the token for binding[0..len) and purpose into out (NUL-
 * terminated, CSRF_TOKEN_LEN characters). Returns 0, or -1 when binding is
 * NULL or empty (nothing to bind to; out is then "").
 */
int csrf_token(const struct csrf_key *key, enum csrf_purpose purpose, const char *binding,
               size_t len, char out[CSRF_TOKEN_LEN + 1]);

/*
 * Returns 1 when token[0..token_len) is the token of binding and purpose,
 * compared in constant time (sodium_memcmp), else 0 (also for a NULL or
 * empty binding or token).
 */
int csrf_check(const struct csrf_key *key, enum csrf_purpose purpose, const char *binding,
               size_t len, const char *token, size_t token_len);

/*
 * Writes a fresh random pre-session value (32 CSPRNG bytes, base64url, a
 * valid RFC 6265 cookie value) into out, NUL-terminated.
 */
void csrf_nonce(char out[CSRF_TOKEN_LEN + 1]);

/*
 * The Origin check (RFC 6454 section 7; OWASP "verifying origin with
 * standard headers"): returns 1 when origin is NULL (the header is absent:
 * non-browser clients and some older browsers; the token still decides) or
 * is "<scheme>://<host>[:port]" whose host[:port] equals host (the request's
 * Host header, compared case-insensitively), else 0 (another site, the
 * opaque origin "null", a malformed value, or no Host to compare with).
 * Behind a reverse proxy the proxy must pass the browser's Host header on.
 */
int csrf_origin_ok(const char *origin, const char *host);

#endif
