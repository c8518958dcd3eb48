/*
 * client_dupes_fixtures.h - header-only generator of synthetic photos and
 * their transformed copies (JPEG re-compression, 50 % resize, 5 % crop,
 * EXIF rotation, brightness), for tests/client_dupes.c and the threshold
 * calibration in bench/dupes_bench.c.  Every function is static inline;
 * failures return -1 (no asserts, so a benchmark can use it too).
 */
#ifndef CDX_CLIENT_DUPES_FIXTURES_H
#define CDX_CLIENT_DUPES_FIXTURES_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

typedef struct df_image {
	int w, h;
	uint8_t *rgb;           /* w * h * 3, malloc'd */
} df_image;

static inline uint64_t
df_rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static inline int
df_alloc(df_image *im, int w, int h)
{
	im->w = w;
	im->h = h;
	im->rgb = malloc((size_t)w * h * 3);
	return im->rgb ? 0 : -1;
}

static inline void
df_free(df_image *im)
{
	free(im->rgb);
	im->rgb = NULL;
}

static inline uint8_t
df_clamp(int v)
{
	return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* A "photo": a two-colour gradient sky, a ground band, and a few filled
 * ellipses and rectangles, all drawn from seed.  Different seeds give
 * clearly different pictures; the same seed at another size gives the same
 * picture scaled. */
static inline int
df_photo(df_image *im, uint64_t seed, int w, int h)
{
	uint64_t s = seed * 0x2545f4914f6cdd1dULL + 1;
	int c0[3], c1[3], gr[3], horizon;
	struct { int kind, col[3]; double cx, cy, rx, ry; } sh[6];

	if (df_alloc(im, w, h) != 0)
		return -1;
	for (int k = 0; k < 3; k++) {
		c0[k] = (int)(df_rnd(&s) % 256);
		c1[k] = (int)(df_rnd(&s) % 256);
		gr[k] = (int)(df_rnd(&s) % 256);
	}
	horizon = (int)(h * (0.45 + 0.3 * (double)(df_rnd(&s) % 1000) / 1000));
	for (int i = 0; i < 6; i++) {
		sh[i].kind = (int)(df_rnd(&s) % 2);
		for (int k = 0; k < 3; k++)
			sh[i].col[k] = (int)(df_rnd(&s) % 256);
		sh[i].cx = (double)(df_rnd(&s) % 1000) / 1000;
		sh[i].cy = (double)(df_rnd(&s) % 1000) / 1000;
		sh[i].rx = 0.05 + (double)(df_rnd(&s) % 1000) / 4000;
		sh[i].ry = 0.05 + (double)(df_rnd(&s) % 1000) / 4000;
	}
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			uint8_t *p = im->rgb + ((size_t)y * w + x) * 3;
			double fy = (double)y / h, fx = (double)x / w;
			for (int k = 0; k < 3; k++)
				p[k] = y < horizon ? df_clamp((int)(c0[k] + (c1[k] - c0[k]) *
				    fy)) : df_clamp(gr[k] + (int)(30 * fx));
			for (int i = 0; i < 6; i++) {
				double dx = (fx - sh[i].cx) / sh[i].rx;
				double dy = (fy - sh[i].cy) / sh[i].ry;
				int in = sh[i].kind ? dx * dx + dy * dy <= 1 :
				    dx >= -1 && dx <= 1 && dy >= -1 && dy <= 1;
				if (in)
					for (int k = 0; k < 3; k++)
						p[k] = (uint8_t)sh[i].col[k];
			}
		}
	return 0;
}

/* Box-filtered half size. */
static inline int
df_half(const df_image *a, df_image *o)
{
	if (df_alloc(o, a->w / 2, a->h / 2) != 0)
		return -1;
	for (int y = 0; y < o->h; y++)
		for (int x = 0; x < o->w; x++)
			for (int k = 0; k < 3; k++) {
				const uint8_t *p = a->rgb + ((size_t)(2 * y) * a->w + 2 * x) *
				    3 + k;
				size_t row = (size_t)a->w * 3;
				o->rgb[((size_t)y * o->w + x) * 3 + k] = (uint8_t)((p[0] +
				    p[3] + p[row] + p[row + 3] + 2) / 4);
			}
	return 0;
}

/* Keeps the centre, cutting frac of the width and height in all. */
static inline int
df_crop(const df_image *a, double frac, df_image *o)
{
	int dx = (int)(a->w * frac / 2), dy = (int)(a->h * frac / 2);
	if (df_alloc(o, a->w - 2 * dx, a->h - 2 * dy) != 0)
		return -1;
	for (int y = 0; y < o->h; y++)
		memcpy(o->rgb + (size_t)y * o->w * 3, a->rgb + ((size_t)(y + dy) *
		    a->w + dx) * 3, (size_t)o->w * 3);
	return 0;
}

/* Multiplies every sample by factor. */
static inline int
df_bright(const df_image *a, double factor, df_image *o)
{
	if (df_alloc(o, a->w, a->h) != 0)
		return -1;
	for (size_t i = 0; i < (size_t)a->w * a->h * 3; i++)
		o->rgb[i] = df_clamp((int)(a->rgb[i] * factor + 0.5));
	return 0;
}

/* Rotated 90 degrees counter-clockwise: stored this way with EXIF
 * orientation 6 ("rotate 90 CW to display"), it displays as a. */
static inline int
df_rot_ccw(const df_image *a, df_image *o)
{
	if (df_alloc(o, a->h, a->w) != 0)
		return -1;
	for (int y = 0; y < a->h; y++)
		for (int x = 0; x < a->w; x++)
			memcpy(o->rgb + ((size_t)(a->w - 1 - x) * o->w + y) * 3,
			    a->rgb + ((size_t)y * a->w + x) * 3, 3);
	return 0;
}

/* JPEG bytes of im at quality q (malloc'd into *out, *len); with an EXIF
 * APP1 segment carrying orientation when orientation > 1. */
static inline int
df_jpeg(const df_image *im, int q, int orientation, uint8_t **out,
    size_t *len)
{
	tjhandle tj = tjInitCompress();
	unsigned char *j = NULL;
	unsigned long jl = 0;
	int rc = -1;

	if (tj == NULL)
		return -1;
	if (tjCompress2(tj, im->rgb, im->w, 0, im->h, TJPF_RGB, &j, &jl,
	    TJSAMP_420, q, 0) != 0)
		goto out_destroy;
	static const uint8_t app1[] = {
		0xff, 0xe1, 0x00, 0x22, 'E', 'x', 'i', 'f', 0, 0,
		'I', 'I', 0x2a, 0x00, 0x08, 0x00, 0x00, 0x00,     /* TIFF, IFD at 8 */
		0x01, 0x00,                                       /* one entry */
		0x12, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00,   /* 0x0112 SHORT 1 */
		0x00, 0x00, 0x00, 0x00,                           /* value */
		0x00, 0x00, 0x00, 0x00,                           /* no next IFD */
	};
	size_t extra = orientation > 1 ? sizeof(app1) : 0;
	uint8_t *b = malloc(jl + extra);
	if (b == NULL)
		goto out_destroy;
	memcpy(b, j, 2);                                          /* SOI */
	if (extra) {
		memcpy(b + 2, app1, sizeof(app1));
		b[2 + 28] = (uint8_t)orientation;
	}
	memcpy(b + 2 + extra, j + 2, jl - 2);
	*out = b;
	*len = jl + extra;
	rc = 0;
out_destroy:
	tjFree(j);
	tjDestroy(tj);
	return rc;
}

static inline int
df_write(const char *path, const uint8_t *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (f == NULL)
		return -1;
	size_t n = fwrite(data, 1, len, f);
	return fclose(f) == 0 && n == len ? 0 : -1;
}

static inline int
df_write_jpeg(const char *path, const df_image *im, int q, int orientation)
{
	uint8_t *b = NULL;
	size_t n = 0;
	if (df_jpeg(im, q, orientation, &b, &n) != 0)
		return -1;
	int rc = df_write(path, b, n);
	free(b);
	return rc;
}

/* The transformed copies of the calibration set. */
enum {
	DF_Q90, DF_Q70, DF_Q50, DF_HALF, DF_CROP5, DF_EXIF_ROT, DF_BRIGHT,
	DF_N_TRANSFORMS
};

static inline const char *
df_transform_name(int t)
{
	static const char *const n[] = { "jpeg q90", "jpeg q70", "jpeg q50",
		"resize 50%", "crop 5%", "exif rotation", "brightness +8%" };
	return t >= 0 && t < DF_N_TRANSFORMS ? n[t] : "?";
}

/* Writes copy t of original a (saved at quality 95) to path. */
static inline int
df_write_transform(const char *path, const df_image *a, int t)
{
	df_image o = { 0 };
	int rc;
	switch (t) {
	case DF_Q90: return df_write_jpeg(path, a, 90, 1);
	case DF_Q70: return df_write_jpeg(path, a, 70, 1);
	case DF_Q50: return df_write_jpeg(path, a, 50, 1);
	case DF_HALF: rc = df_half(a, &o); break;
	case DF_CROP5: rc = df_crop(a, 0.05, &o); break;
	case DF_EXIF_ROT: rc = df_rot_ccw(a, &o); break;
	case DF_BRIGHT: rc = df_bright(a, 1.08, &o); break;
	default: return -1;
	}
	if (rc == 0)
		rc = df_write_jpeg(path, &o, 90, t == DF_EXIF_ROT ? 6 : 1);
	df_free(&o);
	return rc;
}

#endif
