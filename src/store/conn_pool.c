#include "store/conn_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct conn_pool {
    struct conn_pool_ops ops;
    void *arg;
    int size;                      /* max connections that may exist */
    int open;                      /* connections existing or being opened */
    int n_idle;                    /* entries in idle[] */
    struct conn_pool_entry **idle; /* stack of idle connections, size slots */
    uint64_t generation;           /* bumped by conn_pool_invalidate */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled when a slot or an idle connection frees up */
};

struct conn_pool *conn_pool_create(int size, const struct conn_pool_ops *ops, void *arg)
{
    struct conn_pool *pool = NULL;
    pthread_condattr_t attr;
    int attr_ok = 0, mu_ok = 0;

    if (size < 1 || ops == NULL || ops->open == NULL || ops->close == NULL) {
        errno = EINVAL;
        return NULL;
    }
    pool = calloc(1, sizeof(*pool));
    if (pool == NULL) goto fail;
    pool->idle = calloc((size_t)size, sizeof(pool->idle[0]));
    if (pool->idle == NULL) goto fail;
    pool->ops = *ops;
    pool->arg = arg;
    pool->size = size;
    if (pthread_mutex_init(&pool->mu, NULL) != 0) goto fail;
    mu_ok = 1;
    if (pthread_condattr_init(&attr) != 0) goto fail;
    attr_ok = 1;
    /* Waits are measured on the monotonic clock so a wall-clock jump cannot
     * make a borrower wait for hours. */
    if (pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0) goto fail;
    if (pthread_cond_init(&pool->cv, &attr) != 0) goto fail;
    pthread_condattr_destroy(&attr);
    return pool;

fail:
    if (attr_ok) pthread_condattr_destroy(&attr);
    if (mu_ok) pthread_mutex_destroy(&pool->mu);
    if (pool != NULL) free(pool->idle);
    free(pool);
    errno = ENOMEM;
    return NULL;
}

static void close_entry(struct conn_pool *pool, struct conn_pool_entry *e)
{
    pool->ops.close(pool->arg, e->conn);
    free(e);
}

void conn_pool_destroy(struct conn_pool *pool)
{
    if (pool == NULL) return;
    for (int i = 0; i < pool->n_idle; i++)
        close_entry(pool, pool->idle[i]);
    pthread_cond_destroy(&pool->cv);
    pthread_mutex_destroy(&pool->mu);
    free(pool->idle);
    free(pool);
}

static void deadline_after(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int conn_pool_acquire(struct conn_pool *pool, int wait_ms, struct conn_pool_entry **out)
{
    struct timespec deadline;
    struct conn_pool_entry *e = NULL;
    struct conn_pool_entry *stale;
    uint64_t generation;

    *out = NULL;
    deadline_after(&deadline, wait_ms < 0 ? 0 : wait_ms);
    pthread_mutex_lock(&pool->mu);
    for (;;) {
        if (pool->n_idle > 0) {
            e = pool->idle[--pool->n_idle];
            if (e->generation < pool->generation) {
                /* Stale after a server restart: close it (outside the lock)
                 * and look again; its slot is free now. */
                pool->open--;
                stale = e;
                e = NULL;
                pthread_mutex_unlock(&pool->mu);
                close_entry(pool, stale);
                pthread_mutex_lock(&pool->mu);
                continue;
            }
            e->uses++;
            e->broken = 0;
            pthread_mutex_unlock(&pool->mu);
            *out = e;
            return 0;
        }
        if (pool->open < pool->size) break;
        int rc = pthread_cond_timedwait(&pool->cv, &pool->mu, &deadline);
        if (rc == ETIMEDOUT) {
            pthread_mutex_unlock(&pool->mu);
            errno = ETIMEDOUT;
            return -1;
        }
    }
    /* A slot is free: reserve it, then connect without holding the lock. */
    pool->open++;
    generation = pool->generation;
    pthread_mutex_unlock(&pool->mu);

    e = calloc(1, sizeof(*e));
    if (e != NULL) e->conn = pool->ops.open(pool->arg);
    if (e == NULL || e->conn == NULL) {
        free(e);
        pthread_mutex_lock(&pool->mu);
        pool->open--;
        pthread_cond_signal(&pool->cv);
        pthread_mutex_unlock(&pool->mu);
        errno = ECONNREFUSED;
        return -1;
    }
    e->generation = generation;
    e->uses = 1;
    *out = e;
    return 0;
}

void conn_pool_release(struct conn_pool *pool, struct conn_pool_entry *e)
{
    if (e == NULL) return;
    pthread_mutex_lock(&pool->mu);
    if (e->broken || e->generation < pool->generation) {
        pool->open--;
        pthread_cond_signal(&pool->cv);
        pthread_mutex_unlock(&pool->mu);
        close_entry(pool, e);
        return;
    }
    pool->idle[pool->n_idle++] = e;
    pthread_cond_signal(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
}

void conn_pool_invalidate(struct conn_pool *pool, const struct conn_pool_entry *entry)
{
    pthread_mutex_lock(&pool->mu);
    if (entry->generation >= pool->generation) pool->generation = entry->generation + 1;
    pthread_mutex_unlock(&pool->mu);
}

void conn_pool_stats(struct conn_pool *pool, int *open, int *idle)
{
    pthread_mutex_lock(&pool->mu);
    if (open != NULL) *open = pool->open;
    if (idle != NULL) *idle = pool->n_idle;
    pthread_mutex_unlock(&pool->mu);
}
