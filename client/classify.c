/*
 * libclipdex: classification and tag sets (classify, tags_define,
 * tags_list, tags_show, tags_delete, tags_counts; docs/PROTOCOL.md).
 * Requests and replies go through client.c's helpers (client_priv.h);
 * each result is one allocation: the struct, its arrays, then its strings.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_priv.h"

/* An array of objects at rep[name], or -1 (CDX_EPROTO). */
static int
object_array(cdx_client *c, const cJSON *rep, const char *name,
    const cJSON **arr, size_t *n)
{
	const cJSON *it;
	*arr = cJSON_GetObjectItemCaseSensitive(rep, name);
	*n = 0;
	if (!cJSON_IsArray(*arr))
		return cdxi_fail(c, CDX_EPROTO, "clipdexd sent no \"%s\"", name);
	cJSON_ArrayForEach(it, *arr) {
		if (!cJSON_IsObject(it))
			return cdxi_fail(c, CDX_EPROTO, "an item of \"%s\" is not an "
			    "object", name);
		(*n)++;
	}
	return 0;
}

/* "labels", "templates", "template_set" of a zero-shot request. */
static int
add_labels(cdx_client *c, cJSON *req, const char *const *labels, size_t n,
    const char *const *templates, size_t nt, const char *template_set)
{
	if (n == 0 || labels == NULL)
		return cdxi_fail(c, CDX_EINVAL, "no labels");
	if (cdxi_add_strings(req, "labels", labels, n) != 0)
		return cdxi_fail(c, CDX_EINVAL, "a label is NULL (or out of memory)");
	if (nt > 0 && cdxi_add_strings(req, "templates", templates, nt) != 0)
		return cdxi_fail(c, CDX_EINVAL, "a template is NULL (or out of "
		    "memory)");
	if (template_set != NULL &&
	    cJSON_AddStringToObject(req, "template_set", template_set) == NULL)
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	return 0;
}

/* ---- classify ---- */

static int
classify_request(cdx_client *c, const cdx_classify_req *q, cJSON *req)
{
	int rc;

	if (q->n_items == 0 || q->items == NULL)
		return cdxi_fail(c, CDX_EINVAL, "no images to classify");
	if (q->set != NULL) {
		if (q->n_labels > 0)
			return cdxi_fail(c, CDX_EINVAL, "give labels or a set, not both");
		if (cJSON_AddStringToObject(req, "set", q->set) == NULL)
			return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	} else if ((rc = add_labels(c, req, q->labels, q->n_labels, q->templates,
	    q->n_templates, q->template_set)) != 0) {
		return rc;
	}
	if ((q->top > 0 && cJSON_AddNumberToObject(req, "top", q->top) == NULL) ||
	    (q->exact && cJSON_AddTrueToObject(req, "exact") == NULL))
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	cJSON *items = cJSON_AddArrayToObject(req, "items");
	if (items == NULL)
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	for (size_t i = 0; i < q->n_items; i++) {
		if (q->items[i].kind == CDX_TERM_TEXT)
			return cdxi_fail(c, CDX_EINVAL, "item %zu is a text; classify "
			    "takes images (id, path, bytes or a file)", i);
		if ((rc = cdxi_add_term(c, items, &q->items[i], i)) != 0)
			return rc;
		/* a term's weight means nothing here */
		cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetArrayItem(items,
		    (int)i), "weight");
	}
	return 0;
}

int
cdx_classify(cdx_client *c, const cdx_classify_req *q,
    cdx_classify_result **out)
{
	cJSON *req, *rep;
	const cJSON *arr, *it;
	size_t n = 0, n_labels = 0, bytes = 0;
	int rc;

	if (c == NULL || q == NULL || out == NULL)
		return c ? cdxi_fail(c, CDX_EINVAL, "no request or no place for the "
		    "result") : CDX_EINVAL;
	if ((req = cdxi_new_request("classify")) == NULL)
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	if ((rc = classify_request(c, q, req)) != 0) {
		cJSON_Delete(req);
		return rc;
	}
	if ((rc = cdxi_call_json(c, req, &rep)) != 0)
		return rc;
	if ((rc = object_array(c, rep, "results", &arr, &n)) != 0)
		goto out;
	cJSON_ArrayForEach(it, arr) {
		const cJSON *l, *ls;
		size_t nl = 0;
		bytes += strlen(cdxi_get_str(it, "path")) + 1;
		if ((rc = object_array(c, it, "labels", &ls, &nl)) != 0)
			goto out;
		cJSON_ArrayForEach(l, ls)
			bytes += strlen(cdxi_get_str(l, "label")) + 1;
		n_labels += nl;
	}
	cdx_classify_result *r = malloc(sizeof(*r) + n * sizeof(cdx_classified) +
	    n_labels * sizeof(cdx_label_prob) + bytes);
	if (r == NULL) {
		rc = cdxi_fail(c, CDX_ENOMEM, "out of memory for %zu results", n);
		goto out;
	}
	r->sigmoid = strcmp(cdxi_get_str(rep, "mode"), "sigmoid") == 0;
	r->took_ms = cdxi_get_f64(rep, "took_ms", 0.0);
	r->n = n;
	r->items = (cdx_classified *)(r + 1);
	cdx_label_prob *lp = (cdx_label_prob *)(r->items + n);
	char *pool = (char *)(lp + n_labels);
	size_t i = 0;
	cJSON_ArrayForEach(it, arr) {
		cdx_classified *x = &r->items[i++];
		const cJSON *l;
		x->id = (uint64_t)cdxi_get_i64(it, "id", 0);
		x->path = cdxi_pool_str(&pool, cdxi_get_str(it, "path"));
		x->labels = lp;
		x->n = 0;
		cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(it, "labels")) {
			lp->label = cdxi_pool_str(&pool, cdxi_get_str(l, "label"));
			lp->prob = cdxi_get_f64(l, "prob", NAN);
			lp++;
			x->n++;
		}
	}
	*out = r;
out:
	cJSON_Delete(rep);
	return rc;
}

void
cdx_classify_result_free(cdx_classify_result *r)
{
	free(r);
}

/* ---- tags ---- */

int
cdx_tags_define(cdx_client *c, const cdx_tagset_def *def, int64_t *tagged)
{
	cJSON *req, *rep;
	int rc;

	if (c == NULL || def == NULL || def->name == NULL)
		return c ? cdxi_fail(c, CDX_EINVAL, "the set needs a name") :
		    CDX_EINVAL;
	if ((req = cdxi_new_request("tags_define")) == NULL)
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	if (cJSON_AddStringToObject(req, "name", def->name) == NULL ||
	    (def->has_threshold && cJSON_AddNumberToObject(req, "threshold",
	    (double)def->threshold) == NULL) ||
	    (def->multi && cJSON_AddTrueToObject(req, "multi") == NULL)) {
		cJSON_Delete(req);
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	}
	if ((rc = add_labels(c, req, def->labels, def->n_labels, def->templates,
	    def->n_templates, def->template_set)) != 0) {
		cJSON_Delete(req);
		return rc;
	}
	if ((rc = cdxi_call_json(c, req, &rep)) != 0)
		return rc;
	if (tagged != NULL)
		*tagged = cdxi_get_i64(rep, "tagged", 0);
	cJSON_Delete(rep);
	return 0;
}

/* A request {"op": op, "name": name (if not NULL)}, sent. */
static int
named_call(cdx_client *c, const char *op, const char *name, cJSON **rep)
{
	cJSON *req = cdxi_new_request(op);
	if (req == NULL || (name != NULL &&
	    cJSON_AddStringToObject(req, "name", name) == NULL)) {
		cJSON_Delete(req);
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	}
	return cdxi_call_json(c, req, rep);
}

/* The bytes a set's strings, labels and templates need. */
static void
set_size(const cJSON *s, size_t *labels, size_t *templates, size_t *bytes)
{
	const cJSON *e;
	*bytes += strlen(cdxi_get_str(s, "name")) + 1 +
	    strlen(cdxi_get_str(s, "origin")) + 1 +
	    strlen(cdxi_get_str(s, "model")) + 1;
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(s, "labels")) {
		(*labels)++;
		*bytes += strlen(cJSON_IsString(e) ? e->valuestring :
		    cdxi_get_str(e, "label")) + 1;
	}
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(s, "templates")) {
		if (!cJSON_IsString(e))
			continue;
		(*templates)++;
		*bytes += strlen(e->valuestring) + 1;
	}
}

static void
set_fill(const cJSON *s, cdx_tagset *x, cdx_tag_count **lab,
    const char ***tmpl, char **pool)
{
	const cJSON *e;
	x->name = cdxi_pool_str(pool, cdxi_get_str(s, "name"));
	x->origin = cdxi_pool_str(pool, cdxi_get_str(s, "origin"));
	x->model = cdxi_pool_str(pool, cdxi_get_str(s, "model"));
	x->sigmoid = strcmp(cdxi_get_str(s, "mode"), "sigmoid") == 0;
	x->multi = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "multi"));
	x->current = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s,
	    "current"));
	x->threshold = cdxi_get_f64(s, "threshold", 0.0);
	x->labels = *lab;
	x->n_labels = 0;
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(s, "labels")) {
		cdx_tag_count *t = (*lab)++;
		t->set = x->name;
		if (cJSON_IsString(e)) {
			t->label = cdxi_pool_str(pool, e->valuestring);
			t->images = -1;
		} else {
			t->label = cdxi_pool_str(pool, cdxi_get_str(e, "label"));
			t->images = cdxi_get_i64(e, "images", -1);
		}
		x->n_labels++;
	}
	x->templates = *tmpl;
	x->n_templates = 0;
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(s, "templates")) {
		if (!cJSON_IsString(e))
			continue;
		*(*tmpl)++ = cdxi_pool_str(pool, e->valuestring);
		x->n_templates++;
	}
}

/* sets: the objects of the reply (an array, or the reply itself for one
 * set). */
static int
parse_sets(cdx_client *c, const cJSON *sets, int one, cdx_tagsets **out)
{
	size_t n = 0, nl = 0, nt = 0, bytes = 0;
	const cJSON *s;

	if (one) {
		n = 1;
		set_size(sets, &nl, &nt, &bytes);
	} else {
		cJSON_ArrayForEach(s, sets) {
			if (!cJSON_IsObject(s))
				return cdxi_fail(c, CDX_EPROTO, "a set is not an object");
			n++;
			set_size(s, &nl, &nt, &bytes);
		}
	}
	cdx_tagsets *t = malloc(sizeof(*t) + n * sizeof(cdx_tagset) +
	    nl * sizeof(cdx_tag_count) + nt * sizeof(char *) + bytes);
	if (t == NULL)
		return cdxi_fail(c, CDX_ENOMEM, "out of memory for %zu sets", n);
	t->n = n;
	t->sets = (cdx_tagset *)(t + 1);
	cdx_tag_count *lab = (cdx_tag_count *)(t->sets + n);
	const char **tmpl = (const char **)(lab + nl);
	char *pool = (char *)(tmpl + nt);
	if (one) {
		set_fill(sets, &t->sets[0], &lab, &tmpl, &pool);
	} else {
		size_t i = 0;
		cJSON_ArrayForEach(s, sets)
			set_fill(s, &t->sets[i++], &lab, &tmpl, &pool);
	}
	*out = t;
	return 0;
}

int
cdx_tags_list(cdx_client *c, cdx_tagsets **out)
{
	cJSON *rep;
	const cJSON *sets;
	int rc;

	if (c == NULL || out == NULL)
		return c ? cdxi_fail(c, CDX_EINVAL, "no place for the sets") :
		    CDX_EINVAL;
	if ((rc = named_call(c, "tags_list", NULL, &rep)) != 0)
		return rc;
	sets = cJSON_GetObjectItemCaseSensitive(rep, "sets");
	rc = cJSON_IsArray(sets) ? parse_sets(c, sets, 0, out) :
	    cdxi_fail(c, CDX_EPROTO, "clipdexd sent no \"sets\"");
	cJSON_Delete(rep);
	return rc;
}

int
cdx_tags_show(cdx_client *c, const char *name, cdx_tagsets **out)
{
	cJSON *rep;
	int rc;

	if (c == NULL || name == NULL || out == NULL)
		return c ? cdxi_fail(c, CDX_EINVAL, "no name or no place for the "
		    "set") : CDX_EINVAL;
	if ((rc = named_call(c, "tags_show", name, &rep)) != 0)
		return rc;
	rc = parse_sets(c, rep, 1, out);
	cJSON_Delete(rep);
	return rc;
}

void
cdx_tagsets_free(cdx_tagsets *t)
{
	free(t);
}

int
cdx_tags_delete(cdx_client *c, const char *name)
{
	cJSON *rep;
	int rc;

	if (c == NULL || name == NULL)
		return c ? cdxi_fail(c, CDX_EINVAL, "no name") : CDX_EINVAL;
	if ((rc = named_call(c, "tags_delete", name, &rep)) != 0)
		return rc;
	cJSON_Delete(rep);
	return 0;
}

int
cdx_tags_counts(cdx_client *c, const char *name, cdx_tag_counts **out)
{
	cJSON *rep;
	const cJSON *arr, *it;
	size_t n = 0, bytes = 0;
	int rc;

	if (c == NULL || out == NULL)
		return c ? cdxi_fail(c, CDX_EINVAL, "no place for the counts") :
		    CDX_EINVAL;
	if ((rc = named_call(c, "tags_counts", name, &rep)) != 0)
		return rc;
	if ((rc = object_array(c, rep, "counts", &arr, &n)) != 0)
		goto out;
	cJSON_ArrayForEach(it, arr)
		bytes += strlen(cdxi_get_str(it, "set")) + 1 +
		    strlen(cdxi_get_str(it, "label")) + 1;
	cdx_tag_counts *t = malloc(sizeof(*t) + n * sizeof(cdx_tag_count) +
	    bytes);
	if (t == NULL) {
		rc = cdxi_fail(c, CDX_ENOMEM, "out of memory for %zu counts", n);
		goto out;
	}
	t->n = n;
	t->counts = (cdx_tag_count *)(t + 1);
	char *pool = (char *)(t->counts + n);
	size_t i = 0;
	cJSON_ArrayForEach(it, arr) {
		cdx_tag_count *x = &t->counts[i++];
		x->set = cdxi_pool_str(&pool, cdxi_get_str(it, "set"));
		x->label = cdxi_pool_str(&pool, cdxi_get_str(it, "label"));
		x->images = cdxi_get_i64(it, "images", 0);
	}
	*out = t;
out:
	cJSON_Delete(rep);
	return rc;
}

void
cdx_tag_counts_free(cdx_tag_counts *t)
{
	free(t);
}
