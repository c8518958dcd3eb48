/*
 * clipdex learn: a few-shot classifier from example images (docs/CLI.md,
 * docs/CLASSIFY.md), on libclipdex's cdx_learn().
 *
 *   clipdex learn NAME --positive id:12,id:40,@a.jpg,photos/good/
 *                      [--negative id:7,photos/bad/] [--threshold P]
 *   clipdex learn NAME --refit     (again, from the examples kept)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

/* The examples of one class, from comma-separated lists. */
struct exlist {
	cdx_term *v;
	size_t n, cap;
	struct strlist owned;   /* strings the terms point into */
};

static int
ex_push(struct exlist *l, cdx_term t)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		cdx_term *v = realloc(l->v, cap * sizeof(*v));
		if (v == NULL)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = t;
	return 0;
}

static void
ex_free(struct exlist *l)
{
	for (size_t i = 0; i < l->owned.n; i++)
		free(l->owned.v[i]);
	free(l->owned.v);
	free(l->v);
}

/* One example: id:N (an indexed image), @FILE (a local image, uploaded)
 * or a path on the daemon's machine, made absolute here (an indexed image
 * or a folder of them). */
static int
parse_example(const char *opt, char *s, struct exlist *l)
{
	cdx_term t = { .weight = 1.0f };

	if (strncmp(s, "id:", 3) == 0) {
		cdx_terms *p = NULL;
		if (cdx_query_parse(s, &p) != 0 || p->n != 1 ||
		    p->terms[0].kind != CDX_TERM_ID) {
			fprintf(stderr, "%s: %s: '%s' is not an image id\n", cli_prog, opt,
			    s);
			cdx_terms_free(p);
			return -1;
		}
		t.kind = CDX_TERM_ID;
		t.id = p->terms[0].id;
		cdx_terms_free(p);
	} else if (s[0] == '@') {
		if (s[1] == '\0') {
			fprintf(stderr, "%s: %s: '@' names no file\n", cli_prog, opt);
			return -1;
		}
		t.kind = CDX_TERM_FILE;
		t.text = s + 1;
	} else {
		char *abs = cli_absolute_path(s);
		if (abs == NULL || cli_strlist_push(&l->owned, abs) != 0) {
			fprintf(stderr, "%s: %s: %s\n", cli_prog, s, strerror(errno));
			free(abs);
			return -1;
		}
		t.kind = CDX_TERM_PATH;
		t.text = abs;
	}
	if (ex_push(l, t) != 0) {
		fprintf(stderr, "%s: out of memory\n", cli_prog);
		return -1;
	}
	return 0;
}

/* Splits a list at commas (empty items are refused). */
static int
parse_list(const char *opt, char *val, struct exlist *l)
{
	char *save = NULL, *item;

	if (val[0] == '\0' || val[0] == ',' || val[strlen(val) - 1] == ',' ||
	    strstr(val, ",,") != NULL) {
		fprintf(stderr, "%s: %s wants a comma-separated list of id:N, @FILE "
		    "and paths, not '%s'\n", cli_prog, opt, val);
		return -1;
	}
	for (item = strtok_r(val, ",", &save); item != NULL;
	    item = strtok_r(NULL, ",", &save))
		if (parse_example(opt, item, l) != 0)
			return -1;
	return 0;
}

static void
print_json(const char *name, const cdx_learn_result *r)
{
	printf("{\"name\":");
	cli_print_json_string(name);
	printf(",\"n_pos\":%lld,\"n_neg\":%lld,\"unlabeled_negatives\":%s,"
	    "\"folds\":%d,\"cv_accuracy\":%.6f,\"threshold\":%.6g,"
	    "\"tagged\":%lld}\n", (long long)r->n_pos, (long long)r->n_neg,
	    r->unlabeled_negatives ? "true" : "false", r->folds, r->cv_accuracy,
	    r->threshold, (long long)r->tagged);
}

static void
print_text(const char *name, const cdx_learn_result *r, int refit)
{
	printf("%s %s from %lld positive and %lld negative images\n", refit ?
	    "refitted" : "learned", name, (long long)r->n_pos,
	    (long long)r->n_neg);
	if (r->missing > 0)
		printf("  %lld of its example paths have no indexed image now\n",
		    (long long)r->missing);
	if (r->unlabeled_negatives)
		printf("  no negatives were given: the negatives are random unlabeled "
		    "images of the collection\n  (some may be positives; --negative "
		    "gives a better classifier)\n");
	printf("  cross-validated accuracy %.3f (%d folds)\n", r->cv_accuracy,
	    r->folds);
	printf("  tags %lld images (probability >= %.2f)\n", (long long)r->tagged,
	    r->threshold);
	printf("  search: clipdex search --learned %s\n", name);
}

int
cmd_learn(int argc, char **argv)
{
	struct gopts g = { NULL, NULL, 600000, CLI_CONNECT_TIMEOUT_MS };
	struct exlist pos = { 0 }, neg = { 0 };
	cdx_learn_req req = { 0 };
	cdx_learn_result res;
	cdx_client *c = NULL;
	const char *name = NULL;
	int json = 0, status = EXIT_USAGE, rc;

	for (int i = 2; i < argc; i++) {
		char *a = argv[i];
		int r = cli_global_opt(argc, argv, &i, &g);
		if (r < 0)
			goto out;
		if (r > 0)
			continue;
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			cli_command_usage(stdout, "learn");
			status = 0;
			goto out;
		}
		if (strcmp(a, "--json") == 0) {
			json = 1;
			continue;
		}
		if (strcmp(a, "--refit") == 0) {
			req.refit = 1;
			continue;
		}
		if (a[0] != '-') {
			if (name != NULL) {
				fprintf(stderr, "%s: learn takes one NAME ('%s' is a "
				    "second)\n", cli_prog, a);
				goto out;
			}
			name = a;
			continue;
		}
		if (strcmp(a, "--positive") != 0 && strcmp(a, "--negative") != 0 &&
		    strcmp(a, "--threshold") != 0) {
			fprintf(stderr, "%s: unknown option '%s' (see %s learn --help)\n",
			    cli_prog, a, cli_prog);
			goto out;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "%s: %s needs a value\n", cli_prog, a);
			goto out;
		}
		char *val = argv[++i];
		if (strcmp(a, "--threshold") == 0) {
			if (cli_parse_float(a, val, 0.0, 1.0, &req.threshold) != 0)
				goto out;
			req.has_threshold = 1;
		} else if (parse_list(a, val, a[2] == 'p' ? &pos : &neg) != 0) {
			goto out;
		}
	}
	if (name == NULL || (pos.n == 0) != req.refit) {
		fprintf(stderr, "%s: learn needs a NAME and either --positive "
		    "examples or --refit (see %s learn --help)\n", cli_prog,
		    cli_prog);
		goto out;
	}
	if (req.refit && neg.n > 0) {
		fprintf(stderr, "%s: --refit takes no examples\n", cli_prog);
		goto out;
	}
	req.name = name;
	req.positive = pos.v;
	req.n_positive = pos.n;
	req.negative = neg.v;
	req.n_negative = neg.n;
	if ((status = cli_open_client(&g, &c)) != 0)
		goto out;
	if ((rc = cdx_learn(c, &req, &res)) != 0) {
		status = cli_call_failed(c, "learn", rc);
		goto out;
	}
	if (json)
		print_json(name, &res);
	else
		print_text(name, &res, req.refit);
	status = cli_finish_output();
out:
	cdx_client_close(c);
	ex_free(&pos);
	ex_free(&neg);
	return status;
}
