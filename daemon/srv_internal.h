/*
 * srv_internal.h - what the daemon's files share (not installed, not for
 * other modules).
 */
#ifndef CDX_SRV_INTERNAL_H
#define CDX_SRV_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/supplemental/http/http.h>
#include <cjson/cJSON.h>

#include "daemon/daemon.h"
#include "encoder/clip.h"
#include "store/store.h"

/* One queued request. */
typedef struct srv_job {
	struct srv_job *next;
	char *req;
	size_t len;
	int origin;
	char *auth;             /* token from an HTTP Authorization header */
	srv_reply_fn fn;
	void *user;
} srv_job;

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

	pthread_mutex_t mu;     /* guards the queues, roots and ingest state */
	pthread_cond_t cv;      /* workers wait here */
	srv_queue fast, slow;
	int closing;            /* no new jobs; workers drain and exit */
	srv_worker *workers;
	int n_workers;

	char *roots[SRV_MAX_ROOTS];
	int n_roots;

	/* indexing (ingest.c, on indexer/indexer.h) */
	struct watch *watch;            /* NULL until ingest_start() */

	srv_listener *listeners[SRV_MAX_LISTEN];
	int n_listeners;
	pthread_t guard;        /* server.c: revives stuck IPC listeners */
	pthread_cond_t guard_cv;        /* CLOCK_MONOTONIC; under mu */
	int guard_started;
	nng_http_server *http;
	nng_http_handler *http_handler;
	struct web *web;        /* web.c: the page, thumbnails, images */
	/* Results kept for the following pages (each has its own lock). */
	struct dupes_cache *dupes;      /* dupes_op.c (dupes/dupes.h) */
	struct retrieve_cache *retrieve;        /* retrieve.c */
};

double srv_now(void);

/* ---- dispatch.c: request handling shared by every operation ---- */

/* A request being handled on a worker: the parsed JSON and, when an
 * operation fails, the protocol error to report.  An operation either
 * answers (srv_reply_ok, which clears job) and returns 0, hands the job on
 * (clearing job) and returns 0, or returns -1 after srv_fail*(). */
typedef struct srv_call {
	srv *s;
	srv_worker *w;          /* its clip_ctx encodes the request's terms */
	srv_job *job;
	cJSON *req;
	const cJSON *tag;
	const char *ecode;      /* protocol error code when failing */
	char emsg[CDX_ERRMSG_MAX + 64];
} srv_call;

/* Records a protocol error (code from docs/PROTOCOL.md); returns -1. */
int srv_fail(srv_call *c, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Records a CDX error with its message, mapped by srv_error_code(). */
int srv_fail_cdx(srv_call *c, int rc, const cdx_error *err);
/* Optional fields of obj: absent leaves *out; wrong type or range fails
 * (an integer above hi fails with "too_large" when toobig is not NULL). */
int srv_get_int(srv_call *c, const cJSON *obj, const char *name, long lo,
    long hi, const char *toobig, long *out);
int srv_get_num(srv_call *c, const cJSON *obj, const char *name, double lo,
    double hi, int *present, double *out);
int srv_get_bool(const cJSON *obj, const char *name);
/* Answers the call with the success object r (adds v, ok, tag; takes r). */
void srv_reply_ok(srv_call *c, cJSON *r);
/* The query vector (embed_dim floats) of the request's terms ("terms",
 * or one text/image/path/id at the top level): the weighted sum of their
 * embeddings, normalised once here (it is the combiner: encoder/clip.h).  *text_only (may
 * be NULL) is set to 1 when every term is a text. */
int srv_query_vector(srv_call *c, float *q, int *text_only);
/* The bytes of an image given as base64 (image, a JSON string) or as a
 * path inside the roots (path); exactly one is not NULL.  *data is
 * malloc'd.  Fails with bad_request, too_large, forbidden or not_found. */
int srv_image_bytes(srv_call *c, const cJSON *image, const cJSON *path,
    uint8_t **data, size_t *len);
/* One search hit as the protocol's result object; prob (the match
 * probability, clip_match_prob) is added unless it is NAN. */
cJSON *srv_hit_json(const store_hit *h, double prob);

/* search options: k, offset, min_score, min_prob, collapse, filter.
 * with_prob is set by the caller once it knows the query: results carry
 * `prob` for text queries of a model with a sigmoid head. */
typedef struct srv_search_opts {
	long k, offset;
	int has_min;
	double min_score;
	int has_min_prob;
	double min_prob;
	int with_prob;
	double collapse;
	store_filter filter;
} srv_search_opts;
int srv_parse_search_opts(srv_call *c, srv_search_opts *o);

/* The operations of dupes_op.c (dupes, check) and retrieve.c
 * (docs/PROTOCOL.md). */
int dupes_op(srv_call *c);
int dupes_op_check(srv_call *c);
int retrieve_op(srv_call *c);
/* retrieve.c: the last few result streams of the daemon's store, for
 * paging (thread-safe: it has its own lock).  new returns NULL when out of
 * memory; free accepts NULL and runs once no worker is left. */
struct retrieve_cache *retrieve_cache_new(void);
void retrieve_cache_free(struct retrieve_cache *rc);

/* dispatch.c: handles one job on a worker; answers it through job->fn, or
 * hands it to the indexing thread. Frees the job when answered. */
void srv_dispatch(srv *s, srv_worker *w, srv_job *job);

/* Answers a job with a reply built by the caller and frees the job. */
void srv_job_reply(srv_job *job, char *reply, int http_status);
/* Answers a job with an error reply. */
void srv_job_error(srv_job *job, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void srv_job_free(srv_job *job);

/* Maps a CDX code to a protocol error code and HTTP status. */
const char *srv_error_code(int cdx, int *http_status);

/* Path rules: canonicalises path into out (realpath) and checks that it is
 * inside a root.  Returns 0, CDX_ENOTFOUND, or CDX_EPERM. */
int srv_path_check(srv *s, const char *path, char *out, size_t outlen,
    int allow_new_root);
/* Adds a canonical root (persisted in the store). */
int srv_root_add(srv *s, const char *canon);

/* web.c: the web page, thumbnails and images on the HTTP server (see the
 * top of web.c).  web_add_handlers() returns 0 or an nng error; web_stop()
 * runs before the HTTP server stops and accepts a daemon without it. */
int web_add_handlers(srv *s);
void web_stop(srv *s);
/* For POST /api: refuses (answers 403 and returns -1) a request from a
 * browser on another site: a foreign Origin header, or on a loopback
 * address a Host that is not loopback (DNS rebinding).  Else 0. */
int web_api_guard(srv *s, nng_aio *aio, nng_http_req *req);
/* The thumbnail cache's bound in bytes, read when the daemon starts
 * (default 64 MiB), and what it holds now (for tests). */
extern size_t web_cache_max;
void web_cache_stats(srv *s, size_t *n, size_t *bytes);
/* For tests: "<prefix>/<id>[?v=N]" -> id (0 or -1), and one thumbnail. */
int web_parse_id(const char *uri, const char *prefix, uint64_t *id,
    int64_t *v);
int web_thumbnail(const uint8_t *data, size_t len, uint64_t max_pixels,
    uint8_t **out, size_t *out_len, cdx_error *err);

/* ingest.c: the daemon's side of the indexer (indexer/indexer.h).
 * ingest_start() starts it and rescans every watched folder (--watch and
 * the folders added before, kept in the store under "indexer.roots"). */
int ingest_start(srv *s, cdx_error *err);
void ingest_stop(srv *s);
/* Queues the indexing of a canonical path (a folder becomes a watched
 * root); when waiter is not NULL it is answered once done.  Takes
 * ownership of waiter. */
void ingest_enqueue(srv *s, const char *canon, srv_job *waiter);
/* Stops watching the watched roots at or under path (remove op). */
void ingest_unwatch(srv *s, const char *path);
/* The "queue" object of the status reply. */
struct cJSON *ingest_status_json(srv *s);

/* Reads a whole file (up to max bytes). */
int srv_read_file(const char *path, size_t max, uint8_t **data, size_t *len,
    cdx_error *err);

#endif
