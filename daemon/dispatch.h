/*
 * dispatch.h - the operation table: one parsed request in, one reply out
 * (docs/PROTOCOL.md), on a worker thread, for every transport; and the
 * helpers the operations share (query vectors, image bytes, hits).
 * Operations live in dispatch.c, dupes_op.c, retrieve.c and learn_op.c
 * (learn_op.h); each takes a
 * srv_call (request.h) and follows its contract.
 */
#ifndef CDX_SRV_DISPATCH_H
#define CDX_SRV_DISPATCH_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "daemon/request.h"
#include "store/store.h"

struct srv;
struct srv_worker;
struct clip_ctx;

/* Handles one job on worker w: answers it through job->fn (freeing it),
 * or hands it to the indexing thread.  w may be NULL for operations that
 * encode nothing. */
void srv_dispatch(struct srv *s, struct srv_worker *w, srv_job *job);

/* Whether the request req (len bytes, not yet parsed) goes to the slow
 * queue: its "op" is one that encodes many texts or fits a probe
 * (classify, tags_define, learn, rerank), or it carries an image or a
 * path term to decode.  search, status and the like stay on the fast
 * queue (docs/PROTOCOL.md "Queues"). */
int srv_job_slow(const char *req, size_t len);

/* The query vector (embed_dim floats) of the request's terms ("terms", or
 * one text/image/path/id/learned at the top level; a learned term is its
 * classifier's unit direction, learn_op.h): the weighted sum of their unit
 * embeddings, normalised once here (it is a combiner: encoder/clip.h).
 * *text_only (may be NULL) is set to 1 when every term is a text. */
int srv_query_vector(srv_call *c, float *q, int *text_only);
/* The bytes of an image given as base64 (image, a JSON string) or as a
 * path inside the roots (path); exactly one is not NULL.  *data is
 * malloc'd.  Fails with bad_request, too_large, forbidden or not_found. */
int srv_image_bytes(srv_call *c, const cJSON *image, const cJSON *path,
    uint8_t **data, size_t *len);
/* The same image decoded and preprocessed into pixels for the encoder
 * (exact: the exact preprocessing, else the fast one).  Fails as
 * srv_image_bytes, or with bad_image. */
int srv_image_pixels(srv_call *c, const cJSON *image, const cJSON *path,
    int exact, float *pixels);
/* An indexed image by id (a JSON number; exactly one of id and path is
 * not NULL) or by path (a JSON string): *img (store_image_free) holds its
 * stored embedding.  Fails with bad_request, or not_found naming it. */
int srv_image_lookup(srv_call *c, const cJSON *id, const cJSON *path,
    store_image **img);
/* One search hit as the protocol's result object; prob (the match
 * probability, clip_match_prob) is added unless it is NAN. */
cJSON *srv_hit_json(const store_hit *h, double prob);

/* Tags in one search's "tags" or "not_tags". */
#define SRV_TAGS_MAX 32

/* search options: k, offset, min_score, min_prob, collapse, filter.
 * with_prob is set by the caller once it knows the query: results carry
 * `prob` for text queries of a model with a sigmoid head. */
typedef struct srv_search_opts {
	long k, offset;
	int has_min;
	double min_score;
	int has_min_prob;
	double min_prob;
	int with_prob;
	double collapse;
	store_filter filter;
	/* a learned probe's ranking (learn_op.h): prob is its probability */
	int has_probe;
	double probe_norm, probe_bias;
	/* "tags", "not_tags": filter.tags and not_tags point here */
	const char *tag_v[SRV_TAGS_MAX], *not_tag_v[SRV_TAGS_MAX];
} srv_search_opts;
int srv_parse_search_opts(srv_call *c, srv_search_opts *o);

/* The operations of dupes_op.c (dupes, check) and retrieve.c
 * (docs/PROTOCOL.md). */
int dupes_op(srv_call *c);
int dupes_op_check(srv_call *c);
int retrieve_op(srv_call *c);
/* search_and_reply for the operations of other files (learn_op.c): answers
 * with results [offset, offset + k) for the unit query q, as search. */
int srv_search_reply(srv_call *c, const float *q, const srv_search_opts *o,
    double t0);
/* classify_op.c: classify (zero-shot labels or a tag set, for indexed
 * and uploaded images). */
int classify_op(srv_call *c);
/* tags_op.c: tag sets (docs/PROTOCOL.md "Tags"). */
int tags_op_define(srv_call *c);
int tags_op_list(srv_call *c);
int tags_op_show(srv_call *c);
int tags_op_delete(srv_call *c);
int tags_op_counts(srv_call *c);
/* A zero-shot set named name from obj's "labels" (an array of strings,
 * or one comma-separated string), "templates" (strings holding "{}") or
 * "template_set" (a named set: classify/classify.h), "threshold" and
 * "multi", its rows encoded on worker c->w.  Fails with bad_request
 * (cls's message) for bad labels or templates. */
int tags_zero_shot(srv_call *c, const cJSON *obj, const char *name,
    cls_set **out);
/* The request's "tags" and "not_tags" into o->filter (search, similar). */
int tags_parse_filter(srv_call *c, srv_search_opts *o);
/* Adds "tags": [{"set","label","prob"}] of image id to the hit h (an
 * image removed meanwhile has none). */
int tags_hit_json(srv_call *c, cJSON *h, uint64_t id);
/* At start, before the indexer: rebuilds every zero-shot tag set made by
 * another model than the daemon's, from its labels and templates, on ctx
 * (tags are rebuilt when the model changes; a set that cannot be is
 * logged and left applying to nothing).  Learned sets are not touched. */
void tags_rebuild_stale(struct srv *s, struct clip_ctx *ctx);

/* retrieve.c: the last few result streams of the daemon's store, for
 * paging (thread-safe: it has its own lock).  new returns NULL when out of
 * memory; free accepts NULL and runs once no worker is left. */
struct retrieve_cache *retrieve_cache_new(void);
void retrieve_cache_free(struct retrieve_cache *rc);

#endif
