/*
 * image_stb.c - stb_image (Debian's libstb-dev header) compiled for BMP
 * only (STBI_ONLY_BMP), its functions static, behind the three calls
 * image_bmp.c makes.  This file exists to contain stb_image's warnings:
 * they are silenced here, for this file alone.
 *
 * stb_image keeps its failure reason per thread (STBI_THREAD_LOCAL under
 * C11); nothing here sets its global options (vertical flip and such).
 */
#include "encoder/image_internal.h"

#include <limits.h>
#include <stdlib.h>

#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_BMP
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STBI_ASSERT(x) ((void)0)
/* stb_image's own dimension limit, far below INT_MAX / 4 so that none of
 * its row computations can overflow. */
#define STBI_MAX_DIMENSIONS (1 << 24)
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wunused-function"
#pragma clang diagnostic ignored "-Wsign-compare"
#pragma clang diagnostic ignored "-Wunused-parameter"
#pragma clang diagnostic ignored "-Wmissing-field-initializers"
#pragma clang diagnostic ignored "-Wimplicit-fallthrough"
#pragma clang diagnostic ignored "-Wunused-but-set-variable"
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#endif
#include <stb/stb_image.h>

int
clip_stb_bmp_info(const uint8_t *d, size_t n, int *w, int *h)
{
	int comp;
	if (n > INT_MAX)
		return 0;
	return stbi_info_from_memory(d, (int)n, w, h, &comp);
}

uint8_t *
clip_stb_bmp_load(const uint8_t *d, size_t n, int *w, int *h,
    const char **why)
{
	int comp;
	*why = NULL;
	if (n > INT_MAX)
		return NULL;
	uint8_t *px = stbi_load_from_memory(d, (int)n, w, h, &comp, 3);
	if (px == NULL)
		*why = stbi_failure_reason();
	return px;
}
