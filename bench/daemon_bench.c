/*
 * daemon_bench - end-to-end text query latency of clipdexd beside the bare
 * encoder + store search, in one run.
 *
 *   daemon_bench [--n 100000] [--queries 60] [--threads 2]
 *
 * A ViT-B/32-shaped model with random weights (F16 on disk) and a store of
 * n normalised 512-d vectors with cluster structure (exact index).  First
 * the bare cost: tokenize + encode a short text + store_search top-10, in
 * this process.  Then the same queries through clipdexd (started in this
 * process with srv_start, listening on ipc:// and HTTP) from 1, 4 and 16
 * concurrent clients: p50/p99 latency and queries per second.  Targets:
 * one client's p50 within 1.2x of the bare p50, and under 25 ms.
 */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client/clipdex.h"
#include "common/cdx.h"
#include "daemon/daemon.h"
#include "common/threads.h"
#include "encoder/clip.h"
#include "store/store.h"
#include "tests/testmodel.h"

static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double
pct(double *v, size_t n, double p)
{
	qsort(v, n, sizeof(*v), cmp_double);
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

static const char *const words[] = { "dog", "cat", "beach", "sunset", "car",
	"mountain", "city", "snow", "forest", "river", "bird", "child", "boat",
	"bridge", "flower", "night" };

static void
query_text(int i, char *out, size_t n)
{
	snprintf(out, n, "a photo of a %s near a %s", words[i % 16],
	    words[(i * 7 + 3) % 16]);
}

static uint64_t
rng(uint64_t *s)
{
	*s += 0x9e3779b97f4a7c15ull;
	uint64_t z = *s;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static float
gauss(uint64_t *s)
{
	double u = ((double)(rng(s) >> 11) + 0.5) / 9007199254740992.0;
	double v = ((double)(rng(s) >> 11) + 0.5) / 9007199254740992.0;
	return (float)(sqrt(-2 * log(u)) * cos(2 * M_PI * v));
}

/* n clustered unit vectors into the store, in batches. */
static int
fill_store(store *st, size_t n, int dim)
{
	int nc = 2000, batch = 1000;
	float *centres = malloc(sizeof(float) * (size_t)nc * dim);
	float *emb = malloc(sizeof(float) * (size_t)batch * dim);
	store_image *imgs = calloc((size_t)batch, sizeof(*imgs));
	char (*paths)[64] = malloc((size_t)batch * 64);
	uint64_t s = 12345;
	cdx_error err;

	if (!centres || !emb || !imgs || !paths)
		return -1;
	for (size_t i = 0; i < (size_t)nc * dim; i++)
		centres[i] = gauss(&s);
	for (size_t done = 0; done < n;) {
		int b = (int)(n - done < (size_t)batch ? n - done : (size_t)batch);
		for (int j = 0; j < b; j++) {
			int c = (int)(rng(&s) % (uint64_t)nc);
			float spread = 0.2f + 0.8f * (float)(c % 10) / 10.0f;
			for (int d = 0; d < dim; d++)
				emb[(size_t)j * dim + d] = centres[(size_t)c * dim + d] /
				    sqrtf((float)dim) + spread * gauss(&s) / sqrtf((float)dim);
			snprintf(paths[j], 64, "/bench/%06zu/img%zu.jpg", (done + j) /
			    1000, done + j);
			memset(&imgs[j], 0, sizeof(imgs[j]));
			imgs[j].path = paths[j];
			imgs[j].size = 1000000;
			imgs[j].mtime_ns = 1600000000000000000ll;
			imgs[j].width = 4000;
			imgs[j].height = 3000;
			imgs[j].capture_time = STORE_TIME_UNKNOWN;
			imgs[j].embedding = emb + (size_t)j * dim;
		}
		if (store_image_put(st, imgs, (size_t)b, &err) != 0) {
			fprintf(stderr, "store_image_put: %s\n", err.msg);
			return -1;
		}
		done += (size_t)b;
	}
	free(centres);
	free(emb);
	free(imgs);
	free(paths);
	return 0;
}

/* ---- clients ---- */

struct client_arg {
	const char *url;        /* nng URL, or NULL for HTTP */
	int port;
	int first, count;
	double *lat;
	double *took;           /* the daemon's own time (took_ms), nng only */
	int fails;
};

static int
http_post(int port, const char *body, char *resp, size_t cap)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(
	    (uint16_t)port) };
	char req[1024];
	size_t got = 0;

	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	int n = snprintf(req, sizeof(req), "POST /api HTTP/1.1\r\nHost: "
	    "127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: "
	    "%zu\r\nConnection: close\r\n\r\n%s", strlen(body), body);
	if (write(fd, req, (size_t)n) != n) {
		close(fd);
		return -1;
	}
	for (;;) {
		ssize_t r = read(fd, resp + got, cap - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
		if (got == cap - 1)
			break;
	}
	resp[got] = '\0';
	close(fd);
	return strstr(resp, "\"ok\":true") ? 0 : -1;
}

static void *
client_main(void *arg)
{
	struct client_arg *a = arg;
	cdx_client *c = NULL;
	char text[128], body[256];
	static _Thread_local char resp[65536];

	if (a->url != NULL && cdx_client_open(a->url, &c) != 0) {
		a->fails = a->count;
		return NULL;
	}
	for (int i = 0; i < a->count; i++) {
		query_text(a->first + i, text, sizeof(text));
		double t0 = now();
		int rc;
		if (c != NULL) {
			cdx_term t = { .kind = CDX_TERM_TEXT, .text = text, .weight = 1 };
			cdx_query q = { .terms = &t, .n_terms = 1, .k = 10 };
			cdx_results *r = NULL;
			rc = cdx_search(c, &q, &r);
			a->took[i] = rc == 0 ? r->took_ms : 0;
			cdx_results_free(r);
		} else {
			snprintf(body, sizeof(body), "{\"op\":\"search\",\"text\":\"%s\","
			    "\"k\":10}", text);
			rc = http_post(a->port, body, resp, sizeof(resp));
		}
		a->lat[i] = (now() - t0) * 1000.0;
		a->fails += rc != 0;
	}
	cdx_client_close(c);
	return NULL;
}

static void
run_clients(const char *label, const char *url, int port, int nclients,
    int queries, double bare_p50)
{
	pthread_t th[16];
	struct client_arg a[16];
	double *lat = malloc(sizeof(double) * (size_t)queries);
	double *took = calloc((size_t)queries, sizeof(double));
	int per = queries / nclients, fails = 0;
	size_t n = 0;

	double t0 = now();
	for (int i = 0; i < nclients; i++) {
		a[i] = (struct client_arg){ url, port, i * per, per, lat + n,
		    took + n, 0 };
		n += (size_t)per;
		pthread_create(&th[i], NULL, client_main, &a[i]);
	}
	for (int i = 0; i < nclients; i++) {
		pthread_join(th[i], NULL);
		fails += a[i].fails;
	}
	double wall = now() - t0;
	double p50 = pct(lat, n, 0.5), p99 = pct(lat, n, 0.99);
	printf("  %-5s %2d client%s  p50 %7.2f ms  p99 %7.2f ms  %6.1f q/s",
	    label, nclients, nclients == 1 ? " " : "s", p50, p99,
	    (double)n / wall);
	if (nclients == 1)
		printf("  = %.2fx bare (target <= 1.2x; p50 target < 25 ms)",
		    p50 / bare_p50);
	if (url != NULL && nclients == 1)
		printf("; in the daemon p50 %.2f ms", pct(took, n, 0.5));
	if (fails)
		printf("  (%d failed)", fails);
	printf("\n");
	free(lat);
	free(took);
}

int
main(int argc, char **argv)
{
	size_t n = 100000;
	int queries = 60, threads = 2;
	cdx_error err;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--n") == 0)
			n = (size_t)atol(argv[i + 1]);
		else if (strcmp(argv[i], "--queries") == 0)
			queries = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--threads") == 0)
			threads = atoi(argv[i + 1]);
	}
	queries = queries < 16 ? 16 : queries / 16 * 16;

	char dir[] = "/tmp/cdx-daemon-bench-XXXXXX";
	if (mkdtemp(dir) == NULL)
		return 1;
	char model_dir[128], store_dir[128], url[160];
	snprintf(model_dir, sizeof(model_dir), "%s/model", dir);
	snprintf(store_dir, sizeof(store_dir), "%s/store", dir);
	snprintf(url, sizeof(url), "ipc://%s/d.sock", dir);
	mkdir(model_dir, 0755);

	tm_recipe r;
	tm_recipe_vit_b32(&r);
	if (tm_write_model(&r, model_dir) != 0)
		return 1;

	/* Bare: encoder + store in this process. */
	clip_model_params mp;
	clip_model_default_params(&mp);
	cdx_threads_set(threads);
	clip_model *m = NULL;
	clip_ctx *ctx = NULL;
	if (clip_model_load(model_dir, &mp, &m, &err) != 0 ||
	    clip_ctx_new(m, 1, &ctx, &err) != 0) {
		fprintf(stderr, "model: %s\n", err.msg);
		return 1;
	}
	const clip_model_info *info = clip_model_get_info(m);
	store_params sp = store_default_params();
	sp.dim = info->embed_dim;
	sp.model_id = info->key;
	sp.index_kind = "flat";
	store *st = NULL;
	if (store_open(store_dir, &sp, &st, &err) != 0) {
		fprintf(stderr, "store: %s\n", err.msg);
		return 1;
	}
	double t0 = now();
	if (fill_store(st, n, info->embed_dim) != 0)
		return 1;
	printf("daemon_bench: ViT-B/32-shaped model, %zu vectors (exact index), "
	    "%d threads; stored in %.1f s\n", n, threads, now() - t0);

	double *bare = malloc(sizeof(double) * (size_t)queries);
	double *benc = malloc(sizeof(double) * (size_t)queries);
	float q[512];
	for (int i = 0; i < queries; i++) {
		char text[128];
		int32_t ids[CLIP_CONTEXT_LEN];
		store_results *res = NULL;
		query_text(i, text, sizeof(text));
		double a = now();
		clip_tokenize(clip_model_tokenizer(m), text, strlen(text), ids, NULL,
		    NULL);
		clip_encode_text(ctx, ids, 1, q, NULL);
		double b = now();
		store_search(st, q, 10, NULL, &res, NULL);
		double c = now();
		store_results_free(res);
		bare[i] = (c - a) * 1000.0;
		benc[i] = (b - a) * 1000.0;
	}
	double bare_p50 = pct(bare, (size_t)queries, 0.5);
	printf("  bare  encode + search  p50 %7.2f ms  p99 %7.2f ms  (encode "
	    "p50 %.2f ms)\n", bare_p50, pct(bare, (size_t)queries, 0.99),
	    pct(benc, (size_t)queries, 0.5));
	store_close(st);
	clip_ctx_free(ctx);
	clip_model_free(m);

	/* The daemon, in this process. */
	srv_config cfg;
	srv_config_init(&cfg);
	char *args[] = { "clipdexd", "--model", model_dir, "--store", store_dir,
		"--listen", url, "--http", "127.0.0.1:17847", "--index-kind", "flat",
		"--threads", NULL, NULL };
	char tbuf[16];
	snprintf(tbuf, sizeof(tbuf), "%d", threads);
	args[12] = tbuf;
	srv *s = NULL;
	if (srv_config_parse_args(&cfg, 13, args, &err) != 0 ||
	    srv_config_finish(&cfg, &err) != 0 || srv_start(&cfg, &s, &err) != 0) {
		fprintf(stderr, "clipdexd: %s\n", err.msg);
		return 1;
	}
	/* Warm the daemon up (first touches of its model and index pages). */
	{
		double w[16], t[16];
		struct client_arg wa = { url, 0, 1000, 16, w, t, 0 };
		client_main(&wa);
	}
	int conc[] = { 1, 4, 16 };
	for (int i = 0; i < 3; i++)
		run_clients("ipc", url, 0, conc[i], queries, bare_p50);
	for (int i = 0; i < 3; i++)
		run_clients("http", NULL, 17847, conc[i], queries, bare_p50);
	srv_stop(s);
	srv_config_free(&cfg);
	free(bare);
	free(benc);
	tm_rmtree(dir);
	return 0;
}
