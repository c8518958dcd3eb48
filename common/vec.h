/*
 * vec.h - the unit-length rule of embeddings, and their dot product, in
 * one place.
 *
 * The encoder makes every embedding unit length (encoder/clip.h), and the
 * store keeps them so; whatever consumes one (the store's searches, dupes,
 * the daemon) relies on it and checks it with cdx_vec_is_unit() instead of
 * normalising again.  A vector combined from embeddings (a weighted sum of
 * query terms, a prompt minus negatives) is not unit length: whoever
 * combines normalises the sum once, with cdx_vec_normalise().
 * No allocation; thread-safe.
 */
#ifndef CDX_VEC_H
#define CDX_VEC_H

/* How far the squared length of a "unit" vector may be from 1: float32
 * rounding of a normalised vector is far below it. */
#define CDX_UNIT_TOL 1e-3

/* 1 when v (dim floats) is finite and of unit length within
 * CDX_UNIT_TOL, else 0. */
int cdx_vec_is_unit(const float *v, int dim);

/* Scales v (dim floats) to unit length.  Returns 0, or CDX_EINVAL (v left
 * unchanged) when v is not finite or its length is (nearly) zero: a
 * combination that cancels out. */
int cdx_vec_normalise(float *v, int dim);

/* The dot product of a and b (dim floats each), summed in double: the
 * cosine of two unit vectors. */
double cdx_vec_dot(const float *a, const float *b, int dim);

#endif
