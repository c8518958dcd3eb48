/*
 * dupes_op.c - the daemon's dupes and check operations (docs/PROTOCOL.md),
 * on the dupes module (dupes/dupes.h).  The groupings are kept in the
 * daemon's dupes_cache (srv.dupes) for the following pages.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/srv_internal.h"
#include "dupes/dupes.h"

/* ---- the dupes operation ---- */

static cJSON *
image_json(const store_image *img, float score)
{
	store_hit h = {
		.id = img->id, .score = score, .path = img->path,
		.size = img->size, .mtime_ns = img->mtime_ns,
		.capture_time = img->capture_time, .added = img->added,
		.width = img->width, .height = img->height,
		.kind = img->kind, .time_ms = img->time_ms,
	};
	return srv_hit_json(&h, NAN);
}

static int
parse_kind(srv_call *c, int *kind)
{
	const cJSON *k = cJSON_GetObjectItemCaseSensitive(c->req, "kind");
	*kind = DUPES_NEAR;
	if (k == NULL || cJSON_IsNull(k))
		return 0;
	for (int i = DUPES_EXACT; i <= DUPES_SIMILAR; i++)
		if (cJSON_IsString(k) && strcmp(k->valuestring,
		    dupes_kind_name(i)) == 0) {
			*kind = i;
			return 0;
		}
	return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'kind' must be \"exact\", \"near\", "
	    "\"similar\" or \"clips\"");
}

/* Appends groups [offset, offset + limit) of r to arr. */
static int
page_json(srv_call *c, const dupes_result *r, size_t offset, size_t limit,
    cJSON *arr)
{
	for (size_t g = offset; g < r->n_groups && g < offset + limit; g++) {
		cJSON *o = cJSON_CreateObject(), *m;
		char reason[96];
		if (o == NULL)
			return srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
		cJSON_AddItemToArray(arr, o);
		cJSON_AddStringToObject(o, "kind", dupes_kind_name(r->kind));
		cJSON_AddNumberToObject(o, "size", (double)(r->lims[g + 1] -
		    r->lims[g]));
		cJSON_AddNumberToObject(o, "keep", (double)r->ids[r->lims[g]]);
		m = cJSON_AddArrayToObject(o, "members");
		for (size_t k = r->lims[g]; k < r->lims[g + 1]; k++) {
			store_image *img = NULL;
			cdx_error err;
			int rc = store_image_get(c->s->st, r->ids[k], &img, &err);
			if (rc == CDX_ENOTFOUND)
				continue;       /* removed since the grouping */
			if (rc != 0)
				return srv_fail_cdx(c, rc, &err);
			cJSON *h = image_json(img, r->scores[k]);
			if (k == r->lims[g]) {
				cJSON_AddTrueToObject(h, "keep");
				if (r->reasons[g] == DUPES_BY_RESOLUTION)
					snprintf(reason, sizeof(reason), "%s (%ux%u)",
					    dupes_reason_name(r->reasons[g]),
					    img->width, img->height);
				else
					snprintf(reason, sizeof(reason), "%s",
					    dupes_reason_name(r->reasons[g]));
				cJSON_AddStringToObject(o, "reason", reason);
			}
			cJSON_AddItemToArray(m, h);
			store_image_free(img);
		}
	}
	return 0;
}

static cJSON *
side_json(const dupes_clip_side *s)
{
	cJSON *o = cJSON_CreateObject();
	if (o == NULL)
		return NULL;
	cJSON_AddStringToObject(o, "path", s->path);
	cJSON_AddNumberToObject(o, "frames", s->frames);
	cJSON_AddNumberToObject(o, "id", (double)s->id);
	cJSON_AddNumberToObject(o, "time", (double)s->time_ms / 1000.0);
	return o;
}

/* kind "clips": video clips compared by their frames (dupes_clips), a
 * page of the pairs found. */
static int
clips_op(srv_call *c, double t0)
{
	dupes_clip_params p = { .dim = c->s->info->embed_dim,
		.family = c->s->info->family };
	double thr = 0, frac = 0;
	long offset = 0, limit = 100;
	dupes_clip_result *r;
	cdx_error err;
	int rc;

	if (srv_get_num(c, c->req, "threshold", 1e-6, 1, NULL, &thr) != 0 ||
	    srv_get_num(c, c->req, "near_fraction", 1e-6, 1, NULL, &frac) != 0 ||
	    srv_get_int(c, c->req, "offset", 0, LONG_MAX, NULL, &offset) != 0 ||
	    srv_get_int(c, c->req, "limit", 1, 1000, "the maximum is 1000",
	    &limit) != 0 ||
	    srv_get_str(c, c->req, "path_prefix", &p.path_prefix) != 0)
		return -1;
	p.threshold = (float)thr;
	p.near_fraction = (float)frac;
	if ((rc = dupes_clips(c->s->st, &p, &r, &err)) != 0)
		return srv_fail_cdx(c, rc, &err);
	cJSON *o = cJSON_CreateObject(), *arr;
	if (o == NULL || (arr = cJSON_AddArrayToObject(o, "pairs")) == NULL) {
		cJSON_Delete(o);
		dupes_clip_result_free(r);
		return srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
	}
	cJSON_AddStringToObject(o, "kind", "clips");
	cJSON_AddNumberToObject(o, "threshold", r->threshold);
	cJSON_AddNumberToObject(o, "near_fraction", r->near_fraction);
	cJSON_AddNumberToObject(o, "total_clips", (double)r->n_clips);
	cJSON_AddNumberToObject(o, "total_frames", (double)r->n_frames);
	cJSON_AddNumberToObject(o, "total_pairs", (double)r->n_pairs);
	for (size_t i = (size_t)offset; i < r->n_pairs &&
	    i < (size_t)offset + (size_t)limit; i++) {
		const dupes_clip_pair *q = &r->pairs[i];
		cJSON *x = cJSON_CreateObject();
		if (x == NULL)
			break;
		cJSON_AddItemToArray(arr, x);
		cJSON_AddStringToObject(x, "relation",
		    dupes_clip_relation_name(q->relation));
		cJSON_AddNumberToObject(x, "matched", q->matched);
		cJSON_AddNumberToObject(x, "score", q->score);
		cJSON_AddItemToObject(x, "a", side_json(&q->a));
		cJSON_AddItemToObject(x, "b", side_json(&q->b));
	}
	if ((size_t)offset + (size_t)limit < r->n_pairs)
		cJSON_AddNumberToObject(o, "next_offset", (double)(offset + limit));
	else
		cJSON_AddNullToObject(o, "next_offset");
	cdx_log(CDX_LOG_INFO, "dupes: %zu clip pairs among %zu clips (%zu "
	    "frames)", r->n_pairs, r->n_clips, r->n_frames);
	dupes_clip_result_free(r);
	cJSON_AddNumberToObject(o, "took_ms", (srv_now() - t0) * 1000.0);
	srv_reply_ok(c, o);
	return 0;
}

int
dupes_op(srv_call *c)
{
	double t0 = srv_now();
	dupes_params p = { .dim = c->s->info->embed_dim };
	double thr = 0, near_thr = 0;
	long offset = 0, limit = 100;
	cdx_error err;
	int rc;

	const cJSON *k = cJSON_GetObjectItemCaseSensitive(c->req, "kind");
	if (cJSON_IsString(k) && strcmp(k->valuestring, "clips") == 0)
		return clips_op(c, t0);
	if (parse_kind(c, &p.kind) != 0 ||
	    srv_get_num(c, c->req, "threshold", 1e-6, 1, NULL, &thr) != 0 ||
	    srv_get_num(c, c->req, "near_threshold", 1e-6, 1, NULL, &near_thr)
	    != 0 ||
	    srv_get_int(c, c->req, "offset", 0, LONG_MAX, NULL, &offset) != 0 ||
	    srv_get_int(c, c->req, "limit", 1, 1000, "the maximum is 1000",
	    &limit) != 0 ||
	    srv_get_str(c, c->req, "path_prefix", &p.path_prefix) != 0)
		return -1;
	p.family = c->s->info->family;
	p.threshold = p.kind == DUPES_EXACT ? 0 : (float)thr;
	if (p.threshold == 0 && p.kind != DUPES_EXACT)
		p.threshold = dupes_default_threshold(p.family, p.kind);
	p.near_threshold = near_thr != 0 ? (float)near_thr :
	    dupes_default_threshold(p.family, DUPES_NEAR);
	const dupes_result *r = NULL;
	int computed = 0;
	if ((rc = dupes_cache_find(c->s->dupes, &p, &r, &computed, &err)) != 0)
		return srv_fail_cdx(c, rc, &err);
	if (computed)
		cdx_log(CDX_LOG_INFO, "dupes: %zu %s groups among %zu images in "
		    "%.2f s", r->n_groups, dupes_kind_name(p.kind), r->n_images,
		    r->seconds);

	cJSON *o = cJSON_CreateObject();
	if (o == NULL) {
		dupes_cache_release(c->s->dupes, r);
		return srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
	}
	cJSON_AddStringToObject(o, "kind", dupes_kind_name(r->kind));
	cJSON_AddNumberToObject(o, "threshold", r->threshold);
	cJSON_AddNumberToObject(o, "seq", (double)r->seq);
	cJSON_AddNumberToObject(o, "total_groups", (double)r->n_groups);
	cJSON_AddNumberToObject(o, "total_images",
	    (double)r->lims[r->n_groups]);
	if ((size_t)offset + (size_t)limit < r->n_groups)
		cJSON_AddNumberToObject(o, "next_offset", (double)(offset + limit));
	else
		cJSON_AddNullToObject(o, "next_offset");
	rc = page_json(c, r, (size_t)offset, (size_t)limit,
	    cJSON_AddArrayToObject(o, "groups"));
	dupes_cache_release(c->s->dupes, r);
	if (rc != 0) {
		cJSON_Delete(o);
		return -1;
	}
	cJSON_AddNumberToObject(o, "took_ms", (srv_now() - t0) * 1000.0);
	srv_reply_ok(c, o);
	return 0;
}

/* ---- the check operation ---- */

/* The bytes of the request's image or path. */
static int
check_bytes(srv_call *c, uint8_t **data, size_t *len)
{
	const cJSON *im = cJSON_GetObjectItemCaseSensitive(c->req, "image");
	const cJSON *pa = cJSON_GetObjectItemCaseSensitive(c->req, "path");

	if (cJSON_IsString(im) == cJSON_IsString(pa) || (im != NULL &&
	    !cJSON_IsString(im)) || (pa != NULL && !cJSON_IsString(pa)))
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "check needs one of 'image' "
		    "(base64) or 'path'");
	return srv_image_bytes(c, im, pa, data, len);
}

int
dupes_op_check(srv_call *c)
{
	double t0 = srv_now();
	double thr = dupes_default_threshold(c->s->info->family, DUPES_NEAR);
	long k = 10;
	uint8_t *data = NULL;
	size_t len = 0, n_exact = 0;
	uint64_t ids[64];
	float *q = NULL;
	store_results *res = NULL;
	cJSON *o = NULL, *ex, *nr;
	cdx_error err;
	int rc;

	if (srv_get_num(c, c->req, "threshold", 1e-6, 1, NULL, &thr) != 0 ||
	    srv_get_int(c, c->req, "k", 1, SRV_K_MAX, "the maximum is 1000", &k)
	    != 0 || check_bytes(c, &data, &len) != 0)
		return -1;
	rc = -1;
	uint8_t hash[STORE_HASH_LEN];
	store_content_hash(data, len, hash);
	free(data);
	if ((q = malloc(sizeof(float) * (size_t)c->s->info->embed_dim)) == NULL) {
		srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
		goto out_free;
	}
	/* The embedding: the request's image/path is its one query term. */
	if (srv_query_vector(c, q, NULL) != 0)
		goto out_free;
	if ((rc = store_image_find_hash(c->s->st, hash, ids, 64, &n_exact,
	    &err)) != 0 || (rc = store_search(c->s->st, q, (size_t)k, NULL, &res,
	    &err)) != 0) {
		rc = srv_fail_cdx(c, rc, &err);
		goto out_free;
	}
	o = cJSON_CreateObject();
	ex = cJSON_AddArrayToObject(o, "exact");
	nr = cJSON_AddArrayToObject(o, "near");
	size_t n_found = 0;
	for (size_t i = 0; i < n_exact && i < 64; i++) {
		store_image *img = NULL;
		if (store_image_get(c->s->st, ids[i], &img, NULL) != 0)
			continue;
		cJSON_AddItemToArray(ex, image_json(img, 1.0f));
		store_image_free(img);
		n_found++;
	}
	for (size_t i = 0; i < res->n && res->hits[i].score >= thr; i++) {
		cJSON_AddItemToArray(nr, srv_hit_json(&res->hits[i], NAN));
		n_found++;
	}
	cJSON_AddBoolToObject(o, "duplicate", n_found > 0);
	cJSON_AddNumberToObject(o, "threshold", thr);
	cJSON_AddNumberToObject(o, "took_ms", (srv_now() - t0) * 1000.0);
	srv_reply_ok(c, o);
	rc = 0;
out_free:
	store_results_free(res);
	free(q);
	return rc;
}
