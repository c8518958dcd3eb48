/*
 * watch.c - the indexer: folder walks and inotify on a control thread,
 * then decode workers -> one encoder -> one store writer, joined by
 * bounded queues (indexer/queue.h).  See indexer.h and docs/INDEXER.md.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/file.h"
#include "common/path.h"
#include "common/threads.h"
#include "encoder/video.h"
#include "indexer/indexer.h"
#include "indexer/indexer_test.h"
#include "indexer/queue.h"

#define EVENT_BUF (64 * 1024)
#define MOVE_PAIR_S 0.5         /* an unpaired IN_MOVED_FROM is a delete */
#define WALK_STEP 256           /* entries per walk step between events */
#define WRITE_MAX 512           /* records per store transaction */
#define MOVE_CHUNK 512          /* records moved per transaction */
#define MAX_DEPTH 256
#define WATCH_MASK (IN_CREATE | IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB | \
    IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE | IN_DELETE_SELF | IN_ONLYDIR | \
    IN_DONT_FOLLOW | IN_EXCL_UNLINK)

enum origin {
	ORIG_SCAN = 0,          /* found by a walk: may still be being written */
	ORIG_DONE = 1,          /* closed after writing, or renamed in */
	ORIG_QUIET = 2,         /* unchanged for quiet_ms */
};

enum kind {
	K_NONE = 0,
	K_ENCODE,               /* pixels ready for the encoder */
	K_REUSE,                /* embedding copied from a record of equal bytes */
	K_FAIL,                 /* record the reason */
	K_SKIP,                 /* not an image / too small: no record */
	K_DROP,                 /* gone or changing: nothing to do now */
	K_CLIP,                 /* a video clip's frames for the encoder */
};

typedef struct task {
	struct task *next;
	char *path;
	int live;
	watch_done_fn fn;
	void *user;
	_Atomic int64_t outstanding; /* items in flight + 1 for the walk */
	_Atomic int64_t added, updated, unchanged, failed, moved;
	_Atomic int interrupted;
	_Atomic int store_full;  /* some files wait for space in the store */
	int forgotten;          /* 1: the forget after the scan is done */
} task;

/* Store changes the control thread asks of the writer (item.op). */
enum op {
	OP_NONE = 0,            /* a file through the pipeline */
	OP_FORGET_PATH,         /* forget the records of path */
	OP_FORGET_UNDER,        /* ... under folder path (gone_only: whose
				   files are gone) */
	OP_MOVE_FILE,           /* a file renamed from path to `to` */
	OP_MOVE_DIR,            /* a folder renamed from path to `to` */
};

typedef struct item {
	task *t;
	char *path;
	int op;                 /* enum op */
	char *to;               /* OP_MOVE_* */
	int gone_only;          /* OP_FORGET_UNDER */
	int origin;
	int kind;
	int is_update;
	int64_t size, mtime_ns;
	float *pixels;
	float *emb;
	uint64_t del_id;        /* record whose bytes moved here: deleted */
	char *moved_from;       /* or renamed to path (keeping its id) */
	int del_path;           /* delete the record of path (now no image) */
	int was_clip;           /* path's records were a clip's frames */
	uint8_t hash[STORE_HASH_LEN];
	uint32_t width, height;
	int64_t capture_time;
	int nframes;            /* K_CLIP: its frames, planes (freed once
				   encoded) and times; emb holds nframes
				   embeddings */
	float **fplanes;
	int64_t *fms;
	uint32_t slot;          /* its path's slot in watch.flight */
	int skip;               /* K_SKIP: why (enum watch_skip) */
	int temporary;          /* K_FAIL of a temporary error: retried */
	int tries;              /* temporary failures of this path so far */
	char reason[CDX_ERRMSG_MAX + 32];
} item;

struct wdir {
	DIR *d;
	char *path;
	dev_t dev;
	ino_t ino;
};

/* A file to look at again after a quiet period; t (may be NULL) is the
 * task that waits for it (a reference: outstanding counts it). */
struct timer {
	char *path;
	double due;
	task *t;
	int tries;              /* a retry after this many temporary failures */
};

struct pmove {
	uint32_t cookie;
	int isdir;
	char *path;
	double due;
};

struct devino {
	dev_t dev;
	ino_t ino;
};

#define FLIGHT_SLOTS 65536  /* a power of two */
#define FLIGHT_RETRY_S 0.1

struct watch {
	store *st;
	const clip_model *m;
	const clip_model_info *info;
	watch_params p;
	size_t plane;
	int dim;
	/* Pixel planes (plane floats each) for decoders to preprocess into
	 * and the encoder to read in place: taken with plane_get, given back
	 * with plane_put; only as many are ever allocated as are in flight. */
	pthread_mutex_t pool_mu;
	float **pool;
	size_t npool, pool_cap;

	int ifd;
	int wake[2];
	pthread_t control, encoder, writer, *decoders;
	int n_dec, started_control, started_encoder, started_writer;
	wq decq, encq, wrq;

	pthread_mutex_t mu;     /* guards the fields down to `warning` */
	task *tasks_head, *tasks_tail;
	task *finished;
	struct timer *retry;    /* due: a delay (s) from when the control
				   thread takes it */
	size_t n_retry, cap_retry;
	char **roots;
	size_t n_roots, cap_roots;
	int stop, paused, rescan_all;
	char warning[256];

	/* control thread only */
	char **wdpath;
	int wdcap;
	struct timer *timers;
	size_t n_timers, cap_timers;
	struct pmove *moves;
	size_t n_moves, cap_moves;
	item **ready;
	size_t n_ready, cap_ready, ready_head;
	task *cur;
	struct wdir *stack;
	size_t depth, cap_stack;
	_Atomic int walking;
	struct devino *seen;
	size_t n_seen, cap_seen;
	double last_tick;

	_Atomic int store_full;  /* the last commit found the store full */
	_Atomic int full_tries;  /* commits failed in a row for a full store */
	_Atomic int64_t queued, done, encoded, reused, failed, skipped, renamed,
	    deleted, overflows, watches, busy_ns, decoding, clips, frames;
	_Atomic int64_t skipped_by[WATCH_SKIP_KINDS];  /* sums to skipped */

	/* Items in the pipeline, counted per slot of their path's hash: a
	 * file that is already on its way is not queued a second time. */
	_Atomic uint32_t flight[FLIGHT_SLOTS];
};

/* ---- small helpers ---- */

/* Counts a skipped file, by why. */
static void
count_skip(watch *w, int why)
{
	w->skipped++;
	w->skipped_by[why >= 0 && why < WATCH_SKIP_KINDS ? why :
	    WATCH_SKIP_OTHER]++;
}

const char *
watch_skip_name(int why)
{
	static const char *const names[WATCH_SKIP_KINDS] = { "empty",
		"excluded", "small", "video", "image_other", "other" };
	return why >= 0 && why < WATCH_SKIP_KINDS ? names[why] : "other";
}

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int64_t
mtime_ns(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static int
grow(void **v, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap ? *cap * 2 : 16;
	while (n < need)
		n *= 2;
	void *p = realloc(*v, n * elem);
	if (p == NULL)
		return CDX_ENOMEM;
	*v = p;
	*cap = n;
	return 0;
}

static char *
join(const char *dir, const char *name)
{
	char *p;
	if (asprintf(&p, "%s%s%s", dir, strcmp(dir, "/") == 0 ? "" : "/",
	    name) < 0)
		return NULL;
	return p;
}

static void
wake(watch *w)
{
	char c = 1;
	if (write(w->wake[1], &c, 1) < 0) {
		/* full pipe: the control thread is already due to wake */
	}
}

/* Indexer threads yield to the caller's (queries); decoders also yield
 * to the encoder (extra = DECODE_NICE), so they soak up the CPU the
 * encoder leaves idle instead of preempting its OpenBLAS work. */
#define DECODE_NICE 5

static void
lower_priority(watch *w, int extra)
{
	int inc = w->p.nice + extra;
	if (inc > 0) {
		pid_t tid = (pid_t)syscall(SYS_gettid);
		errno = 0;
		int cur = getpriority(PRIO_PROCESS, (id_t)tid);
		if (errno == 0 && setpriority(PRIO_PROCESS, (id_t)tid,
		    cur + inc > 19 ? 19 : cur + inc) != 0)
			cdx_log(CDX_LOG_DEBUG, "indexer: cannot lower priority: %s",
			    strerror(errno));
	}
}

/* Is this name (in this path) left out by the settings? */
static int
excluded(const watch *w, const char *path, const char *name)
{
	if (!w->p.hidden && name[0] == '.')
		return 1;
	for (int i = 0; i < w->p.n_exclude; i++) {
		const char *pat = w->p.exclude[i];
		if (strchr(pat, '/') != NULL ? fnmatch(pat, path, 0) == 0 :
		    fnmatch(pat, name, 0) == 0)
			return 1;
	}
	return 0;
}

/* Is any component of path below its root excluded? (for events) */
static int
path_excluded(watch *w, const char *path)
{
	const char *base = strrchr(path, '/');
	return excluded(w, path, base ? base + 1 : path);
}

/* ---- tasks and items ---- */

static void
task_release(watch *w, task *t)
{
	if (atomic_fetch_sub(&t->outstanding, 1) != 1)
		return;
	pthread_mutex_lock(&w->mu);
	t->next = w->finished;
	w->finished = t;
	pthread_mutex_unlock(&w->mu);
	wake(w);
}

static void
task_free(task *t)
{
	if (t == NULL)
		return;
	free(t->path);
	free(t);
}

static float *
plane_get(watch *w)
{
	float *p = NULL;
	pthread_mutex_lock(&w->pool_mu);
	if (w->npool > 0)
		p = w->pool[--w->npool];
	pthread_mutex_unlock(&w->pool_mu);
	return p != NULL ? p : malloc(sizeof(float) * w->plane);
}

static void
plane_put(watch *w, float *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&w->pool_mu);
	if (w->npool == w->pool_cap) {
		size_t cap = w->pool_cap ? 2 * w->pool_cap : 64;
		float **v = realloc(w->pool, cap * sizeof(*v));
		if (v != NULL) {
			w->pool = v;
			w->pool_cap = cap;
		}
	}
	if (w->npool < w->pool_cap) {
		w->pool[w->npool++] = p;
		p = NULL;
	}
	pthread_mutex_unlock(&w->pool_mu);
	free(p);
}

static void
item_free(item *it)
{
	if (it == NULL)
		return;
	free(it->path);
	free(it->to);
	free(it->moved_from);
	free(it->pixels);
	free(it->emb);
	for (int i = 0; it->fplanes != NULL && i < it->nframes; i++)
		free(it->fplanes[i]);
	free(it->fplanes);
	free(it->fms);
	free(it);
}

static void timer_set(watch *w, const char *path, double due, task *t,
    int tries);
static void send_op(watch *w, int op, const char *path, const char *to,
    int gone_only, task *t);
static int queue_task(watch *w, const char *path, int live, watch_done_fn fn,
    void *user);

/* Whether an error may go away by itself (no file descriptors or memory
 * left, permission denied, an I/O error, a full disk, a busy resource):
 * the file is looked at again later (retry_delay).  Any other error (the
 * bytes are not a decodable image) is a failure until the file changes. */
static int
temporary(int code)
{
	return code == CDX_ENOMEM || code == CDX_EIO || code == CDX_EPERM ||
	    code == CDX_EFULL || code == CDX_EBUSY || code == CDX_ETIMEDOUT;
}

/* Seconds before the retry after `tries` temporary failures: retry_ms,
 * doubling with each try, at most 64 times as long. */
static double
retry_delay(const watch *w, int tries)
{
	int sh = tries < 1 ? 0 : tries > 7 ? 6 : tries - 1;
	return (double)w->p.retry_ms * 1e-3 * (double)(1 << sh);
}

static uint32_t
flight_slot(const char *path)
{
	return (uint32_t)(XXH3_64bits(path, strlen(path)) & (FLIGHT_SLOTS - 1));
}

/* The end of an item's life, whatever became of it. */
static void
item_finish(watch *w, item *it, int interrupted)
{
	if (it->op == OP_NONE) {
		w->flight[it->slot]--;
		w->done++;
	}
	if (it->t != NULL) {
		if (interrupted)
			it->t->interrupted = 1;
		task_release(w, it->t);
	}
	item_free(it);
}

static item *
item_new(task *t, const char *path, const struct stat *st, int origin)
{
	item *it = calloc(1, sizeof(*it));
	if (it == NULL || (it->path = strdup(path)) == NULL) {
		free(it);
		return NULL;
	}
	it->t = t;
	it->origin = origin;
	it->size = st->st_size;
	it->mtime_ns = mtime_ns(st);
	return it;
}

/* ---- the control thread's ready list (items waiting for the decoders) */

static void
ready_push(watch *w, item *it)
{
	it->slot = flight_slot(it->path);
	w->flight[it->slot]++;
	w->queued++;
	if (it->t != NULL)
		it->t->outstanding++;
	if (grow((void **)&w->ready, &w->cap_ready, w->n_ready + w->ready_head + 1,
	    sizeof(*w->ready)) != 0) {
		item_finish(w, it, 1);
		return;
	}
	w->ready[w->ready_head + w->n_ready++] = it;
}

/* Moves ready items into the decode queue while it has room. */
static void
ready_flush(watch *w)
{
	while (w->n_ready > 0) {
		item *it = w->ready[w->ready_head];
		if (wq_push(&w->decq, it, 0) != 0)
			break;
		w->ready_head++;
		w->n_ready--;
	}
	if (w->n_ready == 0)
		w->ready_head = 0;
}

/* Decides whether a file needs the pipeline; counts it for t otherwise. */
static void
consider_file(watch *w, task *t, const char *path, const struct stat *st,
    int origin, int tries)
{
	store_image *old = NULL;
	store_failure *f = NULL;

	if (st->st_size == 0) {
		count_skip(w, WATCH_SKIP_EMPTY);
		return;         /* nothing written yet: not an image (yet) */
	}
	if (store_image_get_by_path(w->st, path, &old, NULL) == 0) {
		int same = old->size == st->st_size &&
		    old->mtime_ns == mtime_ns(st);
		store_image_free(old);
		if (same) {
			if (t != NULL)
				t->unchanged++;
			return;
		}
	} else if (store_failure_get(w->st, path, &f, NULL) == 0) {
		/* A failure stands until the file changes, unless it was
		 * temporary: every look (a scan, an event, a retry) tries a
		 * temporary failure again. */
		int same = f->size == st->st_size && f->mtime_ns == mtime_ns(st) &&
		    strncmp(f->reason, WATCH_TEMPORARY,
		    strlen(WATCH_TEMPORARY)) != 0;
		store_failure_free(f);
		if (same) {
			if (t != NULL)
				t->unchanged++;
			return;
		}
	}
	if (w->flight[flight_slot(path)] > 0) {
		/* This file (or one sharing its slot) is still on its way through
		 * the pipeline, e.g. a close event right after a scan found it:
		 * look again shortly, once its record is written. */
		if (t != NULL)
			t->outstanding++;       /* the timer's reference */
		timer_set(w, path, now_s() + FLIGHT_RETRY_S, t, tries);
		return;
	}
	item *it = item_new(t, path, st, origin);
	if (it == NULL) {
		if (t != NULL)
			t->interrupted = 1;
		return;
	}
	it->tries = tries;
	ready_push(w, it);
}

/* ---- watches (control thread) ---- */

static void
set_warning(watch *w, const char *msg)
{
	pthread_mutex_lock(&w->mu);
	snprintf(w->warning, sizeof(w->warning), "%s", msg);
	pthread_mutex_unlock(&w->mu);
}

static void
add_inotify(watch *w, const char *path)
{
	int wd;

	if (w->ifd < 0)
		return;
	if (w->p.max_watches > 0 && w->watches >= w->p.max_watches) {
		wd = -1;
		errno = ENOSPC;
	} else {
		wd = inotify_add_watch(w->ifd, path, WATCH_MASK);
	}
	if (wd < 0) {
		if (errno == ENOSPC) {
			char msg[256];
			long lim = -1;
			FILE *f = fopen("/proc/sys/fs/inotify/max_user_watches", "r");
			if (f != NULL) {
				if (fscanf(f, "%ld", &lim) != 1)
					lim = -1;
				fclose(f);
			}
			snprintf(msg, sizeof(msg), "the inotify watch limit is reached "
			    "(fs.inotify.max_user_watches = %ld, %lld folders watched): "
			    "changes in some folders are not seen; raise it with "
			    "'sysctl fs.inotify.max_user_watches=524288'", lim,
			    (long long)w->watches);
			if (w->warning[0] == '\0')
				cdx_log(CDX_LOG_ERROR, "indexer: %s", msg);
			set_warning(w, msg);
		} else {
			cdx_log(CDX_LOG_WARN, "indexer: cannot watch %s: %s", path,
			    strerror(errno));
		}
		return;
	}
	if (wd >= w->wdcap) {
		int cap = w->wdcap ? w->wdcap : 64;
		while (cap <= wd)
			cap *= 2;
		char **v = realloc(w->wdpath, (size_t)cap * sizeof(*v));
		if (v == NULL) {
			inotify_rm_watch(w->ifd, wd);
			return;
		}
		memset(v + w->wdcap, 0, (size_t)(cap - w->wdcap) * sizeof(*v));
		w->wdpath = v;
		w->wdcap = cap;
	}
	char *copy = strdup(path);
	if (copy == NULL)
		return;
	if (w->wdpath[wd] == NULL)
		w->watches++;
	free(w->wdpath[wd]);
	w->wdpath[wd] = copy;
}

/* Stops watching path and every folder under it. */
static void
drop_watches_under(watch *w, const char *path)
{
	for (int i = 0; i < w->wdcap; i++) {
		if (w->wdpath[i] != NULL && cdx_path_under(w->wdpath[i], path)) {
			inotify_rm_watch(w->ifd, i);
			free(w->wdpath[i]);
			w->wdpath[i] = NULL;
			w->watches--;
		}
	}
}

/* Rewrites the watched paths under from to be under to. */
static void
rename_watches(watch *w, const char *from, const char *to)
{
	size_t n = strlen(from);
	for (int i = 0; i < w->wdcap; i++) {
		char *p = w->wdpath[i], *q;
		if (p == NULL || !cdx_path_under(p, from))
			continue;
		if (asprintf(&q, "%s%s", to, p + n) < 0)
			continue;
		free(p);
		w->wdpath[i] = q;
	}
}

static int
live_under_root(watch *w, const char *path)
{
	int ok = 0;
	if (!w->p.live || w->ifd < 0)
		return 0;
	pthread_mutex_lock(&w->mu);
	for (size_t i = 0; i < w->n_roots && !ok; i++)
		ok = cdx_path_under(path, w->roots[i]);
	pthread_mutex_unlock(&w->mu);
	return ok;
}

/* ---- walking (control thread) ---- */

static int
seen_dir(watch *w, const struct stat *st)
{
	for (size_t i = 0; i < w->depth; i++)
		if (w->stack[i].dev == st->st_dev && w->stack[i].ino == st->st_ino)
			return 1;
	if (!w->p.follow_symlinks)
		return 0;
	for (size_t i = 0; i < w->n_seen; i++)
		if (w->seen[i].dev == st->st_dev && w->seen[i].ino == st->st_ino)
			return 1;
	if (grow((void **)&w->seen, &w->cap_seen, w->n_seen + 1,
	    sizeof(*w->seen)) == 0)
		w->seen[w->n_seen++] = (struct devino){ st->st_dev, st->st_ino };
	return 0;
}

/* A folder that cannot be read becomes a failure record (listed by
 * `failures`); a temporary one (permission denied, no descriptors left) is
 * looked at again after retry_delay (retry_folder).  t may be NULL. */
static void
folder_failed(watch *w, task *t, const char *path, const struct stat *st,
    int e, int tries)
{
	cdx_log(CDX_LOG_WARN, "indexer: cannot read folder %s: %s", path,
	    strerror(e));
	if (e == ENOENT || e == ENOTDIR)
		return;
	item *it = item_new(t, path, st, ORIG_DONE);
	if (it == NULL)
		return;
	it->kind = K_FAIL;
	it->temporary = temporary(cdx_from_errno(e));
	it->tries = tries;
	snprintf(it->reason, sizeof(it->reason), "%sfolder: %s",
	    it->temporary ? WATCH_TEMPORARY : "", strerror(e));
	ready_push(w, it);
}

static void
walk_push(watch *w, const char *path, const struct stat *st)
{
	if (w->depth >= MAX_DEPTH) {
		cdx_log(CDX_LOG_WARN, "indexer: %s is more than %d folders deep: "
		    "skipped", path, MAX_DEPTH);
		return;
	}
	if (seen_dir(w, st))
		return;         /* a symbolic link loop, or walked already */
	if (grow((void **)&w->stack, &w->cap_stack, w->depth + 1,
	    sizeof(*w->stack)) != 0)
		return;
	if (live_under_root(w, path))
		add_inotify(w, path);
	DIR *d = opendir(path);
	if (d == NULL) {
		folder_failed(w, w->cur, path, st, errno, 0);
		return;
	}
	store_failure *f = NULL;
	if (store_failure_get(w->st, path, &f, NULL) == 0) {
		/* Readable again: its failure record goes. */
		store_failure_free(f);
		send_op(w, OP_FORGET_PATH, path, NULL, 0, NULL);
	}
	char *copy = strdup(path);
	if (copy == NULL) {
		closedir(d);
		return;
	}
	w->stack[w->depth++] = (struct wdir){ d, copy, st->st_dev, st->st_ino };
}

static void
walk_pop(watch *w)
{
	struct wdir *top = &w->stack[--w->depth];
	closedir(top->d);
	free(top->path);
}

static void
walk_finish(watch *w)
{
	while (w->depth > 0)
		walk_pop(w);
	w->n_seen = 0;
	if (w->cur != NULL) {
		task_release(w, w->cur);
		w->cur = NULL;
	}
	w->walking = 0;
}

static void
walk_begin(watch *w, task *t)
{
	struct stat st;
	int rc;

	w->cur = t;
	w->walking = 1;
	rc = w->p.follow_symlinks ? stat(t->path, &st) : lstat(t->path, &st);
	if (rc != 0) {
		walk_finish(w);
		return;
	}
	if (S_ISREG(st.st_mode))
		consider_file(w, t, t->path, &st, ORIG_SCAN, 0);
	else if (S_ISDIR(st.st_mode))
		walk_push(w, t->path, &st);
	if (w->depth == 0)
		walk_finish(w);
}

/* Walks up to WALK_STEP entries; stops early when the pipeline is full. */
static void
walk_step(watch *w)
{
	for (int n = 0; n < WALK_STEP && w->depth > 0; n++) {
		if (w->n_ready >= 64)
			return;
		struct wdir *top = &w->stack[w->depth - 1];
		struct dirent *e = readdir(top->d);
		if (e == NULL) {
			walk_pop(w);
			continue;
		}
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char *child = join(top->path, e->d_name);
		if (child == NULL)
			continue;
		struct stat st;
		if (excluded(w, child, e->d_name) || lstat(child, &st) != 0) {
			if (excluded(w, child, e->d_name))
				count_skip(w, WATCH_SKIP_EXCLUDED);
			free(child);
			continue;
		}
		if (S_ISLNK(st.st_mode) && (!w->p.follow_symlinks ||
		    stat(child, &st) != 0)) {
			free(child);
			continue;
		}
		if (S_ISDIR(st.st_mode))
			walk_push(w, child, &st);
		else if (S_ISREG(st.st_mode))
			consider_file(w, w->cur, child, &st, ORIG_SCAN, 0);
		free(child);
	}
	if (w->depth == 0)
		walk_finish(w);
}

/* ---- store changes asked of the writer (control thread) ---- */

/* Sends a store change to the writer thread, the indexer's one store
 * writer, behind the records already on their way.  t (may be NULL) holds
 * a reference that is released once the change is committed. */
static void
send_op(watch *w, int op, const char *path, const char *to, int gone_only,
    task *t)
{
	item *it = calloc(1, sizeof(*it));
	if (it == NULL || (it->path = strdup(path)) == NULL ||
	    (to != NULL && (it->to = strdup(to)) == NULL)) {
		item_free(it);
		cdx_log(CDX_LOG_WARN, "indexer: out of memory: the records of %s "
		    "are not updated", path);
		if (t != NULL) {
			t->interrupted = 1;
			task_release(w, t);
		}
		return;
	}
	it->op = op;
	it->gone_only = gone_only;
	it->t = t;
	if (wq_push(&w->wrq, it, 1) != 0)
		item_finish(w, it, 1);
}

/* ---- tasks (control thread) ---- */

static int
queue_task(watch *w, const char *path, int live, watch_done_fn fn,
    void *user)
{
	task *t = calloc(1, sizeof(*t));
	if (t == NULL || (t->path = strdup(path)) == NULL) {
		free(t);
		return CDX_ENOMEM;
	}
	t->live = live;
	t->fn = fn;
	t->user = user;
	t->outstanding = 1;
	if (w->tasks_tail != NULL)
		w->tasks_tail->next = t;
	else
		w->tasks_head = t;
	w->tasks_tail = t;
	return 0;
}

static void
complete(watch *w, task *t, int stopping)
{
	if (!t->interrupted && !stopping && !t->forgotten) {
		/* Records of files gone from under it are forgotten first; the
		 * task completes again once the writer has committed that. */
		t->forgotten = 1;
		t->outstanding = 1;
		send_op(w, OP_FORGET_UNDER, t->path, NULL, 1, t);
		return;
	}
	watch_result r = { t->added, t->updated, t->unchanged, t->failed,
	    t->moved, t->interrupted || stopping, t->store_full };
	if (t->fn != NULL)
		t->fn(t->user, t->path, &r);
	task_free(t);
}

/* ---- timers: quiet periods and unpaired moves (control thread) ---- */

/* Sets (or pushes back) a timer of path; takes the reference t.  A path
 * has a timer for each task waiting on it (and at most one of no task), so
 * that every task waits for the file: a task's reference joins only a
 * timer of its own or of no task.  An event's timer (t NULL) pushes back
 * every timer of the path: the file is still being written. */
static void
timer_set(watch *w, const char *path, double due, task *t, int tries)
{
	int found = 0;
	for (size_t i = 0; i < w->n_timers; i++) {
		struct timer *tm = &w->timers[i];
		if (strcmp(tm->path, path) != 0 ||
		    (t != NULL && tm->t != NULL && tm->t != t))
			continue;
		tm->due = due;
		if (tries > tm->tries)
			tm->tries = tries;
		if (t == NULL) {
			found = 1;
			continue;
		}
		if (tm->t == NULL)
			tm->t = t;
		else
			task_release(w, t);     /* the same task again */
		return;
	}
	if (found)
		return;
	char *copy = strdup(path);
	if (copy == NULL || grow((void **)&w->timers, &w->cap_timers,
	    w->n_timers + 1, sizeof(*w->timers)) != 0) {
		free(copy);
		if (t != NULL) {
			t->interrupted = 1;
			task_release(w, t);
		}
		return;
	}
	w->timers[w->n_timers++] = (struct timer){ copy, due, t, tries };
}

static void
timer_drop(watch *w, size_t i)
{
	free(w->timers[i].path);
	if (w->timers[i].t != NULL)
		task_release(w, w->timers[i].t);
	w->timers[i] = w->timers[--w->n_timers];
}

/* Drops every timer of path. */
static void
timer_cancel(watch *w, const char *path)
{
	for (size_t i = 0; i < w->n_timers;) {
		if (strcmp(w->timers[i].path, path) == 0)
			timer_drop(w, i);
		else
			i++;
	}
}

/* Makes every timer of path due at now; 0 when it has none. */
static int
timer_due_now(watch *w, const char *path, double now)
{
	int n = 0;
	for (size_t i = 0; i < w->n_timers; i++) {
		if (strcmp(w->timers[i].path, path) == 0) {
			w->timers[i].due = now;
			n++;
		}
	}
	return n;
}

static void
timers_cancel_under(watch *w, const char *prefix)
{
	for (size_t i = 0; i < w->n_timers;) {
		if (cdx_path_under(w->timers[i].path, prefix))
			timer_drop(w, i);
		else
			i++;
	}
}

static void
dir_gone(watch *w, const char *path)
{
	drop_watches_under(w, path);
	timers_cancel_under(w, path);
	send_op(w, OP_FORGET_UNDER, path, NULL, 0, NULL);
}

/* A folder that could not be read is tried again: walked (and watched,
 * under a live root) once it can be read, else failed again. */
static void
retry_folder(watch *w, const char *path, const struct stat *st, int tries)
{
	DIR *d = opendir(path);
	if (d == NULL) {
		folder_failed(w, NULL, path, st, errno, tries);
		return;
	}
	closedir(d);
	pthread_mutex_lock(&w->mu);
	if (!w->stop)
		queue_task(w, path, 0, NULL, NULL);
	pthread_mutex_unlock(&w->mu);
}

static void
timers_run(watch *w, double now)
{
	for (size_t i = 0; i < w->n_timers;) {
		struct timer *tm = &w->timers[i];
		if (tm->due > now) {
			i++;
			continue;
		}
		char *path = tm->path;
		task *t = tm->t;
		int tries = tm->tries;
		w->timers[i] = w->timers[--w->n_timers];
		struct stat st;
		int here = lstat(path, &st) == 0;   /* else gone: nothing */
		if (here && S_ISREG(st.st_mode))
			consider_file(w, t, path, &st, ORIG_QUIET, tries);
		else if (here && tries > 0 && S_ISDIR(st.st_mode))
			retry_folder(w, path, &st, tries);
		free(path);
		if (t != NULL)
			task_release(w, t);
	}
	for (size_t i = 0; i < w->n_moves;) {
		struct pmove *m = &w->moves[i];
		if (m->due > now) {
			i++;
			continue;
		}
		/* Moved out of the watched folders: gone. */
		if (m->isdir)
			dir_gone(w, m->path);
		else
			send_op(w, OP_FORGET_PATH, m->path, NULL, 0, NULL);
		free(m->path);
		w->moves[i] = w->moves[--w->n_moves];
	}
}

static double
next_due(watch *w)
{
	double due = 1e300;
	for (size_t i = 0; i < w->n_timers; i++)
		if (w->timers[i].due < due)
			due = w->timers[i].due;
	for (size_t i = 0; i < w->n_moves; i++)
		if (w->moves[i].due < due)
			due = w->moves[i].due;
	return due;
}

/* ---- inotify events (control thread) ---- */

/* Queues a rescan of every root that has none queued yet (w->mu held). */
static void
rescan_roots_locked(watch *w)
{
	for (size_t i = 0; i < w->n_roots; i++) {
		int queued = 0;
		for (task *t = w->tasks_head; t != NULL && !queued; t = t->next)
			queued = t->fn == NULL && strcmp(t->path, w->roots[i]) == 0;
		if (!queued)
			queue_task(w, w->roots[i], 1, NULL, NULL);
	}
}

static void
rescan_roots(watch *w)
{
	pthread_mutex_lock(&w->mu);
	rescan_roots_locked(w);
	pthread_mutex_unlock(&w->mu);
}

static void
on_moved_to(watch *w, const struct inotify_event *e, const char *path)
{
	for (size_t i = 0; i < w->n_moves; i++) {
		struct pmove *m = &w->moves[i];
		if (m->cookie != e->cookie)
			continue;
		char *from = m->path;
		int isdir = m->isdir;
		w->moves[i] = w->moves[--w->n_moves];
		if (isdir) {
			rename_watches(w, from, path);
			timers_cancel_under(w, from);
			/* The writer moves the records, then queues a scan of the
			 * new place: files in flight under the old name are
			 * dropped by the writer, and the scan catches them. */
			send_op(w, OP_MOVE_DIR, from, path, 0, NULL);
		} else {
			timer_cancel(w, from);
			send_op(w, OP_MOVE_FILE, from, path, 0, NULL);
		}
		free(from);
		return;
	}
	/* Moved in from outside the watched folders. */
	struct stat st;
	if (lstat(path, &st) != 0)
		return;
	if (S_ISDIR(st.st_mode)) {
		pthread_mutex_lock(&w->mu);
		queue_task(w, path, 1, NULL, NULL);
		pthread_mutex_unlock(&w->mu);
	} else if (S_ISREG(st.st_mode)) {
		consider_file(w, NULL, path, &st, ORIG_DONE, 0);
	}
}

static void
on_event(watch *w, const struct inotify_event *e, double now)
{
	if (e->wd < 0 || e->wd >= w->wdcap || w->wdpath[e->wd] == NULL)
		return;
	if (e->mask & IN_IGNORED) {
		free(w->wdpath[e->wd]);
		w->wdpath[e->wd] = NULL;
		w->watches--;
		return;
	}
	if (e->len == 0 || e->name[0] == '\0') {
		/* A watched folder deleted (a root: its parent is not watched). */
		if (e->mask & IN_DELETE_SELF) {
			char *p = strdup(w->wdpath[e->wd]);
			if (p != NULL) {
				timers_cancel_under(w, p);
				send_op(w, OP_FORGET_UNDER, p, NULL, 1, NULL);
				free(p);
			}
		}
		return;
	}
	if (!live_under_root(w, w->wdpath[e->wd])) {
		/* A root that watch_remove() dropped. */
		inotify_rm_watch(w->ifd, e->wd);
		return;
	}
	char *path = join(w->wdpath[e->wd], e->name);
	if (path == NULL)
		return;
	if (path_excluded(w, path)) {
		free(path);
		return;
	}
	struct stat st;
	if (e->mask & IN_MOVED_FROM) {
		if (grow((void **)&w->moves, &w->cap_moves, w->n_moves + 1,
		    sizeof(*w->moves)) == 0) {
			w->moves[w->n_moves++] = (struct pmove){ e->cookie,
			    (e->mask & IN_ISDIR) != 0, path, now + MOVE_PAIR_S };
			return;
		}
	} else if (e->mask & IN_MOVED_TO) {
		on_moved_to(w, e, path);
	} else if (e->mask & IN_DELETE) {
		if (e->mask & IN_ISDIR) {
			dir_gone(w, path);
		} else {
			timer_cancel(w, path);
			send_op(w, OP_FORGET_PATH, path, NULL, 0, NULL);
		}
	} else if ((e->mask & IN_CREATE) && (e->mask & IN_ISDIR)) {
		pthread_mutex_lock(&w->mu);
		queue_task(w, path, 1, NULL, NULL);
		pthread_mutex_unlock(&w->mu);
	} else if (e->mask & IN_CLOSE_WRITE) {
		/* Written: look at it now.  Its timers (tasks waiting on the
		 * file) fire at once, each with its task; without one, no
		 * task waits. */
		if (timer_due_now(w, path, now) == 0 && lstat(path, &st) == 0 &&
		    S_ISREG(st.st_mode))
			consider_file(w, NULL, path, &st, ORIG_DONE, 0);
	} else if (e->mask & (IN_CREATE | IN_MODIFY | IN_ATTRIB)) {
		if (!(e->mask & IN_ISDIR))
			timer_set(w, path, now + w->p.quiet_ms * 1e-3, NULL, 0);
	}
	free(path);
}

static void
read_events(watch *w, char *buf, double now)
{
	for (;;) {
		ssize_t n = read(w->ifd, buf, EVENT_BUF);
		if (n <= 0)
			return;
		size_t count = 0;
		for (char *p = buf; p < buf + n;
		    p += sizeof(struct inotify_event) +
		    ((struct inotify_event *)p)->len)
			count++;
		int overflow = w->p.event_limit > 0 &&
		    count > (size_t)w->p.event_limit;
		for (char *p = buf; p < buf + n && !overflow;) {
			const struct inotify_event *e = (const void *)p;
			if (e->mask & IN_Q_OVERFLOW)
				overflow = 1;
			p += sizeof(*e) + e->len;
		}
		if (overflow) {
			/* Events were lost: only a walk can tell what changed. */
			w->overflows++;
			cdx_log(CDX_LOG_WARN, "indexer: the event queue overflowed; "
			    "rescanning the watched folders");
			for (char *p = buf; p < buf + n;) {
				const struct inotify_event *e = (const void *)p;
				if (e->mask & IN_IGNORED)
					on_event(w, e, now);
				p += sizeof(*e) + e->len;
			}
			rescan_roots(w);
			continue;
		}
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *e = (const void *)p;
			on_event(w, e, now);
			p += sizeof(*e) + e->len;
		}
	}
}

/* ---- the control thread ---- */

static void *
control_main(void *arg)
{
	watch *w = arg;
	char *buf = malloc(EVENT_BUF);
	double last = now_s();

	lower_priority(w, 0);
	for (;;) {
		task *fin, *t = NULL;
		struct timer *retry = NULL;
		size_t n_retry = 0;
		int stop, paused;

		pthread_mutex_lock(&w->mu);
		stop = w->stop;
		paused = w->paused;
		fin = w->finished;
		w->finished = NULL;
		if (w->cur == NULL && w->tasks_head != NULL && !stop) {
			t = w->tasks_head;
			w->tasks_head = t->next;
			if (w->tasks_head == NULL)
				w->tasks_tail = NULL;
			t->next = NULL;
		}
		retry = w->retry;
		n_retry = w->n_retry;
		w->retry = NULL;
		w->n_retry = w->cap_retry = 0;
		pthread_mutex_unlock(&w->mu);

		double now = now_s();
		if (w->queued > w->done || w->cur != NULL)
			w->busy_ns += (int64_t)((now - last) * 1e9);
		last = now;
		for (size_t i = 0; i < n_retry; i++) {
			timer_set(w, retry[i].path, now + retry[i].due, retry[i].t,
			    retry[i].tries);
			free(retry[i].path);
		}
		free(retry);
		while (fin != NULL) {
			task *next = fin->next;
			complete(w, fin, stop);
			fin = next;
		}
		if (stop)
			break;
		if (t != NULL)
			walk_begin(w, t);
		if (!paused && buf != NULL && w->ifd >= 0)
			read_events(w, buf, now);
		timers_run(w, now);
		ready_flush(w);
		if (w->cur != NULL && w->n_ready == 0)
			walk_step(w);
		ready_flush(w);

		int timeout;
		pthread_mutex_lock(&w->mu);
		int more = w->finished != NULL || w->stop ||
		    (w->cur == NULL && w->tasks_head != NULL);
		pthread_mutex_unlock(&w->mu);
		if (more || (w->cur != NULL && w->n_ready == 0))
			timeout = 0;
		else if (w->n_ready > 0)
			timeout = 2;        /* the decoders are full */
		else {
			double due = next_due(w) - now_s();
			timeout = due > 0.25 ? 250 : due < 0 ? 0 :
			    (int)(due * 1000) + 1;
		}
		struct pollfd pf[2] = { { w->wake[0], POLLIN, 0 },
		    { paused ? -1 : w->ifd, POLLIN, 0 } };
		if (poll(pf, 2, timeout) > 0 && (pf[0].revents & POLLIN)) {
			char drain[64];
			while (read(w->wake[0], drain, sizeof(drain)) > 0) {
			}
		}
	}
	/* Stopping: cut the walk and drop what never reached the decoders. */
	if (w->cur != NULL)
		w->cur->interrupted = 1;
	for (size_t i = 0; i < w->n_timers; i++)
		if (w->timers[i].t != NULL)
			w->timers[i].t->interrupted = 1;
	while (w->n_timers > 0)
		timer_drop(w, 0);
	walk_finish(w);
	for (size_t i = 0; i < w->n_ready; i++)
		item_finish(w, w->ready[w->ready_head + i], 1);
	w->n_ready = w->ready_head = 0;
	free(buf);
	return NULL;
}

/* ---- decode workers ---- */

/* Has the file at path changed since st (size or mtime), or gone? */
static int
changed_since(const watch *w, const char *path, const struct stat *st)
{
	struct stat now;
	return (w->p.follow_symlinks ? stat(path, &now) : lstat(path, &now)) !=
	    0 || now.st_size != st->st_size || mtime_ns(&now) != mtime_ns(st);
}

/* Reads the whole file at path (common/file.h); *st is its state when it
 * was opened (st_mode stays 0 if it could not be).  Messages name the file
 * by its base name: they become failure records, which hold the path. */
static int
read_image(const char *path, size_t max, uint8_t **data, size_t *len,
    struct stat *st, cdx_error *err)
{
	const char *slash = strrchr(path, '/'), *name = slash ? slash + 1 : path;
	int fd, rc;

	memset(st, 0, sizeof(*st));
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		int e = errno;
		return cdx_error_set(err, cdx_from_errno(e), "%s: %s", name,
		    strerror(e));
	}
	if (fstat(fd, st) != 0) {
		int e = errno;
		rc = cdx_error_set(err, cdx_from_errno(e), "%s: %s", name,
		    strerror(e));
	} else {
		rc = cdx_read_fd(fd, name, max, (char **)data, len, err);
	}
	close(fd);
	return rc;
}

/* Hands path back to the control thread for a look after delay seconds;
 * t (may be NULL) keeps waiting for it. */
static void
look_again(watch *w, const char *path, task *t, double delay, int tries)
{
	char *copy = strdup(path);
	pthread_mutex_lock(&w->mu);
	if (copy != NULL && !w->stop && grow((void **)&w->retry, &w->cap_retry,
	    w->n_retry + 1, sizeof(*w->retry)) == 0) {
		w->retry[w->n_retry++] = (struct timer){ copy, delay, t, tries };
		if (t != NULL)
			t->outstanding++;
		copy = NULL;
	} else if (t != NULL) {
		t->interrupted = 1;
	}
	pthread_mutex_unlock(&w->mu);
	free(copy);
	wake(w);
}

/* The item's file is looked at again after a quiet period; its task keeps
 * waiting for it. */
static void
retry_later(watch *w, item *it)
{
	look_again(w, it->path, it->t, w->p.quiet_ms * 1e-3, it->tries);
}

/* A failure of a file that may still be being written is not recorded:
 * it is looked at again after a quiet period.  A temporary one (see
 * temporary()) is recorded as such and retried after retry_delay. */
static void
fail_or_retry(watch *w, item *it, const cdx_error *err, int64_t mtime)
{
	const char *reason = err->msg;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t age_ms = ((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec - mtime) /
	    1000000;
	if (it->origin == ORIG_SCAN && age_ms < w->p.quiet_ms) {
		retry_later(w, it);
		it->kind = K_DROP;
		return;
	}
	it->kind = K_FAIL;
	it->temporary = temporary(err->code);
	snprintf(it->reason, sizeof(it->reason), "%s%s",
	    it->temporary ? WATCH_TEMPORARY : "", reason);
}

/* Reuses the embedding of a record with the same bytes, if there is one. */
static int
try_reuse(watch *w, item *it, const store_image *old)
{
	if (old != NULL && memcmp(old->hash, it->hash, STORE_HASH_LEN) == 0) {
		if ((it->emb = malloc(sizeof(float) * (size_t)w->dim)) == NULL)
			return 0;
		memcpy(it->emb, old->embedding, sizeof(float) * (size_t)w->dim);
		it->width = old->width;
		it->height = old->height;
		it->capture_time = old->capture_time;
		it->kind = K_REUSE;
		return 1;
	}
	uint64_t ids[4];
	size_t n = 0;
	if (store_image_find_hash(w->st, it->hash, ids, 4, &n, NULL) != 0)
		return 0;
	for (size_t i = 0; i < n && i < 4; i++) {
		store_image *r;
		if (store_image_get(w->st, ids[i], &r, NULL) != 0)
			continue;
		if ((it->emb = malloc(sizeof(float) * (size_t)w->dim)) == NULL) {
			store_image_free(r);
			return 0;
		}
		struct stat st;
		memcpy(it->emb, r->embedding, sizeof(float) * (size_t)w->dim);
		it->width = r->width;
		it->height = r->height;
		it->capture_time = r->capture_time;
		if (strcmp(r->path, it->path) != 0 && lstat(r->path, &st) != 0 &&
		    errno == ENOENT) {
			/* Moved: the record follows the bytes (same id). */
			if (it->is_update || (it->moved_from = strdup(r->path)) ==
			    NULL)
				it->del_id = r->id;
		}
		it->kind = K_REUSE;
		store_image_free(r);
		return 1;
	}
	return 0;
}

/* What a file's first bytes say it is (clip_image_sniff's content), or
 * -1 when it cannot be read (the image path reports why). */
static int
peek_content(const char *path)
{
	uint8_t buf[4096];
	int fd = open(path, O_RDONLY | O_CLOEXEC), content = -1;
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf));
	if (n > 0)
		clip_image_sniff(buf, (size_t)n, &content);
	close(fd);
	return content;
}

/* The content hash of the file at path, read in pieces (a clip is not
 * read into memory); *st is its state when opened. */
static int
hash_file(const char *path, uint8_t hash[STORE_HASH_LEN], struct stat *st,
    cdx_error *err)
{
	const char *slash = strrchr(path, '/'), *name = slash ? slash + 1 : path;
	enum { CHUNK = 1 << 20 };
	XXH3_state_t *x = XXH3_createState();
	char *buf = malloc(CHUNK);
	int fd = -1, rc = 0;

	memset(st, 0, sizeof(*st));
	if (x == NULL || buf == NULL) {
		rc = cdx_error_set(err, CDX_ENOMEM, "%s: out of memory", name);
		goto out;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, st) != 0) {
		int e = errno;
		rc = cdx_error_set(err, cdx_from_errno(e), "%s: %s", name,
		    strerror(e));
		goto out;
	}
	XXH3_128bits_reset(x);
	for (;;) {
		ssize_t n = read(fd, buf, CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			rc = cdx_error_set(err, cdx_from_errno(e), "%s: %s", name,
			    strerror(e));
			goto out;
		}
		if (n == 0)
			break;
		XXH3_128bits_update(x, buf, (size_t)n);
	}
	XXH128_canonical_t hc;
	XXH128_canonicalFromHash(&hc, XXH3_128bits_digest(x));
	memcpy(hash, hc.digest, STORE_HASH_LEN);
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	XXH3_freeState(x);
	return rc;
}

struct clip_sink {
	watch *w;
	item *it;
	int cap;
};

/* clip_video_sample's callback: each frame preprocessed into a plane. */
static int
clip_frame(void *user, int64_t time_ms, const clip_image *img, cdx_error *err)
{
	struct clip_sink *k = user;
	item *it = k->it;
	if (it->nframes == k->cap) {
		int cap = k->cap ? k->cap * 2 : 8;
		float **p = realloc(it->fplanes, sizeof(*p) * (size_t)cap);
		if (p != NULL)
			it->fplanes = p;
		int64_t *ms = p ? realloc(it->fms, sizeof(*ms) * (size_t)cap) : NULL;
		if (ms == NULL)
			return cdx_error_set(err, CDX_ENOMEM, "out of memory");
		it->fms = ms;
		k->cap = cap;
	}
	float *plane = malloc(sizeof(float) * k->w->plane);
	if (plane == NULL)
		return cdx_error_set(err, CDX_ENOMEM, "out of memory");
	int rc = clip_image_preprocess(img, &k->w->info->preprocess, plane, err);
	if (rc != 0) {
		free(plane);
		return rc;
	}
	it->fplanes[it->nframes] = plane;
	it->fms[it->nframes++] = time_ms;
	it->width = (uint32_t)img->width;
	it->height = (uint32_t)img->height;
	return 0;
}

/* Takes the size and mtime of the file just read (st), or, when it
 * changed while being read (it is being written), drops the item for a
 * look once it is quiet: 1. */
static int
still_writing(watch *w, item *it, const struct stat *st)
{
	it->size = st->st_size;
	it->mtime_ns = mtime_ns(st);
	if (!changed_since(w, it->path, st))
		return 0;
	retry_later(w, it);
	it->kind = K_DROP;
	return 1;
}

/* A video clip: hashed in pieces, then sampled (encoder/video.h) into
 * frames for the encoder; a clip that cannot be read has a failure
 * record with the reason.  A changed clip is sampled again in full. */
static void
decode_clip(watch *w, item *it)
{
	store_image *old = NULL;
	struct stat st;
	cdx_error err;

	if (hash_file(it->path, it->hash, &st, &err) != 0) {
		if (err.code == CDX_ENOTFOUND)
			it->kind = K_DROP;
		else
			fail_or_retry(w, it, &err, it->mtime_ns);
		return;
	}
	if (still_writing(w, it, &st))
		return;
	if (store_image_get_by_path(w->st, it->path, &old, NULL) == 0)
		it->is_update = 1;
	store_image_free(old);
	clip_video_opts o;
	clip_video_default_opts(&o);
	o.interval_s = w->p.video_interval_s;
	o.max_frames = w->p.video_max_frames;
	o.limit_s = w->p.video_limit_s;
	o.max_pixels = w->p.max_pixels;
	struct clip_sink k = { w, it, 0 };
	clip_video_info vi;
	if (clip_video_sample(it->path, &o, clip_frame, &k, &vi, &err) != 0) {
		for (int i = 0; i < it->nframes; i++)
			free(it->fplanes[i]);
		it->nframes = 0;
		if (err.code == CDX_ENOTFOUND) {
			it->kind = K_DROP;
			return;
		}
		if (changed_since(w, it->path, &st)) {
			retry_later(w, it);     /* being written */
			it->kind = K_DROP;
			return;
		}
		if (err.code == CDX_EFORMAT &&
		    vi.unsupported == CLIP_VIDEO_NO_VIDEO) {
			/* Audio only (M4A): not a clip, skipped as other
			 * files that are not images are.  A video in a
			 * container the sampler does not read (AVI) is
			 * unsupported video: a failure record says so. */
			it->kind = K_SKIP;
			it->skip = WATCH_SKIP_OTHER;
			it->del_path = it->is_update;
			return;
		}
		fail_or_retry(w, it, &err, it->mtime_ns);
		return;
	}
	it->capture_time = STORE_TIME_UNKNOWN;
	it->kind = K_CLIP;
}

static void
decode_item(watch *w, item *it)
{
	const clip_preprocess_cfg *pp = &w->info->preprocess;
	clip_decode_opts dopt = { .max_pixels = w->p.max_pixels,
	    .min_short = w->p.fast_decode ? clip_preprocess_min_short(pp) : 0 };
	store_image *old = NULL;
	uint8_t *data = NULL;
	size_t len = 0;
	struct stat st;
	clip_image_info info;
	clip_image img;
	cdx_error err;

	if (it->kind == K_FAIL)
		return;         /* decided already (a folder that cannot be read) */
	if (w->p.video && peek_content(it->path) == CLIP_CONTENT_VIDEO) {
		decode_clip(w, it);
		return;
	}
	if (read_image(it->path, w->p.max_file_bytes, &data, &len, &st,
	    &err) != 0) {
		if (err.code == CDX_ENOTFOUND) {
			it->kind = K_DROP;
		} else if (st.st_mode != 0 && changed_since(w, it->path, &st)) {
			/* A short read of a file being written. */
			retry_later(w, it);
			it->kind = K_DROP;
		} else {
			fail_or_retry(w, it, &err, it->mtime_ns);
		}
		return;
	}
	if (still_writing(w, it, &st))
		goto out;
	store_content_hash(data, len, it->hash);
	if (store_image_get_by_path(w->st, it->path, &old, NULL) == 0) {
		it->is_update = 1;
		it->was_clip = old->kind == STORE_KIND_FRAME;
		if (it->was_clip) {
			store_image_free(old);  /* no embedding to reuse */
			old = NULL;
		}
	}
	if (try_reuse(w, it, old))
		goto out;
	if (clip_image_probe(data, len, &info, &err) != 0) {
		int content;
		/* A file of a format the encoder reads has a failure record;
		 * anything else is skipped, counted by what it is. */
		if (clip_image_sniff(data, len, &content) != CLIP_FORMAT_UNKNOWN)
			fail_or_retry(w, it, &err, it->mtime_ns);
		else {
			it->kind = K_SKIP;      /* not an image */
			it->skip = content == CLIP_CONTENT_VIDEO ?
			    WATCH_SKIP_VIDEO : content ==
			    CLIP_CONTENT_IMAGE_OTHER ? WATCH_SKIP_IMAGE_OTHER :
			    WATCH_SKIP_OTHER;
			it->del_path = it->is_update;
		}
		goto out;
	}
	if (w->p.min_side > 0 && (info.width < w->p.min_side ||
	    info.height < w->p.min_side)) {
		it->kind = K_SKIP;              /* an icon */
		it->skip = WATCH_SKIP_SMALL;
		it->del_path = it->is_update;
		goto out;
	}
	if (clip_image_decode(data, len, &dopt, &img, &err) != 0) {
		fail_or_retry(w, it, &err, it->mtime_ns);
		goto out;
	}
	free(data);
	data = NULL;
	it->pixels = plane_get(w);
	if (it->pixels == NULL) {
		clip_image_free(&img);
		it->kind = K_DROP;
		goto out;
	}
	if (clip_image_preprocess(&img, pp, it->pixels, &err) != 0) {
		clip_image_free(&img);
		fail_or_retry(w, it, &err, it->mtime_ns);
		goto out;
	}
	it->width = (uint32_t)img.info.width;
	it->height = (uint32_t)img.info.height;
	it->capture_time = img.info.capture_time == INT64_MIN ?
	    STORE_TIME_UNKNOWN : img.info.capture_time;
	clip_image_free(&img);
	it->kind = K_ENCODE;
out:
	store_image_free(old);
	free(data);
}

static void *
decode_main(void *arg)
{
	watch *w = arg;
	item *it;

	lower_priority(w, DECODE_NICE);
	while ((it = wq_pop(&w->decq, -1)) != NULL) {
		w->decoding++;
		decode_item(w, it);
		if (it->kind == K_SKIP && !it->del_path)
			count_skip(w, it->skip);
		if ((it->kind == K_DROP || (it->kind == K_SKIP && !it->del_path))) {
			w->decoding--;
			item_finish(w, it, 0);
			continue;
		}
		if (wq_push(&w->encq, it, 1) != 0)
			item_finish(w, it, 1);
		w->decoding--;
	}
	return NULL;
}

/* ---- the encoder ---- */

/* An encoding failure: temporary (out of memory, no context) as
 * fail_or_retry records it, retried after retry_delay. */
static void
encode_failed(item *it, int rc, const cdx_error *err)
{
	it->kind = K_FAIL;
	it->temporary = temporary(rc);
	snprintf(it->reason, sizeof(it->reason), "%sencoding failed: %s",
	    it->temporary ? WATCH_TEMPORARY : "",
	    rc == CDX_ENOMEM ? "out of memory" : err->msg);
}

/* Encodes a clip's frames, cap at a time, into it->emb; frees the
 * planes.  A failure makes it a failure record. */
static void
encode_clip(watch *w, clip_ctx *ctx, item *it, int cap)
{
	cdx_error err;
	int rc = 0;

	it->emb = malloc(sizeof(float) * (size_t)w->dim * (size_t)it->nframes);
	if (ctx == NULL || it->emb == NULL) {
		rc = CDX_ENOMEM;
	} else {
		for (int i = 0; i < it->nframes && rc == 0; i += cap) {
			int n = it->nframes - i < cap ? it->nframes - i : cap;
			rc = clip_encode_image_planes(ctx,
			    (const float *const *)(it->fplanes + i), n,
			    it->emb + (size_t)i * (size_t)w->dim, &err);
		}
	}
	for (int i = 0; i < it->nframes; i++) {
		free(it->fplanes[i]);
		it->fplanes[i] = NULL;
	}
	if (rc != 0) {
		encode_failed(it, rc, &err);
		return;
	}
	w->encoded += it->nframes;
}

static void *
encode_main(void *arg)
{
	watch *w = arg;
	int cap = w->p.batch;
	item **b = calloc((size_t)cap, sizeof(*b));
	const float **planes = calloc((size_t)cap, sizeof(*planes));
	float *emb = malloc(sizeof(float) * (size_t)w->dim * (size_t)cap);
	clip_ctx *ctx = NULL;
	cdx_error err;
	item *it;

	lower_priority(w, 0);
	cdx_threads_this(w->p.encode_threads);
	if (b == NULL || planes == NULL || emb == NULL ||
	    clip_ctx_new(w->m, cap, &ctx, &err) != 0)
		cdx_log(CDX_LOG_ERROR, "indexer: cannot start the encoder");
	while ((it = wq_pop(&w->encq, -1)) != NULL) {
		int n = 0;
		for (;;) {
			if (it != NULL && it->kind == K_CLIP) {
				encode_clip(w, ctx, it, cap);
				if (wq_push(&w->wrq, it, 1) != 0)
					item_finish(w, it, 1);
			} else if (it != NULL) {
				if (it->kind != K_ENCODE) {
					if (wq_push(&w->wrq, it, 1) != 0)
						item_finish(w, it, 1);
				} else {
					planes[n] = it->pixels;  /* read in place */
					b[n++] = it;
				}
			}
			if (n == cap)
				break;
			/* Wait for a full batch while the decoders are busy. */
			it = wq_pop(&w->encq, 2);
			if (it == NULL && (wq_len(&w->decq) == 0 && w->decoding == 0))
				break;
		}
		if (n == 0)
			continue;
		int rc = ctx ? clip_encode_image_planes(ctx, planes, n, emb, &err) :
		    CDX_ENOMEM;
		for (int i = 0; i < n; i++) {
			item *x = b[i];
			plane_put(w, x->pixels);
			x->pixels = NULL;
			if (rc != 0) {
				encode_failed(x, rc, &err);
			} else if ((x->emb = malloc(sizeof(float) *
			    (size_t)w->dim)) != NULL) {
				memcpy(x->emb, emb + (size_t)i * w->dim,
				    sizeof(float) * (size_t)w->dim);
			} else {
				x->kind = K_DROP;
			}
			if (wq_push(&w->wrq, x, 1) != 0)
				item_finish(w, x, 1);
		}
		if (rc == 0)
			w->encoded += n;
	}
	clip_ctx_free(ctx);
	free(b);
	free(planes);
	free(emb);
	return NULL;
}

/* ---- the writer ---- */

/* The writer's open store batch: the changes of the items in wait, which
 * are finished once it is committed. */
typedef struct wbatch {
	store_batch *b;
	item **wait;
	size_t n;
	int64_t forgotten;      /* records the changes forget */
} wbatch;

/* The open batch, begun if need be; NULL when out of memory. */
static store_batch *
wb_get(watch *w, wbatch *c)
{
	cdx_error err;
	if (c->b == NULL && store_batch_begin(w->st, &c->b, &err) != 0)
		cdx_log(CDX_LOG_WARN, "indexer: %s", err.msg);
	return c->b;
}

/* Commits the open batch in one transaction and finishes its items. */
static void
wb_commit(watch *w, wbatch *c)
{
	store_batch_counts cnt = { 0 };
	cdx_error err;
	int rc = 0;

	if (c->b != NULL) {
		size_t len = store_batch_len(c->b);
		rc = store_batch_commit(c->b, &cnt, &err);
		c->b = NULL;
		if (rc != 0 && rc != CDX_EINDEX)
			cdx_log(CDX_LOG_ERROR, "indexer: storing %zu changes "
			    "failed: %s", len, err.msg);
	}
	int ok = rc == 0 || rc == CDX_EINDEX;
	int full_tries = 0, files = 0;
	for (size_t i = 0; i < c->n; i++)
		files += c->wait[i]->op == OP_NONE;
	if (ok) {
		w->renamed += (int64_t)cnt.renamed;
		w->deleted += c->forgotten;
		if (files > 0) {
			/* Room for files again (a small change may fit
			 * where files did not). */
			w->store_full = 0;
			w->full_tries = 0;
		}
	} else if (rc == CDX_EFULL) {
		/* Nothing of the batch was stored: its files wait for space
		 * and are looked at again (with a growing delay) until they
		 * fit, without a restart. */
		if (!w->store_full)
			cdx_log(CDX_LOG_WARN, "indexer: %s; files wait for space",
			    err.msg);
		w->store_full = 1;
		full_tries = ++w->full_tries;
	}
	for (size_t i = 0; i < c->n; i++) {
		item *it = c->wait[i];
		if (it->op == OP_NONE && !ok && temporary(rc)) {
			look_again(w, it->path, NULL, retry_delay(w, full_tries),
			    full_tries);
			if (rc == CDX_EFULL && it->t != NULL) {
				it->t->store_full = 1;
				item_finish(w, it, 0);
				continue;
			}
		}
		if (it->op == OP_NONE && ok) {
			if (it->kind == K_FAIL) {
				cdx_log(CDX_LOG_INFO, "cannot index %s: %s", it->path,
				    it->reason);
				w->failed++;
				if (it->t != NULL)
					it->t->failed++;
				if (it->temporary)
					look_again(w, it->path, NULL,
					    retry_delay(w, it->tries + 1),
					    it->tries + 1);
			} else if (it->kind == K_SKIP) {
				count_skip(w, it->skip);
			} else {
				if (it->t != NULL) {
					if (it->kind == K_REUSE && !it->is_update)
						it->t->moved++;
					if (it->is_update)
						it->t->updated++;
					else
						it->t->added++;
				}
				if (it->kind == K_REUSE)
					w->reused++;
				if (it->kind == K_CLIP) {
					w->clips++;
					w->frames += it->nframes;
				}
			}
		}
		if (it->op == OP_MOVE_DIR) {
			pthread_mutex_lock(&w->mu);
			if (!w->stop)
				queue_task(w, it->to, 1, NULL, NULL);
			pthread_mutex_unlock(&w->mu);
			wake(w);
		}
		item_finish(w, it, !ok);
	}
	c->n = 0;
	c->forgotten = 0;
}

static int
file_gone(const char *path)
{
	struct stat st;
	return lstat(path, &st) != 0 && errno == ENOENT;
}

/* Forgets the record and failure record of path. */
static void
forget_path(watch *w, wbatch *c, const char *path)
{
	store_batch *b = wb_get(w, c);
	store_image *old = NULL;
	cdx_error err;

	if (b == NULL)
		return;
	if (store_image_get_by_path(w->st, path, &old, NULL) == 0) {
		c->forgotten++;
		store_image_free(old);
	}
	if (store_batch_delete_path(b, path, &err) != 0 ||
	    store_batch_unfail(b, path, &err) != 0)
		cdx_log(CDX_LOG_WARN, "indexer: cannot forget %s: %s", path,
		    err.msg);
}

/* Ids and paths of the records under a folder. */
struct recs {
	uint64_t *ids;
	char **paths;
	size_t n, cap, cap_ids;
};

static int
recs_add(struct recs *r, uint64_t id, const char *path)
{
	if (grow((void **)&r->paths, &r->cap, r->n + 1, sizeof(*r->paths)) != 0 ||
	    grow((void **)&r->ids, &r->cap_ids, r->n + 1, sizeof(*r->ids)) != 0 ||
	    (r->paths[r->n] = strdup(path)) == NULL)
		return CDX_ENOMEM;
	r->ids[r->n++] = id;
	return 0;
}

static int
collect_image(void *user, const store_image *img)
{
	return recs_add(user, img->id, img->path);
}

static int
collect_failure(void *user, const store_failure *f)
{
	return recs_add(user, 0, f->path);
}

static void
recs_free(struct recs *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->paths[i]);
	free(r->paths);
	free(r->ids);
}

/* Forgets the records under prefix (all, or those whose file is gone),
 * failure records included.  Reads the store: the open batch is committed
 * first. */
static void
forget_under(watch *w, wbatch *c, const char *prefix, int gone_only)
{
	struct recs imgs = { 0 }, fails = { 0 };
	store_batch *b;
	size_t n = 0;
	cdx_error err;

	wb_commit(w, c);
	if ((b = wb_get(w, c)) == NULL)
		return;
	if (store_failure_foreach_prefix(w->st, prefix, collect_failure, &fails,
	    &err) != 0)
		cdx_log(CDX_LOG_WARN, "indexer: cannot list the failures under %s: "
		    "%s", prefix, err.msg);
	if (store_image_foreach_prefix(w->st, prefix, collect_image, &imgs,
	    &err) != 0) {
		cdx_log(CDX_LOG_WARN, "indexer: cannot list %s: %s", prefix,
		    err.msg);
		imgs.n = 0;     /* forget none rather than a part */
	}
	/* The files are looked at outside the store's lock. */
	for (size_t i = 0; i < fails.n; i++)
		if (!gone_only || file_gone(fails.paths[i]))
			store_batch_unfail(b, fails.paths[i], NULL);
	for (size_t i = 0; i < imgs.n; i++) {
		if (gone_only && !file_gone(imgs.paths[i]))
			continue;
		if (store_batch_delete(b, imgs.ids[i], &err) != 0)
			break;
		n++;
	}
	c->forgotten += (int64_t)n;
	if (n > 0)
		cdx_log(CDX_LOG_INFO, "indexer: forgetting %zu images under %s", n,
		    prefix);
	recs_free(&fails);
	recs_free(&imgs);
}

/* Gives the record of from the path to (same embedding), or has the
 * control thread read to. */
static void
move_file(watch *w, wbatch *c, const char *from, const char *to)
{
	store_image *old = NULL;
	store_batch *b;
	struct stat st;
	cdx_error err;

	wb_commit(w, c);
	if ((b = wb_get(w, c)) == NULL)
		return;
	store_batch_unfail(b, from, NULL);
	if (lstat(to, &st) != 0 || !S_ISREG(st.st_mode)) {
		forget_path(w, c, from);
		return;
	}
	if (store_image_get_by_path(w->st, from, &old, NULL) != 0 ||
	    old->size != st.st_size || old->mtime_ns != mtime_ns(&st)) {
		/* Not known, or changed meanwhile: read it (equal bytes still
		 * reuse the embedding). */
		store_image_free(old);
		look_again(w, to, NULL, 0, 0);
		return;
	}
	store_image_free(old);
	/* rename(2) replaced whatever was at to. */
	if (store_batch_rename(b, from, to, 1, &err) != 0)
		cdx_log(CDX_LOG_WARN, "indexer: cannot move %s to %s: %s", from, to,
		    err.msg);
}

/* Moves every record under from to the same place under to (same ids);
 * stale records at the new place give way to the files moved. */
static void
move_dir(watch *w, wbatch *c, const char *from, const char *to)
{
	struct recs imgs = { 0 };
	size_t flen = strlen(from);
	store_batch *b;
	cdx_error err;

	wb_commit(w, c);
	if ((b = wb_get(w, c)) == NULL)
		return;
	if (store_image_foreach_prefix(w->st, from, collect_image, &imgs,
	    &err) != 0)
		cdx_log(CDX_LOG_WARN, "indexer: cannot list %s: %s", from, err.msg);
	for (size_t i = 0; i < imgs.n; i++) {
		char *dst;
		if (store_batch_len(b) >= MOVE_CHUNK) {
			/* Bounds a transaction's size (LMDB's dirty pages). */
			wb_commit(w, c);
			if ((b = wb_get(w, c)) == NULL)
				break;
		}
		if (asprintf(&dst, "%s%s", to, imgs.paths[i] + flen) < 0)
			break;
		int rc = store_batch_rename(b, imgs.paths[i], dst, 1, &err);
		free(dst);
		if (rc != 0) {
			cdx_log(CDX_LOG_WARN, "indexer: moving %s to %s: %s", from,
			    to, err.msg);
			break;
		}
	}
	recs_free(&imgs);
}

/* Adds an item's changes to the open batch; it waits there for the
 * commit. */
/* What the store would refuse of a clip's frames, checked before any of
 * its changes is queued: its path and every frame time. */
static int
clip_check(const item *it, cdx_error *err)
{
	if (strlen(it->path) > STORE_CLIP_PATH_MAX)
		return cdx_error_set(err, CDX_ETOOBIG, "a clip's path may have "
		    "at most %d bytes", STORE_CLIP_PATH_MAX);
	for (int i = 0; i < it->nframes; i++)
		if (it->fms[i] < 0 || it->fms[i] > STORE_FRAME_MS_MAX)
			return cdx_error_set(err, CDX_EINVAL, "frame %d's time "
			    "%lld ms is out of range", i,
			    (long long)it->fms[i]);
	return 0;
}

static void
write_item(watch *w, wbatch *c, item *it)
{
	struct stat st;
	store_batch *b;
	cdx_error err;
	int rc = 0;

	switch (it->op) {
	case OP_FORGET_PATH:
		forget_path(w, c, it->path);
		break;
	case OP_FORGET_UNDER:
		forget_under(w, c, it->path, it->gone_only);
		break;
	case OP_MOVE_FILE:
		move_file(w, c, it->path, it->to);
		break;
	case OP_MOVE_DIR:
		move_dir(w, c, it->path, it->to);
		/* Then a scan of the new place, which sees the moved records:
		 * queued by the commit (wb_commit). */
		c->wait[c->n++] = it;
		wb_commit(w, c);
		return;
	}
	if (it->op != OP_NONE) {
		c->wait[c->n++] = it;
		return;
	}
	/* Changed or gone since it was read: a newer event or scan takes
	 * care of it. */
	if (it->kind == K_DROP || (w->p.follow_symlinks ? stat(it->path, &st) :
	    lstat(it->path, &st)) != 0 || st.st_size != it->size ||
	    mtime_ns(&st) != it->mtime_ns) {
		item_finish(w, it, 0);
		return;
	}
	if ((b = wb_get(w, c)) == NULL) {
		item_finish(w, it, 1);
		return;
	}
	/* An item's changes go in together or not at all. */
	size_t mark = store_batch_mark(b);
	if (it->kind == K_CLIP)
		rc = clip_check(it, &err);
	if (rc != 0) {
		/* Refused before anything was queued (below). */
	} else if (it->kind == K_FAIL) {
		store_failure f = { it->path, it->reason, it->size, it->mtime_ns,
		    0 };
		rc = store_batch_fail(b, &f, &err);
		if (rc == 0 && it->is_update)
			rc = store_batch_delete_path(b, it->path, &err);
	} else if (it->kind == K_SKIP) {
		/* No longer an image (del_path): its record goes. */
		forget_path(w, c, it->path);
	} else if (it->kind == K_CLIP) {
		/* Its old records (an image, or the frames of the clip that
		 * was there) go, the frames come: one transaction. */
		rc = store_batch_delete_path(b, it->path, &err);
		for (int i = 0; i < it->nframes && rc == 0; i++) {
			store_image r = { 0 };
			r.path = it->path;
			r.size = it->size;
			r.mtime_ns = it->mtime_ns;
			memcpy(r.hash, it->hash, STORE_HASH_LEN);
			r.width = it->width;
			r.height = it->height;
			r.capture_time = STORE_TIME_UNKNOWN;
			r.embedding = it->emb + (size_t)i * (size_t)w->dim;
			r.kind = STORE_KIND_FRAME;
			r.time_ms = it->fms[i];
			rc = store_batch_put(b, &r, &err);
		}
	} else {
		store_image r = { 0 };
		r.path = it->path;
		r.size = it->size;
		r.mtime_ns = it->mtime_ns;
		memcpy(r.hash, it->hash, STORE_HASH_LEN);
		r.width = it->width;
		r.height = it->height;
		r.capture_time = it->capture_time;
		r.embedding = it->emb;
		/* A record whose bytes were found at a new path moves there
		 * first, so that the put keeps its id. */
		if (it->was_clip)       /* a clip's frames give way */
			rc = store_batch_delete_path(b, it->path, &err);
		if (rc == 0 && it->moved_from != NULL)
			rc = store_batch_rename(b, it->moved_from, it->path, 0,
			    &err);
		if (rc == 0)
			rc = store_batch_put(b, &r, &err);
		if (rc == 0 && it->del_id != 0)
			rc = store_batch_delete(b, it->del_id, &err);
	}
	if (rc != 0 && it->kind != K_FAIL && it->kind != K_SKIP) {
		/* Nothing of it is written; a failure record says why (a
		 * temporary one is retried, as fail_or_retry's). */
		store_batch_rollback(b, mark);
		it->kind = K_FAIL;
		it->temporary = temporary(rc);
		snprintf(it->reason, sizeof(it->reason), "%scannot store: %s",
		    it->temporary ? WATCH_TEMPORARY : "", err.msg);
		store_failure f = { it->path, it->reason, it->size, it->mtime_ns,
		    0 };
		rc = store_batch_fail(b, &f, &err);
		if (rc == 0 && it->is_update)
			rc = store_batch_delete_path(b, it->path, &err);
	}
	if (rc != 0) {
		store_batch_rollback(b, mark);
		cdx_log(CDX_LOG_WARN, "indexer: cannot store %s: %s", it->path,
		    err.msg);
		item_finish(w, it, 1);
		return;
	}
	c->wait[c->n++] = it;
}

/* Writes what the queue held, in order, in as few transactions as the
 * changes allow: one, unless a change must read the store (forgetting a
 * folder, a move), which commits what came before it first. */
static void
write_batch(watch *w, item **v, size_t n)
{
	wbatch c = { 0 };

	if ((c.wait = calloc(n, sizeof(*c.wait))) == NULL) {
		for (size_t i = 0; i < n; i++)
			item_finish(w, v[i], 1);
		return;
	}
	for (size_t i = 0; i < n; i++)
		write_item(w, &c, v[i]);
	wb_commit(w, &c);
	free(c.wait);
}

static void *
write_main(void *arg)
{
	watch *w = arg;
	item *v[WRITE_MAX];
	item *it;

	lower_priority(w, 0);
	while ((it = wq_pop(&w->wrq, -1)) != NULL) {
		size_t n = 0;
		v[n++] = it;
		while (n < WRITE_MAX && (it = wq_pop(&w->wrq, 0)) != NULL)
			v[n++] = it;
		write_batch(w, v, n);
	}
	return NULL;
}

/* ---- public API ---- */

void
watch_default_params(watch_params *p)
{
	memset(p, 0, sizeof(*p));
	p->batch = 16;
	p->min_side = 64;
	p->max_file_bytes = (size_t)512 << 20;
	p->fast_decode = 1;
	p->live = 1;
	p->quiet_ms = 1000;
	p->nice = 10;
	p->encode_threads = 0;
	p->retry_ms = 30000;
	p->video = 1;
	p->video_interval_s = CLIP_VIDEO_INTERVAL_S;
	p->video_max_frames = CLIP_VIDEO_MAX_FRAMES;
}

int
watch_start(store *st, const clip_model *m, const watch_params *p,
    watch **out, cdx_error *err)
{
	watch *w;
	int rc;

	if (st == NULL || m == NULL || p == NULL || out == NULL)
		return cdx_error_set(err, CDX_EINVAL, "watch_start: NULL argument");
	if (p->batch < 1 || p->batch > 4096 || p->n_exclude < 0 ||
	    p->n_exclude > WATCH_MAX_EXCLUDE || p->decode_threads < 0 ||
	    p->decode_threads > 256 || p->quiet_ms < 0 || p->min_side < 0 ||
	    p->retry_ms < 1 || (p->video && (!(p->video_interval_s > 0) ||
	    p->video_max_frames < 1 ||
	    p->video_max_frames > WATCH_VIDEO_MAX_FRAMES ||
	    !(p->video_limit_s >= 0))))
		return cdx_error_set(err, CDX_EINVAL, "watch_start: a parameter is "
		    "out of range");
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return cdx_error_set(err, CDX_ENOMEM, "out of memory");
	w->st = st;
	w->m = m;
	w->info = clip_model_get_info(m);
	w->p = *p;
	if (w->p.max_file_bytes == 0)
		w->p.max_file_bytes = (size_t)512 << 20;
	w->plane = (size_t)w->info->preprocess.crop_width *
	    (size_t)w->info->preprocess.crop_height * 3;
	w->dim = w->info->embed_dim;
	w->ifd = -1;
	w->wake[0] = w->wake[1] = -1;
	pthread_mutex_init(&w->mu, NULL);
	pthread_mutex_init(&w->pool_mu, NULL);
	w->n_dec = p->decode_threads > 0 ? p->decode_threads :
	    (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (w->n_dec < 1)
		w->n_dec = 1;
	if (wq_init(&w->decq, 256) != 0 ||
	    wq_init(&w->encq, (size_t)p->batch * 2) != 0 ||
	    wq_init(&w->wrq, WRITE_MAX * 2) != 0 ||
	    (w->decoders = calloc((size_t)w->n_dec, sizeof(pthread_t))) == NULL) {
		rc = cdx_error_set(err, CDX_ENOMEM, "out of memory");
		goto fail;
	}
	if (pipe2(w->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
		rc = cdx_error_set(err, CDX_EIO, "pipe: %s", strerror(errno));
		goto fail;
	}
	if (p->live) {
		w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		if (w->ifd < 0) {
			rc = cdx_error_set(err, CDX_EIO, "inotify: %s%s",
			    strerror(errno), errno == EMFILE ? " (raise "
			    "fs.inotify.max_user_instances)" : "");
			goto fail;
		}
	}
	if (pthread_create(&w->writer, NULL, write_main, w) != 0)
		goto fail_thread;
	w->started_writer = 1;
	if (pthread_create(&w->encoder, NULL, encode_main, w) != 0)
		goto fail_thread;
	w->started_encoder = 1;
	for (int i = 0; i < w->n_dec; i++) {
		if (pthread_create(&w->decoders[i], NULL, decode_main, w) != 0) {
			w->n_dec = i;
			goto fail_thread;
		}
	}
	if (pthread_create(&w->control, NULL, control_main, w) != 0)
		goto fail_thread;
	w->started_control = 1;
	*out = w;
	return 0;

fail_thread:
	rc = cdx_error_set(err, CDX_ENOMEM, "cannot start the indexer's threads");
fail:
	watch_stop(w);
	return rc;
}

void
watch_stop(watch *w)
{
	item *it;
	task *t;

	if (w == NULL)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = 1;
	pthread_mutex_unlock(&w->mu);
	if (w->wake[1] >= 0)
		wake(w);
	if (w->started_control)
		pthread_join(w->control, NULL);
	/* Queued files are dropped; decoded ones are encoded and written. */
	if (w->decq.v != NULL)
		wq_close(&w->decq, 1);
	for (int i = 0; i < w->n_dec && w->decoders != NULL; i++)
		if (w->decoders[i])
			pthread_join(w->decoders[i], NULL);
	if (w->decq.v != NULL)
		while ((it = wq_take(&w->decq)) != NULL)
			item_finish(w, it, 1);
	if (w->encq.v != NULL)
		wq_close(&w->encq, 0);
	if (w->started_encoder)
		pthread_join(w->encoder, NULL);
	if (w->wrq.v != NULL)
		wq_close(&w->wrq, 0);
	if (w->started_writer)
		pthread_join(w->writer, NULL);
	for (size_t i = 0; i < w->n_retry; i++) {
		free(w->retry[i].path);
		if (w->retry[i].t != NULL) {
			w->retry[i].t->interrupted = 1;
			task_release(w, w->retry[i].t);
		}
	}
	w->n_retry = 0;
	/* Whatever finished, and what never started, is answered now. */
	while ((t = w->finished) != NULL) {
		w->finished = t->next;
		complete(w, t, 1);
	}
	while ((t = w->tasks_head) != NULL) {
		w->tasks_head = t->next;
		complete(w, t, 1);
	}
	free(w->retry);
	for (size_t i = 0; i < w->n_roots; i++)
		free(w->roots[i]);
	free(w->roots);
	for (int i = 0; i < w->wdcap; i++)
		free(w->wdpath[i]);
	free(w->wdpath);
	free(w->timers);
	for (size_t i = 0; i < w->n_moves; i++)
		free(w->moves[i].path);
	free(w->moves);
	free(w->ready);
	free(w->stack);
	free(w->seen);
	free(w->decoders);
	wq_destroy(&w->decq);
	wq_destroy(&w->encq);
	wq_destroy(&w->wrq);
	if (w->ifd >= 0)
		close(w->ifd);
	if (w->wake[0] >= 0)
		close(w->wake[0]);
	if (w->wake[1] >= 0)
		close(w->wake[1]);
	pthread_mutex_destroy(&w->mu);
	for (size_t i = 0; i < w->npool; i++)
		free(w->pool[i]);
	free(w->pool);
	pthread_mutex_destroy(&w->pool_mu);
	free(w);
}

int
watch_add(watch *w, const char *path, int live, watch_done_fn fn, void *user)
{
	struct stat st;
	int rc = 0;

	if (w == NULL || path == NULL || path[0] != '/')
		return CDX_EINVAL;
	live = live && w->p.live && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
	pthread_mutex_lock(&w->mu);
	if (w->stop) {
		pthread_mutex_unlock(&w->mu);
		return CDX_ECLOSED;
	}
	if (live) {
		int have = 0;
		for (size_t i = 0; i < w->n_roots && !have; i++)
			have = strcmp(w->roots[i], path) == 0;
		if (!have) {
			char *copy = strdup(path);
			if (copy == NULL || grow((void **)&w->roots, &w->cap_roots,
			    w->n_roots + 1, sizeof(*w->roots)) != 0) {
				free(copy);
				rc = CDX_ENOMEM;
			} else {
				w->roots[w->n_roots++] = copy;
			}
		}
	}
	if (rc == 0)
		rc = queue_task(w, path, live, fn, user);
	pthread_mutex_unlock(&w->mu);
	wake(w);
	return rc;
}

int
watch_remove(watch *w, const char *path)
{
	int found = 0;

	if (w == NULL || path == NULL)
		return CDX_EINVAL;
	pthread_mutex_lock(&w->mu);
	for (size_t i = 0; i < w->n_roots;) {
		if (cdx_path_under(w->roots[i], path)) {
			free(w->roots[i]);
			w->roots[i] = w->roots[--w->n_roots];
			found = 1;
		} else {
			i++;
		}
	}
	pthread_mutex_unlock(&w->mu);
	/* Its folders' watches are dropped as their next events arrive. */
	return found ? 0 : CDX_ENOTFOUND;
}

void
watch_rescan(watch *w)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->mu);
	if (!w->stop)
		rescan_roots_locked(w);
	pthread_mutex_unlock(&w->mu);
	wake(w);
}

void
watch_pause_events(watch *w, int paused)
{
	pthread_mutex_lock(&w->mu);
	w->paused = paused;
	pthread_mutex_unlock(&w->mu);
	wake(w);
}

void
watch_get_progress(watch *w, watch_progress *out)
{
	memset(out, 0, sizeof(*out));
	out->queued = w->queued;
	out->done = w->done;
	out->remaining = out->queued - out->done;
	out->encoded = w->encoded;
	out->reused = w->reused;
	out->failed = w->failed;
	out->skipped = w->skipped;
	for (int i = 0; i < WATCH_SKIP_KINDS; i++)
		out->skipped_by[i] = w->skipped_by[i];
	out->renamed = w->renamed;
	out->deleted = w->deleted;
	out->clips = w->clips;
	out->frames = w->frames;
	out->overflows = w->overflows;
	out->watches = w->watches;
	double busy = (double)w->busy_ns * 1e-9;
	out->rate = busy > 0.05 ? (double)(out->encoded + out->reused) / busy :
	    0.0;
	out->eta_s = out->rate > 0 ? (double)out->remaining / out->rate : -1.0;
	pthread_mutex_lock(&w->mu);
	out->scanning = w->walking || w->tasks_head != NULL;
	out->idle = !out->scanning && out->remaining == 0 &&
	    w->finished == NULL && w->n_retry == 0;
	snprintf(out->warning, sizeof(out->warning), "%s", w->warning);
	out->store_full = w->store_full;
	pthread_mutex_unlock(&w->mu);
}
