/*
 * net: the listening-socket set-up both servers share (the core's RPC
 * listener, the web's HTTP listener).
 */
#ifndef PROFILE_COMMON_NET_H
#define PROFILE_COMMON_NET_H

#include <netdb.h>

/*
 * Creates a TCP socket for ai (close-on-exec, SO_REUSEADDR so a restart
 * does not wait for TIME_WAIT), binds it to ai->ai_addr and listens with
 * backlog pending connections. Returns the socket (the caller closes it),
 * or -1 with errno set (EADDRINUSE, EADDRNOTAVAIL, EACCES, EMFILE...) and
 * nothing left open.
 */
int net_listen(const struct addrinfo *ai, int backlog);

/* The local port fd is bound to (IPv4 or IPv6), or -1 with errno set. */
int net_local_port(int fd);

#endif
