/* Unit tests for web/cookie: Cookie header parsing and Set-Cookie building (RFC 6265). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "web/cookie.h"

/* Asserts that header holds cookie name with value want (NULL: absent). */
static void assert_cookie(const char *header, const char *name, const char *want)
{
    const char *v = NULL;
    size_t len = 0;
    int found = cookie_get(header, name, &v, &len);
    if (want == NULL) {
        if (found) fail_msg("found %s=%.*s in [%s]", name, (int)len, v, header);
        return;
    }
    if (!found) fail_msg("%s not found in [%s]", name, header ? header : "(null)");
    assert_int_equal(len, strlen(want));
    assert_memory_equal(v, want, len);
}

static void test_get_single_cookie(void **state)
{
    (void)state;
    assert_cookie("session=abc.def.ghi", "session", "abc.def.ghi");
}

static void test_get_among_several_cookies(void **state)
{
    (void)state;
    const char *h = "a=b; session=tok.en.x; c=d";
    assert_cookie(h, "session", "tok.en.x");
    assert_cookie(h, "a", "b");
    assert_cookie(h, "c", "d");
}

static void test_get_ignores_spaces_and_tabs(void **state)
{
    (void)state;
    assert_cookie("a=b;session=x", "session", "x");
    assert_cookie("a=b ;   session = x  ; c=d", "session", "x");
    assert_cookie("\tsession\t=\tx\t", "session", "x");
}

static void test_get_strips_double_quotes(void **state)
{
    (void)state;
    assert_cookie("session=\"quoted.value\"; a=b", "session", "quoted.value");
    assert_cookie("session=\"\"", "session", "");
    /* a lone quote is not a quoted value */
    assert_cookie("session=\"x", "session", "\"x");
}

static void test_get_missing_cookie(void **state)
{
    (void)state;
    assert_cookie("a=b; c=d", "session", NULL);
    assert_cookie("", "session", NULL);
    assert_cookie(NULL, "session", NULL);
    assert_cookie(";;;", "session", NULL);
}

static void test_get_name_must_match_exactly(void **state)
{
    (void)state;
    assert_cookie("xsession=a; sessionx=b; Session=c", "session", NULL);
    assert_cookie("my session=a", "session", NULL);
    assert_cookie("session", "session", NULL); /* no '=': skipped */
    assert_cookie("session; session=ok", "session", "ok");
}

static void test_get_empty_value(void **state)
{
    (void)state;
    assert_cookie("session=; a=b", "session", "");
    assert_cookie("session=", "session", "");
}

static void test_get_duplicates_first_wins(void **state)
{
    (void)state;
    assert_cookie("session=first; session=second", "session", "first");
    assert_cookie("a=1; session=first; b=2; session=second", "session", "first");
}

static void test_get_value_may_contain_equals(void **state)
{
    (void)state;
    assert_cookie("session=a=b==; c=d", "session", "a=b==");
}

static void test_get_very_long_header(void **state)
{
    (void)state;
    size_t n = 1 << 20;
    char *h = malloc(n + 64);
    assert_non_null(h);
    size_t off = 0;
    while (off + 8 < n) {
        memcpy(h + off, "x=yyyy; ", 8);
        off += 8;
    }
    strcpy(h + off, "session=tail");
    assert_cookie(h, "session", "tail");

    /* one huge value is returned whole, not truncated */
    memcpy(h, "session=", 8);
    memset(h + 8, 'v', n - 8);
    h[n] = '\0';
    const char *v;
    size_t len;
    assert_int_equal(cookie_get(h, "session", &v, &len), 1);
    assert_int_equal(len, n - 8);
    free(h);
}

static void test_value_ok_follows_cookie_octet(void **state)
{
    (void)state;
    assert_true(cookie_value_ok("eyJhbGci.eyJzdWIi.c2ln-_", 24));
    assert_false(cookie_value_ok("", 0));
    assert_false(cookie_value_ok("a b", 3));
    assert_false(cookie_value_ok("a;b", 3));
    assert_false(cookie_value_ok("a,b", 3));
    assert_false(cookie_value_ok("a\"b", 3));
    assert_false(cookie_value_ok("a\\b", 3));
    assert_false(cookie_value_ok("a\r\nSet-Cookie: x=y", 18));
    assert_false(cookie_value_ok("caf\xc3\xa9", 5));
}

static void test_set_has_every_attribute(void **state)
{
    (void)state;
    char *c = cookie_session_set("abc.def.ghi", 3600, 0);
    assert_non_null(c);
    assert_string_equal(c, "session=abc.def.ghi; HttpOnly; SameSite=Lax; Path=/; Max-Age=3600");
    free(c);
}

static void test_set_secure_when_asked(void **state)
{
    (void)state;
    char *c = cookie_session_set("t", 60, 1);
    assert_non_null(c);
    assert_string_equal(c, "session=t; HttpOnly; SameSite=Lax; Path=/; Max-Age=60; Secure");
    free(c);
}

static void test_set_refuses_header_injection(void **state)
{
    (void)state;
    errno = 0;
    assert_null(cookie_session_set("x\r\nSet-Cookie: admin=1", 60, 0));
    assert_int_equal(errno, EINVAL);
    assert_null(cookie_session_set("a;Domain=evil.example", 60, 0));
    assert_null(cookie_session_set("", 60, 0));
    assert_null(cookie_session_set(NULL, 60, 0));
}

static void test_set_negative_max_age_is_zero(void **state)
{
    (void)state;
    char *c = cookie_session_set("t", -5, 0);
    assert_non_null(c);
    assert_non_null(strstr(c, "Max-Age=0"));
    free(c);
}

static void test_clear_expires_the_cookie(void **state)
{
    (void)state;
    char *c = cookie_session_clear(0);
    assert_non_null(c);
    assert_string_equal(c, "session=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0");
    free(c);
    c = cookie_session_clear(1);
    assert_non_null(c);
    assert_string_equal(c, "session=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0; Secure");
    free(c);
}

static void test_round_trip_set_then_get(void **state)
{
    (void)state;
    char *c = cookie_session_set("eyJ.eyJ.sig", 10, 0);
    assert_non_null(c);
    /* a browser sends back only name=value */
    char *semi = strchr(c, ';');
    assert_non_null(semi);
    *semi = '\0';
    assert_cookie(c, "session", "eyJ.eyJ.sig");
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_single_cookie),
        cmocka_unit_test(test_get_among_several_cookies),
        cmocka_unit_test(test_get_ignores_spaces_and_tabs),
        cmocka_unit_test(test_get_strips_double_quotes),
        cmocka_unit_test(test_get_missing_cookie),
        cmocka_unit_test(test_get_name_must_match_exactly),
        cmocka_unit_test(test_get_empty_value),
        cmocka_unit_test(test_get_duplicates_first_wins),
        cmocka_unit_test(test_get_value_may_contain_equals),
        cmocka_unit_test(test_get_very_long_header),
        cmocka_unit_test(test_value_ok_follows_cookie_octet),
        cmocka_unit_test(test_set_has_every_attribute),
        cmocka_unit_test(test_set_secure_when_asked),
        cmocka_unit_test(test_set_refuses_header_injection),
        cmocka_unit_test(test_set_negative_max_age_is_zero),
        cmocka_unit_test(test_clear_expires_the_cookie),
        cmocka_unit_test(test_round_trip_set_then_get),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
