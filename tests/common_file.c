/* Tests of common/file: cdx_read_file's result and each of its errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"

static char dir[64];

static const char *
path_in(const char *name)
{
	static char path[128];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return path;
}

static void
put(const char *name, const char *text, size_t len)
{
	FILE *f = fopen(path_in(name), "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* Fails with code and a message that names the file; out untouched. */
static void
expect_fail(const char *path, size_t max, int code)
{
	char *data = (char *)0x1;
	size_t len = 7;
	cdx_error err = { 0 };
	assert_int_equal(cdx_read_file(path, max, &data, &len, &err), code);
	assert_int_equal(err.code, code);
	assert_non_null(strstr(err.msg, path));
	assert_ptr_equal(data, (char *)0x1);
	assert_int_equal(len, 7);
}

static void
test_reads_whole_file(void **state)
{
	char *data = NULL;
	size_t len = 0;
	(void)state;
	put("a", "ab\0cd", 5);
	assert_int_equal(cdx_read_file(path_in("a"), 5, &data, &len, NULL), 0);
	assert_int_equal(len, 5);
	assert_memory_equal(data, "ab\0cd", 6);    /* NUL-terminated */
	free(data);
	put("empty", "", 0);
	assert_int_equal(cdx_read_file(path_in("empty"), 0, &data, &len, NULL),
	    0);
	assert_int_equal(len, 0);
	assert_int_equal(data[0], '\0');
	free(data);
}

static void
test_errors(void **state)
{
	(void)state;
	put("big", "12345", 5);
	expect_fail(path_in("big"), 4, CDX_ETOOBIG);
	expect_fail(path_in("missing"), 100, CDX_ENOTFOUND);
	expect_fail(path_in("big/x"), 100, CDX_ENOTFOUND);
	expect_fail(dir, 100, CDX_EIO);                  /* not a regular file */
	if (geteuid() != 0) {                   /* root reads anything */
		put("secret", "x", 1);
		assert_int_equal(chmod(path_in("secret"), 0), 0);
		expect_fail(path_in("secret"), 100, CDX_EPERM);
	}
}

/* cdx_read_fd reads from the descriptor's offset, names the file by the
 * label it is given, and leaves the descriptor open. */
static void
test_read_fd(void **state)
{
	char *data = NULL;
	size_t len = 0;
	cdx_error err;
	int fd;
	(void)state;
	put("a", "abcdef", 6);
	fd = open(path_in("a"), O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(cdx_read_fd(fd, "label", 6, &data, &len, NULL), 0);
	assert_int_equal(len, 6);
	assert_string_equal(data, "abcdef");
	free(data);
	assert_int_equal(cdx_read_fd(fd, "label", 5, &data, &len, &err),
	    CDX_ETOOBIG);
	assert_non_null(strstr(err.msg, "label"));
	assert_int_equal(close(fd), 0);                  /* still open */
	fd = open(dir, O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	assert_int_equal(cdx_read_fd(fd, "d", 100, &data, &len, NULL), CDX_EIO);
	close(fd);
}

static int
setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/cdx-file-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int
teardown(void **state)
{
	static const char *const names[] = { "a", "empty", "big", "secret" };
	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		unlink(path_in(names[i]));
	return rmdir(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reads_whole_file),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_read_fd),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
