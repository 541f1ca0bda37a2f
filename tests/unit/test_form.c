/*
 * Unit tests for web/form: form bodies parsed through libmicrohttpd's
 * MHD_PostProcessor. The post processor needs a real connection, so each
 * test sends a raw HTTP request to a small libmicrohttpd daemon on
 * 127.0.0.1 whose handler runs the form module and reports what it parsed
 * in the response body.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <microhttpd.h>

#include "web/form.h"

#define TEXT_MAX 16
#define FILE_MAX 32
#define FIELDS_MAX 4

struct probe {
    struct form *form; /* NULL when form_create failed */
    int create_errno;  /* errno from a failed form_create */
    int bytewise;      /* feed the body one byte at a time */
};

static struct MHD_Daemon *daemon_;
static int port_;

static void append_field(char **out, size_t *len, FILE *f, const struct form *form, const char *n)
{
    (void)out;
    (void)len;
    const struct form_field *fld = form_get(form, n);
    if (fld == NULL) {
        fprintf(f, "%s: missing\n", n);
        return;
    }
    fprintf(f, "%s: len=%zu filename=%s type=%s data=", n, fld->len,
            fld->filename ? fld->filename : "-", fld->content_type ? fld->content_type : "-");
    for (size_t i = 0; i < fld->len; i++)
        fprintf(f, "%02x", (unsigned char)fld->data[i]);
    fprintf(f, "\n");
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls)
{
    (void)cls;
    (void)method;
    (void)version;
    struct probe *p = *con_cls;
    if (p == NULL) {
        struct form_limits lim = {TEXT_MAX, FILE_MAX, FIELDS_MAX};
        p = calloc(1, sizeof(*p));
        if (p == NULL) return MHD_NO;
        p->form = form_create(conn, &lim);
        p->create_errno = p->form ? 0 : errno;
        p->bytewise = strstr(url, "bytewise") != NULL;
        *con_cls = p;
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (p->form != NULL) {
            if (p->bytewise) {
                for (size_t i = 0; i < *upload_size; i++)
                    form_feed(p->form, upload + i, 1);
            } else {
                form_feed(p->form, upload, *upload_size);
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    char *body = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&body, &len);
    if (f == NULL) return MHD_NO;
    if (p->form == NULL) {
        fprintf(f, "create_failed errno=%d\n", p->create_errno);
    } else {
        fprintf(f, "status=%d\n", form_finish(p->form));
        const char *names = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "names");
        char *copy = strdup(names ? names : "");
        for (char *save = NULL, *n = strtok_r(copy, ",", &save); n; n = strtok_r(NULL, ",", &save))
            append_field(&body, &len, f, p->form, n);
        free(copy);
    }
    fclose(f);
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    enum MHD_Result q = MHD_queue_response(conn, 200, r);
    MHD_destroy_response(r);
    return q;
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    struct probe *p = *con_cls;
    if (p == NULL) return;
    form_destroy(p->form);
    free(p);
    *con_cls = NULL;
}

static int setup(void **state)
{
    (void)state;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    daemon_ = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, handler, NULL,
                               MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_NOTIFY_COMPLETED, completed,
                               NULL, MHD_OPTION_END);
    if (daemon_ == NULL) return -1;
    port_ = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT)->port;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    MHD_stop_daemon(daemon_);
    return 0;
}

/* POSTs body with content_type to path and returns the response body (heap). */
static char *post(const char *path, const char *content_type, const char *body, size_t body_len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port_);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "POST %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
                     "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n",
                     path, content_type, body_len);
    assert_true(n > 0 && (size_t)n < sizeof(head));
    assert_int_equal(write(fd, head, (size_t)n), n);
    size_t off = 0;
    while (off < body_len) {
        ssize_t w = write(fd, body + off, body_len - off);
        assert_true(w > 0);
        off += (size_t)w;
    }
    size_t cap = 4096, len = 0;
    char *resp = malloc(cap);
    assert_non_null(resp);
    for (;;) {
        if (len + 1 == cap) {
            cap *= 2;
            resp = realloc(resp, cap);
            assert_non_null(resp);
        }
        ssize_t r = read(fd, resp + len, cap - len - 1);
        assert_true(r >= 0);
        if (r == 0) break;
        len += (size_t)r;
    }
    close(fd);
    resp[len] = '\0';
    char *start = strstr(resp, "\r\n\r\n");
    assert_non_null(start);
    char *out = strdup(start + 4);
    free(resp);
    return out;
}

static void assert_has(const char *got, const char *want)
{
    if (strstr(got, want) == NULL) fail_msg("expected [%s] in:\n%s", want, got);
}

#define URLENC "application/x-www-form-urlencoded"
#define MULTI "multipart/form-data; boundary=XyZ"

static void test_urlencoded_decodes_percent_and_plus(void **state)
{
    (void)state;
    const char *b = "nickname=Zo%C3%AB+%F0%9F%9A%80&password=p%26w%3D";
    char *got = post("/?names=nickname,password", URLENC, b, strlen(b));
    assert_has(got, "status=0\n");
    /* "Zoë 🚀" */
    assert_has(got, "nickname: len=9 filename=- type=- data=5a6fc3ab20f09f9a80\n");
    assert_has(got, "password: len=4 filename=- type=- data=7026773d\n");
    free(got);
}

static void test_urlencoded_first_duplicate_wins(void **state)
{
    (void)state;
    const char *b = "a=first&b=x&a=second";
    char *got = post("/?names=a,b", URLENC, b, strlen(b));
    assert_has(got, "status=0\n");
    assert_has(got, "a: len=5 filename=- type=- data=6669727374\n");
    assert_has(got, "b: len=1 filename=- type=- data=78\n");
    free(got);
}

static void test_urlencoded_fed_one_byte_at_a_time(void **state)
{
    (void)state;
    const char *b = "a=first&a=second&b=x%20y&a=third";
    char *got = post("/bytewise?names=a,b", URLENC, b, strlen(b));
    assert_has(got, "status=0\n");
    assert_has(got, "a: len=5 filename=- type=- data=6669727374\n");
    assert_has(got, "b: len=3 filename=- type=- data=782079\n");
    free(got);
}

static void test_urlencoded_missing_field(void **state)
{
    (void)state;
    const char *b = "a=1";
    char *got = post("/?names=username", URLENC, b, strlen(b));
    assert_has(got, "status=0\n");
    assert_has(got, "username: missing\n");
    free(got);
}

static void test_urlencoded_keeps_nul_bytes(void **state)
{
    (void)state;
    const char *b = "username=us%00er";
    char *got = post("/?names=username", URLENC, b, strlen(b));
    assert_has(got, "username: len=5 filename=- type=- data=7573006572\n");
    free(got);
}

static void test_urlencoded_text_over_cap_fails(void **state)
{
    (void)state;
    const char *b = "username=aaaaaaaaaaaaaaaaa"; /* 17 > TEXT_MAX */
    char *got = post("/?names=username", URLENC, b, strlen(b));
    assert_has(got, "status=-1\n");
    free(got);
    const char *ok = "username=aaaaaaaaaaaaaaaa"; /* exactly TEXT_MAX */
    got = post("/?names=username", URLENC, ok, strlen(ok));
    assert_has(got, "status=0\n");
    assert_has(got, "username: len=16 ");
    free(got);
}

static void test_too_many_fields_fails(void **state)
{
    (void)state;
    const char *b = "a=1&b=2&c=3&d=4&e=5";
    char *got = post("/", URLENC, b, strlen(b));
    assert_has(got, "status=-3\n");
    free(got);
}

static const char multipart_body[] = "--XyZ\r\n"
                                     "Content-Disposition: form-data; name=\"nickname\"\r\n"
                                     "\r\n"
                                     "Zo\xc3\xab\r\n"
                                     "--XyZ\r\n"
                                     "Content-Disposition: form-data; name=\"picture\"; "
                                     "filename=\"a.png\"\r\n"
                                     "Content-Type: image/png\r\n"
                                     "\r\n"
                                     "\x89PNG\r\n\x1a\n\0\0\r\n"
                                     "--XyZ--\r\n";

static void test_multipart_text_and_file(void **state)
{
    (void)state;
    char *got = post("/?names=nickname,picture", MULTI, multipart_body, sizeof(multipart_body) - 1);
    assert_has(got, "status=0\n");
    assert_has(got, "nickname: len=4 filename=- type=- data=5a6fc3ab\n");
    assert_has(got, "picture: len=10 filename=a.png type=image/png data=89504e470d0a1a0a0000\n");
    free(got);
}

static void test_multipart_fed_one_byte_at_a_time(void **state)
{
    (void)state;
    char *got =
        post("/bytewise?names=nickname,picture", MULTI, multipart_body, sizeof(multipart_body) - 1);
    assert_has(got, "status=0\n");
    assert_has(got, "nickname: len=4 filename=- type=- data=5a6fc3ab\n");
    assert_has(got, "picture: len=10 filename=a.png type=image/png data=89504e470d0a1a0a0000\n");
    free(got);
}

static void test_multipart_empty_file_input(void **state)
{
    (void)state;
    /* What a browser sends when no file was chosen. */
    const char b[] = "--XyZ\r\n"
                     "Content-Disposition: form-data; name=\"nickname\"\r\n\r\n"
                     "x\r\n"
                     "--XyZ\r\n"
                     "Content-Disposition: form-data; name=\"picture\"; filename=\"\"\r\n"
                     "Content-Type: application/octet-stream\r\n\r\n"
                     "\r\n"
                     "--XyZ--\r\n";
    char *got = post("/?names=nickname,picture", MULTI, b, sizeof(b) - 1);
    assert_has(got, "status=0\n");
    assert_has(got, "nickname: len=1 ");
    /* either absent or an empty file: both mean "no new picture" */
    if (strstr(got, "picture: missing") == NULL) assert_has(got, "picture: len=0 ");
    free(got);
}

static void test_multipart_file_over_cap_fails(void **state)
{
    (void)state;
    char b[512];
    int n = snprintf(b, sizeof(b),
                     "--XyZ\r\nContent-Disposition: form-data; name=\"picture\"; "
                     "filename=\"big.png\"\r\n\r\n%033d\r\n--XyZ--\r\n",
                     0); /* 33 bytes > FILE_MAX */
    char *got = post("/?names=picture", MULTI, b, (size_t)n);
    assert_has(got, "status=-2\n");
    free(got);
}

static void test_multipart_text_over_cap_fails(void **state)
{
    (void)state;
    char b[512];
    int n = snprintf(b, sizeof(b),
                     "--XyZ\r\nContent-Disposition: form-data; name=\"nickname\"\r\n\r\n"
                     "%017d\r\n--XyZ--\r\n",
                     0);
    char *got = post("/?names=nickname", MULTI, b, (size_t)n);
    assert_has(got, "status=-1\n");
    free(got);
}

static void test_multipart_truncated_body_is_malformed(void **state)
{
    (void)state;
    const char b[] = "--XyZ\r\n"
                     "Content-Disposition: form-data; name=\"picture\"; filename=\"a.png\"\r\n"
                     "\r\n"
                     "\x89PNG then the connection";
    char *got = post("/?names=picture", MULTI, b, sizeof(b) - 1);
    assert_has(got, "status=-4\n");
    free(got);
}

static void test_unsupported_content_type_is_refused(void **state)
{
    (void)state;
    char *got = post("/", "text/plain", "a=1", 3);
    char want[64];
    snprintf(want, sizeof(want), "create_failed errno=%d\n", EINVAL);
    assert_has(got, want);
    free(got);
    got = post("/", "application/json", "{}", 2);
    assert_has(got, want);
    free(got);
}

static void test_status_messages_are_sentences(void **state)
{
    (void)state;
    int all[] = {
        FORM_OK,         FORM_ERR_FIELD_TOO_LONG, FORM_ERR_FILE_TOO_LARGE, FORM_ERR_TOO_MANY_FIELDS,
        FORM_ERR_SYNTAX, FORM_ERR_NOMEM};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        const char *m = form_status_message(all[i]);
        assert_non_null(m);
        assert_true(strlen(m) > 2 && m[strlen(m) - 1] == '.');
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_urlencoded_decodes_percent_and_plus),
        cmocka_unit_test(test_urlencoded_first_duplicate_wins),
        cmocka_unit_test(test_urlencoded_fed_one_byte_at_a_time),
        cmocka_unit_test(test_urlencoded_missing_field),
        cmocka_unit_test(test_urlencoded_keeps_nul_bytes),
        cmocka_unit_test(test_urlencoded_text_over_cap_fails),
        cmocka_unit_test(test_too_many_fields_fails),
        cmocka_unit_test(test_multipart_text_and_file),
        cmocka_unit_test(test_multipart_fed_one_byte_at_a_time),
        cmocka_unit_test(test_multipart_empty_file_input),
        cmocka_unit_test(test_multipart_file_over_cap_fails),
        cmocka_unit_test(test_multipart_text_over_cap_fails),
        cmocka_unit_test(test_multipart_truncated_body_is_malformed),
        cmocka_unit_test(test_unsupported_content_type_is_refused),
        cmocka_unit_test(test_status_messages_are_sentences),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
