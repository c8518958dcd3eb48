/*
 * Tests of the SentencePiece tokenizers (encoder/sptok.c, encoder/spm_c.cpp,
 * reached through clip.h): SigLIP's SiglipTokenizer and SigLIP2's Gemma
 * tokenizer.
 *
 * The fixture tests compare every text of tests/fixtures/spm/corpus.jsonl
 * with the ids that tools/ref_sptok.py (python3-sentencepiece plus
 * transformers' preprocessing, rewritten in Python) wrote to
 * expected.jsonl, for the four fixture folders: the SigLIP and SigLIP2
 * layouts as the hub has them, and two variants (class defaults, legacy
 * special_tokens_map.json, left padding and truncation).  Run from the
 * repository root.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "encoder/clip.h"
#include "encoder/sptok.h"
#include "tests/testutil.h"

#define FIX "tests/fixtures/spm/"

static char tmpdir[64];

/* ---- Helpers ---------------------------------------------------------- */

static clip_tokenizer *
load(const char *dir, int ctx)
{
	clip_tokenizer *tok = NULL;
	cdx_error err = { 0 };
	int rc = clip_tokenizer_load_sentencepiece(dir, ctx, &tok, &err);
	if (rc != 0)
		fail_msg("load %s (%d): %s: %s", dir, ctx, cdx_strerror(rc),
		    err.msg);
	assert_non_null(tok);
	return tok;
}

/* Loading `dir` fails with `code` and a message that contains `needle`. */
static void
load_fails(const char *dir, int ctx, int code, const char *needle)
{
	clip_tokenizer *tok = (clip_tokenizer *)0x1;
	cdx_error err = { 0 };
	int rc = clip_tokenizer_load_sentencepiece(dir, ctx, &tok, &err);
	if (rc != code)
		fail_msg("load %s: %s (%s), expected %s", dir, cdx_strerror(rc),
		    rc ? err.msg : "", cdx_strerror(code));
	assert_int_equal(err.code, code);
	if (!strstr(err.msg, needle))
		fail_msg("load %s: message \"%s\" does not name \"%s\"", dir,
		    err.msg, needle);
	assert_ptr_equal(tok, (clip_tokenizer *)0x1); /* untouched */
}

static void
copy_file(const char *from, const char *to)
{
	size_t len = 0;
	char *data = tu_read_fixture(from, &len);
	assert_int_equal(tu_write_file(to, data, len), 0);
	free(data);
}

static void
write_text(const char *path, const char *text)
{
	assert_int_equal(tu_write_file(path, text, strlen(text)), 0);
}

/* A fresh folder tmpdir/name; returns its path (static buffer). */
static const char *
mkfolder(const char *name)
{
	static char path[256];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	assert_int_equal(mkdir(path, 0755), 0);
	return path;
}

/* Copies fixture folder `fix` (every file in it) into tmpdir/name. */
static const char *
fixture_copy(const char *fix, const char *name)
{
	static const char *const files[] = { "spiece.model", "tokenizer.model",
		"tokenizer_config.json", "special_tokens_map.json" };
	static char dir[256];
	char from[512], to[512];
	snprintf(dir, sizeof(dir), "%s", mkfolder(name));
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(from, sizeof(from), FIX "%s/%s", fix, files[i]);
		if (access(from, F_OK) != 0)
			continue;
		snprintf(to, sizeof(to), "%s/%s", dir, files[i]);
		copy_file(from, to);
	}
	return dir;
}

static void
put(const char *dir, const char *file, const char *text)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	write_text(path, text);
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int
setup_tmpdir(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/cdx_sptok_XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int
teardown_tmpdir(void **state)
{
	(void)state;
	return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- The corpus and the expected ids ---------------------------------- */

typedef struct text {
	char *s;
	size_t len;
} text;

typedef struct expect {
	char folder[32];
	int ctx, i, n;
	int32_t ids[CLIP_CONTEXT_LEN];
} expect;

static text *
corpus_load(size_t *count)
{
	char *data = tu_read_fixture(FIX "corpus.jsonl", NULL), *at = data;
	text *t = NULL;
	size_t n = 0;
	cJSON *j;
	while ((j = tu_jsonl_next(&at)) != NULL) {
		const cJSON *hex = cJSON_GetObjectItem(j, "hex");
		assert_true(cJSON_IsString(hex));
		t = realloc(t, (n + 1) * sizeof(*t));
		assert_non_null(t);
		t[n].s = tu_hex_decode(hex->valuestring, &t[n].len);
		n++;
		cJSON_Delete(j);
	}
	free(data);
	*count = n;
	return t;
}

static expect *
expected_load(size_t *count)
{
	char *data = tu_read_fixture(FIX "expected.jsonl", NULL), *at = data;
	expect *e = NULL;
	size_t n = 0;
	cJSON *j;
	while ((j = tu_jsonl_next(&at)) != NULL) {
		e = realloc(e, (n + 1) * sizeof(*e));
		assert_non_null(e);
		snprintf(e[n].folder, sizeof(e[n].folder), "%s",
		    cJSON_GetObjectItem(j, "folder")->valuestring);
		e[n].ctx = cJSON_GetObjectItem(j, "ctx")->valueint;
		e[n].i = cJSON_GetObjectItem(j, "i")->valueint;
		e[n].n = cJSON_GetObjectItem(j, "n")->valueint;
		tu_json_ids(cJSON_GetObjectItem(j, "ids"), e[n].ids, e[n].ctx);
		n++;
		cJSON_Delete(j);
	}
	free(data);
	*count = n;
	return e;
}

static void
texts_free(text *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(t[i].s);
	free(t);
}

static void
print_ids(const char *what, const int32_t *ids, int n)
{
	fprintf(stderr, "  %s:", what);
	for (int k = 0; k < n; k++)
		fprintf(stderr, " %d", ids[k]);
	fprintf(stderr, "\n");
}

/* ---- Tests ------------------------------------------------------------ */

/* Every line of expected.jsonl: the same ids, the same count. */
static void
test_fixtures(void **state)
{
	size_t nt, ne, bad = 0;
	text *texts = corpus_load(&nt);
	expect *e = expected_load(&ne);
	clip_tokenizer *tok = NULL;
	char cur[32] = "";
	int cur_ctx = 0;
	size_t per_folder[8] = { 0 };
	(void)state;

	assert_true(nt >= 300);
	assert_true(ne >= 1000);
	for (size_t k = 0; k < ne; k++) {
		int32_t ids[CLIP_CONTEXT_LEN];
		cdx_error err = { 0 };
		int n = -1, rc;
		if (strcmp(cur, e[k].folder) != 0 || cur_ctx != e[k].ctx) {
			char dir[256];
			clip_tokenizer_free(tok);
			snprintf(dir, sizeof(dir), FIX "%s", e[k].folder);
			tok = load(dir, e[k].ctx);
			snprintf(cur, sizeof(cur), "%s", e[k].folder);
			cur_ctx = e[k].ctx;
		}
		assert_true((size_t)e[k].i < nt);
		rc = clip_tokenize(tok, texts[e[k].i].s, texts[e[k].i].len, ids,
		    &n, &err);
		if (rc != 0)
			fail_msg("%s/%d text %d: %s: %s", e[k].folder, e[k].ctx,
			    e[k].i, cdx_strerror(rc), err.msg);
		if (n != e[k].n || memcmp(ids, e[k].ids,
		    (size_t)e[k].ctx * sizeof(int32_t)) != 0) {
			if (bad++ < 10) {
				fprintf(stderr, "%s ctx %d text %d \"%s\": n %d, "
				    "expected %d\n", e[k].folder, e[k].ctx,
				    e[k].i, texts[e[k].i].s, n, e[k].n);
				print_ids("got     ", ids, e[k].ctx);
				print_ids("expected", e[k].ids, e[k].ctx);
			}
		}
		per_folder[e[k].folder[0] == 'g' ? 0 : e[k].folder[6] == '2' ?
		    1 : e[k].folder[6] == '-' ? 2 : 3]++;
	}
	clip_tokenizer_free(tok);
	if (bad)
		fail_msg("%zu of %zu fixture lines differ", bad, ne);
	for (int f = 0; f < 4; f++)
		assert_true(per_folder[f] >= 100);
	texts_free(texts, nt);
	free(e);
}

static void
test_getters(void **state)
{
	clip_tokenizer *s = load(FIX "siglip", 64);
	clip_tokenizer *g = load(FIX "siglip2", 64);
	clip_tokenizer *g8 = load(FIX "siglip2", 8);
	clip_tokenizer *b = NULL;
	cdx_error err;
	(void)state;

	assert_int_equal(clip_tokenizer_kind(s), CLIP_TOKENIZER_SIGLIP);
	assert_int_equal(clip_tokenizer_context_len(s), 64);
	assert_int_equal(clip_tokenizer_vocab_size(s), 1000);
	assert_int_equal(clip_tokenizer_kind(g), CLIP_TOKENIZER_GEMMA);
	assert_int_equal(clip_tokenizer_context_len(g), 64);
	assert_int_equal(clip_tokenizer_vocab_size(g), 1200);
	assert_int_equal(clip_tokenizer_context_len(g8), 8);
	CDX_ASSERT_OK(clip_tokenizer_load_builtin(&b, &err), err.msg);
	assert_int_equal(clip_tokenizer_kind(b), CLIP_TOKENIZER_BPE);
	assert_int_equal(clip_tokenizer_context_len(b), CLIP_CONTEXT_LEN);
	assert_int_equal(clip_tokenizer_vocab_size(b), 49408);
	clip_tokenizer_free(b);
	clip_tokenizer_free(g8);
	clip_tokenizer_free(g);
	clip_tokenizer_free(s);
	clip_tokenizer_free(NULL);
}

/* Known ids of the fixture models, padding and truncation by hand. */
static void
test_padding_truncation(void **state)
{
	clip_tokenizer *s = load(FIX "siglip", 64);
	clip_tokenizer *g = load(FIX "siglip2", 8);
	clip_tokenizer *v = load(FIX "gemma-variant", 16);
	clip_tokenizer *sv = load(FIX "siglip-variant", 16);
	int32_t ids[CLIP_CONTEXT_LEN], ref[CLIP_CONTEXT_LEN];
	char big[4000];
	int n;
	(void)state;

	/* SigLIP: pieces, EOS (</s> = 1), padding with </s>. */
	n = tu_tokenize(s, "A photo of a DOG.", ids);
	assert_int_equal(n, 6);
	assert_int_equal(ids[5], 1);
	for (int k = 6; k < 64; k++)
		assert_int_equal(ids[k], 1);
	/* Canonicalisation: case, punctuation and white space do not
	 * matter, except white space at the start, which transformers
	 * keeps as a piece "\u2581" of its own. */
	assert_int_equal(tu_tokenize(s, "a, photo!! of \t a dog ", ref), 6);
	assert_memory_equal(ids, ref, 64 * sizeof(int32_t));
	assert_int_equal(tu_tokenize(s, "  a photo of a dog", ref), 7);
	assert_memory_equal(ids, ref + 1, 6 * sizeof(int32_t));
	/* A text over the context: 63 pieces and EOS, no padding. */
	memset(big, 0, sizeof(big));
	for (size_t k = 0; k + 4 < sizeof(big); k += 4)
		memcpy(big + k, "dog ", 4);
	assert_int_equal(tu_tokenize(s, big, ids), 64);
	assert_int_equal(ids[63], 1);
	assert_int_not_equal(ids[62], 1);
	/* n_tokens may be NULL. */
	assert_int_equal(clip_tokenize(s, "dog", 3, ids, NULL, NULL), 0);

	/* SigLIP2: no BOS, EOS (<eos> = 1), padding with <pad> = 0, and a
	 * truncated text keeps its EOS. */
	n = tu_tokenize(g, "a dog", ids);
	assert_true(n >= 2 && n < 8);
	assert_int_not_equal(ids[0], 2);
	assert_int_equal(ids[n - 1], 1);
	for (int k = n; k < 8; k++)
		assert_int_equal(ids[k], 0);
	assert_int_equal(tu_tokenize(g, big, ids), 8);
	assert_int_equal(ids[7], 1);
	/* Lower-cased: */
	assert_int_equal(tu_tokenize(g, "A DOG", ref), n);
	tu_tokenize(g, "a dog", ids);
	assert_memory_equal(ids, ref, 8 * sizeof(int32_t));
	/* A literal special token is that token. */
	n = tu_tokenize(g, "<eos>", ids);
	assert_int_equal(n, 2);
	assert_int_equal(ids[0], 1);
	assert_int_equal(ids[1], 1);

	/* The legacy variant: BOS 2, EOS <end_of_turn> 9, pad <unused0> 6,
	 * on the left; truncation on the left keeps the end of the text. */
	n = tu_tokenize(v, "a dog", ids);
	assert_true(n >= 3 && n < 16);
	for (int k = 0; k < 16 - n; k++)
		assert_int_equal(ids[k], 6);
	assert_int_equal(ids[16 - n], 2);
	assert_int_equal(ids[15], 9);
	assert_int_equal(tu_tokenize(v, big, ids), 16);
	assert_int_equal(ids[0], 2);
	assert_int_equal(ids[15], 9);
	assert_int_not_equal(ids[14], 6);

	/* The SigLIP variant: not lower-cased (upper case is unknown to the
	 * model: "\u2581" and <unk> = 2), padded on the left. */
	assert_int_equal(tu_tokenize(sv, "dog", ids), 2);
	assert_int_equal(ids[13], 1);
	assert_int_equal(ids[15], 1);
	assert_int_equal(tu_tokenize(sv, "DOG", ref), 3);
	assert_int_equal(ref[14], 2);
	assert_int_equal(ref[15], 1);
	assert_int_not_equal(ids[14], ref[14]);

	clip_tokenizer_free(sv);
	clip_tokenizer_free(v);
	clip_tokenizer_free(g);
	clip_tokenizer_free(s);
}

static void
test_missing_files(void **state)
{
	char path[512];
	const char *d;
	(void)state;

	snprintf(path, sizeof(path), "%s/nowhere", tmpdir);
	load_fails(path, 64, CDX_ENOTFOUND, "nowhere");
	d = mkfolder("empty");
	load_fails(d, 64, CDX_ENOTFOUND, "spiece.model");
	/* The config names SigLIP; only the SigLIP2 model is there. */
	d = mkfolder("wrong_model");
	put(d, "tokenizer_config.json",
	    "{\"tokenizer_class\": \"SiglipTokenizer\"}");
	snprintf(path, sizeof(path), "%s/tokenizer.model", d);
	copy_file(FIX "siglip2/tokenizer.model", path);
	load_fails(d, 64, CDX_ENOTFOUND, "spiece.model");
	/* Without a config, the file decides: tokenizer.model is Gemma. */
	d = mkfolder("gemma_bare");
	snprintf(path, sizeof(path), "%s/tokenizer.model", d);
	copy_file(FIX "siglip2/tokenizer.model", path);
	{
		clip_tokenizer *tok = load(d, 64);
		assert_int_equal(clip_tokenizer_kind(tok), CLIP_TOKENIZER_GEMMA);
		clip_tokenizer_free(tok);
	}
}

static void
test_corrupt_models(void **state)
{
	size_t len = 0;
	char *model = tu_read_file(FIX "siglip/spiece.model", &len);
	char path[512];
	const char *d;
	(void)state;

	assert_non_null(model);
	assert_true(len > 1000);
	/* Truncated, garbage, empty, and flipped bytes. */
	d = mkfolder("trunc");
	snprintf(path, sizeof(path), "%s/spiece.model", d);
	assert_int_equal(tu_write_file(path, model, len / 3), 0);
	load_fails(d, 64, CDX_EFORMAT, "spiece.model");
	d = mkfolder("garbage");
	snprintf(path, sizeof(path), "%s/spiece.model", d);
	write_text(path, "this is not a protocol buffer, it is text\n");
	load_fails(d, 64, CDX_EFORMAT, "spiece.model");
	d = mkfolder("zero");
	snprintf(path, sizeof(path), "%s/tokenizer.model", d);
	assert_int_equal(tu_write_file(path, "", 0), 0);
	load_fails(d, 64, CDX_EFORMAT, "tokenizer.model");
	/* Flipped bytes must never crash: loading either fails cleanly or
	 * gives a tokenizer that works. */
	d = mkfolder("flips");
	snprintf(path, sizeof(path), "%s/spiece.model", d);
	srand(7);
	for (int round = 0; round < 200; round++) {
		clip_tokenizer *tok = NULL;
		cdx_error err = { 0 };
		char *m = malloc(len);
		int32_t ids[CLIP_CONTEXT_LEN];
		int rc;
		assert_non_null(m);
		memcpy(m, model, len);
		for (int k = 0; k < 1 + round % 8; k++)
			m[(size_t)rand() % len] = (char)rand();
		assert_int_equal(tu_write_file(path, m, len), 0);
		free(m);
		rc = clip_tokenizer_load_sentencepiece(d, 64, &tok, &err);
		if (rc != 0) {
			assert_true(rc == CDX_EFORMAT);
			assert_non_null(strstr(err.msg, "spiece.model"));
			continue;
		}
		CDX_ASSERT_OK(clip_tokenize(tok, "a photo of a dog", 16, ids,
		    NULL, &err), err.msg);
		for (int k = 0; k < 64; k++)
			assert_true(ids[k] >= 0 &&
			    ids[k] < clip_tokenizer_vocab_size(tok));
		clip_tokenizer_free(tok);
	}
	free(model);
}

static void
test_bad_configs(void **state)
{
	const char *d;
	(void)state;

	d = fixture_copy("siglip", "malformed");
	put(d, "tokenizer_config.json", "{\"model_max_length\": 64,");
	load_fails(d, 64, CDX_EFORMAT, "tokenizer_config.json");
	d = fixture_copy("siglip", "notobject");
	put(d, "special_tokens_map.json", "[1, 2]");
	load_fails(d, 64, CDX_EFORMAT, "special_tokens_map.json");
	/* model_max_length other than the context length */
	d = fixture_copy("siglip", "maxlen");
	load_fails(d, 32, CDX_EFORMAT, "model_max_length");
	put(d, "tokenizer_config.json", "{\"model_max_length\": \"64\"}");
	load_fails(d, 64, CDX_EFORMAT, "model_max_length");
	/* a pad / EOS token the model lacks */
	d = fixture_copy("siglip", "pad");
	put(d, "tokenizer_config.json", "{\"added_tokens_decoder\": {}, "
	    "\"pad_token\": \"<nope>\"}");
	load_fails(d, 64, CDX_EFORMAT, "pad_token '<nope>'");
	d = fixture_copy("siglip2", "eos");
	put(d, "tokenizer_config.json", "{\"added_tokens_decoder\": {}, "
	    "\"eos_token\": \"</s>\"}");
	load_fails(d, 64, CDX_EFORMAT, "eos_token '</s>'");
	/* Without added_tokens_decoder, special_tokens_map.json's value
	 * wins (and is named). */
	d = fixture_copy("siglip", "legacy_pad");
	put(d, "tokenizer_config.json", "{\"pad_token\": \"<nope>\"}");
	{
		clip_tokenizer *tok = load(d, 64);
		clip_tokenizer_free(tok);
	}
	d = fixture_copy("gemma-variant", "legacy_eos");
	put(d, "special_tokens_map.json", "{\"eos_token\": {\"content\": "
	    "\"<missing>\"}}");
	load_fails(d, 16, CDX_EFORMAT, "special_tokens_map.json: eos_token");
	d = fixture_copy("siglip2", "padnull");
	put(d, "tokenizer_config.json", "{\"added_tokens_decoder\": {}, "
	    "\"pad_token\": null}");
	load_fails(d, 64, CDX_EFORMAT, "pad_token");
	d = fixture_copy("siglip2", "bosnull");
	put(d, "tokenizer_config.json", "{\"added_tokens_decoder\": {}, "
	    "\"bos_token\": null}");
	load_fails(d, 64, CDX_EFORMAT, "bos_token");
	d = fixture_copy("siglip2", "tokentype");
	put(d, "tokenizer_config.json", "{\"added_tokens_decoder\": {}, "
	    "\"eos_token\": 5}");
	load_fails(d, 64, CDX_EFORMAT, "eos_token");
	/* added_tokens_decoder that disagrees with the model */
	d = fixture_copy("siglip", "decoder");
	put(d, "tokenizer_config.json", "{\"added_tokens_decoder\": {\"1\": "
	    "{\"content\": \"<eos>\", \"special\": true}}}");
	load_fails(d, 64, CDX_EFORMAT, "added_tokens_decoder");
	put(d, "tokenizer_config.json", "{\"added_tokens_decoder\": "
	    "{\"100000\": {\"content\": \"x\"}}}");
	load_fails(d, 64, CDX_EFORMAT, "added_tokens_decoder");
	put(d, "tokenizer_config.json", "{\"added_tokens_decoder\": {\"one\": "
	    "{\"content\": \"</s>\"}}}");
	load_fails(d, 64, CDX_EFORMAT, "added_tokens_decoder");
	/* settings of the wrong type or value */
	d = fixture_copy("siglip2", "settings");
	put(d, "tokenizer_config.json", "{\"add_eos_token\": \"yes\"}");
	load_fails(d, 64, CDX_EFORMAT, "add_eos_token");
	put(d, "tokenizer_config.json", "{\"padding_side\": \"middle\"}");
	load_fails(d, 64, CDX_EFORMAT, "padding_side");
	put(d, "tokenizer_config.json", "{\"tokenizer_class\": "
	    "\"CLIPTokenizer\"}");
	load_fails(d, 64, CDX_EFORMAT, "CLIPTokenizer");
	put(d, "tokenizer_config.json", "{\"additional_special_tokens\": "
	    "[\"<nope>\"]}");
	load_fails(d, 64, CDX_EFORMAT, "additional_special_tokens");
	/* context lengths */
	load_fails(FIX "siglip2", 0, CDX_EINVAL, "context length");
	load_fails(FIX "siglip2", CLIP_CONTEXT_LEN + 1, CDX_EINVAL,
	    "context length");
	load_fails(FIX "siglip2", 1, CDX_EINVAL, "no room");
	d = fixture_copy("gemma-variant", "room");
	put(d, "tokenizer_config.json", "{\"add_bos_token\": true, "
	    "\"add_eos_token\": true}");
	load_fails(d, 2, CDX_EINVAL, "no room");
	{
		clip_tokenizer *tok = load(d, 3);
		int32_t ids[3];
		assert_int_equal(tu_tokenize(tok, "a dog", ids), 3);
		assert_int_equal(ids[0], 2);
		assert_int_equal(ids[2], 9);
		clip_tokenizer_free(tok);
	}
	{
		clip_tokenizer *tok = NULL;
		assert_int_equal(clip_tokenizer_load_sentencepiece(NULL, 64,
		    &tok, NULL), CDX_EINVAL);
		assert_int_equal(clip_tokenizer_load_sentencepiece(FIX "siglip",
		    64, NULL, NULL), CDX_EINVAL);
	}
}

static void
test_invalid_utf8(void **state)
{
	static const char *const bad[] = { "\xff", "a\xc3", "\xed\xa0\x80",
		"\xc0\xaf", "ok \xf4\x90\x80\x80", "\x80" };
	clip_tokenizer *toks[2] = { load(FIX "siglip", 64),
		load(FIX "siglip2", 64) };
	(void)state;

	for (int t = 0; t < 2; t++) {
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			int32_t ids[CLIP_CONTEXT_LEN];
			cdx_error err = { 0 };
			int n = -7;
			for (int k = 0; k < CLIP_CONTEXT_LEN; k++)
				ids[k] = -5;
			assert_int_equal(clip_tokenize(toks[t], bad[i],
			    strlen(bad[i]), ids, &n, &err), CDX_EUTF8);
			assert_non_null(strstr(err.msg, "byte offset"));
			assert_int_equal(n, -7);
			for (int k = 0; k < CLIP_CONTEXT_LEN; k++)
				assert_int_equal(ids[k], -5);
		}
		{
			int32_t ids[CLIP_CONTEXT_LEN];
			assert_int_equal(clip_tokenize(toks[t], NULL, 1, ids,
			    NULL, NULL), CDX_EINVAL);
			assert_int_equal(clip_tokenize(toks[t], "a", 1, NULL,
			    NULL, NULL), CDX_EINVAL);
			assert_int_equal(clip_tokenize(toks[t], NULL, 0, ids,
			    NULL, NULL), 0);
		}
		clip_tokenizer_free(toks[t]);
	}
}

/* The longest text, and one over the limit (see SPTOK_MAX_TEXT). */
static void
test_long_texts(void **state)
{
	clip_tokenizer *toks[3] = { load(FIX "siglip", 64),
		load(FIX "siglip2", 64), load(FIX "gemma-variant", 16) };
	size_t len = SPTOK_MAX_TEXT;
	char *big = malloc(SPTOK_MAX_TEXT + 2);
	(void)state;

	assert_non_null(big);
	for (size_t k = 0; k < len; k++)
		big[k] = "a photo of the dog. "[k % 20];
	for (int t = 0; t < 3; t++) {
		int32_t ids[CLIP_CONTEXT_LEN];
		cdx_error err = { 0 };
		int n = 0;
		CDX_ASSERT_OK(clip_tokenize(toks[t], big, len, ids, &n, &err),
		    err.msg);
		assert_int_equal(n, clip_tokenizer_context_len(toks[t]));
	}
	/* The slowest kind of text: a run of characters the unigram model
	 * does not know. */
	memset(big, 'X', SPTOK_MAX_TEXT + 1);
	{
		int32_t ids[CLIP_CONTEXT_LEN];
		cdx_error err = { 0 };
		int n = 0;
		CDX_ASSERT_OK(clip_tokenize(toks[0], big, SPTOK_MAX_TEXT, ids,
		    &n, &err), err.msg);
		assert_int_equal(n, 3); /* "\u2581", <unk>, </s> */
		assert_int_equal(clip_tokenize(toks[0], big, SPTOK_MAX_TEXT + 1,
		    ids, NULL, &err), CDX_ETOOBIG);
		assert_non_null(strstr(err.msg, "64 KiB"));
	}
	for (int t = 0; t < 3; t++)
		clip_tokenizer_free(toks[t]);
	free(big);
}

typedef struct thread_arg {
	const clip_tokenizer *tok;
	const text *texts;
	size_t n;
	int32_t (*out)[CLIP_CONTEXT_LEN];
	int fails;
} thread_arg;

static void *
thread_run(void *p)
{
	thread_arg *a = p;
	for (int round = 0; round < 3; round++) {
		for (size_t i = 0; i < a->n; i++) {
			int32_t ids[CLIP_CONTEXT_LEN] = { 0 };
			if (clip_tokenize(a->tok, a->texts[i].s, a->texts[i].len,
			    ids, NULL, NULL) != 0 ||
			    memcmp(ids, a->out[i], sizeof(ids)) != 0)
				a->fails++;
		}
	}
	return NULL;
}

/* One tokenizer, four threads, the same results as one thread. */
static void
test_shared_between_threads(void **state)
{
	size_t nt;
	text *texts = corpus_load(&nt);
	clip_tokenizer *toks[2] = { load(FIX "siglip", 64),
		load(FIX "siglip2", 64) };
	int32_t (*ref)[CLIP_CONTEXT_LEN] = calloc(nt, sizeof(*ref));
	(void)state;

	assert_non_null(ref);
	for (int t = 0; t < 2; t++) {
		pthread_t th[4];
		thread_arg args[4];
		for (size_t i = 0; i < nt; i++) {
			memset(ref[i], 0, sizeof(ref[i]));
			assert_int_equal(clip_tokenize(toks[t], texts[i].s,
			    texts[i].len, ref[i], NULL, NULL), 0);
		}
		for (int k = 0; k < 4; k++) {
			args[k] = (thread_arg){ toks[t], texts, nt, ref, 0 };
			assert_int_equal(pthread_create(&th[k], NULL, thread_run,
			    &args[k]), 0);
		}
		for (int k = 0; k < 4; k++) {
			assert_int_equal(pthread_join(th[k], NULL), 0);
			assert_int_equal(args[k].fails, 0);
		}
		clip_tokenizer_free(toks[t]);
	}
	free(ref);
	texts_free(texts, nt);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixtures),
		cmocka_unit_test(test_getters),
		cmocka_unit_test(test_padding_truncation),
		cmocka_unit_test(test_missing_files),
		cmocka_unit_test(test_corrupt_models),
		cmocka_unit_test(test_bad_configs),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_long_texts),
		cmocka_unit_test(test_shared_between_threads),
	};
	return cmocka_run_group_tests(tests, setup_tmpdir, teardown_tmpdir);
}
