/*
 * learn_op.c - few-shot classifiers: the learn and rerank operations, the
 * learned:NAME term and search's "learned" (learn_op.h, docs/PROTOCOL.md,
 * docs/CLASSIFY.md).
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classify/classify.h"
#include "common/path.h"
#include "common/vec.h"
#include "daemon/ingest.h"
#include "daemon/learn_op.h"
#include "daemon/srv_internal.h"

/* Examples gathered for one fit, in one class or both; at most this many
 * (a memory bound: folders are sampled as they are read, below). */
#define LEARN_MAX_EXAMPLES 100000
/* Labelled examples of one class a fit uses, and images one folder gives:
 * at most this many, the rest dropped by a seeded draw (the same request
 * keeps the same images).  A Newton step of cls_probe_fit costs
 * n (d + 1)^2, so n stays bounded whatever the request names. */
#define LEARN_MAX_PER_CLASS 2000
/* Marked ids of one rerank, per class. */
#define RERANK_MAX_MARKS 1000
/* Unlabeled negatives drawn when none are given: max(4 x positives, 64),
 * capped by the rest of the collection. */
#define UNLABELED_PER_POSITIVE 4
#define UNLABELED_MIN 64
/* rerank's padding of a single negative: 4 random images per positive,
 * at least 8 (few: some may be of the positives' kind). */
#define RERANK_PAD_PER_POSITIVE 4
#define RERANK_PAD_MIN 8
/* The store's key/value entry of a learned set's examples (by path). */
#define SPEC_PREFIX "learned/"

typedef struct examples {
	int dim;
	float *x;               /* n * dim, unit rows */
	uint8_t *y;             /* 1 positive, 0 negative */
	uint64_t *id;           /* the indexed image, 0 for an uploaded one */
	size_t n, cap;
	size_t n_labeled;       /* the first n_labeled were given; the rest
	                           are unlabeled negatives */
	size_t dropped;         /* labelled images found but not used (over
	                           LEARN_MAX_PER_CLASS) */
} examples;

static void
ex_free(examples *e)
{
	free(e->x);
	free(e->y);
	free(e->id);
	memset(e, 0, sizeof(*e));
}

static int
ex_add(examples *e, const float *emb, int y, uint64_t id)
{
	if (e->n == e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 64;
		float *x = realloc(e->x, sizeof(*x) * cap * (size_t)e->dim);
		if (x == NULL)
			return CDX_ENOMEM;
		e->x = x;
		uint8_t *yy = realloc(e->y, cap);
		if (yy == NULL)
			return CDX_ENOMEM;
		e->y = yy;
		uint64_t *ids = realloc(e->id, sizeof(*ids) * cap);
		if (ids == NULL)
			return CDX_ENOMEM;
		e->id = ids;
		e->cap = cap;
	}
	if (e->n >= LEARN_MAX_EXAMPLES)
		return CDX_ETOOBIG;
	memcpy(e->x + e->n * (size_t)e->dim, emb, sizeof(float) * (size_t)e->dim);
	e->y[e->n] = (uint8_t)y;
	e->id[e->n] = id;
	e->n++;
	return 0;
}

static uint64_t
splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* A seed made from a string (FNV-1a). */
static uint64_t
seed_of(const char *str)
{
	uint64_t seed = 1469598103934665603ULL;
	for (const char *p = str; *p; p++)
		seed = (seed ^ (unsigned char)*p) * 1099511628211ULL;
	return seed;
}

static size_t
ex_count(const examples *e, int y)
{
	size_t n = 0;
	for (size_t i = 0; i < e->n; i++)
		n += e->y[i] == y;
	return n;
}

static int
ex_fail(srv_call *c, int rc)
{
	if (rc == CDX_ETOOBIG)
		return srv_fail(c, CDX_PROTO_TOO_LARGE, "at most %d example images",
		    LEARN_MAX_EXAMPLES);
	return srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
}

/* Removes the examples marked in drop (e->n flags), keeping the others in
 * their order. */
static void
ex_compact(examples *e, const uint8_t *drop)
{
	size_t w = 0;

	for (size_t i = 0; i < e->n; i++) {
		if (drop[i])
			continue;
		if (w != i) {
			memmove(e->x + w * (size_t)e->dim, e->x + i * (size_t)e->dim,
			    sizeof(float) * (size_t)e->dim);
			e->y[w] = e->y[i];
			e->id[w] = e->id[i];
		}
		w++;
	}
	e->n = w;
}

struct dkey {
	uint64_t id;
	size_t at;
};

static int
cmp_dkey(const void *a, const void *b)
{
	const struct dkey *x = a, *y = b;
	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return x->at < y->at ? -1 : x->at > y->at;
}

/* Drops repeated images (a folder and an id naming the same one), keeping
 * the first; an image given both as positive and as negative is an
 * error. */
static int
ex_dedupe(srv_call *c, examples *e)
{
	struct dkey *k = malloc(sizeof(*k) * (e->n ? e->n : 1));
	uint8_t *drop = calloc(e->n ? e->n : 1, 1);
	size_t n = 0;
	int rc = 0;

	if (k == NULL || drop == NULL) {
		rc = srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < e->n; i++)
		if (e->id[i] != 0)
			k[n++] = (struct dkey){ e->id[i], i };
	qsort(k, n, sizeof(*k), cmp_dkey);
	for (size_t i = 1; i < n; i++) {
		if (k[i].id != k[i - 1].id)
			continue;
		if (e->y[k[i].at] != e->y[k[i - 1].at]) {
			rc = srv_fail(c, CDX_PROTO_BAD_REQUEST, "image %llu is both a "
			    "positive and a negative example",
			    (unsigned long long)k[i].id);
			goto out;
		}
		drop[k[i].at] = 1;
	}
	ex_compact(e, drop);
out:
	free(k);
	free(drop);
	return rc;
}

/* Keeps at most LEARN_MAX_PER_CLASS examples of each class, drawn with
 * a seed made from name (a partial Fisher-Yates shuffle of the class's
 * rows; the kept rows stay in their order); e->dropped counts the rest. */
static int
ex_cap(srv_call *c, examples *e, const char *name)
{
	size_t *at = malloc(sizeof(*at) * (e->n ? e->n : 1));
	uint8_t *drop = calloc(e->n ? e->n : 1, 1);
	uint64_t seed = seed_of(name);

	if (at == NULL || drop == NULL) {
		free(at);
		free(drop);
		return srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
	}
	for (int y = 0; y <= 1; y++) {
		size_t n = 0;
		for (size_t i = 0; i < e->n; i++)
			if (e->y[i] == y)
				at[n++] = i;
		if (n <= LEARN_MAX_PER_CLASS)
			continue;
		for (size_t i = 0; i < LEARN_MAX_PER_CLASS; i++) {
			size_t j = i + (size_t)(splitmix(&seed) % (n - i));
			size_t t = at[j];
			at[j] = at[i];
			at[i] = t;
		}
		for (size_t i = LEARN_MAX_PER_CLASS; i < n; i++)
			drop[at[i]] = 1;
		e->dropped += n - LEARN_MAX_PER_CLASS;
	}
	ex_compact(e, drop);
	free(at);
	free(drop);
	return 0;
}

/* ---- examples from the request ---- */

/* An example path as a store key, by the rule classify's and search's
 * path items follow (srv_image_lookup): the path as given (absolute;
 * trailing slashes dropped for a folder), looked up in the store, never
 * resolved on the daemon's disk, so nothing outside the indexed roots is
 * probed or named back. */
static int
canon_path(srv_call *c, const char *p, char *out, size_t cap)
{
	if (p[0] != '/')
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "an example path must be "
		    "absolute");
	if ((size_t)snprintf(out, cap, "%s", p) >= cap)
		return srv_fail(c, CDX_PROTO_TOO_LARGE, "the path is too long");
	for (size_t n = strlen(out); n > 1 && out[n - 1] == '/'; n--)
		out[n - 1] = '\0';
	return 0;
}

struct folder_add {
	examples *e;
	int y;
	size_t n;               /* images under the folder */
	size_t start;           /* its first row in e */
	uint64_t seed;
	int rc;
};

/* A folder's images: a reservoir sample of LEARN_MAX_PER_CLASS of them
 * (seeded by the folder's path, in the path index's order: the same
 * folder gives the same images), so a folder of 100,000 costs no more
 * memory than one of 2,000. */
static int
add_stored(void *user, const store_image *img)
{
	struct folder_add *f = user;
	examples *e = f->e;

	if (f->n < LEARN_MAX_PER_CLASS) {
		if ((f->rc = ex_add(e, img->embedding, f->y, img->id)) != 0)
			return 1;
	} else {
		uint64_t j = splitmix(&f->seed) % (f->n + 1);
		if (j < LEARN_MAX_PER_CLASS) {
			size_t at = f->start + (size_t)j;
			memcpy(e->x + at * (size_t)e->dim, img->embedding,
			    sizeof(float) * (size_t)e->dim);
			e->id[at] = img->id;
		}
		e->dropped++;
	}
	f->n++;
	return 0;
}

/* The indexed image at path, or every indexed image under the folder
 * path; *found (may be NULL) receives how many, and with found given an
 * unknown path is not an error. */
static int
add_path(srv_call *c, examples *e, const char *path, int y, size_t *found)
{
	struct folder_add f = { e, y, 0, e->n, seed_of(path), 0 };
	store_image *img = NULL;
	cdx_error err;
	int rc;

	rc = store_image_get_by_path(c->s->st, path, &img, &err);
	if (rc == 0) {
		rc = ex_add(e, img->embedding, y, img->id);
		store_image_free(img);
		if (rc != 0)
			return ex_fail(c, rc);
		if (found != NULL)
			*found = 1;
		return 0;
	}
	if (rc != CDX_ENOTFOUND)
		return srv_fail_cdx(c, rc, &err);
	rc = store_image_foreach_prefix(c->s->st, path, add_stored, &f, &err);
	if (f.rc != 0)
		return ex_fail(c, f.rc);
	if (rc != 0)
		return srv_fail_cdx(c, rc, &err);
	if (found != NULL) {
		*found = f.n;
		return 0;
	}
	if (f.n == 0)
		return srv_fail(c, CDX_PROTO_NOT_FOUND, "%s: no indexed image there "
		    "(neither an indexed file nor a folder holding any)", path);
	return 0;
}

static int
add_id(srv_call *c, examples *e, double idv, int y, cJSON *spec)
{
	store_image *img = NULL;
	cdx_error err;
	int rc;

	if (idv < 1 || idv != floor(idv) || idv > 9007199254740992.0)
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'id' must be a positive "
		    "integer");
	if ((rc = store_image_get(c->s->st, (uint64_t)idv, &img, &err)) != 0) {
		if (rc == CDX_ENOTFOUND)
			return srv_fail(c, CDX_PROTO_NOT_FOUND, "no image with id %.0f",
			    idv);
		return srv_fail_cdx(c, rc, &err);
	}
	rc = ex_add(e, img->embedding, y, img->id);
	if (rc == 0 && spec != NULL)
		cJSON_AddItemToArray(spec, cJSON_CreateString(img->path));
	store_image_free(img);
	return rc == 0 ? 0 : ex_fail(c, rc);
}

/* One example item: {"id"}, {"path"} (file or folder) or {"image"}.  Its
 * path (or the id's) is appended to spec; uploads are counted. */
static int
add_item(srv_call *c, examples *e, const cJSON *it, int y, cJSON *spec,
    int *uploaded)
{
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
	const cJSON *path = cJSON_GetObjectItemCaseSensitive(it, "path");
	const cJSON *image = cJSON_GetObjectItemCaseSensitive(it, "image");
	int rc;

	if (!cJSON_IsObject(it) || (id != NULL) + (path != NULL) +
	    (image != NULL) != 1)
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "an example is {\"id\": N}, "
		    "{\"path\": P} or {\"image\": BASE64}");
	if (id != NULL) {
		if (!cJSON_IsNumber(id))
			return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'id' must be a number");
		return add_id(c, e, id->valuedouble, y, spec);
	}
	if (path != NULL) {
		char canon[PATH_MAX];
		if (!cJSON_IsString(path))
			return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'path' must be a "
			    "string");
		if (canon_path(c, path->valuestring, canon, sizeof(canon)) != 0 ||
		    add_path(c, e, canon, y, NULL) != 0)
			return -1;
		cJSON_AddItemToArray(spec, cJSON_CreateString(canon));
		return 0;
	}
	/* an upload: embedded as a search's image term is */
	float *v = malloc(sizeof(float) * (size_t)e->dim);
	srv_call sub = *c;
	cJSON *req = cJSON_CreateObject();      /* the image alone, no weight */
	if (v == NULL || req == NULL ||
	    !cJSON_AddItemReferenceToObject(req, "image", (cJSON *)image)) {
		free(v);
		cJSON_Delete(req);
		return srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
	}
	sub.req = req;
	rc = srv_query_vector(&sub, v, NULL);
	cJSON_Delete(req);
	if (rc != 0) {
		c->ecode = sub.ecode;
		memcpy(c->emsg, sub.emsg, sizeof(c->emsg));
		free(v);
		return -1;
	}
	rc = ex_add(e, v, y, 0);
	free(v);
	if (rc != 0)
		return ex_fail(c, rc);
	(*uploaded)++;
	return 0;
}

/* The items of the array `key` (may be absent when optional). */
static int
add_items(srv_call *c, examples *e, const char *key, int y, int optional,
    cJSON *spec, int *uploaded)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(c->req, key);
	const cJSON *it;

	if ((arr == NULL || cJSON_IsNull(arr)) && optional)
		return 0;
	if (!cJSON_IsArray(arr) || (cJSON_GetArraySize(arr) == 0 && !optional))
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'%s' must be a%s array of "
		    "examples", key, optional ? "n" : " non-empty");
	cJSON_ArrayForEach(it, arr)
		if (add_item(c, e, it, y, spec, uploaded) != 0)
			return -1;
	return 0;
}

/* ---- unlabeled negatives ---- */

/* A store this small is walked for its ids (an exact draw); a bigger one
 * is sampled by random ids, without a scan. */
#define UNLABELED_WALK_MAX 4096
/* Random ids tried per image wanted before giving up (ids of deleted
 * images are gaps). */
#define UNLABELED_TRIES 16

struct id_all {
	uint64_t *ids;
	size_t n, cap;
};

static int
collect_all(void *user, const store_image *img)
{
	struct id_all *a = user;
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 1024;
		uint64_t *v = realloc(a->ids, sizeof(*v) * cap);
		if (v == NULL)
			return CDX_ENOMEM;
		a->ids = v;
		a->cap = cap;
	}
	a->ids[a->n++] = img->id;
	return 0;
}

/* A set of ids: open addressing, ids are never 0. */
typedef struct id_set {
	uint64_t *slot;
	size_t mask;
} id_set;

static int
idset_init(id_set *h, size_t n)
{
	size_t cap = 64;
	while (cap < 2 * n + 2)
		cap *= 2;
	h->mask = cap - 1;
	h->slot = calloc(cap, sizeof(*h->slot));
	return h->slot == NULL ? CDX_ENOMEM : 0;
}

/* Adds id; 1 if it was there already. */
static int
idset_add(id_set *h, uint64_t id)
{
	uint64_t k = id;
	size_t i = (size_t)splitmix(&k) & h->mask;
	for (; h->slot[i] != 0; i = (i + 1) & h->mask)
		if (h->slot[i] == id)
			return 1;
	h->slot[i] = id;
	return 0;
}

/* The ids to try: every id of a small store, shuffled (*n of them); or,
 * for a bigger one, random ids in [1, store_seq]: a new id is taken with
 * a step of the change sequence (store/store.c), so no id is above it. */
static int
unlabeled_candidates(srv_call *c, size_t want, uint64_t *seed,
    struct id_all *all)
{
	cdx_error err;
	int rc;

	if (store_image_count(c->s->st) <= UNLABELED_WALK_MAX) {
		if ((rc = store_image_foreach(c->s->st, collect_all, all, &err))
		    != 0)
			return rc == CDX_ENOMEM ? srv_fail(c, CDX_PROTO_INTERNAL,
			    "out of memory") : srv_fail_cdx(c, rc, &err);
		/* a Fisher-Yates shuffle */
		for (size_t i = 0; i + 1 < all->n; i++) {
			size_t j = i + (size_t)(splitmix(seed) % (all->n - i));
			uint64_t id = all->ids[j];
			all->ids[j] = all->ids[i];
			all->ids[i] = id;
		}
		return 0;
	}
	uint64_t hi = store_seq(c->s->st);
	all->n = all->cap = want * UNLABELED_TRIES;
	if ((all->ids = malloc(sizeof(*all->ids) * all->cap)) == NULL)
		return srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
	for (size_t i = 0; i < all->n; i++)
		all->ids[i] = 1 + splitmix(seed) % (hi ? hi : 1);
	return 0;
}

/* Adds up to `want` random images of the collection that are not
 * examples already as negatives (seeded by name: the same request on the
 * same collection draws the same images).  *drawn receives how many. */
static int
add_unlabeled(srv_call *c, examples *e, size_t want, const char *name,
    size_t *drawn)
{
	struct id_all all = { 0 };
	id_set seen = { 0 };
	uint64_t seed = seed_of(name);
	size_t got = 0;
	cdx_error err;
	int rc;

	if ((rc = unlabeled_candidates(c, want, &seed, &all)) != 0)
		goto out_free;
	if (idset_init(&seen, e->n + all.n) != 0) {
		rc = srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
		goto out_free;
	}
	for (size_t i = 0; i < e->n; i++)
		if (e->id[i] != 0)
			idset_add(&seen, e->id[i]);
	for (size_t i = 0; i < all.n && got < want; i++) {
		uint64_t id = all.ids[i];
		if (idset_add(&seen, id))
			continue;       /* an example, or drawn already */
		store_image *img = NULL;
		if (store_image_get(c->s->st, id, &img, &err) != 0)
			continue;       /* no such id (deleted) */
		rc = ex_add(e, img->embedding, 0, img->id);
		store_image_free(img);
		if (rc != 0) {
			rc = ex_fail(c, rc);
			goto out_free;
		}
		got++;
	}
	*drawn = got;
	rc = 0;
out_free:
	free(all.ids);
	free(seen.slot);
	return rc;
}

static size_t
unlabeled_want(size_t n_pos)
{
	size_t n = UNLABELED_PER_POSITIVE * n_pos;
	if (n > LEARN_MAX_PER_CLASS)
		n = LEARN_MAX_PER_CLASS;
	return n > UNLABELED_MIN ? n : UNLABELED_MIN;
}

/* ---- fitting and keeping ---- */

static int
fit(srv_call *c, const examples *e, double l2, float *w, float *b,
    cls_probe_report *rep)
{
	cls_probe_opts opts = { .l2 = l2 };
	cdx_error err;
	int rc = cls_probe_fit(e->x, e->y, e->n, (size_t)e->dim, &opts, w, b, rep,
	    &err);
	return rc == 0 ? 0 : srv_fail_cdx(c, rc, &err);
}

/* The example ids of class y among the labeled examples, into ids. */
static size_t
labeled_ids(const examples *e, int y, uint64_t *ids)
{
	size_t n = 0;
	for (size_t i = 0; i < e->n_labeled; i++)
		if (e->y[i] == y && e->id[i] != 0)
			ids[n++] = e->id[i];
	return n;
}

/* Makes the learned set of a fit, stamps it with the daemon's model and
 * puts it (re-tagging the collection).  *out (may be NULL) receives the
 * set. */
static int
keep_probe(srv_call *c, const char *name, const examples *e, const float *w,
    float b, double threshold, uint64_t *tagged, cls_set **out)
{
	uint64_t *ids = malloc(sizeof(*ids) * (e->n ? e->n : 1));
	cls_set *set = NULL;
	cdx_error err;
	int rc;

	if (ids == NULL)
		return srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
	size_t np = labeled_ids(e, 1, ids);
	size_t nn = labeled_ids(e, 0, ids + np);
	rc = cls_probe_set(name, w, b, (size_t)e->dim, ids, np, ids + np, nn,
	    (float)threshold, &set, &err);
	free(ids);
	if (rc != 0)
		return srv_fail_cdx(c, rc, &err);
	snprintf(set->model_key, sizeof(set->model_key), "%s", c->s->info->key);
	if ((rc = store_tagset_put(c->s->st, set, tagged, &err)) != 0) {
		cls_set_free(set);
		return srv_fail_cdx(c, rc, &err);
	}
	if (out != NULL)
		*out = set;
	else
		cls_set_free(set);
	return 0;
}

static int
spec_key(srv_call *c, const char *name, char *key, size_t cap)
{
	if ((size_t)snprintf(key, cap, SPEC_PREFIX "%s", name) >= cap)
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "the name is too long");
	return 0;
}

/* Keeps the examples' paths (for a refit under another model). */
static int
keep_spec(srv_call *c, const char *name, cJSON *spec)
{
	char key[CLS_NAME_MAX + 16];
	cdx_error err;
	char *text = cJSON_PrintUnformatted(spec);
	int rc;

	if (text == NULL)
		return srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
	if (spec_key(c, name, key, sizeof(key)) != 0) {
		free(text);
		return -1;
	}
	rc = store_kv_put(c->s->st, key, text, strlen(text), &err);
	free(text);
	return rc == 0 ? 0 : srv_fail_cdx(c, rc, &err);
}

/* ---- learn ---- */

static int learn_refit(srv_call *c, const char *name, double threshold);

static void
learn_reply(srv_call *c, const char *name, const cls_probe_report *rep,
    int unlabeled, int uploaded, double threshold, uint64_t tagged,
    size_t dropped, cJSON *r)
{
	cJSON_AddStringToObject(r, "name", name);
	cJSON_AddNumberToObject(r, "subsampled", (double)dropped);
	cJSON_AddNumberToObject(r, "n_pos", (double)rep->n_pos);
	cJSON_AddNumberToObject(r, "n_neg", (double)rep->n_neg);
	cJSON_AddBoolToObject(r, "unlabeled_negatives", unlabeled);
	cJSON_AddNumberToObject(r, "uploaded", uploaded);
	cJSON_AddNumberToObject(r, "folds", rep->folds);
	cJSON_AddNumberToObject(r, "cv_accuracy", rep->cv_accuracy);
	cJSON_AddNumberToObject(r, "iterations", rep->iterations);
	cJSON_AddNumberToObject(r, "threshold", threshold);
	cJSON_AddNumberToObject(r, "tagged", (double)tagged);
	cJSON_AddStringToObject(r, "model", c->s->info->key);
	srv_reply_ok(c, r);
}

/* Fails when name is a tag set of labels (learn replaces only learned
 * ones: a label set is deleted with tags_delete first). */
static int
labels_set_named(srv_call *c, const char *name)
{
	cls_set *old = NULL;
	cdx_error err;
	int rc = store_tagset_get(c->s->st, name, &old, &err);

	if (rc == CDX_ENOTFOUND)
		return 0;
	if (rc != 0)
		return srv_fail_cdx(c, rc, &err);
	rc = old->origin != CLS_LEARNED;
	cls_set_free(old);
	if (rc)
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "%s is a tag set of labels, "
		    "not a learned classifier: delete it first (tags delete) or "
		    "choose another name", name);
	return 0;
}

int
learn_op(srv_call *c)
{
	const cJSON *nm = cJSON_GetObjectItemCaseSensitive(c->req, "name");
	examples e = { .dim = c->s->info->embed_dim };
	cls_probe_report rep = { 0 };
	double threshold = 0.5, l2 = 0;
	int has_thr = 0, uploaded = 0, rc = -1;
	uint64_t tagged = 0;
	size_t drawn = 0;
	float *w = NULL, b = 0;
	cdx_error err;
	cJSON *spec = cJSON_CreateObject();
	cJSON *sp = cJSON_AddArrayToObject(spec, "positive");
	cJSON *sn = cJSON_AddArrayToObject(spec, "negative");

	if (spec == NULL || sp == NULL || sn == NULL) {
		srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
		goto out_free;
	}
	if (!cJSON_IsString(nm)) {
		srv_fail(c, CDX_PROTO_BAD_REQUEST, "learn needs a 'name'");
		goto out_free;
	}
	if ((rc = cls_name_check(nm->valuestring, &err)) != 0) {
		rc = srv_fail_cdx(c, rc, &err);
		goto out_free;
	}
	rc = -1;
	if (labels_set_named(c, nm->valuestring) != 0)
		goto out_free;
	if (srv_get_num(c, c->req, "threshold", 0, 1, &has_thr, &threshold) != 0)
		goto out_free;
	if (srv_get_bool(c->req, "refit")) {
		rc = learn_refit(c, nm->valuestring, has_thr ? threshold : -1);
		goto out_free;
	}
	if (srv_get_num(c, c->req, "l2", 0, 1e6, NULL, &l2) != 0 ||
	    add_items(c, &e, "positive", 1, 0, sp, &uploaded) != 0 ||
	    add_items(c, &e, "negative", 0, 1, sn, &uploaded) != 0 ||
	    ex_dedupe(c, &e) != 0 || ex_cap(c, &e, nm->valuestring) != 0)
		goto out_free;
	e.n_labeled = e.n;
	size_t n_pos = ex_count(&e, 1), n_neg = ex_count(&e, 0);
	int unlabeled = n_neg == 0;
	if (unlabeled && n_pos >= 2) {
		if (add_unlabeled(c, &e, unlabeled_want(n_pos), nm->valuestring,
		    &drawn) != 0)
			goto out_free;
		if (drawn < 2) {
			srv_fail(c, CDX_PROTO_BAD_REQUEST, "no negatives were given and "
			    "the collection has %zu other image%s to draw as unlabeled "
			    "negatives (2 are needed): give negatives", drawn,
			    drawn == 1 ? "" : "s");
			goto out_free;
		}
	}
	if ((w = malloc(sizeof(float) * (size_t)e.dim)) == NULL) {
		srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
		goto out_free;
	}
	if (fit(c, &e, l2, w, &b, &rep) != 0 ||
	    keep_probe(c, nm->valuestring, &e, w, b, has_thr ? threshold : -1,
	    &tagged, NULL) != 0)
		goto out_free;
	cJSON_AddBoolToObject(spec, "unlabeled_negatives", unlabeled);
	cJSON_AddNumberToObject(spec, "uploaded", uploaded);
	cJSON_AddNumberToObject(spec, "l2", l2);
	cJSON_AddNumberToObject(spec, "threshold", has_thr ? threshold : 0.5);
	if (keep_spec(c, nm->valuestring, spec) != 0)
		goto out_free;
	cdx_log(CDX_LOG_INFO, "learned %s: %zu positive, %zu negative%s, cv "
	    "accuracy %.3f (%d folds), %llu images tagged", nm->valuestring,
	    rep.n_pos, rep.n_neg, unlabeled ? " (unlabeled)" : "",
	    rep.cv_accuracy, rep.folds, (unsigned long long)tagged);
	learn_reply(c, nm->valuestring, &rep, unlabeled, uploaded,
	    has_thr ? threshold : 0.5, tagged, e.dropped, cJSON_CreateObject());
	rc = 0;
out_free:
	free(w);
	ex_free(&e);
	cJSON_Delete(spec);
	return rc;
}

/* ---- using a learned set ---- */

/* 1 while the indexer has files to do. */
static int
indexer_busy(srv *s)
{
	cJSON *q = ingest_status_json(s);
	double left = cJSON_GetNumberValue(cJSON_GetObjectItem(q, "remaining"));
	int busy = (left == left && left > 0) ||
	    cJSON_IsTrue(cJSON_GetObjectItem(q, "scanning"));
	cJSON_Delete(q);
	return busy;
}

/* What a refit did. */
typedef struct refit_result {
	cls_probe_report rep;
	uint64_t tagged;
	int unlabeled;          /* random unlabeled negatives were drawn */
	size_t missing, given;  /* example paths without images now; all */
	size_t dropped;         /* labelled images left out (e.dropped) */
	double threshold;
} refit_result;

/* Fits the learned set `name` again, for the daemon's model and the
 * collection as it is, from the example paths kept by learn (a folder's
 * images as they are now; those of another model re-embedded by the
 * indexer), and puts it.  threshold < 0: the one kept.  While the
 * indexer is still at work and some example is not re-embedded yet, it
 * waits (busy: try again). */
static int
refit(srv_call *c, const char *name, double threshold, refit_result *res)
{
	char key[CLS_NAME_MAX + 16];
	examples e = { .dim = c->s->info->embed_dim };
	cJSON *spec = NULL;
	void *text = NULL;
	size_t len, drawn;
	float *w = NULL, b = 0;
	cdx_error err;
	int rc = -1;

	memset(res, 0, sizeof(*res));
	if (spec_key(c, name, key, sizeof(key)) != 0)
		return -1;
	if (store_kv_get(c->s->st, key, &text, &len, &err) != 0 ||
	    (spec = cJSON_Parse(text)) == NULL) {
		srv_fail(c, CDX_PROTO_BAD_REQUEST, "the examples of the learned "
		    "classifier %s are not known: learn it again with examples",
		    name);
		goto out_free;
	}
	for (int y = 1; y >= 0; y--) {
		const cJSON *p;
		cJSON_ArrayForEach(p, cJSON_GetObjectItem(spec, y ? "positive" :
		    "negative")) {
			size_t found = 0;
			if (!cJSON_IsString(p))
				continue;
			res->given++;
			if (add_path(c, &e, p->valuestring, y, &found) != 0)
				goto out_free;
			res->missing += found == 0;
		}
	}
	if (res->given == 0) {
		srv_fail(c, CDX_PROTO_BAD_REQUEST, "the learned classifier %s was "
		    "made from uploaded images only, which are not kept: learn it "
		    "again with examples", name);
		goto out_free;
	}
	if (res->missing > 0 && indexer_busy(c->s)) {
		srv_fail(c, CDX_PROTO_BUSY, "%zu of the %zu examples of the "
		    "learned classifier %s are not indexed (yet): it is refitted "
		    "once the indexer has re-embedded them (try again when indexing "
		    "is done)", res->missing, res->given, name);
		goto out_free;
	}
	if (ex_dedupe(c, &e) != 0 || ex_cap(c, &e, name) != 0)
		goto out_free;
	e.n_labeled = e.n;
	res->dropped = e.dropped;
	res->unlabeled = cJSON_IsTrue(cJSON_GetObjectItem(spec,
	    "unlabeled_negatives"));
	if (res->unlabeled && add_unlabeled(c, &e, unlabeled_want(ex_count(&e,
	    1)), name, &drawn) != 0)
		goto out_free;
	if ((w = malloc(sizeof(float) * (size_t)e.dim)) == NULL) {
		srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
		goto out_free;
	}
	if (fit(c, &e, cJSON_GetNumberValue(cJSON_GetObjectItem(spec, "l2")), w,
	    &b, &res->rep) != 0) {
		size_t at = strlen(c->emsg);
		snprintf(c->emsg + at, sizeof(c->emsg) - at, " (refitting %s from "
		    "its examples)", name);
		goto out_free;
	}
	if (threshold < 0)
		threshold = cJSON_GetNumberValue(cJSON_GetObjectItem(spec,
		    "threshold"));
	if (!(threshold >= 0 && threshold <= 1))
		threshold = 0.5;
	res->threshold = threshold;
	if (keep_probe(c, name, &e, w, b, threshold, &res->tagged, NULL) != 0)
		goto out_free;
	cdx_log(CDX_LOG_INFO, "refitted the learned classifier %s for %s: %zu "
	    "positive, %zu negative, cv accuracy %.3f", name, c->s->info->key,
	    res->rep.n_pos, res->rep.n_neg, res->rep.cv_accuracy);
	rc = 0;
out_free:
	free(w);
	ex_free(&e);
	cJSON_Delete(spec);
	free(text);
	return rc;
}

/* learn {"refit": true}: again from the examples kept. */
static int
learn_refit(srv_call *c, const char *name, double threshold)
{
	refit_result res;

	if (cJSON_GetObjectItemCaseSensitive(c->req, "positive") != NULL ||
	    cJSON_GetObjectItemCaseSensitive(c->req, "negative") != NULL ||
	    cJSON_GetObjectItemCaseSensitive(c->req, "l2") != NULL)
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "a refit takes no examples "
		    "(nor l2): it uses those %s was learned from", name);
	if (refit(c, name, threshold, &res) != 0)
		return -1;
	cJSON *r = cJSON_CreateObject();
	cJSON_AddTrueToObject(r, "refit");
	cJSON_AddNumberToObject(r, "missing", (double)res.missing);
	learn_reply(c, name, &res.rep, res.unlabeled, 0, res.threshold,
	    res.tagged, res.dropped, r);
	return 0;
}

/* The learned set `name` of the daemon's model; *out is the caller's.  A
 * set of another model is refused, never refitted here: a refit reads
 * its examples and fits, work for `learn --refit`, not for a search. */
static int
load_probe(srv_call *c, const char *name, cls_set **out)
{
	cls_set *set = NULL;
	cdx_error err;
	int rc;

	if ((rc = cls_name_check(name, &err)) != 0)
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "learned:%.80s: %s", name,
		    err.msg);
	if ((rc = store_tagset_get(c->s->st, name, &set, &err)) != 0) {
		if (rc == CDX_ENOTFOUND)
			return srv_fail(c, CDX_PROTO_NOT_FOUND, "no learned classifier "
			    "named %s (make one with learn)", name);
		return srv_fail_cdx(c, rc, &err);
	}
	if (set->origin != CLS_LEARNED || set->n != 1) {
		cls_set_free(set);
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "%s is a tag set of labels, "
		    "not a learned classifier", name);
	}
	if (strcmp(set->model_key, c->s->info->key) != 0 ||
	    set->dim != (size_t)c->s->info->embed_dim) {
		srv_fail(c, CDX_PROTO_BAD_REQUEST, "the learned classifier %s was "
		    "fitted for the model %.80s, not %s: run `clipdex learn %s "
		    "--refit` to fit it again from its examples", name,
		    set->model_key, c->s->info->key, name);
		cls_set_free(set);
		return -1;
	}
	*out = set;
	return 0;
}

int
learn_term_vector(srv_call *c, const char *name, float *v)
{
	cls_set *set = NULL;
	int dim = c->s->info->embed_dim;

	if (load_probe(c, name, &set) != 0)
		return -1;
	memcpy(v, set->w, sizeof(float) * (size_t)dim);
	cls_set_free(set);
	if (cdx_vec_normalise(v, dim) != 0)
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "the learned classifier %s "
		    "has no direction (its weights are 0)", name);
	return 0;
}

const char *
learn_probe_query(const cJSON *req)
{
	const cJSON *terms = cJSON_GetObjectItemCaseSensitive(req, "terms");
	const cJSON *t = terms == NULL ? req : cJSON_GetArraySize(terms) == 1 ?
	    cJSON_GetArrayItem(terms, 0) : NULL;
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "learned");
	const cJSON *wt = cJSON_GetObjectItemCaseSensitive(t, "weight");

	if (!cJSON_IsString(name) || (wt != NULL && !(cJSON_IsNumber(wt) &&
	    wt->valuedouble > 0)))
		return NULL;
	return name->valuestring;
}

int
learn_search_probe(srv_call *c, srv_search_opts *o)
{
	const char *name = learn_probe_query(c->req);
	cls_set *set = NULL;

	if (cJSON_GetObjectItemCaseSensitive(c->req, "learned") != NULL &&
	    cJSON_GetObjectItemCaseSensitive(c->req, "terms") != NULL)
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'learned' ranks by a "
		    "classifier alone; beside other terms use a {\"learned\": NAME} "
		    "term");
	if (name == NULL)
		return 0;
	if (load_probe(c, name, &set) != 0)
		return -1;
	o->has_probe = 1;
	o->probe_norm = sqrt(cdx_vec_dot(set->w, set->w, (int)set->dim));
	o->probe_bias = set->bias[0];
	cls_set_free(set);
	return 0;
}

int
learn_forget(srv *s, const char *name, cdx_error *err)
{
	char key[CLS_NAME_MAX + 16];
	int rc;

	if ((size_t)snprintf(key, sizeof(key), SPEC_PREFIX "%s", name) >=
	    sizeof(key))
		return 0;       /* no such name was ever kept */
	rc = store_kv_delete(s->st, key, err);
	return rc == CDX_ENOTFOUND ? 0 : rc;
}

double
learn_prob(const srv_search_opts *o, float score)
{
	return 1.0 / (1.0 + exp(-(o->probe_norm * score + o->probe_bias)));
}

/* ---- rerank ---- */

/* The ids of the array `key` as examples of class y. */
static int
add_marks(srv_call *c, examples *e, const char *key, int y)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(c->req, key);
	const cJSON *it;

	if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0)
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "rerank needs '%s': an array "
		    "of at least one id", key);
	if (cJSON_GetArraySize(arr) > RERANK_MAX_MARKS)
		return srv_fail(c, CDX_PROTO_TOO_LARGE, "at most %d ids in '%s'",
		    RERANK_MAX_MARKS, key);
	cJSON_ArrayForEach(it, arr) {
		if (!cJSON_IsNumber(it))
			return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'%s' holds ids "
			    "(numbers)", key);
		if (add_id(c, e, it->valuedouble, y, NULL) != 0)
			return -1;
	}
	return 0;
}

int
rerank_op(srv_call *c)
{
	static const char *const query_keys[] = { "terms", "text", "image",
	    "path", "id", "learned" };
	double t0 = srv_now();
	int dim = c->s->info->embed_dim, has_query = 0, rc = -1;
	examples e = { .dim = dim };
	cls_probe_report rep;
	srv_search_opts o;
	size_t drawn = 0;
	float *q = malloc(sizeof(float) * (size_t)dim);
	float *w = malloc(sizeof(float) * (size_t)dim), b = 0;

	if (q == NULL || w == NULL) {
		srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
		goto out_free;
	}
	for (size_t i = 0; i < sizeof(query_keys) / sizeof(*query_keys); i++)
		has_query |= cJSON_GetObjectItemCaseSensitive(c->req,
		    query_keys[i]) != NULL;
	if (srv_parse_search_opts(c, &o) != 0 ||
	    (has_query && srv_query_vector(c, q, NULL) != 0) ||
	    add_marks(c, &e, "positive", 1) != 0 ||
	    add_marks(c, &e, "negative", 0) != 0 || ex_dedupe(c, &e) != 0)
		goto out_free;
	/* Padding (docs/PROTOCOL.md): one positive -> the query's own vector
	 * is a second; one negative -> random images of the collection. */
	if (ex_count(&e, 1) < 2 && has_query && (rc = ex_add(&e, q, 1, 0)) != 0) {
		rc = ex_fail(c, rc);
		goto out_free;
	}
	e.n_labeled = e.n;
	size_t pad = RERANK_PAD_PER_POSITIVE * ex_count(&e, 1);
	if (ex_count(&e, 0) < 2 && add_unlabeled(c, &e, pad > RERANK_PAD_MIN ?
	    pad : RERANK_PAD_MIN, "rerank", &drawn) != 0)
		goto out_free;
	if (fit(c, &e, 0, w, &b, &rep) != 0)
		goto out_free;
	o.has_probe = 1;
	o.probe_norm = sqrt(cdx_vec_dot(w, w, dim));
	o.probe_bias = b;
	o.with_prob = 0;
	if (cdx_vec_normalise(w, dim) != 0) {
		srv_fail(c, CDX_PROTO_BAD_REQUEST, "the marks give no direction "
		    "(the probe's weights are 0)");
		goto out_free;
	}
	rc = srv_search_reply(c, w, &o, t0);
out_free:
	free(q);
	free(w);
	ex_free(&e);
	return rc;
}
