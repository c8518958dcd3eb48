/*
 * utf8.h - the one reading of strict UTF-8 (no overlong forms, no
 * surrogates, nothing above U+10FFFF), for the tokenizers and for
 * labels and templates (classify/).  No allocation; thread-safe.
 */
#ifndef CDX_UTF8_H
#define CDX_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Decodes the sequence that starts s (len > 0 bytes): its length (1..4)
 * with the code point in *cp, or 0 when it is not valid UTF-8, with the
 * reason in *why ("unexpected continuation byte", "overlong encoding",
 * "byte that never occurs in UTF-8", "truncated 3-byte sequence" and the
 * like, "surrogate code point", "code point above U+10FFFF"). */
size_t cdx_utf8_next(const unsigned char *s, size_t len, uint32_t *cp,
    const char **why);

/* 1 when s (len bytes) is strict UTF-8, else 0. */
int cdx_utf8_valid(const unsigned char *s, size_t len);

#endif
