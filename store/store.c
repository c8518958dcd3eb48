/*
 * store.c - the LMDB side of the store: opening, metadata, image and
 * failure records, the key/value table, the change log.
 *
 * LMDB tables (named databases in one environment):
 *   meta  text key -> value: "schema", "dim", "model", "seq", "next_id",
 *         "next_set" (tags.c)
 *   rec   id (u64)  -> rec_hdr, embedding, path
 *   attr  id (u64)  -> rec_attr (label, capture time, mtime)
 *   path  path      -> id (an image), or path NUL frame (a frame of a
 *         clip, sto_path_key) -> id
 *   hash  16 bytes  -> ids (DUPSORT, fixed-size u64 duplicates)
 *   log   seq (u64) -> log_entry: the change log the index catches up from
 *   fail  path      -> size, mtime, when, reason
 *   kv    key       -> value
 *   tagset, tags, bylabel: tag sets and every image's tags (tags.c)
 *
 * Schema 2 added the three tag tables; a schema-1 store gains them (empty)
 * when it is opened.  Schema 3 added frames of video clips: rec_hdr.frame
 * (reserved, always 0, in schema 2: every older record reads as an image),
 * frame keys in the path table, and the meta counters "frames" and
 * "clips"; an older store gains the counters (0: it has no frames) when
 * it is opened.  Schema 4 keeps embeddings in binary16 (REC_MAGIC16)
 * instead of float32: an older store's records are converted when it is
 * opened (migrate_f16), MIGRATE_STEP a transaction, and the schema is
 * raised only when the last is done; a crash in between leaves a store of
 * both kinds of record, which every reader takes, and the next open goes
 * on where it stopped.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <faiss/c_api/error_c.h>
#include <faiss/c_api/utils/distances_c.h>
#include <xxhash.h>

#include "store/internal.h"

#define SCHEMA_VERSION 4u
#define MIGRATE_STEP 1024       /* records converted per transaction */
#define KV_VALUE_MAX (1u << 20)
#define REASON_MAX 1023
#define DEFAULT_MAP_SIZE ((size_t)1 << 30)

store_params
store_default_params(void)
{
	store_params p;
	memset(&p, 0, sizeof(p));
	p.index_kind = "auto";
	p.map_size = DEFAULT_MAP_SIZE;
	p.auto_flat_max = STORE_AUTO_FLAT_MAX;
	p.hnsw_ef_search = 128;
	p.ivf_nprobe = 0;
	p.exact_filter_max = 20000;
	return p;
}

int
sto_mdb_err(cdx_error *err, int rc, const char *what)
{
	int code = CDX_ESTORE;
	if (rc == MDB_MAP_FULL)
		code = CDX_EFULL;
	else if (rc == ENOMEM)
		code = CDX_ENOMEM;
	else if (rc == ENOSPC || rc == EDQUOT)
		code = CDX_EFULL; /* the disk: grow_map cannot help */
	else if (rc == EIO)
		code = CDX_EIO;
	else if (rc == EACCES || rc == EROFS || rc == EPERM)
		code = CDX_EPERM;
	else if (rc == MDB_NOTFOUND)
		code = CDX_ENOTFOUND;
	return cdx_error_set(err, code, "%s: %s", what, mdb_strerror(rc));
}

int
sto_faiss_err(cdx_error *err, int rc, const char *what)
{
	const char *m = faiss_get_last_error();
	return cdx_error_set(err, CDX_EINDEX, "%s: FAISS error %d: %s", what,
			     rc, m ? m : "(no message)");
}

static int64_t
now_s(void)
{
	return (int64_t)time(NULL);
}

static int64_t
floor_div_1e9(int64_t ns)
{
	int64_t q = ns / 1000000000;
	if (ns % 1000000000 < 0)
		q--;
	return q;
}

int
sto_rec_parse(const store *s, const MDB_val *v, rec_hdr *h,
	      const char **path, const unsigned char **emb, cdx_error *err)
{
	if (v->mv_size < sizeof(*h))
		return cdx_error_set(err, CDX_ECORRUPT,
				     "record too short (%zu bytes)", v->mv_size);
	memcpy(h, v->mv_data, sizeof(*h));
	size_t esz = sto_rec_emb_size(s, h);
	if (esz == 0 || h->dim != (uint32_t)s->dim ||
	    h->path_len > STORE_PATH_MAX ||
	    v->mv_size != sizeof(*h) + esz + h->path_len)
		return cdx_error_set(err, CDX_ECORRUPT,
				     "record %llu is malformed",
				     (unsigned long long)h->id);
	const unsigned char *b = v->mv_data;
	if (emb)
		*emb = b + sizeof(*h);
	if (path)
		*path = (const char *)b + sizeof(*h) + esz;
	return 0;
}

size_t
sto_rec_emb_size(const store *s, const rec_hdr *h)
{
	return h->magic == REC_MAGIC16 ? (size_t)s->dim * sizeof(uint16_t) :
	       h->magic == REC_MAGIC ? (size_t)s->dim * sizeof(float) : 0;
}

void
sto_rec_emb(const store *s, const rec_hdr *h, const unsigned char *emb,
	    float *out)
{
	size_t d = (size_t)s->dim;
	if (h->magic != REC_MAGIC16) {
		memcpy(out, emb, d * sizeof(float));
		return;
	}
	for (size_t i = 0; i < d; i++) {
		uint16_t x;
		memcpy(&x, emb + 2 * i, sizeof(x));
		out[i] = cdx_f32_from_f16(x);
	}
}

/* ---- meta helpers ---- */

static int
meta_get_u64(MDB_txn *txn, MDB_dbi db, const char *key, uint64_t *out)
{
	MDB_val k = { strlen(key), (void *)key }, v;
	int rc = mdb_get(txn, db, &k, &v);
	if (rc)
		return rc;
	if (v.mv_size != sizeof(uint64_t))
		return MDB_CORRUPTED;
	memcpy(out, v.mv_data, sizeof(*out));
	return 0;
}

static int
meta_put(MDB_txn *txn, MDB_dbi db, const char *key, const void *val,
	 size_t len)
{
	MDB_val k = { strlen(key), (void *)key }, v = { len, (void *)val };
	return mdb_put(txn, db, &k, &v, 0);
}

static int
meta_put_u64(MDB_txn *txn, MDB_dbi db, const char *key, uint64_t val)
{
	return meta_put(txn, db, key, &val, sizeof(val));
}

/* ---- open / close ---- */

/* The store's files hold photo paths: only the owner reads them, whatever
 * the umask was when they were created (older stores are tightened too). */
static int
own_files(store *s, cdx_error *err)
{
	static const char *const names[] = { "data.mdb", "lock.mdb",
					     "store.lock", "index.faiss" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", s->dir, names[i]);
		if (chmod(path, STORE_FILE_MODE) != 0 && errno != ENOENT) {
			int e = errno;
			return cdx_error_set(err, cdx_from_errno(e),
					     "cannot chmod %s: %s", path,
					     strerror(e));
		}
	}
	return 0;
}

static int
lock_dir(store *s, cdx_error *err)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/store.lock", s->dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, STORE_FILE_MODE);
	if (fd < 0) {
		int e = errno;
		return cdx_error_set(err, cdx_from_errno(e),
				     "cannot create %s: %s", path,
				     strerror(e));
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		char pid[32] = "";
		ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
		if (n > 0)
			pid[n] = '\0';
		else
			pid[0] = '\0';
		close(fd);
		if (e == EWOULDBLOCK)
			return cdx_error_set(
				err, CDX_EBUSY,
				"store %s is already open (by process %s); "
				"one process at a time may open a store",
				s->dir, pid[0] ? pid : "?");
		return cdx_error_set(err, CDX_EIO, "cannot lock %s: %s", path,
				     strerror(e));
	}
	char buf[32];
	int len = snprintf(buf, sizeof(buf), "%ld", (long)getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)len, 0) != len) {
		/* The pid is only informative. */
	}
	s->lock_fd = fd;
	return 0;
}

/* Deletes every image and failure record (re-embedding). */
static int
wipe_images(store *s, MDB_txn *txn)
{
	int rc;
	if ((rc = mdb_drop(txn, s->db_rec, 0)) ||
	    (rc = mdb_drop(txn, s->db_attr, 0)) ||
	    (rc = mdb_drop(txn, s->db_path, 0)) ||
	    (rc = mdb_drop(txn, s->db_hash, 0)) ||
	    (rc = mdb_drop(txn, s->db_log, 0)) ||
	    (rc = mdb_drop(txn, s->db_fail, 0)) ||
	    (rc = mdb_drop(txn, s->db_tags, 0)) ||
	    (rc = mdb_drop(txn, s->db_bylabel, 0)) ||
	    (rc = meta_put_u64(txn, s->db_meta, "frames", 0)) ||
	    (rc = meta_put_u64(txn, s->db_meta, "clips", 0)))
		return rc;
	s->frames = s->clips = 0;
	return 0;
}

/* Records the model's family and label (optional params) beside its
 * identity; a label that changed (a renamed folder) is replaced. */
static int
put_family(store *s, MDB_txn *txn, const store_params *p)
{
	int rc = 0;
	if (p->model_family != NULL)
		rc = meta_put(txn, s->db_meta, "family", p->model_family,
		    strlen(p->model_family));
	if (rc == 0 && p->model_label != NULL)
		rc = meta_put(txn, s->db_meta, "label", p->model_label,
		    strlen(p->model_label));
	return rc;
}

/* Whether two model ids name the same weights: the same text after their
 * last '@' (the weights hash, store_params.model_id). */
static int
same_weights(const char *a, const char *b)
{
	const char *ha = strrchr(a, '@'), *hb = strrchr(b, '@');
	return ha && hb && ha[1] && strcmp(ha, hb) == 0;
}

static int
check_meta(store *s, MDB_txn *txn, const store_params *p, cdx_error *err)
{
	MDB_val k = { 6, "schema" }, v;
	int rc = mdb_get(txn, s->db_meta, &k, &v);
	if (rc == MDB_NOTFOUND) {
		uint32_t schema = SCHEMA_VERSION, dim = (uint32_t)p->dim;
		if ((rc = meta_put(txn, s->db_meta, "schema", &schema,
				   sizeof(schema))) ||
		    (rc = meta_put(txn, s->db_meta, "dim", &dim, sizeof(dim))) ||
		    (rc = meta_put(txn, s->db_meta, "model", p->model_id,
				   strlen(p->model_id))) ||
		    (rc = put_family(s, txn, p)) ||
		    (rc = meta_put_u64(txn, s->db_meta, "seq", 0)) ||
		    (rc = meta_put_u64(txn, s->db_meta, "frames", 0)) ||
		    (rc = meta_put_u64(txn, s->db_meta, "clips", 0)) ||
		    (rc = meta_put_u64(txn, s->db_meta, "next_id", 1)))
			return sto_mdb_err(err, rc, "initialising store");
		return 0;
	}
	if (rc)
		return sto_mdb_err(err, rc, "reading store metadata");
	uint32_t schema, dim;
	if (v.mv_size != sizeof(schema))
		return cdx_error_set(err, CDX_EFORMAT,
				     "%s: not a clipdex store", s->dir);
	memcpy(&schema, v.mv_data, sizeof(schema));
	if (schema == 1 || schema == 2) {
		/* 1 -> 2: open_dbs created the tag tables (empty: no sets
		 * yet).  2 -> 3: no record is a frame yet (rec_hdr.frame was
		 * reserved and 0), so the frame counters start at 0. */
		uint32_t from = schema;
		schema = 3;
		if ((rc = meta_put_u64(txn, s->db_meta, "frames", 0)) ||
		    (rc = meta_put_u64(txn, s->db_meta, "clips", 0)) ||
		    (rc = meta_put(txn, s->db_meta, "schema", &schema,
				   sizeof(schema))))
			return sto_mdb_err(err, rc, "migrating the store");
		if (from == 1)
			cdx_log(CDX_LOG_INFO, "store %s: schema 1 -> 2 (tag "
				"tables added)", s->dir);
		cdx_log(CDX_LOG_INFO, "store %s: schema 2 -> 3 (frames of "
			"video clips)", s->dir);
	}
	if (schema == 3) {
		s->migrate_f16 = 1;     /* 3 -> 4 after the open: migrate_f16 */
		schema = SCHEMA_VERSION;
	}
	if (schema != SCHEMA_VERSION)
		return cdx_error_set(err, CDX_EFORMAT,
				     "%s: store schema %u, this build reads "
				     "1 to %u (made by a newer clipdex?)",
				     s->dir, schema, SCHEMA_VERSION);
	MDB_val kd = { 3, "dim" }, vd, km = { 5, "model" }, vm;
	if (mdb_get(txn, s->db_meta, &kd, &vd) || vd.mv_size != sizeof(dim) ||
	    mdb_get(txn, s->db_meta, &km, &vm) || vm.mv_size > 255)
		return cdx_error_set(err, CDX_ECORRUPT,
				     "%s: store metadata is damaged", s->dir);
	memcpy(&dim, vd.mv_data, sizeof(dim));
	char model[256];
	memcpy(model, vm.mv_data, vm.mv_size);
	model[vm.mv_size] = '\0';
	if (dim == (uint32_t)p->dim && strcmp(model, p->model_id) == 0) {
		/* stores made before families were recorded gain it; the
		 * label follows the folder's name silently */
		if ((rc = put_family(s, txn, p)) != 0)
			return sto_mdb_err(err, rc, "recording the model family");
		return 0;
	}
	MDB_val kl = { 5, "label" }, vl;
	if (dim == (uint32_t)p->dim &&
	    mdb_get(txn, s->db_meta, &kl, &vl) == MDB_NOTFOUND &&
	    same_weights(model, p->model_id)) {
		/* A store made before identities left out the folder's name
		 * ("<name>@<hash>", no label): the same weights and dim are
		 * the same model; its identity is rewritten once. */
		cdx_log(CDX_LOG_INFO,
			"store %s: model identity '%s' -> '%s' (same weights)",
			s->dir, model, p->model_id);
		if ((rc = meta_put(txn, s->db_meta, "model", p->model_id,
				   strlen(p->model_id))) ||
		    (rc = put_family(s, txn, p)))
			return sto_mdb_err(err, rc, "recording the model");
		return 0;
	}
	if (!p->reembed)
		return cdx_error_set(
			err, CDX_EMODEL,
			"%s holds embeddings of model '%s' (dim %u), not of "
			"'%s' (dim %d); open with reembed to re-embed",
			s->dir, model, dim, p->model_id, p->dim);
	cdx_log(CDX_LOG_WARN,
		"store %s: re-embedding: model '%s' (dim %u) -> '%s' (dim %d), "
		"image records deleted",
		s->dir, model, dim, p->model_id, p->dim);
	dim = (uint32_t)p->dim;
	if ((rc = wipe_images(s, txn)) ||
	    (rc = meta_put(txn, s->db_meta, "dim", &dim, sizeof(dim))) ||
	    (rc = meta_put(txn, s->db_meta, "model", p->model_id,
			   strlen(p->model_id))) ||
	    (rc = put_family(s, txn, p)))
		return sto_mdb_err(err, rc, "re-embedding store");
	return 0;
}

static int
open_dbs(store *s, MDB_txn *txn, cdx_error *err)
{
	struct {
		const char *name;
		unsigned flags;
		MDB_dbi *dbi;
	} t[] = {
		{ "meta", 0, &s->db_meta },
		{ "rec", MDB_INTEGERKEY, &s->db_rec },
		{ "attr", MDB_INTEGERKEY, &s->db_attr },
		{ "path", 0, &s->db_path },
		{ "hash", MDB_DUPSORT | MDB_DUPFIXED | MDB_INTEGERDUP,
		  &s->db_hash },
		{ "log", MDB_INTEGERKEY, &s->db_log },
		{ "fail", 0, &s->db_fail },
		{ "kv", 0, &s->db_kv },
		{ "tagset", 0, &s->db_tagset },
		{ "tags", MDB_INTEGERKEY, &s->db_tags },
		{ "bylabel",
		  MDB_INTEGERKEY | MDB_DUPSORT | MDB_DUPFIXED | MDB_INTEGERDUP,
		  &s->db_bylabel },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		int rc = mdb_dbi_open(txn, t[i].name, t[i].flags | MDB_CREATE,
				      t[i].dbi);
		if (rc)
			return sto_mdb_err(err, rc, t[i].name);
	}
	return 0;
}

static int
validate_params(const store_params *p, cdx_error *err)
{
	if (!p)
		return cdx_error_set(err, CDX_EINVAL, "store_open: no params");
	if (p->dim < 1 || p->dim > STORE_DIM_MAX)
		return cdx_error_set(err, CDX_EINVAL,
				     "store_open: dim %d out of 1..%d", p->dim,
				     STORE_DIM_MAX);
	if (p->model_family != NULL && strlen(p->model_family) > 31)
		return cdx_error_set(err, CDX_EINVAL,
				     "store_open: model_family over 31 bytes");
	if (!p->model_id || !p->model_id[0] || strlen(p->model_id) > 255)
		return cdx_error_set(err, CDX_EINVAL,
				     "store_open: model_id must be 1..255 bytes");
	if (p->model_label && strlen(p->model_label) > 255)
		return cdx_error_set(err, CDX_EINVAL,
				     "store_open: model_label over 255 bytes");
	if (p->index_kind && strlen(p->index_kind) > 100)
		return cdx_error_set(err, CDX_EINVAL,
				     "store_open: index_kind too long");
	if (p->hnsw_ef_search < 0 || p->ivf_nprobe < 0 || p->rerank < 0)
		return cdx_error_set(err, CDX_EINVAL,
				     "store_open: negative parameter");
	return 0;
}

static int grow_map(store *s, cdx_error *err);

/* migrate_step's answer when the map must grow (nothing was written). */
#define MIGRATE_GROW 2

/* Converts up to MIGRATE_STEP float32 records after *from (the first
 * when *first) to binary16, and their tags, in one transaction: 1 when it
 * reached the end, 0 when there is more, MIGRATE_GROW when the map is
 * full, or a CDX_E* code.  A malformed record is left as it is. */
static int
migrate_step(store *s, uint64_t *from, int *first, size_t *done,
	     cdx_error *err)
{
	MDB_txn *txn;
	MDB_cursor *c;
	unsigned char *buf = malloc(sizeof(rec_hdr) +
				    (size_t)s->dim * sizeof(float) +
				    STORE_PATH_MAX);
	uint64_t ids[MIGRATE_STEP];
	size_t n = 0;
	int rc, r, end = 0;
	if (!buf)
		return cdx_error_set(err, CDX_ENOMEM, "migrating the store");
	if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn))) {
		free(buf);
		return sto_mdb_err(err, rc, "migrating the store");
	}
	if ((rc = mdb_cursor_open(txn, s->db_rec, &c))) {
		rc = sto_mdb_err(err, rc, "migrating the store");
		goto out_abort;
	}
	MDB_val k = { sizeof(*from), from }, v;
	r = mdb_cursor_get(c, &k, &v, *first ? MDB_FIRST : MDB_SET_RANGE);
	if (r == 0 && !*first && memcmp(k.mv_data, from, sizeof(*from)) == 0)
		r = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	for (; r == 0 && n < MIGRATE_STEP; r = mdb_cursor_get(c, &k, &v,
							      MDB_NEXT))
		if (k.mv_size == sizeof(uint64_t) && v.mv_size >= 4 &&
		    memcmp(v.mv_data, &(uint32_t){ REC_MAGIC }, 4) == 0)
			memcpy(&ids[n++], k.mv_data, sizeof(uint64_t));
	mdb_cursor_close(c);
	if (r && r != MDB_NOTFOUND) {
		rc = sto_mdb_err(err, r, "migrating the store");
		goto out_abort;
	}
	end = r == MDB_NOTFOUND;
	for (size_t i = 0; i < n; i++) {
		MDB_val ik = { sizeof(ids[i]), &ids[i] }, iv;
		rec_hdr h;
		const char *path;
		const unsigned char *emb;
		float vec[STORE_DIM_MAX];
		uint16_t half[STORE_DIM_MAX];
		if ((rc = mdb_get(txn, s->db_rec, &ik, &iv))) {
			rc = sto_mdb_err(err, rc, "migrating the store");
			goto out_abort;
		}
		if (sto_rec_parse(s, &iv, &h, &path, &emb, NULL)) {
			/* left as it is, for store_verify to report */
			cdx_log(CDX_LOG_WARN, "store %s: record %llu is "
				"malformed; not converted", s->dir,
				(unsigned long long)ids[i]);
			continue;
		}
		size_t hsz = (size_t)s->dim * sizeof(uint16_t);
		sto_rec_emb(s, &h, emb, vec);
		cdx_vec_to_f16(half, vec, (size_t)s->dim);
		cdx_vec_from_f16(vec, half, (size_t)s->dim);
		h.magic = REC_MAGIC16;
		memcpy(buf, &h, sizeof(h));
		memcpy(buf + sizeof(h), half, hsz);
		memcpy(buf + sizeof(h) + hsz, path, h.path_len);
		iv = (MDB_val){ sizeof(h) + hsz + h.path_len, buf };
		if ((rc = mdb_put(txn, s->db_rec, &ik, &iv, 0))) {
			rc = rc == MDB_MAP_FULL ? MIGRATE_GROW :
			     sto_mdb_err(err, rc, "migrating the store");
			goto out_abort;
		}
		/* its tags, from the values it now has */
		if ((rc = tag_image(s, txn, h.id, vec, err)))
			goto out_abort;
	}
	if (n)
		*from = ids[n - 1];
	*first = 0;
	if (end) {
		uint32_t schema = SCHEMA_VERSION;
		if ((rc = meta_put(txn, s->db_meta, "schema", &schema,
				   sizeof(schema)))) {
			rc = sto_mdb_err(err, rc, "migrating the store");
			goto out_abort;
		}
	}
	if ((rc = mdb_txn_commit(txn))) {
		free(buf);
		return rc == MDB_MAP_FULL ? MIGRATE_GROW :
		       sto_mdb_err(err, rc, "migrating the store");
	}
	*done += n;
	free(buf);
	return end;

out_abort:
	mdb_txn_abort(txn);
	free(buf);
	return rc;
}

/* Schema 3 -> 4: every float32 record becomes binary16, MIGRATE_STEP a
 * transaction (one for a million records would outgrow LMDB's dirty page
 * list), then the schema; then the index is rebuilt from the records, so
 * that it holds the values every later read gives. */
static int
migrate_f16(store *s, cdx_error *err)
{
	uint64_t from = 0;
	int first = 1, rc, grows = 0;
	size_t done = 0;
	/* The index file holds float32 values and no record of the change:
	 * derived state, rebuilt below (or at the next open, after a crash). */
	idx_forget(s);
	for (;;) {
		uint64_t from0 = from;
		int first0 = first;
		rc = migrate_step(s, &from, &first, &done, err);
		if (rc == MIGRATE_GROW && ++grows <= 8) {
			from = from0;
			first = first0;
			if ((rc = grow_map(s, err)))
				return rc;
			continue;
		}
		if (rc == MIGRATE_GROW)
			return cdx_error_set(err, CDX_EFULL, "store %s is full",
					     s->dir);
		if (rc)
			break;
	}
	if (rc < 0)
		return rc;
	cdx_log(CDX_LOG_INFO, "store %s: schema 3 -> %u (%zu embeddings now "
		"half precision)", s->dir, SCHEMA_VERSION, done);
	MDB_txn *txn;
	if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn)))
		return sto_mdb_err(err, rc, "migrating the store");
	rc = idx_rebuild(s, txn, err);
	mdb_txn_abort(txn);
	s->rebuilt_on_open = 1;
	s->migrate_f16 = 0;
	return rc;
}

int
store_open(const char *dir, const store_params *p, store **out,
	   cdx_error *err)
{
	int rc;
	if (!dir || !dir[0] || !out)
		return cdx_error_set(err, CDX_EINVAL, "store_open: no directory");
	if ((rc = validate_params(p, err)))
		return rc;
	store *s = calloc(1, sizeof(*s));
	if (!s)
		return cdx_error_set(err, CDX_ENOMEM, "store_open: out of memory");
	s->lock_fd = -1;
	s->saved_seq = UINT64_MAX;
	live_init(&s->live);
	s->dir = strdup(dir);
	if (!s->dir) {
		rc = cdx_error_set(err, CDX_ENOMEM, "store_open: out of memory");
		goto out_free_store;
	}
	s->dim = p->dim;
	snprintf(s->model_id, sizeof(s->model_id), "%s", p->model_id);
	snprintf(s->kind_req, sizeof(s->kind_req), "%s",
		 p->index_kind && p->index_kind[0] ? p->index_kind : "auto");
	s->auto_flat_max = p->auto_flat_max ? p->auto_flat_max
					    : STORE_AUTO_FLAT_MAX;
	s->hnsw_ef_search = p->hnsw_ef_search ? p->hnsw_ef_search : 128;
	s->rerank_factor = p->rerank ? p->rerank : STORE_RERANK;
	s->build_part = p->build_part ? p->build_part : (size_t)1 << 21;
	s->ivf_nprobe = p->ivf_nprobe; /* 0: chosen from nlist */
	s->exact_max = p->exact_filter_max ? p->exact_filter_max : 20000;
	/* Exact searches of even one query go through BLAS (sgemm), which
	 * picks AVX2 at run time: ~4x faster than Debian FAISS's own
	 * baseline-x86-64 kernel (see docs/STORE.md). */
	faiss_set_distance_compute_blas_threshold(1);

	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		int e = errno;
		rc = cdx_error_set(err, cdx_from_errno(e),
				   "cannot create store directory %s: %s", dir,
				   strerror(e));
		goto out_free_dir;
	}
	if (access(dir, W_OK) != 0) {
		int e = errno;
		rc = cdx_error_set(err, cdx_from_errno(e),
				   "store directory %s is not writable: %s",
				   dir, strerror(e));
		goto out_free_dir;
	}
	if ((rc = lock_dir(s, err)))
		goto out_free_dir;
	if (pthread_rwlock_init(&s->lock, NULL) != 0) {
		rc = cdx_error_set(err, CDX_ENOMEM, "store_open: rwlock");
		goto out_unlock_dir;
	}
	pthread_mutex_init(&s->save_lock, NULL);
	pthread_mutex_init(&s->write_lock, NULL);

	if ((rc = mdb_env_create(&s->env))) {
		rc = sto_mdb_err(err, rc, "mdb_env_create");
		goto out_destroy_locks;
	}
	s->map_size = p->map_size ? p->map_size : DEFAULT_MAP_SIZE;
	/* An existing bigger map is kept (LMDB adopts the file's size). */
	mdb_env_set_mapsize(s->env, s->map_size);
	mdb_env_set_maxdbs(s->env, 16);
	mdb_env_set_maxreaders(s->env, 256);
	rc = mdb_env_open(s->env, dir, MDB_NOTLS, STORE_FILE_MODE);
	if (rc) {
		rc = sto_mdb_err(err, rc, dir);
		goto out_close_env;
	}
	if ((rc = own_files(s, err)))
		goto out_close_env;
	MDB_envinfo info;
	if (mdb_env_info(s->env, &info) == 0 && info.me_mapsize > s->map_size)
		s->map_size = info.me_mapsize;

	MDB_txn *txn;
	if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn))) {
		rc = sto_mdb_err(err, rc, "opening store");
		goto out_close_env;
	}
	if ((rc = open_dbs(s, txn, err)) || (rc = check_meta(s, txn, p, err)))
		goto out_abort_txn;
	MDB_val kf = { 6, "family" }, vf, kl = { 5, "label" }, vl;
	if (mdb_get(txn, s->db_meta, &kf, &vf) == 0 &&
	    vf.mv_size < sizeof(s->model_family)) {
		memcpy(s->model_family, vf.mv_data, vf.mv_size);
		s->model_family[vf.mv_size] = '\0';
	}
	if (mdb_get(txn, s->db_meta, &kl, &vl) == 0 &&
	    vl.mv_size < sizeof(s->model_label)) {
		memcpy(s->model_label, vl.mv_data, vl.mv_size);
		s->model_label[vl.mv_size] = '\0';
	}
	if ((rc = meta_get_u64(txn, s->db_meta, "seq", &s->seq)) ||
	    (rc = meta_get_u64(txn, s->db_meta, "next_id", &s->next_id)) ||
	    (rc = meta_get_u64(txn, s->db_meta, "frames", &s->frames)) ||
	    (rc = meta_get_u64(txn, s->db_meta, "clips", &s->clips))) {
		rc = sto_mdb_err(err, rc, "reading store metadata");
		goto out_abort_txn;
	}
	MDB_stat st;
	if ((rc = mdb_stat(txn, s->db_rec, &st))) {
		rc = sto_mdb_err(err, rc, "mdb_stat");
		goto out_abort_txn;
	}
	s->count = st.ms_entries;
	if ((rc = mdb_stat(txn, s->db_fail, &st))) {
		rc = sto_mdb_err(err, rc, "mdb_stat");
		goto out_abort_txn;
	}
	s->fail_count = st.ms_entries;
	/* a store being converted gets its index after (migrate_f16) */
	if ((rc = tag_load(s, txn, err)) ||
	    (!s->migrate_f16 && (rc = idx_open(s, txn, err))))
		goto out_abort_txn;
	if ((rc = mdb_txn_commit(txn))) {
		rc = sto_mdb_err(err, rc, "opening store");
		goto out_close_index;
	}
	if (s->migrate_f16 && (rc = migrate_f16(s, err)))
		goto out_close_index;
	*out = s;
	return 0;

out_abort_txn:
	mdb_txn_abort(txn);
out_close_index:
	idx_close(s);
	tag_free(s);
out_close_env:
	mdb_env_close(s->env);
out_destroy_locks:
	pthread_mutex_destroy(&s->save_lock);
	pthread_mutex_destroy(&s->write_lock);
	pthread_rwlock_destroy(&s->lock);
out_unlock_dir:
	close(s->lock_fd);
out_free_dir:
	free(s->dir);
out_free_store:
	live_free(&s->live);
	free(s);
	return rc;
}

void
store_close(store *s)
{
	if (!s)
		return;
	cdx_error e;
	if (store_save(s, &e) != 0)
		cdx_log(CDX_LOG_WARN, "store %s: index not saved: %s", s->dir,
			e.msg);
	idx_close(s);
	tag_free(s);
	mdb_env_close(s->env);
	pthread_mutex_destroy(&s->save_lock);
	pthread_mutex_destroy(&s->write_lock);
	pthread_rwlock_destroy(&s->lock);
	close(s->lock_fd);
	live_free(&s->live);
	free(s->dir);
	free(s);
}

uint64_t
store_image_count(store *s)
{
	pthread_rwlock_rdlock(&s->lock);
	uint64_t n = s->count;
	pthread_rwlock_unlock(&s->lock);
	return n;
}

uint64_t
store_seq(store *s)
{
	pthread_rwlock_rdlock(&s->lock);
	uint64_t n = s->seq;
	pthread_rwlock_unlock(&s->lock);
	return n;
}

uint64_t
store_failure_count(store *s)
{
	pthread_rwlock_rdlock(&s->lock);
	uint64_t n = s->fail_count;
	pthread_rwlock_unlock(&s->lock);
	return n;
}

void
store_get_stats(store *s, store_stats *st)
{
	memset(st, 0, sizeof(*st));
	pthread_rwlock_rdlock(&s->lock);
	st->images = s->count;
	st->failures = s->fail_count;
	st->seq = s->seq;
	idx_stats(s, st);
	snprintf(st->model_family, sizeof(st->model_family), "%s",
	    s->model_family);
	snprintf(st->model_label, sizeof(st->model_label), "%s",
	    s->model_label);
	st->rebuilt_on_open = s->rebuilt_on_open;
	st->caught_up = s->caught_up;
	st->commits = s->commits;
	st->frames = s->frames;
	st->clips = s->clips;
	pthread_rwlock_unlock(&s->lock);
}

/* ---- writes ---- */

/* Whether the disk under the store has less than STORE_DISK_MIN bytes
 * free: a CDX_EFULL then is the disk's, not the map's. */
#define STORE_DISK_MIN (16u << 20)
static int
disk_full(const store *s)
{
	struct statvfs v;
	return statvfs(s->dir, &v) == 0 &&
	       (uint64_t)v.f_bavail * v.f_frsize < STORE_DISK_MIN;
}

/* Doubles the map after MDB_MAP_FULL.  Exclusive lock held, no txn. */
static int
grow_map(store *s, cdx_error *err)
{
	size_t want = s->map_size * 2;
	int rc = mdb_env_set_mapsize(s->env, want);
	if (rc)
		return sto_mdb_err(err, rc, "growing the LMDB map");
	s->map_size = want;
	cdx_log(CDX_LOG_INFO, "store %s: LMDB map grown to %zu MiB", s->dir,
		want >> 20);
	return 0;
}

static int check_path(const char *path, const char *what, cdx_error *err);

/* What a put checks of a record beyond its path. */
static int
check_kind(const store_image *img, const char *what, cdx_error *err)
{
	if (img->kind == STORE_KIND_IMAGE)
		return 0;
	if (img->kind != STORE_KIND_FRAME || img->time_ms < 0 ||
	    img->time_ms > STORE_FRAME_MS_MAX)
		return cdx_error_set(err, CDX_EINVAL,
				     "%s: %s: bad kind or frame time", what,
				     img->path);
	if (strlen(img->path) > STORE_CLIP_PATH_MAX)
		return cdx_error_set(err, CDX_ETOOBIG,
				     "%s: clip path '%.64s...' is longer than "
				     "%d bytes", what, img->path,
				     STORE_CLIP_PATH_MAX);
	return 0;
}

static int
check_path(const char *path, const char *what, cdx_error *err)
{
	if (!path || path[0] != '/')
		return cdx_error_set(err, CDX_EINVAL,
				     "%s: path '%s' is not absolute", what,
				     path ? path : "(null)");
	if (strlen(path) > STORE_PATH_MAX)
		return cdx_error_set(err, CDX_ETOOBIG,
				     "%s: path '%.64s...' is longer than %d "
				     "bytes",
				     what, path, STORE_PATH_MAX);
	return 0;
}

/* Checks and L2-normalises one embedding into out, rounded to binary16
 * as the record keeps it (and widened again): the index, the tags and a
 * later read of the record all see the same numbers. */
static int
normalise(const float *in, int dim, float *out)
{
	uint16_t h[STORE_DIM_MAX];
	double ss = 0;
	for (int i = 0; i < dim; i++) {
		if (!isfinite(in[i]))
			return -1;
		ss += (double)in[i] * in[i];
	}
	if (!(ss > 0) || !isfinite(ss))
		return -1;
	double inv = 1.0 / sqrt(ss);
	for (int i = 0; i < dim; i++)
		out[i] = (float)(in[i] * inv);
	cdx_vec_to_f16(h, out, (size_t)dim);
	cdx_vec_from_f16(out, h, (size_t)dim);
	return 0;
}

/* The state of one write batch, for idx_apply after commit.  Owns its
 * arrays; ctime, mtime and ids are indexed like add (image puts and
 * renames only). */
typedef struct batch {
	int64_t *rm;
	size_t nrm;
	int64_t *add;
	float *vecs;
	size_t nadd;
	int64_t *ctime, *mtime;
	uint64_t *ids;
	uint64_t seq, next_id;
	int64_t count_delta, fail_delta;
	int64_t frame_delta, clip_delta;
	size_t n_put, n_renamed, n_deleted, n_failed; /* for the caller */
	size_t cap_add, cap_rm;  /* a clip's frames may need more room */
	size_t dim;
} batch;

static void
batch_free(batch *b)
{
	free(b->rm);
	free(b->add);
	free(b->vecs);
	free(b->ctime);
	free(b->mtime);
	free(b->ids);
}

/* Allocates the arrays of a batch of n images (puts and renames) that
 * remove up to nrm labels. */
static int
batch_alloc(batch *b, size_t n, size_t nrm, size_t dim)
{
	if (n == 0)
		n = 1;
	if (nrm == 0)
		nrm = 1;
	b->cap_add = n;
	b->cap_rm = nrm;
	b->dim = dim;
	b->rm = malloc(nrm * sizeof(*b->rm));
	b->add = malloc(n * sizeof(*b->add));
	b->vecs = malloc(n * dim * sizeof(float));
	b->ctime = malloc(n * sizeof(*b->ctime));
	b->mtime = malloc(n * sizeof(*b->mtime));
	b->ids = malloc(n * sizeof(*b->ids));
	return b->rm && b->add && b->vecs && b->ctime && b->mtime && b->ids
		       ? 0
		       : -1;
}

/* Room for one more added record and one more removed label (the
 * frames of a clip make more than one per change). */
static int
batch_room(batch *b, cdx_error *err)
{
	if (b->nrm == b->cap_rm) {
		size_t cap = b->cap_rm * 2;
		int64_t *rm = realloc(b->rm, cap * sizeof(*rm));
		if (!rm)
			return cdx_error_set(err, CDX_ENOMEM, "store: out of memory");
		b->rm = rm;
		b->cap_rm = cap;
	}
	if (b->add && b->nadd == b->cap_add) {
		size_t cap = b->cap_add * 2;
		int64_t *add = realloc(b->add, cap * sizeof(*add));
		if (add)
			b->add = add;
		float *vecs = add ? realloc(b->vecs, cap * b->dim *
					    sizeof(float)) : NULL;
		if (vecs)
			b->vecs = vecs;
		int64_t *ct = vecs ? realloc(b->ctime, cap * sizeof(*ct)) : NULL;
		if (ct)
			b->ctime = ct;
		int64_t *mt = ct ? realloc(b->mtime, cap * sizeof(*mt)) : NULL;
		if (mt)
			b->mtime = mt;
		uint64_t *ids = mt ? realloc(b->ids, cap * sizeof(*ids)) : NULL;
		if (!ids)
			return cdx_error_set(err, CDX_ENOMEM, "store: out of memory");
		b->ids = ids;
		b->cap_add = cap;
	}
	return 0;
}

size_t
sto_path_key(char *key, const char *path, size_t plen, uint32_t frame)
{
	memcpy(key, path, plen);
	if (frame == 0)
		return plen;
	key[plen] = '\0';
	for (int i = 0; i < 4; i++)
		key[plen + 1 + i] = (char)(frame >> (24 - 8 * i));
	return plen + STO_FRAME_KEY_EXTRA;
}

/* The ids of the frames of the clip at path (plen bytes), in time order:
 * *ids is malloc'd (NULL when *n is 0). */
static int
frame_ids(store *s, MDB_txn *txn, const char *path, size_t plen,
	  uint64_t **ids, size_t *n, cdx_error *err)
{
	char key[STORE_PATH_MAX + 2];
	size_t cap = 0;
	MDB_cursor *c;
	int rc, r;

	*ids = NULL;
	*n = 0;
	if (plen > STORE_CLIP_PATH_MAX)
		return 0;
	memcpy(key, path, plen);
	key[plen] = '\0';
	if ((rc = mdb_cursor_open(txn, s->db_path, &c)))
		return sto_mdb_err(err, rc, "listing frames");
	MDB_val k = { plen + 1, key }, v;
	r = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	while (r == 0 && k.mv_size == plen + STO_FRAME_KEY_EXTRA &&
	       memcmp(k.mv_data, key, plen + 1) == 0) {
		if (v.mv_size != sizeof(uint64_t)) {
			rc = cdx_error_set(err, CDX_ECORRUPT, "bad path entry");
			break;
		}
		if (*n == cap) {
			size_t nc = cap ? cap * 2 : 32;
			uint64_t *t = realloc(*ids, nc * sizeof(*t));
			if (!t) {
				rc = cdx_error_set(err, CDX_ENOMEM, "listing frames");
				break;
			}
			*ids = t;
			cap = nc;
		}
		memcpy(*ids + (*n)++, v.mv_data, sizeof(uint64_t));
		r = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	if (!rc && r && r != MDB_NOTFOUND)
		rc = sto_mdb_err(err, r, "listing frames");
	mdb_cursor_close(c);
	if (rc) {
		free(*ids);
		*ids = NULL;
		*n = 0;
	}
	return rc;
}

/* 1 when the clip at path has a frame, 0 when not, or a CDX_E* code. */
static int
has_frames(store *s, MDB_txn *txn, const char *path, size_t plen,
	   cdx_error *err)
{
	char key[STORE_PATH_MAX + 2];
	MDB_cursor *c;
	int rc;
	if (plen > STORE_CLIP_PATH_MAX)
		return 0;
	memcpy(key, path, plen);
	key[plen] = '\0';
	if ((rc = mdb_cursor_open(txn, s->db_path, &c)))
		return sto_mdb_err(err, rc, "looking up frames");
	MDB_val k = { plen + 1, key }, v;
	rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	int found = rc == 0 && k.mv_size == plen + STO_FRAME_KEY_EXTRA &&
		    memcmp(k.mv_data, key, plen + 1) == 0;
	mdb_cursor_close(c);
	if (rc && rc != MDB_NOTFOUND)
		return sto_mdb_err(err, rc, "looking up frames");
	return found;
}

static int
hash_del(MDB_txn *txn, MDB_dbi db, const uint8_t *hash, uint64_t id)
{
	MDB_val k = { STORE_HASH_LEN, (void *)hash }, v = { sizeof(id), &id };
	int rc = mdb_del(txn, db, &k, &v);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static int
log_put(store *s, MDB_txn *txn, uint64_t seq, uint64_t id, int64_t old,
	uint32_t op)
{
	log_entry e = { .id = id, .old_label = old, .op = op };
	MDB_val k = { sizeof(seq), &seq }, v = { sizeof(e), &e };
	return mdb_put(txn, s->db_log, &k, &v, MDB_APPEND);
}

/* A record's label leaves the index: a label written earlier in this
 * batch never reaches the live map or the index, an older one is removed
 * from them after the commit. */
static int
forget_label(store *s, batch *b, int64_t label, cdx_error *err)
{
	if (label > (int64_t)s->seq) {
		for (size_t j = 0; j < b->nadd; j++)
			if (b->add[j] == label)
				b->add[j] = -1;
	} else {
		int rc = batch_room(b, err);
		if (rc)
			return rc;
		b->rm[b->nrm++] = label;
	}
	return 0;
}

static int del_path_one(store *s, MDB_txn *txn, batch *b, const char *path,
			cdx_error *err);

/* Deletes image id inside txn, adding its label to b->rm; nothing if it
 * does not exist. */
static int
del_one(store *s, MDB_txn *txn, batch *b, uint64_t id, cdx_error *err)
{
	MDB_val k = { sizeof(id), &id }, v;
	int rc = mdb_get(txn, s->db_rec, &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return sto_mdb_err(err, rc, "reading record");
	rec_hdr h;
	const char *path;
	if ((rc = sto_rec_parse(s, &v, &h, &path, NULL, err)))
		return rc;
	/* path points into the map: copy it before deleting anything. */
	char pbuf[STORE_PATH_MAX + 1];
	MDB_val pk = { sto_path_key(pbuf, path, h.path_len, h.frame), pbuf };
	if ((rc = mdb_del(txn, s->db_path, &pk, NULL)) && rc != MDB_NOTFOUND)
		return sto_mdb_err(err, rc, "deleting path");
	if (h.frame) {
		b->frame_delta--;
		if ((rc = has_frames(s, txn, pbuf, h.path_len, err)) < 0)
			return rc;
		if (rc == 0)
			b->clip_delta--;        /* its last frame */
	}
	if ((rc = hash_del(txn, s->db_hash, h.hash, id)))
		return sto_mdb_err(err, rc, "deleting hash");
	if ((rc = mdb_del(txn, s->db_attr, &k, NULL)) && rc != MDB_NOTFOUND)
		return sto_mdb_err(err, rc, "deleting attr");
	if ((rc = mdb_del(txn, s->db_rec, &k, NULL)))
		return sto_mdb_err(err, rc, "deleting record");
	if ((rc = tag_drop(s, txn, id, err)))
		return rc;
	b->seq++;
	if ((rc = log_put(s, txn, b->seq, id, h.label, LOG_DEL)))
		return sto_mdb_err(err, rc, "writing change log");
	if ((rc = forget_label(s, b, h.label, err)))
		return rc;
	b->count_delta--;
	b->n_deleted++;
	return 0;
}

/* Puts k -> v in an id-keyed table.  A fresh id is above every id there
 * (ids only grow), so it is appended: LMDB then fills each page instead of
 * splitting it in half, which keeps a 512-d record table near 1.4 KB an
 * image instead of 2 KB.  Should the table hold a larger id after all,
 * the plain put takes over. */
static int
put_rec(MDB_txn *txn, MDB_dbi db, MDB_val *k, MDB_val *v, int fresh)
{
	int rc = fresh ? mdb_put(txn, db, k, v, MDB_APPEND) : MDB_KEYEXIST;
	return rc == MDB_KEYEXIST ? mdb_put(txn, db, k, v, 0) : rc;
}

static int
put_one(store *s, MDB_txn *txn, batch *b, store_image *img, const float *vec,
	int64_t now, unsigned char *buf, cdx_error *err)
{
	size_t plen = strlen(img->path);
	uint32_t frame = img->kind == STORE_KIND_FRAME ?
		(uint32_t)(img->time_ms + 1) : 0;
	char key[STORE_PATH_MAX + 1];
	MDB_val pk = { sto_path_key(key, img->path, plen, frame), key }, pv;
	MDB_val fk = { plen, (void *)img->path };
	uint64_t id;
	int64_t old_label = -1, added = now;
	int rc, fresh = 0;
	if ((rc = batch_room(b, err)))
		return rc;
	rc = mdb_get(txn, s->db_path, &pk, &pv);
	if (rc == 0) {
		if (pv.mv_size != sizeof(id))
			return cdx_error_set(err, CDX_ECORRUPT,
					     "path entry of %s is malformed",
					     img->path);
		memcpy(&id, pv.mv_data, sizeof(id));
		MDB_val k = { sizeof(id), &id }, v;
		rec_hdr h;
		if ((rc = mdb_get(txn, s->db_rec, &k, &v)))
			return sto_mdb_err(err, rc, "reading replaced record");
		if ((rc = sto_rec_parse(s, &v, &h, NULL, NULL, err)))
			return rc;
		old_label = h.label;
		added = h.added;
		if ((rc = hash_del(txn, s->db_hash, h.hash, id)))
			return sto_mdb_err(err, rc, "deleting hash");
		if ((rc = forget_label(s, b, old_label, err)))
			return rc;
	} else if (rc == MDB_NOTFOUND) {
		/* One image or one clip per path: the other kind is deleted
		 * first (store_batch_delete_path), never left beside. */
		MDB_val ik = fk, iv;
		int other = frame ? mdb_get(txn, s->db_path, &ik, &iv) :
				    has_frames(s, txn, img->path, plen, err);
		if (frame && other != MDB_NOTFOUND && other != 0)
			return sto_mdb_err(err, other, "looking up path");
		if (!frame && other < 0)
			return other;
		if (frame ? other == 0 : other == 1)
			return cdx_error_set(err, CDX_EEXIST,
					     "%s already has %s", img->path,
					     frame ? "an image record"
						   : "a clip's frames");
		if (frame) {
			if ((rc = has_frames(s, txn, img->path, plen, err)) < 0)
				return rc;
			b->clip_delta += rc == 0;       /* its first frame */
			b->frame_delta++;
		}
		id = b->next_id++;
		fresh = 1;
		if ((rc = mdb_put(txn, s->db_path, &pk,
				  &(MDB_val){ sizeof(id), &id }, 0)))
			return sto_mdb_err(err, rc, "writing path");
		b->count_delta++;
	} else {
		return sto_mdb_err(err, rc, "looking up path");
	}
	b->seq++;
	int64_t label = (int64_t)b->seq;
	rec_hdr h = {
		.magic = REC_MAGIC16,
		.dim = (uint32_t)s->dim,
		.id = id,
		.label = label,
		.size = img->size,
		.mtime_ns = img->mtime_ns,
		.width = img->width,
		.height = img->height,
		.capture_time = img->capture_time,
		.added = added,
		.path_len = (uint32_t)plen,
		.frame = frame,
	};
	memcpy(h.hash, img->hash, STORE_HASH_LEN);
	size_t vsz = (size_t)s->dim * sizeof(float);
	size_t hsz = (size_t)s->dim * sizeof(uint16_t);
	uint16_t half[STORE_DIM_MAX];
	cdx_vec_to_f16(half, vec, (size_t)s->dim);      /* exact: normalise */
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), half, hsz);
	memcpy(buf + sizeof(h) + hsz, img->path, plen);
	MDB_val k = { sizeof(id), &id };
	MDB_val v = { sizeof(h) + hsz + plen, buf };
	if ((rc = put_rec(txn, s->db_rec, &k, &v, fresh)))
		return sto_mdb_err(err, rc, "writing record");
	if ((rc = tag_image(s, txn, id, vec, err)))
		return rc;
	rec_attr a = { label, img->capture_time, floor_div_1e9(img->mtime_ns) };
	if ((rc = put_rec(txn, s->db_attr, &k,
			  &(MDB_val){ sizeof(a), &a }, fresh)))
		return sto_mdb_err(err, rc, "writing attr");
	MDB_val hk = { STORE_HASH_LEN, img->hash };
	if ((rc = mdb_put(txn, s->db_hash, &hk,
			  &(MDB_val){ sizeof(id), &id }, 0)) &&
	    rc != MDB_KEYEXIST)
		return sto_mdb_err(err, rc, "writing hash");
	if ((rc = log_put(s, txn, b->seq, id, old_label, LOG_PUT)))
		return sto_mdb_err(err, rc, "writing change log");
	rc = mdb_del(txn, s->db_fail, &fk, NULL);
	if (rc == 0)
		b->fail_delta--;
	else if (rc != MDB_NOTFOUND)
		return sto_mdb_err(err, rc, "deleting failure record");
	b->add[b->nadd] = label;
	memcpy(b->vecs + b->nadd * (size_t)s->dim, vec, vsz);
	b->ctime[b->nadd] = img->capture_time;
	b->mtime[b->nadd] = floor_div_1e9(img->mtime_ns);
	b->ids[b->nadd] = id;
	b->nadd++;
	b->n_put++;
	img->id = id;
	img->added = added;
	return 0;
}

/* Applies a committed batch to the live map and the index. */
static int
batch_apply(store *s, batch *b, cdx_error *err)
{
	s->seq = b->seq;
	s->next_id = b->next_id;
	s->count = (uint64_t)((int64_t)s->count + b->count_delta);
	s->fail_count = (uint64_t)((int64_t)s->fail_count + b->fail_delta);
	s->frames = (uint64_t)((int64_t)s->frames + b->frame_delta);
	s->clips = (uint64_t)((int64_t)s->clips + b->clip_delta);
	int rc = 0;
	for (size_t i = 0; i < b->nrm; i++)
		live_remove(&s->live, b->rm[i]);
	for (size_t i = 0; i < b->nadd && !rc; i++)
		if (b->add[i] >= 0)
			rc = live_add(&s->live, b->add[i], b->ids[i],
				      b->ctime[i], b->mtime[i]);
	/* A label replaced within the same batch (-1) is left out. */
	size_t m = 0;
	for (size_t i = 0; i < b->nadd; i++) {
		if (b->add[i] < 0)
			continue;
		if (m != i) {
			b->add[m] = b->add[i];
			memmove(b->vecs + m * (size_t)s->dim,
				b->vecs + i * (size_t)s->dim,
				(size_t)s->dim * sizeof(float));
		}
		m++;
	}
	if (rc)
		rc = cdx_error_set(err, rc, "updating the live map");
	else
		rc = idx_apply(s, b->rm, b->nrm, b->add, b->vecs, m, err);
	s->index_seq = s->seq;
	if (rc) {
		cdx_error e2;
		cdx_log(CDX_LOG_ERROR,
			"store %s: index update failed (%s); rebuilding", s->dir,
			err ? err->msg : cdx_strerror(rc));
		MDB_txn *txn;
		if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) == 0) {
			if (idx_rebuild(s, txn, &e2) == 0)
				rc = 0;
			mdb_txn_abort(txn);
		}
	}
	return rc;
}

/* One write transaction: the work and what errors call it.  With a batch
 * (image records), the work adds to the change log: the batch is reset
 * before each attempt, its seq (and next_id with put_next_id) goes to
 * meta in the same transaction, and after the commit it is applied to the
 * live map and the index.  Without one (failure and kv records), only the
 * work is done. */
typedef struct write_op {
	/* Does item i of n inside txn.  Each attempt, in a fresh
	 * transaction, starts over from item 0. */
	int (*fn)(store *s, MDB_txn *txn, void *arg, size_t i, cdx_error *err);
	void *arg;
	size_t n;
	batch *b;
	int put_next_id;
	const char *begin_what, *commit_what;
	/* Runs after a successful commit, the lock still held (or NULL). */
	void (*after)(store *s, void *arg);
	/* 1: the work runs without the lock (write_lock only); the lock is
	 * taken exclusively for the commit, after and the index update. */
	int long_work;
} write_op;

/* Runs op in a write transaction under write_lock and the exclusive
 * lock, held across the commit and the index update (with long_work the
 * lock only from the commit on).  MDB_MAP_FULL, at commit or as
 * CDX_EFULL from the work, doubles the map and runs op again. */
static int
write_txn(store *s, const write_op *op, cdx_error *err)
{
	batch *b = op->b;
	int rc, grows = 0, locked = 0;
	pthread_mutex_lock(&s->write_lock);
	if (!op->long_work) {
		pthread_rwlock_wrlock(&s->lock);
		locked = 1;
	}
	for (;;) {
		MDB_txn *txn;
		if (b) {
			b->nrm = b->nadd = 0;
			b->seq = s->seq;
			b->next_id = s->next_id;
			b->count_delta = b->fail_delta = 0;
			b->frame_delta = b->clip_delta = 0;
			b->n_put = b->n_renamed = b->n_deleted = 0;
			b->n_failed = 0;
		}
		if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn))) {
			rc = sto_mdb_err(err, rc, op->begin_what);
			break;
		}
		rc = 0;
		for (size_t i = 0; i < op->n && !rc; i++)
			rc = op->fn(s, txn, op->arg, i, err);
		if (!rc && b) {
			int r = meta_put_u64(txn, s->db_meta, "seq", b->seq);
			if (!r && (b->frame_delta || b->clip_delta))
				r = meta_put_u64(txn, s->db_meta, "frames",
						 (uint64_t)((int64_t)s->frames +
							    b->frame_delta));
			if (!r && (b->frame_delta || b->clip_delta))
				r = meta_put_u64(txn, s->db_meta, "clips",
						 (uint64_t)((int64_t)s->clips +
							    b->clip_delta));
			if (!r && op->put_next_id)
				r = meta_put_u64(txn, s->db_meta, "next_id",
						 b->next_id);
			if (r)
				rc = sto_mdb_err(err, r, op->commit_what);
		}
		if (rc) {
			mdb_txn_abort(txn);
		} else {
			if (!locked) {
				pthread_rwlock_wrlock(&s->lock);
				locked = 1;
			}
			int r = mdb_txn_commit(txn);
			if (r)
				rc = sto_mdb_err(err, r, op->commit_what);
			else
				s->commits++;
			if (!r && op->after)
				op->after(s, op->arg);
		}
		if (rc == CDX_EFULL) {
			/* The map, unless the disk is full (ENOSPC; a map
			 * that grew 8 times in one write is not the cause). */
			if (disk_full(s) || ++grows > 8) {
				rc = cdx_error_set(err, CDX_EFULL,
						   "store %s is full: the disk "
						   "has no space left",
						   s->dir);
				break;
			}
			/* No transaction may be open: the lock. */
			if (!locked)
				pthread_rwlock_wrlock(&s->lock);
			rc = grow_map(s, err);
			if (!locked)
				pthread_rwlock_unlock(&s->lock);
			if (rc)
				break;
			continue;
		}
		if (!rc && b)
			rc = batch_apply(s, b, err);
		break;
	}
	if (locked)
		pthread_rwlock_unlock(&s->lock);
	pthread_mutex_unlock(&s->write_lock);
	return rc;
}

struct put_arg {
	batch b;
	store_image *imgs;
	const float *vecs;      /* normalised, n * dim */
	int64_t now;
	unsigned char *buf;     /* room for one record */
};

static int
put_item(store *s, MDB_txn *txn, void *arg, size_t i, cdx_error *err)
{
	struct put_arg *a = arg;
	return put_one(s, txn, &a->b, &a->imgs[i],
		       a->vecs + i * (size_t)s->dim, a->now, a->buf, err);
}

int
store_image_put(store *s, store_image *imgs, size_t n, cdx_error *err)
{
	int rc;
	if (n == 0)
		return 0;
	if (!imgs)
		return cdx_error_set(err, CDX_EINVAL, "store_image_put: no images");
	size_t d = (size_t)s->dim;
	struct put_arg a = { .imgs = imgs };
	float *vecs = NULL;
	a.buf = malloc(sizeof(rec_hdr) + d * 4 + STORE_PATH_MAX);
	if (batch_alloc(&a.b, n, n, d) || !a.buf) {
		rc = cdx_error_set(err, CDX_ENOMEM, "store_image_put: out of memory");
		goto out_free;
	}
	/* Validate everything before touching LMDB. */
	vecs = malloc(n * d * sizeof(float));
	if (!vecs) {
		rc = cdx_error_set(err, CDX_ENOMEM, "store_image_put: out of memory");
		goto out_free;
	}
	for (size_t i = 0; i < n; i++) {
		if ((rc = check_path(imgs[i].path, "store_image_put", err)) ||
		    (rc = check_kind(&imgs[i], "store_image_put", err)))
			goto out_free;
		if (imgs[i].size < 0 || !imgs[i].embedding) {
			rc = cdx_error_set(err, CDX_EINVAL,
					   "store_image_put: %s: negative size "
					   "or no embedding",
					   imgs[i].path);
			goto out_free;
		}
		if (normalise(imgs[i].embedding, s->dim, vecs + i * d)) {
			rc = cdx_error_set(err, CDX_EINVAL,
					   "store_image_put: %s: embedding is "
					   "not finite or is zero",
					   imgs[i].path);
			goto out_free;
		}
	}
	a.vecs = vecs;
	a.now = now_s();
	write_op op = { .fn = put_item, .arg = &a, .n = n, .b = &a.b,
			.put_next_id = 1,
			.begin_what = "store_image_put",
			.commit_what = "store_image_put" };
	rc = write_txn(s, &op, err);
out_free:
	free(vecs);
	batch_free(&a.b);
	free(a.buf);
	return rc;
}

struct del_arg {
	batch b;
	const uint64_t *ids;
	const char *const *paths;
};

static int
del_item(store *s, MDB_txn *txn, void *arg, size_t i, cdx_error *err)
{
	struct del_arg *a = arg;
	if (!a->paths)
		return del_one(s, txn, &a->b, a->ids[i], err);
	const char *p = a->paths[i];
	if (!p || !p[0] || strlen(p) > STORE_PATH_MAX)
		return 0;       /* no record: nothing to delete */
	return del_path_one(s, txn, &a->b, p, err);
}

/* Deletes by ids (paths == NULL) or by paths. */
static int
delete_batch(store *s, const uint64_t *ids, const char *const *paths,
	     size_t n, size_t *n_deleted, cdx_error *err)
{
	if (n == 0) {
		if (n_deleted)
			*n_deleted = 0;
		return 0;
	}
	if (!ids && !paths)
		return cdx_error_set(err, CDX_EINVAL, "store_image_delete: none");
	struct del_arg a = { .ids = ids, .paths = paths };
	a.b.cap_rm = n;
	a.b.rm = malloc(n * sizeof(*a.b.rm));
	if (!a.b.rm)
		return cdx_error_set(err, CDX_ENOMEM, "store_image_delete");
	write_op op = { .fn = del_item, .arg = &a, .n = n, .b = &a.b,
			.begin_what = "store_image_delete",
			.commit_what = "store_image_delete" };
	int rc = write_txn(s, &op, err);
	batch_free(&a.b);
	if (!rc && n_deleted)
		*n_deleted = a.b.n_deleted;
	return rc;
}

int
store_image_delete(store *s, const uint64_t *ids, size_t n, size_t *n_deleted,
		   cdx_error *err)
{
	return delete_batch(s, ids, NULL, n, n_deleted, err);
}

int
store_image_delete_paths(store *s, const char *const *paths, size_t n,
			 size_t *n_deleted, cdx_error *err)
{
	return delete_batch(s, NULL, paths, n, n_deleted, err);
}

/* ---- rename (indexer: a file moved on disk keeps its record) ---- */

/* The ids of the records at path: its image, or the frames of its clip
 * in time order.  *ids is malloc'd (NULL when *n is 0). */
static int
path_ids(store *s, MDB_txn *txn, const char *path, uint64_t **ids, size_t *n,
	 cdx_error *err)
{
	size_t plen = strlen(path);
	MDB_val pk = { plen, (void *)path }, pv;
	int rc = mdb_get(txn, s->db_path, &pk, &pv);
	*ids = NULL;
	*n = 0;
	if (rc == MDB_NOTFOUND)
		return frame_ids(s, txn, path, plen, ids, n, err);
	if (rc)
		return sto_mdb_err(err, rc, "looking up path");
	if (pv.mv_size != sizeof(uint64_t))
		return cdx_error_set(err, CDX_ECORRUPT,
				     "path entry of %s is malformed", path);
	if (!(*ids = malloc(sizeof(uint64_t))))
		return cdx_error_set(err, CDX_ENOMEM, "store: out of memory");
	memcpy(*ids, pv.mv_data, sizeof(uint64_t));
	*n = 1;
	return 0;
}

/* 1 when path has a record (an image or a frame), 0 when not, or a
 * CDX_E* code. */
static int
path_taken(store *s, MDB_txn *txn, const char *path, cdx_error *err)
{
	size_t plen = strlen(path);
	MDB_val pk = { plen, (void *)path }, pv;
	int rc = mdb_get(txn, s->db_path, &pk, &pv);
	if (rc == 0)
		return 1;
	if (rc != MDB_NOTFOUND)
		return sto_mdb_err(err, rc, "looking up path");
	return has_frames(s, txn, path, plen, err);
}

/* Moves record id to the path to (tlen bytes) inside txn: same id, hash,
 * embedding, times and frame time, a new label (as a put of an existing
 * path), one more entry in b->add. */
static int
move_one(store *s, MDB_txn *txn, batch *b, uint64_t id, const char *to,
	 size_t tlen, unsigned char *buf, cdx_error *err)
{
	MDB_val k = { sizeof(id), &id }, v;
	rec_hdr h;
	const char *path;
	const unsigned char *emb;
	int rc;

	if ((rc = batch_room(b, err)))
		return rc;
	if ((rc = mdb_get(txn, s->db_rec, &k, &v)))
		return sto_mdb_err(err, rc, "reading renamed record");
	if ((rc = sto_rec_parse(s, &v, &h, &path, &emb, err)))
		return rc;
	if (h.frame && tlen > STORE_CLIP_PATH_MAX)
		return cdx_error_set(err, CDX_ETOOBIG,
				     "store_image_rename: clip path '%.64s...' "
				     "is longer than %d bytes", to,
				     STORE_CLIP_PATH_MAX);
	char fkey[STORE_PATH_MAX + 1], tkey[STORE_PATH_MAX + 1];
	MDB_val fk = { sto_path_key(fkey, path, h.path_len, h.frame), fkey };
	MDB_val tk = { sto_path_key(tkey, to, tlen, h.frame), tkey };
	size_t esz = sto_rec_emb_size(s, &h);
	int64_t old_label = h.label;
	/* Copy out of the map before writing to it: the record keeps its
	 * embedding's bytes as they are. */
	sto_rec_emb(s, &h, emb, b->vecs + b->nadd * (size_t)s->dim);
	memcpy(buf + sizeof(h), emb, esz);
	if ((rc = mdb_del(txn, s->db_path, &fk, NULL)))
		return sto_mdb_err(err, rc, "deleting path");
	if ((rc = mdb_put(txn, s->db_path, &tk,
			  &(MDB_val){ sizeof(id), &id }, 0)))
		return sto_mdb_err(err, rc, "writing path");
	if ((rc = forget_label(s, b, old_label, err)))
		return rc;
	b->seq++;
	h.label = (int64_t)b->seq;
	h.path_len = (uint32_t)tlen;
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h) + esz, to, tlen);
	v = (MDB_val){ sizeof(h) + esz + tlen, buf };
	if ((rc = mdb_put(txn, s->db_rec, &k, &v, 0)))
		return sto_mdb_err(err, rc, "writing record");
	rec_attr a = { h.label, h.capture_time, floor_div_1e9(h.mtime_ns) };
	if ((rc = mdb_put(txn, s->db_attr, &k,
			  &(MDB_val){ sizeof(a), &a }, 0)))
		return sto_mdb_err(err, rc, "writing attr");
	if ((rc = log_put(s, txn, b->seq, id, old_label, LOG_PUT)))
		return sto_mdb_err(err, rc, "writing change log");
	b->ctime[b->nadd] = h.capture_time;
	b->mtime[b->nadd] = floor_div_1e9(h.mtime_ns);
	b->ids[b->nadd] = id;
	b->add[b->nadd++] = h.label;
	b->n_renamed++;
	return 0;
}

/* Moves the records of from (an image, or every frame of a clip) to the
 * path to inside txn (move_one).  Nothing if from has no record. */
static int
rename_one(store *s, MDB_txn *txn, batch *b, const char *from, const char *to,
	   unsigned char *buf, cdx_error *err)
{
	size_t tlen = strlen(to);
	uint64_t *ids = NULL;
	size_t n = 0;
	int rc = path_taken(s, txn, to, err);

	if (rc < 0)
		return rc;
	if (rc)
		return cdx_error_set(err, CDX_EEXIST,
				     "store_image_rename: %s already has a "
				     "record", to);
	if ((rc = path_ids(s, txn, from, &ids, &n, err)))
		return rc;
	for (size_t i = 0; i < n && !rc; i++)
		rc = move_one(s, txn, b, ids[i], to, tlen, buf, err);
	free(ids);
	if (rc || n == 0)
		return rc;
	MDB_val tk = { tlen, (void *)to };
	rc = mdb_del(txn, s->db_fail, &tk, NULL);
	if (rc == 0)
		b->fail_delta--;
	else if (rc != MDB_NOTFOUND)
		return sto_mdb_err(err, rc, "deleting failure record");
	return 0;
}

/* Deletes the records at path (an image, or every frame of a clip)
 * inside txn, if there are any. */
static int
del_path_one(store *s, MDB_txn *txn, batch *b, const char *path,
	     cdx_error *err)
{
	uint64_t *ids = NULL;
	size_t n = 0;
	int rc = path_ids(s, txn, path, &ids, &n, err);
	for (size_t i = 0; i < n && !rc; i++)
		rc = del_one(s, txn, b, ids[i], err);
	free(ids);
	return rc;
}

struct rename_arg {
	batch b;
	const char *const *from, *const *to;
	unsigned char *buf;     /* room for one record */
};

static int
rename_item(store *s, MDB_txn *txn, void *arg, size_t i, cdx_error *err)
{
	struct rename_arg *a = arg;
	return rename_one(s, txn, &a->b, a->from[i], a->to[i], a->buf, err);
}

int
store_image_rename(store *s, const char *const *from, const char *const *to,
		   size_t n, size_t *n_renamed, cdx_error *err)
{
	int rc;
	if (n == 0) {
		if (n_renamed)
			*n_renamed = 0;
		return 0;
	}
	if (!from || !to)
		return cdx_error_set(err, CDX_EINVAL,
				     "store_image_rename: no paths");
	for (size_t i = 0; i < n; i++) {
		if ((rc = check_path(from[i], "store_image_rename", err)) ||
		    (rc = check_path(to[i], "store_image_rename", err)))
			return rc;
	}
	size_t d = (size_t)s->dim;
	struct rename_arg a = { .from = from, .to = to };
	a.buf = malloc(sizeof(rec_hdr) + d * 4 + STORE_PATH_MAX);
	if (batch_alloc(&a.b, n, n, d) || !a.buf) {
		rc = cdx_error_set(err, CDX_ENOMEM,
				   "store_image_rename: out of memory");
		goto out_free;
	}
	write_op op = { .fn = rename_item, .arg = &a, .n = n, .b = &a.b,
			.begin_what = "store_image_rename",
			.commit_what = "store_image_rename" };
	rc = write_txn(s, &op, err);
	/* Each record moved was added once (its entry in add may be -1 if
	 * renamed again later in the batch). */
	if ((rc == 0 || rc == CDX_EINDEX) && n_renamed)
		*n_renamed = a.b.n_renamed;
out_free:
	batch_free(&a.b);
	free(a.buf);
	return rc;
}

/* ---- reads ---- */

int
sto_read_begin(store *s, MDB_txn **txn, cdx_error *err)
{
	pthread_rwlock_rdlock(&s->lock);
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
	if (rc) {
		pthread_rwlock_unlock(&s->lock);
		return sto_mdb_err(err, rc, "read transaction");
	}
	return 0;
}

void
sto_read_end(store *s, MDB_txn *txn)
{
	mdb_txn_abort(txn);
	pthread_rwlock_unlock(&s->lock);
}

/* Fills a borrowed store_image from a parsed record. */
static void
image_from_rec(const rec_hdr *h, const char *path, const float *emb,
	       store_image *img)
{
	img->id = h->id;
	img->path = path;
	img->size = h->size;
	img->mtime_ns = h->mtime_ns;
	memcpy(img->hash, h->hash, STORE_HASH_LEN);
	img->width = h->width;
	img->height = h->height;
	img->capture_time = h->capture_time;
	img->added = h->added;
	img->embedding = emb;
	img->kind = h->frame ? STORE_KIND_FRAME : STORE_KIND_IMAGE;
	img->time_ms = h->frame ? (int64_t)h->frame - 1 : 0;
}

static int
image_copy_out(store *s, const MDB_val *v, store_image **out, cdx_error *err)
{
	rec_hdr h;
	const char *path;
	const unsigned char *emb;
	int rc = sto_rec_parse(s, v, &h, &path, &emb, err);
	if (rc)
		return rc;
	size_t vsz = (size_t)s->dim * sizeof(float);
	store_image *img = malloc(sizeof(*img) + vsz + h.path_len + 1);
	if (!img)
		return cdx_error_set(err, CDX_ENOMEM, "store_image_get");
	float *e = (float *)(img + 1);
	char *p = (char *)e + vsz;
	sto_rec_emb(s, &h, emb, e);
	memcpy(p, path, h.path_len);
	p[h.path_len] = '\0';
	image_from_rec(&h, p, e, img);
	*out = img;
	return 0;
}

int
store_image_get(store *s, uint64_t id, store_image **out, cdx_error *err)
{
	MDB_txn *txn;
	int rc = sto_read_begin(s, &txn, err);
	if (rc)
		return rc;
	MDB_val k = { sizeof(id), &id }, v;
	rc = mdb_get(txn, s->db_rec, &k, &v);
	if (rc == MDB_NOTFOUND)
		rc = cdx_error_set(err, CDX_ENOTFOUND, "no image with id %llu",
				   (unsigned long long)id);
	else if (rc)
		rc = sto_mdb_err(err, rc, "store_image_get");
	else
		rc = image_copy_out(s, &v, out, err);
	sto_read_end(s, txn);
	return rc;
}

int
store_image_get_by_path(store *s, const char *path, store_image **out,
			cdx_error *err)
{
	if (!path || !path[0] || strlen(path) > STORE_PATH_MAX)
		return cdx_error_set(err, CDX_ENOTFOUND, "no image at that path");
	MDB_txn *txn;
	int rc = sto_read_begin(s, &txn, err);
	if (rc)
		return rc;
	MDB_val pk = { strlen(path), (void *)path }, pv, v;
	rc = mdb_get(txn, s->db_path, &pk, &pv);
	if (rc == MDB_NOTFOUND && pk.mv_size <= STORE_CLIP_PATH_MAX) {
		/* A clip: its first frame. */
		char key[STORE_PATH_MAX + 2];
		MDB_cursor *c;
		memcpy(key, path, pk.mv_size);
		key[pk.mv_size] = '\0';
		MDB_val k = { pk.mv_size + 1, key };
		if ((rc = mdb_cursor_open(txn, s->db_path, &c)) == 0) {
			rc = mdb_cursor_get(c, &k, &pv, MDB_SET_RANGE);
			if (rc == 0 && (k.mv_size != pk.mv_size +
					STO_FRAME_KEY_EXTRA ||
					memcmp(k.mv_data, key, pk.mv_size + 1)))
				rc = MDB_NOTFOUND;
			mdb_cursor_close(c);
		}
	}
	if (rc == MDB_NOTFOUND) {
		rc = cdx_error_set(err, CDX_ENOTFOUND, "no image at %s", path);
	} else if (rc) {
		rc = sto_mdb_err(err, rc, "store_image_get_by_path");
	} else if (pv.mv_size != sizeof(uint64_t)) {
		rc = cdx_error_set(err, CDX_ECORRUPT, "bad path entry for %s",
				   path);
	} else {
		MDB_val k = pv;
		rc = mdb_get(txn, s->db_rec, &k, &v);
		if (rc)
			rc = sto_mdb_err(err, rc, "store_image_get_by_path");
		else
			rc = image_copy_out(s, &v, out, err);
	}
	sto_read_end(s, txn);
	return rc;
}

void
store_image_free(store_image *img)
{
	free(img);
}

void
store_content_hash(const void *data, size_t len, uint8_t hash[STORE_HASH_LEN])
{
	XXH128_canonical_t hc;
	XXH128_canonicalFromHash(&hc, XXH3_128bits(data, len));
	memcpy(hash, hc.digest, STORE_HASH_LEN);
}

int
store_image_find_hash(store *s, const uint8_t hash[STORE_HASH_LEN],
		      uint64_t *ids, size_t cap, size_t *n, cdx_error *err)
{
	MDB_txn *txn;
	MDB_cursor *c;
	int rc = sto_read_begin(s, &txn, err);
	if (rc)
		return rc;
	if ((rc = mdb_cursor_open(txn, s->db_hash, &c))) {
		rc = sto_mdb_err(err, rc, "store_image_find_hash");
		goto out_end;
	}
	MDB_val k = { STORE_HASH_LEN, (void *)hash }, v;
	size_t found = 0;
	rc = mdb_cursor_get(c, &k, &v, MDB_SET_KEY);
	while (rc == 0) {
		if (found < cap && ids)
			memcpy(&ids[found], v.mv_data, sizeof(uint64_t));
		found++;
		rc = mdb_cursor_get(c, &k, &v, MDB_NEXT_DUP);
	}
	if (rc == MDB_NOTFOUND) {
		rc = 0;
		*n = found;
	} else {
		rc = sto_mdb_err(err, rc, "store_image_find_hash");
	}
	mdb_cursor_close(c);
out_end:
	sto_read_end(s, txn);
	return rc;
}

int
store_image_foreach(store *s, store_image_fn fn, void *user, cdx_error *err)
{
	MDB_txn *txn;
	MDB_cursor *c;
	float *emb = malloc((size_t)s->dim * sizeof(float));
	char path[STORE_PATH_MAX + 1];
	if (!emb)
		return cdx_error_set(err, CDX_ENOMEM, "store_image_foreach");
	int rc = sto_read_begin(s, &txn, err);
	if (rc)
		goto out_free;
	if ((rc = mdb_cursor_open(txn, s->db_rec, &c))) {
		rc = sto_mdb_err(err, rc, "store_image_foreach");
		goto out_end;
	}
	MDB_val k, v;
	int r = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	while (r == 0) {
		rec_hdr h;
		const char *p;
		const unsigned char *e;
		if ((rc = sto_rec_parse(s, &v, &h, &p, &e, err)))
			break;
		sto_rec_emb(s, &h, e, emb);
		memcpy(path, p, h.path_len);
		path[h.path_len] = '\0';
		store_image img;
		image_from_rec(&h, path, emb, &img);
		if ((rc = fn(user, &img)) != 0)
			break;
		r = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	if (!rc && r != MDB_NOTFOUND)
		rc = sto_mdb_err(err, r, "store_image_foreach");
	mdb_cursor_close(c);
out_end:
	sto_read_end(s, txn);
out_free:
	free(emb);
	return rc;
}

/* ---- failure records ---- */

typedef struct fail_hdr {
	int64_t size, mtime_ns, when;
} fail_hdr;

struct small_arg {
	sto_txn_fn fn;
	void *arg;
	void (*after)(store *s, void *arg);
};

static int
small_item(store *s, MDB_txn *txn, void *arg, size_t i, cdx_error *err)
{
	struct small_arg *a = arg;
	(void)i;
	return a->fn(s, txn, a->arg, err);
}

static void
small_after(store *s, void *arg)
{
	struct small_arg *a = arg;
	if (a->after)
		a->after(s, a->arg);
}

/* One write of records outside the change log (failures, kv, tag sets):
 * fn does the work. */
int
sto_write(store *s, sto_txn_fn fn, void *arg,
	  void (*after)(store *s, void *arg), cdx_error *err)
{
	struct small_arg a = { fn, arg, after };
	write_op op = { .fn = small_item, .arg = &a, .n = 1,
			.begin_what = "write transaction",
			.commit_what = "commit", .after = small_after };
	return write_txn(s, &op, err);
}

int
sto_write_long(store *s, sto_txn_fn fn, void *arg,
	       void (*after)(store *s, void *arg), cdx_error *err)
{
	struct small_arg a = { fn, arg, after };
	write_op op = { .fn = small_item, .arg = &a, .n = 1,
			.begin_what = "write transaction",
			.commit_what = "commit", .after = small_after,
			.long_work = 1 };
	return write_txn(s, &op, err);
}

struct fail_put_arg {
	const store_failure *f;
	int created;
};

static int
fail_put_fn(store *s, MDB_txn *txn, void *arg, cdx_error *err)
{
	struct fail_put_arg *a = arg;
	const store_failure *f = a->f;
	size_t rlen = f->reason ? strlen(f->reason) : 0;
	if (rlen > REASON_MAX)
		rlen = REASON_MAX;
	unsigned char buf[sizeof(fail_hdr) + REASON_MAX];
	fail_hdr h = { f->size, f->mtime_ns, now_s() };
	memcpy(buf, &h, sizeof(h));
	if (rlen)
		memcpy(buf + sizeof(h), f->reason, rlen);
	MDB_val k = { strlen(f->path), (void *)f->path }, v;
	int rc = mdb_get(txn, s->db_fail, &k, &v);
	a->created = rc == MDB_NOTFOUND;
	v.mv_size = sizeof(h) + rlen;
	v.mv_data = buf;
	if ((rc = mdb_put(txn, s->db_fail, &k, &v, 0)))
		return sto_mdb_err(err, rc, "store_failure_put");
	return 0;
}

int
store_failure_put(store *s, const store_failure *f, cdx_error *err)
{
	int rc;
	if (!f)
		return cdx_error_set(err, CDX_EINVAL, "store_failure_put: NULL");
	if ((rc = check_path(f->path, "store_failure_put", err)))
		return rc;
	struct fail_put_arg a = { f, 0 };
	rc = sto_write(s, fail_put_fn, &a, NULL, err);
	if (!rc && a.created) {
		pthread_rwlock_wrlock(&s->lock);
		s->fail_count++;
		pthread_rwlock_unlock(&s->lock);
	}
	return rc;
}

static int
fail_copy_out(const MDB_val *k, const MDB_val *v, store_failure **out,
	      cdx_error *err)
{
	fail_hdr h;
	if (v->mv_size < sizeof(h) || v->mv_size > sizeof(h) + REASON_MAX)
		return cdx_error_set(err, CDX_ECORRUPT, "bad failure record");
	memcpy(&h, v->mv_data, sizeof(h));
	size_t rlen = v->mv_size - sizeof(h);
	store_failure *f = malloc(sizeof(*f) + k->mv_size + rlen + 2);
	if (!f)
		return cdx_error_set(err, CDX_ENOMEM, "store_failure_get");
	char *p = (char *)(f + 1), *r = p + k->mv_size + 1;
	memcpy(p, k->mv_data, k->mv_size);
	p[k->mv_size] = '\0';
	memcpy(r, (const char *)v->mv_data + sizeof(h), rlen);
	r[rlen] = '\0';
	f->path = p;
	f->reason = r;
	f->size = h.size;
	f->mtime_ns = h.mtime_ns;
	f->when = h.when;
	*out = f;
	return 0;
}

int
store_failure_get(store *s, const char *path, store_failure **out,
		  cdx_error *err)
{
	if (!path || !path[0] || strlen(path) > STORE_PATH_MAX)
		return cdx_error_set(err, CDX_ENOTFOUND, "no failure record");
	MDB_txn *txn;
	int rc = sto_read_begin(s, &txn, err);
	if (rc)
		return rc;
	MDB_val k = { strlen(path), (void *)path }, v;
	rc = mdb_get(txn, s->db_fail, &k, &v);
	if (rc == MDB_NOTFOUND)
		rc = cdx_error_set(err, CDX_ENOTFOUND,
				   "no failure record for %s", path);
	else if (rc)
		rc = sto_mdb_err(err, rc, "store_failure_get");
	else
		rc = fail_copy_out(&k, &v, out, err);
	sto_read_end(s, txn);
	return rc;
}

void
store_failure_free(store_failure *f)
{
	free(f);
}

static int
fail_del_fn(store *s, MDB_txn *txn, void *arg, cdx_error *err)
{
	const char *path = arg;
	MDB_val k = { strlen(path), (void *)path };
	int rc = mdb_del(txn, s->db_fail, &k, NULL);
	if (rc == MDB_NOTFOUND)
		return cdx_error_set(err, CDX_ENOTFOUND,
				     "no failure record for %s", path);
	if (rc)
		return sto_mdb_err(err, rc, "store_failure_delete");
	return 0;
}

int
store_failure_delete(store *s, const char *path, cdx_error *err)
{
	if (!path || !path[0] || strlen(path) > STORE_PATH_MAX)
		return cdx_error_set(err, CDX_ENOTFOUND, "no failure record");
	int rc = sto_write(s, fail_del_fn, (void *)path, NULL, err);
	if (!rc) {
		pthread_rwlock_wrlock(&s->lock);
		s->fail_count--;
		pthread_rwlock_unlock(&s->lock);
	}
	return rc;
}

int
store_failure_foreach(store *s, store_failure_fn fn, void *user,
		      cdx_error *err)
{
	MDB_txn *txn;
	MDB_cursor *c;
	int rc = sto_read_begin(s, &txn, err);
	if (rc)
		return rc;
	if ((rc = mdb_cursor_open(txn, s->db_fail, &c))) {
		rc = sto_mdb_err(err, rc, "store_failure_foreach");
		goto out_end;
	}
	MDB_val k, v;
	int r = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	while (r == 0) {
		store_failure *f;
		if ((rc = fail_copy_out(&k, &v, &f, err)))
			break;
		rc = fn(user, f);
		free(f);
		if (rc)
			break;
		r = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	if (!rc && r != MDB_NOTFOUND)
		rc = sto_mdb_err(err, r, "store_failure_foreach");
	mdb_cursor_close(c);
out_end:
	sto_read_end(s, txn);
	return rc;
}

/* ---- key/value ---- */

static int
check_key(const char *key, cdx_error *err)
{
	if (!key || !key[0] || strlen(key) > 255)
		return cdx_error_set(err, CDX_EINVAL,
				     "store kv: key must be 1..255 bytes");
	return 0;
}

struct kv_arg {
	const char *key;
	const void *val;
	size_t len;
};

static int
kv_put_fn(store *s, MDB_txn *txn, void *arg, cdx_error *err)
{
	struct kv_arg *a = arg;
	MDB_val k = { strlen(a->key), (void *)a->key },
		v = { a->len, (void *)a->val };
	int rc = mdb_put(txn, s->db_kv, &k, &v, 0);
	return rc ? sto_mdb_err(err, rc, "store_kv_put") : 0;
}

int
store_kv_put(store *s, const char *key, const void *val, size_t len,
	     cdx_error *err)
{
	int rc = check_key(key, err);
	if (rc)
		return rc;
	if (len > KV_VALUE_MAX)
		return cdx_error_set(err, CDX_ETOOBIG,
				     "store_kv_put: value of %zu bytes", len);
	if (len && !val)
		return cdx_error_set(err, CDX_EINVAL, "store_kv_put: NULL value");
	struct kv_arg a = { key, len ? val : "", len };
	return sto_write(s, kv_put_fn, &a, NULL, err);
}

int
store_kv_get(store *s, const char *key, void **val, size_t *len,
	     cdx_error *err)
{
	int rc = check_key(key, err);
	if (rc)
		return rc;
	if (!val)
		return cdx_error_set(err, CDX_EINVAL, "store_kv_get: NULL val");
	MDB_txn *txn;
	if ((rc = sto_read_begin(s, &txn, err)))
		return rc;
	MDB_val k = { strlen(key), (void *)key }, v;
	rc = mdb_get(txn, s->db_kv, &k, &v);
	if (rc == MDB_NOTFOUND) {
		rc = cdx_error_set(err, CDX_ENOTFOUND, "no setting '%s'", key);
	} else if (rc) {
		rc = sto_mdb_err(err, rc, "store_kv_get");
	} else {
		char *copy = malloc(v.mv_size + 1);
		if (!copy) {
			rc = cdx_error_set(err, CDX_ENOMEM, "store_kv_get");
		} else {
			memcpy(copy, v.mv_data, v.mv_size);
			copy[v.mv_size] = '\0';
			*val = copy;
			if (len)
				*len = v.mv_size;
		}
	}
	sto_read_end(s, txn);
	return rc;
}

static int
kv_del_fn(store *s, MDB_txn *txn, void *arg, cdx_error *err)
{
	const char *key = arg;
	MDB_val k = { strlen(key), (void *)key };
	int rc = mdb_del(txn, s->db_kv, &k, NULL);
	if (rc == MDB_NOTFOUND)
		return cdx_error_set(err, CDX_ENOTFOUND, "no setting '%s'", key);
	return rc ? sto_mdb_err(err, rc, "store_kv_delete") : 0;
}

int
store_kv_delete(store *s, const char *key, cdx_error *err)
{
	int rc = check_key(key, err);
	if (rc)
		return rc;
	return sto_write(s, kv_del_fn, (void *)key, NULL, err);
}

/* ---- reads by folder (the path and fail tables are in path order) ---- */

typedef int (*prefix_fn)(store *s, MDB_txn *txn, const MDB_val *k,
			 const MDB_val *v, void *arg, cdx_error *err);

/* Calls fn for each key of db under dir (cdx_path_under's rule: dir
 * itself, then the keys starting with dir + '/'), in key order.  Keys
 * such as "/a-b" or "/a2" sort between "/a" and "/a/" and are never
 * visited for "/a". */
static int
prefix_walk(store *s, MDB_txn *txn, MDB_dbi db, const char *dir,
	    prefix_fn fn, void *arg, const char *what, cdx_error *err)
{
	char key[STORE_PATH_MAX + 2];
	size_t n = strlen(dir);
	MDB_cursor *c;
	MDB_val k, v;
	int rc, r;

	while (n > 1 && dir[n - 1] == '/')
		n--;            /* a trailing '/' is ignored; "/" stays */
	if (n > STORE_PATH_MAX)
		return 0;       /* no key is that long */
	memcpy(key, dir, n);
	if ((rc = mdb_cursor_open(txn, db, &c)))
		return sto_mdb_err(err, rc, what);
	if (n > 1) {
		k = (MDB_val){ n, key };
		r = mdb_cursor_get(c, &k, &v, MDB_SET_KEY);
		if (r == 0)
			rc = fn(s, txn, &k, &v, arg, err);
		else if (r != MDB_NOTFOUND)
			rc = sto_mdb_err(err, r, what);
		/* dir itself may be a clip: its frames' keys (path NUL
		 * time) follow. */
		key[n] = '\0';
		k = (MDB_val){ n + 1, key };
		r = rc ? 0 : mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
		while (!rc && r == 0 && k.mv_size == n + STO_FRAME_KEY_EXTRA &&
		       memcmp(k.mv_data, key, n + 1) == 0) {
			if ((rc = fn(s, txn, &k, &v, arg, err)) == 0)
				r = mdb_cursor_get(c, &k, &v, MDB_NEXT);
		}
		if (!rc && r != 0 && r != MDB_NOTFOUND)
			rc = sto_mdb_err(err, r, what);
		key[n++] = '/';
	}
	k = (MDB_val){ n, key };
	r = rc ? 0 : mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	while (!rc && r == 0 && k.mv_size >= n &&
	       memcmp(k.mv_data, key, n) == 0) {
		if ((rc = fn(s, txn, &k, &v, arg, err)) == 0)
			r = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	if (!rc && r != 0 && r != MDB_NOTFOUND)
		rc = sto_mdb_err(err, r, what);
	mdb_cursor_close(c);
	return rc;
}

static int
check_dir(const char *dir, const char *what, cdx_error *err)
{
	if (!dir || dir[0] != '/')
		return cdx_error_set(err, CDX_EINVAL,
				     "%s: folder '%s' is not absolute", what,
				     dir ? dir : "(null)");
	return 0;
}

struct image_prefix_arg {
	store_image_fn fn;
	void *user;
	float *emb;
	char path[STORE_PATH_MAX + 1];
};

static int
image_prefix_item(store *s, MDB_txn *txn, const MDB_val *k, const MDB_val *v,
		  void *arg, cdx_error *err)
{
	struct image_prefix_arg *a = arg;
	MDB_val rk = *v, rv;
	rec_hdr h;
	const char *p;
	const unsigned char *e;
	int rc;

	(void)k;
	if (v->mv_size != sizeof(uint64_t))
		return cdx_error_set(err, CDX_ECORRUPT, "bad path entry");
	if ((rc = mdb_get(txn, s->db_rec, &rk, &rv)))
		return sto_mdb_err(err, rc, "store_image_foreach_prefix");
	if ((rc = sto_rec_parse(s, &rv, &h, &p, &e, err)))
		return rc;
	sto_rec_emb(s, &h, e, a->emb);
	memcpy(a->path, p, h.path_len);
	a->path[h.path_len] = '\0';
	store_image img;
	image_from_rec(&h, a->path, a->emb, &img);
	return a->fn(a->user, &img);
}

int
store_image_foreach_prefix(store *s, const char *dir, store_image_fn fn,
			   void *user, cdx_error *err)
{
	struct image_prefix_arg a = { .fn = fn, .user = user };
	MDB_txn *txn;
	int rc;

	if ((rc = check_dir(dir, "store_image_foreach_prefix", err)))
		return rc;
	if (!(a.emb = malloc((size_t)s->dim * sizeof(float))))
		return cdx_error_set(err, CDX_ENOMEM,
				     "store_image_foreach_prefix");
	if ((rc = sto_read_begin(s, &txn, err)) == 0) {
		rc = prefix_walk(s, txn, s->db_path, dir, image_prefix_item, &a,
				 "store_image_foreach_prefix", err);
		sto_read_end(s, txn);
	}
	free(a.emb);
	return rc;
}

struct fail_prefix_arg {
	store_failure_fn fn;
	void *user;
};

static int
fail_prefix_item(store *s, MDB_txn *txn, const MDB_val *k, const MDB_val *v,
		 void *arg, cdx_error *err)
{
	struct fail_prefix_arg *a = arg;
	store_failure *f;
	int rc;

	(void)s;
	(void)txn;
	if ((rc = fail_copy_out(k, v, &f, err)))
		return rc;
	rc = a->fn(a->user, f);
	free(f);
	return rc;
}

int
store_failure_foreach_prefix(store *s, const char *dir, store_failure_fn fn,
			     void *user, cdx_error *err)
{
	struct fail_prefix_arg a = { fn, user };
	MDB_txn *txn;
	int rc;

	if ((rc = check_dir(dir, "store_failure_foreach_prefix", err)))
		return rc;
	if ((rc = sto_read_begin(s, &txn, err)))
		return rc;
	rc = prefix_walk(s, txn, s->db_fail, dir, fail_prefix_item, &a,
			 "store_failure_foreach_prefix", err);
	sto_read_end(s, txn);
	return rc;
}

/* ---- batches: many kinds of change, one transaction ---- */

enum bop_kind { BOP_PUT, BOP_RENAME, BOP_DELETE, BOP_DELETE_PATH, BOP_FAIL,
		BOP_UNFAIL };

/* One change of a batch.  Strings are the batch's own copies. */
struct bop {
	int kind;
	int replace;            /* BOP_RENAME */
	size_t img;             /* BOP_PUT: index into imgs and vecs */
	char *a, *b;            /* paths (BOP_FAIL: path, reason) */
	uint64_t id;            /* BOP_DELETE */
	int64_t size, mtime_ns; /* BOP_FAIL */
};

struct store_batch {
	store *s;
	struct bop *ops;
	size_t n, cap;
	store_image *imgs;      /* the puts' records, paths owned by ops */
	float *vecs;            /* normalised embeddings, dim each */
	size_t nimg, cap_img;
	batch b;                /* write_txn's state, allocated at commit */
	unsigned char *buf;     /* room for one record */
	int64_t now;
};

int
store_batch_begin(store *s, store_batch **out, cdx_error *err)
{
	store_batch *b;
	if (!s || !out)
		return cdx_error_set(err, CDX_EINVAL, "store_batch_begin: NULL");
	if (!(b = calloc(1, sizeof(*b))))
		return cdx_error_set(err, CDX_ENOMEM, "store_batch_begin");
	b->s = s;
	*out = b;
	return 0;
}

void
store_batch_abort(store_batch *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->n; i++) {
		free(b->ops[i].a);
		free(b->ops[i].b);
	}
	free(b->ops);
	free(b->imgs);
	free(b->vecs);
	batch_free(&b->b);
	free(b->buf);
	free(b);
}

size_t
store_batch_len(const store_batch *b)
{
	return b ? b->n : 0;
}

size_t
store_batch_mark(const store_batch *b)
{
	return store_batch_len(b);
}

void
store_batch_rollback(store_batch *b, size_t mark)
{
	if (!b || mark >= b->n)
		return;
	for (size_t i = mark; i < b->n; i++) {
		if (b->ops[i].kind == BOP_PUT && b->ops[i].img < b->nimg)
			b->nimg = b->ops[i].img;  /* puts are in order */
		free(b->ops[i].a);
		free(b->ops[i].b);
	}
	b->n = mark;
}

/* Appends op (its strings, if any, already copied: freed on failure). */
static int
bop_add(store_batch *b, struct bop op, const char *what, cdx_error *err)
{
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 16;
		struct bop *v = realloc(b->ops, cap * sizeof(*v));
		if (!v) {
			free(op.a);
			free(op.b);
			return cdx_error_set(err, CDX_ENOMEM, "%s", what);
		}
		b->ops = v;
		b->cap = cap;
	}
	b->ops[b->n++] = op;
	return 0;
}

/* A copy of path for an op; NULL only when out of memory. */
static int
bop_str(const char *in, char **out, const char *what, cdx_error *err)
{
	if (!(*out = strdup(in)))
		return cdx_error_set(err, CDX_ENOMEM, "%s", what);
	return 0;
}

int
store_batch_put(store_batch *b, const store_image *img, cdx_error *err)
{
	static const char what[] = "store_batch_put";
	size_t d;
	int rc;

	if (!b || !img)
		return cdx_error_set(err, CDX_EINVAL, "%s: NULL", what);
	d = (size_t)b->s->dim;
	if ((rc = check_path(img->path, what, err)) ||
	    (rc = check_kind(img, what, err)))
		return rc;
	if (img->size < 0 || !img->embedding)
		return cdx_error_set(err, CDX_EINVAL,
				     "%s: %s: negative size or no embedding",
				     what, img->path);
	if (b->nimg == b->cap_img) {
		size_t cap = b->cap_img ? b->cap_img * 2 : 16;
		store_image *vi = realloc(b->imgs, cap * sizeof(*vi));
		if (vi)
			b->imgs = vi;
		float *vv = vi ? realloc(b->vecs, cap * d * sizeof(float)) : NULL;
		if (!vv)
			return cdx_error_set(err, CDX_ENOMEM, "%s", what);
		b->vecs = vv;
		b->cap_img = cap;
	}
	if (normalise(img->embedding, b->s->dim, b->vecs + b->nimg * d))
		return cdx_error_set(err, CDX_EINVAL,
				     "%s: %s: embedding is not finite or is "
				     "zero", what, img->path);
	struct bop op = { .kind = BOP_PUT, .img = b->nimg };
	if ((rc = bop_str(img->path, &op.a, what, err)) ||
	    (rc = bop_add(b, op, what, err)))
		return rc;
	b->imgs[b->nimg] = *img;
	b->imgs[b->nimg].path = op.a;
	b->imgs[b->nimg].embedding = NULL;
	b->nimg++;
	return 0;
}

int
store_batch_rename(store_batch *b, const char *from, const char *to,
		   int replace, cdx_error *err)
{
	static const char what[] = "store_batch_rename";
	struct bop op = { .kind = BOP_RENAME, .replace = replace != 0 };
	int rc;

	if (!b)
		return cdx_error_set(err, CDX_EINVAL, "%s: NULL", what);
	if ((rc = check_path(from, what, err)) ||
	    (rc = check_path(to, what, err)))
		return rc;
	if ((rc = bop_str(from, &op.a, what, err)))
		return rc;
	if ((rc = bop_str(to, &op.b, what, err))) {
		free(op.a);
		return rc;
	}
	return bop_add(b, op, what, err);
}

int
store_batch_delete(store_batch *b, uint64_t id, cdx_error *err)
{
	if (!b)
		return cdx_error_set(err, CDX_EINVAL, "store_batch_delete: NULL");
	struct bop op = { .kind = BOP_DELETE, .id = id };
	return bop_add(b, op, "store_batch_delete", err);
}

/* A change that names one path (delete_path, unfail). */
static int
bop_path(store_batch *b, int kind, const char *path, const char *what,
	 cdx_error *err)
{
	struct bop op = { .kind = kind };
	int rc;

	if (!b)
		return cdx_error_set(err, CDX_EINVAL, "%s: NULL", what);
	if ((rc = check_path(path, what, err)) ||
	    (rc = bop_str(path, &op.a, what, err)))
		return rc;
	return bop_add(b, op, what, err);
}

int
store_batch_delete_path(store_batch *b, const char *path, cdx_error *err)
{
	return bop_path(b, BOP_DELETE_PATH, path, "store_batch_delete_path",
			err);
}

int
store_batch_fail(store_batch *b, const store_failure *f, cdx_error *err)
{
	static const char what[] = "store_batch_fail";
	struct bop op = { .kind = BOP_FAIL };
	int rc;

	if (!b || !f)
		return cdx_error_set(err, CDX_EINVAL, "%s: NULL", what);
	if ((rc = check_path(f->path, what, err)))
		return rc;
	op.size = f->size;
	op.mtime_ns = f->mtime_ns;
	if ((rc = bop_str(f->path, &op.a, what, err)))
		return rc;
	if ((rc = bop_str(f->reason ? f->reason : "", &op.b, what, err))) {
		free(op.a);
		return rc;
	}
	return bop_add(b, op, what, err);
}

int
store_batch_unfail(store_batch *b, const char *path, cdx_error *err)
{
	return bop_path(b, BOP_UNFAIL, path, "store_batch_unfail", err);
}

static int
batch_item(store *s, MDB_txn *txn, void *arg, size_t i, cdx_error *err)
{
	store_batch *sb = arg;
	batch *b = &sb->b;
	const struct bop *op = &sb->ops[i];
	int rc;

	switch (op->kind) {
	case BOP_PUT:
		return put_one(s, txn, b, &sb->imgs[op->img],
			       sb->vecs + op->img * (size_t)s->dim, sb->now,
			       sb->buf, err);
	case BOP_RENAME:
		if (strcmp(op->a, op->b) == 0)
			return 0;
		if ((rc = path_taken(s, txn, op->a, err)) <= 0)
			return rc;      /* from has no record (or an error) */
		if ((rc = path_taken(s, txn, op->b, err)) < 0)
			return rc;
		if (rc && !op->replace)
			return 0;       /* to is taken: the pair is skipped */
		if (rc && (rc = del_path_one(s, txn, b, op->b, err)))
			return rc;
		return rename_one(s, txn, b, op->a, op->b, sb->buf, err);
	case BOP_DELETE:
		return del_one(s, txn, b, op->id, err);
	case BOP_DELETE_PATH:
		return del_path_one(s, txn, b, op->a, err);
	case BOP_FAIL: {
		store_failure f = { op->a, op->b, op->size, op->mtime_ns, 0 };
		struct fail_put_arg a = { &f, 0 };
		if ((rc = fail_put_fn(s, txn, &a, err)))
			return rc;
		b->fail_delta += a.created;
		b->n_failed++;
		return 0;
	}
	case BOP_UNFAIL: {
		MDB_val k = { strlen(op->a), op->a };
		rc = mdb_del(txn, s->db_fail, &k, NULL);
		if (rc == 0)
			b->fail_delta--;
		else if (rc != MDB_NOTFOUND)
			return sto_mdb_err(err, rc, "deleting failure record");
		return 0;
	}
	}
	return cdx_error_set(err, CDX_EINVAL, "store_batch: bad change");
}

int
store_batch_commit(store_batch *sb, store_batch_counts *counts,
		   cdx_error *err)
{
	int rc = 0;

	if (!sb)
		return cdx_error_set(err, CDX_EINVAL, "store_batch_commit: NULL");
	store *s = sb->s;
	size_t d = (size_t)s->dim;
	if (sb->n == 0)
		goto out_counts;
	/* A rename that replaces removes two labels, other changes one. */
	sb->buf = malloc(sizeof(rec_hdr) + d * 4 + STORE_PATH_MAX);
	if (!sb->buf || batch_alloc(&sb->b, sb->n, 2 * sb->n, d)) {
		rc = cdx_error_set(err, CDX_ENOMEM,
				   "store_batch_commit: out of memory");
		goto out_free;
	}
	sb->now = now_s();
	write_op op = { .fn = batch_item, .arg = sb, .n = sb->n, .b = &sb->b,
			.put_next_id = 1,
			.begin_what = "store_batch_commit",
			.commit_what = "store_batch_commit" };
	rc = write_txn(s, &op, err);
out_counts:
	if (counts && (rc == 0 || rc == CDX_EINDEX)) {
		counts->put = sb->b.n_put;
		counts->renamed = sb->b.n_renamed;
		counts->deleted = sb->b.n_deleted;
		counts->failed = sb->b.n_failed;
	}
out_free:
	store_batch_abort(sb);
	return rc;
}
