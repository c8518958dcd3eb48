/*
 * index.c - the derived FAISS index: choosing its kind, building it from
 * LMDB, persisting it (index.faiss) and catching it up from the change log,
 * and every search.  All FAISS calls go through its C API (faiss_c.cpp).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cblas.h>
#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/IndexFlat_c.h>
#include <faiss/c_api/IndexIVF_c.h>
#include <faiss/c_api/MetaIndexes_c.h>
#include <faiss/c_api/clone_index_c.h>
#include <faiss/c_api/impl/AuxIndexStructures_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/index_io_c.h>
#include <faiss/c_api/utils/distances_c.h>
#include <xxhash.h>

#include "common/vec.h"
#include "store/faiss_ext.h"
#include "store/internal.h"

#define IDX_MAGIC "CDXIDX1\n"
#define IDX_VERSION 2u

typedef struct idx_file_hdr {
	char magic[8];
	uint32_t version, dim;
	uint64_t seq, ntotal, live, payload_len;
	char kind[128];
	char model_id[256];
	uint64_t base_hash; /* 0, or the checksum of the index.base it extends */
	uint64_t checksum;  /* XXH64 of this header (checksum 0) + payload */
} idx_file_hdr;

/* index.base, the lists of a disk-resident kind: this header, the lists
 * (FAISS's on-disk layout, memory-mapped read-only while serving), then the
 * index that points at them (quantizer, codebooks, list table).  Written
 * once per rebuild; index.faiss then holds only what was added since. */
#define BASE_MAGIC "CDXBASE\n"
#define BASE_VERSION 1u

typedef struct base_file_hdr {
	char magic[8];
	uint32_t version, dim;
	uint64_t ntotal, data_off, data_len, meta_len;
	uint64_t data_hash, meta_hash; /* XXH64 of each part */
	char model_id[256];
	uint64_t checksum; /* XXH64 of this header (checksum 0) */
} base_file_hdr;

/* ---- kinds ---- */

int
sto_parse_kind_nlist(const char *kind, long *nlist)
{
	const char *p = strstr(kind, "IVF");
	if (!p)
		return -1;
	char *end;
	long n = strtol(p + 3, &end, 10);
	if (end == p + 3 || n <= 0)
		return -1;
	*nlist = n;
	return 0;
}

/* nlist ~ 2 sqrt(n), a power of two in [16, 65536]. */
static long
ivf_nlist_for(size_t n)
{
	double x = 2.0 * sqrt((double)n);
	long nl = 16;
	while (nl < 65536 && (double)nl * 1.414 < x)
		nl *= 2;
	return nl;
}

static void
ivf_kind(size_t n, char *out, size_t cap)
{
	long nl = ivf_nlist_for(n);
	if (n < (size_t)(39 * nl))
		snprintf(out, cap, "Flat");
	else
		snprintf(out, cap, "IVF%ld,Flat", nl);
}

/* IVF over PQ codes of m bytes (8 bits each of m sub-vectors), m about
 * dim/8 and a multiple of 8, so that each list's ids (after its codes in
 * index.base) stay 8-byte aligned; or Flat while n is too small to train
 * them (PQ wants 39 x 256 training points, IVF 39 per list).  "np": no
 * polysemous training, which only serves Hamming-filtered search (unused)
 * and took minutes at 1M. */
static void
ivfpq_kind(size_t n, int dim, char *out, size_t cap)
{
	long nl = ivf_nlist_for(n);
	int m = 8;
	while (m <= dim && (m < dim / 8 || dim % m != 0))
		m += 8;
	if (m > dim)
		m = dim % 8 == 0 ? dim / 8 : dim % 4 == 0 ? dim / 4 : dim;
	if (n < (size_t)(39 * nl) || n < 39 * 256)
		snprintf(out, cap, "Flat");
	else
		snprintf(out, cap, "IVF%ld,PQ%dnp", nl, m);
}

/* IVF-PQ kinds keep their lists on disk (index.base), memory-mapped,
 * where their codes are a multiple of 8 bytes (see ivfpq_kind). */
static int
ondisk_kind(const char *kind)
{
	const char *pq = strstr(kind, "PQ");
	return strncmp(kind, "IVF", 3) == 0 && pq && atoi(pq + 2) % 8 == 0 &&
	       strchr(pq, 'x') == NULL;
}

/* The factory string the requested kind means for n images. */
static void
resolve_kind(const store *s, size_t n, char *out, size_t cap)
{
	const char *r = s->kind_req;
	long nl;
	if (strcmp(r, "flat") == 0)
		snprintf(out, cap, "Flat");
	else if (strcmp(r, "hnsw") == 0)
		snprintf(out, cap, "HNSW32");
	else if (strcmp(r, "ivf") == 0)
		ivf_kind(n, out, cap);
	else if (strcmp(r, "ivfpq") == 0)
		ivfpq_kind(n, s->dim, out, cap);
	else if (strcmp(r, "auto") == 0) {
		if (n < s->auto_flat_max)
			snprintf(out, cap, "Flat");
		else if (n < STORE_AUTO_PQ_MIN)
			ivf_kind(n, out, cap);
		else
			ivfpq_kind(n, s->dim, out, cap);
	} else if (sto_parse_kind_nlist(r, &nl) == 0 && n < (size_t)(39 * nl))
		snprintf(out, cap, "Flat");
	else
		snprintf(out, cap, "%s", r);
}

/* Whether an index of kind `have` may serve the request for n images. */
static int
kind_acceptable(const store *s, const char *have, size_t n)
{
	char want[128];
	resolve_kind(s, n, want, sizeof(want));
	if (strcmp(have, want) == 0)
		return 1;
	const char *r = s->kind_req;
	int is_auto = strcmp(r, "auto") == 0;
	int is_ivf = strcmp(r, "ivf") == 0 || strcmp(r, "ivfpq") == 0;
	long nl, ideal = ivf_nlist_for(n);
	if (is_auto && strcmp(have, "Flat") == 0)
		return n < 2 * s->auto_flat_max;
	if ((strstr(have, "PQ") != NULL) != (strstr(want, "PQ") != NULL)) {
		/* a trained IVF-PQ index serves an "ivfpq" store that shrank
		 * below the training minimum until it halved */
		if (strcmp(r, "ivfpq") == 0 && strstr(have, "PQ"))
			return n * 2 >= 39 * 256 &&
			       sto_parse_kind_nlist(have, &nl) == 0 &&
			       nl * 4 >= ideal && nl <= ideal * 4;
		/* auto between IVF and IVF-PQ: the same hysteresis */
		if (!is_auto || !strstr(have, "IVF") || !strstr(want, "IVF"))
			return 0;
		if (strstr(have, "PQ") ? n * 2 < STORE_AUTO_PQ_MIN
				       : n >= 2 * (size_t)STORE_AUTO_PQ_MIN)
			return 0;
		snprintf(want, sizeof(want), "%s", have);
	}
	if ((is_auto || is_ivf) && sto_parse_kind_nlist(have, &nl) == 0 &&
	    strstr(want, "IVF")) {
		if (is_auto && n < s->auto_flat_max / 2)
			return 0;
		return nl * 4 >= ideal && nl <= ideal * 4;
	}
	return 0;
}

/* The lists an IVF search probes: ivf_nprobe, else 1/256 of the nl lists,
 * at least 8; with PQ codes 1/64, at least 32: their candidates are
 * re-ranked, and recall is what the probed lists hold (see STORE.md). */
static long
nprobe_of(const store *s, long nl)
{
	int pq = strstr(s->kind, "PQ") != NULL;
	long np = s->ivf_nprobe ? s->ivf_nprobe : nl / (pq ? 64 : 256);
	if (np < (pq ? 32 : 8))
		np = pq ? 32 : 8;
	return np;
}

static void
set_search_params(store *s)
{
	FaissParameterSpace *ps;
	if (faiss_ParameterSpace_new(&ps) != 0)
		return;
	if (strstr(s->kind, "HNSW"))
		faiss_ParameterSpace_set_index_parameter(ps, s->index, "efSearch",
							 s->hnsw_ef_search);
	long nl;
	if (strstr(s->kind, "IVF") && sto_parse_kind_nlist(s->kind, &nl) == 0) {
		long np = nprobe_of(s, nl);
		if (np > nl)
			np = nl;
		faiss_ParameterSpace_set_index_parameter(ps, s->index, "nprobe",
							 (double)np);
	}
	faiss_ParameterSpace_free(ps);
}

static void
index_set(store *s, FaissIndex *idx, const char *kind)
{
	if (s->index)
		faiss_Index_free(s->index);
	s->index = idx;
	snprintf(s->kind, sizeof(s->kind), "%s", kind);
	FaissIndex *b, *dl;
	s->tombstones = strstr(kind, "HNSW") != NULL ||
			strstr(kind, "NSG") != NULL ||
			cdx_faiss_overlay_parts(idx, &b, &dl);
	s->rerank = strstr(kind, "PQ") != NULL;
	set_search_params(s);
	int64_t nt = faiss_Index_ntotal(idx);
	s->dead = nt > (int64_t)s->live.n ? (uint64_t)nt - s->live.n : 0;
}

void
idx_close(store *s)
{
	if (s->index)
		faiss_Index_free(s->index);
	s->index = NULL;
}

/* ---- files ---- */

static void
idx_path(const store *s, char *buf, size_t cap, const char *suffix)
{
	snprintf(buf, cap, "%s/index.faiss%s", s->dir, suffix);
}

static void
base_path(const store *s, char *buf, size_t cap, const char *suffix)
{
	snprintf(buf, cap, "%s/index.base%s", s->dir, suffix);
}

void
idx_forget(store *s)
{
	char path[4200];
	idx_path(s, path, sizeof(path), "");
	unlink(path);
	base_path(s, path, sizeof(path), "");
	unlink(path);
}

static uint64_t
file_checksum(const idx_file_hdr *h, const void *payload, size_t len)
{
	idx_file_hdr c = *h;
	c.checksum = 0;
	XXH64_state_t *st = XXH64_createState();
	uint64_t r = 0;
	if (!st)
		return 0;
	XXH64_reset(st, 0);
	XXH64_update(st, &c, sizeof(c));
	XXH64_update(st, payload, len);
	r = XXH64_digest(st);
	XXH64_freeState(st);
	return r;
}

static int
write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Reads len bytes of fd from off into buf: 0, or -1 (an error, or the
 * file ends first). */
static int
pread_all(int fd, void *buf, uint64_t len, uint64_t off)
{
	char *p = buf;
	while (len) {
		ssize_t r = pread(fd, p, len, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		off += (uint64_t)r;
		len -= (uint64_t)r;
	}
	return 0;
}

/* Creates tmp for writing, mode STORE_FILE_MODE whatever the umask. */
static int
file_create(const char *tmp, int *fd, cdx_error *err)
{
	*fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
		   STORE_FILE_MODE);
	if (*fd < 0 || fchmod(*fd, STORE_FILE_MODE) != 0) {
		int e = errno;
		if (*fd >= 0) {
			close(*fd);
			unlink(tmp);
		}
		return cdx_error_set(err, cdx_from_errno(e),
				     "cannot create %s: %s", tmp, strerror(e));
	}
	return 0;
}

/* Makes the written tmp durable as dst: fsync, close, rename, then the
 * directory's fsync.  Closes fd; on failure removes tmp. */
static int
file_commit(const store *s, int fd, const char *tmp, const char *dst,
	    cdx_error *err)
{
	if (fsync(fd) != 0) {
		int e = errno;
		close(fd);
		unlink(tmp);
		return cdx_error_set(err, cdx_from_errno(e),
				     "cannot write %s: %s", tmp, strerror(e));
	}
	close(fd);
	if (rename(tmp, dst) != 0) {
		int e = errno;
		unlink(tmp);
		return cdx_error_set(err, cdx_from_errno(e),
				     "cannot rename %s: %s", tmp, strerror(e));
	}
	int dfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

/* XXH64 of len bytes of fd from off; 0 and *h, or -1 (errno). */
static int
hash_range(int fd, uint64_t off, uint64_t len, uint64_t *h)
{
	enum { BLOCK = 1 << 20 };
	char *buf = malloc(BLOCK);
	XXH64_state_t *st = XXH64_createState();
	int rc = -1;
	if (!buf || !st) {
		errno = ENOMEM;
		goto out;
	}
	XXH64_reset(st, 0);
	while (len) {
		size_t want = len < BLOCK ? (size_t)len : BLOCK;
		ssize_t r = pread(fd, buf, want, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = EIO;
			goto out;
		}
		XXH64_update(st, buf, (size_t)r);
		off += (uint64_t)r;
		len -= (uint64_t)r;
	}
	*h = XXH64_digest(st);
	rc = 0;
out:
	if (st)
		XXH64_freeState(st);
	free(buf);
	return rc;
}

/* ---- building ---- */

/* Records are read for a rebuild this many at a time: a 10M-image store
 * is never held in RAM as float32 (20 GB at 512-d), only its index. */
#define REBUILD_CHUNK 65536

typedef int (*chunk_fn)(store *s, void *user, const int64_t *labels,
			const float *vecs, size_t n, cdx_error *err);

/* Calls fn on the records in key order, REBUILD_CHUNK at a time (their
 * labels and widened embeddings), taking `take` of every `of` records,
 * evenly spread (take == of: all); with live, every record also goes into
 * the (cleared) live map. */
static int
scan_records(store *s, MDB_txn *txn, size_t take, size_t of, int live,
	     chunk_fn fn, void *user, cdx_error *err)
{
	size_t d = (size_t)s->dim, n = 0, i = 0;
	int64_t *labels = malloc(REBUILD_CHUNK * sizeof(*labels));
	float *vecs = malloc(REBUILD_CHUNK * d * sizeof(float));
	MDB_cursor *c = NULL;
	int rc = 0, r;
	if (!labels || !vecs) {
		rc = cdx_error_set(err, CDX_ENOMEM,
				   "rebuilding index: out of memory");
		goto out;
	}
	if (live)
		live_clear(&s->live);
	if ((r = mdb_cursor_open(txn, s->db_rec, &c))) {
		rc = sto_mdb_err(err, r, "reading records");
		goto out;
	}
	MDB_val k, v;
	for (r = mdb_cursor_get(c, &k, &v, MDB_FIRST); r == 0 && !rc;
	     r = mdb_cursor_get(c, &k, &v, MDB_NEXT), i++) {
		rec_hdr h;
		const unsigned char *e;
		if ((rc = sto_rec_parse(s, &v, &h, NULL, &e, err)))
			break;
		if (live) {
			int64_t sec = h.mtime_ns / 1000000000;
			if (h.mtime_ns % 1000000000 < 0)
				sec--;
			if ((rc = live_add(&s->live, h.label, h.id,
					   h.capture_time, sec))) {
				rc = cdx_error_set(err, rc, "rebuilding index");
				break;
			}
		}
		if (take < of && (unsigned __int128)(i + 1) * take / of ==
				     (unsigned __int128)i * take / of)
			continue;
		sto_rec_emb(s, &h, e, vecs + n * d);
		labels[n++] = h.label;
		if (n == REBUILD_CHUNK) {
			rc = fn(s, user, labels, vecs, n, err);
			n = 0;
		}
	}
	if (!rc && r != 0 && r != MDB_NOTFOUND)
		rc = sto_mdb_err(err, r, "reading records");
	if (!rc && n)
		rc = fn(s, user, labels, vecs, n, err);
out:
	if (c)
		mdb_cursor_close(c);
	free(vecs);
	free(labels);
	return rc;
}

/* A training sample, gathered chunk by chunk. */
typedef struct sample {
	float *x;
	size_t n, cap;
} sample;

static int
sample_chunk(store *s, void *user, const int64_t *labels, const float *vecs,
	     size_t n, cdx_error *err)
{
	sample *sm = user;
	size_t d = (size_t)s->dim;
	(void)labels;
	(void)err;
	if (n > sm->cap - sm->n)
		n = sm->cap - sm->n;
	memcpy(sm->x + sm->n * d, vecs, n * d * sizeof(float));
	sm->n += n;
	return 0;
}

static int
add_chunk(store *s, void *user, const int64_t *labels, const float *vecs,
	  size_t n, cdx_error *err)
{
	(void)s;
	int r = faiss_Index_add_with_ids(user, (idx_t)n, vecs, labels);
	return r ? sto_faiss_err(err, r, "building index") : 0;
}

static int
new_index(store *s, const char *kind, FaissIndex **out, cdx_error *err)
{
	char desc[160];
	/* IVF kinds keep labels in their lists (an IDMap over IVF aborts
	 * FAISS on remove); everything else gets an IDMap2. */
	if (strncmp(kind, "IVF", 3) == 0)
		snprintf(desc, sizeof(desc), "%s", kind);
	else
		snprintf(desc, sizeof(desc), "IDMap2,%s", kind);
	int rc = faiss_index_factory(out, s->dim, desc, METRIC_INNER_PRODUCT);
	if (rc)
		return sto_faiss_err(err, rc, desc);
	return 0;
}

/* ---- lists on disk ---- */

static uint64_t
base_checksum(const base_file_hdr *h)
{
	base_file_hdr c = *h;
	c.checksum = 0;
	return XXH64(&c, sizeof(c), 0);
}

/* Writes index.base: the lists of parts[0..n) merged (the entries that
 * keep(s, label) accepts, or all), then `trained` pointing at them.
 * *hash: the new file's header checksum. */
static int
base_write(store *s, const FaissIndex *trained, FaissIndex *const *parts,
	   int n, int (*keep)(void *, int64_t), uint64_t *hash,
	   cdx_error *err)
{
	char tmp[4200], dst[4200];
	base_file_hdr h;
	uint64_t meta_off = 0;
	int fd, rc, r = 0, e = 0;
	base_path(s, tmp, sizeof(tmp), ".tmp");
	base_path(s, dst, sizeof(dst), "");
	if ((rc = file_create(tmp, &fd, err)))
		return rc;
	memset(&h, 0, sizeof(h));
	int fd2 = dup(fd);
	FILE *f = fd2 >= 0 ? fdopen(fd2, "w") : NULL;
	if (!f || fwrite(&h, sizeof(h), 1, f) != 1)
		e = errno ? errno : EIO;
	else
		r = cdx_faiss_write_ondisk(trained,
					   (const FaissIndex *const *)parts, n,
					   keep, s, f, sizeof(h), &meta_off,
					   &h.ntotal);
	off_t end = f && !e && !r ? ftello(f) : 0;
	if (f ? fclose(f) != 0 : fd2 >= 0 && close(fd2) != 0)
		e = e ? e : errno;
	if (!e && !r) {
		memcpy(h.magic, BASE_MAGIC, 8);
		h.version = BASE_VERSION;
		h.dim = (uint32_t)s->dim;
		h.data_off = sizeof(h);
		h.data_len = meta_off - sizeof(h);
		h.meta_len = (uint64_t)end - meta_off;
		snprintf(h.model_id, sizeof(h.model_id), "%s", s->model_id);
		if (hash_range(fd, h.data_off, h.data_len, &h.data_hash) ||
		    hash_range(fd, meta_off, h.meta_len, &h.meta_hash))
			e = errno;
		h.checksum = base_checksum(&h);
		if (!e && pwrite(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
			e = errno ? errno : EIO;
	}
	if (e || r) {
		close(fd);
		unlink(tmp);
		if (r)
			return sto_faiss_err(err, r, "writing index.base");
		return cdx_error_set(err, cdx_from_errno(e),
				     "cannot write %s: %s", tmp, strerror(e));
	}
	*hash = h.checksum;
	return file_commit(s, fd, tmp, dst, err);
}

/* Opens index.base and checks its header: fd and *h, or -1 and *why. */
static int
base_open(store *s, base_file_hdr *h, uint64_t *size, char *why, size_t wcap)
{
	char path[4200];
	struct stat st;
	base_path(s, path, sizeof(path), "");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, wcap, "no index.base (%s)", strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 ||
	    pread(fd, h, sizeof(*h), 0) != (ssize_t)sizeof(*h) ||
	    memcmp(h->magic, BASE_MAGIC, 8) != 0 ||
	    h->version != BASE_VERSION || base_checksum(h) != h->checksum) {
		snprintf(why, wcap, "index.base has a bad header");
		goto fail;
	}
	if (h->dim != (uint32_t)s->dim ||
	    strncmp(h->model_id, s->model_id, sizeof(h->model_id)) != 0) {
		snprintf(why, wcap, "index.base is of another model");
		goto fail;
	}
	if (h->data_off != sizeof(*h) || h->data_len > (uint64_t)st.st_size ||
	    h->meta_len > (uint64_t)st.st_size ||
	    h->data_off + h->data_len + h->meta_len != (uint64_t)st.st_size) {
		snprintf(why, wcap, "index.base is truncated");
		goto fail;
	}
	*size = (uint64_t)st.st_size;
	return fd;
fail:
	close(fd);
	return -1;
}

/* Maps index.base, which must be the one with header checksum want. */
static int
base_load(store *s, uint64_t want, FaissIndex **out, char *why, size_t wcap)
{
	base_file_hdr h;
	uint64_t size;
	char path[4200];
	int fd = base_open(s, &h, &size, why, wcap);
	if (fd < 0)
		return -1;
	int ok = -1;
	char *meta = NULL;
	if (h.checksum != want) {
		snprintf(why, wcap, "index.base is not the one index.faiss "
				    "extends");
		goto out;
	}
	meta = malloc(h.meta_len ? h.meta_len : 1);
	if (!meta || pread_all(fd, meta, h.meta_len, h.data_off + h.data_len) ||
	    XXH64(meta, h.meta_len, 0) != h.meta_hash) {
		snprintf(why, wcap, "index.base: %s",
			 meta ? "cannot read its index" : "out of memory");
		goto out;
	}
	FILE *mf = fmemopen(meta, h.meta_len, "rb");
	if (!mf) {
		snprintf(why, wcap, "fmemopen failed");
		goto out;
	}
	base_path(s, path, sizeof(path), "");
	int r = cdx_faiss_read_ondisk(mf, path, size, out);
	fclose(mf);
	if (r) {
		snprintf(why, wcap, "FAISS cannot read index.base: %s",
			 faiss_get_last_error());
		goto out;
	}
	if ((uint64_t)faiss_Index_ntotal(*out) != h.ntotal) {
		faiss_Index_free(*out);
		snprintf(why, wcap, "index.base holds another count");
		goto out;
	}
	ok = 0;
out:
	free(meta);
	close(fd);
	return ok;
}

/* store_verify's part: the lists' bytes still hash as written. */
static int
base_verify(store *s, cdx_error *err)
{
	base_file_hdr h;
	uint64_t size, hash;
	char why[300];
	int fd = base_open(s, &h, &size, why, sizeof(why));
	if (fd < 0)
		return cdx_error_set(err, CDX_ECORRUPT, "%s", why);
	int rc = 0;
	if (h.checksum != s->base_hash)
		rc = cdx_error_set(err, CDX_ECORRUPT,
				   "index.base changed under the store");
	else if (hash_range(fd, h.data_off, h.data_len, &hash))
		rc = cdx_error_set(err, cdx_from_errno(errno),
				   "reading index.base: %s", strerror(errno));
	else if (hash != h.data_hash)
		rc = cdx_error_set(err, CDX_ECORRUPT,
				   "index.base: list data checksum mismatch");
	close(fd);
	return rc;
}

/* Maps the index.base just written (header checksum hash) under delta,
 * or under an empty delta (delta NULL): *out, which owns delta. */
static int
base_serve(store *s, uint64_t hash, FaissIndex *delta, FaissIndex **out,
	   cdx_error *err)
{
	FaissIndex *base, *empty = NULL;
	char why[400];
	if (base_load(s, hash, &base, why, sizeof(why)))
		return cdx_error_set(err, CDX_EINDEX,
				     "reading back index.base: %s", why);
	int r = delta ? 0 : cdx_faiss_empty_like(base, &empty);
	if (!r)
		r = cdx_faiss_overlay_new(base, delta ? delta : empty, out);
	if (r) {
		faiss_Index_free(base);
		if (empty)
			faiss_Index_free(empty);
		return sto_faiss_err(err, r, "serving index.base");
	}
	return 0;
}

/* Saves index.faiss over a new index.base at once: a crash before the
 * next save must not cost a rebuild. */
static void
base_adopted(store *s, uint64_t hash)
{
	cdx_error e;
	s->base_hash = hash;
	s->index_seq = s->seq;
	if (idx_save(s, &e) == 0)
		__atomic_store_n(&s->saved_seq, s->seq, __ATOMIC_RELAXED);
	else {
		__atomic_store_n(&s->saved_seq, UINT64_MAX, __ATOMIC_RELAXED);
		cdx_log(CDX_LOG_WARN, "store %s: %s", s->dir, e.msg);
	}
}

static int
keep_live(void *user, int64_t label)
{
	return live_find(&((store *)user)->live, label) >= 0;
}

/* Folds the delta into a new index.base, dropping the dead: one pass
 * over the lists, no training. */
static int
compact_ondisk(store *s, cdx_error *err)
{
	FaissIndex *parts[2], *ov;
	uint64_t hash;
	char kind[128];
	cdx_faiss_overlay_parts(s->index, &parts[0], &parts[1]);
	int rc = base_write(s, parts[0], parts, 2, keep_live, &hash, err);
	if (!rc)
		rc = base_serve(s, hash, NULL, &ov, err);
	if (rc)
		return rc;
	snprintf(kind, sizeof(kind), "%s", s->kind);
	index_set(s, ov, kind);
	base_adopted(s, hash);
	return 0;
}

/* The parts of an on-disk build: clones of the trained index filled in
 * turn; a full one is written out and mapped back (its file unlinked at
 * once), so that RAM holds one part's codes at a time. */
typedef struct parts {
	const FaissIndex *trained;
	FaissIndex *cur;
	FaissIndex **done;
	int n, cap;
} parts;

static int
parts_push(parts *p, FaissIndex *idx, cdx_error *err)
{
	if (p->n == p->cap) {
		int cap = p->cap ? 2 * p->cap : 8;
		FaissIndex **d = realloc(p->done, (size_t)cap * sizeof(*d));
		if (!d) {
			faiss_Index_free(idx);
			return cdx_error_set(err, CDX_ENOMEM, "building index");
		}
		p->done = d;
		p->cap = cap;
	}
	p->done[p->n++] = idx;
	return 0;
}

static int
parts_spill(store *s, parts *p, cdx_error *err)
{
	char tmp[4200];
	FaissIndex *m = NULL;
	snprintf(tmp, sizeof(tmp), "%s/index.part.tmp", s->dir);
	FILE *f = fopen(tmp, "w+e");
	if (!f)
		return cdx_error_set(err, cdx_from_errno(errno),
				     "cannot create %s: %s", tmp,
				     strerror(errno));
	unlink(tmp);
	int r = faiss_write_index(p->cur, f);
	if (!r && (fflush(f) != 0 || fseek(f, 0, SEEK_SET) != 0))
		r = -4;
	if (!r)
		r = cdx_faiss_read_mmap(f, &m);
	fclose(f);
	if (r)
		return sto_faiss_err(err, r, "spilling an index part");
	faiss_Index_free(p->cur);
	p->cur = NULL;
	return parts_push(p, m, err);
}

static int
part_chunk(store *s, void *user, const int64_t *labels, const float *vecs,
	   size_t n, cdx_error *err)
{
	parts *p = user;
	int r;
	if (!p->cur && (r = faiss_clone_index(p->trained, &p->cur)))
		return sto_faiss_err(err, r, "building index");
	if ((r = faiss_Index_add_with_ids(p->cur, (idx_t)n, vecs, labels)))
		return sto_faiss_err(err, r, "building index");
	if ((size_t)faiss_Index_ntotal(p->cur) >= s->build_part)
		return parts_spill(s, p, err);
	return 0;
}

/* Fills the trained, empty index's lists from the records into
 * index.base, maps it, and returns it under an empty delta (trained,
 * which *out then owns). */
static int
build_ondisk(store *s, MDB_txn *txn, FaissIndex *trained, FaissIndex **out,
	     uint64_t *hash, cdx_error *err)
{
	parts p = { trained, NULL, NULL, 0, 0 };
	int rc = scan_records(s, txn, 1, 1, 1, part_chunk, &p, err);
	if (!rc && p.cur) {
		rc = parts_push(&p, p.cur, err);
		p.cur = NULL;
	}
	if (!rc)
		rc = base_write(s, trained, p.done, p.n, NULL, hash, err);
	if (p.cur)
		faiss_Index_free(p.cur);
	for (int i = 0; i < p.n; i++)
		faiss_Index_free(p.done[i]);
	free(p.done);
	if (rc)
		return rc;
	return base_serve(s, *hash, trained, out, err);
}

int
idx_rebuild(store *s, MDB_txn *txn, cdx_error *err)
{
	MDB_stat st;
	size_t d = (size_t)s->dim;
	char kind[128];
	FaissIndex *idx;
	int rc = mdb_stat(txn, s->db_rec, &st);
	if (rc)
		return sto_mdb_err(err, rc, "reading records");
	size_t n = st.ms_entries;
	resolve_kind(s, n, kind, sizeof(kind));
	if ((rc = new_index(s, kind, &idx, err)))
		return rc;
	if (!faiss_Index_is_trained(idx)) {
		/* Train on an evenly spread sample of at most 64 per list
		 * (and 256 per code of a PQ sub-quantiser). */
		long nl = 256;
		sto_parse_kind_nlist(kind, &nl);
		size_t nt = (size_t)nl * 64;
		if (strstr(kind, "PQ") && nt < 65536)
			nt = 65536;
		if (nt > n)
			nt = n;
		sample sm = { NULL, 0, nt };
		sm.x = malloc((nt ? nt : 1) * d * sizeof(float));
		if (!sm.x) {
			rc = cdx_error_set(err, CDX_ENOMEM, "training index");
			goto out_free_index;
		}
		rc = scan_records(s, txn, nt, n, 0, sample_chunk, &sm, err);
		int r = rc ? 0 : faiss_Index_train(idx, (idx_t)sm.n, sm.x);
		free(sm.x);
		if (r)
			rc = sto_faiss_err(err, r, "training index");
		if (rc)
			goto out_free_index;
	}
	uint64_t base_hash = 0;
	if (ondisk_kind(kind)) {
		FaissIndex *ov;
		if ((rc = build_ondisk(s, txn, idx, &ov, &base_hash, err)))
			goto out_free_index;
		idx = ov;
	} else if ((rc = scan_records(s, txn, 1, 1, 1, add_chunk, idx, err)))
		goto out_free_index;
	index_set(s, idx, kind);
	s->base_hash = 0;
	s->index_seq = s->seq;
	__atomic_store_n(&s->saved_seq, UINT64_MAX, __ATOMIC_RELAXED);
	if (base_hash)
		base_adopted(s, base_hash);
	return 0;

out_free_index:
	faiss_Index_free(idx);
	return rc;
}

int
idx_apply(store *s, const int64_t *rm, size_t nrm, const int64_t *add,
	  const float *vecs, size_t nadd, cdx_error *err)
{
	int r;
	if (nrm && !s->tombstones) {
		FaissIDSelectorBatch *sel;
		if ((r = faiss_IDSelectorBatch_new(&sel, nrm, rm)))
			return sto_faiss_err(err, r, "removing from index");
		size_t removed;
		r = faiss_Index_remove_ids(s->index, (FaissIDSelector *)sel,
					   &removed);
		faiss_IDSelector_free((FaissIDSelector *)sel);
		if (r) {
			/* Kinds that cannot remove keep dead entries. */
			cdx_log(CDX_LOG_INFO,
				"store: index kind %s cannot remove (%s); "
				"using tombstones",
				s->kind, faiss_get_last_error());
			s->tombstones = 1;
		}
	}
	if (nadd && (r = faiss_Index_add_with_ids(s->index, (idx_t)nadd, vecs,
						  add)))
		return sto_faiss_err(err, r, "adding to index");
	int64_t nt = faiss_Index_ntotal(s->index);
	s->dead = nt > (int64_t)s->live.n ? (uint64_t)nt - s->live.n : 0;
	/* Rebuild when half the index is dead, or (lists on disk) when
	 * the in-memory delta has grown to half the base: then, while the
	 * training still suits the count, the lists are merged anew. */
	FaissIndex *base, *delta;
	int ov = cdx_faiss_overlay_parts(s->index, &base, &delta);
	int64_t nd = ov ? faiss_Index_ntotal(delta) : 0;
	/* A store that grew (or shrank) past what its kind suits, with the
	 * same hysteresis as at open, is rebuilt now rather than at the
	 * next open: a daemon indexing 10M images from empty would keep
	 * its exact index (20 GB) otherwise.  The rebuild holds the lock. */
	int suits = kind_acceptable(s, s->kind, s->live.n);
	if (!suits)
		cdx_log(CDX_LOG_INFO, "store %s: %zu images: rebuilding the "
			"index (%s asked, %s in use)", s->dir, s->live.n,
			s->kind_req, s->kind);
	if (!suits ||
	    (s->tombstones && s->dead > 1000 && s->dead > s->live.n / 2) ||
	    (nd > 65536 && nd > faiss_Index_ntotal(base) / 2)) {
		if (ov && suits)
			return compact_ondisk(s, err);
		MDB_txn *txn;
		int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
		if (rc)
			return sto_mdb_err(err, rc, "rebuilding index");
		rc = idx_rebuild(s, txn, err);
		mdb_txn_abort(txn);
		return rc;
	}
	return 0;
}

/* ---- persistence ---- */

int
idx_save(store *s, cdx_error *err)
{
	char *payload = NULL;
	size_t plen = 0;
	char tmp[4200], dst[4200];
	int rc, fd;
	FaissIndex *base, *delta = s->index;
	cdx_faiss_overlay_parts(s->index, &base, &delta);
	FILE *mf = open_memstream(&payload, &plen);
	if (!mf)
		return cdx_error_set(err, CDX_ENOMEM, "saving index");
	int r = faiss_write_index(delta, mf);
	if (fclose(mf) != 0 && !r) {
		free(payload);
		return cdx_error_set(err, CDX_ENOMEM, "saving index");
	}
	if (r) {
		free(payload);
		return sto_faiss_err(err, r, "serialising index");
	}
	idx_file_hdr h;
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, IDX_MAGIC, 8);
	h.version = IDX_VERSION;
	h.dim = (uint32_t)s->dim;
	h.seq = s->index_seq;
	h.ntotal = (uint64_t)faiss_Index_ntotal(s->index);
	h.live = s->live.n;
	h.payload_len = plen;
	snprintf(h.kind, sizeof(h.kind), "%s", s->kind);
	snprintf(h.model_id, sizeof(h.model_id), "%s", s->model_id);
	h.base_hash = s->base_hash;
	h.checksum = file_checksum(&h, payload, plen);

	idx_path(s, tmp, sizeof(tmp), ".tmp");
	idx_path(s, dst, sizeof(dst), "");
	if ((rc = file_create(tmp, &fd, err))) {
		free(payload);
		return rc;
	}
	if (write_all(fd, &h, sizeof(h)) || write_all(fd, payload, plen)) {
		int e = errno;
		close(fd);
		unlink(tmp);
		free(payload);
		return cdx_error_set(err, cdx_from_errno(e),
				     "cannot write %s: %s", tmp, strerror(e));
	}
	free(payload);
	return file_commit(s, fd, tmp, dst, err);
}

/* Loads index.faiss: 0 and *out, or why not (a message in *why). */
static int
idx_load(store *s, FaissIndex **out, idx_file_hdr *h, char *why, size_t wcap)
{
	char path[4200];
	idx_path(s, path, sizeof(path), "");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, wcap, "no index file (%s)", strerror(errno));
		return -1;
	}
	struct stat st;
	char *payload = NULL;
	int ok = -1;
	if (fstat(fd, &st) != 0 || (size_t)st.st_size < sizeof(*h)) {
		snprintf(why, wcap, "index file is truncated");
		goto out_close;
	}
	if (pread(fd, h, sizeof(*h), 0) != (ssize_t)sizeof(*h) ||
	    memcmp(h->magic, IDX_MAGIC, 8) != 0 || h->version != IDX_VERSION) {
		snprintf(why, wcap, "index file has a bad header");
		goto out_close;
	}
	if (h->payload_len != (uint64_t)st.st_size - sizeof(*h)) {
		snprintf(why, wcap, "index file is truncated (%lld of %llu bytes)",
			 (long long)st.st_size,
			 (unsigned long long)(h->payload_len + sizeof(*h)));
		goto out_close;
	}
	if (h->dim != (uint32_t)s->dim ||
	    strncmp(h->model_id, s->model_id, sizeof(h->model_id)) != 0) {
		snprintf(why, wcap, "index file is of another model");
		goto out_close;
	}
	h->kind[sizeof(h->kind) - 1] = '\0';
	payload = malloc(h->payload_len ? h->payload_len : 1);
	if (!payload) {
		snprintf(why, wcap, "out of memory reading the index file");
		goto out_close;
	}
	if (pread_all(fd, payload, h->payload_len, sizeof(*h))) {
		snprintf(why, wcap, "cannot read the index file");
		goto out_free;
	}
	if (file_checksum(h, payload, h->payload_len) != h->checksum) {
		snprintf(why, wcap, "index file checksum mismatch");
		goto out_free;
	}
	FILE *mf = fmemopen(payload, h->payload_len, "rb");
	if (!mf) {
		snprintf(why, wcap, "fmemopen failed");
		goto out_free;
	}
	FaissIndex *idx = NULL;
	int r = faiss_read_index(mf, 0, &idx);
	fclose(mf);
	if (r) {
		snprintf(why, wcap, "FAISS cannot read the index file: %s",
			 faiss_get_last_error());
		goto out_free;
	}
	if (faiss_Index_d(idx) != s->dim ||
	    (!faiss_IndexIDMap_cast(idx) && !faiss_IndexIVF_cast(idx)) ||
	    (h->base_hash && !ondisk_kind(h->kind))) {
		faiss_Index_free(idx);
		snprintf(why, wcap, "index file holds another kind of index");
		goto out_free;
	}
	if (h->base_hash) {
		/* index.faiss holds the delta over index.base's lists */
		FaissIndex *base, *ov;
		if (base_load(s, h->base_hash, &base, why, wcap)) {
			faiss_Index_free(idx);
			goto out_free;
		}
		if (cdx_faiss_overlay_new(base, idx, &ov)) {
			snprintf(why, wcap, "index.base: %s",
				 faiss_get_last_error());
			faiss_Index_free(base);
			faiss_Index_free(idx);
			goto out_free;
		}
		idx = ov;
	}
	*out = idx;
	ok = 0;
out_free:
	free(payload);
out_close:
	close(fd);
	return ok;
}

/* Fills the live map from the attr table. */
static int
live_load(store *s, MDB_txn *txn, cdx_error *err)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, s->db_attr, &c);
	if (rc)
		return sto_mdb_err(err, rc, "reading attributes");
	live_clear(&s->live);
	MDB_val k, v;
	int r = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	while (r == 0) {
		rec_attr a;
		uint64_t id;
		if (v.mv_size != sizeof(a) || k.mv_size != sizeof(id)) {
			rc = cdx_error_set(err, CDX_ECORRUPT, "bad attr entry");
			break;
		}
		memcpy(&a, v.mv_data, sizeof(a));
		memcpy(&id, k.mv_data, sizeof(id));
		if ((rc = live_add(&s->live, a.label, id, a.ctime, a.mtime_s))) {
			rc = cdx_error_set(err, rc, "reading attributes");
			break;
		}
		r = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(c);
	if (!rc && r != MDB_NOTFOUND)
		rc = sto_mdb_err(err, r, "reading attributes");
	return rc;
}

/* Applies log entries after the loaded index's seq.  Returns 0, a CDX
 * error, or 1 when the log does not reach back (rebuild). */
static int
catch_up(store *s, MDB_txn *txn, uint64_t from, cdx_error *err)
{
	if (from == s->seq)
		return 0;
	if (from > s->seq)
		return 1;
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, s->db_log, &c);
	if (rc)
		return sto_mdb_err(err, rc, "reading change log");
	uint64_t key = from + 1;
	MDB_val k = { sizeof(key), &key }, v;
	int r = mdb_cursor_get(c, &k, &v, MDB_SET_KEY);
	if (r) {
		mdb_cursor_close(c);
		return r == MDB_NOTFOUND ? 1 : sto_mdb_err(err, r, "change log");
	}
	size_t d = (size_t)s->dim, cap = 1024, nrm = 0, nadd = 0;
	int64_t *rm = malloc(cap * sizeof(*rm)), *add = NULL;
	float *vecs = NULL;
	size_t acap = 0;
	if (!rm) {
		mdb_cursor_close(c);
		return cdx_error_set(err, CDX_ENOMEM, "catching up");
	}
	uint64_t expect = from + 1;
	while (r == 0) {
		uint64_t seq;
		log_entry e;
		if (k.mv_size != sizeof(seq) || v.mv_size != sizeof(e)) {
			rc = 1;
			break;
		}
		memcpy(&seq, k.mv_data, sizeof(seq));
		memcpy(&e, v.mv_data, sizeof(e));
		if (seq != expect) {
			rc = 1;
			break;
		}
		expect++;
		s->caught_up++;
		if (nrm == cap) {
			cap *= 2;
			int64_t *p = realloc(rm, cap * sizeof(*rm));
			if (!p) {
				rc = cdx_error_set(err, CDX_ENOMEM, "catching up");
				break;
			}
			rm = p;
		}
		if (e.old_label >= 0)
			rm[nrm++] = e.old_label;
		int64_t label = (int64_t)seq;
		if (e.op == LOG_PUT && live_find(&s->live, label) >= 0) {
			MDB_val rk = { sizeof(e.id), &e.id }, rv;
			rec_hdr h;
			const unsigned char *emb;
			if ((r = mdb_get(txn, s->db_rec, &rk, &rv))) {
				rc = 1;
				break;
			}
			if (sto_rec_parse(s, &rv, &h, NULL, &emb, NULL) ||
			    h.label != label) {
				rc = 1;
				break;
			}
			if (nadd == acap) {
				acap = acap ? acap * 2 : 1024;
				int64_t *pa = realloc(add, acap * sizeof(*add));
				float *pv = pa ? realloc(vecs, acap * d * 4) : NULL;
				if (pa)
					add = pa;
				if (!pv) {
					rc = cdx_error_set(err, CDX_ENOMEM,
							   "catching up");
					break;
				}
				vecs = pv;
			}
			add[nadd] = label;
			sto_rec_emb(s, &h, emb, vecs + nadd * d);
			nadd++;
		}
		r = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(c);
	if (!rc && r != MDB_NOTFOUND)
		rc = sto_mdb_err(err, r, "change log");
	if (!rc && expect != s->seq + 1)
		rc = 1;
	if (!rc)
		rc = idx_apply(s, rm, nrm, add, vecs, nadd, err);
	free(rm);
	free(add);
	free(vecs);
	return rc;
}

/* Counts the labels in an IVF index's lists (*n) and those live (*seen). */
static int
ivf_labels(store *s, FaissIndexIVF *ivf, size_t *n, size_t *seen)
{
	size_t nl = faiss_IndexIVF_nlist(ivf), cap = 0;
	idx_t *ids = NULL;
	for (size_t l = 0; l < nl; l++) {
		size_t ls = faiss_IndexIVF_get_list_size(ivf, l);
		if (ls > cap) {
			idx_t *p = realloc(ids, ls * sizeof(*ids));
			if (!p) {
				free(ids);
				return -1;
			}
			ids = p;
			cap = ls;
		}
		faiss_IndexIVF_invlists_get_ids(ivf, l, ids);
		for (size_t i = 0; i < ls; i++)
			if (live_find(&s->live, ids[i]) >= 0)
				(*seen)++;
		*n += ls;
	}
	free(ids);
	return 0;
}

/* Checks the loaded index's labels against the live map. */
static int
labels_agree(store *s, char *why, size_t wcap)
{
	FaissIndex *parts[2] = { s->index, NULL };
	FaissIndexIDMap *m = faiss_IndexIDMap_cast(s->index);
	size_t n = 0, live_seen = 0;
	cdx_faiss_overlay_parts(s->index, &parts[0], &parts[1]);
	if (m) {
		idx_t *ids;
		faiss_IndexIDMap_id_map(m, &ids, &n);
		for (size_t i = 0; i < n; i++)
			if (live_find(&s->live, ids[i]) >= 0)
				live_seen++;
	} else {
		for (int i = 0; i < 2 && parts[i]; i++) {
			FaissIndexIVF *ivf = faiss_IndexIVF_cast(parts[i]);
			if (!ivf) {
				snprintf(why, wcap, "index is not an id map");
				return 0;
			}
			if (ivf_labels(s, ivf, &n, &live_seen)) {
				snprintf(why, wcap, "out of memory");
				return 0;
			}
		}
	}
	if (live_seen != s->live.n || (!s->tombstones && n != s->live.n)) {
		snprintf(why, wcap,
			 "index holds %zu vectors, %zu of %zu images", n,
			 live_seen, s->live.n);
		return 0;
	}
	return 1;
}

int
idx_open(store *s, MDB_txn *txn, cdx_error *err)
{
	FaissIndex *idx = NULL;
	idx_file_hdr h;
	char why[400] = "";
	int rc = live_load(s, txn, err);
	if (rc)
		return rc;
	if (idx_load(s, &idx, &h, why, sizeof(why)) == 0) {
		if (!kind_acceptable(s, h.kind, s->live.n)) {
			snprintf(why, sizeof(why),
				 "index file is of kind %s, not the one "
				 "requested (%s)",
				 h.kind, s->kind_req);
			faiss_Index_free(idx);
		} else {
			index_set(s, idx, h.kind);
			s->base_hash = h.base_hash;
			rc = catch_up(s, txn, h.seq, err);
			if (rc < 0)
				return rc;
			if (rc == 1)
				snprintf(why, sizeof(why),
					 "index file (seq %llu) is older than "
					 "the change log",
					 (unsigned long long)h.seq);
			else if (labels_agree(s, why, sizeof(why))) {
				s->index_seq = s->seq;
				s->saved_seq = h.seq == s->seq ? h.seq : UINT64_MAX;
				return 0;
			}
		}
	}
	cdx_log(CDX_LOG_INFO, "store %s: rebuilding the index: %s", s->dir,
		why);
	s->rebuilt_on_open = 1;
	return idx_rebuild(s, txn, err);
}

void
idx_stats(store *s, store_stats *st)
{
	FaissIndex *base, *delta;
	st->index_ntotal = s->index ? (uint64_t)faiss_Index_ntotal(s->index) : 0;
	st->index_dead = s->dead;
	snprintf(st->index_kind, sizeof(st->index_kind), "%s", s->kind);
	if (s->index && cdx_faiss_overlay_parts(s->index, &base, &delta)) {
		char path[4200];
		struct stat sb;
		st->index_delta = (uint64_t)faiss_Index_ntotal(delta);
		base_path(s, path, sizeof(path), "");
		if (stat(path, &sb) == 0)
			st->index_base_bytes = (uint64_t)sb.st_size;
	}
}

/* ---- public: save, rebuild, verify ---- */

static int
trim_log(store *s, uint64_t upto)
{
	MDB_txn *txn;
	MDB_cursor *c;
	int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (rc)
		return rc;
	if ((rc = mdb_cursor_open(txn, s->db_log, &c))) {
		mdb_txn_abort(txn);
		return rc;
	}
	MDB_val k, v;
	int r = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	while (r == 0) {
		uint64_t seq;
		memcpy(&seq, k.mv_data, sizeof(seq));
		if (seq > upto)
			break;
		if ((r = mdb_cursor_del(c, 0)))
			break;
		r = mdb_cursor_get(c, &k, &v, MDB_GET_CURRENT);
		if (r == EINVAL || r == MDB_NOTFOUND)
			r = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	}
	mdb_cursor_close(c);
	if (r && r != MDB_NOTFOUND) {
		mdb_txn_abort(txn);
		return r;
	}
	return mdb_txn_commit(txn);
}

int
store_save(store *s, cdx_error *err)
{
	pthread_mutex_lock(&s->save_lock);
	pthread_rwlock_rdlock(&s->lock);
	uint64_t seq = s->index_seq;
	if (seq == __atomic_load_n(&s->saved_seq, __ATOMIC_RELAXED)) {
		/* index.faiss already holds this state. */
		pthread_rwlock_unlock(&s->lock);
		pthread_mutex_unlock(&s->save_lock);
		return 0;
	}
	int rc = idx_save(s, err);
	if (!rc)
		__atomic_store_n(&s->saved_seq, seq, __ATOMIC_RELAXED);
	pthread_rwlock_unlock(&s->lock);
	if (!rc) {
		/* A write transaction: write_lock, without the lock (a long
		 * writer holds write_lock and waits for the lock to commit). */
		pthread_mutex_lock(&s->write_lock);
		int r = trim_log(s, seq);
		pthread_mutex_unlock(&s->write_lock);
		if (r)
			cdx_log(CDX_LOG_WARN, "store %s: change log not trimmed: %s",
				s->dir, mdb_strerror(r));
	}
	pthread_mutex_unlock(&s->save_lock);
	return rc;
}

int
store_index_rebuild(store *s, cdx_error *err)
{
	MDB_txn *txn;
	pthread_rwlock_wrlock(&s->lock);
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc) {
		rc = sto_mdb_err(err, rc, "store_index_rebuild");
	} else {
		rc = idx_rebuild(s, txn, err);
		mdb_txn_abort(txn);
	}
	pthread_rwlock_unlock(&s->lock);
	return rc;
}

int
store_verify(store *s, cdx_error *err)
{
	MDB_txn *txn;
	MDB_cursor *c;
	size_t d = (size_t)s->dim, n = 0;
	float *a = malloc(d * sizeof(float)), *b = malloc(d * sizeof(float));
	char why[256];
	int rc;
	if (!a || !b) {
		rc = cdx_error_set(err, CDX_ENOMEM, "store_verify");
		goto out_free;
	}
	pthread_rwlock_rdlock(&s->lock);
	if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn))) {
		rc = sto_mdb_err(err, rc, "store_verify");
		goto out_unlock;
	}
	if ((rc = mdb_cursor_open(txn, s->db_rec, &c))) {
		rc = sto_mdb_err(err, rc, "store_verify");
		goto out_abort;
	}
	int check_vec = strstr(s->kind, "IVF") == NULL;
	MDB_val k, v;
	int r = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	while (r == 0) {
		rec_hdr h;
		const unsigned char *e;
		if ((rc = sto_rec_parse(s, &v, &h, NULL, &e, err)))
			break;
		long slot = live_find(&s->live, h.label);
		if (slot < 0 || s->live.id[slot] != h.id) {
			rc = cdx_error_set(err, CDX_ECORRUPT,
					   "image %llu (label %lld) is not live",
					   (unsigned long long)h.id,
					   (long long)h.label);
			break;
		}
		if (check_vec) {
			sto_rec_emb(s, &h, e, a);
			int fr = faiss_Index_reconstruct(s->index, h.label, b);
			if (fr) {
				rc = sto_faiss_err(err, fr, "store_verify");
				break;
			}
			if (memcmp(a, b, d * sizeof(float)) != 0) {
				rc = cdx_error_set(err, CDX_ECORRUPT,
						   "vector of image %llu differs",
						   (unsigned long long)h.id);
				break;
			}
		}
		n++;
		r = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(c);
	if (!rc && r != MDB_NOTFOUND)
		rc = sto_mdb_err(err, r, "store_verify");
	if (!rc && (n != s->live.n || n != s->count))
		rc = cdx_error_set(err, CDX_ECORRUPT,
				   "%zu records, %zu live labels, count %llu", n,
				   s->live.n, (unsigned long long)s->count);
	if (!rc && !labels_agree(s, why, sizeof(why)))
		rc = cdx_error_set(err, CDX_ECORRUPT, "%s", why);
	if (!rc && s->base_hash)
		rc = base_verify(s, err);
	if (!rc)
		rc = tag_verify(s, txn, err);
out_abort:
	mdb_txn_abort(txn);
out_unlock:
	pthread_rwlock_unlock(&s->lock);
out_free:
	free(a);
	free(b);
	return rc;
}

/* ---- search ---- */

typedef struct cand {
	float score;
	uint64_t id;
} cand;

/* The ranking order, everywhere results are ranked: score, best first,
 * and ties by id, smallest first, so that pages of one query (offset + k)
 * agree whatever k is. */
static int
cand_cmp_desc(const void *a, const void *b)
{
	const cand *x = a, *y = b;
	if (x->score != y->score)
		return x->score < y->score ? 1 : -1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* Min-heap of the best k candidates by cand_cmp_desc (root = worst kept). */
typedef struct topk {
	cand *h;
	size_t n, k;
} topk;

/* Whether a ranks below b. */
static int
cand_worse(const cand *a, const cand *b)
{
	return cand_cmp_desc(a, b) > 0;
}

static void
topk_push(topk *t, float score, uint64_t id)
{
	cand c = { score, id };
	if (t->n < t->k) {
		size_t i = t->n++;
		while (i > 0) {
			size_t p = (i - 1) / 2;
			if (!cand_worse(&c, &t->h[p]))
				break;
			t->h[i] = t->h[p];
			i = p;
		}
		t->h[i] = c;
		return;
	}
	if (t->n == 0 || !cand_worse(&t->h[0], &c))
		return;
	size_t i = 0;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		const cand *mc = &c;
		if (l < t->n && cand_worse(&t->h[l], mc)) {
			m = l;
			mc = &t->h[l];
		}
		if (r < t->n && cand_worse(&t->h[r], mc))
			m = r;
		if (m == i)
			break;
		t->h[i] = t->h[m];
		i = m;
	}
	t->h[i] = c;
}

typedef struct search_ctx {
	store *s;
	MDB_txn *txn;
	const store_filter *f;
	size_t plen;
	int has_time;
	tag_filter tags;        /* the filter's tags/not_tags, resolved */
	const float *q;
	float *buf; /* dim floats */
	int exclusive; /* the store's lock is held exclusively */
	int with_vec; /* the hits carry their embeddings */
} search_ctx;

static int
time_match(const search_ctx *c, long slot)
{
	if (!c->has_time)
		return 1;
	int64_t t = c->f->time_field == STORE_TIME_CAPTURE
			    ? c->s->live.ctime[slot]
			    : c->s->live.mtime_s[slot];
	if (c->f->time_field == STORE_TIME_CAPTURE && t == STORE_TIME_UNKNOWN)
		return 0;
	return t >= c->f->time_min && t <= c->f->time_max;
}

int
store_path_has_prefix(const char *path, size_t len, const char *prefix)
{
	size_t plen = prefix ? strlen(prefix) : 0;
	return plen == 0 || (len >= plen && memcmp(path, prefix, plen) == 0);
}

/* Reads record id: 1 if it exists and its path matches, with its
 * embedding in c->buf when want_emb. */
static int
rec_match(search_ctx *c, uint64_t id, int want_emb, cdx_error *err, int *rc)
{
	MDB_val k = { sizeof(id), &id }, v;
	int r = mdb_get(c->txn, c->s->db_rec, &k, &v);
	*rc = 0;
	if (r == MDB_NOTFOUND)
		return 0;
	if (r) {
		*rc = sto_mdb_err(err, r, "search");
		return 0;
	}
	rec_hdr h;
	const char *path;
	const unsigned char *emb;
	if ((*rc = sto_rec_parse(c->s, &v, &h, &path, &emb, err)))
		return 0;
	if (c->plen && !store_path_has_prefix(path, h.path_len,
					      c->f->path_prefix))
		return 0;
	if (want_emb)
		sto_rec_emb(c->s, &h, emb, c->buf);
	return 1;
}

/* The query's dot product with the embedding rec_match read. */
static float
dot_buf(search_ctx *c)
{
	return cblas_sdot(c->s->dim, c->buf, 1, c->q, 1);
}

/* Where exact_filtered takes its candidates from. */
enum { FROM_LIVE, FROM_PREFIX, FROM_TAGS };

/* Scores image id if it is live and matches the time filter and the path
 * prefix (the tag filter is the caller's). */
static int
exact_one(search_ctx *c, topk *t, uint64_t id, cdx_error *err)
{
	MDB_val ak = { sizeof(id), &id }, av;
	rec_attr a;
	int rc = 0;
	if (mdb_get(c->txn, c->s->db_attr, &ak, &av) != 0 ||
	    av.mv_size != sizeof(a))
		return 0;
	memcpy(&a, av.mv_data, sizeof(a));
	long slot = live_find(&c->s->live, a.label);
	if (slot >= 0 && time_match(c, slot) && rec_match(c, id, 1, err, &rc))
		topk_push(t, dot_buf(c), id);
	return rc;
}

/* Exact scoring of the images matching the filter.  Candidates come from
 * the path table when a prefix is given and few match, from the tag
 * index when tags are given and few have them, else from the live map. */
static int
exact_filtered(search_ctx *c, topk *t, int from, cdx_error *err)
{
	int rc = 0;
	const live_map *lm = &c->s->live;
	if (from == FROM_TAGS) {
		for (size_t i = 0; i < c->tags.n && !rc; i++)
			rc = exact_one(c, t, c->tags.ids[i], err);
		return rc;
	}
	if (from == FROM_PREFIX) {
		MDB_cursor *cur;
		int r = mdb_cursor_open(c->txn, c->s->db_path, &cur);
		if (r)
			return sto_mdb_err(err, r, "search");
		MDB_val k = { c->plen, (void *)c->f->path_prefix }, v;
		r = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		while (r == 0 && store_path_has_prefix(k.mv_data, k.mv_size,
						       c->f->path_prefix)) {
			uint64_t id;
			memcpy(&id, v.mv_data, sizeof(id));
			if (tag_filter_match(&c->tags, id) &&
			    (rc = exact_one(c, t, id, err)))
				break;
			r = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
		}
		mdb_cursor_close(cur);
		if (!rc && r && r != MDB_NOTFOUND)
			rc = sto_mdb_err(err, r, "search");
		return rc;
	}
	for (size_t i = 0; i < lm->n && !rc; i++) {
		if (!time_match(c, (long)i) ||
		    !tag_filter_match(&c->tags, lm->id[i]))
			continue;
		if (rec_match(c, lm->id[i], 1, err, &rc))
			topk_push(t, dot_buf(c), lm->id[i]);
	}
	return rc;
}

/* Counts path entries with the prefix, stopping above limit. */
static size_t
count_prefix(search_ctx *c, size_t limit)
{
	MDB_cursor *cur;
	size_t n = 0;
	if (mdb_cursor_open(c->txn, c->s->db_path, &cur))
		return limit + 1;
	MDB_val k = { c->plen, (void *)c->f->path_prefix }, v;
	int r = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	while (r == 0 && n <= limit &&
	       store_path_has_prefix(k.mv_data, k.mv_size, c->f->path_prefix)) {
		n++;
		r = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	return n;
}

/* An HNSW graph explores only efSearch candidates and an IVF index only
 * nprobe lists, so a deeper search raises them for the call (see
 * index_search).  That changes the index, so it needs the exclusive lock;
 * without it the caller gets NEED_EXCLUSIVE and retries with it. */
#define NEED_EXCLUSIVE 1

static void
set_param(store *s, const char *name, double v)
{
	FaissParameterSpace *ps;
	if (faiss_ParameterSpace_new(&ps) != 0)
		return;
	faiss_ParameterSpace_set_index_parameter(ps, s->index, name, v);
	faiss_ParameterSpace_free(ps);
}

/* The candidates a PQ kind re-scores for k results: rerank_factor x k,
 * at most STORE_RERANK_MAX (or 2k). */
static size_t
rerank_want(const store *s, size_t k)
{
	size_t want = (size_t)s->rerank_factor * k;
	if (want > STORE_RERANK_MAX)
		want = STORE_RERANK_MAX > 2 * k ? STORE_RERANK_MAX : 2 * k;
	return want > k ? want : k;
}

/* Searches kk results for a k-result request.  Deeper than usual (kk above
 * efSearch for HNSW; kk > 2k for IVF, i.e. a filtered over-fetch whose
 * matches lie beyond the usual lists) raises efSearch to kk, or nprobe by
 * sqrt(kk/k), for the call. */
static int
index_search(store *s, const float *q, size_t k, size_t kk, int exclusive,
	     float *dis, idx_t *lab, cdx_error *err)
{
	long nl = 0;
	int hnsw = strstr(s->kind, "HNSW") != NULL;
	int ivf = !hnsw && sto_parse_kind_nlist(s->kind, &nl) == 0;
	int deep = (hnsw && kk > (size_t)s->hnsw_ef_search) ||
		   (ivf && kk > 2 * (s->rerank ? rerank_want(s, k) : k));
	if (deep && !exclusive)
		return NEED_EXCLUSIVE;
	if (deep && hnsw)
		set_param(s, "efSearch", kk > INT32_MAX ? INT32_MAX : (double)kk);
	if (deep && ivf) {
		double np = (double)nprobe_of(s, nl);
		np *= ceil(sqrt((double)kk / (double)(k ? k : 1)));
		set_param(s, "nprobe", np > (double)nl ? (double)nl : np);
	}
	/* IVF-Flat: each probed list scored by OpenBLAS (faiss_ext.h) */
	int r = ivf ? cdx_faiss_ivf_flat_search(s->index, q, (int64_t)kk, dis,
						(int64_t *)lab) : 1;
	if (r == 1)
		r = faiss_Index_search(s->index, 1, q, (idx_t)kk, dis, lab);
	if (deep)
		set_search_params(s);
	if (r)
		return sto_faiss_err(err, r, "search");
	return 0;
}

/* The exact kind is scanned here rather than by FAISS: one sgemv through
 * OpenBLAS over the IndexFlat's contiguous vectors (all threads, AVX2
 * picked at run time) runs at memory bandwidth, while Debian FAISS's own
 * kernel is built for baseline x86-64 and its BLAS path allocates a
 * 16 MB block per call.  The scores are computed once per search; each
 * round of over-fetching selects the top kk of them. */
typedef struct flat_scan {
	const float *xb;
	const idx_t *labels;
	size_t n;
	float *scores;
} flat_scan;

/* 1 if the index is IDMap2 over IndexFlat (and fills f), else 0. */
static int
flat_scan_init(store *s, flat_scan *f)
{
	FaissIndexIDMap *m = faiss_IndexIDMap_cast(s->index);
	if (!m)
		return 0;
	FaissIndexFlat *fl = faiss_IndexFlat_cast(faiss_IndexIDMap_sub_index(m));
	if (!fl)
		return 0;
	float *xb;
	size_t nf, nl;
	idx_t *labels;
	faiss_IndexFlat_xb(fl, &xb, &nf);
	faiss_IndexIDMap_id_map(m, &labels, &nl);
	if (nf != nl * (size_t)s->dim)
		return 0;
	f->xb = xb;
	f->labels = labels;
	f->n = nl;
	f->scores = NULL;
	return 1;
}

static int
flat_scan_scores(store *s, flat_scan *f, const float *q)
{
	f->scores = malloc((f->n ? f->n : 1) * sizeof(float));
	if (!f->scores)
		return CDX_ENOMEM;
	/* sgemv takes int sizes: scan in slices below 2^31 elements. */
	size_t step = ((size_t)1 << 30) / (size_t)s->dim;
	for (size_t i = 0; i < f->n; i += step) {
		size_t m = f->n - i < step ? f->n - i : step;
		cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)m, s->dim, 1.0f,
			    f->xb + i * (size_t)s->dim, s->dim, q, 1, 0.0f,
			    f->scores + i, 1);
	}
	return 0;
}

/* The kk best scores, best first, as FAISS's search would return them. */
static void
flat_scan_select(const flat_scan *f, size_t kk, float *dis, idx_t *lab)
{
	topk t = { (cand *)NULL, 0, kk };
	cand *h = malloc(kk * sizeof(cand));
	size_t i;
	if (!h) { /* fall back to a plain partial selection */
		for (i = 0; i < kk; i++) {
			dis[i] = -INFINITY;
			lab[i] = -1;
		}
		return;
	}
	t.h = h;
	for (i = 0; i < f->n; i++)
		topk_push(&t, f->scores[i], (uint64_t)i);
	qsort(h, t.n, sizeof(cand), cand_cmp_desc);
	for (i = 0; i < kk; i++) {
		if (i < t.n) {
			dis[i] = h[i].score;
			lab[i] = f->labels[h[i].id];
		} else {
			dis[i] = -INFINITY;
			lab[i] = -1;
		}
	}
	free(h);
}

/* Searches the index for k' = kk, growing until k matches are found or the
 * whole index is covered.  *complete: whether the answer is final. */
static int
index_filtered_scan(search_ctx *c, topk *t, size_t k, size_t kk,
		    int *complete, flat_scan *fs, cdx_error *err)
{
	store *s = c->s;
	size_t nt = (size_t)faiss_Index_ntotal(s->index);
	int filtered = c->has_time || c->plen || c->tags.active;
	int rc = 0, grown = 0, extra = 0;
	*complete = 0;
	if (nt == 0) {
		*complete = 1;
		return 0;
	}
	if (fs && flat_scan_scores(s, fs, c->q))
		return cdx_error_set(err, CDX_ENOMEM, "search");
	if (s->rerank && kk < rerank_want(s, k))
		kk = rerank_want(s, k);
	for (;;) {
		if (kk > nt)
			kk = nt;
		if (kk < 1)
			kk = 1;
		float *dis = malloc(kk * sizeof(float));
		idx_t *lab = malloc(kk * sizeof(idx_t));
		if (!dis || !lab) {
			free(dis);
			free(lab);
			return cdx_error_set(err, CDX_ENOMEM, "search");
		}
		int r = 0;
		if (fs)
			flat_scan_select(fs, kk, dis, lab);
		else
			r = index_search(s, c->q, k, kk, c->exclusive, dis, lab,
					 err);
		if (r) {
			free(dis);
			free(lab);
			return r;
		}
		t->n = 0;
		size_t got = 0;
		int past = 0; /* a candidate ranked below the k kept was seen */
		for (size_t i = 0; i < kk && !rc; i++) {
			if (lab[i] < 0) {
				past = 1;
				break;
			}
			/* Past the k-th, only candidates tied with the worst
			 * kept can still enter (a smaller id wins a tie).
			 * Re-ranked scores are not in the index's order. */
			if (got >= k && !s->rerank && dis[i] < t->h[0].score) {
				past = 1;
				break;
			}
			long slot = live_find(&s->live, lab[i]);
			if (slot < 0 || !time_match(c, slot))
				continue;
			uint64_t id = s->live.id[slot];
			if (!tag_filter_match(&c->tags, id))
				continue;
			if (s->rerank) {        /* the exact score */
				if (!rec_match(c, id, 1, err, &rc))
					continue;
				topk_push(t, dot_buf(c), id);
			} else {
				if (c->plen && !rec_match(c, id, 0, err, &rc))
					continue;
				topk_push(t, dis[i], id);
			}
			got++;
		}
		/* Re-ranking looked at all kk candidates, as deep as it
		 * goes for these k. */
		past |= s->rerank;
		free(dis);
		free(lab);
		if (rc)
			return rc;
		if (got >= k && !past && kk < nt) {
			/* The tie at the k-th score may go on past kk. */
			kk *= 2;
			continue;
		}
		if (got >= k) {
			/* If the estimate fell short, look once more as deep:
			 * an approximate index's deep ranks miss some. */
			if (grown && !extra && kk < nt && strcmp(s->kind, "Flat")) {
				extra = 1;
				kk *= 2;
				continue;
			}
			*complete = 1;
			return 0;
		}
		if (kk >= nt) {
			/* Exact kinds have now seen everything. */
			*complete = strcmp(s->kind, "Flat") == 0 ||
				    (!filtered && !s->tombstones);
			return 0;
		}
		kk *= 2;
		grown = 1;
	}
}

static int
index_filtered(search_ctx *c, topk *t, size_t k, size_t kk, int *complete,
	       cdx_error *err)
{
	flat_scan fs;
	int flat = flat_scan_init(c->s, &fs);
	int rc = index_filtered_scan(c, t, k, kk, complete, flat ? &fs : NULL,
				     err);
	if (flat)
		free(fs.scores);
	return rc;
}

static int
build_results(search_ctx *c, cand *hits, size_t n, store_results **out,
	      cdx_error *err)
{
	size_t vec = c->with_vec ? (size_t)c->s->dim * sizeof(float) : 0;
	size_t total = sizeof(store_results) + n * (sizeof(store_hit) + vec);
	rec_hdr *hs = malloc((n ? n : 1) * sizeof(*hs));
	const char **paths = malloc((n ? n : 1) * sizeof(*paths));
	const unsigned char **embs = malloc((n ? n : 1) * sizeof(*embs));
	int rc = 0;
	if (!hs || !paths || !embs) {
		rc = cdx_error_set(err, CDX_ENOMEM, "search");
		goto out_free;
	}
	for (size_t i = 0; i < n; i++) {
		MDB_val k = { sizeof(hits[i].id), &hits[i].id }, v;
		int r = mdb_get(c->txn, c->s->db_rec, &k, &v);
		if (r) {
			rc = sto_mdb_err(err, r, "search: reading a hit");
			goto out_free;
		}
		if ((rc = sto_rec_parse(c->s, &v, &hs[i], &paths[i],
				        vec ? &embs[i] : NULL, err)))
			goto out_free;
		total += hs[i].path_len + 1;
	}
	store_results *res = malloc(total);
	if (!res) {
		rc = cdx_error_set(err, CDX_ENOMEM, "search");
		goto out_free;
	}
	res->n = n;
	res->hits = (store_hit *)(res + 1);
	float *e = (float *)(res->hits + n);
	char *p = (char *)(res->hits + n) + n * vec;
	for (size_t i = 0; i < n; i++) {
		store_hit *h = &res->hits[i];
		memcpy(p, paths[i], hs[i].path_len);
		p[hs[i].path_len] = '\0';
		h->id = hits[i].id;
		h->score = hits[i].score;
		h->path = p;
		h->size = hs[i].size;
		h->mtime_ns = hs[i].mtime_ns;
		h->capture_time = hs[i].capture_time;
		h->added = hs[i].added;
		h->width = hs[i].width;
		h->height = hs[i].height;
		h->kind = hs[i].frame ? STORE_KIND_FRAME : STORE_KIND_IMAGE;
		h->time_ms = hs[i].frame ? (int64_t)hs[i].frame - 1 : 0;
		h->embedding = NULL;
		if (vec) {
			sto_rec_emb(c->s, &hs[i], embs[i], e);
			h->embedding = e;
			e += c->s->dim;
		}
		p += hs[i].path_len + 1;
	}
	*out = res;
out_free:
	free(embs);
	free(paths);
	free(hs);
	return rc;
}

/* The body of store_search, with the lock held as c->exclusive says. */
static int
search_locked(search_ctx *c, topk *t, size_t k, store_results **out,
	      cdx_error *err)
{
	store *s = c->s;
	int rc;
	if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &c->txn))) {
		return sto_mdb_err(err, rc, "store_search");
	}
	size_t n = s->live.n;
	if (k > 0 && n > 0 &&
	    (rc = tag_filter_build(s, c->txn, c->f, &c->tags, err)) != 0) {
		mdb_txn_abort(c->txn);
		return rc;
	}
	if (k > 0 && n > 0) {
		/* How many images match: exactly for the time range (a scan
		 * of the live map) and for tags (the by-label index), by
		 * counting path entries for a prefix (up to a limit), and
		 * assuming independence between them. */
		size_t mt = n, mp = n, mg = n, plim = s->exact_max > 50000
							      ? s->exact_max
							      : 50000;
		if (c->has_time) {
			mt = 0;
			for (size_t i = 0; i < n; i++)
				mt += (size_t)time_match(c, (long)i);
		}
		if (c->plen)
			mp = count_prefix(c, plim);
		if (c->tags.active)
			mg = c->tags.has_tags ? c->tags.n
			     : c->tags.n < n  ? n - c->tags.n
					      : 0;
		int filtered = c->has_time || c->plen || c->tags.active;
		int complete = 0;
		if (c->tags.has_tags && mg <= s->exact_max && mg <= mt &&
		    mg <= mp) {
			rc = exact_filtered(c, t, FROM_TAGS, err);
			complete = 1;
		} else if (filtered && c->plen && mp <= s->exact_max &&
			   mp <= mt) {
			rc = exact_filtered(c, t, FROM_PREFIX, err);
			complete = 1;
		} else if (filtered && c->has_time && mt <= s->exact_max) {
			rc = exact_filtered(c, t, FROM_LIVE, err);
			complete = 1;
		} else {
			/* One more than k: the first rank below the k-th
			 * shows that no tie at the cut was left out. */
			size_t kk = k + 1 + (s->dead ? k : 0);
			if (filtered) {
				double sel = ((double)mt / (double)n) *
					     ((double)(mp < plim ? mp : plim) /
					      (double)n) *
					     ((double)mg / (double)n);
				double m = sel * (double)n;
				kk = (size_t)((double)k * (double)n /
					      (m >= 1 ? m : 1) * 3.0) + k;
			}
			if (filtered && strcmp(s->kind, "Flat") != 0 &&
			    kk >= n / 4) {
				/* An approximate index asked for a large part
				 * of itself is no faster and less exact than
				 * scoring the matches. */
				int from = FROM_LIVE;
				if (c->tags.has_tags && mg <= mt &&
				    (mg <= mp || !c->plen || mp >= plim))
					from = FROM_TAGS;
				else if (c->plen && mp < plim && mp <= mt)
					from = FROM_PREFIX;
				rc = exact_filtered(c, t, from, err);
				complete = 1;
			} else {
				rc = index_filtered(c, t, k, kk, &complete,
						    err);
			}
		}
		if (!rc && !complete) {
			t->n = 0;
			rc = exact_filtered(c, t, FROM_LIVE, err);
		}
	}
	if (!rc) {
		qsort(t->h, t->n, sizeof(cand), cand_cmp_desc);
		rc = build_results(c, t->h, t->n, out, err);
	}
	tag_filter_free(&c->tags);
	mdb_txn_abort(c->txn);
	return rc;
}

static int
search(store *s, const float *query, size_t k, const store_filter *f,
       int with_vec, store_results **out, cdx_error *err)
{
	size_t d = (size_t)s->dim;
	int rc;
	if (!query || !out)
		return cdx_error_set(err, CDX_EINVAL, "store_search: NULL");
	if (f && f->time_field != STORE_TIME_NONE &&
	    f->time_field != STORE_TIME_CAPTURE &&
	    f->time_field != STORE_TIME_MTIME)
		return cdx_error_set(err, CDX_EINVAL,
				     "store_search: bad time_field %d",
				     f->time_field);
	uint64_t cnt = store_image_count(s);
	if (k > cnt)
		k = (size_t)cnt; /* also bounds the allocation below */
	float *q = malloc(2 * d * sizeof(float));
	cand *heap = malloc((k ? k : 1) * sizeof(cand));
	if (!q || !heap) {
		rc = cdx_error_set(err, CDX_ENOMEM, "store_search");
		goto out_free;
	}
	if (!cdx_vec_is_unit(query, s->dim)) {
		rc = cdx_error_set(err, CDX_EINVAL,
				   "store_search: the query is not a finite "
				   "unit-length vector");
		goto out_free;
	}
	memcpy(q, query, d * sizeof(float));
	search_ctx c = { .s = s, .f = f, .q = q, .buf = q + d,
			 .with_vec = with_vec };
	c.plen = f && f->path_prefix ? strlen(f->path_prefix) : 0;
	c.has_time = f && f->time_field != STORE_TIME_NONE;
	topk t = { heap, 0, k };
	for (;;) {
		t.n = 0;
		if (c.exclusive)
			pthread_rwlock_wrlock(&s->lock);
		else
			pthread_rwlock_rdlock(&s->lock);
		rc = search_locked(&c, &t, k, out, err);
		pthread_rwlock_unlock(&s->lock);
		if (rc == NEED_EXCLUSIVE && !c.exclusive) {
			c.exclusive = 1;
			continue;
		}
		break;
	}
	if (rc == NEED_EXCLUSIVE)
		rc = cdx_error_set(err, CDX_EINTERNAL, "search: lock upgrade");
out_free:
	free(heap);
	free(q);
	return rc;
}

int
store_search(store *s, const float *query, size_t k, const store_filter *f,
	     store_results **out, cdx_error *err)
{
	return search(s, query, k, f, 0, out, err);
}

int
store_search_vectors(store *s, const float *query, size_t k,
		     const store_filter *f, store_results **out, cdx_error *err)
{
	return search(s, query, k, f, 1, out, err);
}

void
store_results_free(store_results *r)
{
	free(r);
}

/* ---- range search ---- */

typedef struct range_acc {
	size_t n, cap;
	cand *c;
} range_acc;

static int
acc_push(range_acc *a, float score, uint64_t id)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 256;
		cand *p = realloc(a->c, cap * sizeof(*p));
		if (!p)
			return CDX_ENOMEM;
		a->c = p;
		a->cap = cap;
	}
	a->c[a->n++] = (cand){ score, id };
	return 0;
}

/* The exact score of image id (its stored embedding, read into buf)
 * with q, in *score.  CDX_ECORRUPT or CDX_ESTORE when its record cannot be
 * read (a live image always has one). */
static int
stored_score(store *s, MDB_txn *txn, uint64_t id, const float *q, float *buf,
	     float *score, cdx_error *err)
{
	MDB_val k = { sizeof(id), &id }, v;
	rec_hdr h;
	const unsigned char *emb;
	int rc = mdb_get(txn, s->db_rec, &k, &v);
	if (rc)
		return sto_mdb_err(err, rc, "range search: reading a record");
	if ((rc = sto_rec_parse(s, &v, &h, NULL, &emb, err)))
		return rc;
	sto_rec_emb(s, &h, emb, buf);
	*score = cblas_sdot(s->dim, buf, 1, q, 1);
	return 0;
}

/* Top-k doubling, for kinds without range search, and for PQ kinds,
 * whose candidates (in the codes' order) are scored exactly from their
 * records (txn, buf: dim floats): the search grows while the worse half
 * of the candidates still holds a match.
 * Caller holds the lock, exclusively for HNSW (see index_search). */
static int
range_by_knn(store *s, const float *q, float min_score, MDB_txn *txn,
	     float *buf, range_acc *a, cdx_error *err)
{
	size_t nt = (size_t)faiss_Index_ntotal(s->index), kk = 64;
	if (nt == 0)
		return 0;
	for (;;) {
		if (kk > nt)
			kk = nt;
		float *dis = malloc(kk * sizeof(float));
		idx_t *lab = malloc(kk * sizeof(idx_t));
		if (!dis || !lab) {
			free(dis);
			free(lab);
			return cdx_error_set(err, CDX_ENOMEM, "range search");
		}
		/* k == kk: never deeper than usual, so never a change of the
		 * index's parameters; HNSW callers hold the exclusive lock */
		int r = index_search(s, q, kk, kk, s->tombstones, dis, lab, err);
		if (r) {
			free(dis);
			free(lab);
			return r;
		}
		size_t start = a->n, last_valid = 0;
		int more = 0, late = 0;
		for (size_t i = 0; i < kk; i++) {
			if (lab[i] < 0)
				break;
			last_valid = i + 1;
			float sc = dis[i];
			long slot = live_find(&s->live, lab[i]);
			if (s->rerank && slot >= 0 &&
			    (r = stored_score(s, txn, s->live.id[slot], q, buf,
					      &sc, err))) {
				free(dis);
				free(lab);
				return r;
			}
			if (sc < min_score) {
				if (s->rerank)
					continue;
				break;
			}
			late |= slot >= 0 && i >= kk / 2;
			if (slot >= 0 && acc_push(a, sc, s->live.id[slot])) {
				free(dis);
				free(lab);
				return cdx_error_set(err, CDX_ENOMEM,
						     "range search");
			}
		}
		more = last_valid == kk && kk < nt &&
		       (s->rerank ? late : dis[kk - 1] >= min_score);
		free(dis);
		free(lab);
		if (!more)
			return 0;
		a->n = start;
		kk *= 2;
	}
}

int
store_range_search(store *s, const float *queries, size_t nq,
		   float min_score, store_range **out, cdx_error *err)
{
	size_t d = (size_t)s->dim;
	int rc = 0;
	if (!out || (nq && !queries))
		return cdx_error_set(err, CDX_EINVAL, "store_range_search: NULL");
	float *q = malloc((nq ? nq : 1) * d * sizeof(float));
	size_t *lims = calloc(nq + 1, sizeof(size_t));
	range_acc a = { 0 };
	if (!q || !lims) {
		rc = cdx_error_set(err, CDX_ENOMEM, "store_range_search");
		goto out_free;
	}
	for (size_t i = 0; i < nq; i++)
		if (!cdx_vec_is_unit(queries + i * d, s->dim)) {
			rc = cdx_error_set(err, CDX_EINVAL,
					   "store_range_search: query %zu is "
					   "not a finite unit-length vector",
					   i);
			goto out_free;
		}
	if (nq > 0)
		memcpy(q, queries, nq * d * sizeof(float));
	/* HNSW grows top-k searches past efSearch: exclusive lock. */
	pthread_rwlock_rdlock(&s->lock);
	if (s->tombstones) {
		pthread_rwlock_unlock(&s->lock);
		pthread_rwlock_wrlock(&s->lock);
	}
	/* PQ kinds: candidates by their codes, kept by their exact score */
	int use_knn = s->tombstones || s->rerank;
	FaissRangeSearchResult *rsr = NULL;
	MDB_txn *txn = NULL;
	float *buf = NULL;
	if (s->rerank && nq) {  /* under the lock already */
		int r = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
		if (r) {
			txn = NULL;
			rc = sto_mdb_err(err, r, "range search");
			goto out_unlock;
		}
		if (!(buf = malloc(d * sizeof(float)))) {
			rc = cdx_error_set(err, CDX_ENOMEM, "range search");
			goto out_unlock;
		}
	}
	if (!use_knn && nq) {
		if ((rc = faiss_RangeSearchResult_new(&rsr, (idx_t)nq))) {
			rc = sto_faiss_err(err, rc, "range search");
			goto out_unlock;
		}
		/* FAISS keeps inner products strictly above the radius. */
		int r = faiss_Index_range_search(s->index, (idx_t)nq, q,
						 nextafterf(min_score, -INFINITY),
						 rsr);
		if (r) {
			/* Kinds without range search: top-k growth, which
			 * needs the exclusive lock. */
			use_knn = 1;
			pthread_rwlock_unlock(&s->lock);
			pthread_rwlock_wrlock(&s->lock);
		} else {
			size_t *rl;
			idx_t *lab;
			float *dis;
			faiss_RangeSearchResult_lims(rsr, &rl);
			faiss_RangeSearchResult_labels(rsr, &lab, &dis);
			for (size_t i = 0; i < nq && !rc; i++) {
				size_t st = a.n;
				for (size_t j = rl[i]; j < rl[i + 1]; j++) {
					long slot = live_find(&s->live, lab[j]);
					if (slot < 0 || dis[j] < min_score)
						continue;
					if (acc_push(&a, dis[j],
						     s->live.id[slot])) {
						rc = cdx_error_set(
							err, CDX_ENOMEM,
							"range search");
						break;
					}
				}
				qsort(a.c + st, a.n - st, sizeof(cand),
				      cand_cmp_desc);
				lims[i + 1] = a.n;
			}
		}
		faiss_RangeSearchResult_free(rsr);
	}
	if (use_knn) {
		a.n = 0;
		for (size_t i = 0; i < nq && !rc; i++) {
			size_t st = a.n;
			rc = range_by_knn(s, q + i * d, min_score, txn, buf,
					  &a, err);
			if (!rc)
				qsort(a.c + st, a.n - st, sizeof(cand),
				      cand_cmp_desc);
			lims[i + 1] = a.n;
		}
	}
out_unlock:
	if (txn)
		mdb_txn_abort(txn);
	free(buf);
	pthread_rwlock_unlock(&s->lock);
	if (!rc) {
		size_t tot = sizeof(store_range) + (nq + 1) * sizeof(size_t) +
			     a.n * (sizeof(uint64_t) + sizeof(float));
		store_range *res = malloc(tot);
		if (!res) {
			rc = cdx_error_set(err, CDX_ENOMEM, "range search");
			goto out_free;
		}
		res->nq = nq;
		res->lims = (size_t *)(res + 1);
		res->ids = (uint64_t *)(res->lims + nq + 1);
		res->scores = (float *)(res->ids + a.n);
		memcpy(res->lims, lims, (nq + 1) * sizeof(size_t));
		for (size_t i = 0; i < a.n; i++) {
			res->ids[i] = a.c[i].id;
			res->scores[i] = a.c[i].score;
		}
		*out = res;
	}
out_free:
	free(a.c);
	free(lims);
	free(q);
	return rc;
}

void
store_range_free(store_range *r)
{
	free(r);
}
