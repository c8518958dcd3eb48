/*
 * testmodel.h - header-only writer of small deterministic CLIP model
 * folders (Hugging Face layout) for tests.  Every function is static inline.
 *
 * The weights are those of tools/ref_clip.py, bit for bit: element i of
 * tensor N is
 *     u = splitmix64((seed ^ fnv1a64(N)) + i)
 *     v = (float)(u >> 40) * 2^-23 - 1            (exact, in [-1, 1))
 *     w = v * scale + offset                       (two float32 roundings)
 * rounded to the recipe's dtype (F16, BF16: round to nearest even).  The
 * scales (tm_specs) keep activations healthy and make different inputs
 * give clearly different embeddings.  tests/encoder_model.c checks that
 * the files are byte-identical to the script's (sha256 in the fixtures).
 *
 * Typical use (any module's test):
 *     tm_recipe r;
 *     tm_recipe_tiny(&r);                  // or fill it in
 *     char dir[] = "/tmp/cdxmodel-XXXXXX";
 *     mkdtemp(dir);
 *     tm_write_model(&r, dir);             // config.json + model.safetensors
 *     ... clip_model_load(dir, ...) ...
 *     tm_rmtree(dir);
 */
#ifndef CDX_TESTMODEL_H
#define CDX_TESTMODEL_H

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct tm_tower {
	int width, layers, heads, mlp;
	int quick_gelu;
	double eps;
	int image_size, patch_size;  /* vision only */
} tm_tower;

typedef struct tm_recipe {
	uint64_t seed;
	const char *dtype;           /* "F32", "F16" or "BF16" */
	int position_ids;            /* also write *.position_ids (I64) */
	int projection_dim;
	int vocab_size, max_positions;  /* 49408, 77 for the fixtures */
	tm_tower text, vision;
} tm_recipe;

/* A tiny model (fast to write and run, even under sanitizers): patch 16,
 * image 64, widths 32, 2 layers, projection 16, F16, full vocabulary. */
static inline void
tm_recipe_tiny(tm_recipe *r)
{
	memset(r, 0, sizeof(*r));
	r->seed = 7;
	r->dtype = "F16";
	r->projection_dim = 16;
	r->vocab_size = 49408;
	r->max_positions = 77;
	r->text = (tm_tower){.width = 32, .layers = 2, .heads = 2, .mlp = 64,
	    .quick_gelu = 1, .eps = 1e-5};
	r->vision = (tm_tower){.width = 32, .layers = 2, .heads = 2, .mlp = 64,
	    .quick_gelu = 1, .eps = 1e-5, .image_size = 64, .patch_size = 16};
}

/* The shapes of openai/clip-vit-base-patch32 (vision 768w/12L/12H/3072,
 * patch 32, image 224; text 512w/12L/8H/2048; projection 512), F16, random
 * weights: for benchmarks. */
static inline void
tm_recipe_vit_b32(tm_recipe *r)
{
	memset(r, 0, sizeof(*r));
	r->seed = 42;
	r->dtype = "F16";
	r->projection_dim = 512;
	r->vocab_size = 49408;
	r->max_positions = 77;
	r->text = (tm_tower){.width = 512, .layers = 12, .heads = 8,
	    .mlp = 2048, .quick_gelu = 1, .eps = 1e-5};
	r->vision = (tm_tower){.width = 768, .layers = 12, .heads = 12,
	    .mlp = 3072, .quick_gelu = 1, .eps = 1e-5, .image_size = 224,
	    .patch_size = 32};
}

static inline uint64_t
tm_fnv1a64(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ull;
	}
	return h;
}

static inline uint64_t
tm_splitmix64(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ull;
	uint64_t z = x;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* Fills out[0..n) with tensor `name`'s float32 values (before rounding to
 * the dtype). */
static inline void
tm_gen(uint64_t seed, const char *name, size_t n, float scale, float offset,
    float *out)
{
	uint64_t base = seed ^ tm_fnv1a64(name);
	for (size_t i = 0; i < n; i++) {
		uint64_t u = tm_splitmix64(base + i);
		float k = (float)(u >> 40);
		float v = k * 0x1p-23f;
		v = v - 1.0f;
		float w = v * scale;     /* separate statements: no FMA */
		w = w + offset;
		out[i] = w;
	}
}

static inline uint16_t
tm_f16_rne(float f)
{
	uint32_t x;
	memcpy(&x, &f, sizeof(x));
	uint32_t sign = (x >> 16) & 0x8000u;
	int32_t exp = (int32_t)((x >> 23) & 0xffu);
	uint32_t man = x & 0x7fffffu;
	if (exp == 0xff)
		return (uint16_t)(sign | 0x7c00u | (man ? 0x200u : 0));
	int32_t e = exp - 112;       /* rebias 127 -> 15 */
	if (e >= 0x1f)
		return (uint16_t)(sign | 0x7c00u);
	if (e <= 0) {                /* subnormal half (or zero) */
		uint32_t m24 = exp ? (man | 0x800000u) : man;
		int shift = 126 - exp;
		if (exp == 0 || shift > 24)
			return (uint16_t)sign;
		uint32_t q = m24 >> shift;
		uint32_t rem = m24 & ((1u << shift) - 1);
		uint32_t half = 1u << (shift - 1);
		if (rem > half || (rem == half && (q & 1)))
			q++;
		return (uint16_t)(sign | q);
	}
	uint32_t q = ((uint32_t)e << 10) | (man >> 13);
	uint32_t rem = man & 0x1fffu;
	if (rem > 0x1000u || (rem == 0x1000u && (q & 1)))
		q++;
	return (uint16_t)(sign | q);
}

static inline uint16_t
tm_bf16_rne(float f)
{
	uint32_t x;
	memcpy(&x, &f, sizeof(x));
	x += 0x7fffu + ((x >> 16) & 1u);
	return (uint16_t)(x >> 16);
}

typedef void (*tm_spec_fn)(void *ctx, const char *name, int ndim,
    const int64_t *shape, float scale, float offset);

static inline float
tm_fscale(int fan_in, double gain)
{
	return (float)(gain / sqrt((double)fan_in));
}

static inline void
tm_tower_specs(const char *pfx, const tm_tower *c, tm_spec_fn fn, void *ctx)
{
	char n[192];
	int64_t d = c->width, m = c->mlp;
	static const char *const projs[] = {"q_proj", "k_proj", "v_proj",
	    "out_proj"};
	for (int i = 0; i < c->layers; i++) {
		for (int ln = 1; ln <= 2; ln++) {
			snprintf(n, sizeof(n), "%s.encoder.layers.%d.layer_norm%d."
			    "weight", pfx, i, ln);
			fn(ctx, n, 1, (int64_t[]){d}, 0.3f, 1.0f);
			snprintf(n, sizeof(n), "%s.encoder.layers.%d.layer_norm%d."
			    "bias", pfx, i, ln);
			fn(ctx, n, 1, (int64_t[]){d}, 0.1f, 0.0f);
		}
		for (int p = 0; p < 4; p++) {
			double gain = p < 2 ? 6.0 : 1.5;
			snprintf(n, sizeof(n), "%s.encoder.layers.%d.self_attn.%s."
			    "weight", pfx, i, projs[p]);
			fn(ctx, n, 2, (int64_t[]){d, d}, tm_fscale((int)d, gain),
			    0.0f);
			snprintf(n, sizeof(n), "%s.encoder.layers.%d.self_attn.%s."
			    "bias", pfx, i, projs[p]);
			fn(ctx, n, 1, (int64_t[]){d}, 0.1f, 0.0f);
		}
		snprintf(n, sizeof(n), "%s.encoder.layers.%d.mlp.fc1.weight",
		    pfx, i);
		fn(ctx, n, 2, (int64_t[]){m, d}, tm_fscale((int)d, 1.5), 0.0f);
		snprintf(n, sizeof(n), "%s.encoder.layers.%d.mlp.fc1.bias", pfx, i);
		fn(ctx, n, 1, (int64_t[]){m}, 0.1f, 0.0f);
		snprintf(n, sizeof(n), "%s.encoder.layers.%d.mlp.fc2.weight",
		    pfx, i);
		fn(ctx, n, 2, (int64_t[]){d, m}, tm_fscale((int)m, 1.5), 0.0f);
		snprintf(n, sizeof(n), "%s.encoder.layers.%d.mlp.fc2.bias", pfx, i);
		fn(ctx, n, 1, (int64_t[]){d}, 0.1f, 0.0f);
	}
}

/* Calls fn for every float tensor of the recipe, in file order. */
static inline void
tm_specs(const tm_recipe *r, tm_spec_fn fn, void *ctx)
{
	int64_t d = r->text.width, e = r->projection_dim;
	fn(ctx, "text_model.embeddings.token_embedding.weight", 2,
	    (int64_t[]){r->vocab_size, d}, 1.0f, 0.0f);
	fn(ctx, "text_model.embeddings.position_embedding.weight", 2,
	    (int64_t[]){r->max_positions, d}, 0.5f, 0.0f);
	tm_tower_specs("text_model", &r->text, fn, ctx);
	fn(ctx, "text_model.final_layer_norm.weight", 1, (int64_t[]){d},
	    0.3f, 1.0f);
	fn(ctx, "text_model.final_layer_norm.bias", 1, (int64_t[]){d}, 0.1f,
	    0.0f);
	int64_t dv = r->vision.width, p = r->vision.patch_size;
	int64_t g = r->vision.image_size / p;
	fn(ctx, "vision_model.embeddings.class_embedding", 1, (int64_t[]){dv},
	    1.0f, 0.0f);
	fn(ctx, "vision_model.embeddings.patch_embedding.weight", 4,
	    (int64_t[]){dv, 3, p, p}, tm_fscale((int)(3 * p * p), 1.5), 0.0f);
	fn(ctx, "vision_model.embeddings.position_embedding.weight", 2,
	    (int64_t[]){g * g + 1, dv}, 0.5f, 0.0f);
	fn(ctx, "vision_model.pre_layrnorm.weight", 1, (int64_t[]){dv}, 0.3f,
	    1.0f);
	fn(ctx, "vision_model.pre_layrnorm.bias", 1, (int64_t[]){dv}, 0.1f,
	    0.0f);
	tm_tower_specs("vision_model", &r->vision, fn, ctx);
	fn(ctx, "vision_model.post_layernorm.weight", 1, (int64_t[]){dv}, 0.3f,
	    1.0f);
	fn(ctx, "vision_model.post_layernorm.bias", 1, (int64_t[]){dv}, 0.1f,
	    0.0f);
	fn(ctx, "visual_projection.weight", 2, (int64_t[]){e, dv},
	    tm_fscale((int)dv, 1.5), 0.0f);
	fn(ctx, "text_projection.weight", 2, (int64_t[]){e, d},
	    tm_fscale((int)d, 1.5), 0.0f);
	fn(ctx, "logit_scale", 0, NULL, 0.0f, 2.6592f);
}

typedef struct tm_writer {
	const tm_recipe *r;
	int esize;
	char *hdr;                   /* header JSON being built */
	size_t hlen, hcap;
	uint64_t off;
	FILE *f;                     /* data pass: where the bytes go */
	int failed;
} tm_writer;

static inline void
tm_hdr_append(tm_writer *w, const char *s)
{
	size_t n = strlen(s);
	if (w->hlen + n + 1 > w->hcap) {
		size_t cap = (w->hlen + n + 1) * 2;
		char *p = realloc(w->hdr, cap);
		if (p == NULL) {
			w->failed = 1;
			return;
		}
		w->hdr = p;
		w->hcap = cap;
	}
	memcpy(w->hdr + w->hlen, s, n + 1);
	w->hlen += n;
}

static inline void
tm_hdr_entry(tm_writer *w, const char *name, const char *dtype, int ndim,
    const int64_t *shape, uint64_t nbytes)
{
	char buf[320];
	tm_hdr_append(w, w->hlen > 1 ? "," : "");
	snprintf(buf, sizeof(buf), "\"%s\":{\"dtype\":\"%s\",\"shape\":[", name,
	    dtype);
	tm_hdr_append(w, buf);
	for (int i = 0; i < ndim; i++) {
		snprintf(buf, sizeof(buf), "%s%lld", i ? "," : "",
		    (long long)shape[i]);
		tm_hdr_append(w, buf);
	}
	snprintf(buf, sizeof(buf), "],\"data_offsets\":[%llu,%llu]}",
	    (unsigned long long)w->off, (unsigned long long)(w->off + nbytes));
	tm_hdr_append(w, buf);
	w->off += nbytes;
}

static inline size_t
tm_numel(int ndim, const int64_t *shape)
{
	size_t n = 1;
	for (int i = 0; i < ndim; i++)
		n *= (size_t)shape[i];
	return n;
}

static inline void
tm_spec_header(void *ctx, const char *name, int ndim, const int64_t *shape,
    float scale, float offset)
{
	tm_writer *w = ctx;
	(void)scale;
	(void)offset;
	tm_hdr_entry(w, name, w->r->dtype, ndim, shape,
	    tm_numel(ndim, shape) * (uint64_t)w->esize);
}

static inline void
tm_spec_data(void *ctx, const char *name, int ndim, const int64_t *shape,
    float scale, float offset)
{
	tm_writer *w = ctx;
	if (w->failed)
		return;
	size_t n = tm_numel(ndim, shape);
	float *v = malloc(n * sizeof(float));
	uint8_t *b = malloc(n * 4);
	if (v == NULL || b == NULL) {
		w->failed = 1;
		goto out_free;
	}
	tm_gen(w->r->seed, name, n, scale, offset, v);
	int f16 = strcmp(w->r->dtype, "F16") == 0;
	for (size_t i = 0; i < n; i++) {
		if (w->esize == 4) {
			uint32_t x;
			memcpy(&x, &v[i], 4);
			for (int k = 0; k < 4; k++)
				b[4 * i + k] = (uint8_t)(x >> (8 * k));
		} else {
			uint16_t h = f16 ? tm_f16_rne(v[i]) : tm_bf16_rne(v[i]);
			b[2 * i] = (uint8_t)h;
			b[2 * i + 1] = (uint8_t)(h >> 8);
		}
	}
	if (fwrite(b, (size_t)w->esize, n, w->f) != n)
		w->failed = 1;
out_free:
	free(v);
	free(b);
}

/* Writes the recipe's model.safetensors to `path`.  Returns 0 or -1. */
static inline int
tm_write_safetensors(const tm_recipe *r, const char *path)
{
	tm_writer w = {.r = r, .esize = strcmp(r->dtype, "F32") == 0 ? 4 : 2};
	int g = r->vision.image_size / r->vision.patch_size;
	tm_hdr_append(&w, "{");
	tm_specs(r, tm_spec_header, &w);
	if (r->position_ids) {
		tm_hdr_entry(&w, "text_model.embeddings.position_ids", "I64", 2,
		    (int64_t[]){1, r->max_positions}, 8u * r->max_positions);
		tm_hdr_entry(&w, "vision_model.embeddings.position_ids", "I64",
		    2, (int64_t[]){1, g * g + 1}, 8u * (g * g + 1));
	}
	tm_hdr_append(&w, "}");
	while (!w.failed && w.hlen % 8 != 0)
		tm_hdr_append(&w, " ");
	if (w.failed) {
		free(w.hdr);
		return -1;
	}
	w.f = fopen(path, "wb");
	if (w.f == NULL) {
		free(w.hdr);
		return -1;
	}
	uint8_t len8[8];
	for (int k = 0; k < 8; k++)
		len8[k] = (uint8_t)((uint64_t)w.hlen >> (8 * k));
	if (fwrite(len8, 1, 8, w.f) != 8 || fwrite(w.hdr, 1, w.hlen, w.f) !=
	    w.hlen)
		w.failed = 1;
	tm_specs(r, tm_spec_data, &w);
	if (r->position_ids) {
		int counts[2] = {r->max_positions, g * g + 1};
		for (int t = 0; t < 2 && !w.failed; t++) {
			for (int64_t i = 0; i < counts[t]; i++) {
				uint8_t b[8];
				for (int k = 0; k < 8; k++)
					b[k] = (uint8_t)((uint64_t)i >> (8 * k));
				if (fwrite(b, 1, 8, w.f) != 8)
					w.failed = 1;
			}
		}
	}
	if (fclose(w.f) != 0)
		w.failed = 1;
	free(w.hdr);
	return w.failed ? -1 : 0;
}

/* Writes `text` to dir/name.  Returns 0 or -1. */
static inline int
tm_write_file(const char *dir, const char *name, const char *text)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (f == NULL)
		return -1;
	size_t n = strlen(text);
	int ok = fwrite(text, 1, n, f) == n;
	ok &= fclose(f) == 0;
	return ok ? 0 : -1;
}

/* Writes config.json in the current transformers layout (text_config,
 * vision_config) with every field spelled out. */
static inline int
tm_write_config(const tm_recipe *r, const char *dir)
{
	char buf[2048];
	const tm_tower *t = &r->text, *v = &r->vision;
	snprintf(buf, sizeof(buf),
	    "{\"architectures\":[\"CLIPModel\"],\"model_type\":\"clip\","
	    "\"projection_dim\":%d,\"text_config\":{\"hidden_size\":%d,"
	    "\"intermediate_size\":%d,\"num_hidden_layers\":%d,"
	    "\"num_attention_heads\":%d,\"max_position_embeddings\":%d,"
	    "\"vocab_size\":%d,\"hidden_act\":\"%s\",\"layer_norm_eps\":%.17g},"
	    "\"vision_config\":{\"hidden_size\":%d,\"intermediate_size\":%d,"
	    "\"num_hidden_layers\":%d,\"num_attention_heads\":%d,"
	    "\"num_channels\":3,\"image_size\":%d,\"patch_size\":%d,"
	    "\"hidden_act\":\"%s\",\"layer_norm_eps\":%.17g}}\n",
	    r->projection_dim, t->width, t->mlp, t->layers, t->heads,
	    r->max_positions, r->vocab_size,
	    t->quick_gelu ? "quick_gelu" : "gelu", t->eps, v->width, v->mlp,
	    v->layers, v->heads, v->image_size, v->patch_size,
	    v->quick_gelu ? "quick_gelu" : "gelu", v->eps);
	return tm_write_file(dir, "config.json", buf);
}

/* Writes config.json and model.safetensors into the existing folder dir. */
static inline int
tm_write_model(const tm_recipe *r, const char *dir)
{
	char path[4096];
	if (tm_write_config(r, dir) != 0)
		return -1;
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	return tm_write_safetensors(r, path);
}

/* Deterministic test image j (CHW float32, 3 * size * size), as
 * tools/ref_clip.py's pixels_for: a coarse x coarse pattern per channel
 * (scale coarse_scale), nearest-upsampled, plus fine noise (scale
 * fine_scale). */
static inline int
tm_pixels(uint64_t seed, int j, int size, int coarse, float coarse_scale,
    float fine_scale, float *out)
{
	char name[64];
	float *cv = malloc((size_t)3 * coarse * coarse * sizeof(float));
	if (cv == NULL)
		return -1;
	snprintf(name, sizeof(name), "coarse.%d", j);
	tm_gen(seed, name, (size_t)3 * coarse * coarse, coarse_scale, 0.0f, cv);
	snprintf(name, sizeof(name), "pixels.%d", j);
	tm_gen(seed, name, (size_t)3 * size * size, fine_scale, 0.0f, out);
	for (int c = 0; c < 3; c++)
		for (int y = 0; y < size; y++)
			for (int x = 0; x < size; x++) {
				float up = cv[(c * coarse + y * coarse / size) *
				    coarse + x * coarse / size];
				float *o = &out[((size_t)c * size + y) * size + x];
				*o = up + *o;
			}
	free(cv);
	return 0;
}

/* Removes a folder tree made by a test (files and subfolders). */
static inline void
tm_rmtree(const char *dir)
{
	DIR *d = opendir(dir);
	if (d != NULL) {
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			if (strcmp(e->d_name, ".") == 0 ||
			    strcmp(e->d_name, "..") == 0)
				continue;
			char path[4096];
			struct stat st;
			if ((size_t)snprintf(path, sizeof(path), "%s/%.255s", dir,
			    e->d_name) >= sizeof(path))
				continue;
			if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
				tm_rmtree(path);
			else
				unlink(path);
		}
		closedir(d);
	}
	rmdir(dir);
}

#endif
