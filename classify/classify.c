/*
 * classify.c - cls_set: its allocation, labels and templates, scoring
 * (one SGEMM), the labels that apply, and its bytes (classify.h).
 */
#include <cblas.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classify/classify.h"
#include "common/utf8.h"

/* ---- the set ---------------------------------------------------------- */

int cls_name_check(const char *name, cdx_error *err)
{
	size_t len;

	if (!name || !*name)
		return cdx_error_set(err, CDX_EINVAL, "the name is empty");
	len = strlen(name);
	if (len > CLS_NAME_MAX)
		return cdx_error_set(err, CDX_EINVAL,
				     "name '%.32s...' is %zu bytes: at most %d",
				     name, len, CLS_NAME_MAX);
	for (size_t i = 0; i < len; i++) {
		char ch = name[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' ||
		      ch == '-'))
			return cdx_error_set(err, CDX_EINVAL,
					     "name '%s': only letters, digits, "
					     "'_', '.' and '-' are allowed",
					     name);
	}
	return 0;
}

/* a + b * c into *out, or 0 on overflow. */
static int size_madd(size_t a, size_t b, size_t c, size_t *out)
{
	if (c && b > (SIZE_MAX - a) / c)
		return 0;
	*out = a + b * c;
	return 1;
}

/* Layout of the one allocation (every part's offset is a multiple of 8):
 * the struct, label and template pointers, pos and neg ids, w and bias
 * (floats, padded to 8 bytes), then a fixed slot for each label
 * (CLS_LABEL_MAX + 1 bytes) and template (CLS_TEMPLATE_MAX + 1). */
int cls_set_new(const char *name, size_t n, size_t dim, size_t n_templates,
		size_t n_pos, size_t n_neg, cls_set **out, cdx_error *err)
{
	size_t off, o_tmpl, o_pos, o_neg, o_w, o_bias, o_lchars, o_tchars;
	size_t n_floats;
	cls_set *c;
	char *base;
	int rc;

	if (!out)
		return cdx_error_set(err, CDX_EINVAL, "no output");
	rc = cls_name_check(name, err);
	if (rc)
		return rc;
	if (n == 0 || n > CLS_MAX_LABELS)
		return cdx_error_set(err, CDX_EINVAL,
				     "%zu labels: a set has 1 to %d", n,
				     CLS_MAX_LABELS);
	if (dim == 0 || dim > INT_MAX)
		return cdx_error_set(err, CDX_EINVAL, "bad dimension %zu",
				     dim);
	if (n_templates > CLS_MAX_TEMPLATES)
		return cdx_error_set(err, CDX_EINVAL,
				     "%zu templates: at most %d", n_templates,
				     CLS_MAX_TEMPLATES);

	off = (sizeof(cls_set) + 7) & ~(size_t)7;
	o_tmpl = off + n * sizeof(char *);
	o_pos = o_tmpl + n_templates * sizeof(char *);
	if (!size_madd(o_pos, n_pos, sizeof(uint64_t), &o_neg) ||
	    !size_madd(o_neg, n_neg, sizeof(uint64_t), &o_w) ||
	    !size_madd(n, n, dim, &n_floats) || /* n * dim + n */
	    !size_madd(o_w, n_floats + 1, sizeof(float), &o_lchars))
		return cdx_error_set(err, CDX_ENOMEM, "set too large");
	o_bias = o_w + n * dim * sizeof(float);
	o_lchars &= ~(size_t)7;
	if (o_lchars > SIZE_MAX - (size_t)CLS_MAX_LABELS * (CLS_LABEL_MAX + 1) -
			       (size_t)CLS_MAX_TEMPLATES * (CLS_TEMPLATE_MAX + 1))
		return cdx_error_set(err, CDX_ENOMEM, "set too large");
	o_tchars = o_lchars + n * (CLS_LABEL_MAX + 1);
	off = o_tchars + n_templates * (CLS_TEMPLATE_MAX + 1);

	base = calloc(1, off);
	if (!base)
		return cdx_error_set(err, CDX_ENOMEM, "set of %zu bytes", off);
	c = (cls_set *)base;
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->kind = CLS_SOFTMAX;
	c->origin = CLS_ZERO_SHOT;
	c->scale = 1.0f;
	c->n = n;
	c->dim = dim;
	c->n_templates = n_templates;
	c->n_pos = n_pos;
	c->n_neg = n_neg;
	c->labels = (char **)(base + ((sizeof(cls_set) + 7) & ~(size_t)7));
	c->templates = (char **)(base + o_tmpl);
	c->pos = (uint64_t *)(base + o_pos);
	c->neg = (uint64_t *)(base + o_neg);
	c->w = (float *)(base + o_w);
	c->bias = (float *)(base + o_bias);
	for (size_t i = 0; i < n; i++)
		c->labels[i] = base + o_lchars + i * (CLS_LABEL_MAX + 1);
	for (size_t i = 0; i < n_templates; i++)
		c->templates[i] = base + o_tchars + i * (CLS_TEMPLATE_MAX + 1);
	*out = c;
	return 0;
}

void cls_set_free(cls_set *c)
{
	free(c);
}

int cls_set_label(cls_set *c, size_t i, const char *label, cdx_error *err)
{
	size_t len;

	if (!c || !label || i >= c->n)
		return cdx_error_set(err, CDX_EINVAL, "no label %zu", i);
	len = strlen(label);
	if (len > CLS_LABEL_MAX)
		return cdx_error_set(err, CDX_EINVAL,
				     "label '%.32s...' is %zu bytes: at most %d",
				     label, len, CLS_LABEL_MAX);
	memcpy(c->labels[i], label, len + 1);
	return 0;
}

int cls_set_template(cls_set *c, size_t i, const char *tmpl, cdx_error *err)
{
	int rc;

	if (!c || i >= c->n_templates)
		return cdx_error_set(err, CDX_EINVAL, "no template %zu", i);
	rc = cls_template_check(tmpl, err);
	if (rc)
		return rc;
	memcpy(c->templates[i], tmpl, strlen(tmpl) + 1);
	return 0;
}

/* ---- labels and templates --------------------------------------------- */


static int is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' ||
	       ch == '\v' || ch == '\f';
}

int cls_labels_check(const char *const *labels, size_t n, cdx_error *err)
{
	if (!labels || n == 0)
		return cdx_error_set(err, CDX_EINVAL, "no labels");
	if (n > CLS_MAX_LABELS)
		return cdx_error_set(err, CDX_EINVAL,
				     "%zu labels: more than %d labels", n,
				     CLS_MAX_LABELS);
	for (size_t i = 0; i < n; i++) {
		const char *s = labels[i];
		size_t len = s ? strlen(s) : 0;

		if (len == 0)
			return cdx_error_set(err, CDX_EINVAL,
					     "label %zu is empty", i + 1);
		if (len > CLS_LABEL_MAX)
			return cdx_error_set(err, CDX_EINVAL,
					     "label '%.32s...' is %zu bytes: "
					     "at most %d", s, len,
					     CLS_LABEL_MAX);
		if (!cdx_utf8_valid((const unsigned char *)s, len))
			return cdx_error_set(err, CDX_EINVAL,
					     "label %zu is not UTF-8", i + 1);
		for (size_t j = 0; j < i; j++)
			if (strcmp(labels[j], s) == 0)
				return cdx_error_set(err, CDX_EINVAL,
						     "label '%s' is given "
						     "twice", s);
	}
	return 0;
}

int cls_labels_parse(const char *text, int lines, char ***out, size_t *n,
		     cdx_error *err)
{
	char sep = lines ? '\n' : ',';
	size_t len, pieces = 1, count = 0;
	char **labels, *p;
	int rc;

	if (!text || !out || !n)
		return cdx_error_set(err, CDX_EINVAL, "no labels");
	while (*text && is_space(*text))
		text++;
	if (!*text)
		return cdx_error_set(err, CDX_EINVAL, "no labels");
	len = strlen(text);
	for (size_t i = 0; i < len; i++)
		pieces += text[i] == sep;
	labels = malloc(pieces * sizeof(char *) + len + 1);
	if (!labels)
		return cdx_error_set(err, CDX_ENOMEM, "labels");
	p = (char *)(labels + pieces);
	memcpy(p, text, len + 1);

	/* split in place and trim; a file's blank and '#' lines go */
	while (p) {
		char *end = strchr(p, sep), *s = p, *e;

		p = end ? end + 1 : NULL;
		if (end)
			*end = '\0';
		e = s + strlen(s);
		while (s < e && is_space(*s))
			s++;
		while (e > s && is_space(e[-1]))
			e--;
		*e = '\0';
		if (lines && (*s == '\0' || *s == '#'))
			continue;
		labels[count++] = s;
	}
	rc = cls_labels_check((const char *const *)labels, count, err);
	if (rc) {
		free(labels);
		return rc;
	}
	*out = labels;
	*n = count;
	return 0;
}

int cls_template_check(const char *tmpl, cdx_error *err)
{
	size_t len;

	if (!tmpl)
		return cdx_error_set(err, CDX_EINVAL, "no template");
	len = strlen(tmpl);
	if (len > CLS_TEMPLATE_MAX)
		return cdx_error_set(err, CDX_EINVAL,
				     "template '%.32s...' is %zu bytes: at "
				     "most %d", tmpl, len, CLS_TEMPLATE_MAX);
	if (!strstr(tmpl, "{}"))
		return cdx_error_set(err, CDX_EINVAL,
				     "template '%s' has no {} for the label",
				     tmpl);
	if (!cdx_utf8_valid((const unsigned char *)tmpl, len))
		return cdx_error_set(err, CDX_EINVAL,
				     "a template is not UTF-8");
	return 0;
}

int cls_template_apply(const char *tmpl, const char *label, char **out,
		       cdx_error *err)
{
	size_t holes = 0, llen, len;
	const char *p;
	char *s, *q;
	int rc;

	rc = cls_template_check(tmpl, err);
	if (rc)
		return rc;
	if (!label || !out)
		return cdx_error_set(err, CDX_EINVAL, "no label");
	for (p = tmpl; (p = strstr(p, "{}")); p += 2)
		holes++;
	llen = strlen(label);
	/* holes <= CLS_TEMPLATE_MAX / 2: no overflow for any C string */
	len = strlen(tmpl) - 2 * holes + holes * llen;
	s = malloc(len + 1);
	if (!s)
		return cdx_error_set(err, CDX_ENOMEM, "template text");
	q = s;
	for (p = tmpl; *p;) {
		if (p[0] == '{' && p[1] == '}') {
			memcpy(q, label, llen);
			q += llen;
			p += 2;
		} else {
			*q++ = *p++;
		}
	}
	*q = '\0';
	*out = s;
	return 0;
}

/* ---- scoring ---------------------------------------------------------- */

static float sigmoid(float z)
{
	if (z >= 0)
		return 1.0f / (1.0f + expf(-z));
	float e = expf(z);
	return e / (1.0f + e);
}

int cls_score(const cls_set *c, const float *x, size_t m, size_t dim,
	      float *prob, cdx_error *err)
{
	size_t n;

	if (!c || (m && (!x || !prob)))
		return cdx_error_set(err, CDX_EINVAL, "nothing to score");
	if (dim != c->dim)
		return cdx_error_set(err, CDX_EINVAL,
				     "embeddings of %zu floats, set '%s' of "
				     "%zu", dim, c->name, c->dim);
	if (m > INT_MAX || c->n > INT_MAX || dim > INT_MAX)
		return cdx_error_set(err, CDX_EINVAL, "too many to score");
	if (m == 0)
		return 0;
	n = c->n;
	/* prob = scale * x W^T */
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n,
		    (int)dim, c->scale, x, (int)dim, c->w, (int)dim, 0.0f,
		    prob, (int)n);
	for (size_t r = 0; r < m; r++) {
		float *row = prob + r * n;

		/* a logit that overflowed (absurd weights; never a set
		 * made here) counts as +-FLT_MAX, NaN as -FLT_MAX: the
		 * probabilities stay in [0, 1] */
		for (size_t i = 0; i < n; i++)
			row[i] = fminf(fmaxf(row[i] + c->bias[i], -FLT_MAX),
				       FLT_MAX);
		if (c->kind == CLS_SIGMOID) {
			for (size_t i = 0; i < n; i++)
				row[i] = sigmoid(row[i]);
			continue;
		}
		float max = row[0];
		double sum = 0;
		for (size_t i = 1; i < n; i++)
			if (row[i] > max)
				max = row[i];
		for (size_t i = 0; i < n; i++) {
			row[i] = expf(row[i] - max);
			sum += row[i];
		}
		for (size_t i = 0; i < n; i++)
			row[i] = (float)(row[i] / sum);
	}
	return 0;
}

size_t cls_applied(const cls_set *c, const float *prob, uint32_t *idx)
{
	size_t k = 0;

	if (!c || !prob || !idx)
		return 0;
	if (!c->multi) {
		size_t best = 0;
		for (size_t i = 1; i < c->n; i++)
			if (prob[i] > prob[best])
				best = i;
		if (prob[best] >= c->threshold)
			idx[k++] = (uint32_t)best;
		return k;
	}
	/* insertion by probability, highest first; ties keep label order */
	for (size_t i = 0; i < c->n; i++) {
		size_t j;

		if (!(prob[i] >= c->threshold))
			continue;
		for (j = k; j > 0 && prob[idx[j - 1]] < prob[i]; j--)
			idx[j] = idx[j - 1];
		idx[j] = (uint32_t)i;
		k++;
	}
	return k;
}

/* ---- bytes ------------------------------------------------------------
 *
 * Version 1, little-endian throughout:
 *   "CLSS"  u32 version (1)
 *   u32 kind, origin, multi;  f32 threshold, scale
 *   u32 n, dim, n_templates;  u64 n_pos, n_neg
 *   str name, model_key;  n x str label;  n_templates x str template
 *   n*dim f32 w;  n f32 bias;  n_pos u64 pos;  n_neg u64 neg
 * where str is a u16 byte count and that many bytes (no NUL).  The
 * buffer ends exactly there. */

#define CLS_MAGIC "CLSS"
#define CLS_VERSION 1u

struct wbuf {
	unsigned char *p;
	size_t len;
};

static void put_u16(struct wbuf *b, uint16_t v)
{
	b->p[b->len++] = (unsigned char)v;
	b->p[b->len++] = (unsigned char)(v >> 8);
}

static void put_u32(struct wbuf *b, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		b->p[b->len++] = (unsigned char)(v >> (8 * i));
}

static void put_u64(struct wbuf *b, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		b->p[b->len++] = (unsigned char)(v >> (8 * i));
}

static void put_f32(struct wbuf *b, float f)
{
	uint32_t v;
	memcpy(&v, &f, 4);
	put_u32(b, v);
}

static void put_str(struct wbuf *b, const char *s)
{
	size_t len = strlen(s);
	put_u16(b, (uint16_t)len);
	memcpy(b->p + b->len, s, len);
	b->len += len;
}

int cls_set_encode(const cls_set *c, void **out, size_t *len, cdx_error *err)
{
	size_t size = 4 + 4 + 5 * 4 + 3 * 4 + 2 * 8, strs = 0;
	struct wbuf b;

	if (!c || !out || !len)
		return cdx_error_set(err, CDX_EINVAL, "nothing to encode");
	strs += strlen(c->name) + strlen(c->model_key) + 4;
	for (size_t i = 0; i < c->n; i++)
		strs += strlen(c->labels[i]) + 2;
	for (size_t i = 0; i < c->n_templates; i++)
		strs += strlen(c->templates[i]) + 2;
	/* cls_set_new bounded n * dim and the ids by memory already */
	size += strs + (c->n * c->dim + c->n) * 4 + (c->n_pos + c->n_neg) * 8;
	b.p = malloc(size);
	if (!b.p)
		return cdx_error_set(err, CDX_ENOMEM, "set of %zu bytes",
				     size);
	b.len = 0;
	memcpy(b.p, CLS_MAGIC, 4);
	b.len = 4;
	put_u32(&b, CLS_VERSION);
	put_u32(&b, (uint32_t)c->kind);
	put_u32(&b, (uint32_t)c->origin);
	put_u32(&b, (uint32_t)c->multi);
	put_f32(&b, c->threshold);
	put_f32(&b, c->scale);
	put_u32(&b, (uint32_t)c->n);
	put_u32(&b, (uint32_t)c->dim);
	put_u32(&b, (uint32_t)c->n_templates);
	put_u64(&b, c->n_pos);
	put_u64(&b, c->n_neg);
	put_str(&b, c->name);
	put_str(&b, c->model_key);
	for (size_t i = 0; i < c->n; i++)
		put_str(&b, c->labels[i]);
	for (size_t i = 0; i < c->n_templates; i++)
		put_str(&b, c->templates[i]);
	for (size_t i = 0; i < c->n * c->dim; i++)
		put_f32(&b, c->w[i]);
	for (size_t i = 0; i < c->n; i++)
		put_f32(&b, c->bias[i]);
	for (size_t i = 0; i < c->n_pos; i++)
		put_u64(&b, c->pos[i]);
	for (size_t i = 0; i < c->n_neg; i++)
		put_u64(&b, c->neg[i]);
	*out = b.p;
	*len = b.len;
	return 0;
}

struct rbuf {
	const unsigned char *p;
	size_t len, off;
};

static int have(const struct rbuf *b, size_t k)
{
	return b->len - b->off >= k;
}

static uint64_t get_le(struct rbuf *b, int bytes)
{
	uint64_t v = 0;
	for (int i = 0; i < bytes; i++)
		v |= (uint64_t)b->p[b->off + (size_t)i] << (8 * i);
	b->off += (size_t)bytes;
	return v;
}

static float get_f32(struct rbuf *b)
{
	uint32_t v = (uint32_t)get_le(b, 4);
	float f;
	memcpy(&f, &v, 4);
	return f;
}

/* Reads a str into dst (room for max bytes and the NUL).  0 or -1. */
static int get_str(struct rbuf *b, char *dst, size_t max)
{
	size_t len;

	if (!have(b, 2))
		return -1;
	len = (size_t)get_le(b, 2);
	if (len > max || !have(b, len) || memchr(b->p + b->off, 0, len))
		return -1;
	memcpy(dst, b->p + b->off, len);
	dst[len] = '\0';
	b->off += len;
	return 0;
}

/* Skips a str of at most max bytes.  0 or -1. */
static int skip_str(struct rbuf *b, size_t max)
{
	size_t len;

	if (!have(b, 2))
		return -1;
	len = (size_t)get_le(b, 2);
	if (len > max || !have(b, len))
		return -1;
	b->off += len;
	return 0;
}

#define CORRUPT(what) \
	cdx_error_set(err, CDX_ECORRUPT, "stored classifier: %s", what)

static int str_ptr_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* CDX_ECORRUPT when c names a label twice (a tag would be ambiguous). */
static int labels_distinct(const cls_set *c, cdx_error *err)
{
	char **v = malloc(c->n * sizeof(*v));
	int rc = 0;

	if (!v)
		return cdx_error_set(err, CDX_ENOMEM, "stored classifier");
	memcpy(v, c->labels, c->n * sizeof(*v));
	qsort(v, c->n, sizeof(*v), str_ptr_cmp);
	for (size_t i = 1; i < c->n && !rc; i++)
		if (strcmp(v[i - 1], v[i]) == 0)
			rc = CORRUPT("a label is given twice");
	free(v);
	return rc;
}

int cls_set_decode(const void *buf, size_t len, cls_set **out,
		   cdx_error *err)
{
	struct rbuf b = { buf, len, 0 };
	uint32_t version, kind, origin, multi, n, dim, n_templates;
	uint64_t n_pos, n_neg;
	float threshold, scale;
	char name[CLS_NAME_MAX + 1];
	size_t strings_at, need;
	cls_set *c = NULL;
	int rc;

	if (!out || (!buf && len))
		return cdx_error_set(err, CDX_EINVAL, "nothing to decode");
	if (!have(&b, 4 + 4 + 5 * 4 + 3 * 4 + 2 * 8) ||
	    memcmp(b.p, CLS_MAGIC, 4) != 0)
		return CORRUPT("not a classifier");
	b.off = 4;
	version = (uint32_t)get_le(&b, 4);
	if (version != CLS_VERSION)
		return cdx_error_set(err, CDX_ECORRUPT,
				     "stored classifier: version %u, this "
				     "program reads %u", version, CLS_VERSION);
	kind = (uint32_t)get_le(&b, 4);
	origin = (uint32_t)get_le(&b, 4);
	multi = (uint32_t)get_le(&b, 4);
	threshold = get_f32(&b);
	scale = get_f32(&b);
	n = (uint32_t)get_le(&b, 4);
	dim = (uint32_t)get_le(&b, 4);
	n_templates = (uint32_t)get_le(&b, 4);
	n_pos = get_le(&b, 8);
	n_neg = get_le(&b, 8);
	if (kind > CLS_SIGMOID || origin > CLS_LEARNED || multi > 1 ||
	    !(threshold >= 0 && threshold <= 1) || !isfinite(scale))
		return CORRUPT("bad kind, origin or threshold");
	if (n == 0 || n > CLS_MAX_LABELS || dim == 0 || dim > INT_MAX ||
	    n_templates > CLS_MAX_TEMPLATES)
		return CORRUPT("bad label, template or dimension count");

	/* The strings, once to measure, before any allocation: what
	 * follows them must fit in what is left. */
	if (get_str(&b, name, CLS_NAME_MAX) || cls_name_check(name, NULL))
		return CORRUPT("bad name");
	strings_at = b.off;
	if (skip_str(&b, sizeof(c->model_key) - 1))
		return CORRUPT("bad model key");
	for (uint32_t i = 0; i < n; i++)
		if (skip_str(&b, CLS_LABEL_MAX))
			return CORRUPT("bad label");
	for (uint32_t i = 0; i < n_templates; i++)
		if (skip_str(&b, CLS_TEMPLATE_MAX))
			return CORRUPT("bad template");
	/* every count is bounded by the bytes before the sizes are
	 * formed (n <= 1000): no overflow */
	if (n_pos > len / 8 || n_neg > len / 8 || (uint64_t)dim > len / 4)
		return CORRUPT("truncated");
	need = ((size_t)n * dim + n) * 4 + (size_t)(n_pos + n_neg) * 8;
	if (b.len - b.off != need)
		return CORRUPT("truncated or trailing bytes");

	rc = cls_set_new(name, n, dim, n_templates, (size_t)n_pos,
			 (size_t)n_neg, &c, err);
	if (rc)
		return rc;
	c->kind = (int)kind;
	c->origin = (int)origin;
	c->multi = (int)multi;
	c->threshold = threshold;
	c->scale = scale;
	b.off = strings_at;
	/* lengths were checked above; these cannot fail now */
	if (get_str(&b, c->model_key, sizeof(c->model_key) - 1))
		goto out_corrupt;
	for (uint32_t i = 0; i < n; i++)
		if (get_str(&b, c->labels[i], CLS_LABEL_MAX) ||
		    !c->labels[i][0])
			goto out_corrupt;
	if ((rc = labels_distinct(c, err)))
		goto out_rc;
	for (uint32_t i = 0; i < n_templates; i++)
		if (get_str(&b, c->templates[i], CLS_TEMPLATE_MAX) ||
		    !strstr(c->templates[i], "{}"))
			goto out_corrupt;
	for (size_t i = 0; i < (size_t)n * dim; i++) {
		c->w[i] = get_f32(&b);
		if (!isfinite(c->w[i]))
			goto out_corrupt;
	}
	for (size_t i = 0; i < n; i++) {
		c->bias[i] = get_f32(&b);
		if (!isfinite(c->bias[i]))
			goto out_corrupt;
	}
	for (size_t i = 0; i < n_pos; i++)
		c->pos[i] = get_le(&b, 8);
	for (size_t i = 0; i < n_neg; i++)
		c->neg[i] = get_le(&b, 8);
	*out = c;
	return 0;

out_corrupt:
	cls_set_free(c);
	return CORRUPT("bad label, template or weight");
out_rc:
	cls_set_free(c);
	return rc;
}
