/* Tests of a model's identity (clip_model_info.key): the architecture and
 * the weights, never the folder's name.  A renamed folder keeps the key
 * (a store made with it opens, daemon/server.c), other weights change it;
 * the folder's name stays in `name` and `id`, the labels shown. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "encoder/clip.h"
#include "tests/testmodel.h"
#include "tests/testutil.h"

static void
load(const char *dir, clip_model **m)
{
	cdx_error err = {0};
	CDX_ASSERT_OK(clip_model_load(dir, NULL, m, &err), err.msg);
}

static void
test_key_is_weights_and_architecture(void **state)
{
	(void)state;
	tm_recipe r;
	tm_recipe_tiny(&r);
	char top[] = "/tmp/cdx-ident-XXXXXX";
	assert_non_null(mkdtemp(top));
	char a[256], b[256], c[256];
	snprintf(a, sizeof(a), "%s/first-name", top);
	snprintf(b, sizeof(b), "%s/renamed", top);
	snprintf(c, sizeof(c), "%s/other-weights", top);
	assert_int_equal(mkdir(a, 0700), 0);
	assert_int_equal(tm_write_model(&r, a), 0);
	clip_model *ma = NULL, *mb = NULL, *mc = NULL;
	load(a, &ma);
	assert_int_equal(rename(a, b), 0);
	load(b, &mb);
	r.seed += 1;
	assert_int_equal(mkdir(c, 0700), 0);
	assert_int_equal(tm_write_model(&r, c), 0);
	load(c, &mc);
	const clip_model_info *ia = clip_model_get_info(ma),
			      *ib = clip_model_get_info(mb),
			      *ic = clip_model_get_info(mc);
	assert_string_equal(ia->key, ib->key);
	assert_string_not_equal(ia->key, ic->key);
	assert_null(strstr(ia->key, "first-name"));
	assert_non_null(strstr(ia->key, "clip-16-64/16"));
	/* ... ends with the weights hash, as store_params.model_id says */
	char hash[32];
	snprintf(hash, sizeof(hash), "@%016llx",
	    (unsigned long long)ia->weights_hash);
	assert_string_equal(strrchr(ia->key, '@'), hash);
	assert_string_equal(ia->name, "first-name");
	assert_string_equal(ib->name, "renamed");
	clip_model_free(ma);
	clip_model_free(mb);
	clip_model_free(mc);
	tm_rmtree(top);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_is_weights_and_architecture),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
