/*
 * utf8.c - strict UTF-8 (utf8.h).
 */
#include "common/utf8.h"

size_t
cdx_utf8_next(const unsigned char *s, size_t len, uint32_t *cp,
    const char **why)
{
	unsigned c = s[0];
	size_t need;
	uint32_t v;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xC2 && c <= 0xDF) {
		need = 1;
		v = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		need = 2;
		v = c & 0x0F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		need = 3;
		v = c & 0x07;
	} else {
		*why = c <= 0xBF ? "unexpected continuation byte" :
		    c == 0xC0 || c == 0xC1 ? "overlong encoding" :
		    "byte that never occurs in UTF-8";
		return 0;
	}
	for (size_t k = 1; k <= need; k++) {
		if (k >= len || (s[k] & 0xC0) != 0x80) {
			static const char *const trunc[] = { "",
				"truncated 2-byte sequence",
				"truncated 3-byte sequence",
				"truncated 4-byte sequence" };
			*why = trunc[need];
			return 0;
		}
		v = v << 6 | (s[k] & 0x3F);
	}
	*why = (need == 2 && v < 0x800) || (need == 3 && v < 0x10000) ?
	    "overlong encoding" : v >= 0xD800 && v <= 0xDFFF ?
	    "surrogate code point" : v > 0x10FFFF ?
	    "code point above U+10FFFF" : NULL;
	if (*why != NULL)
		return 0;
	*cp = v;
	return need + 1;
}

int
cdx_utf8_valid(const unsigned char *s, size_t len)
{
	uint32_t cp;
	const char *why;
	for (size_t i = 0, n; i < len; i += n)
		if ((n = cdx_utf8_next(s + i, len - i, &cp, &why)) == 0)
			return 0;
	return 1;
}
