#include "core/picture.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <vips/vips.h>

#include "common/log.h"

#define PICTURE_JPEG_QUALITY 85 /* libjpeg quality, 0..100 */
#define PICTURE_KEY_BYTES 32

struct picture_store {
    char dir[CONFIG_STR_MAX];                  /* pictures directory */
    size_t max_bytes;                          /* largest accepted upload, bytes */
    int max_side_px;                           /* bounding square side, pixels */
    unsigned char name_key[PICTURE_KEY_BYTES]; /* BLAKE2b key for file names */
};

/* libvips loader nicknames we accept; everything else is refused even when
 * libvips could read it (TIFF, HEIF, SVG, PDF... widen the attack surface). */
static const char *const accepted_loaders[] = {"jpegload_buffer", "pngload_buffer",
                                               "gifload_buffer", "webpload_buffer"};

/* libvips reports decoder trouble through GLib warnings on stderr; route
 * them into our log format (one line, quoted) instead. */
static void vips_log_handler(const gchar *domain, GLogLevelFlags level, const gchar *message,
                             gpointer data)
{
    char q[512];
    (void)domain;
    (void)level;
    (void)data;
    log_debug(0, "event=vips_warning message=%s",
              log_quote(q, sizeof(q), message ? message : "", message ? strlen(message) : 0));
}

void picture_global_init(void)
{
    g_log_set_handler(
        "VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO | G_LOG_LEVEL_DEBUG,
        vips_log_handler, NULL);
    vips_block_untrusted_set(TRUE);
    vips_cache_set_max(0);
    vips_concurrency_set(1);
}

const char *picture_status_str(int status)
{
    switch (status) {
    case PICTURE_OK:
        return "ok";
    case PICTURE_TOO_LARGE:
        return "too_large";
    case PICTURE_UNSUPPORTED:
        return "unsupported";
    case PICTURE_TOO_MANY_PIXELS:
        return "too_many_pixels";
    case PICTURE_IO:
        return "io_error";
    case PICTURE_ERROR:
        return "error";
    default:
        return "unknown";
    }
}

/* mkdir -p path with mode 0755. Returns 0 or -1 with errno. */
static int make_dirs(const char *path)
{
    char buf[CONFIG_STR_MAX];
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof(buf)) {
        errno = EINVAL;
        return -1;
    }
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
        buf[i] = saved;
    }
    struct stat st;
    if (stat(path, &st) != 0) return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

struct picture_store *picture_store_create(const struct config_picture *cfg,
                                           const unsigned char *secret, size_t secret_len)
{
    static const char context[] = "profile-core picture file names v1";
    struct picture_store *ps;

    if (secret_len < crypto_generichash_KEYBYTES_MIN ||
        secret_len > crypto_generichash_KEYBYTES_MAX || cfg->max_side_px <= 0) {
        log_error(0, "event=picture_init outcome=failure error=\"bad secret or max_side_px\"");
        errno = EINVAL;
        return NULL;
    }
    if (make_dirs(cfg->dir) != 0) {
        int e = errno;
        char q[300], eb[128];
        log_error(0, "event=picture_init outcome=failure dir=%s error=\"%s\"",
                  log_quote(q, sizeof(q), cfg->dir, strlen(cfg->dir)),
                  strerror_r(e, eb, sizeof(eb)));
        errno = e;
        return NULL;
    }
    ps = calloc(1, sizeof(*ps));
    if (ps == NULL) return NULL;
    memcpy(ps->dir, cfg->dir, sizeof(ps->dir));
    ps->max_bytes = cfg->max_bytes;
    ps->max_side_px = cfg->max_side_px;
    /* A separate key, so knowing a picture name says nothing about the JWT
     * key, and vice versa. */
    if (crypto_generichash(ps->name_key, sizeof(ps->name_key), (const unsigned char *)context,
                           sizeof(context) - 1, secret, secret_len) != 0) {
        free(ps);
        errno = EINVAL;
        return NULL;
    }
    return ps;
}

void picture_store_destroy(struct picture_store *ps)
{
    if (ps == NULL) return;
    sodium_memzero(ps->name_key, sizeof(ps->name_key));
    free(ps);
}

void picture_blob_free(struct picture_blob *blob)
{
    if (blob == NULL) return;
    g_free(blob->data);
    memset(blob, 0, sizeof(*blob));
}

/* Logs (and clears) the libvips error buffer under event. */
static void log_vips_error(unsigned long long rid, const char *event)
{
    char *err = vips_error_buffer_copy();
    char q[512];
    log_info(rid, "event=%s outcome=refused error=%s", event,
             log_quote(q, sizeof(q), err ? err : "", err ? strlen(err) : 0));
    g_free(err);
}

static int loader_is_accepted(const void *data, size_t len, unsigned long long rid)
{
    const char *class_name = vips_foreign_find_load_buffer(data, len);
    const char *nick;

    if (class_name == NULL) {
        vips_error_clear();
        return 0;
    }
    nick = vips_nickname_find(g_type_from_name(class_name));
    for (size_t i = 0; nick != NULL && i < sizeof(accepted_loaders) / sizeof(accepted_loaders[0]);
         i++)
        if (strcmp(nick, accepted_loaders[i]) == 0) return 1;
    log_info(rid, "event=picture_check outcome=refused loader=%s", nick ? nick : class_name);
    return 0;
}

/* Name = hex(BLAKE2b-128(name_key, username || 0 || bytes)) ".jpg". */
static int make_name(const struct picture_store *ps, const char *username, const void *data,
                     size_t len, char out[PICTURE_NAME_BYTES])
{
    crypto_generichash_state st;
    unsigned char hash[PICTURE_NAME_HEX / 2];
    static const unsigned char separator = 0;

    if (crypto_generichash_init(&st, ps->name_key, sizeof(ps->name_key), sizeof(hash)) != 0 ||
        crypto_generichash_update(&st, (const unsigned char *)username, strlen(username)) != 0 ||
        crypto_generichash_update(&st, &separator, 1) != 0 ||
        crypto_generichash_update(&st, data, len) != 0 ||
        crypto_generichash_final(&st, hash, sizeof(hash)) != 0)
        return -1;
    sodium_bin2hex(out, PICTURE_NAME_HEX + 1, hash, sizeof(hash));
    memcpy(out + PICTURE_NAME_HEX, ".jpg", 5);
    return 0;
}

/*
 * Replaces *img by a copy (sharing pixels) without any optional metadata:
 * EXIF (GPS position, camera serial), XMP, IPTC, ICC profile, comments.
 * Only the built-in header fields, which vips_image_remove() leaves alone,
 * and the sequential-access hint survive. Returns 0 or -1.
 */
static int strip_metadata(VipsImage **img)
{
    VipsImage *copy = NULL;
    gchar **fields;

    /* Metadata of a shared image must not be changed: work on a copy. */
    if (vips_copy(*img, &copy, NULL) != 0) return -1;
    fields = vips_image_get_fields(copy);
    for (int i = 0; fields != NULL && fields[i] != NULL; i++)
        if (strcmp(fields[i], "vips-sequential") != 0) (void)vips_image_remove(copy, fields[i]);
    g_strfreev(fields);
    g_object_unref(*img);
    *img = copy;
    return 0;
}

int picture_prepare(const struct picture_store *ps, const char *username, const void *data,
                    size_t len, unsigned long long rid, struct picture_blob *out)
{
    VipsImage *header = NULL, *thumb = NULL;
    void *buf = NULL;
    size_t buf_len = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    if (len > ps->max_bytes) return PICTURE_TOO_LARGE;
    if (len == 0 || !loader_is_accepted(data, len, rid)) return PICTURE_UNSUPPORTED;

    /* Header only: libvips decodes pixels lazily, so this reads the size
     * without allocating the image. */
    header = vips_image_new_from_buffer(data, len, "", "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    if (header == NULL) {
        log_vips_error(rid, "picture_header");
        return PICTURE_UNSUPPORTED;
    }
    int w = vips_image_get_width(header), h = vips_image_get_height(header);
    g_object_unref(header);
    if (w <= 0 || h <= 0) return PICTURE_UNSUPPORTED;
    if ((unsigned long long)w * (unsigned long long)h > PICTURE_MAX_PIXELS) {
        log_info(rid, "event=picture_check outcome=refused width=%d height=%d", w, h);
        return PICTURE_TOO_MANY_PIXELS;
    }

    /* Decode every pixel (fail_on=error turns truncation and corruption
     * into an error instead of a grey band), shrink (never enlarge) to the
     * bounding square, apply the EXIF orientation, then drop all metadata. */
    if (vips_thumbnail_buffer((void *)data, len, &thumb, ps->max_side_px, "height", ps->max_side_px,
                              "size", VIPS_SIZE_DOWN, "option_string", "fail_on=error",
                              NULL) != 0) {
        log_vips_error(rid, "picture_decode");
        return PICTURE_UNSUPPORTED;
    }
    /* JPEG has no alpha: composite transparent pictures onto white. */
    if (vips_image_hasalpha(thumb)) {
        VipsImage *flat = NULL;
        VipsArrayDouble *white = vips_array_double_newv(1, 255.0);
        int frc = vips_flatten(thumb, &flat, "background", white, NULL);
        vips_area_unref(VIPS_AREA(white));
        if (frc != 0) {
            log_vips_error(rid, "picture_decode");
            rc = PICTURE_UNSUPPORTED;
            goto done;
        }
        g_object_unref(thumb);
        thumb = flat;
    }
    /* Belt and braces: drop the metadata fields too, so nothing the
     * uploader sent can reach the output even if strip were ignored. */
    if (strip_metadata(&thumb) != 0) {
        rc = PICTURE_ERROR;
        goto done;
    }
    if (vips_jpegsave_buffer(thumb, &buf, &buf_len, "strip", TRUE, "Q", PICTURE_JPEG_QUALITY,
                             "optimize_coding", TRUE, NULL) != 0) {
        /* Decoding is lazy: a corrupt body usually shows up here. */
        log_vips_error(rid, "picture_decode");
        rc = PICTURE_UNSUPPORTED;
        goto done;
    }
    out->width = vips_image_get_width(thumb);
    out->height = vips_image_get_height(thumb);
    if (make_name(ps, username, buf, buf_len, out->name) != 0) {
        rc = PICTURE_ERROR;
        goto done;
    }
    out->data = buf;
    out->len = buf_len;
    buf = NULL;
    rc = PICTURE_OK;
done:
    g_free(buf);
    if (thumb != NULL) g_object_unref(thumb);
    if (rc != PICTURE_OK) memset(out, 0, sizeof(*out));
    return rc;
}

int picture_name_is_valid(const char *name)
{
    if (name == NULL || strlen(name) != PICTURE_NAME_BYTES - 1) return 0;
    for (size_t i = 0; i < PICTURE_NAME_HEX; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f'))) return 0;
    return strcmp(name + PICTURE_NAME_HEX, ".jpg") == 0;
}

static int write_all(int fd, const unsigned char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* fsync the directory so the new name survives a crash. */
static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int picture_save(const struct picture_store *ps, const struct picture_blob *blob, int *created)
{
    char path[PATH_MAX], tmp[PATH_MAX], eb[128];
    int fd = -1, rc = PICTURE_IO, n, tmp_made = 0;
    const char *what = "open";

    *created = 0;
    if (!picture_name_is_valid(blob->name)) return PICTURE_ERROR;
    n = snprintf(path, sizeof(path), "%s/%s", ps->dir, blob->name);
    if (n < 0 || (size_t)n >= sizeof(path)) return PICTURE_ERROR;
    n = snprintf(tmp, sizeof(tmp), "%s/.tmp-XXXXXX", ps->dir);
    if (n < 0 || (size_t)n >= sizeof(tmp)) return PICTURE_ERROR;

    if (access(path, F_OK) == 0) return PICTURE_OK; /* same user, same bytes: already there */

    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) goto fail;
    tmp_made = 1;
    what = "write";
    if (write_all(fd, blob->data, blob->len) != 0) goto fail;
    what = "fchmod"; /* mkstemp makes 0600; the web server must read it */
    if (fchmod(fd, 0644) != 0) goto fail;
    what = "fsync";
    if (fsync(fd) != 0) goto fail;
    what = "close";
    n = close(fd);
    fd = -1;
    if (n != 0) goto fail;
    /* link() never replaces an existing file (unlike rename): if a
     * concurrent request stored the same name first, keep its file. */
    what = "link";
    if (link(tmp, path) != 0) {
        if (errno != EEXIST) goto fail;
    } else {
        *created = 1;
    }
    what = "unlink";
    if (unlink(tmp) != 0) goto fail;
    tmp_made = 0;
    what = "fsync_dir";
    if (sync_dir(ps->dir) != 0) goto fail;
    return PICTURE_OK;

fail:;
    int e = errno;
    log_error(0, "event=picture_save outcome=failure op=%s name=%s error=\"%s\"", what, blob->name,
              strerror_r(e, eb, sizeof(eb)));
    if (fd >= 0) close(fd);
    if (tmp_made) (void)unlink(tmp);
    if (*created) {
        (void)unlink(path);
        *created = 0;
    }
    return rc;
}

int picture_remove(const struct picture_store *ps, const char *name)
{
    char path[PATH_MAX], eb[128];
    int n;

    if (!picture_name_is_valid(name)) return PICTURE_ERROR;
    n = snprintf(path, sizeof(path), "%s/%s", ps->dir, name);
    if (n < 0 || (size_t)n >= sizeof(path)) return PICTURE_ERROR;
    if (unlink(path) != 0 && errno != ENOENT) {
        log_error(0, "event=picture_remove outcome=failure name=%s error=\"%s\"", name,
                  strerror_r(errno, eb, sizeof(eb)));
        return PICTURE_IO;
    }
    return PICTURE_OK;
}
