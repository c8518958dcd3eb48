/* Tests of the clipdex command line against a fake clipdexd
 * (tests/client_fakesrv.h): the requests it builds, its output formats and
 * its exit codes.  Runs the clipdex program next to the tests folder
 * ($BUILD/clipdex). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/client_run.h"

#include <dirent.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/clipdex.h"
#include "client/client_priv.h"
#include "tests/client_fakesrv.h"
#include "tests/testutil.h"

static char clipdex_bin[PATH_MAX];
static struct fakesrv srv;

struct run {
	int status;      /* exit status, or -1 if it did not exit */
	char *out, *err;
};

/* Runs clipdex with the given arguments (NULL-terminated). */
static struct run
run_cli(const char *first, ...)
{
	const char *args[64];
	int n = 0;
	va_list ap;
	char outp[] = "/tmp/cdx-cli-out-XXXXXX", errp[] = "/tmp/cdx-cli-err-XXXXXX";
	int ofd = tu_unlinked_tmp(outp), efd = tu_unlinked_tmp(errp);
	struct run r = { -1, NULL, NULL };

	args[n++] = clipdex_bin;
	va_start(ap, first);
	for (const char *a = first; a != NULL && n < 63; a = va_arg(ap, const char *))
		args[n++] = a;
	va_end(ap);
	args[n] = NULL;
	r.status = tu_spawn(clipdex_bin, (char *const *)args, ofd, efd);
	r.out = tu_fd_slurp(ofd);
	r.err = tu_fd_slurp(efd);
	close(ofd);
	close(efd);
	return r;
}

static void
run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

#define EXPECT_STATUS(r, want) do { \
	if ((r).status != (want)) \
		fail_msg("exit %d, wanted %d; stderr: %s", (r).status, (want), \
		    (r).err); \
} while (0)

static int
count_lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static int
setup(void **state)
{
	static int n;
	(void)state;
	if (fakesrv_start(&srv, 200 + n++) != 0)
		return -1;
	setenv("CLIPDEX_URL", srv.url, 1);
	unsetenv("CLIPDEX_TOKEN");
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	fakesrv_stop(&srv);
	return 0;
}

static cJSON *
last_request(void)
{
	cJSON *j = fakesrv_last(&srv);
	assert_non_null(j);
	return j;
}

static const char *
jstr(const cJSON *o, const char *k)
{
	return cJSON_GetStringValue(cJSON_GetObjectItem(o, k));
}

static double
jnum(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItem(o, k);
	if (!cJSON_IsNumber(v))
		fail_msg("no number \"%s\"", k);
	return v->valuedouble;
}

static void
test_search_query_syntax_and_json_lines(void **state)
{
	char img[] = "/tmp/cdx-cli-img-XXXXXX";
	char query[256], b64[64];
	int fd = mkstemp(img);
	(void)state;
	assert_int_equal(write(fd, "\xff\xd8\xff\xe0 not really", 15), 15);
	close(fd);
	cdxi_base64_encode("\xff\xd8\xff\xe0 not really", 15, b64);
	snprintf(query, sizeof(query), "beach - 0.7:people + 0.5:@%s", img);

	struct run r = run_cli("search", query, "-k", "3", "--json", NULL);
	EXPECT_STATUS(r, 0);
	cJSON *req = last_request();
	assert_string_equal(jstr(req, "op"), "search");
	cJSON *ts = cJSON_GetObjectItem(req, "terms");
	assert_int_equal(cJSON_GetArraySize(ts), 3);
	assert_string_equal(jstr(cJSON_GetArrayItem(ts, 0), "text"), "beach");
	assert_string_equal(jstr(cJSON_GetArrayItem(ts, 1), "text"), "people");
	assert_float_equal(jnum(cJSON_GetArrayItem(ts, 1), "weight"), -0.7, 1e-6);
	assert_string_equal(jstr(cJSON_GetArrayItem(ts, 2), "image"), b64);
	assert_float_equal(jnum(cJSON_GetArrayItem(ts, 2), "weight"), 0.5, 1e-6);
	assert_int_equal(jnum(req, "k"), 3);
	cJSON_Delete(req);

	/* One JSON object per result per line, best first. */
	assert_int_equal(count_lines(r.out), 3);
	char *save, *line = strtok_r(r.out, "\n", &save);
	for (int i = 0; line != NULL; i++, line = strtok_r(NULL, "\n", &save)) {
		cJSON *o = cJSON_Parse(line);
		char p[32];
		assert_non_null(o);
		snprintf(p, sizeof(p), "/p/%d.jpg", i);
		assert_int_equal(jnum(o, "id"), 100 + i);
		assert_string_equal(jstr(o, "path"), p);
		assert_float_equal(jnum(o, "score"), 0.9 - 0.1 * i, 1e-6);
		assert_int_equal(jnum(o, "rank"), i + 1);
		assert_int_equal(jnum(o, "width"), 640 + i);
		if (i % 2)
			assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "capture_time")));
		else
			assert_int_equal(jnum(o, "capture_time"), 1500000000 + i);
		cJSON_Delete(o);
	}
	run_free(&r);

	/* Words are joined: the shell may split the query. */
	r = run_cli("search", "beach", "-", "people", "--paths", NULL);
	EXPECT_STATUS(r, 0);
	req = last_request();
	ts = cJSON_GetObjectItem(req, "terms");
	assert_int_equal(cJSON_GetArraySize(ts), 2);
	assert_float_equal(jnum(cJSON_GetArrayItem(ts, 1), "weight"), -1, 1e-6);
	cJSON_Delete(req);
	run_free(&r);
	unlink(img);
}

static void
test_paths_and_table_output(void **state)
{
	(void)state;
	struct run r = run_cli("search", "dog", "-k", "3", "--paths", NULL);
	EXPECT_STATUS(r, 0);
	assert_string_equal(r.out, "/p/0.jpg\n/p/1.jpg\n/p/2.jpg\n");
	run_free(&r);

	r = run_cli("search", "dog", "-k12", NULL);
	EXPECT_STATUS(r, 0);
	assert_int_equal(count_lines(r.out), 12);
	/* rank, score with 3 decimals, WxH, path; columns aligned. */
	char *save, *line = strtok_r(r.out, "\n", &save);
	long col = -1;
	for (int i = 0; line != NULL; i++, line = strtok_r(NULL, "\n", &save)) {
		char want[64];
		int rank;
		float score;
		unsigned w, h;
		char path[64];
		assert_int_equal(sscanf(line, "%d %f %ux%u %63s", &rank, &score, &w,
		    &h, path), 5);
		assert_int_equal(rank, i + 1);
		snprintf(want, sizeof(want), "%.3f", 0.9 - 0.1 * i);
		assert_non_null(strstr(line, want));
		assert_int_equal(w, 640 + i);
		assert_int_equal(h, 480);
		snprintf(want, sizeof(want), "/p/%d.jpg", i);
		assert_string_equal(path, want);
		long c = strstr(line, "/p/") - line;
		if (col < 0)
			col = c;
		assert_int_equal(c, col);
	}
	run_free(&r);
}

/* Frames of a clip print as "clip.mp4@HH:MM:SS"; JSON says kind and
 * time; --paths gives the clip's path (a file name). */
static void
test_frame_hits(void **state)
{
	(void)state;
	struct run r = run_cli("search", "CLIPS", "-k", "4", NULL);
	EXPECT_STATUS(r, 0);
	assert_non_null(strstr(r.out, "/p/0.jpg\n"));
	assert_non_null(strstr(r.out, "/v/clip.mp4@00:01:42\n"));
	assert_non_null(strstr(r.out, "/v/clip.mp4@01:02:05\n"));
	assert_null(strstr(r.out, "jpg@"));
	run_free(&r);
	r = run_cli("search", "CLIPS", "-k", "2", "--json", NULL);
	EXPECT_STATUS(r, 0);
	char *nl = strchr(r.out, '\n');
	assert_non_null(nl);
	cJSON *a = cJSON_ParseWithLength(r.out, (size_t)(nl - r.out));
	cJSON *b = cJSON_Parse(nl + 1);
	assert_null(cJSON_GetObjectItem(a, "kind"));
	assert_string_equal(jstr(b, "kind"), "frame");
	assert_true(jnum(b, "time") == 102.5);
	cJSON_Delete(a);
	cJSON_Delete(b);
	run_free(&r);
	r = run_cli("search", "CLIPS", "-k", "2", "--paths", NULL);
	EXPECT_STATUS(r, 0);
	assert_string_equal(r.out, "/p/0.jpg\n/v/clip.mp4\n");
	run_free(&r);
}

static void
test_options_become_request_fields(void **state)
{
	(void)state;
	setenv("CLIPDEX_TOKEN", "envtok", 1);
	struct run r = run_cli("search", "cat", "--offset", "5", "--min-score",
	    "0.2", "--prefix", "/photos/2019/", "--after", "2019-01-01",
	    "--before=2020-01-01", "--collapse", "0.97", "--exact", "--not", "dog",
	    "--not", "snow", "--json", NULL);
	unsetenv("CLIPDEX_TOKEN");
	EXPECT_STATUS(r, 0);
	cJSON *req = last_request();
	assert_string_equal(jstr(req, "token"), "envtok");
	assert_int_equal(jnum(req, "offset"), 5);
	assert_float_equal(jnum(req, "min_score"), 0.2, 1e-6);
	assert_float_equal(jnum(req, "collapse"), 0.97, 1e-6);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(req, "exact")));
	cJSON *f = cJSON_GetObjectItem(req, "filter");
	assert_string_equal(jstr(f, "path_prefix"), "/photos/2019/");
	assert_string_equal(jstr(f, "time"), "capture");
	assert_int_equal(jnum(f, "from"), 1546300800);   /* date -u -d 2019-01-01 +%s */
	assert_int_equal(jnum(f, "to"), 1577836800 - 1);
	cJSON *ts = cJSON_GetObjectItem(req, "terms");
	assert_int_equal(cJSON_GetArraySize(ts), 3);
	assert_string_equal(jstr(cJSON_GetArrayItem(ts, 2), "text"), "snow");
	assert_float_equal(jnum(cJSON_GetArrayItem(ts, 2), "weight"), -1, 1e-6);
	cJSON_Delete(req);
	/* Ranks continue after the offset. */
	cJSON *o = cJSON_Parse(r.out);
	assert_int_equal(jnum(o, "rank"), 6);
	cJSON_Delete(o);
	run_free(&r);

	/* Global options before the command; seconds and mtime. */
	r = run_cli("--token", "t2", "--url", srv.url, "search", "x", "--time",
	    "mtime", "--after", "1600000000", "--paths", NULL);
	EXPECT_STATUS(r, 0);
	req = last_request();
	assert_string_equal(jstr(req, "token"), "t2");
	f = cJSON_GetObjectItem(req, "filter");
	assert_string_equal(jstr(f, "time"), "mtime");
	assert_int_equal(jnum(f, "from"), 1600000000);
	assert_null(cJSON_GetObjectItem(f, "to"));
	cJSON_Delete(req);
	run_free(&r);
}

static void
test_similar_add_remove(void **state)
{
	char cwd[PATH_MAX], want[PATH_MAX + 64];
	(void)state;
	assert_non_null(getcwd(cwd, sizeof(cwd)));

	struct run r = run_cli("similar", "id:42", "-k", "2", NULL);
	EXPECT_STATUS(r, 0);
	cJSON *req = last_request();
	assert_string_equal(jstr(req, "op"), "similar");
	assert_int_equal(jnum(req, "id"), 42);
	cJSON_Delete(req);
	run_free(&r);

	/* A path is made absolute (lexically when it does not exist here). */
	r = run_cli("similar", "no/such/./dir/../x.jpg", NULL);
	EXPECT_STATUS(r, 0);
	req = last_request();
	snprintf(want, sizeof(want), "%s/no/such/x.jpg", cwd);
	assert_string_equal(jstr(req, "path"), want);
	cJSON_Delete(req);
	assert_int_equal(count_lines(r.out), 3);
	run_free(&r);

	r = run_cli("add", "tests", "--wait", NULL);
	EXPECT_STATUS(r, 0);
	req = last_request();
	snprintf(want, sizeof(want), "%s/tests", cwd);
	assert_string_equal(jstr(req, "op"), "add");
	assert_string_equal(jstr(req, "path"), want);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(req, "wait")));
	cJSON_Delete(req);
	snprintf(want, sizeof(want), "%s/tests: added 3, updated 2, unchanged 1, "
	    "failed 0\n", cwd);
	assert_string_equal(r.out, want);
	run_free(&r);

	r = run_cli("add", "/photos", "--json", NULL);
	EXPECT_STATUS(r, 0);
	assert_string_equal(r.out, "{\"path\":\"/photos\",\"queued\":true}\n");
	run_free(&r);

	r = run_cli("remove", "/photos/2020/", NULL);
	EXPECT_STATUS(r, 0);
	req = last_request();
	assert_string_equal(jstr(req, "path"), "/photos/2020/");
	cJSON_Delete(req);
	assert_string_equal(r.out, "/photos/2020/: removed 7\n");
	run_free(&r);
}

static void
test_status_and_failures(void **state)
{
	(void)state;
	struct run r = run_cli("status", NULL);
	EXPECT_STATUS(r, 0);
	assert_non_null(strstr(r.out, "images    1234\n"));
	assert_non_null(strstr(r.out, "model     m@1 (dim 4)\n"));
	assert_non_null(strstr(r.out, "IDMap2,Flat, 1234 vectors"));
	run_free(&r);

	r = run_cli("status", "--json", NULL);
	EXPECT_STATUS(r, 0);
	assert_int_equal(count_lines(r.out), 1);
	cJSON *o = cJSON_Parse(r.out);
	assert_int_equal(jnum(o, "images"), 1234);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetArrayItem(
	    cJSON_GetObjectItem(o, "roots"), 0)), "/photos");
	cJSON_Delete(o);
	run_free(&r);

	r = run_cli("failures", "--limit", "2", "--json", NULL);
	EXPECT_STATUS(r, 0);
	assert_int_equal(count_lines(r.out), 2);
	o = cJSON_Parse(strchr(r.out, '\n') + 1);
	assert_string_equal(jstr(o, "reason"), "CRC error");
	cJSON_Delete(o);
	cJSON *req = last_request();
	assert_int_equal(jnum(req, "limit"), 2);
	cJSON_Delete(req);
	run_free(&r);
}

static void
test_exit_codes(void **state)
{
	char url[256];
	(void)state;
	/* Zero results: 0, nothing on stdout. */
	struct run r = run_cli("search", "EMPTY", "--paths", NULL);
	EXPECT_STATUS(r, 0);
	assert_string_equal(r.out, "");
	run_free(&r);
	/* The daemon's error: 1, its message on stderr. */
	r = run_cli("search", "ERR:not_found", NULL);
	EXPECT_STATUS(r, 1);
	assert_non_null(strstr(r.err, "fake not_found"));
	assert_string_equal(r.out, "");
	run_free(&r);
	/* A local image that is missing: 1, before anything is sent. */
	int before = srv.requests;
	r = run_cli("search", "@/nonexistent/x.jpg", NULL);
	EXPECT_STATUS(r, 1);
	assert_non_null(strstr(r.err, "/nonexistent/x.jpg"));
	assert_int_equal(srv.requests, before);
	run_free(&r);
	/* Usage: 2. */
	static const char *bad[][4] = {
		{ "search", NULL }, { "search", "x", "-k", "zero" },
		{ "search", "x", "--bogus", NULL }, { "search", "0:x", NULL },
		{ "search", "x", "--json", "--paths" }, { "frobnicate", NULL },
		{ "search", "x", "--after", "2019-13-01" },
		{ "search", "x", "--time", "ctime" }, { "similar", NULL },
		{ "add", NULL }, { "status", "extra" }, { "failures", "--limit" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = run_cli(bad[i][0], bad[i][1], bad[i][2], bad[i][3], NULL);
		if (r.status != 2)
			fail_msg("case %zu (%s %s): exit %d", i, bad[i][0],
			    bad[i][1] ? bad[i][1] : "", r.status);
		assert_string_not_equal(r.err, "");
		run_free(&r);
	}
	/* Cannot reach: 4. */
	fakesrv_address(299, url, sizeof(url));
	r = run_cli("status", "--url", url, "--connect-timeout", "100", NULL);
	EXPECT_STATUS(r, 4);
	assert_non_null(strstr(r.err, "cannot connect"));
	run_free(&r);
	/* No reply in time: 4. */
	srv.sleep_ms = 600;
	r = run_cli("search", "SLEEP", "--timeout", "100", NULL);
	EXPECT_STATUS(r, 4);
	assert_non_null(strstr(r.err, "no reply"));
	run_free(&r);
	/* Help: 0, on stdout. */
	static const char *cmds[] = { "search", "similar", "add", "remove",
		"status", "failures" };
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		r = run_cli(cmds[i], "--help", NULL);
		EXPECT_STATUS(r, 0);
		assert_non_null(strstr(r.out, "usage: clipdex"));
		assert_non_null(strstr(r.out, "Exit codes"));
		run_free(&r);
	}
	r = run_cli("--help", NULL);
	EXPECT_STATUS(r, 0);
	assert_non_null(strstr(r.out, "search QUERY"));
	assert_non_null(strstr(r.out, "tokenize"));
	run_free(&r);
}

/* check answers with its exit code: 0 not in the collection, 5 the same
 * bytes are indexed, 6 only a near duplicate is. */
static void
test_check_exit_codes(void **state)
{
	char img[] = "/tmp/cdx-cli-chk-XXXXXX";
	int fd = mkstemp(img);
	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "\xff\xd8\xff\xe0 jpeg", 9), 9);
	close(fd);
	static const struct { const char *reply; int status; const char *say; }
	cases[] = {
		{ "{\"v\":1,\"ok\":true,\"exact\":[],\"near\":[],"
		  "\"duplicate\":false}", 0, "not in the collection" },
		{ "{\"v\":1,\"ok\":true,\"exact\":[{\"id\":7,\"path\":\"/p/x.jpg\","
		  "\"score\":1}],\"near\":[{\"id\":7,\"path\":\"/p/x.jpg\","
		  "\"score\":1}],\"duplicate\":true}", 5,
		  "already in the collection" },
		{ "{\"v\":1,\"ok\":true,\"exact\":[],\"near\":[{\"id\":9,"
		  "\"path\":\"/p/y.jpg\",\"score\":0.98}],\"duplicate\":true}", 6,
		  "a near duplicate" },
		{ "{\"v\":1,\"ok\":false,\"error\":{\"code\":\"bad_image\","
		  "\"message\":\"fake bad_image\"}}", 1, "fake bad_image" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fakesrv_set_canned(&srv, cases[i].reply);
		struct run r = run_cli("check", img, NULL);
		if (r.status != cases[i].status)
			fail_msg("case %zu: exit %d, wanted %d; stderr: %s", i,
			    r.status, cases[i].status, r.err);
		assert_non_null(strstr(r.err, cases[i].say));
		run_free(&r);
		r = run_cli("check", img, "--json", NULL);
		EXPECT_STATUS(r, cases[i].status);
		run_free(&r);
	}
	fakesrv_set_canned(&srv, NULL);
	struct run r = run_cli("check", NULL);
	EXPECT_STATUS(r, 2);
	run_free(&r);
	r = run_cli("check", "--help", NULL);
	EXPECT_STATUS(r, 0);
	assert_non_null(strstr(r.out, "5 already indexed"));
	run_free(&r);
	unlink(img);
}

/* Counts the entries of dir other than . and .. */
static int
count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	assert_non_null(d);
	while ((e = readdir(d)) != NULL)
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(d);
	return n;
}

/* retrieve: ranks as the daemon sends them (from 1); rerunning with the
 * same --copy-to reuses the identical files already there, while a
 * different file of the same name still gets name-1. */
static void
test_retrieve_copy_to_twice(void **state)
{
	char tmp[] = "/tmp/cdx-cli-ret-XXXXXX", src[PATH_MAX], other[PATH_MAX + 8];
	char dst[PATH_MAX], prompts[PATH_MAX], out[PATH_MAX], reply[2 * PATH_MAX];
	char links[PATH_MAX];
	(void)state;
	assert_non_null(mkdtemp(tmp));
	snprintf(src, sizeof(src), "%s/a.jpg", tmp);
	snprintf(dst, sizeof(dst), "%s/set", tmp);
	snprintf(links, sizeof(links), "%s/links", tmp);
	snprintf(prompts, sizeof(prompts), "%s/prompts.txt", tmp);
	snprintf(out, sizeof(out), "%s/out.jsonl", tmp);
	FILE *f = fopen(src, "w");
	fputs("the bytes of a.jpg", f);
	fclose(f);
	f = fopen(prompts, "w");
	fputs("a red car\n", f);
	fclose(f);
	snprintf(reply, sizeof(reply), "{\"v\":1,\"ok\":true,\"results\":["
	    "{\"prompt\":0,\"rank\":1,\"id\":3,\"path\":\"%s\",\"score\":0.5,"
	    "\"width\":4,\"height\":4}],\"total\":1,\"next_offset\":null}", src);
	fakesrv_set_canned(&srv, reply);
	for (int run = 0; run < 2; run++) {
		struct run r = run_cli("retrieve", "--prompts", prompts, "--out",
		    out, "--copy-to", dst, NULL);
		EXPECT_STATUS(r, 0);
		assert_int_equal(count_entries(dst), 1);
		if (run == 1)
			assert_non_null(strstr(r.err, "1 files were already in"));
		run_free(&r);
		char line[2 * PATH_MAX];
		f = fopen(out, "r");
		assert_non_null(f);
		assert_non_null(fgets(line, sizeof(line), f));
		fclose(f);
		cJSON *o = cJSON_Parse(line);
		assert_int_equal(jnum(o, "rank"), 1);
		char want[PATH_MAX + 8];
		snprintf(want, sizeof(want), "%s/a.jpg", dst);
		assert_string_equal(jstr(o, "file"), want);
		cJSON_Delete(o);
	}
	/* Same name, other bytes: a second copy, nothing overwritten. */
	snprintf(other, sizeof(other), "%s/a.jpg", dst);
	f = fopen(other, "w");
	fputs("other bytes, same size!", f);
	fclose(f);
	struct run r = run_cli("retrieve", "--prompts", prompts, "--out", out,
	    "--copy-to", dst, NULL);
	EXPECT_STATUS(r, 0);
	assert_int_equal(count_entries(dst), 2);
	run_free(&r);
	/* --link-to into a folder of copies: a link beside them. */
	r = run_cli("retrieve", "--prompts", prompts, "--out", out, "--link-to",
	    dst, NULL);
	EXPECT_STATUS(r, 0);
	assert_int_equal(count_entries(dst), 3);
	run_free(&r);
	/* --link-to: the link is made once. */
	for (int run = 0; run < 2; run++) {
		r = run_cli("retrieve", "--prompts", prompts, "--out", out,
		    "--link-to", links, NULL);
		EXPECT_STATUS(r, 0);
		assert_int_equal(count_entries(links), 1);
		run_free(&r);
	}
	fakesrv_set_canned(&srv, NULL);
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
	assert_int_equal(system(cmd), 0);
}

/* status: the daemon's windowed rate and estimate when busy; no rate when
 * idle or when the daemon has none (it sends 0). */
static void
test_status_rate(void **state)
{
	static const struct { const char *queue, *want, *not; } cases[] = {
		{ "{\"pending\":44,\"remaining\":44,\"done\":100,\"rate\":10,"
		  "\"eta_s\":4.4,\"scanning\":false}", "indexing  100 done, 44 "
		  "remaining, 10.0 images/s, about 4 s left\n", NULL },
		{ "{\"pending\":0,\"remaining\":0,\"done\":100,\"rate\":0,"
		  "\"eta_s\":-1,\"scanning\":false}", "indexing  idle, 100 done\n",
		  "images/s" },
		{ "{\"pending\":5,\"remaining\":5,\"done\":0,\"rate\":0,"
		  "\"eta_s\":-1,\"scanning\":true}", "indexing  0 done, 5 remaining "
		  "(scanning)\n", "images/s" },
	};
	char reply[512];
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(reply, sizeof(reply), "{\"v\":1,\"ok\":true,\"version\":"
		    "\"0\",\"images\":100,\"model\":{\"id\":\"m\",\"dim\":4},"
		    "\"index\":{\"kind\":\"Flat\",\"vectors\":100},\"queue\":%s}",
		    cases[i].queue);
		fakesrv_set_canned(&srv, reply);
		struct run r = run_cli("status", NULL);
		EXPECT_STATUS(r, 0);
		if (strstr(r.out, cases[i].want) == NULL)
			fail_msg("case %zu: wanted \"%s\" in:\n%s", i, cases[i].want,
			    r.out);
		if (cases[i].not != NULL && strstr(r.out, cases[i].not) != NULL)
			fail_msg("case %zu: \"%s\" in:\n%s", i, cases[i].not, r.out);
		run_free(&r);
	}
	fakesrv_set_canned(&srv, NULL);
}

/* A capture time filter that found too little: the daemon's count of
 * images without a capture time becomes a hint to use --time mtime. */
static void
test_capture_time_hint(void **state)
{
	(void)state;
	fakesrv_set_canned(&srv, "{\"v\":1,\"ok\":true,\"results\":[],"
	    "\"no_capture_time\":7,\"took_ms\":1}");
	struct run r = run_cli("search", "beach", "--after", "2019-01-01", NULL);
	EXPECT_STATUS(r, 0);
	assert_non_null(strstr(r.err, "7 images without a capture time"));
	assert_non_null(strstr(r.err, "--time mtime"));
	run_free(&r);
	fakesrv_set_canned(&srv, "{\"v\":1,\"ok\":true,\"results\":[],"
	    "\"took_ms\":1}");
	r = run_cli("search", "beach", NULL);
	EXPECT_STATUS(r, 0);
	assert_null(strstr(r.err, "capture time"));
	run_free(&r);
	fakesrv_set_canned(&srv, NULL);
}

int
main(int argc, char **argv)
{
	char self[PATH_MAX];
	(void)argc;
	snprintf(self, sizeof(self), "%s", argv[0]);
	snprintf(clipdex_bin, sizeof(clipdex_bin), "%s/../clipdex", dirname(self));
	if (access(clipdex_bin, X_OK) != 0) {
		fprintf(stderr, "%s: cannot run %s\n", argv[0], clipdex_bin);
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_search_query_syntax_and_json_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_frame_hits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_paths_and_table_output, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_options_become_request_fields,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_similar_add_remove, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_status_and_failures, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_exit_codes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_rate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_capture_time_hint, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_check_exit_codes, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_retrieve_copy_to_twice, setup,
		    teardown),
	};
	return CLIENT_RUN_TESTS(tests, NULL, NULL);
}
