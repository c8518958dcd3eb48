/* Tests of classify/probe.c: the Newton fit against a plain gradient
 * descent, separable and noisy classes with their cross-validated
 * accuracy, the folds, bad input, and the learned set. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "classify/classify.h"
#include "common/vec.h"
#include "tests/cdx_assert.h"

/* A deterministic normal-ish value (sum of 4 uniforms, variance 1/3). */
static double noise(uint64_t *s)
{
	double v = 0;
	for (int i = 0; i < 4; i++) {
		*s = *s * 6364136223846793005ull + 1442695040888963407ull;
		v += (double)(*s >> 11) / 9007199254740992.0 - 0.5;
	}
	return v;
}

/* n unit rows: class 1 around +e0, class 0 around -e0 + e1 ... with
 * per-coordinate noise sd; y[i] alternates in blocks so that the classes
 * are interleaved. */
static void make_data(float *x, uint8_t *y, size_t n, size_t n_pos,
		      size_t dim, double sep, double sd, uint64_t seed)
{
	for (size_t i = 0; i < n; i++) {
		float *r = x + i * dim;
		y[i] = i < n_pos;
		for (size_t k = 0; k < dim; k++)
			r[k] = (float)(sd * noise(&seed));
		r[0] += (float)(y[i] ? sep : -sep);
		r[1] += 1.0f;
		assert_int_equal(cdx_vec_normalise(r, (int)dim), 0);
	}
}

/* The objective's gradient at (w, b) in double, as the header's model
 * defines it (l2 on w only). */
static double grad_norm(const float *x, const uint8_t *y, size_t n,
			size_t dim, const float *w, float b, double l2)
{
	double *g = calloc(dim + 1, sizeof(double)), norm = 0;
	assert_non_null(g);
	for (size_t i = 0; i < n; i++) {
		double z = b;
		for (size_t k = 0; k < dim; k++)
			z += (double)w[k] * x[i * dim + k];
		double r = 1 / (1 + exp(-z)) - y[i];
		for (size_t k = 0; k < dim; k++)
			g[k] += r * x[i * dim + k];
		g[dim] += r;
	}
	for (size_t k = 0; k < dim; k++)
		g[k] += l2 * w[k];
	for (size_t k = 0; k <= dim; k++)
		norm += g[k] * g[k];
	free(g);
	return sqrt(norm);
}

static void test_separable(void **state)
{
	(void)state;
	enum { N = 22, NP = 10, DIM = 32 };
	float x[N * DIM], w[DIM], b = 0;
	uint8_t y[N];
	cls_probe_report rep;
	cdx_error err = { 0 };

	make_data(x, y, N, NP, DIM, 1.0, 0.15, 1);
	CDX_ASSERT_OK(cls_probe_fit(x, y, N, DIM, NULL, w, &b, &rep, &err),
		      err.msg);
	assert_true(rep.cv_accuracy == 1.0);
	assert_int_equal(rep.folds, 5);
	assert_int_equal(rep.n_pos, NP);
	assert_int_equal(rep.n_neg, N - NP);
	assert_true(rep.iterations >= 1 && rep.iterations < 50);
	for (size_t i = 0; i < N; i++) {
		double z = b;
		for (size_t k = 0; k < DIM; k++)
			z += (double)w[k] * x[i * DIM + k];
		if ((z > 0) != (y[i] == 1))
			fail_msg("example %zu: z %g, label %d", i, z, y[i]);
	}
	/* the optimum of the default penalty 1e-2 * n: the gradient is
	 * zero up to the float rounding of w */
	assert_true(grad_norm(x, y, N, DIM, w, b, 1e-2 * N) < 1e-4);
	/* deterministic */
	float w2[DIM], b2;
	CDX_ASSERT_OK(cls_probe_fit(x, y, N, DIM, NULL, w2, &b2, NULL, &err),
		      err.msg);
	assert_memory_equal(w, w2, sizeof(w));
	assert_true(b == b2);
}

/* Newton's answer equals a plain gradient descent's on a small problem. */
static void test_against_gradient_descent(void **state)
{
	(void)state;
	enum { N = 40, NP = 15, DIM = 4 };
	float x[N * DIM], w[DIM], b;
	uint8_t y[N];
	double t[DIM + 1] = { 0 }, l2 = 0.5;
	cls_probe_opts o = { .l2 = l2 };
	cdx_error err = { 0 };

	make_data(x, y, N, NP, DIM, 0.3, 0.4, 5);
	CDX_ASSERT_OK(cls_probe_fit(x, y, N, DIM, &o, w, &b, NULL, &err),
		      err.msg);
	for (int it = 0; it < 200000; it++) {
		double g[DIM + 1] = { 0 };
		for (size_t i = 0; i < N; i++) {
			double z = t[DIM];
			for (size_t k = 0; k < DIM; k++)
				z += t[k] * x[i * DIM + k];
			double r = 1 / (1 + exp(-z)) - y[i];
			for (size_t k = 0; k < DIM; k++)
				g[k] += r * x[i * DIM + k];
			g[DIM] += r;
		}
		for (size_t k = 0; k < DIM; k++)
			g[k] += l2 * t[k];
		for (size_t k = 0; k <= DIM; k++)
			t[k] -= 0.05 * g[k];
	}
	for (size_t k = 0; k < DIM; k++)
		if (fabs(w[k] - t[k]) > 1e-4)
			fail_msg("w[%zu] = %g, gradient descent %g", k,
				 (double)w[k], t[k]);
	assert_float_equal(b, t[DIM], 1e-4);
}

/* Overlapping classes (about 85% separable by the best line; chance is
 * 60%): accuracy well above chance, below perfect. */
static void test_noisy(void **state)
{
	(void)state;
	enum { N = 600, NP = 240, DIM = 16 }; /* Hessian rows in 3 blocks */
	float *x = malloc(sizeof(float) * N * DIM), w[DIM], b;
	uint8_t y[N];
	cls_probe_report rep;
	cdx_error err = { 0 };

	assert_non_null(x);
	make_data(x, y, N, NP, DIM, 0.35, 0.6, 9);
	CDX_ASSERT_OK(cls_probe_fit(x, y, N, DIM, NULL, w, &b, &rep, &err),
		      err.msg);
	print_message("    noisy: cv accuracy %.3f over %d folds\n",
		      rep.cv_accuracy, rep.folds);
	if (!(rep.cv_accuracy > 0.7 && rep.cv_accuracy < 0.97))
		fail_msg("cv accuracy %g", rep.cv_accuracy);
	assert_int_equal(rep.folds, 5);
	/* at the optimum, reached in Newton's few steps */
	assert_true(grad_norm(x, y, N, DIM, w, b, 1e-2 * N) < 1e-3);
	assert_true(rep.iterations <= 10);
	free(x);
}

static void test_folds(void **state)
{
	(void)state;
	enum { N = 12, DIM = 8 };
	float x[N * DIM], w[DIM], b;
	uint8_t y[N];
	cls_probe_report rep;
	cls_probe_opts o = { 0 };
	cdx_error err = { 0 };

	/* 2 positives: 2 folds, each holding one out */
	make_data(x, y, N, 2, DIM, 1.0, 0.1, 3);
	CDX_ASSERT_OK(cls_probe_fit(x, y, N, DIM, NULL, w, &b, &rep, &err),
		      err.msg);
	assert_int_equal(rep.folds, 2);
	assert_true(rep.cv_accuracy == 1.0);
	/* 3 of each, 3 asked */
	make_data(x, y, 6, 3, DIM, 1.0, 0.1, 3);
	o.folds = 3;
	CDX_ASSERT_OK(cls_probe_fit(x, y, 6, DIM, &o, w, &b, &rep, &err),
		      err.msg);
	assert_int_equal(rep.folds, 3);
	o.folds = 1;
	assert_int_equal(cls_probe_fit(x, y, 6, DIM, &o, w, &b, &rep, &err),
			 CDX_EINVAL);
}

static void test_bad_input(void **state)
{
	(void)state;
	enum { N = 6, DIM = 4 };
	float x[N * DIM], w[DIM], b;
	uint8_t y[N];
	cdx_error err = { 0 };

	make_data(x, y, N, 1, DIM, 1.0, 0.1, 2);
	assert_int_equal(cls_probe_fit(x, y, N, DIM, NULL, w, &b, NULL, &err),
			 CDX_EINVAL);
	assert_non_null(strstr(err.msg, "at least 2 positive examples"));
	make_data(x, y, N, 5, DIM, 1.0, 0.1, 2);
	assert_int_equal(cls_probe_fit(x, y, N, DIM, NULL, w, &b, NULL, &err),
			 CDX_EINVAL);
	assert_non_null(strstr(err.msg, "at least 2 negative examples"));
	make_data(x, y, N, 3, DIM, 1.0, 0.1, 2);
	y[0] = 2;
	assert_int_equal(cls_probe_fit(x, y, N, DIM, NULL, w, &b, NULL, &err),
			 CDX_EINVAL);
	y[0] = 1;
	x[5] = NAN;
	assert_int_equal(cls_probe_fit(x, y, N, DIM, NULL, w, &b, NULL, &err),
			 CDX_EINVAL);
	assert_int_equal(cls_probe_fit(x, y, 0, DIM, NULL, w, &b, NULL, &err),
			 CDX_EINVAL);
}

static void test_probe_set(void **state)
{
	(void)state;
	float w[3] = { 2, -1, 0.5f }, x[3] = { 0.6f, 0.8f, 0 }, p;
	uint64_t pos[2] = { 12, 40 }, neg[1] = { 7 };
	cls_set *c = NULL;
	cdx_error err = { 0 };

	CDX_ASSERT_OK(cls_probe_set("good-photos", w, -0.25f, 3, pos, 2, neg,
				    1, -1, &c, &err), err.msg);
	assert_int_equal(c->origin, CLS_LEARNED);
	assert_int_equal(c->kind, CLS_SIGMOID);
	assert_int_equal(c->n, 1);
	assert_string_equal(c->labels[0], "good-photos");
	assert_string_equal(c->name, "good-photos");
	assert_true(c->threshold == 0.5f);
	assert_true(c->scale == 1.0f);
	assert_true(c->pos[1] == 40 && c->neg[0] == 7);
	CDX_ASSERT_OK(cls_score(c, x, 1, 3, &p, &err), err.msg);
	assert_float_equal(p, 1 / (1 + exp(-(1.2 - 0.8 - 0.25))), 1e-6);
	cls_set_free(c);
	CDX_ASSERT_OK(cls_probe_set("t", w, 0, 3, NULL, 0, NULL, 0, 0.9f, &c,
				    &err), err.msg);
	assert_true(c->threshold == 0.9f);
	cls_set_free(c);
	assert_int_equal(cls_probe_set("t", w, 0, 3, NULL, 0, NULL, 0, 1.5f,
				       &c, &err), CDX_EINVAL);
	assert_int_equal(cls_probe_set("a b", w, 0, 3, NULL, 0, NULL, 0, 0.5f,
				       &c, &err), CDX_EINVAL);
}

/* SigLIP's 1152 dimensions: the Hessian of 1153 parameters. */
static void test_wide(void **state)
{
	(void)state;
	enum { N = 24, NP = 8, DIM = 1152 };
	float *x = malloc(sizeof(float) * N * DIM), *w = malloc(sizeof(float) *
								  DIM), b;
	uint8_t y[N];
	cls_probe_report rep;
	cdx_error err = { 0 };
	struct timespec t0, t1;

	assert_non_null(x);
	assert_non_null(w);
	make_data(x, y, N, NP, DIM, 0.5, 0.03, 4);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CDX_ASSERT_OK(cls_probe_fit(x, y, N, DIM, NULL, w, &b, &rep, &err),
		      err.msg);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	print_message("    %d examples x %d: %d steps, %.3f s with %d folds\n",
		      N, DIM, rep.iterations,
		      (double)(t1.tv_sec - t0.tv_sec) +
		      1e-9 * (double)(t1.tv_nsec - t0.tv_nsec), rep.folds);
	assert_true(rep.cv_accuracy == 1.0);
	assert_true(grad_norm(x, y, N, DIM, w, b, 1e-2 * N) < 1e-3);
	free(x);
	free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_separable),
		cmocka_unit_test(test_against_gradient_descent),
		cmocka_unit_test(test_noisy),
		cmocka_unit_test(test_folds),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_probe_set),
		cmocka_unit_test(test_wide),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
