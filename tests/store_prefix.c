/* store_image_foreach_prefix / store_failure_foreach_prefix: the records
 * under a folder, component by component as common/path.h says: siblings
 * that sort between "/a" and "/a/" ("/a-b", "/a.jpg") or after it ("/a2")
 * are never visited, nested folders are, "/" holds everything.  Each
 * folder's result is compared with a filter of every record through
 * cdx_path_under, and with the expected count. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/path.h"
#include "common/threads.h"
#include "store/store.h"
#include "tests/store_testutil.h"

#define D 8
#define NP (sizeof(paths) / sizeof(paths[0]))

static const char *const paths[] = {
	"/a", "/a/x.jpg", "/a/b/y.jpg", "/a/b/c/z.jpg", "/a-b/q.jpg",
	"/a2/r.jpg", "/a.jpg", "/ab", "/b/s.jpg", "/a/b-c/w.jpg",
};

typedef struct seen {
	char path[NP][STORE_PATH_MAX + 1];
	uint64_t id[NP];
	size_t n;
	int stop_after;         /* > 0: return 7 after this many */
	int bad_emb;
} seen;

static int
on_image(void *user, const store_image *img)
{
	seen *s = user;
	if (s->n >= NP)
		return -1;
	snprintf(s->path[s->n], sizeof(s->path[0]), "%s", img->path);
	s->id[s->n] = img->id;
	double ss = 0;
	for (int i = 0; i < D; i++)
		ss += (double)img->embedding[i] * img->embedding[i];
	if (ss < 0.99 || ss > 1.01)
		s->bad_emb = 1;
	s->n++;
	return s->stop_after > 0 && (int)s->n == s->stop_after ? 7 : 0;
}

static int
on_failure(void *user, const store_failure *f)
{
	seen *s = user;
	if (s->n >= NP)
		return -1;
	snprintf(s->path[s->n], sizeof(s->path[0]), "%s", f->path);
	s->n++;
	return 0;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static store *
open_with_images(const char *dir, uint64_t *ids)
{
	store_params p = store_default_params();
	store *s = NULL;
	cdx_error e;
	p.dim = D;
	p.model_id = "clip-prefix@0";
	p.index_kind = "flat";
	ASSERT_OK(store_open(dir, &p, &s, &e), e);
	store_image imgs[NP];
	float embs[NP][D];
	uint64_t st = 99;
	memset(imgs, 0, sizeof(imgs));
	for (size_t i = 0; i < NP; i++) {
		imgs[i].path = paths[i];
		imgs[i].size = (int64_t)i;
		imgs[i].capture_time = STORE_TIME_UNKNOWN;
		for (int j = 0; j < D; j++)
			embs[i][j] = (float)tu_gauss(&st);
		imgs[i].embedding = embs[i];
	}
	ASSERT_OK(store_image_put(s, imgs, NP, &e), e);
	for (size_t i = 0; i < NP; i++)
		ids[i] = imgs[i].id;
	return s;
}

/* Checks the visit of dir against cdx_path_under over every path, in path
 * order, and against want (its expected number). */
static void
check_dir(store *s, const char *dir, const uint64_t *ids, size_t want)
{
	seen got = { 0 };
	const char *exp[NP];
	size_t ne = 0;
	cdx_error e;
	ASSERT_OK(store_image_foreach_prefix(s, dir, on_image, &got, &e), e);
	for (size_t i = 0; i < NP; i++)
		if (cdx_path_under(paths[i], dir))
			exp[ne++] = paths[i];
	qsort(exp, ne, sizeof(exp[0]), cmp_str);
	if (got.n != want || ne != want)
		fail_msg("%s: visited %zu, the rule says %zu, expected %zu", dir,
			 got.n, ne, want);
	for (size_t i = 0; i < ne; i++) {
		assert_string_equal(got.path[i], exp[i]);
		size_t k = 0;
		while (strcmp(paths[k], exp[i]) != 0)
			k++;
		assert_int_equal(got.id[i], ids[k]);
	}
	assert_false(got.bad_emb);
}

static void
test_images_under_folders(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	uint64_t ids[NP];
	store *s = open_with_images(dir, ids);

	check_dir(s, "/a", ids, 5);     /* itself, x, b/y, b/c/z, b-c/w */
	check_dir(s, "/a/", ids, 5);
	check_dir(s, "/a/b", ids, 2);
	check_dir(s, "/a/b/c", ids, 1);
	check_dir(s, "/a/x.jpg", ids, 1);
	check_dir(s, "/a-b", ids, 1);
	check_dir(s, "/a2", ids, 1);
	check_dir(s, "/", ids, NP);
	check_dir(s, "/a/x", ids, 0);
	check_dir(s, "/c", ids, 0);
	check_dir(s, "/zzz/deeper", ids, 0);

	/* A non-zero return stops the walk and is returned. */
	seen got = { .stop_after = 2 };
	cdx_error e;
	assert_int_equal(store_image_foreach_prefix(s, "/", on_image, &got, &e),
			 7);
	assert_int_equal(got.n, 2);
	assert_int_equal(store_image_foreach_prefix(s, "a", on_image, &got, &e),
			 CDX_EINVAL);
	assert_int_equal(e.code, CDX_EINVAL);

	store_close(s);
	tu_rmrf(dir);
	free(dir);
}

static void
test_failures_under_folders(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	uint64_t ids[NP];
	store *s = open_with_images(dir, ids);
	cdx_error e;
	const char *fails[] = { "/p/f.jpg", "/p2/f.jpg", "/p-q/f.jpg",
				"/p/deep/g.jpg", "/p" };
	for (size_t i = 0; i < 5; i++) {
		store_failure f = { fails[i], "broken", 1, 2, 0 };
		ASSERT_OK(store_failure_put(s, &f, &e), e);
	}
	seen got = { 0 };
	ASSERT_OK(store_failure_foreach_prefix(s, "/p", on_failure, &got, &e),
		  e);
	assert_int_equal(got.n, 3);
	assert_string_equal(got.path[0], "/p");
	assert_string_equal(got.path[1], "/p/deep/g.jpg");
	assert_string_equal(got.path[2], "/p/f.jpg");
	memset(&got, 0, sizeof(got));
	ASSERT_OK(store_failure_foreach_prefix(s, "/", on_failure, &got, &e), e);
	assert_int_equal(got.n, 5);
	memset(&got, 0, sizeof(got));
	ASSERT_OK(store_failure_foreach_prefix(s, "/a", on_failure, &got, &e),
		  e);
	assert_int_equal(got.n, 0);
	store_close(s);
	tu_rmrf(dir);
	free(dir);
}

int
main(void)
{
	/* One thread, as the programs' main() would set it. */
	cdx_threads_set(1);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_images_under_folders),
		cmocka_unit_test(test_failures_under_folders),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
