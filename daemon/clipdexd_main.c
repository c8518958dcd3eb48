/*
 * clipdexd - the clipdex daemon.  See `clipdexd --help` and
 * docs/PROTOCOL.md.  Runs in the foreground (systemd, a terminal or a test
 * starts it); logs to stderr, one line per event.
 *
 * Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 1 when it cannot
 * start (bad model, store in use, address taken), 2 for usage errors.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/cdx.h"
#include "common/threads.h"
#include "daemon/daemon.h"

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

int
main(int argc, char **argv)
{
	srv_config cfg;
	srv *s = NULL;
	cdx_error err;
	sigset_t sigs;
	int rc, sig;

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
	/* The libraries' thread counts, for the whole process, before any
	 * thread starts. */
	int threads = cdx_threads_set(cfg.threads);
	cdx_log(CDX_LOG_INFO, "%d threads for OpenBLAS and oneDNN", threads);

	/* Every thread started from here on inherits the blocked signals; this
	 * thread takes them with sigwait. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if ((rc = srv_start(&cfg, &s, &err)) != 0) {
		cdx_log(CDX_LOG_ERROR, "cannot start: %s", err.msg);
		srv_config_free(&cfg);
		return 1;
	}
	cdx_log(CDX_LOG_INFO, "clipdexd %s ready", SRV_VERSION);
	for (;;) {
		if (sigwait(&sigs, &sig) != 0)
			continue;
		if (sig == SIGHUP)
			continue;       /* reserved: reload */
		break;
	}
	cdx_log(CDX_LOG_INFO, "%s: shutting down", sig == SIGINT ? "SIGINT" :
	    "SIGTERM");
	srv_stop(s);
	cdx_log(CDX_LOG_INFO, "stopped cleanly");
	srv_config_free(&cfg);
	return 0;
}
