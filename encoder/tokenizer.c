/*
 * tokenizer.c - the CLIP tokenizer, exactly as OpenAI's simple_tokenizer.py
 * (without ftfy; see docs/TOKENIZER.md), and the clip_tokenizer handle that
 * also carries the SentencePiece tokenizers of encoder/sptok.c: a
 * clip_tokenizer of another kind passes every call on to its sptok.
 *
 * clip_tokenize() works on arrays of code points:
 *   strict UTF-8 decoding -> html.unescape twice -> strip, collapse \s runs,
 *   strip -> str.lower() -> the CLIP pre-tokenizer pattern -> UTF-8 bytes of
 *   each piece -> byte-level BPE -> ids.
 * The Unicode facts (classes, whitespace, lower case, entities) come from
 * the generated tables of unicode_tables.c.
 *
 * BPE works on vocabulary ids, not strings: a symbol's id is the id of its
 * string, and the merge table maps a pair of ids to its rank and to the id
 * of the joined string.  Loading checks that every string a merge can make
 * has an id and that ids are unique, so ids and strings are interchangeable.
 */
#include "common/file.h"
#include "common/utf8.h"
#include "encoder/clip.h"
#include "encoder/sptok.h"
#include "encoder/tokenizer_internal.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define CLIP_MAX_TOKENS (CLIP_CONTEXT_LEN - 2)
#define SOT_STR "<|startoftext|>"
#define EOT_STR "<|endoftext|>"
#define EOW_STR "</w>"
/* Longest text clip_tokenize() accepts. */
#define CLIP_MAX_TEXT (256u << 20)
/* Vocabulary files larger than this are refused. */
#define MAX_VOCAB_FILE (256u << 20)

typedef struct merge_slot {
	uint64_t key;      /* (left + 1) << 32 | right; 0 marks an empty slot */
	int32_t rank;
	int32_t id;        /* id of the joined symbol */
} merge_slot;

struct clip_tokenizer {
	int kind;                 /* enum clip_tokenizer_kind */
	int vocab_size;           /* ids are 0..vocab_size-1 */
	sptok *sp;                /* the tokenizer, for the SentencePiece kinds;
	                             NULL for CLIP_TOKENIZER_BPE */
	/* CLIP_TOKENIZER_BPE only: */
	int32_t byte_id[256];     /* a byte's symbol */
	int32_t byte_eow_id[256]; /* a byte's symbol with "</w>" (word end) */
	int32_t sot, eot;
	merge_slot *slots;
	uint64_t mask;            /* slot count - 1 (a power of two) */
	int shift;                /* 64 - log2(slot count) */
};

/* ---- Merge table ------------------------------------------------------ */

static inline uint64_t
merge_key(int32_t a, int32_t b)
{
	return ((uint64_t)(uint32_t)a + 1) << 32 | (uint32_t)b;
}

static inline const merge_slot *
merge_find(const clip_tokenizer *tok, int32_t a, int32_t b)
{
	uint64_t key = merge_key(a, b);
	uint64_t i = (key * 0x9E3779B97F4A7C15ull) >> tok->shift;

	for (;;) {
		const merge_slot *s = &tok->slots[i];
		if (s->key == key)
			return s;
		if (s->key == 0)
			return NULL;
		i = (i + 1) & tok->mask;
	}
}

/* Inserts or replaces (a later duplicate merge wins, as in Python's dict). */
static void
merge_put(clip_tokenizer *tok, int32_t a, int32_t b, int32_t rank, int32_t id)
{
	uint64_t key = merge_key(a, b);
	uint64_t i = (key * 0x9E3779B97F4A7C15ull) >> tok->shift;

	while (tok->slots[i].key != 0 && tok->slots[i].key != key)
		i = (i + 1) & tok->mask;
	tok->slots[i].key = key;
	tok->slots[i].rank = rank;
	tok->slots[i].id = id;
}

/* ---- String -> id map (used while loading) ---------------------------- */

typedef struct vmap_slot {
	const char *s;     /* NULL marks an empty slot */
	size_t len;
	int32_t id;
} vmap_slot;

typedef struct vmap {
	vmap_slot *slots;
	size_t mask;
} vmap;

static uint64_t
str_hash(const char *s, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
	return h ^ (h >> 29);
}

static int
vmap_init(vmap *m, size_t n)
{
	size_t cap = 16;
	while (cap < 2 * n)
		cap *= 2;
	m->slots = calloc(cap, sizeof(*m->slots));
	m->mask = cap - 1;
	return m->slots ? 0 : CDX_ENOMEM;
}

static vmap_slot *
vmap_slot_for(const vmap *m, const char *s, size_t len)
{
	size_t i = str_hash(s, len) & m->mask;
	for (;;) {
		vmap_slot *e = &m->slots[i];
		if (!e->s || (e->len == len && memcmp(e->s, s, len) == 0))
			return e;
		i = (i + 1) & m->mask;
	}
}

/* Later entries replace earlier ones (Python's dict(zip(...))).  The string
 * must outlive the map.  Returns the id it replaced, or -1. */
static int32_t
vmap_put(vmap *m, const char *s, size_t len, int32_t id)
{
	vmap_slot *e = vmap_slot_for(m, s, len);
	int32_t old = e->s ? e->id : -1;
	e->s = s;
	e->len = len;
	e->id = id;
	return old;
}

static int32_t
vmap_get(const vmap *m, const char *s, size_t len)
{
	const vmap_slot *e = vmap_slot_for(m, s, len);
	return e->s ? e->id : -1;
}

/* ---- Building a tokenizer from a vocabulary and merges ---------------- */

/* bytes_to_unicode(): the printable bytes stand for themselves, the others
 * for U+0100 onwards in byte order.  order[i] is the byte of vocabulary
 * entry i (0..255), cp[b] the code point standing for byte b. */
static void
byte_symbols(uint8_t order[256], uint32_t cp[256])
{
	int n = 0, extra = 0;
	for (int b = 0; b < 256; b++) {
		if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) ||
		    (b >= 0xAE && b <= 0xFF)) {
			order[n++] = (uint8_t)b;
			cp[b] = (uint32_t)b;
		}
	}
	for (int b = 0; b < 256; b++) {
		if (!((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) ||
		    (b >= 0xAE && b <= 0xFF))) {
			order[n++] = (uint8_t)b;
			cp[b] = 256u + (uint32_t)extra++;
		}
	}
}

size_t
tkn_utf8_put(uint32_t cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* One merge: two strings (not NUL-terminated) and the line it came from. */
typedef struct merge_def {
	const char *a, *b;
	size_t alen, blen;
	size_t line;
} merge_def;

/* Fills tok from a vocabulary map and the ranked merges.  `vname` and
 * `mname` name the sources in error messages. */
static int
tokenizer_build(clip_tokenizer *tok, const vmap *v, const merge_def *merges,
    size_t nmerges, const char *vname, const char *mname, cdx_error *err)
{
	uint8_t order[256];
	uint32_t cp[256];
	char buf[512];
	size_t cap = 16;

	byte_symbols(order, cp);
	for (int b = 0; b < 256; b++) {
		size_t n = tkn_utf8_put(cp[b], buf);
		tok->byte_id[b] = vmap_get(v, buf, n);
		memcpy(buf + n, EOW_STR, 4);
		tok->byte_eow_id[b] = vmap_get(v, buf, n + 4);
		if (tok->byte_id[b] < 0 || tok->byte_eow_id[b] < 0)
			return cdx_error_set(err, CDX_EFORMAT,
			    "%s: the symbol '%.*s' of byte 0x%02X is missing",
			    vname, (int)(n + (tok->byte_id[b] < 0 ? 0 : 4)), buf,
			    b);
	}
	tok->sot = vmap_get(v, SOT_STR, strlen(SOT_STR));
	tok->eot = vmap_get(v, EOT_STR, strlen(EOT_STR));
	if (tok->sot < 0 || tok->eot < 0)
		return cdx_error_set(err, CDX_EFORMAT, "%s: '%s' is missing",
		    vname, tok->sot < 0 ? SOT_STR : EOT_STR);

	while (cap < 2 * nmerges)
		cap *= 2;
	tok->slots = calloc(cap, sizeof(*tok->slots));
	if (!tok->slots)
		return cdx_error_set(err, CDX_ENOMEM, "tokenizer: out of memory");
	tok->mask = cap - 1;
	tok->shift = 64 - __builtin_ctzll((unsigned long long)cap);

	for (size_t i = 0; i < nmerges; i++) {
		const merge_def *m = &merges[i];
		int32_t a = vmap_get(v, m->a, m->alen);
		int32_t b = vmap_get(v, m->b, m->blen);
		int32_t ab = -1;
		if (m->alen + m->blen <= sizeof(buf)) {
			memcpy(buf, m->a, m->alen);
			memcpy(buf + m->alen, m->b, m->blen);
			ab = vmap_get(v, buf, m->alen + m->blen);
		}
		if (a < 0 || b < 0)
			return cdx_error_set(err, CDX_EFORMAT,
			    "%s line %zu: '%.*s' is not in %s", mname, m->line,
			    (int)(a < 0 ? m->alen : m->blen), a < 0 ? m->a : m->b,
			    vname);
		if (ab < 0)
			return cdx_error_set(err, CDX_EFORMAT,
			    "%s line %zu: the merged '%.*s%.*s' is not in %s",
			    mname, m->line, (int)m->alen, m->a, (int)m->blen,
			    m->b, vname);
		merge_put(tok, a, b, (int32_t)i, ab);
	}
	return 0;
}

/* Splits text into merges: the first line (a "#version" header) is skipped,
 * then up to `max` lines of two symbols each are read; lines after those
 * are ignored.  Blank lines may only end the file.  *out points into text. */
static int
merges_parse(char *text, size_t len, size_t max, const char *mname,
    merge_def **out, size_t *nout, cdx_error *err)
{
	merge_def *m;
	size_t n = 0, line = 1;
	char *p = text, *end = text + len;
	char *nl = memchr(p, '\n', len);

	if (!nl)
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: no merges after the header line", mname);
	m = malloc(max * sizeof(*m));
	if (!m)
		return cdx_error_set(err, CDX_ENOMEM, "tokenizer: out of memory");
	p = nl + 1;
	while (p < end && n < max) {
		char *e = memchr(p, '\n', (size_t)(end - p));
		char *f[3];
		size_t flen[3];
		int nf = 0;
		line++;
		if (!e)
			e = end;
		for (char *q = p; q < e;) {
			while (q < e && (*q == ' ' || *q == '\t' || *q == '\r'))
				q++;
			if (q == e)
				break;
			char *s = q;
			while (q < e && *q != ' ' && *q != '\t' && *q != '\r')
				q++;
			if (nf < 3) {
				f[nf] = s;
				flen[nf] = (size_t)(q - s);
			}
			nf++;
		}
		if (nf == 0) {
			/* Blank lines are allowed only at the end of the file. */
			char *q = e;
			while (q < end && (*q == '\n' || *q == ' ' ||
			    *q == '\t' || *q == '\r'))
				q++;
			if (q == end)
				break;
		}
		if (nf != 2) {
			free(m);
			return cdx_error_set(err, CDX_EFORMAT,
			    "%s line %zu: expected two symbols, found %d", mname,
			    line, nf);
		}
		m[n].a = f[0];
		m[n].alen = flen[0];
		m[n].b = f[1];
		m[n].blen = flen[1];
		m[n].line = line;
		n++;
		p = e + 1;
	}
	*out = m;
	*nout = n;
	return 0;
}

/* Inflates the beginning of the embedded .gz, up to and including its
 * first `nlines` lines (the file holds far more merges than CLIP uses),
 * into a NUL-terminated buffer. */
static int
builtin_inflate(size_t nlines, char **out, size_t *out_len, cdx_error *err)
{
	const unsigned char *gz;
	size_t gzlen, cap = 1u << 20, seen = 0, scanned = 0;
	z_stream zs;
	char *buf;
	int zrc = Z_OK, rc = 0;

	tkn_builtin_vocab_gz(&gz, &gzlen);
	if (gzlen > UINT_MAX)
		return cdx_error_set(err, CDX_EINTERNAL,
		    "built-in vocabulary: bad embedded file (%zu bytes)", gzlen);
	buf = malloc(cap + 1);
	if (!buf)
		return cdx_error_set(err, CDX_ENOMEM, "tokenizer: out of memory");
	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
		free(buf);
		return cdx_error_set(err, CDX_ENOMEM,
		    "built-in vocabulary: zlib initialisation failed");
	}
	zs.next_in = (unsigned char *)(uintptr_t)gz;
	zs.avail_in = (unsigned)gzlen;
	while (seen < nlines && zrc != Z_STREAM_END) {
		if (zs.total_out == cap) {
			char *nb = realloc(buf, 2 * cap + 1);
			if (!nb) {
				rc = cdx_error_set(err, CDX_ENOMEM,
				    "tokenizer: out of memory");
				goto out_end;
			}
			buf = nb;
			cap *= 2;
		}
		zs.next_out = (unsigned char *)buf + zs.total_out;
		zs.avail_out = (unsigned)(cap - zs.total_out);
		if (zs.avail_out > 65536)
			zs.avail_out = 65536;
		zrc = inflate(&zs, Z_NO_FLUSH);
		if (zrc != Z_OK && zrc != Z_STREAM_END) {
			rc = cdx_error_set(err, CDX_EINTERNAL,
			    "built-in vocabulary: inflate failed (zlib %d)", zrc);
			goto out_end;
		}
		for (; scanned < zs.total_out && seen < nlines; scanned++)
			seen += buf[scanned] == '\n';
	}
	buf[scanned] = '\0';
	*out = buf;
	*out_len = scanned;
out_end:
	inflateEnd(&zs);
	if (rc)
		free(buf);
	return rc;
}

static clip_tokenizer *
tokenizer_alloc(void)
{
	clip_tokenizer *tok = calloc(1, sizeof(clip_tokenizer));
	if (tok)
		tok->kind = CLIP_TOKENIZER_BPE;
	return tok;
}

int
clip_tokenizer_load_builtin(clip_tokenizer **out, cdx_error *err)
{
	static const char *const name = "built-in vocabulary";
	clip_tokenizer *tok = NULL;
	char *text = NULL, *strs = NULL, *sp;
	merge_def *merges = NULL;
	size_t len = 0, nmerges = 0, total = 0;
	uint8_t order[256];
	uint32_t cp[256];
	vmap v = { 0 };
	int32_t id = 0;
	int rc;

	if (!out)
		return cdx_error_set(err, CDX_EINVAL, "tokenizer: out is NULL");
	rc = builtin_inflate(1 + TKN_NMERGES, &text, &len, err);
	if (rc)
		return rc;
	rc = merges_parse(text, len, TKN_NMERGES, name, &merges, &nmerges, err);
	if (rc)
		goto out_free_text;
	if (nmerges != TKN_NMERGES) {
		rc = cdx_error_set(err, CDX_EINTERNAL, "%s: %zu merges, not %d",
		    name, nmerges, TKN_NMERGES);
		goto out_free_merges;
	}

	/* The vocabulary, in simple_tokenizer.py's order: the 256 byte
	 * symbols, the same with "</w>", the merges' results, SOT, EOT. */
	for (size_t i = 0; i < nmerges; i++)
		total += merges[i].alen + merges[i].blen;
	strs = malloc(total + 256 * 4 * 2 + 4 * 256);
	rc = CDX_ENOMEM;
	if (!strs || vmap_init(&v, 512 + nmerges + 2) != 0) {
		cdx_error_set(err, rc, "tokenizer: out of memory");
		goto out_free_strs;
	}
	byte_symbols(order, cp);
	sp = strs;
	for (int eow = 0; eow < 2; eow++) {
		for (int i = 0; i < 256; i++) {
			size_t n = tkn_utf8_put(cp[order[i]], sp);
			if (eow) {
				memcpy(sp + n, EOW_STR, 4);
				n += 4;
			}
			vmap_put(&v, sp, n, id++);
			sp += n;
		}
	}
	for (size_t i = 0; i < nmerges; i++) {
		memcpy(sp, merges[i].a, merges[i].alen);
		memcpy(sp + merges[i].alen, merges[i].b, merges[i].blen);
		vmap_put(&v, sp, merges[i].alen + merges[i].blen, id++);
		sp += merges[i].alen + merges[i].blen;
	}
	vmap_put(&v, SOT_STR, strlen(SOT_STR), id++);
	vmap_put(&v, EOT_STR, strlen(EOT_STR), id++);

	tok = tokenizer_alloc();
	if (!tok) {
		cdx_error_set(err, rc, "tokenizer: out of memory");
		goto out_free_strs;
	}
	rc = tokenizer_build(tok, &v, merges, nmerges, name, name, err);
	if (rc) {
		clip_tokenizer_free(tok);
		goto out_free_strs;
	}
	tok->vocab_size = id;
	*out = tok;
out_free_strs:
	free(v.slots);
	free(strs);
out_free_merges:
	free(merges);
out_free_text:
	free(text);
	return rc;
}

/* Fills the map from vocab.json: an object of string -> unique id; *count
 * gets the number of entries. */
static int
vocab_json_parse(const cJSON *root, const char *path, vmap *v, size_t *count,
    cdx_error *err)
{
	const cJSON *it;
	int32_t *owner;
	size_t n = 0;
	int rc = 0;

	if (!cJSON_IsObject(root))
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: not a JSON object of token -> id", path);
	cJSON_ArrayForEach(it, root)
		n++;
	if (n == 0)
		return cdx_error_set(err, CDX_EFORMAT, "%s: empty vocabulary",
		    path);
	if (vmap_init(v, n) != 0)
		return cdx_error_set(err, CDX_ENOMEM, "%s: out of memory", path);
	/* owner[id] marks ids in use, to find ids given twice. */
	owner = calloc(n, sizeof(*owner));
	if (!owner)
		return cdx_error_set(err, CDX_ENOMEM, "%s: out of memory", path);
	cJSON_ArrayForEach(it, root) {
		double d = it->valuedouble;
		int32_t id;
		if (!cJSON_IsNumber(it) || !(d >= 0 && d < (double)n) ||
		    d != (double)(int32_t)d) {
			rc = cdx_error_set(err, CDX_EFORMAT,
			    "%s: the id of '%.64s' is not an integer in 0..%zu",
			    path, it->string, n - 1);
			goto out_free_owner;
		}
		id = (int32_t)d;
		if (vmap_put(v, it->string, strlen(it->string), id) >= 0) {
			rc = cdx_error_set(err, CDX_EFORMAT,
			    "%s: the token '%.64s' is listed twice", path,
			    it->string);
			goto out_free_owner;
		}
		if (owner[id]) {
			rc = cdx_error_set(err, CDX_EFORMAT,
			    "%s: id %d is used by two tokens ('%.64s' is one)",
			    path, id, it->string);
			goto out_free_owner;
		}
		owner[id] = 1;
	}
	*count = n;
out_free_owner:
	free(owner);
	return rc;
}

int
clip_tokenizer_load_files(const char *vocab_json, const char *merges_txt,
    clip_tokenizer **out, cdx_error *err)
{
	clip_tokenizer *tok;
	char *vtext = NULL, *mtext = NULL;
	size_t vlen = 0, mlen = 0, nmerges = 0, nvocab = 0;
	merge_def *merges = NULL;
	cJSON *root = NULL;
	vmap v = { 0 };
	int rc;

	if (!vocab_json || !merges_txt || !out)
		return cdx_error_set(err, CDX_EINVAL,
		    "tokenizer: NULL argument");
	rc = cdx_read_file(vocab_json, MAX_VOCAB_FILE, &vtext, &vlen, err);
	if (rc)
		return rc;
	rc = cdx_read_file(merges_txt, MAX_VOCAB_FILE, &mtext, &mlen, err);
	if (rc)
		goto out_free_vtext;
	root = cJSON_ParseWithLength(vtext, vlen);
	if (!root) {
		const char *at = cJSON_GetErrorPtr();
		rc = cdx_error_set(err, CDX_EFORMAT,
		    "%s: malformed JSON near byte %td", vocab_json,
		    at && at >= vtext && at <= vtext + vlen ? at - vtext :
		    (ptrdiff_t)-1);
		goto out_free_mtext;
	}
	rc = vocab_json_parse(root, vocab_json, &v, &nvocab, err);
	if (rc)
		goto out_free_json;
	if (strncmp(mtext, "#version", 8) != 0) {
		rc = cdx_error_set(err, CDX_EFORMAT,
		    "%s: does not start with a '#version' line", merges_txt);
		goto out_free_json;
	}
	rc = merges_parse(mtext, mlen, TKN_NMERGES, merges_txt, &merges,
	    &nmerges, err);
	if (rc)
		goto out_free_json;
	tok = tokenizer_alloc();
	if (!tok) {
		rc = cdx_error_set(err, CDX_ENOMEM, "tokenizer: out of memory");
		goto out_free_merges;
	}
	rc = tokenizer_build(tok, &v, merges, nmerges, vocab_json, merges_txt,
	    err);
	if (rc) {
		clip_tokenizer_free(tok);
		goto out_free_merges;
	}
	tok->vocab_size = (int)nvocab;
	*out = tok;
out_free_merges:
	free(merges);
out_free_json:
	free(v.slots);
	cJSON_Delete(root);
out_free_mtext:
	free(mtext);
out_free_vtext:
	free(vtext);
	return rc;
}

int
clip_tokenizer_load_sentencepiece(const char *dir, int context_len,
    clip_tokenizer **out, cdx_error *err)
{
	clip_tokenizer *tok;
	sptok *sp = NULL;
	int rc;

	if (!dir || !out)
		return cdx_error_set(err, CDX_EINVAL,
		    "tokenizer: NULL argument");
	rc = sptok_load(dir, context_len, &sp, err);
	if (rc)
		return rc;
	tok = calloc(1, sizeof(*tok));
	if (!tok) {
		sptok_free(sp);
		return cdx_error_set(err, CDX_ENOMEM, "tokenizer: out of memory");
	}
	tok->kind = sptok_kind(sp);
	tok->vocab_size = sptok_vocab_size(sp);
	tok->sp = sp;
	*out = tok;
	return 0;
}

void
clip_tokenizer_free(clip_tokenizer *tok)
{
	if (!tok)
		return;
	sptok_free(tok->sp);
	free(tok->slots);
	free(tok);
}

int
clip_tokenizer_kind(const clip_tokenizer *tok)
{
	return tok->kind;
}

int
clip_tokenizer_context_len(const clip_tokenizer *tok)
{
	return tok->sp ? sptok_context_len(tok->sp) : CLIP_CONTEXT_LEN;
}

int
clip_tokenizer_vocab_size(const clip_tokenizer *tok)
{
	return tok->vocab_size;
}

/* ---- Text cleaning ---------------------------------------------------- */

int
tkn_utf8_decode(const unsigned char *s, size_t len, uint32_t *out, size_t *nout,
    cdx_error *err)
{
	size_t i = 0, n = 0, k;
	const char *why;

	for (; i < len; i += k)
		if ((k = cdx_utf8_next(s + i, len - i, &out[n++], &why)) == 0)
			/* a byte that cannot start a sequence is named */
			return s[i] < 0xC2 || s[i] > 0xF4 ?
			    cdx_error_set(err, CDX_EUTF8, "invalid UTF-8 at byte "
			    "offset %zu (0x%02X): %s", i, s[i], why) :
			    cdx_error_set(err, CDX_EUTF8, "invalid UTF-8 at byte "
			    "offset %zu: %s", i, why);
	*nout = n;
	return 0;
}

static int
entity_cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const tkn_entity *)elem)->name);
}

/* Looks up the HTML5 entity named by n code points (ASCII, else none). */
static const tkn_entity *
entity_find(const uint32_t *s, size_t n)
{
	char name[40];

	if (n >= sizeof(name))
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] >= 0x80)
			return NULL;
		name[i] = (char)s[i];
	}
	name[n] = '\0';
	return bsearch(name, tkn_entities, tkn_nentities, sizeof(tkn_entity),
	    entity_cmp);
}

static int
u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Writes what html.unescape makes of the numeric reference `num` (already
 * saturated at 0x110000); returns the number of code points (0 or 1). */
static size_t
charref_put(uint32_t num, uint32_t *out)
{
	for (size_t i = 0; i < tkn_ncharrefs; i++) {
		if (tkn_charrefs[i].num == num) {
			*out = tkn_charrefs[i].cp;
			return 1;
		}
	}
	if ((num >= 0xD800 && num <= 0xDFFF) || num > TKN_MAX_CP) {
		*out = 0xFFFD;
		return 1;
	}
	if (bsearch(&num, tkn_dropped_cps, tkn_ndropped_cps, sizeof(uint32_t),
	    u32_cmp))
		return 0;
	*out = num;
	return 1;
}

static int
is_digit(uint32_t c)
{
	return c >= '0' && c <= '9';
}

static int
hex_val(uint32_t c)
{
	if (c >= '0' && c <= '9')
		return (int)(c - '0');
	if (c >= 'a' && c <= 'f')
		return (int)(c - 'a' + 10);
	if (c >= 'A' && c <= 'F')
		return (int)(c - 'A' + 10);
	return -1;
}

/* Python's html.unescape() on n code points; out has room for n (the result
 * is never longer).  Returns the result's length. */
static size_t
html_unescape(const uint32_t *in, size_t n, uint32_t *out)
{
	size_t i = 0, o = 0;

	while (i < n) {
		size_t j = i + 1;
		if (in[i] != '&' || j >= n) {
			out[o++] = in[i++];
			continue;
		}
		if (in[j] == '#') {
			/* &#[0-9]+;? or &#[xX][0-9a-fA-F]+;? */
			uint32_t num = 0;
			size_t k = j + 1;
			int base = 10;
			if (k < n && (in[k] == 'x' || in[k] == 'X') &&
			    k + 1 < n && hex_val(in[k + 1]) >= 0) {
				base = 16;
				k++;
			} else if (!(k < n && is_digit(in[k]))) {
				out[o++] = in[i++]; /* no match: a plain '&' */
				continue;
			}
			for (; k < n; k++) {
				int d = base == 16 ? hex_val(in[k]) :
				    is_digit(in[k]) ? (int)(in[k] - '0') : -1;
				if (d < 0)
					break;
				num = num * (uint32_t)base + (uint32_t)d;
				if (num > TKN_MAX_CP)
					num = TKN_MAX_CP + 1; /* saturate */
			}
			if (k < n && in[k] == ';')
				k++;
			o += charref_put(num, out + o);
			i = k;
			continue;
		}
		/* [^\t\n\f <&#;]{1,32};? : a name */
		size_t m = 0;
		while (j + m < n && m < 32) {
			uint32_t c = in[j + m];
			if (c == '\t' || c == '\n' || c == '\f' || c == ' ' ||
			    c == '<' || c == '&' || c == '#' || c == ';')
				break;
			m++;
		}
		if (m == 0) {
			out[o++] = in[i++];
			continue;
		}
		size_t slen = m + (j + m < n && in[j + m] == ';');
		const tkn_entity *e = entity_find(in + j, slen);
		size_t x = slen;
		/* Else the longest prefix that names an entity (at least 2). */
		while (!e && --x >= 2)
			e = entity_find(in + j, x);
		if (e) {
			out[o++] = e->cp[0];
			if (e->cp[1])
				out[o++] = e->cp[1];
			for (size_t k = x; k < slen; k++)
				out[o++] = in[j + k];
		} else {
			for (size_t k = i; k < j + slen; k++)
				out[o++] = in[k];
		}
		i = j + slen;
	}
	return o;
}

/* basic_clean's strip() then whitespace_clean(): in place; returns the new
 * length. */
static size_t
whitespace_clean(uint32_t *s, size_t n)
{
	size_t lo = 0, hi = n, o = 0;

	for (int pass = 0; pass < 2; pass++) {
		while (lo < hi && (tkn_prop(s[lo]) & TKN_PYSPACE))
			lo++;
		while (hi > lo && (tkn_prop(s[hi - 1]) & TKN_PYSPACE))
			hi--;
		if (pass == 1)
			break;
		/* re.sub(r'\s+', ' ') */
		o = 0;
		for (size_t i = lo; i < hi;) {
			if (tkn_prop(s[i]) & TKN_RSPACE) {
				while (i < hi && (tkn_prop(s[i]) & TKN_RSPACE))
					i++;
				s[o++] = ' ';
			} else {
				s[o++] = s[i++];
			}
		}
		lo = 0;
		hi = o;
	}
	if (lo > 0)
		memmove(s, s + lo, (hi - lo) * sizeof(*s));
	return hi - lo;
}

/* The lower-case mapping of cp other than U+03A3; returns its length. */
static size_t
lower_cp(uint32_t cp, uint32_t *out)
{
	size_t lo = 0, hi = tkn_lower_nruns;

	if (!(tkn_prop(cp) & TKN_LOWER)) {
		*out = cp;
		return 1;
	}
	for (size_t i = 0; i < tkn_lower_nmultis; i++) {
		if (tkn_lower_multis[i].cp == cp) {
			for (uint32_t k = 0; k < tkn_lower_multis[i].n; k++)
				out[k] = tkn_lower_multis[i].to[k];
			return tkn_lower_multis[i].n;
		}
	}
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const tkn_lower_run *r = &tkn_lower_runs[mid];
		if (cp < r->first) {
			hi = mid;
		} else if (cp > r->last) {
			lo = mid + 1;
		} else {
			if ((cp - r->first) % (uint32_t)r->stride == 0) {
				*out = (uint32_t)((int32_t)cp + r->delta);
				return 1;
			}
			break;
		}
	}
	*out = cp;
	return 1;
}

size_t
tkn_lower_char(uint32_t cp, uint32_t out[3])
{
	if (cp < 0x80) {
		out[0] = cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
		return 1;
	}
	if (cp == 0x3A3) {
		out[0] = 0x3C3;
		return 1;
	}
	return lower_cp(cp, out);
}

/* CPython's handle_capital_sigma(): U+03A3 lower-cases to final sigma after
 * a cased letter, unless one follows (case-ignorable characters skipped). */
static uint32_t
lower_sigma(const uint32_t *s, size_t n, size_t i)
{
	size_t j = i;
	int final = 0;

	while (j > 0 && (tkn_prop(s[j - 1]) & TKN_CASE_IGN))
		j--;
	final = j > 0 && (tkn_prop(s[j - 1]) & TKN_CASED);
	if (final) {
		j = i + 1;
		while (j < n && (tkn_prop(s[j]) & TKN_CASE_IGN))
			j++;
		final = j == n || !(tkn_prop(s[j]) & TKN_CASED);
	}
	return final ? 0x3C2 : 0x3C3;
}

/* str.lower(); out has room for 3 * n.  Returns the result's length. */
static size_t
lower_str(const uint32_t *s, size_t n, uint32_t *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < 0x80) {
			out[o++] = s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i];
		} else if (s[i] == 0x3A3) {
			out[o++] = lower_sigma(s, n, i);
		} else {
			o += lower_cp(s[i], out + o);
		}
	}
	return o;
}

/* ---- Pre-tokenizer ---------------------------------------------------- */

/* Does c match the ASCII letter or symbol `a` under re.IGNORECASE? */
static inline int
ci_eq(uint32_t c, char a)
{
	if (c == (uint32_t)a)
		return 1;
	if (a >= 'a' && a <= 'z')
		return c == (uint32_t)(a - 32) || (a == 's' && c == 0x17F);
	return 0;
}

static int
ci_match(const uint32_t *s, size_t n, size_t i, const char *lit)
{
	size_t k = 0;
	for (; lit[k]; k++)
		if (i + k >= n || !ci_eq(s[i + k], lit[k]))
			return 0;
	return 1;
}

/* The CLIP pattern at position i (re.findall scans forward from i).
 * Returns the length of the match there, 0 if nothing matches at i. */
static size_t
pretok_match(const uint32_t *s, size_t n, size_t i)
{
	static const char *const lits[] = { SOT_STR, EOT_STR, "'s", "'t", "'re",
		"'ve", "'m", "'ll", "'d" };
	unsigned p;
	size_t j;

	if (s[i] == '<' || s[i] == '\'') {
		for (size_t k = 0; k < sizeof(lits) / sizeof(lits[0]); k++)
			if (ci_match(s, n, i, lits[k]))
				return strlen(lits[k]);
	}
	p = tkn_prop(s[i]);
	if (p & TKN_L) {
		for (j = i + 1; j < n && (tkn_prop(s[j]) & TKN_L); j++)
			;
		return j - i;
	}
	if (p & TKN_N)
		return 1;
	if (p & TKN_O) {
		for (j = i + 1; j < n && (tkn_prop(s[j]) & TKN_O); j++)
			;
		return j - i;
	}
	return 0;
}

/* Is s[0..n) exactly the ASCII string lit? */
static int
lit_equal(const uint32_t *s, size_t n, const char *lit)
{
	size_t k = 0;
	for (; k < n && lit[k]; k++)
		if (s[k] != (uint32_t)(unsigned char)lit[k])
			return 0;
	return k == n && lit[k] == '\0';
}

/* ---- BPE -------------------------------------------------------------- */

/* A candidate merge: rank << 32 | position of the pair's left symbol. */
typedef uint64_t bpe_cand;

typedef struct bpe_work {
	int32_t *sym, *next, *prev;
	bpe_cand *heap, *defer;
	size_t cap;              /* symbols the arrays hold */
} bpe_work;

static void
bpe_work_free(bpe_work *w)
{
	free(w->sym);
	free(w->next);
	free(w->prev);
	free(w->heap);
	free(w->defer);
}

static int
bpe_work_reserve(bpe_work *w, size_t n)
{
	bpe_work nw;
	size_t cap = w->cap ? w->cap : 64;

	if (n <= w->cap)
		return 0;
	while (cap < n)
		cap *= 2;
	nw.cap = cap;
	nw.sym = malloc(cap * sizeof(int32_t));
	nw.next = malloc(cap * sizeof(int32_t));
	nw.prev = malloc(cap * sizeof(int32_t));
	nw.heap = malloc(3 * cap * sizeof(bpe_cand));
	nw.defer = malloc(2 * cap * sizeof(bpe_cand));
	if (!nw.sym || !nw.next || !nw.prev || !nw.heap || !nw.defer) {
		bpe_work_free(&nw);
		return CDX_ENOMEM;
	}
	bpe_work_free(w);
	*w = nw;
	return 0;
}

static void
heap_push(bpe_cand *h, size_t *n, bpe_cand c)
{
	size_t i = (*n)++;
	while (i > 0) {
		size_t up = (i - 1) / 2;
		if (h[up] <= c)
			break;
		h[i] = h[up];
		i = up;
	}
	h[i] = c;
}

static bpe_cand
heap_pop(bpe_cand *h, size_t *n)
{
	bpe_cand top = h[0], last = h[--*n];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= *n)
			break;
		if (c + 1 < *n && h[c + 1] < h[c])
			c++;
		if (last <= h[c])
			break;
		h[i] = h[c];
		i = c;
	}
	if (*n > 0)
		h[i] = last;
	return top;
}

/* The merge of the symbols at positions l and w->next[l], if any. */
static const merge_slot *
bpe_merge_at(const clip_tokenizer *tok, const bpe_work *w, int32_t l)
{
	int32_t r = w->next[l];
	return r < 0 ? NULL : merge_find(tok, w->sym[l], w->sym[r]);
}

/* Adds the candidate at position l, if its pair merges, to c[*n]. */
static void
bpe_cand_add(const clip_tokenizer *tok, const bpe_work *w, int32_t l,
    bpe_cand *c, size_t *n)
{
	const merge_slot *m = bpe_merge_at(tok, w, l);
	if (m)
		c[(*n)++] = (uint64_t)(uint32_t)m->rank << 32 | (uint32_t)l;
}

/* OpenAI's bpe(): repeatedly takes the lowest-ranked adjacent pair and
 * merges all of its occurrences left to right, until no pair has a rank.
 * A heap ordered by (rank, position) finds the pairs; the pairs a pass
 * creates wait until the pass is over, as in the original, which rescans
 * after each pass.  O(n log n) for a word of n bytes.  The word's symbols
 * are left in w->sym, linked from position 0 by w->next. */
static void
bpe_word(const clip_tokenizer *tok, bpe_work *w, const unsigned char *b,
    size_t n)
{
	size_t nheap = 0, ndefer;

	for (size_t i = 0; i < n; i++) {
		w->sym[i] = i + 1 < n ? tok->byte_id[b[i]] : tok->byte_eow_id[b[i]];
		w->next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
		w->prev[i] = (int32_t)i - 1;
	}
	for (size_t i = 0; i + 1 < n; i++) {
		size_t k = 0;
		bpe_cand c;
		bpe_cand_add(tok, w, (int32_t)i, &c, &k);
		if (k)
			heap_push(w->heap, &nheap, c);
	}

	while (nheap > 0) {
		uint64_t rank = w->heap[0] >> 32;
		ndefer = 0;
		while (nheap > 0 && w->heap[0] >> 32 == rank) {
			bpe_cand t = heap_pop(w->heap, &nheap);
			int32_t l = (int32_t)(uint32_t)t, r = w->next[l];
			const merge_slot *m;
			/* Stale when the left symbol was merged away or the
			 * pair changed (ranks are unique per pair). */
			if (w->prev[l] == -2)
				continue;
			m = bpe_merge_at(tok, w, l);
			if (!m || (uint64_t)(uint32_t)m->rank != rank)
				continue;
			w->sym[l] = m->id;
			w->next[l] = w->next[r];
			if (w->next[r] >= 0)
				w->prev[w->next[r]] = l;
			w->prev[r] = -2; /* merged away */
			if (w->prev[l] >= 0)
				bpe_cand_add(tok, w, w->prev[l], w->defer, &ndefer);
			bpe_cand_add(tok, w, l, w->defer, &ndefer);
		}
		for (size_t k = 0; k < ndefer; k++)
			heap_push(w->heap, &nheap, w->defer[k]);
	}
}

/* ---- Tokenize --------------------------------------------------------- */

int
clip_tokenize(const clip_tokenizer *tok, const char *text, size_t len,
    int32_t *ids, int *n_tokens, cdx_error *err)
{
	int32_t res[CLIP_CONTEXT_LEN];
	uint32_t *a = NULL, *b = NULL, *low = NULL;
	unsigned char *bytes = NULL;
	bpe_work w = { 0 };
	size_t n = 0, nlow, nt = 0;
	int rc;

	if (!tok || !ids || (!text && len > 0))
		return cdx_error_set(err, CDX_EINVAL,
		    "clip_tokenize: NULL argument");
	if (tok->sp)
		return sptok_tokenize(tok->sp, text, len, ids, n_tokens, err);
	/* BPE positions are int32_t: keep every word well below 2^31 bytes. */
	if (len > CLIP_MAX_TEXT)
		return cdx_error_set(err, CDX_ETOOBIG, "clip_tokenize: text of "
		    "%zu bytes is over the %u MiB limit", len, CLIP_MAX_TEXT >> 20);
	a = malloc((len + 1) * sizeof(*a));
	b = malloc((len + 1) * sizeof(*b));
	if (!a || !b) {
		rc = cdx_error_set(err, CDX_ENOMEM, "clip_tokenize: out of memory");
		goto out_free;
	}
	rc = tkn_utf8_decode((const unsigned char *)text, len, a, &n, err);
	if (rc)
		goto out_free;
	n = html_unescape(a, n, b);
	n = html_unescape(b, n, a);
	n = whitespace_clean(a, n);
	free(b);
	b = NULL;
	low = malloc((3 * n + 1) * sizeof(*low));
	bytes = malloc(4 * n + 1);
	if (!low || !bytes) {
		rc = cdx_error_set(err, CDX_ENOMEM, "clip_tokenize: out of memory");
		goto out_free;
	}
	nlow = lower_str(a, n, low);

	for (size_t i = 0; i < nlow && nt < CLIP_MAX_TOKENS;) {
		size_t m = pretok_match(low, nlow, i), nb = 0;
		if (m == 0) {
			i++;
			continue;
		}
		/* simple_tokenizer's cache makes the exact special strings
		 * their own tokens (a case variant such as "<|ſtartoftext|>"
		 * matches the pattern but goes through BPE). */
		if (lit_equal(low + i, m, SOT_STR) || lit_equal(low + i, m, EOT_STR)) {
			res[1 + nt++] = low[i + 2] == 's' ? tok->sot : tok->eot;
			i += m;
			continue;
		}
		for (size_t k = 0; k < m; k++)
			nb += tkn_utf8_put(low[i + k], (char *)bytes + nb);
		i += m;
		if (bpe_work_reserve(&w, nb) != 0) {
			rc = cdx_error_set(err, CDX_ENOMEM,
			    "clip_tokenize: out of memory");
			goto out_free;
		}
		bpe_word(tok, &w, bytes, nb);
		for (int32_t p = 0; p >= 0 && nt < CLIP_MAX_TOKENS; p = w.next[p])
			res[1 + nt++] = w.sym[p];
	}
	res[0] = tok->sot;
	for (size_t k = 1 + nt; k < CLIP_CONTEXT_LEN; k++)
		res[k] = tok->eot;
	memcpy(ids, res, sizeof(res));
	if (n_tokens)
		*n_tokens = (int)nt + 2;
out_free:
	bpe_work_free(&w);
	free(bytes);
	free(low);
	free(b);
	free(a);
	return rc;
}
