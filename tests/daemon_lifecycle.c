/*
 * clipdexd's life as a process: signals (a second stop signal is
 * harmless, the index is saved), tools/run.sh (one signal reaches the
 * daemon, which stops with its terminal and with the script), and running
 * out of file descriptors (the IPC socket answers again once they are
 * back).  Starts $BUILD/clipdexd with a tiny generated model on a few
 * generated photos; every test starts and stops its own daemon, so each
 * runs alone: CDX_TEST=test_run_sh_hangup build/tests/daemon_lifecycle.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/client_run.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/testmodel.h"
#include "tests/testutil.h"

#define N_PHOTOS 6

static char tmp[256], model_dir[300], photos[300], store_dir[300], url[320];
static char logpath[300], bindir[256];

/* ---- helpers ---- */

/* How many times s occurs in the log. */
static int
log_count(const char *s)
{
	char *text = tu_read_file(logpath, NULL);
	int n = 0;
	for (const char *p = text; p != NULL && (p = strstr(p, s)) != NULL;
	    p += strlen(s))
		n++;
	free(text);
	return n;
}

static void
log_reset(void)
{
	assert_int_equal(tu_write_file(logpath, "", 0), 0);
}

/* Waits up to 20 s until the log holds s n times; fails (showing the log)
 * if it does not. */
static void
log_wait(const char *s, int n)
{
	for (int i = 0; i < 400; i++) {
		if (log_count(s) >= n)
			return;
		usleep(50000);
	}
	char *text = tu_read_file(logpath, NULL);
	fail_msg("no '%s' in the log within 20 s:\n%s", s, text ? text : "");
}

static void
dump_log(void)
{
	char *text = tu_read_file(logpath, NULL);
	fprintf(stderr, "---- clipdexd log ----\n%s----\n", text ? text : "");
	free(text);
}

/* Starts clipdexd on the suite's socket watching the photos, with extra
 * flags and, when nofile > 0, a soft limit of nofile open files and a
 * hard limit of hard (0: nofile); its output is appended to the log. */
static pid_t
daemon_start_limited(const char *extra, int nofile, int hard)
{
	char cmd[4096];
	snprintf(cmd, sizeof(cmd), "exec %s/clipdexd --model '%s' --store '%s' "
	    "--listen '%s' --watch '%s' --threads 1 %s >>'%s' 2>&1", bindir,
	    model_dir, store_dir, url, photos, extra ? extra : "", logpath);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (nofile > 0) {
			struct rlimit rl = { (rlim_t)nofile,
			    (rlim_t)(hard > 0 ? hard : nofile) };
			if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
				_exit(126);
		}
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static pid_t
daemon_start(const char *extra)
{
	return daemon_start_limited(extra, 0, 0);
}

/* Whether `clipdex status` answers on the suite's socket within ms. */
static int
status_answers_within(int ms)
{
	char cmd[1024], out[4096];
	snprintf(cmd, sizeof(cmd), "%s/clipdex --url '%s' --timeout %d "
	    "--connect-timeout %d status 2>&1", bindir, url, ms, ms);
	return tu_popen_read(cmd, out, sizeof(out)) == 0;
}

static int
status_answers(void)
{
	return status_answers_within(2000);
}

static int
status_answers_cb(void *arg)
{
	(void)arg;
	return status_answers();
}

/* Waits up to ms for pid to end; its wait status, or -1 if it did not. */
static int
wait_exit(pid_t pid, int ms)
{
	int status;
	for (int t = 0; t < ms; t += 10) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			return status;
		assert_int_equal(r, 0);
		usleep(10000);
	}
	return -1;
}

/* Our children (and, as subreaper, our orphaned grandchildren) that are
 * still running: SIGKILL and reaped, so that a failed test leaves no
 * daemon holding the store. */
static void
kill_children(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	while (d != NULL && (e = readdir(d)) != NULL) {
		char p[300], buf[512];
		int pid = atoi(e->d_name), ppid = 0;
		if (pid <= 0)
			continue;
		snprintf(p, sizeof(p), "/proc/%d/stat", pid);
		FILE *f = fopen(p, "r");
		if (f == NULL)
			continue;
		if (fgets(buf, sizeof(buf), f) != NULL) {
			const char *rp = strrchr(buf, ')');
			if (rp == NULL || sscanf(rp + 2, "%*c %d", &ppid) != 1)
				ppid = 0;
		}
		fclose(f);
		if (ppid == getpid())
			kill(pid, SIGKILL);
	}
	if (d != NULL)
		closedir(d);
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

static int
file_exists(const char *dir, const char *name)
{
	char p[400];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return stat(p, &st) == 0;
}

/* ---- fixtures ---- */

static int
setup(void **state)
{
	(void)state;
	if (tu_lsan_nng() != 0)
		return -1;
	tu_bin_dir(bindir, sizeof(bindir));
	if (tu_suite_dirs("cdx-life", "model", tmp, model_dir, photos,
	    store_dir, url, logpath) != 0)
		return -1;
	/* Daemons orphaned by a killed tools/run.sh come to this process. */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
		return -1;
	tm_recipe r;
	tm_recipe_tiny(&r);
	if (mkdir(model_dir, 0755) != 0 || tm_write_model(&r, model_dir) != 0 ||
	    mkdir(photos, 0755) != 0)
		return -1;
	for (int i = 0; i < N_PHOTOS; i++) {
		char p[400];
		snprintf(p, sizeof(p), "%s/p%d.jpg", photos, i);
		tu_write_stripes_jpeg(p, 80 + 9 * i, 72, (unsigned)i + 1);
	}
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	kill_children();
	tm_rmtree(tmp);
	return 0;
}

static int
test_teardown(void **state)
{
	(void)state;
	kill_children();
	return 0;
}

/* ---- signals ---- */

/* SIGINT and SIGTERM back to back (as `make demo` sent them on Ctrl-C),
 * 20 times, at different moments (while indexing, while idle): every run
 * exits 0, logs the second signal, and saves the index, so that the next
 * start does not rebuild it. */
static void
test_second_signal(void **state)
{
	(void)state;
	int already = 0;

	log_reset();
	for (int run = 0; run < 20; run++) {
		pid_t pid = daemon_start(NULL);
		tu_wait_ready("clipdexd", pid, status_answers_cb, NULL, logpath);
		if (run > 0 && log_count("rebuilding the index") != 0) {
			dump_log();
			fail_msg("run %d rebuilt the index saved by run %d", run,
			    run - 1);
		}
		usleep((useconds_t)(run % 4) * 20000);
		assert_int_equal(kill(pid, SIGINT), 0);
		assert_int_equal(kill(pid, SIGTERM), 0);
		int status = wait_exit(pid, 20000);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			dump_log();
			fail_msg("run %d: clipdexd ended with status %d (signal %d)",
			    run, status, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
		}
		assert_true(file_exists(store_dir, "index.faiss"));
		already += log_count("SIGTERM: already stopping");
		log_reset();
	}
	/* The second signal reached the daemon and was only logged. */
	assert_true(already > 0);
}

/* A /proc/PID/task/TID/status mask line ("SigBlk:", "SigCgt:") as bits. */
static unsigned long long
task_mask(const char *status_path, const char *key)
{
	char line[256];
	unsigned long long m = 0;
	FILE *f = fopen(status_path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, key, strlen(key)) == 0)
			assert_int_equal(sscanf(line + strlen(key), "%llx", &m), 1);
	fclose(f);
	return m;
}

/* Where a stop signal can land: every thread has the handler (so none
 * ends the process by the default action), and the only threads that
 * leave the stop signals unblocked are the signal thread and OpenBLAS's
 * workers, started before main() (one per extra core). */
static void
test_signal_masks(void **state)
{
	(void)state;
	unsigned long long stop = 1ULL << (SIGINT - 1) | 1ULL << (SIGTERM - 1) |
	    1ULL << (SIGHUP - 1);
	int threads = 0, open_to_stop = 0;
	char dir[64];

	log_reset();
	pid_t pid = daemon_start(NULL);
	tu_wait_ready("clipdexd", pid, status_answers_cb, NULL, logpath);
	snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		char p[400];
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s/status", dir, e->d_name);
		threads++;
		assert_int_equal(task_mask(p, "SigCgt:") & stop, stop);
		if ((task_mask(p, "SigBlk:") & stop) != stop)
			open_to_stop++;
	}
	closedir(d);
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	assert_true(open_to_stop >= 1);
	if (open_to_stop > cores || open_to_stop >= threads)
		fail_msg("%d of %d threads leave the stop signals unblocked "
		    "(at most %ld expected)", open_to_stop, threads, cores);
	int status = tu_stop_child(pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* ---- tools/run.sh ---- */

/* Starts tools/run.sh on model in a process group of its own (as a
 * terminal's foreground job), its output in the log, REEMBED=reembed. */
static pid_t
run_sh_spawn(const char *model, const char *reembed)
{
	char http[64];
	snprintf(http, sizeof(http), "127.0.0.1:%d", 20000 + getpid() % 20000);
	log_reset();
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		setpgid(0, 0);
		int fd = open(logpath, O_WRONLY | O_APPEND);
		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		setenv("BUILD", bindir, 1);
		setenv("MODEL", model, 1);
		setenv("REEMBED", reembed, 1);
		setenv("PHOTOS", photos, 1);
		setenv("STORE", store_dir, 1);
		setenv("HTTP", http, 1);
		setenv("CLIPDEX_URL", url, 1);
		execl("/bin/sh", "sh", "tools/run.sh", (char *)NULL);
		_exit(127);
	}
	setpgid(pid, pid);
	return pid;
}

/* run_sh_spawn on the suite's model; waits until it serves. */
static pid_t
run_sh_start(void)
{
	pid_t pid = run_sh_spawn(model_dir, "0");
	log_wait("clipdexd is serving", 1);
	return pid;
}

/* What a terminal does to its foreground job: sig to the whole process
 * group.  The daemon gets one SIGTERM (from the script) and stops
 * cleanly; the script exits 0 with it. */
static void
run_sh_group_signal(int sig)
{
	pid_t pid = run_sh_start();
	assert_int_equal(kill(-pid, sig), 0);
	int status = wait_exit(pid, 20000);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		dump_log();
		fail_msg("run.sh ended with status %d", status);
	}
	/* Nothing is left serving the socket. */
	assert_false(status_answers());
	if (log_count("SIGTERM: stopping") != 1 ||
	    log_count("already stopping") != 0 ||
	    log_count("stopped cleanly") != 1) {
		dump_log();
		fail_msg("clipdexd did not get exactly one SIGTERM and stop");
	}
}

static void
test_run_sh_ctrl_c(void **state)
{
	(void)state;
	run_sh_group_signal(SIGINT);
}

/* Closing the terminal. */
static void
test_run_sh_hangup(void **state)
{
	(void)state;
	run_sh_group_signal(SIGHUP);
}

/* The script killed outright: the daemon does not outlive it (it stops
 * cleanly, and comes to this process, the subreaper, to be reaped). */
static void
test_run_sh_killed(void **state)
{
	(void)state;
	pid_t pid = run_sh_start();
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_not_equal(wait_exit(pid, 5000), -1);
	int status = -1;
	for (int t = 0; t < 20000; t += 10) {
		pid_t r = waitpid(-1, &status, WNOHANG);
		if (r > 0)
			break;
		if (r < 0) {
			status = -1;
			break;
		}
		usleep(10000);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
	    log_count("stopped cleanly") != 1) {
		dump_log();
		fail_msg("clipdexd outlived run.sh or did not stop cleanly "
		    "(status %d)", status);
	}
	assert_false(status_answers());
}

/* ---- running out of file descriptors ---- */

/* A listening TCP port that is free now. */
static int
free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* Under a limit of 64 open files, idle TCP connections take every
 * descriptor the daemon has, and clients of the IPC socket are turned
 * away meanwhile; once the connections close, the IPC socket answers
 * again (the listener guard listens again, however often that fails on
 * the way). */
static void
test_fd_exhaustion(void **state)
{
	(void)state;
	enum { NOFILE = 64, CONNS = 150 };
	int fds[CONNS], n = 0, port = free_port();
	char extra[128];

	log_reset();
	snprintf(extra, sizeof(extra), "--listen tcp://127.0.0.1:%d", port);
	pid_t pid = daemon_start_limited(extra, NOFILE, 0);
	tu_wait_ready("clipdexd", pid, status_answers_cb, NULL, logpath);
	struct sockaddr_in a = { .sin_family = AF_INET,
	    .sin_port = htons((uint16_t)port),
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	for (int i = 0; i < CONNS; i++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		assert_true(fd >= 0);
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 &&
		    errno != EINPROGRESS) {
			close(fd);
			continue;
		}
		fds[n++] = fd;
	}
	assert_true(n > NOFILE);
	/* Clients of the IPC socket while no descriptor is left (what made
	 * nng 1.5.2's IPC listener look stuck to the guard). */
	for (int i = 0; i < 20; i++)
		status_answers_within(200);
	for (int i = 0; i < n; i++)
		close(fds[i]);
	/* Within 10 s (the guard backs off up to 2 s between tries). */
	int back = 0;
	for (int t = 0; t < 20 && !back; t++) {
		back = status_answers_within(400);
		if (!back)
			usleep(100000);
	}
	if (!back) {
		dump_log();
		fail_msg("the IPC socket did not answer again");
	}
	int status = tu_stop_child(pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* The soft limit on open files is raised to the hard one at start. */
static void
test_nofile_raised(void **state)
{
	(void)state;
	struct rlimit rl;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_max <= 64 || rl.rlim_max == RLIM_INFINITY)
		skip();
	log_reset();
	pid_t pid = daemon_start_limited(NULL, 64, (int)rl.rlim_max);
	tu_wait_ready("clipdexd", pid, status_answers_cb, NULL, logpath);
	char path[64];
	unsigned long long soft = 0, hard = 0;
	snprintf(path, sizeof(path), "/proc/%d/limits", (int)pid);
	FILE *f = fopen(path, "r");
	char line[256];
	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "Max open files", 14) == 0)
			assert_int_equal(sscanf(line + 14, "%llu %llu", &soft,
			    &hard), 2);
	fclose(f);
	assert_int_equal(hard, (unsigned long long)rl.rlim_max);
	assert_int_equal(soft, hard);
	int status = tu_stop_child(pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* A store made by another model (a newer demo model, for a store that
 * `make demo` made before): run.sh refuses it with clipdexd's reason, and
 * with REEMBED=1 (as `make demo` sets for its own store) serves it, its
 * photos embedded again by the new model. */
static char suite_store[300];

/* test_run_sh_reembed's store is its own: the others' stays the suite
 * model's. */
static int
reembed_teardown(void **state)
{
	snprintf(store_dir, sizeof(store_dir), "%s", suite_store);
	return test_teardown(state);
}

static void
test_run_sh_reembed(void **state)
{
	(void)state;
	char other[400];
	snprintf(suite_store, sizeof(suite_store), "%s", store_dir);
	snprintf(store_dir, sizeof(store_dir), "%s/store-reembed", tmp);
	snprintf(other, sizeof(other), "%s/other-model", tmp);
	tm_recipe r;
	tm_recipe_tiny(&r);
	r.seed += 7;            /* other weights: another model */
	if (access(other, F_OK) != 0)
		assert_true(mkdir(other, 0755) == 0 &&
		    tm_write_model(&r, other) == 0);
	/* the store, made by the suite's model */
	run_sh_group_signal(SIGINT);
	pid_t pid = run_sh_spawn(other, "0");
	int status = wait_exit(pid, 20000);
	if (!WIFEXITED(status) || WEXITSTATUS(status) == 0 ||
	    log_count("open with reembed") != 1) {
		dump_log();
		fail_msg("run.sh started on another model's store (status %d)",
		    status);
	}
	pid = run_sh_spawn(other, "1");
	log_wait("clipdexd is serving", 1);
	/* run.sh prints the status once it has added the photos */
	if (log_count("re-embedding") != 1 ||
	    log_count("model     other-model@") != 1 ||
	    log_count("images    6\n") != 1) {
		dump_log();
		fail_msg("REEMBED=1 did not re-embed the store");
	}
	assert_int_equal(kill(-pid, SIGINT), 0);
	status = wait_exit(pid, 20000);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_second_signal, test_teardown),
		cmocka_unit_test_teardown(test_signal_masks, test_teardown),
		cmocka_unit_test_teardown(test_run_sh_ctrl_c, test_teardown),
		cmocka_unit_test_teardown(test_run_sh_hangup, test_teardown),
		cmocka_unit_test_teardown(test_run_sh_killed, test_teardown),
		cmocka_unit_test_teardown(test_run_sh_reembed, reembed_teardown),
		cmocka_unit_test_teardown(test_fd_exhaustion, test_teardown),
		cmocka_unit_test_teardown(test_nofile_raised, test_teardown),
	};
	return CLIENT_RUN_TESTS(tests, setup, teardown);
}
