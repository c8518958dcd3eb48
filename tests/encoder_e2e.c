/*
 * End to end through the encoder's public API: image files and texts in,
 * embeddings out, against tests/fixtures/e2e/b32_quick_f32.json made by
 * tools/ref_e2e.py with independent implementations (Pillow + the Hugging
 * Face processor's steps + PyTorch CLIP; OpenAI's tokenizer).
 *
 * Required: exact mode >= 0.9999 cosine for every image kind, fast mode
 * >= 0.99 (the large photo is decoded at a reduced DCT scale), texts
 * >= 0.99999.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoder/clip.h"
#include "tests/testmodel.h"
#include "tests/testutil.h"

#define FIXTURE "tests/fixtures/e2e/b32_quick_f32.json"

static char dir[64];
static clip_model *model;
static clip_ctx *ctx;
static cJSON *fx;

/* The recipe b32_quick_f32 of tools/ref_clip.py. */
static int
setup(void **state)
{
	tm_recipe r;
	cdx_error err;
	(void)state;

	memset(&r, 0, sizeof(r));
	r.seed = 1;
	r.dtype = "F32";
	r.position_ids = 1;
	r.projection_dim = 48;
	r.vocab_size = 49408;
	r.max_positions = 77;
	r.text = (tm_tower){ .width = 64, .layers = 2, .heads = 4, .mlp = 256,
	    .quick_gelu = 1, .eps = 1e-5 };
	r.vision = (tm_tower){ .width = 64, .layers = 2, .heads = 4, .mlp = 256,
	    .quick_gelu = 1, .eps = 1e-5, .image_size = 224, .patch_size = 32 };
	snprintf(dir, sizeof(dir), "/tmp/cdx-e2e-XXXXXX");
	if (mkdtemp(dir) == NULL || tm_write_model(&r, dir) != 0)
		return -1;
	clip_model_params mp;
	clip_model_default_params(&mp);
	mp.precision = CLIP_PRECISION_FP32;   /* held to the reference */
	if (clip_model_load(dir, &mp, &model, &err) != 0) {
		fprintf(stderr, "clip_model_load: %s\n", err.msg);
		return -1;
	}
	if (clip_ctx_new(model, 1, &ctx, &err) != 0)
		return -1;
	char *text = tu_read_file(FIXTURE, NULL);
	if (text == NULL) {
		fprintf(stderr, "cannot read %s (run from the repository root)\n",
		    FIXTURE);
		return -1;
	}
	fx = cJSON_Parse(text);
	free(text);
	return fx != NULL ? 0 : -1;
}

static int
teardown(void **state)
{
	(void)state;
	cJSON_Delete(fx);
	clip_ctx_free(ctx);
	clip_model_free(model);
	tm_rmtree(dir);
	return 0;
}

/* The embedding of `path` under model m, in fast or exact mode. */
static void
embed_file(const clip_model *m, clip_ctx *c, const char *path, int fast,
    float *e)
{
	const clip_preprocess_cfg *pp = &clip_model_get_info(m)->preprocess;
	clip_decode_opts o = {
	    .min_short = fast ? clip_preprocess_min_short(pp) : 0 };
	float *px = malloc(sizeof(float) * 3 * (size_t)pp->crop_width *
	    pp->crop_height);
	clip_image img;
	cdx_error err;
	assert_non_null(px);
	if (clip_image_load(path, &o, &img, &err) != 0)
		fail_msg("%s: %s", path, err.msg);
	CDX_ASSERT_OK(clip_image_preprocess(&img, pp, px, &err), err.msg);
	clip_image_free(&img);
	CDX_ASSERT_OK(clip_encode_images(c, px, 1, e, &err), err.msg);
	free(px);
}

static double
encode_file(const char *path, int fast, const cJSON *ref)
{
	float e[64];
	embed_file(model, ctx, path, fast, e);
	return tu_cosine_json(e, ref, clip_model_get_info(model)->embed_dim);
}

/* Every fixture image in one mode against the exact-mode reference:
 * each cosine at least min; prints the worst. */
static void
check_images(int fast, double min)
{
	const cJSON *im;
	const char *mode = fast ? "fast" : "exact";
	double worst = 1;
	cJSON_ArrayForEach(im, cJSON_GetObjectItem(fx, "images")) {
		const char *file = cJSON_GetObjectItem(im, "file")->valuestring;
		double c = encode_file(file, fast,
		    cJSON_GetObjectItem(im, "embedding"));
		if (c < min)
			fail_msg("%s: %s-mode cosine %.7f < %g", file, mode, c, min);
		worst = c < worst ? c : worst;
	}
	printf("%s mode: worst cosine %.7f over %d images\n", mode, worst,
	    cJSON_GetArraySize(cJSON_GetObjectItem(fx, "images")));
}

static void
test_images_exact_mode(void **state)
{
	(void)state;
	check_images(0, 0.9999);
}

static void
test_images_fast_mode(void **state)
{
	(void)state;
	check_images(1, 0.99);
}

static void
test_fast_mode_really_scales(void **state)
{
	clip_decode_opts o = { .min_short = 224 };
	clip_image img;
	(void)state;
	/* 1200x900 with a 224 short side: 3/8 scale gives 450x338 >= 224. */
	assert_int_equal(clip_image_load("tests/fixtures/e2e/photo.jpg", &o, &img,
	    NULL), 0);
	assert_true(img.width < 1200 && img.height >= 224 && img.height < 900);
	assert_int_equal(img.info.width, 1200);
	clip_image_free(&img);
}

static void
test_texts(void **state)
{
	const cJSON *t;
	const clip_model_info *info = clip_model_get_info(model);
	double worst = 1;
	(void)state;
	cJSON_ArrayForEach(t, cJSON_GetObjectItem(fx, "texts")) {
		const char *s = cJSON_GetObjectItem(t, "text")->valuestring;
		int32_t ids[CLIP_CONTEXT_LEN];
		float e[64];
		cdx_error err;
		CDX_ASSERT_OK(clip_tokenize(clip_model_tokenizer(model), s,
		    strlen(s), ids, NULL, &err), err.msg);
		const cJSON *ref_ids = cJSON_GetObjectItem(t, "ids");
		for (int i = 0; i < CLIP_CONTEXT_LEN; i++)
			assert_int_equal(ids[i],
			    cJSON_GetArrayItem(ref_ids, i)->valueint);
		CDX_ASSERT_OK(clip_encode_text(ctx, ids, 1, e, &err), err.msg);
		double c = tu_cosine_json(e, cJSON_GetObjectItem(t, "embedding"),
		    info->embed_dim);
		if (c < 0.99999)
			fail_msg("'%s': cosine %.7f < 0.99999", s, c);
		worst = c < worst ? c : worst;
	}
	printf("texts: worst cosine %.8f\n", worst);
}

/* SigLIP (bicubic squash) and SigLIP2 (bilinear): fast mode within cosine
 * 0.99 of exact mode on every fixture photo.  Exact mode itself is held to
 * the reference by tests/encoder_image.c (pixels) and encoder_siglip.c
 * (the graph). */
static void
test_siglip_fast_mode(void **state)
{
	static const int families[2] = { TM_FAMILY_SIGLIP, TM_FAMILY_SIGLIP2 };
	(void)state;
	for (int f = 0; f < 2; f++) {
		char sdir[64];
		tm_recipe r;
		clip_model *m = NULL;
		clip_ctx *c = NULL;
		cdx_error err;
		tm_recipe_siglip_tiny(&r, families[f]);
		r.vision.image_size = 224;
		snprintf(sdir, sizeof(sdir), "/tmp/cdx-e2e-siglip-XXXXXX");
		assert_non_null(mkdtemp(sdir));
		assert_int_equal(tm_write_model(&r, sdir), 0);
		if (clip_model_load(sdir, NULL, &m, &err) != 0)
			fail_msg("clip_model_load: %s", err.msg);
		CDX_ASSERT_OK(clip_ctx_new(m, 1, &c, &err), err.msg);
		const clip_model_info *info = clip_model_get_info(m);
		assert_int_equal(info->preprocess.mode, CLIP_RESIZE_SQUASH);
		double worst = 1;
		const cJSON *im;
		cJSON_ArrayForEach(im, cJSON_GetObjectItem(fx, "images")) {
			const char *file = cJSON_GetObjectItem(im,
			    "file")->valuestring;
			float a[64], b[64];
			embed_file(m, c, file, 0, a);
			embed_file(m, c, file, 1, b);
			double ab = 0;
			for (int i = 0; i < info->embed_dim; i++)
				ab += (double)a[i] * b[i];
			if (ab < 0.99)
				fail_msg("%s: %s fast mode cosine %.5f < 0.99",
				    file, clip_family_name(info->family), ab);
			worst = ab < worst ? ab : worst;
		}
		printf("%s fast mode: worst cosine to exact %.6f\n",
		    clip_family_name(info->family), worst);
		clip_ctx_free(c);
		clip_model_free(m);
		tm_rmtree(sdir);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_images_exact_mode),
		cmocka_unit_test(test_images_fast_mode),
		cmocka_unit_test(test_fast_mode_really_scales),
		cmocka_unit_test(test_texts),
		cmocka_unit_test(test_siglip_fast_mode),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
