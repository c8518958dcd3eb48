/* daemon/roots.c: the roots list, "path under a root" and reading files
 * inside the roots.  No store: the list is not saved (roots_init with
 * st = NULL), which roots.h allows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/roots.h"
#include "tests/testutil.h"

static char tmp[256];

static int
setup(void **state)
{
	char p[PATH_MAX], t[] = "/tmp/daemon_roots_XXXXXX";
	(void)state;
	if (mkdtemp(t) == NULL || realpath(t, p) == NULL || strlen(p) >= 200)
		return -1;
	strcpy(tmp, p);
	snprintf(p, sizeof(p), "%s/photos", tmp);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/photos/sub", tmp);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/photos2", tmp);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/photos/sub/a.jpg", tmp);
	if (tu_write_file(p, "abc", 3) != 0)
		return -1;
	snprintf(p, sizeof(p), "%s/photos2/b.jpg", tmp);
	return tu_write_file(p, "xyz", 3);
}

static int
teardown(void **state)
{
	char cmd[300];
	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	return system(cmd) == 0 ? 0 : -1;
}

/* tmp + "/" + rel */
static const char *
at(char *buf, const char *rel)
{
	snprintf(buf, PATH_MAX, "%s/%s", tmp, rel);
	return buf;
}

static void
test_contains(void **state)
{
	char photos[PATH_MAX], p[PATH_MAX];
	srv_config cfg;
	srv_roots r;
	(void)state;

	srv_config_init(&cfg);
	cfg.roots[cfg.n_roots++] = strdup(at(photos, "photos"));
	roots_init(&r, NULL, &cfg);
	assert_true(roots_contains(&r, photos));
	assert_true(roots_contains(&r, at(p, "photos/sub/a.jpg")));
	assert_true(roots_contains(&r, at(p, "photos/gone.jpg")));
	/* a sibling sharing the prefix is outside */
	assert_false(roots_contains(&r, at(p, "photos2/b.jpg")));
	assert_false(roots_contains(&r, at(p, "photos2")));
	assert_false(roots_contains(&r, tmp));
	assert_false(roots_contains(&r, "/"));

	/* a folder inside a root is already covered: not added twice */
	assert_int_equal(roots_add(&r, at(p, "photos/sub")), 0);
	assert_int_equal(r.n, 1);
	assert_int_equal(roots_add(&r, at(p, "photos2")), 0);
	assert_int_equal(r.n, 2);
	assert_true(roots_contains(&r, at(p, "photos2/b.jpg")));

	cJSON *j = roots_json(&r);
	assert_non_null(j);
	assert_int_equal(cJSON_GetArraySize(j), 2);
	assert_string_equal(cJSON_GetArrayItem(j, 0)->valuestring, photos);
	cJSON_Delete(j);
	roots_free(&r);

	/* "/" holds every path */
	roots_init(&r, NULL, NULL);
	assert_false(roots_contains(&r, photos));
	assert_int_equal(roots_add(&r, "/"), 0);
	assert_true(roots_contains(&r, photos));
	assert_true(roots_contains(&r, "/etc/passwd"));
	roots_free(&r);
	srv_config_free(&cfg);
}

static void
test_limit(void **state)
{
	char p[64];
	srv_roots r;
	(void)state;

	roots_init(&r, NULL, NULL);
	for (int i = 0; i < SRV_MAX_ROOTS; i++) {
		snprintf(p, sizeof(p), "/nowhere/%d", i);
		assert_int_equal(roots_add(&r, p), 0);
	}
	assert_int_equal(roots_add(&r, "/nowhere/one-more"), CDX_ETOOBIG);
	assert_int_equal(roots_add(&r, "/nowhere/3/inside"), 0);  /* covered */
	roots_free(&r);
}

static void
test_check(void **state)
{
	char photos[PATH_MAX], p[PATH_MAX], out[PATH_MAX], small[8];
	srv_roots r;
	(void)state;

	roots_init(&r, NULL, NULL);
	assert_int_equal(roots_add(&r, at(photos, "photos")), 0);
	/* resolved: ".." inside the root is fine, out of it is not */
	snprintf(p, sizeof(p), "%s/photos/sub/../sub/a.jpg", tmp);
	assert_int_equal(roots_check(&r, p, out, sizeof(out), 0), 0);
	assert_string_equal(out, at(p, "photos/sub/a.jpg"));
	snprintf(p, sizeof(p), "%s/photos/../photos2/b.jpg", tmp);
	assert_int_equal(roots_check(&r, p, out, sizeof(out), 0), CDX_EPERM);
	/* ... unless a new root is allowed (add over the local socket) */
	assert_int_equal(roots_check(&r, p, out, sizeof(out), 1), 0);
	assert_string_equal(out, at(p, "photos2/b.jpg"));
	/* a symlink in a root that points out of it */
	snprintf(p, sizeof(p), "%s/photos/link.jpg", tmp);
	assert_int_equal(symlink(at(out, "photos2/b.jpg"), p), 0);
	assert_int_equal(roots_check(&r, p, out, sizeof(out), 0), CDX_EPERM);
	assert_int_equal(roots_check(&r, "relative/a.jpg", out, sizeof(out), 0),
	    CDX_EINVAL);
	assert_int_equal(roots_check(&r, NULL, out, sizeof(out), 0), CDX_EINVAL);
	assert_int_equal(roots_check(&r, at(p, "photos/none.jpg"), out,
	    sizeof(out), 0), CDX_ENOTFOUND);
	assert_int_equal(roots_check(&r, at(p, "photos/sub/a.jpg"), small,
	    sizeof(small), 0), CDX_ETOOBIG);
	roots_free(&r);
}

static void
test_read_file(void **state)
{
	char p[PATH_MAX];
	uint8_t *data = NULL;
	size_t len = 0;
	cdx_error err;
	(void)state;

	CDX_ASSERT_OK(roots_read_file(at(p, "photos/sub/a.jpg"), 100, &data,
	    &len, &err), err.msg);
	assert_int_equal(len, 3);
	assert_memory_equal(data, "abc", 3);
	free(data);
	data = NULL;
	assert_int_equal(roots_read_file(at(p, "photos/sub/a.jpg"), 2, &data,
	    &len, &err), CDX_ETOOBIG);
	assert_null(data);
	assert_int_equal(roots_read_file(at(p, "photos/sub"), 100, &data, &len,
	    &err), CDX_EINVAL);
	assert_non_null(strstr(err.msg, "not a regular file"));
	assert_int_equal(roots_read_file(at(p, "photos/none"), 100, &data, &len,
	    &err), CDX_ENOTFOUND);
	assert_null(data);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_contains, setup, teardown),
		cmocka_unit_test(test_limit),
		cmocka_unit_test_setup_teardown(test_check, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_file, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
