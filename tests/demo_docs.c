/*
 * Every example query of README.md and docs/DEMO.md finds a right scene
 * first in `make demo`'s folder, with the shipped demo model.
 *
 * The queries come from the documents themselves: a line of a shell block
 * of the form
 *     build/clipdex search "QUERY" ...   # expect: KEY=VALUE KEY!=VALUE ...
 * is an example query and what its top result must be (keys: shape,
 * colour, size, count, pos, bg, as scenes.json names them; values as
 * there), so the documents and this test cannot drift apart.  The folder
 * is rendered as `make demo` renders it (tools/train_demo.py render --n
 * 400 --dupes 20 --seed 2130: python3 with numpy and PIL, which
 * `tools/deps.sh --demo` installs and `make test` asks for), indexed by
 * $BUILD/clipdexd, and searched with $BUILD/clipdex search -k 1 --json;
 * the top hit's file (a planted copy counts as its original) is looked up
 * in scenes.json.  DEMO_MODEL=DIR runs it with another demo-world model.
 * Run from the repository root.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/testutil.h"

/* make demo's folder (Makefile, target demo) */
#define RENDER_ARGS "--n 400 --dupes 20 --seed 2130"
#define OUT_CAP (1 << 16)

static char tmp[256], model[300], photos[300], store[300], url[320],
    logp[300], bindir[PATH_MAX];
static tu_daemon dmn;
static pid_t pid = -1;
static cJSON *scenes_json;

static int
daemon_up(void *arg)
{
	char out[4096];
	char cmd[PATH_MAX + 512];
	(void)arg;
	snprintf(cmd, sizeof cmd, "%s/clipdex --url '%s' --connect-timeout 100 "
	    "status >/dev/null 2>&1", bindir, url);
	return tu_popen_read(cmd, out, sizeof out) == 0;
}

static int
setup(void **state)
{
	(void)state;
	char cmd[2048], out[4096];
	tu_bin_dir(bindir, sizeof bindir);
	if (tu_lsan_nng() != 0 || tu_suite_dirs("cdx-demodocs", "unused", tmp, model, photos, store,
	    url, logp) != 0)
		return -1;
	snprintf(cmd, sizeof cmd, "/usr/bin/python3 tools/train_demo.py render "
	    "--dir '%s' " RENDER_ARGS " 2>&1", photos);
	if (tu_popen_read(cmd, out, sizeof out) != 0) {
		fprintf(stderr, "rendering make demo's folder failed (python3 "
		    "with numpy and PIL: tools/deps.sh --demo): %s\n", out);
		return -1;
	}
	snprintf(cmd, sizeof cmd, "%s/scenes.json", photos);
	scenes_json = tu_read_json(cmd);
	dmn = (tu_daemon){ .bindir = bindir, .model = getenv("DEMO_MODEL") ?
		getenv("DEMO_MODEL") : "models/demo",
		.store = store, .url = url, .root = photos, .log = logp };
	pid = tu_daemon_start(&dmn, "--log-level warn");
	tu_wait_ready("clipdexd", pid, daemon_up, NULL, logp);
	char args[600];
	snprintf(args, sizeof args, "add '%s' --wait", photos);
	static char big[OUT_CAP];
	return tu_cli(&dmn, args, big, sizeof big) == 0 ? 0 : -1;
}

static int
teardown(void **state)
{
	(void)state;
	char cmd[400];
	if (pid > 0)
		tu_stop_child(pid);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmp);
	cJSON_Delete(scenes_json);
	return 0;
}

/* The scene of a file of the folder (a planted copy: its original). */
static const cJSON *
scene_of(const char *base)
{
	const cJSON *d, *s;
	cJSON_ArrayForEach(d, cJSON_GetObjectItem(scenes_json, "duplicates"))
		if (!strcmp(cJSON_GetObjectItem(d, "file")->valuestring, base))
			base = cJSON_GetObjectItem(d, "of")->valuestring;
	cJSON_ArrayForEach(s, cJSON_GetObjectItem(scenes_json, "scenes"))
		if (!strcmp(cJSON_GetObjectItem(s, "file")->valuestring, base))
			return s;
	return NULL;
}

/* Whether scene s meets one expectation "key=value" or "key!=value";
 * *bad is set for an expectation this test cannot read. */
static int
meets(const cJSON *s, const char *exp, int *bad)
{
	char key[32], val[64];
	int neg = strstr(exp, "!=") != NULL;
	const char *eq = strchr(exp, neg ? '!' : '=');
	if (eq == NULL || eq == exp || (size_t)(eq - exp) >= sizeof key ||
	    strlen(eq + 1 + neg) >= sizeof val) {
		*bad = 1;
		return 0;
	}
	memcpy(key, exp, (size_t)(eq - exp));
	key[eq - exp] = '\0';
	snprintf(val, sizeof val, "%s", eq + 1 + neg);
	for (char *u = val; *u; u++)
		if (*u == '_')
			*u = ' ';       /* pos=top_left */
	const cJSON *v = cJSON_GetObjectItem(s, key);
	if (v == NULL) {
		*bad = 1;
		return 0;
	}
	char have[64];
	if (cJSON_IsNumber(v))
		snprintf(have, sizeof have, "%d", v->valueint);
	else
		snprintf(have, sizeof have, "%s", cJSON_IsString(v) ?
		    v->valuestring : "null");
	return (strcmp(have, val) == 0) != neg;
}

/* Checks every marked query of one document; returns how many it found
 * and adds the wrong ones to *wrong. */
static int
check_doc(const char *doc, int *wrong)
{
	size_t len;
	char *text = tu_read_fixture(doc, &len);
	int found = 0;
	static char out[OUT_CAP];
	for (char *line = strtok(text, "\n"); line;
	     line = strtok(NULL, "\n")) {
		char *q = strstr(line, "clipdex search \"");
		char *e = strstr(line, "# expect:");
		if (q == NULL || e == NULL)
			continue;
		q += strlen("clipdex search \"");
		char *qe = strchr(q, '"');
		assert_non_null(qe);
		found++;
		char query[256], args[400];
		snprintf(query, sizeof query, "%.*s", (int)(qe - q), q);
		snprintf(args, sizeof args, "search \"%s\" -k 1 --json", query);
		assert_int_equal(tu_cli(&dmn, args, out, sizeof out), 0);
		cJSON *hit = cJSON_Parse(out);
		assert_non_null(hit);
		char path[PATH_MAX];
		snprintf(path, sizeof path, "%s",
		    cJSON_GetObjectItem(hit, "path")->valuestring);
		cJSON_Delete(hit);
		const cJSON *s = scene_of(basename(path));
		assert_non_null(s);
		int ok = 1, bad = 0;
		char exps[256];
		snprintf(exps, sizeof exps, "%s", e + strlen("# expect:"));
		char *save = NULL;
		for (char *x = strtok_r(exps, " \t", &save); x;
		     x = strtok_r(NULL, " \t", &save))
			ok &= meets(s, x, &bad);
		char *desc = cJSON_PrintUnformatted(s);
		printf("%-14s \"%s\"%s\n    top 1: %s\n", doc, query,
		    ok ? "" : "  WRONG", desc);
		free(desc);
		if (bad)
			fail_msg("%s: cannot read the expectation \"%s\"", doc,
			    e);
		*wrong += !ok;
	}
	free(text);
	return found;
}

static void
test_doc_queries_find_right_scene_first(void **state)
{
	(void)state;
	int wrong = 0;
	int readme = check_doc("README.md", &wrong);
	int demo = check_doc("docs/DEMO.md", &wrong);
	printf("%d queries in README.md, %d in docs/DEMO.md, %d wrong\n",
	    readme, demo, wrong);
	/* the documents show at least these many */
	assert_true(readme >= 3);
	assert_true(demo >= 4);
	assert_int_equal(wrong, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_doc_queries_find_right_scene_first),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
