/* Tests of common/vec: the unit-length rule of embeddings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "common/cdx.h"
#include "common/vec.h"

static void
test_is_unit(void **state)
{
	(void)state;
	float e[3] = { 0, 1, 0 };
	float h[4] = { 0.5f, 0.5f, 0.5f, 0.5f };
	float two[2] = { 2, 0 };
	float zero[2] = { 0, 0 };
	float close[2] = { 0.6f, 0.8f + 2e-4f };        /* |v|^2 - 1 = 3.2e-4 */
	float far[2] = { 0.6f, 0.81f };                 /* 1.6e-2 */
	float bad[2] = { NAN, 1 };
	assert_true(cdx_vec_is_unit(e, 3));
	assert_true(cdx_vec_is_unit(h, 4));
	assert_true(cdx_vec_is_unit(close, 2));
	assert_false(cdx_vec_is_unit(far, 2));
	assert_false(cdx_vec_is_unit(two, 2));
	assert_false(cdx_vec_is_unit(zero, 2));
	assert_false(cdx_vec_is_unit(bad, 2));
}

static void
test_normalise(void **state)
{
	(void)state;
	float v[3] = { 3, 0, -4 };
	assert_int_equal(cdx_vec_normalise(v, 3), 0);
	assert_float_equal(v[0], 0.6, 1e-7);
	assert_float_equal(v[2], -0.8, 1e-7);
	assert_true(cdx_vec_is_unit(v, 3));
	/* A sum that cancels out, and a non-finite one, are refused and left
	 * as they were. */
	float zero[2] = { 1e-9f, 0 };
	assert_int_equal(cdx_vec_normalise(zero, 2), CDX_EINVAL);
	assert_true(zero[0] == 1e-9f);
	float inf[2] = { INFINITY, 1 };
	assert_int_equal(cdx_vec_normalise(inf, 2), CDX_EINVAL);
	assert_true(isinf(inf[0]));
}

/* Summed in double: 1e8 + 1 - 1e8 in float order would lose the 1. */
static void
test_dot(void **state)
{
	const float a[3] = { 1e8f, 1.0f, -1e8f }, b[3] = { 1.0f, 1.0f, 1.0f };
	const float u[2] = { 0.6f, 0.8f }, v[2] = { 0.8f, -0.6f };
	(void)state;
	assert_true(cdx_vec_dot(a, b, 3) == 1.0);
	assert_true(fabs(cdx_vec_dot(u, u, 2) - 1.0) < 1e-7);
	assert_true(fabs(cdx_vec_dot(u, v, 2)) < 1e-7);
	assert_true(cdx_vec_dot(u, v, 0) == 0.0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_is_unit),
		cmocka_unit_test(test_normalise),
		cmocka_unit_test(test_dot),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
