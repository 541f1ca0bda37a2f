/* daemon: see daemon.h. */
#include "common/daemon.h"

#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "common/log.h"

static _Atomic uint64_t daemon_wd_usec;   /* watchdog interval, microseconds; 0 = off */
static _Atomic uint64_t daemon_last_ping; /* CLOCK_MONOTONIC of the last ping, microseconds */

static uint64_t monotonic_usec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int daemon_listen_fd(void)
{
    int n = sd_listen_fds(1);
    if (n == 0) return -1;
    if (n != 1) {
        log_error(0, "event=socket_activation outcome=failure error=\"%s\"",
                  n < 0 ? strerror(-n) : "expected exactly one socket (ListenStream=)");
        return -2;
    }
    int fd = SD_LISTEN_FDS_START;
    int ok = sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1);
    if (ok <= 0) {
        log_error(0, "event=socket_activation outcome=failure error=\"%s\"",
                  ok < 0 ? strerror(-ok) : "the passed socket is not a listening stream socket");
        return -2;
    }
    return fd;
}

int daemon_notify_ready(const char *status)
{
    uint64_t usec = 0;
    /* 0 = off, > 0 = on, < 0 = malformed WATCHDOG_USEC: treat as off but say so */
    int wd = sd_watchdog_enabled(0, &usec);
    if (wd < 0) log_warn(0, "event=watchdog outcome=failure error=\"%s\"", strerror(-wd));
    atomic_store(&daemon_wd_usec, wd > 0 ? usec : 0);
    atomic_store(&daemon_last_ping, monotonic_usec());
    int rc = sd_notifyf(0, "READY=1\nSTATUS=%s", status != NULL ? status : "ready");
    if (rc < 0) {
        log_error(0, "event=sd_notify outcome=failure state=READY error=\"%s\"", strerror(-rc));
        return -1;
    }
    if (rc > 0)
        log_info(0, "event=sd_notify outcome=success state=READY watchdog_usec=%llu",
                 (unsigned long long)atomic_load(&daemon_wd_usec));
    return 0;
}

void daemon_notify_stopping(void)
{
    (void)sd_notify(0, "STOPPING=1");
}

uint64_t daemon_watchdog_usec(void)
{
    return atomic_load(&daemon_wd_usec);
}

int daemon_watchdog_ping(void)
{
    uint64_t usec = atomic_load(&daemon_wd_usec);
    if (usec == 0) return 0;
    uint64_t now = monotonic_usec(), last = atomic_load(&daemon_last_ping);
    if (now - last < usec / 4) return 0;
    /* One pinger per due interval even when several threads call at once. */
    if (!atomic_compare_exchange_strong(&daemon_last_ping, &last, now)) return 0;
    int rc = sd_notify(0, "WATCHDOG=1");
    if (rc < 0) {
        log_error(0, "event=sd_notify outcome=failure state=WATCHDOG error=\"%s\"", strerror(-rc));
        return -1;
    }
    return 0;
}
