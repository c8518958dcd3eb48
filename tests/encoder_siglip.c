/*
 * encoder_siglip.c - the SigLIP and SigLIP2 encoders against an
 * independent PyTorch reference (tools/ref_siglip.py, written from
 * transformers' modeling_siglip.py; fixtures in tests/fixtures/siglip/).
 * For each recipe the model folder is written by tests/testmodel.h
 * (weights byte-identical to the script's, checked by sha256; tokenizer
 * files from tests/fixtures/spm/), loaded and run: embeddings, match
 * probabilities, and the folders a loader must refuse.
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
#include <unistd.h>

#include "encoder/clip.h"
#include "tests/testmodel.h"
#include "tests/testutil.h"

#define FIXTURES "tests/fixtures/siglip/"

/* ---- helpers ------------------------------------------------------------ */

/* The tm_recipe that tools/ref_siglip.py's recipe describes. */
static void
recipe_from_json(const cJSON *fx, tm_recipe *r)
{
	const cJSON *rj = tu_jget(fx, "recipe");
	memset(r, 0, sizeof(*r));
	const char *fam = tu_jget(rj, "family")->valuestring;
	r->family = strcmp(fam, "siglip2") == 0 ? TM_FAMILY_SIGLIP2 :
	    TM_FAMILY_SIGLIP;
	r->seed = (uint64_t)tu_jint(rj, "seed");
	r->dtype = tu_jget(rj, "dtype")->valuestring;
	r->position_ids = cJSON_IsTrue(tu_jget(rj, "position_ids"));
	const cJSON *ps = tu_jget(rj, "projection_size");
	r->projection_dim = cJSON_IsNull(ps) ? 0 : ps->valueint;
	r->vocab_size = tu_jint(fx, "vocab_size");
	r->max_positions = tu_jint(rj, "max_positions");
	assert_int_equal(tm_tower_from_json(tu_jget(rj, "text"), &r->text), 0);
	assert_int_equal(tm_tower_from_json(tu_jget(rj, "vision"), &r->vision),
	    0);
	r->logit_scale = (float)tu_jnum(rj, "logit_scale");
	r->logit_bias = (float)tu_jnum(rj, "logit_bias");
	const cJSON *rs = tu_jget(rj, "resample");
	r->resample = cJSON_IsNull(rs) ? 0 : rs->valueint;
}

static void
require_tokenizer_files(const tm_recipe *r)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", tm_spm_dir(r),
	    r->family == TM_FAMILY_SIGLIP2 ? "tokenizer.model" :
	    "spiece.model");
	if (access(path, R_OK) != 0)
		fail_msg("%s is missing (the SentencePiece test tokenizers)", path);
}

static double
dot_json(const cJSON *a, const cJSON *b, int n)
{
	double s = 0;
	for (int i = 0; i < n; i++)
		s += cJSON_GetArrayItem(a, i)->valuedouble *
		    cJSON_GetArrayItem(b, i)->valuedouble;
	return s;
}

static char *
mkroot(void)
{
	char *root = strdup("/tmp/cdx-encoder-siglip-XXXXXX");
	assert_non_null(root);
	assert_non_null(mkdtemp(root));
	return root;
}

/* Writes recipe r's folder at root/name (tm_write_model) and returns its
 * path (the caller frees it). */
static char *
write_folder(const char *root, const char *name, const tm_recipe *r)
{
	char *dir = malloc(700);
	assert_non_null(dir);
	snprintf(dir, 700, "%s/%s", root, name);
	assert_int_equal(mkdir(dir, 0755), 0);
	require_tokenizer_files(r);
	if (tm_write_model(r, dir) != 0)
		fail_msg("tm_write_model %s failed", dir);
	return dir;
}

/* Loading dir fails with rc, and the message contains each of the NULL-
 * terminated strings; *out is untouched. */
static void
expect_load_error(const char *dir, int rc, ...)
{
	clip_model *m = (clip_model *)(uintptr_t)0x1;
	cdx_error err = {0};
	int got = clip_model_load(dir, NULL, &m, &err);
	if (got != rc)
		fail_msg("%s: clip_model_load returned %d (%s), want %d", dir, got,
		    err.msg, rc);
	assert_true(m == (clip_model *)(uintptr_t)0x1);
	va_list ap;
	va_start(ap, rc);
	const char *want;
	while ((want = va_arg(ap, const char *)) != NULL)
		if (strstr(err.msg, want) == NULL)
			fail_msg("%s: message \"%s\" does not name \"%s\"", dir,
			    err.msg, want);
	va_end(ap);
	print_message("  refused: %s\n", err.msg);
}

/* ---- the reference check ---------------------------------------------- */

static void
check_recipe(const char *recipe_name)
{
	char path[512];
	snprintf(path, sizeof(path), FIXTURES "%s.json", recipe_name);
	cJSON *fx = tu_read_json(path);
	const cJSON *rj = tu_jget(fx, "recipe");
	tm_recipe r;
	recipe_from_json(fx, &r);
	int ctx_len = r.max_positions;

	/* The folder, written by the C writer; its config.json and
	 * preprocessor_config.json mean what the script's do. */
	char *root = mkroot();
	char *dir = write_folder(root, recipe_name, &r);
	const cJSON *cfg = tu_jget(fx, "config");
	const cJSON *pp = tu_jget(fx, "preprocessor_config");
	if (strcmp(tu_jget(rj, "layout")->valuestring, "full") == 0) {
		snprintf(path, sizeof(path), "%s/config.json", dir);
		cJSON *mine = tu_read_json(path);
		if (!cJSON_Compare(mine, cfg, 1))
			fail_msg("testmodel.h's config.json differs from the "
			    "fixture's");
		cJSON_Delete(mine);
	} else {
		tu_write_json(dir, "config.json", cfg);  /* the sparse layout */
	}
	snprintf(path, sizeof(path), "%s/preprocessor_config.json", dir);
	if (cJSON_IsNull(pp)) {
		assert_int_equal(access(path, F_OK), -1);
	} else {
		cJSON *mine = tu_read_json(path);
		if (!cJSON_Compare(mine, pp, 1))
			fail_msg("testmodel.h's preprocessor_config.json differs "
			    "from the fixture's");
		cJSON_Delete(mine);
	}

	/* The same bytes as the Python writer. */
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	uint64_t want_hash = tu_check_weights(path, fx);

	clip_model *m = tu_model_load_fp32(dir);
	cdx_error err = {0};

	/* What the folder says, defaults included. */
	const clip_model_info *in = clip_model_get_info(m);
	tu_check_model_info(in, &r, recipe_name, want_hash);
	assert_int_equal(in->family, r.family == TM_FAMILY_SIGLIP2 ?
	    CLIP_FAMILY_SIGLIP2 : CLIP_FAMILY_SIGLIP);
	assert_string_equal(clip_family_name(in->family),
	    r.family == TM_FAMILY_SIGLIP2 ? "siglip2" : "siglip");
	assert_int_equal(in->embed_dim, r.vision.width);
	assert_int_equal(in->context_len, ctx_len);
	assert_int_equal(in->act_text, CLIP_ACT_GELU_TANH);
	assert_int_equal(in->act_vision, CLIP_ACT_GELU_TANH);
	assert_true(in->has_sigmoid);
	assert_true(in->logit_scale == (float)tu_jnum(fx, "logit_scale"));
	assert_true(in->logit_bias == (float)tu_jnum(fx, "logit_bias"));
	const clip_preprocess_cfg *pc = &in->preprocess;
	assert_int_equal(pc->mode, CLIP_RESIZE_SQUASH);
	assert_int_equal(pc->resample, r.resample ? r.resample :
	    CLIP_RESAMPLE_BICUBIC);
	assert_int_equal(pc->crop_width, r.vision.image_size);
	assert_int_equal(pc->crop_height, r.vision.image_size);
	for (int c = 0; c < 3; c++) {
		assert_true(pc->mean[c] == 0.5f);
		assert_true(pc->std[c] == 0.5f);
	}
	const clip_tokenizer *tok = clip_model_tokenizer(m);
	assert_non_null(tok);
	assert_int_equal(clip_tokenizer_kind(tok), r.family ==
	    TM_FAMILY_SIGLIP2 ? CLIP_TOKENIZER_GEMMA : CLIP_TOKENIZER_SIGLIP);
	assert_int_equal(clip_tokenizer_context_len(tok), ctx_len);
	assert_true(clip_tokenizer_vocab_size(tok) <= r.vocab_size);

	int e = in->embed_dim;
	clip_ctx *ctx = NULL;
	if (clip_ctx_new(m, 3, &ctx, &err) != 0)
		fail_msg("clip_ctx_new: %s", err.msg);

	/* Texts (stride context_len), then images: the batch, then one by
	 * one. */
	tu_ref_batch tb, ib;
	tu_check_ref_texts(ctx, fx, recipe_name, ctx_len, e, &tb);
	tu_check_ref_images(ctx, fx, recipe_name, &r, e, &ib);
	const cJSON *te_j = tu_jget(fx, "text_embeddings");
	const cJSON *ie_j = tu_jget(fx, "image_embeddings");
	float *one = calloc((size_t)e, sizeof(float));
	assert_non_null(one);

	/* The bounds above are the issue's; the float32 graph is in fact
	 * within about 1e-11 of the float64 reference.  1e-9 still leaves a
	 * wide margin and catches what the loose bounds cannot: erf GELU in
	 * place of gelu_pytorch_tanh moves these cosines by 1e-8 to 5e-8. */
	if (!(1 - tb.worst <= 1e-9 && 1 - ib.worst <= 1e-9))
		fail_msg("%s: 1 - cosine text %.2e, images %.2e: over 1e-9, not the "
		    "reference's graph (activation? layer norm?)", recipe_name,
		    1 - tb.worst, 1 - ib.worst);

	/* Match probabilities: from our embeddings within 1e-5 of the
	 * reference's; from the reference's cosine exactly (the stored
	 * logit_scale and logit_bias); clip_match_cos inverts. */
	const cJSON *prob_j = tu_jget(fx, "prob");
	double pmax = 0, pref_max = 0, cos_back_max = 0;
	for (int i = 0; i < tb.n; i++) {
		for (int j = 0; j < ib.n; j++) {
			double want = cJSON_GetArrayItem(cJSON_GetArrayItem(prob_j,
			    i), j)->valuedouble;
			double c = 0, p, cref, pr, cb;
			for (int k = 0; k < e; k++)
				c += (double)tb.emb[i * e + k] *
				    ib.emb[j * e + k];
			assert_int_equal(clip_match_prob(in, c, &p), 0);
			pmax = fmax(pmax, fabs(p - want));
			if (!(fabs(p - want) <= 1e-5))
				fail_msg("%s: prob(text %d, image %d) %.9g, reference "
				    "%.9g", recipe_name, i, j, p, want);
			cref = dot_json(cJSON_GetArrayItem(te_j, i),
			    cJSON_GetArrayItem(ie_j, j), e);
			assert_int_equal(clip_match_prob(in, cref, &pr), 0);
			pref_max = fmax(pref_max, fabs(pr - want) / want);
			assert_true(fabs(pr - want) <= 1e-9 * want);
			if (want > 1e-300 && want < 1 - 1e-12) {
				assert_int_equal(clip_match_cos(in, want, &cb), 0);
				cos_back_max = fmax(cos_back_max, fabs(cb - cref));
				assert_true(fabs(cb - cref) < 1e-9);
			}
		}
	}

	print_message("%s: 1 - cosine to the reference at worst: text %.2e, "
	    "images %.2e; prob off by %.2e at most (%.1e relative from the "
	    "reference cosine, clip_match_cos back within %.1e)\n",
	    recipe_name, 1 - tb.worst, 1 - ib.worst, pmax, pref_max,
	    cos_back_max);

	/* Attention is not causal: a change after </s>, in the padding,
	 * changes the pooled (last) position. */
	int32_t *alt = malloc((size_t)ctx_len * sizeof(int32_t));
	assert_non_null(alt);
	memcpy(alt, tb.ids + 1 * ctx_len, (size_t)ctx_len * sizeof(int32_t));
	alt[ctx_len - 2] = 5;
	CDX_ASSERT_OK(clip_encode_text(ctx, alt, 1, one, &err), err.msg);
	double d = 0;
	for (int k = 0; k < e; k++)
		d += (double)one[k] * tb.emb[1 * e + k];
	if (!(d < 0.99999))
		fail_msg("%s: a token in the padding changed nothing (cos %f)",
		    recipe_name, d);
	/* No end token is required (SigLIP computes every position). */
	for (int j = 0; j < ctx_len; j++)
		alt[j] = 7;
	CDX_ASSERT_OK(clip_encode_text(ctx, alt, 1, one, &err), err.msg);

	/* Misuse is refused with a message. */
	assert_int_equal(clip_encode_images(ctx, ib.px, 4, ib.emb, &err),
	    CDX_EINVAL);
	assert_non_null(strstr(err.msg, "batch"));
	alt[3] = r.vocab_size;               /* outside the vocabulary */
	assert_int_equal(clip_encode_text(ctx, alt, 1, one, &err), CDX_EINVAL);
	assert_non_null(strstr(err.msg, "vocabulary"));
	alt[3] = -1;
	assert_int_equal(clip_encode_text(ctx, alt, 1, one, &err), CDX_EINVAL);

	free(alt);
	tu_ref_batch_free(&ib);
	tu_ref_batch_free(&tb);
	free(one);
	clip_ctx_free(ctx);
	clip_model_free(m);
	cJSON_Delete(fx);
	tm_rmtree(root);
	free(dir);
	free(root);
}

static void
test_siglip_b16_224_f32(void **state)
{
	(void)state;
	check_recipe("siglip_b16_224_f32");
}

static void
test_siglip_b16_384_f16_ctx16(void **state)
{
	(void)state;
	check_recipe("siglip_b16_384_f16_ctx16");
}

static void
test_siglip_sparse_bf16_224(void **state)
{
	(void)state;
	check_recipe("siglip_sparse_bf16_224");
}

static void
test_siglip2_b16_256_f32(void **state)
{
	(void)state;
	check_recipe("siglip2_b16_256_f32");
}

/* ---- the helpers themselves ------------------------------------------- */

static void
test_sha256_known(void **state)
{
	(void)state;
	char hex[65];
	tu_sha256_hex("abc", 3, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223"
	    "b00361a396177a9cb410ff61f20015ad");
	tu_sha256_hex("", 0, hex);
	assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb924"
	    "27ae41e4649b934ca495991b7852b855");
	/* 56 bytes: the padding takes a second block */
	tu_sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
	    56, hex);
	assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039"
	    "a33ce45964ff2167f6ecedd419db06c1");
}

/* clip_match_prob / clip_match_cos on a hand-made info: the formula, the
 * inverse, and what they refuse. */
static void
test_match_prob_formula(void **state)
{
	(void)state;
	clip_model_info in;
	memset(&in, 0, sizeof(in));
	in.family = CLIP_FAMILY_SIGLIP;
	in.has_sigmoid = 1;
	in.logit_scale = 4.7659f;
	in.logit_bias = -12.9f;
	double p, c;
	static const double coss[] = {-1, -0.2, 0, 0.05, 0.1101, 0.2, 1};
	for (size_t i = 0; i < sizeof(coss) / sizeof(coss[0]); i++) {
		double want = 1 / (1 + exp(-(exp((double)in.logit_scale) *
		    coss[i] + (double)in.logit_bias)));
		assert_int_equal(clip_match_prob(&in, coss[i], &p), 0);
		assert_true(fabs(p - want) <= 1e-12 * fmax(want, 1e-300) ||
		    fabs(p - want) < 1e-300);
		if (p > 0 && p < 1) {
			assert_int_equal(clip_match_cos(&in, p, &c), 0);
			assert_true(fabs(c - coss[i]) < 1e-9);
		}
	}
	assert_int_equal(clip_match_cos(&in, 0.5, &c), 0);
	assert_true(fabs(c - 12.9 / exp(4.7659)) < 1e-6);
	c = 42;
	static const double bad[] = {0, 1, -0.1, 1.5, NAN};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(clip_match_cos(&in, bad[i], &c), CDX_EINVAL);
	assert_true(c == 42);
	/* CLIP: no sigmoid head, no probability */
	in.family = CLIP_FAMILY_CLIP;
	in.has_sigmoid = 0;
	p = 42;
	assert_int_equal(clip_match_prob(&in, 0.3, &p), CDX_EINVAL);
	assert_int_equal(clip_match_cos(&in, 0.5, &c), CDX_EINVAL);
	assert_true(p == 42 && c == 42);
}

/* tm_recipe_siglip_tiny folders (what other modules' tests use) load and
 * encode, for both families; different inputs differ. */
static void
check_tiny(int family)
{
	tm_recipe r;
	tm_recipe_siglip_tiny(&r, family);
	char *root = mkroot();
	char *dir = write_folder(root, "tiny", &r);
	clip_model *m = NULL;
	cdx_error err = {0};
	if (clip_model_load(dir, NULL, &m, &err) != 0)
		fail_msg("clip_model_load: %s", err.msg);
	const clip_model_info *in = clip_model_get_info(m);
	assert_int_equal(in->family, family == TM_FAMILY_SIGLIP2 ?
	    CLIP_FAMILY_SIGLIP2 : CLIP_FAMILY_SIGLIP);
	assert_int_equal(in->embed_dim, 32);
	assert_int_equal(in->context_len, 64);
	assert_int_equal(in->preprocess.resample, r.resample);
	clip_ctx *ctx;
	CDX_ASSERT_OK(clip_ctx_new(m, 2, &ctx, &err), err.msg);
	/* Real texts through the model's own tokenizer. */
	const clip_tokenizer *tok = clip_model_tokenizer(m);
	int32_t ids[64 + CLIP_CONTEXT_LEN];  /* room for any tokenizer */
	int n = 0;
	CDX_ASSERT_OK(clip_tokenize(tok, "a red circle", 12, ids, &n, &err),
	    err.msg);
	assert_true(n >= 2 && n <= 64);
	CDX_ASSERT_OK(clip_tokenize(tok, "two blue stars", 14, ids + 64, &n,
	    &err), err.msg);
	tu_check_tiny(ctx, ids, 32);
	clip_ctx_free(ctx);
	clip_model_free(m);
	tm_rmtree(root);
	free(dir);
	free(root);
}

static void
test_tiny_siglip(void **state)
{
	(void)state;
	check_tiny(TM_FAMILY_SIGLIP);
}

static void
test_tiny_siglip2(void **state)
{
	(void)state;
	check_tiny(TM_FAMILY_SIGLIP2);
}

/* An image size that is no multiple of the patch (as siglip-so400m-
 * patch14-384's 384 / 14): the convolution reads (size // patch)^2
 * patches and never the remainder, as PyTorch's "valid" Conv2d does. */
static void
test_patch_remainder(void **state)
{
	(void)state;
	tm_recipe r;
	tm_recipe_siglip_tiny(&r, TM_FAMILY_SIGLIP);
	r.vision.image_size = 72;           /* 4 x 4 patches of 16, 8 left */
	char dir[] = "/tmp/cdx-siglip-rem-XXXXXX";
	assert_non_null(mkdtemp(dir));
	assert_int_equal(tm_write_model(&r, dir), 0);
	clip_model *m = NULL;
	clip_ctx *ctx = NULL;
	cdx_error err;
	if (clip_model_load(dir, NULL, &m, &err) != 0)
		fail_msg("clip_model_load: %s", err.msg);
	assert_int_equal(clip_model_get_info(m)->image_size, 72);
	CDX_ASSERT_OK(clip_ctx_new(m, 2, &ctx, &err), err.msg);
	static float px[2][3 * 72 * 72];
	assert_int_equal(tm_pixels(5, 0, 72, 4, 1.5f, 0.5f, px[0]), 0);
	memcpy(px[1], px[0], sizeof(px[0]));
	for (int c = 0; c < 3; c++)
		for (int y = 0; y < 72; y++)
			for (int x = 0; x < 72; x++)
				if (x >= 64 || y >= 64)
					px[1][(c * 72 + y) * 72 + x] = 3.0f;
	float e[2][64];
	/* one at a time: the same rows through the same kernels */
	CDX_ASSERT_OK(clip_encode_images(ctx, px[0], 1, e[0], &err), err.msg);
	CDX_ASSERT_OK(clip_encode_images(ctx, px[1], 1, e[1], &err), err.msg);
	int dim = clip_model_get_info(m)->embed_dim;
	for (int i = 0; i < dim; i++)
		assert_true(e[0][i] == e[1][i]);
	clip_ctx_free(ctx);
	clip_model_free(m);
	tm_rmtree(dir);
}

/* ---- folders that must be refused ------------------------------------- */

/* Rewrites dir/config.json with edit() applied. */
static void
edit_config(const char *dir, void (*edit)(cJSON *root))
{
	char path[800];
	snprintf(path, sizeof(path), "%s/config.json", dir);
	cJSON *root = tu_read_json(path);
	edit(root);
	tu_write_json(dir, "config.json", root);
	cJSON_Delete(root);
}

static void
set_model_type_blip(cJSON *root)
{
	cJSON_ReplaceItemInObjectCaseSensitive(root, "model_type",
	    cJSON_CreateString("blip"));
}

static void
set_model_type_siglip2(cJSON *root)
{
	cJSON_ReplaceItemInObjectCaseSensitive(root, "model_type",
	    cJSON_CreateString("siglip2"));
	cJSON_ReplaceItemInObjectCaseSensitive(root, "architectures",
	    cJSON_CreateStringArray((const char *[]){"Siglip2Model"}, 1));
}

static void
set_no_vision_head(cJSON *root)
{
	cJSON_AddBoolToObject(cJSON_GetObjectItem(root, "vision_config"),
	    "vision_use_head", 0);
}

static void
test_bad_model_type(void **state)
{
	(void)state;
	tm_recipe r;
	tm_recipe_siglip_tiny(&r, TM_FAMILY_SIGLIP);
	char *root = mkroot();
	char *dir = write_folder(root, "blip", &r);
	edit_config(dir, set_model_type_blip);
	expect_load_error(dir, CDX_EFORMAT, "config.json", "model_type",
	    "blip", NULL);
	free(dir);
	dir = write_folder(root, "naflex", &r);
	edit_config(dir, set_model_type_siglip2);
	expect_load_error(dir, CDX_EFORMAT, "config.json", "siglip2", "NaFlex",
	    NULL);
	free(dir);
	dir = write_folder(root, "nohead", &r);
	edit_config(dir, set_no_vision_head);
	expect_load_error(dir, CDX_EFORMAT, "config.json", "vision_use_head",
	    NULL);
	free(dir);
	tm_rmtree(root);
	free(root);
}

/* No tokenizer model in the folder; a tokenizer_config.json that
 * contradicts config.json. */
static void
test_bad_tokenizer(void **state)
{
	(void)state;
	static const struct {
		int family;
		const char *file;
	} cases[] = {
		{TM_FAMILY_SIGLIP, "spiece.model"},
		{TM_FAMILY_SIGLIP2, "tokenizer.model"},
	};
	char *root = mkroot();
	for (size_t i = 0; i < 2; i++) {
		tm_recipe r;
		tm_recipe_siglip_tiny(&r, cases[i].family);
		char name[32], path[800];
		snprintf(name, sizeof(name), "m%zu", i);
		char *dir = write_folder(root, name, &r);
		snprintf(path, sizeof(path), "%s/%s", dir, cases[i].file);
		assert_int_equal(unlink(path), 0);
		/* neither spiece.model nor tokenizer.model is left */
		expect_load_error(dir, CDX_ENOTFOUND, ".model", NULL);
		free(dir);
	}
	/* 16 text positions, but tokenizer_config.json pads to 64 */
	tm_recipe r;
	tm_recipe_siglip_tiny(&r, TM_FAMILY_SIGLIP);
	r.max_positions = 16;
	char *dir = write_folder(root, "ctx", &r);
	char from[600], to[800];
	snprintf(from, sizeof(from), "%s/tokenizer_config.json",
	    tm_spm_dir(&r));
	snprintf(to, sizeof(to), "%s/tokenizer_config.json", dir);
	assert_int_equal(tm_copy_file(from, to), 0);
	expect_load_error(dir, CDX_EFORMAT, "tokenizer_config.json",
	    "model_max_length", NULL);
	free(dir);
	tm_rmtree(root);
	free(root);
}

/* The tokenizer's vocabulary does not fit the token table; the config's
 * vocab_size disagrees with the table. */
static void
test_vocab_mismatch(void **state)
{
	(void)state;
	for (int family = TM_FAMILY_SIGLIP; family <= TM_FAMILY_SIGLIP2;
	    family++) {
		tm_recipe r;
		tm_recipe_siglip_tiny(&r, family);
		char *root = mkroot();
		char *dir = write_folder(root, "ok", &r);
		clip_tokenizer *tok = NULL;
		cdx_error err = {0};
		if (clip_tokenizer_load_sentencepiece(dir, 64, &tok, &err) != 0)
			fail_msg("clip_tokenizer_load_sentencepiece: %s", err.msg);
		int n = clip_tokenizer_vocab_size(tok);
		clip_tokenizer_free(tok);
		assert_true(n > 8 && n <= r.vocab_size);
		free(dir);

		r.vocab_size = n - 1;       /* config and table: one row short */
		dir = write_folder(root, "small", &r);
		expect_load_error(dir, CDX_EFORMAT, "vocab", NULL);
		free(dir);

		/* config.json says 4096, the table has 2048 rows */
		tm_recipe_siglip_tiny(&r, family);
		dir = write_folder(root, "table", &r);
		r.vocab_size = 4096;
		assert_int_equal(tm_write_config(&r, dir), 0);
		expect_load_error(dir, CDX_EFORMAT,
		    "text_model.embeddings.token_embedding.weight", NULL);
		free(dir);
		tm_rmtree(root);
		free(root);
	}
}

/* Tensors of the SigLIP graph left out of the file, one at a time. */
static void
test_missing_tensors(void **state)
{
	(void)state;
	static const char *const names[] = {
		"vision_model.head.probe",
		"vision_model.head.attention.in_proj_weight",
		"vision_model.head.attention.out_proj.bias",
		"vision_model.head.layernorm.weight",
		"vision_model.head.mlp.fc2.weight",
		"vision_model.embeddings.patch_embedding.bias",
		"text_model.head.weight",
		"text_model.head.bias",
		"logit_scale",
		"logit_bias",
	};
	char *root = mkroot();
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		tm_recipe r;
		tm_recipe_siglip_tiny(&r, TM_FAMILY_SIGLIP);
		r.skip_tensor = names[i];
		char name[32];
		snprintf(name, sizeof(name), "t%zu", i);
		char *dir = write_folder(root, name, &r);
		expect_load_error(dir, CDX_EFORMAT, names[i], NULL);
		free(dir);
	}
	/* A text head whose output is not the embedding width */
	tm_recipe r;
	tm_recipe_siglip_tiny(&r, TM_FAMILY_SIGLIP);
	r.projection_dim = 40;
	char *dir = write_folder(root, "proj", &r);
	expect_load_error(dir, CDX_EFORMAT, "projection_size", NULL);
	free(dir);
	tm_rmtree(root);
	free(root);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha256_known),
		cmocka_unit_test(test_match_prob_formula),
		cmocka_unit_test(test_siglip_b16_224_f32),
		cmocka_unit_test(test_siglip_b16_384_f16_ctx16),
		cmocka_unit_test(test_siglip_sparse_bf16_224),
		cmocka_unit_test(test_siglip2_b16_256_f32),
		cmocka_unit_test(test_tiny_siglip),
		cmocka_unit_test(test_tiny_siglip2),
		cmocka_unit_test(test_patch_remainder),
		cmocka_unit_test(test_bad_model_type),
		cmocka_unit_test(test_bad_tokenizer),
		cmocka_unit_test(test_vocab_mismatch),
		cmocka_unit_test(test_missing_tensors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
