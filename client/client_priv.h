/*
 * client_priv.h - libclipdex internals shared by the client .c files and tested by
 * tests/client_*.c.  Not installed.  Private names start with cdxi_.
 */
#ifndef CDX_CLIENT_PRIV_H
#define CDX_CLIENT_PRIV_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "client/clipdex.h"

/* Not exported from libclipdex.so. */
#pragma GCC visibility push(hidden)

/* Length of the standard (RFC 4648, padded) base64 encoding of n bytes, not
 * counting a terminating NUL; (size_t)-1 if it would overflow size_t. */
size_t cdxi_base64_len(size_t n);

/* Writes the base64 encoding of src[0..n) and a NUL into dst, which must
 * hold cdxi_base64_len(n) + 1 bytes.  Returns the length written. */
size_t cdxi_base64_encode(const void *src, size_t n, char *dst);

/* The monotonic clock in milliseconds. */
int64_t cdxi_now_ms(void);

/* Sets the calling thread's message for client c (NULL: for open/parse),
 * returns code. */
int cdxi_fail(const cdx_client *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- requests and replies (client.c), for the operations of other files ---- */

/* A new request {"op": op, "v": 1}; NULL when out of memory. */
cJSON *cdxi_new_request(const char *op);

/* Sends req (consumed: deleted in every case; NULL means out of memory)
 * with the client's token and returns the parsed reply with "ok": true in
 * *out (the caller deletes it).  A failure is mapped and its message kept
 * (see clipdex.h). */
int cdxi_call_json(cdx_client *c, cJSON *req, cJSON **out);

/* Appends term t (number i, for messages) as an object to the array terms;
 * CDX_TERM_FILE is read and uploaded. */
int cdxi_add_term(cdx_client *c, cJSON *terms, const cdx_term *t, size_t i);

/* learn.c: adds "learned": name to a search request (cdx_query.learned). */
int cdxi_add_learned(cdx_client *c, cJSON *req, const char *name);

/* A new request {"op": op, ...} carrying q's terms (required unless
 * terms_optional or q->learned is set) and search options; *out is the
 * caller's.  cdxi_run_results() sends a request (consumed) and reads its
 * "results" as cdx_search() does. */
int cdxi_query_request(cdx_client *c, const char *op, const cdx_query *q,
    int terms_optional, cJSON **out);
int cdxi_run_results(cdx_client *c, cJSON *req, cdx_results **out);
/* Adds name: [v[0], ..., v[n-1]] (strings) to obj.  CDX_EINVAL for a
 * NULL string or when out of memory (the caller says which). */
int cdxi_add_strings(cJSON *obj, const char *name, const char *const *v,
    size_t n);

/* A reply's "results" (and a cluster's "shards", "partial", "missing")
 * as cdx_results, in one allocation. */
int cdxi_parse_results(cdx_client *c, const cJSON *rep, cdx_results **out);

/* cluster.c: cdx_search on a nats:// client: a member plans the search
 * (the query vector, from the terms: search with "plan": true), and the
 * library asks every shard itself and merges their answers (clu_merge). */
struct clu;
int cdxi_cluster_search(cdx_client *c, struct clu *clu, const cdx_query *q,
    cdx_results **out);

/* Fields of a reply object: the value, or def (cdxi_get_str: "") when
 * absent or of another type. */
int64_t cdxi_get_i64(const cJSON *o, const char *name, int64_t def);
double cdxi_get_f64(const cJSON *o, const char *name, double def);
const char *cdxi_get_str(const cJSON *o, const char *name);

/* Copies s (with its NUL) to *pool, advances it, returns the copy. */
const char *cdxi_pool_str(char **pool, const char *s);

/* A result object of the protocol as a cdx_result: cdxi_result_strbytes()
 * is the room its strings and tags need (the tags' array aligned in it);
 * cdxi_result_fill() copies them to *pool and advances it. */
size_t cdxi_result_strbytes(const cJSON *it);
void cdxi_result_fill(const cJSON *it, cdx_result *x, char **pool);

#pragma GCC visibility pop
#endif
