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
 * First, every format the decoder reads (bench_formats): the same 12 MP
 * photo as JPEG, HEIC, AVIF, WebP, TIFF, GIF and BMP, and a 24 MP DNG
 * (a Bayer mosaic with a full-size JPEG preview, written here), each
 * decoded and preprocessed (CLIP 224) in exact and fast mode
 * (`image_bench formats` prints only this table).
 * Last, video (bench_video): sampled frames per second of wall time
 * (clip_video_sample with the defaults, each frame preprocessed for CLIP
 * 224 as the indexer does) on 1080p H.264 clips that the ffmpeg tool
 * makes from its testsrc2 source: keyframes every 2 s, and every 10 s
 * (a long GOP: targets between keyframes decode on to their time)
 * (`image_bench video` prints only this).
 * Single-threaded, like one indexing worker.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <unistd.h>

#include <gif_lib.h>
#include <libheif/heif.h>
#include <tiffio.h>
#include <turbojpeg.h>
#include <webp/encode.h>

#include "common/file.h"
#include "encoder/clip.h"
#include "encoder/image_internal.h"
#include "encoder/video.h"

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

/* Smooth shapes plus sensor-like noise, so a photo's file has realistic
 * entropy; w x h RGB, malloc'd. */
static unsigned char *
make_rgb(int w, int h)
{
	unsigned char *rgb = malloc((size_t)w * h * 3);
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
	return rgb;
}

static unsigned char *
make_jpeg(int w, int h, int flags, unsigned long *size)
{
	unsigned char *rgb = make_rgb(w, h), *jpeg = NULL;
	if (rgb == NULL)
		return NULL;
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

/* ---- every format: a 12 MP photo, and a 24 MP camera RAW ----------------- */

/* A growing byte buffer the encoders below write into. */
struct buf {
	uint8_t *d;
	size_t n, cap;
};

static void
buf_put(struct buf *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		size_t cap = b->cap ? b->cap : 1 << 16;
		while (cap < b->n + n)
			cap *= 2;
		uint8_t *d = realloc(b->d, cap);
		if (d == NULL) {
			fprintf(stderr, "image_bench: no memory\n");
			exit(1);
		}
		b->d = d;
		b->cap = cap;
	}
	memcpy(b->d + b->n, p, n);
	b->n += n;
}

static void
put16(struct buf *b, unsigned v)
{
	uint8_t p[2] = { (uint8_t)v, (uint8_t)(v >> 8) };
	buf_put(b, p, 2);
}

static void
put32(struct buf *b, uint32_t v)
{
	uint8_t p[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16),
		(uint8_t)(v >> 24) };
	buf_put(b, p, 4);
}

static struct heif_error
heif_mem_write(struct heif_context *ctx, const void *data, size_t size,
    void *user)
{
	(void)ctx;
	buf_put(user, data, size);
	return (struct heif_error){ heif_error_Ok, heif_suberror_Unspecified,
		"" };
}

/* HEIC (x265) or AVIF (aom) at quality 85, the encoders' fastest presets;
 * the HEIC with a 320 x 240 thumbnail item, as iPhones write them. */
static int
encode_heif(const uint8_t *rgb, int w, int h, int avif, struct buf *out)
{
	struct heif_context *ctx = heif_context_alloc();
	struct heif_encoder *enc = NULL;
	struct heif_image *img = NULL;
	struct heif_error e = heif_context_get_encoder_for_format(ctx,
	    avif ? heif_compression_AV1 : heif_compression_HEVC, &enc);
	if (e.code != heif_error_Ok)
		goto fail;
	heif_encoder_set_lossy_quality(enc, 85);
	if (avif)
		heif_encoder_set_parameter(enc, "speed", "9");
	else
		heif_encoder_set_parameter(enc, "preset", "ultrafast");
	e = heif_image_create(w, h, heif_colorspace_RGB,
	    heif_chroma_interleaved_RGB, &img);
	if (e.code != heif_error_Ok)
		goto fail;
	heif_image_add_plane(img, heif_channel_interleaved, w, h, 8);
	int stride;
	uint8_t *p = heif_image_get_plane(img, heif_channel_interleaved,
	    &stride);
	for (int y = 0; y < h; y++)
		memcpy(p + (size_t)y * stride, rgb + (size_t)y * w * 3,
		    (size_t)w * 3);
	struct heif_image_handle *primary = NULL, *thumb = NULL;
	e = heif_context_encode_image(ctx, img, enc, NULL, &primary);
	if (e.code == heif_error_Ok && !avif)
		e = heif_context_encode_thumbnail(ctx, img, primary, enc, NULL,
		    320, &thumb);
	heif_image_handle_release(thumb);
	heif_image_handle_release(primary);
	if (e.code != heif_error_Ok)
		goto fail;
	struct heif_writer wr = { 1, heif_mem_write };
	e = heif_context_write(ctx, &wr, out);
	if (e.code != heif_error_Ok)
		goto fail;
	heif_image_release(img);
	heif_encoder_release(enc);
	heif_context_free(ctx);
	return 0;
fail:
	fprintf(stderr, "image_bench: %s encoding: %s\n", avif ? "AVIF" :
	    "HEIC", e.message);
	heif_image_release(img);
	if (enc != NULL)
		heif_encoder_release(enc);
	heif_context_free(ctx);
	return -1;
}

static int
encode_webp(const uint8_t *rgb, int w, int h, struct buf *out)
{
	uint8_t *p = NULL;
	size_t n = WebPEncodeRGB(rgb, w, h, w * 3, 90, &p);
	if (n == 0)
		return -1;
	buf_put(out, p, n);
	WebPFree(p);
	return 0;
}

/* 8-bit RGB, LZW (as scanners save), through a temporary file. */
static int
encode_tiff(const uint8_t *rgb, int w, int h, struct buf *out)
{
	char path[] = "/tmp/image_bench_XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		return -1;
	close(fd);
	TIFF *t = TIFFOpen(path, "w");
	if (t == NULL)
		return -1;
	TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t)w);
	TIFFSetField(t, TIFFTAG_IMAGELENGTH, (uint32_t)h);
	TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 8);
	TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 3);
	TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_RGB);
	TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
	TIFFSetField(t, TIFFTAG_COMPRESSION, COMPRESSION_LZW);
	TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, 16);
	for (int y = 0; y < h; y++)
		TIFFWriteScanline(t, (void *)(rgb + (size_t)y * w * 3),
		    (uint32_t)y, 0);
	TIFFClose(t);
	char *d;
	size_t n;
	cdx_error err;
	int rc = cdx_read_file(path, (size_t)1 << 30, &d, &n, &err);
	unlink(path);
	if (rc != 0)
		return -1;
	buf_put(out, d, n);
	free(d);
	return 0;
}

static int
gif_mem_write(GifFileType *g, const GifByteType *p, int n)
{
	buf_put(g->UserData, p, (size_t)n);
	return n;
}

/* 3-3-2 palette, one frame. */
static int
encode_gif(const uint8_t *rgb, int w, int h, struct buf *out)
{
	int e;
	GifFileType *g = EGifOpen(out, gif_mem_write, &e);
	GifColorType colors[256];
	for (int i = 0; i < 256; i++)
		colors[i] = (GifColorType){ (GifByteType)((i >> 5) * 255 / 7),
			(GifByteType)((i >> 2 & 7) * 255 / 7),
			(GifByteType)((i & 3) * 255 / 3) };
	ColorMapObject *cm = GifMakeMapObject(256, colors);
	uint8_t *line = malloc((size_t)w);
	if (g == NULL || cm == NULL || line == NULL ||
	    EGifPutScreenDesc(g, w, h, 8, 0, cm) != GIF_OK ||
	    EGifPutImageDesc(g, 0, 0, w, h, false, NULL) != GIF_OK)
		return -1;
	for (int y = 0; y < h; y++) {
		const uint8_t *s = rgb + (size_t)y * w * 3;
		for (int x = 0; x < w; x++)
			line[x] = (uint8_t)((s[3 * x] >> 5) << 5 |
			    (s[3 * x + 1] >> 5) << 2 | s[3 * x + 2] >> 6);
		if (EGifPutLine(g, line, w) != GIF_OK)
			return -1;
	}
	free(line);
	GifFreeMapObject(cm);
	return EGifCloseFile(g, &e) == GIF_OK ? 0 : -1;
}

/* 24-bit bottom-up BMP. */
static int
encode_bmp(const uint8_t *rgb, int w, int h, struct buf *out)
{
	uint32_t stride = ((uint32_t)w * 3 + 3) & ~3u;
	buf_put(out, "BM", 2);
	put32(out, 54 + stride * (uint32_t)h);
	put32(out, 0);
	put32(out, 54);
	put32(out, 40);
	put32(out, (uint32_t)w);
	put32(out, (uint32_t)h);
	put16(out, 1);
	put16(out, 24);
	for (int i = 0; i < 6; i++)
		put32(out, 0);
	uint8_t *row = calloc(stride, 1);
	if (row == NULL)
		return -1;
	for (int y = h - 1; y >= 0; y--) {
		const uint8_t *s = rgb + (size_t)y * w * 3;
		for (int x = 0; x < w; x++) {
			row[3 * x] = s[3 * x + 2];
			row[3 * x + 1] = s[3 * x + 1];
			row[3 * x + 2] = s[3 * x];
		}
		buf_put(out, row, stride);
	}
	free(row);
	return 0;
}

/* One IFD entry, little-endian; values over 4 bytes go to `extra` at
 * offset *at (relative to the file). */
struct ifd_entry {
	uint16_t tag, type;
	uint32_t count;
	uint32_t value;         /* inline value or offset */
};

static void
put_ifd(struct buf *b, const struct ifd_entry *e, int n)
{
	put16(b, (unsigned)n);
	for (int i = 0; i < n; i++) {
		put16(b, e[i].tag);
		put16(b, e[i].type);
		put32(b, e[i].count);
		put32(b, e[i].value);
	}
	put32(b, 0);
}

/*
 * A 24 MP DNG (6000 x 4000) as a camera writes one: IFD0 a full-size JPEG
 * preview (q90), a SubIFD the RGGB Bayer mosaic, 16 bits, uncompressed, of
 * the photo's linear light (tools/ref_images.py's dng_write, in C).
 */
static int
encode_dng(const uint8_t *rgb, int w, int h, struct buf *out)
{
	unsigned long jlen = 0;
	unsigned char *jpeg = NULL;
	tjhandle tj = tjInitCompress();
	if (tj == NULL || tjCompress2(tj, rgb, w, 0, h, TJPF_RGB, &jpeg, &jlen,
	    TJSAMP_420, 90, 0) != 0)
		return -1;
	tjDestroy(tj);
	double lut[256];
	for (int i = 0; i < 256; i++) {
		double x = i / 255.0;
		lut[i] = x <= 0.04045 ? x / 12.92 : pow((x + 0.055) / 1.055, 2.4);
	}
	buf_put(out, "II*\0\0\0\0\0", 8);
	uint32_t raw_off = (uint32_t)out->n;
	uint16_t *row = malloc((size_t)w * 2);
	if (row == NULL)
		return -1;
	for (int y = 0; y < h; y++) {
		for (int x = 0; x < w; x++) {
			int c = (y & 1) + (x & 1);   /* R, G, G, B */
			double v = lut[rgb[((size_t)y * w + x) * 3 + c]];
			row[x] = (uint16_t)(v * 60000 + 256.5);
		}
		buf_put(out, row, (size_t)w * 2);
	}
	free(row);
	uint32_t jpg_off = (uint32_t)out->n;
	buf_put(out, jpeg, jlen);
	tjFree(jpeg);
	if (out->n & 1)
		buf_put(out, "", 1);
	/* the SubIFD's values that do not fit inline */
	uint32_t cm_off = (uint32_t)out->n;
	static const int cm[9] = { 32406, -15372, -4986, -9689, 18758, 415,
		557, -2040, 10570 };
	for (int i = 0; i < 9; i++) {
		put32(out, (uint32_t)cm[i]);
		put32(out, 10000);
	}
	uint32_t neutral_off = (uint32_t)out->n;
	for (int i = 0; i < 3; i++) {
		put32(out, 1);
		put32(out, 1);
	}
	uint32_t make_off = (uint32_t)out->n;
	buf_put(out, "clipdex\0", 8);
	uint32_t model_off = (uint32_t)out->n;
	buf_put(out, "bench DNG\0", 10);
	uint32_t ucm_off = (uint32_t)out->n;
	buf_put(out, "clipdex bench DNG\0", 18);
	uint32_t bps3_off = (uint32_t)out->n;
	put16(out, 8);
	put16(out, 8);
	put16(out, 8);
	put16(out, 0);
	uint32_t sub_off = (uint32_t)out->n;
	const struct ifd_entry sub[] = {
		{ 254, 4, 1, 0 }, { 256, 4, 1, (uint32_t)w },
		{ 257, 4, 1, (uint32_t)h }, { 258, 3, 1, 16 }, { 259, 3, 1, 1 },
		{ 262, 3, 1, 32803 }, { 273, 4, 1, raw_off },
		{ 277, 3, 1, 1 }, { 278, 4, 1, (uint32_t)h },
		{ 279, 4, 1, (uint32_t)w * (uint32_t)h * 2 },
		{ 284, 3, 1, 1 }, { 33421, 3, 2, 2 | 2u << 16 },
		{ 33422, 1, 4, 0x02010100 }, { 50714, 4, 1, 256 },
		{ 50717, 4, 1, 60256 },
	};
	put_ifd(out, sub, (int)(sizeof(sub) / sizeof(sub[0])));
	uint32_t ifd0_off = (uint32_t)out->n;
	const struct ifd_entry ifd0[] = {
		{ 254, 4, 1, 1 }, { 256, 4, 1, (uint32_t)w },
		{ 257, 4, 1, (uint32_t)h }, { 258, 3, 3, bps3_off },
		{ 259, 3, 1, 7 }, { 262, 3, 1, 6 }, { 271, 2, 8, make_off },
		{ 272, 2, 10, model_off }, { 273, 4, 1, jpg_off },
		{ 274, 3, 1, 1 }, { 277, 3, 1, 3 }, { 278, 4, 1, (uint32_t)h },
		{ 279, 4, 1, (uint32_t)jlen }, { 284, 3, 1, 1 },
		{ 330, 4, 1, sub_off }, { 50706, 1, 4, 0x00000401 },
		{ 50707, 1, 4, 0x00000101 }, { 50708, 2, 18, ucm_off },
		{ 50721, 10, 9, cm_off },
		{ 50728, 5, 3, neutral_off }, { 50778, 3, 1, 21 },
	};
	put_ifd(out, ifd0, (int)(sizeof(ifd0) / sizeof(ifd0[0])));
	memcpy(out->d + 4, &ifd0_off, 4);       /* little-endian host */
	return 0;
}

/* Median ms of decode + CLIP-224 preprocess, and of decode alone. */
static void
time_format(const char *label, const struct buf *b, int runs)
{
	static const clip_preprocess_cfg clip = {
		.mode = CLIP_RESIZE_SHORTEST_CROP,
		.resample = CLIP_RESAMPLE_BICUBIC, .shortest_edge = 224,
		.crop_width = 224, .crop_height = 224,
		.mean = { 0.48145466f, 0.4578275f, 0.40821073f },
		.std = { 0.26862954f, 0.26130258f, 0.27577711f } };
	static float px[3 * 224 * 224];
	int ms = clip_preprocess_min_short(&clip);
	clip_image img;
	cdx_error err;
	clip_decode_opts fast = { .min_short = ms };
	int fw = 0, fh = 0, ew = 0, eh = 0;
	if (clip_image_decode(b->d, b->n, NULL, &img, &err) != 0) {
		fprintf(stderr, "image_bench: %s: %s\n", label, err.msg);
		exit(1);
	}
	ew = img.width;
	eh = img.height;
	clip_image_free(&img);
	if (clip_image_decode(b->d, b->n, &fast, &img, &err) == 0) {
		fw = img.width;
		fh = img.height;
		clip_image_free(&img);
	}
	double dec_e = time_it(b->d, b->n, 0, &clip, NULL, runs);
	double all_e = time_it(b->d, b->n, 0, &clip, px, runs);
	double dec_f = time_it(b->d, b->n, ms, &clip, NULL, runs);
	double all_f = time_it(b->d, b->n, ms, &clip, px, runs);
	printf("  %-20s %5.1f MB  exact %7.1f ms (decode %7.1f, %dx%d)   "
	    "fast %7.1f ms (decode %7.1f, %dx%d)\n", label, b->n / 1e6,
	    all_e, dec_e, ew, eh, all_f, dec_f, fw, fh);
}

static int
bench_formats(int runs)
{
	const int w = 4000, h = 3000, rw = 6000, rh = 4000;
	unsigned char *rgb = make_rgb(w, h), *rgb24 = make_rgb(rw, rh);
	if (rgb == NULL || rgb24 == NULL)
		return 1;
	static const struct {
		const char *label;
		int kind;
	} fmts[] = {
		{ "JPEG q90 4:2:0", 0 }, { "HEIC q85 + thumbnail", 1 },
		{ "AVIF q85 (aom)", 2 }, { "WebP q90", 3 },
		{ "TIFF 8-bit RGB LZW", 4 }, { "GIF 3-3-2 palette", 5 },
		{ "BMP 24-bit", 6 }, { "DNG 24 MP (RAW)", 7 },
	};
	printf("Every format: decode + CLIP 224 preprocess, exact and fast "
	    "(min_short 224), median of %d (and decode alone, decoded size);\n"
	    "12 MP photo (4000x3000); the RAW 24 MP (6000x4000, 16-bit Bayer "
	    "+ full-size JPEG preview)\n", runs);
	for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
		struct buf b = { 0 };
		int rc = 0;
		unsigned long jl = 0;
		unsigned char *j;
		switch (fmts[i].kind) {
		case 0:
			j = NULL;
			tjhandle tj = tjInitCompress();
			rc = tj == NULL || tjCompress2(tj, rgb, w, 0, h, TJPF_RGB,
			    &j, &jl, TJSAMP_420, 90, 0) != 0;
			if (rc == 0)
				buf_put(&b, j, jl);
			tjFree(j);
			tjDestroy(tj);
			break;
		case 1: rc = encode_heif(rgb, w, h, 0, &b); break;
		case 2: rc = encode_heif(rgb, w, h, 1, &b); break;
		case 3: rc = encode_webp(rgb, w, h, &b); break;
		case 4: rc = encode_tiff(rgb, w, h, &b); break;
		case 5: rc = encode_gif(rgb, w, h, &b); break;
		case 6: rc = encode_bmp(rgb, w, h, &b); break;
		case 7: rc = encode_dng(rgb24, rw, rh, &b); break;
		}
		if (rc != 0) {
			printf("  %-26s cannot be made here\n", fmts[i].label);
			free(b.d);
			continue;
		}
		time_format(fmts[i].label, &b, runs);
		free(b.d);
		fflush(stdout);
	}
	free(rgb);
	free(rgb24);
	return 0;
}

struct vsink {
	clip_preprocess_cfg cfg;
	float *plane;
	int frames;
};

static int
video_frame(void *user, int64_t time_ms, const clip_image *img, cdx_error *err)
{
	struct vsink *k = user;
	(void)time_ms;
	k->frames++;
	return clip_image_preprocess(img, &k->cfg, k->plane, err);
}

static int
bench_video(int runs)
{
	char dir[] = "/tmp/cdx-video-bench-XXXXXX", path[128], cmd[512];
	static const int gops[] = { 60, 300 };
	struct vsink k = { .cfg = { .mode = CLIP_RESIZE_SHORTEST_CROP,
		.resample = CLIP_RESAMPLE_BICUBIC, .shortest_edge = 224,
		.crop_width = 224, .crop_height = 224,
		.mean = { 0.48145466f, 0.4578275f, 0.40821073f },
		.std = { 0.26862954f, 0.26130258f, 0.27577711f } } };

	if (mkdtemp(dir) == NULL || (k.plane = malloc(sizeof(float) * 3 * 224 *
	    224)) == NULL)
		return 1;
	printf("Video: a 60 s 1080p H.264 clip (ffmpeg testsrc2, 30 fps), "
	    "sampled with the defaults (every 2 s, at most 32 frames), each "
	    "frame preprocessed (CLIP 224); median of %d\n", runs);
	for (size_t g = 0; g < sizeof(gops) / sizeof(gops[0]); g++) {
		snprintf(path, sizeof(path), "%s/clip%zu.mp4", dir, g);
		snprintf(cmd, sizeof(cmd), "ffmpeg -nostdin -loglevel error -y "
		    "-f lavfi -i testsrc2=size=1920x1080:rate=30:duration=60 "
		    "-c:v libx264 -preset ultrafast -g %d -pix_fmt yuv420p '%s'",
		    gops[g], path);
		if (system(cmd) != 0) {
			printf("  the clip cannot be made here (ffmpeg)\n");
			break;
		}
		double t[16];
		clip_video_info info = { 0 };
		for (int r = 0; r < runs && r < 16; r++) {
			cdx_error err;
			k.frames = 0;
			double t0 = now_ms();
			if (clip_video_sample(path, NULL, video_frame, &k, &info,
			    &err) != 0) {
				fprintf(stderr, "image_bench: %s\n", err.msg);
				return 1;
			}
			t[r] = now_ms() - t0;
		}
		qsort(t, (size_t)runs, sizeof(double), cmp_double);
		double ms = t[runs / 2];
		printf("  keyframes every %2d s: %2d frames (%3lld decoded of "
		    "1800) in %7.1f ms: %6.1f sampled frames/s\n", gops[g] / 30,
		    info.frames, (long long)info.decoded, ms,
		    1000.0 * info.frames / ms);
		unlink(path);
		fflush(stdout);
	}
	rmdir(dir);
	free(k.plane);
	return 0;
}

int
main(int argc, char **argv)
{
	/* image_bench dng FILE: writes the 24 MP DNG (to check it with
	 * raw-identify or dcraw_emu) */
	if (argc > 2 && strcmp(argv[1], "dng") == 0) {
		struct buf b = { 0 };
		unsigned char *rgb = make_rgb(6000, 4000);
		FILE *f = fopen(argv[2], "wb");
		int bad = rgb == NULL || f == NULL ||
		    encode_dng(rgb, 6000, 4000, &b) != 0 ||
		    fwrite(b.d, 1, b.n, f) != b.n;
		if (f != NULL)
			fclose(f);
		free(rgb);
		free(b.d);
		return bad;
	}
	printf("image_bench: median of runs, 1 thread\n");
	/* image_bench formats: only the per-format table */
	if (argc > 1 && strcmp(argv[1], "formats") == 0)
		return bench_formats(3);
	clip_video_log_quiet();
	if (argc > 1 && strcmp(argv[1], "video") == 0)
		return bench_video(3);
	if (bench_formats(3) != 0 || bench_video(3) != 0 ||
	    bench("12 MP photo", 4000, 3000, 5, 1) != 0 ||
	    bench("2 MP photo", 1920, 1080, 9, 0) != 0 ||
	    bench_scans(4000, 3000, 7) != 0)
		return 1;
	return 0;
}
