/*
 * indexer_video.c - video clips through the indexer: clips made here
 * with the ffmpeg tool (tools/deps.sh), a tiny generated model, a live
 * watch.  A clip becomes one record per sampled frame; a renamed clip
 * keeps its records (same ids, nothing encoded again); a replaced clip is
 * sampled again; a deleted one loses every frame; corrupt clips get
 * failure records with the reason (an AVI too: unsupported video);
 * audio-only files are skipped; a clip replacing an image and an image
 * replacing a clip leave no stale records.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "encoder/video.h"
#include "indexer/indexer.h"
#include "tests/testmodel.h"
#include "tests/testutil.h"

static char tmp[] = "/tmp/cdx-indexer-video-XXXXXX";
static char model_dir[300];
static clip_model *model;
static char root[PATH_MAX], store_dir[PATH_MAX], spare[PATH_MAX];
static store *st;
static watch *w;

static char *
pathf(const char *fmt, ...)
{
	static char buf[8][PATH_MAX];
	static int k;
	char *p = buf[k++ % 8];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p, PATH_MAX, fmt, ap);
	va_end(ap);
	return p;
}

/* A clip of `seconds` made with ffmpeg from source src at path. */
static void
make_clip(const char *path, const char *src, int seconds)
{
	char cmd[2 * PATH_MAX];
	snprintf(cmd, sizeof(cmd), "ffmpeg -nostdin -loglevel error -y -f lavfi "
	    "-i '%s=size=160x120:rate=10:duration=%d' -c:v libx264 -g 10 "
	    "-pix_fmt yuv420p -f mp4 '%s'", src, seconds, path);
	assert_int_equal(system(cmd), 0);
}

struct frames {
	int n;
	uint64_t id[64];
	int64_t ms[64];
	int kinds;      /* records that are not frames */
};

static int
see(void *user, const store_image *img)
{
	struct frames *f = user;
	if (img->kind != STORE_KIND_FRAME)
		f->kinds++;
	else if (f->n < 64) {
		f->id[f->n] = img->id;
		f->ms[f->n] = img->time_ms;
	}
	f->n++;
	return 0;
}

static struct frames
frames_of(const char *path)
{
	struct frames f;
	cdx_error err;
	memset(&f, 0, sizeof(f));
	CDX_ASSERT_OK(store_image_foreach_prefix(st, path, see, &f, &err),
	    err.msg);
	return f;
}

/* Waits (at most 30 s) until path has n records (of any kind). */
static struct frames
wait_frames(const char *path, int n)
{
	double end = tu_now_s() + 30;
	struct frames f;
	for (;;) {
		f = frames_of(path);
		if (f.n == n)
			return f;
		if (tu_now_s() > end)
			fail_msg("%s: %d records, want %d", path, f.n, n);
		usleep(20000);
	}
}

struct done {
	int n;
	watch_result r;
};

static void
on_done(void *user, const char *path, const watch_result *r)
{
	struct done *d = user;
	(void)path;
	d->r = *r;
	__atomic_store_n(&d->n, 1, __ATOMIC_RELEASE);
}

static watch_result
add_wait(void)
{
	struct done d = { 0, { 0 } };
	double end = tu_now_s() + 120;
	assert_int_equal(watch_add(w, root, 1, on_done, &d), 0);
	while (!__atomic_load_n(&d.n, __ATOMIC_ACQUIRE) && tu_now_s() < end)
		usleep(10000);
	assert_int_equal(d.n, 1);
	return d.r;
}

static int64_t
encoded(void)
{
	watch_progress p;
	watch_get_progress(w, &p);
	return p.encoded;
}

static void
test_clips(void **state)
{
	(void)state;
	make_clip(pathf("%s/a.mp4", root), "testsrc", 7);
	make_clip(pathf("%s/b.mp4", spare), "testsrc2", 5);
	make_clip(pathf("%s/c.mp4", spare), "testsrc", 3);
	/* Corrupt: junk after a valid ftyp box; unsupported: AVI. */
	size_t n;
	char *d = tu_read_file(pathf("%s/a.mp4", root), &n);
	assert_non_null(d);
	for (size_t i = 32; i < n; i++)
		d[i] = (char)(i * 7919u >> 3);
	assert_int_equal(tu_write_file(pathf("%s/broken.mp4", root), d, n), 0);
	free(d);
	char cmd[2 * PATH_MAX];
	snprintf(cmd, sizeof(cmd), "ffmpeg -nostdin -loglevel error -y -f lavfi "
	    "-i testsrc=size=64x64:rate=10:duration=1 -c:v mpeg4 '%s/x.avi'",
	    root);
	assert_int_equal(system(cmd), 0);
	/* Audio only: M4A (its major brand says so) and an MP4 whose
	 * brands (isom, mp41) could be video's, with no video stream. */
	static const char *const audio[] = { "song.m4a", "voice.mp4" };
	for (int i = 0; i < 2; i++) {
		snprintf(cmd, sizeof(cmd), "ffmpeg -nostdin -loglevel error -y "
		    "-f lavfi -i sine=duration=1 -c:a aac '%s/%s'", root,
		    audio[i]);
		assert_int_equal(system(cmd), 0);
	}
	tu_write_stripes_jpeg(pathf("%s/photo.jpg", root), 96, 80, 3);

	watch_progress p0;
	watch_get_progress(w, &p0);
	watch_result r = add_wait();
	assert_int_equal(r.added, 2);
	/* Audio is skipped, not failed; broken.mp4 and the AVI (a video
	 * the sampler does not read) fail, with the reason. */
	assert_int_equal(r.failed, 2);
	watch_progress p1;
	watch_get_progress(w, &p1);
	assert_int_equal(p1.skipped_by[WATCH_SKIP_VIDEO] -
	    p0.skipped_by[WATCH_SKIP_VIDEO], 0);
	assert_int_equal(p1.skipped_by[WATCH_SKIP_OTHER] -
	    p0.skipped_by[WATCH_SKIP_OTHER], 2);                /* audio */
	struct frames f = frames_of(pathf("%s/a.mp4", root));
	assert_int_equal(f.n, 4);
	assert_int_equal(f.kinds, 0);
	for (int i = 0; i < 4; i++)
		assert_true(llabs(f.ms[i] - 2000 * i) <= 100);
	store_failure *fl;
	cdx_error err;
	static const char *const skipped[] = { "song.m4a", "voice.mp4" };
	for (int i = 0; i < 2; i++) {
		if (store_failure_get(st, pathf("%s/%s", root, skipped[i]), &fl,
		    &err) == 0)
			fail_msg("%s: a failure record: %s", skipped[i],
			    fl->reason);
		assert_int_equal(frames_of(pathf("%s/%s", root,
		    skipped[i])).n, 0);
	}
	CDX_ASSERT_OK(store_failure_get(st, pathf("%s/broken.mp4", root), &fl,
	    &err), err.msg);
	assert_non_null(strstr(fl->reason, "broken.mp4"));
	store_failure_free(fl);
	CDX_ASSERT_OK(store_failure_get(st, pathf("%s/x.avi", root), &fl,
	    &err), err.msg);
	assert_non_null(strstr(fl->reason, "unsupported container"));
	store_failure_free(fl);
	watch_progress p;
	watch_get_progress(w, &p);
	assert_int_equal(p.clips, 1);
	assert_int_equal(p.frames, 4);
	store_stats ss;
	store_get_stats(st, &ss);
	assert_int_equal(ss.frames, 4);
	assert_int_equal(ss.clips, 1);
	assert_int_equal(ss.images, 5);

	/* Moved: its records follow (same ids), nothing is encoded again. */
	int64_t enc = encoded();
	assert_int_equal(rename(pathf("%s/a.mp4", root),
	    pathf("%s/moved.mp4", root)), 0);
	struct frames g = wait_frames(pathf("%s/moved.mp4", root), 4);
	wait_frames(pathf("%s/a.mp4", root), 0);
	assert_memory_equal(g.id, f.id, sizeof(uint64_t) * 4);
	assert_int_equal(encoded(), enc);

	/* Replaced: sampled again (a 5 s clip: 3 frames, new ids). */
	assert_int_equal(rename(pathf("%s/b.mp4", spare),
	    pathf("%s/moved.mp4", root)), 0);
	g = wait_frames(pathf("%s/moved.mp4", root), 3);
	assert_int_equal(g.kinds, 0);
	for (int i = 0; i < 3; i++)
		assert_true(g.id[i] != f.id[0] && g.id[i] != f.id[3]);
	store_get_stats(st, &ss);
	assert_int_equal(ss.frames, 3);

	/* An image replaces the clip, then a clip the image. */
	tu_write_stripes_jpeg(pathf("%s/img.jpg", spare), 96, 80, 4);
	assert_int_equal(rename(pathf("%s/img.jpg", spare),
	    pathf("%s/moved.mp4", root)), 0);
	g = wait_frames(pathf("%s/moved.mp4", root), 1);
	assert_int_equal(g.kinds, 1);
	assert_int_equal(rename(pathf("%s/c.mp4", spare),
	    pathf("%s/moved.mp4", root)), 0);
	g = wait_frames(pathf("%s/moved.mp4", root), 2);
	assert_int_equal(g.kinds, 0);

	/* Deleted: every frame goes. */
	assert_int_equal(unlink(pathf("%s/moved.mp4", root)), 0);
	wait_frames(pathf("%s/moved.mp4", root), 0);
	double end = tu_now_s() + 10;
	do {
		store_get_stats(st, &ss);
		if (ss.frames == 0)
			break;
		usleep(20000);
	} while (tu_now_s() < end);
	assert_int_equal(ss.frames, 0);
	assert_int_equal(ss.clips, 0);
	CDX_ASSERT_OK(store_verify(st, &err), err.msg);
}

/* A restart finds a clip unchanged; a long clip keeps within its frames. */
static void
test_unchanged_and_limit(void **state)
{
	(void)state;
	make_clip(pathf("%s/long.mp4", root), "testsrc", 40);
	watch_result r = add_wait();
	assert_int_equal(r.added, 1);
	/* 40 s with max 5 frames and the limit 10 s: spread over 40 s. */
	struct frames f = frames_of(pathf("%s/long.mp4", root));
	assert_int_equal(f.n, 5);
	assert_true(f.ms[4] >= 30000);
	watch_stop(w);
	w = NULL;
	watch_params p;
	watch_default_params(&p);
	p.nice = 0;
	p.decode_threads = 2;
	p.video_max_frames = 5;
	p.video_limit_s = 10;
	cdx_error err;
	CDX_ASSERT_OK(watch_start(st, model, &p, &w, &err), err.msg);
	r = add_wait();
	assert_int_equal(r.added, 0);
	assert_true(r.unchanged >= 1);
	assert_int_equal(encoded(), 0);
}

/* A clip the store cannot take (a path over STORE_CLIP_PATH_MAX, which an
 * image could have) is refused whole, with a failure record: before, its
 * first frame's put failed after the delete of its path was queued, and
 * the file was left without records or a failure record. */
static void
test_clip_refused_whole(void **state)
{
	(void)state;
	char dir[PATH_MAX], path[PATH_MAX];
	size_t want = STORE_CLIP_PATH_MAX + 2;  /* <= STORE_PATH_MAX */
	int len = snprintf(dir, sizeof(dir), "%s/%0150d", root, 0);
	assert_true(len > 0 && (size_t)len < sizeof(dir));
	assert_int_equal(mkdir(dir, 0755), 0);
	len = snprintf(dir + len, sizeof(dir) - (size_t)len, "/%0150d", 0);
	assert_true(len > 0 && strlen(dir) < sizeof(dir) - 1);
	assert_int_equal(mkdir(dir, 0755), 0);
	size_t base = strlen(dir) + 1 + strlen(".mp4");
	assert_true(want > base && want - base < 250);
	len = snprintf(path, sizeof(path), "%s/%0*d.mp4", dir,
	    (int)(want - base), 1);
	assert_true(len > 0 && (size_t)len < sizeof(path));
	assert_int_equal(strlen(path), want);
	make_clip(path, "testsrc", 3);
	watch_result r = add_wait();
	assert_int_equal(r.added, 0);
	assert_int_equal(r.failed, 1);
	struct frames f = frames_of(path);
	assert_int_equal(f.n, 0);
	store_failure *fl;
	cdx_error err;
	CDX_ASSERT_OK(store_failure_get(st, path, &fl, &err), err.msg);
	assert_non_null(strstr(fl->reason, "path"));
	store_failure_free(fl);
	store_stats ss;
	store_get_stats(st, &ss);
	assert_int_equal(ss.frames, 0);
	CDX_ASSERT_OK(store_verify(st, &err), err.msg);
}

/* video_max_frames is capped (a clip's preprocessed frames are all held
 * in memory until it is encoded): 4096 was accepted before. */
static void
test_max_frames_capped(void **state)
{
	(void)state;
	watch_params p;
	watch_default_params(&p);
	watch *w2 = NULL;
	cdx_error err;
	p.video_max_frames = WATCH_VIDEO_MAX_FRAMES + 1;
	assert_int_equal(watch_start(st, model, &p, &w2, &err), CDX_EINVAL);
	assert_null(w2);
	p.video_max_frames = 4096;
	assert_int_equal(watch_start(st, model, &p, &w2, &err), CDX_EINVAL);
	assert_int_equal(WATCH_VIDEO_MAX_FRAMES, 256);
}

static int
setup(void **state)
{
	(void)state;
	static int k;
	snprintf(root, sizeof(root), "%s/root%d", tmp, k);
	snprintf(spare, sizeof(spare), "%s/spare%d", tmp, k);
	snprintf(store_dir, sizeof(store_dir), "%s/store%d", tmp, k++);
	if (mkdir(root, 0755) != 0 || mkdir(spare, 0755) != 0)
		return -1;
	store_params sp = store_default_params();
	const clip_model_info *info = clip_model_get_info(model);
	sp.dim = info->embed_dim;
	sp.model_id = info->key;
	if (store_open(store_dir, &sp, &st, NULL) != 0)
		return -1;
	watch_params p;
	watch_default_params(&p);
	p.nice = 0;
	p.decode_threads = 2;
	p.batch = 4;
	if (k == 2) {
		p.video_max_frames = 5;
		p.video_limit_s = 10;
	}
	return watch_start(st, model, &p, &w, NULL);
}

static int
teardown(void **state)
{
	(void)state;
	watch_stop(w);
	w = NULL;
	store_close(st);
	st = NULL;
	return 0;
}

static int
group_setup(void **state)
{
	(void)state;
	if (system("ffmpeg -version >/dev/null 2>&1") != 0)
		return -1;      /* tools/deps.sh installs it */
	return tu_tmp_tiny_model(tmp, model_dir, sizeof(model_dir), &model);
}

static int
group_teardown(void **state)
{
	(void)state;
	clip_model_free(model);
	tm_rmtree(tmp);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_clips, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unchanged_and_limit, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_clip_refused_whole, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_max_frames_capped, setup,
		    teardown),
	};
	clip_video_log_quiet();
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
