/*
 * daemon: the systemd service protocol (sd_notify(3), libsystemd).
 *
 * A unit with Type=notify is "started" only once the program says READY=1,
 * i.e. once it listens; with WatchdogSec= systemd kills and restarts a
 * program that stops sending WATCHDOG=1 within the interval. Outside systemd
 * (no NOTIFY_SOCKET in the environment) every call here does nothing, so
 * the programs run the same from scripts/stack.sh or a shell.
 */
#ifndef PROFILE_COMMON_DAEMON_H
#define PROFILE_COMMON_DAEMON_H

#include <stdint.h>

/*
 * The listening socket systemd passed (socket activation: a .socket unit
 * with one ListenStream=), checked to be a listening TCP socket, or -1 when
 * none was passed (not socket-activated: the caller binds its own). Unsets
 * LISTEN_FDS/LISTEN_PID so children do not inherit them. Returns -2 after
 * logging when sockets were passed but not exactly one listening TCP one.
 */
int daemon_listen_fd(void);

/*
 * Tells systemd the service is up (READY=1 plus a STATUS= line with status,
 * a short human-readable sentence, may be NULL). Also reads the watchdog
 * interval (WATCHDOG_USEC) for daemon_watchdog_ping. Returns 0 (also when
 * not under systemd), or -1 after logging why the notification failed.
 */
int daemon_notify_ready(const char *status);

/* Tells systemd a clean stop has begun (STOPPING=1). Errors are ignored:
 * the process is exiting anyway. */
void daemon_notify_stopping(void);

/*
 * Watchdog interval systemd expects pings within, microseconds, or 0 when
 * the watchdog is off (no WatchdogSec=, or not under systemd).
 */
uint64_t daemon_watchdog_usec(void);

/*
 * Sends WATCHDOG=1 when the watchdog is on and a quarter of its interval has
 * passed since the last ping, so a main loop may call it on every turn
 * (thread-safe; cheap when nothing is due). Returns 0, or -1 when the ping
 * could not be sent (logged).
 */
int daemon_watchdog_ping(void);

#endif
