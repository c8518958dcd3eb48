/*
 * encoder_modelio.c - clip_model_load on broken model folders: each
 * problem gives its code and a message naming the file and the problem,
 * never a crash.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "encoder/clip.h"
#include "tests/cdx_assert.h"
#include "tests/testmodel.h"

typedef struct fixture {
	char dir[64];
	tm_recipe r;
} fixture;

static int
setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	strcpy(f->dir, "/tmp/cdx-modelio-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	tm_recipe_tiny(&f->r);
	f->r.text.layers = f->r.vision.layers = 1;
	if (tm_write_model(&f->r, f->dir) != 0)
		return -1;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	fixture *f = *state;
	tm_rmtree(f->dir);
	free(f);
	return 0;
}

/* Loads dir, expects `code` and every one of the NULL-terminated
 * substrings in the message. */
static void
expect_fail(const char *dir, int code, ...)
{
	clip_model *m = (clip_model *)(uintptr_t)0x1;
	cdx_error err = {0};
	int rc = clip_model_load(dir, NULL, &m, &err);
	if (rc != code)
		fail_msg("expected %s, got %s (%s)", cdx_strerror(code),
		    cdx_strerror(rc), err.msg);
	assert_int_equal(err.code, code);
	assert_true(m == (clip_model *)(uintptr_t)0x1);  /* untouched */
	va_list ap;
	va_start(ap, code);
	const char *want;
	while ((want = va_arg(ap, const char *)) != NULL) {
		if (strstr(err.msg, want) == NULL)
			fail_msg("message '%s' lacks '%s'", err.msg, want);
	}
	va_end(ap);
}

static void
expect_ok(const char *dir)
{
	clip_model *m = NULL;
	cdx_error err = {0};
	if (clip_model_load(dir, NULL, &m, &err) != 0)
		fail_msg("clip_model_load: %s", err.msg);
	clip_model_free(m);
}

static void
put(const fixture *f, const char *name, const char *text)
{
	assert_int_equal(tm_write_file(f->dir, name, text), 0);
}

static char *
sft_path(const fixture *f)
{
	static char p[128];
	snprintf(p, sizeof(p), "%s/model.safetensors", f->dir);
	return p;
}

static uint8_t *
read_all(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	assert_non_null(fp);
	fseek(fp, 0, SEEK_END);
	*len = (size_t)ftell(fp);
	fseek(fp, 0, SEEK_SET);
	uint8_t *b = malloc(*len + 1);
	assert_non_null(b);
	assert_int_equal(fread(b, 1, *len, fp), *len);
	fclose(fp);
	return b;
}

static void
write_all(const char *path, const void *b, size_t len)
{
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(b, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

/* Writes a safetensors file with the given header and `data` zero bytes. */
static void
write_st(const fixture *f, const char *header, size_t data)
{
	size_t hl = strlen(header);
	uint8_t *b = calloc(1, 8 + hl + data);
	assert_non_null(b);
	for (int k = 0; k < 8; k++)
		b[k] = (uint8_t)((uint64_t)hl >> (8 * k));
	memcpy(b + 8, header, hl);
	write_all(sft_path(f), b, 8 + hl + data);
	free(b);
}

/* Replaces the first occurrence of `from` in the safetensors header by
 * `to` (same length). */
static void
patch_header(const fixture *f, const char *from, const char *to)
{
	size_t len;
	uint8_t *b = read_all(sft_path(f), &len);
	assert_int_equal(strlen(from), strlen(to));
	b[len] = 0;
	char *p = memmem(b, len, from, strlen(from));
	assert_non_null(p);
	memcpy(p, to, strlen(to));
	write_all(sft_path(f), b, len);
	free(b);
}

/* ---- the folder -------------------------------------------------------- */

static void
test_valid_folder_loads(void **state)
{
	fixture *f = *state;
	expect_ok(f->dir);
}

static void
test_missing_folder(void **state)
{
	(void)state;
	expect_fail("/nonexistent/cdx-model", CDX_ENOTFOUND,
	    "/nonexistent/cdx-model", (char *)NULL);
}

static void
test_folder_is_a_file(void **state)
{
	fixture *f = *state;
	char p[128];
	snprintf(p, sizeof(p), "%s/config.json", f->dir);
	expect_fail(p, CDX_ENOTFOUND, "not a model folder", (char *)NULL);
}

static void
test_missing_config(void **state)
{
	fixture *f = *state;
	char p[128];
	snprintf(p, sizeof(p), "%s/config.json", f->dir);
	unlink(p);
	expect_fail(f->dir, CDX_ENOTFOUND, "config.json", (char *)NULL);
}

static void
test_missing_safetensors(void **state)
{
	fixture *f = *state;
	unlink(sft_path(f));
	expect_fail(f->dir, CDX_ENOTFOUND, "model.safetensors", (char *)NULL);
}

static void
test_null_arguments(void **state)
{
	fixture *f = *state;
	cdx_error err;
	assert_int_equal(clip_model_load(f->dir, NULL, NULL, &err), CDX_EINVAL);
	clip_model *m;
	assert_int_equal(clip_model_load(NULL, NULL, &m, &err), CDX_EINVAL);
	assert_null(clip_model_get_info(NULL));
	clip_ctx *c = NULL;
	assert_int_equal(clip_ctx_new(NULL, 1, &c, &err), CDX_EINVAL);
}

/* ---- config.json --------------------------------------------------------- */

static void
test_config_not_json(void **state)
{
	fixture *f = *state;
	put(f, "config.json", "{\"text_config\": {\"hidden_size\": 32,");
	expect_fail(f->dir, CDX_EFORMAT, "config.json", "not valid JSON",
	    (char *)NULL);
}

static void
test_config_not_object(void **state)
{
	fixture *f = *state;
	put(f, "config.json", "[1, 2, 3]");
	expect_fail(f->dir, CDX_EFORMAT, "config.json", "not a JSON object",
	    (char *)NULL);
}

static void
test_config_wrong_type(void **state)
{
	fixture *f = *state;
	put(f, "config.json", "{\"projection_dim\": 16, \"text_config\": "
	    "{\"hidden_size\": \"32\"}}");
	expect_fail(f->dir, CDX_EFORMAT, "text_config.hidden_size",
	    (char *)NULL);
	put(f, "config.json", "{\"vision_config\": [1]}");
	expect_fail(f->dir, CDX_EFORMAT, "vision_config", "not an object",
	    (char *)NULL);
	put(f, "config.json", "{\"vision_config\": {\"patch_size\": -4}}");
	expect_fail(f->dir, CDX_EFORMAT, "vision_config.patch_size",
	    (char *)NULL);
}

static void
test_config_unknown_act(void **state)
{
	fixture *f = *state;
	put(f, "config.json", "{\"projection_dim\": 16, \"text_config\": "
	    "{\"hidden_act\": \"relu\"}}");
	expect_fail(f->dir, CDX_EFORMAT, "hidden_act", "relu", (char *)NULL);
}

static void
test_config_bad_dims(void **state)
{
	fixture *f = *state;
	put(f, "config.json", "{\"text_config\": {\"hidden_size\": 30, "
	    "\"num_attention_heads\": 4}}");
	expect_fail(f->dir, CDX_EFORMAT, "not a multiple of num_attention_heads",
	    (char *)NULL);
	put(f, "config.json", "{\"vision_config\": {\"image_size\": 24, "
	    "\"patch_size\": 32}}");
	expect_fail(f->dir, CDX_EFORMAT, "image_size 24 is smaller", (char *)NULL);
	put(f, "config.json", "{\"vision_config\": {\"num_channels\": 1}}");
	expect_fail(f->dir, CDX_EFORMAT, "num_channels", (char *)NULL);
	put(f, "config.json", "{\"text_config\": {\"layer_norm_eps\": -1}}");
	expect_fail(f->dir, CDX_EFORMAT, "layer_norm_eps", (char *)NULL);
}

/* The config says 2 layers, the file has 1. */
static void
test_missing_tensor(void **state)
{
	fixture *f = *state;
	tm_recipe r = f->r;
	r.text.layers = 2;
	assert_int_equal(tm_write_config(&r, f->dir), 0);
	expect_fail(f->dir, CDX_EFORMAT, "model.safetensors",
	    "'text_model.encoder.layers.1.layer_norm1.weight' is missing",
	    (char *)NULL);
}

/* The config's MLP width differs from the file's. */
static void
test_wrong_shape(void **state)
{
	fixture *f = *state;
	tm_recipe r = f->r;
	r.vision.mlp = 48;
	assert_int_equal(tm_write_config(&r, f->dir), 0);
	expect_fail(f->dir, CDX_EFORMAT,
	    "'vision_model.encoder.layers.0.mlp.fc1.weight' has shape [64, 32]",
	    "[48, 32]", (char *)NULL);
}

/* Defaults apply to absent fields: an empty text_config means a 512-wide
 * text tower, which this file does not have. */
static void
test_config_defaults_apply(void **state)
{
	fixture *f = *state;
	put(f, "config.json", "{}");
	expect_fail(f->dir, CDX_EFORMAT, "token_embedding.weight",
	    "[49408, 512]", (char *)NULL);
}

/* ---- preprocessor_config.json ------------------------------------------------ */

static void
test_preprocessor_config(void **state)
{
	fixture *f = *state;
	put(f, "preprocessor_config.json", "{\"size\": 64, \"crop_size\": "
	    "{\"height\": 64, \"width\": 64}, \"image_mean\": [0.1, 0.2, 0.3],"
	    " \"image_std\": [1, 2, 3]}");
	clip_model *m = NULL;
	cdx_error err = {0};
	if (clip_model_load(f->dir, NULL, &m, &err) != 0)
		fail_msg("%s", err.msg);
	const clip_preprocess_cfg *p = &clip_model_get_info(m)->preprocess;
	assert_int_equal(p->shortest_edge, 64);
	assert_int_equal(p->crop_width, 64);
	assert_true(p->mean[2] == 0.3f && p->std[1] == 2.0f);
	clip_model_free(m);

	put(f, "preprocessor_config.json", "{\"size\": {\"shortest_edge\": 80}}");
	CDX_ASSERT_OK(clip_model_load(f->dir, NULL, &m, &err), err.msg);
	assert_int_equal(clip_model_get_info(m)->preprocess.shortest_edge, 80);
	assert_int_equal(clip_model_get_info(m)->preprocess.crop_height, 64);
	clip_model_free(m);

	put(f, "preprocessor_config.json", "{\"crop_size\": 96}");
	expect_fail(f->dir, CDX_EFORMAT, "preprocessor_config.json",
	    "crop_size 96x96", (char *)NULL);
	put(f, "preprocessor_config.json", "{\"image_std\": [1, 0, 1]}");
	expect_fail(f->dir, CDX_EFORMAT, "image_std", (char *)NULL);
	put(f, "preprocessor_config.json", "{\"size\": \"big\"}");
	expect_fail(f->dir, CDX_EFORMAT, "size", (char *)NULL);
	put(f, "preprocessor_config.json", "not json");
	expect_fail(f->dir, CDX_EFORMAT, "preprocessor_config.json",
	    (char *)NULL);
}

/* ---- model.safetensors ---------------------------------------------------- */

static void
test_truncated(void **state)
{
	fixture *f = *state;
	size_t len;
	uint8_t *b = read_all(sft_path(f), &len);
	write_all(sft_path(f), b, len - 1);
	expect_fail(f->dir, CDX_EFORMAT, "model.safetensors",
	    "outside the data region", (char *)NULL);
	write_all(sft_path(f), b, len / 2);
	expect_fail(f->dir, CDX_EFORMAT, "outside the data region",
	    (char *)NULL);
	write_all(sft_path(f), b, 5);
	expect_fail(f->dir, CDX_EFORMAT, "too short", (char *)NULL);
	write_all(sft_path(f), b, 0);
	expect_fail(f->dir, CDX_EFORMAT, "too short", (char *)NULL);
	free(b);
}

static void
test_header_length_beyond_file(void **state)
{
	fixture *f = *state;
	size_t len;
	uint8_t *b = read_all(sft_path(f), &len);
	uint64_t big = (uint64_t)len;
	for (int k = 0; k < 8; k++)
		b[k] = (uint8_t)(big >> (8 * k));
	write_all(sft_path(f), b, len);
	expect_fail(f->dir, CDX_EFORMAT, "header length", "exceeds",
	    (char *)NULL);
	memset(b, 0xff, 8);
	write_all(sft_path(f), b, len);
	expect_fail(f->dir, CDX_EFORMAT, "header length", (char *)NULL);
	free(b);
}

static void
test_bad_json_header(void **state)
{
	fixture *f = *state;
	write_st(f, "{\"a\": {\"dtype\": \"F32\", ", 16);
	expect_fail(f->dir, CDX_EFORMAT, "header is not valid JSON",
	    (char *)NULL);
	write_st(f, "[1, 2]", 16);
	expect_fail(f->dir, CDX_EFORMAT, "not a JSON object", (char *)NULL);
	write_st(f, "{\"a\": 3}", 16);
	expect_fail(f->dir, CDX_EFORMAT, "'a' is not an object", (char *)NULL);
	write_st(f, "{\"a\": {\"dtype\": \"F32\"}}", 16);
	expect_fail(f->dir, CDX_EFORMAT, "lacks dtype, shape or data_offsets",
	    (char *)NULL);
}

static void
test_offsets_outside(void **state)
{
	fixture *f = *state;
	write_st(f, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],"
	    "\"data_offsets\":[0,16]}}", 8);
	expect_fail(f->dir, CDX_EFORMAT, "'a' data [0, 16) lies outside",
	    (char *)NULL);
	write_st(f, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
	    "\"data_offsets\":[8,4]}}", 8);
	expect_fail(f->dir, CDX_EFORMAT, "'a' has invalid data_offsets",
	    (char *)NULL);
	write_st(f, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
	    "\"data_offsets\":[-4,0]}}", 8);
	expect_fail(f->dir, CDX_EFORMAT, "invalid data_offsets", (char *)NULL);
	write_st(f, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
	    "\"data_offsets\":[0,4,8]}}", 8);
	expect_fail(f->dir, CDX_EFORMAT, "invalid data_offsets", (char *)NULL);
}

static void
test_dtype_shape_inconsistent(void **state)
{
	fixture *f = *state;
	write_st(f, "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],"
	    "\"data_offsets\":[0,8]}}", 8);
	expect_fail(f->dir, CDX_EFORMAT, "'a' shape and dtype F32",
	    (char *)NULL);
	write_st(f, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],"
	    "\"data_offsets\":[0,8]}}", 8);
	expect_fail(f->dir, CDX_EFORMAT, "'a' has an invalid shape",
	    (char *)NULL);
	write_st(f, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,"
	    "4294967296,4294967296],\"data_offsets\":[0,8]}}", 8);
	expect_fail(f->dir, CDX_EFORMAT, "shape and dtype", (char *)NULL);
	write_st(f, "{\"a\":{\"dtype\":\"F12\",\"shape\":[2],"
	    "\"data_offsets\":[0,8]}}", 8);
	expect_fail(f->dir, CDX_EFORMAT, "unknown dtype 'F12'", (char *)NULL);
}

/* A needed tensor in a dtype the encoder cannot compute with. */
static void
test_needed_tensor_wrong_dtype(void **state)
{
	fixture *f = *state;
	patch_header(f, "\"dtype\":\"F16\"", "\"dtype\":\"I16\"");
	expect_fail(f->dir, CDX_EFORMAT, "token_embedding.weight",
	    "dtype I16", (char *)NULL);
}

/* Inserts `entries` (ending with a comma) at the start of the header's
 * object; data offsets are relative to the data, so they stay valid. */
static void
insert_header(const fixture *f, const char *entries)
{
	size_t len;
	uint8_t *b = read_all(sft_path(f), &len);
	uint64_t hl = 0;
	for (int k = 7; k >= 0; k--)
		hl = hl << 8 | b[k];
	size_t el = strlen(entries);
	size_t nhl = hl + el;
	nhl += (8 - nhl % 8) % 8;
	uint8_t *o = malloc(8 + nhl + (len - 8 - hl));
	assert_non_null(o);
	for (int k = 0; k < 8; k++)
		o[k] = (uint8_t)((uint64_t)nhl >> (8 * k));
	o[8] = '{';
	memcpy(o + 9, entries, el);
	memcpy(o + 9 + el, b + 9, hl - 1);
	memset(o + 8 + hl + el, ' ', nhl - hl - el);
	memcpy(o + 8 + nhl, b + 8 + hl, len - 8 - hl);
	write_all(sft_path(f), o, 8 + nhl + (len - 8 - hl));
	free(o);
	free(b);
}

/* Extra tensors, __metadata__ and position_ids (I64) are fine. */
static void
test_extras_accepted(void **state)
{
	fixture *f = *state;
	f->r.position_ids = 1;
	assert_int_equal(tm_write_model(&f->r, f->dir), 0);
	expect_ok(f->dir);
	insert_header(f, "\"__metadata__\":{\"format\":\"pt\"},\"extra\":"
	    "{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]},");
	expect_ok(f->dir);
	/* ... but the header is still checked after them */
	insert_header(f, "\"bad\":{\"dtype\":\"U8\",\"shape\":[2],"
	    "\"data_offsets\":[0,1]},");
	expect_fail(f->dir, CDX_EFORMAT, "'bad'", (char *)NULL);
}

/* A folder's own vocab.json + merges.txt are used (here: broken ones),
 * else the built-in vocabulary. */
static void
test_tokenizer_files(void **state)
{
	fixture *f = *state;
	clip_model *m = NULL;
	cdx_error err = {0};
	CDX_ASSERT_OK(clip_model_load(f->dir, NULL, &m, &err), err.msg);
	assert_non_null(clip_model_tokenizer(m));
	clip_model_free(m);
	put(f, "vocab.json", "this is not json");
	put(f, "merges.txt", "#version: 0.2\n");
	m = NULL;
	int rc = clip_model_load(f->dir, NULL, &m, &err);
	assert_int_not_equal(rc, 0);
	assert_null(m);
	if (strstr(err.msg, "vocab.json") == NULL)
		fail_msg("message '%s' does not name vocab.json", err.msg);
}

/* A config.json as transformers 4.x dumps it (openai/clip-vit-base-patch32
 * style): every PretrainedConfig field, nulls, nested objects, and the
 * *_config_dict overrides; only the CLIP fields matter. */
static void
test_config_full_dump(void **state)
{
	fixture *f = *state;
	put(f, "config.json",
	    "{\"_name_or_path\": \"openai/clip-vit-base-patch32\","
	    " \"architectures\": [\"CLIPModel\"], \"initializer_factor\": 1.0,"
	    " \"logit_scale_init_value\": 2.6592, \"model_type\": \"clip\","
	    " \"projection_dim\": 16,"
	    " \"text_config\": {\"_name_or_path\": \"\", \"architectures\": null,"
	    "  \"attention_dropout\": 0.0, \"bad_words_ids\": null,"
	    "  \"bos_token_id\": 0, \"eos_token_id\": 2, \"hidden_act\":"
	    "  \"quick_gelu\", \"hidden_size\": 512, \"id2label\": {\"0\":"
	    "  \"LABEL_0\"}, \"intermediate_size\": 2048, \"layer_norm_eps\":"
	    "  1e-05, \"max_length\": 20, \"max_position_embeddings\": 77,"
	    "  \"model_type\": \"clip_text_model\", \"num_attention_heads\": 8,"
	    "  \"num_hidden_layers\": 12, \"pruned_heads\": {}, \"projection_dim\":"
	    "  512, \"torch_dtype\": null, \"vocab_size\": 49408},"
	    " \"text_config_dict\": {\"hidden_size\": 32, \"intermediate_size\":"
	    "  64, \"num_attention_heads\": 2, \"num_hidden_layers\": 1,"
	    "  \"projection_dim\": 16},"
	    " \"vision_config\": {\"hidden_act\": \"quick_gelu\", \"hidden_size\":"
	    "  768, \"image_size\": 224, \"intermediate_size\": 3072,"
	    "  \"layer_norm_eps\": 1e-05, \"num_attention_heads\": 12,"
	    "  \"num_channels\": 3, \"num_hidden_layers\": 12, \"patch_size\": 32,"
	    "  \"return_dict\": true, \"label2id\": {\"LABEL_0\": 0}},"
	    " \"vision_config_dict\": {\"hidden_size\": 32, \"intermediate_size\":"
	    "  64, \"num_attention_heads\": 2, \"num_hidden_layers\": 1,"
	    "  \"image_size\": 64, \"patch_size\": 16, \"projection_dim\": 16},"
	    " \"torch_dtype\": \"float32\", \"transformers_version\": null}");
	clip_model *m = NULL;
	cdx_error err = {0};
	if (clip_model_load(f->dir, NULL, &m, &err) != 0)
		fail_msg("clip_model_load: %s", err.msg);
	const clip_model_info *in = clip_model_get_info(m);
	assert_int_equal(in->text_width, 32);
	assert_int_equal(in->vision_layers, 1);
	assert_int_equal(in->patch_size, 16);
	assert_int_equal(in->vocab_size, 49408);
	assert_int_equal(in->embed_dim, 16);
	clip_model_free(m);
}

/* preprocessor_config.json's filter and switches on a CLIP folder: the
 * default is a bicubic shortest-side crop; "resample" 2 picks bilinear;
 * other filters and switched-off steps are refused, naming the field. */
static void
test_preprocessor_resample(void **state)
{
	fixture *f = *state;
	clip_model *m = NULL;
	cdx_error err = {0};
	put(f, "preprocessor_config.json", "{\"do_resize\": true}");
	if (clip_model_load(f->dir, NULL, &m, &err) != 0)
		fail_msg("%s", err.msg);
	const clip_preprocess_cfg *p = &clip_model_get_info(m)->preprocess;
	assert_int_equal(p->mode, CLIP_RESIZE_SHORTEST_CROP);
	assert_int_equal(p->resample, CLIP_RESAMPLE_BICUBIC);
	clip_model_free(m);

	put(f, "preprocessor_config.json", "{\"resample\": 2, "
	    "\"do_center_crop\": true, \"do_normalize\": true, "
	    "\"rescale_factor\": 0.00392156862745098}");
	if (clip_model_load(f->dir, NULL, &m, &err) != 0)
		fail_msg("%s", err.msg);
	p = &clip_model_get_info(m)->preprocess;
	assert_int_equal(p->resample, CLIP_RESAMPLE_BILINEAR);
	clip_model_free(m);

	put(f, "preprocessor_config.json", "{\"resample\": 1}");
	expect_fail(f->dir, CDX_EFORMAT, "preprocessor_config.json",
	    "resample", (char *)NULL);
	put(f, "preprocessor_config.json", "{\"do_normalize\": false}");
	expect_fail(f->dir, CDX_EFORMAT, "preprocessor_config.json",
	    "do_normalize", (char *)NULL);
	put(f, "preprocessor_config.json", "{\"rescale_factor\": 1.0}");
	expect_fail(f->dir, CDX_EFORMAT, "preprocessor_config.json",
	    "rescale_factor", (char *)NULL);
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_valid_folder_loads),
		T(test_missing_folder),
		T(test_folder_is_a_file),
		T(test_missing_config),
		T(test_missing_safetensors),
		T(test_null_arguments),
		T(test_config_not_json),
		T(test_config_not_object),
		T(test_config_wrong_type),
		T(test_config_unknown_act),
		T(test_config_bad_dims),
		T(test_missing_tensor),
		T(test_wrong_shape),
		T(test_config_defaults_apply),
		T(test_config_full_dump),
		T(test_preprocessor_config),
		T(test_truncated),
		T(test_header_length_beyond_file),
		T(test_bad_json_header),
		T(test_offsets_outside),
		T(test_dtype_shape_inconsistent),
		T(test_needed_tensor_wrong_dtype),
		T(test_extras_accepted),
		T(test_tokenizer_files),
		T(test_preprocessor_resample),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
