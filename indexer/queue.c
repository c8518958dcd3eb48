/*
 * queue.c - bounded FIFO between the indexer's stages.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "common/cdx.h"
#include "indexer/queue.h"

int
wq_init(wq *q, size_t cap)
{
	pthread_condattr_t ca;

	q->v = calloc(cap, sizeof(*q->v));
	if (q->v == NULL)
		return CDX_ENOMEM;
	q->cap = cap;
	q->head = q->n = 0;
	q->closed = 0;
	pthread_mutex_init(&q->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->nonempty, &ca);
	pthread_cond_init(&q->nonfull, &ca);
	pthread_condattr_destroy(&ca);
	return 0;
}

void
wq_destroy(wq *q)
{
	if (q->v == NULL)
		return;
	free(q->v);
	q->v = NULL;
	pthread_cond_destroy(&q->nonempty);
	pthread_cond_destroy(&q->nonfull);
	pthread_mutex_destroy(&q->mu);
}

int
wq_push(wq *q, void *x, int block)
{
	pthread_mutex_lock(&q->mu);
	while (!q->closed && q->n == q->cap) {
		if (!block) {
			pthread_mutex_unlock(&q->mu);
			return CDX_EFULL;
		}
		pthread_cond_wait(&q->nonfull, &q->mu);
	}
	if (q->closed) {
		pthread_mutex_unlock(&q->mu);
		return CDX_ECLOSED;
	}
	q->v[(q->head + q->n) % q->cap] = x;
	q->n++;
	pthread_cond_signal(&q->nonempty);
	pthread_mutex_unlock(&q->mu);
	return 0;
}

static void *
take_locked(wq *q)
{
	void *x = q->v[q->head];
	q->head = (q->head + 1) % q->cap;
	q->n--;
	pthread_cond_signal(&q->nonfull);
	return x;
}

void *
wq_pop(wq *q, int timeout_ms)
{
	struct timespec dl;
	void *x = NULL;

	if (timeout_ms >= 0) {
		clock_gettime(CLOCK_MONOTONIC, &dl);
		dl.tv_sec += timeout_ms / 1000;
		dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
		if (dl.tv_nsec >= 1000000000L) {
			dl.tv_sec++;
			dl.tv_nsec -= 1000000000L;
		}
	}
	pthread_mutex_lock(&q->mu);
	while (q->n == 0 && !q->closed) {
		if (timeout_ms < 0)
			pthread_cond_wait(&q->nonempty, &q->mu);
		else if (pthread_cond_timedwait(&q->nonempty, &q->mu, &dl) ==
		    ETIMEDOUT)
			break;
	}
	if (q->n > 0 && q->closed != 2)
		x = take_locked(q);
	pthread_mutex_unlock(&q->mu);
	return x;
}

void *
wq_take(wq *q)
{
	void *x = NULL;
	pthread_mutex_lock(&q->mu);
	if (q->n > 0)
		x = take_locked(q);
	pthread_mutex_unlock(&q->mu);
	return x;
}

void
wq_close(wq *q, int drop)
{
	pthread_mutex_lock(&q->mu);
	q->closed = drop ? 2 : 1;
	pthread_cond_broadcast(&q->nonempty);
	pthread_cond_broadcast(&q->nonfull);
	pthread_mutex_unlock(&q->mu);
}

size_t
wq_len(wq *q)
{
	pthread_mutex_lock(&q->mu);
	size_t n = q->n;
	pthread_mutex_unlock(&q->mu);
	return n;
}
