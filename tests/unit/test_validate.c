/*
 * Username and nickname rules: usernames are 1..64 of [A-Za-z0-9_.-];
 * nicknames are well-formed UTF-8 (RFC 3629), trimmed, 1..64 code points,
 * without control characters, and kept byte-exact.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/validate.h"

static int nick(const char *s, size_t len)
{
    size_t start, n;
    return validate_nickname(s, len, &start, &n);
}

#define NICK(lit) nick(lit, sizeof(lit) - 1)

static void username_accepts_allowed_alphabet(void **state)
{
    (void)state;
    assert_true(validate_username("user1", 5));
    assert_true(validate_username("A.b-c_9", 7));
    char max[64];
    memset(max, 'a', sizeof(max));
    assert_true(validate_username(max, 64));
}

static void username_refuses_empty_long_and_foreign_bytes(void **state)
{
    (void)state;
    char long_name[65];
    memset(long_name, 'a', sizeof(long_name));
    assert_false(validate_username("", 0));
    assert_false(validate_username(long_name, 65));
    assert_false(validate_username("us\0er", 5));
    assert_false(validate_username("user\n", 5));
    assert_false(validate_username("' OR '1'='1", 11));
    assert_false(validate_username("us er", 5));
    assert_false(validate_username("usér", 5));
}

static void nickname_keeps_emoji_cjk_and_combining_marks_byte_exact(void **state)
{
    (void)state;
    const char s[] = "Zo\xc3\xab \xf0\x9f\x9a\x80 \xe6\x9d\x8e e\xcc\x81";
    size_t start = 99, n = 99;
    assert_int_equal(validate_nickname(s, sizeof(s) - 1, &start, &n), NICKNAME_OK);
    assert_int_equal(start, 0);
    assert_int_equal(n, sizeof(s) - 1);
}

static void nickname_trims_surrounding_unicode_space(void **state)
{
    (void)state;
    const char s[] = " \t\xe3\x80\x80"
                     "ab c\xc2\xa0\n"; /* space, tab, U+3000 ... U+00A0 LF */
    size_t start, n;
    assert_int_equal(validate_nickname(s, sizeof(s) - 1, &start, &n), NICKNAME_OK);
    assert_int_equal(n, 4);
    assert_memory_equal(s + start, "ab c", 4);
}

static void nickname_refuses_empty_and_all_space(void **state)
{
    (void)state;
    assert_int_equal(NICK(""), NICKNAME_EMPTY);
    assert_int_equal(NICK("  \t "), NICKNAME_EMPTY);
    assert_int_equal(NICK("\xe3\x80\x80"), NICKNAME_EMPTY);
}

static void nickname_allows_64_code_points_not_65(void **state)
{
    (void)state;
    char buf[65 * 4];
    for (int i = 0; i < 65; i++)
        memcpy(buf + 4 * i, "\xf0\x9f\x9a\x80", 4); /* U+1F680 */
    assert_int_equal(nick(buf, 64 * 4), NICKNAME_OK);
    assert_int_equal(nick(buf, 65 * 4), NICKNAME_TOO_LONG);
    memset(buf, 'a', 65);
    assert_int_equal(nick(buf, 64), NICKNAME_OK);
    assert_int_equal(nick(buf, 65), NICKNAME_TOO_LONG);
}

static void nickname_refuses_malformed_utf8(void **state)
{
    (void)state;
    assert_int_equal(NICK("\xc0\xaf"), NICKNAME_BAD_UTF8);         /* overlong '/' */
    assert_int_equal(NICK("\xe0\x80\xaf"), NICKNAME_BAD_UTF8);     /* overlong, 3 bytes */
    assert_int_equal(NICK("\xf0\x80\x80\xaf"), NICKNAME_BAD_UTF8); /* overlong, 4 bytes */
    assert_int_equal(NICK("\xed\xa0\x80"), NICKNAME_BAD_UTF8);     /* surrogate U+D800 */
    assert_int_equal(NICK("\xf4\x90\x80\x80"), NICKNAME_BAD_UTF8); /* U+110000 */
    assert_int_equal(NICK("\xf5\x80\x80\x80"), NICKNAME_BAD_UTF8);
    assert_int_equal(NICK("ab\xe6\x9d"), NICKNAME_BAD_UTF8); /* truncated */
    assert_int_equal(NICK("\x80"), NICKNAME_BAD_UTF8);       /* lone continuation */
    assert_int_equal(NICK("a\xff"
                          "b"),
                     NICKNAME_BAD_UTF8);
}

static void nickname_refuses_control_characters(void **state)
{
    (void)state;
    assert_int_equal(nick("a\0b", 3), NICKNAME_CONTROL);
    assert_int_equal(NICK("a\x1b[31mb"), NICKNAME_CONTROL);
    assert_int_equal(NICK("a\nb"), NICKNAME_CONTROL);
    assert_int_equal(NICK("a\x7f"
                          "b"),
                     NICKNAME_CONTROL);
    assert_int_equal(NICK("a\xc2\x85"
                          "b"),
                     NICKNAME_CONTROL); /* C1 NEL inside */
}

static void nickname_of_only_zero_width_characters_is_empty(void **state)
{
    (void)state;
    assert_int_equal(NICK("\xe2\x80\x8b"), NICKNAME_EMPTY);              /* U+200B */
    assert_int_equal(NICK("\xef\xbb\xbf\xe2\x81\xa0 "), NICKNAME_EMPTY); /* BOM, WJ */
}

static void nickname_refuses_bidi_overrides_but_keeps_joiners(void **state)
{
    (void)state;
    assert_int_equal(NICK("abc\xe2\x80\xae"
                          "dcba"),
                     NICKNAME_CONTROL); /* U+202E RLO */
    assert_int_equal(NICK("a\xe2\x81\xa6"
                          "b"),
                     NICKNAME_CONTROL); /* U+2066 LRI */
    /* family emoji: man ZWJ woman ZWJ girl */
    assert_int_equal(
        NICK("\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7"),
        NICKNAME_OK);
}

static void nickname_messages_are_sentences(void **state)
{
    (void)state;
    for (int e = NICKNAME_CONTROL; e <= NICKNAME_OK; e++) {
        const char *m = validate_nickname_message(e);
        assert_non_null(m);
        assert_true(strlen(m) > 10);
        assert_int_equal(m[strlen(m) - 1], '.');
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(username_accepts_allowed_alphabet),
        cmocka_unit_test(username_refuses_empty_long_and_foreign_bytes),
        cmocka_unit_test(nickname_keeps_emoji_cjk_and_combining_marks_byte_exact),
        cmocka_unit_test(nickname_trims_surrounding_unicode_space),
        cmocka_unit_test(nickname_refuses_empty_and_all_space),
        cmocka_unit_test(nickname_allows_64_code_points_not_65),
        cmocka_unit_test(nickname_refuses_malformed_utf8),
        cmocka_unit_test(nickname_refuses_control_characters),
        cmocka_unit_test(nickname_of_only_zero_width_characters_is_empty),
        cmocka_unit_test(nickname_refuses_bidi_overrides_but_keeps_joiners),
        cmocka_unit_test(nickname_messages_are_sentences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
