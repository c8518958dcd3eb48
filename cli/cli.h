/*
 * cli.h - what the files of the clipdex command line share (docs/CLI.md):
 * exit codes, the option structs, option parsing, usage texts and output
 * helpers (options.c), and one entry point per command.
 *
 *   clipdex_main.c  main() and the dispatch to commands
 *   options.c       usage texts, option parsing, output helpers
 *   search.c        search, similar
 *   collection.c    add, remove, status, failures
 *   curate.c        dupes, check, retrieve
 *   offline.c       embed, tokenize (the encoder, no daemon), and the
 *                   model loading and image embedding offline commands
 *                   share
 *   classify.c      classify (offline with --model, or through the daemon)
 *   learn.c         learn (a few-shot classifier)
 *   tags.c          tags
 *
 * The online commands use only libclipdex's public header,
 * client/clipdex.h.  Everything here reports to stderr and returns an exit
 * code; the program is single-threaded except for add's progress bar.
 */
#ifndef CDX_CLI_H
#define CDX_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "client/clipdex.h"

/* Exit codes (docs/CLI.md). */
#define EXIT_INPUT 1        /* an input could not be read */
#define EXIT_DAEMON 1       /* the daemon refused or failed the request */
#define EXIT_USAGE 2
#define EXIT_MODEL 3        /* the model or vocabulary did not load */
#define EXIT_UNREACHABLE 4  /* no connection or no reply in time */
#define EXIT_CHECK_EXACT 5  /* check: a file with the same bytes is indexed */
#define EXIT_CHECK_NEAR 6   /* check: no same bytes, but a near duplicate */

#define CLI_CONNECT_TIMEOUT_MS 3000

extern const char *const cli_prog;

/* A growable list of borrowed or owned strings. */
struct strlist {
	char **v;
	size_t n, cap;
};

/* Options of every daemon command. */
struct gopts {
	const char *url;
	const char *token;
	int timeout_ms;
	int connect_ms;
};

/* The options of search, similar, add, remove, status, failures. */
struct sopts {
	struct gopts g;
	cdx_query q;
	int json, paths, wait, limit, help;
	int has_after, has_before;
	int64_t after, before;
	struct strlist words;    /* positional arguments */
	struct strlist nots;     /* --not TEXT */
	struct strlist images;   /* --image FILE */
	struct strlist tags;     /* --tag TAG */
	struct strlist not_tags; /* --not-tag TAG */
};

/* Which command cli_parse_online() parses for. */
enum { OPT_SEARCH = 1, OPT_SIMILAR = 2, OPT_ADD = 4, OPT_REMOVE = 8,
	OPT_STATUS = 16, OPT_FAILURES = 32 };

/* ---- options.c ---- */

/* The overview (clipdex --help). */
void cli_usage(FILE *f);
/* {name, usage text} pairs of the daemon commands, NULL-terminated. */
extern const char *const cli_online_usage[];
/* The usage of one daemon command with the global options. */
void cli_command_usage(FILE *f, const char *cmd);

/* Appends s (not copied); CDX_ENOMEM. */
int cli_strlist_push(struct strlist *l, char *s);
/* Reads FILE (or stdin for "-") one text per line into l; the strings are
 * owned by the list afterwards.  Prints why not; CDX_EIO, CDX_ENOMEM. */
int cli_read_lines(const char *path, struct strlist *l);

/* Option values; each prints why a value is refused and returns -1. */
int cli_parse_int(const char *opt, const char *s, long lo, long hi,
    long *out);
int cli_parse_float(const char *opt, const char *s, double lo, double hi,
    float *out);
/* Seconds since the epoch, or YYYY-MM-DD[(T| )HH:MM[:SS]] as UTC. */
int cli_parse_time(const char *opt, const char *s, int64_t *out);
/* path made absolute: realpath() when it exists, else lexically.
 * Malloc'd; NULL when out of memory. */
char *cli_absolute_path(const char *path);

/* Reads one global option at argv[*i]; returns 1 if it was one, 0 if not,
 * -1 on a usage error. */
int cli_global_opt(int argc, char **argv, int *i, struct gopts *g);
/* Parses the options of daemon command cmd (argv[start..]); returns 0 or
 * an exit code. */
int cli_parse_online(int argc, char **argv, int start, int cmd,
    struct sopts *o);
void cli_free_sopts(struct sopts *o);

/* Opens the client with the global options; prints why it could not and
 * returns an exit code. */
int cli_open_client(const struct gopts *g, cdx_client **c);
/* Reports a failed call and gives the exit status for it. */
int cli_call_failed(cdx_client *c, const char *what, int rc);

/* Prints s as a JSON string. */
void cli_print_json_string(const char *s);
/* Flushes stdout; EXIT_INPUT (printed) when the output could not be
 * written. */
int cli_finish_output(void);

/* ---- offline.c: what the offline commands share ---- */

struct clip_model;
struct clip_ctx;

/* Images encoded at once. */
#define CLI_IMAGE_BATCH 8

/* Loads the model folder dir at a precision (enum clip_precision) with a
 * context for CLI_IMAGE_BATCH images; says what runs on stderr.  Returns
 * 0 or EXIT_MODEL (printed). */
int cli_load_model(const char *dir, int precision, struct clip_model **m,
    struct clip_ctx **ctx);

/* Where each embedding goes: input is the text or path, index its place
 * in the list. */
typedef void (*cli_emit_fn)(void *arg, const char *kind, const char *input,
    size_t index, const float *e, int dim);

/* Decodes, preprocesses (fast mode unless exact) and encodes the images in
 * batches, calling emit for each embedding in input order ("image"); an
 * image that cannot be read or decoded is reported on stderr and skipped.
 * Returns 0, or EXIT_INPUT when any image failed. */
int cli_embed_images(struct clip_ctx *ctx, const struct clip_model *m,
    struct strlist *images, int exact, cli_emit_fn emit, void *arg);

/* ---- the commands: argv[1] is the command; each returns an exit code ---- */

int cmd_query(int argc, char **argv, int cmd);    /* search, similar */
int cmd_add_remove(int argc, char **argv, int cmd);
int cmd_status(int argc, char **argv);
int cmd_failures(int argc, char **argv);
int cmd_dupes(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_retrieve(int argc, char **argv);
int cmd_learn(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_tags(int argc, char **argv);             /* tags.c */
int cmd_enqueue(int argc, char **argv);          /* enqueue.c */

/* classify.c, for classify and tags define: the labels of --labels or
 * --labels-file (classify.h's rules; *labels is one allocation), and the
 * templates of --templates NAME and each --template (checked; *t is
 * malloc'd, its strings static or argv's).  Each returns 0 or an exit
 * code (printed). */
int cli_read_labels(const char *labels_text, const char *labels_file,
    char ***labels, size_t *n);
int cli_collect_templates(const char *named_set, const struct strlist *tmpl,
    const char ***t, size_t *n);
int cmd_tokenize(int argc, char **argv);
int cmd_classify(int argc, char **argv);

#endif
