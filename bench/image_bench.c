/*
 * image_bench - JPEG decode + preprocessing in exact and fast mode, for a
 * 12 MP and a 2 MP photo-like JPEG made in memory: CLIP's shortest side +
 * 224 centre crop, and SigLIP's squash (bicubic and bilinear at 224,
 * bicubic at 384).
 *
 * Prints the median of several runs for decode only and decode+preprocess,
 * the fast/exact ratio against the target (fast >= 5x faster than exact for
 * the 12 MP photo), and how far fast-mode pixels are from exact mode.
 * Then the same 12 MP photo saved baseline and progressive: exact mode,
 * fast mode decoding every scan ("before": clip_decode_opts.all_scans) and
 * fast mode decoding only the scans the scaled IDCT needs ("after").
 * Single-threaded, like one indexing worker.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <turbojpeg.h>

#include "encoder/clip.h"
#include "encoder/image_internal.h"

static double
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Smooth shapes plus sensor-like noise, so the JPEG has realistic entropy. */
static unsigned char *
make_jpeg(int w, int h, int flags, unsigned long *size)
{
	unsigned char *rgb = malloc((size_t)w * h * 3), *jpeg = NULL;
	uint32_t seed = 12345;
	if (rgb == NULL)
		return NULL;
	for (int y = 0; y < h; y++) {
		for (int x = 0; x < w; x++) {
			double fx = (double)x / w, fy = (double)y / h;
			double v[3] = {
				128 + 90 * sin(fx * 17 + 3 * fy) * cos(fy * 11),
				40 + 180 * fx * (0.3 + 0.7 * fy),
				128 + 100 * cos((fx + 2 * fy) * 23),
			};
			for (int c = 0; c < 3; c++) {
				seed = seed * 1664525u + 1013904223u;
				double n = (double)(seed >> 24) / 16.0 - 8.0;
				double t = v[c] + n;
				rgb[((size_t)y * w + x) * 3 + c] =
				    (unsigned char)(t < 0 ? 0 : t > 255 ? 255 : t);
			}
		}
	}
	tjhandle tj = tjInitCompress();
	if (tj == NULL || tjCompress2(tj, rgb, w, 0, h, TJPF_RGB, &jpeg, size,
	    TJSAMP_420, 90, flags) != 0) {
		fprintf(stderr, "image_bench: compress: %s\n",
		    tjGetErrorStr2(tj));
		jpeg = NULL;
	}
	tjDestroy(tj);
	free(rgb);
	return jpeg;
}

/* 1: decode every scan (the full decode, "before"). */
static int all_scans;

/* Median ms over `runs` of decode (+ preprocess when out != NULL). */
static double
time_it(const unsigned char *jpeg, unsigned long size, int min_short,
    const clip_preprocess_cfg *cfg, float *out, int runs)
{
	double t[32];
	clip_decode_opts o = { .max_pixels = 0, .min_short = min_short,
	    .all_scans = all_scans };
	for (int r = 0; r < runs; r++) {
		clip_image img;
		cdx_error err;
		double t0 = now_ms();
		if (clip_image_decode(jpeg, size, &o, &img, &err) != 0 ||
		    (out != NULL &&
		    clip_image_preprocess(&img, cfg, out, &err) != 0)) {
			fprintf(stderr, "image_bench: %s\n", err.msg);
			exit(1);
		}
		t[r] = now_ms() - t0;
		clip_image_free(&img);
	}
	qsort(t, (size_t)runs, sizeof(double), cmp_double);
	return t[runs / 2];
}

/* One preprocessing setting on one photo: decode only and decode +
 * preprocess, exact and fast (min_short from clip_preprocess_min_short),
 * and how far fast-mode pixels are from exact mode. */
static void
bench_cfg(const char *label, const unsigned char *jpeg, unsigned long size,
    int runs, const clip_preprocess_cfg *cfg, int check_target)
{
	size_t n = 3 * (size_t)cfg->crop_width * cfg->crop_height;
	float *fe = malloc(n * sizeof(float)), *ff = malloc(n * sizeof(float));
	int ms = clip_preprocess_min_short(cfg);
	if (fe == NULL || ff == NULL) {
		fprintf(stderr, "image_bench: no memory\n");
		exit(1);
	}

	double dec_e = time_it(jpeg, size, 0, cfg, NULL, runs);
	double dec_f = time_it(jpeg, size, ms, cfg, NULL, runs);
	double all_e = time_it(jpeg, size, 0, cfg, fe, runs);
	double all_f = time_it(jpeg, size, ms, cfg, ff, runs);

	/* Pixel distance of fast from exact mode, in 8-bit steps. */
	double sum = 0, sq = 0, maxd = 0;
	for (size_t i = 0; i < n; i++) {
		int c = (int)(i / ((size_t)cfg->crop_width * cfg->crop_height));
		double d = fabs((double)fe[i] - ff[i]) * cfg->std[c] * 255.0;
		sum += d;
		sq += d * d;
		if (d > maxd)
			maxd = d;
	}
	double rmse = sqrt(sq / n);
	printf("  %s (fast: min_short %d)\n", label, ms);
	printf("    decode only      exact %8.2f ms   fast %7.2f ms   %.1fx\n",
	    dec_e, dec_f, dec_e / dec_f);
	printf("    decode+preproc   exact %8.2f ms   fast %7.2f ms   %.1fx%s\n",
	    all_e, all_f, all_e / all_f,
	    check_target ? (all_e / all_f >= 5.0 ?
	    "   (target >= 5x: met)" : "   (target >= 5x: NOT met)") : "");
	printf("    preprocess only  exact %8.2f ms   fast %7.2f ms\n",
	    all_e - dec_e, all_f - dec_f);
	printf("    fast vs exact pixels: mean |d| %.2f, rmse %.2f, max %.0f "
	    "(of 255), PSNR %.1f dB\n", sum / n, rmse, maxd,
	    20 * log10(255.0 / (rmse > 0 ? rmse : 1e-9)));
	free(fe);
	free(ff);
}

static int
bench(const char *label, int w, int h, int runs, int check_target)
{
	/* CLIP (ViT-B/32): shortest side + centre crop; SigLIP: a squash,
	 * bicubic (SigLIP) or bilinear (SigLIP2), at 224 and 384. */
	static const clip_preprocess_cfg clip = {
		.mode = CLIP_RESIZE_SHORTEST_CROP,
		.resample = CLIP_RESAMPLE_BICUBIC, .shortest_edge = 224,
		.crop_width = 224, .crop_height = 224,
		.mean = { 0.48145466f, 0.4578275f, 0.40821073f },
		.std = { 0.26862954f, 0.26130258f, 0.27577711f } };
	static const struct {
		const char *label;
		int mode, resample, size;
	} cfgs[] = {
		{ "SigLIP squash 224 bicubic", CLIP_RESIZE_SQUASH,
		    CLIP_RESAMPLE_BICUBIC, 224 },
		{ "SigLIP squash 224 bilinear", CLIP_RESIZE_SQUASH,
		    CLIP_RESAMPLE_BILINEAR, 224 },
		{ "SigLIP squash 384 bicubic", CLIP_RESIZE_SQUASH,
		    CLIP_RESAMPLE_BICUBIC, 384 },
	};
	unsigned long size = 0;
	unsigned char *jpeg = make_jpeg(w, h, 0, &size);
	if (jpeg == NULL)
		return 1;
	printf("%s (%dx%d, %.1f MB JPEG q90 4:2:0)\n", label, w, h,
	    size / 1e6);
	bench_cfg("CLIP crop 224 bicubic", jpeg, size, runs, &clip,
	    check_target);
	for (size_t i = 0; i < sizeof(cfgs) / sizeof(cfgs[0]); i++) {
		clip_preprocess_cfg c = {
			.mode = cfgs[i].mode, .resample = cfgs[i].resample,
			.crop_width = cfgs[i].size, .crop_height = cfgs[i].size,
			.mean = { 0.5f, 0.5f, 0.5f },
			.std = { 0.5f, 0.5f, 0.5f } };
		bench_cfg(cfgs[i].label, jpeg, size, runs, &c, 0);
	}
	tjFree(jpeg);
	return 0;
}

/* Decodes once in fast mode; *out holds the image, *used and *total the
 * scans decoded. */
static void
decode_once(const unsigned char *jpeg, unsigned long size, int min_short,
    clip_image *out, int *used, int *total)
{
	clip_decode_opts o = { .max_pixels = 0, .min_short = min_short,
	    .all_scans = all_scans };
	cdx_error err;
	if (clip_image_decode(jpeg, size, &o, out, &err) != 0) {
		fprintf(stderr, "image_bench: %s\n", err.msg);
		exit(1);
	}
	clip_jpeg_last_scans(total, used);
}

/* Baseline against progressive, one preprocessing setting: exact, fast
 * decoding every scan (before), fast decoding the needed scans (after). */
static void
bench_progressive(const unsigned char *const jpeg[2],
    const unsigned long size[2], int runs, const clip_preprocess_cfg *cfg,
    const char *label)
{
	static const char *kind[2] = { "baseline", "progressive" };
	size_t n = 3 * (size_t)cfg->crop_width * cfg->crop_height;
	float *out = malloc(n * sizeof(float));
	int ms = clip_preprocess_min_short(cfg);
	if (out == NULL)
		exit(1);
	printf("  %s (fast: min_short %d), decode+preproc\n", label, ms);
	for (int k = 0; k < 2; k++) {
		clip_image before, after;
		int used_b, used_a, total;
		all_scans = 1;
		double exact = time_it(jpeg[k], size[k], 0, cfg, out, runs);
		double fb = time_it(jpeg[k], size[k], ms, cfg, out, runs);
		decode_once(jpeg[k], size[k], ms, &before, &used_b, &total);
		all_scans = 0;
		double fa = time_it(jpeg[k], size[k], ms, cfg, out, runs);
		decode_once(jpeg[k], size[k], ms, &after, &used_a, &total);
		int same = before.width == after.width &&
		    before.height == after.height && memcmp(before.rgb,
		    after.rgb, (size_t)after.width * after.height * 3) == 0;
		printf("    %-11s  exact %7.2f ms   fast before %7.2f ms (%d of "
		    "%d scans)   after %7.2f ms (%d of %d)   %.1fx%s\n", kind[k],
		    exact, fb, used_b, total, fa, used_a, total, fb / fa,
		    same ? "" : "   PIXELS DIFFER");
		clip_image_free(&before);
		clip_image_free(&after);
	}
	free(out);
}

static int
bench_scans(int w, int h, int runs)
{
	static const clip_preprocess_cfg clip = {
		.mode = CLIP_RESIZE_SHORTEST_CROP,
		.resample = CLIP_RESAMPLE_BICUBIC, .shortest_edge = 224,
		.crop_width = 224, .crop_height = 224,
		.mean = { 0.48145466f, 0.4578275f, 0.40821073f },
		.std = { 0.26862954f, 0.26130258f, 0.27577711f } };
	static const clip_preprocess_cfg squash384 = {
		.mode = CLIP_RESIZE_SQUASH, .resample = CLIP_RESAMPLE_BICUBIC,
		.crop_width = 384, .crop_height = 384,
		.mean = { 0.5f, 0.5f, 0.5f }, .std = { 0.5f, 0.5f, 0.5f } };
	unsigned char *jpeg[2];
	unsigned long size[2];
	jpeg[0] = make_jpeg(w, h, 0, &size[0]);
	jpeg[1] = make_jpeg(w, h, TJFLAG_PROGRESSIVE, &size[1]);
	if (jpeg[0] == NULL || jpeg[1] == NULL)
		return 1;
	printf("12 MP photo, baseline (%.1f MB) and progressive (%.1f MB, "
	    "libjpeg's simple progression)\n", size[0] / 1e6, size[1] / 1e6);
	bench_progressive((const unsigned char *const *)jpeg, size, runs,
	    &clip, "CLIP crop 224 bicubic (1/8 scale)");
	bench_progressive((const unsigned char *const *)jpeg, size, runs,
	    &squash384, "SigLIP squash 384 bicubic (2/8 scale)");
	tjFree(jpeg[0]);
	tjFree(jpeg[1]);
	return 0;
}

int
main(void)
{
	printf("image_bench: median of runs, 1 thread\n");
	if (bench("12 MP photo", 4000, 3000, 5, 1) != 0 ||
	    bench("2 MP photo", 1920, 1080, 9, 0) != 0 ||
	    bench_scans(4000, 3000, 7) != 0)
		return 1;
	return 0;
}
