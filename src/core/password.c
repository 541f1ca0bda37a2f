#include "core/password.h"

#include <errno.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct password_hasher {
    unsigned long long opslimit;     /* argon2id passes */
    size_t memlimit;                 /* argon2id memory, bytes */
    sem_t slots;                     /* free computation slots */
    atomic_int running;              /* computations in progress */
    atomic_int peak;                 /* most computations ever in progress at once */
    char dummy[PASSWORD_HASH_BYTES]; /* PHC string of a random password, same cost */
};

static void slot_take(struct password_hasher *h)
{
    while (sem_wait(&h->slots) != 0 && errno == EINTR)
        ;
    int now = atomic_fetch_add(&h->running, 1) + 1;
    int peak = atomic_load(&h->peak);
    while (now > peak && !atomic_compare_exchange_weak(&h->peak, &peak, now))
        ;
}

static void slot_give(struct password_hasher *h)
{
    atomic_fetch_sub(&h->running, 1);
    (void)sem_post(&h->slots); /* cannot overflow: one post per successful wait */
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
    if (sem_init(&h->slots, 0, (unsigned int)max_parallel) != 0) {
        free(h);
        errno = EINVAL;
        return NULL;
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
    sem_destroy(&h->slots);
    free(h);
}

int password_hash(struct password_hasher *h, const char *password, size_t len,
                  char out[PASSWORD_HASH_BYTES])
{
    int rc;

    slot_take(h);
    /* argon2id explicitly, whatever libsodium's default algorithm becomes. */
    rc = crypto_pwhash_str_alg(out, password, (unsigned long long)len, h->opslimit, h->memlimit,
                               crypto_pwhash_ALG_ARGON2ID13);
    slot_give(h);
    if (rc != 0) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}

int password_verify(struct password_hasher *h, const char *phc, const char *password, size_t len)
{
    const char *target = phc != NULL ? phc : h->dummy;
    int rc;

    slot_take(h);
    errno = 0;
    rc = crypto_pwhash_str_verify(target, password, (unsigned long long)len);
    int saved_errno = errno;
    slot_give(h);
    if (phc == NULL) return PASSWORD_MISMATCH;
    if (rc == 0) return PASSWORD_MATCH;
    /* libsodium returns -1 both for "wrong password" and for "could not
     * allocate memlimit bytes"; tell them apart by errno so an outage is
     * never reported to the user as a wrong password. */
    return saved_errno == ENOMEM ? PASSWORD_ERROR : PASSWORD_MISMATCH;
}

int password_needs_rehash(const struct password_hasher *h, const char *phc)
{
    int rc = crypto_pwhash_str_needs_rehash(phc, h->opslimit, h->memlimit);
    return rc < 0 ? -1 : rc;
}
