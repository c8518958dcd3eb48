/*
 * Tests of encoder/video.c (clip_video_sample) on clips that the ffmpeg
 * command-line tool makes here from its test sources (tools/deps.sh
 * installs it): MP4, MOV, MKV and WebM; the sampling rule (every
 * interval, at most max_frames, a long clip spread over its length with
 * few frames decoded, a static shot kept once); colours; the pixel limit;
 * corrupt, truncated and unsupported files.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "encoder/clip.h"
#include "encoder/video.h"
#include "tests/cdx_assert.h"
#include "tests/testutil.h"

static char dir[] = "/tmp/cdx_video_XXXXXX";

/* Makes dir/name with ffmpeg from the lavfi source src and output args. */
static void
make_clip(const char *name, const char *src, const char *args)
{
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "ffmpeg -nostdin -loglevel error -y -f lavfi "
	    "-i '%s' %s '%s/%s'", src, args, dir, name);
	assert_int_equal(system(cmd), 0);
}

static char *
at(const char *name)
{
	static char p[4][512];
	static int k;
	k = (k + 1) % 4;
	snprintf(p[k], sizeof(p[k]), "%s/%s", dir, name);
	return p[k];
}

struct got {
	int n;
	int64_t ms[64];
	int w, h;
	uint8_t px[64][3];      /* the centre pixel of each frame */
};

static int
collect(void *user, int64_t time_ms, const clip_image *img, cdx_error *err)
{
	(void)err;
	struct got *g = user;
	if (g->n < 64) {
		g->ms[g->n] = time_ms;
		memcpy(g->px[g->n], img->rgb + ((size_t)(img->height / 2) *
		    img->width + img->width / 2) * 3, 3);
	}
	g->w = img->width;
	g->h = img->height;
	g->n++;
	return 0;
}

static int
setup(void **state)
{
	(void)state;
	if (system("ffmpeg -version >/dev/null 2>&1") != 0)
		return -1;      /* tools/deps.sh installs it */
	return mkdtemp(dir) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	(void)state;
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Every container: a 7 s clip gives a frame at 0, 2, 4 and 6 s. */
static void
test_containers(void **state)
{
	(void)state;
	static const struct {
		const char *name, *args;
	} c[] = {
		{ "a.mp4", "-c:v libx264 -g 10 -pix_fmt yuv420p" },
		{ "a.mov", "-c:v libx264 -g 10 -pix_fmt yuv420p" },
		{ "a.mkv", "-c:v libx264 -g 10 -pix_fmt yuv420p" },
		{ "a.webm", "-c:v libvpx -g 10 -b:v 200k" },
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		make_clip(c[i].name, "testsrc=size=160x120:rate=10:duration=7",
		    c[i].args);
		clip_video_opts o;
		clip_video_default_opts(&o);
		o.scene = 0;
		struct got g = { 0 };
		clip_video_info info;
		cdx_error err;
		CDX_ASSERT_OK(clip_video_sample(at(c[i].name), &o, collect, &g,
		    &info, &err), err.msg);
		assert_int_equal(g.n, 4);
		assert_int_equal(info.frames, 4);
		for (int k = 0; k < 4; k++)
			assert_true(llabs(g.ms[k] - 2000 * k) <= 100);
		assert_int_equal(g.w, 160);
		assert_int_equal(g.h, 120);
		assert_true(info.duration_ms >= 6900 && info.duration_ms <= 7100);
		/* Keyframes every second: few frames decoded per target. */
		if (info.decoded > 4 * 4)
			fail_msg("%s: %lld decoded", c[i].name, (long long)info.decoded);
	}
}

/* max_frames caps a clip within the limit; a longer clip than the limit
 * is spread over its whole length, decoding a few frames per target. */
static void
test_long_clip(void **state)
{
	(void)state;
	make_clip("long.mp4", "testsrc=size=96x64:rate=10:duration=200",
	    "-c:v libx264 -g 20 -pix_fmt yuv420p");
	clip_video_opts o;
	clip_video_default_opts(&o);
	o.scene = 0;
	struct got g = { 0 };
	clip_video_info info;
	cdx_error err;
	CDX_ASSERT_OK(clip_video_sample(at("long.mp4"), &o, collect, &g, &info,
	    &err), err.msg);
	assert_int_equal(g.n, 32);
	/* Spread over 200 s: the last frame lies past 180 s. */
	assert_true(g.ms[31] > 180000);
	for (int k = 1; k < 32; k++)
		assert_true(g.ms[k] > g.ms[k - 1]);
	/* 2000 frames in the clip; a GOP (20) per target at the very most. */
	assert_true(info.decoded < 32 * 20);
	assert_true(info.decoded < 2000 / 4);

	/* Within the limit (300 s): every 2 s, capped at max_frames. */
	o.limit_s = 300;
	o.max_frames = 5;
	memset(&g, 0, sizeof(g));
	CDX_ASSERT_OK(clip_video_sample(at("long.mp4"), &o, collect, &g, &info,
	    &err), err.msg);
	assert_int_equal(g.n, 5);
	assert_true(llabs(g.ms[4] - 8000) <= 100);
}

/* A long GOP: targets between keyframes decode on to their time. */
static void
test_long_gop(void **state)
{
	(void)state;
	make_clip("gop.mp4", "testsrc=size=96x64:rate=10:duration=9",
	    "-c:v libx264 -g 100 -sc_threshold 0 -pix_fmt yuv420p");
	clip_video_opts o;
	clip_video_default_opts(&o);
	o.scene = 0;
	struct got g = { 0 };
	clip_video_info info;
	cdx_error err;
	CDX_ASSERT_OK(clip_video_sample(at("gop.mp4"), &o, collect, &g, &info,
	    &err), err.msg);
	/* Decoding goes on through a GOP, never back over it: at most the
	 * clip's 90 frames once. */
	assert_true(info.decoded <= 90);
	assert_int_equal(g.n, 5);
	/* A keyframe within a quarter step, else the target's own frame. */
	for (int k = 0; k < 5; k++)
		assert_true(g.ms[k] <= 2000 * k && g.ms[k] >= 2000 * k - 500);
}

/* A static shot is one frame (scene rule); colours come out right. */
static void
test_scene_and_colour(void **state)
{
	(void)state;
	make_clip("still.mp4", "color=c=0x3366CC:size=128x96:rate=10:duration=7",
	    "-c:v libx264 -g 10 -pix_fmt yuv420p");
	struct got g = { 0 };
	cdx_error err;
	CDX_ASSERT_OK(clip_video_sample(at("still.mp4"), NULL, collect, &g, NULL,
	    &err), err.msg);
	assert_int_equal(g.n, 1);
	assert_true(abs(g.px[0][0] - 0x33) <= 4);
	assert_true(abs(g.px[0][1] - 0x66) <= 4);
	assert_true(abs(g.px[0][2] - 0xCC) <= 4);
	/* Two shots: a cut at 4 s gives a second frame. */
	make_clip("cut.mp4", "color=c=red:size=128x96:rate=10:duration=4[a];"
	    "color=c=blue:size=128x96:rate=10:duration=4[b];[a][b]concat",
	    "-c:v libx264 -g 10 -pix_fmt yuv420p");
	memset(&g, 0, sizeof(g));
	CDX_ASSERT_OK(clip_video_sample(at("cut.mp4"), NULL, collect, &g, NULL,
	    &err), err.msg);
	assert_int_equal(g.n, 2);
	assert_true(g.px[0][0] > 200 && g.px[0][2] < 50);
	assert_true(g.px[1][2] > 200 && g.px[1][0] < 50);
	assert_true(llabs(g.ms[1] - 4000) <= 100);
	/* One frame by its time, as thumbnails are made. */
	clip_image img;
	CDX_ASSERT_OK(clip_video_frame(at("cut.mp4"), g.ms[1], 0, &img, &err),
	    err.msg);
	assert_int_equal(img.width, 128);
	assert_true(img.rgb[2] > 200 && img.rgb[0] < 50);
	clip_image_free(&img);
	CDX_ASSERT_OK(clip_video_frame(at("cut.mp4"), 1000, 0, &img, &err),
	    err.msg);
	assert_true(img.rgb[0] > 200 && img.rgb[2] < 50);
	clip_image_free(&img);
	/* Past the end: the last frame. */
	CDX_ASSERT_OK(clip_video_frame(at("cut.mp4"), 60000, 0, &img, &err),
	    err.msg);
	assert_true(img.rgb[2] > 200);
	clip_image_free(&img);
}

/* The first frame, whole (malloc'd into *user). */
static int
collect_first(void *user, int64_t time_ms, const clip_image *img,
    cdx_error *err)
{
	(void)time_ms;
	(void)err;
	clip_image *first = user;
	if (first->rgb != NULL)
		return 0;
	size_t n = (size_t)img->width * (size_t)img->height * 3;
	if ((first->rgb = malloc(n)) == NULL)
		return -1;
	memcpy(first->rgb, img->rgb, n);
	first->width = img->width;
	first->height = img->height;
	return 0;
}

/* A portrait clip stored rotated comes out upright. */
static void
test_rotation(void **state)
{
	(void)state;
	make_clip("rot.mp4", "testsrc=size=160x96:rate=10:duration=1",
	    "-c:v libx264 -pix_fmt yuv420p");
	clip_image plain = { 0 };
	cdx_error err;
	CDX_ASSERT_OK(clip_video_sample(at("rot.mp4"), NULL, collect_first,
	    &plain, NULL, &err), err.msg);
	assert_non_null(plain.rgb);
	/* FFmpeg 5.1's tool cannot set it: the track header's matrix as a
	 * phone writes it for a portrait clip (90 degrees clockwise). */
	size_t n;
	uint8_t *d = (uint8_t *)tu_read_file(at("rot.mp4"), &n);
	assert_non_null(d);
	uint8_t *t = memmem(d, n, "tkhd", 4);
	assert_non_null(t);
	assert_int_equal(t[4], 0);      /* version 0 */
	static const int32_t m[9] = { 0, 0x10000, 0, -0x10000, 0, 0, 0, 0,
		0x40000000 };
	for (int i = 0; i < 9; i++)
		for (int b = 0; b < 4; b++)
			t[44 + i * 4 + b] = (uint8_t)((uint32_t)m[i] >> (24 - 8 * b));
	assert_int_equal(tu_write_file(at("rot.mp4"), d, n), 0);
	free(d);
	struct got g = { 0 };
	clip_video_info info;
	CDX_ASSERT_OK(clip_video_sample(at("rot.mp4"), NULL, collect, &g, &info,
	    &err), err.msg);
	assert_int_equal(info.rotation, 90);
	assert_int_equal(g.w, 96);
	assert_int_equal(g.h, 160);
	/* turned 90 degrees clockwise: upright (x, y) is stored
	 * (y, h - 1 - x) */
	clip_image up = { 0 };
	CDX_ASSERT_OK(clip_video_sample(at("rot.mp4"), NULL, collect_first,
	    &up, NULL, &err), err.msg);
	assert_non_null(up.rgb);
	assert_int_equal(up.width, plain.height);
	assert_int_equal(up.height, plain.width);
	for (int y = 0; y < up.height; y++)
		for (int x = 0; x < up.width; x++)
			assert_memory_equal(up.rgb + ((size_t)y * up.width + x) * 3,
			    plain.rgb + ((size_t)(plain.height - 1 - x) *
			    plain.width + y) * 3, 3);
	free(up.rgb);
	free(plain.rgb);
}

static void
expect_fail(const char *path, int code, const char *words)
{
	struct got g = { 0 };
	cdx_error err;
	int rc = clip_video_sample(path, NULL, collect, &g, NULL, &err);
	assert_int_equal(rc, code);
	if (strstr(err.msg, words) == NULL)
		fail_msg("message \"%s\" lacks \"%s\"", err.msg, words);
}

static void
test_bad_files(void **state)
{
	(void)state;
	make_clip("ok.mp4", "testsrc=size=160x120:rate=10:duration=6",
	    "-c:v libx264 -g 10 -pix_fmt yuv420p");
	make_clip("fs.mp4", "testsrc=size=160x120:rate=10:duration=6",
	    "-c:v libx264 -g 10 -pix_fmt yuv420p -movflags +faststart");
	make_clip("x.avi", "testsrc=size=64x64:rate=10:duration=1", "-c:v mpeg4");
	size_t n;
	char *d = tu_read_file(at("ok.mp4"), &n);
	assert_non_null(d);
	/* Truncated: the index (moov) at the end is lost. */
	assert_int_equal(tu_write_file(at("cut1.mp4"), d, n / 2), 0);
	free(d);
	expect_fail(at("cut1.mp4"), CDX_EFORMAT, "cut1.mp4");
	d = tu_read_file(at("fs.mp4"), &n);
	assert_non_null(d);
	/* Truncated after an index at the front: frames it names are gone. */
	assert_int_equal(tu_write_file(at("cut2.mp4"), d, n / 2), 0);
	expect_fail(at("cut2.mp4"), CDX_EFORMAT, "truncated");
	/* Garbage after a valid ftyp box. */
	for (size_t i = 32; i < n; i++)
		d[i] = (char)(i * 7919u >> 3);
	assert_int_equal(tu_write_file(at("junk.mp4"), d, n), 0);
	free(d);
	expect_fail(at("junk.mp4"), CDX_EFORMAT, "junk.mp4");
	expect_fail(at("x.avi"), CDX_EFORMAT, "unsupported container");
	/* Not clips read here, rather than broken ones: the indexer skips
	 * them.  Audio only: an M4A is not video by its first bytes; an MP4
	 * (brands isom, mp41) is found to have no video stream. */
	clip_video_info info;
	cdx_error err;
	struct got g = { 0 };
	assert_int_equal(clip_video_sample(at("x.avi"), NULL, collect, &g,
	    &info, &err), CDX_EFORMAT);
	assert_int_equal(info.unsupported, CLIP_VIDEO_OTHER_CONTAINER);
	assert_int_equal(clip_video_sample(at("junk.mp4"), NULL, collect, &g,
	    &info, &err), CDX_EFORMAT);
	assert_int_equal(info.unsupported, 0);
	make_clip("song.m4a", "sine=duration=1", "-c:a aac");
	make_clip("voice.mp4", "sine=duration=1", "-c:a aac");
	int content;
	d = tu_read_file(at("song.m4a"), &n);
	assert_non_null(d);
	assert_true(n > 12 && memcmp(d + 8, "M4A ", 4) == 0);
	assert_int_equal(clip_image_sniff(d, n, &content), CLIP_FORMAT_UNKNOWN);
	assert_int_equal(content, CLIP_CONTENT_OTHER);
	free(d);
	d = tu_read_file(at("voice.mp4"), &n);
	assert_non_null(d);
	clip_image_sniff(d, n, &content);
	assert_int_equal(content, CLIP_CONTENT_VIDEO);
	free(d);
	assert_int_equal(clip_video_sample(at("voice.mp4"), NULL, collect, &g,
	    &info, &err), CDX_EFORMAT);
	assert_int_equal(info.unsupported, CLIP_VIDEO_NO_VIDEO);
	d = tu_read_file(at("x.avi"), &n);
	assert_non_null(d);
	clip_image_sniff(d, n, &content);
	assert_int_equal(content, CLIP_CONTENT_VIDEO);  /* a video, not read */
	free(d);
	expect_fail(at("none.mp4"), CDX_ENOTFOUND, "none.mp4");

	clip_video_opts o;
	clip_video_default_opts(&o);
	o.max_pixels = 160 * 120 - 1;
	memset(&g, 0, sizeof(g));
	assert_int_equal(clip_video_sample(at("ok.mp4"), &o, collect, &g, NULL,
	    &err), CDX_ETOOBIG);
	assert_int_equal(g.n, 0);
	o.max_pixels = 160 * 120;
	CDX_ASSERT_OK(clip_video_sample(at("ok.mp4"), &o, collect, &g, NULL,
	    &err), err.msg);
	o.interval_s = 0;
	assert_int_equal(clip_video_sample(at("ok.mp4"), &o, collect, &g, NULL,
	    &err), CDX_EINVAL);
}

/* A system error is not bad data: no file descriptor left (EMFILE) is
 * CDX_EIO, which the indexer retries, not CDX_EFORMAT, a failure until
 * the file changes. */
static void
test_system_errors(void **state)
{
	(void)state;
	make_clip("fd.mp4", "testsrc=size=64x48:rate=10:duration=1",
	    "-c:v libx264 -pix_fmt yuv420p");
	struct rlimit old, low;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	int next = dup(0);
	assert_true(next >= 0);
	close(next);
	low = old;
	low.rlim_cur = (rlim_t)next;    /* the next open(2) is EMFILE */
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	struct got g = { 0 };
	cdx_error err;
	int rc = clip_video_sample(at("fd.mp4"), NULL, collect, &g, NULL, &err);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	if (rc != CDX_EIO)
		fail_msg("%d: %s", rc, err.msg);
	assert_non_null(strstr(err.msg, "fd.mp4"));
	CDX_ASSERT_OK(clip_video_sample(at("fd.mp4"), NULL, collect, &g, NULL,
	    &err), err.msg);
}

struct sizes {
	int n;
	int64_t ms[16];
	int w[16], h[16];
	uint8_t px[16][3];
};

static int
collect_sizes(void *user, int64_t time_ms, const clip_image *img,
    cdx_error *err)
{
	(void)err;
	struct sizes *s = user;
	if (s->n < 16) {
		s->ms[s->n] = time_ms;
		s->w[s->n] = img->width;
		s->h[s->n] = img->height;
		memcpy(s->px[s->n], img->rgb + ((size_t)(img->height / 2) *
		    img->width + img->width / 2) * 3, 3);
	}
	s->n++;
	return 0;
}

/* A clip whose frame size changes within it (WebRTC WebM does): 2 s of
 * red 64x48 then 2 s of blue 320x240, the header saying 64x48.  Each frame
 * is converted at its own size (under ASan: no write past the buffers
 * sized by the first), and the pixel limit holds for every frame, not only
 * the header's size. */
static void
test_size_change(void **state)
{
	(void)state;
	make_clip("sa.webm", "color=c=red:size=64x48:rate=10:duration=2",
	    "-c:v libvpx -g 5 -b:v 200k");
	make_clip("sb.webm", "color=c=blue:size=320x240:rate=10:duration=2",
	    "-c:v libvpx -g 5 -b:v 200k");
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "cd '%s' && printf 'file sa.webm\\nfile "
	    "sb.webm\\n' > s.txt && ffmpeg -nostdin -loglevel error -y -f "
	    "concat -i s.txt -c copy s.webm", dir);
	assert_int_equal(system(cmd), 0);

	clip_video_opts o;
	clip_video_default_opts(&o);
	o.interval_s = 0.5;
	o.scene = 0;
	struct sizes s = { 0 };
	clip_video_info info;
	cdx_error err;
	CDX_ASSERT_OK(clip_video_sample(at("s.webm"), &o, collect_sizes, &s,
	    &info, &err), err.msg);
	assert_int_equal(info.width, 64);
	assert_true(s.n >= 6 && s.n <= 16);
	int small = 0, big = 0;
	for (int i = 0; i < s.n; i++) {
		if (s.ms[i] < 1900) {
			assert_int_equal(s.w[i], 64);
			assert_int_equal(s.h[i], 48);
			assert_true(s.px[i][0] > 200 && s.px[i][2] < 60);
			small++;
		} else if (s.ms[i] > 2100) {
			assert_int_equal(s.w[i], 320);
			assert_int_equal(s.h[i], 240);
			assert_true(s.px[i][2] > 200 && s.px[i][0] < 60);
			big++;
		}
	}
	assert_true(small >= 3 && big >= 3);

	clip_image img;
	memset(&img, 0, sizeof(img));
	CDX_ASSERT_OK(clip_video_frame(at("s.webm"), 3000, 0, &img, &err),
	    err.msg);
	assert_int_equal(img.width, 320);
	assert_int_equal(img.height, 240);
	clip_image_free(&img);

	/* The header's size is within the limit, the later frames are not. */
	o.max_pixels = 64 * 48;
	memset(&s, 0, sizeof(s));
	assert_int_equal(clip_video_sample(at("s.webm"), &o, collect_sizes, &s,
	    NULL, &err), CDX_ETOOBIG);
	for (int i = 0; i < s.n && i < 16; i++)
		assert_int_equal(s.w[i], 64);
	assert_int_equal(clip_video_frame(at("s.webm"), 3000, 64 * 48, &img,
	    &err), CDX_ETOOBIG);
	assert_null(img.rgb);
}

/* Frames go through the image preprocessing as images do. */
static int
prep(void *user, int64_t time_ms, const clip_image *img, cdx_error *err)
{
	(void)time_ms;
	clip_preprocess_cfg cfg = { .mode = CLIP_RESIZE_SHORTEST_CROP,
		.resample = CLIP_RESAMPLE_BICUBIC, .shortest_edge = 32,
		.crop_width = 32, .crop_height = 32, .mean = { 0.5f, 0.5f, 0.5f },
		.std = { 0.5f, 0.5f, 0.5f } };
	float *out = user;
	return clip_image_preprocess(img, &cfg, out, err);
}

static void
test_preprocess(void **state)
{
	(void)state;
	make_clip("p.mp4", "color=c=white:size=128x96:rate=10:duration=1",
	    "-c:v libx264 -pix_fmt yuv420p");
	float out[3 * 32 * 32];
	cdx_error err;
	CDX_ASSERT_OK(clip_video_sample(at("p.mp4"), NULL, prep, out, NULL,
	    &err), err.msg);
	assert_true(out[0] > 0.95f && out[3 * 32 * 32 - 1] > 0.95f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_containers),
		cmocka_unit_test(test_long_clip),
		cmocka_unit_test(test_long_gop),
		cmocka_unit_test(test_scene_and_colour),
		cmocka_unit_test(test_rotation),
		cmocka_unit_test(test_bad_files),
		cmocka_unit_test(test_size_change),
		cmocka_unit_test(test_system_errors),
		cmocka_unit_test(test_preprocess),
	};
	clip_video_log_quiet();
	return cmocka_run_group_tests(tests, setup, teardown);
}
