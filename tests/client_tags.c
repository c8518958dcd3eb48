/*
 * Classification and tags through the daemon, end to end: build/clipdexd
 * with the tiny test model watching a folder of generated photos, driven
 * through libclipdex (cdx_classify, cdx_tags_*, search with tags) and the
 * clipdex command line.
 *
 * The expected probabilities are recomputed here by a plain loop from the
 * daemon's own embeddings (the `embed` operation gives an indexed image's
 * stored embedding and a prompt's text embedding) and the model's
 * logit_scale: softmax(exp(logit_scale) * cos) for the tiny CLIP model.
 *
 *   CDX_TEST='test_tags_*' build/tests/client_tags   (tests/client_run.h)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/client_run.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/clipdex.h"
#include "common/cdx.h"
#include "encoder/clip.h"
#include "tests/testmodel.h"
#include "tests/testutil.h"

#define N_PHOTOS 8
#define DIM_MAX 64

static char tmp[256], model_dir[300], model2_dir[300], siglip_dir[300];
static char photos[300];
static char store_dir[300], url[320], logpath[300], bindir[256];
static char key1[160], key2[160];
static float logit_scale;
static pid_t daemon_pid;
static cdx_client *cli;

/* ---- the daemon ---- */

static void
start_daemon(const char *model, const char *extra)
{
	tu_daemon d = { bindir, model, store_dir, url, photos, logpath, 0 };
	char flags[600];
	snprintf(flags, sizeof(flags), "--watch '%s' %s", photos,
	    extra ? extra : "");
	daemon_pid = tu_daemon_up(&d, flags, cli);
}

static void
stop_daemon(void)
{
	int status = tu_stop_child(daemon_pid);
	daemon_pid = 0;
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static cJSON *
call(const char *fmt, ...)
{
	char req[16384], *reply = NULL;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(req, sizeof(req), fmt, ap);
	va_end(ap);
	int rc = cdx_call(cli, req, &reply);
	if (rc != 0)
		fail_msg("%.300s: %s: %s", req, cdx_strerror(rc),
		    cdx_client_errmsg(cli));
	cJSON *r = cJSON_Parse(reply);
	free(reply);
	assert_non_null(r);
	return r;
}

/* A request that must fail with code rc and a message containing want. */
static void
call_fails(int rc, const char *want, const char *fmt, ...)
{
	char req[65536], *reply = NULL;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(req, sizeof(req), fmt, ap);
	va_end(ap);
	int got = cdx_call(cli, req, &reply);
	if (got != rc)
		fail_msg("%.200s: %s, not %s (%s)", req, cdx_strerror(got),
		    cdx_strerror(rc), reply ? reply : cdx_client_errmsg(cli));
	if (strstr(cdx_client_errmsg(cli), want) == NULL)
		fail_msg("%.200s: message '%s' does not say '%s'", req,
		    cdx_client_errmsg(cli), want);
	free(reply);
}

/* The indexed images: ids and paths, from a search that returns them all
 * (k over the collection). */
static int
all_images(uint64_t *ids, char (*paths)[400], int max)
{
	cdx_term t = { .kind = CDX_TERM_TEXT, .text = "a photo" };
	cdx_query q = { .terms = &t, .n_terms = 1, .k = 1000 };
	cdx_results *r = NULL;
	assert_int_equal(cdx_search(cli, &q, &r), 0);
	int n = (int)r->n;
	assert_true(n <= max);
	for (int i = 0; i < n; i++) {
		ids[i] = r->results[i].id;
		if (paths)
			snprintf(paths[i], 400, "%s", r->results[i].path);
	}
	cdx_results_free(r);
	return n;
}

/* Waits until the daemon has indexed `want` images and is idle. */
static void
wait_images(int64_t want)
{
	cdx_status st;
	for (int i = 0; i < 400; i++) {
		assert_int_equal(cdx_get_status(cli, &st), 0);
		if (st.images == want && st.queue_remaining == 0 && !st.scanning)
			return;
		usleep(50000);
	}
	fail_msg("the daemon has %lld images, not %lld", (long long)st.images,
	    (long long)want);
}

static void
write_photo(const char *name, unsigned seed)
{
	char p[400];
	snprintf(p, sizeof(p), "%s/%s", photos, name);
	tu_write_stripes_jpeg(p, 96 + (int)seed % 5 * 8, 80, seed);
}

/* The model's key (clip_model_info.key), logit_scale and logit_bias. */
static void
model_info(const char *dir, char key[160], float *scale, float *bias)
{
	clip_model *m = tu_model_load_fp32(dir);
	const clip_model_info *in = clip_model_get_info(m);
	snprintf(key, 160, "%s", in->key);
	if (scale)
		*scale = in->logit_scale;
	if (bias)
		*bias = in->logit_bias;
	clip_model_free(m);
}

static int
setup(void **state)
{
	(void)state;
	if (tu_lsan_nng() != 0)
		return -1;
	tu_bin_dir(bindir, sizeof(bindir));
	if (tu_suite_dirs("cdx-tags", "model", tmp, model_dir, photos,
	    store_dir, url, logpath) != 0)
		return -1;
	snprintf(model2_dir, sizeof(model2_dir), "%s/model2", tmp);
	tm_recipe r;
	tm_recipe_tiny(&r);
	mkdir(model_dir, 0755);
	if (tm_write_model(&r, model_dir) != 0)
		return -1;
	r.seed = 8;             /* another model of the same shape */
	mkdir(model2_dir, 0755);
	if (tm_write_model(&r, model2_dir) != 0)
		return -1;
	snprintf(siglip_dir, sizeof(siglip_dir), "%s/siglip", tmp);
	tm_recipe_siglip_tiny(&r, TM_FAMILY_SIGLIP);
	mkdir(siglip_dir, 0755);
	if (tm_write_model(&r, siglip_dir) != 0)
		return -1;
	model_info(model_dir, key1, &logit_scale, NULL);
	model_info(model2_dir, key2, NULL, NULL);
	mkdir(photos, 0755);
	for (int i = 0; i < N_PHOTOS; i++) {
		char name[32];
		snprintf(name, sizeof(name), "p%d.jpg", i);
		write_photo(name, 100 + (unsigned)i * 37);
	}
	if (cdx_client_open(url, &cli) != 0)
		return -1;
	cdx_client_set_timeout(cli, 60000);
	start_daemon(model_dir, NULL);
	wait_images(N_PHOTOS);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	if (daemon_pid > 0)
		stop_daemon();
	tu_suite_end(&daemon_pid, cli, tmp);
	return 0;
}

/* ---- the recomputation ---- */

/* The embedding the daemon gives for a request's term (an id's stored
 * embedding, or a text's). */
static int
embedding(const char *term_json, float *out)
{
	cJSON *r = call("{\"op\":\"embed\",%s}", term_json);
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(r, "embedding"), *v;
	int n = 0;
	cJSON_ArrayForEach(v, e) {
		assert_true(n < DIM_MAX);
		out[n++] = (float)v->valuedouble;
	}
	cJSON_Delete(r);
	return n;
}

/* softmax(exp(logit_scale) * cos) over the labels' prompts, by a loop. */
static void
expected_probs(uint64_t id, const char *const *labels, int n, double *p)
{
	float x[DIM_MAX], w[DIM_MAX];
	char term[300];
	snprintf(term, sizeof(term), "\"id\":%llu", (unsigned long long)id);
	int dim = embedding(term, x);
	double mx = -1e30, sum = 0;
	for (int i = 0; i < n; i++) {
		snprintf(term, sizeof(term), "\"text\":\"a photo of a %s.\"",
		    labels[i]);
		assert_int_equal(embedding(term, w), dim);
		double dot = 0;
		for (int d = 0; d < dim; d++)
			dot += (double)x[d] * w[d];
		p[i] = exp((double)logit_scale) * dot;
		mx = p[i] > mx ? p[i] : mx;
	}
	for (int i = 0; i < n; i++)
		sum += p[i] = exp(p[i] - mx);
	for (int i = 0; i < n; i++)
		p[i] /= sum;
}

static int
label_index(const char *const *labels, int n, const char *l)
{
	for (int i = 0; i < n; i++)
		if (strcmp(labels[i], l) == 0)
			return i;
	fail_msg("unexpected label '%s'", l);
	return -1;
}

/* ---- classify ---- */

static void
test_classify_recomputed(void **state)
{
	(void)state;
	static const char *const labels[] = { "red", "striped", "dark", "dog" };
	uint64_t ids[64];
	char paths[64][400];
	int n = all_images(ids, paths, 64);
	assert_int_equal(n, N_PHOTOS);

	/* every image by id, the first also by path: input order kept */
	cdx_term items[64 + 1];
	for (int i = 0; i < n; i++)
		items[i] = (cdx_term){ .kind = CDX_TERM_ID, .id = ids[i] };
	items[n] = (cdx_term){ .kind = CDX_TERM_PATH, .text = paths[0] };
	cdx_classify_req q = { .items = items, .n_items = (size_t)n + 1,
	    .labels = labels, .n_labels = 4 };
	cdx_classify_result *r = NULL;
	assert_int_equal(cdx_classify(cli, &q, &r), 0);
	assert_int_equal(r->n, n + 1);
	assert_int_equal(r->sigmoid, 0);        /* CLIP: softmax */
	for (int i = 0; i <= n; i++) {
		const cdx_classified *x = &r->items[i];
		double want[4], sum = 0;
		assert_int_equal(x->id, ids[i < n ? i : 0]);
		assert_string_equal(x->path, paths[i < n ? i : 0]);
		assert_int_equal(x->n, 4);
		expected_probs(x->id, labels, 4, want);
		for (size_t k = 0; k < x->n; k++) {
			int li = label_index(labels, 4, x->labels[k].label);
			if (fabs(x->labels[k].prob - want[li]) > 1e-4)
				fail_msg("image %llu, %s: %f, recomputed %f",
				    (unsigned long long)x->id, labels[li],
				    x->labels[k].prob, want[li]);
			if (k > 0)      /* highest first */
				assert_true(x->labels[k].prob <= x->labels[k - 1].prob);
			sum += x->labels[k].prob;
		}
		assert_true(fabs(sum - 1.0) < 1e-4);
	}
	cdx_classify_result_free(r);
}

static void
test_classify_upload(void **state)
{
	(void)state;
	static const char *const labels[] = { "red", "striped", "dark" };
	uint64_t ids[64];
	char paths[64][400];
	int n = all_images(ids, paths, 64);
	assert_true(n > 0);

	/* the same file uploaded (encoded now, as a search's image) and by
	 * id (its stored embedding): the same probabilities */
	cdx_term items[2] = {
		{ .kind = CDX_TERM_FILE, .text = paths[0] },
		{ .kind = CDX_TERM_ID, .id = ids[0] },
	};
	cdx_classify_req q = { .items = items, .n_items = 2, .labels = labels,
	    .n_labels = 3, .top = 2 };
	cdx_classify_result *r = NULL;
	assert_int_equal(cdx_classify(cli, &q, &r), 0);
	assert_int_equal(r->n, 2);
	assert_int_equal(r->items[0].id, 0);
	assert_string_equal(r->items[0].path, "");
	assert_int_equal(r->items[0].n, 2);     /* top 2 */
	assert_int_equal(r->items[1].n, 2);
	for (int k = 0; k < 2; k++) {
		assert_string_equal(r->items[0].labels[k].label,
		    r->items[1].labels[k].label);
		assert_true(fabs(r->items[0].labels[k].prob -
		    r->items[1].labels[k].prob) < 1e-3);
	}
	cdx_classify_result_free(r);

	/* labels as one comma-separated string (the page sends them so):
	 * parsed by cls's rules, the same answer */
	char req[256];
	snprintf(req, sizeof(req), "{\"op\":\"classify\",\"labels\":\" red , "
	    "striped,dark\",\"items\":[{\"id\":%llu}]}",
	    (unsigned long long)ids[0]);
	cJSON *a = call("%s", req);
	snprintf(req, sizeof(req), "{\"op\":\"classify\",\"labels\":[\"red\","
	    "\"striped\",\"dark\"],\"items\":[{\"id\":%llu}]}",
	    (unsigned long long)ids[0]);
	cJSON *b = call("%s", req);
	assert_true(cJSON_Compare(cJSON_GetObjectItem(a, "results"),
	    cJSON_GetObjectItem(b, "results"), 1));
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(a, "mode")),
	    "softmax");
	cJSON_Delete(a);
	cJSON_Delete(b);
}

static void
test_classify_errors(void **state)
{
	(void)state;
	uint64_t ids[64];
	int n = all_images(ids, NULL, 64);
	assert_true(n > 0);
	unsigned long long id = (unsigned long long)ids[0];

	call_fails(CDX_EINVAL, "label", "{\"op\":\"classify\",\"labels\":[],"
	    "\"items\":[{\"id\":%llu}]}", id);
	call_fails(CDX_EINVAL, "", "{\"op\":\"classify\",\"labels\":[\"a\","
	    "\"\"],\"items\":[{\"id\":%llu}]}", id);
	call_fails(CDX_EINVAL, "cat", "{\"op\":\"classify\",\"labels\":[\"cat\","
	    "\"dog\",\"cat\"],\"items\":[{\"id\":%llu}]}", id);
	call_fails(CDX_EINVAL, "{}", "{\"op\":\"classify\",\"labels\":[\"cat\"],"
	    "\"templates\":[\"a photo\"],\"items\":[{\"id\":%llu}]}", id);
	call_fails(CDX_EINVAL, "template_set", "{\"op\":\"classify\",\"labels\":"
	    "[\"cat\"],\"template_set\":\"nope\",\"items\":[{\"id\":%llu}]}", id);
	call_fails(CDX_ENOTFOUND, "123456789", "{\"op\":\"classify\",\"labels\":"
	    "[\"cat\",\"dog\"],\"items\":[{\"id\":%llu},{\"id\":123456789}]}", id);
	call_fails(CDX_ENOTFOUND, "/nowhere/x.jpg", "{\"op\":\"classify\","
	    "\"labels\":[\"cat\",\"dog\"],\"items\":[{\"path\":"
	    "\"/nowhere/x.jpg\"}]}");
	call_fails(CDX_ENOTFOUND, "nosuchset", "{\"op\":\"classify\",\"set\":"
	    "\"nosuchset\",\"items\":[{\"id\":%llu}]}", id);
	call_fails(CDX_EINVAL, "items", "{\"op\":\"classify\",\"labels\":"
	    "[\"cat\"]}");
	call_fails(CDX_EINVAL, "labels", "{\"op\":\"classify\",\"items\":"
	    "[{\"id\":%llu}]}", id);

	/* 1,001 labels: too many (1,000 is the limit) */
	char *req = malloc(32000), *p = req;
	p += sprintf(p, "{\"op\":\"classify\",\"items\":[{\"id\":%llu}],"
	    "\"labels\":[", id);
	for (int i = 0; i < 1001; i++)
		p += sprintf(p, "%s\"l%d\"", i ? "," : "", i);
	sprintf(p, "]}");
	call_fails(CDX_ETOOBIG, "1001 labels: at most 1000", "%s", req);
	/* 60 labels x 80 ImageNet prompts: 4,800 text encodes, over the
	 * 4,096 one request may cost (refused before any is encoded) */
	p = req;
	p += sprintf(p, "{\"op\":\"classify\",\"items\":[{\"id\":%llu}],"
	    "\"template_set\":\"imagenet\",\"labels\":[", id);
	for (int i = 0; i < 60; i++)
		p += sprintf(p, "%s\"l%d\"", i ? "," : "", i);
	sprintf(p, "]}");
	call_fails(CDX_ETOOBIG, "4800 prompts", "%s", req);
	/* the same cap for tags_define, with templates given */
	p = req;
	p += sprintf(p, "{\"op\":\"tags_define\",\"name\":\"huge\","
	    "\"templates\":[");
	for (int i = 0; i < 100; i++)
		p += sprintf(p, "%s\"t%d {}\"", i ? "," : "", i);
	p += sprintf(p, "],\"labels\":[");
	for (int i = 0; i < 41; i++)
		p += sprintf(p, "%s\"l%d\"", i ? "," : "", i);
	sprintf(p, "]}");
	call_fails(CDX_ETOOBIG, "4100 prompts", "%s", req);
	/* 101 items x 1000 labels: 101,000 label probabilities in the reply,
	 * over the 100,000 one may hold; with "top": 5 it is answered */
	free(req);
	req = malloc(64000);
	assert_non_null(req);
	for (int top = 0; top <= 5; top += 5) {
		p = req;
		p += sprintf(p, "{\"op\":\"classify\",%s\"items\":[",
		    top ? "\"top\":5," : "");
		for (int i = 0; i < 101; i++)
			p += sprintf(p, "%s{\"id\":%llu}", i ? "," : "", id);
		p += sprintf(p, "],\"labels\":[");
		for (int i = 0; i < 1000; i++)
			p += sprintf(p, "%s\"l%d\"", i ? "," : "", i);
		sprintf(p, "]}");
		if (top == 0) {
			call_fails(CDX_ETOOBIG, "101000 label probabilities", "%s",
			    req);
		} else {
			cJSON *ok = call("%s", req);
			cJSON *res = cJSON_GetObjectItem(ok, "results");
			assert_int_equal(cJSON_GetArraySize(res), 101);
			assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(
			    cJSON_GetArrayItem(res, 100), "labels")), 5);
			cJSON_Delete(ok);
		}
	}
	/* through the library: the same rule */
	const char *one[1] = { "cat" };
	cdx_term it = { .kind = CDX_TERM_ID, .id = 987654321 };
	cdx_classify_req q = { .items = &it, .n_items = 1, .labels = one,
	    .n_labels = 1 };
	cdx_classify_result *r = NULL;
	assert_int_equal(cdx_classify(cli, &q, &r), CDX_ENOTFOUND);
	assert_non_null(strstr(cdx_client_errmsg(cli), "987654321"));
	assert_null(r);
	free(req);
}

/* ---- tags ---- */

static const char *const colour_labels[] = { "red", "green", "blue" };

/* Defines "colour" (threshold 0: every image gets its top label). */
static int64_t
define_colour(void)
{
	cdx_tagset_def d = { .name = "colour", .labels = colour_labels,
	    .n_labels = 3, .has_threshold = 1, .threshold = 0.0f };
	int64_t tagged = -1;
	assert_int_equal(cdx_tags_define(cli, &d, &tagged), 0);
	return tagged;
}

/* Images with a tag of set, summed over its labels. */
static int64_t
tagged_images(const char *set)
{
	cdx_tag_counts *t = NULL;
	int64_t sum = 0;
	assert_int_equal(cdx_tags_counts(cli, set, &t), 0);
	for (size_t i = 0; i < t->n; i++) {
		assert_string_equal(t->counts[i].set, set);
		sum += t->counts[i].images;
	}
	cdx_tag_counts_free(t);
	return sum;
}

/* The tags of the image at path (from a search), as "set/label" joined
 * by spaces into out; -1 when the image is not found. */
static int
tags_of(const char *path, char *out, size_t cap)
{
	cdx_term t = { .kind = CDX_TERM_TEXT, .text = "a photo" };
	cdx_query q = { .terms = &t, .n_terms = 1, .k = 1000 };
	cdx_results *r = NULL;
	int found = -1;
	out[0] = '\0';
	assert_int_equal(cdx_search(cli, &q, &r), 0);
	for (size_t i = 0; i < r->n; i++) {
		if (strcmp(r->results[i].path, path) != 0)
			continue;
		found = 0;
		for (size_t k = 0; k < r->results[i].n_tags; k++) {
			size_t l = strlen(out);
			snprintf(out + l, cap - l, "%s%s/%s", l ? " " : "",
			    r->results[i].tags[k].set, r->results[i].tags[k].label);
		}
	}
	cdx_results_free(r);
	return found;
}

static void
test_tags_define_and_counts(void **state)
{
	(void)state;
	int64_t images = all_images((uint64_t[64]){ 0 }, NULL, 64);
	assert_int_equal(define_colour(), images);
	assert_int_equal(tagged_images("colour"), images);

	cdx_tagsets *s = NULL;
	assert_int_equal(cdx_tags_show(cli, "colour", &s), 0);
	assert_int_equal(s->n, 1);
	assert_string_equal(s->sets[0].name, "colour");
	assert_string_equal(s->sets[0].origin, "zero-shot");
	assert_string_equal(s->sets[0].model, key1);
	assert_int_equal(s->sets[0].current, 1);
	assert_int_equal(s->sets[0].n_labels, 3);
	assert_int_equal(s->sets[0].n_templates, 1);
	assert_string_equal(s->sets[0].templates[0], "a photo of a {}.");
	cdx_tagsets_free(s);
	assert_int_equal(cdx_tags_list(cli, &s), 0);
	int seen = 0;
	for (size_t i = 0; i < s->n; i++)
		seen += strcmp(s->sets[i].name, "colour") == 0;
	assert_int_equal(seen, 1);
	cdx_tagsets_free(s);

	/* each image's tag is its most probable label, as classify says */
	uint64_t ids[64];
	char paths[64][400], tags[512], want[128];
	int n = all_images(ids, paths, 64);
	for (int i = 0; i < n; i++) {
		cdx_term it = { .kind = CDX_TERM_ID, .id = ids[i] };
		cdx_classify_req q = { .items = &it, .n_items = 1, .set = "colour" };
		cdx_classify_result *r = NULL;
		assert_int_equal(cdx_classify(cli, &q, &r), 0);
		snprintf(want, sizeof(want), "colour/%s", r->items[0].labels[0].label);
		cdx_classify_result_free(r);
		assert_int_equal(tags_of(paths[i], tags, sizeof(tags)), 0);
		assert_non_null(strstr(tags, want));
	}
}

static void
test_tags_follow_indexer(void **state)
{
	(void)state;
	char path[400], moved[400], tags[512];
	int64_t images = all_images((uint64_t[64]){ 0 }, NULL, 64);
	define_colour();

	/* a new image is tagged as it is indexed */
	write_photo("new.jpg", 4242);
	wait_images(images + 1);
	snprintf(path, sizeof(path), "%s/new.jpg", photos);
	assert_int_equal(tags_of(path, tags, sizeof(tags)), 0);
	assert_non_null(strstr(tags, "colour/"));
	assert_int_equal(tagged_images("colour"), images + 1);

	/* moved: the same record, its tags kept */
	snprintf(moved, sizeof(moved), "%s/moved.jpg", photos);
	assert_int_equal(rename(path, moved), 0);
	for (int i = 0; i < 200 && tags_of(moved, tags, sizeof(tags)) != 0; i++)
		usleep(50000);
	assert_int_equal(tags_of(moved, tags, sizeof(tags)), 0);
	assert_non_null(strstr(tags, "colour/"));
	assert_int_equal(tags_of(path, tags, sizeof(tags)), -1);
	assert_int_equal(tagged_images("colour"), images + 1);

	/* deleted: its tags go with it */
	assert_int_equal(unlink(moved), 0);
	wait_images(images);
	assert_int_equal(tagged_images("colour"), images);
}

static void
test_tags_redefine(void **state)
{
	(void)state;
	int64_t images = all_images((uint64_t[64]){ 0 }, NULL, 64);
	define_colour();
	static const char *const shapes[] = { "circle", "square" };
	cdx_tagset_def d = { .name = "colour", .labels = shapes, .n_labels = 2,
	    .has_threshold = 1, .threshold = 0.0f };
	int64_t tagged = -1;
	assert_int_equal(cdx_tags_define(cli, &d, &tagged), 0);
	assert_int_equal(tagged, images);

	/* re-tagged: only the new labels */
	cdx_tag_counts *t = NULL;
	int64_t sum = 0;
	assert_int_equal(cdx_tags_counts(cli, "colour", &t), 0);
	assert_int_equal(t->n, 2);
	for (size_t i = 0; i < t->n; i++) {
		assert_true(strcmp(t->counts[i].label, "circle") == 0 ||
		    strcmp(t->counts[i].label, "square") == 0);
		sum += t->counts[i].images;
	}
	assert_int_equal(sum, images);
	cdx_tag_counts_free(t);

	/* threshold 1: no label reaches it, nothing is tagged */
	d.threshold = 1.0f;
	assert_int_equal(cdx_tags_define(cli, &d, &tagged), 0);
	assert_int_equal(tagged_images("colour"), 0);

	/* deleted: gone, with its tags */
	assert_int_equal(cdx_tags_delete(cli, "colour"), 0);
	assert_int_equal(cdx_tags_delete(cli, "colour"), CDX_ENOTFOUND);
	assert_non_null(strstr(cdx_client_errmsg(cli), "colour"));
	cdx_tag_counts *none = NULL;
	assert_int_equal(cdx_tags_counts(cli, "colour", &none), CDX_ENOTFOUND);
	assert_null(none);

	/* bad sets are refused with cls's reasons */
	d.threshold = 0.5f;
	d.name = "bad name";
	assert_int_equal(cdx_tags_define(cli, &d, NULL), CDX_EINVAL);
	d.name = "ok";
	static const char *const dup[] = { "a", "a" };
	d.labels = dup;
	assert_int_equal(cdx_tags_define(cli, &d, NULL), CDX_EINVAL);
	assert_non_null(strstr(cdx_client_errmsg(cli), "a"));
	d.labels = shapes;
	static const char *const notmpl[] = { "a picture" };
	d.templates = notmpl;
	d.n_templates = 1;
	assert_int_equal(cdx_tags_define(cli, &d, NULL), CDX_EINVAL);
	assert_non_null(strstr(cdx_client_errmsg(cli), "{}"));
}

static void
test_tags_filter_search(void **state)
{
	(void)state;
	int64_t images = all_images((uint64_t[64]){ 0 }, NULL, 64);
	define_colour();
	cdx_tag_counts *t = NULL;
	assert_int_equal(cdx_tags_counts(cli, "colour", &t), 0);
	cdx_term term = { .kind = CDX_TERM_TEXT, .text = "a photo" };
	int64_t total = 0;
	for (size_t i = 0; i < t->n; i++) {
		char full[128];
		const char *tag[1] = { t->counts[i].label };
		snprintf(full, sizeof(full), "colour/%s", t->counts[i].label);
		const char *settag[1] = { full };
		for (int form = 0; form < 2; form++) {
			cdx_query q = { .terms = &term, .n_terms = 1, .k = 1000,
			    .tags = form ? settag : tag, .n_tags = 1 };
			cdx_results *r = NULL;
			assert_int_equal(cdx_search(cli, &q, &r), 0);
			assert_int_equal(r->n, t->counts[i].images);
			for (size_t h = 0; h < r->n; h++) {
				int has = 0;
				for (size_t k = 0; k < r->results[h].n_tags; k++)
					has |= strcmp(r->results[h].tags[k].label, tag[0]) == 0;
				assert_true(has);
			}
			cdx_results_free(r);
		}
		/* not_tags: the others */
		cdx_query q = { .terms = &term, .n_terms = 1, .k = 1000,
		    .not_tags = tag, .n_not_tags = 1 };
		cdx_results *r = NULL;
		assert_int_equal(cdx_search(cli, &q, &r), 0);
		assert_int_equal((int64_t)r->n, images - t->counts[i].images);
		cdx_results_free(r);
		total += t->counts[i].images;
	}
	assert_int_equal(total, images);
	cdx_tag_counts_free(t);

	/* similar takes them too; an unknown tag matches nothing */
	uint64_t ids[64];
	all_images(ids, NULL, 64);
	const char *unknown[1] = { "no-such-tag" };
	cdx_query o = { .k = 100, .tags = unknown, .n_tags = 1 };
	cdx_results *r = NULL;
	assert_int_equal(cdx_similar(cli, ids[0], &o, &r), 0);
	assert_int_equal(r->n, 0);
	cdx_results_free(r);
	o = (cdx_query){ .k = 100, .not_tags = unknown, .n_not_tags = 1 };
	assert_int_equal(cdx_similar(cli, ids[0], &o, &r), 0);
	assert_int_equal((int64_t)r->n, images - 1);
	cdx_results_free(r);
}

static void
test_tags_restart(void **state)
{
	(void)state;
	int64_t images = all_images((uint64_t[64]){ 0 }, NULL, 64);
	define_colour();
	cdx_tag_counts *before = NULL, *after = NULL;
	assert_int_equal(cdx_tags_counts(cli, "colour", &before), 0);
	stop_daemon();
	start_daemon(model_dir, NULL);
	wait_images(images);
	assert_int_equal(cdx_tags_counts(cli, "colour", &after), 0);
	assert_int_equal(after->n, before->n);
	for (size_t i = 0; i < after->n; i++) {
		assert_string_equal(after->counts[i].label, before->counts[i].label);
		assert_int_equal(after->counts[i].images, before->counts[i].images);
	}
	cdx_tag_counts_free(before);
	cdx_tag_counts_free(after);
}

/* How many times the daemon's log says text. */
static int
log_count(const char *text)
{
	size_t len = 0;
	char *log = tu_read_file(logpath, &len);
	int n = 0;
	for (const char *p = log; p != NULL && (p = strstr(p, text)) != NULL;
	    p++)
		n++;
	free(log);
	return n;
}

/* The sets' model after a daemon start with model dir (--reembed). */
static void
restart_with(const char *dir, const char *key)
{
	int64_t images = all_images((uint64_t[64]){ 0 }, NULL, 64);
	stop_daemon();
	start_daemon(dir, "--reembed");
	wait_images(images);
	cdx_tagsets *s = NULL;
	assert_int_equal(cdx_tags_show(cli, "colour", &s), 0);
	assert_string_equal(s->sets[0].model, key);
	assert_int_equal(s->sets[0].current, 1);
	assert_int_equal(s->sets[0].n_labels, 3);
	cdx_tagsets_free(s);
	/* re-embedded images are tagged again as they are stored */
	assert_int_equal(tagged_images("colour"), images);
}

static void
test_tags_rebuilt_for_another_model(void **state)
{
	(void)state;
	static const char said[] = "tags are rebuilt when the model changes";
	define_colour();
	int before = log_count(said);
	restart_with(model2_dir, key2);
	assert_int_equal(log_count(said), before + 1);   /* one set */
	/* and back, so the other tests find the first model */
	restart_with(model_dir, key1);
}

/* A SigLIP model: per-label sigmoids with the model's logit_bias
 * ("sigmoid"), and tag sets multi-label unless asked otherwise. */
static void
test_classify_siglip(void **state)
{
	(void)state;
	static const char *const labels[] = { "red", "striped", "dark" };
	char skey[160];
	float sscale = 0, sbias = 0;
	model_info(siglip_dir, skey, &sscale, &sbias);
	int64_t images = all_images((uint64_t[64]){ 0 }, NULL, 64);
	stop_daemon();
	start_daemon(siglip_dir, "--reembed");
	wait_images(images);

	uint64_t ids[64];
	int n = all_images(ids, NULL, 64);
	cdx_term it = { .kind = CDX_TERM_ID, .id = ids[n - 1] };
	cdx_classify_req q = { .items = &it, .n_items = 1, .labels = labels,
	    .n_labels = 3 };
	cdx_classify_result *r = NULL;
	assert_int_equal(cdx_classify(cli, &q, &r), 0);
	assert_int_equal(r->sigmoid, 1);
	float x[DIM_MAX], w[DIM_MAX];
	char term[300];
	snprintf(term, sizeof(term), "\"id\":%llu", (unsigned long long)it.id);
	int dim = embedding(term, x);
	for (size_t k = 0; k < r->items[0].n; k++) {
		snprintf(term, sizeof(term), "\"text\":\"a photo of a %s.\"",
		    r->items[0].labels[k].label);
		assert_int_equal(embedding(term, w), dim);
		double dot = 0;
		for (int d = 0; d < dim; d++)
			dot += (double)x[d] * w[d];
		double want = 1 / (1 + exp(-(exp((double)sscale) * dot + sbias)));
		if (fabs(r->items[0].labels[k].prob - want) > 1e-4)
			fail_msg("%s: %f, recomputed %f", r->items[0].labels[k].label,
			    r->items[0].labels[k].prob, want);
	}
	cdx_classify_result_free(r);

	cdx_tagset_def d = { .name = "sig", .labels = labels, .n_labels = 3 };
	assert_int_equal(cdx_tags_define(cli, &d, NULL), 0);
	cdx_tagsets *s = NULL;
	assert_int_equal(cdx_tags_show(cli, "sig", &s), 0);
	assert_int_equal(s->sets[0].sigmoid, 1);
	assert_int_equal(s->sets[0].multi, 1);
	assert_string_equal(s->sets[0].model, skey);
	cdx_tagsets_free(s);
	assert_int_equal(cdx_tags_delete(cli, "sig"), 0);

	/* back to the first model for the other tests */
	stop_daemon();
	start_daemon(model_dir, "--reembed");
	wait_images(images);
}

/* ---- the command line ---- */

static void
test_cli_classify_json(void **state)
{
	(void)state;
	tu_daemon d = { bindir, model_dir, store_dir, url, photos, logpath, 0 };
	uint64_t ids[64];
	char paths[64][400], args[1400], out[65536];
	int n = all_images(ids, paths, 64);
	assert_true(n >= 2);

	snprintf(args, sizeof(args), "classify --json --labels 'red,green,blue' "
	    "--id %llu --image '%s' --path '%s'", (unsigned long long)ids[0],
	    paths[1], paths[1]);
	assert_int_equal(tu_cli(&d, args, out, sizeof(out)), 0);
	/* one object per image per line, input order */
	char *at = out;
	const char *want_image[3] = { paths[0], paths[1], paths[1] };
	for (int i = 0; i < 3; i++) {
		cJSON *o = tu_jsonl_next(&at);
		assert_non_null(o);
		assert_string_equal(cJSON_GetStringValue(tu_jget(o, "image")),
		    want_image[i]);
		assert_string_equal(cJSON_GetStringValue(tu_jget(o, "mode")),
		    "softmax");
		const cJSON *l = tu_jget(o, "labels"), *e;
		assert_int_equal(cJSON_GetArraySize(l), 3);
		double prev = 2, sum = 0;
		cJSON_ArrayForEach(e, l) {
			double p = tu_jnum(e, "prob");
			assert_non_null(cJSON_GetStringValue(tu_jget(e, "label")));
			assert_true(p <= prev && p >= 0 && p <= 1);
			prev = p;
			sum += p;
		}
		assert_true(fabs(sum - 1) < 1e-3);
		if (i == 0)
			assert_int_equal(tu_jint(o, "id"), ids[0]);
		cJSON_Delete(o);
	}
	assert_null(tu_jsonl_next(&at));

	/* bad input: a clear message and exit 1 (the daemon refused) or 2 */
	snprintf(args, sizeof(args), "classify --labels 'cat,cat' --id %llu",
	    (unsigned long long)ids[0]);
	assert_int_not_equal(tu_cli(&d, args, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "cat"));
	snprintf(args, sizeof(args), "classify --labels 'cat,dog' --id 99999999");
	assert_int_equal(tu_cli(&d, args, out, sizeof(out)), 1);
	assert_non_null(strstr(out, "99999999"));
}

static void
test_cli_tags(void **state)
{
	(void)state;
	tu_daemon d = { bindir, model_dir, store_dir, url, photos, logpath, 0 };
	char out[65536];
	int64_t images = all_images((uint64_t[64]){ 0 }, NULL, 64);

	assert_int_equal(tu_cli(&d, "tags define kind --labels 'photo,drawing' "
	    "--threshold 0", out, sizeof(out)), 0);
	assert_non_null(strstr(out, "images tagged"));
	assert_int_equal(tu_cli(&d, "tags list", out, sizeof(out)), 0);
	assert_non_null(strstr(out, "kind"));
	assert_int_equal(tu_cli(&d, "tags show kind --json", out, sizeof(out)),
	    0);
	cJSON *o = cJSON_Parse(out);
	assert_non_null(o);
	assert_string_equal(cJSON_GetStringValue(tu_jget(o, "name")), "kind");
	assert_int_equal(cJSON_GetArraySize(tu_jget(o, "labels")), 2);
	cJSON_Delete(o);

	/* counts add up; search --tag keeps only those images and shows
	 * their tags */
	assert_int_equal(tu_cli(&d, "tags counts kind --json", out, sizeof(out)),
	    0);
	char *at = out;
	int64_t photo = -1, sum = 0;
	for (cJSON *c; (c = tu_jsonl_next(&at)) != NULL; cJSON_Delete(c)) {
		if (strcmp(cJSON_GetStringValue(tu_jget(c, "label")), "photo") == 0)
			photo = tu_jint(c, "images");
		sum += tu_jint(c, "images");
	}
	assert_int_equal(sum, images);
	assert_int_equal(tu_cli(&d, "search 'a photo' -k 100 --json --tag "
	    "kind/photo", out, sizeof(out)), 0);
	at = out;
	int64_t hits = 0;
	for (cJSON *c; (c = tu_jsonl_next(&at)) != NULL; cJSON_Delete(c)) {
		char *s = cJSON_PrintUnformatted(tu_jget(c, "tags"));
		assert_non_null(strstr(s, "\"label\":\"photo\""));
		free(s);
		hits++;
	}
	assert_int_equal(hits, photo);
	assert_int_equal(tu_cli(&d, "search 'a photo' -k 100 --paths --not-tag "
	    "photo --not-tag drawing", out, sizeof(out)), 0);
	assert_string_equal(out, "");
	assert_int_equal(tu_cli(&d, "tags delete kind", out, sizeof(out)), 0);
	assert_int_not_equal(tu_cli(&d, "tags show kind", out, sizeof(out)), 0);
	assert_non_null(strstr(out, "kind"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify_recomputed),
		cmocka_unit_test(test_classify_upload),
		cmocka_unit_test(test_classify_errors),
		cmocka_unit_test(test_classify_siglip),
		cmocka_unit_test(test_tags_define_and_counts),
		cmocka_unit_test(test_tags_follow_indexer),
		cmocka_unit_test(test_tags_redefine),
		cmocka_unit_test(test_tags_filter_search),
		cmocka_unit_test(test_tags_restart),
		cmocka_unit_test(test_cli_classify_json),
		cmocka_unit_test(test_cli_tags),
		cmocka_unit_test(test_tags_rebuilt_for_another_model),
	};
	return CLIENT_RUN_TESTS(tests, setup, teardown);
}
