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
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
#include <faiss/impl/io.h>
#include <faiss/utils/distances.h>

#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/IndexFlat_c.h>
#include <faiss/c_api/IndexIVF_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/MetaIndexes_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/impl/AuxIndexStructures_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/index_io_c.h>
#include <faiss/c_api/utils/distances_c.h>

#include <cstdio>
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

} /* extern "C" */
