/*
 * encoder/ops.c's elementwise kernels (AVX2 versions where the CPU has
 * AVX2, else the portable ones) against the same functions computed here
 * in double: softmax rows of every length from 1 to 40 and ViT-B/16's 197
 * (the vector code's tails), causal rows, and bias + each activation.
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

/* ops_bias_act for each activation, rows of 37 (a tail) and 64. */
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_softmax),
		cmocka_unit_test(test_bias_act),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
