/*
 * clips.c - video clips compared by their frames (dupes_clips): the rule
 * is in dupes.h and docs/DUPES.md.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>

#include "dupes/dupes.h"

#define TILE 1024

/* One frame: its clip's path (shared by the clip's frames), time, id. */
typedef struct frame {
	char *path;
	uint64_t id;
	int64_t time_ms;
	uint8_t hash[STORE_HASH_LEN];
	uint32_t clip;          /* index into the clips, once sorted */
	uint32_t row;           /* its row in the embedding matrix */
} frame;

typedef struct gather {
	frame *f;
	float *x;
	size_t n, cap;
	int dim;
	const char *prefix;
	char *last;             /* the last path seen (frames of one clip
				   share one copy) */
} gather;

static int
gather_fn(void *user, const store_image *img)
{
	gather *g = user;
	if (img->kind != STORE_KIND_FRAME ||
	    !store_path_has_prefix(img->path, strlen(img->path), g->prefix))
		return 0;
	if (g->n == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 256;
		frame *f = realloc(g->f, cap * sizeof(*f));
		if (f == NULL)
			return CDX_ENOMEM;
		g->f = f;
		float *x = realloc(g->x, cap * (size_t)g->dim * sizeof(float));
		if (x == NULL)
			return CDX_ENOMEM;
		g->x = x;
		g->cap = cap;
	}
	frame *f = &g->f[g->n];
	memset(f, 0, sizeof(*f));
	f->path = strdup(img->path);
	if (f->path == NULL)
		return CDX_ENOMEM;
	f->id = img->id;
	f->time_ms = img->time_ms;
	memcpy(f->hash, img->hash, STORE_HASH_LEN);
	f->row = (uint32_t)g->n;
	memcpy(g->x + g->n * (size_t)g->dim, img->embedding,
	    sizeof(float) * (size_t)g->dim);
	g->n++;
	return 0;
}

static int
frame_cmp(const void *pa, const void *pb)
{
	const frame *a = pa, *b = pb;
	int c = strcmp(a->path, b->path);
	if (c != 0)
		return c;
	return a->time_ms < b->time_ms ? -1 : a->time_ms > b->time_ms;
}

/* A matching pair of frames (i in the earlier clip). */
typedef struct match {
	uint32_t i, j;          /* indices into the sorted frames */
	float sim;
} match;

static int
match_cmp(const void *pa, const void *pb, void *arg)
{
	const match *a = pa, *b = pb;
	const frame *f = arg;
	uint32_t ca = f[a->i].clip, cb = f[b->i].clip;
	if (ca != cb)
		return ca < cb ? -1 : 1;
	ca = f[a->j].clip;
	cb = f[b->j].clip;
	if (ca != cb)
		return ca < cb ? -1 : 1;
	return a->i != b->i ? (a->i < b->i ? -1 : 1) :
	    a->j != b->j ? (a->j < b->j ? -1 : 1) : 0;
}

static int
pair_cmp(const void *pa, const void *pb)
{
	const dupes_clip_pair *a = pa, *b = pb;
	if (a->relation != b->relation)
		return a->relation < b->relation ? -1 : 1;
	if (a->matched != b->matched)
		return a->matched > b->matched ? -1 : 1;
	int c = strcmp(a->a.path, b->a.path);
	return c != 0 ? c : strcmp(a->b.path, b->b.path);
}

const char *
dupes_clip_relation_name(int relation)
{
	switch (relation) {
	case DUPES_CLIP_EXACT: return "exact";
	case DUPES_CLIP_NEAR: return "near";
	case DUPES_CLIP_SHARES: return "shares";
	}
	return "unknown";
}

/* The longest in-order run of matches among ms[0..n) (one clip pair;
 * clip A's frames from a0, na of them, B's from b0): dynamic programming
 * over the na x nb match table.  *sum gets the similarities of one such
 * run, *first the first match of it. */
static int
lcs(const match *ms, size_t n, uint32_t a0, size_t na, uint32_t b0,
    size_t nb, float *sum, const match **first)
{
	float *sim = calloc(na * nb, sizeof(float));
	int *len = calloc((na + 1) * (nb + 1), sizeof(int));
	int best = -1;

	if (sim == NULL || len == NULL) {
		free(sim);
		free(len);
		return -1;
	}
	for (size_t k = 0; k < n; k++)
		sim[(ms[k].i - a0) * nb + (ms[k].j - b0)] = ms[k].sim;
	/* len[i][j]: the longest run within A[i..), B[j..). */
	for (size_t i = na; i-- > 0;)
		for (size_t j = nb; j-- > 0;) {
			int v = len[(i + 1) * (nb + 1) + j];
			int h = len[i * (nb + 1) + j + 1];
			int d = sim[i * nb + j] > 0 ?
			    1 + len[(i + 1) * (nb + 1) + j + 1] : 0;
			len[i * (nb + 1) + j] = d > v ? (d > h ? d : h) :
			    (v > h ? v : h);
		}
	best = len[0];
	/* Walk one run from the front, summing it. */
	*sum = 0;
	*first = NULL;
	for (size_t i = 0, j = 0; i < na && j < nb;) {
		int here = len[i * (nb + 1) + j];
		if (sim[i * nb + j] > 0 &&
		    here == 1 + len[(i + 1) * (nb + 1) + j + 1]) {
			*sum += sim[i * nb + j];
			if (*first == NULL)
				for (size_t k = 0; k < n; k++)
					if (ms[k].i - a0 == i && ms[k].j - b0 == j)
						*first = &ms[k];
			i++;
			j++;
		} else if (here == len[(i + 1) * (nb + 1) + j]) {
			i++;
		} else {
			j++;
		}
	}
	free(sim);
	free(len);
	return best;
}

int
dupes_clips(store *s, const dupes_clip_params *p, dupes_clip_result **out,
    cdx_error *err)
{
	gather g = { 0 };
	dupes_clip_result *r = NULL;
	match *ms = NULL;
	size_t nm = 0, cap_m = 0, n_clips = 0, cap_pairs = 0;
	uint32_t *start = NULL, *count = NULL;
	float *S = NULL, *X = NULL;
	int rc;

	if (s == NULL || p == NULL || out == NULL || p->dim < 1 ||
	    p->threshold < 0 || p->threshold > 1 || p->near_fraction < 0 ||
	    p->near_fraction > 1)
		return cdx_error_set(err, CDX_EINVAL, "dupes_clips: bad "
		    "parameters");
	float thr = p->threshold > 0 ? p->threshold :
	    dupes_default_threshold(p->family, DUPES_NEAR);
	float frac = p->near_fraction > 0 ? p->near_fraction :
	    DUPES_CLIP_NEAR_FRACTION;
	g.dim = p->dim;
	g.prefix = p->path_prefix;
	if ((rc = store_image_foreach(s, gather_fn, &g, err)) != 0) {
		if (rc == CDX_ENOMEM)
			cdx_error_set(err, rc, "dupes_clips: out of memory");
		goto out;
	}
	if (g.n > DUPES_EXACT_MAX) {
		rc = cdx_error_set(err, CDX_ETOOBIG, "dupes_clips: %zu frames, "
		    "at most %d are compared: narrow with a path prefix", g.n,
		    DUPES_EXACT_MAX);
		goto out;
	}
	if (g.n > 1)
		qsort(g.f, g.n, sizeof(*g.f), frame_cmp);
	/* Clips: runs of one path; the embeddings in sorted order. */
	start = malloc(sizeof(*start) * (g.n ? g.n : 1));
	count = malloc(sizeof(*count) * (g.n ? g.n : 1));
	X = malloc(sizeof(float) * (g.n ? g.n : 1) * (size_t)p->dim);
	if ((r = calloc(1, sizeof(*r))) == NULL || start == NULL ||
	    count == NULL || X == NULL ||
	    (r->paths = calloc(g.n ? g.n : 1, sizeof(char *))) == NULL) {
		rc = cdx_error_set(err, CDX_ENOMEM, "dupes_clips: out of memory");
		goto out;
	}
	for (size_t i = 0; i < g.n; i++) {
		if (i == 0 || strcmp(g.f[i].path, r->paths[n_clips - 1]) != 0) {
			r->paths[n_clips] = g.f[i].path;
			g.f[i].path = NULL;     /* owned by r now */
			start[n_clips] = (uint32_t)i;
			count[n_clips++] = 0;
		} else {
			free(g.f[i].path);
			g.f[i].path = NULL;
		}
		g.f[i].clip = (uint32_t)(n_clips - 1);
		count[n_clips - 1]++;
		memcpy(X + i * (size_t)p->dim, g.x + (size_t)g.f[i].row * p->dim,
		    sizeof(float) * (size_t)p->dim);
	}
	r->n_clips = n_clips;
	r->n_frames = g.n;
	r->threshold = thr;
	r->near_fraction = frac;
	/* Matching frames of different clips, all pairs in tiles. */
	if ((S = malloc(sizeof(float) * TILE * TILE)) == NULL) {
		rc = cdx_error_set(err, CDX_ENOMEM, "dupes_clips: out of memory");
		goto out;
	}
	for (size_t i0 = 0; i0 < g.n; i0 += TILE) {
		size_t na = g.n - i0 < TILE ? g.n - i0 : TILE;
		for (size_t j0 = i0; j0 < g.n; j0 += TILE) {
			size_t nb = g.n - j0 < TILE ? g.n - j0 : TILE;
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans,
			    (int)na, (int)nb, p->dim, 1.0f, X + i0 * p->dim,
			    p->dim, X + j0 * p->dim, p->dim, 0.0f, S, (int)nb);
			for (size_t a = 0; a < na; a++)
				for (size_t b = 0; b < nb; b++) {
					size_t i = i0 + a, j = j0 + b;
					if (S[a * nb + b] < thr ||
					    g.f[i].clip >= g.f[j].clip)
						continue;
					if (nm == cap_m) {
						size_t c = cap_m ? cap_m * 2 : 1024;
						match *m = realloc(ms, c * sizeof(*m));
						if (m == NULL) {
							rc = cdx_error_set(err, CDX_ENOMEM,
							    "dupes_clips: out of memory");
							goto out;
						}
						ms = m;
						cap_m = c;
					}
					ms[nm++] = (match){ (uint32_t)i, (uint32_t)j,
					    S[a * nb + b] };
				}
		}
	}
	if (nm > 1)
		qsort_r(ms, nm, sizeof(*ms), match_cmp, g.f);
	/* One pair of clips per run of matches. */
	for (size_t k = 0; k < nm;) {
		uint32_t ca = g.f[ms[k].i].clip, cb = g.f[ms[k].j].clip;
		size_t e = k;
		while (e < nm && g.f[ms[e].i].clip == ca &&
		    g.f[ms[e].j].clip == cb)
			e++;
		float sum;
		const match *first;
		int m = lcs(ms + k, e - k, start[ca], count[ca], start[cb],
		    count[cb], &sum, &first);
		if (m < 0) {
			rc = cdx_error_set(err, CDX_ENOMEM, "dupes_clips: out of "
			    "memory");
			goto out;
		}
		if (r->n_pairs == cap_pairs) {
			size_t c = cap_pairs ? cap_pairs * 2 : 16;
			dupes_clip_pair *pp = realloc(r->pairs, c * sizeof(*pp));
			if (pp == NULL) {
				rc = cdx_error_set(err, CDX_ENOMEM, "dupes_clips: out "
				    "of memory");
				goto out;
			}
			r->pairs = pp;
			cap_pairs = c;
		}
		dupes_clip_pair *q = &r->pairs[r->n_pairs++];
		int longer = count[ca] > count[cb] ? (int)count[ca] : (int)count[cb];
		q->relation = memcmp(g.f[start[ca]].hash, g.f[start[cb]].hash,
		    STORE_HASH_LEN) == 0 ? DUPES_CLIP_EXACT :
		    (float)m >= frac * (float)longer ? DUPES_CLIP_NEAR :
		    DUPES_CLIP_SHARES;
		q->matched = m;
		q->score = m > 0 ? sum / (float)m : 0;
		q->a = (dupes_clip_side){ r->paths[ca], (int)count[ca],
		    g.f[first->i].id, g.f[first->i].time_ms };
		q->b = (dupes_clip_side){ r->paths[cb], (int)count[cb],
		    g.f[first->j].id, g.f[first->j].time_ms };
		k = e;
	}
	if (r->n_pairs > 1)
		qsort(r->pairs, r->n_pairs, sizeof(*r->pairs), pair_cmp);
	*out = r;
	r = NULL;
	rc = 0;
out:
	for (size_t i = 0; i < g.n; i++)
		free(g.f[i].path);
	free(g.f);
	free(g.x);
	free(X);
	free(S);
	free(ms);
	free(start);
	free(count);
	dupes_clip_result_free(r);
	return rc;
}

void
dupes_clip_result_free(dupes_clip_result *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; r->paths != NULL && i < r->n_clips; i++)
		free(r->paths[i]);
	free(r->paths);
	free(r->pairs);
	free(r);
}
