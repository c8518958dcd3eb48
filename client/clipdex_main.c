/*
 * clipdex - the command line.
 *
 * Offline commands (no daemon needed):
 *   clipdex embed --model DIR [--exact] [--threads N] --image PATH ...
 *   clipdex embed --model DIR [--threads N] --text STRING ... | --text-file FILE
 *   clipdex tokenize [--model DIR] --text STRING ... | --text-file FILE
 *
 * Exit codes: 0 success, 1 some input failed, 2 usage error, 3 could not
 * load the model or vocabulary.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cdx.h"
#include "encoder/clip.h"

#define EXIT_INPUT 1
#define EXIT_USAGE 2
#define EXIT_MODEL 3

#define IMAGE_BATCH 8
#define TEXT_BATCH 16

static const char *prog = "clipdex";

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: clipdex <command> [options]\n"
	    "\n"
	    "Offline commands:\n"
	    "  embed --model DIR [--exact] [--threads N] --image PATH [--image PATH ...]\n"
	    "  embed --model DIR [--threads N] --text STRING [...] | --text-file FILE\n"
	    "      Print one JSON object per input per line, in input order, with\n"
	    "      \"embedding\" (L2-normalised floats). Images use the fast\n"
	    "      preprocessing (reduced-size JPEG decoding) unless --exact.\n"
	    "  tokenize [--model DIR] --text STRING [...] | --text-file FILE\n"
	    "      Print one JSON array of 77 token ids per input.\n"
	    "\n"
	    "Exit codes: 0 ok, 1 an input failed, 2 usage, 3 model/vocabulary error.\n");
}

/* A growable list of borrowed or owned strings. */
struct strlist {
	char **v;
	size_t n, cap;
};

static int
strlist_push(struct strlist *l, char *s)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		char **v = realloc(l->v, cap * sizeof(*v));
		if (v == NULL)
			return CDX_ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = s;
	return 0;
}

/* Reads FILE (or stdin for "-") one text per line into l; the strings are
 * owned by the list afterwards. */
static int
read_lines(const char *path, struct strlist *l)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int rc = 0;

	if (f == NULL) {
		fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
		return CDX_EIO;
	}
	while ((n = getline(&line, &cap, f)) >= 0) {
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		char *copy = strdup(line);
		if (copy == NULL || strlist_push(l, copy) != 0) {
			free(copy);
			rc = CDX_ENOMEM;
			break;
		}
	}
	if (rc == 0 && ferror(f)) {
		fprintf(stderr, "%s: %s: read error\n", prog, path);
		rc = CDX_EIO;
	}
	free(line);
	if (f != stdin)
		fclose(f);
	return rc;
}

/* Prints s as a JSON string. */
static void
print_json_string(const char *s)
{
	cJSON *j = cJSON_CreateString(s);
	char *out = j ? cJSON_PrintUnformatted(j) : NULL;
	fputs(out ? out : "null", stdout);
	free(out);
	cJSON_Delete(j);
}

static void
print_embedding_line(const char *key, const char *input, size_t index,
    const float *e, int dim)
{
	printf("{\"index\":%zu,\"%s\":", index, key);
	print_json_string(input);
	printf(",\"dim\":%d,\"embedding\":[", dim);
	for (int i = 0; i < dim; i++)
		printf(i ? ",%.9g" : "%.9g", (double)e[i]);
	fputs("]}\n", stdout);
}

static int
file_exists(const char *dir, const char *name)
{
	char path[4096];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return stat(path, &st) == 0;
}

struct opts {
	const char *model;
	int exact;
	int threads;
	struct strlist images;
	struct strlist texts;
	struct strlist owned;   /* strings read from --text-file */
};

static int
parse_opts(int argc, char **argv, struct opts *o)
{
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		int takes = strcmp(a, "--model") == 0 || strcmp(a, "--image") == 0 ||
		    strcmp(a, "--text") == 0 || strcmp(a, "--text-file") == 0 ||
		    strcmp(a, "--threads") == 0;
		if (takes && val == NULL) {
			fprintf(stderr, "%s: %s needs a value\n", prog, a);
			return EXIT_USAGE;
		}
		if (strcmp(a, "--model") == 0) {
			o->model = val;
		} else if (strcmp(a, "--image") == 0) {
			if (strlist_push(&o->images, argv[i + 1]) != 0)
				return EXIT_INPUT;
		} else if (strcmp(a, "--text") == 0) {
			if (strlist_push(&o->texts, argv[i + 1]) != 0)
				return EXIT_INPUT;
		} else if (strcmp(a, "--text-file") == 0) {
			size_t first = o->owned.n;
			if (read_lines(val, &o->owned) != 0)
				return EXIT_INPUT;
			for (size_t k = first; k < o->owned.n; k++)
				if (strlist_push(&o->texts, o->owned.v[k]) != 0)
					return EXIT_INPUT;
		} else if (strcmp(a, "--threads") == 0) {
			char *end;
			long t = strtol(val, &end, 10);
			if (*end != '\0' || t < 1 || t > 256) {
				fprintf(stderr, "%s: --threads wants 1..256\n", prog);
				return EXIT_USAGE;
			}
			o->threads = (int)t;
		} else if (strcmp(a, "--exact") == 0) {
			o->exact = 1;
			continue;
		} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			exit(0);
		} else {
			fprintf(stderr, "%s: unknown option '%s'\n", prog, a);
			return EXIT_USAGE;
		}
		i++;
	}
	return 0;
}

static void
free_opts(struct opts *o)
{
	for (size_t i = 0; i < o->owned.n; i++)
		free(o->owned.v[i]);
	free(o->owned.v);
	free(o->images.v);
	free(o->texts.v);
}

static int
embed_texts(clip_ctx *ctx, const clip_model *m, struct strlist *texts)
{
	const clip_model_info *info = clip_model_get_info(m);
	const clip_tokenizer *tok = clip_model_tokenizer(m);
	int dim = info->embed_dim;
	int32_t *ids = malloc(sizeof(int32_t) * CLIP_CONTEXT_LEN * TEXT_BATCH);
	float *emb = malloc(sizeof(float) * (size_t)dim * TEXT_BATCH);
	size_t which[TEXT_BATCH];
	int status = 0;
	cdx_error err;

	if (ids == NULL || emb == NULL) {
		fprintf(stderr, "%s: out of memory\n", prog);
		status = EXIT_INPUT;
		goto out_free;
	}
	for (size_t i = 0; i < texts->n;) {
		int n = 0;
		for (; i < texts->n && n < TEXT_BATCH; i++) {
			const char *t = texts->v[i];
			if (clip_tokenize(tok, t, strlen(t), ids + n * CLIP_CONTEXT_LEN,
			    NULL, &err) != 0) {
				fprintf(stderr, "%s: text %zu: %s\n", prog, i, err.msg);
				status = EXIT_INPUT;
				continue;
			}
			which[n++] = i;
		}
		if (n == 0)
			continue;
		if (clip_encode_text(ctx, ids, n, emb, &err) != 0) {
			fprintf(stderr, "%s: encoding failed: %s\n", prog, err.msg);
			status = EXIT_INPUT;
			goto out_free;
		}
		for (int j = 0; j < n; j++)
			print_embedding_line("text", texts->v[which[j]], which[j],
			    emb + (size_t)j * dim, dim);
	}
out_free:
	free(ids);
	free(emb);
	return status;
}

static int
embed_images(clip_ctx *ctx, const clip_model *m, struct strlist *images,
    int exact)
{
	const clip_model_info *info = clip_model_get_info(m);
	const clip_preprocess_cfg *pp = &info->preprocess;
	int dim = info->embed_dim;
	size_t plane = (size_t)pp->crop_width * pp->crop_height;
	float *pix = malloc(sizeof(float) * 3 * plane * IMAGE_BATCH);
	float *emb = malloc(sizeof(float) * (size_t)dim * IMAGE_BATCH);
	size_t which[IMAGE_BATCH];
	clip_decode_opts dopt = { 0, exact ? 0 : pp->shortest_edge };
	int status = 0;
	cdx_error err;

	if (pix == NULL || emb == NULL) {
		fprintf(stderr, "%s: out of memory\n", prog);
		status = EXIT_INPUT;
		goto out_free;
	}
	for (size_t i = 0; i < images->n;) {
		int n = 0;
		for (; i < images->n && n < IMAGE_BATCH; i++) {
			clip_image img;
			const char *path = images->v[i];
			if (clip_image_load(path, &dopt, &img, &err) != 0) {
				fprintf(stderr, "%s: %s: %s\n", prog, path, err.msg);
				status = EXIT_INPUT;
				continue;
			}
			int rc = clip_image_preprocess(&img, pp, pix + (size_t)n * 3 * plane,
			    &err);
			clip_image_free(&img);
			if (rc != 0) {
				fprintf(stderr, "%s: %s: %s\n", prog, path, err.msg);
				status = EXIT_INPUT;
				continue;
			}
			which[n++] = i;
		}
		if (n == 0)
			continue;
		if (clip_encode_images(ctx, pix, n, emb, &err) != 0) {
			fprintf(stderr, "%s: encoding failed: %s\n", prog, err.msg);
			status = EXIT_INPUT;
			goto out_free;
		}
		for (int j = 0; j < n; j++)
			print_embedding_line("image", images->v[which[j]], which[j],
			    emb + (size_t)j * dim, dim);
	}
out_free:
	free(pix);
	free(emb);
	return status;
}

static int
cmd_embed(int argc, char **argv)
{
	struct opts o = { 0 };
	clip_model_params mp;
	clip_model *m = NULL;
	clip_ctx *ctx = NULL;
	cdx_error err;
	int status;

	o.threads = 0;
	status = parse_opts(argc, argv, &o);
	if (status != 0)
		goto out;
	if (o.model == NULL || (o.images.n == 0 && o.texts.n == 0)) {
		fprintf(stderr, "%s embed: needs --model DIR and at least one "
		    "--image, --text or --text-file\n", prog);
		status = EXIT_USAGE;
		goto out;
	}
	clip_model_default_params(&mp);
	if (o.threads > 0)
		mp.n_threads = o.threads;
	if (clip_model_load(o.model, &mp, &m, &err) != 0) {
		fprintf(stderr, "%s: cannot load model: %s\n", prog, err.msg);
		status = EXIT_MODEL;
		goto out;
	}
	if (clip_ctx_new(m, IMAGE_BATCH, &ctx, &err) != 0) {
		fprintf(stderr, "%s: %s\n", prog, err.msg);
		status = EXIT_MODEL;
		goto out_model;
	}
	status = embed_images(ctx, m, &o.images, o.exact);
	int st2 = embed_texts(ctx, m, &o.texts);
	if (status == 0)
		status = st2;
	clip_ctx_free(ctx);
out_model:
	clip_model_free(m);
out:
	free_opts(&o);
	return status;
}

static int
cmd_tokenize(int argc, char **argv)
{
	struct opts o = { 0 };
	clip_tokenizer *tok = NULL;
	cdx_error err;
	int status, rc;

	status = parse_opts(argc, argv, &o);
	if (status != 0)
		goto out;
	if (o.texts.n == 0 || o.images.n != 0) {
		fprintf(stderr, "%s tokenize: needs --text or --text-file\n", prog);
		status = EXIT_USAGE;
		goto out;
	}
	if (o.model != NULL && file_exists(o.model, "vocab.json") &&
	    file_exists(o.model, "merges.txt")) {
		char v[4096], mg[4096];
		snprintf(v, sizeof(v), "%s/vocab.json", o.model);
		snprintf(mg, sizeof(mg), "%s/merges.txt", o.model);
		rc = clip_tokenizer_load_files(v, mg, &tok, &err);
	} else {
		rc = clip_tokenizer_load_builtin(&tok, &err);
	}
	if (rc != 0) {
		fprintf(stderr, "%s: cannot load vocabulary: %s\n", prog, err.msg);
		status = EXIT_MODEL;
		goto out;
	}
	for (size_t i = 0; i < o.texts.n; i++) {
		int32_t ids[CLIP_CONTEXT_LEN];
		const char *t = o.texts.v[i];
		if (clip_tokenize(tok, t, strlen(t), ids, NULL, &err) != 0) {
			fprintf(stderr, "%s: text %zu: %s\n", prog, i, err.msg);
			status = EXIT_INPUT;
			continue;
		}
		putchar('[');
		for (int j = 0; j < CLIP_CONTEXT_LEN; j++)
			printf(j ? ",%d" : "%d", (int)ids[j]);
		fputs("]\n", stdout);
	}
	clip_tokenizer_free(tok);
out:
	free_opts(&o);
	return status;
}

int
main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "embed") == 0)
		return cmd_embed(argc, argv);
	if (strcmp(argv[1], "tokenize") == 0)
		return cmd_tokenize(argc, argv);
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "%s: unknown command '%s'\n", prog, argv[1]);
	usage(stderr);
	return EXIT_USAGE;
}
