/*
 * Session tokens (RFC 7519 JWT, HS256 via libjwt 1.10): a token round-trips;
 * expired tokens, tokens signed with another key, "alg": "none" tokens,
 * tokens signed with HS384/HS512 under the right key, tampered payloads or
 * signatures and ill-formed claims are all refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jwt.h>
#include <sodium.h>

#include "core/token.h"

static const unsigned char key[32] = "0123456789abcdef0123456789abcdef";
static const unsigned char other_key[32] = "fedcba9876543210fedcba9876543210";
#define NOW ((int64_t)1700000000)

/* base64url without padding (RFC 7515 section 2) of len bytes, into a static
 * rotating buffer. */
static const char *b64url(const void *data, size_t len)
{
    static char bufs[4][2048];
    static int next;
    char *out = bufs[next++ % 4];
    sodium_bin2base64(out, sizeof(bufs[0]), data, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return out;
}

enum craft_alg { CRAFT_NONE, CRAFT_HS256, CRAFT_HS512 };

/* Builds header.payload.signature by hand, so tests can sign anything. */
static char *craft(const char *header, const char *payload, enum craft_alg alg,
                   const unsigned char *k)
{
    char signing_input[4096];
    unsigned char mac[crypto_auth_hmacsha512_BYTES];
    size_t mac_len = 0;
    int n = snprintf(signing_input, sizeof(signing_input), "%s.%s", b64url(header, strlen(header)),
                     b64url(payload, strlen(payload)));
    assert_true(n > 0 && (size_t)n < sizeof(signing_input));
    if (alg == CRAFT_HS256) {
        crypto_auth_hmacsha256_state st;
        crypto_auth_hmacsha256_init(&st, k, 32);
        crypto_auth_hmacsha256_update(&st, (unsigned char *)signing_input, (size_t)n);
        crypto_auth_hmacsha256_final(&st, mac);
        mac_len = crypto_auth_hmacsha256_BYTES;
    } else if (alg == CRAFT_HS512) {
        crypto_auth_hmacsha512_state st;
        crypto_auth_hmacsha512_init(&st, k, 32);
        crypto_auth_hmacsha512_update(&st, (unsigned char *)signing_input, (size_t)n);
        crypto_auth_hmacsha512_final(&st, mac);
        mac_len = crypto_auth_hmacsha512_BYTES;
    }
    size_t cap = (size_t)n + 256;
    char *out = malloc(cap);
    assert_non_null(out);
    snprintf(out, cap, "%s.%s", signing_input, mac_len ? b64url(mac, mac_len) : "");
    return out;
}

static const char HS256_HEADER[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
static const char GOOD_JTI[] = "0123456789abcdef0123456789abcdef";

/* A payload with the given claims around NOW. */
static const char *payload(const char *sub, const char *jti, long iat, long exp)
{
    static char buf[512];
    snprintf(buf, sizeof(buf), "{\"jti\":\"%s\",\"sub\":\"%s\",\"iat\":%ld,\"exp\":%ld}", jti, sub,
             iat, exp);
    return buf;
}

static int verify(const char *token)
{
    struct token_claims c;
    return token_verify(key, sizeof(key), token, NOW, &c);
}

static void issued_token_verifies_and_carries_its_claims(void **state)
{
    (void)state;
    char *token = NULL;
    struct token_claims issued, got;
    assert_int_equal(token_issue(key, sizeof(key), "user1", NOW, 3600, &token, &issued), TOKEN_OK);
    assert_non_null(token);
    assert_int_equal(strlen(issued.jti), TOKEN_JTI_HEX);
    assert_int_equal(token_verify(key, sizeof(key), token, NOW + 10, &got), TOKEN_OK);
    assert_string_equal(got.sub, "user1");
    assert_string_equal(got.jti, issued.jti);
    assert_int_equal(got.iat, NOW);
    assert_int_equal(got.exp, NOW + 3600);

    /* The header names HS256 and the payload has exactly our claims. */
    jwt_t *jwt = NULL;
    assert_int_equal(jwt_decode(&jwt, token, key, sizeof(key)), 0);
    assert_int_equal(jwt_get_alg(jwt), JWT_ALG_HS256);
    assert_string_equal(jwt_get_grant(jwt, "sub"), "user1");
    jwt_free(jwt);
    free(token);
}

static void every_token_gets_a_fresh_jti(void **state)
{
    (void)state;
    char *a = NULL, *b = NULL;
    struct token_claims ca, cb;
    assert_int_equal(token_issue(key, sizeof(key), "user1", NOW, 60, &a, &ca), TOKEN_OK);
    assert_int_equal(token_issue(key, sizeof(key), "user1", NOW, 60, &b, &cb), TOKEN_OK);
    assert_string_not_equal(ca.jti, cb.jti);
    assert_string_not_equal(a, b);
    free(a);
    free(b);
}

static void expired_token_is_refused(void **state)
{
    (void)state;
    char *token = NULL;
    struct token_claims issued, got;
    assert_int_equal(token_issue(key, sizeof(key), "user1", NOW - 7200, 3600, &token, &issued),
                     TOKEN_OK);
    assert_int_equal(token_verify(key, sizeof(key), token, NOW, &got), TOKEN_EXPIRED);
    /* Authentic but old: the claims are reported so logout can clean up. */
    assert_string_equal(got.jti, issued.jti);
    free(token);

    /* exp == now is already expired (RFC 7519 4.1.4: "on or after"). */
    assert_int_equal(token_issue(key, sizeof(key), "user1", NOW - 60, 60, &token, &issued),
                     TOKEN_OK);
    assert_int_equal(token_verify(key, sizeof(key), token, NOW, &got), TOKEN_EXPIRED);
    assert_int_equal(token_verify(key, sizeof(key), token, NOW - 1, &got), TOKEN_OK);
    free(token);
}

static void token_signed_with_another_key_is_refused(void **state)
{
    (void)state;
    char *token = NULL;
    struct token_claims issued;
    assert_int_equal(token_issue(other_key, sizeof(other_key), "user1", NOW, 3600, &token, &issued),
                     TOKEN_OK);
    assert_int_equal(verify(token), TOKEN_INVALID);
    free(token);
}

static void alg_none_token_is_refused(void **state)
{
    (void)state;
    const char *p = payload("user1", GOOD_JTI, NOW, NOW + 3600);
    char *t = craft("{\"alg\":\"none\",\"typ\":\"JWT\"}", p, CRAFT_NONE, NULL);
    assert_int_not_equal(verify(t), TOKEN_OK);
    free(t);
    /* Variants: other spellings of none, and a none token carrying a valid
     * HS256 signature of the same payload. */
    t = craft("{\"alg\":\"None\"}", p, CRAFT_NONE, NULL);
    assert_int_not_equal(verify(t), TOKEN_OK);
    free(t);
    char *good = craft(HS256_HEADER, p, CRAFT_HS256, key);
    assert_int_equal(verify(good), TOKEN_OK); /* the crafting itself is right */
    const char *sig = strrchr(good, '.') + 1;
    char forged[4096];
    const char *none_hdr = "{\"alg\":\"none\",\"typ\":\"JWT\"}";
    char h[256];
    snprintf(h, sizeof(h), "%s", b64url(none_hdr, strlen(none_hdr)));
    snprintf(forged, sizeof(forged), "%s.%s.%s", h, b64url(p, strlen(p)), sig);
    assert_int_not_equal(verify(forged), TOKEN_OK);
    free(good);
}

static void hs512_and_hs384_with_the_right_key_are_refused(void **state)
{
    (void)state;
    const char *p = payload("user1", GOOD_JTI, NOW, NOW + 3600);
    char *t = craft("{\"alg\":\"HS512\",\"typ\":\"JWT\"}", p, CRAFT_HS512, key);
    assert_int_equal(verify(t), TOKEN_BAD_ALG);
    free(t);

    jwt_t *jwt = NULL;
    assert_int_equal(jwt_new(&jwt), 0);
    assert_int_equal(jwt_add_grants_json(jwt, p), 0);
    assert_int_equal(jwt_set_alg(jwt, JWT_ALG_HS384, key, sizeof(key)), 0);
    t = jwt_encode_str(jwt);
    assert_non_null(t);
    assert_int_equal(verify(t), TOKEN_BAD_ALG);
    free(t);
    jwt_free(jwt);
}

static void tampered_payload_or_signature_is_refused(void **state)
{
    (void)state;
    char *token = NULL;
    struct token_claims issued;
    assert_int_equal(token_issue(key, sizeof(key), "user1", NOW, 3600, &token, &issued), TOKEN_OK);

    /* Swap in a payload naming another user, keeping header and signature. */
    char *dot1 = strchr(token, '.'), *dot2 = strrchr(token, '.');
    const char *evil = payload("admin", issued.jti, NOW, NOW + 3600);
    char forged[4096];
    snprintf(forged, sizeof(forged), "%.*s.%s%s", (int)(dot1 - token), token,
             b64url(evil, strlen(evil)), dot2);
    assert_int_equal(verify(forged), TOKEN_INVALID);

    /* Flip one character of the signature. */
    char *copy = strdup(token);
    assert_non_null(copy);
    char *sig = strrchr(copy, '.') + 1;
    sig[3] = sig[3] == 'A' ? 'B' : 'A';
    assert_int_equal(verify(copy), TOKEN_INVALID);
    /* Drop the signature. */
    *sig = '\0';
    assert_int_equal(verify(copy), TOKEN_INVALID);
    free(copy);
    free(token);
}

static void ill_formed_claims_are_refused(void **state)
{
    (void)state;
    struct {
        const char *payload;
        int want;
    } cases[] = {
        {"{\"jti\":\"0123456789abcdef0123456789abcdef\",\"sub\":\"user1\",\"iat\":1700000000}",
         TOKEN_INVALID}, /* no exp */
        {"{\"jti\":\"0123456789abcdef0123456789abcdef\",\"sub\":\"user1\",\"iat\":1700000000,"
         "\"exp\":\"1800000000\"}",
         TOKEN_INVALID}, /* exp as a string */
        {"{\"jti\":\"0123456789abcdef0123456789abcdef\",\"iat\":1700000000,\"exp\":1800000000}",
         TOKEN_INVALID},                                                              /* no sub */
        {"{\"sub\":\"user1\",\"iat\":1700000000,\"exp\":1800000000}", TOKEN_INVALID}, /* no jti */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *t = craft(HS256_HEADER, cases[i].payload, CRAFT_HS256, key);
        assert_int_equal(verify(t), cases[i].want);
        free(t);
    }
    const char *bad[] = {
        payload("us er", GOOD_JTI, NOW, NOW + 60),                           /* bad username */
        payload("' OR '1'='1", GOOD_JTI, NOW, NOW + 60),                     /* bad username */
        payload("user1", "0123456789ABCDEF0123456789ABCDEF", NOW, NOW + 60), /* upper-case jti */
        payload("user1", "0123", NOW, NOW + 60),                             /* short jti */
        payload("user1", GOOD_JTI, NOW + 3600, NOW + 7200),                  /* iat in the future */
        payload("user1", GOOD_JTI, NOW, NOW),                                /* iat == exp */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char p[512];
        snprintf(p, sizeof(p), "%s", bad[i]);
        char *t = craft(HS256_HEADER, p, CRAFT_HS256, key);
        assert_int_equal(verify(t), TOKEN_INVALID);
        free(t);
    }
    /* A small clock skew on iat is tolerated. */
    char *t =
        craft(HS256_HEADER, payload("user1", GOOD_JTI, NOW + 30, NOW + 3600), CRAFT_HS256, key);
    assert_int_equal(verify(t), TOKEN_OK);
    free(t);
}

static void garbage_is_refused(void **state)
{
    (void)state;
    assert_int_equal(verify(""), TOKEN_INVALID);
    assert_int_equal(verify("abc"), TOKEN_INVALID);
    assert_int_equal(verify("a.b.c"), TOKEN_INVALID);
    assert_int_equal(verify(".."), TOKEN_INVALID);
    assert_int_equal(verify(NULL), TOKEN_INVALID);
    char *huge = malloc(TOKEN_MAX_BYTES + 2);
    assert_non_null(huge);
    memset(huge, 'a', TOKEN_MAX_BYTES + 1);
    huge[TOKEN_MAX_BYTES + 1] = '\0';
    assert_int_equal(verify(huge), TOKEN_INVALID);
    free(huge);
}

static void bad_issue_arguments_are_refused(void **state)
{
    (void)state;
    char *token = (char *)1;
    struct token_claims c;
    assert_int_equal(token_issue(key, sizeof(key), "bad name", NOW, 60, &token, &c), TOKEN_INVALID);
    assert_null(token);
    assert_int_equal(token_issue(key, sizeof(key), "user1", NOW, 0, &token, &c), TOKEN_INVALID);
    assert_int_equal(token_issue(key, 16, "user1", NOW, 60, &token, &c), TOKEN_ERROR);
    assert_int_equal(token_verify(key, 16, "a.b.c", NOW, &c), TOKEN_ERROR);
}

int main(void)
{
    if (sodium_init() < 0) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(issued_token_verifies_and_carries_its_claims),
        cmocka_unit_test(every_token_gets_a_fresh_jti),
        cmocka_unit_test(expired_token_is_refused),
        cmocka_unit_test(token_signed_with_another_key_is_refused),
        cmocka_unit_test(alg_none_token_is_refused),
        cmocka_unit_test(hs512_and_hs384_with_the_right_key_are_refused),
        cmocka_unit_test(tampered_payload_or_signature_is_refused),
        cmocka_unit_test(ill_formed_claims_are_refused),
        cmocka_unit_test(garbage_is_refused),
        cmocka_unit_test(bad_issue_arguments_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
