/* Tests of classify/classify.c: scoring against a double-precision
 * recomputation, the labels that apply, label and template parsing with
 * every bad input, and the set's bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classify/classify.h"
#include "common/vec.h"
#include "tests/cdx_assert.h"

/* A deterministic uniform in [-1, 1). */
static float lcg(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return (float)((double)(*s >> 11) / 4503599627370496.0 - 1.0);
}

static void unit_rows(float *x, size_t m, size_t dim, uint64_t seed)
{
	for (size_t i = 0; i < m * dim; i++)
		x[i] = lcg(&seed);
	for (size_t r = 0; r < m; r++)
		assert_int_equal(cdx_vec_normalise(x + r * dim, (int)dim), 0);
}

/* A set of n random unit rows. */
static cls_set *random_set(size_t n, size_t dim, int kind, float scale,
			   int with_bias, uint64_t seed)
{
	cls_set *c = NULL;
	cdx_error err = { 0 };
	char label[32];

	CDX_ASSERT_OK(cls_set_new("test", n, dim, 0, 0, 0, &c, &err),
		      err.msg);
	c->kind = kind;
	c->scale = scale;
	unit_rows(c->w, n, dim, seed);
	for (size_t i = 0; i < n; i++) {
		snprintf(label, sizeof(label), "label %zu", i);
		CDX_ASSERT_OK(cls_set_label(c, i, label, &err), err.msg);
		c->bias[i] = with_bias ? -3.0f + 0.5f * (float)i : 0.0f;
	}
	return c;
}

/* The straightforward recomputation: logits in double, then softmax or
 * sigmoid as the formulas in classify.h say. */
static void reference(const cls_set *c, const float *x, size_t m,
		      double *p)
{
	for (size_t r = 0; r < m; r++) {
		double *row = p + r * c->n, sum = 0;
		for (size_t i = 0; i < c->n; i++) {
			double dot = 0;
			for (size_t k = 0; k < c->dim; k++)
				dot += (double)x[r * c->dim + k] *
				       (double)c->w[i * c->dim + k];
			row[i] = (double)c->scale * dot + (double)c->bias[i];
		}
		if (c->kind == CLS_SIGMOID) {
			for (size_t i = 0; i < c->n; i++)
				row[i] = 1.0 / (1.0 + exp(-row[i]));
			continue;
		}
		for (size_t i = 0; i < c->n; i++)
			sum += exp(row[i]);
		for (size_t i = 0; i < c->n; i++)
			row[i] = exp(row[i]) / sum;
	}
}

static void check_score(int kind, float scale, int with_bias)
{
	const size_t n = 7, m = 9, dim = 48;
	float x[9 * 48], prob[9 * 7];
	double ref[9 * 7];
	cdx_error err = { 0 };
	cls_set *c = random_set(n, dim, kind, scale, with_bias, 42);

	unit_rows(x, m, dim, 7);
	CDX_ASSERT_OK(cls_score(c, x, m, dim, prob, &err), err.msg);
	reference(c, x, m, ref);
	for (size_t r = 0; r < m; r++) {
		double sum = 0;
		for (size_t i = 0; i < n; i++) {
			double p = prob[r * n + i];
			assert_true(isfinite(p));
			assert_true(fabs(p - ref[r * n + i]) < 2e-5);
			sum += p;
		}
		if (kind == CLS_SOFTMAX)
			assert_true(fabs(sum - 1.0) < 1e-5);
	}
	cls_set_free(c);
}

static void test_score_softmax(void **state)
{
	(void)state;
	check_score(CLS_SOFTMAX, 100.0f, 0); /* CLIP's exp(4.6052) */
	check_score(CLS_SOFTMAX, 1.0f, 1);
}

static void test_score_sigmoid(void **state)
{
	(void)state;
	/* SigLIP-like: scale about 110, bias about -12 */
	check_score(CLS_SIGMOID, 10.0f, 1);
	check_score(CLS_SIGMOID, 110.0f, 1);
}

/* Logits far outside exp's range still give finite probabilities. */
static void test_score_extreme(void **state)
{
	(void)state;
	float x[4] = { 1, 0, 0, 0 }, prob[2];
	cdx_error err = { 0 };
	cls_set *c = NULL;

	CDX_ASSERT_OK(cls_set_new("x", 2, 4, 0, 0, 0, &c, &err), err.msg);
	c->w[0] = 1; /* label 0 along x, label 1 against it */
	c->w[4] = -1;
	c->scale = 1e4f;
	CDX_ASSERT_OK(cls_score(c, x, 1, 4, prob, &err), err.msg);
	assert_float_equal(prob[0], 1.0, 1e-7);
	assert_float_equal(prob[1], 0.0, 1e-7);
	c->kind = CLS_SIGMOID;
	CDX_ASSERT_OK(cls_score(c, x, 1, 4, prob, &err), err.msg);
	assert_float_equal(prob[0], 1.0, 1e-7);
	assert_float_equal(prob[1], 0.0, 1e-7);
	/* logits that overflow (inf) or cancel out (NaN) still give
	 * probabilities: +inf wins, NaN loses */
	float big[4] = { 10, 10, 0, 0 };
	c->kind = CLS_SOFTMAX;
	c->scale = 1;
	c->w[0] = 0;     /* label 0: NaN through its bias */
	c->w[4] = 0;     /* label 1: 0 */
	c->bias[0] = NAN;
	CDX_ASSERT_OK(cls_score(c, big, 1, 4, prob, &err), err.msg);
	assert_float_equal(prob[0], 0.0, 1e-7);
	assert_float_equal(prob[1], 1.0, 1e-7);
	c->bias[0] = 0;
	c->w[0] = 3e38f; /* label 0: 3e39 + 3e39, +inf */
	c->w[1] = 3e38f;
	CDX_ASSERT_OK(cls_score(c, big, 1, 4, prob, &err), err.msg);
	assert_float_equal(prob[0], 1.0, 1e-7);
	assert_float_equal(prob[1], 0.0, 1e-7);
	c->kind = CLS_SIGMOID;
	CDX_ASSERT_OK(cls_score(c, big, 1, 4, prob, &err), err.msg);
	assert_float_equal(prob[0], 1.0, 1e-7);
	assert_float_equal(prob[1], 0.5, 1e-7);
	/* a dimension mismatch is refused; no rows is nothing to do */
	assert_int_equal(cls_score(c, x, 1, 3, prob, &err), CDX_EINVAL);
	assert_non_null(strstr(err.msg, "3"));
	CDX_ASSERT_OK(cls_score(c, NULL, 0, 4, NULL, &err), err.msg);
	cls_set_free(c);
}

static void test_applied(void **state)
{
	(void)state;
	cls_set *c = NULL;
	cdx_error err = { 0 };
	float p[5] = { 0.10f, 0.45f, 0.05f, 0.30f, 0.10f };
	uint32_t idx[5];

	CDX_ASSERT_OK(cls_set_new("a", 5, 2, 0, 0, 0, &c, &err), err.msg);
	/* single-label: the top one, if over the threshold */
	c->threshold = 0.0f;
	assert_int_equal(cls_applied(c, p, idx), 1);
	assert_int_equal(idx[0], 1);
	c->threshold = 0.45f; /* at the threshold applies */
	assert_int_equal(cls_applied(c, p, idx), 1);
	c->threshold = 0.5f;
	assert_int_equal(cls_applied(c, p, idx), 0);
	/* multi-label: every one at or over it, highest first, ties in
	 * label order */
	c->multi = 1;
	c->threshold = 0.1f;
	assert_int_equal(cls_applied(c, p, idx), 4);
	assert_int_equal(idx[0], 1);
	assert_int_equal(idx[1], 3);
	assert_int_equal(idx[2], 0);
	assert_int_equal(idx[3], 4);
	c->threshold = 0.3f;
	assert_int_equal(cls_applied(c, p, idx), 2);
	assert_int_equal(idx[0], 1);
	assert_int_equal(idx[1], 3);
	c->threshold = 0.9f;
	assert_int_equal(cls_applied(c, p, idx), 0);
	cls_set_free(c);
}

static void expect_labels(const char *text, int lines, size_t want_n,
			  const char *const *want)
{
	char **labels = NULL;
	size_t n = 0;
	cdx_error err = { 0 };

	CDX_ASSERT_OK(cls_labels_parse(text, lines, &labels, &n, &err),
		      err.msg);
	assert_int_equal(n, want_n);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(labels[i], want[i]);
	free(labels);
}

static void expect_bad(const char *text, int lines, const char *says)
{
	char **labels = NULL;
	size_t n = 0;
	cdx_error err = { 0 };

	assert_int_equal(cls_labels_parse(text, lines, &labels, &n, &err),
			 CDX_EINVAL);
	assert_null(labels);
	if (!strstr(err.msg, says))
		fail_msg("'%s': error '%s' does not say '%s'", text, err.msg,
			 says);
}

static void test_labels(void **state)
{
	(void)state;
	const char *const three[] = { "cat", "dog", "remote control" };
	const char *const one[] = { "café" };

	expect_labels("cat,dog,remote control", 0, 3, three);
	expect_labels("  cat ,\tdog,remote control  ", 0, 3, three);
	expect_labels("# animals\ncat\n\n  dog\r\nremote control\n", 1, 3,
		      three);
	expect_labels("caf\xc3\xa9", 0, 1, one);
	/* a comma belongs to a label in a file */
	const char *const comma[] = { "red, white" };
	expect_labels("red, white\n", 1, 1, comma);

	expect_bad("", 0, "no labels");
	expect_bad(" \t ", 0, "no labels");
	expect_bad(" ,dog", 0, "label 1 is empty");
	expect_bad("# only a comment\n\n", 1, "no labels");
	expect_bad("cat,,dog", 0, "label 2 is empty");
	expect_bad("cat,dog,", 0, "label 3 is empty");
	expect_bad("cat,dog,cat", 0, "'cat' is given twice");
	expect_bad("cat\n dog\ncat \n", 1, "'cat' is given twice");
	expect_bad("ok,\xff", 0, "not UTF-8");
	expect_bad("\xc0\xaf", 0, "not UTF-8");     /* overlong '/' */
	expect_bad("\xed\xa0\x80", 0, "not UTF-8"); /* a surrogate */
	expect_bad("\xe2\x82", 0, "not UTF-8");     /* cut short */

	/* the longest label fits; one byte more does not */
	char longest[CLS_LABEL_MAX + 2];
	memset(longest, 'a', CLS_LABEL_MAX + 1);
	longest[CLS_LABEL_MAX + 1] = '\0';
	expect_bad(longest, 0, "at most 128");
	longest[CLS_LABEL_MAX] = '\0';
	const char *const l1[] = { longest };
	expect_labels(longest, 0, 1, l1);
}

/* 1,000 labels parse; 1,001 do not. */
static void test_labels_count(void **state)
{
	(void)state;
	size_t cap = (CLS_MAX_LABELS + 1) * 8 + 1, len = 0;
	char *text = malloc(cap), **labels = NULL;
	size_t n = 0;
	cdx_error err = { 0 };

	assert_non_null(text);
	for (int i = 0; i < CLS_MAX_LABELS; i++)
		len += (size_t)snprintf(text + len, cap - len, "%sl%d",
					i ? "," : "", i);
	CDX_ASSERT_OK(cls_labels_parse(text, 0, &labels, &n, &err), err.msg);
	assert_int_equal(n, CLS_MAX_LABELS);
	assert_string_equal(labels[999], "l999");
	free(labels);
	snprintf(text + len, cap - len, ",l1000");
	labels = NULL;
	assert_int_equal(cls_labels_parse(text, 0, &labels, &n, &err),
			 CDX_EINVAL);
	assert_null(labels);
	assert_non_null(strstr(err.msg, "more than 1000 labels"));
	free(text);
}

static void test_templates(void **state)
{
	(void)state;
	cdx_error err = { 0 };
	char *s = NULL;
	const char *const *t = NULL;
	char big[CLS_TEMPLATE_MAX + 2];

	CDX_ASSERT_OK(cls_template_apply("a photo of a {}.", "cat", &s, &err),
		      err.msg);
	assert_string_equal(s, "a photo of a cat.");
	free(s);
	CDX_ASSERT_OK(cls_template_apply("{} and {}", "x y", &s, &err),
		      err.msg);
	assert_string_equal(s, "x y and x y");
	free(s);

	s = NULL;
	assert_int_equal(cls_template_apply("a photo of a cat", "cat", &s,
					    &err), CDX_EINVAL);
	assert_null(s);
	assert_non_null(strstr(err.msg, "has no {}"));
	assert_int_equal(cls_template_check("a photo of a { }", &err),
			 CDX_EINVAL);
	memset(big, 'a', sizeof(big) - 1);
	big[0] = '{';
	big[1] = '}';
	big[CLS_TEMPLATE_MAX + 1] = '\0';
	assert_int_equal(cls_template_check(big, &err), CDX_EINVAL);
	big[CLS_TEMPLATE_MAX] = '\0';
	CDX_ASSERT_OK(cls_template_check(big, &err), err.msg);

	assert_int_equal(cls_templates_named("default", &t), 1);
	assert_string_equal(t[0], "a photo of a {}.");
	assert_int_equal(cls_templates_named("imagenet", &t), 80);
	assert_string_equal(t[0], "a bad photo of a {}.");
	assert_string_equal(t[79], "a tattoo of the {}.");
	for (size_t i = 0; i < 80; i++) {
		CDX_ASSERT_OK(cls_template_check(t[i], &err), err.msg);
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(t[i], t[j]);
	}
	assert_int_equal(cls_templates_named("nonesuch", &t), 0);
}

static void test_set_new(void **state)
{
	(void)state;
	cls_set *c = NULL;
	cdx_error err = { 0 };

	assert_int_equal(cls_set_new("x", 0, 4, 0, 0, 0, &c, &err),
			 CDX_EINVAL);
	assert_int_equal(cls_set_new("x", CLS_MAX_LABELS + 1, 4, 0, 0, 0, &c,
				     &err), CDX_EINVAL);
	assert_int_equal(cls_set_new("x", 1, 0, 0, 0, 0, &c, &err),
			 CDX_EINVAL);
	assert_int_equal(cls_set_new("", 1, 4, 0, 0, 0, &c, &err),
			 CDX_EINVAL);
	assert_int_equal(cls_set_new("a/b", 1, 4, 0, 0, 0, &c, &err),
			 CDX_EINVAL);
	assert_int_equal(cls_set_new("x", 1, 4, CLS_MAX_TEMPLATES + 1, 0, 0,
				     &c, &err), CDX_EINVAL);
	assert_null(c);
	CDX_ASSERT_OK(cls_name_check("food-v2.1_x", &err), err.msg);
	char longname[CLS_NAME_MAX + 2];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[CLS_NAME_MAX + 1] = '\0';
	assert_int_equal(cls_name_check(longname, &err), CDX_EINVAL);

	CDX_ASSERT_OK(cls_set_new("x", CLS_MAX_LABELS, 3, CLS_MAX_TEMPLATES,
				  2, 1, &c, &err), err.msg);
	assert_true(c->scale == 1.0f);
	assert_int_equal(c->kind, CLS_SOFTMAX);
	assert_int_equal(cls_set_label(c, CLS_MAX_LABELS, "x", &err),
			 CDX_EINVAL);
	assert_int_equal(cls_set_template(c, 0, "no hole", &err), CDX_EINVAL);
	CDX_ASSERT_OK(cls_set_label(c, CLS_MAX_LABELS - 1, "last", &err),
		      err.msg);
	CDX_ASSERT_OK(cls_set_template(c, CLS_MAX_TEMPLATES - 1, "{}!", &err),
		      err.msg);
	/* every part is writable (ASan checks the bounds) */
	c->w[CLS_MAX_LABELS * 3 - 1] = 1;
	c->bias[CLS_MAX_LABELS - 1] = 1;
	c->pos[1] = 7;
	c->neg[0] = 9;
	assert_string_equal(c->labels[CLS_MAX_LABELS - 1], "last");
	assert_string_equal(c->templates[CLS_MAX_TEMPLATES - 1], "{}!");
	cls_set_free(c);
	cls_set_free(NULL);
}

static cls_set *full_set(void)
{
	cls_set *c = NULL;
	cdx_error err = { 0 };
	uint64_t seed = 3;

	CDX_ASSERT_OK(cls_set_new("food", 3, 5, 2, 2, 1, &c, &err), err.msg);
	c->kind = CLS_SIGMOID;
	c->origin = CLS_LEARNED;
	c->multi = 1;
	c->threshold = 0.25f;
	c->scale = 117.33f;
	snprintf(c->model_key, sizeof(c->model_key), "clip-512@0123abcd");
	CDX_ASSERT_OK(cls_set_label(c, 0, "pizza", &err), err.msg);
	CDX_ASSERT_OK(cls_set_label(c, 1, "caf\xc3\xa9", &err), err.msg);
	CDX_ASSERT_OK(cls_set_label(c, 2, "a b c", &err), err.msg);
	CDX_ASSERT_OK(cls_set_template(c, 0, "a photo of a {}.", &err),
		      err.msg);
	CDX_ASSERT_OK(cls_set_template(c, 1, "{} food", &err), err.msg);
	for (size_t i = 0; i < 15; i++)
		c->w[i] = lcg(&seed);
	c->bias[0] = -1.5f;
	c->bias[1] = 0;
	c->bias[2] = 2.25f;
	c->pos[0] = 12;
	c->pos[1] = UINT64_MAX;
	c->neg[0] = 1ull << 40;
	return c;
}

static void test_encode_decode(void **state)
{
	(void)state;
	cls_set *c = full_set(), *d = NULL;
	cdx_error err = { 0 };
	void *buf = NULL;
	size_t len = 0;
	unsigned char *b;

	CDX_ASSERT_OK(cls_set_encode(c, &buf, &len, &err), err.msg);
	CDX_ASSERT_OK(cls_set_decode(buf, len, &d, &err), err.msg);
	assert_string_equal(d->name, "food");
	assert_int_equal(d->kind, CLS_SIGMOID);
	assert_int_equal(d->origin, CLS_LEARNED);
	assert_int_equal(d->multi, 1);
	assert_true(d->threshold == c->threshold);
	assert_true(d->scale == c->scale);
	assert_int_equal(d->n, 3);
	assert_int_equal(d->dim, 5);
	assert_int_equal(d->n_templates, 2);
	assert_string_equal(d->model_key, c->model_key);
	for (size_t i = 0; i < 3; i++) {
		assert_string_equal(d->labels[i], c->labels[i]);
		assert_true(d->bias[i] == c->bias[i]);
	}
	assert_string_equal(d->templates[1], "{} food");
	assert_memory_equal(d->w, c->w, 15 * sizeof(float));
	assert_int_equal(d->n_pos, 2);
	assert_int_equal(d->n_neg, 1);
	assert_true(d->pos[1] == UINT64_MAX);
	assert_true(d->neg[0] == 1ull << 40);
	/* the bytes are little-endian: "CLSS", version 1 */
	b = buf;
	assert_memory_equal(b, "CLSS\x01\x00\x00\x00", 8);
	cls_set_free(d);

	/* every truncation is refused, never read past */
	for (size_t cut = 0; cut < len; cut++) {
		void *copy = malloc(cut ? cut : 1);
		assert_non_null(copy);
		memcpy(copy, buf, cut);
		d = NULL;
		if (cls_set_decode(copy, cut, &d, &err) != CDX_ECORRUPT)
			fail_msg("a set cut to %zu of %zu bytes decoded",
				 cut, len);
		assert_null(d);
		free(copy);
	}
	/* a trailing byte, another version, a wrong count */
	b = malloc(len + 1);
	assert_non_null(b);
	memcpy(b, buf, len);
	b[len] = 0;
	assert_int_equal(cls_set_decode(b, len + 1, &d, &err), CDX_ECORRUPT);
	b[4] = 2;
	assert_int_equal(cls_set_decode(b, len, &d, &err), CDX_ECORRUPT);
	assert_non_null(strstr(err.msg, "version 2"));
	b[4] = 1;
	b[28] = 4; /* n: 3 -> 4 */
	assert_int_equal(cls_set_decode(b, len, &d, &err), CDX_ECORRUPT);
	b[28] = 3;
	b[32] = 0xff; /* dim */
	assert_int_equal(cls_set_decode(b, len, &d, &err), CDX_ECORRUPT);
	b[32] = 5;
	b[12] = 7; /* origin */
	assert_int_equal(cls_set_decode(b, len, &d, &err), CDX_ECORRUPT);
	b[12] = 1;
	CDX_ASSERT_OK(cls_set_decode(b, len, &d, &err), err.msg);
	cls_set_free(d);
	free(b);
	free(buf);

	/* a label given twice, an empty label: a tag would be ambiguous */
	CDX_ASSERT_OK(cls_set_label(c, 2, "pizza", &err), err.msg);
	CDX_ASSERT_OK(cls_set_encode(c, &buf, &len, &err), err.msg);
	d = NULL;
	assert_int_equal(cls_set_decode(buf, len, &d, &err), CDX_ECORRUPT);
	assert_null(d);
	assert_non_null(strstr(err.msg, "twice"));
	free(buf);
	CDX_ASSERT_OK(cls_set_label(c, 2, "", &err), err.msg);
	CDX_ASSERT_OK(cls_set_encode(c, &buf, &len, &err), err.msg);
	assert_int_equal(cls_set_decode(buf, len, &d, &err), CDX_ECORRUPT);
	assert_null(d);
	free(buf);
	cls_set_free(c);
}

/* fuzz/make_seeds.py writes the format from its own description (in
 * Python): its valid sets decode, its near misses do not. */
static void test_python_seeds(void **state)
{
	(void)state;
	static const char *const good[] = { "zero_shot", "siglip", "learned",
					    "minimal" };
	static const char *const bad[] = {
		"bad_version", "bad_trailing", "bad_truncated", "bad_labels",
		"bad_label_long", "bad_template", "bad_nan", "bad_threshold",
		"bad_name" };
	char path[128];
	cdx_error err = { 0 };

	for (size_t i = 0; i < 4 + 9; i++) {
		const char *name = i < 4 ? good[i] : bad[i - 4];
		cls_set *c = NULL;
		size_t len = 0;
		char *buf;
		FILE *f;

		snprintf(path, sizeof(path), "fuzz/clsset_seeds/%s", name);
		f = fopen(path, "rb");
		if (!f)
			fail_msg("%s: cannot open (run from the repository "
				 "root)", path);
		buf = malloc(1 << 16);
		assert_non_null(buf);
		len = fread(buf, 1, 1 << 16, f);
		fclose(f);
		int rc = cls_set_decode(buf, len, &c, &err);
		if (i < 4 && rc != 0)
			fail_msg("%s: %s", name, err.msg);
		if (i >= 4 && rc != CDX_ECORRUPT)
			fail_msg("%s: decoded (%d)", name, rc);
		if (i == 1) {
			assert_string_equal(c->labels[0], "caf\xc3\xa9");
			assert_int_equal(c->kind, CLS_SIGMOID);
			assert_float_equal(c->bias[1], -12.9, 1e-6);
		}
		if (i == 2)
			assert_true(c->origin == CLS_LEARNED && c->pos[1] == 40);
		cls_set_free(c);
		free(buf);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_score_softmax),
		cmocka_unit_test(test_score_sigmoid),
		cmocka_unit_test(test_score_extreme),
		cmocka_unit_test(test_applied),
		cmocka_unit_test(test_labels),
		cmocka_unit_test(test_labels_count),
		cmocka_unit_test(test_templates),
		cmocka_unit_test(test_set_new),
		cmocka_unit_test(test_encode_decode),
		cmocka_unit_test(test_python_seeds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
