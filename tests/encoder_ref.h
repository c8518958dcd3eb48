/*
 * encoder_ref.h - what the encoder's kernel tests (tests/encoder_gemm.c,
 * tests/encoder_ops.c) compare with: reproducible inputs and the
 * activations computed in double.  Header-only, static inline.
 */
#ifndef TESTS_ENCODER_REF_H
#define TESTS_ENCODER_REF_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "encoder/clip.h"

/* n floats uniform in [-amp, amp), the same for the same seed. */
static inline void
ref_fill(float *v, size_t n, uint32_t seed, float amp)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1664525u + 1013904223u;
		v[i] = amp * ((float)(seed >> 8) / 16777216.0f * 2.0f - 1.0f);
	}
}

/* A CLIP_ACT_* at v, in double; any other act (GEMM_ACT_NONE) is the
 * identity. */
static inline double
ref_act(double v, int act)
{
	switch (act) {
	case CLIP_ACT_QUICK_GELU:
		return v / (1.0 + exp(-1.702 * v));
	case CLIP_ACT_GELU_TANH:
		return 0.5 * v * (1.0 + tanh(0.7978845608028654 *
		    (v + 0.044715 * v * v * v)));
	case CLIP_ACT_GELU:
		return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
	default:
		return v;
	}
}

#endif
