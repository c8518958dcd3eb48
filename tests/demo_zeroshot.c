/*
 * Zero-shot classification with the demo model (models/demo) on held-out
 * scenes from a second renderer (tests/demo_render.h, written apart from
 * tools/train_demo.py): top-1 accuracy of the shape, colour, count and
 * background label sets (their prompts in dr_sets), printed, and asserted
 * against issue 15's targets: shape >= 0.9, colour >= 0.95, count >= 0.8,
 * background >= 0.9.  The label rows come from cls_zero_shot and the
 * probabilities from cls_score, as `clipdex classify` computes them.
 * DEMO_MODEL=DIR runs it on another demo-world model (to compare one
 * with the shipped weights).  Run from the repository root.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classify/classify.h"
#include "encoder/clip.h"
#include "tests/cdx_assert.h"
#include "tests/demo_render.h"
#include "tests/testutil.h"

#define N_SCENES 400
#define SIDE 120
#define SEED 0x15c1a55ull
#define BATCH 16

/* Issue 15's targets, printed as met or MISSED, and asserted.  The
 * shipped model reaches shape 0.907, colour 1.000, count 0.887, background
 * 0.915 here (docs/DEMO.md); the same recipe trained in float32 0.907,
 * 0.998, 0.905, 0.917; the first demo model 0.253, 0.983, 0.510, 0.735,
 * and the patch-16 one 0.367, 0.998, 0.858, 0.750. */
static const double target[DR_N_SETS] = { 0.9, 0.95, 0.8, 0.9 };

static void
test_zero_shot_accuracy(void **state)
{
	(void)state;
	const char *dir = getenv("DEMO_MODEL") ? getenv("DEMO_MODEL")
	    : "models/demo";
	clip_model *m = tu_model_load_fp32(dir);
	const clip_model_info *in = clip_model_get_info(m);
	const clip_preprocess_cfg *pp = &in->preprocess;
	size_t dim = (size_t)in->embed_dim;
	size_t plane = 3 * (size_t)pp->crop_width * pp->crop_height;
	clip_ctx *ctx = NULL;
	cdx_error err;
	CDX_ASSERT_OK(clip_ctx_new(m, BATCH, &ctx, &err), err.msg);

	dr_scene *sc = malloc(sizeof *sc * N_SCENES);
	float *emb = malloc(sizeof(float) * N_SCENES * dim);
	float *px = malloc(sizeof(float) * plane * BATCH);
	uint8_t *rgb = malloc(3 * SIDE * SIDE);
	assert_true(sc && emb && px && rgb);
	uint64_t seed = SEED;
	for (int i = 0; i < N_SCENES; i += BATCH) {
		int nb = N_SCENES - i < BATCH ? N_SCENES - i : BATCH;
		for (int b = 0; b < nb; b++) {
			dr_scene_random(&seed, &sc[i + b]);
			dr_render(&sc[i + b], SIDE, rgb);
			clip_image img = { .width = SIDE, .height = SIDE,
				.rgb = rgb };
			CDX_ASSERT_OK(clip_image_preprocess(&img, pp,
			    px + (size_t)b * plane, &err), err.msg);
		}
		CDX_ASSERT_OK(clip_encode_images(ctx, px, nb,
		    emb + (size_t)i * dim, &err), err.msg);
	}

	int failed = 0;
	printf("zero-shot top-1 on %d scenes of tests/demo_render.h (%s):\n",
	    N_SCENES, dir);
	for (int s = 0; s < DR_N_SETS; s++) {
		const dr_labelset *ls = &dr_sets[s];
		cls_set *c = NULL;
		CDX_ASSERT_OK(cls_zero_shot(ctx, clip_model_tokenizer(m), in,
		    ls->name, (const char *const *)ls->labels, (size_t)ls->n,
		    &ls->tmpl, 1, 0, &c, &err), err.msg);
		assert_int_equal(c->kind, CLS_SOFTMAX);
		float *prob = malloc(sizeof(float) * N_SCENES * ls->n);
		assert_non_null(prob);
		CDX_ASSERT_OK(cls_score(c, emb, N_SCENES, dim, prob, &err),
		    err.msg);
		int hits = 0, confused[8][8] = { { 0 } };
		for (int i = 0; i < N_SCENES; i++) {
			uint32_t idx[8];
			/* the top label: cls_applied with threshold 0 */
			assert_true(cls_applied(c, prob + (size_t)i * ls->n,
			    idx) >= 1);
			int t = dr_truth(&sc[i], s);
			hits += (int)idx[0] == t;
			confused[t][idx[0]]++;
		}
		double acc = (double)hits / N_SCENES;
		printf("  %-10s %.3f (target %.2f %s; %d labels, \"%s\")\n",
		    ls->name, acc, target[s], acc >= target[s] ? "met" :
		    "MISSED", ls->n, ls->tmpl);
		for (int t = 0; t < ls->n; t++) {
			printf("    %-12s", ls->labels[t]);
			for (int p = 0; p < ls->n; p++)
				printf(" %3d", confused[t][p]);
			printf("\n");
		}
		failed += acc < target[s];
		free(prob);
		cls_set_free(c);
	}
	free(rgb);
	free(px);
	free(emb);
	free(sc);
	clip_ctx_free(ctx);
	clip_model_free(m);
	assert_int_equal(failed, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_zero_shot_accuracy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
