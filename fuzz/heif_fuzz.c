/*
 * heif_fuzz - libFuzzer target for the HEIF decoder (encoder/image_heif.c)
 * and the public decode path on the same bytes (fuzz/image_family.h).
 * `make fuzz` builds and runs it with seeds from
 * tests/fixtures/images/formats/ (every format: the others' files are
 * refused early, and mutate into this one's rarely).
 */
#include "fuzz/image_family.h"

FUZZ_IMAGE_FAMILY(clip_heif_decode, CLIP_FORMAT_HEIF)
