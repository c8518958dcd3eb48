/*
 * classify.h - classifiers over embeddings: zero-shot label sets (CLIP's
 * prompts), tag sets applied to a collection, and few-shot linear probes
 * (docs/CLASSIFY.md).
 *
 * One type serves all three: a cls_set holds n labels, each with a weight
 * row of dim floats and a bias, and scores an embedding x (unit length) as
 *
 *   CLS_SOFTMAX:  p_i = softmax_i(scale * w_i . x + bias_i)   (single-label:
 *                 CLIP zero-shot, scale = exp(logit_scale), bias 0)
 *   CLS_SIGMOID:  p_i = sigmoid(scale * w_i . x + bias_i)      (multi-label:
 *                 SigLIP zero-shot with its logit_bias; a learned probe,
 *                 scale 1, w its weights, bias its intercept)
 *
 * Scoring many embeddings is one SGEMM (x: m x dim, W: n x dim) and a pass
 * per row: cls_score().  Which labels *apply* to an image (its tags) is
 * cls_applied(): with `multi` every label with p >= threshold, else the top
 * label if its p >= threshold.
 *
 * Labels and templates: a label becomes a text through a template holding
 * "{}" ("a photo of a {}."); its zero-shot weight row is the normalised
 * mean of its templates' text embeddings (cls_zero_shot(), the one file of
 * this module that needs the encoder).
 *
 * A cls_set serialises to bytes (cls_set_encode/decode) for the store; the
 * bytes are versioned and checked on decode.
 *
 * Ownership: every cls_set comes from cls_set_new(), cls_set_decode(),
 * cls_zero_shot() or cls_probe_set() and is freed with cls_set_free().
 * Thread-safety: no shared state; a cls_set may be read (scored) from any
 * number of threads at once.  Errors: CDX_* codes, with err->msg for
 * people (common/cdx.h).
 */
#ifndef CLS_CLASSIFY_H
#define CLS_CLASSIFY_H

#include <stddef.h>
#include <stdint.h>

#include "common/cdx.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CLS_MAX_LABELS   1000  /* labels in one set */
#define CLS_LABEL_MAX    128   /* bytes of one label */
#define CLS_NAME_MAX     64    /* bytes of a set's name: [A-Za-z0-9_.-] */
#define CLS_MAX_TEMPLATES 100  /* templates in one set */
#define CLS_TEMPLATE_MAX 256   /* bytes of one template */

enum cls_kind {
	CLS_SOFTMAX = 0,
	CLS_SIGMOID = 1,
};

/* What a set is for; it changes only how it is made and rebuilt. */
enum cls_origin {
	CLS_ZERO_SHOT = 0, /* text embeddings of labels x templates */
	CLS_LEARNED = 1,   /* a probe fitted on example images: one label,
	                      named as the set; pos/neg hold the examples */
};

typedef struct cls_set {
	char name[CLS_NAME_MAX + 1];
	int kind;            /* enum cls_kind */
	int origin;          /* enum cls_origin */
	int multi;           /* 1: every label at or over threshold applies */
	float threshold;     /* in [0, 1] */
	float scale;         /* multiplies w . x */
	size_t n, dim;
	char **labels;       /* n labels, NUL-terminated */
	float *w;            /* n * dim, row-major */
	float *bias;         /* n */
	size_t n_templates;
	char **templates;    /* zero-shot: the templates its rows were made
	                        from, to rebuild them for another model */
	char model_key[160]; /* clip_model_info.key of the model that made w */
	size_t n_pos, n_neg; /* learned: the example image ids */
	uint64_t *pos, *neg;
} cls_set;

/* A set with room for n labels, n_templates templates and the examples,
 * in one allocation: all zeroed (CLS_SOFTMAX, CLS_ZERO_SHOT, empty
 * strings) but scale, 1.  Strings are copied in by the caller with
 * cls_set_label/cls_set_template.  Errors: CDX_EINVAL (n 0 or over
 * CLS_MAX_LABELS, dim 0, n_templates over CLS_MAX_TEMPLATES, bad name),
 * CDX_ENOMEM. */
int cls_set_new(const char *name, size_t n, size_t dim, size_t n_templates,
		size_t n_pos, size_t n_neg, cls_set **out, cdx_error *err);
/* Frees a set; NULL is a no-op. */
void cls_set_free(cls_set *c);

/* Copies label i (i < c->n, at most CLS_LABEL_MAX bytes) / template i
 * (i < c->n_templates, as cls_template_check) into the set's own room.
 * Errors: CDX_EINVAL. */
int cls_set_label(cls_set *c, size_t i, const char *label, cdx_error *err);
int cls_set_template(cls_set *c, size_t i, const char *tmpl,
		     cdx_error *err);

/* Checks a set's name: 1..CLS_NAME_MAX bytes of [A-Za-z0-9_.-].
 * Errors: CDX_EINVAL, saying why. */
int cls_name_check(const char *name, cdx_error *err);

/* Parses a label list: comma-separated ("cat,dog,remote control"), or with
 * lines = 1 one label per line (a --labels-file; blank lines and lines
 * starting with '#' are skipped).  Labels are trimmed.  *out is one
 * allocation (an array of n pointers followed by the strings) freed with
 * free().  Errors: CDX_EINVAL for no labels, an empty label, a duplicate
 * label (named), more than CLS_MAX_LABELS, a label over CLS_LABEL_MAX
 * bytes or not UTF-8; CDX_ENOMEM. */
int cls_labels_parse(const char *text, int lines, char ***out, size_t *n,
		     cdx_error *err);

/* Checks n labels as cls_labels_parse does (after its splitting and
 * trimming): 1..CLS_MAX_LABELS labels, none empty, over CLS_LABEL_MAX
 * bytes, not UTF-8, or given twice.  Errors: CDX_EINVAL, naming the
 * label. */
int cls_labels_check(const char *const *labels, size_t n, cdx_error *err);

/* Checks a template: at most CLS_TEMPLATE_MAX bytes and at least one "{}".
 * Errors: CDX_EINVAL. */
int cls_template_check(const char *tmpl, cdx_error *err);

/* The template with every "{}" replaced by label; *out is malloc'ed.
 * Errors: CDX_EINVAL (as cls_template_check), CDX_ENOMEM. */
int cls_template_apply(const char *tmpl, const char *label, char **out,
		       cdx_error *err);

/* A named template set: "default" ("a photo of a {}.") or "imagenet"
 * (OpenAI's 80 ImageNet prompts from the CLIP repository's notebook).
 * Returns the number of templates and points *out at static strings; 0
 * for an unknown name. */
size_t cls_templates_named(const char *name, const char *const **out);

/* Scores m embeddings x (m * dim, row-major, unit length) against c:
 * prob (m * c->n, row-major) receives the probabilities, always in
 * [0, 1] (a logit that overflows counts as +-FLT_MAX, NaN as -FLT_MAX).
 * One SGEMM (OpenBLAS's threads), no allocation.  Errors: CDX_EINVAL (dim
 * mismatch, m over INT_MAX). */
int cls_score(const cls_set *c, const float *x, size_t m, size_t dim,
	      float *prob, cdx_error *err);

/* The labels that apply given one row of probabilities: their indices, at
 * most c->n, written to idx (highest probability first); returns the
 * count. */
size_t cls_applied(const cls_set *c, const float *prob, uint32_t *idx);

/* Serialisation for the store: *out is malloc'ed.  Decoding checks the
 * version and every length (CDX_ECORRUPT on any mismatch, never a read
 * past len), and refuses an empty label or one given twice (CDX_ECORRUPT:
 * a tag would be ambiguous).  Errors: CDX_ENOMEM, CDX_ECORRUPT. */
int cls_set_encode(const cls_set *c, void **out, size_t *len,
		   cdx_error *err);
int cls_set_decode(const void *buf, size_t len, cls_set **out,
		   cdx_error *err);

/* ---- few-shot probes (probe.c) ---- */

typedef struct cls_probe_opts {
	double l2;           /* L2 penalty on the weights (not the
	                        intercept); 0: the default, 1e-2 * n */
	int max_iter;        /* Newton steps; 0: 50 */
	int folds;           /* stratified cross-validation folds (2 or
	                        more); 0: 5.  Never more than the examples of
	                        the smaller class: below 5 of them, each fold
	                        holds out one (leave-one-out on that class) */
} cls_probe_opts;

typedef struct cls_probe_report {
	size_t n_pos, n_neg; /* examples used */
	int folds;           /* folds of the cross-validation run */
	double cv_accuracy;  /* mean held-out accuracy over the folds */
	int iterations;      /* Newton steps of the final fit */
} cls_probe_report;

/* Fits L2-regularised logistic regression, p = sigmoid(w . x + b), by
 * Newton's method on n examples x (n * dim, unit rows) with labels y
 * (1 positive, 0 negative), and cross-validates it.  w receives dim floats,
 * *b the intercept.  Deterministic: the same input gives the same folds
 * and result.  Time: each Newton step is about n (dim+1)^2 + (dim+1)^3/3
 * flops (docs/CLASSIFY.md has figures); memory (n + 256) (dim+1) +
 * (dim+1)^2 doubles.  Errors: CDX_EINVAL (fewer than 2 examples of
 * either class: "learning needs at least 2 positive examples", a label
 * not 0 or 1, a non-finite x, folds 1), CDX_ENOMEM, CDX_EINTERNAL (a
 * Hessian that is not positive definite: a bug). */
int cls_probe_fit(const float *x, const uint8_t *y, size_t n, size_t dim,
		  const cls_probe_opts *opts, float *w, float *b,
		  cls_probe_report *rep, cdx_error *err);

/* A learned set from a fit: CLS_LEARNED, CLS_SIGMOID, scale 1, one label
 * named as the set, bias b, threshold 0.5 unless given (a value in
 * [0, 1]; negative: 0.5), and the example ids copied.
 * Errors: as cls_set_new. */
int cls_probe_set(const char *name, const float *w, float b, size_t dim,
		  const uint64_t *pos, size_t n_pos, const uint64_t *neg,
		  size_t n_neg, float threshold, cls_set **out,
		  cdx_error *err);

/* ---- zero-shot label sets (zeroshot.c, needs the encoder) ---- */

struct clip_ctx;
struct clip_tokenizer;
struct clip_model_info;

/* Builds a zero-shot set: each label's row is the normalised mean of the
 * text embeddings of every template applied to it (n_templates 0: the
 * "default" set).  SigLIP models (info->has_sigmoid) give CLS_SIGMOID with
 * scale exp(logit_scale) and bias logit_bias, multi-label; CLIP gives
 * CLS_SOFTMAX with scale exp(logit_scale), single-label.  threshold is
 * copied.  Errors: as cls_labels_parse/cls_template_check for bad labels
 * or templates, and the encoder's. */
int cls_zero_shot(struct clip_ctx *ctx, const struct clip_tokenizer *tok,
		  const struct clip_model_info *info, const char *name,
		  const char *const *labels, size_t n,
		  const char *const *templates, size_t n_templates,
		  float threshold, cls_set **out, cdx_error *err);

#ifdef __cplusplus
}
#endif
#endif
