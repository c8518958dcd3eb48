/*
 * Unit tests of clu_merge (cluster/cluster.h): the asker's merge of the
 * shards' answers, shared by a front daemon and libclipdex on nats://.
 * Answers are written here as the shards write them; no NATS is needed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <string.h>

#include "cluster/cluster.h"

/* A gather of n answers (shard names s[i], bodies b[i]) and the missing
 * names m[0..nm); the strings are borrowed. */
static clu_gather
gather(size_t n, char **s, char **b, size_t nm, char **m)
{
	return (clu_gather){ .n = n, .shards = s, .bodies = b,
	    .n_missing = nm, .missing = m };
}

static const char *
path_at(const cJSON *r, int i)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "results"),
	    i), "path"));
}

static int
n_results(const cJSON *r)
{
	return cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r,
	    "results"));
}

static void
test_best_first_with_shard_and_paging(void **state)
{
	char *s[] = { "a", "b" };
	char *b[] = {
		"{\"images\":3,\"hits\":[{\"id\":1,\"path\":\"/p/1\",\"score\":0.9},"
		"{\"id\":2,\"path\":\"/p/2\",\"score\":0.5}]}",
		"{\"images\":4,\"hits\":[{\"id\":1,\"path\":\"/q/1\",\"score\":0.7},"
		"{\"id\":2,\"path\":\"/q/2\",\"score\":0.1}]}" };
	clu_gather g = gather(2, s, b, 0, NULL);
	clu_merge_opts o = { .k = 2, .offset = 1 };
	cJSON *r = NULL;
	cdx_error err;
	(void)state;
	assert_int_equal(clu_merge(&g, &o, &r, &err), 0);
	assert_int_equal(n_results(r), 2);
	assert_string_equal(path_at(r, 0), "/q/1");
	assert_string_equal(path_at(r, 1), "/p/2");
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "results"),
	    0), "shard")), "b");
	assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r,
	    "images")), 7);
	assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r,
	    "shards")), 2);
	assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r,
	    "partial")));
	cJSON_Delete(r);
}

static void
test_handed_over_path_counts_once_and_cutoffs(void **state)
{
	/* /p/1 is being handed over: both shards answer it; min_score and
	 * min_prob (the shards' "prob") cut the tail */
	char *s[] = { "a", "b" };
	char *b[] = {
		"{\"images\":2,\"hits\":[{\"id\":1,\"path\":\"/p/1\",\"score\":0.9,"
		"\"prob\":0.8},{\"id\":3,\"path\":\"/p/3\",\"score\":0.6,"
		"\"prob\":0.2}]}",
		"{\"images\":1,\"hits\":[{\"id\":9,\"path\":\"/p/1\",\"score\":0.9,"
		"\"prob\":0.8},{\"id\":4,\"path\":\"/p/4\",\"score\":0.3,"
		"\"prob\":0.7}]}" };
	char *m[] = { "c" };
	clu_gather g = gather(2, s, b, 1, m);
	clu_merge_opts o = { .k = 10, .has_min_prob = 1, .min_prob = 0.5 };
	cJSON *r = NULL;
	cdx_error err;
	(void)state;
	assert_int_equal(clu_merge(&g, &o, &r, &err), 0);
	assert_int_equal(n_results(r), 2);
	assert_string_equal(path_at(r, 0), "/p/1");
	assert_string_equal(path_at(r, 1), "/p/4");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r,
	    "partial")));
	assert_string_equal(cJSON_GetStringValue(cJSON_GetArrayItem(
	    cJSON_GetObjectItemCaseSensitive(r, "missing"), 0)), "c");
	cJSON_Delete(r);
	o = (clu_merge_opts){ .k = 10, .has_min_score = 1, .min_score = 0.5 };
	assert_int_equal(clu_merge(&g, &o, &r, &err), 0);
	assert_int_equal(n_results(r), 2);      /* /p/1 once, /p/3 */
	assert_string_equal(path_at(r, 1), "/p/3");
	cJSON_Delete(r);
}

static void
test_errors(void **state)
{
	char *s[] = { "a" };
	char *b[] = { "{\"error\":\"bad query\"}" };
	clu_gather g = gather(1, s, b, 0, NULL);
	clu_merge_opts o = { .k = 5 };
	cJSON *r = NULL;
	cdx_error err;
	(void)state;
	assert_int_equal(clu_merge(&g, &o, &r, &err), CDX_EINVAL);
	assert_non_null(strstr(err.msg, "shard a: bad query"));
	assert_null(r);
	g = gather(0, NULL, NULL, 0, NULL);
	assert_int_equal(clu_merge(&g, &o, &r, &err), CDX_EBUSY);
	assert_null(r);
	/* a malformed answer contributes nothing, and fails nothing */
	char *junk[] = { "not json" };
	g = gather(1, s, junk, 0, NULL);
	assert_int_equal(clu_merge(&g, &o, &r, &err), 0);
	assert_int_equal(n_results(r), 0);
	cJSON_Delete(r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_best_first_with_shard_and_paging),
		cmocka_unit_test(test_handed_over_path_counts_once_and_cutoffs),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
