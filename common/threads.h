/*
 * threads.h - the process-wide thread counts of the libraries clipdex
 * links (OpenBLAS; OpenMP, which runs oneDNN and FAISS), set in one place.
 *
 * Only a program's main() calls this, once, before it starts threads of
 * its own: the counts are process-wide.  No library module of clipdex sets
 * them.  Not part of libclipdex.
 */
#ifndef CDX_THREADS_H
#define CDX_THREADS_H

/* The cores this process may run on (sched_getaffinity), at least 1. */
int cdx_threads_available(void);

/* Sets OpenBLAS' thread count (process-wide) and OpenMP's for the calling
 * thread to n (n <= 0: every available core) and returns the count set.
 * OpenMP (libgomp) keeps the count per thread: threads started later take
 * OpenMP's default (every core, or $OMP_NUM_THREADS) unless they call
 * cdx_threads_this(). */
int cdx_threads_set(int n);

/* OpenMP's thread count for the parallel work the calling thread starts
 * (oneDNN's GEMMs in bf16 and int8), n >= 1; n <= 0 leaves it.  This is
 * the calling thread's own setting (an OpenMP per-thread variable), not
 * process-wide: a module may call it on a thread it started, to give that
 * thread's work its share of the cores.  Threads that never call it use
 * OpenMP's default (every core, or $OMP_NUM_THREADS). */
void cdx_threads_this(int n);

#endif
