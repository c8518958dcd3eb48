/*
 * clip.h - the CLIP encoder: tokenizer, image decoding and preprocessing,
 * model loading, text and image encoders.  Pure C on OpenBLAS.
 *
 * Conventions (see common/cdx.h):
 *  - Functions return 0 or a negative CDX_E* code; the optional last
 *    argument `cdx_error *err` receives a message naming the problem.
 *  - Out-parameters are untouched on failure.
 *  - Every *_free() accepts NULL.
 *
 * Thread-safety:
 *  - A clip_tokenizer and a clip_model are immutable after loading and may
 *    be shared by any number of threads.
 *  - A clip_ctx (scratch buffers for encoding) belongs to one thread at a
 *    time.  Each worker creates its own.
 *  - Image decoding and preprocessing functions are reentrant.
 *  - Threads: the encoder starts none of its own and sets no thread count;
 *    OpenBLAS (fp32) and oneDNN on OpenMP (bf16, int8) run with the
 *    counts the program's main() set (common/threads.h).

 *
 * Embeddings are unit length.  This is the one owner of that invariant:
 * every embedding clip_encode_text() and clip_encode_images() write has
 * L2 length 1 (within float32 rounding; common/vec.h states the
 * tolerance), in every precision.  The store, dupes and the daemon rely
 * on it and check it (cdx_vec_is_unit) rather than normalise again.  A
 * vector combined from embeddings (a weighted sum of query terms, a prompt
 * minus negatives) is not unit length: the code that combines normalises
 * the sum once with cdx_vec_normalise() - in clipdexd, srv_query_vector()
 * (daemon/dispatch.c) for the terms of a query and compute_stream()
 * (daemon/retrieve.c) for retrieve's negatives.
 */
#ifndef CLIP_H
#define CLIP_H

#include <stddef.h>
#include <stdint.h>

#include "common/cdx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Tokenizer -------------------------------------------------------- */

/* The longest token context of any supported tokenizer (CLIP's 77).  A
 * tokenizer writes clip_tokenizer_context_len() ids per text (77 for CLIP,
 * the padded length for SigLIP: 64), never more than this, so an
 * `int32_t ids[CLIP_CONTEXT_LEN]` holds one text of any model.  Batches of
 * ids are laid out with the tokenizer's own context length as the stride. */
#define CLIP_CONTEXT_LEN 77
#define CLIP_TOKEN_SOT 49406
#define CLIP_TOKEN_EOT 49407

typedef struct clip_tokenizer clip_tokenizer;

/* What a tokenizer does (clip_tokenizer_kind()). */
enum clip_tokenizer_kind {
	CLIP_TOKENIZER_BPE = 1,     /* OpenAI's CLIP byte-level BPE */
	CLIP_TOKENIZER_SIGLIP = 2,  /* SentencePiece unigram, spiece.model,
	                               SiglipTokenizer's canonicalisation */
	CLIP_TOKENIZER_GEMMA = 3,   /* SentencePiece BPE with byte fallback,
	                               tokenizer.model (SigLIP2), lower-cased
	                               character by character */
};

/* Loads the vocabulary built into the program (OpenAI's CLIP BPE merges,
 * encoder/vocab/, embedded at build time: no file is read).  About 15 ms.
 * The caller owns *out; free with clip_tokenizer_free().
 * Errors: CDX_ENOMEM, CDX_EINVAL (out is NULL). */
int clip_tokenizer_load_builtin(clip_tokenizer **out, cdx_error *err);

/* Loads a Hugging Face vocab.json + merges.txt pair (a model folder's own
 * vocabulary).  vocab.json maps each token string to a unique id in
 * 0..count-1; merges.txt is a "#version" line, then one merge ("a b") per
 * line, of which the first 48,894 are used, as Hugging Face's CLIPTokenizer
 * does.  Every byte symbol, "<|startoftext|>", "<|endoftext|>", both halves
 * of every merge and its result must be in vocab.json.  The ids clip_tokenize
 * writes are vocab.json's (for CLIP's published vocabularies they equal the
 * built-in ones: SOT 49406, EOT 49407).  The caller owns *out.
 * Errors: CDX_ENOTFOUND, CDX_EPERM, CDX_EIO (a file), CDX_EFORMAT (malformed
 * or inconsistent files; err names the file, line or token), CDX_ETOOBIG
 * (a file over 256 MiB), CDX_ENOMEM, CDX_EINVAL (a NULL argument). */
int clip_tokenizer_load_files(const char *vocab_json, const char *merges_txt,
    clip_tokenizer **out, cdx_error *err);

/* Loads the SentencePiece tokenizer of a SigLIP or SigLIP2 model folder
 * `dir`: spiece.model (SigLIP: CLIP_TOKENIZER_SIGLIP) or tokenizer.model
 * (SigLIP2, the Gemma vocabulary: CLIP_TOKENIZER_GEMMA), with
 * tokenizer_config.json and special_tokens_map.json when present (the
 * added and special tokens, add_bos_token/add_eos_token, do_lower_case,
 * padding_side, truncation_side and model_max_length as transformers 4.x
 * reads them: special_tokens_map.json only counts when
 * tokenizer_config.json has no added_tokens_decoder).  tokenizer_config's
 * tokenizer_class picks the kind (SiglipTokenizer; GemmaTokenizer or
 * Siglip2Tokenizer, with or without "Fast"); without one, the model file
 * that exists does, spiece.model first.  tokenizer.json is not read.
 * Texts are padded (and truncated) to context_len ids (1..CLIP_CONTEXT_LEN),
 * the model's text positions.  The model itself is read by SentencePiece
 * (Debian's libsentencepiece).  See docs/TOKENIZER.md.  The caller owns
 * *out.
 * Errors: CDX_ENOTFOUND (no tokenizer model in dir, or not the one
 * tokenizer_class needs: err names it), CDX_EFORMAT (a malformed or
 * contradictory file: err names the file and field, e.g. a
 * model_max_length other than context_len, a special token or an
 * added_tokens_decoder entry that is not that piece of the model, a null
 * pad token, an unknown tokenizer_class, a model libsentencepiece
 * refuses), CDX_EINVAL (NULL dir or out, context_len out of range or not
 * above the number of special tokens added per text), CDX_ETOOBIG (a
 * model over 256 MiB, a JSON file over 16 MiB), CDX_EIO, CDX_EPERM,
 * CDX_ENOMEM. */
int clip_tokenizer_load_sentencepiece(const char *dir, int context_len,
    clip_tokenizer **out, cdx_error *err);

/* Loads the tokenizer of a model folder without its weights, as
 * clip_model_load() would: reads config.json for the family and the text
 * positions, then the files above.  The caller owns *out.  Errors: those
 * of clip_model_load() for config.json and of the loaders above. */
int clip_tokenizer_load_dir(const char *dir, clip_tokenizer **out,
    cdx_error *err);

/* Frees a tokenizer; NULL is a no-op. */
void clip_tokenizer_free(clip_tokenizer *tok);

/* The tokenizer's kind (enum clip_tokenizer_kind), the number of ids
 * clip_tokenize() writes per text, and the size of its vocabulary (every
 * id it writes is below it).  Thread-safe. */
int clip_tokenizer_kind(const clip_tokenizer *tok);
int clip_tokenizer_context_len(const clip_tokenizer *tok);
int clip_tokenizer_vocab_size(const clip_tokenizer *tok);

/* Tokenizes `len` bytes of UTF-8 `text` into
 * clip_tokenizer_context_len(tok) ids.  SentencePiece tokenizers (SigLIP,
 * SigLIP2) do what transformers' SiglipTokenizer / SigLIP2's Gemma
 * tokenizer do with padding="max_length", truncation=True (docs/
 * TOKENIZER.md): lower-case, canonicalise (SigLIP), split on the added and
 * special tokens, encode, truncate so that the special tokens fit, add EOS
 * (SigLIP: unless the text ends with it; SigLIP2: add_eos_token) and BOS
 * (add_bos_token), pad with the pad id (on the padding_side, right in the
 * hub folders); *n_tokens gets the number of ids that are not padding
 * (1..context length).  A literal special token in the text ("</s>",
 * "<eos>") becomes that token, as in transformers.  The CLIP BPE tokenizer
 * works exactly as OpenAI's CLIP tokenizer
 * does (HTML unescape, whitespace clean, lower-case, CLIP pre-tokenizer,
 * byte-level BPE).  Fills ids[0..CLIP_CONTEXT_LEN-1]: SOT, tokens, EOT, then
 * EOT padding (as Hugging Face pads); a text with more than 75 tokens is
 * truncated to SOT + its first 75 tokens + EOT.  *n_tokens (may be NULL) gets
 * the number of ids before the padding, SOT and EOT included (2..77).
 * A literal "<|startoftext|>" or "<|endoftext|>" in the text becomes that
 * special token, as in OpenAI's tokenizer.  ftfy is not applied (see
 * docs/TOKENIZER.md).  Thread-safe: any number of threads may share tok.
 * BPE: a few microseconds for a 77-token text; time is O(len log len) and
 * the scratch memory, freed before returning, about 20 bytes per byte of
 * text plus 52 per byte of its longest word.  SentencePiece: about 5
 * microseconds for a short query; libsentencepiece takes 100 to 300 bytes
 * per byte of text while it runs.
 * Errors: CDX_EUTF8 for invalid UTF-8 (err gives the byte offset),
 * CDX_EINVAL (NULL tok or ids, or NULL text with len > 0), CDX_ETOOBIG
 * (len over 256 MiB; over 64 KiB for the SentencePiece tokenizers, whose
 * library's time grows with the square of a run of unknown characters),
 * CDX_ENOMEM, CDX_EINTERNAL (libsentencepiece failed). */
int clip_tokenize(const clip_tokenizer *tok, const char *text, size_t len,
    int32_t *ids, int *n_tokens, cdx_error *err);

/* ---- Images ----------------------------------------------------------- */

enum clip_image_format {
	CLIP_FORMAT_UNKNOWN = 0,
	CLIP_FORMAT_JPEG = 1,
	CLIP_FORMAT_PNG = 2,
	CLIP_FORMAT_HEIF = 3,  /* HEIC/HEIF (libheif) */
	CLIP_FORMAT_AVIF = 4,  /* AVIF (libheif) */
	CLIP_FORMAT_WEBP = 5,  /* libwebp, animated: the first frame */
	CLIP_FORMAT_TIFF = 6,  /* libtiff, the first page */
	CLIP_FORMAT_GIF = 7,   /* giflib, the first frame */
	CLIP_FORMAT_BMP = 8,   /* stb_image */
	CLIP_FORMAT_RAW = 9,   /* camera RAW (libraw): CR2, CR3, NEF, ARW,
	                          DNG, RAF, ORF, RW2 */
};

/* What a file's first bytes say it is, for those who count what they skip
 * (clip_image_sniff()). */
enum clip_content {
	CLIP_CONTENT_OTHER = 0,      /* nothing recognised */
	CLIP_CONTENT_IMAGE = 1,      /* an image format clip_image_decode reads */
	CLIP_CONTENT_VIDEO = 2,      /* a video container (MP4/MOV, MKV/WebM,
	                                AVI): not decoded here */
	CLIP_CONTENT_IMAGE_OTHER = 3,  /* an image format not read (JPEG XL,
	                                  PSD, ICO, ...) */
};

/* The one place formats are told apart: by content (magic bytes, ISO BMFF
 * `ftyp` brands, the IFD0 of TIFF-based RAW files), never by name.
 * Returns an enum clip_image_format (CLIP_FORMAT_UNKNOWN when none);
 * *content (may be NULL) receives an enum clip_content.  Reads at most the
 * first 64 KiB, and of a TIFF its IFD0 and first SubIFD wherever they lie;
 * never fails; reentrant. */
int clip_image_sniff(const void *data, size_t len, int *content);

/* A format's short name ("JPEG", "HEIF", ..., "unknown"); static storage. */
const char *clip_image_format_name(int format);

/* What a file's header says, without decoding the pixels. */
typedef struct clip_image_info {
	int format;            /* enum clip_image_format */
	int width, height;     /* as displayed: after EXIF orientation */
	int orientation;       /* EXIF orientation 1..8 (1 when absent) */
	int64_t capture_time;  /* EXIF DateTimeOriginal as seconds since the
	                          epoch, read as UTC; INT64_MIN when absent */
} clip_image_info;

/* Detects the format by content (not by name) and reads the header and
 * EXIF; reads no pixel data, so a file truncated after its header probes
 * fine (clip_image_decode() rejects it).  No size limit applies.  Malformed
 * EXIF counts as absent.  HEIF/AVIF report orientation 1 (libheif's
 * transformations are the orientation; see clip_image_decode); RAW
 * reports libraw's orientation and TIFF its Orientation tag.
 * Errors: CDX_EFORMAT (not an image format clipdex reads, or a corrupt
 * header). */
int clip_image_probe(const void *data, size_t len, clip_image_info *out,
    cdx_error *err);

#define CLIP_DEFAULT_MAX_PIXELS (100u * 1000u * 1000u)

typedef struct clip_decode_opts {
	/* Refuse images with more pixels than this (before allocating).
	 * 0 means CLIP_DEFAULT_MAX_PIXELS. */
	uint64_t max_pixels;
	/* 0: decode at full size ("exact" mode).  >0 ("fast" mode): JPEGs are
	 * decoded at the smallest DCT scale (1/8 .. 1) that keeps the shorter
	 * side at or above min_short; a camera RAW's embedded JPEG preview is
	 * used instead of the demosaic, and a HEIF's thumbnail item instead of
	 * the primary image, when its shorter side is at least min_short (a
	 * thumbnail also of the same shape).  Other formats are always
	 * decoded at full size. */
	int min_short;
	/* Fast mode, progressive JPEGs: 0 (the default) decodes only the scans
	 * that the DCT-scaled inverse DCT needs; 1 decodes every scan (the
	 * full decode, for benchmarks and tests).  Pixels are the same. */
	int all_scans;
} clip_decode_opts;

/* A decoded image: interleaved 8-bit RGB, rows top to bottom, EXIF
 * orientation applied, alpha dropped.  `rgb` is owned by the image; release
 * it with clip_image_free(). */
typedef struct clip_image {
	int width, height;
	uint8_t *rgb;          /* width * height * 3 bytes */
	clip_image_info info;  /* header facts of the source (full size) */
} clip_image;

/* Decodes an image from memory: JPEG, PNG, HEIC/HEIF, AVIF, WebP, TIFF,
 * GIF, BMP or camera RAW, told apart by clip_image_sniff().  opts may be
 * NULL (exact mode).
 * The caller owns out->rgb on success (clip_image_free()); *out is untouched
 * on failure.  Pixels equal Pillow's exif_transpose + convert("RGB"):
 * grayscale is replicated, palettes looked up, alpha dropped without
 * compositing, CMYK/YCCK JPEGs read as Adobe (inverted) CMYK with Pillow's
 * conversion; 16-bit PNG samples keep their high byte (for 16-bit gray
 * Pillow would clip instead).  max_pixels applies to the header's full size,
 * in both modes, before any pixel buffer is allocated.  A JPEG without an
 * end-of-image marker after its scans is truncated (CDX_EFORMAT); libjpeg
 * warnings in a complete file (extraneous bytes, corrupt entropy data) are
 * accepted, as Pillow accepts them.  WebP, TIFF, GIF and BMP equal Pillow
 * 9.4 too (the first frame or page; the exceptions are listed in
 * docs/IMAGES.md); HEIC/AVIF equal libheif's decode (heif-convert), with
 * its irot/imir/clap applied and EXIF orientation not applied again; RAW
 * (exact mode) equals libraw's half-size demosaic with the camera's white
 * balance (dcraw_emu -h -w).  See docs/IMAGES.md.
 * Errors: CDX_EFORMAT (unknown format, corrupt or truncated data),
 * CDX_ETOOBIG (over max_pixels), CDX_ENOMEM. */
int clip_image_decode(const void *data, size_t len,
    const clip_decode_opts *opts, clip_image *out, cdx_error *err);

/* Reads and decodes a file (with cdx_read_file: read(2), so a file that
 * shrinks meanwhile is CDX_EIO, never a signal); err->msg starts with the
 * path.  Errors as clip_image_decode, plus CDX_ENOTFOUND, CDX_EPERM, CDX_EIO
 * (also: not a regular file, a short read) for the file itself,
 * CDX_ETOOBIG for files over 1 GiB. */
int clip_image_load(const char *path, const clip_decode_opts *opts,
    clip_image *out, cdx_error *err);

/* Frees img->rgb and zeroes the size; accepts NULL and freed images. */
void clip_image_free(clip_image *img);

/* How an image becomes the model's input square. */
enum clip_resize_mode {
	/* CLIPImageProcessor: the shorter side to shortest_edge (aspect kept),
	 * then a centre crop of crop_width x crop_height. */
	CLIP_RESIZE_SHORTEST_CROP = 0,
	/* SiglipImageProcessor: squashed to exactly crop_width x crop_height
	 * (aspect not kept, no crop); shortest_edge is unused. */
	CLIP_RESIZE_SQUASH = 1,
};

/* Pillow's resampling filters, by their numbers in preprocessor_config's
 * "resample" (PIL.Image.Resampling). */
enum clip_resample {
	CLIP_RESAMPLE_BILINEAR = 2,
	CLIP_RESAMPLE_BICUBIC = 3,
};

/* How a model wants its pixels, from preprocessor_config.json (defaults
 * when absent: CLIP's are shortest edge and crop = the vision config's
 * image_size, bicubic, OpenAI's mean and std; SigLIP's are a bicubic
 * squash to image_size, mean and std 0.5). */
typedef struct clip_preprocess_cfg {
	int mode;              /* enum clip_resize_mode */
	int resample;          /* enum clip_resample */
	int shortest_edge;     /* CLIP_RESIZE_SHORTEST_CROP: the shorter side */
	int crop_width, crop_height;  /* the output size, in both modes */
	float mean[3], std[3];
} clip_preprocess_cfg;

/* Resizes (Pillow-exact, with cfg->resample) as cfg->mode says: for
 * CLIP_RESIZE_SHORTEST_CROP the shorter side to shortest_edge, the longer
 * side truncated as Hugging Face computes it, then a centre crop
 * (zero-padded, as HF, where the crop is larger than the resized image);
 * for CLIP_RESIZE_SQUASH straight to crop_width x crop_height.  Then scales
 * to [0,1] and normalises.  Writes 3 * crop_height * crop_width floats,
 * planar (CHW), to `out`; only the output pixels are resampled.  Equal to
 * the HF CLIPImageProcessor / SiglipImageProcessor for an image decoded in
 * exact mode.
 * Errors: CDX_EINVAL (bad image or cfg: sizes 1..16384, std != 0, an
 * unknown mode or filter, or a resized long side over INT_MAX),
 * CDX_ENOMEM. */
int clip_image_preprocess(const clip_image *img, const clip_preprocess_cfg *cfg,
    float *out, cdx_error *err);

/* The min_short a fast-mode decode (clip_decode_opts) needs so that the
 * DCT-scaled image is still at least as large as cfg's resize asks for in
 * both directions: shortest_edge, or for a squash the larger output side
 * (0 for NULL or an unknown mode). */
int clip_preprocess_min_short(const clip_preprocess_cfg *cfg);

/* ---- Model ------------------------------------------------------------ */

typedef struct clip_model clip_model;

/* The precision of the linear layers (every GEMM of both towers and the
 * patch embedding; layer norms, softmax, GELU, residuals and attention
 * stay float32).  docs/ENCODER.md, "Precision", has the measured cost of
 * each. */
enum clip_precision {
	/* bf16 where the CPU multiplies bf16 natively (AVX512-BF16, AMX),
	 * fp32 elsewhere: the fastest mode whose fidelity is guaranteed */
	CLIP_PRECISION_AUTO = 0,
	CLIP_PRECISION_FP32 = 1,   /* OpenBLAS SGEMM */
	CLIP_PRECISION_BF16 = 2,   /* oneDNN: bf16 x bf16, fp32 accumulation */
	CLIP_PRECISION_INT8 = 3,   /* oneDNN: s8 weights per output channel,
	                              s8 activations per row (token); chosen
	                              explicitly, never by auto */
	CLIP_PRECISION_INT8_MIXED = 4,  /* int8, but the MLPs' down-projections
	                              (fc2, whose inputs are the GELU outputs
	                              where outlier channels live) in bf16 */
};

/* "auto", "fp32", "bf16", "int8", "int8-mixed" ("?" for anything
 * else). */
const char *clip_precision_name(int precision);
/* Parses one of those names into *out.  Errors: CDX_EINVAL. */
int clip_precision_parse(const char *name, int *out);

typedef struct clip_model_params {
	int precision;         /* enum clip_precision; 0: auto */
} clip_model_params;

void clip_model_default_params(clip_model_params *p);

/* Model families.  The family comes from config.json (model_type,
 * architectures) and, for SigLIP2, from its tokenizer (the Gemma
 * vocabulary); never from the folder's name. */
enum clip_family {
	CLIP_FAMILY_CLIP = 1,     /* OpenAI CLIP and OpenCLIP conversions */
	CLIP_FAMILY_SIGLIP = 2,   /* SigLIP: model_type "siglip", spiece.model */
	CLIP_FAMILY_SIGLIP2 = 3,  /* SigLIP2 FixRes: model_type "siglip",
	                             tokenizer.model (Gemma) */
};

/* "clip", "siglip", "siglip2" ("?" for anything else). */
const char *clip_family_name(int family);

/* Activation functions of the MLPs. */
enum clip_act {
	CLIP_ACT_QUICK_GELU = 0,  /* x * sigmoid(1.702 x) */
	CLIP_ACT_GELU = 1,        /* exact: 0.5 x (1 + erf(x / sqrt 2)) */
	CLIP_ACT_GELU_TANH = 2,   /* gelu_pytorch_tanh: the tanh approximation */
};

/* Dimensions and identity of a loaded model. */
typedef struct clip_model_info {
	char name[128];        /* the folder's name */
	char id[160];          /* "<name>@<16 hex digits of the weights hash>":
	                          what the daemon shows */
	/* The model's identity, what a store's embeddings must match: the
	 * architecture and the weights, never the folder's name, e.g.
	 * "clip-512-224/32-v768x12-t512x12@0123456789abcdef"
	 * (family-embed_dim-image/patch-vision width x layers-text width x
	 * layers @ weights hash).  A renamed folder keeps it. */
	char key[160];
	uint64_t weights_hash; /* XXH3-64 of model.safetensors */
	int family;            /* enum clip_family */
	int embed_dim;         /* length of every embedding: projection_dim
	                          (CLIP), the vision hidden size (SigLIP) */
	int image_size, patch_size;
	int vision_width, vision_layers, vision_heads, vision_mlp;
	int text_width, text_layers, text_heads, text_mlp;
	int vocab_size, max_positions;
	int context_len;       /* ids per text (clip_tokenizer_context_len) */
	int act_vision, act_text;  /* enum clip_act */
	/* The model's logit_scale (the log of the temperature, as stored) and
	 * logit_bias; has_sigmoid says the model was trained with the sigmoid
	 * loss (SigLIP), so that clip_match_prob() is a calibrated match
	 * probability.  CLIP's softmax loss gives no such scale. */
	float logit_scale, logit_bias;
	int has_sigmoid;
	clip_preprocess_cfg preprocess;
	/* What runs: the precision in effect (never auto), and for bf16 and
	 * int8 oneDNN's version, the ISA it dispatches to and the kernel its
	 * matmul chose when the first MLP's weights were packed (for a
	 * 256-row batch): "oneDNN 2.6.3 avx512_core_amx
	 * brg:avx512_core_amx_bf16"; "OpenBLAS" for fp32. */
	int precision;
	char kernels[128];
	size_t weight_bytes;   /* resident bytes of every weight as loaded */
} clip_model_info;

/* The match probability of a text and an image whose embeddings have
 * cosine `cos`: sigmoid(exp(logit_scale) * cos + logit_bias), for models
 * with has_sigmoid.  Returns 0 and writes *prob, or CDX_EINVAL (writing
 * nothing) for a model without a sigmoid head (CLIP). */
int clip_match_prob(const clip_model_info *info, double cos, double *prob);

/* The cosine whose match probability is `prob` (0 < prob < 1): the
 * inverse of clip_match_prob, for turning a probability cut-off into a
 * score cut-off.  Errors: CDX_EINVAL (no sigmoid head, prob out of
 * range). */
int clip_match_cos(const clip_model_info *info, double prob, double *cos);

/* Loads a Hugging Face model folder of any supported family:
 * config.json, model.safetensors (F32, F16 or BF16; memory-mapped, checked
 * completely before use), preprocessor_config.json when present, and the
 * tokenizer: for CLIP vocab.json + merges.txt when present (else the
 * built-in vocabulary); for SigLIP/SigLIP2 clip_tokenizer_load_sentencepiece
 * (required).  SigLIP2 NaFlex folders (model_type "siglip2") are refused
 * with a message that names them.  params may be NULL (defaults).
 * Errors: CDX_ENOTFOUND (missing file), CDX_EFORMAT (malformed JSON or
 * safetensors, unknown model_type, missing tensor, wrong shape or dtype, a
 * tokenizer that disagrees with the model), CDX_EIO, CDX_ENOMEM; err names
 * the file and the problem. */
int clip_model_load(const char *dir, const clip_model_params *params,
    clip_model **out, cdx_error *err);

void clip_model_free(clip_model *m);

const clip_model_info *clip_model_get_info(const clip_model *m);
const clip_tokenizer *clip_model_tokenizer(const clip_model *m);

/* Per-thread encoding state (scratch buffers), for batches of up to
 * max_batch images (1..4096).  Owned by the caller; one thread at a time;
 * it borrows the model, which must outlive it.  Errors: CDX_EINVAL,
 * CDX_ENOMEM. */
typedef struct clip_ctx clip_ctx;

int clip_ctx_new(const clip_model *m, int max_batch, clip_ctx **out,
    cdx_error *err);
void clip_ctx_free(clip_ctx *ctx);

/* Encodes n token sequences (n * info.context_len ids, as clip_tokenize
 * makes them with the model's tokenizer) into n L2-normalised embeddings
 * of embed_dim floats each.  CLIP: only positions up to each sequence's
 * first EOT are computed (causal attention); ids after it are ignored.
 * SigLIP: all context_len positions are computed (attention is not causal)
 * and the last one is pooled.  Any n is accepted (sequences are processed
 * in chunks).  Errors (nothing is written): CDX_EINVAL for an id outside
 * the vocabulary, a CLIP sequence without CLIP_TOKEN_EOT, or more tokens
 * than the model's max_positions. */
int clip_encode_text(clip_ctx *ctx, const int32_t *ids, int n, float *out,
    cdx_error *err);

/* Encodes n preprocessed images (n * 3 * image_size * image_size floats,
 * CHW each, as clip_image_preprocess makes them; n <= max_batch) into n
 * L2-normalised embeddings.  Errors: CDX_EINVAL (n > max_batch, NULL
 * buffers). */
int clip_encode_images(clip_ctx *ctx, const float *pixels, int n, float *out,
    cdx_error *err);

/* The same for n images whose planes (3 * image_size * image_size floats
 * each) lie anywhere: planes[i] is image i's, so a pipeline can decode
 * each image into a buffer of its own and encode them without copying
 * them together.  Not thread-safe for one ctx (as every encode).  Errors
 * as clip_encode_images, and CDX_EINVAL for a NULL plane. */
int clip_encode_image_planes(clip_ctx *ctx, const float *const *planes,
    int n, float *out, cdx_error *err);

#ifdef __cplusplus
}
#endif
#endif
