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
	struct strlist images;   /* positional: image files (borrowed) */
};

static int
parse_copts(int argc, char **argv, struct copts *o)
{
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		int takes = strcmp(a, "--model") == 0 ||
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
				cli_usage(stdout);
				exit(0);
			} else if (a[0] == '-' && a[1] != '\0') {
				fprintf(stderr, "%s: unknown option '%s'\n",
				    cli_prog, a);
				return EXIT_USAGE;
			} else if (cli_strlist_push(&o->images, argv[i]) != 0) {
				return EXIT_INPUT;
			}
			continue;
		}
		long v;
		if (strcmp(a, "--model") == 0) {
			o->model = val;
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
static int
read_labels(const struct copts *o, char ***labels, size_t *n)
{
	char *text = NULL;
	size_t len;
	cdx_error err;
	int rc;

	if ((o->labels == NULL) == (o->labels_file == NULL)) {
		fprintf(stderr, "%s classify: give either --labels or "
		    "--labels-file\n", cli_prog);
		return EXIT_USAGE;
	}
	if (o->labels != NULL) {
		rc = cls_labels_parse(o->labels, 0, labels, n, &err);
	} else {
		if (cdx_read_file(o->labels_file, LABELS_FILE_MAX, &text, &len,
		    &err) != 0) {
			fprintf(stderr, "%s: %s\n", cli_prog, err.msg);
			return EXIT_INPUT;
		}
		rc = cls_labels_parse(text, 1, labels, n, &err);
		free(text);
	}
	if (rc != 0) {
		fprintf(stderr, "%s classify: %s\n", cli_prog, err.msg);
		return rc == CDX_ENOMEM ? EXIT_INPUT : EXIT_USAGE;
	}
	return 0;
}

/* The templates: --templates NAME's, then each --template; none: the
 * default.  *t is malloc'd (the strings are static or argv's). */
static int
collect_templates(const struct copts *o, const char ***t, size_t *n)
{
	const char *const *named = NULL;
	size_t nn = 0;
	cdx_error err;

	if (o->templates != NULL) {
		nn = cls_templates_named(o->templates, &named);
		if (nn == 0) {
			fprintf(stderr, "%s classify: unknown template set '%s' "
			    "(default, imagenet)\n", cli_prog, o->templates);
			return EXIT_USAGE;
		}
	}
	if (nn + o->tmpl.n > CLS_MAX_TEMPLATES) {
		fprintf(stderr, "%s classify: %zu templates: at most %d\n",
		    cli_prog, nn + o->tmpl.n, CLS_MAX_TEMPLATES);
		return EXIT_USAGE;
	}
	for (size_t i = 0; i < o->tmpl.n; i++) {
		if (cls_template_check(o->tmpl.v[i], &err) != 0) {
			fprintf(stderr, "%s classify: %s\n", cli_prog, err.msg);
			return EXIT_USAGE;
		}
	}
	*t = malloc(sizeof(char *) * (nn + o->tmpl.n + 1));
	if (*t == NULL) {
		fprintf(stderr, "%s: out of memory\n", cli_prog);
		return EXIT_INPUT;
	}
	for (size_t i = 0; i < nn; i++)
		(*t)[i] = named[i];
	for (size_t i = 0; i < o->tmpl.n; i++)
		(*t)[nn + i] = o->tmpl.v[i];
	*n = nn + o->tmpl.n;
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
print_result(const char *image, const char *mode, const char *const *labels,
    const float *prob, size_t k, int json)
{
	if (json) {
		fputs("{\"image\":", stdout);
		cli_print_json_string(image);
		printf(",\"mode\":\"%s\",\"labels\":[", mode);
		for (size_t i = 0; i < k; i++) {
			fputs(i ? ",{\"label\":" : "{\"label\":", stdout);
			cli_print_json_string(labels[i]);
			printf(",\"prob\":%.6g}", (double)prob[i]);
		}
		fputs("]}\n", stdout);
		return;
	}
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
	print_result(input, mode_name(c), s->shown, s->sorted, s->top,
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

int
cmd_classify(int argc, char **argv)
{
	struct copts o = { 0 };
	char **labels = NULL;
	const char **tmpl = NULL;
	size_t n = 0, nt = 0;
	int status;

	status = parse_copts(argc, argv, &o);
	if (status != 0)
		goto out;
	if ((status = read_labels(&o, &labels, &n)) != 0 ||
	    (status = collect_templates(&o, &tmpl, &nt)) != 0)
		goto out;
	/* the labels and templates are the same for both paths */
	if (o.model != NULL) {
		status = classify_offline(&o, labels, n, tmpl, nt);
	} else {
		fprintf(stderr, "%s classify: needs --model DIR\n", cli_prog);
		status = EXIT_USAGE;
	}
out:
	free(labels);
	free(tmpl);
	free(o.tmpl.v);
	free(o.images.v);
	return status;
}
