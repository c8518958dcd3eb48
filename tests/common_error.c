/* Tests of common/cdx: error codes, messages, logging. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/cdx.h"

static void
test_strerror_covers_every_code(void **state)
{
	(void)state;
	for (int c = CDX_ERR_MIN; c <= 0; c++) {
		const char *s = cdx_strerror(c);
		assert_non_null(s);
		assert_string_not_equal(s, "unknown error");
	}
	assert_string_equal(cdx_strerror(12345), "unknown error");
}

static void
test_error_set_formats_and_truncates(void **state)
{
	cdx_error e;
	char big[1000];
	(void)state;

	assert_int_equal(cdx_error_set(&e, CDX_EFORMAT, "tensor '%s' is %d", "x", 7),
	    CDX_EFORMAT);
	assert_int_equal(e.code, CDX_EFORMAT);
	assert_string_equal(e.msg, "tensor 'x' is 7");

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cdx_error_set(&e, CDX_EIO, "%s", big);
	assert_int_equal(strlen(e.msg), CDX_ERRMSG_MAX - 1);
	/* NULL is allowed and only returns the code. */
	assert_int_equal(cdx_error_set(NULL, CDX_EIO, "x"), CDX_EIO);
}

static void
test_errno_translation(void **state)
{
	(void)state;
	assert_int_equal(cdx_from_errno(ENOENT), CDX_ENOTFOUND);
	assert_int_equal(cdx_from_errno(EACCES), CDX_EPERM);
	assert_int_equal(cdx_from_errno(ENOSPC), CDX_EFULL);
	assert_int_equal(cdx_from_errno(EXDEV), CDX_EIO);
	assert_int_equal(cdx_from_errno(0), CDX_OK);
}

struct logged {
	int n;
	int level;
	char line[64];
};

static void
log_cb(int level, const char *line, void *user)
{
	struct logged *l = user;
	l->n++;
	l->level = level;
	snprintf(l->line, sizeof(l->line), "%s", line);
}

static void
test_log_levels_filter(void **state)
{
	struct logged l = { 0 };
	(void)state;

	cdx_log(CDX_LOG_ERROR, "nobody listens");
	cdx_log_set(log_cb, &l, CDX_LOG_INFO);
	cdx_log(CDX_LOG_DEBUG, "too verbose");
	assert_int_equal(l.n, 0);
	cdx_log(CDX_LOG_WARN, "disk %d%% full", 93);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.level, CDX_LOG_WARN);
	assert_string_equal(l.line, "disk 93% full");
	cdx_log_set(NULL, NULL, CDX_LOG_INFO);

	assert_int_equal(cdx_log_level_parse("DEBUG"), CDX_LOG_DEBUG);
	assert_int_equal(cdx_log_level_parse("loud"), -1);
	assert_string_equal(cdx_log_level_name(CDX_LOG_WARN), "warn");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strerror_covers_every_code),
		cmocka_unit_test(test_error_set_formats_and_truncates),
		cmocka_unit_test(test_errno_translation),
		cmocka_unit_test(test_log_levels_filter),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
