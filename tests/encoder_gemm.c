/*
 * encoder/gemm.c's epilogue: gemm_run's bias, activation and accumulation
 * (oneDNN's matmul bias and post-ops for bf16, the dequantisation pass for
 * int8, a pass after the SGEMM for fp32) give what the plain product of the
 * same precision gives with the bias, the activation (computed here in
 * double) and the previous Y added afterwards.  Every precision, every
 * activation, row counts on both sides of the size where the passes go
 * parallel.  And gemm_mlp, whose fused paths never write the MLP's hidden
 * activations in float32, against the same two layers through float32.
 * gemm_attention (bf16 products on oneDNN) against attention computed
 * here in double, over one chunk of sequences and over several, and the
 * bf16 hand-offs around it (gemm_run_planes, gemm_run_bf16).
 * tests/encoder_isa.sh runs it again on older CPUs' kernels.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "encoder/clip.h"
#include "encoder/gemm.h"
#include "tests/encoder_ref.h"
#include "tests/testutil.h"

#define K 96

/* An n x K weight from src at prec, and a ctx to run it on. */
static void
weight_and_ctx(gemm_engine *e, const float *src, int n, int prec,
    gemm_weight *w, gemm_ctx **c)
{
	cdx_error err;
	CDX_ASSERT_OK(gemm_weight_init(w, e, src, n, K, prec, &err), err.msg);
	CDX_ASSERT_OK(gemm_ctx_new(e, c, &err), err.msg);
}

/* gemm_run with the epilogue against the plain product of the same
 * weight finished here: max |difference| / max |expected|. */
static double
epilogue_error(gemm_ctx *c, const gemm_weight *w, const float *x,
    const float *bias, int act, int beta, int t)
{
	int n = w->n;
	size_t tn = (size_t)t * n;
	float *plain = malloc(tn * sizeof(float));
	float *y = malloc(tn * sizeof(float));
	float *prev = malloc(tn * sizeof(float));
	cdx_error err;
	assert_non_null(plain);
	assert_non_null(y);
	assert_non_null(prev);
	ref_fill(prev, tn, 99u, 2.0f);
	memcpy(y, prev, tn * sizeof(float));
	CDX_ASSERT_OK(gemm_run(c, x, w, plain, t, 0.0f, NULL, GEMM_ACT_NONE,
	    &err), err.msg);
	CDX_ASSERT_OK(gemm_run(c, x, w, y, t, beta ? 1.0f : 0.0f, bias, act,
	    &err), err.msg);
	double emax = 0.0, vmax = 0.0;
	for (int i = 0; i < t; i++) {
		for (int j = 0; j < n; j++) {
			size_t at = (size_t)i * n + j;
			double v = ref_act((double)plain[at] +
			    (bias != NULL ? bias[j] : 0.0), act) +
			    (beta ? prev[at] : 0.0);
			double e = fabs(v - y[at]);
			emax = e > emax ? e : emax;
			vmax = fabs(v) > vmax ? fabs(v) : vmax;
		}
	}
	free(plain);
	free(y);
	free(prev);
	return emax / vmax;
}

static void
test_epilogue(void **state)
{
	(void)state;
	static const int precs[] = { GEMM_F32, GEMM_BF16, GEMM_S8 };
	static const int acts[] = { GEMM_ACT_NONE, CLIP_ACT_QUICK_GELU,
	    CLIP_ACT_GELU, CLIP_ACT_GELU_TANH };
	/* 300 x 256 outputs reach the passes' parallel size */
	static const int rows[] = { 1, 37, 300 };
	const int n = 256;
	float *wsrc = malloc(sizeof(float) * n * K);
	float *x = malloc(sizeof(float) * 300 * K);
	float bias[256];
	gemm_engine *e = NULL;
	cdx_error err;
	assert_non_null(wsrc);
	assert_non_null(x);
	ref_fill(wsrc, (size_t)n * K, 7u, 0.3f);
	ref_fill(x, 300 * K, 11u, 1.0f);
	ref_fill(bias, n, 13u, 1.0f);
	CDX_ASSERT_OK(gemm_engine_new(&e, &err), err.msg);
	for (size_t p = 0; p < sizeof(precs) / sizeof(precs[0]); p++) {
		gemm_weight w;
		gemm_ctx *c = NULL;
		weight_and_ctx(e, wsrc, n, precs[p], &w, &c);
		for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
			int t = rows[r];
			double eb = epilogue_error(c, &w, x, bias,
			    GEMM_ACT_NONE, 0, t);
			double er = epilogue_error(c, &w, x, bias,
			    GEMM_ACT_NONE, 1, t);
			if (eb > 1e-5 || er > 1e-5)
				fail_msg("prec %d, %d rows: bias %.3g, bias + "
				    "residual %.3g (> 1e-5)", precs[p], t, eb,
				    er);
			for (size_t a = 1; a < sizeof(acts) / sizeof(acts[0]);
			    a++) {
				double ea = epilogue_error(c, &w, x, bias,
				    acts[a], 0, t);
				if (ea > 1e-5)
					fail_msg("prec %d, %d rows, act %d: "
					    "%.3g (> 1e-5)", precs[p], t,
					    acts[a], ea);
			}
		}
		/* an activation needs a bias, and no accumulation */
		float y[256 * 2];
		assert_int_equal(gemm_run(c, x, &w, y, 2, 1.0f, bias,
		    CLIP_ACT_GELU, &err), CDX_EINVAL);
		assert_int_equal(gemm_run(c, x, &w, y, 2, 0.0f, NULL,
		    CLIP_ACT_GELU, &err), CDX_EINVAL);
		gemm_ctx_free(c);
		gemm_weight_release(&w);
	}
	gemm_engine_free(e);
	free(wsrc);
	free(x);
}

/* gemm_mlp against the same two layers through float32 (two gemm_run
 * calls): the fused paths keep the hidden activations in the second
 * weight's form, which gemm_run's conversion gives too, so the results
 * agree to rounding.  Every pair of precisions, with and without b2. */
static void
test_mlp(void **state)
{
	(void)state;
	static const int precs[] = { GEMM_F32, GEMM_BF16, GEMM_S8 };
	/* 600 rows: tiles of 64 rows on 2 threads, 192 on 3, and a 24-row
	 * tail */
	const int d = 96, m = 384, t = 600;
	float *w1s = malloc(sizeof(float) * m * d);
	float *w2s = malloc(sizeof(float) * d * m);
	float *x = malloc(sizeof(float) * t * d);
	float *h = malloc(sizeof(float) * t * m);
	float *y = malloc(sizeof(float) * t * d);
	float *ref = malloc(sizeof(float) * t * d);
	float b1[384], b2[96];
	gemm_engine *e = NULL;
	cdx_error err;
	assert_non_null(w1s);
	assert_non_null(w2s);
	assert_non_null(x);
	assert_non_null(h);
	assert_non_null(y);
	assert_non_null(ref);
	ref_fill(w1s, (size_t)m * d, 17u, 0.3f);
	ref_fill(w2s, (size_t)d * m, 19u, 0.15f);
	ref_fill(x, (size_t)t * d, 23u, 1.0f);
	ref_fill(b1, m, 29u, 0.5f);
	ref_fill(b2, d, 31u, 0.5f);
	CDX_ASSERT_OK(gemm_engine_new(&e, &err), err.msg);
	for (size_t p1 = 0; p1 < 3; p1++) {
		for (size_t p2 = 0; p2 < 3; p2++) {
			gemm_weight w1, w2;
			gemm_ctx *c = NULL;
			CDX_ASSERT_OK(gemm_weight_init(&w1, e, w1s, m, d,
			    precs[p1], &err), err.msg);
			CDX_ASSERT_OK(gemm_weight_init(&w2, e, w2s, d, m,
			    precs[p2], &err), err.msg);
			CDX_ASSERT_OK(gemm_ctx_new(e, &c, &err), err.msg);
			for (int with_b2 = 0; with_b2 < 2; with_b2++) {
				const float *bb = with_b2 ? b2 : NULL;
				ref_fill(ref, (size_t)t * d, 37u, 2.0f);
				memcpy(y, ref, sizeof(float) * t * d);
				CDX_ASSERT_OK(gemm_run(c, x, &w1, h, t, 0.0f, b1,
				    CLIP_ACT_QUICK_GELU, &err), err.msg);
				CDX_ASSERT_OK(gemm_run(c, h, &w2, ref, t, 1.0f,
				    bb, GEMM_ACT_NONE, &err), err.msg);
				CDX_ASSERT_OK(gemm_mlp(c, x, &w1, b1,
				    CLIP_ACT_QUICK_GELU, &w2, bb, y, h, t, &err),
				    err.msg);
				double emax = 0.0, vmax = 0.0;
				for (int i = 0; i < t * d; i++) {
					double df = fabs((double)y[i] - ref[i]);
					emax = df > emax ? df : emax;
					vmax = fabs(ref[i]) > vmax ?
					    fabs(ref[i]) : vmax;
				}
				if (emax / vmax > 1e-4)
					fail_msg("mlp %d/%d, b2 %d: %.3g (> 1e-4)",
					    precs[p1], precs[p2], with_b2,
					    emax / vmax);
			}
			assert_int_equal(gemm_mlp(c, x, &w1, NULL,
			    CLIP_ACT_QUICK_GELU, &w2, NULL, y, h, t, &err),
			    CDX_EINVAL);
			gemm_ctx_free(c);
			gemm_weight_release(&w1);
			gemm_weight_release(&w2);
		}
	}
	gemm_engine_free(e);
	free(w1s);
	free(w2s);
	free(x);
	free(h);
	free(y);
	free(ref);
}

/* bf16 by truncation (the tests' values are made bf16 first, so the
 * conversion itself is not under test) and back. */
static uint16_t
bf16_of(float v)
{
	uint32_t u;
	memcpy(&u, &v, sizeof(u));
	return (uint16_t)(u >> 16);
}

static float
f32_of(uint16_t b)
{
	uint32_t u = (uint32_t)b << 16;
	float v;
	memcpy(&v, &u, sizeof(v));
	return v;
}

/* Attention of n sequences of s tokens, heads x hd, computed in double
 * from the same bf16 q, k, v planes: max |gemm_attention - it| / max
 * |it|. */
static double
attention_error(gemm_ctx *c, int n, int s, int heads, int hd)
{
	int d = heads * hd;
	size_t rows = (size_t)n * s, plane = rows * d;
	float *f = malloc(sizeof(float) * 3 * plane);
	uint16_t *qkv = malloc(sizeof(uint16_t) * 3 * plane);
	uint16_t *out = malloc(sizeof(uint16_t) * plane);
	double *sc = malloc(sizeof(double) * s);
	cdx_error err;
	assert_non_null(f);
	assert_non_null(qkv);
	assert_non_null(out);
	assert_non_null(sc);
	ref_fill(f, 3 * plane, 41u + (uint32_t)s, 1.0f);
	for (size_t i = 0; i < 3 * plane; i++)
		f[i] = f32_of(qkv[i] = bf16_of(f[i]));
	CDX_ASSERT_OK(gemm_attention(c, qkv, n, s, heads, hd, out, &err),
	    err.msg);
	const float *q = f, *k = f + plane, *v = f + 2 * plane;
	double emax = 0.0, vmax = 0.0;
	for (int b = 0; b < n; b++)
		for (int h = 0; h < heads; h++)
			for (int i = 0; i < s; i++) {
				size_t ri = ((size_t)b * s + i) * d + h * hd;
				double mx = -INFINITY, sum = 0.0;
				for (int j = 0; j < s; j++) {
					size_t rj = ((size_t)b * s + j) * d + h *
					    hd;
					double dot = 0.0;
					for (int e = 0; e < hd; e++)
						dot += (double)q[ri + e] * k[rj + e];
					sc[j] = dot;
					mx = dot > mx ? dot : mx;
				}
				for (int j = 0; j < s; j++)
					sum += sc[j] = exp(sc[j] - mx);
				for (int e = 0; e < hd; e++) {
					double o = 0.0;
					for (int j = 0; j < s; j++)
						o += sc[j] / sum * v[((size_t)b * s +
						    j) * d + h * hd + e];
					double got = f32_of(out[ri + e]);
					emax = fmax(emax, fabs(got - o));
					vmax = fmax(vmax, fabs(o));
				}
			}
	free(f);
	free(qkv);
	free(out);
	free(sc);
	return emax / vmax;
}

/* gemm_attention agrees with attention in double to bf16's rounding.
 * With 2 or 3 threads (the usual run and tests/encoder_isa.sh's): 7 and 13
 * short sequences take the per-thread path (13: chunks of 3 or 2 and a
 * shorter last one), and 3 long ones of 260 tokens (1.6 MB of scores
 * each) the team's, in a chunk of 2 and a last of 1: the chunk
 * boundaries, both primitives of each path and the output rows of each.
 * On a CPU without native bf16 it refuses (the encoder then runs
 * attention in float32). */
static void
test_attention(void **state)
{
	(void)state;
	gemm_engine *e = NULL;
	gemm_ctx *c = NULL;
	cdx_error err;
	CDX_ASSERT_OK(gemm_engine_new(&e, &err), err.msg);
	CDX_ASSERT_OK(gemm_ctx_new(e, &c, &err), err.msg);
	if (!gemm_cpu_has_bf16()) {
		uint16_t qkv[3 * 8 * 8] = {0}, out[8 * 8];
		assert_int_equal(gemm_attention(c, qkv, 1, 8, 2, 4, out, &err),
		    CDX_EINVAL);
	} else {
		double e1 = attention_error(c, 7, 20, 3, 16);
		double e2 = attention_error(c, 3, 260, 4, 16);
		double e3 = attention_error(c, 13, 20, 3, 16);
		print_message("attention vs double: %.3g (7 x 20), %.3g "
		    "(3 x 260), %.3g (13 x 20)\n", e1, e2, e3);
		if (e1 > 2e-2 || e2 > 2e-2 || e3 > 2e-2)
			fail_msg("attention error %.3g / %.3g / %.3g (> 2e-2)",
			    e1, e2, e3);
	}
	gemm_ctx_free(c);
	gemm_engine_free(e);
}

/* gemm_run_rows' row source for the tests: row i of a float matrix. */
static void
copy_row(void *arg, int i, float *row)
{
	const float *x = arg;
	memcpy(row, x + (size_t)i * K, K * sizeof(float));
}

/* gemm_run_planes writes what gemm_run_rows gives, rounded to bf16, as
 * planes of columns; gemm_run_bf16 on bf16 rows gives what gemm_run gives
 * on the same values in float32, residual included.  bf16 and int8
 * weights, at row counts of one tile, several and a ragged last; an fp32
 * weight is refused. */
static void
test_planes(void **state)
{
	(void)state;
	static const int precs[] = { GEMM_BF16, GEMM_S8 };
	static const int rows[] = { 5, 300 };
	const int n = 96, np = 3, pw = n / np;
	float *wsrc = malloc(sizeof(float) * n * K);
	float *x = malloc(sizeof(float) * 300 * K);
	float *y = malloc(sizeof(float) * 300 * n);
	float *y2 = malloc(sizeof(float) * 300 * n);
	uint16_t *xb = malloc(sizeof(uint16_t) * 300 * K);
	uint16_t *pl = malloc(sizeof(uint16_t) * 300 * n);
	float bias[96];
	gemm_engine *e = NULL;
	cdx_error err;
	assert_true(wsrc && x && y && y2 && xb && pl);
	ref_fill(wsrc, (size_t)n * K, 17u, 0.3f);
	ref_fill(x, 300 * K, 19u, 1.0f);
	ref_fill(bias, n, 23u, 1.0f);
	for (size_t i = 0; i < 300 * K; i++)
		x[i] = f32_of(xb[i] = bf16_of(x[i]));
	CDX_ASSERT_OK(gemm_engine_new(&e, &err), err.msg);
	for (size_t p = 0; p < sizeof(precs) / sizeof(precs[0]); p++) {
		gemm_weight w;
		gemm_ctx *c = NULL;
		weight_and_ctx(e, wsrc, n, precs[p], &w, &c);
		if (w.md == NULL) {     /* bf16 emulated: not on oneDNN */
			assert_int_equal(gemm_run_planes(c, copy_row, x, &w,
			    pl, np, 5, bias, &err), CDX_EINVAL);
			goto next;
		}
		for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
			int t = rows[r];
			double emax = 0.0, vmax = 0.0;
			CDX_ASSERT_OK(gemm_run_rows(c, copy_row, x, &w, y, t,
			    0.0f, bias, GEMM_ACT_NONE, &err), err.msg);
			CDX_ASSERT_OK(gemm_run_planes(c, copy_row, x, &w, pl,
			    np, t, bias, &err), err.msg);
			for (int i = 0; i < t; i++)
				for (int j = 0; j < n; j++) {
					double v = y[(size_t)i * n + j];
					double got = f32_of(pl[((size_t)(j / pw) *
					    t + i) * pw + j % pw]);
					emax = fmax(emax, fabs(got - v) /
					    fmax(fabs(v), 1e-3));
				}
			/* one rounding to bf16: 2^-8 relative at most */
			if (emax > 1.0 / 256)
				fail_msg("prec %d, %d rows: planes off by %.3g",
				    precs[p], t, emax);
			ref_fill(y, (size_t)t * n, 29u, 1.0f);
			memcpy(y2, y, (size_t)t * n * sizeof(float));
			CDX_ASSERT_OK(gemm_run(c, x, &w, y, t, 1.0f, bias,
			    GEMM_ACT_NONE, &err), err.msg);
			CDX_ASSERT_OK(gemm_run_bf16(c, xb, &w, y2, t, 1.0f,
			    bias, &err), err.msg);
			emax = 0.0;
			for (size_t i = 0; i < (size_t)t * n; i++) {
				emax = fmax(emax, fabs(y[i] - y2[i]));
				vmax = fmax(vmax, fabs(y[i]));
			}
			if (emax / vmax > 1e-5)
				fail_msg("prec %d, %d rows: bf16 rows off by "
				    "%.3g", precs[p], t, emax / vmax);
		}
		assert_int_equal(gemm_run_planes(c, copy_row, x, &w, pl, 5,
		    5, bias, &err), CDX_EINVAL);    /* 96 % 5 */
next:
		gemm_ctx_free(c);
		gemm_weight_release(&w);
	}
	gemm_weight w;
	gemm_ctx *c = NULL;
	weight_and_ctx(e, wsrc, n, GEMM_F32, &w, &c);
	assert_int_equal(gemm_run_planes(c, copy_row, x, &w, pl, np, 5, bias,
	    &err), CDX_EINVAL);
	assert_int_equal(gemm_run_bf16(c, xb, &w, y, 5, 0.0f, bias, &err),
	    CDX_EINVAL);
	gemm_ctx_free(c);
	gemm_weight_release(&w);
	gemm_engine_free(e);
	free(wsrc);
	free(x);
	free(y);
	free(y2);
	free(xb);
	free(pl);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_epilogue),
		cmocka_unit_test(test_mlp),
		cmocka_unit_test(test_attention),
		cmocka_unit_test(test_planes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
