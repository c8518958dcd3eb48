/*
 * Tests of the formats beyond JPEG and PNG (encoder/image_sniff.c,
 * image_{heif,webp,tiff,gif,bmp,raw}.c) against the references that
 * tools/ref_images.py --formats wrote into tests/fixtures/images/formats/
 * (manifest.txt there): Pillow 9.4 for WebP, TIFF, GIF and BMP; heif-convert
 * for HEIC/AVIF; dcraw_emu -h -w for RAW.  Also: detection by content,
 * probe facts, bombs, corrupt and truncated files, threads, and fast mode
 * against exact mode on the demo model.  Run from the repository root.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "encoder/clip.h"
#include "encoder/image_internal.h"
#include "tests/cdx_assert.h"

#define FIX "tests/fixtures/images/formats/"
#define DEMO_MODEL "models/demo"
#define MAX_FIXTURES 256

/* The manifest, read once. */
struct line {
	char kind[16], name[64], a[64], b[64], c[64], d[64], e[64];
	int n;
};
static struct line lines[MAX_FIXTURES];
static int n_lines;

static int
setup(void **state)
{
	(void)state;
	FILE *m = fopen(FIX "manifest.txt", "r");
	char buf[512];
	if (m == NULL)
		return -1;
	n_lines = 0;
	while (fgets(buf, sizeof(buf), m) != NULL && n_lines < MAX_FIXTURES) {
		struct line *l = &lines[n_lines];
		if (buf[0] == '#')
			continue;
		l->n = sscanf(buf, "%15s %63s %63s %63s %63s %63s %63s", l->kind,
		    l->name, l->a, l->b, l->c, l->d, l->e);
		if (l->n >= 2)
			n_lines++;
	}
	fclose(m);
	return 0;
}

static uint8_t *
read_fixture(const char *name, size_t *len)
{
	char path[512];
	char *buf;
	cdx_error err;
	snprintf(path, sizeof(path), FIX "%s", name);
	if (cdx_read_file(path, (size_t)1 << 26, &buf, len, &err) != 0)
		fail_msg("%s: %s", path, err.msg);
	return (uint8_t *)buf;
}

/* The format a fixture's name says it is (by its first letter). */
static int
fixture_format(const char *name)
{
	switch (name[0]) {
	case 'w': return CLIP_FORMAT_WEBP;
	case 't': return CLIP_FORMAT_TIFF;
	case 'g': return CLIP_FORMAT_GIF;
	case 'b': return CLIP_FORMAT_BMP;
	case 'h': return CLIP_FORMAT_HEIF;
	case 'a': return CLIP_FORMAT_AVIF;
	case 'r': return CLIP_FORMAT_RAW;
	}
	return CLIP_FORMAT_UNKNOWN;
}

static int
decode_file(const char *name, const clip_decode_opts *o, clip_image *img,
    cdx_error *err)
{
	size_t len;
	uint8_t *d = read_fixture(name, &len);
	int rc = clip_image_decode(d, len, o, img, err);
	free(d);
	return rc;
}

/* ---- exact mode equals the reference ----------------------------------- */

static void
test_decode_equals_reference(void **state)
{
	int checked = 0, failures = 0, per_format[16] = { 0 };
	(void)state;
	for (int i = 0; i < n_lines; i++) {
		struct line *l = &lines[i];
		if (strcmp(l->kind, "decode") != 0)
			continue;
		clip_image img, ref;
		cdx_error err;
		int rc = decode_file(l->name, NULL, &img, &err);
		if (rc != 0) {
			print_error("%s: %s\n", l->name, err.msg);
			failures++;
			continue;
		}
		char rpath[512];
		snprintf(rpath, sizeof(rpath), FIX "%s", l->c);
		CDX_ASSERT_OK(clip_image_load(rpath, NULL, &ref, &err), err.msg);
		assert_int_equal(ref.width, atoi(l->a));
		assert_int_equal(ref.height, atoi(l->b));
		if (img.width != ref.width || img.height != ref.height) {
			print_error("%s: %d x %d, reference %d x %d\n", l->name,
			    img.width, img.height, ref.width, ref.height);
			failures++;
		} else {
			size_t n = (size_t)img.width * img.height * 3, bad = 0;
			int maxd = 0, tol = l->n >= 6 ? atoi(l->d) : 0;
			for (size_t k = 0; k < n; k++) {
				int dd = abs(img.rgb[k] - ref.rgb[k]);
				bad += dd > tol;
				maxd = dd > maxd ? dd : maxd;
			}
			if (bad != 0) {
				print_error("%s: %zu of %zu bytes differ (max "
				    "%d)\n", l->name, bad, n, maxd);
				failures++;
			}
		}
		assert_int_equal(img.info.format, fixture_format(l->name));
		per_format[img.info.format]++;
		checked++;
		clip_image_free(&img);
		clip_image_free(&ref);
	}
	assert_int_equal(failures, 0);
	assert_true(checked >= 50);
	for (int f = CLIP_FORMAT_HEIF; f <= CLIP_FORMAT_RAW; f++)
		if (per_format[f] < 2)
			fail_msg("only %d fixtures of %s", per_format[f],
			    clip_image_format_name(f));
}

/* ---- what a probe says ------------------------------------------------- */

static void
test_probe_info(void **state)
{
	int checked = 0;
	(void)state;
	for (int i = 0; i < n_lines; i++) {
		struct line *l = &lines[i];
		if (strcmp(l->kind, "info") != 0)
			continue;
		size_t len;
		uint8_t *d = read_fixture(l->name, &len);
		clip_image_info info;
		cdx_error err;
		CDX_ASSERT_OK(clip_image_probe(d, len, &info, &err), err.msg);
		if (info.format != atoi(l->a) || info.width != atoi(l->b) ||
		    info.height != atoi(l->c) ||
		    info.orientation != atoi(l->d))
			fail_msg("%s: format %d %d x %d orientation %d, want "
			    "%s %s x %s %s", l->name, info.format, info.width,
			    info.height, info.orientation, l->a, l->b, l->c,
			    l->d);
		if (info.capture_time != (strcmp(l->e, "none") == 0 ?
		    INT64_MIN : atoll(l->e)))
			fail_msg("%s: capture time %lld, want %s", l->name,
			    (long long)info.capture_time, l->e);
		/* the decode reports the same facts */
		clip_image img;
		CDX_ASSERT_OK(clip_image_decode(d, len, NULL, &img, &err),
		    err.msg);
		assert_int_equal(img.info.width, info.width);
		assert_int_equal(img.info.height, info.height);
		assert_true(img.info.capture_time == info.capture_time);
		clip_image_free(&img);
		free(d);
		checked++;
	}
	assert_true(checked >= 12);
}

/* ---- detection by content ---------------------------------------------- */

static void
test_sniff_by_content(void **state)
{
	(void)state;
	int content;
	for (int i = 0; i < n_lines; i++) {
		struct line *l = &lines[i];
		if (strcmp(l->kind, "decode") != 0)
			continue;
		size_t len;
		uint8_t *d = read_fixture(l->name, &len);
		assert_int_equal(clip_image_sniff(d, len, &content),
		    fixture_format(l->name));
		assert_int_equal(content, CLIP_CONTENT_IMAGE);
		free(d);
	}
	static const struct {
		const char *bytes;
		size_t len;
		int fmt, content;
	} cases[] = {
		{ "\0\0\0\x18" "ftypisom\0\0\0\0isomavc1", 24, 0,
		  CLIP_CONTENT_VIDEO },
		{ "\0\0\0\x14" "ftypqt  \0\0\0\0qt  ", 20, 0,
		  CLIP_CONTENT_VIDEO },
		{ "\x1a\x45\xdf\xa3\x01\0\0\0", 8, 0, CLIP_CONTENT_VIDEO },
		{ "RIFF\0\0\0\0AVI LIST", 16, 0, CLIP_CONTENT_VIDEO },
		{ "\0\0\0\x0cJXL \r\n\x87\n", 12, 0, CLIP_CONTENT_IMAGE_OTHER },
		{ "8BPS\0\1", 6, 0, CLIP_CONTENT_IMAGE_OTHER },
		{ "\0\0\0\x18" "ftypmif1\0\0\0\0mif1heic", 24,
		  CLIP_FORMAT_HEIF, CLIP_CONTENT_IMAGE },
		{ "\0\0\0\x18" "ftypavif\0\0\0\0mif1miaf", 24,
		  CLIP_FORMAT_AVIF, CLIP_CONTENT_IMAGE },
		{ "\0\0\0\x18" "ftypcrx \0\0\0\1crx isom", 24,
		  CLIP_FORMAT_RAW, CLIP_CONTENT_IMAGE },
		{ "FUJIFILMCCD-RAW 0201", 20, CLIP_FORMAT_RAW,
		  CLIP_CONTENT_IMAGE },
		{ "IIRO\x08\0\0\0", 8, CLIP_FORMAT_RAW, CLIP_CONTENT_IMAGE },
		{ "II*\0\x10\0\0\0CR\2\0", 12, CLIP_FORMAT_RAW,
		  CLIP_CONTENT_IMAGE },
		{ "GIF87a\1\0\1\0", 10, CLIP_FORMAT_GIF, CLIP_CONTENT_IMAGE },
		{ "BMxxxxxxxxxxxx\x28\0\0\0", 18, 0, CLIP_CONTENT_OTHER },
		{ "hello, world, not an image", 26, 0, CLIP_CONTENT_OTHER },
		{ "", 0, 0, CLIP_CONTENT_OTHER },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		/* a BMP needs 26 bytes: the last but two is too short */
		assert_int_equal(clip_image_sniff(cases[i].bytes, cases[i].len,
		    &content), cases[i].fmt);
		assert_int_equal(content, cases[i].content);
	}
	assert_int_equal(clip_image_sniff(NULL, 0, NULL), 0);
	/* a TIFF-based RAW whose IFD0 lies after megabytes of sensor data
	 * (as the bench's DNG, and some writers', do) */
	size_t big = (size_t)3 << 20;
	uint8_t *raw = calloc(1, big + 32);
	assert_non_null(raw);
	memcpy(raw, "II*\0", 4);
	raw[4] = (uint8_t)big;
	raw[5] = (uint8_t)(big >> 8);
	raw[6] = (uint8_t)(big >> 16);
	static const uint8_t ifd[] = { 1, 0, 0x12, 0xC6, 1, 0, 4, 0, 0, 0, 1,
		4, 0, 0, 0, 0, 0, 0 };
	memcpy(raw + big, ifd, sizeof(ifd));
	assert_int_equal(clip_image_sniff(raw, big + 32, &content),
	    CLIP_FORMAT_RAW);
	raw[big + 2] = 0x13;    /* not DNGVersion: a plain TIFF */
	assert_int_equal(clip_image_sniff(raw, big + 32, &content),
	    CLIP_FORMAT_TIFF);
	free(raw);
	assert_string_equal(clip_image_format_name(CLIP_FORMAT_HEIF), "HEIF");
	assert_string_equal(clip_image_format_name(99), "unknown");
	/* a video's decode error says what it is */
	clip_image img;
	cdx_error err;
	assert_int_equal(clip_image_decode(cases[0].bytes, cases[0].len, NULL,
	    &img, &err), CDX_EFORMAT);
	assert_non_null(strstr(err.msg, "video"));
}

/* ---- limits, corrupt and truncated files -------------------------------- */

static int
code_of(const char *name)
{
	if (strcmp(name, "ETOOBIG") == 0)
		return CDX_ETOOBIG;
	if (strcmp(name, "EFORMAT") == 0)
		return CDX_EFORMAT;
	fail_msg("unknown code %s", name);
	return 0;
}

static void
test_bombs_and_bad_files(void **state)
{
	int checked = 0, bombs[16] = { 0 };
	(void)state;
	for (int i = 0; i < n_lines; i++) {
		struct line *l = &lines[i];
		if (strcmp(l->kind, "bad") != 0)
			continue;
		clip_image img;
		cdx_error err;
		int want = code_of(l->a);
		int rc = decode_file(l->name, NULL, &img, &err);
		if (rc != want)
			fail_msg("%s: %s (%s), want %s", l->name,
			    cdx_strerror(rc), err.msg, l->a);
		if (want == CDX_ETOOBIG)
			bombs[fixture_format(l->name)]++;
		checked++;
	}
	assert_true(checked >= 7);
	/* a header-only bomb for every decoder family */
	assert_true(bombs[CLIP_FORMAT_HEIF] && bombs[CLIP_FORMAT_WEBP] &&
	    bombs[CLIP_FORMAT_TIFF] && bombs[CLIP_FORMAT_GIF] &&
	    bombs[CLIP_FORMAT_BMP] && bombs[CLIP_FORMAT_RAW]);

	/* every real fixture is refused over a small limit, in both modes */
	for (int i = 0; i < n_lines; i++) {
		struct line *l = &lines[i];
		if (strcmp(l->kind, "decode") != 0)
			continue;
		for (int fast = 0; fast < 2; fast++) {
			clip_decode_opts o = { .max_pixels = 100,
				.min_short = fast ? 16 : 0 };
			clip_image img;
			cdx_error err;
			int rc = decode_file(l->name, &o, &img, &err);
			if (rc != CDX_ETOOBIG)
				fail_msg("%s over 100 pixels: %s", l->name,
				    cdx_strerror(rc));
			assert_non_null(strstr(err.msg,
			    clip_image_format_name(fixture_format(l->name))));
		}
	}
}

/* Every fixture cut short: half of it is a clear CDX_EFORMAT; any cut and
 * flipped bytes never crash (ASan checks what is read). */
static void
test_truncated_and_corrupt(void **state)
{
	int checked = 0;
	(void)state;
	for (int i = 0; i < n_lines; i++) {
		struct line *l = &lines[i];
		if (strcmp(l->kind, "decode") != 0)
			continue;
		size_t len;
		uint8_t *d = read_fixture(l->name, &len);
		clip_image img;
		cdx_error err;
		/* (an animation's or a multi-page file's first image may be
		 * whole in its first half) */
		int rc = clip_image_decode(d, len / 2, NULL, &img, &err);
		if (rc == 0 && (strstr(l->name, "anim") != NULL ||
		    strstr(l->name, "multipage") != NULL))
			clip_image_free(&img);
		else if (rc != CDX_EFORMAT)
			fail_msg("%s cut to %zu of %zu bytes: %s (%s)", l->name,
			    len / 2, len, cdx_strerror(rc),
			    rc == 0 ? "decoded" : err.msg);
		for (int k = 1; k < 16; k++) {
			size_t cut = len * (size_t)k / 16;
			for (int fast = 0; fast < 2; fast++) {
				clip_decode_opts o = { .min_short = fast * 24 };
				if (clip_image_decode(d, cut, &o, &img, &err) ==
				    0) {
					assert_true(img.width > 0 &&
					    img.height > 0);
					clip_image_free(&img);
				}
			}
		}
		/* flipped bytes past the first 16, seeded */
		uint8_t *m = malloc(len);
		assert_non_null(m);
		uint32_t seed = 12345u + (uint32_t)i;
		for (int round = 0; round < 12; round++) {
			memcpy(m, d, len);
			for (int f = 0; f < 4; f++) {
				seed = seed * 1103515245u + 12345u;
				size_t at = 16 + (seed >> 8) % (len - 16);
				m[at] ^= (uint8_t)(1u << (seed % 8));
			}
			clip_decode_opts o = { .min_short = round % 2 ? 24 : 0,
				.max_pixels = 1u << 22 };
			if (clip_image_decode(m, len, &o, &img, &err) == 0) {
				assert_true(img.width > 0 && img.height > 0);
				clip_image_free(&img);
			}
		}
		free(m);
		free(d);
		checked++;
	}
	assert_true(checked >= 50);
}

/* ---- RAW: both paths ---------------------------------------------------- */

static void
test_raw_fast_uses_the_preview(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		int w, h;
	} cases[] = {
		{ "r_basic.dng", 96, 64 },
		{ "r_orient6.dng", 64, 96 },
		{ "r_orient8.dng", 64, 96 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		clip_image exact, fast;
		cdx_error err;
		clip_decode_opts o = { .min_short = 64 };
		CDX_ASSERT_OK(decode_file(cases[i].name, &o, &fast, &err),
		    err.msg);
		/* the 96 x 64 preview, turned as the RAW says */
		assert_int_equal(fast.width, cases[i].w);
		assert_int_equal(fast.height, cases[i].h);
		CDX_ASSERT_OK(decode_file(cases[i].name, NULL, &exact, &err),
		    err.msg);
		/* the half-size demosaic */
		assert_int_equal(exact.width, cases[i].w / 2);
		assert_int_equal(exact.height, cases[i].h / 2);
		assert_int_equal(fast.info.orientation,
		    exact.info.orientation);
		clip_image_free(&exact);
		clip_image_free(&fast);
	}
	/* a preview smaller than min_short is not used */
	clip_image img;
	cdx_error err;
	clip_decode_opts big = { .min_short = 65 };
	CDX_ASSERT_OK(decode_file("r_basic.dng", &big, &img, &err), err.msg);
	assert_int_equal(img.width, 48);
	clip_image_free(&img);
	/* no preview: the demosaic in fast mode too */
	clip_decode_opts o = { .min_short = 16 };
	CDX_ASSERT_OK(decode_file("r_nopreview.dng", &o, &img, &err), err.msg);
	assert_int_equal(img.width, 48);
	assert_int_equal(img.height, 32);
	clip_image_free(&img);
}

/* ---- HEIF: fast mode's thumbnail -------------------------------------- */

static void
test_heif_fast_uses_a_thumbnail(void **state)
{
	clip_image exact, fast;
	cdx_error err;
	(void)state;
	clip_decode_opts o = { .min_short = 64 };
	CDX_ASSERT_OK(decode_file("h_thumb.heic", &o, &fast, &err), err.msg);
	CDX_ASSERT_OK(decode_file("h_thumb.heic", NULL, &exact, &err),
	    err.msg);
	/* heif-enc -t 104: a 104 x 64 thumbnail (even sizes) of the 192 x 120
	 * image */
	assert_int_equal(fast.width, 104);
	assert_int_equal(fast.height, 64);
	assert_int_equal(exact.width, 192);
	assert_int_equal(exact.height, 120);
	assert_int_equal(fast.info.width, 192);
	assert_int_equal(fast.info.height, 120);
	clip_image_free(&fast);
	/* too small for min_short 65: the primary image */
	o.min_short = 65;
	CDX_ASSERT_OK(decode_file("h_thumb.heic", &o, &fast, &err), err.msg);
	assert_int_equal(fast.width, 192);
	assert_memory_equal(fast.rgb, exact.rgb, 192 * 120 * 3);
	clip_image_free(&fast);
	clip_image_free(&exact);
	/* EXIF orientation 3: a thumbnail missing a half turn would have the
	 * same shape, so the primary image is decoded */
	o.min_short = 64;
	CDX_ASSERT_OK(decode_file("h_thumb_exif3.heic", &o, &fast, &err),
	    err.msg);
	assert_int_equal(fast.width, 192);
	assert_int_equal(fast.height, 120);
	clip_image_free(&fast);
}

/* ---- fast mode against exact mode on the demo model ---------------------- */

static void
test_fast_mode_cosine(void **state)
{
	clip_model *m = NULL;
	clip_ctx *ctx = NULL;
	cdx_error err;
	(void)state;
	CDX_ASSERT_OK(clip_model_load(DEMO_MODEL, NULL, &m, &err), err.msg);
	CDX_ASSERT_OK(clip_ctx_new(m, 2, &ctx, &err), err.msg);
	const clip_model_info *mi = clip_model_get_info(m);
	const clip_preprocess_cfg *pp = &mi->preprocess;
	size_t plane = 3 * (size_t)pp->crop_width * pp->crop_height;
	float *px = malloc(2 * plane * sizeof(float));
	float *emb = malloc(2 * (size_t)mi->embed_dim * sizeof(float));
	assert_non_null(px);
	assert_non_null(emb);
	clip_decode_opts fast = { .min_short = clip_preprocess_min_short(pp) };
	double worst = 1.0;
	const char *worst_name = "";
	int checked = 0, per_format[16] = { 0 };
	for (int i = 0; i < n_lines; i++) {
		struct line *l = &lines[i];
		if (strcmp(l->kind, "decode") != 0)
			continue;
		clip_image a, b;
		CDX_ASSERT_OK(decode_file(l->name, NULL, &a, &err), err.msg);
		CDX_ASSERT_OK(decode_file(l->name, &fast, &b, &err), err.msg);
		CDX_ASSERT_OK(clip_image_preprocess(&a, pp, px, &err), err.msg);
		CDX_ASSERT_OK(clip_image_preprocess(&b, pp, px + plane, &err),
		    err.msg);
		CDX_ASSERT_OK(clip_encode_images(ctx, px, 2, emb, &err),
		    err.msg);
		double dot = 0;
		for (int k = 0; k < mi->embed_dim; k++)
			dot += (double)emb[k] * emb[mi->embed_dim + k];
		if (getenv("CDX_TEST_VERBOSE") != NULL)
			print_message("%s: %.5f\n", l->name, dot);
		/* A RAW fixture whose half-size demosaic is smaller than the
		 * model's input is upsampled in exact mode, which no camera's
		 * file is (a 24 MP sensor gives 3000 x 2000): not compared. */
		int small = (a.width < a.height ? a.width : a.height) <
		    fast.min_short && a.width != b.width;
		if (small) {
			clip_image_free(&a);
			clip_image_free(&b);
			continue;
		}
		if (dot < worst) {
			worst = dot;
			worst_name = l->name;
		}
		per_format[a.info.format]++;
		checked++;
		clip_image_free(&a);
		clip_image_free(&b);
	}
	print_message("fast vs exact: worst cosine %.5f (%s) over %d files\n",
	    worst, worst_name, checked);
	assert_true(worst >= 0.99);
	for (int f = CLIP_FORMAT_HEIF; f <= CLIP_FORMAT_RAW; f++)
		assert_true(per_format[f] > 0);
	free(px);
	free(emb);
	clip_ctx_free(ctx);
	clip_model_free(m);
}

/* ---- threads ----------------------------------------------------------- */

struct thread_job {
	uint32_t crc[MAX_FIXTURES];
	int failures;
};

static uint32_t
fnv(const uint8_t *p, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

static void *
decode_all(void *arg)
{
	struct thread_job *j = arg;
	for (int round = 0; round < 3; round++)
		for (int i = 0; i < n_lines; i++) {
			if (strcmp(lines[i].kind, "decode") != 0)
				continue;
			clip_image img;
			cdx_error err;
			clip_decode_opts o = { .min_short = round == 1 ? 32 : 0 };
			size_t len;
			char path[512];
			char *d;
			snprintf(path, sizeof(path), FIX "%s", lines[i].name);
			if (cdx_read_file(path, (size_t)1 << 26, &d, &len,
			    &err) != 0 ||
			    clip_image_decode(d, len, &o, &img, &err) != 0) {
				j->failures++;
				continue;
			}
			free(d);
			uint32_t h = fnv(img.rgb,
			    (size_t)img.width * img.height * 3);
			if (round == 0)
				j->crc[i] = h;
			else if (round == 2 && j->crc[i] != h)
				j->failures++;
			clip_image_free(&img);
		}
	return NULL;
}

static void
test_threads(void **state)
{
	enum { N = 4 };
	pthread_t t[N];
	static struct thread_job jobs[N];
	(void)state;
	memset(jobs, 0, sizeof(jobs));
	for (int i = 0; i < N; i++)
		assert_int_equal(pthread_create(&t[i], NULL, decode_all,
		    &jobs[i]), 0);
	for (int i = 0; i < N; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < N; i++) {
		assert_int_equal(jobs[i].failures, 0);
		assert_memory_equal(jobs[i].crc, jobs[0].crc,
		    sizeof(jobs[0].crc));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_equals_reference),
		cmocka_unit_test(test_probe_info),
		cmocka_unit_test(test_sniff_by_content),
		cmocka_unit_test(test_bombs_and_bad_files),
		cmocka_unit_test(test_truncated_and_corrupt),
		cmocka_unit_test(test_raw_fast_uses_the_preview),
		cmocka_unit_test(test_heif_fast_uses_a_thumbnail),
		cmocka_unit_test(test_fast_mode_cosine),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
