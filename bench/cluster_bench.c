/*
 * cluster_bench - what a search across shards on NATS costs beside one
 * daemon holding the same images, in one run (docs/SCALE.md).
 *
 *   cluster_bench [--n 6000] [--shards 3] [--queries 200] [--model DIR]
 *
 * Starts a nats-server (JetStream, loopback), `shards` clipdexd shards and
 * a front (clipdexd --nats), and one clipdexd with its own store, all with
 * the demo model (models/demo) and one thread each.  The n clustered
 * vectors go into the single store directly and to the shards as puts
 * over NATS, each to the shard that owns it (the put rate is printed).
 * Then the same text queries (top 10) to the single daemon, to the front
 * and to libclipdex opened on the nats:// URL (it asks the shards
 * itself): p50/p99 latency, and the overhead of each.  Needs nats-server
 * (tools/deps.sh).
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_store.h"
#include "client/clipdex.h"
#include "cluster/cluster.h"
#include "daemon/cluster_op.h"
#include "encoder/clip.h"
#include "store/store.h"

#define MAX_SHARDS 8

static char dir[64], bindir[512], model[512], urls[64];
static pid_t pids[MAX_SHARDS + 3];
static int npids;

static void
fail(const char *what)
{
	fprintf(stderr, "cluster_bench: %s\n", what);
	exit(1);
}


static void
spawn(const char *cmd)
{
	pid_t pid = fork();
	if (pid < 0)
		fail("fork");
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	pids[npids++] = pid;
}

static void
stop_all(void)
{
	for (int i = npids - 1; i >= 0; i--) {
		kill(pids[i], SIGTERM);
		waitpid(pids[i], NULL, 0);
	}
	npids = 0;
}

static cdx_client *
daemon_start(const char *name, const char *extra)
{
	char cmd[2048], url[128];
	cdx_client *c;
	cdx_status st;
	snprintf(url, sizeof(url), "ipc://%s/%s.sock", dir, name);
	snprintf(cmd, sizeof(cmd), "exec %s/clipdexd --model '%s' --store "
	    "'%s/%s' --listen '%s' --threads 1 %s >>'%s/%s.log' 2>&1", bindir,
	    model, dir, name, url, extra, dir, name);
	spawn(cmd);
	if (cdx_client_open(url, &c) != 0)
		fail("cdx_client_open");
	cdx_client_set_timeout(c, 30000);
	for (int i = 0; i < 600 && cdx_get_status(c, &st) != 0; i++)
		usleep(50000);
	if (cdx_get_status(c, &st) != 0)
		fail("clipdexd did not start (see the log)");
	return c;
}

static int
cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void
latency(cdx_client *c, int nq, double *p50, double *p99)
{
	static const char *const w[] = { "red", "blue", "circle", "square",
		"two", "stripes", "small", "dots" };
	double *t = malloc(sizeof(double) * (size_t)nq);
	for (int i = 0; i < nq; i++) {
		char text[64];
		snprintf(text, sizeof(text), "%s %s", w[i % 8], w[(i * 3 + 1) % 8]);
		cdx_term term = { .kind = CDX_TERM_TEXT, .text = text,
		    .weight = 1 };
		cdx_query q = { .terms = &term, .n_terms = 1, .k = 10 };
		cdx_results *r = NULL;
		double t0 = now();
		if (cdx_search(c, &q, &r) != 0 || r->partial)
			fail("search");
		t[i] = (now() - t0) * 1e3;
		cdx_results_free(r);
	}
	qsort(t, (size_t)nq, sizeof(double), cmp_d);
	*p50 = t[nq / 2];
	*p99 = t[(nq * 99) / 100 < nq ? (nq * 99) / 100 : nq - 1];
	free(t);
}

int
main(int argc, char **argv)
{
	long n = 6000, shards = 3, nq = 200;
	char cwd[400], cmd[2048], extra[256];
	const char *mdir = "models/demo";
	cdx_error err;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--n") == 0)
			n = atol(argv[i + 1]);
		else if (strcmp(argv[i], "--shards") == 0)
			shards = atol(argv[i + 1]);
		else if (strcmp(argv[i], "--queries") == 0)
			nq = atol(argv[i + 1]);
		else if (strcmp(argv[i], "--model") == 0)
			mdir = argv[i + 1];
	}
	if (n < 100 || shards < 1 || shards > MAX_SHARDS || nq < 10)
		fail("usage: cluster_bench [--n N] [--shards 1..8] [--queries Q]");
	if (system("command -v nats-server >/dev/null") != 0)
		fail("nats-server is not installed (tools/deps.sh)");
	if (!getcwd(cwd, sizeof(cwd)))
		fail("getcwd");
	snprintf(bindir, sizeof(bindir), "%s/%s", cwd,
	    getenv("BUILD") ? getenv("BUILD") : "build");
	snprintf(model, sizeof(model), "%s/%s", cwd, mdir);
	snprintf(dir, sizeof(dir), "/tmp/cdx-cluster-bench-XXXXXX");
	if (!mkdtemp(dir))
		fail("mkdtemp");
	int port = 23000 + getpid() % 3000;
	snprintf(urls, sizeof(urls), "nats://127.0.0.1:%d", port);

	/* the single daemon's store, filled directly */
	char single[128];
	snprintf(single, sizeof(single), "%s/single", dir);
	clip_model *m;
	clip_model_params mp;
	clip_model_default_params(&mp);
	if (clip_model_load(model, &mp, &m, &err) != 0)
		fail(err.msg);
	const clip_model_info *info = clip_model_get_info(m);
	int dim = info->embed_dim;
	store_params sp = store_default_params();
	sp.dim = dim;
	sp.model_id = info->key;
	store *st;
	if (store_open(single, &sp, &st, &err) != 0)
		fail(err.msg);
	mixture mx;
	mixture_init(&mx, dim, 200);
	float *x = malloc(sizeof(float) * (size_t)n * dim);
	mixture_draw(&mx, x, (size_t)n, 11);
	store_image *imgs = calloc((size_t)n, sizeof(*imgs));
	char (*paths)[48] = calloc((size_t)n, 48);
	for (long i = 0; i < n; i++) {
		snprintf(paths[i], 48, "/bench/%04ld/%06ld.jpg", i / 1000, i);
		imgs[i].path = paths[i];
		imgs[i].size = 100000 + i;
		imgs[i].width = imgs[i].height = 64;
		imgs[i].capture_time = STORE_TIME_UNKNOWN;
		imgs[i].embedding = x + (size_t)i * dim;
		memcpy(imgs[i].hash, &i, sizeof(i)); /* distinct contents */
	}
	if (store_image_put(st, imgs, (size_t)n, &err) != 0)
		fail(err.msg);
	store_close(st);
	clip_model_free(m);

	snprintf(cmd, sizeof(cmd), "exec nats-server -js -sd '%s/js' -a "
	    "127.0.0.1 -p %d >'%s/nats.log' 2>&1", dir, port, dir);
	spawn(cmd);
	cdx_client *one = daemon_start("single", "");
	for (long i = 0; i < shards; i++) {
		char name[16];
		snprintf(name, sizeof(name), "s%ld", i + 1);
		snprintf(extra, sizeof(extra), "--nats %s --shard %s", urls, name);
		cdx_client_close(daemon_start(name, extra));
	}
	snprintf(extra, sizeof(extra), "--nats %s", urls);
	cdx_client *front = daemon_start("front", extra);

	/* every image to its owner, as a worker hands them over */
	clu_params cp;
	clu *c;
	clu_default_params(&cp);
	cp.urls = urls;
	if (clu_open(&cp, &c, &err) != 0)
		fail(err.msg);
	char **names;
	size_t nn;
	for (int i = 0; i < 100; i++) {
		clu_members(c, &names, &nn);
		clu_names_free(names, nn);
		if ((long)nn == shards)
			break;
		usleep(50000);
	}
	double t0 = now();
	for (long i = 0; i < n; i++) {
		char owner[CLU_NAME_MAX + 1];
		char *msg = clusterd_put_message(&imgs[i], dim);
		if (!msg || clu_owner(c, imgs[i].path, strlen(imgs[i].path), owner,
		    sizeof(owner)) != 0 || clusterd_put(c, owner, msg, &err) != 0)
			fail("put");
		free(msg);
	}
	double tput = now() - t0;
	clu_close(c);
	printf("cluster_bench: %ld %d-d images (%s), %ld shards on one "
	    "nats-server, %ld text queries, one thread per daemon\n", n, dim,
	    mdir, shards, nq);
	printf("puts over NATS, one image each: %.0f images/s (each one LMDB "
	    "transaction on its shard)\n", (double)n / tput);

	cdx_client *direct;
	if (cdx_client_open(urls, &direct) != 0)
		fail(cdx_client_errmsg(NULL));
	double a50, a99, b50, b99, c50, c99;
	latency(one, nq / 4, &a50, &a99);       /* warm them */
	latency(front, nq / 4, &b50, &b99);
	latency(direct, nq / 4, &c50, &c99);
	latency(one, (int)nq, &a50, &a99);
	latency(front, (int)nq, &b50, &b99);
	latency(direct, (int)nq, &c50, &c99);
	printf("one daemon:             top-10 p50 %.2f ms, p99 %.2f ms\n", a50,
	    a99);
	printf("front over %ld shards:   top-10 p50 %.2f ms, p99 %.2f ms\n",
	    shards, b50, b99);
	printf("scatter-gather overhead: p50 +%.2f ms, p99 +%.2f ms\n",
	    b50 - a50, b99 - a99);
	printf("libclipdex on nats://:   top-10 p50 %.2f ms, p99 %.2f ms "
	    "(p50 +%.2f ms, p99 +%.2f ms)\n", c50, c99, c50 - a50, c99 - a99);
	cdx_client_close(direct);
	cdx_client_close(one);
	cdx_client_close(front);
	stop_all();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cluster_bench: could not remove %s\n", dir);
	free(imgs);
	free(paths);
	free(x);
	return 0;
}
