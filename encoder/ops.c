/*
 * ops.c - the float32 kernels of the encoders: GEMM (OpenBLAS), layer
 * norm, bias + activation, softmax, bf16 and int8 conversions, L2
 * normalisation.  The elementwise kernels have vector versions for AVX2
 * + FMA and for AVX-512 (written once, in ops_simd.h), chosen at run time
 * (ops_simd); the portable versions use libm and are the reference for
 * them.
 */
#include "encoder/model_internal.h"

#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Build with -DCLIP_NO_SIMD (e.g. make OPT="-O2 -DCLIP_NO_SIMD") to run
 * the portable kernels everywhere. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(CLIP_NO_SIMD)
#define OPS_X86 1
#include <immintrin.h>
#else
#define OPS_X86 0
#endif

/* ---- portable versions ------------------------------------------------ */

static void
ln_row_scalar(float *x, const float *bias, const float *w, const float *b,
    float *y, int d, float eps)
{
	if (bias != NULL)
		for (int j = 0; j < d; j++)
			x[j] += bias[j];
	float mean = 0.0f;
	for (int j = 0; j < d; j++)
		mean += x[j];
	mean /= (float)d;
	float var = 0.0f;
	for (int j = 0; j < d; j++) {
		float c = x[j] - mean;
		var += c * c;
	}
	var /= (float)d;
	float inv = 1.0f / sqrtf(var + eps);
	for (int j = 0; j < d; j++)
		y[j] = (x[j] - mean) * inv * w[j] + b[j];
}

/* gelu_pytorch_tanh: 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3),
 * computed as x * sigmoid(2u), which is the same function. */
#define GELU_TANH_K 1.5957691216057308f     /* 2 sqrt(2 / pi) */
#define GELU_TANH_C 0.044715f

static float
act_scalar(float v, int act)
{
	switch (act) {
	case CLIP_ACT_QUICK_GELU:
		return v / (1.0f + expf(-1.702f * v));
	case CLIP_ACT_GELU_TANH:
		return v / (1.0f + expf(-GELU_TANH_K * (v + GELU_TANH_C * v *
		    v * v)));
	default:
		return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
	}
}

/* The scale of a symmetric int8 row whose largest magnitude is amax: amax
 * / qmax (1 for a zero row). */
static float
s8_scale(float amax, float qmax)
{
	return amax > 0.0f ? amax / qmax : 1.0f;
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

static float
to_s8_scalar(const float *x, int8_t *q, int n, float amax, float qmax)
{
	if (amax < 0.0f) {
		amax = 0.0f;
		for (int i = 0; i < n; i++)
			amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
	}
	float scale = s8_scale(amax, qmax);
	quantize_s8(x, q, n, 1.0f / scale, qmax);
	return scale;
}

/* ops_dequant's portable version; returns max |y| (0 for n 0). */
static float
dequant_scalar(const int32_t *a, float s, const float *ws, const float *b,
    int act, float *y, int n, int beta)
{
	float amax = 0.0f;
	for (int j = 0; j < n; j++) {
		float v = (float)a[j] * s * ws[j] + (b != NULL ? b[j] : 0.0f);
		if (act >= 0)
			v = act_scalar(v, act);
		y[j] = v = (beta ? y[j] : 0.0f) + v;
		amax = fabsf(v) > amax ? fabsf(v) : amax;
	}
	return amax;
}

/* x rounded to the nearest bfloat16 (ties to even). */
static inline uint16_t
bf16_of(float x)
{
	uint32_t u;
	memcpy(&u, &x, sizeof(u));
	return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static void
from_bf16_scalar(const uint16_t *x, float *y, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t u = (uint32_t)x[i] << 16;
		memcpy(&y[i], &u, sizeof(u));
	}
}

static void
softmax_row_scalar(float *p, int n)
{
	float mx = p[0];
	for (int j = 1; j < n; j++)
		mx = p[j] > mx ? p[j] : mx;
	float sum = 0.0f;
	for (int j = 0; j < n; j++) {
		p[j] = expf(p[j] - mx);
		sum += p[j];
	}
	float inv = 1.0f / sum;
	for (int j = 0; j < n; j++)
		p[j] *= inv;
}

#if OPS_X86
/* ---- AVX2 + FMA: ops_simd.h over 8 floats ------------------------------ */
#define ATTR __attribute__((target("avx2,fma")))

ATTR static inline __m256
pow2i_avx2(__m256 fx)           /* 2^fx for whole fx in float's range */
{
	__m256i e = _mm256_add_epi32(_mm256_cvttps_epi32(fx),
	    _mm256_set1_epi32(127));
	return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
}

ATTR static inline float
hsum_avx2(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v),
	    _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

ATTR static inline float
hmax_avx2(__m256 v)
{
	__m128 s = _mm_max_ps(_mm256_castps256_ps128(v),
	    _mm256_extractf128_ps(v, 1));
	s = _mm_max_ps(s, _mm_movehl_ps(s, s));
	s = _mm_max_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

/* 8 floats already within int8's range, rounded to nearest even */
ATTR static inline void
store_s8_avx2(int8_t *q, __m256 f)
{
	__m256i v = _mm256_cvtps_epi32(f);
	__m128i w = _mm_packs_epi32(_mm256_castsi256_si128(v),
	    _mm256_extracti128_si256(v, 1));
	_mm_storel_epi64((__m128i *)q, _mm_packs_epi16(w, w));
}

/* 8 floats to bf16, rounded to nearest even */
ATTR static inline void
store_bf16_avx2(uint16_t *y, __m256 f)
{
	__m256i a = _mm256_castps_si256(f);
	a = _mm256_add_epi32(a, _mm256_add_epi32(_mm256_set1_epi32(0x7fff),
	    _mm256_and_si256(_mm256_srli_epi32(a, 16), _mm256_set1_epi32(1))));
	a = _mm256_srli_epi32(a, 16);
	/* packus works per 128-bit lane: gather the halves in the low one */
	a = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, a), 0xd8);
	_mm_storeu_si128((__m128i *)y, _mm256_castsi256_si128(a));
}

ATTR static inline __m256
load_bf16_avx2(const uint16_t *x)
{
	__m256i a = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)x));
	return _mm256_castsi256_ps(_mm256_slli_epi32(a, 16));
}

#define VN 8
#define vf __m256
#define K(name) name##_avx2
#define v_load _mm256_loadu_ps
#define v_load_i32(p) _mm256_cvtepi32_ps(_mm256_loadu_si256( \
	(const __m256i *)(p)))
#define v_store _mm256_storeu_ps
#define v_store_s8 store_s8_avx2
#define v_store_bf16 store_bf16_avx2
#define v_load_bf16 load_bf16_avx2
#define v_set1 _mm256_set1_ps
#define v_zero _mm256_setzero_ps
#define v_add _mm256_add_ps
#define v_sub _mm256_sub_ps
#define v_mul _mm256_mul_ps
#define v_div _mm256_div_ps
#define v_fmadd _mm256_fmadd_ps
#define v_fnmadd _mm256_fnmadd_ps
#define v_max _mm256_max_ps
#define v_min _mm256_min_ps
#define v_floor _mm256_floor_ps
#define v_and _mm256_and_ps
#define v_andnot _mm256_andnot_ps
#define v_or _mm256_or_ps
#define v_pow2i pow2i_avx2
#define v_hsum hsum_avx2
#define v_hmax hmax_avx2
#include "encoder/ops_simd.h"
#include "encoder/ops_simd_undef.h"

/* ---- AVX-512F: ops_simd.h over 16 floats ------------------------------- */
#define ATTR __attribute__((target("avx512f,avx2,fma")))

ATTR static inline __m512
pow2i_avx512(__m512 fx)
{
	__m512i e = _mm512_add_epi32(_mm512_cvttps_epi32(fx),
	    _mm512_set1_epi32(127));
	return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
}

/* AVX-512F has no float and / or (AVX512DQ does): through the integers */
ATTR static inline __m512
and_avx512(__m512 a, __m512 b)
{
	return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(a),
	    _mm512_castps_si512(b)));
}

ATTR static inline __m512
andnot_avx512(__m512 a, __m512 b)       /* ~a & b */
{
	return _mm512_castsi512_ps(_mm512_andnot_si512(_mm512_castps_si512(a),
	    _mm512_castps_si512(b)));
}

ATTR static inline __m512
or_avx512(__m512 a, __m512 b)
{
	return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(a),
	    _mm512_castps_si512(b)));
}

ATTR static inline void
store_s8_avx512(int8_t *q, __m512 f)
{
	_mm_storeu_si128((__m128i *)q, _mm512_cvtsepi32_epi8(
	    _mm512_cvtps_epi32(f)));
}

ATTR static inline void
store_bf16_avx512(uint16_t *y, __m512 f)
{
	__m512i a = _mm512_castps_si512(f);
	a = _mm512_add_epi32(a, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
	    _mm512_and_si512(_mm512_srli_epi32(a, 16), _mm512_set1_epi32(1))));
	_mm256_storeu_si256((__m256i *)y, _mm512_cvtepi32_epi16(
	    _mm512_srli_epi32(a, 16)));
}

ATTR static inline __m512
load_bf16_avx512(const uint16_t *x)
{
	__m512i a = _mm512_cvtepu16_epi32(_mm256_loadu_si256(
	    (const __m256i *)x));
	return _mm512_castsi512_ps(_mm512_slli_epi32(a, 16));
}

#define VN 16
#define vf __m512
#define K(name) name##_avx512
#define v_load _mm512_loadu_ps
#define v_load_i32(p) _mm512_cvtepi32_ps(_mm512_loadu_si512(p))
#define v_store _mm512_storeu_ps
#define v_store_s8 store_s8_avx512
#define v_store_bf16 store_bf16_avx512
#define v_load_bf16 load_bf16_avx512
#define v_set1 _mm512_set1_ps
#define v_zero _mm512_setzero_ps
#define v_add _mm512_add_ps
#define v_sub _mm512_sub_ps
#define v_mul _mm512_mul_ps
#define v_div _mm512_div_ps
#define v_fmadd _mm512_fmadd_ps
#define v_fnmadd _mm512_fnmadd_ps
#define v_max _mm512_max_ps
#define v_min _mm512_min_ps
#define v_floor(x) _mm512_roundscale_ps((x), _MM_FROUND_TO_NEG_INF | \
	_MM_FROUND_NO_EXC)
#define v_and and_avx512
#define v_andnot andnot_avx512
#define v_or or_avx512
#define v_pow2i pow2i_avx512
#define v_hsum _mm512_reduce_add_ps
#define v_hmax _mm512_reduce_max_ps
#include "encoder/ops_simd.h"
#include "encoder/ops_simd_undef.h"
#endif

/* ---- dispatch ---------------------------------------------------------- */

#if OPS_X86
/* The widest kernels this CPU runs: OPS_AVX512 (AVX-512F), OPS_AVX2 (AVX2
 * + FMA) or OPS_SCALAR, capped by the environment's CDX_MAX_SIMD ("avx2"
 * or "scalar": tests run the narrower kernels on a wider CPU with it).
 * Read once; thread-safe, cheap. */
enum { OPS_SCALAR, OPS_AVX2, OPS_AVX512 };

static int
ops_simd(void)
{
	static atomic_int level = -1;
	int l = atomic_load_explicit(&level, memory_order_relaxed);
	if (l >= 0)
		return l;
	l = OPS_SCALAR;
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		l = __builtin_cpu_supports("avx512f") ? OPS_AVX512 : OPS_AVX2;
	const char *cap = getenv("CDX_MAX_SIMD");
	if (cap != NULL && strcmp(cap, "scalar") == 0)
		l = OPS_SCALAR;
	else if (cap != NULL && strcmp(cap, "avx2") == 0 && l > OPS_AVX2)
		l = OPS_AVX2;
	atomic_store_explicit(&level, l, memory_order_relaxed);
	return l;
}

/* Returns name##_avx512(args) or name##_avx2(args) where this CPU runs
 * them (RET_DISPATCH), or calls it and returns (DISPATCH, for the void
 * kernels); falls through to the portable code after it otherwise. */
#define RET_DISPATCH(name, ...) do { \
	int l_ = ops_simd(); \
	if (l_ == OPS_AVX512) \
		return name##_avx512(__VA_ARGS__); \
	if (l_ == OPS_AVX2) \
		return name##_avx2(__VA_ARGS__); \
} while (0)
#define DISPATCH(name, ...) do { \
	int l_ = ops_simd(); \
	if (l_ == OPS_AVX512) { \
		name##_avx512(__VA_ARGS__); \
		return; \
	} \
	if (l_ == OPS_AVX2) { \
		name##_avx2(__VA_ARGS__); \
		return; \
	} \
} while (0)
#else
#define RET_DISPATCH(name, ...) do { } while (0)
#define DISPATCH(name, ...) do { } while (0)
#endif

void
ops_layernorm(float *x, const float *bias, const float *w, const float *b,
    float *y, int t, int d, float eps)
{
	DISPATCH(ln_rows, x, bias, w, b, y, t, d, eps);
	for (int i = 0; i < t; i++)
		ln_row_scalar(x + (size_t)i * d, bias, w, b, y + (size_t)i * d,
		    d, eps);
}

void
ops_bias_act(float *x, const float *bias, int t, int n, int act)
{
	DISPATCH(bias_act, x, bias, t, n, act);
	for (int i = 0; i < t; i++) {
		float *r = x + (size_t)i * n;
		for (int j = 0; j < n; j++)
			r[j] = act_scalar(r[j] + bias[j], act);
	}
}

void
ops_bias(float *x, const float *bias, int t, int n)
{
	DISPATCH(bias, x, bias, t, n);
	for (int i = 0; i < t; i++) {
		float *r = x + (size_t)i * n;
		for (int j = 0; j < n; j++)
			r[j] += bias[j];
	}
}

static void
softmax_row(float *p, int n)
{
	DISPATCH(softmax_row, p, n);
	softmax_row_scalar(p, n);
}

void
ops_softmax_rows(float *p, int t, int n, int ld, int causal)
{
	for (int i = 0; i < t; i++) {
		float *r = p + (size_t)i * ld;
		int m = causal ? i + 1 : n;
		softmax_row(r, m);
		if (m < n)
			memset(r + m, 0, (size_t)(n - m) * sizeof(float));
	}
}

void
ops_softmax_bf16(float *p, uint16_t *out, int n)
{
	DISPATCH(softmax_bf16, p, out, n);
	softmax_row_scalar(p, n);
	for (int j = 0; j < n; j++)
		out[j] = bf16_of(p[j]);
}

void
ops_to_bf16(const float *x, uint16_t *y, size_t n)
{
	DISPATCH(to_bf16, x, y, n);
	for (size_t i = 0; i < n; i++)
		y[i] = bf16_of(x[i]);
}

void
ops_from_bf16(const uint16_t *x, float *y, size_t n)
{
	DISPATCH(from_bf16, x, y, n);
	from_bf16_scalar(x, y, n);
}

void
ops_round_bf16(float *x, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t u = (uint32_t)bf16_of(x[i]) << 16;
		memcpy(&x[i], &u, sizeof(u));
	}
}

float
ops_to_s8(const float *x, int8_t *q, int n, float amax, float qmax)
{
	RET_DISPATCH(to_s8, x, q, n, amax, qmax);
	return to_s8_scalar(x, q, n, amax, qmax);
}

float
ops_dequant(const int32_t *a, float s, const float *ws, const float *b,
    int act, float *y, int n, int beta)
{
	RET_DISPATCH(dequant, a, s, ws, b, act, y, n, beta);
	return dequant_scalar(a, s, ws, b, act, y, n, beta);
}

void
ops_l2_normalize(float *v, int n)
{
	double s = 0.0;
	for (int i = 0; i < n; i++)
		s += (double)v[i] * v[i];
	if (s <= 0.0)
		return;
	float inv = (float)(1.0 / sqrt(s));
	for (int i = 0; i < n; i++)
		v[i] *= inv;
}
