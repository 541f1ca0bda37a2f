/*
 * server: the core's side of the RPC.
 *
 * Accepts TCP connections and serves each in its own thread with a loop
 * (read frame, decode, call the handler, encode, write frame) whose memory
 * does not grow with the number of requests: one buffer per connection,
 * reused. Threads are capped at max_connections; further connections wait
 * in the listen backlog. Because each connection has its own thread, a slow
 * request (argon2id, image decoding) delays only the connection it came on;
 * the web server's pool spreads other requests over other connections.
 */
#ifndef PROFILE_RPC_SERVER_H
#define PROFILE_RPC_SERVER_H

#include <signal.h>
#include <stdint.h>

#include "profile.pb-c.h"

/*
 * Business logic entry point. Fills resp (already RPC__RESPONSE__INIT with
 * id copied from req) following the ownership rule of rpc/message.h. Must
 * always set a status; never fails the connection.
 */
typedef void (*rpc_handler_fn)(void *ctx, const Rpc__Request *req, Rpc__Response *resp);

struct rpc_server_options {
    const char *host;         /* listen address, e.g. "127.0.0.1" */
    int port;                 /* TCP port; 0 picks a free one (see rpc_server_port) */
    int inherited_fd;         /* > 0: a socket already bound and listening to adopt instead of
                                 binding host:port (systemd socket activation, sd_listen_fds(3));
                                 0: bind (the default of a zeroed struct) */
    int max_connections;      /* concurrent connections served */
    uint32_t max_frame_bytes; /* largest accepted request frame, bytes */
    int io_timeout_ms;        /* max time to read the rest of a frame once it started or to
                                 write a response, milliseconds */
    rpc_handler_fn handler;
    void *handler_ctx;
    /* Called by rpc_server_run's thread at least every 200 ms while it runs
     * (and not during the drain), e.g. to ping systemd's watchdog or to reopen
     * the log after SIGHUP; NULL for none. Must not block. */
    void (*tick)(void *tick_ctx);
    void *tick_ctx;
};

struct rpc_server;

/*
 * Binds and listens (SO_REUSEADDR), or adopts opt->inherited_fd (which then
 * belongs to the server and is closed when it stops accepting; with socket
 * activation systemd keeps its own copy, so connections that arrive while
 * the core restarts wait in the backlog for the next process). Returns the
 * server (free with rpc_server_destroy), or NULL with errno set
 * (EADDRINUSE, ENOMEM, ENOTSOCK...).
 */
struct rpc_server *rpc_server_create(const struct rpc_server_options *opt);

/* Port actually bound (useful when opt->port was 0). */
int rpc_server_port(const struct rpc_server *srv);

/*
 * Accepts and serves until *stop becomes non-zero (checked at least every
 * 200 ms), then stops accepting, lets in-flight requests finish for up to
 * drain_ms milliseconds and returns 0. Returns -1 with errno on a fatal
 * accept error.
 */
int rpc_server_run(struct rpc_server *srv, volatile sig_atomic_t *stop, int drain_ms);

/* Closes the listening socket and frees srv. Call after rpc_server_run returned. */
void rpc_server_destroy(struct rpc_server *srv);

#endif
