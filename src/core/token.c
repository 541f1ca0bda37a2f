#include "core/token.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <jwt.h>
#include <sodium.h>

const char *token_status_str(int status)
{
    switch (status) {
    case TOKEN_OK:
        return "ok";
    case TOKEN_INVALID:
        return "invalid";
    case TOKEN_BAD_ALG:
        return "bad_alg";
    case TOKEN_EXPIRED:
        return "expired";
    case TOKEN_ERROR:
        return "error";
    default:
        return "unknown";
    }
}

static int is_jti(const char *s)
{
    if (s == NULL || strlen(s) != TOKEN_JTI_HEX) return 0;
    for (size_t i = 0; i < TOKEN_JTI_HEX; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

int token_issue(const unsigned char *key, size_t key_len, const char *username, int64_t now,
                int ttl_s, char **token, struct token_claims *claims)
{
    unsigned char id[TOKEN_JTI_HEX / 2];
    jwt_t *jwt = NULL;
    int rc = TOKEN_ERROR;

    *token = NULL;
    memset(claims, 0, sizeof(*claims));
    if (username == NULL || !validate_username(username, strlen(username)) || ttl_s <= 0)
        return TOKEN_INVALID;
    if (key_len < TOKEN_MIN_KEY_BYTES || key_len > INT32_MAX) return TOKEN_ERROR;

    randombytes_buf(id, sizeof(id));
    sodium_bin2hex(claims->jti, sizeof(claims->jti), id, sizeof(id));
    memcpy(claims->sub, username, strlen(username) + 1);
    claims->iat = now;
    claims->exp = now + ttl_s;

    if (jwt_new(&jwt) != 0) goto done;
    if (jwt_add_grant(jwt, "jti", claims->jti) != 0 ||
        jwt_add_grant(jwt, "sub", claims->sub) != 0 ||
        jwt_add_grant_int(jwt, "iat", (long)claims->iat) != 0 ||
        jwt_add_grant_int(jwt, "exp", (long)claims->exp) != 0)
        goto done;
    if (jwt_set_alg(jwt, JWT_ALG_HS256, key, (int)key_len) != 0) goto done;
    *token = jwt_encode_str(jwt);
    if (*token != NULL) rc = TOKEN_OK;
done:
    jwt_free(jwt);
    if (rc != TOKEN_OK) memset(claims, 0, sizeof(*claims));
    return rc;
}

/* Reads an integer claim; libjwt signals "absent or not an integer" only
 * through errno. Returns 0 or -1. */
static int get_int_claim(jwt_t *jwt, const char *name, int64_t *out)
{
    errno = 0;
    long v = jwt_get_grant_int(jwt, name);
    if (errno != 0) return -1;
    *out = v;
    return 0;
}

int token_verify(const unsigned char *key, size_t key_len, const char *token, int64_t now,
                 struct token_claims *claims)
{
    jwt_t *jwt = NULL;
    const char *sub, *jti;
    int64_t iat, exp;
    int rc = TOKEN_INVALID;

    memset(claims, 0, sizeof(*claims));
    if (key_len < TOKEN_MIN_KEY_BYTES || key_len > INT32_MAX) return TOKEN_ERROR;
    if (token == NULL || token[0] == '\0' || strnlen(token, TOKEN_MAX_BYTES + 1) > TOKEN_MAX_BYTES)
        return TOKEN_INVALID;

    int drc = jwt_decode(&jwt, token, key, (int)key_len);
    if (drc != 0) return drc == ENOMEM ? TOKEN_ERROR : TOKEN_INVALID;
    /* The alg check is what makes the signature check mean anything: a
     * token saying "none" would otherwise be accepted unsigned. */
    if (jwt_get_alg(jwt) != JWT_ALG_HS256) {
        rc = TOKEN_BAD_ALG;
        goto done;
    }
    sub = jwt_get_grant(jwt, "sub");
    jti = jwt_get_grant(jwt, "jti");
    if (sub == NULL || !validate_username(sub, strlen(sub)) || !is_jti(jti)) goto done;
    if (get_int_claim(jwt, "iat", &iat) != 0 || get_int_claim(jwt, "exp", &exp) != 0) goto done;
    /* A token from the future was not made by this clock: refuse it. */
    if (iat >= exp || iat > now + TOKEN_CLOCK_SKEW_S) goto done;
    memcpy(claims->jti, jti, TOKEN_JTI_HEX + 1);
    memcpy(claims->sub, sub, strlen(sub) + 1);
    claims->iat = iat;
    claims->exp = exp;
    rc = exp <= now ? TOKEN_EXPIRED : TOKEN_OK;
done:
    jwt_free(jwt);
    return rc;
}

/* ------------------------------------------------------------ token cache */

#define TOKEN_CACHE_WAYS 2     /* slots per bucket; a token may use any of its bucket's */
#define TOKEN_CACHE_STRIPES 64 /* locks, each over every 64th bucket (both of its slots) */

struct token_slot {
    uint16_t len;                      /* token bytes; 0 = empty slot */
    char token[TOKEN_CACHE_TOKEN_MAX]; /* the verified token, not NUL-terminated */
    struct token_claims claims;        /* what token_verify found in it */
};

/* The least-recently-used choice below is "not mru", which needs exactly two. */
_Static_assert(TOKEN_CACHE_WAYS == 2, "token_bucket.mru picks the victim of two ways only");

struct token_bucket {
    uint8_t mru; /* way (0/1) hit or filled last; the other goes first */
    struct token_slot way[TOKEN_CACHE_WAYS]; /* the slots a token hashed here may use */
};

struct token_cache {
    size_t entries;                                    /* usable slots: tokens it can hold */
    size_t buckets;                                    /* ceil(entries / TOKEN_CACHE_WAYS) */
    unsigned char hash_key[crypto_shorthash_KEYBYTES]; /* SipHash key, random */
    pthread_mutex_t locks[TOKEN_CACHE_STRIPES];        /* bucket i under locks[i % STRIPES] */
    struct token_bucket *table;                        /* buckets of them, calloc'ed */
};

/* Usable ways of bucket b: TOKEN_CACHE_WAYS, except the last one of an odd
 * entries, which has one (its way[1] is never used). */
static unsigned bucket_ways(const struct token_cache *tc, size_t b)
{
    return b + 1 == tc->buckets && tc->entries % TOKEN_CACHE_WAYS != 0 ? 1 : TOKEN_CACHE_WAYS;
}

/* Way of bucket b holding token (len bytes), or -1. Caller holds its lock. */
static int bucket_find(const struct token_bucket *b, unsigned ways, const char *token, size_t len)
{
    for (unsigned w = 0; w < ways; w++)
        if (b->way[w].len == len && sodium_memcmp(b->way[w].token, token, len) == 0) return (int)w;
    return -1;
}

struct token_cache *token_cache_create(size_t entries)
{
    struct token_cache *tc;
    int locks = 0;

    if (entries == 0) return NULL;
    tc = calloc(1, sizeof(*tc));
    if (tc == NULL) return NULL;
    tc->entries = entries;
    tc->buckets = entries / TOKEN_CACHE_WAYS + (entries % TOKEN_CACHE_WAYS != 0);
    crypto_shorthash_keygen(tc->hash_key);
    /* calloc of a large block maps zero pages: untouched buckets cost no memory. */
    tc->table = calloc(tc->buckets, sizeof(*tc->table));
    if (tc->table == NULL) goto fail;
    for (; locks < TOKEN_CACHE_STRIPES; locks++)
        if (pthread_mutex_init(&tc->locks[locks], NULL) != 0) goto fail;
    return tc;
fail:
    while (locks > 0)
        pthread_mutex_destroy(&tc->locks[--locks]);
    free(tc->table);
    free(tc);
    errno = ENOMEM;
    return NULL;
}

void token_cache_destroy(struct token_cache *tc)
{
    if (tc == NULL) return;
    for (int i = 0; i < TOKEN_CACHE_STRIPES; i++)
        pthread_mutex_destroy(&tc->locks[i]);
    /* Tokens are bearer credentials: leave none in freed memory. Only the
     * slots ever filled: zeroing all of them would touch every page of the
     * table (up to ~2 GiB at the largest token_cache_entries). Reading len
     * of a page never written maps the shared zero page, no memory. */
    for (size_t b = 0; b < tc->buckets; b++)
        for (unsigned w = 0; w < TOKEN_CACHE_WAYS; w++)
            if (tc->table[b].way[w].len != 0)
                sodium_memzero(&tc->table[b].way[w], sizeof(tc->table[b].way[w]));
    free(tc->table);
    sodium_memzero(tc, sizeof(*tc));
    free(tc);
}

int token_verify_cached(struct token_cache *tc, const unsigned char *key, size_t key_len,
                        const char *token, int64_t now, struct token_claims *claims)
{
    size_t len = token != NULL ? strnlen(token, TOKEN_CACHE_TOKEN_MAX + 1) : 0;
    if (tc == NULL || len == 0 || len > TOKEN_CACHE_TOKEN_MAX || key_len < TOKEN_MIN_KEY_BYTES ||
        key_len > INT32_MAX)
        return token_verify(key, key_len, token, now, claims);

    unsigned char h[crypto_shorthash_BYTES];
    uint64_t idx;
    crypto_shorthash(h, (const unsigned char *)token, len, tc->hash_key);
    memcpy(&idx, h, sizeof(idx));
    idx %= tc->buckets;
    struct token_bucket *bucket = &tc->table[idx];
    unsigned ways = bucket_ways(tc, idx);
    pthread_mutex_t *lock = &tc->locks[idx % TOKEN_CACHE_STRIPES];

    pthread_mutex_lock(lock);
    int w = bucket_find(bucket, ways, token, len);
    if (w >= 0) {
        *claims = bucket->way[w].claims;
        if (bucket->mru != w) bucket->mru = (uint8_t)w; /* no store (dirty line) if unchanged */
    }
    pthread_mutex_unlock(lock);
    if (w >= 0) return claims->exp <= now ? TOKEN_EXPIRED : TOKEN_OK;

    int rc = token_verify(key, key_len, token, now, claims);
    if (rc != TOKEN_OK) return rc;
    pthread_mutex_lock(lock);
    /* Another thread may have cached the same token meanwhile: one copy is enough. */
    w = bucket_find(bucket, ways, token, len);
    if (w < 0) {
        /* An empty way, else the one not used most recently. */
        w = ways == 1 ? 0 : 1 - bucket->mru;
        for (unsigned i = 0; i < ways; i++)
            if (bucket->way[i].len == 0) {
                w = (int)i;
                break;
            }
        struct token_slot *slot = &bucket->way[w];
        slot->len = (uint16_t)len;
        memcpy(slot->token, token, len);
        slot->claims = *claims;
    }
    bucket->mru = (uint8_t)w;
    pthread_mutex_unlock(lock);
    return rc;
}
