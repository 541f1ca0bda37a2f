/* log: see log.h. */
#include "common/log.h"
#include "common/validate.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096 /* bytes per line, newline included */

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

    char line[LOG_LINE_MAX];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);

    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s rid=%llu ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     now.tv_nsec / 1000000L, log_level_names[level], (unsigned long long)rid);
    if (n < 0) return;
    size_t used = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;

    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + used, sizeof(line) - used, fmt, ap);
    va_end(ap);
    if (m < 0) return;
    used += (size_t)m;
    if (used > sizeof(line) - 2) used = sizeof(line) - 2; /* truncated, keep room for '\n' */
    line[used++] = '\n';

    /* One write per line: concurrent threads never interleave inside a line. */
    ssize_t w = write(STDERR_FILENO, line, used);
    (void)w; /* nowhere left to report a failed log write */
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
