/* credcache: see credcache.h. */
#include "core/credcache.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define CREDCACHE_WAYS 8     /* slots per set: 10,000 users in 262,144 slots never overflow a set */
#define CREDCACHE_STRIPES 64 /* mutexes; a set uses stripe set % CREDCACHE_STRIPES */

struct credcache_slot {
    uint64_t tag;                                /* BLAKE2b-64 of the username; 0 = empty */
    int64_t expires;                             /* seconds since the epoch */
    unsigned char mac[crypto_generichash_BYTES]; /* BLAKE2b-256 of username, phc, password */
};

struct credcache {
    struct credcache_slot *slots; /* nsets * CREDCACHE_WAYS, heap */
    size_t nsets;                 /* power of two */
    int ttl_s;                    /* seconds an entry is trusted; 0 = disabled */
    unsigned char user_key[crypto_shorthash_KEYBYTES];
    unsigned char mac_key[crypto_generichash_KEYBYTES];
    pthread_mutex_t stripes[CREDCACHE_STRIPES];
};

struct credcache *credcache_create(size_t entries, int ttl_s)
{
    struct credcache *cc = calloc(1, sizeof(*cc));
    if (cc == NULL) goto fail;
    if (ttl_s <= 0 || entries == 0) return cc; /* disabled: no slots */
    size_t nsets = 1;
    while (nsets * CREDCACHE_WAYS < entries)
        nsets <<= 1;
    cc->slots = calloc(nsets * CREDCACHE_WAYS, sizeof(*cc->slots));
    if (cc->slots == NULL) goto fail;
    cc->nsets = nsets;
    cc->ttl_s = ttl_s;
    randombytes_buf(cc->user_key, sizeof(cc->user_key));
    randombytes_buf(cc->mac_key, sizeof(cc->mac_key));
    for (int i = 0; i < CREDCACHE_STRIPES; i++)
        pthread_mutex_init(&cc->stripes[i], NULL);
    return cc;
fail:
    free(cc);
    errno = ENOMEM;
    return NULL;
}

void credcache_destroy(struct credcache *cc)
{
    if (cc == NULL) return;
    if (cc->slots != NULL) {
        sodium_memzero(cc->slots, cc->nsets * CREDCACHE_WAYS * sizeof(*cc->slots));
        for (int i = 0; i < CREDCACHE_STRIPES; i++)
            pthread_mutex_destroy(&cc->stripes[i]);
    }
    sodium_memzero(cc->user_key, sizeof(cc->user_key));
    sodium_memzero(cc->mac_key, sizeof(cc->mac_key));
    free(cc->slots);
    free(cc);
}

/* Non-zero tag of username (SipHash-2-4 keyed per process). */
static uint64_t user_tag(const struct credcache *cc, const char *username)
{
    unsigned char out[crypto_shorthash_BYTES];
    uint64_t tag;
    crypto_shorthash(out, (const unsigned char *)username, strlen(username), cc->user_key);
    memcpy(&tag, out, sizeof(tag));
    return tag != 0 ? tag : 1;
}

/* Length-prefixed fields, so ("ab", "c") and ("a", "bc") never collide. */
static void mac_field(crypto_generichash_state *st, const void *p, size_t len)
{
    uint64_t n = len;
    crypto_generichash_update(st, (const unsigned char *)&n, sizeof(n));
    crypto_generichash_update(st, p, len);
}

static void credential_mac(const struct credcache *cc, const char *username, const char *phc,
                           const char *password, size_t len,
                           unsigned char out[crypto_generichash_BYTES])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, cc->mac_key, sizeof(cc->mac_key), crypto_generichash_BYTES);
    mac_field(&st, username, strlen(username));
    mac_field(&st, phc, strlen(phc));
    mac_field(&st, password, len);
    crypto_generichash_final(&st, out, crypto_generichash_BYTES);
    sodium_memzero(&st, sizeof(st));
}

static struct credcache_slot *set_of(struct credcache *cc, uint64_t tag, pthread_mutex_t **lock)
{
    size_t set = (size_t)(tag >> 7) & (cc->nsets - 1);
    *lock = &cc->stripes[set % CREDCACHE_STRIPES];
    return &cc->slots[set * CREDCACHE_WAYS];
}

int credcache_check(struct credcache *cc, const char *username, const char *phc,
                    const char *password, size_t len, int64_t now)
{
    if (cc->slots == NULL) return 0;
    unsigned char mac[crypto_generichash_BYTES];
    uint64_t tag = user_tag(cc, username);
    pthread_mutex_t *lock;
    struct credcache_slot *set = set_of(cc, tag, &lock);
    int hit = 0;

    credential_mac(cc, username, phc, password, len, mac);
    pthread_mutex_lock(lock);
    for (int i = 0; i < CREDCACHE_WAYS; i++) {
        if (set[i].tag == tag && set[i].expires > now &&
            sodium_memcmp(set[i].mac, mac, sizeof(mac)) == 0)
            hit = 1;
    }
    pthread_mutex_unlock(lock);
    sodium_memzero(mac, sizeof(mac));
    return hit;
}

void credcache_remember(struct credcache *cc, const char *username, const char *phc,
                        const char *password, size_t len, int64_t now)
{
    if (cc->slots == NULL) return;
    uint64_t tag = user_tag(cc, username);
    pthread_mutex_t *lock;
    struct credcache_slot *set = set_of(cc, tag, &lock);
    struct credcache_slot fresh = {.tag = tag, .expires = now + cc->ttl_s};

    credential_mac(cc, username, phc, password, len, fresh.mac);
    pthread_mutex_lock(lock);
    int victim = 0;
    for (int i = 0; i < CREDCACHE_WAYS; i++) {
        if (set[i].tag == tag) { /* the user's previous entry */
            victim = i;
            break;
        }
        if (set[i].expires < set[victim].expires) victim = i; /* empty slots have 0 */
    }
    set[victim] = fresh;
    pthread_mutex_unlock(lock);
    sodium_memzero(&fresh, sizeof(fresh));
}

void credcache_forget(struct credcache *cc, const char *username)
{
    if (cc->slots == NULL) return;
    uint64_t tag = user_tag(cc, username);
    pthread_mutex_t *lock;
    struct credcache_slot *set = set_of(cc, tag, &lock);
    pthread_mutex_lock(lock);
    for (int i = 0; i < CREDCACHE_WAYS; i++)
        if (set[i].tag == tag) sodium_memzero(&set[i], sizeof(set[i]));
    pthread_mutex_unlock(lock);
}
