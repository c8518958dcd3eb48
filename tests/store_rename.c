/*
 * store_rename.c - store_image_rename(): a record moves to a new path with
 * its id, embedding, hash and times; searches, path lookups, the hash
 * lookup and a reopen (index caught up from the change log) agree.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/threads.h"
#include "tests/store_testutil.h"

enum { DIM = 8, N = 40 };

static store *
open_store(const char *dir, const char *kind)
{
	store_params p = store_default_params();
	store *s = NULL;
	cdx_error e;
	p.dim = DIM;
	p.model_id = "test@rename";
	p.index_kind = kind;
	ASSERT_OK(store_open(dir, &p, &s, &e), e);
	return s;
}

static void
fill(store *s, float *vecs, char paths[N][64])
{
	store_image imgs[N];
	cdx_error e;
	tu_clustered(vecs, N, DIM, 4, 11, 12);
	memset(imgs, 0, sizeof(imgs));
	for (int i = 0; i < N; i++) {
		snprintf(paths[i], 64, "/photos/%s/img%02d.jpg", i % 2 ? "b" : "a",
		    i);
		imgs[i].path = paths[i];
		imgs[i].size = 1000 + i;
		imgs[i].mtime_ns = (int64_t)1600000000 * 1000000000 + i;
		imgs[i].hash[0] = (uint8_t)i;
		imgs[i].hash[1] = 0xAB;
		imgs[i].width = 640;
		imgs[i].height = 480;
		imgs[i].capture_time = 1500000000 + i;
		imgs[i].embedding = vecs + (size_t)i * DIM;
	}
	ASSERT_OK(store_image_put(s, imgs, N, &e), e);
}

/* The image at path has id, this embedding and the original fields. */
static void
check_moved(store *s, const char *path, const store_image *was)
{
	store_image *r;
	cdx_error e;
	ASSERT_OK(store_image_get_by_path(s, path, &r, &e), e);
	assert_int_equal(r->id, was->id);
	assert_int_equal(r->size, was->size);
	assert_int_equal(r->mtime_ns, was->mtime_ns);
	assert_int_equal(r->capture_time, was->capture_time);
	assert_int_equal(r->added, was->added);
	assert_int_equal(r->width, was->width);
	assert_memory_equal(r->hash, was->hash, STORE_HASH_LEN);
	assert_memory_equal(r->embedding, was->embedding, DIM * sizeof(float));
	assert_string_equal(r->path, path);
	store_image_free(r);
	/* The old path is free; the search finds the image under the new. */
	store_results *res;
	ASSERT_OK(store_search(s, was->embedding, 1, NULL, &res, &e), e);
	assert_int_equal(res->n, 1);
	assert_int_equal(res->hits[0].id, was->id);
	assert_string_equal(res->hits[0].path, path);
	store_results_free(res);
	uint64_t ids[4];
	size_t n;
	ASSERT_OK(store_image_find_hash(s, was->hash, ids, 4, &n, &e), e);
	assert_int_equal(n, 1);
	assert_int_equal(ids[0], was->id);
}

static void
run(const char *kind)
{
	char *dir = tu_tmpdir();
	char paths[N][64];
	float vecs[N * DIM];
	store *s = open_store(dir, kind);
	store_image *was[3];
	cdx_error e;
	size_t n;

	fill(s, vecs, paths);
	uint64_t seq0 = store_seq(s);
	for (int i = 0; i < 3; i++)
		ASSERT_OK(store_image_get_by_path(s, paths[i], &was[i], &e), e);

	/* One file, and two in one call (one renamed twice in the batch). */
	const char *f1[] = { paths[0] }, *t1[] = { "/photos/c/renamed é.jpg" };
	ASSERT_OK(store_image_rename(s, f1, t1, 1, &n, &e), e);
	assert_int_equal(n, 1);
	const char *f2[] = { "/photos/c/renamed é.jpg", "/photos/c/mid.jpg",
	    paths[1], paths[2], "/photos/none.jpg" };
	const char *t2[] = { "/photos/c/mid.jpg", "/photos/c/twice.jpg",
	    "/photos/c/one.jpg", "/photos/c/two.jpg", "/photos/c/none.jpg" };
	ASSERT_OK(store_image_rename(s, f2, t2, 5, &n, &e), e);
	assert_int_equal(n, 4);
	assert_true(store_seq(s) > seq0);
	assert_int_equal(store_image_count(s), N);
	check_moved(s, "/photos/c/twice.jpg", was[0]);
	check_moved(s, "/photos/c/one.jpg", was[1]);
	check_moved(s, "/photos/c/two.jpg", was[2]);
	store_image *gone;
	assert_int_equal(store_image_get_by_path(s, paths[0], &gone, NULL),
	    CDX_ENOTFOUND);
	assert_int_equal(store_image_get_by_path(s, "/photos/c/renamed é.jpg",
	    &gone, NULL), CDX_ENOTFOUND);

	/* A path-prefix filter sees the new path. */
	store_filter f = { .path_prefix = "/photos/c/" };
	store_results *res;
	ASSERT_OK(store_search(s, was[1]->embedding, 10, &f, &res, &e), e);
	assert_int_equal(res->n, 3);
	store_results_free(res);

	/* The target taken: refused, nothing changed. */
	const char *f3[] = { paths[3] }, *t3[] = { paths[4] };
	assert_int_equal(store_image_rename(s, f3, t3, 1, &n, &e), CDX_EEXIST);
	assert_non_null(strstr(e.msg, paths[4]));
	store_image *r;
	ASSERT_OK(store_image_get_by_path(s, paths[3], &r, &e), e);
	store_image_free(r);
	/* Bad paths. */
	const char *bad[] = { "relative.jpg" };
	assert_int_equal(store_image_rename(s, bad, t3, 1, &n, NULL),
	    CDX_EINVAL);
	assert_int_equal(store_image_rename(s, f3, bad, 1, &n, NULL),
	    CDX_EINVAL);
	ASSERT_OK(store_verify(s, &e), e);

	/* Reopen: the records and the index agree. */
	store_close(s);
	s = open_store(dir, kind);
	ASSERT_OK(store_verify(s, &e), e);
	check_moved(s, "/photos/c/twice.jpg", was[0]);
	check_moved(s, "/photos/c/two.jpg", was[2]);
	for (int i = 0; i < 3; i++)
		store_image_free(was[i]);
	store_close(s);
	tu_rmrf(dir);
	free(dir);
}

static void
test_rename_flat(void **state)
{
	(void)state;
	run("flat");
}

static void
test_rename_hnsw(void **state)
{
	(void)state;
	run("hnsw");
}

int
main(void)
{
	/* One thread, as the programs' main() would set it. */
	cdx_threads_set(1);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rename_flat),
		cmocka_unit_test(test_rename_hnsw),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
