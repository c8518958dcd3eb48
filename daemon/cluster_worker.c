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

#include <cjson/cJSON.h>
#include <xxhash.h>

#include "cluster/cluster.h"
#include "common/file.h"
#include "daemon/cluster_op.h"
#include "encoder/clip.h"
#include "store/store.h"

struct cluster_worker {
	const srv_config *cfg;
	clip_model *model;
	clip_ctx *ctx;
	clu *c;
	pthread_t thread;
	int started;
	pthread_mutex_t mu;
	int stop;
};

/* One job of a batch. */
typedef struct item {
	clu_job *job;
	char path[STORE_PATH_MAX + 1];
	struct stat st;
	store_image img;
	int outcome;            /* CLU_* once settled; -1: to encode */
	char *msg;              /* the put message, once built */
} item;

/* Asks the owner of key (a path: a changed file replaces its record on
 * the same shard) to take msg; CLU_DONE when it did. */
static int
hand_over(struct cluster_worker *w, const void *key, size_t klen,
    const char *msg, const char *path)
{
	char owner[72], *reply = NULL;
	size_t rlen;
	cdx_error err;
	if (clu_owner(w->c, key, klen, owner, sizeof(owner)) != 0) {
		cdx_log(CDX_LOG_WARN, "worker: no shard yet for %s", path);
		return CLU_RETRY;
	}
	if (clu_request(w->c, owner, msg, strlen(msg), &reply, &rlen,
	    &err) != 0) {
		cdx_log(CDX_LOG_WARN, "worker: %s: shard %s: %s", path, owner,
		    err.msg);
		return CLU_RETRY;
	}
	cJSON *r = cJSON_Parse(reply);
	int ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "ok"));
	if (!ok)
		cdx_log(CDX_LOG_WARN, "worker: %s: shard %s refused it: %s",
		    path, owner, reply);
	cJSON_Delete(r);
	free(reply);
	/* a refusal is about the message (a bad path, a full disk): the
	 * shard's log says which; the job comes back later */
	return ok ? CLU_DONE : CLU_RETRY;
}

/* A failure record for the file, on the owner of its path (whose next
 * successful put removes it). */
static int
record_failure(struct cluster_worker *w, item *it, const char *reason)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "path", it->path);
	cJSON_AddNumberToObject(o, "size", (double)it->st.st_size);
	cJSON_AddNumberToObject(o, "mtime_ns", (double)it->st.st_mtim.tv_sec *
	    1e9 + (double)it->st.st_mtim.tv_nsec);
	cJSON_AddStringToObject(o, "error", reason);
	char *msg = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
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
	if (stat(it->path, &it->st) != 0)
		memset(&it->st, 0, sizeof(it->st));
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
	XXH128_canonical_t hc;
	XXH128_canonicalFromHash(&hc, XXH3_128bits(data, len));
	memcpy(it->img.hash, hc.digest, STORE_HASH_LEN);
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
	if (rc != 0) {
		it->outcome = record_failure(w, it, err.msg);
		return;
	}
	it->img.path = it->path;
	it->img.size = (int64_t)it->st.st_size;
	it->img.mtime_ns = (int64_t)it->st.st_mtim.tv_sec * 1000000000 +
	    it->st.st_mtim.tv_nsec;
}

static void
run_batch(struct cluster_worker *w, clu_job **jobs, size_t n, float *pix,
    float *emb, item *items)
{
	const clip_model_info *info = clip_model_get_info(w->model);
	size_t plane = (size_t)3 * info->preprocess.crop_width *
	    info->preprocess.crop_height;
	int dim = info->embed_dim, m = 0;
	int which[64];
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
		it->msg = clusterd_put_message(&it->img, dim);
		it->outcome = it->msg ? hand_over(w, it->path,
		    strlen(it->path), it->msg, it->path) : CLU_RETRY;
		free(it->msg);
	}
	for (size_t i = 0; i < n; i++)
		clu_job_done(items[i].job, items[i].outcome);
}

static void *
worker_main(void *arg)
{
	struct cluster_worker *w = arg;
	const clip_model_info *info = clip_model_get_info(w->model);
	int batch = w->cfg->batch > 0 && w->cfg->batch <= 64 ? w->cfg->batch :
	    16;
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
	int batch = cfg->batch > 0 && cfg->batch <= 64 ? cfg->batch : 16;
	if ((rc = clip_model_load(cfg->model_dir, &mp, &w->model, err)) != 0 ||
	    (rc = clip_ctx_new(w->model, batch, &w->ctx, err)) != 0)
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
