/*
 * query_fuzz - libFuzzer target for cdx_query_parse(), the query syntax of
 * the command line and web page (common/query.c, compiled in here with
 * common/cdx.c so that the target needs neither nng nor a daemon).
 *
 *   clang -std=c11 -D_GNU_SOURCE -I. -g -O1 -fsanitize=fuzzer,address,undefined \
 *     fuzz/query_fuzz.c -o build/query_fuzz
 *   build/query_fuzz -max_len=4096 fuzz/query_seeds
 *
 * Checks the result's invariants: the only errors are CDX_EINVAL (with a
 * message) and CDX_ENOMEM; a result has 1.. terms, each of a known kind,
 * with a finite, non-zero weight and, except for ids, a non-empty string
 * with no leading or trailing space that occurs in the input.
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cdx.c"
#include "common/query.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	cdx_terms *t = NULL;
	char *q;
	int rc;

	if (size > ((size_t)1 << 16))
		return 0;
	if ((q = malloc(size + 1)) == NULL)
		return 0;
	memcpy(q, data, size);
	q[size] = '\0';
	cdx_error err = { 0, "" };
	rc = cdx_query_syntax_parse(q, &t, &err);
	if (rc != 0) {
		if ((rc != CDX_EINVAL && rc != CDX_ENOMEM) || err.msg[0] == '\0' ||
		    t != NULL)
			abort();
		free(q);
		return 0;
	}
	if (t == NULL || t->n == 0)
		abort();
	for (size_t i = 0; i < t->n; i++) {
		const cdx_term *x = &t->terms[i];
		if (!isfinite(x->weight) || x->weight == 0.0f)
			abort();
		if (x->kind == CDX_TERM_ID)
			continue;
		if (x->kind != CDX_TERM_TEXT && x->kind != CDX_TERM_FILE &&
		    x->kind != CDX_TERM_PATH && x->kind != CDX_TERM_LEARNED)
			abort();
		size_t n = strlen(x->text);
		if (n == 0 || strstr(q, x->text) == NULL)
			abort();
		if (x->kind == CDX_TERM_TEXT &&
		    (isspace((unsigned char)x->text[0]) ||
		    isspace((unsigned char)x->text[n - 1])))
			abort();
	}
	cdx_terms_free(t);
	free(q);
	return 0;
}
