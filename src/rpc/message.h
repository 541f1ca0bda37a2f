/*
 * message: helpers for building and freeing the protobuf-c messages of
 * proto/profile.proto (generated into profile.pb-c.h at build time).
 *
 * Ownership rule for responses built by a core handler: every string field
 * of an Rpc__Response and its Rpc__Profile is either the protobuf-c empty
 * default or a heap copy made by rpc_str_set(); the rpc server frees them
 * with rpc_response_reset() after the frame is written.
 */
#ifndef PROFILE_RPC_MESSAGE_H
#define PROFILE_RPC_MESSAGE_H

#include <stdarg.h>
#include <stddef.h>

#include "profile.pb-c.h"

/*
 * Replaces *field with a heap copy of s (NULL counts as ""), freeing the old
 * value unless it is the protobuf-c empty default.
 * Returns 0, or -1 on allocation failure (the field is then left as "").
 */
int rpc_str_set(char **field, const char *s);

/*
 * Sets resp->status, error_code (a snake_case constant) and a printf-style
 * message safe to show to a user. Allocation failures leave the fields
 * empty; the status is always set.
 */
void rpc_response_fail(Rpc__Response *resp, Rpc__Status status, const char *code, const char *fmt,
                       ...) __attribute__((format(printf, 4, 5)));

/*
 * Makes resp->profile point at a fresh, empty, heap-allocated Rpc__Profile
 * (owned by resp). Returns the profile, or NULL on allocation failure.
 */
Rpc__Profile *rpc_response_profile(Rpc__Response *resp);

/* Frees every heap field of resp set through the helpers above (and
 * resp->core_metrics, which a handler sets to a malloc'ed, flat
 * Rpc__CoreMetrics) and re-initialises it to RPC__RESPONSE__INIT. */
void rpc_response_reset(Rpc__Response *resp);

/* Method name for logs ("login", "get_profile"...); "unknown" otherwise. */
const char *rpc_method_str(int method);

#endif
