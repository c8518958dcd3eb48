/*
 * ingest.c - one-shot indexing of added files and folders, on one thread:
 * find the files, skip those whose size and mtime match their record,
 * decode and preprocess the rest, encode them in batches and put each batch
 * into the store in one transaction.  Files that cannot be decoded become
 * failure records and are not retried until they change.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <xxhash.h>

#include "daemon/srv_internal.h"

/* Local files may be larger than uploads (big PNGs). */
#define FILE_MAX_BYTES ((size_t)512 << 20)

struct pathlist {
	char **v;
	size_t n, cap;
};

static int
pathlist_add(struct pathlist *l, const char *p)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		char **v = realloc(l->v, cap * sizeof(*v));
		if (v == NULL)
			return CDX_ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	if ((l->v[l->n] = strdup(p)) == NULL)
		return CDX_ENOMEM;
	l->n++;
	return 0;
}

static void
pathlist_free(struct pathlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

/* Regular files under path (or path itself), hidden names and symbolic
 * links skipped. */
static void
find_files(const char *path, struct pathlist *out, int depth)
{
	struct stat st;
	if (lstat(path, &st) != 0 || depth > 64)
		return;
	if (S_ISREG(st.st_mode)) {
		pathlist_add(out, path);
		return;
	}
	if (!S_ISDIR(st.st_mode))
		return;
	DIR *d = opendir(path);
	if (d == NULL) {
		cdx_log(CDX_LOG_WARN, "cannot read folder %s: %s", path,
		    strerror(errno));
		return;
	}
	struct dirent *e;
	char child[PATH_MAX];
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (snprintf(child, sizeof(child), "%s%s%s", path,
		    strcmp(path, "/") == 0 ? "" : "/", e->d_name) >=
		    (int)sizeof(child))
			continue;
		find_files(child, out, depth + 1);
	}
	closedir(d);
}

/* A batch of decoded images waiting for the encoder. */
struct batch {
	int n, cap;
	size_t plane;
	float *pixels;
	float *emb;
	store_image *imgs;
	char **paths;
	int *is_update;
};

static int
batch_init(struct batch *b, int cap, size_t plane, int dim)
{
	memset(b, 0, sizeof(*b));
	b->cap = cap;
	b->plane = plane;
	b->pixels = malloc(sizeof(float) * plane * (size_t)cap);
	b->emb = malloc(sizeof(float) * (size_t)dim * (size_t)cap);
	b->imgs = calloc((size_t)cap, sizeof(*b->imgs));
	b->paths = calloc((size_t)cap, sizeof(*b->paths));
	b->is_update = calloc((size_t)cap, sizeof(*b->is_update));
	if (!b->pixels || !b->emb || !b->imgs || !b->paths || !b->is_update)
		return CDX_ENOMEM;
	return 0;
}

static void
batch_free(struct batch *b)
{
	for (int i = 0; i < b->n; i++)
		free(b->paths[i]);
	free(b->pixels);
	free(b->emb);
	free(b->imgs);
	free(b->paths);
	free(b->is_update);
}

static void
record_failure(srv *s, const char *path, const struct stat *st,
    const char *reason, ingest_task *t)
{
	store_failure f = { path, reason, st->st_size,
	    (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec, 0 };
	cdx_error err;
	if (store_failure_put(s->st, &f, &err) != 0)
		cdx_log(CDX_LOG_WARN, "%s: cannot record the failure: %s", path,
		    err.msg);
	cdx_log(CDX_LOG_INFO, "cannot index %s: %s", path, reason);
	t->failed++;
}

static void
batch_flush(srv *s, struct batch *b, ingest_task *t)
{
	cdx_error err;
	int dim = s->info->embed_dim;

	if (b->n == 0)
		return;
	if (clip_encode_images(s->ingest_ctx, b->pixels, b->n, b->emb, &err) != 0) {
		cdx_log(CDX_LOG_ERROR, "encoding a batch failed: %s", err.msg);
		t->failed += b->n;
	} else {
		for (int i = 0; i < b->n; i++)
			b->imgs[i].embedding = b->emb + (size_t)i * dim;
		if (store_image_put(s->st, b->imgs, (size_t)b->n, &err) != 0) {
			cdx_log(CDX_LOG_ERROR, "storing a batch failed: %s", err.msg);
			t->failed += b->n;
		} else {
			for (int i = 0; i < b->n; i++) {
				if (b->is_update[i])
					t->updated++;
				else
					t->added++;
			}
			s->ingest_images += b->n;
		}
	}
	for (int i = 0; i < b->n; i++) {
		free(b->paths[i]);
		b->paths[i] = NULL;
	}
	b->n = 0;
}

static int64_t
mtime_ns(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* Decodes one file into the batch (or records why it cannot be). */
static void
index_file(srv *s, const char *path, struct batch *b, ingest_task *t)
{
	const clip_preprocess_cfg *pp = &s->info->preprocess;
	clip_decode_opts dopt = { s->cfg->max_pixels, pp->shortest_edge };
	struct stat st;
	store_image *old = NULL;
	store_failure *fail = NULL;
	uint8_t *data = NULL;
	size_t len;
	clip_image_info info;
	clip_image img;
	cdx_error err;

	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
		return;
	if (store_image_get_by_path(s->st, path, &old, NULL) == 0 &&
	    old->size == st.st_size && old->mtime_ns == mtime_ns(&st)) {
		store_image_free(old);
		t->unchanged++;
		return;
	}
	if (store_failure_get(s->st, path, &fail, NULL) == 0 &&
	    fail->size == st.st_size && fail->mtime_ns == mtime_ns(&st)) {
		store_failure_free(fail);
		t->unchanged++;         /* failed before; retried when it changes */
		return;
	}
	store_failure_free(fail);
	if (srv_read_file(path, FILE_MAX_BYTES, &data, &len, &err) != 0) {
		record_failure(s, path, &st, err.msg, t);
		goto out;
	}
	if (clip_image_probe(data, len, &info, NULL) != 0 &&
	    len >= 4 && memcmp(data, "\xff\xd8", 2) != 0 &&
	    memcmp(data, "\x89PNG", 4) != 0)
		goto out;               /* not an image: not a failure either */
	if (clip_image_decode(data, len, &dopt, &img, &err) != 0) {
		record_failure(s, path, &st, err.msg, t);
		goto out;
	}
	int rc = clip_image_preprocess(&img, pp, b->pixels + b->plane * b->n,
	    &err);
	if (rc != 0) {
		clip_image_free(&img);
		record_failure(s, path, &st, err.msg, t);
		goto out;
	}
	store_image *r = &b->imgs[b->n];
	memset(r, 0, sizeof(*r));
	b->paths[b->n] = strdup(path);
	if (b->paths[b->n] == NULL) {
		clip_image_free(&img);
		goto out;
	}
	r->path = b->paths[b->n];
	r->size = st.st_size;
	r->mtime_ns = mtime_ns(&st);
	XXH128_hash_t h = XXH3_128bits(data, len);
	XXH128_canonical_t hc;
	XXH128_canonicalFromHash(&hc, h);
	memcpy(r->hash, hc.digest, STORE_HASH_LEN);
	r->width = (uint32_t)img.info.width;
	r->height = (uint32_t)img.info.height;
	r->capture_time = img.info.capture_time == INT64_MIN ?
	    STORE_TIME_UNKNOWN : img.info.capture_time;
	b->is_update[b->n] = old != NULL;
	clip_image_free(&img);
	b->n++;
out:
	store_image_free(old);
	free(data);
}

struct gone {
	const char *prefix;
	size_t plen;
	uint64_t *ids;
	size_t n, cap;
};

static int
collect_gone(void *user, const store_image *img)
{
	struct gone *g = user;
	struct stat st;
	if (strncmp(img->path, g->prefix, g->plen) != 0 ||
	    (img->path[g->plen] != '/' && img->path[g->plen] != '\0'))
		return 0;
	if (stat(img->path, &st) == 0 || errno != ENOENT)
		return 0;
	if (g->n == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 64;
		uint64_t *v = realloc(g->ids, cap * sizeof(*v));
		if (v == NULL)
			return CDX_ENOMEM;
		g->ids = v;
		g->cap = cap;
	}
	g->ids[g->n++] = img->id;
	return 0;
}

/* Forgets records under path whose files no longer exist. */
static void
forget_gone(srv *s, const char *path)
{
	struct gone g = { path, strlen(path), NULL, 0, 0 };
	size_t n = 0;
	if (store_image_foreach(s->st, collect_gone, &g, NULL) == 0 && g.n > 0 &&
	    store_image_delete(s->st, g.ids, g.n, &n, NULL) == 0 && n > 0)
		cdx_log(CDX_LOG_INFO, "forgot %zu images gone from %s", n, path);
	free(g.ids);
}

static void
answer(ingest_task *t, int interrupted)
{
	srv_job *job = t->waiter;
	if (job == NULL)
		return;
	t->waiter = NULL;
	if (interrupted) {
		srv_job_error(job, "busy", "indexing of %s was interrupted by a "
		    "shutdown after %lld files", t->path,
		    (long long)(t->added + t->updated + t->unchanged + t->failed));
		return;
	}
	cJSON *r = cJSON_CreateObject();
	cJSON *req = cJSON_ParseWithLength(job->req, job->len);
	cJSON *tag = req ? cJSON_DetachItemFromObject(req, "tag") : NULL;
	cJSON_AddNumberToObject(r, "v", 1);
	cJSON_AddTrueToObject(r, "ok");
	cJSON_AddNumberToObject(r, "added", (double)t->added);
	cJSON_AddNumberToObject(r, "updated", (double)t->updated);
	cJSON_AddNumberToObject(r, "unchanged", (double)t->unchanged);
	cJSON_AddNumberToObject(r, "failed", (double)t->failed);
	if (tag != NULL)
		cJSON_AddItemToObject(r, "tag", tag);
	char *out = cJSON_PrintUnformatted(r);
	cJSON_Delete(r);
	cJSON_Delete(req);
	if (out != NULL)
		srv_job_reply(job, out, 200);
	else
		srv_job_error(job, "internal", "out of memory");
}

static int
stopping(srv *s)
{
	pthread_mutex_lock(&s->mu);
	int stop = s->ingest_stop;
	pthread_mutex_unlock(&s->mu);
	return stop;
}

static void
run_task(srv *s, ingest_task *t, struct batch *b)
{
	struct pathlist files = { 0 };
	struct timespec a, z;
	int interrupted = 0;

	clock_gettime(CLOCK_MONOTONIC, &a);
	find_files(t->path, &files, 0);
	s->ingest_pending += (int64_t)files.n;
	cdx_log(CDX_LOG_INFO, "indexing %s: %zu files", t->path, files.n);
	for (size_t i = 0; i < files.n; i++) {
		if (stopping(s)) {
			interrupted = 1;
			s->ingest_pending -= (int64_t)(files.n - i);
			break;
		}
		index_file(s, files.v[i], b, t);
		if (b->n == b->cap)
			batch_flush(s, b, t);
		s->ingest_pending--;
		s->ingest_done++;
	}
	batch_flush(s, b, t);
	if (!interrupted)
		forget_gone(s, t->path);
	clock_gettime(CLOCK_MONOTONIC, &z);
	s->ingest_busy_ns += (int64_t)(z.tv_sec - a.tv_sec) * 1000000000 +
	    (z.tv_nsec - a.tv_nsec);
	cdx_log(CDX_LOG_INFO, "indexed %s: %lld added, %lld updated, %lld "
	    "unchanged, %lld failed", t->path, (long long)t->added,
	    (long long)t->updated, (long long)t->unchanged, (long long)t->failed);
	pathlist_free(&files);
	answer(t, interrupted);
}

static void *
ingest_main(void *arg)
{
	srv *s = arg;
	const clip_preprocess_cfg *pp = &s->info->preprocess;
	struct batch b;
	int cap = s->cfg->batch > 0 ? s->cfg->batch : 16;

	if (batch_init(&b, cap, (size_t)pp->crop_width * pp->crop_height * 3,
	    s->info->embed_dim) != 0) {
		cdx_log(CDX_LOG_ERROR, "indexing disabled: out of memory");
		batch_free(&b);
		return NULL;
	}
	for (;;) {
		pthread_mutex_lock(&s->mu);
		while (s->tasks_head == NULL && !s->ingest_stop)
			pthread_cond_wait(&s->ingest_cv, &s->mu);
		ingest_task *t = s->ingest_stop ? NULL : s->tasks_head;
		if (t != NULL) {
			s->tasks_head = t->next;
			if (s->tasks_head == NULL)
				s->tasks_tail = NULL;
		}
		pthread_mutex_unlock(&s->mu);
		if (t == NULL)
			break;
		run_task(s, t, &b);
		free(t->path);
		free(t);
	}
	batch_free(&b);
	return NULL;
}

int
ingest_start(srv *s, cdx_error *err)
{
	int rc, cap = s->cfg->batch > 0 ? s->cfg->batch : 16;
	if ((rc = clip_ctx_new(s->model, cap, &s->ingest_ctx, err)) != 0)
		return rc;
	if (pthread_create(&s->ingest_thread, NULL, ingest_main, s) != 0)
		return cdx_error_set(err, CDX_ENOMEM, "cannot start the indexer");
	s->ingest_started = 1;
	return 0;
}

void
ingest_stop(srv *s)
{
	ingest_task *t;

	pthread_mutex_lock(&s->mu);
	s->ingest_stop = 1;
	pthread_cond_broadcast(&s->ingest_cv);
	pthread_mutex_unlock(&s->mu);
	if (s->ingest_started)
		pthread_join(s->ingest_thread, NULL);
	s->ingest_started = 0;
	while ((t = s->tasks_head) != NULL) {
		s->tasks_head = t->next;
		answer(t, 1);
		free(t->path);
		free(t);
	}
	s->tasks_tail = NULL;
	clip_ctx_free(s->ingest_ctx);
	s->ingest_ctx = NULL;
}

void
ingest_enqueue(srv *s, const char *canon, srv_job *waiter)
{
	ingest_task *t = calloc(1, sizeof(*t));
	if (t == NULL || (t->path = strdup(canon)) == NULL) {
		free(t);
		if (waiter != NULL)
			srv_job_error(waiter, "internal", "out of memory");
		return;
	}
	t->waiter = waiter;
	pthread_mutex_lock(&s->mu);
	if (s->ingest_stop) {
		pthread_mutex_unlock(&s->mu);
		answer(t, 1);
		free(t->path);
		free(t);
		return;
	}
	if (s->tasks_tail != NULL)
		s->tasks_tail->next = t;
	else
		s->tasks_head = t;
	s->tasks_tail = t;
	pthread_cond_signal(&s->ingest_cv);
	pthread_mutex_unlock(&s->mu);
}
