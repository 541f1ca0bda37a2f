/*
 * log_quote (common/log.h): user-supplied values in log lines are quoted so they can
 * never forge a line or hide text, while readable Unicode stays readable.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/log.h"

static const char *q(const char *s, size_t len)
{
    static char out[256];
    return log_quote(out, sizeof(out), s, len);
}

#define Q(lit) q(lit, sizeof(lit) - 1)

static void plain_ascii_is_quoted(void **state)
{
    (void)state;
    assert_string_equal(Q("user1"), "\"user1\"");
}

static void quotes_backslashes_and_newlines_are_escaped(void **state)
{
    (void)state;
    assert_string_equal(Q("a\"b\\c"), "\"a\\\"b\\\\c\"");
    assert_string_equal(Q("x\ny=1 event=forged"), "\"x\\x0ay=1 event=forged\"");
    assert_string_equal(q("a\0b", 3), "\"a\\x00b\"");
}

static void readable_unicode_stays_readable(void **state)
{
    (void)state;
    assert_string_equal(Q("Zo\xc3\xab \xf0\x9f\x9a\x80 \xe6\x9d\x8e"),
                        "\"Zo\xc3\xab \xf0\x9f\x9a\x80 \xe6\x9d\x8e\"");
}

static void invalid_utf8_c1_separators_and_bidi_controls_are_escaped(void **state)
{
    (void)state;
    assert_string_equal(Q("a\xff"), "\"a\\xff\"");
    assert_string_equal(Q("\xc0\xaf"), "\"\\xc0\\xaf\"");          /* overlong */
    assert_string_equal(Q("\xc2\x85"), "\"\\xc2\\x85\"");          /* C1 NEL */
    assert_string_equal(Q("\xe2\x80\xa8"), "\"\\xe2\\x80\\xa8\""); /* U+2028 */
    assert_string_equal(Q("\xe2\x80\xae"), "\"\\xe2\\x80\\xae\""); /* U+202E */
}

static void long_values_are_truncated_without_splitting_characters(void **state)
{
    (void)state;
    char in[200], out[16];
    for (size_t i = 0; i < sizeof(in); i += 2)
        memcpy(in + i, "\xc3\xab", 2); /* ë */
    log_quote(out, sizeof(out), in, sizeof(in));
    size_t n = strlen(out);
    assert_true(n < sizeof(out));
    assert_memory_equal(out + n - 4, "...\"", 4);
    /* Everything between the quotes and the ellipsis is whole ë's. */
    assert_int_equal((n - 5) % 2, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_ascii_is_quoted),
        cmocka_unit_test(quotes_backslashes_and_newlines_are_escaped),
        cmocka_unit_test(readable_unicode_stays_readable),
        cmocka_unit_test(invalid_utf8_c1_separators_and_bidi_controls_are_escaped),
        cmocka_unit_test(long_values_are_truncated_without_splitting_characters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
