/*
 * clipdex - the command line (docs/CLI.md).
 *
 * Commands that talk to clipdexd, through libclipdex (client/clipdex.h):
 *   clipdex search QUERY... [-k N] [--json|--paths] ...
 *   clipdex similar FILE|id:N|@FILE, add PATH..., remove PATH..., status,
 *   failures
 *
 * Offline commands (no daemon needed):
 *   clipdex embed --model DIR [--exact] [--threads N] [--precision P]
 *       --image PATH ... | --text STRING ... | --text-file FILE
 *   clipdex embed --model DIR --compare-precision P --image PATH ...
 *   clipdex tokenize [--model DIR] --text STRING ... | --text-file FILE
 *
 * Exit codes: 0 success, 1 some input failed or the daemon returned an
 * error, 2 usage error, 3 could not load the model or vocabulary, 4 cannot
 * reach the daemon.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client/clipdex.h"
#include "client/client_priv.h"
#include "common/cdx.h"
#include "common/threads.h"
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
	    "usage: clipdex <command> [options]    (clipdex <command> --help)\n"
	    "\n"
	    "Commands that ask the clipdexd daemon:\n"
	    "  search QUERY... [-k N] [--offset N] [--min-score S] [--prefix PATH]\n"
	    "         [--after T] [--before T] [--time capture|mtime]\n"
	    "         [--collapse S] [--exact] [--not TEXT] [--image FILE]\n"
	    "         [--json | --paths]\n"
	    "      QUERY: terms joined by ' + ' or ' - ', each [WEIGHT:]SOURCE with\n"
	    "      SOURCE text, @FILE, img:FILE, path:PATH or id:N, e.g.\n"
	    "      \"beach - 0.7:people + 0.5:@example.jpg\"\n"
	    "  similar FILE|id:N|@FILE [search options]\n"
	    "  add PATH... [--wait]      index files or folders\n"
	    "  remove PATH...            forget files or folders\n"
	    "  status [--json]\n"
	    "  failures [--limit N] [--json]\n"
	    "  dupes [--kind exact|near|similar] [--threshold T] [--prefix PATH]\n"
	    "        [--json | --csv]     duplicate groups with the copy to keep\n"
	    "  check FILE [--threshold T] [--json]   is FILE already indexed?\n"
	    "  retrieve --prompts FILE [--example IMG] [-k N] [--min-score S]\n"
	    "        [--negative TEXT] [--dedupe T] --out FILE.jsonl\n"
	    "        [--copy-to DIR | --link-to DIR]   dataset retrieval\n"
	    "  Options of all of them: --url URL, --timeout MS, --connect-timeout MS,\n"
	    "  --token T (defaults: $CLIPDEX_URL, 30000, 3000, $CLIPDEX_TOKEN).\n"
	    "\n"
	    "Offline commands:\n"
	    "  embed --model DIR [--exact] [--threads N] [--precision P]\n"
	    "        --image PATH [...] | --text STRING [...] | --text-file FILE\n"
	    "      Print one JSON object per input per line, in input order, with\n"
	    "      \"embedding\" (L2-normalised floats). Images use the fast\n"
	    "      preprocessing (reduced-size JPEG decoding) unless --exact.\n"
	    "      --threads: default every available core; --precision: auto\n"
	    "      (default), fp32, bf16, int8 or int8-mixed; what runs goes to\n"
	    "      stderr.\n"
	    "  embed --model DIR --compare-precision P --image PATH [...]\n"
	    "        [--text STRING ...]\n"
	    "      What precision P costs on your own photos and queries: the\n"
	    "      cosine of each embedding to fp32's, and for each text how many\n"
	    "      of its top 10 among the given images agree.\n"
	    "  tokenize [--model DIR] --text STRING [...] | --text-file FILE\n"
	    "      Print one JSON array of the model's padded token ids per input\n"
	    "      (77 for CLIP, 64 for SigLIP).\n"
	    "\n"
	    "Exit codes: 0 ok (also a search that found nothing), 1 the daemon\n"
	    "returned an error or an input failed, 2 usage, 3 model/vocabulary\n"
	    "error, 4 cannot reach the daemon (not running, no reply in time).\n");
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
		} else if (strcmp(a, "--precision") == 0 ||
		    strcmp(a, "--compare-precision") == 0) {
			int p;
			if (clip_precision_parse(val, &p) != 0) {
				fprintf(stderr, "%s: %s wants auto, fp32, bf16, "
				    "int8 or int8-mixed\n", prog, a);
				return EXIT_USAGE;
			}
			*(a[2] == 'p' ? &o->precision : &o->compare) = p;
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

/* Where each embedding goes: printed as a JSON line, or kept. */
typedef void (*emit_fn)(void *arg, const char *kind, const char *input,
    size_t index, const float *e, int dim);

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
    emit_fn emit, void *arg)
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
		fprintf(stderr, "%s: out of memory\n", prog);
		status = EXIT_INPUT;
		goto out_free;
	}
	for (size_t i = 0; i < texts->n;) {
		int n = 0;
		for (; i < texts->n && n < TEXT_BATCH; i++) {
			const char *t = texts->v[i];
			if (clip_tokenize(tok, t, strlen(t), ids + n * ctxlen,
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
			emit(arg, "text", texts->v[which[j]], which[j],
			    emb + (size_t)j * dim, dim);
	}
out_free:
	free(ids);
	free(emb);
	return status;
}

static int
embed_images(clip_ctx *ctx, const clip_model *m, struct strlist *images,
    int exact, emit_fn emit, void *arg)
{
	const clip_model_info *info = clip_model_get_info(m);
	const clip_preprocess_cfg *pp = &info->preprocess;
	int dim = info->embed_dim;
	size_t plane = (size_t)pp->crop_width * pp->crop_height;
	float *pix = malloc(sizeof(float) * 3 * plane * IMAGE_BATCH);
	float *emb = malloc(sizeof(float) * (size_t)dim * IMAGE_BATCH);
	size_t which[IMAGE_BATCH];
	clip_decode_opts dopt = { 0, exact ? 0 : clip_preprocess_min_short(pp) };
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
			emit(arg, "image", images->v[which[j]], which[j],
			    emb + (size_t)j * dim, dim);
	}
out_free:
	free(pix);
	free(emb);
	return status;
}

/* Loads the model at a precision with a context for IMAGE_BATCH images;
 * says what runs on stderr. */
static int
load_at(const char *dir, int precision, clip_model **m, clip_ctx **ctx)
{
	clip_model_params mp;
	cdx_error err;
	clip_model_default_params(&mp);
	mp.precision = precision;
	if (clip_model_load(dir, &mp, m, &err) != 0) {
		fprintf(stderr, "%s: cannot load model: %s\n", prog, err.msg);
		return EXIT_MODEL;
	}
	if (clip_ctx_new(*m, IMAGE_BATCH, ctx, &err) != 0) {
		fprintf(stderr, "%s: %s\n", prog, err.msg);
		clip_model_free(*m);
		*m = NULL;
		return EXIT_MODEL;
	}
	const clip_model_info *in = clip_model_get_info(*m);
	fprintf(stderr, "%s: %s %s, precision %s (%s)\n", prog, in->name,
	    clip_family_name(in->family), clip_precision_name(in->precision),
	    in->kernels);
	return 0;
}

static double
dotf(const float *a, const float *b, int n)
{
	double s = 0;
	for (int i = 0; i < n; i++)
		s += (double)a[i] * b[i];
	return s;
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
		double v = dotf(img->v + i * (size_t)dim, t, dim);
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
		status = load_at(o->model, precs[k], &m[k], &ctx[k]);
	if (status != 0)
		goto out;
	int dim = clip_model_get_info(m[0])->embed_dim;
	for (int k = 0; k < 2; k++) {
		img[k].v = malloc(sizeof(float) * (ni + 1) * (size_t)dim);
		img[k].ok = calloc(ni + 1, 1);
		txt[k].v = malloc(sizeof(float) * (nt + 1) * (size_t)dim);
		txt[k].ok = calloc(nt + 1, 1);
		if (!img[k].v || !img[k].ok || !txt[k].v || !txt[k].ok) {
			fprintf(stderr, "%s: out of memory\n", prog);
			status = EXIT_INPUT;
			goto out;
		}
		/* the same inputs fail the same way: report them once */
		int s1 = embed_images(ctx[k], m[k], &o->images, o->exact,
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
		double c = dotf(img[0].v + i * dim, img[1].v + i * dim, dim);
		printf("image  %.6f         %s\n", c, o->images.v[i]);
		worst = c < worst ? c : worst;
		sum += c;
		n++;
	}
	for (size_t i = 0; i < nt; i++) {
		if (!txt[0].ok[i] || !txt[1].ok[i])
			continue;
		double c = dotf(txt[0].v + i * dim, txt[1].v + i * dim, dim);
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

static int
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
		    "--image, --text or --text-file\n", prog);
		status = EXIT_USAGE;
		goto out;
	}
	/* every available core unless --threads says otherwise */
	cdx_threads_set(o.threads);
	if (o.compare >= 0) {
		status = compare_precision(&o);
		goto out;
	}
	if ((status = load_at(o.model, o.precision, &m, &ctx)) != 0)
		goto out;
	status = embed_images(ctx, m, &o.images, o.exact, emit_print, NULL);
	int st2 = embed_texts(ctx, m, &o.texts, emit_print, NULL);
	if (status == 0)
		status = st2;
	clip_ctx_free(ctx);
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
	if (o.model != NULL) {
		rc = clip_tokenizer_load_dir(o.model, &tok, &err);
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
		for (int j = 0; j < clip_tokenizer_context_len(tok); j++)
			printf(j ? ",%d" : "%d", (int)ids[j]);
		fputs("]\n", stdout);
	}
	clip_tokenizer_free(tok);
out:
	free_opts(&o);
	return status;
}

/* ==== commands that talk to clipdexd (through libclipdex) ==== */

#define EXIT_DAEMON 1       /* the daemon refused or failed the request */
#define EXIT_UNREACHABLE 4  /* no connection or no reply in time */
#define CLI_CONNECT_TIMEOUT_MS 3000

struct gopts {
	const char *url;
	const char *token;
	int timeout_ms;
	int connect_ms;
};

/* The options of search and similar. */
struct sopts {
	struct gopts g;
	cdx_query q;
	int json, paths, wait, limit, help;
	int has_after, has_before;
	int64_t after, before;
	struct strlist words;    /* positional arguments */
	struct strlist nots;     /* --not TEXT */
	struct strlist images;   /* --image FILE */
};

static const char *const online_usage[] = {
	"search",
	"usage: clipdex search QUERY... [options]\n"
	"\n"
	"Finds the indexed images that best match QUERY. The words of QUERY are\n"
	"joined by spaces and split into terms at ' + ' and ' - ' (a space on\n"
	"each side; ' - ' subtracts the next term). Each term is [WEIGHT:]SOURCE,\n"
	"SOURCE being text, @FILE or img:FILE (a local image, uploaded),\n"
	"path:PATH (an image on the daemon's machine) or id:N (an indexed image).\n"
	"  clipdex search \"a dog on the beach\"\n"
	"  clipdex search \"beach - 0.7:people + 0.5:@example.jpg\"\n"
	"\n"
	"  -k N              results wanted (default 10, at most 1000)\n"
	"  --offset N        skip the N best results first (paging)\n"
	"  --min-score S     drop results with a cosine similarity below S\n"
	"  --min-prob P      drop results whose match probability is below P\n"
	"                    (0..1; text queries of SigLIP models, whose results\n"
	"                    show it as a percentage beside the score)\n"
	"  --prefix PATH     only images whose path starts with PATH\n"
	"  --after T         only images taken (or modified) at or after T\n"
	"  --before T        ... before T; T is seconds since the epoch or\n"
	"                    YYYY-MM-DD[THH:MM[:SS]], read as UTC\n"
	"  --time capture|mtime  the time --after/--before test (default capture)\n"
	"  --collapse S      show near-identical images (similarity >= S) once\n"
	"  --exact           exact preprocessing of uploaded images\n"
	"  --not TEXT        subtract a text term (weight -1); repeatable\n"
	"  --image FILE      add a local image term (weight 1); repeatable\n"
	"  --json            one JSON object per result per line\n"
	"  --paths           only the paths, one per line\n",
	"similar",
	"usage: clipdex similar FILE|id:N|@FILE [options]\n"
	"\n"
	"The images most like one image: FILE is an indexed image on the\n"
	"daemon's machine (made absolute here), id:N an indexed image by id,\n"
	"@FILE (or img:FILE) a local image that is uploaded. Takes the options\n"
	"of search except --not and --image.\n",
	"add",
	"usage: clipdex add PATH... [--wait] [--json]\n"
	"\n"
	"Indexes image files or folders (recursively). PATH is made absolute\n"
	"and read by the daemon. Without --wait the command returns once the\n"
	"work is queued; with --wait it prints what was added, updated,\n"
	"unchanged and failed (mind --timeout for big folders).\n",
	"remove",
	"usage: clipdex remove PATH... [--json]\n"
	"\n"
	"Forgets the image at PATH or every image under folder PATH. Files are\n"
	"never touched.\n",
	"status",
	"usage: clipdex status [--json]\n"
	"\n"
	"The daemon's counts, model, index, queue, uptime and memory. --json\n"
	"prints the daemon's status object as one line.\n",
	"failures",
	"usage: clipdex failures [--limit N] [--json]\n"
	"\n"
	"Files the daemon could not index, with the reason.\n",
	"dupes",
	"usage: clipdex dupes [--kind exact|near|similar] [--threshold T]\n"
	"                     [--prefix PATH] [--limit N] [--json | --csv]\n"
	"\n"
	"Duplicate groups in the collection, each with the copy to keep (largest\n"
	"resolution, then largest file, then earliest capture time, then\n"
	"shortest path) and each member's similarity to it.\n"
	"  --kind exact      identical files (same bytes) at different paths\n"
	"  --kind near       the same picture re-encoded, resized, cropped a\n"
	"                    little, rotated or edited (default)\n"
	"  --kind similar    similar shots (bursts) that are not near duplicates\n"
	"  --threshold T     cosine similarity (near: 0.97, similar: 0.90;\n"
	"                    see docs/DUPES.md)\n"
	"  --prefix PATH     only images under PATH\n"
	"  --limit N         groups per request (paging; default 100)\n"
	"  --json            one JSON object per group per line\n"
	"  --csv             one CSV row per image, with a header\n"
	"The default --timeout of dupes is 600000 (a big collection takes\n"
	"minutes).\n",
	"check",
	"usage: clipdex check FILE [--threshold T] [-k N] [--json]\n"
	"\n"
	"Is this image already in the collection? FILE is uploaded; the daemon\n"
	"lists the indexed files with the same bytes (exact) and the near\n"
	"duplicates (similarity >= T, default 0.97) with their similarity.\n",
	"retrieve",
	"usage: clipdex retrieve --prompts FILE [options] --out FILE.jsonl\n"
	"\n"
	"Retrieves images for many prompts at once (dataset curation). Each line\n"
	"of the prompts file is a text prompt, or @IMAGE for an example image\n"
	"(uploaded); blank lines and lines starting with # are skipped. Writes\n"
	"one JSON line per result: prompt, prompt_index, rank, id, path, score,\n"
	"width, height (and file with --copy-to/--link-to). Results are fetched\n"
	"page by page, so any k runs in bounded memory.\n"
	"  --example IMAGE   an example image prompt; repeatable\n"
	"  -k N              results per prompt (default 10, at most 100000)\n"
	"  --min-score S     stop a prompt's results below score S\n"
	"  --negative TEXT   subtracted from every prompt; repeatable\n"
	"  --negative-weight W  weight of the negatives (default 0.5)\n"
	"  --dedupe T        drop results at least T similar to a result kept\n"
	"                    before (for this prompt or an earlier one)\n"
	"  --allow-repeats   an image may appear under several prompts\n"
	"  --copy-to DIR     copy the files into DIR (name-1.jpg, ... when a\n"
	"                    name is taken; nothing is overwritten)\n"
	"  --link-to DIR     the same with symbolic links\n"
	"The default --timeout of retrieve is 600000.\n",
	NULL,
};

static const char global_usage[] =
	"Options of every daemon command:\n"
	"  --url URL             daemon address (default $CLIPDEX_URL, else\n"
	"                        ipc://$XDG_RUNTIME_DIR/clipdex.sock, else\n"
	"                        ipc:///tmp/clipdex-<uid>.sock)\n"
	"  --timeout MS          request timeout (default 30000; 0: none)\n"
	"  --connect-timeout MS  how long to wait for the daemon (default 3000)\n"
	"  --token T             access token (default $CLIPDEX_TOKEN)\n"
	"\n"
	"Exit codes: 0 ok (also when nothing matched), 1 the daemon returned an\n"
	"error (or a local input could not be read), 2 usage, 4 cannot reach the\n"
	"daemon (not running, no reply in time).\n";

static void
command_usage(FILE *f, const char *cmd)
{
	for (int i = 0; online_usage[i] != NULL; i += 2)
		if (strcmp(online_usage[i], cmd) == 0)
			fprintf(f, "%s\n%s", online_usage[i + 1], global_usage);
}

static int
parse_int(const char *opt, const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "%s: %s wants a whole number in %ld..%ld, not '%s'\n",
		    prog, opt, lo, hi, s);
		return -1;
	}
	*out = v;
	return 0;
}

static int
parse_float(const char *opt, const char *s, double lo, double hi, float *out)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || *end != '\0' || !(v >= lo && v <= hi)) {
		fprintf(stderr, "%s: %s wants a number in %g..%g, not '%s'\n", prog,
		    opt, lo, hi, s);
		return -1;
	}
	*out = (float)v;
	return 0;
}

/* Seconds since the epoch, or YYYY-MM-DD[(T| )HH:MM[:SS]] as UTC. */
static int
parse_time(const char *opt, const char *s, int64_t *out)
{
	struct tm tm;
	int y, mo, d, h = 0, mi = 0, se = 0, n = 0;
	char *end;

	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (end != s && *end == '\0' && errno == 0) {
		*out = v;
		return 0;
	}
	memset(&tm, 0, sizeof(tm));
	if ((sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) == 3 && s[n] == '\0') ||
	    (sscanf(s, "%4d-%2d-%2d%*[T ]%2d:%2d%n", &y, &mo, &d, &h, &mi, &n) == 5 &&
	    s[n] == '\0') ||
	    (sscanf(s, "%4d-%2d-%2d%*[T ]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &se,
	    &n) == 6 && s[n] == '\0')) {
		if (mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h >= 0 && h < 24 &&
		    mi >= 0 && mi < 60 && se >= 0 && se < 61) {
			tm.tm_year = y - 1900;
			tm.tm_mon = mo - 1;
			tm.tm_mday = d;
			tm.tm_hour = h;
			tm.tm_min = mi;
			tm.tm_sec = se;
			*out = (int64_t)timegm(&tm);
			return 0;
		}
	}
	fprintf(stderr, "%s: %s wants seconds since the epoch or "
	    "YYYY-MM-DD[THH:MM[:SS]], not '%s'\n", prog, opt, s);
	return -1;
}

/* Makes path absolute: realpath() when it exists, else lexically (".",
 * ".." and repeated "/" removed; a trailing "/" is kept).  Malloc'd. */
static char *
absolute_path(const char *path)
{
	size_t n = strlen(path);
	int trailing = n > 1 && path[n - 1] == '/';
	char *r = realpath(path, NULL);
	if (r != NULL) {
		if (trailing && strcmp(r, "/") != 0) {
			char *t = realloc(r, strlen(r) + 2);
			if (t == NULL) {
				free(r);
				return NULL;
			}
			strcat(t, "/");
			r = t;
		}
		return r;
	}
	char cwd[4096] = "";
	if (path[0] != '/' && getcwd(cwd, sizeof(cwd)) == NULL)
		return NULL;
	size_t cap = strlen(cwd) + n + 3;
	char *joined = malloc(cap), *out = malloc(cap);
	if (joined == NULL || out == NULL) {
		free(joined);
		free(out);
		return NULL;
	}
	snprintf(joined, cap, "%s/%s", cwd, path);
	size_t o = 0;
	for (char *p = joined; *p;) {
		while (*p == '/')
			p++;
		char *e = p + strcspn(p, "/");
		size_t len = (size_t)(e - p);
		if (len == 0 || (len == 1 && p[0] == '.')) {
		} else if (len == 2 && p[0] == '.' && p[1] == '.') {
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--;
		} else {
			out[o++] = '/';
			memcpy(out + o, p, len);
			o += len;
		}
		p = e;
	}
	if (o == 0 || trailing)
		out[o++] = '/';
	out[o] = '\0';
	free(joined);
	return out;
}

/* Reads one global option at argv[*i]; returns 1 if it was one, 0 if not,
 * -1 on a usage error. */
static int
global_opt(int argc, char **argv, int *i, struct gopts *g)
{
	const char *a = argv[*i];
	static const char *names[] = { "--url", "--timeout", "--token",
		"--connect-timeout" };
	for (int k = 0; k < 4; k++) {
		size_t nl = strlen(names[k]);
		const char *val;
		if (strncmp(a, names[k], nl) != 0 || (a[nl] != '\0' && a[nl] != '='))
			continue;
		if (a[nl] == '=') {
			val = a + nl + 1;
		} else if (*i + 1 < argc) {
			val = argv[++*i];
		} else {
			fprintf(stderr, "%s: %s needs a value\n", prog, names[k]);
			return -1;
		}
		long v;
		switch (k) {
		case 0: g->url = val; break;
		case 1:
			if (parse_int(names[k], val, 0, INT32_MAX, &v) != 0)
				return -1;
			g->timeout_ms = (int)v;
			break;
		case 2: g->token = val; break;
		case 3:
			if (parse_int(names[k], val, 0, INT32_MAX, &v) != 0)
				return -1;
			g->connect_ms = (int)v;
			break;
		}
		return 1;
	}
	return 0;
}

enum { OPT_SEARCH = 1, OPT_SIMILAR = 2, OPT_ADD = 4, OPT_REMOVE = 8,
	OPT_STATUS = 16, OPT_FAILURES = 32 };

/* Parses the options of a daemon command (argv[start..]). */
static int
parse_online(int argc, char **argv, int start, int cmd, struct sopts *o)
{
	int query_cmd = cmd & (OPT_SEARCH | OPT_SIMILAR);
	int only_positional = 0;

	for (int i = start; i < argc; i++) {
		char *a = argv[i];
		if (only_positional || a[0] != '-' || strcmp(a, "-") == 0) {
			if (!(cmd & (OPT_SEARCH | OPT_SIMILAR | OPT_ADD | OPT_REMOVE))) {
				fprintf(stderr, "%s: unexpected argument '%s'\n", prog, a);
				return EXIT_USAGE;
			}
			if (strlist_push(&o->words, a) != 0)
				return EXIT_INPUT;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			only_positional = 1;
			continue;
		}
		int g = global_opt(argc, argv, &i, &o->g);
		if (g < 0)
			return EXIT_USAGE;
		if (g > 0)
			continue;
		/* --name=value or -k N / -kN */
		char name[64];
		const char *val = NULL;
		const char *eq = strchr(a, '=');
		if (a[1] == 'k' && a[2] != '\0' && a[1] != '-') {
			snprintf(name, sizeof(name), "-k");
			val = a + 2;
		} else if (eq != NULL && a[1] == '-') {
			snprintf(name, sizeof(name), "%.*s", (int)(eq - a), a);
			val = eq + 1;
		} else {
			snprintf(name, sizeof(name), "%s", a);
		}
		static const struct { const char *name; int cmds; int takes; } known[] = {
			{ "-h", ~0, 0 }, { "--help", ~0, 0 },
			{ "--json", ~0, 0 },
			{ "--paths", OPT_SEARCH | OPT_SIMILAR, 0 },
			{ "-k", OPT_SEARCH | OPT_SIMILAR, 1 },
			{ "--offset", OPT_SEARCH | OPT_SIMILAR, 1 },
			{ "--min-score", OPT_SEARCH | OPT_SIMILAR, 1 },
			{ "--min-prob", OPT_SEARCH, 1 },
			{ "--prefix", OPT_SEARCH | OPT_SIMILAR, 1 },
			{ "--after", OPT_SEARCH | OPT_SIMILAR, 1 },
			{ "--before", OPT_SEARCH | OPT_SIMILAR, 1 },
			{ "--time", OPT_SEARCH | OPT_SIMILAR, 1 },
			{ "--collapse", OPT_SEARCH | OPT_SIMILAR, 1 },
			{ "--exact", OPT_SEARCH | OPT_SIMILAR, 0 },
			{ "--not", OPT_SEARCH, 1 },
			{ "--image", OPT_SEARCH, 1 },
			{ "--wait", OPT_ADD, 0 },
			{ "--limit", OPT_FAILURES, 1 },
		};
		int k = -1;
		for (size_t j = 0; j < sizeof(known) / sizeof(known[0]); j++)
			if (strcmp(known[j].name, name) == 0 && (known[j].cmds & cmd))
				k = (int)j;
		if (k < 0) {
			fprintf(stderr, "%s: unknown option '%s' (see %s %s --help)\n",
			    prog, name, prog, argv[start - 1]);
			return EXIT_USAGE;
		}
		if (known[k].takes && val == NULL) {
			if (i + 1 >= argc) {
				fprintf(stderr, "%s: %s needs a value\n", prog, name);
				return EXIT_USAGE;
			}
			val = argv[++i];
		} else if (!known[k].takes && val != NULL) {
			fprintf(stderr, "%s: %s takes no value\n", prog, name);
			return EXIT_USAGE;
		}
		long v;
		int bad = 0;
		if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0) {
			o->help = 1;
		} else if (strcmp(name, "--json") == 0) {
			o->json = 1;
		} else if (strcmp(name, "--paths") == 0) {
			o->paths = 1;
		} else if (strcmp(name, "-k") == 0) {
			bad = parse_int(name, val, 1, INT32_MAX, &v);
			o->q.k = (int)v;
		} else if (strcmp(name, "--offset") == 0) {
			bad = parse_int(name, val, 0, INT32_MAX, &v);
			o->q.offset = (int)v;
		} else if (strcmp(name, "--min-score") == 0) {
			bad = parse_float(name, val, -1.0, 1.0, &o->q.min_score);
			o->q.has_min_score = 1;
		} else if (strcmp(name, "--min-prob") == 0) {
			bad = parse_float(name, val, 0.0, 1.0, &o->q.min_prob);
			o->q.has_min_prob = 1;
		} else if (strcmp(name, "--prefix") == 0) {
			o->q.path_prefix = val;
		} else if (strcmp(name, "--after") == 0) {
			bad = parse_time(name, val, &o->after);
			o->has_after = 1;
		} else if (strcmp(name, "--before") == 0) {
			bad = parse_time(name, val, &o->before);
			o->has_before = 1;
		} else if (strcmp(name, "--time") == 0) {
			if (strcmp(val, "capture") == 0)
				o->q.time_field = CDX_TIME_CAPTURE;
			else if (strcmp(val, "mtime") == 0)
				o->q.time_field = CDX_TIME_MTIME;
			else {
				fprintf(stderr, "%s: --time wants capture or mtime\n", prog);
				bad = 1;
			}
		} else if (strcmp(name, "--collapse") == 0) {
			bad = parse_float(name, val, 1e-6, 1.0, &o->q.collapse);
		} else if (strcmp(name, "--exact") == 0) {
			o->q.exact = 1;
		} else if (strcmp(name, "--not") == 0) {
			bad = strlist_push(&o->nots, (char *)val) != 0;
		} else if (strcmp(name, "--image") == 0) {
			bad = strlist_push(&o->images, (char *)val) != 0;
		} else if (strcmp(name, "--wait") == 0) {
			o->wait = 1;
		} else if (strcmp(name, "--limit") == 0) {
			bad = parse_int(name, val, 1, INT32_MAX, &v);
			o->limit = (int)v;
		}
		if (bad)
			return EXIT_USAGE;
	}
	if (o->help)
		return 0;
	if (query_cmd) {
		if (o->json && o->paths) {
			fprintf(stderr, "%s: --json and --paths exclude each other\n",
			    prog);
			return EXIT_USAGE;
		}
		if (o->has_after || o->has_before) {
			if (o->q.time_field == CDX_TIME_NONE)
				o->q.time_field = CDX_TIME_CAPTURE;
			/* 0 means "open" to the library: 0 itself becomes 1 s later. */
			o->q.time_from = o->has_after ? (o->after == 0 ? 1 : o->after) : 0;
			if (o->has_before) {
				int64_t to = o->before - 1;   /* --before is exclusive */
				o->q.time_to = to == 0 ? -1 : to;
			}
		} else if (o->q.time_field != CDX_TIME_NONE) {
			fprintf(stderr, "%s: --time needs --after or --before\n", prog);
			return EXIT_USAGE;
		}
	}
	return 0;
}

static void
free_sopts(struct sopts *o)
{
	free(o->words.v);
	free(o->nots.v);
	free(o->images.v);
}

/* Opens the client with the global options; prints why it could not. */
static int
open_client(const struct gopts *g, cdx_client **c)
{
	int rc = cdx_client_open(g->url, c);
	if (rc != 0) {
		fprintf(stderr, "%s: %s\n", prog, cdx_client_errmsg(NULL));
		return rc == CDX_EINVAL ? EXIT_USAGE : EXIT_UNREACHABLE;
	}
	cdx_client_set_timeout(*c, g->timeout_ms);
	cdx_client_set_connect_timeout(*c, g->connect_ms);
	const char *token = g->token ? g->token : getenv("CLIPDEX_TOKEN");
	if (token != NULL && token[0] != '\0' &&
	    cdx_client_set_token(*c, token) != 0) {
		fprintf(stderr, "%s: out of memory\n", prog);
		cdx_client_close(*c);
		return EXIT_INPUT;
	}
	return 0;
}

/* Reports a failed call and gives the exit status for it. */
static int
call_failed(cdx_client *c, const char *what, int rc)
{
	const char *msg = cdx_client_errmsg(c);
	fprintf(stderr, "%s: %s: %s\n", prog, what, msg[0] ? msg :
	    cdx_strerror(rc));
	return rc == CDX_ECLOSED || rc == CDX_ETIMEDOUT ? EXIT_UNREACHABLE :
	    EXIT_DAEMON;
}

static void
print_time_field(const char *key, int64_t t)
{
	if (t == INT64_MIN)
		printf(",\"%s\":null", key);
	else
		printf(",\"%s\":%lld", key, (long long)t);
}

static void
print_results(const cdx_results *r, const struct sopts *o)
{
	if (o->paths) {
		for (size_t i = 0; i < r->n; i++)
			printf("%s\n", r->results[i].path);
		return;
	}
	if (o->json) {
		for (size_t i = 0; i < r->n; i++) {
			const cdx_result *x = &r->results[i];
			printf("{\"rank\":%zu,\"id\":%llu,\"path\":",
			    (size_t)o->q.offset + i + 1, (unsigned long long)x->id);
			print_json_string(x->path);
			printf(",\"score\":%.6f", (double)x->score);
			if (!isnan(x->prob))
				printf(",\"prob\":%.6f", x->prob);
			printf(",\"width\":%u,\"height\":%u,\"size\":%lld",
			    (unsigned)x->width, (unsigned)x->height,
			    (long long)x->size);
			print_time_field("mtime", x->mtime);
			print_time_field("capture_time", x->capture_time);
			print_time_field("added", x->added);
			fputs("}\n", stdout);
		}
		return;
	}
	if (r->n == 0) {
		fprintf(stderr, "%s: no results\n", prog);
		return;
	}
	int rank_w = 1, size_w = 1;
	for (size_t i = 0; i < r->n; i++) {
		char buf[64];
		int n = snprintf(buf, sizeof(buf), "%zu", (size_t)o->q.offset + i + 1);
		if (n > rank_w)
			rank_w = n;
		n = snprintf(buf, sizeof(buf), "%ux%u", (unsigned)r->results[i].width,
		    (unsigned)r->results[i].height);
		if (n > size_w)
			size_w = n;
	}
	for (size_t i = 0; i < r->n; i++) {
		const cdx_result *x = &r->results[i];
		char size[64];
		snprintf(size, sizeof(size), "%ux%u", (unsigned)x->width,
		    (unsigned)x->height);
		char prob[16] = "";
		if (!isnan(x->prob))   /* the match probability, SigLIP */
			snprintf(prob, sizeof(prob), "  %5.1f%%", 100.0 * x->prob);
		printf("%*zu  %6.3f%s  %-*s  %s\n", rank_w,
		    (size_t)o->q.offset + i + 1, (double)x->score, prob, size_w,
		    size, x->path);
	}
}

/* Builds the terms of a search: the parsed query, then --not and --image. */
static int
build_terms(struct sopts *o, cdx_terms **parsed, cdx_term **terms, size_t *n)
{
	size_t len = 0;
	char *joined = NULL;

	*parsed = NULL;
	if (o->words.n > 0) {
		for (size_t i = 0; i < o->words.n; i++)
			len += strlen(o->words.v[i]) + 1;
		if ((joined = malloc(len)) == NULL)
			return EXIT_INPUT;
		joined[0] = '\0';
		for (size_t i = 0; i < o->words.n; i++) {
			if (i)
				strcat(joined, " ");
			strcat(joined, o->words.v[i]);
		}
		if (cdx_query_parse(joined, parsed) != 0) {
			fprintf(stderr, "%s: bad query: %s\n", prog,
			    cdx_client_errmsg(NULL));
			free(joined);
			return EXIT_USAGE;
		}
		free(joined);
	}
	size_t base = *parsed ? (*parsed)->n : 0;
	*n = base + o->nots.n + o->images.n;
	if (*n == 0) {
		fprintf(stderr, "%s search: needs a QUERY, --image or --not (see "
		    "%s search --help)\n", prog, prog);
		return EXIT_USAGE;
	}
	if ((*terms = calloc(*n, sizeof(cdx_term))) == NULL)
		return EXIT_INPUT;
	for (size_t i = 0; i < base; i++)
		(*terms)[i] = (*parsed)->terms[i];
	for (size_t i = 0; i < o->nots.n; i++)
		(*terms)[base + i] = (cdx_term){ .kind = CDX_TERM_TEXT,
			.text = o->nots.v[i], .weight = -1.0f };
	for (size_t i = 0; i < o->images.n; i++)
		(*terms)[base + o->nots.n + i] = (cdx_term){ .kind = CDX_TERM_FILE,
			.text = o->images.v[i], .weight = 1.0f };
	return 0;
}

static int
finish_output(void)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "%s: cannot write the output: %s\n", prog,
		    strerror(errno));
		return EXIT_INPUT;
	}
	return 0;
}

static int
cmd_query(int argc, char **argv, int cmd)
{
	struct sopts o = { .g = { NULL, NULL, 30000, CLI_CONNECT_TIMEOUT_MS } };
	const char *name = cmd == OPT_SEARCH ? "search" : "similar";
	cdx_terms *parsed = NULL;
	cdx_term *terms = NULL, one = { 0 };
	cdx_results *r = NULL;
	cdx_client *c = NULL;
	char *abs = NULL;
	int status, rc;

	if ((status = parse_online(argc, argv, 2, cmd, &o)) != 0 || o.help) {
		if (o.help)
			command_usage(stdout, name);
		goto out;
	}
	if (cmd == OPT_SEARCH) {
		size_t n;
		if ((status = build_terms(&o, &parsed, &terms, &n)) != 0)
			goto out;
		o.q.terms = terms;
		o.q.n_terms = n;
	} else if (o.words.n != 1) {
		fprintf(stderr, "%s similar: needs one FILE, id:N or @FILE (see %s "
		    "similar --help)\n", prog, prog);
		status = EXIT_USAGE;
		goto out;
	}
	if ((status = open_client(&o.g, &c)) != 0)
		goto out;
	if (cmd == OPT_SEARCH) {
		rc = cdx_search(c, &o.q, &r);
	} else {
		const char *t = o.words.v[0];
		if (strncmp(t, "id:", 3) == 0 || t[0] == '@' ||
		    strncmp(t, "img:", 4) == 0) {
			if (cdx_query_parse(t, &parsed) != 0 || parsed->n != 1) {
				fprintf(stderr, "%s: %s\n", prog, cdx_client_errmsg(NULL));
				status = EXIT_USAGE;
				goto out;
			}
			one = parsed->terms[0];
		}
		if (strncmp(t, "id:", 3) == 0) {
			rc = cdx_similar(c, one.id, &o.q, &r);
		} else if (t[0] == '@' || strncmp(t, "img:", 4) == 0) {
			o.q.terms = &one;
			o.q.n_terms = 1;
			rc = cdx_search(c, &o.q, &r);
		} else {
			if ((abs = absolute_path(t)) == NULL) {
				fprintf(stderr, "%s: %s: %s\n", prog, t, strerror(errno));
				status = EXIT_INPUT;
				goto out;
			}
			rc = cdx_similar_path(c, abs, &o.q, &r);
		}
	}
	if (rc != 0) {
		status = call_failed(c, name, rc);
		goto out;
	}
	print_results(r, &o);
	status = finish_output();
out:
	cdx_results_free(r);
	cdx_client_close(c);
	cdx_terms_free(parsed);
	free(terms);
	free(abs);
	free_sopts(&o);
	return status;
}

/* "1 h 05 min", "3 min 20 s", "12 s" (static buffer). */
static const char *
eta_text(double s)
{
	static char buf[48];
	long t = (long)(s + 0.5);
	if (t >= 3600)
		snprintf(buf, sizeof(buf), "%ld h %02ld min", t / 3600,
		    t % 3600 / 60);
	else if (t >= 60)
		snprintf(buf, sizeof(buf), "%ld min %02ld s", t / 60, t % 60);
	else
		snprintf(buf, sizeof(buf), "%ld s", t);
	return buf;
}

/* add --wait on a terminal: a second connection polls the daemon's status
 * and draws a progress bar on stderr until the add returns. */
struct progress {
	const struct gopts *g;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
	pthread_t thread;
};

static void *
progress_main(void *arg)
{
	struct progress *p = arg;
	cdx_client *c = NULL;
	int drawn = 0;
	int64_t base = -1;

	if (cdx_client_open(p->g->url, &c) != 0)
		return NULL;
	cdx_client_set_timeout(c, 2000);
	const char *token = p->g->token ? p->g->token : getenv("CLIPDEX_TOKEN");
	if (token != NULL && token[0] != '\0')
		cdx_client_set_token(c, token);
	pthread_mutex_lock(&p->mu);
	while (!p->stop) {
		struct timespec dl;
		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_nsec += 250000000L;
		if (dl.tv_nsec >= 1000000000L) {
			dl.tv_sec++;
			dl.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&p->cv, &p->mu, &dl);
		if (p->stop)
			break;
		pthread_mutex_unlock(&p->mu);
		cdx_status s;
		if (cdx_get_status(c, &s) == 0) {
			if (base < 0)
				base = s.queue_done;
			int64_t done = s.queue_done - base, left = s.queue_remaining;
			int64_t total = done + left;
			int width = 30, fill = total > 0 ? (int)(width * done / total) :
			    0;
			char bar[64];
			for (int i = 0; i < width; i++)
				bar[i] = i < fill ? '#' : '.';
			bar[width] = '\0';
			fprintf(stderr, "\r[%s] %lld/%lld%s %.1f img/s", bar,
			    (long long)done, (long long)total,
			    s.scanning ? "+" : "", s.rate);
			if (s.eta_s >= 0 && left > 0)
				fprintf(stderr, ", %s left  ", eta_text(s.eta_s));
			else
				fputs("            ", stderr);
			drawn = 1;
		}
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	if (drawn)
		fprintf(stderr, "\r%70s\r", "");
	cdx_client_close(c);
	return NULL;
}

static int
progress_start(struct progress *p, const struct gopts *g)
{
	memset(p, 0, sizeof(*p));
	p->g = g;
	if (!isatty(STDERR_FILENO))
		return 0;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	if (pthread_create(&p->thread, NULL, progress_main, p) != 0) {
		pthread_cond_destroy(&p->cv);
		pthread_mutex_destroy(&p->mu);
		return 0;
	}
	return 1;
}

static void
progress_stop(struct progress *p, int started)
{
	if (!started)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->thread, NULL);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
}

static int
cmd_add_remove(int argc, char **argv, int cmd)
{
	struct sopts o = { .g = { NULL, NULL, 30000, CLI_CONNECT_TIMEOUT_MS } };
	const char *name = cmd == OPT_ADD ? "add" : "remove";
	cdx_client *c = NULL;
	int status;

	if ((status = parse_online(argc, argv, 2, cmd, &o)) != 0 || o.help) {
		if (o.help)
			command_usage(stdout, name);
		goto out;
	}
	if (o.words.n == 0) {
		fprintf(stderr, "%s %s: needs a PATH (see %s %s --help)\n", prog,
		    name, prog, name);
		status = EXIT_USAGE;
		goto out;
	}
	if ((status = open_client(&o.g, &c)) != 0)
		goto out;
	for (size_t i = 0; i < o.words.n && status == 0; i++) {
		char *abs = absolute_path(o.words.v[i]);
		int rc;
		if (abs == NULL) {
			fprintf(stderr, "%s: %s: %s\n", prog, o.words.v[i],
			    strerror(errno));
			status = EXIT_INPUT;
			break;
		}
		if (cmd == OPT_ADD) {
			cdx_add_result res;
			struct progress pg;
			int bar = o.wait && !o.json && progress_start(&pg, &o.g);
			rc = cdx_add(c, abs, o.wait, &res);
			progress_stop(&pg, bar);
			if (rc == 0 && o.json) {
				fputs("{\"path\":", stdout);
				print_json_string(abs);
				if (o.wait)
					printf(",\"added\":%lld,\"updated\":%lld,\"unchanged\":"
					    "%lld,\"failed\":%lld}\n", (long long)res.added,
					    (long long)res.updated, (long long)res.unchanged,
					    (long long)res.failed);
				else
					fputs(",\"queued\":true}\n", stdout);
			} else if (rc == 0 && o.wait) {
				printf("%s: added %lld, updated %lld, unchanged %lld, "
				    "failed %lld\n", abs, (long long)res.added,
				    (long long)res.updated, (long long)res.unchanged,
				    (long long)res.failed);
			} else if (rc == 0) {
				printf("%s: queued\n", abs);
			}
		} else {
			int64_t removed = 0;
			rc = cdx_remove(c, abs, &removed);
			if (rc == 0 && o.json) {
				fputs("{\"path\":", stdout);
				print_json_string(abs);
				printf(",\"removed\":%lld}\n", (long long)removed);
			} else if (rc == 0) {
				printf("%s: removed %lld\n", abs, (long long)removed);
			}
		}
		if (rc != 0)
			status = call_failed(c, name, rc);
		free(abs);
	}
	if (status == 0)
		status = finish_output();
out:
	cdx_client_close(c);
	free_sopts(&o);
	return status;
}

static void
print_bytes(int64_t b)
{
	if (b >= (int64_t)1 << 30)
		printf("%.1f GiB\n", (double)b / (1 << 30));
	else
		printf("%.1f MiB\n", (double)b / (1 << 20));
}

static int
cmd_status(int argc, char **argv)
{
	struct sopts o = { .g = { NULL, NULL, 30000, CLI_CONNECT_TIMEOUT_MS } };
	cdx_client *c = NULL;
	int status, rc;

	if ((status = parse_online(argc, argv, 2, OPT_STATUS, &o)) != 0 || o.help) {
		if (o.help)
			command_usage(stdout, "status");
		goto out;
	}
	if ((status = open_client(&o.g, &c)) != 0)
		goto out;
	if (o.json) {
		char *reply = NULL;
		rc = cdx_call(c, "{\"op\":\"status\"}", &reply);
		if (rc != 0) {
			status = call_failed(c, "status", rc);
			goto out;
		}
		printf("%s\n", reply);
		free(reply);
	} else {
		cdx_status s;
		rc = cdx_get_status(c, &s);
		if (rc != 0) {
			status = call_failed(c, "status", rc);
			goto out;
		}
		printf("url       %s\n", o.g.url ? o.g.url : cdx_default_url());
		printf("version   %s\n", s.version);
		printf("uptime    %.0f s\n", s.uptime_s);
		printf("images    %lld\n", (long long)s.images);
		printf("failures  %lld\n", (long long)s.failures);
		printf("model     %s (dim %d)\n", s.model_id, s.dim);
		printf("index     %s, %lld vectors\n", s.index_kind,
		    (long long)s.index_vectors);
		printf("indexing  %lld done, %lld remaining%s, %.1f images/s",
		    (long long)s.queue_done, (long long)s.queue_remaining,
		    s.scanning ? " (scanning)" : "", s.rate);
		if (s.eta_s >= 0 && s.queue_remaining > 0)
			printf(", about %s left", eta_text(s.eta_s));
		printf("\n");
		if (s.warning[0] != '\0')
			printf("warning   %s\n", s.warning);
		printf("memory    ");
		print_bytes(s.rss_bytes);
	}
	status = finish_output();
out:
	cdx_client_close(c);
	free_sopts(&o);
	return status;
}

static int
cmd_failures(int argc, char **argv)
{
	struct sopts o = { .g = { NULL, NULL, 30000, CLI_CONNECT_TIMEOUT_MS } };
	cdx_client *c = NULL;
	cdx_failures *f = NULL;
	int status, rc;

	if ((status = parse_online(argc, argv, 2, OPT_FAILURES, &o)) != 0 ||
	    o.help) {
		if (o.help)
			command_usage(stdout, "failures");
		goto out;
	}
	if ((status = open_client(&o.g, &c)) != 0)
		goto out;
	if ((rc = cdx_get_failures(c, o.limit, &f)) != 0) {
		status = call_failed(c, "failures", rc);
		goto out;
	}
	for (size_t i = 0; i < f->n; i++) {
		const cdx_failure *x = &f->items[i];
		if (o.json) {
			fputs("{\"path\":", stdout);
			print_json_string(x->path);
			fputs(",\"reason\":", stdout);
			print_json_string(x->reason);
			printf(",\"size\":%lld,\"mtime\":%lld,\"when\":%lld}\n",
			    (long long)x->size, (long long)x->mtime, (long long)x->when);
		} else {
			printf("%s: %s\n", x->path, x->reason);
		}
	}
	if (!o.json)
		fprintf(stderr, "%s: %zu of %lld failures shown\n", prog, f->n,
		    (long long)f->total);
	status = finish_output();
out:
	cdx_failures_free(f);
	cdx_client_close(c);
	free_sopts(&o);
	return status;
}

/* ---- dupes, check, retrieve (docs/DUPES.md) ---- */

/* Options of dupes, check and retrieve. */
struct copts {
	struct gopts g;
	int help, json, csv;
	const char *kind;
	float threshold;
	long k, limit;
	int has_min;
	float min_score, dedupe, neg_weight;
	int repeat;             /* retrieve --allow-repeats */
	const char *prefix, *prompts, *out, *copy_to, *link_to;
	struct strlist negatives, examples, words;
};

/* Parses argv[2..] for dupes/check/retrieve; returns 0 or an exit code. */
static int
parse_curate(int argc, char **argv, struct copts *o)
{
	static const char *const with_value[] = { "--threshold", "--kind",
		"--prefix", "--limit", "-k", "--k", "--min-score", "--negative",
		"--dedupe", "--example", "--prompts", "--out", "--copy-to",
		"--link-to", "--negative-weight", NULL };
	int only_positional = 0;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = NULL;
		char name[32];
		if (only_positional || strcmp(a, "-") == 0) {
			if (strlist_push(&o->words, argv[i]) != 0)
				return EXIT_INPUT;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			only_positional = 1;
			continue;
		}
		int r = global_opt(argc, argv, &i, &o->g);
		if (r < 0)
			return EXIT_USAGE;
		if (r > 0)
			continue;
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			o->help = 1;
			continue;
		}
		if (strcmp(a, "--json") == 0) {
			o->json = 1;
			continue;
		}
		if (strcmp(a, "--csv") == 0) {
			o->csv = 1;
			continue;
		}
		if (strcmp(a, "--allow-repeats") == 0) {
			o->repeat = 1;
			continue;
		}
		if (a[0] != '-') {
			if (strlist_push(&o->words, argv[i]) != 0)
				return EXIT_INPUT;
			continue;
		}
		/* --name=value or --name value */
		const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
		if (eq != NULL && (size_t)(eq - a) < sizeof(name)) {
			snprintf(name, sizeof(name), "%.*s", (int)(eq - a), a);
			a = name;
		}
		int known = 0;
		for (int k = 0; with_value[k] != NULL; k++)
			known |= strcmp(a, with_value[k]) == 0;
		if (!known) {
			fprintf(stderr, "%s: unknown option '%s'\n", prog, a);
			return EXIT_USAGE;
		}
		if (eq != NULL) {
			v = eq + 1;
		} else if (i + 1 >= argc) {
			fprintf(stderr, "%s: %s needs a value\n", prog, a);
			return EXIT_USAGE;
		} else {
			v = argv[++i];
		}
		if (strcmp(a, "--threshold") == 0) {
			if (parse_float(a, v, 1e-6, 1, &o->threshold) != 0)
				return EXIT_USAGE;
		} else if (strcmp(a, "--kind") == 0) {
			if (strcmp(v, "exact") != 0 && strcmp(v, "near") != 0 &&
			    strcmp(v, "similar") != 0) {
				fprintf(stderr, "%s: --kind wants exact, near or similar\n",
				    prog);
				return EXIT_USAGE;
			}
			o->kind = v;
		} else if (strcmp(a, "--prefix") == 0) {
			o->prefix = v;
		} else if (strcmp(a, "--limit") == 0) {
			if (parse_int(a, v, 1, 1000, &o->limit) != 0)
				return EXIT_USAGE;
		} else if (strcmp(a, "-k") == 0 || strcmp(a, "--k") == 0) {
			if (parse_int(a, v, 1, 100000, &o->k) != 0)
				return EXIT_USAGE;
		} else if (strcmp(a, "--min-score") == 0) {
			if (parse_float(a, v, -1, 1, &o->min_score) != 0)
				return EXIT_USAGE;
			o->has_min = 1;
		} else if (strcmp(a, "--dedupe") == 0) {
			if (parse_float(a, v, 1e-6, 1, &o->dedupe) != 0)
				return EXIT_USAGE;
		} else if (strcmp(a, "--negative-weight") == 0) {
			if (parse_float(a, v, 0, 10, &o->neg_weight) != 0)
				return EXIT_USAGE;
		} else if (strcmp(a, "--negative") == 0) {
			if (strlist_push(&o->negatives, (char *)v) != 0)
				return EXIT_INPUT;
		} else if (strcmp(a, "--example") == 0) {
			if (strlist_push(&o->examples, (char *)v) != 0)
				return EXIT_INPUT;
		} else if (strcmp(a, "--prompts") == 0) {
			o->prompts = v;
		} else if (strcmp(a, "--out") == 0) {
			o->out = v;
		} else if (strcmp(a, "--copy-to") == 0) {
			o->copy_to = v;
		} else if (strcmp(a, "--link-to") == 0) {
			o->link_to = v;
		}
	}
	return 0;
}

static void
free_copts(struct copts *o)
{
	free(o->negatives.v);
	free(o->examples.v);
	free(o->words.v);
}

/* Sends req (taken) and returns the parsed reply, or NULL after
 * reporting the failure in *status. */
static cJSON *
curate_call(cdx_client *c, const char *what, cJSON *req, int *status)
{
	char *body = cJSON_PrintUnformatted(req), *reply = NULL;
	cJSON *r = NULL;
	int rc;

	cJSON_Delete(req);
	if (body == NULL) {
		fprintf(stderr, "%s: out of memory\n", prog);
		*status = EXIT_INPUT;
		return NULL;
	}
	rc = cdx_call(c, body, &reply);
	free(body);
	if (rc != 0) {
		*status = call_failed(c, what, rc);
		return NULL;
	}
	if ((r = cJSON_Parse(reply)) == NULL) {
		fprintf(stderr, "%s: %s: the daemon's reply is not JSON\n", prog,
		    what);
		*status = EXIT_DAEMON;
	}
	free(reply);
	return r;
}

static double
jnum(const cJSON *o, const char *name, double def)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static const char *
jstr(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	return cJSON_IsString(v) ? v->valuestring : "";
}

/* Prints s as one CSV field (quoted when needed). */
static void
print_csv_field(const char *s)
{
	if (strpbrk(s, ",\"\n\r") == NULL) {
		fputs(s, stdout);
		return;
	}
	putchar('"');
	for (; *s; s++) {
		if (*s == '"')
			putchar('"');
		putchar(*s);
	}
	putchar('"');
}

static int
cmd_dupes(int argc, char **argv)
{
	struct copts o = { .g = { NULL, NULL, 600000, CLI_CONNECT_TIMEOUT_MS },
		.limit = 100 };
	cdx_client *c = NULL;
	long offset = 0, group = 0;
	int status;

	if ((status = parse_curate(argc, argv, &o)) != 0 || o.help) {
		if (o.help)
			command_usage(stdout, "dupes");
		goto out;
	}
	if (o.words.n > 0 || o.k || o.prompts || o.out || o.copy_to ||
	    o.link_to || o.negatives.n || o.examples.n || (o.json && o.csv)) {
		fprintf(stderr, "%s: dupes takes --kind, --threshold, --prefix, "
		    "--limit and one of --json, --csv\n", prog);
		status = EXIT_USAGE;
		goto out;
	}
	if ((status = open_client(&o.g, &c)) != 0)
		goto out;
	if (o.csv)
		puts("group,kind,keep,id,path,score,width,height,size,"
		    "capture_time,reason");
	for (;;) {
		cJSON *req = cJSON_CreateObject(), *rep;
		cJSON_AddStringToObject(req, "op", "dupes");
		if (o.kind != NULL)
			cJSON_AddStringToObject(req, "kind", o.kind);
		if (o.threshold > 0)
			cJSON_AddNumberToObject(req, "threshold", o.threshold);
		if (o.prefix != NULL) {
			char *abs = absolute_path(o.prefix);
			cJSON_AddStringToObject(req, "path_prefix", abs ? abs : o.prefix);
			free(abs);
		}
		cJSON_AddNumberToObject(req, "offset", (double)offset);
		cJSON_AddNumberToObject(req, "limit", (double)o.limit);
		if ((rep = curate_call(c, "dupes", req, &status)) == NULL)
			goto out;
		const cJSON *g, *groups = cJSON_GetObjectItemCaseSensitive(rep,
		    "groups");
		cJSON_ArrayForEach(g, groups) {
			const cJSON *m, *mem = cJSON_GetObjectItemCaseSensitive(g,
			    "members");
			group++;
			if (o.json) {
				char *s = cJSON_PrintUnformatted(g);
				if (s != NULL)
					puts(s);
				free(s);
				continue;
			}
			if (!o.csv)
				printf("group %ld: %s, %d images, keep %s (%s)\n", group,
				    jstr(g, "kind"), cJSON_GetArraySize(mem),
				    jstr(cJSON_GetArrayItem(mem, 0), "path"),
				    jstr(g, "reason"));
			cJSON_ArrayForEach(m, mem) {
				int keep = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m,
				    "keep"));
				const cJSON *ct = cJSON_GetObjectItemCaseSensitive(m,
				    "capture_time");
				if (o.csv) {
					printf("%ld,%s,%d,%.0f,", group, jstr(g, "kind"), keep,
					    jnum(m, "id", 0));
					print_csv_field(jstr(m, "path"));
					printf(",%.6f,%.0f,%.0f,%.0f,", jnum(m, "score", 0),
					    jnum(m, "width", 0), jnum(m, "height", 0),
					    jnum(m, "size", 0));
					if (cJSON_IsNumber(ct))
						printf("%.0f", ct->valuedouble);
					putchar(',');
					print_csv_field(keep ? jstr(g, "reason") : "");
					putchar('\n');
				} else {
					printf("  %s %.4f %5.0fx%-5.0f %10.0f  %s\n",
					    keep ? "keep" : "dup ", jnum(m, "score", 0),
					    jnum(m, "width", 0), jnum(m, "height", 0),
					    jnum(m, "size", 0), jstr(m, "path"));
				}
			}
		}
		const cJSON *next = cJSON_GetObjectItemCaseSensitive(rep,
		    "next_offset");
		if (!o.json && !o.csv && !cJSON_IsNumber(next))
			fprintf(stderr, "%s: %.0f %s groups (%.0f images) among the "
			    "collection, threshold %g\n", prog, jnum(rep,
			    "total_groups", 0), jstr(rep, "kind"), jnum(rep,
			    "total_images", 0), jnum(rep, "threshold", 0));
		offset = cJSON_IsNumber(next) ? (long)next->valuedouble : -1;
		cJSON_Delete(rep);
		if (offset < 0)
			break;
	}
	status = finish_output();
out:
	cdx_client_close(c);
	free_copts(&o);
	return status;
}

/* Adds {"image": base64 of FILE} to obj; prints why not. */
static int
add_file_image(cJSON *obj, const char *path)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf = NULL;
	char *b64 = NULL;
	long n;
	int rc = EXIT_INPUT;

	if (f == NULL) {
		fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
		return EXIT_INPUT;
	}
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0 || n > (64L << 20)) {
		fprintf(stderr, "%s: %s: cannot read (or over 64 MiB)\n", prog, path);
		goto out;
	}
	buf = malloc((size_t)n + 1);
	b64 = buf ? malloc(cdxi_base64_len((size_t)n) + 1) : NULL;
	if (b64 == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		fprintf(stderr, "%s: %s: cannot read\n", prog, path);
		goto out;
	}
	cdxi_base64_encode(buf, (size_t)n, b64);
	if (cJSON_AddStringToObject(obj, "image", b64) != NULL)
		rc = 0;
out:
	free(buf);
	free(b64);
	fclose(f);
	return rc;
}

static int
cmd_check(int argc, char **argv)
{
	struct copts o = { .g = { NULL, NULL, 30000, CLI_CONNECT_TIMEOUT_MS } };
	cdx_client *c = NULL;
	cJSON *req = NULL, *rep = NULL;
	int status;

	if ((status = parse_curate(argc, argv, &o)) != 0 || o.help) {
		if (o.help)
			command_usage(stdout, "check");
		goto out;
	}
	if (o.words.n != 1) {
		fprintf(stderr, "%s: check takes one FILE\n", prog);
		status = EXIT_USAGE;
		goto out;
	}
	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "op", "check");
	if (o.threshold > 0)
		cJSON_AddNumberToObject(req, "threshold", o.threshold);
	if (o.k > 0)
		cJSON_AddNumberToObject(req, "k", (double)(o.k > 1000 ? 1000 : o.k));
	if ((status = add_file_image(req, o.words.v[0])) != 0 ||
	    (status = open_client(&o.g, &c)) != 0)
		goto out;
	rep = curate_call(c, "check", req, &status);
	req = NULL;
	if (rep == NULL)
		goto out;
	if (o.json) {
		char *s = cJSON_PrintUnformatted(rep);
		if (s != NULL)
			puts(s);
		free(s);
	} else {
		const cJSON *h;
		int any = 0;
		cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(rep, "exact")) {
			printf("exact  1.0000  %s\n", jstr(h, "path"));
			any = 1;
		}
		cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(rep, "near")) {
			printf("near   %.4f  %s\n", jnum(h, "score", 0), jstr(h, "path"));
			any = 1;
		}
		fprintf(stderr, "%s: %s: %s\n", prog, o.words.v[0], any ?
		    "already in the collection" : "not in the collection");
	}
	status = finish_output();
out:
	cJSON_Delete(req);
	cJSON_Delete(rep);
	cdx_client_close(c);
	free_copts(&o);
	return status;
}

/* Copies (or symlinks) src into dir under its own name, or name-1.ext,
 * name-2.ext, ... when taken: nothing is overwritten.  The name used is
 * written to out.  Returns 0 or -1 (errno set). */
static int
materialise(const char *src, const char *dir, int link, char *out,
    size_t outlen)
{
	const char *base = strrchr(src, '/');
	base = base ? base + 1 : src;
	const char *dot = strrchr(base, '.');
	int stem = dot && dot != base ? (int)(dot - base) : (int)strlen(base);
	const char *ext = dot && dot != base ? dot : "";

	for (int n = 0; n < 100000; n++) {
		if (n == 0)
			snprintf(out, outlen, "%s/%s", dir, base);
		else
			snprintf(out, outlen, "%s/%.*s-%d%s", dir, stem, base, n, ext);
		if (link) {
			if (symlink(src, out) == 0)
				return 0;
			if (errno == EEXIST)
				continue;
			return -1;
		}
		int fd = open(out, O_WRONLY | O_CREAT | O_EXCL, 0644);
		if (fd < 0 && errno == EEXIST)
			continue;
		if (fd < 0)
			return -1;
		int in = open(src, O_RDONLY);
		char buf[65536];
		ssize_t r = in < 0 ? -1 : 0;
		while (in >= 0 && (r = read(in, buf, sizeof(buf))) > 0)
			if (write(fd, buf, (size_t)r) != r) {
				r = -1;
				break;
			}
		int e = errno;
		if (in >= 0)
			close(in);
		if (close(fd) != 0 && r == 0)
			r = -1, e = errno;
		if (r < 0) {
			unlink(out);
			errno = e;
			return -1;
		}
		return 0;
	}
	errno = EEXIST;
	return -1;
}

static int
cmd_retrieve(int argc, char **argv)
{
	struct copts o = { .g = { NULL, NULL, 600000, CLI_CONNECT_TIMEOUT_MS } };
	struct strlist lines = { 0 }, labels = { 0 };
	cdx_client *c = NULL;
	cJSON *req = NULL, *prompts, *negs;
	FILE *out = NULL;
	long offset = 0, n_written = 0, n_failed = 0;
	int status;

	if ((status = parse_curate(argc, argv, &o)) != 0 || o.help) {
		if (o.help)
			command_usage(stdout, "retrieve");
		goto out;
	}
	if ((o.prompts == NULL && o.examples.n == 0) || o.out == NULL ||
	    (o.copy_to && o.link_to) || o.words.n > 0) {
		fprintf(stderr, "%s: retrieve needs --prompts FILE (or --example "
		    "FILE) and --out FILE, and at most one of --copy-to, "
		    "--link-to\n", prog);
		status = EXIT_USAGE;
		goto out;
	}
	if (o.prompts != NULL && read_lines(o.prompts, &lines) != 0) {
		status = EXIT_INPUT;
		goto out;
	}
	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "op", "retrieve");
	prompts = cJSON_AddArrayToObject(req, "prompts");
	/* Prompt lines: text, or @FILE for an example image; blank lines and
	 * lines starting with '#' are skipped. */
	for (size_t i = 0; i < lines.n + o.examples.n; i++) {
		int ex = i >= lines.n;
		char *l = ex ? o.examples.v[i - lines.n] : lines.v[i];
		if (!ex && (l[0] == '\0' || l[0] == '#'))
			continue;
		if (ex || l[0] == '@') {
			cJSON *p = cJSON_CreateObject();
			cJSON_AddItemToArray(prompts, p);
			if ((status = add_file_image(p, ex ? l : l + 1)) != 0)
				goto out;
		} else {
			cJSON_AddItemToArray(prompts, cJSON_CreateString(l));
		}
		if (strlist_push(&labels, l) != 0) {
			status = EXIT_INPUT;
			goto out;
		}
	}
	if (labels.n == 0) {
		fprintf(stderr, "%s: %s has no prompts\n", prog, o.prompts);
		status = EXIT_USAGE;
		goto out;
	}
	if (o.negatives.n > 0) {
		negs = cJSON_AddArrayToObject(req, "negatives");
		for (size_t i = 0; i < o.negatives.n; i++)
			cJSON_AddItemToArray(negs, cJSON_CreateString(o.negatives.v[i]));
	}
	if (o.neg_weight > 0)
		cJSON_AddNumberToObject(req, "negative_weight", o.neg_weight);
	cJSON_AddNumberToObject(req, "k", (double)(o.k ? o.k : 10));
	if (o.has_min)
		cJSON_AddNumberToObject(req, "min_score", o.min_score);
	if (o.dedupe > 0)
		cJSON_AddNumberToObject(req, "dedupe", o.dedupe);
	if (o.repeat)
		cJSON_AddFalseToObject(req, "unique");
	cJSON_AddNumberToObject(req, "limit", 500);
	const char *dir = o.copy_to ? o.copy_to : o.link_to;
	if (dir != NULL && mkdir(dir, 0755) != 0 && errno != EEXIST) {
		fprintf(stderr, "%s: %s: %s\n", prog, dir, strerror(errno));
		status = EXIT_INPUT;
		goto out;
	}
	if ((out = strcmp(o.out, "-") == 0 ? stdout : fopen(o.out, "w")) == NULL) {
		fprintf(stderr, "%s: %s: %s\n", prog, o.out, strerror(errno));
		status = EXIT_INPUT;
		goto out;
	}
	if ((status = open_client(&o.g, &c)) != 0)
		goto out;
	/* One page at a time: memory stays bounded whatever k is. */
	for (;;) {
		cJSON *rep, *page = cJSON_Duplicate(req, 1);
		const cJSON *h;
		if (page == NULL) {
			status = EXIT_INPUT;
			goto out;
		}
		cJSON_AddNumberToObject(page, "offset", (double)offset);
		if ((rep = curate_call(c, "retrieve", page, &status)) == NULL)
			goto out;
		cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(rep,
		    "results")) {
			size_t pi = (size_t)jnum(h, "prompt", 0);
			cJSON *line = cJSON_CreateObject();
			cJSON_AddStringToObject(line, "prompt", pi < labels.n ?
			    labels.v[pi] : "");
			cJSON_AddNumberToObject(line, "prompt_index", (double)pi);
			cJSON_AddNumberToObject(line, "rank", jnum(h, "rank", 0));
			cJSON_AddNumberToObject(line, "id", jnum(h, "id", 0));
			cJSON_AddStringToObject(line, "path", jstr(h, "path"));
			cJSON_AddNumberToObject(line, "score", jnum(h, "score", 0));
			cJSON_AddNumberToObject(line, "width", jnum(h, "width", 0));
			cJSON_AddNumberToObject(line, "height", jnum(h, "height", 0));
			if (dir != NULL) {
				char dst[4096];
				if (materialise(jstr(h, "path"), dir, o.link_to != NULL,
				    dst, sizeof(dst)) == 0) {
					cJSON_AddStringToObject(line, "file", dst);
				} else {
					fprintf(stderr, "%s: %s: %s\n", prog, jstr(h, "path"),
					    strerror(errno));
					n_failed++;
				}
			}
			char *s = cJSON_PrintUnformatted(line);
			if (s != NULL)
				fprintf(out, "%s\n", s);
			free(s);
			cJSON_Delete(line);
			n_written++;
		}
		const cJSON *next = cJSON_GetObjectItemCaseSensitive(rep,
		    "next_offset");
		offset = cJSON_IsNumber(next) ? (long)next->valuedouble : -1;
		cJSON_Delete(rep);
		if (offset < 0)
			break;
	}
	if (out != stdout && fclose(out) != 0) {
		out = NULL;
		fprintf(stderr, "%s: %s: write error\n", prog, o.out);
		status = EXIT_INPUT;
		goto out;
	}
	if (out == stdout && (status = finish_output()) != 0) {
		out = NULL;
		goto out;
	}
	out = NULL;
	fprintf(stderr, "%s: %ld results for %zu prompts written to %s\n", prog,
	    n_written, labels.n, o.out);
	status = n_failed > 0 ? EXIT_INPUT : 0;
out:
	if (out != NULL && out != stdout)
		fclose(out);
	cJSON_Delete(req);
	for (size_t i = 0; i < lines.n; i++)
		free(lines.v[i]);
	free(lines.v);
	free(labels.v);
	cdx_client_close(c);
	free_copts(&o);
	return status;
}

static int
dispatch(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
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
	if (strcmp(argv[1], "embed") == 0)
		return cmd_embed(argc, argv);
	if (strcmp(argv[1], "tokenize") == 0)
		return cmd_tokenize(argc, argv);
	if (strcmp(argv[1], "help") == 0 && argc > 2 &&
	    strcmp(argv[2], "embed") != 0 && strcmp(argv[2], "tokenize") != 0) {
		for (int i = 0; online_usage[i] != NULL; i += 2)
			if (strcmp(online_usage[i], argv[2]) == 0) {
				command_usage(stdout, argv[2]);
				return 0;
			}
		fprintf(stderr, "%s: unknown command '%s'\n", prog, argv[2]);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "%s: unknown command '%s'\n", prog, argv[1]);
	usage(stderr);
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
		int i = first, r = global_opt(argc, argv, &i, &g);
		if (r == 0)
			fprintf(stderr, "%s: unknown option '%s'\n", prog, argv[first]);
		if (r <= 0)
			return EXIT_USAGE;
		first = i + 1;
	}
	if (first > 1) {
		if (first >= argc) {
			usage(stderr);
			return EXIT_USAGE;
		}
		if (strcmp(argv[first], "embed") == 0 ||
		    strcmp(argv[first], "tokenize") == 0) {
			fprintf(stderr, "%s: %s works offline: --url, --timeout, "
			    "--connect-timeout and --token do not apply\n", prog,
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
