/*
 * The encoder's results do not depend on the thread count: the same
 * images and texts encoded with 1 and with 2 OpenMP threads (attention
 * spread over (sequence, head) pairs, layer norms, activations and the
 * conversions around oneDNN over rows) reach cosine > 0.99999 on every
 * input, in fp32 (where OpenBLAS' threads vary), bf16 and int8, for CLIP
 * (causal text, class token) and SigLIP (attention-pooling head).  The
 * models are wide enough that every row pass is above the size where the
 * encoder goes parallel.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/threads.h"
#include "encoder/clip.h"
#include "tests/testmodel.h"
#include "tests/testutil.h"

#define N_IMG 32
#define N_TXT 16
#define MAX_DIM 256

typedef struct embs {
	float img[N_IMG * MAX_DIM], txt[N_TXT * MAX_DIM];
} embs;

/* Encodes N_IMG images and N_TXT texts with the model at dir, at
 * precision prec, on `threads` threads; returns the embedding length. */
static int
encode_all(const char *dir, int prec, int threads, embs *e)
{
	cdx_threads_set(threads);
	assert_int_equal(omp_get_max_threads(), threads);
	clip_model_params p;
	clip_model *m = NULL;
	clip_ctx *ctx = NULL;
	cdx_error err;
	clip_model_default_params(&p);
	p.precision = prec;
	CDX_ASSERT_OK(clip_model_load(dir, &p, &m, &err), err.msg);
	const clip_model_info *in = clip_model_get_info(m);
	assert_true(in->embed_dim <= MAX_DIM);
	int size = in->image_size, ctxl = in->context_len;
	float *px = malloc(sizeof(float) * 3 * size * size * N_IMG);
	int32_t *ids = malloc(sizeof(int32_t) * N_TXT * (size_t)ctxl);
	assert_non_null(px);
	assert_non_null(ids);
	CDX_ASSERT_OK(clip_ctx_new(m, N_IMG, &ctx, &err), err.msg);
	for (int j = 0; j < N_IMG; j++)
		assert_int_equal(tm_pixels(11, j, size, 4, 1.5f, 0.5f,
		    px + (size_t)j * 3 * size * size), 0);
	CDX_ASSERT_OK(clip_encode_images(ctx, px, N_IMG, e->img, &err),
	    err.msg);
	for (int j = 0; j < N_TXT; j++) {
		char text[256];
		int len = snprintf(text, sizeof(text), "photo %d", j);
		/* lengths from 3 to about 50 tokens */
		for (int w = 0; w < j * 3; w++)
			len += snprintf(text + len, sizeof(text) - (size_t)len,
			    " %c", 'a' + (j + w) % 26);
		CDX_ASSERT_OK(clip_tokenize(clip_model_tokenizer(m), text,
		    strlen(text), ids + (size_t)j * ctxl, NULL, &err), err.msg);
	}
	CDX_ASSERT_OK(clip_encode_text(ctx, ids, N_TXT, e->txt, &err),
	    err.msg);
	int dim = in->embed_dim;
	free(px);
	free(ids);
	clip_ctx_free(ctx);
	clip_model_free(m);
	return dim;
}

static double
cosine(const float *a, const float *b, int n)
{
	double ab = 0, aa = 0, bb = 0;
	for (int i = 0; i < n; i++) {
		ab += (double)a[i] * b[i];
		aa += (double)a[i] * a[i];
		bb += (double)b[i] * b[i];
	}
	return ab / sqrt(aa * bb);
}

static void
same_for_1_and_2_threads(tm_recipe *r, const char *what)
{
	static const int precs[3] = { CLIP_PRECISION_FP32, CLIP_PRECISION_BF16,
	    CLIP_PRECISION_INT8 };
	static embs one, two;
	char dir[] = "/tmp/cdx-threads-XXXXXX";
	assert_non_null(mkdtemp(dir));
	assert_int_equal(tm_write_model(r, dir), 0);
	for (int k = 0; k < 3; k++) {
		int dim = encode_all(dir, precs[k], 1, &one);
		assert_int_equal(encode_all(dir, precs[k], 2, &two), dim);
		double worst = 1;
		for (int j = 0; j < N_IMG; j++) {
			double c = cosine(one.img + (size_t)j * dim,
			    two.img + (size_t)j * dim, dim);
			worst = c < worst ? c : worst;
		}
		for (int j = 0; j < N_TXT; j++) {
			double c = cosine(one.txt + (size_t)j * dim,
			    two.txt + (size_t)j * dim, dim);
			worst = c < worst ? c : worst;
		}
		printf("%s %s: worst cosine, 1 vs 2 threads, %.7f\n", what,
		    clip_precision_name(precs[k]), worst);
		if (!(worst > 0.99999))
			fail_msg("%s %s: 1 and 2 threads differ: cosine %.7f",
			    what, clip_precision_name(precs[k]), worst);
	}
	tm_rmtree(dir);
}

/* 256 wide, 4 heads, MLP 1024: 32 images of 17 tokens make 544 rows,
 * 139264 floats a row pass; the texts about 400 rows. */
static void
widen(tm_recipe *r)
{
	r->text.width = r->vision.width = 256;
	r->text.heads = r->vision.heads = 4;
	r->text.mlp = r->vision.mlp = 1024;
}

static void
test_clip_threads(void **state)
{
	(void)state;
	tm_recipe r;
	tm_recipe_tiny(&r);
	widen(&r);
	same_for_1_and_2_threads(&r, "CLIP");
}

static void
test_siglip_threads(void **state)
{
	(void)state;
	tm_recipe r;
	tm_recipe_siglip_tiny(&r, TM_FAMILY_SIGLIP);
	widen(&r);
	same_for_1_and_2_threads(&r, "SigLIP");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clip_threads),
		cmocka_unit_test(test_siglip_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
