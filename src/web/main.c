/*
 * profile-web: the HTTP server of the profile service (HTML pages and the
 * JSON API). It holds no database credentials and no JWT secret: every
 * question about users goes to the core over RPC (see server.h).
 *
 * Usage: profile-web -c <config.ini>
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "web/server.h"

#define DRAIN_MS 5000 /* time in-flight requests get to finish at shutdown, milliseconds */

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: profile-web -c <config.ini>\n");
}

int main(int argc, char **argv)
{
    static struct config cfg; /* large; read by every thread for the whole run */
    const char *path = NULL;
    int opt;
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

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    /* A client that hangs up mid-response must not kill the process. */
    if (sigaction(SIGPIPE, &sa, NULL) != 0) {
        fprintf(stderr, "profile-web: sigaction: %s\n", strerror(errno));
        return 1;
    }
    sa.sa_handler = on_signal;
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0) {
        fprintf(stderr, "profile-web: sigaction: %s\n", strerror(errno));
        return 1;
    }

    /* Block the stop signals before the server's threads exist (they inherit
     * the mask), so only sigsuspend below receives them and none is lost
     * between checking the flag and going to sleep. */
    sigset_t stop_set, old_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGTERM);
    sigaddset(&stop_set, SIGINT);
    if (sigprocmask(SIG_BLOCK, &stop_set, &old_set) != 0) {
        fprintf(stderr, "profile-web: sigprocmask: %s\n", strerror(errno));
        return 1;
    }
    struct web_server *srv = web_server_start(&cfg);
    if (srv == NULL) return 1;
    while (!stop_requested)
        sigsuspend(&old_set);
    log_info(0, "web: stopping (signal received)");
    web_server_stop(srv, DRAIN_MS);
    log_info(0, "web: stopped");
    return 0;
}
