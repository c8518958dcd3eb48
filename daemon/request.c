/*
 * request.c - parsing and checking requests (see request.h).
 */
#include "daemon/request.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/access.h"

int
srv_fail(srv_call *c, enum cdx_proto_code code, const char *fmt, ...)
{
	va_list ap;
	c->ecode = code;
	va_start(ap, fmt);
	vsnprintf(c->emsg, sizeof(c->emsg), fmt, ap);
	va_end(ap);
	return -1;
}

int
srv_fail_cdx(srv_call *c, int rc, const cdx_error *err)
{
	return srv_fail(c, cdx_proto_code_of(rc), "%s",
	    err != NULL && err->code == rc ? err->msg : cdx_strerror(rc));
}

/* ---- strict JSON (RFC 8259) where cJSON is lenient ---- */

/* What scan_text found: the text's first fault, if any. */
enum scan_fault { SCAN_OK, SCAN_BAD_JSON, SCAN_NUL };

static int
is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

/* Length of the JSON number at t[0..n) (RFC 8259: -?(0|[1-9]d*)(.d+)?
 * ([eE][+-]?d+)?, not followed by another number character), or 0. */
static size_t
scan_number(const char *t, size_t n)
{
	size_t i = 0;

	if (i < n && t[i] == '-')
		i++;
	if (i < n && t[i] == '0')
		i++;
	else if (i < n && is_digit(t[i]))
		while (i < n && is_digit(t[i]))
			i++;
	else
		return 0;
	if (i < n && t[i] == '.') {
		if (++i >= n || !is_digit(t[i]))
			return 0;
		while (i < n && is_digit(t[i]))
			i++;
	}
	if (i < n && (t[i] == 'e' || t[i] == 'E')) {
		if (++i < n && (t[i] == '+' || t[i] == '-'))
			i++;
		if (i >= n || !is_digit(t[i]))
			return 0;
		while (i < n && is_digit(t[i]))
			i++;
	}
	if (i < n && (is_digit(t[i]) || t[i] == '.' || t[i] == 'e' ||
	    t[i] == 'E' || t[i] == '+' || t[i] == '-'))
		return 0;       /* "01", "1.2.3", "1e5e" */
	return i;
}

/* Checks the tokens of t[0..n) that cJSON accepts and JSON does not:
 * whitespace other than space, tab, CR and LF; numbers outside the JSON
 * grammar ("01", "1.", ".5", "+1", "1e", "0x1"); control characters
 * inside strings; words other than true, false and null.  Strings may not
 * hold a NUL, raw or as \u0000 (SCAN_NUL): cJSON's strings end at the
 * first one, so the daemon would read less than was sent.  The structure
 * (brackets, commas, string escapes) is left to cJSON. */
static enum scan_fault
scan_text(const char *t, size_t n)
{
	static const char *const words[] = { "true", "false", "null" };
	enum scan_fault fault = SCAN_OK;
	size_t i = 0;

	while (i < n) {
		char ch = t[i];
		if (ch == '"') {
			for (i++; i < n && t[i] != '"'; i++) {
				if ((unsigned char)t[i] < 0x20) {
					if (t[i] != '\0')
						return SCAN_BAD_JSON;
					fault = SCAN_NUL;
				} else if (t[i] == '\\' && ++i < n && t[i] == 'u' &&
				    n - i > 4 && memcmp(t + i + 1, "0000", 4) == 0) {
					fault = SCAN_NUL;
				}
			}
			i++;    /* the closing quote (an open string: cJSON's) */
		} else if (strchr(" \t\r\n{}[]:,", ch) != NULL && ch != '\0') {
			i++;
		} else if (ch == '-' || is_digit(ch)) {
			size_t len = scan_number(t + i, n - i);
			if (len == 0)
				return SCAN_BAD_JSON;
			i += len;
		} else {
			size_t k;
			for (k = 0; k < 3; k++) {
				size_t wl = strlen(words[k]);
				if (n - i >= wl && memcmp(t + i, words[k], wl) == 0) {
					i += wl;
					break;
				}
			}
			if (k == 3)
				return SCAN_BAD_JSON;
		}
	}
	return fault;
}

static int
key_cmp(const void *a, const void *b)
{
	return strcmp((*(const cJSON *const *)a)->string,
	    (*(const cJSON *const *)b)->string);
}

/* 0 when no object in the tree under v has a key twice (compared as
 * sorted, so a large object costs n log n), 1 when one does, -1 when out
 * of memory.  *dup gets the key. */
static int
find_duplicate_key(const cJSON *v, const char **dup)
{
	const cJSON *x;
	size_t n = 0;
	int rc = 0;

	for (x = v->child; x != NULL; x = x->next) {
		if ((rc = find_duplicate_key(x, dup)) != 0)
			return rc;
		n++;
	}
	if (!cJSON_IsObject(v) || n < 2)
		return 0;
	const cJSON **keys = malloc(n * sizeof(*keys));
	if (keys == NULL)
		return -1;
	n = 0;
	for (x = v->child; x != NULL; x = x->next)
		keys[n++] = x;
	qsort(keys, n, sizeof(*keys), key_cmp);
	for (size_t i = 1; i < n && rc == 0; i++)
		if (strcmp(keys[i - 1]->string, keys[i]->string) == 0) {
			*dup = keys[i]->string;
			rc = 1;
		}
	free(keys);
	return rc;
}

/* Parses the job's bytes strictly into c->req: bad_json for what is not
 * one JSON object (trailing bytes other than whitespace included). */
static int
parse_json(srv_call *c, enum scan_fault *fault)
{
	const char *t = c->job->req, *end = NULL;
	size_t n = c->job->len;

	if ((*fault = scan_text(t, n)) == SCAN_BAD_JSON)
		return srv_fail(c, CDX_PROTO_BAD_JSON, "the request is not JSON "
		    "(RFC 8259)");
	/* cJSON_ParseWithOpts's require_null_terminated, for bytes that are
	 * not NUL-terminated: nothing but whitespace may follow the value. */
	c->req = cJSON_ParseWithLengthOpts(t, n, &end, 0);
	if (c->req != NULL)
		while (end < t + n && strchr(" \t\r\n", *end) != NULL &&
		    *end != '\0')
			end++;
	if (c->req == NULL || end != t + n || !cJSON_IsObject(c->req))
		return srv_fail(c, CDX_PROTO_BAD_JSON, "the request is not a JSON "
		    "object");
	return 0;
}

static int
check_token(srv_call *c, const char *want)
{
	const cJSON *tok = cJSON_GetObjectItemCaseSensitive(c->req, "token");
	const char *got = c->job->auth;

	if (!access_token_needed(c->job->origin, want))
		return 0;
	if (got == NULL && cJSON_IsString(tok))
		got = tok->valuestring;
	if (!access_token_ok(want, got))
		return srv_fail(c, CDX_PROTO_UNAUTHORIZED, "a valid token is "
		    "required");
	return 0;
}

int
request_parse(srv_call *c, const char *token)
{
	srv_job *job = c->job;
	const cJSON *v, *op;
	enum scan_fault fault;
	const char *dup = NULL;
	int rc;

	if (job->req == NULL)
		return srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
	if (parse_json(c, &fault) != 0)
		return -1;
	c->tag = cJSON_GetObjectItemCaseSensitive(c->req, "tag");
	if (c->tag != NULL && job->tag == NULL &&
	    (job->tag = cJSON_Duplicate(c->tag, 1)) == NULL)
		return srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
	if (fault == SCAN_NUL)
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "a string in the request "
		    "contains a NUL character");
	if ((rc = find_duplicate_key(c->req, &dup)) < 0)
		return srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
	if (rc > 0)
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "the key '%.64s' occurs "
		    "twice in one object", dup);
	if (check_token(c, token) != 0)
		return -1;
	v = cJSON_GetObjectItemCaseSensitive(c->req, "v");
	if (v != NULL && !(cJSON_IsNumber(v) && v->valuedouble == 1))
		return srv_fail(c, CDX_PROTO_UNSUPPORTED_VERSION, "this daemon "
		    "speaks protocol version 1");
	op = cJSON_GetObjectItemCaseSensitive(c->req, "op");
	if (!cJSON_IsString(op))
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "the request needs an "
		    "'op' string");
	c->op = op->valuestring;
	return 0;
}

int
srv_get_int(srv_call *c, const cJSON *obj, const char *name, long lo, long hi,
    const char *toobig, long *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
	if (v == NULL || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'%s' must be an "
		    "integer", name);
	if (v->valuedouble > (double)hi && toobig != NULL)
		return srv_fail(c, CDX_PROTO_TOO_LARGE, "'%s' is %.0f; %s", name,
		    v->valuedouble, toobig);
	if (v->valuedouble < (double)lo || v->valuedouble > (double)hi)
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'%s' must be in "
		    "%ld..%ld", name, lo, hi);
	*out = (long)v->valuedouble;
	return 0;
}

int
srv_get_num(srv_call *c, const cJSON *obj, const char *name, double lo,
    double hi, int *present, double *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
	if (v == NULL || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) ||
	    v->valuedouble < lo || v->valuedouble > hi)
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'%s' must be a number "
		    "in %g..%g", name, lo, hi);
	*out = v->valuedouble;
	if (present != NULL)
		*present = 1;
	return 0;
}

int
srv_get_str(srv_call *c, const cJSON *obj, const char *name,
    const char **out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
	if (v == NULL || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsString(v))
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'%s' must be a string",
		    name);
	*out = v->valuestring;
	return 0;
}

int
srv_get_bool(const cJSON *obj, const char *name)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, name));
}

/* ---- base64 fields ---- */

static int
b64_value(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z') return ch - 'A';
	if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9') return ch - '0' + 52;
	if (ch == '+' || ch == '-') return 62;
	if (ch == '/' || ch == '_') return 63;
	return -1;
}

long
srv_base64_decode(const char *in, size_t len, uint8_t *out)
{
	uint32_t acc = 0;
	int bits = 0, pad = 0;
	long n = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)in[i];
		if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t')
			continue;
		if (ch == '=') {
			pad++;
			continue;
		}
		int v = b64_value(ch);
		if (v < 0 || pad > 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (uint8_t)(acc >> bits);
		}
	}
	if (pad > 2 || bits >= 6)
		return -1;
	return n;
}

void
srv_reply_ok(srv_call *c, cJSON *r)
{
	reply_ok(c->job, r);
	c->job = NULL;
}
