/*
 * gemm.c - the linear layers' GEMMs in fp32 (OpenBLAS), bf16 and int8
 * (oneDNN matmul; Debian's libdnnl, which picks AMX, AVX512-BF16/VNNI,
 * AVX2 or SSE kernels at run time).
 *
 * Weights are packed once, at load, in the layout oneDNN's matmul chooses
 * for a representative batch (256 rows); every later primitive is created
 * for that layout, whatever its row count, so the packed weights serve
 * all of them (oneDNN picks the same kernel family for any M; tested).
 * Primitives depend on the row count, so each gemm_ctx keeps the ones it
 * made, keyed by (precision, n, k, rows, beta): layers of one shape share
 * them, and oneDNN's own primitive cache makes a re-creation cheap.
 */
#include "encoder/gemm.h"
#include "encoder/model_internal.h"

#include <cblas.h>
#include <math.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define GEMM_X86 1
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))
#else
#define GEMM_X86 0
#endif
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The batch whose preferred weight layout is the one weights are packed
 * in. */
#define GEMM_PACK_ROWS 256
/* Primitives a gemm_ctx keeps (a full cache starts over). */
#define GEMM_CACHE 64
/* The conversions around oneDNN run over rows on the calling thread's
 * OpenMP team (like oneDNN itself) once they touch this many values. */
#define GEMM_PAR_MIN 65536
/* prim_entry.prec of attention's two products (beside enum gemm_prec) */
#define GEMM_ATTN_QK 10
#define GEMM_ATTN_PV 11
/* gemm_attention takes sequences in chunks whose scores (float32 and
 * bf16) stay about this size, in cache between the three steps. */
#define ATTN_CHUNK_BYTES (4u << 20)

struct gemm_engine {
	dnnl_engine_t eng;
};

/* A primitive's epilogue: the previous dst added (beta), a bias, an
 * activation (GEMM_ACT_NONE for none), the result in bf16 (else float32,
 * or s32 for int8). */
typedef struct prim_epi {
	int beta, bias, act, bf16_out;
} prim_epi;

/* A cached primitive: a linear layer's (heads 0) for w's prec, n and k
 * at t rows; or one of attention's two products (prec GEMM_ATTN_QK or
 * GEMM_ATTN_PV) for t sequences of n tokens, heads heads of k columns. */
typedef struct prim_entry {
	int prec, n, k, t, heads;
	prim_epi epi;
	dnnl_primitive_t prim;
	dnnl_memory_t src, wei, bia, dst, pad;
} prim_entry;

struct gemm_ctx {
	const gemm_engine *e;
	dnnl_stream_t stream;
	prim_entry cache[GEMM_CACHE];
	int n_cache;
	void *xq;               /* the activations, converted */
	size_t xq_cap;
	int32_t *acc;           /* s32 results */
	size_t acc_cap;
	float *rscale;          /* per-row activation scales */
	size_t rscale_cap;
	void *hq;               /* gemm_mlp: the hidden activations, converted */
	size_t hq_cap;
	float *hscale;          /* gemm_mlp: their row scales (int8) */
	size_t hscale_cap;
	float *rows;            /* gemm_mlp: a float row per thread (int8) */
	size_t rows_cap;
	void *aqkv;             /* gemm_attention: q, k, v in bf16 */
	size_t aqkv_cap;
	float *ascore;          /* gemm_attention: scores */
	size_t ascore_cap;
	void *aprob;            /* gemm_attention: probabilities in bf16 */
	size_t aprob_cap;
	void *pad;              /* oneDNN's scratchpad */
	size_t pad_cap;
	char impl[64];
};

static int
dnnl_fail(cdx_error *err, dnnl_status_t s, const char *what)
{
	return cdx_error_set(err, s == dnnl_out_of_memory ? CDX_ENOMEM :
	    CDX_EINTERNAL, "oneDNN: %s failed (status %d)", what, (int)s);
}

#define DNNL_TRY(call, what) do { \
	dnnl_status_t s_ = (call); \
	if (s_ != dnnl_success) { \
		rc = dnnl_fail(err, s_, what); \
		goto out; \
	} \
} while (0)

/* ---- the CPU ----------------------------------------------------------- */

int
gemm_cpu_has_bf16(void)
{
	dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
	return ((unsigned)isa & (unsigned)dnnl_cpu_isa_avx512_core_bf16) ==
	    (unsigned)dnnl_cpu_isa_avx512_core_bf16;
}

const char *
gemm_cpu_isa_name(void)
{
	switch (dnnl_get_effective_cpu_isa()) {
	case dnnl_cpu_isa_avx512_core_amx:
		return "avx512_core_amx";
	case dnnl_cpu_isa_avx512_core_bf16:
		return "avx512_core_bf16";
	case dnnl_cpu_isa_avx512_core_vnni:
		return "avx512_core_vnni";
	case dnnl_cpu_isa_avx512_core:
		return "avx512_core";
	case dnnl_cpu_isa_avx2_vnni:
		return "avx2_vnni";
	case dnnl_cpu_isa_avx2:
		return "avx2";
	case dnnl_cpu_isa_avx:
		return "avx";
	case dnnl_cpu_isa_sse41:
		return "sse41";
	default:
		return "other";
	}
}

const char *
gemm_onednn_version(void)
{
	static char buf[32];
	const dnnl_version_t *v = dnnl_version();
	/* the same string every time: a benign race */
	snprintf(buf, sizeof(buf), "%d.%d.%d", v->major, v->minor, v->patch);
	return buf;
}

int
gemm_engine_new(gemm_engine **out, cdx_error *err)
{
	gemm_engine *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return cdx_error_set(err, CDX_ENOMEM, "out of memory");
	dnnl_status_t s = dnnl_engine_create(&e->eng, dnnl_cpu, 0);
	if (s != dnnl_success) {
		free(e);
		return dnnl_fail(err, s, "creating the CPU engine");
	}
	*out = e;
	return 0;
}

void
gemm_engine_free(gemm_engine *e)
{
	if (e == NULL)
		return;
	dnnl_engine_destroy(e->eng);
	free(e);
}

/* ---- conversions ------------------------------------------------------- */

/* The per-call conversions around oneDNN (activations to bf16 or s8, s32
 * results to float32) are memory-bound passes over every activation: an
 * AVX2 version of each, picked at run time (the build targets baseline
 * x86-64), with the portable loop as the reference. */

/* The bits of x rounded to the nearest bfloat16 (ties to even) in the
 * upper half; the lower half is garbage. */
static inline uint32_t
bf16_round_bits(float x)
{
	uint32_t u;
	memcpy(&u, &x, sizeof(u));
	return u + 0x7fffu + ((u >> 16) & 1u);
}

/* float32 to bfloat16. */
static void
to_bf16_scalar(const float *x, uint16_t *y, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] = (uint16_t)(bf16_round_bits(x[i]) >> 16);
}

static void
from_bf16(const uint16_t *x, float *y, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t u = (uint32_t)x[i] << 16;
		memcpy(&y[i], &u, sizeof(u));
	}
}

/* Rounds n floats to the nearest bf16 values, in place. */
static void
round_bf16(float *x, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t u = bf16_round_bits(x[i]) & 0xffff0000u;
		memcpy(&x[i], &u, sizeof(u));
	}
}

/* q[i] = round(x[i] * inv) (to nearest even) clamped to [-qmax, qmax]. */
static void
quantize_s8(const float *x, int8_t *q, int n, float inv, float qmax)
{
	for (int i = 0; i < n; i++) {
		float v = rintf(x[i] * inv);
		v = v > qmax ? qmax : v < -qmax ? -qmax : v;
		q[i] = (int8_t)v;
	}
}

/* The scale of a symmetric int8 row whose largest magnitude is amax: amax
 * / qmax (1 for a zero row). */
static float
s8_scale(float amax, float qmax)
{
	return amax > 0.0f ? amax / qmax : 1.0f;
}

/* Symmetric int8 of n values: q = round(x / scale) in [-qmax, qmax].
 * Returns the scale. */
static float
to_s8_scalar(const float *x, int8_t *q, int n, float qmax)
{
	float amax = 0.0f;
	for (int i = 0; i < n; i++) {
		float a = fabsf(x[i]);
		amax = a > amax ? a : amax;
	}
	float scale = s8_scale(amax, qmax);
	quantize_s8(x, q, n, 1.0f / scale, qmax);
	return scale;
}

/* y[j] = (beta ? y[j] : 0) + a[j] * s * ws[j] (+ b[j] unless b is NULL) */
static void
dequant_scalar(const int32_t *a, float s, const float *ws, const float *b,
    float *y, int n, int beta)
{
	for (int j = 0; j < n; j++)
		y[j] = (beta ? y[j] : 0.0f) + (float)a[j] * s * ws[j] +
		    (b != NULL ? b[j] : 0.0f);
}

#if GEMM_X86
AVX2 static void
to_bf16_avx2(const float *x, uint16_t *y, size_t n)
{
	const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1);
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m256i a = _mm256_castps_si256(_mm256_loadu_ps(x + i));
		__m256i b = _mm256_castps_si256(_mm256_loadu_ps(x + i + 8));
		a = _mm256_add_epi32(a, _mm256_add_epi32(bias, _mm256_and_si256(
		    _mm256_srli_epi32(a, 16), one)));
		b = _mm256_add_epi32(b, _mm256_add_epi32(bias, _mm256_and_si256(
		    _mm256_srli_epi32(b, 16), one)));
		a = _mm256_srli_epi32(a, 16);
		b = _mm256_srli_epi32(b, 16);
		/* packus works per 128-bit lane: put the halves back */
		__m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b),
		    0xd8);
		_mm256_storeu_si256((__m256i *)(y + i), p);
	}
	to_bf16_scalar(x + i, y + i, n - i);
}

AVX2 static float
to_s8_avx2(const float *x, int8_t *q, int n, float qmax)
{
	const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
	__m256 m = _mm256_setzero_ps();
	int i = 0;
	for (; i + 8 <= n; i += 8)
		m = _mm256_max_ps(m, _mm256_and_ps(absmask, _mm256_loadu_ps(x + i)));
	float buf[8], amax = 0.0f;
	_mm256_storeu_ps(buf, m);
	for (int k = 0; k < 8; k++)
		amax = buf[k] > amax ? buf[k] : amax;
	for (; i < n; i++)
		amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
	float scale = s8_scale(amax, qmax);
	float inv = 1.0f / scale;
	const __m256 vinv = _mm256_set1_ps(inv), hi = _mm256_set1_ps(qmax),
	    lo = _mm256_set1_ps(-qmax);
	const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
	for (i = 0; i + 32 <= n; i += 32) {
		__m256i v[4];
		for (int k = 0; k < 4; k++) {
			__m256 f = _mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * k),
			    vinv);
			f = _mm256_min_ps(_mm256_max_ps(f, lo), hi);
			v[k] = _mm256_cvtps_epi32(f);   /* nearest even */
		}
		__m256i ab = _mm256_packs_epi32(v[0], v[1]);
		__m256i cd = _mm256_packs_epi32(v[2], v[3]);
		__m256i p = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab,
		    cd), order);
		_mm256_storeu_si256((__m256i *)(q + i), p);
	}
	quantize_s8(x + i, q + i, n - i, inv, qmax);
	return scale;
}

AVX2 static void
dequant_avx2(const int32_t *a, float s, const float *ws, const float *b,
    float *y, int n, int beta)
{
	const __m256 vs = _mm256_set1_ps(s);
	int j = 0;
	for (; j + 8 <= n; j += 8) {
		__m256 v = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(
		    _mm256_loadu_si256((const __m256i *)(a + j))), vs),
		    _mm256_loadu_ps(ws + j));
		if (b != NULL)
			v = _mm256_add_ps(v, _mm256_loadu_ps(b + j));
		if (beta)
			v = _mm256_add_ps(v, _mm256_loadu_ps(y + j));
		_mm256_storeu_ps(y + j, v);
	}
	dequant_scalar(a + j, s, ws + j, b != NULL ? b + j : NULL, y + j,
	    n - j, beta);
}
#endif

static void
to_bf16(const float *x, uint16_t *y, size_t n)
{
#if GEMM_X86
	if (ops_have_avx2()) {
		to_bf16_avx2(x, y, n);
		return;
	}
#endif
	to_bf16_scalar(x, y, n);
}

static float
to_s8(const float *x, int8_t *q, int n, float qmax)
{
#if GEMM_X86
	if (ops_have_avx2())
		return to_s8_avx2(x, q, n, qmax);
#endif
	return to_s8_scalar(x, q, n, qmax);
}

static void
dequant(const int32_t *a, float s, const float *ws, const float *b, float *y,
    int n, int beta)
{
#if GEMM_X86
	if (ops_have_avx2()) {
		dequant_avx2(a, s, ws, b, y, n, beta);
		return;
	}
#endif
	dequant_scalar(a, s, ws, b, y, n, beta);
}

/* Without VNNI, oneDNN multiplies int8 with vpmaddubsw, which adds pairs
 * of u8 x s8 products in a saturating 16-bit sum: weights must keep to 7
 * bits (oneDNN's "int8 computations" guide), or the sums clip. */
static float
weight_qmax(void)
{
	unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
	unsigned v512 = (unsigned)dnnl_cpu_isa_avx512_core_vnni;
	unsigned v256 = (unsigned)dnnl_cpu_isa_avx2_vnni;
	return (isa & v512) == v512 || (isa & v256) == v256 ? 127.0f : 63.0f;
}

static dnnl_data_type_t
src_type(int prec)
{
	return prec == GEMM_S8 ? dnnl_s8 : dnnl_bf16;
}

static dnnl_data_type_t
dst_type(int prec, int bf16_out)
{
	return bf16_out ? dnnl_bf16 : prec == GEMM_S8 ? dnnl_s32 : dnnl_f32;
}

/* The matmul descriptor for t rows; wmd NULL asks for the layout oneDNN
 * prefers.  Weights are K x N: the row-major [n][k] W is "ba". */
static dnnl_status_t
matmul_desc(dnnl_matmul_desc_t *md, int prec, int n, int k, int t,
    const dnnl_memory_desc_t *wmd, int bias, int bf16_out)
{
	dnnl_memory_desc_t a, b, c, bm;
	dnnl_dims_t ad = {t, k}, bd = {k, n}, cd = {t, n}, bmd = {1, n};
	dnnl_status_t s;
	if ((s = dnnl_memory_desc_init_by_tag(&a, 2, ad, src_type(prec),
	    dnnl_ab)) != dnnl_success ||
	    (s = dnnl_memory_desc_init_by_tag(&c, 2, cd, dst_type(prec,
	    bf16_out), dnnl_ab)) != dnnl_success ||
	    (s = dnnl_memory_desc_init_by_tag(&bm, 2, bmd, dnnl_f32,
	    dnnl_ab)) != dnnl_success)
		return s;
	if (wmd == NULL) {
		if ((s = dnnl_memory_desc_init_by_tag(&b, 2, bd, src_type(prec),
		    dnnl_format_tag_any)) != dnnl_success)
			return s;
		wmd = &b;
	}
	return dnnl_matmul_desc_init(md, &a, wmd, bias ? &bm : NULL, &c);
}

/* ---- weights ----------------------------------------------------------- */

int
gemm_weight_init(gemm_weight *w, const gemm_engine *e, const float *src,
    int n, int k, int prec, cdx_error *err)
{
	int rc = 0;
	dnnl_primitive_desc_t pd = NULL, rpd = NULL;
	dnnl_primitive_t reorder = NULL;
	dnnl_memory_t from = NULL, to = NULL;
	dnnl_stream_t stream = NULL;
	void *plain = NULL;

	memset(w, 0, sizeof(*w));
	w->n = n;
	w->k = k;
	w->prec = prec;
	if (prec == GEMM_F32) {
		w->f32 = src;
		return 0;
	}
	size_t numel = (size_t)n * k, esz = prec == GEMM_S8 ? 1 : 2;
	plain = malloc(numel * esz);
	w->md = malloc(sizeof(dnnl_memory_desc_t));
	if (plain == NULL || w->md == NULL || (prec == GEMM_S8 &&
	    (w->scale = malloc(sizeof(float) * (size_t)n)) == NULL)) {
		rc = cdx_error_set(err, CDX_ENOMEM, "out of memory packing "
		    "a %dx%d weight", n, k);
		goto out;
	}
	if (prec == GEMM_S8) {
		/* per output channel: row j of W */
		float qmax = weight_qmax();
		for (int j = 0; j < n; j++)
			w->scale[j] = to_s8(src + (size_t)j * k,
			    (int8_t *)plain + (size_t)j * k, k, qmax);
	} else {
		to_bf16(src, plain, numel);
	}
	dnnl_matmul_desc_t md;
	DNNL_TRY(matmul_desc(&md, prec, n, k, GEMM_PACK_ROWS, NULL, 0, 0),
	    "matmul_desc_init");
	dnnl_status_t st = dnnl_primitive_desc_create(&pd, &md, NULL, e->eng,
	    NULL);
	if (st == dnnl_unimplemented && prec == GEMM_BF16) {
		/* no bf16 matmul on this CPU: bf16 values on OpenBLAS */
		w->owned = malloc(sizeof(float) * numel);
		if (w->owned == NULL) {
			rc = cdx_error_set(err, CDX_ENOMEM, "out of memory "
			    "packing a %dx%d weight", n, k);
			goto out;
		}
		from_bf16(plain, w->owned, numel);
		w->f32 = w->owned;
		snprintf(w->impl, sizeof(w->impl), "bf16 emulated on OpenBLAS");
		w->packed_bytes = numel * sizeof(float);
		free(w->md);
		w->md = NULL;
		goto out;
	}
	DNNL_TRY(st, "matmul primitive_desc_create");
	*(dnnl_memory_desc_t *)w->md = *dnnl_primitive_desc_query_md(pd,
	    dnnl_query_weights_md, 0);
	const char *impl = "";
	dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
	snprintf(w->impl, sizeof(w->impl), "%s", impl);
	dnnl_memory_desc_t pmd;
	dnnl_dims_t bd = {k, n};
	DNNL_TRY(dnnl_memory_desc_init_by_tag(&pmd, 2, bd, src_type(prec),
	    dnnl_ba), "memory_desc_init");
	w->packed_bytes = dnnl_memory_desc_get_size(w->md);
	w->packed = malloc(w->packed_bytes);
	if (w->packed == NULL) {
		rc = cdx_error_set(err, CDX_ENOMEM, "out of memory packing "
		    "a %dx%d weight", n, k);
		goto out;
	}
	DNNL_TRY(dnnl_memory_create(&from, &pmd, e->eng, plain),
	    "memory_create");
	DNNL_TRY(dnnl_memory_create(&to, w->md, e->eng, w->packed),
	    "memory_create");
	DNNL_TRY(dnnl_reorder_primitive_desc_create(&rpd, &pmd, e->eng, w->md,
	    e->eng, NULL), "reorder primitive_desc_create");
	DNNL_TRY(dnnl_primitive_create(&reorder, rpd), "reorder create");
	DNNL_TRY(dnnl_stream_create(&stream, e->eng,
	    dnnl_stream_default_flags), "stream_create");
	dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
	DNNL_TRY(dnnl_primitive_execute(reorder, stream, 2, args),
	    "reorder execute");
	DNNL_TRY(dnnl_stream_wait(stream), "stream_wait");
out:
	dnnl_stream_destroy(stream);
	dnnl_primitive_destroy(reorder);
	dnnl_primitive_desc_destroy(rpd);
	dnnl_primitive_desc_destroy(pd);
	dnnl_memory_destroy(from);
	dnnl_memory_destroy(to);
	free(plain);
	if (rc != 0)
		gemm_weight_release(w);
	return rc;
}

int
gemm_weight_on_openmp(const gemm_weight *w)
{
	return w->packed != NULL;
}

void
gemm_weight_release(gemm_weight *w)
{
	if (w == NULL)
		return;
	free(w->packed);
	free(w->scale);
	free(w->md);
	free(w->owned);
	memset(w, 0, sizeof(*w));
}

/* ---- contexts ---------------------------------------------------------- */

int
gemm_ctx_new(const gemm_engine *e, gemm_ctx **out, cdx_error *err)
{
	gemm_ctx *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return cdx_error_set(err, CDX_ENOMEM, "out of memory");
	c->e = e;
	if (e != NULL) {
		dnnl_status_t s = dnnl_stream_create(&c->stream, e->eng,
		    dnnl_stream_default_flags);
		if (s != dnnl_success) {
			free(c);
			return dnnl_fail(err, s, "stream_create");
		}
	}
	*out = c;
	return 0;
}

static void
entry_clear(prim_entry *p)
{
	dnnl_primitive_destroy(p->prim);
	dnnl_memory_destroy(p->src);
	dnnl_memory_destroy(p->wei);
	dnnl_memory_destroy(p->bia);
	dnnl_memory_destroy(p->dst);
	dnnl_memory_destroy(p->pad);
	memset(p, 0, sizeof(*p));
}

void
gemm_ctx_free(gemm_ctx *c)
{
	if (c == NULL)
		return;
	for (int i = 0; i < c->n_cache; i++)
		entry_clear(&c->cache[i]);
	dnnl_stream_destroy(c->stream);
	free(c->xq);
	free(c->acc);
	free(c->rscale);
	free(c->hq);
	free(c->hscale);
	free(c->rows);
	free(c->aqkv);
	free(c->ascore);
	free(c->aprob);
	free(c->pad);
	free(c);
}

const char *
gemm_ctx_impl(const gemm_ctx *c)
{
	return c != NULL ? c->impl : "";
}

void *
gemm_alloc(size_t bytes)
{
	return bytes > SIZE_MAX - 63 ? NULL :
	    aligned_alloc(64, (bytes + 63) / 64 * 64);
}

/* Grows *buf to at least need bytes (contents not kept). */
static int
grow(void **buf, size_t *cap, size_t need, cdx_error *err)
{
	if (need <= *cap)
		return 0;
	void *p = gemm_alloc(need);
	if (p == NULL)
		return cdx_error_set(err, CDX_ENOMEM, "out of memory for a "
		    "%zu-byte GEMM buffer", need);
	free(*buf);
	*buf = p;
	*cap = need;
	return 0;
}

/* oneDNN's eltwise algorithm (and its alpha) for a CLIP_ACT_*. */
static dnnl_alg_kind_t
act_alg(int act, float *alpha)
{
	*alpha = 0.0f;
	switch (act) {
	case CLIP_ACT_QUICK_GELU:
		*alpha = 1.702f;        /* x sigmoid(alpha x) */
		return dnnl_eltwise_swish;
	case CLIP_ACT_GELU_TANH:
		return dnnl_eltwise_gelu_tanh;
	default:
		return dnnl_eltwise_gelu_erf;
	}
}

/* A free cache entry (a full cache starts over). */
static prim_entry *
entry_new(gemm_ctx *c)
{
	if (c->n_cache == GEMM_CACHE) {
		for (int i = 0; i < c->n_cache; i++)
			entry_clear(&c->cache[i]);
		c->n_cache = 0;
	}
	return &c->cache[c->n_cache];
}

/* Makes p's primitive for md with the post-ops ops (or none) and a
 * scratchpad of the ctx's, and its memory objects (the call's pointers
 * come at run_prim); the entry is then counted in the cache.  c->impl
 * names the implementation oneDNN chose. */
static int
entry_init(gemm_ctx *c, prim_entry *p, const dnnl_matmul_desc_t *md,
    const_dnnl_post_ops_t ops, int bias, cdx_error *err)
{
	int rc = 0;
	dnnl_primitive_desc_t pd = NULL;
	dnnl_primitive_attr_t attr = NULL;
	const gemm_engine *e = c->e;

	DNNL_TRY(dnnl_primitive_attr_create(&attr), "primitive_attr_create");
	DNNL_TRY(dnnl_primitive_attr_set_scratchpad_mode(attr,
	    dnnl_scratchpad_mode_user), "set_scratchpad_mode");
	if (ops != NULL)
		DNNL_TRY(dnnl_primitive_attr_set_post_ops(attr, ops),
		    "set_post_ops");
	DNNL_TRY(dnnl_primitive_desc_create(&pd, md, attr, e->eng, NULL),
	    "matmul primitive_desc_create");
	const char *impl = "";
	dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
	snprintf(c->impl, sizeof(c->impl), "%s", impl);
	const dnnl_memory_desc_t *pad = dnnl_primitive_desc_query_md(pd,
	    dnnl_query_scratchpad_md, 0);
	size_t pad_bytes = pad != NULL ? dnnl_memory_desc_get_size(pad) : 0;
	if ((rc = grow(&c->pad, &c->pad_cap, pad_bytes + 64, err)) != 0)
		goto out;
	DNNL_TRY(dnnl_primitive_create(&p->prim, pd), "matmul create");
	DNNL_TRY(dnnl_memory_create(&p->src, dnnl_primitive_desc_query_md(pd,
	    dnnl_query_src_md, 0), e->eng, DNNL_MEMORY_NONE), "memory_create");
	DNNL_TRY(dnnl_memory_create(&p->wei, dnnl_primitive_desc_query_md(pd,
	    dnnl_query_weights_md, 0), e->eng, DNNL_MEMORY_NONE),
	    "memory_create");
	if (bias)
		DNNL_TRY(dnnl_memory_create(&p->bia,
		    dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1),
		    e->eng, DNNL_MEMORY_NONE), "memory_create");
	DNNL_TRY(dnnl_memory_create(&p->dst, dnnl_primitive_desc_query_md(pd,
	    dnnl_query_dst_md, 0), e->eng, DNNL_MEMORY_NONE), "memory_create");
	if (pad_bytes > 0)
		DNNL_TRY(dnnl_memory_create(&p->pad, pad, e->eng,
		    DNNL_MEMORY_NONE), "memory_create");
	c->n_cache++;
out:
	if (rc != 0)
		entry_clear(p);
	dnnl_primitive_desc_destroy(pd);
	dnnl_primitive_attr_destroy(attr);
	return rc;
}

/* The primitive for (w's precision and shape, t rows, epilogue), made on
 * first use.  The epilogue is the matmul's bias, an eltwise post-op and a
 * sum post-op, in that order, and its destination type. */
static int
get_prim(gemm_ctx *c, const gemm_weight *w, int t, prim_epi epi,
    prim_entry **out, cdx_error *err)
{
	int rc = 0;
	for (int i = 0; i < c->n_cache; i++) {
		prim_entry *p = &c->cache[i];
		if (p->prec == w->prec && p->n == w->n && p->k == w->k &&
		    p->t == t && p->heads == 0 && p->epi.beta == epi.beta &&
		    p->epi.bias == epi.bias && p->epi.act == epi.act &&
		    p->epi.bf16_out == epi.bf16_out) {
			*out = p;
			return 0;
		}
	}
	prim_entry *p = entry_new(c);
	dnnl_post_ops_t ops = NULL;
	dnnl_matmul_desc_t md;

	DNNL_TRY(dnnl_post_ops_create(&ops), "post_ops_create");
	if (epi.act != GEMM_ACT_NONE) {
		float alpha;
		dnnl_alg_kind_t alg = act_alg(epi.act, &alpha);
		DNNL_TRY(dnnl_post_ops_append_eltwise(ops, 1.0f, alg, alpha,
		    0.0f), "append_eltwise");
	}
	if (epi.beta)   /* the residual: y += x W^T */
		DNNL_TRY(dnnl_post_ops_append_sum(ops, 1.0f), "append_sum");
	DNNL_TRY(matmul_desc(&md, w->prec, w->n, w->k, t, w->md, epi.bias,
	    epi.bf16_out), "matmul_desc_init");
	if ((rc = entry_init(c, p, &md, ops, epi.bias, err)) != 0)
		goto out;
	p->prec = w->prec;
	p->n = w->n;
	p->k = w->k;
	p->t = t;
	p->epi = epi;
	*out = p;
out:
	dnnl_post_ops_destroy(ops);
	return rc;
}

static int
run_prim(gemm_ctx *c, prim_entry *p, void *src, const void *wei,
    const float *bias, void *dst, cdx_error *err)
{
	int rc = 0;
	dnnl_exec_arg_t args[5];
	int n = 0;
	DNNL_TRY(dnnl_memory_set_data_handle(p->src, src), "set_data_handle");
	DNNL_TRY(dnnl_memory_set_data_handle(p->wei, (void *)wei),
	    "set_data_handle");
	DNNL_TRY(dnnl_memory_set_data_handle(p->dst, dst), "set_data_handle");
	args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, p->src};
	args[n++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, p->wei};
	args[n++] = (dnnl_exec_arg_t){DNNL_ARG_DST, p->dst};
	if (p->bia != NULL) {
		DNNL_TRY(dnnl_memory_set_data_handle(p->bia, (void *)bias),
		    "set_data_handle");
		args[n++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, p->bia};
	}
	if (p->pad != NULL) {
		DNNL_TRY(dnnl_memory_set_data_handle(p->pad, c->pad),
		    "set_data_handle");
		args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->pad};
	}
	DNNL_TRY(dnnl_primitive_execute(p->prim, c->stream, n, args),
	    "matmul execute");
	DNNL_TRY(dnnl_stream_wait(c->stream), "stream_wait");
out:
	return rc;
}

/* x's t rows of w->k in the form w multiplies: bf16, or s8 with a scale
 * per row in *scale (grown like buf). */
static int
convert_rows(const gemm_weight *w, const float *x, int t, void **buf,
    size_t *cap, float **scale, size_t *scale_cap, cdx_error *err)
{
	int rc, k = w->k;
	size_t tk = (size_t)t * k;
	if (w->prec == GEMM_BF16) {
		if ((rc = grow(buf, cap, tk * 2, err)) != 0)
			return rc;
		uint16_t *xb = *buf;
		#pragma omp parallel for schedule(static) if (tk >= GEMM_PAR_MIN)
		for (int i = 0; i < t; i++)
			to_bf16(x + (size_t)i * k, xb + (size_t)i * k, (size_t)k);
		return 0;
	}
	if ((rc = grow(buf, cap, tk, err)) != 0 ||
	    (rc = grow((void **)scale, scale_cap, (size_t)t * sizeof(float),
	    err)) != 0)
		return rc;
	int8_t *q = *buf;
	float *sc = *scale;
	#pragma omp parallel for schedule(static) if (tk >= GEMM_PAR_MIN)
	for (int i = 0; i < t; i++)
		sc[i] = to_s8(x + (size_t)i * k, q + (size_t)i * k, k, 127.0f);
	return 0;
}

/* Row i of an int8 product: y = (beta ? y : 0) + act(a s ws + bias). */
static void
finish_row(const int32_t *a, float s, const gemm_weight *w, const float *bias,
    int act, float *y, int beta)
{
	dequant(a, s, w->scale, act == GEMM_ACT_NONE ? bias : NULL, y, w->n,
	    beta);
	if (act != GEMM_ACT_NONE)
		ops_bias_act(y, bias, 1, w->n, act);
}

/* The s32 product of t rows already quantised (q) with w, into c->acc. */
static int
s8_product(gemm_ctx *c, const gemm_weight *w, const int8_t *q, int t,
    cdx_error *err)
{
	int rc;
	prim_entry *p;
	if ((rc = grow((void **)&c->acc, &c->acc_cap, (size_t)t * w->n *
	    sizeof(int32_t), err)) != 0 ||
	    (rc = get_prim(c, w, t, (prim_epi){0, 0, GEMM_ACT_NONE, 0}, &p,
	    err)) != 0)
		return rc;
	return run_prim(c, p, (void *)q, w->packed, NULL, c->acc, err);
}

/* The int8 product of t rows already quantised (q, scale), then y from
 * it (finish_row). */
static int
run_s8(gemm_ctx *c, const gemm_weight *w, const int8_t *q,
    const float *scale, int t, float *y, float beta, const float *bias,
    int act, cdx_error *err)
{
	int rc, n = w->n;
	if ((rc = s8_product(c, w, q, t, err)) != 0)
		return rc;
	#pragma omp parallel for schedule(static) \
	    if ((size_t)t * n >= GEMM_PAR_MIN)
	for (int i = 0; i < t; i++)
		finish_row(c->acc + (size_t)i * n, scale[i], w, bias, act,
		    y + (size_t)i * n, beta != 0.0f);
	return 0;
}

int
gemm_run(gemm_ctx *c, const float *x, const gemm_weight *w, float *y, int t,
    float beta, const float *bias, int act, cdx_error *err)
{
	int rc, n = w->n, k = w->k;
	size_t tk = (size_t)t * k;
	prim_entry *p;

	if (act != GEMM_ACT_NONE && (bias == NULL || beta != 0.0f))
		return cdx_error_set(err, CDX_EINVAL, "gemm_run: an activation "
		    "needs a bias and beta 0");
	if (t <= 0)
		return 0;
	if (w->prec == GEMM_F32 || w->md == NULL) {
		const float *a = x;
		if (w->prec == GEMM_BF16) {
			/* emulated: the activations rounded to bf16 like the
			 * weights */
			if ((rc = grow(&c->xq, &c->xq_cap, tk * sizeof(float),
			    err)) != 0)
				return rc;
			memcpy(c->xq, x, tk * sizeof(float));
			round_bf16(c->xq, tk);
			a = c->xq;
			snprintf(c->impl, sizeof(c->impl), "bf16 emulated on "
			    "OpenBLAS");
		}
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t, n, k,
		    1.0f, a, k, w->f32, k, beta, y, n);
		if (act != GEMM_ACT_NONE)
			ops_bias_act(y, bias, t, n, act);
		else if (bias != NULL)
			ops_bias(y, bias, t, n);
		return 0;
	}
	if ((rc = convert_rows(w, x, t, &c->xq, &c->xq_cap, &c->rscale,
	    &c->rscale_cap, err)) != 0)
		return rc;
	if (w->prec == GEMM_S8)
		/* the row's and the output channel's scales, the bias and
		 * the activation applied to each row while it is in cache */
		return run_s8(c, w, c->xq, c->rscale, t, y, beta, bias, act,
		    err);
	if ((rc = get_prim(c, w, t, (prim_epi){beta != 0.0f, bias != NULL,
	    act, 0}, &p, err)) != 0)
		return rc;
	return run_prim(c, p, c->xq, w->packed, bias, y, err);
}

int
gemm_mlp(gemm_ctx *c, const float *x, const gemm_weight *w1,
    const float *b1, int act, const gemm_weight *w2, const float *b2,
    float *y, float *h, int t, cdx_error *err)
{
	int rc, m = w1->n;
	prim_entry *p;

	if (b1 == NULL || act == GEMM_ACT_NONE || w2->k != m)
		return cdx_error_set(err, CDX_EINVAL, "gemm_mlp: invalid "
		    "arguments");
	if (w1->md == NULL || w2->md == NULL || w1->prec != w2->prec) {
		/* not both on oneDNN at one precision: through float32 */
		if ((rc = gemm_run(c, x, w1, h, t, 0.0f, b1, act, err)) != 0)
			return rc;
		return gemm_run(c, h, w2, y, t, 1.0f, b2, GEMM_ACT_NONE, err);
	}
	if (t <= 0)
		return 0;
	if ((rc = convert_rows(w1, x, t, &c->xq, &c->xq_cap, &c->rscale,
	    &c->rscale_cap, err)) != 0)
		return rc;
	size_t tm = (size_t)t * m;
	if (w1->prec == GEMM_BF16) {
		/* fc1 writes its bf16 result (bias and activation in its
		 * epilogue) for fc2 to read */
		if ((rc = grow(&c->hq, &c->hq_cap, tm * 2, err)) != 0 ||
		    (rc = get_prim(c, w1, t, (prim_epi){0, 1, act, 1}, &p,
		    err)) != 0 ||
		    (rc = run_prim(c, p, c->xq, w1->packed, b1, c->hq,
		    err)) != 0 ||
		    (rc = get_prim(c, w2, t, (prim_epi){1, b2 != NULL,
		    GEMM_ACT_NONE, 0}, &p, err)) != 0)
			return rc;
		return run_prim(c, p, c->hq, w2->packed, b2, y, err);
	}
	/* int8: each row of fc1's s32 result dequantised with its bias and
	 * activation into a float row of the thread's own, then quantised
	 * for fc2 at once, while it is in cache */
	int nthr = tm >= GEMM_PAR_MIN ? omp_get_max_threads() : 1;
	if ((rc = grow(&c->hq, &c->hq_cap, tm, err)) != 0 ||
	    (rc = grow((void **)&c->hscale, &c->hscale_cap, (size_t)t *
	    sizeof(float), err)) != 0 ||
	    (rc = grow((void **)&c->rows, &c->rows_cap, (size_t)nthr * m *
	    sizeof(float), err)) != 0 ||
	    (rc = s8_product(c, w1, c->xq, t, err)) != 0)
		return rc;
	int8_t *hq = c->hq;
	#pragma omp parallel for schedule(static) num_threads(nthr)
	for (int i = 0; i < t; i++) {
		float *row = c->rows + (size_t)omp_get_thread_num() * m;
		finish_row(c->acc + (size_t)i * m, c->rscale[i], w1, b1, act,
		    row, 0);
		c->hscale[i] = to_s8(row, hq + (size_t)i * m, m, 127.0f);
	}
	return run_s8(c, w2, hq, c->hscale, t, y, 1.0f, b2, GEMM_ACT_NONE,
	    err);
}

/* ---- attention --------------------------------------------------------- */

/* Attention's product which (GEMM_ATTN_QK or GEMM_ATTN_PV) for nc
 * sequences of s tokens, heads heads of hd columns, made on first use:
 *   QK: scores [nc][heads][s][s] f32 = Q [nc][heads][s][hd] times K^T,
 *       K stored [nc][heads][s][hd] (K^T's "abdc"), both bf16;
 *   PV: out = P [nc][heads][s][s] bf16 times V [nc][heads][s][hd] bf16,
 *       written as float32 rows [nc s][heads hd] (the strides of the
 *       tower's layout), so no pass puts the heads back together. */
static int
get_attn_prim(gemm_ctx *c, int which, int nc, int s, int heads, int hd,
    prim_entry **out, cdx_error *err)
{
	int rc = 0;
	for (int i = 0; i < c->n_cache; i++) {
		prim_entry *p = &c->cache[i];
		if (p->prec == which && p->t == nc && p->n == s &&
		    p->heads == heads && p->k == hd) {
			*out = p;
			return 0;
		}
	}
	prim_entry *p = entry_new(c);
	dnnl_memory_desc_t a, b, d;
	dnnl_matmul_desc_t md;
	dnnl_dims_t qd = {nc, heads, s, hd}, kd = {nc, heads, hd, s};
	dnnl_dims_t sd = {nc, heads, s, s};
	dnnl_dims_t os = {(dnnl_dim_t)s * heads * hd, hd, (dnnl_dim_t)heads *
	    hd, 1};
	if (which == GEMM_ATTN_QK) {
		DNNL_TRY(dnnl_memory_desc_init_by_tag(&a, 4, qd, dnnl_bf16,
		    dnnl_abcd), "memory_desc_init");
		DNNL_TRY(dnnl_memory_desc_init_by_tag(&b, 4, kd, dnnl_bf16,
		    dnnl_abdc), "memory_desc_init");
		DNNL_TRY(dnnl_memory_desc_init_by_tag(&d, 4, sd, dnnl_f32,
		    dnnl_abcd), "memory_desc_init");
	} else {
		DNNL_TRY(dnnl_memory_desc_init_by_tag(&a, 4, sd, dnnl_bf16,
		    dnnl_abcd), "memory_desc_init");
		DNNL_TRY(dnnl_memory_desc_init_by_tag(&b, 4, qd, dnnl_bf16,
		    dnnl_abcd), "memory_desc_init");
		DNNL_TRY(dnnl_memory_desc_init_by_strides(&d, 4, qd, dnnl_f32,
		    os), "memory_desc_init");
	}
	DNNL_TRY(dnnl_matmul_desc_init(&md, &a, &b, NULL, &d),
	    "matmul_desc_init");
	if ((rc = entry_init(c, p, &md, NULL, 0, err)) != 0)
		goto out;
	p->prec = which;
	p->t = nc;
	p->n = s;
	p->heads = heads;
	p->k = hd;
	*out = p;
out:
	return rc;
}

int
gemm_attention(gemm_ctx *c, const float *qkv, int n, int s, int heads,
    int hd, float *out, cdx_error *err)
{
	int rc, d = heads * hd;
	if (c->e == NULL || !gemm_cpu_has_bf16())
		return cdx_error_set(err, CDX_EINVAL, "gemm_attention: this "
		    "CPU has no native bf16");
	if (n <= 0)
		return 0;
	size_t per_seq = (size_t)heads * s * s;
	int nc = (int)(ATTN_CHUNK_BYTES / (per_seq * 6));
	nc = nc < 1 ? 1 : nc > n ? n : nc;
	size_t plane = (size_t)nc * s * d;      /* q, k or v of a chunk */
	if ((rc = grow(&c->aqkv, &c->aqkv_cap, 3 * plane * 2, err)) != 0 ||
	    (rc = grow((void **)&c->ascore, &c->ascore_cap, (size_t)nc *
	    per_seq * sizeof(float), err)) != 0 ||
	    (rc = grow(&c->aprob, &c->aprob_cap, (size_t)nc * per_seq * 2,
	    err)) != 0)
		return rc;
	uint16_t *qb = c->aqkv, *prob = c->aprob;
	float *score = c->ascore;
	for (int s0 = 0; s0 < n; s0 += nc) {
		int m = n - s0 < nc ? n - s0 : nc, rows = m * s;
		prim_entry *qk, *pv;
		if ((rc = get_attn_prim(c, GEMM_ATTN_QK, m, s, heads, hd, &qk,
		    err)) != 0 ||
		    (rc = get_attn_prim(c, GEMM_ATTN_PV, m, s, heads, hd, &pv,
		    err)) != 0)
			return rc;
		const float *src = qkv + (size_t)s0 * s * 3 * d;
		/* q, k and v of each head, each [m][heads][s][hd] */
		#pragma omp parallel for schedule(static) \
		    if ((size_t)rows * 3 * d >= GEMM_PAR_MIN)
		for (int r = 0; r < rows; r++) {
			size_t to = (size_t)(r / s) * heads * s + r % s;
			for (int j = 0; j < 3; j++)
				for (int h = 0; h < heads; h++)
					to_bf16(src + (size_t)r * 3 * d + j * d +
					    h * hd, qb + j * plane + (to + (size_t)h *
					    s) * hd, (size_t)hd);
		}
		if ((rc = run_prim(c, qk, qb, qb + plane, NULL, score,
		    err)) != 0)
			return rc;
		int nrow = m * heads * s;
		#pragma omp parallel for schedule(static) \
		    if ((size_t)nrow * s >= GEMM_PAR_MIN)
		for (int i = 0; i < nrow; i++) {
			float *row = score + (size_t)i * s;
			ops_softmax_rows(row, 1, s, s, 0);
			to_bf16(row, prob + (size_t)i * s, (size_t)s);
		}
		if ((rc = run_prim(c, pv, prob, qb + 2 * plane, NULL, out +
		    (size_t)s0 * s * d, err)) != 0)
			return rc;
	}
	return 0;
}
