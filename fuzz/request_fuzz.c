/*
 * request_fuzz - libFuzzer target for the daemon's request path, without a
 * model, a store or a socket.  The first byte of the input picks what the
 * rest is:
 *
 *   0  a request body: request_parse() (strict JSON, NUL, duplicate keys,
 *      token, v, op) from each origin, then the fields every search reads
 *      (srv_parse_search_opts) and an "image" (srv_image_bytes); requests
 *      whose op needs neither model nor store ("parse", an unknown op, or
 *      one refused by its envelope) go through srv_dispatch() whole, as
 *      tests/daemon_dispatch.c's fixture does
 *   1  base64 text for srv_base64_decode() (the "image" field's decoder)
 *   2  a URI for web_parse_id() ("/thumb/<id>[?v=N]", "/image/<id>";
 *      the prefixes "/thumb" and "/image", as web.c passes them)
 *   3  "ADDR\nHOST\nORIGIN\nAUTH" for access.h: access_is_loopback,
 *      access_origin_of_url, access_http_allowed, access_bearer and
 *      access_token_ok (a missing line is an absent header)
 *
 * Built and run by make fuzz (with build-fuzz's daemon archives); then
 *   build-fuzz/request_fuzz -max_len=65536 fuzz/request_seeds  Checks: every
 * reply is one JSON object with "v": 1 and a boolean "ok", answered once;
 * a refused request names a code of common/proto.h's table; a request that
 * passed request_parse has text cJSON accepts strictly and holds no
 * "\u0000"; base64 output stays in bounds; an id parsed by web_parse_id
 * is the URI's own digits; a loopback Host is never a name that only
 * starts like one.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/proto.h"
#include "daemon/access.h"
#include "daemon/dispatch.h"
#include "daemon/request.h"
#include "daemon/srv_internal.h"
#include "daemon/web.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define MAX_INPUT ((size_t)1 << 16)

static srv_config cfg;
static clip_model_info info;
static srv s;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	srv_config_init(&cfg);
	cfg.token = strdup("s3cret");
	cfg.max_image_bytes = 4096;
	info.embed_dim = 4;
	info.context_len = 8;
	snprintf(info.name, sizeof(info.name), "fake");
	s.cfg = &cfg;
	s.info = &info;
	pthread_mutex_init(&s.mu, NULL);
	roots_init(&s.roots, NULL, NULL);
	roots_add(&s.roots, "/tmp");
	return 0;
}

struct reply {
	char *body;
	int status, calls;
};

static void
on_reply(void *user, char *reply, size_t len, int status)
{
	struct reply *r = user;
	if (reply == NULL || strlen(reply) != len)
		abort();
	r->body = reply;
	r->status = status;
	r->calls++;
}

static void
check_reply(const struct reply *r)
{
	cJSON *j = cJSON_Parse(r->body);
	const cJSON *v, *ok, *e, *code;

	if (r->calls != 1 || j == NULL || !cJSON_IsObject(j))
		abort();
	v = cJSON_GetObjectItemCaseSensitive(j, "v");
	ok = cJSON_GetObjectItemCaseSensitive(j, "ok");
	if (!cJSON_IsNumber(v) || v->valuedouble != 1 || !cJSON_IsBool(ok))
		abort();
	if (cJSON_IsFalse(ok)) {
		e = cJSON_GetObjectItemCaseSensitive(j, "error");
		code = cJSON_GetObjectItemCaseSensitive(e, "code");
		const cdx_proto_err *pe = cJSON_IsString(code) ?
		    cdx_proto_err_by_name(code->valuestring) : NULL;
		if (pe == NULL || pe->http_status != r->status)
			abort();
	} else if (r->status != 200) {
		abort();
	}
	cJSON_Delete(j);
}

static srv_job *
new_job(const uint8_t *d, size_t n, int origin, struct reply *r)
{
	srv_job *job = calloc(1, sizeof(*job));
	if (job == NULL)
		return NULL;
	/* exactly n bytes, no NUL after them, so ASan sees any over-read */
	if ((job->req = malloc(n > 0 ? n : 1)) == NULL) {
		free(job);
		return NULL;
	}
	memcpy(job->req, d, n);
	job->len = n;
	job->origin = origin;
	job->fn = on_reply;
	job->user = r;
	return job;
}

static int
known_op(const char *op)
{
	static const char *const ops[] = { "search", "similar", "embed", "add",
	    "remove", "status", "failures", "dupes", "check", "retrieve" };
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (strcmp(op, ops[i]) == 0)
			return 1;
	return 0;
}

/* 1 when t holds the escape \u0000 (its backslash not itself escaped). */
static int
has_nul_escape(const char *t)
{
	for (const char *p = t; (p = strstr(p, "\\u0000")) != NULL; p++) {
		size_t at = (size_t)(p - t), bs = 1;
		while (bs <= at && t[at - bs] == '\\')
			bs++;
		if (bs % 2 == 1)
			return 1;
	}
	return 0;
}

static void
fuzz_request(const uint8_t *d, size_t n)
{
	static const int origins[] = { SRV_ORIGIN_LOCAL, SRV_ORIGIN_LOOPBACK,
	    SRV_ORIGIN_REMOTE };

	for (size_t o = 0; o < 3; o++) {
		struct reply r = { 0 };
		srv_job *job = new_job(d, n, origins[o], &r);
		if (job == NULL)
			return;
		srv_call c = { .s = &s, .job = job, .ecode = CDX_PROTO_INTERNAL };
		int rc = request_parse(&c, cfg.token);
		if (rc == 0) {
			/* what passed is strict JSON without a NUL in it */
			char *t = malloc(n + 1);
			if (t != NULL) {
				memcpy(t, d, n);
				t[n] = '\0';
				cJSON *j = memchr(d, 0, n) != NULL ? NULL :
				    cJSON_ParseWithOpts(t, NULL, 1);
				if (j == NULL || has_nul_escape(t))
					abort();
				cJSON_Delete(j);
				free(t);
			}
			srv_search_opts so = { 0 };
			(void)srv_parse_search_opts(&c, &so);
			const cJSON *img = cJSON_GetObjectItemCaseSensitive(c.req,
			    "image");
			if (cJSON_IsString(img)) {
				uint8_t *bytes = NULL;
				size_t len = 0;
				if (srv_image_bytes(&c, img, NULL, &bytes, &len) == 0 &&
				    len > cfg.max_image_bytes + 3)
					abort();
				free(bytes);
			}
		} else if (c.ecode == CDX_PROTO_INTERNAL ||
		    cdx_proto_err_get(c.ecode) == NULL) {
			abort();
		}
		int whole = rc != 0 || !known_op(c.op);
		cJSON_Delete(c.req);
		srv_job_free(job);
		if (!whole)
			continue;
		/* the whole dispatch: envelope errors, unknown ops, "parse" */
		if ((job = new_job(d, n, origins[o], &r)) == NULL)
			return;
		srv_dispatch(&s, NULL, job);
		check_reply(&r);
		free(r.body);
	}
}

static void
fuzz_base64(const uint8_t *d, size_t n)
{
	size_t cap = n / 4 * 3 + 3;
	/* the decoder's output bound, with ASan redzones right after it */
	uint8_t *out = malloc(cap);
	if (out == NULL)
		return;
	long got = srv_base64_decode((const char *)d, n, out);
	if (got < -1 || (got >= 0 && (size_t)got > cap))
		abort();
	free(out);
}

static void
fuzz_parse_id(const uint8_t *d, size_t n)
{
	static const char *const prefixes[] = { "/thumb", "/image" };
	char *uri = malloc(n + 1);
	if (uri == NULL)
		return;
	memcpy(uri, d, n);
	uri[n] = '\0';
	for (int k = 0; k < 2; k++) {
		uint64_t id = 0;
		int64_t v = -1;
		if (web_parse_id(uri, prefixes[k], &id, &v) != 0)
			continue;
		/* the id is the decimal number right after "<prefix>/" (leading
		 * zeros allowed), ending the path */
		size_t pl = strlen(prefixes[k]);
		char buf[32];
		snprintf(buf, sizeof(buf), "%llu", (unsigned long long)id);
		if (id == 0 || strncmp(uri, prefixes[k], pl) != 0 || uri[pl] != '/')
			abort();
		const char *digits = uri + pl + 1 + strspn(uri + pl + 1, "0");
		size_t nd = strlen(buf);
		if (strncmp(digits, buf, nd) != 0 ||
		    (digits[nd] != '\0' && digits[nd] != '?'))
			abort();
	}
	free(uri);
}

/* The next '\n'-terminated line of *p (NUL-terminated copy in buf), or
 * NULL when the input has no more lines. */
static const char *
next_line(const char **p, const char *end, char *buf, size_t cap)
{
	if (*p >= end)
		return NULL;
	const char *nl = memchr(*p, '\n', (size_t)(end - *p));
	size_t len = (size_t)((nl != NULL ? nl : end) - *p);
	if (len >= cap)
		len = cap - 1;
	memcpy(buf, *p, len);
	buf[len] = '\0';
	*p = nl != NULL ? nl + 1 : end;
	return buf;
}

static void
fuzz_access(const uint8_t *d, size_t n)
{
	static char addr[512], host[512], origin[512], auth[512];
	const char *p = (const char *)d, *end = p + n;
	const char *a = next_line(&p, end, addr, sizeof(addr));
	const char *h = next_line(&p, end, host, sizeof(host));
	const char *o = next_line(&p, end, origin, sizeof(origin));
	const char *z = next_line(&p, end, auth, sizeof(auth));

	if (a == NULL)
		return;
	int lb = access_is_loopback(a);
	int origin_of = access_origin_of_url(a);
	if (lb && origin_of != SRV_ORIGIN_LOOPBACK)
		abort();        /* --http: the same decision both ways */
	if (lb) {
		/* never a name that merely starts like a loopback address */
		if (strchr(a, '@') != NULL || strchr(a, ',') != NULL ||
		    strchr(a, ' ') != NULL || strchr(a, '/') != NULL)
			abort();
		char lower[16];
		size_t i;
		for (i = 0; i < sizeof(lower) - 1 && a[i] != '\0'; i++)
			lower[i] = (char)(a[i] | 0x20);
		lower[i] = '\0';
		if (a[0] != '[' && strncmp(lower, "localhost", 9) != 0 &&
		    strspn(a, "0123456789.:") != strlen(a))
			abort();
	}
	int allowed = access_http_allowed(a, h, o);
	if (allowed && lb && !access_is_loopback(h))
		abort();
	if (allowed && o != NULL && (h == NULL || strncmp(o, "http://", 7) != 0))
		abort();
	const char *tok = access_bearer(z);
	if (tok != NULL && (strncmp(z, "Bearer ", 7) != 0 || tok != z + 7))
		abort();
	if (access_token_ok(cfg.token, tok) != (tok != NULL &&
	    strcmp(tok, cfg.token) == 0))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > MAX_INPUT)
		return 0;
	switch (data[0] % 4) {
	case 0: fuzz_request(data + 1, size - 1); break;
	case 1: fuzz_base64(data + 1, size - 1); break;
	case 2: fuzz_parse_id(data + 1, size - 1); break;
	case 3: fuzz_access(data + 1, size - 1); break;
	}
	return 0;
}
