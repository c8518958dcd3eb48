/*
 * merge.c - the asker's half of a scatter-gather: the shards' answers
 * merged into one ranking (cluster.h, clu_merge), for a daemon and for
 * libclipdex alike.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
/* header-only: libclipdex links this module and needs no libxxhash */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "cluster/cluster.h"

typedef struct merged {
	const cJSON *hit;       /* borrowed from its shard's answer */
	double score;
	const char *shard, *path;
	double id, time;        /* time: a frame's in its clip, else -1 */
} merged;

/* Whether h is the first of its path and time in the open-addressing set
 * seen (cap a power of two, over twice the entries); adds it. */
static int
first_of_path(const merged **seen, size_t cap, const merged *h)
{
	/* the answers come from the network: a wild time hashes as 0 */
	double ms = h->time * 1000;
	uint64_t k = XXH3_64bits_withSeed(h->path, strlen(h->path),
	    isfinite(ms) && fabs(ms) < 9e15 ? (uint64_t)(int64_t)ms : 0);
	for (size_t i = (size_t)k & (cap - 1);; i = (i + 1) & (cap - 1)) {
		if (seen[i] == NULL) {
			seen[i] = h;
			return 1;
		}
		if (seen[i]->time == h->time &&
		    strcmp(seen[i]->path, h->path) == 0)
			return 0;
	}
}

static int
merged_cmp(const void *a, const void *b)
{
	const merged *x = a, *y = b;
	if (x->score != y->score)
		return x->score < y->score ? 1 : -1;
	int c = strcmp(x->shard, y->shard);
	return c ? c : (x->id > y->id) - (x->id < y->id);
}

/* Appends the hits of one answer to *m; 0, or -1 when out of memory. */
static int
collect(const cJSON *answer, const char *shard, merged **m, size_t *n,
    size_t *cap)
{
	const cJSON *h;
	cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(answer,
	    "hits")) {
		const cJSON *sc = cJSON_GetObjectItemCaseSensitive(h, "score");
		const cJSON *p = cJSON_GetObjectItemCaseSensitive(h, "path");
		const cJSON *tm = cJSON_GetObjectItemCaseSensitive(h, "time");
		if (!cJSON_IsNumber(sc) || !cJSON_IsString(p))
			continue;
		if (*n == *cap) {
			size_t nc = *cap ? 2 * *cap : 64;
			merged *nm = realloc(*m, nc * sizeof(**m));
			if (nm == NULL)
				return -1;
			*m = nm;
			*cap = nc;
		}
		(*m)[(*n)++] = (merged){ h, sc->valuedouble, shard,
		    p->valuestring, cJSON_GetNumberValue(
			cJSON_GetObjectItemCaseSensitive(h, "id")),
		    cJSON_IsNumber(tm) ? tm->valuedouble : -1.0 };
	}
	return 0;
}

/* Whether the hit passes the cut-offs. */
static int
passes(const merged *h, const clu_merge_opts *o)
{
	if (o->has_min_score && h->score < o->min_score)
		return 0;
	const cJSON *pr = cJSON_GetObjectItemCaseSensitive(h->hit, "prob");
	return !(o->has_min_prob && cJSON_IsNumber(pr) &&
	    pr->valuedouble < o->min_prob);
}

cJSON *
clu_merge_opts_json(const clu_merge_opts *o)
{
	cJSON *m = cJSON_CreateObject();
	if (m == NULL || !cJSON_AddNumberToObject(m, "k", (double)o->k) ||
	    !cJSON_AddNumberToObject(m, "offset", (double)o->offset) ||
	    (o->has_min_score && !cJSON_AddNumberToObject(m, "min_score",
	    o->min_score)) ||
	    (o->has_min_prob && !cJSON_AddNumberToObject(m, "min_prob",
	    o->min_prob))) {
		cJSON_Delete(m);
		return NULL;
	}
	return m;
}

int
clu_merge_opts_parse(const cJSON *j, clu_merge_opts *o)
{
	const cJSON *k = cJSON_GetObjectItemCaseSensitive(j, "k");
	const cJSON *off = cJSON_GetObjectItemCaseSensitive(j, "offset");
	const cJSON *ms = cJSON_GetObjectItemCaseSensitive(j, "min_score");
	const cJSON *mp = cJSON_GetObjectItemCaseSensitive(j, "min_prob");
	if (!cJSON_IsNumber(k) || !cJSON_IsNumber(off) || k->valuedouble < 1 ||
	    off->valuedouble < 0)
		return -1;
	*o = (clu_merge_opts){ .k = (long)k->valuedouble,
	    .offset = (long)off->valuedouble,
	    .has_min_score = cJSON_IsNumber(ms),
	    .min_score = cJSON_IsNumber(ms) ? ms->valuedouble : 0,
	    .has_min_prob = cJSON_IsNumber(mp),
	    .min_prob = cJSON_IsNumber(mp) ? mp->valuedouble : 0 };
	return 0;
}

int
clu_merge(const clu_gather *g, const clu_merge_opts *o, cJSON **out,
    cdx_error *err)
{
	cJSON **answers = NULL, *r = NULL;
	const merged **seen = NULL;
	merged *m = NULL;
	size_t nm = 0, cap = 0;
	double images = 0;
	int rc = 0;

	if (g->n + g->n_missing == 0)
		return cdx_error_set(err, CDX_EBUSY, "no shard has joined "
		    "(start clipdexd --shard NAME with the same --nats)");
	if ((answers = calloc(g->n ? g->n : 1, sizeof(*answers))) == NULL)
		goto oom;
	for (size_t i = 0; i < g->n; i++) {
		answers[i] = cJSON_Parse(g->bodies[i]);
		const cJSON *e = cJSON_GetObjectItemCaseSensitive(answers[i],
		    "error");
		if (cJSON_IsString(e)) {
			rc = cdx_error_set(err, CDX_EINVAL, "shard %s: %s",
			    g->shards[i], e->valuestring);
			goto out;
		}
		images += cJSON_GetNumberValue(
		    cJSON_GetObjectItemCaseSensitive(answers[i], "images"));
		if (collect(answers[i], g->shards[i], &m, &nm, &cap) != 0)
			goto oom;
	}
	if (nm > 1)
		qsort(m, nm, sizeof(*m), merged_cmp);
	/* a record being handed over answers from two shards: its path
	 * (and frame time) counts once, the better first */
	size_t hcap = 16;
	while (hcap < 2 * nm)
		hcap *= 2;
	if ((seen = calloc(hcap, sizeof(*seen))) == NULL ||
	    (r = cJSON_CreateObject()) == NULL)
		goto oom;
	cJSON *arr = cJSON_AddArrayToObject(r, "results");
	long rank = 0;
	for (size_t i = 0; arr && i < nm && rank < o->offset + o->k; i++) {
		if (!first_of_path(seen, hcap, &m[i]) || !passes(&m[i], o))
			continue;
		if (rank++ < o->offset)
			continue;
		cJSON *h = cJSON_Duplicate(m[i].hit, 1);
		if (h == NULL || !cJSON_AddItemToArray(arr, h)) {
			cJSON_Delete(h);
			goto oom;
		}
		cJSON_AddStringToObject(h, "shard", m[i].shard);
	}
	cJSON *miss = cJSON_CreateArray();
	for (size_t i = 0; miss && i < g->n_missing; i++)
		cJSON_AddItemToArray(miss, cJSON_CreateString(g->missing[i]));
	if (arr == NULL || miss == NULL ||
	    !cJSON_AddNumberToObject(r, "shards", (double)(g->n +
	    g->n_missing)) ||
	    !cJSON_AddNumberToObject(r, "images", images) ||
	    !cJSON_AddBoolToObject(r, "partial", g->n_missing > 0) ||
	    !cJSON_AddItemToObject(r, "missing", miss)) {
		cJSON_Delete(miss);
		goto oom;
	}
	*out = r;
	r = NULL;
	goto out;
oom:
	rc = cdx_error_set(err, CDX_ENOMEM, "out of memory");
out:
	cJSON_Delete(r);
	free(seen);
	for (size_t i = 0; answers && i < g->n; i++)
		cJSON_Delete(answers[i]);
	free(answers);
	free(m);
	return rc;
}
