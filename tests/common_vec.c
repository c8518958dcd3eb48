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

/* Every binary16 value survives the round trip through float32, NaNs as
 * NaNs; values between two halves go to the nearer (ties to the even),
 * overflow to infinity, the smallest to zero; a unit vector keeps a
 * cosine above 0.9999998 with its rounded self. */
static void
test_f16(void **state)
{
	(void)state;
	for (uint32_t h = 0; h < 65536; h++) {
		float f = cdx_f32_from_f16((uint16_t)h);
		uint16_t back = cdx_f16_from_f32(f);
		if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu))
			assert_true(isnan(f) && (back & 0x7c00u) == 0x7c00u &&
			    (back & 0x3ffu));
		else if (back != h)
			fail_msg("half 0x%04x -> %g -> 0x%04x", h, (double)f, back);
	}
	assert_true(cdx_f32_from_f16(0x3c00) == 1.0f);
	assert_true(cdx_f32_from_f16(0x0001) == ldexpf(1, -24));
	assert_true(cdx_f32_from_f16(0x7bff) == 65504.0f);
	assert_int_equal(cdx_f16_from_f32(65519.0f), 0x7bff);
	assert_int_equal(cdx_f16_from_f32(65520.0f), 0x7c00);
	assert_int_equal(cdx_f16_from_f32(-1e30f), 0xfc00);
	assert_int_equal(cdx_f16_from_f32(ldexpf(1, -25)), 0x0000);
	assert_int_equal(cdx_f16_from_f32(ldexpf(1.0001f, -25)), 0x0001);
	assert_int_equal(cdx_f16_from_f32(-ldexpf(3, -26)), 0x8001);
	assert_int_equal(cdx_f16_from_f32(1 + ldexpf(1, -11)), 0x3c00);
	assert_int_equal(cdx_f16_from_f32(1 + ldexpf(3, -11)), 0x3c02);
	assert_int_equal(cdx_f16_from_f32(ldexpf(1023.5f, -24)), 0x0400);
	/* nearest: no neighbour of the result is closer */
	uint32_t x = 12345;
	for (int i = 0; i < 200000; i++) {
		x = x * 1664525u + 1013904223u;
		float f = ldexpf((float)(x >> 8) / (1 << 24), (int)(x % 44) - 28);
		if (x & 128)
			f = -f;
		uint16_t r = cdx_f16_from_f32(f);
		double d = fabs((double)cdx_f32_from_f16(r) - f);
		for (int step = -1; step <= 1; step += 2) {
			uint16_t nb = (uint16_t)(r + step);
			if ((r & 0x7fffu) == 0 && step < 0)
				continue;
			if ((nb & 0x7c00u) == 0x7c00u)
				continue;
			double dn = fabs((double)cdx_f32_from_f16(nb) - f);
			if (dn < d || (dn == d && (r & 1u)))
				fail_msg("%a -> 0x%04x, but 0x%04x is nearer", (double)f,
				    r, nb);
		}
	}
	float v[512], w[512];
	uint16_t h16[512];
	for (int t = 0; t < 50; t++) {
		for (int i = 0; i < 512; i++) {
			x = x * 1664525u + 1013904223u;
			v[i] = (float)(x >> 8) / (1 << 24) - 0.5f;
		}
		assert_int_equal(cdx_vec_normalise(v, 512), 0);
		cdx_vec_to_f16(h16, v, 512);
		cdx_vec_from_f16(w, h16, 512);
		double cos = cdx_vec_dot(v, w, 512) /
		    sqrt(cdx_vec_dot(w, w, 512));
		assert_true(cos > 0.9999998);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_is_unit),
		cmocka_unit_test(test_normalise),
		cmocka_unit_test(test_dot),
		cmocka_unit_test(test_f16),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
