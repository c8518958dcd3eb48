/*
 * threads.c - library thread counts, set by main() (threads.h).
 */
#include "common/threads.h"

#include <cblas.h>
#include <omp.h>
#include <sched.h>

int
cdx_threads_available(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return 1;
	int n = CPU_COUNT(&set);
	return n > 0 ? n : 1;
}

int
cdx_threads_set(int n)
{
	if (n <= 0)
		n = cdx_threads_available();
	openblas_set_num_threads(n);
	omp_set_num_threads(n);
	return n;
}

void
cdx_threads_this(int n)
{
	if (n > 0)
		omp_set_num_threads(n);
}
