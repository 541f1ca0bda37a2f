/*
 * The frame codec: a 4-byte big-endian length, then the payload. Proves
 * partial input waits for more, zero and oversized lengths are framing
 * errors, and reads over a real socket handle split writes, EOF at and
 * inside a frame, and timeouts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "rpc/frame.h"

static void parse_needs_four_header_bytes(void **state)
{
    (void)state;
    uint8_t buf[] = {0, 0, 0};
    uint32_t n = 99;
    for (size_t len = 0; len <= sizeof(buf); len++)
        assert_int_equal(rpc_frame_parse(buf, len, 100, &n), RPC_NEED_MORE);
    assert_int_equal(n, 99);
}

static void parse_waits_for_whole_payload(void **state)
{
    (void)state;
    uint8_t buf[4 + 5] = {0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'};
    uint32_t n = 0;
    for (size_t len = 4; len < sizeof(buf); len++)
        assert_int_equal(rpc_frame_parse(buf, len, 100, &n), RPC_NEED_MORE);
    assert_int_equal(rpc_frame_parse(buf, sizeof(buf), 100, &n), RPC_OK);
    assert_int_equal(n, 5);
}

static void parse_rejects_zero_length(void **state)
{
    (void)state;
    uint8_t buf[] = {0, 0, 0, 0};
    uint32_t n;
    assert_int_equal(rpc_frame_parse(buf, sizeof(buf), 100, &n), RPC_ERR_FRAME);
}

static void parse_rejects_oversized_before_payload(void **state)
{
    (void)state;
    uint8_t buf[4];
    uint32_t n;
    rpc_frame_put_header(buf, 101);
    assert_int_equal(rpc_frame_parse(buf, sizeof(buf), 100, &n), RPC_ERR_FRAME);
    rpc_frame_put_header(buf, 0xffffffffu);
    assert_int_equal(rpc_frame_parse(buf, sizeof(buf), 100, &n), RPC_ERR_FRAME);
    rpc_frame_put_header(buf, 100);
    assert_int_equal(rpc_frame_parse(buf, sizeof(buf), 100, &n), RPC_NEED_MORE);
}

static void header_is_big_endian(void **state)
{
    (void)state;
    uint8_t buf[4];
    rpc_frame_put_header(buf, 0x01020304u);
    assert_int_equal(buf[0], 1);
    assert_int_equal(buf[1], 2);
    assert_int_equal(buf[2], 3);
    assert_int_equal(buf[3], 4);
}

static void payload_may_contain_nul_bytes(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    uint8_t payload[] = {0, 1, 0, 0, 2, 0};
    assert_int_equal(rpc_frame_write(sv[0], payload, sizeof(payload), 1000), RPC_OK);
    struct rpc_buf buf = {0};
    assert_int_equal(rpc_frame_read(sv[1], &buf, 100, 1000), RPC_OK);
    assert_int_equal(buf.len, sizeof(payload));
    assert_memory_equal(buf.data, payload, sizeof(payload));
    rpc_buf_free(&buf);
    close(sv[0]);
    close(sv[1]);
}

static void read_reassembles_byte_by_byte_writes(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    uint8_t frame[4 + 3];
    rpc_frame_put_header(frame, 3);
    memcpy(frame + 4, "abc", 3);
    for (size_t i = 0; i < sizeof(frame); i++)
        assert_int_equal(write(sv[0], frame + i, 1), 1);
    struct rpc_buf buf = {0};
    assert_int_equal(rpc_frame_read(sv[1], &buf, 100, 1000), RPC_OK);
    assert_int_equal(buf.len, 3);
    assert_memory_equal(buf.data, "abc", 3);
    rpc_buf_free(&buf);
    close(sv[0]);
    close(sv[1]);
}

static void read_reports_clean_eof_as_closed(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(sv[0]);
    struct rpc_buf buf = {0};
    assert_int_equal(rpc_frame_read(sv[1], &buf, 100, 1000), RPC_ERR_CLOSED);
    rpc_buf_free(&buf);
    close(sv[1]);
}

static void read_reports_truncated_frame_as_framing_error(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    uint8_t frame[4 + 2];
    rpc_frame_put_header(frame, 10); /* announces 10, sends 2 */
    frame[4] = 'x', frame[5] = 'y';
    assert_int_equal(write(sv[0], frame, sizeof(frame)), (ssize_t)sizeof(frame));
    close(sv[0]);
    struct rpc_buf buf = {0};
    assert_int_equal(rpc_frame_read(sv[1], &buf, 100, 1000), RPC_ERR_FRAME);
    rpc_buf_free(&buf);
    close(sv[1]);
}

static void read_refuses_oversized_without_allocating(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    uint8_t header[4];
    rpc_frame_put_header(header, 1u << 30);
    assert_int_equal(write(sv[0], header, 4), 4);
    struct rpc_buf buf = {0};
    assert_int_equal(rpc_frame_read(sv[1], &buf, 1u << 20, 1000), RPC_ERR_FRAME);
    assert_true(buf.cap <= 4096); /* the first-read chunk, never the announced 1 GiB */
    rpc_buf_free(&buf);
    close(sv[0]);
    close(sv[1]);
}

static void second_message_before_the_answer_is_a_framing_error(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    uint8_t two[2 * (4 + 2)];
    rpc_frame_put_header(two, 2);
    memcpy(two + 4, "ab", 2);
    rpc_frame_put_header(two + 6, 2);
    memcpy(two + 10, "cd", 2);
    assert_int_equal(write(sv[0], two, sizeof(two)), (ssize_t)sizeof(two));
    struct rpc_buf buf = {0};
    assert_int_equal(rpc_frame_read(sv[1], &buf, 100, 1000), RPC_ERR_FRAME);
    rpc_buf_free(&buf);
    close(sv[0]);
    close(sv[1]);
}

static void large_payload_arrives_whole(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    size_t n = 3u << 20; /* bigger than any socket buffer: needs many reads */
    uint8_t *payload = malloc(n);
    assert_non_null(payload);
    for (size_t i = 0; i < n; i++)
        payload[i] = (uint8_t)(i * 7);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(sv[1]);
        _exit(rpc_frame_write(sv[0], payload, (uint32_t)n, 5000) == RPC_OK ? 0 : 1);
    }
    close(sv[0]);
    struct rpc_buf buf = {0};
    assert_int_equal(rpc_frame_read(sv[1], &buf, 4u << 20, 5000), RPC_OK);
    assert_int_equal(buf.len, n);
    assert_memory_equal(buf.data, payload, n);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    rpc_buf_free(&buf);
    free(payload);
    close(sv[1]);
}

static void read_times_out_on_silent_peer(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    uint8_t header[4];
    rpc_frame_put_header(header, 8);
    assert_int_equal(write(sv[0], header, 4), 4); /* header, then nothing */
    struct rpc_buf buf = {0};
    assert_int_equal(rpc_frame_read(sv[1], &buf, 100, 50), RPC_ERR_TIMEOUT);
    rpc_buf_free(&buf);
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_needs_four_header_bytes),
        cmocka_unit_test(parse_waits_for_whole_payload),
        cmocka_unit_test(parse_rejects_zero_length),
        cmocka_unit_test(parse_rejects_oversized_before_payload),
        cmocka_unit_test(header_is_big_endian),
        cmocka_unit_test(payload_may_contain_nul_bytes),
        cmocka_unit_test(read_reassembles_byte_by_byte_writes),
        cmocka_unit_test(read_reports_clean_eof_as_closed),
        cmocka_unit_test(read_reports_truncated_frame_as_framing_error),
        cmocka_unit_test(read_refuses_oversized_without_allocating),
        cmocka_unit_test(second_message_before_the_answer_is_a_framing_error),
        cmocka_unit_test(large_payload_arrives_whole),
        cmocka_unit_test(read_times_out_on_silent_peer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
