/*
 * The query syntax of the command line and the web page (docs/CLI.md):
 *   QUERY := TERM { (" + " | " - ") TERM }
 *   TERM  := [WEIGHT ":"] SOURCE
 *   SOURCE:= "img:" FILE | "@" FILE | "path:" PATH | "id:" DIGITS |
 *            "learned:" NAME | TEXT
 */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/query.h"

static int
is_sep(const char *s, size_t i, size_t len)
{
	return i >= 1 && i + 1 < len && s[i - 1] == ' ' && s[i + 1] == ' ' &&
	    (s[i] == '+' || s[i] == '-');
}

/* Length of a weight "[+-]digits[.digits]" or ".digits" at s that is
 * followed by ':', or 0. */
static size_t
weight_len(const char *s, size_t len)
{
	size_t i = 0, digits = 0;
	if (i < len && (s[i] == '+' || s[i] == '-'))
		i++;
	while (i < len && isdigit((unsigned char)s[i]))
		i++, digits++;
	if (i < len && s[i] == '.') {
		i++;
		while (i < len && isdigit((unsigned char)s[i]))
			i++, digits++;
	}
	if (digits == 0 || i >= len || s[i] != ':')
		return 0;
	return i;
}

static void
trim(const char **s, size_t *len)
{
	while (*len > 0 && isspace((unsigned char)**s))
		(*s)++, (*len)--;
	while (*len > 0 && isspace((unsigned char)(*s)[*len - 1]))
		(*len)--;
}

static int
has_prefix(const char *s, size_t len, const char *p)
{
	size_t n = strlen(p);
	return len >= n && memcmp(s, p, n) == 0;
}

/* Parses one trimmed, non-empty term into *t, copying its string to *pool
 * (advanced past the copy). */
static int
parse_term(const char *s, size_t len, float sign, cdx_term *t, char **pool,
    cdx_error *err)
{
	size_t wl = weight_len(s, len);
	double w = 1.0;
	const char *src;
	size_t srclen;

	memset(t, 0, sizeof(*t));
	if (wl > 0) {
		char buf[64];
		if (wl >= sizeof(buf))
			return cdx_error_set(err, CDX_EINVAL, "weight '%.*s' is too long",
			    (int)wl, s);
		memcpy(buf, s, wl);
		buf[wl] = '\0';
		w = strtod(buf, NULL);
		if ((float)w == 0.0f)   /* 1e-47 too: the term keeps a float */
			return cdx_error_set(err, CDX_EINVAL, "term '%.*s': a weight of 0 "
			    "has no effect", (int)len, s);
		if (!(w >= -1e6 && w <= 1e6))
			return cdx_error_set(err, CDX_EINVAL, "weight %s is out of range "
			    "(at most 1e6)", buf);
		s += wl + 1;
		len -= wl + 1;
		trim(&s, &len);
		if (len == 0)
			return cdx_error_set(err, CDX_EINVAL, "weight %.*s: nothing after "
			    "the ':'", (int)wl, s - wl - 1);
	}
	t->weight = (float)(sign * w);
	if (has_prefix(s, len, "img:") || has_prefix(s, len, "@")) {
		size_t skip = s[0] == '@' ? 1 : 4;
		t->kind = CDX_TERM_FILE;
		src = s + skip;
		srclen = len - skip;
	} else if (has_prefix(s, len, "path:")) {
		t->kind = CDX_TERM_PATH;
		src = s + 5;
		srclen = len - 5;
	} else if (has_prefix(s, len, "learned:")) {
		/* the name's rule is the daemon's (classify/classify.h) */
		t->kind = CDX_TERM_LEARNED;
		src = s + 8;
		srclen = len - 8;
		if (srclen == 0)
			return cdx_error_set(err, CDX_EINVAL, "'%.*s' names no "
			    "classifier", (int)len, s);
	} else if (has_prefix(s, len, "id:")) {
		char buf[32];
		size_t n = len - 3;
		char *end;
		if (n == 0 || n >= sizeof(buf))
			return cdx_error_set(err, CDX_EINVAL, "'%.*s' is not an image id",
			    (int)len, s);
		memcpy(buf, s + 3, n);
		buf[n] = '\0';
		for (size_t i = 0; i < n; i++)
			if (!isdigit((unsigned char)buf[i]))
				return cdx_error_set(err, CDX_EINVAL, "'%.*s' is not an image "
				    "id", (int)len, s);
		errno = 0;
		unsigned long long id = strtoull(buf, &end, 10);
		if (errno != 0 || *end != '\0' || (uint64_t)id != id)
			return cdx_error_set(err, CDX_EINVAL, "'%.*s' is not an image id",
			    (int)len, s);
		t->kind = CDX_TERM_ID;
		t->id = (uint64_t)id;
		return 0;
	} else {
		t->kind = CDX_TERM_TEXT;
		src = s;
		srclen = len;
	}
	if (srclen == 0)
		return cdx_error_set(err, CDX_EINVAL, "'%.*s' names no file", (int)len, s);
	memcpy(*pool, src, srclen);
	(*pool)[srclen] = '\0';
	t->text = *pool;
	*pool += srclen + 1;
	return 0;
}

int
cdx_query_syntax_parse(const char *query, cdx_terms **out, cdx_error *err)
{
	const char *s = query;
	size_t len, n_max = 1;
	float sign = 1.0f;
	cdx_terms *ts;
	char *pool;
	int rc;

	if (query == NULL || out == NULL)
		return cdx_error_set(err, CDX_EINVAL, "no query");
	len = strlen(s);
	trim(&s, &len);
	if (len == 0)
		return cdx_error_set(err, CDX_EINVAL, "the query is empty");
	if (len >= 2 && (s[0] == '+' || s[0] == '-') && s[1] == ' ') {
		sign = s[0] == '-' ? -1.0f : 1.0f;
		s += 2;
		len -= 2;
	}
	for (size_t i = 0; i < len; i++)
		n_max += is_sep(s, i, len);

	ts = malloc(sizeof(*ts) + n_max * sizeof(cdx_term) + len + n_max);
	if (ts == NULL)
		return cdx_error_set(err, CDX_ENOMEM, "out of memory");
	ts->n = 0;
	ts->terms = (cdx_term *)(ts + 1);
	pool = (char *)(ts->terms + n_max);

	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && !is_sep(s, i, len))
			continue;
		const char *t = s + start;
		size_t end = i < len ? i - 1 : len;   /* i - 1: the space before */
		size_t tl = end > start ? end - start : 0;
		trim(&t, &tl);
		if (tl == 0) {
			rc = cdx_error_set(err, CDX_EINVAL, "empty term in '%s' (a term "
			    "is missing next to a ' + ' or ' - ')", query);
			goto out_free_terms;
		}
		rc = parse_term(t, tl, sign, &ts->terms[ts->n], &pool, err);
		if (rc != 0)
			goto out_free_terms;
		ts->n++;
		if (i < len) {
			sign = s[i] == '-' ? -1.0f : 1.0f;
			start = i + 2;
			i++;
		}
	}
	*out = ts;
	return 0;

out_free_terms:
	free(ts);
	return rc;
}

void
cdx_terms_free(cdx_terms *t)
{
	free(t);
}
