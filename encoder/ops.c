/*
 * ops.c - the float32 kernels of the encoders: GEMM (OpenBLAS), layer
 * norm, bias + activation, softmax, L2 normalisation.  The elementwise
 * kernels have AVX2/FMA versions chosen at run time; the portable versions
 * use libm and are the reference for them.
 */
#include "encoder/model_internal.h"

#include <cblas.h>
#include <math.h>
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

/* ---- AVX2 + FMA versions ---------------------------------------------- */
#if OPS_X86
#define AVX2 __attribute__((target("avx2,fma")))

/* exp(x), Cephes' single-precision polynomial: relative error ~1e-7. */
AVX2 static inline __m256
exp256(__m256 x)
{
	x = _mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f));
	x = _mm256_max_ps(x, _mm256_set1_ps(-87.3365447504f));
	__m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f),
	    _mm256_set1_ps(0.5f));
	fx = _mm256_floor_ps(fx);
	x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
	x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
	__m256 z = _mm256_mul_ps(x, x);
	__m256 y = _mm256_set1_ps(1.9875691500e-4f);
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
	y = _mm256_fmadd_ps(y, z, x);
	y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
	__m256i e = _mm256_cvttps_epi32(fx);
	e = _mm256_add_epi32(e, _mm256_set1_epi32(127));
	e = _mm256_slli_epi32(e, 23);
	return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* erf(x), Abramowitz & Stegun 7.1.26: absolute error < 1.5e-7. */
AVX2 static inline __m256
erf256(__m256 x)
{
	const __m256 sign_mask = _mm256_set1_ps(-0.0f);
	__m256 sign = _mm256_and_ps(x, sign_mask);
	__m256 a = _mm256_andnot_ps(sign_mask, x);
	__m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f),
	    _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), a,
	    _mm256_set1_ps(1.0f)));
	__m256 p = _mm256_set1_ps(1.061405429f);
	p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
	p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
	p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
	p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
	p = _mm256_mul_ps(p, t);
	__m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(),
	    _mm256_mul_ps(a, a)));
	__m256 r = _mm256_fnmadd_ps(p, e, _mm256_set1_ps(1.0f));
	return _mm256_or_ps(r, sign);
}

AVX2 static inline float
hsum256(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v),
	    _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

AVX2 static void
ln_rows_avx2(float *x, const float *bias, const float *w, const float *b,
    float *y, int t, int d, float eps)
{
	for (int i = 0; i < t; i++) {
		float *xr = x + (size_t)i * d;
		float *yr = y + (size_t)i * d;
		__m256 acc = _mm256_setzero_ps();
		int j = 0;
		if (bias != NULL) {
			for (; j + 8 <= d; j += 8) {
				__m256 v = _mm256_add_ps(_mm256_loadu_ps(xr + j),
				    _mm256_loadu_ps(bias + j));
				_mm256_storeu_ps(xr + j, v);
				acc = _mm256_add_ps(acc, v);
			}
		} else {
			for (; j + 8 <= d; j += 8)
				acc = _mm256_add_ps(acc, _mm256_loadu_ps(xr + j));
		}
		float sum = hsum256(acc);
		for (; j < d; j++) {
			if (bias != NULL)
				xr[j] += bias[j];
			sum += xr[j];
		}
		float mean = sum / (float)d;
		__m256 vm = _mm256_set1_ps(mean);
		acc = _mm256_setzero_ps();
		for (j = 0; j + 8 <= d; j += 8) {
			__m256 c = _mm256_sub_ps(_mm256_loadu_ps(xr + j), vm);
			acc = _mm256_fmadd_ps(c, c, acc);
		}
		float var = hsum256(acc);
		for (; j < d; j++)
			var += (xr[j] - mean) * (xr[j] - mean);
		var /= (float)d;
		float inv = 1.0f / sqrtf(var + eps);
		__m256 vi = _mm256_set1_ps(inv);
		for (j = 0; j + 8 <= d; j += 8) {
			__m256 c = _mm256_mul_ps(_mm256_sub_ps(
			    _mm256_loadu_ps(xr + j), vm), vi);
			_mm256_storeu_ps(yr + j, _mm256_fmadd_ps(c,
			    _mm256_loadu_ps(w + j), _mm256_loadu_ps(b + j)));
		}
		for (; j < d; j++)
			yr[j] = (xr[j] - mean) * inv * w[j] + b[j];
	}
}

AVX2 static void
bias_act_avx2(float *x, const float *bias, int t, int n, int act)
{
	const __m256 k = _mm256_set1_ps(act == CLIP_ACT_QUICK_GELU ? -1.702f :
	    act == CLIP_ACT_GELU_TANH ? -GELU_TANH_K : 0.70710678118654752f);
	const __m256 c = _mm256_set1_ps(GELU_TANH_C);
	const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
	for (int i = 0; i < t; i++) {
		float *r = x + (size_t)i * n;
		int j = 0;
		for (; j + 8 <= n; j += 8) {
			__m256 v = _mm256_add_ps(_mm256_loadu_ps(r + j),
			    _mm256_loadu_ps(bias + j));
			__m256 o;
			if (act == CLIP_ACT_QUICK_GELU) {
				__m256 e = exp256(_mm256_mul_ps(v, k));
				o = _mm256_div_ps(v, _mm256_add_ps(one, e));
			} else if (act == CLIP_ACT_GELU_TANH) {
				__m256 v3 = _mm256_mul_ps(_mm256_mul_ps(v, v), v);
				__m256 u = _mm256_fmadd_ps(c, v3, v);
				__m256 e = exp256(_mm256_mul_ps(u, k));
				o = _mm256_div_ps(v, _mm256_add_ps(one, e));
			} else {
				__m256 e = erf256(_mm256_mul_ps(v, k));
				o = _mm256_mul_ps(_mm256_mul_ps(half, v),
				    _mm256_add_ps(one, e));
			}
			_mm256_storeu_ps(r + j, o);
		}
		for (; j < n; j++)
			r[j] = act_scalar(r[j] + bias[j], act);
	}
}

AVX2 static void
bias_avx2(float *x, const float *bias, int t, int n)
{
	for (int i = 0; i < t; i++) {
		float *r = x + (size_t)i * n;
		int j = 0;
		for (; j + 8 <= n; j += 8)
			_mm256_storeu_ps(r + j, _mm256_add_ps(_mm256_loadu_ps(r + j),
			    _mm256_loadu_ps(bias + j)));
		for (; j < n; j++)
			r[j] += bias[j];
	}
}

AVX2 static void
softmax_row_avx2(float *p, int n)
{
	__m256 vmax = _mm256_set1_ps(-INFINITY);
	int j = 0;
	for (; j + 8 <= n; j += 8)
		vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(p + j));
	float buf[8];
	_mm256_storeu_ps(buf, vmax);
	float mx = buf[0];
	for (int q = 1; q < 8; q++)
		mx = buf[q] > mx ? buf[q] : mx;
	for (; j < n; j++)
		mx = p[j] > mx ? p[j] : mx;
	__m256 vm = _mm256_set1_ps(mx), acc = _mm256_setzero_ps();
	for (j = 0; j + 8 <= n; j += 8) {
		__m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(p + j), vm));
		_mm256_storeu_ps(p + j, e);
		acc = _mm256_add_ps(acc, e);
	}
	float sum = hsum256(acc);
	for (; j < n; j++) {
		p[j] = expf(p[j] - mx);
		sum += p[j];
	}
	__m256 inv = _mm256_set1_ps(1.0f / sum);
	for (j = 0; j + 8 <= n; j += 8)
		_mm256_storeu_ps(p + j, _mm256_mul_ps(_mm256_loadu_ps(p + j),
		    inv));
	for (; j < n; j++)
		p[j] *= 1.0f / sum;
}
#endif

int
ops_have_avx2(void)
{
#if OPS_X86
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
	return 0;
#endif
}

/* ---- dispatch ---------------------------------------------------------- */

void
ops_layernorm(float *x, const float *bias, const float *w, const float *b,
    float *y, int t, int d, float eps)
{
#if OPS_X86
	if (ops_have_avx2()) {
		ln_rows_avx2(x, bias, w, b, y, t, d, eps);
		return;
	}
#endif
	for (int i = 0; i < t; i++)
		ln_row_scalar(x + (size_t)i * d, bias, w, b, y + (size_t)i * d,
		    d, eps);
}

void
ops_bias_act(float *x, const float *bias, int t, int n, int act)
{
#if OPS_X86
	if (ops_have_avx2()) {
		bias_act_avx2(x, bias, t, n, act);
		return;
	}
#endif
	for (int i = 0; i < t; i++) {
		float *r = x + (size_t)i * n;
		for (int j = 0; j < n; j++)
			r[j] = act_scalar(r[j] + bias[j], act);
	}
}

void
ops_bias(float *x, const float *bias, int t, int n)
{
#if OPS_X86
	if (ops_have_avx2()) {
		bias_avx2(x, bias, t, n);
		return;
	}
#endif
	for (int i = 0; i < t; i++) {
		float *r = x + (size_t)i * n;
		for (int j = 0; j < n; j++)
			r[j] += bias[j];
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

void
ops_softmax_rows(float *p, int t, int n, int ld, int causal)
{
	for (int i = 0; i < t; i++) {
		float *r = p + (size_t)i * ld;
		int m = causal ? i + 1 : n;
#if OPS_X86
		if (ops_have_avx2())
			softmax_row_avx2(r, m);
		else
#endif
			softmax_row_scalar(r, m);
		if (m < n)
			memset(r + m, 0, (size_t)(n - m) * sizeof(float));
	}
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
