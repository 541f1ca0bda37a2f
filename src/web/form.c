/* form: see form.h. */
#include "web/form.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* MHD buffers one key or one multipart part header at a time in this many bytes. */
#define FORM_PP_BUFFER 16384

struct form {
    struct MHD_PostProcessor *pp; /* NULL after form_finish */
    struct form_limits lim;
    struct form_field *fields;  /* heap array */
    size_t count;               /* fields used */
    size_t cap;                 /* fields allocated */
    struct form_field *current; /* field receiving the value in progress; NULL = discard */
    size_t current_cap;         /* bytes allocated for current->data */
    char *value_key;            /* heap: name of the value in progress, NULL before the first */
    uint64_t value_next_off;    /* offset the next piece of that value will carry */
    int status;                 /* FORM_OK or the first error */
};

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static struct form_field *find(const struct form *f, const char *name)
{
    for (size_t i = 0; i < f->count; i++) {
        if (strcmp(f->fields[i].name, name) == 0) return &f->fields[i];
    }
    return NULL;
}

/* Starts a new value for key; sets f->current (NULL for a duplicate). */
static int start_field(struct form *f, const char *key, const char *filename,
                       const char *content_type)
{
    f->current = NULL;
    f->current_cap = 0;
    if (find(f, key) != NULL) return FORM_OK; /* duplicate: the first value wins */
    if (f->count == f->lim.fields_max) return FORM_ERR_TOO_MANY_FIELDS;
    if (f->count == f->cap) {
        size_t ncap = f->cap ? f->cap * 2 : 4;
        struct form_field *p = realloc(f->fields, ncap * sizeof(*p));
        if (p == NULL) return FORM_ERR_NOMEM;
        f->fields = p;
        f->cap = ncap;
    }
    struct form_field *fld = &f->fields[f->count];
    memset(fld, 0, sizeof(*fld));
    fld->name = strdup(key);
    fld->data = malloc(1);
    fld->filename = dup_or_null(filename);
    fld->content_type = dup_or_null(content_type);
    f->count++; /* counted now so form_destroy frees whatever was allocated */
    if (fld->name == NULL || fld->data == NULL || (filename && fld->filename == NULL) ||
        (content_type && fld->content_type == NULL))
        return FORM_ERR_NOMEM;
    fld->data[0] = '\0';
    f->current = fld;
    f->current_cap = 1;
    return FORM_OK;
}

static int append(struct form *f, const char *data, size_t size)
{
    struct form_field *fld = f->current;
    size_t max = fld->filename ? f->lim.file_max : f->lim.text_max;
    if (size > max - fld->len)
        return fld->filename ? FORM_ERR_FILE_TOO_LARGE : FORM_ERR_FIELD_TOO_LONG;
    if (fld->len + size + 1 > f->current_cap) {
        size_t ncap = f->current_cap * 2;
        if (ncap < fld->len + size + 1) ncap = fld->len + size + 1;
        if (ncap > max + 1) ncap = max + 1;
        char *p = realloc(fld->data, ncap);
        if (p == NULL) return FORM_ERR_NOMEM;
        fld->data = p;
        f->current_cap = ncap;
    }
    memcpy(fld->data + fld->len, data, size);
    fld->len += size;
    fld->data[fld->len] = '\0';
    return FORM_OK;
}

static enum MHD_Result iterate(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *filename, const char *content_type,
                               const char *transfer_encoding, const char *data, uint64_t off,
                               size_t size)
{
    struct form *f = cls;
    (void)kind;
    (void)transfer_encoding;
    if (f->status != FORM_OK) return MHD_NO;
    if (key == NULL) return MHD_YES;
    int st = FORM_OK;
    /* MHD delivers a value in pieces with increasing off, sometimes starting
     * with an empty piece at off 0; a piece that does not continue the value
     * in progress starts a new one. */
    int continues =
        f->value_key != NULL && off == f->value_next_off && strcmp(f->value_key, key) == 0;
    if (!continues) {
        free(f->value_key);
        f->value_key = strdup(key);
        st = f->value_key ? start_field(f, key, filename, content_type) : FORM_ERR_NOMEM;
    }
    f->value_next_off = off + size;
    if (st == FORM_OK && f->current != NULL && size > 0) st = append(f, data, size);
    if (st != FORM_OK) {
        f->status = st;
        return MHD_NO;
    }
    return MHD_YES;
}

struct form *form_create(struct MHD_Connection *conn, const struct form_limits *lim)
{
    struct form *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    f->lim = *lim;
    f->pp = MHD_create_post_processor(conn, FORM_PP_BUFFER, iterate, f);
    if (f->pp == NULL) {
        free(f);
        errno = EINVAL;
        return NULL;
    }
    return f;
}

int form_feed(struct form *f, const char *data, size_t len)
{
    if (f->status != FORM_OK) return f->status;
    if (f->pp == NULL) return FORM_ERR_SYNTAX; /* fed after form_finish */
    if (MHD_post_process(f->pp, data, len) != MHD_YES && f->status == FORM_OK)
        f->status = FORM_ERR_SYNTAX;
    return f->status;
}

int form_finish(struct form *f)
{
    if (f->pp == NULL) return f->status;
    enum MHD_Result ok = MHD_destroy_post_processor(f->pp);
    f->pp = NULL;
    f->current = NULL;
    if (ok != MHD_YES && f->status == FORM_OK) f->status = FORM_ERR_SYNTAX;
    return f->status;
}

int form_status(const struct form *f)
{
    return f->status;
}

const struct form_field *form_get(const struct form *f, const char *name)
{
    return find(f, name);
}

void form_destroy(struct form *f)
{
    if (f == NULL) return;
    if (f->pp != NULL) (void)MHD_destroy_post_processor(f->pp); /* abandoned body */
    for (size_t i = 0; i < f->count; i++) {
        free(f->fields[i].name);
        free(f->fields[i].data);
        free(f->fields[i].filename);
        free(f->fields[i].content_type);
    }
    free(f->fields);
    free(f->value_key);
    free(f);
}

const char *form_status_message(int status)
{
    switch (status) {
    case FORM_OK:
        return "OK.";
    case FORM_ERR_FIELD_TOO_LONG:
        return "A form field is too long.";
    case FORM_ERR_FILE_TOO_LARGE:
        return "The uploaded file is too large.";
    case FORM_ERR_TOO_MANY_FIELDS:
        return "The form has too many fields.";
    case FORM_ERR_SYNTAX:
        return "The form data is malformed.";
    default:
        return "The form could not be processed.";
    }
}
