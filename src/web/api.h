/*
 * api: the JSON API of issue 2, for programs, tests and benchmarks.
 *
 *   POST  /api/v1/login           {"username","password"} -> 200 profile + cookie
 *   GET   /api/v1/profile         -> 200 profile
 *   PATCH /api/v1/profile         {"nickname"} -> 200 profile
 *   PUT   /api/v1/profile/picture image bytes (Content-Type image/...) -> 200 profile
 *   POST  /api/v1/logout          -> 204, cookie cleared, token dead
 *
 * A profile is {"username": s, "nickname": s, "picture_url": null | s}.
 * Every error is {"error": {"code": "snake_case", "message": "Sentence."}}
 * with the status the RPC status maps to (request_http_status). The token
 * comes from the session cookie or an Authorization: Bearer header. The
 * server has already checked the Content-Type of state-changing requests
 * (application/json, image/... for the picture) and read the body; a body
 * problem arrives as req->body_error. Handlers return libmicrohttpd's
 * verdict from queueing the response.
 */
#ifndef PROFILE_WEB_API_H
#define PROFILE_WEB_API_H

#include <microhttpd.h>

#include "web/request.h"

/* POST /api/v1/login. */
enum MHD_Result api_login(struct web_request *req);

/* GET /api/v1/profile. */
enum MHD_Result api_profile_get(struct web_request *req);

/* PATCH /api/v1/profile. */
enum MHD_Result api_profile_patch(struct web_request *req);

/* PUT /api/v1/profile/picture. */
enum MHD_Result api_picture_put(struct web_request *req);

/* POST /api/v1/logout. */
enum MHD_Result api_logout(struct web_request *req);

#endif
