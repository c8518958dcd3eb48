/*
 * classify_eval - classification on the demo world (issue 15's proof):
 *
 *   classify_eval [--model DIR] [--scenes N] [--pool N] [--trials T]
 *                 [--threads N] [--max-tag N] [--no-timing]
 *                 [--no-accuracy]
 *
 * On scenes from the tests' second renderer (tests/demo_render.h, never
 * the training code), encoded with the demo model (models/demo):
 *   1. zero-shot top-1 accuracy of the shape, colour, count and background
 *      label sets (cls_zero_shot with the prompts of dr_sets, cls_score),
 *      on N held-out scenes (default 1000);
 *   2. few-shot accuracy with 1, 2, 4, 8 and 16 examples per class drawn
 *      from a pool of other scenes (default 2000), on the same held-out
 *      scenes: one-vs-rest linear probes (cls_probe_fit per class: its
 *      examples against every other class's, then the argmax of w.x + b),
 *      and the nearest class mean (the cosine to each class's mean
 *      example) beside it, each the mean over T draws of the examples
 *      (default 5) - the CLIP paper's zero-shot vs few-shot comparison on
 *      our data.  A probe needs 2 examples of each class (cls_probe_fit),
 *      so its 1-shot cell is empty;
 *   3. the time to tag 100k and 1M stored embeddings with a 100-label
 *      set (random unit vectors, dim 512 as CLIP B/32 and 64 as the demo
 *      model): cls_score in blocks of 10,000 rows plus cls_applied on every
 *      row; and store_tagset_put end to end on a store of 100k (and with
 *      --max-tag 1000000, 1M) images, which scores and writes every
 *      image's tags in one transaction.
 * Every figure is printed.  docs/CLASSIFY.md has a run's figures.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "classify/classify.h"
#include "common/threads.h"
#include "encoder/clip.h"
#include "store/store.h"
#include "tests/demo_render.h"

#define SIDE 120
#define BATCH 16
#define MAX_CLASSES 8
#define N_SHOTS 5
static const int SHOTS[N_SHOTS] = { 1, 2, 4, 8, 16 };

static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void
die(const char *what, const cdx_error *e)
{
	fprintf(stderr, "classify_eval: %s: %s\n", what, e ? e->msg : "");
	exit(1);
}

/* n scenes from seed, rendered and encoded into emb (n * dim). */
static void
encode_scenes(clip_ctx *ctx, const clip_preprocess_cfg *pp, uint64_t seed,
	      dr_scene *sc, size_t n, size_t dim, float *emb)
{
	size_t plane = 3 * (size_t)pp->crop_width * pp->crop_height;
	float *px = malloc(sizeof(float) * plane * BATCH);
	uint8_t *rgb = malloc(3 * SIDE * SIDE);
	cdx_error err;
	if (!px || !rgb)
		die("out of memory", NULL);
	for (size_t i = 0; i < n; i += BATCH) {
		int nb = (int)(n - i < BATCH ? n - i : BATCH);
		for (int b = 0; b < nb; b++) {
			dr_scene_random(&seed, &sc[i + b]);
			dr_render(&sc[i + b], SIDE, rgb);
			clip_image img = { .width = SIDE, .height = SIDE,
				.rgb = rgb };
			if (clip_image_preprocess(&img, pp, px + (size_t)b * plane,
			    &err))
				die("clip_image_preprocess", &err);
		}
		if (clip_encode_images(ctx, px, nb, emb + i * dim, &err))
			die("clip_encode_images", &err);
	}
	free(rgb);
	free(px);
}

static size_t
argmax(const float *v, size_t n)
{
	size_t best = 0;
	for (size_t i = 1; i < n; i++)
		if (v[i] > v[best])
			best = i;
	return best;
}

/* k example indexes per class of set s, drawn from the pool (without
 * repeats): ex[c * k + j]. */
static int
draw_examples(const dr_scene *pool, size_t n_pool, int s, int n_cls, int k,
	      uint64_t *seed, size_t *ex)
{
	for (int c = 0; c < n_cls; c++) {
		int got = 0;
		for (int tries = 0; got < k && tries < 1000000; tries++) {
			size_t i = dr_next(seed) % n_pool;
			if (dr_truth(&pool[i], s) != c)
				continue;
			int dup = 0;
			for (int j = 0; j < got; j++)
				dup |= ex[c * k + j] == i;
			if (!dup)
				ex[c * k + got++] = i;
		}
		if (got < k)
			return -1;
	}
	return 0;
}

/* Accuracy of the nearest class mean and of one-vs-rest probes (-1 when
 * k < 2) with k examples per class. */
static void
few_shot(const float *pool_emb, const dr_scene *pool, size_t n_pool,
	 const float *test_emb, const dr_scene *test, size_t n_test,
	 size_t dim, int s, int n_cls, int k, uint64_t *seed, double *mean_acc,
	 double *probe_acc)
{
	size_t *ex = malloc(sizeof(size_t) * n_cls * k);
	float *cen = calloc((size_t)n_cls * dim, sizeof(float));
	float *x = malloc(sizeof(float) * n_cls * k * dim);
	uint8_t *y = malloc((size_t)n_cls * k);
	float *w = malloc(sizeof(float) * n_cls * dim), *b = malloc(sizeof(float) *
	    n_cls);
	cdx_error err;
	if (!ex || !cen || !x || !y || !w || !b)
		die("out of memory", NULL);
	if (draw_examples(pool, n_pool, s, n_cls, k, seed, ex))
		die("the example pool is too small", NULL);
	for (int c = 0; c < n_cls; c++)
		for (int j = 0; j < k; j++) {
			const float *e = pool_emb + ex[c * k + j] * dim;
			memcpy(x + ((size_t)c * k + j) * dim, e, sizeof(float) * dim);
			for (size_t d = 0; d < dim; d++)
				cen[c * dim + d] += e[d];
		}
	for (int c = 0; c < n_cls; c++) {
		double nn = 0;
		for (size_t d = 0; d < dim; d++)
			nn += (double)cen[c * dim + d] * cen[c * dim + d];
		for (size_t d = 0; d < dim; d++)
			cen[c * dim + d] /= (float)sqrt(nn);
	}
	if (k >= 2)
		for (int c = 0; c < n_cls; c++) {
			cls_probe_report rep;
			for (int i = 0; i < n_cls * k; i++)
				y[i] = i / k == c;
			if (cls_probe_fit(x, y, (size_t)n_cls * k, dim, NULL,
			    w + (size_t)c * dim, &b[c], &rep, &err))
				die("cls_probe_fit", &err);
		}
	size_t hit_m = 0, hit_p = 0;
	float sc[MAX_CLASSES];
	for (size_t i = 0; i < n_test; i++) {
		const float *e = test_emb + i * dim;
		int t = dr_truth(&test[i], s);
		for (int c = 0; c < n_cls; c++) {
			double d = 0;
			for (size_t j = 0; j < dim; j++)
				d += (double)cen[c * dim + j] * e[j];
			sc[c] = (float)d;
		}
		hit_m += (int)argmax(sc, (size_t)n_cls) == t;
		if (k < 2)
			continue;
		for (int c = 0; c < n_cls; c++) {
			double d = b[c];
			for (size_t j = 0; j < dim; j++)
				d += (double)w[c * dim + j] * e[j];
			sc[c] = (float)d;
		}
		hit_p += (int)argmax(sc, (size_t)n_cls) == t;
	}
	*mean_acc = (double)hit_m / n_test;
	*probe_acc = k >= 2 ? (double)hit_p / n_test : -1;
	free(b);
	free(w);
	free(y);
	free(x);
	free(cen);
	free(ex);
}

static void
accuracy(const char *model, size_t n_test, size_t n_pool, int trials)
{
	clip_model_params p;
	clip_model *m = NULL;
	clip_ctx *ctx = NULL;
	cdx_error err;
	clip_model_default_params(&p);
	p.precision = CLIP_PRECISION_FP32;
	if (clip_model_load(model, &p, &m, &err))
		die(model, &err);
	const clip_model_info *in = clip_model_get_info(m);
	size_t dim = (size_t)in->embed_dim;
	if (clip_ctx_new(m, BATCH, &ctx, &err))
		die("clip_ctx_new", &err);
	dr_scene *test = malloc(sizeof *test * n_test);
	dr_scene *pool = malloc(sizeof *pool * n_pool);
	float *te = malloc(sizeof(float) * n_test * dim);
	float *pe = malloc(sizeof(float) * n_pool * dim);
	if (!test || !pool || !te || !pe)
		die("out of memory", NULL);
	double t0 = now();
	encode_scenes(ctx, &in->preprocess, 0xc1a551f1ull, test, n_test, dim,
	    te);
	encode_scenes(ctx, &in->preprocess, 0xe4a31e5ull, pool, n_pool, dim,
	    pe);
	printf("model %s; %zu held-out scenes, a pool of %zu for examples "
	    "(tests/demo_render.h, %d px), rendered and encoded in %.1f s\n\n",
	    model, n_test, n_pool, SIDE, now() - t0);

	printf("%-10s %6s %9s", "set", "labels", "zero-shot");
	for (int i = 0; i < N_SHOTS; i++)
		printf("   %2d-shot", SHOTS[i]);
	printf("   (few-shot: probe / class mean; mean of %d draws)\n", trials);
	for (int s = 0; s < DR_N_SETS; s++) {
		const dr_labelset *ls = &dr_sets[s];
		cls_set *c = NULL;
		if (cls_zero_shot(ctx, clip_model_tokenizer(m), in, ls->name,
		    (const char *const *)ls->labels, (size_t)ls->n, &ls->tmpl, 1,
		    0, &c, &err))
			die("cls_zero_shot", &err);
		float *prob = malloc(sizeof(float) * n_test * ls->n);
		if (!prob || cls_score(c, te, n_test, dim, prob, &err))
			die("cls_score", &err);
		size_t hit = 0;
		for (size_t i = 0; i < n_test; i++)
			hit += (int)argmax(prob + i * ls->n, (size_t)ls->n) ==
			    dr_truth(&test[i], s);
		printf("%-10s %6d %9.3f", ls->name, ls->n, (double)hit / n_test);
		uint64_t seed = 1234 + (uint64_t)s;
		for (int i = 0; i < N_SHOTS; i++) {
			double am = 0, ap = 0;
			for (int t = 0; t < trials; t++) {
				double a, b;
				few_shot(pe, pool, n_pool, te, test, n_test, dim,
				    s, ls->n, SHOTS[i], &seed, &a, &b);
				am += a / trials;
				ap += b / trials;
			}
			if (SHOTS[i] < 2)
				printf("   - /%.3f", am);
			else
				printf(" %.3f/%.3f", ap, am);
		}
		printf("\n");
		free(prob);
		cls_set_free(c);
	}
	printf("\n");
	free(pe);
	free(te);
	free(pool);
	free(test);
	clip_ctx_free(ctx);
	clip_model_free(m);
}

/* n random unit rows of dim floats. */
static void
random_units(float *x, size_t n, size_t dim, uint64_t seed)
{
	for (size_t i = 0; i < n; i++) {
		double nn = 0;
		for (size_t d = 0; d < dim; d++) {
			float v = (float)dr_uni(&seed, -1, 1);
			x[i * dim + d] = v;
			nn += (double)v * v;
		}
		for (size_t d = 0; d < dim; d++)
			x[i * dim + d] /= (float)sqrt(nn);
	}
}

/* A 100-label softmax set of dim with random rows. */
static cls_set *
random_set(size_t dim)
{
	cls_set *c = NULL;
	cdx_error err;
	if (cls_set_new("bench", 100, dim, 0, 0, 0, &c, &err))
		die("cls_set_new", &err);
	random_units(c->w, 100, dim, 99);
	c->kind = CLS_SOFTMAX;
	c->scale = 100;
	c->threshold = 0.2f;
	for (size_t i = 0; i < 100; i++) {
		char name[16];
		snprintf(name, sizeof name, "label%zu", i);
		if (cls_set_label(c, i, name, &err))
			die("cls_set_label", &err);
	}
	return c;
}

#define BLOCK 10000

/* Seconds to score n embeddings (a block of BLOCK random rows, scored
 * n / BLOCK times) and find each row's tags. */
static void
time_score(size_t dim, size_t n_max)
{
	cls_set *c = random_set(dim);
	float *x = malloc(sizeof(float) * BLOCK * dim);
	float *prob = malloc(sizeof(float) * BLOCK * 100);
	uint32_t idx[100];
	cdx_error err;
	if (!x || !prob)
		die("out of memory", NULL);
	random_units(x, BLOCK, dim, 7);
	for (size_t n = 100000; n <= n_max; n *= 10) {
		size_t tagged = 0;
		double t0 = now();
		for (size_t i = 0; i < n; i += BLOCK) {
			if (cls_score(c, x, BLOCK, dim, prob, &err))
				die("cls_score", &err);
			for (size_t r = 0; r < BLOCK; r++)
				tagged += cls_applied(c, prob + r * 100, idx) > 0;
		}
		double secs = now() - t0;
		printf("cls_score + cls_applied, %7zu x %3zu-d, 100 labels: "
		    "%6.2f s (%.2f M images/s; %zu tagged)\n", n, dim, secs,
		    n / secs / 1e6, tagged);
	}
	free(prob);
	free(x);
	cls_set_free(c);
}

/* store_tagset_put end to end: a store of n images with random dim-d
 * embeddings (put in batches of 1000), then the 100-label set defined,
 * which scores every stored embedding and writes every image's tags in
 * one transaction. */
static void
time_store_tag(size_t dim, size_t n)
{
	char dir[64], cmd[128];
	snprintf(dir, sizeof dir, "/tmp/cdx_classify_eval_%ld", (long)getpid());
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	store_params p = store_default_params();
	p.dim = (int)dim;
	p.model_id = "bench@0";
	p.index_kind = "flat";
	p.map_size = (size_t)16 << 30;
	store *st = NULL;
	cdx_error err;
	if (store_open(dir, &p, &st, &err))
		die("store_open", &err);
	float *x = malloc(sizeof(float) * 1000 * dim);
	store_image *imgs = calloc(1000, sizeof *imgs);
	char (*paths)[48] = calloc(1000, 48);
	if (!x || !imgs || !paths)
		die("out of memory", NULL);
	double t0 = now();
	for (size_t i = 0; i < n; i += 1000) {
		size_t b = n - i < 1000 ? n - i : 1000;
		random_units(x, b, dim, 1000 + i);
		for (size_t j = 0; j < b; j++) {
			snprintf(paths[j], 48, "/bench/%02zu/%09zu.jpg",
			    (i + j) % 100, i + j);
			imgs[j] = (store_image){ .path = paths[j], .size = 1000,
				.mtime_ns = (int64_t)(i + j), .embedding =
				x + j * dim, .capture_time = STORE_TIME_UNKNOWN };
		}
		if (store_image_put(st, imgs, b, &err))
			die("store_image_put", &err);
	}
	double put = now() - t0;
	cls_set *c = random_set(dim);
	snprintf(c->model_key, sizeof c->model_key, "bench@0");
	uint64_t tagged = 0;
	t0 = now();
	if (store_tagset_put(st, c, &tagged, &err))
		die("store_tagset_put", &err);
	double secs = now() - t0;
	printf("store_tagset_put, %7zu x %3zu-d, 100 labels: %6.2f s "
	    "(%.2f M images/s; %llu tagged; the store was filled in %.1f s)\n",
	    n, dim, secs, n / secs / 1e6, (unsigned long long)tagged, put);
	cls_set_free(c);
	free(paths);
	free(imgs);
	free(x);
	store_close(st);
	if (system(cmd) != 0)
		fprintf(stderr, "classify_eval: cannot remove %s\n", dir);
}

int
main(int argc, char **argv)
{
	const char *model = "models/demo";
	size_t n_test = 1000, n_pool = 2000, max_tag = 100000;
	int trials = 5, threads = 2, timing = 1, acc = 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--no-timing") || !strcmp(a, "--no-accuracy")) {
			timing &= strcmp(a, "--no-timing") != 0;
			acc &= strcmp(a, "--no-accuracy") != 0;
			continue;
		}
		if (v == NULL) {
			fprintf(stderr, "usage: classify_eval [--model DIR] "
			    "[--scenes N] [--pool N] [--trials T] [--threads N] "
			    "[--max-tag N] [--no-timing] [--no-accuracy]\n");
			return 2;
		}
		i++;
		if (!strcmp(a, "--model"))
			model = v;
		else if (!strcmp(a, "--scenes"))
			n_test = strtoul(v, NULL, 10);
		else if (!strcmp(a, "--pool"))
			n_pool = strtoul(v, NULL, 10);
		else if (!strcmp(a, "--trials"))
			trials = atoi(v);
		else if (!strcmp(a, "--threads"))
			threads = atoi(v);
		else if (!strcmp(a, "--max-tag"))
			max_tag = strtoul(v, NULL, 10);
		else {
			fprintf(stderr, "classify_eval: unknown option %s\n", a);
			return 2;
		}
	}
	if (n_test < 1 || n_pool < 200 || trials < 1) {
		fprintf(stderr, "classify_eval: --scenes >= 1, --pool >= 200, "
		    "--trials >= 1\n");
		return 2;
	}
	cdx_threads_set(threads);
	if (acc)
		accuracy(model, n_test, n_pool, trials);
	if (!timing)
		return 0;
	printf("tagging, %d threads:\n", threads);
	time_score(512, 1000000);
	time_score(64, 1000000);
	for (size_t n = 100000; n <= max_tag; n *= 10)
		time_store_tag(512, n);
	return 0;
}
