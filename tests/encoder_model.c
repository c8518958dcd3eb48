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
#include <xxhash.h>

#include "encoder/clip.h"
#include "tests/testmodel.h"
#include "tests/testutil.h"

#define FIXTURES "tests/fixtures/models/"

/* ---- sha256 (FIPS 180-4), to compare with the script's files ---------- */

static const uint32_t sha_k[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
	0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
	0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
	0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
	0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
	0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
	0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
	0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void
sha256_block(uint32_t h[8], const uint8_t *p)
{
	uint32_t w[64];
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		    (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^
		    (w[i - 15] >> 3);
		uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^
		    (w[i - 2] >> 10);
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5],
	    g = h[6], hh = h[7];
	for (int i = 0; i < 64; i++) {
		uint32_t t1 = hh + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) +
		    ((e & f) ^ (~e & g)) + sha_k[i] + w[i];
		uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) +
		    ((a & b) ^ (a & c) ^ (b & c));
		hh = g; g = f; f = e; e = d + t1;
		d = c; c = b; b = a; a = t1 + t2;
	}
	h[0] += a; h[1] += b; h[2] += c; h[3] += d;
	h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

static void
sha256_hex(const uint8_t *data, size_t len, char hex[65])
{
	uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
	size_t i = 0;
	for (; i + 64 <= len; i += 64)
		sha256_block(h, data + i);
	uint8_t tail[128] = {0};
	size_t rest = len - i;
	memcpy(tail, data + i, rest);
	tail[rest] = 0x80;
	size_t tl = rest + 9 <= 64 ? 64 : 128;
	uint64_t bits = (uint64_t)len * 8;
	for (int k = 0; k < 8; k++)
		tail[tl - 1 - k] = (uint8_t)(bits >> (8 * k));
	sha256_block(h, tail);
	if (tl == 128)
		sha256_block(h, tail + 64);
	for (int k = 0; k < 8; k++)
		sprintf(hex + 8 * k, "%08x", h[k]);
}

static void
test_sha256_known(void **state)
{
	(void)state;
	char hex[65];
	sha256_hex((const uint8_t *)"abc", 3, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223"
	    "b00361a396177a9cb410ff61f20015ad");
	sha256_hex((const uint8_t *)"", 0, hex);
	assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb924"
	    "27ae41e4649b934ca495991b7852b855");
}

/* ---- helpers ------------------------------------------------------------ */

static int
jint(const cJSON *o, const char *k)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
	assert_non_null(j);
	return j->valueint;
}

static void
tower_from_json(const cJSON *o, tm_tower *t)
{
	t->width = jint(o, "width");
	t->layers = jint(o, "layers");
	t->heads = jint(o, "heads");
	t->mlp = jint(o, "mlp");
	t->quick_gelu = strcmp(cJSON_GetObjectItem(o, "act")->valuestring,
	    "quick_gelu") == 0;
	t->eps = cJSON_GetObjectItem(o, "eps")->valuedouble;
	if (cJSON_GetObjectItem(o, "image_size") != NULL) {
		t->image_size = jint(o, "image_size");
		t->patch_size = jint(o, "patch_size");
	}
}

static double
max_abs_diff(const float *a, const float *b, size_t n)
{
	double m = 0;
	for (size_t i = 0; i < n; i++)
		m = fmax(m, fabs((double)a[i] - b[i]));
	return m;
}

static void
write_json(const char *dir, const char *name, const cJSON *j)
{
	char *s = cJSON_PrintUnformatted(j);
	assert_non_null(s);
	assert_int_equal(tm_write_file(dir, name, s), 0);
	free(s);
}

/* ---- the reference check -------------------------------------------------- */

static void
check_recipe(const char *recipe_name)
{
	char path[512];
	snprintf(path, sizeof(path), FIXTURES "%s.json", recipe_name);
	char *text = tu_read_file(path, NULL);
	if (text == NULL)
		fail_msg("cannot read %s (run the tests from the repository root)",
		    path);
	cJSON *fx = cJSON_Parse(text);
	free(text);
	assert_non_null(fx);
	const cJSON *rj = cJSON_GetObjectItem(fx, "recipe");

	tm_recipe r;
	memset(&r, 0, sizeof(r));
	r.seed = (uint64_t)jint(rj, "seed");
	r.dtype = cJSON_GetObjectItem(rj, "dtype")->valuestring;
	r.position_ids = cJSON_IsTrue(cJSON_GetObjectItem(rj, "position_ids"));
	r.projection_dim = jint(rj, "projection_dim");
	r.vocab_size = 49408;
	r.max_positions = 77;
	tower_from_json(cJSON_GetObjectItem(rj, "text"), &r.text);
	tower_from_json(cJSON_GetObjectItem(rj, "vision"), &r.vision);

	/* The folder: config.json exactly as the script wrote it. */
	char root[] = "/tmp/cdx-encoder-model-XXXXXX";
	assert_non_null(mkdtemp(root));
	char dir[600];
	snprintf(dir, sizeof(dir), "%s/%s", root, recipe_name);
	assert_int_equal(mkdir(dir, 0755), 0);
	write_json(dir, "config.json", cJSON_GetObjectItem(fx, "config"));
	const cJSON *pp = cJSON_GetObjectItem(fx, "preprocessor_config");
	if (!cJSON_IsNull(pp))
		write_json(dir, "preprocessor_config.json", pp);
	char st_path[700];
	snprintf(st_path, sizeof(st_path), "%s/model.safetensors", dir);
	assert_int_equal(tm_write_safetensors(&r, st_path), 0);

	/* Same bytes as the Python writer. */
	size_t st_len;
	char *st = tu_read_file(st_path, &st_len);
	assert_non_null(st);
	char hex[65];
	sha256_hex((const uint8_t *)st, st_len, hex);
	assert_int_equal(st_len,
	    (size_t)cJSON_GetObjectItem(fx, "safetensors_size")->valuedouble);
	assert_string_equal(hex, cJSON_GetObjectItem(fx,
	    "safetensors_sha256")->valuestring);
	uint64_t want_hash = XXH3_64bits(st, st_len);
	free(st);

	/* Load through a symlink with a trailing slash: the name is the
	 * real folder's. */
	char link[700];
	snprintf(link, sizeof(link), "%s/link", root);
	assert_int_equal(symlink(dir, link), 0);
	strcat(link, "/");
	clip_model_params params;
	clip_model_default_params(&params);
	params.precision = CLIP_PRECISION_FP32;   /* exact: the reference */
	clip_model *m = NULL;
	cdx_error err = {0};
	int rc = clip_model_load(link, &params, &m, &err);
	if (rc != 0)
		fail_msg("clip_model_load: %s", err.msg);

	const clip_model_info *in = clip_model_get_info(m);
	assert_string_equal(in->name, recipe_name);
	char want_id[200];
	snprintf(want_id, sizeof(want_id), "%s@%016llx", recipe_name,
	    (unsigned long long)want_hash);
	assert_string_equal(in->id, want_id);
	assert_true(in->weights_hash == want_hash);
	assert_int_equal(in->embed_dim, r.projection_dim);
	assert_int_equal(in->image_size, r.vision.image_size);
	assert_int_equal(in->patch_size, r.vision.patch_size);
	assert_int_equal(in->vision_width, r.vision.width);
	assert_int_equal(in->vision_layers, r.vision.layers);
	assert_int_equal(in->vision_heads, r.vision.heads);
	assert_int_equal(in->vision_mlp, r.vision.mlp);
	assert_int_equal(in->text_width, r.text.width);
	assert_int_equal(in->text_layers, r.text.layers);
	assert_int_equal(in->text_heads, r.text.heads);
	assert_int_equal(in->text_mlp, r.text.mlp);
	assert_int_equal(in->vocab_size, 49408);
	assert_int_equal(in->max_positions, 77);
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
	rc = clip_ctx_new(m, 3, &ctx, &err);
	if (rc != 0)
		fail_msg("clip_ctx_new: %s", err.msg);

	/* Text: the batch, then one by one. */
	const cJSON *ids_j = cJSON_GetObjectItem(fx, "text_ids");
	const cJSON *te_j = cJSON_GetObjectItem(fx, "text_embeddings");
	int nt = cJSON_GetArraySize(ids_j);
	assert_true(nt >= 4);
	int32_t *ids = calloc((size_t)nt * CLIP_CONTEXT_LEN, sizeof(int32_t));
	float *temb = calloc((size_t)nt * e, sizeof(float));
	float one[1024];
	assert_true(e <= 1024);
	for (int i = 0; i < nt; i++) {
		const cJSON *s = cJSON_GetArrayItem(ids_j, i);
		assert_int_equal(cJSON_GetArraySize(s), CLIP_CONTEXT_LEN);
		for (int j = 0; j < CLIP_CONTEXT_LEN; j++)
			ids[i * CLIP_CONTEXT_LEN + j] =
			    cJSON_GetArrayItem(s, j)->valueint;
	}
	rc = clip_encode_text(ctx, ids, nt, temb, &err);
	if (rc != 0)
		fail_msg("clip_encode_text: %s", err.msg);
	double tmin = 1, imin = 1;
	for (int i = 0; i < nt; i++) {
		double cs = tu_cosine_json(temb + i * e, cJSON_GetArrayItem(te_j, i), e);
		tmin = fmin(tmin, cs);
		if (!(cs >= 0.99999))
			fail_msg("%s: text %d cosine %.7f < 0.99999", recipe_name,
			    i, cs);
		float norm = 0;
		for (int k = 0; k < e; k++)
			norm += temb[i * e + k] * temb[i * e + k];
		assert_float_equal(norm, 1.0f, 1e-5);
		assert_int_equal(clip_encode_text(ctx, ids + i *
		    CLIP_CONTEXT_LEN, 1, one, &err), 0);
		assert_true(max_abs_diff(one, temb + i * e, (size_t)e) < 1e-5);
	}

	/* Images: the batch, then one by one. */
	int size = r.vision.image_size;
	int ni = jint(fx, "n_images");
	assert_int_equal(ni, 3);
	size_t per = (size_t)3 * size * size;
	float *px = malloc(ni * per * sizeof(float));
	float *iemb = calloc((size_t)ni * e, sizeof(float));
	for (int j = 0; j < ni; j++)
		assert_int_equal(tm_pixels(r.seed, j, size, jint(fx, "coarse"),
		    (float)cJSON_GetObjectItem(fx, "coarse_scale")->valuedouble,
		    (float)cJSON_GetObjectItem(fx, "pixel_scale")->valuedouble,
		    px + j * per), 0);
	rc = clip_encode_images(ctx, px, ni, iemb, &err);
	if (rc != 0)
		fail_msg("clip_encode_images: %s", err.msg);
	const cJSON *ie_j = cJSON_GetObjectItem(fx, "image_embeddings");
	for (int j = 0; j < ni; j++) {
		double cs = tu_cosine_json(iemb + j * e, cJSON_GetArrayItem(ie_j, j), e);
		imin = fmin(imin, cs);
		if (!(cs >= 0.9999))
			fail_msg("%s: image %d cosine %.7f < 0.9999", recipe_name,
			    j, cs);
		assert_int_equal(clip_encode_images(ctx, px + j * per, 1, one,
		    &err), 0);
		assert_true(max_abs_diff(one, iemb + j * e, (size_t)e) < 1e-5);
	}

	print_message("%s: 1 - cosine to the reference at worst: text %.2e, "
	    "images %.2e\n", recipe_name, 1 - tmin, 1 - imin);

	/* Misuse is refused with a message. */
	assert_int_equal(clip_encode_images(ctx, px, 4, iemb, &err),
	    CDX_EINVAL);
	assert_non_null(strstr(err.msg, "batch"));
	int32_t bad[CLIP_CONTEXT_LEN];
	for (int j = 0; j < CLIP_CONTEXT_LEN; j++)
		bad[j] = 320;                /* no end-of-text token */
	assert_int_equal(clip_encode_text(ctx, bad, 1, one, &err), CDX_EINVAL);
	assert_non_null(strstr(err.msg, "end-of-text"));
	bad[0] = 49408;                      /* outside the vocabulary */
	bad[1] = CLIP_TOKEN_EOT;
	assert_int_equal(clip_encode_text(ctx, bad, 1, one, &err), CDX_EINVAL);
	assert_non_null(strstr(err.msg, "vocabulary"));

	free(px);
	free(iemb);
	free(ids);
	free(temb);
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
	assert_int_equal(clip_ctx_new(m, 2, &ctx, &err), 0);
	float px[2 * 3 * 64 * 64], emb[2 * 16];
	assert_int_equal(tm_pixels(1, 0, 64, 4, 1.5f, 0.5f, px), 0);
	assert_int_equal(tm_pixels(1, 1, 64, 4, 1.5f, 0.5f, px + 3 * 64 * 64),
	    0);
	assert_int_equal(clip_encode_images(ctx, px, 2, emb, &err), 0);
	double dot = 0;
	for (int k = 0; k < 16; k++)
		dot += emb[k] * emb[16 + k];
	if (!(dot < 0.99))
		fail_msg("tiny: images too similar (cos %f)", dot);
	int32_t ids[2 * CLIP_CONTEXT_LEN];
	for (int j = 0; j < 2 * CLIP_CONTEXT_LEN; j++)
		ids[j] = CLIP_TOKEN_EOT;
	ids[0] = ids[CLIP_CONTEXT_LEN] = CLIP_TOKEN_SOT;
	ids[1] = 320;
	ids[CLIP_CONTEXT_LEN + 1] = 1929;
	assert_int_equal(clip_encode_text(ctx, ids, 2, emb, &err), 0);
	dot = 0;
	for (int k = 0; k < 16; k++)
		dot += emb[k] * emb[16 + k];
	assert_true(dot < 0.99);
	assert_int_equal(clip_encode_text(ctx, ids, 0, emb, &err), 0);
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
		ok &= max_abs_diff(t, s->want_text, 40 * 16) < s->tol;
		ok &= max_abs_diff(im, s->want_img, 3 * 16) < s->tol;
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
	assert_int_equal(clip_ctx_new(s->m, 3, &ctx, &err), 0);
	for (int i = 0; i < 40; i++)
		assert_int_equal(clip_encode_text(ctx, s->ids + i *
		    CLIP_CONTEXT_LEN, 1, s->want_text + i * 16, &err), 0);
	assert_int_equal(clip_encode_images(ctx, s->px, 3, s->want_img, &err),
	    0);
	float all[40 * 16];
	assert_int_equal(clip_encode_text(ctx, s->ids, 40, all, &err), 0);
	double d = max_abs_diff(all, s->want_text, 40 * 16);
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
		cmocka_unit_test(test_sha256_known),
		cmocka_unit_test(test_f16_rounding),
		cmocka_unit_test(test_tiny_model),
		cmocka_unit_test(test_shared_model),
		cmocka_unit_test(test_b32_quick_f32),
		cmocka_unit_test(test_b16_gelu_f16),
		cmocka_unit_test(test_b16_mixed_bf16_336),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
