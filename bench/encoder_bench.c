/*
 * encoder_bench - speed of the CLIP encoders on a ViT-B/32-shaped model
 * with random weights, beside its baselines measured in the same run:
 *   - the machine's SGEMM rate (OpenBLAS, same threads) on the model's own
 *     GEMM shapes: the ceiling for float32 image encoding;
 *   - the bytes of text weights over the machine's read bandwidth: the
 *     floor for a short text query;
 *   - PyTorch (tools/torch_bench.py, same shapes and threads), skipped
 *     with a message when it is not installed.
 *
 *   encoder_bench [--threads N] [--quick] [--no-torch]
 *
 * N defaults to the number of online CPUs.  The model folder (F16, to
 * halve the write) goes to a temporary directory and is removed.
 */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "encoder/clip.h"
#include "tests/testmodel.h"

static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Best (least) seconds of fn over at least min_runs runs and min_s
 * seconds, after one warm-up run.  The least time is the figure least
 * disturbed by other work on the machine; every figure here (baselines
 * included) is taken the same way. */
typedef int (*bench_fn)(void *arg);

static double
best_time(bench_fn fn, void *arg, int min_runs, double min_s)
{
	double t[256];
	int n = 0;
	if (fn(arg) != 0)
		return NAN;
	double end = now() + min_s;
	while (n < 256 && (n < min_runs || now() < end)) {
		double t0 = now();
		if (fn(arg) != 0)
			return NAN;
		t[n++] = now() - t0;
	}
	qsort(t, (size_t)n, sizeof(double), cmp_double);
	return t[0];
}

static volatile uint64_t sink;

/* ---- SGEMM baseline ----------------------------------------------------- */

typedef struct gemm_shape {
	int m, n, k, count;
} gemm_shape;

typedef struct gemm_arg {
	const gemm_shape *shapes;
	int n_shapes;
	float *a, *w, *c;
} gemm_arg;

static int
run_gemms(void *p)
{
	gemm_arg *g = p;
	for (int s = 0; s < g->n_shapes; s++) {
		const gemm_shape *sh = &g->shapes[s];
		for (int r = 0; r < sh->count; r++)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, sh->m,
			    sh->n, sh->k, 1.0f, g->a, sh->k, g->w, sh->k, 0.0f,
			    g->c, sh->n);
	}
	return 0;
}

static double
gemm_flops(const gemm_shape *s, int n)
{
	double f = 0;
	for (int i = 0; i < n; i++)
		f += 2.0 * s[i].m * s[i].n * s[i].k * s[i].count;
	return f;
}

/* ---- read bandwidth ------------------------------------------------------ */

typedef struct bw_arg {
	const uint64_t *v;
	size_t n;
	uint64_t x;
} bw_arg;

static void *
bw_read(void *p)
{
	bw_arg *a = p;
	uint64_t x0 = 0, x1 = 0, x2 = 0, x3 = 0;
	for (size_t i = 0; i + 4 <= a->n; i += 4) {
		x0 ^= a->v[i];
		x1 ^= a->v[i + 1];
		x2 ^= a->v[i + 2];
		x3 ^= a->v[i + 3];
	}
	a->x = x0 ^ x1 ^ x2 ^ x3;
	return NULL;
}

/* Bytes per second read from memory by `threads` threads (the same count
 * OpenBLAS uses), each streaming its share of a buffer far larger than
 * the caches; best of 5. */
static double
read_bandwidth(size_t bytes, int threads)
{
	size_t n = bytes / sizeof(uint64_t);
	uint64_t *v = malloc(bytes);
	if (v == NULL || threads > 64)
		return NAN;
	for (size_t i = 0; i < n; i++)
		v[i] = i * 0x9E3779B97F4A7C15ull;
	double best = 1e9;
	for (int r = 0; r < 5; r++) {
		pthread_t th[64];
		bw_arg args[64];
		double t0 = now();
		for (int k = 0; k < threads; k++) {
			args[k] = (bw_arg){v + n / threads * k, n / threads, 0};
			pthread_create(&th[k], NULL, bw_read, &args[k]);
		}
		for (int k = 0; k < threads; k++)
			pthread_join(th[k], NULL);
		double t = now() - t0;
		best = t < best ? t : best;
		for (int k = 0; k < threads; k++)
			sink ^= args[k].x;
	}
	free(v);
	return bytes / best;
}

/* ---- the encoders -------------------------------------------------------- */

typedef struct enc_arg {
	clip_ctx *ctx;
	const float *px;
	const int32_t *ids;
	int n;
	float *out;
} enc_arg;

static int
run_images(void *p)
{
	enc_arg *a = p;
	return clip_encode_images(a->ctx, a->px, a->n, a->out, NULL);
}

static int
run_text(void *p)
{
	enc_arg *a = p;
	return clip_encode_text(a->ctx, a->ids, a->n, a->out, NULL);
}

/* ---- PyTorch ---------------------------------------------------------------- */

static cJSON *
run_torch(int threads, int quick)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "tools/torch_bench.py --threads %d%s",
	    threads, quick ? " --quick" : "");
	FILE *p = popen(cmd, "r");
	if (p == NULL)
		return NULL;
	char line[4096], last[4096] = "";
	while (fgets(line, sizeof(line), p) != NULL)
		memcpy(last, line, sizeof(line));
	int st = pclose(p);
	if (st != 0)
		return NULL;
	return cJSON_Parse(last);
}

static double
jget(const cJSON *j, const char *a, const char *b)
{
	const cJSON *o = cJSON_GetObjectItem(cJSON_GetObjectItem(j, a), b);
	return cJSON_IsNumber(o) ? o->valuedouble : NAN;
}

int
main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), quick = 0;
	int torch = 1;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (strcmp(argv[i], "--quick") == 0)
			quick = 1;
		else if (strcmp(argv[i], "--no-torch") == 0)
			torch = 0;
		else {
			fprintf(stderr, "usage: %s [--threads N] [--quick] "
			    "[--no-torch]\n", argv[0]);
			return 2;
		}
	}
	if (threads < 1)
		threads = 1;
	double min_s = quick ? 0.2 : 1.5;

	/* PyTorch first, alone on the machine. */
	cJSON *tj = NULL;
	if (torch) {
		tj = run_torch(threads, quick);
		if (tj == NULL)
			printf("PyTorch: skipped (tools/torch_bench.py failed or "
			    "python3-torch is not installed)\n");
	}

	/* ViT-B/32 shapes. */
	tm_recipe r;
	tm_recipe_vit_b32(&r);
	char dir[] = "/tmp/cdx-bench-model-XXXXXX";
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	double t0 = now();
	if (tm_write_model(&r, dir) != 0) {
		fprintf(stderr, "cannot write the model to %s\n", dir);
		tm_rmtree(dir);
		return 1;
	}
	double t_write = now() - t0;
	clip_model_params params;
	clip_model_default_params(&params);
	params.n_threads = threads;
	clip_model *m = NULL;
	cdx_error err = {0};
	t0 = now();
	int rc = clip_model_load(dir, &params, &m, &err);
	double t_load = now() - t0;
	tm_rmtree(dir);
	if (rc != 0) {
		fprintf(stderr, "clip_model_load: %s\n", err.msg);
		return 1;
	}
	printf("encoder_bench: ViT-B/32 shapes (vision 768w/12L/12H/3072, text "
	    "512w/12L/8H/2048, projection 512), random weights, %d OpenBLAS "
	    "thread%s\n", threads, threads == 1 ? "" : "s");
	printf("model: written (F16) in %.1f s, loaded in %.2f s\n", t_write,
	    t_load);

	clip_ctx *ctx = NULL;
	if (clip_ctx_new(m, 32, &ctx, &err) != 0) {
		fprintf(stderr, "clip_ctx_new: %s\n", err.msg);
		return 1;
	}
	size_t per = (size_t)3 * 224 * 224;
	float *px = malloc(32 * per * sizeof(float));
	float *out = malloc(32 * 512 * sizeof(float));
	if (px == NULL || out == NULL)
		return 1;
	for (int j = 0; j < 32; j++)
		tm_pixels(5, j, 224, 4, 1.5f, 0.5f, px + j * per);

	/* SGEMM on the vision tower's shapes at batch 32 (T = 32 x 50),
	 * measured in turns with the batch-32 encoding so that both see the
	 * same machine. */
	int T = 32 * 50;
	gemm_shape vs[] = {
		{T, 3 * 768, 768, 12},  /* q|k|v */
		{T, 768, 768, 12},      /* out */
		{T, 3072, 768, 12},     /* fc1 */
		{T, 768, 3072, 12},     /* fc2 */
		{T, 768, 3072, 1},      /* patch embedding (im2col) */
	};
	int nvs = (int)(sizeof(vs) / sizeof(vs[0]));
	size_t amax = (size_t)T * 3072;
	gemm_arg ga = {vs, nvs, malloc(amax * 4), malloc((size_t)3072 * 3072 *
	    4), malloc(amax * 4)};
	if (!ga.a || !ga.w || !ga.c)
		return 1;
	for (size_t i = 0; i < amax; i++)
		ga.a[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
	for (size_t i = 0; i < (size_t)3072 * 3072; i++)
		ga.w[i] = (float)((i * 40503u) % 1000) * 1e-3f - 0.5f;
	enc_arg a32 = {ctx, px, NULL, 32, out};
	double t_gemm = INFINITY, t_32 = INFINITY;
	for (int round = 0; round < (quick ? 1 : 3); round++) {
		double t = best_time(run_gemms, &ga, 1, 0);
		t_gemm = t < t_gemm ? t : t_gemm;
		t = best_time(run_images, &a32, 1, 0);
		t_32 = t < t_32 ? t : t_32;
	}
	double gflop_batch = gemm_flops(vs, nvs) / 1e9;
	double gemm_rate = gflop_batch / t_gemm;
	double gemm_ips = 32 / t_gemm;
	printf("SGEMM (OpenBLAS, the model's GEMM shapes at batch 32): %.1f "
	    "GFLOP/s; %.2f GFLOP per image -> ceiling %.2f images/s\n",
	    gemm_rate, gflop_batch / 32, gemm_ips);
	free(ga.a);
	free(ga.w);
	free(ga.c);

	printf("\n%-22s %10s %12s %10s\n", "images", "ours/s", "PyTorch/s",
	    "speed-up");
	double ips32 = 0;
	int batches[] = {1, 8, 32};
	for (int bi = 0; bi < 3; bi++) {
		int b = batches[bi];
		enc_arg a = {ctx, px, NULL, b, out};
		double t = b == 32 ? t_32 : best_time(run_images, &a, 3, min_s);
		double ips = b / t;
		char key[8];
		snprintf(key, sizeof(key), "%d", b);
		double tips = tj ? jget(tj, "images_per_s", key) : NAN;
		printf("  batch %-14d %10.2f %12.2f %9.2fx\n", b, ips, tips,
		    ips / tips);
		if (b == 32)
			ips32 = ips;
	}
	/* The last block computes only the class token after attention, so
	 * the work done is less than the model's nominal GEMM work. */
	double layer = 2.0 * 50 * 768 * (3 * 768 + 768 + 2 * 3072);
	double last = 2.0 * 50 * 768 * 3 * 768 + 2.0 * 768 * (768 + 2 * 3072);
	double done = gflop_batch / 32 - (layer - last) / 1e9;
	printf("  batch 32 throughput = %.1f%% of the SGEMM ceiling "
	    "(target >= 85%%)\n", 100.0 * ips32 / gemm_ips);
	printf("  (the last block skips the non-class tokens: %.2f GFLOP done "
	    "per image, at %.1f GFLOP/s = %.1f%% of SGEMM)\n", done,
	    done * ips32, 100.0 * done * ips32 / gemm_rate);

	/* Text: weights read per query (all layers + projection; one row
	 * of each embedding table). */
	size_t tw = 512, tm = 2048;
	double text_bytes = 4.0 * (12 * (4 * tw * tw + 2 * tw * tm + 9 * tw +
	    tm) + 512 * tw);
	double bw = read_bandwidth((size_t)512 << 20, threads);
	printf("\n%-22s %10s %12s %10s\n", "text query (1 text)", "ours ms",
	    "PyTorch ms", "ratio");
	int lens[] = {8, 77};
	for (int li = 0; li < 2; li++) {
		int32_t ids[CLIP_CONTEXT_LEN];
		for (int j = 0; j < CLIP_CONTEXT_LEN; j++)
			ids[j] = CLIP_TOKEN_EOT;
		ids[0] = CLIP_TOKEN_SOT;
		for (int j = 1; j < lens[li] - 1; j++)
			ids[j] = 300 + 37 * j;
		enc_arg a = {ctx, NULL, ids, 1, out};
		double t = best_time(run_text, &a, 5, min_s) * 1e3;
		char key[8];
		snprintf(key, sizeof(key), "%d", lens[li]);
		double tt = tj ? jget(tj, "text_ms", key) : NAN;
		printf("  %2d tokens %11s %10.2f %12.2f %9.2fx%s\n", lens[li], "",
		    t, tt, t / tt, li == 0 ? "  (target <= 0.5x)" : "");
		if (li == 0)
			printf("  %.0f MB of float32 text weights at %.1f GB/s "
			    "(%d-thread read): floor %.2f ms\n", text_bytes / 1e6,
			    bw / 1e9, threads, text_bytes / bw * 1e3);
	}
	free(px);
	free(out);
	clip_ctx_free(ctx);
	clip_model_free(m);
	cJSON_Delete(tj);
	return 0;
}
