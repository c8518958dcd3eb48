/*
 * libclipdex's cdx_query_parse(): the parser of common/query.c, with its
 * message kept for cdx_client_errmsg(NULL).
 */
#include "client/client_priv.h"
#include "common/query.h"

int
cdx_query_parse(const char *query, cdx_terms **out)
{
	cdx_error err;
	int rc = cdx_query_syntax_parse(query, out, &err);
	return rc == 0 ? 0 : cdxi_fail(NULL, rc, "%s", err.msg);
}
