/*
 * cluster_op.h - clipdexd in a cluster on NATS (cluster/cluster.h,
 * docs/SCALE.md): a daemon started with --nats searches every shard and
 * merges their top k, and answers the protocol on clipdex.api for clients
 * on NATS (libclipdex with a nats:// URL); with --shard it also answers
 * those searches from its store, stores what workers and other shards
 * hand it, and hands over the records that another member owns
 * (rebalancing); with --worker it is an encoding worker on the work queue
 * and nothing else.
 *
 * The messages (JSON):
 *   query  as cluster.h gives it (clu_merge_opts above it); "prob" is
 *          added to each hit when with_prob and the model has a sigmoid
 *   put    {"path": s, "size": n, "mtime_ns": n, "hash": 32 hex digits,
 *          "width": n, "height": n, "capture_time": t|null, "kind":
 *          "frame"?, "time_ms": n?, "embedding": [dim floats]} or, for a
 *          file that could not be indexed, {"path", "size", "mtime_ns",
 *          "error": reason} -> {"ok": true, "id": n} | {"ok": false,
 *          "error": s}
 *
 * Thread-safety: clusterd_start/stop from srv_start/srv_stop; the search
 * and the plan from any worker; the handlers (queries, puts, api requests,
 * which only queue a job) on NATS's threads.
 */
#ifndef CDX_SRV_CLUSTER_OP_H
#define CDX_SRV_CLUSTER_OP_H

#include "cluster/cluster.h"
#include "daemon/daemon.h"
#include "daemon/dispatch.h"

struct srv;

/* The connection's parameters from the --nats* settings (the one place
 * that reads them; p->worker from --worker). */
void clusterd_params(const srv_config *cfg, clu_params *p);

/* Joins the cluster when cfg->nats is set (else does nothing): s->cluster,
 * and then serves clipdex.api.  Errors: clu_open's, clu_serve's,
 * clu_serve_api's. */
int clusterd_start(struct srv *s, cdx_error *err);
/* The first step of a stop: no more requests on clipdex.api, the shard
 * leaves (its entry is deleted: a clean stop is no absence) and its
 * handlers have returned; searches of the daemon's workers may still ask
 * the shards, and queued api requests are still answered.  Safe when not
 * started. */
void clusterd_quiesce(struct srv *s);
/* The last: disconnects and frees, once no worker runs and the indexer
 * has answered its waiters (their replies to clipdex.api use the
 * connection). */
void clusterd_stop(struct srv *s);

/* search for a daemon in a cluster: the unit query q asked of every shard,
 * their hits merged (best score first; a path twice, during a hand-over,
 * once), results [offset, offset + k), each with its "shard"; the reply
 * says "shards" (members asked), "partial" and "missing" (who did not
 * answer in time).  Collapsing, tags and learned probes are per store:
 * bad_request. */
int clusterd_search(srv_call *c, const float *q, const srv_search_opts *o,
    double t0);
/* search with "plan": true: answers, instead of searching, with what a
 * client on NATS needs to ask the shards itself: {"plan": {"query": the
 * query message, "merge": clu_merge_opts_json's}}.  Fails as
 * clusterd_search does. */
int clusterd_plan(srv_call *c, const float *q, const srv_search_opts *o);

/* The put message of a record (img->embedding: dim floats), and that of
 * a file that could not be indexed (a failure record); malloc'd, NULL
 * when out of memory. */
char *clusterd_put_message(const store_image *img, int dim);
char *clusterd_failure_message(const char *path, int64_t size,
    int64_t mtime_ns, const char *reason);
/* Hands a put message to shard and waits for its answer: 0 when it took
 * it; CDX_EIO (no answer in time), or CDX_EINVAL when it refused (err
 * quotes its answer). */
int clusterd_put(clu *c, const char *shard, const char *msg,
    cdx_error *err);

/* --worker: a thread that takes jobs from the work queue, encodes them
 * and puts each on the shard that owns its content, until stopped. */
typedef struct cluster_worker cluster_worker;
int cluster_worker_start(const srv_config *cfg, cluster_worker **out,
    cdx_error *err);
void cluster_worker_stop(cluster_worker *w);

#endif
