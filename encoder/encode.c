/*
 * encode.c - the CLIP text and vision encoders over a loaded model.
 *
 * Both towers of both families share one transformer (tower_run).  Every
 * linear layer is one GEMM over all rows of the batch.  Attention runs per
 * sequence and head as two SGEMMs on strided views of the fused q|k|v
 * buffer (no copies); where the linear layers run on oneDNN and the CPU
 * multiplies bf16 natively, attention over sequences of one length, none
 * causal (the vision towers, SigLIP's padded text), runs instead as two
 * batched bf16 products over every sequence and head (gemm_attention), q,
 * k, v and its output kept in bf16 from the projection before it to the
 * one after (attend_bf16).  Where the linear layers run on oneDNN (bf16,
 * int8), the work between them is shared among the calling thread's
 * OpenMP team, as oneDNN's is: the (sequence, head) pairs of attention,
 * the rows of the layer norms and activations, the images of im2col (and,
 * in gemm.c, the row tiles, each with its layer norm and conversions).  Where OpenBLAS' own threads run them (fp32),
 * that work stays on the calling thread: an OpenMP team spinning beside
 * OpenBLAS' threads measured slower than none.  Residual additions ride
 * on the GEMM (beta = 1) and each pending bias is added inside the next
 * layer norm's pass.  Where one row is pooled (CLIP's class token or
 * first end-of-text, SigLIP's last text position) the last block only
 * computes that row, since nothing else reaches the output.  SigLIP's
 * vision tower pools with an attention head over every token (map_head),
 * so it runs all rows to the end.
 */
#include "encoder/model_internal.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Text sequences encoded together (one GEMM per layer for all). */
#define TEXT_CHUNK 16

struct clip_ctx {
	const clip_model *m;
	gemm_ctx *g;               /* the GEMMs' primitives and scratch */
	int grc;                   /* the first GEMM failure of a call */
	cdx_error gerr;
	int max_batch;
	int text_rows, vis_rows;   /* row capacity of the big buffers */
	float *x, *attn;           /* rows x max width */
	float *big;                /* rows x max(3 width, mlp) */
	float *scores;             /* max seq x max seq per thread */
	size_t scores_cap;         /* floats */
	size_t smax;               /* max seq */
	/* attention's sequences for attend_run: query rows, keys (values
	 * follow at +d), output rows, counts */
	const float **aq, **akv;
	const float **planes;   /* clip_encode_images: max_batch image planes */
	float **aout;
	int *anq, *ank;
	float *col;                /* im2col: vis_rows x 3 p p */
	float *pooled;             /* max(max_batch, TEXT_CHUNK) x max width */
	int *seg_off, *seg_len, *seg_pool;
	int par;                   /* share the work between GEMMs (above) */
};

static size_t
max_sz(size_t a, size_t b)
{
	return a > b ? a : b;
}

int
clip_ctx_new(const clip_model *m, int max_batch, clip_ctx **out,
    cdx_error *err)
{
	if (m == NULL || out == NULL || max_batch < 1 || max_batch > 4096)
		return cdx_error_set(err, CDX_EINVAL,
		    "clip_ctx_new: need a model and 1 <= max_batch <= 4096");
	const clip_tower_cfg *tc = &m->text.cfg, *vc = &m->vision.cfg;
	int g = vc->image_size / vc->patch_size;
	size_t vseq = (size_t)g * g + (m->info.family == CLIP_FAMILY_CLIP);
	size_t tseq = (size_t)m->info.context_len;
	size_t dmax = max_sz((size_t)tc->width, (size_t)vc->width);
	size_t text_rows = TEXT_CHUNK * tseq;
	size_t vis_rows = (size_t)max_batch * vseq;
	size_t rows = max_sz(text_rows, vis_rows);
	size_t big = max_sz(text_rows * max_sz(3 * (size_t)tc->width,
	    (size_t)tc->mlp), vis_rows * max_sz(3 * (size_t)vc->width,
	    (size_t)vc->mlp));
	size_t smax = max_sz(vseq, tseq);
	size_t pp = 3 * (size_t)vc->patch_size * vc->patch_size;
	size_t npool = max_sz((size_t)max_batch, TEXT_CHUNK);

	clip_ctx *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return cdx_error_set(err, CDX_ENOMEM, "out of memory");
	c->m = m;
	c->max_batch = max_batch;
	c->text_rows = (int)text_rows;
	c->vis_rows = (int)vis_rows;
	c->x = gemm_alloc(rows * dmax * sizeof(float));
	c->attn = gemm_alloc(rows * dmax * sizeof(float));
	c->big = gemm_alloc(big * sizeof(float));
	c->smax = smax;
	c->aq = malloc(npool * sizeof(*c->aq));
	c->akv = malloc(npool * sizeof(*c->akv));
	c->aout = malloc(npool * sizeof(*c->aout));
	c->anq = malloc(npool * 2 * sizeof(int));
	c->col = gemm_alloc(vis_rows * pp * sizeof(float));
	c->planes = malloc((size_t)max_batch * sizeof(*c->planes));
	c->pooled = gemm_alloc(npool * dmax * sizeof(float));
	c->seg_off = malloc(npool * 3 * sizeof(int));
	if (!c->x || !c->attn || !c->big || !c->col || !c->pooled ||
	    !c->seg_off || !c->aq || !c->akv || !c->aout || !c->anq ||
	    !c->planes) {
		clip_ctx_free(c);
		return cdx_error_set(err, CDX_ENOMEM,
		    "out of memory for a batch of %d images", max_batch);
	}
	int rc = gemm_ctx_new(m->engine, &c->g, err);
	if (rc != 0) {
		clip_ctx_free(c);
		return rc;
	}
	c->seg_len = c->seg_off + npool;
	c->seg_pool = c->seg_len + npool;
	c->ank = c->anq + npool;
	*out = c;
	return 0;
}

void
clip_ctx_free(clip_ctx *c)
{
	if (c == NULL)
		return;
	free(c->x);
	free(c->attn);
	free(c->big);
	free(c->scores);
	free(c->aq);
	free(c->akv);
	free(c->aout);
	free(c->anq);
	free(c->col);
	free(c->planes);
	free(c->pooled);
	free(c->seg_off);
	gemm_ctx_free(c->g);
	free(c);
}

/* Y[t][w.n] = act(X W^T + bias) + beta Y in the weight's precision
 * (gemm_run); the first failure is kept for the encode call to return. */
static void
lin(clip_ctx *c, const float *x, const gemm_weight *w, float *y, int t,
    float beta, const float *bias, int act)
{
	if (c->grc == 0)
		c->grc = gemm_run(c->g, x, w, y, t, beta, bias, act, &c->gerr);
}

/* A layer norm feeding a GEMM (gemm_run_rows): row i of x gets bias
 * (when set) added in place, then its layer norm goes to the GEMM. */
typedef struct ln_rows {
	float *x;
	const float *bias, *w, *b;
	int d;
	float eps;
} ln_rows;

static void
ln_row(void *arg, int i, float *row)
{
	const ln_rows *a = arg;
	ops_layernorm(a->x + (size_t)i * a->d, a->bias, a->w, a->b, row, 1,
	    a->d, a->eps);
}

/* lin() on the layer norm of x's rows (ln_rows): the normalised rows
 * are never written out. */
static void
lin_ln(clip_ctx *c, ln_rows *ln, const gemm_weight *w, float *y, int t,
    const float *bias)
{
	if (c->grc == 0)
		c->grc = gemm_run_rows(c->g, ln_row, ln, w, y, t, 0.0f, bias,
		    GEMM_ACT_NONE, &c->gerr);
}

/* An MLP block on the layer norm of x's rows, the result added to them:
 * x += act(LN(x) W1^T + b1) W2^T + b2 (gemm_mlp_rows; h: t x w1.n floats
 * of scratch where the two layers go through float32); the first failure
 * is kept as in lin(). */
static void
mlp_ln(clip_ctx *c, ln_rows *ln, const gemm_weight *w1, const float *b1,
    int act, const gemm_weight *w2, const float *b2, float *h, int t)
{
	if (c->grc == 0)
		c->grc = gemm_mlp_rows(c->g, ln_row, ln, w1, b1, act, w2, b2,
		    ln->x, h, t, &c->gerr);
}

/* Returns the call's GEMM failure, if any, and clears it. */
static int
lin_status(clip_ctx *c, cdx_error *err)
{
	int rc = c->grc;
	if (rc != 0) {
		if (err != NULL)
			*err = c->gerr;
		c->grc = 0;
	}
	return rc;
}

/* A row pass below this many floats, or attention below this many
 * multiply-adds, stays on one thread: waking a sleeping team (as with
 * OMP_WAIT_POLICY=PASSIVE) costs more than it saves, as for a short text
 * query. */
#define PAR_MIN 65536
#define ATTN_PAR_MIN 262144

/* Rows [*r0, *r1) of t for the calling member of the current team. */
static void
team_rows(int t, int *r0, int *r1)
{
	int nt = omp_get_num_threads(), id = omp_get_thread_num();
	*r0 = (int)((long long)t * id / nt);
	*r1 = (int)((long long)t * (id + 1) / nt);
}

/* ops_layernorm with its rows shared among the team when c->par (rows are
 * independent: the same results). */
static void
layernorm(clip_ctx *c, float *x, const float *bias, const float *w,
    const float *b, float *y, int t, int d, float eps)
{
	if (!c->par || (size_t)t * d < PAR_MIN) {
		ops_layernorm(x, bias, w, b, y, t, d, eps);
		return;
	}
	#pragma omp parallel
	{
		int r0, r1;
		team_rows(t, &r0, &r1);
		ops_layernorm(x + (size_t)r0 * d, bias, w, b,
		    y + (size_t)r0 * d, r1 - r0, d, eps);
	}
}

/* OpenBLAS' pthread build threads an SGEMM once m n k exceeds 65536 x
 * GEMM_MULTITHREAD_THRESHOLD (4 unless built otherwise), and its thread
 * count is process-wide: attention's SGEMMs, already spread over the
 * OpenMP team, take their query rows in blocks under that size so that
 * each stays on the thread that calls it. */
#define ATTN_SGEMM_MAX 262144

/*
 * One head's attention: the nq query rows at q (stride ldq; q already
 * scaled by head_dim^-0.5) against nk keys and values at k and v (stride
 * ldkv), hd columns each; causal: query i sees keys 0..i (only asked for
 * with nq == nk).  Writes nq x hd at out (stride ldo).  scores: nq x nk
 * floats of the calling thread's own.
 */
static void
attend_head(const float *q, int ldq, const float *k, const float *v,
    int ldkv, int hd, int nq, int nk, int causal, float *out, int ldo,
    float *scores)
{
	int blk = ATTN_SGEMM_MAX / (nk * hd);
	blk = blk < 1 ? 1 : blk;
	for (int i0 = 0; i0 < nq; i0 += blk) {
		int m = nq - i0 < blk ? nq - i0 : blk;
		/* causal: these rows see no key past their last */
		int nkb = causal ? i0 + m : nk;
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, nkb, hd,
		    1.0f, q + (size_t)i0 * ldq, ldq, k, ldkv, 0.0f, scores,
		    nkb);
		if (causal) {
			for (int r = 0; r < m; r++) {
				float *row = scores + (size_t)r * nkb;
				int len = i0 + r + 1;
				ops_softmax_rows(row, 1, len, nkb, 0);
				memset(row + len, 0, (size_t)(nkb - len) *
				    sizeof(float));
			}
		} else {
			ops_softmax_rows(scores, m, nkb, nkb, 0);
		}
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd,
		    nkb, 1.0f, scores, nkb, v, ldkv, 0.0f,
		    out + (size_t)i0 * ldo, ldo);
	}
}

/*
 * Attention for the n sequences set up in c->aq/akv/aout/anq/ank: sequence
 * s's anq[s] query rows at aq[s] (stride ldq) against its ank[s] keys at
 * akv[s] and values at akv[s] + d (stride ldkv), every head of hd = d /
 * heads columns, into anq[s] rows at aout[s] (stride d).  The (sequence,
 * head) pairs are shared among the calling thread's OpenMP team, each
 * thread with its own scores; each pair is computed the same way whatever
 * the thread count.  The small SGEMMs inside stay on one thread each
 * (OpenBLAS below its threading threshold at these shapes).
 */
static void
attend_run(clip_ctx *c, int n, int d, int heads, int ldq, int ldkv,
    int causal)
{
	if (c->grc != 0 || n == 0)
		return;
	int pairs = n * heads;
	size_t work = 0;
	for (int s = 0; s < n; s++)
		work += (size_t)c->anq[s] * c->ank[s];
	work *= (size_t)d;
	int team = c->par && pairs > 1 && work >= ATTN_PAR_MIN;
	int hd = d / heads, nthr = team ? omp_get_max_threads() : 1;
	size_t per = c->smax * c->smax;
	if (per * (size_t)nthr > c->scores_cap) {
		free(c->scores);
		c->scores_cap = 0;
		c->scores = gemm_alloc(per * (size_t)nthr * sizeof(float));
		if (c->scores == NULL) {
			c->grc = cdx_error_set(&c->gerr, CDX_ENOMEM,
			    "out of memory for attention scores");
			return;
		}
		c->scores_cap = per * (size_t)nthr;
	}
	#pragma omp parallel for schedule(dynamic) if (team)
	for (int i = 0; i < pairs; i++) {
		int s = i / heads, o = i % heads * hd;
		float *sc = c->scores + per * (size_t)omp_get_thread_num();
		attend_head(c->aq[s] + o, ldq, c->akv[s] + o, c->akv[s] + d + o,
		    ldkv, hd, c->anq[s], c->ank[s], causal, c->aout[s] + o, d,
		    sc);
	}
}

/*
 * Layer L's attention block in float32 (attend_run): q, k, v of the rows
 * of x (t, n sequences at c->seg_off / seg_len) from the layer norm ln,
 * then the out-projection added to x, or in the last layer (last) to the
 * pooled rows alone, copied to c->pooled: *xs and *rows then name them.
 */
static void
attend_f32(clip_ctx *c, const clip_layer *L, ln_rows *ln, float *x, int t,
    int n, int heads, int causal, int last, float **xs, int *rows)
{
	int d = L->out.n;
	lin_ln(c, ln, &L->qkv, c->big, t, L->qkv_b);
	if (!last) {
		for (int s = 0; s < n; s++) {
			size_t r0 = (size_t)c->seg_off[s];
			c->aq[s] = c->big + r0 * 3 * d;
			c->akv[s] = c->aq[s] + d;
			c->aout[s] = c->attn + r0 * d;
			c->anq[s] = c->ank[s] = c->seg_len[s];
		}
		attend_run(c, n, d, heads, 3 * d, 3 * d, causal);
	} else {
		/* Only the pooled rows matter from here on. */
		for (int s = 0; s < n; s++) {
			const float *qkv = c->big + (size_t)c->seg_off[s] * 3 * d;
			int r = c->seg_pool[s];
			c->aq[s] = qkv + (size_t)r * 3 * d;
			c->akv[s] = qkv + d;
			c->aout[s] = c->attn + (size_t)s * d;
			c->anq[s] = 1;
			c->ank[s] = causal ? r + 1 : c->seg_len[s];
			memcpy(c->pooled + (size_t)s * d, x + (size_t)(c->seg_off[s]
			    + r) * d, (size_t)d * sizeof(float));
		}
		attend_run(c, n, d, heads, 3 * d, 3 * d, 0);
		*xs = c->pooled;
		*rows = n;
	}
	/* the residuals' biases are added in the next layer norm's pass */
	lin(c, c->attn, &L->out, *xs, *rows, 1.0f, NULL, GEMM_ACT_NONE);
}

/*
 * Layer L's attention block over the rows of x (t: n sequences of t / n
 * tokens) in bf16 on oneDNN: q, k and v as bf16 planes (gemm_run_planes)
 * from the layer norm ln, gemm_attention on them, and the out-projection
 * of its bf16 rows added to x (its bias left to the next layer norm).
 */
static void
attend_bf16(clip_ctx *c, const clip_layer *L, ln_rows *ln, float *x, int t,
    int n, int heads)
{
	int d = L->out.n;
	uint16_t *qkv = (uint16_t *)c->big, *o = (uint16_t *)c->attn;
	if (c->grc == 0)
		c->grc = gemm_run_planes(c->g, ln_row, ln, &L->qkv, qkv, 3, t,
		    L->qkv_b, &c->gerr);
	if (c->grc == 0)
		c->grc = gemm_attention(c->g, qkv, n, t / n, heads, d / heads,
		    o, &c->gerr);
	if (c->grc == 0)
		c->grc = gemm_run_bf16(c->g, o, &L->out, x, t, 1.0f, NULL,
		    &c->gerr);
}

/*
 * Runs the blocks of tower tw over x (t rows: n_seg sequences at
 * seg_off/seg_len) and leaves the final layer norm of each sequence's row
 * seg_pool[s] in c->pooled (n_seg rows), or, with pool_all, of every row
 * in x.
 */
static void
tower_run(clip_ctx *c, const clip_tower *tw, float *x, int t, int n_seg,
    int causal, int pool_all)
{
	const clip_tower_cfg *cfg = &tw->cfg;
	int d = cfg->width, heads = cfg->heads;
	const float *pending = NULL;
	/* Where the linear layers run on oneDNN and the CPU has native bf16,
	 * attention over sequences of one length, none causal (the vision
	 * towers, SigLIP's padded text), multiplies in bf16 too
	 * (attend_bf16). */
	int bf16_attn = c->par && !causal && gemm_cpu_has_bf16();
	for (int s = 0; bf16_attn && s < n_seg; s++)
		bf16_attn = c->seg_len[s] == c->seg_len[0] &&
		    c->seg_off[s] == s * c->seg_len[0];
	for (int l = 0; l < cfg->layers; l++) {
		const clip_layer *L = &tw->layers[l];
		int last = l == cfg->layers - 1 && !pool_all;
		/* q's head_dim^-0.5 is folded into its weights at load */
		ln_rows ln1 = {x, pending, L->ln1_w, L->ln1_b, d, cfg->eps};
		float *xs = x, *act = c->big;
		int rows = t;
		if (!last && bf16_attn)
			attend_bf16(c, L, &ln1, x, t, n_seg, heads);
		else
			attend_f32(c, L, &ln1, x, t, n_seg, heads, causal, last,
			    &xs, &rows);
		ln_rows ln2 = {xs, L->out_b, L->ln2_w, L->ln2_b, d, cfg->eps};
		mlp_ln(c, &ln2, &L->fc1, L->fc1_b, cfg->act, &L->fc2, NULL, act,
		    rows);
		pending = L->fc2_b;
	}
	if (pool_all)
		layernorm(c, x, pending, tw->ln_post_w, tw->ln_post_b, x, t, d,
		    cfg->eps);
	else
		ops_layernorm(c->pooled, pending, tw->ln_post_w, tw->ln_post_b,
		    c->pooled, n_seg, d, cfg->eps);
}

/*
 * SigLIP's attention-pooling head over the n sequences of x (post-layer-
 * normed, seq rows each): the probe's query attends over each sequence's
 * keys and values, out_proj, then the layer norm + MLP residual.  Leaves
 * n rows in c->pooled.
 */
static void
map_head(clip_ctx *c, const clip_tower *tw, const float *x, int n, int seq)
{
	const clip_map_head *h = &tw->map;
	int d = tw->cfg.width;
	size_t t = (size_t)n * seq;
	float *kv = c->big;
	lin(c, x, &h->kv, kv, (int)t, 0.0f, h->kv_b, GEMM_ACT_NONE);
	for (int b = 0; b < n; b++) {
		c->aq[b] = h->probe_q;
		c->akv[b] = kv + (size_t)b * seq * 2 * d;
		c->aout[b] = c->attn + (size_t)b * d;
		c->anq[b] = 1;
		c->ank[b] = seq;
	}
	attend_run(c, n, d, tw->cfg.heads, d, 2 * d, 0);
	float *o = c->pooled;
	lin(c, c->attn, &h->out, o, n, 0.0f, NULL, GEMM_ACT_NONE);
	/* out_proj's bias is added inside the layer norm's pass, as in
	 * tower_run */
	ln_rows ln = {o, h->out_b, h->ln_w, h->ln_b, d, tw->cfg.eps};
	mlp_ln(c, &ln, &h->fc1, h->fc1_b, tw->cfg.act, &h->fc2, h->fc2_b,
	    c->big, n);
}

/* CLIP's projection, SigLIP's text head (with bias), or SigLIP's image
 * embedding as it is; then unit length. */
static void
project(clip_ctx *c, const clip_tower *tw, const float *pooled, int n,
    int embed, float *out)
{
	if (tw->proj.n > 0) {
		lin(c, pooled, &tw->proj, out, n, 0.0f, tw->proj_b,
		    GEMM_ACT_NONE);
	} else {
		memcpy(out, pooled, (size_t)n * embed * sizeof(float));
	}
	for (int i = 0; i < n; i++)
		ops_l2_normalize(out + (size_t)i * embed, embed);
}

/* Whether tower tw's work between GEMMs is shared on OpenMP (c->par). */
static int
tower_par(const clip_tower *tw)
{
	return tw->cfg.layers > 0 && gemm_weight_on_openmp(&tw->layers[0].qkv);
}

/* The length of text sequence s (context_len ids): CLIP's ends at its
 * first EOT (the pooled row), SigLIP's is the whole context. */
static int
text_len(const clip_model *m, const int32_t *s)
{
	if (m->info.family != CLIP_FAMILY_CLIP)
		return m->info.context_len;
	int len = 0;
	while (s[len] != CLIP_TOKEN_EOT)
		len++;
	return len + 1;
}

int
clip_encode_text(clip_ctx *c, const int32_t *ids, int n, float *out,
    cdx_error *err)
{
	if (c == NULL || (n > 0 && (ids == NULL || out == NULL)) || n < 0)
		return cdx_error_set(err, CDX_EINVAL,
		    "clip_encode_text: invalid arguments");
	const clip_model *m = c->m;
	const clip_tower *tw = &m->text;
	int d = tw->cfg.width, embed = m->info.embed_dim;
	int ctx = m->info.context_len, clip = m->info.family == CLIP_FAMILY_CLIP;
	int maxlen = tw->cfg.max_positions < ctx ? tw->cfg.max_positions : ctx;
	size_t esz = sft_dtype_size(tw->tok_dtype);
	/* Check every sequence before computing anything. */
	for (int i = 0; i < n; i++) {
		const int32_t *s = ids + (size_t)i * ctx;
		int eot = -1;
		for (int j = 0; j < ctx && eot < 0; j++) {
			if (s[j] < 0 || s[j] >= tw->cfg.vocab_size)
				return cdx_error_set(err, CDX_EINVAL,
				    "text %d: token id %d at position %d is "
				    "outside the vocabulary (%d)", i, (int)s[j],
				    j, tw->cfg.vocab_size);
			if (clip && s[j] == CLIP_TOKEN_EOT)
				eot = j;
		}
		if (!clip)
			continue;
		if (eot < 0)
			return cdx_error_set(err, CDX_EINVAL,
			    "text %d: no end-of-text token (%d)", i,
			    CLIP_TOKEN_EOT);
		if (eot >= maxlen)
			return cdx_error_set(err, CDX_EINVAL,
			    "text %d: %d tokens exceed the model's %d "
			    "positions", i, eot + 1, maxlen);
	}
	c->par = tower_par(tw);
	for (int i0 = 0; i0 < n;) {
		int ns = 0, t = 0;
		while (i0 + ns < n && ns < TEXT_CHUNK) {
			const int32_t *s = ids + (size_t)(i0 + ns) * ctx;
			int len = text_len(m, s);
			c->seg_off[ns] = t;
			c->seg_len[ns] = len;
			c->seg_pool[ns] = len - 1;
			for (int j = 0; j < len; j++) {
				float *r = c->x + (size_t)(t + j) * d;
				sft_widen(tw->tok_dtype, tw->tok_emb +
				    (size_t)s[j] * d * esz, (size_t)d, r);
				ops_bias(r, tw->pos_emb + (size_t)j * d, 1, d);
			}
			t += len;
			ns++;
		}
		tower_run(c, tw, c->x, t, ns, clip, 0);
		project(c, tw, c->pooled, ns, embed, out + (size_t)i0 * embed);
		i0 += ns;
	}
	return lin_status(c, err);
}

int
clip_encode_images(clip_ctx *c, const float *pixels, int n, float *out,
    cdx_error *err)
{
	if (c == NULL || (n > 0 && pixels == NULL) || n < 0)
		return cdx_error_set(err, CDX_EINVAL,
		    "clip_encode_images: invalid arguments");
	size_t plane = 3 * (size_t)c->m->vision.cfg.image_size *
	    (size_t)c->m->vision.cfg.image_size;
	for (int b = 0; b < n && b < c->max_batch; b++)
		c->planes[b] = pixels + (size_t)b * plane;
	return clip_encode_image_planes(c, c->planes, n, out, err);
}

int
clip_encode_image_planes(clip_ctx *c, const float *const *planes, int n,
    float *out, cdx_error *err)
{
	if (c == NULL || (n > 0 && (planes == NULL || out == NULL)) || n < 0)
		return cdx_error_set(err, CDX_EINVAL,
		    "clip_encode_images: invalid arguments");
	if (n > c->max_batch)
		return cdx_error_set(err, CDX_EINVAL,
		    "clip_encode_images: %d images exceed the context's batch "
		    "of %d", n, c->max_batch);
	for (int b = 0; b < n; b++)
		if (planes[b] == NULL)
			return cdx_error_set(err, CDX_EINVAL,
			    "clip_encode_images: image %d has no pixels", b);
	if (n == 0)
		return 0;
	const clip_model *m = c->m;
	const clip_tower *tw = &m->vision;
	int d = tw->cfg.width, p = tw->cfg.patch_size;
	int img = tw->cfg.image_size, g = img / p;
	int cls = m->info.family == CLIP_FAMILY_CLIP;  /* a class token row */
	int seq = g * g + cls, t = n * seq;
	int pp = 3 * p * p;
	c->par = tower_par(tw);
	/* im2col: one row per patch in the conv weight's (c, y, x) order; the
	 * class token's row is zero so one GEMM covers the batch. */
	#pragma omp parallel for schedule(static) if (c->par && n > 1)
	for (int b = 0; b < n; b++) {
		const float *px = planes[b];
		float *row = c->col + (size_t)b * seq * pp;
		if (cls) {
			memset(row, 0, (size_t)pp * sizeof(float));
			row += pp;
		}
		for (int gy = 0; gy < g; gy++) {
			for (int gx = 0; gx < g; gx++, row += pp) {
				for (int ch = 0; ch < 3; ch++) {
					for (int ky = 0; ky < p; ky++) {
						memcpy(row + (ch * p + ky) * p,
						    px + ((size_t)ch * img +
						    gy * p + ky) * img + gx * p,
						    (size_t)p * sizeof(float));
					}
				}
			}
		}
		c->seg_off[b] = b * seq;
		c->seg_len[b] = seq;
		c->seg_pool[b] = 0;
	}
	/* SigLIP's patch embedding has a bias, CLIP's none */
	lin(c, c->col, &tw->patch, c->x, t, 0.0f, tw->patch_b, GEMM_ACT_NONE);
	if (!cls) {
		/* SigLIP: position embeddings, no class token, no
		 * pre-layernorm; the head pools over every token. */
		for (int b = 0; b < n; b++) {
			float *x = c->x + (size_t)b * seq * d;
			ops_bias(x, tw->pos_emb, 1, seq * d);
		}
		tower_run(c, tw, c->x, t, n, 0, 1);
		map_head(c, tw, c->x, n, seq);
		project(c, tw, c->pooled, n, m->info.embed_dim, out);
		return lin_status(c, err);
	}
	for (int b = 0; b < n; b++) {
		float *x = c->x + (size_t)b * seq * d;
		for (int k = 0; k < d; k++)
			x[k] = tw->class_emb[k] + tw->pos_emb[k];
		ops_bias(x + d, tw->pos_emb + d, 1, (seq - 1) * d);
	}
	layernorm(c, c->x, NULL, tw->ln_pre_w, tw->ln_pre_b, c->x, t, d,
	    tw->cfg.eps);
	tower_run(c, tw, c->x, t, n, 0, 0);
	project(c, tw, c->pooled, n, m->info.embed_dim, out);
	return lin_status(c, err);
}
