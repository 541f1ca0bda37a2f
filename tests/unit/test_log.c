/* Unit tests for common/log: file output, SIGHUP-style reopen, tags, journald prefixes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/log.h"

static char dir[] = "/tmp/test_log_XXXXXX";

/* Contents of path as a heap string (caller frees); "" when missing. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    if (f != NULL) {
        size_t n = fread(buf, 1, 65535, f);
        buf[n] = '\0';
        fclose(f);
    }
    return buf;
}

static void tags_are_checked_and_cleared(void **state)
{
    (void)state;
    assert_int_equal(log_set_tag("0123456789abcdef0123456789abcdef"), 0);
    assert_int_equal(log_set_tag("bad tag"), -1);
    assert_int_equal(log_set_tag("x\nINFO forged"), -1);
    char longtag[80];
    memset(longtag, 'a', sizeof(longtag) - 1);
    longtag[sizeof(longtag) - 1] = '\0';
    assert_int_equal(log_set_tag(longtag), -1);
    assert_int_equal(log_set_tag(NULL), 0);
    assert_int_equal(log_set_tag(""), 0);
}

/* Runs last: it points the process's logger at a file for good. */
static void file_lines_carry_the_tag_and_reopen_follows_a_rename(void **state)
{
    (void)state;
    char path[128], rotated[140];
    snprintf(path, sizeof(path), "%s/app.log", dir);
    snprintf(rotated, sizeof(rotated), "%s.1", path);
    assert_int_equal(log_open(path), 0);
    assert_int_equal(log_set_tag("req-42"), 0);
    log_info(7, "event=first");
    assert_int_equal(log_set_tag(NULL), 0);
    log_info(8, "event=second");
    assert_int_equal(rename(path, rotated), 0);
    assert_int_equal(log_reopen(), 0);
    log_warn(9, "event=third");

    char *old = slurp(rotated), *cur = slurp(path);
    assert_non_null(strstr(old, "INFO  rid=7 tag=req-42 event=first\n"));
    assert_non_null(strstr(old, "INFO  rid=8 event=second\n"));
    assert_null(strstr(old, "third"));
    assert_non_null(strstr(cur, "WARN  rid=9 event=third\n"));
    /* the time comes first when not writing to journald */
    assert_true(cur[0] >= '2' && cur[0] <= '9' && cur[4] == '-');
    free(old);
    free(cur);
    unlink(path);
    unlink(rotated);
}

static void journald_stream_gets_priority_prefixes(void **state)
{
    (void)state;
    /* A child whose stderr is a file that JOURNAL_STREAM names. */
    char path[128];
    snprintf(path, sizeof(path), "%s/journal.log", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    struct stat st;
    assert_int_equal(fstat(fileno(f), &st), 0);
    fflush(stdout);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char js[64];
        snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
                 (unsigned long long)st.st_ino);
        if (dup2(fileno(f), STDERR_FILENO) < 0 || setenv("JOURNAL_STREAM", js, 1) != 0 ||
            log_open(NULL) != 0)
            _exit(1);
        log_set_level(LOG_DEBUG);
        log_error(1, "e");
        log_warn(2, "w");
        log_info(3, "i");
        log_debug(4, "d");
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(status, 0);
    fclose(f);
    char *text = slurp(path);
    assert_string_equal(text, "<3>ERROR rid=1 e\n<4>WARN  rid=2 w\n<6>INFO  rid=3 i\n"
                              "<7>DEBUG rid=4 d\n");
    free(text);
    unlink(path);
}

int main(void)
{
    if (mkdtemp(dir) == NULL) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tags_are_checked_and_cleared),
        cmocka_unit_test(journald_stream_gets_priority_prefixes),
        cmocka_unit_test(file_lines_carry_the_tag_and_reopen_follows_a_rename),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    rmdir(dir);
    return rc;
}
