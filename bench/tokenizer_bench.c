/*
 * tokenizer_bench - the CLIP tokenizer: loading the built-in vocabulary, and
 * tokenizing a short query (about 8 tokens), a text that fills all 77
 * positions, one long word (BPE on 4 KB), and every text of the test corpus
 * (tests/fixtures/tokenizer/corpus.jsonl, when run from the repository root).
 *
 * Prints medians of several runs.  Single-threaded.  Targets (issue 3 and
 * the tokenizer brief): loading well under 100 ms, a 77-token text in
 * microseconds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "encoder/clip.h"

static double
now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double
median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return v[n / 2];
}

/* Median microseconds per call of tokenizing `text`, `reps` calls a run. */
static double
time_text(const clip_tokenizer *tok, const char *text, size_t len, int reps,
    int *ntok)
{
	double runs[9];
	int32_t ids[CLIP_CONTEXT_LEN];
	cdx_error err;

	for (int r = 0; r < 9; r++) {
		double t0 = now_us();
		for (int i = 0; i < reps; i++) {
			if (clip_tokenize(tok, text, len, ids, ntok, &err) != 0) {
				fprintf(stderr, "tokenize: %s\n", err.msg);
				exit(1);
			}
		}
		runs[r] = (now_us() - t0) / reps;
	}
	return median(runs, 9);
}

static void
bench_corpus(const clip_tokenizer *tok)
{
	FILE *f = fopen("tests/fixtures/tokenizer/corpus.jsonl", "r");
	char *line = NULL, **texts = NULL;
	size_t cap = 0, n = 0, bytes = 0;
	double runs[5];

	if (!f) {
		printf("corpus: tests/fixtures/tokenizer/corpus.jsonl not found "
		    "(run from the repository root); skipped\n");
		return;
	}
	while (getline(&line, &cap, f) > 0) {
		cJSON *j = cJSON_Parse(line);
		cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "text");
		char **nt = realloc(texts, (n + 1) * sizeof(*texts));
		if (!nt || !cJSON_IsString(t))
			exit(1);
		texts = nt;
		texts[n] = strdup(t->valuestring);
		bytes += strlen(texts[n]);
		n++;
		cJSON_Delete(j);
	}
	free(line);
	fclose(f);
	for (int r = 0; r < 5; r++) {
		double t0 = now_us();
		for (size_t i = 0; i < n; i++) {
			int32_t ids[CLIP_CONTEXT_LEN];
			clip_tokenize(tok, texts[i], strlen(texts[i]), ids, NULL,
			    NULL);
		}
		runs[r] = now_us() - t0;
	}
	double us = median(runs, 5);
	printf("corpus: %zu texts (%zu bytes): %.0f us, %.2f us/text, "
	    "%.0f MB/s\n", n, bytes, us, us / (double)n, (double)bytes / us);
	for (size_t i = 0; i < n; i++)
		free(texts[i]);
	free(texts);
}

int
main(void)
{
	static const char *const shortq = "a photo of a dog playing in the snow";
	static const char *const full =
	    "A crowded street market at dusk, with colourful awnings, hanging "
	    "lanterns, piles of oranges and lemons, a man selling grilled corn, "
	    "children chasing a red balloon, scooters parked along the curb, "
	    "neon signs reflecting in puddles after the rain, and a cat asleep "
	    "on a stack of newspapers beside the fruit stall, while an old "
	    "woman counts coins.";
	clip_tokenizer *tok = NULL;
	cdx_error err;
	double loads[11];
	char *word;
	int ntok;

	for (int r = 0; r < 11; r++) {
		double t0 = now_us();
		if (clip_tokenizer_load_builtin(&tok, &err) != 0) {
			fprintf(stderr, "load: %s\n", err.msg);
			return 1;
		}
		loads[r] = now_us() - t0;
		if (r < 10)
			clip_tokenizer_free(tok);
	}
	printf("load built-in vocabulary: %.1f ms (target: well under 100 ms)\n",
	    median(loads, 11) / 1e3);

	double us = time_text(tok, shortq, strlen(shortq), 20000, &ntok);
	printf("short query (%d ids with start/end): %.2f us\n", ntok, us);
	us = time_text(tok, full, strlen(full), 5000, &ntok);
	printf("full text (%d ids, %zu bytes): %.2f us (target: microseconds)\n",
	    ntok, strlen(full), us);

	word = malloc(4097);
	if (!word)
		return 1;
	for (int i = 0; i < 4096; i++)
		word[i] = "etaoinshrdlu"[(i * 7 + i / 5) % 12];
	word[4096] = '\0';
	us = time_text(tok, word, 4096, 200, &ntok);
	printf("one 4096-letter word: %.1f us\n", us);
	free(word);

	bench_corpus(tok);
	clip_tokenizer_free(tok);
	return 0;
}
