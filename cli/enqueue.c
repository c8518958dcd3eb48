/*
 * enqueue.c - clipdex enqueue: puts image locations on a cluster's work
 * queue (cluster/cluster.h), for the encoding workers (clipdexd --worker).
 */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "cli/cli.h"
#include "cluster/cluster.h"

static clu *g_clu;
static long g_queued, g_failed;

static int
queue_one(const char *path)
{
	char canon[PATH_MAX];
	cdx_error err;
	if (realpath(path, canon) == NULL) {
		fprintf(stderr, "%s: %s: cannot resolve\n", cli_prog, path);
		g_failed++;
		return 0;
	}
	if (clu_enqueue(g_clu, canon, &err) != 0) {
		fprintf(stderr, "%s: %s\n", cli_prog, err.msg);
		return -1;      /* the servers: stop */
	}
	g_queued++;
	return 0;
}

static int
visit(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	const char *base = path + ftw->base;
	if (ftw->level > 0 && base[0] == '.')   /* hidden, as the indexer */
		return type == FTW_D ? FTW_SKIP_SUBTREE : FTW_CONTINUE;
	if (type != FTW_F)
		return FTW_CONTINUE;
	return queue_one(path) ? FTW_STOP : FTW_CONTINUE;
}

int
cmd_enqueue(int argc, char **argv)
{
	clu_params p;
	const char *urls = getenv("CLIPDEX_NATS");
	long replicas = 1;
	int n_paths = 0;
	cdx_error err;
	const char **paths = calloc((size_t)argc, sizeof(*paths));

	if (paths == NULL) {
		fprintf(stderr, "%s: out of memory\n", cli_prog);
		return EXIT_INPUT;
	}
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--nats") == 0 && i + 1 < argc)
			urls = argv[++i];
		else if (strcmp(argv[i], "--replicas") == 0 && i + 1 < argc) {
			if (cli_parse_int("--replicas", argv[++i], 1, 5,
			    &replicas) != 0)
				goto usage;
		} else if (strcmp(argv[i], "-h") == 0 ||
		    strcmp(argv[i], "--help") == 0) {
			cli_command_usage(stdout, "enqueue");
			free(paths);
			return 0;
		} else if (argv[i][0] == '-' && argv[i][1] == '-') {
			fprintf(stderr, "%s: enqueue: unknown option %s\n",
			    cli_prog, argv[i]);
			goto usage;
		} else
			paths[n_paths++] = argv[i];
	}
	if (urls == NULL || n_paths == 0) {
		cli_command_usage(stderr, "enqueue");
		goto usage;
	}
	clu_default_params(&p);
	p.urls = urls;
	p.replicas = (int)replicas;
	if (clu_open(&p, &g_clu, &err) != 0) {
		fprintf(stderr, "%s: %s\n", cli_prog, err.msg);
		nats_Close();
		free(paths);
		return EXIT_UNREACHABLE;
	}
	int stopped = 0;
	for (int i = 0; i < n_paths && !stopped; i++) {
		int r = nftw(paths[i], visit, 32, FTW_PHYS | FTW_ACTIONRETVAL);
		if (r == -1) {
			fprintf(stderr, "%s: %s: not found\n", cli_prog,
			    paths[i]);
			g_failed++;
		}
		stopped = r == FTW_STOP;
	}
	free(paths);
	clu_close(g_clu);
	nats_Close();   /* the client library's own threads (the program's) */
	printf("%ld queued%s\n", g_queued, stopped ? " (stopped: the servers "
	    "failed)" : "");
	if (g_failed)
		printf("%ld not found\n", g_failed);
	return stopped ? EXIT_UNREACHABLE : g_failed ? EXIT_INPUT :
	    cli_finish_output();
usage:
	free(paths);
	return EXIT_USAGE;
}
