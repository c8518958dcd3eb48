/*
 * bench_store.h - what bench/store_bench.c and bench/store_large.c share
 * (header-only, static): a clock, a seeded generator, clustered unit
 * vectors (a mixture of nc clusters of varying spread: uniform vectors
 * have no neighbours), resident memory, percentiles, top-10 timing and
 * recall through the store.
 */
#ifndef BENCH_STORE_H
#define BENCH_STORE_H

#include <malloc.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store.h"

static inline double
now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static inline uint64_t
rnd(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static inline float
unif(uint64_t *s)
{
	return (float)((double)(rnd(s) >> 11) / 9007199254740992.0);
}

static inline float
gauss(uint64_t *s)
{
	float u = unif(s), v = unif(s);
	if (u < 1e-30f)
		u = 1e-30f;
	return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static inline void
normalise(float *v, int d)
{
	double s = 0;
	for (int i = 0; i < d; i++)
		s += (double)v[i] * v[i];
	float inv = (float)(1.0 / sqrt(s));
	for (int i = 0; i < d; i++)
		v[i] *= inv;
}

/* A mixture of nc clusters of varying spread; centres from a fixed seed. */
typedef struct mixture {
	int d, nc;
	float *cent, *spread;
} mixture;

static inline void
mixture_init(mixture *m, int d, int nc)
{
	uint64_t s = 12345;
	m->d = d;
	m->nc = nc;
	m->cent = malloc((size_t)nc * d * sizeof(float));
	m->spread = malloc((size_t)nc * sizeof(float));
	for (int c = 0; c < nc; c++) {
		for (int i = 0; i < d; i++)
			m->cent[(size_t)c * d + i] = gauss(&s);
		normalise(m->cent + (size_t)c * d, d);
		/* Noise norm 0.3..1.2 around a unit centre. */
		m->spread[c] = 0.3f + 0.9f * unif(&s);
	}
}

static inline void
mixture_draw(const mixture *m, float *out, size_t n, uint64_t seed)
{
	uint64_t s = seed | 1;
	int d = m->d;
	for (size_t j = 0; j < n; j++) {
		int c = (int)(rnd(&s) % (uint64_t)m->nc);
		float sc = m->spread[c] / sqrtf((float)d);
		float *v = out + j * d;
		for (int i = 0; i < d; i++)
			v[i] = m->cent[(size_t)c * d + i] + sc * gauss(&s);
		normalise(v, d);
	}
}

/* The figure of a "Key: N kB" line of /proc/self/status, or -1. */
static inline long
status_kb(const char *key)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	size_t n = strlen(key);
	long kb = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, n) == 0 && line[n] == ':' &&
		    sscanf(line + n + 1, "%ld", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* Anonymous resident memory in kB, counting what is in use, not what
 * malloc kept. */
static inline long
rss_anon_kb(void)
{
	malloc_trim(0);
	return status_kb("RssAnon");
}

static inline int
dbl_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static inline void
pctl(double *t, int n, double *p50, double *p99)
{
	qsort(t, (size_t)n, sizeof(double), dbl_cmp);
	*p50 = t[n / 2];
	int i = (int)ceil(0.99 * n) - 1;
	*p99 = t[i < 0 ? 0 : i];
}

static inline void
rmrf(const char *dir)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

static inline _Noreturn void
die(const char *what, int rc, const cdx_error *e)
{
	fprintf(stderr, "%s: %s: %s\n", what, cdx_strerror(rc),
		e ? e->msg : "");
	exit(1);
}

/* Times top-10 store searches; fills ids (nq x 10). */
static inline void
time_store(store *s, const float *q, int nq, int d, uint64_t *ids, double *p50,
	   double *p99)
{
	double *t = malloc((size_t)nq * sizeof(double));
	cdx_error e;
	for (int i = 0; i < nq; i++) {
		store_results *r;
		double t0 = now();
		int rc = store_search(s, q + (size_t)i * d, 10, NULL, &r, &e);
		t[i] = now() - t0;
		if (rc)
			die("store_search", rc, &e);
		for (int j = 0; j < 10; j++)
			ids[i * 10 + j] = j < (int)r->n ? r->hits[j].id : 0;
		store_results_free(r);
	}
	pctl(t, nq, p50, p99);
	free(t);
}

static inline double
recall10(const uint64_t *got, const uint64_t *truth, int nq)
{
	int hit = 0;
	for (int i = 0; i < nq; i++)
		for (int a = 0; a < 10; a++)
			for (int b = 0; b < 10; b++)
				hit += got[i * 10 + a] == truth[i * 10 + b] &&
				       truth[i * 10 + b];
	return (double)hit / (10.0 * nq);
}

/* Opens (or creates) the bench store in dir; nprobe, ef, rerank 0: the
 * store's defaults.  *secs, when given: how long the open took. */
static inline store *
bench_open(const char *dir, int dim, const char *model, const char *kind,
	   int nprobe, int ef, int rerank, double *secs)
{
	store_params p = store_default_params();
	store *s;
	cdx_error e;
	p.dim = dim;
	p.model_id = model;
	p.index_kind = kind;
	p.ivf_nprobe = nprobe;
	p.hnsw_ef_search = ef;
	p.rerank = rerank;
	p.map_size = (size_t)4 << 30;
	double t0 = now();
	int rc = store_open(dir, &p, &s, &e);
	if (rc)
		die("store_open", rc, &e);
	if (secs)
		*secs = now() - t0;
	return s;
}

#endif
