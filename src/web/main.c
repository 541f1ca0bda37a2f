/*
 * profile-web: the HTTP server of the profile service (HTML pages and the
 * JSON API). It holds no database credentials and no JWT secret: every
 * question about users goes to the core over RPC (see server.h).
 *
 * Usage: profile-web -c <config.ini>
 * SIGTERM or SIGINT: stop accepting, let in-flight requests finish (up to
 * 5 s), exit 0. SIGHUP: reopen the [log] file. Under systemd (Type=notify)
 * READY=1 is sent once listening and the watchdog is pinged from the main
 * loop below (common/daemon.h).
 */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/config.h"
#include "common/daemon.h"
#include "common/log.h"
#include "web/server.h"

#define DRAIN_MS 5000 /* time in-flight requests get to finish at shutdown, milliseconds */
#define TICK_MS 200   /* main loop wake-up without signals (watchdog, log flush), milliseconds */

static void usage(FILE *out)
{
    fprintf(out, "usage: profile-web -c <config.ini>\n");
}

int main(int argc, char **argv)
{
    static struct config cfg; /* large; read by every thread for the whole run */
    const char *path = NULL;
    int opt;
    /* glibc gives each busy thread its own malloc arena and keeps freed memory
     * in it: with event-loop, reactor and 16 worker threads the RSS after a burst of
     * 2,000 connections stays far above what is in use. Two arenas suffice for
     * our small, short-lived allocations. */
    (void)mallopt(M_ARENA_MAX, 2);
    while ((opt = getopt(argc, argv, "c:h")) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (path == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (config_load(&cfg, path) != 0) return 1;
    /* Only the web server's own secret: never the JWT secret or database password. */
    if (config_load_web_secrets(&cfg) != 0) return 1;
    log_set_level((enum log_level)cfg.log.level);
    if (log_open(cfg.log.file) != 0) {
        fprintf(stderr, "profile-web: cannot open the log file %s: %s\n", cfg.log.file,
                strerror(errno));
        return 1;
    }
    if (log_set_buffer((size_t)cfg.log.buffer_kb * 1024) != 0) {
        fprintf(stderr, "profile-web: no memory for a %d KiB log buffer\n", cfg.log.buffer_kb);
        return 1;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    /* A client that hangs up mid-response must not kill the process. */
    if (sigaction(SIGPIPE, &sa, NULL) != 0) {
        fprintf(stderr, "profile-web: sigaction: %s\n", strerror(errno));
        return 1;
    }

    /* Block the signals before the server's threads exist (they inherit the
     * mask), so only sigtimedwait below receives them, synchronously: no
     * handler, nothing lost between checking and sleeping. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) {
        fprintf(stderr, "profile-web: sigprocmask: %s\n", strerror(errno));
        return 1;
    }
    struct web_server *srv = web_server_start(&cfg);
    if (srv == NULL) return 1;
    (void)daemon_notify_ready("serving HTTP"); /* failure logged; keep serving */
    for (;;) {
        struct timespec tick = {TICK_MS / 1000, (long)(TICK_MS % 1000) * 1000000L};
        int sig = sigtimedwait(&set, NULL, &tick);
        (void)daemon_watchdog_ping();
        log_flush(); /* buffered lines are at most one tick old */
        if (sig == SIGHUP) log_reopen_reported();
        if (sig == SIGTERM || sig == SIGINT) break;
        if (sig < 0 && errno != EAGAIN && errno != EINTR) {
            char eb[128];
            log_error(0, "web: sigtimedwait: %s", strerror_r(errno, eb, sizeof(eb)));
            break;
        }
    }
    daemon_notify_stopping();
    log_info(0, "web: stopping (signal received)");
    web_server_stop(srv, DRAIN_MS);
    log_info(0, "web: stopped");
    return 0;
}
