/*
 * clipdexd - the clipdex daemon.  See `clipdexd --help` and
 * docs/PROTOCOL.md.  Runs in the foreground (systemd, a terminal or a test
 * starts it); logs to stderr, one line per event.
 *
 * Exit codes: 0 after a clean shutdown (SIGTERM, SIGINT or SIGHUP), 1 when
 * it cannot start (bad model, store in use, address taken), 2 for usage
 * errors.
 *
 * Process-wide state is set here and nowhere else: the signal mask and
 * handlers, the libraries' thread counts, RLIMIT_NOFILE and, when asked
 * for, the parent-death signal.
 *
 * Signals.  SIGINT, SIGTERM and SIGHUP all mean "stop": the first starts
 * an orderly stop (requests in flight are answered, the batch being
 * indexed is committed, the index is saved); any later one is logged and
 * changes nothing.  main() blocks every asynchronous signal before it
 * starts a thread, so the threads of nng, the indexer, OpenMP and oneDNN
 * never take one.  OpenBLAS is different: its library constructor starts
 * its worker threads before main() runs (one per extra core), with no
 * signal blocked, and nothing can block signals on them afterwards.  A
 * process-directed signal may land on one of those threads, so the three
 * signals get a handler (not the default action, which would end the
 * process there): it only writes the signal's number to a pipe, whichever
 * thread runs it.  One thread, sig_main, reads that pipe, and is the only
 * thread of ours that leaves the three signals unblocked.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>

#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "common/cdx.h"
#include "common/threads.h"
#include "daemon/cluster_op.h"
#include "daemon/daemon.h"
#include "encoder/video.h"

static void
log_stderr(int level, const char *line, void *user)
{
	struct timespec ts;
	struct tm tm;
	char when[32];
	(void)user;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ %-5s %s\n", when, ts.tv_nsec / 1000000,
	    cdx_log_level_name(level), line);
}

/* ---- signals ---- */

static const int stop_signals[] = { SIGINT, SIGTERM, SIGHUP };

static int sig_pipe[2] = { -1, -1 };
static pthread_mutex_t stop_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stop_cv = PTHREAD_COND_INITIALIZER;
static int stop_sig;            /* the first stop signal, under stop_mu */

/* Async-signal-safe: write(2) only, errno kept. */
static void
on_signal(int sig)
{
	int saved = errno;
	unsigned char b = (unsigned char)sig;
	if (write(sig_pipe[1], &b, 1) < 0) {
		/* The pipe is full of earlier signals: this one adds nothing. */
	}
	errno = saved;
}

static const char *
sig_name(int sig)
{
	return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" :
	    sig == SIGHUP ? "SIGHUP" : "signal";
}

/* The signal thread: the first stop signal wakes main(), later ones are
 * logged.  Runs until the process exits. */
static void *
sig_main(void *arg)
{
	sigset_t mine;
	unsigned char b;
	(void)arg;

	sigemptyset(&mine);
	for (size_t i = 0; i < sizeof(stop_signals) / sizeof(*stop_signals); i++)
		sigaddset(&mine, stop_signals[i]);
	pthread_sigmask(SIG_UNBLOCK, &mine, NULL);
	for (;;) {
		ssize_t n = read(sig_pipe[0], &b, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n != 1)
			return NULL;
		pthread_mutex_lock(&stop_mu);
		int first = stop_sig == 0;
		if (first) {
			stop_sig = b;
			pthread_cond_signal(&stop_cv);
		}
		pthread_mutex_unlock(&stop_mu);
		if (first)
			cdx_log(CDX_LOG_INFO, "%s: stopping (the index is saved)",
			    sig_name(b));
		else
			cdx_log(CDX_LOG_INFO, "%s: already stopping", sig_name(b));
	}
}

/* Blocks every asynchronous signal in the calling thread (and so in every
 * thread it starts), gives SIGINT, SIGTERM and SIGHUP their handler and
 * starts the signal thread.  Call before any other thread is started.
 * 0, or -1 with errno. */
static int
signals_setup(void)
{
	static const int sync_signals[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL,
	    SIGABRT, SIGTRAP, SIGSYS };
	sigset_t all;
	struct sigaction sa;
	pthread_t t;

	sigfillset(&all);
	for (size_t i = 0; i < sizeof(sync_signals) / sizeof(*sync_signals); i++)
		sigdelset(&all, sync_signals[i]);
	if ((errno = pthread_sigmask(SIG_BLOCK, &all, NULL)) != 0)
		return -1;
	if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
		return -1;
	/* The reader blocks; only the handler's end stays non-blocking. */
	if (fcntl(sig_pipe[0], F_SETFL, 0) != 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigfillset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	for (size_t i = 0; i < sizeof(stop_signals) / sizeof(*stop_signals); i++)
		if (sigaction(stop_signals[i], &sa, NULL) != 0)
			return -1;
	signal(SIGPIPE, SIG_IGN);
	if ((errno = pthread_create(&t, NULL, sig_main, NULL)) != 0)
		return -1;
	pthread_detach(t);
	return 0;
}

static int
wait_for_stop(void)
{
	pthread_mutex_lock(&stop_mu);
	while (stop_sig == 0)
		pthread_cond_wait(&stop_cv, &stop_mu);
	int sig = stop_sig;
	pthread_mutex_unlock(&stop_mu);
	return sig;
}

/* ---- other process-wide settings ---- */

/* The soft limit on open files up to the hard one: every client
 * connection, image read and store file takes a descriptor. */
static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == rl.rlim_max)
		return;
	rlim_t was = rl.rlim_cur;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
		cdx_log(CDX_LOG_DEBUG, "open files: limit %llu (was %llu)",
		    (unsigned long long)rl.rlim_cur, (unsigned long long)was);
	else
		cdx_log(CDX_LOG_WARN, "open files: cannot raise the limit %llu "
		    "to %llu: %s", (unsigned long long)was,
		    (unsigned long long)rl.rlim_max, strerror(errno));
}

/* $CLIPDEXD_PARENT_DEATH=1 (tools/run.sh sets it): SIGTERM when the
 * parent process ends, so that a daemon started by a script does not
 * outlive it.  0, or -1 when the parent has already gone. */
static int
parent_death_setup(void)
{
	const char *v = getenv("CLIPDEXD_PARENT_DEATH");
	pid_t parent = getppid();

	if (v == NULL || strcmp(v, "1") != 0)
		return 0;
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) {
		cdx_log(CDX_LOG_WARN, "CLIPDEXD_PARENT_DEATH: %s", strerror(errno));
		return 0;
	}
	/* The parent may have ended before the prctl. */
	return getppid() == parent ? 0 : -1;
}

int
main(int argc, char **argv)
{
	srv_config cfg;
	srv *s = NULL;
	cdx_error err;
	int rc;

	setvbuf(stderr, NULL, _IOLBF, 0);
	srv_config_init(&cfg);
	rc = srv_config_parse_args(&cfg, argc, argv, &err);
	if (rc == 1) {
		fputs(srv_config_help(), stdout);
		srv_config_free(&cfg);
		return 0;
	}
	if (rc == 0)
		rc = srv_config_finish(&cfg, &err);
	if (rc != 0) {
		fprintf(stderr, "clipdexd: %s\n(clipdexd --help for the options)\n",
		    err.msg);
		srv_config_free(&cfg);
		return 2;
	}
	cdx_log_set(log_stderr, NULL, cfg.log_level);
	/* Before anything starts a thread (the libraries' thread counts, nng,
	 * the daemon): every thread started from here on inherits the
	 * blocked signals. */
	if (signals_setup() != 0) {
		cdx_log(CDX_LOG_ERROR, "signals: %s", strerror(errno));
		srv_config_free(&cfg);
		return 1;
	}
	if (parent_death_setup() != 0) {
		cdx_log(CDX_LOG_ERROR, "the parent process has already ended");
		srv_config_free(&cfg);
		return 1;
	}
	raise_nofile();
	/* The libraries' thread counts, for the whole process, before any
	 * thread starts. */
	int threads = cdx_threads_set(cfg.threads);
	/* FFmpeg's own messages (clips it cannot read become failure
	 * records with the reason): errors only. */
	clip_video_log_quiet();
	cdx_log(CDX_LOG_INFO, "%d threads for OpenBLAS and oneDNN", threads);

	cluster_worker *w = NULL;
	rc = cfg.worker ? cluster_worker_start(&cfg, &w, &err) :
	    srv_start(&cfg, &s, &err);
	if (rc != 0) {
		cdx_log(CDX_LOG_ERROR, "cannot start: %s", err.msg);
		srv_config_free(&cfg);
		nats_Close();
		return 1;
	}
	cdx_log(CDX_LOG_INFO, "clipdexd %s ready%s", SRV_VERSION,
	    cfg.worker ? " (worker)" : "");
	wait_for_stop();
	cluster_worker_stop(w);
	srv_stop(s);
	/* libnats's own threads and memory (process-wide: here) */
	nats_Close();
	cdx_log(CDX_LOG_INFO, "stopped cleanly");
	srv_config_free(&cfg);
	return 0;
}
