/*
 * queue.h - a bounded FIFO of pointers between the indexer's threads
 * (private to indexer/).
 *
 * Invariant: 0 <= n <= cap; v[(head + i) % cap] for i < n are the queued
 * items, oldest first.  A closed queue refuses pushes; pops return what is
 * left (drain) or nothing (drop), as chosen at close.
 */
#ifndef CDX_INDEXER_QUEUE_H
#define CDX_INDEXER_QUEUE_H

#include <pthread.h>
#include <stddef.h>

typedef struct wq {
	pthread_mutex_t mu;
	pthread_cond_t nonempty, nonfull;
	void **v;
	size_t cap, head, n;
	int closed;             /* 0, 1 drain, 2 drop */
} wq;

/* Errors: CDX_ENOMEM. */
int wq_init(wq *q, size_t cap);
/* Frees the slots (not the items); q must be empty or its items owned
 * elsewhere.  Accepts a zeroed queue. */
void wq_destroy(wq *q);
/* Appends x.  block = 1 waits for room; 0 fails with CDX_EFULL.
 * Errors: CDX_EFULL, CDX_ECLOSED (x not taken). */
int wq_push(wq *q, void *x, int block);
/* Takes the oldest item.  timeout_ms < 0 waits for ever.  NULL when the
 * queue is closed (and empty, or closed with drop) or on timeout. */
void *wq_pop(wq *q, int timeout_ms);
/* Takes an item without waiting, even from a closed queue (for cleanup). */
void *wq_take(wq *q);
/* Closes the queue: drop = 0 lets pops drain it, 1 makes them stop. */
void wq_close(wq *q, int drop);
size_t wq_len(wq *q);

#endif
