/*
 * form: HTML form bodies (application/x-www-form-urlencoded and
 * multipart/form-data, HTML Living Standard 4.10.21.7-8 and RFC 7578),
 * parsed incrementally with libmicrohttpd's MHD_PostProcessor.
 *
 * The body is fed in whatever pieces the connection delivers; every field
 * is capped while it streams in (text fields at limits.text_max, file parts
 * at limits.file_max), so a hostile body never makes us hold more than the
 * caps, and the first violation stops parsing with a status the caller
 * turns into 400 or 413. When a name occurs more than once the first value
 * wins.
 */
#ifndef PROFILE_WEB_FORM_H
#define PROFILE_WEB_FORM_H

#include <microhttpd.h>
#include <stddef.h>

enum form_status {
    FORM_OK = 0,
    FORM_ERR_FIELD_TOO_LONG = -1,  /* a text field exceeded text_max (answer 400) */
    FORM_ERR_FILE_TOO_LARGE = -2,  /* a file part exceeded file_max (answer 413) */
    FORM_ERR_TOO_MANY_FIELDS = -3, /* more than fields_max distinct names (answer 400) */
    FORM_ERR_SYNTAX = -4,          /* malformed body, e.g. truncated multipart (answer 400) */
    FORM_ERR_NOMEM = -5,           /* allocation failed (answer 500) */
};

struct form_limits {
    size_t text_max;   /* bytes allowed in one text field's value */
    size_t file_max;   /* bytes allowed in one file part */
    size_t fields_max; /* distinct field names kept */
};

/* One field, as collected. */
struct form_field {
    char *name;         /* heap, NUL-terminated */
    char *data;         /* heap, value bytes followed by a NUL (which is not counted in len) */
    size_t len;         /* bytes of value; may contain NUL bytes */
    char *filename;     /* heap; NULL unless the part was a file upload (may be "") */
    char *content_type; /* heap; NULL unless the multipart part named one */
};

struct form;

/*
 * Creates a parser for the body of the request on conn, whose Content-Type
 * header selects the encoding; lim is copied. Returns NULL with
 * errno = EINVAL when the Content-Type is missing or not one of the two
 * form encodings (multipart also needs a boundary parameter), or ENOMEM.
 * Free with form_destroy.
 */
struct form *form_create(struct MHD_Connection *conn, const struct form_limits *lim);

/*
 * Parses the next len bytes of the body. Returns FORM_OK or a negative
 * form_status; after an error the form stays failed and later calls
 * return the same status without parsing.
 */
int form_feed(struct form *f, const char *data, size_t len);

/*
 * Ends the body: flushes the last field (urlencoded bodies deliver it only
 * here) and checks that a multipart body was complete. Returns FORM_OK or
 * a negative form_status (FORM_ERR_SYNTAX for an incomplete body). Call
 * once, before form_get.
 */
int form_finish(struct form *f);

/* The status so far (FORM_OK or the first error). */
int form_status(const struct form *f);

/*
 * Returns the first field called name (owned by f, valid until
 * form_destroy), or NULL when the body had none.
 */
const struct form_field *form_get(const struct form *f, const char *name);

/* Frees f and every field. NULL is allowed. */
void form_destroy(struct form *f);

/* A sentence for a user describing status (e.g. "A form field is too long."). */
const char *form_status_message(int status);

#endif
