/*
 * log: one logger for the whole program.
 *
 * Every line is
 *   <RFC 3339 UTC time> <LEVEL> rid=<request id> [tag=<tag>] <key=value ...>
 * written with one write(2), so lines from different threads never
 * interleave and journald or a file sees whole lines. Values that come from
 * users are quoted and escaped by log_quote() so a hostile username cannot
 * forge a second log line.
 *
 * Output (log_open): stderr by default. Under systemd (JOURNAL_STREAM names
 * our stderr) each line starts with an sd-daemon priority prefix instead of
 * the time ("<3>" error, "<4>" warn, "<6>" info, "<7>" debug, see
 * sd-daemon(3)), so journald files it at the right priority and adds its own
 * timestamp. With a log file configured, lines are appended to it and
 * log_reopen() (on SIGHUP, after logrotate moved the file) starts a new one.
 *
 * Buffering (log_set_buffer): INFO and DEBUG lines - the access and audit
 * lines, one or more per request - may be gathered in memory and written
 * many at a time, the way nginx's `access_log ... buffer=` does; a WARN or
 * ERROR line is written at once, after everything buffered before it, so
 * the order of lines is always the order they were logged in.
 */
#ifndef PROFILE_COMMON_LOG_H
#define PROFILE_COMMON_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

/*
 * Chooses the output: file (a path, appended to, created 0640) when non-NULL
 * and non-empty, else stderr; detects journald as described above. Call once
 * at start-up, before threads exist. Returns 0, or -1 with errno when the
 * file cannot be opened (the logger then keeps writing to stderr).
 */
int log_open(const char *file);

/*
 * Reopens the log file named to log_open (no-op with stderr), atomically for
 * concurrent writers: each line goes wholly to the old or the new file.
 * Call from a normal thread (not a signal handler) after SIGHUP. Returns 0,
 * or -1 with errno (the old file stays in use).
 */
int log_reopen(void);

/*
 * log_reopen(), then one line saying how it went (event=log_reopen
 * outcome=success|failure): what both servers do on SIGHUP.
 */
void log_reopen_reported(void);

/*
 * Sets the calling thread's correlation tag (e.g. the X-Request-Id the web
 * server received), added as tag=<tag> to every line this thread writes
 * until cleared with NULL or "". Only 1..64 bytes of [A-Za-z0-9-] are
 * accepted; anything else clears the tag. Returns 0, or -1 when refused.
 */
int log_set_tag(const char *tag);

/*
 * Gathers INFO and DEBUG lines in a buffer of bytes (0 = none: one write(2)
 * per line, the default; less than 4096, the longest line, counts as 4096)
 * instead of writing each at once. The
 * buffer is written with one write(2) when the next line would not fit, by
 * log_flush(), before any WARN or ERROR line, before log_reopen() swaps the
 * file, and at exit(3). Why: at 20,000 requests a second the write(2) of
 * each access and audit line was 5-8 % of each server's CPU
 * (docs/performance.md). The price: a crash (SIGSEGV, SIGKILL) loses the
 * lines still buffered, at most bytes of them and at most one flush period
 * old. Call once at start-up, before threads exist. Returns 0, or -1 with
 * errno EALREADY (a second call) or ENOMEM (the logger then stays
 * unbuffered).
 */
int log_set_buffer(size_t bytes);

/*
 * Writes the buffered lines now (no-op without a buffer or when it is
 * empty). Both servers call it from their main loop's tick (every <= 200 ms);
 * the exit(3) handler of log_set_buffer writes the rest. Thread-safe.
 */
void log_flush(void);

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
