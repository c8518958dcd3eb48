/*
 * model.c - loading a Hugging Face CLIP folder into an immutable
 * clip_model: config, preprocessing config, weights (converted once to
 * float32, q/k/v fused), identity and tokenizer.
 */
#include "encoder/model_internal.h"

#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

/* config.json and preprocessor_config.json larger than this are refused. */
#define MODEL_JSON_MAX (16u * 1024u * 1024u)

void
clip_model_default_params(clip_model_params *p)
{
	if (p == NULL)
		return;
	memset(p, 0, sizeof(*p));
	p->n_threads = 1;
}

/* Reads a whole small file; *data is NUL-terminated and owned by the
 * caller.  Errors: CDX_ENOTFOUND, CDX_EPERM, CDX_EIO, CDX_ETOOBIG. */
static int
read_small_file(const char *path, char **data, size_t *len, cdx_error *err)
{
	int rc;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		return cdx_error_set(err, cdx_from_errno(e), "%s: %s", path,
		    strerror(e));
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		rc = cdx_error_set(err, CDX_EIO, "%s: not a readable file",
		    path);
		goto out_close_fd;
	}
	if ((unsigned long long)st.st_size > MODEL_JSON_MAX) {
		rc = cdx_error_set(err, CDX_EFORMAT, "%s: too large (%lld "
		    "bytes)", path, (long long)st.st_size);
		goto out_close_fd;
	}
	size_t n = (size_t)st.st_size;
	char *buf = malloc(n + 1);
	if (buf == NULL) {
		rc = cdx_error_set(err, CDX_ENOMEM, "out of memory");
		goto out_close_fd;
	}
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = cdx_error_set(err, CDX_EIO, "%s: read failed",
			    path);
			free(buf);
			goto out_close_fd;
		}
		got += (size_t)r;
	}
	buf[n] = '\0';
	close(fd);
	*data = buf;
	*len = n;
	return 0;
out_close_fd:
	close(fd);
	return rc;
}

static int
file_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---- weights ----------------------------------------------------------- */

typedef struct loader {
	const st_file *st;
	float *arena;      /* NULL in the checking pass */
	size_t used;       /* floats reserved so far */
	cdx_error *err;
	int rc;            /* the first error */
} loader;

/* Reserves the floats of tensor `name`, which must have the given shape.
 * The first pass (no arena) checks every tensor and counts, so nothing big
 * is allocated for a file that does not match its config; the second
 * fills the slots.  Returns the slot (NULL in the first pass). */
static float *
ld_take(loader *ld, const char *name, int ndim, const int64_t *shape)
{
	size_t numel = 1;
	for (int i = 0; i < ndim; i++)
		numel *= (size_t)shape[i];
	float *slot = ld->arena ? ld->arena + ld->used : NULL;
	ld->used += numel;
	if (ld->rc != 0)
		return slot;
	if (ld->arena == NULL)
		ld->rc = st_check(ld->st, name, ndim, shape, ld->err);
	else
		ld->rc = st_load_f32(ld->st, name, ndim, shape, slot, ld->err);
	return slot;
}

#define SHAPE(...) (const int64_t[]){__VA_ARGS__}
#define TAKE1(name, a) ld_take(ld, name, 1, SHAPE(a))
#define TAKE2(name, a, b) ld_take(ld, name, 2, SHAPE(a, b))

static void
ld_tower(loader *ld, clip_tower *tw, const char *pfx, int vision,
    int embed)
{
	const clip_tower_cfg *c = &tw->cfg;
	int64_t d = c->width, m = c->mlp;
	char name[192];
#define NAME(...) (snprintf(name, sizeof(name), __VA_ARGS__), name)
	if (vision) {
		int64_t g = c->image_size / c->patch_size, p = c->patch_size;
		tw->class_emb = TAKE1(NAME("%s.embeddings.class_embedding", pfx),
		    d);
		/* the conv weight [D][3][p][p] is the GEMM's [D][3 p p] */
		tw->patch_w = ld_take(ld, NAME("%s.embeddings.patch_embedding."
		    "weight", pfx), 4, SHAPE(d, 3, p, p));
		tw->pos_emb = TAKE2(NAME("%s.embeddings.position_embedding."
		    "weight", pfx), g * g + 1, d);
		tw->ln_pre_w = TAKE1(NAME("%s.pre_layrnorm.weight", pfx), d);
		tw->ln_pre_b = TAKE1(NAME("%s.pre_layrnorm.bias", pfx), d);
	} else {
		tw->tok_emb = TAKE2(NAME("%s.embeddings.token_embedding.weight",
		    pfx), c->vocab_size, d);
		tw->pos_emb = TAKE2(NAME("%s.embeddings.position_embedding."
		    "weight", pfx), c->max_positions, d);
	}
	for (int i = 0; i < c->layers; i++) {
		clip_layer dummy;
		clip_layer *L = ld->arena ? &tw->layers[i] : &dummy;
#define LNAME(what) NAME("%s.encoder.layers.%d.%s", pfx, i, what)
		L->ln1_w = TAKE1(LNAME("layer_norm1.weight"), d);
		L->ln1_b = TAKE1(LNAME("layer_norm1.bias"), d);
		/* q, k, v land consecutively: the fused [3D][D] and [3D] */
		L->qkv_w = TAKE2(LNAME("self_attn.q_proj.weight"), d, d);
		TAKE2(LNAME("self_attn.k_proj.weight"), d, d);
		TAKE2(LNAME("self_attn.v_proj.weight"), d, d);
		L->qkv_b = TAKE1(LNAME("self_attn.q_proj.bias"), d);
		TAKE1(LNAME("self_attn.k_proj.bias"), d);
		TAKE1(LNAME("self_attn.v_proj.bias"), d);
		L->out_w = TAKE2(LNAME("self_attn.out_proj.weight"), d, d);
		L->out_b = TAKE1(LNAME("self_attn.out_proj.bias"), d);
		L->ln2_w = TAKE1(LNAME("layer_norm2.weight"), d);
		L->ln2_b = TAKE1(LNAME("layer_norm2.bias"), d);
		L->fc1_w = TAKE2(LNAME("mlp.fc1.weight"), m, d);
		L->fc1_b = TAKE1(LNAME("mlp.fc1.bias"), m);
		L->fc2_w = TAKE2(LNAME("mlp.fc2.weight"), d, m);
		L->fc2_b = TAKE1(LNAME("mlp.fc2.bias"), d);
#undef LNAME
	}
	const char *post = vision ? "post_layernorm" : "final_layer_norm";
	tw->ln_post_w = TAKE1(NAME("%s.%s.weight", pfx, post), d);
	tw->ln_post_b = TAKE1(NAME("%s.%s.bias", pfx, post), d);
	tw->proj = TAKE2(vision ? "visual_projection.weight" :
	    "text_projection.weight", embed, d);
#undef NAME
}

static int
load_weights(clip_model *m, const st_file *st, cdx_error *err)
{
	loader ld = {.st = st, .err = err};
	int embed = m->info.embed_dim;
	/* First pass checks and counts, second pass loads. */
	ld_tower(&ld, &m->text, "text_model", 0, embed);
	ld_tower(&ld, &m->vision, "vision_model", 1, embed);
	if (ld.rc != 0)
		return ld.rc;
	size_t total = ld.used;
	m->text.layers = calloc((size_t)m->text.cfg.layers, sizeof(clip_layer));
	m->vision.layers = calloc((size_t)m->vision.cfg.layers,
	    sizeof(clip_layer));
	m->arena = malloc(total * sizeof(float));
	if (m->text.layers == NULL || m->vision.layers == NULL ||
	    m->arena == NULL)
		return cdx_error_set(err, CDX_ENOMEM,
		    "out of memory for %zu MiB of weights",
		    total * sizeof(float) >> 20);
	m->arena_floats = total;
	ld.arena = m->arena;
	ld.used = 0;
	ld_tower(&ld, &m->text, "text_model", 0, embed);
	ld_tower(&ld, &m->vision, "vision_model", 1, embed);
	if (ld.rc != 0)
		return ld.rc;
	/* Attention scales q by head_dim^-0.5: fold it into q's weights and
	 * bias once (they are the first third of the fused q|k|v). */
	clip_tower *towers[2] = {&m->text, &m->vision};
	for (int i = 0; i < 2; i++) {
		const clip_tower_cfg *c = &towers[i]->cfg;
		size_t d = (size_t)c->width;
		float s = 1.0f / sqrtf((float)(c->width / c->heads));
		for (int l = 0; l < c->layers; l++) {
			float *w = (float *)towers[i]->layers[l].qkv_w;
			float *b = (float *)towers[i]->layers[l].qkv_b;
			for (size_t k = 0; k < d * d; k++)
				w[k] *= s;
			for (size_t k = 0; k < d; k++)
				b[k] *= s;
		}
	}
	return 0;
}

/* ---- tokenizer ---------------------------------------------------------- */

static int
load_tokenizer(clip_model *m, const char *dir, cdx_error *err)
{
	char vocab[PATH_MAX], merges[PATH_MAX];
	snprintf(vocab, sizeof(vocab), "%s/vocab.json", dir);
	snprintf(merges, sizeof(merges), "%s/merges.txt", dir);
	if (file_exists(vocab) && file_exists(merges))
		return clip_tokenizer_load_files(vocab, merges, &m->tok, err);
	return clip_tokenizer_load_builtin(&m->tok, err);
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
	in->quick_gelu_vision = c->vision.quick_gelu;
	in->quick_gelu_text = c->text.quick_gelu;
	clip_preprocess_cfg *p = &in->preprocess;
	p->shortest_edge = c->vision.image_size;
	p->crop_width = p->crop_height = c->vision.image_size;
	static const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
	static const float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
	memcpy(p->mean, mean, sizeof(mean));
	memcpy(p->std, std, sizeof(std));
}

static int
load_json_configs(clip_model *m, const char *dir, cdx_error *err)
{
	char path[PATH_MAX];
	char *json;
	size_t len;
	clip_config cfg;
	snprintf(path, sizeof(path), "%s/config.json", dir);
	int rc = read_small_file(path, &json, &len, err);
	if (rc != 0)
		return rc;
	rc = clip_config_parse(json, len, path, &cfg, err);
	free(json);
	if (rc != 0)
		return rc;
	m->text.cfg = cfg.text;
	m->vision.cfg = cfg.vision;
	info_fill(&m->info, &cfg);

	snprintf(path, sizeof(path), "%s/preprocessor_config.json", dir);
	if (!file_exists(path))
		return 0;
	rc = read_small_file(path, &json, &len, err);
	if (rc != 0)
		return rc;
	rc = clip_preprocess_parse(json, len, path, &m->info.preprocess, err);
	free(json);
	if (rc != 0)
		return rc;
	const clip_preprocess_cfg *p = &m->info.preprocess;
	if (p->crop_width != cfg.vision.image_size ||
	    p->crop_height != cfg.vision.image_size)
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: crop_size %dx%d differs from the model's image_size %d",
		    path, p->crop_width, p->crop_height, cfg.vision.image_size);
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

	int rc = load_json_configs(m, real, err);
	if (rc != 0)
		goto out_free_model;

	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/model.safetensors", real);
	st_file st;
	rc = st_open(&st, path, err);
	if (rc != 0)
		goto out_free_model;
	m->info.weights_hash = XXH3_64bits(st.map, st.size);
	snprintf(m->info.id, sizeof(m->info.id), "%s@%016llx", m->info.name,
	    (unsigned long long)m->info.weights_hash);
	rc = load_weights(m, &st, err);
	st_close(&st);
	if (rc != 0)
		goto out_free_model;

	rc = load_tokenizer(m, real, err);
	if (rc != 0)
		goto out_free_model;

	openblas_set_num_threads(params->n_threads > 0 ? params->n_threads :
	    1);
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
	free(m->text.layers);
	free(m->vision.layers);
	free(m->arena);
	free(m);
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
