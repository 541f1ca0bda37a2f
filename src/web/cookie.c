/* cookie: see cookie.h. */
#include "web/cookie.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

int cookie_get(const char *header, const char *name, const char **value, size_t *value_len)
{
    if (header == NULL || name == NULL) return 0;
    size_t name_len = strlen(name);
    const char *p = header;
    while (*p != '\0') {
        const char *pair = p;
        const char *semi = strchr(pair, ';');
        const char *pair_end = semi ? semi : pair + strlen(pair);
        p = semi ? semi + 1 : pair_end;

        const char *eq = memchr(pair, '=', (size_t)(pair_end - pair));
        if (eq == NULL) continue;
        const char *n = pair, *n_end = eq;
        while (n < n_end && is_ows(*n))
            n++;
        while (n_end > n && is_ows(n_end[-1]))
            n_end--;
        if ((size_t)(n_end - n) != name_len || memcmp(n, name, name_len) != 0) continue;

        const char *v = eq + 1, *v_end = pair_end;
        while (v < v_end && is_ows(*v))
            v++;
        while (v_end > v && is_ows(v_end[-1]))
            v_end--;
        if (v_end - v >= 2 && *v == '"' && v_end[-1] == '"') {
            v++;
            v_end--;
        }
        *value = v;
        *value_len = (size_t)(v_end - v);
        return 1;
    }
    return 0;
}

int cookie_value_ok(const char *s, size_t len)
{
    if (len == 0) return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        /* cookie-octet = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E */
        if (c < 0x21 || c > 0x7e || c == '"' || c == ',' || c == ';' || c == '\\') return 0;
    }
    return 1;
}

/* name=value with our attributes; Max-Age only when max_age_s >= 0. */
static char *build(const char *name, const char *value, long max_age_s, int secure)
{
    char age[32] = "";
    if (max_age_s >= 0) snprintf(age, sizeof(age), "; Max-Age=%ld", max_age_s);
    const char *fmt = "%s=%s; HttpOnly; SameSite=Lax; Path=/%s%s";
    const char *tail = secure ? "; Secure" : "";
    int n = snprintf(NULL, 0, fmt, name, value, age, tail);
    if (n < 0) goto nomem;
    char *out = malloc((size_t)n + 1);
    if (out == NULL) goto nomem;
    snprintf(out, (size_t)n + 1, fmt, name, value, age, tail);
    return out;
nomem:
    errno = ENOMEM;
    return NULL;
}

char *cookie_session_set(const char *token, long max_age_s, int secure)
{
    if (token == NULL || !cookie_value_ok(token, strlen(token))) {
        errno = EINVAL;
        return NULL;
    }
    return build(COOKIE_SESSION_NAME, token, max_age_s < 0 ? 0 : max_age_s, secure);
}

char *cookie_session_clear(int secure)
{
    return build(COOKIE_SESSION_NAME, "", 0, secure);
}

char *cookie_set(const char *name, const char *value, long max_age_s, int secure)
{
    if (name == NULL || value == NULL || !cookie_value_ok(name, strlen(name)) ||
        strchr(name, '=') != NULL || (value[0] != '\0' && !cookie_value_ok(value, strlen(value)))) {
        errno = EINVAL;
        return NULL;
    }
    return build(name, value, max_age_s, secure);
}
