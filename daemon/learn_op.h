/*
 * learn_op.h - few-shot classifiers in the daemon (docs/PROTOCOL.md
 * "learn", "rerank", search's "learned"): the `learn`
 * operation fits a linear probe (classify/classify.h cls_probe_fit) on
 * example images and keeps it as a tag set of origin CLS_LEARNED; a
 * learned classifier is then a query direction, w/|w|, whose search
 * ranks images by the probe's probability (sigmoid(w.x + b) rises with
 * w.x = |w| * cos(x, w/|w|) for unit x); `rerank` fits a probe on marked
 * results without storing it.
 *
 * The model rule: a probe is of the model whose embeddings it was fitted
 * on (cls_set.model_key).  The examples' paths are kept in the store's
 * key/value table ("learned/NAME"); a probe of another model (after
 * --reembed) is refused by a search (bad_request naming `clipdex learn
 * NAME --refit`) and refitted from them by learn "refit", once the
 * indexer has re-embedded them (docs/PROTOCOL.md "learn").  A fit uses
 * at most 2000 labelled images per class (seeded draws).
 *
 * Errors: as every operation (request.h): srv_fail and -1.
 * Thread-safety: on worker threads; the store serialises the writes.
 */
#ifndef CDX_SRV_LEARN_OP_H
#define CDX_SRV_LEARN_OP_H

#include "daemon/dispatch.h"

/* The operations (docs/PROTOCOL.md). */
int learn_op(srv_call *c);
int rerank_op(srv_call *c);

/* The unit direction w/|w| (embed_dim floats) of the learned classifier
 * `name`, for a learned:NAME term.  Fails with bad_request (not a learned
 * classifier, a bad name, a probe of another model: never refitted here)
 * or not_found. */
int learn_term_vector(srv_call *c, const char *name, float *v);

/* The classifier's name when the request's query is one learned term of
 * positive weight (the top-level "learned", or a single {"learned"}
 * term): its results carry the probe's probability.  NULL otherwise. */
const char *learn_probe_query(const cJSON *req);

/* When learn_probe_query() names a classifier, sets o->has_probe,
 * o->probe_norm (|w|) and o->probe_bias (b), so that each hit's prob is
 * learn_prob(o, score); leaves o alone otherwise.  Refuses "learned"
 * beside "terms" (bad_request). */
int learn_search_probe(srv_call *c, srv_search_opts *o);

/* Forgets the examples kept for the learned set `name` (its "learned/NAME"
 * entry), for tags_delete: a deleted classifier is not refitted.  Unknown
 * names are ignored; returns 0 or a CDX error (err filled). */
int learn_forget(struct srv *s, const char *name, cdx_error *err);

/* sigmoid(probe_norm * score + probe_bias): the probe's probability of a
 * hit whose cosine with w/|w| is score. */
double learn_prob(const srv_search_opts *o, float score);

#endif
