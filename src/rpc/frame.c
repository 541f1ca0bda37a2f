/* frame: see frame.h. */
#include "rpc/frame.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#define RPC_FRAME_READ_CHUNK 4096 /* bytes asked for by the first recv of a frame */

const char *rpc_status_str(int status)
{
    switch (status) {
    case RPC_OK:
        return "ok";
    case RPC_NEED_MORE:
        return "incomplete frame";
    case RPC_ERR_IO:
        return "i/o error";
    case RPC_ERR_TIMEOUT:
        return "timeout";
    case RPC_ERR_CLOSED:
        return "connection closed";
    case RPC_ERR_FRAME:
        return "framing error";
    case RPC_ERR_NOMEM:
        return "out of memory";
    case RPC_ERR_DECODE:
        return "undecodable message";
    case RPC_ERR_MISMATCH:
        return "response id mismatch";
    case RPC_ERR_UNAVAILABLE:
        return "core unavailable";
    default:
        return "unknown";
    }
}

void rpc_frame_put_header(uint8_t out[RPC_FRAME_HEADER_BYTES], uint32_t len)
{
    out[0] = (uint8_t)(len >> 24);
    out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
}

int rpc_frame_parse(const uint8_t *buf, size_t len, uint32_t max, uint32_t *payload_len)
{
    if (len < RPC_FRAME_HEADER_BYTES) return RPC_NEED_MORE;
    uint32_t n = ((uint32_t)buf[0] << 24) | ((uint32_t)buf[1] << 16) | ((uint32_t)buf[2] << 8) |
                 (uint32_t)buf[3];
    if (n == 0 || n > max) return RPC_ERR_FRAME;
    *payload_len = n;
    return len - RPC_FRAME_HEADER_BYTES < n ? RPC_NEED_MORE : RPC_OK;
}

int rpc_buf_reserve(struct rpc_buf *buf, size_t cap)
{
    if (buf->cap >= cap) return RPC_OK;
    uint8_t *p = realloc(buf->data, cap);
    if (p == NULL) return RPC_ERR_NOMEM;
    buf->data = p;
    buf->cap = cap;
    return RPC_OK;
}

void rpc_buf_free(struct rpc_buf *buf)
{
    free(buf->data);
    buf->data = NULL;
    buf->len = buf->cap = 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for events or the deadline (ms, CLOCK_MONOTONIC; < 0 = none) passes. */
static int wait_ready(int fd, short events, int64_t deadline)
{
    for (;;) {
        int timeout = -1;
        if (deadline >= 0) {
            int64_t left = deadline - now_ms();
            if (left <= 0) return RPC_ERR_TIMEOUT;
            timeout = left > 60000 ? 60000 : (int)left;
        }
        struct pollfd p = {.fd = fd, .events = events, .revents = 0};
        int rc = poll(&p, 1, timeout);
        if (rc > 0) return RPC_OK; /* errors and hang-ups surface in the following recv/send */
        if (rc < 0 && errno != EINTR) return RPC_ERR_IO;
    }
}

/*
 * Reads exactly len bytes into dst. *got counts bytes read so far (for the
 * caller to tell EOF at a boundary from EOF inside a frame).
 */
static int read_exact(int fd, uint8_t *dst, size_t len, int64_t deadline, size_t *got)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = recv(fd, dst + off, len - off, MSG_DONTWAIT);
        if (n > 0) {
            off += (size_t)n;
            *got += (size_t)n;
            continue;
        }
        if (n == 0) return *got == 0 ? RPC_ERR_CLOSED : RPC_ERR_FRAME;
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return RPC_ERR_IO;
        int rc = wait_ready(fd, POLLIN, deadline);
        if (rc != RPC_OK) return rc;
    }
    return RPC_OK;
}

/*
 * Reads whatever is available (at least one byte, at most room bytes) into
 * dst, waiting until the deadline. Returns the byte count, 0 at EOF, or a
 * negative rpc_status.
 */
static ssize_t read_some(int fd, uint8_t *dst, size_t room, int64_t deadline)
{
    for (;;) {
        ssize_t n = recv(fd, dst, room, MSG_DONTWAIT);
        if (n >= 0) return n;
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return RPC_ERR_IO;
        int rc = wait_ready(fd, POLLIN, deadline);
        if (rc != RPC_OK) return rc;
    }
}

int rpc_frame_read(int fd, struct rpc_buf *buf, uint32_t max, int timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    uint32_t n = 0;
    size_t got = 0;
    int rc;

    /*
     * One recv usually brings the header and the whole payload of a small
     * message (requests and answers are a few hundred bytes): read greedily
     * into a buffer of RPC_FRAME_READ_CHUNK, and only then as much as the
     * header announces. Bytes beyond the frame mean the peer sent a second
     * message before this one was answered, which the protocol forbids.
     */
    buf->len = 0;
    rc = rpc_buf_reserve(buf, RPC_FRAME_READ_CHUNK);
    if (rc != RPC_OK) return rc;
    for (;;) {
        ssize_t r = read_some(fd, buf->data + got, buf->cap - got, deadline);
        if (r < 0) return (int)r;
        if (r == 0) return got == 0 ? RPC_ERR_CLOSED : RPC_ERR_FRAME;
        got += (size_t)r;
        rc = rpc_frame_parse(buf->data, got, max, &n);
        if (rc == RPC_ERR_FRAME) return rc;
        if (got >= RPC_FRAME_HEADER_BYTES) break;
    }
    size_t total = RPC_FRAME_HEADER_BYTES + (size_t)n;
    if (got > total) return RPC_ERR_FRAME;
    rc = rpc_buf_reserve(buf, total);
    if (rc != RPC_OK) return rc;
    size_t want = total - got;
    if (want > 0) {
        size_t more = 0;
        rc = read_exact(fd, buf->data + got, want, deadline, &more);
        if (rc == RPC_ERR_CLOSED) rc = RPC_ERR_FRAME; /* EOF inside the frame */
        if (rc != RPC_OK) return rc;
    }
    memmove(buf->data, buf->data + RPC_FRAME_HEADER_BYTES, n);
    buf->len = n;
    return RPC_OK;
}

int rpc_frame_write(int fd, const uint8_t *payload, uint32_t len, int timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    uint8_t header[RPC_FRAME_HEADER_BYTES];
    rpc_frame_put_header(header, len);
    size_t total = sizeof(header) + (size_t)len, sent = 0;
    while (sent < total) {
        struct iovec iov[2];
        int iovcnt = 0;
        if (sent < sizeof(header)) {
            iov[iovcnt].iov_base = header + sent;
            iov[iovcnt++].iov_len = sizeof(header) - sent;
            iov[iovcnt].iov_base = (void *)payload;
            iov[iovcnt++].iov_len = len;
        } else {
            iov[iovcnt].iov_base = (void *)(payload + (sent - sizeof(header)));
            iov[iovcnt++].iov_len = total - sent;
        }
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
        ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0) {
            sent += (size_t)n;
            continue;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return RPC_ERR_IO;
        int rc = wait_ready(fd, POLLOUT, deadline);
        if (rc != RPC_OK) return rc;
    }
    return RPC_OK;
}
