/* html: see html.h. */
#include "web/html.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HTML_NAME_MAX 32
#define HTML_DEPTH_MAX 8
#define HTML_FILE_MAX (1024 * 1024)

void html_buf_init(struct html_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->failed = 0;
}

void html_buf_free(struct html_buf *b)
{
    free(b->data);
    html_buf_init(b);
}

/* Ensures room for extra more bytes plus a NUL. */
static int buf_grow(struct html_buf *b, size_t extra)
{
    if (b->failed) return -1;
    if (extra > SIZE_MAX - b->len - 1) goto fail;
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (p == NULL) goto fail;
    b->data = p;
    b->cap = cap;
    return 0;
fail:
    b->failed = 1;
    return -1;
}

int html_buf_reserve(struct html_buf *b, size_t cap)
{
    if (b->failed) return -1;
    if (cap < b->len) return 0;
    if (cap == SIZE_MAX) goto fail;
    if (cap + 1 <= b->cap) return 0;
    char *p = realloc(b->data, cap + 1);
    if (p == NULL) goto fail;
    if (b->data == NULL) p[0] = '\0';
    b->data = p;
    b->cap = cap + 1;
    return 0;
fail:
    b->failed = 1;
    return -1;
}

int html_buf_append(struct html_buf *b, const char *s, size_t len)
{
    if (buf_grow(b, len) != 0) return -1;
    if (len > 0) memcpy(b->data + b->len, s, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int html_buf_append_str(struct html_buf *b, const char *s)
{
    return html_buf_append(b, s, strlen(s));
}

char *html_buf_take(struct html_buf *b, size_t *len)
{
    *len = 0;
    if (b->failed) {
        html_buf_free(b);
        return NULL;
    }
    if (b->data == NULL && html_buf_append(b, "", 0) != 0) {
        html_buf_free(b);
        return NULL;
    }
    char *data = b->data;
    *len = b->len;
    html_buf_init(b);
    return data;
}

int html_escape(struct html_buf *b, const char *s, size_t len)
{
    size_t run = 0; /* start of the pending run of bytes that need no escaping */
    if (len == 0) return b->failed ? -1 : 0;
    for (size_t i = 0; i < len; i++) {
        const char *entity;
        switch (s[i]) {
        case '&':
            entity = "&amp;";
            break;
        case '<':
            entity = "&lt;";
            break;
        case '>':
            entity = "&gt;";
            break;
        case '"':
            entity = "&quot;";
            break;
        case '\'':
            entity = "&#39;";
            break;
        case '\0':
            entity = "\xef\xbf\xbd"; /* U+FFFD REPLACEMENT CHARACTER */
            break;
        default:
            continue;
        }
        html_buf_append(b, s + run, i - run);
        html_buf_append_str(b, entity);
        run = i + 1;
    }
    html_buf_append(b, s + run, len - run);
    return b->failed ? -1 : 0;
}

/* ---- templates ------------------------------------------------------------ */

enum node_kind {
    NODE_TEXT,     /* literal bytes */
    NODE_VAR,      /* {{name}} */
    NODE_SECTION,  /* {{#name}}: enter when non-empty */
    NODE_INVERTED, /* {{^name}}: enter when empty */
    NODE_END,      /* {{/name}} */
};

struct node {
    enum node_kind kind;
    const char *text; /* NODE_TEXT: bytes inside html_template.src; others: the name */
    size_t len;       /* bytes of text */
    size_t end;       /* NODE_SECTION/INVERTED: index of the matching NODE_END */
};

struct html_template {
    char *src;          /* heap copy of the template text; nodes point into it */
    struct node *nodes; /* heap array */
    size_t count;       /* nodes used */
};

static int push_node(struct node **nodes, size_t *count, size_t *cap, struct node n)
{
    if (*count == *cap) {
        size_t ncap = *cap ? *cap * 2 : 32;
        struct node *p = realloc(*nodes, ncap * sizeof(*p));
        if (p == NULL) return -1;
        *nodes = p;
        *cap = ncap;
    }
    (*nodes)[(*count)++] = n;
    return 0;
}

static int name_ok(const char *s, size_t len)
{
    if (len == 0 || len > HTML_NAME_MAX) return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return 0;
    }
    return 1;
}

struct html_template *html_template_parse(const char *text, size_t len, char *err, size_t err_size)
{
    struct html_template *t = calloc(1, sizeof(*t));
    size_t cap = 0, depth = 0;
    size_t open[HTML_DEPTH_MAX]; /* node indexes of the open sections */
    size_t pos = 0;
    if (err_size > 0) err[0] = '\0';
    if (t == NULL) goto nomem;
    t->src = malloc(len + 1);
    if (t->src == NULL) goto nomem;
    if (len > 0) memcpy(t->src, text, len);
    t->src[len] = '\0';

    const char *s = t->src;
    while (pos < len) {
        const char *tag = strstr(s + pos, "{{");
        size_t at = tag ? (size_t)(tag - s) : len;
        if (at > pos) {
            struct node n = {NODE_TEXT, s + pos, at - pos, 0};
            if (push_node(&t->nodes, &t->count, &cap, n) != 0) goto nomem;
        }
        if (tag == NULL) break;
        const char *close = strstr(tag + 2, "}}");
        if (close == NULL) {
            snprintf(err, err_size, "unterminated tag at byte %zu", at);
            goto fail;
        }
        const char *name = tag + 2;
        enum node_kind kind = NODE_VAR;
        if (*name == '#' || *name == '^' || *name == '/') {
            kind = *name == '#' ? NODE_SECTION : *name == '^' ? NODE_INVERTED : NODE_END;
            name++;
        }
        size_t name_len = (size_t)(close - name);
        if (!name_ok(name, name_len)) {
            snprintf(err, err_size, "bad tag name at byte %zu", at);
            goto fail;
        }
        struct node n = {kind, name, name_len, 0};
        if (kind == NODE_SECTION || kind == NODE_INVERTED) {
            if (depth == HTML_DEPTH_MAX) {
                snprintf(err, err_size, "sections nested too deep at byte %zu", at);
                goto fail;
            }
            open[depth++] = t->count;
        } else if (kind == NODE_END) {
            if (depth == 0) {
                snprintf(err, err_size, "{{/%.*s}} without a section at byte %zu", (int)name_len,
                         name, at);
                goto fail;
            }
            struct node *o = &t->nodes[open[depth - 1]];
            if (o->len != name_len || memcmp(o->text, name, name_len) != 0) {
                snprintf(err, err_size, "{{/%.*s}} closes {{%c%.*s}} at byte %zu", (int)name_len,
                         name, o->kind == NODE_SECTION ? '#' : '^', (int)o->len, o->text, at);
                goto fail;
            }
            o->end = t->count;
            depth--;
        }
        if (push_node(&t->nodes, &t->count, &cap, n) != 0) goto nomem;
        pos = (size_t)(close - s) + 2;
    }
    if (depth != 0) {
        struct node *o = &t->nodes[open[depth - 1]];
        snprintf(err, err_size, "section %.*s is never closed", (int)o->len, o->text);
        goto fail;
    }
    return t;
nomem:
    snprintf(err, err_size, "out of memory");
fail:
    html_template_free(t);
    return NULL;
}

struct html_template *html_template_load(const char *path, char *err, size_t err_size)
{
    struct html_template *t = NULL;
    char *text = NULL;
    size_t len = 0;
    char perr[160];
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        return NULL;
    }
    text = malloc(HTML_FILE_MAX + 1);
    if (text == NULL) {
        snprintf(err, err_size, "%s: out of memory", path);
        goto done;
    }
    len = fread(text, 1, HTML_FILE_MAX + 1, f);
    if (ferror(f)) {
        snprintf(err, err_size, "%s: read error", path);
        goto done;
    }
    if (len > HTML_FILE_MAX) {
        snprintf(err, err_size, "%s: larger than %d bytes", path, HTML_FILE_MAX);
        goto done;
    }
    t = html_template_parse(text, len, perr, sizeof(perr));
    if (t == NULL) snprintf(err, err_size, "%s: %s", path, perr);
done:
    free(text);
    fclose(f);
    return t;
}

void html_template_free(struct html_template *t)
{
    if (t == NULL) return;
    free(t->nodes);
    free(t->src);
    free(t);
}

static const struct html_var *find_var(const struct html_var *vars, size_t nvars, const char *name,
                                       size_t len)
{
    for (size_t i = 0; i < nvars; i++) {
        if (strlen(vars[i].name) == len && memcmp(vars[i].name, name, len) == 0) return &vars[i];
    }
    return NULL;
}

static size_t var_len(const struct html_var *v)
{
    if (v->value == NULL) return 0;
    return v->len == (size_t)-1 ? strlen(v->value) : v->len;
}

int html_render(const struct html_template *t, const struct html_var *vars, size_t nvars,
                struct html_buf *out)
{
    size_t i = 0;
    while (i < t->count) {
        const struct node *n = &t->nodes[i];
        if (n->kind == NODE_TEXT) {
            html_buf_append(out, n->text, n->len);
            i++;
            continue;
        }
        if (n->kind == NODE_END) {
            i++;
            continue;
        }
        const struct html_var *v = find_var(vars, nvars, n->text, n->len);
        if (v == NULL) {
            errno = EINVAL;
            return -1;
        }
        size_t vlen = var_len(v);
        if (n->kind == NODE_VAR) {
            if (v->flags & HTML_VAR_RAW)
                html_buf_append(out, v->value, vlen);
            else
                html_escape(out, v->value, vlen);
            i++;
        } else {
            int enter = n->kind == NODE_SECTION ? vlen > 0 : vlen == 0;
            i = enter ? i + 1 : n->end + 1;
        }
    }
    return out->failed ? -1 : 0;
}
