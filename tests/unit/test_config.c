/*
 * Configuration: defaults, INI values, PROFILE_* environment overrides,
 * refusal of unknown keys and bad values, and the .env secrets file that is
 * created with mode 0600 and a fresh 256-bit JWT secret when missing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/config.h"
#include "common/log.h"

static char dir[] = "/tmp/test_config_XXXXXX";

static const char *write_file(const char *name, const char *text)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void defaults_match_the_documented_values(void **state)
{
    (void)state;
    struct config cfg;
    assert_int_equal(config_load(&cfg, NULL), 0);
    assert_string_equal(cfg.web.host, "127.0.0.1");
    assert_int_equal(cfg.web.port, 8080);
    assert_int_equal(cfg.core.port, 9090);
    assert_int_equal(cfg.password.opslimit, 2);
    assert_int_equal(cfg.password.memlimit, 19u << 20);
    assert_int_equal(cfg.picture.max_bytes, 10u << 20);
    assert_int_equal(cfg.core.token_ttl_s, 3600);
    assert_int_equal(cfg.log.level, LOG_INFO);
    assert_int_equal(cfg.log.buffer_kb, 64);
}

static void ini_values_and_env_overrides_apply_in_order(void **state)
{
    (void)state;
    const char *path = write_file("a.ini", "[web]\nport = 8181\n[password]\nmemlimit = 64MiB\n"
                                           "[log]\nlevel = debug\nbuffer_kb = 0\n"
                                           "[stack]\nmanage_mysql = 0\n");
    setenv("PROFILE_WEB_PORT", "8282", 1);
    struct config cfg;
    assert_int_equal(config_load(&cfg, path), 0);
    unsetenv("PROFILE_WEB_PORT");
    assert_int_equal(cfg.web.port, 8282);
    assert_int_equal(cfg.password.memlimit, 64u << 20);
    assert_int_equal(cfg.log.level, LOG_DEBUG);
    assert_int_equal(cfg.log.buffer_kb, 0);
}

static void unknown_keys_and_bad_values_are_refused(void **state)
{
    (void)state;
    struct config cfg;
    assert_int_equal(config_load(&cfg, write_file("b.ini", "[web]\nprot = 1\n")), -1);
    assert_int_equal(config_load(&cfg, write_file("c.ini", "[web]\nport = 70000\n")), -1);
    assert_int_equal(config_load(&cfg, write_file("d.ini", "[web]\nport = 80x\n")), -1);
    assert_int_equal(config_load(&cfg, "/nonexistent/profile.ini"), -1);
}

static void missing_env_file_is_created_private_with_a_256_bit_secret(void **state)
{
    (void)state;
    struct config cfg;
    assert_int_equal(config_load(&cfg, NULL), 0);
    snprintf(cfg.core.env_file, sizeof(cfg.core.env_file), "%s/.env", dir);
    unlink(cfg.core.env_file);
    assert_int_equal(config_load_secrets(&cfg, 1), 0);
    assert_int_equal(cfg.jwt_secret_len, 32);
    struct stat st;
    assert_int_equal(stat(cfg.core.env_file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    unsigned char first[32];
    memcpy(first, cfg.jwt_secret, 32);
    /* A second load reads the same secret back. */
    struct config again;
    assert_int_equal(config_load(&again, NULL), 0);
    memcpy(again.core.env_file, cfg.core.env_file, sizeof(again.core.env_file));
    assert_int_equal(config_load_secrets(&again, 0), 0);
    assert_memory_equal(again.jwt_secret, first, 32);
    assert_true(strlen(again.mysql.password) > 0);
}

static void short_jwt_secret_is_refused(void **state)
{
    (void)state;
    struct config cfg;
    assert_int_equal(config_load(&cfg, NULL), 0);
    const char *path = write_file("short.env", "JWT_SECRET=abcd\n");
    snprintf(cfg.core.env_file, sizeof(cfg.core.env_file), "%s", path);
    assert_int_equal(config_load_secrets(&cfg, 0), -1);
}

static void web_secrets_read_only_csrf_secret(void **state)
{
    (void)state;
    struct config cfg;
    char hex[129];
    assert_int_equal(config_load(&cfg, NULL), 0);
    assert_string_equal(cfg.web.env_file, ".env.web");
    memset(hex, 'a', 64);
    hex[64] = '\0';
    char text[400];
    snprintf(text, sizeof(text),
             "# web\nJWT_SECRET=%s\nMYSQL_PASSWORD=secret\n CSRF_SECRET = \"%s\"\n", hex, hex);
    const char *path = write_file("web.env", text);
    snprintf(cfg.web.env_file, sizeof(cfg.web.env_file), "%s", path);
    unsetenv("CSRF_SECRET");
    assert_int_equal(config_load_web_secrets(&cfg), 0);
    assert_int_equal(cfg.csrf_secret_len, 32);
    assert_int_equal(cfg.csrf_secret[0], 0xaa);
    /* The web server never takes the core's secrets, even from the same file. */
    assert_int_equal(cfg.jwt_secret_len, 0);
    assert_string_equal(cfg.mysql.password, "");
    /* The environment wins. */
    memset(hex, 'b', 128);
    hex[128] = '\0';
    setenv("CSRF_SECRET", hex, 1);
    assert_int_equal(config_load_web_secrets(&cfg), 0);
    unsetenv("CSRF_SECRET");
    assert_int_equal(cfg.csrf_secret_len, 64);
    assert_int_equal(cfg.csrf_secret[63], 0xbb);
}

static void web_secrets_missing_file_or_bad_hex(void **state)
{
    (void)state;
    struct config cfg;
    assert_int_equal(config_load(&cfg, NULL), 0);
    unsetenv("CSRF_SECRET");
    snprintf(cfg.web.env_file, sizeof(cfg.web.env_file), "%s/none.env", dir);
    assert_int_equal(config_load_web_secrets(&cfg), 0);
    assert_int_equal(cfg.csrf_secret_len, 0);
    const char *path = write_file("bad.env", "CSRF_SECRET=xyz\n");
    snprintf(cfg.web.env_file, sizeof(cfg.web.env_file), "%s", path);
    assert_int_equal(config_load_web_secrets(&cfg), -1);
    path = write_file("short.web.env", "CSRF_SECRET=abcd\n");
    snprintf(cfg.web.env_file, sizeof(cfg.web.env_file), "%s", path);
    assert_int_equal(config_load_web_secrets(&cfg), -1);
}

/* The tests assert built-in defaults: drop the caller's PROFILE_* overrides
 * (e.g. the port set a developer exports for a private stack). */
static void clear_profile_env(void)
{
    extern char **environ;
    for (;;) {
        char name[128] = "";
        for (char **e = environ; *e != NULL; e++) {
            const char *eq = strchr(*e, '=');
            if (strncmp(*e, "PROFILE_", 8) == 0 && eq != NULL && (size_t)(eq - *e) < sizeof(name)) {
                memcpy(name, *e, (size_t)(eq - *e));
                name[eq - *e] = '\0';
                break;
            }
        }
        if (name[0] == '\0' || unsetenv(name) != 0) return;
    }
}

int main(void)
{
    clear_profile_env();
    if (mkdtemp(dir) == NULL) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_match_the_documented_values),
        cmocka_unit_test(ini_values_and_env_overrides_apply_in_order),
        cmocka_unit_test(unknown_keys_and_bad_values_are_refused),
        cmocka_unit_test(missing_env_file_is_created_private_with_a_256_bit_secret),
        cmocka_unit_test(short_jwt_secret_is_refused),
        cmocka_unit_test(web_secrets_read_only_csrf_secret),
        cmocka_unit_test(web_secrets_missing_file_or_bad_hex),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) return 1;
    return rc;
}
