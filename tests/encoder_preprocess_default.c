/* A model folder without preprocessor_config.json loads with the family's
 * defaults and says so in one log line (through the log callback, not on
 * stdout); with the file, nothing is assumed and nothing is logged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cdx.h"
#include "encoder/clip.h"
#include "tests/testmodel.h"
#include "tests/testutil.h"

static char lines[8][1024];
static int n_lines;

static void
capture(int level, const char *line, void *user)
{
	(void)level;
	(void)user;
	if (strstr(line, "preprocessor_config.json") != NULL && n_lines < 8)
		snprintf(lines[n_lines++], sizeof(lines[0]), "%s", line);
}

/* Loads dir with the capture installed and stdout sent to a temporary
 * file; the number of bytes written to stdout meanwhile. */
static long
load_captured(const char *dir, clip_model **m)
{
	char tmpl[] = "/tmp/cdx-stdout-XXXXXX";
	int fd = tu_unlinked_tmp(tmpl);
	fflush(stdout);
	int saved = dup(1);
	assert_true(saved >= 0);
	assert_int_equal(dup2(fd, 1), 1);
	n_lines = 0;
	cdx_log_set(capture, NULL, CDX_LOG_DEBUG);
	cdx_error err = { 0 };
	int rc = clip_model_load(dir, NULL, m, &err);
	cdx_log_set(NULL, NULL, CDX_LOG_ERROR);
	fflush(stdout);
	assert_int_equal(dup2(saved, 1), 1);
	close(saved);
	CDX_ASSERT_OK(rc, err.msg);
	long written = lseek(fd, 0, SEEK_END);
	close(fd);
	return written;
}

static void
test_missing_file_logged(void **state)
{
	(void)state;
	char dir[] = "/tmp/cdx-ppdef-XXXXXX";
	assert_non_null(mkdtemp(dir));
	tm_recipe r;
	tm_recipe_tiny(&r);
	assert_int_equal(tm_write_model(&r, dir), 0);
	char pp[300];
	snprintf(pp, sizeof(pp), "%s/preprocessor_config.json", dir);
	assert_int_not_equal(access(pp, F_OK), 0);

	clip_model *m = NULL;
	assert_int_equal(load_captured(dir, &m), 0);
	assert_int_equal(n_lines, 1);
	assert_non_null(strstr(lines[0], "not found"));
	assert_non_null(strstr(lines[0], "CLIP defaults"));
	/* What was assumed, with the model's own image size. */
	char want[64];
	snprintf(want, sizeof(want), "centre crop %dx%d", r.vision.image_size,
	    r.vision.image_size);
	assert_non_null(strstr(lines[0], want));
	assert_non_null(strstr(lines[0], "bicubic"));
	const clip_model_info *info = clip_model_get_info(m);
	assert_int_equal(info->preprocess.crop_width, r.vision.image_size);
	clip_model_free(m);

	/* With the file there is nothing to assume. */
	char json[256];
	snprintf(json, sizeof(json), "{\"size\": {\"shortest_edge\": %d}, "
	    "\"crop_size\": {\"height\": %d, \"width\": %d}}",
	    r.vision.image_size, r.vision.image_size, r.vision.image_size);
	assert_int_equal(tu_write_file(pp, json, strlen(json)), 0);
	assert_int_equal(load_captured(dir, &m), 0);
	assert_int_equal(n_lines, 0);
	clip_model_free(m);
	tm_rmtree(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_missing_file_logged),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
