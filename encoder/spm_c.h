/*
 * spm_c.h - a C shim over Debian's libsentencepiece (private to the
 * encoder: encoder/spm_c.cpp, encoder/sptok.c).  Not part of the encoder's
 * API.
 *
 * Only what the SigLIP / SigLIP2 tokenizers need: load a model from the
 * bytes of a .model file, encode UTF-8 text into pieces, and look pieces
 * and ids up.  No C++ type or exception crosses this boundary: every
 * function catches everything and returns a CDX_E* code with a message that
 * names the model (the `name` given at load, normally its path).
 *
 * Thread-safety: a loaded spm_model is immutable; any number of threads may
 * call the const functions on it at once (SentencePieceProcessor's Encode
 * and look-ups are const and keep no state between calls).
 *
 * Logging: nothing is printed.  libsentencepiece logs only at load, for
 * failed self-tests (which spm_model_load reports as an error instead).
 */
#ifndef SPM_C_H
#define SPM_C_H

#include <stddef.h>
#include <stdint.h>

#include "common/cdx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct spm_model spm_model;

/* spm_model_load() flags. */
enum {
	/* Load as transformers' SiglipTokenizer.get_spm_processor() does:
	 * with the model's normalizer_spec.add_dummy_prefix set to false. */
	SPM_NO_DUMMY_PREFIX = 1,
};

/* Loads a model from `len` bytes of a serialized ModelProto (the contents
 * of a spiece.model or tokenizer.model file); `data` is copied, the caller
 * keeps it.  `name` (not NULL) names the model in error messages.  The
 * caller owns *out; free it with spm_model_free().
 * Errors: CDX_EFORMAT (not a SentencePiece model, or one that
 * libsentencepiece refuses: err quotes its reason), CDX_ENOMEM,
 * CDX_EINVAL (NULL argument). */
int spm_model_load(const void *data, size_t len, const char *name,
    unsigned flags, spm_model **out, cdx_error *err);

/* Frees a model; NULL is a no-op. */
void spm_model_free(spm_model *m);

/* The number of pieces (ids are 0..size-1). */
int spm_model_size(const spm_model *m);

/* SentencePiece's PieceToId(): the id of the piece `s` (len bytes), or the
 * unknown id when `s` is no piece of the model. */
int32_t spm_piece_id(const spm_model *m, const char *s, size_t len);

/* SentencePiece's IdToPiece(): the piece of `id` (0..size-1), owned by the
 * model and valid until spm_model_free(); its length goes to *len.  NULL
 * for an id out of range. */
const char *spm_id_piece(const spm_model *m, int32_t id, size_t *len);

/* The reserved ids: unknown, BOS, EOS, pad; -1 where the model has none. */
int32_t spm_unk_id(const spm_model *m);
int32_t spm_bos_id(const spm_model *m);
int32_t spm_eos_id(const spm_model *m);
int32_t spm_pad_id(const spm_model *m);

/* An encoding: n pieces, piece i is the bytes buf[off[i]..off[i+1]) and
 * ids[i] its PieceToId() (the unknown id for an unknown piece, whose
 * string is then the text it covers).  Owned by the caller; release it with
 * spm_pieces_free(). */
typedef struct spm_pieces {
	size_t n;
	int32_t *ids;    /* n ids */
	size_t *off;     /* n + 1 offsets into buf */
	char *buf;       /* the pieces' bytes, one after the other */
} spm_pieces;

/* Encodes `len` bytes of UTF-8 text into pieces, exactly as
 * SentencePieceProcessor::Encode(text, &pieces) (Python's
 * encode(text, out_type=str)) does.  Fills *out (any previous content is
 * not freed) on success; on failure *out is zeroed.  The text should be
 * valid UTF-8 (libsentencepiece replaces invalid bytes with U+FFFD).
 * Errors: CDX_ENOMEM, CDX_EINTERNAL (libsentencepiece refused: err quotes
 * it). */
int spm_encode(const spm_model *m, const char *text, size_t len,
    spm_pieces *out, cdx_error *err);

/* Frees what spm_encode() put in p and zeroes it; NULL is a no-op. */
void spm_pieces_free(spm_pieces *p);

#ifdef __cplusplus
}
#endif
#endif
