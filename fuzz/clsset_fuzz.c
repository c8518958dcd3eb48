/*
 * clsset_fuzz - libFuzzer target for cls_set_decode(), the bytes of a
 * stored label set, tag set or probe (classify/classify.c), which the
 * store reads back from LMDB.
 *
 *   clang -std=c11 -D_GNU_SOURCE -I. -g -O1 -fsanitize=fuzzer,address,undefined \
 *     fuzz/clsset_fuzz.c classify/classify.c classify/templates.c \
 *     common/cdx.c -lopenblas -lm -o build/clsset_fuzz
 *   build/clsset_fuzz -max_len=65536 fuzz/clsset_seeds
 *
 * The seeds (fuzz/make_seeds.py writes them) are sets of each kind and
 * near misses.  Inputs are capped at 1 MB.
 * Invariants: a refusal is CDX_ECORRUPT (or CDX_ENOMEM) with a message
 * and no set; a decoded set keeps classify.h's limits (1..CLS_MAX_LABELS
 * labels, a valid name, labels and templates within their sizes, every
 * template with "{}", threshold in [0, 1], finite weights), encodes back
 * to exactly the input bytes, and scores an embedding to probabilities
 * in [0, 1].
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classify/classify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	cdx_error err = { 0, "" };
	cls_set *c = NULL;
	void *back = NULL;
	size_t back_len = 0;
	int rc;

	if (size > ((size_t)1 << 20))
		return 0;
	rc = cls_set_decode(data, size, &c, &err);
	if (rc != 0) {
		if ((rc != CDX_ECORRUPT && rc != CDX_ENOMEM) ||
		    err.msg[0] == '\0' || c != NULL)
			abort();
		return 0;
	}
	if (c == NULL || c->n == 0 || c->n > CLS_MAX_LABELS || c->dim == 0 ||
	    c->n_templates > CLS_MAX_TEMPLATES ||
	    cls_name_check(c->name, NULL) != 0 ||
	    !(c->threshold >= 0 && c->threshold <= 1) || !isfinite(c->scale) ||
	    (c->kind != CLS_SOFTMAX && c->kind != CLS_SIGMOID))
		abort();
	for (size_t i = 0; i < c->n; i++)
		if (strlen(c->labels[i]) > CLS_LABEL_MAX || !isfinite(c->bias[i]))
			abort();
	for (size_t i = 0; i < c->n_templates; i++)
		if (strlen(c->templates[i]) > CLS_TEMPLATE_MAX ||
		    strstr(c->templates[i], "{}") == NULL)
			abort();
	for (size_t i = 0; i < c->n * c->dim; i++)
		if (!isfinite(c->w[i]))
			abort();
	/* canonical: the bytes it came from */
	if (cls_set_encode(c, &back, &back_len, &err) != 0 || back_len != size ||
	    memcmp(back, data, size) != 0)
		abort();
	free(back);
	/* scoring: one embedding along the first axis */
	float *x = calloc(c->dim, sizeof(float)), *p = malloc(c->n * sizeof(float));
	if (x != NULL && p != NULL) {
		x[0] = 1;
		if (cls_score(c, x, 1, c->dim, p, &err) != 0)
			abort();
		for (size_t i = 0; i < c->n; i++)
			if (!(p[i] >= 0 && p[i] <= 1))
				abort();
	}
	free(x);
	free(p);
	cls_set_free(c);
	return 0;
}
