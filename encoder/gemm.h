/*
 * gemm.h - private to encoder/: the weights of the linear layers in the
 * model's precision, and the GEMMs over them: OpenBLAS SGEMM for fp32,
 * oneDNN matmul primitives for bf16 (bf16 x bf16, fp32 accumulation and
 * output) and int8 (activations quantised per row to s8, weights per
 * output channel to s8, s32 accumulation, dequantised to fp32).
 *
 * Ownership and threads:
 *  - A gemm_engine (the oneDNN CPU engine) and the gemm_weights packed
 *    for it are immutable after creation: any number of threads may use
 *    them at once.  Weights must be released before their engine.
 *  - A gemm_ctx (streams, the primitives it has created, scratch
 *    buffers) belongs to one thread at a time; each clip_ctx owns one.
 *    Its calls run on the calling thread's OpenMP team (a batch's rows in
 *    tiles, one tile per thread at a time).
 *  - Nothing here sets a thread count: oneDNN runs on OpenMP with the
 *    calling program's settings, OpenBLAS with its own.
 *
 * Errors: 0 or a negative CDX_E* code with err filled; a oneDNN failure
 * is CDX_EINTERNAL (or CDX_ENOMEM) naming the call.
 */
#ifndef CLIP_GEMM_H
#define CLIP_GEMM_H

#include <stddef.h>
#include <stdint.h>

#include "common/cdx.h"

/* The precision a linear layer's weights are kept in and multiplied at. */
enum gemm_prec {
	GEMM_F32 = 1,
	GEMM_BF16 = 2,
	GEMM_S8 = 3,
};

typedef struct gemm_engine gemm_engine;

int gemm_engine_new(gemm_engine **out, cdx_error *err);
void gemm_engine_free(gemm_engine *e);

/* 1 when this CPU multiplies bf16 natively (AVX512-BF16 or AMX), as
 * oneDNN detects it; the names of the ISA oneDNN dispatches to and of its
 * version ("2.6.3"). */
int gemm_cpu_has_bf16(void);
const char *gemm_cpu_isa_name(void);
const char *gemm_onednn_version(void);

/* A linear layer's weight W [n][k] (y[t][n] = x[t][k] W^T).  GEMM_F32
 * keeps a pointer to src (which must outlive it); the others own a copy
 * packed in the layout oneDNN's matmul prefers on this CPU (and, for
 * GEMM_S8, a scale per output channel). */
typedef struct gemm_weight {
	int n, k;
	int prec;               /* enum gemm_prec */
	const float *f32;       /* GEMM_F32; GEMM_BF16 when emulated */
	float *owned;           /* an emulated bf16 weight's values */
	void *packed;           /* GEMM_BF16 / GEMM_S8 */
	size_t packed_bytes;
	float *scale;           /* GEMM_S8: n dequantisation scales */
	void *md;               /* the packed layout (a dnnl_memory_desc_t) */
	char impl[48];          /* the kernel oneDNN chose when packing
	                           ("brg:avx512_core_amx_bf16"), "bf16
	                           emulated on OpenBLAS", or "" for fp32 */
} gemm_weight;

/* Packs src (n x k floats, row-major) at prec.  src may be freed after
 * the call unless prec is GEMM_F32.  Where oneDNN has no bf16 matmul
 * (2.6.3 on AVX2-only CPUs) a GEMM_BF16 weight is emulated: its values
 * rounded to bf16, kept as float32 and multiplied by OpenBLAS with the
 * activations rounded to bf16 too (the same numbers, fp32's speed and
 * memory).  Errors: CDX_ENOMEM, CDX_EINTERNAL. */
int gemm_weight_init(gemm_weight *w, const gemm_engine *e, const float *src,
    int n, int k, int prec, cdx_error *err);
/* 1 when w's GEMM runs on oneDNN, that is on the calling thread's OpenMP
 * team; 0 when on OpenBLAS' own threads (GEMM_F32, emulated GEMM_BF16). */
int gemm_weight_on_openmp(const gemm_weight *w);
/* Frees what the weight owns; a zeroed weight is a no-op. */
void gemm_weight_release(gemm_weight *w);

/* bytes for activations, aligned to a cache line (64 bytes) so that no
 * row a kernel loads whole straddles two (glibc's malloc puts a large
 * block 16 bytes into a page); freed with free(), NULL when out of
 * memory. */
void *gemm_alloc(size_t bytes);

typedef struct gemm_ctx gemm_ctx;

int gemm_ctx_new(const gemm_engine *e, gemm_ctx **out, cdx_error *err);
void gemm_ctx_free(gemm_ctx *c);

/* No activation, for gemm_run's act. */
#define GEMM_ACT_NONE (-1)

/* Y[t][n] = act(X[t][k] W^T + bias) + beta Y (beta 0 or 1): bias is n
 * floats or NULL, act a CLIP_ACT_* or GEMM_ACT_NONE; an activation needs a
 * bias and beta 0 (CDX_EINVAL).  The epilogue costs no pass of its own
 * where oneDNN multiplies: bf16 applies it as the matmul's bias and post-
 * ops, int8 in the dequantisation of each row.  fp32 (and emulated bf16)
 * applies bias and act in a pass after the SGEMM, on the calling thread.
 * A failure of oneDNN (out of memory) is returned; the contents of y are
 * then undefined. */
int gemm_run(gemm_ctx *c, const float *x, const gemm_weight *w, float *y,
    int t, float beta, const float *bias, int act, cdx_error *err);

/* A GEMM's input rows made on demand: fn(arg, i, row) writes row i (the
 * weight's k floats) at row.  It is called once per row, rows in any
 * order, from any thread of the calling thread's team at once (rows in
 * tiles), so that what makes a row (a layer norm) runs while the row is
 * in cache and no pass of its own writes the rows out.  fn may change
 * what row i is made from (the layer norm's input) but nothing another
 * row reads. */
typedef void (*gemm_row_fn)(void *arg, int i, float *row);

/* gemm_run with its input rows from fn (above) instead of X. */
int gemm_run_rows(gemm_ctx *c, gemm_row_fn fn, void *arg,
    const gemm_weight *w, float *y, int t, float beta, const float *bias,
    int act, cdx_error *err);

/* An MLP block's two layers: Y += act(X W1^T + b1) W2^T + b2 (b2 may be
 * NULL; b1 and act are required).  When both weights are on oneDNN at one
 * precision the hidden activations (t x w1->n) never exist in float32:
 * bf16's first matmul writes them in bf16 (bias and activation in its
 * epilogue) for the second to read; int8 dequantises each row of the
 * first product, applies bias and activation and quantises it for the
 * second while it is in cache.  Otherwise it is two gemm_run calls through
 * h (t x w1->n floats, the caller's scratch; unused when fused).  Errors
 * as gemm_run; CDX_EINVAL when w2->k != w1->n or b1/act is missing. */
int gemm_mlp(gemm_ctx *c, const float *x, const gemm_weight *w1,
    const float *b1, int act, const gemm_weight *w2, const float *b2,
    float *y, float *h, int t, cdx_error *err);
/* gemm_mlp with its input rows from fn (gemm_run_rows).  Row i of Y is
 * written only after row i's input is made. */
int gemm_mlp_rows(gemm_ctx *c, gemm_row_fn fn, void *arg,
    const gemm_weight *w1, const float *b1, int act, const gemm_weight *w2,
    const float *b2, float *y, float *h, int t, cdx_error *err);

/* gemm_run_rows for the q|k|v projection before gemm_attention: Y = X
 * W^T + bias, written in bf16 as np planes [np][t][w->n / np] (plane p
 * holds columns p n / np .. (p + 1) n / np - 1 of every row).  bf16
 * weights round their product once (oneDNN's dst), int8 dequantise each
 * row and round it.  Only for a weight on oneDNN and n a multiple of np:
 * CDX_EINVAL otherwise.  Errors otherwise as gemm_run. */
int gemm_run_planes(gemm_ctx *c, gemm_row_fn fn, void *arg,
    const gemm_weight *w, uint16_t *y, int np, int t, const float *bias,
    cdx_error *err);

/* gemm_run without an activation on input rows already in bf16 (t x
 * w->k), as gemm_attention writes them: a bf16 weight multiplies them
 * where they are, an int8 one quantises each row.  Only for a weight on
 * oneDNN (CDX_EINVAL otherwise).  Errors otherwise as gemm_run. */
int gemm_run_bf16(gemm_ctx *c, const uint16_t *x, const gemm_weight *w,
    float *y, int t, float beta, const float *bias, cdx_error *err);

/* Self-attention of n sequences of s tokens each, every head at once:
 * per sequence and head, out = softmax(Q K^T) V.  qkv is three bf16
 * planes, Q, K and V, each rows [n s][heads hd] (gemm_run_planes with np
 * 3; q already scaled by hd^-0.5); out is bf16 rows [n s][heads hd] (for
 * gemm_run_bf16).  The two products run on oneDNN in bf16 with float32
 * accumulation, on each head as a strided view of the rows; the softmax
 * runs in float32 and its probabilities are rounded to bf16.  Sequences
 * go in chunks whose scores stay in cache: with two chunks or more for
 * each thread of the calling thread's team, each thread takes chunks in
 * turn (its own oneDNN stream); otherwise the team shares each chunk.
 * Only where the CPU multiplies bf16 natively (gemm_cpu_has_bf16):
 * CDX_EINVAL elsewhere, and for a ctx made without an engine.  Errors
 * otherwise as gemm_run. */
int gemm_attention(gemm_ctx *c, const uint16_t *qkv, int n, int s,
    int heads, int hd, uint16_t *out, cdx_error *err);

/* The name of the oneDNN implementation gemm_run used last for a bf16 or
 * s8 weight ("brg:avx512_core_amx_bf16"), or "" before any. */
const char *gemm_ctx_impl(const gemm_ctx *c);

#endif
