/*
 * tags_op.c - tag sets through the daemon (docs/PROTOCOL.md "Tags"):
 * tags_define, tags_list, tags_show, tags_delete, tags_counts; the tag
 * filters and hit tags of search and similar; zero-shot sets made from a
 * request's labels and templates (also for classify_op.c); and the
 * rebuild of zero-shot sets at start when the model changed.
 *
 * The store keeps the sets and every image's tags, written with its
 * record (store/store.h "tag sets and tags"); the classify module scores
 * (classify/classify.h).  Nothing is cached here.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classify/classify.h"
#include "daemon/learn_op.h"
#include "daemon/srv_internal.h"

/* Default threshold of a tag set defined without one. */
#define TAGS_DEFAULT_THRESHOLD 0.5

/* Prompts (labels x templates) one zero-shot request may encode: each is a
 * text-tower pass on the request's worker (docs/PROTOCOL.md "classify"). */
#define TAGS_MAX_PROMPTS 4096

static const char *
kind_name(const cls_set *cs)
{
	return cs->kind == CLS_SIGMOID ? "sigmoid" : "softmax";
}

static const char *
origin_name(const cls_set *cs)
{
	return cs->origin == CLS_LEARNED ? "learned" : "zero-shot";
}

/* ---- a zero-shot set from a request ---- */

/* The strings of a JSON array of strings (borrowed from it) in *out
 * (malloc'd; freed by the caller), or -1 (srv_fail). */
static int
string_array(srv_call *c, const cJSON *a, const char *name, size_t max,
    const char ***out, size_t *n)
{
	const cJSON *e;
	size_t i = 0, len = (size_t)cJSON_GetArraySize(a);

	if (len > max)
		return srv_fail(c, CDX_PROTO_TOO_LARGE, "%zu %s: at most %zu", len,
		    name, max);
	if ((*out = malloc(sizeof(**out) * (len ? len : 1))) == NULL)
		return srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
	cJSON_ArrayForEach(e, a) {
		if (!cJSON_IsString(e)) {
			free(*out);
			*out = NULL;
			return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'%s' must hold "
			    "strings", name);
		}
		(*out)[i++] = e->valuestring;
	}
	*n = i;
	return 0;
}

int
tags_zero_shot(srv_call *c, const cJSON *obj, const char *name,
    cls_set **out)
{
	const cJSON *lab = cJSON_GetObjectItemCaseSensitive(obj, "labels");
	const cJSON *tp = cJSON_GetObjectItemCaseSensitive(obj, "templates");
	const cJSON *ts = cJSON_GetObjectItemCaseSensitive(obj, "template_set");
	const cJSON *multi = cJSON_GetObjectItemCaseSensitive(obj, "multi");
	const char **labels = NULL, **tmpl = NULL;
	char **parsed = NULL;
	const char *const *named = NULL;
	size_t n = 0, nt = 0;
	double thr = TAGS_DEFAULT_THRESHOLD;
	cdx_error err;
	int rc = -1;

	if (srv_get_num(c, obj, "threshold", 0, 1, NULL, &thr) != 0)
		return -1;
	if (multi != NULL && !cJSON_IsNull(multi) && !cJSON_IsBool(multi))
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'multi' must be true or "
		    "false");
	if (cJSON_IsString(lab)) {
		/* "cat,dog,remote control": cls's parser, as --labels */
		if ((rc = cls_labels_parse(lab->valuestring, 0, &parsed, &n, &err))
		    != 0)
			return srv_fail_cdx(c, rc, &err);
		labels = (const char **)parsed;
		parsed = NULL;
	} else if (cJSON_IsArray(lab)) {
		if (string_array(c, lab, "labels", CLS_MAX_LABELS, &labels, &n) != 0)
			return -1;
	} else {
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'labels' must be an array "
		    "of strings or a comma-separated string");
	}
	if (tp != NULL && !cJSON_IsNull(tp) && ts != NULL && !cJSON_IsNull(ts)) {
		srv_fail(c, CDX_PROTO_BAD_REQUEST, "give 'templates' or "
		    "'template_set', not both");
		goto out;
	}
	if (ts != NULL && !cJSON_IsNull(ts)) {
		if (!cJSON_IsString(ts) ||
		    (nt = cls_templates_named(ts->valuestring, &named)) == 0) {
			srv_fail(c, CDX_PROTO_BAD_REQUEST, "'template_set' must be "
			    "\"default\" or \"imagenet\"");
			goto out;
		}
	} else if (tp != NULL && !cJSON_IsNull(tp)) {
		if (!cJSON_IsArray(tp)) {
			srv_fail(c, CDX_PROTO_BAD_REQUEST, "'templates' must be an array "
			    "of strings");
			goto out;
		}
		if (string_array(c, tp, "templates", CLS_MAX_TEMPLATES, &tmpl, &nt)
		    != 0)
			goto out;
		named = tmpl;
	}
	{
		const char *const *dflt;
		size_t per = nt ? nt : cls_templates_named("default", &dflt);
		if (n * per > TAGS_MAX_PROMPTS) {
			srv_fail(c, CDX_PROTO_TOO_LARGE, "%zu labels x %zu templates is "
			    "%zu prompts to encode; the limit is %d", n, per, n * per,
			    TAGS_MAX_PROMPTS);
			goto out;
		}
	}
	rc = cls_zero_shot(c->w->ctx, clip_model_tokenizer(c->s->model),
	    c->s->info, name, labels, n, named, nt, (float)thr, out, &err);
	if (rc != 0) {
		rc = srv_fail_cdx(c, rc, &err);
		goto out;
	}
	if (cJSON_IsBool(multi))
		(*out)->multi = cJSON_IsTrue(multi);
	rc = 0;
out:
	free(labels);
	free(tmpl);
	return rc;
}

/* ---- search and similar ---- */

static int
tag_list(srv_call *c, const char *name, const char **v, size_t *n)
{
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(c->req, name), *e;

	*n = 0;
	if (a == NULL || cJSON_IsNull(a))
		return 0;
	if (!cJSON_IsArray(a))
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'%s' must be an array of "
		    "tags", name);
	if (cJSON_GetArraySize(a) > SRV_TAGS_MAX)
		return srv_fail(c, CDX_PROTO_TOO_LARGE, "'%s': at most %d tags", name,
		    SRV_TAGS_MAX);
	cJSON_ArrayForEach(e, a) {
		if (!cJSON_IsString(e) || e->valuestring[0] == '\0')
			return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'%s' must hold "
			    "non-empty strings (LABEL or SET/LABEL)", name);
		v[(*n)++] = e->valuestring;
	}
	return 0;
}

int
tags_parse_filter(srv_call *c, srv_search_opts *o)
{
	if (tag_list(c, "tags", o->tag_v, &o->filter.n_tags) != 0 ||
	    tag_list(c, "not_tags", o->not_tag_v, &o->filter.n_not_tags) != 0)
		return -1;
	o->filter.tags = o->filter.n_tags ? o->tag_v : NULL;
	o->filter.not_tags = o->filter.n_not_tags ? o->not_tag_v : NULL;
	return 0;
}

int
tags_hit_json(srv_call *c, cJSON *h, uint64_t id)
{
	store_tags *t = NULL;
	cdx_error err;
	cJSON *arr = cJSON_AddArrayToObject(h, "tags");
	int rc;

	if (arr == NULL)
		return srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
	rc = store_image_tags(c->s->st, id, &t, &err);
	if (rc == CDX_ENOTFOUND)
		return 0;               /* removed since the search */
	if (rc != 0)
		return srv_fail_cdx(c, rc, &err);
	for (size_t i = 0; i < t->n; i++) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddItemToArray(arr, o);
		cJSON_AddStringToObject(o, "set", t->tags[i].set);
		cJSON_AddStringToObject(o, "label", t->tags[i].label);
		cJSON_AddNumberToObject(o, "prob", (double)t->tags[i].prob);
	}
	store_tags_free(t);
	return 0;
}

/* ---- the operations ---- */

/* The request's "name": a valid set name (cls_name_check), or -1. */
static int
set_name(srv_call *c, const char **name)
{
	const cJSON *n = cJSON_GetObjectItemCaseSensitive(c->req, "name");
	cdx_error err;
	int rc;

	if (!cJSON_IsString(n))
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'%s' needs the set's "
		    "'name'", c->op);
	if ((rc = cls_name_check(n->valuestring, &err)) != 0)
		return srv_fail_cdx(c, rc, &err);
	*name = n->valuestring;
	return 0;
}

static int
store_failed(srv_call *c, int rc, const cdx_error *err, const char *name)
{
	if (rc == CDX_ENOTFOUND && name != NULL)
		return srv_fail(c, CDX_PROTO_NOT_FOUND, "no tag set '%s'", name);
	return srv_fail_cdx(c, rc, err);
}

int
tags_op_define(srv_call *c)
{
	double t0 = srv_now();
	const char *name;
	cls_set *cs = NULL;
	uint64_t tagged = 0;
	cdx_error err;
	int rc;

	if (set_name(c, &name) != 0 || tags_zero_shot(c, c->req, name, &cs) != 0)
		return -1;
	if ((rc = store_tagset_put(c->s->st, cs, &tagged, &err)) != 0) {
		cls_set_free(cs);
		return srv_fail_cdx(c, rc, &err);
	}
	double ms = (srv_now() - t0) * 1000.0;
	cdx_log(CDX_LOG_INFO, "tag set %s: %zu labels, %llu images tagged "
	    "(%.0f ms)", name, cs->n, (unsigned long long)tagged, ms);
	cJSON *r = cJSON_CreateObject();
	cJSON_AddStringToObject(r, "name", name);
	cJSON_AddNumberToObject(r, "labels", (double)cs->n);
	cJSON_AddStringToObject(r, "mode", kind_name(cs));
	cJSON_AddBoolToObject(r, "multi", cs->multi);
	cJSON_AddNumberToObject(r, "tagged", (double)tagged);
	cJSON_AddNumberToObject(r, "took_ms", ms);
	cls_set_free(cs);
	srv_reply_ok(c, r);
	return 0;
}

/* The fields of a set that list and show share. */
static cJSON *
set_json(srv *s, const cls_set *cs)
{
	cJSON *o = cJSON_CreateObject();
	if (o == NULL)
		return NULL;
	cJSON_AddStringToObject(o, "name", cs->name);
	cJSON_AddStringToObject(o, "origin", origin_name(cs));
	cJSON_AddStringToObject(o, "mode", kind_name(cs));
	cJSON_AddBoolToObject(o, "multi", cs->multi);
	cJSON_AddNumberToObject(o, "threshold", (double)cs->threshold);
	cJSON_AddStringToObject(o, "model", cs->model_key);
	/* a set of another model applies to nothing until defined again */
	cJSON_AddBoolToObject(o, "current", strcmp(cs->model_key,
	    s->info->key) == 0 && cs->dim == (size_t)s->info->embed_dim);
	return o;
}

struct list_walk {
	srv *s;
	cJSON *arr;
};

static int
list_one(void *user, const cls_set *cs)
{
	struct list_walk *w = user;
	cJSON *o = set_json(w->s, cs);
	if (o == NULL)
		return CDX_ENOMEM;
	cJSON_AddItemToArray(w->arr, o);
	cJSON *l = cJSON_AddArrayToObject(o, "labels");
	for (size_t i = 0; i < cs->n; i++)
		cJSON_AddItemToArray(l, cJSON_CreateString(cs->labels[i]));
	cJSON_AddNumberToObject(o, "templates", (double)cs->n_templates);
	return 0;
}

int
tags_op_list(srv_call *c)
{
	cJSON *r = cJSON_CreateObject();
	struct list_walk w = { c->s, cJSON_AddArrayToObject(r, "sets") };
	cdx_error err;
	int rc;

	if (w.arr == NULL) {
		cJSON_Delete(r);
		return srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
	}
	if ((rc = store_tagset_foreach(c->s->st, list_one, &w, &err)) != 0) {
		cJSON_Delete(r);
		if (rc == CDX_ENOMEM)
			return srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
		return srv_fail_cdx(c, rc, &err);
	}
	srv_reply_ok(c, r);
	return 0;
}

/* Appends {"set"?, "label", "images"} for each count to arr. */
static void
counts_json(const store_tag_counts *tc, int with_set, cJSON *arr)
{
	for (size_t i = 0; i < tc->n; i++) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddItemToArray(arr, o);
		if (with_set)
			cJSON_AddStringToObject(o, "set", tc->counts[i].set);
		cJSON_AddStringToObject(o, "label", tc->counts[i].label);
		cJSON_AddNumberToObject(o, "images", (double)tc->counts[i].images);
	}
}

int
tags_op_show(srv_call *c)
{
	const char *name;
	cls_set *cs = NULL;
	store_tag_counts *tc = NULL;
	cdx_error err;
	int rc;

	if (set_name(c, &name) != 0)
		return -1;
	if ((rc = store_tagset_get(c->s->st, name, &cs, &err)) != 0)
		return store_failed(c, rc, &err, name);
	if ((rc = store_tag_counts_get(c->s->st, name, &tc, &err)) != 0) {
		cls_set_free(cs);
		return store_failed(c, rc, &err, name);
	}
	cJSON *r = set_json(c->s, cs);
	counts_json(tc, 0, cJSON_AddArrayToObject(r, "labels"));
	cJSON *t = cJSON_AddArrayToObject(r, "templates");
	for (size_t i = 0; i < cs->n_templates; i++)
		cJSON_AddItemToArray(t, cJSON_CreateString(cs->templates[i]));
	if (cs->origin == CLS_LEARNED) {
		cJSON_AddNumberToObject(r, "positives", (double)cs->n_pos);
		cJSON_AddNumberToObject(r, "negatives", (double)cs->n_neg);
	}
	store_tag_counts_free(tc);
	cls_set_free(cs);
	srv_reply_ok(c, r);
	return 0;
}

int
tags_op_delete(srv_call *c)
{
	const char *name;
	cdx_error err;
	int rc;

	if (set_name(c, &name) != 0)
		return -1;
	if ((rc = store_tagset_delete(c->s->st, name, &err)) != 0)
		return store_failed(c, rc, &err, name);
	/* a learned set's kept examples go with it (not needed for the
	 * delete itself: a failure is only logged) */
	if (learn_forget(c->s, name, &err) != 0)
		cdx_log(CDX_LOG_WARN, "tag set %s: its examples were not "
		    "forgotten: %s", name, err.msg);
	cdx_log(CDX_LOG_INFO, "tag set %s deleted", name);
	cJSON *r = cJSON_CreateObject();
	cJSON_AddStringToObject(r, "deleted", name);
	srv_reply_ok(c, r);
	return 0;
}

int
tags_op_counts(srv_call *c)
{
	const cJSON *n = cJSON_GetObjectItemCaseSensitive(c->req, "name");
	const char *name = NULL;
	store_tag_counts *tc = NULL;
	cdx_error err;
	int rc;

	if (n != NULL && !cJSON_IsNull(n) && set_name(c, &name) != 0)
		return -1;
	if ((rc = store_tag_counts_get(c->s->st, name, &tc, &err)) != 0)
		return store_failed(c, rc, &err, name);
	cJSON *r = cJSON_CreateObject();
	counts_json(tc, 1, cJSON_AddArrayToObject(r, "counts"));
	store_tag_counts_free(tc);
	srv_reply_ok(c, r);
	return 0;
}

/* ---- at start: sets of another model ---- */

struct stale_walk {
	const char *key;
	size_t dim;
	char (*names)[CLS_NAME_MAX + 1];
	size_t n, cap;
};

static int
note_stale(void *user, const cls_set *cs)
{
	struct stale_walk *w = user;
	if (cs->origin != CLS_ZERO_SHOT ||
	    (strcmp(cs->model_key, w->key) == 0 && cs->dim == w->dim))
		return 0;               /* learned sets are learn's */
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 8;
		void *v = realloc(w->names, cap * sizeof(*w->names));
		if (v == NULL)
			return CDX_ENOMEM;
		w->names = v;
		w->cap = cap;
	}
	snprintf(w->names[w->n++], sizeof(*w->names), "%s", cs->name);
	return 0;
}

/* Makes set `name` again with the daemon's model. */
static int
rebuild_one(srv *s, clip_ctx *ctx, const char *name, uint64_t *tagged,
    cdx_error *err)
{
	cls_set *old = NULL, *cs = NULL;
	int rc;

	if ((rc = store_tagset_get(s->st, name, &old, err)) != 0)
		return rc;
	rc = cls_zero_shot(ctx, clip_model_tokenizer(s->model), s->info, name,
	    (const char *const *)old->labels, old->n,
	    (const char *const *)old->templates, old->n_templates,
	    old->threshold, &cs, err);
	if (rc == 0) {
		cs->multi = old->multi;
		rc = store_tagset_put(s->st, cs, tagged, err);
	}
	cls_set_free(cs);
	cls_set_free(old);
	return rc;
}

void
tags_rebuild_stale(srv *s, clip_ctx *ctx)
{
	struct stale_walk w = { .key = s->info->key,
	    .dim = (size_t)s->info->embed_dim };
	cdx_error err;
	int rc;

	if ((rc = store_tagset_foreach(s->st, note_stale, &w, &err)) != 0) {
		cdx_log(CDX_LOG_WARN, "tag sets: cannot read them: %s",
		    rc == CDX_ENOMEM ? "out of memory" : err.msg);
		free(w.names);
		return;
	}
	for (size_t i = 0; i < w.n; i++) {
		double t0 = srv_now();
		uint64_t tagged = 0;
		if ((rc = rebuild_one(s, ctx, w.names[i], &tagged, &err)) != 0)
			cdx_log(CDX_LOG_WARN, "tag set %s was made by another model and "
			    "cannot be rebuilt (%s): it tags nothing until defined "
			    "again", w.names[i], err.msg);
		else
			cdx_log(CDX_LOG_INFO, "tag set %s rebuilt for model %s (tags are "
			    "rebuilt when the model changes): %llu images tagged, "
			    "%.0f ms", w.names[i], s->info->id,
			    (unsigned long long)tagged, (srv_now() - t0) * 1000.0);
	}
	free(w.names);
}
