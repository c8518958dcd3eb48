/*
 * sptok.h - the SentencePiece tokenizers of SigLIP and SigLIP2 (private to
 * the encoder: encoder/sptok.c and encoder/tokenizer.c, which reaches them
 * through clip.h's clip_tokenizer_load_sentencepiece() and clip_tokenize()).
 * Not part of the encoder's API.
 *
 * What they do, rule by rule, and where each rule comes from in
 * transformers: docs/TOKENIZER.md.  The reference that the tests compare
 * with is tools/ref_sptok.py.
 *
 * Ownership and errors follow clip.h: results through out-parameters that
 * stay untouched on failure, CDX_E* codes with a message in err.
 * Thread-safety: an sptok is immutable after sptok_load(); any number of
 * threads may call sptok_tokenize() and the getters on it at once.
 */
#ifndef SPTOK_H
#define SPTOK_H

#include <stddef.h>
#include <stdint.h>

#include "common/cdx.h"

typedef struct sptok sptok;

/* Longest text sptok_tokenize() accepts, in bytes.  libsentencepiece
 * needs 100 to 300 bytes of memory per byte of text, and its unigram
 * encoder's time grows with the square of a run of unknown characters
 * (64 KiB of them: 0.2 s; 1 MiB: 44 s, in Python's binding too), so the
 * limit is far below the CLIP tokenizer's.  A text keeps only its first
 * context_len pieces anyway. */
#define SPTOK_MAX_TEXT (64u << 10)

/* Loads the tokenizer of the model folder `dir` (clip.h,
 * clip_tokenizer_load_sentencepiece(), says what is read and the errors).
 * The caller owns *out; free it with sptok_free(). */
int sptok_load(const char *dir, int context_len, sptok **out, cdx_error *err);

/* Frees a tokenizer; NULL is a no-op. */
void sptok_free(sptok *t);

/* CLIP_TOKENIZER_SIGLIP or CLIP_TOKENIZER_GEMMA; the ids written per text;
 * the number of pieces of the SentencePiece model (every id written is
 * below it). */
int sptok_kind(const sptok *t);
int sptok_context_len(const sptok *t);
int sptok_vocab_size(const sptok *t);

/* Tokenizes `len` bytes of UTF-8 into sptok_context_len(t) ids, padded,
 * as clip_tokenize() documents; *n_tokens (may be NULL) gets the number of
 * ids that are not padding.
 * Errors: CDX_EUTF8 (err gives the byte offset), CDX_EINVAL (NULL t or
 * ids, or NULL text with len > 0), CDX_ETOOBIG (len over SPTOK_MAX_TEXT),
 * CDX_ENOMEM, CDX_EINTERNAL (libsentencepiece failed). */
int sptok_tokenize(const sptok *t, const char *text, size_t len,
    int32_t *ids, int *n_tokens, cdx_error *err);

#endif
