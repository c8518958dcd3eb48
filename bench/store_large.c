/*
 * store_large - the store at 10M images: IVF-PQ (ivfpq), re-ranked from
 * the stored embeddings (issue 17).  Not part of `make bench` unless named:
 * `make bench B=store_large` (about half an hour on 2 cores).
 *
 *   build/bench/store_large [--n 10000000] [--first 1000000] [--dim 512]
 *       [--clusters 3000] [--queries 100] [--rerank 1,10,200]
 *       [--nprobe 0,32,64] [--threads 2] [--dir /tmp] [--keep]
 *   build/bench/store_large --serve DIR [--dim --queries --rerank --nprobe]
 *
 * Vectors come from bench/bench_store.h's mixture (as store_bench makes
 * them), generated batch by batch from fixed seeds and never all held in
 * RAM.  The build is what a growing store does: it starts exact and
 * changes kind as it grows (IVF-PQ trained on a sample once enough images
 * are in, rebuilt when the count outgrows its lists), all within its
 * writes; the reopen after --first is what a restarting daemon does; the
 * rest are added as PQ codes (into the delta, merged into index.base).
 * Exact top-10 for the queries is computed by streaming the same vectors
 * again.  Then, for each re-rank
 * factor (1: the codes' own top 10, with exact scores) and nprobe (0: the
 * store's default), the store is reopened and serves the queries:
 * p50/p99 and recall@10 against exact.
 * Printed with the targets: resident memory under 3 GB, p50 under 20 ms at
 * recall@10 >= 0.95, build under 30 minutes.  See docs/SCALE.md.
 */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/bench_store.h"
#include "store/store.h"

extern void openblas_set_num_threads(int n);
extern void omp_set_num_threads(int n);

#define BATCH 1000

typedef struct opts {
	size_t n, first;
	int dim, clusters, queries, threads;
	int rerank[8], nrerank, nprobe[8], nnprobe;
	const char *dir;
	const char *serve;      /* --serve DIR: only serve the store in DIR */
	int keep;               /* --keep: leave the store behind */
} opts;

static store *
open_pq(const opts *o, const char *dir, int rerank, int nprobe, double *secs)
{
	return bench_open(dir, o->dim, "bench@large", "ivfpq", nprobe, 0,
			  rerank, secs);
}

/* Batch b's vectors (BATCH of them, from image b * BATCH). */
static void
batch_vecs(const mixture *m, size_t b, float *x)
{
	mixture_draw(m, x, BATCH, 1000003 + b);
}

static void
insert(const opts *o, store *s, const mixture *m, size_t from, size_t to)
{
	store_image imgs[BATCH];
	char paths[BATCH][40];
	float *x = malloc((size_t)BATCH * o->dim * sizeof(float));
	cdx_error e;
	for (size_t i = from; i < to; i += BATCH) {
		batch_vecs(m, i / BATCH, x);
		memset(imgs, 0, sizeof(imgs));
		for (size_t j = 0; j < BATCH; j++) {
			snprintf(paths[j], sizeof(paths[j]), "/big/%03zu/%09zu.jpg",
				 (i + j) % 1000, i + j);
			imgs[j].path = paths[j];
			imgs[j].embedding = x + j * o->dim;
			imgs[j].size = 1000;
			imgs[j].capture_time = STORE_TIME_UNKNOWN;
		}
		int rc = store_image_put(s, imgs, BATCH, &e);
		if (rc)
			die("store_image_put", rc, &e);
		if ((i / BATCH) % 1000 == 999) {
			printf("  %zu images\n", i + BATCH);
			fflush(stdout);
		}
	}
	free(x);
}

/* Exact top-10 image numbers of each query, streaming every vector. */
static void
exact_truth(const opts *o, const mixture *m, const float *q, uint64_t *truth)
{
	int nq = o->queries, d = o->dim;
	float *x = malloc((size_t)BATCH * d * sizeof(float));
	float *sc = malloc((size_t)nq * BATCH * sizeof(float));
	float *best = malloc((size_t)nq * 10 * sizeof(float));
	for (int i = 0; i < nq * 10; i++) {
		best[i] = -INFINITY;
		truth[i] = 0;
	}
	for (size_t b = 0; b < o->n / BATCH; b++) {
		batch_vecs(m, b, x);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, BATCH,
			    d, 1.0f, q, d, x, d, 0.0f, sc, BATCH);
		for (int i = 0; i < nq; i++) {
			float *bs = best + (size_t)i * 10;
			uint64_t *bt = truth + (size_t)i * 10;
			for (int j = 0; j < BATCH; j++) {
				float v = sc[(size_t)i * BATCH + j];
				if (v <= bs[9])
					continue;
				int k = 9;
				for (; k > 0 && bs[k - 1] < v; k--) {
					bs[k] = bs[k - 1];
					bt[k] = bt[k - 1];
				}
				bs[k] = v;
				bt[k] = b * BATCH + (size_t)j + 1; /* +1: 0 is none */
			}
		}
	}
	free(best);
	free(sc);
	free(x);
}

/* Serves the queries: p50/p99 and the image numbers of each top 10. */
static void
serve(store *s, const opts *o, const float *q, uint64_t *got, double *p50,
      double *p99)
{
	double *t = malloc((size_t)o->queries * sizeof(double));
	cdx_error e;
	for (int i = 0; i < o->queries; i++) {
		store_results *r;
		double t0 = now();
		int rc = store_search(s, q + (size_t)i * o->dim, 10, NULL, &r,
				      &e);
		t[i] = now() - t0;
		if (rc)
			die("store_search", rc, &e);
		for (size_t j = 0; j < 10; j++) {
			const char *p = j < r->n ? strrchr(r->hits[j].path, '/')
						 : NULL;
			got[(size_t)i * 10 + j] = p ? strtoull(p + 1, NULL, 10) + 1
						    : 0;
		}
		store_results_free(r);
	}
	pctl(t, o->queries, p50, p99);
	free(t);
}

static double
file_mb(const char *dir, const char *name)
{
	char p[600];
	struct stat sb;
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return stat(p, &sb) == 0 ? (double)sb.st_blocks * 512 / 1e6 : 0;
}

static void
run(const opts *o)
{
	char dir[512];
	mixture m;
	int nq = o->queries, d = o->dim;
	snprintf(dir, sizeof(dir), "%s/cdx_store_large_%ld", o->dir,
		 (long)getpid());
	rmrf(dir);
	mixture_init(&m, d, o->clusters);
	float *q = malloc((size_t)nq * d * sizeof(float));
	uint64_t *truth = malloc((size_t)nq * 10 * sizeof(uint64_t));
	uint64_t *got = malloc((size_t)nq * 10 * sizeof(uint64_t));
	mixture_draw(&m, q, (size_t)nq, 7);
	printf("store_large: %zu clustered %d-d vectors (%d clusters), %d "
	       "queries, %d threads\n", o->n, d, o->clusters, nq, o->threads);
	fflush(stdout);

	/* Build. */
	double t0 = now(), t_first, t_train, t_rest, t_close;
	store *s = open_pq(o, dir, 0, 0, NULL);
	insert(o, s, &m, 0, o->first);
	store_close(s);
	t_first = now() - t0;
	double t1 = now();
	s = open_pq(o, dir, 0, 0, NULL); /* trains on the first part */
	store_stats st;
	store_get_stats(s, &st);
	t_train = now() - t1;
	printf("first %zu images: %.0f s; reopen as %s (training, adding): "
	       "%.0f s\n", o->first, t_first, st.index_kind, t_train);
	fflush(stdout);
	t1 = now();
	insert(o, s, &m, o->first, o->n);
	t_rest = now() - t1;
	t1 = now();
	store_close(s);
	t_close = now() - t1;
	double build = now() - t0;
	printf("build: %.1f min in all (the rest %.0f s at %.0f images/s, "
	       "close %.0f s)  (target < 30 min: %s)\n", build / 60, t_rest,
	       (double)(o->n - o->first) / t_rest, t_close,
	       build < 1800 ? "met" : "NOT met");
	double idx_mb = file_mb(dir, "index.faiss") + file_mb(dir, "index.base");
	printf("on disk: LMDB %.0f MB (%.0f bytes an image), index %.0f MB "
	       "(%.0f bytes an image: index.base %.0f MB of lists, "
	       "memory-mapped; index.faiss %.0f MB, the delta and the "
	       "quantizer)\n", file_mb(dir, "data.mdb"),
	       file_mb(dir, "data.mdb") * 1e6 / (double)o->n, idx_mb,
	       idx_mb * 1e6 / (double)o->n, file_mb(dir, "index.base"),
	       file_mb(dir, "index.faiss"));
	fflush(stdout);

	t1 = now();
	exact_truth(o, &m, q, truth);
	printf("exact top-10 by streaming every vector: %.0f s\n", now() - t1);
	fflush(stdout);

	/* Serve, in a process of its own, so that its resident memory is
	 * what serving takes (this one touched every page while building). */
	char qf[600], cmd[2400];
	snprintf(qf, sizeof(qf), "%s.q", dir);
	FILE *f = fopen(qf, "wb");
	if (!f || fwrite(q, sizeof(float), (size_t)nq * d, f) != (size_t)nq * d ||
	    fwrite(truth, sizeof(uint64_t), (size_t)nq * 10, f) !=
		    (size_t)nq * 10 || fclose(f) != 0)
		die("writing the queries", CDX_EIO, NULL);
	char rr[64] = "", np[64] = "";
	for (int i = 0; i < o->nrerank; i++)
		snprintf(rr + strlen(rr), sizeof(rr) - strlen(rr), "%s%d",
			 i ? "," : "", o->rerank[i]);
	for (int i = 0; i < o->nnprobe; i++)
		snprintf(np + strlen(np), sizeof(np) - strlen(np), "%s%d",
			 i ? "," : "", o->nprobe[i]);
	snprintf(cmd, sizeof(cmd), "/proc/%ld/exe --serve '%s' --dim %d "
		 "--queries %d --rerank %s --nprobe %s --threads %d",
		 (long)getpid(), dir, d, nq, rr, np, o->threads);
	fflush(stdout);
	if (system(cmd) != 0)
		fprintf(stderr, "store_large: serving failed\n");
	if (!o->keep) {
		rmrf(dir);
		unlink(qf);
	} else {
		printf("kept %s (serve again: store_large --serve %s)\n", dir,
		       dir);
	}
	free(q);
	free(truth);
	free(got);
}

/* The serving half: the store in o->serve, the queries and exact top-10
 * that the build left in DIR.q. */
static void
serve_all(const opts *o)
{
	int nq = o->queries, d = o->dim;
	char qf[600];
	float *q = malloc((size_t)nq * d * sizeof(float));
	uint64_t *truth = malloc((size_t)nq * 10 * sizeof(uint64_t));
	uint64_t *got = malloc((size_t)nq * 10 * sizeof(uint64_t));
	snprintf(qf, sizeof(qf), "%s.q", o->serve);
	FILE *f = fopen(qf, "rb");
	if (!f || fread(q, sizeof(float), (size_t)nq * d, f) != (size_t)nq * d ||
	    fread(truth, sizeof(uint64_t), (size_t)nq * 10, f) !=
		    (size_t)nq * 10)
		die("reading the queries (DIR.q)", CDX_EIO, NULL);
	fclose(f);
	for (int w = 0; w < o->nrerank * o->nnprobe; w++) {
		int r = w / o->nnprobe, np = o->nprobe[w % o->nnprobe];
		double ot, p50, p99;
		store_stats st;
		store *s = open_pq(o, o->serve, o->rerank[r], np, &ot);
		store_get_stats(s, &st);
		if (w == 0)
			printf("after open: %ld MB anonymous, %ld MB of mapped "
			       "files\n", status_kb("RssAnon") / 1024,
			       status_kb("RssFile") / 1024);
		serve(s, o, q, got, &p50, &p99);       /* warm */
		serve(s, o, q, got, &p50, &p99);
		long anon = status_kb("RssAnon"), file = status_kb("RssFile");
		double rec = recall10(got, truth, nq);
		double res = (double)(anon + file) / 1024;
		char nps[16] = "default";
		if (np)
			snprintf(nps, sizeof(nps), "%d", np);
		printf("%s, nprobe %s, re-rank %3d x k: open %.1f s; top-10 "
		       "p50 %.2f ms, p99 %.2f ms; recall@10 %.3f; resident %.0f "
		       "MB (%.0f anonymous, %.0f of mapped files)  (targets: "
		       "p50 < 20 ms at recall >= 0.95: %s; < 3 GB: %s)\n",
		       st.index_kind, nps, o->rerank[r], ot, p50 * 1e3,
		       p99 * 1e3, rec, res, (double)anon / 1024,
		       (double)file / 1024,
		       p50 < 0.020 && rec >= 0.95 ? "met" : "NOT met",
		       res < 3072 ? "met" : "NOT met");
		fflush(stdout);
		store_close(s);
	}
	free(q);
	free(truth);
	free(got);
}

static int
parse_list(const char *v, int *out, int max)
{
	int n = 0;
	for (const char *p = v; *p && n < max;) {
		char *end;
		long x = strtol(p, &end, 10);
		if (end == p || x < 0)
			return -1;
		out[n++] = (int)x;
		p = *end == ',' ? end + 1 : end;
		if (*end && *end != ',')
			return -1;
	}
	return n;
}

static void
usage(void)
{
	fprintf(stderr, "usage: store_large [--n N] [--first N] [--dim D] "
		"[--clusters C] [--queries Q] [--rerank 1,10,200] "
		"[--nprobe 0,32,64] [--keep] | --serve DIR ..."
		"[--threads T] [--dir DIR]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	opts o = { .n = 10000000, .first = 1000000, .dim = 512,
		   .clusters = 3000, .queries = 100, .threads = 2,
		   .rerank = { 1, 10, 200 }, .nrerank = 3,
		   .nprobe = { 0, 32, 64 }, .nnprobe = 3, .dir = "/tmp" };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v && strcmp(a, "--keep") != 0)
			usage();
		i++;
		if (strcmp(a, "--n") == 0)
			o.n = strtoull(v, NULL, 10);
		else if (strcmp(a, "--first") == 0)
			o.first = strtoull(v, NULL, 10);
		else if (strcmp(a, "--dim") == 0)
			o.dim = atoi(v);
		else if (strcmp(a, "--clusters") == 0)
			o.clusters = atoi(v);
		else if (strcmp(a, "--queries") == 0)
			o.queries = atoi(v);
		else if (strcmp(a, "--threads") == 0)
			o.threads = atoi(v);
		else if (strcmp(a, "--dir") == 0)
			o.dir = v;
		else if (strcmp(a, "--serve") == 0)
			o.serve = v;
		else if (strcmp(a, "--keep") == 0) {
			o.keep = 1;
			i--;
		}
		else if (strcmp(a, "--rerank") == 0) {
			if ((o.nrerank = parse_list(v, o.rerank, 8)) <= 0)
				usage();
		} else if (strcmp(a, "--nprobe") == 0) {
			if ((o.nnprobe = parse_list(v, o.nprobe, 8)) <= 0)
				usage();
		} else
			usage();
	}
	o.n -= o.n % BATCH;
	o.first -= o.first % BATCH;
	if (o.n < BATCH || o.first < BATCH || o.first > o.n || o.dim < 8 ||
	    o.dim > STORE_DIM_MAX || o.clusters < 1 || o.queries < 1 ||
	    o.threads < 1)
		usage();
	openblas_set_num_threads(o.threads);
	omp_set_num_threads(o.threads);
	if (o.serve)
		serve_all(&o);
	else
		run(&o);
	return 0;
}
