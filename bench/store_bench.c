/*
 * store_bench - figures of the store on clustered 512-d vectors.
 *
 *   build/bench/store_bench [--sizes 100000,1000000] [--dim 512]
 *       [--clusters 3000] [--queries 200] [--hnsw-max 100000]
 *       [--kinds flat,ivf,hnsw,ivfpq] [--threads 2] [--dir /tmp]
 *       [--nprobe 16,64] [--ef 64,256]   (extra IVF/HNSW settings to sweep)
 *
 * For each size: insert throughput (batches of 1000, one LMDB transaction
 * each), exact top-10 latency p50/p99 through the store, raw FAISS
 * IndexFlatIP on the same vectors (its own kernel, and through BLAS), the
 * memory-bandwidth floor (bytes scanned / a read rate measured here), the
 * time to rebuild the exact index from LMDB, the record table's bytes per
 * image (binary16, schema 4) beside the same records in float32 (schema
 * 3's layout, written to a scratch LMDB) and the stored embeddings' cosine
 * to the float32 ones, then for IVF and HNSW: build
 * time, latency and recall@10 against exact.  Targets are printed beside
 * the figures.  See docs/STORE.md.
 */
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <sys/stat.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/utils/distances_c.h>

#include <lmdb.h>

#include "common/vec.h"
#include "store/faiss_ext.h"
#include "store/internal.h"
#include "store/store.h"

#include "bench/bench_store.h"

extern void openblas_set_num_threads(int n);
extern void omp_set_num_threads(int n);

/* Memory read rate in bytes/s: best of a few passes over buf, read by
 * `threads` threads at once, each summing its slice with 32-byte AVX2
 * loads (64-bit words without AVX2), so memory, not the adds, bounds it. */
typedef struct rd_arg {
	const uint64_t *p;
	size_t n;
	uint64_t sum;
} rd_arg;

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* 32-byte loads, four independent accumulators. */
__attribute__((target("avx2"))) static uint64_t
rd_avx2(const uint64_t *p, size_t n)
{
	__m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		s0 = _mm256_add_epi64(s0, _mm256_loadu_si256((const __m256i *)(p + i)));
		s1 = _mm256_add_epi64(s1, _mm256_loadu_si256((const __m256i *)(p + i + 4)));
		s2 = _mm256_add_epi64(s2, _mm256_loadu_si256((const __m256i *)(p + i + 8)));
		s3 = _mm256_add_epi64(s3, _mm256_loadu_si256((const __m256i *)(p + i + 12)));
	}
	s0 = _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3));
	uint64_t out[4];
	_mm256_storeu_si256((__m256i *)out, s0);
	uint64_t r = out[0] + out[1] + out[2] + out[3];
	for (; i < n; i++)
		r += p[i];
	return r;
}
#define HAVE_RD_AVX2 1
#endif

static void *
rd_thread(void *arg)
{
	rd_arg *a = arg;
#ifdef HAVE_RD_AVX2
	if (__builtin_cpu_supports("avx2")) {
		a->sum = rd_avx2(a->p, a->n);
		return NULL;
	}
#endif
	uint64_t s[8] = { 0 };
	size_t i = 0;
	for (; i + 8 <= a->n; i += 8)
		for (int j = 0; j < 8; j++)
			s[j] += a->p[i + j];
	for (; i < a->n; i++)
		s[0] += a->p[i];
	a->sum = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
	return NULL;
}

static double
read_rate(const float *buf, size_t nfloat, int threads)
{
	double best = 0;
	size_t nw = nfloat / 2;
	pthread_t th[64];
	rd_arg a[64];
	if (threads > 64)
		threads = 64;
	for (int r = 0; r < 7; r++) {
		double t0 = now();
		for (int t = 0; t < threads; t++) {
			size_t lo = nw * (size_t)t / (size_t)threads;
			size_t hi = nw * (size_t)(t + 1) / (size_t)threads;
			a[t].p = (const uint64_t *)buf + lo;
			a[t].n = hi - lo;
			pthread_create(&th[t], NULL, rd_thread, &a[t]);
		}
		for (int t = 0; t < threads; t++)
			pthread_join(th[t], NULL);
		double dt = now() - t0;
		double rate = (double)nw * 8 / dt;
		if (rate > best)
			best = rate;
	}
	return best;
}

typedef struct opts {
	size_t sizes[8];
	int nsizes, dim, clusters, queries, threads;
	size_t hnsw_max;
	int do_ivf, do_hnsw, do_ivfpq;
	const char *dir;
	int nprobe[8], nnprobe, ef[8], nef; /* sweeps after the default */
} opts;

static store *
open_kind_p(const opts *o, const char *dir, const char *kind, int nprobe,
	    int ef, double *secs)
{
	return bench_open(dir, o->dim, "bench@0", kind, nprobe, ef, 0, secs);
}

static store *
open_kind(const opts *o, const char *dir, const char *kind, double *secs)
{
	return open_kind_p(o, dir, kind, 0, 0, secs);
}

/* Bytes of LMDB pages per entry in table `name` (NULL: the main one) of
 * the environment in dir. */
static double
table_bytes(const char *dir, const char *name)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_stat st;
	if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 16) ||
	    mdb_env_open(env, dir, MDB_NOTLS | MDB_RDONLY, 0600) ||
	    mdb_txn_begin(env, NULL, MDB_RDONLY, &txn))
		die("table_bytes: cannot open LMDB", CDX_ESTORE, NULL);
	if (mdb_dbi_open(txn, name, 0, &dbi) || mdb_stat(txn, dbi, &st))
		die("table_bytes: no such table", CDX_ESTORE, NULL);
	double b = (double)(st.ms_branch_pages + st.ms_leaf_pages +
			    st.ms_overflow_pages) * st.ms_psize /
		   (double)(st.ms_entries ? st.ms_entries : 1);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return b;
}

struct cos_acc {
	const float *x;
	int d;
	double min, sum;
	size_t n;
};

/* The stored embedding's cosine with the float32 vector it came from
 * (x, found by the path's number). */
static int
cos_visit(void *user, const store_image *img)
{
	struct cos_acc *a = user;
	const char *slash = strrchr(img->path, '/');
	size_t i = strtoull(slash + 1, NULL, 10);
	const float *v = a->x + i * (size_t)a->d;
	double dot = cdx_vec_dot(img->embedding, v, a->d);
	double c = dot / sqrt(cdx_vec_dot(img->embedding, img->embedding,
					  a->d) * cdx_vec_dot(v, v, a->d));
	a->min = c < a->min ? c : a->min;
	a->sum += c;
	a->n++;
	return 0;
}

/* The record table in binary16 (the store in dir) against the same
 * records in float32, written to a scratch LMDB as schema 3 laid them
 * out; and the stored vectors' cosine to x. */
static void
compact_figures(store *s, const char *dir, const float *x, size_t n, int d)
{
	char raw[600];
	cdx_error e;
	snprintf(raw, sizeof(raw), "%s.f32", dir);
	rmrf(raw);
	if (mkdir(raw, 0700))
		die("mkdir", CDX_EIO, NULL);
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	size_t vsz = sizeof(rec_hdr) + (size_t)d * 4 + 64;
	unsigned char *buf = calloc(1, vsz);
	if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 4) ||
	    mdb_env_set_mapsize(env, (size_t)n * 8192 + ((size_t)64 << 20)) ||
	    mdb_env_open(env, raw, MDB_NOTLS, 0600))
		die("scratch LMDB", CDX_ESTORE, NULL);
	for (size_t i = 0; i < n; i += 1000) {
		if (mdb_txn_begin(env, NULL, 0, &txn) ||
		    mdb_dbi_open(txn, "rec", MDB_CREATE | MDB_INTEGERKEY, &dbi))
			die("scratch LMDB", CDX_ESTORE, NULL);
		for (size_t j = i; j < n && j < i + 1000; j++) {
			rec_hdr h = { .magic = REC_MAGIC, .dim = (uint32_t)d,
				      .id = j + 1 };
			char path[40];
			h.path_len = (uint32_t)snprintf(path, sizeof(path),
				"/bench/%02zu/%09zu.jpg", j % 100, j);
			memcpy(buf, &h, sizeof(h));
			memcpy(buf + sizeof(h), x + j * (size_t)d,
			       (size_t)d * 4);
			memcpy(buf + sizeof(h) + (size_t)d * 4, path,
			       h.path_len);
			uint64_t id = j + 1;
			MDB_val k = { sizeof(id), &id };
			MDB_val v = { sizeof(h) + (size_t)d * 4 + h.path_len,
				      buf };
			if (mdb_put(txn, dbi, &k, &v, MDB_APPEND))
				die("scratch LMDB put", CDX_ESTORE, NULL);
		}
		if (mdb_txn_commit(txn))
			die("scratch LMDB commit", CDX_ESTORE, NULL);
	}
	mdb_env_close(env);
	free(buf);
	double b16 = table_bytes(dir, "rec"), b32 = table_bytes(raw, "rec");
	rmrf(raw);
	struct cos_acc a = { x, d, 1, 0, 0 };
	int rc = store_image_foreach(s, cos_visit, &a, &e);
	if (rc)
		die("store_image_foreach", rc, &e);
	printf("record table: %.0f bytes per image in binary16 (schema 4), "
	       "%.0f in float32 (schema 3's layout): %.2fx smaller; stored "
	       "vectors' cosine to float32: min %.9f, mean %.9f over %zu "
	       "(target >= 0.99999: %s)\n",
	       b16, b32, b32 / b16, a.min, a.sum / (double)(a.n ? a.n : 1),
	       a.n, a.min >= 0.99999 ? "met" : "NOT met");
	fflush(stdout);
}

static void ivf_scans(FaissIndex *idx, const float *q, int nq, int d);

static void
run_size(const opts *o, const mixture *m, size_t n)
{
	int d = o->dim, nq = o->queries;
	char dir[512];
	cdx_error e;
	double p50, p99;
	snprintf(dir, sizeof(dir), "%s/cdx_store_bench_%ld", o->dir,
		 (long)getpid());
	rmrf(dir);
	printf("\n--- %zu vectors, dim %d, %d clusters, %d threads ---\n", n, d,
	       m->nc, o->threads);
	fflush(stdout);

	float *x = malloc(n * (size_t)d * sizeof(float));
	float *q = malloc((size_t)nq * d * sizeof(float));
	uint64_t *truth = calloc((size_t)nq * 10, sizeof(uint64_t));
	uint64_t *got = calloc((size_t)nq * 10, sizeof(uint64_t));
	if (!x || !q || !truth || !got)
		die("out of memory", CDX_ENOMEM, NULL);
	double t0 = now();
	mixture_draw(m, x, n, 1000 + n);
	mixture_draw(m, q, (size_t)nq, 7);
	printf("generated in %.1f s\n", now() - t0);

	/* Memory read rate, over (up to) 256 MB of the vectors. */
	size_t nf = n * (size_t)d;
	if (nf > (size_t)64 << 20)
		nf = (size_t)64 << 20;
	double rate = read_rate(x, nf, o->threads);
	double bytes = (double)n * d * 4;
	double floor_ms = bytes / rate * 1e3;
	printf("memory read rate %.1f GB/s (%d threads summing 256 MB): "
	       "bandwidth floor of one exact query %.2f ms (%.0f MB)\n",
	       rate / 1e9, o->threads, floor_ms, bytes / 1e6);

	/* Insert. */
	store *s = open_kind(o, dir, "flat", NULL);
	store_image *imgs = calloc(1000, sizeof(*imgs));
	char (*paths)[40] = calloc(1000, 40);
	t0 = now();
	for (size_t i = 0; i < n; i += 1000) {
		size_t b = n - i < 1000 ? n - i : 1000;
		for (size_t j = 0; j < b; j++) {
			snprintf(paths[j], 40, "/bench/%02zu/%09zu.jpg",
				 (i + j) % 100, i + j);
			imgs[j].path = paths[j];
			imgs[j].embedding = x + (i + j) * d;
			imgs[j].capture_time = (int64_t)(i + j);
			imgs[j].mtime_ns = (int64_t)(i + j) * 1000000000;
			imgs[j].size = 1000;
		}
		int rc = store_image_put(s, imgs, b, &e);
		if (rc)
			die("store_image_put", rc, &e);
	}
	double ins = now() - t0;
	printf("insert: %.0f images/s (%zu in %.1f s, batches of 1000, "
	       "exact index)\n",
	       (double)n / ins, n, ins);
	free(paths);
	free(imgs);
	compact_figures(s, dir, x, n, d);

	/* Exact through the store. */
	time_store(s, q, nq, d, truth, &p50, &p99);
	printf("store flat top-10: p50 %.2f ms, p99 %.2f ms  "
	       "(target p50 <= 1.3 x floor = %.2f ms: %s)\n",
	       p50 * 1e3, p99 * 1e3, 1.3 * floor_ms,
	       p50 * 1e3 <= 1.3 * floor_ms ? "met" : "NOT met");
	{
		store_filter f = { .path_prefix = "/bench/07/" };
		store_filter ft = { .time_field = STORE_TIME_CAPTURE, .time_min = 0, .time_max = (int64_t)n / 2 };
		double *t = malloc((size_t)nq * sizeof(double));
		for (int pass = 0; pass < 2; pass++) {
			for (int i = 0; i < nq; i++) {
				store_results *r;
				double a = now();
				int rc = store_search(s, q + (size_t)i * d, 10,
						      pass ? &ft : &f, &r, &e);
				t[i] = now() - a;
				if (rc)
					die("store_search", rc, &e);
				store_results_free(r);
			}
			pctl(t, nq, &p50, &p99);
			printf("store flat top-10 with %s: p50 %.2f ms, p99 "
			       "%.2f ms\n",
			       pass ? "time filter (50%)" : "path prefix (1%)",
			       p50 * 1e3, p99 * 1e3);
		}
		free(t);
	}
	long rss0 = rss_anon_kb();
	double rb = now();
	int rc = store_index_rebuild(s, &e);
	if (rc)
		die("rebuild", rc, &e);
	rb = now() - rb;
	printf("rebuild exact index from LMDB: %.2f s  (target < 60 s for "
	       "1M: %s)\n",
	       rb, rb * 1e6 / (double)n < 60 ? "on track" : "NOT met");
	store_close(s);
	(void)rss0;

	/* Memory: reopen (index loaded from its file) and measure. */
	long a0 = rss_anon_kb();
	double ot;
	s = open_kind(o, dir, "flat", &ot);
	long a1 = rss_anon_kb();
	printf("reopen with saved exact index: %.2f s; anonymous memory "
	       "%.0f MB per million vectors (raw vectors: %.0f MB)\n",
	       ot, (double)(a1 - a0) / 1024.0 * 1e6 / (double)n,
	       (double)d * 4);
	store_close(s);

	/* Raw FAISS IndexFlatIP, same vectors. */
	{
		FaissIndex *fi;
		if (faiss_index_factory(&fi, d, "Flat", METRIC_INNER_PRODUCT) ||
		    faiss_Index_add(fi, (idx_t)n, x))
			die("raw faiss", CDX_EINDEX, NULL);
		float dis[10];
		idx_t lab[10];
		int nraw = nq < 20 ? nq : 20;
		double *t = malloc((size_t)nq * sizeof(double));
		int thr = faiss_get_distance_compute_blas_threshold();
		for (int mode = 0; mode < 2; mode++) {
			faiss_set_distance_compute_blas_threshold(mode ? 1 : 20);
			int cnt = nraw;
			for (int i = 0; i < cnt; i++) {
				double a = now();
				faiss_Index_search(fi, 1, q + (size_t)i * d, 10,
						   dis, lab);
				t[i] = now() - a;
			}
			pctl(t, cnt, &p50, &p99);
			printf("raw FAISS IndexFlatIP single query, %s: p50 "
			       "%.2f ms, p99 %.2f ms\n",
			       mode ? "through BLAS (threshold 1)"
				    : "own kernel (default threshold 20)",
			       p50 * 1e3, p99 * 1e3);
		}
		faiss_set_distance_compute_blas_threshold(thr);
		free(t);
		faiss_Index_free(fi);
	}

	/* Approximate kinds. */
	const char *kinds[3] = { "ivf", "hnsw", "ivfpq" };
	for (int k = 0; k < 3; k++) {
		if ((k == 0 && !o->do_ivf) || (k == 1 && !o->do_hnsw) ||
		    (k == 2 && !o->do_ivfpq))
			continue;
		if (k == 1 && n > o->hnsw_max) {
			printf("hnsw: skipped above --hnsw-max %zu\n",
			       o->hnsw_max);
			continue;
		}
		double bt;
		long m0 = rss_anon_kb();
		s = open_kind(o, dir, kinds[k], &bt);
		long m1 = rss_anon_kb();
		store_stats st;
		store_get_stats(s, &st);
		time_store(s, q, nq, d, got, &p50, &p99);
		double r = recall10(got, truth, nq);
		printf("%s (%s): build from LMDB %.1f s; top-10 p50 %.2f ms, "
		       "p99 %.2f ms; recall@10 %.3f; %.0f MB per million  "
		       "(target for 1M: < 5 ms at recall >= 0.95: %s)\n",
		       kinds[k], st.index_kind, bt, p50 * 1e3, p99 * 1e3, r,
		       (double)(m1 - m0) / 1024.0 * 1e6 / (double)n,
		       p50 * 1e3 < 5 && r >= 0.95 ? "met" : "NOT met");
		if (k == 0)
			ivf_scans(s->index, q, nq, d);
		fflush(stdout);
		store_close(s);
		int nsw = k != 1 ? o->nnprobe : o->nef;
		for (int w = 0; w < nsw; w++) {
			int v = k != 1 ? o->nprobe[w] : o->ef[w];
			s = open_kind_p(o, dir, kinds[k], k != 1 ? v : 0,
					k == 1 ? v : 0, NULL);
			time_store(s, q, nq, d, got, &p50, &p99);
			printf("  %s %d: p50 %.2f ms, p99 %.2f ms, "
			       "recall@10 %.3f\n",
			       k != 1 ? "nprobe" : "efSearch", v, p50 * 1e3,
			       p99 * 1e3, recall10(got, truth, nq));
			store_close(s);
		}
		char ip[600];
		struct stat sb;
		snprintf(ip, sizeof(ip), "%s/index.faiss", dir);
		if (stat(ip, &sb) == 0)
			printf("%s index file: %.0f MB per million vectors\n",
			       kinds[k],
			       (double)sb.st_size / 1e6 * 1e6 / (double)n);
	}
	free(x);
	free(q);
	free(truth);
	free(got);
	rmrf(dir);
}

/* The IVF-Flat index's top 10 for the same queries by FAISS's own search
 * and by the store's scan of the probed lists (OpenBLAS sgemv), timed
 * side by side, and how often the two agree. */
static void
ivf_scans(FaissIndex *idx, const float *q, int nq, int d)
{
	float dis[2][10];
	idx_t lab[2][10];
	double *t[2], p50[2], p99[2];
	int same = 0;
	t[0] = malloc((size_t)nq * sizeof(double));
	t[1] = malloc((size_t)nq * sizeof(double));
	for (int i = 0; i < nq; i++) {
		for (int w = 0; w < 2; w++) {
			const float *qi = q + (size_t)i * d;
			double a = now();
			int r = w ? cdx_faiss_ivf_flat_search(idx, qi, 10,
				dis[w], (int64_t *)lab[w])
				  : faiss_Index_search(idx, 1, qi, 10, dis[w],
				lab[w]);
			t[w][i] = now() - a;
			if (r == 1) {   /* too few images: a Flat index */
				free(t[0]);
				free(t[1]);
				return;
			}
			if (r != 0)
				die("ivf scan", CDX_EINDEX, NULL);
		}
		same += memcmp(lab[0], lab[1], sizeof(lab[0])) == 0;
	}
	for (int w = 0; w < 2; w++)
		pctl(t[w], nq, &p50[w], &p99[w]);
	printf("  IVF lists scanned by FAISS: p50 %.2f ms, p99 %.2f ms; by "
	       "OpenBLAS (the store's): p50 %.2f ms, p99 %.2f ms (%.1fx); "
	       "same top 10 in %d of %d queries\n", p50[0] * 1e3, p99[0] * 1e3,
	       p50[1] * 1e3, p99[1] * 1e3, p50[0] / p50[1], same, nq);
	free(t[0]);
	free(t[1]);
}

/* Whether the comma-separated list has the word w. */
static int
has_word(const char *list, const char *w)
{
	size_t n = strlen(w);
	for (const char *p = list; p; p = strchr(p, ',')) {
		p += *p == ',';
		if (strncmp(p, w, n) == 0 && (p[n] == ',' || p[n] == '\0'))
			return 1;
	}
	return 0;
}

static void
usage(void)
{
	fprintf(stderr,
		"usage: store_bench [--sizes N,N] [--dim D] [--clusters C] "
		"[--queries Q] [--hnsw-max N] [--kinds flat,ivf,hnsw,ivfpq] "
		"[--threads T] [--dir DIR] [--nprobe 8,16] [--ef 64,256]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	opts o = { .sizes = { 100000, 1000000 }, .nsizes = 2, .dim = 512,
		   .clusters = 3000, .queries = 200, .threads = 2,
		   .hnsw_max = 100000, .do_ivf = 1,
		   .do_hnsw = 1, .do_ivfpq = 1, .dir = "/tmp" };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			usage();
		i++;
		if (strcmp(a, "--sizes") == 0) {
			o.nsizes = 0;
			for (char *p = (char *)v; *p && o.nsizes < 8;) {
				o.sizes[o.nsizes++] = strtoull(p, &p, 10);
				if (*p == ',')
					p++;
			}
		} else if (strcmp(a, "--dim") == 0) {
			o.dim = atoi(v);
		} else if (strcmp(a, "--clusters") == 0) {
			o.clusters = atoi(v);
		} else if (strcmp(a, "--queries") == 0) {
			o.queries = atoi(v);
		} else if (strcmp(a, "--threads") == 0) {
			o.threads = atoi(v);
		} else if (strcmp(a, "--hnsw-max") == 0) {
			o.hnsw_max = strtoull(v, NULL, 10);
		} else if (strcmp(a, "--nprobe") == 0 || strcmp(a, "--ef") == 0) {
			int *arr = a[2] == 'n' ? o.nprobe : o.ef;
			int *cnt = a[2] == 'n' ? &o.nnprobe : &o.nef;
			*cnt = 0;
			for (char *p = (char *)v; *p && *cnt < 8;) {
				arr[(*cnt)++] = (int)strtol(p, &p, 10);
				if (*p == ',')
					p++;
				else if (*p)
					usage();
			}
		} else if (strcmp(a, "--dir") == 0) {
			o.dir = v;
		} else if (strcmp(a, "--kinds") == 0) {
			o.do_ivf = has_word(v, "ivf");
			o.do_hnsw = has_word(v, "hnsw");
			o.do_ivfpq = has_word(v, "ivfpq");
		} else {
			usage();
		}
	}
	if (o.dim < 1 || o.queries < 1 || o.clusters < 1 || o.threads < 1)
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	openblas_set_num_threads(o.threads);
	omp_set_num_threads(o.threads);
	mixture m;
	mixture_init(&m, o.dim, o.clusters);
	printf("store_bench: clustered vectors (mixture of %d clusters, noise "
	       "norm 0.3..1.2), queries from the same mixture\n",
	       o.clusters);
	for (int i = 0; i < o.nsizes; i++)
		run_size(&o, &m, o.sizes[i]);
	free(m.cent);
	free(m.spread);
	return 0;
}
