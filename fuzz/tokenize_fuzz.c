/*
 * tokenize_fuzz - libFuzzer target for clip_tokenize() on arbitrary bytes
 * (UTF-8 decoding, HTML unescaping, lower-casing, pre-tokenizer, BPE).
 *
 *   clang -std=c11 -D_GNU_SOURCE -I. -g -O1 -fsanitize=fuzzer,address,undefined \
 *     fuzz/tokenize_fuzz.c encoder/tokenizer.c encoder/tokenizer_vocab.c \
 *     encoder/unicode_tables.c common/cdx.c common/file.c -lcjson -lz \
 *     -o build/tokenize_fuzz
 *   build/tokenize_fuzz -max_len=4096 -dict=fuzz/tokenize.dict \
 *     fuzz/tokenize_seeds
 *
 * (Compile from the repository root: the vocabulary is embedded with a
 * path relative to it.)  Checks the output's invariants: the only error is
 * CDX_EUTF8; a result is start, 0..75 ids of the vocabulary, end, and end
 * padding.  Inputs are capped at 64 KB.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "encoder/clip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static clip_tokenizer *tok;
	int32_t ids[CLIP_CONTEXT_LEN];
	cdx_error err;
	int n = -1, rc;

	if (!tok && clip_tokenizer_load_builtin(&tok, &err) != 0)
		abort();
	if (size > ((size_t)1 << 16))
		return 0;
	rc = clip_tokenize(tok, (const char *)data, size, ids, &n, &err);
	if (rc == CDX_EUTF8)
		return 0;
	if (rc != 0 || n < 2 || n > CLIP_CONTEXT_LEN)
		abort();
	if (ids[0] != CLIP_TOKEN_SOT || ids[n - 1] != CLIP_TOKEN_EOT)
		abort();
	for (int k = 1; k < CLIP_CONTEXT_LEN; k++)
		if (ids[k] < 0 || ids[k] > CLIP_TOKEN_EOT ||
		    (k >= n && ids[k] != CLIP_TOKEN_EOT))
			abort();
	return 0;
}
