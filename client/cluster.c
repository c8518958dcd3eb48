/*
 * libclipdex: cdx_search on a cluster (a nats:// URL), asked of the shards
 * by the library itself: a member turns the query into the shards' query
 * message (its model embeds the terms: search with "plan": true), then
 * the library publishes it to every shard, gathers their answers until
 * the deadline and merges them (cluster/cluster.h), as a front daemon
 * would.  No front to run, for one round trip more than asking one (the
 * plan, then the scatter: docs/SCALE.md).
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_priv.h"
#include "cluster/cluster.h"

int
cdxi_cluster_search(cdx_client *c, struct clu *clu, const cdx_query *q,
    cdx_results **out)
{
	int64_t t0 = cdxi_now_ms();
	cJSON *req, *rep = NULL, *res = NULL;
	clu_merge_opts mo;
	clu_gather g;
	cdx_error err;
	char *msg = NULL;
	int rc;

	if ((rc = cdxi_query_request(c, "search", q, 0, &req)) != 0)
		return rc;
	if (cJSON_AddTrueToObject(req, "plan") == NULL) {
		cJSON_Delete(req);
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	}
	if ((rc = cdxi_call_json(c, req, &rep)) != 0)
		return rc;
	const cJSON *plan = cJSON_GetObjectItemCaseSensitive(rep, "plan");
	const cJSON *query = cJSON_GetObjectItemCaseSensitive(plan, "query");
	if (!cJSON_IsObject(query) || clu_merge_opts_parse(
	    cJSON_GetObjectItemCaseSensitive(plan, "merge"), &mo) != 0) {
		rc = cdxi_fail(c, CDX_EPROTO, "clipdexd sent no search plan");
		goto out;
	}
	if ((msg = cJSON_PrintUnformatted(query)) == NULL) {
		rc = cdxi_fail(c, CDX_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = clu_scatter(clu, msg, strlen(msg), &g, &err)) != 0) {
		rc = cdxi_fail(c, rc, "cluster: %s", err.msg);
		goto out;
	}
	rc = clu_merge(&g, &mo, &res, &err);
	clu_gather_free(&g);
	if (rc != 0) {
		rc = cdxi_fail(c, rc, "%s", err.msg);
		goto out;
	}
	cJSON_AddNumberToObject(res, "took_ms", (double)(cdxi_now_ms() - t0));
	rc = cdxi_parse_results(c, res, out);
out:
	cJSON_Delete(res);
	free(msg);
	cJSON_Delete(rep);
	return rc;
}
