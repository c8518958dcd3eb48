/*
 * dupes.h - duplicate finding over a store (docs/DUPES.md), and the
 * daemon operations built on it: dupes, check (dupes.c) and retrieve
 * (retrieve.c).  Not installed; used by the daemon and bench/dupes_bench.c.
 *
 * Errors: 0 or a negative CDX_E* code with err filled (common/cdx.h);
 * out-parameters are untouched on failure.
 * Thread-safety: dupes_find() only reads the store (any number of calls
 * may run at once, with searches and writes of other threads); a
 * dupes_result is immutable once returned.
 */
#ifndef CDX_DUPES_H
#define CDX_DUPES_H

#include <stddef.h>
#include <stdint.h>

#include "common/cdx.h"
#include "store/store.h"

enum dupes_kind {
	DUPES_EXACT = 0,   /* identical content hash */
	DUPES_NEAR = 1,    /* embeddings within the near threshold */
	DUPES_SIMILAR = 2, /* within the lower similar threshold, not near */
};

enum dupes_method {
	DUPES_AUTO = 0,      /* all pairs up to DUPES_EXACT_MAX, else clustered */
	DUPES_ALL_PAIRS = 1, /* every pair scored: exact, O(n^2 d) */
	DUPES_CLUSTERED = 2, /* within k-means clusters: approximate */
};
#define DUPES_EXACT_MAX 32768

/* Default thresholds (cosine similarity) of CLIP models, calibrated in
 * docs/DUPES.md. */
#define DUPES_NEAR_DEFAULT 0.97f
#define DUPES_SIMILAR_DEFAULT 0.90f

/* The default threshold of `kind` (near or similar) for a model family
 * (enum clip_family; 0 means CLIP): similarities have another scale in
 * each family.  docs/DUPES.md says how each value was found. */
float dupes_default_threshold(int family, int kind);

/* Why the keeper of a group was chosen: the first rule that separates it
 * from the runner-up. */
enum dupes_reason {
	DUPES_BY_RESOLUTION = 0,
	DUPES_BY_SIZE = 1,
	DUPES_BY_CAPTURE = 2,
	DUPES_BY_PATH = 3,
	DUPES_BY_ID = 4,
};

typedef struct dupes_params {
	int dim;                /* embedding dimension of the store: required */
	int family;             /* the model's family, for the default
				   thresholds (0: CLIP) */
	int kind;               /* enum dupes_kind */
	float threshold;        /* 0: the kind's default for the family;
				   ignored for exact */
	float near_threshold;   /* similar only: groups that are one near
				   group are left out (0: the family's near
				   default) */
	const char *path_prefix;/* NULL or "": every image */
	int method;             /* enum dupes_method (0: auto) */
} dupes_params;

/* Groups, largest first (then by smallest member id).  Group g has members
 * ids[lims[g] .. lims[g+1]), the suggested keeper first and the others by
 * decreasing score (similarity to the keeper; 1 in exact groups). */
typedef struct dupes_result {
	int kind;
	float threshold;
	uint64_t seq;           /* store_seq() when the search began */
	size_t n_groups;
	size_t n_images;        /* images considered (after the prefix) */
	size_t *lims;           /* n_groups + 1 */
	uint64_t *ids;
	float *scores;
	uint8_t *reasons;       /* n_groups, enum dupes_reason */
	double seconds;         /* time taken */
} dupes_result;

/* Finds the duplicate groups of store s: exact groups by content hash;
 * near and similar groups from every pair of stored embeddings at least
 * the threshold similar, joined transitively (union-find: A~B and B~C puts
 * A, B and C in one group).  Pairs are scored in SGEMM tiles: all pairs up
 * to 32768 images (exact); above, within clusters of a k-means over the
 * embeddings, each image against the images with its cluster among their
 * 3 nearest centroids (approximate; docs/DUPES.md has the recall).
 * Memory: a copy of the embeddings (dim * 4 bytes per image) plus about
 * 60 bytes per image, never an n x n matrix.
 * On success *out is freed with dupes_result_free().
 * Errors: CDX_EINVAL (bad kind/threshold), CDX_ENOMEM, CDX_ESTORE,
 * CDX_EINDEX. */
int dupes_find(store *s, const dupes_params *p, dupes_result **out,
    cdx_error *err);
void dupes_result_free(dupes_result *r);

/* "resolution", "size", "capture time", ... for people. */
const char *dupes_reason_name(int reason);
const char *dupes_kind_name(int kind);

/* Orders two images by the keeper rule: < 0 when a is the better copy
 * (largest width*height, then largest size, then earliest known capture
 * time, then shortest path, then lowest id).  *reason (may be NULL) gets
 * the rule that decided. */
int dupes_keeper_cmp(const store_image *a, const store_image *b, int *reason);

/* The daemon's operations (docs/PROTOCOL.md). */
struct srv_call;
int dupes_op(struct srv_call *c);
int dupes_op_check(struct srv_call *c);
int retrieve_op(struct srv_call *c);

#endif
