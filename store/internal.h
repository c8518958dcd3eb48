/*
 * internal.h - what store.c (LMDB records) and index.c (FAISS index,
 * search) share.  Private to the store module.
 *
 * Labels: every vector in the FAISS index carries a label, the change
 * sequence number of the put that wrote it.  A replaced image gets a new
 * label, so an index that cannot remove vectors (HNSW) keeps the old one as
 * a dead entry that searches skip.  The live map (label -> id and the
 * filterable times) holds exactly the labels of the images in LMDB.
 */
#ifndef CDX_STORE_INTERNAL_H
#define CDX_STORE_INTERNAL_H

#include <lmdb.h>
#include <pthread.h>
#include <stdint.h>

#include <faiss/c_api/Index_c.h>

#include "common/cdx.h"
#include "common/vec.h"
#include "store/store.h"

/* ---- live map: label -> slot in dense arrays ---- */

typedef struct live_map {
	size_t n, cap;           /* dense arrays: used, allocated */
	int64_t *label;
	uint64_t *id;
	int64_t *ctime;          /* capture time (s) or STORE_TIME_UNKNOWN */
	int64_t *mtime_s;        /* mtime in whole seconds */
	size_t hcap;             /* power of two */
	uint32_t *hslot;         /* slot + 1, 0 = empty */
} live_map;

void live_init(live_map *m);
void live_free(live_map *m);
void live_clear(live_map *m);
/* Returns the slot of label or -1. */
long live_find(const live_map *m, int64_t label);
int live_add(live_map *m, int64_t label, uint64_t id, int64_t ctime,
	     int64_t mtime_s);
void live_remove(live_map *m, int64_t label);

/* ---- LMDB layout ---- */

/* Every file of a store: the owner's alone (they hold photo paths). */
#define STORE_FILE_MODE 0600

/* A record's magic tells its embedding's format: binary16 since schema 4
 * (store.c normalise rounds every embedding to it), float32 before.  A
 * store being migrated (store.c migrate_f16) holds both. */
#define REC_MAGIC 0x52584443u   /* "CDXR": dim float32 */
#define REC_MAGIC16 0x48584443u /* "CDXH": dim binary16 */

/* Value of the rec table (key: id, native u64), followed by the embedding
 * (dim values, as the magic says) and the path (path_len bytes, no
 * NUL). */
typedef struct rec_hdr {
	uint32_t magic;
	uint32_t dim;
	uint64_t id;
	int64_t label;
	int64_t size;
	int64_t mtime_ns;
	uint8_t hash[STORE_HASH_LEN];
	uint32_t width, height;
	int64_t capture_time;
	int64_t added;
	uint32_t path_len;
	/* 0: an image; else a frame of the clip at path, at frame - 1 ms
	 * (schema 3; schema 2 wrote 0 here). */
	uint32_t frame;
} rec_hdr;

/* A frame's key in the path table: the clip's path, a NUL, and frame
 * (rec_hdr.frame) big-endian, so the frames of a clip follow each other
 * in time order right after the clip's path. */
#define STO_FRAME_KEY_EXTRA 5
/* Writes the path-table key of (path, frame) to key (room for
 * STORE_PATH_MAX + 1 bytes) and returns its length. */
size_t sto_path_key(char *key, const char *path, size_t plen, uint32_t frame);

/* Value of the attr table (key: id): what the live map needs. */
typedef struct rec_attr {
	int64_t label;
	int64_t ctime;
	int64_t mtime_s;
} rec_attr;

/* Value of the log table (key: seq, native u64). */
enum { LOG_PUT = 1, LOG_DEL = 2 };
typedef struct log_entry {
	uint64_t id;
	int64_t old_label;      /* put: label replaced, or -1; del: label */
	uint32_t op;
	uint32_t reserved;
} log_entry;

struct store {
	char *dir;
	int lock_fd;
	MDB_env *env;
	MDB_dbi db_meta, db_rec, db_attr, db_path, db_hash, db_log, db_fail,
		db_kv, db_tagset, db_tags, db_bylabel;
	size_t map_size;

	/* Writers hold it exclusively, readers shared.  A long write (a
	 * re-tag) does its work without it and takes it only for the commit
	 * and the in-memory update after. */
	pthread_rwlock_t lock;
	/* Held by every write transaction, from begin to the in-memory
	 * update after the commit, always before lock: writers take turns
	 * and what they read of the in-memory state (seq, sets, counts)
	 * cannot change under them. */
	pthread_mutex_t write_lock;
	pthread_mutex_t save_lock;

	int dim;
	char model_id[256];
	char model_family[32];  /* as recorded in the store ("" if not) */
	char model_label[256];
	char kind_req[128];     /* as requested */
	size_t auto_flat_max;
	int hnsw_ef_search, ivf_nprobe;
	size_t exact_max;       /* see store_params.exact_filter_max */

	/* Under lock: */
	uint64_t seq, next_id, count, fail_count;
	FaissIndex *index;
	char kind[128];         /* factory string in use (without IDMap2) */
	int tombstones;         /* 1: the index cannot remove (HNSW) */
	int rerank;             /* 1: PQ codes: scores come from the records */
	int rerank_factor;      /* candidates per result for those */
	size_t build_part;      /* store_params.build_part, resolved */
	uint64_t dead;          /* dead vectors in a tombstone index */
	uint64_t index_seq;     /* seq the index covers (== seq when sane) */
	uint64_t saved_seq;     /* seq of index.faiss on disk, or UINT64_MAX */
	uint64_t base_hash;     /* the index.base served (lists on disk), or 0 */
	live_map live;
	int rebuilt_on_open;
	int migrate_f16;        /* schema 3 found: store_open converts */
	uint64_t caught_up;
	uint64_t commits;       /* write transactions committed since open */
	uint64_t frames, clips; /* frame records; clips with any (meta) */
	/* The tag sets, by name (tags.c); written only after a commit with
	 * the lock held exclusively, read with it held either way. */
	struct tag_set *sets;
	size_t nsets, sets_cap;
};

/* Names shared by store.c and index.c carry the prefix sto_ (the
 * store's internals), idx_ (the index) or live_ (the live map). */

/* Translates an LMDB return code, with what failed. */
int sto_mdb_err(cdx_error *err, int rc, const char *what);
/* Translates a failed FAISS C API call: CDX_EINDEX with its message. */
int sto_faiss_err(cdx_error *err, int rc, const char *what);

/* Reads and checks a rec value: its header into *h, and where given,
 * *path (path_len bytes, no NUL) and *emb (the stored embedding's bytes,
 * unaligned: read it with sto_rec_emb) pointing into v.  CDX_ECORRUPT when
 * the value is malformed. */
int sto_rec_parse(const store *s, const MDB_val *v, rec_hdr *h,
		  const char **path, const unsigned char **emb,
		  cdx_error *err);
/* The size in bytes of record h's embedding, 0 for an unknown magic. */
size_t sto_rec_emb_size(const store *s, const rec_hdr *h);
/* Record h's embedding (emb from sto_rec_parse) as dim floats in out. */
void sto_rec_emb(const store *s, const rec_hdr *h, const unsigned char *emb,
		 float *out);


/* One write transaction of fn (store.c's write_txn): under the exclusive
 * lock, retried after growing the map.  after (may be NULL) runs after a
 * successful commit with the lock still held exclusively. */
typedef int (*sto_txn_fn)(store *s, MDB_txn *txn, void *arg, cdx_error *err);
int sto_write(store *s, sto_txn_fn fn, void *arg,
	      void (*after)(store *s, void *arg), cdx_error *err);
/* The same for long work (a re-tag): fn runs holding only write_lock, so
 * readers go on with their LMDB snapshots; the lock is taken exclusively
 * for the commit and after (and to grow the map).  fn may read the
 * in-memory state but change it only with the lock held exclusively. */
int sto_write_long(store *s, sto_txn_fn fn, void *arg,
		   void (*after)(store *s, void *arg), cdx_error *err);
/* A read transaction with the lock held shared, and its end. */
int sto_read_begin(store *s, MDB_txn **txn, cdx_error *err);
void sto_read_end(store *s, MDB_txn *txn);

/* ---- tags (tags.c) ---- */

/* One tag set in memory.  num: its stable number in the tags and bylabel
 * tables; applies: made by the store's model (model_key, dim), so it tags
 * images. */
typedef struct tag_set {
	uint32_t num;
	int applies;
	cls_set *c;
} tag_set;

/* One tag in the tags table's value (an array of them, per image). */
typedef struct tag_entry {
	uint32_t set, label;
	float prob;
} tag_entry;

/* Loads the sets at open; frees them at close. */
int tag_load(store *s, MDB_txn *txn, cdx_error *err);
void tag_free(store *s);
/* Inside a write txn (exclusive lock): scores vec (dim floats, unit) with
 * every applying set and writes image id's tags, replacing any; drops
 * them. */
int tag_image(store *s, MDB_txn *txn, uint64_t id, const float *vec,
	      cdx_error *err);
int tag_drop(store *s, MDB_txn *txn, uint64_t id, cdx_error *err);

/* A search's tag filter, resolved in its read txn: with tags, the sorted
 * ids having every tag and no not_tag (allow); with only not_tags, the
 * sorted ids having one of them (deny). */
typedef struct tag_filter {
	int active;             /* it restricts anything */
	int has_tags;           /* allow (else deny) decides */
	uint64_t *ids;
	size_t n;
} tag_filter;
int tag_filter_build(store *s, MDB_txn *txn, const store_filter *f,
		     tag_filter *tf, cdx_error *err);
int tag_filter_match(const tag_filter *tf, uint64_t id);
void tag_filter_free(tag_filter *tf);
/* store_verify's part (shared lock, txn): tags agree with the records
 * and the sets, and the by-label index with the tags. */
int tag_verify(store *s, MDB_txn *txn, cdx_error *err);

/* index.c: under the exclusive lock unless said otherwise. */
int idx_open(store *s, MDB_txn *txn, cdx_error *err);
int idx_rebuild(store *s, MDB_txn *txn, cdx_error *err);
/* Applies one committed batch: removes labels, adds vectors. */
int idx_apply(store *s, const int64_t *rm, size_t nrm, const int64_t *add,
	      const float *vecs, size_t nadd, cdx_error *err);
/* Writes index.faiss (shared lock held by the caller). */
int idx_save(store *s, cdx_error *err);
/* Deletes index.faiss (derived state), so that the next open rebuilds. */
void idx_forget(store *s);
void idx_close(store *s);
/* store_get_stats's index fields (shared lock). */
void idx_stats(store *s, store_stats *st);

/* 0 or -1 */
int sto_parse_kind_nlist(const char *kind, long *nlist);

#endif
