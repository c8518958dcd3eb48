/*
 * srv_internal.h - the running daemon's state (struct srv), shared by the
 * daemon's files (not installed, not for other modules).  Each file's own
 * functions are declared in its header: server.c (lifecycle, transports)
 * in daemon.h, dispatch.h, ingest.h, web.h, roots.h, access.h, reply.h,
 * request.h.  server.c owns the struct; the others read its fields as
 * documented here.
 */
#ifndef CDX_SRV_INTERNAL_H
#define CDX_SRV_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include <nng/nng.h>

#include "daemon/daemon.h"
#include "daemon/reply.h"
#include "daemon/roots.h"
#include "encoder/clip.h"
#include "store/store.h"

typedef struct srv_queue {
	srv_job *head, *tail;
	size_t n;
} srv_queue;

/* Per-worker state: its own encoder scratch. */
typedef struct srv_worker {
	struct srv *s;
	int index;
	int serves_slow;        /* takes jobs from the image queue */
	clip_ctx *ctx;
	pthread_t thread;
} srv_worker;

/* A listening nng socket and its fixed set of work items. */
typedef struct srv_listener srv_listener;

struct srv {
	const srv_config *cfg;
	clip_model *model;
	const clip_model_info *info;
	store *st;
	double started;         /* monotonic seconds */

	pthread_mutex_t mu;     /* guards the queues and ingest state */
	pthread_cond_t cv;      /* workers wait here */
	srv_queue fast, slow;
	int closing;            /* no new jobs; workers drain and exit */
	srv_worker *workers;
	int n_workers;

	srv_roots roots;        /* roots.h; its own lock */

	/* indexing (ingest.c, on indexer/indexer.h) */
	struct watch *watch;            /* NULL until ingest_start() */
	struct ingest_rate *rate;       /* ingest.c: the rate's samples */

	srv_listener *listeners[SRV_MAX_LISTEN];
	int n_listeners;
	pthread_t guard;        /* server.c: revives stuck IPC listeners */
	pthread_cond_t guard_cv;        /* CLOCK_MONOTONIC; under mu */
	int guard_started;
	struct http_server *http;       /* http.c: --http, or NULL */
	struct web *web;        /* web.c: the page, thumbnails, images */
	/* Results kept for the following pages (each has its own lock). */
	struct dupes_cache *dupes;      /* dupes_op.c (dupes/dupes.h) */
	struct retrieve_cache *retrieve;        /* retrieve.c */
	struct clusterd *cluster;       /* cluster_op.c: --nats, or NULL */
};

/* srv_submit() for the HTTP transport, with the bearer token of the
 * request's Authorization header (copied; NULL when none). */
void srv_submit_http(struct srv *s, char *req, size_t len, int origin,
    const char *auth, srv_reply_fn fn, void *user);

/* Monotonic seconds. */
static inline double
srv_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The operations in dupes.c and retrieve.c use dispatch.h's helpers. */
#include "daemon/dispatch.h"

#endif
