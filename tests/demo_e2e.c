/* End-to-end test of the offline demo: the whole system with the demo model
 * (models/demo, made by tools/train_demo.py).  Starts $BUILD/clipdexd on
 * the committed rendered scenes (tests/fixtures/demo: 48 scenes and 6
 * planted near-duplicate copies, listed with their attributes in
 * scenes.json), indexes them with `clipdex add --wait`, then drives the
 * clipdex command line as a user would:
 *   - attribute queries (colour, count, position, background) built from
 *     scenes.json: a scene with every named attribute must rank at the top
 *     (recall thresholds from the measured figures, with a margin);
 *   - `clipdex dupes` finds the planted copies;
 *   - search by example: `clipdex similar` on an original finds its copy,
 *     and an uploaded copy (`search @FILE`) finds its original.
 * Run from the repository root (tests/run.sh does); the programs are found
 * next to the tests folder ($BUILD/clipdexd, $BUILD/clipdex). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/testutil.h"

static char bin_dir[PATH_MAX], model_dir[PATH_MAX], photos[PATH_MAX];
static char tmp_dir[] = "/tmp/cdx-demo-XXXXXX";
static char url[PATH_MAX + 16];
static pid_t daemon_pid = -1;
static cJSON *scenes_json;
static int quiet;               /* run(): stderr to /dev/null */

/* ---- running programs ---------------------------------------------------- */

/* Runs $BUILD/<prog> with args (NULL-terminated); returns its exit status
 * (-1 if it did not exit) and, when out is not NULL, its stdout (caller
 * frees). */
static int
run(char **out, const char *prog, ...)
{
	const char *args[64];
	char path[PATH_MAX + 32];
	int n = 0;
	va_list ap;
	char outp[] = "/tmp/cdx-demo-out-XXXXXX";
	int ofd = tu_unlinked_tmp(outp), null = -1;

	snprintf(path, sizeof path, "%s/%s", bin_dir, prog);
	args[n++] = path;
	va_start(ap, prog);
	for (const char *a = va_arg(ap, const char *); a != NULL && n < 63;
	     a = va_arg(ap, const char *))
		args[n++] = a;
	va_end(ap);
	args[n] = NULL;
	if (quiet)
		null = open("/dev/null", O_WRONLY);
	int st = tu_spawn(path, (char *const *)args, ofd, null);
	if (null >= 0)
		close(null);
	if (out)
		*out = tu_fd_slurp(ofd);
	close(ofd);
	return st;
}

/* ---- the fixture's scenes ---------------------------------------------- */

static const cJSON *
scenes(void)
{
	return cJSON_GetObjectItemCaseSensitive(scenes_json, "scenes");
}

static const char *
str(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int
num(const cJSON *o, const char *k)
{
	return cJSON_GetObjectItemCaseSensitive(o, k)->valueint;
}

/* The scene whose file (or whose planted copy's file) is `base`. */
static const cJSON *
scene_of_file(const char *base)
{
	const cJSON *s, *d;
	const char *orig = base;
	cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(scenes_json,
	    "duplicates"))
		if (!strcmp(str(d, "file"), base))
			orig = str(d, "of");
	cJSON_ArrayForEach(s, scenes())
		if (!strcmp(str(s, "file"), orig))
			return s;
	return NULL;
}

static int
same_str(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a && b && !strcmp(a, b));
}

enum { F_COLOUR, F_COUNT, F_POSITION, F_BACKGROUND, N_FAMILIES };
static const char *family_name[N_FAMILIES] = { "colour", "count", "position",
	"background" };
static const char *counts[] = { "", "one", "two", "three", "four" };

static const char *
plural(const char *shape)
{
	static char buf[64];
	snprintf(buf, sizeof buf, "%s%s", shape,
	    !strcmp(shape, "cross") ? "es" : "s");
	return buf;
}

/* The query of family f for scene q; 0 when the family does not apply. */
static int
query_for(int f, const cJSON *q, char *buf, size_t len)
{
	const char *shape = str(q, "shape");
	int n = num(q, "count");
	switch (f) {
	case F_COLOUR:
		snprintf(buf, len, "a %s %s", str(q, "colour"), shape);
		return 1;
	case F_COUNT:
		snprintf(buf, len, "%s %s", counts[n], n == 1 ? shape : plural(shape));
		return 1;
	case F_POSITION:
		if (!str(q, "pos"))
			return 0;
		snprintf(buf, len, "a %s in the %s", shape, str(q, "pos"));
		return 1;
	default:
		snprintf(buf, len, "a %s on a %s background", shape, str(q, "bg"));
		return 1;
	}
}

/* Whether scene s has every attribute that query f of scene q names. */
static int
relevant(int f, const cJSON *q, const cJSON *s)
{
	if (!same_str(str(q, "shape"), str(s, "shape")))
		return 0;
	switch (f) {
	case F_COLOUR:
		return same_str(str(q, "colour"), str(s, "colour"));
	case F_COUNT:
		return num(q, "count") == num(s, "count");
	case F_POSITION:
		return same_str(str(q, "pos"), str(s, "pos"));
	default:
		return same_str(str(q, "bg"), str(s, "bg"));
	}
}

/* Rank (1-based) of the first relevant result in `clipdex search --json`
 * output; 0 when none. */
static int
first_relevant(int f, const cJSON *q, char *jsonl)
{
	int rank = 0;
	for (char *line = strtok(jsonl, "\n"); line; line = strtok(NULL, "\n")) {
		cJSON *r = cJSON_Parse(line);
		assert_non_null(r);
		rank++;
		const cJSON *s = scene_of_file(basename(
		    cJSON_GetObjectItemCaseSensitive(r, "path")->valuestring));
		assert_non_null(s);
		int hit = relevant(f, q, s);
		cJSON_Delete(r);
		if (hit)
			return rank;
	}
	return 0;
}

/* ---- setup: the daemon on the fixture folder --------------------------- */

static int
setup(void **state)
{
	(void)state;
	/* the clipdexd it starts: nng 1.5.2's endpoint leak on connections
	 * closed mid-handshake (tests/lsan-nng.supp) */
	if (tu_lsan_nng() != 0)
		return -1;
	char *js = NULL, path[PATH_MAX + 32];
	if (!mkdtemp(tmp_dir))
		return -1;
	snprintf(url, sizeof url, "ipc://%s/sock", tmp_dir);
	snprintf(path, sizeof path, "%s/scenes.json", photos);
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	js = calloc(1, (size_t)n + 1);
	if (fread(js, 1, (size_t)n, f) != (size_t)n)
		n = -1;
	fclose(f);
	scenes_json = n < 0 ? NULL : cJSON_Parse(js);
	free(js);
	if (!scenes_json)
		return -1;

	char store[PATH_MAX + 16], bin[PATH_MAX + 16];
	snprintf(store, sizeof store, "%s/store", tmp_dir);
	snprintf(bin, sizeof bin, "%s/clipdexd", bin_dir);
	fflush(NULL);
	daemon_pid = fork();
	if (daemon_pid < 0)
		return -1;
	if (daemon_pid == 0) {
		execl(bin, bin, "--model", model_dir, "--store", store, "--root",
		    photos, "--listen", url, "--threads", "1", "--log-level", "warn",
		    (char *)NULL);
		_exit(127);
	}
	quiet = 1;
	for (int i = 0; i < 600; i++) {
		if (run(NULL, "clipdex", "--url", url, "--connect-timeout", "100",
		    "status", NULL) == 0)
			break;
		struct timespec ts = { 0, 50 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	quiet = 0;
	char *out = NULL;
	int rc = run(&out, "clipdex", "--url", url, "add", photos, "--wait",
	    "--json", NULL);
	fprintf(stderr, "add: %s", out ? out : "");
	free(out);
	return rc == 0 ? 0 : -1;
}

static int
teardown(void **state)
{
	(void)state;
	if (daemon_pid > 0) {
		kill(daemon_pid, SIGTERM);
		waitpid(daemon_pid, NULL, 0);
	}
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmp_dir);
	cJSON_Delete(scenes_json);
	return 0;
}

/* ---- the tests ----------------------------------------------------------- */

static void
test_everything_indexed(void **state)
{
	(void)state;
	char *out;
	assert_int_equal(run(&out, "clipdex", "--url", url, "status", "--json",
	    NULL), 0);
	cJSON *st = cJSON_Parse(out);
	assert_non_null(st);
	int n_files = cJSON_GetArraySize(scenes()) + cJSON_GetArraySize(
	    cJSON_GetObjectItemCaseSensitive(scenes_json, "duplicates"));
	assert_int_equal(num(st, "images"), n_files);
	assert_int_equal(num(st, "failures"), 0);
	cJSON_Delete(st);
	free(out);
}

/* Minimum recall@1 and recall@5 per family on this folder (54 images; one
 * query per scene where the family applies, usually with a single relevant
 * scene).  Measured with the shipped model (docs/DEMO.md): colour
 * 0.542/0.938, count 0.833/1.000, position 0.789/1.000, background
 * 0.583/0.979; the minimums are about 0.1 lower.  (The float32-trained
 * model before it, of the same recipe: 0.646/0.938, 0.896/0.938,
 * 0.842/1.000, 0.625/0.979; 48 queries a family, so one query is 0.02;
 * on the 1000 held-out scenes of bench/demo_eval.c the two are level.
 * Earlier models: 0.500/0.729, 0.604/0.958, 0.158/0.947, 0.396/0.812; the
 * first demo model: 0.438/0.750, 0.458/0.958, 0.316/0.737, 0.312/0.688.)
 * Chance is about 0.03 at R@1 and 0.1 at R@5. */
static const double min_r1[N_FAMILIES] = { 0.45, 0.73, 0.68, 0.48 };
static const double min_r5[N_FAMILIES] = { 0.85, 0.90, 0.90, 0.88 };

static void
test_attribute_queries(void **state)
{
	(void)state;
	double R1[N_FAMILIES], R5[N_FAMILIES];
	int NQ[N_FAMILIES];
	for (int f = 0; f < N_FAMILIES; f++) {
		int nq = 0, r1 = 0, r5 = 0;
		const cJSON *q;
		cJSON_ArrayForEach(q, scenes()) {
			char text[256], *out;
			if (!query_for(f, q, text, sizeof text))
				continue;
			assert_int_equal(run(&out, "clipdex", "--url", url, "search",
			    text, "-k", "5", "--json", NULL), 0);
			int rank = first_relevant(f, q, out);
			free(out);
			nq++;
			r1 += rank == 1;
			r5 += rank >= 1 && rank <= 5;
		}
		NQ[f] = nq;
		R1[f] = nq ? (double)r1 / nq : 0;
		R5[f] = nq ? (double)r5 / nq : 0;
		printf("%-10s %2d queries  R@1 %.3f  R@5 %.3f  (minimum %.2f, %.2f)\n",
		    family_name[f], nq, R1[f], R5[f], min_r1[f], min_r5[f]);
	}
	for (int f = 0; f < N_FAMILIES; f++) {
		assert_true(NQ[f] >= 10);
		assert_true(R1[f] >= min_r1[f]);
		assert_true(R5[f] >= min_r5[f]);
	}
}

/* The group of `file` among the near-duplicate groups (JSON Lines), as an
 * index, or -1. */
static int
group_of(cJSON **groups, int n, const char *file)
{
	for (int g = 0; g < n; g++) {
		const cJSON *m;
		cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(groups[g],
		    "members"))
			if (!strcmp(basename(cJSON_GetObjectItemCaseSensitive(m,
			    "path")->valuestring), file))
				return g;
	}
	return -1;
}

/* The near-duplicate threshold for this folder: measured with the shipped
 * demo model, 0.91 groups the 6 planted pairs and one pair of look-alikes
 * (0.90: two; 0.92: a cropped copy missed; docs/DEMO.md). */
#define DUPES_THRESHOLD "0.91"

static void
test_planted_duplicates(void **state)
{
	(void)state;
	char *out;
	assert_int_equal(run(&out, "clipdex", "--url", url, "dupes", "--kind",
	    "near", "--threshold", DUPES_THRESHOLD, "--json", NULL), 0);
	cJSON *groups[256];
	int n = 0;
	for (char *line = strtok(out, "\n"); line && n < 256;
	     line = strtok(NULL, "\n")) {
		groups[n] = cJSON_Parse(line);
		assert_non_null(groups[n]);
		n++;
	}
	int found = 0, planted = 0, members = 0;
	const cJSON *d;
	cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(scenes_json,
	    "duplicates")) {
		int a = group_of(groups, n, str(d, "file"));
		int b = group_of(groups, n, str(d, "of"));
		planted++;
		found += a >= 0 && a == b;
		if (a < 0 || a != b)
			printf("dupes: missed %s (copy of %s)\n", str(d, "file"),
			    str(d, "of"));
	}
	for (int g = 0; g < n; g++)
		members += cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(
		    groups[g], "members"));
	printf("dupes: %d groups, %d images; %d of %d planted pairs found\n", n,
	    members, found, planted);
	/* every planted copy found with its original; at most one pair of
	 * look-alike scenes more (measured: 7 groups, 14 images) */
	assert_int_equal(found, planted);
	assert_true(members >= 2 * planted && members <= 2 * planted + 2);
	for (int g = 0; g < n; g++)
		cJSON_Delete(groups[g]);
	free(out);
}

static void
test_search_by_example(void **state)
{
	(void)state;
	const cJSON *d;
	int n = 0, ok_similar = 0, ok_upload = 0;
	cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(scenes_json,
	    "duplicates")) {
		char orig[PATH_MAX + 64], copy[PATH_MAX + 64], up[PATH_MAX + 80];
		char *out;
		snprintf(orig, sizeof orig, "%s/%s", photos, str(d, "of"));
		snprintf(copy, sizeof copy, "%s/%s", photos, str(d, "file"));
		snprintf(up, sizeof up, "@%s", copy);
		n++;
		/* an indexed image: its copy is the most similar other image */
		assert_int_equal(run(&out, "clipdex", "--url", url, "similar", orig,
		    "-k", "1", "--paths", NULL), 0);
		ok_similar += strncmp(out, copy, strlen(copy)) == 0;
		free(out);
		/* an uploaded file: the copy itself and its original come first */
		assert_int_equal(run(&out, "clipdex", "--url", url, "search", up,
		    "-k", "2", "--paths", NULL), 0);
		ok_upload += strstr(out, orig) != NULL && strstr(out, copy) != NULL;
		free(out);
	}
	printf("search by example: similar %d/%d, upload %d/%d\n", ok_similar, n,
	    ok_upload, n);
	assert_true(n > 0);
	assert_int_equal(ok_similar, n);
	assert_int_equal(ok_upload, n);
}

int
main(int argc, char **argv)
{
	(void)argc;
	char self[PATH_MAX];
	snprintf(self, sizeof self, "%s", argv[0]);
	snprintf(bin_dir, sizeof bin_dir, "%s/..", dirname(self));
	if (!realpath("models/demo", model_dir) ||
	    !realpath("tests/fixtures/demo", photos)) {
		fprintf(stderr, "%s: run from the repository root (models/demo, "
		    "tests/fixtures/demo)\n", argv[0]);
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_everything_indexed),
		cmocka_unit_test(test_attribute_queries),
		cmocka_unit_test(test_planted_duplicates),
		cmocka_unit_test(test_search_by_example),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
