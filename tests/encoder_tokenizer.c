/*
 * Tests of the CLIP tokenizer (encoder/tokenizer.c).
 *
 * The corpus tests compare every text of tests/fixtures/tokenizer/corpus.jsonl
 * with the ids that the independent Python reference (tools/ref_tokenize.py,
 * a port of OpenAI's simple_tokenizer.py) wrote to expected.jsonl, once with
 * the built-in vocabulary and once with Hugging Face vocab.json/merges.txt
 * files that the test derives from the .gz itself.  Run from the repository
 * root.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "encoder/clip.h"
#include "encoder/tokenizer_internal.h"
#include "tests/testutil.h"

#define FIX "tests/fixtures/tokenizer/"
#define NVOCAB 49408

/* ---- Helpers ---------------------------------------------------------- */

static clip_tokenizer *
load_builtin(void)
{
	clip_tokenizer *tok = NULL;
	cdx_error err = { 0 };
	int rc = clip_tokenizer_load_builtin(&tok, &err);
	if (rc != 0)
		fail_msg("load_builtin: %s: %s", cdx_strerror(rc), err.msg);
	assert_non_null(tok);
	return tok;
}

static void
spit(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* One corpus entry and its expected ids (without padding). */
typedef struct corpus_item {
	char *text;
	size_t len;
	int n;
	int32_t ids[CLIP_CONTEXT_LEN];
} corpus_item;

static corpus_item *
corpus_load(size_t *count)
{
	char *ctext = tu_read_fixture(FIX "corpus.jsonl", NULL);
	char *etext = tu_read_fixture(FIX "expected.jsonl", NULL);
	char *cl = ctext, *el = etext;
	corpus_item *items = NULL;
	size_t n = 0;

	for (;;) {
		cJSON *c = tu_jsonl_next(&cl), *e = tu_jsonl_next(&el), *t, *h;
		corpus_item *ci;
		if (!c || !e) {
			assert_true(!c && !e); /* same number of lines */
			break;
		}
		items = realloc(items, (n + 1) * sizeof(*items));
		assert_non_null(items);
		ci = &items[n++];
		t = cJSON_GetObjectItemCaseSensitive(c, "text");
		h = cJSON_GetObjectItemCaseSensitive(c, "hex");
		assert_true(cJSON_IsString(t));
		if (cJSON_IsString(h)) {
			ci->text = tu_hex_decode(h->valuestring, &ci->len);
		} else {
			ci->len = strlen(t->valuestring);
			ci->text = malloc(ci->len + 1);
			assert_non_null(ci->text);
			memcpy(ci->text, t->valuestring, ci->len + 1);
		}
		ci->n = cJSON_GetObjectItemCaseSensitive(e, "n")->valueint;
		assert_in_range(ci->n, 2, CLIP_CONTEXT_LEN);
		tu_json_ids(cJSON_GetObjectItemCaseSensitive(e, "ids"), ci->ids,
		    ci->n);
		cJSON_Delete(c);
		cJSON_Delete(e);
	}
	free(ctext);
	free(etext);
	*count = n;
	return items;
}

static void
corpus_free(corpus_item *items, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(items[i].text);
	free(items);
}

/* Compares the tokenizer with expected.jsonl; `map` (may be NULL) renames
 * expected ids.  Returns the number of texts checked. */
static size_t
check_corpus(const clip_tokenizer *tok, const int32_t *map)
{
	size_t n, bad = 0;
	corpus_item *items = corpus_load(&n);

	for (size_t i = 0; i < n; i++) {
		int32_t ids[CLIP_CONTEXT_LEN];
		cdx_error err = { 0 };
		int nt = -1, rc;
		rc = clip_tokenize(tok, items[i].text, items[i].len, ids, &nt,
		    &err);
		if (rc != 0)
			fail_msg("corpus line %zu: %s: %s", i + 1,
			    cdx_strerror(rc), err.msg);
		int ok = nt == items[i].n;
		for (int k = 0; k < CLIP_CONTEXT_LEN; k++) {
			int32_t want = k < items[i].n ? items[i].ids[k] :
			    items[i].ids[items[i].n - 1];
			if (map)
				want = map[want];
			ok &= ids[k] == want;
		}
		if (!ok && bad++ < 5) {
			print_error("corpus line %zu (%s): %d ids, expected %d;"
			    " got", i + 1, items[i].text, nt, items[i].n);
			for (int k = 0; k < nt && k < CLIP_CONTEXT_LEN; k++)
				print_error(" %d", ids[k]);
			print_error("\n  expected");
			for (int k = 0; k < items[i].n; k++)
				print_error(" %d", map ? map[items[i].ids[k]] :
				    items[i].ids[k]);
			print_error("\n");
		}
	}
	corpus_free(items, n);
	if (bad)
		fail_msg("%zu of %zu corpus texts differ", bad, n);
	return n;
}

/* ---- Hugging Face files, derived from the .gz ------------------------- */

/* The test's own bytes_to_unicode(): vocabulary order and code points. */
static void
test_byte_symbols(int order[256], uint32_t cp[256])
{
	int printable[256] = { 0 }, n = 0, extra = 0;
	for (int b = '!'; b <= '~'; b++)
		printable[b] = 1;
	for (int b = 0xA1; b <= 0xAC; b++)
		printable[b] = 1;
	for (int b = 0xAE; b <= 0xFF; b++)
		printable[b] = 1;
	for (int b = 0; b < 256; b++)
		if (printable[b]) {
			order[n++] = b;
			cp[b] = (uint32_t)b;
		}
	for (int b = 0; b < 256; b++)
		if (!printable[b]) {
			order[n++] = b;
			cp[b] = 256u + (uint32_t)extra++;
		}
}

typedef struct sbuf {
	char *p;
	size_t len, cap;
} sbuf;

static void
sb_add(sbuf *s, const char *d, size_t n)
{
	if (s->len + n + 1 > s->cap) {
		s->cap = (s->len + n + 1) * 2;
		s->p = realloc(s->p, s->cap);
		assert_non_null(s->p);
	}
	memcpy(s->p + s->len, d, n);
	s->len += n;
	s->p[s->len] = '\0';
}

static void
sb_str(sbuf *s, const char *d)
{
	sb_add(s, d, strlen(d));
}

/* Adds a JSON string literal (the symbols hold '"' and '\\'). */
static void
sb_json_str(sbuf *s, const char *d, size_t n)
{
	sb_add(s, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		if (d[i] == '"' || d[i] == '\\')
			sb_add(s, "\\", 1);
		sb_add(s, d + i, 1);
	}
	sb_add(s, "\"", 1);
}

static size_t
put_utf8(uint32_t c, char *o)
{
	if (c < 0x80) {
		o[0] = (char)c;
		return 1;
	}
	assert_true(c < 0x800);
	o[0] = (char)(0xC0 | (c >> 6));
	o[1] = (char)(0x80 | (c & 0x3F));
	return 2;
}

static char *
inflate_builtin(size_t *len)
{
	const unsigned char *gz;
	size_t gzlen;
	size_t cap = 4u << 20;
	char *out = malloc(cap);
	z_stream zs;

	assert_non_null(out);
	tkn_builtin_vocab_gz(&gz, &gzlen);
	assert_true(gzlen > 1000000);
	memset(&zs, 0, sizeof(zs));
	assert_int_equal(inflateInit2(&zs, 16 + MAX_WBITS), Z_OK);
	zs.next_in = (unsigned char *)(uintptr_t)gz;
	zs.avail_in = (unsigned)gzlen;
	zs.next_out = (unsigned char *)out;
	zs.avail_out = (unsigned)cap - 1;
	assert_int_equal(inflate(&zs, Z_FINISH), Z_STREAM_END);
	*len = zs.total_out;
	out[*len] = '\0';
	inflateEnd(&zs);
	return out;
}

/* Writes dir/vocab.json and dir/merges.txt as Hugging Face ships them for
 * CLIP: the first 48,894 merges, and the vocabulary in simple_tokenizer's
 * order with ids renamed by map (NULL: identity). */
static void
write_hf_files(const char *dir, const int32_t *map)
{
	size_t len;
	char *text = inflate_builtin(&len);
	char path[512], sym[16];
	int order[256];
	uint32_t cp[256];
	sbuf v = { 0 }, m = { 0 };
	char *line, *save = NULL;
	int id = 0, nm = 0;

	test_byte_symbols(order, cp);
	sb_str(&v, "{");
#define ADD_ENTRY(str, n) do { \
	char num_[32]; \
	if (id > 0) \
		sb_str(&v, ",\n"); \
	sb_json_str(&v, (str), (n)); \
	snprintf(num_, sizeof(num_), ": %d", map ? map[id] : id); \
	sb_str(&v, num_); \
	id++; \
} while (0)
	for (int eow = 0; eow < 2; eow++)
		for (int i = 0; i < 256; i++) {
			size_t n = put_utf8(cp[order[i]], sym);
			if (eow) {
				memcpy(sym + n, "</w>", 4);
				n += 4;
			}
			ADD_ENTRY(sym, n);
		}
	sb_str(&m, "#version: 0.2\n");
	line = strtok_r(text, "\n", &save); /* the .gz's header line */
	while (nm < TKN_NMERGES && (line = strtok_r(NULL, "\n", &save))) {
		char *sp = strchr(line, ' ');
		assert_non_null(sp);
		sb_str(&m, line);
		sb_str(&m, "\n");
		/* the merged symbol: the line without its space */
		char joined[256];
		size_t a = (size_t)(sp - line), b = strlen(sp + 1);
		assert_true(a + b < sizeof(joined));
		memcpy(joined, line, a);
		memcpy(joined + a, sp + 1, b);
		ADD_ENTRY(joined, a + b);
		nm++;
	}
	assert_int_equal(nm, TKN_NMERGES);
	ADD_ENTRY("<|startoftext|>", strlen("<|startoftext|>"));
	ADD_ENTRY("<|endoftext|>", strlen("<|endoftext|>"));
#undef ADD_ENTRY
	sb_str(&v, "}\n");
	assert_int_equal(id, NVOCAB);
	snprintf(path, sizeof(path), "%s/vocab.json", dir);
	spit(path, v.p, v.len);
	snprintf(path, sizeof(path), "%s/merges.txt", dir);
	spit(path, m.p, m.len);
	free(v.p);
	free(m.p);
	free(text);
}

static char tmpdir[256];

static int
setup_tmpdir(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/cdx_tok_XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int
teardown_tmpdir(void **state)
{
	char path[512];
	(void)state;
	snprintf(path, sizeof(path), "%s/vocab.json", tmpdir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/merges.txt", tmpdir);
	unlink(path);
	return rmdir(tmpdir);
}

/* ---- Tests ------------------------------------------------------------ */

static void
test_known_facts(void **state)
{
	clip_tokenizer *tok = load_builtin();
	int32_t ids[77];
	static const int32_t cat[] = { 49406, 320, 1125, 539, 320, 2368, 49407 };
	static const int32_t dog[] = { 49406, 320, 1929, 748, 49407 };
	(void)state;

	assert_int_equal(tu_tokenize(tok, "a photo of a cat", ids), 7);
	for (int k = 0; k < 77; k++)
		assert_int_equal(ids[k], k < 7 ? cat[k] : 49407);
	assert_int_equal(tu_tokenize(tok, "A Dog!!", ids), 5);
	for (int k = 0; k < 77; k++)
		assert_int_equal(ids[k], k < 5 ? dog[k] : 49407);
	/* n_tokens may be NULL */
	assert_int_equal(clip_tokenize(tok, "A Dog!!", 7, ids, NULL, NULL), 0);
	assert_int_equal(ids[3], 748);
	clip_tokenizer_free(tok);
}

static void
test_empty_texts(void **state)
{
	clip_tokenizer *tok = load_builtin();
	static const char *const texts[] = { "", " ", "\t\n \r", "\xc2\xa0",
		"\xe3\x80\x80 \xe2\x80\x83", "&nbsp;", "\xcd\x85" /* U+0345 */ };
	int32_t ids[77];
	int n = -1;
	(void)state;

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		assert_int_equal(tu_tokenize(tok, texts[i], ids), 2);
		assert_int_equal(ids[0], CLIP_TOKEN_SOT);
		for (int k = 1; k < 77; k++)
			assert_int_equal(ids[k], CLIP_TOKEN_EOT);
	}
	/* NULL text of length 0 */
	assert_int_equal(clip_tokenize(tok, NULL, 0, ids, &n, NULL), 0);
	assert_int_equal(n, 2);
	clip_tokenizer_free(tok);
}

static void
test_truncation(void **state)
{
	clip_tokenizer *tok = load_builtin();
	int32_t ids[77], ids2[77];
	char text[1200] = "";
	(void)state;

	/* 100 words "a": start, 75 times 320, end. */
	for (int i = 0; i < 100; i++)
		strcat(text, "a ");
	assert_int_equal(tu_tokenize(tok, text, ids), 77);
	assert_int_equal(ids[0], CLIP_TOKEN_SOT);
	for (int k = 1; k <= 75; k++)
		assert_int_equal(ids[k], 320);
	assert_int_equal(ids[76], CLIP_TOKEN_EOT);

	/* Exactly 75 tokens fit without truncation; 76 lose the last. */
	text[0] = '\0';
	for (int i = 0; i < 75; i++)
		strcat(text, "cat ");
	assert_int_equal(tu_tokenize(tok, text, ids), 77);
	assert_int_equal(ids[75], 2368);
	strcat(text, "dog");
	assert_int_equal(tu_tokenize(tok, text, ids2), 77);
	assert_memory_equal(ids, ids2, sizeof(ids));

	/* A long text keeps the tokens of its beginning. */
	text[0] = '\0';
	for (int i = 0; i < 15; i++) {
		char w[32];
		snprintf(w, sizeof(w), "word%d, ", i);
		strcat(text, w);
	}
	int n = tu_tokenize(tok, text, ids);
	assert_true(n < 77);
	strcat(text, "and many more words to push it well past the limit of "
	    "seventy-five tokens: one two three four five six seven eight "
	    "nine ten eleven twelve thirteen fourteen fifteen sixteen");
	assert_int_equal(tu_tokenize(tok, text, ids2), 77);
	assert_memory_equal(ids, ids2, (size_t)(n - 1) * sizeof(int32_t));
	assert_int_equal(ids2[76], CLIP_TOKEN_EOT);
	clip_tokenizer_free(tok);
}

static void
test_corpus_builtin(void **state)
{
	clip_tokenizer *tok = load_builtin();
	(void)state;
	assert_true(check_corpus(tok, NULL) >= 800);
	clip_tokenizer_free(tok);
}

static clip_tokenizer *
load_hf(cdx_error *err, int *rc)
{
	char v[512], m[512];
	clip_tokenizer *tok = NULL;
	snprintf(v, sizeof(v), "%s/vocab.json", tmpdir);
	snprintf(m, sizeof(m), "%s/merges.txt", tmpdir);
	*rc = clip_tokenizer_load_files(v, m, &tok, err);
	return tok;
}

static void
test_corpus_hf_files(void **state)
{
	cdx_error err = { 0 };
	clip_tokenizer *tok;
	int rc;
	(void)state;

	write_hf_files(tmpdir, NULL);
	tok = load_hf(&err, &rc);
	if (rc != 0)
		fail_msg("load_files: %s: %s", cdx_strerror(rc), err.msg);
	assert_true(check_corpus(tok, NULL) >= 800);
	clip_tokenizer_free(tok);
}

static void
test_hf_files_use_their_ids(void **state)
{
	int32_t *map = malloc(NVOCAB * sizeof(*map));
	cdx_error err = { 0 };
	clip_tokenizer *tok;
	int32_t ids[77];
	int rc;
	(void)state;

	/* A bijection of 0..49407 (7919 is prime to 49408 = 2^8 * 193). */
	assert_non_null(map);
	for (int i = 0; i < NVOCAB; i++)
		map[i] = (int32_t)(((int64_t)i * 7919 + 13) % NVOCAB);
	write_hf_files(tmpdir, map);
	tok = load_hf(&err, &rc);
	if (rc != 0)
		fail_msg("load_files: %s: %s", cdx_strerror(rc), err.msg);
	assert_int_equal(tu_tokenize(tok, "a photo of a cat", ids), 7);
	assert_int_equal(ids[0], map[49406]);
	assert_int_equal(ids[2], map[1125]);
	assert_int_equal(ids[6], map[49407]);
	assert_int_equal(ids[76], map[49407]);
	check_corpus(tok, map);
	clip_tokenizer_free(tok);
	free(map);
}

/* Writes vocab.json and merges.txt (NULL: leave as is). */
static void
write_files(const char *vocab, const char *merges)
{
	char path[512];

	if (vocab) {
		snprintf(path, sizeof(path), "%s/vocab.json", tmpdir);
		spit(path, vocab, strlen(vocab));
	}
	if (merges) {
		snprintf(path, sizeof(path), "%s/merges.txt", tmpdir);
		spit(path, merges, strlen(merges));
	}
}

/* Writes the files and expects loading to fail with `code` and a message
 * containing `needle`. */
static void
expect_bad_files(const char *vocab, const char *merges, int code,
    const char *needle)
{
	static int dummy;
	clip_tokenizer *tok = (clip_tokenizer *)&dummy; /* stays untouched */
	clip_tokenizer *got = tok;
	cdx_error err = { 0 };
	int rc;

	write_files(vocab, merges);
	{
		char v[512], m[512];
		snprintf(v, sizeof(v), "%s/vocab.json", tmpdir);
		snprintf(m, sizeof(m), "%s/merges.txt", tmpdir);
		rc = clip_tokenizer_load_files(v, m, &got, &err);
	}
	if (rc != code)
		fail_msg("expected %s, got %s (%s) for vocab %.60s / merges %.60s",
		    cdx_strerror(code), cdx_strerror(rc), err.msg,
		    vocab ? vocab : "(same)", merges ? merges : "(same)");
	assert_int_equal(err.code, code);
	assert_ptr_equal(got, tok);
	if (!strstr(err.msg, needle))
		fail_msg("message '%s' lacks '%s'", err.msg, needle);
}

/* A minimal consistent vocabulary: the 512 byte symbols, "ab", "ab</w>",
 * the special tokens (merges "a b" and "a b</w>").  The entry with id
 * `rename_id` gets another name; the one with id `dup_id` gets id 0. */
static char *
small_vocab_extra(int rename_id, int dup_id, const char *extra)
{
	int order[256];
	uint32_t cp[256];
	sbuf v = { 0 };
	char sym[16], num[32];
	int id = 0;

	test_byte_symbols(order, cp);
	sb_str(&v, "{");
	for (int eow = 0; eow < 2; eow++)
		for (int i = 0; i < 256; i++, id++) {
			size_t n = put_utf8(cp[order[i]], sym);
			if (eow) {
				memcpy(sym + n, "</w>", 4);
				n += 4;
			}
			if (id == rename_id)
				sb_str(&v, "\"renamed\"");
			else
				sb_json_str(&v, sym, n);
			snprintf(num, sizeof(num), ":%d,", id == dup_id ? 0 : id);
			sb_str(&v, num);
		}
	sb_str(&v, "\"ab\":512,\"ab</w>\":513,\"<|startoftext|>\":514");
	sb_str(&v, rename_id == 515 ? ",\"renamed\":515" :
	    ",\"<|endoftext|>\":515");
	sb_str(&v, extra);
	sb_str(&v, "}");
	return v.p;
}

static char *
small_vocab(int rename_id, int dup_id)
{
	return small_vocab_extra(rename_id, dup_id, "");
}

static void
test_hf_files_small_and_malformed(void **state)
{
	char *good = small_vocab(-1, -1), *v;
	const char *mgood = "#version: 0.2\na b\na b</w>\n";
	cdx_error err = { 0 };
	clip_tokenizer *tok;
	int32_t ids[77];
	int rc;
	(void)state;

	/* The small files work: "ab" is one token, "abab" two. */
	write_files(good, "#version: 0.2\na b\na b</w>\n\n\n");
	tok = load_hf(&err, &rc);
	CDX_ASSERT_OK(rc, err.msg);
	assert_int_equal(tu_tokenize(tok, "ab ab", ids), 4);
	assert_int_equal(ids[0], 514);
	assert_int_equal(ids[1], 513);
	assert_int_equal(ids[2], 513);
	assert_int_equal(ids[3], 515);
	assert_int_equal(tu_tokenize(tok, "abab", ids), 4);
	assert_int_equal(ids[1], 512);
	assert_int_equal(ids[2], 513);
	clip_tokenizer_free(tok);

	/* A merge list where a pair made by one pass ranks before the pass's
	 * own pair ("ab a" before "a b").  OpenAI's bpe() finishes the pass
	 * first; its answers, from tools/ref_tokenize.py's bpe() with these
	 * ranks: "ababa" -> ab ab a</w>, "abab" -> aba b</w>. */
	v = small_vocab_extra(-1, -1, ",\"aba\":516");
	write_files(v, "#version: 0.2\nab a\na b\n");
	free(v);
	tok = load_hf(&err, &rc);
	if (rc != 0)
		fail_msg("load_files: %s: %s", cdx_strerror(rc), err.msg);
	int32_t a_eow = (tu_tokenize(tok, "a", ids), ids[1]);
	int32_t b_eow = (tu_tokenize(tok, "b", ids), ids[1]);
	assert_int_equal(tu_tokenize(tok, "ababa", ids), 5);
	assert_int_equal(ids[1], 512);
	assert_int_equal(ids[2], 512);
	assert_int_equal(ids[3], a_eow);
	assert_int_equal(tu_tokenize(tok, "abab", ids), 4);
	assert_int_equal(ids[1], 516);
	assert_int_equal(ids[2], b_eow);
	clip_tokenizer_free(tok);

	/* vocab.json problems */
	expect_bad_files("not json", mgood, CDX_EFORMAT, "malformed JSON");
	expect_bad_files("[1, 2]", NULL, CDX_EFORMAT, "not a JSON object");
	expect_bad_files("{}", NULL, CDX_EFORMAT, "empty");
	expect_bad_files("{\"a\": \"1\"}", NULL, CDX_EFORMAT, "not an integer");
	expect_bad_files("{\"a\": 0.5}", NULL, CDX_EFORMAT, "not an integer");
	expect_bad_files("{\"a\": -1}", NULL, CDX_EFORMAT, "not an integer");
	expect_bad_files("{\"a\": 1e300}", NULL, CDX_EFORMAT, "not an integer");
	expect_bad_files("{\"a\": 0, \"b\": 7}", NULL, CDX_EFORMAT,
	    "not an integer");
	expect_bad_files("{\"a\": 0, \"a\": 1}", NULL, CDX_EFORMAT,
	    "listed twice");
	v = small_vocab(-1, 5);
	expect_bad_files(v, NULL, CDX_EFORMAT, "used by two tokens");
	free(v);
	v = small_vocab(515, -1);
	expect_bad_files(v, NULL, CDX_EFORMAT, "<|endoftext|>' is missing");
	free(v);
	v = small_vocab(0, -1); /* renames "!" */
	expect_bad_files(v, NULL, CDX_EFORMAT, "'!' of byte 0x21 is missing");
	free(v);

	/* merges.txt problems */
	expect_bad_files(good, "a b\n", CDX_EFORMAT, "'#version'");
	expect_bad_files(NULL, "#version: 0.2", CDX_EFORMAT, "no merges");
	expect_bad_files(NULL, "#version: 0.2\na b c\n", CDX_EFORMAT,
	    "merges.txt line 2: expected two symbols, found 3");
	expect_bad_files(NULL, "#version: 0.2\na b\n\na b</w>\n", CDX_EFORMAT,
	    "line 3: expected two symbols, found 0");
	expect_bad_files(NULL, "#version: 0.2\na b\nzz b\n", CDX_EFORMAT,
	    "line 3: 'zz' is not in");
	expect_bad_files(NULL, "#version: 0.2\nb a\n", CDX_EFORMAT,
	    "line 2: the merged 'ba' is not in");

	/* missing files */
	{
		char m[512];
		clip_tokenizer *t = NULL;
		snprintf(m, sizeof(m), "%s/merges.txt", tmpdir);
		rc = clip_tokenizer_load_files("/nonexistent/vocab.json", m, &t,
		    &err);
		assert_int_equal(rc, CDX_ENOTFOUND);
		assert_null(t);
		assert_non_null(strstr(err.msg, "/nonexistent/vocab.json"));
		assert_int_equal(clip_tokenizer_load_files(NULL, m, &t, NULL),
		    CDX_EINVAL);
	}
	free(good);
}

static void
test_invalid_utf8(void **state)
{
	static const struct {
		const char *bytes;
		size_t len;
		size_t offset;
	} cases[] = {
		{ "abc\x80", 4, 3 },              /* lone continuation byte */
		{ "abc\xbf rest", 9, 3 },
		{ "abc\xc3", 4, 3 },              /* truncated 2-byte sequence */
		{ "abc\xc3(", 5, 3 },
		{ "abc\xe2\x82", 5, 3 },          /* truncated 3-byte sequence */
		{ "abc\xf0\x9f\x98", 6, 3 },      /* truncated 4-byte sequence */
		{ "abc\xc0\xaf", 5, 3 },          /* overlong '/' */
		{ "abc\xc1\xbf", 5, 3 },
		{ "abc\xe0\x80\xaf", 6, 3 },      /* overlong, 3 bytes */
		{ "abc\xe0\x9f\xbf", 6, 3 },
		{ "abc\xf0\x80\x80\xaf", 7, 3 },  /* overlong, 4 bytes */
		{ "abc\xf0\x8f\xbf\xbf", 7, 3 },
		{ "abc\xed\xa0\x80", 6, 3 },      /* surrogate U+D800 */
		{ "abc\xed\xbf\xbf", 6, 3 },      /* surrogate U+DFFF */
		{ "abc\xf4\x90\x80\x80", 7, 3 },  /* U+110000 */
		{ "abc\xf5\x80\x80\x80", 7, 3 },
		{ "abc\xf8\x88\x80\x80\x80", 8, 3 },
		{ "abc\xfe", 4, 3 },
		{ "abc\xff", 4, 3 },
		{ "\xe2\x82\xac ok \xe2\x82", 9, 7 }, /* after valid text */
		{ "&amp;\x80", 6, 5 },
		{ "\xc3\xa9\xc3", 3, 2 },
	};
	clip_tokenizer *tok = load_builtin();
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int32_t ids[77];
		cdx_error err = { 0 };
		char want[64];
		int n = 12345;
		for (int k = 0; k < 77; k++)
			ids[k] = -7;
		int rc = clip_tokenize(tok, cases[i].bytes, cases[i].len, ids, &n,
		    &err);
		if (rc != CDX_EUTF8)
			fail_msg("case %zu: expected CDX_EUTF8, got %s", i,
			    cdx_strerror(rc));
		assert_int_equal(err.code, CDX_EUTF8);
		snprintf(want, sizeof(want), "byte offset %zu", cases[i].offset);
		if (!strstr(err.msg, want))
			fail_msg("case %zu: message '%s' lacks '%s'", i, err.msg,
			    want);
		/* outputs untouched */
		assert_int_equal(n, 12345);
		for (int k = 0; k < 77; k++)
			assert_int_equal(ids[k], -7);
	}
	clip_tokenizer_free(tok);
}

static void
test_valid_utf8_boundaries(void **state)
{
	static const char *const texts[] = { "\x7f", "\xc2\x80", "\xdf\xbf",
		"\xe0\xa0\x80", "\xed\x9f\xbf", "\xee\x80\x80", "\xef\xbf\xbf",
		"\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf" };
	clip_tokenizer *tok = load_builtin();
	int32_t ids[77];
	(void)state;

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		int n = tu_tokenize(tok, texts[i], ids);
		assert_in_range(n, 2, 6);
	}
	/* An embedded NUL is a character like any other. */
	assert_int_equal(clip_tokenize(tok, "a\0b", 3, ids, NULL, NULL), 0);
	clip_tokenizer_free(tok);
}

static void
test_bad_arguments(void **state)
{
	clip_tokenizer *tok = load_builtin();
	int32_t ids[77];
	cdx_error err = { 0 };
	(void)state;

	assert_int_equal(clip_tokenize(NULL, "a", 1, ids, NULL, &err),
	    CDX_EINVAL);
	assert_int_equal(clip_tokenize(tok, NULL, 1, ids, NULL, &err),
	    CDX_EINVAL);
	assert_int_equal(clip_tokenize(tok, "a", 1, NULL, NULL, &err),
	    CDX_EINVAL);
	assert_int_equal(clip_tokenizer_load_builtin(NULL, &err), CDX_EINVAL);
	/* Over the 256 MiB limit: refused before the text is read. */
	assert_int_equal(clip_tokenize(tok, "a", (size_t)257 << 20, ids, NULL,
	    &err), CDX_ETOOBIG);
	assert_non_null(strstr(err.msg, "256 MiB"));
	clip_tokenizer_free(NULL);
	clip_tokenizer_free(tok);
}

/* Huge words and texts finish (BPE is O(n log n)) and are truncated. */
static void
test_huge_inputs(void **state)
{
	clip_tokenizer *tok = load_builtin();
	size_t len = 1u << 20;
	char *text = malloc(len + 1);
	int32_t ids[77], ids2[77];
	int n;
	(void)state;

	assert_non_null(text);
	for (size_t i = 0; i < len; i++)
		text[i] = "abcdefgh"[(i * 7 + i / 3) % 8];
	text[len] = '\0';
	assert_int_equal(tu_tokenize(tok, text, ids), 77);
	for (size_t i = 0; i < len; i++)
		text[i] = i % 2 ? ' ' : 'z';
	n = tu_tokenize(tok, text, ids2);
	assert_int_equal(n, 77);
	assert_int_equal(tu_tokenize(tok, "z", ids), 3);
	for (int k = 1; k <= 75; k++)
		assert_int_equal(ids2[k], ids[1]);
	/* 2^20 "&amp;" fragments unescape into "&" runs */
	for (size_t i = 0; i + 5 <= len; i += 5)
		memcpy(text + i, "&amp;", 5);
	text[len - len % 5] = '\0';
	assert_int_equal(tu_tokenize(tok, text, ids), 77);
	free(text);
	clip_tokenizer_free(tok);
}

struct thread_arg {
	const clip_tokenizer *tok;
	int failures;
};

static void *
thread_main(void *p)
{
	struct thread_arg *a = p;
	static const int32_t cat[] = { 49406, 320, 1125, 539, 320, 2368, 49407 };
	for (int i = 0; i < 2000; i++) {
		int32_t ids[77];
		int n = 0;
		if (clip_tokenize(a->tok, "a photo of a cat", 16, ids, &n, NULL) ||
		    n != 7 || memcmp(ids, cat, sizeof(cat)) != 0)
			a->failures++;
	}
	return NULL;
}

static void
test_shared_between_threads(void **state)
{
	clip_tokenizer *tok = load_builtin();
	struct thread_arg args[4];
	pthread_t th[4];
	(void)state;

	for (int i = 0; i < 4; i++) {
		args[i].tok = tok;
		args[i].failures = 0;
		assert_int_equal(pthread_create(&th[i], NULL, thread_main,
		    &args[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(args[i].failures, 0);
	}
	clip_tokenizer_free(tok);
}

/* The generated tables are sorted as the lookups assume. */
static void
test_tables_sorted(void **state)
{
	(void)state;
	for (size_t i = 1; i < tkn_nentities; i++)
		assert_true(strcmp(tkn_entities[i - 1].name,
		    tkn_entities[i].name) < 0);
	for (size_t i = 1; i < tkn_lower_nruns; i++)
		assert_true(tkn_lower_runs[i - 1].last < tkn_lower_runs[i].first);
	for (size_t i = 1; i < tkn_ndropped_cps; i++)
		assert_true(tkn_dropped_cps[i - 1] < tkn_dropped_cps[i]);
	assert_int_equal(tkn_prop('a') & (TKN_L | TKN_N | TKN_O), TKN_L);
	assert_int_equal(tkn_prop('7') & (TKN_L | TKN_N | TKN_O), TKN_N);
	assert_int_equal(tkn_prop('!') & (TKN_L | TKN_N | TKN_O), TKN_O);
	assert_true(tkn_prop(0x3000) & TKN_RSPACE);
	assert_true(tkn_prop(0x1C) & TKN_PYSPACE);
	assert_false(tkn_prop(0x1C) & TKN_RSPACE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_facts),
		cmocka_unit_test(test_empty_texts),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_corpus_builtin),
		cmocka_unit_test(test_corpus_hf_files),
		cmocka_unit_test(test_hf_files_use_their_ids),
		cmocka_unit_test(test_hf_files_small_and_malformed),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_valid_utf8_boundaries),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_huge_inputs),
		cmocka_unit_test(test_shared_between_threads),
		cmocka_unit_test(test_tables_sorted),
	};
	return cmocka_run_group_tests(tests, setup_tmpdir, teardown_tmpdir);
}
