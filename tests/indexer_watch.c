/*
 * indexer_watch.c - the indexer against real folders: a tiny generated
 * model, a temporary store, generated JPEGs.  After each change on disk the
 * store must converge to the disk within a deadline, checked record by
 * record (path, size, mtime), with embeddings kept across renames and the
 * encoder not run again for bytes it has seen.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <turbojpeg.h>

#include "common/threads.h"
#include "indexer/indexer_test.h"
#include "tests/testmodel.h"
#include "tests/testutil.h"

static char tmp[] = "/tmp/cdx-indexer-XXXXXX";
static char model_dir[300];
static clip_model *model;

/* ---- fixtures ---- */

static unsigned char *
jpeg_bytes(int w, int h, unsigned seed, unsigned long *len)
{
	unsigned char *rgb = tu_stripes_rgb(w, h, seed, 0, 0), *jpeg;

	assert_non_null(rgb);
	jpeg = tu_jpeg_encode(rgb, w, h, 90, len);
	assert_non_null(jpeg);
	free(rgb);
	return jpeg;
}

static void
write_bytes(const char *path, const void *data, size_t len)
{
	assert_int_equal(tu_write_file(path, data, len), 0);
}

static void
write_jpeg(const char *path, unsigned seed)
{
	unsigned long len;
	unsigned char *j = jpeg_bytes(80, 72, seed, &len);
	write_bytes(path, j, len);
	tjFree(j);
}

static char *
pathf(const char *fmt, ...)
{
	static char buf[8][PATH_MAX];
	static int k;
	char *p = buf[k++ % 8];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p, PATH_MAX, fmt, ap);
	va_end(ap);
	return p;
}

static void
rmtree(const char *dir)
{
	tm_rmtree(dir);
}

/* ---- the store and the indexer ---- */

typedef struct env {
	char root[PATH_MAX];
	char store_dir[PATH_MAX];
	store *st;
	watch *w;
} env;

static void
env_open_store(env *e)
{
	store_params sp = store_default_params();
	const clip_model_info *info = clip_model_get_info(model);
	cdx_error err;
	sp.dim = info->embed_dim;
	sp.model_id = info->key;
	CDX_ASSERT_OK(store_open(e->store_dir, &sp, &e->st, &err), err.msg);
}

static void
env_start(env *e, const watch_params *p)
{
	cdx_error err;
	CDX_ASSERT_OK(watch_start(e->st, model, p, &e->w, &err), err.msg);
}

static void
env_init(env *e, const char *name)
{
	memset(e, 0, sizeof(*e));
	snprintf(e->root, sizeof(e->root), "%s/%s", tmp, name);
	snprintf(e->store_dir, sizeof(e->store_dir), "%s/%s-store", tmp, name);
	assert_int_equal(mkdir(e->root, 0755), 0);
	env_open_store(e);
}

static void
env_free(env *e)
{
	watch_stop(e->w);
	store_close(e->st);
	rmtree(e->root);
	rmtree(e->store_dir);
}

struct done {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int n;
	watch_result r;
};

static void
on_done(void *user, const char *path, const watch_result *r)
{
	struct done *d = user;
	(void)path;
	pthread_mutex_lock(&d->mu);
	d->r = *r;
	d->n++;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

/* Waits for d's callback (at most 180 s: sanitizers are slow). */
static void
done_wait(struct done *d)
{
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 180;
	pthread_mutex_lock(&d->mu);
	while (d->n == 0)
		if (pthread_cond_timedwait(&d->cv, &d->mu, &dl) != 0)
			break;
	pthread_mutex_unlock(&d->mu);
	assert_int_equal(d->n, 1);
}

/* Adds root and waits for its scan. */
static watch_result
add_wait(env *e, const char *path, int live)
{
	struct done d = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
	    0, { 0 } };
	assert_int_equal(watch_add(e->w, path, live, on_done, &d), 0);
	done_wait(&d);
	return d.r;
}

/* Files the indexer must have a record of: *.jpg and *.png not named
 * broken*, not hidden, not under a hidden folder, not *.tmp. */
static int
expected_name(const char *name)
{
	size_t n = strlen(name);
	if (name[0] == '.' || strncmp(name, "broken", 6) == 0)
		return 0;
	return n > 4 && (strcmp(name + n - 4, ".jpg") == 0 ||
	    strcmp(name + n - 4, ".png") == 0);
}

struct sync_state {
	const char *root;
	size_t records;
	size_t bad;
	char why[PATH_MAX + 64];
};

static void
walk_expected(const char *dir, struct sync_state *s, store *st)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char path[PATH_MAX];
		struct stat sb;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (lstat(path, &sb) != 0)
			continue;
		if (S_ISDIR(sb.st_mode)) {
			walk_expected(path, s, st);
			continue;
		}
		if (!S_ISREG(sb.st_mode) || !expected_name(de->d_name))
			continue;
		store_image *r;
		if (store_image_get_by_path(st, path, &r, NULL) != 0) {
			s->bad++;
			snprintf(s->why, sizeof(s->why), "no record of %s", path);
			continue;
		}
		if (r->size != sb.st_size || r->mtime_ns != (int64_t)sb.st_mtim.tv_sec
		    * 1000000000 + sb.st_mtim.tv_nsec) {
			s->bad++;
			snprintf(s->why, sizeof(s->why), "stale record of %s", path);
		}
		store_image_free(r);
	}
	closedir(d);
}

static int
count_under(void *user, const store_image *img)
{
	struct sync_state *s = user;
	size_t n = strlen(s->root);
	struct stat sb;
	if (strncmp(img->path, s->root, n) != 0 || img->path[n] != '/')
		return 0;
	s->records++;
	const char *base = strrchr(img->path, '/') + 1;
	if (lstat(img->path, &sb) != 0 || !expected_name(base) ||
	    strstr(img->path, "/.") != NULL) {
		s->bad++;
		snprintf(s->why, sizeof(s->why), "record of %s, which should not "
		    "have one", img->path);
	}
	return 0;
}

/* The store holds exactly the expected files under root, up to date. */
static int
in_sync(env *e, char *why, size_t whylen)
{
	struct sync_state s = { e->root, 0, 0, "" };
	cdx_error err;
	walk_expected(e->root, &s, e->st);
	CDX_ASSERT_OK(store_image_foreach(e->st, count_under, &s, &err),
	    err.msg);
	if (s.bad > 0 && why != NULL)
		snprintf(why, whylen, "%s", s.why);
	return s.bad == 0;
}

/* Polls in_sync until it holds, for at most `seconds`. */
static void
converge_(env *e, double seconds, const char *step)
{
	double end = tu_now_s() + seconds;
	char why[PATH_MAX + 64] = "";
	for (;;) {
		if (in_sync(e, why, sizeof(why)))
			return;
		if (tu_now_s() > end)
			fail_msg("%s: not in step after %.0f s: %s", step, seconds, why);
		usleep(20000);
	}
}
#define converge(e, step) converge_(e, 15.0, step)

static int64_t
encoded(env *e)
{
	watch_progress p;
	watch_get_progress(e->w, &p);
	return p.encoded;
}

static float *
embedding_of(env *e, const char *path)
{
	store_image *r;
	int dim = clip_model_get_info(model)->embed_dim;
	if (store_image_get_by_path(e->st, path, &r, NULL) != 0)
		fail_msg("no record of %s", path);
	float *v = malloc(sizeof(float) * (size_t)dim);
	memcpy(v, r->embedding, sizeof(float) * (size_t)dim);
	store_image_free(r);
	return v;
}

static uint64_t
id_of(env *e, const char *path)
{
	store_image *r;
	if (store_image_get_by_path(e->st, path, &r, NULL) != 0)
		fail_msg("no record of %s", path);
	uint64_t id = r->id;
	store_image_free(r);
	return id;
}

static void
assert_embedding(env *e, const char *path, const float *want)
{
	int dim = clip_model_get_info(model)->embed_dim;
	float *got = embedding_of(e, path);
	assert_memory_equal(got, want, sizeof(float) * (size_t)dim);
	free(got);
}

static int
has_failure(env *e, const char *path)
{
	store_failure *f;
	if (store_failure_get(e->st, path, &f, NULL) != 0)
		return 0;
	store_failure_free(f);
	return 1;
}

static int
has_record(env *e, const char *path)
{
	store_image *r;
	if (store_image_get_by_path(e->st, path, &r, NULL) != 0)
		return 0;
	store_image_free(r);
	return 1;
}

static void
wait_for(int (*pred)(env *, const char *), env *e, const char *path,
    int want, const char *what)
{
	double end = tu_now_s() + 15.0;
	while (pred(e, path) != want) {
		if (tu_now_s() > end)
			fail_msg("%s: %s", what, path);
		usleep(20000);
	}
}

static watch_params
test_params(void)
{
	watch_params p;
	watch_default_params(&p);
	p.batch = 4;
	p.decode_threads = 2;
	p.nice = 0;
	p.quiet_ms = 1000;
	p.exclude[p.n_exclude++] = "*.tmp";
	return p;
}

/* ---- setup ---- */

static int
group_setup(void **state)
{
	(void)state;
	return tu_tmp_tiny_model(tmp, model_dir, sizeof(model_dir), &model);
}

static int
group_teardown(void **state)
{
	(void)state;
	clip_model_free(model);
	/* test_store_full_is_retried's tmpfs, if a failure left it */
	char cmd[PATH_MAX + 64];
	snprintf(cmd, sizeof(cmd), "umount %s/full-store 2>/dev/null", tmp);
	if (geteuid() == 0 && system(cmd) != 0) {
		/* not mounted */
	}
	rmtree(tmp);
	return 0;
}

/* ---- tests ---- */

static void
test_scan_then_live(void **state)
{
	env e;
	watch_params p = test_params();
	(void)state;

	env_init(&e, "live");
	/* The initial tree. */
	mkdir(pathf("%s/a", e.root), 0755);
	mkdir(pathf("%s/a/deep", e.root), 0755);
	mkdir(pathf("%s/b", e.root), 0755);
	mkdir(pathf("%s/.hidden", e.root), 0755);
	mkdir(pathf("%s/my folder", e.root), 0755);
	for (int i = 0; i < 12; i++)
		write_jpeg(pathf("%s/%s/p%d.jpg", e.root, i % 3 == 0 ? "a" :
		    i % 3 == 1 ? "b" : "a/deep", i), 100 + i);
	write_jpeg(pathf("%s/my folder/été photo 1.jpg", e.root), 200);
	write_jpeg(pathf("%s/.hidden/h.jpg", e.root), 201);
	write_jpeg(pathf("%s/.dotfile.jpg", e.root), 202);
	write_jpeg(pathf("%s/a/skip.tmp", e.root), 203);
	write_bytes(pathf("%s/notes.txt", e.root), "hello", 5);
	write_bytes(pathf("%s/broken.jpg", e.root), "\xff\xd8\xff\xe0garbage", 11);
	{       /* an icon: below min_side */
		unsigned long len;
		unsigned char *j = jpeg_bytes(32, 32, 7, &len);
		write_bytes(pathf("%s/broken-icon.jpg", e.root), j, len);
		tjFree(j);
	}

	env_start(&e, &p);
	watch_result r = add_wait(&e, e.root, 1);
	assert_int_equal(r.added, 13);
	assert_int_equal(r.failed, 1);
	assert_int_equal(r.interrupted, 0);
	converge(&e, "initial scan");
	assert_true(has_failure(&e, pathf("%s/broken.jpg", e.root)));
	assert_false(has_record(&e, pathf("%s/broken-icon.jpg", e.root)));
	assert_false(has_failure(&e, pathf("%s/notes.txt", e.root)));
	int64_t enc = encoded(&e);
	assert_int_equal(enc, 13);

	/* Scanning again re-encodes nothing. */
	r = add_wait(&e, e.root, 1);
	assert_int_equal(r.added + r.updated, 0);
	assert_int_equal(r.unchanged, 14);
	assert_int_equal(encoded(&e), enc);

	/* Create. */
	write_jpeg(pathf("%s/b/new.jpg", e.root), 300);
	converge(&e, "create");
	assert_int_equal(encoded(&e), ++enc);

	/* Overwrite with other bytes. */
	float *before = embedding_of(&e, pathf("%s/b/new.jpg", e.root));
	write_jpeg(pathf("%s/b/new.jpg", e.root), 301);
	converge(&e, "overwrite");
	assert_int_equal(encoded(&e), ++enc);
	float *after = embedding_of(&e, pathf("%s/b/new.jpg", e.root));
	assert_memory_not_equal(before, after, sizeof(float) * 16);
	free(before);
	free(after);

	/* Copy in slowly: never recorded (nor failed) while half-written. */
	{
		unsigned long len;
		unsigned char *j = jpeg_bytes(120, 100, 400, &len);
		const char *slow = pathf("%s/a/slow copy.jpg", e.root);
		int fd = open(slow, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		assert_true(fd >= 0);
		size_t step = len / 8 + 1;
		for (size_t off = 0; off < len; off += step) {
			size_t n = len - off < step ? len - off : step;
			assert_int_equal(write(fd, j + off, n), (ssize_t)n);
			usleep(150000);
			assert_false(has_failure(&e, slow));
			assert_false(has_record(&e, slow));
		}
		close(fd);
		tjFree(j);
		converge(&e, "slow copy");
		assert_false(has_failure(&e, slow));
		assert_int_equal(encoded(&e), ++enc);
	}

	/* Rename in place, then move to another folder: same embedding, no
	 * encoding. */
	float *emb = embedding_of(&e, pathf("%s/a/p0.jpg", e.root));
	uint64_t id = id_of(&e, pathf("%s/a/p0.jpg", e.root));
	assert_int_equal(rename(pathf("%s/a/p0.jpg", e.root),
	    pathf("%s/a/renamed.jpg", e.root)), 0);
	converge(&e, "rename");
	assert_embedding(&e, pathf("%s/a/renamed.jpg", e.root), emb);
	assert_int_equal(id_of(&e, pathf("%s/a/renamed.jpg", e.root)), id);
	assert_int_equal(rename(pathf("%s/a/renamed.jpg", e.root),
	    pathf("%s/b/moved here.jpg", e.root)), 0);
	converge(&e, "move between folders");
	assert_embedding(&e, pathf("%s/b/moved here.jpg", e.root), emb);
	assert_int_equal(id_of(&e, pathf("%s/b/moved here.jpg", e.root)), id);
	free(emb);
	assert_int_equal(encoded(&e), enc);

	/* Move a folder (with a subfolder): paths rewritten, embeddings kept. */
	emb = embedding_of(&e, pathf("%s/a/deep/p2.jpg", e.root));
	id = id_of(&e, pathf("%s/a/deep/p2.jpg", e.root));
	mkdir(pathf("%s/b/into", e.root), 0755);
	assert_int_equal(rename(pathf("%s/a", e.root),
	    pathf("%s/b/into/A", e.root)), 0);
	converge(&e, "move a folder");
	assert_embedding(&e, pathf("%s/b/into/A/deep/p2.jpg", e.root), emb);
	assert_int_equal(id_of(&e, pathf("%s/b/into/A/deep/p2.jpg", e.root)), id);
	free(emb);
	assert_int_equal(encoded(&e), enc);
	/* The moved folder is still watched, under its new name. */
	write_jpeg(pathf("%s/b/into/A/deep/later.jpg", e.root), 500);
	converge(&e, "create in a moved folder");
	assert_int_equal(encoded(&e), ++enc);

	/* Delete a file, then a folder. */
	assert_int_equal(unlink(pathf("%s/b/p1.jpg", e.root)), 0);
	converge(&e, "delete");
	rmtree(pathf("%s/b/into", e.root));
	converge(&e, "delete a folder");
	assert_false(has_record(&e, pathf("%s/b/into/A/deep/p2.jpg", e.root)));

	/* Nested folders created at once, with a file at the bottom. */
	assert_int_equal(mkdir(pathf("%s/n1", e.root), 0755), 0);
	assert_int_equal(mkdir(pathf("%s/n1/n2", e.root), 0755), 0);
	assert_int_equal(mkdir(pathf("%s/n1/n2/n3", e.root), 0755), 0);
	write_jpeg(pathf("%s/n1/n2/n3/nested.jpg", e.root), 600);
	converge(&e, "nested folders");
	write_jpeg(pathf("%s/n1/n2/n3/nested2.jpg", e.root), 601);
	converge(&e, "a file in a new nested folder");

	/* A corrupt file and a non-image arrive. */
	write_bytes(pathf("%s/n1/broken2.jpg", e.root),
	    "\x89PNG\r\n\x1a\n\0\0\0\rIHDRtruncated", 24);
	write_bytes(pathf("%s/n1/readme.md", e.root), "# not an image\n", 15);
	wait_for(has_failure, &e, pathf("%s/n1/broken2.jpg", e.root), 1,
	    "a corrupt file is recorded as a failure");
	converge(&e, "corrupt and non-image");
	assert_false(has_failure(&e, pathf("%s/n1/readme.md", e.root)));

	/* Excluded and hidden names never get records. */
	write_jpeg(pathf("%s/n1/x.tmp", e.root), 700);
	write_jpeg(pathf("%s/n1/.x.jpg", e.root), 701);
	write_jpeg(pathf("%s/n1/after.jpg", e.root), 702);
	converge(&e, "excluded");
	assert_false(has_record(&e, pathf("%s/n1/x.tmp", e.root)));
	assert_false(has_record(&e, pathf("%s/n1/.x.jpg", e.root)));

	/* A copy of known bytes reuses the embedding. */
	enc = encoded(&e);
	{
		char cmd[PATH_MAX * 2 + 32];
		snprintf(cmd, sizeof(cmd), "cp '%s/n1/after.jpg' '%s/n1/copy.jpg'",
		    e.root, e.root);
		assert_int_equal(system(cmd), 0);
	}
	converge(&e, "copy");
	assert_int_equal(encoded(&e), enc);

	/* Deleting a folder forgets its failure records too. */
	rmtree(pathf("%s/n1", e.root));
	wait_for(has_failure, &e, pathf("%s/n1/broken2.jpg", e.root), 0,
	    "the failure record of a deleted folder's file is forgotten");
	converge(&e, "delete a folder with a failure");

	env_free(&e);
}

/* What an add's callback saw: whether the file's record was there. */
struct seen {
	struct done d;
	store *st;
	const char *file;
	int had_record;
};

static void
on_done_seen(void *user, const char *path, const watch_result *r)
{
	struct seen *s = user;
	store_image *img = NULL;
	cdx_error err;
	s->had_record = store_image_get_by_path(s->st, s->file, &img,
	    &err) == 0;
	store_image_free(img);
	on_done(&s->d, path, r);
}

/* Every add waits for every file it saw: three adds of a folder in a row,
 * the second and third finding its one large photo still on its way
 * through the pipeline (each then waits on a timer of its own: a timer is
 * per path and task).  Each add's callback finds the record written. */
static void
test_adds_wait_for_files_in_flight(void **state)
{
	(void)state;
	env e;
	env_init(&e, "inflight");
	watch_params p = test_params();
	env_start(&e, &p);
	unsigned long len;
	unsigned char *j = jpeg_bytes(6000, 4000, 77, &len);
	char *file = pathf("%s/big.jpg", e.root);
	write_bytes(file, j, len);
	tjFree(j);
	struct seen s[3];
	for (int i = 0; i < 3; i++) {
		s[i] = (struct seen){ { PTHREAD_MUTEX_INITIALIZER,
		    PTHREAD_COND_INITIALIZER, 0, { 0 } }, e.st, file, 0 };
		assert_int_equal(watch_add(e.w, e.root, 0, on_done_seen, &s[i]),
		    0);
	}
	for (int i = 0; i < 3; i++) {
		done_wait(&s[i].d);
		if (!s[i].had_record)
			fail_msg("add %d finished before the file it found was "
			    "indexed", i + 1);
	}
	env_free(&e);
}

static void
test_overflow(void **state)
{
	env e;
	watch_params p = test_params();
	watch_progress pr;
	(void)state;

	p.event_limit = 8;
	env_init(&e, "overflow");
	env_start(&e, &p);
	add_wait(&e, e.root, 1);
	watch_pause_events(e.w, 1);
	for (int i = 0; i < 30; i++)
		write_jpeg(pathf("%s/o%d.jpg", e.root, i), 1000 + i);
	watch_pause_events(e.w, 0);
	converge(&e, "after an overflow");
	watch_get_progress(e.w, &pr);
	assert_true(pr.overflows >= 1);
	assert_int_equal(pr.encoded, 30);
	env_free(&e);
}

static void
test_restart_resumes(void **state)
{
	env e;
	watch_params p = test_params();
	watch_progress pr;
	(void)state;

	enum { N = 150 };
	env_init(&e, "resume");
	for (int i = 0; i < N; i++)
		write_jpeg(pathf("%s/r%03d.jpg", e.root, i), 2000 + i);
	p.decode_threads = 1;
	p.batch = 2;
	env_start(&e, &p);
	assert_int_equal(watch_add(e.w, e.root, 1, NULL, NULL), 0);
	double end = tu_now_s() + 30;
	while (encoded(&e) < 10 && tu_now_s() < end)
		usleep(1000);
	watch_get_progress(e.w, &pr);
	assert_true(pr.encoded >= 10);
	assert_true(pr.encoded < N);
	watch_stop(e.w);
	e.w = NULL;
	uint64_t committed = store_image_count(e.st);
	assert_true(committed >= 10);
	assert_true(committed < N);
	/* Reopen everything, as a restarted daemon would. */
	store_close(e.st);
	env_open_store(&e);
	assert_int_equal(store_image_count(e.st), committed);
	env_start(&e, &p);
	watch_result r = add_wait(&e, e.root, 1);
	assert_int_equal(r.added, N - (int64_t)committed);
	assert_int_equal(r.unchanged, (int64_t)committed);
	assert_int_equal(encoded(&e), N - (int64_t)committed);
	converge(&e, "resumed");
	env_free(&e);
}

static void
test_symlinks(void **state)
{
	env e;
	watch_params p = test_params();
	(void)state;

	env_init(&e, "links");
	mkdir(pathf("%s/d", e.root), 0755);
	write_jpeg(pathf("%s/d/one.jpg", e.root), 3000);
	assert_int_equal(symlink(".", pathf("%s/d/self", e.root)), 0);
	assert_int_equal(symlink("..", pathf("%s/d/up", e.root)), 0);
	assert_int_equal(symlink("one.jpg", pathf("%s/d/alias.jpg", e.root)), 0);

	/* Not followed by default. */
	env_start(&e, &p);
	watch_result r = add_wait(&e, e.root, 0);
	assert_int_equal(r.added, 1);
	assert_int_equal(store_image_count(e.st), 1);
	watch_stop(e.w);

	/* Followed: every folder once, no loop. */
	p.follow_symlinks = 1;
	env_start(&e, &p);
	r = add_wait(&e, e.root, 0);
	assert_int_equal(r.unchanged, 1);
	/* alias.jpg is a link to known bytes: recorded, embedding reused. */
	assert_int_equal(r.added, 1);
	assert_int_equal(encoded(&e), 0);
	env_free(&e);
}

/* A file moved while nobody watched: the scan finds its bytes at the new
 * path and moves the record there (same id, no encoding). */
static void
test_moved_while_stopped(void **state)
{
	env e;
	watch_params p = test_params();
	(void)state;

	env_init(&e, "offline");
	mkdir(pathf("%s/x", e.root), 0755);
	write_jpeg(pathf("%s/x/a.jpg", e.root), 4000);
	write_jpeg(pathf("%s/x/b.jpg", e.root), 4001);
	env_start(&e, &p);
	add_wait(&e, e.root, 1);
	uint64_t id = id_of(&e, pathf("%s/x/a.jpg", e.root));
	watch_stop(e.w);
	assert_int_equal(rename(pathf("%s/x/a.jpg", e.root),
	    pathf("%s/x/a moved.jpg", e.root)), 0);
	env_start(&e, &p);
	watch_result r = add_wait(&e, e.root, 1);
	assert_int_equal(r.moved, 1);
	assert_int_equal(encoded(&e), 0);
	assert_int_equal(id_of(&e, pathf("%s/x/a moved.jpg", e.root)), id);
	converge(&e, "moved while stopped");
	env_free(&e);
}

static void
copy_file(const char *from, const char *to)
{
	FILE *f = fopen(from, "rb");
	static char buf[1 << 20];
	assert_non_null(f);
	size_t n = fread(buf, 1, sizeof(buf), f);
	assert_true(n > 0 && n < sizeof(buf));
	fclose(f);
	write_bytes(to, buf, n);
}

/* EXIF DateTimeOriginal and the displayed size are stored (expected values
 * from tests/fixtures/images/manifest.txt, made with Pillow). */
static void
test_exif_capture_time(void **state)
{
	env e;
	watch_params p = test_params();
	store_image *r;
	(void)state;

	p.min_side = 0;
	env_init(&e, "exif");
	copy_file("tests/fixtures/images/j_orient6.jpg",
	    pathf("%s/rotated.jpg", e.root));
	copy_file("tests/fixtures/images/p_orient6.png",
	    pathf("%s/rotated.png", e.root));
	write_jpeg(pathf("%s/no exif.jpg", e.root), 9000);
	env_start(&e, &p);
	watch_result res = add_wait(&e, e.root, 0);
	assert_int_equal(res.added, 3);
	assert_int_equal(store_image_get_by_path(e.st,
	    pathf("%s/rotated.jpg", e.root), &r, NULL), 0);
	assert_int_equal(r->capture_time, 1620284889);
	assert_int_equal(r->width, 24);
	assert_int_equal(r->height, 40);
	store_image_free(r);
	assert_int_equal(store_image_get_by_path(e.st,
	    pathf("%s/rotated.png", e.root), &r, NULL), 0);
	assert_int_equal(r->capture_time, 1262401445);
	assert_int_equal(r->width, 16);
	assert_int_equal(r->height, 26);
	store_image_free(r);
	assert_int_equal(store_image_get_by_path(e.st,
	    pathf("%s/no exif.jpg", e.root), &r, NULL), 0);
	assert_true(r->capture_time == STORE_TIME_UNKNOWN);
	store_image_free(r);
	env_free(&e);
}

/* A mixed folder: a file of every format the encoder reads is indexed,
 * whatever its name; everything else is skipped and counted by why. */
static void
test_mixed_folder_formats(void **state)
{
	static const char *const images[] = { "h_basic.heic", "a_basic.avif",
		"w_lossy.webp", "w_anim.webp", "t_rgb8.tif", "g_basic.gif",
		"b_24.bmp", "r_basic.dng" };
	enum { N_IMAGES = sizeof(images) / sizeof(images[0]) };
	env e;
	watch_params p = test_params();
	(void)state;

	p.min_side = 20;
	p.video = 0;    /* clips skipped: tests/indexer_video.c indexes them */
	env_init(&e, "formats");
	for (int i = 0; i < N_IMAGES; i++)
		/* names say nothing: content decides */
		copy_file(pathf("tests/fixtures/images/formats/%s", images[i]),
		    pathf("%s/file%d%s", e.root, i, i % 2 ? ".jpg" : ""));
	write_jpeg(pathf("%s/photo.jpg", e.root), 9100);
	unsigned long len;
	unsigned char *icon = jpeg_bytes(16, 16, 9101, &len);
	write_bytes(pathf("%s/icon.jpg", e.root), icon, len);
	tjFree(icon);
	write_bytes(pathf("%s/clip.mp4", e.root),
	    "\0\0\0\x18" "ftypisom\0\0\0\0isomavc1\0\0\0\x08free", 32);
	write_bytes(pathf("%s/clip.webm", e.root),
	    "\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01", 9);
	write_bytes(pathf("%s/image.jxl", e.root),
	    "\0\0\0\x0cJXL \r\n\x87\n\0\0", 14);
	write_bytes(pathf("%s/notes.txt", e.root), "a shopping list\n", 16);
	write_bytes(pathf("%s/empty.jpg", e.root), "", 0);
	write_jpeg(pathf("%s/partial.tmp", e.root), 9102);
	env_start(&e, &p);
	watch_result res = add_wait(&e, e.root, 0);
	assert_int_equal(res.added, N_IMAGES + 1);
	assert_int_equal(res.failed, 0);
	for (int i = 0; i < N_IMAGES; i++)
		assert_true(has_record(&e, pathf("%s/file%d%s", e.root, i,
		    i % 2 ? ".jpg" : "")));
	watch_progress pr;
	watch_get_progress(e.w, &pr);
	static const struct {
		int why;
		int64_t n;
	} want[] = {
		{ WATCH_SKIP_EMPTY, 1 }, { WATCH_SKIP_EXCLUDED, 1 },
		{ WATCH_SKIP_SMALL, 1 }, { WATCH_SKIP_VIDEO, 2 },
		{ WATCH_SKIP_IMAGE_OTHER, 1 }, { WATCH_SKIP_OTHER, 1 },
	};
	int64_t sum = 0;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		if (pr.skipped_by[want[i].why] != want[i].n)
			fail_msg("skipped %s: %lld, want %lld",
			    watch_skip_name(want[i].why),
			    (long long)pr.skipped_by[want[i].why],
			    (long long)want[i].n);
		sum += want[i].n;
	}
	assert_int_equal(pr.skipped, sum);
	assert_string_equal(watch_skip_name(WATCH_SKIP_VIDEO), "video");
	env_free(&e);
}

static void
test_watch_limit(void **state)
{
	env e;
	watch_params p = test_params();
	watch_progress pr;
	(void)state;

	p.max_watches = 2;
	env_init(&e, "limit");
	for (int i = 0; i < 4; i++)
		mkdir(pathf("%s/d%d", e.root, i), 0755);
	env_start(&e, &p);
	add_wait(&e, e.root, 1);
	watch_get_progress(e.w, &pr);
	assert_int_equal(pr.watches, 2);
	assert_non_null(strstr(pr.warning,
	    "sysctl fs.inotify.max_user_watches=524288"));
	env_free(&e);
}

static void
test_ten_thousand(void **state)
{
	env e;
	watch_params p = test_params();
	watch_progress pr;
	(void)state;

	enum { N = 10000 };
	env_init(&e, "many");
	double t0 = tu_now_s();
	for (int d = 0; d < 10; d++)
		mkdir(pathf("%s/d%d", e.root, d), 0755);
	for (int i = 0; i < N; i++) {
		unsigned long len;
		unsigned char *j = jpeg_bytes(64, 64, 5000 + i, &len);
		write_bytes(pathf("%s/d%d/f%05d.jpg", e.root, i % 10, i), j, len);
		tjFree(j);
	}
	double t1 = tu_now_s();
	p.batch = 32;
	env_start(&e, &p);
	watch_result r = add_wait(&e, e.root, 1);
	double t2 = tu_now_s();
	watch_get_progress(e.w, &pr);
	print_message("10000 files: generated in %.1f s, indexed in %.1f s "
	    "(%.0f files/s), %lld encoded, %lld reused\n", t1 - t0, t2 - t1,
	    N / (t2 - t1), (long long)pr.encoded, (long long)pr.reused);
	assert_int_equal(r.added, N);
	assert_int_equal(store_image_count(e.st), N);
	assert_int_equal(pr.encoded + pr.reused, N);
	assert_int_equal(pr.remaining, 0);
	converge(&e, "10000 files");
	env_free(&e);
}

/* ---- temporary failures: retried, not permanent (issue 14) ---- */

/* Whether path has a failure record marked temporary. */
static int
has_temporary_failure(env *e, const char *path)
{
	store_failure *f;
	int yes;
	if (store_failure_get(e->st, path, &f, NULL) != 0)
		return 0;
	yes = strncmp(f->reason, WATCH_TEMPORARY, strlen(WATCH_TEMPORARY)) == 0;
	store_failure_free(f);
	return yes;
}

/* File descriptors run out (EMFILE) while a folder is indexed: the files
 * and the sub-folder that could not be opened become temporary failures,
 * and once descriptors are back they are indexed, without a touch, an
 * add or a restart (retry_ms is short here). */
static void
test_out_of_descriptors_is_retried(void **state)
{
	env e;
	watch_params p = test_params();
	(void)state;

	env_init(&e, "emfile");
	assert_int_equal(mkdir(pathf("%s/sub", e.root), 0755), 0);
	for (int i = 0; i < 4; i++)
		write_jpeg(pathf("%s/f%d.jpg", e.root, i), 3000 + i);
	for (int i = 0; i < 2; i++)
		write_jpeg(pathf("%s/sub/g%d.jpg", e.root, i), 3100 + i);
	/* the first retry comes after the checks below, even on a loaded
	 * machine (a retry that fails again rewrites the record meanwhile) */
	p.retry_ms = 1500;
	env_start(&e, &p);

	/* Take every descriptor but one (the walk's folder). */
	struct rlimit old, low;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = 256;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	int hog[256], n = 0;
	while (n < 256 && (hog[n] = open("/dev/null", O_RDONLY)) >= 0)
		n++;
	assert_int_equal(errno, EMFILE);
	close(hog[--n]);
	watch_result r = add_wait(&e, e.root, 1);
	/* Which open failed depends on what else took the free descriptor
	 * (a thread of a library, the folder walk): at least one file or
	 * folder must have failed, and only temporarily. */
	int temporary = has_temporary_failure(&e, pathf("%s/sub", e.root));
	for (int i = 0; i < 4; i++)
		temporary |= has_temporary_failure(&e, pathf("%s/f%d.jpg",
		    e.root, i));
	/* Descriptors back before any assertion can end the test. */
	for (int i = 0; i < n; i++)
		close(hog[i]);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	assert_true(r.failed >= 1);
	assert_true(temporary);

	/* Back: every image is indexed, every failure gone. */
	for (int i = 0; i < 4; i++)
		wait_for(has_record, &e, pathf("%s/f%d.jpg", e.root, i), 1,
		    "not retried");
	for (int i = 0; i < 2; i++)
		wait_for(has_record, &e, pathf("%s/sub/g%d.jpg", e.root, i), 1,
		    "sub-folder not retried");
	wait_for(has_failure, &e, pathf("%s/sub", e.root), 0,
	    "folder failure kept");
	for (int i = 0; i < 4; i++)
		assert_false(has_failure(&e, pathf("%s/f%d.jpg", e.root, i)));
	/* ... and the sub-folder is watched again. */
	write_jpeg(pathf("%s/sub/h.jpg", e.root), 3200);
	wait_for(has_record, &e, pathf("%s/sub/h.jpg", e.root), 1,
	    "sub-folder not watched");
	converge(&e, "after descriptors came back");
	env_free(&e);
}

/* A file and a folder that cannot be read (mode 000) are temporary
 * failures, indexed once readable, without a touch.  Root reads anything:
 * the test runs as an ordinary user only (the EMFILE test above covers
 * the same path as root). */
/* Drops (on = 0) or restores (on = 1) CAP_DAC_OVERRIDE and
 * CAP_DAC_READ_SEARCH in the calling thread's effective set; threads
 * started later inherit it.  Returns 1 when root had them to drop. */
static int
dac_override(int on)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	const unsigned bits = (1u << CAP_DAC_OVERRIDE) |
	    (1u << CAP_DAC_READ_SEARCH);
	assert_int_equal(syscall(SYS_capget, &h, d), 0);
	if (!on && (d[0].effective & bits) == 0)
		return 0;
	if (on)
		d[0].effective |= bits & d[0].permitted;
	else
		d[0].effective &= ~bits;
	assert_int_equal(syscall(SYS_capset, &h, d), 0);
	return 1;
}

static void
test_unreadable_is_retried(void **state)
{
	env e;
	watch_params p = test_params();
	(void)state;

	/* Root reads mode-000 files through CAP_DAC_OVERRIDE: this thread
	 * (and the indexer's threads it starts) drop it from their effective
	 * set for the test, as an ordinary user has none. */
	int dropped = dac_override(0);
	env_init(&e, "mode000");
	assert_int_equal(mkdir(pathf("%s/locked", e.root), 0755), 0);
	write_jpeg(pathf("%s/a.jpg", e.root), 3300);
	write_jpeg(pathf("%s/locked/b.jpg", e.root), 3301);
	assert_int_equal(chmod(pathf("%s/a.jpg", e.root), 0), 0);
	assert_int_equal(chmod(pathf("%s/locked", e.root), 0), 0);
	p.retry_ms = 300;
	env_start(&e, &p);
	watch_result r = add_wait(&e, e.root, 1);
	assert_int_equal(r.failed, 2);
	assert_true(has_temporary_failure(&e, pathf("%s/a.jpg", e.root)));
	assert_true(has_temporary_failure(&e, pathf("%s/locked", e.root)));
	assert_int_equal(chmod(pathf("%s/a.jpg", e.root), 0644), 0);
	assert_int_equal(chmod(pathf("%s/locked", e.root), 0755), 0);
	wait_for(has_record, &e, pathf("%s/a.jpg", e.root), 1, "file");
	wait_for(has_record, &e, pathf("%s/locked/b.jpg", e.root), 1, "folder");
	wait_for(has_failure, &e, pathf("%s/locked", e.root), 0, "failure");
	converge(&e, "after chmod");
	env_free(&e);
	if (dropped)
		dac_override(1);
}

/* The store's disk fills up (a 2 MiB tmpfs; needs root to mount, skipped
 * otherwise): the add says store full (not interrupted), progress says so,
 * and once space is freed the files are stored without a restart. */
static void
test_store_full_is_retried(void **state)
{
	env e;
	watch_params p = test_params();
	watch_progress pr;
	(void)state;

	memset(&e, 0, sizeof(e));
	snprintf(e.root, sizeof(e.root), "%s/full", tmp);
	snprintf(e.store_dir, sizeof(e.store_dir), "%s/full-store", tmp);
	assert_int_equal(mkdir(e.root, 0755), 0);
	assert_int_equal(mkdir(e.store_dir, 0700), 0);
	char cmd[PATH_MAX + 64];
	snprintf(cmd, sizeof(cmd), "mount -t tmpfs -o size=2m tmpfs %s "
	    "2>/dev/null", e.store_dir);
	if (geteuid() != 0 || system(cmd) != 0) {
		rmdir(e.store_dir);
		rmdir(e.root);
		skip();
		return;
	}
	env_open_store(&e);
	/* Fill the disk but for a few KiB. */
	char *filler = pathf("%s/filler", e.store_dir);
	int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	static char block[4096];
	while (write(fd, block, sizeof(block)) == (ssize_t)sizeof(block))
		;
	close(fd);
	for (int i = 0; i < 6; i++)
		write_jpeg(pathf("%s/s%d.jpg", e.root, i), 3400 + i);
	p.retry_ms = 200;
	env_start(&e, &p);
	watch_result r = add_wait(&e, e.root, 1);
	assert_int_equal(r.interrupted, 0);
	assert_int_equal(r.store_full, 1);
	watch_get_progress(e.w, &pr);
	assert_int_equal(pr.store_full, 1);
	assert_int_equal(unlink(filler), 0);
	for (int i = 0; i < 6; i++)
		wait_for(has_record, &e, pathf("%s/s%d.jpg", e.root, i), 1,
		    "not stored once space came back");
	watch_get_progress(e.w, &pr);
	assert_int_equal(pr.store_full, 0);
	watch_stop(e.w);
	e.w = NULL;
	store_close(e.st);
	snprintf(cmd, sizeof(cmd), "umount %s", e.store_dir);
	assert_int_equal(system(cmd), 0);
	rmtree(e.root);
	rmtree(e.store_dir);
}

/* ---- ghost records: a rename racing an explicit add (issue 14) ---- */

struct ghost_arg {
	env *e;
	int thread;
	int n;
};

static void *
ghost_thread(void *arg)
{
	struct ghost_arg *g = arg;
	for (int j = 0; j < g->n; j++) {
		char part[PATH_MAX + 64], final[PATH_MAX + 48];
		snprintf(final, sizeof(final), "%s/t%d_%03d.jpg", g->e->root,
		    g->thread, j);
		snprintf(part, sizeof(part), "%s.part", final);
		/* Copies of a few images: equal bytes reuse embeddings. */
		write_jpeg(part, 4000 + (unsigned)(j % 7));
		if (rename(part, final) != 0)
			return (void *)1;
		watch_result r = add_wait(g->e, final, 1);
		if (r.interrupted || r.added + r.updated + r.unchanged != 1)
			return (void *)2;
	}
	return NULL;
}

/* Copy to X.part, rename to X, add X and wait, from 4 threads at once:
 * no record of a vanished X.part may stay beside X. */
static void
test_rename_then_add_leaves_no_ghost(void **state)
{
	env e;
	watch_params p = test_params();
	(void)state;

	env_init(&e, "ghost");
	env_start(&e, &p);
	add_wait(&e, e.root, 1);
	enum { THREADS = 4, EACH = 75 };
	pthread_t th[THREADS];
	struct ghost_arg ga[THREADS];
	for (int i = 0; i < THREADS; i++) {
		ga[i] = (struct ghost_arg){ &e, i, EACH };
		assert_int_equal(pthread_create(&th[i], NULL, ghost_thread,
		    &ga[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		void *rv;
		pthread_join(th[i], &rv);
		assert_null(rv);
	}
	/* Every X has its record at once (the add waited for it) ... */
	for (int i = 0; i < THREADS; i++)
		for (int j = 0; j < EACH; j++)
			assert_true(has_record(&e, pathf("%s/t%d_%03d.jpg",
			    e.root, i, j)));
	/* ... and no X.part keeps one, once the events are handled. */
	converge(&e, "renames");
	assert_int_equal(store_image_count(e.st), THREADS * EACH);
	env_free(&e);
}

int
main(void)
{
	/* One thread, as the programs' main() would set it. */
	cdx_threads_set(1);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scan_then_live),
		cmocka_unit_test(test_adds_wait_for_files_in_flight),
		cmocka_unit_test(test_overflow),
		cmocka_unit_test(test_restart_resumes),
		cmocka_unit_test(test_symlinks),
		cmocka_unit_test(test_moved_while_stopped),
		cmocka_unit_test(test_exif_capture_time),
		cmocka_unit_test(test_mixed_folder_formats),
		cmocka_unit_test(test_watch_limit),
		cmocka_unit_test(test_ten_thousand),
		cmocka_unit_test(test_out_of_descriptors_is_retried),
		cmocka_unit_test(test_unreadable_is_retried),
		cmocka_unit_test(test_store_full_is_retried),
		cmocka_unit_test(test_rename_then_add_leaves_no_ghost),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
