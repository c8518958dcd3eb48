/*
 * dupes_clips: video clips compared by their frames (dupes/clips.c).
 * First on designed embeddings (the rule exactly: in order, the near
 * fraction, exact by hash, shares), then on clips made with the ffmpeg
 * tool, sampled (encoder/video.h) and embedded with the demo model: a
 * re-encoded, resized copy is near, a clip that shares one scene shares,
 * an unrelated clip is not reported.  Run from the repository root.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "dupes/dupes.h"
#include "encoder/clip.h"
#include "encoder/video.h"
#include "tests/store_testutil.h"

enum { D = 8 };
#define DEMO_MODEL "models/demo"

static char *g_dir;

static store *
open_store(int dim)
{
	store_params p = store_default_params();
	store *s = NULL;
	cdx_error e;
	p.dim = dim;
	p.model_id = "test@clips";
	p.index_kind = "flat";
	ASSERT_OK(store_open(g_dir, &p, &s, &e), e);
	return s;
}

/* A clip of n frames whose frame i lies along axis ax[i] (tilted by
 * tilt, so copies are close but not equal); hash h. */
static void
put_clip(store *s, const char *path, const int *ax, int n, float tilt,
    uint8_t h)
{
	cdx_error e;
	for (int i = 0; i < n; i++) {
		float v[D];
		for (int k = 0; k < D; k++)
			v[k] = tilt * (float)((k + i) % 3);
		v[ax[i]] += 1.0f;
		store_image img = { .path = path, .size = 10, .mtime_ns = 1,
			.capture_time = STORE_TIME_UNKNOWN, .embedding = v,
			.kind = STORE_KIND_FRAME, .time_ms = 2000 * i };
		img.hash[0] = h;
		ASSERT_OK(store_image_put(s, &img, 1, &e), e);
	}
}

static const dupes_clip_pair *
find_pair(const dupes_clip_result *r, const char *a, const char *b)
{
	for (size_t i = 0; i < r->n_pairs; i++)
		if (strcmp(r->pairs[i].a.path, a) == 0 &&
		    strcmp(r->pairs[i].b.path, b) == 0)
			return &r->pairs[i];
	return NULL;
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
test_rule(void **state)
{
	(void)state;
	store *s = open_store(D);
	cdx_error e;
	static const int a[] = { 0, 1, 2, 3 }, copy[] = { 0, 1, 2, 3 },
	    shuffled[] = { 3, 2, 1, 0 }, one[] = { 5, 2, 6 },
	    three[] = { 0, 1, 2, 7 }, other[] = { 4, 5, 6 };
	put_clip(s, "/c/a.mp4", a, 4, 0.0f, 1);
	put_clip(s, "/c/b-copy.mkv", copy, 4, 0.05f, 2);  /* re-encoded */
	put_clip(s, "/c/c-same-bytes.mp4", a, 4, 0.0f, 1); /* equal hash */
	put_clip(s, "/c/d-shuffled.mp4", shuffled, 4, 0.0f, 3);
	put_clip(s, "/c/e-one-scene.mp4", one, 3, 0.0f, 4);
	put_clip(s, "/c/f-three.mp4", three, 4, 0.0f, 5);
	put_clip(s, "/c/g-other.mp4", other, 3, 0.0f, 6);
	/* An image like a's first frame: not a clip, not compared. */
	float v[D] = { 1 };
	store_image img = { .path = "/c/photo.jpg", .size = 1, .mtime_ns = 1,
		.capture_time = STORE_TIME_UNKNOWN, .embedding = v };
	ASSERT_OK(store_image_put(s, &img, 1, &e), e);

	dupes_clip_params p = { .dim = D, .threshold = 0.95f };
	dupes_clip_result *r;
	ASSERT_OK(dupes_clips(s, &p, &r, &e), e);
	assert_int_equal(r->n_clips, 7);
	assert_int_equal(r->n_frames, 26);
	const dupes_clip_pair *q = find_pair(r, "/c/a.mp4", "/c/b-copy.mkv");
	assert_non_null(q);
	assert_int_equal(q->relation, DUPES_CLIP_NEAR);
	assert_int_equal(q->matched, 4);
	assert_true(q->score > 0.95f && q->score < 1.0f);
	q = find_pair(r, "/c/a.mp4", "/c/c-same-bytes.mp4");
	assert_non_null(q);
	assert_int_equal(q->relation, DUPES_CLIP_EXACT);
	/* Every frame matches, but in the reverse order: one in order. */
	q = find_pair(r, "/c/a.mp4", "/c/d-shuffled.mp4");
	assert_non_null(q);
	assert_int_equal(q->relation, DUPES_CLIP_SHARES);
	assert_int_equal(q->matched, 1);
	/* One scene in common: shares, with that frame on each side. */
	q = find_pair(r, "/c/a.mp4", "/c/e-one-scene.mp4");
	assert_non_null(q);
	assert_int_equal(q->relation, DUPES_CLIP_SHARES);
	assert_int_equal(q->matched, 1);
	assert_int_equal(q->a.time_ms, 4000);
	assert_int_equal(q->b.time_ms, 2000);
	assert_int_equal(q->a.frames, 4);
	assert_int_equal(q->b.frames, 3);
	/* 3 of 4 in order: near at 3/4 ... */
	q = find_pair(r, "/c/a.mp4", "/c/f-three.mp4");
	assert_non_null(q);
	assert_int_equal(q->matched, 3);
	assert_int_equal(q->relation, DUPES_CLIP_NEAR);
	/* ... nothing in common: not reported. */
	assert_null(find_pair(r, "/c/a.mp4", "/c/g-other.mp4"));
	/* Exact first, then near. */
	assert_int_equal(r->pairs[0].relation, DUPES_CLIP_EXACT);
	assert_int_equal(r->pairs[1].relation, DUPES_CLIP_NEAR);
	dupes_clip_result_free(r);

	/* A stricter fraction: 3 of 4 shares. */
	p.near_fraction = 0.9f;
	ASSERT_OK(dupes_clips(s, &p, &r, &e), e);
	assert_int_equal(find_pair(r, "/c/a.mp4", "/c/f-three.mp4")->relation,
	    DUPES_CLIP_SHARES);
	dupes_clip_result_free(r);
	/* A prefix. */
	p.path_prefix = "/c/a";
	ASSERT_OK(dupes_clips(s, &p, &r, &e), e);
	assert_int_equal(r->n_clips, 1);
	assert_int_equal(r->n_pairs, 0);
	dupes_clip_result_free(r);

	/* Image duplicates leave frames out (a clip's frames share a hash). */
	dupes_params dp = { .dim = D, .kind = DUPES_EXACT };
	dupes_result *dr;
	ASSERT_OK(dupes_find(s, &dp, &dr, &e), e);
	assert_int_equal(dr->n_images, 1);
	assert_int_equal(dr->n_groups, 0);
	dupes_result_free(dr);
	p.threshold = 2;
	assert_int_equal(dupes_clips(s, &p, &r, &e), CDX_EINVAL);
	store_close(s);
}

/* ---- generated clips through the demo model ---- */

struct enc {
	clip_ctx *ctx;
	const clip_preprocess_cfg *pp;
	int dim;
	store *s;
	const char *path;
	uint8_t hash;
	float *plane;
};

static int
put_frame(void *user, int64_t time_ms, const clip_image *img, cdx_error *err)
{
	struct enc *x = user;
	float emb[1024];
	int rc = clip_image_preprocess(img, x->pp, x->plane, err);
	const float *pl = x->plane;
	if (rc == 0)
		rc = clip_encode_image_planes(x->ctx, &pl, 1, emb, err);
	if (rc != 0)
		return rc;
	store_image r = { .path = x->path, .size = 10, .mtime_ns = 1,
		.capture_time = STORE_TIME_UNKNOWN, .embedding = emb,
		.kind = STORE_KIND_FRAME, .time_ms = time_ms };
	r.hash[0] = x->hash;
	return store_image_put(x->s, &r, 1, err);
}

static void
make_clip(const char *dir, const char *name, const char *graph,
    const char *args)
{
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "ffmpeg -nostdin -loglevel error -y "
	    "-filter_complex '%s' %s '%s/%s'", graph, args, dir, name);
	assert_int_equal(system(cmd), 0);
}

#define SCENE(src) src "s=192x144:r=10,trim=duration=2,setpts=PTS-STARTPTS," \
    "format=yuv420p"

static void
test_generated(void **state)
{
	(void)state;
	if (system("ffmpeg -version >/dev/null 2>&1") != 0)
		fail_msg("ffmpeg is missing (tools/deps.sh installs it)");
	char dir[600];
	snprintf(dir, sizeof(dir), "%s/clips", g_dir);
	assert_int_equal(mkdir(dir, 0755), 0);
	/* a: four scenes; b: a re-encoded smaller; c: shares a's second
	 * scene; d: nothing of a. */
	make_clip(dir, "a.mp4", SCENE("testsrc=") "[0];" SCENE("smptebars=")
	    "[1];" SCENE("mandelbrot=") "[2];" SCENE("rgbtestsrc=") "[3];"
	    "[0][1][2][3]concat=n=4", "-c:v libx264 -g 10");
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "ffmpeg -nostdin -loglevel error -y -i "
	    "'%s/a.mp4' -vf scale=160:120 -c:v libx264 -crf 30 -g 25 "
	    "'%s/b.mkv'", dir, dir);
	assert_int_equal(system(cmd), 0);
	make_clip(dir, "c.mp4", SCENE("color=c=yellow:") "[0];"
	    SCENE("smptebars=") "[1];" SCENE("color=c=purple:") "[2];"
	    "[0][1][2]concat=n=3", "-c:v libx264 -g 10");
	make_clip(dir, "d.mp4", SCENE("color=c=green:") "[0];"
	    SCENE("life=mold=10:ratio=0.1:") "[1];"
	    "[0][1]concat=n=2", "-c:v libx264 -g 10");

	clip_model_params mp;
	clip_model *m;
	cdx_error e;
	clip_model_default_params(&mp);
	ASSERT_OK(clip_model_load(DEMO_MODEL, &mp, &m, &e), e);
	const clip_model_info *info = clip_model_get_info(m);
	store *s = open_store(info->embed_dim);
	struct enc x = { .pp = &info->preprocess, .dim = info->embed_dim,
		.s = s };
	ASSERT_OK(clip_ctx_new(m, 1, &x.ctx, &e), e);
	x.plane = malloc(sizeof(float) * 3 * (size_t)info->preprocess.crop_width *
	    (size_t)info->preprocess.crop_height);
	static const char *const names[] = { "a.mp4", "b.mkv", "c.mp4",
		"d.mp4" };
	char paths[4][700];
	for (int i = 0; i < 4; i++) {
		snprintf(paths[i], sizeof(paths[i]), "%s/%s", dir, names[i]);
		x.path = paths[i];
		x.hash = (uint8_t)(i + 1);
		ASSERT_OK(clip_video_sample(paths[i], NULL, put_frame, &x, NULL,
		    &e), e);
	}
	dupes_clip_params p = { .dim = info->embed_dim,
		.family = info->family };
	dupes_clip_result *r;
	ASSERT_OK(dupes_clips(s, &p, &r, &e), e);
	for (size_t i = 0; i < r->n_pairs; i++)
		print_message("%s ~ %s: %s, %d of %d/%d, %.3f\n",
		    r->pairs[i].a.path + strlen(dir), r->pairs[i].b.path +
		    strlen(dir), dupes_clip_relation_name(r->pairs[i].relation),
		    r->pairs[i].matched, r->pairs[i].a.frames,
		    r->pairs[i].b.frames, r->pairs[i].score);
	assert_int_equal(r->n_clips, 4);
	const dupes_clip_pair *q = find_pair(r, paths[0], paths[1]);
	assert_non_null(q);
	assert_int_equal(q->relation, DUPES_CLIP_NEAR);
	assert_int_equal(q->matched, 4);
	q = find_pair(r, paths[0], paths[2]);
	assert_non_null(q);
	assert_int_equal(q->relation, DUPES_CLIP_SHARES);
	assert_int_equal(q->matched, 1);
	assert_true(llabs(q->a.time_ms - 2000) <= 100);
	assert_true(llabs(q->b.time_ms - 2000) <= 100);
	assert_null(find_pair(r, paths[0], paths[3]));
	dupes_clip_result_free(r);
	free(x.plane);
	clip_ctx_free(x.ctx);
	clip_model_free(m);
	store_close(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_rule, setup, teardown),
		cmocka_unit_test_setup_teardown(test_generated, setup, teardown),
	};
	clip_video_log_quiet();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
