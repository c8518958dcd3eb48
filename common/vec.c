/*
 * vec.c - the unit-length rule of embeddings (vec.h).
 */
#include <math.h>

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
