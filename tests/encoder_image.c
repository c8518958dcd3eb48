/*
 * Tests of image decoding and preprocessing (encoder/image.c, resize.c,
 * exif.c) and of preprocessor_config.json parsing (config.c) against the
 * Pillow / Hugging Face reference written by tools/ref_images.py into
 * tests/fixtures/images/ (see manifest.txt there).  Run from the repository
 * root.
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
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <turbojpeg.h>
#include <zlib.h>

#include "encoder/clip.h"
#include "encoder/image_internal.h"
#include "encoder/model_internal.h"
#include "tests/cdx_assert.h"

#define FIX "tests/fixtures/images/"

static const float openai_mean[3] = { 0.48145466f, 0.4578275f, 0.40821073f };
static const float openai_std[3] = { 0.26862954f, 0.26130258f, 0.27577711f };

static uint8_t *
read_all(const char *name, size_t *len)
{
	char path[512];
	snprintf(path, sizeof(path), FIX "%s", name);
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		fail_msg("cannot open %s", path);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static void
load_ok(const char *name, const clip_decode_opts *opts, clip_image *img)
{
	char path[512];
	cdx_error err = { 0, "" };
	snprintf(path, sizeof(path), FIX "%s", name);
	int rc = clip_image_load(path, opts, img, &err);
	if (rc != 0)
		fail_msg("%s: %s (%s)", name, err.msg, cdx_strerror(rc));
}

/* Calls fn(fields, n, ctx) for each manifest line of the given kind. */
typedef void (*line_fn)(char **f, int n, void *ctx);

static int
for_each(const char *kind, line_fn fn, void *ctx)
{
	FILE *m = fopen(FIX "manifest.txt", "r");
	char line[512];
	int count = 0;
	assert_non_null(m);
	while (fgets(line, sizeof(line), m) != NULL) {
		char *f[16];
		int n = 0;
		for (char *t = strtok(line, " \n"); t != NULL && n < 16;
		    t = strtok(NULL, " \n"))
			f[n++] = t;
		if (n == 0 || strcmp(f[0], kind) != 0)
			continue;
		fn(f, n, ctx);
		count++;
	}
	fclose(m);
	return count;
}

static int
compare_bytes(const char *what, const uint8_t *got, const uint8_t *want,
    size_t n)
{
	size_t bad = 0, first = 0;
	int maxd = 0;
	for (size_t i = 0; i < n; i++) {
		int d = abs((int)got[i] - (int)want[i]);
		if (d != 0 && bad++ == 0)
			first = i;
		if (d > maxd)
			maxd = d;
	}
	if (bad != 0)
		print_error("%s: %zu of %zu bytes differ (first at %zu: %d vs "
		    "%d, max diff %d)\n", what, bad, n, first, got[first],
		    want[first], maxd);
	return bad != 0;
}

/* One run of a resize check: the failures it counts and which horizontal
 * pass it exercises (0: the SIMD one, where built; 1: the portable one). */
struct resize_run {
	int failures;
	int portable;
};

static int
resize_crop(const struct resize_run *run, const uint8_t *src, int w, int h,
    int nw, int nh, int cw, int ch, int resample, uint8_t *out,
    cdx_error *err)
{
	if (run->portable)
		return clip_resize_crop_portable(src, w, h, nw, nh, cw, ch,
		    resample, out, err);
	return clip_resize_crop(src, w, h, nw, nh, cw, ch, resample, out, err);
}

/* ---- decoding equals Pillow ------------------------------------------- */

static void
check_decode(char **f, int n, void *ctx)
{
	int *failures = ctx;
	clip_image img;
	size_t len;
	assert_int_equal(n, 5);
	load_ok(f[1], NULL, &img);
	uint8_t *want = read_all(f[4], &len);
	if (img.width != atoi(f[2]) || img.height != atoi(f[3])) {
		print_error("%s: size %d x %d, Pillow %s x %s\n", f[1],
		    img.width, img.height, f[2], f[3]);
		(*failures)++;
	} else {
		assert_int_equal(len, (size_t)img.width * img.height * 3);
		*failures += compare_bytes(f[1], img.rgb, want, len);
	}
	free(want);
	clip_image_free(&img);
}

static void
test_decode_equals_pillow(void **state)
{
	int failures = 0;
	(void)state;
	int n = for_each("decode", check_decode, &failures);
	assert_true(n >= 35);
	assert_int_equal(failures, 0);
}

/* ---- exact-mode crops equal the HF processor steps -------------------- */

static void
check_crop(char **f, int n, void *ctx)
{
	struct resize_run *run = ctx;
	clip_image img, ref;
	size_t len;
	assert_int_equal(n, 6);
	int se = atoi(f[2]), cw = atoi(f[3]), ch = atoi(f[4]);
	load_ok(f[1], NULL, &img);
	int nw, nh;
	assert_int_equal(clip_resize_dims(img.width, img.height, se, &nw, &nh),
	    0);
	uint8_t *got = malloc((size_t)cw * ch * 3);
	assert_non_null(got);
	cdx_error err;
	CDX_ASSERT_OK(resize_crop(run, img.rgb, img.width, img.height, nw, nh,
	    cw, ch, CLIP_RESAMPLE_BICUBIC, got, &err), err.msg);
	uint8_t *want;
	if (strstr(f[5], ".png") != NULL) {
		load_ok(f[5], NULL, &ref);
		assert_int_equal(ref.width, cw);
		assert_int_equal(ref.height, ch);
		want = ref.rgb;
		len = (size_t)cw * ch * 3;
	} else {
		want = read_all(f[5], &len);
		ref.rgb = want;
	}
	assert_int_equal(len, (size_t)cw * ch * 3);
	char what[256];
	snprintf(what, sizeof(what), "%s at %d, crop %dx%d%s", f[1], se, cw, ch,
	    run->portable ? " (portable)" : "");
	run->failures += compare_bytes(what, got, want, len);
	free(ref.rgb);
	free(got);
	clip_image_free(&img);
}

static void
test_exact_crop_equals_reference(void **state)
{
	struct resize_run simd = {0, 0}, portable = {0, 1};
	(void)state;
	int n = for_each("crop", check_crop, &simd);
	assert_true(n >= 40);
	assert_int_equal(simd.failures, 0);
	/* the portable horizontal pass too */
	n = for_each("crop", check_crop, &portable);
	assert_true(n >= 40);
	assert_int_equal(portable.failures, 0);
}

/* ---- normalisation --------------------------------------------------- */

static void
check_norm(char **f, int n, void *ctx)
{
	(void)ctx;
	assert_int_equal(n, 6);
	clip_image img;
	size_t len;
	load_ok(f[1], NULL, &img);
	clip_preprocess_cfg cfg = { .resample = CLIP_RESAMPLE_BICUBIC,
		.shortest_edge = atoi(f[2]), .crop_width = atoi(f[3]),
		.crop_height = atoi(f[4]) };
	memcpy(cfg.mean, openai_mean, sizeof(cfg.mean));
	memcpy(cfg.std, openai_std, sizeof(cfg.std));
	size_t count = 3 * (size_t)cfg.crop_width * cfg.crop_height;
	float *got = malloc(count * sizeof(float));
	uint8_t *want = read_all(f[5], &len);
	assert_int_equal(len, count * sizeof(float));
	cdx_error err;
	CDX_ASSERT_OK(clip_image_preprocess(&img, &cfg, got, &err), err.msg);
	double maxd = 0;
	for (size_t i = 0; i < count; i++) {
		float w;
		memcpy(&w, want + 4 * i, 4);
		double d = fabs((double)got[i] - w);
		if (d > maxd)
			maxd = d;
	}
	assert_true(maxd <= 1e-6);
	free(want);
	free(got);
	clip_image_free(&img);
}

static void
test_normalisation_equals_reference(void **state)
{
	(void)state;
	assert_int_equal(for_each("norm", check_norm, NULL), 1);
}

static void
test_preprocess_pads_and_layout(void **state)
{
	(void)state;
	/* A 4 x 2 image of one colour, shortest edge 2 (no resize), crop 4 x 4:
	 * rows 0 and 3 are padding (HF: zeros before normalisation). */
	uint8_t px[4 * 2 * 3];
	for (int i = 0; i < 8; i++) {
		px[3 * i] = 255;
		px[3 * i + 1] = 0;
		px[3 * i + 2] = 51;
	}
	clip_image img = { .width = 4, .height = 2, .rgb = px };
	clip_preprocess_cfg cfg = { .resample = CLIP_RESAMPLE_BICUBIC,
		.shortest_edge = 2, .crop_width = 4,
		.crop_height = 4, .mean = { 0.5f, 0.25f, 0.0f },
		.std = { 0.5f, 0.5f, 2.0f } };
	float out[3 * 16];
	assert_int_equal(clip_image_preprocess(&img, &cfg, out, NULL), 0);
	for (int y = 0; y < 4; y++) {
		int pad = y == 0 || y == 3;
		for (int x = 0; x < 4; x++) {
			assert_float_equal(out[0 * 16 + y * 4 + x],
			    pad ? -1.0f : 1.0f, 1e-6);
			assert_float_equal(out[1 * 16 + y * 4 + x], -0.5f, 1e-6);
			assert_float_equal(out[2 * 16 + y * 4 + x],
			    pad ? 0.0f : 0.1f, 1e-6);
		}
	}
	/* bad configurations */
	cdx_error err = { 0, "" };
	cfg.std[1] = 0.0f;
	assert_int_equal(clip_image_preprocess(&img, &cfg, out, &err),
	    CDX_EINVAL);
	assert_true(strlen(err.msg) > 0);
	cfg.std[1] = 1.0f;
	cfg.crop_width = 0;
	assert_int_equal(clip_image_preprocess(&img, &cfg, out, &err),
	    CDX_EINVAL);
	cfg.crop_width = 4;
	assert_int_equal(clip_image_preprocess(NULL, &cfg, out, &err),
	    CDX_EINVAL);
	/* 1 x 200000: the long side would be over INT_MAX at 16384 */
	clip_image thin = { .width = 1, .height = 200000, .rgb = px };
	cfg.shortest_edge = 16384;
	assert_int_equal(clip_image_preprocess(&thin, &cfg, out, &err),
	    CDX_EINVAL);
}

static void
test_resize_dims_as_hf(void **state)
{
	(void)state;
	int w, h;
	assert_int_equal(clip_resize_dims(4000, 3000, 224, &w, &h), 0);
	assert_int_equal(w, 298); /* int(224 * 4000 / 3000) = int(298.67) */
	assert_int_equal(h, 224);
	assert_int_equal(clip_resize_dims(37, 23, 64, &w, &h), 0);
	assert_int_equal(w, 102); /* int(64 * 37 / 23) = int(102.96) */
	assert_int_equal(h, 64);
	assert_int_equal(clip_resize_dims(100, 300, 224, &w, &h), 0);
	assert_int_equal(w, 224);
	assert_int_equal(h, 672);
	assert_int_equal(clip_resize_dims(0, 3, 224, &w, &h), CDX_EINVAL);
}

/* ---- both modes, both filters (pp, ppnorm, ppval lines) ---------------- */

static int
mode_of(const char *s)
{
	if (strcmp(s, "crop") == 0)
		return CLIP_RESIZE_SHORTEST_CROP;
	assert_string_equal(s, "squash");
	return CLIP_RESIZE_SQUASH;
}

/* The cfg of a pp/ppnorm/ppval line: MODE RESAMPLE NAME SE W H ... */
static clip_preprocess_cfg
line_cfg(char **f)
{
	clip_preprocess_cfg cfg = { .mode = mode_of(f[1]),
		.resample = atoi(f[2]), .shortest_edge = atoi(f[4]),
		.crop_width = atoi(f[5]), .crop_height = atoi(f[6]),
		.mean = { 0.5f, 0.5f, 0.5f }, .std = { 0.5f, 0.5f, 0.5f } };
	return cfg;
}

/* The reference bytes of a pp line (a file), or NULL when it is a CRC. */
static uint8_t *
pp_want(const char *ref, size_t n, unsigned long *crc)
{
	size_t len;
	if (strncmp(ref, "crc32:", 6) == 0) {
		*crc = strtoul(ref + 6, NULL, 16);
		return NULL;
	}
	if (strstr(ref, ".png") != NULL) {
		clip_image png;
		load_ok(ref, NULL, &png);
		assert_int_equal((size_t)png.width * png.height * 3, n);
		return png.rgb;
	}
	uint8_t *want = read_all(ref, &len);
	assert_int_equal(len, n);
	return want;
}

static int
pp_compare(const char *what, const uint8_t *got, const uint8_t *want,
    unsigned long crc, size_t n)
{
	if (want != NULL)
		return compare_bytes(what, got, want, n);
	unsigned long c = crc32(0L, got, (uInt)n);
	if (c != crc) {
		print_error("%s: crc32 %08lx, reference %08lx\n", what, c, crc);
		return 1;
	}
	return 0;
}

static void
check_pp(char **f, int n, void *ctx)
{
	struct resize_run *run = ctx;
	clip_image img;
	assert_int_equal(n, 8);
	clip_preprocess_cfg cfg = line_cfg(f);
	int w = cfg.crop_width, h = cfg.crop_height;
	size_t count = (size_t)w * h;
	load_ok(f[3], NULL, &img);
	int nw = w, nh = h;
	if (cfg.mode == CLIP_RESIZE_SHORTEST_CROP)
		assert_int_equal(clip_resize_dims(img.width, img.height,
		    cfg.shortest_edge, &nw, &nh), 0);
	unsigned long crc = 0;
	uint8_t *want = pp_want(f[7], count * 3, &crc);
	uint8_t *got = malloc(count * 3);
	assert_non_null(got);
	cdx_error err = { 0, "" };
	if (resize_crop(run, img.rgb, img.width, img.height, nw, nh, w, h,
	    cfg.resample, got, &err) != 0)
		fail_msg("%s: %s", f[3], err.msg);
	char what[256];
	snprintf(what, sizeof(what), "%s %s %s at %d, %dx%d", f[1], f[2], f[3],
	    cfg.shortest_edge, w, h);
	run->failures += pp_compare(what, got, want, crc, count * 3);

	/* the public path: mean 0, std 1 leaves x / 255, planar */
	float *px = malloc(count * 3 * sizeof(float));
	assert_non_null(px);
	cfg.mean[0] = cfg.mean[1] = cfg.mean[2] = 0.0f;
	cfg.std[0] = cfg.std[1] = cfg.std[2] = 1.0f;
	if (clip_image_preprocess(&img, &cfg, px, &err) != 0)
		fail_msg("%s: %s", f[3], err.msg);
	for (size_t i = 0; i < count; i++)
		for (int c = 0; c < 3; c++)
			got[i * 3 + c] = (uint8_t)lrintf(px[c * count + i] *
			    255.0f);
	snprintf(what, sizeof(what), "%s %s %s at %d, %dx%d (preprocess)", f[1],
	    f[2], f[3], cfg.shortest_edge, w, h);
	run->failures += pp_compare(what, got, want, crc, count * 3);
	free(px);
	free(want);
	free(got);
	clip_image_free(&img);
}

static void
test_modes_and_filters_equal_reference(void **state)
{
	struct resize_run simd = {0, 0}, portable = {0, 1};
	(void)state;
	int n = for_each("pp", check_pp, &simd);
	assert_true(n >= 80);
	assert_int_equal(simd.failures, 0);
	assert_int_equal(for_each("pp", check_pp, &portable), n);
	assert_int_equal(portable.failures, 0);
}

static void
check_pp_norm(char **f, int n, void *ctx)
{
	(void)ctx;
	assert_int_equal(n, 14);
	clip_preprocess_cfg cfg = line_cfg(f);
	for (int c = 0; c < 3; c++) {
		cfg.mean[c] = strtof(f[7 + c], NULL);
		cfg.std[c] = strtof(f[10 + c], NULL);
	}
	clip_image img;
	size_t len, count = 3 * (size_t)cfg.crop_width * cfg.crop_height;
	load_ok(f[3], NULL, &img);
	float *got = malloc(count * sizeof(float));
	uint8_t *want = read_all(f[13], &len);
	assert_int_equal(len, count * sizeof(float));
	assert_int_equal(clip_image_preprocess(&img, &cfg, got, NULL), 0);
	double maxd = 0;
	for (size_t i = 0; i < count; i++) {
		float w;
		memcpy(&w, want + 4 * i, 4);
		double d = fabs((double)got[i] - w);
		if (d > maxd)
			maxd = d;
	}
	if (maxd > 1e-6)
		fail_msg("%s %s: max |diff| %g", f[3], f[2], maxd);
	free(want);
	free(got);
	clip_image_free(&img);
}

static void
check_pp_value(char **f, int n, void *ctx)
{
	int *failures = ctx;
	assert_int_equal(n, 9);
	clip_preprocess_cfg cfg = line_cfg(f);
	size_t count = 3 * (size_t)cfg.crop_width * cfg.crop_height;
	size_t i = strtoul(f[7], NULL, 10);
	double want = strtod(f[8], NULL);
	assert_true(i < count);
	clip_image img;
	load_ok(f[3], NULL, &img);
	float *got = malloc(count * sizeof(float));
	assert_int_equal(clip_image_preprocess(&img, &cfg, got, NULL), 0);
	if (fabs((double)got[i] - want) > 1e-6) {
		print_error("%s %s %dx%d [%zu]: %.9g, reference %.9g\n", f[3],
		    f[2], cfg.crop_width, cfg.crop_height, i, got[i], want);
		(*failures)++;
	}
	free(got);
	clip_image_free(&img);
}

static void
test_siglip_normalisation_equals_reference(void **state)
{
	int failures = 0;
	(void)state;
	assert_int_equal(for_each("ppnorm", check_pp_norm, NULL), 2);
	assert_true(for_each("ppval", check_pp_value, &failures) >= 10);
	assert_int_equal(failures, 0);
}

static void
test_squash_layout_and_bad_cfg(void **state)
{
	(void)state;
	/* One colour stays that colour at any size, either filter. */
	uint8_t px[5 * 3 * 3];
	for (int i = 0; i < 15; i++) {
		px[3 * i] = 200;
		px[3 * i + 1] = 10;
		px[3 * i + 2] = 77;
	}
	clip_image img = { .width = 5, .height = 3, .rgb = px };
	clip_preprocess_cfg cfg = { .mode = CLIP_RESIZE_SQUASH,
		.resample = CLIP_RESAMPLE_BILINEAR, .shortest_edge = 0,
		.crop_width = 2, .crop_height = 7, .mean = { 0.5f, 0.5f, 0.5f },
		.std = { 0.5f, 0.5f, 0.5f } };
	float out[3 * 2 * 7];
	for (int r = CLIP_RESAMPLE_BILINEAR; r <= CLIP_RESAMPLE_BICUBIC; r++) {
		cfg.resample = r;
		assert_int_equal(clip_image_preprocess(&img, &cfg, out, NULL),
		    0);
		for (int i = 0; i < 14; i++) {
			assert_float_equal(out[i], 200 / 255.0 * 2 - 1, 1e-6);
			assert_float_equal(out[14 + i], 10 / 255.0 * 2 - 1,
			    1e-6);
			assert_float_equal(out[28 + i], 77 / 255.0 * 2 - 1,
			    1e-6);
		}
	}
	/* a squash to the image's own size is the identity */
	for (int i = 0; i < 15 * 3; i++)
		px[i] = (uint8_t)(i * 37);
	uint8_t same[5 * 3 * 3];
	for (int r = CLIP_RESAMPLE_BILINEAR; r <= CLIP_RESAMPLE_BICUBIC; r++) {
		assert_int_equal(clip_resize_crop(px, 5, 3, 5, 3, 5, 3, r, same,
		    NULL), 0);
		assert_memory_equal(same, px, sizeof(px));
	}

	/* bad configurations */
	cdx_error err = { 0, "" };
	cfg.resample = CLIP_RESAMPLE_BICUBIC;
	static const int bad_filters[] = { 0, 1, 4, 5, -1 };
	for (size_t i = 0; i < sizeof(bad_filters) / sizeof(int); i++) {
		cfg.resample = bad_filters[i];
		err.msg[0] = '\0';
		assert_int_equal(clip_image_preprocess(&img, &cfg, out, &err),
		    CDX_EINVAL);
		assert_non_null(strstr(err.msg, "filter"));
		assert_int_equal(clip_resize_crop(px, 5, 3, 2, 7, 2, 7,
		    bad_filters[i], same, NULL), CDX_EINVAL);
	}
	cfg.resample = CLIP_RESAMPLE_BICUBIC;
	cfg.mode = 2;
	assert_int_equal(clip_image_preprocess(&img, &cfg, out, &err),
	    CDX_EINVAL);
	assert_non_null(strstr(err.msg, "mode"));
	cfg.mode = -1;
	assert_int_equal(clip_image_preprocess(&img, &cfg, out, &err),
	    CDX_EINVAL);
	cfg.mode = CLIP_RESIZE_SQUASH;
	cfg.crop_width = 0;
	assert_int_equal(clip_image_preprocess(&img, &cfg, out, &err),
	    CDX_EINVAL);
	cfg.crop_width = 16385;
	assert_int_equal(clip_image_preprocess(&img, &cfg, out, &err),
	    CDX_EINVAL);
	cfg.crop_width = 2;
	cfg.crop_height = -3;
	assert_int_equal(clip_image_preprocess(&img, &cfg, out, &err),
	    CDX_EINVAL);
	cfg.crop_height = 7;
	cfg.std[2] = 0.0f;
	assert_int_equal(clip_image_preprocess(&img, &cfg, out, &err),
	    CDX_EINVAL);
	cfg.std[2] = 0.5f;
	/* shortest_edge is unused by a squash, required by a crop */
	CDX_ASSERT_OK(clip_image_preprocess(&img, &cfg, out, &err), err.msg);
	cfg.mode = CLIP_RESIZE_SHORTEST_CROP;
	assert_int_equal(clip_image_preprocess(&img, &cfg, out, &err),
	    CDX_EINVAL);
	cfg.shortest_edge = 3;
	CDX_ASSERT_OK(clip_image_preprocess(&img, &cfg, out, &err), err.msg);
}

static void
test_min_short(void **state)
{
	(void)state;
	clip_preprocess_cfg cfg = { .mode = CLIP_RESIZE_SHORTEST_CROP,
		.resample = CLIP_RESAMPLE_BICUBIC, .shortest_edge = 224,
		.crop_width = 256, .crop_height = 192 };
	assert_int_equal(clip_preprocess_min_short(&cfg), 224);
	cfg.mode = CLIP_RESIZE_SQUASH;
	assert_int_equal(clip_preprocess_min_short(&cfg), 256);
	cfg.crop_width = 136;
	cfg.crop_height = 200;
	assert_int_equal(clip_preprocess_min_short(&cfg), 200);
	cfg.mode = 7;
	assert_int_equal(clip_preprocess_min_short(&cfg), 0);
	assert_int_equal(clip_preprocess_min_short(NULL), 0);

	/* A fast decode at that min_short is at least the output size in
	 * both directions, whichever way the photo is turned; then the
	 * squash is close to exact mode's. */
	static const char *names[] = { "j_big.jpg", "j_orient6.jpg" };
	static const int sizes[][2] = { { 136, 200 }, { 200, 136 },
		{ 64, 64 }, { 90, 20 }, { 8, 300 } };
	cfg.mode = CLIP_RESIZE_SQUASH;
	for (size_t i = 0; i < 2; i++) {
		clip_image exact, fast;
		load_ok(names[i], NULL, &exact);
		for (size_t j = 0; j < sizeof(sizes) / sizeof(sizes[0]); j++) {
			cfg.crop_width = sizes[j][0];
			cfg.crop_height = sizes[j][1];
			clip_decode_opts o = {
				.min_short = clip_preprocess_min_short(&cfg) };
			load_ok(names[i], &o, &fast);
			int need = sizes[j][0] > sizes[j][1] ? sizes[j][0] :
			    sizes[j][1];
			int fs = fast.width < fast.height ? fast.width :
			    fast.height;
			int es = exact.width < exact.height ? exact.width :
			    exact.height;
			assert_true(fs >= need || fs == es);
			assert_true(fast.width <= exact.width);
			clip_image_free(&fast);
		}
		clip_image_free(&exact);
	}
	clip_image exact, fast;
	load_ok("j_big.jpg", NULL, &exact);
	cfg.crop_width = 64;
	cfg.crop_height = 40;
	clip_decode_opts o = { .min_short = clip_preprocess_min_short(&cfg) };
	load_ok("j_big.jpg", &o, &fast);
	assert_int_equal(fast.width, 120); /* 3/8: 90 >= 64 */
	uint8_t a[64 * 40 * 3], b[64 * 40 * 3];
	assert_int_equal(clip_resize_crop(exact.rgb, exact.width, exact.height,
	    64, 40, 64, 40, CLIP_RESAMPLE_BICUBIC, a, NULL), 0);
	assert_int_equal(clip_resize_crop(fast.rgb, fast.width, fast.height,
	    64, 40, 64, 40, CLIP_RESAMPLE_BICUBIC, b, NULL), 0);
	double sum = 0;
	int maxd = 0;
	for (size_t i = 0; i < sizeof(a); i++) {
		int d = abs((int)a[i] - (int)b[i]);
		sum += d;
		maxd = d > maxd ? d : maxd;
	}
	print_message("fast mode (3/8 scale) vs exact, 64x40 squash: mean "
	    "|diff| %.3f, max %d\n", sum / sizeof(a), maxd);
	assert_true(sum / sizeof(a) < 2.0);
	assert_true(maxd < 48);
	clip_image_free(&fast);
	clip_image_free(&exact);
}

/* ---- preprocessor_config.json (config.c) -------------------------------- */

static const char siglip_pp[] =
    "{\"do_convert_rgb\": null, \"do_normalize\": true, \"do_rescale\": true,"
    " \"do_resize\": true, \"image_mean\": [0.5, 0.5, 0.5],"
    " \"image_processor_type\": \"SiglipImageProcessor\","
    " \"image_std\": [0.5, 0.5, 0.5], \"processor_class\": \"SiglipProcessor\","
    " \"resample\": %d, \"rescale_factor\": 0.00392156862745098,"
    " \"size\": {\"height\": %d, \"width\": %d}}";

/* Parses `json` over *c (SigLIP's or CLIP's defaults); on failure expects
 * `code` and `field` in the message, and *c untouched. */
static void
parse_expect(const char *json, clip_preprocess_cfg *c, int code,
    const char *field)
{
	cdx_error err = { 0, "" };
	clip_preprocess_cfg before = *c;
	int rc = clip_preprocess_parse(json, strlen(json), "dir/pp.json", c,
	    &err);
	if (rc != code)
		fail_msg("%s: got %d (%s), want %d", json, rc, err.msg, code);
	if (code != 0) {
		assert_memory_equal(c, &before, sizeof(before));
		if (strstr(err.msg, "dir/pp.json") == NULL ||
		    strstr(err.msg, field) == NULL)
			fail_msg("message '%s' lacks the file or '%s'", err.msg,
			    field);
	}
}

static void
test_preprocess_config_siglip(void **state)
{
	(void)state;
	/* model.c's SigLIP defaults: bicubic squash to image_size */
	const clip_preprocess_cfg siglip = { .mode = CLIP_RESIZE_SQUASH,
		.resample = CLIP_RESAMPLE_BICUBIC, .shortest_edge = 224,
		.crop_width = 224, .crop_height = 224,
		.mean = { 0.5f, 0.5f, 0.5f }, .std = { 0.5f, 0.5f, 0.5f } };
	char json[1024];
	clip_preprocess_cfg c = siglip;
	snprintf(json, sizeof(json), siglip_pp, 2, 384, 256);
	parse_expect(json, &c, 0, NULL);
	assert_int_equal(c.mode, CLIP_RESIZE_SQUASH);
	assert_int_equal(c.resample, CLIP_RESAMPLE_BILINEAR);
	assert_int_equal(c.crop_width, 256);
	assert_int_equal(c.crop_height, 384);
	assert_true(c.mean[1] == 0.5f && c.std[2] == 0.5f);
	assert_int_equal(clip_preprocess_min_short(&c), 384);

	c = siglip;
	snprintf(json, sizeof(json), siglip_pp, 3, 224, 224);
	parse_expect(json, &c, 0, NULL);
	assert_memory_equal(&c, &siglip, sizeof(c));

	/* what HF's SiglipImageProcessor ignores or reads differently */
	c = siglip;
	parse_expect("{\"crop_size\": {\"height\": 100, \"width\": 100},"
	    " \"do_center_crop\": false, \"image_mean\": 0.25}", &c, 0, NULL);
	assert_int_equal(c.crop_width, 224);
	assert_true(c.mean[0] == 0.25f && c.mean[2] == 0.25f);
	c = siglip;
	parse_expect("{\"size\": 384}", &c, CDX_EFORMAT, "size");
	parse_expect("{\"size\": {\"shortest_edge\": 384}}", &c, CDX_EFORMAT,
	    "\"height\", \"width\"");
	parse_expect("{\"size\": {\"height\": 384}}", &c, CDX_EFORMAT, "size");

	/* unsupported values */
	parse_expect("{\"resample\": 1}", &c, CDX_EFORMAT, "resample");
	parse_expect("{\"resample\": 0}", &c, CDX_EFORMAT, "resample");
	parse_expect("{\"resample\": 2.5}", &c, CDX_EFORMAT, "resample");
	parse_expect("{\"resample\": \"bicubic\"}", &c, CDX_EFORMAT,
	    "resample");
	parse_expect("{\"do_resize\": false}", &c, CDX_EFORMAT, "do_resize");
	parse_expect("{\"do_rescale\": false}", &c, CDX_EFORMAT, "do_rescale");
	parse_expect("{\"do_normalize\": false}", &c, CDX_EFORMAT,
	    "do_normalize");
	parse_expect("{\"do_normalize\": \"yes\"}", &c, CDX_EFORMAT,
	    "do_normalize");
	parse_expect("{\"rescale_factor\": 1}", &c, CDX_EFORMAT,
	    "rescale_factor");
	parse_expect("{\"rescale_factor\": 0.0039}", &c, CDX_EFORMAT,
	    "rescale_factor");
	parse_expect("{\"rescale_factor\": 0.003921568627}", &c, 0, NULL);
	parse_expect("{\"rescale_factor\": null, \"resample\": null}", &c, 0,
	    NULL);
	parse_expect("{\"image_std\": [0.5, 0, 0.5]}", &c, CDX_EFORMAT,
	    "image_std");
	parse_expect("{\"image_mean\": [0.5, 0.5]}", &c, CDX_EFORMAT,
	    "image_mean");
	assert_memory_equal(&c, &siglip, sizeof(c));

	/* CLIP's mode: size is the shortest edge, crop_size the output */
	const clip_preprocess_cfg clip = { .mode = CLIP_RESIZE_SHORTEST_CROP,
		.resample = CLIP_RESAMPLE_BICUBIC, .shortest_edge = 224,
		.crop_width = 224, .crop_height = 224,
		.mean = { 0.48145466f, 0.4578275f, 0.40821073f },
		.std = { 0.26862954f, 0.26130258f, 0.27577711f } };
	c = clip;
	parse_expect("{\"size\": {\"shortest_edge\": 336}, \"crop_size\":"
	    " {\"height\": 336, \"width\": 300}, \"resample\": 2,"
	    " \"do_center_crop\": true, \"do_convert_rgb\": true}", &c, 0,
	    NULL);
	assert_int_equal(c.mode, CLIP_RESIZE_SHORTEST_CROP);
	assert_int_equal(c.resample, CLIP_RESAMPLE_BILINEAR);
	assert_int_equal(c.shortest_edge, 336);
	assert_int_equal(c.crop_width, 300);
	assert_int_equal(c.crop_height, 336);
	assert_int_equal(clip_preprocess_min_short(&c), 336);
	c = clip;
	parse_expect("{\"do_center_crop\": false}", &c, CDX_EFORMAT,
	    "do_center_crop");
	parse_expect("{\"resample\": 4}", &c, CDX_EFORMAT, "resample");
}

/* ---- probe ---------------------------------------------------------- */

static void
check_info(char **f, int n, void *ctx)
{
	int *failures = ctx;
	size_t len;
	clip_image_info info;
	cdx_error err = { 0, "" };
	assert_int_equal(n, 7);
	uint8_t *data = read_all(f[1], &len);
	int rc = clip_image_probe(data, len, &info, &err);
	if (rc != 0)
		fail_msg("%s: %s", f[1], err.msg);
	int64_t t = strcmp(f[6], "none") == 0 ? INT64_MIN : atoll(f[6]);
	if (info.format != atoi(f[2]) || info.width != atoi(f[3]) ||
	    info.height != atoi(f[4]) || info.orientation != atoi(f[5]) ||
	    info.capture_time != t) {
		print_error("%s: format %d, %d x %d, orientation %d, time %lld;"
		    " want %s %s x %s %s %s\n", f[1], info.format, info.width,
		    info.height, info.orientation,
		    (long long)info.capture_time, f[2], f[3], f[4], f[5], f[6]);
		(*failures)++;
	}
	/* decoding reports the same facts and the displayed size */
	clip_image img;
	assert_int_equal(clip_image_decode(data, len, NULL, &img, NULL), 0);
	assert_memory_equal(&img.info, &info, sizeof(info));
	assert_int_equal(img.width, info.width);
	assert_int_equal(img.height, info.height);
	clip_image_free(&img);
	free(data);
}

static void
test_probe_info(void **state)
{
	int failures = 0;
	(void)state;
	assert_true(for_each("info", check_info, &failures) >= 20);
	assert_int_equal(failures, 0);
}

static void
test_exif_and_xmp_parsers(void **state)
{
	(void)state;
	const char *s = "2021:05:06 07:08:09";
	assert_true(clip_exif_parse_datetime(s, 19) == 1620284889);
	assert_true(clip_exif_parse_datetime("2021:05:06 07:08:09\0", 20) ==
	    1620284889);
	assert_true(clip_exif_parse_datetime("1970:01:01 00:00:00", 19) == 0);
	assert_true(clip_exif_parse_datetime("2000:02:29 12:00:00", 19) ==
	    951825600);
	assert_true(clip_exif_parse_datetime("2001:02:29 12:00:00", 19) ==
	    INT64_MIN);
	assert_true(clip_exif_parse_datetime("0000:00:00 00:00:00", 19) ==
	    INT64_MIN);
	assert_true(clip_exif_parse_datetime("2021-05-06 07:08:09", 19) ==
	    INT64_MIN);
	assert_true(clip_exif_parse_datetime("2021:05:06 07:08", 16) ==
	    INT64_MIN);
	assert_true(clip_exif_parse_datetime("2021:05:06 24:08:09", 19) ==
	    INT64_MIN);
	assert_true(clip_exif_parse_datetime("2021:05:06 07:08:09xyz", 22) ==
	    INT64_MIN);
	int o;
	int64_t t;
	clip_exif_read(NULL, 0, &o, &t);
	assert_int_equal(o, 1);
	assert_true(t == INT64_MIN);
	clip_exif_read((const uint8_t *)"Exif\0\0MM\0*\0\0\0\x08\xff\xff", 16,
	    &o, &t);
	assert_int_equal(o, 1);

	/* XMP: the first tiff:Orientation followed by =" or > and a digit */
	const char *x = "<a tiff:Orientation=\"7\"/>";
	assert_int_equal(clip_xmp_orientation(x, strlen(x)), 7);
	x = "<tiff:Orientation>3</tiff:Orientation>";
	assert_int_equal(clip_xmp_orientation(x, strlen(x)), 3);
	x = "tiff:Orientation=5 tiff:Orientation>2";
	assert_int_equal(clip_xmp_orientation(x, strlen(x)), 2);
	x = "tiff:Orientation=\"";
	assert_int_equal(clip_xmp_orientation(x, strlen(x)), 0);
	x = "tiff:Orientation=\"6";
	assert_int_equal(clip_xmp_orientation(x, strlen(x) - 1), 0);
	assert_int_equal(clip_xmp_orientation(NULL, 0), 0);
}

/* ---- bad input -------------------------------------------------------- */

static void
check_error(char **f, int n, void *ctx)
{
	int *failures = ctx;
	char path[512];
	clip_image img = { 0, 0, NULL, { 0, 0, 0, 0, 0 } };
	cdx_error err = { 0, "" };
	assert_int_equal(n, 3);
	int want = strcmp(f[2], "ETOOBIG") == 0 ? CDX_ETOOBIG : CDX_EFORMAT;
	snprintf(path, sizeof(path), FIX "%s", f[1]);
	int rc = clip_image_load(path, NULL, &img, &err);
	if (rc != want || err.code != want || strlen(err.msg) < 10 ||
	    strstr(err.msg, f[1]) == NULL || img.rgb != NULL) {
		print_error("%s: got %d (%s), want %s\n", f[1], rc, err.msg,
		    f[2]);
		(*failures)++;
	}
}

static void
test_bad_inputs_clear_errors(void **state)
{
	int failures = 0;
	(void)state;
	assert_true(for_each("error", check_error, &failures) >= 10);
	assert_int_equal(failures, 0);

	/* the probe reads headers only: a truncated file's header is fine */
	size_t len;
	clip_image_info info;
	uint8_t *data = read_all("trunc.jpg", &len);
	assert_int_equal(clip_image_probe(data, len, &info, NULL), 0);
	assert_int_equal(info.width, 48);
	free(data);
	data = read_all("text.jpg", &len);
	cdx_error err = { 0, "" };
	assert_int_equal(clip_image_probe(data, len, &info, &err), CDX_EFORMAT);
	assert_non_null(strstr(err.msg, "not an image clipdex reads"));
	free(data);
}

static void
test_limits(void **state)
{
	(void)state;
	size_t len;
	clip_image img;
	clip_image_info info;
	cdx_error err = { 0, "" };

	/* the probe reports the claimed size; decoding refuses it with the
	 * dimensions in the message, without trying to allocate 10.8 GB */
	uint8_t *data = read_all("huge.jpg", &len);
	assert_int_equal(clip_image_probe(data, len, &info, NULL), 0);
	assert_int_equal(info.width, 60000);
	assert_int_equal(info.height, 60000);
	assert_int_equal(clip_image_decode(data, len, NULL, &img, &err),
	    CDX_ETOOBIG);
	assert_non_null(strstr(err.msg, "60000 x 60000"));
	free(data);

	/* a configured limit: 48 x 32 = 1536 pixels */
	data = read_all("j_base.jpg", &len);
	clip_decode_opts o = { .max_pixels = 1535 };
	assert_int_equal(clip_image_decode(data, len, &o, &img, &err),
	    CDX_ETOOBIG);
	o.max_pixels = 1536;
	CDX_ASSERT_OK(clip_image_decode(data, len, &o, &img, &err), err.msg);
	clip_image_free(&img);
	free(data);
	data = read_all("p_rgb.png", &len); /* 33 x 21 = 693 */
	o.max_pixels = 692;
	assert_int_equal(clip_image_decode(data, len, &o, &img, &err),
	    CDX_ETOOBIG);
	free(data);
}

static void
test_load_errors(void **state)
{
	(void)state;
	clip_image img;
	cdx_error err = { 0, "" };
	assert_int_equal(clip_image_load(FIX "no-such-file.jpg", NULL, &img,
	    &err), CDX_ENOTFOUND);
	assert_non_null(strstr(err.msg, "no-such-file.jpg"));
	assert_int_equal(clip_image_load(FIX "j_base.jpg/x", NULL, &img, &err),
	    CDX_ENOTFOUND);
	assert_int_equal(clip_image_load(FIX, NULL, &img, &err), CDX_EIO);
	assert_non_null(strstr(err.msg, "not a regular file"));
	assert_int_equal(clip_image_load(NULL, NULL, &img, &err), CDX_EINVAL);
	assert_int_equal(clip_image_decode(NULL, 0, NULL, &img, &err),
	    CDX_EFORMAT);
	assert_non_null(strstr(err.msg, "empty"));

	/* a file we may not read (as root, permissions do not apply) */
	char path[] = "/tmp/cdx_image_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "\xff\xd8\xff", 3), 3);
	close(fd);
	chmod(path, 0);
	int rc = clip_image_load(path, NULL, &img, &err);
	assert_int_equal(rc, geteuid() == 0 ? CDX_EFORMAT : CDX_EPERM);
	unlink(path);

	clip_image_free(NULL);
	clip_image empty = { 0, 0, NULL, { 0, 0, 0, 0, 0 } };
	clip_image_free(&empty);
}

/* ---- fast mode --------------------------------------------------------- */

/* Smallest M in 1..8 with ceil(short * M / 8) >= min_short (8 if none). */
static int
expected_m(int w, int h, int min_short)
{
	int s = w < h ? w : h;
	for (int m = 1; m <= 8; m++)
		if ((s * m + 7) / 8 >= min_short)
			return m;
	return 8;
}

static double
crop_diff(const clip_image *a, const clip_image *b, int se, int c,
    int *maxd)
{
	int aw, ah, bw, bh;
	uint8_t *ca = malloc((size_t)c * c * 3), *cb = malloc((size_t)c * c * 3);
	assert_int_equal(clip_resize_dims(a->width, a->height, se, &aw, &ah), 0);
	assert_int_equal(clip_resize_dims(b->width, b->height, se, &bw, &bh), 0);
	assert_int_equal(clip_resize_crop(a->rgb, a->width, a->height, aw, ah,
	    c, c, CLIP_RESAMPLE_BICUBIC, ca, NULL), 0);
	assert_int_equal(clip_resize_crop(b->rgb, b->width, b->height, bw, bh,
	    c, c, CLIP_RESAMPLE_BICUBIC, cb, NULL), 0);
	double sum = 0;
	*maxd = 0;
	for (size_t i = 0; i < (size_t)c * c * 3; i++) {
		int d = abs((int)ca[i] - (int)cb[i]);
		sum += d;
		if (d > *maxd)
			*maxd = d;
	}
	free(ca);
	free(cb);
	return sum / ((double)c * c * 3);
}

static void
test_fast_mode(void **state)
{
	(void)state;
	clip_image exact, fast;
	static const char *names[] = { "j_big.jpg", "j_orient6.jpg",
		"j_prog.jpg", "j_cmyk.jpg" };
	static const int shorts[] = { 1, 8, 12, 30, 64, 90, 91, 200, 240, 500 };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		load_ok(names[i], NULL, &exact);
		for (size_t j = 0; j < sizeof(shorts) / sizeof(shorts[0]); j++) {
			clip_decode_opts o = { .min_short = shorts[j] };
			load_ok(names[i], &o, &fast);
			int m = expected_m(exact.width, exact.height, shorts[j]);
			assert_int_equal(fast.width, (exact.width * m + 7) / 8);
			assert_int_equal(fast.height, (exact.height * m + 7) / 8);
			assert_memory_equal(&fast.info, &exact.info,
			    sizeof(exact.info));
			if (m == 8)
				assert_memory_equal(fast.rgb, exact.rgb,
				    (size_t)exact.width * exact.height * 3);
			clip_image_free(&fast);
		}
		clip_image_free(&exact);
	}

	/* pixels: fast vs exact crop of the 320 x 240 photo at 64 and 224 */
	load_ok("j_big.jpg", NULL, &exact);
	clip_decode_opts o = { .min_short = 64 };
	load_ok("j_big.jpg", &o, &fast);
	assert_int_equal(fast.width, 120); /* 3/8 */
	int maxd;
	double mean = crop_diff(&exact, &fast, 64, 64, &maxd);
	print_message("fast mode (3/8 scale) vs exact, 64 crop: mean |diff| "
	    "%.3f, max %d\n", mean, maxd);
	assert_true(mean < 2.0);
	assert_true(maxd < 48);
	clip_image_free(&fast);
	clip_image_free(&exact);

	/* PNGs are always decoded at full size */
	load_ok("p_rgb.png", &o, &fast);
	assert_int_equal(fast.width, 33);
	clip_image_free(&fast);
}


/* ---- fast mode: progressive JPEGs decode only the scans they need -------- */

/* Photo-like pixels (gradients, edges, noise) so that every coefficient of
 * every component is nonzero somewhere; nc = 1, 3 or 4 channels. */
static uint8_t *
photo_pixels(int w, int h, int nc, uint32_t seed)
{
	uint8_t *px = malloc((size_t)w * h * nc);
	assert_non_null(px);
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++)
			for (int c = 0; c < nc; c++) {
				seed = seed * 1664525u + 1013904223u;
				double fx = (double)x / w, fy = (double)y / h;
				double v = 128 + 80 * sin(fx * (9 + 4 * c) +
				    fy * 5) * cos(fy * (7 + c)) +
				    ((x / 13 + y / 11 + c) % 3 == 0 ? 30 : 0) +
				    (double)(seed >> 27) - 16;
				px[((size_t)y * w + x) * nc + c] =
				    (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
			}
	return px;
}

/* A progressive JPEG from TurboJPEG (libjpeg's simple progression: 10
 * scans for 3 components, 6 for gray); pf TJPF_RGB, TJPF_GRAY or
 * TJPF_CMYK.  Free with tjFree(). */
static uint8_t *
tj_progressive(int w, int h, int pf, int samp, size_t *len)
{
	int nc = tjPixelSize[pf];
	uint8_t *px = photo_pixels(w, h, nc, (uint32_t)(w * 31 + h));
	unsigned char *jpeg = NULL;
	unsigned long n = 0;
	tjhandle tj = tjInitCompress();
	assert_non_null(tj);
	assert_int_equal(tjCompress2(tj, px, w, 0, h, pf, &jpeg, &n, samp, 90,
	    TJFLAG_PROGRESSIVE), 0);
	tjDestroy(tj);
	free(px);
	*len = n;
	return jpeg;
}

/* A JPEG written by the libjpeg API with the given scan script: gray
 * (nc 1) or YCbCr (nc 3) with luma sampled hv x hv, a restart marker
 * every `restart` MCUs (0: none).  Free with free(). */
static uint8_t *
scripted_jpeg_rst(int w, int h, int nc, int hv, const jpeg_scan_info *script,
    int nscans, int restart, size_t *len)
{
	struct jpeg_compress_struct c;
	struct jpeg_error_mgr e;
	unsigned char *out = NULL;
	unsigned long n = 0;
	uint8_t *px = photo_pixels(w, h, nc, (uint32_t)(w + nscans));
	c.err = jpeg_std_error(&e);
	jpeg_create_compress(&c);
	jpeg_mem_dest(&c, &out, &n);
	c.image_width = (JDIMENSION)w;
	c.image_height = (JDIMENSION)h;
	c.input_components = nc;
	c.in_color_space = nc == 1 ? JCS_GRAYSCALE : JCS_RGB;
	jpeg_set_defaults(&c);
	jpeg_set_quality(&c, 92, TRUE);
	if (nc == 3) {
		c.comp_info[0].h_samp_factor = c.comp_info[0].v_samp_factor = hv;
		for (int i = 1; i < 3; i++)
			c.comp_info[i].h_samp_factor =
			    c.comp_info[i].v_samp_factor = 1;
	}
	c.scan_info = script;
	c.num_scans = nscans;
	c.restart_interval = (unsigned)restart;
	jpeg_start_compress(&c, TRUE);
	while (c.next_scanline < c.image_height) {
		JSAMPROW row = px + (size_t)c.next_scanline * w * nc;
		jpeg_write_scanlines(&c, &row, 1);
	}
	jpeg_finish_compress(&c);
	jpeg_destroy_compress(&c);
	free(px);
	*len = n;
	return out;
}

static uint8_t *
scripted_jpeg(int w, int h, int nc, int hv, const jpeg_scan_info *script,
    int nscans, size_t *len)
{
	return scripted_jpeg_rst(w, h, nc, hv, script, nscans, 0, len);
}

/* Decodes in fast mode with scan skipping on and off: the same outcome,
 * the same pixels; returns how many scans the skipping decode used (and
 * the file's count in *total). */
static int
skip_vs_full(const uint8_t *data, size_t len, int min_short, int *total)
{
	clip_decode_opts o = { .min_short = min_short };
	clip_image a, b;
	cdx_error ea = { 0, "" }, eb = { 0, "" };
	int tf, df, ts, ds;
	clip_decode_opts all = o;
	all.all_scans = 1;
	int ra = clip_image_decode(data, len, &all, &a, &ea);
	clip_jpeg_last_scans(&tf, &df);
	int rb = clip_image_decode(data, len, &o, &b, &eb);
	clip_jpeg_last_scans(&ts, &ds);
	assert_int_equal(ra, rb);
	assert_int_equal(tf, df); /* without skipping, every scan */
	assert_int_equal(ts, tf);
	*total = ts;
	if (ra != 0) {
		assert_int_equal(ds, ts);
		assert_string_equal(ea.msg, eb.msg);
		return ds;
	}
	assert_int_equal(a.width, b.width);
	assert_int_equal(a.height, b.height);
	assert_memory_equal(&a.info, &b.info, sizeof(a.info));
	assert_memory_equal(a.rgb, b.rgb, (size_t)a.width * a.height * 3);
	clip_image_free(&a);
	clip_image_free(&b);
	return ds;
}

static void
test_progressive_skip_equals_full(void **state)
{
	(void)state;
	static const struct {
		int w, h, pf, samp;
		int scans_at_1_8;  /* decoded at 1/8 scale, of 10 (6 gray) */
	} cases[] = {
		/* 4:2:0: chroma uses the 2x2 IDCT at 1/8 (its AC is
		 * needed), luma only the DC */
		{ 1000, 750, TJPF_RGB, TJSAMP_420, 6 },
		{ 999, 751, TJPF_RGB, TJSAMP_420, 6 },
		{ 1000, 750, TJPF_RGB, TJSAMP_444, 2 },
		{ 1000, 750, TJPF_RGB, TJSAMP_422, 2 },
		{ 777, 333, TJPF_GRAY, TJSAMP_GRAY, 2 },
		/* YCCK, 18 scans: Y and K need their DC only */
		{ 640, 480, TJPF_CMYK, TJSAMP_420, 10 },
		{ 17, 9, TJPF_RGB, TJSAMP_420, 6 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len;
		uint8_t *jpeg = tj_progressive(cases[i].w, cases[i].h,
		    cases[i].pf, cases[i].samp, &len);
		int total, s = cases[i].w < cases[i].h ? cases[i].w : cases[i].h;
		char line[128];
		int at = snprintf(line, sizeof(line), "%dx%d pf %d samp %d, "
		    "scans decoded at 1/8..8/8:", cases[i].w, cases[i].h,
		    cases[i].pf, cases[i].samp);
		for (int m = 1; m <= 8; m++) {
			/* min_short that selects scale m/8 */
			int ms = (s * m + 7) / 8;
			int used = skip_vs_full(jpeg, len, ms, &total);
			assert_int_equal(total, cases[i].pf == TJPF_GRAY ? 6 :
			    cases[i].pf == TJPF_CMYK ? 18 : 10);
			at += snprintf(line + at, sizeof(line) - (size_t)at,
			    " %d", used);
			if (m == 1 && expected_m(cases[i].w, cases[i].h, ms) == 1)
				assert_int_equal(used, cases[i].scans_at_1_8);
			else /* standard scripts: nothing to skip */
				assert_int_equal(used, total);
		}
		print_message("%s of %d\n", line, total);
		/* exact mode is untouched: every scan */
		clip_image img;
		int t, d;
		assert_int_equal(clip_image_decode(jpeg, len, NULL, &img, NULL),
		    0);
		clip_jpeg_last_scans(&t, &d);
		assert_int_equal(d, t);
		clip_image_free(&img);
		tjFree(jpeg);
	}
}

/* Inserts an APP1 EXIF segment with the given orientation after SOI. */
static uint8_t *
with_orientation(const uint8_t *jpeg, size_t len, int o, size_t *out_len)
{
	static const uint8_t app1[] = {
		0xFF, 0xE1, 0x00, 0x22, 'E', 'x', 'i', 'f', 0, 0,
		'M', 'M', 0, 42, 0, 0, 0, 8,
		0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0,
		0, 0, 0, 0,
	};
	uint8_t *d = malloc(len + sizeof(app1));
	assert_non_null(d);
	memcpy(d, jpeg, 2);
	memcpy(d + 2, app1, sizeof(app1));
	d[2 + 29] = (uint8_t)o; /* the SHORT's low byte */
	memcpy(d + 2 + sizeof(app1), jpeg + 2, len - 2);
	*out_len = len + sizeof(app1);
	return d;
}

static void
test_progressive_skip_orientation_and_limits(void **state)
{
	(void)state;
	size_t len, olen;
	uint8_t *jpeg = tj_progressive(800, 600, TJPF_RGB, TJSAMP_420, &len);
	uint8_t *o6 = with_orientation(jpeg, len, 6, &olen);
	int total;
	assert_int_equal(skip_vs_full(o6, olen, 75, &total), 6);
	clip_decode_opts o = { .min_short = 75 };
	clip_image img;
	assert_int_equal(clip_image_decode(o6, olen, &o, &img, NULL), 0);
	assert_int_equal(img.info.orientation, 6);
	assert_int_equal(img.width, 75);   /* 600 / 8, turned upright */
	assert_int_equal(img.height, 100);
	clip_image_free(&img);

	/* max_pixels applies to the full size, before any scan is read */
	cdx_error err = { 0, "" };
	o.max_pixels = 800 * 600 - 1;
	assert_int_equal(clip_image_decode(jpeg, len, &o, &img, &err),
	    CDX_ETOOBIG);
	assert_non_null(strstr(err.msg, "800 x 600"));
	free(o6);
	tjFree(jpeg);
}

static void
test_progressive_skip_rule(void **state)
{
	(void)state;
	/* Spectral selection only, gray: which bands each IDCT size reads.
	 * Zigzag 3 = (2,0), 5 = (0,2), 10 = (4,0), 14 = (0,4). */
	static const jpeg_scan_info bands[] = {
		{ 1, { 0 }, 0, 0, 0, 0 }, { 1, { 0 }, 1, 2, 0, 0 },
		{ 1, { 0 }, 3, 3, 0, 0 }, { 1, { 0 }, 4, 4, 0, 0 },
		{ 1, { 0 }, 5, 5, 0, 0 }, { 1, { 0 }, 6, 9, 0, 0 },
		{ 1, { 0 }, 10, 10, 0, 0 }, { 1, { 0 }, 11, 13, 0, 0 },
		{ 1, { 0 }, 14, 14, 0, 0 }, { 1, { 0 }, 15, 63, 0, 0 },
	};
	/* scans decoded at m/8 (512 x 384: min_short 48 m selects m/8):
	 * 1x1 reads the DC; 2x2 (jidctred.c) rows/columns 0,1,3,5,7, so not
	 * bands 3, 5, 10, 14; 3x3 the top-left 3x3 (zigzag <= 12); 4x4 all
	 * but row/column 4 (not 10, 14); 5x5 and up every band */
	static const int want[9] = { 0, 1, 6, 7, 8, 10, 10, 10, 10 };
	size_t len;
	int total;
	uint8_t *jpeg = scripted_jpeg(512, 384, 1, 1, bands, 10, &len);
	for (int m = 1; m <= 8; m++)
		assert_int_equal(skip_vs_full(jpeg, len, 48 * m, &total),
		    want[m]);
	free(jpeg);
	/* the same with restart markers inside every scan */
	jpeg = scripted_jpeg_rst(512, 384, 1, 1, bands, 10, 5, &len);
	assert_non_null(memmem(jpeg, len, "\xff\xdd", 2)); /* DRI */
	assert_non_null(memmem(jpeg, len, "\xff\xd7", 2)); /* RST7 */
	for (int m = 1; m <= 8; m++)
		assert_int_equal(skip_vs_full(jpeg, len, 48 * m, &total),
		    want[m]);
	free(jpeg);

	/* 4:2:0 colour: at 1/8 luma needs its DC, chroma (2x2 IDCT) all but
	 * zigzag 3 and 5 */
	static const jpeg_scan_info chroma[] = {
		{ 3, { 0, 1, 2 }, 0, 0, 0, 0 }, { 1, { 0 }, 1, 63, 0, 0 },
		{ 1, { 1 }, 1, 2, 0, 0 }, { 1, { 1 }, 3, 3, 0, 0 },
		{ 1, { 1 }, 4, 63, 0, 0 }, { 1, { 2 }, 1, 2, 0, 0 },
		{ 1, { 2 }, 3, 3, 0, 0 }, { 1, { 2 }, 4, 63, 0, 0 },
	};
	jpeg = scripted_jpeg(640, 480, 3, 2, chroma, 8, &len);
	assert_int_equal(skip_vs_full(jpeg, len, 60, &total), 5);
	assert_int_equal(total, 8);
	assert_int_equal(skip_vs_full(jpeg, len, 120, &total), 8);
	free(jpeg);

	/* Successive approximation, gray, at 3/8 (zigzag <= 12 needed).
	 * Refinements per band: the 15-63 scans are skipped. */
	static const jpeg_scan_info split[] = {
		{ 1, { 0 }, 0, 0, 0, 1 }, { 1, { 0 }, 1, 14, 0, 1 },
		{ 1, { 0 }, 15, 63, 0, 1 }, { 1, { 0 }, 0, 0, 1, 0 },
		{ 1, { 0 }, 1, 14, 1, 0 }, { 1, { 0 }, 15, 63, 1, 0 },
	};
	jpeg = scripted_jpeg(512, 384, 1, 1, split, 6, &len);
	assert_int_equal(skip_vs_full(jpeg, len, 144, &total), 4);
	assert_int_equal(skip_vs_full(jpeg, len, 48, &total), 2);
	free(jpeg);
	/* One refinement over 1-63: parsing it needs the history of the
	 * whole band, so the 15-63 first pass is needed too: nothing is
	 * skipped at 3/8 (only the AC at 1/8). */
	static const jpeg_scan_info joint[] = {
		{ 1, { 0 }, 0, 0, 0, 1 }, { 1, { 0 }, 1, 14, 0, 1 },
		{ 1, { 0 }, 15, 63, 0, 1 }, { 1, { 0 }, 0, 0, 1, 0 },
		{ 1, { 0 }, 1, 63, 1, 0 },
	};
	jpeg = scripted_jpeg(512, 384, 1, 1, joint, 5, &len);
	assert_int_equal(skip_vs_full(jpeg, len, 144, &total), 5);
	assert_int_equal(skip_vs_full(jpeg, len, 48, &total), 2);
	free(jpeg);
	/* A file that leaves coefficients incomplete (Al = 1 at the end):
	 * a full decode smooths blocks there, so it is decoded in full. */
	static const jpeg_scan_info partial[] = {
		{ 1, { 0 }, 0, 0, 0, 0 }, { 1, { 0 }, 1, 63, 0, 1 },
	};
	jpeg = scripted_jpeg(512, 384, 1, 1, partial, 2, &len);
	assert_int_equal(skip_vs_full(jpeg, len, 48, &total), 2);
	free(jpeg);
}

/* Offset of the n-th SOS marker (0-based), or 0. */
static size_t
nth_sos(const uint8_t *d, size_t len, int n)
{
	for (size_t p = 2; p + 1 < len; p++)
		if (d[p] == 0xFF && d[p + 1] == 0xDA && n-- == 0)
			return p;
	return 0;
}

static void
test_progressive_skip_damage(void **state)
{
	(void)state;
	size_t len;
	int total;
	clip_image img;
	cdx_error err = { 0, "" };
	/* scans: 0 DC, 1 Y 1-5, 2 Cr, 3 Cb, 4 Y 6-63, 5 Y refine, 6 DC refine,
	 * 7 Cr, 8 Cb, 9 Y refine; at 1/8 scans 1, 4, 5, 9 are skipped */
	uint8_t *jpeg = tj_progressive(1000, 750, TJPF_RGB, TJSAMP_420, &len);
	uint8_t *copy = malloc(len + 8000);
	assert_non_null(copy);

	/* Truncated anywhere (no EOI): CDX_EFORMAT in both modes, also
	 * inside a scan that would be skipped. */
	size_t cuts[] = { nth_sos(jpeg, len, 1) + 40, nth_sos(jpeg, len, 6) +
		100, nth_sos(jpeg, len, 9) + 5000, len - 2 };
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		for (int ms = 0; ms <= 94; ms += 94) {
			clip_decode_opts o = { .min_short = ms };
			assert_int_equal(clip_image_decode(jpeg, cuts[i], &o,
			    &img, &err), CDX_EFORMAT);
			assert_non_null(strstr(err.msg, "truncated"));
		}
	}

	/* Garbage inside a scan that is decoded: the same bytes are parsed
	 * the same way, so the same pixels. */
	memcpy(copy, jpeg, len);
	size_t dc = nth_sos(jpeg, len, 0) + 30;
	memset(copy + dc, 0xA5, 200);
	assert_int_equal(skip_vs_full(copy, len, 94, &total), 6);
	/* A stray marker there: libjpeg warns, so the file is decoded in
	 * full, as before. */
	memcpy(copy, jpeg, len);
	copy[dc] = 0xFF;
	copy[dc + 1] = 0xD5;
	assert_int_equal(skip_vs_full(copy, len, 94, &total), 10);

	/* Damage inside a skipped scan: the scaled decode never reads it
	 * and the pixels still equal the full decode's. */
	memcpy(copy, jpeg, len);
	size_t y9 = nth_sos(jpeg, len, 9) + 3000;
	memset(copy + y9, 0x5A, 500);
	assert_int_equal(skip_vs_full(copy, len, 94, &total), 6);

	/* More than 500 scans: refused as before, in both modes. */
	size_t last = nth_sos(jpeg, len, 9), eoi = len - 2;
	uint8_t *many = malloc(len + 500 * 20);
	assert_non_null(many);
	memcpy(many, jpeg, last);
	size_t n = last;
	/* 491 copies of the DC refinement scan's header with no data */
	size_t dcr = nth_sos(jpeg, len, 6);
	size_t hdr = 2 + ((size_t)jpeg[dcr + 2] << 8 | jpeg[dcr + 3]);
	for (int i = 0; i < 491; i++) {
		memcpy(many + n, jpeg + dcr, hdr);
		n += hdr;
	}
	memcpy(many + n, jpeg + last, eoi + 2 - last);
	n += eoi + 2 - last;
	for (int ms = 0; ms <= 94; ms += 94) {
		clip_decode_opts o = { .min_short = ms };
		assert_int_equal(clip_image_decode(many, n, &o, &img, &err),
		    CDX_EFORMAT);
		assert_non_null(strstr(err.msg, "500 scans"));
	}
	free(many);

	/* Random damage: never a crash, and the two decodes agree on the
	 * outcome wherever a decoded scan is hit. */
	srand(99);
	for (int trial = 0; trial < 200; trial++) {
		memcpy(copy, jpeg, len);
		int flips = 1 + rand() % 6;
		for (int i = 0; i < flips; i++)
			copy[rand() % len] = (uint8_t)rand();
		clip_decode_opts o = { .max_pixels = 1u << 22,
			.min_short = 50 + trial % 60 };
		int rc = clip_image_decode(copy, len, &o, &img, &err);
		if (rc == 0) {
			assert_true(img.width > 0 && img.height > 0);
			clip_image_free(&img);
		} else {
			assert_true(rc == CDX_EFORMAT || rc == CDX_ETOOBIG);
		}
	}
	free(copy);
	tjFree(jpeg);
}

struct skip_worker {
	const uint8_t *data;
	size_t len;
	const clip_image *want;
	int bad;
};

static void *
skip_worker_run(void *arg)
{
	struct skip_worker *w = arg;
	clip_decode_opts o = { .min_short = 94 };
	for (int i = 0; i < 10; i++) {
		clip_image img;
		int total, used;
		if (clip_image_decode(w->data, w->len, &o, &img, NULL) != 0) {
			w->bad++;
			continue;
		}
		clip_jpeg_last_scans(&total, &used);
		if (total != 10 || used != 6 || img.width != w->want->width ||
		    img.height != w->want->height || memcmp(img.rgb,
		    w->want->rgb, (size_t)img.width * img.height * 3) != 0)
			w->bad++;
		clip_image_free(&img);
	}
	return NULL;
}

static void
test_progressive_skip_threads(void **state)
{
	(void)state;
	size_t len;
	uint8_t *jpeg = tj_progressive(1000, 750, TJPF_RGB, TJSAMP_420, &len);
	clip_image want;
	clip_decode_opts all = { .min_short = 94, .all_scans = 1 };
	assert_int_equal(clip_image_decode(jpeg, len, &all, &want, NULL), 0);
	struct skip_worker w[4];
	pthread_t t[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (struct skip_worker){ jpeg, len, &want, 0 };
		assert_int_equal(pthread_create(&t[i], NULL, skip_worker_run,
		    &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].bad, 0);
	}
	clip_image_free(&want);
	tjFree(jpeg);
}

/* ---- robustness --------------------------------------------------------- */

static void
test_truncations_and_mutations_never_crash(void **state)
{
	(void)state;
	size_t len;
	clip_image img;
	cdx_error err;
	static const char *names[] = { "j_base.jpg", "j_prog.jpg",
		"j_orient6.jpg", "p_rgb.png", "p_interlaced16.png", "p_pal4.png",
		"p_orient6.png", "j_cmyk.jpg" };
	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		uint8_t *data = read_all(names[k], &len);
		int is_jpeg = data[0] == 0xFF;
		for (size_t cut = 0; cut < len; cut++) {
			uint8_t *copy = malloc(cut + 1);
			memcpy(copy, data, cut);
			int rc = clip_image_decode(copy, cut, NULL, &img, &err);
			if (rc == 0) {
				/* a PNG may end after its last IDAT */
				assert_false(is_jpeg);
				clip_image_free(&img);
			} else {
				assert_int_equal(rc, CDX_EFORMAT);
			}
			free(copy);
		}
		srand(1234 + (unsigned)k);
		for (int trial = 0; trial < 300; trial++) {
			uint8_t *copy = malloc(len);
			memcpy(copy, data, len);
			int flips = 1 + rand() % 8;
			for (int i = 0; i < flips; i++)
				copy[rand() % len] = (uint8_t)rand();
			clip_decode_opts o = { .max_pixels = 1u << 22,
				.min_short = trial % 2 ? 16 : 0 };
			int rc = clip_image_decode(copy, len, &o, &img, &err);
			if (rc == 0) {
				assert_true(img.width > 0 && img.height > 0);
				clip_image_free(&img);
			} else {
				assert_true(rc == CDX_EFORMAT ||
				    rc == CDX_ETOOBIG);
			}
			free(copy);
		}
		free(data);
	}
}

/* ---- reentrancy ----------------------------------------------------------- */

struct worker {
	const uint8_t *data;
	size_t len;
	const float *want;
	int mismatches;
};

static void *
worker_run(void *arg)
{
	struct worker *w = arg;
	clip_preprocess_cfg cfg = { .resample = CLIP_RESAMPLE_BICUBIC,
		.shortest_edge = 64, .crop_width = 64, .crop_height = 48 };
	memcpy(cfg.mean, openai_mean, sizeof(cfg.mean));
	memcpy(cfg.std, openai_std, sizeof(cfg.std));
	float *out = malloc(3 * 64 * 48 * sizeof(float));
	for (int i = 0; i < 20; i++) {
		clip_image img;
		clip_decode_opts o = { .min_short = i % 2 ? 64 : 0 };
		if (clip_image_decode(w->data, w->len, &o, &img, NULL) != 0 ||
		    clip_image_preprocess(&img, &cfg, out, NULL) != 0) {
			w->mismatches++;
			continue;
		}
		if (i % 2 == 0 &&
		    memcmp(out, w->want, 3 * 64 * 48 * sizeof(float)) != 0)
			w->mismatches++;
		clip_image_free(&img);
	}
	free(out);
	return NULL;
}

static void
test_threads_share_nothing(void **state)
{
	(void)state;
	size_t len;
	uint8_t *data = read_all("j_orient6.jpg", &len);
	clip_image img;
	clip_preprocess_cfg cfg = { .resample = CLIP_RESAMPLE_BICUBIC,
		.shortest_edge = 64, .crop_width = 64, .crop_height = 48 };
	memcpy(cfg.mean, openai_mean, sizeof(cfg.mean));
	memcpy(cfg.std, openai_std, sizeof(cfg.std));
	float *want = malloc(3 * 64 * 48 * sizeof(float));
	assert_int_equal(clip_image_decode(data, len, NULL, &img, NULL), 0);
	assert_int_equal(clip_image_preprocess(&img, &cfg, want, NULL), 0);
	clip_image_free(&img);
	struct worker w[4];
	pthread_t t[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){ data, len, want, 0 };
		assert_int_equal(pthread_create(&t[i], NULL, worker_run, &w[i]),
		    0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].mismatches, 0);
	}
	free(want);
	free(data);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_equals_pillow),
		cmocka_unit_test(test_exact_crop_equals_reference),
		cmocka_unit_test(test_normalisation_equals_reference),
		cmocka_unit_test(test_preprocess_pads_and_layout),
		cmocka_unit_test(test_resize_dims_as_hf),
		cmocka_unit_test(test_modes_and_filters_equal_reference),
		cmocka_unit_test(test_siglip_normalisation_equals_reference),
		cmocka_unit_test(test_squash_layout_and_bad_cfg),
		cmocka_unit_test(test_min_short),
		cmocka_unit_test(test_preprocess_config_siglip),
		cmocka_unit_test(test_probe_info),
		cmocka_unit_test(test_exif_and_xmp_parsers),
		cmocka_unit_test(test_bad_inputs_clear_errors),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_fast_mode),
		cmocka_unit_test(test_progressive_skip_equals_full),
		cmocka_unit_test(test_progressive_skip_orientation_and_limits),
		cmocka_unit_test(test_progressive_skip_rule),
		cmocka_unit_test(test_progressive_skip_damage),
		cmocka_unit_test(test_progressive_skip_threads),
		cmocka_unit_test(test_truncations_and_mutations_never_crash),
		cmocka_unit_test(test_threads_share_nothing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
