/*
 * model.c - loading a Hugging Face CLIP folder into an immutable
 * clip_model: config, preprocessing config, weights (converted once to
 * float32, q/k/v fused), identity and tokenizer.
 */
#include "encoder/model_internal.h"
#include "common/file.h"

#include <cblas.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

/* config.json and preprocessor_config.json larger than this are refused. */
#define MODEL_JSON_MAX (16u * 1024u * 1024u)

void
clip_model_default_params(clip_model_params *p)
{
	if (p == NULL)
		return;
	memset(p, 0, sizeof(*p));
}

/* Reads config.json or preprocessor_config.json; *data is NUL-terminated
 * and owned by the caller.  One over MODEL_JSON_MAX is CDX_EFORMAT (as
 * clip_model_load documents), not cdx_read_file's CDX_ETOOBIG. */
static int
read_small_file(const char *path, char **data, size_t *len, cdx_error *err)
{
	int rc = cdx_read_file(path, MODEL_JSON_MAX, data, len, err);
	if (rc == CDX_ETOOBIG) {
		rc = CDX_EFORMAT;
		if (err != NULL)
			err->code = rc;
	}
	return rc;
}

static int
file_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---- weights ----------------------------------------------------------- */

/* Parameters go to one of two float32 arenas: the linear layers' weights
 * (LIN, packed into the model's precision after loading, then freed unless
 * it is fp32) and everything else (PAR: norms, biases, embeddings). */
enum { PAR = 0, LIN = 1 };

typedef struct loader {
	const sft_file *st;
	float *arena[2];   /* NULL in the checking pass */
	size_t used[2];    /* floats reserved so far */
	cdx_error *err;
	int rc;            /* the first error */
} loader;

/* Reserves the floats of tensor `name` in arena a; it must have the given
 * shape.  The first pass (no arenas) checks every tensor and counts, so
 * nothing big is allocated for a file that does not match its config; the
 * second fills the slots.  Returns the slot (NULL in the first pass). */
static float *
ld_take(loader *ld, int a, const char *name, int ndim, const int64_t *shape)
{
	size_t numel = 1;
	for (int i = 0; i < ndim; i++)
		numel *= (size_t)shape[i];
	float *slot = ld->arena[a] ? ld->arena[a] + ld->used[a] : NULL;
	ld->used[a] += numel;
	if (ld->rc != 0)
		return slot;
	if (ld->arena[a] == NULL)
		ld->rc = sft_check(ld->st, name, ndim, shape, ld->err);
	else
		ld->rc = sft_load_f32(ld->st, name, ndim, shape, slot, ld->err);
	return slot;
}

#define SHAPE(...) (const int64_t[]){__VA_ARGS__}
#define TAKE1(name, a) ld_take(ld, PAR, name, 1, SHAPE(a))
#define TAKE2(name, a, b) ld_take(ld, PAR, name, 2, SHAPE(a, b))

/* A linear layer's weight [n][k] (tensor `name`, shape given by ndim and
 * shape, n k floats), as float32 for now: gemm weight w. */
static float *
ld_lin(loader *ld, gemm_weight *w, const char *name, int ndim,
    const int64_t *shape, int n, int k)
{
	float *slot = ld_take(ld, LIN, name, ndim, shape);
	w->n = n;
	w->k = k;
	w->prec = GEMM_F32;
	w->f32 = slot;
	return slot;
}

#define LIN2(w, name, a, b) ld_lin(ld, w, name, 2, SHAPE(a, b), (int)(a), \
	(int)(b))

/* Reserves n floats of scratch in the parameter arena (values computed at
 * load). */
static float *
ld_scratch(loader *ld, size_t n)
{
	float *slot = ld->arena[PAR] ? ld->arena[PAR] + ld->used[PAR] : NULL;
	ld->used[PAR] += n;
	return slot;
}

static void
ld_layers(loader *ld, clip_tower *tw, const char *pfx)
{
	const clip_tower_cfg *c = &tw->cfg;
	int64_t d = c->width, m = c->mlp;
	char name[192];
	for (int i = 0; i < c->layers; i++) {
		clip_layer dummy;
		clip_layer *L = ld->arena[PAR] ? &tw->layers[i] : &dummy;
#define LNAME(what) (snprintf(name, sizeof(name), \
	"%s.encoder.layers.%d.%s", pfx, i, what), name)
		L->ln1_w = TAKE1(LNAME("layer_norm1.weight"), d);
		L->ln1_b = TAKE1(LNAME("layer_norm1.bias"), d);
		/* q, k, v land consecutively: the fused [3D][D] and [3D] */
		ld_lin(ld, &L->qkv, LNAME("self_attn.q_proj.weight"), 2,
		    SHAPE(d, d), (int)(3 * d), (int)d);
		ld_take(ld, LIN, LNAME("self_attn.k_proj.weight"), 2,
		    SHAPE(d, d));
		ld_take(ld, LIN, LNAME("self_attn.v_proj.weight"), 2,
		    SHAPE(d, d));
		L->qkv_b = TAKE1(LNAME("self_attn.q_proj.bias"), d);
		TAKE1(LNAME("self_attn.k_proj.bias"), d);
		TAKE1(LNAME("self_attn.v_proj.bias"), d);
		LIN2(&L->out, LNAME("self_attn.out_proj.weight"), d, d);
		L->out_b = TAKE1(LNAME("self_attn.out_proj.bias"), d);
		L->ln2_w = TAKE1(LNAME("layer_norm2.weight"), d);
		L->ln2_b = TAKE1(LNAME("layer_norm2.bias"), d);
		LIN2(&L->fc1, LNAME("mlp.fc1.weight"), m, d);
		L->fc1_b = TAKE1(LNAME("mlp.fc1.bias"), m);
		LIN2(&L->fc2, LNAME("mlp.fc2.weight"), d, m);
		L->fc2_b = TAKE1(LNAME("mlp.fc2.bias"), d);
#undef LNAME
	}
}

/* The vision tower: CLIP's class token, pre-layernorm and projection, or
 * SigLIP's patch bias and attention-pooling head (modeling_siglip.py). */
static void
ld_vision(loader *ld, clip_tower *tw, int family, int embed)
{
	const clip_tower_cfg *c = &tw->cfg;
	int64_t d = c->width, m = c->mlp, p = c->patch_size;
	int64_t g = c->image_size / c->patch_size;
	int siglip = family != CLIP_FAMILY_CLIP;
	/* the conv weight [D][3][p][p] is the GEMM's [D][3 p p] */
	ld_lin(ld, &tw->patch, "vision_model.embeddings.patch_embedding."
	    "weight", 4, SHAPE(d, 3, p, p), (int)d, (int)(3 * p * p));
	tw->pos_emb = TAKE2("vision_model.embeddings.position_embedding.weight",
	    g * g + (siglip ? 0 : 1), d);
	if (siglip) {
		tw->patch_b = TAKE1("vision_model.embeddings.patch_embedding."
		    "bias", d);
	} else {
		tw->class_emb = TAKE1("vision_model.embeddings.class_embedding",
		    d);
		tw->ln_pre_w = TAKE1("vision_model.pre_layrnorm.weight", d);
		tw->ln_pre_b = TAKE1("vision_model.pre_layrnorm.bias", d);
	}
	ld_layers(ld, tw, "vision_model");
	tw->ln_post_w = TAKE1("vision_model.post_layernorm.weight", d);
	tw->ln_post_b = TAKE1("vision_model.post_layernorm.bias", d);
	if (!siglip) {
		LIN2(&tw->proj, "visual_projection.weight", embed, d);
		return;
	}
	clip_map_head *h = &tw->map;
	/* probe, then in_proj: probe_q is computed from them at load */
	float *probe = ld_take(ld, PAR, "vision_model.head.probe", 3,
	    SHAPE(1, 1, d));
	float *in_w = ld_take(ld, LIN,
	    "vision_model.head.attention.in_proj_weight", 2, SHAPE(3 * d, d));
	float *in_b = TAKE1("vision_model.head.attention.in_proj_bias", 3 * d);
	LIN2(&h->out, "vision_model.head.attention.out_proj.weight", d, d);
	h->out_b = TAKE1("vision_model.head.attention.out_proj.bias", d);
	h->ln_w = TAKE1("vision_model.head.layernorm.weight", d);
	h->ln_b = TAKE1("vision_model.head.layernorm.bias", d);
	LIN2(&h->fc1, "vision_model.head.mlp.fc1.weight", m, d);
	h->fc1_b = TAKE1("vision_model.head.mlp.fc1.bias", m);
	LIN2(&h->fc2, "vision_model.head.mlp.fc2.weight", d, m);
	h->fc2_b = TAKE1("vision_model.head.mlp.fc2.bias", d);
	float *q = ld_scratch(ld, (size_t)d);
	if (ld->arena[PAR] == NULL || ld->rc != 0)
		return;
	h->kv = (gemm_weight){.n = (int)(2 * d), .k = (int)d,
	    .prec = GEMM_F32, .f32 = in_w + d * d};
	h->kv_b = in_b + d;
	/* The probe is the same for every image, so its query is too:
	 * q = (probe Wq^T + bq) * head_dim^-0.5, once. */
	float s = 1.0f / sqrtf((float)(c->width / c->heads));
	for (int64_t i = 0; i < d; i++) {
		double acc = in_b[i];
		for (int64_t k = 0; k < d; k++)
			acc += (double)probe[k] * in_w[i * d + k];
		q[i] = (float)acc * s;
	}
	h->probe_q = q;
}

/* The text tower but its token table (load_token_table). */
static void
ld_text(loader *ld, clip_tower *tw, int family, int embed)
{
	const clip_tower_cfg *c = &tw->cfg;
	int64_t d = c->width;
	tw->pos_emb = TAKE2("text_model.embeddings.position_embedding.weight",
	    c->max_positions, d);
	ld_layers(ld, tw, "text_model");
	tw->ln_post_w = TAKE1("text_model.final_layer_norm.weight", d);
	tw->ln_post_b = TAKE1("text_model.final_layer_norm.bias", d);
	if (family == CLIP_FAMILY_CLIP) {
		LIN2(&tw->proj, "text_projection.weight", embed, d);
	} else {
		LIN2(&tw->proj, "text_model.head.weight", embed, d);
		tw->proj_b = TAKE1("text_model.head.bias", embed);
	}
}

static const char tok_table_name[] =
    "text_model.embeddings.token_embedding.weight";

static int
check_token_table(const clip_model *m, const sft_file *st, cdx_error *err)
{
	return sft_check(st, tok_table_name, 2, SHAPE(m->text.cfg.vocab_size,
	    m->text.cfg.width), err);
}

/* The token table stays in its stored dtype: a copy of its bytes (checked
 * by check_token_table). */
static int
load_token_table(clip_model *m, const sft_file *st, cdx_error *err)
{
	clip_tower *tw = &m->text;
	const sft_tensor *t = sft_find(st, tok_table_name);
	m->tok_table = malloc(t->nbytes);
	if (m->tok_table == NULL)
		return cdx_error_set(err, CDX_ENOMEM, "out of memory for the "
		    "%llu MiB token table", (unsigned long long)(t->nbytes >>
		    20));
	memcpy(m->tok_table, t->data, t->nbytes);
	m->tok_table_bytes = t->nbytes;
	tw->tok_emb = m->tok_table;
	tw->tok_dtype = t->dtype;
	return 0;
}

/* logit_scale and logit_bias: one value each (shape [1], or [] as CLIP
 * stores logit_scale).  SigLIP needs both; CLIP's are optional. */
static int
load_logits(clip_model *m, const sft_file *st, cdx_error *err)
{
	static const char *const names[2] = {"logit_scale", "logit_bias"};
	float *dst[2] = {&m->info.logit_scale, &m->info.logit_bias};
	int siglip = m->info.family != CLIP_FAMILY_CLIP;
	m->info.logit_scale = logf(100.0f);   /* CLIP's trained clamp */
	m->info.logit_bias = 0.0f;
	for (int i = 0; i < 2; i++) {
		const sft_tensor *t = sft_find(st, names[i]);
		if (t == NULL && !siglip)
			continue;
		if (t == NULL || t->numel != 1 || t->ndim > 1 ||
		    sft_dtype_size(t->dtype) == 0)
			return cdx_error_set(err, CDX_EFORMAT,
			    "%s: tensor '%s' %s (a SigLIP model needs one "
			    "F32, F16 or BF16 value)", st->path, names[i],
			    t == NULL ? "is missing" : "is not one value");
		sft_widen(t->dtype, t->data, 1, dst[i]);
		if (!isfinite(*dst[i]))
			return cdx_error_set(err, CDX_EFORMAT,
			    "%s: tensor '%s' is not finite", st->path,
			    names[i]);
	}
	m->info.has_sigmoid = siglip;
	return 0;
}

/* Calls fn on every linear layer's weight of the model (those loaded),
 * with down = 1 for the MLPs' down-projections (fc2). */
static void
model_linears(clip_model *m, void (*fn)(gemm_weight *, int down, void *),
    void *arg)
{
	clip_tower *towers[2] = {&m->text, &m->vision};
	for (int i = 0; i < 2; i++) {
		clip_tower *tw = towers[i];
		gemm_weight *ws[6] = {&tw->proj, &tw->patch, &tw->map.kv,
		    &tw->map.out, &tw->map.fc1, &tw->map.fc2};
		for (int l = 0; tw->layers != NULL && l < tw->cfg.layers; l++) {
			clip_layer *L = &tw->layers[l];
			gemm_weight *lw[4] = {&L->qkv, &L->out, &L->fc1,
			    &L->fc2};
			for (int j = 0; j < 4; j++)
				if (lw[j]->n > 0)
					fn(lw[j], j == 3, arg);
		}
		for (int j = 0; j < 6; j++)
			if (ws[j]->n > 0)
				fn(ws[j], j == 5, arg);
	}
}

/* The precision a weight is packed at under the model's precision (down:
 * an MLP down-projection). */
static int
weight_prec(int precision, int down)
{
	switch (precision) {
	case CLIP_PRECISION_BF16:
		return GEMM_BF16;
	case CLIP_PRECISION_INT8:
		return GEMM_S8;
	case CLIP_PRECISION_INT8_MIXED:
		return down ? GEMM_BF16 : GEMM_S8;
	default:
		return GEMM_F32;
	}
}

struct pack_arg {
	const gemm_engine *e;
	int precision;
	cdx_error *err;
	int rc;
};

static void
pack_one(gemm_weight *w, int down, void *arg)
{
	struct pack_arg *a = arg;
	if (a->rc == 0)
		a->rc = gemm_weight_init(w, a->e, w->f32, w->n, w->k,
		    weight_prec(a->precision, down), a->err);
}

static void
add_bytes(gemm_weight *w, int down, void *arg)
{
	(void)down;
	*(size_t *)arg += w->packed_bytes + (w->scale != NULL ?
	    (size_t)w->n * sizeof(float) : 0);
}

static void
release_one(gemm_weight *w, int down, void *arg)
{
	(void)down;
	(void)arg;
	gemm_weight_release(w);
}

/* Packs every linear weight at the model's precision (oneDNN for bf16 and
 * int8) and frees their float32 copies; fp32 keeps them as they are. */
static int
pack_linears(clip_model *m, cdx_error *err)
{
	clip_model_info *in = &m->info;
	if (in->precision == CLIP_PRECISION_FP32) {
		snprintf(in->kernels, sizeof(in->kernels), "OpenBLAS");
		return 0;
	}
	int rc = gemm_engine_new(&m->engine, err);
	if (rc != 0)
		return rc;
	struct pack_arg a = {m->engine, in->precision, err, 0};
	model_linears(m, pack_one, &a);
	if (a.rc != 0)
		return a.rc;
	free(m->lin);
	m->lin = NULL;
	m->lin_floats = 0;
	/* the kernel oneDNN chose for the first MLP's weights */
	snprintf(in->kernels, sizeof(in->kernels), "oneDNN %s %s %s",
	    gemm_onednn_version(), gemm_cpu_isa_name(),
	    m->text.layers[0].fc1.impl);
	return 0;
}

static int
load_weights(clip_model *m, const sft_file *st, cdx_error *err)
{
	loader ld = {.st = st, .err = err};
	int embed = m->info.embed_dim, fam = m->info.family;
	/* First pass checks and counts, second pass loads. */
	ld.rc = check_token_table(m, st, err);
	ld_text(&ld, &m->text, fam, embed);
	ld_vision(&ld, &m->vision, fam, embed);
	if (ld.rc != 0)
		return ld.rc;
	int rc = load_logits(m, st, err);
	if (rc != 0)
		return rc;
	size_t total = ld.used[PAR], lin = ld.used[LIN];
	m->text.layers = calloc((size_t)m->text.cfg.layers, sizeof(clip_layer));
	m->vision.layers = calloc((size_t)m->vision.cfg.layers,
	    sizeof(clip_layer));
	m->arena = malloc(total * sizeof(float));
	m->lin = malloc(lin * sizeof(float));
	if (m->text.layers == NULL || m->vision.layers == NULL ||
	    m->arena == NULL || m->lin == NULL)
		return cdx_error_set(err, CDX_ENOMEM,
		    "out of memory for %zu MiB of weights",
		    (total + lin) * sizeof(float) >> 20);
	m->arena_floats = total;
	m->lin_floats = lin;
	ld.arena[PAR] = m->arena;
	ld.arena[LIN] = m->lin;
	ld.used[PAR] = ld.used[LIN] = 0;
	ld_text(&ld, &m->text, fam, embed);
	ld_vision(&ld, &m->vision, fam, embed);
	if (ld.rc != 0)
		return ld.rc;
	rc = load_token_table(m, st, err);
	if (rc != 0)
		return rc;
	/* Attention scales q by head_dim^-0.5: fold it into q's weights and
	 * bias once (they are the first third of the fused q|k|v). */
	clip_tower *towers[2] = {&m->text, &m->vision};
	for (int i = 0; i < 2; i++) {
		const clip_tower_cfg *c = &towers[i]->cfg;
		size_t d = (size_t)c->width;
		float s = 1.0f / sqrtf((float)(c->width / c->heads));
		for (int l = 0; l < c->layers; l++) {
			float *w = (float *)towers[i]->layers[l].qkv.f32;
			float *b = (float *)towers[i]->layers[l].qkv_b;
			for (size_t k = 0; k < d * d; k++)
				w[k] *= s;
			for (size_t k = 0; k < d; k++)
				b[k] *= s;
		}
	}
	return pack_linears(m, err);
}

/* ---- tokenizer ---------------------------------------------------------- */

/* The tokenizer of a folder whose config.json parsed as cfg: CLIP's
 * vocab.json + merges.txt (else the built-in vocabulary), or SigLIP's
 * SentencePiece files padded to the text positions. */
static int
tokenizer_for(const char *dir, const clip_config *cfg, clip_tokenizer **out,
    cdx_error *err)
{
	if (cfg->family != CLIP_FAMILY_CLIP)
		return clip_tokenizer_load_sentencepiece(dir,
		    cfg->text.max_positions, out, err);
	char vocab[PATH_MAX], merges[PATH_MAX];
	snprintf(vocab, sizeof(vocab), "%s/vocab.json", dir);
	snprintf(merges, sizeof(merges), "%s/merges.txt", dir);
	if (file_exists(vocab) && file_exists(merges))
		return clip_tokenizer_load_files(vocab, merges, out, err);
	return clip_tokenizer_load_builtin(out, err);
}

static int
read_config(const char *dir, clip_config *cfg, cdx_error *err)
{
	char path[PATH_MAX];
	char *json;
	size_t len;
	snprintf(path, sizeof(path), "%s/config.json", dir);
	int rc = read_small_file(path, &json, &len, err);
	if (rc != 0)
		return rc;
	rc = clip_config_parse(json, len, path, cfg, err);
	free(json);
	if (rc == 0 && cfg->family != CLIP_FAMILY_CLIP &&
	    cfg->text.max_positions > CLIP_CONTEXT_LEN)
		rc = cdx_error_set(err, CDX_EFORMAT,
		    "%s: text_config.max_position_embeddings %d is over the "
		    "%d tokens supported", path, cfg->text.max_positions,
		    CLIP_CONTEXT_LEN);
	return rc;
}

int
clip_tokenizer_load_dir(const char *dir, clip_tokenizer **out,
    cdx_error *err)
{
	clip_config cfg;
	if (dir == NULL || out == NULL)
		return cdx_error_set(err, CDX_EINVAL,
		    "clip_tokenizer_load_dir: dir and out are required");
	int rc = read_config(dir, &cfg, err);
	if (rc != 0)
		return rc;
	return tokenizer_for(dir, &cfg, out, err);
}

static int
load_tokenizer(clip_model *m, const char *dir, const clip_config *cfg,
    cdx_error *err)
{
	clip_model_info *in = &m->info;
	int rc = tokenizer_for(dir, cfg, &m->tok, err);
	if (rc != 0)
		return rc;
	if (clip_tokenizer_kind(m->tok) == CLIP_TOKENIZER_GEMMA)
		in->family = CLIP_FAMILY_SIGLIP2;
	in->context_len = clip_tokenizer_context_len(m->tok);
	int nv = clip_tokenizer_vocab_size(m->tok);
	if (nv > in->vocab_size)
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: the tokenizer has %d tokens but config.json's "
		    "text_config.vocab_size (the token table) has %d rows",
		    dir, nv, in->vocab_size);
	return 0;
}

/* ---- load --------------------------------------------------------------- */

static void
info_fill(clip_model_info *in, const clip_config *c)
{
	in->embed_dim = c->projection_dim;
	in->image_size = c->vision.image_size;
	in->patch_size = c->vision.patch_size;
	in->vision_width = c->vision.width;
	in->vision_layers = c->vision.layers;
	in->vision_heads = c->vision.heads;
	in->vision_mlp = c->vision.mlp;
	in->text_width = c->text.width;
	in->text_layers = c->text.layers;
	in->text_heads = c->text.heads;
	in->text_mlp = c->text.mlp;
	in->vocab_size = c->text.vocab_size;
	in->max_positions = c->text.max_positions;
	in->family = c->family;
	in->act_vision = c->vision.act;
	in->act_text = c->text.act;
	clip_preprocess_cfg *p = &in->preprocess;
	p->resample = CLIP_RESAMPLE_BICUBIC;
	p->shortest_edge = c->vision.image_size;
	p->crop_width = p->crop_height = c->vision.image_size;
	if (c->family != CLIP_FAMILY_CLIP) {
		/* SiglipImageProcessor's defaults */
		p->mode = CLIP_RESIZE_SQUASH;
		for (int i = 0; i < 3; i++)
			p->mean[i] = p->std[i] = 0.5f;
		return;
	}
	p->mode = CLIP_RESIZE_SHORTEST_CROP;
	static const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
	static const float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
	memcpy(p->mean, mean, sizeof(mean));
	memcpy(p->std, std, sizeof(std));
}

static int
load_json_configs(clip_model *m, const char *dir, clip_config *cfg,
    cdx_error *err)
{
	char path[PATH_MAX];
	char *json;
	size_t len;
	int rc = read_config(dir, cfg, err);
	if (rc != 0)
		return rc;
	m->text.cfg = cfg->text;
	m->vision.cfg = cfg->vision;
	info_fill(&m->info, cfg);

	snprintf(path, sizeof(path), "%s/preprocessor_config.json", dir);
	if (!file_exists(path)) {
		clip_preprocess_log_defaults(path, &m->info.preprocess);
		return 0;
	}
	rc = read_small_file(path, &json, &len, err);
	if (rc != 0)
		return rc;
	rc = clip_preprocess_parse(json, len, path, &m->info.preprocess, err);
	free(json);
	if (rc != 0)
		return rc;
	const clip_preprocess_cfg *p = &m->info.preprocess;
	if (p->crop_width != cfg->vision.image_size ||
	    p->crop_height != cfg->vision.image_size)
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: %s %dx%d differs from the model's image_size %d", path,
		    p->mode == CLIP_RESIZE_SQUASH ? "size" : "crop_size",
		    p->crop_width, p->crop_height, cfg->vision.image_size);
	return 0;
}

int
clip_model_load(const char *dir, const clip_model_params *params,
    clip_model **out, cdx_error *err)
{
	clip_model_params defaults;
	if (params == NULL) {
		clip_model_default_params(&defaults);
		params = &defaults;
	}
	if (dir == NULL || out == NULL)
		return cdx_error_set(err, CDX_EINVAL,
		    "clip_model_load: dir and out are required");
	char real[PATH_MAX];
	if (realpath(dir, real) == NULL) {
		int e = errno;
		return cdx_error_set(err, cdx_from_errno(e), "%s: %s", dir,
		    strerror(e));
	}
	struct stat sb;
	if (stat(real, &sb) != 0 || !S_ISDIR(sb.st_mode))
		return cdx_error_set(err, CDX_ENOTFOUND,
		    "%s: not a model folder", dir);
	if (strlen(real) > PATH_MAX - 64)
		return cdx_error_set(err, CDX_EINVAL, "%s: path too long", dir);

	clip_model *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return cdx_error_set(err, CDX_ENOMEM, "out of memory");
	const char *base = strrchr(real, '/');
	base = base != NULL && base[1] != '\0' ? base + 1 : real;
	if (strlen(base) >= sizeof(m->info.name)) {
		free(m);
		return cdx_error_set(err, CDX_EINVAL,
		    "%s: folder name longer than %zu bytes", dir,
		    sizeof(m->info.name) - 1);
	}
	memcpy(m->info.name, base, strlen(base) + 1);
	m->info.precision = params->precision;
	if (m->info.precision == CLIP_PRECISION_AUTO)
		m->info.precision = gemm_cpu_has_bf16() ? CLIP_PRECISION_BF16 :
		    CLIP_PRECISION_FP32;
	if (m->info.precision < CLIP_PRECISION_FP32 ||
	    m->info.precision > CLIP_PRECISION_INT8_MIXED) {
		free(m);
		return cdx_error_set(err, CDX_EINVAL, "clip_model_load: unknown "
		    "precision %d", params->precision);
	}

	clip_config cfg;
	int rc = load_json_configs(m, real, &cfg, err);
	if (rc != 0)
		goto out_free_model;

	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/model.safetensors", real);
	sft_file st;
	rc = sft_open(&st, path, err);
	if (rc != 0)
		goto out_free_model;
	m->info.weights_hash = XXH3_64bits(st.map, st.size);
	snprintf(m->info.id, sizeof(m->info.id), "%s@%016llx", m->info.name,
	    (unsigned long long)m->info.weights_hash);
	rc = load_weights(m, &st, err);
	sft_close(&st);
	if (rc != 0)
		goto out_free_model;

	rc = load_tokenizer(m, real, &cfg, err);
	if (rc != 0)
		goto out_free_model;
	snprintf(m->info.key, sizeof(m->info.key),
	    "%s-%d-%d/%d-v%dx%d-t%dx%d@%016llx",
	    clip_family_name(m->info.family), m->info.embed_dim,
	    m->info.image_size, m->info.patch_size, m->info.vision_width,
	    m->info.vision_layers, m->info.text_width, m->info.text_layers,
	    (unsigned long long)m->info.weights_hash);
	size_t bytes = (m->arena_floats + m->lin_floats) * sizeof(float) +
	    m->tok_table_bytes;
	model_linears(m, add_bytes, &bytes);
	m->info.weight_bytes = bytes;

	*out = m;
	return 0;

out_free_model:
	clip_model_free(m);
	return rc;
}

void
clip_model_free(clip_model *m)
{
	if (m == NULL)
		return;
	clip_tokenizer_free(m->tok);
	model_linears(m, release_one, NULL);
	gemm_engine_free(m->engine);
	free(m->text.layers);
	free(m->vision.layers);
	free(m->arena);
	free(m->lin);
	free(m->tok_table);
	free(m);
}

const char *
clip_precision_name(int precision)
{
	switch (precision) {
	case CLIP_PRECISION_AUTO:
		return "auto";
	case CLIP_PRECISION_FP32:
		return "fp32";
	case CLIP_PRECISION_BF16:
		return "bf16";
	case CLIP_PRECISION_INT8:
		return "int8";
	case CLIP_PRECISION_INT8_MIXED:
		return "int8-mixed";
	default:
		return "?";
	}
}

int
clip_precision_parse(const char *name, int *out)
{
	for (int p = CLIP_PRECISION_AUTO; p <= CLIP_PRECISION_INT8_MIXED;
	    p++) {
		if (name != NULL && strcmp(name, clip_precision_name(p)) == 0) {
			*out = p;
			return 0;
		}
	}
	return CDX_EINVAL;
}

const char *
clip_family_name(int family)
{
	switch (family) {
	case CLIP_FAMILY_CLIP:
		return "clip";
	case CLIP_FAMILY_SIGLIP:
		return "siglip";
	case CLIP_FAMILY_SIGLIP2:
		return "siglip2";
	default:
		return "?";
	}
}

int
clip_match_prob(const clip_model_info *in, double cos, double *prob)
{
	if (in == NULL || !in->has_sigmoid || prob == NULL)
		return CDX_EINVAL;
	double z = exp((double)in->logit_scale) * cos + in->logit_bias;
	*prob = 1.0 / (1.0 + exp(-z));
	return 0;
}

int
clip_match_cos(const clip_model_info *in, double prob, double *cos)
{
	if (in == NULL || !in->has_sigmoid || cos == NULL || !(prob > 0.0 &&
	    prob < 1.0))
		return CDX_EINVAL;
	*cos = (log(prob / (1.0 - prob)) - in->logit_bias) /
	    exp((double)in->logit_scale);
	return 0;
}

const clip_model_info *
clip_model_get_info(const clip_model *m)
{
	return m != NULL ? &m->info : NULL;
}

const clip_tokenizer *
clip_model_tokenizer(const clip_model *m)
{
	return m != NULL ? m->tok : NULL;
}
