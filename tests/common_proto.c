/* Tests of common/proto: the error table is complete and consistent, and
 * the default address follows its three rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cdx.h"
#include "common/proto.h"

static void
test_table_consistent(void **state)
{
	(void)state;
	for (int i = 0; i < CDX_PROTO_NCODES; i++) {
		const cdx_proto_err *e = cdx_proto_err_get(i);
		assert_int_equal(e->code, i);
		assert_non_null(e->name);
		assert_ptr_equal(cdx_proto_err_by_name(e->name), e);
		assert_true(e->http_status >= 400 && e->http_status < 600);
		assert_true(e->cdx < 0 && e->cdx >= CDX_ERR_MIN);
		for (int j = 0; j < i; j++)
			assert_string_not_equal(cdx_proto_err_get(j)->name,
			    e->name);
	}
	assert_null(cdx_proto_err_by_name("no_such_code"));
	assert_null(cdx_proto_err_by_name(NULL));
	assert_int_equal(cdx_proto_err_get(CDX_PROTO_NCODES)->code,
	    CDX_PROTO_INTERNAL);
}

/* Every CDX_E* code a daemon operation can fail with becomes a protocol
 * code that a client maps back to the same class of error. */
static void
test_round_trip(void **state)
{
	(void)state;
	for (int c = -1; c >= CDX_ERR_MIN; c--) {
		const cdx_proto_err *e = cdx_proto_err_get(cdx_proto_code_of(c));
		if (e->code == CDX_PROTO_INTERNAL)
			assert_int_equal(e->cdx, CDX_EINTERNAL);
		else if (c == CDX_EUTF8)
			assert_int_equal(e->cdx, CDX_EINVAL);
		else
			assert_int_equal(e->cdx, c);
	}
	assert_int_equal(cdx_proto_code_of(CDX_EINVAL), CDX_PROTO_BAD_REQUEST);
	assert_int_equal(cdx_proto_code_of(CDX_EBUSY), CDX_PROTO_BUSY);
	assert_int_equal(cdx_proto_code_of(CDX_ESTORE), CDX_PROTO_INTERNAL);
}

static void
test_default_url(void **state)
{
	char buf[256], want[64];
	(void)state;
	setenv("CLIPDEX_URL", "tcp://127.0.0.1:9", 1);
	assert_string_equal(cdx_proto_default_url(buf, sizeof(buf)),
	    "tcp://127.0.0.1:9");
	setenv("CLIPDEX_URL", "", 1);
	setenv("XDG_RUNTIME_DIR", "/run/user/7", 1);
	assert_string_equal(cdx_proto_default_url(buf, sizeof(buf)),
	    "ipc:///run/user/7/clipdex.sock");
	snprintf(want, sizeof(want), "ipc:///tmp/clipdex-%u.sock",
	    (unsigned)getuid());
	setenv("XDG_RUNTIME_DIR", "relative", 1);
	assert_string_equal(cdx_proto_default_url(buf, sizeof(buf)), want);
	unsetenv("XDG_RUNTIME_DIR");
	unsetenv("CLIPDEX_URL");
	assert_string_equal(cdx_proto_default_url(buf, sizeof(buf)), want);
	/* a value that does not fit falls through to the next rule */
	setenv("XDG_RUNTIME_DIR", "/run/user/a-rather-long-folder-name-x", 1);
	assert_string_equal(cdx_proto_default_url(buf, 40), want);
	unsetenv("XDG_RUNTIME_DIR");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_consistent),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_default_url),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
