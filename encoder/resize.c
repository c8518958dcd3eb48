/*
 * resize.c - Pillow-exact resampling (bicubic and bilinear), Hugging Face's
 * two ways to a model's input square (shortest side + centre crop, or a
 * squash), and normalisation into planar floats (clip_image_preprocess).
 *
 * The resize reproduces Pillow 9.4's Image.resize(size, filter) with
 * reducing_gap=None (libImaging/Resample.c, 8 bits per channel):
 *  - a separable convolution, horizontal pass first, then vertical;
 *  - for output index i, centre = (i + 0.5) * scale with scale = in / out
 *    (the box edge taken as a float); when downscaling the filter's support
 *    (1 for bilinear, 2 for bicubic with a = -0.5) is stretched by scale,
 *    taps run from (int)(centre - support + 0.5) to
 *    (int)(centre + support + 0.5), clamped to the image, weights are
 *    filter((j - centre + 0.5) / max(scale, 1)), normalised to sum 1;
 *  - weights become fixed point with 22 fractional bits, rounded half away
 *    from zero; each pass sums from 1 << 21, shifts right by 22 (arithmetic)
 *    and clamps to 0..255.
 * A pass whose size does not change is the identity with these weights
 * (1 at the pixel, 0 at whole-pixel offsets), as Pillow skipping it.
 * Every output pixel depends only on its own coordinates, so only the
 * pixels inside the centre crop are computed: the same bytes, less work.
 */
#include "encoder/clip.h"
#include "encoder/image_internal.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#define HAVE_SSE2_HPASS 1
#endif

#define PREC_BITS 22

/* Pillow's filters: the kernel and its support at scale 1. */
struct filter {
	double (*fn)(double x);
	double support;
};

static double
bilinear(double x)
{
	if (x < 0.0)
		x = -x;
	if (x < 1.0)
		return 1.0 - x;
	return 0.0;
}

/* Bicubic convolution kernel, a = -0.5 (Keys). */
static double
bicubic(double x)
{
	const double a = -0.5;
	if (x < 0.0)
		x = -x;
	if (x < 1.0)
		return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
	if (x < 2.0)
		return (((x - 5) * x + 8) * x - 4) * a;
	return 0.0;
}

static const struct filter filter_bilinear = { bilinear, 1.0 };
static const struct filter filter_bicubic = { bicubic, 2.0 };

/* The filter of an enum clip_resample, NULL for any other value. */
static const struct filter *
filter_of(int resample)
{
	switch (resample) {
	case CLIP_RESAMPLE_BILINEAR:
		return &filter_bilinear;
	case CLIP_RESAMPLE_BICUBIC:
		return &filter_bicubic;
	default:
		return NULL;
	}
}

/* Taps of output pixels first .. first+count-1 of a resize from in_size to
 * out_size: start[i], n[i] and ksize fixed-point weights per pixel. */
struct taps {
	int ksize;
	int *start, *n;
	int32_t *k;
};

static void
taps_free(struct taps *t)
{
	free(t->start);
	free(t->n);
	free(t->k);
}

static int
taps_make(struct taps *t, const struct filter *f, int in_size, int out_size,
    int first, int count)
{
	/* Pillow takes the box edges as floats. */
	double scale = (double)(float)in_size / out_size;
	double filterscale = scale < 1.0 ? 1.0 : scale;
	double support = f->support * filterscale;
	double ss = 1.0 / filterscale;

	memset(t, 0, sizeof(*t));
	if (ceil(support) > (INT_MAX - 1) / 2)
		return CDX_EINVAL;
	t->ksize = (int)ceil(support) * 2 + 1;
	if ((size_t)count > SIZE_MAX / sizeof(double) / (size_t)t->ksize)
		return CDX_ENOMEM;
	t->start = malloc((size_t)count * sizeof(int));
	t->n = malloc((size_t)count * sizeof(int));
	t->k = calloc((size_t)count * (size_t)t->ksize, sizeof(int32_t));
	double *w = malloc((size_t)t->ksize * sizeof(double));
	if (t->start == NULL || t->n == NULL || t->k == NULL || w == NULL) {
		free(w);
		taps_free(t);
		return CDX_ENOMEM;
	}
	for (int i = 0; i < count; i++) {
		int xx = first + i;
		double center = 0.0 + (xx + 0.5) * scale;
		double ww = 0.0;
		int xmin = (int)(center - support + 0.5);
		if (xmin < 0)
			xmin = 0;
		int xmax = (int)(center + support + 0.5);
		if (xmax > in_size)
			xmax = in_size;
		xmax -= xmin;
		if (xmax > t->ksize)
			xmax = t->ksize; /* cannot happen; keeps w[] in bounds */
		for (int x = 0; x < xmax; x++) {
			w[x] = f->fn((x + xmin - center + 0.5) * ss);
			ww += w[x];
		}
		int32_t *k = t->k + (size_t)i * t->ksize;
		for (int x = 0; x < xmax; x++) {
			double v = ww != 0.0 ? w[x] / ww : w[x];
			v *= (1 << PREC_BITS);
			k[x] = (int32_t)(v < 0 ? -0.5 + v : 0.5 + v);
		}
		t->start[i] = xmin;
		t->n[i] = xmax;
	}
	free(w);
	return 0;
}

static inline uint8_t
clip8(int32_t v)
{
	v >>= PREC_BITS;
	return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* One row, horizontal pass: out[i] for the count pixels of t. */
static void
hpass_row(const uint8_t *restrict in, uint8_t *restrict out,
    const struct taps *t, int count)
{
	for (int i = 0; i < count; i++) {
		const int32_t *k = t->k + (size_t)i * t->ksize;
		const uint8_t *p = in + (size_t)t->start[i] * 3;
		int32_t s0 = 1 << (PREC_BITS - 1), s1 = s0, s2 = s0;
		for (int x = 0; x < t->n[i]; x++) {
			s0 += p[3 * x + 0] * k[x];
			s1 += p[3 * x + 1] * k[x];
			s2 += p[3 * x + 2] * k[x];
		}
		out[3 * i + 0] = clip8(s0);
		out[3 * i + 1] = clip8(s1);
		out[3 * i + 2] = clip8(s2);
	}
}

#ifdef HAVE_SSE2_HPASS
/*
 * The horizontal pass with SSE2 pmaddwd, bit-exact with hpass_row: each
 * 22-bit weight k is split as k = kh * 2048 + kl (kh = k >> 11, kl =
 * k & 2047, both fit int16), so sum(p * k) = 2048 * sum(p * kh) +
 * sum(p * kl) with every partial sum inside int32.  Pixels are first split
 * into three int16 planes; weights are padded with zeros to kpad, a multiple
 * of 8, and the planes with kpad zeros so that padded taps read zeros.
 */
struct taps16 {
	int kpad;
	int16_t *kh, *kl; /* count * kpad each */
};

static int
taps16_make(struct taps16 *t16, const struct taps *t, int count)
{
	t16->kpad = (t->ksize + 7) / 8 * 8;
	size_t n = (size_t)count * t16->kpad;
	t16->kh = calloc(n, sizeof(int16_t));
	t16->kl = calloc(n, sizeof(int16_t));
	if (t16->kh == NULL || t16->kl == NULL) {
		free(t16->kh);
		free(t16->kl);
		return CDX_ENOMEM;
	}
	for (int i = 0; i < count; i++)
		for (int x = 0; x < t->n[i]; x++) {
			int32_t k = t->k[(size_t)i * t->ksize + x];
			t16->kh[(size_t)i * t16->kpad + x] = (int16_t)(k >> 11);
			t16->kl[(size_t)i * t16->kpad + x] = (int16_t)(k & 2047);
		}
	return 0;
}

static inline int32_t
hsum_epi32(__m128i v)
{
	v = _mm_add_epi32(v, _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 0, 3, 2)));
	v = _mm_add_epi32(v, _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 3, 0, 1)));
	return _mm_cvtsi128_si32(v);
}

/* planes: 3 int16 planes of `plen` each holding source columns x0.. */
static void
hpass_row_sse2(const uint8_t *restrict in, int x0, int x1,
    int16_t *restrict planes, size_t plen, uint8_t *restrict out,
    const struct taps *t, const struct taps16 *t16, int count)
{
	int16_t *p0 = planes, *p1 = planes + plen, *p2 = planes + 2 * plen;
	for (int x = x0; x < x1; x++) {
		p0[x - x0] = in[3 * x];
		p1[x - x0] = in[3 * x + 1];
		p2[x - x0] = in[3 * x + 2];
	}
	for (int i = 0; i < count; i++) {
		const int16_t *kh = t16->kh + (size_t)i * t16->kpad;
		const int16_t *kl = t16->kl + (size_t)i * t16->kpad;
		int off = t->start[i] - x0;
		int nb = (t->n[i] + 7) / 8;
		__m128i h0 = _mm_setzero_si128(), h1 = h0, h2 = h0;
		__m128i l0 = h0, l1 = h0, l2 = h0;
		for (int b = 0; b < nb; b++) {
			__m128i KH = _mm_loadu_si128((const __m128i *)(kh + 8 * b));
			__m128i KL = _mm_loadu_si128((const __m128i *)(kl + 8 * b));
			__m128i P0 = _mm_loadu_si128(
			    (const __m128i *)(p0 + off + 8 * b));
			__m128i P1 = _mm_loadu_si128(
			    (const __m128i *)(p1 + off + 8 * b));
			__m128i P2 = _mm_loadu_si128(
			    (const __m128i *)(p2 + off + 8 * b));
			h0 = _mm_add_epi32(h0, _mm_madd_epi16(P0, KH));
			l0 = _mm_add_epi32(l0, _mm_madd_epi16(P0, KL));
			h1 = _mm_add_epi32(h1, _mm_madd_epi16(P1, KH));
			l1 = _mm_add_epi32(l1, _mm_madd_epi16(P1, KL));
			h2 = _mm_add_epi32(h2, _mm_madd_epi16(P2, KH));
			l2 = _mm_add_epi32(l2, _mm_madd_epi16(P2, KL));
		}
		const int64_t bias = 1 << (PREC_BITS - 1);
		int64_t s0 = (int64_t)hsum_epi32(h0) * 2048 + hsum_epi32(l0) + bias;
		int64_t s1 = (int64_t)hsum_epi32(h1) * 2048 + hsum_epi32(l1) + bias;
		int64_t s2 = (int64_t)hsum_epi32(h2) * 2048 + hsum_epi32(l2) + bias;
		out[3 * i + 0] = clip8((int32_t)s0);
		out[3 * i + 1] = clip8((int32_t)s1);
		out[3 * i + 2] = clip8((int32_t)s2);
	}
}
#endif

/* One output row, vertical pass over `len` bytes: rows[j] is the j-th tap's
 * source row. */
static void
vpass_row(const uint8_t *restrict base, size_t stride, const int32_t *k,
    int n, int32_t *restrict acc, uint8_t *restrict out, int len)
{
	for (int i = 0; i < len; i++)
		acc[i] = 1 << (PREC_BITS - 1);
	for (int j = 0; j < n; j++) {
		const uint8_t *row = base + (size_t)j * stride;
		int32_t kj = k[j];
		for (int i = 0; i < len; i++)
			acc[i] += row[i] * kj;
	}
	for (int i = 0; i < len; i++)
		out[i] = clip8(acc[i]);
}

int
clip_resize_dims(int w, int h, int shortest_edge, int *new_w, int *new_h)
{
	if (w <= 0 || h <= 0 || shortest_edge <= 0)
		return CDX_EINVAL;
	int sh = w <= h ? w : h, lg = w <= h ? h : w;
	/* Python: int(size * long / short), true division then truncation */
	double nl = (double)((int64_t)shortest_edge * lg) / sh;
	if (!(nl < (double)INT_MAX))
		return CDX_EINVAL;
	int n_long = (int)nl;
	if (w <= h) {
		*new_w = shortest_edge;
		*new_h = n_long;
	} else {
		*new_w = n_long;
		*new_h = shortest_edge;
	}
	return 0;
}

/* Python's floor division by 2. */
static int
floor_half(int v)
{
	return v >= 0 ? v / 2 : -((-v + 1) / 2);
}

/* clip_resize_crop with the horizontal pass picked by `simd` (SSE2 where
 * built, else the portable pass; both give the same bytes). */
static int
resize_crop(const uint8_t *src, int w, int h, int new_w, int new_h,
    int crop_w, int crop_h, int resample, int simd, uint8_t *out,
    cdx_error *err)
{
	const struct filter *f = filter_of(resample);
	if (src == NULL || out == NULL || w <= 0 || h <= 0 || new_w <= 0 ||
	    new_h <= 0 || crop_w <= 0 || crop_h <= 0 || f == NULL)
		return cdx_error_set(err, CDX_EINVAL, "resize: bad arguments");

	memset(out, 0, (size_t)crop_w * crop_h * 3);
	/* HF centre crop: top = (h - ch) // 2; a negative offset pads. */
	int left = floor_half(new_w - crop_w), top = floor_half(new_h - crop_h);
	int ox0 = left > 0 ? left : 0;
	int ox1 = left + crop_w < new_w ? left + crop_w : new_w;
	int oy0 = top > 0 ? top : 0;
	int oy1 = top + crop_h < new_h ? top + crop_h : new_h;
	int nx = ox1 - ox0, ny = oy1 - oy0;

	struct taps th, tv;
	int rc = taps_make(&th, f, w, new_w, ox0, nx);
	if (rc != 0)
		return cdx_error_set(err, rc, "resize: %d -> %d columns: %s",
		    w, new_w, cdx_strerror(rc));
	rc = taps_make(&tv, f, h, new_h, oy0, ny);
	if (rc != 0) {
		cdx_error_set(err, rc, "resize: %d -> %d rows: %s", h, new_h,
		    cdx_strerror(rc));
		goto out_free_th;
	}

	/* Source rows the vertical pass reads. */
	int r0 = tv.start[0], r1 = tv.start[ny - 1] + tv.n[ny - 1];
	for (int i = 0; i < ny; i++) {
		if (tv.start[i] < r0)
			r0 = tv.start[i];
		if (tv.start[i] + tv.n[i] > r1)
			r1 = tv.start[i] + tv.n[i];
	}
	size_t stride = (size_t)nx * 3;
	uint8_t *tmp = malloc((size_t)(r1 - r0) * stride + 1);
	int32_t *acc = malloc(stride * sizeof(int32_t) + 1);
	uint8_t *line = malloc(stride + 1);
	if (tmp == NULL || acc == NULL || line == NULL) {
		rc = cdx_error_set(err, CDX_ENOMEM,
		    "resize: no memory for %d x %d rows", nx, r1 - r0);
		goto out_free_buffers;
	}
#ifdef HAVE_SSE2_HPASS
	if (simd) {
		/* Source columns the horizontal pass reads. */
		int x0 = th.start[0], x1 = th.start[nx - 1] + th.n[nx - 1];
		for (int i = 0; i < nx; i++) {
			if (th.start[i] < x0)
				x0 = th.start[i];
			if (th.start[i] + th.n[i] > x1)
				x1 = th.start[i] + th.n[i];
		}
		struct taps16 t16;
		if (taps16_make(&t16, &th, nx) != 0) {
			rc = cdx_error_set(err, CDX_ENOMEM,
			    "resize: no memory for weights");
			goto out_free_buffers;
		}
		size_t plen = (size_t)(x1 - x0) + t16.kpad + 8;
		int16_t *planes = calloc(3 * plen, sizeof(int16_t));
		if (planes == NULL) {
			free(t16.kh);
			free(t16.kl);
			rc = cdx_error_set(err, CDX_ENOMEM,
			    "resize: no memory for a row");
			goto out_free_buffers;
		}
		for (int r = r0; r < r1; r++)
			hpass_row_sse2(src + (size_t)r * w * 3, x0, x1, planes,
			    plen, tmp + (size_t)(r - r0) * stride, &th, &t16,
			    nx);
		free(planes);
		free(t16.kh);
		free(t16.kl);
	} else
#endif
	{
		for (int r = r0; r < r1; r++)
			hpass_row(src + (size_t)r * w * 3,
			    tmp + (size_t)(r - r0) * stride, &th, nx);
	}
	for (int i = 0; i < ny; i++) {
		vpass_row(tmp + (size_t)(tv.start[i] - r0) * stride, stride,
		    tv.k + (size_t)i * tv.ksize, tv.n[i], acc, line, (int)stride);
		memcpy(out + ((size_t)(oy0 + i - top) * crop_w + (ox0 - left)) * 3,
		    line, stride);
	}
	rc = 0;
out_free_buffers:
	free(line);
	free(acc);
	free(tmp);
	taps_free(&tv);
out_free_th:
	taps_free(&th);
	return rc;
}

int
clip_resize_crop(const uint8_t *src, int w, int h, int new_w, int new_h,
    int crop_w, int crop_h, int resample, uint8_t *out, cdx_error *err)
{
	return resize_crop(src, w, h, new_w, new_h, crop_w, crop_h, resample,
	    1, out, err);
}

int
clip_resize_crop_portable(const uint8_t *src, int w, int h, int new_w,
    int new_h, int crop_w, int crop_h, int resample, uint8_t *out,
    cdx_error *err)
{
	return resize_crop(src, w, h, new_w, new_h, crop_w, crop_h, resample,
	    0, out, err);
}

int
clip_preprocess_min_short(const clip_preprocess_cfg *cfg)
{
	if (cfg == NULL)
		return 0;
	switch (cfg->mode) {
	case CLIP_RESIZE_SHORTEST_CROP:
		return cfg->shortest_edge > 0 ? cfg->shortest_edge : 0;
	case CLIP_RESIZE_SQUASH: {
		/* Either side of the image may become either output side. */
		int m = cfg->crop_width > cfg->crop_height ? cfg->crop_width :
		    cfg->crop_height;
		return m > 0 ? m : 0;
	}
	default:
		return 0;
	}
}

int
clip_image_preprocess(const clip_image *img, const clip_preprocess_cfg *cfg,
    float *out, cdx_error *err)
{
	if (img == NULL || cfg == NULL || out == NULL || img->rgb == NULL ||
	    img->width <= 0 || img->height <= 0)
		return cdx_error_set(err, CDX_EINVAL,
		    "preprocess: missing image, configuration or output");
	if (cfg->mode != CLIP_RESIZE_SHORTEST_CROP &&
	    cfg->mode != CLIP_RESIZE_SQUASH)
		return cdx_error_set(err, CDX_EINVAL,
		    "preprocess: unknown resize mode %d", cfg->mode);
	if (filter_of(cfg->resample) == NULL)
		return cdx_error_set(err, CDX_EINVAL,
		    "preprocess: unknown resampling filter %d (2 bilinear, "
		    "3 bicubic)", cfg->resample);
	if (cfg->crop_width <= 0 || cfg->crop_width > 16384 ||
	    cfg->crop_height <= 0 || cfg->crop_height > 16384 ||
	    (cfg->mode == CLIP_RESIZE_SHORTEST_CROP &&
	    (cfg->shortest_edge <= 0 || cfg->shortest_edge > 16384)))
		return cdx_error_set(err, CDX_EINVAL,
		    "preprocess: shortest edge %d, output %d x %d out of range "
		    "(1..16384)", cfg->shortest_edge, cfg->crop_width,
		    cfg->crop_height);
	for (int c = 0; c < 3; c++)
		if (!(cfg->std[c] != 0.0f) || !isfinite(cfg->std[c]) ||
		    !isfinite(cfg->mean[c]))
			return cdx_error_set(err, CDX_EINVAL,
			    "preprocess: mean/std of channel %d invalid", c);

	int nw = cfg->crop_width, nh = cfg->crop_height;
	if (cfg->mode == CLIP_RESIZE_SHORTEST_CROP &&
	    clip_resize_dims(img->width, img->height, cfg->shortest_edge,
	    &nw, &nh) != 0)
		return cdx_error_set(err, CDX_EINVAL,
		    "preprocess: %d x %d image resized to shortest edge %d is "
		    "too large", img->width, img->height, cfg->shortest_edge);

	size_t n = (size_t)cfg->crop_width * cfg->crop_height;
	uint8_t *crop = malloc(n * 3);
	if (crop == NULL)
		return cdx_error_set(err, CDX_ENOMEM, "preprocess: no memory");
	int rc = clip_resize_crop(img->rgb, img->width, img->height, nw, nh,
	    cfg->crop_width, cfg->crop_height, cfg->resample, crop, err);
	if (rc != 0) {
		free(crop);
		return rc;
	}
	/* As HF's rescale and normalize: x * (1/255) in double, cast to
	 * float, (x - mean) / std in float. */
	for (int c = 0; c < 3; c++) {
		float lut[256];
		for (int v = 0; v < 256; v++) {
			float x = (float)((double)v * (1.0 / 255.0));
			lut[v] = (x - cfg->mean[c]) / cfg->std[c];
		}
		float *plane = out + (size_t)c * n;
		for (size_t i = 0; i < n; i++)
			plane[i] = lut[crop[i * 3 + c]];
	}
	free(crop);
	return 0;
}
