/*
 * video_fuzz - libFuzzer target for clip_video_sample and clip_video_frame
 * (encoder/video.c) on arbitrary bytes: written to a memfd and read
 * through /proc/self/fd (FFmpeg opens a path), at most 4 frames of at
 * most 1 MP.  `make fuzz` builds and runs it with the small clips of
 * fuzz/video_seeds (MP4, MOV, MKV, WebM made with ffmpeg's test sources).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "encoder/video.h"

static int
frame_fn(void *user, int64_t time_ms, const clip_image *img, cdx_error *err)
{
	(void)err;
	(void)time_ms;
	uint64_t *sum = user;
	/* Touch every pixel: an out-of-bounds image shows up here. */
	for (size_t i = 0; i < (size_t)img->width * (size_t)img->height * 3; i++)
		*sum += img->rgb[i];
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int quiet;
	if (!quiet) {
		clip_video_log_quiet();
		quiet = 1;
	}
	int fd = memfd_create("clip", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	clip_video_opts o;
	clip_video_default_opts(&o);
	o.max_frames = 4;
	o.interval_s = 0.5;
	o.max_pixels = 1u << 20;
	uint64_t sum = 0;
	cdx_error err;
	clip_video_sample(path, &o, frame_fn, &sum, NULL, &err);
	clip_image img;
	if (clip_video_frame(path, 700, 1u << 20, &img, &err) == 0)
		clip_image_free(&img);
	close(fd);
	return sum == 1 ? 1 : 0;  /* keeps sum alive; never 1 in practice */
}
