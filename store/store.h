/*
 * store.h - the clipdex image store: LMDB records + a derived FAISS index.
 *
 * A store is a directory holding an LMDB environment (data.mdb, lock.mdb),
 * a lock file (store.lock) and the persisted vector index (index.faiss).
 * LMDB is the source of truth; the FAISS index is derived state that is
 * saved beside it and caught up (or rebuilt) from LMDB when the store is
 * opened.  Deleting index.faiss never loses data.
 *
 * What is kept:
 *   - image records (store_image): a stable 64-bit id that is never reused,
 *     the canonical absolute path, size, mtime, a 16-byte content hash,
 *     pixel size, capture time, time added and the embedding, kept unit
 *     length (store_image_put normalises what it is given, so that every
 *     stored vector meets the rule of common/vec.h) in half precision
 *     (binary16, 2 bytes a dimension; each component within
 *     STORE_EMB_ABS_ERR of the normalised float32 one, cosine above
 *     0.9999998, so a search score is within 2^-11 of float32's dot
 *     product with the same query): every read, search, the index and
 *     the tags see the same widened values, so results do not change when
 *     the index is rebuilt;
 *     a store made before schema 4 (float32) is converted when it is
 *     opened, in steps that a crash does not harm;
 *     secondary lookups path -> id and content hash -> ids;
 *     a record is an image, or a frame of a video clip (kind
 *     STORE_KIND_FRAME): the clip's path and the frame's time; the frames
 *     of one clip share its path, each with its own id and time;
 *   - failure records (store_failure): files that could not be indexed;
 *   - a small key/value table for other modules' settings;
 *   - metadata: schema version, embedding dimension, model identity, and a
 *     change sequence that grows by one per image put or delete.
 *
 * Errors: every fallible function returns 0 or a negative CDX_E* code and,
 * when err is not NULL, fills it with the code and a message (see
 * common/cdx.h).  Out-parameters are untouched on failure.  LMDB errors
 * become CDX_ESTORE (CDX_EFULL/CDX_EIO/CDX_ENOMEM where LMDB says so), FAISS
 * errors CDX_EINDEX with FAISS's own message.
 *
 * Thread-safety: a store handle may be shared by any number of threads.
 * Every function below except store_close() is thread-safe.  Writes
 * (put/delete/save/rebuild) are serialised; searches run concurrently with
 * each other and never see a half-applied write: a writer holds the store's
 * lock exclusively while it commits to LMDB and applies the same change to
 * the index.  Reads (get/foreach/search) hold it shared, so a long
 * store_image_foreach() delays writers until it returns.  Two kinds of
 * read take it exclusively, because FAISS 1.7.3's C API has no per-search
 * parameters and they change the index's efSearch/nprobe for the call: a
 * filtered search that has to look deeper than usual into an approximate
 * index, and a range search over HNSW.  Callbacks run
 * with that shared lock held and must not call write functions of the same
 * store (that would deadlock); they may call read functions.
 *
 * Thread counts: the store starts no threads and sets no thread counts,
 * neither process-wide nor for the calling thread.  FAISS's OpenMP work
 * (index builds, training, batch adds, searches) runs with the OpenMP
 * setting of the thread that calls the store, and exact searches use
 * OpenBLAS with the process's setting.  The program decides both: main()
 * calls cdx_threads_set() (common/threads.h), and a thread that wants
 * another count for its own work (e.g. one OpenMP thread for single-query
 * searches) calls cdx_threads_this() on itself.
 *
 * Processes: one process at a time may open a store directory; a second
 * store_open() of the same directory (from another process or the same one)
 * fails with CDX_EBUSY.
 */
#ifndef CDX_STORE_H
#define CDX_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "classify/classify.h"
#include "common/cdx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct store store;

#define STORE_HASH_LEN 16
/* capture_time of an image whose capture time is not known. */
#define STORE_TIME_UNKNOWN INT64_MIN
/* Longest path a record may have, in bytes (LMDB's key limit). */
#define STORE_PATH_MAX 511
/* How far a stored embedding's component may be from the normalised
 * float32 one: half of binary16's spacing just below 1. */
#define STORE_EMB_ABS_ERR (1.0f / 4096)

/* Largest supported embedding dimension. */
#define STORE_DIM_MAX 4096
/* Longest path of a video clip: its frames' keys add 5 bytes. */
#define STORE_CLIP_PATH_MAX (STORE_PATH_MAX - 5)
/* Latest frame time, in ms (49.7 days). */
#define STORE_FRAME_MS_MAX ((int64_t)UINT32_MAX - 1)
/* Default for store_params.auto_flat_max. */
#define STORE_AUTO_FLAT_MAX 200000
/* "auto" chooses "ivfpq" from this many images: an IVF index of float32
 * vectors takes about 2.4 GB a million in RAM, IVF-PQ 80 MB. */
#define STORE_AUTO_PQ_MIN 2000000
/* Default of store_params.rerank. */
#define STORE_RERANK 200
/* ... but a search re-scores at most this many (or 2k, if more). */
#define STORE_RERANK_MAX 20000

typedef struct store_params {
	/* Embedding dimension.  Required (1..STORE_DIM_MAX). */
	int dim;
	/* Identity of the model that makes the embeddings: its architecture
	 * and weights, "<architecture>@<weights hash>" (clip_model_info.key,
	 * e.g. "clip-512-224/32-v768x12-t512x12@0123456789abcdef"), never a
	 * folder's name.  Required, at most 255 bytes.  Opening a store made
	 * with another model_id or dim fails with CDX_EMODEL, unless reembed
	 * is set.  One exception keeps older stores opening: a store that
	 * recorded no label (made when the id was "<folder name>@<hash>")
	 * opens when the text after the last '@' (the weights hash) and dim
	 * match, and model_id is rewritten (logged). */
	const char *model_id;
	/* The model's name as shown (its folder's name).  Optional (NULL: not
	 * recorded), at most 255 bytes; recorded at every open, so a renamed
	 * folder with the same weights updates it silently. */
	const char *model_label;
	/* The model's family ("clip", "siglip", "siglip2"; clip_family_name),
	 * recorded beside model_id so that a store says what made it.
	 * Optional (NULL: not recorded), at most 31 bytes. */
	const char *model_family;
	/* Index kind: "auto" (default), "flat" (exact inner product),
	 * "hnsw" (HNSW32, efSearch below), "ivf" (IVF, nlist ~ 2*sqrt(n)
	 * rounded to a power of two, nprobe below), "ivfpq" (the same lists
	 * holding product-quantised codes, dim/8 bytes a vector: "IVF4096,
	 * PQ64" at 512-d), or any FAISS index_factory description ("HNSW16",
	 * "IVF1024,Flat", ...; the store wraps it in an IDMap2 itself, except
	 * descriptions starting with "IVF", which keep the ids in their lists).
	 * The metric is always inner product.  A kind with PQ codes is
	 * re-ranked: a search takes rerank (below) x k candidates from the index
	 * and scores them exactly from the stored embeddings, and a range
	 * search grows top-k candidates, keeping those whose exact score
	 * reaches min_score, so scores are always exact.  Where the codes
	 * are a multiple of 8 bytes (every dim that is a multiple of 64),
	 * their lists live in index.base, memory-mapped read-only, and what
	 * is added after the build in a delta in RAM (saved in index.faiss);
	 * deletes leave tombstones; the store rebuilds when half its vectors
	 * are dead or the delta reaches half of index.base.
	 * "auto" is exact up to auto_flat_max images, "ivf" above and
	 * "ivfpq" from STORE_AUTO_PQ_MIN; it is
	 * resolved when the store is opened, on store_index_rebuild(), and
	 * after each write batch (a batch that leaves the kind unsuited
	 * rebuilds the index within that write), with a factor-2 hysteresis
	 * so that a store near a threshold does not rebuild back and forth.  IVF kinds need training: while a store has
	 * fewer than 39 * nlist images an IVF request is served by an exact
	 * index; the switch happens at the next open or rebuild. */
	const char *index_kind;
	/* 0 (default): a model/dim mismatch fails with CDX_EMODEL.
	 * 1: the store adopts the new model_id and dim and deletes every
	 * image record and failure record (ids are still never reused; the
	 * key/value table is kept), so the caller re-embeds every file. */
	int reembed;
	/* Initial LMDB map size in bytes (default 1 GiB).  The map grows
	 * automatically (doubling) when a write does not fit. */
	size_t map_size;
	/* Size threshold of "auto" (default STORE_AUTO_FLAT_MAX). */
	size_t auto_flat_max;
	/* HNSW efSearch (default 128) and IVF nprobe (default 0: nlist/256,
	 * at least 8, e.g. 8 of 2048 lists at 1M images; with PQ codes
	 * nlist/64, at least 32). */
	int hnsw_ef_search;
	int ivf_nprobe;
	/* PQ kinds: candidates taken from the index per result wanted, each
	 * scored exactly from its stored embedding (default 0:
	 * STORE_RERANK; 1: the codes' own top k, with exact scores), at most
	 * STORE_RERANK_MAX candidates (or 2k) a search.  At 10M clustered
	 * images, 200 gives recall@10 0.976 in 14 ms (docs/SCALE.md). */
	int rerank;
	/* Lists on disk: vectors a rebuild encodes in RAM before it writes
	 * them out as one part of index.base (default 0: 2^21, 144 MB of
	 * 512-d codes and ids), bounding its memory whatever the size. */
	size_t build_part;
	/* A filtered search scores the matching images exactly (reading
	 * their embeddings from LMDB) when at most this many match, and
	 * over-fetches from the index otherwise (default 20000). */
	size_t exact_filter_max;
} store_params;

/* Defaults as documented above; dim and model_id must still be set. */
store_params store_default_params(void);

/* Opens (creating if needed) the store in directory dir (created if
 * missing, parent must exist).  Loads the saved index and catches it up
 * from LMDB's change log, or rebuilds it from LMDB when the file is
 * missing, corrupt, truncated, older than the log, or of another kind than
 * requested.  On success *out is a new handle the caller closes with
 * store_close().
 * Errors: CDX_EINVAL (bad params), CDX_EMODEL (store made with another
 * model or dim; the message names both), CDX_EBUSY (already open),
 * CDX_EPERM/CDX_EIO (directory not writable or unreadable),
 * CDX_EFORMAT (not a clipdex store / other schema), CDX_ESTORE, CDX_EINDEX,
 * CDX_ENOMEM. */
int store_open(const char *dir, const store_params *params, store **out,
	       cdx_error *err);

/* Saves the index (as store_save) and frees the handle; NULL is a no-op.
 * Not thread-safe: no other call on s may be running or follow.  A failure
 * to save is only logged (the index is derived state). */
void store_close(store *s);

/* ---- image records ---- */

typedef struct store_image {
	uint64_t id;            /* set by put; never 0 */
	const char *path;       /* canonical absolute path, <= STORE_PATH_MAX */
	int64_t size;           /* file size in bytes */
	int64_t mtime_ns;       /* modification time, ns since the epoch */
	uint8_t hash[STORE_HASH_LEN]; /* content hash (XXH3-128 of the bytes) */
	uint32_t width, height; /* pixels */
	int64_t capture_time;   /* s since the epoch, or STORE_TIME_UNKNOWN */
	int64_t added;          /* s since the epoch; set by put */
	const float *embedding; /* dim floats */
	int kind;               /* enum store_kind (0, the default: an image) */
	int64_t time_ms;        /* a frame's time in its clip, ms from its
	                           start (0..STORE_FRAME_MS_MAX); 0 for images */
} store_image;

/* Record kinds (store_image.kind, store_hit.kind).
 *
 * Frames: every frame of a clip is a record of its own (embedding, id,
 * tags), with the clip's path, size, mtime and hash, and its time_ms; a
 * path holds either one image or the frames of one clip, at distinct
 * times.  The path calls work on the whole clip: store_image_get_by_path
 * gives its first frame, store_image_delete_paths and
 * store_batch_delete_path delete every frame, store_image_rename and
 * store_batch_rename move every frame (each keeps its id), and
 * store_image_foreach_prefix visits each frame.  A put of a frame at a
 * (path, time) that has one replaces it (same id), as a put of an image
 * at its path.  Replacing a clip's frames is delete_path, then the new
 * frames, in one batch (one transaction).  Paths of clips are at most
 * STORE_CLIP_PATH_MAX bytes. */
enum store_kind {
	STORE_KIND_IMAGE = 0,
	STORE_KIND_FRAME = 1,
};

/* Puts n images in one transaction: all or none.  A path already in the
 * store is replaced and keeps its id (and its `added` time); a new path gets
 * a new id.  Each embedding must be finite and non-zero; it is stored
 * L2-normalised, in half precision (see the top of this file).  On success imgs[i].id and imgs[i].added are set (the
 * caller's other fields and memory are only read).  If the same path occurs
 * twice in a batch, the later one wins.  A failure record of the same path is
 * removed.
 * Errors: CDX_EINVAL (relative, empty or NUL-bearing path, non-finite or
 * zero embedding, negative size; the message names the path), CDX_ETOOBIG
 * (path longer than STORE_PATH_MAX), CDX_EEXIST (a frame put at a path
 * that has an image record, or an image at one that has a clip's frames:
 * one kind per path, delete the other first; nothing written),
 * CDX_ESTORE/CDX_EFULL/CDX_EIO (nothing written), CDX_EINDEX (the records were committed to LMDB but the index
 * could not be updated nor rebuilt, e.g. out of memory: searches may miss
 * them until store_index_rebuild() or the next open).  imgs[i].id/added are
 * only meaningful on success. */
int store_image_put(store *s, store_image *imgs, size_t n, cdx_error *err);

/* Deletes the images with the given ids (or paths) in one transaction.
 * Ids/paths not in the store are skipped.  *n_deleted (if not NULL) is the
 * number actually deleted.  Errors as store_image_put. */
int store_image_delete(store *s, const uint64_t *ids, size_t n,
		       size_t *n_deleted, cdx_error *err);
int store_image_delete_paths(store *s, const char *const *paths, size_t n,
			     size_t *n_deleted, cdx_error *err);

/* Moves the records of paths from[i] to paths to[i] (files renamed on
 * disk), all in one transaction: each keeps its id, embedding, hash, size,
 * mtime, capture time and `added`, and gets a new label like a put (the
 * change sequence grows by one per record moved, so caches keyed by
 * store_seq() see the new paths).  Pairs apply in order: a path moved
 * earlier in the same call may move again.  A from path without a record
 * is skipped; a failure record of to[i] is removed.  *n_renamed (if not
 * NULL) is the number of records moved.
 * Errors: CDX_EINVAL/CDX_ETOOBIG (a bad path, as put), CDX_EEXIST (a to
 * path already has a record: nothing is written; delete it first),
 * CDX_ESTORE/CDX_EFULL/CDX_EIO (nothing written), CDX_EINDEX as put. */
int store_image_rename(store *s, const char *const *from,
		       const char *const *to, size_t n, size_t *n_renamed,
		       cdx_error *err);

/* Copies the image with this id (or path; a clip's path: its first
 * frame) out of the store.  On success
 * *out is one heap block (the struct, its path and its embedding) that the
 * caller owns and frees with store_image_free().
 * Errors: CDX_ENOTFOUND, CDX_ENOMEM, CDX_ESTORE. */
int store_image_get(store *s, uint64_t id, store_image **out, cdx_error *err);
int store_image_get_by_path(store *s, const char *path, store_image **out,
			    cdx_error *err);
/* Frees what store_image_get*() returned; NULL is a no-op. */
void store_image_free(store_image *img);

/* The content hash of a file's bytes, as store_image.hash holds it: the
 * canonical (big-endian) XXH3-128 of data[0..len). */
void store_content_hash(const void *data, size_t len,
			uint8_t hash[STORE_HASH_LEN]);

/* Ids of the images whose content hash is `hash`, ascending.  Writes up to
 * cap ids to ids[] and the total number found to *n (which may exceed cap).
 * Errors: CDX_ESTORE. */
int store_image_find_hash(store *s, const uint8_t hash[STORE_HASH_LEN],
			  uint64_t *ids, size_t cap, size_t *n,
			  cdx_error *err);

/* Calls fn once per image, in id order, from one consistent snapshot.  img
 * and everything it points to are borrowed: valid only during the call.
 * A non-zero return from fn stops the iteration and is returned.
 * Errors: CDX_ESTORE, CDX_ENOMEM. */
typedef int (*store_image_fn)(void *user, const store_image *img);
int store_image_foreach(store *s, store_image_fn fn, void *user,
			cdx_error *err);

/* As store_image_foreach, for the images whose path is under folder dir
 * (common/path.h's rule, component by component: dir itself, and every
 * path below dir + '/'; "/photos" holds "/photos/a.jpg" but not
 * "/photos2/a.jpg"; "/" holds every path; a trailing '/' on dir is
 * ignored), in path order.  A cursor over the path index: the cost grows
 * with the number of images under dir, not with the store.
 * Errors: CDX_EINVAL (dir NULL or not absolute), CDX_ESTORE, CDX_ENOMEM,
 * or fn's non-zero return. */
int store_image_foreach_prefix(store *s, const char *dir, store_image_fn fn,
			       void *user, cdx_error *err);

/* Number of images; the change sequence (grows by one per image put or
 * delete, survives reopen, 0 for a new store). */
uint64_t store_image_count(store *s);
uint64_t store_seq(store *s);

/* ---- failure records (files that could not be indexed) ---- */

typedef struct store_failure {
	const char *path;   /* <= STORE_PATH_MAX bytes */
	const char *reason; /* human-readable, truncated to 1023 bytes */
	int64_t size;       /* of the file when it failed */
	int64_t mtime_ns;   /* of the file when it failed */
	int64_t when;       /* s since the epoch; set by put */
} store_failure;

/* Puts (replaces) the failure record of f->path. Errors as image put. */
int store_failure_put(store *s, const store_failure *f, cdx_error *err);
/* Copies a failure record out: *out is one heap block, freed with
 * store_failure_free().  Errors: CDX_ENOTFOUND, CDX_ENOMEM, CDX_ESTORE. */
int store_failure_get(store *s, const char *path, store_failure **out,
		      cdx_error *err);
void store_failure_free(store_failure *f);
/* Deletes one failure record.  Errors: CDX_ENOTFOUND, CDX_ESTORE. */
int store_failure_delete(store *s, const char *path, cdx_error *err);
/* As store_image_foreach, in path order; f is borrowed for the call. */
typedef int (*store_failure_fn)(void *user, const store_failure *f);
int store_failure_foreach(store *s, store_failure_fn fn, void *user,
			  cdx_error *err);
/* As store_image_foreach_prefix, for failure records (path order). */
int store_failure_foreach_prefix(store *s, const char *dir,
				 store_failure_fn fn, void *user,
				 cdx_error *err);
uint64_t store_failure_count(store *s);

/* ---- batches: many changes, one transaction ---- */

/* A batch collects changes of any kind in memory, in order; nothing
 * touches LMDB or the store's lock before store_batch_commit(), which
 * applies them all in one write transaction (one commit, synced to disk
 * once) and then to the index: all or nothing, as store_image_put.  Each
 * change has the meaning of the single call named below, applied in the
 * order added; a change may see what an earlier one in the same batch did
 * (a path deleted, then put; a record renamed, then renamed again).
 *
 * Ownership: store_batch_begin() makes a batch that the caller owns until
 * it passes it to store_batch_commit() or store_batch_abort(), which free
 * it whatever their outcome.  The add functions copy what they are given
 * (paths, reasons, embeddings): the caller's memory is only read during
 * the call.
 * Thread-safety: a batch belongs to one thread at a time; different
 * batches (and every other store call) may be used by other threads.
 * Errors of the add functions (the batch is unchanged and still usable):
 * CDX_EINVAL/CDX_ETOOBIG (bad path, embedding or size, as the single
 * calls check them), CDX_ENOMEM. */
typedef struct store_batch store_batch;

int store_batch_begin(store *s, store_batch **out, cdx_error *err);
/* As store_image_put of one image (its embedding is normalised now). */
int store_batch_put(store_batch *b, const store_image *img, cdx_error *err);
/* As store_image_rename of one pair, except when to already has a
 * record: replace = 1 deletes that record first, replace = 0 skips the
 * pair (never CDX_EEXIST).  A from without a record, or from == to, is
 * skipped (and to's record is kept). */
int store_batch_rename(store_batch *b, const char *from, const char *to,
		       int replace, cdx_error *err);
/* As store_image_delete / store_image_delete_paths of one id or path
 * (skipped if there is no such record). */
int store_batch_delete(store_batch *b, uint64_t id, cdx_error *err);
int store_batch_delete_path(store_batch *b, const char *path,
			    cdx_error *err);
/* As store_failure_put; store_batch_unfail deletes the failure record of
 * path if there is one (never CDX_ENOTFOUND). */
int store_batch_fail(store_batch *b, const store_failure *f, cdx_error *err);
int store_batch_unfail(store_batch *b, const char *path, cdx_error *err);
/* Changes added so far. */
size_t store_batch_len(const store_batch *b);
/* A group of changes that must go in together or not at all (a clip's
 * delete and frames): store_batch_mark() before the first, and on a
 * failed add store_batch_rollback(b, mark) drops every change added since
 * (the batch is as it was at the mark; a mark at or past the end is a
 * no-op). */
size_t store_batch_mark(const store_batch *b);
void store_batch_rollback(store_batch *b, size_t mark);

/* What a committed batch did. */
typedef struct store_batch_counts {
	size_t put;             /* images put */
	size_t renamed;         /* records moved to a new path */
	size_t deleted;         /* image records deleted (replace included) */
	size_t failed;          /* failure records put */
} store_batch_counts;

/* Applies b's changes in one transaction and frees b.  An empty batch
 * writes nothing.  *counts (may be NULL) is filled on success and on
 * CDX_EINDEX.  Errors: as store_image_put (CDX_ESTORE/CDX_EFULL/CDX_EIO:
 * nothing written; CDX_EINDEX: committed, index behind), CDX_ENOMEM, and
 * CDX_ECORRUPT for a damaged record met on the way (nothing written). */
int store_batch_commit(store_batch *b, store_batch_counts *counts,
		       cdx_error *err);
/* Frees b without writing anything; NULL is a no-op. */
void store_batch_abort(store_batch *b);

/* ---- key/value settings (persistent, small) ---- */

/* key: 1..255 bytes of text; value: up to 1 MiB.  store_kv_get returns a
 * malloc'd copy (*val, *len) the caller frees with free(); the copy has an
 * extra NUL byte after *len bytes so text values can be used directly.
 * Errors: CDX_EINVAL, CDX_ETOOBIG, CDX_ENOTFOUND (get/delete), CDX_ENOMEM,
 * CDX_ESTORE. */
int store_kv_put(store *s, const char *key, const void *val, size_t len,
		 cdx_error *err);
int store_kv_get(store *s, const char *key, void **val, size_t *len,
		 cdx_error *err);
int store_kv_delete(store *s, const char *key, cdx_error *err);

/* ---- tag sets and tags ----
 *
 * A tag set is a classify/classify.h cls_set kept in LMDB under its name.
 * Every image is scored against every tag set from its stored embedding,
 * and the labels that apply (cls_applied) are stored as its tags, with
 * their probabilities.  An image's tags are written in the same write
 * transaction as its record (store_image_put, store_batch_put), and
 * removed with it; a rename keeps them (the id stays).  A set whose
 * model_key differs from the store's model_id is kept but applies to
 * nothing (its tags are dropped) until it is put again for this model.
 * Tag sets survive store_params.reembed; their tags do not.
 *
 * Thread-safety: as every store call.  The store keeps the decoded sets
 * in memory (loaded at open); store_tagset_put/delete change that list
 * only after their commit, with the store's lock held exclusively, and
 * image writes (which score with it), filters, store_image_tags,
 * store_tag_counts_get and store_tagset_foreach read it under the same
 * lock, so they see either the old sets and tags or the new ones.
 * store_tagset_put re-tags the whole store (about 0.5 s per 100 000
 * images of 512 dims with 100 labels, docs/STORE.md) without that lock:
 * readers go on with the old sets and tags meanwhile and see the new ones
 * from its commit on; other writers wait for it.  Tagging at put costs one
 * cls_score per set per image, inside the put's write transaction. */

/* Defines or replaces the set c->name and re-tags every image with it,
 * all in one write transaction.  c->dim must be the store's dim.  *tagged
 * (if not NULL) receives the number of images it tagged (given at least
 * one of its labels; 0 for a set of another model).
 * Errors: CDX_EINVAL (dim, name, an empty label or one given twice),
 * CDX_ENOMEM, CDX_ESTORE/CDX_EFULL/
 * CDX_EIO (nothing written). */
int store_tagset_put(store *s, const cls_set *c, uint64_t *tagged,
		     cdx_error *err);
/* *out is a decoded copy the caller frees with cls_set_free().
 * Errors: CDX_ENOTFOUND, CDX_ECORRUPT, CDX_ENOMEM, CDX_ESTORE. */
int store_tagset_get(store *s, const char *name, cls_set **out,
		     cdx_error *err);
/* Deletes the set and every tag it gave, in one transaction.
 * Errors: CDX_ENOTFOUND, CDX_ESTORE. */
int store_tagset_delete(store *s, const char *name, cdx_error *err);
/* Calls fn for every set in name order; fn returning non-zero stops the
 * walk and that value is returned.  The set is valid during the call,
 * which runs with the store's lock held shared (as store_image_foreach's
 * callbacks): fn may read the store but must not write to it. */
typedef int (*store_tagset_fn)(void *user, const cls_set *c);
int store_tagset_foreach(store *s, store_tagset_fn fn, void *user,
			 cdx_error *err);

typedef struct store_tag {
	const char *set;        /* both point into the same block */
	const char *label;
	float prob;
} store_tag;
typedef struct store_tags {
	size_t n;               /* by set name, then highest prob first */
	store_tag *tags;
} store_tags;
/* The tags of image id; *out is one block freed with store_tags_free().
 * An image without tags gives n = 0.  Errors: CDX_ENOTFOUND (no such
 * image), CDX_ENOMEM, CDX_ESTORE. */
int store_image_tags(store *s, uint64_t id, store_tags **out,
		     cdx_error *err);
void store_tags_free(store_tags *t);

typedef struct store_tag_count {
	const char *set, *label; /* into the same block */
	uint64_t images;
} store_tag_count;
typedef struct store_tag_counts {
	size_t n;               /* every label of the sets asked, zero counts
	                           included, in set then label order */
	store_tag_count *counts;
} store_tag_counts;
/* Images per label of set (NULL: of every set).  Errors: CDX_ENOTFOUND
 * (no such set), CDX_ENOMEM, CDX_ESTORE. */
int store_tag_counts_get(store *s, const char *set, store_tag_counts **out,
			 cdx_error *err);
void store_tag_counts_free(store_tag_counts *c);

/* ---- search ---- */

enum store_time_field {
	STORE_TIME_NONE = 0,    /* no time filter */
	STORE_TIME_CAPTURE = 1, /* capture_time; unknown times never match */
	STORE_TIME_MTIME = 2,   /* mtime, in whole seconds (floor) */
};

typedef struct store_filter {
	const char *path_prefix; /* NULL or "": any path; a plain byte prefix
				    (use a trailing '/' for a directory), as
				    store_path_has_prefix() */
	int time_field;          /* enum store_time_field */
	int64_t time_min;        /* s since the epoch, inclusive */
	int64_t time_max;        /* s since the epoch, inclusive */
	/* Tags: an image matches when it has every tag of `tags` and none of
	 * `not_tags`.  A tag is "LABEL" (that label in any set) or
	 * "SET/LABEL" (when the text before the first '/' names a set).
	 * An unknown tag matches nothing (so as a not_tag, it excludes
	 * nothing). */
	const char *const *tags;
	size_t n_tags;
	const char *const *not_tags;
	size_t n_not_tags;
} store_filter;

/* The path_prefix rule (of store_filter, and of the dupes module): 1 when
 * path (len bytes; it need not end in NUL) starts with the bytes of
 * prefix, a plain string prefix, so "/a/b" matches "/a/bc.jpg"; a NULL or
 * empty prefix matches every path.  Else 0.  Thread-safe. */
int store_path_has_prefix(const char *path, size_t len, const char *prefix);

typedef struct store_hit {
	uint64_t id;
	float score;            /* cosine similarity, in [-1, 1] */
	const char *path;       /* points into the same store_results block */
	int64_t size;
	int64_t mtime_ns;
	int64_t capture_time;
	int64_t added;
	uint32_t width, height;
	int kind;               /* enum store_kind */
	int64_t time_ms;        /* a frame's time in its clip (0: an image) */
	const float *embedding; /* dim floats from store_search_vectors(),
				   in the same block; NULL otherwise */
} store_hit;

typedef struct store_results {
	size_t n;               /* number of hits, best first */
	store_hit *hits;
} store_results;

/* The k images most similar to query among those matching filter (NULL:
 * all).  query is dim floats of unit length, as the encoder makes them
 * (common/vec.h: cdx_vec_is_unit; a combined query is normalised once by
 * whoever combines it), else CDX_EINVAL: the store does not normalise
 * queries.  Exact for
 * the flat kind; for approximate kinds the index is searched with the
 * configured efSearch/nprobe.  With a filter, fewer than k hits are
 * returned only when fewer than k images match it: selective filters are
 * scored exactly over the matching images, broad ones by over-fetching
 * from the index (doubling) until k matches are found.  On success *out is
 * one heap block the caller frees with store_results_free().
 * Errors: CDX_EINVAL, CDX_ENOMEM, CDX_EINDEX, CDX_ESTORE. */
int store_search(store *s, const float *query, size_t k,
		 const store_filter *filter, store_results **out,
		 cdx_error *err);
/* As store_search, and each hit carries its stored embedding (dim floats,
 * read with the hit's record, no extra lookup): for callers that compare
 * the hits with each other (collapsing near-identical results).  The
 * block grows by dim * 4 bytes per hit. */
int store_search_vectors(store *s, const float *query, size_t k,
			 const store_filter *filter, store_results **out,
			 cdx_error *err);
void store_results_free(store_results *r);

/* All images with similarity >= min_score to each of nq queries (for
 * near-duplicate detection; unit length each, as store_search).  Result of query i: ids[lims[i] .. lims[i+1]),
 * scores alike, best first.  Exact for flat and IVF kinds' own
 * range search (IVF: within the probed lists); HNSW (no range search in
 * FAISS) grows a top-k search until the k-th score falls below min_score.
 * *out is one heap block freed with store_range_free(). */
typedef struct store_range {
	size_t nq;
	size_t *lims;           /* nq + 1 entries */
	uint64_t *ids;
	float *scores;
} store_range;
int store_range_search(store *s, const float *queries, size_t nq,
		       float min_score, store_range **out, cdx_error *err);
void store_range_free(store_range *r);

/* ---- the derived index ---- */

/* Writes the index with the change sequence it covers to index.faiss
 * (temp file, fsync, rename) and trims LMDB's change log up to it.
 * Errors: CDX_EIO/CDX_EPERM, CDX_EINDEX, CDX_ESTORE. */
int store_save(store *s, cdx_error *err);

/* Rebuilds the index from LMDB (re-resolving "auto").  Errors: as open. */
int store_index_rebuild(store *s, cdx_error *err);

/* Checks that the index holds exactly the images of LMDB (label for
 * label, and for the flat kind vector for vector).  Errors: CDX_ECORRUPT
 * (with what disagrees), CDX_ENOMEM, CDX_ESTORE, CDX_EINDEX. */
int store_verify(store *s, cdx_error *err);

typedef struct store_stats {
	uint64_t images;        /* image records */
	uint64_t failures;      /* failure records */
	uint64_t seq;           /* change sequence */
	uint64_t index_ntotal;  /* vectors in the index (live + dead) */
	uint64_t index_dead;    /* deleted vectors still in the index
				   (HNSW graphs, lists on disk) */
	char index_kind[128];   /* FAISS factory string actually in use */
	uint64_t index_delta;   /* lists on disk (IVF-PQ kinds): vectors
				   added in memory since index.base */
	uint64_t index_base_bytes; /* size of index.base; 0 without one */
	char model_family[32];  /* recorded by store_params.model_family; ""
				   for stores that have none */
	char model_label[256];  /* store_params.model_label of the last open
				   that gave one; "" if none did */
	int rebuilt_on_open;    /* 1 if open rebuilt the index from LMDB */
	uint64_t caught_up;     /* log entries applied at open */
	uint64_t commits;       /* LMDB write transactions committed since
				   open, each one synced to disk (fsync) */
	uint64_t frames;        /* of the records (images), frames of clips */
	uint64_t clips;         /* clips with at least one frame */
} store_stats;
void store_get_stats(store *s, store_stats *st);

#ifdef __cplusplus
}
#endif
#endif
