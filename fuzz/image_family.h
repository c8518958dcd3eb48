/*
 * image_family.h - the body of the per-format fuzz targets (heif_fuzz.c,
 * webp_fuzz.c, tiff_fuzz.c, gif_fuzz.c, bmp_fuzz.c, raw_fuzz.c): one
 * format's decoder (image_internal.h) on arbitrary bytes, as probe and as
 * decode in both modes, then the public path (sniff, decode, orientation,
 * preprocess) on the same bytes.
 *
 * Inputs are capped at 1 MB and images at 4 MP so that the fuzzer explores
 * parsers instead of waiting on large decodes.
 */
#ifndef CDX_FUZZ_IMAGE_FAMILY_H
#define CDX_FUZZ_IMAGE_FAMILY_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "encoder/clip.h"
#include "encoder/image_internal.h"

static int
fuzz_image_family(clip_format_decoder dec, int format, const uint8_t *data,
    size_t size)
{
	static float out[3 * 40 * 32];
	clip_image_info info;
	clip_image img;
	cdx_error err;
	int w, h;
	uint8_t *rgb;

	if (size > ((size_t)1 << 20))
		return 0;
	for (int pass = 0; pass < 3; pass++) {
		clip_decode_opts o = { .max_pixels = (uint64_t)1 << 22,
			.min_short = pass == 2 ? 24 : 0 };
		memset(&info, 0, sizeof(info));
		info.format = format;
		info.orientation = 1;
		info.capture_time = INT64_MIN;
		rgb = NULL;
		w = h = 0;
		int rc = dec(data, size, &o, pass == 0, &info, &w, &h, &rgb,
		    &err);
		if (rc == 0 && pass > 0) {
			if (w <= 0 || h <= 0 || rgb == NULL)
				abort();
			/* every pixel was written: read them all */
			volatile uint8_t sum = 0;
			for (size_t i = 0; i < (size_t)w * h * 3; i++)
				sum ^= rgb[i];
			(void)sum;
		}
		free(rgb);
	}
	clip_decode_opts o = { .max_pixels = (uint64_t)1 << 22,
		.min_short = size % 2 ? 24 : 0 };
	if (clip_image_decode(data, size, &o, &img, &err) != 0)
		return 0;
	clip_preprocess_cfg cfg = { .mode = CLIP_RESIZE_SHORTEST_CROP,
		.resample = CLIP_RESAMPLE_BICUBIC, .shortest_edge = 32,
		.crop_width = 40, .crop_height = 32,
		.mean = { 0.5f, 0.5f, 0.5f }, .std = { 0.25f, 0.25f, 0.25f } };
	if (clip_image_preprocess(&img, &cfg, out, &err) != 0)
		abort(); /* a decoded image must always preprocess */
	clip_image_free(&img);
	return 0;
}

#define FUZZ_IMAGE_FAMILY(dec, format)                                      \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);       \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)        \
	{                                                                   \
		return fuzz_image_family(dec, format, data, size);          \
	}

#endif
