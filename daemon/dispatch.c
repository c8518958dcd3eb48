/*
 * dispatch.c - one JSON request in, one JSON reply out (docs/PROTOCOL.md).
 * Runs on a worker thread; the same code serves nng and HTTP.
 */
#include <assert.h>
#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/query.h"
#include "common/vec.h"
#include "daemon/cluster_op.h"
#include "daemon/dispatch.h"
#include "daemon/ingest.h"
#include "daemon/learn_op.h"
#include "daemon/request.h"
#include "daemon/roots.h"
#include "daemon/srv_internal.h"

/* ---- query vectors ---- */

enum { TERM_TEXT, TERM_IMAGE, TERM_PATH, TERM_ID, TERM_LEARNED };

typedef struct term {
	int kind;
	const cJSON *src;
	float weight;
} term;

static int
parse_term(srv_call *c, const cJSON *t, term *out)
{
	static const char *const keys[] = { "text", "image", "path", "id",
	    "learned" };
	int found = 0;
	double w = 1.0;

	if (!cJSON_IsObject(t))
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "a term must be an object");
	for (int k = 0; k < 5; k++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(t, keys[k]);
		if (v == NULL)
			continue;
		if (found++)
			return srv_fail(c, CDX_PROTO_BAD_REQUEST, "a term has exactly one "
			    "of text, image, path, id, learned");
		out->kind = k;
		out->src = v;
		if (k == TERM_ID ? !cJSON_IsNumber(v) : !cJSON_IsString(v))
			return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'%s' must be a %s",
			    keys[k], k == TERM_ID ? "number" : "string");
	}
	if (!found)
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "a query needs text, image, "
		    "path, id or learned (or terms)");
	if (srv_get_num(c, t, "weight", -1e6, 1e6, NULL, &w) != 0)
		return -1;
	out->weight = (float)w;
	return 0;
}

int
srv_image_bytes(srv_call *c, const cJSON *image, const cJSON *path,
    uint8_t **data, size_t *len)
{
	const srv_config *cfg = c->s->cfg;
	cdx_error err;
	int rc;

	if (image != NULL) {
		const char *b = image->valuestring;
		size_t blen = strlen(b);
		if (blen / 4 * 3 > cfg->max_image_bytes + 3)
			return srv_fail(c, CDX_PROTO_TOO_LARGE, "the image is over the "
			    "limit of %zu bytes", cfg->max_image_bytes);
		uint8_t *d = malloc(blen / 4 * 3 + 3);
		if (d == NULL)
			return srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
		long n = srv_base64_decode(b, blen, d);
		if (n < 0) {
			free(d);
			return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'image' is not valid "
			    "base64");
		}
		*data = d;
		*len = (size_t)n;
		return 0;
	}
	char canon[PATH_MAX];
	rc = roots_check(&c->s->roots, path->valuestring, canon, sizeof(canon), 0);
	if (rc == CDX_EPERM)
		return srv_fail(c, CDX_PROTO_FORBIDDEN, "%s is outside the daemon's "
		    "roots", path->valuestring);
	if (rc != 0)
		return srv_fail(c,
		    rc == CDX_EINVAL ? CDX_PROTO_BAD_REQUEST : CDX_PROTO_NOT_FOUND,
		    "%s: %s", path->valuestring,
		    rc == CDX_EINVAL ? "not an absolute path" : "no such file");
	if ((rc = roots_read_file(canon, cfg->max_image_bytes, data, len, &err))
	    != 0)
		return srv_fail_cdx(c, rc, &err);
	return 0;
}

int
srv_image_pixels(srv_call *c, const cJSON *image, const cJSON *path,
    int exact, float *pixels)
{
	const clip_preprocess_cfg *pp = &c->s->info->preprocess;
	clip_decode_opts dopt = { .max_pixels = c->s->cfg->max_pixels,
	    .min_short = exact ? 0 : clip_preprocess_min_short(pp) };
	clip_image img;
	cdx_error err;
	uint8_t *data = NULL;
	size_t len = 0;
	int rc;

	if (srv_image_bytes(c, image, path, &data, &len) != 0)
		return -1;
	rc = clip_image_decode(data, len, &dopt, &img, &err);
	free(data);
	if (rc != 0)
		return srv_fail_cdx(c, rc, &err);
	rc = clip_image_preprocess(&img, pp, pixels, &err);
	clip_image_free(&img);
	if (rc != 0)
		return srv_fail_cdx(c, rc, &err);
	return 0;
}

/* Decodes one image term into pixels for the encoder. */
static int
term_pixels(srv_call *c, const term *t, int exact, float *pixels)
{
	return srv_image_pixels(c, t->kind == TERM_IMAGE ? t->src : NULL,
	    t->kind == TERM_PATH ? t->src : NULL, exact, pixels);
}

int
srv_image_lookup(srv_call *c, const cJSON *id, const cJSON *path,
    store_image **img)
{
	cdx_error err;
	int rc;

	if (id != NULL) {
		double idv = cJSON_IsNumber(id) ? id->valuedouble : 0;
		if (idv < 1 || idv != floor(idv) || idv > 9007199254740992.0)
			return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'id' must be a "
			    "positive integer");
		rc = store_image_get(c->s->st, (uint64_t)idv, img, &err);
		if (rc == CDX_ENOTFOUND)
			return srv_fail(c, CDX_PROTO_NOT_FOUND, "no image with id %.0f",
			    idv);
	} else {
		if (!cJSON_IsString(path))
			return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'path' must be a "
			    "string");
		rc = store_image_get_by_path(c->s->st, path->valuestring, img,
		    &err);
		if (rc == CDX_ENOTFOUND)
			return srv_fail(c, CDX_PROTO_NOT_FOUND, "no indexed image at "
			    "%.400s", path->valuestring);
	}
	return rc == 0 ? 0 : srv_fail_cdx(c, rc, &err);
}

/* Builds the query vector of the request's terms into q: the weighted
 * sum of their (unit) embeddings, normalised once. */
int
srv_query_vector(srv_call *c, float *q, int *text_only)
{
	srv *s = c->s;
	int dim = s->info->embed_dim;
	const clip_preprocess_cfg *pp = &s->info->preprocess;
	size_t plane = (size_t)pp->crop_width * pp->crop_height * 3;
	const cJSON *terms = cJSON_GetObjectItemCaseSensitive(c->req, "terms");
	term t[SRV_TERMS_MAX];
	int n = 0, n_text = 0, n_img = 0, exact = srv_get_bool(c->req, "exact");
	int32_t *ids = NULL;
	float *pixels = NULL, *emb = NULL;
	cdx_error err;
	int rc = -1;

	if (terms != NULL) {
		const cJSON *e;
		if (!cJSON_IsArray(terms) || cJSON_GetArraySize(terms) == 0)
			return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'terms' must be a "
			    "non-empty array");
		if (cJSON_GetArraySize(terms) > SRV_TERMS_MAX)
			return srv_fail(c, CDX_PROTO_TOO_LARGE, "at most %d terms",
			    SRV_TERMS_MAX);
		cJSON_ArrayForEach(e, terms)
			if (parse_term(c, e, &t[n++]) != 0)
				return -1;
	} else if (parse_term(c, c->req, &t[n++]) != 0) {
		return -1;
	}
	for (int i = 0; i < n; i++) {
		n_text += t[i].kind == TERM_TEXT;
		n_img += t[i].kind == TERM_IMAGE || t[i].kind == TERM_PATH;
	}
	if (text_only != NULL)
		*text_only = n_text == n;
	size_t ctx = (size_t)s->info->context_len;
	ids = malloc(sizeof(*ids) * ctx * (size_t)(n_text + 1));
	pixels = malloc(sizeof(*pixels) * plane * (size_t)(n_img + 1));
	emb = malloc(sizeof(*emb) * (size_t)dim * (size_t)(n + 1));
	if (ids == NULL || pixels == NULL || emb == NULL) {
		srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
		goto out;
	}

	/* Texts in one batch, images in one batch, ids from the store. */
	int ti = 0, ii = 0;
	for (int i = 0; i < n; i++) {
		if (t[i].kind == TERM_TEXT) {
			const char *txt = t[i].src->valuestring;
			if ((rc = clip_tokenize(clip_model_tokenizer(s->model), txt,
			    strlen(txt), ids + ti++ * ctx, NULL, &err)) != 0) {
				srv_fail_cdx(c, rc, &err);
				rc = -1;
				goto out;
			}
		} else if (t[i].kind != TERM_ID && t[i].kind != TERM_LEARNED) {
			if ((rc = term_pixels(c, &t[i], exact, pixels + plane * ii++)) != 0)
				goto out;
		}
	}
	float *temb = emb, *iemb = emb + (size_t)n_text * dim;
	if (n_text > 0 && (rc = clip_encode_text(c->w->ctx, ids, n_text, temb,
	    &err)) != 0) {
		srv_fail_cdx(c, rc, &err);
		rc = -1;
		goto out;
	}
	if (n_img > 0 && (rc = clip_encode_images(c->w->ctx, pixels, n_img, iemb,
	    &err)) != 0) {
		srv_fail_cdx(c, rc, &err);
		rc = -1;
		goto out;
	}
	memset(q, 0, sizeof(*q) * (size_t)dim);
	ti = ii = 0;
	for (int i = 0; i < n; i++) {
		const float *e;
		store_image *img = NULL;
		if (t[i].kind == TERM_TEXT) {
			e = temb + (size_t)ti++ * dim;
		} else if (t[i].kind == TERM_LEARNED) {
			/* its direction: w/|w| (learn_op.h) */
			float *u = iemb + (size_t)n_img * dim;
			if (learn_term_vector(c, t[i].src->valuestring, u) != 0) {
				rc = -1;
				goto out;
			}
			e = u;
		} else if (t[i].kind == TERM_ID) {
			if ((rc = srv_image_lookup(c, t[i].src, NULL, &img)) != 0)
				goto out;
			e = img->embedding;
		} else {
			e = iemb + (size_t)ii++ * dim;
		}
		assert(cdx_vec_is_unit(e, dim));        /* encoder/clip.h */
		for (int d = 0; d < dim; d++)
			q[d] += t[i].weight * e[d];
		store_image_free(img);
	}
	/* The terms' sum is not unit length: it is normalised here, once
	 * (encoder/clip.h). */
	if (cdx_vec_normalise(q, dim) != 0) {
		srv_fail(c, CDX_PROTO_BAD_REQUEST, "the query's terms cancel out");
		rc = -1;
		goto out;
	}
	rc = 0;
out:
	free(ids);
	free(pixels);
	free(emb);
	return rc;
}

/* ---- search and similar ---- */

int
srv_parse_search_opts(srv_call *c, srv_search_opts *o)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(c->req, "filter");
	char toobig[64];

	memset(o, 0, sizeof(*o));
	o->k = 10;
	snprintf(toobig, sizeof(toobig), "the maximum is %d", SRV_K_MAX);
	if (srv_get_int(c, c->req, "k", 1, SRV_K_MAX, toobig, &o->k) != 0 ||
	    srv_get_int(c, c->req, "offset", 0, SRV_WINDOW_MAX, "too far", &o->offset)
	    != 0 ||
	    srv_get_num(c, c->req, "min_score", -1, 1, &o->has_min, &o->min_score) != 0
	    || srv_get_num(c, c->req, "min_prob", 0, 1, &o->has_min_prob,
	    &o->min_prob) != 0
	    || srv_get_num(c, c->req, "collapse", 0, 1, NULL, &o->collapse) != 0)
		return -1;
	/* (a learned ranking, and rerank's, has its probe's probability:
	 * learn_op.h) */
	if (o->has_min_prob && !c->s->info->has_sigmoid &&
	    learn_probe_query(c->req) == NULL && strcmp(c->op, "rerank") != 0)
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "min_prob needs a model "
		    "trained with the sigmoid loss (SigLIP); %s is %s, whose scores "
		    "have no probability scale", c->s->info->name,
		    clip_family_name(c->s->info->family));
	if (o->k + o->offset > SRV_WINDOW_MAX)
		return srv_fail(c, CDX_PROTO_TOO_LARGE, "offset + k is over %d",
		    SRV_WINDOW_MAX);
	if (tags_parse_filter(c, o) != 0)
		return -1;
	if (f == NULL || cJSON_IsNull(f))
		return 0;
	if (!cJSON_IsObject(f))
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'filter' must be an object");
	if (srv_get_str(c, f, "path_prefix", &o->filter.path_prefix) != 0)
		return -1;
	const cJSON *tf = cJSON_GetObjectItemCaseSensitive(f, "time");
	if (tf != NULL && !cJSON_IsNull(tf)) {
		if (cJSON_IsString(tf) && strcmp(tf->valuestring, "capture") == 0)
			o->filter.time_field = STORE_TIME_CAPTURE;
		else if (cJSON_IsString(tf) && strcmp(tf->valuestring, "mtime") == 0)
			o->filter.time_field = STORE_TIME_MTIME;
		else
			return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'time' must be "
			    "\"capture\" or \"mtime\"");
		long from = LONG_MIN, to = LONG_MAX;
		if (srv_get_int(c, f, "from", LONG_MIN, LONG_MAX, NULL, &from) != 0 ||
		    srv_get_int(c, f, "to", LONG_MIN, LONG_MAX, NULL, &to) != 0)
			return -1;
		o->filter.time_min = from;
		o->filter.time_max = to;
	}
	return 0;
}

cJSON *
srv_hit_json(const store_hit *h, double prob)
{
	cJSON *o = cJSON_CreateObject();
	if (o == NULL)
		return NULL;
	cJSON_AddNumberToObject(o, "id", (double)h->id);
	cJSON_AddStringToObject(o, "path", h->path);
	cJSON_AddNumberToObject(o, "score", (double)h->score);
	if (!isnan(prob))
		cJSON_AddNumberToObject(o, "prob", prob);
	cJSON_AddNumberToObject(o, "width", h->width);
	cJSON_AddNumberToObject(o, "height", h->height);
	cJSON_AddNumberToObject(o, "size", (double)h->size);
	int64_t mt = h->mtime_ns >= 0 ? h->mtime_ns / 1000000000 :
	    -((-h->mtime_ns + 999999999) / 1000000000);
	cJSON_AddNumberToObject(o, "mtime", (double)mt);
	if (h->capture_time == STORE_TIME_UNKNOWN)
		cJSON_AddNullToObject(o, "capture_time");
	else
		cJSON_AddNumberToObject(o, "capture_time", (double)h->capture_time);
	cJSON_AddNumberToObject(o, "added", (double)h->added);
	if (h->kind == STORE_KIND_FRAME) {
		/* A frame of a video clip: path is the clip's, time the
		 * frame's (seconds, to the millisecond). */
		cJSON_AddStringToObject(o, "kind", "frame");
		cJSON_AddNumberToObject(o, "time", (double)h->time_ms / 1000.0);
	}
	return o;
}

/* Picking the results out of the candidates, best first: sel[0..n) are
 * the indices in the candidates of the hits kept so far (prob[] their
 * match probabilities), next the first candidate not yet looked at, stop
 * set once min_score or min_prob cut the list. */
typedef struct picker {
	size_t *sel;
	double *prob;
	size_t n, want, next;
	int stop;
} picker;

/* Goes on through res->hits[p->next ..) until p->want hits are kept,
 * skipping `exclude`, and with collapse a hit at least that similar to one
 * kept before it (the embeddings come with the hits: store_search_vectors).
 * Each candidate is looked at once. */
static void
pick_hits(srv_call *c, const store_results *res, const srv_search_opts *o,
    uint64_t exclude, picker *p)
{
	int dim = c->s->info->embed_dim;

	for (; p->next < res->n && p->n < p->want; p->next++) {
		const store_hit *h = &res->hits[p->next];
		if (h->id == exclude)
			continue;
		/* Scores are float32: the bound compares as one, so a score this
		 * daemon printed, passed back as min_score, keeps its hit (the
		 * JSON double may be a hair above the float). */
		if (o->has_min && h->score < (float)o->min_score) {
			p->stop = 1;    /* best first: the rest are lower */
			break;
		}
		double prob = NAN;
		if (o->has_probe)
			prob = learn_prob(o, h->score);
		else if (o->with_prob)
			clip_match_prob(c->s->info, h->score, &prob);
		/* prob rises with the score: the first one under the bound
		 * ends the list too */
		if (o->has_min_prob && !(prob >= o->min_prob)) {
			p->stop = 1;
			break;
		}
		if (o->collapse > 0) {
			int dup = 0;
			for (size_t j = 0; j < p->n && !dup; j++)
				dup = cdx_vec_dot(res->hits[p->sel[j]].embedding, h->embedding,
				    dim) >= (float)o->collapse;
			if (dup)
				continue;
		}
		p->sel[p->n] = p->next;
		p->prob[p->n++] = prob;
	}
}

/* 1 when the first n hits of a and b are the same images. */
static int
same_prefix(const store_results *a, const store_results *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (i >= a->n || i >= b->n || a->hits[i].id != b->hits[i].id)
			return 0;
	return 1;
}

/* Runs the search for q and answers with results [offset, offset + k),
 * skipping `exclude` (0: none), near-identical results (collapse) and
 * those under min_score.  Collapsing drops hits: it looks at twice as many
 * candidates as it needs, and when fewer survive (and the collection has
 * more) the index is searched deeper (k doubled: FAISS cannot resume a
 * search) and the picking goes on where it stopped, as long as the deeper
 * search ranks the candidates already seen the same way.  The candidates
 * carry their vectors (dim * 4 bytes each; at most 8 * SRV_WINDOW_MAX of
 * them, reached only when nearly every candidate is a copy). */
struct no_time_count {
	const char *prefix;
	int64_t n;
};

static int
count_no_time(void *user, const store_image *img)
{
	struct no_time_count *t = user;
	t->n += img->capture_time == STORE_TIME_UNKNOWN &&
	    store_path_has_prefix(img->path, strlen(img->path), t->prefix);
	return 0;
}

/* The images under the filter's path_prefix (a byte prefix: the folder
 * cursor starts at its last '/') with no capture time, which a capture
 * time filter never matches; -1 when they cannot be counted. */
static int64_t
images_without_capture_time(srv *s, const char *prefix)
{
	struct no_time_count t = { prefix, 0 };
	char dir[STORE_PATH_MAX + 1] = "/";
	const char *slash = prefix ? strrchr(prefix, '/') : NULL;

	if (prefix != NULL && prefix[0] == '/' && slash != NULL &&
	    (size_t)(slash - prefix) < sizeof(dir))
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - prefix + 1),
		    prefix);
	if (store_image_foreach_prefix(s->st, dir, count_no_time, &t, NULL) != 0)
		return -1;
	return t.n;
}

static int
search_and_reply(srv_call *c, const float *q, const srv_search_opts *o,
    uint64_t exclude, double t0)
{
	srv *s = c->s;
	size_t want = (size_t)(o->k + o->offset);
	size_t fetch = want + (exclude != 0);
	const store_filter *f = o->filter.path_prefix || o->filter.time_field ||
	    o->filter.n_tags || o->filter.n_not_tags ? &o->filter : NULL;
	store_results *res = NULL, *deeper = NULL;
	picker p = { .want = want };
	cdx_error err;
	int rc = -1;

	p.sel = malloc(sizeof(*p.sel) * (want ? want : 1));
	p.prob = malloc(sizeof(*p.prob) * (want ? want : 1));
	if (p.sel == NULL || p.prob == NULL) {
		srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
		goto out_free;
	}
	if (o->collapse > 0)
		fetch *= 2;
	for (;;) {
		rc = o->collapse > 0 ?
		    store_search_vectors(s->st, q, fetch, f, &deeper, &err) :
		    store_search(s->st, q, fetch, f, &deeper, &err);
		if (rc != 0) {
			rc = srv_fail_cdx(c, rc, &err);
			goto out_free;
		}
		if (res != NULL && !same_prefix(res, deeper, p.next)) {
			p.n = p.next = 0;       /* ties ranked anew: start over */
			p.stop = 0;
		}
		store_results_free(res);
		res = deeper;
		deeper = NULL;
		pick_hits(c, res, o, exclude, &p);
		if (o->collapse <= 0 || p.n >= want || p.stop || res->n < fetch ||
		    fetch >= 8 * (size_t)SRV_WINDOW_MAX)
			break;
		fetch *= 2;
	}
	cJSON *r = cJSON_CreateObject();
	cJSON *arr = cJSON_AddArrayToObject(r, "results");
	for (size_t i = (size_t)o->offset; i < p.n; i++) {
		cJSON *h = srv_hit_json(&res->hits[p.sel[i]], p.prob[i]);
		cJSON_AddItemToArray(arr, h);
		if (tags_hit_json(c, h, res->hits[p.sel[i]].id) != 0) {
			cJSON_Delete(r);
			rc = -1;
			goto out_free;
		}
	}
	/* A capture time filter that left the page short: say how many
	 * candidates it could never match (no EXIF time; --time mtime). */
	if (o->filter.time_field == STORE_TIME_CAPTURE && p.n < want) {
		int64_t n = images_without_capture_time(s, o->filter.path_prefix);
		if (n >= 0)
			cJSON_AddNumberToObject(r, "no_capture_time", (double)n);
	}
	cJSON_AddNumberToObject(r, "took_ms", (srv_now() - t0) * 1000.0);
	srv_reply_ok(c, r);
	rc = 0;
out_free:
	store_results_free(res);
	free(p.sel);
	free(p.prob);
	return rc;
}

static int
op_search(srv_call *c)
{
	double t0 = srv_now();
	srv_search_opts o;
	float *q = malloc(sizeof(float) * (size_t)c->s->info->embed_dim);
	int rc = -1;

	if (q == NULL)
		return srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
	int text_only = 0;
	if (srv_parse_search_opts(c, &o) != 0 ||
	    srv_query_vector(c, q, &text_only) != 0 ||
	    learn_search_probe(c, &o) != 0)
		goto out_free;
	/* The sigmoid was trained on text-image pairs: an image's cosine to
	 * another image has no such scale. */
	o.with_prob = c->s->info->has_sigmoid && text_only;
	if (o.has_min_prob && !o.with_prob && !o.has_probe) {
		rc = srv_fail(c, CDX_PROTO_BAD_REQUEST, "min_prob applies to text "
		    "queries (a probability that an image matches a text); this query "
		    "has image terms");
		goto out_free;
	}
	int plan = srv_get_bool(c->req, "plan");
	if (plan && c->s->cluster == NULL)
		rc = srv_fail(c, CDX_PROTO_BAD_REQUEST, "plan is for the clients "
		    "of a cluster: this daemon was not started with --nats");
	else if (plan)
		rc = clusterd_plan(c, q, &o);
	else
		rc = c->s->cluster != NULL ? clusterd_search(c, q, &o, t0) :
		    search_and_reply(c, q, &o, 0, t0);
out_free:
	free(q);
	return rc;
}

int
srv_search_reply(srv_call *c, const float *q, const srv_search_opts *o,
    double t0)
{
	return search_and_reply(c, q, o, 0, t0);
}

static int
op_similar(srv_call *c)
{
	double t0 = srv_now();
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(c->req, "id");
	const cJSON *path = cJSON_GetObjectItemCaseSensitive(c->req, "path");
	store_image *img = NULL;
	srv_search_opts o;
	cdx_error err;
	int rc;

	if (srv_parse_search_opts(c, &o) != 0)
		return -1;
	if (o.has_min_prob)
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "min_prob applies to text "
		    "queries, not to similar");
	if (cJSON_IsNumber(id) && id->valuedouble >= 1)
		rc = store_image_get(c->s->st, (uint64_t)id->valuedouble, &img, &err);
	else if (cJSON_IsString(path))
		rc = store_image_get_by_path(c->s->st, path->valuestring, &img, &err);
	else
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "similar needs 'id' (a "
		    "positive integer) or 'path' (of an indexed image)");
	if (rc == CDX_ENOTFOUND)
		return srv_fail(c, CDX_PROTO_NOT_FOUND, "that image is not in the "
		    "index");
	if (rc != 0)
		return srv_fail_cdx(c, rc, &err);
	rc = search_and_reply(c, img->embedding, &o, img->id, t0);
	store_image_free(img);
	return rc;
}

static int
op_embed(srv_call *c)
{
	int dim = c->s->info->embed_dim;
	float *q = malloc(sizeof(float) * (size_t)dim);
	int rc = -1;

	if (q == NULL)
		return srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
	if (srv_query_vector(c, q, NULL) == 0) {
		cJSON *r = cJSON_CreateObject();
		cJSON_AddNumberToObject(r, "dim", dim);
		cJSON_AddStringToObject(r, "model", c->s->info->id);
		cJSON_AddItemToObject(r, "embedding", cJSON_CreateFloatArray(q, dim));
		srv_reply_ok(c, r);
		rc = 0;
	}
	free(q);
	return rc;
}

/* ---- collection ---- */

static int
op_add(srv_call *c)
{
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(c->req, "path");
	char canon[PATH_MAX];
	int rc;

	if (!cJSON_IsString(p))
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "add needs 'path'");
	rc = roots_check(&c->s->roots, p->valuestring, canon, sizeof(canon),
	    c->job->origin == SRV_ORIGIN_LOCAL);
	if (rc == CDX_EPERM)
		return srv_fail(c, CDX_PROTO_FORBIDDEN, "%s is outside the daemon's "
		    "roots (start clipdexd with --root, or add it over the local "
		    "socket)", p->valuestring);
	if (rc != 0)
		return srv_fail(c,
		    rc == CDX_EINVAL ? CDX_PROTO_BAD_REQUEST : CDX_PROTO_NOT_FOUND,
		    "%s: %s", p->valuestring, rc == CDX_EINVAL ?
		    "not an absolute path" : "no such file or folder");
	if ((rc = roots_add(&c->s->roots, canon)) != 0)
		return srv_fail(c, CDX_PROTO_TOO_LARGE, "too many roots");
	if (srv_get_bool(c->req, "wait")) {
		/* The indexing thread answers when the work is done. */
		srv_job *job = c->job;
		c->job = NULL;
		ingest_enqueue(c->s, canon, job);
		return 0;
	}
	ingest_enqueue(c->s, canon, NULL);
	cJSON *r = cJSON_CreateObject();
	cJSON_AddTrueToObject(r, "queued");
	srv_reply_ok(c, r);
	return 0;
}

struct id_list {
	uint64_t *ids;
	size_t n, cap;
};

static int
collect_id(void *user, const store_image *img)
{
	struct id_list *p = user;
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 64;
		uint64_t *v = realloc(p->ids, cap * sizeof(*v));
		if (v == NULL)
			return CDX_ENOMEM;
		p->ids = v;
		p->cap = cap;
	}
	p->ids[p->n++] = img->id;
	return 0;
}

static int
op_remove(srv_call *c)
{
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(c->req, "path");
	struct id_list pi = { 0 };
	size_t removed = 0;
	cdx_error err;
	int rc;

	if (!cJSON_IsString(p) || p->valuestring[0] != '/')
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "remove needs an absolute "
		    "'path'");
	/* The file may be gone already: compare the path as given (trailing
	 * slashes dropped) with the roots, without resolving it. */
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s", p->valuestring);
	for (size_t n = strlen(path); n > 1 && path[n - 1] == '/'; n--)
		path[n - 1] = '\0';
	if (strstr(path, "/../") != NULL || strstr(path, "/./") != NULL)
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "the path must be canonical");
	if (!roots_contains(&c->s->roots, path))
		return srv_fail(c, CDX_PROTO_FORBIDDEN, "%s is outside the daemon's "
		    "roots", path);
	ingest_unwatch(c->s, path);  /* a watched folder stops being watched */
	/* a cursor over the folder's paths, not a scan of the store */
	if ((rc = store_image_foreach_prefix(c->s->st, path, collect_id, &pi,
	    &err)) != 0) {
		free(pi.ids);
		return srv_fail_cdx(c, rc, &err);
	}
	if (pi.n > 0 && (rc = store_image_delete(c->s->st, pi.ids, pi.n, &removed,
	    &err)) != 0) {
		free(pi.ids);
		return srv_fail_cdx(c, rc, &err);
	}
	free(pi.ids);
	if (removed > 0)
		cdx_log(CDX_LOG_INFO, "removed %zu images under %s", removed, path);
	cJSON *r = cJSON_CreateObject();
	cJSON_AddNumberToObject(r, "removed", (double)removed);
	srv_reply_ok(c, r);
	return 0;
}

/* ---- status ---- */

static long long
rss_bytes(void)
{
	long long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f == NULL)
		return 0;
	if (fscanf(f, "%lld %lld", &pages, &rss) != 2)
		rss = 0;
	fclose(f);
	return rss * sysconf(_SC_PAGESIZE);
}

static int
op_status(srv_call *c)
{
	srv *s = c->s;
	store_stats st;
	cJSON *r = cJSON_CreateObject(), *m, *ix, *q, *roots;

	store_get_stats(s->st, &st);
	cJSON_AddStringToObject(r, "version", SRV_VERSION);
	cJSON_AddNumberToObject(r, "uptime_s", srv_now() - s->started);
	cJSON_AddNumberToObject(r, "images", (double)st.images);
	cJSON_AddNumberToObject(r, "clips", (double)st.clips);
	cJSON_AddNumberToObject(r, "frames", (double)st.frames);
	cJSON_AddNumberToObject(r, "failures", (double)st.failures);
	cJSON_AddNumberToObject(r, "seq", (double)st.seq);
	m = cJSON_AddObjectToObject(r, "model");
	cJSON_AddStringToObject(m, "id", s->info->id);
	cJSON_AddStringToObject(m, "family", clip_family_name(s->info->family));
	cJSON_AddStringToObject(m, "store_family", st.model_family);
	cJSON_AddBoolToObject(m, "prob", s->info->has_sigmoid);
	cJSON_AddNumberToObject(m, "dim", s->info->embed_dim);
	ix = cJSON_AddObjectToObject(r, "index");
	cJSON_AddStringToObject(ix, "kind", st.index_kind);
	cJSON_AddNumberToObject(ix, "vectors", (double)(st.index_ntotal -
	    st.index_dead));
	q = ingest_status_json(s);
	if (q != NULL)
		cJSON_AddItemToObject(r, "queue", q);
	if ((roots = roots_json(&s->roots)) != NULL)
		cJSON_AddItemToObject(r, "roots", roots);
	if ((roots = ingest_folders_json(s)) != NULL)
		cJSON_AddItemToObject(r, "folders", roots);
	cJSON_AddNumberToObject(r, "rss_bytes", (double)rss_bytes());
	srv_reply_ok(c, r);
	return 0;
}

struct failure_list {
	cJSON *arr;
	long limit;
	long n;
};

static int
add_failure(void *user, const store_failure *f)
{
	struct failure_list *l = user;
	if (l->n++ >= l->limit)
		return 1;
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "path", f->path);
	cJSON_AddStringToObject(o, "reason", f->reason);
	cJSON_AddNumberToObject(o, "size", (double)f->size);
	cJSON_AddNumberToObject(o, "mtime", (double)(f->mtime_ns / 1000000000));
	cJSON_AddNumberToObject(o, "when", (double)f->when);
	cJSON_AddItemToArray(l->arr, o);
	return 0;
}

static int
op_failures(srv_call *c)
{
	struct failure_list l = { NULL, 100, 0 };
	cdx_error err;
	int rc;

	if (srv_get_int(c, c->req, "limit", 0, 100000, NULL, &l.limit) != 0)
		return -1;
	cJSON *r = cJSON_CreateObject();
	l.arr = cJSON_AddArrayToObject(r, "failures");
	rc = store_failure_foreach(c->s->st, add_failure, &l, &err);
	if (rc < 0) {
		cJSON_Delete(r);
		return srv_fail_cdx(c, rc, &err);
	}
	cJSON_AddNumberToObject(r, "total", (double)store_failure_count(c->s->st));
	/* files waiting for disk space have no record (none could be written) */
	cJSON_AddBoolToObject(r, "store_full", ingest_store_full(c->s));
	srv_reply_ok(c, r);
	return 0;
}

/* ---- parse: the query syntax, for the web page ---- */

/* {"op":"parse","query":Q} -> {"terms":[{"kind","value","weight"}]}: the
 * page's query box is parsed here, by the one parser (common/query.h),
 * and the page then builds its search from the terms (uploading "file"
 * terms itself).  An id is a decimal string (a JSON number would lose
 * 64-bit ids); the weight is printed at float precision. */
static int
op_parse(srv_call *c)
{
	static const char *const kinds[] = {
		[CDX_TERM_TEXT] = "text", [CDX_TERM_PATH] = "path",
		[CDX_TERM_ID] = "id", [CDX_TERM_FILE] = "file",
		[CDX_TERM_LEARNED] = "learned",
	};
	const cJSON *q = cJSON_GetObjectItemCaseSensitive(c->req, "query");
	cdx_terms *t = NULL;
	cdx_error err;
	char buf[32];
	int rc;

	if (!cJSON_IsString(q))
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "parse needs a 'query' "
		    "string");
	if ((rc = cdx_query_syntax_parse(q->valuestring, &t, &err)) != 0)
		return srv_fail_cdx(c, rc, &err);
	cJSON *r = cJSON_CreateObject();
	cJSON *arr = cJSON_AddArrayToObject(r, "terms");
	for (size_t i = 0; i < t->n; i++) {
		const cdx_term *term = &t->terms[i];
		cJSON *o = cJSON_CreateObject();
		cJSON_AddItemToArray(arr, o);
		cJSON_AddStringToObject(o, "kind", kinds[term->kind]);
		if (term->kind == CDX_TERM_ID) {
			snprintf(buf, sizeof(buf), "%llu",
			    (unsigned long long)term->id);
			cJSON_AddStringToObject(o, "value", buf);
		} else {
			cJSON_AddStringToObject(o, "value", term->text);
		}
		snprintf(buf, sizeof(buf), "%.7g", (double)term->weight);
		cJSON_AddNumberToObject(o, "weight", strtod(buf, NULL));
	}
	cdx_terms_free(t);
	srv_reply_ok(c, r);
	return 0;
}

/* ---- the dispatch ---- */

static const struct {
	const char *name;
	int (*fn)(srv_call *c);
	int slow;       /* encodes many texts or fits: the slow queue */
} ops[] = {
	{ "search", op_search, 0 },
	{ "similar", op_similar, 0 },
	{ "embed", op_embed, 0 },
	{ "add", op_add, 0 },
	{ "remove", op_remove, 0 },
	{ "status", op_status, 0 },
	{ "failures", op_failures, 0 },
	{ "dupes", dupes_op, 0 },
	{ "check", dupes_op_check, 0 },
	{ "retrieve", retrieve_op, 0 },
	{ "parse", op_parse, 0 },
	{ "learn", learn_op, 1 },
	{ "rerank", rerank_op, 1 },
	{ "classify", classify_op, 1 },
	{ "tags_define", tags_op_define, 1 },
	{ "tags_list", tags_op_list, 0 },
	{ "tags_show", tags_op_show, 0 },
	{ "tags_delete", tags_op_delete, 0 },
	{ "tags_counts", tags_op_counts, 0 },
};

int
srv_job_slow(const char *req, size_t len)
{
	cJSON *r, *op;
	int slow = 0;

	if (memmem(req, len, "\"image\"", 7) != NULL ||
	    memmem(req, len, "\"path\"", 6) != NULL)
		return 1;
	if ((r = cJSON_ParseWithLength(req, len)) == NULL)
		return 0;       /* bad_json: answered at once */
	op = cJSON_GetObjectItemCaseSensitive(r, "op");
	for (size_t i = 0; cJSON_IsString(op) &&
	    i < sizeof(ops) / sizeof(ops[0]); i++)
		if (strcmp(ops[i].name, op->valuestring) == 0)
			slow = ops[i].slow;
	cJSON_Delete(r);
	return slow;
}

void
srv_dispatch(srv *s, srv_worker *w, srv_job *job)
{
	srv_call c = { .s = s, .w = w, .job = job,
	    .ecode = CDX_PROTO_INTERNAL };
	int rc = -1;

	if (request_parse(&c, s->cfg->token) != 0)
		goto out;
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (strcmp(ops[i].name, c.op) == 0) {
			cdx_log(CDX_LOG_DEBUG, "request %s (%zu bytes)", ops[i].name,
			    job->len);
			rc = ops[i].fn(&c);
			goto out;
		}
	}
	srv_fail(&c, CDX_PROTO_UNKNOWN_OP, "unknown op '%.64s'", c.op);
out:
	if (c.job != NULL) {
		if (rc == 0)    /* an op that neither answered nor failed: a bug */
			srv_fail(&c, CDX_PROTO_INTERNAL, "no reply");
		reply_error(c.job, c.ecode, "%s", c.emsg);
	}
	cJSON_Delete(c.req);
}
