/*
 * cluster_op.c - clipdexd in a cluster on NATS: see cluster_op.h.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "cluster/cluster.h"
#include "daemon/cluster_op.h"
#include "daemon/srv_internal.h"

/* records handed over per round of a rebalance */
#define MOVE_BATCH 256
/* a shard refreshes its entry (its count) this often, in seconds */
#define ENTRY_PERIOD_S 5

struct clusterd {
	srv *s;
	clu *c;
	const char *shard;      /* cfg->shard, or NULL: a front only */
	pthread_t thread;       /* shards: entry and rebalance */
	int started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int dirty, stop;        /* membership changed; stopping */
	uint64_t moved;         /* records handed over so far */
};

/* ---- messages ---- */

/* dim floats from a JSON array; -1 unless it is exactly that. */
static int
floats_of(const cJSON *a, float *out, int dim)
{
	if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != dim)
		return -1;
	int i = 0;
	const cJSON *x;
	cJSON_ArrayForEach(x, a) {
		if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble))
			return -1;
		out[i++] = (float)x->valuedouble;
	}
	return 0;
}

static void
hex_of(const uint8_t *b, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[b[i] >> 4];
		out[2 * i + 1] = d[b[i] & 15];
	}
	out[2 * n] = '\0';
}

static int
hex_to(const char *s, uint8_t *b, size_t n)
{
	if (strlen(s) != 2 * n)
		return -1;
	for (size_t i = 0; i < 2 * n; i++) {
		int v = s[i] >= '0' && s[i] <= '9' ? s[i] - '0' :
		    s[i] >= 'a' && s[i] <= 'f' ? s[i] - 'a' + 10 : -1;
		if (v < 0)
			return -1;
		if (i % 2 == 0)
			b[i / 2] = (uint8_t)(v << 4);
		else
			b[i / 2] |= (uint8_t)v;
	}
	return 0;
}

char *
clusterd_put_message(const store_image *img, int dim)
{
	char hex[2 * STORE_HASH_LEN + 1];
	cJSON *o = cJSON_CreateObject();
	hex_of(img->hash, STORE_HASH_LEN, hex);
	cJSON_AddStringToObject(o, "path", img->path);
	cJSON_AddNumberToObject(o, "size", (double)img->size);
	cJSON_AddNumberToObject(o, "mtime_ns", (double)img->mtime_ns);
	cJSON_AddStringToObject(o, "hash", hex);
	cJSON_AddNumberToObject(o, "width", img->width);
	cJSON_AddNumberToObject(o, "height", img->height);
	if (img->capture_time == STORE_TIME_UNKNOWN)
		cJSON_AddNullToObject(o, "capture_time");
	else
		cJSON_AddNumberToObject(o, "capture_time",
		    (double)img->capture_time);
	if (img->kind == STORE_KIND_FRAME) {
		cJSON_AddStringToObject(o, "kind", "frame");
		cJSON_AddNumberToObject(o, "time_ms", (double)img->time_ms);
	}
	cJSON_AddItemToObject(o, "embedding",
	    cJSON_CreateFloatArray(img->embedding, dim));
	char *m = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return m;
}

char *
clusterd_failure_message(const char *path, int64_t size, int64_t mtime_ns,
    const char *reason)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "path", path);
	cJSON_AddNumberToObject(o, "size", (double)size);
	cJSON_AddNumberToObject(o, "mtime_ns", (double)mtime_ns);
	cJSON_AddStringToObject(o, "error", reason);
	char *m = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return m;
}

int
clusterd_put(clu *c, const char *shard, const char *msg, cdx_error *err)
{
	char *reply = NULL;
	size_t rlen;
	int rc = clu_request(c, shard, msg, strlen(msg), &reply, &rlen, err);
	if (rc != 0)
		return rc;
	cJSON *r = cJSON_Parse(reply);
	if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "ok")))
		rc = cdx_error_set(err, CDX_EINVAL, "refused: %s", reply);
	cJSON_Delete(r);
	free(reply);
	return rc;
}

static char *
reply_str(cJSON *r, size_t *rlen)
{
	char *m = cJSON_PrintUnformatted(r);
	cJSON_Delete(r);
	*rlen = m ? strlen(m) : 0;
	return m;
}

/* A put's answer: {"ok": true} with the image's id (0: none, a failure
 * record), or {"ok": false, "error": msg}. */
static char *
put_reply(const char *msg, uint64_t id, size_t *rlen)
{
	cJSON *r = cJSON_CreateObject();
	cJSON_AddBoolToObject(r, "ok", msg == NULL);
	if (msg != NULL)
		cJSON_AddStringToObject(r, "error", msg);
	else if (id != 0)
		cJSON_AddNumberToObject(r, "id", (double)id);
	return reply_str(r, rlen);
}

static int64_t
num_of(const cJSON *o, const char *key, int64_t dflt)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsNumber(x) ? (int64_t)x->valuedouble : dflt;
}

/* ---- a shard: the handlers (on NATS's threads) ---- */

static char *
on_query(void *user, const char *req, size_t len, size_t *rlen)
{
	srv *s = user;
	int dim = s->info->embed_dim;
	cJSON *o = cJSON_ParseWithLength(req, len);
	float *q = malloc(sizeof(float) * (size_t)dim);
	store_results *res = NULL;
	store_filter f = { 0 };
	cdx_error err;
	cJSON *r = NULL;

	if (o == NULL || q == NULL ||
	    floats_of(cJSON_GetObjectItemCaseSensitive(o, "q"), q, dim) != 0)
		goto out; /* not ours to answer: the asker's deadline says so */
	long k = (long)num_of(o, "k", 10);
	if (k < 1 || k > SRV_K_MAX + SRV_WINDOW_MAX)
		goto out;
	const cJSON *pp = cJSON_GetObjectItemCaseSensitive(o, "path_prefix");
	const cJSON *tf = cJSON_GetObjectItemCaseSensitive(o, "time_field");
	f.path_prefix = cJSON_IsString(pp) ? pp->valuestring : NULL;
	if (cJSON_IsString(tf)) {
		f.time_field = strcmp(tf->valuestring, "mtime") == 0 ?
		    STORE_TIME_MTIME : STORE_TIME_CAPTURE;
		f.time_min = num_of(o, "time_min", INT64_MIN);
		f.time_max = num_of(o, "time_max", INT64_MAX);
	}
	if (store_search(s->st, q, (size_t)k,
	    f.path_prefix || f.time_field ? &f : NULL, &res, &err) != 0) {
		cdx_log(CDX_LOG_WARN, "cluster: search: %s", err.msg);
		goto out;
	}
	int with_prob = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o,
	    "with_prob"));
	r = cJSON_CreateObject();
	cJSON_AddNumberToObject(r, "images", (double)store_image_count(s->st));
	cJSON *hits = cJSON_AddArrayToObject(r, "hits");
	for (size_t i = 0; i < res->n; i++) {
		double prob = NAN;
		if (with_prob && clip_match_prob(s->info, res->hits[i].score,
		    &prob) != 0)
			prob = NAN;
		cJSON_AddItemToArray(hits, srv_hit_json(&res->hits[i], prob));
	}
out:
	store_results_free(res);
	free(q);
	cJSON_Delete(o);
	return r ? reply_str(r, rlen) : NULL;
}

static char *
on_put(void *user, const char *req, size_t len, size_t *rlen)
{
	srv *s = user;
	int dim = s->info->embed_dim;
	cJSON *o = cJSON_ParseWithLength(req, len);
	float *emb = malloc(sizeof(float) * (size_t)dim);
	cdx_error err;
	char *reply = NULL;
	const cJSON *path = cJSON_GetObjectItemCaseSensitive(o, "path");
	const cJSON *hash = cJSON_GetObjectItemCaseSensitive(o, "hash");
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");
	const cJSON *kind = cJSON_GetObjectItemCaseSensitive(o, "kind");

	if (o == NULL || emb == NULL || !cJSON_IsString(path) ||
	    path->valuestring[0] != '/') {
		reply = put_reply("a put needs 'path' (absolute)", 0, rlen);
		goto out;
	}
	if (cJSON_IsString(e)) {
		store_failure fr = { .path = path->valuestring,
		    .reason = e->valuestring, .size = num_of(o, "size", 0),
		    .mtime_ns = num_of(o, "mtime_ns", 0) };
		reply = put_reply(store_failure_put(s->st, &fr, &err) != 0 ?
		    err.msg : NULL, 0, rlen);
		goto out;
	}
	store_image img = { .path = path->valuestring,
	    .size = num_of(o, "size", 0), .mtime_ns = num_of(o, "mtime_ns", 0),
	    .width = (uint32_t)num_of(o, "width", 0),
	    .height = (uint32_t)num_of(o, "height", 0),
	    .capture_time = num_of(o, "capture_time", STORE_TIME_UNKNOWN),
	    .embedding = emb,
	    .kind = cJSON_IsString(kind) && strcmp(kind->valuestring,
		"frame") == 0 ? STORE_KIND_FRAME : STORE_KIND_IMAGE,
	    .time_ms = num_of(o, "time_ms", 0) };
	if (!cJSON_IsString(hash) ||
	    hex_to(hash->valuestring, img.hash, STORE_HASH_LEN) != 0 ||
	    floats_of(cJSON_GetObjectItemCaseSensitive(o, "embedding"), emb,
	    dim) != 0) {
		reply = put_reply("a put needs 'hash' (32 hex digits) and "
		    "'embedding' (the model's dim of finite numbers)", 0, rlen);
		goto out;
	}
	reply = put_reply(store_image_put(s->st, &img, 1, &err) != 0 ?
	    err.msg : NULL, img.id, rlen);
out:
	free(emb);
	cJSON_Delete(o);
	return reply;
}

/* ---- a shard: its entry, and handing over what others own ---- */

static void
entry_put(srv *s, struct clusterd *cd)
{
	char json[256];
	cdx_error err;
	snprintf(json, sizeof(json), "{\"name\":\"%s\",\"images\":%llu,"
	    "\"moved\":%llu}", cd->shard,
	    (unsigned long long)store_image_count(s->st),
	    (unsigned long long)cd->moved);
	if (clu_join(cd->c, cd->shard, json, &err) != 0)
		cdx_log(CDX_LOG_WARN, "cluster: %s", err.msg);
}

static void
on_change(void *user)
{
	struct clusterd *cd = user;
	pthread_mutex_lock(&cd->mu);
	cd->dirty = 1;
	pthread_cond_signal(&cd->cv);
	pthread_mutex_unlock(&cd->mu);
}

static int
stopping(struct clusterd *cd)
{
	pthread_mutex_lock(&cd->mu);
	int stop = cd->stop;
	pthread_mutex_unlock(&cd->mu);
	return stop;
}

struct to_move {
	struct clusterd *cd;
	uint64_t ids[MOVE_BATCH];
	char owners[MOVE_BATCH][CLU_NAME_MAX + 1];
	size_t n;
};

static int
collect_foreign(void *user, const store_image *img)
{
	struct to_move *m = user;
	char owner[CLU_NAME_MAX + 1];
	if (clu_owner(m->cd->c, img->path, strlen(img->path), owner,
	    sizeof(owner)) != 0 || strcmp(owner, m->cd->shard) == 0)
		return 0;
	m->ids[m->n] = img->id;
	snprintf(m->owners[m->n], sizeof(m->owners[0]), "%s", owner);
	return ++m->n == MOVE_BATCH; /* non-zero stops the walk */
}

/* Hands over up to MOVE_BATCH records that another member owns: each is
 * put there, then deleted here.  Returns how many moved, or -1. */
static long
move_round(srv *s, struct clusterd *cd)
{
	struct to_move *m = calloc(1, sizeof(*m));
	cdx_error err;
	long moved = 0;
	if (m == NULL)
		return -1;
	m->cd = cd;
	store_image_foreach(s->st, collect_foreign, m, &err);
	for (size_t i = 0; i < m->n && !stopping(cd); i++) {
		store_image *img = NULL, *now = NULL;
		size_t nd;
		if (store_image_get(s->st, m->ids[i], &img, &err) != 0)
			continue;       /* deleted meanwhile */
		char *msg = clusterd_put_message(img, s->info->embed_dim);
		int ok = msg && clusterd_put(cd->c, m->owners[i], msg,
		    &err) == 0;
		if (!ok)
			cdx_log(CDX_LOG_WARN, "cluster: handing %s to %s: %s",
			    img->path, m->owners[i], msg ? err.msg :
			    "out of memory");
		/* a new version put here meanwhile stays (and moves on the
		 * next round): delete only what was handed over */
		int same = ok && store_image_get(s->st, m->ids[i], &now,
		    &err) == 0 && memcmp(now->hash, img->hash,
		    STORE_HASH_LEN) == 0 && now->mtime_ns == img->mtime_ns;
		store_image_free(now);
		if (same && store_image_delete(s->st, &m->ids[i], 1, &nd,
		    &err) == 0)
			moved++;
		free(msg);
		store_image_free(img);
	}
	long r = m->n && moved == 0 ? -1 : moved;
	free(m);
	return r;
}

static void *
shard_main(void *arg)
{
	struct clusterd *cd = arg;
	srv *s = cd->s;
	pthread_mutex_lock(&cd->mu);
	while (!cd->stop) {
		int dirty = cd->dirty;
		cd->dirty = 0;
		pthread_mutex_unlock(&cd->mu);
		long n = 1;
		while (dirty && n > 0 && !stopping(cd)) {
			n = move_round(s, cd);
			if (n > 0) {
				cd->moved += (uint64_t)n;
				cdx_log(CDX_LOG_INFO, "cluster: handed %ld "
				    "records to their owners", n);
			}
		}
		entry_put(s, cd);
		pthread_mutex_lock(&cd->mu);
		if (n < 0)
			cd->dirty = 1;  /* an owner did not answer: in 1 s */
		/* the next entry in ENTRY_PERIOD_S, unless a change comes */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += n < 0 ? 1 : ENTRY_PERIOD_S;
		if (!cd->stop && (n < 0 || !cd->dirty))
			pthread_cond_timedwait(&cd->cv, &cd->mu, &ts);
	}
	pthread_mutex_unlock(&cd->mu);
	return NULL;
}

/* ---- any member: the protocol for clients on NATS ---- */

/* A reply of the daemon to a request from clipdex.api. */
static void
api_answer(void *user, char *reply, size_t len, int http_status)
{
	clu_api_req *r = user;
	(void)http_status;
	if (reply != NULL && len > clu_api_room(r)) {
		/* the error carries the request's tag, as every reply does */
		cJSON *o = cJSON_ParseWithLength(reply, len);
		free(reply);
		reply = reply_error_json(CDX_PROTO_TOO_LARGE, "the reply is "
		    "larger than the NATS servers' max_payload: ask for less",
		    cJSON_GetObjectItemCaseSensitive(o, "tag"));
		cJSON_Delete(o);
		len = reply ? strlen(reply) : 0;
	}
	clu_api_reply(r, reply ? reply : "", len);
	free(reply);
}

/* A request on clipdex.api, queued as the cluster's (access.h): a token
 * is needed when the daemon has one, and paths only inside its roots. */
static void
on_api(void *user, const char *req, size_t len, clu_api_req *r)
{
	srv *s = user;
	char *copy = malloc(len + 1);
	if (copy == NULL) {
		clu_api_reply(r, "", 0);
		return;
	}
	memcpy(copy, req, len);
	copy[len] = '\0';
	srv_submit(s, copy, len, SRV_ORIGIN_CLUSTER, api_answer, r);
}

void
clusterd_params(const srv_config *cfg, clu_params *p)
{
	clu_default_params(p);
	p->urls = cfg->nats;
	p->worker = cfg->worker;
	if (cfg->nats_replicas)
		p->replicas = cfg->nats_replicas;
	if (cfg->nats_timeout_ms)
		p->timeout_ms = cfg->nats_timeout_ms;
	if (cfg->nats_ack_wait_ms)
		p->ack_wait_ms = cfg->nats_ack_wait_ms;
}

/* Stops a shard's serving: its thread, its subscriptions (the handlers
 * running have returned), its entry.  cd->c stays open. */
static void
quiesce(struct clusterd *cd)
{
	if (cd->started) {
		pthread_mutex_lock(&cd->mu);
		cd->stop = 1;
		pthread_cond_signal(&cd->cv);
		pthread_mutex_unlock(&cd->mu);
		pthread_join(cd->thread, NULL);
		cd->started = 0;
	}
	if (cd->c == NULL)
		return;
	clu_unserve(cd->c);
	if (cd->shard != NULL) {
		clu_leave(cd->c, cd->shard);
		cd->shard = NULL;
	}
}

static void
clusterd_free(struct clusterd *cd)
{
	if (cd == NULL)
		return;
	quiesce(cd);
	clu_close(cd->c);
	pthread_cond_destroy(&cd->cv);
	pthread_mutex_destroy(&cd->mu);
	free(cd);
}

int
clusterd_start(srv *s, cdx_error *err)
{
	const srv_config *cfg = s->cfg;
	clu_params p;
	int rc;
	if (cfg->nats == NULL)
		return 0;
	struct clusterd *cd = calloc(1, sizeof(*cd));
	if (cd == NULL)
		return cdx_error_set(err, CDX_ENOMEM, "out of memory");
	cd->s = s;
	pthread_mutex_init(&cd->mu, NULL);
	pthread_cond_init(&cd->cv, NULL);
	clusterd_params(cfg, &p);
	if ((rc = clu_open(&p, &cd->c, err)) != 0)
		goto fail;
	if (cfg->shard != NULL) {
		cd->shard = cfg->shard;
		cd->dirty = 1;  /* a first look for records to hand over */
		clu_on_change(cd->c, on_change, cd);
		if ((rc = clu_serve(cd->c, cd->shard, on_query, on_put, s,
		    err)) != 0)
			goto fail;
		entry_put(s, cd);
		if (pthread_create(&cd->thread, NULL, shard_main, cd) != 0) {
			rc = cdx_error_set(err, CDX_ENOMEM, "cannot start a "
			    "thread");
			goto fail;
		}
		cd->started = 1;
		cdx_log(CDX_LOG_INFO, "cluster: shard %s on %s", cd->shard,
		    cfg->nats);
	} else {
		cdx_log(CDX_LOG_INFO, "cluster: searching the shards on %s",
		    cfg->nats);
	}
	s->cluster = cd;        /* searches go to the shards from here on */
	/* last, so that its requests find s->cluster and nothing after it
	 * fails (a failure frees the connection its replies would use) */
	if ((rc = clu_serve_api(cd->c, on_api, s, err)) != 0) {
		s->cluster = NULL;
		goto fail;
	}
	return 0;
fail:
	clusterd_free(cd);
	return rc;
}

void
clusterd_quiesce(srv *s)
{
	/* no more hand-overs, puts or shard searches; the front's own
	 * searches still run until the workers are joined */
	if (s->cluster != NULL)
		quiesce(s->cluster);
}

void
clusterd_stop(srv *s)
{
	clusterd_free(s->cluster);
	s->cluster = NULL;
}

/* ---- any member: search every shard ---- */

/* The query every shard answers (cluster.h) and how its answers merge,
 * from a parsed search: NULL when out of memory or when the search asks
 * for what belongs to one store (c has failed then). */
static cJSON *
plan_query(srv_call *c, const float *q, const srv_search_opts *o,
    clu_merge_opts *mo)
{
	if (o->collapse > 0 || o->filter.n_tags || o->filter.n_not_tags ||
	    o->has_probe) {
		srv_fail(c, CDX_PROTO_BAD_REQUEST, "collapse, tags and learned "
		    "classifiers belong to one store: a search across shards "
		    "takes texts, images, ids, path_prefix, time filters, "
		    "min_score and min_prob");
		return NULL;
	}
	*mo = (clu_merge_opts){ .k = o->k, .offset = o->offset,
	    .has_min_score = o->has_min, .min_score = o->min_score,
	    .has_min_prob = o->has_min_prob, .min_prob = o->min_prob };
	cJSON *req = cJSON_CreateObject();
	cJSON_AddItemToObject(req, "q", cJSON_CreateFloatArray(q,
	    c->s->info->embed_dim));
	cJSON_AddNumberToObject(req, "k", (double)(o->k + o->offset));
	if (o->filter.path_prefix)
		cJSON_AddStringToObject(req, "path_prefix",
		    o->filter.path_prefix);
	if (o->filter.time_field) {
		cJSON_AddStringToObject(req, "time_field",
		    o->filter.time_field == STORE_TIME_MTIME ? "mtime" :
		    "capture");
		cJSON_AddNumberToObject(req, "time_min",
		    (double)o->filter.time_min);
		cJSON_AddNumberToObject(req, "time_max",
		    (double)o->filter.time_max);
	}
	if (o->with_prob)
		cJSON_AddTrueToObject(req, "with_prob");
	if (cJSON_GetObjectItemCaseSensitive(req, "k") == NULL) {
		cJSON_Delete(req);
		srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
		return NULL;
	}
	return req;
}

int
clusterd_search(srv_call *c, const float *q, const srv_search_opts *o,
    double t0)
{
	clu_merge_opts mo;
	clu_gather g;
	cdx_error err;
	cJSON *r = NULL;
	cJSON *req = plan_query(c, q, o, &mo);
	if (req == NULL)
		return -1;
	char *msg = cJSON_PrintUnformatted(req);
	cJSON_Delete(req);
	if (msg == NULL)
		return srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
	int rc = clu_scatter(c->s->cluster->c, msg, strlen(msg), &g, &err);
	free(msg);
	if (rc != 0)
		return srv_fail(c, CDX_PROTO_BUSY, "cluster: %s", err.msg);
	rc = clu_merge(&g, &mo, &r, &err);
	clu_gather_free(&g);
	if (rc != 0)
		return srv_fail_cdx(c, rc, &err);
	cJSON_AddNumberToObject(r, "took_ms", (srv_now() - t0) * 1000.0);
	srv_reply_ok(c, r);
	return 0;
}

int
clusterd_plan(srv_call *c, const float *q, const srv_search_opts *o)
{
	clu_merge_opts mo;
	cJSON *req = plan_query(c, q, o, &mo);
	if (req == NULL)
		return -1;
	cJSON *r = cJSON_CreateObject(), *plan = cJSON_CreateObject();
	cJSON *m = clu_merge_opts_json(&mo);
	if (r == NULL || plan == NULL || m == NULL) {
		cJSON_Delete(r);
		cJSON_Delete(plan);
		cJSON_Delete(m);
		cJSON_Delete(req);
		return srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
	}
	cJSON_AddItemToObject(r, "plan", plan);
	cJSON_AddItemToObject(plan, "query", req);
	cJSON_AddItemToObject(plan, "merge", m);
	srv_reply_ok(c, r);
	return 0;
}
