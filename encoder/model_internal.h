/*
 * model_internal.h - private to encoder/: the loaded CLIP model, the
 * safetensors reader, config.json parsing and the float32 kernels the
 * encoders are built from.  Nothing here is part of the public API.
 */
#ifndef CLIP_MODEL_INTERNAL_H
#define CLIP_MODEL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/cdx.h"
#include "encoder/clip.h"

/* ---- safetensors (safetensors.c) -------------------------------------- */

enum st_dtype {
	ST_F32, ST_F16, ST_BF16, ST_F64,
	ST_I64, ST_I32, ST_I16, ST_I8, ST_U64, ST_U32, ST_U16, ST_U8, ST_BOOL,
	ST_F8_E4M3, ST_F8_E5M2,
};

#define ST_MAX_DIMS 8

typedef struct st_tensor {
	char *name;            /* owned by the st_file */
	int dtype;             /* enum st_dtype */
	int ndim;
	int64_t shape[ST_MAX_DIMS];
	uint64_t numel;
	const uint8_t *data;   /* inside the mapping */
	uint64_t nbytes;
} st_tensor;

typedef struct st_file {
	const char *path;      /* for messages; borrowed */
	const uint8_t *map;
	size_t size;
	st_tensor *tensors;
	size_t n_tensors;
} st_file;

/* Maps `path` read-only and checks its header completely (length, JSON,
 * dtypes, shapes against byte ranges, ranges inside the data region).
 * Errors: CDX_ENOTFOUND, CDX_EPERM, CDX_EIO, CDX_EFORMAT, CDX_ENOMEM.  On
 * failure *f is left closed (st_close is a no-op on it). */
int st_open(st_file *f, const char *path, cdx_error *err);
void st_close(st_file *f);
const st_tensor *st_find(const st_file *f, const char *name);

/* Checks that tensor `name` exists, is F32/F16/BF16 and has exactly the
 * given shape (ndim dims).  Errors: CDX_EFORMAT naming the tensor. */
int st_check(const st_file *f, const char *name, int ndim,
    const int64_t *shape, cdx_error *err);

/* st_check, then converts the tensor to float32 into dst (numel floats). */
int st_load_f32(const st_file *f, const char *name, int ndim,
    const int64_t *shape, float *dst, cdx_error *err);

/* ---- config.json (config.c) ------------------------------------------- */

typedef struct clip_tower_cfg {
	int width, layers, heads, mlp, max_positions, vocab_size;
	int image_size, patch_size, channels;
	int quick_gelu;
	float eps;
} clip_tower_cfg;

typedef struct clip_config {
	clip_tower_cfg text, vision;
	int projection_dim;
} clip_config;

/* Parses a Hugging Face CLIPConfig (text_config / vision_config, and the
 * older text_config_dict / vision_config_dict overrides) applying
 * transformers' defaults for absent fields.  `path` is for messages. */
int clip_config_parse(const char *json, size_t len, const char *path,
    clip_config *out, cdx_error *err);

/* Parses preprocessor_config.json; fields absent keep *out's values. */
int clip_preprocess_parse(const char *json, size_t len, const char *path,
    clip_preprocess_cfg *out, cdx_error *err);

/* ---- the model (model.c) ---------------------------------------------- */

typedef struct clip_layer {
	const float *ln1_w, *ln1_b;
	const float *qkv_w, *qkv_b;  /* q, k, v rows stacked: [3D][D], [3D] */
	const float *out_w, *out_b;  /* [D][D], [D] */
	const float *ln2_w, *ln2_b;
	const float *fc1_w, *fc1_b;  /* [M][D], [M] */
	const float *fc2_w, *fc2_b;  /* [D][M], [D] */
} clip_layer;

typedef struct clip_tower {
	clip_tower_cfg cfg;
	clip_layer *layers;
	const float *pos_emb;        /* [positions][D] */
	const float *ln_pre_w, *ln_pre_b;    /* vision only */
	const float *ln_post_w, *ln_post_b;  /* final / post layer norm */
	const float *proj;           /* [E][D] */
	/* text */
	const float *tok_emb;        /* [vocab][D] */
	/* vision */
	const float *class_emb;      /* [D] */
	const float *patch_w;        /* [D][3 * p * p] */
} clip_tower;

struct clip_model {
	clip_model_info info;
	clip_tokenizer *tok;
	clip_tower text, vision;
	float *arena;                /* every weight, float32 */
	size_t arena_floats;
};

/* ---- kernels (ops.c) -------------------------------------------------- */

/* Y[T][N] = X[T][K] * W[N][K]^T + beta * Y (W is a Linear's [out][in]). */
void ops_linear(const float *x, const float *w, float *y, int t, int n, int k,
    float beta);

/* For each of t rows of x (stride d): if bias, x += bias; then
 * y = layernorm(x) * w + b.  y may equal x. */
void ops_layernorm(float *x, const float *bias, const float *w,
    const float *b, float *y, int t, int d, float eps);

/* x[t][n] = act(x + bias); act is quick_gelu (x * sigmoid(1.702 x)) or
 * exact gelu (0.5 x (1 + erf(x / sqrt 2))). */
void ops_bias_act(float *x, const float *bias, int t, int n, int quick_gelu);

/* x[t][n] += bias */
void ops_bias(float *x, const float *bias, int t, int n);

/* In place softmax of each of t rows of length n (stride ld), the first
 * `valid(i)` entries: causal rows use i + 1 entries and zero the rest. */
void ops_softmax_rows(float *p, int t, int n, int ld, int causal);

/* Scales v (n floats) to unit L2 norm (leaves a zero vector alone). */
void ops_l2_normalize(float *v, int n);

#endif
