/*
 * client_run.h - how the client suites run their tests: all of them, or
 * with CDX_TEST=PATTERN only those whose names match PATTERN (cmocka's
 * wildcards * and ?).  Every test of these suites can run alone:
 *
 *   CDX_TEST=test_brute_force build/tests/client_dupes
 *   CDX_TEST='test_api_*' build/tests/client_dupes
 *
 * Include after <cmocka.h>.
 *
 * And the clipdexd process of a client suite (tests/testutil.h tu_daemon):
 *
 *   tu_status_answers(cli)          the daemon answers status on cli
 *   tu_daemon_up(&d, extra, cli)    tu_daemon_start, then waits for it
 *   tu_suite_end(&pid, cli, tmp)    stops it, closes cli, removes tmp
 *   tu_add_expect(cli, dir, n)      cdx_add of dir adds exactly n
 */
#ifndef CLIENT_RUN_H
#define CLIENT_RUN_H

#include <stdlib.h>
#include <sys/types.h>

#include "client/clipdex.h"
#include "tests/testutil.h"

#define CLIENT_RUN_TESTS(tests, setup, teardown)                          \
	(cmocka_set_test_filter(getenv("CDX_TEST")),                      \
	    cmocka_run_group_tests(tests, setup, teardown))

/* tu_wait_ready's test: the daemon behind client c answers status. */
static inline int
tu_status_answers(void *c)
{
	cdx_status st;
	return cdx_get_status(c, &st) == 0;
}

/* Starts clipdexd d with the extra flags (tu_daemon_start) and waits
 * until it answers on cli (its log shown if it exits): its pid. */
static inline pid_t
tu_daemon_up(const tu_daemon *d, const char *extra, cdx_client *cli)
{
	pid_t pid = tu_daemon_start(d, extra);
	tu_wait_ready("clipdexd", pid, tu_status_answers, cli, d->log);
	return pid;
}

/* The end of a client suite: stops the clipdexd *pid if one runs (its
 * exit status not checked: a suite that checks it stops it first),
 * closes cli and removes the suite's folder tmp. */
static inline void
tu_suite_end(pid_t *pid, cdx_client *cli, const char *tmp)
{
	if (*pid > 0)
		tu_stop_child(*pid);
	*pid = 0;
	cdx_client_close(cli);
	tm_rmtree(tmp);
}

/* A suite's setup indexing its photos: cdx_add of dir (recursive) on cli
 * must add exactly `expect` files: 0, or -1 with the reason on stderr. */
static inline int
tu_add_expect(cdx_client *cli, const char *dir, size_t expect)
{
	cdx_add_result ar = { 0 };
	if (cdx_add(cli, dir, 1, &ar) != 0 || (size_t)ar.added != expect) {
		fprintf(stderr, "add: %s (%zu added, %zu expected)\n",
		    cdx_client_errmsg(cli), (size_t)ar.added, expect);
		return -1;
	}
	return 0;
}

#endif
