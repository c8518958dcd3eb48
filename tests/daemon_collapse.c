/*
 * search and similar with `collapse` (daemon/dispatch.c search_and_reply):
 * a store holding G groups of near-identical copies, ranked group after
 * group for the query, must give exactly k results, one per group, even
 * when the first candidates are all copies of one group (so the index is
 * searched deeper), and the same with an offset.  The daemon runs in this
 * process (srv_start) on the tiny test model; the vectors are put into
 * its store directly, before it starts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/srv_internal.h"
#include "tests/srv_fixture.h"
#include "tests/testmodel.h"
#include "tests/testutil.h"

#define G 6             /* groups */
#define COPIES 20       /* near-identical copies per group */

static tu_srv fx;
static uint64_t ids[G][COPIES];

/* Group g's direction: group 0 is e1, the others lean towards it less and
 * less (similarity to group 0: 0.62, 0.51, 0.37, 0.29, 0.20), and any two
 * groups are under 0.33 similar.  Copy j adds 0.1 of a spare axis: copies
 * of one group are over 0.99 similar. */
static void
copy_vector(float *v, int dim, int g, int j)
{
	static const float lean[G] = { 0, 0.8f, 0.6f, 0.4f, 0.3f, 0.2f };
	double n = 0;

	memset(v, 0, sizeof(float) * (size_t)dim);
	v[1] = g == 0 ? 1.0f : lean[g];
	if (g > 0)
		v[g + 1] = 1.0f;
	v[G + 2 + j % (dim - G - 2)] += 0.1f;
	for (int d = 0; d < dim; d++)
		n += (double)v[d] * v[d];
	for (int d = 0; d < dim; d++)
		v[d] = (float)(v[d] / sqrt(n));
}

/* The store of the model in model_dir, filled with the groups. */
static int
fill_store(void)
{
	clip_model *m = NULL;
	store *st = NULL;
	cdx_error err;
	int rc = -1;

	if (tu_srv_store_open(&fx, &m, &st) != 0)
		return -1;
	int dim = clip_model_get_info(m)->embed_dim;
	float *v = malloc(sizeof(float) * (size_t)dim);
	if (v == NULL || dim < G + 4)
		goto out_free;
	for (int g = 0; g < G; g++) {
		for (int j = 0; j < COPIES; j++) {
			char path[64];
			snprintf(path, sizeof(path), "/collapse/g%d/copy%02d.jpg", g, j);
			copy_vector(v, dim, g, j);
			store_image img = {
				.path = path, .size = 1000 + j, .width = 64,
				.height = 48, .capture_time = STORE_TIME_UNKNOWN,
				.embedding = v,
			};
			img.hash[0] = (uint8_t)g;
			img.hash[1] = (uint8_t)j;
			if (store_image_put(st, &img, 1, &err) != 0) {
				fprintf(stderr, "store_image_put: %s\n", err.msg);
				goto out_free;
			}
			ids[g][j] = img.id;
		}
	}
	rc = 0;
out_free:
	store_close(st);
	free(v);
	clip_model_free(m);
	return rc;
}

static int
setup(void **state)
{
	cdx_error err;

	(void)state;
	if (tu_srv_dirs(&fx, "collapse") != 0 || fill_store() != 0)
		return -1;
	tu_srv_config(&fx, NULL, "inproc://daemon-collapse-test");
	return tu_srv_start(&fx, &err) != 0 ? -1 : 0;
}

static int
teardown(void **state)
{
	(void)state;
	tu_srv_teardown(&fx);
	return 0;
}

/* The results of a request, which must succeed. */
static cJSON *
results(const char *json, cJSON **reply)
{
	char *out = NULL;
	size_t len;
	int st;

	srv_handle(fx.srv, json, strlen(json), SRV_ORIGIN_LOCAL, &out, &len,
	    &st);
	if (st != 200)
		fail_msg("%s: HTTP %d: %s", json, st, out);
	*reply = cJSON_Parse(out);
	free(out);
	assert_non_null(*reply);
	cJSON *r = cJSON_GetObjectItem(*reply, "results");
	assert_true(cJSON_IsArray(r));
	return r;
}

/* The group of a result, or -1. */
static int
group_of(const cJSON *hit)
{
	uint64_t id = (uint64_t)cJSON_GetObjectItem(hit, "id")->valuedouble;
	for (int g = 0; g < G; g++)
		for (int j = 0; j < COPIES; j++)
			if (ids[g][j] == id)
				return g;
	return -1;
}

/* Asserts that the results are from groups first, first + 1, ... */
static void
expect_groups(const char *json, int k, int first)
{
	cJSON *reply, *arr = results(json, &reply);
	if (cJSON_GetArraySize(arr) != k)
		fail_msg("%s: %d results, expected %d", json,
		    cJSON_GetArraySize(arr), k);
	for (int i = 0; i < k; i++) {
		int g = group_of(cJSON_GetArrayItem(arr, i));
		if (g != first + i)
			fail_msg("%s: result %d is from group %d, expected %d", json, i,
			    g, first + i);
	}
	cJSON_Delete(reply);
}

static void
test_without_collapse_copies_fill_the_page(void **state)
{
	char req[160];
	(void)state;
	/* The setting the next tests rely on: the best candidates are the
	 * query's own group. */
	snprintf(req, sizeof(req), "{\"op\":\"similar\",\"id\":%llu,\"k\":3}",
	    (unsigned long long)ids[0][0]);
	cJSON *reply, *arr = results(req, &reply);
	assert_int_equal(cJSON_GetArraySize(arr), 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(group_of(cJSON_GetArrayItem(arr, i)), 0);
	cJSON_Delete(reply);
}

static void
test_similar_collapse_gives_k_groups(void **state)
{
	char req[200];
	(void)state;
	/* 19 copies of group 0 come first: the picking needs 59 candidates,
	 * more than the first search's 8. */
	snprintf(req, sizeof(req), "{\"op\":\"similar\",\"id\":%llu,\"k\":3,"
	    "\"collapse\":0.9}", (unsigned long long)ids[0][0]);
	expect_groups(req, 3, 0);
	snprintf(req, sizeof(req), "{\"op\":\"similar\",\"id\":%llu,\"k\":5,"
	    "\"collapse\":0.9}", (unsigned long long)ids[0][7]);
	expect_groups(req, 5, 0);
}

static void
test_search_collapse_pages(void **state)
{
	char req[200];
	(void)state;
	snprintf(req, sizeof(req), "{\"op\":\"search\",\"terms\":[{\"id\":%llu}],"
	    "\"k\":4,\"collapse\":0.9}", (unsigned long long)ids[0][3]);
	expect_groups(req, 4, 0);
	snprintf(req, sizeof(req), "{\"op\":\"search\",\"terms\":[{\"id\":%llu}],"
	    "\"k\":3,\"offset\":2,\"collapse\":0.9}",
	    (unsigned long long)ids[0][3]);
	expect_groups(req, 3, 2);
	/* Fewer groups than asked: all of them, no more. */
	snprintf(req, sizeof(req), "{\"op\":\"search\",\"terms\":[{\"id\":%llu}],"
	    "\"k\":10,\"collapse\":0.9}", (unsigned long long)ids[0][3]);
	expect_groups(req, G, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_without_collapse_copies_fill_the_page),
		cmocka_unit_test(test_similar_collapse_gives_k_groups),
		cmocka_unit_test(test_search_collapse_pages),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
