/*
 * zeroshot.c - a zero-shot label set from the text tower (classify.h,
 * cls_zero_shot): every template applied to every label, encoded in
 * batches, each label's row the normalised mean of its templates' text
 * embeddings (the CLIP paper's prompt ensembling).  The one file of the
 * module that calls the encoder.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classify/classify.h"
#include "common/vec.h"
#include "encoder/clip.h"

/* Texts tokenized and encoded at once. */
#define TEXT_BATCH 64

int cls_zero_shot(struct clip_ctx *ctx, const struct clip_tokenizer *tok,
		  const struct clip_model_info *info, const char *name,
		  const char *const *labels, size_t n,
		  const char *const *templates, size_t n_templates,
		  float threshold, cls_set **out, cdx_error *err)
{
	size_t dim, ctxlen, total;
	int32_t *ids = NULL;
	float *emb = NULL;
	cls_set *c = NULL;
	int rc;

	if (!ctx || !tok || !info || !out)
		return cdx_error_set(err, CDX_EINVAL, "no model");
	rc = cls_labels_check(labels, n, err);
	if (rc)
		return rc;
	if (n_templates == 0)
		n_templates = cls_templates_named("default", &templates);
	if (!templates || n_templates > CLS_MAX_TEMPLATES)
		return cdx_error_set(err, CDX_EINVAL,
				     "%zu templates: 1 to %d", n_templates,
				     CLS_MAX_TEMPLATES);
	if (!(threshold >= 0 && threshold <= 1))
		return cdx_error_set(err, CDX_EINVAL,
				     "threshold %g is not in [0, 1]",
				     (double)threshold);
	if (info->embed_dim <= 0 ||
	    clip_tokenizer_context_len(tok) != info->context_len)
		return cdx_error_set(err, CDX_EINVAL,
				     "the tokenizer is not the model's");
	dim = (size_t)info->embed_dim;
	ctxlen = (size_t)info->context_len;

	rc = cls_set_new(name, n, dim, n_templates, 0, 0, &c, err);
	if (rc)
		return rc;
	for (size_t j = 0; j < n_templates; j++) {
		rc = cls_set_template(c, j, templates[j], err);
		if (rc)
			goto out_free;
	}
	for (size_t i = 0; i < n; i++) {
		rc = cls_set_label(c, i, labels[i], err);
		if (rc)
			goto out_free;
	}
	ids = malloc(sizeof(int32_t) * ctxlen * TEXT_BATCH);
	emb = malloc(sizeof(float) * dim * TEXT_BATCH);
	if (!ids || !emb) {
		rc = cdx_error_set(err, CDX_ENOMEM, "zero-shot buffers");
		goto out_free;
	}

	/* text t is template t % n_templates applied to label
	 * t / n_templates; its embedding is added to that label's row */
	total = n * n_templates;
	for (size_t t0 = 0; t0 < total; t0 += TEXT_BATCH) {
		size_t k = total - t0 < TEXT_BATCH ? total - t0 : TEXT_BATCH;

		for (size_t j = 0; j < k; j++) {
			size_t t = t0 + j;
			const char *label = c->labels[t / n_templates];
			char *text = NULL;

			rc = cls_template_apply(c->templates[t % n_templates],
						label, &text, err);
			if (rc)
				goto out_free;
			rc = clip_tokenize(tok, text, strlen(text),
					   ids + j * ctxlen, NULL, err);
			free(text);
			if (rc)
				goto out_free;
		}
		rc = clip_encode_text(ctx, ids, (int)k, emb, err);
		if (rc)
			goto out_free;
		for (size_t j = 0; j < k; j++) {
			float *row = c->w + ((t0 + j) / n_templates) * dim;
			for (size_t d = 0; d < dim; d++)
				row[d] += emb[j * dim + d];
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (cdx_vec_normalise(c->w + i * dim, (int)dim) != 0) {
			rc = cdx_error_set(err, CDX_EINVAL,
					   "label '%s': its templates' "
					   "embeddings cancel out",
					   c->labels[i]);
			goto out_free;
		}
	}

	c->origin = CLS_ZERO_SHOT;
	c->scale = expf(info->logit_scale);
	c->threshold = threshold;
	if (info->has_sigmoid) {
		c->kind = CLS_SIGMOID;
		c->multi = 1;
		for (size_t i = 0; i < n; i++)
			c->bias[i] = info->logit_bias;
	} else {
		c->kind = CLS_SOFTMAX;
		c->multi = 0;
	}
	snprintf(c->model_key, sizeof(c->model_key), "%s", info->key);
	free(ids);
	free(emb);
	*out = c;
	return 0;

out_free:
	free(ids);
	free(emb);
	cls_set_free(c);
	return rc;
}
