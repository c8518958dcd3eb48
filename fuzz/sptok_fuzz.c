/*
 * sptok_fuzz - libFuzzer target for clip_tokenize() on the SentencePiece
 * tokenizers (encoder/sptok.c, encoder/spm_c.cpp): UTF-8 decoding,
 * SigLIP's lower-casing and canonicalisation, the added-token split with
 * its strip rules, libsentencepiece, truncation and padding.  Every input
 * goes through the SigLIP and the SigLIP2 fixture tokenizers
 * (tests/fixtures/spm/siglip, siglip2, with 64 positions), loaded once.
 *
 * `make fuzz` builds and runs it (FUZZ_SECONDS, seeds fuzz/sptok_seeds,
 * dictionary fuzz/sptok.dict), from the repository root, where the
 * fixtures are.  By hand, after `make fuzz` has built build-fuzz/:
 *
 *   build-fuzz/sptok_fuzz -max_len=65536 -dict=fuzz/sptok.dict \
 *     build-fuzz/corpus-sptok_fuzz fuzz/sptok_seeds
 *
 * Checks the output's invariants: the only error is CDX_EUTF8; a result
 * is 1..64 ids of the vocabulary that end with EOS (</s>, <eos>: 1),
 * then padding (</s> = 1, <pad> = 0).  Inputs are capped at 64 KiB, the
 * tokenizers' limit.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "encoder/clip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct {
	const char *dir;
	int32_t eos, pad;
} kinds[2] = {
	{ "tests/fixtures/spm/siglip", 1, 1 },
	{ "tests/fixtures/spm/siglip2", 1, 0 },
};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static clip_tokenizer *tok[2];
	cdx_error err;

	if (size > ((size_t)64 << 10))
		return 0;
	for (int k = 0; k < 2; k++) {
		int32_t ids[CLIP_CONTEXT_LEN];
		int n = -1, rc, ctx, vocab;
		if (!tok[k] && clip_tokenizer_load_sentencepiece(kinds[k].dir,
		    64, &tok[k], &err) != 0)
			abort();
		ctx = clip_tokenizer_context_len(tok[k]);
		vocab = clip_tokenizer_vocab_size(tok[k]);
		rc = clip_tokenize(tok[k], (const char *)data, size, ids, &n,
		    &err);
		if (rc == CDX_EUTF8)
			return 0;
		if (rc != 0 || ctx != 64 || n < 1 || n > ctx)
			abort();
		if (ids[n - 1] != kinds[k].eos)
			abort();
		for (int i = 0; i < ctx; i++)
			if (ids[i] < 0 || ids[i] >= vocab ||
			    (i >= n && ids[i] != kinds[k].pad))
				abort();
	}
	return 0;
}
