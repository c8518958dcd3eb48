/* Tests of store/: records, failures, settings, model identity, locking,
 * persistence of the derived index, map growth, exact search. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "common/threads.h"
#include "store/store.h"
#include "tests/store_testutil.h"

#define MODEL "clip-test@0123456789abcdef"

static store *
open_store(const char *dir, int dim, const char *kind)
{
	store_params p = store_default_params();
	store *s = NULL;
	cdx_error e;
	p.dim = dim;
	p.model_id = MODEL;
	p.index_kind = kind;
	ASSERT_OK(store_open(dir, &p, &s, &e), e);
	return s;
}

static void
make_image(store_image *img, char *pathbuf, const char *path, float *emb,
	   int dim, uint64_t seed)
{
	strcpy(pathbuf, path);
	memset(img, 0, sizeof(*img));
	img->path = pathbuf;
	img->size = (int64_t)(seed * 100);
	img->mtime_ns = (int64_t)seed * 1000000007;
	for (int i = 0; i < STORE_HASH_LEN; i++)
		img->hash[i] = (uint8_t)(seed + i);
	img->width = 640 + (uint32_t)seed;
	img->height = 480;
	img->capture_time = seed % 3 ? (int64_t)seed * 1000 : STORE_TIME_UNKNOWN;
	uint64_t st = seed * 7919 + 1;
	for (int i = 0; i < dim; i++)
		emb[i] = (float)tu_gauss(&st) * 3.0f;
	img->embedding = emb;
}

static void
test_put_get_replace_delete(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	store *s = open_store(dir, 8, "flat");
	cdx_error e;
	store_image imgs[3];
	char paths[3][64];
	float embs[3][8];
	make_image(&imgs[0], paths[0], "/photos/a.jpg", embs[0], 8, 1);
	make_image(&imgs[1], paths[1], "/photos/b.jpg", embs[1], 8, 2);
	make_image(&imgs[2], paths[2], "/photos/c.jpg", embs[2], 8, 3);
	memcpy(imgs[2].hash, imgs[1].hash, STORE_HASH_LEN);
	assert_int_equal(store_seq(s), 0);
	ASSERT_OK(store_image_put(s, imgs, 3, &e), e);
	assert_int_equal(store_image_count(s), 3);
	assert_int_equal(store_seq(s), 3);
	assert_true(imgs[0].id != 0 && imgs[1].id != imgs[0].id &&
		    imgs[2].id != imgs[1].id);

	store_image *g = NULL;
	ASSERT_OK(store_image_get(s, imgs[1].id, &g, &e), e);
	assert_string_equal(g->path, "/photos/b.jpg");
	assert_int_equal(g->size, imgs[1].size);
	assert_int_equal(g->mtime_ns, imgs[1].mtime_ns);
	assert_memory_equal(g->hash, imgs[1].hash, STORE_HASH_LEN);
	assert_int_equal(g->width, imgs[1].width);
	assert_int_equal(g->capture_time, imgs[1].capture_time);
	double norm = 0, dot = 0, n1 = 0;
	for (int i = 0; i < 8; i++) {
		norm += (double)g->embedding[i] * g->embedding[i];
		dot += (double)g->embedding[i] * embs[1][i];
		n1 += (double)embs[1][i] * embs[1][i];
	}
	assert_true(fabs(norm - 1) < 1e-3);     /* unit, in half precision */
	assert_true(dot / sqrt(n1 * norm) > 0.9999998); /* same direction */
	store_image_free(g);

	ASSERT_OK(store_image_get_by_path(s, "/photos/c.jpg", &g, &e), e);
	assert_int_equal(g->id, imgs[2].id);
	assert_int_equal(g->capture_time, STORE_TIME_UNKNOWN);
	store_image_free(g);
	assert_int_equal(store_image_get_by_path(s, "/photos/zz.jpg", &g, &e),
			 CDX_ENOTFOUND);
	assert_int_equal(store_image_get(s, 999, &g, &e), CDX_ENOTFOUND);

	uint64_t ids[4];
	size_t nh = 0;
	ASSERT_OK(store_image_find_hash(s, imgs[1].hash, ids, 4, &nh, &e), e);
	assert_int_equal(nh, 2);
	assert_true((ids[0] == imgs[1].id && ids[1] == imgs[2].id) ||
		    (ids[1] == imgs[1].id && ids[0] == imgs[2].id));

	/* Replace b: same id, new fields, old hash entry gone. */
	uint64_t bid = imgs[1].id;
	store_image r;
	char rp[64];
	float remb[8];
	make_image(&r, rp, "/photos/b.jpg", remb, 8, 9);
	ASSERT_OK(store_image_put(s, &r, 1, &e), e);
	assert_int_equal(r.id, bid);
	assert_int_equal(store_image_count(s), 3);
	ASSERT_OK(store_image_get(s, bid, &g, &e), e);
	assert_int_equal(g->width, r.width);
	store_image_free(g);
	ASSERT_OK(store_image_find_hash(s, imgs[1].hash, ids, 4, &nh, &e), e);
	assert_int_equal(nh, 1);
	assert_int_equal(ids[0], imgs[2].id);
	ASSERT_OK(store_verify(s, &e), e);

	/* Delete by id and by path; missing ones are skipped. */
	size_t nd = 0;
	uint64_t del[2] = { imgs[0].id, 12345 };
	ASSERT_OK(store_image_delete(s, del, 2, &nd, &e), e);
	assert_int_equal(nd, 1);
	const char *dp[2] = { "/photos/c.jpg", "/nope" };
	ASSERT_OK(store_image_delete_paths(s, dp, 2, &nd, &e), e);
	assert_int_equal(nd, 1);
	assert_int_equal(store_image_count(s), 1);
	assert_int_equal(store_image_get(s, imgs[0].id, &g, &e), CDX_ENOTFOUND);
	ASSERT_OK(store_verify(s, &e), e);

	/* The same path twice in one batch: the later one wins. */
	store_image two[2];
	char tp[2][64];
	float te[2][8];
	make_image(&two[0], tp[0], "/photos/dup.jpg", te[0], 8, 11);
	make_image(&two[1], tp[1], "/photos/dup.jpg", te[1], 8, 12);
	ASSERT_OK(store_image_put(s, two, 2, &e), e);
	assert_int_equal(two[0].id, two[1].id);
	assert_int_equal(store_image_count(s), 2);
	ASSERT_OK(store_image_get(s, two[0].id, &g, &e), e);
	assert_int_equal(g->width, two[1].width);
	store_image_free(g);
	ASSERT_OK(store_verify(s, &e), e);
	const char *dupp = "/photos/dup.jpg";
	ASSERT_OK(store_image_delete_paths(s, &dupp, 1, &nd, &e), e);
	assert_int_equal(nd, 1);
	ASSERT_OK(store_verify(s, &e), e);

	/* Ids are never reused, also across reopen. */
	uint64_t maxid = imgs[2].id;
	store_close(s);
	s = open_store(dir, 8, "flat");
	make_image(&r, rp, "/photos/c.jpg", remb, 8, 4);
	ASSERT_OK(store_image_put(s, &r, 1, &e), e);
	assert_true(r.id > maxid);
	assert_int_equal(store_image_count(s), 2);
	ASSERT_OK(store_verify(s, &e), e);
	store_close(s);
	store_close(NULL);
	tu_rmrf(dir);
	free(dir);
}

static void
test_put_rejects_bad_input_atomically(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	store *s = open_store(dir, 4, "flat");
	cdx_error e;
	store_image imgs[2];
	char p0[600], p1[64];
	float e0[4], e1[4];
	make_image(&imgs[0], p0, "/ok.jpg", e0, 4, 1);
	make_image(&imgs[1], p1, "relative.jpg", e1, 4, 2);
	assert_int_equal(store_image_put(s, imgs, 2, &e), CDX_EINVAL);
	assert_non_null(strstr(e.msg, "relative.jpg"));
	assert_int_equal(store_image_count(s), 0);

	make_image(&imgs[1], p1, "/nan.jpg", e1, 4, 2);
	e1[2] = NAN;
	assert_int_equal(store_image_put(s, imgs, 2, &e), CDX_EINVAL);
	assert_non_null(strstr(e.msg, "/nan.jpg"));
	memset(e1, 0, sizeof(e1));
	assert_int_equal(store_image_put(s, imgs, 2, &e), CDX_EINVAL);
	e1[0] = INFINITY;
	assert_int_equal(store_image_put(s, imgs, 2, &e), CDX_EINVAL);
	assert_int_equal(store_image_count(s), 0);
	assert_int_equal(store_seq(s), 0);

	memset(p0, 'x', sizeof(p0) - 1);
	p0[0] = '/';
	p0[sizeof(p0) - 1] = '\0';
	assert_int_equal(store_image_put(s, imgs, 1, &e), CDX_ETOOBIG);
	assert_int_equal(store_image_count(s), 0);
	store_close(s);
	tu_rmrf(dir);
	free(dir);
}

static int
count_fail(void *user, const store_failure *f)
{
	(*(int *)user)++;
	assert_non_null(f->reason);
	return 0;
}

static void
test_failures_and_settings(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	store *s = open_store(dir, 4, "flat");
	cdx_error e;
	store_failure f = { "/bad/one.jpg", "not a JPEG: bad marker", 10, 20, 0 };
	ASSERT_OK(store_failure_put(s, &f, &e), e);
	f.path = "/bad/two.png";
	f.reason = "truncated";
	ASSERT_OK(store_failure_put(s, &f, &e), e);
	ASSERT_OK(store_failure_put(s, &f, &e), e); /* replace */
	assert_int_equal(store_failure_count(s), 2);
	store_failure *g;
	ASSERT_OK(store_failure_get(s, "/bad/one.jpg", &g, &e), e);
	assert_string_equal(g->reason, "not a JPEG: bad marker");
	assert_int_equal(g->size, 10);
	assert_int_equal(g->mtime_ns, 20);
	assert_true(g->when > 0);
	store_failure_free(g);
	int n = 0;
	ASSERT_OK(store_failure_foreach(s, count_fail, &n, &e), e);
	assert_int_equal(n, 2);
	ASSERT_OK(store_failure_delete(s, "/bad/one.jpg", &e), e);
	assert_int_equal(store_failure_delete(s, "/bad/one.jpg", &e),
			 CDX_ENOTFOUND);
	assert_int_equal(store_failure_count(s), 1);

	/* A successful put of the same path clears its failure. */
	store_image img;
	char p[64];
	float emb[4];
	make_image(&img, p, "/bad/two.png", emb, 4, 5);
	ASSERT_OK(store_image_put(s, &img, 1, &e), e);
	assert_int_equal(store_failure_count(s), 0);
	assert_int_equal(store_failure_get(s, "/bad/two.png", &g, &e),
			 CDX_ENOTFOUND);

	ASSERT_OK(store_kv_put(s, "indexer.roots", "/a\n/b", 5, &e), e);
	void *v;
	size_t len;
	ASSERT_OK(store_kv_get(s, "indexer.roots", &v, &len, &e), e);
	assert_int_equal(len, 5);
	assert_string_equal(v, "/a\n/b");
	free(v);
	assert_int_equal(store_kv_get(s, "nope", &v, &len, &e), CDX_ENOTFOUND);
	assert_int_equal(store_kv_put(s, "", "x", 1, &e), CDX_EINVAL);
	store_close(s);

	/* Everything persists. */
	s = open_store(dir, 4, "flat");
	ASSERT_OK(store_kv_get(s, "indexer.roots", &v, &len, &e), e);
	free(v);
	ASSERT_OK(store_kv_delete(s, "indexer.roots", &e), e);
	assert_int_equal(store_kv_get(s, "indexer.roots", &v, &len, &e),
			 CDX_ENOTFOUND);
	assert_int_equal(store_image_count(s), 1);
	store_close(s);
	tu_rmrf(dir);
	free(dir);
}

static void
test_model_mismatch_and_reembed(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	store *s = open_store(dir, 4, "flat");
	cdx_error e;
	store_image img;
	char p[64];
	float emb[4];
	make_image(&img, p, "/x.jpg", emb, 4, 1);
	ASSERT_OK(store_image_put(s, &img, 1, &e), e);
	ASSERT_OK(store_kv_put(s, "k", "v", 1, &e), e);
	store_close(s);

	store_params pp = store_default_params();
	pp.dim = 4;
	pp.model_id = "other-model@ffff";
	assert_int_equal(store_open(dir, &pp, &s, &e), CDX_EMODEL);
	assert_non_null(strstr(e.msg, MODEL));
	assert_non_null(strstr(e.msg, "other-model@ffff"));
	pp.model_id = MODEL;
	pp.dim = 5;
	assert_int_equal(store_open(dir, &pp, &s, &e), CDX_EMODEL);
	assert_non_null(strstr(e.msg, "dim 4"));

	/* reembed: adopts the new model, drops images, keeps settings. */
	pp.model_id = "other-model@ffff";
	pp.reembed = 1;
	ASSERT_OK(store_open(dir, &pp, &s, &e), e);
	assert_int_equal(store_image_count(s), 0);
	void *v;
	size_t len;
	ASSERT_OK(store_kv_get(s, "k", &v, &len, &e), e);
	free(v);
	float emb5[5] = { 1, 2, 3, 4, 5 };
	img.embedding = emb5;
	ASSERT_OK(store_image_put(s, &img, 1, &e), e);
	assert_true(img.id > 1); /* ids are not reused */
	store_close(s);
	pp.reembed = 0;
	ASSERT_OK(store_open(dir, &pp, &s, &e), e);
	assert_int_equal(store_image_count(s), 1);
	ASSERT_OK(store_verify(s, &e), e);
	store_close(s);
	tu_rmrf(dir);
	free(dir);
}

/* The identity that must match is model_id (architecture @ weights); the
 * label (a folder's name) follows silently.  A store made when ids were
 * "<folder name>@<hash>" (no label) opens with the same weights and dim
 * and gets the new id; other weights still refuse. */
static void
test_model_identity_not_its_name(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	store_params pp = store_default_params();
	store *s = NULL;
	cdx_error e;
	pp.dim = 4;
	/* An old store: its id carries the folder's name, no label. */
	pp.model_id = "my-clip@00000000000000aa";
	ASSERT_OK(store_open(dir, &pp, &s, &e), e);
	store_image img;
	char p[64];
	float emb[4];
	make_image(&img, p, "/x.jpg", emb, 4, 1);
	ASSERT_OK(store_image_put(s, &img, 1, &e), e);
	store_close(s);
	/* Renamed folder, same weights: opens, records kept. */
	pp.model_id = "clip-4-8/4-v8x1-t8x1@00000000000000aa";
	pp.model_label = "renamed-clip";
	ASSERT_OK(store_open(dir, &pp, &s, &e), e);
	assert_int_equal(store_image_count(s), 1);
	store_close(s);
	/* Renamed again: the label changes, the identity matches. */
	pp.model_label = "third-name";
	ASSERT_OK(store_open(dir, &pp, &s, &e), e);
	assert_int_equal(store_image_count(s), 1);
	store_stats st;
	store_get_stats(s, &st);
	assert_string_equal(st.model_label, "third-name");
	store_close(s);
	/* Other weights refuse, naming both; the migration was once. */
	pp.model_id = "clip-4-8/4-v8x1-t8x1@00000000000000bb";
	assert_int_equal(store_open(dir, &pp, &s, &e), CDX_EMODEL);
	assert_non_null(strstr(e.msg, "@00000000000000aa"));
	assert_non_null(strstr(e.msg, "reembed"));
	/* Same hash, another architecture, once labelled: refused. */
	pp.model_id = "siglip-4-8/4-v8x1-t8x1@00000000000000aa";
	assert_int_equal(store_open(dir, &pp, &s, &e), CDX_EMODEL);
	/* The old name-based id no longer matches either. */
	pp.model_id = "my-clip@00000000000000aa";
	assert_int_equal(store_open(dir, &pp, &s, &e), CDX_EMODEL);
	/* Same weights, other dim: refused. */
	pp.model_id = "clip-4-8/4-v8x1-t8x1@00000000000000aa";
	pp.dim = 5;
	assert_int_equal(store_open(dir, &pp, &s, &e), CDX_EMODEL);
	tu_rmrf(dir);
	free(dir);
}

/* The model's family is recorded beside its identity: a store made
 * before families existed gains it at the next open, a re-embed replaces
 * it, and it survives reopening without one. */
static void
test_model_family_recorded(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	store *s = open_store(dir, 4, "flat");   /* no family */
	store_stats st;
	store_get_stats(s, &st);
	assert_string_equal(st.model_family, "");
	store_close(s);

	store_params pp = store_default_params();
	cdx_error e;
	pp.dim = 4;
	pp.model_id = MODEL;
	pp.model_family = "clip";
	ASSERT_OK(store_open(dir, &pp, &s, &e), e);
	store_get_stats(s, &st);
	assert_string_equal(st.model_family, "clip");
	store_close(s);

	pp.model_id = "siglip-test@0123";
	pp.model_family = "siglip";
	pp.reembed = 1;
	ASSERT_OK(store_open(dir, &pp, &s, &e), e);
	store_close(s);
	pp.model_family = NULL;
	pp.reembed = 0;
	ASSERT_OK(store_open(dir, &pp, &s, &e), e);
	store_get_stats(s, &st);
	assert_string_equal(st.model_family, "siglip");
	store_close(s);

	pp.model_family = "a family name over thirty-one bytes";
	assert_int_equal(store_open(dir, &pp, &s, &e), CDX_EINVAL);
	tu_rmrf(dir);
	free(dir);
}

static void
test_faiss_errors_become_cdx_eindex(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	store_params p = store_default_params();
	store *s = NULL;
	cdx_error e;
	p.dim = 8;
	p.model_id = MODEL;
	p.index_kind = "NoSuchIndex42";
	/* FAISS throws on the factory string; the C API layer catches it. */
	assert_int_equal(store_open(dir, &p, &s, &e), CDX_EINDEX);
	assert_null(s);
	assert_non_null(strstr(e.msg, "FAISS error -2"));
	assert_non_null(strstr(e.msg, "NoSuchIndex42"));
	/* The records are untouched and a valid kind opens. */
	p.index_kind = "flat";
	ASSERT_OK(store_open(dir, &p, &s, &e), e);
	store_close(s);
	tu_rmrf(dir);
	free(dir);
}

/* Fails unless path exists with exactly the permission bits want. */
static void
assert_mode(const char *dir, const char *name, mode_t want)
{
	char path[512];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (stat(path, &st) != 0)
		fail_msg("%s: %s", path, strerror(errno));
	if ((st.st_mode & 07777) != want)
		fail_msg("%s has mode %04o, want %04o", path,
			 (unsigned)(st.st_mode & 07777), (unsigned)want);
}

static void
test_files_are_private_whatever_the_umask(void **state)
{
	(void)state;
	static const char *const files[] = { "data.mdb", "lock.mdb",
					     "store.lock", "index.faiss" };
	char *dir = tu_tmpdir();
	char sub[512];
	snprintf(sub, sizeof(sub), "%s/store", dir);
	mode_t old = umask(022);
	store *s = open_store(sub, 4, "flat");
	store_image img;
	char path[64];
	float emb[4];
	cdx_error e;
	make_image(&img, path, "/photos/private.jpg", emb, 4, 1);
	ASSERT_OK(store_image_put(s, &img, 1, &e), e);
	ASSERT_OK(store_save(s, &e), e);
	store_close(s);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		assert_mode(sub, files[i], 0600);
	assert_mode(dir, "store", 0700);
	/* A store made before (world-readable files) is tightened on open. */
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char p2[600];
		snprintf(p2, sizeof(p2), "%s/%s", sub, files[i]);
		assert_int_equal(chmod(p2, 0644), 0);
	}
	s = open_store(sub, 4, "flat");
	store_close(s);
	umask(old);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		assert_mode(sub, files[i], 0600);
	tu_rmrf(dir);
	free(dir);
}

static void
test_open_twice_is_busy(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	store *s = open_store(dir, 4, "flat");
	store_params p = store_default_params();
	store *s2 = NULL;
	cdx_error e;
	p.dim = 4;
	p.model_id = MODEL;
	/* Same process. */
	assert_int_equal(store_open(dir, &p, &s2, &e), CDX_EBUSY);
	assert_non_null(strstr(e.msg, "already open"));
	/* Another process. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		cdx_error ce;
		int rc = store_open(dir, &p, &s2, &ce);
		_exit(rc == CDX_EBUSY && strstr(ce.msg, "already open") ? 0 : 1);
	}
	int status;
	waitpid(pid, &status, 0);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	store_close(s);
	/* Once closed, it opens. */
	ASSERT_OK(store_open(dir, &p, &s2, &e), e);
	store_close(s2);
	tu_rmrf(dir);
	free(dir);
}

static void
test_unwritable_directory(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	char sub[256];
	snprintf(sub, sizeof(sub), "%s/ro", dir);
	assert_int_equal(mkdir(sub, 0555), 0);
	chmod(dir, 0755);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* root ignores permissions: drop to nobody first. */
		if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
			_exit(3);
		store_params p = store_default_params();
		store *s;
		cdx_error ce;
		p.dim = 4;
		p.model_id = MODEL;
		int rc = store_open(sub, &p, &s, &ce);
		_exit(rc == CDX_EPERM && strstr(ce.msg, sub) ? 0 : 1);
	}
	int status;
	waitpid(pid, &status, 0);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	tu_rmrf(dir);
	free(dir);
}

/* ---- index persistence ---- */

#define PD 16

static void
put_n(store *s, size_t from, size_t n, uint64_t seed)
{
	cdx_error e;
	store_image *imgs = calloc(n, sizeof(*imgs));
	char (*paths)[64] = calloc(n, 64);
	float *embs = malloc(n * PD * sizeof(float));
	tu_clustered(embs, n, PD, 10, 42, seed);
	for (size_t i = 0; i < n; i++) {
		snprintf(paths[i], 64, "/p/%06zu.jpg", from + i);
		imgs[i].path = paths[i];
		imgs[i].embedding = embs + i * PD;
		imgs[i].capture_time = (int64_t)(from + i);
		imgs[i].mtime_ns = (int64_t)(from + i) * 1000000000;
	}
	ASSERT_OK(store_image_put(s, imgs, n, &e), e);
	free(embs);
	free(paths);
	free(imgs);
}

static void
index_path(const char *dir, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s/index.faiss", dir);
}

static void
test_reopen_uses_saved_index_and_catches_up(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	store *s = open_store(dir, PD, "flat");
	cdx_error e;
	store_stats st;
	put_n(s, 0, 200, 1);
	store_close(s);
	s = open_store(dir, PD, "flat");
	store_get_stats(s, &st);
	assert_int_equal(st.rebuilt_on_open, 0);
	assert_int_equal(st.caught_up, 0);
	assert_int_equal(st.index_ntotal, 200);
	store_close(s);

	/* A writer that dies without saving: the index catches up. */
	pid_t pid = fork();
	if (pid == 0) {
		store *c = open_store(dir, PD, "flat");
		put_n(c, 200, 50, 2);
		put_n(c, 0, 10, 3); /* replacements */
		size_t nd;
		uint64_t ids[2] = { 5, 6 };
		cdx_error ce;
		if (store_image_delete(c, ids, 2, &nd, &ce) || nd != 2)
			_exit(1);
		_exit(0); /* no store_close: index.faiss is stale */
	}
	int status;
	waitpid(pid, &status, 0);
	assert_int_equal(WEXITSTATUS(status), 0);
	s = open_store(dir, PD, "flat");
	store_get_stats(s, &st);
	assert_int_equal(st.rebuilt_on_open, 0);
	assert_int_equal(st.caught_up, 62);
	assert_int_equal(st.images, 248);
	assert_int_equal(st.index_ntotal, 248);
	ASSERT_OK(store_verify(s, &e), e);
	store_close(s);
	tu_rmrf(dir);
	free(dir);
}

static void
damage_and_reopen(const char *dir, int how, const char *kind)
{
	char path[512];
	cdx_error e;
	store_stats st;
	index_path(dir, path, sizeof(path));
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	if (how == 0) { /* flip a byte in the middle */
		FILE *f = fopen(path, "r+b");
		fseek(f, sb.st_size / 2, SEEK_SET);
		int ch = fgetc(f);
		fseek(f, sb.st_size / 2, SEEK_SET);
		fputc(ch ^ 0x5a, f);
		fclose(f);
	} else if (how == 1) { /* truncate */
		assert_int_equal(truncate(path, sb.st_size * 2 / 3), 0);
	} else if (how == 2) {
		assert_int_equal(unlink(path), 0);
	} else if (how == 3) { /* garbage header */
		assert_int_equal(truncate(path, 10), 0);
	}
	store *s = open_store(dir, PD, kind);
	store_get_stats(s, &st);
	assert_int_equal(st.rebuilt_on_open, 1);
	assert_int_equal(st.images, 300);
	assert_int_equal(st.index_ntotal, 300);
	ASSERT_OK(store_verify(s, &e), e);
	store_close(s);
}

static void
test_damaged_index_file_is_rebuilt(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	store *s = open_store(dir, PD, "flat");
	put_n(s, 0, 300, 1);
	store_close(s);
	for (int how = 0; how < 4; how++)
		damage_and_reopen(dir, how, "flat");
	/* A different kind than requested is rebuilt too. */
	store_stats st;
	s = open_store(dir, PD, "HNSW16");
	store_get_stats(s, &st);
	assert_int_equal(st.rebuilt_on_open, 1);
	assert_string_equal(st.index_kind, "HNSW16");
	store_close(s);
	s = open_store(dir, PD, "HNSW16");
	store_get_stats(s, &st);
	assert_int_equal(st.rebuilt_on_open, 0);
	store_close(s);
	tu_rmrf(dir);
	free(dir);
}

static void
test_map_grows_when_full(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	store_params p = store_default_params();
	store *s;
	cdx_error e;
	p.dim = PD;
	p.model_id = MODEL;
	p.map_size = 128 * 1024;
	ASSERT_OK(store_open(dir, &p, &s, &e), e);
	/* ~2000 records of ~150 bytes: several times the initial map. */
	for (int i = 0; i < 10; i++)
		put_n(s, (size_t)i * 200, 200, (uint64_t)i + 1);
	assert_int_equal(store_image_count(s), 2000);
	ASSERT_OK(store_verify(s, &e), e);
	store_close(s);
	ASSERT_OK(store_open(dir, &p, &s, &e), e);
	assert_int_equal(store_image_count(s), 2000);
	store_image *g;
	ASSERT_OK(store_image_get_by_path(s, "/p/001999.jpg", &g, &e), e);
	store_image_free(g);
	store_close(s);
	tu_rmrf(dir);
	free(dir);
}

/* ---- exact search ---- */

#define SD 32
#define SN 3000

typedef struct bf_item {
	uint64_t id;
	char path[64];
	int64_t ctime, mtime_s;
	float v[SD];
} bf_item;

typedef struct bf_set {
	bf_item *it;
	size_t n;
} bf_set;

static int
bf_collect(void *user, const store_image *img)
{
	bf_set *b = user;
	bf_item *x = &b->it[b->n++];
	x->id = img->id;
	snprintf(x->path, sizeof(x->path), "%s", img->path);
	x->ctime = img->capture_time;
	x->mtime_s = img->mtime_ns / 1000000000;
	memcpy(x->v, img->embedding, sizeof(x->v));
	return 0;
}

static int
bf_match(const bf_item *x, const store_filter *f)
{
	if (!f)
		return 1;
	if (f->path_prefix && strncmp(x->path, f->path_prefix,
				      strlen(f->path_prefix)) != 0)
		return 0;
	if (f->time_field == STORE_TIME_CAPTURE)
		return x->ctime != STORE_TIME_UNKNOWN && x->ctime >= f->time_min &&
		       x->ctime <= f->time_max;
	if (f->time_field == STORE_TIME_MTIME)
		return x->mtime_s >= f->time_min && x->mtime_s <= f->time_max;
	return 1;
}

typedef struct scored {
	double s;
	uint64_t id;
} scored;

static int
scored_desc(const void *a, const void *b)
{
	const scored *x = a, *y = b;
	return x->s < y->s ? 1 : x->s > y->s ? -1 : 0;
}

/* Compares store_search with brute force over the stored embeddings. */
static void
check_search(store *s, const bf_set *b, const float *q, size_t k,
	     const store_filter *f)
{
	cdx_error e;
	store_results *r;
	scored *all = malloc(b->n * sizeof(*all));
	size_t m = 0;
	double qn = 0;
	for (int i = 0; i < SD; i++)
		qn += (double)q[i] * q[i];
	qn = sqrt(qn);
	for (size_t j = 0; j < b->n; j++) {
		if (!bf_match(&b->it[j], f))
			continue;
		double d = 0;
		for (int i = 0; i < SD; i++)
			d += (double)q[i] * b->it[j].v[i];
		all[m++] = (scored){ d / qn, b->it[j].id };
	}
	qsort(all, m, sizeof(*all), scored_desc);
	ASSERT_OK(store_search(s, q, k, f, &r, &e), e);
	size_t want = m < k ? m : k;
	assert_int_equal(r->n, want);
	for (size_t i = 0; i < want; i++) {
		assert_true(fabs(r->hits[i].score - all[i].s) < 1e-4);
		if (r->hits[i].id != all[i].id)
			/* only a near-tie may swap */
			assert_true(fabs(all[i].s - all[i + (i + 1 < m)].s) < 1e-4 ||
				    (i > 0 && fabs(all[i].s - all[i - 1].s) < 1e-4));
		const bf_item *x = NULL;
		for (size_t j = 0; j < b->n; j++)
			if (b->it[j].id == r->hits[i].id)
				x = &b->it[j];
		assert_non_null(x);
		assert_string_equal(r->hits[i].path, x->path);
		assert_true(bf_match(x, f));
	}
	store_results_free(r);
	free(all);
}

static void
fill_search_store(store *s)
{
	cdx_error e;
	store_image *imgs = calloc(SN, sizeof(*imgs));
	char (*paths)[64] = calloc(SN, 64);
	float *embs = malloc((size_t)SN * SD * sizeof(float));
	tu_clustered(embs, SN, SD, 30, 7, 8);
	for (size_t i = 0; i < SN; i++) {
		snprintf(paths[i], 64, "/%s/%05zu.jpg",
			 i % 10 == 0 ? "rare" : i % 2 ? "odd" : "even", i);
		imgs[i].path = paths[i];
		imgs[i].embedding = embs + i * SD;
		imgs[i].capture_time = i % 7 ? (int64_t)i : STORE_TIME_UNKNOWN;
		imgs[i].mtime_ns = (int64_t)(SN - i) * 1000000000 + 5;
	}
	ASSERT_OK(store_image_put(s, imgs, SN, &e), e);
	/* Delete some, replace some with new vectors. */
	uint64_t del[100];
	for (int i = 0; i < 100; i++)
		del[i] = imgs[i * 17].id;
	size_t nd;
	ASSERT_OK(store_image_delete(s, del, 100, &nd, &e), e);
	assert_int_equal(nd, 100);
	tu_clustered(embs, 200, SD, 30, 7, 99);
	for (size_t i = 0; i < 200; i++) {
		imgs[i].path = paths[i * 13 + 1];
		imgs[i].embedding = embs + i * SD;
	}
	ASSERT_OK(store_image_put(s, imgs, 200, &e), e);
	free(embs);
	free(paths);
	free(imgs);
}

static void
run_search_checks(store *s)
{
	cdx_error e;
	bf_set b = { calloc(SN, sizeof(bf_item)), 0 };
	ASSERT_OK(store_image_foreach(s, bf_collect, &b, &e), e);
	assert_int_equal(b.n, store_image_count(s));
	float q[SD];
	store_filter fs[] = {
		{ .path_prefix = "/rare/" },
		{ .path_prefix = "/odd/" },
		{ .time_field = STORE_TIME_CAPTURE, .time_min = 100, .time_max = 900 },
		{ .time_field = STORE_TIME_MTIME, .time_min = 10, .time_max = 2500 },
		{ .path_prefix = "/even/", .time_field = STORE_TIME_CAPTURE, .time_min = 0, .time_max = 2000 },
		{ .path_prefix = "/nothing/" },
		{ .time_field = STORE_TIME_CAPTURE, .time_min = 5, .time_max = 5 },
	};
	for (int t = 0; t < 10; t++) {
		tu_clustered(q, 1, SD, 30, 7, 1000 + (uint64_t)t);
		check_search(s, &b, q, 10, NULL);
		check_search(s, &b, q, 1, NULL);
		for (size_t i = 0; i < sizeof(fs) / sizeof(fs[0]); i++)
			check_search(s, &b, q, 10, &fs[i]);
	}
	/* k larger than the collection */
	check_search(s, &b, q, SN * 2, NULL);
	free(b.it);
}

static void
test_flat_search_equals_brute_force(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	store_params p = store_default_params();
	store *s;
	cdx_error e;
	p.dim = SD;
	p.model_id = MODEL;
	p.index_kind = "flat";
	ASSERT_OK(store_open(dir, &p, &s, &e), e);
	fill_search_store(s);
	run_search_checks(s); /* selective filters scored exactly */
	store_close(s);
	/* Force the over-fetching path for every filter. */
	p.exact_filter_max = 5;
	ASSERT_OK(store_open(dir, &p, &s, &e), e);
	run_search_checks(s);
	ASSERT_OK(store_verify(s, &e), e);

	float q[SD];
	store_results *r;
	memset(q, 0, sizeof(q));
	assert_int_equal(store_search(s, q, 10, NULL, &r, &e), CDX_EINVAL);
	q[0] = NAN;
	assert_int_equal(store_search(s, q, 10, NULL, &r, &e), CDX_EINVAL);
	store_close(s);
	tu_rmrf(dir);
	free(dir);
}

static void
test_range_search_equals_brute_force(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	store *s = open_store(dir, SD, "flat");
	cdx_error e;
	fill_search_store(s);
	bf_set b = { calloc(SN, sizeof(bf_item)), 0 };
	ASSERT_OK(store_image_foreach(s, bf_collect, &b, &e), e);
	/* Queries: three stored vectors and one fresh one. */
	float q[4 * SD];
	for (int i = 0; i < 3; i++)
		memcpy(q + i * SD, b.it[i * 500].v, sizeof(float) * SD);
	tu_clustered(q + 3 * SD, 1, SD, 30, 7, 555);
	store_range *r;
	float t = 0.9f;
	ASSERT_OK(store_range_search(s, q, 4, t, &r, &e), e);
	assert_int_equal(r->nq, 4);
	for (int i = 0; i < 4; i++) {
		size_t want = 0;
		for (size_t j = 0; j < b.n; j++) {
			double d = 0;
			for (int x = 0; x < SD; x++)
				d += (double)q[i * SD + x] * b.it[j].v[x];
			if (d >= t + 1e-5)
				want++;
			else if (d > t - 1e-5)
				want += 0; /* borderline: either way */
		}
		size_t got = r->lims[i + 1] - r->lims[i];
		assert_true(got >= want);
		for (size_t j = r->lims[i]; j < r->lims[i + 1]; j++) {
			assert_true(r->scores[j] >= t);
			if (j > r->lims[i])
				assert_true(r->scores[j] <= r->scores[j - 1]);
		}
		if (i < 3) /* a stored vector finds itself first */
			assert_int_equal(r->ids[r->lims[i]], b.it[i * 500].id);
	}
	store_range_free(r);
	free(b.it);
	store_close(s);
	tu_rmrf(dir);
	free(dir);
}

/* ---- concurrency ---- */

typedef struct conc {
	store *s;
	int stop;
	int errors;
} conc;

static void *
searcher(void *arg)
{
	conc *c = arg;
	float q[PD];
	uint64_t seed = (uint64_t)pthread_self();
	while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
		store_results *r;
		cdx_error e;
		tu_clustered(q, 1, PD, 10, 42, seed++);
		if (store_search(c->s, q, 5, NULL, &r, &e) != 0) {
			__atomic_add_fetch(&c->errors, 1, __ATOMIC_RELAXED);
			continue;
		}
		for (size_t i = 0; i < r->n; i++)
			if (!r->hits[i].path || r->hits[i].path[0] != '/')
				__atomic_add_fetch(&c->errors, 1,
						   __ATOMIC_RELAXED);
		store_results_free(r);
	}
	return NULL;
}

static void
test_searches_run_beside_a_writer(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	conc c = { open_store(dir, PD, "flat"), 0, 0 };
	pthread_t th[3];
	put_n(c.s, 0, 100, 1);
	for (int i = 0; i < 3; i++)
		pthread_create(&th[i], NULL, searcher, &c);
	for (int i = 0; i < 30; i++) {
		put_n(c.s, (size_t)(i % 5) * 50, 50, (uint64_t)i + 2);
		uint64_t id = (uint64_t)i * 3 + 1;
		size_t nd;
		cdx_error e;
		ASSERT_OK(store_image_delete(c.s, &id, 1, &nd, &e), e);
	}
	__atomic_store_n(&c.stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(c.errors, 0);
	cdx_error e;
	ASSERT_OK(store_verify(c.s, &e), e);
	store_close(c.s);
	tu_rmrf(dir);
	free(dir);
}

int
main(void)
{
	/* One thread, as the programs' main() would set it. */
	cdx_threads_set(1);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_get_replace_delete),
		cmocka_unit_test(test_put_rejects_bad_input_atomically),
		cmocka_unit_test(test_failures_and_settings),
		cmocka_unit_test(test_model_mismatch_and_reembed),
		cmocka_unit_test(test_model_family_recorded),
		cmocka_unit_test(test_model_identity_not_its_name),
		cmocka_unit_test(test_faiss_errors_become_cdx_eindex),
		cmocka_unit_test(test_open_twice_is_busy),
		cmocka_unit_test(test_files_are_private_whatever_the_umask),
		cmocka_unit_test(test_unwritable_directory),
		cmocka_unit_test(test_reopen_uses_saved_index_and_catches_up),
		cmocka_unit_test(test_damaged_index_file_is_rebuilt),
		cmocka_unit_test(test_map_grows_when_full),
		cmocka_unit_test(test_flat_search_equals_brute_force),
		cmocka_unit_test(test_range_search_equals_brute_force),
		cmocka_unit_test(test_searches_run_beside_a_writer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
