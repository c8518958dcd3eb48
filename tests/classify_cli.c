/* Tests of `clipdex classify --model` (cli/classify.c), the offline path:
 * the --json contract (one object per image per line, input order, labels
 * highest first, the mode), probabilities equal to a recomputation from
 * the encoder here, a broken image among good ones, the table, and usage
 * errors.  Runs $BUILD/clipdex on the demo model (models/demo) and a tiny
 * SigLIP (tests/testmodel.h) with generated images. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <spng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "encoder/clip.h"
#include "tests/cdx_assert.h"
#include "tests/testutil.h"

#define MODEL "models/demo"

static char clipdex_bin[PATH_MAX];
static char dir[] = "/tmp/cdx-clscli-XXXXXX";
static char red_png[128], blue_jpg[128], broken_png[128], labels_txt[128];

struct run {
	int status;
	char *out, *err;
};

static struct run
run_cli(const char *first, ...)
{
	const char *args[64];
	int n = 0;
	va_list ap;
	char outp[] = "/tmp/cdx-clscli-out-XXXXXX";
	char errp[] = "/tmp/cdx-clscli-err-XXXXXX";
	int ofd = tu_unlinked_tmp(outp), efd = tu_unlinked_tmp(errp);
	struct run r;

	args[n++] = clipdex_bin;
	va_start(ap, first);
	for (const char *a = first; a != NULL && n < 63;
	     a = va_arg(ap, const char *))
		args[n++] = a;
	va_end(ap);
	args[n] = NULL;
	r.status = tu_spawn(clipdex_bin, (char *const *)args, ofd, efd);
	r.out = tu_fd_slurp(ofd);
	r.err = tu_fd_slurp(efd);
	close(ofd);
	close(efd);
	return r;
}

static void
run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

#define EXPECT_STATUS(r, want) do { \
	if ((r).status != (want)) \
		fail_msg("exit %d, wanted %d; stderr: %s", (r).status, (want), \
		    (r).err); \
} while (0)

/* A w x h RGB PNG: a filled disc of colour fg on background bg. */
static void
write_disc_png(const char *path, int w, int h, const unsigned char fg[3],
    const unsigned char bg[3])
{
	unsigned char *rgb = malloc((size_t)w * h * 3);
	struct spng_ihdr ihdr = { .width = (uint32_t)w, .height = (uint32_t)h,
		.bit_depth = 8, .color_type = SPNG_COLOR_TYPE_TRUECOLOR };
	spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
	FILE *f = fopen(path, "wb");

	assert_non_null(rgb);
	assert_non_null(ctx);
	assert_non_null(f);
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			double dx = x - w / 2.0, dy = y - h / 2.0;
			int in = dx * dx + dy * dy < (w / 4.0) * (w / 4.0);
			memcpy(rgb + ((size_t)y * w + x) * 3, in ? fg : bg, 3);
		}
	assert_int_equal(spng_set_png_file(ctx, f), 0);
	assert_int_equal(spng_set_ihdr(ctx, &ihdr), 0);
	assert_int_equal(spng_encode_image(ctx, rgb, (size_t)w * h * 3,
	    SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE), 0);
	spng_ctx_free(ctx);
	assert_int_equal(fclose(f), 0);
	free(rgb);
}

/* The probabilities recomputed here: the image embedded as the CLI does
 * with --exact, each label's text "a photo of a {label}." embedded alone,
 * softmax of exp(logit_scale) * cos in double. */
static void
reference_probs(const char *image, const char *const *labels, int n,
    double *prob)
{
	clip_model_params mp;
	clip_model *m = NULL;
	clip_ctx *ctx = NULL;
	clip_image img;
	cdx_error err = { 0 };

	clip_model_default_params(&mp);
	mp.precision = CLIP_PRECISION_FP32;
	CDX_ASSERT_OK(clip_model_load(MODEL, &mp, &m, &err), err.msg);
	CDX_ASSERT_OK(clip_ctx_new(m, 1, &ctx, &err), err.msg);
	const clip_model_info *in = clip_model_get_info(m);
	int dim = in->embed_dim, size = in->preprocess.crop_width *
	    in->preprocess.crop_height;
	float *px = malloc(sizeof(float) * 3 * (size_t)size);
	float *ie = malloc(sizeof(float) * (size_t)dim);
	float *te = malloc(sizeof(float) * (size_t)dim);
	double max = -INFINITY, sum = 0;

	assert_non_null(px);
	assert_non_null(ie);
	assert_non_null(te);
	CDX_ASSERT_OK(clip_image_load(image, NULL, &img, &err), err.msg);
	CDX_ASSERT_OK(clip_image_preprocess(&img, &in->preprocess, px, &err),
	    err.msg);
	clip_image_free(&img);
	CDX_ASSERT_OK(clip_encode_images(ctx, px, 1, ie, &err), err.msg);
	for (int i = 0; i < n; i++) {
		char text[256];
		int32_t ids[CLIP_CONTEXT_LEN];
		snprintf(text, sizeof(text), "a photo of a %s.", labels[i]);
		CDX_ASSERT_OK(clip_tokenize(clip_model_tokenizer(m), text,
		    strlen(text), ids, NULL, &err), err.msg);
		CDX_ASSERT_OK(clip_encode_text(ctx, ids, 1, te, &err), err.msg);
		prob[i] = exp((double)in->logit_scale) *
		    cdx_vec_dot(ie, te, dim);
		max = prob[i] > max ? prob[i] : max;
	}
	for (int i = 0; i < n; i++)
		sum += (prob[i] = exp(prob[i] - max));
	for (int i = 0; i < n; i++)
		prob[i] /= sum;
	free(px);
	free(ie);
	free(te);
	clip_ctx_free(ctx);
	clip_model_free(m);
}

/* Checks one --json line: its image, mode, n labels highest first summing
 * to 1, each equal to ref; returns the top label (static storage). */
static const char *
check_line(const cJSON *j, const char *image, const char *const *labels,
    int n, const double *ref)
{
	static char top[64];
	double sum = 0, last = 2;

	assert_non_null(j);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j,
	    "image")), image);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j,
	    "mode")), "softmax");
	const cJSON *ls = cJSON_GetObjectItem(j, "labels");
	assert_int_equal(cJSON_GetArraySize(ls), n);
	for (int k = 0; k < n; k++) {
		const cJSON *e = cJSON_GetArrayItem(ls, k);
		const char *label = cJSON_GetStringValue(cJSON_GetObjectItem(e,
		    "label"));
		double p = cJSON_GetNumberValue(cJSON_GetObjectItem(e, "prob"));
		int i = 0;
		assert_non_null(label);
		while (i < n && strcmp(labels[i], label) != 0)
			i++;
		assert_true(i < n);
		if (fabs(p - ref[i]) > 1e-4)
			fail_msg("%s, %s: prob %g, recomputed %g", image, label,
			    p, ref[i]);
		assert_true(p <= last);
		last = p;
		sum += p;
		if (k == 0)
			snprintf(top, sizeof(top), "%s", label);
	}
	assert_true(fabs(sum - 1) < 1e-4);
	return top;
}

static void
test_json_contract(void **state)
{
	(void)state;
	const char *const labels[] = { "red", "blue", "green" };
	double ref[2][3];
	struct run r = run_cli("classify", "--model", MODEL, "--labels",
	    "red, blue,green", "--json", "--exact", "--precision", "fp32",
	    red_png, broken_png, blue_jpg, NULL);

	/* the broken image is named on stderr, the others classified, and
	 * the exit status says something failed */
	EXPECT_STATUS(r, 1);
	assert_non_null(strstr(r.err, broken_png));
	char *at = r.out;
	cJSON *l1 = tu_jsonl_next(&at), *l2 = tu_jsonl_next(&at);
	assert_non_null(l1);
	assert_non_null(l2);
	assert_null(tu_jsonl_next(&at));
	reference_probs(red_png, labels, 3, ref[0]);
	reference_probs(blue_jpg, labels, 3, ref[1]);
	/* in input order; the red disc is red */
	assert_string_equal(check_line(l1, red_png, labels, 3, ref[0]), "red");
	check_line(l2, blue_jpg, labels, 3, ref[1]);
	cJSON_Delete(l1);
	cJSON_Delete(l2);
	run_free(&r);

	/* --top 1: the best label only */
	r = run_cli("classify", "--model", MODEL, "--labels", "red,blue,green",
	    "--json", "--top", "1", red_png, NULL);
	EXPECT_STATUS(r, 0);
	cJSON *j = cJSON_Parse(r.out);
	assert_non_null(j);
	const cJSON *ls = cJSON_GetObjectItem(j, "labels");
	assert_int_equal(cJSON_GetArraySize(ls), 1);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(
	    cJSON_GetArrayItem(ls, 0), "label")), "red");
	cJSON_Delete(j);
	run_free(&r);
}

static void
test_table_templates_and_file(void **state)
{
	(void)state;
	struct run r = run_cli("classify", "--model", MODEL, "--labels-file",
	    labels_txt, "--templates", "imagenet", "--template",
	    "a {} shape on a plain background", red_png, blue_jpg, NULL);

	EXPECT_STATUS(r, 0);
	/* the header says the mode and the 81 templates; every label is
	 * listed under each image */
	assert_non_null(strstr(r.out, "softmax over 3 labels"));
	assert_non_null(strstr(r.out, "81 templates"));
	char *p1 = strstr(r.out, red_png), *p2 = strstr(r.out, blue_jpg);
	assert_non_null(p1);
	assert_non_null(p2);
	assert_true(p1 < p2);
	assert_non_null(strstr(p1, "  red\n"));
	assert_non_null(strstr(p1, "  blue\n"));
	assert_non_null(strstr(p1, "  green\n"));
	run_free(&r);
}

/* A SigLIP model says "sigmoid", and each label's probability is the
 * model's match probability of the image and "a photo of a {label}.". */
static void
test_siglip_sigmoid(void **state)
{
	(void)state;
	char model[160];
	tm_recipe rc;
	clip_model *m = NULL;
	clip_ctx *ctx = NULL;
	clip_image img;
	cdx_error err = { 0 };
	const char *const labels[] = { "cat", "dog" };

	snprintf(model, sizeof(model), "%s/siglip", dir);
	tm_recipe_siglip_tiny(&rc, TM_FAMILY_SIGLIP);
	assert_int_equal(mkdir(model, 0700), 0);
	assert_int_equal(tm_write_model(&rc, model), 0);
	struct run r = run_cli("classify", "--model", model, "--labels",
	    "cat,dog", "--json", "--exact", "--precision", "fp32", red_png,
	    NULL);
	EXPECT_STATUS(r, 0);
	cJSON *j = cJSON_Parse(r.out);
	assert_non_null(j);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j,
	    "mode")), "sigmoid");

	clip_model_params mp;
	clip_model_default_params(&mp);
	mp.precision = CLIP_PRECISION_FP32;
	CDX_ASSERT_OK(clip_model_load(model, &mp, &m, &err), err.msg);
	CDX_ASSERT_OK(clip_ctx_new(m, 1, &ctx, &err), err.msg);
	const clip_model_info *in = clip_model_get_info(m);
	int dim = in->embed_dim;
	float *px = malloc(sizeof(float) * 3 * (size_t)in->image_size *
	    (size_t)in->image_size);
	float *ie = malloc(sizeof(float) * (size_t)dim);
	float *te = malloc(sizeof(float) * (size_t)dim);
	assert_non_null(px);
	assert_non_null(ie);
	assert_non_null(te);
	CDX_ASSERT_OK(clip_image_load(red_png, NULL, &img, &err), err.msg);
	CDX_ASSERT_OK(clip_image_preprocess(&img, &in->preprocess, px, &err),
	    err.msg);
	clip_image_free(&img);
	CDX_ASSERT_OK(clip_encode_images(ctx, px, 1, ie, &err), err.msg);
	const cJSON *ls = cJSON_GetObjectItem(j, "labels");
	assert_int_equal(cJSON_GetArraySize(ls), 2);
	for (int k = 0; k < 2; k++) {
		const cJSON *e = cJSON_GetArrayItem(ls, k);
		const char *label = cJSON_GetStringValue(cJSON_GetObjectItem(e,
		    "label"));
		char text[64];
		int32_t ids[CLIP_CONTEXT_LEN];
		double want;
		assert_true(strcmp(label, labels[0]) == 0 ||
		    strcmp(label, labels[1]) == 0);
		snprintf(text, sizeof(text), "a photo of a %s.", label);
		CDX_ASSERT_OK(clip_tokenize(clip_model_tokenizer(m), text,
		    strlen(text), ids, NULL, &err), err.msg);
		CDX_ASSERT_OK(clip_encode_text(ctx, ids, 1, te, &err), err.msg);
		CDX_ASSERT_OK(clip_match_prob(in, cdx_vec_dot(ie, te, dim),
		    &want), "no sigmoid head");
		assert_float_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(e,
		    "prob")), want, 1e-4);
	}
	free(px);
	free(ie);
	free(te);
	clip_ctx_free(ctx);
	clip_model_free(m);
	cJSON_Delete(j);
	run_free(&r);
}

static void
test_usage_errors(void **state)
{
	(void)state;
	struct {
		const char *opt, *val, *says;
	} bad[] = {
		{ "--labels", "cat,dog,cat", "'cat' is given twice" },
		{ "--labels", " , ", "label 1 is empty" },
		{ "--labels", "", "no labels" },
		{ "--template", "a photo", "has no {}" },
		{ "--templates", "nonesuch", "unknown template set" },
		{ "--top", "0", "--top" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int labels = strcmp(bad[i].opt, "--labels") != 0;
		struct run r = run_cli("classify", "--model", MODEL, bad[i].opt,
		    bad[i].val, labels ? "--labels" : red_png,
		    labels ? "cat,dog" : NULL, red_png, NULL);
		EXPECT_STATUS(r, 2);
		if (!strstr(r.err, bad[i].says))
			fail_msg("%s '%s': stderr '%s' does not say '%s'",
			    bad[i].opt, bad[i].val, r.err, bad[i].says);
		assert_string_equal(r.out, "");
		run_free(&r);
	}
	/* 1,001 labels */
	size_t cap = 1001 * 8, len = 0;
	char *many = malloc(cap);
	assert_non_null(many);
	for (int i = 0; i < 1001; i++)
		len += (size_t)snprintf(many + len, cap - len, "%sl%d",
		    i ? "," : "", i);
	struct run r = run_cli("classify", "--model", MODEL, "--labels", many,
	    red_png, NULL);
	EXPECT_STATUS(r, 2);
	assert_non_null(strstr(r.err, "more than 1000 labels"));
	run_free(&r);
	free(many);
	/* no image; no labels at all */
	r = run_cli("classify", "--model", MODEL, "--labels", "a,b", NULL);
	EXPECT_STATUS(r, 2);
	run_free(&r);
	r = run_cli("classify", "--model", MODEL, red_png, NULL);
	EXPECT_STATUS(r, 2);
	run_free(&r);
	/* a model that does not load */
	r = run_cli("classify", "--model", dir, "--labels", "a,b", red_png,
	    NULL);
	EXPECT_STATUS(r, 3);
	run_free(&r);
}

int
main(int argc, char **argv)
{
	char self[PATH_MAX];
	static const unsigned char red[3] = { 220, 30, 30 };
	static const unsigned char white[3] = { 245, 245, 245 };
	(void)argc;
	snprintf(self, sizeof(self), "%s", argv[0]);
	snprintf(clipdex_bin, sizeof(clipdex_bin), "%s/../clipdex",
	    dirname(self));
	if (access(clipdex_bin, X_OK) != 0) {
		fprintf(stderr, "%s: cannot run %s\n", argv[0], clipdex_bin);
		return 1;
	}
	if (mkdtemp(dir) == NULL)
		return 1;
	snprintf(red_png, sizeof(red_png), "%s/red.png", dir);
	snprintf(blue_jpg, sizeof(blue_jpg), "%s/stripes.jpg", dir);
	snprintf(broken_png, sizeof(broken_png), "%s/broken.png", dir);
	snprintf(labels_txt, sizeof(labels_txt), "%s/labels.txt", dir);
	write_disc_png(red_png, 96, 96, red, white);
	tu_write_stripes_jpeg(blue_jpg, 80, 64, 3);
	static const char junk[] = "\x89PNG\r\n\x1a\nnot really";
	static const char lines[] = "# colours\nred\n\nblue\n  green  \n";
	if (tu_write_file(broken_png, junk, sizeof(junk) - 1) != 0 ||
	    tu_write_file(labels_txt, lines, sizeof(lines) - 1) != 0)
		return 1;

	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_contract),
		cmocka_unit_test(test_table_templates_and_file),
		cmocka_unit_test(test_siglip_sigmoid),
		cmocka_unit_test(test_usage_errors),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	tm_rmtree(dir);
	return failed;
}
