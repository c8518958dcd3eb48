/* store_batch_*: puts, renames, deletes and failure records in one
 * transaction.  A batch is invisible until its commit and whole after it
 * (a concurrent reader never sees part of one; a writer killed with
 * SIGKILL while committing leaves all of a batch or none); one commit per
 * batch (store_stats.commits); each change means what its single call
 * means, in order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>

#include "common/threads.h"
#include "common/vec.h"
#include "store/store.h"
#include "tests/store_testutil.h"

#define D 8
#define MODEL "clip-batch@0"

static store *
open_store(const char *dir)
{
	return tu_store_open(dir, D, MODEL, "flat");
}

static void
image(store_image *img, const char *path, float *emb, uint64_t seed)
{
	uint64_t st = seed * 7919 + 1;
	memset(img, 0, sizeof(*img));
	img->path = path;
	img->size = (int64_t)seed;
	img->mtime_ns = (int64_t)seed * 1000;
	img->capture_time = STORE_TIME_UNKNOWN;
	for (int i = 0; i < STORE_HASH_LEN; i++)
		img->hash[i] = (uint8_t)(seed + (uint64_t)i);
	for (int i = 0; i < D; i++)
		emb[i] = (float)tu_gauss(&st);
	cdx_vec_normalise(emb, D);      /* embeddings are unit length */
	img->embedding = emb;
}

static uint64_t
commits(store *s)
{
	store_stats st;
	store_get_stats(s, &st);
	return st.commits;
}

/* The id at path, or 0. */
static uint64_t
id_at(store *s, const char *path)
{
	store_image *g = NULL;
	if (store_image_get_by_path(s, path, &g, NULL) != 0)
		return 0;
	uint64_t id = g->id;
	store_image_free(g);
	return id;
}

/* The best hit of a search for emb (the index agrees with LMDB). */
static uint64_t
top_hit(store *s, const float *emb)
{
	store_results *r = NULL;
	cdx_error e;
	ASSERT_OK(store_search(s, emb, 1, NULL, &r, &e), e);
	uint64_t id = r->n ? r->hits[0].id : 0;
	store_results_free(r);
	return id;
}

static void
test_one_commit_for_every_kind_of_change(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	store *s = open_store(dir);
	cdx_error e;
	store_image img[4];
	float emb[5][D];
	image(&img[0], "/p/a.jpg", emb[0], 1);
	image(&img[1], "/p/b.jpg", emb[1], 2);
	image(&img[2], "/p/c.jpg", emb[2], 3);
	ASSERT_OK(store_image_put(s, img, 3, &e), e);
	store_failure f0 = { "/p/broken.jpg", "old reason", 5, 6, 0 };
	ASSERT_OK(store_failure_put(s, &f0, &e), e);
	uint64_t a = img[0].id, b = img[1].id, c = img[2].id;
	uint64_t c0 = commits(s);

	store_batch *bt = NULL;
	ASSERT_OK(store_batch_begin(s, &bt, &e), e);
	image(&img[3], "/p/new.jpg", emb[3], 4);
	ASSERT_OK(store_batch_put(bt, &img[3], &e), e);            /* new */
	ASSERT_OK(store_batch_rename(bt, "/p/a.jpg", "/q/a.jpg", 0, &e), e);
	ASSERT_OK(store_batch_rename(bt, "/q/a.jpg", "/r/a.jpg", 0, &e), e);
	/* b moves onto c's path: c's record goes. */
	ASSERT_OK(store_batch_rename(bt, "/p/b.jpg", "/p/c.jpg", 1, &e), e);
	ASSERT_OK(store_batch_rename(bt, "/p/none.jpg", "/p/x.jpg", 1, &e), e);
	store_failure f = { "/p/bad.jpg", "CRC error", 7, 8, 0 };
	ASSERT_OK(store_batch_fail(bt, &f, &e), e);
	ASSERT_OK(store_batch_unfail(bt, "/p/broken.jpg", &e), e);
	ASSERT_OK(store_batch_unfail(bt, "/p/never.jpg", &e), e);
	/* A put, then its delete, in the same batch: never in the index. */
	image(&img[3], "/p/gone.jpg", emb[4], 5);
	ASSERT_OK(store_batch_put(bt, &img[3], &e), e);
	ASSERT_OK(store_batch_delete_path(bt, "/p/gone.jpg", &e), e);
	ASSERT_OK(store_batch_delete(bt, 999999, &e), e);
	assert_int_equal(store_batch_len(bt), 11);
	/* Bad changes are refused one by one; the batch stays usable. */
	assert_int_equal(store_batch_rename(bt, "rel", "/x", 0, &e), CDX_EINVAL);
	emb[4][0] = NAN;
	assert_int_equal(store_batch_put(bt, &img[3], &e), CDX_EINVAL);
	assert_int_equal(store_batch_len(bt), 11);

	/* Nothing is visible before the commit. */
	assert_int_equal(id_at(s, "/p/new.jpg"), 0);
	assert_int_equal(id_at(s, "/p/a.jpg"), a);
	assert_int_equal(commits(s), c0);

	store_batch_counts n;
	ASSERT_OK(store_batch_commit(bt, &n, &e), e);
	assert_int_equal(commits(s), c0 + 1);
	assert_int_equal(n.put, 2);
	assert_int_equal(n.renamed, 3);
	assert_int_equal(n.deleted, 2);        /* c (replaced), gone.jpg */
	assert_int_equal(n.failed, 1);

	assert_int_equal(id_at(s, "/p/a.jpg"), 0);
	assert_int_equal(id_at(s, "/q/a.jpg"), 0);
	assert_int_equal(id_at(s, "/r/a.jpg"), a);
	assert_int_equal(id_at(s, "/p/b.jpg"), 0);
	assert_int_equal(id_at(s, "/p/c.jpg"), b);
	assert_int_equal(id_at(s, "/p/gone.jpg"), 0);
	uint64_t nw = id_at(s, "/p/new.jpg");
	assert_true(nw != 0 && nw != a && nw != b && nw != c);
	assert_int_equal(store_image_count(s), 3);
	store_failure *g = NULL;
	ASSERT_OK(store_failure_get(s, "/p/bad.jpg", &g, &e), e);
	assert_string_equal(g->reason, "CRC error");
	store_failure_free(g);
	assert_int_equal(store_failure_get(s, "/p/broken.jpg", &g, &e),
			 CDX_ENOTFOUND);
	assert_int_equal(store_failure_count(s), 1);
	/* The index follows: moved records keep their vectors. */
	ASSERT_OK(store_verify(s, &e), e);
	assert_int_equal(top_hit(s, emb[0]), a);
	assert_int_equal(top_hit(s, emb[1]), b);
	assert_int_equal(top_hit(s, emb[3]), nw);

	/* Empty and aborted batches write nothing. */
	ASSERT_OK(store_batch_begin(s, &bt, &e), e);
	ASSERT_OK(store_batch_commit(bt, &n, &e), e);
	ASSERT_OK(store_batch_begin(s, &bt, &e), e);
	ASSERT_OK(store_batch_delete(bt, a, &e), e);
	store_batch_abort(bt);
	store_batch_abort(NULL);
	assert_int_equal(commits(s), c0 + 1);
	assert_int_equal(id_at(s, "/r/a.jpg"), a);

	/* Everything survives a reopen. */
	store_close(s);
	s = open_store(dir);
	ASSERT_OK(store_verify(s, &e), e);
	assert_int_equal(id_at(s, "/p/c.jpg"), b);
	assert_int_equal(store_failure_count(s), 1);
	store_close(s);
	tu_rmrf(dir);
	free(dir);
}

#define BN 50           /* images per batch */
#define ROUNDS 20

typedef struct watcher {
	store *s;
	atomic_int stop;
	int torn;
	uint64_t seen_max;
} watcher;

static void *
watch_counts(void *arg)
{
	watcher *w = arg;
	while (!atomic_load(&w->stop)) {
		uint64_t n = store_image_count(w->s);
		if (n % BN != 0)
			w->torn = 1;
		if (n > w->seen_max)
			w->seen_max = n;
	}
	return NULL;
}

/* Commits batch r: BN new images under /b/r. */
static int
commit_round(store *s, int r, cdx_error *e)
{
	store_batch *bt;
	char path[64];
	float emb[D];
	store_image img;
	int rc = store_batch_begin(s, &bt, e);
	for (int i = 0; i < BN && !rc; i++) {
		snprintf(path, sizeof(path), "/b/%d/%d.jpg", r, i);
		image(&img, path, emb, (uint64_t)(r * BN + i + 1));
		rc = store_batch_put(bt, &img, e);
	}
	if (rc) {
		store_batch_abort(bt);
		return rc;
	}
	return store_batch_commit(bt, NULL, e);
}

static void
test_readers_see_whole_batches(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	store *s = open_store(dir);
	cdx_error e;
	watcher w = { .s = s };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, watch_counts, &w), 0);
	for (int r = 0; r < ROUNDS; r++)
		ASSERT_OK(commit_round(s, r, &e), e);
	atomic_store(&w.stop, 1);
	pthread_join(th, NULL);
	assert_false(w.torn);
	assert_int_equal(store_image_count(s), BN * ROUNDS);
	store_close(s);
	tu_rmrf(dir);
	free(dir);
}

static void
test_killed_commit_is_all_or_nothing(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	uint64_t rng = (uint64_t)time(NULL) | 1;
	store_close(open_store(dir));
	for (int k = 0; k < 8; k++) {
		int fds[2];
		char c;
		assert_int_equal(pipe(fds), 0);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			store *s = open_store(dir);
			cdx_error e;
			close(fds[0]);
			for (int r = 0;; r++) {
				if (commit_round(s, 1000 * k + r, &e) != 0)
					_exit(3);
				if (r == 0 && write(fds[1], "c", 1) != 1)
					_exit(4);
			}
		}
		close(fds[1]);
		/* Kill it at some moment after its first commit. */
		assert_int_equal(read(fds[0], &c, 1), 1);
		close(fds[0]);
		struct timespec ts = { 0, (long)(tu_rand(&rng) % 30) * 1000000 };
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		int status;
		waitpid(pid, &status, 0);
		assert_true(WIFSIGNALED(status));
		store *s = open_store(dir);
		cdx_error e;
		ASSERT_OK(store_verify(s, &e), e);
		uint64_t n = store_image_count(s);
		if (n == 0 || n % BN != 0)
			fail_msg("kill %d: %llu images, not whole batches of %d",
				 k, (unsigned long long)n, BN);
		store_close(s);
	}
	tu_rmrf(dir);
	free(dir);
}

/* store_batch_mark/rollback: the changes after the mark go, those before
 * and after stay, and the batch commits as if they were never added. */
static void
test_rollback_to_mark(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	store *s = open_store(dir);
	cdx_error e;
	store_image img;
	float emb[6][D];
	image(&img, "/p/a.jpg", emb[0], 1);
	ASSERT_OK(store_image_put(s, &img, 1, &e), e);
	uint64_t a = img.id;
	store_batch *bt = NULL;
	ASSERT_OK(store_batch_begin(s, &bt, &e), e);
	image(&img, "/p/b.jpg", emb[1], 2);
	ASSERT_OK(store_batch_put(bt, &img, &e), e);
	size_t mark = store_batch_mark(bt);
	assert_int_equal(mark, 1);
	ASSERT_OK(store_batch_delete_path(bt, "/p/a.jpg", &e), e);
	image(&img, "/p/c.jpg", emb[2], 3);
	ASSERT_OK(store_batch_put(bt, &img, &e), e);
	store_failure f = { "/p/c.jpg", "nope", 1, 2, 0 };
	ASSERT_OK(store_batch_fail(bt, &f, &e), e);
	image(&img, "/p/d.jpg", emb[3], 4);
	ASSERT_OK(store_batch_put(bt, &img, &e), e);
	assert_int_equal(store_batch_len(bt), 5);
	store_batch_rollback(bt, mark);
	assert_int_equal(store_batch_len(bt), 1);
	store_batch_rollback(bt, 7);    /* past the end: nothing */
	assert_int_equal(store_batch_len(bt), 1);
	image(&img, "/p/e.jpg", emb[4], 5);
	ASSERT_OK(store_batch_put(bt, &img, &e), e);
	store_batch_counts cnt;
	ASSERT_OK(store_batch_commit(bt, &cnt, &e), e);
	assert_int_equal(cnt.put, 2);
	assert_int_equal(cnt.deleted, 0);
	assert_int_equal(cnt.failed, 0);
	assert_int_equal(id_at(s, "/p/a.jpg"), a);
	assert_true(id_at(s, "/p/b.jpg") != 0);
	assert_true(id_at(s, "/p/e.jpg") != 0);
	assert_int_equal(id_at(s, "/p/c.jpg"), 0);
	assert_int_equal(id_at(s, "/p/d.jpg"), 0);
	assert_int_equal(store_failure_count(s), 0);
	/* e's embedding is its own (the rolled-back ones are gone). */
	assert_int_equal(top_hit(s, emb[4]), id_at(s, "/p/e.jpg"));
	assert_int_equal(top_hit(s, emb[1]), id_at(s, "/p/b.jpg"));
	ASSERT_OK(store_verify(s, &e), e);
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
		cmocka_unit_test(test_one_commit_for_every_kind_of_change),
		cmocka_unit_test(test_readers_see_whole_batches),
		cmocka_unit_test(test_killed_commit_is_all_or_nothing),
		cmocka_unit_test(test_rollback_to_mark),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
