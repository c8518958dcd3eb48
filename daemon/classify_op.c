/*
 * classify_op.c - the classify operation (docs/PROTOCOL.md "classify"):
 * images in request order, each an indexed image ({"id"} or {"path"},
 * scored from its stored embedding, never re-encoded) or uploaded bytes
 * ({"image"}, decoded and encoded as a search's image term), against
 * zero-shot labels made for the request (tags_zero_shot) or a stored tag
 * set ("set").  One cls_score over all of them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classify/classify.h"
#include "daemon/srv_internal.h"

#define CLASSIFY_ITEMS_MAX 1000
/* Label objects in one reply: items x labels kept (min(labels, top)). */
#define CLASSIFY_REPLY_MAX 100000

/* Fails (too_large) when m items of n labels, top kept, would put more
 * than CLASSIFY_REPLY_MAX label objects in the reply. */
static int
reply_over(srv_call *c, size_t m, size_t n, long top)
{
	size_t kept = n < (size_t)top ? n : (size_t)top;
	if (m * kept <= CLASSIFY_REPLY_MAX)
		return 0;
	return srv_fail(c, CDX_PROTO_TOO_LARGE, "%zu items x %zu labels is %zu "
	    "label probabilities to answer; the limit is %d (fewer items, or "
	    "'top')", m, kept, m * kept, CLASSIFY_REPLY_MAX);
}

enum { ITEM_ID, ITEM_PATH, ITEM_IMAGE };

typedef struct item {
	int kind;
	const cJSON *src;
	store_image *img;       /* indexed items */
} item;

static int
parse_item(srv_call *c, const cJSON *o, size_t i, item *it)
{
	static const char *const keys[] = { "id", "path", "image" };
	int found = 0;

	if (!cJSON_IsObject(o))
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "item %zu is not an object",
		    i);
	for (int k = 0; k < 3; k++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, keys[k]);
		if (v == NULL)
			continue;
		if (found++)
			return srv_fail(c, CDX_PROTO_BAD_REQUEST, "item %zu has more than "
			    "one of id, path, image", i);
		it->kind = k;
		it->src = v;
	}
	if (!found)
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "item %zu needs id, path or "
		    "image", i);
	if (it->kind != ITEM_ID && !cJSON_IsString(it->src))
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "item %zu: '%s' must be a "
		    "string", i, keys[it->kind]);
	return 0;
}

/* The set to score with: the stored set "set" (of this model), or the
 * request's labels. */
static int
classifier(srv_call *c, cls_set **out)
{
	const cJSON *set = cJSON_GetObjectItemCaseSensitive(c->req, "set");
	const cJSON *lab = cJSON_GetObjectItemCaseSensitive(c->req, "labels");
	cdx_error err;
	int rc;

	if (set == NULL || cJSON_IsNull(set)) {
		if (lab == NULL)
			return srv_fail(c, CDX_PROTO_BAD_REQUEST, "classify needs "
			    "'labels' or a tag 'set'");
		return tags_zero_shot(c, c->req, "classify", out);
	}
	if (lab != NULL)
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "give 'labels' or 'set', "
		    "not both");
	if (!cJSON_IsString(set))
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'set' must be a string");
	rc = store_tagset_get(c->s->st, set->valuestring, out, &err);
	if (rc == CDX_ENOTFOUND)
		return srv_fail(c, CDX_PROTO_NOT_FOUND, "no tag set '%.64s'",
		    set->valuestring);
	if (rc != 0)
		return srv_fail_cdx(c, rc, &err);
	if (strcmp((*out)->model_key, c->s->info->key) != 0 ||
	    (*out)->dim != (size_t)c->s->info->embed_dim) {
		srv_fail(c, CDX_PROTO_BAD_REQUEST, "tag set '%s' was made by another "
		    "model (%s); define it again", (*out)->name, (*out)->model_key);
		cls_set_free(*out);
		*out = NULL;
		return -1;
	}
	return 0;
}

/* Encodes the uploaded images (n of them, in order) into their rows of
 * emb, a batch of at most SRV_TERMS_MAX at a time. */
static int
encode_uploads(srv_call *c, const item *it, size_t m, float *emb)
{
	const clip_preprocess_cfg *pp = &c->s->info->preprocess;
	size_t plane = (size_t)pp->crop_width * pp->crop_height * 3;
	size_t dim = (size_t)c->s->info->embed_dim;
	int exact = srv_get_bool(c->req, "exact");
	float *pixels = malloc(sizeof(*pixels) * plane * SRV_TERMS_MAX);
	float *out = malloc(sizeof(*out) * dim * SRV_TERMS_MAX);
	size_t rows[SRV_TERMS_MAX];
	cdx_error err;
	int rc = 0;

	if (pixels == NULL || out == NULL) {
		rc = srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < m && rc == 0;) {
		int nb = 0;
		for (; i < m && nb < SRV_TERMS_MAX; i++) {
			if (it[i].kind != ITEM_IMAGE)
				continue;
			if ((rc = srv_image_pixels(c, it[i].src, NULL, exact,
			    pixels + plane * (size_t)nb)) != 0)
				goto out;
			rows[nb++] = i;
		}
		if (nb == 0)
			break;
		if ((rc = clip_encode_images(c->w->ctx, pixels, nb, out, &err)) != 0)
		{
			rc = srv_fail_cdx(c, rc, &err);
			goto out;
		}
		for (int b = 0; b < nb; b++)
			memcpy(emb + rows[b] * dim, out + (size_t)b * dim,
			    sizeof(*out) * dim);
	}
out:
	free(pixels);
	free(out);
	return rc;
}

typedef struct ranked {
	float p;
	uint32_t i;
} ranked;

static int
by_prob_desc(const void *a, const void *b)
{
	const ranked *x = a, *y = b;
	if (x->p != y->p)
		return x->p > y->p ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

int
classify_op(srv_call *c)
{
	double t0 = srv_now();
	const cJSON *items = cJSON_GetObjectItemCaseSensitive(c->req, "items");
	size_t dim = (size_t)c->s->info->embed_dim, m = 0, n_up = 0;
	long top = CLS_MAX_LABELS;
	item *it = NULL;
	cls_set *cs = NULL;
	float *emb = NULL, *prob = NULL;
	ranked *rk = NULL;
	const cJSON *e;
	size_t i = 0;
	cdx_error err;
	int rc = -1;

	if (!cJSON_IsArray(items) || cJSON_GetArraySize(items) == 0)
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "classify needs 'items', a "
		    "non-empty array of {\"id\"}, {\"path\"} or {\"image\"}");
	if (cJSON_GetArraySize(items) > CLASSIFY_ITEMS_MAX)
		return srv_fail(c, CDX_PROTO_TOO_LARGE, "at most %d items",
		    CLASSIFY_ITEMS_MAX);
	if (srv_get_int(c, c->req, "top", 1, CLS_MAX_LABELS, NULL, &top) != 0)
		return -1;
	m = (size_t)cJSON_GetArraySize(items);
	{       /* labels given as an array: refused before any lookup */
		const cJSON *lab = cJSON_GetObjectItemCaseSensitive(c->req,
		    "labels");
		if (cJSON_IsArray(lab) && reply_over(c, m,
		    (size_t)cJSON_GetArraySize(lab), top) != 0)
			return -1;
	}
	if ((it = calloc(m, sizeof(*it))) == NULL ||
	    (emb = malloc(sizeof(*emb) * dim * m)) == NULL)
		goto oom;
	/* Every item is checked (and indexed ones looked up) before any
	 * encoding: an unknown id fails fast. */
	cJSON_ArrayForEach(e, items) {
		if (parse_item(c, e, i, &it[i]) != 0)
			goto out;
		if (it[i].kind == ITEM_IMAGE) {
			n_up++;
		} else {
			if (srv_image_lookup(c, it[i].kind == ITEM_ID ? it[i].src : NULL,
			    it[i].kind == ITEM_PATH ? it[i].src : NULL, &it[i].img) != 0)
				goto out;
			memcpy(emb + i * dim, it[i].img->embedding, sizeof(*emb) * dim);
		}
		i++;
	}
	if (classifier(c, &cs) != 0 || reply_over(c, m, cs->n, top) != 0)
		goto out;
	if (n_up > 0 && encode_uploads(c, it, m, emb) != 0)
		goto out;
	if ((prob = malloc(sizeof(*prob) * m * cs->n)) == NULL ||
	    (rk = malloc(sizeof(*rk) * cs->n)) == NULL)
		goto oom;
	if ((rc = cls_score(cs, emb, m, dim, prob, &err)) != 0) {
		rc = srv_fail_cdx(c, rc, &err);
		goto out;
	}

	cJSON *r = cJSON_CreateObject();
	cJSON_AddStringToObject(r, "mode", cs->kind == CLS_SIGMOID ? "sigmoid" :
	    "softmax");
	if (cJSON_GetObjectItemCaseSensitive(c->req, "set") != NULL)
		cJSON_AddStringToObject(r, "set", cs->name);
	cJSON *arr = cJSON_AddArrayToObject(r, "results");
	for (i = 0; i < m; i++) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddItemToArray(arr, o);
		if (it[i].img != NULL) {
			cJSON_AddNumberToObject(o, "id", (double)it[i].img->id);
			cJSON_AddStringToObject(o, "path", it[i].img->path);
		}
		for (uint32_t k = 0; k < cs->n; k++)
			rk[k] = (ranked){ prob[i * cs->n + k], k };
		qsort(rk, cs->n, sizeof(*rk), by_prob_desc);
		cJSON *l = cJSON_AddArrayToObject(o, "labels");
		for (size_t k = 0; k < cs->n && k < (size_t)top; k++) {
			cJSON *lp = cJSON_CreateObject();
			cJSON_AddItemToArray(l, lp);
			cJSON_AddStringToObject(lp, "label", cs->labels[rk[k].i]);
			cJSON_AddNumberToObject(lp, "prob", (double)rk[k].p);
		}
	}
	cJSON_AddNumberToObject(r, "took_ms", (srv_now() - t0) * 1000.0);
	srv_reply_ok(c, r);
	rc = 0;
	goto out;
oom:
	rc = srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
out:
	for (i = 0; it != NULL && i < m; i++)
		store_image_free(it[i].img);
	free(it);
	free(emb);
	free(prob);
	free(rk);
	cls_set_free(cs);
	return rc;
}
