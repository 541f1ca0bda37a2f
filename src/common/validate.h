/*
 * validate: the syntax rules for user-supplied identity fields, shared by the
 * web server (to refuse bad input before it reaches the RPC) and the core
 * (which checks again: it trusts no caller).
 */
#ifndef PROFILE_COMMON_VALIDATE_H
#define PROFILE_COMMON_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#define USERNAME_MAX_BYTES 64 /* usernames are ASCII, so bytes = characters */
#define NICKNAME_MAX_CODEPOINTS 64
#define NICKNAME_MAX_BYTES (NICKNAME_MAX_CODEPOINTS * 4) /* UTF-8 needs at most 4 bytes each */

/*
 * Returns 1 when s[0..len) is 1..64 bytes of [A-Za-z0-9_.-], else 0.
 * len counts bytes; an embedded NUL makes the name invalid.
 */
int validate_username(const char *s, size_t len);

enum nickname_error {
    NICKNAME_OK = 0,
    NICKNAME_EMPTY = -1,    /* nothing left after trimming white space */
    NICKNAME_TOO_LONG = -2, /* more than 64 code points after trimming */
    NICKNAME_BAD_UTF8 =
        -3, /* not well-formed UTF-8 (RFC 3629): overlong, surrogate, > U+10FFFF, truncated */
    NICKNAME_CONTROL = -4, /* contains a C0/C1 control, DEL or a bidi override/isolate */
};

/*
 * Decodes the code point starting at s[i] (i < len) following RFC 3629
 * section 4: overlong forms, surrogates and values above U+10FFFF are not
 * well-formed. Returns the sequence length in bytes (1..4) and sets *cp, or
 * 0 when the bytes at i are not well-formed UTF-8.
 */
size_t validate_utf8_next(const unsigned char *s, size_t len, size_t i, uint32_t *cp);

/*
 * Checks s[0..len) as a nickname: well-formed UTF-8 (RFC 3629), trimmed of
 * surrounding Unicode white space (ASCII space/tab/newlines, U+0085, U+00A0,
 * U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000) and
 * zero-width characters (U+200B, U+2060, U+FEFF, U+180E), then 1..64 code
 * points with no control characters (C0, C1, DEL) and no bidirectional
 * embedding/override/isolate controls (U+202A..U+202E, U+2066..U+2069).
 * Joiners (U+200D in emoji sequences) are kept. On NICKNAME_OK sets
 * *start (byte offset) and *trimmed_len (bytes) of the trimmed nickname
 * inside s; bytes are otherwise kept exactly as given (no normalisation).
 * Returns a nickname_error.
 */
int validate_nickname(const char *s, size_t len, size_t *start, size_t *trimmed_len);

/* A sentence explaining err to a user, e.g. "Nickname must be 1 to 64 characters." */
const char *validate_nickname_message(int err);

#endif
