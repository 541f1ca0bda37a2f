/*
 * log: one logger for the whole program.
 *
 * Every line is
 *   <RFC 3339 UTC time> <LEVEL> rid=<request id> <key=value ...>
 * written with one write(2) to stderr, so lines from different threads never
 * interleave and journald or a file redirect sees whole lines. Values that
 * come from users are quoted and escaped by log_quote() so a hostile
 * username cannot forge a second log line.
 */
#ifndef PROFILE_COMMON_LOG_H
#define PROFILE_COMMON_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

/* Sets the lowest level written; lines below it cost one comparison. */
void log_set_level(enum log_level level);

/* Current threshold, for callers that want to skip building costly fields. */
enum log_level log_get_level(void);

/*
 * Parses "debug", "info", "warn" or "error" (case-insensitive).
 * Returns the level, or -1 when name is none of them.
 */
int log_level_parse(const char *name);

/*
 * Writes one line at level with request id rid (0 = none) and the
 * printf-style fields. Lines longer than 4 KiB are truncated, never split.
 */
void log_write(enum log_level level, uint64_t rid, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Copies s (len bytes, need not be NUL-terminated) into out as a
 * double-quoted string: printable ASCII and well-formed UTF-8 text (code
 * points from U+00A0, except the line/paragraph separators and bidi
 * controls) as is, '"' and '\\' backslash-escaped, every other byte as
 * \xHH; truncated with "..." to fit out_size (bytes, >= 8).
 * Returns out, always NUL-terminated.
 */
char *log_quote(char *out, size_t out_size, const char *s, size_t len);

#define log_debug(rid, ...)                                                                        \
    do {                                                                                           \
        if (log_get_level() <= LOG_DEBUG) log_write(LOG_DEBUG, (rid), __VA_ARGS__);                \
    } while (0)
#define log_info(rid, ...) log_write(LOG_INFO, (rid), __VA_ARGS__)
#define log_warn(rid, ...) log_write(LOG_WARN, (rid), __VA_ARGS__)
#define log_error(rid, ...) log_write(LOG_ERROR, (rid), __VA_ARGS__)

#endif
