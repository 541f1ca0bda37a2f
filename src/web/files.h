/*
 * files: serving stored pictures and static assets from disk.
 *
 * A file name from the URL is accepted only when it matches a strict
 * pattern (no '/', no "..", a known extension), so no request can reach
 * outside the configured directory; the file is then handed to
 * libmicrohttpd by descriptor, which sends it with sendfile(2) without
 * copying it through user space.
 */
#ifndef PROFILE_WEB_FILES_H
#define PROFILE_WEB_FILES_H

#include <microhttpd.h>

#include "web/request.h"

/* Cache lifetimes: pictures have content-derived names, so they never change. */
#define FILES_PICTURE_CACHE "public, max-age=31536000, immutable"
#define FILES_STATIC_CACHE "public, max-age=3600"

/* Returns 1 when name matches ^[0-9a-f]{16,64}\.(webp|png|jpg)$, else 0. */
int files_picture_name_ok(const char *name);

/*
 * Returns 1 when name is 1..64 bytes of [A-Za-z0-9_-], one '.', and an
 * extension we know a Content-Type for (css, js, svg, png, jpg, webp, ico, txt,
 * woff2), else 0.
 */
int files_static_name_ok(const char *name);

/* The Content-Type for name's extension, or NULL when unknown. */
const char *files_content_type(const char *name);

/*
 * Answers the request with the regular file dir/name (name already checked
 * by the caller) with its Content-Type and the given Cache-Control: 200
 * with the file, 404 (plain text) when it does not exist, is a symbolic
 * link or is not a regular file, 500 on other errors (logged).
 */
enum MHD_Result files_serve(struct web_request *req, const char *dir, const char *name,
                            const char *cache_control);

#endif
