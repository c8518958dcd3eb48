/*
 * dupes_find() on a store opened directly: transitive grouping, the keeper
 * rule and its reasons, exact groups by hash, the prefix filter, the
 * similar kind, and random collections checked against brute-force
 * union-find over the stored vectors (flat and HNSW indexes); the cache
 * of the last grouping (dupes_cache).
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
#include <unistd.h>

#include "dupes/dupes.h"
#include "store/store.h"
#include "tests/cdx_assert.h"
#include "tests/testmodel.h"

#define D 8

static char dir[64];

static store *
open_store(const char *kind)
{
	store_params p = store_default_params();
	store *s = NULL;
	cdx_error e;
	snprintf(dir, sizeof(dir), "/tmp/cdx-ddupes-XXXXXX");
	assert_non_null(mkdtemp(dir));
	p.dim = D;
	p.model_id = "test@0";
	p.index_kind = kind;
	CDX_ASSERT_OK(store_open(dir, &p, &s, &e), e.msg);
	return s;
}

static void
close_store(store *s)
{
	store_close(s);
	tm_rmtree(dir);
}

/* Puts one image; returns its id. */
static uint64_t
put(store *s, const char *path, const float *v, uint32_t w, uint32_t h,
    int64_t size, int64_t capture, uint64_t hash)
{
	store_image img = { 0 };
	cdx_error e;
	img.path = path;
	img.embedding = v;
	img.width = w;
	img.height = h;
	img.size = size;
	img.capture_time = capture;
	memcpy(img.hash, &hash, sizeof(hash));
	CDX_ASSERT_OK(store_image_put(s, &img, 1, &e), e.msg);
	return img.id;
}

/* A unit vector at angle a (radians) from e0 towards e1. */
static void
angle_vec(float *v, double a)
{
	memset(v, 0, sizeof(float) * D);
	v[0] = (float)cos(a);
	v[1] = (float)sin(a);
}

static dupes_result *
find_m(store *s, int kind, float thr, const char *prefix, int method)
{
	dupes_params p = { .dim = D, .kind = kind, .threshold = thr,
		.path_prefix = prefix, .method = method };
	dupes_result *r = NULL;
	cdx_error e;
	CDX_ASSERT_OK(dupes_find(s, &p, &r, &e), e.msg);
	return r;
}

static dupes_result *
find(store *s, int kind, float thr, const char *prefix)
{
	return find_m(s, kind, thr, prefix, DUPES_AUTO);
}

static void
test_transitive_chain(void **state)
{
	(void)state;
	store *s = open_store("flat");
	float v[D];
	uint64_t ids[4];
	/* cos(0.2) = 0.980: neighbours are within 0.97, the ends (0.4:
	 * 0.921) are not; the far one (1.5) is alone. */
	const double ang[4] = { 0.0, 0.2, 0.4, 1.5 };
	for (int i = 0; i < 4; i++) {
		char p[32];
		snprintf(p, sizeof(p), "/c/%d.jpg", i);
		angle_vec(v, ang[i]);
		ids[i] = put(s, p, v, 100, 100, 10 + i, STORE_TIME_UNKNOWN,
		    (uint64_t)i + 1);
	}
	dupes_result *r = find(s, DUPES_NEAR, 0.97f, NULL);
	assert_int_equal(r->n_groups, 1);
	assert_int_equal(r->lims[1], 3);
	/* Keeper: same resolution, largest file (image 2); scores are the
	 * similarity to it, best first. */
	assert_int_equal(r->ids[0], ids[2]);
	assert_int_equal(r->reasons[0], DUPES_BY_SIZE);
	assert_int_equal(r->ids[1], ids[1]);
	assert_true(fabsf(r->scores[1] - (float)cos(0.2)) < 1e-3f);
	assert_int_equal(r->ids[2], ids[0]);
	assert_true(fabsf(r->scores[2] - (float)cos(0.4)) < 1e-3f);
	assert_int_equal(r->n_images, 4);
	dupes_result_free(r);

	/* A lower threshold takes the far one too only when it is reached:
	 * at 0.5, 1.5 - 0.4 = 1.1 rad (0.45) is still apart. */
	r = find(s, DUPES_NEAR, 0.5f, NULL);
	assert_int_equal(r->n_groups, 1);
	assert_int_equal(r->lims[1], 3);
	dupes_result_free(r);
	r = find(s, DUPES_NEAR, 0.44f, NULL);
	assert_int_equal(r->lims[1], 4);
	dupes_result_free(r);

	/* The similar kind at 0.9 with near at 0.99: the chain's pairs are
	 * all below 0.99, so it is a similar group; with near at 0.97 the
	 * whole chain is one near group and no similar group is left. */
	dupes_params p = { .dim = D, .kind = DUPES_SIMILAR, .threshold = 0.9f,
		.near_threshold = 0.99f };
	cdx_error e;
	CDX_ASSERT_OK(dupes_find(s, &p, &r, &e), e.msg);
	assert_int_equal(r->n_groups, 1);
	assert_int_equal(r->lims[1], 3);
	dupes_result_free(r);
	p.near_threshold = 0.97f;
	CDX_ASSERT_OK(dupes_find(s, &p, &r, &e), e.msg);
	assert_int_equal(r->n_groups, 0);
	dupes_result_free(r);

	/* Bad parameters. */
	p.threshold = 1.5f;
	assert_int_equal(dupes_find(s, &p, &r, &e), CDX_EINVAL);
	p.threshold = 0.9f;
	p.kind = 7;
	assert_int_equal(dupes_find(s, &p, &r, &e), CDX_EINVAL);
	close_store(s);
}

static void
test_keeper_rule(void **state)
{
	(void)state;
	static const struct {
		uint32_t w, h;
		int64_t size, capture;
		const char *path;
		int reason;             /* when this one is the keeper */
	} cases[][2] = {
		/* keeper first, runner-up second */
		{ { 200, 100, 5, 9, "/k/a/long-name.jpg", DUPES_BY_RESOLUTION },
		  { 100, 100, 9, 1, "/k/b.jpg", 0 } },
		{ { 100, 100, 9, 9, "/k/a/long-name.jpg", DUPES_BY_SIZE },
		  { 100, 100, 5, 1, "/k/b.jpg", 0 } },
		{ { 100, 100, 9, 5, "/k/a/long-name.jpg", DUPES_BY_CAPTURE },
		  { 100, 100, 9, 7, "/k/b.jpg", 0 } },
		{ { 100, 100, 9, 5, "/k/a/long-name.jpg", DUPES_BY_CAPTURE },
		  { 100, 100, 9, STORE_TIME_UNKNOWN, "/k/b.jpg", 0 } },
		{ { 100, 100, 9, 5, "/k/b.jpg", DUPES_BY_PATH },
		  { 100, 100, 9, 5, "/k/a/long-name.jpg", 0 } },
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		store *s = open_store("flat");
		float v[D];
		uint64_t id[2];
		angle_vec(v, 0.1);
		/* The runner-up first, so that the lowest id is not the
		 * answer by accident. */
		id[1] = put(s, cases[c][1].path, v, cases[c][1].w, cases[c][1].h,
		    cases[c][1].size, cases[c][1].capture, 1);
		angle_vec(v, 0.1001);
		id[0] = put(s, cases[c][0].path, v, cases[c][0].w, cases[c][0].h,
		    cases[c][0].size, cases[c][0].capture, 2);
		dupes_result *r = find(s, DUPES_NEAR, 0.99f, NULL);
		assert_int_equal(r->n_groups, 1);
		assert_int_equal(r->ids[0], id[0]);
		assert_int_equal(r->reasons[0], cases[c][0].reason);

		/* dupes_keeper_cmp agrees. */
		store_image a = { .id = id[0], .path = cases[c][0].path,
			.width = cases[c][0].w, .height = cases[c][0].h,
			.size = cases[c][0].size, .capture_time = cases[c][0].capture };
		store_image b = { .id = id[1], .path = cases[c][1].path,
			.width = cases[c][1].w, .height = cases[c][1].h,
			.size = cases[c][1].size, .capture_time = cases[c][1].capture };
		int why = -1;
		assert_true(dupes_keeper_cmp(&a, &b, &why) < 0);
		assert_int_equal(why, cases[c][0].reason);
		assert_true(dupes_keeper_cmp(&b, &a, NULL) > 0);
		dupes_result_free(r);
		close_store(s);
	}
	/* All equal but the id: the lowest id. */
	store_image a = { .id = 3, .path = "/x" }, b = { .id = 5, .path = "/y" };
	int why = -1;
	assert_true(dupes_keeper_cmp(&a, &b, &why) < 0);
	assert_int_equal(why, DUPES_BY_ID);
	assert_string_equal(dupes_reason_name(DUPES_BY_RESOLUTION),
	    "largest resolution");
}

static void
test_exact_and_prefix(void **state)
{
	(void)state;
	store *s = open_store("flat");
	float v[D];
	/* Same bytes (hash 7) in three places, hash 8 twice, one alone;
	 * embeddings all different, so only exact groups. */
	const char *paths[] = { "/p/a/1.jpg", "/p/b/1.jpg", "/q/1.jpg",
		"/p/a/2.jpg", "/q/2.jpg", "/p/a/3.jpg" };
	const uint64_t hash[] = { 7, 7, 7, 8, 8, 9 };
	uint64_t id[6];
	for (int i = 0; i < 6; i++) {
		angle_vec(v, 0.3 * i);
		id[i] = put(s, paths[i], v, 10, 10, 100, STORE_TIME_UNKNOWN,
		    hash[i]);
	}
	dupes_result *r = find(s, DUPES_EXACT, 0, NULL);
	assert_int_equal(r->n_groups, 2);
	assert_int_equal(r->lims[1], 3);        /* largest first */
	assert_int_equal(r->lims[2], 5);
	assert_int_equal(r->ids[0], id[2]);     /* shortest path: /q/1.jpg */
	assert_int_equal(r->reasons[0], DUPES_BY_PATH);
	for (size_t k = 0; k < r->lims[2]; k++)
		assert_true(r->scores[k] == 1.0f);
	assert_int_equal(r->threshold, 1.0f);
	dupes_result_free(r);

	r = find(s, DUPES_EXACT, 0, "/p/");
	assert_int_equal(r->n_groups, 1);
	assert_int_equal(r->lims[1], 2);
	assert_int_equal(r->n_images, 4);
	dupes_result_free(r);

	/* Near at 0.9: the pairs 0.3 rad apart (0.955) chain everything;
	 * a near group of one hash only would be exact and is left out. */
	r = find(s, DUPES_NEAR, 0.9f, NULL);
	assert_int_equal(r->n_groups, 1);
	assert_int_equal(r->lims[1], 6);
	dupes_result_free(r);
	close_store(s);
}

static uint64_t rs = 99;

static float
frand(void)
{
	rs = rs * 6364136223846793005ULL + 1442695040888963407ULL;
	return (float)((rs >> 40) * (1.0 / 16777216.0)) * 2 - 1;
}

static int
uf_root(int *p, int x)
{
	while (p[x] != x)
		x = p[x];
	return x;
}

/* Random clustered vectors: groups equal brute-force components. */
static void
check_random(const char *kind)
{
	enum { N = 300 };
	store *s = open_store(kind);
	static float v[N][D];
	uint64_t id[N];
	int uf[N];
	float c[10][D];
	for (int k = 0; k < 10; k++)
		for (int d = 0; d < D; d++)
			c[k][d] = frand();
	for (int i = 0; i < N; i++) {
		char p[32];
		double n = 0;
		for (int d = 0; d < D; d++) {
			v[i][d] = c[i % 10][d] + 0.25f * frand();
			n += (double)v[i][d] * v[i][d];
		}
		for (int d = 0; d < D; d++)
			v[i][d] = (float)(v[i][d] / sqrt(n));
		snprintf(p, sizeof(p), "/r/%03d.jpg", i);
		id[i] = put(s, p, v[i], 10, 10, 1, STORE_TIME_UNKNOWN,
		    (uint64_t)i + 1);
	}
	float thr[] = { 0.99f, 0.98f, 0.95f };
	for (int t = 0; t < 3; t++) {
		/* Move the threshold off any pair's similarity, so that float
		 * rounding cannot decide a pair. */
		for (int clear = 0; !clear;) {
			clear = 1;
			for (int i = 0; i < N && clear; i++)
				for (int j = i + 1; j < N && clear; j++) {
					float sdot = 0;
					for (int d = 0; d < D; d++)
						sdot += v[i][d] * v[j][d];
					if (fabsf(sdot - thr[t]) < 1e-4f) {
						thr[t] -= 3e-4f;
						clear = 0;
					}
				}
		}
		for (int i = 0; i < N; i++)
			uf[i] = i;
		for (int i = 0; i < N; i++)
			for (int j = i + 1; j < N; j++) {
				float sdot = 0;
				for (int d = 0; d < D; d++)
					sdot += v[i][d] * v[j][d];
				if (sdot >= thr[t]) {
					int a = uf_root(uf, i), b = uf_root(uf, j);
					uf[a > b ? a : b] = a < b ? a : b;
				}
			}
		int n_groups = 0, in_groups = 0;
		for (int i = 0; i < N; i++) {
			int r = uf_root(uf, i), cnt = 0;
			if (r != i)
				continue;
			for (int j = 0; j < N; j++)
				cnt += uf_root(uf, j) == r;
			if (cnt >= 2) {
				n_groups++;
				in_groups += cnt;
			}
		}
		dupes_result *r = find(s, DUPES_NEAR, thr[t], NULL);
		assert_int_equal(r->n_groups, n_groups);
		assert_int_equal(r->lims[r->n_groups], in_groups);
		assert_true(n_groups > 0);
		for (size_t g = 0; g < r->n_groups; g++) {
			int root = -1;
			if (g > 0)
				assert_true(r->lims[g + 1] - r->lims[g] <=
				    r->lims[g] - r->lims[g - 1]);
			for (size_t k = r->lims[g]; k < r->lims[g + 1]; k++) {
				int i = -1;
				for (int j = 0; j < N; j++)
					if (id[j] == r->ids[k])
						i = j;
				assert_true(i >= 0);
				if (root < 0)
					root = uf_root(uf, i);
				assert_int_equal(uf_root(uf, i), root);
			}
		}
		dupes_result_free(r);

		/* Clustered (approximate): every group lies within one
		 * brute-force component, and nearly every pair is found. */
		r = find_m(s, DUPES_NEAR, thr[t], NULL, DUPES_CLUSTERED);
		int grp[N];
		for (int i = 0; i < N; i++)
			grp[i] = -1;
		for (size_t g = 0; g < r->n_groups; g++) {
			int root = -1;
			for (size_t k = r->lims[g]; k < r->lims[g + 1]; k++) {
				int i = -1;
				for (int j = 0; j < N; j++)
					if (id[j] == r->ids[k])
						i = j;
				assert_true(i >= 0);
				grp[i] = (int)g;
				if (root < 0)
					root = uf_root(uf, i);
				assert_int_equal(uf_root(uf, i), root);
			}
		}
		int pairs = 0, found = 0;
		for (int i = 0; i < N; i++)
			for (int j = i + 1; j < N; j++) {
				float sdot = 0;
				for (int d = 0; d < D; d++)
					sdot += v[i][d] * v[j][d];
				if (sdot >= thr[t]) {
					pairs++;
					found += grp[i] >= 0 && grp[i] == grp[j];
				}
			}
		assert_true(pairs > 0);
		assert_true(found >= pairs * 9 / 10);
		dupes_result_free(r);
	}
	close_store(s);
}

static void
test_random_flat(void **state)
{
	(void)state;
	check_random("flat");
}

static void
test_random_hnsw(void **state)
{
	(void)state;
	check_random("hnsw");
}

static void
test_empty_store(void **state)
{
	(void)state;
	store *s = open_store("flat");
	dupes_result *r = find(s, DUPES_NEAR, 0, NULL);
	assert_int_equal(r->n_groups, 0);
	assert_int_equal(r->n_images, 0);
	assert_true(r->threshold == DUPES_NEAR_DEFAULT);
	dupes_result_free(r);
	for (int m = DUPES_AUTO; m <= DUPES_CLUSTERED; m++) {
		r = find_m(s, DUPES_SIMILAR, 0, NULL, m);
		assert_int_equal(r->n_groups, 0);
		assert_true(r->threshold == DUPES_SIMILAR_DEFAULT);
		dupes_result_free(r);
	}
	dupes_result_free(NULL);
	close_store(s);
}

/* The cache hands out the grouping it keeps while the request and the
 * store are the same, groups again when either changes, and a result in
 * use outlives its replacement. */
static void
test_cache(void **state)
{
	(void)state;
	store *s = open_store("flat");
	float v[D];
	angle_vec(v, 0);
	put(s, "/p/a.jpg", v, 10, 10, 100, STORE_TIME_UNKNOWN, 1);
	angle_vec(v, 0.1);
	put(s, "/p/b.jpg", v, 10, 10, 100, STORE_TIME_UNKNOWN, 2);
	dupes_cache *c = NULL;
	cdx_error e;
	CDX_ASSERT_OK(dupes_cache_new(s, &c, &e), e.msg);
	dupes_params p = { .dim = D, .kind = DUPES_NEAR, .threshold = 0.99f,
		.near_threshold = 0.99f };
	const dupes_result *r1 = NULL, *r2 = NULL, *r3 = NULL;
	int computed = -1;
	CDX_ASSERT_OK(dupes_cache_find(c, &p, &r1, &computed, &e), e.msg);
	assert_int_equal(computed, 1);
	assert_int_equal(r1->n_groups, 1);
	CDX_ASSERT_OK(dupes_cache_find(c, &p, &r2, &computed, &e), e.msg);
	assert_int_equal(computed, 0);
	assert_ptr_equal(r1, r2);
	dupes_cache_release(c, r2);
	/* Another threshold: grouped again; r1 stays valid meanwhile. */
	p.threshold = p.near_threshold = 0.999f;
	CDX_ASSERT_OK(dupes_cache_find(c, &p, &r2, &computed, &e), e.msg);
	assert_int_equal(computed, 1);
	assert_int_equal(r2->n_groups, 0);
	assert_int_equal(r1->n_groups, 1);
	assert_int_equal(r1->lims[1], 2);
	dupes_cache_release(c, r1);
	/* A put changes store_seq(): grouped again. */
	angle_vec(v, 0.01);
	put(s, "/p/c.jpg", v, 10, 10, 100, STORE_TIME_UNKNOWN, 3);
	CDX_ASSERT_OK(dupes_cache_find(c, &p, &r3, &computed, &e), e.msg);
	assert_int_equal(computed, 1);
	assert_int_equal(r3->n_groups, 1);
	assert_true(r3->seq > r2->seq);
	dupes_cache_release(c, r2);
	dupes_cache_release(c, r3);
	dupes_cache_free(c);
	close_store(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_transitive_chain),
		cmocka_unit_test(test_keeper_rule),
		cmocka_unit_test(test_exact_and_prefix),
		cmocka_unit_test(test_random_flat),
		cmocka_unit_test(test_random_hnsw),
		cmocka_unit_test(test_empty_store),
		cmocka_unit_test(test_cache),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
