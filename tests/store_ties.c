/* Tests of store/'s ranking order: tied scores (byte-identical copies) are
 * ordered by id, so paging through one query k at a time (offset + k)
 * returns every image exactly once, on every search path (the exact scan,
 * FAISS Flat and HNSW, with and without a filter). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store/store.h"
#include "tests/store_testutil.h"

#define DIM 8
#define DISTINCT 60
#define COPIES 5
#define TOTAL (DISTINCT * COPIES)
#define PAGE 23 /* not a multiple of COPIES: pages split ties */

/* A store of COPIES copies of DISTINCT vectors, put in a shuffled order,
 * then a tenth deleted and put again (their slots and ids move). */
static store *
fill(const char *dir, const char *kind, float *vecs)
{
	store_params p = store_default_params();
	store *s = NULL;
	cdx_error e;
	p.dim = DIM;
	p.model_id = "clip-test@ties";
	p.index_kind = kind;
	ASSERT_OK(store_open(dir, &p, &s, &e), e);
	tu_clustered(vecs, DISTINCT, DIM, 4, 11, 12);
	int order[TOTAL];
	uint64_t st = 99;
	for (int i = 0; i < TOTAL; i++)
		order[i] = i;
	for (int i = TOTAL - 1; i > 0; i--) {
		int j = (int)(tu_rand(&st) % (uint64_t)(i + 1)), t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	uint64_t ids[TOTAL];
	for (int n = 0; n < TOTAL; n++) {
		int i = order[n];
		char path[64];
		store_image img;
		memset(&img, 0, sizeof(img));
		snprintf(path, sizeof(path), "/p/%d/copy%d.jpg", i % COPIES,
			 i / COPIES);
		img.path = path;
		img.size = 1000;
		img.mtime_ns = 1;
		img.capture_time = STORE_TIME_UNKNOWN;
		img.hash[0] = (uint8_t)(i / COPIES);
		img.width = img.height = 10;
		img.embedding = vecs + (size_t)(i / COPIES) * DIM;
		ASSERT_OK(store_image_put(s, &img, 1, &e), e);
		ids[n] = img.id;
	}
	for (int n = 0; n < TOTAL; n += 10) {
		store_image *g = NULL;
		ASSERT_OK(store_image_get(s, ids[n], &g, &e), e);
		char path[64];
		snprintf(path, sizeof(path), "%s", g->path);
		ASSERT_OK(store_image_delete(s, &ids[n], 1, NULL, &e), e);
		g->path = path;
		g->id = 0;
		ASSERT_OK(store_image_put(s, g, 1, &e), e);
		store_image_free(g);
	}
	assert_int_equal(store_image_count(s), TOTAL);
	return s;
}

static int
id_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Pages through query q PAGE at a time and checks that the pages hold
 * `want` distinct images, in the order of one search of them all. */
static void
page_through(store *s, const float *q, const char *prefix, size_t want)
{
	store_filter f = { .path_prefix = prefix };
	store_results *all = NULL;
	cdx_error e;
	uint64_t seen[TOTAL];
	size_t n = 0;
	ASSERT_OK(store_search(s, q, TOTAL, &f, &all, &e), e);
	assert_int_equal(all->n, want);
	for (size_t off = 0; off < want; off += PAGE) {
		store_results *r = NULL;
		ASSERT_OK(store_search(s, q, off + PAGE, &f, &r, &e), e);
		for (size_t i = off; i < r->n; i++) {
			if (r->hits[i].id != all->hits[i].id)
				fail_msg("prefix %s: rank %zu of a page of "
					 "%zu is id %llu, of all %llu",
					 prefix ? prefix : "-", i, off + PAGE,
					 (unsigned long long)r->hits[i].id,
					 (unsigned long long)all->hits[i].id);
			seen[n++] = r->hits[i].id;
		}
		store_results_free(r);
	}
	assert_int_equal(n, want);
	qsort(seen, n, sizeof(seen[0]), id_cmp);
	for (size_t i = 1; i < n; i++)
		if (seen[i] == seen[i - 1])
			fail_msg("id %llu returned twice",
				 (unsigned long long)seen[i]);
	/* Ties are ordered by id. */
	for (size_t i = 1; i < all->n; i++)
		if (all->hits[i].score == all->hits[i - 1].score)
			assert_true(all->hits[i].id > all->hits[i - 1].id);
	store_results_free(all);
}

static void
check_kind(const char *kind)
{
	char *dir = tu_tmpdir();
	float vecs[DISTINCT * DIM];
	store *s = fill(dir, kind, vecs);
	for (int qi = 0; qi < 3; qi++) {
		const float *q = vecs + (size_t)(qi * 7) * DIM;
		page_through(s, q, NULL, TOTAL);
		page_through(s, q, "/p/", TOTAL);     /* matches all */
		page_through(s, q, "/p/1/", DISTINCT); /* one copy each */
		page_through(s, q, "/p/", TOTAL);     /* the exact scan */
	}
	store_close(s);
	tu_rmrf(dir);
	free(dir);
}

static void
test_paging_flat(void **state)
{
	(void)state;
	check_kind("flat");
}

static void
test_paging_hnsw(void **state)
{
	(void)state;
	check_kind("hnsw");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_paging_flat),
		cmocka_unit_test(test_paging_hnsw),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
