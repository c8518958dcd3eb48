/* Tests of common/path: cdx_path_under over a table of cases, the ones
 * the six copies it replaced disagreed on among them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/path.h"

static const struct {
	const char *path, *dir;
	int want;
} cases[] = {
	{ "/photos", "/photos", 1 },
	{ "/photos/a.jpg", "/photos", 1 },
	{ "/photos/sub/a.jpg", "/photos", 1 },
	{ "/photos/a.jpg", "/photos/", 1 },     /* trailing '/' on dir */
	{ "/photos/a.jpg", "/photos//", 1 },
	{ "/photos2/a.jpg", "/photos", 0 },     /* a prefix, not a folder */
	{ "/photos2", "/photos", 0 },
	{ "/photo", "/photos", 0 },
	{ "/photos.jpg", "/photos", 0 },
	{ "/", "/photos", 0 },
	{ "/a.jpg", "/", 1 },                   /* "/" holds everything */
	{ "/", "/", 1 },
	{ "/photos/a.jpg", "//", 1 },
	{ "relative/a.jpg", "/", 0 },           /* only absolute paths */
	{ "photos/a.jpg", "photos", 0 },
	{ "/photos/a.jpg", "", 0 },             /* an empty dir holds nothing */
	{ "", "/", 0 },
	{ "/Photos/a.jpg", "/photos", 0 },      /* case matters */
	{ "/photos/../x", "/photos", 1 },       /* canonical input expected */
};

static void
test_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = cdx_path_under(cases[i].path, cases[i].dir);
		if (got != cases[i].want)
			fail_msg("cdx_path_under(\"%s\", \"%s\") = %d, want %d",
			    cases[i].path, cases[i].dir, got, cases[i].want);
	}
}

static void
test_null(void **state)
{
	(void)state;
	assert_int_equal(cdx_path_under(NULL, "/"), 0);
	assert_int_equal(cdx_path_under("/a", NULL), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_null),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
