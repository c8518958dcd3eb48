/*
 * testmodel.h - header-only writer of small deterministic model folders
 * (Hugging Face layout) of each family, CLIP, SigLIP and SigLIP2, for
 * tests.  Every function is static inline.
 *
 * The weights are those of tools/ref_clip.py (CLIP) and tools/ref_siglip.py
 * (SigLIP, SigLIP2; the same generator), bit for bit: element i of
 * tensor N is
 *     u = splitmix64((seed ^ fnv1a64(N)) + i)
 *     v = (float)(u >> 40) * 2^-23 - 1            (exact, in [-1, 1))
 *     w = v * scale + offset                       (two float32 roundings)
 * rounded to the recipe's dtype (F16, BF16: round to nearest even).  The
 * scales (tm_specs) keep activations healthy and make different inputs
 * give clearly different embeddings.  tests/encoder_model.c and
 * tests/encoder_siglip.c check that the files are byte-identical to the
 * scripts' (sha256 in the fixtures).
 *
 * A SigLIP folder also gets preprocessor_config.json (when r->resample is
 * set) and the tokenizer files, copied from tests/fixtures/spm/siglip
 * (spiece.model) or tests/fixtures/spm/siglip2 (tokenizer.model): the
 * tests run from the repository root.
 *
 * Typical use (any module's test):
 *     tm_recipe r;
 *     tm_recipe_tiny(&r);                  // or tm_recipe_siglip_tiny()
 *     char dir[] = "/tmp/cdxmodel-XXXXXX";
 *     mkdtemp(dir);
 *     tm_write_model(&r, dir);             // config.json, model.safetensors
 *                                          // (SigLIP: + preprocessor and
 *                                          // tokenizer files)
 *     ... clip_model_load(dir, ...) ...
 *     tm_rmtree(dir);
 */
#ifndef CDX_TESTMODEL_H
#define CDX_TESTMODEL_H

#include <cjson/cJSON.h>
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
	int quick_gelu;              /* CLIP: quick_gelu, else gelu; SigLIP
	                                always gelu_pytorch_tanh */
	double eps;
	int image_size, patch_size;  /* vision only */
} tm_tower;

/* tm_recipe.family; 0 (a zeroed recipe) is CLIP. */
enum tm_family {
	TM_FAMILY_CLIP = 0,
	TM_FAMILY_SIGLIP = 1,        /* model_type "siglip", spiece.model */
	TM_FAMILY_SIGLIP2 = 2,       /* model_type "siglip" (FixRes), the
	                                Gemma-like tokenizer.model */
};

typedef struct tm_recipe {
	uint64_t seed;
	const char *dtype;           /* "F32", "F16" or "BF16" */
	int position_ids;            /* also write *.position_ids (I64) */
	/* CLIP: projection_dim.  SigLIP: the text head's output size
	 * (text_config.projection_size; 0: the text width, written nowhere);
	 * the embedding is the vision width, so it must equal that. */
	int projection_dim;
	int vocab_size, max_positions;  /* CLIP fixtures 49408, 77; SigLIP
	                                   2048, 64 */
	tm_tower text, vision;
	/* The fields below are SigLIP's (0 / NULL for CLIP). */
	int family;                  /* enum tm_family */
	float logit_scale, logit_bias;  /* the model tensors' values */
	int resample;                /* preprocessor_config.json's resample
	                                (3 bicubic, 2 bilinear); 0: no file */
	const char *spm_dir;         /* tokenizer files to copy; NULL: by
	                                family, tests/fixtures/spm/<family> */
	const char *skip_tensor;     /* a tensor left out of the file (tests
	                                of incomplete folders); NULL: none */
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

/* A tiny SigLIP (family TM_FAMILY_SIGLIP) or SigLIP2 model: patch 16,
 * image 64, widths 32, 2 layers, vocabulary 2048, 64 text positions, F16,
 * logit_scale log(10), logit_bias -1, bicubic (SigLIP2: bilinear). */
static inline void
tm_recipe_siglip_tiny(tm_recipe *r, int family)
{
	memset(r, 0, sizeof(*r));
	r->seed = 7;
	r->dtype = "F16";
	r->family = family;
	r->vocab_size = 2048;
	r->max_positions = 64;
	r->text = (tm_tower){.width = 32, .layers = 2, .heads = 2, .mlp = 64,
	    .eps = 1e-6};
	r->vision = (tm_tower){.width = 32, .layers = 2, .heads = 2, .mlp = 64,
	    .eps = 1e-6, .image_size = 64, .patch_size = 16};
	r->logit_scale = (float)log(10.0);
	r->logit_bias = -1.0f;
	r->resample = family == TM_FAMILY_SIGLIP2 ? 2 : 3;
}

/* The shapes of google/siglip-base-patch16-224 (both towers 768w/12L/12H/
 * 3072, image 224, patch 16, vocabulary 32000, 64 positions), F16, random
 * weights, with the small test tokenizer: for benchmarks. */
static inline void
tm_recipe_siglip_b16(tm_recipe *r)
{
	tm_recipe_siglip_tiny(r, TM_FAMILY_SIGLIP);
	r->seed = 42;
	r->vocab_size = 32000;
	r->text = (tm_tower){.width = 768, .layers = 12, .heads = 12,
	    .mlp = 3072, .eps = 1e-6};
	r->vision = (tm_tower){.width = 768, .layers = 12, .heads = 12,
	    .mlp = 3072, .eps = 1e-6, .image_size = 224, .patch_size = 16};
	r->logit_scale = 4.7659f;
	r->logit_bias = -12.9f;
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

/* The text model's tensors up to its final layer norm, the same in every
 * family: embeddings, the tower, final_layer_norm. */
static inline void
tm_text_specs(const tm_recipe *r, tm_spec_fn fn, void *ctx)
{
	int64_t d = r->text.width;
	fn(ctx, "text_model.embeddings.token_embedding.weight", 2,
	    (int64_t[]){r->vocab_size, d}, 1.0f, 0.0f);
	fn(ctx, "text_model.embeddings.position_embedding.weight", 2,
	    (int64_t[]){r->max_positions, d}, 0.5f, 0.0f);
	tm_tower_specs("text_model", &r->text, fn, ctx);
	fn(ctx, "text_model.final_layer_norm.weight", 1, (int64_t[]){d},
	    0.3f, 1.0f);
	fn(ctx, "text_model.final_layer_norm.bias", 1, (int64_t[]){d}, 0.1f,
	    0.0f);
}

/* The text head's output size of a SigLIP recipe. */
static inline int
tm_siglip_head_out(const tm_recipe *r)
{
	return r->projection_dim > 0 ? r->projection_dim : r->text.width;
}

/* SigLIP's float tensors in file order (tools/ref_siglip.py's
 * tensor_specs), named as SiglipModel.state_dict() names them. */
static inline void
tm_siglip_specs(const tm_recipe *r, tm_spec_fn fn, void *ctx)
{
	int64_t d = r->text.width, e = tm_siglip_head_out(r);
	tm_text_specs(r, fn, ctx);
	fn(ctx, "text_model.head.weight", 2, (int64_t[]){e, d},
	    tm_fscale((int)d, 1.5), 0.0f);
	fn(ctx, "text_model.head.bias", 1, (int64_t[]){e}, 0.1f, 0.0f);
	int64_t dv = r->vision.width, m = r->vision.mlp;
	int64_t p = r->vision.patch_size, g = r->vision.image_size / p;
	fn(ctx, "vision_model.embeddings.patch_embedding.weight", 4,
	    (int64_t[]){dv, 3, p, p}, tm_fscale((int)(3 * p * p), 1.5), 0.0f);
	fn(ctx, "vision_model.embeddings.patch_embedding.bias", 1,
	    (int64_t[]){dv}, 0.1f, 0.0f);
	fn(ctx, "vision_model.embeddings.position_embedding.weight", 2,
	    (int64_t[]){g * g, dv}, 0.5f, 0.0f);
	tm_tower_specs("vision_model", &r->vision, fn, ctx);
	fn(ctx, "vision_model.post_layernorm.weight", 1, (int64_t[]){dv}, 0.3f,
	    1.0f);
	fn(ctx, "vision_model.post_layernorm.bias", 1, (int64_t[]){dv}, 0.1f,
	    0.0f);
	fn(ctx, "vision_model.head.probe", 3, (int64_t[]){1, 1, dv}, 1.0f,
	    0.0f);
	fn(ctx, "vision_model.head.attention.in_proj_weight", 2,
	    (int64_t[]){3 * dv, dv}, tm_fscale((int)dv, 3.0), 0.0f);
	fn(ctx, "vision_model.head.attention.in_proj_bias", 1,
	    (int64_t[]){3 * dv}, 0.1f, 0.0f);
	fn(ctx, "vision_model.head.attention.out_proj.weight", 2,
	    (int64_t[]){dv, dv}, tm_fscale((int)dv, 1.5), 0.0f);
	fn(ctx, "vision_model.head.attention.out_proj.bias", 1,
	    (int64_t[]){dv}, 0.1f, 0.0f);
	fn(ctx, "vision_model.head.layernorm.weight", 1, (int64_t[]){dv}, 0.3f,
	    1.0f);
	fn(ctx, "vision_model.head.layernorm.bias", 1, (int64_t[]){dv}, 0.1f,
	    0.0f);
	fn(ctx, "vision_model.head.mlp.fc1.weight", 2, (int64_t[]){m, dv},
	    tm_fscale((int)dv, 1.5), 0.0f);
	fn(ctx, "vision_model.head.mlp.fc1.bias", 1, (int64_t[]){m}, 0.1f,
	    0.0f);
	fn(ctx, "vision_model.head.mlp.fc2.weight", 2, (int64_t[]){dv, m},
	    tm_fscale((int)m, 1.5), 0.0f);
	fn(ctx, "vision_model.head.mlp.fc2.bias", 1, (int64_t[]){dv}, 0.1f,
	    0.0f);
	fn(ctx, "logit_scale", 1, (int64_t[]){1}, 0.0f, r->logit_scale);
	fn(ctx, "logit_bias", 1, (int64_t[]){1}, 0.0f, r->logit_bias);
}

/* Calls fn for every float tensor of the recipe, in file order. */
static inline void
tm_specs(const tm_recipe *r, tm_spec_fn fn, void *ctx)
{
	if (r->family != TM_FAMILY_CLIP) {
		tm_siglip_specs(r, fn, ctx);
		return;
	}
	int64_t d = r->text.width, e = r->projection_dim;
	tm_text_specs(r, fn, ctx);
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
	if (w->r->skip_tensor != NULL && strcmp(name, w->r->skip_tensor) == 0)
		return;
	tm_hdr_entry(w, name, w->r->dtype, ndim, shape,
	    tm_numel(ndim, shape) * (uint64_t)w->esize);
}

static inline void
tm_spec_data(void *ctx, const char *name, int ndim, const int64_t *shape,
    float scale, float offset)
{
	tm_writer *w = ctx;
	if (w->failed || (w->r->skip_tensor != NULL &&
	    strcmp(name, w->r->skip_tensor) == 0))
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
	/* the vision positions: CLIP's class token has one */
	int npos = g * g + (r->family == TM_FAMILY_CLIP);
	tm_hdr_append(&w, "{");
	tm_specs(r, tm_spec_header, &w);
	if (r->position_ids) {
		tm_hdr_entry(&w, "text_model.embeddings.position_ids", "I64", 2,
		    (int64_t[]){1, r->max_positions}, 8u * r->max_positions);
		tm_hdr_entry(&w, "vision_model.embeddings.position_ids", "I64",
		    2, (int64_t[]){1, npos}, 8u * npos);
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
		int counts[2] = {r->max_positions, npos};
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

/* SigLIP's config.json: the hub's layout (model_type "siglip",
 * architectures SiglipModel) with every field spelled out, as
 * tools/ref_siglip.py's config_json() writes its "full" recipes. */
static inline int
tm_write_siglip_config(const tm_recipe *r, const char *dir)
{
	char buf[2048], proj[48] = "";
	const tm_tower *t = &r->text, *v = &r->vision;
	const char *dt = strcmp(r->dtype, "F32") == 0 ? "float32" :
	    strcmp(r->dtype, "F16") == 0 ? "float16" : "bfloat16";
	if (r->projection_dim > 0)
		snprintf(proj, sizeof(proj), ",\"projection_size\":%d",
		    r->projection_dim);
	snprintf(buf, sizeof(buf),
	    "{\"architectures\":[\"SiglipModel\"],\"initializer_factor\":1.0,"
	    "\"model_type\":\"siglip\",\"text_config\":{\"hidden_size\":%d,"
	    "\"intermediate_size\":%d,\"num_hidden_layers\":%d,"
	    "\"num_attention_heads\":%d,\"max_position_embeddings\":%d,"
	    "\"vocab_size\":%d,\"hidden_act\":\"gelu_pytorch_tanh\","
	    "\"layer_norm_eps\":%.17g,\"model_type\":\"siglip_text_model\"%s},"
	    "\"torch_dtype\":\"%s\",\"transformers_version\":\"4.47.0\","
	    "\"vision_config\":{\"hidden_size\":%d,\"intermediate_size\":%d,"
	    "\"num_hidden_layers\":%d,\"num_attention_heads\":%d,"
	    "\"num_channels\":3,\"image_size\":%d,\"patch_size\":%d,"
	    "\"hidden_act\":\"gelu_pytorch_tanh\",\"layer_norm_eps\":%.17g,"
	    "\"model_type\":\"siglip_vision_model\"}}\n",
	    t->width, t->mlp, t->layers, t->heads, r->max_positions,
	    r->vocab_size, t->eps, proj, dt, v->width, v->mlp, v->layers,
	    v->heads, v->image_size, v->patch_size, v->eps);
	return tm_write_file(dir, "config.json", buf);
}

/* Writes config.json in the current transformers layout (text_config,
 * vision_config) with every field spelled out. */
static inline int
tm_write_config(const tm_recipe *r, const char *dir)
{
	if (r->family != TM_FAMILY_CLIP)
		return tm_write_siglip_config(r, dir);
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

/* Writes a SigLIP recipe's preprocessor_config.json, the hub's
 * SiglipImageProcessor file (a squash to image_size, r->resample, mean
 * and std 0.5); nothing when r->resample is 0.  Returns 0 or -1. */
static inline int
tm_write_preprocessor(const tm_recipe *r, const char *dir)
{
	char buf[1024];
	if (r->resample == 0)
		return 0;
	snprintf(buf, sizeof(buf),
	    "{\"do_normalize\":true,\"do_rescale\":true,\"do_resize\":true,"
	    "\"image_mean\":[0.5,0.5,0.5],"
	    "\"image_processor_type\":\"SiglipImageProcessor\","
	    "\"image_std\":[0.5,0.5,0.5],"
	    "\"processor_class\":\"SiglipProcessor\","
	    "\"resample\":%d,\"rescale_factor\":0.00392156862745098,"
	    "\"size\":{\"height\":%d,\"width\":%d}}\n", r->resample,
	    r->vision.image_size, r->vision.image_size);
	return tm_write_file(dir, "preprocessor_config.json", buf);
}

/* Copies file src to dst.  Returns 0 or -1. */
static inline int
tm_copy_file(const char *src, const char *dst)
{
	FILE *in = fopen(src, "rb");
	if (in == NULL)
		return -1;
	FILE *out = fopen(dst, "wb");
	if (out == NULL) {
		fclose(in);
		return -1;
	}
	char buf[65536];
	size_t n;
	int ok = 1;
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		ok &= fwrite(buf, 1, n, out) == n;
	ok &= !ferror(in);
	fclose(in);
	ok &= fclose(out) == 0;
	return ok ? 0 : -1;
}

/* The folder a SigLIP recipe's tokenizer files come from (relative to the
 * repository root). */
static inline const char *
tm_spm_dir(const tm_recipe *r)
{
	if (r->spm_dir != NULL)
		return r->spm_dir;
	return r->family == TM_FAMILY_SIGLIP2 ? "tests/fixtures/spm/siglip2" :
	    "tests/fixtures/spm/siglip";
}

/* Copies tokenizer_config.json from src to dst with its model_max_length
 * (SigLIP's test tokenizer says 64) set to max_positions, as a folder whose
 * model has that many text positions says; a value that is no context
 * length (SigLIP2's Gemma files say 1e30) is kept.  Returns 0 or -1. */
static inline int
tm_copy_tokenizer_config(const char *src, const char *dst, int max_positions)
{
	FILE *in = fopen(src, "rb");
	if (in == NULL)
		return -1;
	char buf[65536];
	size_t n = fread(buf, 1, sizeof(buf) - 1, in);
	int ok = !ferror(in), whole = feof(in);
	fclose(in);
	if (!ok)
		return -1;
	if (!whole)                  /* too large to edit here: as it is */
		return tm_copy_file(src, dst);
	buf[n] = '\0';
	char *k = strstr(buf, "\"model_max_length\"");
	if (k == NULL)
		return tm_copy_file(src, dst);
	char *v = k + strlen("\"model_max_length\"");
	v += strspn(v, " \t\r\n:");
	char *end = v + strspn(v, "0123456789");
	if (end == v || end - v > 6)     /* not a context length (Gemma's
	                                    files say 1e30): as it is */
		return tm_copy_file(src, dst);
	FILE *out = fopen(dst, "wb");
	if (out == NULL)
		return -1;
	ok = fwrite(buf, 1, (size_t)(v - buf), out) == (size_t)(v - buf);
	ok &= fprintf(out, "%d", max_positions) > 0;
	ok &= fputs(end, out) >= 0;
	ok &= fclose(out) == 0;
	return ok ? 0 : -1;
}

/* Copies every regular file of the recipe's tokenizer folder (spiece.model
 * or tokenizer.model, tokenizer_config.json, special_tokens_map.json, ...)
 * into dir; tokenizer_config.json's model_max_length becomes the recipe's
 * max_positions.  Returns 0, or -1 (also when the folder holds no file). */
static inline int
tm_copy_tokenizer(const tm_recipe *r, const char *dir)
{
	const char *src = tm_spm_dir(r);
	DIR *d = opendir(src);
	if (d == NULL)
		return -1;
	int copied = 0, rc = 0;
	struct dirent *e;
	while (rc == 0 && (e = readdir(d)) != NULL) {
		char from[4096], to[4096];
		struct stat st;
		if (e->d_name[0] == '.')
			continue;
		snprintf(from, sizeof(from), "%s/%.255s", src, e->d_name);
		snprintf(to, sizeof(to), "%s/%.255s", dir, e->d_name);
		if (stat(from, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		if (strcmp(e->d_name, "tokenizer_config.json") == 0)
			rc = tm_copy_tokenizer_config(from, to, r->max_positions);
		else
			rc = tm_copy_file(from, to);
		copied++;
	}
	closedir(d);
	return rc == 0 && copied > 0 ? 0 : -1;
}

/* Writes the recipe's folder into the existing folder dir: config.json and
 * model.safetensors; for SigLIP also preprocessor_config.json (when
 * r->resample is set) and the tokenizer files. */
static inline int
tm_write_model(const tm_recipe *r, const char *dir)
{
	char path[4096];
	if (tm_write_config(r, dir) != 0)
		return -1;
	if (r->family != TM_FAMILY_CLIP && (tm_write_preprocessor(r, dir) != 0
	    || tm_copy_tokenizer(r, dir) != 0))
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

/* Member k of o as a number into *v: 0, or -1 when o has no such number. */
static inline int
tm_json_num(const cJSON *o, const char *k, double *v)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
	if (!cJSON_IsNumber(j))
		return -1;
	*v = j->valuedouble;
	return 0;
}

/* Fills *t from a tower of a reference script's recipe (tools/ref_clip.py,
 * tools/ref_siglip.py): width, layers, heads, mlp, eps, CLIP's act
 * ("quick_gelu" sets quick_gelu), the vision tower's image_size and
 * patch_size.  Returns 0, or -1 when a field is missing (t untouched). */
static inline int
tm_tower_from_json(const cJSON *o, tm_tower *t)
{
	double w, l, h, m, eps, is = 0, ps = 0;
	const cJSON *act = cJSON_GetObjectItemCaseSensitive(o, "act");
	int vision = cJSON_GetObjectItemCaseSensitive(o, "image_size") != NULL;
	if (tm_json_num(o, "width", &w) || tm_json_num(o, "layers", &l) ||
	    tm_json_num(o, "heads", &h) || tm_json_num(o, "mlp", &m) ||
	    tm_json_num(o, "eps", &eps) || (vision &&
	    (tm_json_num(o, "image_size", &is) ||
	    tm_json_num(o, "patch_size", &ps))))
		return -1;
	t->width = (int)w;
	t->layers = (int)l;
	t->heads = (int)h;
	t->mlp = (int)m;
	t->quick_gelu = cJSON_IsString(act) &&
	    strcmp(act->valuestring, "quick_gelu") == 0;
	t->eps = eps;
	if (vision) {
		t->image_size = (int)is;
		t->patch_size = (int)ps;
	}
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
