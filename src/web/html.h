/*
 * html: HTML escaping, a growable output buffer and a tiny template engine
 * for the pages in web/templates/.
 *
 * Templates are parsed once at start-up into a node list, so a malformed
 * template stops the server before it listens instead of breaking one page
 * at request time. The syntax is a small subset of Mustache:
 *
 *   {{name}}              the variable's value, HTML-escaped
 *   {{#name}}...{{/name}} the enclosed part when the value is non-empty
 *   {{^name}}...{{/name}} the enclosed part when the value is empty
 *
 * Names are 1..32 bytes of [a-z0-9_]. Values are escaped unless the caller
 * marks the variable HTML_VAR_RAW (used only for HTML this program rendered
 * itself, such as a page body placed into the layout), so a template cannot
 * by mistake print user input unescaped.
 */
#ifndef PROFILE_WEB_HTML_H
#define PROFILE_WEB_HTML_H

#include <stddef.h>

/* Growable byte buffer. Appends never fail loudly: the first allocation
 * failure sets `failed`, later appends are ignored, and the owner checks
 * `failed` once when done (like a stdio stream's error flag). */
struct html_buf {
    char *data; /* heap, owned, NUL-terminated when len > 0; NULL until first append */
    size_t len; /* bytes used, excluding the terminating NUL */
    size_t cap; /* bytes allocated */
    int failed; /* 1 after an allocation failure; the content is then incomplete */
};

/* Initialises b to empty (no allocation). */
void html_buf_init(struct html_buf *b);

/* Frees b's memory and re-initialises it. Safe on an initialised buffer. */
void html_buf_free(struct html_buf *b);

/*
 * Appends len bytes of s to b. Returns 0, or -1 when memory ran out or the
 * buffer had already failed (b->failed is then 1).
 */
int html_buf_append(struct html_buf *b, const char *s, size_t len);

/*
 * Ensures b can hold cap bytes of content without reallocating (used to
 * size a request body once from its Content-Length). Returns 0, or -1 when
 * memory ran out (b->failed is then 1).
 */
int html_buf_reserve(struct html_buf *b, size_t cap);

/* Appends the NUL-terminated string s. Same return as html_buf_append. */
int html_buf_append_str(struct html_buf *b, const char *s);

/*
 * Takes b's heap data out of b: returns it (caller frees with free()) and
 * sets *len to its length in bytes; b is left empty. Returns NULL when b
 * failed (b is then freed) or, with *len = 0, a heap "" when b was empty.
 */
char *html_buf_take(struct html_buf *b, size_t *len);

/*
 * Appends s[0..len) to b with the five HTML special characters replaced by
 * entities (& &amp;  < &lt;  > &gt;  " &quot;  ' &#39;), which makes the
 * result safe both in element content and in a quoted attribute value
 * (HTML Living Standard 13.1.4, 13.2.5.36). Other bytes, including UTF-8
 * sequences, pass through unchanged, except NUL, which becomes U+FFFD (HTML
 * treats a raw NUL as a parse error). Returns 0, or -1 as html_buf_append.
 */
int html_escape(struct html_buf *b, const char *s, size_t len);

struct html_template; /* opaque, immutable after parsing, shareable by threads */

#define HTML_VAR_RAW 1 /* html_var.flags: value is trusted HTML, insert unescaped */

/* One named value for html_render. */
struct html_var {
    const char *name;  /* placeholder name, NUL-terminated */
    const char *value; /* bytes; NULL counts as "" */
    size_t len;        /* bytes of value; (size_t)-1 means NUL-terminated */
    int flags;         /* 0 or HTML_VAR_RAW */
};

/*
 * Parses text[0..len) as a template (the text is copied). On a syntax error
 * (unterminated or unknown tag, bad name, unbalanced sections, nesting
 * deeper than 8) returns NULL and writes a message naming the byte offset
 * into err (err_size bytes, may be 0). Also NULL on allocation failure.
 * Free the result with html_template_free.
 */
struct html_template *html_template_parse(const char *text, size_t len, char *err, size_t err_size);

/*
 * Reads and parses the file at path (at most 1 MiB). Returns the template,
 * or NULL with a message in err (unreadable file, too large, syntax error).
 */
struct html_template *html_template_load(const char *path, char *err, size_t err_size);

/* Frees t. NULL is allowed. */
void html_template_free(struct html_template *t);

/*
 * Appends t rendered with vars[0..nvars) to out. Every placeholder must be
 * named in vars: an unknown name returns -1 (a bug in the caller) and
 * leaves out with a partial page. Returns 0, or -1 on an unknown name or
 * when out failed to grow.
 */
int html_render(const struct html_template *t, const struct html_var *vars, size_t nvars,
                struct html_buf *out);

#endif
