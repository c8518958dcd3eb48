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
#include "encoder/gemm.h"

/* ---- safetensors (safetensors.c; prefix sft_) ------------------------- */

enum sft_dtype {
	SFT_F32, SFT_F16, SFT_BF16, SFT_F64,
	SFT_I64, SFT_I32, SFT_I16, SFT_I8,
	SFT_U64, SFT_U32, SFT_U16, SFT_U8, SFT_BOOL,
	SFT_F8_E4M3, SFT_F8_E5M2,
};

#define SFT_MAX_DIMS 8

typedef struct sft_tensor {
	char *name;            /* owned by the sft_file */
	int dtype;             /* enum sft_dtype */
	int ndim;
	int64_t shape[SFT_MAX_DIMS];
	uint64_t numel;
	const uint8_t *data;   /* inside the mapping */
	uint64_t nbytes;
} sft_tensor;

typedef struct sft_file {
	const char *path;      /* for messages; borrowed */
	const uint8_t *map;
	size_t size;
	sft_tensor *tensors;
	size_t n_tensors;
} sft_file;

/* Maps `path` read-only and checks its header completely (length, JSON,
 * dtypes, shapes against byte ranges, ranges inside the data region).
 * Errors: CDX_ENOTFOUND, CDX_EPERM, CDX_EIO, CDX_EFORMAT, CDX_ENOMEM.  On
 * failure *f is left closed (sft_close is a no-op on it). */
int sft_open(sft_file *f, const char *path, cdx_error *err);
void sft_close(sft_file *f);
const sft_tensor *sft_find(const sft_file *f, const char *name);

/* Checks that tensor `name` exists, is F32/F16/BF16 and has exactly the
 * given shape (ndim dims).  Errors: CDX_EFORMAT naming the tensor. */
int sft_check(const sft_file *f, const char *name, int ndim,
    const int64_t *shape, cdx_error *err);

/* sft_check, then converts the tensor to float32 into dst (numel floats). */
int sft_load_f32(const sft_file *f, const char *name, int ndim,
    const int64_t *shape, float *dst, cdx_error *err);

/* Widens n little-endian elements of dtype SFT_F32, SFT_F16 or SFT_BF16 at
 * src to float32 (the one conversion rule, used by sft_load_f32 and by
 * token tables kept in their stored dtype). */
void sft_widen(int dtype, const uint8_t *src, size_t n, float *dst);

/* Bytes per element of SFT_F32 / SFT_F16 / SFT_BF16 (0 for other dtypes). */
size_t sft_dtype_size(int dtype);

/* ---- config.json (config.c) ------------------------------------------- */

typedef struct clip_tower_cfg {
	int width, layers, heads, mlp, max_positions, vocab_size;
	int image_size, patch_size, channels;
	int act;               /* enum clip_act */
	int projection;        /* SigLIP text: the head's output size */
	float eps;
} clip_tower_cfg;

typedef struct clip_config {
	int family;            /* CLIP_FAMILY_CLIP or CLIP_FAMILY_SIGLIP (the
	                          tokenizer tells SigLIP2 apart later) */
	clip_tower_cfg text, vision;
	int projection_dim;    /* the embedding's length */
} clip_config;

/* Parses a Hugging Face CLIPConfig or SiglipConfig (text_config /
 * vision_config, and the older text_config_dict / vision_config_dict
 * overrides) applying transformers' defaults of the family for absent
 * fields.  The family is config.json's model_type ("clip", "siglip"; when
 * absent, architectures; when both are absent, CLIP).  `path` is for
 * messages. */
int clip_config_parse(const char *json, size_t len, const char *path,
    clip_config *out, cdx_error *err);

/* Parses preprocessor_config.json; fields absent keep *out's values. */
int clip_preprocess_parse(const char *json, size_t len, const char *path,
    clip_preprocess_cfg *out, cdx_error *err);

/* Logs (cdx_log, info) the one line that says a model folder has no
 * preprocessor_config.json (path: where it was looked for) and what c,
 * the defaults that stand in for it, assumes. */
void clip_preprocess_log_defaults(const char *path,
    const clip_preprocess_cfg *c);

/* ---- the model (model.c) ---------------------------------------------- */

/* The linear layers' weights (gemm_weight) are in the model's precision;
 * every other parameter is float32 in the model's arena. */
typedef struct clip_layer {
	const float *ln1_w, *ln1_b;
	gemm_weight qkv;             /* q, k, v rows stacked: [3D][D] */
	const float *qkv_b;          /* [3D] */
	gemm_weight out;             /* [D][D] */
	const float *out_b;
	const float *ln2_w, *ln2_b;
	gemm_weight fc1;             /* [M][D] */
	const float *fc1_b;
	gemm_weight fc2;             /* [D][M] */
	const float *fc2_b;
} clip_layer;

/* SigLIP's attention-pooling ("MAP") head: a learned probe attends over
 * every token (torch.nn.MultiheadAttention, packed in_proj), then a layer
 * norm + MLP residual. */
typedef struct clip_map_head {
	const float *probe_q;        /* [D]: (probe Wq^T + bq) * hd^-0.5,
	                                computed once at load */
	gemm_weight kv;              /* in_proj's k|v rows: [2D][D] */
	const float *kv_b;           /* [2D] */
	gemm_weight out;             /* [D][D] */
	const float *out_b;
	const float *ln_w, *ln_b;
	gemm_weight fc1, fc2;
	const float *fc1_b, *fc2_b;
} clip_map_head;

typedef struct clip_tower {
	clip_tower_cfg cfg;
	clip_layer *layers;
	const float *pos_emb;        /* [positions][D] */
	const float *ln_pre_w, *ln_pre_b;    /* CLIP vision only */
	const float *ln_post_w, *ln_post_b;  /* final / post layer norm */
	gemm_weight proj;            /* CLIP's projection or SigLIP's text
	                                head, [E][D]; n == 0: none */
	const float *proj_b;         /* SigLIP text head's bias, or NULL */
	/* text: the token table, kept in its stored dtype (a Gemma table is
	 * 256k rows) and widened a row at a time */
	const uint8_t *tok_emb;      /* [vocab][D] elements of tok_dtype */
	int tok_dtype;               /* SFT_F32, SFT_F16 or SFT_BF16 */
	/* vision */
	const float *class_emb;      /* CLIP: [D] */
	gemm_weight patch;           /* [D][3 * p * p] */
	const float *patch_b;        /* SigLIP: [D] */
	clip_map_head map;           /* SigLIP vision */
} clip_tower;

struct clip_model {
	clip_model_info info;
	clip_tokenizer *tok;
	clip_tower text, vision;
	gemm_engine *engine;         /* oneDNN's, for bf16 and int8 */
	float *arena;                /* the parameters other than linear
	                                weights and the token table, float32 */
	size_t arena_floats;
	float *lin;                  /* the linear weights in float32: kept
	                                for fp32, freed once packed */
	size_t lin_floats;
	uint8_t *tok_table;          /* the token table's bytes */
	size_t tok_table_bytes;
};

/* ---- kernels (ops.c) -------------------------------------------------- */

/* For each of t rows of x (stride d): if bias, x += bias; then
 * y = layernorm(x) * w + b.  y may equal x. */
void ops_layernorm(float *x, const float *bias, const float *w,
    const float *b, float *y, int t, int d, float eps);

/* x[t][n] = act(x + bias); act is an enum clip_act. */
void ops_bias_act(float *x, const float *bias, int t, int n, int act);

/* x[t][n] += bias */
void ops_bias(float *x, const float *bias, int t, int n);

/* In place softmax of each of t rows of length n (stride ld), the first
 * `valid(i)` entries: causal rows use i + 1 entries and zero the rest. */
void ops_softmax_rows(float *p, int t, int n, int ld, int causal);

/* The softmax of p's n values, rounded to bf16 (nearest even) at out; p
 * is clobbered. */
void ops_softmax_bf16(float *p, uint16_t *out, int n);

/* float32 to bf16 (nearest even), bf16 to float32, and float32 rounded to
 * bf16's values in place. */
void ops_to_bf16(const float *x, uint16_t *y, size_t n);
void ops_from_bf16(const uint16_t *x, float *y, size_t n);
void ops_round_bf16(float *x, size_t n);

/* Symmetric int8 of n values: q = round(x / scale) to nearest even in
 * [-qmax, qmax], scale = amax / qmax (1 for a zero row), amax being max
 * |x|: pass it when known (ops_dequant's), or a negative value to have it
 * found.  Returns the scale. */
float ops_to_s8(const float *x, int8_t *q, int n, float amax, float qmax);

/* An int8 product's row in float32: y[j] = (beta ? y[j] : 0) + act(a[j] s
 * ws[j] (+ b[j] unless b is NULL)), act a CLIP_ACT_* or negative for none.
 * Returns max |y[j]| (for ops_to_s8). */
float ops_dequant(const int32_t *a, float s, const float *ws, const float *b,
    int act, float *y, int n, int beta);

/* Scales v (n floats) to unit L2 norm (leaves a zero vector alone). */
void ops_l2_normalize(float *v, int n);

#endif
