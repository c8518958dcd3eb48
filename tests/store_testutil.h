/* Helpers shared by the tests/store_*.c suites (header-only, static). */
#ifndef STORE_TESTUTIL_H
#define STORE_TESTUTIL_H

#include <ftw.h>
#include <lmdb.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"

#include "tests/cdx_assert.h"

/* Fails the test with the error message when rc != 0. */
#define ASSERT_OK(rc, e) CDX_ASSERT_OK(rc, (e).msg)

static inline int
tu_rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
	(void)sb;
	(void)flag;
	(void)f;
	return remove(p);
}

static inline void
tu_rmrf(const char *dir)
{
	nftw(dir, tu_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static inline char *
tu_tmpdir(void)
{
	char t[] = "/tmp/cdx_store_XXXXXX";
	char *d = mkdtemp(t);
	char *r = d ? strdup(d) : NULL;
	if (!r)
		abort();
	return r;
}

/* xorshift64* */
static inline uint64_t
tu_rand(uint64_t *st)
{
	uint64_t x = *st;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*st = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static inline double
tu_unif(uint64_t *st)
{
	return (double)(tu_rand(st) >> 11) / 9007199254740992.0;
}

static inline double
tu_gauss(uint64_t *st)
{
	double u = tu_unif(st), v = tu_unif(st);
	if (u < 1e-300)
		u = 1e-300;
	return sqrt(-2 * log(u)) * cos(2 * 3.14159265358979 * v);
}

static inline void
tu_normalise(float *v, int d)
{
	double s = 0;
	for (int i = 0; i < d; i++)
		s += (double)v[i] * v[i];
	s = 1.0 / sqrt(s);
	for (int i = 0; i < d; i++)
		v[i] = (float)(v[i] * s);
}

/* n normalised vectors from a mixture of nc clusters with spread in
 * [0.3, 1.2]; centres are drawn from seed `cseed` so queries can come from
 * the same mixture. */
static inline void
tu_clustered(float *out, size_t n, int d, int nc, uint64_t cseed,
	     uint64_t seed)
{
	float *cent = malloc((size_t)nc * d * sizeof(float));
	float *spread = malloc((size_t)nc * sizeof(float));
	uint64_t cs = cseed | 1, st = seed | 1;
	for (int c = 0; c < nc; c++) {
		for (int i = 0; i < d; i++)
			cent[(size_t)c * d + i] = (float)tu_gauss(&cs);
		tu_normalise(cent + (size_t)c * d, d);
		spread[c] = (float)(0.3 + 0.9 * tu_unif(&cs));
	}
	for (size_t j = 0; j < n; j++) {
		int c = (int)(tu_rand(&st) % (uint64_t)nc);
		float *v = out + j * d;
		float sc = spread[c] / sqrtf((float)d);
		for (int i = 0; i < d; i++)
			v[i] = cent[(size_t)c * d + i] +
			       sc * (float)tu_gauss(&st);
		tu_normalise(v, d);
	}
	free(spread);
	free(cent);
}

/* Opens (or creates) the store in dir for a dim-d model of the given id,
 * with the given index kind; the test fails if it cannot. */
static inline store *
tu_store_open(const char *dir, int dim, const char *model, const char *kind)
{
	store_params p = store_default_params();
	store *s = NULL;
	cdx_error e;
	p.dim = dim;
	p.model_id = model;
	p.index_kind = kind;
	ASSERT_OK(store_open(dir, &p, &s, &e), e);
	return s;
}

/* ---- a store as an older build left it (raw LMDB) ---- */

/* Opens the LMDB environment of the store in dir, read-only when rdonly,
 * and begins a transaction: *env and *txn, for tu_lmdb_end. */
static inline void
tu_lmdb_begin(const char *dir, int rdonly, MDB_env **env, MDB_txn **txn)
{
	assert_int_equal(mdb_env_create(env), 0);
	assert_int_equal(mdb_env_set_maxdbs(*env, 16), 0);
	assert_int_equal(mdb_env_open(*env, dir,
	    MDB_NOTLS | (rdonly ? MDB_RDONLY : 0), 0600), 0);
	assert_int_equal(mdb_txn_begin(*env, NULL, rdonly ? MDB_RDONLY : 0,
	    txn), 0);
}

/* Commits txn (commit) or aborts it, and closes env. */
static inline void
tu_lmdb_end(MDB_env *env, MDB_txn *txn, int commit)
{
	if (commit)
		assert_int_equal(mdb_txn_commit(txn), 0);
	else
		mdb_txn_abort(txn);
	mdb_env_close(env);
}

/* Writes schema into the store's meta table in txn. */
static inline void
tu_meta_put_schema(MDB_txn *txn, uint32_t schema)
{
	MDB_dbi meta;
	assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
	MDB_val k = { 6, "schema" }, v = { sizeof(schema), &schema };
	assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
}

/* The schema the store in dir records. */
static inline uint32_t
tu_schema_of(const char *dir)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi meta;
	uint32_t schema = 0;
	tu_lmdb_begin(dir, 1, &env, &txn);
	assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
	MDB_val k = { 6, "schema" }, v;
	assert_int_equal(mdb_get(txn, meta, &k, &v), 0);
	memcpy(&schema, v.mv_data, sizeof(schema));
	tu_lmdb_end(env, txn, 0);
	return schema;
}

#endif
