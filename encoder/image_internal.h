/*
 * image_internal.h - private interfaces between encoder/image.c,
 * encoder/resize.c and encoder/exif.c.  Not installed; tests may use it.
 */
#ifndef CLIP_IMAGE_INTERNAL_H
#define CLIP_IMAGE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/cdx.h"

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
