/*
 * image_tiff.c - TIFF through libtiff: the first page.
 *
 * Rules (docs/IMAGES.md):
 *  - Interleaved (contiguous) strips or tiles of 8 or 16-bit unsigned
 *    samples,
 *    grey (MinIsBlack, MinIsWhite), RGB, palette (8-bit) and CMYK
 *    (Separated, 4 inks) are read sample by sample as Pillow 9.4 reads
 *    them: 16-bit samples keep their high byte (for 16-bit grey Pillow
 *    would clip instead, as for PNG), palette entries their high byte, CMYK
 *    through Pillow's cmyk2rgb; extra samples (alpha) are dropped.
 *  - Anything else (planar-separate data, 1/2/4-bit samples, YCbCr,
 *    old-style JPEG, LogLuv, ...) goes through libtiff's RGBA interface
 *    (TIFFRGBAImage): correct pixels, not promised equal to Pillow's.
 *  - The Orientation tag is applied (as Pillow's exif_transpose does);
 *    DateTimeOriginal comes from the EXIF IFD.
 *  - The pixel limit is checked on the first page's size before anything
 *    is read, and tiles may not be larger than the image (beyond 1024
 *    pixels a side); libtiff reports to this decode's own handlers (nothing is
 *    printed, no process-wide handler is set) and allocates at most 1 GiB
 *    at once.
 */
#include "encoder/clip.h"
#include "encoder/image_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tiffio.h>

struct tiff_mem {
	const uint8_t *d;
	toff_t n, pos;
	char msg[160];         /* libtiff's first error */
};

static tmsize_t
mem_read(thandle_t h, void *buf, tmsize_t len)
{
	struct tiff_mem *m = h;
	if (len <= 0 || m->pos >= m->n)
		return 0;
	toff_t k = (toff_t)len < m->n - m->pos ? (toff_t)len : m->n - m->pos;
	memcpy(buf, m->d + m->pos, (size_t)k);
	m->pos += k;
	return (tmsize_t)k;
}

static tmsize_t
mem_write(thandle_t h, void *buf, tmsize_t len)
{
	(void)h;
	(void)buf;
	(void)len;
	return -1;
}

static toff_t
mem_seek(thandle_t h, toff_t off, int whence)
{
	struct tiff_mem *m = h;
	toff_t base = whence == SEEK_CUR ? m->pos : whence == SEEK_END ?
	    m->n : 0;
	if (off > (toff_t)INT64_MAX - base)
		return (toff_t)-1;
	m->pos = base + off;
	return m->pos;
}

static int
mem_close(thandle_t h)
{
	(void)h;
	return 0;
}

static toff_t
mem_size(thandle_t h)
{
	return ((struct tiff_mem *)h)->n;
}

static int
mem_error(TIFF *tif, void *user, const char *module, const char *fmt,
    va_list ap)
{
	struct tiff_mem *m = user;
	(void)tif;
	(void)module;
	if (m->msg[0] == '\0')
		vsnprintf(m->msg, sizeof(m->msg), fmt, ap);
	return 1;
}

static int
mem_warning(TIFF *tif, void *user, const char *module, const char *fmt,
    va_list ap)
{
	(void)tif;
	(void)user;
	(void)module;
	(void)fmt;
	(void)ap;
	return 1;
}

static int
tiff_fail(const struct tiff_mem *m, const char *what, cdx_error *err)
{
	return cdx_error_set(err, CDX_EFORMAT, "corrupt or truncated TIFF "
	    "(%s)%s%s", what, m->msg[0] != '\0' ? ": " : "", m->msg);
}

/* The first page's layout. */
struct tiff_page {
	uint32_t w, h;
	uint16_t bps, spp, photometric, planar, inkset, sampleformat;
	uint16_t *cmap[3];     /* palette, 1 << bps entries */
};

/* Whether read_samples() reads the page as Pillow does. */
static int
tiff_simple(TIFF *tif, struct tiff_page *p)
{
	if (p->planar != PLANARCONFIG_CONTIG || (p->bps != 8 && p->bps != 16) ||
	    p->sampleformat != SAMPLEFORMAT_UINT)
		return 0;
	switch (p->photometric) {
	case PHOTOMETRIC_MINISBLACK:
	case PHOTOMETRIC_MINISWHITE:
		return p->spp >= 1;
	case PHOTOMETRIC_RGB:
		return p->spp >= 3;
	case PHOTOMETRIC_PALETTE:
		return p->spp == 1 && p->bps == 8 &&
		    TIFFGetField(tif, TIFFTAG_COLORMAP, &p->cmap[0],
		    &p->cmap[1], &p->cmap[2]) == 1;
	case PHOTOMETRIC_SEPARATED:
		return p->spp >= 4 && p->inkset == INKSET_CMYK;
	}
	return 0;
}

/* One stored row (p->w pixels of p->spp samples) to RGB. */
static void
row_to_rgb(const struct tiff_page *p, const uint8_t *in, uint8_t *out)
{
	size_t bs = p->bps / 8;
	for (uint32_t x = 0; x < p->w; x++) {
		uint8_t s[4] = { 0, 0, 0, 0 };
		const uint8_t *px = in + (size_t)x * p->spp * bs;
		for (int c = 0; c < 4 && c < p->spp; c++)
			s[c] = bs == 2 ? (uint8_t)(((const uint16_t *)
			    (const void *)px)[c] >> 8) : px[c];
		uint8_t *o = out + 3 * (size_t)x;
		switch (p->photometric) {
		case PHOTOMETRIC_MINISWHITE:
			s[0] = (uint8_t)(255 - s[0]);
			/* fall through */
		case PHOTOMETRIC_MINISBLACK:
			o[0] = o[1] = o[2] = s[0];
			break;
		case PHOTOMETRIC_RGB:
			memcpy(o, s, 3);
			break;
		case PHOTOMETRIC_PALETTE:
			for (int c = 0; c < 3; c++)
				o[c] = (uint8_t)(p->cmap[c][s[0]] >> 8);
			break;
		case PHOTOMETRIC_SEPARATED: {
			/* Pillow's cmyk2rgb on Adobe-inverted samples */
			uint8_t inv[4] = { (uint8_t)~s[0], (uint8_t)~s[1],
				(uint8_t)~s[2], (uint8_t)~s[3] };
			clip_cmyk_to_rgb(inv, 1);
			memcpy(o, inv, 3);
			break;
		}
		}
	}
}

static int
read_samples(TIFF *tif, const struct tiff_mem *m, const struct tiff_page *p,
    uint8_t *rgb, cdx_error *err)
{
	size_t bpp = (size_t)p->spp * (p->bps / 8);
	int rc = 0;
	if (!TIFFIsTiled(tif)) {
		tmsize_t sl = TIFFScanlineSize(tif);
		if (sl <= 0 || (size_t)sl < bpp * p->w)
			return tiff_fail(m, "scanline size", err);
		uint8_t *line = malloc((size_t)sl);
		if (line == NULL)
			return cdx_error_set(err, CDX_ENOMEM,
			    "TIFF: out of memory");
		for (uint32_t y = 0; y < p->h && rc == 0; y++) {
			if (TIFFReadScanline(tif, line, y, 0) < 0)
				rc = tiff_fail(m, "strip data", err);
			else
				row_to_rgb(p, line, rgb + (size_t)y * p->w * 3);
		}
		free(line);
		return rc;
	}
	uint32_t tw = 0, th = 0;
	TIFFGetField(tif, TIFFTAG_TILEWIDTH, &tw);
	TIFFGetField(tif, TIFFTAG_TILELENGTH, &th);
	tmsize_t ts = TIFFTileSize(tif);
	if (tw == 0 || th == 0 || ts <= 0 ||
	    (uint64_t)ts < (uint64_t)tw * th * bpp)
		return tiff_fail(m, "tile size", err);
	uint8_t *tile = malloc((size_t)ts);
	uint8_t *row = malloc((size_t)tw * 3);
	if (tile == NULL || row == NULL) {
		free(tile);
		free(row);
		return cdx_error_set(err, CDX_ENOMEM, "TIFF: out of memory");
	}
	struct tiff_page tp = *p;
	tp.w = tw;
	for (uint32_t ty = 0; ty < p->h && rc == 0; ty += th) {
		for (uint32_t tx = 0; tx < p->w && rc == 0; tx += tw) {
			if (TIFFReadTile(tif, tile, tx, ty, 0, 0) < 0) {
				rc = tiff_fail(m, "tile data", err);
				break;
			}
			uint32_t cw = p->w - tx < tw ? p->w - tx : tw;
			for (uint32_t y = 0; y < th && ty + y < p->h; y++) {
				row_to_rgb(&tp, tile + (size_t)y * tw * bpp,
				    row);
				memcpy(rgb + ((size_t)(ty + y) * p->w + tx) * 3,
				    row, (size_t)cw * 3);
			}
		}
	}
	free(tile);
	free(row);
	return rc;
}

/* libtiff's RGBA interface, in stored order (the orientation is applied
 * by image.c as for every format). */
static int
read_rgba(TIFF *tif, const struct tiff_mem *m, const struct tiff_page *p,
    int orientation, uint8_t *rgb, cdx_error *err)
{
	/* libtiff flips for orientations 1..4 only and treats 5..8 as
	 * 1..4: asking for the page's own orientation means no flip. */
	static const uint16_t stored[9] = { 1, 1, 2, 3, 4, 1, 2, 3, 4 };
	char emsg[1024] = "";
	TIFFRGBAImage img;
	if (!TIFFRGBAImageOK(tif, emsg) ||
	    !TIFFRGBAImageBegin(&img, tif, 0, emsg))
		return cdx_error_set(err, CDX_EFORMAT,
		    "TIFF layout not supported: %s", emsg);
	img.req_orientation = stored[orientation];
	size_t npix = (size_t)p->w * p->h;
	uint32_t *raster = malloc(npix * sizeof(*raster));
	int rc = 0;
	if (raster == NULL)
		rc = cdx_error_set(err, CDX_ENOMEM, "TIFF: out of memory");
	else if (!TIFFRGBAImageGet(&img, raster, p->w, p->h))
		rc = tiff_fail(m, "image data", err);
	else
		for (size_t i = 0; i < npix; i++) {
			rgb[3 * i] = (uint8_t)TIFFGetR(raster[i]);
			rgb[3 * i + 1] = (uint8_t)TIFFGetG(raster[i]);
			rgb[3 * i + 2] = (uint8_t)TIFFGetB(raster[i]);
		}
	TIFFRGBAImageEnd(&img);
	free(raster);
	return rc;
}

int
clip_tiff_decode(const uint8_t *d, size_t n, const clip_decode_opts *opts,
    int probe_only, clip_image_info *info, int *ow, int *oh, uint8_t **orgb,
    cdx_error *err)
{
	struct tiff_mem m = { d, n, 0, "" };
	struct tiff_page p;
	uint16_t o = 1;
	int rc;

	TIFFOpenOptions *to = TIFFOpenOptionsAlloc();
	if (to == NULL)
		return cdx_error_set(err, CDX_ENOMEM, "TIFF: out of memory");
	TIFFOpenOptionsSetErrorHandlerExtR(to, mem_error, &m);
	TIFFOpenOptionsSetWarningHandlerExtR(to, mem_warning, &m);
	TIFFOpenOptionsSetMaxSingleMemAlloc(to, (tmsize_t)1 << 30);
	/* "m": no memory mapping (read through mem_read only) */
	TIFF *tif = TIFFClientOpenExt("tiff", "rm", &m, mem_read, mem_write,
	    mem_seek, mem_close, mem_size, NULL, NULL, to);
	TIFFOpenOptionsFree(to);
	if (tif == NULL)
		return tiff_fail(&m, "header", err);

	memset(&p, 0, sizeof(p));
	if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &p.w) ||
	    !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &p.h) || p.w == 0 ||
	    p.h == 0 || p.w > INT32_MAX || p.h > INT32_MAX) {
		rc = cdx_error_set(err, CDX_EFORMAT,
		    "corrupt TIFF header: size %u x %u", p.w, p.h);
		goto out_close;
	}
	TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &p.bps);
	TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &p.spp);
	TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &p.planar);
	TIFFGetFieldDefaulted(tif, TIFFTAG_INKSET, &p.inkset);
	TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &p.sampleformat);
	if (!TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &p.photometric))
		p.photometric = p.spp >= 3 ? PHOTOMETRIC_RGB :
		    PHOTOMETRIC_MINISBLACK;
	TIFFGetFieldDefaulted(tif, TIFFTAG_ORIENTATION, &o);
	info->orientation = o >= 1 && o <= 8 ? o : 1;
	/* DateTimeOriginal: the file is itself the EXIF blob libexif reads,
	 * worth parsing only where it has an EXIF IFD */
	toff_t exif_ifd = 0;
	int orientation_unused;
	if (TIFFGetField(tif, TIFFTAG_EXIFIFD, &exif_ifd) && exif_ifd != 0)
		clip_exif_read(d, n, &orientation_unused, &info->capture_time);
	int swap = info->orientation >= 5;
	info->width = (int)(swap ? p.h : p.w);
	info->height = (int)(swap ? p.w : p.h);
	if ((rc = clip_check_limit(opts, CLIP_FORMAT_TIFF, p.w, p.h, err)) !=
	    0 || probe_only)
		goto out_close;
	/* Tiles are buffers too (both read paths allocate one): no larger
	 * than the image, rounded up to the 16-pixel grid, beyond 1024. */
	uint32_t tw = 0, th = 0;
	if (TIFFIsTiled(tif) && (!TIFFGetField(tif, TIFFTAG_TILEWIDTH, &tw) ||
	    !TIFFGetField(tif, TIFFTAG_TILELENGTH, &th) || tw == 0 ||
	    th == 0 || (tw > 1024 && tw > p.w + 16) ||
	    (th > 1024 && th > p.h + 16))) {
		rc = cdx_error_set(err, CDX_EFORMAT, "corrupt TIFF: tiles of "
		    "%u x %u for a %u x %u image", tw, th, p.w, p.h);
		goto out_close;
	}

	uint8_t *buf = malloc((size_t)p.w * p.h * 3);
	if (buf == NULL) {
		rc = cdx_error_set(err, CDX_ENOMEM,
		    "no memory for a %u x %u image", p.w, p.h);
		goto out_close;
	}
	if (tiff_simple(tif, &p))
		rc = read_samples(tif, &m, &p, buf, err);
	else
		rc = read_rgba(tif, &m, &p, info->orientation, buf, err);
	if (rc != 0) {
		free(buf);
		goto out_close;
	}
	*ow = (int)p.w;
	*oh = (int)p.h;
	*orgb = buf;
out_close:
	TIFFClose(tif);
	return rc;
}
