/*
 * daemon/dispatch.c's operation table and request.c's envelope, without a
 * model or a store: a daemon state with a model description only, jobs
 * handed straight to srv_dispatch(), and every reply checked for its
 * envelope (v, ok, error code and message, HTTP status from
 * common/proto.h's table) and its tag.  Each case stops before an
 * operation would encode or read the store.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/proto.h"
#include "daemon/dispatch.h"
#include "daemon/srv_internal.h"

typedef struct fixture {
	srv_config cfg;
	clip_model_info info;
	srv s;
} fixture;

struct reply {
	char *body;
	int status;
	int calls;
};

static void
on_reply(void *user, char *reply, size_t len, int http_status)
{
	struct reply *r = user;
	assert_int_equal(strlen(reply), len);
	r->body = reply;
	r->status = http_status;
	r->calls++;
}

static int
setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	srv_config_init(&f->cfg);
	f->info.embed_dim = 4;
	f->info.context_len = 8;
	snprintf(f->info.name, sizeof(f->info.name), "fake");
	f->s.cfg = &f->cfg;
	f->s.info = &f->info;
	pthread_mutex_init(&f->s.mu, NULL);
	roots_init(&f->s.roots, NULL, NULL);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	fixture *f = *state;
	roots_free(&f->s.roots);
	pthread_mutex_destroy(&f->s.mu);
	srv_config_free(&f->cfg);
	free(f);
	return 0;
}

/* Dispatches json (from origin, with an HTTP bearer token auth or NULL)
 * and returns the parsed reply; *status gets its HTTP status. */
static cJSON *
call_len(fixture *f, const char *json, size_t len, int origin,
    const char *auth, int *status)
{
	struct reply r = { 0 };
	srv_job *job = calloc(1, sizeof(*job));
	cJSON *out;

	assert_non_null(job);
	/* exactly len bytes, no NUL after them: the parser reads no further */
	assert_non_null(job->req = malloc(len > 0 ? len : 1));
	memcpy(job->req, json, len);
	job->len = len;
	job->origin = origin;
	job->auth = auth ? strdup(auth) : NULL;
	job->fn = on_reply;
	job->user = &r;
	srv_dispatch(&f->s, NULL, job);
	assert_int_equal(r.calls, 1);   /* answered once, synchronously */
	out = cJSON_Parse(r.body);
	if (out == NULL)
		fail_msg("not JSON: %s", r.body);
	free(r.body);
	*status = r.status;
	return out;
}

static cJSON *
call(fixture *f, const char *json, int origin, const char *auth,
    int *status)
{
	return call_len(f, json, strlen(json), origin, auth, status);
}

/* Checks an error reply: its code, its HTTP status (the table's), a
 * message, and the tag (tag: the expected tag as JSON text, or NULL for
 * none). */
static void
expect_error_len(fixture *f, const char *json, size_t len, int origin,
    const char *auth, enum cdx_proto_code code, const char *tag)
{
	int status;
	cJSON *r = call_len(f, json, len, origin, auth, &status);
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(r, "error");
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(r, "tag");
	const cdx_proto_err *want = cdx_proto_err_get(code);

	if (!cJSON_IsString(c) || strcmp(c->valuestring, want->name) != 0)
		fail_msg("%s: code %s, not %s", json, cJSON_IsString(c) ?
		    c->valuestring : "(none)", want->name);
	assert_int_equal(status, want->http_status);
	assert_true(cJSON_IsString(m) && m->valuestring[0] != '\0');
	assert_int_equal(cJSON_GetObjectItemCaseSensitive(r, "v")->valueint, 1);
	assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r, "ok")));
	if (tag == NULL) {
		if (t != NULL)
			fail_msg("%s: a tag in the reply", json);
	} else {
		cJSON *want_tag = cJSON_Parse(tag);
		if (t == NULL || !cJSON_Compare(t, want_tag, 1))
			fail_msg("%s: tag not echoed", json);
		cJSON_Delete(want_tag);
	}
	cJSON_Delete(r);
}

static void
expect_error(fixture *f, const char *json, int origin, const char *auth,
    enum cdx_proto_code code, const char *tag)
{
	expect_error_len(f, json, strlen(json), origin, auth, code, tag);
}

/* The envelope: JSON, v, op; the tag comes back with every error once the
 * request parsed, whatever its type. */
static void
test_envelope(void **state)
{
	fixture *f = *state;
	const int L = SRV_ORIGIN_LOCAL;

	expect_error(f, "{", L, NULL, CDX_PROTO_BAD_JSON, NULL);
	expect_error(f, "[1,2]", L, NULL, CDX_PROTO_BAD_JSON, NULL);
	expect_error(f, "\"op\"", L, NULL, CDX_PROTO_BAD_JSON, NULL);
	expect_error(f, "{\"op\":\"nope\",\"tag\":7}", L, NULL,
	    CDX_PROTO_UNKNOWN_OP, "7");
	expect_error(f, "{\"op\":\"status\",\"v\":2,\"tag\":\"x\"}", L, NULL,
	    CDX_PROTO_UNSUPPORTED_VERSION, "\"x\"");
	expect_error(f, "{\"op\":\"status\",\"v\":\"1\"}", L, NULL,
	    CDX_PROTO_UNSUPPORTED_VERSION, NULL);
	expect_error(f, "{\"tag\":{\"a\":[1,null]}}", L, NULL,
	    CDX_PROTO_BAD_REQUEST, "{\"a\":[1,null]}");
	expect_error(f, "{\"op\":5,\"tag\":null}", L, NULL,
	    CDX_PROTO_BAD_REQUEST, "null");
}

/* Strict JSON (issue 14): what cJSON accepts and RFC 8259 does not is
 * bad_json, with no tag (the request never parsed). */
static void
test_strict_json(void **state)
{
	fixture *f = *state;
	static const char *const bad[] = {
		/* trailing bytes after the value */
		"{\"op\":\"status\"}xyz",
		"{\"op\":\"status\"} x",
		"{\"op\":\"status\"}{}",
		"{\"op\":\"status\"},",
		/* numbers outside the grammar */
		"{\"op\":\"nope\",\"k\":01}",
		"{\"op\":\"nope\",\"k\":-01}",
		"{\"op\":\"nope\",\"k\":1.}",
		"{\"op\":\"nope\",\"k\":+1}",
		"{\"op\":\"nope\",\"k\":.5}",
		"{\"op\":\"nope\",\"k\":1e}",
		"{\"op\":\"nope\",\"k\":1e+}",
		"{\"op\":\"nope\",\"k\":0x10}",
		"{\"op\":\"nope\",\"k\":-}",
		"{\"op\":\"nope\",\"k\":1.5.2}",
		"{\"op\":\"nope\",\"k\":[1,-.5]}",
		"{\"op\":\"nope\",\"k\":NaN}",
		"{\"op\":\"nope\",\"k\":Infinity}",
		"{\"op\":\"nope\",\"k\":tru}",
		/* control characters: raw in a string, or as whitespace */
		"{\"op\":\"no\x01pe\"}",
		"{\"op\":\"no\npe\"}",
		"\x01{\"op\":\"nope\"}",
		"{\"op\":\x0b\"nope\"}",
		"{\"op\":\"nope\"}\x0c",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_error(f, bad[i], SRV_ORIGIN_LOCAL, NULL, CDX_PROTO_BAD_JSON,
		    NULL);
	/* a NUL byte after the object is not its end */
	static const char nul_after[] = "{\"op\":\"nope\"}\0xyz";
	expect_error_len(f, nul_after, sizeof(nul_after) - 1, SRV_ORIGIN_LOCAL,
	    NULL, CDX_PROTO_BAD_JSON, NULL);
	/* what JSON allows goes on to the op (unknown here) */
	static const char *const good[] = {
		"{\"op\":\"nope\",\"tag\":1} \t\r\n",
		" \n{\"op\":\"nope\",\"tag\":1}",
		"{\"op\":\"nope\",\"tag\":1,\"a\":[-0,0,1.5e-3,1E+2,0.0,-12,"
		    "10,3e7,true,false,null]}",
		"{\"op\":\"nope\",\"tag\":1,\"a\":\"\\\\u0000 \\u0001 "
		    "\\\" \u00e9\"}",
		"{\"op\":\"nope\",\"tag\":1,\"a\":{\"x\":1,\"y\":{\"x\":1}},"
		    "\"b\":[{\"x\":1},{\"x\":2}]}",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		expect_error(f, good[i], SRV_ORIGIN_LOCAL, NULL,
		    CDX_PROTO_UNKNOWN_OP, "1");
}

/* A NUL in any string, key or value, at any depth, and a key twice in one
 * object are bad_request (issue 14): the daemon reads strings up to their
 * first NUL, and a duplicate's second value would be ignored. */
static void
test_nul_and_duplicates(void **state)
{
	fixture *f = *state;
	const int L = SRV_ORIGIN_LOCAL;
	static const char *const bad[] = {
		"{\"op\":\"status\\u0000x\",\"tag\":1}",
		"{\"op\":\"status\",\"tag\":1,\"x\\u0000y\":1}",
		"{\"op\":\"status\",\"tag\":1,\"a\":{\"b\":[\"\\u0000\"]}}",
		"{\"op\":\"add\",\"tag\":1,\"path\":\"/tmp\\u0000/x.jpg\"}",
		"{\"op\":\"search\",\"tag\":1,\"text\":\"cat\\u0000dog\"}",
		"{\"op\":\"status\",\"op\":\"nope\",\"tag\":1}",
		"{\"op\":\"status\",\"tag\":1,\"a\":[{\"x\":1,\"x\":2}]}",
		("{\"op\":\"status\",\"tag\":1,\"k\":1,\"a\":2,\"b\":3,"
		    "\"c\":4,\"k\":5}"),
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_error(f, bad[i], L, NULL, CDX_PROTO_BAD_REQUEST, "1");
	/* a raw NUL byte inside a string */
	static const char raw[] = "{\"op\":\"status\",\"tag\":1,\"a\":\"x\0y\"}";
	expect_error_len(f, raw, sizeof(raw) - 1, L, NULL,
	    CDX_PROTO_BAD_REQUEST, "1");

	/* remove: "<root>\u0000/x.jpg" read as "<root>" removed the whole
	 * root; it is refused before the operation runs */
	char dir[] = "/tmp/daemon_dispatch_XXXXXX", json[PATH_MAX + 96];
	assert_non_null(mkdtemp(dir));
	assert_int_equal(roots_add(&f->s.roots, dir), 0);
	snprintf(json, sizeof(json), "{\"op\":\"remove\",\"path\":"
	    "\"%s\\u0000/x.jpg\",\"tag\":5}", dir);
	expect_error(f, json, L, NULL, CDX_PROTO_BAD_REQUEST, "5");
	assert_true(roots_contains(&f->s.roots, dir));
	rmdir(dir);

	/* the token: "TOKEN\u0000junk" is not TOKEN */
	f->cfg.token = strdup("s3cret");
	expect_error(f, "{\"op\":\"nope\",\"tag\":1,\"token\":"
	    "\"s3cret\\u0000junk\"}", SRV_ORIGIN_REMOTE, NULL,
	    CDX_PROTO_BAD_REQUEST, "1");
	expect_error(f, "{\"op\":\"nope\",\"tag\":1,\"token\":\"s3cret\","
	    "\"token\":\"x\"}", SRV_ORIGIN_REMOTE, NULL,
	    CDX_PROTO_BAD_REQUEST, "1");
	expect_error(f, "{\"op\":\"nope\",\"tag\":1,\"token\":\"s3cret\"}",
	    SRV_ORIGIN_REMOTE, NULL, CDX_PROTO_UNKNOWN_OP, "1");
}

/* The token: needed from a remote origin only; an HTTP bearer token wins
 * over the request's "token" field. */
static void
test_token(void **state)
{
	fixture *f = *state;
	const int R = SRV_ORIGIN_REMOTE;
	const char *nope = "{\"op\":\"nope\",\"tag\":1}";

	f->cfg.token = strdup("s3cret");
	expect_error(f, nope, R, NULL, CDX_PROTO_UNAUTHORIZED, "1");
	expect_error(f, "{\"op\":\"nope\",\"tag\":1,\"token\":\"wrong\"}", R,
	    NULL, CDX_PROTO_UNAUTHORIZED, "1");
	expect_error(f, nope, R, "wrong", CDX_PROTO_UNAUTHORIZED, "1");
	expect_error(f, "{\"op\":\"nope\",\"tag\":1,\"token\":\"s3cret\"}", R,
	    "wrong", CDX_PROTO_UNAUTHORIZED, "1");
	/* past the token: the op is looked up */
	expect_error(f, "{\"op\":\"nope\",\"tag\":1,\"token\":\"s3cret\"}", R,
	    NULL, CDX_PROTO_UNKNOWN_OP, "1");
	expect_error(f, nope, R, "s3cret", CDX_PROTO_UNKNOWN_OP, "1");
	expect_error(f, nope, SRV_ORIGIN_LOOPBACK, NULL, CDX_PROTO_UNKNOWN_OP,
	    "1");
	expect_error(f, nope, SRV_ORIGIN_LOCAL, NULL, CDX_PROTO_UNKNOWN_OP, "1");
	/* checked before the version */
	expect_error(f, "{\"op\":\"status\",\"v\":9}", R, NULL,
	    CDX_PROTO_UNAUTHORIZED, NULL);
}

/* Operations' fields: missing or wrong ones get the documented codes. */
static void
test_fields(void **state)
{
	fixture *f = *state;
	const int L = SRV_ORIGIN_LOCAL;
	static const struct {
		const char *json;
		enum cdx_proto_code code;
	} cases[] = {
		{ "{\"op\":\"add\",\"tag\":2}", CDX_PROTO_BAD_REQUEST },
		{ "{\"op\":\"add\",\"path\":7,\"tag\":2}", CDX_PROTO_BAD_REQUEST },
		{ "{\"op\":\"add\",\"path\":\"rel/x\",\"tag\":2}",
		    CDX_PROTO_BAD_REQUEST },
		{ "{\"op\":\"add\",\"path\":\"/nowhere/at/all\",\"tag\":2}",
		    CDX_PROTO_NOT_FOUND },
		{ "{\"op\":\"remove\",\"tag\":2}", CDX_PROTO_BAD_REQUEST },
		{ "{\"op\":\"remove\",\"path\":\"x\",\"tag\":2}",
		    CDX_PROTO_BAD_REQUEST },
		{ "{\"op\":\"remove\",\"path\":\"/a/../b\",\"tag\":2}",
		    CDX_PROTO_BAD_REQUEST },
		{ "{\"op\":\"remove\",\"path\":\"/nowhere\",\"tag\":2}",
		    CDX_PROTO_FORBIDDEN },
		{ "{\"op\":\"search\",\"tag\":2}", CDX_PROTO_BAD_REQUEST },
		{ "{\"op\":\"search\",\"text\":5,\"tag\":2}",
		    CDX_PROTO_BAD_REQUEST },
		{ "{\"op\":\"search\",\"text\":\"a\",\"id\":1,\"tag\":2}",
		    CDX_PROTO_BAD_REQUEST },
		{ "{\"op\":\"search\",\"terms\":[],\"tag\":2}",
		    CDX_PROTO_BAD_REQUEST },
		{ "{\"op\":\"search\",\"terms\":[{},{},{},{},{},{},{},{},{},{},{},"
		    "{},{},{},{},{},{}],\"tag\":2}", CDX_PROTO_TOO_LARGE },
		{ "{\"op\":\"search\",\"text\":\"a\",\"k\":0,\"tag\":2}",
		    CDX_PROTO_BAD_REQUEST },
		{ "{\"op\":\"search\",\"text\":\"a\",\"k\":1.5,\"tag\":2}",
		    CDX_PROTO_BAD_REQUEST },
		{ "{\"op\":\"search\",\"text\":\"a\",\"k\":100000,\"tag\":2}",
		    CDX_PROTO_TOO_LARGE },
		{ "{\"op\":\"search\",\"text\":\"a\",\"offset\":9999,\"k\":10,"
		    "\"tag\":2}", CDX_PROTO_TOO_LARGE },
		{ "{\"op\":\"search\",\"text\":\"a\",\"min_score\":2,\"tag\":2}",
		    CDX_PROTO_BAD_REQUEST },
		{ "{\"op\":\"search\",\"text\":\"a\",\"min_prob\":0.5,\"tag\":2}",
		    CDX_PROTO_BAD_REQUEST },    /* not a sigmoid model */
		{ "{\"op\":\"search\",\"text\":\"a\",\"filter\":3,\"tag\":2}",
		    CDX_PROTO_BAD_REQUEST },
		{ "{\"op\":\"search\",\"text\":\"a\",\"filter\":{\"time\":\"x\"},"
		    "\"tag\":2}", CDX_PROTO_BAD_REQUEST },
		{ "{\"op\":\"similar\",\"tag\":2}", CDX_PROTO_BAD_REQUEST },
		{ "{\"op\":\"embed\",\"tag\":2}", CDX_PROTO_BAD_REQUEST },
		{ "{\"op\":\"failures\",\"limit\":-1,\"tag\":2}",
		    CDX_PROTO_BAD_REQUEST },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_error(f, cases[i].json, L, NULL, cases[i].code, "2");
}

/* "add" with "wait" hands the job to the indexer, which answers it later;
 * its errors carry the tag too (here the indexer is not running). */
static void
test_add_wait_keeps_tag(void **state)
{
	fixture *f = *state;
	char json[PATH_MAX + 96], dir[] = "/tmp/daemon_dispatch_XXXXXX";

	assert_non_null(mkdtemp(dir));
	snprintf(json, sizeof(json), "{\"op\":\"add\",\"path\":\"%s\","
	    "\"wait\":true,\"tag\":{\"n\":42}}", dir);
	/* over the local socket, any folder may become a root */
	expect_error(f, json, SRV_ORIGIN_LOCAL, NULL, CDX_PROTO_BUSY,
	    "{\"n\":42}");
	assert_true(roots_contains(&f->s.roots, dir));
	/* from elsewhere, only inside the roots */
	rmdir(dir);
	assert_non_null(mkdtemp(strcpy(dir, "/tmp/daemon_dispatch_XXXXXX")));
	snprintf(json, sizeof(json), "{\"op\":\"add\",\"path\":\"%s\","
	    "\"wait\":true,\"tag\":3}", dir);
	expect_error(f, json, SRV_ORIGIN_LOOPBACK, NULL, CDX_PROTO_FORBIDDEN,
	    "3");
	rmdir(dir);
}

/* parse: the web page's query box goes through the one C parser; the
 * terms come back as the page uses them, errors as bad_request with the
 * parser's message. */
/* Which queue a request goes to: by its op, not by sniffing for
 * "image" or "path" alone. */
static void
test_slow_queue(void **state)
{
	(void)state;
	static const char *const slow[] = {
		"{\"op\":\"classify\",\"labels\":[\"a\"],\"items\":[{\"id\":1}]}",
		"{\"op\":\"tags_define\",\"name\":\"x\",\"labels\":[\"a\"]}",
		"{\"op\":\"learn\",\"name\":\"x\",\"examples\":{}}",
		"{\"op\":\"rerank\",\"text\":\"a\",\"positive\":[1]}",
		"{\"op\":\"search\",\"image\":\"AAAA\"}",
		"{\"op\":\"search\",\"path\":\"/p/x.jpg\"}",
	};
	static const char *const fast[] = {
		"{\"op\":\"search\",\"text\":\"a cat\"}",
		"{\"op\":\"status\"}",
		"{\"op\":\"search\",\"text\":\"classify\"}",
		"not json",
	};
	for (size_t i = 0; i < sizeof(slow) / sizeof(slow[0]); i++)
		if (!srv_job_slow(slow[i], strlen(slow[i])))
			fail_msg("%s: not on the slow queue", slow[i]);
	for (size_t i = 0; i < sizeof(fast) / sizeof(fast[0]); i++)
		if (srv_job_slow(fast[i], strlen(fast[i])))
			fail_msg("%s: on the slow queue", fast[i]);
}

static void
test_parse(void **state)
{
	fixture *f = *state;
	int status;
	cJSON *r = call(f, "{\"op\":\"parse\",\"tag\":3,\"query\":"
	    "\"beach - 0.7:people + 0.5:@ex.jpg + 2:id:18446744073709551615"
	    " + path:/p/a.jpg\"}", SRV_ORIGIN_LOCAL, NULL, &status);
	char *got;
	assert_int_equal(status, 200);
	got = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(r,
	    "terms"));
	assert_string_equal(got, "[{\"kind\":\"text\",\"value\":\"beach\","
	    "\"weight\":1},{\"kind\":\"text\",\"value\":\"people\","
	    "\"weight\":-0.7},{\"kind\":\"file\",\"value\":\"ex.jpg\","
	    "\"weight\":0.5},{\"kind\":\"id\",\"value\":"
	    "\"18446744073709551615\",\"weight\":2},{\"kind\":\"path\","
	    "\"value\":\"/p/a.jpg\",\"weight\":1}]");
	free(got);
	assert_int_equal(cJSON_GetObjectItemCaseSensitive(r, "tag")->valueint, 3);
	cJSON_Delete(r);
	expect_error(f, "{\"op\":\"parse\",\"query\":\"a - - b\"}",
	    SRV_ORIGIN_LOCAL, NULL, CDX_PROTO_BAD_REQUEST, NULL);
	expect_error(f, "{\"op\":\"parse\",\"query\":\"0:cat\"}",
	    SRV_ORIGIN_LOCAL, NULL, CDX_PROTO_BAD_REQUEST, NULL);
	expect_error(f, "{\"op\":\"parse\",\"query\":7}", SRV_ORIGIN_LOCAL,
	    NULL, CDX_PROTO_BAD_REQUEST, NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_envelope, setup, teardown),
		cmocka_unit_test_setup_teardown(test_parse, setup, teardown),
		cmocka_unit_test(test_slow_queue),
		cmocka_unit_test_setup_teardown(test_token, setup, teardown),
		cmocka_unit_test_setup_teardown(test_strict_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nul_and_duplicates, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_fields, setup, teardown),
		cmocka_unit_test_setup_teardown(test_add_wait_keeps_tag, setup,
		    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
