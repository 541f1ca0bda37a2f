/* Unit tests for web/html: escaping, the output buffer and templates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "web/html.h"

/* Escapes s and compares the result with want. */
static void assert_escapes_to(const char *s, size_t len, const char *want)
{
    struct html_buf b;
    html_buf_init(&b);
    assert_int_equal(html_escape(&b, s, len), 0);
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    html_buf_free(&b);
}

static void test_escape_script_tag_becomes_text(void **state)
{
    (void)state;
    const char *s = "<script>alert(1)</script>";
    assert_escapes_to(s, strlen(s), "&lt;script&gt;alert(1)&lt;/script&gt;");
}

static void test_escape_all_five_specials(void **state)
{
    (void)state;
    const char *s = "a&b<c>d\"e'f";
    assert_escapes_to(s, strlen(s), "a&amp;b&lt;c&gt;d&quot;e&#39;f");
}

static void test_escape_quotes_cannot_leave_an_attribute(void **state)
{
    (void)state;
    const char *s = "\" onmouseover='alert(1)";
    assert_escapes_to(s, strlen(s), "&quot; onmouseover=&#39;alert(1)");
}

static void test_escape_already_escaped_text_is_escaped_again(void **state)
{
    (void)state;
    const char *s = "&amp;&lt;";
    assert_escapes_to(s, strlen(s), "&amp;amp;&amp;lt;");
}

static void test_escape_utf8_passes_through_byte_exact(void **state)
{
    (void)state;
    /* Zoë 🚀 李 and e + U+0301 COMBINING ACUTE ACCENT */
    const char *s = "Zo\xc3\xab \xf0\x9f\x9a\x80 \xe6\x9d\x8e e\xcc\x81";
    assert_escapes_to(s, strlen(s), s);
}

static void test_escape_plain_text_unchanged_and_empty_ok(void **state)
{
    (void)state;
    assert_escapes_to("hello world 123", 15, "hello world 123");
    assert_escapes_to("", 0, "");
    assert_escapes_to(NULL, 0, "");
}

static void test_escape_nul_becomes_replacement_character(void **state)
{
    (void)state;
    assert_escapes_to("a\0b", 3,
                      "a\xef\xbf\xbd"
                      "b");
}

static void test_escape_long_input_grows_buffer(void **state)
{
    (void)state;
    size_t n = 100000;
    char *s = malloc(n);
    assert_non_null(s);
    memset(s, '<', n);
    struct html_buf b;
    html_buf_init(&b);
    assert_int_equal(html_escape(&b, s, n), 0);
    assert_int_equal(b.len, 4 * n);
    assert_memory_equal(b.data, "&lt;&lt;", 8);
    assert_int_equal(b.data[b.len], '\0');
    html_buf_free(&b);
    free(s);
}

static void test_buf_take_hands_over_data(void **state)
{
    (void)state;
    struct html_buf b;
    size_t len;
    html_buf_init(&b);
    char *empty = html_buf_take(&b, &len);
    assert_non_null(empty);
    assert_int_equal(len, 0);
    assert_string_equal(empty, "");
    free(empty);
    assert_int_equal(html_buf_append_str(&b, "abc"), 0);
    char *data = html_buf_take(&b, &len);
    assert_string_equal(data, "abc");
    assert_int_equal(len, 3);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    free(data);
}

static void test_buf_reserve_sizes_once(void **state)
{
    (void)state;
    struct html_buf b;
    html_buf_init(&b);
    assert_int_equal(html_buf_reserve(&b, 1000), 0);
    assert_int_equal(b.cap, 1001);
    assert_int_equal(b.len, 0);
    char *before = b.data;
    char chunk[100];
    memset(chunk, 'x', sizeof(chunk));
    for (int i = 0; i < 10; i++)
        assert_int_equal(html_buf_append(&b, chunk, sizeof(chunk)), 0);
    assert_ptr_equal(b.data, before); /* no reallocation within the reserved size */
    assert_int_equal(b.len, 1000);
    assert_int_equal(b.data[1000], '\0');
    assert_int_equal(html_buf_reserve(&b, 10), 0); /* never shrinks below the content */
    assert_int_equal(b.len, 1000);
    html_buf_free(&b);
}

/* Parses tpl, renders it with vars and compares with want. */
static void assert_renders(const char *tpl, const struct html_var *vars, size_t n, const char *want)
{
    char err[128];
    struct html_template *t = html_template_parse(tpl, strlen(tpl), err, sizeof(err));
    assert_non_null(t);
    struct html_buf b;
    html_buf_init(&b);
    assert_int_equal(html_render(t, vars, n, &b), 0);
    assert_string_equal(b.data ? b.data : "", want);
    html_buf_free(&b);
    html_template_free(t);
}

static void test_render_escapes_values_by_default(void **state)
{
    (void)state;
    struct html_var v[] = {{"nickname", "<b>Zoë</b>", (size_t)-1, 0}};
    assert_renders("<dd>{{nickname}}</dd>", v, 1, "<dd>&lt;b&gt;Zoë&lt;/b&gt;</dd>");
}

static void test_render_raw_only_when_caller_says_so(void **state)
{
    (void)state;
    struct html_var v[] = {{"content", "<p>hi</p>", (size_t)-1, HTML_VAR_RAW}};
    assert_renders("<main>{{content}}</main>", v, 1, "<main><p>hi</p></main>");
}

static void test_render_value_with_explicit_length(void **state)
{
    (void)state;
    struct html_var v[] = {{"x", "abcdef", 3, 0}};
    assert_renders("[{{x}}]", v, 1, "[abc]");
}

static void test_render_sections_follow_emptiness(void **state)
{
    (void)state;
    const char *tpl = "{{#error}}<p>{{error}}</p>{{/error}}{{^error}}none{{/error}}!";
    struct html_var set[] = {{"error", "Bad & wrong", (size_t)-1, 0}};
    struct html_var empty[] = {{"error", "", (size_t)-1, 0}};
    struct html_var null[] = {{"error", NULL, 0, 0}};
    assert_renders(tpl, set, 1, "<p>Bad &amp; wrong</p>!");
    assert_renders(tpl, empty, 1, "none!");
    assert_renders(tpl, null, 1, "none!");
}

static void test_render_nested_sections(void **state)
{
    (void)state;
    const char *tpl = "{{#a}}A{{#b}}B{{/b}}{{^b}}-{{/b}}{{/a}}.";
    struct html_var ab[] = {{"a", "1", (size_t)-1, 0}, {"b", "1", (size_t)-1, 0}};
    struct html_var a[] = {{"a", "1", (size_t)-1, 0}, {"b", "", (size_t)-1, 0}};
    struct html_var none[] = {{"a", "", (size_t)-1, 0}, {"b", "1", (size_t)-1, 0}};
    assert_renders(tpl, ab, 2, "AB.");
    assert_renders(tpl, a, 2, "A-.");
    assert_renders(tpl, none, 2, ".");
}

static void test_render_text_without_tags_and_single_braces(void **state)
{
    (void)state;
    assert_renders("a { b } c", NULL, 0, "a { b } c");
    assert_renders("", NULL, 0, "");
}

static void test_render_unknown_name_is_an_error(void **state)
{
    (void)state;
    char err[128];
    struct html_template *t = html_template_parse("{{who}}", 7, err, sizeof(err));
    assert_non_null(t);
    struct html_buf b;
    html_buf_init(&b);
    struct html_var v[] = {{"other", "x", (size_t)-1, 0}};
    assert_int_equal(html_render(t, v, 1, &b), -1);
    html_buf_free(&b);
    html_template_free(t);
}

static void test_parse_rejects_malformed_templates(void **state)
{
    (void)state;
    const char *bad[] = {
        "{{unterminated", "{{Bad-Name}}", "{{}}",
        "{{#a}}open",     "{{/a}}",       "{{#a}}{{/b}}",
        "{{ spaced }}",   "{{{triple}}}", "{{#a}}{{#b}}{{/a}}{{/b}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[128] = "";
        struct html_template *t = html_template_parse(bad[i], strlen(bad[i]), err, sizeof(err));
        if (t != NULL) fail_msg("accepted malformed template %s", bad[i]);
        assert_true(err[0] != '\0');
    }
}

static void test_parse_limits_nesting_depth(void **state)
{
    (void)state;
    char tpl[512] = "";
    for (int i = 0; i < 9; i++)
        strcat(tpl, "{{#a}}");
    for (int i = 0; i < 9; i++)
        strcat(tpl, "{{/a}}");
    char err[128];
    assert_null(html_template_parse(tpl, strlen(tpl), err, sizeof(err)));
}

static void test_load_reports_missing_file(void **state)
{
    (void)state;
    char err[256] = "";
    assert_null(html_template_load("/nonexistent/dir/page.html", err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/dir/page.html"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_script_tag_becomes_text),
        cmocka_unit_test(test_escape_all_five_specials),
        cmocka_unit_test(test_escape_quotes_cannot_leave_an_attribute),
        cmocka_unit_test(test_escape_already_escaped_text_is_escaped_again),
        cmocka_unit_test(test_escape_utf8_passes_through_byte_exact),
        cmocka_unit_test(test_escape_plain_text_unchanged_and_empty_ok),
        cmocka_unit_test(test_escape_nul_becomes_replacement_character),
        cmocka_unit_test(test_escape_long_input_grows_buffer),
        cmocka_unit_test(test_buf_take_hands_over_data),
        cmocka_unit_test(test_buf_reserve_sizes_once),
        cmocka_unit_test(test_render_escapes_values_by_default),
        cmocka_unit_test(test_render_raw_only_when_caller_says_so),
        cmocka_unit_test(test_render_value_with_explicit_length),
        cmocka_unit_test(test_render_sections_follow_emptiness),
        cmocka_unit_test(test_render_nested_sections),
        cmocka_unit_test(test_render_text_without_tags_and_single_braces),
        cmocka_unit_test(test_render_unknown_name_is_an_error),
        cmocka_unit_test(test_parse_rejects_malformed_templates),
        cmocka_unit_test(test_parse_limits_nesting_depth),
        cmocka_unit_test(test_load_reports_missing_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
