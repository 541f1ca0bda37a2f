/* Unit tests for common/log: file output, SIGHUP-style reopen, tags, journald prefixes,
 * the line buffer. */
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

#include <errno.h>

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

/* 1 when path holds needle. */
static int file_has(const char *path, const char *needle)
{
    char *text = slurp(path);
    int found = strstr(text, needle) != NULL;
    free(text);
    return found;
}

/* Runs one buffered-logger scenario in a child (the buffer is for the
 * process's lifetime) and returns its exit status: 0 = every check held,
 * otherwise the number of the first check that failed. */
static int buffered_child(const char *path, const char *rotated)
{
    if (log_open(path) != 0 || log_set_buffer(8192) != 0) return 1;
    if (log_set_buffer(8192) != -1 || errno != EALREADY) return 2;
    log_info(1, "event=held");
    if (file_has(path, "held")) return 3; /* an INFO line waits in the buffer */
    errno = ENOENT;
    log_info(2, "event=errno_kept");
    if (errno != ENOENT) return 4; /* callers read errno after logging a failure */
    log_warn(3, "event=warned");
    char *text = slurp(path);
    char *held = strstr(text, "event=held\n"), *warned = strstr(text, "event=warned\n");
    int order_ok = held != NULL && warned != NULL && held < warned;
    free(text);
    if (!order_ok) return 5; /* a WARN is written at once, after what came before it */
    log_info(4, "event=flushed");
    log_flush();
    if (!file_has(path, "event=flushed\n")) return 6;
    log_info(5, "event=before_reopen");
    if (rename(path, rotated) != 0 || log_reopen() != 0) return 7;
    log_info(6, "event=after_reopen");
    log_flush();
    if (!file_has(rotated, "event=before_reopen\n") || file_has(path, "before_reopen") ||
        !file_has(path, "event=after_reopen\n"))
        return 8; /* lines logged before a reopen belong to the old file */
    /* 300 lines of ~100 bytes overflow the 8 KiB buffer: written whole, in order. */
    for (int i = 0; i < 300; i++)
        log_info(7, "event=fill n=%03d pad=%060d", i, 0);
    text = slurp(path);
    int whole = strstr(text, "n=000 ") != NULL && strstr(text, "n=299 ") == NULL;
    size_t len = strlen(text);
    whole = whole && len > 0 && text[len - 1] == '\n';
    free(text);
    if (!whole) return 9; /* an overflow writes what was gathered, whole lines only */
    log_flush();
    text = slurp(path);
    const char *at = text;
    for (int i = 0; i < 300 && at != NULL; i++) {
        char want[16];
        snprintf(want, sizeof(want), "n=%03d ", i);
        at = strstr(at, want);
    }
    free(text);
    if (at == NULL) return 10;
    log_info(8, "event=at_exit");
    exit(0); /* not _exit: exit(3) writes what is still buffered */
}

static void buffered_lines_are_written_in_order_on_flush_warning_reopen_and_exit(void **state)
{
    (void)state;
    char path[128], rotated[140];
    snprintf(path, sizeof(path), "%s/buffered.log", dir);
    snprintf(rotated, sizeof(rotated), "%s.1", path);
    fflush(stdout);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) _exit(buffered_child(path, rotated));
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0); /* else: the number of the failed check */
    assert_true(file_has(path, "event=at_exit\n"));
    unlink(path);
    unlink(rotated);
}

int main(void)
{
    if (mkdtemp(dir) == NULL) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tags_are_checked_and_cleared),
        cmocka_unit_test(journald_stream_gets_priority_prefixes),
        cmocka_unit_test(buffered_lines_are_written_in_order_on_flush_warning_reopen_and_exit),
        cmocka_unit_test(file_lines_carry_the_tag_and_reopen_follows_a_rename),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    rmdir(dir);
    return rc;
}
