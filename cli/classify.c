/*
 * clipdex classify: zero-shot classification of images (docs/CLI.md).
 *   clipdex classify --model DIR --labels "cat,dog,remote control" |
 *       --labels-file F [--template T ...] [--templates NAME] [--top K]
 *       [--json] [--precision P] [--threads N] [--exact] IMAGE...
 * With --model the encoder runs in this process (no daemon): each label's
 * text embedding is the normalised mean over its templates (classify.h,
 * cls_zero_shot), each image is encoded as `clipdex embed` does, and the
 * probabilities come from cls_score: CLIP's softmax over the labels or
 * SigLIP's per-label sigmoid.
 *   clipdex classify --labels ... | --set NAME [options]
 *       (--id N | --path P | --image FILE | FILE)...
 * Without --model the daemon classifies (cdx_classify): indexed images by
 * id or path from their stored embeddings, files uploaded; the same
 * labels, templates and output.
 *
 * Output, in input order: with --json one object per image per line,
 *   {"image": PATH, "mode": "softmax"|"sigmoid",
 *    "labels": [{"label": L, "prob": P}, ...]}   (highest prob first)
 * else a table whose first line says the mode.  An image that cannot be
 * read is reported on stderr, the others are classified, and the exit
 * status is 1.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classify/classify.h"
#include "cli/cli.h"
#include "common/cdx.h"
#include "common/file.h"
#include "common/threads.h"
#include "encoder/clip.h"

/* A --labels-file larger than this is refused. */
#define LABELS_FILE_MAX (1u << 20)

struct copts {
	const char *model;
	const char *labels;      /* --labels */
	const char *labels_file; /* --labels-file */
	const char *templates;   /* --templates NAME */
	struct strlist tmpl;     /* --template T (borrowed) */
	long top;                /* --top K; 0: every label */
	int json, exact, threads, precision;
	struct strlist images;   /* positional and --image: files (borrowed) */
	/* the daemon: --url ..., --set NAME, every image in order (--id,
	 * --path made absolute and owned, --image and positional files) */
	struct gopts g;
	const char *set;
	cdx_term *items;
	size_t n_items;
	int indexed;             /* an --id or --path was given */
};

static int
push_item(struct copts *o, cdx_term t)
{
	cdx_term *v = realloc(o->items, (o->n_items + 1) * sizeof(*v));
	if (v == NULL)
		return EXIT_INPUT;
	o->items = v;
	o->items[o->n_items++] = t;
	return 0;
}

/* A file to classify: offline it is encoded here, else uploaded. */
static int
push_file(struct copts *o, char *path)
{
	if (cli_strlist_push(&o->images, path) != 0)
		return EXIT_INPUT;
	return push_item(o, (cdx_term){ .kind = CDX_TERM_FILE, .text = path });
}

static int
parse_copts(int argc, char **argv, struct copts *o)
{
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		int g = cli_global_opt(argc, argv, &i, &o->g);
		if (g < 0)
			return EXIT_USAGE;
		if (g > 0)
			continue;
		int takes = strcmp(a, "--model") == 0 ||
		    strcmp(a, "--id") == 0 || strcmp(a, "--path") == 0 ||
		    strcmp(a, "--image") == 0 || strcmp(a, "--set") == 0 ||
		    strcmp(a, "--labels") == 0 ||
		    strcmp(a, "--labels-file") == 0 ||
		    strcmp(a, "--template") == 0 ||
		    strcmp(a, "--templates") == 0 || strcmp(a, "--top") == 0 ||
		    strcmp(a, "--threads") == 0 ||
		    strcmp(a, "--precision") == 0;

		if (takes && val == NULL) {
			fprintf(stderr, "%s: %s needs a value\n", cli_prog, a);
			return EXIT_USAGE;
		}
		if (!takes) {
			if (strcmp(a, "--json") == 0) {
				o->json = 1;
			} else if (strcmp(a, "--exact") == 0) {
				o->exact = 1;
			} else if (strcmp(a, "-h") == 0 ||
			    strcmp(a, "--help") == 0) {
				cli_command_usage(stdout, "classify");
				exit(0);
			} else if (a[0] == '-' && a[1] != '\0') {
				fprintf(stderr, "%s: unknown option '%s'\n",
				    cli_prog, a);
				return EXIT_USAGE;
			} else if (push_file(o, argv[i]) != 0) {
				return EXIT_INPUT;
			}
			continue;
		}
		long v;
		if (strcmp(a, "--model") == 0) {
			o->model = val;
		} else if (strcmp(a, "--id") == 0) {
			if (cli_parse_int(a, val, 1, INT64_MAX, &v) != 0)
				return EXIT_USAGE;
			o->indexed = 1;
			if (push_item(o, (cdx_term){ .kind = CDX_TERM_ID,
			    .id = (uint64_t)v }) != 0)
				return EXIT_INPUT;
		} else if (strcmp(a, "--path") == 0) {
			char *abs = cli_absolute_path(val);
			o->indexed = 1;
			if (abs == NULL || push_item(o, (cdx_term){
			    .kind = CDX_TERM_PATH, .text = abs }) != 0) {
				free(abs);
				return EXIT_INPUT;
			}
		} else if (strcmp(a, "--image") == 0) {
			if (push_file(o, argv[i + 1]) != 0)
				return EXIT_INPUT;
		} else if (strcmp(a, "--set") == 0) {
			o->set = val;
		} else if (strcmp(a, "--labels") == 0) {
			o->labels = val;
		} else if (strcmp(a, "--labels-file") == 0) {
			o->labels_file = val;
		} else if (strcmp(a, "--template") == 0) {
			if (cli_strlist_push(&o->tmpl, argv[i + 1]) != 0)
				return EXIT_INPUT;
		} else if (strcmp(a, "--templates") == 0) {
			o->templates = val;
		} else if (strcmp(a, "--top") == 0) {
			if (cli_parse_int(a, val, 1, CLS_MAX_LABELS, &o->top) != 0)
				return EXIT_USAGE;
		} else if (strcmp(a, "--threads") == 0) {
			if (cli_parse_int(a, val, 1, 256, &v) != 0)
				return EXIT_USAGE;
			o->threads = (int)v;
		} else if (clip_precision_parse(val, &o->precision) != 0) {
			fprintf(stderr, "%s: --precision wants auto, fp32, bf16, "
			    "int8 or int8-mixed\n", cli_prog);
			return EXIT_USAGE;
		}
		i++;
	}
	return 0;
}

/* The labels of --labels or --labels-file, checked (classify.h's rules);
 * *labels is one allocation.  Returns 0 or an exit code (printed). */
int
cli_read_labels(const char *labels_text, const char *labels_file,
    char ***labels, size_t *n)
{
	char *text = NULL;
	size_t len;
	cdx_error err;
	int rc;

	if ((labels_text == NULL) == (labels_file == NULL)) {
		fprintf(stderr, "%s: give either --labels or --labels-file\n",
		    cli_prog);
		return EXIT_USAGE;
	}
	if (labels_text != NULL) {
		rc = cls_labels_parse(labels_text, 0, labels, n, &err);
	} else {
		if (cdx_read_file(labels_file, LABELS_FILE_MAX, &text, &len,
		    &err) != 0) {
			fprintf(stderr, "%s: %s\n", cli_prog, err.msg);
			return EXIT_INPUT;
		}
		rc = cls_labels_parse(text, 1, labels, n, &err);
		free(text);
	}
	if (rc != 0) {
		fprintf(stderr, "%s: %s\n", cli_prog, err.msg);
		return rc == CDX_ENOMEM ? EXIT_INPUT : EXIT_USAGE;
	}
	return 0;
}

/* The templates: --templates NAME's, then each --template; none: the
 * default.  *t is malloc'd (the strings are static or argv's). */
int
cli_collect_templates(const char *named_set, const struct strlist *tmpl,
    const char ***t, size_t *n)
{
	const char *const *named = NULL;
	size_t nn = 0;
	cdx_error err;

	if (named_set != NULL) {
		nn = cls_templates_named(named_set, &named);
		if (nn == 0) {
			fprintf(stderr, "%s: unknown template set '%s' (default, "
			    "imagenet)\n", cli_prog, named_set);
			return EXIT_USAGE;
		}
	}
	if (nn + tmpl->n > CLS_MAX_TEMPLATES) {
		fprintf(stderr, "%s: %zu templates: at most %d\n", cli_prog,
		    nn + tmpl->n, CLS_MAX_TEMPLATES);
		return EXIT_USAGE;
	}
	for (size_t i = 0; i < tmpl->n; i++) {
		if (cls_template_check(tmpl->v[i], &err) != 0) {
			fprintf(stderr, "%s: %s\n", cli_prog, err.msg);
			return EXIT_USAGE;
		}
	}
	*t = malloc(sizeof(char *) * (nn + tmpl->n + 1));
	if (*t == NULL) {
		fprintf(stderr, "%s: out of memory\n", cli_prog);
		return EXIT_INPUT;
	}
	for (size_t i = 0; i < nn; i++)
		(*t)[i] = named[i];
	for (size_t i = 0; i < tmpl->n; i++)
		(*t)[nn + i] = tmpl->v[i];
	*n = nn + tmpl->n;
	return 0;
}

/* What each image's embedding is scored against, and how it is shown. */
struct scorer {
	const cls_set *set;
	size_t top;              /* labels shown per image */
	int json;
	float *prob;             /* set->n */
	uint32_t *order;         /* set->n */
	const char **shown;      /* set->n: labels, highest first */
	float *sorted;           /* set->n: their probabilities */
	int status;
};

static const char *
mode_name(const cls_set *c)
{
	return c->kind == CLS_SIGMOID ? "sigmoid" : "softmax";
}

/* order: every label, highest probability first, ties in label order. */
static void
sort_labels(const float *prob, size_t n, uint32_t *order)
{
	for (size_t i = 0; i < n; i++) {
		size_t j = i;
		for (; j > 0 && prob[order[j - 1]] < prob[i]; j--)
			order[j] = order[j - 1];
		order[j] = (uint32_t)i;
	}
}

/* Prints one image's result: k labels in the order given (highest
 * first), as a --json line or a block of the table.  Both paths (offline,
 * daemon) print through it. */
static void
print_result(const char *image, uint64_t id, const char *mode,
    const char *const *labels, const float *prob, size_t k, int json)
{
	if (json) {
		fputs("{\"image\":", stdout);
		cli_print_json_string(image);
		if (id != 0)    /* an indexed image (the daemon's path) */
			printf(",\"id\":%llu", (unsigned long long)id);
		printf(",\"mode\":\"%s\",\"labels\":[", mode);
		for (size_t i = 0; i < k; i++) {
			fputs(i ? ",{\"label\":" : "{\"label\":", stdout);
			cli_print_json_string(labels[i]);
			printf(",\"prob\":%.6g}", (double)prob[i]);
		}
		fputs("]}\n", stdout);
		return;
	}
	if (id != 0)
		printf("%s (id %llu)\n", image, (unsigned long long)id);
	else
		printf("%s\n", image);
	for (size_t i = 0; i < k; i++)
		printf("  %.4f  %s\n", (double)prob[i], labels[i]);
}

/* The table's first line: the mode and what it means. */
static void
print_header(const char *mode, size_t n_labels, size_t n_templates)
{
	printf("%s over %zu labels (%s), %zu template%s\n", mode, n_labels,
	    strcmp(mode, "sigmoid") == 0 ?
	    "SigLIP, multi-label: each label's own probability" :
	    "CLIP, single-label: the probabilities sum to 1",
	    n_templates, n_templates == 1 ? "" : "s");
}

static void
emit_classified(void *arg, const char *kind, const char *input,
    size_t index, const float *e, int dim)
{
	struct scorer *s = arg;
	const cls_set *c = s->set;
	cdx_error err;

	(void)kind;
	(void)index;
	if (cls_score(c, e, 1, (size_t)dim, s->prob, &err) != 0) {
		fprintf(stderr, "%s: %s: %s\n", cli_prog, input, err.msg);
		s->status = EXIT_INPUT;
		return;
	}
	sort_labels(s->prob, c->n, s->order);
	for (size_t k = 0; k < s->top; k++) {
		s->shown[k] = c->labels[s->order[k]];
		s->sorted[k] = s->prob[s->order[k]];
	}
	print_result(input, 0, mode_name(c), s->shown, s->sorted, s->top,
	    s->json);
}

/* classify --model DIR: everything in this process. */
static int
classify_offline(struct copts *o, char **labels, size_t n,
    const char **tmpl, size_t nt)
{
	clip_model *m = NULL;
	clip_ctx *ctx = NULL;
	cls_set *set = NULL;
	struct scorer s = { 0 };
	cdx_error err;
	int status;

	if (o->images.n == 0) {
		fprintf(stderr, "%s classify: --model needs at least one IMAGE\n",
		    cli_prog);
		return EXIT_USAGE;
	}
	/* every available core unless --threads says otherwise */
	int threads = cdx_threads_set(o->threads);
	fprintf(stderr, "%s: %d thread%s\n", cli_prog, threads,
	    threads == 1 ? "" : "s");
	if ((status = cli_load_model(o->model, o->precision, &m, &ctx)) != 0)
		goto out;
	if (cls_zero_shot(ctx, clip_model_tokenizer(m), clip_model_get_info(m),
	    "classify", (const char *const *)labels, n, tmpl, nt, 0.0f, &set,
	    &err) != 0) {
		fprintf(stderr, "%s classify: the labels' text embeddings: %s\n",
		    cli_prog, err.msg);
		status = EXIT_INPUT;
		goto out;
	}
	s.set = set;
	s.json = o->json;
	s.top = o->top > 0 && (size_t)o->top < n ? (size_t)o->top : n;
	s.prob = malloc(sizeof(float) * n);
	s.order = malloc(sizeof(uint32_t) * n);
	s.shown = malloc(sizeof(char *) * n);
	s.sorted = malloc(sizeof(float) * n);
	if (s.prob == NULL || s.order == NULL || s.shown == NULL ||
	    s.sorted == NULL) {
		fprintf(stderr, "%s: out of memory\n", cli_prog);
		status = EXIT_INPUT;
		goto out;
	}
	if (!o->json)
		print_header(mode_name(set), n, set->n_templates);
	status = cli_embed_images(ctx, m, &o->images, o->exact,
	    emit_classified, &s);
	if (status == 0)
		status = s.status;
	int st2 = cli_finish_output();
	if (status == 0)
		status = st2;
out:
	free(s.prob);
	free(s.order);
	free(s.shown);
	free(s.sorted);
	cls_set_free(set);
	clip_ctx_free(ctx);
	clip_model_free(m);
	return status;
}

/* classify without --model: the daemon, on its model (cdx_classify). */
static int
classify_daemon(struct copts *o, char **labels, size_t n, const char **tmpl,
    size_t nt)
{
	cdx_classify_result *r = NULL;
	cdx_client *c = NULL;
	const char **shown = NULL;
	float *prob = NULL;
	int status, rc;

	if (o->n_items == 0) {
		fprintf(stderr, "%s classify: needs --id N, --path P or --image "
		    "FILE (or --model DIR for offline)\n", cli_prog);
		return EXIT_USAGE;
	}
	cdx_classify_req q = {
		.items = o->items, .n_items = o->n_items,
		.labels = (const char *const *)labels, .n_labels = n,
		.templates = tmpl, .n_templates = nt, .set = o->set,
		.top = (int)o->top, .exact = o->exact,
	};
	if ((status = cli_open_client(&o->g, &c)) != 0)
		goto out;
	if ((rc = cdx_classify(c, &q, &r)) != 0) {
		status = cli_call_failed(c, "classify", rc);
		goto out;
	}
	size_t most = 0;
	for (size_t i = 0; i < r->n; i++)
		most = r->items[i].n > most ? r->items[i].n : most;
	shown = malloc(sizeof(*shown) * (most + 1));
	prob = malloc(sizeof(*prob) * (most + 1));
	if (shown == NULL || prob == NULL) {
		fprintf(stderr, "%s: out of memory\n", cli_prog);
		status = EXIT_INPUT;
		goto out;
	}
	const char *mode = r->sigmoid ? "sigmoid" : "softmax";
	if (!o->json && o->set != NULL)
		printf("%s, tag set %s\n", mode, o->set);
	else if (!o->json)
		print_header(mode, n, nt ? nt : 1);
	for (size_t i = 0; i < r->n; i++) {
		const cdx_classified *x = &r->items[i];
		for (size_t k = 0; k < x->n; k++) {
			shown[k] = x->labels[k].label;
			prob[k] = (float)x->labels[k].prob;
		}
		/* the indexed image's path, or the file as given */
		print_result(x->path[0] ? x->path : o->items[i].text, x->id, mode,
		    shown, prob, x->n, o->json);
	}
	status = cli_finish_output();
out:
	free(shown);
	free(prob);
	cdx_classify_result_free(r);
	cdx_client_close(c);
	return status;
}

int
cmd_classify(int argc, char **argv)
{
	struct copts o = { .g = { NULL, NULL, 120000, CLI_CONNECT_TIMEOUT_MS } };
	char **labels = NULL;
	const char **tmpl = NULL;
	size_t n = 0, nt = 0;
	int status;

	status = parse_copts(argc, argv, &o);
	if (status != 0)
		goto out;
	if (o.set != NULL) {
		/* a tag set brings its labels and templates (the daemon's) */
		if (o.model || o.labels || o.labels_file || o.templates ||
		    o.tmpl.n) {
			fprintf(stderr, "%s classify: --set takes the set's labels "
			    "and templates, through the daemon\n", cli_prog);
			status = EXIT_USAGE;
			goto out;
		}
		status = classify_daemon(&o, NULL, 0, NULL, 0);
		goto out;
	}
	if ((status = cli_read_labels(o.labels, o.labels_file, &labels, &n))
	    != 0 || (status = cli_collect_templates(o.templates, &o.tmpl, &tmpl,
	    &nt)) != 0)
		goto out;
	/* the labels and templates are the same for both paths */
	if (o.model != NULL && o.indexed) {
		fprintf(stderr, "%s classify: --id and --path name the daemon's "
		    "images; with --model give image files\n", cli_prog);
		status = EXIT_USAGE;
	} else if (o.model != NULL) {
		status = classify_offline(&o, labels, n, tmpl, nt);
	} else {
		status = classify_daemon(&o, labels, n, tmpl, nt);
	}
out:
	free(labels);
	free(tmpl);
	free(o.tmpl.v);
	free(o.images.v);
	for (size_t i = 0; i < o.n_items; i++)
		if (o.items[i].kind == CDX_TERM_PATH)
			free((char *)o.items[i].text);
	free(o.items);
	return status;
}
