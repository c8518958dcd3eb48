/* cdx_assert.h - CDX_ASSERT_OK, the one "this call must succeed" check of
 * the test suites: on failure it prints the call, the code, its name and
 * the error text, where a bare assert_int_equal(rc, 0) prints only -2.
 * Include after <cmocka.h>. */
#ifndef CDX_ASSERT_H
#define CDX_ASSERT_H

#include "common/cdx.h"

/* expr returns 0 or a CDX_E* code; msg is a const char * expression
 * evaluated only on failure (a cdx_error's .msg, cdx_client_errmsg(c)). */
#define CDX_ASSERT_OK(expr, msg)                                          \
	do {                                                              \
		int cdx_rc_ = (expr);                                     \
		if (cdx_rc_ != 0)                                         \
			fail_msg("%s -> %d (%s): %s", #expr, cdx_rc_,     \
			    cdx_strerror(cdx_rc_), (msg));                \
	} while (0)

#endif
