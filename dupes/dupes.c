/*
 * dupes.c - exact, near-duplicate and similar-shot groups (dupes.h), and
 * the cache of the last grouping.
 *
 * Near groups: the pairs of stored embeddings at least T similar (scored
 * in SGEMM tiles, all pairs or within k-means clusters) join their images
 * in a union-find, so the groups are the connected components of the "at
 * least T similar" graph.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cblas.h>
#include <xxhash.h>

#include "common/vec.h"
#include "dupes/dupes.h"

/* What the keeper rule and the grouping need of one image. */
typedef struct img_info {
	uint64_t id;
	int64_t size;
	int64_t capture;
	uint32_t width, height;
	uint32_t path_len;
	uint8_t hash[STORE_HASH_LEN];
} img_info;

typedef struct collect {
	img_info *v;
	float *x;               /* n x dim embeddings, when wanted */
	int dim;
	size_t n, cap;
	const char *prefix;     /* as store_path_has_prefix() */
} collect;

static double
mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

const char *
dupes_reason_name(int reason)
{
	switch (reason) {
	case DUPES_BY_RESOLUTION: return "largest resolution";
	case DUPES_BY_SIZE: return "largest file";
	case DUPES_BY_CAPTURE: return "earliest capture time";
	case DUPES_BY_PATH: return "shortest path";
	default: return "lowest id";
	}
}

const char *
dupes_kind_name(int kind)
{
	switch (kind) {
	case DUPES_EXACT: return "exact";
	case DUPES_NEAR: return "near";
	default: return "similar";
	}
}

/* < 0 when a is the better copy; *reason gets the deciding rule. */
static int
info_cmp(const img_info *a, const img_info *b, int *reason)
{
	uint64_t pa = (uint64_t)a->width * a->height;
	uint64_t pb = (uint64_t)b->width * b->height;
	int r, c;

	if (pa != pb) {
		r = DUPES_BY_RESOLUTION;
		c = pa > pb ? -1 : 1;
	} else if (a->size != b->size) {
		r = DUPES_BY_SIZE;
		c = a->size > b->size ? -1 : 1;
	} else if (a->capture != b->capture) {
		/* Unknown (INT64_MIN) sorts last. */
		r = DUPES_BY_CAPTURE;
		if (a->capture == STORE_TIME_UNKNOWN)
			c = 1;
		else if (b->capture == STORE_TIME_UNKNOWN)
			c = -1;
		else
			c = a->capture < b->capture ? -1 : 1;
	} else if (a->path_len != b->path_len) {
		r = DUPES_BY_PATH;
		c = a->path_len < b->path_len ? -1 : 1;
	} else {
		r = DUPES_BY_ID;
		c = a->id < b->id ? -1 : a->id > b->id;
	}
	if (reason != NULL)
		*reason = r;
	return c;
}

static void
info_of(const store_image *img, img_info *o)
{
	o->id = img->id;
	o->size = img->size;
	o->capture = img->capture_time;
	o->width = img->width;
	o->height = img->height;
	o->path_len = (uint32_t)strlen(img->path);
	memcpy(o->hash, img->hash, STORE_HASH_LEN);
}

int
dupes_keeper_cmp(const store_image *a, const store_image *b, int *reason)
{
	img_info ia, ib;
	info_of(a, &ia);
	info_of(b, &ib);
	return info_cmp(&ia, &ib, reason);
}

static int
collect_fn(void *user, const store_image *img)
{
	collect *c = user;
	if (img->kind == STORE_KIND_FRAME ||
	    !store_path_has_prefix(img->path, strlen(img->path), c->prefix))
		return 0;       /* frames: dupes_clips (clips.c) */
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 1024;
		img_info *v = realloc(c->v, cap * sizeof(*v));
		if (v == NULL)
			return CDX_ENOMEM;
		c->v = v;
		if (c->dim > 0) {
			float *x = realloc(c->x, cap * (size_t)c->dim * sizeof(float));
			if (x == NULL)
				return CDX_ENOMEM;
			c->x = x;
		}
		c->cap = cap;
	}
	if (c->dim > 0)
		memcpy(c->x + c->n * (size_t)c->dim, img->embedding,
		    sizeof(float) * (size_t)c->dim);
	info_of(img, &c->v[c->n++]);
	return 0;
}

/* ---- union-find ---- */

static uint32_t
uf_find(uint32_t *p, uint32_t x)
{
	while (p[x] != x) {
		p[x] = p[p[x]];
		x = p[x];
	}
	return x;
}

static void
uf_union(uint32_t *p, uint32_t a, uint32_t b)
{
	a = uf_find(p, a);
	b = uf_find(p, b);
	if (a == b)
		return;
	/* The smaller index becomes the root: deterministic. */
	if (a < b)
		p[b] = a;
	else
		p[a] = b;
}

/* ---- default thresholds ---- */

float
dupes_default_threshold(int family, int kind)
{
	/* SigLIP and SigLIP2 take CLIP's values until they are calibrated
	 * on trained weights (docs/DUPES.md: none could be had where this
	 * was written; dupes_bench --skip-scale --model DIR does it). */
	(void)family;
	return kind == DUPES_SIMILAR ? DUPES_SIMILAR_DEFAULT :
	    DUPES_NEAR_DEFAULT;
}

/* ---- all pairs above a threshold ----
 *
 * Similarities come from SGEMM tiles (OpenBLAS), never an n x n matrix:
 * up to DUPES_EXACT_MAX images every pair is scored (exact); above, the
 * vectors are clustered (spherical k-means on a sample, about sqrt(n)
 * clusters) and each image is compared with the images that have its
 * cluster among their DUPES_SOFT nearest centroids (approximate: a pair
 * is missed only when neither image's own cluster is among the other's
 * nearest ones, which is rare for pairs this similar). */

#define DUPES_SOFT 3
#define DUPES_TILE 1024

typedef struct linker {
	uint32_t *uf, *near;
	float thr, near_thr;
} linker;

/* Joins (qi[a], ci[b]) for every entry of the na x nb similarity tile
 * at least thr (the pair once: qi[a] < ci[b]). */
static void
link_tile(linker *L, const float *S, size_t na, size_t nb,
    const uint32_t *qi, const uint32_t *ci)
{
	for (size_t a = 0; a < na; a++) {
		const float *row = S + a * nb;
		for (size_t b = 0; b < nb; b++) {
			if (row[b] < L->thr || qi[a] >= ci[b])
				continue;
			uf_union(L->uf, qi[a], ci[b]);
			if (L->near != NULL && row[b] >= L->near_thr)
				uf_union(L->near, qi[a], ci[b]);
		}
	}
}

/* S = A (na x d) * B (nb x d)^T */
static void
gemm_nt(const float *A, size_t na, const float *B, size_t nb, int d,
    float *S)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)na, (int)nb, d,
	    1.0f, A, d, B, d, 0.0f, S, (int)nb);
}

static int
link_exact(linker *L, const float *X, size_t n, int d, cdx_error *err)
{
	float *S = malloc(sizeof(float) * DUPES_TILE * DUPES_TILE);
	uint32_t *idx = malloc(sizeof(uint32_t) * (n ? n : 1));
	if (S == NULL || idx == NULL) {
		free(S);
		free(idx);
		return cdx_error_set(err, CDX_ENOMEM, "dupes: out of memory");
	}
	for (size_t i = 0; i < n; i++)
		idx[i] = (uint32_t)i;
	for (size_t i0 = 0; i0 < n; i0 += DUPES_TILE) {
		size_t na = n - i0 < DUPES_TILE ? n - i0 : DUPES_TILE;
		for (size_t j0 = i0; j0 < n; j0 += DUPES_TILE) {
			size_t nb = n - j0 < DUPES_TILE ? n - j0 : DUPES_TILE;
			gemm_nt(X + i0 * d, na, X + j0 * d, nb, d, S);
			link_tile(L, S, na, nb, idx + i0, idx + j0);
		}
	}
	free(S);
	free(idx);
	return 0;
}

/* Index of the largest of v[0..n), and the top `m` into top[]. */
static void
top_m(const float *v, size_t n, int m, uint32_t *top)
{
	float best[DUPES_SOFT];
	for (int k = 0; k < m; k++) {
		best[k] = -INFINITY;
		top[k] = 0;
	}
	for (size_t i = 0; i < n; i++) {
		if (v[i] <= best[m - 1])
			continue;
		int k = m - 1;
		while (k > 0 && v[i] > best[k - 1]) {
			best[k] = best[k - 1];
			top[k] = top[k - 1];
			k--;
		}
		best[k] = v[i];
		top[k] = (uint32_t)i;
	}
}

static void
normalise_rows(float *C, size_t n, int d)
{
	for (size_t c = 0; c < n; c++) {
		double s = 0;
		for (int k = 0; k < d; k++)
			s += (double)C[c * d + k] * C[c * d + k];
		if (s > 0)
			for (int k = 0; k < d; k++)
				C[c * d + k] = (float)(C[c * d + k] / sqrt(s));
	}
}

static int
link_clustered(linker *L, const float *X, size_t n, int d, cdx_error *err)
{
	size_t nl = 64;
	while (nl * nl < n && nl < 4096)
		nl *= 2;
	size_t ns = n < 32 * nl ? n : 32 * nl;     /* training sample */
	const size_t blk = 4096;
	float *C = malloc(sizeof(float) * nl * (size_t)d);
	float *acc = malloc(sizeof(float) * nl * (size_t)d);
	float *S = malloc(sizeof(float) * blk * nl);
	uint32_t *asg = malloc(sizeof(uint32_t) * n * DUPES_SOFT);
	size_t *cnt = calloc(nl + 1, sizeof(size_t));
	size_t *soft = calloc(nl + 1, sizeof(size_t));
	uint32_t *plist = malloc(sizeof(uint32_t) * n);
	uint32_t *slist = malloc(sizeof(uint32_t) * n * DUPES_SOFT);
	float *Q = NULL, *Cd = NULL, *T = NULL;
	uint64_t rs = 0x9e3779b97f4a7c15ULL;
	int rc = 0;

	if (!C || !acc || !S || !asg || !cnt || !soft || !plist || !slist) {
		rc = cdx_error_set(err, CDX_ENOMEM, "dupes: out of memory");
		goto out_free;
	}
	/* Spherical k-means on a strided sample, seeded with sample points. */
	size_t stride = n / ns;
	for (size_t c = 0; c < nl; c++)
		memcpy(C + c * d, X + (c * (ns / nl)) * stride * d,
		    sizeof(float) * (size_t)d);
	for (int it = 0; it < 6; it++) {
		memset(acc, 0, sizeof(float) * nl * (size_t)d);
		memset(cnt, 0, sizeof(size_t) * (nl + 1));
		for (size_t i0 = 0; i0 < ns; i0 += blk) {
			size_t nb = ns - i0 < blk ? ns - i0 : blk;
			/* The sample is every stride-th vector: gather a block. */
			float *B = malloc(sizeof(float) * nb * (size_t)d);
			if (B == NULL) {
				rc = cdx_error_set(err, CDX_ENOMEM, "dupes: out of memory");
				goto out_free;
			}
			for (size_t j = 0; j < nb; j++)
				memcpy(B + j * d, X + (i0 + j) * stride * d,
				    sizeof(float) * (size_t)d);
			gemm_nt(B, nb, C, nl, d, S);
			for (size_t j = 0; j < nb; j++) {
				uint32_t t;
				top_m(S + j * nl, nl, 1, &t);
				cnt[t]++;
				for (int k = 0; k < d; k++)
					acc[(size_t)t * d + k] += B[j * d + k];
			}
			free(B);
		}
		for (size_t c = 0; c < nl; c++) {
			if (cnt[c] == 0) {      /* empty: reseed from a random point */
				rs = rs * 6364136223846793005ULL + 1;
				memcpy(acc + c * d, X + ((rs >> 17) % n) * d,
				    sizeof(float) * (size_t)d);
			}
		}
		memcpy(C, acc, sizeof(float) * nl * (size_t)d);
		normalise_rows(C, nl, d);
	}
	/* Every vector's DUPES_SOFT nearest centroids; the first is its own. */
	memset(cnt, 0, sizeof(size_t) * (nl + 1));
	for (size_t i0 = 0; i0 < n; i0 += blk) {
		size_t nb = n - i0 < blk ? n - i0 : blk;
		gemm_nt(X + i0 * d, nb, C, nl, d, S);
		for (size_t j = 0; j < nb; j++) {
			uint32_t *t = asg + (i0 + j) * DUPES_SOFT;
			top_m(S + j * nl, nl, DUPES_SOFT, t);
			cnt[t[0] + 1]++;
			for (int k = 0; k < DUPES_SOFT; k++)
				soft[t[k] + 1]++;
		}
	}
	for (size_t c = 0; c < nl; c++) {
		cnt[c + 1] += cnt[c];
		soft[c + 1] += soft[c];
	}
	{
		size_t *pp = malloc(sizeof(size_t) * nl), *sp = malloc(sizeof(size_t)
		    * nl);
		if (pp == NULL || sp == NULL) {
			free(pp);
			free(sp);
			rc = cdx_error_set(err, CDX_ENOMEM, "dupes: out of memory");
			goto out_free;
		}
		memcpy(pp, cnt, sizeof(size_t) * nl);
		memcpy(sp, soft, sizeof(size_t) * nl);
		for (size_t i = 0; i < n; i++) {
			const uint32_t *t = asg + i * DUPES_SOFT;
			plist[pp[t[0]]++] = (uint32_t)i;
			for (int k = 0; k < DUPES_SOFT; k++)
				slist[sp[t[k]]++] = (uint32_t)i;
		}
		free(pp);
		free(sp);
	}
	/* Per cluster: its own images against every image near it. */
	size_t maxp = 0, maxs = 0;
	for (size_t c = 0; c < nl; c++) {
		if (cnt[c + 1] - cnt[c] > maxp)
			maxp = cnt[c + 1] - cnt[c];
		if (soft[c + 1] - soft[c] > maxs)
			maxs = soft[c + 1] - soft[c];
	}
	size_t qb = maxp < DUPES_TILE ? maxp : DUPES_TILE;
	Q = malloc(sizeof(float) * (qb ? qb : 1) * (size_t)d);
	Cd = malloc(sizeof(float) * (maxs ? maxs : 1) * (size_t)d);
	T = malloc(sizeof(float) * (qb ? qb : 1) * (maxs ? maxs : 1));
	if (Q == NULL || Cd == NULL || T == NULL) {
		rc = cdx_error_set(err, CDX_ENOMEM, "dupes: out of memory");
		goto out_free;
	}
	for (size_t c = 0; c < nl; c++) {
		size_t np = cnt[c + 1] - cnt[c], nsft = soft[c + 1] - soft[c];
		const uint32_t *pi = plist + cnt[c], *si = slist + soft[c];
		if (np == 0 || nsft < 2)
			continue;
		for (size_t j = 0; j < nsft; j++)
			memcpy(Cd + j * d, X + (size_t)si[j] * d, sizeof(float) *
			    (size_t)d);
		for (size_t a0 = 0; a0 < np; a0 += qb) {
			size_t na = np - a0 < qb ? np - a0 : qb;
			for (size_t j = 0; j < na; j++)
				memcpy(Q + j * d, X + (size_t)pi[a0 + j] * d,
				    sizeof(float) * (size_t)d);
			gemm_nt(Q, na, Cd, nsft, d, T);
			/* link_tile joins each pair once (qi < ci); the pair is
			 * also seen from the other side when that image's own
			 * cluster is the other's neighbour: take both orders. */
			for (size_t a = 0; a < na; a++) {
				const float *row = T + a * nsft;
				for (size_t b = 0; b < nsft; b++) {
					if (row[b] < L->thr || pi[a0 + a] == si[b])
						continue;
					uf_union(L->uf, pi[a0 + a], si[b]);
					if (L->near != NULL && row[b] >= L->near_thr)
						uf_union(L->near, pi[a0 + a], si[b]);
				}
			}
		}
	}
out_free:
	free(C);
	free(acc);
	free(S);
	free(asg);
	free(cnt);
	free(soft);
	free(plist);
	free(slist);
	free(Q);
	free(Cd);
	free(T);
	return rc;
}

static int
hash_cmp(const img_info *v, uint32_t a, uint32_t b)
{
	return memcmp(v[a].hash, v[b].hash, STORE_HASH_LEN);
}

typedef struct group_desc {
	size_t start, size;     /* in the unsorted member arrays */
	uint32_t min_idx;
	uint8_t reason;
} group_desc;

static int
group_desc_cmp(const void *pa, const void *pb)
{
	const group_desc *a = pa, *b = pb;
	if (a->size != b->size)
		return a->size > b->size ? -1 : 1;
	return a->min_idx < b->min_idx ? -1 : a->min_idx > b->min_idx;
}

typedef struct member {
	uint64_t id;
	float score;
} member;

static int
member_cmp(const void *pa, const void *pb)
{
	const member *a = pa, *b = pb;
	if (a->score != b->score)
		return a->score > b->score ? -1 : 1;
	return a->id < b->id ? -1 : a->id > b->id;
}

/* Growable output: members and group descriptors. */
typedef struct builder {
	member *m;
	size_t nm, capm;
	group_desc *g;
	size_t ng, capg;
} builder;

/* Adds the group of image indices idx[0..cnt) (cnt >= 2): picks the
 * keeper and, unless exact, scores the members against it. */
static int
add_group(store *s, const img_info *v, const uint32_t *idx, size_t cnt,
    int exact, int dim, builder *b, cdx_error *err)
{
	size_t best = 0, second = SIZE_MAX;
	uint32_t min_idx = idx[0];
	int reason = DUPES_BY_ID, rc = 0;

	for (size_t i = 1; i < cnt; i++) {
		if (idx[i] < min_idx)
			min_idx = idx[i];
		if (info_cmp(&v[idx[i]], &v[idx[best]], NULL) < 0) {
			second = best;
			best = i;
		} else if (second == SIZE_MAX ||
		    info_cmp(&v[idx[i]], &v[idx[second]], NULL) < 0) {
			second = i;
		}
	}
	info_cmp(&v[idx[best]], &v[idx[second]], &reason);
	if (b->nm + cnt > b->capm) {
		size_t cap = (b->capm ? b->capm * 2 : 256) + cnt;
		member *m = realloc(b->m, cap * sizeof(*m));
		if (m == NULL)
			return cdx_error_set(err, CDX_ENOMEM, "dupes: out of memory");
		b->m = m;
		b->capm = cap;
	}
	if (b->ng == b->capg) {
		size_t cap = b->capg ? b->capg * 2 : 64;
		group_desc *g = realloc(b->g, cap * sizeof(*g));
		if (g == NULL)
			return cdx_error_set(err, CDX_ENOMEM, "dupes: out of memory");
		b->g = g;
		b->capg = cap;
	}
	member *out = b->m + b->nm;
	store_image *keep = NULL;
	if (!exact) {
		rc = store_image_get(s, v[idx[best]].id, &keep, err);
		if (rc == CDX_ENOTFOUND)
			return 0;       /* deleted meanwhile: skip the group */
		if (rc != 0)
			return rc;
	}
	out[0].id = v[idx[best]].id;
	out[0].score = 1.0f;
	size_t k = 1;
	for (size_t i = 0; i < cnt; i++) {
		if (i == best)
			continue;
		out[k].id = v[idx[i]].id;
		out[k].score = 1.0f;
		if (!exact) {
			store_image *img = NULL;
			int r = store_image_get(s, out[k].id, &img, err);
			if (r == CDX_ENOTFOUND)
				continue;
			if (r != 0) {
				store_image_free(keep);
				return r;
			}
			double d = cdx_vec_dot(keep->embedding, img->embedding, dim);
			out[k].score = (float)(d > 1 ? 1 : d);
			store_image_free(img);
		}
		k++;
	}
	store_image_free(keep);
	if (k < 2)
		return 0;
	qsort(out + 1, k - 1, sizeof(*out), member_cmp);
	b->g[b->ng].start = b->nm;
	b->g[b->ng].size = k;
	b->g[b->ng].min_idx = min_idx;
	b->g[b->ng].reason = (uint8_t)reason;
	b->ng++;
	b->nm += k;
	return 0;
}

/* Sorting indices by hash needs the info array: a thread-unsafe global
 * would do for qsort, so a small merge sort is used instead. */
static void
sort_by_hash(const img_info *v, uint32_t *a, uint32_t *tmp, size_t n)
{
	if (n < 2)
		return;
	size_t h = n / 2;
	sort_by_hash(v, a, tmp, h);
	sort_by_hash(v, a + h, tmp, n - h);
	size_t i = 0, j = h, k = 0;
	while (i < h && j < n)
		tmp[k++] = hash_cmp(v, a[j], a[i]) < 0 ? a[j++] : a[i++];
	while (i < h)
		tmp[k++] = a[i++];
	while (j < n)
		tmp[k++] = a[j++];
	memcpy(a, tmp, n * sizeof(*a));
}

/* Number of distinct hashes among idx[0..cnt) is at least 2? */
static int
has_two_hashes(const img_info *v, const uint32_t *idx, size_t cnt)
{
	for (size_t i = 1; i < cnt; i++)
		if (hash_cmp(v, idx[0], idx[i]) != 0)
			return 1;
	return 0;
}

static int
has_two_roots(uint32_t *near, const uint32_t *idx, size_t cnt)
{
	uint32_t r0 = uf_find(near, idx[0]);
	for (size_t i = 1; i < cnt; i++)
		if (uf_find(near, idx[i]) != r0)
			return 1;
	return 0;
}

int
dupes_find(store *s, const dupes_params *p, dupes_result **out,
    cdx_error *err)
{
	double t0 = mono_now();
	collect c = { 0 };
	builder b = { 0 };
	uint32_t *uf = NULL, *near = NULL, *order = NULL, *tmp = NULL;
	float thr = p->threshold, near_thr = p->near_threshold;
	uint64_t seq = store_seq(s);
	int rc;

	if (p->kind < DUPES_EXACT || p->kind > DUPES_SIMILAR || p->dim <= 0)
		return cdx_error_set(err, CDX_EINVAL, "dupes: bad kind or dim");
	if (thr == 0)
		thr = dupes_default_threshold(p->family, p->kind == DUPES_SIMILAR ?
		    DUPES_SIMILAR : DUPES_NEAR);
	if (near_thr == 0)
		near_thr = dupes_default_threshold(p->family, DUPES_NEAR);
	if (!(thr > 0 && thr <= 1) || !(near_thr > 0 && near_thr <= 1))
		return cdx_error_set(err, CDX_EINVAL, "dupes: the threshold must be "
		    "in (0, 1]");
	c.prefix = p->path_prefix;
	c.dim = p->kind == DUPES_EXACT ? 0 : p->dim;
	if ((rc = store_image_foreach(s, collect_fn, &c, err)) != 0) {
		if (rc == CDX_ENOMEM)
			cdx_error_set(err, rc, "dupes: out of memory");
		goto out_free;
	}
	size_t n = c.n;
	order = malloc((n ? n : 1) * sizeof(*order));
	tmp = malloc((n ? n : 1) * sizeof(*tmp));
	if (order == NULL || tmp == NULL) {
		rc = cdx_error_set(err, CDX_ENOMEM, "dupes: out of memory");
		goto out_free;
	}
	if (p->kind == DUPES_EXACT) {
		for (size_t i = 0; i < n; i++)
			order[i] = (uint32_t)i;
		sort_by_hash(c.v, order, tmp, n);
		for (size_t i = 0; i < n;) {
			size_t j = i + 1;
			while (j < n && hash_cmp(c.v, order[i], order[j]) == 0)
				j++;
			if (j - i >= 2 && (rc = add_group(s, c.v, order + i, j - i, 1,
			    p->dim, &b, err)) != 0)
				goto out_free;
			i = j;
		}
	} else {
		uf = malloc((n ? n : 1) * sizeof(*uf));
		if (p->kind == DUPES_SIMILAR)
			near = malloc((n ? n : 1) * sizeof(*near));
		if (uf == NULL || (p->kind == DUPES_SIMILAR && near == NULL)) {
			rc = cdx_error_set(err, CDX_ENOMEM, "dupes: out of memory");
			goto out_free;
		}
		for (size_t i = 0; i < n; i++) {
			uf[i] = (uint32_t)i;
			if (near != NULL)
				near[i] = (uint32_t)i;
		}
		linker L = { uf, near, thr, near_thr };
		int all = p->method == DUPES_ALL_PAIRS || n < 2 || (p->method ==
		    DUPES_AUTO && n <= DUPES_EXACT_MAX);
		rc = all ?
		    link_exact(&L, c.x, n, p->dim, err) :
		    link_clustered(&L, c.x, n, p->dim, err);
		if (rc != 0)
			goto out_free;
		/* Members of each root, in index (= id) order: counting sort. */
		for (size_t i = 0; i < n; i++)
			tmp[i] = 0;
		for (size_t i = 0; i < n; i++)
			tmp[uf_find(uf, (uint32_t)i)]++;
		size_t acc = 0;
		for (size_t i = 0; i < n; i++) {
			size_t cnt = tmp[i];
			tmp[i] = (uint32_t)acc;
			acc += cnt;
		}
		for (size_t i = 0; i < n; i++)
			order[tmp[uf_find(uf, (uint32_t)i)]++] = (uint32_t)i;
		for (size_t i = 0; i < n;) {
			uint32_t r = uf_find(uf, order[i]);
			size_t j = i + 1;
			while (j < n && uf_find(uf, order[j]) == r)
				j++;
			size_t cnt = j - i;
			int keep = cnt >= 2 && has_two_hashes(c.v, order + i, cnt);
			if (keep && near != NULL)
				keep = has_two_roots(near, order + i, cnt);
			if (keep && (rc = add_group(s, c.v, order + i, cnt, 0, p->dim,
			    &b, err)) != 0)
				goto out_free;
			i = j;
		}
	}
	if (b.ng > 1)
		qsort(b.g, b.ng, sizeof(*b.g), group_desc_cmp);

	size_t tot = sizeof(dupes_result) + (b.ng + 1) * sizeof(size_t) +
	    b.nm * (sizeof(uint64_t) + sizeof(float)) + b.ng;
	dupes_result *r = malloc(tot);
	if (r == NULL) {
		rc = cdx_error_set(err, CDX_ENOMEM, "dupes: out of memory");
		goto out_free;
	}
	r->kind = p->kind;
	r->threshold = p->kind == DUPES_EXACT ? 1.0f : thr;
	r->seq = seq;
	r->n_groups = b.ng;
	r->n_images = n;
	r->lims = (size_t *)(r + 1);
	r->ids = (uint64_t *)(r->lims + b.ng + 1);
	r->scores = (float *)(r->ids + b.nm);
	r->reasons = (uint8_t *)(r->scores + b.nm);
	r->lims[0] = 0;
	for (size_t g = 0; g < b.ng; g++) {
		size_t o = r->lims[g];
		for (size_t k = 0; k < b.g[g].size; k++) {
			r->ids[o + k] = b.m[b.g[g].start + k].id;
			r->scores[o + k] = b.m[b.g[g].start + k].score;
		}
		r->lims[g + 1] = o + b.g[g].size;
		r->reasons[g] = b.g[g].reason;
	}
	r->seconds = mono_now() - t0;
	*out = r;
	rc = 0;
out_free:
	free(c.v);
	free(c.x);
	free(b.m);
	free(b.g);
	free(uf);
	free(near);
	free(order);
	free(tmp);
	return rc;
}

void
dupes_result_free(dupes_result *r)
{
	free(r);
}

/* ---- the cache ---- */

/* One grouping and the request it answers.  refs: results handed out and
 * not yet released. */
typedef struct centry {
	struct centry *next;
	int kind;
	float thr, near_thr;
	char *prefix;
	dupes_result *r;
	int refs;
} centry;

struct dupes_cache {
	store *st;
	pthread_mutex_t mu;
	centry *cur;            /* the most recent grouping, or NULL */
	centry *old;            /* replaced ones still in use */
};

static void
centry_free(centry *e)
{
	if (e == NULL)
		return;
	dupes_result_free(e->r);
	free(e->prefix);
	free(e);
}

int
dupes_cache_new(store *s, dupes_cache **out, cdx_error *err)
{
	dupes_cache *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return cdx_error_set(err, CDX_ENOMEM, "dupes: out of memory");
	c->st = s;
	pthread_mutex_init(&c->mu, NULL);
	*out = c;
	return 0;
}

void
dupes_cache_free(dupes_cache *c)
{
	if (c == NULL)
		return;
	centry_free(c->cur);
	while (c->old != NULL) {
		centry *e = c->old;
		c->old = e->next;
		centry_free(e);
	}
	pthread_mutex_destroy(&c->mu);
	free(c);
}

int
dupes_cache_find(dupes_cache *c, const dupes_params *p,
    const dupes_result **out, int *computed, cdx_error *err)
{
	const char *prefix = p->path_prefix ? p->path_prefix : "";
	centry *e = NULL;
	int rc;

	pthread_mutex_lock(&c->mu);
	if (c->cur != NULL && c->cur->kind == p->kind &&
	    c->cur->thr == p->threshold && c->cur->near_thr ==
	    p->near_threshold && strcmp(c->cur->prefix, prefix) == 0 &&
	    c->cur->r->seq == store_seq(c->st)) {
		c->cur->refs++;
		*out = c->cur->r;
		pthread_mutex_unlock(&c->mu);
		if (computed != NULL)
			*computed = 0;
		return 0;
	}
	pthread_mutex_unlock(&c->mu);

	if ((e = calloc(1, sizeof(*e))) == NULL ||
	    (e->prefix = strdup(prefix)) == NULL) {
		centry_free(e);
		return cdx_error_set(err, CDX_ENOMEM, "dupes: out of memory");
	}
	if ((rc = dupes_find(c->st, p, &e->r, err)) != 0) {
		centry_free(e);
		return rc;
	}
	e->kind = p->kind;
	e->thr = p->threshold;
	e->near_thr = p->near_threshold;
	e->refs = 1;
	pthread_mutex_lock(&c->mu);
	if (c->cur != NULL && c->cur->refs > 0) {
		c->cur->next = c->old;
		c->old = c->cur;
	} else {
		centry_free(c->cur);
	}
	c->cur = e;
	pthread_mutex_unlock(&c->mu);
	*out = e->r;
	if (computed != NULL)
		*computed = 1;
	return 0;
}

void
dupes_cache_release(dupes_cache *c, const dupes_result *r)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&c->mu);
	if (c->cur != NULL && c->cur->r == r) {
		c->cur->refs--;
	} else {
		for (centry **pe = &c->old; *pe != NULL; pe = &(*pe)->next) {
			centry *e = *pe;
			if (e->r != r)
				continue;
			if (--e->refs == 0) {
				*pe = e->next;
				centry_free(e);
			}
			break;
		}
	}
	pthread_mutex_unlock(&c->mu);
}
