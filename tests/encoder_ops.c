/*
 * encoder/ops.c's elementwise kernels (the widest vector versions the CPU
 * runs, else the portable ones; tests/encoder_isa.sh runs this again
 * with CDX_MAX_SIMD avx2 and scalar) against the same functions computed
 * here in double: softmax rows of every length from 1 to 40 and
 * ViT-B/16's 197 (the vector code's tails), causal rows, bias + each
 * activation, layer norm, bf16 and int8 conversions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "encoder/model_internal.h"
#include "tests/encoder_ref.h"

/* Every row of a t x n softmax (stride ld) against double; causal rows
 * use i + 1 entries and must zero the rest. */
static double
softmax_error(int t, int n, int causal)
{
	int ld = n + 3;
	float *p = malloc(sizeof(float) * (size_t)t * ld);
	float *in = malloc(sizeof(float) * (size_t)t * ld);
	assert_non_null(p);
	assert_non_null(in);
	ref_fill(in, (size_t)t * ld, 7u + (uint32_t)n, 12.0f);
	memcpy(p, in, sizeof(float) * (size_t)t * ld);
	ops_softmax_rows(p, t, n, ld, causal);
	double emax = 0.0;
	for (int i = 0; i < t; i++) {
		const float *x = in + (size_t)i * ld;
		int m = causal ? i + 1 : n;
		double mx = -INFINITY, sum = 0.0;
		for (int j = 0; j < m; j++)
			mx = x[j] > mx ? x[j] : mx;
		for (int j = 0; j < m; j++)
			sum += exp(x[j] - mx);
		for (int j = 0; j < n; j++) {
			double want = j < m ? exp(x[j] - mx) / sum : 0.0;
			emax = fmax(emax, fabs(p[(size_t)i * ld + j] - want));
		}
		/* the stride's gap is left alone */
		for (int j = n; j < ld; j++)
			assert_true(p[(size_t)i * ld + j] == x[j]);
	}
	free(p);
	free(in);
	return emax;
}

static void
test_softmax(void **state)
{
	(void)state;
	for (int n = 1; n <= 40; n++) {
		double e = softmax_error(3, n, 0);
		if (e > 1e-6)
			fail_msg("softmax n %d: error %.3g", n, e);
	}
	double e = softmax_error(5, 197, 0);
	if (e > 1e-6)
		fail_msg("softmax n 197: error %.3g", e);
	e = softmax_error(23, 23, 1);
	if (e > 1e-6)
		fail_msg("causal softmax: error %.3g", e);
}

/* ops_bias_act for each activation, rows of 37 (a tail) and 64, inputs
 * up to where the exponentials are clamped. */
static void
test_bias_act(void **state)
{
	(void)state;
	static const int acts[] = { CLIP_ACT_QUICK_GELU, CLIP_ACT_GELU_TANH,
	    CLIP_ACT_GELU };
	static const int ns[] = { 37, 64 };
	for (size_t a = 0; a < 3; a++)
		for (size_t k = 0; k < 2; k++) {
			int t = 4, n = ns[k];
			float x[4 * 64], in[4 * 64], bias[64];
			ref_fill(in, (size_t)t * n, 11u, 6.0f);
			ref_fill(bias, (size_t)n, 13u, 1.0f);
			/* the exponentials' clamps, in a vector and a tail */
			in[0] = in[n - 1] = -120.0f;
			in[1] = in[n - 2] = -40.0f;
			in[2] = in[n - 3] = 95.0f;
			memcpy(x, in, sizeof(float) * (size_t)t * n);
			ops_bias_act(x, bias, t, n, acts[a]);
			for (int i = 0; i < t * n; i++) {
				double want = ref_act((double)in[i] +
				    bias[i % n], acts[a]);
				if (fabs(x[i] - want) > 2e-6 * (1.0 +
				    fabs(want)))
					fail_msg("act %d n %d [%d]: %.9g, want "
					    "%.9g", acts[a], n, i, x[i], want);
			}
		}
}

/* ops_layernorm (bias added first) against double, at widths around the
 * vector lengths and CLIP's 768; the input gets the bias in place. */
static void
test_layernorm(void **state)
{
	(void)state;
	static const int ds[] = { 5, 16, 37, 768 };
	for (size_t k = 0; k < sizeof(ds) / sizeof(ds[0]); k++) {
		int t = 3, d = ds[k];
		float *x = malloc(sizeof(float) * 4 * 768);
		float *in = x + 768, *y = x + 2 * 768, *wb = x + 3 * 768;
		float bias[768];
		assert_non_null(x);
		ref_fill(wb, 768, 3u, 1.0f);
		ref_fill(bias, 768, 5u, 1.0f);
		for (int i = 0; i < t; i++) {
			ref_fill(in, (size_t)d, 17u + (uint32_t)i, 4.0f);
			memcpy(x, in, sizeof(float) * (size_t)d);
			ops_layernorm(x, bias, wb, bias, y, 1, d, 1e-5f);
			double mean = 0.0, var = 0.0;
			for (int j = 0; j < d; j++)
				mean += (double)in[j] + bias[j];
			mean /= d;
			for (int j = 0; j < d; j++)
				var += pow(in[j] + (double)bias[j] - mean, 2);
			var /= d;
			for (int j = 0; j < d; j++) {
				double want = (in[j] + (double)bias[j] - mean) /
				    sqrt(var + 1e-5) * wb[j] + bias[j];
				assert_true(x[j] == in[j] + bias[j]);
				if (fabs(y[j] - want) > 1e-5 * (1.0 +
				    fabs(want)))
					fail_msg("layernorm d %d [%d]: %.9g, "
					    "want %.9g", d, j, y[j], want);
			}
		}
		free(x);
	}
}

/* ops_to_s8: the scale is max |x| / 127 and each value the nearest
 * integer to x / scale (ties to even), at lengths around the vector
 * lengths, whether it finds max |x| or is given it; a zero row has scale
 * 1.  ops_dequant against double, with and
 * without bias and accumulation, and with each activation; the largest
 * magnitude it returns is its output's. */
static void
test_int8(void **state)
{
	(void)state;
	for (int n = 1; n <= 70; n += n < 40 ? 1 : 29) {
		float x[70];
		int8_t q[70];
		ref_fill(x, (size_t)n, 29u + (uint32_t)n, 3.0f);
		x[n / 2] = 2.5f * (float)n;     /* the largest: q 127 */
		float s = ops_to_s8(x, q, n, -1.0f, 127.0f);
		assert_true(s == x[n / 2] / 127.0f);
		/* the largest magnitude given gives the same, bit for bit */
		int8_t q2[70];
		assert_true(ops_to_s8(x, q2, n, x[n / 2], 127.0f) == s);
		assert_memory_equal(q, q2, (size_t)n);
		for (int i = 0; i < n; i++) {
			float want = rintf(x[i] * (1.0f / s));
			if (q[i] != (int8_t)want)
				fail_msg("to_s8 n %d [%d]: %d, want %.0f", n,
				    i, q[i], want);
		}
	}
	float z[20] = {0};
	int8_t qz[20];
	assert_true(ops_to_s8(z, qz, 20, -1.0f, 127.0f) == 1.0f);
	for (int i = 0; i < 20; i++)
		assert_int_equal(qz[i], 0);

	int32_t a[37];
	float ws[37], b[37], y[37], prev[37];
	for (int i = 0; i < 37; i++)
		a[i] = (i * 7919) % 2001 - 1000;
	ref_fill(ws, 37, 31u, 0.01f);
	ref_fill(b, 37, 37u, 1.0f);
	ref_fill(prev, 37, 41u, 1.0f);
	/* modes 0-3: bias, accumulation; 4-6: bias and each activation */
	for (int mode = 0; mode < 7; mode++) {
		int beta = mode < 4 && (mode & 1), with_b = mode >= 2;
		int act = mode < 4 ? -1 : mode - 4;
		memcpy(y, prev, sizeof(y));
		float amax = ops_dequant(a, 0.5f, ws, with_b ? b : NULL, act,
		    y, 37, beta), want_max = 0.0f;
		for (int i = 0; i < 37; i++) {
			double want = (beta ? prev[i] : 0.0) + ref_act(a[i] *
			    0.5 * ws[i] + (with_b ? b[i] : 0.0), act);
			if (fabs(y[i] - want) > 1e-5 * (1.0 + fabs(want)))
				fail_msg("dequant mode %d [%d]: %.9g, want "
				    "%.9g", mode, i, y[i], want);
			want_max = fmaxf(want_max, fabsf(y[i]));
		}
		assert_true(amax == want_max);
	}
}

/* ops_to_bf16 rounds to the nearest bf16, ties to even (two ties placed
 * in the vector part and in the tail), within 2^-8 of x; ops_from_bf16
 * gives the values back exactly; ops_softmax_bf16 is the float softmax
 * rounded to bf16, at lengths around the vector lengths. */
static void
test_bf16(void **state)
{
	(void)state;
	float x[37], back[37];
	uint16_t b[37];
	ref_fill(x, 37, 43u, 5.0f);
	x[3] = x[35] = 1.0f + 0x1p-8f;          /* a tie: down to 1 */
	x[4] = x[36] = 1.0f + 3 * 0x1p-8f;      /* a tie: up to 1 + 2^-6 */
	ops_to_bf16(x, b, 37);
	ops_from_bf16(b, back, 37);
	for (int i = 0; i < 37; i++)
		if (fabs(back[i] - x[i]) > fabs(x[i]) * 0x1p-8)
			fail_msg("bf16 [%d]: %.9g from %.9g", i, back[i], x[i]);
	assert_true(back[3] == 1.0f && back[35] == 1.0f);
	assert_true(back[4] == 1.0f + 0x1p-6f && back[36] == 1.0f + 0x1p-6f);
	float again[37];
	memcpy(again, back, sizeof(again));
	ops_round_bf16(again, 37);
	assert_memory_equal(again, back, sizeof(again));

	for (int n = 1; n <= 40; n++) {
		float p[40], q[40], got[40];
		uint16_t pb[40];
		ref_fill(p, (size_t)n, 47u + (uint32_t)n, 8.0f);
		memcpy(q, p, sizeof(float) * (size_t)n);
		ops_softmax_rows(q, 1, n, n, 0);
		ops_softmax_bf16(p, pb, n);
		ops_from_bf16(pb, got, (size_t)n);
		for (int j = 0; j < n; j++)
			if (fabs(got[j] - q[j]) > q[j] * 0x1p-8)
				fail_msg("softmax_bf16 n %d [%d]: %.9g, want "
				    "%.9g", n, j, got[j], q[j]);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_softmax),
		cmocka_unit_test(test_bias_act),
		cmocka_unit_test(test_layernorm),
		cmocka_unit_test(test_int8),
		cmocka_unit_test(test_bf16),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
