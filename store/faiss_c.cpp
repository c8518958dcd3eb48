/*
 * faiss_c.cpp - the part of the FAISS C API that clipdex uses.
 *
 * Debian's libfaiss-dev 1.7.3 ships the C API headers but its static
 * libfaiss.a lacks their implementation.  This file implements exactly the
 * functions the store calls, with the signatures of Debian's headers (which
 * are included, so the compiler checks them).  Every function that can
 * throw catches every C++ exception, remembers it in a thread-local slot
 * and returns the C API's codes: -2 FaissException, -4 std::exception,
 * -1 anything else.  faiss_get_last_error() returns the message of the
 * calling thread's last exception.  Unlike upstream's debug build, nothing
 * is ever printed.
 */
#include <faiss/AutoTune.h>
#include <faiss/Index.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexShards.h>
#include <faiss/clone_index.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
#include <faiss/invlists/OnDiskInvertedLists.h>
#include <faiss/impl/io.h>
#include <faiss/utils/distances.h>

#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/IndexFlat_c.h>
#include <faiss/c_api/IndexIVF_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/clone_index_c.h>
#include <faiss/c_api/MetaIndexes_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/impl/AuxIndexStructures_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/index_io_c.h>
#include <faiss/c_api/utils/distances_c.h>

#include "store/faiss_ext.h"

#include <cblas.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <typeinfo>
#include <vector>
#include <exception>
#include <stdexcept>
#include <string>

/* The slot error_impl.h declares; one per thread. */
thread_local std::exception_ptr faiss_last_exception;

namespace {
thread_local std::string last_error_text;
}

#define CDX_FAISS_CATCH                                                     \
	catch (faiss::FaissException & e) {                                 \
		faiss_last_exception = std::make_exception_ptr(e);          \
		return -2;                                                  \
	}                                                                   \
	catch (std::exception & e) {                                        \
		faiss_last_exception = std::make_exception_ptr(e);          \
		return -4;                                                  \
	}                                                                   \
	catch (...) {                                                       \
		faiss_last_exception = std::make_exception_ptr(            \
			std::runtime_error("Unknown error"));               \
		return -1;                                                  \
	}                                                                   \
	return 0;

extern "C" {

const char *
faiss_get_last_error()
{
	if (!faiss_last_exception)
		return nullptr;
	try {
		std::rethrow_exception(faiss_last_exception);
	} catch (std::exception &e) {
		last_error_text = e.what();
	} catch (...) {
		last_error_text = "Unknown error";
	}
	return last_error_text.c_str();
}

/* ---- Index ---- */

void
faiss_Index_free(FaissIndex *obj)
{
	delete reinterpret_cast<faiss::Index *>(obj);
}

int
faiss_Index_d(const FaissIndex *obj)
{
	return reinterpret_cast<const faiss::Index *>(obj)->d;
}

int
faiss_Index_is_trained(const FaissIndex *obj)
{
	return reinterpret_cast<const faiss::Index *>(obj)->is_trained;
}

idx_t
faiss_Index_ntotal(const FaissIndex *obj)
{
	return reinterpret_cast<const faiss::Index *>(obj)->ntotal;
}

int
faiss_Index_train(FaissIndex *index, idx_t n, const float *x)
{
	try {
		reinterpret_cast<faiss::Index *>(index)->train(n, x);
	}
	CDX_FAISS_CATCH
}

int
faiss_Index_add(FaissIndex *index, idx_t n, const float *x)
{
	try {
		reinterpret_cast<faiss::Index *>(index)->add(n, x);
	}
	CDX_FAISS_CATCH
}

int
faiss_Index_add_with_ids(FaissIndex *index, idx_t n, const float *x,
			 const idx_t *xids)
{
	try {
		reinterpret_cast<faiss::Index *>(index)->add_with_ids(
			n, x, reinterpret_cast<const faiss::Index::idx_t *>(xids));
	}
	CDX_FAISS_CATCH
}

int
faiss_Index_search(const FaissIndex *index, idx_t n, const float *x,
		   idx_t k, float *distances, idx_t *labels)
{
	try {
		reinterpret_cast<const faiss::Index *>(index)->search(
			n, x, k, distances,
			reinterpret_cast<faiss::Index::idx_t *>(labels));
	}
	CDX_FAISS_CATCH
}

int
faiss_Index_range_search(const FaissIndex *index, idx_t n, const float *x,
			 float radius, FaissRangeSearchResult *result)
{
	try {
		reinterpret_cast<const faiss::Index *>(index)->range_search(
			n, x, radius,
			reinterpret_cast<faiss::RangeSearchResult *>(result));
	}
	CDX_FAISS_CATCH
}

int
faiss_Index_reset(FaissIndex *index)
{
	try {
		reinterpret_cast<faiss::Index *>(index)->reset();
	}
	CDX_FAISS_CATCH
}

int
faiss_Index_remove_ids(FaissIndex *index, const FaissIDSelector *sel,
		       size_t *n_removed)
{
	try {
		size_t n = reinterpret_cast<faiss::Index *>(index)->remove_ids(
			*reinterpret_cast<const faiss::IDSelector *>(sel));
		if (n_removed)
			*n_removed = n;
	}
	CDX_FAISS_CATCH
}

int
faiss_Index_reconstruct(const FaissIndex *index, idx_t key, float *recons)
{
	try {
		reinterpret_cast<const faiss::Index *>(index)->reconstruct(
			key, recons);
	}
	CDX_FAISS_CATCH
}

/* ---- index_factory, I/O ---- */

int
faiss_index_factory(FaissIndex **p_index, int d, const char *description,
		    FaissMetricType metric)
{
	try {
		faiss::Index *idx = faiss::index_factory(
			d, description, static_cast<faiss::MetricType>(metric));
		*p_index = reinterpret_cast<FaissIndex *>(idx);
	}
	CDX_FAISS_CATCH
}

int
faiss_write_index(const FaissIndex *idx, FILE *f)
{
	try {
		faiss::write_index(reinterpret_cast<const faiss::Index *>(idx), f);
	}
	CDX_FAISS_CATCH
}

int
faiss_read_index(FILE *f, int io_flags, FaissIndex **p_out)
{
	try {
		faiss::Index *idx = faiss::read_index(f, io_flags);
		*p_out = reinterpret_cast<FaissIndex *>(idx);
	}
	CDX_FAISS_CATCH
}

/* ---- IDMap ---- */

FaissIndexIDMap *
faiss_IndexIDMap_cast(FaissIndex *index)
{
	return reinterpret_cast<FaissIndexIDMap *>(
		dynamic_cast<faiss::IndexIDMap *>(
			reinterpret_cast<faiss::Index *>(index)));
}

void
faiss_IndexIDMap_id_map(FaissIndexIDMap *index, idx_t **p_id_map,
			size_t *p_size)
{
	auto idx = reinterpret_cast<faiss::IndexIDMap *>(index);
	if (p_id_map)
		*p_id_map = reinterpret_cast<idx_t *>(idx->id_map.data());
	if (p_size)
		*p_size = idx->id_map.size();
}

FaissIndex *
faiss_IndexIDMap_sub_index(FaissIndexIDMap *index)
{
	return reinterpret_cast<FaissIndex *>(
		reinterpret_cast<faiss::IndexIDMap *>(index)->index);
}

/* ---- IndexFlat ---- */

FaissIndexFlat *
faiss_IndexFlat_cast(FaissIndex *index)
{
	return reinterpret_cast<FaissIndexFlat *>(
		dynamic_cast<faiss::IndexFlat *>(
			reinterpret_cast<faiss::Index *>(index)));
}

void
faiss_IndexFlat_xb(FaissIndexFlat *index, float **p_xb, size_t *p_size)
{
	auto idx = reinterpret_cast<faiss::IndexFlat *>(index);
	*p_xb = idx->get_xb();
	if (p_size)
		*p_size = idx->codes.size() / sizeof(float);
}

/* ---- IVF (holds its ids itself; never wrapped in an IDMap) ---- */

FaissIndexIVF *
faiss_IndexIVF_cast(FaissIndex *index)
{
	return reinterpret_cast<FaissIndexIVF *>(
		dynamic_cast<faiss::IndexIVF *>(
			reinterpret_cast<faiss::Index *>(index)));
}

size_t
faiss_IndexIVF_nlist(const FaissIndexIVF *obj)
{
	return reinterpret_cast<const faiss::IndexIVF *>(obj)->nlist;
}

size_t
faiss_IndexIVF_get_list_size(const FaissIndexIVF *index, size_t list_no)
{
	/* Out-of-range lists read as empty rather than asserting. */
	auto idx = reinterpret_cast<const faiss::IndexIVF *>(index);
	if (list_no >= idx->nlist || !idx->invlists)
		return 0;
	return idx->invlists->list_size(list_no);
}

void
faiss_IndexIVF_invlists_get_ids(const FaissIndexIVF *index, size_t list_no,
				idx_t *invlist)
{
	auto idx = reinterpret_cast<const faiss::IndexIVF *>(index);
	if (list_no >= idx->nlist || !idx->invlists)
		return;
	size_t n = idx->invlists->list_size(list_no);
	faiss::InvertedLists::ScopedIds ids(idx->invlists, list_no);
	for (size_t i = 0; i < n; i++)
		invlist[i] = ids[i];
}

/* ---- ParameterSpace ---- */

int
faiss_ParameterSpace_new(FaissParameterSpace **space)
{
	try {
		*space = reinterpret_cast<FaissParameterSpace *>(
			new faiss::ParameterSpace());
	}
	CDX_FAISS_CATCH
}

void
faiss_ParameterSpace_free(FaissParameterSpace *obj)
{
	delete reinterpret_cast<faiss::ParameterSpace *>(obj);
}

int
faiss_ParameterSpace_set_index_parameter(const FaissParameterSpace *space,
					 FaissIndex *cindex,
					 const char *parameter, double value)
{
	try {
		reinterpret_cast<const faiss::ParameterSpace *>(space)
			->set_index_parameter(
				reinterpret_cast<faiss::Index *>(cindex),
				parameter, value);
	}
	CDX_FAISS_CATCH
}

/* ---- RangeSearchResult, IDSelector ---- */

int
faiss_RangeSearchResult_new(FaissRangeSearchResult **p_rsr, idx_t nq)
{
	try {
		*p_rsr = reinterpret_cast<FaissRangeSearchResult *>(
			new faiss::RangeSearchResult(nq));
	}
	CDX_FAISS_CATCH
}

void
faiss_RangeSearchResult_free(FaissRangeSearchResult *obj)
{
	delete reinterpret_cast<faiss::RangeSearchResult *>(obj);
}

void
faiss_RangeSearchResult_lims(FaissRangeSearchResult *rsr, size_t **lims)
{
	*lims = reinterpret_cast<faiss::RangeSearchResult *>(rsr)->lims;
}

void
faiss_RangeSearchResult_labels(FaissRangeSearchResult *rsr, idx_t **labels,
			       float **distances)
{
	auto r = reinterpret_cast<faiss::RangeSearchResult *>(rsr);
	*labels = reinterpret_cast<idx_t *>(r->labels);
	*distances = r->distances;
}

int
faiss_IDSelectorBatch_new(FaissIDSelectorBatch **p_sel, size_t n,
			  const idx_t *indices)
{
	try {
		*p_sel = reinterpret_cast<FaissIDSelectorBatch *>(
			new faiss::IDSelectorBatch(
				n, reinterpret_cast<const faiss::Index::idx_t *>(
					   indices)));
	}
	CDX_FAISS_CATCH
}

void
faiss_IDSelector_free(FaissIDSelector *obj)
{
	delete reinterpret_cast<faiss::IDSelector *>(obj);
}

/* ---- distances ---- */

void
faiss_set_distance_compute_blas_threshold(int value)
{
	faiss::distance_compute_blas_threshold = value;
}

int
faiss_get_distance_compute_blas_threshold()
{
	return faiss::distance_compute_blas_threshold;
}

void
faiss_set_distance_compute_blas_database_bs(int value)
{
	faiss::distance_compute_blas_database_bs = value;
}

int
faiss_get_distance_compute_blas_database_bs()
{
	return faiss::distance_compute_blas_database_bs;
}

/* ---- clone ---- */

int
faiss_clone_index(const FaissIndex *idx, FaissIndex **p_out)
{
	try {
		*p_out = reinterpret_cast<FaissIndex *>(faiss::clone_index(
			reinterpret_cast<const faiss::Index *>(idx)));
	}
	CDX_FAISS_CATCH
}

} /* extern "C" */

/* ---- lists on disk (faiss_ext.h) ---- */

namespace {

const faiss::IndexIVF *
as_ivf(const FaissIndex *idx)
{
	auto ivf = dynamic_cast<const faiss::IndexIVF *>(
		reinterpret_cast<const faiss::Index *>(idx));
	if (!ivf)
		FAISS_THROW_MSG("not an IVF index");
	return ivf;
}

void
put(FILE *f, const void *p, size_t n)
{
	if (n && fwrite(p, 1, n, f) != n)
		FAISS_THROW_FMT("writing lists: %s", strerror(errno));
}

/* An empty index of t's training, its lists in RAM: a clone where t's
 * lists are in RAM already (and empty: a freshly trained index), else
 * t without its lists, through FAISS's own writer and reader. */
faiss::Index *
empty_like(const faiss::IndexIVF *t)
{
	std::unique_ptr<faiss::Index> c;
	if (dynamic_cast<const faiss::ArrayInvertedLists *>(t->invlists)) {
		if (t->ntotal != 0)
			FAISS_THROW_MSG("empty_like of a filled index");
		c.reset(faiss::clone_index(t));
	} else {
		faiss::VectorIOWriter w;
		faiss::write_index(t, &w);
		faiss::VectorIOReader r;
		r.data.swap(w.data);
		c.reset(faiss::read_index(&r, faiss::IO_FLAG_SKIP_IVF_DATA));
	}
	auto ivf = dynamic_cast<faiss::IndexIVF *>(c.get());
	ivf->replace_invlists(
		new faiss::ArrayInvertedLists(ivf->nlist, ivf->code_size),
		true);
	ivf->ntotal = 0;
	return c.release();
}

/* A base searched beside a delta: IndexShards with the ids as they are,
 * one thread (the store's callers bring their own). */
struct Overlay : faiss::IndexShards {
	Overlay(faiss::Index *base, faiss::Index *delta)
		: faiss::IndexShards((faiss::Index::idx_t)base->d, false, false)
	{
		metric_type = base->metric_type;
		add_shard(base);
		add_shard(delta);
	}
	void add(faiss::Index::idx_t, const float *) override
	{
		FAISS_THROW_MSG("an overlay takes ids");
	}
	void add_with_ids(faiss::Index::idx_t n, const float *x,
			  const faiss::Index::idx_t *ids) override
	{
		at(1)->add_with_ids(n, x, ids);
		syncWithSubIndexes();
	}
};

} /* namespace */

extern "C" {

int
cdx_faiss_read_mmap(FILE *f, FaissIndex **out)
{
	try {
		*out = reinterpret_cast<FaissIndex *>(
			faiss::read_index(f, faiss::IO_FLAG_MMAP));
	}
	CDX_FAISS_CATCH
}

int
cdx_faiss_empty_like(const FaissIndex *idx, FaissIndex **out)
{
	try {
		*out = reinterpret_cast<FaissIndex *>(empty_like(as_ivf(idx)));
	}
	CDX_FAISS_CATCH
}

int
cdx_faiss_write_ondisk(const FaissIndex *trained,
		       const FaissIndex *const *parts, int n,
		       int (*keep)(void *user, int64_t id), void *user,
		       FILE *f, uint64_t data_off, uint64_t *meta_off,
		       uint64_t *count)
{
	typedef faiss::Index::idx_t id_t;
	try {
		const faiss::IndexIVF *t = as_ivf(trained);
		size_t nl = t->nlist, cs = t->code_size, off = data_off;
		std::vector<const faiss::IndexIVF *> ps;
		for (int i = 0; i < n; i++) {
			ps.push_back(as_ivf(parts[i]));
			if (ps.back()->nlist != nl || ps.back()->code_size != cs)
				FAISS_THROW_MSG("parts of another training");
		}
		std::unique_ptr<faiss::Index> copy(empty_like(t));
		auto od = new faiss::OnDiskInvertedLists(nl, cs, "");
		dynamic_cast<faiss::IndexIVF *>(copy.get())
			->replace_invlists(od, true);
		size_t total = 0;
		std::vector<std::vector<char>> kept(ps.size());
		for (size_t l = 0; l < nl; l++) {
			size_t ln = 0;
			for (size_t i = 0; i < ps.size(); i++) {
				auto il = ps[i]->invlists;
				size_t m = il->list_size(l);
				faiss::InvertedLists::ScopedIds ids(il, l);
				kept[i].assign(m, 1);
				for (size_t j = 0; keep && j < m; j++)
					kept[i][j] = (char)keep(user, ids[j]);
				faiss::InvertedLists::ScopedCodes c(il, l);
				for (size_t j = 0; j < m; j++)
					if (kept[i][j]) {
						put(f, c.get() + j * cs, cs);
						ln++;
					}
			}
			for (size_t i = 0; i < ps.size(); i++) {
				auto il = ps[i]->invlists;
				size_t m = il->list_size(l);
				faiss::InvertedLists::ScopedIds ids(il, l);
				for (size_t j = 0; j < m; j++)
					if (kept[i][j])
						put(f, ids.get() + j,
						    sizeof(id_t));
			}
			od->lists[l].size = od->lists[l].capacity = ln;
			od->lists[l].offset = ln ? off : 0;
			off += ln * (cs + sizeof(id_t));
			total += ln;
		}
		od->totsize = off;
		copy->ntotal = (id_t)total;
		*meta_off = off;
		*count = total;
		faiss::write_index(copy.get(), f);
	}
	CDX_FAISS_CATCH
}

int
cdx_faiss_read_ondisk(FILE *f, const char *path, uint64_t file_size,
		      FaissIndex **out)
{
	try {
		std::unique_ptr<faiss::Index> idx(faiss::read_index(
			f, faiss::IO_FLAG_SKIP_IVF_DATA |
				   faiss::IO_FLAG_READ_ONLY));
		auto ivf = dynamic_cast<faiss::IndexIVF *>(idx.get());
		auto od = ivf ? dynamic_cast<faiss::OnDiskInvertedLists *>(
					ivf->invlists)
			      : nullptr;
		if (!od)
			FAISS_THROW_MSG("not an index with lists on disk");
		size_t row = od->code_size + sizeof(faiss::Index::idx_t), total = 0;
		if (od->totsize > file_size)
			FAISS_THROW_MSG("list data cut short");
		for (auto &l : od->lists) {
			if (l.size > l.capacity ||
			    (l.capacity && (l.offset > od->totsize ||
					    l.capacity > (od->totsize -
							  l.offset) / row)))
				FAISS_THROW_MSG("a list lies outside its file");
			total += l.size;
		}
		if (total != (size_t)ivf->ntotal)
			FAISS_THROW_MSG("list sizes disagree with the count");
		od->filename = path;
		od->read_only = true;
		od->prefetch_nthread = 0; /* no thread per search */
		od->do_mmap();
		*out = reinterpret_cast<FaissIndex *>(idx.release());
	}
	CDX_FAISS_CATCH
}

int
cdx_faiss_overlay_new(FaissIndex *base, FaissIndex *delta, FaissIndex **out)
{
	try {
		auto b = const_cast<faiss::IndexIVF *>(as_ivf(base));
		auto d = const_cast<faiss::IndexIVF *>(as_ivf(delta));
		if (b->d != d->d || b->nlist != d->nlist ||
		    b->code_size != d->code_size ||
		    b->metric_type != d->metric_type)
			FAISS_THROW_MSG("base and delta of another training");
		auto o = new Overlay(b, d);
		o->own_fields = true;
		*out = reinterpret_cast<FaissIndex *>(
			static_cast<faiss::Index *>(o));
	}
	CDX_FAISS_CATCH
}

int
cdx_faiss_overlay_parts(FaissIndex *idx, FaissIndex **base,
			FaissIndex **delta)
{
	auto o = dynamic_cast<Overlay *>(reinterpret_cast<faiss::Index *>(idx));
	if (!o)
		return 0;
	*base = reinterpret_cast<FaissIndex *>(o->at(0));
	*delta = reinterpret_cast<FaissIndex *>(o->at(1));
	return 1;
}


int
cdx_faiss_ivf_flat_search(const FaissIndex *idx, const float *q, int64_t k,
			  float *dis, int64_t *lab)
{
	try {
		const faiss::Index *base =
			reinterpret_cast<const faiss::Index *>(idx);
		/* exactly IndexIVFFlat: a subclass (FlatDedup) keeps vectors
		 * outside its lists */
		if (typeid(*base) != typeid(faiss::IndexIVFFlat))
			return 1;
		auto *ivf = static_cast<const faiss::IndexIVFFlat *>(base);
		if (ivf->metric_type != faiss::METRIC_INNER_PRODUCT ||
		    dynamic_cast<const faiss::ArrayInvertedLists *>(
			    ivf->invlists) == nullptr || k < 1)
			return 1;
		size_t np = std::min(ivf->nprobe, ivf->nlist);
		std::vector<float> cd(np);
		std::vector<faiss::Index::idx_t> cl(np);
		ivf->quantizer->search(1, q, (faiss::Index::idx_t)np, cd.data(),
				       cl.data());
		/* (score, label) of every probed vector, then the k best:
		 * a few thousand at the default nprobe */
		std::vector<std::pair<float, faiss::Index::idx_t>> all;
		std::vector<float> sc;
		for (faiss::Index::idx_t l : cl) {
			if (l < 0)
				continue;
			size_t n = ivf->invlists->list_size(l);
			if (n == 0)
				continue;
			faiss::InvertedLists::ScopedCodes codes(ivf->invlists, l);
			faiss::InvertedLists::ScopedIds ids(ivf->invlists, l);
			sc.resize(n);
			cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, ivf->d,
				    1.0f,
				    reinterpret_cast<const float *>(codes.get()),
				    ivf->d, q, 1, 0.0f, sc.data(), 1);
			for (size_t i = 0; i < n; i++)
				all.emplace_back(sc[i], ids[i]);
		}
		size_t m = std::min(all.size(), (size_t)k);
		std::partial_sort(all.begin(), all.begin() + (long)m, all.end(),
				  [](const std::pair<float, faiss::Index::idx_t> &a,
				     const std::pair<float, faiss::Index::idx_t> &b) {
					  return a.first > b.first ||
						 (a.first == b.first &&
						  a.second < b.second);
				  });
		for (size_t i = 0; i < (size_t)k; i++) {
			dis[i] = i < m ? all[i].first
				       : -std::numeric_limits<float>::max();
			lab[i] = i < m ? all[i].second : -1;
		}
	}
	CDX_FAISS_CATCH
}

} /* extern "C" */
