/*
 * store_tags.c - tag sets and tags in the store: every image's tags equal
 * a fresh scoring of its stored embedding by every set of the store's
 * model (checked against cls_score/cls_applied directly, image by image)
 * through puts, replacements, renames, moves, deletes of every kind, set
 * changes and deletes, reopen, re-embedding and a schema-1 store's
 * migration; counts and search filters against brute force; bad input.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <lmdb.h>
#include <pthread.h>
#include <time.h>

#include "classify/classify.h"
#include "common/threads.h"
#include "tests/store_testutil.h"
#include "tests/cls_testutil.h"
#include "tests/testutil.h"

enum { D = 16, NIMG = 400 };
#define MODEL "test@tags"

static store *
open_store_with(const char *dir, const char *model, int reembed,
		size_t exact_max)
{
	store_params p = store_default_params();
	store *s = NULL;
	cdx_error e;
	p.dim = D;
	p.model_id = model;
	p.index_kind = "flat";
	p.reembed = reembed;
	p.exact_filter_max = exact_max;
	ASSERT_OK(store_open(dir, &p, &s, &e), e);
	return s;
}

static store *
open_store(const char *dir)
{
	return open_store_with(dir, MODEL, 0, 0);
}

static cls_set *
mkset(const char *name, const char *const *names, size_t n, int kind,
      int multi, float threshold, float scale, const char *model,
      uint64_t seed)
{
	return tu_cls_set(name, names, n, D, kind, multi, threshold, scale,
			  model, seed);
}

static const char *const COLORS[] = { "red", "green", "blue", "grey" };
static const char *const SHAPES[] = { "circle", "square", "red", "star",
				      "heart" };

/* "color": single-label softmax; "shape": multi-label sigmoid (with a
 * label "red" too, so that "red" names a label of both). */
static cls_set *
color_set(uint64_t seed)
{
	return mkset("color", COLORS, 4, CLS_SOFTMAX, 0, 0.4f, 8.0f, MODEL,
		     seed);
}

static cls_set *
shape_set(uint64_t seed)
{
	return mkset("shape", SHAPES, 5, CLS_SIGMOID, 1, 0.3f, 4.0f, MODEL,
		     seed);
}

static void
put_set(store *s, const cls_set *c, uint64_t *tagged)
{
	cdx_error e;
	ASSERT_OK(store_tagset_put(s, c, tagged, &e), e);
}

/* ---- the expected tags: a fresh scoring of each stored embedding ---- */

typedef struct want_tag {
	char set[CLS_NAME_MAX + 1];
	char label[CLS_LABEL_MAX + 1];
	float prob;
} want_tag;

typedef struct sets_ctx {
	cls_set *v[8];
	size_t n;
} sets_ctx;

static int
copy_set(void *user, const cls_set *c)
{
	sets_ctx *x = user;
	void *b;
	size_t len;
	cdx_error e;
	ASSERT_OK(cls_set_encode(c, &b, &len, &e), e);
	ASSERT_OK(cls_set_decode(b, len, &x->v[x->n++], &e), e);
	free(b);
	return 0;
}

static void
sets_load(store *s, sets_ctx *x)
{
	cdx_error e;
	x->n = 0;
	ASSERT_OK(store_tagset_foreach(s, copy_set, x, &e), e);
}

static void
sets_free(sets_ctx *x)
{
	for (size_t i = 0; i < x->n; i++)
		cls_set_free(x->v[i]);
	x->n = 0;
}

/* The tags of an embedding under the sets of model (by set name, then
 * highest prob first, as store_image_tags). */
static size_t
want_tags(const sets_ctx *x, const char *model, const float *emb,
	  want_tag *out)
{
	size_t n = 0;
	for (size_t i = 0; i < x->n; i++) {
		const cls_set *c = x->v[i];
		float prob[CLS_MAX_LABELS];
		uint32_t idx[CLS_MAX_LABELS];
		cdx_error e;
		if (strcmp(c->model_key, model) != 0)
			continue;
		ASSERT_OK(cls_score(c, emb, 1, D, prob, &e), e);
		size_t k = cls_applied(c, prob, idx);
		for (size_t j = 0; j < k; j++) {
			snprintf(out[n].set, sizeof(out[n].set), "%s", c->name);
			snprintf(out[n].label, sizeof(out[n].label), "%s",
				 c->labels[idx[j]]);
			out[n].prob = prob[idx[j]];
			n++;
		}
	}
	return n;
}

typedef struct check_ctx {
	store *s;
	sets_ctx sets;
	const char *model;
	size_t images, tags;
} check_ctx;

static int
check_one(void *user, const store_image *img)
{
	check_ctx *c = user;
	want_tag want[32];
	store_tags *t;
	cdx_error e;
	size_t n = want_tags(&c->sets, c->model, img->embedding, want);
	ASSERT_OK(store_image_tags(c->s, img->id, &t, &e), e);
	if (t->n != n)
		fail_msg("image %llu (%s): %zu tags, %zu expected",
			 (unsigned long long)img->id, img->path, t->n, n);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(t->tags[i].set, want[i].set);
		assert_string_equal(t->tags[i].label, want[i].label);
		assert_true(fabsf(t->tags[i].prob - want[i].prob) <= 1e-5f);
	}
	store_tags_free(t);
	c->images++;
	c->tags += n;
	return 0;
}

/* Every image's tags equal a fresh scoring, counts agree with them and
 * store_verify passes.  Returns the number of tags. */
static size_t
check_all(store *s, const char *model)
{
	check_ctx c = { .s = s, .model = model };
	cdx_error e;
	sets_load(s, &c.sets);
	ASSERT_OK(store_image_foreach(s, check_one, &c, &e), e);
	assert_int_equal(c.images, store_image_count(s));
	store_tag_counts *tc;
	ASSERT_OK(store_tag_counts_get(s, NULL, &tc, &e), e);
	size_t labels = 0, sum = 0;
	for (size_t i = 0; i < c.sets.n; i++)
		labels += c.sets.v[i]->n;
	assert_int_equal(tc->n, labels);
	for (size_t i = 0; i < tc->n; i++)
		sum += tc->counts[i].images;
	assert_int_equal(sum, c.tags);
	store_tag_counts_free(tc);
	ASSERT_OK(store_verify(s, &e), e);
	sets_free(&c.sets);
	return c.tags;
}

/* ---- images ---- */

static void
path_of(int i, char *buf, size_t cap)
{
	snprintf(buf, cap, "/photos/%s/img%04d.jpg", i % 3 ? "a" : "b", i);
}

/* Puts images [from, to) with embeddings from seed. */
static void
put_images(store *s, int from, int to, uint64_t seed)
{
	size_t n = (size_t)(to - from);
	store_image *imgs = calloc(n, sizeof(*imgs));
	float *v = malloc(n * D * sizeof(float));
	char (*paths)[64] = malloc(n * 64);
	cdx_error e;
	tu_clustered(v, n, D, 12, 5, seed);
	for (size_t i = 0; i < n; i++) {
		path_of(from + (int)i, paths[i], 64);
		imgs[i].path = paths[i];
		imgs[i].size = 100;
		imgs[i].mtime_ns = (int64_t)(1600000000 + from + (int)i) *
				   1000000000;
		imgs[i].capture_time = STORE_TIME_UNKNOWN;
		imgs[i].embedding = v + i * D;
	}
	ASSERT_OK(store_image_put(s, imgs, n, &e), e);
	free(paths);
	free(v);
	free(imgs);
}

static uint64_t
id_of(store *s, const char *path)
{
	store_image *img;
	cdx_error e;
	ASSERT_OK(store_image_get_by_path(s, path, &img, &e), e);
	uint64_t id = img->id;
	store_image_free(img);
	return id;
}

/* The tags of id as one string "set/label,set/label,...". */
static void
tags_str(store *s, uint64_t id, char *buf, size_t cap)
{
	store_tags *t;
	cdx_error e;
	size_t o = 0;
	ASSERT_OK(store_image_tags(s, id, &t, &e), e);
	buf[0] = '\0';
	for (size_t i = 0; i < t->n && o < cap; i++)
		o += (size_t)snprintf(buf + o, cap - o, "%s/%s:%.6f,",
				      t->tags[i].set, t->tags[i].label,
				      (double)t->tags[i].prob);
	store_tags_free(t);
}

static char *g_dir;

static int
setup(void **state)
{
	(void)state;
	g_dir = tu_tmpdir();
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	tu_rmrf(g_dir);
	free(g_dir);
	return 0;
}

/* ---- tests ---- */

static void
test_tags_follow_puts_and_replacements(void **state)
{
	(void)state;
	store *s = open_store(g_dir);
	cls_set *col = color_set(1), *shp = shape_set(2);
	uint64_t tagged = 99;
	/* Sets on an empty store tag nothing. */
	put_set(s, col, &tagged);
	assert_int_equal(tagged, 0);
	put_set(s, shp, NULL);
	put_images(s, 0, NIMG, 10);
	size_t ntags = check_all(s, MODEL);
	assert_true(ntags > NIMG / 2);  /* the sets do tag images */
	/* A replaced image (same path, another embedding) is re-tagged and
	 * keeps its id. */
	char p[64], before[512], after[512];
	path_of(7, p, sizeof(p));
	uint64_t id = id_of(s, p);
	tags_str(s, id, before, sizeof(before));
	put_images(s, 0, 40, 12);
	assert_int_equal(id_of(s, p), id);
	tags_str(s, id, after, sizeof(after));
	assert_string_not_equal(before, after);
	check_all(s, MODEL);
	/* The tags survive a reopen. */
	store_close(s);
	s = open_store(g_dir);
	char reopened[512];
	tags_str(s, id, reopened, sizeof(reopened));
	assert_string_equal(reopened, after);
	check_all(s, MODEL);
	/* A batch put tags too. */
	store_batch *b;
	cdx_error e;
	float v[D];
	uint64_t st = 77;
	for (int j = 0; j < D; j++)
		v[j] = (float)tu_gauss(&st);
	store_image img = { .path = "/photos/new.jpg", .size = 1,
			    .capture_time = STORE_TIME_UNKNOWN, .embedding = v };
	ASSERT_OK(store_batch_begin(s, &b, &e), e);
	ASSERT_OK(store_batch_put(b, &img, &e), e);
	ASSERT_OK(store_batch_commit(b, NULL, &e), e);
	check_all(s, MODEL);
	store_close(s);
	cls_set_free(col);
	cls_set_free(shp);
}

static void
test_tags_follow_renames_and_moves(void **state)
{
	(void)state;
	store *s = open_store(g_dir);
	cls_set *col = color_set(1), *shp = shape_set(2);
	cdx_error e;
	put_set(s, col, NULL);
	put_set(s, shp, NULL);
	put_images(s, 0, NIMG, 10);
	char p[64], q[64], was[512], now[512];
	/* store_image_rename */
	path_of(5, p, sizeof(p));
	uint64_t id = id_of(s, p);
	tags_str(s, id, was, sizeof(was));
	const char *from[] = { p }, *to[] = { "/photos/renamed.jpg" };
	size_t nr;
	ASSERT_OK(store_image_rename(s, from, to, 1, &nr, &e), e);
	assert_int_equal(nr, 1);
	tags_str(s, id, now, sizeof(now));
	assert_string_equal(now, was);
	/* store_batch_rename over an existing record: the target's record
	 * and its tags go, the moved one keeps its tags. */
	path_of(6, p, sizeof(p));
	path_of(9, q, sizeof(q));
	uint64_t id6 = id_of(s, p), id9 = id_of(s, q);
	tags_str(s, id6, was, sizeof(was));
	store_batch *b;
	ASSERT_OK(store_batch_begin(s, &b, &e), e);
	ASSERT_OK(store_batch_rename(b, p, q, 1, &e), e);
	ASSERT_OK(store_batch_commit(b, NULL, &e), e);
	tags_str(s, id6, now, sizeof(now));
	assert_string_equal(now, was);
	store_tags *t;
	assert_int_equal(store_image_tags(s, id9, &t, &e), CDX_ENOTFOUND);
	check_all(s, MODEL);
	/* A folder moved (the indexer's move_dir: a batch rename of every
	 * record under it). */
	typedef struct { char from[NIMG][64]; size_t n; } moved;
	moved *m = calloc(1, sizeof(*m));
	for (int i = 0; i < NIMG; i++) {
		path_of(i, p, sizeof(p));
		if (strncmp(p, "/photos/b/", 10) == 0 && i != 6)
			snprintf(m->from[m->n++], 64, "%s", p);
	}
	char *before = calloc(m->n, 512);
	uint64_t *ids = calloc(m->n, sizeof(*ids));
	ASSERT_OK(store_batch_begin(s, &b, &e), e);
	for (size_t i = 0; i < m->n; i++) {
		ids[i] = id_of(s, m->from[i]);
		tags_str(s, ids[i], before + i * 512, 512);
		snprintf(q, sizeof(q), "/moved/%s", m->from[i] + 10);
		ASSERT_OK(store_batch_rename(b, m->from[i], q, 1, &e), e);
	}
	store_batch_counts cnt;
	ASSERT_OK(store_batch_commit(b, &cnt, &e), e);
	assert_int_equal(cnt.renamed, m->n);
	for (size_t i = 0; i < m->n; i++) {
		tags_str(s, ids[i], now, sizeof(now));
		assert_string_equal(now, before + i * 512);
	}
	check_all(s, MODEL);
	free(ids);
	free(before);
	free(m);
	store_close(s);
	cls_set_free(col);
	cls_set_free(shp);
}

static size_t
label_count(store *s, const char *set, const char *label)
{
	store_tag_counts *tc;
	cdx_error e;
	size_t n = SIZE_MAX;
	ASSERT_OK(store_tag_counts_get(s, set, &tc, &e), e);
	for (size_t i = 0; i < tc->n; i++)
		if (strcmp(tc->counts[i].label, label) == 0)
			n = (size_t)tc->counts[i].images;
	store_tag_counts_free(tc);
	return n;
}

static size_t
total_count(store *s)
{
	store_tag_counts *tc;
	cdx_error e;
	size_t n = 0;
	ASSERT_OK(store_tag_counts_get(s, NULL, &tc, &e), e);
	for (size_t i = 0; i < tc->n; i++)
		n += (size_t)tc->counts[i].images;
	store_tag_counts_free(tc);
	return n;
}

static void
test_tags_follow_deletes(void **state)
{
	(void)state;
	store *s = open_store(g_dir);
	cls_set *col = color_set(1), *shp = shape_set(2);
	cdx_error e;
	char p[64];
	put_set(s, col, NULL);
	put_set(s, shp, NULL);
	put_images(s, 0, NIMG, 10);
	size_t all = check_all(s, MODEL);
	assert_int_equal(total_count(s), all);
	/* by id */
	uint64_t ids[10];
	for (int i = 0; i < 10; i++) {
		path_of(i, p, sizeof(p));
		ids[i] = id_of(s, p);
	}
	size_t nd;
	ASSERT_OK(store_image_delete(s, ids, 10, &nd, &e), e);
	assert_int_equal(nd, 10);
	size_t left = check_all(s, MODEL);
	assert_true(left < all);
	/* by path */
	char paths[10][64];
	const char *pp[10];
	for (int i = 0; i < 10; i++) {
		path_of(10 + i, paths[i], 64);
		pp[i] = paths[i];
	}
	ASSERT_OK(store_image_delete_paths(s, pp, 10, &nd, &e), e);
	assert_int_equal(nd, 10);
	check_all(s, MODEL);
	/* batch: by id and by path (forget_under's way) */
	store_batch *b;
	ASSERT_OK(store_batch_begin(s, &b, &e), e);
	path_of(20, p, sizeof(p));
	ASSERT_OK(store_batch_delete(b, id_of(s, p), &e), e);
	for (int i = 21; i < 60; i++) {
		path_of(i, p, sizeof(p));
		ASSERT_OK(store_batch_delete_path(b, p, &e), e);
	}
	ASSERT_OK(store_batch_commit(b, NULL, &e), e);
	check_all(s, MODEL);
	/* everything */
	for (int i = 60; i < NIMG; i++) {
		path_of(i, p, sizeof(p));
		const char *one = p;
		ASSERT_OK(store_image_delete_paths(s, &one, 1, NULL, &e), e);
	}
	assert_int_equal(store_image_count(s), 0);
	assert_int_equal(check_all(s, MODEL), 0);
	assert_int_equal(total_count(s), 0);
	store_close(s);
	cls_set_free(col);
	cls_set_free(shp);
}

static void
test_changed_set_retags_and_delete(void **state)
{
	(void)state;
	store *s = open_store(g_dir);
	cls_set *col = color_set(1), *col2 = color_set(99);
	cdx_error e;
	uint64_t tagged;
	put_images(s, 0, NIMG, 10);
	put_set(s, col, &tagged);
	size_t n1 = check_all(s, MODEL);
	assert_int_equal(tagged, n1); /* single-label: one tag per image */
	assert_true(tagged > 0);
	/* Other weights and a higher threshold: every image re-tagged. */
	col2->threshold = 0.6f;
	put_set(s, col2, &tagged);
	size_t n2 = check_all(s, MODEL);
	assert_int_equal(tagged, n2);
	assert_true(n2 < n1);
	cls_set *got;
	ASSERT_OK(store_tagset_get(s, "color", &got, &e), e);
	assert_true(fabsf(got->threshold - 0.6f) < 1e-7f);
	assert_memory_equal(got->w, col2->w, sizeof(float) * 4 * D);
	cls_set_free(got);
	/* The new labels replace the old: a set with other label names. */
	static const char *const other[] = { "cyan", "magenta" };
	cls_set *o = mkset("color", other, 2, CLS_SOFTMAX, 0, 0.0f, 1.0f,
			   MODEL, 5);
	put_set(s, o, &tagged);
	assert_int_equal(tagged, store_image_count(s));
	assert_int_equal(label_count(s, "color", "red"), SIZE_MAX);
	assert_int_equal(label_count(s, "color", "cyan") +
				 label_count(s, "color", "magenta"),
			 store_image_count(s));
	check_all(s, MODEL);
	/* Delete: the set and its tags go; another set's stay. */
	cls_set *shp = shape_set(2);
	put_set(s, shp, NULL);
	size_t with_shape = check_all(s, MODEL);
	ASSERT_OK(store_tagset_delete(s, "color", &e), e);
	assert_int_equal(check_all(s, MODEL), with_shape - store_image_count(s));
	assert_int_equal(store_tagset_get(s, "color", &got, &e), CDX_ENOTFOUND);
	assert_int_equal(store_tagset_delete(s, "color", &e), CDX_ENOTFOUND);
	store_tag_counts *tc;
	assert_int_equal(store_tag_counts_get(s, "color", &tc, &e),
			 CDX_ENOTFOUND);
	/* A set of the name again gets a fresh start. */
	put_set(s, col, &tagged);
	assert_int_equal(tagged, n1);
	check_all(s, MODEL);
	store_close(s);
	cls_set_free(shp);
	cls_set_free(o);
	cls_set_free(col2);
	cls_set_free(col);
}

static void
test_other_model_applies_to_nothing(void **state)
{
	(void)state;
	store *s = open_store(g_dir);
	cls_set *col = color_set(1);
	cdx_error e;
	uint64_t tagged = 99;
	put_images(s, 0, 100, 10);
	put_set(s, col, NULL);
	assert_true(check_all(s, MODEL) > 0);
	/* The same name made by another model: kept, its tags dropped. */
	snprintf(col->model_key, sizeof(col->model_key), "other@model");
	put_set(s, col, &tagged);
	assert_int_equal(tagged, 0);
	assert_int_equal(check_all(s, MODEL), 0);
	put_images(s, 100, 150, 12);
	assert_int_equal(total_count(s), 0);
	assert_int_equal(label_count(s, "color", "red"), 0);
	cls_set *got;
	ASSERT_OK(store_tagset_get(s, "color", &got, &e), e);
	assert_string_equal(got->model_key, "other@model");
	cls_set_free(got);
	/* Put again for this model: it applies. */
	snprintf(col->model_key, sizeof(col->model_key), "%s", MODEL);
	put_set(s, col, &tagged);
	assert_true(tagged > 0); /* single-label: one tag per tagged image */
	assert_int_equal(check_all(s, MODEL), tagged);
	store_close(s);
	cls_set_free(col);
}

static void
test_reembed_keeps_sets_drops_tags(void **state)
{
	(void)state;
	store *s = open_store(g_dir);
	cls_set *col = color_set(1), *shp = shape_set(2);
	put_set(s, col, NULL);
	put_set(s, shp, NULL);
	put_images(s, 0, 100, 10);
	assert_true(check_all(s, MODEL) > 0);
	store_close(s);
	s = open_store_with(g_dir, "new@model", 1, 0);
	sets_ctx x;
	sets_load(s, &x);
	assert_int_equal(x.n, 2);
	assert_string_equal(x.v[0]->name, "color");
	assert_string_equal(x.v[1]->name, "shape");
	sets_free(&x);
	assert_int_equal(store_image_count(s), 0);
	assert_int_equal(total_count(s), 0);
	/* The new model's images: the old sets apply to nothing. */
	put_images(s, 0, 100, 10);
	assert_int_equal(check_all(s, "new@model"), 0);
	/* Until they are made again for the new model. */
	snprintf(col->model_key, sizeof(col->model_key), "new@model");
	uint64_t tagged;
	put_set(s, col, &tagged);
	assert_true(tagged > 0);
	assert_int_equal(check_all(s, "new@model"), tagged);
	store_close(s);
	cls_set_free(col);
	cls_set_free(shp);
}

static void
test_counts(void **state)
{
	(void)state;
	store *s = open_store(g_dir);
	cls_set *col = color_set(1), *shp = shape_set(2);
	cdx_error e;
	store_tag_counts *tc;
	ASSERT_OK(store_tag_counts_get(s, NULL, &tc, &e), e);
	assert_int_equal(tc->n, 0);
	store_tag_counts_free(tc);
	put_set(s, shp, NULL);
	put_set(s, col, NULL);
	/* Zero counts included, in set then label order. */
	ASSERT_OK(store_tag_counts_get(s, NULL, &tc, &e), e);
	assert_int_equal(tc->n, 9);
	for (size_t i = 0; i < 4; i++) {
		assert_string_equal(tc->counts[i].set, "color");
		assert_string_equal(tc->counts[i].label, COLORS[i]);
		assert_int_equal(tc->counts[i].images, 0);
	}
	for (size_t i = 0; i < 5; i++) {
		assert_string_equal(tc->counts[4 + i].set, "shape");
		assert_string_equal(tc->counts[4 + i].label, SHAPES[i]);
	}
	store_tag_counts_free(tc);
	put_images(s, 0, NIMG, 10);
	/* Each count equals the images having that tag. */
	check_ctx c = { .s = s, .model = MODEL };
	sets_load(s, &c.sets);
	ASSERT_OK(store_tag_counts_get(s, "shape", &tc, &e), e);
	assert_int_equal(tc->n, 5);
	for (size_t l = 0; l < tc->n; l++) {
		size_t want = 0;
		for (int i = 0; i < NIMG; i++) {
			char p[64], str[512], needle[64];
			path_of(i, p, sizeof(p));
			tags_str(s, id_of(s, p), str, sizeof(str));
			snprintf(needle, sizeof(needle), "shape/%s:",
				 tc->counts[l].label);
			want += strstr(str, needle) != NULL;
		}
		assert_int_equal(tc->counts[l].images, want);
	}
	store_tag_counts_free(tc);
	sets_free(&c.sets);
	store_close(s);
	cls_set_free(col);
	cls_set_free(shp);
}

/* ---- filters against brute force ---- */

typedef struct brute {
	size_t n;
	uint64_t ids[NIMG + 8];
	float emb[NIMG + 8][D];
	int64_t mtime_s[NIMG + 8];
	char path[NIMG + 8][64];
	want_tag tags[NIMG + 8][16];
	size_t ntags[NIMG + 8];
	sets_ctx sets;
} brute;

static int
brute_add(void *user, const store_image *img)
{
	brute *b = user;
	size_t i = b->n++;
	b->ids[i] = img->id;
	memcpy(b->emb[i], img->embedding, sizeof(b->emb[i]));
	b->mtime_s[i] = img->mtime_ns / 1000000000;
	snprintf(b->path[i], 64, "%s", img->path);
	b->ntags[i] = want_tags(&b->sets, MODEL, img->embedding, b->tags[i]);
	return 0;
}

/* Whether image i has tag (the store_filter rule: "SET/LABEL" when the
 * text before the first '/' names a set, else "LABEL" in any set). */
static int
brute_has(const brute *b, size_t i, const char *tag)
{
	const char *sl = strchr(tag, '/');
	int named = 0;
	for (size_t j = 0; sl && j < b->sets.n; j++)
		named |= strlen(b->sets.v[j]->name) == (size_t)(sl - tag) &&
			 strncmp(b->sets.v[j]->name, tag, (size_t)(sl - tag)) == 0;
	for (size_t j = 0; j < b->ntags[i]; j++) {
		const want_tag *t = &b->tags[i][j];
		if (named ? strncmp(t->set, tag, (size_t)(sl - tag)) == 0 &&
				    t->set[sl - tag] == '\0' &&
				    strcmp(t->label, sl + 1) == 0
			  : strcmp(t->label, tag) == 0)
			return 1;
	}
	return 0;
}

typedef struct scored {
	float score;
	uint64_t id;
} scored;

static int
scored_cmp(const void *a, const void *b)
{
	const scored *x = a, *y = b;
	if (x->score != y->score)
		return x->score < y->score ? 1 : -1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static void
check_search(store *s, const brute *b, const float *q, size_t k,
	     const store_filter *f, int with_vec)
{
	scored *all = malloc(b->n * sizeof(*all));
	size_t m = 0;
	for (size_t i = 0; i < b->n; i++) {
		int ok = 1;
		for (size_t j = 0; j < f->n_tags && ok; j++)
			ok = brute_has(b, i, f->tags[j]);
		for (size_t j = 0; j < f->n_not_tags && ok; j++)
			ok = !brute_has(b, i, f->not_tags[j]);
		if (ok && f->path_prefix)
			ok = strncmp(b->path[i], f->path_prefix,
				     strlen(f->path_prefix)) == 0;
		if (ok && f->time_field == STORE_TIME_MTIME)
			ok = b->mtime_s[i] >= f->time_min &&
			     b->mtime_s[i] <= f->time_max;
		if (!ok)
			continue;
		double dot = 0;
		for (int d = 0; d < D; d++)
			dot += (double)b->emb[i][d] * q[d];
		all[m++] = (scored){ (float)dot, b->ids[i] };
	}
	qsort(all, m, sizeof(*all), scored_cmp);
	store_results *r;
	cdx_error e;
	if (with_vec)
		ASSERT_OK(store_search_vectors(s, q, k, f, &r, &e), e);
	else
		ASSERT_OK(store_search(s, q, k, f, &r, &e), e);
	size_t want = m < k ? m : k;
	if (r->n != want)
		fail_msg("%zu hits, %zu expected (%zu match)", r->n, want, m);
	for (size_t i = 0; i < want; i++) {
		if (r->hits[i].id != all[i].id &&
		    fabsf(r->hits[i].score - all[i].score) > 1e-5f)
			fail_msg("hit %zu: id %llu (%.6f), expected %llu "
				 "(%.6f)", i,
				 (unsigned long long)r->hits[i].id,
				 (double)r->hits[i].score,
				 (unsigned long long)all[i].id,
				 (double)all[i].score);
		assert_true(!with_vec || r->hits[i].embedding != NULL);
	}
	store_results_free(r);
	free(all);
}

static void
filters_vs_brute(size_t exact_max)
{
	store *s = open_store_with(g_dir, MODEL, 0, exact_max);
	cls_set *col = color_set(1), *shp = shape_set(2);
	cdx_error e;
	put_set(s, col, NULL);
	put_images(s, 0, NIMG, 10);
	put_set(s, shp, NULL); /* one set tags at put, one by re-tagging */
	brute *b = calloc(1, sizeof(*b));
	sets_load(s, &b->sets);
	ASSERT_OK(store_image_foreach(s, brute_add, b, &e), e);
	assert_int_equal(b->n, NIMG);
	static const char *const t_red[] = { "red" };
	static const char *const t_cred[] = { "color/red" };
	static const char *const t_sred[] = { "shape/red" };
	static const char *const t_two[] = { "color/green", "circle" };
	static const char *const t_blue[] = { "blue" };
	static const char *const t_not[] = { "star", "color/grey" };
	/* not_tags merged tag by tag: overlapping, unknown, repeated. */
	static const char *const t_not4[] = { "red", "no-such-tag", "circle",
					      "shape/red", "circle" };
	static const char *const t_unknown[] = { "no-such-tag" };
	static const char *const t_badset[] = { "nosuchset/red" };
	static const char *const t_label_none[] = { "color/circle" };
	struct {
		const char *const *tags;
		size_t n;
		const char *const *not_tags;
		size_t nn;
		const char *prefix;
		int time;
	} cases[] = {
		{ t_red, 1, NULL, 0, NULL, 0 },
		{ t_cred, 1, NULL, 0, NULL, 0 },
		{ t_sred, 1, NULL, 0, NULL, 0 },
		{ t_two, 2, NULL, 0, NULL, 0 },
		{ t_blue, 1, t_not, 2, NULL, 0 },
		{ NULL, 0, t_not, 2, NULL, 0 },
		{ NULL, 0, t_blue, 1, NULL, 0 },
		{ t_unknown, 1, NULL, 0, NULL, 0 },
		{ NULL, 0, t_unknown, 1, NULL, 0 },
		{ t_badset, 1, NULL, 0, NULL, 0 },
		{ t_label_none, 1, NULL, 0, NULL, 0 },
		{ t_red, 1, t_not, 2, "/photos/a/", 0 },
		{ NULL, 0, t_blue, 1, "/photos/b/", 1 },
		{ t_sred, 1, NULL, 0, NULL, 1 },
		{ NULL, 0, t_not4, 5, NULL, 0 },
		{ t_blue, 1, t_not4, 5, NULL, 0 },
	};
	uint64_t st = 4242;
	for (size_t ci = 0; ci < sizeof(cases) / sizeof(cases[0]); ci++) {
		for (int qi = 0; qi < 6; qi++) {
			float q[D];
			for (int d = 0; d < D; d++)
				q[d] = (float)tu_gauss(&st);
			tu_normalise(q, D);
			store_filter f = {
				.tags = cases[ci].tags,
				.n_tags = cases[ci].n,
				.not_tags = cases[ci].not_tags,
				.n_not_tags = cases[ci].nn,
				.path_prefix = cases[ci].prefix,
			};
			if (cases[ci].time) {
				f.time_field = STORE_TIME_MTIME;
				f.time_min = 1600000000 + 50;
				f.time_max = 1600000000 + 300;
			}
			size_t k = qi % 2 ? 5 : 40;
			check_search(s, b, q, k, &f, qi == 3);
		}
	}
	sets_free(&b->sets);
	free(b);
	store_close(s);
	cls_set_free(col);
	cls_set_free(shp);
}

static void
test_filters_selective(void **state)
{
	(void)state;
	filters_vs_brute(0); /* default exact_filter_max: scored exactly */
}

static void
test_filters_broad(void **state)
{
	(void)state;
	filters_vs_brute(10); /* few "selective" filters: over-fetching */
}

/* ---- bad input ---- */

static void
test_bad_input(void **state)
{
	(void)state;
	store *s = open_store(g_dir);
	cdx_error e;
	cls_set *c, *got;
	static const char *const two[] = { "a", "b" };
	uint64_t tagged = 7;
	/* dim mismatch */
	ASSERT_OK(cls_set_new("wide", 2, D + 1, 0, 0, 0, &c, &e), e);
	snprintf(c->model_key, sizeof(c->model_key), "%s", MODEL);
	assert_int_equal(store_tagset_put(s, c, &tagged, &e), CDX_EINVAL);
	assert_non_null(strstr(e.msg, "dim"));
	assert_int_equal(tagged, 7);
	cls_set_free(c);
	/* bad name */
	c = mkset("ok", two, 2, CLS_SOFTMAX, 0, 0.5f, 1.0f, MODEL, 3);
	snprintf(c->name, sizeof(c->name), "bad name!");
	assert_int_equal(store_tagset_put(s, c, NULL, &e), CDX_EINVAL);
	c->name[0] = '\0';
	assert_int_equal(store_tagset_put(s, c, NULL, &e), CDX_EINVAL);
	assert_int_equal(store_tagset_put(s, NULL, NULL, &e), CDX_EINVAL);
	cls_set_free(c);
	/* a label twice, an empty label: a tag would be ambiguous */
	static const char *const twice[] = { "a", "b", "a" };
	c = mkset("dup", twice, 3, CLS_SOFTMAX, 0, 0.5f, 1.0f, MODEL, 3);
	assert_int_equal(store_tagset_put(s, c, NULL, &e), CDX_EINVAL);
	assert_non_null(strstr(e.msg, "twice"));
	cls_set_free(c);
	static const char *const empty[] = { "a", "" };
	c = mkset("empty", empty, 2, CLS_SOFTMAX, 0, 0.5f, 1.0f, MODEL, 3);
	assert_int_equal(store_tagset_put(s, c, NULL, &e), CDX_EINVAL);
	cls_set_free(c);
	/* unknown set */
	assert_int_equal(store_tagset_get(s, "nope", &got, &e), CDX_ENOTFOUND);
	assert_non_null(strstr(e.msg, "nope"));
	assert_int_equal(store_tagset_delete(s, "nope", &e), CDX_ENOTFOUND);
	store_tag_counts *tc;
	assert_int_equal(store_tag_counts_get(s, "nope", &tc, &e),
			 CDX_ENOTFOUND);
	/* unknown image */
	store_tags *t;
	assert_int_equal(store_image_tags(s, 12345, &t, &e), CDX_ENOTFOUND);
	/* nothing was stored */
	sets_ctx x;
	sets_load(s, &x);
	assert_int_equal(x.n, 0);
	store_close(s);
}

/* ---- schema 1 -> 2 ---- */

static char g_log[TU_LOG_CAP];

/* Rewrites the store as schema `schema`: with schema 1, without the tag
 * tables, as a schema-1 build made it. */
static void
set_schema(const char *dir, uint32_t schema)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	tu_lmdb_begin(dir, 0, &env, &txn);
	if (schema == 1) {
		static const char *const tables[] = { "tagset", "tags",
						      "bylabel" };
		for (size_t i = 0; i < 3; i++) {
			assert_int_equal(mdb_dbi_open(txn, tables[i], 0, &dbi), 0);
			assert_int_equal(mdb_drop(txn, dbi, 1), 0);
		}
	}
	tu_meta_put_schema(txn, schema);
	tu_lmdb_end(env, txn, 1);
}

static int
table_exists(const char *dir, const char *name)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	tu_lmdb_begin(dir, 1, &env, &txn);
	int rc = mdb_dbi_open(txn, name, 0, &dbi);
	tu_lmdb_end(env, txn, 0);
	return rc == 0;
}

static int
count_img(void *user, const store_image *img)
{
	(void)img;
	(*(size_t *)user)++;
	return 0;
}

static void
test_schema_1_migrates(void **state)
{
	(void)state;
	store *s = open_store(g_dir);
	cdx_error e;
	put_images(s, 0, NIMG, 10);
	store_close(s);
	set_schema(g_dir, 1);
	assert_false(table_exists(g_dir, "tags"));
	g_log[0] = '\0';
	cdx_log_set(tu_log_capture, g_log, CDX_LOG_INFO);
	s = open_store(g_dir);
	cdx_log_set(NULL, NULL, CDX_LOG_INFO);
	assert_non_null(strstr(g_log, "schema 1 -> 2"));
	size_t n = 0;
	ASSERT_OK(store_image_foreach(s, count_img, &n, &e), e);
	assert_int_equal(n, NIMG);
	assert_int_equal(store_image_count(s), NIMG);
	ASSERT_OK(store_verify(s, &e), e);
	/* A migrated store takes tag sets. */
	cls_set *col = color_set(1);
	uint64_t tagged;
	put_set(s, col, &tagged);
	assert_true(tagged > 0);
	assert_int_equal(check_all(s, MODEL), tagged);
	store_close(s);
	cls_set_free(col);
	assert_true(table_exists(g_dir, "tags"));
	/* Migrated once: the next open logs nothing about it. */
	g_log[0] = '\0';
	cdx_log_set(tu_log_capture, g_log, CDX_LOG_INFO);
	s = open_store(g_dir);
	cdx_log_set(NULL, NULL, CDX_LOG_INFO);
	assert_null(strstr(g_log, "schema"));
	store_close(s);
	/* A store of a newer schema fails, saying so. */
	set_schema(g_dir, 5);
	store_params p = store_default_params();
	p.dim = D;
	p.model_id = MODEL;
	assert_int_equal(store_open(g_dir, &p, &s, &e), CDX_EFORMAT);
	assert_non_null(strstr(e.msg, "schema 5"));
}

/* ---- store_verify sees tags that disagree with the records ---- */

enum { BREAK_PROB, BREAK_DROP, BREAK_INDEX };

/* Damages the first image's tags with raw LMDB (the store closed). */
static void
break_tags(const char *dir, int how)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi tags, bylabel;
	MDB_cursor *c;
	MDB_val k, v;
	tu_lmdb_begin(dir, 0, &env, &txn);
	assert_int_equal(mdb_dbi_open(txn, "tags", MDB_INTEGERKEY, &tags), 0);
	assert_int_equal(mdb_dbi_open(txn, "bylabel",
				      MDB_INTEGERKEY | MDB_DUPSORT |
					      MDB_DUPFIXED | MDB_INTEGERDUP,
				      &bylabel), 0);
	assert_int_equal(mdb_cursor_open(txn, tags, &c), 0);
	assert_int_equal(mdb_cursor_get(c, &k, &v, MDB_FIRST), 0);
	uint64_t id;
	unsigned char val[256];
	memcpy(&id, k.mv_data, sizeof(id));
	assert_true(v.mv_size >= 12 && v.mv_size <= sizeof(val));
	memcpy(val, v.mv_data, v.mv_size);
	size_t len = v.mv_size;
	mdb_cursor_close(c);
	k = (MDB_val){ sizeof(id), &id };
	if (how == BREAK_PROB) {
		float p;
		memcpy(&p, val + 8, sizeof(p));
		p = p > 0.5f ? p - 0.25f : p + 0.25f;
		memcpy(val + 8, &p, sizeof(p));
		v = (MDB_val){ len, val };
		assert_int_equal(mdb_put(txn, tags, &k, &v, 0), 0);
	} else if (how == BREAK_DROP) {
		assert_int_equal(mdb_del(txn, tags, &k, NULL), 0);
	} else {
		uint32_t set, label;
		memcpy(&set, val, 4);
		memcpy(&label, val + 4, 4);
		uint64_t key = (uint64_t)set << 32 | label;
		MDB_val bk = { sizeof(key), &key }, bv = { sizeof(id), &id };
		assert_int_equal(mdb_del(txn, bylabel, &bk, &bv), 0);
	}
	tu_lmdb_end(env, txn, 1);
}

static void
test_verify_sees_bad_tags(void **state)
{
	(void)state;
	static const char *const want[] = { "has p", "missing tag",
					     "by-label index" };
	for (int how = BREAK_PROB; how <= BREAK_INDEX; how++) {
		char *dir = tu_tmpdir();
		store *s = open_store(dir);
		cls_set *shp = shape_set(2);
		cdx_error e;
		put_images(s, 0, 50, 10);
		put_set(s, shp, NULL);
		ASSERT_OK(store_verify(s, &e), e);
		store_close(s);
		break_tags(dir, how);
		s = open_store(dir);
		assert_int_equal(store_verify(s, &e), CDX_ECORRUPT);
		if (!strstr(e.msg, want[how]))
			fail_msg("damage %d: '%s'", how, e.msg);
		store_close(s);
		cls_set_free(shp);
		tu_rmrf(dir);
		free(dir);
	}
}

/* ---- threads: sets change while images are put and searched ---- */

typedef struct race {
	store *s;
	volatile int stop;
	int fail;
	char why[300];
} race;

static void *
race_sets(void *arg)
{
	race *r = arg;
	cdx_error e;
	for (int i = 0; i < 12 && !r->fail; i++) {
		cls_set *c = i % 2 ? color_set((uint64_t)i) : shape_set((uint64_t)i);
		if (store_tagset_put(r->s, c, NULL, &e) != 0) {
			r->fail = 1;
			snprintf(r->why, sizeof(r->why), "put: %s", e.msg);
		}
		cls_set_free(c);
		if (i == 7 && store_tagset_delete(r->s, "shape", &e) != 0) {
			r->fail = 1;
			snprintf(r->why, sizeof(r->why), "delete: %s", e.msg);
		}
	}
	r->stop = 1;
	return NULL;
}

static void *
race_search(void *arg)
{
	race *r = arg;
	static const char *const tags[] = { "red" };
	static const char *const nots[] = { "circle" };
	uint64_t st = 5;
	cdx_error e;
	while (!r->stop && !r->fail) {
		float q[D];
		for (int d = 0; d < D; d++)
			q[d] = (float)tu_gauss(&st);
		tu_normalise(q, D);
		store_filter f = { .tags = tags, .n_tags = 1, .not_tags = nots,
				   .n_not_tags = 1 };
		store_results *res;
		store_tag_counts *tc;
		store_tags *t;
		if (store_search(r->s, q, 10, &f, &res, &e) != 0) {
			r->fail = 1;
			snprintf(r->why, sizeof(r->why), "search: %s", e.msg);
			break;
		}
		for (size_t i = 0; i < res->n; i++)
			if (store_image_tags(r->s, res->hits[i].id, &t, &e) == 0)
				store_tags_free(t);
		store_results_free(res);
		if (store_tag_counts_get(r->s, NULL, &tc, &e) == 0)
			store_tag_counts_free(tc);
	}
	return NULL;
}

static void
test_threads(void **state)
{
	(void)state;
	race r = { .s = open_store(g_dir) };
	pthread_t a, b;
	put_images(r.s, 0, 200, 10);
	assert_int_equal(pthread_create(&a, NULL, race_sets, &r), 0);
	assert_int_equal(pthread_create(&b, NULL, race_search, &r), 0);
	for (int i = 0; !r.stop && !r.fail; i++)
		put_images(r.s, 200 + (i % 10) * 20, 220 + (i % 10) * 20,
			   (uint64_t)i + 100);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	if (r.fail)
		fail_msg("%s", r.why);
	check_all(r.s, MODEL);
	store_close(r.s);
}

/* ---- a re-tag does not block readers ---- */

typedef struct retag_job {
	store *s;
	cls_set *c;
	volatile int started, done;
	int rc;
	char why[300];
} retag_job;

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *
retag_run(void *arg)
{
	retag_job *j = arg;
	cdx_error e;
	uint64_t tagged;
	__atomic_store_n(&j->started, 1, __ATOMIC_SEQ_CST);
	j->rc = store_tagset_put(j->s, j->c, &tagged, &e);
	if (j->rc)
		snprintf(j->why, sizeof(j->why), "%s", e.msg);
	__atomic_store_n(&j->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

/* A thread re-tags 50k images with a 200-label set; searches, tag reads
 * and status on the main thread finish while it runs (before, the re-tag
 * held the store's lock exclusively and every reader waited for it). */
static void
test_retag_does_not_block_readers(void **state)
{
	(void)state;
	enum { N = 50000, NL = 200 };
	store *s = open_store(g_dir);
	for (int i = 0; i < N; i += 5000)
		put_images(s, i, i + 5000, (uint64_t)i + 1);
	char (*names)[16] = malloc(NL * 16);
	const char **pn = malloc(NL * sizeof(*pn));
	for (int i = 0; i < NL; i++) {
		snprintf(names[i], 16, "l%d", i);
		pn[i] = names[i];
	}
	cls_set *color = color_set(3);
	put_set(s, color, NULL);
	cls_set_free(color);
	retag_job j = { .s = s, .c = mkset("many", pn, NL, CLS_SIGMOID, 1,
					    0.5f, 10.0f, MODEL, 77) };
	pthread_t th;
	double t0 = now_s(), worst = 0;
	assert_int_equal(pthread_create(&th, NULL, retag_run, &j), 0);
	while (!__atomic_load_n(&j.started, __ATOMIC_SEQ_CST))
		;
	uint64_t st = 9;
	int during = 0;
	static const char *const tags[] = { "red" };
	cdx_error e;
	while (!__atomic_load_n(&j.done, __ATOMIC_SEQ_CST)) {
		float q[D];
		for (int d = 0; d < D; d++)
			q[d] = (float)tu_gauss(&st);
		tu_normalise(q, D);
		store_filter f = { .tags = tags, .n_tags = 1 };
		store_results *res;
		store_stats stt;
		store_tag_counts *tc;
		double t1 = now_s();
		ASSERT_OK(store_search(s, q, 10, &f, &res, &e), e);
		store_results_free(res);
		store_get_stats(s, &stt);
		ASSERT_OK(store_tag_counts_get(s, "color", &tc, &e), e);
		store_tag_counts_free(tc);
		if (now_s() - t1 > worst)
			worst = now_s() - t1;
		/* Finished with the re-tag still running. */
		if (!__atomic_load_n(&j.done, __ATOMIC_SEQ_CST))
			during++;
		usleep(1000);
	}
	pthread_join(th, NULL);
	double retag = now_s() - t0;
	if (j.rc)
		fail_msg("re-tag: %s", j.why);
	print_message("re-tag %.3f s, %d reads during it, slowest %.4f s\n",
		      retag, during, worst);
	assert_true(worst < retag / 2);
	/* Before the fix the first search waited for the whole re-tag. */
	assert_true(during >= 3);
	/* After the re-tag, filters see the new set. */
	static const char *const many[] = { "many/l0" };
	float q[D];
	for (int d = 0; d < D; d++)
		q[d] = (float)tu_gauss(&st);
	tu_normalise(q, D);
	store_filter f = { .tags = many, .n_tags = 1 };
	store_results *res;
	ASSERT_OK(store_search(s, q, 10, &f, &res, &e), e);
	store_results_free(res);
	cls_set_free(j.c);
	free(pn);
	free(names);
	store_close(s);
}

int
main(void)
{
	cdx_threads_set(1);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			test_tags_follow_puts_and_replacements, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_tags_follow_renames_and_moves, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tags_follow_deletes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_changed_set_retags_and_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_other_model_applies_to_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_reembed_keeps_sets_drops_tags, setup, teardown),
		cmocka_unit_test_setup_teardown(test_counts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_filters_selective, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_filters_broad, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
		cmocka_unit_test_setup_teardown(test_schema_1_migrates, setup,
						teardown),
		cmocka_unit_test(test_verify_sees_bad_tags),
		cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_retag_does_not_block_readers, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
