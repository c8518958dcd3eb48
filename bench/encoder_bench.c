/*
 * encoder_bench - speed, memory and fidelity of the encoders at every
 * precision (fp32, bf16, int8, int8-mixed), side by side, on random-weight
 * models of three shapes: CLIP ViT-B/32, CLIP ViT-B/16 and SigLIP-B/16
 * (224 px), beside baselines measured in the same run:
 *   - PyTorch fp32 (tools/torch_bench.py: the same graph, shapes and
 *     threads), run first, alone on the machine, with OMP_WAIT_POLICY
 *     default and PASSIVE, the better of the two for each figure; skipped
 *     with a message when it is not installed;
 *   - the library's own GEMM rate on the model's linear-layer shapes at
 *     batch 32, at each precision: OpenBLAS SGEMM for fp32; for bf16 and
 *     int8 both oneDNN's matmul primitive alone (inputs already in bf16 /
 *     s8: the ceiling the >= 85% target is measured against) and
 *     encoder/gemm.c's gemm_run (which also converts the float32
 *     activations: what the encoder pays).  Each is measured in turns
 *     with the batch-32 encoding, so that both see the same machine;
 *   - text: the linear weights' bytes in that precision over the measured
 *     read bandwidth (the floor of a short query), and gemm_run over the
 *     text tower's own (distinct) weights at the query's row count.
 * Then resident memory after load, and fidelity against fp32 on the same
 * inputs (32 images, 16 texts of 3 to 77 tokens): worst and mean cosine,
 * beside a control (fp32 on the same pixels rounded to bf16).  The random
 * models of tests/testmodel.h have near-argmax attention (q/k gain 6) and
 * are chaotic over 12 layers, so for ViT-B/32 fidelity is measured again
 * on the same model with q/k weights / 6 (tempered_model()).  The end
 * prints every target, met or missed.
 *
 *   encoder_bench [--threads N] [--quick] [--no-torch]
 *                 [--model-shape b32|b16|siglip-b16|all]
 *                 [--precision all|auto|fp32|bf16|int8|int8-mixed]
 *
 * N defaults to the available cores; shape and precision to all.
 * --quick: one measuring round, short minimum times, no batch 1 and 8.
 * Every figure is a least time (the least disturbed on a shared machine).
 * The whole default run takes about 13 minutes on the 2-core development
 * VM, 3 of them PyTorch's.  OpenMP's wait policy is the environment's
 * (printed in the header): with libgomp's default spinning, every oneDNN
 * call of a short text query waits for a time slice when other work
 * holds the cores (8-token bf16 text 3 ms on a quiet machine, ~360 ms
 * beside two busy loops); OMP_WAIT_POLICY=PASSIVE avoids that but costs
 * a wake-up per call (8 ms quiet).
 * The model folders (F16) go to temporary directories and are removed.
 */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <malloc.h>
#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/threads.h"
#include "encoder/clip.h"
#include "encoder/gemm.h"
#include "tests/testmodel.h"
#include "tests/testutil.h"

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
 * seconds, after one warm-up run. */
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

/* Seconds of one run of fn, NAN on failure. */
static double
one_time(bench_fn fn, void *arg)
{
	double t0 = now();
	return fn(arg) == 0 ? now() - t0 : NAN;
}

static double
fmin_nan(double a, double b)
{
	return isnan(a) ? b : isnan(b) ? a : a < b ? a : b;
}

static volatile uint64_t sink;

/* ---- precisions ----------------------------------------------------------- */

/* The precision a linear layer runs at under a model precision, as
 * encoder/model.c packs it (down: an MLP down-projection). */
static int
lin_prec(int precision, int down)
{
	const char *n = clip_precision_name(precision);
	if (strcmp(n, "bf16") == 0)
		return GEMM_BF16;
	if (strcmp(n, "int8") == 0)
		return GEMM_S8;
	if (strcmp(n, "int8-mixed") == 0)
		return down ? GEMM_BF16 : GEMM_S8;
	return GEMM_F32;
}

/* ---- the model's GEMM shapes ----------------------------------------------- */

typedef struct gemm_shape {
	int m, n, k, count, down;
} gemm_shape;

static double
gemm_flops(const gemm_shape *s, int n)
{
	double f = 0;
	for (int i = 0; i < n; i++)
		f += 2.0 * s[i].m * s[i].n * s[i].k * s[i].count;
	return f;
}

/* The GEMMs of `layers` pre-LN transformer layers over t rows (width d,
 * MLP m): 4 shapes. */
static int
tower_shapes(gemm_shape *s, int t, int d, int m, int layers)
{
	s[0] = (gemm_shape){t, 3 * d, d, layers, 0};   /* q|k|v */
	s[1] = (gemm_shape){t, d, d, layers, 0};       /* out */
	s[2] = (gemm_shape){t, m, d, layers, 0};       /* fc1 */
	s[3] = (gemm_shape){t, d, m, layers, 1};       /* fc2 */
	return 4;
}

/* ---- the library's GEMM rate on a set of shapes ---------------------------- */

/* One packed weight per shape (layers of a shape reuse it, as every layer
 * has the same cost), the activations, and for bf16 / s8 shapes a oneDNN
 * matmul primitive on the same packed weight with inputs already
 * converted ("alone"). */
#define MAX_SHAPES 16

typedef struct gemm_set {
	int n;
	gemm_shape sh[MAX_SHAPES];
	int gp[MAX_SHAPES];             /* enum gemm_prec per shape */
	gemm_weight w[MAX_SHAPES];
	float *src[MAX_SHAPES];         /* GEMM_F32 weights' storage */
	float *x, *y;
	gemm_ctx *ctx;
	/* the matmul primitives alone */
	dnnl_engine_t eng;
	dnnl_stream_t stream;
	dnnl_primitive_t prim[MAX_SHAPES];
	dnnl_memory_t msrc[MAX_SHAPES], mwei[MAX_SHAPES], mdst[MAX_SHAPES];
	dnnl_memory_t mpad[MAX_SHAPES];
	void *xq, *acc, *pad[MAX_SHAPES];
	int any_onednn;
} gemm_set;

static void
fill(float *v, size_t n, uint32_t mul)
{
	for (size_t i = 0; i < n; i++)
		v[i] = (float)((i * mul) % 1000) * 1e-3f - 0.5f;
}

static void
gemm_set_free(gemm_set *g)
{
	for (int i = 0; i < g->n; i++) {
		gemm_weight_release(&g->w[i]);
		free(g->src[i]);
		dnnl_primitive_destroy(g->prim[i]);
		dnnl_memory_destroy(g->msrc[i]);
		dnnl_memory_destroy(g->mwei[i]);
		dnnl_memory_destroy(g->mdst[i]);
		dnnl_memory_destroy(g->mpad[i]);
		free(g->pad[i]);
	}
	gemm_ctx_free(g->ctx);
	if (g->stream)
		dnnl_stream_destroy(g->stream);
	if (g->eng)
		dnnl_engine_destroy(g->eng);
	free(g->x);
	free(g->y);
	free(g->xq);
	free(g->acc);
	memset(g, 0, sizeof(*g));
}

/* The matmul primitive of shape i on its packed weight as gemm.c makes
 * it (src t x k bf16 / s8, dst f32 / s32, a scratchpad of its own, no
 * post-ops).  The scratchpad is the caller's, as in gemm.c: in oneDNN's
 * default mode the library may allocate it on each call. */
static int
make_prim(gemm_set *g, int i)
{
	const gemm_shape *s = &g->sh[i];
	const dnnl_memory_desc_t *wmd = g->w[i].md;
	int s8 = g->gp[i] == GEMM_S8;
	dnnl_memory_desc_t a, c;
	dnnl_dims_t ad = {s->m, s->k}, cd = {s->m, s->n};
	dnnl_matmul_desc_t md;
	dnnl_primitive_desc_t pd = NULL;
	dnnl_primitive_attr_t attr = NULL;
	int ok = dnnl_primitive_attr_create(&attr) == dnnl_success &&
	    dnnl_primitive_attr_set_scratchpad_mode(attr,
	    dnnl_scratchpad_mode_user) == dnnl_success &&
	    dnnl_memory_desc_init_by_tag(&a, 2, ad, s8 ? dnnl_s8 :
	    dnnl_bf16, dnnl_ab) == dnnl_success &&
	    dnnl_memory_desc_init_by_tag(&c, 2, cd, s8 ? dnnl_s32 : dnnl_f32,
	    dnnl_ab) == dnnl_success &&
	    dnnl_matmul_desc_init(&md, &a, wmd, NULL, &c) == dnnl_success &&
	    dnnl_primitive_desc_create(&pd, &md, attr, g->eng, NULL) ==
	    dnnl_success &&
	    dnnl_primitive_create(&g->prim[i], pd) == dnnl_success &&
	    dnnl_memory_create(&g->msrc[i], &a, g->eng, g->xq) ==
	    dnnl_success &&
	    dnnl_memory_create(&g->mwei[i], wmd, g->eng, g->w[i].packed) ==
	    dnnl_success &&
	    dnnl_memory_create(&g->mdst[i], &c, g->eng, g->acc) ==
	    dnnl_success;
	const dnnl_memory_desc_t *pmd = ok ? dnnl_primitive_desc_query_md(pd,
	    dnnl_query_scratchpad_md, 0) : NULL;
	size_t pb = pmd != NULL ? dnnl_memory_desc_get_size(pmd) : 0;
	if (ok && pb > 0)
		ok = (g->pad[i] = gemm_alloc(pb)) !=
		    NULL && dnnl_memory_create(&g->mpad[i], pmd, g->eng,
		    g->pad[i]) == dnnl_success;
	if (pd != NULL)
		dnnl_primitive_desc_destroy(pd);
	if (attr != NULL)
		dnnl_primitive_attr_destroy(attr);
	return ok ? 0 : -1;
}

/* Packs one weight per shape at lin_prec(precision, down) and makes the
 * buffers and primitives.  Returns 0 or -1 (message on stderr). */
static int
gemm_set_init(gemm_set *g, const gemm_engine *e, const gemm_shape *sh,
    int n, int precision)
{
	memset(g, 0, sizeof(*g));
	size_t amax = 0, cmax = 0;
	cdx_error err = {0};
	g->n = n;
	for (int i = 0; i < n; i++) {
		g->sh[i] = sh[i];
		g->gp[i] = lin_prec(precision, sh[i].down);
		size_t m = (size_t)sh[i].m, nn = (size_t)sh[i].n;
		size_t k = (size_t)sh[i].k;
		amax = m * k > amax ? m * k : amax;
		cmax = m * nn > cmax ? m * nn : cmax;
		g->any_onednn |= g->gp[i] != GEMM_F32;
	}
	g->x = gemm_alloc(amax * 4);
	g->y = gemm_alloc(cmax * 4);
	g->xq = gemm_alloc(amax * 2);
	g->acc = gemm_alloc(cmax * 4);
	if (g->x == NULL || g->y == NULL || g->xq == NULL || g->acc == NULL)
		goto fail;
	fill(g->x, amax, 2654435761u);
	/* bf16 values about 2^-7..2^-6 (as s8 bytes: 0..60) */
	for (size_t i = 0; i < amax; i++)
		((uint16_t *)g->xq)[i] = (uint16_t)(0x3c00u + i % 200u);
	if (gemm_ctx_new(e, &g->ctx, &err) != 0)
		goto fail;
	if (g->any_onednn && (dnnl_engine_create(&g->eng, dnnl_cpu, 0) !=
	    dnnl_success || dnnl_stream_create(&g->stream, g->eng,
	    dnnl_stream_default_flags) != dnnl_success))
		goto fail;
	for (int i = 0; i < n; i++) {
		size_t nk = (size_t)sh[i].n * sh[i].k;
		g->src[i] = malloc(nk * 4);
		if (g->src[i] == NULL)
			goto fail;
		fill(g->src[i], nk, 40503u);
		if (gemm_weight_init(&g->w[i], e, g->src[i], sh[i].n, sh[i].k,
		    g->gp[i], &err) != 0)
			goto fail;
		if (g->gp[i] != GEMM_F32) {
			free(g->src[i]);
			g->src[i] = NULL;
			if (make_prim(g, i) != 0) {
				snprintf(err.msg, sizeof(err.msg), "oneDNN matmul "
				    "for %dx%dx%d", sh[i].m, sh[i].n, sh[i].k);
				goto fail;
			}
		}
	}
	return 0;
fail:
	fprintf(stderr, "encoder_bench: GEMM baseline: %s\n",
	    err.msg[0] ? err.msg : "out of memory");
	gemm_set_free(g);
	return -1;
}

/* Every shape's GEMMs through gemm_run (fp32: OpenBLAS SGEMM). */
static int
run_lib(void *p)
{
	gemm_set *g = p;
	for (int s = 0; s < g->n; s++)
		for (int r = 0; r < g->sh[s].count; r++)
			if (gemm_run(g->ctx, g->x, &g->w[s], g->y, g->sh[s].m, 0.0f,
			    NULL, GEMM_ACT_NONE, NULL) != 0)
				return -1;
	return 0;
}

/* The same with the oneDNN primitives alone (no conversions); fp32
 * shapes through SGEMM. */
static int
run_alone(void *p)
{
	gemm_set *g = p;
	for (int s = 0; s < g->n; s++) {
		const gemm_shape *sh = &g->sh[s];
		for (int r = 0; r < sh->count; r++) {
			if (g->prim[s] == NULL) {
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans,
				    sh->m, sh->n, sh->k, 1.0f, g->x, sh->k,
				    g->w[s].f32, sh->k, 0.0f, g->y, sh->n);
				continue;
			}
			dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, g->msrc[s]},
			    {DNNL_ARG_WEIGHTS, g->mwei[s]},
			    {DNNL_ARG_DST, g->mdst[s]},
			    {DNNL_ARG_SCRATCHPAD, g->mpad[s]}};
			if (dnnl_primitive_execute(g->prim[s], g->stream,
			    g->mpad[s] != NULL ? 4 : 3, args) !=
			    dnnl_success || dnnl_stream_wait(g->stream) !=
			    dnnl_success)
				return -1;
		}
	}
	return 0;
}

/* ---- text GEMMs over distinct weights ------------------------------------- */

/* Every linear layer of a text tower, each its own packed copy (so that
 * a short query reads them from memory, as the encoder does), run at t
 * rows (the projection / head at one row). */
typedef struct text_gemms {
	int n;
	gemm_weight *w;
	float **src;
	int *one_row;
	float *x, *y;
	gemm_ctx *ctx;
	int t;
	double bytes;       /* what the weights occupy */
} text_gemms;

static void
text_gemms_free(text_gemms *tg)
{
	for (int i = 0; i < tg->n; i++) {
		gemm_weight_release(&tg->w[i]);
		if (tg->src)
			free(tg->src[i]);
	}
	free(tg->w);
	free(tg->src);
	free(tg->one_row);
	free(tg->x);
	free(tg->y);
	gemm_ctx_free(tg->ctx);
	memset(tg, 0, sizeof(*tg));
}

static int
text_gemms_init(text_gemms *tg, const gemm_engine *e, int width, int mlp,
    int layers, int out_dim, int max_rows, int precision)
{
	memset(tg, 0, sizeof(*tg));
	gemm_shape sh[4];
	tower_shapes(sh, max_rows, width, mlp, layers);
	int n = 4 * layers + 1;
	tg->w = calloc((size_t)n, sizeof(gemm_weight));
	tg->src = calloc((size_t)n, sizeof(float *));
	tg->one_row = calloc((size_t)n, sizeof(int));
	size_t big = (size_t)max_rows * (width > mlp ? width : mlp) * 3;
	tg->x = malloc(big * 4);
	tg->y = malloc(big * 4);
	cdx_error err = {0};
	if (tg->w == NULL || tg->src == NULL || tg->one_row == NULL ||
	    tg->x == NULL || tg->y == NULL || gemm_ctx_new(e, &tg->ctx,
	    &err) != 0)
		goto fail;
	fill(tg->x, big, 2654435761u);
	for (int i = 0; i < n; i++) {
		int last = i == n - 1;
		const gemm_shape *s = &sh[i % 4];
		int nn = last ? out_dim : s->n, k = last ? width : s->k;
		int gp = lin_prec(precision, !last && s->down);
		size_t nk = (size_t)nn * k;
		tg->src[i] = malloc(nk * 4);
		if (tg->src[i] == NULL)
			goto fail;
		fill(tg->src[i], nk, 40503u + 2u * (uint32_t)i);
		if (gemm_weight_init(&tg->w[i], e, tg->src[i], nn, k, gp,
		    &err) != 0)
			goto fail;
		tg->n = i + 1;
		tg->one_row[i] = last;
		tg->bytes += gp == GEMM_F32 ? (double)nk * 4 :
		    (double)tg->w[i].packed_bytes + (tg->w[i].scale ? 4.0 * nn :
		    0.0);
		if (gp != GEMM_F32) {
			free(tg->src[i]);
			tg->src[i] = NULL;
		}
	}
	return 0;
fail:
	fprintf(stderr, "encoder_bench: text GEMMs: %s\n",
	    err.msg[0] ? err.msg : "out of memory");
	text_gemms_free(tg);
	return -1;
}

static int
run_text_gemms(void *p)
{
	text_gemms *tg = p;
	for (int i = 0; i < tg->n; i++)
		if (gemm_run(tg->ctx, tg->x, &tg->w[i], tg->y,
		    tg->one_row[i] ? 1 : tg->t, 0.0f, NULL, GEMM_ACT_NONE,
		    NULL) != 0)
			return -1;
	return 0;
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

/* Bytes per second read from memory by `threads` threads, each streaming
 * its share of a buffer far larger than the caches; best of 5. */
static double
read_bandwidth(size_t bytes, int threads)
{
	size_t n = bytes / sizeof(uint64_t);
	uint64_t *v = malloc(bytes);
	if (v == NULL || threads > 64) {
		free(v);
		return NAN;
	}
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

/* PyTorch's best: tools/torch_bench.py with the OpenMP runtime's default
 * wait policy and with OMP_WAIT_POLICY=PASSIVE, the better figure of the
 * two for each figure. */
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

/* ---- the header ---------------------------------------------------------------- */

/* The CPU's model name and the flags that decide the kernels. */
static void
print_cpu(void)
{
	static const char *want[] = {"avx2", "avx512f", "avx512_vnni",
	    "avx512_bf16", "amx_bf16", "amx_int8"};
	char line[8192], model[256] = "?", flags[8192] = "";
	FILE *f = fopen("/proc/cpuinfo", "r");
	while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
		char *c = strchr(line, ':');
		if (c == NULL)
			continue;
		if (strncmp(line, "model name", 10) == 0 && model[0] == '?')
			snprintf(model, sizeof(model), "%s", c + 2);
		else if (strncmp(line, "flags", 5) == 0 && flags[0] == 0)
			snprintf(flags, sizeof(flags), " %s", c + 2);
	}
	if (f != NULL)
		fclose(f);
	model[strcspn(model, "\n")] = 0;
	flags[strcspn(flags, "\n")] = 0;
	strcat(flags, " ");
	printf("CPU: %s; flags:", model);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		char w[64];
		snprintf(w, sizeof(w), " %s ", want[i]);
		printf(" %s %s", want[i], strstr(flags, w) ? "yes" : "NO");
	}
	printf("\n");
}

/* The oneDNN matmul implementation for a weight of n x k at gp and t
 * rows. */
static const char *
probe_impl(const gemm_engine *e, int gp, int n, int k, int t, char *buf,
    size_t len)
{
	gemm_weight w;
	gemm_ctx *c = NULL;
	cdx_error err = {0};
	float *src = malloc(sizeof(float) * (size_t)n * k);
	float *x = malloc(sizeof(float) * (size_t)t * k);
	float *y = malloc(sizeof(float) * (size_t)t * n);
	snprintf(buf, len, "?");
	if (src && x && y) {
		fill(src, (size_t)n * k, 40503u);
		fill(x, (size_t)t * k, 2654435761u);
		if (gemm_weight_init(&w, e, src, n, k, gp, &err) == 0) {
			if (gemm_ctx_new(e, &c, &err) == 0 &&
			    gemm_run(c, x, &w, y, t, 0.0f, NULL,
			    GEMM_ACT_NONE, &err) == 0)
				snprintf(buf, len, "%s", gemm_ctx_impl(c));
			gemm_ctx_free(c);
			gemm_weight_release(&w);
		}
	}
	free(src);
	free(x);
	free(y);
	return buf;
}

/* The precision auto resolves to, from loading a tiny model. */
static const char *
auto_choice(void)
{
	static char name[32] = "?";
	char dir[] = "/tmp/cdx-bench-model-XXXXXX";
	tm_recipe r;
	tm_recipe_tiny(&r);
	if (mkdtemp(dir) == NULL)
		return name;
	clip_model *m = NULL;
	cdx_error err = {0};
	clip_model_params p;
	clip_model_default_params(&p);
	p.precision = CLIP_PRECISION_AUTO;
	if (tm_write_model(&r, dir) == 0 &&
	    clip_model_load(dir, &p, &m, &err) == 0)
		snprintf(name, sizeof(name), "%s",
		    clip_precision_name(clip_model_get_info(m)->precision));
	clip_model_free(m);
	tm_rmtree(dir);
	return name;
}

/* ---- one model at every precision -------------------------------------------- */

typedef struct bench_opts {
	int threads, quick;
	double min_s;
	int n_prec;
	int prec[8];                /* enum clip_precision, in order */
	const gemm_engine *eng;
	double bw;                  /* best read bandwidth so far, bytes/s */
} bench_opts;

#define N_FID_TEXTS 16
#define N_CONTROL 8

typedef struct prec_result {
	int precision;              /* as loaded (auto resolved) */
	char kernels[128];
	double t_load, rss_before, rss_after, weight_bytes;
	double ips1, ips8, ips32;
	double t_lib, t_alone;      /* batch-32 GEMM seconds */
	double text_ms[2], text_gemm_ms[2], text_wbytes;
	int have_fid;
	double img_worst, img_mean, txt_worst, txt_mean;
	double ctl_worst, ctl_mean;  /* fp32: pixels rounded to bf16 */
} prec_result;

typedef struct model_spec {
	const char *name, *torch_shape;
	tm_recipe r;
	int siglip;
	int tempered;    /* also measure fidelity on tempered_model() */
} model_spec;

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

/* ids of one text of n tokens: CLIP: SOT, n - 2 pieces, EOT (padded
 * with EOT); SigLIP: n - 1 pieces, EOS, padding.  salt varies the
 * pieces. */
static void
make_ids(int32_t *ids, int n, int ctxlen, int siglip, int32_t eos,
    int32_t pad, int nv, int salt)
{
	if (!siglip) {
		for (int j = 0; j < CLIP_CONTEXT_LEN; j++)
			ids[j] = CLIP_TOKEN_EOT;
		ids[0] = CLIP_TOKEN_SOT;
		for (int j = 1; j < n - 1; j++)
			ids[j] = (int32_t)(300 + (37 * j + 7919 * salt) % 40000);
		return;
	}
	for (int j = 0; j < ctxlen; j++)
		ids[j] = pad;
	for (int j = 0; j < n - 1; j++)
		ids[j] = 3 + (300 + 37 * j + 7919 * salt) % (nv - 3);
	ids[n - 1] = eos;
}

/* The image tower's GEMMs at batch 32: the layers, the patch embedding
 * (im2col), and CLIP's projection or SigLIP's attention-pooling head (k|v
 * of every token; q, out, fc1, fc2 of the probe).  Returns the count. */
static int
vision_shapes(const model_spec *ms, gemm_shape *vs)
{
	const tm_tower *v = &ms->r.vision;
	const int D = v->width, M = v->mlp, grid = v->image_size / v->patch_size;
	const int T = 32 * (grid * grid + (ms->siglip ? 0 : 1));
	int n = tower_shapes(vs, T, D, M, v->layers);
	vs[n++] = (gemm_shape){32 * grid * grid, D, 3 * v->patch_size *
	    v->patch_size, 1, 0};
	if (ms->siglip) {
		vs[n++] = (gemm_shape){T, 2 * D, D, 1, 0};
		vs[n++] = (gemm_shape){32, D, D, 2, 0};
		vs[n++] = (gemm_shape){32, M, D, 1, 0};
		vs[n++] = (gemm_shape){32, D, M, 1, 1};
	} else {
		vs[n++] = (gemm_shape){32, ms->r.projection_dim, D, 1, 0};
	}
	return n;
}

/* float32 to the nearest bfloat16 (ties to even), as a float. */
static float
round_bf16(float x)
{
	uint32_t u;
	memcpy(&u, &x, sizeof(u));
	u += 0x7fffu + ((u >> 16) & 1u);
	u &= 0xffff0000u;
	memcpy(&x, &u, sizeof(x));
	return x;
}

/* Everything about one precision of a written model; fills *res.
 * ref_img / ref_txt: fp32's embeddings (*have_ref 0 until fp32 has run;
 * fp32 fills them, and the control: fp32 on the pixels rounded to bf16).
 * fid_only: load and fidelity, no timing. */
static int
bench_precision(const model_spec *ms, const char *dir, int precision,
    const bench_opts *o, int fid_only, prec_result *res, float *ref_img,
    float *ref_txt, int *have_ref)
{
	const tm_recipe *r = &ms->r;
	memset(res, 0, sizeof(*res));
	clip_model_params params;
	clip_model_default_params(&params);
	params.precision = precision;
	clip_model *m = NULL;
	cdx_error err = {0};
	malloc_trim(0);
	res->rss_before = proc_status_bytes("VmRSS");
	double t0 = now();
	if (clip_model_load(dir, &params, &m, &err) != 0) {
		fprintf(stderr, "clip_model_load (%s): %s\n",
		    clip_precision_name(precision), err.msg);
		return -1;
	}
	res->t_load = now() - t0;
	res->rss_after = proc_status_bytes("VmRSS");
	const clip_model_info *in = clip_model_get_info(m);
	res->precision = in->precision;
	res->weight_bytes = (double)in->weight_bytes;
	snprintf(res->kernels, sizeof(res->kernels), "%s", in->kernels);
	if (!fid_only)
		printf("  %-10s loaded in %.2f s: %s\n",
		    clip_precision_name(in->precision), res->t_load, in->kernels);

	const int E = in->embed_dim, size = in->image_size;
	clip_ctx *ctx = NULL;
	float *px = bench_pixels(size);
	float *out = malloc(32 * (size_t)E * sizeof(float));
	float *img = malloc(32 * (size_t)E * sizeof(float));
	int rc = -1;
	gemm_set gs;
	text_gemms tg;
	int have_gs = 0, have_tg = 0;
	if (px == NULL || out == NULL || img == NULL ||
	    clip_ctx_new(m, 32, &ctx, &err) != 0) {
		fprintf(stderr, "clip_ctx_new: %s\n", err.msg);
		goto out;
	}
	const clip_tokenizer *tok = clip_model_tokenizer(m);
	int ctxlen = in->context_len, nv = clip_tokenizer_vocab_size(tok);
	int32_t eos = CLIP_TOKEN_EOT, pad = CLIP_TOKEN_EOT;
	if (ms->siglip) {
		/* EOS and pad as the tokenizer writes them for an empty text */
		int32_t empty[CLIP_CONTEXT_LEN];
		int n_empty = 0;
		if (clip_tokenize(tok, "", 0, empty, &n_empty, &err) != 0 ||
		    n_empty < 1 || ctxlen < 9 || ctxlen > CLIP_CONTEXT_LEN) {
			fprintf(stderr, "clip_tokenize: %s\n", err.msg);
			goto out;
		}
		eos = empty[n_empty - 1];
		pad = empty[ctxlen - 1];
	}
	if (fid_only)
		goto fidelity;

	/* Images at batch 32, in turns with the GEMMs of the same shapes. */
	gemm_shape vs[MAX_SHAPES];
	int nvs = vision_shapes(ms, vs);
	if (gemm_set_init(&gs, o->eng, vs, nvs, in->precision) != 0)
		goto out;
	have_gs = 1;
	enc_arg a32 = {ctx, px, NULL, 32, out};
	res->t_lib = res->t_alone = INFINITY;
	double t32 = INFINITY;
	/* warm-up */
	if (run_lib(&gs) != 0 || (gs.any_onednn && run_alone(&gs) != 0) ||
	    run_images(&a32) != 0)
		goto out;
	for (int round = 0; round < (o->quick ? 1 : 3); round++) {
		res->t_lib = fmin_nan(res->t_lib, one_time(run_lib, &gs));
		if (gs.any_onednn)
			res->t_alone = fmin_nan(res->t_alone,
			    one_time(run_alone, &gs));
		t32 = fmin_nan(t32, one_time(run_images, &a32));
	}
	/* the fidelity section's image embeddings */
	memcpy(img, out, 32 * (size_t)E * sizeof(float));
	if (!gs.any_onednn)
		res->t_alone = res->t_lib;
	res->ips32 = 32 / t32;
	gemm_set_free(&gs);
	have_gs = 0;
	res->ips1 = res->ips8 = NAN;
	if (!o->quick) {
		enc_arg a1 = {ctx, px, NULL, 1, out}, a8 = {ctx, px, NULL, 8, out};
		res->ips1 = 1 / best_time(run_images, &a1, 3, o->min_s);
		res->ips8 = 8 / best_time(run_images, &a8, 3, o->min_s);
	}

	/* Text queries. */
	if (text_gemms_init(&tg, o->eng, r->text.width, r->text.mlp,
	    r->text.layers, E, ctxlen, in->precision) != 0)
		goto out;
	have_tg = 1;
	res->text_wbytes = tg.bytes;
	int lens[2] = {8, ctxlen};
	for (int li = 0; li < 2; li++) {
		int32_t ids[CLIP_CONTEXT_LEN];
		make_ids(ids, lens[li], ctxlen, ms->siglip, eos, pad, nv, 0);
		enc_arg a = {ctx, NULL, ids, 1, out};
		res->text_ms[li] = best_time(run_text, &a, 5, o->min_s) * 1e3;
		/* CLIP computes up to the end token; SigLIP all positions */
		tg.t = ms->siglip ? ctxlen : lens[li];
		res->text_gemm_ms[li] = best_time(run_text_gemms, &tg, 5,
		    o->min_s / 2) * 1e3;
	}
	text_gemms_free(&tg);
	have_tg = 0;

	/* Fidelity: the 32 images and 16 texts of 3 to 77 tokens. */
fidelity:;
	float *txt = malloc(N_FID_TEXTS * (size_t)E * sizeof(float));
	int32_t *ids = malloc(N_FID_TEXTS * sizeof(int32_t) * CLIP_CONTEXT_LEN);
	int ok = txt && ids && (!fid_only ||
	    clip_encode_images(ctx, px, 32, img, &err) == 0);
	for (int i = 0; ok && i < N_FID_TEXTS; i++) {
		int n = 3 + i * (ctxlen - 3) / (N_FID_TEXTS - 1);
		make_ids(ids + (size_t)i * ctxlen, n, ctxlen, ms->siglip, eos,
		    pad, nv, i + 1);
	}
	ok = ok && clip_encode_text(ctx, ids, N_FID_TEXTS, txt, &err) == 0;
	if (ok && in->precision == CLIP_PRECISION_FP32) {
		memcpy(ref_img, img, 32 * (size_t)E * sizeof(float));
		memcpy(ref_txt, txt, N_FID_TEXTS * (size_t)E * sizeof(float));
		*have_ref = 1;
		/* the control: how far rounding only the input pixels to bf16
		 * moves fp32's image embeddings (the model's own sensitivity),
		 * on the first N_CONTROL images */
		for (size_t i = 0; i < N_CONTROL * (size_t)3 * size * size; i++)
			px[i] = round_bf16(px[i]);
		ok = clip_encode_images(ctx, px, N_CONTROL, img, &err) == 0;
		if (ok)
			tu_cos_rows(img, ref_img, N_CONTROL, E, &res->ctl_worst,
			    &res->ctl_mean);
	}
	if (ok && *have_ref) {
		res->have_fid = 1;
		tu_cos_rows(img, ref_img, 32, E, &res->img_worst, &res->img_mean);
		tu_cos_rows(txt, ref_txt, N_FID_TEXTS, E, &res->txt_worst,
		    &res->txt_mean);
	}
	free(txt);
	free(ids);
	if (!ok) {
		fprintf(stderr, "encoder_bench: fidelity: %s\n", err.msg);
		goto out;
	}
	rc = 0;
out:
	if (have_gs)
		gemm_set_free(&gs);
	if (have_tg)
		text_gemms_free(&tg);
	free(px);
	free(out);
	free(img);
	clip_ctx_free(ctx);
	clip_model_free(m);
	malloc_trim(0);
	return rc;
}

/* Targets, collected for the summary at the end. */
static char summary[64][160];
static int n_summary;

static void target(int met, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
target(int met, const char *fmt, ...)
{
	if (n_summary >= 64)
		return;
	char *s = summary[n_summary++];
	int k = snprintf(s, 160, "%s ", met ? "  met   " : "  MISSED");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s + k, 160 - (size_t)k, fmt, ap);
	va_end(ap);
}

static const char *
pname(const prec_result *p)
{
	return clip_precision_name(p->precision);
}

/* IEEE half to float. */
static float
f16_to_f32(uint16_t h)
{
	int e = (h >> 10) & 31, m = h & 1023;
	float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? (m ? NAN :
	    INFINITY) : ldexpf((float)(m | 1024), e - 25);
	return h & 0x8000 ? -v : v;
}

/* Writes recipe r to a new temporary folder (its name into dir, a
 * "/tmp/cdx-bench-model-XXXXXX" buffer) with every F16 q_proj and k_proj
 * weight divided by 6.  testmodel.h draws them with gain 6, which makes
 * attention nearly an argmax of its scores: over 12 layers the random
 * model is then chaotic (fp32 itself moves to cosine 0.4-0.9 when only its
 * input pixels are rounded to bf16), which measures the model, not the
 * precision.  Gain 1 is a standard initialisation's.  Returns 0 or -1. */
static int
tempered_model(const tm_recipe *r, char *dir)
{
	strcpy(dir, "/tmp/cdx-bench-model-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	char path[4096];
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	FILE *f = NULL;
	uint64_t hl = 0;
	char *hdr = NULL;
	cJSON *j = NULL;
	int rc = -1, count = 0;
	if (tm_write_model(r, dir) != 0 || (f = fopen(path, "r+b")) == NULL ||
	    fread(&hl, 8, 1, f) != 1 || hl > (1u << 24) ||
	    (hdr = malloc(hl + 1)) == NULL || fread(hdr, 1, hl, f) != hl)
		goto out;
	hdr[hl] = 0;
	if ((j = cJSON_Parse(hdr)) == NULL)
		goto out;
	const cJSON *t;
	cJSON_ArrayForEach(t, j) {
		if (strstr(t->string, "q_proj.weight") == NULL &&
		    strstr(t->string, "k_proj.weight") == NULL)
			continue;
		const cJSON *dt = cJSON_GetObjectItem(t, "dtype");
		const cJSON *off = cJSON_GetObjectItem(t, "data_offsets");
		if (!cJSON_IsString(dt) || strcmp(dt->valuestring, "F16") != 0 ||
		    cJSON_GetArraySize(off) != 2)
			goto out;
		long a = (long)cJSON_GetArrayItem(off, 0)->valuedouble;
		long b = (long)cJSON_GetArrayItem(off, 1)->valuedouble;
		size_t n = (size_t)(b - a) / 2;
		uint16_t *v = malloc(n * 2);
		int ok = v != NULL &&
		    fseek(f, (long)(8 + hl) + a, SEEK_SET) == 0 &&
		    fread(v, 2, n, f) == n;
		for (size_t i = 0; ok && i < n; i++)
			v[i] = tm_f16_rne(f16_to_f32(v[i]) / 6.0f);
		ok = ok && fseek(f, (long)(8 + hl) + a, SEEK_SET) == 0 &&
		    fwrite(v, 2, n, f) == n;
		free(v);
		if (!ok)
			goto out;
		count++;
	}
	rc = count > 0 ? 0 : -1;
out:
	if (f != NULL && fclose(f) != 0)
		rc = -1;
	free(hdr);
	cJSON_Delete(j);
	if (rc != 0) {
		fprintf(stderr, "encoder_bench: cannot write the tempered model\n");
		tm_rmtree(dir);
	}
	return rc;
}

/* One fidelity table; a bf16 row is checked against the 0.999 bound. */
static void
print_fidelity(const model_spec *ms, const char *tag, const char *label,
    const prec_result *res, int n)
{
	printf("  %s: %s\n", tag, label);
	printf("  %-30s %13s %13s %13s %13s %8s\n", "precision", "images worst",
	    "images mean", "texts worst", "texts mean", "bound");
	for (int i = 0; i < n; i++) {
		const prec_result *p = &res[i];
		const char *nm = pname(p);
		if (!p->have_fid) {
			printf("  %-30s (no fp32 reference in this run)\n", nm);
			continue;
		}
		if (p->precision == CLIP_PRECISION_FP32) {
			printf("  %-30s %13.6f %13.6f %13s %13s\n",
			    "(fp32 on bf16-rounded pixels)", p->ctl_worst,
			    p->ctl_mean, "-", "-");
			continue;
		}
		int bf = strcmp(nm, "bf16") == 0;
		printf("  %-30s %13.6f %13.6f %13.6f %13.6f %8s\n", nm,
		    p->img_worst, p->img_mean, p->txt_worst, p->txt_mean,
		    bf ? ">=0.999" : "");
		if (bf)
			target(p->img_worst >= 0.999 && p->txt_worst >= 0.999,
			    "%s bf16 (%s model): worst cosine %.6f images, %.6f "
			    "texts (bound >= 0.999)", ms->name, tag, p->img_worst,
			    p->txt_worst);
	}
}

static int
bench_model(const model_spec *ms, bench_opts *o, const cJSON *tj)
{
	const tm_recipe *r = &ms->r;
	char dir[] = "/tmp/cdx-bench-model-XXXXXX";
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	double t0 = now();
	if (tm_write_model(r, dir) != 0) {
		fprintf(stderr, "cannot write the model to %s\n", dir);
		tm_rmtree(dir);
		return 1;
	}
	double t_write = now() - t0;
	char path[4096];
	struct stat st;
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	double file_bytes = stat(path, &st) == 0 ? (double)st.st_size : NAN;
	const int size = r->vision.image_size, patch = r->vision.patch_size;
	const int grid = size / patch;
	const int tokens = grid * grid + (ms->siglip ? 0 : 1);
	const int E = ms->siglip ? r->vision.width : r->projection_dim;
	printf("\n==== %s: vision %dw/%dL/%dH/%d, patch %d at %d px = %d tokens; "
	    "text %dw/%dL/%dH/%d, %d positions; embedding %d; random weights, "
	    "F16 file %.0f MB written in %.1f s; %d threads\n", ms->name,
	    r->vision.width, r->vision.layers, r->vision.heads, r->vision.mlp,
	    patch, size, tokens, r->text.width, r->text.layers, r->text.heads,
	    r->text.mlp, r->max_positions, E, file_bytes / 1e6, t_write,
	    o->threads);

	prec_result res[8];
	float *ref_img = malloc(32 * (size_t)E * sizeof(float));
	float *ref_txt = malloc(N_FID_TEXTS * (size_t)E * sizeof(float));
	int have_ref = 0, n = 0, rc = 0;
	if (ref_img == NULL || ref_txt == NULL)
		rc = 1;
	for (int i = 0; rc == 0 && i < o->n_prec; i++) {
		if (bench_precision(ms, dir, o->prec[i], o, 0, &res[n], ref_img,
		    ref_txt, &have_ref) != 0)
			rc = 1;
		else
			n++;
	}
	tm_rmtree(dir);
	/* Fidelity again on the same model with the attention sharpness of
	 * a standard initialisation (see tempered_model()). */
	prec_result tres[8];
	int nt = 0;
	have_ref = 0;
	if (rc == 0 && ms->tempered && tempered_model(r, dir) == 0) {
		for (int i = 0; i < o->n_prec; i++)
			if (bench_precision(ms, dir, o->prec[i], o, 1, &tres[nt],
			    ref_img, ref_txt, &have_ref) == 0)
				nt++;
		tm_rmtree(dir);
	}
	free(ref_img);
	free(ref_txt);
	if (n == 0)
		return 1;

	/* Images. */
	gemm_shape vs[MAX_SHAPES];
	double gflop = gemm_flops(vs, vision_shapes(ms, vs)) / 1e9;
	double tb32 = tj ? jget(tj, "images_per_s", "32") : NAN;
	printf("\n%s images, batch 32 (%.2f GFLOP of linear layers per image; "
	    "ceiling = the library's GEMMs alone on these shapes)\n", ms->name,
	    gflop / 32);
	printf("  %-11s %8s %9s %7s %11s %10s %8s %12s %8s\n", "precision",
	    "images/s", "xPyTorch", "target", "GEMM GOP/s", "ceiling/s",
	    "share", "w/ convert/s", "share");
	printf("  %-11s %8.2f\n", "PyTorch", tb32);
	for (int i = 0; i < n; i++) {
		const prec_result *p = &res[i];
		double ceil_ips = 32 / p->t_alone, lib_ips = 32 / p->t_lib;
		const char *nm = pname(p);
		double tgt = strcmp(nm, "bf16") == 0 ? 1.8 :
		    strncmp(nm, "int8", 4) == 0 ? 3.0 : NAN;
		char ts[16] = "";
		if (!isnan(tgt))
			snprintf(ts, sizeof(ts), ">=%.1fx", tgt);
		printf("  %-11s %8.2f %8.2fx %7s %11.1f %10.2f %7.1f%% %12.2f "
		    "%7.1f%%\n", nm, p->ips32, p->ips32 / tb32, ts,
		    gflop / p->t_alone, ceil_ips, 100 * p->ips32 / ceil_ips,
		    lib_ips, 100 * p->ips32 / lib_ips);
		if (!isnan(tgt) && !isnan(tb32))
			target(p->ips32 / tb32 >= tgt, "%s %s: %.2fx PyTorch fp32 "
			    "at batch 32 (target >= %.1fx)", ms->name, nm,
			    p->ips32 / tb32, tgt);
		target(p->ips32 / ceil_ips >= 0.85, "%s %s: %.1f%% of the GEMM "
		    "ceiling at batch 32 (target >= 85%%)", ms->name, nm,
		    100 * p->ips32 / ceil_ips);
	}
	printf("  (ceiling: OpenBLAS SGEMM for fp32, oneDNN's matmul primitive "
	    "alone for bf16/int8 on inputs already converted; \"w/ convert\": "
	    "gemm_run, which also rounds or quantises the float32 activations "
	    "and dequantises int8 results.%s)\n", ms->siglip ? "" :
	    " CLIP's last block computes only the class token after "
	    "attention, so the encoder does a little less than these GEMMs");
	if (!o->quick) {
		printf("  %-11s %8s %8s   (PyTorch %.2f / %.2f)\n", "batch 1 / 8",
		    "images/s", "", tj ? jget(tj, "images_per_s", "1") : NAN,
		    tj ? jget(tj, "images_per_s", "8") : NAN);
		for (int i = 0; i < n; i++)
			printf("  %-11s %8.2f %8.2f\n", pname(&res[i]), res[i].ips1,
			    res[i].ips8);
	}

	/* Text. */
	int ctxlen = ms->siglip ? r->max_positions : CLIP_CONTEXT_LEN;
	double bw = o->bw;
	printf("\n%s text query (1 text)%s; floor = text linear weights in "
	    "that precision / %.1f GB/s read\n", ms->name, ms->siglip ?
	    "; SigLIP runs all 64 positions whatever the text" : "", bw / 1e9);
	printf("  %-16s %-11s %8s %10s %8s %10s %9s %7s %10s\n", "tokens",
	    "precision", "ours ms", "PyTorch ms", "ratio", "weights MB",
	    "floor ms", "xfloor", "GEMMs ms");
	int lens[2] = {8, ctxlen};
	for (int li = 0; li < 2; li++) {
		char key[16], label[32];
		snprintf(key, sizeof(key), "%d", lens[li]);
		double tt = tj ? jget(tj, "text_ms", key) : NAN;
		if (ms->siglip && lens[li] < ctxlen)
			snprintf(label, sizeof(label), "%d + %d pad", lens[li],
			    ctxlen - lens[li]);
		else
			snprintf(label, sizeof(label), "%d", lens[li]);
		for (int i = 0; i < n; i++) {
			const prec_result *p = &res[i];
			double floor_ms = p->text_wbytes / bw * 1e3;
			const char *nm = pname(p);
			printf("  %-16s %-11s %8.2f %10.2f %7.2fx %10.1f %9.2f %6.2fx "
			    "%10.2f\n", i == 0 ? label : "", nm, p->text_ms[li], tt,
			    p->text_ms[li] / tt, p->text_wbytes / 1e6, floor_ms,
			    p->text_ms[li] / floor_ms, p->text_gemm_ms[li]);
			double tgt = strcmp(nm, "bf16") == 0 ? 6.0 :
			    strcmp(nm, "int8") == 0 ? 3.0 : NAN;
			if (!ms->siglip && li == 0 && !isnan(tgt))
				target(p->text_ms[li] <= tgt, "%s %s: 8-token text "
				    "%.2f ms (target <= %.0f ms)", ms->name, nm,
				    p->text_ms[li], tgt);
		}
	}
	printf("  (GEMMs ms: gemm_run alone over the text tower's own linear "
	    "weights at the rows the encoder computes%s)\n", ms->siglip ?
	    ": always 64" : ": up to the end token");

	/* Memory. */
	const cJSON *trss = tj ? cJSON_GetObjectItem(tj, "rss_mb") : NULL;
	printf("\n%s resident memory after load (model.safetensors %.0f MB, "
	    "F16; PyTorch fp32 model: %.0f MB VmRSS)\n", ms->name,
	    file_bytes / 1e6, cJSON_IsNumber(trss) ? trss->valuedouble : NAN);
	printf("  %-11s %12s %12s %12s %8s\n", "precision", "weights MB",
	    "VmRSS MB", "+load MB", "load s");
	for (int i = 0; i < n; i++)
		printf("  %-11s %12.0f %12.0f %12.0f %8.2f\n", pname(&res[i]),
		    res[i].weight_bytes / 1e6, res[i].rss_after / 1e6,
		    (res[i].rss_after - res[i].rss_before) / 1e6, res[i].t_load);
	printf("  (weights MB: clip_model_info.weight_bytes; VmRSS: the "
	    "process after load, the previous model freed; it includes the "
	    "runtime's own %.0f MB before load)\n", res[0].rss_before / 1e6);

	/* Fidelity. */
	printf("\n%s fidelity against fp32, same inputs (32 images, %d texts "
	    "of 3 to %d tokens); cosine\n", ms->name, N_FID_TEXTS, ctxlen);
	printf("  (the control row: fp32 itself on the first %d images with "
	    "only their pixels rounded to bf16: how much the model amplifies "
	    "one rounding)\n", N_CONTROL);
	print_fidelity(ms, "random", "as tests/testmodel.h writes it: q/k gain 6, "
	    "near-argmax attention", res, n);
	if (nt > 0)
		print_fidelity(ms, "tempered", "q/k weights / 6 (gain 1, a standard "
		    "initialisation's)", tres, nt);
	return rc;
}

int
main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	int threads = cdx_threads_available(), quick = 0, torch = 1;
	int want[3] = {1, 1, 1};     /* b32, b16, siglip-b16 */
	const char *prec_arg = "all";
	for (int i = 1; i < argc; i++) {
		int p;
		if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (strcmp(argv[i], "--quick") == 0)
			quick = 1;
		else if (strcmp(argv[i], "--no-torch") == 0)
			torch = 0;
		else if (strcmp(argv[i], "--model-shape") == 0 && i + 1 < argc &&
		    (strcmp(argv[i + 1], "b32") == 0 ||
		    strcmp(argv[i + 1], "b16") == 0 ||
		    strcmp(argv[i + 1], "siglip-b16") == 0 ||
		    strcmp(argv[i + 1], "all") == 0)) {
			const char *s = argv[++i];
			int all = strcmp(s, "all") == 0;
			want[0] = all || strcmp(s, "b32") == 0;
			want[1] = all || strcmp(s, "b16") == 0;
			want[2] = all || strcmp(s, "siglip-b16") == 0;
		} else if (strcmp(argv[i], "--precision") == 0 && i + 1 < argc &&
		    (strcmp(argv[i + 1], "all") == 0 ||
		    clip_precision_parse(argv[i + 1], &p) == 0)) {
			prec_arg = argv[++i];
		} else {
			int help = strcmp(argv[i], "--help") == 0;
			fprintf(help ? stdout : stderr, "usage: %s [--threads N] "
			    "[--quick] [--no-torch] "
			    "[--model-shape b32|b16|siglip-b16|all] "
			    "[--precision all|auto|fp32|bf16|int8|int8-mixed]\n",
			    argv[0]);
			return help ? 0 : 2;
		}
	}
	bench_opts o;
	memset(&o, 0, sizeof(o));
	if (strcmp(prec_arg, "all") == 0) {
		/* every precision this library knows, fp32 first (the
		 * fidelity reference) */
		const char *names[] = {"fp32", "bf16", "int8", "int8-mixed"};
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (clip_precision_parse(names[i], &o.prec[o.n_prec]) == 0)
				o.n_prec++;
	} else {
		clip_precision_parse(prec_arg, &o.prec[0]);
		o.n_prec = 1;
	}
	if (threads < 1)
		threads = 1;
	threads = cdx_threads_set(threads);   /* OpenBLAS and OpenMP */
	o.threads = threads;
	o.quick = quick;
	o.min_s = quick ? 0.2 : 1.0;
	gemm_engine *eng = NULL;
	cdx_error err = {0};
	if (gemm_engine_new(&eng, &err) != 0) {
		fprintf(stderr, "encoder_bench: %s\n", err.msg);
		return 1;
	}
	o.eng = eng;

	/* The header. */
	printf("encoder_bench: %d thread%s (OpenBLAS, OpenMP); "
	    "OMP_WAIT_POLICY=%s%s%s\n", threads, threads == 1 ? "" : "s",
	    getenv("OMP_WAIT_POLICY") ? getenv("OMP_WAIT_POLICY") :
	    "(unset: libgomp spins, then sleeps)",
	    getenv("GOMP_SPINCOUNT") ? ", GOMP_SPINCOUNT=" : "",
	    getenv("GOMP_SPINCOUNT") ? getenv("GOMP_SPINCOUNT") : "");
	print_cpu();
	char b1[64], b2[64], b3[64], b4[64];
	printf("oneDNN %s, dispatch ISA %s; matmul kernels (1 row / 1600 "
	    "rows): bf16 %s / %s, int8 %s / %s; auto = %s\n",
	    gemm_onednn_version(), gemm_cpu_isa_name(),
	    probe_impl(eng, GEMM_BF16, 2048, 512, 1, b1, sizeof(b1)),
	    probe_impl(eng, GEMM_BF16, 3072, 768, 1600, b2, sizeof(b2)),
	    probe_impl(eng, GEMM_S8, 2048, 512, 1, b3, sizeof(b3)),
	    probe_impl(eng, GEMM_S8, 3072, 768, 1600, b4, sizeof(b4)),
	    auto_choice());
	o.bw = read_bandwidth((size_t)512 << 20, threads);
	printf("memory read bandwidth (%d threads, best of 5): %.1f GB/s\n",
	    threads, o.bw / 1e9);

	model_spec specs[3];
	memset(specs, 0, sizeof(specs));
	specs[0].name = "ViT-B/32";
	specs[0].torch_shape = "b32";
	tm_recipe_vit_b32(&specs[0].r);
	specs[0].tempered = 1;
	specs[1].name = "ViT-B/16";
	specs[1].torch_shape = "b16";
	tm_recipe_vit_b32(&specs[1].r);
	specs[1].r.vision.patch_size = 16;
	specs[2].name = "SigLIP-B/16";
	specs[2].torch_shape = "siglip-b16";
	specs[2].siglip = 1;
	tm_recipe_siglip_b16(&specs[2].r);

	/* PyTorch first, alone on the machine. */
	cJSON *tj[3] = {NULL, NULL, NULL};
	for (int k = 0; torch && k < 3; k++) {
		if (!want[k])
			continue;
		double t0 = now();
		tj[k] = run_torch(threads, quick, specs[k].torch_shape);
		if (tj[k] == NULL)
			printf("PyTorch (%s): skipped (tools/torch_bench.py failed "
			    "or python3-torch is not installed)\n",
			    specs[k].torch_shape);
		else
			printf("PyTorch %s fp32 (best of default and "
			    "OMP_WAIT_POLICY=PASSIVE): measured in %.0f s\n",
			    specs[k].torch_shape, now() - t0);
	}

	int rc = 0;
	for (int k = 0; rc == 0 && k < 3; k++) {
		if (!want[k])
			continue;
		double bw = read_bandwidth((size_t)512 << 20, threads);
		o.bw = bw > o.bw ? bw : o.bw;
		double t0 = now();
		rc = bench_model(&specs[k], &o, tj[k]);
		printf("(%s measured in %.0f s)\n", specs[k].name, now() - t0);
	}
	for (int k = 0; k < 3; k++)
		cJSON_Delete(tj[k]);
	gemm_engine_free(eng);
	if (n_summary > 0) {
		printf("\ntargets:\n");
		for (int i = 0; i < n_summary; i++)
			printf("%s\n", summary[i]);
	}
	return rc;
}
