/*
 * learn.c - learned classifiers and relevance feedback: cdx_learn(),
 * cdx_rerank() and the "learned" search option (client/clipdex.h,
 * docs/PROTOCOL.md "learn", "rerank").
 */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "client/client_priv.h"

int
cdxi_add_learned(cdx_client *c, cJSON *req, const char *name)
{
	if (cJSON_AddStringToObject(req, "learned", name) == NULL)
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	return 0;
}

/* Adds key: [items] from n example terms. */
static int
add_examples(cdx_client *c, cJSON *req, const char *key, const cdx_term *t,
    size_t n)
{
	cJSON *arr = cJSON_AddArrayToObject(req, key);
	int rc;

	if (arr == NULL)
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		cdx_term e = t[i];
		if (e.kind == CDX_TERM_TEXT || e.kind == CDX_TERM_LEARNED)
			return cdxi_fail(c, CDX_EINVAL, "%s example %zu is not an image "
			    "(an id, a path, image bytes or a file)", key, i);
		e.weight = 1.0f;        /* examples have no weight */
		if ((rc = cdxi_add_term(c, arr, &e, i)) != 0)
			return rc;
	}
	return 0;
}

int
cdx_learn(cdx_client *c, const cdx_learn_req *r, cdx_learn_result *out)
{
	cJSON *req, *rep;
	int rc;

	if (c == NULL || r == NULL || out == NULL || r->name == NULL)
		return c ? cdxi_fail(c, CDX_EINVAL, "learn needs a name and a place "
		    "for the result") : CDX_EINVAL;
	if ((req = cdxi_new_request("learn")) == NULL)
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	int ok = cJSON_AddStringToObject(req, "name", r->name) != NULL;
	if (ok && r->has_threshold)
		ok = cJSON_AddNumberToObject(req, "threshold",
		    (double)r->threshold) != NULL;
	if (ok && r->l2 > 0)
		ok = cJSON_AddNumberToObject(req, "l2", r->l2) != NULL;
	if (ok && r->refit)
		ok = cJSON_AddTrueToObject(req, "refit") != NULL;
	if (!ok) {
		cJSON_Delete(req);
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	}
	if ((!r->refit && (rc = add_examples(c, req, "positive", r->positive,
	    r->n_positive)) != 0) || (r->n_negative > 0 && (rc = add_examples(c, req, "negative",
	    r->negative, r->n_negative)) != 0)) {
		cJSON_Delete(req);
		return rc;
	}
	if ((rc = cdxi_call_json(c, req, &rep)) != 0)
		return rc;
	out->n_pos = cdxi_get_i64(rep, "n_pos", 0);
	out->n_neg = cdxi_get_i64(rep, "n_neg", 0);
	out->unlabeled_negatives = cJSON_IsTrue(
	    cJSON_GetObjectItemCaseSensitive(rep, "unlabeled_negatives"));
	out->folds = (int)cdxi_get_i64(rep, "folds", 0);
	out->cv_accuracy = cdxi_get_f64(rep, "cv_accuracy", 0.0);
	out->tagged = cdxi_get_i64(rep, "tagged", 0);
	out->threshold = cdxi_get_f64(rep, "threshold", 0.5);
	out->missing = cdxi_get_i64(rep, "missing", 0);
	cJSON_Delete(rep);
	return 0;
}

/* Adds key: [ids]. */
static int
add_ids(cdx_client *c, cJSON *req, const char *key, const uint64_t *ids,
    size_t n)
{
	cJSON *arr = cJSON_AddArrayToObject(req, key);
	if (arr == NULL)
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		cJSON *v = cJSON_CreateNumber((double)ids[i]);
		if (v == NULL || !cJSON_AddItemToArray(arr, v)) {
			cJSON_Delete(v);
			return cdxi_fail(c, CDX_ENOMEM, "out of memory");
		}
	}
	return 0;
}

int
cdx_rerank(cdx_client *c, const cdx_rerank_req *r, cdx_results **out)
{
	cdx_query none = { 0 };
	cJSON *req;
	int rc;

	if (c == NULL || r == NULL || out == NULL)
		return c ? cdxi_fail(c, CDX_EINVAL, "no place for results") :
		    CDX_EINVAL;
	if ((rc = cdxi_query_request(c, "rerank", r->query ? r->query : &none, 1,
	    &req)) != 0)
		return rc;
	if ((rc = add_ids(c, req, "positive", r->positive, r->n_positive)) != 0 ||
	    (rc = add_ids(c, req, "negative", r->negative, r->n_negative)) != 0) {
		cJSON_Delete(req);
		return rc;
	}
	return cdxi_run_results(c, req, out);
}
