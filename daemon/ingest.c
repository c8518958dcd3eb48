/*
 * ingest.c - the daemon's side of the indexer (indexer/indexer.h): starts
 * it with the daemon's settings, keeps the set of watched folders in the
 * store ("indexer.roots", one path per line), answers "add" requests that
 * wait, and reports progress in "status".
 */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/path.h"
#include "daemon/ingest.h"
#include "daemon/reply.h"
#include "daemon/roots.h"
#include "daemon/srv_internal.h"
#include "indexer/indexer.h"

#define WATCHED_KEY "indexer.roots"

/* Reads the persisted watched folders (newline-separated); *out is a
 * malloc'd text the caller frees, "" when none. */
static char *
watched_load(srv *s)
{
	void *val = NULL;
	size_t len;
	if (store_kv_get(s->st, WATCHED_KEY, &val, &len, NULL) != 0)
		return strdup("");
	return val;
}

/* Is path, or a folder above it, in the list? */
static int
watched_has(const char *list, const char *path)
{
	char *copy = strdup(list), *save;
	int found = 0;

	for (char *line = copy ? strtok_r(copy, "\n", &save) : NULL;
	    line != NULL && !found; line = strtok_r(NULL, "\n", &save))
		found = cdx_path_under(path, line);
	free(copy);
	return found;
}

/* Adds path to (add = 1) or removes paths at or under it from (add = 0)
 * the persisted list.  Called under s->mu, so updates do not race. */
static void
watched_update(srv *s, const char *path, int add)
{
	char *list = watched_load(s), *out;
	size_t n = strlen(path), o = 0;
	cdx_error err;

	if (list == NULL)
		return;
	if (add && watched_has(list, path)) {
		free(list);
		return;
	}
	out = malloc(strlen(list) + n + 2);
	if (out == NULL) {
		free(list);
		return;
	}
	for (char *p = list, *save, *line = strtok_r(p, "\n", &save);
	    line != NULL; line = strtok_r(NULL, "\n", &save)) {
		if (!add && cdx_path_under(line, path))
			continue;
		o += (size_t)sprintf(out + o, "%s\n", line);
	}
	if (add)
		o += (size_t)sprintf(out + o, "%s\n", path);
	if (store_kv_put(s->st, WATCHED_KEY, out, o, &err) != 0)
		cdx_log(CDX_LOG_WARN, "cannot save the watched folders: %s",
		    err.msg);
	free(out);
	free(list);
}

/* Answers an add request that waited (on the indexer's control thread);
 * reply.c adds the request's tag. */
static void
answer(void *user, const char *path, const watch_result *res)
{
	srv_job *job = user;
	cJSON *r;

	if (job == NULL)
		return;
	if (res->store_full && !res->interrupted) {
		reply_error(job, CDX_PROTO_BUSY, "store full: indexing of %s "
		    "stored %lld files; the others wait for space and are "
		    "retried", path, (long long)(res->added + res->updated));
		return;
	}
	if (res->interrupted) {
		reply_error(job, CDX_PROTO_BUSY, "indexing of %s was interrupted "
		    "by a shutdown after %lld files", path, (long long)(res->added
		    + res->updated + res->unchanged + res->failed));
		return;
	}
	if ((r = cJSON_CreateObject()) != NULL) {
		cJSON_AddNumberToObject(r, "added", (double)res->added);
		cJSON_AddNumberToObject(r, "updated", (double)res->updated);
		cJSON_AddNumberToObject(r, "unchanged", (double)res->unchanged);
		cJSON_AddNumberToObject(r, "failed", (double)res->failed);
		cJSON_AddNumberToObject(r, "moved", (double)res->moved);
	}
	reply_ok(job, r);
}

/* The indexer's done count, sampled once a second for a windowed rate: a
 * rate over the whole run stays high after a burst of unchanged files and
 * is stale once idle. */
#define RATE_SAMPLES (INGEST_RATE_WINDOW_S + 1)

struct ingest_rate {
	pthread_mutex_t mu;
	pthread_cond_t cv;      /* CLOCK_MONOTONIC; wakes the sampler to stop */
	pthread_t thread;
	int stop;
	watch *w;
	double t[RATE_SAMPLES];         /* monotonic seconds, a ring */
	int64_t done[RATE_SAMPLES];
	int head, n;                    /* next slot, samples held */
};

static void
rate_sample_locked(struct ingest_rate *r, double t, int64_t done)
{
	r->t[r->head] = t;
	r->done[r->head] = done;
	r->head = (r->head + 1) % RATE_SAMPLES;
	if (r->n < RATE_SAMPLES)
		r->n++;
}

static void *
rate_main(void *arg)
{
	struct ingest_rate *r = arg;
	watch_progress p;

	pthread_mutex_lock(&r->mu);
	while (!r->stop) {
		pthread_mutex_unlock(&r->mu);
		watch_get_progress(r->w, &p);
		pthread_mutex_lock(&r->mu);
		rate_sample_locked(r, srv_now(), p.done);
		struct timespec dl;
		clock_gettime(CLOCK_MONOTONIC, &dl);
		dl.tv_sec += 1;
		while (!r->stop && pthread_cond_timedwait(&r->cv, &r->mu, &dl) == 0)
			;
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

/* Starts the sampler of w; NULL (no rate is shown) when it cannot. */
static struct ingest_rate *
rate_start(watch *w)
{
	struct ingest_rate *r = calloc(1, sizeof(*r));
	pthread_condattr_t ca;

	if (r == NULL)
		return NULL;
	r->w = w;
	pthread_mutex_init(&r->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&r->thread, NULL, rate_main, r) != 0) {
		cdx_log(CDX_LOG_WARN, "no indexing rate: cannot start its thread");
		pthread_cond_destroy(&r->cv);
		pthread_mutex_destroy(&r->mu);
		free(r);
		return NULL;
	}
	return r;
}

static void
rate_stop(struct ingest_rate *r)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop = 1;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->thread, NULL);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

/* Files finished per second from the oldest sample in the window (at
 * least a second old) to now (done at now); 0 when there is none. */
static double
rate_get(struct ingest_rate *r, double now, int64_t done)
{
	double rate = 0;

	if (r == NULL)
		return 0;
	pthread_mutex_lock(&r->mu);
	for (int i = 0; i < r->n; i++) {
		int k = (r->head - r->n + i + RATE_SAMPLES) % RATE_SAMPLES;
		double dt = now - r->t[k];
		if (dt > INGEST_RATE_WINDOW_S + 0.5 || dt < 1.0)
			continue;
		if (done > r->done[k])
			rate = (double)(done - r->done[k]) / dt;
		break;
	}
	pthread_mutex_unlock(&r->mu);
	return rate;
}

int
ingest_start(srv *s, cdx_error *err)
{
	const srv_config *c = s->cfg;
	watch_params p;
	int rc;

	watch_default_params(&p);
	p.batch = c->batch > 0 ? c->batch : 16;
	p.decode_threads = c->decode_threads;
	p.min_side = c->min_side;
	p.hidden = c->hidden;
	p.follow_symlinks = c->follow_symlinks;
	p.max_pixels = c->max_pixels;
	p.nice = c->index_nice;
	p.video = c->video;
	if (c->video_interval_s > 0)
		p.video_interval_s = c->video_interval_s;
	if (c->video_frames > 0)
		p.video_max_frames = c->video_frames;
	p.video_limit_s = c->video_limit_s;
	for (int i = 0; i < c->n_exclude && i < WATCH_MAX_EXCLUDE; i++)
		p.exclude[p.n_exclude++] = c->exclude[i];
	if ((rc = watch_start(s->st, s->model, &p, &s->watch, err)) != 0)
		return rc;
	s->rate = rate_start(s->watch);

	/* Resume: every watched folder is scanned again (unchanged files
	 * cost a stat and a lookup) and watched. */
	for (int i = 0; i < c->n_watch; i++) {
		roots_add(&s->roots, c->watch[i]);
		pthread_mutex_lock(&s->mu);
		watched_update(s, c->watch[i], 1);
		pthread_mutex_unlock(&s->mu);
	}
	char *list = watched_load(s), *save;
	for (char *line = list ? strtok_r(list, "\n", &save) : NULL;
	    line != NULL; line = strtok_r(NULL, "\n", &save)) {
		struct stat st;
		if (line[0] != '/')
			continue;
		if (stat(line, &st) != 0 || !S_ISDIR(st.st_mode)) {
			cdx_log(CDX_LOG_WARN, "watched folder %s is missing: its "
			    "images are kept until it is removed", line);
			continue;
		}
		roots_add(&s->roots, line);
		watch_add(s->watch, line, 1, NULL, NULL);
		cdx_log(CDX_LOG_INFO, "watching %s", line);
	}
	free(list);
	return 0;
}

void
ingest_stop(srv *s)
{
	rate_stop(s->rate);
	s->rate = NULL;
	watch_stop(s->watch);
	s->watch = NULL;
}

void
ingest_enqueue(srv *s, const char *canon, srv_job *waiter)
{
	struct stat st;
	int rc;

	if (s->watch == NULL) {
		if (waiter != NULL)
			reply_error(waiter, CDX_PROTO_BUSY, "the indexer is not running");
		return;
	}
	if (stat(canon, &st) == 0 && S_ISDIR(st.st_mode)) {
		pthread_mutex_lock(&s->mu);
		watched_update(s, canon, 1);
		pthread_mutex_unlock(&s->mu);
	}
	rc = watch_add(s->watch, canon, 1, waiter ? answer : NULL, waiter);
	if (rc != 0 && waiter != NULL)
		reply_error(waiter, rc == CDX_ECLOSED ? CDX_PROTO_BUSY :
		    CDX_PROTO_INTERNAL,
		    "cannot index %s: %s", canon, cdx_strerror(rc));
}

void
ingest_unwatch(srv *s, const char *path)
{
	if (s->watch != NULL)
		watch_remove(s->watch, path);
	pthread_mutex_lock(&s->mu);
	watched_update(s, path, 0);
	pthread_mutex_unlock(&s->mu);
}

cJSON *
ingest_status_json(srv *s)
{
	watch_progress p;
	cJSON *q = cJSON_CreateObject();

	if (q == NULL || s->watch == NULL)
		return q;
	watch_get_progress(s->watch, &p);
	double rate = p.idle ? 0 : rate_get(s->rate, srv_now(), p.done);
	cJSON_AddNumberToObject(q, "pending", (double)p.remaining);
	cJSON_AddNumberToObject(q, "done", (double)p.done);
	cJSON_AddNumberToObject(q, "remaining", (double)p.remaining);
	cJSON_AddNumberToObject(q, "rate", rate);
	cJSON_AddNumberToObject(q, "eta_s", rate > 0 && p.remaining > 0 ?
	    (double)p.remaining / rate : -1.0);
	cJSON_AddBoolToObject(q, "idle", p.idle);
	cJSON_AddBoolToObject(q, "scanning", p.scanning);
	cJSON_AddNumberToObject(q, "encoded", (double)p.encoded);
	cJSON_AddNumberToObject(q, "clips", (double)p.clips);
	cJSON_AddNumberToObject(q, "frames", (double)p.frames);
	cJSON_AddNumberToObject(q, "reused", (double)p.reused);
	cJSON_AddNumberToObject(q, "failed", (double)p.failed);
	cJSON_AddNumberToObject(q, "skipped", (double)p.skipped);
	cJSON *by = cJSON_AddObjectToObject(q, "skipped_by");
	for (int i = 0; by != NULL && i < WATCH_SKIP_KINDS; i++)
		cJSON_AddNumberToObject(by, watch_skip_name(i),
		    (double)p.skipped_by[i]);
	cJSON_AddNumberToObject(q, "renamed", (double)p.renamed);
	cJSON_AddNumberToObject(q, "deleted", (double)p.deleted);
	cJSON_AddNumberToObject(q, "overflows", (double)p.overflows);
	cJSON_AddNumberToObject(q, "watches", (double)p.watches);
	cJSON_AddBoolToObject(q, "store_full", p.store_full);
	if (p.store_full)
		cJSON_AddStringToObject(q, "warning", "store full: files wait "
		    "for space and are retried");
	else if (p.warning[0] != '\0')
		cJSON_AddStringToObject(q, "warning", p.warning);
	return q;
}

cJSON *
ingest_folders_json(srv *s)
{
	cJSON *a = cJSON_CreateArray();
	char *list, *save;

	if (a == NULL)
		return NULL;
	pthread_mutex_lock(&s->mu);
	list = watched_load(s);
	pthread_mutex_unlock(&s->mu);
	for (char *line = list ? strtok_r(list, "\n", &save) : NULL;
	    line != NULL; line = strtok_r(NULL, "\n", &save))
		if (line[0] == '/')
			cJSON_AddItemToArray(a, cJSON_CreateString(line));
	free(list);
	return a;
}

int
ingest_store_full(srv *s)
{
	watch_progress p;
	if (s->watch == NULL)
		return 0;
	watch_get_progress(s->watch, &p);
	return p.store_full;
}
