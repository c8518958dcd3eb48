/*
 * The whole system with a SigLIP model: clipdexd indexes generated photos
 * with a tiny SigLIP folder (tests/testmodel.h), and libclipdex, the
 * command line and the HTTP API answer with calibrated match
 * probabilities (`prob`, `min_prob`).  The expected probabilities are
 * recomputed here from each result's score and the model's logit_scale
 * and logit_bias, read through the encoder.  A CLIP daemon, started by
 * the last test, carries no `prob` and refuses `min_prob`.
 *
 * One daemon serves the suite; every test only reads the collection the
 * setup indexed, so each can run alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/client_run.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/clipdex.h"
#include "common/cdx.h"
#include "encoder/clip.h"
#include "tests/testmodel.h"
#include "tests/testutil.h"

#define N_PHOTOS 12

static char tmp[256], model_dir[300], photos[300], store_dir[300];
static char url[320], logpath[300], bindir[256];
static pid_t daemon_pid;
static cdx_client *cli;
static int http_port;
static clip_model_info info;   /* the model's, read through the encoder */

/* nng 1.5.2 leaks endpoints of failed handshakes (tests/lsan-nng.supp). */
const char *__lsan_default_suppressions(void);
const char *
__lsan_default_suppressions(void)
{
	return "leak:libnng.so\n";
}

static tu_daemon
daemon_paths(const char *model, const char *store)
{
	tu_daemon d = { bindir, model, store, url, photos, logpath,
	    http_port };
	return d;
}

static void
write_photos(void)
{
	char p[400];
	assert_int_equal(mkdir(photos, 0755), 0);
	for (int i = 0; i < N_PHOTOS; i++) {
		int w = 90 + 9 * i, h = 80 + 4 * (i % 3);
		snprintf(p, sizeof(p), "%s/p%02d.jpg", photos, i);
		tu_write_stripes_jpeg(p, w, h, (unsigned)i + 3);
		/* photo 0 twice, byte for byte (the encoding is
		 * deterministic): an exact duplicate */
		if (i == 0) {
			snprintf(p, sizeof(p), "%s/p00 copy.jpg", photos);
			tu_write_stripes_jpeg(p, w, h, (unsigned)i + 3);
		}
	}
}

static int
setup(void **state)
{
	(void)state;
	if (tu_lsan_nng() != 0)
		return -1;
	tu_bin_dir(bindir, sizeof(bindir));
	if (tu_suite_dirs("cdx-siglip", "siglip", tmp, model_dir, photos,
	    store_dir, url, logpath) != 0)
		return -1;
	http_port = 20000 + (getpid() + 7919) % 20000;

	tm_recipe r;
	tm_recipe_siglip_tiny(&r, TM_FAMILY_SIGLIP);
	mkdir(model_dir, 0755);
	if (tm_write_model(&r, model_dir) != 0)
		return -1;
	clip_model *m = NULL;
	cdx_error err;
	if (clip_model_load(model_dir, NULL, &m, &err) != 0) {
		fprintf(stderr, "clip_model_load: %s\n", err.msg);
		return -1;
	}
	info = *clip_model_get_info(m);
	clip_model_free(m);
	write_photos();

	if (cdx_client_open(url, &cli) != 0)
		return -1;
	cdx_client_set_timeout(cli, 20000);
	tu_daemon d = daemon_paths(model_dir, store_dir);
	daemon_pid = tu_daemon_up(&d, NULL, cli);
	return tu_add_expect(cli, photos, N_PHOTOS + 1);
}

static int
teardown(void **state)
{
	(void)state;
	tu_suite_end(&daemon_pid, cli, tmp);
	return 0;
}

static double
expected_prob(double score)
{
	double z = exp((double)info.logit_scale) * score + info.logit_bias;
	return 1.0 / (1.0 + exp(-z));
}

static cdx_results *
search_text(const char *text, int k, int has_min_prob, float min_prob)
{
	cdx_term t = { .kind = CDX_TERM_TEXT, .text = text, .weight = 1 };
	cdx_query q = { .terms = &t, .n_terms = 1, .k = k,
	    .has_min_prob = has_min_prob, .min_prob = min_prob };
	cdx_results *r = NULL;
	int rc = cdx_search(cli, &q, &r);
	if (rc != 0)
		fail_msg("search '%s': %s", text, cdx_client_errmsg(cli));
	return r;
}

/* ---- tests ---- */

static void
test_status_names_family(void **state)
{
	char out[8192];
	(void)state;
	assert_int_equal(info.family, CLIP_FAMILY_SIGLIP);
	assert_true(info.has_sigmoid);
	tu_daemon d = daemon_paths(model_dir, store_dir);
	assert_int_equal(tu_cli(&d, "status --json", out, sizeof(out)), 0);
	cJSON *j = cJSON_Parse(out);
	assert_non_null(j);
	cJSON *m = cJSON_GetObjectItem(j, "model");
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(m,
	    "family")), "siglip");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(m, "prob")));
	/* the store records the family with the model's identity */
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(m,
	    "store_family")), "siglip");
	cJSON_Delete(j);
}

static void
test_text_results_carry_prob(void **state)
{
	(void)state;
	cdx_results *r = search_text("a photo of stripes", N_PHOTOS + 1, 0, 0);
	assert_int_equal(r->n, N_PHOTOS + 1);
	for (size_t i = 0; i < r->n; i++) {
		const cdx_result *x = &r->results[i];
		assert_false(isnan(x->prob));
		/* the reply's score is a float; prob is the double of it */
		if (fabs(x->prob - expected_prob(x->score)) > 1e-5)
			fail_msg("result %zu: prob %.9f, recomputed %.9f", i,
			    x->prob, expected_prob(x->score));
		if (i > 0)
			assert_true(x->prob <= r->results[i - 1].prob);
	}
	/* the tiny model's probabilities spread: the cut-off below has
	 * something to cut */
	assert_true(r->results[0].prob - r->results[r->n - 1].prob > 1e-3);
	cdx_results_free(r);
}

static void
test_min_prob_cuts(void **state)
{
	(void)state;
	cdx_results *all = search_text("a photo of stripes", N_PHOTOS + 1, 0,
	    0);
	/* a bound between the 4th and 5th probability keeps exactly 4 */
	size_t want = 4;
	while (want < all->n && all->results[want].prob ==
	    all->results[want - 1].prob)
		want++;
	assert_true(want < all->n);
	float bound = (float)((all->results[want - 1].prob +
	    all->results[want].prob) / 2);
	cdx_results *cut = search_text("a photo of stripes", N_PHOTOS + 1, 1,
	    bound);
	assert_int_equal(cut->n, want);
	for (size_t i = 0; i < cut->n; i++) {
		assert_int_equal(cut->results[i].id, all->results[i].id);
		assert_true(cut->results[i].prob >= bound);
	}
	cdx_results_free(cut);

	/* the command line: --min-prob, and prob in --json and in the table */
	char args[128], out[16384];
	tu_daemon d = daemon_paths(model_dir, store_dir);
	snprintf(args, sizeof(args), "search 'a photo of stripes' -k 20 "
	    "--min-prob %.6f --json", (double)bound);
	assert_int_equal(tu_cli(&d, args, out, sizeof(out)), 0);
	size_t lines = 0;
	for (char *line = out, *nl; (nl = strchr(line, '\n')) != NULL;
	    line = nl + 1) {
		*nl = '\0';
		cJSON *j = cJSON_Parse(line);
		assert_non_null(j);
		double p = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "prob"));
		assert_true(fabs(p - all->results[lines].prob) < 1e-5);
		cJSON_Delete(j);
		lines++;
	}
	assert_int_equal(lines, want);
	assert_int_equal(tu_cli(&d, "search 'a photo of stripes' -k 3", out,
	    sizeof(out)), 0);
	assert_non_null(strchr(out, '%'));
	cdx_results_free(all);
}

static void
test_min_prob_needs_text(void **state)
{
	(void)state;
	char path[400];
	snprintf(path, sizeof(path), "%s/p03.jpg", photos);
	size_t len = 0;
	char *bytes = tu_read_file(path, &len);
	assert_non_null(bytes);
	/* an image term: no prob, and min_prob is refused */
	cdx_term t = { .kind = CDX_TERM_IMAGE, .data = bytes, .len = len,
	    .weight = 1 };
	cdx_query q = { .terms = &t, .n_terms = 1, .k = 3 };
	cdx_results *r = NULL;
	CDX_ASSERT_OK(cdx_search(cli, &q, &r), cdx_client_errmsg(cli));
	assert_true(r->n > 0);
	for (size_t i = 0; i < r->n; i++)
		assert_true(isnan(r->results[i].prob));
	cdx_results_free(r);
	q.has_min_prob = 1;
	q.min_prob = 0.5f;
	assert_int_equal(cdx_search(cli, &q, &r), CDX_EINVAL);
	assert_non_null(strstr(cdx_client_errmsg(cli), "min_prob"));
	/* similar too */
	assert_int_equal(cdx_similar(cli, 1, &q, &r), CDX_EINVAL);
	free(bytes);
}

static void
test_http_has_prob(void **state)
{
	char cmd[600], out[16384];
	(void)state;
	snprintf(cmd, sizeof(cmd), "curl -s -d '{\"op\":\"search\",\"text\":"
	    "\"stripes\",\"k\":2}' http://127.0.0.1:%d/api", http_port);
	assert_int_equal(tu_popen_read(cmd, out, sizeof(out)), 0);
	cJSON *j = cJSON_Parse(out);
	assert_non_null(j);
	cJSON *res = cJSON_GetObjectItem(j, "results");
	assert_int_equal(cJSON_GetArraySize(res), 2);
	cJSON *h = cJSON_GetArrayItem(res, 0);
	double score = cJSON_GetNumberValue(cJSON_GetObjectItem(h, "score"));
	double prob = cJSON_GetNumberValue(cJSON_GetObjectItem(h, "prob"));
	assert_true(fabs(prob - expected_prob((float)score)) < 1e-5);
	cJSON_Delete(j);
}

/* dupes, check, retrieve and offline embed/tokenize run unchanged */
static void
test_other_operations(void **state)
{
	char args[1200], out[65536];
	(void)state;
	tu_daemon d = daemon_paths(model_dir, store_dir);
	assert_int_equal(tu_cli(&d, "dupes --kind exact --json", out,
	    sizeof(out)), 0);
	assert_non_null(strstr(out, "p00 copy.jpg"));
	snprintf(args, sizeof(args), "check '%s/p00.jpg'", photos);
	assert_int_equal(tu_cli(&d, args, out, sizeof(out)), 5);  /* indexed */
	assert_non_null(strstr(out, "p00"));
	char prompts[400];
	snprintf(prompts, sizeof(prompts), "%s/prompts.txt", tmp);
	assert_int_equal(tu_write_file(prompts, "stripes\na red photo\n", 20),
	    0);
	char set[400];
	snprintf(set, sizeof(set), "%s/set.jsonl", tmp);
	snprintf(args, sizeof(args), "retrieve --prompts '%s' -k 3 --out '%s'",
	    prompts, set);
	assert_int_equal(tu_cli(&d, args, out, sizeof(out)), 0);
	size_t len = 0, lines = 0;
	char *jsonl = tu_read_file(set, &len);
	assert_non_null(jsonl);
	for (const char *p = jsonl; (p = strchr(p, '\n')) != NULL; p++)
		lines++;
	free(jsonl);
	assert_int_equal(lines, 6);

	/* tokenize pads to the model's 64 positions */
	snprintf(args, sizeof(args), "%s/clipdex tokenize --model '%s' --text "
	    "'a cat'", bindir, model_dir);
	assert_int_equal(tu_popen_read(args, out, sizeof(out)), 0);
	cJSON *ids = cJSON_Parse(out);
	assert_non_null(ids);
	assert_int_equal(cJSON_GetArraySize(ids), info.context_len);
	assert_int_equal(info.context_len, 64);
	cJSON_Delete(ids);

	/* embed gives the daemon's embedding of the same text */
	snprintf(args, sizeof(args), "%s/clipdex embed --model '%s' --text "
	    "'stripes'", bindir, model_dir);
	assert_int_equal(tu_popen_read(args, out, sizeof(out)), 0);
	cJSON *e = cJSON_Parse(out);
	assert_non_null(e);
	cJSON *vec = cJSON_GetObjectItem(e, "embedding");
	assert_int_equal(cJSON_GetArraySize(vec), info.embed_dim);
	char cmd[600], resp[65536];
	snprintf(cmd, sizeof(cmd), "curl -s -d '{\"op\":\"embed\",\"text\":"
	    "\"stripes\"}' http://127.0.0.1:%d/api", http_port);
	assert_int_equal(tu_popen_read(cmd, resp, sizeof(resp)), 0);
	cJSON *de = cJSON_Parse(resp);
	assert_non_null(de);
	cJSON *dv = cJSON_GetObjectItem(de, "embedding");
	float a[4096];
	for (int i = 0; i < info.embed_dim; i++)
		a[i] = (float)cJSON_GetArrayItem(dv, i)->valuedouble;
	assert_true(tu_cosine_json(a, vec, info.embed_dim) > 0.999999);
	cJSON_Delete(de);
	cJSON_Delete(e);
}

/* A CLIP daemon over the same photos: no prob, min_prob refused. */
static void
test_clip_has_no_prob(void **state)
{
	char clip_dir[400], clip_store[400], clip_url[400];
	(void)state;
	snprintf(clip_dir, sizeof(clip_dir), "%s/clip", tmp);
	snprintf(clip_store, sizeof(clip_store), "%s/clip-store", tmp);
	snprintf(clip_url, sizeof(clip_url), "ipc://%s/clip.sock", tmp);
	tm_recipe r;
	tm_recipe_tiny(&r);
	mkdir(clip_dir, 0755);
	assert_int_equal(tm_write_model(&r, clip_dir), 0);
	tu_daemon d = daemon_paths(clip_dir, clip_store);
	d.url = clip_url;
	d.http_port = 0;
	cdx_client *c2 = NULL;
	CDX_ASSERT_OK(cdx_client_open(clip_url, &c2), cdx_client_errmsg(NULL));
	cdx_client_set_timeout(c2, 20000);
	pid_t pid = tu_daemon_start(&d, NULL);
	tu_wait_ready("clipdexd (CLIP)", pid, tu_status_answers, c2, logpath);
	char path[400];
	snprintf(path, sizeof(path), "%s/p01.jpg", photos);
	cdx_add_result ar;
	CDX_ASSERT_OK(cdx_add(c2, path, 1, &ar), cdx_client_errmsg(c2));
	cdx_term t = { .kind = CDX_TERM_TEXT, .text = "stripes", .weight = 1 };
	cdx_query q = { .terms = &t, .n_terms = 1, .k = 1 };
	cdx_results *res = NULL;
	CDX_ASSERT_OK(cdx_search(c2, &q, &res), cdx_client_errmsg(c2));
	assert_int_equal(res->n, 1);
	assert_true(isnan(res->results[0].prob));
	cdx_results_free(res);
	q.has_min_prob = 1;
	q.min_prob = 0.5f;
	assert_int_equal(cdx_search(c2, &q, &res), CDX_EINVAL);
	assert_non_null(strstr(cdx_client_errmsg(c2), "sigmoid"));
	tu_stop_child(pid);
	cdx_client_close(c2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status_names_family),
		cmocka_unit_test(test_text_results_carry_prob),
		cmocka_unit_test(test_min_prob_cuts),
		cmocka_unit_test(test_min_prob_needs_text),
		cmocka_unit_test(test_http_has_prob),
		cmocka_unit_test(test_other_operations),
		cmocka_unit_test(test_clip_has_no_prob),
	};
	return CLIENT_RUN_TESTS(tests, setup, teardown);
}
