/* workers: see workers.h. */
#include "web/workers.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

struct workers_job {
    workers_job_fn fn;
    void *arg;
};

struct workers {
    pthread_mutex_t mu;
    pthread_cond_t ready;     /* signalled when a job is queued or the pool stops */
    struct workers_job *ring; /* circular queue of queue_max jobs */
    size_t queue_max;         /* capacity of ring */
    size_t head, count;       /* next job to run; jobs waiting */
    size_t running;           /* jobs being run now */
    int stopping;             /* 1: finish the queue, then exit */
    int joined;               /* 1 once workers_stop joined (or is joining) the threads */
    pthread_t *threads;
    int nthreads; /* threads started */
};

static void *workers_main(void *arg)
{
    struct workers *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->count == 0 && !w->stopping)
            pthread_cond_wait(&w->ready, &w->mu);
        if (w->count == 0) break; /* stopping and drained */
        struct workers_job job = w->ring[w->head];
        w->head = (w->head + 1) % w->queue_max;
        w->count--;
        w->running++;
        pthread_mutex_unlock(&w->mu);
        job.fn(job.arg);
        pthread_mutex_lock(&w->mu);
        w->running--;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

struct workers *workers_create(int threads, size_t queue_max)
{
    struct workers *w = calloc(1, sizeof(*w));
    if (w == NULL) return NULL;
    w->queue_max = queue_max > 0 ? queue_max : 1;
    w->ring = calloc(w->queue_max, sizeof(*w->ring));
    w->threads = calloc((size_t)threads, sizeof(*w->threads));
    if (w->ring == NULL || w->threads == NULL) goto fail;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->ready, NULL);
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0) goto fail_sync;
    /* Jobs render pages and parse JSON: a small stack is plenty, and 64 of them stay cheap. */
    pthread_attr_setstacksize(&attr, 256u << 10);
    for (int i = 0; i < threads; i++) {
        int rc = pthread_create(&w->threads[i], &attr, workers_main, w);
        if (rc != 0) {
            pthread_attr_destroy(&attr);
            workers_destroy(w);
            errno = rc;
            return NULL;
        }
        w->nthreads++;
    }
    pthread_attr_destroy(&attr);
    return w;
fail_sync:
    pthread_cond_destroy(&w->ready);
    pthread_mutex_destroy(&w->mu);
fail:
    free(w->ring);
    free(w->threads);
    free(w);
    errno = ENOMEM;
    return NULL;
}

int workers_submit(struct workers *w, workers_job_fn fn, void *arg)
{
    pthread_mutex_lock(&w->mu);
    if (w->stopping || w->count == w->queue_max) {
        pthread_mutex_unlock(&w->mu);
        return -1;
    }
    w->ring[(w->head + w->count) % w->queue_max] = (struct workers_job){fn, arg};
    w->count++;
    pthread_cond_signal(&w->ready);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

size_t workers_pending(struct workers *w)
{
    pthread_mutex_lock(&w->mu);
    size_t n = w->count + w->running;
    pthread_mutex_unlock(&w->mu);
    return n;
}

void workers_stop(struct workers *w, workers_job_fn cancel)
{
    if (w == NULL) return;
    pthread_mutex_lock(&w->mu);
    w->stopping = 1;
    /* Jobs not started: handed to cancel (outside the lock: it may take long). */
    size_t n = cancel != NULL ? w->count : 0, head = w->head;
    struct workers_job *dropped = n > 0 ? malloc(n * sizeof(*dropped)) : NULL;
    if (dropped == NULL) n = 0; /* ENOMEM: the workers run them instead */
    for (size_t i = 0; i < n; i++)
        dropped[i] = w->ring[(head + i) % w->queue_max];
    w->head = (head + n) % w->queue_max;
    w->count -= n;
    pthread_cond_broadcast(&w->ready);
    int joined = w->joined;
    w->joined = 1;
    pthread_mutex_unlock(&w->mu);
    for (size_t i = 0; i < n; i++)
        cancel(dropped[i].arg);
    free(dropped);
    if (joined) return;
    for (int i = 0; i < w->nthreads; i++)
        pthread_join(w->threads[i], NULL);
}

void workers_destroy(struct workers *w)
{
    if (w == NULL) return;
    workers_stop(w, NULL);
    pthread_cond_destroy(&w->ready);
    pthread_mutex_destroy(&w->mu);
    free(w->ring);
    free(w->threads);
    free(w);
}
