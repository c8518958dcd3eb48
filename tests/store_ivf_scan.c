/*
 * cdx_faiss_ivf_flat_search (store/faiss_ext.h), the store's own scan of
 * an IVF-Flat index's probed lists through OpenBLAS, against FAISS's own
 * search of the same index: the same labels, scores within float
 * rounding, for several nprobe and k (a k past what the lists hold gives
 * FAISS's -1 labels); and it declines what it does not scan (a flat index,
 * an L2 IVF).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/index_factory_c.h>

#include "store/faiss_ext.h"

enum { D = 48, N = 3000, NQ = 20, KMAX = 2100 };

static float *
unit_rows(int n, unsigned seed)
{
	float *x = malloc(sizeof(float) * (size_t)n * D);
	assert_non_null(x);
	srand(seed);
	for (int i = 0; i < n; i++) {
		double s = 0;
		for (int j = 0; j < D; j++) {
			/* a few clusters, so lists differ in size */
			float v = (float)((double)rand() / RAND_MAX) - 0.5f +
			    (j == i % 7 ? 2.0f : 0.0f);
			x[(size_t)i * D + j] = v;
			s += (double)v * v;
		}
		for (int j = 0; j < D; j++)
			x[(size_t)i * D + j] /= (float)sqrt(s);
	}
	return x;
}

static FaissIndex *
ivf(const char *desc, FaissMetricType metric, const float *x)
{
	FaissIndex *idx = NULL;
	int64_t *ids = malloc(sizeof(int64_t) * N);
	assert_non_null(ids);
	for (int i = 0; i < N; i++)
		ids[i] = 1000 + 3 * i;
	assert_int_equal(faiss_index_factory(&idx, D, desc, metric), 0);
	assert_int_equal(faiss_Index_train(idx, N, x), 0);
	assert_int_equal(faiss_Index_add_with_ids(idx, N, x, ids), 0);
	free(ids);
	return idx;
}

static void
set_nprobe(FaissIndex *idx, double np)
{
	FaissParameterSpace *ps;
	assert_int_equal(faiss_ParameterSpace_new(&ps), 0);
	assert_int_equal(faiss_ParameterSpace_set_index_parameter(ps, idx,
	    "nprobe", np), 0);
	faiss_ParameterSpace_free(ps);
}

static void
test_same_as_faiss(void **state)
{
	static float d1[KMAX], d2[KMAX];
	static int64_t l1[KMAX], l2[KMAX];
	static const int nprobes[] = { 1, 4, 32 };
	static const int ks[] = { 1, 10, 200, KMAX };
	(void)state;
	float *x = unit_rows(N, 7), *q = unit_rows(NQ, 8);
	FaissIndex *idx = ivf("IVF32,Flat", METRIC_INNER_PRODUCT, x);
	for (size_t a = 0; a < sizeof(nprobes) / sizeof(*nprobes); a++) {
		set_nprobe(idx, nprobes[a]);
		for (size_t b = 0; b < sizeof(ks) / sizeof(*ks); b++)
			for (int i = 0; i < NQ; i++) {
				int k = ks[b];
				const float *qi = q + (size_t)i * D;
				assert_int_equal(faiss_Index_search(idx, 1, qi,
				    k, d1, l1), 0);
				assert_int_equal(cdx_faiss_ivf_flat_search(idx,
				    qi, k, d2, l2), 0);
				for (int r = 0; r < k; r++) {
					assert_true(l1[r] == l2[r] ||
					    fabsf(d1[r] - d2[r]) < 1e-6f);
					if (l1[r] < 0)
						assert_true(l2[r] < 0);
					else
						assert_true(fabsf(d1[r] - d2[r])
						    < 1e-5f);
				}
			}
	}
	faiss_Index_free(idx);
	free(x);
	free(q);
}

static void
test_declines_other_kinds(void **state)
{
	float d[4];
	int64_t l[4];
	(void)state;
	float *x = unit_rows(N, 9);
	FaissIndex *flat = ivf("IDMap,Flat", METRIC_INNER_PRODUCT, x);
	FaissIndex *l2 = ivf("IVF16,Flat", METRIC_L2, x);
	FaissIndex *pq = ivf("IVF16,PQ8x4", METRIC_INNER_PRODUCT, x);
	assert_int_equal(cdx_faiss_ivf_flat_search(flat, x, 4, d, l), 1);
	assert_int_equal(cdx_faiss_ivf_flat_search(l2, x, 4, d, l), 1);
	assert_int_equal(cdx_faiss_ivf_flat_search(pq, x, 4, d, l), 1);
	faiss_Index_free(flat);
	faiss_Index_free(l2);
	faiss_Index_free(pq);
	free(x);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_as_faiss),
		cmocka_unit_test(test_declines_other_kinds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
