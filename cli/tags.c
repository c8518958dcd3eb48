/*
 * clipdex tags (define, list, show, delete, counts) and clipdex classify
 * against the daemon (--id, --path, --image; the offline --model form is
 * in classify.c).  Labels are parsed here with the classify module's
 * parser, as offline (cls_labels_parse), and sent as a list.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classify/classify.h"
#include "cli/cli.h"
#include "common/file.h"

/* The options of tags and classify. */
struct topts {
	struct gopts g;
	int json, help, multi, has_threshold, top, exact;
	float threshold;
	const char *labels, *labels_file, *template_set, *set;
	struct strlist templates;
	struct strlist words;           /* positional */
	cdx_term *items;                /* classify: --id, --path, --image */
	size_t n_items;
	char **label_v;                 /* parsed (one allocation) */
	size_t n_labels;
};

static void
free_topts(struct topts *o)
{
	free(o->templates.v);
	free(o->words.v);
	for (size_t i = 0; i < o->n_items; i++)
		if (o->items[i].kind == CDX_TERM_PATH)
			free((char *)o->items[i].text);
	free(o->items);
	free(o->label_v);
}

static int
push_item(struct topts *o, cdx_term t)
{
	cdx_term *v = realloc(o->items, (o->n_items + 1) * sizeof(*v));
	if (v == NULL)
		return -1;
	o->items = v;
	o->items[o->n_items++] = t;
	return 0;
}

/* Parses argv[start..] for command `cmd` ("classify", "tags define", ...);
 * `allowed` lists the options it takes, separated by spaces. */
static int
parse(int argc, char **argv, int start, const char *cmd, const char *allowed,
    struct topts *o)
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
		if (eq != NULL && a[1] == '-')
			snprintf(name, sizeof(name), "%.*s", (int)(eq - a), a);
		else
			snprintf(name, sizeof(name), "%s", a);
		if (eq != NULL && a[1] == '-')
			val = eq + 1;
		char pat[72];
		snprintf(pat, sizeof(pat), " %s ", name);
		char all[512];
		snprintf(all, sizeof(all), " -h --help %s ", allowed);
		const char *hit = strstr(all, pat);
		if (hit == NULL) {
			fprintf(stderr, "%s: unknown option '%s' (see %s %s --help)\n",
			    cli_prog, name, cli_prog, cmd);
			return EXIT_USAGE;
		}
		int takes = strcmp(name, "--json") && strcmp(name, "--multi") &&
		    strcmp(name, "--exact") && strcmp(name, "-h") &&
		    strcmp(name, "--help");
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
		long v;
		int bad = 0;
		if (!strcmp(name, "-h") || !strcmp(name, "--help")) {
			o->help = 1;
		} else if (!strcmp(name, "--json")) {
			o->json = 1;
		} else if (!strcmp(name, "--multi")) {
			o->multi = 1;
		} else if (!strcmp(name, "--exact")) {
			o->exact = 1;
		} else if (!strcmp(name, "--labels")) {
			o->labels = val;
		} else if (!strcmp(name, "--labels-file")) {
			o->labels_file = val;
		} else if (!strcmp(name, "--template")) {
			bad = cli_strlist_push(&o->templates, (char *)val) != 0;
		} else if (!strcmp(name, "--templates")) {
			o->template_set = val;
		} else if (!strcmp(name, "--set")) {
			o->set = val;
		} else if (!strcmp(name, "--threshold")) {
			bad = cli_parse_float(name, val, 0.0, 1.0, &o->threshold);
			o->has_threshold = 1;
		} else if (!strcmp(name, "--top")) {
			bad = cli_parse_int(name, val, 1, CLS_MAX_LABELS, &v);
			o->top = (int)v;
		} else if (!strcmp(name, "--id")) {
			bad = cli_parse_int(name, val, 1, INT64_MAX, &v) ||
			    push_item(o, (cdx_term){ .kind = CDX_TERM_ID,
			    .id = (uint64_t)v }) != 0;
		} else if (!strcmp(name, "--path")) {
			char *abs = cli_absolute_path(val);
			bad = abs == NULL || push_item(o, (cdx_term){
			    .kind = CDX_TERM_PATH, .text = abs }) != 0;
			if (bad && abs != NULL)
				free(abs);
		} else if (!strcmp(name, "--image")) {
			bad = push_item(o, (cdx_term){ .kind = CDX_TERM_FILE,
			    .text = val }) != 0;
		}
		if (bad)
			return EXIT_USAGE;
	}
	return 0;
}

/* --labels or --labels-file into o->label_v, by cls's parser. */
static int
read_labels(struct topts *o, const char *cmd)
{
	cdx_error err;
	char *text = NULL;
	int rc;

	if ((o->labels != NULL) == (o->labels_file != NULL)) {
		fprintf(stderr, "%s %s: needs --labels or --labels-file (one of "
		    "them)\n", cli_prog, cmd);
		return EXIT_USAGE;
	}
	if (o->labels_file != NULL) {
		size_t len;
		if ((rc = cdx_read_file(o->labels_file, 1 << 24, &text, &len, &err))
		    != 0) {
			fprintf(stderr, "%s: %s\n", cli_prog, err.msg);
			return EXIT_INPUT;
		}
	}
	rc = cls_labels_parse(text ? text : o->labels, text != NULL, &o->label_v,
	    &o->n_labels, &err);
	free(text);
	if (rc != 0) {
		fprintf(stderr, "%s %s: %s\n", cli_prog, cmd, err.msg);
		return EXIT_USAGE;
	}
	return 0;
}

static void
print_label_probs(const cdx_label_prob *l, size_t n)
{
	printf("\"labels\":[");
	for (size_t k = 0; k < n; k++) {
		printf("%s{\"label\":", k ? "," : "");
		cli_print_json_string(l[k].label);
		printf(",\"prob\":%.6g}", l[k].prob);
	}
	printf("]");
}

/* ---- classify against the daemon ---- */

int
cmd_classify_daemon(int argc, char **argv)
{
	struct topts o = { .g = { NULL, NULL, 120000, CLI_CONNECT_TIMEOUT_MS } };
	cdx_classify_result *r = NULL;
	cdx_client *c = NULL;
	int status, rc;

	if ((status = parse(argc, argv, 2, "classify", "--json --labels "
	    "--labels-file --template --templates --set --top --exact --id "
	    "--path --image", &o)) != 0 || o.help) {
		if (o.help)
			cli_command_usage(stdout, "classify");
		goto out;
	}
	if (o.words.n > 0) {
		fprintf(stderr, "%s classify: '%s': images are given with --id, "
		    "--path or --image (or offline, with --model DIR)\n", cli_prog,
		    o.words.v[0]);
		status = EXIT_USAGE;
		goto out;
	}
	if (o.n_items == 0) {
		fprintf(stderr, "%s classify: needs --id N, --path P or --image "
		    "FILE (see %s classify --help)\n", cli_prog, cli_prog);
		status = EXIT_USAGE;
		goto out;
	}
	if (o.set == NULL && (status = read_labels(&o, "classify")) != 0)
		goto out;
	if (o.set != NULL && (o.labels || o.labels_file || o.templates.n ||
	    o.template_set)) {
		fprintf(stderr, "%s classify: --set takes the set's labels and "
		    "templates\n", cli_prog);
		status = EXIT_USAGE;
		goto out;
	}
	cdx_classify_req q = {
		.items = o.items, .n_items = o.n_items,
		.labels = (const char *const *)o.label_v, .n_labels = o.n_labels,
		.templates = (const char *const *)o.templates.v,
		.n_templates = o.templates.n, .template_set = o.template_set,
		.set = o.set, .top = o.top, .exact = o.exact,
	};
	if ((status = cli_open_client(&o.g, &c)) != 0)
		goto out;
	if ((rc = cdx_classify(c, &q, &r)) != 0) {
		status = cli_call_failed(c, "classify", rc);
		goto out;
	}
	for (size_t i = 0; i < r->n; i++) {
		const cdx_classified *x = &r->items[i];
		/* what the image was given as, or its indexed path */
		const char *image = x->path[0] ? x->path : o.items[i].text;
		if (o.json) {
			printf("{\"image\":");
			cli_print_json_string(image ? image : "");
			if (x->id)
				printf(",\"id\":%llu", (unsigned long long)x->id);
			printf(",\"mode\":\"%s\",", r->sigmoid ? "sigmoid" : "softmax");
			print_label_probs(x->labels, x->n);
			printf("}\n");
			continue;
		}
		if (x->id)
			printf("%s (id %llu)\n", image, (unsigned long long)x->id);
		else
			printf("%s\n", image ? image : "");
		for (size_t k = 0; k < x->n; k++)
			printf("  %6.2f%%  %s\n", 100.0 * x->labels[k].prob,
			    x->labels[k].label);
	}
	if (!o.json)
		printf("(%s: %s)\n", r->sigmoid ? "sigmoid" : "softmax",
		    r->sigmoid ? "each label's own probability" :
		    "probabilities over these labels, summing to 1");
	status = cli_finish_output();
out:
	cdx_classify_result_free(r);
	cdx_client_close(c);
	free_topts(&o);
	return status;
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
		.templates = (const char *const *)o->templates.v,
		.n_templates = o->templates.n, .template_set = o->template_set,
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
	if ((status = parse(argc, argv, 2, "tags", allowed, &o)) != 0 ||
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
	    (status = read_labels(&o, "tags define")) != 0)
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
