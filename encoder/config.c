/*
 * config.c - Hugging Face CLIPConfig (config.json) and CLIPImageProcessor
 * (preprocessor_config.json) parsing, with transformers' defaults.
 */
#include "encoder/model_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

/* Upper bounds that keep every size computation far from overflow. */
#define CFG_DIM_MAX 65536
#define CFG_LAYERS_MAX 1024
#define CFG_VOCAB_MAX (1 << 22)

static void
cfg_text_defaults(clip_tower_cfg *t)
{
	/* transformers CLIPTextConfig */
	memset(t, 0, sizeof(*t));
	t->vocab_size = 49408;
	t->width = 512;
	t->mlp = 2048;
	t->layers = 12;
	t->heads = 8;
	t->max_positions = 77;
	t->quick_gelu = 1;
	t->eps = 1e-5f;
}

static void
cfg_vision_defaults(clip_tower_cfg *t)
{
	/* transformers CLIPVisionConfig */
	memset(t, 0, sizeof(*t));
	t->width = 768;
	t->mlp = 3072;
	t->layers = 12;
	t->heads = 12;
	t->channels = 3;
	t->image_size = 224;
	t->patch_size = 32;
	t->quick_gelu = 1;
	t->eps = 1e-5f;
}

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
	}
#undef INT_FIELD
	const cJSON *act = cJSON_GetObjectItemCaseSensitive(obj, "hidden_act");
	if (act != NULL && !cJSON_IsNull(act)) {
		if (cJSON_IsString(act) && strcmp(act->valuestring,
		    "quick_gelu") == 0)
			t->quick_gelu = 1;
		else if (cJSON_IsString(act) && strcmp(act->valuestring,
		    "gelu") == 0)
			t->quick_gelu = 0;
		else
			return cdx_error_set(err, CDX_EFORMAT,
			    "%s: %s.hidden_act '%.40s' is not supported "
			    "(quick_gelu or gelu)", path, section,
			    cJSON_IsString(act) ? act->valuestring : "?");
	}
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
		if (t->image_size % t->patch_size != 0)
			return cdx_error_set(err, CDX_EFORMAT,
			    "%s: vision_config.image_size %d is not a multiple "
			    "of patch_size %d", path, t->image_size,
			    t->patch_size);
		int g = t->image_size / t->patch_size;
		if ((long)g * g + 1 > 100000)
			return cdx_error_set(err, CDX_EFORMAT,
			    "%s: vision_config: too many patches", path);
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
	cfg_text_defaults(&c.text);
	cfg_vision_defaults(&c.vision);
	c.projection_dim = 512;
	if (!cJSON_IsObject(root)) {
		rc = cdx_error_set(err, CDX_EFORMAT, "%s: not a JSON object",
		    path);
		goto out_free_json;
	}
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
	rc = cfg_int(root, "projection_dim", 1, CFG_DIM_MAX, &c.projection_dim,
	    path, "", err);
	if (rc != 0)
		goto out_free_json;
	if ((rc = cfg_check(&c.text, 0, path, err)) != 0 ||
	    (rc = cfg_check(&c.vision, 1, path, err)) != 0)
		goto out_free_json;
	*out = c;
out_free_json:
	cJSON_Delete(root);
	return rc;
}

static int
pp_size(const cJSON *j, const char *key, const char *path, int *w, int *h,
    cdx_error *err)
{
	if (j == NULL || cJSON_IsNull(j))
		return 0;
	double dw = NAN, dh = NAN;
	if (cJSON_IsNumber(j)) {
		dw = dh = j->valuedouble;
	} else if (cJSON_IsObject(j)) {
		const cJSON *se = cJSON_GetObjectItemCaseSensitive(j,
		    "shortest_edge");
		const cJSON *jw = cJSON_GetObjectItemCaseSensitive(j, "width");
		const cJSON *jh = cJSON_GetObjectItemCaseSensitive(j, "height");
		if (cJSON_IsNumber(se)) {
			dw = dh = se->valuedouble;
		} else if (cJSON_IsNumber(jw) && cJSON_IsNumber(jh)) {
			dw = jw->valuedouble;
			dh = jh->valuedouble;
		}
	}
	if (!(dw >= 1 && dw <= CFG_DIM_MAX && dh >= 1 && dh <= CFG_DIM_MAX) ||
	    floor(dw) != dw || floor(dh) != dh)
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: %s must be a positive integer, {\"shortest_edge\"} or "
		    "{\"height\", \"width\"}", path, key);
	*w = (int)dw;
	*h = (int)dh;
	return 0;
}

static int
pp_triple(const cJSON *j, const char *key, const char *path, float v[3],
    int positive, cdx_error *err)
{
	if (j == NULL || cJSON_IsNull(j))
		return 0;
	float t[3];
	if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) != 3)
		goto bad;
	for (int i = 0; i < 3; i++) {
		const cJSON *e = cJSON_GetArrayItem(j, i);
		if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble) ||
		    (positive && !(e->valuedouble > 0)))
			goto bad;
		t[i] = (float)e->valuedouble;
	}
	memcpy(v, t, sizeof(t));
	return 0;
bad:
	return cdx_error_set(err, CDX_EFORMAT,
	    "%s: %s must be an array of 3 %snumbers", path, key,
	    positive ? "positive " : "");
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
	int w = c.shortest_edge, h = c.shortest_edge;
	rc = pp_size(cJSON_GetObjectItemCaseSensitive(root, "size"), "size",
	    path, &w, &h, err);
	if (rc != 0)
		goto out_free_json;
	c.shortest_edge = w < h ? w : h;
	rc = pp_size(cJSON_GetObjectItemCaseSensitive(root, "crop_size"),
	    "crop_size", path, &c.crop_width, &c.crop_height, err);
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
