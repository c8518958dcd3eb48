/*
 * dupes_bench - duplicate finding at scale, and the calibration of the
 * near-duplicate threshold (docs/DUPES.md).
 *
 * Scale: n clustered synthetic unit vectors (a mixture as in
 * bench/store_bench.c) with planted near-duplicate pairs and groups go
 * into a store with an IVF index; dupes_find() (dupes/dupes.h, behind the
 * daemon's dupes operation) finds every group; prints the time and the recall of the
 * planted pairs (both ends in one group) and how many reported groups mix
 * unrelated vectors.
 *
 * Calibration: synthetic photos and their transformed copies (JPEG
 * q90/q70/q50, 50 % resize, 5 % crop, EXIF rotation, brightness +8 %)
 * next to distinct photos, embedded with a model (--model DIR, else the
 * tiny random test model of tests/testmodel.h, and models/demo as well
 * when that folder exists); prints the precision and recall of the
 * planted duplicate pairs per threshold.
 *
 *   dupes_bench [--n 1000000] [--dim 512] [--clusters 3000] [--pairs N]
 *               [--groups N] [--threshold 0.95] [--nprobe N] [--threads 2]
 *               [--dir /tmp] [--skip-scale] [--skip-calibration]
 *               [--model DIR] [--originals 40] [--distinct 120]
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/threads.h"
#include "common/vec.h"
#include "dupes/dupes.h"
#include "encoder/clip.h"
#include "store/store.h"
#include "tests/client_dupes_fixtures.h"
#include "tests/testmodel.h"

typedef struct opts {
	size_t n;
	int dim, clusters, threads, nprobe;
	size_t pairs, groups;
	float threshold;
	const char *dir, *model;
	int skip_scale, skip_cal;
	int originals, distinct;
} opts;

static double
now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void
die(const char *what, int rc, const cdx_error *e)
{
	fprintf(stderr, "dupes_bench: %s: %s (%s)\n", what, cdx_strerror(rc),
	    e ? e->msg : "");
	exit(1);
}

static uint64_t
rnd(uint64_t *s)
{
	return df_rnd(s);
}

static float
unif(uint64_t *s)
{
	return (float)((rnd(s) >> 11) * (1.0 / 9007199254740992.0));
}

static float
gauss(uint64_t *s)
{
	float u = unif(s), v = unif(s);
	if (u < 1e-12f)
		u = 1e-12f;
	return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static void
normalise(float *v, int d)
{
	double n = 0;
	for (int i = 0; i < d; i++)
		n += (double)v[i] * v[i];
	float r = (float)(1.0 / sqrt(n));
	for (int i = 0; i < d; i++)
		v[i] *= r;
}

/* ---- scale ---- */

/* Planted vector j of the store: a copy of vector `base` with noise. */
typedef struct plant {
	size_t copy, base;
} plant;

static void
run_scale(const opts *o)
{
	int d = o->dim;
	size_t n = o->n;
	char dir[512];
	cdx_error e;
	uint64_t s = 4242;

	snprintf(dir, sizeof(dir), "%s/cdx_dupes_bench_%ld", o->dir,
	    (long)getpid());
	printf("--- scale: %zu vectors, dim %d, %d clusters, %zu planted pairs, "
	    "%zu planted groups of 3..5, threshold %.3f, %d threads ---\n", n, d,
	    o->clusters, o->pairs, o->groups, o->threshold, o->threads);
	fflush(stdout);

	/* Mixture: unit centres, noise norm 0.3..1.2 (as store_bench). */
	float *cent = malloc((size_t)o->clusters * d * sizeof(float));
	float *spread = malloc((size_t)o->clusters * sizeof(float));
	float *x = malloc(n * (size_t)d * sizeof(float));
	size_t max_plants = o->pairs + 4 * o->groups;
	plant *pl = malloc((max_plants + 1) * sizeof(*pl));
	if (!cent || !spread || !x || !pl)
		die("out of memory", CDX_ENOMEM, NULL);
	for (int c = 0; c < o->clusters; c++) {
		for (int i = 0; i < d; i++)
			cent[(size_t)c * d + i] = gauss(&s);
		normalise(cent + (size_t)c * d, d);
		spread[c] = 0.3f + 0.9f * unif(&s);
	}
	double t0 = now();
	for (size_t j = 0; j < n; j++) {
		int c = (int)(rnd(&s) % (uint64_t)o->clusters);
		float sc = spread[c] / sqrtf((float)d);
		float *v = x + j * d;
		for (int i = 0; i < d; i++)
			v[i] = cent[(size_t)c * d + i] + sc * gauss(&s);
		normalise(v, d);
	}
	/* Planted copies overwrite vectors at the end: a pair is (base,
	 * copy); a group is a base and 2..4 copies.  Copy noise norm 0.08..0.2
	 * (similarity to the base about 0.98..0.997). */
	size_t np = 0, next = n;
	for (size_t g = 0; g < o->pairs + o->groups && next > 0; g++) {
		size_t base = (size_t)(rnd(&s) % (n / 2));
		int copies = g < o->pairs ? 1 : 2 + (int)(rnd(&s) % 3);
		for (int k = 0; k < copies && next > n / 2; k++) {
			size_t cp = --next;
			float eps = 0.08f + 0.12f * unif(&s);
			for (int i = 0; i < d; i++)
				x[cp * d + i] = x[base * d + i] + eps / sqrtf((float)d) *
				    gauss(&s);
			normalise(x + cp * d, d);
			pl[np].copy = cp;
			pl[np].base = base;
			np++;
		}
	}
	printf("generated in %.1f s (%zu planted copies)\n", now() - t0, np);

	store_params p = store_default_params();
	store *st;
	rmdir(dir);
	p.dim = d;
	p.model_id = "dupes-bench@0";
	p.index_kind = "flat";
	p.map_size = (size_t)4 << 30;
	int rc = store_open(dir, &p, &st, &e);
	if (rc)
		die("store_open", rc, &e);
	store_image *imgs = calloc(1000, sizeof(*imgs));
	char (*paths)[48] = calloc(1000, 48);
	uint64_t *ids = malloc(n * sizeof(uint64_t));
	t0 = now();
	for (size_t i = 0; i < n; i += 1000) {
		size_t b = n - i < 1000 ? n - i : 1000;
		for (size_t j = 0; j < b; j++) {
			snprintf(paths[j], 48, "/bench/%02zu/%09zu.jpg", (i + j) % 100,
			    i + j);
			memset(&imgs[j], 0, sizeof(imgs[j]));
			imgs[j].path = paths[j];
			imgs[j].embedding = x + (i + j) * d;
			imgs[j].capture_time = STORE_TIME_UNKNOWN;
			imgs[j].width = 640;
			imgs[j].height = 480;
			imgs[j].size = 1000 + (int64_t)((i + j) % 977);
			uint64_t h = i + j + 1;
			memcpy(imgs[j].hash, &h, sizeof(h));
		}
		if ((rc = store_image_put(st, imgs, b, &e)) != 0)
			die("store_image_put", rc, &e);
		for (size_t j = 0; j < b; j++)
			ids[i + j] = imgs[j].id;
	}
	printf("insert: %.1f s\n", now() - t0);
	free(imgs);
	free(paths);
	free(x);
	x = NULL;
	store_stats ss;
	store_get_stats(st, &ss);
	printf("store index %s (dupes reads the embeddings, not the index)\n",
	    ss.index_kind);

	dupes_params dp = { .dim = d, .kind = DUPES_NEAR,
		.threshold = o->threshold };
	dupes_result *r = NULL;
	t0 = now();
	if ((rc = dupes_find(st, &dp, &r, &e)) != 0)
		die("dupes_find", rc, &e);
	double secs = now() - t0;

	/* Group of every id (ids are ascending in insertion order). */
	uint32_t *grp = malloc(n * sizeof(uint32_t));
	for (size_t i = 0; i < n; i++)
		grp[i] = UINT32_MAX;
	for (size_t g = 0; g < r->n_groups; g++)
		for (size_t k = r->lims[g]; k < r->lims[g + 1]; k++) {
			uint64_t id = r->ids[k];
			size_t lo = 0, hi = n;
			while (lo < hi) {
				size_t mid = (lo + hi) / 2;
				if (ids[mid] < id)
					lo = mid + 1;
				else
					hi = mid;
			}
			if (lo < n && ids[lo] == id)
				grp[lo] = (uint32_t)g;
		}
	size_t found = 0;
	for (size_t i = 0; i < np; i++)
		found += grp[pl[i].copy] != UINT32_MAX &&
		    grp[pl[i].copy] == grp[pl[i].base];
	/* Images in groups that are not planted: false positives. */
	uint8_t *planted = calloc(n, 1);
	for (size_t i = 0; i < np; i++)
		planted[pl[i].copy] = planted[pl[i].base] = 1;
	size_t grouped = 0, stray = 0;
	for (size_t i = 0; i < n; i++)
		if (grp[i] != UINT32_MAX) {
			grouped++;
			stray += !planted[i];
		}
	printf("dupes (near, >= %.3f): %zu groups, %zu images grouped, in "
	    "%.1f s (%.0f images/s)\n", o->threshold, r->n_groups, grouped, secs,
	    (double)n / secs);
	printf("recall of planted pairs: %.4f (%zu of %zu); unplanted images in "
	    "groups: %zu\n", (double)found / (double)(np ? np : 1), found, np,
	    stray);
	dupes_result_free(r);
	store_close(st);
	free(grp);
	free(planted);
	free(ids);
	free(x);
	free(pl);
	free(cent);
	free(spread);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "dupes_bench: could not remove %s\n", dir);
}

/* ---- calibration ---- */

static int
embed_file(clip_ctx *ctx, const clip_model_info *info, const char *path,
    float *out)
{
	clip_decode_opts dopt = {
	    .min_short = clip_preprocess_min_short(&info->preprocess) };
	const clip_preprocess_cfg *pp = &info->preprocess;
	float *px = malloc(sizeof(float) * 3 * (size_t)pp->crop_width *
	    (size_t)pp->crop_height);
	clip_image img;
	cdx_error e;
	int rc;

	if (px == NULL)
		return CDX_ENOMEM;
	if ((rc = clip_image_load(path, &dopt, &img, &e)) == 0) {
		rc = clip_image_preprocess(&img, pp, px, &e);
		clip_image_free(&img);
		if (rc == 0)
			rc = clip_encode_images(ctx, px, 1, out, &e);
	}
	if (rc != 0)
		fprintf(stderr, "dupes_bench: %s: %s\n", path, e.msg);
	free(px);
	return rc;
}

static void
run_calibration(const opts *o)
{
	char tmp[] = "/tmp/cdx-dupes-cal-XXXXXX", mdir[64], path[128];
	const char *model = o->model;
	clip_model *m = NULL;
	clip_ctx *ctx = NULL;
	cdx_error e;
	int rc, no = o->originals, nd = o->distinct;
	int per = 1 + DF_N_TRANSFORMS;
	int total = no * per + nd;

	if (mkdtemp(tmp) == NULL)
		die("mkdtemp", CDX_EIO, NULL);
	if (model == NULL) {
		tm_recipe r;
		tm_recipe_tiny(&r);
		snprintf(mdir, sizeof(mdir), "%s/model", tmp);
		mkdir(mdir, 0755);
		if (tm_write_model(&r, mdir) != 0)
			die("tm_write_model", CDX_EIO, NULL);
		model = mdir;
	}
	if ((rc = clip_model_load(model, NULL, &m, &e)) != 0)
		die("clip_model_load", rc, &e);
	const clip_model_info *info = clip_model_get_info(m);
	if ((rc = clip_ctx_new(m, 1, &ctx, &e)) != 0)
		die("clip_ctx_new", rc, &e);
	int d = info->embed_dim;
	printf("--- calibration: %d originals x %d transformed copies, %d "
	    "distinct photos, model %s%s ---\n", no, DF_N_TRANSFORMS, nd,
	    info->id, o->model ? "" : " (tiny random test model)");

	float *emb = malloc(sizeof(float) * (size_t)d * (size_t)total);
	int *owner = malloc(sizeof(int) * (size_t)total);  /* original, or -1 */
	int *tr = malloc(sizeof(int) * (size_t)total);     /* transform, -1 */
	double t0 = now();
	int k = 0;
	for (int i = 0; i < no + nd; i++) {
		df_image a;
		int w = 320 + (int)(i % 5) * 32, h = 240 + (int)(i % 3) * 24;
		if (df_photo(&a, 1000 + (uint64_t)i, w, h) != 0)
			die("df_photo", CDX_ENOMEM, NULL);
		snprintf(path, sizeof(path), "%s/%04d.jpg", tmp, i);
		if (df_write_jpeg(path, &a, 95, 1) != 0)
			die("write", CDX_EIO, NULL);
		if (embed_file(ctx, info, path, emb + (size_t)k * d) != 0)
			die("embed", CDX_EFORMAT, NULL);
		owner[k] = i < no ? i : -1;
		tr[k++] = -1;
		for (int t = 0; i < no && t < DF_N_TRANSFORMS; t++) {
			snprintf(path, sizeof(path), "%s/%04d-%d.jpg", tmp, i, t);
			if (df_write_transform(path, &a, t) != 0)
				die("write", CDX_EIO, NULL);
			if (embed_file(ctx, info, path, emb + (size_t)k * d) != 0)
				die("embed", CDX_EFORMAT, NULL);
			owner[k] = i;
			tr[k++] = t;
		}
		df_free(&a);
	}
	printf("generated and embedded %d images in %.1f s\n", k, now() - t0);

	/* Pairs: positive when both come from the same original. */
	static const float thr[] = { 0.80f, 0.85f, 0.88f, 0.90f, 0.92f, 0.93f,
		0.94f, 0.95f, 0.96f, 0.97f, 0.98f, 0.99f, 0.995f };
	int nt = (int)(sizeof(thr) / sizeof(thr[0]));
	size_t tp[16] = { 0 }, fp[16] = { 0 }, pos = 0;
	size_t tr_hit[16][DF_N_TRANSFORMS] = { { 0 } };
	double min_pos = 2, max_neg = -2;
	for (int a = 0; a < k; a++)
		for (int b = a + 1; b < k; b++) {
			double sim = cdx_vec_dot(emb + (size_t)a * d, emb + (size_t)b * d, d);
			int p = owner[a] >= 0 && owner[a] == owner[b];
			pos += p;
			if (p && sim < min_pos)
				min_pos = sim;
			if (!p && sim > max_neg)
				max_neg = sim;
			for (int t = 0; t < nt; t++)
				if (sim >= thr[t]) {
					if (p) {
						tp[t]++;
						/* original -> copy pairs, per transform */
						if (tr[a] < 0 && tr[b] >= 0)
							tr_hit[t][tr[b]]++;
					} else {
						fp[t]++;
					}
				}
		}
	printf("planted pairs %zu; lowest planted similarity %.4f, highest "
	    "unrelated %.4f\n", pos, min_pos, max_neg);
	printf("threshold precision recall   recall(original->copy) by "
	    "transform:");
	for (int t = 0; t < DF_N_TRANSFORMS; t++)
		printf(" %s |", df_transform_name(t));
	printf("\n");
	double best_f1 = -1;
	int best = 0;
	for (int t = 0; t < nt; t++) {
		double prec = tp[t] + fp[t] ? (double)tp[t] / (double)(tp[t] +
		    fp[t]) : 1.0;
		printf("  %.3f    %.4f   %.4f  ", thr[t], prec, (double)tp[t] /
		    (double)pos);
		for (int x = 0; x < DF_N_TRANSFORMS; x++)
			printf(" %.2f", (double)tr_hit[t][x] / no);
		printf("\n");
		double rec = (double)tp[t] / (double)pos;
		double f1 = prec + rec > 0 ? 2 * prec * rec / (prec + rec) : 0;
		if (f1 > best_f1) {
			best_f1 = f1;
			best = t;
		}
	}
	printf("best F1 %.4f at threshold %.3f\n", best_f1, thr[best]);
	free(emb);
	free(owner);
	free(tr);
	clip_ctx_free(ctx);
	clip_model_free(m);
	tm_rmtree(tmp);
}

int
main(int argc, char **argv)
{
	opts o = { .n = 1000000, .dim = 512, .clusters = 3000, .threads = 2,
		.threshold = DUPES_NEAR_DEFAULT, .dir = "/tmp", .originals = 40,
		.distinct = 120 };
	size_t pairs = 0, groups = 0;
	int set_pairs = 0, set_groups = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--skip-scale") == 0) {
			o.skip_scale = 1;
			continue;
		}
		if (strcmp(a, "--skip-calibration") == 0) {
			o.skip_cal = 1;
			continue;
		}
		if (v == NULL) {
			fprintf(stderr, "usage: see the top of bench/dupes_bench.c\n");
			return 2;
		}
		i++;
		if (strcmp(a, "--n") == 0)
			o.n = strtoull(v, NULL, 10);
		else if (strcmp(a, "--dim") == 0)
			o.dim = atoi(v);
		else if (strcmp(a, "--clusters") == 0)
			o.clusters = atoi(v);
		else if (strcmp(a, "--pairs") == 0)
			pairs = strtoull(v, NULL, 10), set_pairs = 1;
		else if (strcmp(a, "--groups") == 0)
			groups = strtoull(v, NULL, 10), set_groups = 1;
		else if (strcmp(a, "--threshold") == 0)
			o.threshold = strtof(v, NULL);
		else if (strcmp(a, "--nprobe") == 0)
			o.nprobe = atoi(v);
		else if (strcmp(a, "--threads") == 0)
			o.threads = atoi(v);
		else if (strcmp(a, "--dir") == 0)
			o.dir = v;
		else if (strcmp(a, "--model") == 0)
			o.model = v;
		else if (strcmp(a, "--originals") == 0)
			o.originals = atoi(v);
		else if (strcmp(a, "--distinct") == 0)
			o.distinct = atoi(v);
		else {
			fprintf(stderr, "dupes_bench: unknown option %s\n", a);
			return 2;
		}
	}
	if (o.n < 1000 || o.dim < 2 || o.clusters < 1 || o.threads < 1 ||
	    !(o.threshold > 0 && o.threshold <= 1) || o.originals < 1 ||
	    o.distinct < 0) {
		fprintf(stderr, "dupes_bench: bad option value\n");
		return 2;
	}
	o.pairs = set_pairs ? pairs : o.n / 200;
	o.groups = set_groups ? groups : o.n / 1000;
	cdx_threads_set(o.threads);     /* OpenBLAS and OpenMP (FAISS) */
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!o.skip_cal) {
		run_calibration(&o);
		/* The demo model too, when it is there and none was given. */
		struct stat sb;
		if (o.model == NULL && stat("models/demo/config.json", &sb) == 0) {
			o.model = "models/demo";
			run_calibration(&o);
			o.model = NULL;
		}
	}
	if (!o.skip_scale)
		run_scale(&o);
	return 0;
}
