/*
 * workers: a fixed pool of threads that run the web server's slow requests
 * (logins, which wait for argon2id in the core, and picture uploads, which
 * wait for libvips) off libmicrohttpd's own threads.
 *
 * libmicrohttpd multiplexes many connections on each of its few threads; a
 * handler that blocks there stalls every other connection that thread owns.
 * Fast requests (profile reads, nickname changes: one short RPC) never
 * block: their RPC goes to the reactor (rpc/async.h); a slow one (it may
 * hold a blocking connection for seconds) suspends its connection, runs
 * here and resumes it. The slow lane has its own RPC pool too, so a burst of
 * logins can neither hold libmicrohttpd's threads nor take every pooled
 * connection to the core: profile reads keep flowing (a bulkhead).
 */
#ifndef PROFILE_WEB_WORKERS_H
#define PROFILE_WEB_WORKERS_H

#include <stddef.h>

struct workers;

typedef void (*workers_job_fn)(void *arg);

/*
 * Starts threads worker threads whose queue holds at most queue_max jobs
 * waiting. Returns the pool (stop with workers_destroy) or NULL with errno
 * set (ENOMEM, EAGAIN from pthread_create).
 */
struct workers *workers_create(int threads, size_t queue_max);

/*
 * Queues fn(arg) to run on a worker thread. Returns 0, or -1 when the queue
 * is full or the pool is stopping (the caller answers 503 itself; arg is
 * still the caller's).
 */
int workers_submit(struct workers *w, workers_job_fn fn, void *arg);

/* Jobs queued or running now (a gauge for logs and metrics). */
size_t workers_pending(struct workers *w);

/*
 * Stops the pool: jobs not started yet are given to cancel(arg) on the
 * calling thread instead (cancel NULL: they run), running ones finish, the
 * threads are joined. w stays valid and every later workers_submit fails
 * (-1), so libmicrohttpd threads still running may try. Idempotent; NULL
 * is allowed. Not from a worker thread.
 */
void workers_stop(struct workers *w, workers_job_fn cancel);

/* workers_stop(w, NULL), then frees w. NULL is allowed. */
void workers_destroy(struct workers *w);

#endif
