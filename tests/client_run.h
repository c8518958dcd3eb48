/*
 * client_run.h - how the client suites run their tests: all of them, or
 * with CDX_TEST=PATTERN only those whose names match PATTERN (cmocka's
 * wildcards * and ?).  Every test of these suites can run alone:
 *
 *   CDX_TEST=test_brute_force build/tests/client_dupes
 *   CDX_TEST='test_api_*' build/tests/client_dupes
 *
 * Include after <cmocka.h>.
 */
#ifndef CLIENT_RUN_H
#define CLIENT_RUN_H

#include <stdlib.h>

#define CLIENT_RUN_TESTS(tests, setup, teardown)                          \
	(cmocka_set_test_filter(getenv("CDX_TEST")),                      \
	    cmocka_run_group_tests(tests, setup, teardown))

#endif
