/*
 * vec.c - the unit-length rule of embeddings, and half precision (vec.h).
 */
#include <math.h>
#include <string.h>

#include "common/cdx.h"
#include "common/vec.h"

/* Squared length in double, or NAN when v is not finite. */
static double
norm2(const float *v, int dim)
{
	double s = 0;
	for (int i = 0; i < dim; i++) {
		if (!isfinite(v[i]))
			return NAN;
		s += (double)v[i] * v[i];
	}
	return s;
}

int
cdx_vec_is_unit(const float *v, int dim)
{
	double s = norm2(v, dim);
	return fabs(s - 1.0) <= CDX_UNIT_TOL;
}

int
cdx_vec_normalise(float *v, int dim)
{
	double s = norm2(v, dim);
	if (!(s > 1e-12) || !isfinite(s))
		return CDX_EINVAL;
	double inv = 1.0 / sqrt(s);
	for (int i = 0; i < dim; i++)
		v[i] = (float)(v[i] * inv);
	return 0;
}

double
cdx_vec_dot(const float *a, const float *b, int dim)
{
	double s = 0;
	for (int i = 0; i < dim; i++)
		s += (double)a[i] * b[i];
	return s;
}

uint16_t
cdx_f16_from_f32(float f)
{
	uint32_t x, ax, sign, r, rem, half;
	memcpy(&x, &f, sizeof(x));
	sign = (x >> 16) & 0x8000u;
	ax = x & 0x7fffffffu;
	if (ax >= 0x7f800000u)          /* infinity, NaN (kept quiet) */
		return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0));
	if (ax >= 0x477ff000u)          /* 65520 and up round to infinity */
		return (uint16_t)(sign | 0x7c00u);
	if (ax >= 0x38800000u) {        /* a normal half: rebias, round */
		r = (ax - 0x38000000u) >> 13;
		rem = ax & 0x1fffu;
		half = 0x1000u;
	} else if (ax >= 0x33000000u) { /* a subnormal half: units of 2^-24 */
		uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
		uint32_t shift = 126u - e;  /* 14 .. 24 */
		r = m >> shift;
		rem = m & ((1u << shift) - 1);
		half = 1u << (shift - 1);
	} else {
		return (uint16_t)sign;  /* below 2^-25: zero */
	}
	/* to nearest, ties to even; a carry into the exponent is right */
	r += rem > half || (rem == half && (r & 1u));
	return (uint16_t)(sign | r);
}

float
cdx_f32_from_f16(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
	if (exp == 0x1f) {
		bits = sign | 0x7f800000u | (man << 13);
	} else if (exp != 0) {
		bits = sign | ((exp + 112u) << 23) | (man << 13);
	} else if (man == 0) {
		bits = sign;
	} else {                        /* subnormal: normalise */
		uint32_t e = 113;
		while ((man & 0x400u) == 0) {
			man <<= 1;
			e--;
		}
		bits = sign | (e << 23) | ((man & 0x3ffu) << 13);
	}
	float out;
	memcpy(&out, &bits, sizeof(out));
	return out;
}

void
cdx_vec_to_f16(uint16_t *dst, const float *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = cdx_f16_from_f32(src[i]);
}

void
cdx_vec_from_f16(float *dst, const uint16_t *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = cdx_f32_from_f16(src[i]);
}
