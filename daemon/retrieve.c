/*
 * retrieve.c - the retrieve operation (docs/PROTOCOL.md): many prompts in
 * one request, per-prompt ranked results, de-duplicated within and across
 * prompts, returned as pages of one result stream.
 *
 * The stream (prompt, rank, id, score per result: 24 bytes each) is
 * computed once per distinct request and collection state and kept for the
 * following pages in the daemon's retrieve_cache (srv.retrieve); the pages
 * carry the image records.
 */
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "common/vec.h"
#include "daemon/srv_internal.h"

#define RETRIEVE_PROMPTS_MAX 1000
#define RETRIEVE_K_MAX 100000
#define RETRIEVE_LIMIT_MAX 1000

typedef struct entry {
	uint64_t id;
	float score;
	uint32_t prompt, rank;
} entry;

typedef struct stream {
	char *key;              /* the request without paging fields */
	uint64_t seq;
	size_t n, cap;
	entry *e;
} stream;

static void
stream_free(stream *s)
{
	if (s == NULL)
		return;
	free(s->key);
	free(s->e);
	free(s);
}

/* The last few streams, so that clients paging through different
 * requests at the same time do not evict each other at every page. */
#define RETRIEVE_CACHED 4
struct retrieve_cache {
	pthread_mutex_t mu;
	stream *v[RETRIEVE_CACHED];     /* [0]: most recent */
};

struct retrieve_cache *
retrieve_cache_new(void)
{
	struct retrieve_cache *rc = calloc(1, sizeof(*rc));
	if (rc == NULL)
		return NULL;
	pthread_mutex_init(&rc->mu, NULL);
	return rc;
}

void
retrieve_cache_free(struct retrieve_cache *rc)
{
	if (rc == NULL)
		return;
	for (int i = 0; i < RETRIEVE_CACHED; i++)
		stream_free(rc->v[i]);
	pthread_mutex_destroy(&rc->mu);
	free(rc);
}

/* Takes the matching stream out of the cache, or NULL. */
static stream *
cache_take(struct retrieve_cache *rc, uint64_t seq, const char *key)
{
	stream *r = NULL;
	pthread_mutex_lock(&rc->mu);
	for (int i = 0; i < RETRIEVE_CACHED && r == NULL; i++) {
		stream *c = rc->v[i];
		if (c != NULL && c->seq == seq && strcmp(c->key, key) == 0) {
			r = c;
			memmove(rc->v + i, rc->v + i + 1, sizeof(*rc->v) *
			    (size_t)(RETRIEVE_CACHED - 1 - i));
			rc->v[RETRIEVE_CACHED - 1] = NULL;
		}
	}
	pthread_mutex_unlock(&rc->mu);
	return r;
}

/* Puts s first, dropping the least recently used. */
static void
cache_put(struct retrieve_cache *rc, stream *s)
{
	pthread_mutex_lock(&rc->mu);
	stream_free(rc->v[RETRIEVE_CACHED - 1]);
	memmove(rc->v + 1, rc->v, sizeof(*rc->v) * (RETRIEVE_CACHED - 1));
	rc->v[0] = s;
	pthread_mutex_unlock(&rc->mu);
}

/* ---- a set of ids (open addressing, 0 is the empty slot) ---- */

typedef struct idset {
	uint64_t *v;
	size_t n, cap;          /* cap: a power of two */
} idset;

static size_t
id_slot(uint64_t id, size_t cap)
{
	id ^= id >> 33;
	id *= 0xff51afd7ed558ccdULL;
	id ^= id >> 33;
	return (size_t)id & (cap - 1);
}

static int
idset_has(const idset *s, uint64_t id)
{
	if (s->cap == 0)
		return 0;
	for (size_t i = id_slot(id, s->cap);; i = (i + 1) & (s->cap - 1)) {
		if (s->v[i] == id)
			return 1;
		if (s->v[i] == 0)
			return 0;
	}
}

static int
idset_add(idset *s, uint64_t id)
{
	if ((s->n + 1) * 2 > s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1024;
		uint64_t *v = calloc(cap, sizeof(*v));
		if (v == NULL)
			return CDX_ENOMEM;
		for (size_t i = 0; i < s->cap; i++) {
			if (s->v[i] == 0)
				continue;
			size_t j = id_slot(s->v[i], cap);
			while (v[j] != 0)
				j = (j + 1) & (cap - 1);
			v[j] = s->v[i];
		}
		free(s->v);
		s->v = v;
		s->cap = cap;
	}
	size_t i = id_slot(id, s->cap);
	while (s->v[i] != 0 && s->v[i] != id)
		i = (i + 1) & (s->cap - 1);
	if (s->v[i] == 0) {
		s->v[i] = id;
		s->n++;
	}
	return 0;
}

/* ---- request ---- */

typedef struct ropts {
	const cJSON *prompts, *negatives;
	double neg_weight;
	long k, offset, limit;
	int has_min;
	double min_score;
	double dedupe;
	int unique;
} ropts;

static int
parse_ropts(srv_call *c, ropts *o)
{
	const cJSON *u = cJSON_GetObjectItemCaseSensitive(c->req, "unique");
	memset(o, 0, sizeof(*o));
	o->neg_weight = 0.5;
	o->k = 10;
	o->limit = 500;
	o->unique = 1;
	o->prompts = cJSON_GetObjectItemCaseSensitive(c->req, "prompts");
	o->negatives = cJSON_GetObjectItemCaseSensitive(c->req, "negatives");
	if (!cJSON_IsArray(o->prompts) || cJSON_GetArraySize(o->prompts) == 0)
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "retrieve needs 'prompts', a "
		    "non-empty array");
	if (cJSON_GetArraySize(o->prompts) > RETRIEVE_PROMPTS_MAX)
		return srv_fail(c, CDX_PROTO_TOO_LARGE, "at most %d prompts",
		    RETRIEVE_PROMPTS_MAX);
	if (o->negatives != NULL && !cJSON_IsNull(o->negatives) &&
	    (!cJSON_IsArray(o->negatives) ||
	    cJSON_GetArraySize(o->negatives) > SRV_TERMS_MAX))
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'negatives' must be an array of "
		    "at most %d prompts", SRV_TERMS_MAX);
	if (u != NULL && !cJSON_IsNull(u)) {
		if (!cJSON_IsBool(u))
			return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'unique' must be a boolean");
		o->unique = cJSON_IsTrue(u);
	}
	if (srv_get_int(c, c->req, "k", 1, RETRIEVE_K_MAX, "the maximum is "
	    "100000", &o->k) != 0 ||
	    srv_get_int(c, c->req, "offset", 0, LONG_MAX, NULL, &o->offset) != 0 ||
	    srv_get_int(c, c->req, "limit", 1, RETRIEVE_LIMIT_MAX, "the maximum "
	    "is 1000", &o->limit) != 0 ||
	    srv_get_num(c, c->req, "min_score", -1, 1, &o->has_min,
	    &o->min_score) != 0 ||
	    srv_get_num(c, c->req, "dedupe", 1e-6, 1, NULL, &o->dedupe) != 0 ||
	    srv_get_num(c, c->req, "negative_weight", 0, 10, NULL,
	    &o->neg_weight) != 0)
		return -1;
	return 0;
}

/* A plain text prompt: a string, or an object whose only source is text. */
static const char *
prompt_text(const cJSON *p)
{
	if (cJSON_IsString(p))
		return p->valuestring;
	if (cJSON_IsObject(p) && cJSON_GetArraySize(p) == 1 &&
	    cJSON_IsString(cJSON_GetObjectItemCaseSensitive(p, "text")))
		return cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring;
	return NULL;
}

/* Embeds every element of arr into out (n x dim): the texts in one batch,
 * the others (images, paths, ids, terms) one by one as search queries. */
static int
embed_prompts(srv_call *c, const cJSON *arr, const char *what, float *out)
{
	srv *s = c->s;
	int dim = s->info->embed_dim, n = cJSON_GetArraySize(arr), nt = 0;
	size_t ctx = (size_t)s->info->context_len;
	int32_t *ids = malloc(sizeof(*ids) * ctx * (size_t)n);
	int *slot = malloc(sizeof(int) * (size_t)n);
	float *temb = malloc(sizeof(float) * (size_t)dim * (size_t)n);
	const cJSON *p;
	cdx_error err;
	int i = 0, rc = -1;

	if (ids == NULL || slot == NULL || temb == NULL) {
		srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
		goto out_free;
	}
	cJSON_ArrayForEach(p, arr) {
		const char *t = prompt_text(p);
		slot[i] = -1;
		if (t != NULL) {
			if (clip_tokenize(clip_model_tokenizer(s->model), t, strlen(t),
			    ids + (size_t)nt * ctx, NULL, &err) != 0) {
				srv_fail(c, CDX_PROTO_BAD_REQUEST, "%s %d: %s", what, i, err.msg);
				goto out_free;
			}
			slot[i] = nt++;
		} else if (!cJSON_IsObject(p)) {
			srv_fail(c, CDX_PROTO_BAD_REQUEST, "%s %d must be a string or an object",
			    what, i);
			goto out_free;
		}
		i++;
	}
	if (nt > 0 && (rc = clip_encode_text(c->w->ctx, ids, nt, temb, &err))
	    != 0) {
		rc = srv_fail_cdx(c, rc, &err);
		goto out_free;
	}
	i = 0;
	cJSON_ArrayForEach(p, arr) {
		float *dst = out + (size_t)i * dim;
		if (slot[i] >= 0) {
			memcpy(dst, temb + (size_t)slot[i] * dim, sizeof(float) *
			    (size_t)dim);
		} else {
			srv_call sub = *c;
			sub.req = (cJSON *)p;
			if (srv_query_vector(&sub, dst, NULL) != 0) {
				c->ecode = sub.ecode;
				snprintf(c->emsg, sizeof(c->emsg), "%s %d: %.280s", what,
				    i, sub.emsg);
				rc = -1;
				goto out_free;
			}
		}
		i++;
	}
	rc = 0;
out_free:
	free(ids);
	free(slot);
	free(temb);
	return rc;
}

static int
stream_push(stream *st, uint32_t prompt, uint32_t rank, uint64_t id,
    float score)
{
	if (st->n == st->cap) {
		size_t cap = st->cap ? st->cap * 2 : 256;
		entry *e = realloc(st->e, cap * sizeof(*e));
		if (e == NULL)
			return CDX_ENOMEM;
		st->e = e;
		st->cap = cap;
	}
	st->e[st->n++] = (entry){ id, score, prompt, rank };
	return 0;
}

/* The embeddings of the results kept so far (for dedupe). */
typedef struct kept_vecs {
	float *e;
	size_t n, cap;
	int dim;
} kept_vecs;

static int
kept_push(kept_vecs *k, const float *e)
{
	if (k->n == k->cap) {
		size_t cap = k->cap ? k->cap * 2 : 256;
		float *v = realloc(k->e, cap * (size_t)k->dim * sizeof(float));
		if (v == NULL)
			return CDX_ENOMEM;
		k->e = v;
		k->cap = cap;
	}
	memcpy(k->e + k->n * (size_t)k->dim, e, sizeof(float) * (size_t)k->dim);
	k->n++;
	return 0;
}

#define RETRIEVE_BATCH 256

/* One prompt's kept results, appended to st.  Candidates come from the
 * index best first; with dedupe they are compared (SGEMM) with every
 * result kept so far, then with the ones kept earlier in their batch. */
static int
run_prompt(srv_call *c, const ropts *o, uint32_t pi, const float *q,
    idset *kept, kept_vecs *kv, stream *st, cdx_error *err)
{
	int dim = c->s->info->embed_dim;
	size_t fetch = (size_t)o->k, done = 0;
	uint32_t rank = 0;
	idset mine = { 0 };     /* this prompt's, when repeats are allowed */
	float *be = NULL, *sims = NULL;
	size_t *bh = NULL;
	int rc = 0, stop = 0;

	if (o->dedupe > 0) {
		fetch += fetch / 2 + 8;
		be = malloc(sizeof(float) * RETRIEVE_BATCH * (size_t)dim);
		bh = malloc(sizeof(size_t) * RETRIEVE_BATCH);
		if (be == NULL || bh == NULL) {
			rc = cdx_error_set(err, CDX_ENOMEM, "retrieve: out of memory");
			goto out_free;
		}
	}
	while (!stop && rc == 0) {
		store_results *res = NULL;
		if ((rc = store_search(c->s->st, q, fetch, NULL, &res, err)) != 0)
			break;
		size_t i = done;
		while (i < res->n && rank < (uint32_t)o->k && !stop && rc == 0) {
			/* A batch of candidates not excluded by id or min_score. */
			size_t nb = 0;
			const idset *seen = o->unique ? kept : &mine;
			for (; i < res->n && nb < (o->dedupe > 0 ? RETRIEVE_BATCH : 1);
			    i++) {
				const store_hit *h = &res->hits[i];
				/* float32, as in select_hits() (dispatch.c) */
				if (o->has_min && h->score < (float)o->min_score) {
					stop = 1;
					break;
				}
				if (idset_has(seen, h->id))
					continue;
				if (o->dedupe > 0) {
					store_image *img = NULL;
					int g = store_image_get(c->s->st, h->id, &img, err);
					if (g == CDX_ENOTFOUND)
						continue;
					if (g != 0) {
						rc = g;
						break;
					}
					memcpy(be + nb * dim, img->embedding, sizeof(float) *
					    (size_t)dim);
					store_image_free(img);
					bh[nb++] = i;
				} else {
					if ((rc = stream_push(st, pi, rank++, h->id, h->score))
					    != 0 || (rc = idset_add(kept, h->id)) != 0 ||
					    (!o->unique && (rc = idset_add(&mine, h->id)) != 0)) {
						rc = cdx_error_set(err, CDX_ENOMEM, "retrieve: out of "
						    "memory");
						break;
					}
					if (rank >= (uint32_t)o->k) {
						i++;
						break;
					}
				}
			}
			if (rc != 0 || nb == 0)
				continue;
			/* Against everything kept before this batch. */
			size_t nk0 = kv->n;
			free(sims);
			sims = malloc(sizeof(float) * nb * (nk0 ? nk0 : 1));
			if (sims == NULL) {
				rc = cdx_error_set(err, CDX_ENOMEM, "retrieve: out of memory");
				break;
			}
			if (nk0 > 0)
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb,
				    (int)nk0, dim, 1.0f, be, dim, kv->e, dim, 0.0f, sims,
				    (int)nk0);
			for (size_t a = 0; a < nb && rank < (uint32_t)o->k; a++) {
				int dup = 0;
				for (size_t j = 0; j < nk0 && !dup; j++)
					dup = sims[a * nk0 + j] >= (float)o->dedupe;
				/* ... and the ones kept earlier in this batch. */
				for (size_t j = nk0; j < kv->n && !dup; j++) {
					double d = 0;
					for (int x = 0; x < dim; x++)
						d += (double)be[a * dim + x] * kv->e[j * dim + x];
					dup = d >= o->dedupe;
				}
				if (dup)
					continue;
				const store_hit *h = &res->hits[bh[a]];
				if (stream_push(st, pi, rank++, h->id, h->score) != 0 ||
				    idset_add(kept, h->id) != 0 ||
				    (!o->unique && idset_add(&mine, h->id) != 0) ||
				    kept_push(kv, be + a * dim) != 0) {
					rc = cdx_error_set(err, CDX_ENOMEM, "retrieve: out of "
					    "memory");
					break;
				}
				if (rank >= (uint32_t)o->k)
					i = bh[a] + 1;  /* resume after the last one used */
			}
		}
		int more = res->n == fetch;
		done = i;
		store_results_free(res);
		if (rank >= (uint32_t)o->k || !more)
			break;
		fetch *= 2;
	}
out_free:
	free(mine.v);
	free(be);
	free(bh);
	free(sims);
	return rc;
}

/* The key of a request: its canonical JSON without the paging fields. */
static char *
request_key(const cJSON *req)
{
	cJSON *d = cJSON_Duplicate(req, 1);
	char *k;
	if (d == NULL)
		return NULL;
	cJSON_DeleteItemFromObjectCaseSensitive(d, "offset");
	cJSON_DeleteItemFromObjectCaseSensitive(d, "limit");
	cJSON_DeleteItemFromObjectCaseSensitive(d, "tag");
	cJSON_DeleteItemFromObjectCaseSensitive(d, "token");
	k = cJSON_PrintUnformatted(d);
	cJSON_Delete(d);
	return k;
}

static int
compute_stream(srv_call *c, const ropts *o, stream *st)
{
	int dim = c->s->info->embed_dim;
	int np = cJSON_GetArraySize(o->prompts);
	int nn = o->negatives ? cJSON_GetArraySize(o->negatives) : 0;
	float *pe = malloc(sizeof(float) * (size_t)dim * (size_t)np);
	float *ne = malloc(sizeof(float) * (size_t)dim * (size_t)(nn + 1));
	idset kept = { 0 };
	kept_vecs kv = { .dim = dim };
	cdx_error err;
	int rc = -1;

	if (pe == NULL || ne == NULL) {
		srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
		goto out_free;
	}
	if (embed_prompts(c, o->prompts, "prompt", pe) != 0 ||
	    (nn > 0 && embed_prompts(c, o->negatives, "negative", ne) != 0))
		goto out_free;
	for (int i = 0; i < np; i++) {
		float *q = pe + (size_t)i * dim;
		for (int j = 0; j < nn; j++)
			for (int d = 0; d < dim; d++)
				q[d] -= (float)o->neg_weight * ne[(size_t)j * dim + d];
		/* The prompt minus its negatives: normalised here, once
		 * (encoder/clip.h). */
		if (cdx_vec_normalise(q, dim) != 0) {
			srv_fail(c, CDX_PROTO_BAD_REQUEST, "prompt %d is cancelled out by the "
			    "negatives", i);
			goto out_free;
		}
		if ((rc = run_prompt(c, o, (uint32_t)i, q, &kept, &kv, st, &err))
		    != 0) {
			rc = srv_fail_cdx(c, rc, &err);
			goto out_free;
		}
	}
	rc = 0;
out_free:
	free(kept.v);
	free(kv.e);
	free(pe);
	free(ne);
	return rc;
}

static cJSON *
entry_json(const store_image *img, const entry *e)
{
	store_hit h = {
		.id = img->id, .score = e->score, .path = img->path,
		.size = img->size, .mtime_ns = img->mtime_ns,
		.capture_time = img->capture_time, .added = img->added,
		.width = img->width, .height = img->height,
		.kind = img->kind, .time_ms = img->time_ms,
	};
	cJSON *o = srv_hit_json(&h, NAN);
	if (o != NULL) {
		cJSON_AddNumberToObject(o, "prompt", e->prompt);
		/* ranks start at 1, as search's */
		cJSON_AddNumberToObject(o, "rank", (double)e->rank + 1);
	}
	return o;
}

int
retrieve_op(srv_call *c)
{
	double t0 = srv_now();
	ropts o;
	stream *st = NULL;
	char *key;
	int rc;

	if (parse_ropts(c, &o) != 0)
		return -1;
	if ((key = request_key(c->req)) == NULL)
		return srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
	uint64_t seq = store_seq(c->s->st);
	st = cache_take(c->s->retrieve, seq, key);    /* ours while we read it */
	if (st == NULL) {
		if ((st = calloc(1, sizeof(*st))) == NULL) {
			free(key);
			return srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
		}
		st->key = key;
		key = NULL;
		st->seq = seq;
		if (compute_stream(c, &o, st) != 0) {
			stream_free(st);
			return -1;
		}
	}
	free(key);

	cJSON *r = cJSON_CreateObject(), *arr;
	rc = 0;
	if (r == NULL || (arr = cJSON_AddArrayToObject(r, "results")) == NULL) {
		rc = srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
		goto out_cache;
	}
	for (size_t i = (size_t)o.offset; i < st->n && i < (size_t)(o.offset +
	    o.limit); i++) {
		store_image *img = NULL;
		cdx_error err;
		int g = store_image_get(c->s->st, st->e[i].id, &img, &err);
		if (g == CDX_ENOTFOUND)
			continue;       /* removed since: the next page sees seq */
		if (g != 0) {
			rc = srv_fail_cdx(c, g, &err);
			goto out_cache;
		}
		cJSON_AddItemToArray(arr, entry_json(img, &st->e[i]));
		store_image_free(img);
	}
	cJSON_AddNumberToObject(r, "total", (double)st->n);
	if ((size_t)(o.offset + o.limit) < st->n)
		cJSON_AddNumberToObject(r, "next_offset", (double)(o.offset +
		    o.limit));
	else
		cJSON_AddNullToObject(r, "next_offset");
	cJSON_AddNumberToObject(r, "took_ms", (srv_now() - t0) * 1000.0);
out_cache:
	cache_put(c->s->retrieve, st);
	if (rc != 0) {
		cJSON_Delete(r);
		return -1;
	}
	srv_reply_ok(c, r);
	return 0;
}
