/* Tests of libclipdex against a fake clipdexd (tests/client_fakesrv.h):
 * request JSON, reply parsing, error mapping, timeouts, threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/client_run.h"

#include <float.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

/* Both headers together: the shared enum is defined once. */
#include "client/clipdex.h"
#include "common/cdx.h"
#include "client/client_priv.h"
#include "tests/cdx_assert.h"
#include "tests/client_fakesrv.h"

static int64_t
ms_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- headers and error codes ---- */

/* client/clipdex.h repeats the enum of common/cdx.h; compare each value
 * against the literal list of both headers' source text. */
static void
test_headers_define_identical_error_codes(void **state)
{
	(void)state;
	static const char *names[] = { "CDX_OK", "CDX_ENOMEM", "CDX_EINVAL",
		"CDX_EIO", "CDX_ENOTFOUND", "CDX_EEXIST", "CDX_ECORRUPT",
		"CDX_EFORMAT", "CDX_ETOOBIG", "CDX_EMODEL", "CDX_EFULL", "CDX_EBUSY",
		"CDX_EPERM", "CDX_EUTF8", "CDX_EINDEX", "CDX_ESTORE",
		"CDX_ETIMEDOUT", "CDX_EPROTO", "CDX_ECLOSED", "CDX_EINTERNAL" };
	const char *files[] = { "client/clipdex.h", "common/cdx.h" };
	int values[2][sizeof(names) / sizeof(names[0])];

	for (int f = 0; f < 2; f++) {
		FILE *fp = fopen(files[f], "r");
		char line[256];
		int found = 0, in_enum = 0;
		if (fp == NULL)
			fail_msg("cannot open %s (run from the repository root)",
			    files[f]);
		while (fgets(line, sizeof(line), fp)) {
			if (strstr(line, "enum cdx_err {"))
				in_enum = 1;
			else if (in_enum && strstr(line, "};"))
				break;
			if (!in_enum)
				continue;
			for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
				char pat[64];
				int v;
				snprintf(pat, sizeof(pat), " %s = %%d,", names[i]);
				if (sscanf(line, pat, &v) == 1 ||
				    (snprintf(pat, sizeof(pat), "\t%s = %%d,", names[i]),
				    sscanf(line, pat, &v) == 1)) {
					values[f][i] = v;
					found++;
				}
			}
		}
		fclose(fp);
		if (found != (int)(sizeof(names) / sizeof(names[0])))
			fail_msg("%s: found %d of %zu codes", files[f], found,
			    sizeof(names) / sizeof(names[0]));
	}
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (values[0][i] != values[1][i])
			fail_msg("%s: %d in clipdex.h, %d in cdx.h", names[i],
			    values[0][i], values[1][i]);
	/* And the compiled enum agrees with the text. */
	assert_int_equal(values[0][19], CDX_EINTERNAL);
	assert_int_equal(values[0][16], CDX_ETIMEDOUT);
	assert_int_equal(CDX_EINTERNAL, CDX_ERR_MIN);
}

static void
test_default_url(void **state)
{
	char want[256];
	(void)state;
	setenv("CLIPDEX_URL", "tcp://127.0.0.1:9", 1);
	assert_string_equal(cdx_default_url(), "tcp://127.0.0.1:9");
	unsetenv("CLIPDEX_URL");
	setenv("XDG_RUNTIME_DIR", "/run/user/77", 1);
	assert_string_equal(cdx_default_url(), "ipc:///run/user/77/clipdex.sock");
	unsetenv("XDG_RUNTIME_DIR");
	snprintf(want, sizeof(want), "ipc:///tmp/clipdex-%u.sock",
	    (unsigned)getuid());
	assert_string_equal(cdx_default_url(), want);
	setenv("CLIPDEX_URL", "", 1);   /* empty: ignored */
	assert_string_equal(cdx_default_url(), want);
	setenv("XDG_RUNTIME_DIR", "relative", 1);   /* not absolute: ignored */
	assert_string_equal(cdx_default_url(), want);
	unsetenv("XDG_RUNTIME_DIR");
	unsetenv("CLIPDEX_URL");
}

static void
test_open_bad_url_and_nulls(void **state)
{
	cdx_client *c = (cdx_client *)(uintptr_t)1;
	(void)state;
	assert_int_equal(cdx_client_open("nonsense://x", &c), CDX_EINVAL);
	assert_ptr_equal(c, (cdx_client *)(uintptr_t)1);
	assert_non_null(strstr(cdx_client_errmsg(NULL), "nonsense://x"));
	assert_int_equal(cdx_client_open("tcp://", &c), CDX_EINVAL);
	cdx_client_close(NULL);
	cdx_results_free(NULL);
	cdx_failures_free(NULL);
	cdx_terms_free(NULL);
}

/* Nobody listening: fails with CDX_ECLOSED after the connect timeout. */
static void
test_no_daemon_fails_after_connect_timeout(void **state)
{
	char url[256];
	cdx_client *c;
	cdx_status st;
	(void)state;
	fakesrv_address(99, url, sizeof(url));
	CDX_ASSERT_OK(cdx_client_open(url, &c), cdx_client_errmsg(NULL));
	cdx_client_set_connect_timeout(c, 200);
	int64_t t0 = ms_now();
	assert_int_equal(cdx_get_status(c, &st), CDX_ECLOSED);
	int64_t dt = ms_now() - t0;
	assert_true(dt >= 190 && dt < 2000);
	assert_non_null(strstr(cdx_client_errmsg(c), "cannot connect"));
	assert_string_equal(cdx_client_errmsg(NULL), "");  /* other "client" */
	/* Without a connect timeout, the request timeout applies. */
	cdx_client_set_connect_timeout(c, -1);
	cdx_client_set_timeout(c, 150);
	t0 = ms_now();
	assert_int_equal(cdx_get_status(c, &st), CDX_ECLOSED);
	dt = ms_now() - t0;
	assert_true(dt >= 140 && dt < 2000);
	cdx_client_close(c);
}

/* ---- against the fake daemon ---- */

struct fixture {
	struct fakesrv srv;
	cdx_client *c;
};

static int
setup(void **state)
{
	static int n;
	struct fixture *f = calloc(1, sizeof(*f));
	if (f == NULL || fakesrv_start(&f->srv, n++) != 0)
		return -1;
	if (cdx_client_open(f->srv.url, &f->c) != 0)
		return -1;
	cdx_client_set_timeout(f->c, 5000);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	cdx_client_close(f->c);
	fakesrv_stop(&f->srv);
	free(f);
	return 0;
}

static void
test_status(void **state)
{
	struct fixture *f = *state;
	cdx_status st;
	CDX_ASSERT_OK(cdx_get_status(f->c, &st), cdx_client_errmsg(f->c));
	assert_string_equal(st.version, "0.1.0");
	assert_float_equal(st.uptime_s, 12.5, 1e-9);
	assert_int_equal(st.images, 1234);
	assert_int_equal(st.failures, 2);
	assert_int_equal(st.seq, 99);
	assert_string_equal(st.model_id, "m@1");
	assert_int_equal(st.dim, 4);
	assert_string_equal(st.index_kind, "IDMap2,Flat");
	assert_int_equal(st.index_vectors, 1234);
	assert_int_equal(st.queue_pending, 3);
	assert_int_equal(st.queue_done, 1200);
	assert_float_equal(st.rate, 25.5, 1e-9);
	assert_int_equal(st.rss_bytes, 400000000);
	cJSON *req = fakesrv_last(&f->srv);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(req, "op")),
	    "status");
	assert_int_equal(cJSON_GetObjectItem(req, "v")->valueint, 1);
	assert_null(cJSON_GetObjectItem(req, "token"));
	cJSON_Delete(req);
}

static void
test_search_request_and_results(void **state)
{
	struct fixture *f = *state;
	cdx_term terms[3] = {
		{ .kind = CDX_TERM_TEXT, .text = "beach", .weight = 1.0f },
		{ .kind = CDX_TERM_TEXT, .text = "people", .weight = -0.7f },
		{ .kind = CDX_TERM_ID, .id = 42, .weight = 0.5f },
	};
	cdx_query q = { .terms = terms, .n_terms = 3, .k = 4, .offset = 2,
		.has_min_score = 1, .min_score = 0.25f, .path_prefix = "/photos/",
		.time_field = CDX_TIME_CAPTURE, .time_from = 100, .time_to = 0,
		.collapse = 0.97f, .exact = 1 };
	cdx_results *r = NULL;

	CDX_ASSERT_OK(cdx_search(f->c, &q, &r), cdx_client_errmsg(f->c));
	cJSON *req = fakesrv_last(&f->srv);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(req, "op")),
	    "search");
	cJSON *ts = cJSON_GetObjectItem(req, "terms");
	assert_int_equal(cJSON_GetArraySize(ts), 3);
	cJSON *t0 = cJSON_GetArrayItem(ts, 0), *t1 = cJSON_GetArrayItem(ts, 1),
	    *t2 = cJSON_GetArrayItem(ts, 2);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(t0, "text")),
	    "beach");
	assert_null(cJSON_GetObjectItem(t0, "weight"));   /* 1: the default */
	assert_float_equal(cJSON_GetObjectItem(t1, "weight")->valuedouble, -0.7,
	    1e-6);
	assert_int_equal(cJSON_GetObjectItem(t2, "id")->valuedouble, 42);
	assert_int_equal(cJSON_GetObjectItem(req, "k")->valueint, 4);
	assert_int_equal(cJSON_GetObjectItem(req, "offset")->valueint, 2);
	assert_float_equal(cJSON_GetObjectItem(req, "min_score")->valuedouble,
	    0.25, 1e-6);
	assert_float_equal(cJSON_GetObjectItem(req, "collapse")->valuedouble,
	    0.97, 1e-6);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(req, "exact")));
	cJSON *fl = cJSON_GetObjectItem(req, "filter");
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(fl,
	    "path_prefix")), "/photos/");
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(fl, "time")),
	    "capture");
	assert_int_equal(cJSON_GetObjectItem(fl, "from")->valuedouble, 100);
	assert_null(cJSON_GetObjectItem(fl, "to"));   /* 0: open */
	cJSON_Delete(req);

	assert_non_null(r);
	assert_int_equal(r->n, 4);
	assert_float_equal(r->took_ms, 1.5, 1e-9);
	for (size_t i = 0; i < r->n; i++) {
		char p[64];
		snprintf(p, sizeof(p), "/p/%zu.jpg", i);
		assert_int_equal(r->results[i].id, 100 + i);
		assert_string_equal(r->results[i].path, p);
		assert_float_equal(r->results[i].score, 0.9 - 0.1 * (double)i, 1e-6);
		assert_int_equal(r->results[i].width, 640 + i);
		assert_int_equal(r->results[i].height, 480);
		assert_int_equal(r->results[i].size, 1000 * (i + 1));
		assert_int_equal(r->results[i].mtime, 1600000000 + i);
		if (i % 2)
			assert_true(r->results[i].capture_time == INT64_MIN);
		else
			assert_int_equal(r->results[i].capture_time, 1500000000 + i);
		assert_int_equal(r->results[i].added, 1700000000);
	}
	cdx_results_free(r);

	/* Zero results is a success with n == 0. */
	cdx_term e = { .kind = CDX_TERM_TEXT, .text = "EMPTY" };
	cdx_query qe = { .terms = &e, .n_terms = 1 };
	CDX_ASSERT_OK(cdx_search(f->c, &qe, &r), cdx_client_errmsg(f->c));
	assert_int_equal(r->n, 0);
	cdx_results_free(r);
}

static void
test_search_uploads_files_and_bytes(void **state)
{
	struct fixture *f = *state;
	char path[] = "/tmp/cdx-client-img-XXXXXX";
	unsigned char bytes[1000];
	char b64[2000];
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	for (size_t i = 0; i < sizeof(bytes); i++)
		bytes[i] = (unsigned char)(i * 37 + 11);
	assert_int_equal(write(fd, bytes, sizeof(bytes)), sizeof(bytes));
	close(fd);
	cdxi_base64_encode(bytes, sizeof(bytes), b64);

	cdx_term terms[2] = {
		{ .kind = CDX_TERM_FILE, .text = path, .weight = 0.5f },
		{ .kind = CDX_TERM_IMAGE, .data = bytes, .len = 3 },
	};
	cdx_query q = { .terms = terms, .n_terms = 2 };
	cdx_results *r = NULL;
	CDX_ASSERT_OK(cdx_search(f->c, &q, &r), cdx_client_errmsg(f->c));
	cdx_results_free(r);
	cJSON *req = fakesrv_last(&f->srv);
	cJSON *ts = cJSON_GetObjectItem(req, "terms");
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(
	    cJSON_GetArrayItem(ts, 0), "image")), b64);
	cdxi_base64_encode(bytes, 3, b64);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(
	    cJSON_GetArrayItem(ts, 1), "image")), b64);
	assert_null(cJSON_GetObjectItem(req, "k"));   /* 0: the default */
	cJSON_Delete(req);
	unlink(path);

	/* A missing local file fails before anything is sent. */
	int before = f->srv.requests;
	r = (cdx_results *)(uintptr_t)1;
	assert_int_equal(cdx_search(f->c, &q, &r), CDX_ENOTFOUND);
	assert_ptr_equal(r, (cdx_results *)(uintptr_t)1);
	assert_non_null(strstr(cdx_client_errmsg(f->c), path));
	assert_int_equal(f->srv.requests, before);
	/* Bad terms too. */
	cdx_term bad = { .kind = 77 };
	cdx_query qb = { .terms = &bad, .n_terms = 1 };
	assert_int_equal(cdx_search(f->c, &qb, &r), CDX_EINVAL);
	qb.n_terms = 0;
	assert_int_equal(cdx_search(f->c, &qb, &r), CDX_EINVAL);
	assert_int_equal(f->srv.requests, before);
}

static void
test_daemon_errors_are_mapped_with_message(void **state)
{
	struct fixture *f = *state;
	static const struct { const char *code; int want; } cases[] = {
		{ "not_found", CDX_ENOTFOUND }, { "bad_request", CDX_EINVAL },
		{ "forbidden", CDX_EPERM }, { "too_large", CDX_ETOOBIG },
		{ "bad_image", CDX_EFORMAT }, { "busy", CDX_EBUSY },
		{ "internal", CDX_EINTERNAL }, { "something_new", CDX_EPROTO },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[64], msg[64];
		snprintf(text, sizeof(text), "ERR:%s", cases[i].code);
		snprintf(msg, sizeof(msg), "fake %s", cases[i].code);
		cdx_term t = { .kind = CDX_TERM_TEXT, .text = text };
		cdx_query q = { .terms = &t, .n_terms = 1 };
		cdx_results *r = NULL;
		assert_int_equal(cdx_search(f->c, &q, &r), cases[i].want);
		assert_null(r);
		assert_string_equal(cdx_client_errmsg(f->c), msg);
	}
}

/* Every wire name maps to the CDX_E* code of docs/PROTOCOL.md (the table
 * in common/proto.h); an error without a code is CDX_EPROTO. */
static void
test_protocol_error_mapping(void **state)
{
	struct fixture *f = *state;
	static const struct { const char *code; int want; } cases[] = {
		{ "bad_request", CDX_EINVAL }, { "bad_json", CDX_EPROTO },
		{ "unknown_op", CDX_EPROTO }, { "unsupported_version", CDX_EPROTO },
		{ "too_large", CDX_ETOOBIG }, { "unauthorized", CDX_EPERM },
		{ "forbidden", CDX_EPERM }, { "not_found", CDX_ENOTFOUND },
		{ "bad_image", CDX_EFORMAT }, { "busy", CDX_EBUSY },
		{ "internal", CDX_EINTERNAL }, { "whatever", CDX_EPROTO },
	};
	cdx_status st;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[64];
		snprintf(text, sizeof(text), "ERR:%s", cases[i].code);
		cdx_term t = { .kind = CDX_TERM_TEXT, .text = text };
		cdx_query q = { .terms = &t, .n_terms = 1 };
		cdx_results *r = NULL;
		assert_int_equal(cdx_search(f->c, &q, &r), cases[i].want);
	}
	fakesrv_set_canned(&f->srv, "{\"v\":1,\"ok\":false,\"error\":{}}");
	assert_int_equal(cdx_get_status(f->c, &st), CDX_EPROTO);
	fakesrv_set_canned(&f->srv, NULL);
}

static const char *
jstr_of(const cJSON *o, const char *name)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, name));
}

static double
jnum_of(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	assert_true(cJSON_IsNumber(v));
	return v->valuedouble;
}

/* dupes, check and retrieve send "v": 1 and the fields of
 * docs/PROTOCOL.md. */
static void
test_curation_requests(void **state)
{
	struct fixture *f = *state;
	cJSON *req;

	fakesrv_set_canned(&f->srv, "{\"v\":1,\"ok\":true,\"kind\":\"similar\","
	    "\"groups\":[],\"next_offset\":null}");
	cdx_dupes_opts d = { .kind = CDX_DUPES_SIMILAR, .threshold = 0.9f,
		.near_threshold = 0.95f, .offset = 7, .limit = 3,
		.path_prefix = "/p/" };
	cdx_dupes_page *dp = NULL;
	CDX_ASSERT_OK(cdx_dupes(f->c, &d, &dp), cdx_client_errmsg(f->c));
	assert_int_equal(dp->n, 0);
	assert_int_equal(dp->next_offset, -1);
	assert_int_equal(dp->kind, CDX_DUPES_SIMILAR);
	cdx_dupes_page_free(dp);
	req = fakesrv_last(&f->srv);
	assert_string_equal(jstr_of(req, "op"), "dupes");
	assert_int_equal(jnum_of(req, "v"), 1);
	assert_string_equal(jstr_of(req, "kind"), "similar");
	assert_float_equal(jnum_of(req, "threshold"), 0.9, 1e-6);
	assert_float_equal(jnum_of(req, "near_threshold"), 0.95, 1e-6);
	assert_int_equal(jnum_of(req, "offset"), 7);
	assert_int_equal(jnum_of(req, "limit"), 3);
	assert_string_equal(jstr_of(req, "path_prefix"), "/p/");
	cJSON_Delete(req);

	fakesrv_set_canned(&f->srv, "{\"v\":1,\"ok\":true,\"exact\":[],"
	    "\"near\":[{\"id\":9,\"path\":\"/p/9.jpg\",\"score\":0.98}],"
	    "\"duplicate\":true}");
	cdx_term img = { .kind = CDX_TERM_IMAGE, .data = "abc", .len = 3 };
	cdx_check_opts co = { .threshold = 0.97f, .k = 5 };
	cdx_check_result *cr = NULL;
	CDX_ASSERT_OK(cdx_check(f->c, &img, &co, &cr), cdx_client_errmsg(f->c));
	assert_true(cr->duplicate);
	assert_int_equal(cr->n_exact, 0);
	assert_int_equal(cr->n_near, 1);
	assert_int_equal(cr->near[0].id, 9);
	assert_string_equal(cr->near[0].path, "/p/9.jpg");
	cdx_check_result_free(cr);
	req = fakesrv_last(&f->srv);
	assert_string_equal(jstr_of(req, "op"), "check");
	assert_int_equal(jnum_of(req, "v"), 1);
	assert_string_equal(jstr_of(req, "image"), "YWJj");
	assert_null(cJSON_GetObjectItem(req, "weight"));
	assert_int_equal(jnum_of(req, "k"), 5);
	assert_float_equal(jnum_of(req, "threshold"), 0.97, 1e-6);
	cJSON_Delete(req);

	fakesrv_set_canned(&f->srv, "{\"v\":1,\"ok\":true,\"results\":["
	    "{\"prompt\":1,\"rank\":2,\"id\":5,\"path\":\"/p/5.jpg\","
	    "\"score\":0.5}],\"total\":9,\"next_offset\":3}");
	cdx_term a = { .kind = CDX_TERM_TEXT, .text = "red" };
	cdx_term b = { .kind = CDX_TERM_ID, .id = 4 };
	cdx_term neg = { .kind = CDX_TERM_TEXT, .text = "blurry" };
	cdx_prompt ps[2] = { { &a, 1 }, { &b, 1 } };
	cdx_retrieve_req rq = { .prompts = ps, .n_prompts = 2, .negatives = &neg,
		.n_negatives = 1, .has_negative_weight = 1, .negative_weight = 0,
		.k = 20, .has_min_score = 1, .min_score = 0.2f, .dedupe = 0.95f,
		.allow_repeats = 1, .offset = 2, .limit = 1 };
	cdx_retrieve_page *rp = NULL;
	CDX_ASSERT_OK(cdx_retrieve(f->c, &rq, &rp), cdx_client_errmsg(f->c));
	assert_int_equal(rp->n, 1);
	assert_int_equal(rp->total, 9);
	assert_int_equal(rp->next_offset, 3);
	assert_int_equal(rp->hits[0].prompt, 1);
	assert_int_equal(rp->hits[0].rank, 2);
	assert_int_equal(rp->hits[0].result.id, 5);
	assert_string_equal(rp->hits[0].result.path, "/p/5.jpg");
	cdx_retrieve_page_free(rp);
	req = fakesrv_last(&f->srv);
	assert_string_equal(jstr_of(req, "op"), "retrieve");
	assert_int_equal(jnum_of(req, "v"), 1);
	cJSON *pr = cJSON_GetObjectItem(req, "prompts");
	assert_int_equal(cJSON_GetArraySize(pr), 2);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetArrayItem(pr, 0)), "red");
	assert_int_equal(jnum_of(cJSON_GetArrayItem(pr, 1), "id"), 4);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetArrayItem(
	    cJSON_GetObjectItem(req, "negatives"), 0)), "blurry");
	assert_float_equal(jnum_of(req, "negative_weight"), 0.0, 1e-9);
	assert_int_equal(jnum_of(req, "k"), 20);
	assert_float_equal(jnum_of(req, "min_score"), 0.2, 1e-6);
	assert_float_equal(jnum_of(req, "dedupe"), 0.95, 1e-6);
	assert_true(cJSON_IsFalse(cJSON_GetObjectItem(req, "unique")));
	assert_int_equal(jnum_of(req, "offset"), 2);
	assert_int_equal(jnum_of(req, "limit"), 1);
	cJSON_Delete(req);

	/* A reply without its array is CDX_EPROTO, the result untouched. */
	fakesrv_set_canned(&f->srv, "{\"v\":1,\"ok\":true}");
	rp = NULL;
	assert_int_equal(cdx_retrieve(f->c, &rq, &rp), CDX_EPROTO);
	assert_int_equal(cdx_check(f->c, &img, NULL, &cr), CDX_EPROTO);
	assert_int_equal(cdx_dupes(f->c, NULL, &dp), CDX_EPROTO);
	assert_null(rp);
	fakesrv_set_canned(&f->srv, NULL);
}

static void
test_other_operations(void **state)
{
	struct fixture *f = *state;
	cdx_results *r = NULL;
	cdx_query opts = { .k = 3 };
	cJSON *req;

	CDX_ASSERT_OK(cdx_similar(f->c, 42, &opts, &r),
	    cdx_client_errmsg(f->c));
	assert_int_equal(r->n, 3);
	cdx_results_free(r);
	req = fakesrv_last(&f->srv);
	assert_int_equal(cJSON_GetObjectItem(req, "id")->valuedouble, 42);
	assert_int_equal(cJSON_GetObjectItem(req, "k")->valueint, 3);
	cJSON_Delete(req);
	CDX_ASSERT_OK(cdx_similar_path(f->c, "/photos/x.jpg", NULL, &r),
	    cdx_client_errmsg(f->c));
	cdx_results_free(r);
	req = fakesrv_last(&f->srv);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(req, "path")),
	    "/photos/x.jpg");
	assert_null(cJSON_GetObjectItem(req, "k"));
	cJSON_Delete(req);

	cdx_term t = { .kind = CDX_TERM_TEXT, .text = "cat" };
	cdx_query q = { .terms = &t, .n_terms = 1 };
	float *e = NULL;
	int dim = 0;
	CDX_ASSERT_OK(cdx_embed(f->c, &q, &e, &dim), cdx_client_errmsg(f->c));
	assert_int_equal(dim, 4);
	assert_float_equal(e[0], 0.5, 0);
	assert_float_equal(e[3], -0.5, 0);
	free(e);

	cdx_add_result ar = { -1, -1, -1, -1 };
	CDX_ASSERT_OK(cdx_add(f->c, "/photos", 1, &ar),
	    cdx_client_errmsg(f->c));
	assert_int_equal(ar.added, 3);
	assert_int_equal(ar.updated, 2);
	assert_int_equal(ar.unchanged, 1);
	assert_int_equal(ar.failed, 0);
	req = fakesrv_last(&f->srv);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(req, "wait")));
	cJSON_Delete(req);
	CDX_ASSERT_OK(cdx_add(f->c, "/photos", 0, &ar),
	    cdx_client_errmsg(f->c));
	assert_int_equal(ar.added, 0);
	CDX_ASSERT_OK(cdx_add(f->c, "/photos", 0, NULL),
	    cdx_client_errmsg(f->c));
	req = fakesrv_last(&f->srv);
	assert_null(cJSON_GetObjectItem(req, "wait"));
	cJSON_Delete(req);

	int64_t removed = 0;
	CDX_ASSERT_OK(cdx_remove(f->c, "/photos/2020", &removed),
	    cdx_client_errmsg(f->c));
	assert_int_equal(removed, 7);

	cdx_failures *fl = NULL;
	CDX_ASSERT_OK(cdx_get_failures(f->c, 10, &fl), cdx_client_errmsg(f->c));
	assert_int_equal(fl->n, 2);
	assert_int_equal(fl->total, 5);
	assert_int_equal(fl->store_full, 1);
	assert_string_equal(fl->items[0].path, "/a/bad.jpg");
	assert_string_equal(fl->items[1].reason, "CRC error");
	assert_int_equal(fl->items[1].size, 20);
	assert_int_equal(fl->items[1].when, 1700000001);
	cdx_failures_free(fl);
	req = fakesrv_last(&f->srv);
	assert_int_equal(cJSON_GetObjectItem(req, "limit")->valueint, 10);
	cJSON_Delete(req);
}

static void
test_raw_request_call_and_token(void **state)
{
	struct fixture *f = *state;
	char *reply = NULL;

	/* Raw bytes go out as they are; the daemon's error is just a reply. */
	CDX_ASSERT_OK(cdx_request(f->c, "not json", &reply),
	    cdx_client_errmsg(f->c));
	assert_non_null(strstr(reply, "\"bad_json\""));
	free(reply);
	reply = NULL;
	assert_int_equal(cdx_call(f->c, "not json", &reply), CDX_EPROTO);
	assert_null(reply);
	assert_string_equal(cdx_client_errmsg(f->c),
	    "the request is not a JSON object");
	assert_int_equal(cdx_call(f->c, "{\"op\":\"nope\"}", &reply), CDX_EPROTO);
	CDX_ASSERT_OK(cdx_call(f->c, "{\"op\":\"status\",\"tag\":[1]}", &reply),
	    cdx_client_errmsg(f->c));
	cJSON *j = cJSON_Parse(reply);
	assert_int_equal(cJSON_GetObjectItem(j, "images")->valueint, 1234);
	assert_non_null(cJSON_GetObjectItem(j, "tag"));
	cJSON_Delete(j);
	free(reply);

	/* The token goes into every request that has none. */
	CDX_ASSERT_OK(cdx_client_set_token(f->c, "s3cret"),
	    cdx_client_errmsg(f->c));
	cdx_status st;
	CDX_ASSERT_OK(cdx_get_status(f->c, &st), cdx_client_errmsg(f->c));
	cJSON *req = fakesrv_last(&f->srv);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(req,
	    "token")), "s3cret");
	cJSON_Delete(req);
	CDX_ASSERT_OK(cdx_request(f->c, "{\"op\":\"status\"}", &reply),
	    cdx_client_errmsg(f->c));
	free(reply);
	req = fakesrv_last(&f->srv);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(req,
	    "token")), "s3cret");
	cJSON_Delete(req);
	CDX_ASSERT_OK(cdx_request(f->c, "{\"op\":\"status\",\"token\":\"x\"}",
	    &reply), cdx_client_errmsg(f->c));
	free(reply);
	req = fakesrv_last(&f->srv);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(req,
	    "token")), "x");
	cJSON_Delete(req);
	CDX_ASSERT_OK(cdx_client_set_token(f->c, NULL),
	    cdx_client_errmsg(f->c));
	CDX_ASSERT_OK(cdx_get_status(f->c, &st), cdx_client_errmsg(f->c));
	req = fakesrv_last(&f->srv);
	assert_null(cJSON_GetObjectItem(req, "token"));
	cJSON_Delete(req);
}

/* Replies are bytes from a socket: odd ones are errors, never crashes. */
static void
test_malformed_replies(void **state)
{
	struct fixture *f = *state;
	cdx_term t = { .kind = CDX_TERM_TEXT, .text = "x" };
	cdx_query q = { .terms = &t, .n_terms = 1 };
	cdx_results *r = NULL;
	cdx_failures *fl = NULL;
	cdx_status st;
	float *e = NULL;
	int dim = 0;
	static const char *bad_search[] = {
		"", "not json", "[]", "null", "{}", "{\"ok\":\"yes\"}",
		"{\"ok\":true}", "{\"ok\":true,\"results\":5}",
		"{\"ok\":true,\"results\":[1]}", "{\"ok\":true,\"results\":[{},null]}",
		"{\"ok\":true,\"results\":[", "{\"ok\":false}",
		"{\"ok\":false,\"error\":7}",
	};
	for (size_t i = 0; i < sizeof(bad_search) / sizeof(bad_search[0]); i++) {
		fakesrv_set_canned(&f->srv, bad_search[i]);
		int rc = cdx_search(f->c, &q, &r);
		if (rc != CDX_EPROTO)
			fail_msg("reply '%s': %d (%s)", bad_search[i], rc,
			    cdx_client_errmsg(f->c));
		assert_null(r);
		assert_string_not_equal(cdx_client_errmsg(f->c), "");
	}
	/* An error with a code but no message: the code is the message. */
	fakesrv_set_canned(&f->srv, "{\"ok\":false,\"error\":{\"code\":\"busy\"}}");
	assert_int_equal(cdx_search(f->c, &q, &r), CDX_EBUSY);
	assert_string_equal(cdx_client_errmsg(f->c), "busy");

	/* Wrong types and absurd numbers in a result: defaults, clamped. */
	fakesrv_set_canned(&f->srv, "{\"ok\":true,\"results\":[{\"id\":\"7\","
	    "\"path\":7,\"score\":-1e300,\"width\":1e300,\"height\":-5,"
	    "\"size\":1e300,\"mtime\":-1e300,\"capture_time\":\"x\"}]}");
	CDX_ASSERT_OK(cdx_search(f->c, &q, &r), cdx_client_errmsg(f->c));
	assert_int_equal(r->n, 1);
	assert_int_equal(r->results[0].id, 0);
	assert_string_equal(r->results[0].path, "");
	assert_true(r->results[0].score == -FLT_MAX);
	assert_int_equal(r->results[0].width, UINT32_MAX);
	assert_int_equal(r->results[0].height, 0);
	assert_true(r->results[0].size == INT64_MAX);
	assert_true(r->results[0].mtime == INT64_MIN);
	assert_true(r->results[0].capture_time == INT64_MIN);
	cdx_results_free(r);

	static const char *bad_embed[] = {
		"{\"ok\":true}", "{\"ok\":true,\"embedding\":[]}",
		"{\"ok\":true,\"dim\":3,\"embedding\":[1,2]}",
		"{\"ok\":true,\"embedding\":[1,\"2\"]}",
		"{\"ok\":true,\"embedding\":{\"a\":1}}",
	};
	for (size_t i = 0; i < sizeof(bad_embed) / sizeof(bad_embed[0]); i++) {
		fakesrv_set_canned(&f->srv, bad_embed[i]);
		assert_int_equal(cdx_embed(f->c, &q, &e, &dim), CDX_EPROTO);
		assert_null(e);
	}
	fakesrv_set_canned(&f->srv, "{\"ok\":true,\"failures\":{}}");
	assert_int_equal(cdx_get_failures(f->c, 0, &fl), CDX_EPROTO);
	assert_null(fl);
	fakesrv_set_canned(&f->srv, "{\"ok\":true,\"failures\":[5,{\"path\":1}]}");
	CDX_ASSERT_OK(cdx_get_failures(f->c, 0, &fl), cdx_client_errmsg(f->c));
	assert_int_equal(fl->n, 2);
	assert_int_equal(fl->total, 2);
	assert_string_equal(fl->items[0].path, "");
	assert_string_equal(fl->items[1].reason, "");
	cdx_failures_free(fl);
	/* A status of the wrong shape still fills what it can; long strings
	 * are truncated. */
	char big[600];
	snprintf(big, sizeof(big), "{\"ok\":true,\"model\":5,\"index\":{\"kind\":"
	    "\"%0300d\"},\"images\":\"many\",\"version\":\"9\"}", 0);
	fakesrv_set_canned(&f->srv, big);
	CDX_ASSERT_OK(cdx_get_status(f->c, &st), cdx_client_errmsg(f->c));
	assert_string_equal(st.version, "9");
	assert_string_equal(st.model_id, "");
	assert_int_equal(st.images, 0);
	assert_int_equal(strlen(st.index_kind), sizeof(st.index_kind) - 1);
	fakesrv_set_canned(&f->srv, NULL);
}

static void
test_request_timeout(void **state)
{
	struct fixture *f = *state;
	cdx_term t = { .kind = CDX_TERM_TEXT, .text = "SLEEP" };
	cdx_query q = { .terms = &t, .n_terms = 1 };
	cdx_results *r = NULL;

	f->srv.sleep_ms = 700;
	cdx_client_set_timeout(f->c, 100);
	int64_t t0 = ms_now();
	assert_int_equal(cdx_search(f->c, &q, &r), CDX_ETIMEDOUT);
	int64_t dt = ms_now() - t0;
	assert_true(dt >= 90 && dt < 650);
	assert_non_null(strstr(cdx_client_errmsg(f->c), "no reply"));
	/* The late reply is dropped, and the next request gets its own. */
	cdx_client_set_timeout(f->c, 5000);
	cdx_status st;
	CDX_ASSERT_OK(cdx_get_status(f->c, &st), cdx_client_errmsg(f->c));
	assert_int_equal(st.images, 1234);
}

/* A daemon that starts after the client is picked up. */
static void
test_daemon_started_later(void **state)
{
	struct fakesrv srv;
	char url[256];
	cdx_client *c;
	cdx_status st;
	(void)state;
	fakesrv_address(50, url, sizeof(url));
	CDX_ASSERT_OK(cdx_client_open(url, &c), cdx_client_errmsg(NULL));
	cdx_client_set_connect_timeout(c, 0);
	assert_int_equal(cdx_get_status(c, &st), CDX_ECLOSED);
	assert_int_equal(fakesrv_start(&srv, 50), 0);
	cdx_client_set_connect_timeout(c, 3000);
	CDX_ASSERT_OK(cdx_get_status(c, &st), cdx_client_errmsg(c));
	assert_int_equal(st.dim, 4);
	/* Restarted: reconnects. */
	fakesrv_stop(&srv);
	assert_int_equal(fakesrv_start(&srv, 50), 0);
	int rc = cdx_get_status(c, &st);
	if (rc != 0)
		fail_msg("after a restart: %s", cdx_client_errmsg(c));
	cdx_client_close(c);
	fakesrv_stop(&srv);
}

/* Something on the daemon's address that accepts connections and closes
 * them at once, for ms milliseconds. */
struct slammer {
	char path[108];
	int ms;
	int accepted;
};

static void *
slammer_main(void *arg)
{
	struct slammer *sl = arg;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	memcpy(sa.sun_path, sl->path, strlen(sl->path) + 1);
	unlink(sl->path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(fd, 16) != 0)
		return NULL;
	for (int64_t end = ms_now() + sl->ms; ms_now() < end;) {
		struct timeval tv = { 0, 20000 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		int c = accept(fd, NULL, NULL);
		if (c >= 0) {
			close(c);
			sl->accepted++;
		}
	}
	close(fd);
	unlink(sl->path);
	return NULL;
}

/* A client whose connections are closed during the handshake (a daemon
 * stopping, or replacing its listener) connects once a daemon answers:
 * nng 1.5.2's dialer gives up after such a failure, and the client
 * replaces it (client.c, redial). */
static void
test_reconnects_after_handshake_failures(void **state)
{
	struct fakesrv srv;
	struct slammer sl = { .ms = 800 };
	char url[256];
	pthread_t th;
	cdx_client *c;
	cdx_status st;
	(void)state;

	fakesrv_address(51, url, sizeof(url));
	assert_true(strlen(url + 6) < sizeof(sl.path));
	memcpy(sl.path, url + 6, strlen(url + 6) + 1);  /* after "ipc://" */
	assert_int_equal(pthread_create(&th, NULL, slammer_main, &sl), 0);
	usleep(50000);
	CDX_ASSERT_OK(cdx_client_open(url, &c), cdx_client_errmsg(NULL));
	cdx_client_set_connect_timeout(c, 100);
	assert_int_equal(cdx_get_status(c, &st), CDX_ECLOSED);
	pthread_join(th, NULL);
	assert_true(sl.accepted > 0);
	assert_int_equal(fakesrv_start(&srv, 51), 0);
	cdx_client_set_connect_timeout(c, 5000);
	int rc = cdx_get_status(c, &st);
	if (rc != 0)
		fail_msg("after %d slammed connections: %s", sl.accepted,
		    cdx_client_errmsg(c));
	assert_int_equal(st.images, 1234);
	cdx_client_close(c);
	fakesrv_stop(&srv);
}

struct worker {
	cdx_client *c;
	int id;
	int failures;
};

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	char want[64];
	snprintf(want, sizeof(want), "fake busy w%d", w->id);
	/* Other threads' failures are not visible here. */
	if (strcmp(cdx_client_errmsg(w->c), "") != 0)
		w->failures++;
	for (int i = 0; i < 50; i++) {
		char text[64];
		int fail = (i + w->id) % 3 == 0;
		snprintf(text, sizeof(text), fail ? "ERR:busy w%d" : "q%d",
		    fail ? w->id : i);
		cdx_term t = { .kind = CDX_TERM_TEXT, .text = text };
		cdx_query q = { .terms = &t, .n_terms = 1, .k = 1 + (i + w->id) % 7 };
		cdx_results *r = NULL;
		int rc = cdx_search(w->c, &q, &r);
		if (fail) {
			if (rc != CDX_EBUSY || strcmp(cdx_client_errmsg(w->c), want) != 0)
				w->failures++;
		} else {
			if (rc != 0 || r->n != (size_t)q.k ||
			    r->results[q.k - 1].id != (uint64_t)(100 + q.k - 1))
				w->failures++;
			cdx_results_free(r);
		}
	}
	return NULL;
}

static void
test_threads_share_one_client(void **state)
{
	struct fixture *f = *state;
	pthread_t th[4];
	struct worker w[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){ f->c, i, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].failures, 0);
	}
	/* This thread made no failed call on this client. */
	assert_string_equal(cdx_client_errmsg(f->c), "");
	assert_int_equal(f->srv.requests, 200);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_headers_define_identical_error_codes),
		cmocka_unit_test_setup_teardown(test_protocol_error_mapping, setup,
		    teardown),
		cmocka_unit_test(test_default_url),
		cmocka_unit_test(test_open_bad_url_and_nulls),
		cmocka_unit_test(test_no_daemon_fails_after_connect_timeout),
		cmocka_unit_test_setup_teardown(test_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_search_request_and_results,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_search_uploads_files_and_bytes,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_daemon_errors_are_mapped_with_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_curation_requests, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_other_operations, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_raw_request_call_and_token,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_replies, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_request_timeout, setup,
		    teardown),
		cmocka_unit_test(test_daemon_started_later),
		cmocka_unit_test(test_reconnects_after_handshake_failures),
		cmocka_unit_test_setup_teardown(test_threads_share_one_client, setup,
		    teardown),
	};
	return CLIENT_RUN_TESTS(tests, NULL, NULL);
}
