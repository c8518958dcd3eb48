/*
 * dupes.h - duplicate finding over a store (docs/DUPES.md): exact copies,
 * near duplicates and similar shots, each group with the copy to keep.
 * Depends on store/ and common/ only.  Not installed; used by the daemon
 * (its dupes operation, daemon/dupes_op.c) and bench/dupes_bench.c.
 *
 * Errors: 0 or a negative CDX_E* code with err filled (common/cdx.h);
 * out-parameters are untouched on failure.
 * Thread-safety: dupes_find() only reads the store (any number of calls
 * may run at once, with searches and writes of other threads); a
 * dupes_result is immutable once returned.  A dupes_cache may be shared by
 * any number of threads (it has its own lock); see below.
 * The stored embeddings are unit length (encoder/clip.h): similarities are
 * their dot products.
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
	const char *path_prefix;/* NULL or "": every image; else the images
				   whose path starts with these bytes (the
				   rule of store_path_has_prefix) */
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

/* Finds the duplicate groups of the images of store s (frames of video
 * clips are left out: dupes_clips compares clips): exact groups by
 * content hash;
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

/* ---- video clips, compared by their frames ----
 *
 * Two frames match when their similarity is at least the threshold (the
 * family's near default unless given).  For two clips A and B (na, nb
 * frames, time order) the matched count m is the longest run of matching
 * frame pairs in order in both clips (a longest common subsequence:
 * a_i~b_j, then a_k~b_l with k > i and l > j).  Then:
 *   exact   the same bytes (content hash);
 *   near    m >= near_fraction x max(na, nb): most frames of both clips
 *           match, in order (a re-encoded or resized copy);
 *   shares  m >= 1: the clips have a frame (a scene) in common, no more
 *           (an excerpt, a clip cut from the other, a shared shot).
 * Pairs with no matching frame are not reported.  Frames are compared
 * all against all in SGEMM tiles (exact), so at most DUPES_EXACT_MAX
 * frames (else CDX_ETOOBIG: narrow with path_prefix). */
enum dupes_clip_relation {
	DUPES_CLIP_EXACT = 0,
	DUPES_CLIP_NEAR = 1,
	DUPES_CLIP_SHARES = 2,
};
#define DUPES_CLIP_NEAR_FRACTION 0.75f

typedef struct dupes_clip_params {
	int dim;                /* required */
	int family;             /* for the default threshold (0: CLIP) */
	float threshold;        /* frame match; 0: the family's near default */
	float near_fraction;    /* 0: DUPES_CLIP_NEAR_FRACTION */
	const char *path_prefix;/* as dupes_params */
} dupes_clip_params;

typedef struct dupes_clip_side {
	const char *path;       /* into the result */
	int frames;             /* frames of the clip */
	uint64_t id;            /* its first matching frame */
	int64_t time_ms;        /* and that frame's time */
} dupes_clip_side;

typedef struct dupes_clip_pair {
	int relation;           /* enum dupes_clip_relation */
	int matched;            /* m above */
	float score;            /* mean similarity of the m frames */
	dupes_clip_side a, b;   /* a's path sorts first */
} dupes_clip_pair;

/* Exact first, then near, then shares; by matched (most first). */
typedef struct dupes_clip_result {
	size_t n_pairs;
	dupes_clip_pair *pairs;
	size_t n_clips, n_frames;       /* compared (after the prefix) */
	float threshold, near_fraction; /* as used */
	char **paths;                   /* n_clips, owned */
} dupes_clip_result;

/* Compares every clip of store s with every other as above; *out is
 * freed with dupes_clip_result_free().  Errors: CDX_EINVAL, CDX_ETOOBIG,
 * CDX_ENOMEM, CDX_ESTORE. */
int dupes_clips(store *s, const dupes_clip_params *p,
    dupes_clip_result **out, cdx_error *err);
void dupes_clip_result_free(dupes_clip_result *r);
/* "exact", "near", "shares". */
const char *dupes_clip_relation_name(int relation);

/* ---- the last grouping of a store, kept for paging ----
 *
 * A client pages through the groups with repeated requests; the cache
 * keeps the most recent result so that the next page of the same request
 * (same kind, thresholds and prefix, and the store unchanged: store_seq())
 * reuses it instead of grouping again.  Owned by whoever made it (the
 * daemon, one per open store); freed with dupes_cache_free() once every
 * result it handed out has been released.
 * Thread-safety: any number of threads may call dupes_cache_find() and
 * dupes_cache_release() at once; a result handed out stays valid (and
 * unchanged) until its caller releases it, even when a newer grouping
 * replaces it in the cache meanwhile. */
typedef struct dupes_cache dupes_cache;

/* A cache of groupings of store s (which must outlive it).
 * Errors: CDX_ENOMEM. */
int dupes_cache_new(store *s, dupes_cache **out, cdx_error *err);
/* NULL is a no-op.  Not thread-safe: no other call on c may be running
 * or follow, and every result must have been released. */
void dupes_cache_free(dupes_cache *c);
/* As dupes_find() on the cache's store, reusing the cached result when p
 * (kind, threshold, near_threshold, path_prefix: compared as given, so
 * resolve defaults first) and store_seq() match it.  On success *out is
 * shared and read-only: hand it back with dupes_cache_release().
 * *computed (may be NULL) is 1 when this call grouped, 0 when it reused.
 * Errors: as dupes_find(). */
int dupes_cache_find(dupes_cache *c, const dupes_params *p,
    const dupes_result **out, int *computed, cdx_error *err);
/* Ends the use of a result from dupes_cache_find(); NULL is a no-op. */
void dupes_cache_release(dupes_cache *c, const dupes_result *r);

#endif
