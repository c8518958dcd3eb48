/*
 * demo_eval - held-out figures of the demo model (models/demo), computed
 * with clipdex's C encoder, beside PyTorch's on the same F16 weights.
 *
 *   demo_eval [--model DIR] [--dir EVALDIR] [--threads N]
 *
 * Without --dir it makes a temporary folder and runs
 * `tools/train_demo.py eval --model DIR --dir TMP` (Debian's python3 with
 * torch and PIL), which renders the held-out set (1000 scenes with other
 * seeds than training, 600 transformed copies, 420 queries in 7 families),
 * writes eval.json and PyTorch's embeddings (float64 forward of
 * tools/ref_clip.py) and figures.  Then this program encodes the same files
 * and texts with the C encoder (exact decode, clip_image_preprocess,
 * clip_tokenize, clip_encode_*), prints both tables and the least cosine
 * between the two implementations' embeddings, and fails when that is
 * below the encoder's tolerance (0.9999 images, 0.99999 texts, as
 * tests/encoder_e2e.c requires).
 *
 * Figures: text->image R@K is the share of queries with at least one
 * relevant held-out scene (one with every attribute the query names) in the
 * top K of 1000; P@10 the mean share of relevant scenes in the top 10.
 * image->image R@K: the share of copies whose original is in the top K.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/threads.h"
#include "encoder/clip.h"

#define N_K 3
static const int KS[N_K] = { 1, 5, 10 };

static char *
read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	if (buf) {
		buf[n] = 0;
		if (len)
			*len = (size_t)n;
	}
	return buf;
}

/* Encodes image files dir/<name> into out[n][dim]. */
static int
encode_files(const clip_model *m, clip_ctx *ctx, const char *dir,
    const char **names, int n, float *out)
{
	const clip_model_info *mi = clip_model_get_info(m);
	size_t px = 3u * (size_t)mi->image_size * (size_t)mi->image_size;
	float *buf = malloc(px * sizeof(float));
	if (!buf)
		return -1;
	for (int i = 0; i < n; i++) {
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		clip_image img;
		cdx_error err;
		if (clip_image_load(path, NULL, &img, &err) != 0 ||
		    clip_image_preprocess(&img, &mi->preprocess, buf, &err) != 0 ||
		    clip_encode_images(ctx, buf, 1, out + (size_t)i * mi->embed_dim,
		        &err) != 0) {
			fprintf(stderr, "demo_eval: %s\n", err.msg);
			free(buf);
			return -1;
		}
		clip_image_free(&img);
	}
	free(buf);
	return 0;
}

static float
dot(const float *a, const float *b, int d)
{
	float s = 0;
	for (int i = 0; i < d; i++)
		s += a[i] * b[i];
	return s;
}

/* Rank of the best relevant item: how many items score strictly higher
 * than it (ties counted above it, as a stable sort may place them). */
typedef struct {
	double hits[N_K], prec10;
	int n;
} tally;

static void
score_query(const float *q, const float *db, int n_db, int d,
    const unsigned char *rel, tally *t)
{
	float *s = malloc((size_t)n_db * sizeof(float));
	int top[10];
	for (int j = 0; j < n_db; j++)
		s[j] = dot(q, db + (size_t)j * d, d);
	/* top 10 by selection, lower index first among equals */
	unsigned char *used = calloc((size_t)n_db, 1);
	for (int r = 0; r < 10 && r < n_db; r++) {
		int b = -1;
		for (int j = 0; j < n_db; j++)
			if (!used[j] && (b < 0 || s[j] > s[b]))
				b = j;
		used[b] = 1;
		top[r] = b;
	}
	int first = 99, nrel = 0;
	for (int r = 0; r < 10 && r < n_db; r++)
		if (rel[top[r]]) {
			nrel++;
			if (first == 99)
				first = r;
		}
	for (int k = 0; k < N_K; k++)
		t->hits[k] += first < KS[k];
	t->prec10 += nrel / 10.0;
	t->n++;
	free(used);
	free(s);
}

static void
print_row(const char *name, const tally *t, int prec)
{
	printf("  %-12s", name);
	for (int k = 0; k < N_K; k++)
		printf(" %6.3f", t->hits[k] / t->n);
	if (prec)
		printf(" %6.3f", t->prec10 / t->n);
	printf("\n");
}

static void
print_torch(const cJSON *res)
{
	const char *parts[2] = { "text", "image" };
	printf("PyTorch (float64 forward, same F16 weights; tools/train_demo.py)\n");
	for (int p = 0; p < 2; p++) {
		printf("  %-12s %6s %6s %6s%s\n", p ? "image->image" : "text->image",
		    "R@1", "R@5", "R@10", p ? "" : "   P@10");
		const cJSON *o = cJSON_GetObjectItemCaseSensitive(res, parts[p]);
		const cJSON *f;
		cJSON_ArrayForEach(f, o) {
			printf("  %-12s", f->string);
			int c = 0;
			const cJSON *v;
			cJSON_ArrayForEach(v, f) {
				if (p == 0 || c < N_K)
					printf(" %6.3f", v->valuedouble);
				c++;
			}
			printf("\n");
		}
	}
}

static double
min_cos_file(const char *path, const float *e, int n, int d)
{
	size_t len;
	float *t = (float *)read_all(path, &len);
	if (!t || len != (size_t)n * d * sizeof(float)) {
		free(t);
		return NAN;
	}
	double worst = 1.0;
	for (int i = 0; i < n; i++) {
		double c = dot(e + (size_t)i * d, t + (size_t)i * d, d);
		if (c < worst)
			worst = c;
	}
	free(t);
	return worst;
}

int
main(int argc, char **argv)
{
	const char *model_dir = "models/demo", *dir = NULL;
	int threads = 1;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--model") && i + 1 < argc)
			model_dir = argv[++i];
		else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
			dir = argv[++i];
		else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			threads = atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: demo_eval [--model DIR] [--dir EVALDIR] "
			    "[--threads N]\n");
			return 2;
		}
	}
	char tmp[] = "/tmp/demo_eval.XXXXXX";
	if (!dir) {
		if (!mkdtemp(tmp)) {
			perror("demo_eval: mkdtemp");
			return 1;
		}
		dir = tmp;
		char cmd[8192];
		snprintf(cmd, sizeof cmd, "/usr/bin/python3 tools/train_demo.py eval "
		    "--model '%s' --dir '%s' >/dev/null", model_dir, dir);
		if (system(cmd) != 0) {
			fprintf(stderr, "demo_eval: %s failed (needs Debian's "
			    "python3-torch and python3-pil: tools/deps.sh --bench)\n", cmd);
			return 1;
		}
	}

	char path[4096];
	snprintf(path, sizeof path, "%s/eval.json", dir);
	char *js = read_all(path, NULL);
	cJSON *meta = js ? cJSON_Parse(js) : NULL;
	free(js);
	if (!meta) {
		fprintf(stderr, "demo_eval: cannot read %s\n", path);
		return 1;
	}
	const cJSON *images = cJSON_GetObjectItemCaseSensitive(meta, "images");
	const cJSON *copies = cJSON_GetObjectItemCaseSensitive(meta, "copies");
	const cJSON *queries = cJSON_GetObjectItemCaseSensitive(meta, "queries");
	int n_img = cJSON_GetArraySize(images), n_cp = cJSON_GetArraySize(copies);
	int n_q = cJSON_GetArraySize(queries);

	clip_model_params mp;
	clip_model_default_params(&mp);
	cdx_threads_set(threads);
	clip_model *m;
	clip_ctx *ctx;
	cdx_error err;
	if (clip_model_load(model_dir, &mp, &m, &err) != 0 ||
	    clip_ctx_new(m, 16, &ctx, &err) != 0) {
		fprintf(stderr, "demo_eval: %s\n", err.msg);
		return 1;
	}
	int d = clip_model_get_info(m)->embed_dim;
	const char **names = malloc(sizeof(char *) * (size_t)(n_img + n_cp));
	int *of = malloc(sizeof(int) * (size_t)n_cp);
	const char **kinds = malloc(sizeof(char *) * (size_t)n_cp);
	for (int i = 0; i < n_img; i++)
		names[i] = cJSON_GetArrayItem(images, i)->valuestring;
	for (int i = 0; i < n_cp; i++) {
		const cJSON *c = cJSON_GetArrayItem(copies, i);
		names[n_img + i] =
		    cJSON_GetObjectItemCaseSensitive(c, "file")->valuestring;
		of[i] = cJSON_GetObjectItemCaseSensitive(c, "of")->valueint;
		kinds[i] = cJSON_GetObjectItemCaseSensitive(c, "kind")->valuestring;
	}
	float *ie = malloc(sizeof(float) * (size_t)(n_img + n_cp) * d);
	float *te = malloc(sizeof(float) * (size_t)n_q * d);
	if (encode_files(m, ctx, dir, names, n_img + n_cp, ie) != 0)
		return 1;
	const clip_tokenizer *tok = clip_model_tokenizer(m);
	for (int i = 0; i < n_q; i++) {
		const char *text = cJSON_GetObjectItemCaseSensitive(
		    cJSON_GetArrayItem(queries, i), "text")->valuestring;
		int32_t ids[CLIP_CONTEXT_LEN];
		if (clip_tokenize(tok, text, strlen(text), ids, NULL, &err) != 0 ||
		    clip_encode_text(ctx, ids, 1, te + (size_t)i * d, &err) != 0) {
			fprintf(stderr, "demo_eval: '%s': %s\n", text, err.msg);
			return 1;
		}
	}

	/* text -> image, per family, in the order of first appearance */
	unsigned char *rel = malloc((size_t)n_img);
	const char *fams[16];
	tally ft[16];
	int n_f = 0;
	for (int i = 0; i < n_q; i++) {
		const cJSON *q = cJSON_GetArrayItem(queries, i);
		const char *fam =
		    cJSON_GetObjectItemCaseSensitive(q, "family")->valuestring;
		int f = 0;
		while (f < n_f && strcmp(fams[f], fam))
			f++;
		if (f == n_f) {
			if (n_f == 16)
				continue;
			fams[n_f] = fam;
			memset(&ft[n_f++], 0, sizeof(tally));
		}
		memset(rel, 0, (size_t)n_img);
		const cJSON *r;
		cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(q, "relevant"))
			if (r->valueint >= 0 && r->valueint < n_img)
				rel[r->valueint] = 1;
		score_query(te + (size_t)i * d, ie, n_img, d, rel, &ft[f]);
	}
	const char *ck[3] = { "jpeg", "resized", "cropped" };
	tally ct[3];
	memset(ct, 0, sizeof ct);
	for (int i = 0; i < n_cp; i++) {
		int k = 0;
		while (k < 3 && strcmp(kinds[i], ck[k]))
			k++;
		if (k == 3)
			continue;
		memset(rel, 0, (size_t)n_img);
		rel[of[i]] = 1;
		score_query(ie + (size_t)(n_img + i) * d, ie, n_img, d, rel, &ct[k]);
	}

	printf("demo model %s: %d held-out scenes, %d copies, %d queries\n",
	    clip_model_get_info(m)->id, n_img, n_cp, n_q);
	printf("clipdex C encoder\n  %-12s %6s %6s %6s   P@10\n", "text->image",
	    "R@1", "R@5", "R@10");
	for (int f = 0; f < n_f; f++)
		print_row(fams[f], &ft[f], 1);
	printf("  %-12s %6s %6s %6s\n", "image->image", "R@1", "R@5", "R@10");
	for (int k = 0; k < 3; k++)
		if (ct[k].n)
			print_row(ck[k], &ct[k], 0);

	int status = 0;
	snprintf(path, sizeof path, "%s/torch.json", dir);
	char *tj = read_all(path, NULL);
	cJSON *tres = tj ? cJSON_Parse(tj) : NULL;
	free(tj);
	if (tres) {
		print_torch(tres);
		cJSON_Delete(tres);
		char p1[4096], p2[4096], p3[4096];
		snprintf(p1, sizeof p1, "%s/torch_images.f32", dir);
		snprintf(p2, sizeof p2, "%s/torch_copies.f32", dir);
		snprintf(p3, sizeof p3, "%s/torch_texts.f32", dir);
		double ci = fmin(min_cos_file(p1, ie, n_img, d),
		    min_cos_file(p2, ie + (size_t)n_img * d, n_cp, d));
		double ct_ = min_cos_file(p3, te, n_q, d);
		printf("least cosine C vs PyTorch: images %.7f (tolerance 0.9999), "
		    "texts %.7f (tolerance 0.99999)\n", ci, ct_);
		if (!(ci >= 0.9999 && ct_ >= 0.99999)) {
			fprintf(stderr, "demo_eval: C and PyTorch disagree\n");
			status = 1;
		}
	} else {
		printf("(no %s: PyTorch figures not available)\n", path);
	}

	if (dir == tmp) {
		char cmd[256];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
		if (system(cmd) != 0)
			fprintf(stderr, "demo_eval: could not remove %s\n", tmp);
	}
	free(rel);
	free(te);
	free(ie);
	free(kinds);
	free(of);
	free(names);
	cJSON_Delete(meta);
	clip_ctx_free(ctx);
	clip_model_free(m);
	return status;
}
