/*
 * encoder_bench - speed of the encoders on models with random weights of
 * two shapes, CLIP ViT-B/32 and SigLIP-B/16 (224 px), beside their
 * baselines measured in the same run:
 *   - the machine's SGEMM rate (OpenBLAS, same threads) on the model's own
 *     GEMM shapes: the ceiling for float32 image encoding;
 *   - CLIP: the bytes of text weights over the machine's read bandwidth:
 *     the floor for a short text query; SigLIP (whose text always runs
 *     all 64 positions): SGEMM on the text tower's shapes;
 *   - PyTorch (tools/torch_bench.py, same graph, shapes and threads), run
 *     first, alone on the machine, with OMP_WAIT_POLICY default and
 *     PASSIVE, the better of the two for each figure; skipped with a
 *     message when it is not installed.
 * The SigLIP section also reports the resident memory (VmRSS) before and
 * after loading, beside the size of model.safetensors.
 *
 *   encoder_bench [--threads N] [--quick] [--no-torch]
 *                 [--model-shape b32|siglip-b16|all]
 *                 [--precision auto|fp32|bf16|int8]
 *
 * N defaults to the number of online CPUs; the shape to all (CLIP, then
 * SigLIP); the precision to auto (what clip_model_load picks: bf16 where
 * the CPU multiplies it natively).  The SGEMM ceiling is float32's: other
 * precisions are not bound by it.  The model folders (F16, to halve the write) go to temporary
 * directories and are removed.
 */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/threads.h"
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

/* The GEMMs of `layers` pre-LN transformer layers over t rows (width d,
 * MLP m), then the patch embedding (im2col, k = 3 * p * p; none for 0):
 * writes 4 or 5 shapes and returns the count. */
static int
tower_shapes(gemm_shape *s, int t, int d, int m, int layers, int patch_k)
{
	s[0] = (gemm_shape){t, 3 * d, d, layers};   /* q|k|v */
	s[1] = (gemm_shape){t, d, d, layers};       /* out */
	s[2] = (gemm_shape){t, m, d, layers};       /* fc1 */
	s[3] = (gemm_shape){t, d, m, layers};       /* fc2 */
	if (patch_k == 0)
		return 4;
	s[4] = (gemm_shape){t, d, patch_k, 1};      /* patch embedding */
	return 5;
}

/* Operand buffers big enough for every shape, deterministically filled. */
static int
gemm_arg_init(gemm_arg *g, const gemm_shape *shapes, int n)
{
	size_t amax = 0, wmax = 0, cmax = 0;
	for (int i = 0; i < n; i++) {
		size_t m = (size_t)shapes[i].m, nn = (size_t)shapes[i].n;
		size_t k = (size_t)shapes[i].k;
		amax = m * k > amax ? m * k : amax;
		wmax = nn * k > wmax ? nn * k : wmax;
		cmax = m * nn > cmax ? m * nn : cmax;
	}
	*g = (gemm_arg){shapes, n, malloc(amax * 4), malloc(wmax * 4),
	    malloc(cmax * 4)};
	if (!g->a || !g->w || !g->c) {
		free(g->a);
		free(g->w);
		free(g->c);
		return -1;
	}
	for (size_t i = 0; i < amax; i++)
		g->a[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
	for (size_t i = 0; i < wmax; i++)
		g->w[i] = (float)((i * 40503u) % 1000) * 1e-3f - 0.5f;
	return 0;
}

static void
gemm_arg_free(gemm_arg *g)
{
	free(g->a);
	free(g->w);
	free(g->c);
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
run_torch1(int threads, int quick, const char *shape, int passive)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "%stools/torch_bench.py --threads %d "
	    "--shape %s%s", passive ? "OMP_WAIT_POLICY=PASSIVE " : "",
	    threads, shape, quick ? " --quick" : "");
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

/* Into a's object `key`, the better of a's and b's value for each
 * figure: the larger (images/s) or the smaller (ms). */
static void
merge_best(cJSON *a, const cJSON *b, const char *key, int larger)
{
	cJSON *oa = cJSON_GetObjectItem(a, key);
	const cJSON *ob = cJSON_GetObjectItem(b, key);
	const cJSON *e;
	cJSON_ArrayForEach(e, ob) {
		cJSON *x = cJSON_GetObjectItem(oa, e->string);
		if (!cJSON_IsNumber(e))
			continue;
		if (!cJSON_IsNumber(x))
			cJSON_AddNumberToObject(oa, e->string, e->valuedouble);
		else if (larger ? e->valuedouble > x->valuedouble :
		    e->valuedouble < x->valuedouble)
			cJSON_SetNumberValue(x, e->valuedouble);
	}
}

/* PyTorch's best: tools/torch_bench.py run with the OpenMP runtime's
 * default wait policy (its threads spin between parallel regions) and
 * with OMP_WAIT_POLICY=PASSIVE (they sleep, which is faster on a busy
 * machine), keeping the better figure of the two for each figure. */
static cJSON *
run_torch(int threads, int quick, const char *shape)
{
	cJSON *a = run_torch1(threads, quick, shape, 0);
	cJSON *b = run_torch1(threads, quick, shape, 1);
	if (a == NULL || b == NULL)
		return a != NULL ? a : b;
	merge_best(a, b, "images_per_s", 1);
	merge_best(a, b, "text_ms", 0);
	cJSON_Delete(b);
	return a;
}

static double
jget(const cJSON *j, const char *a, const char *b)
{
	const cJSON *o = cJSON_GetObjectItem(cJSON_GetObjectItem(j, a), b);
	return cJSON_IsNumber(o) ? o->valuedouble : NAN;
}

/* ---- memory ------------------------------------------------------------------ */

/* A "VmRSS:"-style field of /proc/self/status, in bytes; NAN if absent. */
static double
proc_status_bytes(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (f == NULL)
		return NAN;
	char line[256];
	size_t n = strlen(field);
	double v = NAN;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, field, n) == 0 && line[n] == ':') {
			v = strtod(line + n + 1, NULL) * 1024.0;
			break;
		}
	fclose(f);
	return v;
}

/* Resets VmHWM (the peak resident size) to the current VmRSS, so that a
 * later VmHWM is the peak of what comes after.  Returns 0 or -1. */
static int
reset_peak_rss(void)
{
	FILE *f = fopen("/proc/self/clear_refs", "w");
	if (f == NULL)
		return -1;
	int ok = fputs("5", f) >= 0;
	ok &= fclose(f) == 0;
	return ok ? 0 : -1;
}

/* ---- shared steps ------------------------------------------------------------ */

typedef struct bench_opts {
	int threads, quick;
	double min_s;
	int precision;             /* enum clip_precision */
} bench_opts;

/* What loading a model cost. */
typedef struct load_report {
	double t_write, t_load;    /* seconds */
	double file_bytes;         /* model.safetensors */
	double rss_before, rss_after, rss_peak;  /* bytes; peak NAN if unknown */
} load_report;

/* Writes recipe r to a temporary folder, loads it at o->precision and
 * removes the folder.  Returns the model or NULL (with a
 * message on stderr). */
static clip_model *
write_and_load(const tm_recipe *r, const bench_opts *o, load_report *lr)
{
	char dir[] = "/tmp/cdx-bench-model-XXXXXX";
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return NULL;
	}
	double t0 = now();
	if (tm_write_model(r, dir) != 0) {
		fprintf(stderr, "cannot write the model to %s\n", dir);
		tm_rmtree(dir);
		return NULL;
	}
	lr->t_write = now() - t0;
	char path[4096];
	struct stat st;
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	lr->file_bytes = stat(path, &st) == 0 ? (double)st.st_size : NAN;
	clip_model_params params;
	clip_model_default_params(&params);
	params.precision = o->precision;
	clip_model *m = NULL;
	cdx_error err = {0};
	/* Free heap pages (an earlier section's model) go back to the system
	 * first, so that reusing them counts in the difference. */
	malloc_trim(0);
	lr->rss_before = proc_status_bytes("VmRSS");
	int peak_ok = reset_peak_rss() == 0;
	t0 = now();
	int rc = clip_model_load(dir, &params, &m, &err);
	lr->t_load = now() - t0;
	lr->rss_after = proc_status_bytes("VmRSS");
	lr->rss_peak = peak_ok ? proc_status_bytes("VmHWM") : NAN;
	tm_rmtree(dir);
	if (rc != 0) {
		fprintf(stderr, "clip_model_load: %s\n", err.msg);
		return NULL;
	}
	return m;
}

/* SGEMM on the image tower's shapes at batch 32, measured in turns with
 * the batch-32 encoding (a32) so that both see the same machine.  Writes
 * the best batch-32 encode time to *t_32 and returns the best SGEMM time
 * (NAN on failure). */
static double
gemm_vs_batch32(const gemm_shape *shapes, int n, enc_arg *a32, int quick,
    double *t_32)
{
	gemm_arg ga;
	if (gemm_arg_init(&ga, shapes, n) != 0)
		return NAN;
	double t_gemm = INFINITY;
	*t_32 = INFINITY;
	for (int round = 0; round < (quick ? 1 : 3); round++) {
		double t = best_time(run_gemms, &ga, 1, 0);
		t_gemm = t < t_gemm ? t : t_gemm;
		t = best_time(run_images, a32, 1, 0);
		*t_32 = t < *t_32 ? t : *t_32;
	}
	gemm_arg_free(&ga);
	return t_gemm;
}

/* "model: written ... loaded ..., precision ..." */
static void
print_model_line(const clip_model *m, const load_report *lr)
{
	const clip_model_info *in = clip_model_get_info(m);
	printf("model: written (F16) in %.1f s, loaded in %.2f s; precision %s "
	    "(%s)\n", lr->t_write, lr->t_load,
	    clip_precision_name(in->precision), in->kernels);
}

/* A note under a ceiling ratio when the linear layers do not run in
 * float32 (the SGEMM ceiling is float32's). */
static void
print_precision_note(const clip_model *m)
{
	int p = clip_model_get_info(m)->precision;
	if (p != CLIP_PRECISION_FP32)
		printf("  (precision %s: the float32 SGEMM ceiling does not bound "
		    "it; --precision fp32 measures against it)\n",
		    clip_precision_name(p));
}

/* The images table: batches 1, 8 and 32 (t_32: already measured) beside
 * PyTorch's (tj, may be NULL).  Returns images/s at batch 32. */
static double
print_images(clip_ctx *ctx, const float *px, float *out, double t_32,
    const cJSON *tj, const bench_opts *o)
{
	printf("\n%-22s %10s %12s %10s\n", "images", "ours/s", "PyTorch/s",
	    "speed-up");
	double ips32 = 0;
	int batches[] = {1, 8, 32};
	for (int bi = 0; bi < 3; bi++) {
		int b = batches[bi];
		enc_arg a = {ctx, px, NULL, b, out};
		double t = b == 32 ? t_32 : best_time(run_images, &a, 3,
		    o->min_s);
		double ips = b / t;
		char key[8];
		snprintf(key, sizeof(key), "%d", b);
		double tips = tj ? jget(tj, "images_per_s", key) : NAN;
		printf("  batch %-14d %10.2f %12.2f %9.2fx\n", b, ips, tips,
		    ips / tips);
		if (b == 32)
			ips32 = ips;
	}
	return ips32;
}

/* A 32-image batch of test pixels (CHW, size x size each). */
static float *
bench_pixels(int size)
{
	size_t per = (size_t)3 * size * size;
	float *px = malloc(32 * per * sizeof(float));
	if (px == NULL)
		return NULL;
	for (int j = 0; j < 32; j++)
		tm_pixels(5, j, size, 4, 1.5f, 0.5f, px + j * per);
	return px;
}

/* CLIP's text figures, for the SigLIP section's comparison. */
typedef struct clip_text_ms {
	double ms8, ms77;          /* NAN when the CLIP section did not run */
} clip_text_ms;

/* ---- CLIP ViT-B/32 ----------------------------------------------------------- */

static int
bench_clip(const bench_opts *o, const cJSON *tj, clip_text_ms *ct)
{
	int threads = o->threads, quick = o->quick;
	double min_s = o->min_s;
	/* ViT-B/32 shapes. */
	tm_recipe r;
	tm_recipe_vit_b32(&r);
	load_report lr;
	clip_model *m = write_and_load(&r, o, &lr);
	if (m == NULL)
		return 1;
	printf("encoder_bench: ViT-B/32 shapes (vision 768w/12L/12H/3072, text "
	    "512w/12L/8H/2048, projection 512), random weights, %d OpenBLAS "
	    "thread%s\n", threads, threads == 1 ? "" : "s");
	print_model_line(m, &lr);

	clip_ctx *ctx = NULL;
	cdx_error err = {0};
	if (clip_ctx_new(m, 32, &ctx, &err) != 0) {
		fprintf(stderr, "clip_ctx_new: %s\n", err.msg);
		return 1;
	}
	float *px = bench_pixels(224);
	float *out = malloc(32 * 512 * sizeof(float));
	if (px == NULL || out == NULL)
		return 1;

	/* SGEMM on the vision tower's shapes at batch 32 (T = 32 x 50). */
	gemm_shape vs[5];
	int nvs = tower_shapes(vs, 32 * 50, 768, 3072, 12, 3 * 32 * 32);
	enc_arg a32 = {ctx, px, NULL, 32, out};
	double t_32;
	double t_gemm = gemm_vs_batch32(vs, nvs, &a32, quick, &t_32);
	if (isnan(t_gemm))
		return 1;
	double gflop_batch = gemm_flops(vs, nvs) / 1e9;
	double gemm_rate = gflop_batch / t_gemm;
	double gemm_ips = 32 / t_gemm;
	printf("SGEMM (OpenBLAS, the model's GEMM shapes at batch 32): %.1f "
	    "GFLOP/s; %.2f GFLOP per image -> ceiling %.2f images/s\n",
	    gemm_rate, gflop_batch / 32, gemm_ips);

	double ips32 = print_images(ctx, px, out, t_32, tj, o);
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
	print_precision_note(m);

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
		if (li == 0)
			ct->ms8 = t;
		else
			ct->ms77 = t;
	}
	free(px);
	free(out);
	clip_ctx_free(ctx);
	clip_model_free(m);
	return 0;
}

/* ---- SigLIP-B/16 ------------------------------------------------------------- */

static int
bench_siglip(const bench_opts *o, const cJSON *tj, const clip_text_ms *ct)
{
	int threads = o->threads, quick = o->quick;
	tm_recipe r;
	tm_recipe_siglip_b16(&r);
	const int D = r.vision.width, M = r.vision.mlp, L = r.vision.layers;
	const int size = r.vision.image_size, patch = r.vision.patch_size;
	const int tokens = (size / patch) * (size / patch);
	load_report lr;
	clip_model *m = write_and_load(&r, o, &lr);
	if (m == NULL)
		return 1;
	const clip_model_info *in = clip_model_get_info(m);
	const int ctxlen = in->context_len, E = in->embed_dim;
	printf("encoder_bench: SigLIP-B/16 shapes (both towers %dw/%dL/%dH/%d, "
	    "image %d, patch %d = %d tokens, attention-pooling head; vocabulary "
	    "%d, %d text positions), random weights, %d OpenBLAS thread%s\n",
	    D, L, r.vision.heads, M, size, patch, tokens, in->vocab_size, ctxlen,
	    threads, threads == 1 ? "" : "s");
	print_model_line(m, &lr);
	/* The token table stays in its stored dtype (F16 here). */
	double table = (double)in->vocab_size * in->text_width * 2;
	printf("memory: model.safetensors %.0f MB (F16); resident %.0f MB "
	    "before load -> %.0f MB after (+%.0f MB = %.2fx the file)",
	    lr.file_bytes / 1e6, lr.rss_before / 1e6, lr.rss_after / 1e6,
	    (lr.rss_after - lr.rss_before) / 1e6,
	    (lr.rss_after - lr.rss_before) / lr.file_bytes);
	if (!isnan(lr.rss_peak))
		printf(", peak during load %.0f MB", lr.rss_peak / 1e6);
	printf("\n  weights as loaded: %.0f MB at precision %s, of which the "
	    "token table %.0f MB (F16, as stored)\n",
	    (double)in->weight_bytes / 1e6,
	    clip_precision_name(in->precision), table / 1e6);

	clip_ctx *ctx = NULL;
	cdx_error err = {0};
	if (clip_ctx_new(m, 32, &ctx, &err) != 0) {
		fprintf(stderr, "clip_ctx_new: %s\n", err.msg);
		return 1;
	}
	float *px = bench_pixels(size);
	float *out = malloc(32 * (size_t)E * sizeof(float));
	if (px == NULL || out == NULL)
		return 1;

	/* SGEMM on the vision tower's shapes at batch 32 (T = 32 x 196),
	 * then the attention-pooling head: k|v of every token, and q, out,
	 * fc1, fc2 of the probe. */
	int T = 32 * tokens;
	gemm_shape vs[10];
	int nvs = tower_shapes(vs, T, D, M, L, 3 * patch * patch);
	vs[nvs++] = (gemm_shape){T, 2 * D, D, 1};
	vs[nvs++] = (gemm_shape){32, D, D, 2};
	vs[nvs++] = (gemm_shape){32, M, D, 1};
	vs[nvs++] = (gemm_shape){32, D, M, 1};
	enc_arg a32 = {ctx, px, NULL, 32, out};
	double t_32;
	double t_gemm = gemm_vs_batch32(vs, nvs, &a32, quick, &t_32);
	if (isnan(t_gemm))
		return 1;
	double gflop_batch = gemm_flops(vs, nvs) / 1e9;
	double gemm_ips = 32 / t_gemm;
	printf("SGEMM (OpenBLAS, the model's GEMM shapes at batch 32): %.1f "
	    "GFLOP/s; %.2f GFLOP per image -> ceiling %.2f images/s\n",
	    gflop_batch / t_gemm, gflop_batch / 32, gemm_ips);

	double ips32 = print_images(ctx, px, out, t_32, tj, o);
	printf("  batch 32 throughput = %.1f%% of the SGEMM ceiling (every "
	    "block computes all %d tokens: the head attends over them)\n",
	    100.0 * ips32 / gemm_ips, tokens);
	print_precision_note(m);
	const cJSON *trss = tj ? cJSON_GetObjectItem(tj, "rss_mb") : NULL;
	printf("  resident after the batch-32 runs: %.0f MB (weights + "
	    "batch-32 scratch)", proc_status_bytes("VmRSS") / 1e6);
	if (cJSON_IsNumber(trss))
		printf("; PyTorch's after building its float32 model: %.0f MB",
		    trss->valuedouble);
	printf("\n");

	/* Text: a SigLIP query always runs all ctxlen positions (attention
	 * is not causal and the last position is pooled), so a short text
	 * costs what a full one does.  ids: n - 1 pieces, then EOS, then the
	 * pad id, as the tokenizer pads (EOS and pad read from what it makes
	 * of an empty text). */
	const clip_tokenizer *tok = clip_model_tokenizer(m);
	int32_t empty[CLIP_CONTEXT_LEN];
	int n_empty = 0;
	if (clip_tokenize(tok, "", 0, empty, &n_empty, &err) != 0 ||
	    n_empty < 1 || ctxlen < 2 || ctxlen > CLIP_CONTEXT_LEN) {
		fprintf(stderr, "clip_tokenize: %s\n", err.msg);
		return 1;
	}
	int32_t eos = empty[n_empty - 1], pad = empty[ctxlen - 1];
	int nv = clip_tokenizer_vocab_size(tok);
	gemm_shape ts[5];
	int nts = tower_shapes(ts, ctxlen, r.text.width, r.text.mlp,
	    r.text.layers, 0);
	ts[nts++] = (gemm_shape){1, E, r.text.width, 1};   /* head */
	gemm_arg ga;
	if (gemm_arg_init(&ga, ts, nts) != 0)
		return 1;
	double t_tgemm = best_time(run_gemms, &ga, 5, o->min_s);
	gemm_arg_free(&ga);
	printf("\n%-22s %10s %12s %10s\n", "text query (1 text)", "ours ms",
	    "PyTorch ms", "ratio");
	int lens[] = {8, ctxlen};
	for (int li = 0; li < 2; li++) {
		int32_t ids[CLIP_CONTEXT_LEN];
		for (int j = 0; j < ctxlen; j++)
			ids[j] = pad;
		for (int j = 0; j < lens[li] - 1; j++)
			ids[j] = 3 + (300 + 37 * j) % (nv - 3);
		ids[lens[li] - 1] = eos;
		enc_arg a = {ctx, NULL, ids, 1, out};
		double t = best_time(run_text, &a, 5, o->min_s) * 1e3;
		char key[16], label[64];
		snprintf(key, sizeof(key), "%d", lens[li]);
		double tt = tj ? jget(tj, "text_ms", key) : NAN;
		if (lens[li] < ctxlen)
			snprintf(label, sizeof(label), "%d tokens + %d pad",
			    lens[li], ctxlen - lens[li]);
		else
			snprintf(label, sizeof(label), "%d tokens", lens[li]);
		printf("  %-20s %10.2f %12.2f %9.2fx\n", label, t, tt, t / tt);
	}
	printf("  SGEMM on the text tower's GEMM shapes (%d rows): %.2f GFLOP "
	    "in %.2f ms = floor\n", ctxlen, gemm_flops(ts, nts) / 1e9,
	    t_tgemm * 1e3);
	printf("  (SigLIP's attention is not causal: every text runs all %d "
	    "positions, the 8-token text included; ", ctxlen);
	if (ct != NULL && !isnan(ct->ms8))
		printf("CLIP B/32 stops at its end token: 8 tokens %.2f ms, 77 "
		    "tokens %.2f ms in this run)\n", ct->ms8, ct->ms77);
	else
		printf("CLIP B/32 stops at its end token: --model-shape all "
		    "compares)\n");
	free(px);
	free(out);
	clip_ctx_free(ctx);
	clip_model_free(m);
	return 0;
}

int
main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), quick = 0;
	int torch = 1, do_clip = 1, do_siglip = 1;
	int precision = CLIP_PRECISION_AUTO;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (strcmp(argv[i], "--quick") == 0)
			quick = 1;
		else if (strcmp(argv[i], "--no-torch") == 0)
			torch = 0;
		else if (strcmp(argv[i], "--model-shape") == 0 && i + 1 < argc &&
		    (strcmp(argv[i + 1], "b32") == 0 ||
		    strcmp(argv[i + 1], "siglip-b16") == 0 ||
		    strcmp(argv[i + 1], "all") == 0)) {
			i++;
			do_clip = strcmp(argv[i], "siglip-b16") != 0;
			do_siglip = strcmp(argv[i], "b32") != 0;
		} else if (strcmp(argv[i], "--precision") == 0 && i + 1 < argc &&
		    clip_precision_parse(argv[i + 1], &precision) == 0) {
			i++;
		} else {
			int help = strcmp(argv[i], "--help") == 0;
			fprintf(help ? stdout : stderr, "usage: %s [--threads N] "
			    "[--quick] [--no-torch] "
			    "[--model-shape b32|siglip-b16|all] "
			    "[--precision auto|fp32|bf16|int8]\n", argv[0]);
			return help ? 0 : 2;
		}
	}
	if (threads < 1)
		threads = 1;
	threads = cdx_threads_set(threads);   /* OpenBLAS and OpenMP */
	bench_opts o = {threads, quick, quick ? 0.2 : 1.5, precision};

	/* PyTorch first, alone on the machine. */
	cJSON *tj_clip = NULL, *tj_siglip = NULL;
	if (torch) {
		const char *shapes[2] = {"b32", "siglip-b16"};
		cJSON **dst[2] = {&tj_clip, &tj_siglip};
		int want[2] = {do_clip, do_siglip};
		for (int k = 0; k < 2; k++) {
			if (!want[k])
				continue;
			*dst[k] = run_torch(threads, quick, shapes[k]);
			if (*dst[k] == NULL)
				printf("PyTorch (%s): skipped (tools/torch_bench.py "
				    "failed or python3-torch is not installed)\n",
				    shapes[k]);
		}
	}

	int rc = 0;
	clip_text_ms ct = {NAN, NAN};
	if (do_clip)
		rc = bench_clip(&o, tj_clip, &ct);
	if (rc == 0 && do_siglip) {
		if (do_clip)
			printf("\n");
		rc = bench_siglip(&o, tj_siglip, &ct);
	}
	cJSON_Delete(tj_clip);
	cJSON_Delete(tj_siglip);
	return rc;
}
