/*
 * profile-core: the core server. Speaks the RPC of proto/profile.proto on
 * TCP and holds all business logic (service.h); the only process with the
 * MySQL and Redis credentials and the JWT secret.
 *
 * Usage: profile-core [-c <ini file>] [-h]
 * SIGTERM or SIGINT stops accepting, lets in-flight requests finish (up to
 * 5 s) and exits 0. SIGHUP reopens the [log] file (after logrotate). Under
 * systemd (Type=notify) READY=1 is sent once listening and the watchdog is
 * pinged from the accept loop (common/daemon.h).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>
#include <vips/vips.h>

#include "common/config.h"
#include "common/daemon.h"
#include "common/log.h"
#include "core/picture.h"
#include "core/service.h"
#include "rpc/server.h"

#define CORE_DRAIN_MS 5000 /* in-flight requests get this long after SIGTERM, milliseconds */

static volatile sig_atomic_t stop_flag;
static volatile sig_atomic_t reopen_flag; /* SIGHUP: reopen the log file */

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void on_hup_signal(int sig)
{
    (void)sig;
    reopen_flag = 1;
}

/* rpc_server tick, on the accept thread every <= 200 ms: a stuck accept loop
 * stops the watchdog pings and systemd restarts the core; also the log
 * buffer's flush. */
static void core_tick(void *ctx)
{
    (void)ctx;
    (void)daemon_watchdog_ping();
    if (reopen_flag) {
        reopen_flag = 0;
        log_reopen_reported();
    }
    log_flush(); /* buffered lines are at most one tick old */
}

static void usage(FILE *out, const char *prog)
{
    fprintf(
        out,
        "Usage: %s [-c <ini file>] [-h]\n"
        "  -c FILE  configuration (INI, see etc/profile.ini); built-in defaults without it\n"
        "  -h       show this help\n"
        "Secrets (JWT_SECRET, MYSQL_PASSWORD) come from [core] env_file, created when missing.\n",
        prog);
}

static int install_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop_signal;
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0) return -1;
    sa.sa_handler = on_hup_signal;
    if (sigaction(SIGHUP, &sa, NULL) != 0) return -1;
    /* A peer that closes early must cost a failed write, not the process. */
    sa.sa_handler = SIG_IGN;
    if (sigaction(SIGPIPE, &sa, NULL) != 0) return -1;
    return 0;
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    static struct config cfg; /* large: keep it off the stack */
    struct service *svc = NULL;
    struct rpc_server *srv = NULL;
    int opt, vips_ready = 0, status = EXIT_FAILURE;

    while ((opt = getopt(argc, argv, "c:h")) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 'h':
            usage(stdout, argv[0]);
            return EXIT_SUCCESS;
        default:
            usage(stderr, argv[0]);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr, argv[0]);
        return 2;
    }

    if (sodium_init() < 0) {
        fprintf(stderr, "profile-core: libsodium initialisation failed\n");
        return EXIT_FAILURE;
    }
    if (config_load(&cfg, config_path) != 0) return EXIT_FAILURE;
    if (config_load_secrets(&cfg, 1) != 0) return EXIT_FAILURE;
    log_set_level((enum log_level)cfg.log.level);
    if (log_open(cfg.log.file) != 0) {
        fprintf(stderr, "profile-core: cannot open the log file %s: %s\n", cfg.log.file,
                strerror(errno));
        return EXIT_FAILURE;
    }
    if (log_set_buffer((size_t)cfg.log.buffer_kb * 1024) != 0) {
        fprintf(stderr, "profile-core: no memory for a %d KiB log buffer\n", cfg.log.buffer_kb);
        return EXIT_FAILURE;
    }
    if (install_signals() != 0) {
        log_error(0, "event=core_start outcome=failure error=\"cannot install signal handlers\"");
        goto done;
    }
    if (VIPS_INIT(argv[0]) != 0) {
        log_error(0, "event=core_start outcome=failure error=\"libvips initialisation failed\"");
        goto done;
    }
    vips_ready = 1;
    picture_global_init();

    svc = service_create(&cfg);
    if (svc == NULL) goto done; /* logged */

    /* systemd socket activation (profile-core.socket): the socket outlives
     * restarts, so requests arriving meanwhile wait instead of failing. */
    int inherited_fd = daemon_listen_fd();
    if (inherited_fd == -2) goto done; /* logged */
    struct rpc_server_options ropt = {
        .host = cfg.core.host,
        .port = cfg.core.port,
        .inherited_fd = inherited_fd > 0 ? inherited_fd : 0,
        .max_connections = cfg.core.max_connections,
        .io_threads = cfg.core.io_threads,
        .workers = cfg.core.workers,
        .idle_timeout_ms = cfg.core.idle_timeout_s * 1000,
        .max_frame_bytes = cfg.rpc.max_frame_bytes,
        .io_timeout_ms = cfg.rpc.slow_io_timeout_ms, /* reading a 10 MiB picture frame */
        .handler = service_handle,
        .batch = service_handle_batch,
        .group = service_handle_group,
        .group_concurrency = cfg.core.group_commits,
        .handler_ctx = svc,
        .tick = core_tick,
        .tick_ctx = NULL,
    };
    srv = rpc_server_create(&ropt);
    if (srv == NULL) {
        char eb[128];
        log_error(0, "event=core_start outcome=failure host=%s port=%d error=\"%s\"", cfg.core.host,
                  cfg.core.port, strerror_r(errno, eb, sizeof(eb)));
        goto done;
    }
    log_info(0, "profile-core listening on %s:%d%s", cfg.core.host, rpc_server_port(srv),
             inherited_fd > 0 ? " (socket from systemd)" : "");
    (void)daemon_notify_ready("accepting RPC connections"); /* failure logged; keep serving */
    if (rpc_server_run(srv, &stop_flag, CORE_DRAIN_MS) != 0) {
        char eb[128];
        log_error(0, "event=core_run outcome=failure error=\"%s\"",
                  strerror_r(errno, eb, sizeof(eb)));
        goto done;
    }
    daemon_notify_stopping();
    log_info(0, "event=core_stop outcome=success");
    status = EXIT_SUCCESS;

done:
    if (srv != NULL) rpc_server_destroy(srv);
    service_destroy(svc);
    if (vips_ready) vips_shutdown();
    sodium_memzero(&cfg, sizeof(cfg));
    return status;
}
