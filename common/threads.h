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

/* Sets OpenBLAS' and OpenMP's thread counts to n (n <= 0: every available
 * core) and returns the count set. */
int cdx_threads_set(int n);

#endif
