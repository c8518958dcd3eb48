/*
 * image_webp.c - WebP through libwebp: lossy, lossless, with alpha, and
 * animated (the first frame, libwebpdemux).
 *
 * Rules (docs/IMAGES.md):
 *  - Every file goes through WebPAnimDecoder as Pillow 9.4 reads it: the
 *    first frame composited on a transparent canvas in non-premultiplied
 *    RGBA; alpha is then dropped (a part of the canvas the frame does not
 *    cover is black).
 *  - The canvas size (VP8X, or the bitstream's) is checked against the
 *    pixel limit before the decoder allocates its canvas.
 *  - The EXIF chunk gives the orientation (applied, as Pillow's
 *    exif_transpose does) and the capture time.
 */
#include "encoder/clip.h"
#include "encoder/image_internal.h"

#include <stdlib.h>
#include <string.h>

#include <webp/decode.h>
#include <webp/demux.h>

int
clip_webp_decode(const uint8_t *d, size_t n, const clip_decode_opts *opts,
    int probe_only, clip_image_info *info, int *ow, int *oh, uint8_t **orgb,
    cdx_error *err)
{
	WebPBitstreamFeatures f;
	int rc;

	if (WebPGetFeatures(d, n, &f) != VP8_STATUS_OK || f.width <= 0 ||
	    f.height <= 0)
		return cdx_error_set(err, CDX_EFORMAT,
		    "corrupt WebP header (%zu bytes)", n);
	WebPData wd = { d, n };
	WebPDemuxer *dmx = WebPDemux(&wd);
	if (dmx == NULL)
		return cdx_error_set(err, CDX_EFORMAT,
		    "corrupt or truncated WebP container (%zu bytes)", n);
	WebPChunkIterator ci;
	if (WebPDemuxGetChunk(dmx, "EXIF", 1, &ci)) {
		clip_exif_read(ci.chunk.bytes, ci.chunk.size, &info->orientation,
		    &info->capture_time);
		WebPDemuxReleaseChunkIterator(&ci);
	}
	WebPDemuxDelete(dmx);
	int swap = info->orientation >= 5;
	info->width = swap ? f.height : f.width;
	info->height = swap ? f.width : f.height;
	if ((rc = clip_check_limit(opts, CLIP_FORMAT_WEBP, (uint64_t)f.width,
	    (uint64_t)f.height, err)) != 0 || probe_only)
		return rc;

	WebPAnimDecoderOptions o;
	if (!WebPAnimDecoderOptionsInit(&o))
		return cdx_error_set(err, CDX_EINTERNAL,
		    "libwebp: ABI mismatch");
	o.color_mode = MODE_RGBA;
	o.use_threads = 0;
	WebPAnimDecoder *dec = WebPAnimDecoderNew(&wd, &o);
	if (dec == NULL)
		return cdx_error_set(err, CDX_EFORMAT,
		    "corrupt or truncated WebP (%zu bytes)", n);
	WebPAnimInfo ai;
	uint8_t *frame = NULL;
	int ts = 0;
	if (!WebPAnimDecoderGetInfo(dec, &ai) ||
	    ai.canvas_width != (uint32_t)f.width ||
	    ai.canvas_height != (uint32_t)f.height ||
	    !WebPAnimDecoderGetNext(dec, &frame, &ts) || frame == NULL) {
		rc = cdx_error_set(err, CDX_EFORMAT,
		    "corrupt or truncated WebP (%zu bytes)", n);
		goto out_delete;
	}
	size_t npix = (size_t)f.width * (size_t)f.height;
	uint8_t *buf = malloc(npix * 3);
	if (buf == NULL) {
		rc = cdx_error_set(err, CDX_ENOMEM,
		    "no memory for a %d x %d image", f.width, f.height);
		goto out_delete;
	}
	for (size_t i = 0; i < npix; i++)
		memcpy(buf + 3 * i, frame + 4 * i, 3);
	*ow = f.width;
	*oh = f.height;
	*orgb = buf;
	rc = 0;
out_delete:
	WebPAnimDecoderDelete(dec);
	return rc;
}
