/*
 * cluster.c - clipdex on NATS through the C client (libnats): see
 * cluster.h.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>
/* header-only: libclipdex links this module and needs no libxxhash */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "cluster/cluster.h"

#define BUCKET "clipdex_shards"
#define STREAM "CLIPDEX_WORK"
#define WORK_SUBJ "clipdex.work"
#define QUERY_SUBJ "clipdex.query"
#define API_SUBJ "clipdex.api"
#define API_QUEUE "api"
#define DURABLE "workers"
/* the membership is read anew this often (see watch_main) */
#define REWATCH_MS 5000
/* a scatter asks the members that have not answered again after this
 * long, then after twice as long, and so on until the deadline */
#define ASK_AGAIN_MS 200
/* a job retried (CLU_RETRY) waits this long before it comes again */
#define RETRY_DELAY_MS 2000
/* a shard heard from but not shown by the watcher is waited for this
 * long after it last answered (see struct heard) */
#define HEARD_MS (2 * REWATCH_MS)
#define HEARD_MAX 16

/* A shard that answered a scatter but that the watcher has not shown:
 * the watcher is behind (a new shard while JetStream recovers from a lost
 * node).  Scatters wait for it as for a member until the watcher shows
 * its entry or its delete, or it has been silent HEARD_MS: else an answer
 * could leave out its hits, not partial, whenever it answered after the
 * known members. */
typedef struct heard {
	char name[CLU_NAME_MAX + 1];
	double at;                      /* when it last answered */
} heard;

/* A set of shard names. */
typedef struct nameset {
	char **v;
	size_t n, cap;
} nameset;

struct clu {
	clu_params p;
	natsConnection *nc;
	jsCtx *js;
	kvStore *kv;
	natsSubscription *work;         /* workers: the pull consumer */
	natsSubscription *subs[4];      /* shards: query, put, own query;
					   members: the api */
	/* membership, from the watcher thread */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	nameset members;
	heard heard[HEARD_MAX];
	int n_heard;
	int caught_up, stop, rewatch;
	pthread_t watcher;
	int watching;
	void (*on_change)(void *);
	void *on_change_user;
	/* serving */
	char shard[CLU_NAME_MAX + 1];
	clu_handler h_query, h_put;
	void *h_user;
	clu_api_handler h_api;
	void *h_api_user;
};

struct clu_api_req {
	natsConnection *nc;
	char reply_to[];
};

struct clu_job {
	natsMsg *msg;
};

void
clu_default_params(clu_params *p)
{
	memset(p, 0, sizeof(*p));
	p->replicas = 1;
	p->timeout_ms = 2000;
	p->ack_wait_ms = 60000;
}

static int
nats_err(cdx_error *err, natsStatus s, const char *what)
{
	const char *last = nats_GetLastError(NULL);
	return cdx_error_set(err, s == NATS_NO_MEMORY ? CDX_ENOMEM : CDX_EIO,
			     "%s: %s%s%s", what, natsStatus_GetText(s),
			     last && *last ? ": " : "", last ? last : "");
}

static int
name_ok(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > CLU_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
			return 0;
	}
	return 1;
}

/* The error for a name name_ok refuses. */
static int
name_error(cdx_error *err, const char *name)
{
	return cdx_error_set(err, CDX_EINVAL,
			     "shard name '%s': 1 to %d letters, digits, '-' or "
			     "'_'", name, CLU_NAME_MAX);
}

static double
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- membership ---- */

static long
name_find(const nameset *m, const char *name)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->v[i], name) == 0)
			return (long)i;
	return -1;
}

/* Adds or removes one name; 1 if the set changed. */
static int
name_set(nameset *m, const char *key, int present)
{
	long i = name_find(m, key);
	if (present && i < 0 && name_ok(key)) {
		if (m->n == m->cap) {
			size_t cap = m->cap ? 2 * m->cap : 8;
			char **p = realloc(m->v, cap * sizeof(*p));
			if (!p)
				return 0;
			m->v = p;
			m->cap = cap;
		}
		char *dup = strdup(key);
		if (!dup)
			return 0;
		m->v[m->n++] = dup;
		return 1;
	}
	if (!present && i >= 0) {
		free(m->v[i]);
		m->v[i] = m->v[--m->n];
		return 1;
	}
	return 0;
}

/* Forgets name as heard (the watcher showed it); c->mu held. */
static void
heard_drop(clu *c, const char *name)
{
	for (int i = 0; i < c->n_heard; i++)
		if (strcmp(c->heard[i].name, name) == 0) {
			c->heard[i] = c->heard[--c->n_heard];
			return;
		}
}

/* name answered a scatter: if the watcher has not shown it, it is heard
 * now (and the watcher made anew); c->mu held. */
static void
heard_note(clu *c, const char *name)
{
	if (name_find(&c->members, name) >= 0 || !name_ok(name))
		return;
	c->rewatch = 1;
	int i = 0;
	while (i < c->n_heard && strcmp(c->heard[i].name, name) != 0)
		i++;
	if (i == HEARD_MAX)
		return;
	if (i == c->n_heard) {
		snprintf(c->heard[i].name, sizeof(c->heard[i].name), "%s",
			 name);
		c->n_heard++;
	}
	c->heard[i].at = now_ms();
}

static void
names_clear(nameset *m)
{
	clu_names_free(m->v, m->n);
	memset(m, 0, sizeof(*m));
}

static void
on_reconnected(natsConnection *nc, void *arg)
{
	clu *c = arg;
	(void)nc;
	pthread_mutex_lock(&c->mu);
	c->rewatch = 1;
	pthread_mutex_unlock(&c->mu);
}

/* The membership thread: a watcher of every key, made anew after a
 * reconnection, when a scatter hears from a shard it does not know, and
 * every REWATCH_MS (a watcher whose node died can stall without an
 * error).  Each new one delivers every key's last operation
 * again, a put or a delete marker, and the set follows them: a member
 * leaves only by its delete, never because a watcher's first delivery
 * came short. */
static void *
watch_main(void *arg)
{
	clu *c = arg;
	kvWatcher *w = NULL;
	double since = 0;
	for (;;) {
		pthread_mutex_lock(&c->mu);
		int stop = c->stop, re = c->rewatch;
		c->rewatch = 0;
		pthread_mutex_unlock(&c->mu);
		if (stop)
			break;
		if (w && (re || now_ms() - since > REWATCH_MS)) {
			kvWatcher_Destroy(w);
			w = NULL;
		}
		if (!w) {
			if (kvStore_WatchAll(&w, c->kv, NULL) != NATS_OK) {
				w = NULL;
				usleep(200000);
				continue;
			}
			since = now_ms();
		}
		kvEntry *e = NULL;
		natsStatus s = kvWatcher_Next(&e, w, 250);
		if (s == NATS_TIMEOUT)
			continue;
		if (s != NATS_OK) {
			kvWatcher_Destroy(w);
			w = NULL;
			continue;
		}
		int changed = 0;
		pthread_mutex_lock(&c->mu);
		if (!e) {
			c->caught_up = 1; /* the first delivery is in */
			pthread_cond_broadcast(&c->cv);
		} else {
			changed = name_set(&c->members, kvEntry_Key(e),
					   kvEntry_Operation(e) == kvOp_Put);
			heard_drop(c, kvEntry_Key(e));
		}
		void (*fn)(void *) = c->on_change;
		void *user = c->on_change_user;
		pthread_mutex_unlock(&c->mu);
		kvEntry_Destroy(e);
		if (changed && fn)
			fn(user);
	}
	if (w)
		kvWatcher_Destroy(w);
	return NULL;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
clu_members(clu *c, char ***names, size_t *n)
{
	pthread_mutex_lock(&c->mu);
	char **v = calloc(c->members.n ? c->members.n : 1, sizeof(*v));
	size_t k = 0;
	for (size_t i = 0; v && i < c->members.n; i++)
		if ((v[k] = strdup(c->members.v[i])) != NULL)
			k++;
	pthread_mutex_unlock(&c->mu);
	if (!v)
		return CDX_ENOMEM;
	qsort(v, k, sizeof(*v), name_cmp);
	*names = v;
	*n = k;
	return 0;
}

void
clu_names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

int
clu_owner(clu *c, const void *key, size_t len, char *name, size_t cap)
{
	uint64_t best = 0;
	int found = 0;
	pthread_mutex_lock(&c->mu);
	/* a shard counts itself a member even before the watcher shows its
	 * entry (a restart: it would hand away what it owns) */
	int self = c->shard[0] && name_find(&c->members, c->shard) < 0;
	for (size_t i = 0; i < c->members.n + (size_t)self; i++) {
		/* rendezvous: the highest hash of (member, key) wins */
		const char *m = i < c->members.n ? c->members.v[i] : c->shard;
		uint64_t h = XXH3_64bits_withSeed(key, len,
						  XXH3_64bits(m, strlen(m)));
		if (!found || h > best || (h == best && strcmp(m, name) < 0)) {
			best = h;
			snprintf(name, cap, "%s", m);
			found = 1;
		}
	}
	pthread_mutex_unlock(&c->mu);
	return found ? 0 : CDX_ENOTFOUND;
}

void
clu_on_change(clu *c, void (*fn)(void *user), void *user)
{
	pthread_mutex_lock(&c->mu);
	c->on_change = fn;
	c->on_change_user = user;
	pthread_mutex_unlock(&c->mu);
}

int
clu_join(clu *c, const char *name, const char *json, cdx_error *err)
{
	uint64_t rev;
	if (!name_ok(name))
		return name_error(err, name);
	if (strlen(json) > 4096)
		return cdx_error_set(err, CDX_EINVAL, "shard entry too long");
	natsStatus s = kvStore_PutString(&rev, c->kv, name, json);
	return s == NATS_OK ? 0 : nats_err(err, s, "joining the cluster");
}

int
clu_leave(clu *c, const char *name)
{
	return kvStore_Delete(c->kv, name) == NATS_OK ? 0 : CDX_EIO;
}

/* ---- open, close ---- */

/* JetStream answers only once its leaders are elected: retries what
 * fails for up to 20 s. */
#define JS_READY_MS 20000

static natsStatus
bind_bucket(clu *c)
{
	natsStatus s = js_KeyValue(&c->kv, c->js, BUCKET);
	if (s == NATS_OK)
		return s;
	kvConfig kc;
	kvConfig_Init(&kc);
	kc.Bucket = BUCKET;
	kc.History = 1;
	kc.Replicas = c->p.replicas;
	s = js_CreateKeyValue(&c->kv, c->js, &kc);
	if (s != NATS_OK) /* made meanwhile by another process? */
		s = js_KeyValue(&c->kv, c->js, BUCKET);
	return s;
}

static natsStatus
bind_stream(clu *c)
{
	jsStreamConfig sc;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	const char *subjects[1] = { WORK_SUBJ };
	natsStatus s = js_GetStreamInfo(&si, c->js, STREAM, NULL, &jerr);
	if (s == NATS_OK) {
		jsStreamInfo_Destroy(si);
		return s;
	}
	jsStreamConfig_Init(&sc);
	sc.Name = STREAM;
	sc.Subjects = subjects;
	sc.SubjectsLen = 1;
	sc.Retention = js_WorkQueuePolicy;
	sc.Storage = js_FileStorage;
	sc.Replicas = c->p.replicas;
	s = js_AddStream(&si, c->js, &sc, NULL, &jerr);
	if (s == NATS_OK)
		jsStreamInfo_Destroy(si);
	else if (js_GetStreamInfo(&si, c->js, STREAM, NULL, &jerr) == NATS_OK) {
		jsStreamInfo_Destroy(si);
		s = NATS_OK;
	}
	return s;
}

static natsStatus
bind_work(clu *c)
{
	jsSubOptions so;
	jsErrCode jerr = 0;
	jsSubOptions_Init(&so);
	so.Stream = STREAM;
	so.Config.AckPolicy = js_AckExplicit;
	so.Config.AckWait = (int64_t)c->p.ack_wait_ms * 1000000;
	return js_PullSubscribe(&c->work, c->js, WORK_SUBJ, DURABLE, NULL, &so,
				&jerr);
}

int
clu_open(const clu_params *p, clu **out, cdx_error *err)
{
	natsOptions *o = NULL;
	char *urls = NULL, *save = NULL;
	const char *servers[16];
	int ns = 0, rc = 0;
	natsStatus s;
	if (!p->urls || !*p->urls)
		return cdx_error_set(err, CDX_EINVAL, "--nats needs a URL");
	clu *c = calloc(1, sizeof(*c));
	if (!c || !(urls = strdup(p->urls))) {
		free(c);
		return cdx_error_set(err, CDX_ENOMEM, "out of memory");
	}
	c->p = *p;
	if (c->p.replicas < 1)
		c->p.replicas = 1;
	if (c->p.timeout_ms < 1)
		c->p.timeout_ms = 2000;
	if (c->p.ack_wait_ms < 1)
		c->p.ack_wait_ms = 60000;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	for (char *t = strtok_r(urls, ",", &save); t && ns < 16;
	     t = strtok_r(NULL, ",", &save))
		servers[ns++] = t;
	if ((s = natsOptions_Create(&o)) != NATS_OK ||
	    (s = natsOptions_SetServers(o, servers, ns)) != NATS_OK ||
	    (s = natsOptions_SetMaxReconnect(o, -1)) != NATS_OK ||
	    (s = natsOptions_SetReconnectWait(o, 100)) != NATS_OK ||
	    (s = natsOptions_SetReconnectedCB(o, on_reconnected, c)) !=
		    NATS_OK ||
	    (s = natsOptions_SetTimeout(o, c->p.timeout_ms)) != NATS_OK) {
		rc = nats_err(err, s, "NATS options");
		goto fail;
	}
	if ((s = natsConnection_Connect(&c->nc, o)) != NATS_OK) {
		rc = nats_err(err, s, p->urls);
		goto fail;
	}
	if ((s = natsConnection_JetStream(&c->js, c->nc, NULL)) != NATS_OK) {
		rc = nats_err(err, s, "JetStream");
		goto fail;
	}
	double t0 = now_ms();
	for (;;) {
		if (p->asker)
			s = js_KeyValue(&c->kv, c->js, BUCKET);
		else
			s = c->kv ? NATS_OK : bind_bucket(c);
		if (s == NATS_OK && !p->asker)
			s = bind_stream(c);
		if (s == NATS_OK && p->worker && !c->work)
			s = bind_work(c);
		if (s == NATS_OK || now_ms() - t0 > (p->asker ?
		    c->p.timeout_ms : JS_READY_MS))
			break;
		usleep(p->asker ? 50000 : 200000);
	}
	if (s == NATS_NOT_FOUND && p->asker) {
		rc = cdx_error_set(err, CDX_EIO, "%s: no clipdexd has joined "
				   "these NATS servers (no bucket " BUCKET
				   ")", p->urls);
		goto fail;
	}
	if (s != NATS_OK) {
		rc = nats_err(err, s, "JetStream (bucket " BUCKET ", stream "
				      STREAM ")");
		goto fail;
	}
	if (pthread_create(&c->watcher, NULL, watch_main, c) != 0) {
		rc = cdx_error_set(err, CDX_ENOMEM, "cannot start a thread");
		goto fail;
	}
	c->watching = 1;
	/* the members as they are now, before the first query */
	pthread_mutex_lock(&c->mu);
	double wait = p->asker ? c->p.timeout_ms : JS_READY_MS;
	while (!c->caught_up && now_ms() - t0 < wait) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&c->cv, &c->mu, &ts);
	}
	pthread_mutex_unlock(&c->mu);
	natsOptions_Destroy(o);
	free(urls);
	*out = c;
	return 0;
fail:
	natsOptions_Destroy(o);
	free(urls);
	clu_close(c);
	return rc;
}

void
clu_unserve(clu *c)
{
	/* drain: no new messages, and wait for the handlers running */
	for (int i = 0; i < 4; i++)
		if (c->subs[i])
			natsSubscription_Drain(c->subs[i]);
	for (int i = 0; i < 4; i++)
		if (c->subs[i]) {
			natsSubscription_WaitForDrainCompletion(c->subs[i],
								10000);
			natsSubscription_Destroy(c->subs[i]);
			c->subs[i] = NULL;
		}
}

void
clu_close(clu *c)
{
	if (!c)
		return;
	clu_unserve(c);
	if (c->watching) {
		pthread_mutex_lock(&c->mu);
		c->stop = 1;
		pthread_mutex_unlock(&c->mu);
		pthread_join(c->watcher, NULL);
	}
	if (c->work)
		natsSubscription_Destroy(c->work);
	if (c->kv)
		kvStore_Destroy(c->kv);
	if (c->js)
		jsCtx_Destroy(c->js);
	if (c->nc) {
		natsConnection_Close(c->nc);
		natsConnection_Destroy(c->nc);
	}
	names_clear(&c->members);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

/* A shard's own subject: clipdex.shard.NAME.WHAT (put, query). */
static void
shard_subject(char *buf, size_t cap, const char *name, const char *what)
{
	snprintf(buf, cap, "clipdex.shard.%s.%s", name, what);
}

/* ---- serving ---- */

static void
on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *arg)
{
	clu *c = arg;
	size_t rlen = 0;
	const char *reply_to = natsMsg_GetReply(msg);
	clu_handler h = sub == c->subs[1] ? c->h_put : c->h_query;
	char *body = h(c->h_user, natsMsg_GetData(msg),
		       (size_t)natsMsg_GetDataLength(msg), &rlen);
	if (body && reply_to &&
	    (int64_t)(strlen(c->shard) + 1 + rlen) >
		    natsConnection_GetMaxPayload(nc)) {
		/* over the servers' max_payload: say so instead */
		free(body);
		body = strdup("{\"error\":\"the answer is larger than the "
			      "NATS servers' max_payload: ask for fewer "
			      "results\"}");
		rlen = body ? strlen(body) : 0;
	}
	if (body && reply_to) {
		size_t nl = strlen(c->shard) + 1;
		char *framed = malloc(nl + rlen);
		if (framed) {
			memcpy(framed, c->shard, nl);
			memcpy(framed + nl, body, rlen);
			natsConnection_Publish(nc, reply_to, framed,
					       (int)(nl + rlen));
			free(framed);
		}
	}
	free(body);
	natsMsg_Destroy(msg);
}

int
clu_serve(clu *c, const char *name, clu_handler query, clu_handler put,
	  void *user, cdx_error *err)
{
	char subj[128], own[128];
	natsStatus s;
	if (!name_ok(name))
		return name_error(err, name);
	snprintf(c->shard, sizeof(c->shard), "%s", name);
	c->h_query = query;
	c->h_put = put;
	c->h_user = user;
	shard_subject(subj, sizeof(subj), name, "put");
	shard_subject(own, sizeof(own), name, "query");
	if ((s = natsConnection_Subscribe(&c->subs[0], c->nc, QUERY_SUBJ,
					  on_msg, c)) != NATS_OK ||
	    (s = natsConnection_Subscribe(&c->subs[1], c->nc, subj, on_msg,
					  c)) != NATS_OK ||
	    (s = natsConnection_Subscribe(&c->subs[2], c->nc, own, on_msg,
					  c)) != NATS_OK ||
	    (s = natsConnection_Flush(c->nc)) != NATS_OK)
		return nats_err(err, s, "subscribing");
	return 0;
}

static void
on_api(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *arg)
{
	clu *c = arg;
	const char *to = natsMsg_GetReply(msg);
	(void)sub;
	size_t tl = to ? strlen(to) : 0;
	clu_api_req *r = malloc(sizeof(*r) + tl + 1);
	if (r != NULL) {
		r->nc = nc;
		memcpy(r->reply_to, to ? to : "", tl + 1);
		c->h_api(c->h_api_user, natsMsg_GetData(msg),
			 (size_t)natsMsg_GetDataLength(msg), r);
	}
	natsMsg_Destroy(msg);
}

int
clu_serve_api(clu *c, clu_api_handler h, void *user, cdx_error *err)
{
	natsStatus s;
	c->h_api = h;
	c->h_api_user = user;
	if ((s = natsConnection_QueueSubscribe(&c->subs[3], c->nc, API_SUBJ,
					       API_QUEUE, on_api, c)) !=
		    NATS_OK ||
	    (s = natsConnection_Flush(c->nc)) != NATS_OK) {
		int rc = nats_err(err, s, "subscribing to " API_SUBJ);
		natsSubscription_Destroy(c->subs[3]);   /* NULL: a no-op */
		c->subs[3] = NULL;
		return rc;
	}
	return 0;
}

size_t
clu_api_room(const clu_api_req *r)
{
	/* the server connected to now (a reconnection may have changed it) */
	int64_t room = natsConnection_GetMaxPayload(r->nc);
	return room > 0 ? (size_t)room : 0;
}

void
clu_api_reply(clu_api_req *r, const char *reply, size_t len)
{
	if (r->reply_to[0] && len <= clu_api_room(r))
		natsConnection_Publish(r->nc, r->reply_to, reply, (int)len);
	free(r);
}

/* ---- asking ---- */

int
clu_api_request(clu *c, const char *req, size_t len, int timeout_ms,
		char **reply, size_t *rlen, cdx_error *err)
{
	natsMsg *m = NULL;
	if ((int64_t)len > natsConnection_GetMaxPayload(c->nc))
		return cdx_error_set(err, CDX_ETOOBIG, "the request (%zu "
				     "bytes) is larger than the NATS "
				     "servers' max_payload", len);
	natsStatus s = natsConnection_Request(&m, c->nc, API_SUBJ, req,
					      (int)len, timeout_ms > 0 ?
					      timeout_ms : INT32_MAX);
	if (s == NATS_TIMEOUT)
		return cdx_error_set(err, CDX_ETIMEDOUT, "no reply on " API_SUBJ
				     " within %d ms", timeout_ms);
	if (s == NATS_NO_RESPONDERS)
		return cdx_error_set(err, CDX_ECLOSED, "no clipdexd --nats "
				     "answers on " API_SUBJ);
	if (s != NATS_OK)
		return nats_err(err, s, API_SUBJ);
	size_t n = (size_t)natsMsg_GetDataLength(m);
	*reply = malloc(n + 1);
	if (*reply == NULL) {
		natsMsg_Destroy(m);
		return cdx_error_set(err, CDX_ENOMEM, "out of memory");
	}
	memcpy(*reply, natsMsg_GetData(m), n);
	(*reply)[n] = '\0';
	*rlen = n;
	natsMsg_Destroy(m);
	return 0;
}

void
clu_gather_free(clu_gather *g)
{
	for (size_t i = 0; i < g->n; i++) {
		free(g->shards[i]);
		free(g->bodies[i]);
	}
	free(g->shards);
	free(g->bodies);
	clu_names_free(g->missing, g->n_missing);
	memset(g, 0, sizeof(*g));
}

/* Splits a shard's answer into its name and body (copies). */
static int
unframe(natsMsg *m, char **shard, char **body, size_t *len)
{
	const char *d = natsMsg_GetData(m);
	size_t n = (size_t)natsMsg_GetDataLength(m);
	const char *nul = memchr(d, 0, n);
	if (!nul)
		return -1;
	size_t nl = (size_t)(nul - d);
	*shard = strndup(d, nl);
	*len = n - nl - 1;
	*body = malloc(*len + 1);
	if (!*shard || !*body) {
		free(*shard);
		free(*body);
		*shard = *body = NULL;
		return -1;
	}
	memcpy(*body, nul + 1, *len);
	(*body)[*len] = '\0';
	return 0;
}

/* Whom a scatter waits for: the members and the shards heard from in
 * the last HEARD_MS (struct heard); the older heard are forgotten. */
static int
scatter_targets(clu *c, char ***names, size_t *n)
{
	char **v;
	size_t k;
	if (clu_members(c, &v, &k))
		return CDX_ENOMEM;
	pthread_mutex_lock(&c->mu);
	double t = now_ms();
	for (int i = 0; i < c->n_heard; i++)
		if (t - c->heard[i].at > HEARD_MS)
			c->heard[i--] = c->heard[--c->n_heard];
	char **w = realloc(v, (k + (size_t)c->n_heard + 1) * sizeof(*w));
	if (w != NULL) {
		v = w;
		size_t nm = k;
		for (int i = 0; i < c->n_heard; i++) {
			size_t j = 0;
			/* shown since the members were read */
			while (j < nm && strcmp(v[j], c->heard[i].name) != 0)
				j++;
			if (j == nm && (v[k] = strdup(c->heard[i].name)) != NULL)
				k++;
		}
	}
	pthread_mutex_unlock(&c->mu);
	*names = v;
	*n = k;
	return w != NULL ? 0 : CDX_ENOMEM;
}

int
clu_scatter(clu *c, const char *req, size_t len, clu_gather *out,
	    cdx_error *err)
{
	natsInbox *inbox = NULL;
	natsSubscription *sub = NULL;
	char **want = NULL;
	size_t n_want = 0, cap;
	int rc = 0;
	natsStatus s;
	memset(out, 0, sizeof(*out));
	if (scatter_targets(c, &want, &n_want)) {
		clu_names_free(want, n_want);
		return cdx_error_set(err, CDX_ENOMEM, "out of memory");
	}
	cap = n_want + 4;
	out->shards = calloc(cap, sizeof(char *));
	out->bodies = calloc(cap, sizeof(char *));
	if (!out->shards || !out->bodies) {
		rc = cdx_error_set(err, CDX_ENOMEM, "out of memory");
		goto out;
	}
	if ((s = natsInbox_Create(&inbox)) != NATS_OK ||
	    (s = natsConnection_SubscribeSync(&sub, c->nc, inbox)) != NATS_OK ||
	    (s = natsConnection_PublishRequest(c->nc, QUERY_SUBJ, inbox, req,
					       (int)len)) != NATS_OK) {
		rc = nats_err(err, s, "scatter");
		goto out;
	}
	double t0 = now_ms(), end = t0 + c->p.timeout_ms, next = t0 + ASK_AGAIN_MS;
	double every = ASK_AGAIN_MS;
	size_t got_wanted = 0;
	while (got_wanted < n_want) {
		double t = now_ms(), left = end - t;
		if (left <= 0)
			break;
		if (t >= next) {
			/* a shard reconnecting (a NATS node lost) missed the
			 * scatter: ask the silent ones again, on their own
			 * subjects */
			for (size_t i = 0; i < n_want; i++) {
				char subj[128];
				if (!want[i])
					continue;
				shard_subject(subj, sizeof(subj), want[i],
					      "query");
				natsConnection_PublishRequest(c->nc, subj,
							      inbox, req,
							      (int)len);
			}
			every *= 2;     /* a slow shard is not flooded */
			next = t + every;
		}
		if (next - t < left)
			left = next - t;
		natsMsg *m = NULL;
		s = natsSubscription_NextMsg(&m, sub, (int64_t)left + 1);
		/* no responders: a re-ask found no subscriber (that shard
		 * is down); wait on for the others */
		if (s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS)
			continue;
		if (s != NATS_OK) {
			rc = nats_err(err, s, "gather");
			goto out;
		}
		char *shard, *body;
		size_t blen;
		if (unframe(m, &shard, &body, &blen) == 0) {
			int dup = 0;
			for (size_t i = 0; i < out->n; i++)
				dup |= strcmp(out->shards[i], shard) == 0;
			for (size_t i = 0; !dup && i < n_want; i++)
				if (want[i] && strcmp(want[i], shard) == 0) {
					free(want[i]); /* answered */
					want[i] = NULL;
					got_wanted++;
				}
			if (!dup) {
				pthread_mutex_lock(&c->mu);
				heard_note(c, shard);
				pthread_mutex_unlock(&c->mu);
			}
			if (dup || out->n == cap) {
				free(shard);
				free(body);
			} else {
				out->shards[out->n] = shard;
				out->bodies[out->n++] = body;
			}
		}
		natsMsg_Destroy(m);
	}
	/* what is left of want did not answer */
	out->missing = calloc(n_want ? n_want : 1, sizeof(char *));
	if (!out->missing) {
		rc = cdx_error_set(err, CDX_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n_want; i++)
		if (want[i]) {
			out->missing[out->n_missing++] = want[i];
			want[i] = NULL;
		}
out:
	clu_names_free(want, n_want);
	if (sub)
		natsSubscription_Destroy(sub);
	natsInbox_Destroy(inbox);
	if (rc)
		clu_gather_free(out);
	return rc;
}

int
clu_request(clu *c, const char *shard, const char *req, size_t len,
	    char **reply, size_t *rlen, cdx_error *err)
{
	char subj[128];
	natsMsg *m = NULL;
	if (!name_ok(shard))
		return name_error(err, shard);
	shard_subject(subj, sizeof(subj), shard, "put");
	natsStatus s = natsConnection_Request(&m, c->nc, subj, req, (int)len,
					      c->p.timeout_ms);
	if (s != NATS_OK)
		return nats_err(err, s, subj);
	char *name;
	int r = unframe(m, &name, reply, rlen);
	natsMsg_Destroy(m);
	if (r)
		return cdx_error_set(err, CDX_EIO, "%s: a malformed answer",
				     subj);
	free(name);
	return 0;
}

/* ---- the work queue ---- */

int
clu_enqueue(clu *c, const char *loc, cdx_error *err)
{
	double t0 = now_ms();
	natsStatus s;
	for (;;) {
		jsPubAck *pa = NULL;
		jsErrCode jerr = 0;
		s = js_Publish(&pa, c->js, WORK_SUBJ, loc, (int)strlen(loc),
			       NULL, &jerr);
		jsPubAck_Destroy(pa);
		/* no responders: the stream's leader is being elected (a
		 * new stream, a node lost); a timeout may be the same */
		if ((s != NATS_NO_RESPONDERS && s != NATS_TIMEOUT) ||
		    now_ms() - t0 > JS_READY_MS)
			break;
		usleep(100000);
	}
	return s == NATS_OK ? 0 : nats_err(err, s, "enqueueing");
}

int
clu_fetch(clu *c, int max, int timeout_ms, clu_job ***jobs, size_t *n,
	  cdx_error *err)
{
	natsMsgList list = { 0 };
	jsErrCode jerr = 0;
	*jobs = NULL;
	*n = 0;
	if (!c->work)
		return cdx_error_set(err, CDX_EINVAL, "not a worker");
	natsStatus s = natsSubscription_Fetch(&list, c->work, max, timeout_ms,
					      &jerr);
	if (s == NATS_TIMEOUT)
		return 0;
	if (s != NATS_OK)
		return nats_err(err, s, "fetching work");
	clu_job **v = calloc((size_t)list.Count + 1, sizeof(*v));
	for (int i = 0; v && i < list.Count; i++) {
		if (!(v[*n] = malloc(sizeof(clu_job))))
			break;
		v[*n]->msg = list.Msgs[i];
		list.Msgs[i] = NULL; /* ours now */
		(*n)++;
	}
	natsMsgList_Destroy(&list); /* what was not taken is delivered again */
	if (!v)
		return cdx_error_set(err, CDX_ENOMEM, "out of memory");
	*jobs = v;
	return 0;
}

const char *
clu_job_data(const clu_job *j, size_t *len)
{
	*len = (size_t)natsMsg_GetDataLength(j->msg);
	return natsMsg_GetData(j->msg);
}

void
clu_job_done(clu_job *j, int outcome)
{
	if (outcome == CLU_DONE)
		natsMsg_AckSync(j->msg, NULL, NULL);
	else if (outcome == CLU_DROP)
		natsMsg_Term(j->msg, NULL);
	else
		natsMsg_NakWithDelay(j->msg, (int64_t)RETRY_DELAY_MS * 1000000,
				     NULL);
	natsMsg_Destroy(j->msg);
	free(j);
}
