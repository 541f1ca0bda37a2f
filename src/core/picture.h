/*
 * picture: turns an uploaded image into a stored avatar.
 *
 * Untrusted bytes are identified by libvips (8.14, untrusted loaders
 * blocked), and only the JPEG, PNG, GIF and WebP loaders are accepted. The
 * header is checked against a pixel budget before any pixel is decoded (a
 * small file can announce a gigapixel image), then the image is decoded in
 * full with fail_on=error, so truncated or corrupt data is refused rather
 * than half-shown. The result is shrunk to fit max_side_px square
 * (honouring EXIF orientation), flattened onto white when it has an alpha
 * channel, and re-encoded as baseline JPEG with every piece of metadata
 * (EXIF with GPS position and camera data, XMP, IPTC, ICC, comments)
 * removed. JPEG rather than WebP because libvips 8.14.1's webpsave ignores
 * strip=TRUE and always writes an EXIF chunk; jpegsave honours it, and every
 * browser shows JPEG.
 *
 * Stored file names are hex(BLAKE2b-128(key, username || 0x00 || jpeg)) +
 * ".jpg" with a key derived from the JWT secret: the same upload by the
 * same user maps to the same file, and nobody without the secret can guess
 * another user's picture URL. Files are written atomically (temporary file
 * in the same directory, fsync, link into place), so a reader never sees a
 * partial file. Thread-safe after picture_global_init().
 */
#ifndef PROFILE_CORE_PICTURE_H
#define PROFILE_CORE_PICTURE_H

#include <stddef.h>

#include "common/config.h"

#define PICTURE_MAX_PIXELS 50000000ULL /* width * height decoded at most: 50 megapixels */
#define PICTURE_NAME_HEX 32            /* hex digits of the 128-bit name hash */
#define PICTURE_NAME_BYTES (PICTURE_NAME_HEX + 4 + 1) /* "<hex>.jpg" and its NUL */
#define PICTURE_CONTENT_TYPE "image/jpeg"

enum picture_status {
    PICTURE_OK = 0,
    PICTURE_TOO_LARGE = -1,       /* more than max_bytes bytes */
    PICTURE_UNSUPPORTED = -2,     /* not a JPEG, PNG, GIF or WebP image, or fails to decode */
    PICTURE_TOO_MANY_PIXELS = -3, /* header announces more than PICTURE_MAX_PIXELS pixels */
    PICTURE_IO = -4,              /* cannot write or remove the file (errno logged) */
    PICTURE_ERROR = -5,           /* out of memory or an encoder failure */
};

/* An accepted, re-encoded picture not yet stored. */
struct picture_blob {
    void *data;                    /* JPEG bytes, owned (free with picture_blob_free) */
    size_t len;                    /* bytes */
    int width, height;             /* pixels after resizing */
    char name[PICTURE_NAME_BYTES]; /* file name it will be stored under */
};

struct picture_store;

/*
 * Applies the process-wide libvips settings: its GLib warnings go to our
 * log at debug level, untrusted (fuzz-unsafe) loaders are blocked, operation cache off (uploads are
 * never repeated, and caching them only holds memory), one worker thread per pipeline (the RPC
 * server already runs requests in parallel). Call once after VIPS_INIT and
 * before any other thread uses libvips.
 */
void picture_global_init(void);

/*
 * Creates the store for cfg (dir created with parents, mode 0755, when
 * missing; limits copied) whose file-name key is derived from secret
 * (secret_len bytes, 16..64). Returns the store (free with
 * picture_store_destroy) or NULL with errno set (EINVAL for a bad secret,
 * or mkdir's errno) and a log line.
 */
struct picture_store *picture_store_create(const struct config_picture *cfg,
                                           const unsigned char *secret, size_t secret_len);

/* Frees ps (files are kept). NULL is allowed. */
void picture_store_destroy(struct picture_store *ps);

/* Short English name of a picture_status for logs. */
const char *picture_status_str(int status);

/*
 * Checks, decodes, resizes and re-encodes data (len bytes) uploaded by
 * username, and names the result. No file is written. rid is the request
 * id for log lines. Returns PICTURE_OK with *out filled (free with
 * picture_blob_free), or PICTURE_TOO_LARGE, PICTURE_UNSUPPORTED,
 * PICTURE_TOO_MANY_PIXELS or PICTURE_ERROR with *out zeroed.
 */
int picture_prepare(const struct picture_store *ps, const char *username, const void *data,
                    size_t len, unsigned long long rid, struct picture_blob *out);

/* Frees blob->data and zeroes blob. Safe on a zeroed blob. */
void picture_blob_free(struct picture_blob *blob);

/*
 * Stores blob under blob->name in the pictures directory, atomically and
 * durably. *created is set to 1 when the file was written now, 0 when a
 * file of that name already existed (same user, same content: kept as is).
 * Returns PICTURE_OK or PICTURE_IO.
 */
int picture_save(const struct picture_store *ps, const struct picture_blob *blob, int *created);

/*
 * Deletes the stored picture name (a name as produced by picture_prepare;
 * anything else, e.g. containing '/', is refused with PICTURE_ERROR). A
 * file already gone counts as removed. Returns PICTURE_OK, PICTURE_IO or
 * PICTURE_ERROR.
 */
int picture_remove(const struct picture_store *ps, const char *name);

/* Returns 1 when name has the form of a stored picture ("<32 hex>.jpg"), else 0. */
int picture_name_is_valid(const char *name);

#endif
