/*
 * Tests of the daemon's model identity (issue 14 item 12): the store must
 * match the model's weights and architecture (clip_model_info.key), not
 * its folder's name.  A renamed folder opens the store and the stored
 * label follows; a store made when the id was "<folder>@<hash>" opens
 * with the same weights; other weights are refused (with --reembed
 * offered).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/srv_internal.h"
#include "tests/srv_fixture.h"
#include "tests/testmodel.h"
#include "tests/testutil.h"

static tu_srv fx;   /* only its tmp, store_dir, cfg and srv */

/* Starts a daemon on model folder dir: 0 and *out, or its error. */
static int
start(const char *dir, srv **out, cdx_error *err)
{
	tu_srv_config(&fx, dir, "inproc://daemon-model-identity");
	int rc = tu_srv_start(&fx, err);
	*out = fx.srv;
	return rc;
}

static void
stop(srv *s)
{
	assert_ptr_equal(s, fx.srv);
	tu_srv_stop(&fx);
}

static void
write_model(const char *dir, uint64_t seed)
{
	tm_recipe r;
	tm_recipe_tiny(&r);
	r.seed = seed;
	assert_int_equal(mkdir(dir, 0755), 0);
	assert_int_equal(tm_write_model(&r, dir), 0);
}

static void
test_renamed_folder_opens_other_weights_refuse(void **state)
{
	char a[320], b[320], c[320];
	srv *s = NULL;
	cdx_error err;
	store_stats st;
	(void)state;

	snprintf(fx.tmp, sizeof(fx.tmp), "/tmp/cdx-modelid-XXXXXX");
	assert_non_null(mkdtemp(fx.tmp));
	snprintf(fx.store_dir, sizeof(fx.store_dir), "%s/store", fx.tmp);
	snprintf(a, sizeof(a), "%s/my-model", fx.tmp);
	snprintf(b, sizeof(b), "%s/renamed-model", fx.tmp);
	snprintf(c, sizeof(c), "%s/other-weights", fx.tmp);
	write_model(a, 7);
	CDX_ASSERT_OK(start(a, &s, &err), err.msg);
	store_get_stats(s->st, &st);
	assert_string_equal(st.model_label, "my-model");
	stop(s);

	/* The same weights in a renamed folder: the label follows. */
	assert_int_equal(rename(a, b), 0);
	CDX_ASSERT_OK(start(b, &s, &err), err.msg);
	store_get_stats(s->st, &st);
	assert_string_equal(st.model_label, "renamed-model");
	stop(s);

	/* Other weights: refused, --reembed offered. */
	write_model(c, 8);
	assert_int_equal(start(c, &s, &err), CDX_EMODEL);
	assert_non_null(strstr(err.msg, "reembed"));
	tm_rmtree(fx.tmp);
}

/* A store whose id is "<folder name>@<hash>" (made before) opens with the
 * same weights in a folder of another name, and keeps its records. */
static void
test_store_of_a_name_based_id_opens(void **state)
{
	char a[320];
	srv *s = NULL;
	cdx_error err;
	(void)state;

	snprintf(fx.tmp, sizeof(fx.tmp), "/tmp/cdx-modelid-XXXXXX");
	assert_non_null(mkdtemp(fx.tmp));
	snprintf(fx.store_dir, sizeof(fx.store_dir), "%s/store", fx.tmp);
	snprintf(a, sizeof(a), "%s/now-named-so", fx.tmp);
	write_model(a, 7);
	clip_model *m = NULL;
	CDX_ASSERT_OK(clip_model_load(a, NULL, &m, &err), err.msg);
	const clip_model_info *info = clip_model_get_info(m);
	char old_id[200];
	snprintf(old_id, sizeof(old_id), "then-named-so@%016llx",
	    (unsigned long long)info->weights_hash);
	store_params sp = store_default_params();
	store *st = NULL;
	sp.dim = info->embed_dim;
	sp.model_id = old_id;
	CDX_ASSERT_OK(store_open(fx.store_dir, &sp, &st, &err), err.msg);
	float *emb = calloc((size_t)info->embed_dim, sizeof(float));
	assert_non_null(emb);
	emb[0] = 1;
	store_image img = { .path = "/photos/x.jpg", .size = 1, .mtime_ns = 1,
	    .width = 1, .height = 1, .capture_time = STORE_TIME_UNKNOWN,
	    .embedding = emb };
	CDX_ASSERT_OK(store_image_put(st, &img, 1, &err), err.msg);
	store_close(st);
	free(emb);
	clip_model_free(m);

	CDX_ASSERT_OK(start(a, &s, &err), err.msg);
	assert_int_equal(store_image_count(s->st), 1);
	stop(s);
	tm_rmtree(fx.tmp);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_renamed_folder_opens_other_weights_refuse),
		cmocka_unit_test(test_store_of_a_name_based_id_opens),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
