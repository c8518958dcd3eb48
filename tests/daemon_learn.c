/*
 * Few-shot classifiers through a live daemon (daemon/learn_op.c): learn,
 * search "learned", the learned:NAME term, rerank, the refit of a probe
 * made with another model, and the errors.  The daemon runs in this
 * process (srv_start) on the tiny test model; its store holds three kinds
 * of images whose embeddings are put directly: "red" ones near one axis,
 * "blue" ones near another, "other" ones spread over the rest, so that
 * red against blue is clearly separable.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/learn_op.h"
#include "daemon/srv_internal.h"
#include "tests/srv_fixture.h"
#include "tests/testmodel.h"
#include "tests/testutil.h"

#define N_RED 12
#define N_BLUE 12
#define N_OTHER 36

static tu_srv fx;
static uint64_t red[N_RED], blue[N_BLUE], other[N_OTHER];
static int dim;

/* Deterministic noise in [-1, 1). */
static float
noise(unsigned *s)
{
	*s = *s * 1103515245u + 12345u;
	return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* kind 0 red (axis 1), 1 blue (axis 2), 2 other (axes 3..) */
static void
vector_of(float *v, int kind, int j)
{
	unsigned s = (unsigned)(kind * 1000 + j + 1);
	double n = 0;

	for (int d = 0; d < dim; d++)
		v[d] = 0.15f * noise(&s);
	if (kind < 2)
		v[1 + kind] += 1.0f;
	else
		v[3 + j % (dim - 3)] += 1.0f;
	for (int d = 0; d < dim; d++)
		n += (double)v[d] * v[d];
	for (int d = 0; d < dim; d++)
		v[d] = (float)(v[d] / sqrt(n));
}

static int
fill_store(void)
{
	static const char *const kinds[] = { "red", "blue", "other" };
	static const int counts[] = { N_RED, N_BLUE, N_OTHER };
	uint64_t *ids[] = { red, blue, other };
	clip_model *m = NULL;
	store *st = NULL;
	cdx_error err;
	float *v = NULL;
	int rc = -1;

	if (tu_srv_store_open(&fx, &m, &st) != 0)
		return -1;
	dim = clip_model_get_info(m)->embed_dim;
	if ((v = malloc(sizeof(float) * (size_t)dim)) == NULL)
		goto out_free;
	for (int k = 0; k < 3; k++)
		for (int j = 0; j < counts[k]; j++) {
			char path[96];
			snprintf(path, sizeof(path), "/learn/%s/%s%02d.jpg", kinds[k],
			    kinds[k], j);
			vector_of(v, k, j);
			store_image img = {
				.path = path, .size = 1000 + j, .width = 64,
				.height = 48, .capture_time = STORE_TIME_UNKNOWN,
				.embedding = v,
			};
			img.hash[0] = (uint8_t)k;
			img.hash[1] = (uint8_t)j;
			if (store_image_put(st, &img, 1, &err) != 0) {
				fprintf(stderr, "store_image_put: %s\n", err.msg);
				goto out_free;
			}
			ids[k][j] = img.id;
		}
	rc = 0;
out_free:
	store_close(st);
	free(v);
	clip_model_free(m);
	return rc;
}

static int
setup(void **state)
{
	cdx_error err;

	(void)state;
	if (tu_srv_dirs(&fx, "learn") != 0 || fill_store() != 0)
		return -1;
	tu_srv_config(&fx, NULL, "inproc://daemon-learn-test");
	return tu_srv_start(&fx, &err) != 0 ? -1 : 0;
}

static int
teardown(void **state)
{
	(void)state;
	tu_srv_teardown(&fx);
	return 0;
}

/* The reply to a request and its HTTP status. */
static cJSON *
call(const char *json, int *status)
{
	char *out = NULL;
	size_t len;

	srv_handle(fx.srv, json, strlen(json), SRV_ORIGIN_LOCAL, &out, &len,
	    status);
	cJSON *r = cJSON_Parse(out);
	if (r == NULL)
		fail_msg("%s: not JSON: %s", json, out);
	free(out);
	return r;
}

static cJSON *
call_ok(const char *json)
{
	int st;
	cJSON *r = call(json, &st);
	if (st != 200) {
		char *t = cJSON_PrintUnformatted(r);
		fail_msg("%s: HTTP %d: %s", json, st, t);
	}
	return r;
}

/* Asserts the request fails with code and a message holding part. */
static void
call_fails(const char *json, const char *code, const char *part)
{
	int st;
	cJSON *r = call(json, &st);
	const cJSON *e = cJSON_GetObjectItem(r, "error");
	const char *c = cJSON_GetStringValue(cJSON_GetObjectItem(e, "code"));
	const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(e, "message"));
	if (c == NULL || strcmp(c, code) != 0 || m == NULL ||
	    strstr(m, part) == NULL)
		fail_msg("%s: expected %s '%s', got %s '%s'", json, code, part,
		    c ? c : "(none)", m ? m : "(none)");
	cJSON_Delete(r);
}

static int
kind_of(uint64_t id)
{
	for (int j = 0; j < N_RED; j++)
		if (red[j] == id)
			return 0;
	for (int j = 0; j < N_BLUE; j++)
		if (blue[j] == id)
			return 1;
	return 2;
}

static double
num(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItem(o, k);
	if (!cJSON_IsNumber(v))
		fail_msg("no number '%s'", k);
	return v->valuedouble;
}

/* The first n results of a search are all of kind, with prob falling. */
static void
expect_kind_first(const char *json, int n, int kind, int with_prob)
{
	cJSON *r = call_ok(json);
	const cJSON *arr = cJSON_GetObjectItem(r, "results");
	double last = 2;

	if (cJSON_GetArraySize(arr) < n)
		fail_msg("%s: %d results, wanted %d", json, cJSON_GetArraySize(arr), n);
	for (int i = 0; i < n; i++) {
		const cJSON *h = cJSON_GetArrayItem(arr, i);
		int k = kind_of((uint64_t)num(h, "id"));
		if (k != kind)
			fail_msg("%s: result %d is of kind %d, wanted %d", json, i, k,
			    kind);
		if (with_prob) {
			double p = num(h, "prob");
			assert_true(p <= last + 1e-9);
			assert_true(p > 0.5);   /* the probe says "yes" to its kind */
			last = p;
		}
	}
	cJSON_Delete(r);
}

/* The classifier "red": every red image against every blue one, from
 * their folders; the reply. */
static cJSON *
learn_red(void)
{
	return call_ok("{\"op\":\"learn\",\"name\":\"red\","
	    "\"positive\":[{\"path\":\"/learn/red\"}],"
	    "\"negative\":[{\"path\":\"/learn/blue/\"}]}");
}

/* Learned from folders: every red image and no blue one; the search by
 * the classifier ranks every red image first, by its probability. */
static void
test_learn_folders_and_search(void **state)
{
	(void)state;
	cJSON *r = learn_red();
	assert_int_equal((int)num(r, "n_pos"), N_RED);
	assert_int_equal((int)num(r, "n_neg"), N_BLUE);
	assert_false(cJSON_IsTrue(cJSON_GetObjectItem(r, "unlabeled_negatives")));
	assert_true(num(r, "folds") >= 2);
	assert_true(num(r, "cv_accuracy") == 1.0);
	assert_true(num(r, "tagged") >= N_RED);
	cJSON_Delete(r);

	char req[128];
	snprintf(req, sizeof(req), "{\"op\":\"search\",\"learned\":\"red\","
	    "\"k\":%d}", N_RED + 5);
	expect_kind_first(req, N_RED, 0, 1);
	/* blue last, the probe saying "no" */
	cJSON *all = call_ok("{\"op\":\"search\",\"learned\":\"red\","
	    "\"k\":100}");
	const cJSON *res = cJSON_GetObjectItem(all, "results");
	assert_int_equal(cJSON_GetArraySize(res), N_RED + N_BLUE + N_OTHER);
	for (int i = N_RED + N_OTHER; i < cJSON_GetArraySize(res); i++) {
		const cJSON *h = cJSON_GetArrayItem(res, i);
		assert_int_equal(kind_of((uint64_t)num(h, "id")), 1);
		assert_true(num(h, "prob") < 0.5);
	}
	cJSON_Delete(all);
	/* min_prob cuts on the probe's probability, on any model (the tiny
	 * model is a CLIP one), in both forms */
	static const char *const cut[] = {
		"{\"op\":\"search\",\"learned\":\"red\",\"min_prob\":0.5,"
		"\"k\":100}",
		"{\"op\":\"search\",\"terms\":[{\"learned\":\"red\"}],"
		"\"min_prob\":0.5,\"k\":100}",
	};
	for (int f = 0; f < 2; f++) {
		cJSON *m = call_ok(cut[f]);
		const cJSON *mr = cJSON_GetObjectItem(m, "results");
		int reds = 0;
		for (int i = 0; i < cJSON_GetArraySize(mr); i++) {
			const cJSON *h = cJSON_GetArrayItem(mr, i);
			int k = kind_of((uint64_t)num(h, "id"));
			assert_true(num(h, "prob") >= 0.5);
			assert_int_not_equal(k, 1);
			reds += k == 0;
		}
		assert_int_equal(reds, N_RED);
		cJSON_Delete(m);
	}
	call_fails("{\"op\":\"search\",\"text\":\"x\",\"min_prob\":0.5}",
	    "bad_request", "min_prob");
	/* the same ranking as the one term learned:red */
	snprintf(req, sizeof(req), "{\"op\":\"search\",\"terms\":[{\"learned\":"
	    "\"red\"}],\"k\":%d}", N_RED + 5);
	expect_kind_first(req, N_RED, 0, 1);
	/* and its opposite puts red last: blue or other first */
	cJSON *o = call_ok("{\"op\":\"search\",\"terms\":[{\"learned\":\"red\","
	    "\"weight\":-1}],\"k\":60}");
	const cJSON *arr = cJSON_GetObjectItem(o, "results");
	assert_int_not_equal(kind_of((uint64_t)num(cJSON_GetArrayItem(arr, 0),
	    "id")), 0);
	assert_int_equal(kind_of((uint64_t)num(cJSON_GetArrayItem(arr,
	    cJSON_GetArraySize(arr) - 1), "id")), 0);
	assert_null(cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 0), "prob"));
	cJSON_Delete(o);
}

/* Ids and an uploaded image as positives, no negatives: random images of
 * the collection serve, and the reply says so. */
static void
test_learn_ids_unlabeled(void **state)
{
	unsigned long jlen;
	unsigned char *rgb = tu_stripes_rgb(64, 64, 3, 0, 0);
	unsigned char *jpg = tu_jpeg_encode(rgb, 64, 64, 90, &jlen);
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *enc = malloc(jlen / 3 * 4 + 8), *req = malloc(jlen / 3 * 4 + 256);
	size_t o = 0;

	(void)state;
	assert_non_null(jpg);
	for (size_t i = 0; i < jlen; i += 3) {
		uint32_t v = (uint32_t)jpg[i] << 16 |
		    (i + 1 < jlen ? (uint32_t)jpg[i + 1] << 8 : 0) |
		    (i + 2 < jlen ? jpg[i + 2] : 0);
		enc[o++] = b64[v >> 18 & 63];
		enc[o++] = b64[v >> 12 & 63];
		enc[o++] = i + 1 < jlen ? b64[v >> 6 & 63] : '=';
		enc[o++] = i + 2 < jlen ? b64[v & 63] : '=';
	}
	enc[o] = '\0';
	sprintf(req, "{\"op\":\"learn\",\"name\":\"some_red\",\"positive\":["
	    "{\"id\":%llu},{\"id\":%llu},{\"id\":%llu},{\"image\":\"%s\"}]}",
	    (unsigned long long)red[0], (unsigned long long)red[1],
	    (unsigned long long)red[0], enc);
	cJSON *r = call_ok(req);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(r, "unlabeled_negatives")));
	assert_int_equal((int)num(r, "n_pos"), 3);      /* red[0] once */
	assert_int_equal((int)num(r, "uploaded"), 1);
	/* max(4 x 3, 64) drawn, capped by the 58 other images */
	assert_int_equal((int)num(r, "n_neg"),
	    N_RED + N_BLUE + N_OTHER - 2);
	cJSON_Delete(r);
	free(enc);
	free(req);
	tjFree(jpg);
	free(rgb);
}

/* learned:NAME combines with other terms as they combine: the embed of
 * "text - learned:red" is the normalised difference of the two. */
static void
test_learned_term_combines(void **state)
{
	(void)state;
	cJSON_Delete(learn_red());
	cJSON *a = call_ok("{\"op\":\"embed\",\"text\":\"a red thing\"}");
	cJSON *b = call_ok("{\"op\":\"embed\",\"learned\":\"red\"}");
	cJSON *ab = call_ok("{\"op\":\"embed\",\"terms\":[{\"text\":\"a red "
	    "thing\"},{\"learned\":\"red\",\"weight\":-0.5}]}");
	const cJSON *ea = cJSON_GetObjectItem(a, "embedding");
	const cJSON *eb = cJSON_GetObjectItem(b, "embedding");
	const cJSON *eab = cJSON_GetObjectItem(ab, "embedding");
	double want[STORE_DIM_MAX], n = 0;

	assert_int_equal(cJSON_GetArraySize(eb), dim);
	for (int d = 0; d < dim; d++) {
		want[d] = cJSON_GetArrayItem(ea, d)->valuedouble -
		    0.5 * cJSON_GetArrayItem(eb, d)->valuedouble;
		n += want[d] * want[d];
	}
	for (int d = 0; d < dim; d++)
		assert_float_equal(cJSON_GetArrayItem(eab, d)->valuedouble,
		    want[d] / sqrt(n), 1e-5);
	/* the direction leans to red: axis 1 */
	double red_axis = cJSON_GetArrayItem(eb, 1)->valuedouble;
	for (int d = 0; d < dim; d++)
		assert_true(cJSON_GetArrayItem(eb, d)->valuedouble <= red_axis);
	cJSON_Delete(a);
	cJSON_Delete(b);
	cJSON_Delete(ab);
	/* the parse op names the term's kind for the page */
	cJSON *p = call_ok("{\"op\":\"parse\",\"query\":\"beach + "
	    "0.5:learned:red\"}");
	const cJSON *t = cJSON_GetArrayItem(cJSON_GetObjectItem(p, "terms"), 1);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(t, "kind")),
	    "learned");
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(t, "value")),
	    "red");
	cJSON_Delete(p);
	/* a text with a learned term searches */
	cJSON *s = call_ok("{\"op\":\"search\",\"terms\":[{\"text\":\"x\"},"
	    "{\"learned\":\"red\",\"weight\":3}],\"k\":3}");
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(s, "results")), 3);
	cJSON_Delete(s);
}

/* Relevance feedback: two marked right (blue), two wrong (red) after a
 * query that knows nothing of colour: every blue image comes first. */
static void
test_rerank(void **state)
{
	char req[320];

	(void)state;
	snprintf(req, sizeof(req), "{\"op\":\"rerank\",\"text\":\"anything\","
	    "\"positive\":[%llu,%llu],\"negative\":[%llu,%llu],\"k\":%d}",
	    (unsigned long long)blue[3], (unsigned long long)blue[7],
	    (unsigned long long)red[1], (unsigned long long)red[2], N_BLUE + 4);
	expect_kind_first(req, N_BLUE, 1, 0);
	/* min_prob cuts on the probe's probability, on this CLIP model too */
	assert_false(fx.srv->info->has_sigmoid);
	snprintf(req, sizeof(req), "{\"op\":\"rerank\",\"text\":\"anything\","
	    "\"positive\":[%llu,%llu],\"negative\":[%llu,%llu],\"k\":60,"
	    "\"min_prob\":0.5}",
	    (unsigned long long)blue[3], (unsigned long long)blue[7],
	    (unsigned long long)red[1], (unsigned long long)red[2]);
	{
		cJSON *mr = call_ok(req);
		const cJSON *h, *res = cJSON_GetObjectItem(mr, "results");
		assert_true(cJSON_GetArraySize(res) >= N_BLUE);
		assert_true(cJSON_GetArraySize(res) < 60);
		cJSON_ArrayForEach(h, res)
			assert_true(num(h, "prob") >= 0.5);
		cJSON_Delete(mr);
	}
	/* with filters as search: only the blue folder's images */
	snprintf(req, sizeof(req), "{\"op\":\"rerank\",\"positive\":[%llu,%llu],"
	    "\"negative\":[%llu,%llu],\"k\":50,\"filter\":{\"path_prefix\":"
	    "\"/learn/blue/\"}}", (unsigned long long)blue[3],
	    (unsigned long long)blue[7], (unsigned long long)red[1],
	    (unsigned long long)red[2]);
	cJSON *r = call_ok(req);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r, "results")),
	    N_BLUE);
	cJSON_Delete(r);
	/* one of each, padded: the query is a second positive, random images
	 * more negatives; the marked right image ranks above the wrong one */
	snprintf(req, sizeof(req), "{\"op\":\"rerank\",\"id\":%llu,"
	    "\"positive\":[%llu],\"negative\":[%llu],\"k\":60}",
	    (unsigned long long)blue[0], (unsigned long long)blue[5],
	    (unsigned long long)red[4]);
	r = call_ok(req);
	const cJSON *arr = cJSON_GetObjectItem(r, "results");
	int at_pos = -1, at_neg = -1;
	for (int i = 0; i < cJSON_GetArraySize(arr); i++) {
		uint64_t id = (uint64_t)num(cJSON_GetArrayItem(arr, i), "id");
		if (id == blue[5])
			at_pos = i;
		if (id == red[4])
			at_neg = i;
	}
	assert_true(at_pos >= 0 && at_neg >= 0 && at_pos < at_neg);
	cJSON_Delete(r);
	/* without a query one right image is not enough */
	snprintf(req, sizeof(req), "{\"op\":\"rerank\",\"positive\":[%llu],"
	    "\"negative\":[%llu]}", (unsigned long long)blue[5],
	    (unsigned long long)red[4]);
	call_fails(req, "bad_request", "2 positive");
	snprintf(req, sizeof(req), "{\"op\":\"rerank\",\"text\":\"x\","
	    "\"positive\":[%llu],\"negative\":[]}", (unsigned long long)blue[5]);
	call_fails(req, "bad_request", "negative");
}

/* A probe of another model (after --reembed the images are re-embedded
 * and the sets kept) is refused by a search, which never fits, with the
 * command that refits it; learn "refit" fits it from its examples' paths
 * and stamps it with the daemon's model. */
static void
test_refit_for_another_model(void **state)
{
	cls_set *set = NULL;
	cdx_error err;
	char req[128];

	(void)state;
	cJSON_Delete(learn_red());
	CDX_ASSERT_OK(store_tagset_get(fx.srv->st, "red", &set, &err),
	    err.msg);
	snprintf(set->model_key, sizeof(set->model_key), "clip-old@0000");
	CDX_ASSERT_OK(store_tagset_put(fx.srv->st, set, NULL, &err), err.msg);
	cls_set_free(set);
	set = NULL;
	snprintf(req, sizeof(req), "{\"op\":\"search\",\"learned\":\"red\","
	    "\"k\":%d}", N_RED + 3);
	call_fails(req, "bad_request", "clipdex learn red --refit");
	call_fails("{\"op\":\"search\",\"terms\":[{\"learned\":\"red\"},"
	    "{\"text\":\"a\"}]}", "bad_request", "--refit");
	CDX_ASSERT_OK(store_tagset_get(fx.srv->st, "red", &set, &err),
	    err.msg);
	assert_string_equal(set->model_key, "clip-old@0000");   /* not refitted */
	cls_set_free(set);
	set = NULL;
	cJSON_Delete(call_ok("{\"op\":\"learn\",\"name\":\"red\","
	    "\"refit\":true}"));
	expect_kind_first(req, N_RED, 0, 1);
	CDX_ASSERT_OK(store_tagset_get(fx.srv->st, "red", &set, &err),
	    err.msg);
	assert_string_equal(set->model_key, fx.srv->info->key);
	assert_int_equal(set->n_pos, N_RED);
	cls_set_free(set);
}

/* learn "refit": again from the kept example paths, so a folder's new
 * image counts; without kept examples, or with examples, it is refused. */
static void
test_refit_on_request(void **state)
{
	float *v = malloc(sizeof(float) * (size_t)dim);
	cdx_error err;

	(void)state;
	assert_non_null(v);
	cJSON_Delete(learn_red());
	vector_of(v, 0, N_RED);
	store_image img = { .path = "/learn/red/new.jpg", .size = 1,
	    .width = 64, .height = 48, .capture_time = STORE_TIME_UNKNOWN,
	    .embedding = v };
	img.hash[0] = 9;
	CDX_ASSERT_OK(store_image_put(fx.srv->st, &img, 1, &err), err.msg);
	cJSON *r = call_ok("{\"op\":\"learn\",\"name\":\"red\","
	    "\"refit\":true}");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(r, "refit")));
	assert_int_equal((int)num(r, "n_pos"), N_RED + 1);
	assert_int_equal((int)num(r, "n_neg"), N_BLUE);
	assert_int_equal((int)num(r, "missing"), 0);
	assert_true(num(r, "cv_accuracy") == 1.0);
	cJSON_Delete(r);
	CDX_ASSERT_OK(store_image_delete(fx.srv->st, &img.id, 1, NULL, &err),
	    err.msg);
	free(v);
	call_fails("{\"op\":\"learn\",\"name\":\"never\",\"refit\":true}",
	    "bad_request", "not known");
	/* forgotten (as tags_delete does), it cannot be refitted */
	cJSON_Delete(call_ok("{\"op\":\"learn\",\"name\":\"gone\","
	    "\"positive\":[{\"path\":\"/learn/red\"}],\"negative\":"
	    "[{\"path\":\"/learn/blue\"}]}"));
	CDX_ASSERT_OK(learn_forget(fx.srv, "gone", &err), err.msg);
	CDX_ASSERT_OK(learn_forget(fx.srv, "gone", &err), err.msg);
	call_fails("{\"op\":\"learn\",\"name\":\"gone\",\"refit\":true}",
	    "bad_request", "not known");
	CDX_ASSERT_OK(store_tagset_delete(fx.srv->st, "gone", &err),
	    err.msg);
	call_fails("{\"op\":\"learn\",\"name\":\"red\",\"refit\":true,"
	    "\"positive\":[{\"id\":1}]}", "bad_request", "no examples");
	/* tags_delete forgets a learned set's examples with the set */
	cJSON_Delete(call_ok("{\"op\":\"learn\",\"name\":\"gone\","
	    "\"positive\":[{\"path\":\"/learn/red\"}],\"negative\":"
	    "[{\"path\":\"/learn/blue\"}]}"));
	void *kept = NULL;
	size_t kept_len;
	CDX_ASSERT_OK(store_kv_get(fx.srv->st, "learned/gone", &kept,
	    &kept_len, &err), err.msg);
	free(kept);
	cJSON_Delete(call_ok("{\"op\":\"tags_delete\",\"name\":\"gone\"}"));
	assert_int_equal(store_kv_get(fx.srv->st, "learned/gone", &kept,
	    &kept_len, &err), CDX_ENOTFOUND);
	call_fails("{\"op\":\"learn\",\"name\":\"gone\",\"refit\":true}",
	    "bad_request", "not known");
}

/* A folder of 4,200 images: a fit keeps 2,000 of them, the same ones
 * each time, and says how many it left out; with no negatives, the
 * unlabeled ones are drawn from a collection over the walk's size by
 * random ids. */
#define N_MANY 4200
static void
test_many_examples(void **state)
{
	store_image *imgs = calloc(N_MANY, sizeof(*imgs));
	char (*paths)[64] = calloc(N_MANY, sizeof(*paths));
	float *v = malloc(sizeof(float) * (size_t)dim * N_MANY);
	uint64_t *ids = calloc(N_MANY, sizeof(*ids));
	cdx_error err;

	(void)state;
	assert_true(imgs && paths && v && ids);
	for (int j = 0; j < N_MANY; j++) {
		snprintf(paths[j], sizeof(paths[j]), "/learn/many/m%05d.jpg", j);
		vector_of(v + (size_t)j * dim, 0, 100 + j);
		imgs[j] = (store_image){ .path = paths[j], .size = 1 + j,
		    .width = 64, .height = 48, .capture_time = STORE_TIME_UNKNOWN,
		    .embedding = v + (size_t)j * dim };
		imgs[j].hash[0] = 0x77;
		imgs[j].hash[1] = (uint8_t)j;
		imgs[j].hash[2] = (uint8_t)(j >> 8);
	}
	CDX_ASSERT_OK(store_image_put(fx.srv->st, imgs, N_MANY, &err),
	    err.msg);
	for (int j = 0; j < N_MANY; j++)
		ids[j] = imgs[j].id;
	const char *req = "{\"op\":\"learn\",\"name\":\"many\","
	    "\"positive\":[{\"path\":\"/learn/many\"}],"
	    "\"negative\":[{\"path\":\"/learn/blue\"}]}";
	cJSON *a = call_ok(req);
	assert_int_equal((int)num(a, "n_pos"), 2000);
	assert_int_equal((int)num(a, "n_neg"), N_BLUE);
	assert_int_equal((int)num(a, "subsampled"), N_MANY - 2000);
	cls_set *s1 = NULL, *s2 = NULL;
	CDX_ASSERT_OK(store_tagset_get(fx.srv->st, "many", &s1, &err),
	    err.msg);
	cJSON *b = call_ok(req);
	CDX_ASSERT_OK(store_tagset_get(fx.srv->st, "many", &s2, &err),
	    err.msg);
	assert_int_equal(s1->n_pos, 2000);
	assert_int_equal(s1->n_pos, s2->n_pos);
	assert_memory_equal(s1->pos, s2->pos,
	    sizeof(*s1->pos) * s1->n_pos);
	assert_memory_equal(s1->w, s2->w, sizeof(float) * s1->dim);
	cls_set_free(s1);
	cls_set_free(s2);
	cJSON_Delete(a);
	cJSON_Delete(b);
	/* unlabeled negatives, drawn by random ids: 64, none a positive */
	a = call_ok("{\"op\":\"learn\",\"name\":\"manyu\","
	    "\"positive\":[{\"path\":\"/learn/red\"}]}");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(a, "unlabeled_negatives")));
	assert_int_equal((int)num(a, "n_pos"), N_RED);
	assert_int_equal((int)num(a, "n_neg"), 64);
	assert_int_equal((int)num(a, "subsampled"), 0);
	cJSON_Delete(a);
	cJSON_Delete(call_ok("{\"op\":\"tags_delete\",\"name\":\"many\"}"));
	cJSON_Delete(call_ok("{\"op\":\"tags_delete\",\"name\":\"manyu\"}"));
	CDX_ASSERT_OK(store_image_delete(fx.srv->st, ids, N_MANY, NULL,
	    &err), err.msg);
	free(imgs);
	free(paths);
	free(v);
	free(ids);
}

static void
test_errors(void **state)
{
	char req[256];

	(void)state;
	cJSON_Delete(learn_red());
	snprintf(req, sizeof(req), "{\"op\":\"learn\",\"name\":\"one\","
	    "\"positive\":[{\"id\":%llu}],\"negative\":[{\"id\":%llu},"
	    "{\"id\":%llu}]}", (unsigned long long)red[0],
	    (unsigned long long)blue[0], (unsigned long long)blue[1]);
	call_fails(req, "bad_request", "at least 2 positive");
	call_fails("{\"op\":\"learn\",\"name\":\"x\",\"positive\":[{\"id\":"
	    "999999},{\"id\":1}]}", "not_found", "999999");
	call_fails("{\"op\":\"learn\",\"name\":\"x\",\"positive\":[{\"path\":"
	    "\"/learn/nothing/here\"}]}", "not_found", "/learn/nothing/here");
	call_fails("{\"op\":\"learn\",\"name\":\"x\",\"positive\":[{\"path\":"
	    "\"relative/x\"}]}", "bad_request", "absolute");
	/* a path is looked up as given, as classify's: a symlink on the
	 * daemon's disk is not resolved, nor its target named back */
	{
		char target[400], link[400], big[1024];
		snprintf(target, sizeof(target), "%s/hidden-target", fx.tmp);
		snprintf(link, sizeof(link), "%s/lnk", fx.tmp);
		assert_int_equal(mkdir(target, 0755), 0);
		assert_int_equal(symlink(target, link), 0);
		snprintf(big, sizeof(big), "{\"op\":\"learn\",\"name\":\"x\","
		    "\"positive\":[{\"path\":\"%s/\"}]}", link);
		call_fails(big, "not_found", link);
		int st;
		cJSON *r = call(big, &st);
		char *t = cJSON_PrintUnformatted(r);
		if (strstr(t, "hidden-target") != NULL)
			fail_msg("the reply names the symlink's target: %s", t);
		free(t);
		cJSON_Delete(r);
		unlink(link);
		rmdir(target);
	}
	call_fails("{\"op\":\"learn\",\"name\":\"bad name\",\"positive\":["
	    "{\"path\":\"/learn/red\"}]}", "bad_request", "name");
	call_fails("{\"op\":\"learn\",\"positive\":[{\"path\":\"/learn/red\"}]}",
	    "bad_request", "name");
	call_fails("{\"op\":\"learn\",\"name\":\"x\",\"positive\":[]}",
	    "bad_request", "positive");
	call_fails("{\"op\":\"learn\",\"name\":\"x\",\"positive\":[{\"text\":"
	    "\"a\"}]}", "bad_request", "example");
	snprintf(req, sizeof(req), "{\"op\":\"learn\",\"name\":\"both\","
	    "\"positive\":[{\"path\":\"/learn/red\"}],\"negative\":[{\"id\":%llu}]}",
	    (unsigned long long)red[3]);
	call_fails(req, "bad_request", "both");
	call_fails("{\"op\":\"search\",\"learned\":\"nosuch\"}", "not_found",
	    "nosuch");
	call_fails("{\"op\":\"search\",\"terms\":[{\"learned\":\"no such\"}]}",
	    "bad_request", "learned:no such");
	call_fails("{\"op\":\"search\",\"learned\":\"red\",\"terms\":[{\"text\":"
	    "\"a\"}]}", "bad_request", "learned");
}

/* A tag set of labels is not a classifier to search by, and learn does
 * not replace it. */
static void
test_label_set_is_not_learned(void **state)
{
	cls_set *set = NULL;
	cdx_error err;
	float *w = calloc((size_t)dim * 2, sizeof(float));

	(void)state;
	assert_non_null(w);
	w[1] = 1.0f;
	w[dim + 2] = 1.0f;
	CDX_ASSERT_OK(cls_set_new("colours", 2, (size_t)dim, 0, 0, 0, &set, &err),
	    err.msg);
	CDX_ASSERT_OK(cls_set_label(set, 0, "red", &err), err.msg);
	CDX_ASSERT_OK(cls_set_label(set, 1, "blue", &err), err.msg);
	memcpy(set->w, w, sizeof(float) * (size_t)dim * 2);
	set->kind = CLS_SOFTMAX;
	set->origin = CLS_ZERO_SHOT;
	set->scale = 100;
	set->threshold = 0.5f;
	snprintf(set->model_key, sizeof(set->model_key), "%s",
	    fx.srv->info->key);
	CDX_ASSERT_OK(store_tagset_put(fx.srv->st, set, NULL, &err), err.msg);
	cls_set_free(set);
	free(w);
	call_fails("{\"op\":\"search\",\"learned\":\"colours\"}",
	    "bad_request", "not a learned classifier");
	call_fails("{\"op\":\"learn\",\"name\":\"colours\",\"positive\":["
	    "{\"path\":\"/learn/red\"}]}", "bad_request", "delete it first");
	CDX_ASSERT_OK(store_tagset_delete(fx.srv->st, "colours", &err),
	    err.msg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_learn_folders_and_search),
		cmocka_unit_test(test_learn_ids_unlabeled),
		cmocka_unit_test(test_learned_term_combines),
		cmocka_unit_test(test_rerank),
		cmocka_unit_test(test_refit_for_another_model),
		cmocka_unit_test(test_refit_on_request),
		cmocka_unit_test(test_many_examples),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_label_set_is_not_learned),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
