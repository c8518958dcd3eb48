/*
 * faiss_ext.h - clipdex's own FAISS entry points beyond the C API, for the
 * disk-resident IVF-PQ kind (see docs/STORE.md, "Lists on disk").
 * Implemented in faiss_c.cpp; errors as the C API's: 0, or a negative code
 * with the message in faiss_get_last_error().  Not thread-safe on one index
 * except where FAISS's own search is (concurrent searches).
 */
#ifndef CDX_FAISS_EXT_H
#define CDX_FAISS_EXT_H

#include <stdint.h>
#include <stdio.h>

#include <faiss/c_api/Index_c.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Reads an index whose inverted lists stay in the file, memory-mapped
 * read-only (FAISS's IO_FLAG_MMAP); f must be a real file, positioned at
 * the index.  The mapping outlives f and the file's name. */
int cdx_faiss_read_mmap(FILE *f, FaissIndex **out);

/* An empty index trained as idx (an IVF index), its lists in memory. */
int cdx_faiss_empty_like(const FaissIndex *idx, FaissIndex **out);

/* Writes the inverted lists of parts[0..n) (IVF indexes trained alike)
 * merged list by list to f from file offset data_off, where f stands,
 * keeping the entries whose id keep(user, id) accepts (keep NULL: all),
 * then an empty copy of `trained` (any of them, or their empty template)
 * whose lists point at that data; sets *meta_off to where the copy begins
 * and *count to the entries written.  The data are FAISS's on-disk layout (per list, codes then ids);
 * the copy reads back with cdx_faiss_read_ondisk. */
int cdx_faiss_write_ondisk(const FaissIndex *trained,
			   const FaissIndex *const *parts, int n,
			   int (*keep)(void *user, int64_t id), void *user,
			   FILE *f, uint64_t data_off, uint64_t *meta_off,
			   uint64_t *count);

/* Reads the index cdx_faiss_write_ondisk wrote from f (positioned at its
 * copy; any FILE, e.g. fmemopen) and maps its lists read-only from path,
 * which must be file_size bytes long and hold every list in range. */
int cdx_faiss_read_ondisk(FILE *f, const char *path, uint64_t file_size,
			  FaissIndex **out);

/* An index over a read-only base and an in-memory delta of the same
 * training (both IVF): searches merge both, adds go to the delta, removals
 * are refused (the store keeps tombstones).  Takes both on success. */
int cdx_faiss_overlay_new(FaissIndex *base, FaissIndex *delta,
			  FaissIndex **out);

/* The k best (inner product) of an IVF-Flat index for one query, as its
 * own search answers up to float rounding (nprobe lists; equal scores
 * smaller label first; missing ranks: label -1, score -FLT_MAX), with
 * each list's scores computed by one OpenBLAS sgemv over its vectors:
 * Debian's FAISS scans them with its baseline-x86-64 kernel at a quarter
 * of the memory's rate.  1 (nothing written) when idx is not an
 * inner-product IndexIVFFlat with its lists in memory. */
int cdx_faiss_ivf_flat_search(const FaissIndex *idx, const float *q,
			      int64_t k, float *dis, int64_t *lab);

/* 1 and the parts if idx is an overlay, else 0. */
int cdx_faiss_overlay_parts(FaissIndex *idx, FaissIndex **base,
			    FaissIndex **delta);

#ifdef __cplusplus
}
#endif

#endif
