/*
 * video.c - frames of a clip through libavformat, libavcodec and
 * libswscale (FFmpeg 5.1 as Debian ships it).  The rules are in video.h
 * and docs/VIDEO.md.
 */
#include "encoder/video.h"
#include "encoder/image_internal.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/display.h>
#include <libavutil/imgutils.h>
#include <libavutil/log.h>
#include <libswscale/swscale.h>

#define THUMB 32

void
clip_video_default_opts(clip_video_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->interval_s = CLIP_VIDEO_INTERVAL_S;
	o->max_frames = CLIP_VIDEO_MAX_FRAMES;
	o->scene = CLIP_VIDEO_SCENE;
}

void
clip_video_log_quiet(void)
{
	av_log_set_level(AV_LOG_ERROR);
}

/* One sampling's state. */
typedef struct vs {
	const char *name;       /* base name, for messages */
	AVFormatContext *fmt;
	AVCodecContext *dec;
	AVPacket *pkt;
	AVFrame *frame;
	struct SwsContext *sws;
	int stream;
	AVRational tb;
	int64_t start;          /* stream start pts (or 0) */
	int rotation;
	uint64_t max_pixels;    /* every decoded frame is checked */
	uint8_t *rgb;           /* the frame in RGB, cap bytes */
	uint8_t *rot;           /* the last frame turned upright
				   (clip_orient), or NULL */
	size_t cap;
	uint8_t thumb[THUMB * THUMB], last[THUMB * THUMB];
	int have_last;
	int64_t last_pts;
	int64_t decoded;
	int64_t cur_pts;        /* of the last frame decoded, or NOPTS */
	int seeked;             /* a seek happened (the index is read) */
	int eof;
} vs;

/* An AVERROR as a CDX_E* code.  A system error (AVERROR(errno): the file,
 * file descriptors, memory, a timeout) goes through the one errno
 * translation (cdx_from_errno), so that one that may pass is not taken
 * for bad data; FFmpeg's own codes (AVERROR_INVALIDDATA ...) and the errno
 * values its parsers use for data they cannot take are CDX_EFORMAT. */
static int
av_fail(cdx_error *err, const vs *v, int av, const char *what)
{
	char buf[AV_ERROR_MAX_STRING_SIZE];
	av_strerror(av, buf, sizeof(buf));
	int e = av < 0 && av > -4096 ? -av : 0;        /* FFERRTAGs are larger */
	if (e != 0 && e != EINVAL && e != ENOSYS && e != EOPNOTSUPP &&
	    e != ERANGE && e != EDOM && e != EILSEQ)
		return cdx_error_set(err, cdx_from_errno(e), "%s: %s", v->name,
		    buf);
	return cdx_error_set(err, CDX_EFORMAT, "%s: %s: %s", v->name, what, buf);
}

/* The next frame the decoder gives: 0, AVERROR_EOF at the stream's end,
 * or another AVERROR (corrupt or truncated data). */
static int
next_frame(vs *v)
{
	int rc;
	for (;;) {
		rc = avcodec_receive_frame(v->dec, v->frame);
		if (rc == 0) {
			v->decoded++;
			v->cur_pts = v->frame->best_effort_timestamp;
			return 0;
		}
		if (rc != AVERROR(EAGAIN))
			return rc;
		if (v->eof)
			return AVERROR_EOF;
		rc = av_read_frame(v->fmt, v->pkt);
		if (rc == AVERROR_EOF) {
			v->eof = 1;
			if ((rc = avcodec_send_packet(v->dec, NULL)) < 0)
				return rc;
			continue;
		}
		if (rc < 0)
			return rc;
		if (v->pkt->stream_index == v->stream)
			rc = avcodec_send_packet(v->dec, v->pkt);
		av_packet_unref(v->pkt);
		if (rc < 0 && rc != AVERROR(EAGAIN))
			return rc;
	}
}

static int64_t
frame_ms(const vs *v)
{
	int64_t pts = v->frame->best_effort_timestamp;
	if (pts == AV_NOPTS_VALUE)
		pts = v->frame->pts;
	if (pts == AV_NOPTS_VALUE)
		return -1;
	int64_t ms = av_rescale_q(pts - v->start, v->tb, (AVRational){ 1, 1000 });
	return ms < 0 ? 0 : ms;
}

/* 1 when the keyframe at or before target_ms is one the decoder has
 * passed already (a long GOP): decoding on is cheaper than seeking back
 * to it and decoding the same frames again. */
static int
keyframe_behind(vs *v, int64_t target_ms)
{
	AVStream *st = v->fmt->streams[v->stream];
	int64_t ts = v->start + av_rescale_q(target_ms, (AVRational){ 1, 1000 },
	    v->tb);
	if (v->cur_pts == AV_NOPTS_VALUE || v->cur_pts >= ts || v->eof)
		return 0;
	int idx = av_index_search_timestamp(st, ts, AVSEEK_FLAG_BACKWARD);
	const AVIndexEntry *e = idx >= 0 ? avformat_index_get_entry(st, idx) :
	    NULL;
	/* Trusted where the index is whole (MP4/MOV read it at open;
	 * Matroska reads its cues at the first seek) or goes on past the
	 * target: before that, Matroska's has only the keyframes seen. */
	const AVIndexEntry *next = idx >= 0 && idx + 1 <
	    avformat_index_get_entries_count(st) ?
	    avformat_index_get_entry(st, idx + 1) : NULL;
	int whole = v->seeked || strstr(v->fmt->iformat->name, "mov") != NULL;
	return e != NULL && (whole || (next != NULL && next->timestamp > ts)) &&
	    e->timestamp <= v->cur_pts;
}

/* Seeks to the keyframe at or before target_ms; 0 or an AVERROR. */
static int
seek_to(vs *v, int64_t target_ms)
{
	int64_t ts = v->start + av_rescale_q(target_ms, (AVRational){ 1, 1000 },
	    v->tb);
	int rc = av_seek_frame(v->fmt, v->stream, ts, AVSEEK_FLAG_BACKWARD);
	if (rc < 0)
		return rc;
	avcodec_flush_buffers(v->dec);
	v->eof = 0;
	v->seeked = 1;
	return 0;
}

/* Frees everything open_clip and the sampling gave v. */
static void
vs_close(vs *v)
{
	sws_freeContext(v->sws);
	free(v->rgb);
	free(v->rot);
	av_frame_free(&v->frame);
	av_packet_free(&v->pkt);
	avcodec_free_context(&v->dec);
	avformat_close_input(&v->fmt);
}

/* Converts the decoded frame to RGB (rotated) in img. */
static int
to_rgb(vs *v, clip_image *img, cdx_error *err)
{
	AVFrame *f = v->frame;
	int w = f->width, h = f->height;

	/* Each frame's own size: the decoder's changes within a clip (a
	 * WebRTC WebM) or differs from the container's header. */
	if (w <= 0 || h <= 0)
		return cdx_error_set(err, CDX_EFORMAT, "%s: a frame without a "
		    "size", v->name);
	if ((uint64_t)w * (uint64_t)h > v->max_pixels)
		return cdx_error_set(err, CDX_ETOOBIG, "%s: a %dx%d frame is over "
		    "the pixel limit (%llu)", v->name, w, h,
		    (unsigned long long)v->max_pixels);
	size_t need = (size_t)w * (size_t)h * 3;
	if (need > v->cap) {
		free(v->rgb);
		v->cap = 0;
		if ((v->rgb = malloc(need)) == NULL)
			return cdx_error_set(err, CDX_ENOMEM, "out of memory");
		v->cap = need;
	}
	v->sws = sws_getCachedContext(v->sws, w, h, f->format, w, h,
	    AV_PIX_FMT_RGB24, SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT,
	    NULL, NULL, NULL);
	if (v->sws == NULL)
		return cdx_error_set(err, CDX_EFORMAT, "%s: cannot convert pixel "
		    "format %s", v->name, av_get_pix_fmt_name(f->format));
	int cs = f->colorspace != AVCOL_SPC_UNSPECIFIED ? f->colorspace :
	    (h >= 720 ? AVCOL_SPC_BT709 : AVCOL_SPC_SMPTE170M);
	const int *coef = sws_getCoefficients(cs);
	int full = f->color_range == AVCOL_RANGE_JPEG ||
	    f->format == AV_PIX_FMT_YUVJ420P || f->format == AV_PIX_FMT_YUVJ422P ||
	    f->format == AV_PIX_FMT_YUVJ444P;
	sws_setColorspaceDetails(v->sws, coef, full, sws_getCoefficients(
	    AVCOL_SPC_BT709), 1, 0, 1 << 16, 1 << 16);
	uint8_t *dst[4] = { v->rgb, NULL, NULL, NULL };
	int stride[4] = { w * 3, 0, 0, 0 };
	if (sws_scale(v->sws, (const uint8_t *const *)f->data, f->linesize, 0, h,
	    dst, stride) != h)
		return cdx_error_set(err, CDX_EFORMAT, "%s: pixel conversion "
		    "failed", v->name);
	img->rgb = v->rgb;
	img->width = w;
	img->height = h;
	if (v->rotation != 0) {
		/* clockwise degrees / 90 -> the EXIF orientation that turns
		 * the frame upright (image.c's clip_orient) */
		static const int exif[4] = { 1, 6, 3, 8 };
		int ow, oh;
		free(v->rot);
		v->rot = clip_orient(v->rgb, w, h, exif[v->rotation / 90], &ow,
		    &oh);
		if (v->rot == NULL)
			return cdx_error_set(err, CDX_ENOMEM, "out of memory");
		img->rgb = v->rot;
		img->width = ow;
		img->height = oh;
	}
	img->info.width = img->width;
	img->info.height = img->height;
	img->info.orientation = 1;
	img->info.capture_time = INT64_MIN;
	img->info.format = CLIP_FORMAT_UNKNOWN;
	return 0;
}

/* 1 when img is a new scene (differs from the last kept frame by at least
 * `scene`); remembers it then. */
static int
new_scene(vs *v, const clip_image *img, double scene)
{
	for (int ty = 0; ty < THUMB; ty++) {
		for (int tx = 0; tx < THUMB; tx++) {
			size_t y = (size_t)((ty * 2 + 1) * img->height / (2 * THUMB));
			size_t x = (size_t)((tx * 2 + 1) * img->width / (2 * THUMB));
			const uint8_t *p = img->rgb + (y * (size_t)img->width + x) * 3;
			v->thumb[ty * THUMB + tx] = (uint8_t)((p[0] * 77 + p[1] * 150 +
			    p[2] * 29) >> 8);
		}
	}
	if (v->have_last && scene > 0) {
		long sum = 0;
		for (int i = 0; i < THUMB * THUMB; i++)
			sum += abs((int)v->thumb[i] - (int)v->last[i]);
		if ((double)sum / (THUMB * THUMB) < scene)
			return 0;
	}
	memcpy(v->last, v->thumb, sizeof(v->last));
	v->have_last = 1;
	return 1;
}

static int
open_clip(vs *v, const char *path, const clip_video_opts *o,
    clip_video_info *info, cdx_error *err)
{
	int rc;

	if ((rc = avformat_open_input(&v->fmt, path, NULL, NULL)) < 0)
		return av_fail(err, v, rc, "not a video clipdex reads, or corrupt");
	const char *fname = v->fmt->iformat->name;
	if (strstr(fname, "mov") == NULL && strstr(fname, "matroska") == NULL) {
		info->unsupported = CLIP_VIDEO_OTHER_CONTAINER;
		return cdx_error_set(err, CDX_EFORMAT, "%s: unsupported container "
		    "%s (MP4, MOV, MKV and WebM are read)", v->name, fname);
	}
	if ((rc = avformat_find_stream_info(v->fmt, NULL)) < 0)
		return av_fail(err, v, rc, "corrupt or truncated clip");
	const AVCodec *codec = NULL;
	v->stream = av_find_best_stream(v->fmt, AVMEDIA_TYPE_VIDEO, -1, -1,
	    &codec, 0);
	if (v->stream == AVERROR_STREAM_NOT_FOUND) {
		info->unsupported = CLIP_VIDEO_NO_VIDEO;
		return cdx_error_set(err, CDX_EFORMAT, "%s: no video stream",
		    v->name);
	}
	AVStream *st = v->fmt->streams[v->stream < 0 ? 0 : v->stream];
	if (v->stream < 0 || codec == NULL)
		return cdx_error_set(err, CDX_EFORMAT, "%s: no decoder for codec %s",
		    v->name, avcodec_get_name(st->codecpar->codec_id));
	snprintf(info->codec, sizeof(info->codec), "%s", codec->name);
	info->width = st->codecpar->width;
	info->height = st->codecpar->height;
	if (info->width <= 0 || info->height <= 0)
		return cdx_error_set(err, CDX_EFORMAT, "%s: no frame size",
		    v->name);
	uint64_t max = o->max_pixels ? o->max_pixels : CLIP_DEFAULT_MAX_PIXELS;
	if ((uint64_t)info->width * (uint64_t)info->height > max)
		return cdx_error_set(err, CDX_ETOOBIG, "%s: %dx%d frames are over "
		    "the pixel limit (%llu)", v->name, info->width, info->height,
		    (unsigned long long)max);
	/* Discard what is not the chosen stream: the demuxer skips it. */
	for (unsigned i = 0; i < v->fmt->nb_streams; i++)
		if ((int)i != v->stream)
			v->fmt->streams[i]->discard = AVDISCARD_ALL;
	v->tb = st->time_base;
	v->start = st->start_time != AV_NOPTS_VALUE ? st->start_time : 0;
	if (v->fmt->duration != AV_NOPTS_VALUE && v->fmt->duration > 0)
		info->duration_ms = v->fmt->duration / 1000;
	else if (st->duration != AV_NOPTS_VALUE && st->duration > 0)
		info->duration_ms = av_rescale_q(st->duration, v->tb,
		    (AVRational){ 1, 1000 });
	const uint8_t *dm = av_stream_get_side_data(st,
	    AV_PKT_DATA_DISPLAYMATRIX, NULL);
	if (dm != NULL) {
		double r = -av_display_rotation_get((const int32_t *)dm);
		if (isfinite(r)) {
			int q = (int)lround(r / 90.0) % 4;
			v->rotation = (q < 0 ? q + 4 : q) * 90;
		}
	}
	info->rotation = v->rotation;

	if ((v->dec = avcodec_alloc_context3(codec)) == NULL)
		return cdx_error_set(err, CDX_ENOMEM, "out of memory");
	if ((rc = avcodec_parameters_to_context(v->dec, st->codecpar)) < 0)
		return av_fail(err, v, rc, "bad codec parameters");
	v->dec->thread_count = 1;
	v->dec->pkt_timebase = v->tb;
	/* The decoder's own bound keeps a frame far over the limit from
	 * being allocated at all; it counts the padded (aligned) size, so
	 * it has slack, and to_rgb checks each frame's size exactly. */
	v->dec->max_pixels = max < (uint64_t)INT64_MAX / 8 ?
	    (int64_t)(max * 4 + (1u << 24)) : INT64_MAX;
	v->max_pixels = max;
	if ((rc = avcodec_open2(v->dec, codec, NULL)) < 0)
		return av_fail(err, v, rc, "cannot open the decoder");
	/* The RGB buffers are sized by the first frame (to_rgb). */
	if ((v->pkt = av_packet_alloc()) == NULL ||
	    (v->frame = av_frame_alloc()) == NULL)
		return cdx_error_set(err, CDX_ENOMEM, "out of memory");
	return 0;
}

int
clip_video_sample(const char *path, const clip_video_opts *opts,
    clip_video_frame_fn fn, void *user, clip_video_info *info,
    cdx_error *err)
{
	clip_video_opts o;
	clip_video_info inf;
	vs v;
	int rc;

	memset(&v, 0, sizeof(v));
	memset(&inf, 0, sizeof(inf));
	if (opts != NULL)
		o = *opts;
	else
		clip_video_default_opts(&o);
	if (path == NULL || fn == NULL)
		return cdx_error_set(err, CDX_EINVAL, "clip_video_sample: NULL "
		    "argument");
	if (!(o.interval_s > 0) || o.max_frames < 1 || o.max_frames > 4096 ||
	    o.limit_s < 0 || !(o.scene >= 0))
		return cdx_error_set(err, CDX_EINVAL, "clip_video_sample: an "
		    "option is out of range");
	const char *slash = strrchr(path, '/');
	v.name = slash ? slash + 1 : path;
	v.last_pts = INT64_MIN;
	v.cur_pts = AV_NOPTS_VALUE;

	if ((rc = open_clip(&v, path, &o, &inf, err)) != 0)
		goto out;
	double limit = o.limit_s > 0 ? o.limit_s : o.max_frames * o.interval_s;
	double dur = (double)inf.duration_ms / 1000.0;
	double step = dur > limit ? dur / o.max_frames : o.interval_s;
	int seekable = 1;
	int64_t near_ms = (int64_t)(step * 250.0);
	for (int i = 0; i < o.max_frames; i++) {
		int64_t target = (int64_t)llround(i * step * 1000.0);
		if (i > 0 && inf.duration_ms > 0 && target >= inf.duration_ms)
			break;
		int forward = !seekable || i == 0;
		if (seekable && i > 0 && keyframe_behind(&v, target))
			forward = 1;    /* in the GOP decoded so far: go on */
		else if (seekable && i > 0 && seek_to(&v, target) < 0) {
			seekable = 0;   /* no index: decode forward instead */
			forward = 1;
		}
		int64_t ms = -1;
		for (;;) {
			if ((rc = next_frame(&v)) != 0)
				break;
			ms = frame_ms(&v);
			/* A keyframe more than a quarter step before the
			 * target, or one already taken (a long GOP): decode
			 * on to the target, at most one GOP. */
			int64_t p = v.frame->best_effort_timestamp;
			if (!forward && ((p != AV_NOPTS_VALUE && v.last_pts !=
			    INT64_MIN && p <= v.last_pts) || (ms >= 0 &&
			    ms + near_ms < target)))
				forward = 1;
			if (forward && ms >= 0 && ms + 1 < target)
				continue;
			break;
		}
		if (rc == AVERROR_EOF) {
			/* The end: expected past the last target, a truncated
			 * file before it (its index names frames it lacks). */
			rc = 0;
			if (v.decoded == 0 || (inf.duration_ms > 0 && target +
			    1000 < inf.duration_ms)) {
				rc = cdx_error_set(err, CDX_EFORMAT, "%s: truncated or "
				    "corrupt: no frame at %.1f s of %.1f s", v.name,
				    target / 1e3, inf.duration_ms / 1e3);
				goto out;
			}
			break;
		}
		if (rc < 0) {
			rc = av_fail(err, &v, rc, "corrupt or truncated data");
			goto out;
		}
		int64_t pts = v.frame->best_effort_timestamp;
		if (pts != AV_NOPTS_VALUE && v.last_pts != INT64_MIN &&
		    pts <= v.last_pts)
			continue;       /* nothing new since the last target */
		v.last_pts = pts;
		clip_image img;
		memset(&img, 0, sizeof(img));
		if ((rc = to_rgb(&v, &img, err)) != 0)
			goto out;
		if (!new_scene(&v, &img, o.scene))
			continue;
		if ((rc = fn(user, ms < 0 ? target : ms, &img, err)) != 0)
			goto out;
		inf.frames++;
	}
	if (inf.frames == 0)
		rc = cdx_error_set(err, CDX_EFORMAT, "%s: no frame could be "
		    "decoded", v.name);
out:
	inf.decoded = v.decoded;
	if (info != NULL)
		*info = inf;
	vs_close(&v);
	return rc;
}

int
clip_video_frame(const char *path, int64_t time_ms, uint64_t max_pixels,
    clip_image *out, cdx_error *err)
{
	clip_video_opts o;
	clip_video_info inf;
	clip_image img;
	vs v;
	int rc, have = 0;

	memset(&v, 0, sizeof(v));
	memset(&inf, 0, sizeof(inf));
	memset(&img, 0, sizeof(img));
	if (path == NULL || out == NULL || time_ms < 0)
		return cdx_error_set(err, CDX_EINVAL, "clip_video_frame: bad "
		    "argument");
	clip_video_default_opts(&o);
	o.max_pixels = max_pixels;
	const char *slash = strrchr(path, '/');
	v.name = slash ? slash + 1 : path;
	if ((rc = open_clip(&v, path, &o, &inf, err)) != 0)
		goto out;
	if (time_ms > 0 && seek_to(&v, time_ms) < 0) {
		/* No index: decoded from the start, where it stands. */
	}
	for (;;) {
		rc = next_frame(&v);
		if (rc == AVERROR_EOF && have)
			break;          /* the last frame before the end */
		if (rc != 0) {
			rc = rc == AVERROR_EOF ? cdx_error_set(err, CDX_EFORMAT,
			    "%s: no frame could be decoded", v.name) :
			    av_fail(err, &v, rc, "corrupt or truncated data");
			goto out;
		}
		if ((rc = to_rgb(&v, &img, err)) != 0)
			goto out;
		have = 1;
		int64_t ms = frame_ms(&v);
		if (ms < 0 || ms + 1 >= time_ms)
			break;
	}
	size_t n = (size_t)img.width * (size_t)img.height * 3;
	if ((out->rgb = malloc(n)) == NULL) {
		rc = cdx_error_set(err, CDX_ENOMEM, "out of memory");
		goto out;
	}
	memcpy(out->rgb, img.rgb, n);
	out->width = img.width;
	out->height = img.height;
	out->info = img.info;
	rc = 0;
out:
	vs_close(&v);
	return rc;
}
