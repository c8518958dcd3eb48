/*
 * sptok.c - the SentencePiece tokenizers of SigLIP (transformers'
 * SiglipTokenizer) and SigLIP2 (the Gemma tokenizer, lower-cased), as
 * transformers runs them for these models: padding="max_length",
 * truncation=True, max_length=context_len.  SentencePiece itself is
 * libsentencepiece, through encoder/spm_c.h; everything around it is here.
 *
 * sptok_tokenize():
 *   strict UTF-8 decoding ->
 *   SigLIP only: "\u2581" + text (with "\u2581" -> " "), then str.lower()
 *     of each character except where a special token starts ->
 *   split on the added tokens (transformers' Trie.split), their
 *     rstrip / lstrip / single_word rules ->
 *   each stretch of text between added tokens:
 *     SigLIP: canonicalize_text (string.punctuation removed, \s+ -> " ",
 *       strip), SentencePiece on unk_token + text, the unk_token's pieces
 *       dropped;
 *     SigLIP2: lower-cased character by character, SentencePiece ->
 *   pieces to ids (added tokens first, as convert_tokens_to_ids) ->
 *   SigLIP: a first "\u2581" before a special token dropped ->
 *   truncation that leaves room for the special tokens, EOS and BOS,
 *   padding with the pad id.
 * docs/TOKENIZER.md gives each rule's source in transformers.
 */
#include "encoder/sptok.h"

#include "common/file.h"
#include "encoder/clip.h"
#include "encoder/spm_c.h"
#include "encoder/tokenizer_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SPIECE_UNDERLINE 0x2581u
#define UNDERLINE_UTF8 "\xe2\x96\x81"
/* Files larger than these are refused. */
#define MAX_MODEL_FILE (256u << 20)
#define MAX_CONFIG_FILE (16u << 20)
/* transformers' "no limit" model_max_length is int(1e30); any value at or
 * above this one means the same. */
#define UNSET_MAX_LENGTH 1e18

/* One added token: an entry of tokenizer_config.json's
 * added_tokens_decoder, or a special token added at load. */
typedef struct sp_added {
	char *content;          /* UTF-8, NUL-terminated, not empty */
	uint32_t *cps;          /* its code points */
	size_t ncps;
	int32_t id;             /* a piece of the model with this content */
	unsigned char lstrip, rstrip, single_word, normalized;
	unsigned char special;  /* the AddedToken's flag */
	unsigned char attr;     /* one of all_special_tokens */
} sp_added;

/* A trie node: children sorted by code point. */
typedef struct trie_node {
	uint32_t *cps;
	int32_t *kids;
	uint32_t n, cap;
	int32_t added;          /* index of the added token ending here, or -1 */
} trie_node;

struct sptok {
	int kind;               /* enum clip_tokenizer_kind */
	int context_len;
	int vocab_size;
	spm_model *sp;
	sp_added *added;
	size_t nadded;
	trie_node *nodes;       /* nodes[0] is the root */
	size_t nnodes, capnodes;
	size_t max_added;       /* the longest added token, in code points */
	/* all_special_tokens, in transformers' order (indices into added) */
	size_t *special;
	size_t nspecial;
	/* SigLIP's lower-casing keeps these as they are: all_special_tokens,
	 * then the added tokens that are normalized and not special */
	size_t *keep;
	size_t nkeep;
	int32_t bos_id, eos_id, pad_id;  /* -1 when unused */
	int add_bos, add_eos;   /* Gemma; SigLIP adds EOS unless present */
	int lower_case;         /* SigLIP's do_lower_case */
	int split_special;      /* split_special_tokens: no added-token split */
	int pad_left, trunc_left;
	char *unk;              /* SigLIP: unk_token, the prefix of each text */
	size_t unk_len;
	size_t unk_ntok;        /* pieces of unk alone */
};

/* ---- Small helpers ---------------------------------------------------- */

static char *
path_join(const char *dir, const char *name)
{
	size_t a = strlen(dir), b = strlen(name);
	char *p = malloc(a + b + 2);
	if (!p)
		return NULL;
	memcpy(p, dir, a);
	p[a] = '/';
	memcpy(p + a + 1, name, b + 1);
	return p;
}

/* Reads and parses an optional JSON file: *root stays NULL when the file
 * does not exist. */
static int
json_read(const char *path, cJSON **root, cdx_error *err)
{
	char *text = NULL;
	size_t len = 0;
	cdx_error rerr;
	int rc;

	*root = NULL;
	rc = cdx_read_file(path, MAX_CONFIG_FILE, &text, &len, &rerr);
	if (rc == CDX_ENOTFOUND)
		return 0;
	if (rc)
		return cdx_error_set(err, rc, "%s", rerr.msg);
	*root = cJSON_ParseWithLength(text, len);
	if (!*root) {
		const char *at = cJSON_GetErrorPtr();
		rc = cdx_error_set(err, CDX_EFORMAT,
		    "%s: malformed JSON near byte %td", path,
		    at && at >= text && at <= text + len ? at - text :
		    (ptrdiff_t)-1);
	} else if (!cJSON_IsObject(*root)) {
		rc = cdx_error_set(err, CDX_EFORMAT, "%s: not a JSON object",
		    path);
		cJSON_Delete(*root);
		*root = NULL;
	}
	free(text);
	return rc;
}

/* A boolean field: *out keeps its default when the field is absent. */
static int
json_bool(const cJSON *obj, const char *field, const char *path, int *out,
    cdx_error *err)
{
	const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, field) :
	    NULL;
	if (!v)
		return 0;
	if (!cJSON_IsBool(v))
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: '%s' is not true or false", path, field);
	*out = cJSON_IsTrue(v);
	return 0;
}

/* "right" (0) or "left" (1); *out keeps its default when absent. */
static int
json_side(const cJSON *obj, const char *field, const char *path, int *out,
    cdx_error *err)
{
	const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, field) :
	    NULL;
	if (!v)
		return 0;
	if (cJSON_IsString(v) && strcmp(v->valuestring, "right") == 0)
		*out = 0;
	else if (cJSON_IsString(v) && strcmp(v->valuestring, "left") == 0)
		*out = 1;
	else
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: '%s' is not \"right\" or \"left\"", path, field);
	return 0;
}

/* Decodes valid UTF-8 (pieces and JSON strings are) into code points;
 * returns the count, or (size_t)-1 on invalid input. */
static size_t
utf8_cps(const char *s, size_t len, uint32_t *out)
{
	size_t n = 0;
	if (tkn_utf8_decode((const unsigned char *)s, len, out, &n, NULL) != 0)
		return (size_t)-1;
	return n;
}

/* ---- Added tokens and their trie -------------------------------------- */

static int32_t
trie_child(const sptok *t, int32_t node, uint32_t cp)
{
	const trie_node *nd = &t->nodes[node];
	uint32_t lo = 0, hi = nd->n;
	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		if (nd->cps[mid] < cp)
			lo = mid + 1;
		else if (nd->cps[mid] > cp)
			hi = mid;
		else
			return nd->kids[mid];
	}
	return -1;
}

static int32_t
trie_new_node(sptok *t)
{
	if (t->nnodes == t->capnodes) {
		size_t cap = t->capnodes ? 2 * t->capnodes : 64;
		trie_node *nn = realloc(t->nodes, cap * sizeof(*nn));
		if (!nn)
			return -1;
		t->nodes = nn;
		t->capnodes = cap;
	}
	memset(&t->nodes[t->nnodes], 0, sizeof(trie_node));
	t->nodes[t->nnodes].added = -1;
	return (int32_t)t->nnodes++;
}

/* Adds added[a] to the trie. */
static int
trie_add(sptok *t, size_t a)
{
	const sp_added *ad = &t->added[a];
	int32_t node = 0;

	for (size_t i = 0; i < ad->ncps; i++) {
		int32_t kid = trie_child(t, node, ad->cps[i]);
		trie_node *nd;
		uint32_t pos = 0;
		if (kid >= 0) {
			node = kid;
			continue;
		}
		kid = trie_new_node(t);
		if (kid < 0)
			return CDX_ENOMEM;
		nd = &t->nodes[node];
		if (nd->n == nd->cap) {
			uint32_t cap = nd->cap ? 2 * nd->cap : 2;
			uint32_t *c = realloc(nd->cps, cap * sizeof(*c));
			int32_t *k;
			if (!c)
				return CDX_ENOMEM;
			nd->cps = c;
			k = realloc(nd->kids, cap * sizeof(*k));
			if (!k)
				return CDX_ENOMEM;
			nd->kids = k;
			nd->cap = cap;
		}
		while (pos < nd->n && nd->cps[pos] < ad->cps[i])
			pos++;
		memmove(nd->cps + pos + 1, nd->cps + pos,
		    (nd->n - pos) * sizeof(*nd->cps));
		memmove(nd->kids + pos + 1, nd->kids + pos,
		    (nd->n - pos) * sizeof(*nd->kids));
		nd->cps[pos] = ad->cps[i];
		nd->kids[pos] = kid;
		nd->n++;
		node = kid;
	}
	t->nodes[node].added = (int32_t)a;
	return 0;
}

/* The added token whose content is exactly s[0..n), or -1. */
static int32_t
added_find(const sptok *t, const uint32_t *s, size_t n)
{
	int32_t node = 0;
	if (n == 0)
		return -1;
	for (size_t i = 0; i < n && node >= 0; i++)
		node = trie_child(t, node, s[i]);
	return node >= 0 ? t->nodes[node].added : -1;
}

/* The same for a UTF-8 string (a piece): walks the trie as it decodes. */
static int32_t
added_find_utf8(const sptok *t, const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	int32_t node = 0;
	size_t i = 0;

	if (len == 0)
		return -1;
	while (i < len && node >= 0) {
		uint32_t cp;
		size_t k = u[i] < 0x80 ? 1 : u[i] < 0xE0 ? 2 : u[i] < 0xF0 ? 3 : 4;
		if (i + k > len)
			return -1;
		cp = k == 1 ? u[i] : (uint32_t)(u[i] & (0x7F >> k));
		for (size_t j = 1; j < k; j++)
			cp = cp << 6 | (u[i + j] & 0x3F);
		node = trie_child(t, node, cp);
		i += k;
	}
	return node >= 0 ? t->nodes[node].added : -1;
}

static int32_t
added_find_str(const sptok *t, const char *s)
{
	for (size_t i = 0; i < t->nadded; i++)
		if (strcmp(t->added[i].content, s) == 0)
			return (int32_t)i;
	return -1;
}

/* Appends an added token (content copied).  The content must be a piece
 * of the model with that id.  Returns CDX_ENOMEM, or CDX_EFORMAT for
 * content that is not UTF-8 (a piece of a damaged model). */
static int
added_push(sptok *t, const char *content, int32_t id, int lstrip,
    int rstrip, int single_word, int normalized, int special)
{
	size_t len = strlen(content);
	sp_added *na = realloc(t->added, (t->nadded + 1) * sizeof(*na));
	sp_added *a;
	if (!na)
		return CDX_ENOMEM;
	t->added = na;
	a = &t->added[t->nadded];
	memset(a, 0, sizeof(*a));
	a->content = malloc(len + 1);
	a->cps = malloc((len + 1) * sizeof(*a->cps));
	if (!a->content || !a->cps) {
		free(a->content);
		free(a->cps);
		return CDX_ENOMEM;
	}
	memcpy(a->content, content, len + 1);
	a->ncps = utf8_cps(content, len, a->cps);
	if (a->ncps == (size_t)-1 || a->ncps == 0) {
		free(a->content);
		free(a->cps);
		return CDX_EFORMAT;
	}
	a->id = id;
	a->lstrip = (unsigned char)lstrip;
	a->rstrip = (unsigned char)rstrip;
	a->single_word = (unsigned char)single_word;
	a->normalized = (unsigned char)normalized;
	a->special = (unsigned char)special;
	if (a->ncps > t->max_added)
		t->max_added = a->ncps;
	t->nadded++;
	return 0;
}

/* The model's id of the piece `s`, or -1 when no piece is exactly s
 * (transformers would give such a token a new id beyond the model). */
static int32_t
piece_id_exact(const sptok *t, const char *s)
{
	size_t len = strlen(s), plen = 0;
	int32_t id = spm_piece_id(t->sp, s, len);
	const char *p = spm_id_piece(t->sp, id, &plen);
	return p && plen == len && memcmp(p, s, len) == 0 ? id : -1;
}

/* ---- Loading ---------------------------------------------------------- */

/* A special token's value as transformers sees it at __init__: a string
 * or AddedToken (content and flags), or None. */
typedef struct tokval {
	const char *content;    /* NULL for None */
	int lstrip, rstrip, single_word, normalized;
	const char *from;       /* where it came from, for messages */
} tokval;

/* Reads a special token's JSON value: a string, an AddedToken object
 * ({"content": ..., "lstrip": ...}, with or without "__type"), or null.
 * A string gets the flags `str_strip` says (the tokenizer class's own
 * wrapping: SiglipTokenizer strips around its special tokens). */
static int
tokval_parse(const cJSON *v, const char *path, const char *field,
    int str_strip, tokval *out, cdx_error *err)
{
	memset(out, 0, sizeof(*out));
	out->from = path;
	if (cJSON_IsNull(v))
		return 0;
	if (cJSON_IsString(v)) {
		out->content = v->valuestring;
		out->lstrip = out->rstrip = str_strip;
	} else if (cJSON_IsObject(v)) {
		const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
		int special = 1, rc;
		if (!cJSON_IsString(c))
			return cdx_error_set(err, CDX_EFORMAT,
			    "%s: '%s' has no \"content\" string", path, field);
		out->content = c->valuestring;
		rc = json_bool(v, "special", path, &special, err);
		out->normalized = !special;
		if (!rc)
			rc = json_bool(v, "lstrip", path, &out->lstrip, err);
		if (!rc)
			rc = json_bool(v, "rstrip", path, &out->rstrip, err);
		if (!rc)
			rc = json_bool(v, "single_word", path,
			    &out->single_word, err);
		if (!rc)
			rc = json_bool(v, "normalized", path, &out->normalized,
			    err);
		if (rc)
			return rc;
	} else {
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: '%s' is not a string, a token object or null", path,
		    field);
	}
	if (out->content[0] == '\0')
		return cdx_error_set(err, CDX_EFORMAT, "%s: '%s' is empty",
		    path, field);
	return 0;
}

/* tokenizer_config.json's added_tokens_decoder: {"<id>": AddedToken}. */
static int
load_added_decoder(sptok *t, const cJSON *dec, const char *path,
    const char *model_path, cdx_error *err)
{
	const cJSON *it;

	if (!cJSON_IsObject(dec))
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: 'added_tokens_decoder' is not an object", path);
	cJSON_ArrayForEach(it, dec) {
		const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "content");
		const char *k = it->string;
		const char *piece;
		size_t plen = 0;
		long id = 0;
		int lstrip = 0, rstrip = 0, single = 0, special = 0, norm;
		int rc;

		for (const char *q = k; *q; q++) {
			if (*q < '0' || *q > '9' || id > INT_MAX / 10) {
				id = -1;
				break;
			}
			id = id * 10 + (*q - '0');
		}
		if (!*k || id < 0 || id >= t->vocab_size)
			return cdx_error_set(err, CDX_EFORMAT,
			    "%s: added_tokens_decoder: '%.32s' is not an id of "
			    "%s (0..%d)", path, k, model_path,
			    t->vocab_size - 1);
		if (!cJSON_IsObject(it) || !cJSON_IsString(c) ||
		    !c->valuestring[0])
			return cdx_error_set(err, CDX_EFORMAT,
			    "%s: added_tokens_decoder: %ld has no \"content\" "
			    "string", path, id);
		rc = json_bool(it, "special", path, &special, err);
		norm = !special;
		if (!rc)
			rc = json_bool(it, "lstrip", path, &lstrip, err);
		if (!rc)
			rc = json_bool(it, "rstrip", path, &rstrip, err);
		if (!rc)
			rc = json_bool(it, "single_word", path, &single, err);
		if (!rc)
			rc = json_bool(it, "normalized", path, &norm, err);
		if (rc)
			return rc;
		piece = spm_id_piece(t->sp, (int32_t)id, &plen);
		if (plen != strlen(c->valuestring) ||
		    memcmp(piece, c->valuestring, plen) != 0)
			return cdx_error_set(err, CDX_EFORMAT,
			    "%s: added_tokens_decoder: %ld is '%.40s', but "
			    "'%.*s' in %s", path, id, c->valuestring,
			    (int)(plen > 40 ? 40 : plen), piece, model_path);
		for (size_t i = 0; i < t->nadded; i++)
			if (t->added[i].id == (int32_t)id)
				return cdx_error_set(err, CDX_EFORMAT,
				    "%s: added_tokens_decoder: %ld is listed "
				    "twice", path, id);
		rc = added_push(t, c->valuestring, (int32_t)id, lstrip, rstrip,
		    single, norm, special);
		if (rc)
			return cdx_error_set(err, rc, rc == CDX_ENOMEM ?
			    "tokenizer: out of memory" : "%s: added_tokens_decoder: "
			    "%ld is not UTF-8", path, id);
	}
	return 0;
}

/* Everything special_tokens_map.json and tokenizer_config.json say about
 * the special tokens, merged as transformers' _from_pretrained() merges
 * them. */
enum { SP_BOS, SP_EOS, SP_UNK, SP_SEP, SP_PAD, SP_CLS, SP_MASK, SP_NATTR };
static const char *const attr_names[SP_NATTR] = { "bos_token", "eos_token",
	"unk_token", "sep_token", "pad_token", "cls_token", "mask_token" };

typedef struct specials {
	tokval attr[SP_NATTR];
	tokval *extra;          /* additional_special_tokens */
	size_t nextra;
} specials;

static int
extra_push(specials *s, const tokval *v)
{
	tokval *ne;
	for (size_t i = 0; i < s->nextra; i++)
		if (strcmp(s->extra[i].content, v->content) == 0)
			return 0;
	ne = realloc(s->extra, (s->nextra + 1) * sizeof(*ne));
	if (!ne)
		return CDX_ENOMEM;
	s->extra = ne;
	s->extra[s->nextra++] = *v;
	return 0;
}

/* additional_special_tokens of one file: a list of strings or token
 * objects (strings get no stripping: _add_tokens wraps them so). */
static int
extra_parse(specials *s, const cJSON *list, const char *path, cdx_error *err)
{
	const cJSON *it;
	if (cJSON_IsNull(list))
		return 0;
	if (!cJSON_IsArray(list))
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: 'additional_special_tokens' is not a list", path);
	cJSON_ArrayForEach(it, list) {
		tokval v;
		int rc = tokval_parse(it, path, "additional_special_tokens", 0,
		    &v, err);
		if (rc)
			return rc;
		if (!v.content)
			return cdx_error_set(err, CDX_EFORMAT,
			    "%s: 'additional_special_tokens' holds a null",
			    path);
		if (extra_push(s, &v))
			return cdx_error_set(err, CDX_ENOMEM,
			    "tokenizer: out of memory");
	}
	return 0;
}

static int
specials_read(specials *s, const cJSON *tc, const char *tc_path,
    const cJSON *stm, const char *stm_path, int kind, cdx_error *err)
{
	static const char *const sig[SP_NATTR] = { NULL, "</s>", "<unk>", NULL,
		"</s>", NULL, NULL };
	static const char *const gem[SP_NATTR] = { "<bos>", "<eos>", "<unk>",
		NULL, "<pad>", NULL, NULL };
	const char *const *def = kind == CLIP_TOKENIZER_SIGLIP ? sig : gem;
	int strip = kind == CLIP_TOKENIZER_SIGLIP;
	/* Without added_tokens_decoder (older folders),
	 * special_tokens_map.json overrides tokenizer_config.json. */
	int legacy = !tc || !cJSON_GetObjectItemCaseSensitive(tc,
	    "added_tokens_decoder");
	int rc;

	for (int a = 0; a < SP_NATTR; a++) {
		const cJSON *v = NULL;
		const char *path = NULL;
		if (legacy && stm &&
		    (v = cJSON_GetObjectItemCaseSensitive(stm, attr_names[a])))
			path = stm_path;
		else if (tc &&
		    (v = cJSON_GetObjectItemCaseSensitive(tc, attr_names[a])))
			path = tc_path;
		if (v) {
			rc = tokval_parse(v, path, attr_names[a], strip,
			    &s->attr[a], err);
			if (rc)
				return rc;
		} else {
			memset(&s->attr[a], 0, sizeof(s->attr[a]));
			s->attr[a].content = def[a];
			s->attr[a].lstrip = s->attr[a].rstrip = strip;
			s->attr[a].from = kind == CLIP_TOKENIZER_SIGLIP ?
			    "SiglipTokenizer's default" :
			    "GemmaTokenizer's default";
		}
	}
	if (tc) {
		const cJSON *l = cJSON_GetObjectItemCaseSensitive(tc,
		    "additional_special_tokens");
		if (l && (rc = extra_parse(s, l, tc_path, err)))
			return rc;
	}
	if (legacy && stm) {
		const cJSON *l = cJSON_GetObjectItemCaseSensitive(stm,
		    "additional_special_tokens");
		if (l && (rc = extra_parse(s, l, stm_path, err)))
			return rc;
	}
	return 0;
}

/* PreTrainedTokenizer.__init__: every special token that is not an added
 * token yet becomes one (it must be a piece of the model); records
 * all_special_tokens in order. */
static int
specials_add(sptok *t, const specials *s, const char *model_path,
    cdx_error *err)
{
	size_t total = SP_NATTR + s->nextra;

	t->special = malloc(total * sizeof(*t->special));
	if (!t->special)
		return cdx_error_set(err, CDX_ENOMEM, "tokenizer: out of memory");
	for (size_t i = 0; i < total; i++) {
		const tokval *v = i < SP_NATTR ? &s->attr[i] :
		    &s->extra[i - SP_NATTR];
		const char *field = i < SP_NATTR ? attr_names[i] :
		    "additional_special_tokens";
		int32_t a;
		if (!v->content)
			continue;
		a = added_find_str(t, v->content);
		if (a < 0) {
			int32_t id = piece_id_exact(t, v->content);
			if (id < 0)
				return cdx_error_set(err, CDX_EFORMAT,
				    "%s: %s '%.40s' is not a piece of %s",
				    v->from, field, v->content, model_path);
			int rc = added_push(t, v->content, id, v->lstrip,
			    v->rstrip, v->single_word, v->normalized, 1);
			if (rc)
				return cdx_error_set(err, rc, rc == CDX_ENOMEM ?
				    "tokenizer: out of memory" : "%s: %s is not "
				    "UTF-8", v->from, field);
			a = (int32_t)t->nadded - 1;
		}
		if (!t->added[a].attr) {
			t->added[a].attr = 1;
			t->special[t->nspecial++] = (size_t)a;
		}
	}
	return 0;
}

/* What the folder holds: the model file to read and the kind. */
static int
find_model(const char *dir, const cJSON *tc, const char *tc_path,
    int *kind, char **model_path, int *named, cdx_error *err)
{
	const cJSON *cls = tc ? cJSON_GetObjectItemCaseSensitive(tc,
	    "tokenizer_class") : NULL;
	char *sp_path = path_join(dir, "spiece.model");
	char *tm_path = path_join(dir, "tokenizer.model");
	FILE *f;

	if (!sp_path || !tm_path) {
		free(sp_path);
		free(tm_path);
		return cdx_error_set(err, CDX_ENOMEM, "tokenizer: out of memory");
	}
	*named = cls && !cJSON_IsNull(cls);
	if (*named) {
		char name[64];
		size_t n;
		if (!cJSON_IsString(cls) ||
		    (n = strlen(cls->valuestring)) >= sizeof(name)) {
			free(sp_path);
			free(tm_path);
			return cdx_error_set(err, CDX_EFORMAT,
			    "%s: 'tokenizer_class' is not a tokenizer name",
			    tc_path);
		}
		memcpy(name, cls->valuestring, n + 1);
		if (n > 4 && strcmp(name + n - 4, "Fast") == 0)
			name[n - 4] = '\0';
		if (strcmp(name, "SiglipTokenizer") == 0) {
			*kind = CLIP_TOKENIZER_SIGLIP;
		} else if (strcmp(name, "GemmaTokenizer") == 0 ||
		    strcmp(name, "Siglip2Tokenizer") == 0) {
			*kind = CLIP_TOKENIZER_GEMMA;
		} else {
			cdx_error_set(err, CDX_EFORMAT,
			    "%s: tokenizer_class '%.40s' is not a SigLIP or "
			    "SigLIP2 tokenizer (SiglipTokenizer, GemmaTokenizer)",
			    tc_path, cls->valuestring);
			free(sp_path);
			free(tm_path);
			return CDX_EFORMAT;
		}
	} else if ((f = fopen(sp_path, "rb")) != NULL ||
	    errno != ENOENT) {
		/* spiece.model exists (or exists and cannot be read: the
		 * read reports why) */
		if (f)
			fclose(f);
		*kind = CLIP_TOKENIZER_SIGLIP;
	} else if ((f = fopen(tm_path, "rb")) != NULL || errno != ENOENT) {
		if (f)
			fclose(f);
		*kind = CLIP_TOKENIZER_GEMMA;
	} else {
		free(sp_path);
		free(tm_path);
		return cdx_error_set(err, CDX_ENOTFOUND,
		    "%s: no spiece.model (SigLIP) or tokenizer.model (SigLIP2)",
		    dir);
	}
	if (*kind == CLIP_TOKENIZER_SIGLIP) {
		*model_path = sp_path;
		free(tm_path);
	} else {
		*model_path = tm_path;
		free(sp_path);
	}
	return 0;
}

void
sptok_free(sptok *t)
{
	if (!t)
		return;
	spm_model_free(t->sp);
	for (size_t i = 0; i < t->nadded; i++) {
		free(t->added[i].content);
		free(t->added[i].cps);
	}
	free(t->added);
	for (size_t i = 0; i < t->nnodes; i++) {
		free(t->nodes[i].cps);
		free(t->nodes[i].kids);
	}
	free(t->nodes);
	free(t->special);
	free(t->keep);
	free(t->unk);
	free(t);
}

/* The id of a special token attribute (None: -1). */
static int32_t
attr_id(const sptok *t, const specials *s, int a)
{
	int32_t i = s->attr[a].content ? added_find_str(t, s->attr[a].content) :
	    -1;
	return i < 0 ? -1 : t->added[i].id;
}

int
sptok_load(const char *dir, int context_len, sptok **out, cdx_error *err)
{
	char *tc_path = NULL, *stm_path = NULL, *model_path = NULL;
	char *model = NULL;
	cJSON *tc = NULL, *stm = NULL;
	specials sp = { 0 };
	size_t model_len = 0;
	sptok *t = NULL;
	int named = 0, nspec, rc;

	if (!dir || !out)
		return cdx_error_set(err, CDX_EINVAL, "tokenizer: NULL argument");
	if (context_len < 1 || context_len > CLIP_CONTEXT_LEN)
		return cdx_error_set(err, CDX_EINVAL,
		    "tokenizer: context length %d is not in 1..%d", context_len,
		    CLIP_CONTEXT_LEN);
	t = calloc(1, sizeof(*t));
	tc_path = path_join(dir, "tokenizer_config.json");
	stm_path = path_join(dir, "special_tokens_map.json");
	if (!t || !tc_path || !stm_path || trie_new_node(t) != 0) {
		rc = cdx_error_set(err, CDX_ENOMEM, "tokenizer: out of memory");
		goto out_free;
	}
	t->context_len = context_len;
	t->bos_id = t->eos_id = t->pad_id = -1;
	rc = json_read(tc_path, &tc, err);
	if (!rc)
		rc = json_read(stm_path, &stm, err);
	if (!rc)
		rc = find_model(dir, tc, tc_path, &t->kind, &model_path, &named,
		    err);
	if (rc)
		goto out_free;

	rc = cdx_read_file(model_path, MAX_MODEL_FILE, &model, &model_len,
	    err);
	if (rc) {
		if (rc == CDX_ENOTFOUND)
			cdx_error_set(err, rc, "%s: no such file%s", model_path,
			    named ? " (tokenizer_config.json's tokenizer_class "
			    "reads it)" : "");
		goto out_free;
	}
	rc = spm_model_load(model, model_len, model_path,
	    t->kind == CLIP_TOKENIZER_SIGLIP ? SPM_NO_DUMMY_PREFIX : 0, &t->sp,
	    err);
	free(model);
	if (rc)
		goto out_free;
	t->vocab_size = spm_model_size(t->sp);

	/* The added tokens, then the special tokens. */
	if (tc && cJSON_GetObjectItemCaseSensitive(tc, "added_tokens_decoder")) {
		rc = load_added_decoder(t, cJSON_GetObjectItemCaseSensitive(tc,
		    "added_tokens_decoder"), tc_path, model_path, err);
		if (rc)
			goto out_free;
	}
	rc = specials_read(&sp, tc, tc_path, stm, stm_path, t->kind, err);
	if (!rc)
		rc = specials_add(t, &sp, model_path, err);
	if (rc)
		goto out_free;
	for (size_t i = 0; i < t->nadded; i++) {
		if (trie_add(t, i) != 0) {
			rc = cdx_error_set(err, CDX_ENOMEM,
			    "tokenizer: out of memory");
			goto out_free;
		}
	}

	/* The settings. */
	t->lower_case = 1;
	t->add_bos = 1;
	t->add_eos = 0;
	rc = json_side(tc, "padding_side", tc_path, &t->pad_left, err);
	if (!rc)
		rc = json_side(tc, "truncation_side", tc_path, &t->trunc_left,
		    err);
	if (!rc)
		rc = json_bool(tc, "split_special_tokens", tc_path,
		    &t->split_special, err);
	if (!rc && t->kind == CLIP_TOKENIZER_SIGLIP)
		rc = json_bool(tc, "do_lower_case", tc_path, &t->lower_case,
		    err);
	if (!rc && t->kind == CLIP_TOKENIZER_GEMMA)
		rc = json_bool(tc, "add_bos_token", tc_path, &t->add_bos, err);
	if (!rc && t->kind == CLIP_TOKENIZER_GEMMA)
		rc = json_bool(tc, "add_eos_token", tc_path, &t->add_eos, err);
	if (rc)
		goto out_free;
	if (tc) {
		const cJSON *m = cJSON_GetObjectItemCaseSensitive(tc,
		    "model_max_length");
		if (m && !cJSON_IsNull(m) && (!cJSON_IsNumber(m) ||
		    (m->valuedouble < UNSET_MAX_LENGTH &&
		    m->valuedouble != (double)context_len))) {
			rc = cdx_error_set(err, CDX_EFORMAT,
			    "%s: model_max_length %.0f disagrees with the "
			    "model's %d text positions", tc_path,
			    cJSON_IsNumber(m) ? m->valuedouble : -1.0,
			    context_len);
			goto out_free;
		}
	}

	/* The ids of the special tokens the tokenizer writes. */
	t->pad_id = attr_id(t, &sp, SP_PAD);
	if (t->pad_id < 0) {
		rc = cdx_error_set(err, CDX_EFORMAT,
		    "%s: pad_token is null, so texts cannot be padded",
		    sp.attr[SP_PAD].from);
		goto out_free;
	}
	if (t->kind == CLIP_TOKENIZER_SIGLIP || t->add_eos) {
		t->eos_id = attr_id(t, &sp, SP_EOS);
		if (t->eos_id < 0) {
			rc = cdx_error_set(err, CDX_EFORMAT,
			    "%s: eos_token is null, but EOS ends every text",
			    sp.attr[SP_EOS].from);
			goto out_free;
		}
	}
	if (t->kind == CLIP_TOKENIZER_GEMMA && t->add_bos) {
		t->bos_id = attr_id(t, &sp, SP_BOS);
		if (t->bos_id < 0) {
			rc = cdx_error_set(err, CDX_EFORMAT,
			    "%s: bos_token is null, but add_bos_token is true",
			    sp.attr[SP_BOS].from);
			goto out_free;
		}
	}
	nspec = t->kind == CLIP_TOKENIZER_SIGLIP ? 1 : t->add_bos + t->add_eos;
	if (context_len <= nspec) {
		rc = cdx_error_set(err, CDX_EINVAL,
		    "tokenizer: context length %d leaves no room for text "
		    "beside %d special token%s", context_len, nspec,
		    nspec == 1 ? "" : "s");
		goto out_free;
	}

	if (t->kind == CLIP_TOKENIZER_SIGLIP) {
		spm_pieces pc;
		const char *unk = sp.attr[SP_UNK].content;
		if (!unk) {
			rc = cdx_error_set(err, CDX_EFORMAT,
			    "%s: unk_token is null, but SiglipTokenizer "
			    "prefixes every text with it", sp.attr[SP_UNK].from);
			goto out_free;
		}
		t->unk_len = strlen(unk);
		t->unk = malloc(t->unk_len + 1);
		if (!t->unk) {
			rc = cdx_error_set(err, CDX_ENOMEM,
			    "tokenizer: out of memory");
			goto out_free;
		}
		memcpy(t->unk, unk, t->unk_len + 1);
		rc = spm_encode(t->sp, t->unk, t->unk_len, &pc, err);
		if (rc)
			goto out_free;
		t->unk_ntok = pc.n;
		spm_pieces_free(&pc);
		/* The lower-casing keeps all_special_tokens, then the
		 * normalized added tokens that are not special. */
		t->keep = malloc((t->nadded + 1) * sizeof(*t->keep));
		if (!t->keep) {
			rc = cdx_error_set(err, CDX_ENOMEM,
			    "tokenizer: out of memory");
			goto out_free;
		}
		for (size_t i = 0; i < t->nspecial; i++)
			t->keep[t->nkeep++] = t->special[i];
		for (size_t i = 0; i < t->nadded; i++)
			if (!t->added[i].special && t->added[i].normalized)
				t->keep[t->nkeep++] = i;
	}
	*out = t;
	t = NULL;
out_free:
	sptok_free(t);
	free(sp.extra);
	cJSON_Delete(stm);
	cJSON_Delete(tc);
	free(model_path);
	free(stm_path);
	free(tc_path);
	return rc;
}

int
sptok_kind(const sptok *t)
{
	return t->kind;
}

int
sptok_context_len(const sptok *t)
{
	return t->context_len;
}

int
sptok_vocab_size(const sptok *t)
{
	return t->vocab_size;
}

/* ---- Tokenizing ------------------------------------------------------- */

/* A stretch of text or an added token, as transformers' tokenize() keeps
 * them in its list `tokens`: code points p[0..n), which point into the
 * text or into own (a buffer this segment allocated). */
typedef struct seg {
	const uint32_t *p;
	size_t n;
	uint32_t *own;
} seg;

static int
is_pyspace(uint32_t c)
{
	return (tkn_prop(c) & TKN_PYSPACE) != 0;
}

/* Python's string.punctuation. */
static int
is_ascii_punct(uint32_t c)
{
	return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) ||
	    (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
}

/* Does s[i..n) start with the added token a? */
static int
starts_with(const uint32_t *s, size_t n, size_t i, const sp_added *a)
{
	return n - i >= a->ncps &&
	    memcmp(s + i, a->cps, a->ncps * sizeof(*s)) == 0;
}

/* PreTrainedTokenizer.tokenize's do_lower_case step:
 * re.sub("(" + "|".join(kept) + ")|(.+?)", ...): at each position the
 * first kept token that starts there is copied, else one character is
 * lower-cased.  out has room for 3 * n.  Returns the length. */
static size_t
lower_keep(const sptok *t, const uint32_t *s, size_t n, uint32_t *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		const sp_added *k = NULL;
		for (size_t j = 0; j < t->nkeep && !k; j++)
			if (starts_with(s, n, i, &t->added[t->keep[j]]))
				k = &t->added[t->keep[j]];
		if (k) {
			memcpy(out + o, s + i, k->ncps * sizeof(*s));
			o += k->ncps;
			i += k->ncps;
		} else {
			o += tkn_lower_char(s[i++], out + o);
		}
	}
	return o;
}

/* transformers' Trie.split(), step for step (its quirks included: a state
 * that stopped matching at this character is still looked ahead from, with
 * the node it had).  Appends the pieces of s[0..n) to segs. */
static int
trie_split(const sptok *t, const uint32_t *s, size_t n, seg *segs,
    size_t *nsegs)
{
	size_t cap = t->max_added + 2, ns = 0, skip = 0, noff = 0, start;
	size_t *st_start = malloc(cap * sizeof(*st_start));
	int32_t *st_node = malloc(cap * sizeof(*st_node));
	unsigned char *st_rm = calloc(cap, 1);
	size_t *off = malloc((2 * n + 3) * sizeof(*off));
	int rc = 0;

	if (!st_start || !st_node || !st_rm || !off) {
		rc = CDX_ENOMEM;
		goto out_free;
	}
	off[noff++] = 0;
	for (size_t cur = 0; cur < n; cur++) {
		int reset = 0;
		int32_t kid;
		if (skip && cur < skip)
			continue;
		for (size_t k = 0; k < ns; k++) {
			int32_t node = st_node[k];
			if (t->nodes[node].added >= 0) {
				size_t end = cur;
				start = st_start[k];
				for (size_t j = 0; j < ns; j++) {
					size_t ls = st_start[j], la;
					int32_t ln = st_node[j];
					if (ls > start)
						break;
					la = ls < start ? cur + 1 : cur;
					end = la;
					if (t->nodes[ln].added >= 0) {
						start = ls;
						end = la;
						skip = la;
					}
					while (la < n) {
						int32_t c = trie_child(t, ln, s[la]);
						if (c < 0)
							break;
						ln = c;
						la++;
						if (t->nodes[ln].added >= 0) {
							start = ls;
							end = la;
							skip = la;
						}
					}
				}
				off[noff++] = start;
				off[noff++] = end;
				reset = 1;
				break;
			}
			kid = trie_child(t, node, s[cur]);
			if (kid >= 0)
				st_node[k] = kid;
			else
				st_rm[k] = 1;
		}
		if (reset) {
			ns = 0;
			memset(st_rm, 0, cap);
		} else {
			size_t w = 0;
			for (size_t k = 0; k < ns; k++) {
				if (!st_rm[k]) {
					st_start[w] = st_start[k];
					st_node[w++] = st_node[k];
				}
				st_rm[k] = 0;
			}
			ns = w;
		}
		if (cur >= skip && (kid = trie_child(t, 0, s[cur])) >= 0) {
			if (ns == cap) {
				rc = CDX_EINTERNAL;
				goto out_free;
			}
			st_start[ns] = cur;
			st_node[ns++] = kid;
		}
	}
	for (size_t k = 0; k < ns; k++) {
		if (t->nodes[st_node[k]].added >= 0) {
			off[noff++] = st_start[k];
			off[noff++] = n;
			break;
		}
	}
	off[noff++] = n;
	/* cut_text() */
	start = 0;
	for (size_t i = 0; i < noff; i++) {
		if (start >= off[i])
			continue;
		segs[*nsegs].p = s + start;
		segs[*nsegs].n = off[i] - start;
		segs[*nsegs].own = NULL;
		(*nsegs)++;
		start = off[i];
	}
out_free:
	free(off);
	free(st_rm);
	free(st_node);
	free(st_start);
	return rc;
}

/* The added token that segment g is (`token in no_split_token`), or -1. */
static int32_t
seg_added(const sptok *t, const seg *g)
{
	return t->split_special ? -1 : added_find(t, g->p, g->n);
}

/* Replaces *dst by a ++ b. */
static int
seg_concat(seg *dst, const seg *a, const seg *b)
{
	uint32_t *buf = malloc((a->n + b->n + 1) * sizeof(*buf));
	if (!buf)
		return CDX_ENOMEM;
	memcpy(buf, a->p, a->n * sizeof(*buf));
	memcpy(buf + a->n, b->p, b->n * sizeof(*buf));
	free(dst->own);
	dst->own = buf;
	dst->p = buf;
	dst->n = a->n + b->n;
	return 0;
}

/* tokenize()'s loop over the added tokens: rstrip eats the white space of
 * the text after a token, lstrip that of the text before it (Python's
 * str.strip() white space), single_word glues a token that touches a
 * word back onto it. */
static int
strip_around(const sptok *t, seg *segs, size_t nsegs)
{
	for (size_t i = 0; i < nsegs; i++) {
		int32_t a = seg_added(t, &segs[i]);
		const sp_added *ad;
		seg left = { NULL, 0, NULL }, right = { NULL, 0, NULL };
		int has_left, has_right;
		if (a < 0)
			continue;
		ad = &t->added[a];
		has_left = i > 0 && segs[i - 1].n > 0;
		has_right = i + 1 < nsegs && segs[i + 1].n > 0;
		if (has_left)
			left = segs[i - 1];
		if (has_right)
			right = segs[i + 1];
		if (ad->rstrip && has_right) {
			while (segs[i + 1].n > 0 && is_pyspace(segs[i + 1].p[0])) {
				segs[i + 1].p++;
				segs[i + 1].n--;
			}
		}
		if (ad->lstrip && has_left) {
			while (segs[i - 1].n > 0 &&
			    is_pyspace(segs[i - 1].p[segs[i - 1].n - 1]))
				segs[i - 1].n--;
		}
		if (ad->single_word && has_left && left.p[left.n - 1] != ' ') {
			seg cur = segs[i];
			if (seg_concat(&segs[i - 1], &segs[i - 1], &cur))
				return CDX_ENOMEM;
			segs[i].n = 0;
		} else if (ad->single_word && has_right && right.p[0] != ' ') {
			seg cur = segs[i];
			if (seg_concat(&segs[i + 1], &cur, &segs[i + 1]))
				return CDX_ENOMEM;
			segs[i].n = 0;
		}
	}
	return 0;
}

/* The ids so far, and what the first two tokens' strings are. */
typedef struct idvec {
	int32_t *v;
	size_t n, cap;
	unsigned char underline[2];   /* the string is exactly "\u2581" */
	unsigned char special[2];     /* the string is in all_special_tokens */
} idvec;

static int
idvec_push(idvec *o, int32_t id, int underline, int special)
{
	if (o->n == o->cap) {
		size_t cap = o->cap ? 2 * o->cap : 128;
		int32_t *nv = realloc(o->v, cap * sizeof(*nv));
		if (!nv)
			return CDX_ENOMEM;
		o->v = nv;
		o->cap = cap;
	}
	if (o->n < 2) {
		o->underline[o->n] = (unsigned char)underline;
		o->special[o->n] = (unsigned char)special;
	}
	o->v[o->n++] = id;
	return 0;
}

/* Appends the ids of the pieces from index `from` on, each through the
 * added tokens first (convert_tokens_to_ids). */
static int
push_pieces(const sptok *t, const spm_pieces *pc, size_t from, idvec *o)
{
	for (size_t i = from; i < pc->n; i++) {
		const char *s = pc->buf + pc->off[i];
		size_t len = pc->off[i + 1] - pc->off[i];
		int32_t a = added_find_utf8(t, s, len);
		int32_t id = a >= 0 ? t->added[a].id : pc->ids[i];
		int ul = len == 3 && memcmp(s, UNDERLINE_UTF8, 3) == 0;
		if (idvec_push(o, id, ul, a >= 0 && t->added[a].attr))
			return CDX_ENOMEM;
	}
	return 0;
}

/* Scratch buffers of one sptok_tokenize() call. */
typedef struct scratch {
	uint32_t *cp;           /* code points of one segment */
	char *utf8;
	size_t cap;             /* code points cp holds; utf8 holds 4x + unk */
} scratch;

static int
scratch_reserve(scratch *w, size_t n, size_t extra)
{
	uint32_t *cp;
	char *u;
	if (n <= w->cap)
		return 0;
	cp = realloc(w->cp, (3 * n + 1) * sizeof(*cp));
	if (!cp)
		return CDX_ENOMEM;
	w->cp = cp;
	u = realloc(w->utf8, 12 * n + extra + 1);
	if (!u)
		return CDX_ENOMEM;
	w->utf8 = u;
	w->cap = n;
	return 0;
}

/* SiglipTokenizer._tokenize(): canonicalize_text, then SentencePiece on
 * unk_token + text, less the unk_token's pieces. */
static int
siglip_text(const sptok *t, const seg *g, scratch *w, idvec *o,
    cdx_error *err)
{
	size_t n = 0, lo = 0, nb;
	int space = 0, rc;
	spm_pieces pc;

	if (scratch_reserve(w, g->n, t->unk_len))
		return cdx_error_set(err, CDX_ENOMEM,
		    "clip_tokenize: out of memory");
	/* string.punctuation removed, then re.sub(r"\s+", " "), then
	 * strip(): Python's re \s is str.isspace() for str patterns. */
	for (size_t i = 0; i < g->n; i++) {
		uint32_t c = g->p[i];
		if (is_ascii_punct(c))
			continue;
		if (is_pyspace(c)) {
			if (!space)
				w->cp[n++] = ' ';
			space = 1;
		} else {
			w->cp[n++] = c;
			space = 0;
		}
	}
	if (n > 0 && w->cp[n - 1] == ' ')
		n--;
	if (n > 0 && w->cp[0] == ' ')
		lo = 1;
	memcpy(w->utf8, t->unk, t->unk_len);
	nb = t->unk_len;
	for (size_t i = lo; i < n; i++)
		nb += tkn_utf8_put(w->cp[i], w->utf8 + nb);
	rc = spm_encode(t->sp, w->utf8, nb, &pc, err);
	if (rc)
		return rc;
	rc = push_pieces(t, &pc, pc.n >= t->unk_ntok ? t->unk_ntok : 0, o);
	spm_pieces_free(&pc);
	if (rc)
		return cdx_error_set(err, rc, "clip_tokenize: out of memory");
	return 0;
}

/* The Gemma tokenizer's _tokenize() on the text lower-cased character by
 * character (Siglip2Tokenizer's normalizers.Lowercase()). */
static int
gemma_text(const sptok *t, const seg *g, scratch *w, idvec *o,
    cdx_error *err)
{
	size_t nb = 0;
	uint32_t low[3];
	spm_pieces pc;
	int rc;

	if (scratch_reserve(w, g->n, 0))
		return cdx_error_set(err, CDX_ENOMEM,
		    "clip_tokenize: out of memory");
	for (size_t i = 0; i < g->n; i++) {
		size_t k = tkn_lower_char(g->p[i], low);
		for (size_t j = 0; j < k; j++)
			nb += tkn_utf8_put(low[j], w->utf8 + nb);
	}
	rc = spm_encode(t->sp, w->utf8, nb, &pc, err);
	if (rc)
		return rc;
	rc = push_pieces(t, &pc, 0, o);
	spm_pieces_free(&pc);
	if (rc)
		return cdx_error_set(err, rc, "clip_tokenize: out of memory");
	return 0;
}

/* prepare_for_model(): truncation that keeps room for the special tokens
 * (truncate_sequences, longest_first on one sequence), the special tokens
 * (build_inputs_with_special_tokens), padding (_pad).  Writes
 * context_len ids; returns the number before the padding. */
static int
finish(const sptok *t, const int32_t *v, size_t n, int32_t *ids)
{
	size_t ctx = (size_t)t->context_len, nspec, m = 0;
	int32_t seq[CLIP_CONTEXT_LEN];

	nspec = t->kind == CLIP_TOKENIZER_SIGLIP ? 1 :
	    (size_t)(t->add_bos + t->add_eos);
	if (n + nspec > ctx) {
		size_t remove = n + nspec - ctx;  /* < n: ctx > nspec */
		if (t->trunc_left)
			v += remove;
		n -= remove;
	}
	if (t->kind == CLIP_TOKENIZER_GEMMA && t->add_bos)
		seq[m++] = t->bos_id;
	if (n > 0)
		memcpy(seq + m, v, n * sizeof(*v));
	m += n;
	/* SiglipTokenizer._add_eos_if_not_present */
	if (t->kind == CLIP_TOKENIZER_SIGLIP ? !(n > 0 && v[n - 1] == t->eos_id) :
	    t->add_eos)
		seq[m++] = t->eos_id;
	if (t->pad_left) {
		for (size_t i = 0; i < ctx - m; i++)
			ids[i] = t->pad_id;
		memcpy(ids + (ctx - m), seq, m * sizeof(*seq));
	} else {
		memcpy(ids, seq, m * sizeof(*seq));
		for (size_t i = m; i < ctx; i++)
			ids[i] = t->pad_id;
	}
	return (int)m;
}

int
sptok_tokenize(const sptok *t, const char *text, size_t len, int32_t *ids,
    int *n_tokens, cdx_error *err)
{
	uint32_t *a = NULL, *b = NULL;
	const uint32_t *s;
	seg *segs = NULL;
	size_t n = 0, nsegs = 0, enough;
	scratch w = { 0 };
	idvec o = { 0 };
	int rc, m;

	if (!t || !ids || (!text && len > 0))
		return cdx_error_set(err, CDX_EINVAL,
		    "clip_tokenize: NULL argument");
	if (len > SPTOK_MAX_TEXT)
		return cdx_error_set(err, CDX_ETOOBIG, "clip_tokenize: text of "
		    "%zu bytes is over the %u KiB limit of SentencePiece "
		    "tokenizers", len, SPTOK_MAX_TEXT >> 10);
	a = malloc((len + 2) * sizeof(*a));
	if (!a) {
		rc = cdx_error_set(err, CDX_ENOMEM, "clip_tokenize: out of memory");
		goto out_free;
	}
	/* SigLIP: SiglipTokenizer.tokenize's SPIECE_UNDERLINE + text. */
	rc = tkn_utf8_decode((const unsigned char *)text, len,
	    t->kind == CLIP_TOKENIZER_SIGLIP ? a + 1 : a, &n, err);
	if (rc)
		goto out_free;
	s = a;
	if (t->kind == CLIP_TOKENIZER_SIGLIP) {
		a[0] = SPIECE_UNDERLINE;
		for (size_t i = 1; i <= n; i++)
			if (a[i] == SPIECE_UNDERLINE)
				a[i] = ' ';
		n++;
		if (t->lower_case) {
			b = malloc((3 * n + 1) * sizeof(*b));
			if (!b) {
				rc = cdx_error_set(err, CDX_ENOMEM,
				    "clip_tokenize: out of memory");
				goto out_free;
			}
			n = lower_keep(t, a, n, b);
			s = b;
		}
	}

	segs = malloc((2 * n + 3) * sizeof(*segs));
	if (!segs) {
		rc = cdx_error_set(err, CDX_ENOMEM, "clip_tokenize: out of memory");
		goto out_free;
	}
	if (t->split_special) {
		segs[0].p = s;
		segs[0].n = n;
		segs[0].own = NULL;
		nsegs = n > 0;
	} else {
		rc = trie_split(t, s, n, segs, &nsegs);
		if (!rc)
			rc = strip_around(t, segs, nsegs);
		if (rc) {
			cdx_error_set(err, rc, rc == CDX_ENOMEM ?
			    "clip_tokenize: out of memory" :
			    "clip_tokenize: added-token split overflowed");
			goto out_free;
		}
	}

	/* Only the first ids survive a right truncation: stop once there
	 * are more than can be kept (and the first two are known). */
	enough = t->trunc_left ? SIZE_MAX : (size_t)t->context_len + 2;
	for (size_t i = 0; i < nsegs && o.n < enough; i++) {
		const seg *g = &segs[i];
		int32_t ad;
		if (g->n == 0)
			continue;
		ad = seg_added(t, g);
		if (ad >= 0) {
			const sp_added *x = &t->added[ad];
			rc = idvec_push(&o, x->id, x->ncps == 1 &&
			    x->cps[0] == SPIECE_UNDERLINE, x->attr);
			if (rc)
				cdx_error_set(err, rc,
				    "clip_tokenize: out of memory");
		} else if (t->kind == CLIP_TOKENIZER_SIGLIP) {
			rc = siglip_text(t, g, &w, &o, err);
		} else {
			rc = gemma_text(t, g, &w, &o, err);
		}
		if (rc)
			goto out_free;
	}
	/* SiglipTokenizer.tokenize: a first "\u2581" followed by a special
	 * token is dropped. */
	if (t->kind == CLIP_TOKENIZER_SIGLIP && o.n > 1 && o.underline[0] &&
	    o.special[1])
		m = finish(t, o.v + 1, o.n - 1, ids);
	else
		m = finish(t, o.v, o.n, ids);
	if (n_tokens)
		*n_tokens = m;
out_free:
	for (size_t i = 0; i < nsegs; i++)
		free(segs[i].own);
	free(segs);
	free(o.v);
	free(w.cp);
	free(w.utf8);
	free(b);
	free(a);
	return rc;
}
