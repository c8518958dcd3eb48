/*
 * image_fuzz - libFuzzer target for clip_image_probe / clip_image_decode /
 * clip_image_preprocess on arbitrary bytes (JPEG, PNG, EXIF parsers).
 *
 * `make fuzz` builds and runs it (FUZZ_SECONDS, seeds tests/fixtures/images);
 * by hand:
 *
 *   clang -std=c11 -D_GNU_SOURCE -I. -g -O1 -fsanitize=fuzzer,address,undefined \
 *     fuzz/image_fuzz.c encoder/image.c encoder/resize.c encoder/exif.c \
 *     common/cdx.c common/file.c -lturbojpeg -ljpeg -lspng -lexif -lm \
 *     -o build/image_fuzz
 *   build/image_fuzz -max_len=65536 tests/fixtures/images/
 *
 * Inputs are capped at 1 MB and images at 4 MP so that the fuzzer explores
 * parsers instead of waiting on large decodes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "encoder/clip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static float out[3 * 40 * 32];
	clip_image_info info;
	clip_image img;
	cdx_error err;

	if (size > ((size_t)1 << 20))
		return 0;
	(void)clip_image_probe(data, size, &info, &err);
	clip_decode_opts o = { .max_pixels = (uint64_t)1 << 22,
		.min_short = size % 2 ? 24 : 0 };
	if (clip_image_decode(data, size, &o, &img, &err) != 0)
		return 0;
	clip_preprocess_cfg cfg = { .mode = CLIP_RESIZE_SHORTEST_CROP,
		.resample = CLIP_RESAMPLE_BICUBIC, .shortest_edge = 32, .crop_width = 40,
		.crop_height = 32, .mean = { 0.5f, 0.5f, 0.5f },
		.std = { 0.25f, 0.25f, 0.25f } };
	if (clip_image_preprocess(&img, &cfg, out, &err) != 0)
		abort(); /* a decoded image must always preprocess */
	clip_image_free(&img);
	return 0;
}
