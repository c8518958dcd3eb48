/*
 * encoder_model.c - the CLIP encoders against reference embeddings from an
 * independent PyTorch implementation (tools/ref_clip.py, fixtures in
 * tests/fixtures/models/).  For each recipe the model folder is written by
 * tests/testmodel.h, checked byte-identical to the script's (sha256), then
 * loaded and run.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

#include "encoder/clip.h"
#include "tests/testmodel.h"
#include "tests/testutil.h"

#define FIXTURES "tests/fixtures/models/"

/* ---- the reference check -------------------------------------------------- */

static void
check_recipe(const char *recipe_name)
{
	char path[512];
	snprintf(path, sizeof(path), FIXTURES "%s.json", recipe_name);
	cJSON *fx = tu_read_json(path);
	const cJSON *rj = tu_jget(fx, "recipe");

	tm_recipe r;
	memset(&r, 0, sizeof(r));
	r.seed = (uint64_t)tu_jint(rj, "seed");
	r.dtype = tu_jget(rj, "dtype")->valuestring;
	r.position_ids = cJSON_IsTrue(tu_jget(rj, "position_ids"));
	r.projection_dim = tu_jint(rj, "projection_dim");
	r.vocab_size = 49408;
	r.max_positions = 77;
	assert_int_equal(tm_tower_from_json(tu_jget(rj, "text"), &r.text), 0);
	assert_int_equal(tm_tower_from_json(tu_jget(rj, "vision"), &r.vision),
	    0);

	/* The folder: config.json exactly as the script wrote it. */
	char root[] = "/tmp/cdx-encoder-model-XXXXXX";
	assert_non_null(mkdtemp(root));
	char dir[600];
	snprintf(dir, sizeof(dir), "%s/%s", root, recipe_name);
	assert_int_equal(mkdir(dir, 0755), 0);
	tu_write_json(dir, "config.json", tu_jget(fx, "config"));
	const cJSON *pp = tu_jget(fx, "preprocessor_config");
	if (!cJSON_IsNull(pp))
		tu_write_json(dir, "preprocessor_config.json", pp);
	char sft_path[700];
	snprintf(sft_path, sizeof(sft_path), "%s/model.safetensors", dir);
	assert_int_equal(tm_write_safetensors(&r, sft_path), 0);

	/* Same bytes as the Python writer. */
	uint64_t want_hash = tu_check_weights(sft_path, fx);

	/* Load through a symlink with a trailing slash: the name is the
	 * real folder's. */
	char link[700];
	snprintf(link, sizeof(link), "%s/link", root);
	assert_int_equal(symlink(dir, link), 0);
	strcat(link, "/");
	clip_model *m = tu_model_load_fp32(link);
	cdx_error err = {0};

	const clip_model_info *in = clip_model_get_info(m);
	tu_check_model_info(in, &r, recipe_name, want_hash);
	assert_true(in->weights_hash == want_hash);
	assert_int_equal(in->embed_dim, r.projection_dim);
	assert_int_equal(in->act_text == CLIP_ACT_QUICK_GELU, r.text.quick_gelu);
	assert_int_equal(in->act_vision == CLIP_ACT_QUICK_GELU,
	    r.vision.quick_gelu);

	/* preprocessing: from preprocessor_config.json or CLIP's defaults */
	const clip_preprocess_cfg *pc = &in->preprocess;
	assert_int_equal(pc->shortest_edge, r.vision.image_size);
	assert_int_equal(pc->crop_width, r.vision.image_size);
	assert_int_equal(pc->crop_height, r.vision.image_size);
	const cJSON *mean = cJSON_IsNull(pp) ? NULL :
	    cJSON_GetObjectItem(pp, "image_mean");
	const cJSON *sd = cJSON_IsNull(pp) ? NULL :
	    cJSON_GetObjectItem(pp, "image_std");
	static const float omean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
	static const float ostd[3] = {0.26862954f, 0.26130258f, 0.27577711f};
	for (int c = 0; c < 3; c++) {
		float wm = mean ? (float)cJSON_GetArrayItem(mean,
		    c)->valuedouble : omean[c];
		float ws = sd ? (float)cJSON_GetArrayItem(sd, c)->valuedouble :
		    ostd[c];
		assert_true(pc->mean[c] == wm);
		assert_true(pc->std[c] == ws);
	}

	int e = in->embed_dim;
	clip_ctx *ctx = NULL;
	if (clip_ctx_new(m, 3, &ctx, &err) != 0)
		fail_msg("clip_ctx_new: %s", err.msg);

	/* Texts, then images: the batch, then one by one. */
	tu_ref_batch tb, ib;
	tu_check_ref_texts(ctx, fx, recipe_name, CLIP_CONTEXT_LEN, e, &tb);
	tu_check_ref_images(ctx, fx, recipe_name, &r, e, &ib);
	print_message("%s: 1 - cosine to the reference at worst: text %.2e, "
	    "images %.2e\n", recipe_name, 1 - tb.worst, 1 - ib.worst);

	/* Misuse is refused with a message. */
	assert_int_equal(clip_encode_images(ctx, ib.px, 4, ib.emb, &err),
	    CDX_EINVAL);
	assert_non_null(strstr(err.msg, "batch"));
	float one[1024];
	assert_true(e <= 1024);
	int32_t bad[CLIP_CONTEXT_LEN];
	for (int j = 0; j < CLIP_CONTEXT_LEN; j++)
		bad[j] = 320;                /* no end-of-text token */
	assert_int_equal(clip_encode_text(ctx, bad, 1, one, &err), CDX_EINVAL);
	assert_non_null(strstr(err.msg, "end-of-text"));
	bad[0] = 49408;                      /* outside the vocabulary */
	bad[1] = CLIP_TOKEN_EOT;
	assert_int_equal(clip_encode_text(ctx, bad, 1, one, &err), CDX_EINVAL);
	assert_non_null(strstr(err.msg, "vocabulary"));

	tu_ref_batch_free(&ib);
	tu_ref_batch_free(&tb);
	clip_ctx_free(ctx);
	clip_model_free(m);
	cJSON_Delete(fx);
	tm_rmtree(root);
}

static void
test_b32_quick_f32(void **state)
{
	(void)state;
	check_recipe("b32_quick_f32");
}

static void
test_b16_gelu_f16(void **state)
{
	(void)state;
	check_recipe("b16_gelu_f16");
}

static void
test_b16_mixed_bf16_336(void **state)
{
	(void)state;
	check_recipe("b16_mixed_bf16_336");
}

/* The writer's float16 rounding against the hardware's (when the compiler
 * has _Float16) on edge cases: ties, subnormals, overflow. */
static void
test_f16_rounding(void **state)
{
	(void)state;
	static const struct {
		float f;
		uint16_t h;
	} cases[] = {
		{0.0f, 0x0000}, {-0.0f, 0x8000}, {1.0f, 0x3c00},
		{-2.0f, 0xc000}, {65504.0f, 0x7bff}, {65520.0f, 0x7c00},
		{0x1p-24f, 0x0001}, {0x1p-25f, 0x0000}, {0x1.8p-25f, 0x0001},
		{0x1p-14f, 0x0400}, {0x1.ffcp-15f, 0x0400},
		{1.0f + 0x1p-11f, 0x3c00},   /* tie -> even */
		{1.0f + 0x3p-11f, 0x3c02},   /* tie -> even (up) */
		{1.0f + 0x1p-11f + 0x1p-20f, 0x3c01},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(tm_f16_rne(cases[i].f), cases[i].h);
	assert_int_equal(tm_bf16_rne(1.0f), 0x3f80);
	assert_int_equal(tm_bf16_rne(1.0f + 0x1p-8f), 0x3f80);     /* tie */
	assert_int_equal(tm_bf16_rne(1.0f + 0x3p-8f), 0x3f82);     /* tie */
	assert_int_equal(tm_bf16_rne(1.0f + 0x1.2p-8f), 0x3f81);
}

/* A model written by tm_write_model (the helper other modules' tests use)
 * loads and encodes; different inputs give different embeddings. */
static void
test_tiny_model(void **state)
{
	(void)state;
	tm_recipe r;
	tm_recipe_tiny(&r);
	char dir[] = "/tmp/cdx-tiny-XXXXXX";
	assert_non_null(mkdtemp(dir));
	assert_int_equal(tm_write_model(&r, dir), 0);
	clip_model *m = NULL;
	cdx_error err = {0};
	if (clip_model_load(dir, NULL, &m, &err) != 0)
		fail_msg("clip_model_load: %s", err.msg);
	const clip_model_info *in = clip_model_get_info(m);
	assert_int_equal(in->embed_dim, 16);
	assert_int_equal(in->image_size, 64);
	assert_int_equal(in->patch_size, 16);
	assert_non_null(strstr(in->id, "@"));
	clip_ctx *ctx;
	CDX_ASSERT_OK(clip_ctx_new(m, 2, &ctx, &err), err.msg);
	int32_t ids[2 * CLIP_CONTEXT_LEN];
	for (int j = 0; j < 2 * CLIP_CONTEXT_LEN; j++)
		ids[j] = CLIP_TOKEN_EOT;
	ids[0] = ids[CLIP_CONTEXT_LEN] = CLIP_TOKEN_SOT;
	ids[1] = 320;
	ids[CLIP_CONTEXT_LEN + 1] = 1929;
	tu_check_tiny(ctx, ids, 16);
	clip_ctx_free(ctx);
	clip_model_free(m);
	clip_ctx_free(NULL);
	clip_model_free(NULL);
	tm_rmtree(dir);
}

/* ---- a shared model: chunked text batches, threads -------------------- */

typedef struct shared {
	clip_model *m;
	int32_t ids[40 * CLIP_CONTEXT_LEN];
	float px[3 * 3 * 64 * 64];
	float want_text[40 * 16], want_img[3 * 16];
	float tol;     /* batch against one by one */
	int ok;
} shared;

static void
shared_inputs(shared *s)
{
	/* 40 texts of 2..41 tokens: more than one chunk of sequences */
	for (int i = 0; i < 40; i++) {
		int32_t *r = s->ids + i * CLIP_CONTEXT_LEN;
		for (int j = 0; j < CLIP_CONTEXT_LEN; j++)
			r[j] = CLIP_TOKEN_EOT;
		r[0] = CLIP_TOKEN_SOT;
		for (int j = 1; j <= i; j++)
			r[j] = (int32_t)((i * 7919 + j * 104729) % 49000) + 1;
	}
	for (int j = 0; j < 3; j++)
		assert_int_equal(tm_pixels(9, j, 64, 4, 1.5f, 0.5f,
		    s->px + j * 3 * 64 * 64), 0);
}

static void *
shared_worker(void *arg)
{
	shared *s = arg;
	clip_ctx *ctx;
	float t[40 * 16], im[3 * 16];
	if (clip_ctx_new(s->m, 3, &ctx, NULL) != 0)
		return NULL;
	int ok = 1;
	for (int rep = 0; rep < 3 && ok; rep++) {
		ok &= clip_encode_text(ctx, s->ids, 40, t, NULL) == 0;
		ok &= clip_encode_images(ctx, s->px, 3, im, NULL) == 0;
		ok &= tu_max_abs_diff(t, s->want_text, 40 * 16) < s->tol;
		ok &= tu_max_abs_diff(im, s->want_img, 3 * 16) < s->tol;
	}
	clip_ctx_free(ctx);
	if (ok)
		__atomic_add_fetch(&s->ok, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

/* Many sequences (several internal chunks) give what one-by-one gives, and
 * threads sharing one model with their own contexts get the same results,
 * in every precision (bf16 and int8 share oneDNN's packed weights). */
static void
shared_model(int precision, float tol)
{
	tm_recipe r;
	tm_recipe_tiny(&r);
	char dir[] = "/tmp/cdx-shared-XXXXXX";
	assert_non_null(mkdtemp(dir));
	assert_int_equal(tm_write_model(&r, dir), 0);
	shared *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	s->tol = tol;
	cdx_error err = {0};
	clip_model_params mp;
	clip_model_default_params(&mp);
	mp.precision = precision;
	if (clip_model_load(dir, &mp, &s->m, &err) != 0)
		fail_msg("clip_model_load: %s", err.msg);
	assert_int_equal(clip_model_get_info(s->m)->precision, precision);
	shared_inputs(s);
	clip_ctx *ctx;
	CDX_ASSERT_OK(clip_ctx_new(s->m, 3, &ctx, &err), err.msg);
	for (int i = 0; i < 40; i++)
		CDX_ASSERT_OK(clip_encode_text(ctx,
		    s->ids + i * CLIP_CONTEXT_LEN, 1, s->want_text + i * 16,
		    &err), err.msg);
	CDX_ASSERT_OK(clip_encode_images(ctx, s->px, 3, s->want_img, &err),
	    err.msg);
	/* the same images from planes that lie apart, in another order:
	 * the same embeddings, bit for bit */
	{
		enum { PL = 3 * 64 * 64 };
		float *apart = malloc(sizeof(float) * 5 * PL), got[3 * 16];
		assert_non_null(apart);
		memcpy(apart + 4 * PL, s->px, sizeof(float) * PL);
		memcpy(apart, s->px + PL, sizeof(float) * PL);
		memcpy(apart + 2 * PL, s->px + 2 * PL, sizeof(float) * PL);
		const float *pl[3] = { apart + 4 * PL, apart, apart + 2 * PL };
		CDX_ASSERT_OK(clip_encode_image_planes(ctx, pl, 3, got, &err),
		    err.msg);
		assert_memory_equal(got, s->want_img, sizeof(got));
		pl[1] = NULL;
		assert_int_equal(clip_encode_image_planes(ctx, pl, 3, got,
		    &err), CDX_EINVAL);
		free(apart);
	}
	float all[40 * 16];
	CDX_ASSERT_OK(clip_encode_text(ctx, s->ids, 40, all, &err), err.msg);
	double d = tu_max_abs_diff(all, s->want_text, 40 * 16);
	if (!(d < tol))
		fail_msg("%s: batch and one by one differ by %g", 
		    clip_precision_name(precision), d);
	clip_ctx_free(ctx);

	pthread_t th[3];
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&th[i], NULL, shared_worker, s),
		    0);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(s->ok, 3);
	clip_model_free(s->m);
	free(s);
	tm_rmtree(dir);
}

static void
test_shared_model(void **state)
{
	(void)state;
	shared_model(CLIP_PRECISION_FP32, 1e-5f);
	shared_model(CLIP_PRECISION_BF16, 1e-5f);
	shared_model(CLIP_PRECISION_INT8, 1e-5f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_f16_rounding),
		cmocka_unit_test(test_tiny_model),
		cmocka_unit_test(test_shared_model),
		cmocka_unit_test(test_b32_quick_f32),
		cmocka_unit_test(test_b16_gelu_f16),
		cmocka_unit_test(test_b16_mixed_bf16_336),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
