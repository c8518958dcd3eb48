/*
 * Tests of a clipdex cluster on NATS (cluster/cluster.h,
 * daemon/cluster_op.h), as separate processes on loopback: a 3-node
 * nats-server cluster with JetStream, 3 shards (clipdexd --shard), a
 * front (clipdexd --nats), encoding workers (clipdexd --worker) fed by
 * `clipdex enqueue`, a libclipdex client on the nats:// URLs that asks
 * the shards itself, and a single clipdexd holding every photo as the
 * reference.
 *
 *   - the front's top k, and the nats:// client's, equal the single
 *     daemon's (paths and scores);
 *   - a killed shard gives a partial answer that names it, to both;
 *   - the nats:// client's other requests are answered by a member, and
 *     its errors are the protocol's;
 *   - a killed NATS node changes nothing a client sees;
 *   - a worker killed mid-batch loses nothing (JetStream redelivers);
 *   - a fourth shard takes over the records it owns, losing none.
 *
 * Needs nats-server (Debian's; tools/deps.sh installs it).  Each test
 * leaves the cluster whole, so any one runs alone (CDX_TEST=name).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/client_run.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/clipdex.h"
#include "tests/testmodel.h"
#include "tests/testutil.h"

#define N_PHOTOS 30
#define N_MORE 12
#define N_NODES 3
#define N_SHARDS 4      /* s1..s3 from the start, s4 joins in a test */
#define K 10

static char tmp[256], model_dir[300], photos[300], more[300];
static char bindir[256], urls[256];
static int port0;
static pid_t nodes[N_NODES];

typedef struct proc {
	char name[16], store[320], url[340], log[340];
	pid_t pid;
	cdx_client *cli;
} proc;

static proc ref, front, shards[N_SHARDS];
static proc direct = { .name = "direct" };      /* libclipdex on nats:// */
static int n_shards = 3;
static pid_t worker;

/* ---- processes ---- */

static pid_t
spawn(const char *cmd)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static void
kill9(pid_t *pid)
{
	if (*pid > 0) {
		kill(*pid, SIGKILL);
		waitpid(*pid, NULL, 0);
	}
	*pid = 0;
}

static void
node_start(int i)
{
	char conf[400], cmd[800], routes[256];
	snprintf(conf, sizeof(conf), "%s/n%d.conf", tmp, i);
	snprintf(routes, sizeof(routes),
	    "nats-route://127.0.0.1:%d,nats-route://127.0.0.1:%d,"
	    "nats-route://127.0.0.1:%d", port0 + 3, port0 + 4, port0 + 5);
	FILE *f = fopen(conf, "w");
	assert_non_null(f);
	fprintf(f, "server_name: n%d\nlisten: 127.0.0.1:%d\n"
	    "jetstream { store_dir: \"%s/js%d\" }\n"
	    "cluster { name: cdx\n listen: 127.0.0.1:%d\n routes: [%s] }\n",
	    i, port0 + i, tmp, i, port0 + 3 + i, routes);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "exec nats-server -c '%s' >>'%s/n%d.log' "
	    "2>&1", conf, tmp, i);
	nodes[i] = spawn(cmd);
}

static void
proc_paths(proc *p, const char *name)
{
	snprintf(p->name, sizeof(p->name), "%s", name);
	snprintf(p->store, sizeof(p->store), "%s/store-%s", tmp, name);
	snprintf(p->url, sizeof(p->url), "ipc://%s/%s.sock", tmp, name);
	snprintf(p->log, sizeof(p->log), "%s/%s.log", tmp, name);
}

/* A clipdexd: `extra` flags; ready once it answers status. */
static void
proc_start(proc *p, const char *extra)
{
	tu_daemon d = { bindir, model_dir, p->store, p->url, tmp, p->log, 0 };
	if (p->cli == NULL) {
		assert_int_equal(cdx_client_open(p->url, &p->cli), 0);
		cdx_client_set_timeout(p->cli, 20000);
	}
	p->pid = tu_daemon_up(&d, extra, p->cli);
}

static void
shard_start(int i)
{
	char extra[5000];
	snprintf(extra, sizeof(extra), "--nats %s --shard %s --nats-replicas 3",
	    urls, shards[i].name);
	proc_start(&shards[i], extra);
}

static void
worker_start(void)
{
	char cmd[5000];
	snprintf(cmd, sizeof(cmd), "exec %s/clipdexd --model '%s' --nats %s "
	    "--worker --nats-replicas 3 --nats-ack-wait 1500 --batch 4 "
	    "--threads 1 >>'%s/worker.log' 2>&1", bindir, model_dir, urls, tmp);
	worker = spawn(cmd);
}

static void
enqueue(const char *dir)
{
	char cmd[5000], out[512];
	snprintf(cmd, sizeof(cmd), "%s/clipdex enqueue --nats %s --replicas 3 "
	    "'%s' 2>&1", bindir, urls, dir);
	int rc = tu_popen_read(cmd, out, sizeof(out));
	if (rc != 0)
		fprintf(stderr, "clipdex enqueue: exit %d: %s\n", rc, out);
	assert_int_equal(rc, 0);
}

/* Images and failure records over the running shards (each counted
 * where it lives). */
static void
shard_counts(uint64_t *images, uint64_t *failures, uint64_t *per)
{
	*images = *failures = 0;
	for (int i = 0; i < n_shards; i++) {
		cdx_status st;
		per[i] = 0;
		if (shards[i].pid <= 0 ||
		    cdx_get_status(shards[i].cli, &st) != 0)
			continue;
		per[i] = st.images;
		*images += st.images;
		*failures += st.failures;
	}
}

/* Waits up to 60 s until the shards hold `images` images and `failures`
 * failure records. */
static void
wait_counts(uint64_t images, uint64_t failures)
{
	uint64_t im = 0, fa = 0, per[N_SHARDS];
	double t0 = tu_now_s();
	while (tu_now_s() - t0 < 60) {
		shard_counts(&im, &fa, per);
		if (im == images && fa == failures)
			return;
		usleep(100000);
	}
	fprintf(stderr, "shards hold %llu images, %llu failures; want %llu, "
	    "%llu\n", (unsigned long long)im, (unsigned long long)fa,
	    (unsigned long long)images, (unsigned long long)failures);
	fail();
}

/* ---- queries ---- */

static const char *const queries[] = { "a red photo", "stripes",
	"a dog on a beach", "blue and green" };
#define N_QUERIES (sizeof(queries) / sizeof(*queries))

static int
search(proc *p, const char *text, const char *prefix, size_t k,
    cdx_results **out)
{
	cdx_term t = { .kind = CDX_TERM_TEXT, .text = text, .weight = 1 };
	cdx_query q = { .terms = &t, .n_terms = 1, .k = k,
	    .path_prefix = prefix };
	int rc = cdx_search(p->cli, &q, out);
	if (rc != 0)
		fprintf(stderr, "search on %s: %s\n", p->name,
		    cdx_client_errmsg(p->cli));
	return rc;
}

/* Scores of one vector computed by two stores: the same up to the
 * summation order of their BLAS calls. */
static int
same_score(float a, float b)
{
	return fabsf(a - b) < 1e-6f;
}

/* The asker's answer (the front's, or the nats:// client's) holds exactly
 * the reference's hits: same paths, same scores, in score order (ties in
 * any order). */
static void
same_as_reference(proc *asker, const char *text, const char *prefix,
    size_t k)
{
	cdx_results *a = NULL, *b = NULL;
	assert_int_equal(search(&ref, text, prefix, k, &a), 0);
	assert_int_equal(search(asker, text, prefix, k, &b), 0);
	int ok = !b->partial && b->shards == (size_t)n_shards && a->n == b->n;
	for (size_t i = 0; ok && i < b->n; i++) {
		int found = 0;
		for (size_t j = 0; j < a->n; j++)
			found |= strcmp(a->results[j].path, b->results[i].path)
			    == 0 && same_score(a->results[j].score,
			    b->results[i].score);
		ok = found && b->results[i].shard != NULL &&
		    same_score(a->results[i].score, b->results[i].score);
	}
	if (!ok || getenv("CDX_VERBOSE")) {
		fprintf(stderr, "%s (%s): partial %d, shards %zu of %d, %zu "
		    "and %zu results\n", text, asker->name, b->partial,
		    b->shards, n_shards, a->n, b->n);
		for (size_t i = 0; i < a->n || i < b->n; i++)
			fprintf(stderr, "  %.9g %s | %.9g %s %s\n",
			    i < a->n ? a->results[i].score : 0.f,
			    i < a->n ? a->results[i].path : "-",
			    i < b->n ? b->results[i].score : 0.f,
			    i < b->n ? b->results[i].path : "-",
			    i < b->n && b->results[i].shard ?
			    b->results[i].shard : "-");
	}
	assert_true(ok);
	cdx_results_free(a);
	cdx_results_free(b);
}

static void
all_same(void)
{
	for (size_t i = 0; i < N_QUERIES; i++)
		for (int d = 0; d < 2; d++) {
			proc *asker = d ? &direct : &front;
			same_as_reference(asker, queries[i], NULL, K);
			same_as_reference(asker, queries[i], photos, 3);
		}
}

/* Searches until the answers of the front and of the nats:// client are
 * whole (a restarted shard rejoins, a new one is known to them:
 * membership is eventually consistent), ten in a row, up to 30 s. */
static void
wait_whole(void)
{
	double t0 = tu_now_s();
	int in_a_row = 0;
	while (tu_now_s() - t0 < 30) {
		cdx_results *r = NULL;
		int rc = search(in_a_row % 2 ? &direct : &front, queries[0],
		    NULL, K, &r);
		int whole = rc == 0 && !r->partial &&
		    r->shards == (size_t)n_shards;
		cdx_results_free(r);
		in_a_row = whole ? in_a_row + 1 : 0;
		if (in_a_row == 10)
			return;
		usleep(100000);
	}
	fail_msg("the front's answers stayed partial");
}

/* ---- setup ---- */

static void
write_photos(const char *dir, int n, unsigned seed0)
{
	char p[400];
	assert_int_equal(mkdir(dir, 0755), 0);
	for (int i = 0; i < n; i++) {
		snprintf(p, sizeof(p), "%s/%02d.jpg", dir, i);
		tu_write_stripes_jpeg(p, 80 + 7 * i, 64 + 5 * (i % 4),
		    seed0 + (unsigned)i);
	}
}

static int
setup(void **state)
{
	char dummy[320], extra[5000], store[300], log[300], broken[400];
	(void)state;
	if (tu_lsan_nng() != 0)
		return -1;
	tu_bin_dir(bindir, sizeof(bindir));
	if (tu_suite_dirs("cdx-cluster", "model", tmp, model_dir, photos,
	    store, dummy, log) != 0)
		return -1;
	snprintf(more, sizeof(more), "%s/more", tmp);
	port0 = 21000 + (getpid() % 2000) * 8;
	snprintf(urls, sizeof(urls), "nats://127.0.0.1:%d,nats://127.0.0.1:%d,"
	    "nats://127.0.0.1:%d", port0, port0 + 1, port0 + 2);
	tm_recipe r;
	tm_recipe_tiny(&r);
	mkdir(model_dir, 0755);
	if (tm_write_model(&r, model_dir) != 0)
		return -1;
	write_photos(photos, N_PHOTOS, 1);
	snprintf(broken, sizeof(broken), "%s/broken.jpg", photos);
	if (tu_write_file(broken, "\xff\xd8\xff\xe0 not really", 15) != 0)
		return -1;
	write_photos(more, N_MORE, 100);

	for (int i = 0; i < N_NODES; i++)
		node_start(i);
	proc_paths(&ref, "ref");
	proc_paths(&front, "front");
	for (int i = 0; i < N_SHARDS; i++) {
		char name[8];
		snprintf(name, sizeof(name), "s%d", i + 1);
		proc_paths(&shards[i], name);
	}
	proc_start(&ref, NULL);
	if (tu_add_expect(ref.cli, photos, N_PHOTOS) != 0)
		return -1;
	for (int i = 0; i < 3; i++)
		shard_start(i);
	snprintf(extra, sizeof(extra), "--nats %s --nats-timeout 1500", urls);
	proc_start(&front, extra);
	if (cdx_client_open(urls, &direct.cli) != 0) {
		fprintf(stderr, "%s: %s\n", urls, cdx_client_errmsg(NULL));
		return -1;
	}
	worker_start();
	enqueue(photos);
	wait_counts(N_PHOTOS, 1);   /* broken.jpg: a failure record */
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	kill9(&worker);
	for (int i = 0; i < 2 + N_SHARDS; i++) {
		proc *p = i == 0 ? &ref : i == 1 ? &front : &shards[i - 2];
		if (p->pid > 0)
			tu_stop_child(p->pid);
		p->pid = 0;
		cdx_client_close(p->cli);
	}
	cdx_client_close(direct.cli);
	for (int i = 0; i < N_NODES; i++)
		kill9(&nodes[i]);
	tm_rmtree(tmp);
	return 0;
}

/* ---- tests ---- */

static void
test_same_topk_as_one_daemon(void **state)
{
	uint64_t im, fa, per[N_SHARDS];
	(void)state;
	all_same();
	/* every shard holds some of them, and none twice */
	cdx_status rs;
	shard_counts(&im, &fa, per);
	assert_int_equal(cdx_get_status(ref.cli, &rs), 0);
	assert_int_equal(im, rs.images);
	assert_int_equal(fa, 1);
	for (int i = 0; i < n_shards; i++)
		assert_true(per[i] > 0);
}

/* The asker's answer with s2 killed: partial, naming it, within the
 * deadline, and otherwise the reference's. */
static void
partial_without_s2(proc *asker)
{
	cdx_results *a = NULL, *b = NULL;
	assert_int_equal(search(&ref, queries[1], NULL, 40, &a), 0);
	double t0 = tu_now_s();
	assert_int_equal(search(asker, queries[1], NULL, 40, &b), 0);
	double took = tu_now_s() - t0;
	assert_true(b->partial);
	assert_non_null(b->missing);
	assert_string_equal(b->missing, "s2");
	assert_int_equal(b->shards, (size_t)n_shards);
	assert_true(took < 5.0);        /* the deadline, not a hang */
	/* what did come is the reference's, score for score */
	assert_true(b->n > 0 && b->n < a->n);
	for (size_t i = 0; i < b->n; i++) {
		assert_string_not_equal(b->results[i].shard, "s2");
		int found = 0;
		for (size_t j = 0; j < a->n; j++)
			found |= strcmp(a->results[j].path, b->results[i].path)
			    == 0 && same_score(a->results[j].score,
			    b->results[i].score);
		assert_true(found);
	}
	cdx_results_free(a);
	cdx_results_free(b);
}

static void
test_killed_shard_is_reported(void **state)
{
	(void)state;
	kill9(&shards[1].pid);
	for (int d = 0; d < 2; d++)
		partial_without_s2(d ? &direct : &front);
	/* back, from its own store: whole again */
	shard_start(1);
	wait_whole();
	all_same();
}

static void
test_killed_nats_node_changes_nothing(void **state)
{
	(void)state;
	kill9(&nodes[0]);
	for (int round = 0; round < 3; round++)
		all_same();
	node_start(0);
	all_same();
}

static void
test_killed_worker_loses_nothing(void **state)
{
	uint64_t im0, fa0, per[N_SHARDS];
	char dir[400];
	(void)state;
	shard_counts(&im0, &fa0, per);
	/* Freeze the shards so that the worker's first hand-over of the
	 * batch waits, kill it there, then thaw them. */
	for (int i = 0; i < n_shards; i++)
		assert_true(shards[i].pid > 0);
	for (int i = 0; i < n_shards; i++)
		kill(shards[i].pid, SIGSTOP);
	snprintf(dir, sizeof(dir), "%s/batch", tmp);
	if (mkdir(dir, 0755) == 0) {
		char p[500];
		for (int i = 0; i < 4; i++) {
			snprintf(p, sizeof(p), "%s/%02d.jpg", dir, i);
			tu_write_stripes_jpeg(p, 90 + 3 * i, 70, 500 + i);
		}
	}
	enqueue(dir);
	usleep(700000);
	kill9(&worker);
	for (int i = 0; i < n_shards; i++)
		kill(shards[i].pid, SIGCONT);
	worker_start();
	wait_counts(im0 + 4, fa0);
	/* the reference learns them too, for the other tests */
	if (tu_add_expect(ref.cli, dir, 4) != 0)
		fail();
	all_same();
}

static void
test_new_shard_takes_its_records(void **state)
{
	uint64_t im0, fa0, im, fa, per[N_SHARDS];
	(void)state;
	shard_counts(&im0, &fa0, per);
	n_shards = 4;
	shard_start(3);
	/* it joins empty and the others hand over what it owns */
	double t0 = tu_now_s();
	for (;;) {
		shard_counts(&im, &fa, per);
		if (per[3] > 0 && im == im0)
			break;
		assert_true(tu_now_s() - t0 < 30);
		usleep(100000);
	}
	/* new work goes to all four, and nothing is lost or doubled */
	enqueue(more);
	if (tu_add_expect(ref.cli, more, N_MORE) != 0)
		fail();
	wait_counts(im0 + N_MORE, fa0);
	wait_whole();
	all_same();
}

/* The nats:// client's other requests go to a member (clipdex.api), with
 * the protocol's errors; "plan" is refused outside a cluster; a NATS
 * server that is not there fails the open. */
static void
test_nats_client_requests(void **state)
{
	cdx_status st;
	cdx_client *none = NULL;
	char *reply = NULL;
	char url[64];
	(void)state;
	assert_int_equal(cdx_get_status(direct.cli, &st), 0);
	assert_int_equal(st.dim, 16);
	/* tags belong to one store: the member that plans says so */
	const char *tag = "food";
	cdx_term t = { .kind = CDX_TERM_TEXT, .text = "stripes", .weight = 1 };
	cdx_query q = { .terms = &t, .n_terms = 1, .k = 5, .tags = &tag,
	    .n_tags = 1 };
	cdx_results *r = NULL;
	assert_int_equal(cdx_search(direct.cli, &q, &r), CDX_EINVAL);
	assert_non_null(strstr(cdx_client_errmsg(direct.cli), "one store"));
	assert_int_equal(cdx_call(direct.cli, "{\"op\":\"nonesuch\"}",
	    &reply), CDX_EPROTO);
	/* paging and a score cut-off, merged by the library */
	cdx_results *a = NULL, *b = NULL;
	cdx_query all = { .terms = &t, .n_terms = 1, .k = 6 };
	cdx_query page = { .terms = &t, .n_terms = 1, .k = 3, .offset = 2,
	    .has_min_score = 1 };
	assert_int_equal(cdx_search(ref.cli, &all, &a), 0);
	assert_true(a->n == 6);
	page.min_score = a->results[3].score;
	assert_int_equal(cdx_search(direct.cli, &page, &b), 0);
	assert_int_equal(b->n, 2);      /* ranks 2 and 3 of the reference */
	for (size_t i = 0; i < b->n; i++)
		assert_true(same_score(b->results[i].score,
		    a->results[2 + i].score));
	cdx_results_free(a);
	cdx_results_free(b);
	/* the command line on the same URLs */
	char cmd[1200], line[600];
	snprintf(cmd, sizeof(cmd), "'%s/clipdex' --url '%s' search stripes "
	    "-k 3", bindir, urls);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	int lines = 0;
	while (fgets(line, sizeof(line), f) != NULL)
		lines += strstr(line, photos) != NULL;
	assert_int_equal(pclose(f), 0);
	assert_int_equal(lines, 3);
	/* outside a cluster */
	assert_int_equal(cdx_call(ref.cli, "{\"op\":\"search\",\"text\":"
	    "\"stripes\",\"plan\":true}", &reply), CDX_EINVAL);
	assert_non_null(strstr(cdx_client_errmsg(ref.cli), "--nats"));
	/* no NATS server there */
	snprintf(url, sizeof(url), "nats://127.0.0.1:%d", port0 + 7);
	double t0 = tu_now_s();
	assert_int_equal(cdx_client_open(url, &none), CDX_EIO);
	assert_true(tu_now_s() - t0 < 10);
	assert_non_null(strstr(cdx_client_errmsg(NULL), "127.0.0.1"));
	/* a NATS server no clipdexd has joined */
	snprintf(cmd, sizeof(cmd), "exec nats-server -js -a 127.0.0.1 -p %d "
	    "-sd '%s/bare' >>'%s/bare.log' 2>&1", port0 + 7, tmp, tmp);
	pid_t bare = spawn(cmd);
	int rc = CDX_EIO;
	for (int i = 0; i < 50 && rc == CDX_EIO && !strstr(
	    cdx_client_errmsg(NULL), "no clipdexd"); i++) {
		usleep(100000);
		rc = cdx_client_open(url, &none);
	}
	kill9(&bare);
	assert_int_equal(rc, CDX_EIO);
	assert_non_null(strstr(cdx_client_errmsg(NULL), "no clipdexd has "
	    "joined"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_topk_as_one_daemon),
		cmocka_unit_test(test_killed_shard_is_reported),
		cmocka_unit_test(test_nats_client_requests),
		cmocka_unit_test(test_killed_nats_node_changes_nothing),
		cmocka_unit_test(test_killed_worker_loses_nothing),
		cmocka_unit_test(test_new_shard_takes_its_records),
	};
	return CLIENT_RUN_TESTS(tests, setup, teardown);
}
