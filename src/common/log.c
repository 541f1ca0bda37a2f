/* log: see log.h. */
#include "common/log.h"
#include "common/validate.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096 /* bytes per line, newline included */
#define LOG_TAG_MAX 64    /* bytes of a correlation tag */
#define LOG_PATH_MAX 4096 /* bytes of the log file's path, NUL included */

static int log_fd = STDERR_FILENO;  /* where lines go; a file is dup2()ed onto it on reopen */
static int log_journal;             /* 1: stderr is journald's stream: sd-daemon prefixes */
static char log_path[LOG_PATH_MAX]; /* the log file, "" for stderr */
static pthread_mutex_t log_reopen_mu = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local char log_tag[LOG_TAG_MAX + 1]; /* this thread's tag, "" for none */

/* The buffer of log_set_buffer; log_buf_mu also orders the writes of
 * buffered and unbuffered lines once it exists. */
static pthread_mutex_t log_buf_mu = PTHREAD_MUTEX_INITIALIZER;
static char *log_buf;       /* INFO/DEBUG lines not yet written; NULL = unbuffered */
static size_t log_buf_size; /* capacity of log_buf, bytes (>= LOG_LINE_MAX) */
static size_t log_buf_used; /* bytes of log_buf holding lines */

/* sd-daemon(3) priorities: LOG_DEBUG 7, LOG_INFO 6, LOG_WARNING 4, LOG_ERR 3. */
static const char log_journal_prefix[][4] = {"<7>", "<6>", "<4>", "<3>"};

static volatile int log_threshold = LOG_INFO;

static const char *const log_level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void log_set_level(enum log_level level)
{
    log_threshold = (int)level;
}

enum log_level log_get_level(void)
{
    return (enum log_level)log_threshold;
}

/* systemd sets JOURNAL_STREAM=<dev>:<inode> of the stream it connected to
 * stderr (systemd.exec(5)); a match means journald reads our lines. */
static int stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    struct stat st;
    unsigned long long dev, ino;
    if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2) return 0;
    if (fstat(STDERR_FILENO, &st) != 0) return 0;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

static int open_log_file(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

int log_open(const char *file)
{
    if (file == NULL || file[0] == '\0') {
        log_journal = stderr_is_journal();
        return 0;
    }
    if (strlen(file) >= sizeof(log_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open_log_file(file);
    if (fd < 0) return -1;
    memcpy(log_path, file, strlen(file) + 1);
    log_fd = fd;
    log_journal = 0;
    return 0;
}

/* Writes all len bytes at p: a buffer of many lines may be written in
 * parts (a full pipe or socket), and a line must not be cut. Gives up
 * silently on an error other than EINTR: nowhere is left to report it. */
static void write_all(const char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(log_fd, p, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return;
        }
        p += w;
        len -= (size_t)w;
    }
}

/* Writes and empties the buffer. Caller holds log_buf_mu. */
static void flush_locked(void)
{
    if (log_buf_used == 0) return;
    write_all(log_buf, log_buf_used);
    log_buf_used = 0;
}

void log_flush(void)
{
    if (log_buf == NULL) return;
    int saved = errno;
    pthread_mutex_lock(&log_buf_mu);
    flush_locked();
    pthread_mutex_unlock(&log_buf_mu);
    errno = saved;
}

int log_set_buffer(size_t bytes)
{
    if (bytes == 0) return 0;
    if (log_buf != NULL) {
        errno = EALREADY;
        return -1;
    }
    if (bytes < LOG_LINE_MAX) bytes = LOG_LINE_MAX; /* the longest line always fits */
    char *buf = malloc(bytes);
    if (buf == NULL) return -1;
    log_buf_size = bytes;
    log_buf = buf;
    /* Lines still buffered when a server returns from main or calls exit. */
    if (atexit(log_flush) != 0) {
        log_buf = NULL;
        free(buf);
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

int log_reopen(void)
{
    int rc = 0;
    pthread_mutex_lock(&log_reopen_mu);
    /* Lines logged before the reopen belong to the old file. */
    if (log_buf != NULL) {
        pthread_mutex_lock(&log_buf_mu);
        flush_locked();
    }
    if (log_path[0] != '\0') {
        int fd = open_log_file(log_path);
        /* dup2 swaps the file under log_fd in one step: a concurrent write
         * lands wholly in the old file or wholly in the new one. */
        if (fd < 0 || dup2(fd, log_fd) < 0) rc = -1;
        if (fd >= 0) {
            int saved = errno;
            close(fd);
            errno = saved;
        }
    }
    if (log_buf != NULL) pthread_mutex_unlock(&log_buf_mu);
    pthread_mutex_unlock(&log_reopen_mu);
    return rc;
}

int log_set_tag(const char *tag)
{
    log_tag[0] = '\0';
    if (tag == NULL || tag[0] == '\0') return 0;
    size_t n = strlen(tag);
    if (n > LOG_TAG_MAX) return -1;
    for (size_t i = 0; i < n; i++) {
        char c = tag[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-'))
            return -1;
    }
    memcpy(log_tag, tag, n + 1);
    return 0;
}

int log_level_parse(const char *name)
{
    for (int i = LOG_DEBUG; i <= LOG_ERROR; i++)
        if (strcasecmp(name, log_level_names[i]) == 0) return i;
    if (strcasecmp(name, "warning") == 0) return LOG_WARN;
    return -1;
}

void log_write(enum log_level level, uint64_t rid, const char *fmt, ...)
{
    if ((int)level < log_threshold || level > LOG_ERROR) return;

    int saved = errno; /* callers log between a failure and reading its errno */
    char line[LOG_LINE_MAX];
    int n;
    if (log_journal) {
        /* journald stamps the time itself */
        n = snprintf(line, sizeof(line), "%s%-5s rid=%llu %s%s%s", log_journal_prefix[level],
                     log_level_names[level], (unsigned long long)rid, log_tag[0] ? "tag=" : "",
                     log_tag, log_tag[0] ? " " : "");
    } else {
        struct timespec now;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &now);
        gmtime_r(&now.tv_sec, &tm);
        n = snprintf(line, sizeof(line),
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s rid=%llu %s%s%s", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     now.tv_nsec / 1000000L, log_level_names[level], (unsigned long long)rid,
                     log_tag[0] ? "tag=" : "", log_tag, log_tag[0] ? " " : "");
    }
    if (n < 0) goto done;
    size_t used = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;

    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + used, sizeof(line) - used, fmt, ap);
    va_end(ap);
    if (m < 0) goto done;
    used += (size_t)m;
    if (used > sizeof(line) - 2) used = sizeof(line) - 2; /* truncated, keep room for '\n' */
    line[used++] = '\n';

    if (log_buf != NULL) {
        pthread_mutex_lock(&log_buf_mu);
        if (level <= LOG_INFO) {
            if (log_buf_size - log_buf_used < used) flush_locked();
            memcpy(log_buf + log_buf_used, line, used);
            log_buf_used += used;
        } else {
            /* A warning or error is seen at once, after what came before it. */
            flush_locked();
            write_all(line, used);
        }
        pthread_mutex_unlock(&log_buf_mu);
    } else {
        /* One write per line: concurrent threads never interleave inside a line. */
        write_all(line, used);
    }
done:
    errno = saved;
}

char *log_quote(char *out, size_t out_size, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    size_t limit = out_size - 5; /* room for '"', "...", NUL at worst */
    out[o++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[4];
        size_t k = 0;
        uint32_t cp;
        size_t n = c >= 0x80 ? validate_utf8_next((const unsigned char *)s, len, i, &cp) : 0;
        /* Readable text stays readable (Zoë, 李, emoji); C1 controls, line
         * and paragraph separators and bidi controls stay escaped, so no
         * value can start a new line or reorder one on a terminal. */
        if (n > 1 && cp >= 0xa0 && cp != 0x2028 && cp != 0x2029 &&
            !(cp >= 0x202a && cp <= 0x202e) && !(cp >= 0x2066 && cp <= 0x2069)) {
            if (o + n > limit - 1) {
                memcpy(out + o, "...", 3);
                o += 3;
                break;
            }
            memcpy(out + o, s + i, n);
            o += n;
            i += n - 1;
            continue;
        }
        if (c == '"' || c == '\\') {
            tmp[k++] = '\\';
            tmp[k++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            tmp[k++] = '\\';
            tmp[k++] = 'x';
            tmp[k++] = hex[c >> 4];
            tmp[k++] = hex[c & 15];
        } else {
            tmp[k++] = (char)c;
        }
        if (o + k > limit - 1) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        memcpy(out + o, tmp, k);
        o += k;
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

void log_reopen_reported(void)
{
    if (log_reopen() != 0) {
        char eb[128];
        log_error(0, "event=log_reopen outcome=failure error=\"%s\"",
                  strerror_r(errno, eb, sizeof(eb)));
    } else {
        log_info(0, "event=log_reopen outcome=success");
    }
}
