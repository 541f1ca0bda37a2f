/*
 * The credential cache: a verified (username, password, stored hash) is
 * recognised until it expires; a wrong password, a changed hash, another
 * user or a forgotten entry never match; a disabled cache never matches;
 * a warmed pool of 10,000 users all stay cached.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "core/credcache.h"

static const char PHC[] = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNo";
static const char PHC2[] = "$argon2id$v=19$m=19456,t=2,p=1$b3RoZXJzYWx0$b3RoZXJoYXNo";

#define PW(s) s, strlen(s)

static void verified_login_is_recognised_until_it_expires(void **state)
{
    (void)state;
    struct credcache *cc = credcache_create(1024, 300);
    assert_non_null(cc);
    assert_false(credcache_check(cc, "user1", PHC, PW("password123"), 1000));
    credcache_remember(cc, "user1", PHC, PW("password123"), 1000);
    assert_true(credcache_check(cc, "user1", PHC, PW("password123"), 1000));
    assert_true(credcache_check(cc, "user1", PHC, PW("password123"), 1299));
    assert_false(credcache_check(cc, "user1", PHC, PW("password123"), 1300));
    credcache_destroy(cc);
}

static void wrong_password_changed_hash_or_other_user_never_match(void **state)
{
    (void)state;
    struct credcache *cc = credcache_create(1024, 300);
    credcache_remember(cc, "user1", PHC, PW("password123"), 1000);
    assert_false(credcache_check(cc, "user1", PHC, PW("password124"), 1000));
    assert_false(credcache_check(cc, "user1", PHC, PW("password12"), 1000));
    assert_false(credcache_check(cc, "user1", PHC2, PW("password123"), 1000));
    assert_false(credcache_check(cc, "user2", PHC, PW("password123"), 1000));
    /* Length-prefixed fields: moving bytes between fields changes the MAC. */
    assert_false(credcache_check(cc, "user", PHC, PW("1password123"), 1000));
    credcache_destroy(cc);
}

static void embedded_nul_in_password_counts(void **state)
{
    (void)state;
    struct credcache *cc = credcache_create(1024, 300);
    credcache_remember(cc, "user1", PHC, "pw\0a", 4, 1000);
    assert_true(credcache_check(cc, "user1", PHC, "pw\0a", 4, 1000));
    assert_false(credcache_check(cc, "user1", PHC, "pw\0b", 4, 1000));
    assert_false(credcache_check(cc, "user1", PHC, "pw", 2, 1000));
    credcache_destroy(cc);
}

static void forgotten_user_no_longer_matches(void **state)
{
    (void)state;
    struct credcache *cc = credcache_create(1024, 300);
    credcache_remember(cc, "user1", PHC, PW("password123"), 1000);
    credcache_remember(cc, "user2", PHC, PW("password123"), 1000);
    credcache_forget(cc, "user1");
    assert_false(credcache_check(cc, "user1", PHC, PW("password123"), 1000));
    assert_true(credcache_check(cc, "user2", PHC, PW("password123"), 1000));
    credcache_destroy(cc);
}

static void new_password_replaces_the_old_entry(void **state)
{
    (void)state;
    struct credcache *cc = credcache_create(1024, 300);
    credcache_remember(cc, "user1", PHC, PW("old"), 1000);
    credcache_remember(cc, "user1", PHC2, PW("new"), 1001);
    assert_false(credcache_check(cc, "user1", PHC, PW("old"), 1001));
    assert_true(credcache_check(cc, "user1", PHC2, PW("new"), 1001));
    credcache_destroy(cc);
}

static void disabled_cache_never_matches(void **state)
{
    (void)state;
    struct credcache *off = credcache_create(1024, 0);
    assert_non_null(off);
    credcache_remember(off, "user1", PHC, PW("password123"), 1000);
    assert_false(credcache_check(off, "user1", PHC, PW("password123"), 1000));
    credcache_destroy(off);
    struct credcache *empty = credcache_create(0, 300);
    credcache_remember(empty, "user1", PHC, PW("password123"), 1000);
    assert_false(credcache_check(empty, "user1", PHC, PW("password123"), 1000));
    credcache_destroy(empty);
}

static void warmed_pool_of_ten_thousand_users_stays_cached(void **state)
{
    (void)state;
    struct credcache *cc = credcache_create(1 << 18, 300); /* the default size */
    char name[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(name, sizeof(name), "user%d", i * 1000 + 1);
        credcache_remember(cc, name, PHC, PW("password123"), 1000);
    }
    int misses = 0;
    for (int i = 0; i < 10000; i++) {
        snprintf(name, sizeof(name), "user%d", i * 1000 + 1);
        misses += !credcache_check(cc, name, PHC, PW("password123"), 1001);
    }
    assert_int_equal(misses, 0);
    credcache_destroy(cc);
}

int main(void)
{
    if (sodium_init() < 0) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(verified_login_is_recognised_until_it_expires),
        cmocka_unit_test(wrong_password_changed_hash_or_other_user_never_match),
        cmocka_unit_test(embedded_nul_in_password_counts),
        cmocka_unit_test(forgotten_user_no_longer_matches),
        cmocka_unit_test(new_password_replaces_the_old_entry),
        cmocka_unit_test(disabled_cache_never_matches),
        cmocka_unit_test(warmed_pool_of_ten_thousand_users_stays_cached),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
