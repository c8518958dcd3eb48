/*
 * Embeddings in half precision (schema 4): every record is written as
 * binary16 (REC_MAGIC16, 2 bytes a dimension), reads give values within
 * STORE_EMB_ABS_ERR of what was put and a cosine above 0.99999; a
 * schema-3 store (float32 records) is converted when it is opened, in
 * more than one transaction, with its tags scored again and its index
 * rebuilt, and a store left half converted (a crash during the
 * migration) opens and finishes it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <lmdb.h>

#include "classify/classify.h"
#include "common/vec.h"
#include "store/internal.h"
#include "tests/store_testutil.h"
#include "tests/cls_testutil.h"
#include "tests/testutil.h"

enum { D = 64, N = 2600 }; /* N: more than two migration steps */
#define MODEL "test@f16"

static char g_log[TU_LOG_CAP];

static store *
open_store(const char *dir)
{
	return tu_store_open(dir, D, MODEL, "flat");
}

/* Image i's embedding, unit length in float32 (as a schema-3 build kept
 * it). */
static void
orig(int i, float *v)
{
	uint64_t st = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
	double ss = 0;
	for (int k = 0; k < D; k++) {
		v[k] = (float)(tu_unif(&st) - 0.5);
		ss += (double)v[k] * v[k];
	}
	for (int k = 0; k < D; k++)
		v[k] = (float)(v[k] / sqrt(ss));
}

static void
put_all(store *s)
{
	cdx_error e;
	store_image *imgs = calloc(N, sizeof(*imgs));
	float *vecs = malloc(sizeof(float) * N * D);
	char (*paths)[32] = malloc(32 * (size_t)N);
	assert_true(imgs && vecs && paths);
	for (int i = 0; i < N; i++) {
		snprintf(paths[i], 32, "/h/%05d.jpg", i);
		orig(i, vecs + (size_t)i * D);
		imgs[i].path = paths[i];
		imgs[i].size = 1000 + i;
		imgs[i].mtime_ns = 1;
		imgs[i].hash[0] = (uint8_t)i;
		imgs[i].hash[1] = (uint8_t)(i >> 8);
		imgs[i].capture_time = STORE_TIME_UNKNOWN;
		imgs[i].embedding = vecs + (size_t)i * D;
	}
	ASSERT_OK(store_image_put(s, imgs, N, &e), e);
	free(imgs);
	free(vecs);
	free(paths);
}

/* Rewrites records as a schema-3 build wrote them (float32, REC_MAGIC)
 * with their float32 embeddings: every record when every, else every
 * other one; the schema becomes 3. */
static void
make_schema_3(const char *dir, int every)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi rec;
	MDB_cursor *c;
	MDB_val k, v;
	tu_lmdb_begin(dir, 0, &env, &txn);
	assert_int_equal(mdb_dbi_open(txn, "rec", MDB_INTEGERKEY, &rec), 0);
	assert_int_equal(mdb_cursor_open(txn, rec, &c), 0);
	uint64_t *ids = malloc(sizeof(*ids) * N);
	size_t n = 0;
	while (mdb_cursor_get(c, &k, &v, n ? MDB_NEXT : MDB_FIRST) == 0)
		memcpy(&ids[n++], k.mv_data, sizeof(*ids));
	mdb_cursor_close(c);
	assert_int_equal(n, N);
	unsigned char buf[sizeof(rec_hdr) + D * 4 + 64];
	for (size_t i = 0; i < n; i += every ? 1 : 2) {
		rec_hdr h;
		k = (MDB_val){ sizeof(ids[i]), &ids[i] };
		assert_int_equal(mdb_get(txn, rec, &k, &v), 0);
		memcpy(&h, v.mv_data, sizeof(h));
		assert_int_equal(h.magic, REC_MAGIC16);
		assert_int_equal(v.mv_size, sizeof(h) + 2 * D + h.path_len);
		char path[64];
		memcpy(path, (char *)v.mv_data + sizeof(h) + 2 * D, h.path_len);
		path[h.path_len] = '\0';
		int img;
		assert_int_equal(sscanf(path, "/h/%d.jpg", &img), 1);
		float e[D];
		orig(img, e);
		h.magic = REC_MAGIC;
		memcpy(buf, &h, sizeof(h));
		memcpy(buf + sizeof(h), e, sizeof(e));
		memcpy(buf + sizeof(h) + sizeof(e), path, h.path_len);
		v = (MDB_val){ sizeof(h) + sizeof(e) + h.path_len, buf };
		assert_int_equal(mdb_put(txn, rec, &k, &v, 0), 0);
	}
	free(ids);
	tu_meta_put_schema(txn, 3);
	tu_lmdb_end(env, txn, 1);
}

/* Every record in dir is binary16 and of the right size. */
static void
all_half(const char *dir)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi rec;
	MDB_cursor *c;
	MDB_val k, v;
	size_t n = 0;
	tu_lmdb_begin(dir, 1, &env, &txn);
	assert_int_equal(mdb_dbi_open(txn, "rec", MDB_INTEGERKEY, &rec), 0);
	assert_int_equal(mdb_cursor_open(txn, rec, &c), 0);
	while (mdb_cursor_get(c, &k, &v, n ? MDB_NEXT : MDB_FIRST) == 0) {
		rec_hdr h;
		memcpy(&h, v.mv_data, sizeof(h));
		assert_int_equal(h.magic, REC_MAGIC16);
		assert_int_equal(v.mv_size, sizeof(h) + 2 * D + h.path_len);
		n++;
	}
	mdb_cursor_close(c);
	tu_lmdb_end(env, txn, 0);
	assert_int_equal(n, N);
}

struct check {
	int n;
	double min_cos;
};

/* A stored embedding is a binary16 vector near the float32 one. */
static int
check_one(void *user, const store_image *img)
{
	struct check *c = user;
	int i;
	float o[D];
	assert_int_equal(sscanf(img->path, "/h/%d.jpg", &i), 1);
	orig(i, o);
	double dot = 0, nn = 0;
	for (int k = 0; k < D; k++) {
		float x = img->embedding[k];
		if (cdx_f32_from_f16(cdx_f16_from_f32(x)) != x ||
		    fabsf(x - o[k]) > STORE_EMB_ABS_ERR)
			fail_msg("image %d, [%d]: %.9g stored for %.9g", i, k,
				 (double)x, (double)o[k]);
		dot += (double)x * o[k];
		nn += (double)x * x;
	}
	double cos = dot / sqrt(nn);
	if (cos < c->min_cos)
		c->min_cos = cos;
	c->n++;
	return 0;
}

/* The store in dir, migrated or not, reads as it should: every record
 * binary16, every embedding close to what was put, exact search finds an
 * image from its own float32 embedding. */
static void
check_store(const char *dir, store *s)
{
	cdx_error e;
	struct check c = { 0, 1 };
	ASSERT_OK(store_image_foreach(s, check_one, &c, &e), e);
	assert_int_equal(c.n, N);
	printf("    lowest cosine to float32 of %d: %.9f\n", N, c.min_cos);
	assert_true(c.min_cos >= 0.99999);
	ASSERT_OK(store_verify(s, &e), e);
	for (int i = 0; i < N; i += 397) {
		float q[D];
		store_results *r;
		char want[32];
		orig(i, q);
		ASSERT_OK(store_search(s, q, 3, NULL, &r, &e), e);
		snprintf(want, sizeof(want), "/h/%05d.jpg", i);
		assert_string_equal(r->hits[0].path, want);
		/* the score is the dot product with the stored vector:
		 * within 2^-11 of the float32 one (store.h) */
		if (fabsf(r->hits[0].score - 1) > 1.0f / 2048)
			fail_msg("score %.9f", (double)r->hits[0].score);
		store_results_free(r);
	}
	all_half(dir);
}

static void
migrate(int every)
{
	char *dir = tu_tmpdir();
	store *s = open_store(dir);
	static const char *const labels[] = { "a", "b", "c" };
	/* tagged before the conversion: store_verify checks the tags
	 * against the converted values after it */
	cls_set *set = tu_cls_set("abc", labels, 3, D, CLS_SOFTMAX, 0, 0.0f,
				  100.0f, MODEL, 5);
	cdx_error e;
	uint64_t tagged;
	ASSERT_OK(store_tagset_put(s, set, &tagged, &e), e);
	cls_set_free(set);
	put_all(s);
	check_store(dir, s);
	store_close(s);
	make_schema_3(dir, every);
	assert_int_equal(tu_schema_of(dir), 3);
	g_log[0] = '\0';
	cdx_log_set(tu_log_capture, g_log, CDX_LOG_INFO);
	s = open_store(dir);
	cdx_log_set(NULL, NULL, CDX_LOG_INFO);
	char want[64];
	snprintf(want, sizeof(want), "schema 3 -> 4 (%d embeddings",
		 every ? N : N / 2);
	if (!strstr(g_log, want))
		fail_msg("log: %s", g_log);
	assert_int_equal(tu_schema_of(dir), 4);
	store_stats st;
	store_get_stats(s, &st);
	assert_true(st.rebuilt_on_open);
	check_store(dir, s);
	store_close(s);
	/* Once: the next open finds nothing to do. */
	g_log[0] = '\0';
	cdx_log_set(tu_log_capture, g_log, CDX_LOG_INFO);
	s = open_store(dir);
	cdx_log_set(NULL, NULL, CDX_LOG_INFO);
	assert_null(strstr(g_log, "schema"));
	check_store(dir, s);
	store_close(s);
	tu_rmrf(dir);
	free(dir);
}

static void
test_schema_3_migrates(void **state)
{
	(void)state;
	migrate(1);
}

/* A crash during the migration leaves float32 and binary16 records side
 * by side, with schema 3: the next open converts the rest. */
static void
test_half_migrated_store(void **state)
{
	(void)state;
	migrate(0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_schema_3_migrates),
		cmocka_unit_test(test_half_migrated_store),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
