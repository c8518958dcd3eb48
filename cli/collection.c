/*
 * clipdex add, remove, status and failures: the collection and the
 * daemon's state (add --wait draws a progress bar on a terminal).
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

#include <cjson/cJSON.h>

/* "1 h 05 min", "3 min 20 s", "12 s" (static buffer). */
static const char *
eta_text(double s)
{
	static char buf[48];
	long t = (long)(s + 0.5);
	if (t >= 3600)
		snprintf(buf, sizeof(buf), "%ld h %02ld min", t / 3600,
		    t % 3600 / 60);
	else if (t >= 60)
		snprintf(buf, sizeof(buf), "%ld min %02ld s", t / 60, t % 60);
	else
		snprintf(buf, sizeof(buf), "%ld s", t);
	return buf;
}

/* add --wait on a terminal: a second connection polls the daemon's status
 * and draws a progress bar on stderr until the add returns. */
struct progress {
	const struct gopts *g;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
	pthread_t thread;
};

static void *
progress_main(void *arg)
{
	struct progress *p = arg;
	cdx_client *c = NULL;
	int drawn = 0;
	int64_t base = -1;

	if (cdx_client_open(p->g->url, &c) != 0)
		return NULL;
	cdx_client_set_timeout(c, 2000);
	const char *token = p->g->token ? p->g->token : getenv("CLIPDEX_TOKEN");
	if (token != NULL && token[0] != '\0')
		cdx_client_set_token(c, token);
	pthread_mutex_lock(&p->mu);
	while (!p->stop) {
		struct timespec dl;
		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_nsec += 250000000L;
		if (dl.tv_nsec >= 1000000000L) {
			dl.tv_sec++;
			dl.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&p->cv, &p->mu, &dl);
		if (p->stop)
			break;
		pthread_mutex_unlock(&p->mu);
		cdx_status s;
		if (cdx_get_status(c, &s) == 0) {
			if (base < 0)
				base = s.queue_done;
			int64_t done = s.queue_done - base, left = s.queue_remaining;
			int64_t total = done + left;
			int width = 30, fill = total > 0 ? (int)(width * done / total) :
			    0;
			char bar[64];
			for (int i = 0; i < width; i++)
				bar[i] = i < fill ? '#' : '.';
			bar[width] = '\0';
			fprintf(stderr, "\r[%s] %lld/%lld%s", bar, (long long)done,
			    (long long)total, s.scanning ? "+" : "");
			if (s.rate > 0)
				fprintf(stderr, " %.1f img/s", s.rate);
			if (s.eta_s >= 0 && left > 0)
				fprintf(stderr, ", %s left  ", eta_text(s.eta_s));
			else
				fputs("            ", stderr);
			drawn = 1;
		}
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	if (drawn)
		fprintf(stderr, "\r%70s\r", "");
	cdx_client_close(c);
	return NULL;
}

static int
progress_start(struct progress *p, const struct gopts *g)
{
	memset(p, 0, sizeof(*p));
	p->g = g;
	if (!isatty(STDERR_FILENO))
		return 0;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	if (pthread_create(&p->thread, NULL, progress_main, p) != 0) {
		pthread_cond_destroy(&p->cv);
		pthread_mutex_destroy(&p->mu);
		return 0;
	}
	return 1;
}

static void
progress_stop(struct progress *p, int started)
{
	if (!started)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->thread, NULL);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
}

int
cmd_add_remove(int argc, char **argv, int cmd)
{
	struct sopts o = { .g = { NULL, NULL, 30000, CLI_CONNECT_TIMEOUT_MS } };
	const char *name = cmd == OPT_ADD ? "add" : "remove";
	cdx_client *c = NULL;
	int status;

	if ((status = cli_parse_online(argc, argv, 2, cmd, &o)) != 0 || o.help) {
		if (o.help)
			cli_command_usage(stdout, name);
		goto out;
	}
	if (o.words.n == 0) {
		fprintf(stderr, "%s %s: needs a PATH (see %s %s --help)\n", cli_prog,
		    name, cli_prog, name);
		status = EXIT_USAGE;
		goto out;
	}
	if ((status = cli_open_client(&o.g, &c)) != 0)
		goto out;
	for (size_t i = 0; i < o.words.n && status == 0; i++) {
		char *abs = cli_absolute_path(o.words.v[i]);
		int rc;
		if (abs == NULL) {
			fprintf(stderr, "%s: %s: %s\n", cli_prog, o.words.v[i],
			    strerror(errno));
			status = EXIT_INPUT;
			break;
		}
		if (cmd == OPT_ADD) {
			cdx_add_result res;
			struct progress pg;
			int bar = o.wait && !o.json && progress_start(&pg, &o.g);
			rc = cdx_add(c, abs, o.wait, &res);
			progress_stop(&pg, bar);
			if (rc == 0 && o.json) {
				fputs("{\"path\":", stdout);
				cli_print_json_string(abs);
				if (o.wait)
					printf(",\"added\":%lld,\"updated\":%lld,\"unchanged\":"
					    "%lld,\"failed\":%lld}\n", (long long)res.added,
					    (long long)res.updated, (long long)res.unchanged,
					    (long long)res.failed);
				else
					fputs(",\"queued\":true}\n", stdout);
			} else if (rc == 0 && o.wait) {
				printf("%s: added %lld, updated %lld, unchanged %lld, "
				    "failed %lld\n", abs, (long long)res.added,
				    (long long)res.updated, (long long)res.unchanged,
				    (long long)res.failed);
			} else if (rc == 0) {
				printf("%s: queued\n", abs);
			}
		} else {
			int64_t removed = 0;
			rc = cdx_remove(c, abs, &removed);
			if (rc == 0 && o.json) {
				fputs("{\"path\":", stdout);
				cli_print_json_string(abs);
				printf(",\"removed\":%lld}\n", (long long)removed);
			} else if (rc == 0) {
				printf("%s: removed %lld\n", abs, (long long)removed);
			}
		}
		if (rc != 0)
			status = cli_call_failed(c, name, rc);
		free(abs);
	}
	if (status == 0)
		status = cli_finish_output();
out:
	cdx_client_close(c);
	cli_free_sopts(&o);
	return status;
}

static void
print_bytes(int64_t b)
{
	if (b >= (int64_t)1 << 30)
		printf("%.1f GiB\n", (double)b / (1 << 30));
	else
		printf("%.1f MiB\n", (double)b / (1 << 20));
}

/* "skipped   N (video 2, other 5)": the indexer's skipped files by why,
 * from the status reply's queue.skipped_by (absent from older daemons:
 * nothing is printed). */
static void
print_skipped(cdx_client *c)
{
	char *reply = NULL;
	if (cdx_call(c, "{\"op\":\"status\"}", &reply) != 0)
		return;
	cJSON *r = cJSON_Parse(reply);
	cJSON *q = cJSON_GetObjectItemCaseSensitive(r, "queue");
	cJSON *by = cJSON_GetObjectItemCaseSensitive(q, "skipped_by");
	cJSON *n = cJSON_GetObjectItemCaseSensitive(q, "skipped");
	if (cJSON_IsObject(by) && cJSON_IsNumber(n)) {
		const char *sep = " (";
		printf("skipped   %.0f", n->valuedouble);
		for (cJSON *k = by->child; k != NULL; k = k->next)
			if (cJSON_IsNumber(k) && k->valuedouble > 0) {
				printf("%s%s %.0f", sep, k->string,
				    k->valuedouble);
				sep = ", ";
			}
		printf("%s\n", sep[0] == ',' ? ")" : "");
	}
	cJSON_Delete(r);
	free(reply);
}

int
cmd_status(int argc, char **argv)
{
	struct sopts o = { .g = { NULL, NULL, 30000, CLI_CONNECT_TIMEOUT_MS } };
	cdx_client *c = NULL;
	int status, rc;

	if ((status = cli_parse_online(argc, argv, 2, OPT_STATUS, &o)) != 0 || o.help) {
		if (o.help)
			cli_command_usage(stdout, "status");
		goto out;
	}
	if ((status = cli_open_client(&o.g, &c)) != 0)
		goto out;
	if (o.json) {
		char *reply = NULL;
		rc = cdx_call(c, "{\"op\":\"status\"}", &reply);
		if (rc != 0) {
			status = cli_call_failed(c, "status", rc);
			goto out;
		}
		printf("%s\n", reply);
		free(reply);
	} else {
		cdx_status s;
		rc = cdx_get_status(c, &s);
		if (rc != 0) {
			status = cli_call_failed(c, "status", rc);
			goto out;
		}
		printf("url       %s\n", o.g.url ? o.g.url : cdx_default_url());
		printf("version   %s\n", s.version);
		printf("uptime    %.0f s\n", s.uptime_s);
		if (s.clips > 0)        /* frames are records too */
			printf("images    %lld (%lld frames of %lld video clip%s)\n",
			    (long long)s.images, (long long)s.frames,
			    (long long)s.clips, s.clips == 1 ? "" : "s");
		else
			printf("images    %lld\n", (long long)s.images);
		printf("failures  %lld\n", (long long)s.failures);
		printf("model     %s (dim %d)\n", s.model_id, s.dim);
		printf("index     %s, %lld vectors\n", s.index_kind,
		    (long long)s.index_vectors);
		/* the daemon's rate is over its last seconds; 0 when idle */
		if (s.queue_remaining == 0 && !s.scanning)
			printf("indexing  idle, %lld done\n", (long long)s.queue_done);
		else {
			printf("indexing  %lld done, %lld remaining%s",
			    (long long)s.queue_done, (long long)s.queue_remaining,
			    s.scanning ? " (scanning)" : "");
			if (s.rate > 0)
				printf(", %.1f images/s", s.rate);
			if (s.eta_s >= 0 && s.queue_remaining > 0)
				printf(", about %s left", eta_text(s.eta_s));
			printf("\n");
		}
		print_skipped(c);
		if (s.warning[0] != '\0')
			printf("warning   %s\n", s.warning);
		printf("memory    ");
		print_bytes(s.rss_bytes);
	}
	status = cli_finish_output();
out:
	cdx_client_close(c);
	cli_free_sopts(&o);
	return status;
}

int
cmd_failures(int argc, char **argv)
{
	struct sopts o = { .g = { NULL, NULL, 30000, CLI_CONNECT_TIMEOUT_MS } };
	cdx_client *c = NULL;
	cdx_failures *f = NULL;
	int status, rc;

	if ((status = cli_parse_online(argc, argv, 2, OPT_FAILURES, &o)) != 0 ||
	    o.help) {
		if (o.help)
			cli_command_usage(stdout, "failures");
		goto out;
	}
	if ((status = cli_open_client(&o.g, &c)) != 0)
		goto out;
	if ((rc = cdx_get_failures(c, o.limit, &f)) != 0) {
		status = cli_call_failed(c, "failures", rc);
		goto out;
	}
	for (size_t i = 0; i < f->n; i++) {
		const cdx_failure *x = &f->items[i];
		if (o.json) {
			fputs("{\"path\":", stdout);
			cli_print_json_string(x->path);
			fputs(",\"reason\":", stdout);
			cli_print_json_string(x->reason);
			printf(",\"size\":%lld,\"mtime\":%lld,\"when\":%lld}\n",
			    (long long)x->size, (long long)x->mtime, (long long)x->when);
		} else {
			printf("%s: %s\n", x->path, x->reason);
		}
	}
	if (!o.json)
		fprintf(stderr, "%s: %zu of %lld failures shown\n", cli_prog, f->n,
		    (long long)f->total);
	if (f->store_full)
		fprintf(stderr, "%s: the store is full: files wait for disk space "
		    "and are stored when it returns\n", cli_prog);
	status = cli_finish_output();
out:
	cdx_failures_free(f);
	cdx_client_close(c);
	cli_free_sopts(&o);
	return status;
}
