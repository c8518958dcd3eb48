/*
 * libclipdex: the curation operations (dupes, check, retrieve) and the
 * one-call cdx_search_text().  Requests and replies go through client.c's
 * helpers (client_priv.h); each result is one allocation.
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_priv.h"

static const char *const dupes_kinds[] = { "near", "exact", "similar" };

static int
dupes_kind_of(const char *name)
{
	for (int i = 0; i < 3; i++)
		if (strcmp(name, dupes_kinds[i]) == 0)
			return i;
	return CDX_DUPES_NEAR;
}

/* next_offset: a number, or -1 for null/absent. */
static int64_t
next_offset(const cJSON *rep)
{
	return cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(rep,
	    "next_offset")) ? cdxi_get_i64(rep, "next_offset", -1) : -1;
}

/* Checks that rep[name] is an array of objects; counts them and their
 * strings' bytes. */
static int
count_results(cdx_client *c, const cJSON *arr, const char *name, size_t *n,
    size_t *strbytes)
{
	const cJSON *it;
	if (!cJSON_IsArray(arr))
		return cdxi_fail(c, CDX_EPROTO, "clipdexd sent no \"%s\"", name);
	cJSON_ArrayForEach(it, arr) {
		if (!cJSON_IsObject(it))
			return cdxi_fail(c, CDX_EPROTO, "an item of \"%s\" is not an "
			    "object", name);
		(*n)++;
		*strbytes += cdxi_result_strbytes(it);
	}
	return 0;
}

/* ---- dupes ---- */

int
cdx_dupes(cdx_client *c, const cdx_dupes_opts *opts, cdx_dupes_page **out)
{
	static const cdx_dupes_opts defaults = { 0 };
	cJSON *req, *rep;
	const cJSON *groups, *g;
	size_t n_groups = 0, n_members = 0, strbytes = 0;
	int rc, ok;

	if (c == NULL || out == NULL)
		return c ? cdxi_fail(c, CDX_EINVAL, "no place for the groups") :
		    CDX_EINVAL;
	if (opts == NULL)
		opts = &defaults;
	if (opts->kind < 0 || opts->kind > 2)
		return cdxi_fail(c, CDX_EINVAL, "unknown duplicate kind %d",
		    opts->kind);
	if ((req = cdxi_new_request("dupes")) == NULL)
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	ok = cJSON_AddStringToObject(req, "kind", dupes_kinds[opts->kind]) != NULL;
	if (opts->threshold > 0)
		ok &= cJSON_AddNumberToObject(req, "threshold",
		    (double)opts->threshold) != NULL;
	if (opts->near_threshold > 0)
		ok &= cJSON_AddNumberToObject(req, "near_threshold",
		    (double)opts->near_threshold) != NULL;
	if (opts->path_prefix != NULL)
		ok &= cJSON_AddStringToObject(req, "path_prefix",
		    opts->path_prefix) != NULL;
	ok &= cJSON_AddNumberToObject(req, "offset", (double)opts->offset) != NULL;
	ok &= cJSON_AddNumberToObject(req, "limit", opts->limit > 0 ?
	    opts->limit : 100) != NULL;
	if (!ok) {
		cJSON_Delete(req);
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	}
	if ((rc = cdxi_call_json(c, req, &rep)) != 0)
		return rc;

	groups = cJSON_GetObjectItemCaseSensitive(rep, "groups");
	if (!cJSON_IsArray(groups)) {
		rc = cdxi_fail(c, CDX_EPROTO, "clipdexd sent no \"groups\"");
		goto out_free_reply;
	}
	cJSON_ArrayForEach(g, groups) {
		n_groups++;
		strbytes += strlen(cdxi_get_str(g, "reason")) + 1;
		if ((rc = count_results(c, cJSON_GetObjectItemCaseSensitive(g,
		    "members"), "members", &n_members, &strbytes)) != 0)
			goto out_free_reply;
	}
	cdx_dupes_page *p = malloc(sizeof(*p) + n_groups *
	    sizeof(cdx_dupes_group) + n_members * sizeof(cdx_result) + strbytes);
	if (p == NULL) {
		rc = cdxi_fail(c, CDX_ENOMEM, "out of memory for %zu groups",
		    n_groups);
		goto out_free_reply;
	}
	p->kind = dupes_kind_of(cdxi_get_str(rep, "kind"));
	p->threshold = cdxi_get_f64(rep, "threshold", 0.0);
	p->seq = cdxi_get_i64(rep, "seq", 0);
	p->total_groups = cdxi_get_i64(rep, "total_groups", (int64_t)n_groups);
	p->total_images = cdxi_get_i64(rep, "total_images", (int64_t)n_members);
	p->next_offset = next_offset(rep);
	p->took_ms = cdxi_get_f64(rep, "took_ms", 0.0);
	p->n = n_groups;
	p->groups = (cdx_dupes_group *)(p + 1);
	cdx_result *m = (cdx_result *)(p->groups + n_groups);
	char *pool = (char *)(m + n_members);
	size_t i = 0;
	cJSON_ArrayForEach(g, groups) {
		cdx_dupes_group *x = &p->groups[i++];
		const cJSON *it;
		x->reason = cdxi_pool_str(&pool, cdxi_get_str(g, "reason"));
		x->kind = dupes_kind_of(cdxi_get_str(g, "kind"));
		x->keep = (uint64_t)cdxi_get_i64(g, "keep", 0);
		x->members = m;
		x->n = 0;
		cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(g,
		    "members")) {
			cdxi_result_fill(it, m++, &pool);
			x->n++;
		}
	}
	*out = p;
out_free_reply:
	cJSON_Delete(rep);
	return rc;
}

void
cdx_dupes_page_free(cdx_dupes_page *p)
{
	free(p);
}

/* ---- check ---- */

int
cdx_check(cdx_client *c, const cdx_term *image, const cdx_check_opts *opts,
    cdx_check_result **out)
{
	cJSON *req, *rep, *tmp;
	int rc, ok = 1;

	if (c == NULL || out == NULL || image == NULL)
		return c ? cdxi_fail(c, CDX_EINVAL, "no image or no place for the "
		    "result") : CDX_EINVAL;
	if (image->kind != CDX_TERM_IMAGE && image->kind != CDX_TERM_FILE &&
	    image->kind != CDX_TERM_PATH)
		return cdxi_fail(c, CDX_EINVAL, "check takes an image, a file or a "
		    "path, not a term of kind %d", image->kind);
	if ((req = cdxi_new_request("check")) == NULL)
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	/* The term's object ({"image": ...} or {"path": ...}) gives the
	 * request its source field. */
	if ((tmp = cJSON_CreateArray()) == NULL) {
		cJSON_Delete(req);
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	}
	cdx_term t = *image;
	t.weight = 1.0f;
	if ((rc = cdxi_add_term(c, tmp, &t, 0)) != 0) {
		cJSON_Delete(tmp);
		cJSON_Delete(req);
		return rc;
	}
	cJSON *src = cJSON_GetArrayItem(tmp, 0)->child;
	cJSON_DetachItemViaPointer(cJSON_GetArrayItem(tmp, 0), src);
	cJSON_AddItemToObject(req, src->string, src);
	cJSON_Delete(tmp);
	if (opts != NULL && opts->threshold > 0)
		ok &= cJSON_AddNumberToObject(req, "threshold",
		    (double)opts->threshold) != NULL;
	if (opts != NULL && opts->k > 0)
		ok &= cJSON_AddNumberToObject(req, "k", opts->k) != NULL;
	if (!ok) {
		cJSON_Delete(req);
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	}
	if ((rc = cdxi_call_json(c, req, &rep)) != 0)
		return rc;

	const cJSON *exact = cJSON_GetObjectItemCaseSensitive(rep, "exact");
	const cJSON *near = cJSON_GetObjectItemCaseSensitive(rep, "near");
	size_t n_exact = 0, n_near = 0, strbytes = 0;
	if ((rc = count_results(c, exact, "exact", &n_exact, &strbytes)) != 0 ||
	    (rc = count_results(c, near, "near", &n_near, &strbytes)) != 0)
		goto out_free_reply;
	cdx_check_result *r = malloc(sizeof(*r) + (n_exact + n_near) *
	    sizeof(cdx_result) + strbytes);
	if (r == NULL) {
		rc = cdxi_fail(c, CDX_ENOMEM, "out of memory");
		goto out_free_reply;
	}
	r->n_exact = n_exact;
	r->n_near = n_near;
	r->exact = (cdx_result *)(r + 1);
	r->near = r->exact + n_exact;
	char *pool = (char *)(r->near + n_near);
	const cJSON *it;
	size_t i = 0;
	cJSON_ArrayForEach(it, exact)
		cdxi_result_fill(it, &r->exact[i++], &pool);
	i = 0;
	cJSON_ArrayForEach(it, near)
		cdxi_result_fill(it, &r->near[i++], &pool);
	r->duplicate = n_exact + n_near > 0;
	*out = r;
out_free_reply:
	cJSON_Delete(rep);
	return rc;
}

void
cdx_check_result_free(cdx_check_result *r)
{
	free(r);
}

/* ---- retrieve ---- */

/* Appends prompt p (number i) to the array arr: a plain string for one
 * text of weight 1, else an object with one source or "terms". */
static int
add_prompt(cdx_client *c, cJSON *arr, const cdx_prompt *p, size_t i)
{
	cJSON *one, *terms;
	int rc;

	if (p->n_terms == 0 || p->terms == NULL)
		return cdxi_fail(c, CDX_EINVAL, "prompt %zu has no terms", i);
	const cdx_term *t = &p->terms[0];
	if (p->n_terms == 1 && t->kind == CDX_TERM_TEXT && t->text != NULL &&
	    (t->weight == 0.0f || t->weight == 1.0f)) {
		cJSON *s = cJSON_CreateString(t->text);
		if (s == NULL || !cJSON_AddItemToArray(arr, s)) {
			cJSON_Delete(s);
			return cdxi_fail(c, CDX_ENOMEM, "out of memory");
		}
		return 0;
	}
	if (p->n_terms == 1)
		return cdxi_add_term(c, arr, t, i);
	if ((one = cJSON_CreateObject()) == NULL ||
	    !cJSON_AddItemToArray(arr, one)) {
		cJSON_Delete(one);
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	}
	if ((terms = cJSON_AddArrayToObject(one, "terms")) == NULL)
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	for (size_t j = 0; j < p->n_terms; j++)
		if ((rc = cdxi_add_term(c, terms, &p->terms[j], j)) != 0)
			return rc;
	return 0;
}

static int
retrieve_request(cdx_client *c, const cdx_retrieve_req *q, cJSON *req)
{
	cJSON *arr;
	int rc, ok = 1;

	if ((arr = cJSON_AddArrayToObject(req, "prompts")) == NULL)
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	for (size_t i = 0; i < q->n_prompts; i++)
		if ((rc = add_prompt(c, arr, &q->prompts[i], i)) != 0)
			return rc;
	if (q->n_negatives > 0) {
		if (q->negatives == NULL)
			return cdxi_fail(c, CDX_EINVAL, "no negatives");
		if ((arr = cJSON_AddArrayToObject(req, "negatives")) == NULL)
			return cdxi_fail(c, CDX_ENOMEM, "out of memory");
		for (size_t i = 0; i < q->n_negatives; i++) {
			cdx_prompt p = { &q->negatives[i], 1 };
			if ((rc = add_prompt(c, arr, &p, i)) != 0)
				return rc;
		}
	}
	if (q->has_negative_weight)
		ok &= cJSON_AddNumberToObject(req, "negative_weight",
		    (double)q->negative_weight) != NULL;
	ok &= cJSON_AddNumberToObject(req, "k", q->k > 0 ? q->k : 10) != NULL;
	if (q->has_min_score)
		ok &= cJSON_AddNumberToObject(req, "min_score",
		    (double)q->min_score) != NULL;
	if (q->dedupe > 0)
		ok &= cJSON_AddNumberToObject(req, "dedupe", (double)q->dedupe) !=
		    NULL;
	if (q->allow_repeats)
		ok &= cJSON_AddFalseToObject(req, "unique") != NULL;
	ok &= cJSON_AddNumberToObject(req, "offset", (double)q->offset) != NULL;
	ok &= cJSON_AddNumberToObject(req, "limit", q->limit > 0 ? q->limit :
	    500) != NULL;
	return ok ? 0 : cdxi_fail(c, CDX_ENOMEM, "out of memory");
}

int
cdx_retrieve(cdx_client *c, const cdx_retrieve_req *q,
    cdx_retrieve_page **out)
{
	cJSON *req, *rep;
	int rc;

	if (c == NULL || out == NULL || q == NULL)
		return c ? cdxi_fail(c, CDX_EINVAL, "no request or no place for "
		    "the results") : CDX_EINVAL;
	if (q->n_prompts == 0 || q->prompts == NULL)
		return cdxi_fail(c, CDX_EINVAL, "no prompts");
	if ((req = cdxi_new_request("retrieve")) == NULL)
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	if ((rc = retrieve_request(c, q, req)) != 0) {
		cJSON_Delete(req);
		return rc;
	}
	if ((rc = cdxi_call_json(c, req, &rep)) != 0)
		return rc;

	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(rep, "results"), *it;
	size_t n = 0, strbytes = 0;
	if ((rc = count_results(c, arr, "results", &n, &strbytes)) != 0)
		goto out_free_reply;
	cdx_retrieve_page *p = malloc(sizeof(*p) + n * sizeof(cdx_retrieve_hit) +
	    strbytes);
	if (p == NULL) {
		rc = cdxi_fail(c, CDX_ENOMEM, "out of memory for %zu results", n);
		goto out_free_reply;
	}
	p->total = cdxi_get_i64(rep, "total", (int64_t)n);
	p->next_offset = next_offset(rep);
	p->took_ms = cdxi_get_f64(rep, "took_ms", 0.0);
	p->n = n;
	p->hits = (cdx_retrieve_hit *)(p + 1);
	char *pool = (char *)(p->hits + n);
	size_t i = 0;
	cJSON_ArrayForEach(it, arr) {
		cdx_retrieve_hit *h = &p->hits[i++];
		int64_t pi = cdxi_get_i64(it, "prompt", 0);
		h->prompt = pi < 0 ? 0 : (size_t)pi;
		h->rank = cdxi_get_i64(it, "rank", 0);
		cdxi_result_fill(it, &h->result, &pool);
	}
	*out = p;
out_free_reply:
	cJSON_Delete(rep);
	return rc;
}

void
cdx_retrieve_page_free(cdx_retrieve_page *p)
{
	free(p);
}

/* ---- one call ---- */

int
cdx_search_text(cdx_client *c, const char *text, int k, cdx_results **out)
{
	cdx_term t = { .kind = CDX_TERM_TEXT, .text = text, .weight = 1.0f };
	cdx_query q = { .terms = &t, .n_terms = 1, .k = k > 0 ? k : 10 };
	cdx_client *own = NULL;
	char msg[512];
	int rc;

	if (text == NULL || out == NULL)
		return cdxi_fail(c, CDX_EINVAL, "no text or no place for results");
	if (c != NULL)
		return cdx_search(c, &q, out);
	if ((rc = cdx_client_open(NULL, &own)) != 0)
		return rc;      /* the message is already for NULL */
	rc = cdx_search(own, &q, out);
	if (rc != 0) {
		/* The message belongs to the temporary client: keep it for
		 * cdx_client_errmsg(NULL). */
		snprintf(msg, sizeof(msg), "%s", cdx_client_errmsg(own));
		cdxi_fail(NULL, rc, "%s", msg);
	}
	cdx_client_close(own);
	return rc;
}
