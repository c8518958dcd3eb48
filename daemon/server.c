/*
 * server.c - the running daemon: model, store, worker pool and nng REQ/REP
 * listeners; with http.c's HTTP server, all feed one dispatch (dispatch.c).
 *
 * Each nng listener is a rep0 socket with a fixed set of work items, each a
 * small state machine driven by its aio callback (RECV -> WAIT -> SEND).
 * Callbacks never block: a received request is copied into a job and
 * queued; a worker thread dispatches it and starts the send.  HTTP is
 * http.c's (libmicrohttpd), into the same queue (srv_submit_http).  A guard
 * thread replaces IPC listeners that nng 1.5.2 leaves stuck (see "the IPC
 * listener guard" below).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/proto.h"
#include "common/threads.h"
#include "daemon/access.h"
#include "daemon/cluster_op.h"
#include "daemon/dispatch.h"
#include "daemon/http.h"
#include "daemon/ingest.h"
#include "daemon/reply.h"
#include "daemon/roots.h"
#include "daemon/srv_internal.h"
#include "daemon/web.h"
#include "dupes/dupes.h"

#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>

#define WORK_ITEMS 16           /* concurrent requests per nng socket */
#define QUEUE_MAX 1024          /* queued jobs before "busy" */

const char *
srv_default_url(void)
{
	static char url[PATH_MAX + 16];
	return cdx_proto_default_url(url, sizeof(url));
}

/* ---- jobs and queues ---- */

static srv_job *
queue_pop(srv_queue *q)
{
	srv_job *j = q->head;
	if (j != NULL) {
		q->head = j->next;
		if (q->head == NULL)
			q->tail = NULL;
		q->n--;
		j->next = NULL;
	}
	return j;
}

static void
queue_push(srv_queue *q, srv_job *j)
{
	j->next = NULL;
	if (q->tail != NULL)
		q->tail->next = j;
	else
		q->head = j;
	q->tail = j;
	q->n++;
}

/* Requests that decode images, encode many texts or fit go to the slow
 * queue (srv_job_slow, dispatch.c): a wrong guess only changes which
 * worker runs it. */
static void
submit(srv *s, srv_job *job)
{
	int slow;

	if (job->len > s->cfg->max_request_bytes) {
		reply_error(job, CDX_PROTO_TOO_LARGE, "the request is %zu bytes; the "
		    "limit is %zu (--max-request-bytes)", job->len,
		    s->cfg->max_request_bytes);
		return;
	}
	slow = srv_job_slow(job->req, job->len);
	pthread_mutex_lock(&s->mu);
	if (s->closing || s->fast.n + s->slow.n >= QUEUE_MAX) {
		int closing = s->closing;
		pthread_mutex_unlock(&s->mu);
		reply_error(job, CDX_PROTO_BUSY, closing ? "the daemon is "
		    "shutting down" : "too many queued requests; try again");
		return;
	}
	queue_push(slow ? &s->slow : &s->fast, job);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void
submit_auth(srv *s, char *req, size_t len, int origin, const char *auth,
    srv_reply_fn fn, void *user)
{
	srv_job *job = calloc(1, sizeof(*job));
	if (job == NULL) {
		char *r = reply_error_json(CDX_PROTO_INTERNAL, "out of memory",
		    NULL);
		free(req);
		if (r != NULL)
			fn(user, r, strlen(r),
			    cdx_proto_err_get(CDX_PROTO_INTERNAL)->http_status);
		return;
	}
	job->req = req;
	job->len = len;
	job->origin = origin;
	job->auth = auth ? strdup(auth) : NULL;
	job->fn = fn;
	job->user = user;
	submit(s, job);
}

void
srv_submit(srv *s, char *req, size_t len, int origin, srv_reply_fn fn,
    void *user)
{
	submit_auth(s, req, len, origin, NULL, fn, user);
}

void
srv_submit_http(srv *s, char *req, size_t len, int origin, const char *auth,
    srv_reply_fn fn, void *user)
{
	submit_auth(s, req, len, origin, auth, fn, user);
}

struct sync_reply {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
	char *reply;
	size_t len;
	int status;
};

static void
sync_reply_fn(void *user, char *reply, size_t len, int status)
{
	struct sync_reply *r = user;
	pthread_mutex_lock(&r->mu);
	r->reply = reply;
	r->len = len;
	r->status = status;
	r->done = 1;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

void
srv_handle(srv *s, const char *req, size_t len, int origin, char **reply,
    size_t *reply_len, int *http_status)
{
	struct sync_reply r = { .done = 0 };
	char *copy = malloc(len + 1);

	pthread_mutex_init(&r.mu, NULL);
	pthread_cond_init(&r.cv, NULL);
	if (copy != NULL) {
		memcpy(copy, req, len);
		copy[len] = '\0';
	}
	/* A NULL request still gets a proper error reply from the dispatch. */
	srv_submit(s, copy, copy ? len : 0, origin, sync_reply_fn, &r);
	pthread_mutex_lock(&r.mu);
	while (!r.done)
		pthread_cond_wait(&r.cv, &r.mu);
	pthread_mutex_unlock(&r.mu);
	pthread_cond_destroy(&r.cv);
	pthread_mutex_destroy(&r.mu);
	*reply = r.reply;
	if (reply_len != NULL)
		*reply_len = r.len;
	if (http_status != NULL)
		*http_status = r.status;
}

static void *
worker_main(void *arg)
{
	srv_worker *w = arg;
	srv *s = w->s;

	/* queries' GEMMs take --threads cores (a thread's own setting) */
	cdx_threads_this(s->cfg->threads > 0 ? s->cfg->threads :
	    cdx_threads_available());

	for (;;) {
		srv_job *job = NULL;
		pthread_mutex_lock(&s->mu);
		for (;;) {
			if (w->serves_slow)
				job = queue_pop(&s->slow);
			if (job == NULL)
				job = queue_pop(&s->fast);
			if (job != NULL || s->closing)
				break;
			pthread_cond_wait(&s->cv, &s->mu);
		}
		pthread_mutex_unlock(&s->mu);
		if (job == NULL)
			break;          /* closing and drained */
		srv_dispatch(s, w, job);
	}
	return NULL;
}

/* ---- nng REQ/REP ---- */

enum work_state { WORK_RECV, WORK_WAIT, WORK_SEND };

typedef struct srv_work {
	srv_listener *l;
	nng_aio *aio;
	nng_ctx ctx;
	enum work_state state;
} srv_work;

struct srv_listener {
	srv *s;
	nng_socket sock;
	nng_listener nl;
	char *url;
	int origin;
	atomic_uint pipes_added;        /* connections that reached sock
	                                   (NNG_PIPE_EV_ADD_PRE), capped
	                                   or not: the guard's sign of life */
	atomic_int pipes_open;          /* added and not yet removed */
	int max_pipes;                  /* more are closed at ADD_PRE */
	/* Pipes closed at ADD_PRE: nng 1.5.2 still reports their removal,
	 * which must not count (a ring of the latest ids). */
	pthread_mutex_t rej_mu;
	uint32_t rejected[64];
	unsigned n_rejected;
	/* The guard's (guard_main's thread only): */
	uint64_t errors_seen;           /* the last "other" count */
	int down;                       /* nl is closed: listening again failed */
	int down_tries;                 /* failed tries since */
	struct timespec down_next;      /* the next try, CLOCK_MONOTONIC */
	srv_work work[WORK_ITEMS];
	int n_work;
};

static void work_cb(void *arg);

static void
work_reply(void *user, char *reply, size_t len, int http_status)
{
	srv_work *w = user;
	nng_msg *msg;
	(void)http_status;

	if (nng_msg_alloc(&msg, 0) != 0 || nng_msg_append(msg, reply, len) != 0) {
		/* Cannot answer: drop it; the client times out. */
		free(reply);
		w->state = WORK_RECV;
		nng_ctx_recv(w->ctx, w->aio);
		return;
	}
	free(reply);
	w->state = WORK_SEND;
	nng_aio_set_msg(w->aio, msg);
	nng_ctx_send(w->ctx, w->aio);
}

static void
work_cb(void *arg)
{
	srv_work *w = arg;
	int rv = nng_aio_result(w->aio);

	switch (w->state) {
	case WORK_RECV: {
		if (rv != 0) {
			if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
				return;
			nng_ctx_recv(w->ctx, w->aio);
			return;
		}
		nng_msg *msg = nng_aio_get_msg(w->aio);
		size_t len = nng_msg_len(msg);
		char *req = malloc(len + 1);
		if (req != NULL) {
			memcpy(req, nng_msg_body(msg), len);
			req[len] = '\0';
		}
		nng_msg_free(msg);
		w->state = WORK_WAIT;
		srv_submit(w->l->s, req, req ? len : 0, w->l->origin, work_reply, w);
		return;
	}
	case WORK_SEND:
		if (rv != 0)
			nng_msg_free(nng_aio_get_msg(w->aio));
		if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
			return;
		w->state = WORK_RECV;
		nng_ctx_recv(w->ctx, w->aio);
		return;
	case WORK_WAIT:
		return;
	}
}

static size_t
transport_max(size_t max_request)
{
	return max_request > SIZE_MAX / 2 - (64 << 10) ? SIZE_MAX :
	    2 * max_request + (64 << 10);
}

static void
pipe_added(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	srv_listener *l = arg;
	(void)p;
	(void)ev;
	l->pipes_open++;
}

/* Connections are capped so that idle clients cannot take the process's
 * last descriptors (a closed pipe at ADD_PRE is never added, and no
 * further event comes for it). */
static void
pipe_pre(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	srv_listener *l = arg;
	(void)ev;
	l->pipes_added++;
	if (l->pipes_open < l->max_pipes)
		return;
	pthread_mutex_lock(&l->rej_mu);
	l->rejected[l->n_rejected++ % 64] = (uint32_t)nng_pipe_id(p);
	pthread_mutex_unlock(&l->rej_mu);
	nng_pipe_close(p);
}

static void
pipe_removed(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	srv_listener *l = arg;
	uint32_t id = (uint32_t)nng_pipe_id(p);
	int counted = 1;
	(void)ev;
	pthread_mutex_lock(&l->rej_mu);
	for (unsigned i = 0; i < 64 && i < l->n_rejected && counted; i++)
		if (l->rejected[i] == id) {
			l->rejected[i] = 0;     /* pipe ids are never 0 */
			counted = 0;
		}
	pthread_mutex_unlock(&l->rej_mu);
	if (counted)
		l->pipes_open--;
}

/* Creates and starts l's nng listener on l->url (ipc: owner-only). */
static int
listener_listen(srv_listener *l)
{
	int rv;

	if ((rv = nng_listener_create(&l->nl, l->sock, l->url)) != 0)
		return rv;
	if (strncmp(l->url, "ipc://", 6) == 0)
		nng_listener_set_int(l->nl, NNG_OPT_IPC_PERMISSIONS, 0600);
	if ((rv = nng_listener_start(l->nl, 0)) != 0)
		nng_listener_close(l->nl);
	return rv;
}

static int
listener_start(srv *s, const char *url, cdx_error *err)
{
	srv_listener *l = calloc(1, sizeof(*l));
	int rv;

	if (l == NULL || (l->url = strdup(url)) == NULL) {
		free(l);
		return cdx_error_set(err, CDX_ENOMEM, "out of memory");
	}
	l->s = s;
	pthread_mutex_init(&l->rej_mu, NULL);
	l->origin = access_origin_of_url(url);
	if ((rv = nng_rep0_open(&l->sock)) != 0)
		goto out_free;
	/* Requests up to twice the limit are read and answered "too_large";
	 * the transport drops bigger ones with their connection (a client
	 * whose send is cut short that way can hang in nng 1.5.2). */
	nng_socket_set_size(l->sock, NNG_OPT_RECVMAXSZ,
	    transport_max(s->cfg->max_request_bytes));
	l->max_pipes = s->cfg->connections > 0 ? s->cfg->connections : 128;
	if ((rv = nng_pipe_notify(l->sock, NNG_PIPE_EV_ADD_PRE, pipe_pre,
	    l)) != 0 || (rv = nng_pipe_notify(l->sock, NNG_PIPE_EV_ADD_POST,
	    pipe_added, l)) != 0 || (rv = nng_pipe_notify(l->sock,
	    NNG_PIPE_EV_REM_POST, pipe_removed, l)) != 0 ||
	    (rv = listener_listen(l)) != 0)
		goto out_close;
	for (int i = 0; i < WORK_ITEMS; i++) {
		srv_work *w = &l->work[i];
		w->l = l;
		if ((rv = nng_aio_alloc(&w->aio, work_cb, w)) != 0)
			goto out_close;
		if ((rv = nng_ctx_open(&w->ctx, l->sock)) != 0) {
			nng_aio_free(w->aio);
			goto out_close;
		}
		l->n_work++;
	}
	for (int i = 0; i < l->n_work; i++) {
		l->work[i].state = WORK_RECV;
		nng_ctx_recv(l->work[i].ctx, l->work[i].aio);
	}
	s->listeners[s->n_listeners++] = l;
	cdx_log(CDX_LOG_INFO, "listening on %s", url);
	return 0;

out_close:
	for (int i = 0; i < l->n_work; i++) {
		nng_ctx_close(l->work[i].ctx);
		nng_aio_free(l->work[i].aio);
	}
	nng_close(l->sock);
out_free:
	pthread_mutex_destroy(&l->rej_mu);
	free(l->url);
	free(l);
	return cdx_error_set(err, rv == NNG_EADDRINUSE ? CDX_EBUSY : CDX_EIO,
	    "cannot listen on %s: %s%s", url, nng_strerror(rv),
	    rv == NNG_EADDRINUSE ? " (is another clipdexd running? use --listen)"
	    : "");
}

static void
listener_stop(srv_listener *l)
{
	if (l == NULL)
		return;
	nng_close(l->sock);
	for (int i = 0; i < l->n_work; i++)
		nng_aio_stop(l->work[i].aio);
	for (int i = 0; i < l->n_work; i++)
		nng_aio_free(l->work[i].aio);
	pthread_mutex_destroy(&l->rej_mu);
	free(l->url);
	free(l);
}

/* ---- the IPC listener guard ----
 *
 * nng 1.5.2 (Debian bookworm) has a bug in its IPC transport (upstream
 * #1518, fixed after 1.5.2): a client that disconnects before the
 * connection handshake is done (a killed client, a probe, a second
 * clipdexd checking whether the socket is stale) makes the handshake fail
 * with NNG_ECLOSED, which the listener takes for its own closing.  It then
 * never hands another connection to the socket: new clients connect and
 * send, and wait for ever.  The listener counts that error under its
 * "other" statistic; when the count moves, the guard dials the listener
 * and, if no pipe reaches the socket, replaces the listener.  Connections
 * made through the dead listener are closed with it; their clients
 * reconnect and send their request again.
 *
 * Listening again can fail, typically with EMFILE while idle clients hold
 * every descriptor (the dialled probe then fails too, so a starved
 * listener looks dead).  A closed listener counts no errors, so the guard
 * keeps its own "down" state and tries again, backing off from 200 ms to
 * 2 s, until it listens; the failure is logged once, the recovery once. */

#define GUARD_PERIOD_MS 200
#define GUARD_PROBE_MS 1000
#define GUARD_RETRY_MAX_MS 2000

/* The scope of listener id under st.  (nng 1.5.2's own
 * nng_stat_find_listener() returns the first listener of any id.) */
static nng_stat *
find_listener_stats(nng_stat *st, int id)
{
	for (; st != NULL; st = nng_stat_next(st)) {
		nng_stat *c;
		if (nng_stat_type(st) != NNG_STAT_SCOPE)
			continue;
		if (strcmp(nng_stat_name(st), "listener") == 0 &&
		    (c = nng_stat_find(st, "id")) != NULL &&
		    nng_stat_value(c) == (uint64_t)id)
			return st;
		if ((c = find_listener_stats(nng_stat_child(st), id)) != NULL)
			return c;
	}
	return NULL;
}

static uint64_t
listener_other_errors(nng_listener nl)
{
	nng_stat *all, *ls, *st;
	uint64_t v = 0;

	if (nng_stats_get(&all) != 0)
		return 0;
	if ((ls = find_listener_stats(all, nng_listener_id(nl))) != NULL &&
	    (st = nng_stat_find(ls, "other")) != NULL)
		v = nng_stat_value(st);
	nng_stats_free(all);
	return v;
}

/* Whether a fresh connection to l reaches its socket within the probe
 * time. */
static int
listener_alive(srv_listener *l)
{
	unsigned before = l->pipes_added;
	nng_socket probe;
	int alive = 0;

	if (nng_req0_open(&probe) != 0)
		return 1;       /* cannot tell: leave it alone */
	nng_socket_set_ms(probe, NNG_OPT_RECONNMINT, 50);
	if (nng_dial(probe, l->url, NULL, NNG_FLAG_NONBLOCK) == 0) {
		for (int t = 0; t < GUARD_PROBE_MS && !alive; t += 10) {
			alive = l->pipes_added != before;
			if (!alive)
				nng_msleep(10);
		}
	}
	nng_close(probe);
	return alive;
}

static int
time_reached(const struct timespec *t)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > t->tv_sec || (now.tv_sec == t->tv_sec &&
	    now.tv_nsec >= t->tv_nsec);
}

/* Listens on l again (its listener is closed): on failure, l is down and
 * the next try is scheduled, backing off. */
static void
listener_relisten(srv_listener *l)
{
	int rv = listener_listen(l);

	if (rv == 0) {
		if (l->down)
			cdx_log(CDX_LOG_INFO, "listening on %s again (after %d "
			    "failed tries)", l->url, l->down_tries);
		l->down = 0;
		l->down_tries = 0;
		l->errors_seen = listener_other_errors(l->nl);
		return;
	}
	if (!l->down)
		cdx_log(CDX_LOG_ERROR, "cannot listen on %s again: %s; trying "
		    "again until it can", l->url, nng_strerror(rv));
	l->down = 1;
	l->down_tries++;
	long ms = (long)GUARD_PERIOD_MS << (l->down_tries < 4 ? l->down_tries -
	    1 : 3);
	if (ms > GUARD_RETRY_MAX_MS)
		ms = GUARD_RETRY_MAX_MS;
	clock_gettime(CLOCK_MONOTONIC, &l->down_next);
	l->down_next.tv_nsec += (ms % 1000) * 1000000L;
	l->down_next.tv_sec += ms / 1000 + l->down_next.tv_nsec / 1000000000L;
	l->down_next.tv_nsec %= 1000000000L;
}

static void
listener_check(srv_listener *l)
{
	if (l->down) {
		if (time_reached(&l->down_next))
			listener_relisten(l);
		return;
	}
	uint64_t n = listener_other_errors(l->nl);
	if (n == l->errors_seen)
		return;
	if (listener_alive(l)) {
		l->errors_seen = n;
		return;
	}
	cdx_log(CDX_LOG_WARN, "%s stopped accepting connections (nng IPC bug "
	    "after a client left during its handshake, or no file descriptor "
	    "left); listening again", l->url);
	nng_listener_close(l->nl);
	listener_relisten(l);
}

static void *
guard_main(void *arg)
{
	srv *s = arg;

	pthread_mutex_lock(&s->mu);
	while (!s->closing) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += GUARD_PERIOD_MS * 1000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&s->guard_cv, &s->mu, &ts);
		if (s->closing)
			break;
		pthread_mutex_unlock(&s->mu);
		for (int i = 0; i < s->n_listeners; i++)
			if (strncmp(s->listeners[i]->url, "ipc://", 6) == 0)
				listener_check(s->listeners[i]);
		pthread_mutex_lock(&s->mu);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* ---- start and stop ---- */

int
srv_start(const srv_config *c, srv **out, cdx_error *err)
{
	srv *s = calloc(1, sizeof(*s));
	clip_model_params mp;
	store_params sp;
	int rc;

	if (s == NULL)
		return cdx_error_set(err, CDX_ENOMEM, "out of memory");
	s->cfg = c;
	s->started = srv_now();
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	{
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&s->guard_cv, &ca);
		pthread_condattr_destroy(&ca);
	}

	clip_model_default_params(&mp);
	mp.precision = c->precision;
	if ((rc = clip_model_load(c->model_dir, &mp, &s->model, err)) != 0)
		goto fail;
	s->info = clip_model_get_info(s->model);
	cdx_log(CDX_LOG_INFO, "encoder: %s (asked for %s), %s, weights %.1f "
	    "MB", clip_precision_name(s->info->precision),
	    clip_precision_name(c->precision), s->info->kernels,
	    (double)s->info->weight_bytes / 1e6);
	cdx_log(CDX_LOG_INFO, "model %s (%s): %d-d embeddings, %dx%d images, "
	    "%d-token texts%s", s->info->id, clip_family_name(s->info->family),
	    s->info->embed_dim, s->info->image_size, s->info->image_size,
	    s->info->context_len, s->info->has_sigmoid ?
	    ", match probabilities" : "");

	sp = store_default_params();
	sp.dim = s->info->embed_dim;
	sp.model_id = s->info->key;     /* weights + architecture */
	sp.model_label = s->info->name; /* the folder's name: a label */
	sp.model_family = clip_family_name(s->info->family);
	sp.index_kind = c->index_kind ? c->index_kind : "auto";
	sp.reembed = c->reembed;
	if ((rc = store_open(c->store_dir, &sp, &s->st, err)) != 0)
		goto fail;
	{
		store_stats st;
		store_get_stats(s->st, &st);
		cdx_log(CDX_LOG_INFO, "store %s: %llu images, index %s%s",
		    c->store_dir, (unsigned long long)st.images, st.index_kind,
		    st.rebuilt_on_open ? " (rebuilt from the records)" : "");
	}
	roots_init(&s->roots, s->st, c);
	if ((rc = dupes_cache_new(s->st, &s->dupes, err)) != 0)
		goto fail;
	if ((s->retrieve = retrieve_cache_new()) == NULL) {
		rc = cdx_error_set(err, CDX_ENOMEM, "out of memory");
		goto fail;
	}

	s->n_workers = c->workers > 0 ? c->workers : 2;
	s->workers = calloc((size_t)s->n_workers, sizeof(*s->workers));
	if (s->workers == NULL) {
		rc = cdx_error_set(err, CDX_ENOMEM, "out of memory");
		goto fail;
	}
	for (int i = 0; i < s->n_workers; i++) {
		srv_worker *w = &s->workers[i];
		w->s = s;
		w->index = i;
		/* Worker 0 never takes image jobs, so text queries always have a
		 * worker; with a single worker it takes everything. */
		w->serves_slow = i > 0 || s->n_workers == 1;
		if ((rc = clip_ctx_new(s->model, SRV_TERMS_MAX, &w->ctx, err)) != 0)
			goto fail;
	}
	/* Zero-shot tag sets of another model are made again for this one
	 * before anything is indexed or asked (tags_op.c). */
	tags_rebuild_stale(s, s->workers[0].ctx);
	for (int i = 0; i < s->n_workers; i++) {
		if (pthread_create(&s->workers[i].thread, NULL, worker_main,
		    &s->workers[i]) != 0) {
			rc = cdx_error_set(err, CDX_ENOMEM, "cannot start a worker");
			s->n_workers = i;
			goto fail;
		}
	}
	if ((rc = ingest_start(s, err)) != 0)
		goto fail;
	/* the cluster before the listeners: a front never answers from
	 * its own (empty) store */
	if ((rc = clusterd_start(s, err)) != 0)
		goto fail;

	if (c->n_listen == 0)
		rc = listener_start(s, srv_default_url(), err);
	for (int i = 0; rc == 0 && i < c->n_listen; i++)
		rc = listener_start(s, c->listen[i], err);
	if (rc == 0 && c->http != NULL && (rc = web_start(s, err)) == 0)
		rc = http_start(s, &s->http, err);
	if (rc != 0)
		goto fail;
	if (pthread_create(&s->guard, NULL, guard_main, s) != 0) {
		rc = cdx_error_set(err, CDX_ENOMEM, "cannot start a thread");
		goto fail;
	}
	s->guard_started = 1;
	*out = s;
	return 0;
fail:
	srv_stop(s);
	return rc;
}

void
srv_stop(srv *s)
{
	if (s == NULL)
		return;
	/* 0. Leave the cluster: no more of its searches or puts. */
	clusterd_quiesce(s);
	/* 1. Finish what the workers have; new requests are answered "busy". */
	pthread_mutex_lock(&s->mu);
	s->closing = 1;
	pthread_cond_broadcast(&s->cv);
	pthread_cond_signal(&s->guard_cv);
	pthread_mutex_unlock(&s->mu);
	if (s->guard_started)
		pthread_join(s->guard, NULL);
	for (int i = 0; i < s->n_workers; i++)
		if (s->workers[i].thread)
			pthread_join(s->workers[i].thread, NULL);
	/* 2. Indexing: the batch in progress is committed; waiters answered
	 * (those on clipdex.api too: the cluster's connection is still up). */
	ingest_stop(s);
	clusterd_stop(s);       /* no worker asks the shards any more */
	/* 3. Transports (their last replies are out). */
	for (int i = 0; i < s->n_listeners; i++)
		listener_stop(s->listeners[i]);
	web_stop(s);            /* its queued requests answered first */
	http_stop(s->http);     /* every call answered by now */
	web_free(s);
	/* 4. The store saves its index on close. */
	dupes_cache_free(s->dupes);
	retrieve_cache_free(s->retrieve);
	store_close(s->st);
	for (int i = 0; i < s->n_workers; i++)
		clip_ctx_free(s->workers[i].ctx);
	free(s->workers);
	clip_model_free(s->model);
	roots_free(&s->roots);
	pthread_cond_destroy(&s->cv);
	pthread_cond_destroy(&s->guard_cv);
	pthread_mutex_destroy(&s->mu);
	free(s);
}
