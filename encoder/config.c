/*
 * config.c - Hugging Face CLIPConfig (config.json) and CLIPImageProcessor
 * (preprocessor_config.json) parsing, with transformers' defaults.
 */
#include "encoder/model_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Upper bounds that keep every size computation far from overflow. */
#define CFG_DIM_MAX 65536
#define CFG_LAYERS_MAX 1024
#define CFG_VOCAB_MAX (1 << 22)

static void
cfg_text_defaults(clip_tower_cfg *t, int family)
{
	memset(t, 0, sizeof(*t));
	if (family == CLIP_FAMILY_SIGLIP) {
		/* transformers SiglipTextConfig (configuration_siglip.py) */
		t->vocab_size = 32000;
		t->width = 768;
		t->mlp = 3072;
		t->layers = 12;
		t->heads = 12;
		t->max_positions = 64;
		t->act = CLIP_ACT_GELU_TANH;
		t->eps = 1e-6f;
		t->projection = 0;      /* None: the hidden size */
		return;
	}
	/* transformers CLIPTextConfig */
	t->vocab_size = 49408;
	t->width = 512;
	t->mlp = 2048;
	t->layers = 12;
	t->heads = 8;
	t->max_positions = 77;
	t->act = CLIP_ACT_QUICK_GELU;
	t->eps = 1e-5f;
}

static void
cfg_vision_defaults(clip_tower_cfg *t, int family)
{
	memset(t, 0, sizeof(*t));
	t->width = 768;
	t->mlp = 3072;
	t->layers = 12;
	t->heads = 12;
	t->channels = 3;
	t->image_size = 224;
	if (family == CLIP_FAMILY_SIGLIP) {
		/* transformers SiglipVisionConfig */
		t->patch_size = 16;
		t->act = CLIP_ACT_GELU_TANH;
		t->eps = 1e-6f;
		return;
	}
	/* transformers CLIPVisionConfig */
	t->patch_size = 32;
	t->act = CLIP_ACT_QUICK_GELU;
	t->eps = 1e-5f;
}

/* hidden_act names transformers' ACT2FN maps to the functions we run. */
static const struct {
	const char *name;
	int act;
} cfg_acts[] = {
	{"quick_gelu", CLIP_ACT_QUICK_GELU},
	{"gelu", CLIP_ACT_GELU},
	{"gelu_pytorch_tanh", CLIP_ACT_GELU_TANH},
	{"gelu_new", CLIP_ACT_GELU_TANH},   /* the same tanh formula */
};

static int
cfg_int(const cJSON *obj, const char *key, int lo, int hi, int *out,
    const char *path, const char *section, cdx_error *err)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (j == NULL || cJSON_IsNull(j))
		return 0;
	double d = cJSON_IsNumber(j) ? j->valuedouble : NAN;
	if (!(d >= lo && d <= hi) || floor(d) != d)
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: %s%s%s must be an integer in [%d, %d]", path,
		    section, *section ? "." : "", key, lo, hi);
	*out = (int)d;
	return 0;
}

static int
cfg_tower(const cJSON *obj, clip_tower_cfg *t, int vision, const char *path,
    const char *section, cdx_error *err)
{
	int rc;
	if (obj == NULL || cJSON_IsNull(obj))
		return 0;
	if (!cJSON_IsObject(obj))
		return cdx_error_set(err, CDX_EFORMAT, "%s: %s is not an object",
		    path, section);
#define INT_FIELD(key, lo, hi, field) \
	if ((rc = cfg_int(obj, key, lo, hi, &t->field, path, section, err)) != 0) \
		return rc
	INT_FIELD("hidden_size", 1, CFG_DIM_MAX, width);
	INT_FIELD("intermediate_size", 1, CFG_DIM_MAX, mlp);
	INT_FIELD("num_hidden_layers", 1, CFG_LAYERS_MAX, layers);
	INT_FIELD("num_attention_heads", 1, CFG_DIM_MAX, heads);
	if (vision) {
		INT_FIELD("image_size", 1, CFG_DIM_MAX, image_size);
		INT_FIELD("patch_size", 1, CFG_DIM_MAX, patch_size);
		INT_FIELD("num_channels", 1, 16, channels);
	} else {
		INT_FIELD("max_position_embeddings", 1, CFG_DIM_MAX,
		    max_positions);
		INT_FIELD("vocab_size", 1, CFG_VOCAB_MAX, vocab_size);
		INT_FIELD("projection_size", 1, CFG_DIM_MAX, projection);
	}
#undef INT_FIELD
	const cJSON *act = cJSON_GetObjectItemCaseSensitive(obj, "hidden_act");
	if (act != NULL && !cJSON_IsNull(act)) {
		size_t i = 0, n = sizeof(cfg_acts) / sizeof(cfg_acts[0]);
		while (i < n && !(cJSON_IsString(act) &&
		    strcmp(act->valuestring, cfg_acts[i].name) == 0))
			i++;
		if (i == n)
			return cdx_error_set(err, CDX_EFORMAT,
			    "%s: %s.hidden_act '%.40s' is not supported "
			    "(quick_gelu, gelu, gelu_pytorch_tanh or gelu_new)",
			    path, section,
			    cJSON_IsString(act) ? act->valuestring : "?");
		t->act = cfg_acts[i].act;
	}
	const cJSON *head = cJSON_GetObjectItemCaseSensitive(obj,
	    "vision_use_head");
	if (vision && head != NULL && !cJSON_IsNull(head) &&
	    !cJSON_IsTrue(head))
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: %s.vision_use_head must be true (the embedding is the "
		    "attention-pooling head's output)", path, section);
	const cJSON *eps = cJSON_GetObjectItemCaseSensitive(obj,
	    "layer_norm_eps");
	if (eps != NULL && !cJSON_IsNull(eps)) {
		if (!cJSON_IsNumber(eps) || !(eps->valuedouble > 0.0 &&
		    eps->valuedouble < 1.0))
			return cdx_error_set(err, CDX_EFORMAT,
			    "%s: %s.layer_norm_eps must be a number in (0, 1)",
			    path, section);
		t->eps = (float)eps->valuedouble;
	}
	return 0;
}

static int
cfg_check(const clip_tower_cfg *t, int vision, const char *path,
    cdx_error *err)
{
	const char *s = vision ? "vision_config" : "text_config";
	if (t->width % t->heads != 0)
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: %s.hidden_size %d is not a multiple of "
		    "num_attention_heads %d", path, s, t->width, t->heads);
	if (vision) {
		if (t->channels != 3)
			return cdx_error_set(err, CDX_EFORMAT,
			    "%s: vision_config.num_channels %d is not supported "
			    "(3)", path, t->channels);
		/* The patch convolution is "valid" with stride patch_size:
		 * (image_size // patch_size)^2 patches, the remainder unread
		 * (siglip-so400m-patch14-384: 27 x 27 patches of 14). */
		if (t->image_size < t->patch_size)
			return cdx_error_set(err, CDX_EFORMAT,
			    "%s: vision_config.image_size %d is smaller than "
			    "patch_size %d", path, t->image_size,
			    t->patch_size);
		int g = t->image_size / t->patch_size;
		if ((long)g * g + 1 > 100000)
			return cdx_error_set(err, CDX_EFORMAT,
			    "%s: vision_config: too many patches", path);
	}
	return 0;
}

/* The family from model_type, else from architectures, else CLIP (old
 * CLIP folders carry neither).  Returns 0 or CDX_EFORMAT. */
static int
cfg_family(const cJSON *root, const char *path, int *family, cdx_error *err)
{
	const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
	if (mt != NULL && !cJSON_IsNull(mt)) {
		const char *v = cJSON_IsString(mt) ? mt->valuestring : "?";
		if (strcmp(v, "clip") == 0) {
			*family = CLIP_FAMILY_CLIP;
		} else if (strcmp(v, "siglip") == 0) {
			*family = CLIP_FAMILY_SIGLIP;
		} else if (strcmp(v, "siglip2") == 0) {
			return cdx_error_set(err, CDX_EFORMAT,
			    "%s: model_type \"siglip2\" is a SigLIP2 NaFlex "
			    "checkpoint (variable patch grids), which is not "
			    "supported; use a FixRes SigLIP2 folder (e.g. "
			    "google/siglip2-base-patch16-224, model_type "
			    "\"siglip\")", path);
		} else {
			return cdx_error_set(err, CDX_EFORMAT,
			    "%s: model_type \"%.40s\" is not supported (clip or "
			    "siglip)", path, v);
		}
		return 0;
	}
	*family = CLIP_FAMILY_CLIP;
	const cJSON *arch = cJSON_GetObjectItemCaseSensitive(root,
	    "architectures");
	const cJSON *a;
	if (cJSON_IsArray(arch)) {
		cJSON_ArrayForEach(a, arch) {
			if (cJSON_IsString(a) && strncmp(a->valuestring,
			    "Siglip", 6) == 0)
				*family = CLIP_FAMILY_SIGLIP;
		}
	}
	return 0;
}

int
clip_config_parse(const char *json, size_t len, const char *path,
    clip_config *out, cdx_error *err)
{
	int rc;
	cJSON *root = cJSON_ParseWithLength(json, len);
	if (root == NULL)
		return cdx_error_set(err, CDX_EFORMAT, "%s: not valid JSON",
		    path);
	clip_config c;
	if (!cJSON_IsObject(root)) {
		rc = cdx_error_set(err, CDX_EFORMAT, "%s: not a JSON object",
		    path);
		goto out_free_json;
	}
	rc = cfg_family(root, path, &c.family, err);
	if (rc != 0)
		goto out_free_json;
	cfg_text_defaults(&c.text, c.family);
	cfg_vision_defaults(&c.vision, c.family);
	c.projection_dim = 512;
	/* As CLIPConfig.__init__: *_config_dict entries override *_config
	 * entries; the merged section is then read. */
	static const char *const sections[2][2] = {
		{"text_config", "text_config_dict"},
		{"vision_config", "vision_config_dict"},
	};
	for (int i = 0; i < 2; i++) {
		const cJSON *base = cJSON_GetObjectItemCaseSensitive(root,
		    sections[i][0]);
		const cJSON *over = cJSON_GetObjectItemCaseSensitive(root,
		    sections[i][1]);
		const char *bad = NULL;
		if (base != NULL && !cJSON_IsNull(base) && !cJSON_IsObject(base))
			bad = sections[i][0];
		if (over != NULL && !cJSON_IsNull(over) && !cJSON_IsObject(over))
			bad = sections[i][1];
		if (bad != NULL) {
			rc = cdx_error_set(err, CDX_EFORMAT,
			    "%s: %s is not an object", path, bad);
			goto out_free_json;
		}
		cJSON *merged = cJSON_IsObject(base) ?
		    cJSON_Duplicate(base, 1) : cJSON_CreateObject();
		if (merged == NULL) {
			rc = cdx_error_set(err, CDX_ENOMEM, "out of memory");
			goto out_free_json;
		}
		const cJSON *it;
		int oom = 0;
		if (cJSON_IsObject(over)) {
			cJSON_ArrayForEach(it, over) {
				cJSON *dup = cJSON_Duplicate(it, 1);
				if (dup == NULL) {
					oom = 1;
					break;
				}
				cJSON_DeleteItemFromObjectCaseSensitive(merged,
				    it->string);
				cJSON_AddItemToObject(merged, it->string, dup);
			}
		}
		rc = oom ? cdx_error_set(err, CDX_ENOMEM, "out of memory") :
		    cfg_tower(merged, i == 0 ? &c.text : &c.vision, i == 1,
		    path, sections[i][0], err);
		cJSON_Delete(merged);
		if (rc != 0)
			goto out_free_json;
	}
	if ((rc = cfg_check(&c.text, 0, path, err)) != 0 ||
	    (rc = cfg_check(&c.vision, 1, path, err)) != 0)
		goto out_free_json;
	if (c.family == CLIP_FAMILY_CLIP) {
		rc = cfg_int(root, "projection_dim", 1, CFG_DIM_MAX,
		    &c.projection_dim, path, "", err);
		if (rc != 0)
			goto out_free_json;
	} else {
		/* No projection: the image embedding is the vision hidden
		 * state; the text head maps onto it. */
		if (c.text.projection == 0)
			c.text.projection = c.text.width;
		c.projection_dim = c.vision.width;
		if (c.text.projection != c.vision.width) {
			rc = cdx_error_set(err, CDX_EFORMAT,
			    "%s: text_config.projection_size %d differs from "
			    "vision_config.hidden_size %d (the embeddings must "
			    "have one length)", path, c.text.projection,
			    c.vision.width);
			goto out_free_json;
		}
	}
	*out = c;
out_free_json:
	cJSON_Delete(root);
	return rc;
}

/* A size: a number, {"shortest_edge"} or {"height", "width"} into *w and
 * *h; with hw_only (SiglipImageProcessor, which reads size["height"] and
 * size["width"]) only the last. */
static int
pp_size(const cJSON *j, const char *key, const char *path, int *w, int *h,
    int hw_only, cdx_error *err)
{
	if (j == NULL || cJSON_IsNull(j))
		return 0;
	double dw = NAN, dh = NAN;
	if (cJSON_IsNumber(j) && !hw_only) {
		dw = dh = j->valuedouble;
	} else if (cJSON_IsObject(j)) {
		const cJSON *se = cJSON_GetObjectItemCaseSensitive(j,
		    "shortest_edge");
		const cJSON *jw = cJSON_GetObjectItemCaseSensitive(j, "width");
		const cJSON *jh = cJSON_GetObjectItemCaseSensitive(j, "height");
		if (cJSON_IsNumber(se) && !hw_only) {
			dw = dh = se->valuedouble;
		} else if (cJSON_IsNumber(jw) && cJSON_IsNumber(jh)) {
			dw = jw->valuedouble;
			dh = jh->valuedouble;
		}
	}
	if (!(dw >= 1 && dw <= CFG_DIM_MAX && dh >= 1 && dh <= CFG_DIM_MAX) ||
	    floor(dw) != dw || floor(dh) != dh)
		return cdx_error_set(err, CDX_EFORMAT, hw_only ?
		    "%s: %s must be {\"height\", \"width\"} with positive "
		    "integers" : "%s: %s must be a positive integer, "
		    "{\"shortest_edge\"} or {\"height\", \"width\"}", path, key);
	*w = (int)dw;
	*h = (int)dh;
	return 0;
}

/* Three floats, or one number for all channels (as HF's normalize). */
static int
pp_triple(const cJSON *j, const char *key, const char *path, float v[3],
    int positive, cdx_error *err)
{
	if (j == NULL || cJSON_IsNull(j))
		return 0;
	float t[3];
	int scalar = cJSON_IsNumber(j);
	if (!scalar && (!cJSON_IsArray(j) || cJSON_GetArraySize(j) != 3))
		goto bad;
	for (int i = 0; i < 3; i++) {
		const cJSON *e = scalar ? j : cJSON_GetArrayItem(j, i);
		if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble) ||
		    (positive && !(e->valuedouble > 0)))
			goto bad;
		t[i] = (float)e->valuedouble;
	}
	memcpy(v, t, sizeof(t));
	return 0;
bad:
	return cdx_error_set(err, CDX_EFORMAT,
	    "%s: %s must be a %snumber or an array of 3", path, key,
	    positive ? "positive " : "");
}

/* A do_* switch clipdex always performs: absent, null or true. */
static int
pp_always(const cJSON *root, const char *key, const char *path,
    cdx_error *err)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
	if (j == NULL || cJSON_IsNull(j) || cJSON_IsTrue(j))
		return 0;
	if (cJSON_IsFalse(j))
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: %s false is not supported (clipdex always does this "
		    "step)", path, key);
	return cdx_error_set(err, CDX_EFORMAT, "%s: %s must be true or false",
	    path, key);
}

/* "resample": Pillow's filter number; 2 (bilinear) and 3 (bicubic) are
 * implemented. */
static int
pp_resample(const cJSON *j, const char *path, int *out, cdx_error *err)
{
	if (j == NULL || cJSON_IsNull(j))
		return 0;
	if (cJSON_IsNumber(j) && (j->valuedouble == CLIP_RESAMPLE_BILINEAR ||
	    j->valuedouble == CLIP_RESAMPLE_BICUBIC)) {
		*out = (int)j->valuedouble;
		return 0;
	}
	if (cJSON_IsNumber(j))
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: resample %g is not supported (2: bilinear, 3: "
		    "bicubic)", path, j->valuedouble);
	return cdx_error_set(err, CDX_EFORMAT,
	    "%s: resample must be a number (2: bilinear, 3: bicubic)", path);
}

/* "rescale_factor": only 1/255 (the preprocessing multiplies by 1/255). */
static int
pp_rescale(const cJSON *j, const char *path, cdx_error *err)
{
	if (j == NULL || cJSON_IsNull(j))
		return 0;
	if (!cJSON_IsNumber(j))
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: rescale_factor must be a number", path);
	if (!(fabs(j->valuedouble - 1.0 / 255.0) <= 1e-9))
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: rescale_factor %g is not supported (only 1/255)", path,
		    j->valuedouble);
	return 0;
}

int
clip_preprocess_parse(const char *json, size_t len, const char *path,
    clip_preprocess_cfg *out, cdx_error *err)
{
	int rc;
	cJSON *root = cJSON_ParseWithLength(json, len);
	if (root == NULL)
		return cdx_error_set(err, CDX_EFORMAT, "%s: not valid JSON",
		    path);
	clip_preprocess_cfg c = *out;
	if (!cJSON_IsObject(root)) {
		rc = cdx_error_set(err, CDX_EFORMAT, "%s: not a JSON object",
		    path);
		goto out_free_json;
	}
	const cJSON *size = cJSON_GetObjectItemCaseSensitive(root, "size");
	if (c.mode == CLIP_RESIZE_SQUASH) {
		/* SiglipImageProcessor: resize to (height, width); it has no
		 * crop (a crop_size entry is ignored, as HF ignores it). */
		rc = pp_size(size, "size", path, &c.crop_width, &c.crop_height,
		    1, err);
		if (rc != 0)
			goto out_free_json;
	} else {
		int w = c.shortest_edge, h = c.shortest_edge;
		rc = pp_size(size, "size", path, &w, &h, 0, err);
		if (rc != 0)
			goto out_free_json;
		c.shortest_edge = w < h ? w : h;
		rc = pp_size(cJSON_GetObjectItemCaseSensitive(root,
		    "crop_size"), "crop_size", path, &c.crop_width,
		    &c.crop_height, 0, err);
		if (rc != 0)
			goto out_free_json;
		rc = pp_always(root, "do_center_crop", path, err);
		if (rc != 0)
			goto out_free_json;
	}
	if ((rc = pp_always(root, "do_resize", path, err)) != 0 ||
	    (rc = pp_always(root, "do_rescale", path, err)) != 0 ||
	    (rc = pp_always(root, "do_normalize", path, err)) != 0)
		goto out_free_json;
	rc = pp_resample(cJSON_GetObjectItemCaseSensitive(root, "resample"),
	    path, &c.resample, err);
	if (rc != 0)
		goto out_free_json;
	rc = pp_rescale(cJSON_GetObjectItemCaseSensitive(root,
	    "rescale_factor"), path, err);
	if (rc != 0)
		goto out_free_json;
	rc = pp_triple(cJSON_GetObjectItemCaseSensitive(root, "image_mean"),
	    "image_mean", path, c.mean, 0, err);
	if (rc != 0)
		goto out_free_json;
	rc = pp_triple(cJSON_GetObjectItemCaseSensitive(root, "image_std"),
	    "image_std", path, c.std, 1, err);
	if (rc != 0)
		goto out_free_json;
	*out = c;
out_free_json:
	cJSON_Delete(root);
	return rc;
}

void
clip_preprocess_log_defaults(const char *path, const clip_preprocess_cfg *c)
{
	char resize[96];

	if (c->mode == CLIP_RESIZE_SQUASH)
		snprintf(resize, sizeof(resize), "resize to %dx%d",
		    c->crop_width, c->crop_height);
	else
		snprintf(resize, sizeof(resize), "shortest edge %d, centre crop "
		    "%dx%d", c->shortest_edge, c->crop_width, c->crop_height);
	cdx_log(CDX_LOG_INFO, "%s not found; assuming the %s defaults: %s, "
	    "%s, mean %.4g %.4g %.4g, std %.4g %.4g %.4g", path,
	    c->mode == CLIP_RESIZE_SQUASH ? "SigLIP" : "CLIP", resize,
	    c->resample == CLIP_RESAMPLE_BILINEAR ? "bilinear" : "bicubic",
	    c->mean[0], c->mean[1], c->mean[2], c->std[0], c->std[1],
	    c->std[2]);
}
