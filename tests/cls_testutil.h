/* A tag set for the store suites (header-only, static): needs cmocka,
 * classify/classify.h and tests/store_testutil.h first. */
#ifndef CLS_TESTUTIL_H
#define CLS_TESTUTIL_H

/* A set of n labels (names[i]) of dim-d random unit rows from seed, made
 * by model; the test fails if it cannot be made. */
static inline cls_set *
tu_cls_set(const char *name, const char *const *names, size_t n, int dim,
	   int kind, int multi, float threshold, float scale,
	   const char *model, uint64_t seed)
{
	cls_set *c;
	cdx_error e;
	uint64_t st = seed | 1;
	ASSERT_OK(cls_set_new(name, n, dim, 0, 0, 0, &c, &e), e);
	c->kind = kind;
	c->multi = multi;
	c->threshold = threshold;
	c->scale = scale;
	snprintf(c->model_key, sizeof(c->model_key), "%s", model);
	for (size_t i = 0; i < n; i++) {
		ASSERT_OK(cls_set_label(c, i, names[i], &e), e);
		for (int j = 0; j < dim; j++)
			c->w[i * (size_t)dim + (size_t)j] = (float)tu_gauss(&st);
		tu_normalise(c->w + i * (size_t)dim, dim);
		c->bias[i] = kind == CLS_SIGMOID ? -2.0f : 0.0f;
	}
	return c;
}

#endif
