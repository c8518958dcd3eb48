/*
 * clipdex embed and tokenize: the encoder in this process, no daemon.
 *   clipdex embed --model DIR [--exact] [--threads N] [--precision P]
 *       --image PATH ... | --text STRING ... | --text-file FILE
 *   clipdex embed --model DIR --compare-precision P --image PATH ...
 *   clipdex tokenize [--model DIR] --text STRING ... | --text-file FILE
 * Its model loading and image embedding serve classify too (cli.h).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/cdx.h"
#include "common/threads.h"
#include "common/vec.h"
#include "encoder/clip.h"

#define TEXT_BATCH 16


static void
print_embedding_line(const char *key, const char *input, size_t index,
    const float *e, int dim)
{
	printf("{\"index\":%zu,\"%s\":", index, key);
	cli_print_json_string(input);
	printf(",\"dim\":%d,\"embedding\":[", dim);
	for (int i = 0; i < dim; i++)
		printf(i ? ",%.9g" : "%.9g", (double)e[i]);
	fputs("]}\n", stdout);
}

struct opts {
	const char *model;
	int exact;
	int threads;
	int precision;          /* enum clip_precision */
	int compare;            /* --compare-precision, or -1 */
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
		    strcmp(a, "--threads") == 0 || strcmp(a, "--precision") == 0 ||
		    strcmp(a, "--compare-precision") == 0;
		if (takes && val == NULL) {
			fprintf(stderr, "%s: %s needs a value\n", cli_prog, a);
			return EXIT_USAGE;
		}
		if (strcmp(a, "--model") == 0) {
			o->model = val;
		} else if (strcmp(a, "--image") == 0) {
			if (cli_strlist_push(&o->images, argv[i + 1]) != 0)
				return EXIT_INPUT;
		} else if (strcmp(a, "--text") == 0) {
			if (cli_strlist_push(&o->texts, argv[i + 1]) != 0)
				return EXIT_INPUT;
		} else if (strcmp(a, "--text-file") == 0) {
			size_t first = o->owned.n;
			if (cli_read_lines(val, &o->owned) != 0)
				return EXIT_INPUT;
			for (size_t k = first; k < o->owned.n; k++)
				if (cli_strlist_push(&o->texts, o->owned.v[k]) != 0)
					return EXIT_INPUT;
		} else if (strcmp(a, "--threads") == 0) {
			char *end;
			long t = strtol(val, &end, 10);
			if (*end != '\0' || t < 1 || t > 256) {
				fprintf(stderr, "%s: --threads wants 1..256\n", cli_prog);
				return EXIT_USAGE;
			}
			o->threads = (int)t;
		} else if (strcmp(a, "--precision") == 0 ||
		    strcmp(a, "--compare-precision") == 0) {
			int p;
			if (clip_precision_parse(val, &p) != 0) {
				fprintf(stderr, "%s: %s wants auto, fp32, bf16, "
				    "int8 or int8-mixed\n", cli_prog, a);
				return EXIT_USAGE;
			}
			*(a[2] == 'p' ? &o->precision : &o->compare) = p;
		} else if (strcmp(a, "--exact") == 0) {
			o->exact = 1;
			continue;
		} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			cli_usage(stdout);
			exit(0);
		} else {
			fprintf(stderr, "%s: unknown option '%s'\n", cli_prog, a);
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

static void
emit_print(void *arg, const char *kind, const char *input, size_t index,
    const float *e, int dim)
{
	(void)arg;
	print_embedding_line(kind, input, index, e, dim);
}

/* Embeddings kept by index (ok[i] set for those made). */
struct kept {
	float *v;
	char *ok;
};

static void
emit_keep(void *arg, const char *kind, const char *input, size_t index,
    const float *e, int dim)
{
	struct kept *k = arg;
	(void)kind;
	(void)input;
	memcpy(k->v + index * (size_t)dim, e, sizeof(float) * (size_t)dim);
	k->ok[index] = 1;
}

static int
embed_texts(clip_ctx *ctx, const clip_model *m, struct strlist *texts,
    cli_emit_fn emit, void *arg)
{
	const clip_model_info *info = clip_model_get_info(m);
	const clip_tokenizer *tok = clip_model_tokenizer(m);
	int dim = info->embed_dim;
	size_t ctxlen = (size_t)info->context_len;
	int32_t *ids = malloc(sizeof(int32_t) * ctxlen * TEXT_BATCH);
	float *emb = malloc(sizeof(float) * (size_t)dim * TEXT_BATCH);
	size_t which[TEXT_BATCH];
	int status = 0;
	cdx_error err;

	if (ids == NULL || emb == NULL) {
		fprintf(stderr, "%s: out of memory\n", cli_prog);
		status = EXIT_INPUT;
		goto out_free;
	}
	for (size_t i = 0; i < texts->n;) {
		int n = 0;
		for (; i < texts->n && n < TEXT_BATCH; i++) {
			const char *t = texts->v[i];
			if (clip_tokenize(tok, t, strlen(t), ids + n * ctxlen,
			    NULL, &err) != 0) {
				fprintf(stderr, "%s: text %zu: %s\n", cli_prog, i, err.msg);
				status = EXIT_INPUT;
				continue;
			}
			which[n++] = i;
		}
		if (n == 0)
			continue;
		if (clip_encode_text(ctx, ids, n, emb, &err) != 0) {
			fprintf(stderr, "%s: encoding failed: %s\n", cli_prog, err.msg);
			status = EXIT_INPUT;
			goto out_free;
		}
		for (int j = 0; j < n; j++)
			emit(arg, "text", texts->v[which[j]], which[j],
			    emb + (size_t)j * dim, dim);
	}
out_free:
	free(ids);
	free(emb);
	return status;
}

int
cli_embed_images(clip_ctx *ctx, const clip_model *m, struct strlist *images,
    int exact, cli_emit_fn emit, void *arg)
{
	const clip_model_info *info = clip_model_get_info(m);
	const clip_preprocess_cfg *pp = &info->preprocess;
	int dim = info->embed_dim;
	size_t plane = (size_t)pp->crop_width * pp->crop_height;
	float *pix = malloc(sizeof(float) * 3 * plane * CLI_IMAGE_BATCH);
	float *emb = malloc(sizeof(float) * (size_t)dim * CLI_IMAGE_BATCH);
	size_t which[CLI_IMAGE_BATCH];
	clip_decode_opts dopt = {
	    .min_short = exact ? 0 : clip_preprocess_min_short(pp) };
	int status = 0;
	cdx_error err;

	if (pix == NULL || emb == NULL) {
		fprintf(stderr, "%s: out of memory\n", cli_prog);
		status = EXIT_INPUT;
		goto out_free;
	}
	for (size_t i = 0; i < images->n;) {
		int n = 0;
		for (; i < images->n && n < CLI_IMAGE_BATCH; i++) {
			clip_image img;
			const char *path = images->v[i];
			if (clip_image_load(path, &dopt, &img, &err) != 0) {
				/* err.msg starts with the path (encoder/clip.h) */
				fprintf(stderr, "%s: %s\n", cli_prog, err.msg);
				status = EXIT_INPUT;
				continue;
			}
			int rc = clip_image_preprocess(&img, pp, pix + (size_t)n * 3 * plane,
			    &err);
			clip_image_free(&img);
			if (rc != 0) {
				fprintf(stderr, "%s: %s: %s\n", cli_prog, path, err.msg);
				status = EXIT_INPUT;
				continue;
			}
			which[n++] = i;
		}
		if (n == 0)
			continue;
		if (clip_encode_images(ctx, pix, n, emb, &err) != 0) {
			fprintf(stderr, "%s: encoding failed: %s\n", cli_prog, err.msg);
			status = EXIT_INPUT;
			goto out_free;
		}
		for (int j = 0; j < n; j++)
			emit(arg, "image", images->v[which[j]], which[j],
			    emb + (size_t)j * dim, dim);
	}
out_free:
	free(pix);
	free(emb);
	return status;
}

int
cli_load_model(const char *dir, int precision, clip_model **m, clip_ctx **ctx)
{
	clip_model_params mp;
	cdx_error err;
	clip_model_default_params(&mp);
	mp.precision = precision;
	if (clip_model_load(dir, &mp, m, &err) != 0) {
		fprintf(stderr, "%s: cannot load model: %s\n", cli_prog, err.msg);
		return EXIT_MODEL;
	}
	if (clip_ctx_new(*m, CLI_IMAGE_BATCH, ctx, &err) != 0) {
		fprintf(stderr, "%s: %s\n", cli_prog, err.msg);
		clip_model_free(*m);
		*m = NULL;
		return EXIT_MODEL;
	}
	const clip_model_info *in = clip_model_get_info(*m);
	fprintf(stderr, "%s: %s %s, precision %s (%s)\n", cli_prog, in->name,
	    clip_family_name(in->family), clip_precision_name(in->precision),
	    in->kernels);
	return 0;
}

/* The top-k images (indices into the kept images) of text t. */
static int
top_images(const struct kept *img, size_t n_img, const float *t, int dim,
    size_t *top, int k)
{
	int n = 0;
	double sc[10];
	for (size_t i = 0; i < n_img; i++) {
		if (!img->ok[i])
			continue;
		double v = cdx_vec_dot(img->v + i * (size_t)dim, t, dim);
		int j = n < k ? n++ : k;
		if (j == k && v <= sc[k - 1])
			continue;
		if (j == k)
			j = k - 1;
		while (j > 0 && sc[j - 1] < v) {
			sc[j] = sc[j - 1];
			top[j] = top[j - 1];
			j--;
		}
		sc[j] = v;
		top[j] = i;
	}
	return n;
}

/* clipdex embed --compare-precision P: the cosine of each input's
 * embedding at P to its fp32 embedding, and for each text the overlap of
 * the top 10 of the given images under both. */
static int
compare_precision(struct opts *o)
{
	clip_model *m[2] = {NULL, NULL};
	clip_ctx *ctx[2] = {NULL, NULL};
	struct kept img[2] = {{0}}, txt[2] = {{0}};
	int status = 0, precs[2] = {CLIP_PRECISION_FP32, o->compare};
	size_t ni = o->images.n, nt = o->texts.n;

	for (int k = 0; k < 2 && status == 0; k++)
		status = cli_load_model(o->model, precs[k], &m[k], &ctx[k]);
	if (status != 0)
		goto out;
	int dim = clip_model_get_info(m[0])->embed_dim;
	for (int k = 0; k < 2; k++) {
		img[k].v = malloc(sizeof(float) * (ni + 1) * (size_t)dim);
		img[k].ok = calloc(ni + 1, 1);
		txt[k].v = malloc(sizeof(float) * (nt + 1) * (size_t)dim);
		txt[k].ok = calloc(nt + 1, 1);
		if (!img[k].v || !img[k].ok || !txt[k].v || !txt[k].ok) {
			fprintf(stderr, "%s: out of memory\n", cli_prog);
			status = EXIT_INPUT;
			goto out;
		}
		/* the same inputs fail the same way: report them once */
		int s1 = cli_embed_images(ctx[k], m[k], &o->images, o->exact,
		    emit_keep, &img[k]);
		int s2 = embed_texts(ctx[k], m[k], &o->texts, emit_keep,
		    &txt[k]);
		if (k == 0)
			status = s1 != 0 ? s1 : s2;
	}
	const char *pn = clip_precision_name(o->compare);
	printf("%s against fp32, cosine of each embedding%s\n", pn,
	    nt > 0 && ni > 0 ? "; for texts also how many of the top 10 of "
	    "the given images agree" : "");
	double worst = 1, sum = 0, osum = 0;
	size_t n = 0, no = 0;
	for (size_t i = 0; i < ni; i++) {
		if (!img[0].ok[i] || !img[1].ok[i])
			continue;
		double c = cdx_vec_dot(img[0].v + i * dim, img[1].v + i * dim, dim);
		printf("image  %.6f         %s\n", c, o->images.v[i]);
		worst = c < worst ? c : worst;
		sum += c;
		n++;
	}
	for (size_t i = 0; i < nt; i++) {
		if (!txt[0].ok[i] || !txt[1].ok[i])
			continue;
		double c = cdx_vec_dot(txt[0].v + i * dim, txt[1].v + i * dim, dim);
		char ov[32] = "";
		size_t a[10], b[10];
		int na = top_images(&img[0], ni, txt[0].v + i * dim, dim, a, 10);
		top_images(&img[1], ni, txt[1].v + i * dim, dim, b, 10);
		if (na > 0) {
			int same = 0;
			for (int x = 0; x < na; x++)
				for (int y = 0; y < na; y++)
					same += a[x] == b[y];
			snprintf(ov, sizeof(ov), "%2d/%-2d", same, na);
			osum += (double)same / na;
			no++;
		}
		printf("text   %.6f  %-5s  %s\n", c, ov, o->texts.v[i]);
		worst = c < worst ? c : worst;
		sum += c;
		n++;
	}
	if (n > 0)
		printf("%zu inputs: worst cosine %.6f, mean %.6f", n, worst,
		    sum / n);
	if (no > 0)
		printf("; mean top-10 overlap %.3f over %zu texts", osum / no,
		    no);
	if (n > 0)
		putchar('\n');
out:
	for (int k = 0; k < 2; k++) {
		free(img[k].v);
		free(img[k].ok);
		free(txt[k].v);
		free(txt[k].ok);
		clip_ctx_free(ctx[k]);
		clip_model_free(m[k]);
	}
	return status;
}

int
cmd_embed(int argc, char **argv)
{
	struct opts o = { 0 };
	clip_model *m = NULL;
	clip_ctx *ctx = NULL;
	int status;

	o.compare = -1;
	status = parse_opts(argc, argv, &o);
	if (status != 0)
		goto out;
	if (o.model == NULL || (o.images.n == 0 && o.texts.n == 0)) {
		fprintf(stderr, "%s embed: needs --model DIR and at least one "
		    "--image, --text or --text-file\n", cli_prog);
		status = EXIT_USAGE;
		goto out;
	}
	/* every available core unless --threads says otherwise */
	int threads = cdx_threads_set(o.threads);
	fprintf(stderr, "%s: %d thread%s\n", cli_prog, threads,
	    threads == 1 ? "" : "s");
	if (o.compare >= 0) {
		status = compare_precision(&o);
		goto out;
	}
	if ((status = cli_load_model(o.model, o.precision, &m, &ctx)) != 0)
		goto out;
	status = cli_embed_images(ctx, m, &o.images, o.exact, emit_print, NULL);
	int st2 = embed_texts(ctx, m, &o.texts, emit_print, NULL);
	if (status == 0)
		status = st2;
	clip_ctx_free(ctx);
	clip_model_free(m);
out:
	free_opts(&o);
	return status;
}

int
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
		fprintf(stderr, "%s tokenize: needs --text or --text-file\n", cli_prog);
		status = EXIT_USAGE;
		goto out;
	}
	if (o.model != NULL) {
		rc = clip_tokenizer_load_dir(o.model, &tok, &err);
	} else {
		rc = clip_tokenizer_load_builtin(&tok, &err);
	}
	if (rc != 0) {
		fprintf(stderr, "%s: cannot load vocabulary: %s\n", cli_prog, err.msg);
		status = EXIT_MODEL;
		goto out;
	}
	for (size_t i = 0; i < o.texts.n; i++) {
		int32_t ids[CLIP_CONTEXT_LEN];
		const char *t = o.texts.v[i];
		if (clip_tokenize(tok, t, strlen(t), ids, NULL, &err) != 0) {
			fprintf(stderr, "%s: text %zu: %s\n", cli_prog, i, err.msg);
			status = EXIT_INPUT;
			continue;
		}
		putchar('[');
		for (int j = 0; j < clip_tokenizer_context_len(tok); j++)
			printf(j ? ",%d" : "%d", (int)ids[j]);
		fputs("]\n", stdout);
	}
	clip_tokenizer_free(tok);
out:
	free_opts(&o);
	return status;
}
