/*
 * argon2_verify: micro-benchmark of the bare argon2id verify rate, the upper
 * bound of the cold-login scenario (every cold login pays one verify).
 *
 *   argon2_verify OPSLIMIT MEMLIMIT_BYTES THREADS SECONDS
 *
 * Hashes "password123" once with crypto_pwhash_str_alg (argon2id13, the given
 * cost, as src/core/password.c does), then THREADS threads call
 * crypto_pwhash_str_verify on it in a loop for SECONDS seconds. Prints one
 * line of JSON on stdout:
 *   {"threads":2,"opslimit":2,"memlimit":19922944,"seconds":10.01,
 *    "verifies":1234,"verifies_per_s":123.3,"ms_per_verify_per_thread":16.2}
 * Exit status 0, or 1 with a message on stderr (bad arguments, libsodium
 * failure, a verify that does not match).
 *
 * Built by bench/run.sh: cc -O2 argon2_verify.c $(pkg-config --cflags --libs libsodium) -pthread
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char password[] = "password123";
static char phc[crypto_pwhash_STRBYTES]; /* the hash every thread verifies */
static atomic_int stop;                  /* set by main when SECONDS are over */
static atomic_int failed;                /* a verify did not match */

struct worker {
    pthread_t tid;          /* the thread */
    unsigned long verifies; /* verifies this thread completed */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *work(void *arg)
{
    struct worker *w = arg;
    while (!atomic_load(&stop)) {
        if (crypto_pwhash_str_verify(phc, password, sizeof password - 1) != 0) {
            atomic_store(&failed, 1);
            break;
        }
        w->verifies++;
    }
    return NULL;
}

/* Parses a non-negative decimal integer; returns -1 when arg is not one. */
static int parse_ull(const char *arg, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 10);
    if (errno != 0 || end == arg || *end != '\0' || arg[0] == '-') {
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    unsigned long long ops, mem, nthreads, secs;
    if (argc != 5 || parse_ull(argv[1], &ops) != 0 || parse_ull(argv[2], &mem) != 0 ||
        parse_ull(argv[3], &nthreads) != 0 || parse_ull(argv[4], &secs) != 0 || nthreads < 1 ||
        nthreads > 256 || secs < 1) {
        fprintf(stderr, "usage: %s OPSLIMIT MEMLIMIT_BYTES THREADS SECONDS\n", argv[0]);
        return 1;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "argon2_verify: sodium_init failed\n");
        return 1;
    }
    if (crypto_pwhash_str_alg(phc, password, sizeof password - 1, ops, (size_t)mem,
                              crypto_pwhash_ALG_ARGON2ID13) != 0) {
        fprintf(stderr, "argon2_verify: hashing failed (cost out of range or out of memory)\n");
        return 1;
    }
    struct worker *workers = calloc(nthreads, sizeof *workers);
    if (workers == NULL) {
        fprintf(stderr, "argon2_verify: out of memory\n");
        return 1;
    }
    int rc = 1;
    unsigned long long started = 0;
    double t0 = now_s();
    for (; started < nthreads; started++) {
        if (pthread_create(&workers[started].tid, NULL, work, &workers[started]) != 0) {
            fprintf(stderr, "argon2_verify: pthread_create failed\n");
            atomic_store(&stop, 1);
            goto join;
        }
    }
    struct timespec nap = {.tv_sec = (time_t)secs, .tv_nsec = 0};
    while (nanosleep(&nap, &nap) != 0 && errno == EINTR) {
    }
    atomic_store(&stop, 1);
    rc = 0;
join:;
    unsigned long total = 0;
    for (unsigned long long i = 0; i < started; i++) {
        pthread_join(workers[i].tid, NULL);
        total += workers[i].verifies;
    }
    double elapsed = now_s() - t0;
    free(workers);
    if (atomic_load(&failed)) {
        fprintf(stderr, "argon2_verify: a verify of the correct password failed\n");
        return 1;
    }
    if (rc != 0) {
        return rc;
    }
    printf("{\"threads\":%llu,\"opslimit\":%llu,\"memlimit\":%llu,\"seconds\":%.2f,"
           "\"verifies\":%lu,\"verifies_per_s\":%.1f,\"ms_per_verify_per_thread\":%.2f}\n",
           nthreads, ops, mem, elapsed, total, (double)total / elapsed,
           total ? elapsed * 1000.0 * (double)nthreads / (double)total : 0.0);
    return 0;
}
