/* Tests of store/ with approximate index kinds (HNSW, IVF): recall against
 * brute force on clustered data, filtered searches that still return k
 * results, deletes and replacements (HNSW tombstones and their rebuild),
 * range search, and reopening a saved approximate index. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>

#include "common/threads.h"
#include "store/store.h"
#include "tests/store_testutil.h"
#include "tests/testutil.h"

#define MODEL "clip-approx@1"
#define D 48
#define N 12000
#define NC 200

static float *g_vecs;    /* N vectors as put */
static uint64_t *g_ids;  /* their ids */
static int *g_alive;

static size_t g_build_part; /* store_params.build_part of open_kind */
static size_t g_auto_flat_max; /* store_params.auto_flat_max, 0: default */

static store *
open_kind(const char *dir, const char *kind, size_t exact_max)
{
	store_params p = store_default_params();
	store *s;
	cdx_error e;
	p.build_part = g_build_part;
	p.auto_flat_max = g_auto_flat_max;
	p.dim = D;
	p.model_id = MODEL;
	p.index_kind = kind;
	p.exact_filter_max = exact_max;
	ASSERT_OK(store_open(dir, &p, &s, &e), e);
	return s;
}

static void
path_of(size_t i, char *buf)
{
	snprintf(buf, 64, "/%s/%06zu.jpg", i % 20 == 0 ? "few" : "many", i);
}

static void
fill(store *s)
{
	cdx_error e;
	store_image *imgs = calloc(N, sizeof(*imgs));
	char (*paths)[64] = calloc(N, 64);
	for (size_t i = 0; i < N; i++) {
		path_of(i, paths[i]);
		imgs[i].path = paths[i];
		imgs[i].embedding = g_vecs + i * D;
		imgs[i].capture_time = (int64_t)i;
		imgs[i].mtime_ns = (int64_t)i * 1000000000;
	}
	ASSERT_OK(store_image_put(s, imgs, N, &e), e);
	for (size_t i = 0; i < N; i++) {
		g_ids[i] = imgs[i].id;
		g_alive[i] = 1;
	}
	free(paths);
	free(imgs);
}

typedef struct sc {
	double s;
	size_t i;
} sc;

static int
sc_desc(const void *a, const void *b)
{
	const sc *x = a, *y = b;
	return x->s < y->s ? 1 : x->s > y->s ? -1 : 0;
}

static int
matches(size_t i, const store_filter *f)
{
	if (!g_alive[i])
		return 0;
	if (!f)
		return 1;
	char p[64];
	path_of(i, p);
	if (f->path_prefix && strncmp(p, f->path_prefix, strlen(f->path_prefix)))
		return 0;
	if (f->time_field == STORE_TIME_CAPTURE &&
	    ((int64_t)i < f->time_min || (int64_t)i > f->time_max))
		return 0;
	return 1;
}

/* Mean recall@k over nq queries from the same mixture; also checks that
 * every hit matches the filter, is alive, and that k hits come back when
 * k exist. */
static double
recall(store *s, size_t k, const store_filter *f, int nq)
{
	cdx_error e;
	sc *all = malloc(N * sizeof(*all));
	float q[D];
	double tot = 0;
	for (int t = 0; t < nq; t++) {
		tu_clustered(q, 1, D, NC, 5, 5000 + (uint64_t)t);
		size_t m = 0;
		for (size_t i = 0; i < N; i++) {
			if (!matches(i, f))
				continue;
			double d = 0;
			for (int x = 0; x < D; x++)
				d += (double)q[x] * g_vecs[i * D + x];
			all[m++] = (sc){ d, i };
		}
		qsort(all, m, sizeof(*all), sc_desc);
		store_results *r;
		ASSERT_OK(store_search(s, q, k, f, &r, &e), e);
		size_t want = m < k ? m : k;
		assert_int_equal(r->n, want);
		size_t hit = 0;
		for (size_t j = 0; j < r->n; j++) {
			size_t found = N;
			for (size_t i = 0; i < N; i++)
				if (g_ids[i] == r->hits[j].id)
					found = i;
			assert_true(found < N);
			assert_true(matches(found, f));
			for (size_t z = 0; z < want; z++)
				if (all[z].i == found)
					hit++;
		}
		tot += want ? (double)hit / (double)want : 1.0;
		store_results_free(r);
	}
	free(all);
	return tot / nq;
}

static void
delete_every(store *s, size_t step, size_t off)
{
	cdx_error e;
	uint64_t *ids = malloc(N * sizeof(*ids));
	size_t n = 0, nd;
	for (size_t i = off; i < N; i += step)
		if (g_alive[i]) {
			ids[n++] = g_ids[i];
			g_alive[i] = 0;
		}
	ASSERT_OK(store_image_delete(s, ids, n, &nd, &e), e);
	assert_int_equal(nd, n);
	free(ids);
}

static void
replace_some(store *s, size_t step)
{
	/* New vectors for some live paths: same id, new label. */
	cdx_error e;
	size_t cnt = 0;
	for (size_t i = 1; i < N; i += step)
		cnt += (size_t)g_alive[i];
	store_image *imgs = calloc(cnt, sizeof(*imgs));
	char (*paths)[64] = calloc(cnt, 64);
	float *nv = malloc(cnt * D * sizeof(float));
	tu_clustered(nv, cnt, D, NC, 5, 777);
	size_t j = 0, *which = malloc(cnt * sizeof(size_t));
	for (size_t i = 1; i < N; i += step) {
		if (!g_alive[i])
			continue;
		which[j] = i;
		path_of(i, paths[j]);
		imgs[j].path = paths[j];
		imgs[j].embedding = nv + j * D;
		imgs[j].capture_time = (int64_t)i;
		memcpy(g_vecs + i * D, nv + j * D, D * sizeof(float));
		j++;
	}
	ASSERT_OK(store_image_put(s, imgs, cnt, &e), e);
	for (j = 0; j < cnt; j++)
		assert_int_equal(imgs[j].id, g_ids[which[j]]);
	free(which);
	free(nv);
	free(paths);
	free(imgs);
}

static void
check_kind(const char *kind, const char *expect_prefix, double min_recall)
{
	char *dir = tu_tmpdir();
	cdx_error e;
	store_stats st;
	store *s = open_kind(dir, kind, 100);
	fill(s);
	ASSERT_OK(store_index_rebuild(s, &e), e); /* resolve for N images */
	store_get_stats(s, &st);
	assert_true(strncmp(st.index_kind, expect_prefix,
			    strlen(expect_prefix)) == 0);
	double r = recall(s, 10, NULL, 30);
	print_message("%s (%s): recall@10 %.3f\n", kind, st.index_kind, r);
	assert_true(r >= min_recall);

	/* Filters: broad (over-fetch), selective, and time. */
	store_filter few = { .path_prefix = "/few/" };
	store_filter tm = { .time_field = STORE_TIME_CAPTURE, .time_min = 1000, .time_max = 1800 };
	store_filter both = { .path_prefix = "/few/", .time_field = STORE_TIME_CAPTURE, .time_min = 0, .time_max = 6000 };
	double rf = recall(s, 10, &few, 10), rt = recall(s, 10, &tm, 10),
	       rb = recall(s, 10, &both, 10), r100 = recall(s, 100, &few, 3);
	print_message("%s filtered recall@10: prefix %.3f, time %.3f, both "
		      "%.3f; prefix recall@100 %.3f\n",
		      kind, rf, rt, rb, r100);
	assert_true(rf >= min_recall - 0.1);
	assert_true(rt >= min_recall - 0.1);
	assert_true(rb >= min_recall - 0.1);
	assert_true(r100 >= min_recall - 0.1);

	/* Deletes and replacements. */
	delete_every(s, 3, 0);
	replace_some(s, 7);
	ASSERT_OK(store_verify(s, &e), e);
	r = recall(s, 10, NULL, 20);
	print_message("%s after deletes/replacements: recall@10 %.3f\n", kind,
		      r);
	assert_true(r >= min_recall - 0.05);
	assert_true(recall(s, 10, &few, 10) >= min_recall - 0.1);

	/* Range search: every stored vector finds itself above 0.99. */
	float q[3 * D];
	size_t qi[3] = { 1, 2, 4 };
	for (int i = 0; i < 3; i++)
		memcpy(q + i * D, g_vecs + qi[i] * D, D * sizeof(float));
	store_range *rr;
	ASSERT_OK(store_range_search(s, q, 3, 0.99f, &rr, &e), e);
	for (int i = 0; i < 3; i++) {
		int self = 0;
		for (size_t j = rr->lims[i]; j < rr->lims[i + 1]; j++) {
			self |= rr->ids[j] == g_ids[qi[i]];
			assert_true(rr->scores[j] >= 0.99f);
		}
		if (g_alive[qi[i]])
			assert_true(self);
	}
	store_range_free(rr);

	/* Reopen: the saved approximate index is used as is. */
	store_get_stats(s, &st);
	uint64_t ntotal = st.index_ntotal, dead = st.index_dead;
	store_close(s);
	s = open_kind(dir, kind, 100);
	store_get_stats(s, &st);
	assert_int_equal(st.rebuilt_on_open, 0);
	assert_int_equal(st.index_ntotal, ntotal);
	assert_int_equal(st.index_dead, dead);
	ASSERT_OK(store_verify(s, &e), e);
	assert_true(recall(s, 10, NULL, 10) >= min_recall - 0.05);
	store_close(s);
	tu_rmrf(dir);
	free(dir);
}

static void
test_hnsw_recall_filters_tombstones(void **state)
{
	(void)state;
	check_kind("hnsw", "HNSW32", 0.9);
}

static void
test_ivf_recall_filters_deletes(void **state)
{
	(void)state;
	check_kind("ivf", "IVF", 0.9);
}

/* IVF over PQ codes, re-ranked: the recall of the others, and every
 * score (search and range search) the exact dot product with the stored
 * embedding, not the codes' estimate. */
static void
test_ivfpq_reranks_exactly(void **state)
{
	(void)state;
	check_kind("ivfpq", "IVF256,PQ8np", 0.9);
	char *dir = tu_tmpdir();
	cdx_error e;
	store *s = open_kind(dir, "ivfpq", 100);
	fill(s);
	ASSERT_OK(store_index_rebuild(s, &e), e);
	for (size_t qi = 5; qi < N; qi += 1999) {
		const float *q = g_vecs + qi * D;
		store_results *r;
		ASSERT_OK(store_search(s, q, 10, NULL, &r, &e), e);
		assert_int_equal(r->n, 10);
		assert_int_equal(r->hits[0].id, g_ids[qi]);
		for (size_t i = 0; i < r->n; i++) {
			store_image *img;
			ASSERT_OK(store_image_get(s, r->hits[i].id, &img, &e), e);
			double dot = 0;
			for (int k = 0; k < D; k++)
				dot += (double)q[k] * img->embedding[k];
			assert_true(fabs(r->hits[i].score - dot) < 1e-5);
			if (i > 0)
				assert_true(r->hits[i].score <= r->hits[i - 1].score);
			store_image_free(img);
		}
		store_results_free(r);
		store_range *rr;
		ASSERT_OK(store_range_search(s, q, 1, 0.9f, &rr, &e), e);
		for (size_t j = rr->lims[0]; j < rr->lims[1]; j++) {
			store_image *img;
			ASSERT_OK(store_image_get(s, rr->ids[j], &img, &e), e);
			double dot = 0;
			for (int k = 0; k < D; k++)
				dot += (double)q[k] * img->embedding[k];
			assert_true(fabs(rr->scores[j] - dot) < 1e-5);
			assert_true(rr->scores[j] >= 0.9f);
			store_image_free(img);
		}
		store_range_free(rr);
	}
	store_close(s);
	tu_rmrf(dir);
	free(dir);
}

/* IVF-PQ lists live in index.base, memory-mapped: writes after the build
 * go to an in-memory delta that index.faiss saves, deletes are tombstones,
 * a reopen maps the same file, store_verify hashes its bytes, and a
 * damaged or truncated index.base is rebuilt rather than served. */
static void
test_ivfpq_lists_on_disk(void **state)
{
	(void)state;
	char *dir = tu_tmpdir(), path[4200];
	cdx_error e;
	store_stats st;
	g_build_part = 5000; /* three parts: two spilled, one in RAM */
	store *s = open_kind(dir, "ivfpq", 100);
	fill(s);
	ASSERT_OK(store_index_rebuild(s, &e), e);
	store_get_stats(s, &st);
	assert_int_equal(st.index_delta, 0);
	/* 8 code bytes and an 8-byte id per vector, then the quantizer */
	assert_true(st.index_base_bytes >= (uint64_t)N * 16);
	snprintf(path, sizeof(path), "%s/index.base", dir);
	size_t blen;
	char *orig = tu_read_file(path, &blen);
	assert_non_null(orig);
	assert_int_equal(blen, st.index_base_bytes);
	/* built in one part, the file is the same byte for byte */
	store_close(s);
	g_build_part = 0;
	s = open_kind(dir, "ivfpq", 100);
	ASSERT_OK(store_index_rebuild(s, &e), e);
	size_t len1;
	char *one = tu_read_file(path, &len1);
	assert_true(len1 == blen && memcmp(one, orig, blen) == 0);
	free(one);

	/* 50 new images, then a delete of 10 old ones */
	enum { M = 50 };
	float nv[M * D];
	store_image imgs[M];
	char paths[M][64];
	tu_clustered(nv, M, D, NC, 5, 4242);
	memset(imgs, 0, sizeof(imgs));
	for (int i = 0; i < M; i++) {
		snprintf(paths[i], 64, "/new/%02d.jpg", i);
		imgs[i].path = paths[i];
		imgs[i].embedding = nv + i * D;
	}
	ASSERT_OK(store_image_put(s, imgs, M, &e), e);
	delete_every(s, N / 10, 3);
	store_get_stats(s, &st);
	assert_int_equal(st.index_delta, M);
	assert_int_equal(st.index_dead, 10);
	assert_int_equal(st.index_ntotal, N + M);
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < M; i += 7) {
			store_results *r;
			ASSERT_OK(store_search(s, nv + i * D, 5, NULL, &r, &e),
				  e);
			assert_true(r->n >= 1);
			assert_int_equal(r->hits[0].id, imgs[i].id);
			store_results_free(r);
		}
		assert_true(recall(s, 10, NULL, 10) >= 0.85);
		ASSERT_OK(store_verify(s, &e), e);
		ASSERT_OK(store_save(s, &e), e);
		store_close(s);
		/* the same index.base, untouched, and the delta from
		 * index.faiss */
		size_t len;
		char *now = tu_read_file(path, &len);
		assert_true(len == blen && memcmp(now, orig, len) == 0);
		free(now);
		s = open_kind(dir, "ivfpq", 100);
		store_get_stats(s, &st);
		assert_int_equal(st.rebuilt_on_open, 0);
		assert_int_equal(st.index_delta, M);
		assert_int_equal(st.index_dead, 10);
	}

	/* A flipped byte in the lists: verify finds it. */
	char *bad = malloc(blen);
	memcpy(bad, orig, blen);
	bad[blen / 3] ^= 0x5a;
	assert_int_equal(tu_write_file(path, bad, blen), 0);
	store_close(s);
	s = open_kind(dir, "ivfpq", 100);
	assert_int_equal(store_verify(s, &e), CDX_ECORRUPT);
	store_close(s);

	/* Cut short: reopening rebuilds (never maps past the end). */
	assert_int_equal(tu_write_file(path, orig, blen / 2), 0);
	s = open_kind(dir, "ivfpq", 100);
	store_get_stats(s, &st);
	assert_int_equal(st.rebuilt_on_open, 1);
	assert_int_equal(st.index_delta, 0);
	assert_int_equal(st.index_dead, 0);
	assert_int_equal(st.index_ntotal, N - 10 + M);
	ASSERT_OK(store_verify(s, &e), e);
	assert_true(recall(s, 10, NULL, 10) >= 0.85);

	/* Past half dead, the lists are merged anew without the dead, and
	 * the delta folded in: the same training (a rebuild for 7,840
	 * images would train nothing and serve Flat). */
	ASSERT_OK(store_image_put(s, imgs, 5, &e), e); /* re-put: new labels */
	delete_every(s, 3, 1);
	delete_every(s, 40, 5);
	store_get_stats(s, &st);
	size_t alive = 0;
	for (size_t i = 0; i < N; i++)
		alive += (size_t)g_alive[i];
	assert_int_equal(st.images, alive + M);
	assert_int_equal(st.index_dead, 0);
	assert_int_equal(st.index_delta, 0);
	assert_int_equal(st.index_ntotal, alive + M);
	assert_true(st.index_base_bytes < blen);
	assert_true(strncmp(st.index_kind, "IVF256,PQ8", 10) == 0);
	ASSERT_OK(store_verify(s, &e), e);
	for (int i = 0; i < 5; i++) {
		store_results *r;
		ASSERT_OK(store_search(s, nv + i * D, 1, NULL, &r, &e), e);
		assert_int_equal(r->n, 1);
		assert_int_equal(r->hits[0].id, imgs[i].id);
		store_results_free(r);
	}
	assert_true(recall(s, 10, NULL, 10) >= 0.85);
	store_close(s);
	s = open_kind(dir, "ivfpq", 100);
	store_get_stats(s, &st);
	assert_int_equal(st.rebuilt_on_open, 0);
	assert_int_equal(st.index_ntotal, alive + M);
	store_close(s);
	free(bad);
	free(orig);
	tu_rmrf(dir);
	free(dir);
	g_build_part = 0;
}

static void
test_hnsw_tombstones_trigger_rebuild(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	cdx_error e;
	store_stats st;
	store *s = open_kind(dir, "HNSW16", 0);
	fill(s);
	delete_every(s, 4, 0);
	store_get_stats(s, &st);
	assert_int_equal(st.index_dead, N / 4);
	assert_int_equal(st.index_ntotal, N);
	/* Deleted images never come back from a search. */
	assert_true(recall(s, 10, NULL, 5) >= 0.85);
	/* When the dead outnumber half the living, the graph is rebuilt. */
	delete_every(s, 2, 1);
	delete_every(s, 4, 2);
	store_get_stats(s, &st);
	assert_true(st.index_dead < st.images / 2 + 1000);
	assert_int_equal(st.index_ntotal, st.images + st.index_dead);
	ASSERT_OK(store_verify(s, &e), e);
	assert_true(recall(s, 10, NULL, 5) >= 0.85);
	store_close(s);
	tu_rmrf(dir);
	free(dir);
}

static void
test_auto_and_small_ivf_use_exact(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	store_stats st;
	store *s = open_kind(dir, "IVF4096,Flat", 0);
	fill(s); /* far too few to train 4096 lists */
	store_get_stats(s, &st);
	assert_string_equal(st.index_kind, "Flat");
	assert_true(recall(s, 10, NULL, 5) > 0.999);
	store_close(s);
	s = open_kind(dir, "auto", 0);
	store_get_stats(s, &st);
	assert_string_equal(st.index_kind, "Flat");
	store_close(s);
	tu_rmrf(dir);
	free(dir);
}

/* "auto" follows the count while the store stays open: a store that
 * grows past twice auto_flat_max is served by IVF at once, not after the
 * next open. */
static void
test_auto_changes_kind_while_open(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	store_stats st;
	g_auto_flat_max = 1000;
	store *s = open_kind(dir, "auto", 0);
	store_get_stats(s, &st);
	assert_string_equal(st.index_kind, "Flat");
	fill(s);
	store_get_stats(s, &st);
	assert_true(strncmp(st.index_kind, "IVF", 3) == 0);
	assert_int_equal(st.index_ntotal, N);
	assert_true(recall(s, 10, NULL, 10) >= 0.9);
	cdx_error e;
	ASSERT_OK(store_verify(s, &e), e);
	store_close(s);
	tu_rmrf(dir);
	free(dir);
	g_auto_flat_max = 0;
}

static int
reset(void **state)
{
	(void)state;
	tu_clustered(g_vecs, N, D, NC, 5, 6);
	g_build_part = 0;
	g_auto_flat_max = 0;
	return 0;
}

/* Filtered searches (which deepen the index under the exclusive lock)
 * from three threads while the main thread deletes and replaces. */
typedef struct conc {
	store *s;
	int stop, errors, searches;
} conc;

static void *
searcher(void *arg)
{
	conc *c = arg;
	uint64_t seed = 9000 + (uint64_t)__atomic_fetch_add(&c->searches, 1,
							  __ATOMIC_RELAXED);
	store_filter fs[3] = {
		{ .path_prefix = "/few/" },
		{ .time_field = STORE_TIME_CAPTURE, .time_min = 100, .time_max = 4000 },
		{  },
	};
	float q[D];
	for (int i = 0; !__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE); i++) {
		store_results *r;
		cdx_error e;
		tu_clustered(q, 1, D, NC, 5, seed++);
		const store_filter *f = &fs[i % 3];
		if (store_search(c->s, q, 10, f, &r, &e) != 0) {
			__atomic_add_fetch(&c->errors, 1, __ATOMIC_RELAXED);
			continue;
		}
		/* k results always exist here; each must match. */
		if (r->n != 10)
			__atomic_add_fetch(&c->errors, 1, __ATOMIC_RELAXED);
		for (size_t j = 0; j < r->n; j++)
			if ((f->path_prefix &&
			     strncmp(r->hits[j].path, "/few/", 5) != 0) ||
			    (f->time_field == STORE_TIME_CAPTURE &&
			     (r->hits[j].capture_time < 100 ||
			      r->hits[j].capture_time > 4000)))
				__atomic_add_fetch(&c->errors, 1,
						   __ATOMIC_RELAXED);
		store_results_free(r);
	}
	return NULL;
}

static void
concurrent(const char *kind)
{
	char *dir = tu_tmpdir();
	cdx_error e;
	conc c = { open_kind(dir, kind, 100), 0, 0, 0 };
	fill(c.s);
	ASSERT_OK(store_index_rebuild(c.s, &e), e);
	pthread_t th[3];
	for (int i = 0; i < 3; i++)
		pthread_create(&th[i], NULL, searcher, &c);
	for (int round = 0; round < 6; round++) {
		delete_every(c.s, 97, (size_t)round * 3 + 2);
		replace_some(c.s, 101 + (size_t)round);
	}
	__atomic_store_n(&c.stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(c.errors, 0);
	ASSERT_OK(store_verify(c.s, &e), e);
	store_close(c.s);
	tu_rmrf(dir);
	free(dir);
}

static void
test_filtered_searches_beside_a_writer(void **state)
{
	(void)state;
	concurrent("hnsw");
	reset(NULL);
	concurrent("ivf");
}

static int
setup(void **state)
{
	(void)state;
	g_vecs = malloc((size_t)N * D * sizeof(float));
	g_ids = malloc(N * sizeof(*g_ids));
	g_alive = malloc(N * sizeof(*g_alive));
	tu_clustered(g_vecs, N, D, NC, 5, 6);
	g_build_part = 0;
	g_auto_flat_max = 0;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	free(g_vecs);
	free(g_ids);
	free(g_alive);
	return 0;
}


int
main(void)
{
	/* One thread, as the programs' main() would set it. */
	cdx_threads_set(1);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_hnsw_recall_filters_tombstones, reset),
		cmocka_unit_test_setup(test_ivf_recall_filters_deletes, reset),
		cmocka_unit_test_setup(test_ivfpq_reranks_exactly, reset),
		cmocka_unit_test_setup(test_ivfpq_lists_on_disk, reset),
		cmocka_unit_test_setup(test_hnsw_tombstones_trigger_rebuild, reset),
		cmocka_unit_test_setup(test_auto_and_small_ivf_use_exact, reset),
		cmocka_unit_test_setup(test_auto_changes_kind_while_open, reset),
		cmocka_unit_test_setup(test_filtered_searches_beside_a_writer,
				       reset),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
