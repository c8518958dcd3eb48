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
call(fixture *f, const char *json, int origin, const char *auth,
    int *status)
{
	struct reply r = { 0 };
	srv_job *job = calloc(1, sizeof(*job));
	cJSON *out;

	assert_non_null(job);
	job->req = strdup(json);
	job->len = strlen(json);
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

/* Checks an error reply: its code, its HTTP status (the table's), a
 * message, and the tag (tag: the expected tag as JSON text, or NULL for
 * none). */
static void
expect_error(fixture *f, const char *json, int origin, const char *auth,
    enum cdx_proto_code code, const char *tag)
{
	int status;
	cJSON *r = call(f, json, origin, auth, &status);
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
		cmocka_unit_test_setup_teardown(test_token, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fields, setup, teardown),
		cmocka_unit_test_setup_teardown(test_add_wait_keeps_tag, setup,
		    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
