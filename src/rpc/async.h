/*
 * async: the web server's non-blocking side of the RPC, for callers that
 * must not wait for the core (the web's fast lane).
 *
 * One reactor thread owns up to cfg.pool_size persistent TCP connections to
 * the core and drives them with epoll. rpc_async_call() packs the request,
 * queues it and returns at once; the reactor writes it on an idle
 * connection (opening one while fewer than pool_size exist; otherwise the
 * call waits, first come first served, up to pool_wait_ms), reads the
 * answer and hands it to the caller's callback on the reactor thread.
 *
 * Same protocol and guarantees as the blocking pool (client.h): one request
 * at a time per connection, the answer's id checked against the request's,
 * a connection closed after any error or timeout so a late answer is never
 * read by another call, and one retry on a fresh connection when a reused
 * one turns out to have been closed by the core (a restart) before any byte
 * of the answer arrived.
 *
 * Why: a libmicrohttpd thread blocked on the core serves none of its other
 * connections meanwhile, so the web needed 16 threads for 16 requests in
 * flight and paid two thread switches per request (docs/performance.md).
 * Here the web's threads suspend the connection and go on; the reactor
 * wakes once for every answer that arrived together.
 */
#ifndef PROFILE_RPC_ASYNC_H
#define PROFILE_RPC_ASYNC_H

#include "common/config.h"
#include "profile.pb-c.h"
#include "rpc/client.h"

struct rpc_async;

/*
 * Receives the outcome of one rpc_async_call(), exactly once, on the
 * reactor thread: status RPC_OK with resp (the callee owns it: free with
 * rpc_call_free), or a negative rpc_status (frame.h) with resp NULL; the
 * meanings are rpc_call()'s (every error: answer 503). It must not block:
 * every other call waits for it.
 */
typedef void (*rpc_async_done_fn)(void *arg, int status, Rpc__Response *resp);

/*
 * Starts the reactor for the core named by cfg (copied). No connection is
 * opened yet, so this succeeds while the core is down. Returns the client
 * (free with rpc_async_destroy) or NULL with errno set (ENOMEM, EMFILE from
 * epoll/eventfd, EAGAIN from pthread_create).
 */
struct rpc_async *rpc_async_create(const struct config_rpc *cfg);

/* A request packed for the wire, not yet sent (see rpc_async_pack). */
struct rpc_async_call;

/*
 * Packs req (req->id must be non-zero) into a frame, so req and everything
 * it points to may be freed afterwards, and stores it in *out (send it with
 * rpc_async_submit, or free it with rpc_async_call_free). Returns RPC_OK,
 * RPC_ERR_FRAME (req packs to 0 bytes or more than max_frame_bytes) or
 * RPC_ERR_NOMEM (*out NULL then). Needs no client: a caller can pack while
 * its request's memory is at hand and decide later whether to send.
 */
int rpc_async_pack(const Rpc__Request *req, uint32_t max_frame_bytes, struct rpc_async_call **out);

/* Frees a packed call that was never submitted. NULL is allowed. */
void rpc_async_call_free(struct rpc_async_call *call);

/*
 * Sends call (always taken over: freed by the client, also on failure) and
 * arranges for done(arg, ...) to be called with the answer on the reactor
 * thread. done may run before this function returns: whatever it touches
 * must be ready first (the web suspends the connection before submitting).
 * Thread-safe. Returns RPC_OK, or RPC_ERR_UNAVAILABLE when the client is
 * stopping; done is then never called.
 */
int rpc_async_submit(struct rpc_async *a, struct rpc_async_call *call, rpc_async_done_fn done,
                     void *arg);

/* rpc_async_pack() with a's max_frame_bytes, then rpc_async_submit(); same returns. */
int rpc_async_call(struct rpc_async *a, const Rpc__Request *req, rpc_async_done_fn done, void *arg);

/*
 * Stops the reactor: every call queued or in flight gets done(arg,
 * RPC_ERR_UNAVAILABLE, NULL), connections are closed and the thread is
 * joined; later rpc_async_call()s fail with RPC_ERR_UNAVAILABLE. Idempotent;
 * NULL is allowed. Must not be called from a done callback.
 */
void rpc_async_stop(struct rpc_async *a);

/* rpc_async_stop(), then frees a. NULL is allowed. */
void rpc_async_destroy(struct rpc_async *a);

/* Copies the client's gauges (same meaning as the blocking pool's) into *out. Thread-safe. */
void rpc_async_get_stats(struct rpc_async *a, struct rpc_pool_stats *out);

#endif
