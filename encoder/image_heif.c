/*
 * image_heif.c - HEIC/HEIF and AVIF through libheif (its libde265 and AV1
 * decoders as Debian builds them).
 *
 * Rules (docs/IMAGES.md):
 *  - The primary image, with the transformations libheif applies by
 *    default (irot, imir, clap).  EXIF orientation is then NOT applied
 *    again, as Pillow with pillow-heif does: info.orientation stays 1.
 *  - The capture time comes from the EXIF block.
 *  - 8-bit interleaved RGB as libheif converts it (also from 10/12-bit
 *    images); alpha is dropped.
 *  - The pixel limit applies to the coded size (ispe) and the displayed
 *    size, before libheif decodes anything.
 *  - Fast mode (min_short > 0): the smallest thumbnail item of the
 *    primary image (iPhones store a 320 x 240 one) whose shorter side is at
 *    least min_short and whose shape is the primary image's (its aspect
 *    within one pixel, transformations applied as libheif applies them),
 *    else the primary image.  Not where EXIF orientation says a half turn
 *    or a flip (2, 3, 4): a thumbnail without the primary's transform
 *    would have the same shape.
 *  - libheif decodes on the calling thread (no threads of its own).
 */
#include "encoder/clip.h"
#include "encoder/image_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <libheif/heif.h>

static int
heif_fail(struct heif_error e, const char *what, cdx_error *err)
{
	if (e.subcode == heif_suberror_Security_limit_exceeded)
		return cdx_error_set(err, CDX_ETOOBIG, "HEIF/AVIF (%s) over "
		    "libheif's size limits: %s", what,
		    e.message != NULL ? e.message : "?");
	if (e.code == heif_error_Memory_allocation_error)
		return cdx_error_set(err, CDX_ENOMEM, "HEIF: out of memory");
	return cdx_error_set(err, CDX_EFORMAT, "corrupt HEIF/AVIF (%s): %s",
	    what, e.message != NULL ? e.message : "?");
}

/* EXIF capture time of the handle's first Exif block (a 4-byte offset to
 * the TIFF header, then the TIFF data); its orientation in *orientation
 * (1 when absent), which is not applied. */
static void
heif_exif(const struct heif_image_handle *h, clip_image_info *info,
    int *orientation)
{
	heif_item_id id;
	*orientation = 1;
	if (heif_image_handle_get_list_of_metadata_block_IDs(h, "Exif", &id,
	    1) != 1)
		return;
	size_t len = heif_image_handle_get_metadata_size(h, id);
	if (len < 4 || len > (size_t)1 << 26)
		return;
	uint8_t *buf = malloc(len);
	if (buf == NULL)
		return;
	struct heif_error e = heif_image_handle_get_metadata(h, id, buf);
	if (e.code == heif_error_Ok) {
		uint32_t off = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 |
		    (uint32_t)buf[2] << 8 | buf[3];
		/* the HEIF transform wins: not applied */
		if (off <= len - 4)
			clip_exif_read(buf + 4 + off, len - 4 - off,
			    orientation, &info->capture_time);
	}
	free(buf);
}

/* Fast mode: the thumbnail of h to decode instead (a new handle, the
 * caller's), or NULL.  w x ht: the primary image's displayed size. */
static struct heif_image_handle *
heif_pick_thumbnail(const struct heif_image_handle *h, int w, int ht,
    int min_short)
{
	heif_item_id ids[8];
	struct heif_image_handle *best = NULL;
	int n = heif_image_handle_get_list_of_thumbnail_IDs(h, ids, 8);
	for (int i = 0; i < n; i++) {
		struct heif_image_handle *t = NULL;
		if (heif_image_handle_get_thumbnail(h, ids[i], &t).code !=
		    heif_error_Ok || t == NULL)
			continue;
		int tw = heif_image_handle_get_width(t);
		int th = heif_image_handle_get_height(t);
		/* the same shape: |tw / th - w / ht| within a pixel */
		int64_t skew = (int64_t)tw * ht - (int64_t)th * w;
		int64_t longer = w > ht ? w : ht;
		/* never larger than the primary image (whose size passed the
		 * pixel limit) */
		if (tw <= 0 || th <= 0 || tw > w || th > ht ||
		    (tw < th ? tw : th) < min_short ||
		    skew > longer || skew < -longer || (best != NULL &&
		    (int64_t)tw * th >= (int64_t)heif_image_handle_get_width(
		    best) * heif_image_handle_get_height(best))) {
			heif_image_handle_release(t);
			continue;
		}
		heif_image_handle_release(best);
		best = t;
	}
	return best;
}

int
clip_heif_decode(const uint8_t *d, size_t n, const clip_decode_opts *opts,
    int probe_only, clip_image_info *info, int *ow, int *oh, uint8_t **orgb,
    cdx_error *err)
{
	struct heif_image_handle *h = NULL;
	struct heif_image *img = NULL;
	struct heif_error e;
	int rc;

	struct heif_context *ctx = heif_context_alloc();
	if (ctx == NULL)
		return cdx_error_set(err, CDX_ENOMEM,
		    "cannot create a HEIF decoder");
	heif_context_set_max_decoding_threads(ctx, 0);
	e = heif_context_read_from_memory_without_copy(ctx, d, n, NULL);
	if (e.code != heif_error_Ok) {
		rc = heif_fail(e, "container", err);
		goto out_free_ctx;
	}
	e = heif_context_get_primary_image_handle(ctx, &h);
	if (e.code != heif_error_Ok) {
		rc = heif_fail(e, "primary image", err);
		goto out_free_ctx;
	}
	int w = heif_image_handle_get_width(h);
	int ht = heif_image_handle_get_height(h);
	int iw = heif_image_handle_get_ispe_width(h);
	int ih = heif_image_handle_get_ispe_height(h);
	if (w <= 0 || ht <= 0) {
		rc = cdx_error_set(err, CDX_EFORMAT,
		    "corrupt HEIF/AVIF header: size %d x %d", w, ht);
		goto out_free_handle;
	}
	info->width = w;
	info->height = ht;
	int exif_orientation;
	heif_exif(h, info, &exif_orientation);
	if ((rc = clip_check_limit(opts, info->format, (uint64_t)w,
	    (uint64_t)ht, err)) != 0 || (iw > 0 && ih > 0 &&
	    (rc = clip_check_limit(opts, info->format, (uint64_t)iw,
	    (uint64_t)ih, err)) != 0) || probe_only)
		goto out_free_handle;

	/* A thumbnail's own transformations are not visible through libheif
	 * 1.15's API: its shape tells a missing quarter turn, but not a
	 * missing half turn or flip, so files whose EXIF says one (2, 3, 4)
	 * decode the primary image. */
	struct heif_image_handle *thumb = opts != NULL && opts->min_short > 0 &&
	    (exif_orientation == 1 || exif_orientation >= 5) ?
	    heif_pick_thumbnail(h, w, ht, opts->min_short) : NULL;
	e = heif_decode_image(thumb != NULL ? thumb : h, &img,
	    heif_colorspace_RGB, heif_chroma_interleaved_RGB, NULL);
	int from_thumb = thumb != NULL;
	heif_image_handle_release(thumb);
	if (e.code != heif_error_Ok) {
		rc = heif_fail(e, "image data", err);
		goto out_free_handle;
	}
	int stride = 0;
	const uint8_t *p = heif_image_get_plane_readonly(img,
	    heif_channel_interleaved, &stride);
	int pw = heif_image_get_width(img, heif_channel_interleaved);
	int ph = heif_image_get_height(img, heif_channel_interleaved);
	if (p == NULL || pw <= 0 || ph <= 0 || stride < pw * 3 ||
	    heif_image_get_bits_per_pixel_range(img,
	    heif_channel_interleaved) != 8 ||
	    (rc = clip_check_limit(opts, info->format, (uint64_t)pw,
	    (uint64_t)ph, err)) != 0) {
		if (rc == 0)
			rc = cdx_error_set(err, CDX_EFORMAT,
			    "HEIF/AVIF: libheif gave no 8-bit RGB image");
		goto out_free_image;
	}
	uint8_t *buf = malloc((size_t)pw * (size_t)ph * 3);
	if (buf == NULL) {
		rc = cdx_error_set(err, CDX_ENOMEM,
		    "no memory for a %d x %d image", pw, ph);
		goto out_free_image;
	}
	for (int y = 0; y < ph; y++)
		memcpy(buf + (size_t)y * pw * 3, p + (size_t)y * stride,
		    (size_t)pw * 3);
	/* What was decoded is what is displayed (a thumbnail: the primary
	 * image's size stays) */
	if (!from_thumb) {
		info->width = pw;
		info->height = ph;
	}
	*ow = pw;
	*oh = ph;
	*orgb = buf;
	rc = 0;
out_free_image:
	heif_image_release(img);
out_free_handle:
	heif_image_handle_release(h);
out_free_ctx:
	heif_context_free(ctx);
	return rc;
}
