/*
 * video.h - sampling frames of a video clip (MP4, MOV, MKV, WebM) through
 * FFmpeg's libavformat and libavcodec, prefix clip_video_.  See
 * docs/VIDEO.md.
 *
 * Sampling: a target time every interval_s seconds, from 0, at most
 * max_frames of them.  A clip longer than limit_s (default max_frames x
 * interval_s) is sampled over its whole length: max_frames targets spread
 * evenly over it.  At each target the demuxer seeks back to the keyframe
 * at or before it (AVSEEK_FLAG_BACKWARD) and the first frame decoded from
 * there is taken: keyframes are preferred and a clip is never decoded in
 * full.  A keyframe more than a quarter of a step before its target, or
 * one already taken (a long GOP), is decoded on from to the target's own
 * frame (at most one GOP per target).  A frame
 * whose 32 x 32 gray thumbnail differs from the last frame kept by less
 * than `scene` (mean absolute difference, 0..255) is dropped: a static
 * shot gives one frame, each scene change a new one.  A container that
 * cannot seek (no index) is decoded forward to each target instead.
 *
 * Frames come out as clip_image (8-bit RGB, swscale from the decoder's
 * format with the stream's colour matrix and range), rotated as the
 * stream's display matrix says (phones store portrait clips rotated),
 * ready for clip_image_preprocess() like any image.
 *
 * Errors: 0 or a negative CDX_E* code with a message naming the file's
 * base name: a system error (the file, file descriptors, a timeout) as
 * cdx_from_errno() translates it (CDX_ENOTFOUND, CDX_EPERM, CDX_EIO,
 * CDX_EBUSY, CDX_ETIMEDOUT ...), CDX_EFORMAT (not
 * MP4/MOV/MKV/WebM, no video stream, no decoder for its codec, corrupt or
 * truncated data, no frame decoded), CDX_ETOOBIG (frame over max_pixels:
 * the header's size before decoding, and each decoded frame's own size,
 * which may change within a clip), CDX_ENOMEM, or fn's non-zero return.
 *
 * Thread-safety: reentrant; each call uses its own demuxer and decoder,
 * with one decoding thread (the caller owns parallelism).  The library
 * sets no process-wide state: FFmpeg's log level is main()'s choice
 * (clip_video_log_quiet()).
 */
#ifndef CDX_VIDEO_H
#define CDX_VIDEO_H

#include <stdint.h>

#include "common/cdx.h"
#include "encoder/clip.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CLIP_VIDEO_INTERVAL_S 2.0
#define CLIP_VIDEO_MAX_FRAMES 32
#define CLIP_VIDEO_SCENE 2.0

typedef struct clip_video_opts {
	double interval_s;     /* seconds between targets (> 0) */
	int max_frames;        /* at most this many frames (1..4096) */
	double limit_s;        /* longer clips are spread over max_frames
	                          targets; 0: max_frames * interval_s */
	double scene;          /* drop a frame this close to the last kept
	                          one (0: keep every target's frame) */
	uint64_t max_pixels;   /* frame size limit; 0: CLIP_DEFAULT_MAX_PIXELS */
} clip_video_opts;

/* Defaults: 2 s, 32 frames, limit 64 s, scene 2.0, default max_pixels. */
void clip_video_default_opts(clip_video_opts *o);

/* What a sampling did. */
typedef struct clip_video_info {
	int64_t duration_ms;   /* of the clip (container's, or the stream's) */
	int width, height;     /* coded size (before rotation) */
	int rotation;          /* 0, 90, 180 or 270 (clockwise, applied) */
	int frames;            /* frames given to fn */
	int64_t decoded;       /* frames the decoder produced in all */
	char codec[32];        /* the codec's short name ("h264") */
	int unsupported;       /* on CDX_EFORMAT: 0, or why the file is no
	                          clip read here rather than a broken one:
	                          CLIP_VIDEO_OTHER_CONTAINER (AVI ...) or
	                          CLIP_VIDEO_NO_VIDEO (audio only: M4A) */
} clip_video_info;

enum { CLIP_VIDEO_OTHER_CONTAINER = 1, CLIP_VIDEO_NO_VIDEO = 2 };

/* One sampled frame: time_ms from the start of the clip; img (borrowed,
 * valid during the call; its info.format is CLIP_FORMAT_UNKNOWN and
 * capture_time INT64_MIN).  A non-zero return stops the sampling and is
 * returned. */
typedef int (*clip_video_frame_fn)(void *user, int64_t time_ms,
    const clip_image *img, cdx_error *err);

/* Samples the clip at path as above, calling fn for each frame in time
 * order.  opts NULL: the defaults.  *info (may be NULL) is filled on
 * success and on failure as far as known. */
int clip_video_sample(const char *path, const clip_video_opts *opts,
    clip_video_frame_fn fn, void *user, clip_video_info *info,
    cdx_error *err);

/* The frame at time_ms (a time clip_video_sample gave, or any time: the
 * first frame at or after it, else the clip's last), for thumbnails:
 * seeks to the keyframe before it and decodes on.  max_pixels as
 * clip_video_opts (0: the default).  out->rgb is the caller's
 * (clip_image_free).  Errors as clip_video_sample. */
int clip_video_frame(const char *path, int64_t time_ms, uint64_t max_pixels,
    clip_image *out, cdx_error *err);

/* Process-wide: FFmpeg prints only errors (av_log_set_level).  For
 * main() only; the library never calls it. */
void clip_video_log_quiet(void);

#ifdef __cplusplus
}
#endif
#endif
