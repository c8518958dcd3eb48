/*
 * image_bmp.c - BMP through stb_image (Debian's libstb-dev header,
 * compiled for BMP only in image_stb.c).
 *
 * Rules (docs/IMAGES.md):
 *  - The size comes from stb_image's header reading (stbi_info), and the
 *    pixel limit is checked before stb_image decodes (it allocates the
 *    whole image at once).
 *  - 1, 4, 8, 16, 24 and 32-bit BMPs, bottom-up or top-down, with
 *    BI_BITFIELDS masks; alpha is dropped.  RLE-compressed BMPs are not
 *    read by stb_image: CDX_EFORMAT.
 *  - 16-bit BMPs: stb_image widens an n-bit sample by repeating its bits,
 *    Pillow (unpack.c, BGR;15 and BGR;16) by v * 255 / (2^n - 1),
 *    truncated; the bits repeated are recovered and widened as Pillow
 *    does (bmp_widen_16), so the pixels equal Pillow's.
 *  - stb_image reads past the end of a truncated file as zeros: a file
 *    shorter than its pixel array (offset + rows as the header sizes
 *    them) is refused as truncated first.
 */
#include "encoder/clip.h"
#include "encoder/image_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>


static uint32_t
le32(const uint8_t *p)
{
	return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[1] << 8 | p[0];
}

/* Whether the file holds the whole pixel array its header promises (an
 * uncompressed or BI_BITFIELDS BMP; stb_image refuses the others). */
static int
bmp_complete(const uint8_t *d, size_t n, int w, int h)
{
	if (n < 30)
		return 0;
	uint32_t hsz = le32(d + 14);
	unsigned bpp = hsz == 12 ? (unsigned)(d[24] | d[25] << 8) :
	    (unsigned)(d[28] | d[29] << 8);
	uint64_t row = ((uint64_t)w * bpp + 31) / 32 * 4;
	return (uint64_t)le32(d + 10) + row * (uint64_t)h <= n;
}

/* Bits set in a 16-bit BMP's channel mask (contiguous, as stb_image
 * requires of the masks it reads). */
static unsigned
mask_bits(uint32_t m)
{
	unsigned n = 0;
	for (; m != 0; m >>= 1)
		n += m & 1;
	return n;
}

/* Pillow's widening of a 16-bit BMP's samples (see the file comment):
 * each channel of stb_image's output, whose top n bits are the sample,
 * becomes sample * 255 / (2^n - 1).  Masks: BI_BITFIELDS' three after the
 * 40-byte header (V4/V5 headers hold them at the same place), else 5-5-5. */
static void
bmp_widen_16(const uint8_t *d, size_t n, uint8_t *px, size_t npix)
{
	uint32_t hsz = le32(d + 14);
	if (hsz == 12 || (d[28] | d[29] << 8) != 16)
		return;
	unsigned bits[3] = { 5, 5, 5 };
	if (le32(d + 30) == 3 && n >= 66)
		for (int c = 0; c < 3; c++)
			bits[c] = mask_bits(le32(d + 54 + 4 * c));
	uint8_t lut[3][256];
	for (int c = 0; c < 3; c++) {
		if (bits[c] == 0 || bits[c] >= 8)
			return;         /* stb_image refused or kept it exact */
		unsigned max = (1u << bits[c]) - 1;
		for (unsigned v = 0; v < 256; v++)
			lut[c][v] = (uint8_t)((v >> (8 - bits[c])) * 255 / max);
	}
	for (size_t i = 0; i < npix; i++)
		for (int c = 0; c < 3; c++)
			px[3 * i + c] = lut[c][px[3 * i + c]];
}

int
clip_bmp_decode(const uint8_t *d, size_t n, const clip_decode_opts *opts,
    int probe_only, clip_image_info *info, int *ow, int *oh, uint8_t **orgb,
    cdx_error *err)
{
	int w = 0, h = 0, rc;

	if (n > INT_MAX)
		return cdx_error_set(err, CDX_ETOOBIG, "BMP file too large");
	/* stb_image gives a top-down BMP's height as it is stored:
	 * negative */
	if (!clip_stb_bmp_info(d, n, &w, &h) || w <= 0 || h == 0 ||
	    h == INT_MIN || (h = h < 0 ? -h : h) <= 0)
		return cdx_error_set(err, CDX_EFORMAT,
		    "corrupt or unsupported BMP header (%zu bytes)", n);
	info->width = w;
	info->height = h;
	if ((rc = clip_check_limit(opts, CLIP_FORMAT_BMP, (uint64_t)w,
	    (uint64_t)h, err)) != 0 || probe_only)
		return rc;
	if (!bmp_complete(d, n, w, h))
		return cdx_error_set(err, CDX_EFORMAT,
		    "truncated BMP (%zu bytes): shorter than its pixel array",
		    n);
	int dw = 0, dh = 0;
	const char *why;
	uint8_t *px = clip_stb_bmp_load(d, n, &dw, &dh, &why);
	if (px == NULL) {
		if (why != NULL && strcmp(why, "outofmem") == 0)
			return cdx_error_set(err, CDX_ENOMEM,
			    "no memory for a %d x %d image", w, h);
		return cdx_error_set(err, CDX_EFORMAT,
		    "corrupt, truncated or unsupported BMP (%s)",
		    why != NULL ? why : "?");
	}
	if (dw != w || dh != h) {
		free(px);
		return cdx_error_set(err, CDX_EFORMAT,
		    "corrupt BMP: header says %d x %d, data %d x %d", w, h,
		    dw, dh);
	}
	bmp_widen_16(d, n, px, (size_t)w * (size_t)h);
	/* stb_image allocates with malloc (STBI_MALLOC): free()'d. */
	*ow = w;
	*oh = h;
	*orgb = px;
	return 0;
}
