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
 * Half precision (IEEE 754 binary16) is the store's format for embeddings
 * (store/store.h): cdx_vec_to_f16 and cdx_vec_from_f16 are its one
 * conversion, also used for F16 weights (encoder/safetensors.c).
 * No allocation; thread-safe.
 */
#ifndef CDX_VEC_H
#define CDX_VEC_H

#include <stddef.h>
#include <stdint.h>

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

/* src rounded to the nearest binary16 (ties to even), n values: beyond
 * 65504 to infinity, below half's smallest subnormal (2^-24) to a signed
 * zero, NaN to a quiet NaN.  A unit vector's components round with a
 * relative error of at most 2^-11, so its cosine with the rounded vector
 * is above 0.9999998. */
void cdx_vec_to_f16(uint16_t *dst, const float *src, size_t n);

/* The float32 value of each of n binary16 values (exact). */
void cdx_vec_from_f16(float *dst, const uint16_t *src, size_t n);

/* One value of each. */
uint16_t cdx_f16_from_f32(float f);
float cdx_f32_from_f16(uint16_t h);

#endif
