/*
 * image.c - JPEG (libjpeg-turbo's TurboJPEG API) and PNG (libspng)
 * decoding into 8-bit RGB with the EXIF orientation applied.
 *
 * Rules (docs/IMAGES.md):
 *  - The format is detected from the first bytes, never from a name.
 *  - The pixel limit is checked on the header's full size before any pixel
 *    buffer is allocated.
 *  - A JPEG must contain an end-of-image marker after its scan data; without
 *    one it is truncated (CDX_EFORMAT) rather than grey-filled.  libjpeg's
 *    other warnings (extraneous bytes, corrupt entropy data inside a
 *    complete file) are accepted, as Pillow accepts them.
 *  - CMYK/YCCK JPEGs are read as Adobe (inverted) CMYK, as Pillow does, and
 *    converted with Pillow's cmyk2rgb formula.
 *  - 16-bit PNG samples keep their high byte.
 *  - Alpha is dropped without compositing.
 */
#include "encoder/clip.h"
#include "encoder/image_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spng.h>
#include <turbojpeg.h>

static const uint8_t png_sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n' };

static int
detect_format(const uint8_t *d, size_t n)
{
	if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF)
		return CLIP_FORMAT_JPEG;
	if (n >= 8 && memcmp(d, png_sig, 8) == 0)
		return CLIP_FORMAT_PNG;
	return CLIP_FORMAT_UNKNOWN;
}

static int
unknown_format(size_t n, cdx_error *err)
{
	if (n == 0)
		return cdx_error_set(err, CDX_EFORMAT, "empty file (0 bytes)");
	return cdx_error_set(err, CDX_EFORMAT,
	    "not a JPEG or PNG image (unrecognised signature, %zu bytes)", n);
}

static int
check_limit(const clip_decode_opts *opts, int fmt, uint64_t w, uint64_t h,
    cdx_error *err)
{
	uint64_t max = opts != NULL && opts->max_pixels != 0 ?
	    opts->max_pixels : CLIP_DEFAULT_MAX_PIXELS;
	if (w * h > max)
		return cdx_error_set(err, CDX_ETOOBIG,
		    "%s image is %llu x %llu (%llu pixels), over the limit of "
		    "%llu pixels", fmt == CLIP_FORMAT_JPEG ? "JPEG" : "PNG",
		    (unsigned long long)w, (unsigned long long)h,
		    (unsigned long long)(w * h), (unsigned long long)max);
	return 0;
}

/* ---- JPEG ---------------------------------------------------------------- */

/* What a walk over a JPEG's markers finds. */
struct jpeg_layout {
	const uint8_t *exif;   /* APP1 payload starting "Exif\0\0", or NULL */
	size_t exif_len;
	int sof_w, sof_h, sof_comps; /* from the first SOFn, 0 if none */
	int complete;          /* an EOI marker follows scan data */
};

static int
is_sof(uint8_t m)
{
	return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
}

/* Walks the marker segments and skips entropy-coded data (where 0xFF is
 * followed by 0x00 or a restart marker) up to the EOI marker, or only up to
 * the first scan when stop_at_sos.  Tolerates stray bytes between segments
 * as libjpeg does. */
static void
jpeg_walk(const uint8_t *d, size_t n, int stop_at_sos, struct jpeg_layout *L)
{
	size_t p = 2;
	int saw_sos = 0;

	memset(L, 0, sizeof(*L));
	while (p < n) {
		if (d[p] != 0xFF) {
			const uint8_t *q = memchr(d + p, 0xFF, n - p);
			if (q == NULL)
				return;
			p = (size_t)(q - d);
			continue;
		}
		if (p + 1 >= n)
			return;
		uint8_t m = d[p + 1];
		if (m == 0xFF) {
			p++;
			continue;
		}
		if (m == 0x00 || m == 0x01 || m == 0xD8 ||
		    (m >= 0xD0 && m <= 0xD7)) {
			p += 2;
			continue;
		}
		if (m == 0xD9) {
			L->complete = saw_sos;
			return;
		}
		if (p + 4 > n)
			return;
		size_t len = (size_t)d[p + 2] << 8 | d[p + 3];
		if (len < 2)
			return;
		const uint8_t *seg = d + p + 4;
		size_t avail = n - (p + 4) < len - 2 ? n - (p + 4) : len - 2;
		if (m == 0xE1 && L->exif == NULL && avail == len - 2 &&
		    avail >= 6 && memcmp(seg, "Exif\0\0", 6) == 0) {
			L->exif = seg;
			L->exif_len = avail;
		}
		if (is_sof(m) && L->sof_comps == 0 && avail >= 6) {
			L->sof_h = seg[1] << 8 | seg[2];
			L->sof_w = seg[3] << 8 | seg[4];
			L->sof_comps = seg[5];
		}
		if (m == 0xDA) {
			if (stop_at_sos)
				return;
			saw_sos = 1;
		}
		p += 2 + len;
	}
}

/* TurboJPEG's scaled size: ceil(dim * num / denom). */
static int
tj_scaled(int dim, tjscalingfactor sf)
{
	return (int)(((int64_t)dim * sf.num + sf.denom - 1) / sf.denom);
}

/* The smallest factor <= 1 whose scaled shorter side stays >= min_short. */
static tjscalingfactor
jpeg_pick_scale(int w, int h, int min_short)
{
	tjscalingfactor best = { 1, 1 };
	if (min_short <= 0)
		return best;
	int nsf = 0;
	tjscalingfactor *sf = tjGetScalingFactors(&nsf);
	for (int i = 0; sf != NULL && i < nsf; i++) {
		if (sf[i].num <= 0 || sf[i].denom <= 0 ||
		    sf[i].num > sf[i].denom)
			continue;
		int sw = tj_scaled(w, sf[i]), sh = tj_scaled(h, sf[i]);
		if ((sw < sh ? sw : sh) < min_short)
			continue;
		/* sf[i] < best  <=>  num_i * denom_b < num_b * denom_i */
		if ((int64_t)sf[i].num * best.denom <
		    (int64_t)best.num * sf[i].denom)
			best = sf[i];
	}
	return best;
}

static int
jpeg_header(tjhandle tj, const uint8_t *d, size_t n,
    const struct jpeg_layout *L, int *w, int *h, int *cmyk, cdx_error *err)
{
	int subsamp = 0, cs = 0;
	if (n > ULONG_MAX)
		return cdx_error_set(err, CDX_ETOOBIG, "JPEG too large");
	/* A warning (extraneous bytes before a marker) still yields the
	 * header. */
	if (tjDecompressHeader3(tj, d, (unsigned long)n, w, h, &subsamp,
	    &cs) == 0 || (tjGetErrorCode(tj) == TJERR_WARNING && *w > 0 &&
	    *h > 0)) {
		*cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
		return 0;
	}
	/* TurboJPEG 2.x refuses unusual sampling factors in the header call
	 * only; the decoder itself handles them. */
	if (L->sof_comps > 0 && L->sof_w > 0 && L->sof_h > 0 &&
	    strstr(tjGetErrorStr2(tj), "subsampling") != NULL) {
		*w = L->sof_w;
		*h = L->sof_h;
		*cmyk = L->sof_comps == 4;
		return 0;
	}
	return cdx_error_set(err, CDX_EFORMAT, "corrupt JPEG header: %s",
	    tjGetErrorStr2(tj));
}

/* Adobe (inverted) CMYK to RGB as Pillow: C = 255 - c etc., then
 * R = 255 - K - C * (255 - K) / 255 with its rounding.  In place: each
 * 4-byte input becomes a 3-byte output at a lower address. */
static void
cmyk_to_rgb(uint8_t *buf, size_t npix)
{
	for (size_t i = 0; i < npix; i++) {
		const uint8_t *in = buf + 4 * i;
		int nk = in[3]; /* 255 - (255 - k) */
		uint8_t o[3];
		for (int c = 0; c < 3; c++) {
			int t = (255 - in[c]) * nk + 128;
			int v = nk - (((t >> 8) + t) >> 8);
			o[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
		}
		memcpy(buf + 3 * i, o, 3);
	}
}

static int
jpeg_decode(const uint8_t *d, size_t n, const clip_decode_opts *opts,
    int probe_only, clip_image_info *info, int *ow, int *oh, uint8_t **orgb,
    cdx_error *err)
{
	struct jpeg_layout L;
	int w = 0, h = 0, cmyk = 0, rc;

	jpeg_walk(d, n, probe_only, &L);
	info->format = CLIP_FORMAT_JPEG;
	clip_exif_read(L.exif, L.exif_len, &info->orientation,
	    &info->capture_time);

	tjhandle tj = tjInitDecompress();
	if (tj == NULL)
		return cdx_error_set(err, CDX_ENOMEM,
		    "cannot create a JPEG decoder");
	rc = jpeg_header(tj, d, n, &L, &w, &h, &cmyk, err);
	if (rc != 0)
		goto out_destroy;
	if (w <= 0 || h <= 0) {
		rc = cdx_error_set(err, CDX_EFORMAT,
		    "corrupt JPEG header: size %d x %d", w, h);
		goto out_destroy;
	}
	int swap = info->orientation >= 5;
	info->width = swap ? h : w;
	info->height = swap ? w : h;
	if ((rc = check_limit(opts, CLIP_FORMAT_JPEG, (uint64_t)w,
	    (uint64_t)h, err)) != 0)
		goto out_destroy;
	if (probe_only)
		goto out_destroy;
	if (!L.complete) {
		rc = cdx_error_set(err, CDX_EFORMAT,
		    "truncated JPEG (%zu bytes): no end-of-image marker after "
		    "the image data", n);
		goto out_destroy;
	}

	tjscalingfactor sf = jpeg_pick_scale(w, h,
	    opts != NULL ? opts->min_short : 0);
	int sw = tj_scaled(w, sf), sh = tj_scaled(h, sf);
	int pf = cmyk ? TJPF_CMYK : TJPF_RGB;
	size_t bpp = (size_t)tjPixelSize[pf];
	uint8_t *buf = malloc((size_t)sw * (size_t)sh * bpp);
	if (buf == NULL) {
		rc = cdx_error_set(err, CDX_ENOMEM,
		    "no memory for a %d x %d image", sw, sh);
		goto out_destroy;
	}
	if (tjDecompress2(tj, d, (unsigned long)n, buf, sw, 0, sh, pf,
	    TJFLAG_LIMITSCANS) != 0 && tjGetErrorCode(tj) != TJERR_WARNING) {
		rc = cdx_error_set(err, CDX_EFORMAT, "corrupt JPEG: %s",
		    tjGetErrorStr2(tj));
		free(buf);
		goto out_destroy;
	}
	if (cmyk) {
		cmyk_to_rgb(buf, (size_t)sw * sh);
		uint8_t *shrunk = realloc(buf, (size_t)sw * sh * 3);
		if (shrunk != NULL)
			buf = shrunk;
	}
	*ow = sw;
	*oh = sh;
	*orgb = buf;
	rc = 0;
out_destroy:
	tjDestroy(tj);
	return rc;
}

/* ---- PNG ----------------------------------------------------------------- */

static int
png_error(int e, cdx_error *err)
{
	if (e == SPNG_EMEM)
		return cdx_error_set(err, CDX_ENOMEM, "PNG: out of memory");
	if (e == SPNG_EOF)
		return cdx_error_set(err, CDX_EFORMAT,
		    "truncated PNG: the data ends early");
	return cdx_error_set(err, CDX_EFORMAT, "corrupt PNG: %s",
	    spng_strerror(e));
}

/* Expands decoded 16-bit gray (host-endian) to RGB, keeping the high byte. */
static void
gray16_to_rgb(const uint16_t *in, uint8_t *out, size_t npix)
{
	for (size_t i = 0; i < npix; i++) {
		uint8_t v = (uint8_t)(in[i] >> 8);
		out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = v;
	}
}

/* As Pillow's getexif(): without an EXIF Orientation tag, the last text
 * chunk (before IDAT) keyed "XML:com.adobe.xmp" may give one. */
static int
png_xmp_orientation(spng_ctx *ctx)
{
	uint32_t n = 0;
	int o = 0;
	if (spng_get_text(ctx, NULL, &n) != 0 || n == 0 || n > 4096)
		return 1;
	struct spng_text *t = calloc(n, sizeof(*t));
	if (t == NULL)
		return 1;
	if (spng_get_text(ctx, t, &n) == 0)
		for (uint32_t i = 0; i < n; i++)
			if (strcmp(t[i].keyword, "XML:com.adobe.xmp") == 0)
				o = clip_xmp_orientation(t[i].text,
				    t[i].length);
	free(t);
	return o >= 1 && o <= 8 ? o : 1;
}

static int
png_decode(const uint8_t *d, size_t n, const clip_decode_opts *opts,
    int probe_only, clip_image_info *info, int *ow, int *oh, uint8_t **orgb,
    cdx_error *err)
{
	struct spng_ihdr ihdr;
	struct spng_exif exif;
	int rc, e;

	info->format = CLIP_FORMAT_PNG;
	spng_ctx *ctx = spng_ctx_new(0);
	if (ctx == NULL)
		return cdx_error_set(err, CDX_ENOMEM,
		    "cannot create a PNG decoder");
	spng_set_chunk_limits(ctx, (size_t)1 << 26, (size_t)1 << 26);
	if ((e = spng_set_png_buffer(ctx, d, n)) != 0 ||
	    (e = spng_get_ihdr(ctx, &ihdr)) != 0) {
		rc = png_error(e, err);
		goto out_free_ctx;
	}
	if (ihdr.width == 0 || ihdr.height == 0 || ihdr.width > INT_MAX ||
	    ihdr.height > INT_MAX) {
		rc = cdx_error_set(err, CDX_EFORMAT,
		    "corrupt PNG header: size %u x %u", ihdr.width,
		    ihdr.height);
		goto out_free_ctx;
	}
	int has_orientation = 0;
	if (spng_get_exif(ctx, &exif) == 0)
		has_orientation = clip_exif_read((const uint8_t *)exif.data,
		    exif.length, &info->orientation, &info->capture_time);
	if (!has_orientation)
		info->orientation = png_xmp_orientation(ctx);
	int w = (int)ihdr.width, h = (int)ihdr.height;
	int swap = info->orientation >= 5;
	info->width = swap ? h : w;
	info->height = swap ? w : h;
	if ((rc = check_limit(opts, CLIP_FORMAT_PNG, ihdr.width, ihdr.height,
	    err)) != 0 || probe_only)
		goto out_free_ctx;

	int gray16 = ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE &&
	    ihdr.bit_depth == 16;
	int fmt = gray16 ? SPNG_FMT_PNG : SPNG_FMT_RGB8;
	size_t size = 0;
	if ((e = spng_decoded_image_size(ctx, fmt, &size)) != 0) {
		rc = png_error(e, err);
		goto out_free_ctx;
	}
	size_t npix = (size_t)w * (size_t)h;
	uint8_t *buf = malloc(size > npix * 3 ? size : npix * 3);
	if (buf == NULL) {
		rc = cdx_error_set(err, CDX_ENOMEM,
		    "no memory for a %d x %d image", w, h);
		goto out_free_ctx;
	}
	if ((e = spng_decode_image(ctx, buf, size, fmt, 0)) != 0) {
		rc = png_error(e, err);
		free(buf);
		goto out_free_ctx;
	}
	if (gray16) {
		uint8_t *rgb = malloc(npix * 3);
		if (rgb == NULL) {
			free(buf);
			rc = cdx_error_set(err, CDX_ENOMEM,
			    "no memory for a %d x %d image", w, h);
			goto out_free_ctx;
		}
		gray16_to_rgb((const uint16_t *)(void *)buf, rgb, npix);
		free(buf);
		buf = rgb;
	}
	*ow = w;
	*oh = h;
	*orgb = buf;
	rc = 0;
out_free_ctx:
	spng_ctx_free(ctx);
	return rc;
}

/* ---- orientation ----------------------------------------------------------- */

/* Returns a new w x h (as displayed) buffer holding `src` (sw x sh, as
 * stored) turned upright for EXIF orientation o (2..8), or NULL. */
static uint8_t *
orient(const uint8_t *src, int sw, int sh, int o, int *ow, int *oh)
{
	int swap = o >= 5;
	int w = swap ? sh : sw, h = swap ? sw : sh;
	/* Source address of output pixel (x, y) = base + x * dx + y * dy. */
	ptrdiff_t px = 3, row = (ptrdiff_t)sw * 3;
	ptrdiff_t first = 0, dx = px, dy = row;
	switch (o) {
	case 2: first = (ptrdiff_t)(sw - 1) * px; dx = -px; dy = row; break;
	case 3: first = (ptrdiff_t)(sh - 1) * row + (ptrdiff_t)(sw - 1) * px;
		dx = -px; dy = -row; break;
	case 4: first = (ptrdiff_t)(sh - 1) * row; dx = px; dy = -row; break;
	case 5: first = 0; dx = row; dy = px; break;
	case 6: first = (ptrdiff_t)(sh - 1) * row; dx = -row; dy = px; break;
	case 7: first = (ptrdiff_t)(sh - 1) * row + (ptrdiff_t)(sw - 1) * px;
		dx = -row; dy = -px; break;
	case 8: first = (ptrdiff_t)(sw - 1) * px; dx = row; dy = -px; break;
	}
	uint8_t *out = malloc((size_t)w * (size_t)h * 3);
	if (out == NULL)
		return NULL;
	/* Tiles keep both the reads and the writes in cache for transposes. */
	enum { T = 32 };
	for (int by = 0; by < h; by += T) {
		int ey = by + T < h ? by + T : h;
		for (int bx = 0; bx < w; bx += T) {
			int ex = bx + T < w ? bx + T : w;
			for (int y = by; y < ey; y++) {
				const uint8_t *s = src + first + y * dy + bx * dx;
				uint8_t *dst = out + ((size_t)y * w + bx) * 3;
				for (int x = bx; x < ex; x++) {
					dst[0] = s[0];
					dst[1] = s[1];
					dst[2] = s[2];
					dst += 3;
					s += dx;
				}
			}
		}
	}
	*ow = w;
	*oh = h;
	return out;
}

/* ---- public ------------------------------------------------------------------ */

static int
decode_any(const void *data, size_t len, const clip_decode_opts *opts,
    int probe_only, clip_image_info *info, int *w, int *h, uint8_t **rgb,
    cdx_error *err)
{
	const uint8_t *d = data;
	if (data == NULL && len != 0)
		return cdx_error_set(err, CDX_EINVAL, "no data");
	memset(info, 0, sizeof(*info));
	info->orientation = 1;
	info->capture_time = INT64_MIN;
	switch (detect_format(d, len)) {
	case CLIP_FORMAT_JPEG:
		return jpeg_decode(d, len, opts, probe_only, info, w, h, rgb,
		    err);
	case CLIP_FORMAT_PNG:
		return png_decode(d, len, opts, probe_only, info, w, h, rgb,
		    err);
	}
	return unknown_format(len, err);
}

int
clip_image_probe(const void *data, size_t len, clip_image_info *out,
    cdx_error *err)
{
	clip_image_info info;
	int w, h;
	uint8_t *rgb = NULL;
	if (out == NULL)
		return cdx_error_set(err, CDX_EINVAL, "probe: no output");
	/* The probe accepts any size: only decoding is limited. */
	clip_decode_opts o = { .max_pixels = UINT64_MAX, .min_short = 0 };
	int rc = decode_any(data, len, &o, 1, &info, &w, &h, &rgb, err);
	if (rc == 0)
		*out = info;
	return rc;
}

int
clip_image_decode(const void *data, size_t len, const clip_decode_opts *opts,
    clip_image *out, cdx_error *err)
{
	clip_image_info info;
	int w = 0, h = 0;
	uint8_t *rgb = NULL;
	if (out == NULL)
		return cdx_error_set(err, CDX_EINVAL, "decode: no output");
	int rc = decode_any(data, len, opts, 0, &info, &w, &h, &rgb, err);
	if (rc != 0)
		return rc;
	if (info.orientation != 1) {
		int ow, oh;
		uint8_t *up = orient(rgb, w, h, info.orientation, &ow, &oh);
		free(rgb);
		if (up == NULL)
			return cdx_error_set(err, CDX_ENOMEM,
			    "no memory to rotate a %d x %d image", w, h);
		rgb = up;
		w = ow;
		h = oh;
	}
	out->width = w;
	out->height = h;
	out->rgb = rgb;
	out->info = info;
	return 0;
}

/* Files larger than this are refused before reading (no JPEG or PNG within
 * the default pixel limit needs it). */
#define CLIP_MAX_FILE_BYTES ((size_t)1 << 30)

int
clip_image_load(const char *path, const clip_decode_opts *opts,
    clip_image *out, cdx_error *err)
{
	struct stat st;
	int rc;

	if (path == NULL || out == NULL)
		return cdx_error_set(err, CDX_EINVAL, "load: no path or output");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		return cdx_error_set(err, cdx_from_errno(e), "%s: %s", path,
		    strerror(e));
	}
	if (fstat(fd, &st) != 0) {
		int e = errno;
		rc = cdx_error_set(err, cdx_from_errno(e), "%s: %s", path,
		    strerror(e));
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = cdx_error_set(err, CDX_EIO, "%s: not a regular file", path);
		goto out_close;
	}
	if ((uint64_t)st.st_size > CLIP_MAX_FILE_BYTES) {
		rc = cdx_error_set(err, CDX_ETOOBIG,
		    "%s: %lld bytes, over the %zu-byte file limit", path,
		    (long long)st.st_size, CLIP_MAX_FILE_BYTES);
		goto out_close;
	}
	/* read(), not mmap(): a file shrinking under us must not SIGBUS. */
	size_t cap = (size_t)st.st_size, len = 0;
	uint8_t *buf = malloc(cap + 1);
	if (buf == NULL) {
		rc = cdx_error_set(err, CDX_ENOMEM, "%s: no memory for %zu bytes",
		    path, cap);
		goto out_close;
	}
	for (;;) {
		ssize_t r = read(fd, buf + len, cap - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			rc = cdx_error_set(err, cdx_from_errno(e), "%s: %s",
			    path, strerror(e));
			goto out_free_buf;
		}
		if (r == 0 || (len += (size_t)r) == cap)
			break;
	}
	rc = clip_image_decode(buf, len, opts, out, err);
	if (rc != 0 && err != NULL) {
		char msg[CDX_ERRMSG_MAX];
		memcpy(msg, err->msg, sizeof(msg));
		cdx_error_set(err, rc, "%s: %s", path, msg);
	}
out_free_buf:
	free(buf);
out_close:
	close(fd);
	return rc;
}

void
clip_image_free(clip_image *img)
{
	if (img == NULL)
		return;
	free(img->rgb);
	img->rgb = NULL;
	img->width = img->height = 0;
}
