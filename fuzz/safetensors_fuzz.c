/*
 * safetensors_fuzz - libFuzzer target for the model loader's parsers of
 * untrusted bytes: the safetensors reader (header checks, then float32
 * conversion of every F32/F16/BF16 tensor it accepted) and config.json /
 * preprocessor_config.json parsing.
 *
 *   clang -std=c11 -D_GNU_SOURCE -I. -g -O1 -fsanitize=fuzzer,address,undefined \
 *     fuzz/safetensors_fuzz.c encoder/safetensors.c encoder/config.c \
 *     common/cdx.c -lcjson -lm -o build/safetensors_fuzz
 *   build/safetensors_fuzz -max_len=65536 fuzz/safetensors_seeds
 *
 * The first input byte picks the parser (0 safetensors, 1 config.json,
 * 2 preprocessor_config.json, modulo 3).  The seeds (fuzz/make_seeds.py
 * writes them) are valid files and near misses for each parser.  Inputs
 * are capped at 1 MB.
 * Invariants: every failure is CDX_EFORMAT (or CDX_ENOMEM) with a message;
 * an accepted tensor's bytes lie inside the input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "encoder/model_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_safetensors(const uint8_t *data, size_t size)
{
	int fd = memfd_create("st", 0);
	if (fd < 0)
		abort();
	if (size > 0 && write(fd, data, size) != (ssize_t)size)
		abort();
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	sft_file f;
	cdx_error err = {0};
	int rc = sft_open(&f, path, &err);
	if (rc != 0) {
		if (rc != CDX_EFORMAT && rc != CDX_ENOMEM)
			abort();
		if (err.code != rc || err.msg[0] == '\0')
			abort();
		close(fd);
		return;
	}
	for (size_t i = 0; i < f.n_tensors; i++) {
		const sft_tensor *t = &f.tensors[i];
		if (t->data < f.map || t->data + t->nbytes > f.map + f.size)
			abort();
		if (t->numel > (1u << 20))
			continue;
		float *dst = malloc((t->numel ? t->numel : 1) * sizeof(float));
		if (dst == NULL)
			abort();
		rc = sft_load_f32(&f, t->name, t->ndim, t->shape, dst, &err);
		if (rc != 0 && rc != CDX_EFORMAT)
			abort();
		free(dst);
	}
	sft_close(&f);
	close(fd);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > ((size_t)1 << 20))
		return 0;
	cdx_error err = {0};
	switch (data[0] % 3) {
	case 0:
		fuzz_safetensors(data + 1, size - 1);
		break;
	case 1: {
		clip_config c;
		int rc = clip_config_parse((const char *)data + 1, size - 1,
		    "config.json", &c, &err);
		if (rc != 0 && rc != CDX_EFORMAT && rc != CDX_ENOMEM)
			abort();
		/* An image size need not be a multiple of the patch (the
		 * remainder is unread, as PyTorch's valid convolution). */
		if (rc == 0 && (c.text.width % c.text.heads != 0 ||
		    c.vision.width % c.vision.heads != 0 ||
		    c.vision.image_size < c.vision.patch_size))
			abort();
		break;
	}
	default: {
		clip_preprocess_cfg p = {
			.mode = (data[0] & 1) ? CLIP_RESIZE_SQUASH :
			    CLIP_RESIZE_SHORTEST_CROP,
			.resample = CLIP_RESAMPLE_BICUBIC, .shortest_edge = 224,
			.crop_width = 224, .crop_height = 224,
			.mean = {0.5f, 0.5f, 0.5f}, .std = {0.5f, 0.5f, 0.5f}};
		int rc = clip_preprocess_parse((const char *)data + 1, size - 1,
		    "preprocessor_config.json", &p, &err);
		if (rc != 0 && rc != CDX_EFORMAT && rc != CDX_ENOMEM)
			abort();
		if (rc == 0 && (p.std[0] <= 0 || p.shortest_edge < 1))
			abort();
		break;
	}
	}
	return 0;
}
