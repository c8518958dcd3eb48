/* Crash safety of store/: a forked writer puts, replaces and deletes images
 * and reports over a pipe what it is about to do and what returned
 * success; it is killed with SIGKILL at random moments (25 times, also
 * during open, catch-up and store_save).  A tag set is defined, so every
 * put also writes tags; every third round the child instead redefines the
 * tag set again and again (store_tagset_put re-tags every image), and is
 * killed in the middle of that.  After each kill the store is reopened
 * and checked: every acknowledged change is there (images and the set's
 * version), records are whole, the FAISS index agrees with LMDB record for
 * record and the tags with the records (store_verify), and every image's
 * tags equal a fresh scoring of its stored embedding by the stored set. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "common/threads.h"
#include "store/store.h"
#include "tests/store_testutil.h"

#define MODEL "clip-crash@0000"
#define D 16
#define NPATH 300
#define ROUNDS 25
#define NLABELS 6
#define SET_NAME "crash"

enum { MSG_INTENT_PUT = 1, MSG_ACK_PUT, MSG_INTENT_DEL, MSG_ACK_DEL,
       MSG_INTENT_SET, MSG_ACK_SET };

typedef struct msg {
	uint32_t type, n;
	uint64_t seed;
} msg;

/* What the parent knows of one path. */
#define MAXPEND 64
typedef struct path_state {
	int64_t acked;          /* seed, 0 = absent */
	int64_t pend[MAXPEND];  /* seeds (0 = delete) after the ack */
	int npend;
	int overflow;           /* too many pending to track */
} path_state;

static void
vec_for(uint64_t seed, float *v)
{
	uint64_t st = seed * 2654435761u + 17;
	for (int i = 0; i < D; i++)
		v[i] = (float)tu_gauss(&st);
	tu_normalise(v, D);
}

/* Version v of the tag set: its weights, scale and threshold follow v,
 * and its one template names it. */
static cls_set *
set_for(uint64_t v)
{
	static const char *const labels[NLABELS] = { "a", "b", "c", "d", "e",
						     "f" };
	cls_set *c;
	cdx_error e;
	char tmpl[64];
	if (cls_set_new(SET_NAME, NLABELS, D, 1, 0, 0, &c, &e) != 0)
		return NULL;
	snprintf(tmpl, sizeof(tmpl), "version %llu of {}",
		 (unsigned long long)v);
	snprintf(c->model_key, sizeof(c->model_key), "%s", MODEL);
	c->scale = 4.0f + (float)(v % 7);
	c->threshold = 0.2f + 0.05f * (float)(v % 5);
	c->multi = v % 2 == 0;
	c->kind = c->multi ? CLS_SIGMOID : CLS_SOFTMAX;
	cls_set_template(c, 0, tmpl, &e);
	for (int i = 0; i < NLABELS; i++) {
		cls_set_label(c, (size_t)i, labels[i], &e);
		vec_for(v * 100 + (uint64_t)i, c->w + (size_t)i * D);
		c->bias[i] = c->multi ? -1.0f : 0.0f;
	}
	return c;
}

static uint64_t
set_version(const cls_set *c)
{
	unsigned long long v = 0;
	if (c->n_templates != 1 ||
	    sscanf(c->templates[0], "version %llu", &v) != 1)
		return 0;
	return v;
}

static void
path_for(int n, char *buf, size_t cap)
{
	snprintf(buf, cap, "/crash/dir%d/img%04d.jpg", n % 7, n);
}

static void
send_msg(int fd, uint32_t type, uint32_t n, uint64_t seed)
{
	msg m = { type, n, seed };
	if (write(fd, &m, sizeof(m)) != (ssize_t)sizeof(m))
		_exit(9);
}

static void
writer(const char *dir, int fd, int round)
{
	store_params p = store_default_params();
	store *s;
	cdx_error e;
	p.dim = D;
	p.model_id = MODEL;
	p.index_kind = "flat";
	if (store_open(dir, &p, &s, &e) != 0)
		_exit(2);
	uint64_t rng = (uint64_t)round * 7777 + 1, counter = 0;
	for (int op = 0;; op++) {
		uint32_t r = (uint32_t)(tu_rand(&rng) % 100);
		if (r < 85) {
			int nb = 1 + (int)(tu_rand(&rng) % 8);
			store_image imgs[8];
			char paths[8][64];
			float vecs[8][D];
			uint32_t ns[8];
			uint64_t seeds[8];
			for (int i = 0; i < nb; i++) {
				ns[i] = (uint32_t)(tu_rand(&rng) % NPATH);
				seeds[i] = (uint64_t)(round + 1) * 1000000 + ++counter;
				path_for((int)ns[i], paths[i], 64);
				vec_for(seeds[i], vecs[i]);
				memset(&imgs[i], 0, sizeof(imgs[i]));
				imgs[i].path = paths[i];
				imgs[i].size = (int64_t)seeds[i];
				imgs[i].mtime_ns = (int64_t)seeds[i] * 3;
				imgs[i].width = (uint32_t)(seeds[i] % 5000);
				imgs[i].capture_time = STORE_TIME_UNKNOWN;
				imgs[i].embedding = vecs[i];
				memcpy(imgs[i].hash, &seeds[i], 8);
				send_msg(fd, MSG_INTENT_PUT, ns[i], seeds[i]);
			}
			if (store_image_put(s, imgs, (size_t)nb, &e) != 0)
				_exit(3);
			for (int i = 0; i < nb; i++)
				send_msg(fd, MSG_ACK_PUT, ns[i], seeds[i]);
		} else if (r < 97) {
			uint32_t n = (uint32_t)(tu_rand(&rng) % NPATH);
			char path[64];
			const char *pp = path;
			size_t nd;
			path_for((int)n, path, sizeof(path));
			send_msg(fd, MSG_INTENT_DEL, n, 0);
			if (store_image_delete_paths(s, &pp, 1, &nd, &e) != 0)
				_exit(4);
			send_msg(fd, MSG_ACK_DEL, n, 0);
		} else {
			if (store_save(s, &e) != 0)
				_exit(5);
		}
	}
}

/* Redefines the tag set (each version re-tags every image) until killed. */
static void
tagsetter(const char *dir, int fd, int round)
{
	store_params p = store_default_params();
	store *s;
	cdx_error e;
	p.dim = D;
	p.model_id = MODEL;
	p.index_kind = "flat";
	if (store_open(dir, &p, &s, &e) != 0)
		_exit(2);
	for (uint64_t v = (uint64_t)(round + 1) * 1000000;; v++) {
		cls_set *c = set_for(v);
		if (!c)
			_exit(6);
		send_msg(fd, MSG_INTENT_SET, 0, v);
		if (store_tagset_put(s, c, NULL, &e) != 0)
			_exit(7);
		send_msg(fd, MSG_ACK_SET, 0, v);
		cls_set_free(c);
	}
}

/* What the parent knows of the tag set's version. */
static path_state set_state;

static void
apply_msg(path_state *ps, const msg *m)
{
	path_state *p = m->type == MSG_INTENT_SET || m->type == MSG_ACK_SET
				? &set_state
				: &ps[m->n];
	switch (m->type) {
	case MSG_INTENT_PUT:
	case MSG_INTENT_DEL:
	case MSG_INTENT_SET:
		if (p->npend < MAXPEND)
			p->pend[p->npend++] =
				m->type != MSG_INTENT_DEL ? (int64_t)m->seed : 0;
		else
			p->overflow = 1;
		break;
	case MSG_ACK_PUT:
	case MSG_ACK_DEL:
	case MSG_ACK_SET: {
		int64_t v = m->type != MSG_ACK_DEL ? (int64_t)m->seed : 0;
		/* Drop pending entries up to and including this one. */
		int i;
		for (i = 0; i < p->npend && p->pend[i] != v; i++)
			;
		if (i < p->npend) {
			memmove(p->pend, p->pend + i + 1,
				(size_t)(p->npend - i - 1) * sizeof(int64_t));
			p->npend -= i + 1;
		}
		p->acked = v;
		break;
	}
	}
}

static uint64_t caught_up_total, tags_total;

typedef struct check_ctx {
	int64_t actual[NPATH];
	int bad;
	char why[400];
	store *s;
	const cls_set *set;
	size_t tags;
} check_ctx;

/* The image's tags equal a fresh scoring of its stored embedding by the
 * stored set: none stale, none missing. */
static int
tags_fresh(check_ctx *c, const store_image *img)
{
	float prob[NLABELS];
	uint32_t idx[NLABELS];
	store_tags *t;
	cdx_error e;
	if (cls_score(c->set, img->embedding, 1, D, prob, &e) != 0 ||
	    store_image_tags(c->s, img->id, &t, &e) != 0) {
		snprintf(c->why, sizeof(c->why), "%s: %s", img->path, e.msg);
		return 0;
	}
	size_t k = cls_applied(c->set, prob, idx);
	int ok = t->n == k;
	for (size_t i = 0; i < k && ok; i++)
		ok = strcmp(t->tags[i].set, SET_NAME) == 0 &&
		     strcmp(t->tags[i].label, c->set->labels[idx[i]]) == 0 &&
		     fabsf(t->tags[i].prob - prob[idx[i]]) <= 1e-5f;
	if (!ok)
		snprintf(c->why, sizeof(c->why),
			 "%s has %zu tags (first %s), a fresh scoring %zu "
			 "(first %s)", img->path, t->n,
			 t->n ? t->tags[0].label : "-", k,
			 k ? c->set->labels[idx[0]] : "-");
	c->tags += t->n;
	store_tags_free(t);
	return ok;
}

static int
collect(void *user, const store_image *img)
{
	check_ctx *c = user;
	int n;
	if (sscanf(img->path, "/crash/dir%*d/img%d.jpg", &n) != 1 || n < 0 ||
	    n >= NPATH) {
		c->bad = 1;
		snprintf(c->why, sizeof(c->why), "unexpected path %s", img->path);
		return 1;
	}
	float v[D];
	vec_for((uint64_t)img->size, v);
	uint64_t h;
	memcpy(&h, img->hash, 8);
	for (int i = 0; i < D; i++)
		if (fabsf(v[i] - img->embedding[i]) > STORE_EMB_ABS_ERR)
			c->bad = 1;
	if (img->mtime_ns != img->size * 3 || h != (uint64_t)img->size ||
	    img->width != (uint32_t)(img->size % 5000))
		c->bad = 1;
	if (c->bad)
		snprintf(c->why, sizeof(c->why), "record %s is not whole",
			 img->path);
	else if (!tags_fresh(c, img))
		c->bad = 1;
	c->actual[n] = img->size;
	return c->bad;
}

static void
check_store(const char *dir, path_state *ps, int round)
{
	store_params p = store_default_params();
	store *s;
	cdx_error e;
	p.dim = D;
	p.model_id = MODEL;
	p.index_kind = "flat";
	ASSERT_OK(store_open(dir, &p, &s, &e), e);
	ASSERT_OK(store_verify(s, &e), e);
	/* A crash never costs a rebuild: the saved index plus the change log
	 * always cover LMDB. */
	store_stats st;
	store_get_stats(s, &st);
	if (st.rebuilt_on_open)
		fail_msg("round %d: the index was rebuilt after a crash", round);
	caught_up_total += st.caught_up;
	/* The set is the acknowledged version or one that was under way. */
	cls_set *set;
	ASSERT_OK(store_tagset_get(s, SET_NAME, &set, &e), e);
	uint64_t v = set_version(set);
	int set_ok = (int64_t)v == set_state.acked || set_state.overflow;
	for (int i = 0; i < set_state.npend && !set_ok; i++)
		set_ok = (int64_t)v == set_state.pend[i];
	if (!set_ok)
		fail_msg("round %d: tag set version %llu, acknowledged %lld",
			 round, (unsigned long long)v,
			 (long long)set_state.acked);
	set_state.acked = (int64_t)v;
	set_state.npend = set_state.overflow = 0;
	check_ctx *c = calloc(1, sizeof(*c));
	c->s = s;
	c->set = set;
	ASSERT_OK(store_image_foreach(s, collect, c, &e), e);
	if (c->bad)
		fail_msg("round %d: %s", round, c->why);
	for (int n = 0; n < NPATH; n++) {
		path_state *q = &ps[n];
		int ok = c->actual[n] == q->acked || q->overflow;
		for (int i = 0; i < q->npend && !ok; i++)
			ok = c->actual[n] == q->pend[i];
		if (!ok)
			fail_msg("round %d: path %d holds %lld, acknowledged "
				 "%lld (%d pending)",
				 round, n, (long long)c->actual[n],
				 (long long)q->acked, q->npend);
		q->acked = c->actual[n];
		q->npend = 0;
		q->overflow = 0;
	}
	tags_total += c->tags;
	store_close(s);
	cls_set_free(set);
	free(c);
}

static void
test_sigkilled_writer_loses_nothing_acknowledged(void **state)
{
	(void)state;
	char *dir = tu_tmpdir();
	path_state *ps = calloc(NPATH, sizeof(*ps));
	uint64_t rng = (uint64_t)time(NULL) | 1;
	int total_acks = 0, set_acks = 0;
	/* Create the store (and its first, empty, saved index). */
	{
		store_params p = store_default_params();
		store *s;
		cdx_error e;
		p.dim = D;
		p.model_id = MODEL;
		p.index_kind = "flat";
		ASSERT_OK(store_open(dir, &p, &s, &e), e);
		cls_set *c = set_for(1);
		ASSERT_OK(store_tagset_put(s, c, NULL, &e), e);
		set_state.acked = 1;
		cls_set_free(c);
		store_close(s);
	}
	for (int round = 0; round < ROUNDS; round++) {
		int fds[2];
		assert_int_equal(pipe(fds), 0);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(fds[0]);
			if (round % 3 == 2)
				tagsetter(dir, fds[1], round);
			else
				writer(dir, fds[1], round);
			_exit(0);
		}
		close(fds[1]);
		/* Let it run 2..80 ms, reading its reports. */
		struct timespec t0, t;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		long budget_ms = 2 + (long)(tu_rand(&rng) % 79);
		msg m;
		for (;;) {
			clock_gettime(CLOCK_MONOTONIC, &t);
			long el = (t.tv_sec - t0.tv_sec) * 1000 +
				  (t.tv_nsec - t0.tv_nsec) / 1000000;
			if (el >= budget_ms)
				break;
			struct pollfd pf = { fds[0], POLLIN, 0 };
			if (poll(&pf, 1, (int)(budget_ms - el)) <= 0)
				continue;
			ssize_t r = read(fds[0], &m, sizeof(m));
			if (r != (ssize_t)sizeof(m))
				break;
			apply_msg(ps, &m);
			total_acks += m.type == MSG_ACK_PUT;
			set_acks += m.type == MSG_ACK_SET;
		}
		kill(pid, SIGKILL);
		int status;
		waitpid(pid, &status, 0);
		assert_true(WIFSIGNALED(status) ||
			    (WIFEXITED(status) && WEXITSTATUS(status) == 0));
		/* What it wrote before dying is still in the pipe. */
		while (read(fds[0], &m, sizeof(m)) == (ssize_t)sizeof(m)) {
			apply_msg(ps, &m);
			total_acks += m.type == MSG_ACK_PUT;
			set_acks += m.type == MSG_ACK_SET;
		}
		close(fds[0]);
		check_store(dir, ps, round);
	}
	assert_true(total_acks > 0);
	assert_true(caught_up_total > 0);
	assert_true(tags_total > 0);
	assert_true(set_acks > 0);
	print_message("%d kills, %d acknowledged puts, %d tag set versions, "
		      "%llu tags checked, %llu log entries caught up\n",
		      ROUNDS, total_acks, set_acks,
		      (unsigned long long)tags_total,
		      (unsigned long long)caught_up_total);
	free(ps);
	tu_rmrf(dir);
	free(dir);
}

static void
log_to_stderr(int level, const char *line, void *user)
{
	(void)user;
	fprintf(stderr, "[%s] %s\n", cdx_log_level_name(level), line);
}

int
main(void)
{
	/* One thread, as the programs' main() would set it. */
	cdx_threads_set(1);
	cdx_log_set(log_to_stderr, NULL, CDX_LOG_INFO);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sigkilled_writer_loses_nothing_acknowledged),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
