/*
 * spm_c.cpp - the C shim over libsentencepiece (encoder/spm_c.h).
 *
 * Every entry point catches every exception: std::bad_alloc becomes
 * CDX_ENOMEM, anything else the function's documented error code, with the
 * model's name in the message.  libsentencepiece reports its own failures
 * as util::Status values, whose messages are quoted.
 */
#include "encoder/spm_c.h"

#include <sentencepiece_processor.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <vector>

/* clang's -fsanitize=undefined checks the dynamic type of every call to a
 * virtual member (-fsanitize=vptr), which needs the C++ part of the UBSan
 * runtime; programs that link this archive with the C driver (`clang`, as
 * the test and fuzz rules of the Makefile do) lack it and fail to link.
 * The calls here are on one SentencePieceProcessor that this file
 * constructs itself, so that check is turned off for this file's code. */
#ifdef __clang__
#pragma clang attribute push(__attribute__((no_sanitize("vptr"))), \
    apply_to = function)
#endif

struct spm_model {
	spm_model() : size(0) {}
	~spm_model() {}
	sentencepiece::SentencePieceProcessor sp;
	std::string name;
	int size;
};

/* A ModelProto field that, appended to a serialized model, sets
 * normalizer_spec.add_dummy_prefix = false.  sentencepiece_model.proto:
 * ModelProto.normalizer_spec is field 3 (a message), NormalizerSpec's
 * add_dummy_prefix is field 3 (a bool).  Protobuf parsers merge a repeated
 * occurrence of a singular message field into the first one (the encoding
 * spec, "Last One Wins" / merging of embedded messages), so the result is
 * what transformers' SiglipTokenizer gets with
 * model.normalizer_spec.MergeFrom(NormalizerSpec(add_dummy_prefix=False)):
 * key 0x1A (field 3, length-delimited), length 2, key 0x18 (field 3,
 * varint), value 0. */
static const char no_dummy_prefix_field[4] = { 0x1A, 0x02, 0x18, 0x00 };

extern "C" int
spm_model_load(const void *data, size_t len, const char *name, unsigned flags,
    spm_model **out, cdx_error *err)
{
	spm_model *m = nullptr;

	if (!data || !name || !out)
		return cdx_error_set(err, CDX_EINVAL, "spm_model_load: NULL argument");
	try {
		m = new spm_model();
		m->name = name;
		std::string bytes(static_cast<const char *>(data), len);
		if (flags & SPM_NO_DUMMY_PREFIX)
			bytes.append(no_dummy_prefix_field,
			    sizeof(no_dummy_prefix_field));
		sentencepiece::util::Status st = m->sp.LoadFromSerializedProto(bytes);
		if (!st.ok()) {
			int rc = cdx_error_set(err, CDX_EFORMAT,
			    "%s: not a SentencePiece model that libsentencepiece "
			    "accepts (%s)", name, st.ToString().c_str());
			delete m;
			return rc;
		}
		m->size = m->sp.GetPieceSize();
		if (m->size <= 0) {
			delete m;
			return cdx_error_set(err, CDX_EFORMAT,
			    "%s: a SentencePiece model without pieces", name);
		}
	} catch (std::bad_alloc &) {
		delete m;
		return cdx_error_set(err, CDX_ENOMEM, "%s: out of memory", name);
	} catch (std::exception &e) {
		delete m;
		return cdx_error_set(err, CDX_EFORMAT, "%s: %s", name, e.what());
	} catch (...) {
		delete m;
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: libsentencepiece failed to load it", name);
	}
	*out = m;
	return 0;
}

extern "C" void
spm_model_free(spm_model *m)
{
	delete m;
}

extern "C" int
spm_model_size(const spm_model *m)
{
	return m->size;
}

extern "C" int32_t
spm_piece_id(const spm_model *m, const char *s, size_t len)
{
	try {
		return m->sp.PieceToId(absl::string_view(s, len));
	} catch (...) {
		/* PieceToId allocates nothing; this is unreachable. */
		return m->sp.unk_id();
	}
}

extern "C" const char *
spm_id_piece(const spm_model *m, int32_t id, size_t *len)
{
	if (id < 0 || id >= m->size)
		return nullptr;
	const std::string &p = m->sp.IdToPiece(id);
	*len = p.size();
	return p.data();
}

extern "C" int32_t
spm_unk_id(const spm_model *m)
{
	return m->sp.unk_id();
}

extern "C" int32_t
spm_bos_id(const spm_model *m)
{
	return m->sp.bos_id();
}

extern "C" int32_t
spm_eos_id(const spm_model *m)
{
	return m->sp.eos_id();
}

extern "C" int32_t
spm_pad_id(const spm_model *m)
{
	return m->sp.pad_id();
}

extern "C" int
spm_encode(const spm_model *m, const char *text, size_t len, spm_pieces *out,
    cdx_error *err)
{
	spm_pieces p = { 0, nullptr, nullptr, nullptr };

	memset(out, 0, sizeof(*out));
	try {
		std::vector<std::string> pieces;
		sentencepiece::util::Status st =
		    m->sp.Encode(absl::string_view(text, len), &pieces);
		if (!st.ok())
			return cdx_error_set(err, CDX_EINTERNAL,
			    "%s: SentencePiece could not encode the text (%s)",
			    m->name.c_str(), st.ToString().c_str());
		size_t total = 0;
		for (const std::string &s : pieces)
			total += s.size();
		p.n = pieces.size();
		p.ids = static_cast<int32_t *>(malloc((p.n + 1) * sizeof(int32_t)));
		p.off = static_cast<size_t *>(malloc((p.n + 1) * sizeof(size_t)));
		p.buf = static_cast<char *>(malloc(total + 1));
		if (!p.ids || !p.off || !p.buf) {
			spm_pieces_free(&p);
			return cdx_error_set(err, CDX_ENOMEM,
			    "%s: out of memory", m->name.c_str());
		}
		size_t o = 0;
		for (size_t i = 0; i < p.n; i++) {
			const std::string &s = pieces[i];
			p.off[i] = o;
			memcpy(p.buf + o, s.data(), s.size());
			o += s.size();
			p.ids[i] = m->sp.PieceToId(s);
		}
		p.off[p.n] = o;
		p.buf[o] = '\0';
	} catch (std::bad_alloc &) {
		spm_pieces_free(&p);
		return cdx_error_set(err, CDX_ENOMEM, "%s: out of memory",
		    m->name.c_str());
	} catch (std::exception &e) {
		spm_pieces_free(&p);
		return cdx_error_set(err, CDX_EINTERNAL, "%s: %s",
		    m->name.c_str(), e.what());
	} catch (...) {
		spm_pieces_free(&p);
		return cdx_error_set(err, CDX_EINTERNAL,
		    "%s: SentencePiece failed to encode the text",
		    m->name.c_str());
	}
	*out = p;
	return 0;
}

extern "C" void
spm_pieces_free(spm_pieces *p)
{
	if (!p)
		return;
	free(p->ids);
	free(p->off);
	free(p->buf);
	memset(p, 0, sizeof(*p));
}

#ifdef __clang__
#pragma clang attribute pop
#endif
