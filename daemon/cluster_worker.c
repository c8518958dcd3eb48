/*
 * cluster_worker.c - clipdexd --worker: encodes the images named on the
 * cluster's work queue and puts each on the shard that owns its content
 * (cluster_op.h), by its path.  A job is acknowledged only once its shard answered:
 * a worker killed mid-batch leaves its jobs unacknowledged, and JetStream
 * delivers them again after --nats-ack-wait.  Files that cannot be read
 * or decoded become failure records on their shard (as the indexer
 * records them); a shard that does not answer, or a read error that may
 * pass (EIO), sends the job back to the queue.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "common/file.h"
#include "daemon/cluster_op.h"
#include "encoder/clip.h"
#include "store/store.h"

/* The most jobs a worker takes at once (--batch beyond it: 16). */
#define CLUSTER_BATCH_MAX 64

struct cluster_worker {
	const srv_config *cfg;
	int batch;              /* jobs a fetch takes, images an encode */
	clip_model *model;
	clip_ctx *ctx;
	clu *c;
	pthread_t thread;
	int started;
	pthread_mutex_t mu;
	int stop;
};

/* One job of a batch: img holds the file's path, size, mtime and, once
 * read, its hash and header facts. */
typedef struct item {
	clu_job *job;
	char path[STORE_PATH_MAX + 1];
	store_image img;
	int outcome;            /* CLU_* once settled; -1: to encode */
} item;

/* Asks the owner of key (a path: a changed file replaces its record on
 * the same shard) to take msg: CLU_DONE when it did, else CLU_RETRY (no
 * shard yet, no answer, or a refusal: a bad path, a full disk; the log
 * says which, and the job comes back later). */
static int
hand_over(struct cluster_worker *w, const void *key, size_t klen,
    const char *msg, const char *path)
{
	char owner[CLU_NAME_MAX + 1];
	cdx_error err;
	if (clu_owner(w->c, key, klen, owner, sizeof(owner)) != 0) {
		cdx_log(CDX_LOG_WARN, "worker: no shard yet for %s", path);
		return CLU_RETRY;
	}
	if (clusterd_put(w->c, owner, msg, &err) != 0) {
		cdx_log(CDX_LOG_WARN, "worker: %s: shard %s: %s", path, owner,
		    err.msg);
		return CLU_RETRY;
	}
	return CLU_DONE;
}

/* A failure record for the file, on the owner of its path (whose next
 * successful put removes it). */
static int
record_failure(struct cluster_worker *w, item *it, const char *reason)
{
	char *msg = clusterd_failure_message(it->path, it->img.size,
	    it->img.mtime_ns, reason);
	int out = msg ? hand_over(w, it->path, strlen(it->path), msg,
	    it->path) : CLU_RETRY;
	free(msg);
	return out;
}

/* Reads, hashes, decodes and preprocesses one job into pixels; settles
 * it (it->outcome) unless it is to be encoded. */
static void
prepare(struct cluster_worker *w, item *it, float *pixels)
{
	const clip_model_info *info = clip_model_get_info(w->model);
	const clip_preprocess_cfg *pp = &info->preprocess;
	clip_decode_opts dopt = { .min_short = clip_preprocess_min_short(pp),
	    .max_pixels = w->cfg->max_pixels };
	size_t dlen;
	const char *d = clu_job_data(it->job, &dlen);
	char *data = NULL;
	size_t len;
	cdx_error err;
	clip_image img;

	it->outcome = -1;
	if (dlen == 0 || dlen > STORE_PATH_MAX || d[0] != '/' ||
	    memchr(d, 0, dlen)) {
		cdx_log(CDX_LOG_WARN, "worker: dropped a job that is not an "
		    "absolute path");
		it->outcome = CLU_DROP;
		return;
	}
	memcpy(it->path, d, dlen);
	it->path[dlen] = '\0';
	it->img.path = it->path;
	struct stat st;
	if (stat(it->path, &st) == 0) {
		it->img.size = (int64_t)st.st_size;
		it->img.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 +
		    st.st_mtim.tv_nsec;
	}
	int rc = cdx_read_file(it->path, w->cfg->max_image_bytes, &data, &len,
	    &err);
	if (rc == CDX_EIO || rc == CDX_ENOMEM) {
		it->outcome = CLU_RETRY;        /* may pass */
		cdx_log(CDX_LOG_WARN, "worker: %s (again later)", err.msg);
		return;
	}
	if (rc != 0) {
		it->outcome = record_failure(w, it, err.msg);
		return;
	}
	store_content_hash(data, len, it->img.hash);
	rc = clip_image_decode(data, len, &dopt, &img, &err);
	free(data);
	if (rc == 0) {
		rc = clip_image_preprocess(&img, pp, pixels, &err);
		it->img.width = (uint32_t)img.info.width;
		it->img.height = (uint32_t)img.info.height;
		it->img.capture_time = img.info.capture_time == INT64_MIN ?
		    STORE_TIME_UNKNOWN : img.info.capture_time;
		clip_image_free(&img);
	}
	if (rc == CDX_ENOMEM) {
		it->outcome = CLU_RETRY;
		return;
	}
	if (rc != 0)
		it->outcome = record_failure(w, it, err.msg);
}

static void
run_batch(struct cluster_worker *w, clu_job **jobs, size_t n, float *pix,
    float *emb, item *items)
{
	const clip_model_info *info = clip_model_get_info(w->model);
	size_t plane = (size_t)3 * info->preprocess.crop_width *
	    info->preprocess.crop_height;
	int dim = info->embed_dim, m = 0;
	int which[CLUSTER_BATCH_MAX];
	cdx_error err;

	for (size_t i = 0; i < n; i++) {
		memset(&items[i], 0, sizeof(items[i]));
		items[i].job = jobs[i];
		prepare(w, &items[i], pix + (size_t)m * plane);
		if (items[i].outcome < 0)
			which[m++] = (int)i;
	}
	if (m > 0 && clip_encode_images(w->ctx, pix, m, emb, &err) != 0) {
		cdx_log(CDX_LOG_ERROR, "worker: encoding: %s", err.msg);
		for (int j = 0; j < m; j++)
			items[which[j]].outcome = CLU_RETRY;
		m = 0;
	}
	for (int j = 0; j < m; j++) {
		item *it = &items[which[j]];
		it->img.embedding = emb + (size_t)j * dim;
		char *msg = clusterd_put_message(&it->img, dim);
		it->outcome = msg ? hand_over(w, it->path, strlen(it->path),
		    msg, it->path) : CLU_RETRY;
		free(msg);
	}
	for (size_t i = 0; i < n; i++)
		clu_job_done(items[i].job, items[i].outcome);
}

static void *
worker_main(void *arg)
{
	struct cluster_worker *w = arg;
	const clip_model_info *info = clip_model_get_info(w->model);
	int batch = w->batch;
	size_t plane = (size_t)3 * info->preprocess.crop_width *
	    info->preprocess.crop_height;
	float *pix = malloc(sizeof(float) * plane * (size_t)batch);
	float *emb = malloc(sizeof(float) * (size_t)info->embed_dim *
	    (size_t)batch);
	item *items = calloc((size_t)batch, sizeof(*items));
	cdx_error err;

	for (;;) {
		pthread_mutex_lock(&w->mu);
		int stop = w->stop;
		pthread_mutex_unlock(&w->mu);
		if (stop || !pix || !emb || !items)
			break;
		clu_job **jobs;
		size_t n;
		if (clu_fetch(w->c, batch, 500, &jobs, &n, &err) != 0) {
			cdx_log(CDX_LOG_WARN, "worker: %s", err.msg);
			sleep(1);
			continue;
		}
		if (n > 0)
			run_batch(w, jobs, n, pix, emb, items);
		free(jobs);
	}
	free(items);
	free(emb);
	free(pix);
	return NULL;
}

int
cluster_worker_start(const srv_config *cfg, cluster_worker **out,
    cdx_error *err)
{
	clip_model_params mp;
	clu_params p;
	int rc;
	struct cluster_worker *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return cdx_error_set(err, CDX_ENOMEM, "out of memory");
	w->cfg = cfg;
	pthread_mutex_init(&w->mu, NULL);
	clip_model_default_params(&mp);
	mp.precision = cfg->precision;
	w->batch = cfg->batch > 0 && cfg->batch <= CLUSTER_BATCH_MAX ?
	    cfg->batch : 16;
	if ((rc = clip_model_load(cfg->model_dir, &mp, &w->model, err)) != 0 ||
	    (rc = clip_ctx_new(w->model, w->batch, &w->ctx, err)) != 0)
		goto fail;
	clusterd_params(cfg, &p);
	if ((rc = clu_open(&p, &w->c, err)) != 0)
		goto fail;
	if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
		rc = cdx_error_set(err, CDX_ENOMEM, "cannot start a thread");
		goto fail;
	}
	w->started = 1;
	cdx_log(CDX_LOG_INFO, "worker: model %s, the work queue on %s",
	    clip_model_get_info(w->model)->id, cfg->nats);
	*out = w;
	return 0;
fail:
	cluster_worker_stop(w);
	return rc;
}

void
cluster_worker_stop(cluster_worker *w)
{
	if (w == NULL)
		return;
	if (w->started) {
		pthread_mutex_lock(&w->mu);
		w->stop = 1;
		pthread_mutex_unlock(&w->mu);
		pthread_join(w->thread, NULL);
	}
	clu_close(w->c);
	clip_ctx_free(w->ctx);
	clip_model_free(w->model);
	pthread_mutex_destroy(&w->mu);
	free(w);
}
