/*
 * indexer_bench.c - end-to-end indexing rate against the ideal.
 *
 * Writes a ViT-B/32-shaped model (random weights) and folders of
 * photo-like JPEGs (2 MP, and 12 MP saved both baseline and progressive,
 * quality 90), then, in the same run:
 *   decode  CPU seconds per image of read + decode (fast mode) + preprocess,
 *           one thread (progressive: also with every scan decoded, as
 *           before scan skipping);
 *   encode  the encoder alone on already-decoded tensors: images per second
 *           and CPU seconds per image (OpenBLAS on every core);
 *   ideal   cores / (encode CPU s + decode CPU s) per image (CPU ideal),
 *           and min(encoder rate, decode rate x cores), decode rate being
 *           1 / decode CPU s (stage ideal);
 *   index   the indexer (watch_add on the folder, fresh store): images/s,
 *           with the decode and encoder thread counts of the defaults and
 *           of the alternatives, and once more with text queries running
 *           meanwhile (their latency printed).
 * then the resident memory at the start and end of a scan of many small
 * files (tiny model), which should not grow with the number of files, and
 * finally batching (tiny model): NBATCH small files, every fifth broken
 * (a failure record), indexed, then their folder renamed and indexed again
 * (each record moved, each failure recorded again): files per second and
 * store commits per 1,000 files (store_stats.commits; LMDB syncs each
 * commit to disk).
 *
 * usage: indexer_bench [N12 N2 NSMALL [PRECISION [NBATCH]]]
 *        (default 48 128 20000 auto 5000; PRECISION: auto, fp32, bf16, int8)
 */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>
#include <turbojpeg.h>

#include "common/threads.h"
#include "encoder/image_internal.h"
#include "indexer/indexer.h"
#include "tests/testmodel.h"

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double
cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double
thread_cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Anonymous resident memory (the heap: what the pipeline could leak);
 * the store's memory-mapped file pages are counted apart, in *file. */
static long
rss_kib_file(long *file)
{
	char line[256];
	long anon = 0;
	FILE *f = fopen("/proc/self/status", "r");
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "RssAnon:", 8) == 0)
			anon = atol(line + 8);
		else if (file != NULL && strncmp(line, "RssFile:", 8) == 0)
			*file = atol(line + 8);
	}
	fclose(f);
	return anon;
}

static long
rss_kib(void)
{
	return rss_kib_file(NULL);
}

/* Photo-like pixels: smooth light, a horizon, textured regions, noise;
 * flags: TurboJPEG's (0 or TJFLAG_PROGRESSIVE). */
static int
write_photo(const char *path, int w, int h, unsigned seed, int flags)
{
	unsigned char *rgb = malloc((size_t)w * h * 3), *jpeg = NULL;
	unsigned long len = 0;
	tjhandle tj = tjInitCompress();
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
	int horizon = h / 3 + (int)(seed % 7) * h / 20;

	if (rgb == NULL || tj == NULL)
		return -1;
	for (int y = 0; y < h; y++) {
		for (int i = 0; i < w; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			int noise = (int)(x & 15) - 8;
			unsigned char *p = rgb + ((size_t)y * w + i) * 3;
			if (y < horizon) {
				p[0] = (unsigned char)(90 + 60 * y / horizon + noise);
				p[1] = (unsigned char)(140 + 50 * y / horizon + noise);
				p[2] = (unsigned char)(230 - 20 * y / horizon + noise);
			} else {
				int t = ((i / (7 + (int)(seed % 5))) ^ (y / 9)) & 31;
				p[0] = (unsigned char)(60 + t * 2 + (int)(seed * 13 % 60) +
				    noise);
				p[1] = (unsigned char)(90 + t + (i * 40 / w) + noise);
				p[2] = (unsigned char)(40 + t / 2 + noise);
			}
		}
	}
	int rc = tjCompress2(tj, rgb, w, 0, h, TJPF_RGB, &jpeg, &len, TJSAMP_420,
	    90, flags);
	free(rgb);
	tjDestroy(tj);
	if (rc != 0)
		return -1;
	FILE *f = fopen(path, "wb");
	if (f == NULL || fwrite(jpeg, 1, len, f) != len) {
		if (f)
			fclose(f);
		tjFree(jpeg);
		return -1;
	}
	fclose(f);
	tjFree(jpeg);
	return 0;
}

struct done {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int n;
	watch_result r;
};

static void
on_done(void *user, const char *path, const watch_result *r)
{
	struct done *d = user;
	(void)path;
	pthread_mutex_lock(&d->mu);
	d->r = *r;
	d->n = 1;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

static store *
open_store(const char *dir, const clip_model *m)
{
	store_params sp = store_default_params();
	const clip_model_info *info = clip_model_get_info(m);
	store *st = NULL;
	cdx_error err;
	sp.dim = info->embed_dim;
	sp.model_id = info->key;
	if (store_open(dir, &sp, &st, &err) != 0) {
		fprintf(stderr, "store_open: %s\n", err.msg);
		exit(1);
	}
	return st;
}

/* Indexes folder with a fresh store; returns wall seconds. */
static double
index_folder(const char *folder, const char *store_dir, const clip_model *m,
    const watch_params *p, long *rss0, long *rss1, int64_t *n_out)
{
	store *st = open_store(store_dir, m);
	watch *w;
	cdx_error err;
	struct done d = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
	    0, { 0 } };

	if (watch_start(st, m, p, &w, &err) != 0) {
		fprintf(stderr, "watch_start: %s\n", err.msg);
		exit(1);
	}
	double t0 = now_s();
	if (rss0 != NULL)
		*rss0 = 0;
	watch_add(w, folder, 0, on_done, &d);
	pthread_mutex_lock(&d.mu);
	while (!d.n) {
		struct timespec dl;
		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_nsec += 100000000L;
		if (dl.tv_nsec >= 1000000000L) {
			dl.tv_sec++;
			dl.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&d.cv, &d.mu, &dl);
		if (rss0 != NULL && *rss0 == 0) {
			watch_progress pr;
			watch_get_progress(w, &pr);
			if (pr.done >= 1000)
				*rss0 = rss_kib();
		}
	}
	pthread_mutex_unlock(&d.mu);
	double t = now_s() - t0;
	if (rss1 != NULL) {
		long file = 0;
		*rss1 = rss_kib_file(&file);
		printf("  (file-backed resident pages at the end, mostly the "
		    "store's map: %ld KiB)\n", file);
	}
	*n_out = d.r.added;
	watch_stop(w);
	store_close(st);
	tm_rmtree(store_dir);
	return t;
}

/* Adds folder to a running indexer and waits for it. */
static watch_result
add_wait(watch *w, const char *folder)
{
	struct done d = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
	    0, { 0 } };
	watch_add(w, folder, 0, on_done, &d);
	pthread_mutex_lock(&d.mu);
	while (!d.n)
		pthread_cond_wait(&d.cv, &d.mu);
	pthread_mutex_unlock(&d.mu);
	return d.r;
}

static uint64_t
commits(store *st)
{
	store_stats ss;
	store_get_stats(st, &ss);
	return ss.commits;
}

/* Batching: see the top of the file. */
static void
run_batching(const char *tmp, const clip_model *tiny, int n)
{
	char a[700], b[700], path[800], store_dir[700];
	static const char broken[] = "\xff\xd8\xff\xe0 not a JPEG after all";
	watch_params p;
	watch *w;
	cdx_error err;

	snprintf(a, sizeof(a), "%s/batch-a", tmp);
	snprintf(b, sizeof(b), "%s/batch-b", tmp);
	snprintf(store_dir, sizeof(store_dir), "%s/store-batch", tmp);
	mkdir(a, 0755);
	for (int i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/f%06d.jpg", a, i);
		if (i % 5 == 4) {
			FILE *f = fopen(path, "wb");
			if (f == NULL || fwrite(broken, 1, sizeof(broken), f) !=
			    sizeof(broken))
				exit(1);
			fclose(f);
		} else if (write_photo(path, 64 + i % 7, 64, (unsigned)i + 9000,
		    0) != 0) {
			exit(1);
		}
	}
	store *st = open_store(store_dir, tiny);
	watch_default_params(&p);
	p.live = 0;
	p.nice = 0;
	p.quiet_ms = 0;         /* the broken files fail at once */
	if (watch_start(st, tiny, &p, &w, &err) != 0) {
		fprintf(stderr, "watch_start: %s\n", err.msg);
		exit(1);
	}
	uint64_t c0 = commits(st);
	double t0 = now_s();
	watch_result r1 = add_wait(w, a);
	double t1 = now_s();
	uint64_t c1 = commits(st);
	if (rename(a, b) != 0)
		exit(1);
	watch_result r2 = add_wait(w, b);
	double t2 = now_s();
	uint64_t c2 = commits(st);
	printf("batching: %d files (%lld stored, %lld failed): %.0f files/s, "
	    "%.1f commits per 1000 files\n", n, (long long)r1.added,
	    (long long)r1.failed, n / (t1 - t0), 1000.0 * (double)(c1 - c0) / n);
	printf("  moved folder (%lld records moved, %lld failed again): "
	    "%.0f files/s, %.1f commits per 1000 files\n", (long long)r2.moved,
	    (long long)r2.failed, n / (t2 - t1), 1000.0 * (double)(c2 - c1) / n);
	watch_stop(w);
	store_close(st);
	tm_rmtree(store_dir);
	tm_rmtree(b);
}

static int
list_files(const char *dir, char ***out)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	char **v = NULL;
	while (d && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		v = realloc(v, sizeof(*v) * (size_t)(n + 1));
		if (asprintf(&v[n], "%s/%s", dir, e->d_name) < 0)
			exit(1);
		n++;
	}
	if (d)
		closedir(d);
	*out = v;
	return n;
}

struct dec_arg {
	char **files;
	int from, to;
	const clip_preprocess_cfg *pp;
	float *px;
	size_t plane;
};

static void *
dec_thread(void *arg)
{
	struct dec_arg *a = arg;
	clip_decode_opts dopt = {
	    .min_short = clip_preprocess_min_short(a->pp) };
	for (int i = a->from; i < a->to; i++) {
		clip_image img;
		if (clip_image_load(a->files[i], &dopt, &img, NULL) == 0) {
			clip_image_preprocess(&img, a->pp, a->px + a->plane *
			    (size_t)i, NULL);
			clip_image_free(&img);
		}
	}
	return NULL;
}

/* A text query loop at normal priority, beside the indexer. */
struct query_arg {
	const clip_model *m;
	volatile int stop;
	int n;
	double sum, max;
};

static void *
query_thread(void *arg)
{
	struct query_arg *q = arg;
	int32_t ids[CLIP_CONTEXT_LEN];
	float emb[4096];
	clip_ctx *ctx;
	const char *text = "a photo of a dog on a beach";
	if (clip_ctx_new(q->m, 1, &ctx, NULL) != 0 ||
	    clip_tokenize(clip_model_tokenizer(q->m), text, strlen(text), ids,
	    NULL, NULL) != 0)
		return NULL;
	while (!q->stop) {
		double t = now_s();
		clip_encode_text(ctx, ids, 1, emb, NULL);
		t = now_s() - t;
		q->sum += t;
		q->n++;
		if (t > q->max)
			q->max = t;
		usleep(20000);
	}
	clip_ctx_free(ctx);
	return NULL;
}

/* Read + decode + preprocess of every file on this thread: CPU seconds
 * per image; the tensors go to px. */
static double
decode_cpu(char **files, int n, const clip_decode_opts *dopt,
    const clip_preprocess_cfg *pp, float *px, size_t plane)
{
	cdx_error err;
	double c0 = thread_cpu_s();
	for (int i = 0; i < n; i++) {
		clip_image img;
		if (clip_image_load(files[i], dopt, &img, &err) != 0 ||
		    clip_image_preprocess(&img, pp, px + plane * (size_t)i,
		    &err) != 0) {
			fprintf(stderr, "%s: %s\n", files[i], err.msg);
			exit(1);
		}
		clip_image_free(&img);
	}
	return (thread_cpu_s() - c0) / n;
}

static void
run_size(const char *label, const char *folder, const char *tmp,
    const clip_model *m, int cores, int progressive)
{
	const clip_model_info *info = clip_model_get_info(m);
	const clip_preprocess_cfg *pp = &info->preprocess;
	size_t plane = (size_t)pp->crop_width * pp->crop_height * 3;
	clip_decode_opts dopt = { .min_short = clip_preprocess_min_short(pp) };
	char **files;
	int n = list_files(folder, &files);
	int batch = 16;
	float *px = malloc(sizeof(float) * plane * (size_t)n);
	float *emb = malloc(sizeof(float) * (size_t)info->embed_dim * batch);
	cdx_error err;

	/* decode: one thread, CPU time per image (progressive: also with
	 * every scan decoded, as before scan skipping) */
	double dec_all = 0;
	if (progressive) {
		clip_decode_opts all = dopt;
		all.all_scans = 1;
		dec_all = decode_cpu(files, n, &all, pp, px, plane);
	}
	double dec = decode_cpu(files, n, &dopt, pp, px, plane);
	int scans_total = 0, scans_used = 0;
	clip_jpeg_last_scans(&scans_total, &scans_used);

	/* decode on every core at once: wall rate (for a loaded machine) */
	pthread_t th[64];
	struct dec_arg da[64];
	int nt = cores < 64 ? cores : 64;
	double tw = now_s();
	for (int t = 0; t < nt; t++) {
		da[t] = (struct dec_arg){ files, n * t / nt, n * (t + 1) / nt, pp,
		    px, plane };
		pthread_create(&th[t], NULL, dec_thread, &da[t]);
	}
	for (int t = 0; t < nt; t++)
		pthread_join(th[t], NULL);
	double dec_rate = n / (now_s() - tw);

	/* encode alone on decoded tensors, every core */
	clip_ctx *ctx;
	if (clip_ctx_new(m, batch, &ctx, &err) != 0)
		exit(1);
	clip_encode_images(ctx, px, batch < n ? batch : n, emb, &err); /* warm */
	double t0 = now_s(), cc0 = cpu_s();
	int done = 0;
	while (done + batch <= n || done == 0) {
		int k = n - done < batch ? n - done : batch;
		clip_encode_images(ctx, px + plane * (size_t)done, k, emb, &err);
		done += k;
	}
	double enc_wall = now_s() - t0, enc = (cpu_s() - cc0) / done;
	clip_ctx_free(ctx);
	{
		struct query_arg qa = { m, 0, 0, 0, 0 };
		pthread_t qt;
		pthread_create(&qt, NULL, query_thread, &qa);
		usleep(1000000);
		qa.stop = 1;
		pthread_join(qt, NULL);
		printf("%s: text query alone: mean %.1f ms, max %.1f ms\n", label,
		    qa.n ? qa.sum / qa.n * 1e3 : 0.0, qa.max * 1e3);
	}
	double ideal = cores / (enc + dec);
	double enc_rate = done / enc_wall;
	double ideal_wall = 1.0 / (1.0 / enc_rate + 1.0 / dec_rate);
	double dec_cores = cores / dec;
	double ideal_min = enc_rate < dec_cores ? enc_rate : dec_cores;
	printf("%s: %d files; decode %.1f ms CPU/image (%.1f images/s on %d "
	    "threads); encoder alone %.2f images/s (%.1f ms CPU/image); ideal "
	    "%.2f images/s by CPU time, %.2f by the stages' wall rates\n", label,
	    n, dec * 1e3, dec_rate, nt, enc_rate, enc * 1e3, ideal, ideal_wall);
	if (progressive)
		printf("  progressive: %d of %d scans decoded; decoding every "
		    "scan would take %.1f ms CPU/image (%.1fx)\n", scans_used,
		    scans_total, dec_all * 1e3, dec_all / dec);
	printf("  stage ideal min(encoder %.2f, decode %.2f x %d cores = %.2f) "
	    "= %.2f images/s\n", enc_rate, 1.0 / dec, cores, dec_cores,
	    ideal_min);

	/* the indexer, a few settings */
	/* decode threads (0: auto), OpenBLAS threads (0: every core; fp32's
	 * GEMMs), the encoder's OpenMP threads (bf16 / int8; 0, the
	 * indexer's default: every core; 1 was the default until
	 * 2026-12-06), and whether text queries run meanwhile (their CPU
	 * is not in the ideals) */
	static const struct { int dec, blas, enc, queries; } cfgs[] = {
		{ 0, 0, 0, 0 }, { 1, 0, 0, 0 }, { 0, 0, 1, 0 }, { 2, 1, 1, 0 },
		{ 0, 0, 0, 1 },
	};
	for (size_t i = 0; i < sizeof(cfgs) / sizeof(cfgs[0]); i++) {
		watch_params p;
		char store_dir[600];
		int64_t got;
		watch_default_params(&p);
		p.live = 0;
		p.nice = 0;
		p.decode_threads = cfgs[i].dec;
		p.encode_threads = cfgs[i].enc;
		openblas_set_num_threads(cfgs[i].blas ? cfgs[i].blas : cores);
		snprintf(store_dir, sizeof(store_dir), "%s/store-%s-%zu", tmp, label,
		    i);
		struct query_arg qa = { m, 0, 0, 0, 0 };
		pthread_t qt;
		if (cfgs[i].queries)
			pthread_create(&qt, NULL, query_thread, &qa);
		double t = index_folder(folder, store_dir, m, &p, NULL, NULL, &got);
		if (cfgs[i].queries) {
			qa.stop = 1;
			pthread_join(qt, NULL);
		}
		printf("  index (decode threads %s, OpenBLAS threads %d, "
		    "encoder OpenMP threads %d): %.2f images/s = %.0f%% of the "
		    "CPU ideal, %.0f%% of the wall ideal, %.0f%% of the stage "
		    "ideal%s%s\n", cfgs[i].dec ? (cfgs[i].dec == 1 ? "1" : "2") :
		    "auto", cfgs[i].blas ? cfgs[i].blas : cores, cfgs[i].enc ?
		    cfgs[i].enc : cores, got / t, 100.0 * got / t / ideal,
		    100.0 * got / t / ideal_wall, 100.0 * got / t / ideal_min,
		    got == n ? "" : " (MISSING FILES)", cfgs[i].queries ?
		    "; text queries meanwhile" : "");
		if (cfgs[i].queries)
			printf("  text queries meanwhile (normal priority): %d, mean "
			    "%.1f ms, max %.1f ms\n", qa.n, qa.n ? qa.sum / qa.n * 1e3 :
			    0.0, qa.max * 1e3);
	}
	openblas_set_num_threads(cores);
	for (int i = 0; i < n; i++)
		free(files[i]);
	free(files);
	free(px);
	free(emb);
}

int
main(int argc, char **argv)
{
	/* three batches of 16 and more: decoding and encoding overlap, as in
	 * a real scan (12 photos, the default until 2026-12-06, made no
	 * batch at all) */
	int n12 = argc > 1 ? atoi(argv[1]) : 48;
	int n2 = argc > 2 ? atoi(argv[2]) : 128;
	int nsmall = argc > 3 ? atoi(argv[3]) : 20000;
	int nbatch = argc > 5 ? atoi(argv[5]) : 5000;
	int cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
	char tmp[] = "/tmp/cdx-indexer-bench-XXXXXX";
	char path[700], mdir[600], tdir[600], d12[600], d12p[600], d2[600];
	char dsmall[600];
	tm_recipe r;
	clip_model *m, *tiny;
	clip_model_params mp;

	if (mkdtemp(tmp) == NULL)
		return 1;
	snprintf(mdir, sizeof(mdir), "%s/vit-b32", tmp);
	snprintf(tdir, sizeof(tdir), "%s/tiny", tmp);
	snprintf(d12, sizeof(d12), "%s/12mp", tmp);
	snprintf(d12p, sizeof(d12p), "%s/12mp-progressive", tmp);
	snprintf(d2, sizeof(d2), "%s/2mp", tmp);
	snprintf(dsmall, sizeof(dsmall), "%s/small", tmp);
	mkdir(mdir, 0755);
	mkdir(tdir, 0755);
	mkdir(d12, 0755);
	mkdir(d12p, 0755);
	mkdir(d2, 0755);
	mkdir(dsmall, 0755);
	tm_recipe_vit_b32(&r);
	double t0 = now_s();
	if ((n12 > 0 || n2 > 0) && tm_write_model(&r, mdir) != 0)
		return 1;
	for (int i = 0; i < n12; i++) {
		snprintf(path, sizeof(path), "%s/p%03d.jpg", d12, i);
		if (write_photo(path, 4000, 3000, (unsigned)i + 1, 0) != 0)
			return 1;
		snprintf(path, sizeof(path), "%s/p%03d.jpg", d12p, i);
		if (write_photo(path, 4000, 3000, (unsigned)i + 1,
		    TJFLAG_PROGRESSIVE) != 0)
			return 1;
	}
	for (int i = 0; i < n2; i++) {
		snprintf(path, sizeof(path), "%s/p%03d.jpg", d2, i);
		if (write_photo(path, 1600, 1200, (unsigned)i + 1000, 0) != 0)
			return 1;
	}
	printf("setup (model, %d x 2 + %d photos): %.1f s; %d cores\n", n12,
	    n2, now_s() - t0, cores);
	clip_model_default_params(&mp);
	if (argc > 4 && clip_precision_parse(argv[4], &mp.precision) != 0) {
		fprintf(stderr, "indexer_bench: unknown precision %s\n",
		    argv[4]);
		return 2;
	}
	cdx_threads_set(cores);
	if (n12 > 0 || n2 > 0) {
		if (clip_model_load(mdir, &mp, &m, NULL) != 0)
			return 1;
		printf("encoder: %s (%s)\n", clip_precision_name(
		    clip_model_get_info(m)->precision),
		    clip_model_get_info(m)->kernels);
		if (n2 > 0)
			run_size("2 MP", d2, tmp, m, cores, 0);
		if (n12 > 0) {
			run_size("12 MP", d12, tmp, m, cores, 0);
			run_size("12 MP progressive", d12p, tmp, m, cores, 1);
		}
		clip_model_free(m);
	}

	/* Memory: a scan of many small files with the tiny model. */
	tm_recipe_tiny(&r);
	if ((nsmall > 0 || nbatch > 0) && (tm_write_model(&r, tdir) != 0 ||
	    clip_model_load(tdir, &mp, &tiny, NULL) != 0))
		return 1;
	if (nsmall > 0) {
		for (int i = 0; i < nsmall; i++) {
			if (i % 1000 == 0) {
				snprintf(path, sizeof(path), "%s/d%03d", dsmall, i / 1000);
				mkdir(path, 0755);
			}
			snprintf(path, sizeof(path), "%s/d%03d/f%06d.jpg", dsmall,
			    i / 1000, i);
			if (write_photo(path, 64 + i % 7, 64, (unsigned)i + 5000,
			    0) != 0)
				return 1;
		}
		watch_params p;
		long rss0, rss1;
		int64_t got;
		char store_dir[700];
		watch_default_params(&p);
		p.live = 0;
		p.nice = 0;
		snprintf(store_dir, sizeof(store_dir), "%s/store-small", tmp);
		double t = index_folder(dsmall, store_dir, tiny, &p, &rss0, &rss1,
		    &got);
		printf("memory: %lld small files in %.1f s (%.0f/s); anonymous RSS "
		    "after 1000 files %ld KiB, at the end %ld KiB\n", (long long)got, t,
		    got / t, rss0, rss1);
	}
	if (nbatch > 0)
		run_batching(tmp, tiny, nbatch);
	if (nsmall > 0 || nbatch > 0)
		clip_model_free(tiny);
	tm_rmtree(tmp);
	return 0;
}
