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
 *  - A gemm_ctx (a stream, the primitives it has created, scratch
 *    buffers) belongs to one thread at a time; each clip_ctx owns one.
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

typedef struct gemm_ctx gemm_ctx;

int gemm_ctx_new(const gemm_engine *e, gemm_ctx **out, cdx_error *err);
void gemm_ctx_free(gemm_ctx *c);

/* Y[t][n] = X[t][k] W^T + beta Y (beta 0 or 1).  A failure of oneDNN
 * (out of memory) is returned; the contents of y are then undefined. */
int gemm_run(gemm_ctx *c, const float *x, const gemm_weight *w, float *y,
    int t, float beta, cdx_error *err);

/* The name of the oneDNN implementation gemm_run used last for a bf16 or
 * s8 weight ("brg:avx512_core_amx_bf16"), or "" before any. */
const char *gemm_ctx_impl(const gemm_ctx *c);

#endif
