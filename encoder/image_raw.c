/*
 * image_raw.c - camera RAW through libraw (the thread-safe libraw_r): CR2,
 * CR3, NEF, ARW, DNG, RAF, ORF, RW2 and whatever else libraw reads.
 *
 * Rules (docs/IMAGES.md):
 *  - Exact mode (min_short == 0), and fast mode without a large enough
 *    preview: libraw's half-size demosaic (half_size) with the camera's
 *    white balance (use_camera_wb) and libraw's default output (sRGB,
 *    8 bits, BT.709 gamma, auto-brightness): what `dcraw_emu -h -w` writes.
 *  - Fast mode (min_short > 0): the embedded JPEG preview, when its shorter
 *    side is at least min_short, decoded as any JPEG in fast mode (DCT
 *    scaling), its own EXIF orientation ignored.
 *  - Both paths take the orientation from the RAW metadata (libraw's
 *    flip), applied by image.c as an EXIF orientation; the capture time is
 *    libraw's (the EXIF DateTimeOriginal, read as UTC).
 *  - The pixel limit applies to the sensor size (raw_width x raw_height)
 *    before libraw unpacks anything, and to the preview's size.
 *  - libraw's data and memory error callbacks are this decode's own (they
 *    print nothing); libraw is told to allocate at most 1 GiB.
 */
#include "encoder/clip.h"
#include "encoder/image_internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libraw/libraw.h>

static void
raw_quiet_data(void *data, const char *file, const int offset)
{
	(void)file;
	(void)offset;
	*(int *)data = 1;
}

static void
raw_quiet_mem(void *data, const char *file, const char *where)
{
	(void)data;
	(void)file;
	(void)where;
}

static int
raw_fail(int e, const char *what, cdx_error *err)
{
	if (e == LIBRAW_UNSUFFICIENT_MEMORY)
		return cdx_error_set(err, CDX_ENOMEM, "RAW: out of memory");
	return cdx_error_set(err, CDX_EFORMAT, "corrupt, truncated or "
	    "unsupported RAW (%s): %s", what, libraw_strerror(e));
}

/* libraw's flip (dcraw: bit 4 swaps rows and columns, 2 flips vertically,
 * 1 horizontally) as an EXIF orientation. */
static int
flip_to_orientation(int flip)
{
	static const int o[8] = { 1, 2, 4, 3, 5, 8, 6, 7 };
	return flip >= 0 && flip < 8 ? o[flip] : 1;
}

/* Fast mode's path: the embedded JPEG preview.  Returns 0 with pixels,
 * 1 when there is no usable preview (the caller demosaics), or an error. */
static int
raw_preview(libraw_data_t *lr, const clip_decode_opts *opts, int *ow,
    int *oh, uint8_t **orgb, cdx_error *err)
{
	if (libraw_unpack_thumb(lr) != LIBRAW_SUCCESS ||
	    lr->thumbnail.tformat != LIBRAW_THUMBNAIL_JPEG ||
	    lr->thumbnail.thumb == NULL || lr->thumbnail.tlength == 0)
		return 1;
	clip_image_info ji;
	memset(&ji, 0, sizeof(ji));
	ji.orientation = 1;
	ji.capture_time = INT64_MIN;
	ji.format = CLIP_FORMAT_JPEG;
	/* The header's size (twidth/theight are not always filled in). */
	cdx_error perr;
	if (clip_jpeg_decode((const uint8_t *)lr->thumbnail.thumb,
	    lr->thumbnail.tlength, opts, 1, &ji, ow, oh, orgb, &perr) != 0)
		return 1;
	int sw = ji.orientation >= 5 ? ji.height : ji.width;
	int sh = ji.orientation >= 5 ? ji.width : ji.height;
	if ((sw < sh ? sw : sh) < opts->min_short)
		return 1;
	int rc = clip_jpeg_decode((const uint8_t *)lr->thumbnail.thumb,
	    lr->thumbnail.tlength, opts, 0, &ji, ow, oh, orgb, err);
	return rc == CDX_EFORMAT ? 1 : rc;
}

/* Exact mode's path: half-size demosaic, camera white balance, libraw's
 * default sRGB output, in stored orientation (the parameters are set before
 * the file is opened). */
static int
raw_demosaic(libraw_data_t *lr, const int *data_error, int *ow, int *oh,
    uint8_t **orgb, cdx_error *err)
{
	int e;
	if ((e = libraw_unpack(lr)) != LIBRAW_SUCCESS)
		return raw_fail(e, "sensor data", err);
	if (*data_error)
		return cdx_error_set(err, CDX_EFORMAT,
		    "truncated or corrupt RAW sensor data");
	if ((e = libraw_dcraw_process(lr)) != LIBRAW_SUCCESS)
		return raw_fail(e, "demosaic", err);
	libraw_processed_image_t *im = libraw_dcraw_make_mem_image(lr, &e);
	if (im == NULL)
		return raw_fail(e, "output", err);
	int rc = 0;
	size_t npix = (size_t)im->width * im->height;
	if (im->type != LIBRAW_IMAGE_BITMAP || im->colors != 3 ||
	    im->bits != 8 || im->width == 0 || im->height == 0 ||
	    im->data_size < npix * 3) {
		rc = cdx_error_set(err, CDX_EFORMAT,
		    "RAW: libraw gave no 8-bit RGB image");
		goto out_clear;
	}
	uint8_t *buf = malloc(npix * 3);
	if (buf == NULL) {
		rc = cdx_error_set(err, CDX_ENOMEM,
		    "no memory for a %u x %u image", im->width, im->height);
		goto out_clear;
	}
	memcpy(buf, im->data, npix * 3);
	*ow = im->width;
	*oh = im->height;
	*orgb = buf;
out_clear:
	libraw_dcraw_clear_mem(im);
	return rc;
}

int
clip_raw_decode(const uint8_t *d, size_t n, const clip_decode_opts *opts,
    int probe_only, clip_image_info *info, int *ow, int *oh, uint8_t **orgb,
    cdx_error *err)
{
	int data_error = 0, e, rc;

	libraw_data_t *lr = libraw_init(0);
	if (lr == NULL)
		return cdx_error_set(err, CDX_ENOMEM,
		    "cannot create a RAW decoder");
	libraw_set_dataerror_handler(lr, raw_quiet_data, &data_error);
	libraw_set_memerror_handler(lr, raw_quiet_mem, NULL);
	lr->params.max_raw_memory_mb = 1024;
	/* Before opening: libraw decides the half-size "shrink" there. */
	lr->params.half_size = 1;
	lr->params.use_camera_wb = 1;
	lr->params.user_flip = 0;      /* stored order: image.c turns it */
	/* libraw reads the buffer only */
	if ((e = libraw_open_buffer(lr, (void *)(uintptr_t)d, n)) !=
	    LIBRAW_SUCCESS) {
		rc = raw_fail(e, "header", err);
		goto out_close;
	}
	int fw = lr->sizes.width, fh = lr->sizes.height;
	if (fw <= 0 || fh <= 0 || lr->sizes.raw_width == 0 ||
	    lr->sizes.raw_height == 0) {
		rc = cdx_error_set(err, CDX_EFORMAT,
		    "corrupt RAW header: size %d x %d", fw, fh);
		goto out_close;
	}
	info->orientation = flip_to_orientation(lr->sizes.flip);
	int swap = info->orientation >= 5;
	info->width = swap ? fh : fw;
	info->height = swap ? fw : fh;
	if (lr->other.timestamp > 0) {
		/* libraw made it with mktime(): back to the wall clock */
		struct tm tm;
		time_t ts = lr->other.timestamp;
		if (localtime_r(&ts, &tm) != NULL)
			info->capture_time = (int64_t)timegm(&tm);
	}
	if ((rc = clip_check_limit(opts, CLIP_FORMAT_RAW,
	    lr->sizes.raw_width, lr->sizes.raw_height, err)) != 0 ||
	    probe_only)
		goto out_close;

	rc = 1;
	if (opts != NULL && opts->min_short > 0)
		rc = raw_preview(lr, opts, ow, oh, orgb, err);
	if (rc == 1)
		rc = raw_demosaic(lr, &data_error, ow, oh, orgb, err);
out_close:
	libraw_close(lr);
	return rc;
}
