/*
 * clipdex - the command line (docs/CLI.md): main() and the dispatch to
 * the commands (cli/cli.h lists the files).
 *
 * Commands that talk to clipdexd, through libclipdex (client/clipdex.h):
 *   clipdex search QUERY... [-k N] [--json|--paths] ...
 *   clipdex similar FILE|id:N|@FILE, add PATH..., remove PATH..., status,
 *   failures, dupes, check FILE, retrieve
 *
 * Offline commands (no daemon needed): embed, tokenize, classify --model.
 *
 * Exit codes: 0 success, 1 some input failed or the daemon returned an
 * error, 2 usage error, 3 could not load the model or vocabulary, 4 cannot
 * reach the daemon.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"


static int
dispatch(int argc, char **argv)
{
	if (argc < 2) {
		cli_usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "search") == 0)
		return cmd_query(argc, argv, OPT_SEARCH);
	if (strcmp(argv[1], "similar") == 0)
		return cmd_query(argc, argv, OPT_SIMILAR);
	if (strcmp(argv[1], "add") == 0)
		return cmd_add_remove(argc, argv, OPT_ADD);
	if (strcmp(argv[1], "remove") == 0)
		return cmd_add_remove(argc, argv, OPT_REMOVE);
	if (strcmp(argv[1], "status") == 0)
		return cmd_status(argc, argv);
	if (strcmp(argv[1], "failures") == 0)
		return cmd_failures(argc, argv);
	if (strcmp(argv[1], "dupes") == 0)
		return cmd_dupes(argc, argv);
	if (strcmp(argv[1], "check") == 0)
		return cmd_check(argc, argv);
	if (strcmp(argv[1], "retrieve") == 0)
		return cmd_retrieve(argc, argv);
	if (strcmp(argv[1], "learn") == 0)
		return cmd_learn(argc, argv);
	if (strcmp(argv[1], "tags") == 0)
		return cmd_tags(argc, argv);
	if (strcmp(argv[1], "embed") == 0)
		return cmd_embed(argc, argv);
	if (strcmp(argv[1], "enqueue") == 0)
		return cmd_enqueue(argc, argv);
	if (strcmp(argv[1], "tokenize") == 0)
		return cmd_tokenize(argc, argv);
	if (strcmp(argv[1], "classify") == 0)
		return cmd_classify(argc, argv);
	if (strcmp(argv[1], "help") == 0 && argc > 2 &&
	    strcmp(argv[2], "embed") != 0 && strcmp(argv[2], "tokenize") != 0) {
		for (int i = 0; cli_online_usage[i] != NULL; i += 2)
			if (strcmp(cli_online_usage[i], argv[2]) == 0) {
				cli_command_usage(stdout, argv[2]);
				return 0;
			}
		fprintf(stderr, "%s: unknown command '%s'\n", cli_prog, argv[2]);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		cli_usage(stdout);
		return 0;
	}
	fprintf(stderr, "%s: unknown command '%s'\n", cli_prog, argv[1]);
	cli_usage(stderr);
	return EXIT_USAGE;
}

int
main(int argc, char **argv)
{
	char **moved = NULL;
	int first = 1, status;

	/* Global options before the command (clipdex --url U search ...) move
	 * after it. */
	while (first < argc && strncmp(argv[first], "--", 2) == 0 &&
	    strcmp(argv[first], "--help") != 0) {
		struct gopts g = { 0 };
		int i = first, r = cli_global_opt(argc, argv, &i, &g);
		if (r == 0)
			fprintf(stderr, "%s: unknown option '%s'\n", cli_prog, argv[first]);
		if (r <= 0)
			return EXIT_USAGE;
		first = i + 1;
	}
	if (first > 1) {
		if (first >= argc) {
			cli_usage(stderr);
			return EXIT_USAGE;
		}
		if (strcmp(argv[first], "embed") == 0 ||
		    strcmp(argv[first], "tokenize") == 0) {
			fprintf(stderr, "%s: %s works offline: --url, --timeout, "
			    "--connect-timeout and --token do not apply\n", cli_prog,
			    argv[first]);
			return EXIT_USAGE;
		}
		if ((moved = malloc(sizeof(*moved) * ((size_t)argc + 1))) == NULL)
			return EXIT_INPUT;
		moved[0] = argv[0];
		moved[1] = argv[first];
		memcpy(moved + 2, argv + 1, sizeof(*moved) * (size_t)(first - 1));
		memcpy(moved + first + 1, argv + first + 1,
		    sizeof(*moved) * (size_t)(argc - first - 1));
		moved[argc] = NULL;
		argv = moved;
	}
	status = dispatch(argc, argv);
	free(moved);
	return status;
}

