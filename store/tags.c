/*
 * tags.c - tag sets and tags: the sets (classify's cls_set) kept in LMDB
 * and in memory, every image's tags written with its record, the by-label
 * index behind tag filters and counts, and store_verify's check of them.
 *
 * LMDB tables:
 *   tagset   name -> tagset_hdr (the set's number) + cls_set_encode bytes
 *   tags     id (u64) -> tag_entry[]: (set number, label index, prob),
 *            only for images with at least one tag
 *   bylabel  set number << 32 | label index (u64) -> ids (DUPSORT,
 *            fixed-size u64): the images having that tag
 * A set's number stays when the set is replaced and is never given to
 * another set (meta "next_set").
 *
 * Locking: the in-memory sets (s->sets, by name) change only in an
 * after-commit hook of sto_write(_long), with the store's lock held
 * exclusively and write_lock held; image writes (tag_image, tag_drop) run
 * under both too, and readers (filters, store_image_tags, counts,
 * foreach) hold the lock shared.  A set's put or delete (a re-tag of the
 * whole store) writes under write_lock alone (sto_write_long): readers go
 * on with their LMDB snapshots and the old sets until the commit, which
 * swaps the set in under the exclusive lock; puts wait on write_lock, so
 * a put after the re-tag scores with the new set.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/internal.h"

#define TAGSET_MAGIC 0x53474154u /* "TAGS" */
/* Embeddings scored per cls_score call when a set re-tags the store. */
#define RETAG_CHUNK 4096
/* Probabilities of the same embedding scored alone or in a chunk may
 * differ in the last bits (another SGEMM blocking): verify allows this. */
#define PROB_TOL 1e-4f

typedef struct tagset_hdr {
	uint32_t magic;
	uint32_t num;
} tagset_hdr;

static uint64_t
tag_key(uint32_t set, uint32_t label)
{
	return (uint64_t)set << 32 | label;
}

static int
set_applies(const store *s, const cls_set *c)
{
	return c->dim == (size_t)s->dim && strcmp(c->model_key, s->model_id) == 0;
}

static const tag_set *
set_by_num(const store *s, uint32_t num)
{
	for (size_t i = 0; i < s->nsets; i++)
		if (s->sets[i].num == num)
			return &s->sets[i];
	return NULL;
}

static long
set_by_name(const store *s, const char *name)
{
	for (size_t i = 0; i < s->nsets; i++)
		if (strcmp(s->sets[i].c->name, name) == 0)
			return (long)i;
	return -1;
}

/* Reads a tagset value: its number, and the set decoded if out. */
static int
tagset_parse(const MDB_val *v, uint32_t *num, cls_set **out, cdx_error *err)
{
	tagset_hdr h;
	if (v->mv_size < sizeof(h))
		return cdx_error_set(err, CDX_ECORRUPT, "tag set record too short");
	memcpy(&h, v->mv_data, sizeof(h));
	if (h.magic != TAGSET_MAGIC)
		return cdx_error_set(err, CDX_ECORRUPT, "tag set record is malformed");
	*num = h.num;
	if (!out)
		return 0;
	/* LMDB's bytes are not aligned for the decoder's floats. */
	size_t len = v->mv_size - sizeof(h);
	void *copy = malloc(len ? len : 1);
	if (!copy)
		return cdx_error_set(err, CDX_ENOMEM, "reading a tag set");
	memcpy(copy, (const unsigned char *)v->mv_data + sizeof(h), len);
	int rc = cls_set_decode(copy, len, out, err);
	free(copy);
	return rc;
}

static int
set_cmp(const void *a, const void *b)
{
	const tag_set *x = a, *y = b;
	return strcmp(x->c->name, y->c->name);
}

int
tag_load(store *s, MDB_txn *txn, cdx_error *err)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc = mdb_cursor_open(txn, s->db_tagset, &cur), r;
	if (rc)
		return sto_mdb_err(err, rc, "reading tag sets");
	for (r = mdb_cursor_get(cur, &k, &v, MDB_FIRST); r == 0 && !rc;
	     r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		tag_set t = { 0, 0, NULL };
		cdx_error e;
		if (tagset_parse(&v, &t.num, &t.c, &e) != 0) {
			/* The other sets still work; a put of this name
			 * replaces it. */
			cdx_log(CDX_LOG_WARN, "store %s: tag set '%.*s' not "
				"loaded: %s", s->dir, (int)k.mv_size,
				(const char *)k.mv_data, e.msg);
			continue;
		}
		if (s->nsets == s->sets_cap) {
			size_t cap = s->sets_cap ? 2 * s->sets_cap : 8;
			tag_set *p = realloc(s->sets, cap * sizeof(*p));
			if (!p) {
				cls_set_free(t.c);
				rc = cdx_error_set(err, CDX_ENOMEM, "reading tag sets");
				break;
			}
			s->sets = p;
			s->sets_cap = cap;
		}
		t.applies = set_applies(s, t.c);
		s->sets[s->nsets++] = t;
	}
	if (!rc && r != MDB_NOTFOUND)
		rc = sto_mdb_err(err, r, "reading tag sets");
	mdb_cursor_close(cur);
	if (s->nsets)
		qsort(s->sets, s->nsets, sizeof(*s->sets), set_cmp);
	return rc;
}

void
tag_free(store *s)
{
	for (size_t i = 0; i < s->nsets; i++)
		cls_set_free(s->sets[i].c);
	free(s->sets);
	s->sets = NULL;
	s->nsets = s->sets_cap = 0;
}

/* ---- one image's tags ---- */

/* Copies image id's tags out: *out (malloc'd, NULL when none), *n. */
static int
tags_read(store *s, MDB_txn *txn, uint64_t id, tag_entry **out, size_t *n,
	  size_t extra, cdx_error *err)
{
	MDB_val k = { sizeof(id), &id }, v;
	int rc = mdb_get(txn, s->db_tags, &k, &v);
	*out = NULL;
	*n = 0;
	if (rc == MDB_NOTFOUND && !extra)
		return 0;
	if (rc && rc != MDB_NOTFOUND)
		return sto_mdb_err(err, rc, "reading tags");
	size_t have = rc ? 0 : v.mv_size / sizeof(tag_entry);
	if (!rc && v.mv_size % sizeof(tag_entry))
		return cdx_error_set(err, CDX_ECORRUPT,
				     "tags of image %llu are malformed",
				     (unsigned long long)id);
	tag_entry *e = malloc((have + extra ? have + extra : 1) * sizeof(*e));
	if (!e)
		return cdx_error_set(err, CDX_ENOMEM, "reading tags");
	if (have)
		memcpy(e, v.mv_data, have * sizeof(*e));
	*out = e;
	*n = have;
	return 0;
}

/* Writes image id's tags (n 0: deletes them); bylabel is the caller's. */
static int
tags_put(store *s, MDB_txn *txn, uint64_t id, const tag_entry *e, size_t n,
	 cdx_error *err)
{
	MDB_val k = { sizeof(id), &id }, v = { n * sizeof(*e), (void *)e };
	int rc = n ? mdb_put(txn, s->db_tags, &k, &v, 0)
		   : mdb_del(txn, s->db_tags, &k, NULL);
	if (rc && rc != MDB_NOTFOUND)
		return sto_mdb_err(err, rc, "writing tags");
	return 0;
}

static int
bylabel_put(store *s, MDB_txn *txn, uint32_t set, uint32_t label, uint64_t id,
	    cdx_error *err)
{
	uint64_t key = tag_key(set, label);
	MDB_val k = { sizeof(key), &key }, v = { sizeof(id), &id };
	int rc = mdb_put(txn, s->db_bylabel, &k, &v, 0);
	if (rc && rc != MDB_KEYEXIST)
		return sto_mdb_err(err, rc, "writing the tag index");
	return 0;
}

int
tag_drop(store *s, MDB_txn *txn, uint64_t id, cdx_error *err)
{
	tag_entry *e;
	size_t n;
	int rc = tags_read(s, txn, id, &e, &n, 0, err);
	if (rc || !e)
		return rc;
	for (size_t i = 0; i < n && !rc; i++) {
		uint64_t key = tag_key(e[i].set, e[i].label);
		MDB_val k = { sizeof(key), &key }, v = { sizeof(id), &id };
		int r = mdb_del(txn, s->db_bylabel, &k, &v);
		if (r && r != MDB_NOTFOUND)
			rc = sto_mdb_err(err, r, "deleting from the tag index");
	}
	free(e);
	return rc ? rc : tags_put(s, txn, id, NULL, 0, err);
}

int
tag_image(store *s, MDB_txn *txn, uint64_t id, const float *vec,
	  cdx_error *err)
{
	size_t total = 0, maxn = 0;
	int rc = tag_drop(s, txn, id, err);
	if (rc)
		return rc;
	for (size_t i = 0; i < s->nsets; i++) {
		if (!s->sets[i].applies)
			continue;
		total += s->sets[i].c->n;
		if (s->sets[i].c->n > maxn)
			maxn = s->sets[i].c->n;
	}
	if (total == 0)
		return 0;
	tag_entry *e = malloc(total * sizeof(*e));
	float *prob = malloc(maxn * sizeof(*prob));
	uint32_t *idx = malloc(maxn * sizeof(*idx));
	size_t n = 0;
	if (!e || !prob || !idx) {
		rc = cdx_error_set(err, CDX_ENOMEM, "tagging an image");
		goto out_free;
	}
	for (size_t i = 0; i < s->nsets && !rc; i++) {
		const tag_set *t = &s->sets[i];
		if (!t->applies)
			continue;
		if ((rc = cls_score(t->c, vec, 1, (size_t)s->dim, prob, err)))
			break;
		size_t k = cls_applied(t->c, prob, idx);
		for (size_t j = 0; j < k && !rc; j++) {
			e[n++] = (tag_entry){ t->num, idx[j], prob[idx[j]] };
			rc = bylabel_put(s, txn, t->num, idx[j], id, err);
		}
	}
	if (!rc)
		rc = tags_put(s, txn, id, e, n, err);
out_free:
	free(idx);
	free(prob);
	free(e);
	return rc;
}

/* ---- sets: define, re-tag, delete ---- */

typedef struct idvec {
	uint64_t *v;
	size_t n, cap;
} idvec;

static int
idvec_push(idvec *a, const uint64_t *ids, size_t n)
{
	if (a->n + n > a->cap) {
		size_t cap = a->cap ? a->cap : 256;
		while (cap < a->n + n)
			cap *= 2;
		uint64_t *p = realloc(a->v, cap * sizeof(*p));
		if (!p)
			return CDX_ENOMEM;
		a->v = p;
		a->cap = cap;
	}
	memcpy(a->v + a->n, ids, n * sizeof(*ids));
	a->n += n;
	return 0;
}

/* Room for cap ids in all (n kept).  0 or CDX_ENOMEM. */
static int
idvec_reserve(idvec *a, size_t cap)
{
	if (cap <= a->cap)
		return 0;
	uint64_t *p = realloc(a->v, cap * sizeof(*p));
	if (!p)
		return CDX_ENOMEM;
	a->v = p;
	a->cap = cap;
	return 0;
}

static int
u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Sorts and removes repeats. */
static void
idvec_unique(idvec *a)
{
	size_t m = 0;
	if (a->n == 0)
		return;
	qsort(a->v, a->n, sizeof(*a->v), u64_cmp);
	for (size_t i = 0; i < a->n; i++)
		if (m == 0 || a->v[m - 1] != a->v[i])
			a->v[m++] = a->v[i];
	a->n = m;
}

/* Appends the ids of the key under the cursor (positioned on it). */
static int
dups_append(MDB_cursor *cur, idvec *out, cdx_error *err)
{
	MDB_val k, v;
	size_t cnt;
	int r = mdb_cursor_count(cur, &cnt);
	if (r == 0 && cnt == 1) {
		/* A single value is not a duplicate page: MDB_GET_MULTIPLE
		 * would return nothing. */
		if ((r = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT)))
			return sto_mdb_err(err, r, "reading tags");
		if (v.mv_size != sizeof(uint64_t))
			return cdx_error_set(err, CDX_ECORRUPT,
					     "tag index entry is malformed");
		if (idvec_push(out, v.mv_data, 1))
			return cdx_error_set(err, CDX_ENOMEM, "reading tags");
		return 0;
	}
	if (r == 0)
		r = mdb_cursor_get(cur, &k, &v, MDB_GET_MULTIPLE);
	while (r == 0) {
		if (v.mv_size % sizeof(uint64_t))
			return cdx_error_set(err, CDX_ECORRUPT,
					     "tag index entry is malformed");
		if (idvec_push(out, v.mv_data, v.mv_size / sizeof(uint64_t)))
			return cdx_error_set(err, CDX_ENOMEM, "reading tags");
		r = mdb_cursor_get(cur, &k, &v, MDB_NEXT_MULTIPLE);
	}
	return r == MDB_NOTFOUND ? 0 : sto_mdb_err(err, r, "reading tags");
}

/* Appends the images tagged with key; nothing if none. */
static int
ids_of_key(MDB_cursor *cur, uint64_t key, idvec *out, cdx_error *err)
{
	MDB_val k = { sizeof(key), &key }, v;
	int r = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
	if (r == MDB_NOTFOUND)
		return 0;
	if (r)
		return sto_mdb_err(err, r, "reading tags");
	return dups_append(cur, out, err);
}

/* Removes every tag of set number num: from each image that has one and
 * from the by-label index. */
static int
tags_strip(store *s, MDB_txn *txn, uint32_t num, cdx_error *err)
{
	MDB_cursor *cur;
	idvec ids = { NULL, 0, 0 };
	uint64_t key = tag_key(num, 0), found;
	int rc = mdb_cursor_open(txn, s->db_bylabel, &cur), r;
	if (rc)
		return sto_mdb_err(err, rc, "removing tags");
	for (;;) {
		MDB_val k = { sizeof(key), &key }, v;
		r = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		if (r == MDB_NOTFOUND)
			break;
		if (r) {
			rc = sto_mdb_err(err, r, "removing tags");
			goto out_close;
		}
		memcpy(&found, k.mv_data, sizeof(found));
		if (found >> 32 != num)
			break;
		if ((rc = dups_append(cur, &ids, err)))
			goto out_close;
		k = (MDB_val){ sizeof(found), &found };
		if ((r = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY)) ||
		    (r = mdb_cursor_del(cur, MDB_NODUPDATA))) {
			rc = sto_mdb_err(err, r, "removing tags");
			goto out_close;
		}
		key = found + 1;
	}
	idvec_unique(&ids);
	for (size_t i = 0; i < ids.n && !rc; i++) {
		tag_entry *e;
		size_t n, m = 0;
		if ((rc = tags_read(s, txn, ids.v[i], &e, &n, 0, err)))
			break;
		for (size_t j = 0; j < n; j++)
			if (e[j].set != num)
				e[m++] = e[j];
		rc = tags_put(s, txn, ids.v[i], e, m, err);
		free(e);
	}
out_close:
	mdb_cursor_close(cur);
	free(ids.v);
	return rc;
}

/* Adds set t's tags to image id (which has none of it); prob: its row. */
static int
tags_add(store *s, MDB_txn *txn, uint64_t id, const tag_set *t,
	 const float *prob, uint32_t *idx, int *tagged, cdx_error *err)
{
	size_t k = cls_applied(t->c, prob, idx), n;
	tag_entry *e;
	int rc;
	*tagged = k > 0;
	if (k == 0)
		return 0;
	if ((rc = tags_read(s, txn, id, &e, &n, k, err)))
		return rc;
	for (size_t j = 0; j < k && !rc; j++) {
		e[n++] = (tag_entry){ t->num, idx[j], prob[idx[j]] };
		rc = bylabel_put(s, txn, t->num, idx[j], id, err);
	}
	if (!rc)
		rc = tags_put(s, txn, id, e, n, err);
	free(e);
	return rc;
}

/* Tags every image with t: the records in chunks of RETAG_CHUNK, one
 * cls_score call per chunk. */
static int
tags_retag(store *s, MDB_txn *txn, const tag_set *t, uint64_t *tagged,
	   cdx_error *err)
{
	size_t d = (size_t)s->dim, nl = t->c->n, m = 0;
	float *x = malloc(RETAG_CHUNK * d * sizeof(float));
	float *prob = malloc(RETAG_CHUNK * nl * sizeof(float));
	uint64_t *ids = malloc(RETAG_CHUNK * sizeof(*ids));
	uint32_t *idx = malloc(nl * sizeof(*idx));
	MDB_cursor *cur = NULL;
	int rc = 0, r;
	*tagged = 0;
	if (!x || !prob || !ids || !idx) {
		rc = cdx_error_set(err, CDX_ENOMEM, "re-tagging");
		goto out_free;
	}
	if ((r = mdb_cursor_open(txn, s->db_rec, &cur))) {
		rc = sto_mdb_err(err, r, "re-tagging");
		goto out_free;
	}
	MDB_val k, v;
	r = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	while (!rc && (r == 0 || m > 0)) {
		if (r == 0) {
			rec_hdr h;
			const unsigned char *emb;
			if ((rc = sto_rec_parse(s, &v, &h, NULL, &emb, err)))
				break;
			sto_rec_emb(s, &h, emb, x + m * d);
			ids[m++] = h.id;
			r = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
			if (r == 0 && m < RETAG_CHUNK)
				continue;
		}
		if ((rc = cls_score(t->c, x, m, d, prob, err)))
			break;
		for (size_t i = 0; i < m && !rc; i++) {
			int got;
			rc = tags_add(s, txn, ids[i], t, prob + i * nl, idx,
				      &got, err);
			*tagged += (uint64_t)got;
		}
		m = 0;
	}
	if (!rc && r != MDB_NOTFOUND)
		rc = sto_mdb_err(err, r, "re-tagging");
out_free:
	if (cur)
		mdb_cursor_close(cur);
	free(idx);
	free(ids);
	free(prob);
	free(x);
	return rc;
}

struct tagset_put_arg {
	const cls_set *c;
	const void *bytes;      /* cls_set_encode(c) */
	size_t len;
	cls_set *copy;          /* decoded from bytes: the in-memory set */
	uint32_t num;
	int applies;
	uint64_t tagged;
};

static int
tagset_put_fn(store *s, MDB_txn *txn, void *arg, cdx_error *err)
{
	struct tagset_put_arg *a = arg;
	MDB_val k = { strlen(a->c->name), (void *)a->c->name }, v;
	unsigned char *buf = NULL;
	int rc = mdb_get(txn, s->db_tagset, &k, &v);
	a->tagged = 0;
	if (rc == 0) {
		if ((rc = tagset_parse(&v, &a->num, NULL, err)))
			return rc;
	} else if (rc == MDB_NOTFOUND) {
		MDB_val nk = { 8, "next_set" }, nv;
		uint64_t next = 1;
		rc = mdb_get(txn, s->db_meta, &nk, &nv);
		if (rc == 0 && nv.mv_size == sizeof(next))
			memcpy(&next, nv.mv_data, sizeof(next));
		else if (rc != MDB_NOTFOUND)
			return rc ? sto_mdb_err(err, rc, "store_tagset_put")
				  : cdx_error_set(err, CDX_ECORRUPT,
						  "meta next_set is malformed");
		if (next > UINT32_MAX)
			return cdx_error_set(err, CDX_ETOOBIG,
					     "store_tagset_put: out of set "
					     "numbers");
		a->num = (uint32_t)next++;
		nv = (MDB_val){ sizeof(next), &next };
		if ((rc = mdb_put(txn, s->db_meta, &nk, &nv, 0)))
			return sto_mdb_err(err, rc, "store_tagset_put");
	} else {
		return sto_mdb_err(err, rc, "store_tagset_put");
	}
	/* Room for the set in memory now, so the after-commit hook cannot
	 * fail. */
	if (s->nsets == s->sets_cap) {
		/* Readers hold the lock shared while they read s->sets. */
		size_t cap = s->sets_cap ? 2 * s->sets_cap : 8;
		pthread_rwlock_wrlock(&s->lock);
		tag_set *p = realloc(s->sets, cap * sizeof(*p));
		if (p) {
			s->sets = p;
			s->sets_cap = cap;
		}
		pthread_rwlock_unlock(&s->lock);
		if (!p)
			return cdx_error_set(err, CDX_ENOMEM, "store_tagset_put");
	}
	tagset_hdr h = { TAGSET_MAGIC, a->num };
	if (!(buf = malloc(sizeof(h) + a->len)))
		return cdx_error_set(err, CDX_ENOMEM, "store_tagset_put");
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), a->bytes, a->len);
	v = (MDB_val){ sizeof(h) + a->len, buf };
	rc = mdb_put(txn, s->db_tagset, &k, &v, 0);
	free(buf);
	if (rc)
		return sto_mdb_err(err, rc, "store_tagset_put");
	if ((rc = tags_strip(s, txn, a->num, err)))
		return rc;
	if (!a->applies)
		return 0;
	tag_set t = { a->num, 1, a->copy };
	return tags_retag(s, txn, &t, &a->tagged, err);
}

static void
tagset_put_after(store *s, void *arg)
{
	struct tagset_put_arg *a = arg;
	tag_set t = { a->num, a->applies, a->copy };
	long i = set_by_name(s, a->c->name);
	a->copy = NULL;         /* the store's now */
	if (i >= 0) {
		cls_set_free(s->sets[i].c);
		s->sets[i] = t;
		return;
	}
	s->sets[s->nsets++] = t;
	qsort(s->sets, s->nsets, sizeof(*s->sets), set_cmp);
}

int
store_tagset_put(store *s, const cls_set *c, uint64_t *tagged,
		 cdx_error *err)
{
	struct tagset_put_arg a = { .c = c };
	void *bytes = NULL;
	int rc;
	if (!s || !c)
		return cdx_error_set(err, CDX_EINVAL, "store_tagset_put: NULL");
	if ((rc = cls_name_check(c->name, err)))
		return rc;
	if (c->dim != (size_t)s->dim)
		return cdx_error_set(err, CDX_EINVAL,
				     "store_tagset_put: set '%s' has dim %zu, "
				     "the store %d", c->name, c->dim, s->dim);
	if (c->n == 0 || c->n > CLS_MAX_LABELS)
		return cdx_error_set(err, CDX_EINVAL,
				     "store_tagset_put: set '%s' has %zu labels",
				     c->name, c->n);
	if ((rc = cls_set_encode(c, &bytes, &a.len, err)))
		return rc;
	/* The decoder's checks (labels non-empty and distinct) refuse a
	 * set that could not be read back: bad input here. */
	if ((rc = cls_set_decode(bytes, a.len, &a.copy, err))) {
		if (rc == CDX_ECORRUPT) {
			char why[sizeof(err->msg)];
			snprintf(why, sizeof(why), "%s",
				 err ? err->msg : "malformed");
			rc = cdx_error_set(err, CDX_EINVAL,
					   "store_tagset_put: set '%s': %s",
					   c->name, why);
		}
		goto out_free;
	}
	a.bytes = bytes;
	a.applies = set_applies(s, c);
	rc = sto_write_long(s, tagset_put_fn, &a, tagset_put_after, err);
	if (!rc && tagged)
		*tagged = a.tagged;
out_free:
	cls_set_free(a.copy);
	free(bytes);
	return rc;
}

struct tagset_del_arg {
	const char *name;
};

static int
tagset_del_fn(store *s, MDB_txn *txn, void *arg, cdx_error *err)
{
	struct tagset_del_arg *a = arg;
	MDB_val k = { strlen(a->name), (void *)a->name }, v;
	uint32_t num = 0;
	int rc = mdb_get(txn, s->db_tagset, &k, &v);
	if (rc == MDB_NOTFOUND)
		return cdx_error_set(err, CDX_ENOTFOUND, "no tag set '%s'",
				     a->name);
	if (rc)
		return sto_mdb_err(err, rc, "store_tagset_delete");
	if ((rc = tagset_parse(&v, &num, NULL, err)) ||
	    (rc = tags_strip(s, txn, num, err)))
		return rc;
	if ((rc = mdb_del(txn, s->db_tagset, &k, NULL)))
		return sto_mdb_err(err, rc, "store_tagset_delete");
	return 0;
}

static void
tagset_del_after(store *s, void *arg)
{
	struct tagset_del_arg *a = arg;
	long i = set_by_name(s, a->name);
	if (i < 0)
		return;         /* it was never loaded (damaged) */
	cls_set_free(s->sets[i].c);
	memmove(s->sets + i, s->sets + i + 1,
		(s->nsets - (size_t)i - 1) * sizeof(*s->sets));
	s->nsets--;
}

int
store_tagset_delete(store *s, const char *name, cdx_error *err)
{
	struct tagset_del_arg a = { name };
	if (!s || !name)
		return cdx_error_set(err, CDX_EINVAL, "store_tagset_delete: NULL");
	if (!name[0] || strlen(name) > CLS_NAME_MAX)
		return cdx_error_set(err, CDX_ENOTFOUND, "no tag set '%s'", name);
	return sto_write_long(s, tagset_del_fn, &a, tagset_del_after, err);
}

int
store_tagset_get(store *s, const char *name, cls_set **out, cdx_error *err)
{
	MDB_txn *txn;
	uint32_t num;
	int rc;
	if (!s || !name || !out)
		return cdx_error_set(err, CDX_EINVAL, "store_tagset_get: NULL");
	if (!name[0] || strlen(name) > CLS_NAME_MAX)
		return cdx_error_set(err, CDX_ENOTFOUND, "no tag set '%s'", name);
	if ((rc = sto_read_begin(s, &txn, err)))
		return rc;
	MDB_val k = { strlen(name), (void *)name }, v;
	rc = mdb_get(txn, s->db_tagset, &k, &v);
	if (rc == MDB_NOTFOUND)
		rc = cdx_error_set(err, CDX_ENOTFOUND, "no tag set '%s'", name);
	else if (rc)
		rc = sto_mdb_err(err, rc, "store_tagset_get");
	else
		rc = tagset_parse(&v, &num, out, err);
	sto_read_end(s, txn);
	return rc;
}

int
store_tagset_foreach(store *s, store_tagset_fn fn, void *user,
		     cdx_error *err)
{
	int rc = 0;
	if (!s || !fn)
		return cdx_error_set(err, CDX_EINVAL, "store_tagset_foreach: NULL");
	pthread_rwlock_rdlock(&s->lock);
	for (size_t i = 0; i < s->nsets && !rc; i++)
		rc = fn(user, s->sets[i].c);
	pthread_rwlock_unlock(&s->lock);
	return rc;
}

/* ---- reading tags ---- */

typedef struct tag_ref {
	const char *set, *label;
	float prob;
} tag_ref;

static int
tag_ref_cmp(const void *a, const void *b)
{
	const tag_ref *x = a, *y = b;
	int c = strcmp(x->set, y->set);
	if (c)
		return c;
	return x->prob < y->prob ? 1 : x->prob > y->prob ? -1 : 0;
}

int
store_image_tags(store *s, uint64_t id, store_tags **out, cdx_error *err)
{
	MDB_txn *txn;
	tag_entry *e = NULL;
	tag_ref *refs = NULL;
	size_t n = 0, m = 0, strs = 0;
	int rc;
	if (!s || !out)
		return cdx_error_set(err, CDX_EINVAL, "store_image_tags: NULL");
	if ((rc = sto_read_begin(s, &txn, err)))
		return rc;
	MDB_val k = { sizeof(id), &id }, v;
	rc = mdb_get(txn, s->db_rec, &k, &v);
	if (rc == MDB_NOTFOUND) {
		rc = cdx_error_set(err, CDX_ENOTFOUND, "no image with id %llu",
				   (unsigned long long)id);
		goto out_end;
	}
	if (rc) {
		rc = sto_mdb_err(err, rc, "store_image_tags");
		goto out_end;
	}
	if ((rc = tags_read(s, txn, id, &e, &n, 0, err)))
		goto out_end;
	if (!(refs = malloc((n ? n : 1) * sizeof(*refs)))) {
		rc = cdx_error_set(err, CDX_ENOMEM, "store_image_tags");
		goto out_end;
	}
	for (size_t i = 0; i < n; i++) {
		const tag_set *t = set_by_num(s, e[i].set);
		if (!t || e[i].label >= t->c->n)
			continue; /* store_verify reports it */
		refs[m] = (tag_ref){ t->c->name, t->c->labels[e[i].label],
				     e[i].prob };
		strs += strlen(refs[m].set) + strlen(refs[m].label) + 2;
		m++;
	}
	qsort(refs, m, sizeof(*refs), tag_ref_cmp);
	store_tags *r = malloc(sizeof(*r) + m * sizeof(store_tag) + strs);
	if (!r) {
		rc = cdx_error_set(err, CDX_ENOMEM, "store_image_tags");
		goto out_end;
	}
	r->n = m;
	r->tags = (store_tag *)(r + 1);
	char *p = (char *)(r->tags + m);
	for (size_t i = 0; i < m; i++) {
		size_t ls = strlen(refs[i].set) + 1, ll = strlen(refs[i].label) + 1;
		r->tags[i].set = memcpy(p, refs[i].set, ls);
		r->tags[i].label = memcpy(p + ls, refs[i].label, ll);
		r->tags[i].prob = refs[i].prob;
		p += ls + ll;
	}
	*out = r;
out_end:
	sto_read_end(s, txn);
	free(refs);
	free(e);
	return rc;
}

void
store_tags_free(store_tags *t)
{
	free(t);
}

int
store_tag_counts_get(store *s, const char *set, store_tag_counts **out,
		     cdx_error *err)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	size_t n = 0, strs = 0, first = 0, last;
	int rc;
	if (!s || !out)
		return cdx_error_set(err, CDX_EINVAL, "store_tag_counts_get: NULL");
	if ((rc = sto_read_begin(s, &txn, err)))
		return rc;
	last = s->nsets;
	if (set) {
		long i = set_by_name(s, set);
		if (i < 0) {
			rc = cdx_error_set(err, CDX_ENOTFOUND, "no tag set '%s'",
					   set);
			goto out_end;
		}
		first = (size_t)i;
		last = first + 1;
	}
	for (size_t i = first; i < last; i++) {
		const cls_set *c = s->sets[i].c;
		n += c->n;
		for (size_t j = 0; j < c->n; j++)
			strs += strlen(c->name) + strlen(c->labels[j]) + 2;
	}
	store_tag_counts *r = malloc(sizeof(*r) + n * sizeof(store_tag_count) +
				     strs);
	if (!r) {
		rc = cdx_error_set(err, CDX_ENOMEM, "store_tag_counts_get");
		goto out_end;
	}
	if ((rc = mdb_cursor_open(txn, s->db_bylabel, &cur))) {
		free(r);
		rc = sto_mdb_err(err, rc, "store_tag_counts_get");
		goto out_end;
	}
	r->n = n;
	r->counts = (store_tag_count *)(r + 1);
	char *p = (char *)(r->counts + n);
	size_t m = 0;
	for (size_t i = first; i < last && !rc; i++) {
		const tag_set *t = &s->sets[i];
		for (size_t j = 0; j < t->c->n && !rc; j++, m++) {
			store_tag_count *tc = &r->counts[m];
			size_t ls = strlen(t->c->name) + 1;
			size_t ll = strlen(t->c->labels[j]) + 1;
			uint64_t key = tag_key(t->num, (uint32_t)j);
			MDB_val k = { sizeof(key), &key }, v;
			size_t cnt = 0;
			int r2 = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
			if (r2 == 0)
				r2 = mdb_cursor_count(cur, &cnt);
			if (r2 && r2 != MDB_NOTFOUND)
				rc = sto_mdb_err(err, r2, "store_tag_counts_get");
			tc->set = memcpy(p, t->c->name, ls);
			tc->label = memcpy(p + ls, t->c->labels[j], ll);
			tc->images = (uint64_t)cnt;
			p += ls + ll;
		}
	}
	mdb_cursor_close(cur);
	if (rc)
		free(r);
	else
		*out = r;
out_end:
	sto_read_end(s, txn);
	return rc;
}

void
store_tag_counts_free(store_tag_counts *c)
{
	free(c);
}

/* ---- filters ---- */

/* The by-label keys a tag names: "SET/LABEL" when the text before the
 * first '/' names a set, else "LABEL" in every set.  keys has room for
 * s->nsets. */
static size_t
tag_keys(const store *s, const char *tag, uint64_t *keys)
{
	const char *slash = strchr(tag, '/');
	size_t n = 0;
	if (slash) {
		for (size_t i = 0; i < s->nsets; i++) {
			const cls_set *c = s->sets[i].c;
			if (strlen(c->name) != (size_t)(slash - tag) ||
			    memcmp(c->name, tag, (size_t)(slash - tag)) != 0)
				continue;
			/* One key at most (a damaged set may repeat a
			 * label: keys has room for s->nsets). */
			for (size_t j = 0; j < c->n; j++)
				if (strcmp(c->labels[j], slash + 1) == 0) {
					keys[n++] = tag_key(s->sets[i].num,
							    (uint32_t)j);
					break;
				}
			return n;
		}
	}
	for (size_t i = 0; i < s->nsets; i++) {
		const cls_set *c = s->sets[i].c;
		for (size_t j = 0; j < c->n; j++)
			if (strcmp(c->labels[j], tag) == 0) {
				keys[n++] = tag_key(s->sets[i].num, (uint32_t)j);
				break;
			}
	}
	return n;
}

/* The sorted ids having one of tags[0..n): merged tag by tag, so what is
 * held at once is the union so far and one tag's ids (not every tag's,
 * repeats included). */
static int
ids_of_tags(store *s, MDB_cursor *cur, const char *const *tags, size_t n,
	    uint64_t *keys, idvec *out, cdx_error *err)
{
	idvec one = { NULL, 0, 0 }, sum = { NULL, 0, 0 };
	int rc = 0;
	out->n = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		if (!tags[i]) {
			rc = cdx_error_set(err, CDX_EINVAL,
					   "store_search: NULL tag");
			break;
		}
		size_t nk = tag_keys(s, tags[i], keys);
		one.n = 0;
		for (size_t j = 0; j < nk && !rc; j++)
			rc = ids_of_key(cur, keys[j], &one, err);
		if (rc || one.n == 0)
			continue;
		idvec_unique(&one);
		if (out->n == 0) {
			idvec t = *out;
			*out = one;
			one = t;
			continue;
		}
		/* sum = out | one, both sorted */
		sum.n = 0;
		if (idvec_reserve(&sum, out->n + one.n)) {
			rc = cdx_error_set(err, CDX_ENOMEM, "store_search");
			break;
		}
		size_t a = 0, b = 0, m = 0;
		while (a < out->n || b < one.n) {
			uint64_t x;
			if (b == one.n || (a < out->n && out->v[a] < one.v[b]))
				x = out->v[a++];
			else if (a == out->n || one.v[b] < out->v[a])
				x = one.v[b++];
			else {
				x = out->v[a++];
				b++;
			}
			sum.v[m++] = x;
		}
		sum.n = m;
		idvec t = *out;
		*out = sum;
		sum = t;
	}
	free(one.v);
	free(sum.v);
	return rc;
}

static int
id_in(const uint64_t *v, size_t n, uint64_t id)
{
	return n && bsearch(&id, v, n, sizeof(*v), u64_cmp) != NULL;
}

int
tag_filter_build(store *s, MDB_txn *txn, const store_filter *f,
		 tag_filter *tf, cdx_error *err)
{
	idvec allow = { NULL, 0, 0 }, one = { NULL, 0, 0 };
	MDB_cursor *cur;
	uint64_t *keys;
	int rc;
	memset(tf, 0, sizeof(*tf));
	if (!f || (f->n_tags == 0 && f->n_not_tags == 0))
		return 0;
	if ((f->n_tags && !f->tags) || (f->n_not_tags && !f->not_tags))
		return cdx_error_set(err, CDX_EINVAL, "store_search: NULL tags");
	if (!(keys = malloc((s->nsets ? s->nsets : 1) * sizeof(*keys))))
		return cdx_error_set(err, CDX_ENOMEM, "store_search");
	if ((rc = mdb_cursor_open(txn, s->db_bylabel, &cur))) {
		free(keys);
		return sto_mdb_err(err, rc, "store_search");
	}
	/* allow: the images having every tag (intersected one by one). */
	for (size_t i = 0; i < f->n_tags && !rc; i++) {
		if ((rc = ids_of_tags(s, cur, &f->tags[i], 1, keys, &one, err)))
			break;
		if (i == 0) {
			idvec t = allow;
			allow = one;
			one = t;
			continue;
		}
		size_t m = 0;
		for (size_t j = 0; j < allow.n; j++)
			if (id_in(one.v, one.n, allow.v[j]))
				allow.v[m++] = allow.v[j];
		allow.n = m;
	}
	if (!rc && f->n_not_tags)
		rc = ids_of_tags(s, cur, f->not_tags, f->n_not_tags, keys, &one,
				 err);
	mdb_cursor_close(cur);
	free(keys);
	if (rc)
		goto out_free;
	if (f->n_tags) {
		size_t m = 0;
		for (size_t j = 0; j < allow.n; j++)
			if (!f->n_not_tags || !id_in(one.v, one.n, allow.v[j]))
				allow.v[m++] = allow.v[j];
		tf->active = tf->has_tags = 1;
		tf->ids = allow.v;
		tf->n = m;
		allow.v = NULL;
	} else if (one.n) {
		tf->active = 1;
		tf->ids = one.v;
		tf->n = one.n;
		one.v = NULL;
	}
out_free:
	free(allow.v);
	free(one.v);
	return rc;
}

int
tag_filter_match(const tag_filter *tf, uint64_t id)
{
	if (!tf->active)
		return 1;
	return id_in(tf->ids, tf->n, id) == tf->has_tags;
}

void
tag_filter_free(tag_filter *tf)
{
	free(tf->ids);
	tf->ids = NULL;
	tf->n = 0;
}

/* ---- verify ---- */

/* Whether label l of a fresh score could go either way: its probability
 * at the threshold, or (single-label) tied with another label's. */
static int
borderline(const cls_set *c, const float *prob, uint32_t l)
{
	if (fabsf(prob[l] - c->threshold) <= PROB_TOL)
		return 1;
	if (c->multi)
		return 0;
	for (size_t j = 0; j < c->n; j++)
		if (j != l && fabsf(prob[j] - prob[l]) <= PROB_TOL)
			return 1;
	return 0;
}

/* Compares the stored tags of one image with set t (e, n: all its
 * entries) against prob, a fresh score of its embedding.  0 or a
 * description of the difference in why. */
static int
tags_differ(const tag_set *t, const tag_entry *e, size_t n, const float *prob,
	    uint32_t *idx, char *why, size_t wcap)
{
	const cls_set *c = t->c;
	size_t k = cls_applied(c, prob, idx);
	for (size_t i = 0; i < n; i++) {
		if (e[i].set != t->num)
			continue;
		uint32_t l = e[i].label;
		int found = 0;
		for (size_t j = 0; j < k && !found; j++)
			found = idx[j] == l;
		if (l >= c->n) {
			snprintf(why, wcap, "label %u is not in the set", l);
			return 1;
		}
		if (!found && !borderline(c, prob, l)) {
			snprintf(why, wcap, "stale tag '%s' (p %.4f now)",
				 c->labels[l], (double)prob[l]);
			return 1;
		}
		if (fabsf(e[i].prob - prob[l]) > PROB_TOL) {
			snprintf(why, wcap, "tag '%s' has p %.4f, %.4f now",
				 c->labels[l], (double)e[i].prob,
				 (double)prob[l]);
			return 1;
		}
	}
	for (size_t j = 0; j < k; j++) {
		int found = 0;
		for (size_t i = 0; i < n && !found; i++)
			found = e[i].set == t->num && e[i].label == idx[j];
		if (!found && !borderline(c, prob, idx[j])) {
			snprintf(why, wcap, "missing tag '%s' (p %.4f)",
				 c->labels[idx[j]], (double)prob[idx[j]]);
			return 1;
		}
	}
	return 0;
}

int
tag_verify(store *s, MDB_txn *txn, cdx_error *err)
{
	size_t d = (size_t)s->dim, maxn = 1;
	uint64_t entries = 0, tagged = 0;
	MDB_cursor *cur = NULL, *bl = NULL;
	float *x = malloc(d * sizeof(float)), *prob = NULL;
	uint32_t *idx = NULL;
	tag_entry *e = NULL;
	char why[300];
	MDB_stat st;
	int rc = 0, r;
	for (size_t i = 0; i < s->nsets; i++)
		if (s->sets[i].c->n > maxn)
			maxn = s->sets[i].c->n;
	prob = malloc(maxn * sizeof(*prob));
	idx = malloc(maxn * sizeof(*idx));
	if (!x || !prob || !idx) {
		rc = cdx_error_set(err, CDX_ENOMEM, "store_verify");
		goto out_free;
	}
	if ((r = mdb_cursor_open(txn, s->db_rec, &cur)) ||
	    (r = mdb_cursor_open(txn, s->db_bylabel, &bl))) {
		rc = sto_mdb_err(err, r, "store_verify");
		goto out_free;
	}
	MDB_val k, v;
	for (r = mdb_cursor_get(cur, &k, &v, MDB_FIRST); r == 0 && !rc;
	     r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		rec_hdr h;
		const unsigned char *emb;
		size_t n;
		if ((rc = sto_rec_parse(s, &v, &h, NULL, &emb, err)))
			break;
		sto_rec_emb(s, &h, emb, x);
		free(e);
		if ((rc = tags_read(s, txn, h.id, &e, &n, 0, err)))
			break;
		tagged += n > 0;
		entries += n;
		for (size_t i = 0; i < n && !rc; i++) {
			const tag_set *t = set_by_num(s, e[i].set);
			uint64_t key = tag_key(e[i].set, e[i].label);
			MDB_val bk = { sizeof(key), &key };
			MDB_val bv = { sizeof(h.id), &h.id };
			if (!t || !t->applies)
				rc = cdx_error_set(
					err, CDX_ECORRUPT,
					"image %llu has a tag of set number %u, "
					"%s", (unsigned long long)h.id, e[i].set,
					t ? "which does not apply to this model"
					  : "which does not exist");
			else if (mdb_cursor_get(bl, &bk, &bv, MDB_GET_BOTH))
				rc = cdx_error_set(
					err, CDX_ECORRUPT,
					"tag %u/%u of image %llu is not in the "
					"by-label index", e[i].set, e[i].label,
					(unsigned long long)h.id);
		}
		for (size_t i = 0; i < s->nsets && !rc; i++) {
			const tag_set *t = &s->sets[i];
			if (!t->applies)
				continue;
			if ((rc = cls_score(t->c, x, 1, d, prob, err)))
				break;
			if (tags_differ(t, e, n, prob, idx, why, sizeof(why)))
				rc = cdx_error_set(err, CDX_ECORRUPT,
						   "tags of image %llu disagree "
						   "with set '%s': %s",
						   (unsigned long long)h.id,
						   t->c->name, why);
		}
	}
	if (!rc && r != MDB_NOTFOUND)
		rc = sto_mdb_err(err, r, "store_verify");
	if (!rc && (r = mdb_stat(txn, s->db_tags, &st)))
		rc = sto_mdb_err(err, r, "store_verify");
	if (!rc && st.ms_entries != tagged)
		rc = cdx_error_set(err, CDX_ECORRUPT,
				   "%llu images have tags, the tags table has "
				   "%llu entries", (unsigned long long)tagged,
				   (unsigned long long)st.ms_entries);
	if (!rc && (r = mdb_stat(txn, s->db_bylabel, &st)))
		rc = sto_mdb_err(err, r, "store_verify");
	if (!rc && st.ms_entries != entries)
		rc = cdx_error_set(err, CDX_ECORRUPT,
				   "%llu tags, the by-label index has %llu",
				   (unsigned long long)entries,
				   (unsigned long long)st.ms_entries);
out_free:
	if (bl)
		mdb_cursor_close(bl);
	if (cur)
		mdb_cursor_close(cur);
	free(e);
	free(idx);
	free(prob);
	free(x);
	return rc;
}
