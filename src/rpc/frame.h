/*
 * frame: length-prefixed framing of RPC messages over a byte stream.
 *
 * A frame is a 4-byte big-endian unsigned payload length N followed by N
 * payload bytes (one serialized protobuf message, see proto/profile.proto).
 * N must be in 1..max: a zero length is never a valid message here, and a
 * length above max is refused before any payload byte is read, so a peer
 * cannot make us allocate more than max bytes.
 *
 * The parse/header functions are pure (no I/O) so the codec is unit-tested
 * on partial, truncated and oversized input; the read/write functions do the
 * blocking socket I/O with a deadline on top of them.
 */
#ifndef PROFILE_RPC_FRAME_H
#define PROFILE_RPC_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define RPC_FRAME_HEADER_BYTES 4

/* Status values shared by the whole rpc layer; negative means failure. */
enum rpc_status {
    RPC_OK = 0,
    RPC_NEED_MORE = 1,        /* parse: buffer holds an incomplete frame */
    RPC_ERR_IO = -1,          /* read/write/connect failed; errno is set */
    RPC_ERR_TIMEOUT = -2,     /* the deadline passed */
    RPC_ERR_CLOSED = -3,      /* peer closed the connection at a frame boundary */
    RPC_ERR_FRAME = -4,       /* framing error: length 0, above max, or EOF inside a frame */
    RPC_ERR_NOMEM = -5,       /* allocation failed */
    RPC_ERR_DECODE = -6,      /* payload is not a valid message */
    RPC_ERR_MISMATCH = -7,    /* response id differs from the request id */
    RPC_ERR_UNAVAILABLE = -8, /* no connection to the core could be had in time */
};

/* Growable byte buffer owned by one connection; reused across frames. */
struct rpc_buf {
    uint8_t *data; /* heap, owned; NULL until first use */
    size_t len;    /* bytes of valid data */
    size_t cap;    /* bytes allocated */
};

/* Short English name of a status, for logs ("timeout", "framing error"...). */
const char *rpc_status_str(int status);

/* Writes len as the 4-byte big-endian frame header into out. */
void rpc_frame_put_header(uint8_t out[RPC_FRAME_HEADER_BYTES], uint32_t len);

/*
 * Examines the len bytes at buf, which start at a frame boundary.
 * Returns RPC_OK and sets *payload_len when a whole frame is present (the
 * payload starts at buf + 4), RPC_NEED_MORE when more bytes are needed
 * (fewer than 4 bytes: *payload_len untouched; a whole valid header:
 * *payload_len set to the announced length), or RPC_ERR_FRAME when the header
 * announces 0 or more than max bytes (known as soon as 4 bytes are present).
 */
int rpc_frame_parse(const uint8_t *buf, size_t len, uint32_t max, uint32_t *payload_len);

/*
 * Reads exactly one frame from fd into buf (buf->data[0..buf->len) is the
 * payload afterwards), waiting at most timeout_ms in total (< 0: forever).
 * The first recv asks for up to 4 KiB, so a small message costs one system
 * call; bytes after the frame (a second message sent before this one was
 * answered, which the protocol forbids) are a framing error.
 * Returns RPC_OK, RPC_ERR_CLOSED (EOF before any byte), RPC_ERR_FRAME (bad
 * length, EOF mid-frame, or bytes beyond the frame), RPC_ERR_TIMEOUT, RPC_ERR_NOMEM or RPC_ERR_IO
 * (errno set). After any error the stream position is unknown: the caller
 * must close fd.
 */
int rpc_frame_read(int fd, struct rpc_buf *buf, uint32_t max, int timeout_ms);

/*
 * Writes header and payload (len bytes, 1..UINT32_MAX) to fd as one frame,
 * waiting at most timeout_ms in total (< 0: forever). Returns RPC_OK,
 * RPC_ERR_TIMEOUT or RPC_ERR_IO (errno set); after an error close fd.
 */
int rpc_frame_write(int fd, const uint8_t *payload, uint32_t len, int timeout_ms);

/* Ensures buf can hold cap bytes. Returns RPC_OK or RPC_ERR_NOMEM. */
int rpc_buf_reserve(struct rpc_buf *buf, size_t cap);

/* Frees buf->data and zeroes buf. Safe on a zeroed buffer. */
void rpc_buf_free(struct rpc_buf *buf);

#endif
