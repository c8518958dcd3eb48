/* Tests of classify/zeroshot.c on tiny generated models (tests/testmodel.h):
 * each label's row is the normalised mean of clip_encode_text over its
 * templates, recomputed here one text at a time; CLIP gives softmax with
 * exp(logit_scale), SigLIP sigmoid with its logit_bias. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classify/classify.h"
#include "common/vec.h"
#include "encoder/clip.h"
#include "tests/cdx_assert.h"
#include "tests/testmodel.h"

struct fixture {
	char dir[64];
	clip_model *m;
	clip_ctx *ctx;
	const clip_model_info *info;
	const clip_tokenizer *tok;
};

static int setup_recipe(void **state, const tm_recipe *r)
{
	struct fixture *f = calloc(1, sizeof(*f));
	cdx_error err = { 0 };

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/cdx-clsz-XXXXXX");
	if (!mkdtemp(f->dir) || tm_write_model(r, f->dir) != 0 ||
	    clip_model_load(f->dir, NULL, &f->m, &err) != 0 ||
	    clip_ctx_new(f->m, 4, &f->ctx, &err) != 0) {
		fprintf(stderr, "fixture: %s\n", err.msg);
		return -1;
	}
	f->info = clip_model_get_info(f->m);
	f->tok = clip_model_tokenizer(f->m);
	*state = f;
	return 0;
}

static int setup_clip(void **state)
{
	tm_recipe r;
	tm_recipe_tiny(&r);
	return setup_recipe(state, &r);
}

static int setup_siglip(void **state)
{
	tm_recipe r;
	tm_recipe_siglip_tiny(&r, TM_FAMILY_SIGLIP);
	return setup_recipe(state, &r);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	clip_ctx_free(f->ctx);
	clip_model_free(f->m);
	tm_rmtree(f->dir);
	free(f);
	return 0;
}

/* The text embedding of one text, encoded on its own. */
static void embed_one(struct fixture *f, const char *text, float *out)
{
	int32_t ids[CLIP_CONTEXT_LEN];
	cdx_error err = { 0 };

	CDX_ASSERT_OK(clip_tokenize(f->tok, text, strlen(text), ids, NULL,
				    &err), err.msg);
	CDX_ASSERT_OK(clip_encode_text(f->ctx, ids, 1, out, &err), err.msg);
}

/* Every row of c against the recomputation: the mean, in double, of the
 * templates' embeddings, normalised. */
static void check_rows(struct fixture *f, const cls_set *c,
		       const char *const *templates, size_t nt)
{
	size_t dim = (size_t)f->info->embed_dim;
	float *e = malloc(dim * sizeof(float));
	double *mean = malloc(dim * sizeof(double));

	assert_non_null(e);
	assert_non_null(mean);
	assert_int_equal(c->dim, dim);
	for (size_t i = 0; i < c->n; i++) {
		double len = 0;

		memset(mean, 0, dim * sizeof(double));
		for (size_t j = 0; j < nt; j++) {
			char *text = NULL;
			cdx_error err = { 0 };

			CDX_ASSERT_OK(cls_template_apply(templates[j],
							 c->labels[i], &text,
							 &err), err.msg);
			embed_one(f, text, e);
			free(text);
			for (size_t d = 0; d < dim; d++)
				mean[d] += e[d] / (double)nt;
		}
		for (size_t d = 0; d < dim; d++)
			len += mean[d] * mean[d];
		len = sqrt(len);
		for (size_t d = 0; d < dim; d++)
			if (fabs(c->w[i * dim + d] - mean[d] / len) > 1e-5)
				fail_msg("label %zu dim %zu: %g, recomputed %g",
					 i, d, (double)c->w[i * dim + d],
					 mean[d] / len);
	}
	free(e);
	free(mean);
}

static void test_clip_templates(void **state)
{
	struct fixture *f = *state;
	const char *const labels[] = { "cat", "dog", "remote control" };
	const char *const tmpl[] = { "a photo of a {}.", "a {} in a video game.",
				     "{}, {}!" };
	cls_set *c = NULL;
	cdx_error err = { 0 };

	CDX_ASSERT_OK(cls_zero_shot(f->ctx, f->tok, f->info, "pets", labels, 3,
				    tmpl, 3, 0.2f, &c, &err), err.msg);
	assert_int_equal(c->kind, CLS_SOFTMAX);
	assert_int_equal(c->origin, CLS_ZERO_SHOT);
	assert_int_equal(c->multi, 0);
	assert_true(c->scale == expf(f->info->logit_scale));
	assert_true(c->threshold == 0.2f);
	assert_string_equal(c->name, "pets");
	assert_string_equal(c->model_key, f->info->key);
	assert_int_equal(c->n_templates, 3);
	assert_string_equal(c->templates[1], "a {} in a video game.");
	assert_string_equal(c->labels[2], "remote control");
	for (size_t i = 0; i < 3; i++) {
		assert_true(c->bias[i] == 0.0f);
		assert_true(cdx_vec_is_unit(c->w + i * c->dim, (int)c->dim));
	}
	check_rows(f, c, tmpl, 3);
	cls_set_free(c);
}

/* No templates: "a photo of a {}."; the 80 ImageNet ones across batch
 * boundaries (2 labels x 80 texts). */
static void test_clip_default_and_imagenet(void **state)
{
	struct fixture *f = *state;
	const char *const labels[] = { "red circle", "blue square" };
	const char *const *t = NULL;
	size_t nt;
	cls_set *c = NULL;
	cdx_error err = { 0 };

	CDX_ASSERT_OK(cls_zero_shot(f->ctx, f->tok, f->info, "shapes", labels,
				    2, NULL, 0, 0, &c, &err), err.msg);
	assert_int_equal(c->n_templates, 1);
	assert_string_equal(c->templates[0], "a photo of a {}.");
	nt = cls_templates_named("default", &t);
	check_rows(f, c, t, nt);
	cls_set_free(c);

	nt = cls_templates_named("imagenet", &t);
	assert_int_equal(nt, 80);
	CDX_ASSERT_OK(cls_zero_shot(f->ctx, f->tok, f->info, "shapes", labels,
				    2, t, nt, 0, &c, &err), err.msg);
	check_rows(f, c, t, nt);
	cls_set_free(c);
}

static void test_bad_input(void **state)
{
	struct fixture *f = *state;
	const char *const dup[] = { "cat", "dog", "cat" };
	const char *const ok[] = { "cat" };
	const char *const empty[] = { "cat", "" };
	const char *const nohole[] = { "a photo of a cat" };
	cls_set *c = NULL;
	cdx_error err = { 0 };

	assert_int_equal(cls_zero_shot(f->ctx, f->tok, f->info, "x", dup, 3,
				       NULL, 0, 0, &c, &err), CDX_EINVAL);
	assert_non_null(strstr(err.msg, "'cat' is given twice"));
	assert_int_equal(cls_zero_shot(f->ctx, f->tok, f->info, "x", empty, 2,
				       NULL, 0, 0, &c, &err), CDX_EINVAL);
	assert_non_null(strstr(err.msg, "label 2 is empty"));
	assert_int_equal(cls_zero_shot(f->ctx, f->tok, f->info, "x", ok, 0,
				       NULL, 0, 0, &c, &err), CDX_EINVAL);
	assert_int_equal(cls_zero_shot(f->ctx, f->tok, f->info, "x", ok, 1,
				       nohole, 1, 0, &c, &err), CDX_EINVAL);
	assert_non_null(strstr(err.msg, "has no {}"));
	assert_int_equal(cls_zero_shot(f->ctx, f->tok, f->info, "x", ok, 1,
				       NULL, 0, 1.5f, &c, &err), CDX_EINVAL);
	assert_int_equal(cls_zero_shot(f->ctx, f->tok, f->info, "bad name", ok,
				       1, NULL, 0, 0, &c, &err), CDX_EINVAL);
	assert_null(c);
}

/* SigLIP: sigmoid, multi-label, the model's logit_bias; an image's
 * probabilities are clip_match_prob of its cosine to each row. */
static void test_siglip(void **state)
{
	struct fixture *f = *state;
	const char *const labels[] = { "cat", "dog", "remote control" };
	const char *const tmpl[] = { "a photo of a {}.", "a drawing of a {}." };
	size_t dim = (size_t)f->info->embed_dim;
	int size = f->info->image_size;
	float *px = malloc(sizeof(float) * 3 * (size_t)size * (size_t)size);
	float *img = malloc(sizeof(float) * dim), prob[3];
	cls_set *c = NULL;
	cdx_error err = { 0 };

	assert_non_null(px);
	assert_non_null(img);
	assert_true(f->info->has_sigmoid);
	CDX_ASSERT_OK(cls_zero_shot(f->ctx, f->tok, f->info, "pets", labels, 3,
				    tmpl, 2, 0.5f, &c, &err), err.msg);
	assert_int_equal(c->kind, CLS_SIGMOID);
	assert_int_equal(c->multi, 1);
	assert_true(c->scale == expf(f->info->logit_scale));
	for (size_t i = 0; i < 3; i++)
		assert_true(c->bias[i] == f->info->logit_bias);
	assert_float_equal(c->bias[0], -1.0, 1e-7); /* the recipe's */
	check_rows(f, c, tmpl, 2);

	assert_int_equal(tm_pixels(11, 0, size, 4, 1.5f, 0.5f, px), 0);
	CDX_ASSERT_OK(clip_encode_images(f->ctx, px, 1, img, &err), err.msg);
	CDX_ASSERT_OK(cls_score(c, img, 1, dim, prob, &err), err.msg);
	for (size_t i = 0; i < 3; i++) {
		double want;
		double cos = cdx_vec_dot(img, c->w + i * dim, (int)dim);
		CDX_ASSERT_OK(clip_match_prob(f->info, cos, &want), "");
		assert_float_equal(prob[i], want, 1e-5);
	}
	cls_set_free(c);
	free(px);
	free(img);
}

int main(void)
{
	const struct CMUnitTest clip[] = {
		cmocka_unit_test(test_clip_templates),
		cmocka_unit_test(test_clip_default_and_imagenet),
		cmocka_unit_test(test_bad_input),
	};
	const struct CMUnitTest siglip[] = {
		cmocka_unit_test(test_siglip),
	};
	int failed = cmocka_run_group_tests_name("clip", clip, setup_clip,
						 teardown);
	failed += cmocka_run_group_tests_name("siglip", siglip, setup_siglip,
					      teardown);
	return failed;
}
