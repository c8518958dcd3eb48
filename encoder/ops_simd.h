/*
 * ops_simd.h - the vector versions of ops.c's kernels, written once over a
 * vector of VN floats.  ops.c includes this file once per width, after
 * defining the names below for AVX2 + FMA (8 lanes) and for AVX-512 (16),
 * and dispatches at run time.  No include guard: that is the point.
 *
 *   vf              a vector of floats; VN its lanes
 *   K(name)         the kernel's name for this width (name_avx2, ...)
 *   ATTR            the target attribute of every function here
 *   v_*             the operations below, one instruction or a few
 *
 * Each kernel's tail (n % VN values) runs the portable code of ops.c, so
 * the vector and portable versions agree wherever a row is short.  bf16
 * is rounded to nearest even, as ops.c's bf16_of.
 */

/* exp(x), Cephes' single-precision polynomial: relative error ~1e-7. */
ATTR static inline vf
K(v_exp)(vf x)
{
	x = v_min(x, v_set1(88.3762626647949f));
	x = v_max(x, v_set1(-87.3365447504f));
	vf fx = v_floor(v_fmadd(x, v_set1(1.44269504088896341f),
	    v_set1(0.5f)));
	x = v_fnmadd(fx, v_set1(0.693359375f), x);
	x = v_fnmadd(fx, v_set1(-2.12194440e-4f), x);
	vf z = v_mul(x, x);
	vf y = v_set1(1.9875691500e-4f);
	y = v_fmadd(y, x, v_set1(1.3981999507e-3f));
	y = v_fmadd(y, x, v_set1(8.3334519073e-3f));
	y = v_fmadd(y, x, v_set1(4.1665795894e-2f));
	y = v_fmadd(y, x, v_set1(1.6666665459e-1f));
	y = v_fmadd(y, x, v_set1(5.0000001201e-1f));
	y = v_fmadd(y, z, x);
	y = v_add(y, v_set1(1.0f));
	return v_mul(y, v_pow2i(fx));
}

/* erf(x), Abramowitz & Stegun 7.1.26: absolute error < 1.5e-7. */
ATTR static inline vf
K(v_erf)(vf x)
{
	vf sign = v_and(x, v_set1(-0.0f));
	vf a = v_andnot(v_set1(-0.0f), x);
	vf t = v_div(v_set1(1.0f), v_fmadd(v_set1(0.3275911f), a,
	    v_set1(1.0f)));
	vf p = v_set1(1.061405429f);
	p = v_fmadd(p, t, v_set1(-1.453152027f));
	p = v_fmadd(p, t, v_set1(1.421413741f));
	p = v_fmadd(p, t, v_set1(-0.284496736f));
	p = v_fmadd(p, t, v_set1(0.254829592f));
	p = v_mul(p, t);
	vf e = K(v_exp)(v_sub(v_zero(), v_mul(a, a)));
	return v_or(v_fnmadd(p, e, v_set1(1.0f)), sign);
}

ATTR static void
K(ln_rows)(float *x, const float *bias, const float *w, const float *b,
    float *y, int t, int d, float eps)
{
	for (int i = 0; i < t; i++) {
		float *xr = x + (size_t)i * d;
		float *yr = y + (size_t)i * d;
		vf acc = v_zero();
		int j = 0;
		if (bias != NULL) {
			for (; j + VN <= d; j += VN) {
				vf v = v_add(v_load(xr + j), v_load(bias + j));
				v_store(xr + j, v);
				acc = v_add(acc, v);
			}
		} else {
			for (; j + VN <= d; j += VN)
				acc = v_add(acc, v_load(xr + j));
		}
		float sum = v_hsum(acc);
		for (; j < d; j++) {
			if (bias != NULL)
				xr[j] += bias[j];
			sum += xr[j];
		}
		float mean = sum / (float)d;
		vf vm = v_set1(mean);
		acc = v_zero();
		for (j = 0; j + VN <= d; j += VN) {
			vf c = v_sub(v_load(xr + j), vm);
			acc = v_fmadd(c, c, acc);
		}
		float var = v_hsum(acc);
		for (; j < d; j++)
			var += (xr[j] - mean) * (xr[j] - mean);
		var /= (float)d;
		float inv = 1.0f / sqrtf(var + eps);
		vf vi = v_set1(inv);
		for (j = 0; j + VN <= d; j += VN) {
			vf c = v_mul(v_sub(v_load(xr + j), vm), vi);
			v_store(yr + j, v_fmadd(c, v_load(w + j), v_load(b + j)));
		}
		for (; j < d; j++)
			yr[j] = (xr[j] - mean) * inv * w[j] + b[j];
	}
}

/* act(v) for VN values. */
ATTR static inline vf
K(v_act)(vf v, int act)
{
	if (act == CLIP_ACT_QUICK_GELU)
		return v_div(v, v_add(v_set1(1.0f), K(v_exp)(v_mul(v,
		    v_set1(-1.702f)))));
	if (act == CLIP_ACT_GELU_TANH) {
		vf u = v_fmadd(v_set1(GELU_TANH_C), v_mul(v_mul(v, v), v), v);
		return v_div(v, v_add(v_set1(1.0f), K(v_exp)(v_mul(u,
		    v_set1(-GELU_TANH_K)))));
	}
	vf e = K(v_erf)(v_mul(v, v_set1(0.70710678118654752f)));
	return v_mul(v_mul(v_set1(0.5f), v), v_add(v_set1(1.0f), e));
}

ATTR static void
K(bias_act)(float *x, const float *bias, int t, int n, int act)
{
	for (int i = 0; i < t; i++) {
		float *r = x + (size_t)i * n;
		int j = 0;
		for (; j + VN <= n; j += VN)
			v_store(r + j, K(v_act)(v_add(v_load(r + j),
			    v_load(bias + j)), act));
		for (; j < n; j++)
			r[j] = act_scalar(r[j] + bias[j], act);
	}
}

ATTR static void
K(bias)(float *x, const float *bias, int t, int n)
{
	for (int i = 0; i < t; i++) {
		float *r = x + (size_t)i * n;
		int j = 0;
		for (; j + VN <= n; j += VN)
			v_store(r + j, v_add(v_load(r + j), v_load(bias + j)));
		for (; j < n; j++)
			r[j] += bias[j];
	}
}

/* p[j] = exp(p[j] - max p) for n values; returns their sum. */
ATTR static float
K(softmax_exp)(float *p, int n)
{
	vf vmax = v_set1(-INFINITY);
	int j = 0;
	for (; j + VN <= n; j += VN)
		vmax = v_max(vmax, v_load(p + j));
	float mx = v_hmax(vmax);
	for (; j < n; j++)
		mx = p[j] > mx ? p[j] : mx;
	vf vm = v_set1(mx), acc = v_zero();
	for (j = 0; j + VN <= n; j += VN) {
		vf e = K(v_exp)(v_sub(v_load(p + j), vm));
		v_store(p + j, e);
		acc = v_add(acc, e);
	}
	float sum = v_hsum(acc);
	for (; j < n; j++) {
		p[j] = expf(p[j] - mx);
		sum += p[j];
	}
	return sum;
}

ATTR static void
K(softmax_row)(float *p, int n)
{
	float inv = 1.0f / K(softmax_exp)(p, n);
	vf vinv = v_set1(inv);
	int j = 0;
	for (; j + VN <= n; j += VN)
		v_store(p + j, v_mul(v_load(p + j), vinv));
	for (; j < n; j++)
		p[j] *= inv;
}

/* The softmax of p's n values in bf16 at out (p is clobbered). */
ATTR static void
K(softmax_bf16)(float *p, uint16_t *out, int n)
{
	float inv = 1.0f / K(softmax_exp)(p, n);
	vf vinv = v_set1(inv);
	int j = 0;
	for (; j + VN <= n; j += VN)
		v_store_bf16(out + j, v_mul(v_load(p + j), vinv));
	for (; j < n; j++)
		out[j] = bf16_of(p[j] * inv);
}

ATTR static void
K(to_bf16)(const float *x, uint16_t *y, size_t n)
{
	size_t i = 0;
	for (; i + VN <= n; i += VN)
		v_store_bf16(y + i, v_load(x + i));
	for (; i < n; i++)
		y[i] = bf16_of(x[i]);
}

ATTR static void
K(from_bf16)(const uint16_t *x, float *y, size_t n)
{
	size_t i = 0;
	for (; i + VN <= n; i += VN)
		v_store(y + i, v_load_bf16(x + i));
	from_bf16_scalar(x + i, y + i, n - i);
}

ATTR static float
K(to_s8)(const float *x, int8_t *q, int n, float amax, float qmax)
{
	int i = 0;
	if (amax < 0.0f) {
		vf m = v_zero();
		for (; i + VN <= n; i += VN)
			m = v_max(m, v_andnot(v_set1(-0.0f), v_load(x + i)));
		amax = v_hmax(m);
		for (; i < n; i++)
			amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
	}
	float scale = s8_scale(amax, qmax), inv = 1.0f / scale;
	vf vinv = v_set1(inv), hi = v_set1(qmax), lo = v_set1(-qmax);
	for (i = 0; i + VN <= n; i += VN)
		v_store_s8(q + i, v_min(v_max(v_mul(v_load(x + i), vinv), lo),
		    hi));
	quantize_s8(x + i, q + i, n - i, inv, qmax);
	return scale;
}

ATTR static float
K(dequant)(const int32_t *a, float s, const float *ws, const float *b,
    int act, float *y, int n, int beta)
{
	vf vs = v_set1(s), m = v_zero();
	int j = 0;
	for (; j + VN <= n; j += VN) {
		vf v = v_mul(v_mul(v_load_i32(a + j), vs), v_load(ws + j));
		if (b != NULL)
			v = v_add(v, v_load(b + j));
		if (act >= 0)
			v = K(v_act)(v, act);
		if (beta)
			v = v_add(v, v_load(y + j));
		v_store(y + j, v);
		m = v_max(m, v_andnot(v_set1(-0.0f), v));
	}
	float amax = v_hmax(m), tail = dequant_scalar(a + j, s, ws + j,
	    b != NULL ? b + j : NULL, act, y + j, n - j, beta);
	return tail > amax ? tail : amax;
}
