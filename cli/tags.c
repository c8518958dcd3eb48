/*
 * clipdex tags (define, list, show, delete, counts): the daemon's tag sets
 * (docs/CLI.md).  Labels and templates are read as classify reads them
 * (cli_read_labels, cli_collect_templates) and sent as lists.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

/* The options of tags. */
struct topts {
	struct gopts g;
	int json, help, multi, has_threshold;
	float threshold;
	const char *labels, *labels_file, *template_set;
	struct strlist templates;       /* --template (borrowed) */
	struct strlist words;           /* positional */
	char **label_v;                 /* parsed (one allocation) */
	size_t n_labels;
	const char **tmpl_v;            /* --templates NAME's, then --template */
	size_t n_tmpl;
};

static void
free_topts(struct topts *o)
{
	free(o->templates.v);
	free(o->words.v);
	free(o->label_v);
	free(o->tmpl_v);
}

/* Parses argv[start..] for `tags`; `allowed` lists the options it takes,
 * separated by spaces. */
static int
parse(int argc, char **argv, int start, const char *allowed, struct topts *o)
{
	for (int i = start; i < argc; i++) {
		char *a = argv[i], name[64];
		const char *val = NULL, *eq = strchr(a, '=');
		if (a[0] != '-' || strcmp(a, "-") == 0) {
			if (cli_strlist_push(&o->words, a) != 0)
				return EXIT_INPUT;
			continue;
		}
		int g = cli_global_opt(argc, argv, &i, &o->g);
		if (g < 0)
			return EXIT_USAGE;
		if (g > 0)
			continue;
		if (eq != NULL && a[1] == '-') {
			snprintf(name, sizeof(name), "%.*s", (int)(eq - a), a);
			val = eq + 1;
		} else {
			snprintf(name, sizeof(name), "%s", a);
		}
		char pat[72], all[256];
		snprintf(pat, sizeof(pat), " %s ", name);
		snprintf(all, sizeof(all), " -h --help %s ", allowed);
		if (strstr(all, pat) == NULL) {
			fprintf(stderr, "%s: unknown option '%s' (see %s tags --help)\n",
			    cli_prog, name, cli_prog);
			return EXIT_USAGE;
		}
		int takes = strcmp(name, "--json") && strcmp(name, "--multi") &&
		    strcmp(name, "-h") && strcmp(name, "--help");
		if (takes && val == NULL) {
			if (i + 1 >= argc) {
				fprintf(stderr, "%s: %s needs a value\n", cli_prog, name);
				return EXIT_USAGE;
			}
			val = argv[++i];
		} else if (!takes && val != NULL) {
			fprintf(stderr, "%s: %s takes no value\n", cli_prog, name);
			return EXIT_USAGE;
		}
		if (!strcmp(name, "-h") || !strcmp(name, "--help"))
			o->help = 1;
		else if (!strcmp(name, "--json"))
			o->json = 1;
		else if (!strcmp(name, "--multi"))
			o->multi = 1;
		else if (!strcmp(name, "--labels"))
			o->labels = val;
		else if (!strcmp(name, "--labels-file"))
			o->labels_file = val;
		else if (!strcmp(name, "--template")) {
			if (cli_strlist_push(&o->templates, (char *)val) != 0)
				return EXIT_INPUT;
		} else if (!strcmp(name, "--templates"))
			o->template_set = val;
		else if (!strcmp(name, "--threshold")) {
			if (cli_parse_float(name, val, 0.0, 1.0, &o->threshold) != 0)
				return EXIT_USAGE;
			o->has_threshold = 1;
		}
	}
	return 0;
}

/* ---- tags ---- */

static int
tags_define(cdx_client *c, struct topts *o)
{
	int64_t tagged = 0;
	int rc;

	if (o->words.n != 1) {
		fprintf(stderr, "%s tags define: needs one NAME\n", cli_prog);
		return EXIT_USAGE;
	}
	cdx_tagset_def d = {
		.name = o->words.v[0],
		.labels = (const char *const *)o->label_v, .n_labels = o->n_labels,
		.templates = o->tmpl_v, .n_templates = o->n_tmpl,
		.has_threshold = o->has_threshold, .threshold = o->threshold,
		.multi = o->multi,
	};
	if ((rc = cdx_tags_define(c, &d, &tagged)) != 0)
		return cli_call_failed(c, "tags define", rc);
	if (o->json) {
		printf("{\"name\":");
		cli_print_json_string(d.name);
		printf(",\"labels\":%zu,\"tagged\":%lld}\n", d.n_labels,
		    (long long)tagged);
	} else {
		printf("tag set %s: %zu labels, %lld images tagged\n", d.name,
		    d.n_labels, (long long)tagged);
	}
	return 0;
}

static void
print_set(const cdx_tagset *s, int json, int detail)
{
	if (json) {
		printf("{\"name\":");
		cli_print_json_string(s->name);
		printf(",\"origin\":\"%s\",\"mode\":\"%s\",\"multi\":%s,"
		    "\"threshold\":%.6g,\"model\":", s->origin, s->sigmoid ?
		    "sigmoid" : "softmax", s->multi ? "true" : "false",
		    s->threshold);
		cli_print_json_string(s->model);
		printf(",\"current\":%s,\"labels\":[", s->current ? "true" : "false");
		for (size_t k = 0; k < s->n_labels; k++) {
			if (k)
				putchar(',');
			if (s->labels[k].images < 0) {
				cli_print_json_string(s->labels[k].label);
				continue;
			}
			printf("{\"label\":");
			cli_print_json_string(s->labels[k].label);
			printf(",\"images\":%lld}", (long long)s->labels[k].images);
		}
		printf("]");
		if (detail) {
			printf(",\"templates\":[");
			for (size_t k = 0; k < s->n_templates; k++) {
				if (k)
					putchar(',');
				cli_print_json_string(s->templates[k]);
			}
			printf("]");
		}
		printf("}\n");
		return;
	}
	printf("%s  %s, %s%s, threshold %.2f, %zu labels%s\n", s->name,
	    s->origin, s->sigmoid ? "sigmoid" : "softmax",
	    s->multi ? " multi-label" : "", s->threshold, s->n_labels,
	    s->current ? "" : "  (made by another model: tags nothing)");
	if (!detail)
		return;
	printf("model: %s\n", s->model);
	for (size_t k = 0; k < s->n_labels; k++)
		printf("  %8lld  %s\n", (long long)s->labels[k].images,
		    s->labels[k].label);
	for (size_t k = 0; k < s->n_templates; k++)
		printf("  template: %s\n", s->templates[k]);
}

int
cmd_tags(int argc, char **argv)
{
	struct topts o = { .g = { NULL, NULL, 600000, CLI_CONNECT_TIMEOUT_MS } };
	const char *sub = "";
	cdx_client *c = NULL;
	cdx_tagsets *sets = NULL;
	cdx_tag_counts *counts = NULL;
	int status, rc;

	/* the subcommand: the first word (global options may come first,
	 * moved after the command by main) */
	for (int i = 2; i < argc && sub[0] == '\0'; i++) {
		struct gopts g = { 0 };
		int k = i;
		if (argv[i][0] != '-')
			sub = argv[i];
		else if (cli_global_opt(argc, argv, &k, &g) > 0)
			i = k;
		else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
			sub = argv[i];
	}
	const char *allowed = strcmp(sub, "define") == 0 ? "--json --labels "
	    "--labels-file --template --templates --threshold --multi" :
	    "--json";

	if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0) {
		cli_command_usage(stdout, "tags");
		return 0;
	}
	if (strcmp(sub, "define") && strcmp(sub, "list") && strcmp(sub, "show")
	    && strcmp(sub, "delete") && strcmp(sub, "counts")) {
		fprintf(stderr, "%s tags: needs define, list, show, delete or counts "
		    "(see %s tags --help)\n", cli_prog, cli_prog);
		return EXIT_USAGE;
	}
	if ((status = parse(argc, argv, 2, allowed, &o)) != 0 ||
	    o.help) {
		if (o.help)
			cli_command_usage(stdout, "tags");
		goto out;
	}
	/* words[0] is the subcommand */
	memmove(o.words.v, o.words.v + 1, --o.words.n * sizeof(*o.words.v));
	size_t want = strcmp(sub, "list") == 0 ? 0 : strcmp(sub, "counts") == 0 ?
	    o.words.n : 1;
	if (o.words.n != want || want > 1) {
		fprintf(stderr, "%s tags %s: %s\n", cli_prog, sub, want == 0 ?
		    "takes no arguments" : "needs one NAME");
		status = EXIT_USAGE;
		goto out;
	}
	if (strcmp(sub, "define") == 0 &&
	    ((status = cli_read_labels(o.labels, o.labels_file, &o.label_v,
	    &o.n_labels)) != 0 || (status = cli_collect_templates(o.template_set,
	    &o.templates, &o.tmpl_v, &o.n_tmpl)) != 0))
		goto out;
	if ((status = cli_open_client(&o.g, &c)) != 0)
		goto out;
	const char *name = o.words.n ? o.words.v[0] : NULL;
	if (strcmp(sub, "define") == 0) {
		status = tags_define(c, &o);
		goto out;
	} else if (strcmp(sub, "list") == 0 || strcmp(sub, "show") == 0) {
		int show = sub[0] == 's';
		rc = show ? cdx_tags_show(c, name, &sets) : cdx_tags_list(c, &sets);
		if (rc != 0) {
			status = cli_call_failed(c, show ? "tags show" : "tags list", rc);
			goto out;
		}
		if (sets->n == 0 && !o.json)
			fprintf(stderr, "%s: no tag sets (clipdex tags define NAME "
			    "--labels ...)\n", cli_prog);
		for (size_t i = 0; i < sets->n; i++)
			print_set(&sets->sets[i], o.json, show);
	} else if (strcmp(sub, "delete") == 0) {
		if ((rc = cdx_tags_delete(c, name)) != 0) {
			status = cli_call_failed(c, "tags delete", rc);
			goto out;
		}
		if (!o.json)
			printf("tag set %s deleted\n", name);
	} else {
		if ((rc = cdx_tags_counts(c, name, &counts)) != 0) {
			status = cli_call_failed(c, "tags counts", rc);
			goto out;
		}
		for (size_t i = 0; i < counts->n; i++) {
			const cdx_tag_count *t = &counts->counts[i];
			if (o.json) {
				printf("{\"set\":");
				cli_print_json_string(t->set);
				printf(",\"label\":");
				cli_print_json_string(t->label);
				printf(",\"images\":%lld}\n", (long long)t->images);
			} else {
				printf("%8lld  %s/%s\n", (long long)t->images, t->set,
				    t->label);
			}
		}
	}
	status = cli_finish_output();
out:
	cdx_tagsets_free(sets);
	cdx_tag_counts_free(counts);
	cdx_client_close(c);
	free_topts(&o);
	return status;
}
