/*
 * server: the core's side of the RPC.
 *
 * Event loops plus a worker pool (the design of memcached and Redis 6's I/O
 * threads): io_threads loops own the connections (epoll, non-blocking
 * sockets) and read whole frames; each pass over the ready connections hands
 * every decoded request to the optional batch handler at once, which answers
 * what it can without blocking (a profile read: one pipelined Redis round
 * trip for the whole batch), and everything else goes to the workers, which
 * run the blocking handler (MySQL, argon2id, libvips), or the group handler
 * for calls the batch handler put in a group (group commit, rpc_group_fn),
 * and write the answers themselves. Why: with a thread per connection every request cost the core
 * two thread wake-ups and Redis one; batching shares them between all the
 * requests that arrived together (docs/performance.md).
 *
 * Protocol rule kept from the thread-per-connection server: one request at a
 * time per connection; bytes beyond a frame before it is answered are a
 * framing error and close the connection (docs/rpc.md).
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

/* One request of a batch (see rpc_batch_fn). */
struct rpc_call {
    const Rpc__Request *req; /* decoded request; owned by the server */
    Rpc__Response *resp;     /* answer to fill (id already set), message.h ownership rule */
    int done;                /* set to 1 by the batch handler when resp is the final answer */
    int group;               /* set by the batch handler on a call it leaves undone: 1..
                                RPC_SERVER_GROUPS puts it in that group (see rpc_group_fn),
                                0 (or out of range) sends it to a worker alone */
};

/*
 * Fast path, called on an event-loop thread with the n requests read in one
 * pass (n >= 1, from different connections). It must not block for long: a
 * loop serves many connections. It answers the calls it can and sets their
 * done; the others go to a worker and the blocking handler (or, when it set
 * their group, the group handler) as if the batch handler had never seen
 * them (it must leave their resp untouched then).
 */
typedef void (*rpc_batch_fn)(void *ctx, struct rpc_call *const *calls, size_t n);

#define RPC_SERVER_GROUPS 4 /* group numbers a batch handler may use: 1..RPC_SERVER_GROUPS */

/*
 * Group commit, run on a worker with n >= 1 calls of one group (their
 * call->group), possibly from several passes and loops: what a write costs
 * once per round trip (a MySQL statement and its commit, a Redis pipeline)
 * is then paid once for all of them. It must answer every call (fill each
 * resp; done is ignored). Calls of a group wait while
 * rpc_server_options.group_concurrency handlers of that group run; the next
 * free worker takes up to group_max of the waiting ones at once. So under
 * load the groups grow with the load, and alone a call waits for nobody.
 */
typedef void (*rpc_group_fn)(void *ctx, struct rpc_call *const *calls, size_t n);

struct rpc_server_options {
    const char *host;         /* listen address, e.g. "127.0.0.1" */
    int port;                 /* TCP port; 0 picks a free one (see rpc_server_port) */
    int inherited_fd;         /* > 0: a socket already bound and listening to adopt instead of
                                 binding host:port (systemd socket activation, sd_listen_fds(3));
                                 0: bind (the default of a zeroed struct) */
    int max_connections;      /* open connections; more wait in the listen backlog */
    int io_threads;           /* event-loop threads; <= 0 means 1 */
    int workers;              /* threads running handler (blocking calls); <= 0 means 64 */
    uint32_t max_frame_bytes; /* largest accepted request frame, bytes */
    int io_timeout_ms;        /* max time to read the rest of a frame once it started or to
                                 write a response, milliseconds; also how long a new
                                 connection may stay without a first request */
    int idle_timeout_ms;      /* a connection whose last request started longer ago than this
                                 (and that has nothing in flight) is closed, ms; <= 0: 60000.
                                 Clients' pools see the close and reconnect. */
    rpc_handler_fn handler;   /* blocking handler, run on a worker */
    rpc_batch_fn batch;       /* fast path run on the loops; NULL: every call goes to a worker */
    rpc_group_fn group;       /* group handler; NULL: grouped calls go to handler one by one */
    int group_concurrency;    /* handlers of one group running at once; <= 0 means 2 */
    int group_max;            /* calls given to one group handler call at most; <= 0 means 64,
                                 at most 1024 */
    void *handler_ctx;        /* first argument of handler, batch and group */
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
 * Starts the loops and workers, accepts and serves until *stop becomes
 * non-zero (checked at least every 200 ms), then stops accepting, lets
 * in-flight requests finish for up to drain_ms milliseconds, closes every
 * connection, joins its threads and returns 0. Returns -1 with errno on a
 * fatal accept error or when the threads cannot be started (EAGAIN, ENOMEM).
 */
int rpc_server_run(struct rpc_server *srv, volatile sig_atomic_t *stop, int drain_ms);

/* Closes the listening socket and frees srv. Call after rpc_server_run returned. */
void rpc_server_destroy(struct rpc_server *srv);

#endif
