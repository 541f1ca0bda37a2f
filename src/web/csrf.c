/* csrf: see csrf.h. */
#include "web/csrf.h"

#include <sodium.h>
#include <string.h>
#include <strings.h>

/* Context hashed with CSRF_SECRET, so the same secret reused elsewhere gives another key. */
static const char key_context[] = "profile-web csrf key v1";

static const char *const purpose_names[] = {"login", "session"};

int csrf_key_init(struct csrf_key *key, const unsigned char *secret, size_t len)
{
    if (sodium_init() < 0) return -1;
    if (secret == NULL) {
        randombytes_buf(key->bytes, sizeof(key->bytes));
        return 0;
    }
    if (len < CSRF_KEY_BYTES || len > crypto_generichash_KEYBYTES_MAX) return -1;
    crypto_generichash_state st;
    if (crypto_generichash_init(&st, secret, len, sizeof(key->bytes)) != 0 ||
        crypto_generichash_update(&st, (const unsigned char *)key_context, sizeof(key_context)) !=
            0 ||
        crypto_generichash_final(&st, key->bytes, sizeof(key->bytes)) != 0) {
        sodium_memzero(&st, sizeof(st));
        return -1;
    }
    sodium_memzero(&st, sizeof(st));
    return 0;
}

/* The raw MAC of purpose || 0x00 || binding. */
static void mac(const struct csrf_key *key, enum csrf_purpose purpose, const char *binding,
                size_t len, unsigned char out[crypto_auth_hmacsha256_BYTES])
{
    crypto_auth_hmacsha256_state st;
    const char *name = purpose_names[purpose == CSRF_LOGIN ? 0 : 1];
    crypto_auth_hmacsha256_init(&st, key->bytes, sizeof(key->bytes));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)name, strlen(name) + 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)binding, len);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof(st));
}

int csrf_token(const struct csrf_key *key, enum csrf_purpose purpose, const char *binding,
               size_t len, char out[CSRF_TOKEN_LEN + 1])
{
    unsigned char m[crypto_auth_hmacsha256_BYTES];
    out[0] = '\0';
    if (binding == NULL || len == 0) return -1;
    mac(key, purpose, binding, len, m);
    sodium_bin2base64(out, CSRF_TOKEN_LEN + 1, m, sizeof(m),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return 0;
}

int csrf_check(const struct csrf_key *key, enum csrf_purpose purpose, const char *binding,
               size_t len, const char *token, size_t token_len)
{
    char want[CSRF_TOKEN_LEN + 1];
    if (token == NULL || token_len != CSRF_TOKEN_LEN) return 0;
    if (csrf_token(key, purpose, binding, len, want) != 0) return 0;
    return sodium_memcmp(want, token, CSRF_TOKEN_LEN) == 0;
}

void csrf_nonce(char out[CSRF_TOKEN_LEN + 1])
{
    unsigned char r[32];
    randombytes_buf(r, sizeof(r));
    sodium_bin2base64(out, CSRF_TOKEN_LEN + 1, r, sizeof(r),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

int csrf_origin_ok(const char *origin, const char *host)
{
    if (origin == NULL) return 1;
    const char *sep = strstr(origin, "://");
    if (sep == NULL || host == NULL || host[0] == '\0') return 0;
    size_t scheme_len = (size_t)(sep - origin);
    if (!((scheme_len == 4 && strncasecmp(origin, "http", 4) == 0) ||
          (scheme_len == 5 && strncasecmp(origin, "https", 5) == 0)))
        return 0;
    const char *authority = sep + 3;
    /* A serialised origin has no path; tolerate a lone trailing slash. */
    size_t alen = strlen(authority);
    if (alen > 0 && authority[alen - 1] == '/') alen--;
    if (alen == 0 || memchr(authority, '/', alen) != NULL || memchr(authority, '@', alen) != NULL)
        return 0;
    return strlen(host) == alen && strncasecmp(authority, host, alen) == 0;
}
