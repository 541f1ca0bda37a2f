#include "core/password.h"

#include <errno.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One argon2id computation handed to a hashing thread. */
struct hash_job {
    int verify;           /* 1: crypto_pwhash_str_verify, 0: crypto_pwhash_str_alg */
    const char *phc;      /* verify: the stored PHC string */
    const char *password; /* the password, len bytes */
    size_t len;
    char *out;             /* hash: PASSWORD_HASH_BYTES of output */
    int rc;                /* libsodium's return value */
    int err;               /* errno after the call (ENOMEM tells an outage from a mismatch) */
    int done;              /* set by the hashing thread under the hasher's mutex */
    struct hash_job *next; /* queue link */
};

struct password_hasher {
    unsigned long long opslimit; /* argon2id passes */
    size_t memlimit;             /* argon2id memory, bytes */
    pthread_mutex_t mu;
    pthread_cond_t queued;        /* signalled when a job is queued or the hasher stops */
    pthread_cond_t finished;      /* broadcast when a job is done */
    struct hash_job *head, *tail; /* jobs waiting for a thread */
    int stopping;                 /* 1: threads exit once the queue is empty */
    pthread_t *threads;           /* the hashing threads, nice +10 */
    int nthreads;
    atomic_int running;              /* computations in progress */
    atomic_int peak;                 /* most computations ever in progress at once */
    char dummy[PASSWORD_HASH_BYTES]; /* PHC string of a random password, same cost */
};

/* How much lower the hashing threads' priority is than the request threads'. */
#define PASSWORD_NICE 10

static void *hasher_main(void *arg)
{
    struct password_hasher *h = arg;
    /*
     * Hashing is the one CPU-bound job in the core: at nice +10 the
     * scheduler gives the request threads (profile reads, 100 us each) the
     * CPU whenever they want it, and argon2id the rest. Raising one's own
     * nice value needs no privilege; failure only costs latency.
     */
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), PASSWORD_NICE);
    pthread_mutex_lock(&h->mu);
    for (;;) {
        while (h->head == NULL && !h->stopping)
            pthread_cond_wait(&h->queued, &h->mu);
        struct hash_job *job = h->head;
        if (job == NULL) break; /* stopping, queue empty */
        h->head = job->next;
        if (h->head == NULL) h->tail = NULL;
        pthread_mutex_unlock(&h->mu);

        int now = atomic_fetch_add(&h->running, 1) + 1;
        int peak = atomic_load(&h->peak);
        while (now > peak && !atomic_compare_exchange_weak(&h->peak, &peak, now))
            ;
        errno = 0;
        if (job->verify)
            job->rc =
                crypto_pwhash_str_verify(job->phc, job->password, (unsigned long long)job->len);
        else
            /* argon2id explicitly, whatever libsodium's default algorithm becomes. */
            job->rc = crypto_pwhash_str_alg(job->out, job->password, (unsigned long long)job->len,
                                            h->opslimit, h->memlimit, crypto_pwhash_ALG_ARGON2ID13);
        job->err = errno;
        atomic_fetch_sub(&h->running, 1);

        pthread_mutex_lock(&h->mu);
        job->done = 1;
        pthread_cond_broadcast(&h->finished);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

/* Queues job and waits until a hashing thread has run it. */
static void hasher_run(struct password_hasher *h, struct hash_job *job)
{
    job->done = 0;
    job->next = NULL;
    pthread_mutex_lock(&h->mu);
    if (h->tail != NULL)
        h->tail->next = job;
    else
        h->head = job;
    h->tail = job;
    pthread_cond_signal(&h->queued);
    while (!job->done)
        pthread_cond_wait(&h->finished, &h->mu);
    pthread_mutex_unlock(&h->mu);
}

int password_hasher_peak(const struct password_hasher *h)
{
    return atomic_load(&((struct password_hasher *)h)->peak);
}

struct password_hasher *password_hasher_create(const struct config_password *cfg, int max_parallel)
{
    struct password_hasher *h;
    unsigned char random_password[32];

    if (cfg->opslimit < crypto_pwhash_argon2id_OPSLIMIT_MIN ||
        cfg->opslimit > crypto_pwhash_argon2id_OPSLIMIT_MAX ||
        cfg->memlimit < crypto_pwhash_argon2id_MEMLIMIT_MIN ||
        cfg->memlimit > crypto_pwhash_argon2id_MEMLIMIT_MAX || max_parallel < 0) {
        errno = EINVAL;
        return NULL;
    }
    if (max_parallel == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        max_parallel = n > 0 ? (int)n : 1;
    }
    h = calloc(1, sizeof(*h));
    if (h == NULL) return NULL;
    atomic_init(&h->running, 0);
    atomic_init(&h->peak, 0);
    h->opslimit = cfg->opslimit;
    h->memlimit = (size_t)cfg->memlimit;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->queued, NULL);
    pthread_cond_init(&h->finished, NULL);
    h->threads = calloc((size_t)max_parallel, sizeof(*h->threads));
    if (h->threads == NULL) {
        password_hasher_destroy(h);
        errno = ENOMEM;
        return NULL;
    }
    for (int i = 0; i < max_parallel; i++) {
        if (pthread_create(&h->threads[i], NULL, hasher_main, h) != 0) {
            password_hasher_destroy(h);
            errno = ENOMEM;
            return NULL;
        }
        h->nthreads++;
    }
    randombytes_buf(random_password, sizeof(random_password));
    if (password_hash(h, (const char *)random_password, sizeof(random_password), h->dummy) != 0) {
        sodium_memzero(random_password, sizeof(random_password));
        password_hasher_destroy(h);
        errno = ENOMEM;
        return NULL;
    }
    sodium_memzero(random_password, sizeof(random_password));
    return h;
}

void password_hasher_destroy(struct password_hasher *h)
{
    if (h == NULL) return;
    pthread_mutex_lock(&h->mu);
    h->stopping = 1;
    pthread_cond_broadcast(&h->queued);
    pthread_mutex_unlock(&h->mu);
    for (int i = 0; i < h->nthreads; i++)
        pthread_join(h->threads[i], NULL);
    free(h->threads);
    pthread_cond_destroy(&h->finished);
    pthread_cond_destroy(&h->queued);
    pthread_mutex_destroy(&h->mu);
    sodium_memzero(h->dummy, sizeof(h->dummy));
    free(h);
}

int password_hash(struct password_hasher *h, const char *password, size_t len,
                  char out[PASSWORD_HASH_BYTES])
{
    struct hash_job job = {.verify = 0, .password = password, .len = len, .out = out};
    hasher_run(h, &job);
    if (job.rc != 0) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}

int password_verify(struct password_hasher *h, const char *phc, const char *password, size_t len)
{
    struct hash_job job = {
        .verify = 1, .phc = phc != NULL ? phc : h->dummy, .password = password, .len = len};
    hasher_run(h, &job);
    if (phc == NULL) return PASSWORD_MISMATCH;
    if (job.rc == 0) return PASSWORD_MATCH;
    /* libsodium returns -1 both for "wrong password" and for "could not
     * allocate memlimit bytes"; tell them apart by errno so an outage is
     * never reported to the user as a wrong password. */
    return job.err == ENOMEM ? PASSWORD_ERROR : PASSWORD_MISMATCH;
}

int password_needs_rehash(const struct password_hasher *h, const char *phc)
{
    int rc = crypto_pwhash_str_needs_rehash(phc, h->opslimit, h->memlimit);
    return rc < 0 ? -1 : rc;
}
