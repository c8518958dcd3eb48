/*
 * cluster.h - clipdex across machines on NATS (docs/SCALE.md, "Shards on
 * NATS"): the connection, shard membership, the scatter-gather of a query
 * to every shard, a request to one shard, and the JetStream work queue of
 * image locations that encoding workers consume.  Bodies are opaque bytes
 * here; the daemon gives them meaning (daemon/cluster_op.c).
 *
 * On the wire:
 *   clipdex.query            every shard answers it (scatter)
 *   clipdex.shard.NAME.query one shard: the scatter asked again of a
 *                            member that has not answered (after 200 ms,
 *                            then 400, 800, ... until the deadline: a
 *                            shard reconnecting to another node missed
 *                            the first)
 *   clipdex.shard.NAME.put   one shard: what a worker encoded, or a record
 *                            moved from another shard
 *   clipdex.work             the work queue: stream CLIPDEX_WORK (work-queue
 *                            retention, file storage), durable pull
 *                            consumer "workers" shared by every worker
 *   clipdex.api              the protocol (docs/PROTOCOL.md) for clients
 *                            on NATS: one member of queue group "api"
 *                            answers each request
 *   bucket clipdex_shards    a key per shard (its name): its JSON
 * A shard's answer is its name, a NUL, then the body.
 *
 * Membership is the bucket's keys, watched by a thread of the connection:
 * a shard that joined and never left (killed) stays a member, so that its
 * silence is reported (clu_gather.missing), never hidden.  Owners are
 * chosen by rendezvous hashing of a key (the daemon uses the image's
 * path) over the members, a serving shard counting itself among them:
 * adding a shard moves only the records it now owns.
 *
 * Thread-safety: every function may be called from any thread once
 * clu_open returned, except clu_close.  Handlers run on NATS's threads
 * (one per subscription), concurrently with the caller's.
 * Errors: 0, or CDX_EIO (the servers: unreachable, a timeout, JetStream
 * not ready), CDX_EINVAL, CDX_ENOMEM, with a message in err; the api
 * request and the merge name theirs.
 */
#ifndef CDX_CLUSTER_H
#define CDX_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "common/cdx.h"

typedef struct clu clu;

/* The longest shard name: letters, digits, '-' and '_'. */
#define CLU_NAME_MAX 64

typedef struct clu_params {
	const char *urls;   /* "nats://h:p[,nats://h:p...]" (required) */
	int replicas;       /* of the stream and the bucket (default 1) */
	int timeout_ms;     /* scatter deadline, request timeout, an
			       asker's wait for the bucket (2000) */
	int ack_wait_ms;    /* a job not acknowledged in this long is
			       delivered again (default 60000) */
	int worker;         /* 1: bind the work queue's consumer */
	int asker;          /* 1: a client: binds to the bucket (waiting up
			       to timeout_ms for it), never makes the bucket
			       or the stream */
} clu_params;

void clu_default_params(clu_params *p);

/* Connects (reconnecting forever afterwards, to any of urls), makes the
 * bucket and the work stream if they are missing (retrying while
 * JetStream elects its leaders, up to 20 s) and reads the membership.
 * An asker (p->asker) only binds to the bucket; CDX_EIO when there is
 * none within p->timeout_ms (no clipdexd has joined these servers). */
int clu_open(const clu_params *p, clu **out, cdx_error *err);
/* Leaves nothing behind but the membership entries put by clu_join
 * (clu_leave removes one).  NULL is a no-op. */
void clu_close(clu *c);

/* Puts (or updates) name's entry in the bucket: json, at most 4 KiB. */
int clu_join(clu *c, const char *name, const char *json, cdx_error *err);
/* Deletes name's entry: a clean stop. */
int clu_leave(clu *c, const char *name);
/* A snapshot of the members' names, sorted; clu_names_free. */
int clu_members(clu *c, char ***names, size_t *n);
void clu_names_free(char **names, size_t n);
/* The member that owns key (rendezvous hashing), into name; CDX_ENOTFOUND
 * while there is no member. */
int clu_owner(clu *c, const void *key, size_t len, char *name, size_t cap);
/* Calls fn(user) on the watcher's thread after every membership change
 * (set it before clu_join; NULL: none). */
void clu_on_change(clu *c, void (*fn)(void *user), void *user);

/* A handler: the reply (malloc'd, *rlen bytes), or NULL for none. */
typedef char *(*clu_handler)(void *user, const char *req, size_t len,
			     size_t *rlen);
/* Serves as shard `name`: query answers clipdex.query, put its own put
 * subject. */
int clu_serve(clu *c, const char *name, clu_handler query, clu_handler put,
	      void *user, cdx_error *err);

/* Stops serving: no new messages, and returns once the handlers running
 * have returned (up to 10 s).  clu_close does it too. */
void clu_unserve(clu *c);

typedef struct clu_gather {
	size_t n;             /* answers */
	char **shards;        /* who answered */
	char **bodies;        /* their bodies (NUL-terminated) */
	size_t n_missing;     /* members that did not answer in time */
	char **missing;
} clu_gather;
/* Publishes req to every shard and gathers the answers until every member
 * answered or the deadline passed.  A shard that answered a scatter in
 * the last 10 s but that the membership watcher has not shown yet (it is
 * behind: JetStream recovering from a lost node) is waited for as a
 * member, and is listed in missing if it does not answer. */
int clu_scatter(clu *c, const char *req, size_t len, clu_gather *out,
		cdx_error *err);
void clu_gather_free(clu_gather *g);

/* Asks one shard (its put subject) and waits for its answer (*reply
 * malloc'd, NUL-terminated). */
int clu_request(clu *c, const char *shard, const char *req, size_t len,
		char **reply, size_t *rlen, cdx_error *err);

/* The protocol on clipdex.api.  A member serves it (once) with
 * clu_serve_api: h runs on NATS's thread for each request (req is valid
 * during the call) and must answer it exactly once, from any thread, with
 * clu_api_reply (which frees r), before clu_close.  clu_unserve stops new
 * requests. */
typedef struct clu_api_req clu_api_req;
typedef void (*clu_api_handler)(void *user, const char *req, size_t len,
				clu_api_req *r);
int clu_serve_api(clu *c, clu_api_handler h, void *user, cdx_error *err);
/* The longest reply the servers carry (their max_payload): a longer one
 * is never sent, and its asker times out; answer with an error instead. */
size_t clu_api_room(const clu_api_req *r);
void clu_api_reply(clu_api_req *r, const char *reply, size_t len);
/* A client's request: the reply of the member that answered (*reply
 * malloc'd, NUL-terminated).  Errors: CDX_ETIMEDOUT (no reply within
 * timeout_ms), CDX_ECLOSED (no member serves clipdex.api), CDX_ETOOBIG
 * (req over the servers' max_payload), CDX_EIO, CDX_ENOMEM. */
int clu_api_request(clu *c, const char *req, size_t len, int timeout_ms,
		    char **reply, size_t *rlen, cdx_error *err);

/* ---- merging a scatter's answers (cluster/merge.c) ----
 * The query and its answers, for every asker (a daemon, libclipdex):
 *   {"q": [dim floats], "k": n, "path_prefix": s, "time_field":
 *    "capture"|"mtime", "time_min": t, "time_max": t, "with_prob": b}
 *   -> {"images": n, "hits": [search results, as the protocol's, with
 *      "prob" when with_prob and the model has a sigmoid]} or
 *      {"error": message} */
typedef struct clu_merge_opts {
	long k, offset;         /* results [offset, offset + k) */
	int has_min_score, has_min_prob;
	double min_score, min_prob;
} clu_merge_opts;
/* The answers of g merged into *out (the caller's): {"results": [best
 * score first, ties by shard and id; a path (and frame time) answered by
 * two shards during a hand-over counted once; each with its "shard"],
 * "shards": members asked, "images": their sum, "partial": bool,
 * "missing": [names]}.  Errors: CDX_EBUSY (no member: no shard has
 * joined), CDX_EINVAL (a shard's error, quoted), CDX_ENOMEM. */
struct cJSON;
int clu_merge(const clu_gather *g, const clu_merge_opts *o,
	      struct cJSON **out, cdx_error *err);
/* The options as a plan carries them from a daemon to a client on NATS
 * (docs/PROTOCOL.md): {"k", "offset", "min_score"?, "min_prob"?}.  _json
 * returns a new object (NULL when out of memory); _parse returns -1
 * unless k >= 1 and offset >= 0 are there. */
struct cJSON *clu_merge_opts_json(const clu_merge_opts *o);
int clu_merge_opts_parse(const struct cJSON *j, clu_merge_opts *o);

/* Appends a job (an image's location) to the work queue; returns once
 * JetStream stored it. */
int clu_enqueue(clu *c, const char *loc, cdx_error *err);

typedef struct clu_job clu_job;
/* Waits up to timeout_ms for at most max jobs (workers only): *jobs
 * (free the array; each job with clu_job_done).  0 with *n == 0 when
 * none came. */
int clu_fetch(clu *c, int max, int timeout_ms, clu_job ***jobs, size_t *n,
	      cdx_error *err);
const char *clu_job_data(const clu_job *j, size_t *len);
enum clu_outcome {
	CLU_DONE = 0,   /* acknowledged: never delivered again */
	CLU_RETRY = 1,  /* delivered again after a delay */
	CLU_DROP = 2,   /* never delivered again (a bad location) */
};
/* Settles the job and frees it. */
void clu_job_done(clu_job *j, int outcome);

#endif
