/*
 * Duplicates and dataset retrieval, end to end: starts build/clipdexd with
 * the tiny test model on generated photos with planted exact copies and
 * transformed copies (tests/client_dupes_fixtures.h), and drives the
 * dupes, check and retrieve operations through libclipdex and the clipdex
 * command line.  Expected results come from the planted ground truth and
 * from brute force over the stored embeddings (the store opened directly
 * after the daemon stops).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/client_run.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/clipdex.h"
#include "common/cdx.h"
#include "encoder/clip.h"
#include "store/store.h"
#include "tests/client_dupes_fixtures.h"
#include "tests/testmodel.h"
#include "tests/testutil.h"

/* Near threshold for the tiny random model (its calibration in
 * docs/DUPES.md: unrelated photos reach 0.99 with it). */
#define NEAR_T 0.99
#define SIM_T 0.97
#define N_ORIG 4
#define N_DISTINCT 8
#define MAXI 64

static char tmp[256], model_dir[300], photos[300], store_dir[300], url[320];
static char logpath[300], bindir[256];
static pid_t daemon_pid;
static cdx_client *cli;

/* Ground truth: every file, and the picture it shows (-1: a distinct
 * photo of its own). */
static struct planted {
	char path[400];
	int picture;
	int exact_of;           /* index of the file it is a byte copy of, -1 */
	int burst;              /* another shot of the picture (similar) */
	int w, h;
} files[MAXI];
static int n_files;

/* What the store holds after the daemon stops (read in the last tests). */
static struct stored {
	uint64_t id;
	char path[400];
	float e[64];
	uint32_t w, h;
	int64_t size;
	uint8_t hash[STORE_HASH_LEN];
} st_img[MAXI];
static int n_stored, dim;

/* ---- fixtures ---- */

static int
add_file(const char *rel, int picture, int exact_of, int w, int h)
{
	assert_true(n_files < MAXI);
	struct planted *f = &files[n_files];
	snprintf(f->path, sizeof(f->path), "%s/%s", photos, rel);
	f->picture = picture;
	f->exact_of = exact_of;
	f->w = w;
	f->h = h;
	return n_files++;
}

static void
copy_file(const char *from, const char *to)
{
	uint8_t buf[1 << 16];
	FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
	size_t n;
	assert_non_null(a);
	assert_non_null(b);
	while ((n = fread(buf, 1, sizeof(buf), a)) > 0)
		assert_int_equal(fwrite(buf, 1, n, b), n);
	fclose(a);
	assert_int_equal(fclose(b), 0);
}

static void
make_photos(void)
{
	char p[400];
	const char *sub[] = { "orig", "copies", "edits", "other", "bursts" };
	assert_int_equal(mkdir(photos, 0755), 0);
	for (int i = 0; i < 5; i++) {
		snprintf(p, sizeof(p), "%s/%s", photos, sub[i]);
		assert_int_equal(mkdir(p, 0755), 0);
	}
	for (int o = 0; o < N_ORIG; o++) {
		df_image a;
		char rel[64];
		assert_int_equal(df_photo(&a, 11 + (uint64_t)o, 320, 240), 0);
		snprintf(rel, sizeof(rel), "orig/p%d.jpg", o);
		int fi = add_file(rel, o, -1, 320, 240);
		assert_int_equal(df_write_jpeg(files[fi].path, &a, 95, 1), 0);
		/* An exact copy under a longer path (same name elsewhere too:
		 * --copy-to must not overwrite). */
		snprintf(rel, sizeof(rel), "copies/p%d.jpg", o);
		int ci = add_file(rel, o, fi, 320, 240);
		copy_file(files[fi].path, files[ci].path);
		/* Transformed copies: smaller re-encodes and an EXIF rotation. */
		snprintf(rel, sizeof(rel), "edits/p%d-q90.jpg", o);
		int ti = add_file(rel, o, -1, 320, 240);
		assert_int_equal(df_write_transform(files[ti].path, &a, DF_Q90), 0);
		snprintf(rel, sizeof(rel), "edits/p%d-rot.jpg", o);
		ti = add_file(rel, o, -1, 320, 240);
		assert_int_equal(df_write_transform(files[ti].path, &a, DF_EXIF_ROT),
		    0);
		/* Another shot of the same scene: framed tighter, darker. */
		df_image c, b;
		snprintf(rel, sizeof(rel), "bursts/p%d-b.jpg", o);
		assert_int_equal(df_crop(&a, 0.12, &c), 0);
		assert_int_equal(df_bright(&c, 0.92, &b), 0);
		ti = add_file(rel, o, -1, b.w, b.h);
		files[ti].burst = 1;
		assert_int_equal(df_write_jpeg(files[ti].path, &b, 90, 1), 0);
		df_free(&b);
		df_free(&c);
		df_free(&a);
	}
	for (int i = 0; i < N_DISTINCT; i++) {
		df_image a;
		char rel[64];
		assert_int_equal(df_photo(&a, 500 + (uint64_t)i, 200 + 8 * i, 150),
		    0);
		snprintf(rel, sizeof(rel), "other/d%d.jpg", i);
		int fi = add_file(rel, -1, -1, 200 + 8 * i, 150);
		assert_int_equal(df_write_jpeg(files[fi].path, &a, 90, 1), 0);
		df_free(&a);
	}
}

static int
file_index(const char *path)
{
	for (int i = 0; i < n_files; i++)
		if (strcmp(files[i].path, path) == 0)
			return i;
	return -1;
}

/* ---- the daemon ---- */

/* Ready when status answers. */
static void
start_daemon(void)
{
	char cmd[2048];
	daemon_pid = fork();
	assert_true(daemon_pid >= 0);
	if (daemon_pid == 0) {
		snprintf(cmd, sizeof(cmd), "exec %s/clipdexd --model '%s' --store "
		    "'%s' --listen '%s' --root '%s' --threads 1 >>'%s' 2>&1", bindir,
		    model_dir, store_dir, url, photos, logpath);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	tu_wait_ready("clipdexd", daemon_pid, tu_status_answers, cli, NULL);
}

static void
stop_daemon(void)
{
	int status = tu_stop_child(daemon_pid);
	daemon_pid = 0;
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static int
setup(void **state)
{
	(void)state;
	/* the clipdexd it starts: nng 1.5.2's endpoint leak on connections
	 * closed mid-handshake (tests/lsan-nng.supp) */
	if (tu_lsan_nng() != 0)
		return -1;
	tu_bin_dir(bindir, sizeof(bindir));
	if (tu_suite_dirs("cdx-dupes", "model", tmp, model_dir, photos,
	    store_dir, url, logpath) != 0)
		return -1;
	tm_recipe r;
	tm_recipe_tiny(&r);
	mkdir(model_dir, 0755);
	if (tm_write_model(&r, model_dir) != 0)
		return -1;
	make_photos();
	if (cdx_client_open(url, &cli) != 0)
		return -1;
	cdx_client_set_timeout(cli, 30000);
	start_daemon();
	return tu_add_expect(cli, photos, (size_t)n_files);
}

static int
teardown(void **state)
{
	(void)state;
	if (daemon_pid > 0)
		stop_daemon();
	tu_suite_end(&daemon_pid, cli, tmp);
	return 0;
}

static cJSON *
call(const char *fmt, ...)
{
	char req[8192], *reply = NULL;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(req, sizeof(req), fmt, ap);
	va_end(ap);
	int rc = cdx_call(cli, req, &reply);
	if (rc != 0)
		fail_msg("%s: %s: %s", req, cdx_strerror(rc), cdx_client_errmsg(cli));
	cJSON *r = cJSON_Parse(reply);
	free(reply);
	assert_non_null(r);
	return r;
}

static double
num(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	assert_true(cJSON_IsNumber(v));
	return v->valuedouble;
}

static const char *
str(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	assert_true(cJSON_IsString(v));
	return v->valuestring;
}

/* Every group of one kind, all pages (limit per page). */
static cJSON *
all_groups(const char *kind, double thr, int limit)
{
	cJSON *all = cJSON_CreateArray();
	long offset = 0;
	for (;;) {
		cJSON *r = thr > 0 ? call("{\"op\":\"dupes\",\"kind\":\"%s\","
		    "\"threshold\":%.4f,\"near_threshold\":%.4f,\"offset\":%ld,"
		    "\"limit\":%d}", kind, thr, NEAR_T, offset, limit) : call("{\"op\":\"dupes\",\"kind\":\"%s\","
		    "\"offset\":%ld,\"limit\":%d}", kind, offset, limit);
		cJSON *g, *gs = cJSON_GetObjectItemCaseSensitive(r, "groups");
		assert_true(cJSON_GetArraySize(gs) <= limit);
		cJSON_ArrayForEach(g, gs)
			cJSON_AddItemToArray(all, cJSON_Duplicate(g, 1));
		const cJSON *next = cJSON_GetObjectItemCaseSensitive(r, "next_offset");
		if (!cJSON_IsNumber(next)) {
			assert_int_equal(num(r, "total_groups"), cJSON_GetArraySize(all));
			cJSON_Delete(r);
			return all;
		}
		offset = (long)next->valuedouble;
		cJSON_Delete(r);
	}
}

/* ---- tests through the daemon ---- */

static void
test_exact_groups(void **state)
{
	(void)state;
	cJSON *all = all_groups("exact", 0, 2), *g;
	int seen[MAXI] = { 0 };

	/* One group per original with its byte copy; the keeper is the
	 * shorter path (same size and resolution, no capture time). */
	assert_int_equal(cJSON_GetArraySize(all), N_ORIG);
	cJSON_ArrayForEach(g, all) {
		const cJSON *mem = cJSON_GetObjectItemCaseSensitive(g, "members"), *m;
		assert_string_equal(str(g, "kind"), "exact");
		assert_int_equal(cJSON_GetArraySize(mem), 2);
		const char *keep = str(cJSON_GetArrayItem(mem, 0), "path");
		assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
		    cJSON_GetArrayItem(mem, 0), "keep")));
		assert_int_equal(num(g, "keep"), num(cJSON_GetArrayItem(mem, 0),
		    "id"));
		assert_non_null(strstr(keep, "/orig/"));
		assert_string_equal(str(g, "reason"), "shortest path");
		int pic = -2;
		cJSON_ArrayForEach(m, mem) {
			int fi = file_index(str(m, "path"));
			assert_true(fi >= 0);
			assert_true(num(m, "score") == 1.0);
			if (pic == -2)
				pic = files[fi].picture;
			assert_int_equal(files[fi].picture, pic);
			assert_true(files[fi].exact_of >= 0 ||
			    files[file_index(str(cJSON_GetArrayItem(mem, 1), "path"))]
			    .exact_of == fi);
			seen[fi]++;
		}
	}
	for (int i = 0; i < n_files; i++)
		if (files[i].exact_of >= 0)
			assert_true(seen[i] == 1 && seen[files[i].exact_of] == 1);
	cJSON_Delete(all);
}

static void
test_near_groups_planted(void **state)
{
	(void)state;
	cJSON *all = all_groups("near", NEAR_T, 1000), *g;
	int group_of[MAXI];

	for (int i = 0; i < n_files; i++)
		group_of[i] = -1;
	int gi = 0;
	cJSON_ArrayForEach(g, all) {
		const cJSON *mem = cJSON_GetObjectItemCaseSensitive(g, "members"), *m;
		int pic = -2;
		float prev = 2;
		assert_string_equal(str(g, "kind"), "near");
		cJSON_ArrayForEach(m, mem) {
			int fi = file_index(str(m, "path"));
			assert_true(fi >= 0);
			group_of[fi] = gi;
			/* Distinct photos and different pictures never share a
			 * group. */
			assert_true(files[fi].picture >= 0);
			if (pic == -2)
				pic = files[fi].picture;
			assert_int_equal(files[fi].picture, pic);
			float sc = (float)num(m, "score");
			if (m != cJSON_GetArrayItem(mem, 0))
				assert_true(sc <= prev + 1e-6f);
			prev = sc;
		}
		/* The keeper: largest resolution first; the full-size
		 * files tie (320x240, the rotated one displays so), then
		 * the largest file wins. */
		int k = file_index(str(cJSON_GetArrayItem(mem, 0), "path"));
		cJSON_ArrayForEach(m, mem) {
			int fi = file_index(str(m, "path"));
			assert_true((double)files[fi].w * files[fi].h <=
			    (double)files[k].w * files[k].h);
			if (files[fi].w * files[fi].h == files[k].w * files[k].h)
				assert_true(num(m, "size") <= num(cJSON_GetArrayItem(mem,
				    0), "size"));
		}
		gi++;
	}
	/* Every planted copy is with its original; another shot may be. */
	for (int i = 0; i < n_files; i++) {
		if (files[i].picture < 0 || files[i].burst)
			continue;
		assert_true(group_of[i] >= 0);
		for (int j = 0; j < n_files; j++)
			if (files[j].picture == files[i].picture && (!files[j].burst ||
			    group_of[j] >= 0))
				assert_int_equal(group_of[j], group_of[i]);
	}
	assert_int_equal(gi, N_ORIG);
	cJSON_Delete(all);
}

static void
test_paging_is_stable(void **state)
{
	(void)state;
	cJSON *a = all_groups("near", NEAR_T, 1), *b = all_groups("near", NEAR_T,
	    1000);
	assert_true(cJSON_Compare(a, b, 1));
	cJSON_Delete(a);
	cJSON_Delete(b);
	/* Bad requests. */
	char *reply = NULL;
	assert_int_equal(cdx_call(cli, "{\"op\":\"dupes\",\"kind\":\"fuzzy\"}",
	    &reply), CDX_EINVAL);
	assert_int_equal(cdx_call(cli, "{\"op\":\"dupes\",\"threshold\":1.5}",
	    &reply), CDX_EINVAL);
	assert_int_equal(cdx_call(cli, "{\"op\":\"dupes\",\"limit\":5000}",
	    &reply), CDX_ETOOBIG);
	assert_int_equal(cdx_call(cli, "{\"op\":\"check\"}", &reply),
	    CDX_EINVAL);
	assert_int_equal(cdx_call(cli, "{\"op\":\"retrieve\",\"prompts\":[]}",
	    &reply), CDX_EINVAL);
	assert_int_equal(cdx_call(cli, "{\"op\":\"retrieve\",\"prompts\":[3]}",
	    &reply), CDX_EINVAL);
	assert_int_equal(cdx_call(cli, "{\"op\":\"retrieve\",\"prompts\":"
	    "[\"x\",{\"id\":999999}]}", &reply), CDX_ENOTFOUND);
	assert_non_null(strstr(cdx_client_errmsg(cli), "prompt 1"));
	assert_int_equal(cdx_call(cli, "{\"op\":\"retrieve\",\"prompts\":"
	    "[\"x\"],\"k\":100001}", &reply), CDX_ETOOBIG);
}

/* ---- the same operations through libclipdex's calls ---- */

/* cdx_dupes pages through the groups the raw protocol returns, field for
 * field. */
static void
test_api_dupes_matches_protocol(void **state)
{
	(void)state;
	cJSON *want = all_groups("near", NEAR_T, 1000);
	cdx_dupes_opts o = { .kind = CDX_DUPES_NEAR, .threshold = (float)NEAR_T,
		.near_threshold = (float)NEAR_T, .limit = 1 };
	size_t gi = 0;
	do {
		cdx_dupes_page *p = NULL;
		CDX_ASSERT_OK(cdx_dupes(cli, &o, &p), cdx_client_errmsg(cli));
		assert_true(p->n <= 1);
		assert_int_equal(p->kind, CDX_DUPES_NEAR);
		assert_float_equal(p->threshold, (float)NEAR_T, 1e-6);
		assert_int_equal(p->total_groups, cJSON_GetArraySize(want));
		assert_true(p->seq > 0);
		for (size_t i = 0; i < p->n; i++, gi++) {
			const cdx_dupes_group *g = &p->groups[i];
			const cJSON *wg = cJSON_GetArrayItem(want, (int)gi);
			const cJSON *wm = cJSON_GetObjectItemCaseSensitive(wg, "members");
			assert_non_null(wg);
			assert_int_equal(g->kind, CDX_DUPES_NEAR);
			assert_int_equal(g->keep, num(wg, "keep"));
			assert_string_equal(g->reason, str(wg, "reason"));
			assert_int_equal(g->n, cJSON_GetArraySize(wm));
			assert_int_equal(g->members[0].id, g->keep);
			for (size_t j = 0; j < g->n; j++) {
				const cJSON *m = cJSON_GetArrayItem(wm, (int)j);
				assert_int_equal(g->members[j].id, num(m, "id"));
				assert_string_equal(g->members[j].path, str(m, "path"));
				assert_float_equal(g->members[j].score, num(m, "score"),
				    1e-6);
				assert_int_equal(g->members[j].width, num(m, "width"));
				assert_int_equal(g->members[j].size, num(m, "size"));
			}
		}
		o.offset = p->next_offset;
		cdx_dupes_page_free(p);
	} while (o.offset >= 0);
	assert_int_equal(gi, cJSON_GetArraySize(want));
	assert_int_equal(gi, N_ORIG);
	cJSON_Delete(want);

	/* Exact groups: each an original and its byte copy. */
	cdx_dupes_opts ex = { .kind = CDX_DUPES_EXACT };
	cdx_dupes_page *p = NULL;
	CDX_ASSERT_OK(cdx_dupes(cli, &ex, &p), cdx_client_errmsg(cli));
	assert_int_equal(p->n, N_ORIG);
	assert_int_equal(p->next_offset, -1);
	for (size_t i = 0; i < p->n; i++) {
		assert_int_equal(p->groups[i].kind, CDX_DUPES_EXACT);
		assert_int_equal(p->groups[i].n, 2);
		assert_non_null(strstr(p->groups[i].members[0].path, "/orig/"));
	}
	cdx_dupes_page_free(p);
	/* Errors are mapped; the out-parameter stays untouched. */
	ex.kind = 7;
	p = (cdx_dupes_page *)(uintptr_t)1;
	assert_int_equal(cdx_dupes(cli, &ex, &p), CDX_EINVAL);
	ex.kind = CDX_DUPES_NEAR;
	ex.threshold = 1.5f;
	assert_int_equal(cdx_dupes(cli, &ex, &p), CDX_EINVAL);
	assert_ptr_equal(p, (cdx_dupes_page *)(uintptr_t)1);
}

/* cdx_check finds a planted original's byte copy (exact) and its
 * transformed copies (near), by upload and by path. */
static void
test_api_check(void **state)
{
	(void)state;
	int orig = file_index(files[1].path);   /* copies/p0.jpg: exact_of 0 */
	assert_true(files[orig].exact_of == 0);
	cdx_term by_file = { .kind = CDX_TERM_FILE, .text = files[0].path };
	cdx_term by_path = { .kind = CDX_TERM_PATH, .text = files[0].path };
	cdx_check_opts o = { .threshold = (float)NEAR_T, .k = 20 };
	for (int pass = 0; pass < 2; pass++) {
		cdx_check_result *r = NULL;
		CDX_ASSERT_OK(cdx_check(cli, pass ? &by_path : &by_file, &o, &r),
		    cdx_client_errmsg(cli));
		assert_true(r->duplicate);
		/* Both byte-identical files are exact matches. */
		assert_int_equal(r->n_exact, 2);
		for (size_t i = 0; i < r->n_exact; i++) {
			int fi = file_index(r->exact[i].path);
			assert_true(fi == 0 || fi == orig);
			assert_float_equal(r->exact[i].score, 1.0, 1e-6);
		}
		/* Near: every file of the picture but the other shot. */
		assert_true(r->n_near >= 4);
		for (size_t i = 0; i < r->n_near; i++) {
			int fi = file_index(r->near[i].path);
			assert_true(fi >= 0);
			assert_int_equal(files[fi].picture, 0);
			assert_true(r->near[i].score >= (float)NEAR_T - 1e-5f);
			if (i > 0)
				assert_true(r->near[i].score <= r->near[i - 1].score + 1e-6f);
		}
		cdx_check_result_free(r);
	}
	/* Not an image term; a file that does not exist. */
	cdx_term id = { .kind = CDX_TERM_ID, .id = 1 };
	cdx_check_result *r = NULL;
	assert_int_equal(cdx_check(cli, &id, NULL, &r), CDX_EINVAL);
	cdx_term missing = { .kind = CDX_TERM_FILE, .text = "/nonexistent.jpg" };
	assert_int_equal(cdx_check(cli, &missing, NULL, &r), CDX_ENOTFOUND);
	assert_null(r);
	cdx_check_result_free(NULL);
}

/* cdx_retrieve: texts, an example image and a combined prompt; paging
 * returns the whole stream once, prompt by prompt. */
static void
test_api_retrieve(void **state)
{
	(void)state;
	cdx_term t0 = { .kind = CDX_TERM_TEXT, .text = "a red photo" };
	cdx_term t1 = { .kind = CDX_TERM_FILE, .text = files[2].path };
	cdx_term t2[2] = { { .kind = CDX_TERM_TEXT, .text = "stripes" },
		{ .kind = CDX_TERM_TEXT, .text = "a house", .weight = 0.5f } };
	cdx_term neg = { .kind = CDX_TERM_TEXT, .text = "blurry" };
	cdx_prompt prompts[3] = { { &t0, 1 }, { &t1, 1 }, { t2, 2 } };
	cdx_retrieve_req q = { .prompts = prompts, .n_prompts = 3,
		.negatives = &neg, .n_negatives = 1, .has_negative_weight = 1,
		.negative_weight = 0.25f, .k = 5, .limit = 4 };
	uint64_t seen[64];
	size_t n_seen = 0, last_prompt = 0;
	int64_t total = -1;
	do {
		cdx_retrieve_page *p = NULL;
		CDX_ASSERT_OK(cdx_retrieve(cli, &q, &p), cdx_client_errmsg(cli));
		assert_true(p->n <= 4);
		if (total < 0)
			total = p->total;
		assert_int_equal(p->total, total);
		for (size_t i = 0; i < p->n; i++) {
			const cdx_retrieve_hit *h = &p->hits[i];
			assert_true(h->prompt < 3 && h->prompt >= last_prompt);
			last_prompt = h->prompt;
			assert_true(file_index(h->result.path) >= 0);
			/* unique (the default): no image twice. */
			for (size_t j = 0; j < n_seen; j++)
				assert_true(seen[j] != h->result.id);
			assert_true(n_seen < 64);
			seen[n_seen++] = h->result.id;
		}
		q.offset = p->next_offset;
		cdx_retrieve_page_free(p);
	} while (q.offset >= 0);
	assert_int_equal(n_seen, total);
	assert_true(total > 5 && total <= 15);

	/* Errors: no prompts; a prompt the daemon cannot find. */
	cdx_retrieve_page *p = NULL;
	q.n_prompts = 0;
	q.offset = 0;
	assert_int_equal(cdx_retrieve(cli, &q, &p), CDX_EINVAL);
	cdx_term bad = { .kind = CDX_TERM_ID, .id = 999999 };
	cdx_prompt bp = { &bad, 1 };
	q.prompts = &bp;
	q.n_prompts = 1;
	assert_int_equal(cdx_retrieve(cli, &q, &p), CDX_ENOTFOUND);
	assert_null(p);
}

/* The one-call search: with a client, and with NULL (the default address,
 * here pointed at the test daemon by $CLIPDEX_URL). */
static void
test_api_search_text(void **state)
{
	cdx_results *r = NULL;
	(void)state;
	CDX_ASSERT_OK(cdx_search_text(cli, "a red photo", 3, &r),
	    cdx_client_errmsg(cli));
	assert_int_equal(r->n, 3);
	uint64_t first = r->results[0].id;
	cdx_results_free(r);
	setenv("CLIPDEX_URL", url, 1);
	CDX_ASSERT_OK(cdx_search_text(NULL, "a red photo", 0, &r),
	    cdx_client_errmsg(NULL));
	assert_int_equal(r->n, 10);
	assert_int_equal(r->results[0].id, first);
	cdx_results_free(r);
	/* Nobody at the default address: the message is for NULL. */
	setenv("CLIPDEX_URL", "ipc:///nonexistent/cdx-search-text.sock", 1);
	r = NULL;
	assert_int_equal(cdx_search_text(NULL, "x", 1, &r), CDX_ECLOSED);
	assert_non_null(strstr(cdx_client_errmsg(NULL), "cannot connect"));
	assert_null(r);
	unsetenv("CLIPDEX_URL");
}

/* Runs clipdex with args; returns its exit status, output in out. */
static int
run_cli(const char *args, char *out, size_t cap)
{
	char cmd[4096];
	snprintf(cmd, sizeof(cmd), "%s/clipdex --url '%s' %s 2>&1", bindir, url,
	    args);
	return tu_popen_read(cmd, out, cap);
}

static void
test_cli_dupes_and_check(void **state)
{
	static char out[65536];
	char args[1024];
	(void)state;

	assert_int_equal(run_cli("dupes --kind exact --csv", out, sizeof(out)), 0);
	/* A header and two rows per exact group. */
	int lines = 0;
	for (char *p = out; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, 1 + 2 * N_ORIG);
	assert_non_null(strstr(out, "group,kind,keep,id,path,score"));
	assert_non_null(strstr(out, ",shortest path\n"));

	snprintf(args, sizeof(args), "dupes --threshold=%.2f --json", NEAR_T);
	assert_int_equal(run_cli(args, out, sizeof(out)), 0);
	lines = 0;
	for (char *l = strtok(out, "\n"); l; l = strtok(NULL, "\n")) {
		cJSON *g = cJSON_Parse(l);
		assert_non_null(g);
		assert_string_equal(str(g, "kind"), "near");
		cJSON_Delete(g);
		lines++;
	}
	assert_int_equal(lines, N_ORIG);
	assert_int_equal(run_cli("dupes --kind blurry", out, sizeof(out)), 2);

	/* --prefix: the originals alone have no byte copies; the whole
	 * folder has them all. */
	snprintf(args, sizeof(args), "dupes --kind exact --json --prefix "
	    "'%s/orig/'", photos);
	assert_int_equal(run_cli(args, out, sizeof(out)), 0);
	assert_string_equal(out, "");
	snprintf(args, sizeof(args), "dupes --kind exact --json --prefix '%s'",
	    photos);
	assert_int_equal(run_cli(args, out, sizeof(out)), 0);
	lines = 0;
	for (char *p = out; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, N_ORIG);

	/* check: an indexed picture is found with its byte copy; a new
	 * picture is not. */
	snprintf(args, sizeof(args), "check --json '%s'", files[0].path);
	assert_int_equal(run_cli(args, out, sizeof(out)), 5);  /* same bytes */
	cJSON *r = cJSON_Parse(out);
	assert_non_null(r);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r,
	    "duplicate")));
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r,
	    "exact")), 2);
	const cJSON *nr = cJSON_GetObjectItemCaseSensitive(r, "near");
	assert_true(cJSON_GetArraySize(nr) >= 2);
	assert_true(num(cJSON_GetArrayItem(nr, 0), "score") > 0.9999);
	cJSON_Delete(r);

	char newp[400];
	df_image a;
	snprintf(newp, sizeof(newp), "%s/new.jpg", tmp);
	assert_int_equal(df_photo(&a, 777, 300, 200), 0);
	assert_int_equal(df_write_jpeg(newp, &a, 90, 1), 0);
	df_free(&a);
	snprintf(args, sizeof(args), "check --threshold 0.9999 '%s'", newp);
	assert_int_equal(run_cli(args, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "not in the collection"));
	snprintf(args, sizeof(args), "check '%s/none.jpg'", tmp);
	assert_int_equal(run_cli(args, out, sizeof(out)), 1);
}

/* The retrieve requests that test_brute_force replays. */
static const char *prompts_txt[] = { "a red photo", "stripes", "a house" };
#define N_PROMPTS 4             /* the texts and one example image */
#define RK 6
#define EXAMPLE 2               /* files[EXAMPLE] is the example image */

/* Writes the prompts file <tmp>/<name>-prompts.txt (path in pf) and runs
 * `clipdex retrieve` twice into <tmp>/<name>-plain.jsonl and
 * <tmp>/<name>-dedupe.jsonl (the second with --dedupe and, if copy_dir is
 * not NULL, --copy-to). */
static void
retrieve_jsonl(const char *name, char pf[400], char plain[400],
    char dedupe[400], const char *copy_dir)
{
	static char out[65536];
	char args[2048];

	snprintf(pf, 400, "%s/%s-prompts.txt", tmp, name);
	FILE *f = fopen(pf, "w");
	assert_non_null(f);
	fprintf(f, "# prompts\n%s\n\n%s\n%s\n@%s\n", prompts_txt[0],
	    prompts_txt[1], prompts_txt[2], files[EXAMPLE].path);
	fclose(f);
	snprintf(plain, 400, "%s/%s-plain.jsonl", tmp, name);
	snprintf(dedupe, 400, "%s/%s-dedupe.jsonl", tmp, name);
	snprintf(args, sizeof(args), "retrieve --prompts '%s' -k %d --negative "
	    "blue --out '%s'", pf, RK, plain);
	assert_int_equal(run_cli(args, out, sizeof(out)), 0);
	snprintf(args, sizeof(args), "retrieve --prompts '%s' -k %d --negative "
	    "blue --dedupe %.2f --out '%s'%s%s%s", pf, RK, NEAR_T, dedupe,
	    copy_dir ? " --copy-to '" : "", copy_dir ? copy_dir : "",
	    copy_dir ? "'" : "");
	assert_int_equal(run_cli(args, out, sizeof(out)), 0);
}

static void
test_cli_retrieve_and_copy(void **state)
{
	static char out[65536];
	char args[2048], pf[400], pre[500], jsonl_plain[400], jsonl_dedupe[400];
	char copy_dir[400];
	FILE *f;
	(void)state;

	/* A file already in the target folder under a result's name. */
	snprintf(copy_dir, sizeof(copy_dir), "%s/picked", tmp);
	assert_int_equal(mkdir(copy_dir, 0755), 0);
	snprintf(pre, sizeof(pre), "%s/p0.jpg", copy_dir);
	f = fopen(pre, "w");
	fputs("mine", f);
	fclose(f);

	retrieve_jsonl("cli", pf, jsonl_plain, jsonl_dedupe, copy_dir);

	/* Every copied file has its source's bytes; nothing overwritten. */
	f = fopen(jsonl_dedupe, "r");
	assert_non_null(f);
	char line[4096];
	int n = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		cJSON *j = cJSON_Parse(line);
		assert_non_null(j);
		const char *dst = str(j, "file"), *src = str(j, "path");
		uint8_t *a = NULL, *b = NULL;
		FILE *fa = fopen(src, "rb"), *fb = fopen(dst, "rb");
		assert_non_null(fa);
		assert_non_null(fb);
		a = malloc(1 << 20);
		b = malloc(1 << 20);
		size_t la = fread(a, 1, 1 << 20, fa), lb = fread(b, 1, 1 << 20, fb);
		assert_int_equal(la, lb);
		assert_memory_equal(a, b, la);
		fclose(fa);
		fclose(fb);
		free(a);
		free(b);
		assert_string_not_equal(dst, pre);
		n++;
		cJSON_Delete(j);
	}
	fclose(f);
	f = fopen(pre, "r");
	assert_non_null(fgets(line, sizeof(line), f));
	assert_string_equal(line, "mine");
	fclose(f);
	int files_in_dir = 0;
	DIR *d = opendir(copy_dir);
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		files_in_dir += de->d_name[0] != '.';
	closedir(d);
	assert_int_equal(files_in_dir, n + 1);
	assert_true(n > 0);

	/* A second run into the same folder adds new names only. */
	snprintf(args, sizeof(args), "retrieve --prompts '%s' -k 2 --out - "
	    "--link-to '%s'", pf, copy_dir);
	assert_int_equal(run_cli(args, out, sizeof(out)), 0);
	d = opendir(copy_dir);
	int after = 0;
	while ((de = readdir(d)) != NULL)
		after += de->d_name[0] != '.';
	closedir(d);
	assert_true(after > files_in_dir);
	assert_int_equal(run_cli("retrieve --out x.jsonl", out, sizeof(out)), 2);
}

static void
test_retrieve_paging(void **state)
{
	(void)state;
	const char *body = "\"prompts\":[\"a red photo\",\"stripes\",{\"id\":1}],"
	    "\"k\":7,\"dedupe\":0.995";
	cJSON *one = call("{\"op\":\"retrieve\",%s,\"limit\":1000}", body);
	const cJSON *ra = cJSON_GetObjectItemCaseSensitive(one, "results"), *h;
	int total = (int)num(one, "total"), got = 0;
	assert_int_equal(cJSON_GetArraySize(ra), total);
	assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(one,
	    "next_offset")));
	for (long off = 0;;) {
		cJSON *p = call("{\"op\":\"retrieve\",%s,\"offset\":%ld,\"limit\":4}",
		    body, off);
		cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(p,
		    "results")) {
			cJSON *w = cJSON_GetArrayItem(ra, got++);
			assert_true(num(h, "id") == num(w, "id"));
			assert_true(num(h, "prompt") == num(w, "prompt"));
			assert_true(num(h, "rank") == num(w, "rank"));
		}
		const cJSON *next = cJSON_GetObjectItemCaseSensitive(p,
		    "next_offset");
		off = cJSON_IsNumber(next) ? (long)next->valuedouble : -1;
		cJSON_Delete(p);
		if (off < 0)
			break;
	}
	assert_int_equal(got, total);
	/* k above the collection: every image once, under some prompt. */
	cJSON *big = call("{\"op\":\"retrieve\",\"prompts\":[\"a\",\"b\","
	    "\"c\"],\"k\":100000,\"limit\":1000}");
	assert_int_equal(num(big, "total"), n_files);
	cJSON_Delete(big);
	/* unique (default): no image twice across prompts. */
	for (int i = 0; i < total; i++)
		for (int j = i + 1; j < total; j++)
			assert_true(num(cJSON_GetArrayItem(ra, i), "id") !=
			    num(cJSON_GetArrayItem(ra, j), "id"));
	cJSON_Delete(one);
}

/* ---- brute force over the stored embeddings ---- */

static int
load_visit(void *user, const store_image *img)
{
	(void)user;
	assert_true(n_stored < MAXI);
	struct stored *s = &st_img[n_stored++];
	s->id = img->id;
	snprintf(s->path, sizeof(s->path), "%s", img->path);
	memcpy(s->e, img->embedding, sizeof(float) * (size_t)dim);
	s->w = img->width;
	s->h = img->height;
	s->size = img->size;
	memcpy(s->hash, img->hash, STORE_HASH_LEN);
	return 0;
}

static float
sim(int a, int b)
{
	double s = 0;
	for (int d = 0; d < dim; d++)
		s += (double)st_img[a].e[d] * st_img[b].e[d];
	return (float)(s > 1 ? 1 : s);  /* as dupes.c clamps */
}

static int
uf_root(int *p, int x)
{
	while (p[x] != x)
		x = p[x];
	return x;
}

/* Groups at threshold t by brute force (uf filled), as sorted "id,id;"
 * lists of groups with >= 2 members and >= 2 hashes. */
static void
brute_groups(float t, int *uf)
{
	for (int i = 0; i < n_stored; i++)
		uf[i] = i;
	for (int i = 0; i < n_stored; i++)
		for (int j = i + 1; j < n_stored; j++)
			if (sim(i, j) >= t) {
				int a = uf_root(uf, i), b = uf_root(uf, j);
				if (a != b)
					uf[a > b ? a : b] = a < b ? a : b;
			}
}

static void
test_brute_force(void **state)
{
	store *st = NULL;
	clip_model *m = NULL;
	clip_ctx *ctx = NULL;
	cdx_error err;
	char pf[400], jsonl_plain[400], jsonl_dedupe[400];
	(void)state;

	/* What the daemon answers ... */
	cJSON *recorded_near = all_groups("near", NEAR_T, 1000);
	cJSON *recorded_similar = all_groups("similar", SIM_T, 1000);
	retrieve_jsonl("brute", pf, jsonl_plain, jsonl_dedupe, NULL);
	/* ... against the store, read directly while the daemon is stopped
	 * (and started again for the tests that follow). */
	stop_daemon();
	n_stored = 0;
	CDX_ASSERT_OK(clip_model_load(model_dir, NULL, &m, &err), err.msg);
	CDX_ASSERT_OK(clip_ctx_new(m, 1, &ctx, &err), err.msg);
	const clip_model_info *info = clip_model_get_info(m);
	dim = info->embed_dim;
	assert_true(dim <= 64);
	store_params sp = store_default_params();
	sp.dim = dim;
	sp.model_id = info->key;
	CDX_ASSERT_OK(store_open(store_dir, &sp, &st, &err), err.msg);
	CDX_ASSERT_OK(store_image_foreach(st, load_visit, NULL, &err), err.msg);
	store_close(st);
	assert_int_equal(n_stored, n_files);

	/* near and similar groups equal the brute-force components. */
	int uf[MAXI], ufn[MAXI];
	for (int pass = 0; pass < 2; pass++) {
		const cJSON *rec = pass ? recorded_similar : recorded_near, *g, *mm;
		brute_groups(pass ? SIM_T : NEAR_T, uf);
		brute_groups(NEAR_T, ufn);
		int expect = 0, roots_done[MAXI] = { 0 };
		for (int i = 0; i < n_stored; i++) {
			int r = uf_root(uf, i), cnt = 0, hashes = 0, nroots = 0;
			if (roots_done[r]++)
				continue;
			int first = -1, firstn = -1;
			for (int j = 0; j < n_stored; j++) {
				if (uf_root(uf, j) != r)
					continue;
				cnt++;
				if (first < 0)
					first = j, hashes = 1;
				else if (memcmp(st_img[j].hash, st_img[first].hash,
				    STORE_HASH_LEN) != 0)
					hashes = 2;
				if (firstn < 0)
					firstn = uf_root(ufn, j), nroots = 1;
				else if (uf_root(ufn, j) != firstn)
					nroots = 2;
			}
			if (cnt >= 2 && hashes == 2 && (!pass || nroots == 2)) {
				expect++;
				/* The daemon has a group with exactly these ids. */
				int found = 0;
				cJSON_ArrayForEach(g, rec) {
					const cJSON *mem = cJSON_GetObjectItemCaseSensitive(g,
					    "members");
					if (cJSON_GetArraySize(mem) != cnt)
						continue;
					int all = 1;
					cJSON_ArrayForEach(mm, mem) {
						int k = -1;
						for (int j = 0; j < n_stored; j++)
							if ((double)st_img[j].id == num(mm, "id"))
								k = j;
						all &= k >= 0 && uf_root(uf, k) == r;
					}
					found += all;
				}
				assert_int_equal(found, 1);
			}
		}
		assert_int_equal(cJSON_GetArraySize(rec), expect);
		assert_true(expect > 0);        /* the fixture has both kinds */
		/* Scores are the similarity to the keeper. */
		cJSON_ArrayForEach(g, rec) {
			const cJSON *mem = cJSON_GetObjectItemCaseSensitive(g, "members");
			int keep = -1;
			cJSON_ArrayForEach(mm, mem) {
				int k = -1;
				for (int j = 0; j < n_stored; j++)
					if ((double)st_img[j].id == num(mm, "id"))
						k = j;
				assert_true(k >= 0);
				if (keep < 0)
					keep = k;
				/* the keeper's own is 1 (its stored vector, in
				 * binary16, has a length within 2^-11 of 1) */
				double want = k == keep ? 1 : sim(keep, k);
				if (fabs(num(mm, "score") - want) >= 1e-4)
					fail_msg("score %.7f, wanted %.7f",
					    num(mm, "score"), want);
			}
		}
	}

	/* retrieve: each prompt's results are the brute-force ranking with
	 * the images kept for earlier prompts removed (and, with dedupe,
	 * those within NEAR_T of a kept one). */
	float q[N_PROMPTS][64], neg[64];
	int32_t ids[4 * CLIP_CONTEXT_LEN];
	float e[4 * 64];
	for (int i = 0; i < 3; i++)
		CDX_ASSERT_OK(clip_tokenize(clip_model_tokenizer(m),
		    prompts_txt[i], strlen(prompts_txt[i]), ids + i *
		    CLIP_CONTEXT_LEN, NULL, &err), err.msg);
	CDX_ASSERT_OK(clip_tokenize(clip_model_tokenizer(m), "blue", 4, ids +
	    3 * CLIP_CONTEXT_LEN, NULL, &err), err.msg);
	CDX_ASSERT_OK(clip_encode_text(ctx, ids, 4, e, &err), err.msg);
	memcpy(neg, e + 3 * dim, sizeof(float) * (size_t)dim);
	for (int i = 0; i < 3; i++)
		memcpy(q[i], e + i * dim, sizeof(float) * (size_t)dim);
	{
		/* The example image, as the daemon embeds an upload (fast). */
		clip_decode_opts dopt = {
		    .min_short = clip_preprocess_min_short(&info->preprocess) };
		clip_image img;
		size_t plane = 3 * (size_t)info->preprocess.crop_width *
		    info->preprocess.crop_height;
		float *px = malloc(sizeof(float) * plane);
		CDX_ASSERT_OK(clip_image_load(files[EXAMPLE].path, &dopt, &img,
		    &err), err.msg);
		CDX_ASSERT_OK(clip_image_preprocess(&img, &info->preprocess, px,
		    &err), err.msg);
		clip_image_free(&img);
		CDX_ASSERT_OK(clip_encode_images(ctx, px, 1, q[3], &err),
		    err.msg);
		free(px);
	}
	for (int i = 0; i < N_PROMPTS; i++) {
		double norm = 0;
		for (int d = 0; d < dim; d++) {
			q[i][d] -= 0.5f * neg[d];
			norm += (double)q[i][d] * q[i][d];
		}
		for (int d = 0; d < dim; d++)
			q[i][d] = (float)(q[i][d] / sqrt(norm));
	}
	for (int pass = 0; pass < 2; pass++) {
		FILE *f = fopen(pass ? jsonl_dedupe : jsonl_plain, "r");
		cJSON *rows[4 * MAXI];
		int nrows = 0, kept[MAXI], nk = 0, at = 0;
		char line[4096];
		assert_non_null(f);
		while (fgets(line, sizeof(line), f) != NULL) {
			assert_true(nrows < 4 * MAXI);
			assert_non_null(rows[nrows++] = cJSON_Parse(line));
		}
		fclose(f);
		for (int p = 0; p < N_PROMPTS; p++) {
			/* Brute-force order of all images for prompt p; equal
			 * scores (byte copies) may come in either order, so ties
			 * follow the daemon's order. */
			int order[MAXI], pos[MAXI];
			float sc[MAXI];
			for (int j = 0; j < n_stored; j++) {
				double s = 0;
				for (int d = 0; d < dim; d++)
					s += (double)q[p][d] * st_img[j].e[d];
				sc[j] = (float)s;
				order[j] = j;
				pos[j] = 1 << 20;
				for (int r = 0; r < nrows; r++)
					if (num(rows[r], "prompt_index") == p &&
					    num(rows[r], "id") == (double)st_img[j].id)
						pos[j] = r;
			}
			for (int a = 0; a < n_stored; a++)
				for (int b = a + 1; b < n_stored; b++) {
					int x = order[a], y = order[b];
					int tie = fabsf(sc[x] - sc[y]) < 1e-6f;
					if ((!tie && sc[y] > sc[x]) || (tie && pos[y] < pos[x])) {
						order[a] = y;
						order[b] = x;
					}
				}
			int rank = 0;
			for (int a = 0; a < n_stored && rank < RK; a++) {
				int j = order[a], dup = 0;
				for (int k = 0; k < nk; k++)
					dup |= kept[k] == j || (pass && sim(kept[k], j) >=
					    NEAR_T);
				if (dup)
					continue;
				kept[nk++] = j;
				assert_true(at < nrows);
				cJSON *r = rows[at++];
				assert_int_equal(num(r, "prompt_index"), p);
				assert_int_equal(num(r, "rank"), rank + 1);
				assert_true(num(r, "id") == (double)st_img[j].id);
				assert_string_equal(str(r, "path"), st_img[j].path);
				assert_true(fabs(num(r, "score") - sc[j]) < 1e-4);
				assert_int_equal(num(r, "width"), st_img[j].w);
				assert_int_equal(num(r, "height"), st_img[j].h);
				if (p < 3)
					assert_string_equal(str(r, "prompt"), prompts_txt[p]);
				else
					assert_true(str(r, "prompt")[0] == '@');
				rank++;
			}
		}
		assert_int_equal(at, nrows);
		for (int r = 0; r < nrows; r++)
			cJSON_Delete(rows[r]);
	}
	cJSON_Delete(recorded_near);
	cJSON_Delete(recorded_similar);
	clip_ctx_free(ctx);
	clip_model_free(m);
	start_daemon();
}

/* clipdex dupes --kind clips: a clip and its re-encoded copy are near,
 * printed as PATH@HH:MM:SS with the frames that match. */
static void
test_cli_dupes_clips(void **state)
{
	char dir[400], cmd[1500], out[8192];
	cdx_add_result ar;
	(void)state;
	snprintf(dir, sizeof(dir), "%s/clips", photos);
	assert_int_equal(mkdir(dir, 0755), 0);
	snprintf(cmd, sizeof(cmd), "ffmpeg -nostdin -loglevel error -y -f lavfi "
	    "-i 'color=c=red:size=128x96:rate=10:duration=4[a];color=c=blue:"
	    "size=128x96:rate=10:duration=4[b];[a][b]concat' -c:v libx264 "
	    "-g 10 -pix_fmt yuv420p '%s/a.mp4' && ffmpeg -nostdin -loglevel "
	    "error -y -i '%s/a.mp4' -c:v libx264 -crf 35 '%s/copy.mkv'", dir,
	    dir, dir);
	assert_int_equal(system(cmd), 0);
	CDX_ASSERT_OK(cdx_add(cli, dir, 1, &ar), cdx_client_errmsg(cli));
	/* photos/ is watched: the clips may be in already (unchanged). */
	if (ar.added + ar.unchanged != 2 || ar.failed != 0) {
		char log[4096] = "";
		snprintf(cmd, sizeof(cmd), "tail -5 '%s'", logpath);
		tu_popen_read(cmd, log, sizeof(log));
		fail_msg("added %lld, failed %lld, unchanged %lld:\n%s",
		    (long long)ar.added, (long long)ar.failed,
		    (long long)ar.unchanged, log);
	}
	snprintf(cmd, sizeof(cmd), "dupes --kind clips --prefix '%s'", dir);
	assert_int_equal(run_cli(cmd, out, sizeof(out)), 0);
	char want[1200];
	snprintf(want, sizeof(want), "near   2/2 frames  %s/a.mp4@00:00:00  "
	    "%s/copy.mkv@00:00:00\n", dir, dir);
	if (strstr(out, want) == NULL)
		fail_msg("no \"%s\" in:\n%s", want, out);
	assert_non_null(strstr(out, "1 clip pairs among 2 clips"));
	snprintf(cmd, sizeof(cmd), "dupes --kind clips --json --prefix '%s'",
	    dir);
	assert_int_equal(run_cli(cmd, out, sizeof(out)), 0);
	cJSON *j = cJSON_Parse(out);
	assert_non_null(j);
	assert_string_equal(cJSON_GetObjectItem(j, "relation")->valuestring,
	    "near");
	assert_int_equal(cJSON_GetObjectItem(j, "matched")->valueint, 2);
	cJSON_Delete(j);
	assert_int_equal(run_cli("dupes --kind clips --csv", out, sizeof(out)),
	    2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_groups),
		cmocka_unit_test(test_near_groups_planted),
		cmocka_unit_test(test_paging_is_stable),
		cmocka_unit_test(test_api_dupes_matches_protocol),
		cmocka_unit_test(test_api_check),
		cmocka_unit_test(test_api_retrieve),
		cmocka_unit_test(test_api_search_text),
		cmocka_unit_test(test_cli_dupes_and_check),
		cmocka_unit_test(test_cli_retrieve_and_copy),
		cmocka_unit_test(test_retrieve_paging),
		cmocka_unit_test(test_brute_force),
		cmocka_unit_test(test_cli_dupes_clips),
	};
	return CLIENT_RUN_TESTS(tests, setup, teardown);
}
