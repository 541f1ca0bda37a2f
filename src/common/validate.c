/* validate: see validate.h. */
#include "common/validate.h"

#include <stdint.h>

int validate_username(const char *s, size_t len)
{
    if (len == 0 || len > USERNAME_MAX_BYTES) return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '.' || c == '-';
        if (!ok) return 0;
    }
    return 1;
}

/*
 * Decodes one code point at s[i..len) following RFC 3629 section 4 (which
 * excludes overlong forms, surrogates and values above U+10FFFF).
 * Returns the sequence length in bytes (1..4) and sets *cp, or 0 when the
 * bytes are not well-formed UTF-8.
 */
size_t validate_utf8_next(const unsigned char *s, size_t len, size_t i, uint32_t *cp)
{
    unsigned char c = s[i];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t n;
    uint32_t v, min;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2, v = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3, v = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0; /* continuation byte, 0xc0/0xc1 (always overlong) or > 0xf4 */
    }
    if (len - i < n) return 0;
    for (size_t k = 1; k < n; k++) {
        if ((s[i + k] & 0xc0) != 0x80) return 0;
        v = (v << 6) | (s[i + k] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    *cp = v;
    return n;
}

/* Unicode White_Space, plus the invisible zero-width characters that only
 * make a nickname look empty or padded (ZWSP, word joiner, BOM, MVS). */
static int is_space(uint32_t cp)
{
    return cp == ' ' || (cp >= 0x09 && cp <= 0x0d) || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200b) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
           cp == 0x205f || cp == 0x3000 || cp == 0x2060 || cp == 0xfeff || cp == 0x180e;
}

/* C0 and C1 controls and DEL, and the bidirectional embedding, override and
 * isolate controls (U+202A..U+202E, U+2066..U+2069), which let a name
 * display reversed text around it ("Trojan Source", CVE-2021-42574). */
static int is_control(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
           (cp >= 0x2066 && cp <= 0x2069);
}

int validate_nickname(const char *str, size_t len, size_t *start, size_t *trimmed_len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t first = len, end = 0; /* byte range of the first to last non-space code point */
    size_t i = 0;
    /* Pass 1: well-formedness and the trimmed range. */
    while (i < len) {
        uint32_t cp;
        size_t n = validate_utf8_next(s, len, i, &cp);
        if (n == 0) return NICKNAME_BAD_UTF8;
        if (!is_space(cp)) {
            if (first == len) first = i;
            end = i + n;
        }
        i += n;
    }
    if (first == len) return NICKNAME_EMPTY;
    /* Pass 2: count and check the code points that remain. */
    size_t count = 0;
    for (i = first; i < end;) {
        uint32_t cp;
        size_t n = validate_utf8_next(s, end, i, &cp);
        if (is_control(cp)) return NICKNAME_CONTROL;
        if (++count > NICKNAME_MAX_CODEPOINTS) return NICKNAME_TOO_LONG;
        i += n;
    }
    *start = first;
    *trimmed_len = end - first;
    return NICKNAME_OK;
}

const char *validate_nickname_message(int err)
{
    switch (err) {
    case NICKNAME_OK:
        return "The nickname is valid.";
    case NICKNAME_EMPTY:
        return "Nickname must not be empty.";
    case NICKNAME_TOO_LONG:
        return "Nickname must be at most 64 characters.";
    case NICKNAME_BAD_UTF8:
        return "Nickname is not valid UTF-8 text.";
    case NICKNAME_CONTROL:
        return "Nickname must not contain control or text-direction characters.";
    default:
        return "Nickname is invalid.";
    }
}
