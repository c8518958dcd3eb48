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
#include "tests/testmodel.h"
#include "tests/testutil.h"

enum { THREADS = 4, EACH = 75 };

static char tmp[256], photos[300];
static srv *daemon_srv;
static srv_config cfg;  /* borrowed by the daemon until srv_stop */

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
		srv_handle(daemon_srv, req, strlen(req), SRV_ORIGIN_LOCAL, &out,
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
		CDX_ASSERT_OK(store_image_foreach(daemon_srv->st, check_no_ghost,
		    &ghosts, &err), err.msg);
		if (ghosts == 0 &&
		    store_image_count(daemon_srv->st) == THREADS * EACH)
			break;
		usleep(50000);
	}
	assert_int_equal(ghosts, 0);
	assert_int_equal(store_image_count(daemon_srv->st), THREADS * EACH);
}

static int
setup(void **state)
{
	char model_dir[300], store_dir[300];
	tm_recipe r;
	cdx_error err;

	(void)state;
	snprintf(tmp, sizeof(tmp), "/tmp/cdx-ingest-XXXXXX");
	if (mkdtemp(tmp) == NULL)
		return -1;
	snprintf(model_dir, sizeof(model_dir), "%s/model", tmp);
	snprintf(store_dir, sizeof(store_dir), "%s/store", tmp);
	snprintf(photos, sizeof(photos), "%s/photos", tmp);
	mkdir(model_dir, 0755);
	mkdir(photos, 0755);
	tm_recipe_tiny(&r);
	if (tm_write_model(&r, model_dir) != 0)
		return -1;
	srv_config_init(&cfg);
	cfg.model_dir = strdup(model_dir);
	cfg.store_dir = strdup(store_dir);
	cfg.listen[cfg.n_listen++] = strdup("inproc://daemon-ingest-test");
	cfg.watch[cfg.n_watch++] = strdup(photos);
	cfg.min_side = 0;
	int rc = srv_config_finish(&cfg, &err);
	if (rc == 0)
		rc = srv_start(&cfg, &daemon_srv, &err);
	if (rc != 0) {
		fprintf(stderr, "daemon: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	srv_stop(daemon_srv);
	srv_config_free(&cfg);
	tm_rmtree(tmp);
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
