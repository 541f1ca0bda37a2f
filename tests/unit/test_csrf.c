/* Unit tests for web/csrf: form tokens bound to a session or pre-session
 * cookie (keyed HMAC-SHA-256), the Origin check, and cookie_set for the
 * pre-session cookie. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "web/cookie.h"
#include "web/csrf.h"

static const char session_a[] = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLWE";
static const char session_b[] = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLWI";

static void key_from_byte(struct csrf_key *key, unsigned char b)
{
    unsigned char secret[32];
    memset(secret, b, sizeof(secret));
    assert_int_equal(csrf_key_init(key, secret, sizeof(secret)), 0);
}

static void token(const struct csrf_key *k, enum csrf_purpose p, const char *binding, char *out)
{
    assert_int_equal(csrf_token(k, p, binding, strlen(binding), out), 0);
}

static void test_token_is_43_base64url_characters(void **state)
{
    (void)state;
    struct csrf_key k;
    char t[CSRF_TOKEN_LEN + 1];
    key_from_byte(&k, 1);
    token(&k, CSRF_SESSION, session_a, t);
    assert_int_equal(strlen(t), CSRF_TOKEN_LEN);
    assert_int_equal(strspn(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                     CSRF_TOKEN_LEN);
    assert_true(cookie_value_ok(t, strlen(t)));
}

static void test_same_secret_same_token_across_processes(void **state)
{
    (void)state;
    struct csrf_key k1, k2;
    char t1[CSRF_TOKEN_LEN + 1], t2[CSRF_TOKEN_LEN + 1];
    key_from_byte(&k1, 7);
    key_from_byte(&k2, 7);
    token(&k1, CSRF_SESSION, session_a, t1);
    token(&k2, CSRF_SESSION, session_a, t2);
    assert_string_equal(t1, t2);
    assert_true(csrf_check(&k2, CSRF_SESSION, session_a, strlen(session_a), t1, strlen(t1)));
}

static void test_token_is_bound_to_session_purpose_and_key(void **state)
{
    (void)state;
    struct csrf_key k, other;
    char t[CSRF_TOKEN_LEN + 1];
    key_from_byte(&k, 1);
    key_from_byte(&other, 2);
    token(&k, CSRF_SESSION, session_a, t);
    assert_true(csrf_check(&k, CSRF_SESSION, session_a, strlen(session_a), t, strlen(t)));
    assert_false(csrf_check(&k, CSRF_SESSION, session_b, strlen(session_b), t, strlen(t)));
    assert_false(csrf_check(&k, CSRF_LOGIN, session_a, strlen(session_a), t, strlen(t)));
    assert_false(csrf_check(&other, CSRF_SESSION, session_a, strlen(session_a), t, strlen(t)));
}

static void test_altered_or_truncated_tokens_fail(void **state)
{
    (void)state;
    struct csrf_key k;
    char t[CSRF_TOKEN_LEN + 1], bad[CSRF_TOKEN_LEN + 2];
    key_from_byte(&k, 3);
    token(&k, CSRF_LOGIN, "nonce", t);
    memcpy(bad, t, sizeof(t));
    bad[10] = bad[10] == 'A' ? 'B' : 'A';
    assert_false(csrf_check(&k, CSRF_LOGIN, "nonce", 5, bad, strlen(bad)));
    assert_false(csrf_check(&k, CSRF_LOGIN, "nonce", 5, t, CSRF_TOKEN_LEN - 1));
    memcpy(bad, t, CSRF_TOKEN_LEN);
    bad[CSRF_TOKEN_LEN] = 'A';
    bad[CSRF_TOKEN_LEN + 1] = '\0';
    assert_false(csrf_check(&k, CSRF_LOGIN, "nonce", 5, bad, strlen(bad)));
    assert_false(csrf_check(&k, CSRF_LOGIN, "nonce", 5, "", 0));
    assert_false(csrf_check(&k, CSRF_LOGIN, "nonce", 5, NULL, 0));
}

static void test_empty_binding_has_no_token(void **state)
{
    (void)state;
    struct csrf_key k;
    char t[CSRF_TOKEN_LEN + 1] = "x";
    key_from_byte(&k, 4);
    assert_int_equal(csrf_token(&k, CSRF_SESSION, "", 0, t), -1);
    assert_string_equal(t, "");
    assert_int_equal(csrf_token(&k, CSRF_SESSION, NULL, 0, t), -1);
    assert_false(csrf_check(&k, CSRF_SESSION, NULL, 0, "", 0));
}

static void test_short_or_long_secret_is_refused(void **state)
{
    (void)state;
    struct csrf_key k;
    unsigned char secret[65] = {0};
    assert_int_equal(csrf_key_init(&k, secret, 31), -1);
    assert_int_equal(csrf_key_init(&k, secret, 65), -1);
    assert_int_equal(csrf_key_init(&k, secret, 64), 0);
}

static void test_random_keys_differ(void **state)
{
    (void)state;
    struct csrf_key k1, k2;
    assert_int_equal(csrf_key_init(&k1, NULL, 0), 0);
    assert_int_equal(csrf_key_init(&k2, NULL, 0), 0);
    assert_memory_not_equal(k1.bytes, k2.bytes, sizeof(k1.bytes));
}

static void test_nonces_are_fresh_cookie_values(void **state)
{
    (void)state;
    char a[CSRF_TOKEN_LEN + 1], b[CSRF_TOKEN_LEN + 1];
    csrf_nonce(a);
    csrf_nonce(b);
    assert_int_equal(strlen(a), CSRF_TOKEN_LEN);
    assert_true(cookie_value_ok(a, strlen(a)));
    assert_string_not_equal(a, b);
}

static void test_origin_check(void **state)
{
    (void)state;
    assert_true(csrf_origin_ok(NULL, "127.0.0.1:8080"));
    assert_true(csrf_origin_ok("http://127.0.0.1:8080", "127.0.0.1:8080"));
    assert_true(csrf_origin_ok("https://Example.COM", "example.com"));
    assert_true(csrf_origin_ok("http://example.com/", "example.com"));
    assert_false(csrf_origin_ok("http://127.0.0.1:9999", "127.0.0.1:8080"));
    assert_false(csrf_origin_ok("https://evil.example", "example.com"));
    assert_false(csrf_origin_ok("https://example.com.evil.example", "example.com"));
    assert_false(csrf_origin_ok("null", "example.com"));
    assert_false(csrf_origin_ok("", "example.com"));
    assert_false(csrf_origin_ok("ftp://example.com", "example.com"));
    assert_false(csrf_origin_ok("http://user@example.com", "example.com"));
    assert_false(csrf_origin_ok("http://example.com/path", "example.com"));
    assert_false(csrf_origin_ok("http://example.com", NULL));
    assert_false(csrf_origin_ok("http://example.com", ""));
}

static void test_cookie_set_for_the_pre_session_cookie(void **state)
{
    (void)state;
    char *c = cookie_set(CSRF_COOKIE, "abc", -1, 0);
    assert_non_null(c);
    assert_string_equal(c, "login_csrf=abc; HttpOnly; SameSite=Lax; Path=/");
    free(c);
    c = cookie_set(CSRF_COOKIE, "", 0, 1);
    assert_non_null(c);
    assert_string_equal(c, "login_csrf=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0; Secure");
    free(c);
    errno = 0;
    assert_null(cookie_set(CSRF_COOKIE, "a;b", -1, 0));
    assert_int_equal(errno, EINVAL);
    assert_null(cookie_set("bad=name", "v", -1, 0));
    assert_null(cookie_set("", "v", -1, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_is_43_base64url_characters),
        cmocka_unit_test(test_same_secret_same_token_across_processes),
        cmocka_unit_test(test_token_is_bound_to_session_purpose_and_key),
        cmocka_unit_test(test_altered_or_truncated_tokens_fail),
        cmocka_unit_test(test_empty_binding_has_no_token),
        cmocka_unit_test(test_short_or_long_secret_is_refused),
        cmocka_unit_test(test_random_keys_differ),
        cmocka_unit_test(test_nonces_are_fresh_cookie_values),
        cmocka_unit_test(test_origin_check),
        cmocka_unit_test(test_cookie_set_for_the_pre_session_cookie),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
