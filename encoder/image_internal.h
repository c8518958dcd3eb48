/*
 * image_internal.h - private interfaces between encoder/image.c (the
 * decode path, JPEG, PNG), the other formats' decoders
 * (encoder/image_<format>.c), encoder/resize.c and encoder/exif.c.  Not
 * installed; tests may use it.
 */
#ifndef CLIP_IMAGE_INTERNAL_H
#define CLIP_IMAGE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/cdx.h"

struct clip_decode_opts;
struct clip_image_info;

/*
 * One format's decoder, called by image.c once clip_image_sniff() has named
 * the format.  `info` arrives zeroed with format set, orientation 1 and
 * capture_time INT64_MIN; the decoder fills width and height (as
 * displayed, after `orientation`), orientation (still to be applied:
 * image.c turns the pixels upright with clip_orient()) and capture_time.
 * With probe_only it reads what it needs for info and no pixels, with no
 * size limit beyond the caller's opts.  Otherwise it checks
 * clip_check_limit() on the stored size before allocating any pixel
 * buffer, and on success sets *w x *h (as stored) and *rgb (malloc'd
 * interleaved RGB, the caller's).  Corrupt or truncated data is
 * CDX_EFORMAT; nothing is printed; reentrant.
 */
typedef int (*clip_format_decoder)(const uint8_t *d, size_t n,
    const struct clip_decode_opts *opts, int probe_only,
    struct clip_image_info *info, int *w, int *h, uint8_t **rgb,
    cdx_error *err);

int clip_jpeg_decode(const uint8_t *d, size_t n,
    const struct clip_decode_opts *opts, int probe_only,
    struct clip_image_info *info, int *w, int *h, uint8_t **rgb,
    cdx_error *err);
int clip_png_decode(const uint8_t *d, size_t n,
    const struct clip_decode_opts *opts, int probe_only,
    struct clip_image_info *info, int *w, int *h, uint8_t **rgb,
    cdx_error *err);
/* image_heif.c: HEIC/HEIF and AVIF (libheif) */
int clip_heif_decode(const uint8_t *d, size_t n,
    const struct clip_decode_opts *opts, int probe_only,
    struct clip_image_info *info, int *w, int *h, uint8_t **rgb,
    cdx_error *err);
/* image_webp.c: WebP, animated or not (libwebp, libwebpdemux) */
int clip_webp_decode(const uint8_t *d, size_t n,
    const struct clip_decode_opts *opts, int probe_only,
    struct clip_image_info *info, int *w, int *h, uint8_t **rgb,
    cdx_error *err);
/* image_tiff.c: TIFF (libtiff) */
int clip_tiff_decode(const uint8_t *d, size_t n,
    const struct clip_decode_opts *opts, int probe_only,
    struct clip_image_info *info, int *w, int *h, uint8_t **rgb,
    cdx_error *err);
/* image_gif.c: GIF (giflib) */
int clip_gif_decode(const uint8_t *d, size_t n,
    const struct clip_decode_opts *opts, int probe_only,
    struct clip_image_info *info, int *w, int *h, uint8_t **rgb,
    cdx_error *err);
/* image_bmp.c: BMP (stb_image, BMP only) */
int clip_bmp_decode(const uint8_t *d, size_t n,
    const struct clip_decode_opts *opts, int probe_only,
    struct clip_image_info *info, int *w, int *h, uint8_t **rgb,
    cdx_error *err);
/* image_stb.c: stb_image's BMP reader.  clip_stb_bmp_info: 1 with the
 * header's size, else 0.  clip_stb_bmp_load: malloc'd RGB pixels (free()),
 * or NULL with stb_image's reason in *why (static storage, may be NULL). */
int clip_stb_bmp_info(const uint8_t *d, size_t n, int *w, int *h);
uint8_t *clip_stb_bmp_load(const uint8_t *d, size_t n, int *w, int *h,
    const char **why);
/* image_raw.c: camera RAW (libraw) */
int clip_raw_decode(const uint8_t *d, size_t n,
    const struct clip_decode_opts *opts, int probe_only,
    struct clip_image_info *info, int *w, int *h, uint8_t **rgb,
    cdx_error *err);

/* CDX_ETOOBIG (naming the format) when w x h is over opts' max_pixels
 * (CLIP_DEFAULT_MAX_PIXELS for NULL or 0), else 0.  The one pixel limit
 * every decoder applies before allocating. */
int clip_check_limit(const struct clip_decode_opts *opts, int fmt,
    uint64_t w, uint64_t h, cdx_error *err);

/* Adobe (inverted) CMYK, 4 bytes a pixel, to RGB with Pillow's cmyk2rgb,
 * in place (the 3-byte pixels are packed at the front of buf).  Plain CMYK
 * is inverted first by the caller. */
void clip_cmyk_to_rgb(uint8_t *buf, size_t npix);

/* A new buffer holding the RGB image src (sw x sh, as stored) turned
 * upright for EXIF orientation o (2..8), with its size in *ow x *oh;
 * NULL when out of memory. */
uint8_t *clip_orient(const uint8_t *src, int sw, int sh, int o, int *ow,
    int *oh);

/* Reads Orientation (IFD0, 1..8; anything else counts as 1) and
 * DateTimeOriginal (Exif IFD, "YYYY:MM:DD HH:MM:SS" read as UTC) from an
 * EXIF blob: a TIFF header and its IFDs, optionally preceded by the
 * "Exif\0\0" identifier of a JPEG APP1 segment.  Never fails: malformed
 * data leaves *orientation = 1 and *capture_time = INT64_MIN.  Returns 1
 * when an Orientation tag is present (valid or not), else 0. */
int clip_exif_read(const uint8_t *data, size_t len, int *orientation,
    int64_t *capture_time);

/* Pillow's XMP fallback for PNG: the digit after the first
 * `tiff:Orientation="` or `tiff:Orientation>` in s[0..n), or 0 if none. */
int clip_xmp_orientation(const char *s, size_t n);

/* Parses "YYYY:MM:DD HH:MM:SS" (strictly; trailing NUL/space allowed) into
 * seconds since the epoch, UTC.  Returns INT64_MIN when malformed or out of
 * range (a zero date included). */
int64_t clip_exif_parse_datetime(const char *s, size_t len);

/* Hugging Face's get_resize_output_image_size(default_to_square=False):
 * the shorter side becomes shortest_edge, the longer one
 * int(shortest_edge * long / short).  Returns CDX_EINVAL when the result
 * does not fit an int. */
int clip_resize_dims(int w, int h, int shortest_edge, int *new_w, int *new_h);

/* Pillow-exact resize (resample: an enum clip_resample) of interleaved RGB
 * `src` (w x h) to new_w x new_h, followed by Hugging Face's centre crop to
 * crop_w x crop_h (zero padding where the crop is larger; with the crop
 * equal to the new size, a plain resize: the squash).  Only the pixels
 * inside the crop are computed.  Writes crop_h * crop_w * 3 bytes to `out`
 * (HWC).  Uses the SIMD horizontal pass where built.  Thread-safe: no
 * state outside its arguments.  Errors: CDX_EINVAL (also an unknown
 * filter), CDX_ENOMEM. */
int clip_resize_crop(const uint8_t *src, int w, int h, int new_w, int new_h,
    int crop_w, int crop_h, int resample, uint8_t *out, cdx_error *err);

/* The scans of the last JPEG that clip_image_decode() (or _load) decoded
 * on this thread: how many the file has, and how many were decoded (fewer
 * only where scans were skipped).  Both 0 after a PNG or a file that
 * failed before its scans were walked. */
void clip_jpeg_last_scans(int *total, int *decoded);

/* clip_resize_crop with the portable horizontal pass instead of the SIMD
 * one (SSE2, chosen at build time where the target has it): the same bytes,
 * slower.  For tests that check both passes; thread-safe like
 * clip_resize_crop. */
int clip_resize_crop_portable(const uint8_t *src, int w, int h, int new_w,
    int new_h, int crop_w, int crop_h, int resample, uint8_t *out,
    cdx_error *err);

#endif
