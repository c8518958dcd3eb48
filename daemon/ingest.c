/*
 * ingest.c - the daemon's side of the indexer (indexer/indexer.h): starts
 * it with the daemon's settings, keeps the set of watched folders in the
 * store ("indexer.roots", one path per line), answers "add" requests that
 * wait, and reports progress in "status".
 */
#include <cjson/cJSON.h>
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
	for (int i = 0; i < c->n_exclude && i < WATCH_MAX_EXCLUDE; i++)
		p.exclude[p.n_exclude++] = c->exclude[i];
	if ((rc = watch_start(s->st, s->model, &p, &s->watch, err)) != 0)
		return rc;

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
	cJSON_AddNumberToObject(q, "pending", (double)p.remaining);
	cJSON_AddNumberToObject(q, "done", (double)p.done);
	cJSON_AddNumberToObject(q, "remaining", (double)p.remaining);
	cJSON_AddNumberToObject(q, "rate", p.rate);
	cJSON_AddNumberToObject(q, "eta_s", p.eta_s);
	cJSON_AddBoolToObject(q, "scanning", p.scanning);
	cJSON_AddNumberToObject(q, "encoded", (double)p.encoded);
	cJSON_AddNumberToObject(q, "reused", (double)p.reused);
	cJSON_AddNumberToObject(q, "failed", (double)p.failed);
	cJSON_AddNumberToObject(q, "skipped", (double)p.skipped);
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
