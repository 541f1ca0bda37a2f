/*
 * service: the core's business logic behind the RPC methods of
 * proto/profile.proto — LOGIN, LOGOUT, GET_PROFILE, UPDATE_PROFILE, HEALTH,
 * METRICS (counters of logins, cache hits and misses, MySQL and Redis errors).
 *
 * Owns the MySQL and Redis pools, the password hasher and the picture
 * store. Every request gets exactly one status; user mistakes map to
 * INVALID_ARGUMENT / UNAUTHENTICATED / TOO_LARGE / UNSUPPORTED_MEDIA_TYPE,
 * and infrastructure trouble (MySQL or Redis down, saturated or timing out,
 * disk errors) to UNAVAILABLE — never to "wrong password". Unknown users and
 * wrong passwords get the same answer in about the same time. Key events
 * (login success and failure, logout, nickname and picture changes, every
 * error) are written as one audit log line each, with the request id, user,
 * client IP and outcome, and with tag=<Request.request_tag> when the caller
 * sent a sane one (the X-Request-Id nginx made). Thread-safe: the RPC server calls service_handle
 * from many threads at once.
 */
#ifndef PROFILE_CORE_SERVICE_H
#define PROFILE_CORE_SERVICE_H

#include "common/config.h"
#include "profile.pb-c.h"
#include "rpc/server.h"

#define SERVICE_PASSWORD_MAX_BYTES                                                                 \
    4096 /* as the web (docs/api.md); longer ones are refused before hashing */

struct service;

/*
 * Builds the service from cfg (copied; cfg->jwt_secret must be loaded, at
 * least 32 bytes). Needs sodium_init() and VIPS_INIT() + picture_global_init()
 * done. Creates the pictures directory and the pools but opens no MySQL or
 * Redis connection yet, so the core starts while they are down (HEALTH
 * reports it). Computes the dummy password hash (one argon2id run).
 * Returns the service (free with service_destroy) or NULL after logging why.
 */
struct service *service_create(const struct config *cfg);

/* Frees svc and closes its pooled connections. No request may be in flight. */
void service_destroy(struct service *svc);

/*
 * The rpc_handler_fn (rpc/server.h): ctx is the struct service. Reads req,
 * fills resp following the ownership rule of rpc/message.h and always sets
 * resp->status.
 */
void service_handle(void *ctx, const Rpc__Request *req, Rpc__Response *resp);

/*
 * The rpc_batch_fn (rpc/server.h), run on an RPC event loop: answers the
 * batch's profile reads whose session and profile are cached in Redis with
 * one pipelined round trip for all of them (MGET sess:<jti> prof:<user>
 * each), answers returning users' logins the credential cache vouches for,
 * and refuses bad tokens and dead sessions. Nickname-only edits are put in
 * the group of service_handle_group; everything else (other methods, cache
 * misses, Redis failures) is left undone for service_handle on a worker,
 * which starts it afresh. Never blocks on MySQL or argon2id.
 */
void service_handle_batch(void *ctx, struct rpc_call *const *calls, size_t n);

/*
 * The rpc_group_fn (rpc/server.h), run on a worker: service_handle_batch
 * puts nickname-only UPDATE_PROFILE calls in one group, and this answers
 * each batch of up to 64 of them with one pipelined Redis read of their
 * sessions and cached rows, ONE multi-row autocommit UPDATE (a group
 * commit: user_store_set_nicknames) and one pipelined cache refresh, where
 * service_handle pays these round trips and a commit per edit. Answers all
 * n calls: bad tokens and nicknames are refused one by one, and a second
 * edit of a user already in the batch is done after it (service_handle).
 */
void service_handle_group(void *ctx, struct rpc_call *const *calls, size_t n);

#endif
