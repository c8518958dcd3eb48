/*
 * Frames of video clips in the store (schema 3): a clip's frames share its
 * path with distinct times; the path calls (get_by_path, delete_paths,
 * rename, batch rename/delete_path, foreach_prefix) work on the whole
 * clip, each in one transaction; a replaced clip's frames in one batch;
 * search hits say kind and time; tags of frames; the frames/clips
 * counters through reopen; a schema-2 store's migration.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <lmdb.h>

#include "classify/classify.h"
#include "tests/store_testutil.h"
#include "tests/testutil.h"

enum { D = 8 };
#define MODEL "test@frames"

static char *g_dir;

static store *
open_store(void)
{
	return tu_store_open(g_dir, D, MODEL, "flat");
}

/* A unit vector along axis k (mod D), tilted by t. */
static void
vec(float *v, int k, float t)
{
	for (int i = 0; i < D; i++)
		v[i] = 0.01f * t;
	v[k % D] = 1.0f;
}

/* Puts the frames of a clip at times[0..n) into batch b (or, b NULL, with
 * store_image_put), axes from k0. */
static void
put_clip(store *s, store_batch *b, const char *path, const int64_t *times,
	 int n, int k0, int64_t mtime)
{
	cdx_error e;
	float v[16][D];
	store_image img[16];
	memset(img, 0, sizeof(img));
	for (int i = 0; i < n; i++) {
		vec(v[i], k0 + i, (float)i);
		img[i].path = path;
		img[i].size = 1000;
		img[i].mtime_ns = mtime;
		img[i].hash[0] = 7;
		img[i].width = 64;
		img[i].height = 48;
		img[i].capture_time = STORE_TIME_UNKNOWN;
		img[i].embedding = v[i];
		img[i].kind = STORE_KIND_FRAME;
		img[i].time_ms = times[i];
		if (b != NULL)
			ASSERT_OK(store_batch_put(b, &img[i], &e), e);
	}
	if (b == NULL)
		ASSERT_OK(store_image_put(s, img, (size_t)n, &e), e);
}

static void
put_image(store *s, const char *path, int k)
{
	cdx_error e;
	float v[D];
	vec(v, k, 0);
	store_image img = { .path = path, .size = 10, .mtime_ns = 1,
			    .capture_time = STORE_TIME_UNKNOWN, .embedding = v };
	ASSERT_OK(store_image_put(s, &img, 1, &e), e);
	assert_int_equal(img.kind, STORE_KIND_IMAGE);
}

struct seen {
	int n;
	char path[16][128];
	int64_t ms[16];
	int kind[16];
	uint64_t id[16];
};

static int
see(void *user, const store_image *img)
{
	struct seen *w = user;
	if (w->n < 16) {
		snprintf(w->path[w->n], sizeof(w->path[0]), "%s", img->path);
		w->ms[w->n] = img->time_ms;
		w->kind[w->n] = img->kind;
		w->id[w->n] = img->id;
	}
	w->n++;
	return 0;
}

static struct seen
under(store *s, const char *dir)
{
	struct seen w;
	cdx_error e;
	memset(&w, 0, sizeof(w));
	ASSERT_OK(store_image_foreach_prefix(s, dir, see, &w, &e), e);
	return w;
}

static void
counts(store *s, uint64_t images, uint64_t frames, uint64_t clips)
{
	store_stats st;
	store_get_stats(s, &st);
	assert_int_equal(st.images, images);
	assert_int_equal(st.frames, frames);
	assert_int_equal(st.clips, clips);
}

static int
setup(void **state)
{
	(void)state;
	g_dir = tu_tmpdir();
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	tu_rmrf(g_dir);
	free(g_dir);
	return 0;
}

static void
test_frames(void **state)
{
	(void)state;
	store *s = open_store();
	cdx_error e;
	static const int64_t t3[] = { 0, 2000, 4000 };
	put_clip(s, NULL, "/v/a.mp4", t3, 3, 0, 5);
	put_image(s, "/v/a.jpg", 5);
	put_image(s, "/v/a.mp4x", 6);  /* sorts right after the clip */
	counts(s, 5, 3, 1);

	/* The path's first frame; a (path, time) put again keeps its id. */
	store_image *img;
	ASSERT_OK(store_image_get_by_path(s, "/v/a.mp4", &img, &e), e);
	assert_int_equal(img->kind, STORE_KIND_FRAME);
	assert_int_equal(img->time_ms, 0);
	uint64_t first = img->id;
	store_image_free(img);
	struct seen w = under(s, "/v");
	assert_int_equal(w.n, 5);
	w = under(s, "/v/a.mp4");
	assert_int_equal(w.n, 3);
	for (int i = 0; i < 3; i++) {
		assert_string_equal(w.path[i], "/v/a.mp4");
		assert_int_equal(w.ms[i], t3[i]);
		assert_int_equal(w.kind[i], STORE_KIND_FRAME);
	}
	put_clip(s, NULL, "/v/a.mp4", t3, 1, 3, 5);
	ASSERT_OK(store_image_get_by_path(s, "/v/a.mp4", &img, &e), e);
	assert_int_equal(img->id, first);
	store_image_free(img);
	counts(s, 5, 3, 1);

	/* A hit on a frame says so, with its time. */
	float q[D];
	vec(q, 1, 1);
	tu_normalise(q, D);
	store_results *r;
	ASSERT_OK(store_search(s, q, 1, NULL, &r, &e), e);
	assert_int_equal(r->n, 1);
	assert_string_equal(r->hits[0].path, "/v/a.mp4");
	assert_int_equal(r->hits[0].kind, STORE_KIND_FRAME);
	assert_int_equal(r->hits[0].time_ms, 2000);
	store_results_free(r);
	vec(q, 5, 0);
	tu_normalise(q, D);
	ASSERT_OK(store_search(s, q, 1, NULL, &r, &e), e);
	assert_int_equal(r->hits[0].kind, STORE_KIND_IMAGE);
	assert_int_equal(r->hits[0].time_ms, 0);
	store_results_free(r);

	/* Moved: every frame keeps its id, in one transaction. */
	uint64_t ids[3];
	w = under(s, "/v/a.mp4");
	memcpy(ids, w.id, sizeof(ids));
	store_stats st0, st1;
	store_get_stats(s, &st0);
	const char *from = "/v/a.mp4", *to = "/w/b.mp4";
	size_t n;
	ASSERT_OK(store_image_rename(s, &from, &to, 1, &n, &e), e);
	assert_int_equal(n, 3);
	store_get_stats(s, &st1);
	assert_int_equal(st1.commits, st0.commits + 1);
	assert_int_equal(under(s, "/v/a.mp4").n, 0);
	w = under(s, "/w/b.mp4");
	assert_int_equal(w.n, 3);
	assert_memory_equal(w.id, ids, sizeof(ids));
	counts(s, 5, 3, 1);
	/* Onto a taken path: refused, nothing moved. */
	from = "/w/b.mp4";
	to = "/v/a.jpg";
	assert_int_equal(store_image_rename(s, &from, &to, 1, &n, &e),
			 CDX_EEXIST);
	/* A batch rename that replaces: the image at to goes. */
	store_batch *b;
	ASSERT_OK(store_batch_begin(s, &b, &e), e);
	ASSERT_OK(store_batch_rename(b, "/w/b.mp4", "/v/a.jpg", 1, &e), e);
	ASSERT_OK(store_batch_commit(b, NULL, &e), e);
	w = under(s, "/v/a.jpg");
	assert_int_equal(w.n, 3);
	assert_int_equal(w.kind[0], STORE_KIND_FRAME);
	counts(s, 4, 3, 1);
	ASSERT_OK(store_verify(s, &e), e);

	/* Replaced: the old frames go, the new ones come, one batch. */
	static const int64_t t2[] = { 0, 3000 };
	ASSERT_OK(store_batch_begin(s, &b, &e), e);
	ASSERT_OK(store_batch_delete_path(b, "/v/a.jpg", &e), e);
	put_clip(s, b, "/v/a.jpg", t2, 2, 2, 6);
	store_batch_counts bc;
	store_get_stats(s, &st0);
	ASSERT_OK(store_batch_commit(b, &bc, &e), e);
	store_get_stats(s, &st1);
	assert_int_equal(st1.commits, st0.commits + 1);
	assert_int_equal(bc.deleted, 3);
	assert_int_equal(bc.put, 2);
	w = under(s, "/v/a.jpg");
	assert_int_equal(w.n, 2);
	assert_int_equal(w.ms[1], 3000);
	counts(s, 3, 2, 1);

	/* A second clip, then deletes by path: every frame. */
	put_clip(s, NULL, "/v/c.mkv", t3, 3, 0, 7);
	counts(s, 6, 5, 2);
	const char *p = "/v/c.mkv";
	ASSERT_OK(store_image_delete_paths(s, &p, 1, &n, &e), e);
	assert_int_equal(n, 3);
	counts(s, 3, 2, 1);
	assert_int_equal(store_image_get_by_path(s, "/v/c.mkv", &img, &e),
			 CDX_ENOTFOUND);
	ASSERT_OK(store_verify(s, &e), e);
	store_close(s);

	/* The counters survive a reopen. */
	s = open_store();
	counts(s, 3, 2, 1);
	/* Deleting one frame by id keeps the clip until its last. */
	w = under(s, "/v/a.jpg");
	ASSERT_OK(store_image_delete(s, &w.id[0], 1, &n, &e), e);
	counts(s, 2, 1, 1);
	ASSERT_OK(store_image_delete(s, &w.id[1], 1, &n, &e), e);
	counts(s, 1, 0, 0);

	/* Bad frames. */
	float v[D];
	vec(v, 0, 0);
	store_image bad = { .path = "/v/x.mp4", .embedding = v,
			    .kind = STORE_KIND_FRAME, .time_ms = -1 };
	assert_int_equal(store_image_put(s, &bad, 1, &e), CDX_EINVAL);
	bad.time_ms = STORE_FRAME_MS_MAX + 1;
	assert_int_equal(store_image_put(s, &bad, 1, &e), CDX_EINVAL);
	bad.kind = 7;
	bad.time_ms = 0;
	assert_int_equal(store_image_put(s, &bad, 1, &e), CDX_EINVAL);
	char longp[STORE_PATH_MAX + 1];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	longp[STORE_PATH_MAX] = '\0';
	bad.path = longp;
	bad.kind = STORE_KIND_FRAME;
	assert_int_equal(store_image_put(s, &bad, 1, &e), CDX_ETOOBIG);
	store_close(s);
}

/* Frames are tagged like images. */
static void
test_frame_tags(void **state)
{
	(void)state;
	store *s = open_store();
	cdx_error e;
	cls_set *c;
	static const char *const names[] = { "zero", "one" };
	ASSERT_OK(cls_set_new("axis", 2, D, 0, 0, 0, &c, &e), e);
	c->kind = CLS_SOFTMAX;
	c->threshold = 0.5f;
	c->scale = 20.0f;
	snprintf(c->model_key, sizeof(c->model_key), "%s", MODEL);
	for (int i = 0; i < 2; i++) {
		ASSERT_OK(cls_set_label(c, (size_t)i, names[i], &e), e);
		vec(c->w + i * D, i, 0);
		tu_normalise(c->w + i * D, D);
	}
	uint64_t tagged;
	ASSERT_OK(store_tagset_put(s, c, &tagged, &e), e);
	static const int64_t t2[] = { 0, 2000 };
	put_clip(s, NULL, "/t/c.mp4", t2, 2, 0, 1);
	struct seen w = under(s, "/t/c.mp4");
	assert_int_equal(w.n, 2);
	for (int i = 0; i < 2; i++) {
		store_tags *t;
		ASSERT_OK(store_image_tags(s, w.id[i], &t, &e), e);
		assert_int_equal(t->n, 1);
		assert_string_equal(t->tags[0].label, names[i]);
		store_tags_free(t);
	}
	/* A tag filter finds the frame. */
	const char *tag = "one";
	store_filter f = { .tags = &tag, .n_tags = 1 };
	float q[D];
	vec(q, 0, 0);
	tu_normalise(q, D);
	store_results *r;
	ASSERT_OK(store_search(s, q, 5, &f, &r, &e), e);
	assert_int_equal(r->n, 1);
	assert_int_equal(r->hits[0].time_ms, 2000);
	store_results_free(r);
	/* Moved and deleted: the tags follow and go. */
	const char *from = "/t/c.mp4", *to = "/t/d.mp4";
	ASSERT_OK(store_image_rename(s, &from, &to, 1, NULL, &e), e);
	store_tags *t;
	ASSERT_OK(store_image_tags(s, w.id[1], &t, &e), e);
	assert_int_equal(t->n, 1);
	store_tags_free(t);
	ASSERT_OK(store_image_delete_paths(s, &to, 1, NULL, &e), e);
	assert_int_equal(store_image_tags(s, w.id[1], &t, &e), CDX_ENOTFOUND);
	ASSERT_OK(store_verify(s, &e), e);
	cls_set_free(c);
	store_close(s);
}

/* ---- schema 2 -> 3 ---- */

static char g_log[TU_LOG_CAP];

/* Rewrites the store as a schema-2 build made it: schema 2 in meta and
 * no frame counters. */
static void
make_schema_2(const char *dir)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi meta;
	tu_lmdb_begin(dir, 0, &env, &txn);
	tu_meta_put_schema(txn, 2);
	assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
	MDB_val kf = { 6, "frames" }, kc = { 5, "clips" };
	assert_int_equal(mdb_del(txn, meta, &kf, NULL), 0);
	assert_int_equal(mdb_del(txn, meta, &kc, NULL), 0);
	tu_lmdb_end(env, txn, 1);
}

static void
test_schema_2_migrates(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	char *keep = g_dir;
	g_dir = dir;
	store *s = open_store();
	cdx_error e;
	char p[64];
	for (int i = 0; i < 20; i++) {
		snprintf(p, sizeof(p), "/m/%02d.jpg", i);
		put_image(s, p, i);
	}
	store_close(s);
	make_schema_2(dir);
	assert_int_equal(tu_schema_of(dir), 2);
	g_log[0] = '\0';
	cdx_log_set(tu_log_capture, g_log, CDX_LOG_INFO);
	s = open_store();
	cdx_log_set(NULL, NULL, CDX_LOG_INFO);
	assert_non_null(strstr(g_log, "schema 2 -> 3"));
	assert_null(strstr(g_log, "schema 1 -> 2"));
	/* Every record is an image, as it was. */
	struct seen w = under(s, "/m");
	assert_int_equal(w.n, 20);
	for (int i = 0; i < 16; i++)
		assert_int_equal(w.kind[i], STORE_KIND_IMAGE);
	counts(s, 20, 0, 0);
	ASSERT_OK(store_verify(s, &e), e);
	/* It takes frames. */
	static const int64_t t2[] = { 0, 2000 };
	put_clip(s, NULL, "/m/clip.mp4", t2, 2, 0, 1);
	counts(s, 22, 2, 1);
	store_close(s);
	assert_int_equal(tu_schema_of(dir), 4);
	g_log[0] = '\0';
	cdx_log_set(tu_log_capture, g_log, CDX_LOG_INFO);
	s = open_store();
	cdx_log_set(NULL, NULL, CDX_LOG_INFO);
	assert_null(strstr(g_log, "schema"));
	counts(s, 22, 2, 1);
	store_close(s);
	tu_rmrf(dir);
	free(dir);
	g_dir = keep;
}

/* One image or one clip per path: a frame put where an image is, or an
 * image where frames are, is refused (CDX_EEXIST), nothing written; after
 * a delete of the path, in the same batch, the other kind goes in. */
static void
test_one_kind_per_path(void **state)
{
	(void)state;
	store *s = open_store();
	cdx_error e;
	static const int64_t t2[] = { 0, 2000 };
	put_image(s, "/v/x.mp4", 1);
	put_clip(s, NULL, "/v/y.mp4", t2, 2, 2, 5);
	counts(s, 3, 2, 1);
	float v[D];
	vec(v, 4, 0);
	store_image fr = { .path = "/v/x.mp4", .size = 10, .mtime_ns = 1,
			   .capture_time = STORE_TIME_UNKNOWN, .embedding = v,
			   .kind = STORE_KIND_FRAME, .time_ms = 500 };
	assert_int_equal(store_image_put(s, &fr, 1, &e), CDX_EEXIST);
	store_image im = { .path = "/v/y.mp4", .size = 10, .mtime_ns = 1,
			   .capture_time = STORE_TIME_UNKNOWN, .embedding = v };
	assert_int_equal(store_image_put(s, &im, 1, &e), CDX_EEXIST);
	counts(s, 3, 2, 1);
	struct seen w = under(s, "/v/x.mp4");
	assert_int_equal(w.n, 1);
	assert_int_equal(w.kind[0], STORE_KIND_IMAGE);
	w = under(s, "/v/y.mp4");
	assert_int_equal(w.n, 2);
	/* Replaced in one batch: the delete first. */
	store_batch *b;
	ASSERT_OK(store_batch_begin(s, &b, &e), e);
	ASSERT_OK(store_batch_delete_path(b, "/v/y.mp4", &e), e);
	ASSERT_OK(store_batch_put(b, &im, &e), e);
	ASSERT_OK(store_batch_commit(b, NULL, &e), e);
	counts(s, 2, 0, 0);
	w = under(s, "/v/y.mp4");
	assert_int_equal(w.n, 1);
	assert_int_equal(w.kind[0], STORE_KIND_IMAGE);
	ASSERT_OK(store_verify(s, &e), e);
	store_close(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_frames, setup, teardown),
		cmocka_unit_test_setup_teardown(test_frame_tags, setup,
						teardown),
		cmocka_unit_test(test_schema_2_migrates),
		cmocka_unit_test_setup_teardown(test_one_kind_per_path, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
