/*
 * Few-shot classifiers end to end: clipdexd with the demo model
 * (models/demo) indexes rendered pictures of two clearly separable kinds,
 * red fills and blue fills (each with a grey square somewhere, so that no
 * two are alike), plus green ones; then the command line learns a
 * classifier from the folders (`clipdex learn`), searches by it (`search
 * --learned`, the term learned:NAME), exports with `retrieve` (a prompt
 * line learned:NAME), and libclipdex re-ranks by marks (cdx_rerank).
 * Errors: one example, an unknown id.  A model change: the daemon is
 * restarted on a tiny generated model with --reembed, and the classifier
 * is refused by a search until `learn --refit` fits it again.
 *
 * One daemon serves the suite; each test learns what it uses, so each can
 * run alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/client_run.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/clipdex.h"
#include "tests/testmodel.h"
#include "tests/testutil.h"

#define PER_KIND 8
#define SIDE 96

static char tmp[256], model_dir[PATH_MAX], photos[300], store_dir[300];
static char url[320], logpath[300], bindir[256], tiny_dir[300];
static pid_t daemon_pid;
static cdx_client *cli;
static const char *const kinds[] = { "red", "blue", "green" };

/* nng 1.5.2 leaks endpoints of failed handshakes (tests/lsan-nng.supp). */
const char *__lsan_default_suppressions(void);
const char *
__lsan_default_suppressions(void)
{
	return "leak:libnng.so\n";
}

static const char *model_now = model_dir;      /* the daemon's model */

static tu_daemon
daemon_paths(void)
{
	tu_daemon d = { bindir, model_now, store_dir, url, photos, logpath, 0 };
	return d;
}

/* Restarts the daemon on model (with --reembed when it changes) and waits
 * until it has indexed the photos again. */
static void
restart_on(const char *model)
{
	const char *extra = model == model_now ? NULL : "--reembed";
	cdx_status st;

	tu_stop_child(daemon_pid);
	model_now = model;
	tu_daemon d = daemon_paths();
	daemon_pid = tu_daemon_up(&d, extra, cli);
	for (int i = 0; i < 600; i++) {
		assert_int_equal(cdx_get_status(cli, &st), 0);
		if (st.images == 3 * PER_KIND && st.queue_remaining == 0 &&
		    !st.scanning)
			return;
		usleep(50000);
	}
	fail_msg("the photos were not indexed again (%lld images)",
	    (long long)st.images);
}

/* A fill of kind k (a shade of it) with a grey square at a place of its
 * own. */
static void
write_picture(int k, int j)
{
	static const int base[3][3] = { { 200, 30, 30 }, { 30, 40, 200 },
	    { 30, 180, 40 } };
	unsigned char *rgb = malloc(SIDE * SIDE * 3), *jpeg;
	unsigned long len = 0;
	char dir[400], path[440];
	int sx = 8 + (j * 23) % 56, sy = 8 + (j * 37) % 56, shade = j * 6;

	assert_non_null(rgb);
	for (int y = 0; y < SIDE; y++)
		for (int x = 0; x < SIDE; x++) {
			unsigned char *p = rgb + ((size_t)y * SIDE + x) * 3;
			int sq = x >= sx && x < sx + 24 && y >= sy && y < sy + 24;
			for (int c = 0; c < 3; c++) {
				int v = sq ? 128 : base[k][c] + (base[k][c] > 100 ? -shade :
				    shade / 2);
				p[c] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
			}
		}
	jpeg = tu_jpeg_encode(rgb, SIDE, SIDE, 92, &len);
	assert_non_null(jpeg);
	snprintf(dir, sizeof(dir), "%s/%s", photos, kinds[k]);
	mkdir(dir, 0755);
	snprintf(path, sizeof(path), "%s/%s%02d.jpg", dir, kinds[k], j);
	assert_int_equal(tu_write_file(path, jpeg, len), 0);
	tjFree(jpeg);
	free(rgb);
}

static int
setup(void **state)
{
	char model_name[16] = "unused";

	(void)state;
	if (tu_lsan_nng() != 0)
		return -1;
	tu_bin_dir(bindir, sizeof(bindir));
	if (tu_suite_dirs("cdx-learn", model_name, tmp, model_dir, photos,
	    store_dir, url, logpath) != 0)
		return -1;
	/* a second model for the model change: the tiny generated one */
	tm_recipe r;
	tm_recipe_tiny(&r);
	snprintf(tiny_dir, sizeof(tiny_dir), "%s/tiny", tmp);
	mkdir(tiny_dir, 0755);
	if (tm_write_model(&r, tiny_dir) != 0)
		return -1;
	if (realpath("models/demo", model_dir) == NULL) {
		fprintf(stderr, "run from the repository root (models/demo)\n");
		return -1;
	}
	mkdir(photos, 0755);
	for (int k = 0; k < 3; k++)
		for (int j = 0; j < PER_KIND; j++)
			write_picture(k, j);
	if (cdx_client_open(url, &cli) != 0)
		return -1;
	cdx_client_set_timeout(cli, 60000);
	tu_daemon d = daemon_paths();
	daemon_pid = tu_daemon_up(&d, NULL, cli);
	return tu_add_expect(cli, photos, 3 * PER_KIND);
}

static int
teardown(void **state)
{
	(void)state;
	tu_suite_end(&daemon_pid, cli, tmp);
	return 0;
}

static int
run(const char *args, char *out, size_t cap)
{
	tu_daemon d = daemon_paths();
	return tu_cli(&d, args, out, cap);
}

/* The kind of an indexed path (its folder), or -1. */
static int
kind_of_path(const char *p)
{
	for (int k = 0; k < 3; k++) {
		char dir[340];
		snprintf(dir, sizeof(dir), "%s/%s/", photos, kinds[k]);
		if (strncmp(p, dir, strlen(dir)) == 0)
			return k;
	}
	return -1;
}

/* `clipdex learn reds`: the red folder against the blue one. */
static void
learn_reds(char *out, size_t cap)
{
	char args[800];
	snprintf(args, sizeof(args), "learn reds --positive %s/red/ --negative "
	    "%s/blue", photos, photos);
	assert_int_equal(run(args, out, cap), 0);
}

/* The ids of the first n results of a text search restricted to kind. */
static void
ids_of_kind(int k, uint64_t *ids, int n)
{
	char prefix[340];
	snprintf(prefix, sizeof(prefix), "%s/%s/", photos, kinds[k]);
	cdx_term t = { .kind = CDX_TERM_TEXT, .text = "a picture", .weight = 1 };
	cdx_query q = { .terms = &t, .n_terms = 1, .k = n,
	    .path_prefix = prefix };
	cdx_results *r = NULL;
	if (cdx_search(cli, &q, &r) != 0)
		fail_msg("search: %s", cdx_client_errmsg(cli));
	assert_int_equal((int)r->n, n);
	for (int i = 0; i < n; i++)
		ids[i] = r->results[i].id;
	cdx_results_free(r);
}

static void
test_learn_and_search(void **state)
{
	char out[16384];

	(void)state;
	learn_reds(out, sizeof(out));
	char want[64];
	snprintf(want, sizeof(want), "from %d positive and %d negative images",
	    PER_KIND, PER_KIND);
	if (strstr(out, want) == NULL ||
	    strstr(out, "cross-validated accuracy 1.000") == NULL ||
	    strstr(out, "unlabeled") != NULL)
		fail_msg("learn: %s", out);

	/* search --learned ranks every red picture first, by probability */
	assert_int_equal(run("search --learned reds -k 24 --json", out,
	    sizeof(out)), 0);
	char *line = out;
	double last = 2;
	for (int i = 0; i < 3 * PER_KIND; i++) {
		char *nl = strchr(line, '\n');
		assert_non_null(nl);
		*nl = '\0';
		cJSON *o = cJSON_Parse(line);
		assert_non_null(o);
		const char *p = cJSON_GetStringValue(cJSON_GetObjectItem(o, "path"));
		double prob = cJSON_GetNumberValue(cJSON_GetObjectItem(o, "prob"));
		assert_true(prob <= last + 1e-9);
		last = prob;
		if (i < PER_KIND && kind_of_path(p) != 0)
			fail_msg("result %d is %s", i + 1, p);
		if (i < PER_KIND)
			assert_true(prob > 0.5);
		cJSON_Delete(o);
		line = nl + 1;
	}

	/* --refit: again from the kept examples (the folders), same figures */
	assert_int_equal(run("learn reds --refit", out, sizeof(out)), 0);
	if (strstr(out, "refitted reds") == NULL || strstr(out, want) == NULL ||
	    strstr(out, "cross-validated accuracy 1.000") == NULL)
		fail_msg("learn --refit: %s", out);

	/* the term beside a text, in the query syntax */
	assert_int_equal(run("search 'a picture + 2:learned:reds' -k 3 --paths",
	    out, sizeof(out)), 0);
	assert_int_equal(kind_of_path(out), 0);
	assert_int_equal(run("search a picture --learned reds -k 3 --paths",
	    out, sizeof(out)), 0);
	assert_true(strchr(out, '\n') != NULL);
}

/* retrieve exports what a classifier finds: a prompt line learned:NAME. */
static void
test_retrieve_exports(void **state)
{
	char out[16384], args[1200], prompts[320], jsonl[320], dest[320];
	FILE *f;

	(void)state;
	learn_reds(out, sizeof(out));
	snprintf(prompts, sizeof(prompts), "%s/prompts.txt", tmp);
	snprintf(jsonl, sizeof(jsonl), "%s/out.jsonl", tmp);
	snprintf(dest, sizeof(dest), "%s/export", tmp);
	assert_int_equal(tu_write_file(prompts, "learned:reds\n", 13), 0);
	snprintf(args, sizeof(args), "retrieve --prompts %s -k %d --out %s "
	    "--copy-to %s", prompts, PER_KIND, jsonl, dest);
	assert_int_equal(run(args, out, sizeof(out)), 0);
	assert_non_null(f = fopen(jsonl, "r"));
	int n = 0;
	char line[2048];
	while (fgets(line, sizeof(line), f) != NULL) {
		cJSON *o = cJSON_Parse(line);
		assert_non_null(o);
		const char *p = cJSON_GetStringValue(cJSON_GetObjectItem(o, "path"));
		if (kind_of_path(p) != 0)
			fail_msg("exported %s", p);
		cJSON_Delete(o);
		n++;
	}
	fclose(f);
	assert_int_equal(n, PER_KIND);
}

/* Without negatives, random images serve, and the output says so. */
static void
test_unlabeled_negatives(void **state)
{
	char out[8192], args[128];
	uint64_t ids[3];

	(void)state;
	ids_of_kind(2, ids, 3);
	snprintf(args, sizeof(args), "learn greens --positive id:%llu,id:%llu "
	    "--positive id:%llu --json", (unsigned long long)ids[0],
	    (unsigned long long)ids[1], (unsigned long long)ids[2]);
	assert_int_equal(run(args, out, sizeof(out)), 0);
	cJSON *o = cJSON_Parse(out);
	assert_non_null(o);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "unlabeled_negatives")));
	assert_int_equal((int)cJSON_GetNumberValue(cJSON_GetObjectItem(o,
	    "n_pos")), 3);
	assert_int_equal((int)cJSON_GetNumberValue(cJSON_GetObjectItem(o,
	    "n_neg")), 3 * PER_KIND - 3);
	cJSON_Delete(o);
	snprintf(args, sizeof(args), "learn greens --positive id:%llu,id:%llu",
	    (unsigned long long)ids[0], (unsigned long long)ids[1]);
	assert_int_equal(run(args, out, sizeof(out)), 0);
	if (strstr(out, "random unlabeled images") == NULL)
		fail_msg("learn: %s", out);
}

/* Relevance feedback through libclipdex: 2 blue marked right, 2 red
 * wrong: every blue picture first. */
static void
test_rerank(void **state)
{
	uint64_t pos[2], neg[2];

	(void)state;
	ids_of_kind(1, pos, 2);
	ids_of_kind(0, neg, 2);
	cdx_term t = { .kind = CDX_TERM_TEXT, .text = "a picture", .weight = 1 };
	cdx_query q = { .terms = &t, .n_terms = 1, .k = PER_KIND };
	cdx_rerank_req req = { &q, pos, 2, neg, 2 };
	cdx_results *r = NULL;
	if (cdx_rerank(cli, &req, &r) != 0)
		fail_msg("rerank: %s", cdx_client_errmsg(cli));
	assert_int_equal((int)r->n, PER_KIND);
	for (size_t i = 0; i < r->n; i++) {
		if (kind_of_path(r->results[i].path) != 1)
			fail_msg("result %zu is %s", i + 1, r->results[i].path);
		assert_false(isnan(r->results[i].prob));
	}
	cdx_results_free(r);
	/* one mark of each and no query: not enough */
	cdx_rerank_req one = { NULL, pos, 1, neg, 1 };
	assert_int_equal(cdx_rerank(cli, &one, &r), CDX_EINVAL);
	assert_non_null(strstr(cdx_client_errmsg(cli), "at least 2 positive"));
}

/* A model change (--reembed: the images get new ids, the tag sets stay):
 * a search by the classifier fails, naming the command that refits it (a
 * search never fits); learn --refit fits it for the new model, on the
 * re-embedded images, and the search works again. */
static void
test_model_change(void **state)
{
	char out[16384], want[64];

	(void)state;
	learn_reds(out, sizeof(out));
	restart_on(tiny_dir);
	assert_int_equal(run("search --learned reds -k 8 --json", out,
	    sizeof(out)), 1);
	if (strstr(out, "clipdex learn reds --refit") == NULL)
		fail_msg("search of a stale classifier: %s", out);
	/* on the new ids: every example found again */
	assert_int_equal(run("learn reds --refit --json", out, sizeof(out)), 0);
	snprintf(want, sizeof(want), "\"n_pos\":%d,\"n_neg\":%d", PER_KIND,
	    PER_KIND);
	if (strstr(out, want) == NULL)
		fail_msg("refit: %s", out);
	assert_int_equal(run("search --learned reds -k 8 --json", out,
	    sizeof(out)), 0);
	int lines = 0;
	for (char *p = out; (p = strchr(p, '\n')) != NULL; p++)
		lines++;
	assert_int_equal(lines, 8);
	assert_non_null(strstr(out, "\"prob\":"));
	restart_on(model_dir);
}

static void
test_errors(void **state)
{
	char out[4096], args[128];
	uint64_t ids[1];

	(void)state;
	ids_of_kind(0, ids, 1);
	snprintf(args, sizeof(args), "learn one --positive id:%llu",
	    (unsigned long long)ids[0]);
	assert_int_equal(run(args, out, sizeof(out)), 1);
	assert_non_null(strstr(out, "at least 2 positive"));
	snprintf(args, sizeof(args), "learn x --positive id:%llu,id:987654",
	    (unsigned long long)ids[0]);
	assert_int_equal(run(args, out, sizeof(out)), 1);
	assert_non_null(strstr(out, "no image with id 987654"));
	assert_int_equal(run("learn x --positive /no/such/folder/", out,
	    sizeof(out)), 1);
	assert_non_null(strstr(out, "/no/such/folder"));
	assert_int_equal(run("learn x", out, sizeof(out)), 2);
	assert_int_equal(run("learn x --refit --positive id:1", out,
	    sizeof(out)), 2);
	assert_int_equal(run("learn x --positive id:x", out, sizeof(out)), 2);
	assert_int_equal(run("search --learned nosuch", out, sizeof(out)), 1);
	assert_non_null(strstr(out, "no learned classifier named nosuch"));
	assert_int_equal(run("search 'learned:'", out, sizeof(out)), 2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_learn_and_search),
		cmocka_unit_test(test_retrieve_exports),
		cmocka_unit_test(test_unlabeled_negatives),
		cmocka_unit_test(test_rerank),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_model_change),
	};
	return CLIENT_RUN_TESTS(tests, setup, teardown);
}
