/*
 * gemm.c - the linear layers' GEMMs in fp32 (OpenBLAS), bf16 and int8
 * (oneDNN matmul; Debian's libdnnl, which picks AMX, AVX512-BF16/VNNI,
 * AVX2 or SSE kernels at run time).
 *
 * Weights are packed once, at load, in the layout oneDNN's matmul chooses
 * for a representative batch (256 rows); every later primitive is created
 * for that layout, whatever its row count, so the packed weights serve
 * all of them (oneDNN picks the same kernel family for any M; tested).
 * Primitives depend on the row count, so each gemm_ctx keeps the ones it
 * made, keyed by (precision, n, k, rows, epilogue): layers of one shape
 * share them, and oneDNN's own primitive cache makes a re-creation cheap.
 *
 * A batch's rows run in tiles (tile_rows), taken in turn by the
 * threads of the calling thread's OpenMP team.  Each thread converts its
 * tile's float32 rows (bf16, or s8 with a scale per row), multiplies them
 * (a primitive executed inside a parallel region runs on the calling
 * thread alone: oneDNN has no nested parallelism) and finishes them (int8:
 * dequantisation, bias, activation; an MLP tile goes on through its
 * second layer) while they are in its cache, with its own stream,
 * scratchpad and memory objects.  Against converting, multiplying and
 * finishing the whole batch in three team-wide passes: ViT-B/16 batch 32,
 * bf16 and int8 7-12% faster.
 */
#include "encoder/gemm.h"
#include "encoder/model_internal.h"

#include <cblas.h>
#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The batch whose preferred weight layout is the one weights are packed
 * in. */
#define GEMM_PACK_ROWS 256
/* Primitives a gemm_ctx keeps (a full cache starts over). */
#define GEMM_CACHE 64
/* gemm_attention's softmax, where the team shares a chunk, runs over rows
 * on the team (like oneDNN itself) once it touches this many values: a
 * short text query's stays on the calling thread.  The linear layers
 * share the team in tiles (below). */
#define GEMM_PAR_MIN 65536
/* A linear layer on oneDNN runs in tiles of rows (the last one what is
 * left), each thread of the team taking tiles in turn and converting,
 * multiplying (oneDNN on that thread alone) and finishing them while they
 * are in its cache, with no barrier between the steps.  A tile is a
 * multiple of GEMM_TILE_STEP rows: oneDNN 2.6.3's AMX kernels run a single
 * thread's product at full speed only for whole blocks of 64 rows (62
 * rows measured at a third of 64's rate; ViT-B/32's MLP at batch 32 took
 * 15.3, 18.9, 15.1, 20.7, 14.3, 17.0 and 14.8 ms in tiles of 64, 96, 128,
 * 160, 192, 224 and 256 rows).  tile_rows takes the largest size up to
 * GEMM_TILE_MAX that shares the rows evenly among the threads: each tile
 * reads all of the weights, so larger tiles are faster.  The tiles go to
 * at most one thread for each GEMM_TILE_MIN rows, and below two such
 * threads (a text query) the whole team multiplies one tile: tiles each
 * read all of the weights, which a short query's time is bound by (77
 * tokens in 64- and 13-row tiles: 11.7 ms of GEMMs against 8.8). */
#define GEMM_TILE_STEP 64
#define GEMM_TILE_MAX 256
#define GEMM_TILE_MIN 128
/* prim_entry.prec of attention's two products (beside enum gemm_prec) */
#define GEMM_ATTN_QK 10
#define GEMM_ATTN_PV 11
/* gemm_attention takes sequences in chunks whose scores (float32 and
 * bf16) stay about this size, in cache between the three steps. */
#define ATTN_CHUNK_BYTES (4u << 20)
/* or, where each thread of the team takes chunks in turn, this size */
#define ATTN_THR_BYTES (1u << 20)

struct gemm_engine {
	dnnl_engine_t eng;
};

/* A primitive's epilogue: the previous dst added (beta), a bias, an
 * activation (GEMM_ACT_NONE for none), the result in bf16 (else float32,
 * or s32 for int8). */
typedef struct prim_epi {
	int beta, bias, act, bf16_out;
} prim_epi;

/* A primitive's argument memory objects; the call's pointers are set at
 * run_prim. */
typedef struct prim_mem {
	dnnl_memory_t src, wei, bia, dst, pad;
} prim_mem;

/* A cached primitive: a linear layer's (heads 0) for w's prec, n and k
 * at t rows; or one of attention's two products (prec GEMM_ATTN_QK or
 * GEMM_ATTN_PV) for t sequences of n tokens, heads heads of k columns.
 * mem[i] is thread i's set of memory objects (a primitive may run on
 * several threads at once, each with its own); set 0 also serves the
 * calls that run on the whole team. */
typedef struct prim_entry {
	int prec, n, k, t, heads;
	prim_epi epi;
	dnnl_primitive_t prim;
	size_t pad_bytes;
	prim_mem *mem;
	int n_mem;
} prim_entry;

/* What thread i of the team keeps for the row tiles it multiplies
 * (gemm_thr 0 also for the calls on the whole team): a stream, oneDNN's
 * scratchpad and the tile's buffers. */
typedef struct gemm_thr {
	dnnl_stream_t stream;
	void *pad;              /* oneDNN's scratchpad */
	size_t pad_cap;
	void *in;               /* the tile's rows in w's form (bf16, s8) */
	size_t in_cap;
	float *scale;           /* their s8 row scales */
	size_t scale_cap;
	int32_t *acc;           /* the tile's s32 product */
	size_t acc_cap;
	void *mid;              /* an MLP tile's hidden rows in w2's form */
	size_t mid_cap;
	float *mscale;          /* their s8 row scales */
	size_t mscale_cap;
	float *row;             /* one float row */
	size_t row_cap;
	float *score;           /* gemm_attention's scores */
	size_t score_cap;
	void *prob;             /* and its probabilities in bf16 */
	size_t prob_cap;
} gemm_thr;

struct gemm_ctx {
	const gemm_engine *e;
	prim_entry cache[GEMM_CACHE];
	int n_cache;
	gemm_thr *thr;          /* a gemm_thr per team thread, grown */
	int n_thr;
	float *xq;              /* emulated bf16: the activations, rounded */
	size_t xq_cap;
	char impl[64];
};

static int
dnnl_fail(cdx_error *err, dnnl_status_t s, const char *what)
{
	return cdx_error_set(err, s == dnnl_out_of_memory ? CDX_ENOMEM :
	    CDX_EINTERNAL, "oneDNN: %s failed (status %d)", what, (int)s);
}

#define DNNL_TRY(call, what) do { \
	dnnl_status_t s_ = (call); \
	if (s_ != dnnl_success) { \
		rc = dnnl_fail(err, s_, what); \
		goto out; \
	} \
} while (0)

/* ---- the CPU ----------------------------------------------------------- */

int
gemm_cpu_has_bf16(void)
{
	dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
	return ((unsigned)isa & (unsigned)dnnl_cpu_isa_avx512_core_bf16) ==
	    (unsigned)dnnl_cpu_isa_avx512_core_bf16;
}

const char *
gemm_cpu_isa_name(void)
{
	switch (dnnl_get_effective_cpu_isa()) {
	case dnnl_cpu_isa_avx512_core_amx:
		return "avx512_core_amx";
	case dnnl_cpu_isa_avx512_core_bf16:
		return "avx512_core_bf16";
	case dnnl_cpu_isa_avx512_core_vnni:
		return "avx512_core_vnni";
	case dnnl_cpu_isa_avx512_core:
		return "avx512_core";
	case dnnl_cpu_isa_avx2_vnni:
		return "avx2_vnni";
	case dnnl_cpu_isa_avx2:
		return "avx2";
	case dnnl_cpu_isa_avx:
		return "avx";
	case dnnl_cpu_isa_sse41:
		return "sse41";
	default:
		return "other";
	}
}

const char *
gemm_onednn_version(void)
{
	static char buf[32];
	const dnnl_version_t *v = dnnl_version();
	/* the same string every time: a benign race */
	snprintf(buf, sizeof(buf), "%d.%d.%d", v->major, v->minor, v->patch);
	return buf;
}

int
gemm_engine_new(gemm_engine **out, cdx_error *err)
{
	gemm_engine *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return cdx_error_set(err, CDX_ENOMEM, "out of memory");
	dnnl_status_t s = dnnl_engine_create(&e->eng, dnnl_cpu, 0);
	if (s != dnnl_success) {
		free(e);
		return dnnl_fail(err, s, "creating the CPU engine");
	}
	*out = e;
	return 0;
}

void
gemm_engine_free(gemm_engine *e)
{
	if (e == NULL)
		return;
	dnnl_engine_destroy(e->eng);
	free(e);
}

/* Without VNNI, oneDNN multiplies int8 with vpmaddubsw, which adds pairs
 * of u8 x s8 products in a saturating 16-bit sum: weights must keep to 7
 * bits (oneDNN's "int8 computations" guide), or the sums clip. */
static float
weight_qmax(void)
{
	unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
	unsigned v512 = (unsigned)dnnl_cpu_isa_avx512_core_vnni;
	unsigned v256 = (unsigned)dnnl_cpu_isa_avx2_vnni;
	return (isa & v512) == v512 || (isa & v256) == v256 ? 127.0f : 63.0f;
}

static dnnl_data_type_t
src_type(int prec)
{
	return prec == GEMM_S8 ? dnnl_s8 : dnnl_bf16;
}

static dnnl_data_type_t
dst_type(int prec, int bf16_out)
{
	return bf16_out ? dnnl_bf16 : prec == GEMM_S8 ? dnnl_s32 : dnnl_f32;
}

/* The matmul descriptor for t rows; wmd NULL asks for the layout oneDNN
 * prefers.  Weights are K x N: the row-major [n][k] W is "ba". */
static dnnl_status_t
matmul_desc(dnnl_matmul_desc_t *md, int prec, int n, int k, int t,
    const dnnl_memory_desc_t *wmd, int bias, int bf16_out)
{
	dnnl_memory_desc_t a, b, c, bm;
	dnnl_dims_t ad = {t, k}, bd = {k, n}, cd = {t, n}, bmd = {1, n};
	dnnl_status_t s;
	if ((s = dnnl_memory_desc_init_by_tag(&a, 2, ad, src_type(prec),
	    dnnl_ab)) != dnnl_success ||
	    (s = dnnl_memory_desc_init_by_tag(&c, 2, cd, dst_type(prec,
	    bf16_out), dnnl_ab)) != dnnl_success ||
	    (s = dnnl_memory_desc_init_by_tag(&bm, 2, bmd, dnnl_f32,
	    dnnl_ab)) != dnnl_success)
		return s;
	if (wmd == NULL) {
		if ((s = dnnl_memory_desc_init_by_tag(&b, 2, bd, src_type(prec),
		    dnnl_format_tag_any)) != dnnl_success)
			return s;
		wmd = &b;
	}
	return dnnl_matmul_desc_init(md, &a, wmd, bias ? &bm : NULL, &c);
}

/* ---- weights ----------------------------------------------------------- */

int
gemm_weight_init(gemm_weight *w, const gemm_engine *e, const float *src,
    int n, int k, int prec, cdx_error *err)
{
	int rc = 0;
	dnnl_primitive_desc_t pd = NULL, rpd = NULL;
	dnnl_primitive_t reorder = NULL;
	dnnl_memory_t from = NULL, to = NULL;
	dnnl_stream_t stream = NULL;
	void *plain = NULL;

	memset(w, 0, sizeof(*w));
	w->n = n;
	w->k = k;
	w->prec = prec;
	if (prec == GEMM_F32) {
		w->f32 = src;
		return 0;
	}
	size_t numel = (size_t)n * k, esz = prec == GEMM_S8 ? 1 : 2;
	plain = malloc(numel * esz);
	w->md = malloc(sizeof(dnnl_memory_desc_t));
	if (plain == NULL || w->md == NULL || (prec == GEMM_S8 &&
	    (w->scale = malloc(sizeof(float) * (size_t)n)) == NULL)) {
		rc = cdx_error_set(err, CDX_ENOMEM, "out of memory packing "
		    "a %dx%d weight", n, k);
		goto out;
	}
	if (prec == GEMM_S8) {
		/* per output channel: row j of W */
		float qmax = weight_qmax();
		for (int j = 0; j < n; j++)
			w->scale[j] = ops_to_s8(src + (size_t)j * k,
			    (int8_t *)plain + (size_t)j * k, k, -1.0f, qmax);
	} else {
		ops_to_bf16(src, plain, numel);
	}
	dnnl_matmul_desc_t md;
	DNNL_TRY(matmul_desc(&md, prec, n, k, GEMM_PACK_ROWS, NULL, 0, 0),
	    "matmul_desc_init");
	dnnl_status_t st = dnnl_primitive_desc_create(&pd, &md, NULL, e->eng,
	    NULL);
	if (st == dnnl_unimplemented && prec == GEMM_BF16) {
		/* no bf16 matmul on this CPU: bf16 values on OpenBLAS */
		w->owned = malloc(sizeof(float) * numel);
		if (w->owned == NULL) {
			rc = cdx_error_set(err, CDX_ENOMEM, "out of memory "
			    "packing a %dx%d weight", n, k);
			goto out;
		}
		ops_from_bf16(plain, w->owned, numel);
		w->f32 = w->owned;
		snprintf(w->impl, sizeof(w->impl), "bf16 emulated on OpenBLAS");
		w->packed_bytes = numel * sizeof(float);
		free(w->md);
		w->md = NULL;
		goto out;
	}
	DNNL_TRY(st, "matmul primitive_desc_create");
	*(dnnl_memory_desc_t *)w->md = *dnnl_primitive_desc_query_md(pd,
	    dnnl_query_weights_md, 0);
	const char *impl = "";
	dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
	snprintf(w->impl, sizeof(w->impl), "%s", impl);
	dnnl_memory_desc_t pmd;
	dnnl_dims_t bd = {k, n};
	DNNL_TRY(dnnl_memory_desc_init_by_tag(&pmd, 2, bd, src_type(prec),
	    dnnl_ba), "memory_desc_init");
	w->packed_bytes = dnnl_memory_desc_get_size(w->md);
	w->packed = malloc(w->packed_bytes);
	if (w->packed == NULL) {
		rc = cdx_error_set(err, CDX_ENOMEM, "out of memory packing "
		    "a %dx%d weight", n, k);
		goto out;
	}
	DNNL_TRY(dnnl_memory_create(&from, &pmd, e->eng, plain),
	    "memory_create");
	DNNL_TRY(dnnl_memory_create(&to, w->md, e->eng, w->packed),
	    "memory_create");
	DNNL_TRY(dnnl_reorder_primitive_desc_create(&rpd, &pmd, e->eng, w->md,
	    e->eng, NULL), "reorder primitive_desc_create");
	DNNL_TRY(dnnl_primitive_create(&reorder, rpd), "reorder create");
	DNNL_TRY(dnnl_stream_create(&stream, e->eng,
	    dnnl_stream_default_flags), "stream_create");
	dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
	DNNL_TRY(dnnl_primitive_execute(reorder, stream, 2, args),
	    "reorder execute");
	DNNL_TRY(dnnl_stream_wait(stream), "stream_wait");
out:
	dnnl_stream_destroy(stream);
	dnnl_primitive_destroy(reorder);
	dnnl_primitive_desc_destroy(rpd);
	dnnl_primitive_desc_destroy(pd);
	dnnl_memory_destroy(from);
	dnnl_memory_destroy(to);
	free(plain);
	if (rc != 0)
		gemm_weight_release(w);
	return rc;
}

int
gemm_weight_on_openmp(const gemm_weight *w)
{
	return w->packed != NULL;
}

void
gemm_weight_release(gemm_weight *w)
{
	if (w == NULL)
		return;
	free(w->packed);
	free(w->scale);
	free(w->md);
	free(w->owned);
	memset(w, 0, sizeof(*w));
}

/* ---- contexts ---------------------------------------------------------- */

/* At least n gemm_thr, each with its stream. */
static int
thr_ensure(gemm_ctx *c, int n, cdx_error *err)
{
	if (n <= c->n_thr)
		return 0;
	gemm_thr *t = realloc(c->thr, (size_t)n * sizeof(*t));
	if (t == NULL)
		return cdx_error_set(err, CDX_ENOMEM, "out of memory");
	c->thr = t;
	for (; c->n_thr < n; c->n_thr++) {
		gemm_thr *h = &t[c->n_thr];
		memset(h, 0, sizeof(*h));
		dnnl_status_t s = dnnl_stream_create(&h->stream, c->e->eng,
		    dnnl_stream_default_flags);
		if (s != dnnl_success)
			return dnnl_fail(err, s, "stream_create");
	}
	return 0;
}

int
gemm_ctx_new(const gemm_engine *e, gemm_ctx **out, cdx_error *err)
{
	gemm_ctx *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return cdx_error_set(err, CDX_ENOMEM, "out of memory");
	c->e = e;
	int rc = e != NULL ? thr_ensure(c, 1, err) : 0;
	if (rc != 0) {
		gemm_ctx_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

static void
mem_clear(prim_mem *m)
{
	dnnl_memory_destroy(m->src);
	dnnl_memory_destroy(m->wei);
	dnnl_memory_destroy(m->bia);
	dnnl_memory_destroy(m->dst);
	dnnl_memory_destroy(m->pad);
	memset(m, 0, sizeof(*m));
}

static void
entry_clear(prim_entry *p)
{
	dnnl_primitive_destroy(p->prim);
	for (int i = 0; i < p->n_mem; i++)
		mem_clear(&p->mem[i]);
	free(p->mem);
	memset(p, 0, sizeof(*p));
}

void
gemm_ctx_free(gemm_ctx *c)
{
	if (c == NULL)
		return;
	for (int i = 0; i < c->n_cache; i++)
		entry_clear(&c->cache[i]);
	for (int i = 0; i < c->n_thr; i++) {
		gemm_thr *h = &c->thr[i];
		dnnl_stream_destroy(h->stream);
		free(h->pad);
		free(h->in);
		free(h->scale);
		free(h->acc);
		free(h->mid);
		free(h->mscale);
		free(h->row);
		free(h->score);
		free(h->prob);
	}
	free(c->thr);
	free(c->xq);
	free(c);
}

const char *
gemm_ctx_impl(const gemm_ctx *c)
{
	return c != NULL ? c->impl : "";
}

void *
gemm_alloc(size_t bytes)
{
	return bytes > SIZE_MAX - 63 ? NULL :
	    aligned_alloc(64, (bytes + 63) / 64 * 64);
}

/* Grows *buf to at least need bytes (contents not kept). */
static int
grow(void **buf, size_t *cap, size_t need, cdx_error *err)
{
	if (need <= *cap)
		return 0;
	void *p = gemm_alloc(need);
	if (p == NULL)
		return cdx_error_set(err, CDX_ENOMEM, "out of memory for a "
		    "%zu-byte GEMM buffer", need);
	free(*buf);
	*buf = p;
	*cap = need;
	return 0;
}

/* oneDNN's eltwise algorithm (and its alpha) for a CLIP_ACT_*. */
static dnnl_alg_kind_t
act_alg(int act, float *alpha)
{
	*alpha = 0.0f;
	switch (act) {
	case CLIP_ACT_QUICK_GELU:
		*alpha = 1.702f;        /* x sigmoid(alpha x) */
		return dnnl_eltwise_swish;
	case CLIP_ACT_GELU_TANH:
		return dnnl_eltwise_gelu_tanh;
	default:
		return dnnl_eltwise_gelu_erf;
	}
}

/* Room for n more entries: a cache without starts over.  Called before
 * looking up the primitives one call uses together, so that no lookup
 * frees an entry another returned. */
static void
cache_room(gemm_ctx *c, int n)
{
	if (c->n_cache + n > GEMM_CACHE) {
		for (int i = 0; i < c->n_cache; i++)
			entry_clear(&c->cache[i]);
		c->n_cache = 0;
	}
}

/* A free cache entry. */
static prim_entry *
entry_new(gemm_ctx *c)
{
	cache_room(c, 1);
	return &c->cache[c->n_cache];
}

/* Makes a set of p's memory objects, from its primitive's descriptor;
 * on failure none is left. */
static int
mem_init(gemm_ctx *c, prim_entry *p, prim_mem *m, cdx_error *err)
{
	int rc = 0;
	const_dnnl_primitive_desc_t pd;
	dnnl_engine_t eng = c->e->eng;
	memset(m, 0, sizeof(*m));
	DNNL_TRY(dnnl_primitive_get_primitive_desc(p->prim, &pd),
	    "get_primitive_desc");
	const dnnl_memory_desc_t *bia = dnnl_primitive_desc_query_md(pd,
	    dnnl_query_weights_md, 1);
	DNNL_TRY(dnnl_memory_create(&m->src, dnnl_primitive_desc_query_md(pd,
	    dnnl_query_src_md, 0), eng, DNNL_MEMORY_NONE), "memory_create");
	DNNL_TRY(dnnl_memory_create(&m->wei, dnnl_primitive_desc_query_md(pd,
	    dnnl_query_weights_md, 0), eng, DNNL_MEMORY_NONE),
	    "memory_create");
	if (bia != NULL && dnnl_memory_desc_get_size(bia) > 0)
		DNNL_TRY(dnnl_memory_create(&m->bia, bia, eng,
		    DNNL_MEMORY_NONE), "memory_create");
	DNNL_TRY(dnnl_memory_create(&m->dst, dnnl_primitive_desc_query_md(pd,
	    dnnl_query_dst_md, 0), eng, DNNL_MEMORY_NONE), "memory_create");
	if (p->pad_bytes > 0)
		DNNL_TRY(dnnl_memory_create(&m->pad,
		    dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0),
		    eng, DNNL_MEMORY_NONE), "memory_create");
out:
	if (rc != 0)
		mem_clear(m);
	return rc;
}

/* At least n sets of memory objects for p (threads 0 .. n - 1). */
static int
mem_ensure(gemm_ctx *c, prim_entry *p, int n, cdx_error *err)
{
	if (n <= p->n_mem)
		return 0;
	prim_mem *m = realloc(p->mem, (size_t)n * sizeof(*m));
	if (m == NULL)
		return cdx_error_set(err, CDX_ENOMEM, "out of memory");
	p->mem = m;
	for (; p->n_mem < n; p->n_mem++) {
		int rc = mem_init(c, p, &m[p->n_mem], err);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* Makes p's primitive for md with the post-ops ops (or none) and a
 * scratchpad of the caller's, and thread 0's memory objects; the entry is
 * then counted in the cache.  c->impl names the implementation oneDNN
 * chose. */
static int
entry_init(gemm_ctx *c, prim_entry *p, const dnnl_matmul_desc_t *md,
    const_dnnl_post_ops_t ops, cdx_error *err)
{
	int rc = 0;
	dnnl_primitive_desc_t pd = NULL;
	dnnl_primitive_attr_t attr = NULL;

	DNNL_TRY(dnnl_primitive_attr_create(&attr), "primitive_attr_create");
	DNNL_TRY(dnnl_primitive_attr_set_scratchpad_mode(attr,
	    dnnl_scratchpad_mode_user), "set_scratchpad_mode");
	if (ops != NULL)
		DNNL_TRY(dnnl_primitive_attr_set_post_ops(attr, ops),
		    "set_post_ops");
	DNNL_TRY(dnnl_primitive_desc_create(&pd, md, attr, c->e->eng, NULL),
	    "matmul primitive_desc_create");
	const char *impl = "";
	dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
	snprintf(c->impl, sizeof(c->impl), "%s", impl);
	const dnnl_memory_desc_t *pad = dnnl_primitive_desc_query_md(pd,
	    dnnl_query_scratchpad_md, 0);
	p->pad_bytes = pad != NULL ? dnnl_memory_desc_get_size(pad) : 0;
	DNNL_TRY(dnnl_primitive_create(&p->prim, pd), "matmul create");
	if ((rc = mem_ensure(c, p, 1, err)) != 0)
		goto out;
	c->n_cache++;
out:
	if (rc != 0)
		entry_clear(p);
	dnnl_primitive_desc_destroy(pd);
	dnnl_primitive_attr_destroy(attr);
	return rc;
}

/* The primitive for (w's precision and shape, t rows, epilogue), made on
 * first use.  The epilogue is the matmul's bias, an eltwise post-op and a
 * sum post-op, in that order, and its destination type. */
static int
get_prim(gemm_ctx *c, const gemm_weight *w, int t, prim_epi epi,
    prim_entry **out, cdx_error *err)
{
	int rc = 0;
	for (int i = 0; i < c->n_cache; i++) {
		prim_entry *p = &c->cache[i];
		if (p->prec == w->prec && p->n == w->n && p->k == w->k &&
		    p->t == t && p->heads == 0 && p->epi.beta == epi.beta &&
		    p->epi.bias == epi.bias && p->epi.act == epi.act &&
		    p->epi.bf16_out == epi.bf16_out) {
			*out = p;
			return 0;
		}
	}
	prim_entry *p = entry_new(c);
	dnnl_post_ops_t ops = NULL;
	dnnl_matmul_desc_t md;

	DNNL_TRY(dnnl_post_ops_create(&ops), "post_ops_create");
	if (epi.act != GEMM_ACT_NONE) {
		float alpha;
		dnnl_alg_kind_t alg = act_alg(epi.act, &alpha);
		DNNL_TRY(dnnl_post_ops_append_eltwise(ops, 1.0f, alg, alpha,
		    0.0f), "append_eltwise");
	}
	if (epi.beta)   /* the residual: y += x W^T */
		DNNL_TRY(dnnl_post_ops_append_sum(ops, 1.0f), "append_sum");
	DNNL_TRY(matmul_desc(&md, w->prec, w->n, w->k, t, w->md, epi.bias,
	    epi.bf16_out), "matmul_desc_init");
	if ((rc = entry_init(c, p, &md, ops, err)) != 0)
		goto out;
	p->prec = w->prec;
	p->n = w->n;
	p->k = w->k;
	p->t = t;
	p->epi = epi;
	*out = p;
out:
	dnnl_post_ops_destroy(ops);
	return rc;
}

/* Runs p on thread id's memory objects, stream and scratchpad (id 0 for
 * a call on the whole team); bias only where p has one. */
static int
run_prim(gemm_ctx *c, prim_entry *p, int id, void *src, const void *wei,
    const float *bias, void *dst, cdx_error *err)
{
	int rc = 0;
	dnnl_exec_arg_t args[5];
	int n = 0;
	prim_mem *m = &p->mem[id];
	gemm_thr *h = &c->thr[id];
	if ((rc = grow(&h->pad, &h->pad_cap, p->pad_bytes + 64, err)) != 0)
		return rc;
	DNNL_TRY(dnnl_memory_set_data_handle(m->src, src), "set_data_handle");
	DNNL_TRY(dnnl_memory_set_data_handle(m->wei, (void *)wei),
	    "set_data_handle");
	DNNL_TRY(dnnl_memory_set_data_handle(m->dst, dst), "set_data_handle");
	args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, m->src};
	args[n++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, m->wei};
	args[n++] = (dnnl_exec_arg_t){DNNL_ARG_DST, m->dst};
	if (m->bia != NULL) {
		DNNL_TRY(dnnl_memory_set_data_handle(m->bia, (void *)bias),
		    "set_data_handle");
		args[n++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, m->bia};
	}
	if (m->pad != NULL) {
		DNNL_TRY(dnnl_memory_set_data_handle(m->pad, h->pad),
		    "set_data_handle");
		args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, m->pad};
	}
	DNNL_TRY(dnnl_primitive_execute(p->prim, h->stream, n, args),
	    "matmul execute");
	DNNL_TRY(dnnl_stream_wait(h->stream), "stream_wait");
out:
	return rc;
}

/* Row i of an int8 product: y = (beta ? y : 0) + act(a s ws + bias);
 * returns max |y|. */
static float
finish_row(const int32_t *a, float s, const gemm_weight *w, const float *bias,
    int act, float *y, int beta)
{
	return ops_dequant(a, s, w->scale, bias, act, y, w->n, beta);
}

/* ---- row tiles ---------------------------------------------------------- */

/* One linear layer (w2 NULL) or an MLP block over t rows, in tiles of q
 * rows, the last one t - (ntile - 1) q; p[0] / p[1] (p2[] for w2) are
 * the primitives for q rows and for the last tile's.  rc and err: the
 * first failure of any thread. */
typedef struct tile_job {
	const float *x;         /* the input rows, or NULL: */
	const uint16_t *xb;     /* the input rows in bf16, or NULL: */
	gemm_row_fn fn;         /* fn(arg, i, row) makes row i */
	void *arg;
	const gemm_weight *w, *w2;
	const float *bias, *b2;
	int act, beta;
	float *y;
	uint16_t *yb;           /* instead of y: bf16 planes [np][t][n / np] */
	int np;
	int t, ntile, q;
	prim_entry *p[2], *p2[2];
	int rc;
	cdx_error err;
} tile_job;

/* Rows r0 .. r0 + m of j's input (k values each) in w's form, into h->in
 * (s8: a scale per row in h->scale) or, bf16 rows for a bf16 weight, where
 * they are; *src is set to them. */
static int
tile_in(gemm_thr *h, const tile_job *j, int r0, int m, void **src,
    cdx_error *err)
{
	const gemm_weight *w = j->w;
	int rc, k = w->k, s8 = w->prec == GEMM_S8;
	if (j->xb != NULL && !s8) {
		*src = (void *)(j->xb + (size_t)r0 * k);
		return 0;
	}
	*src = NULL;
	if ((rc = grow(&h->in, &h->in_cap, (size_t)m * k * (s8 ? 1 : 2),
	    err)) != 0 ||
	    (s8 && (rc = grow((void **)&h->scale, &h->scale_cap, (size_t)m *
	    sizeof(float), err)) != 0) ||
	    (j->x == NULL && (rc = grow((void **)&h->row, &h->row_cap,
	    (size_t)k * sizeof(float), err)) != 0))
		return rc;
	*src = h->in;
	if (j->x != NULL && !s8) {
		ops_to_bf16(j->x + (size_t)r0 * k, h->in, (size_t)m * k);
		return 0;
	}
	for (int i = 0; i < m; i++) {
		const float *xr = h->row;
		if (j->fn != NULL)
			j->fn(j->arg, r0 + i, h->row);
		else if (j->xb != NULL)
			ops_from_bf16(j->xb + (size_t)(r0 + i) * k, h->row,
			    (size_t)k);
		else
			xr = j->x + (size_t)(r0 + i) * k;
		if (s8)
			h->scale[i] = ops_to_s8(xr, (int8_t *)h->in + (size_t)i * k,
			    k, -1.0f, 127.0f);
		else
			ops_to_bf16(xr, (uint16_t *)h->in + (size_t)i * k,
			    (size_t)k);
	}
	return 0;
}

/* Rows r0 .. r0 + m of a product in bf16 (n values each) into j's planes:
 * the p-th n / np values of row r go to row r of plane p. */
static void
to_planes(const tile_job *j, const uint16_t *rows, int r0, int m, int n)
{
	size_t pw = (size_t)(n / j->np);
	for (int i = 0; i < m; i++)
		for (int p = 0; p < j->np; p++)
			memcpy(j->yb + ((size_t)p * j->t + r0 + i) * pw,
			    rows + (size_t)i * n + p * pw, pw * 2);
}

/* Tile [r0, r0 + m) of job j on thread id (p / p2: its primitives). */
static int
tile_run(gemm_ctx *c, tile_job *j, int id, int r0, int m, prim_entry *p,
    prim_entry *p2, cdx_error *err)
{
	gemm_thr *h = &c->thr[id];
	const gemm_weight *w = j->w, *w2 = j->w2;
	int rc, n = w->n, s8 = w->prec == GEMM_S8;
	int nout = w2 != NULL ? w2->n : n;
	float *y = j->y != NULL ? j->y + (size_t)r0 * nout : NULL;
	void *in;
	if ((rc = tile_in(h, j, r0, m, &in, err)) != 0 ||
	    ((j->yb != NULL || w2 != NULL) && (rc = grow(&h->mid,
	    &h->mid_cap, (size_t)m * n * 2, err)) != 0))
		return rc;
	if (!s8 && j->yb != NULL) {     /* in bf16, then into the planes */
		if ((rc = run_prim(c, p, id, in, w->packed, j->bias, h->mid,
		    err)) != 0)
			return rc;
		to_planes(j, h->mid, r0, m, n);
		return 0;
	}
	if (!s8 && w2 == NULL)  /* the epilogue is the primitive's */
		return run_prim(c, p, id, in, w->packed, j->bias, y, err);
	if (!s8) {
		/* fc1 writes its bf16 result (bias, activation) for fc2 */
		if ((rc = run_prim(c, p, id, in, w->packed, j->bias, h->mid,
		    err)) != 0)
			return rc;
		return run_prim(c, p2, id, h->mid, w2->packed, j->b2, y, err);
	}
	size_t accn = (size_t)(n > nout ? n : nout);
	if ((rc = grow((void **)&h->acc, &h->acc_cap, (size_t)m * accn *
	    sizeof(int32_t), err)) != 0 ||
	    (rc = grow((void **)&h->row, &h->row_cap, accn * sizeof(float),
	    err)) != 0 ||
	    (rc = run_prim(c, p, id, in, w->packed, NULL, h->acc,
	    err)) != 0)
		return rc;
	if (j->yb != NULL) {
		uint16_t *mid = h->mid;
		for (int i = 0; i < m; i++) {
			finish_row(h->acc + (size_t)i * n, h->scale[i], w,
			    j->bias, j->act, h->row, 0);
			ops_to_bf16(h->row, mid + (size_t)i * n, (size_t)n);
		}
		to_planes(j, mid, r0, m, n);
		return 0;
	}
	if (w2 == NULL) {
		for (int i = 0; i < m; i++)
			finish_row(h->acc + (size_t)i * n, h->scale[i], w,
			    j->bias, j->act, y + (size_t)i * n, j->beta);
		return 0;
	}
	/* each row of fc1's product dequantised with its bias and
	 * activation, then quantised for fc2 while it is in cache */
	if ((rc = grow((void **)&h->mscale, &h->mscale_cap, (size_t)m *
	    sizeof(float), err)) != 0)
		return rc;
	int8_t *mid = h->mid;
	for (int i = 0; i < m; i++) {
		float amax = finish_row(h->acc + (size_t)i * n, h->scale[i], w,
		    j->bias, j->act, h->row, 0);
		h->mscale[i] = ops_to_s8(h->row, mid + (size_t)i * n, n, amax,
		    127.0f);
	}
	if ((rc = run_prim(c, p2, id, h->mid, w2->packed, NULL, h->acc,
	    err)) != 0)
		return rc;
	for (int i = 0; i < m; i++)
		finish_row(h->acc + (size_t)i * nout, h->mscale[i], w2, j->b2,
		    GEMM_ACT_NONE, y + (size_t)i * nout, 1);
	return 0;
}

/* Keeps the first failure (rc, err) of the threads of a team in *first
 * and *kept; called by any of them. */
static void
keep_first(int *first, cdx_error *kept, int rc, const cdx_error *err)
{
	if (rc == 0)
		return;
	#pragma omp critical(gemm_team_err)
	if (*first == 0) {
		*first = rc;
		*kept = *err;
	}
}

/* Tile i of job j on thread id; a failure is kept in j. */
static void
tile_one(gemm_ctx *c, tile_job *j, int id, int i)
{
	cdx_error err = {0};
	int r0 = i * j->q, last = i == j->ntile - 1;
	int m = last ? j->t - r0 : j->q;
	int rc = tile_run(c, j, id, r0, m, j->p[last], j->p2[last], &err);
	keep_first(&j->rc, &j->err, rc, &err);
}

/* The primitives of one tile size (q rows) for job j: w's, and for an MLP
 * w2's, each with nthr sets of memory objects. */
static int
tile_prims(gemm_ctx *c, tile_job *j, int q, int nthr, prim_entry **p,
    prim_entry **p2, cdx_error *err)
{
	int rc, s8 = j->w->prec == GEMM_S8;
	prim_epi e1, e2 = {1, j->b2 != NULL, GEMM_ACT_NONE, 0};
	if (s8)
		e1 = (prim_epi){0, 0, GEMM_ACT_NONE, 0};
	else if (j->w2 != NULL)
		e1 = (prim_epi){0, 1, j->act, 1};
	else
		e1 = (prim_epi){j->beta, j->bias != NULL, j->act, j->yb != NULL};
	*p2 = NULL;
	if ((rc = get_prim(c, j->w, q, e1, p, err)) != 0)
		return rc;
	if (j->w2 != NULL && (rc = get_prim(c, j->w2, q, s8 ? e1 : e2, p2,
	    err)) != 0)
		return rc;
	if ((rc = mem_ensure(c, *p, nthr, err)) != 0)
		return rc;
	return *p2 != NULL ? mem_ensure(c, *p2, nthr, err) : 0;
}

/* The rows of a tile for t rows on nthr threads taking tiles in turn:
 * the largest multiple of GEMM_TILE_STEP up to GEMM_TILE_MAX whose tiles
 * load no thread more than 2% above an even share (the last, short tile
 * going to a thread with fewer whole ones where there is one), else the
 * most even of them. */
static int
tile_rows(int t, int nthr)
{
	int best = GEMM_TILE_STEP;
	double best_even = 0.0;
	for (int q = GEMM_TILE_MAX; q >= GEMM_TILE_STEP; q -= GEMM_TILE_STEP) {
		int whole = t / q, rest = t % q;
		int most = (whole + nthr - 1) / nthr, least = whole / nthr;
		int span = most * q;            /* rows, the busiest thread */
		if (rest > 0 && least * q + rest > span)
			span = least * q + rest;
		double even = (double)t / ((double)span * nthr);
		if (even >= 0.98)
			return q;
		if (even > best_even) {
			best_even = even;
			best = q;
		}
	}
	return best;
}

/* Runs job j: its tiles shared among the calling thread's team, taken in
 * turn, or with too few rows one tile on the calling thread (oneDNN then
 * spreads it over the team itself). */
static int
job_run(gemm_ctx *c, tile_job *j, cdx_error *err)
{
	int rc, t = j->t, nthr = omp_get_max_threads();
	/* a thread for each GEMM_TILE_MIN rows at most: on many cores a
	 * batch still runs in tiles, on fewer threads */
	if (nthr > t / GEMM_TILE_MIN)
		nthr = t / GEMM_TILE_MIN;
#ifndef _OPENMP
	nthr = 1;       /* the pragmas below are ignored: no team to share */
#endif
	if (nthr < 2)
		nthr = 1;
	j->q = nthr == 1 ? t : tile_rows(t, nthr);
	j->ntile = (t + j->q - 1) / j->q;
	j->rc = 0;
	int tail = t - (j->ntile - 1) * j->q;
	cache_room(c, 4);
	if ((rc = thr_ensure(c, nthr, err)) != 0 ||
	    (rc = tile_prims(c, j, j->q, nthr, &j->p[0], &j->p2[0],
	    err)) != 0)
		return rc;
	j->p[1] = j->p[0];
	j->p2[1] = j->p2[0];
	if (tail != j->q && (rc = tile_prims(c, j, tail, nthr, &j->p[1],
	    &j->p2[1], err)) != 0)
		return rc;
	if (nthr == 1) {
		tile_one(c, j, 0, 0);
	} else {
		#pragma omp parallel for schedule(dynamic) num_threads(nthr)
		for (int i = 0; i < j->ntile; i++)
			tile_one(c, j, omp_get_thread_num(), i);
	}
	if (j->rc != 0 && err != NULL)
		*err = j->err;
	return j->rc;
}

/* The input rows of a GEMM on OpenBLAS: x, or fn's rows made into
 * c->xq (on the calling thread, as the rest of the fp32 path runs), then
 * for an emulated bf16 weight rounded to bf16 like it. */
static int
f32_rows(gemm_ctx *c, const float *x, gemm_row_fn fn, void *arg,
    const gemm_weight *w, int t, const float **out, cdx_error *err)
{
	int rc, k = w->k;
	size_t tk = (size_t)t * k;
	*out = x;
	if (fn == NULL && w->prec == GEMM_F32)
		return 0;
	if ((rc = grow((void **)&c->xq, &c->xq_cap, tk * sizeof(float),
	    err)) != 0)
		return rc;
	if (fn != NULL)
		for (int i = 0; i < t; i++)
			fn(arg, i, c->xq + (size_t)i * k);
	else
		memcpy(c->xq, x, tk * sizeof(float));
	if (w->prec == GEMM_BF16) {
		ops_round_bf16(c->xq, tk);
		snprintf(c->impl, sizeof(c->impl), "bf16 emulated on OpenBLAS");
	}
	*out = c->xq;
	return 0;
}

static int
run_any(gemm_ctx *c, const float *x, gemm_row_fn fn, void *arg,
    const gemm_weight *w, float *y, int t, float beta, const float *bias,
    int act, cdx_error *err)
{
	int rc, n = w->n, k = w->k;

	if (act != GEMM_ACT_NONE && (bias == NULL || beta != 0.0f))
		return cdx_error_set(err, CDX_EINVAL, "gemm_run: an activation "
		    "needs a bias and beta 0");
	if (t <= 0)
		return 0;
	if (w->prec == GEMM_F32 || w->md == NULL) {
		const float *a;
		if ((rc = f32_rows(c, x, fn, arg, w, t, &a, err)) != 0)
			return rc;
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t, n, k,
		    1.0f, a, k, w->f32, k, beta, y, n);
		if (act != GEMM_ACT_NONE)
			ops_bias_act(y, bias, t, n, act);
		else if (bias != NULL)
			ops_bias(y, bias, t, n);
		return 0;
	}
	tile_job j = {.x = x, .fn = fn, .arg = arg, .w = w, .bias = bias,
	    .act = act, .beta = beta != 0.0f, .y = y, .t = t};
	return job_run(c, &j, err);
}

int
gemm_run(gemm_ctx *c, const float *x, const gemm_weight *w, float *y, int t,
    float beta, const float *bias, int act, cdx_error *err)
{
	return run_any(c, x, NULL, NULL, w, y, t, beta, bias, act, err);
}

int
gemm_run_rows(gemm_ctx *c, gemm_row_fn fn, void *arg, const gemm_weight *w,
    float *y, int t, float beta, const float *bias, int act, cdx_error *err)
{
	return run_any(c, NULL, fn, arg, w, y, t, beta, bias, act, err);
}

int
gemm_run_planes(gemm_ctx *c, gemm_row_fn fn, void *arg, const gemm_weight *w,
    uint16_t *y, int np, int t, const float *bias, cdx_error *err)
{
	if (w->md == NULL || np < 1 || w->n % np != 0)
		return cdx_error_set(err, CDX_EINVAL, "gemm_run_planes: needs "
		    "a weight on oneDNN and n a multiple of np");
	if (t <= 0)
		return 0;
	tile_job j = {.fn = fn, .arg = arg, .w = w, .bias = bias,
	    .act = GEMM_ACT_NONE, .yb = y, .np = np, .t = t};
	return job_run(c, &j, err);
}

int
gemm_run_bf16(gemm_ctx *c, const uint16_t *x, const gemm_weight *w,
    float *y, int t, float beta, const float *bias, cdx_error *err)
{
	if (w->md == NULL)
		return cdx_error_set(err, CDX_EINVAL, "gemm_run_bf16: needs a "
		    "weight on oneDNN");
	if (t <= 0)
		return 0;
	tile_job j = {.xb = x, .w = w, .bias = bias, .act = GEMM_ACT_NONE,
	    .beta = beta != 0.0f, .y = y, .t = t};
	return job_run(c, &j, err);
}

static int
mlp_any(gemm_ctx *c, const float *x, gemm_row_fn fn, void *arg,
    const gemm_weight *w1, const float *b1, int act, const gemm_weight *w2,
    const float *b2, float *y, float *h, int t, cdx_error *err)
{
	int rc;
	if (b1 == NULL || act == GEMM_ACT_NONE || w2->k != w1->n)
		return cdx_error_set(err, CDX_EINVAL, "gemm_mlp: invalid "
		    "arguments");
	if (w1->md == NULL || w2->md == NULL || w1->prec != w2->prec) {
		/* not both on oneDNN at one precision: through float32 */
		if ((rc = run_any(c, x, fn, arg, w1, h, t, 0.0f, b1, act,
		    err)) != 0)
			return rc;
		return gemm_run(c, h, w2, y, t, 1.0f, b2, GEMM_ACT_NONE, err);
	}
	if (t <= 0)
		return 0;
	tile_job j = {.x = x, .fn = fn, .arg = arg, .w = w1, .w2 = w2,
	    .bias = b1, .b2 = b2, .act = act, .beta = 1, .y = y, .t = t};
	return job_run(c, &j, err);
}

int
gemm_mlp(gemm_ctx *c, const float *x, const gemm_weight *w1,
    const float *b1, int act, const gemm_weight *w2, const float *b2,
    float *y, float *h, int t, cdx_error *err)
{
	return mlp_any(c, x, NULL, NULL, w1, b1, act, w2, b2, y, h, t, err);
}

int
gemm_mlp_rows(gemm_ctx *c, gemm_row_fn fn, void *arg,
    const gemm_weight *w1, const float *b1, int act, const gemm_weight *w2,
    const float *b2, float *y, float *h, int t, cdx_error *err)
{
	return mlp_any(c, NULL, fn, arg, w1, b1, act, w2, b2, y, h, t, err);
}

/* ---- attention --------------------------------------------------------- */

/* Attention's product which (GEMM_ATTN_QK or GEMM_ATTN_PV) for nc
 * sequences of s tokens, heads heads of hd columns, made on first use;
 * Q, K, V and the output are bf16 rows [nc s][heads hd] (planes of
 * gemm_run_planes), each head a strided view of them, so no pass gathers
 * or scatters the heads:
 *   QK: scores [nc][heads][s][s] f32 = Q times K^T;
 *   PV: out = P [nc][heads][s][s] bf16 times V. */
static int
get_attn_prim(gemm_ctx *c, int which, int nc, int s, int heads, int hd,
    prim_entry **out, cdx_error *err)
{
	int rc = 0;
	for (int i = 0; i < c->n_cache; i++) {
		prim_entry *p = &c->cache[i];
		if (p->prec == which && p->t == nc && p->n == s &&
		    p->heads == heads && p->k == hd) {
			*out = p;
			return 0;
		}
	}
	prim_entry *p = entry_new(c);
	dnnl_memory_desc_t a, b, d;
	dnnl_matmul_desc_t md;
	dnnl_dims_t qd = {nc, heads, s, hd}, kd = {nc, heads, hd, s};
	dnnl_dims_t sd = {nc, heads, s, s};
	dnnl_dim_t w = (dnnl_dim_t)heads * hd;
	dnnl_dims_t rs = {s * w, hd, w, 1}, ks = {s * w, hd, 1, w};
	if (which == GEMM_ATTN_QK) {
		DNNL_TRY(dnnl_memory_desc_init_by_strides(&a, 4, qd, dnnl_bf16,
		    rs), "memory_desc_init");
		DNNL_TRY(dnnl_memory_desc_init_by_strides(&b, 4, kd, dnnl_bf16,
		    ks), "memory_desc_init");
		DNNL_TRY(dnnl_memory_desc_init_by_tag(&d, 4, sd, dnnl_f32,
		    dnnl_abcd), "memory_desc_init");
	} else {
		DNNL_TRY(dnnl_memory_desc_init_by_tag(&a, 4, sd, dnnl_bf16,
		    dnnl_abcd), "memory_desc_init");
		DNNL_TRY(dnnl_memory_desc_init_by_strides(&b, 4, qd, dnnl_bf16,
		    rs), "memory_desc_init");
		DNNL_TRY(dnnl_memory_desc_init_by_strides(&d, 4, qd, dnnl_bf16,
		    rs), "memory_desc_init");
	}
	DNNL_TRY(dnnl_matmul_desc_init(&md, &a, &b, NULL, &d),
	    "matmul_desc_init");
	if ((rc = entry_init(c, p, &md, NULL, err)) != 0)
		goto out;
	p->prec = which;
	p->t = nc;
	p->n = s;
	p->heads = heads;
	p->k = hd;
	*out = p;
out:
	return rc;
}

/* Attention over m sequences at row at (of s tokens: rows m s) on thread
 * id's stream and buffers; qk and pv are the products for m sequences.
 * With par the softmax may run on the calling thread's team
 * (GEMM_PAR_MIN). */
static int
attn_chunk(gemm_ctx *c, int id, prim_entry *qk, prim_entry *pv,
    const uint16_t *qkv, size_t plane, size_t at, int m, int s, int heads,
    uint16_t *out, int par, cdx_error *err)
{
	gemm_thr *h = &c->thr[id];
	size_t nrow = (size_t)m * heads * s;
	int rc;
	if ((rc = grow((void **)&h->score, &h->score_cap, nrow * s *
	    sizeof(float), err)) != 0 ||
	    (rc = grow(&h->prob, &h->prob_cap, nrow * s * 2, err)) != 0 ||
	    (rc = run_prim(c, qk, id, (void *)(qkv + at), qkv + plane + at,
	    NULL, h->score, err)) != 0)
		return rc;
	float *score = h->score;
	uint16_t *prob = h->prob;
	(void)par;      /* read by the pragma alone, gone without OpenMP */
	#pragma omp parallel for schedule(static) \
	    if (par && nrow * s >= GEMM_PAR_MIN)
	for (size_t i = 0; i < nrow; i++)
		ops_softmax_bf16(score + i * s, prob + i * s, s);
	return run_prim(c, pv, id, prob, qkv + 2 * plane + at, NULL,
	    out + at, err);
}

int
gemm_attention(gemm_ctx *c, const uint16_t *qkv, int n, int s, int heads,
    int hd, uint16_t *out, cdx_error *err)
{
	int rc, d = heads * hd;
	if (c->e == NULL || !gemm_cpu_has_bf16())
		return cdx_error_set(err, CDX_EINVAL, "gemm_attention: this "
		    "CPU has no native bf16");
	if (n <= 0)
		return 0;
	size_t per_seq = (size_t)heads * s * s * 6;     /* f32 + bf16 */
	size_t plane = (size_t)n * s * d;       /* q, k or v */
	int nthr = omp_get_max_threads();
#ifndef _OPENMP
	nthr = 1;
#endif
	/* chunks of sequences whose scores stay in a cache: a core's own
	 * when each thread takes chunks in turn (two chunks a thread at
	 * least), else the team shares each chunk */
	int team = nthr >= 2 && n >= 2 * nthr;
	int nc = (int)((team ? ATTN_THR_BYTES : ATTN_CHUNK_BYTES) / per_seq);
	nc = nc < 1 ? 1 : nc > n / (team ? 2 * nthr : 1) ?
	    n / (team ? 2 * nthr : 1) : nc;
	int nchunk = (n + nc - 1) / nc, tail = n - (nchunk - 1) * nc;
	prim_entry *qk[2], *pv[2];
	cache_room(c, 4);
	if ((rc = thr_ensure(c, team ? nthr : 1, err)) != 0 ||
	    (rc = get_attn_prim(c, GEMM_ATTN_QK, nc, s, heads, hd, &qk[0],
	    err)) != 0 ||
	    (rc = get_attn_prim(c, GEMM_ATTN_PV, nc, s, heads, hd, &pv[0],
	    err)) != 0 ||
	    (rc = get_attn_prim(c, GEMM_ATTN_QK, tail, s, heads, hd, &qk[1],
	    err)) != 0 ||
	    (rc = get_attn_prim(c, GEMM_ATTN_PV, tail, s, heads, hd, &pv[1],
	    err)) != 0)
		return rc;
	if (!team) {
		for (int i = 0; rc == 0 && i < nchunk; i++) {
			int last = i == nchunk - 1;
			rc = attn_chunk(c, 0, qk[last], pv[last], qkv, plane,
			    (size_t)i * nc * s * d, last ? tail : nc, s, heads,
			    out, 1, err);
		}
		return rc;
	}
	for (int i = 0; i < 2; i++)
		if ((rc = mem_ensure(c, qk[i], nthr, err)) != 0 ||
		    (rc = mem_ensure(c, pv[i], nthr, err)) != 0)
			return rc;
	int first = 0;
	cdx_error e1 = {0};
	#pragma omp parallel for schedule(dynamic) num_threads(nthr)
	for (int i = 0; i < nchunk; i++) {
		cdx_error e = {0};
		int last = i == nchunk - 1;
		int r = attn_chunk(c, omp_get_thread_num(), qk[last], pv[last],
		    qkv, plane, (size_t)i * nc * s * d, last ? tail : nc, s,
		    heads, out, 0, &e);
		keep_first(&first, &e1, r, &e);
	}
	if (first != 0 && err != NULL)
		*err = e1;
	return first;
}
