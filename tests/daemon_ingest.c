/*
 * Tests of the daemon's indexing path (daemon/ingest.c) under concurrent
 * requests: copy to X.part, rename to X, then {"op":"add","path":X,
 * "wait":true} from 4 threads at once (issue 14 item 8, where 1 in 900
 * left a record of the vanished X.part beside X).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/srv_internal.h"
#include "tests/srv_fixture.h"
#include "tests/testmodel.h"
#include "tests/testutil.h"

enum { THREADS = 4, EACH = 75 };

static tu_srv fx;
static char photos[300];

struct ghost_arg {
	int thread;
	int bad;
	char why[512];
};

static void *
ghost_thread(void *arg)
{
	struct ghost_arg *g = arg;
	for (int j = 0; j < EACH && !g->bad; j++) {
		char part[416], final[400], req[640];
		snprintf(final, sizeof(final), "%s/t%d_%03d.jpg", photos,
		    g->thread, j);
		snprintf(part, sizeof(part), "%s.part", final);
		unsigned long len;
		unsigned char *rgb = tu_stripes_rgb(96, 80, 500 + j % 7, 0, 0);
		unsigned char *jpg = tu_jpeg_encode(rgb, 96, 80, 90, &len);
		free(rgb);
		if (jpg == NULL || tu_write_file(part, jpg, len) != 0 ||
		    rename(part, final) != 0) {
			free(jpg);
			g->bad = 1;
			snprintf(g->why, sizeof(g->why), "cannot write %s", final);
			break;
		}
		free(jpg);
		snprintf(req, sizeof(req), "{\"v\":1,\"op\":\"add\",\"path\":\"%s\","
		    "\"wait\":true}", final);
		char *out = NULL;
		size_t olen;
		int st;
		srv_handle(fx.srv, req, strlen(req), SRV_ORIGIN_LOCAL, &out,
		    &olen, &st);
		if (st != 200) {
			g->bad = 1;
			snprintf(g->why, sizeof(g->why), "%s: HTTP %d: %s", final,
			    st, out ? out : "");
		}
		free(out);
	}
	return NULL;
}

/* No record of a path that is not on disk. */
static int
check_no_ghost(void *user, const store_image *img)
{
	int *ghosts = user;
	struct stat st;
	if (lstat(img->path, &st) != 0) {
		fprintf(stderr, "ghost record: %s\n", img->path);
		(*ghosts)++;
	}
	return 0;
}

static void
test_rename_then_add_from_four_threads(void **state)
{
	(void)state;
	pthread_t th[THREADS];
	struct ghost_arg ga[THREADS];
	for (int i = 0; i < THREADS; i++) {
		memset(&ga[i], 0, sizeof(ga[i]));
		ga[i].thread = i;
		assert_int_equal(pthread_create(&th[i], NULL, ghost_thread,
		    &ga[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		if (ga[i].bad)
			fail_msg("thread %d: %s", i, ga[i].why);
	}
	/* The rename events may still be on their way: wait for the
	 * records to settle on exactly the files. */
	int ghosts = 0;
	for (int tries = 0; tries < 300; tries++) {
		cdx_error err;
		ghosts = 0;
		CDX_ASSERT_OK(store_image_foreach(fx.srv->st, check_no_ghost,
		    &ghosts, &err), err.msg);
		if (ghosts == 0 &&
		    store_image_count(fx.srv->st) == THREADS * EACH)
			break;
		usleep(50000);
	}
	assert_int_equal(ghosts, 0);
	assert_int_equal(store_image_count(fx.srv->st), THREADS * EACH);
}

static int
setup(void **state)
{
	cdx_error err;

	(void)state;
	if (tu_srv_dirs(&fx, "ingest") != 0)
		return -1;
	snprintf(photos, sizeof(photos), "%s/photos", fx.tmp);
	mkdir(photos, 0755);
	tu_srv_config(&fx, NULL, "inproc://daemon-ingest-test");
	fx.cfg.threads = 0;   /* the default */
	fx.cfg.watch[fx.cfg.n_watch++] = strdup(photos);
	fx.cfg.min_side = 0;
	return tu_srv_start(&fx, &err) != 0 ? -1 : 0;
}

static int
teardown(void **state)
{
	(void)state;
	tu_srv_teardown(&fx);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rename_then_add_from_four_threads),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
