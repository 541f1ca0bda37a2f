/* files: see files.h. */
#include "web/files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "web/reply.h"

static const char *const content_types[][2] = {
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"webp", "image/webp"},
    {"ico", "image/x-icon"},
    {"txt", "text/plain; charset=utf-8"},
    {"woff2", "font/woff2"},
};

int files_picture_name_ok(const char *name)
{
    size_t n = 0;
    while ((name[n] >= '0' && name[n] <= '9') || (name[n] >= 'a' && name[n] <= 'f'))
        n++;
    if (n < 16 || n > 64 || name[n] != '.') return 0;
    const char *ext = name + n + 1;
    return strcmp(ext, "webp") == 0 || strcmp(ext, "png") == 0 || strcmp(ext, "jpg") == 0;
}

const char *files_content_type(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (dot == NULL) return NULL;
    for (size_t i = 0; i < sizeof(content_types) / sizeof(content_types[0]); i++) {
        if (strcmp(dot + 1, content_types[i][0]) == 0) return content_types[i][1];
    }
    return NULL;
}

int files_static_name_ok(const char *name)
{
    size_t n = 0;
    while ((name[n] >= 'a' && name[n] <= 'z') || (name[n] >= 'A' && name[n] <= 'Z') ||
           (name[n] >= '0' && name[n] <= '9') || name[n] == '_' || name[n] == '-')
        n++;
    if (n < 1 || n > 64 || name[n] != '.') return 0;
    if (strchr(name + n + 1, '.') != NULL) return 0;
    return files_content_type(name) != NULL;
}

static enum MHD_Result not_found(struct web_request *req)
{
    char *body = strdup("Not found.\n");
    return reply_bytes(req, MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8", body,
                       body ? strlen(body) : 0);
}

enum MHD_Result files_serve(struct web_request *req, const char *dir, const char *name,
                            const char *cache_control)
{
    char *path = NULL;
    int fd = -1;
    struct stat st;
    const char *type = files_content_type(name);
    if (type == NULL) return not_found(req);
    if (asprintf(&path, "%s/%s", dir, name) < 0) {
        path = NULL;
        goto fail;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) {
            free(path);
            return not_found(req);
        }
        log_error(req->rid, "files: open %s: %s", path, strerror(errno));
        goto fail;
    }
    if (fstat(fd, &st) != 0) {
        log_error(req->rid, "files: fstat %s: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        free(path);
        return not_found(req);
    }
    free(path);
    path = NULL;
    struct MHD_Response *r = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
    if (r == NULL) goto fail;
    fd = -1; /* owned by the response now */
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type) != MHD_YES) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    return reply_queue(req, MHD_HTTP_OK, r, cache_control);
fail:
    if (fd >= 0) close(fd);
    free(path);
    char *body = strdup("Internal error.\n");
    return reply_bytes(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", body,
                       body ? strlen(body) : 0);
}
