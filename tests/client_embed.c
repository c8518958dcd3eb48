/*
 * The offline `clipdex embed` and `clipdex tokenize` commands: their
 * output (one JSON line per input, in order) equals the library's, bad
 * inputs give a clear error and a non-zero exit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/client_run.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "encoder/clip.h"
#include "tests/testmodel.h"
#include "tests/testutil.h"

static char dir[64], bin[300];

static int
setup(void **state)
{
	tm_recipe r;
	const char *b = getenv("BUILD");
	(void)state;
	snprintf(bin, sizeof(bin), "%s/clipdex", b ? b : "build");
	tm_recipe_tiny(&r);
	snprintf(dir, sizeof(dir), "/tmp/cdx-embed-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	return tm_write_model(&r, dir);
}

static int
teardown(void **state)
{
	(void)state;
	tm_rmtree(dir);
	return 0;
}

/* Runs a command line; returns the exit status, stdout in out. */
static int
run(const char *args, char *out, size_t cap)
{
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "%s %s 2>/tmp/cdx-embed-stderr", bin, args);
	return tu_popen_read(cmd, out, cap);
}

static void
library_embedding_at(const char *image, const char *text, int exact,
    int precision, float *e)
{
	clip_model *m = NULL;
	clip_ctx *ctx = NULL;
	clip_model_params mp;
	cdx_error err;
	clip_model_default_params(&mp);
	mp.precision = precision;
	CDX_ASSERT_OK(clip_model_load(dir, &mp, &m, &err), err.msg);
	CDX_ASSERT_OK(clip_ctx_new(m, 1, &ctx, &err), err.msg);
	const clip_model_info *info = clip_model_get_info(m);
	if (image != NULL) {
		const clip_preprocess_cfg *pp = &info->preprocess;
		clip_decode_opts o = {
		    .min_short = exact ? 0 : clip_preprocess_min_short(pp) };
		clip_image img;
		float *px = malloc(sizeof(float) * 3 * (size_t)pp->crop_width *
		    pp->crop_height);
		CDX_ASSERT_OK(clip_image_load(image, &o, &img, &err), err.msg);
		CDX_ASSERT_OK(clip_image_preprocess(&img, pp, px, &err),
		    err.msg);
		clip_image_free(&img);
		CDX_ASSERT_OK(clip_encode_images(ctx, px, 1, e, &err), err.msg);
		free(px);
	} else {
		int32_t ids[CLIP_CONTEXT_LEN];
		CDX_ASSERT_OK(clip_tokenize(clip_model_tokenizer(m), text,
		    strlen(text), ids, NULL, &err), err.msg);
		CDX_ASSERT_OK(clip_encode_text(ctx, ids, 1, e, &err), err.msg);
	}
	clip_ctx_free(ctx);
	clip_model_free(m);
}

static void
library_embedding(const char *image, const char *text, int exact, float *e)
{
	library_embedding_at(image, text, exact, CLIP_PRECISION_AUTO, e);
}

static void
check_line(const char *line, const float *want, int dim)
{
	cJSON *j = cJSON_Parse(line);
	assert_non_null(j);
	cJSON *e = cJSON_GetObjectItem(j, "embedding");
	assert_int_equal(cJSON_GetArraySize(e), dim);
	for (int i = 0; i < dim; i++)
		assert_true(fabs(cJSON_GetArrayItem(e, i)->valuedouble - want[i]) <
		    1e-6);
	cJSON_Delete(j);
}

static void
test_embed_matches_library(void **state)
{
	char args[1024], out[65536];
	float e[3][16];
	const char *img = "tests/fixtures/e2e/photo.jpg";
	(void)state;

	library_embedding(img, NULL, 1, e[0]);
	library_embedding(img, NULL, 0, e[1]);
	library_embedding(NULL, "a dog on a beach", 0, e[2]);

	snprintf(args, sizeof(args), "embed --model %s --exact --image %s", dir,
	    img);
	assert_int_equal(run(args, out, sizeof(out)), 0);
	check_line(out, e[0], 16);
	snprintf(args, sizeof(args), "embed --model %s --image %s --text "
	    "'a dog on a beach'", dir, img);
	assert_int_equal(run(args, out, sizeof(out)), 0);
	char *nl = strchr(out, '\n');
	assert_non_null(nl);
	*nl = '\0';
	check_line(out, e[1], 16);
	check_line(nl + 1, e[2], 16);
}

static void
test_embed_errors(void **state)
{
	char args[1024], out[4096];
	(void)state;

	/* a corrupt image: error on stderr, exit 1, the good one still out */
	snprintf(args, sizeof(args), "embed --model %s --image "
	    "tests/fixtures/images/trunc.jpg --image "
	    "tests/fixtures/images/j_base.jpg", dir);
	assert_int_equal(run(args, out, sizeof(out)), 1);
	assert_non_null(strstr(out, "\"embedding\""));
	assert_null(strchr(strchr(out, '\n') + 1, '\n'));   /* one line */
	FILE *f = fopen("/tmp/cdx-embed-stderr", "r");
	char err[1024] = "";
	assert_non_null(f);
	if (fread(err, 1, sizeof(err) - 1, f)) {}
	fclose(f);
	/* the path is named once: "clipdex: PATH: reason" */
	const char *at = strstr(err, "trunc.jpg");
	assert_non_null(at);
	if (strstr(at + 1, "trunc.jpg") != NULL)
		fail_msg("the path is named twice: %s", err);
	/* a missing file too */
	snprintf(args, sizeof(args), "embed --model %s --image "
	    "/nonexistent/missing.jpg", dir);
	assert_int_equal(run(args, out, sizeof(out)), 1);
	f = fopen("/tmp/cdx-embed-stderr", "r");
	assert_non_null(f);
	memset(err, 0, sizeof(err));
	if (fread(err, 1, sizeof(err) - 1, f)) {}
	fclose(f);
	at = strstr(err, "missing.jpg");
	assert_non_null(at);
	if (strstr(at + 1, "missing.jpg") != NULL)
		fail_msg("the path is named twice: %s", err);
	/* threads: every available core by default, --threads N when given */
	cpu_set_t cpus;
	char want[64];
	assert_int_equal(sched_getaffinity(0, sizeof(cpus), &cpus), 0);
	int n = CPU_COUNT(&cpus);
	snprintf(want, sizeof(want), "clipdex: %d thread%s\n", n,
	    n == 1 ? "" : "s");
	snprintf(args, sizeof(args), "embed --model %s --text x", dir);
	assert_int_equal(run(args, out, sizeof(out)), 0);
	f = fopen("/tmp/cdx-embed-stderr", "r");
	assert_non_null(f);
	memset(err, 0, sizeof(err));
	if (fread(err, 1, sizeof(err) - 1, f)) {}
	fclose(f);
	if (strstr(err, want) == NULL)
		fail_msg("wanted \"%s\" in: %s", want, err);
	snprintf(args, sizeof(args), "embed --model %s --threads 1 --text x",
	    dir);
	assert_int_equal(run(args, out, sizeof(out)), 0);
	f = fopen("/tmp/cdx-embed-stderr", "r");
	assert_non_null(f);
	memset(err, 0, sizeof(err));
	if (fread(err, 1, sizeof(err) - 1, f)) {}
	fclose(f);
	assert_non_null(strstr(err, "clipdex: 1 thread\n"));
	/* no model: exit 3 with the reason */
	assert_int_equal(run("embed --model /nonexistent --text x", out,
	    sizeof(out)), 3);
	/* usage: exit 2 */
	assert_int_equal(run("embed --text x", out, sizeof(out)), 2);
}

static char *
stderr_text(void)
{
	static char err[4096];
	FILE *f = fopen("/tmp/cdx-embed-stderr", "r");
	assert_non_null(f);
	size_t n = fread(err, 1, sizeof(err) - 1, f);
	err[n] = '\0';
	fclose(f);
	return err;
}

static void
test_embed_precision(void **state)
{
	char args[1024], out[65536];
	float e[16];
	const char *a = "tests/fixtures/e2e/photo.jpg";
	const char *b = "tests/fixtures/images/j_base.jpg";
	(void)state;

	/* --precision: the library's embedding at that precision, and what
	 * runs named on stderr */
	library_embedding_at(NULL, "a dog on a beach", 0, CLIP_PRECISION_INT8,
	    e);
	snprintf(args, sizeof(args), "embed --model %s --precision int8 "
	    "--text 'a dog on a beach'", dir);
	assert_int_equal(run(args, out, sizeof(out)), 0);
	check_line(out, e, 16);
	assert_non_null(strstr(stderr_text(), "precision int8 (oneDNN"));
	snprintf(args, sizeof(args), "embed --model %s --precision fp16 "
	    "--text x", dir);
	assert_int_equal(run(args, out, sizeof(out)), 2);

	/* --compare-precision: a line per input, the overlap per text, a
	 * summary */
	snprintf(args, sizeof(args), "embed --model %s --compare-precision "
	    "bf16 --image %s --image %s --text 'a dog'", dir, a, b);
	assert_int_equal(run(args, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "bf16 against fp32"));
	char *img_a = strstr(out, a), *txt = strstr(out, "a dog");
	assert_non_null(img_a);
	assert_non_null(strstr(out, b));
	assert_non_null(txt);
	assert_non_null(strstr(out, " 2/2 "));
	char *sum = strstr(out, "3 inputs: worst cosine ");
	assert_non_null(sum);
	double worst = atof(sum + strlen("3 inputs: worst cosine "));
	assert_true(worst > 0.999 && worst <= 1.0);
}

static void
test_tokenize_known_ids(void **state)
{
	char out[4096];
	(void)state;
	assert_int_equal(run("tokenize --text 'a photo of a cat' --text 'A Dog!!'",
	    out, sizeof(out)), 0);
	assert_int_equal(strncmp(out, "[49406,320,1125,539,320,2368,49407,49407",
	    40), 0);
	char *second = strchr(out, '\n') + 1;
	assert_int_equal(strncmp(second, "[49406,320,1929,748,49407,49407", 31),
	    0);
	/* 77 ids per line */
	int commas = 0;
	for (char *p = out; *p != '\n'; p++)
		commas += *p == ',';
	assert_int_equal(commas, 76);
	assert_int_equal(run("tokenize --text \"$(printf '\\377')\"", out, sizeof(out)), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_embed_matches_library),
		cmocka_unit_test(test_embed_errors),
		cmocka_unit_test(test_embed_precision),
		cmocka_unit_test(test_tokenize_known_ids),
	};
	return CLIENT_RUN_TESTS(tests, setup, teardown);
}
