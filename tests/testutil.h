/*
 * testutil.h - small helpers shared by the test suites (header only, every
 * function static inline, prefix tu_).  Functions that check with cmocka
 * asserts say so; the others return an error for the caller to check.
 *
 *   tu_read_file(path, &len)     the whole file in a malloc'd buffer with a
 *                                '\0' after the last byte (len, if not NULL,
 *                                excludes it); NULL if it cannot be opened,
 *                                allocated or fully read (len then 0).
 *                                Caller frees.
 *   tu_write_file(path, p, n)    creates/truncates path with the n bytes at
 *                                p; 0, or -1 on any error (open, short
 *                                write, close).
 *   tu_fd_slurp(fd)              everything in the regular file fd from
 *                                offset 0 to its end, '\0'-terminated, in a
 *                                malloc'd buffer (caller frees); asserts.
 *   tu_unlinked_tmp(tmpl)        mkstemp(tmpl), then unlinks the name: an
 *                                anonymous temporary file's descriptor
 *                                (caller closes); asserts.
 *   tu_spawn(path, argv, o, e)   runs path with argv (NULL-terminated, argv[0]
 *                                included), stdout on fd o and, when e >= 0,
 *                                stderr on fd e (else inherited); waits for
 *                                it; its exit status, -1 if it did not exit.
 *                                Asserts fork and waitpid succeed.
 *   tu_popen_read(cmd, out, cap) runs the shell command cmd, reads at most
 *                                cap - 1 bytes of its stdout into out
 *                                ('\0'-terminated); its exit status, -1 if
 *                                it did not exit.  Asserts popen succeeds.
 *   tu_stripes_rgb(w, h, seed, fw, fh)
 *                                a photo-like w x h RGB picture (colour
 *                                fields with stripes, different per seed)
 *                                in a malloc'd buffer (caller frees), NULL
 *                                if out of memory.  The pattern is drawn on
 *                                a fw x fh grid stretched over the picture,
 *                                or at one cell a pixel when fw (fh) is 0.
 *   tu_jpeg_encode(rgb, w, h, q, &len)
 *                                the RGB picture as a 4:2:0 JPEG of quality
 *                                q, in a buffer that TurboJPEG allocated
 *                                (free it with tjFree); NULL on error.
 *   tu_cosine_json(a, ref, n)    the cosine of the n floats a and the JSON
 *                                array of numbers ref (in double); asserts
 *                                ref has n items.
 *   tu_cos_rows(a, b, rows, dim, &worst, &mean)
 *                                the worst and mean cosine of the rows of a
 *                                and b (unit-length embeddings, rows x dim
 *                                floats each; 1 and 1 for no rows).
 *   tu_bin_dir(out, n)           "$PWD/$BUILD" (BUILD defaults to "build"):
 *                                where the built programs are.
 *   tu_wait_ready(name, pid, ready, arg, log)
 *                                waits up to 20 s (400 polls, 50 ms apart)
 *                                until ready(arg) returns non-zero; fails the
 *                                test if the child pid exits first (after
 *                                copying the file log, unless NULL, to
 *                                stderr) or on time-out, naming the program
 *                                name in the message.
 *   tu_stop_child(pid)           SIGTERM to pid, then reaps it (asserts);
 *                                its wait status.
 *   tu_write_stripes_jpeg(path, w, h, seed)
 *                                tu_stripes_rgb(w, h, seed, 0, 0) as a
 *                                quality 90 JPEG file (asserts).
 *   tu_lsan_nng()                LSAN_OPTIONS for the programs a suite
 *                                starts: tests/lsan-nng.supp (nng 1.5.2
 *                                leaks endpoints of failed handshakes);
 *                                0, or -1 without a working directory.
 *   tu_suite_dirs(prefix, model_name, tmp, model, photos, store, url, log)
 *                                a new folder /tmp/<prefix>-XXXXXX in tmp
 *                                (256 bytes) and, in it, the paths of a
 *                                daemon suite (300 bytes each, url 320):
 *                                the model folder model_name, photos,
 *                                store, the socket ipc://.../d.sock and
 *                                clipdexd.log (nothing created but tmp);
 *                                0, or -1 when mkdtemp fails.
 *   tu_sha256_hex(p, n, hex)     sha256 (FIPS 180-4) of the n bytes at p as
 *                                64 lower-case hex digits and a '\0'.
 *
 * Reference fixtures (tests/fixtures/, written by tools/ref_*.py; the
 * tests run from the repository root), each asserting:
 *   tu_read_fixture(path, &len)  tu_read_file, failing the test (with a
 *                                hint) when the file cannot be read.
 *   tu_read_json(path)           the parsed JSON file (cJSON_Delete it).
 *   tu_jsonl_next(&at)           the next line of the JSON-lines text at
 *                                *at, parsed (cJSON_Delete it); NULL when
 *                                no newline is left.  Writes '\0' over the
 *                                newline and moves *at past it.
 *   tu_jget(o, k) tu_jint tu_jnum
 *                                member k of object o (as an int, a
 *                                double); fails the test, naming k, when
 *                                o has none.
 *   tu_json_ids(arr, ids, n)     the JSON array of n integers arr into
 *                                ids[0..n-1].
 *   tu_hex_decode(hex, &len)     the bytes that the hex string (two digits
 *                                a byte) spells, in a malloc'd buffer with
 *                                a '\0' after them (caller frees).
 *   tu_write_json(dir, name, j)  j, unformatted, into the file dir/name.
 *   tu_max_abs_diff(a, b, n)     the largest |a[i] - b[i]|.
 *   tu_now_s()                   monotonic seconds (CLOCK_MONOTONIC).
 *   tu_check_weights(path, fx)   the file at path has fixture fx's
 *                                "safetensors_size" and
 *                                "safetensors_sha256"; returns its
 *                                XXH3-64 (the model's weights_hash).
 *
 * The encoder (encoder/clip.h, tests/testmodel.h), each asserting:
 *   tu_tokenize(tok, text, ids)  clip_tokenize of the C string text; the
 *                                number of tokens.
 *   tu_model_load_fp32(dir)      the model folder dir loaded in float32
 *                                (what the references compute).
 *   tu_check_model_info(in, r, name, hash)
 *                                in describes recipe r's folder: its name,
 *                                id "<name>@<hash as 16 hex digits>", the
 *                                towers' shapes, vocab_size and
 *                                max_positions.
 *   tu_check_ref_texts(ctx, fx, name, ctx_len, e, &b)
 *   tu_check_ref_images(ctx, fx, name, r, e, &b)
 *                                encode fixture fx's texts (text_ids,
 *                                ctx_len ids each) or images (tm_pixels of
 *                                r's seed and image size with fx's
 *                                n_images, coarse, coarse_scale and
 *                                pixel_scale) as one batch, then one by
 *                                one: each embedding's cosine to fx's
 *                                text_embeddings (image_embeddings) at
 *                                least 0.99999 (0.9999), texts' norm 1, one
 *                                by one within 1e-5 of the batch; name (the
 *                                recipe) heads the messages.  b gets the
 *                                inputs, the batch's embeddings and the
 *                                worst cosine (tu_ref_batch_free it).
 *   tu_check_tiny(ctx, ids, e)   two tm_pixels pictures (seed 1, 64 x 64,
 *                                as the tiny recipes), and the two texts
 *                                ids (two rows of context_len ids), encode
 *                                to embeddings of e floats with a cosine
 *                                under 0.99; a batch of no texts encodes.
 */
#ifndef CDX_TESTUTIL_H
#define CDX_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <turbojpeg.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/vec.h"
#include "encoder/clip.h"
#include "tests/cdx_assert.h"
#include "tests/testmodel.h"

static inline double
tu_now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline char *
tu_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (len != NULL)
		*len = 0;
	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = n < 0 ? NULL : malloc((size_t)n + 1);
	if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	if (buf != NULL) {
		buf[n] = '\0';
		if (len != NULL)
			*len = (size_t)n;
	}
	return buf;
}

static inline int
tu_write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (f == NULL)
		return -1;
	size_t n = fwrite(data, 1, len, f);
	return fclose(f) == 0 && n == len ? 0 : -1;
}

static inline char *
tu_fd_slurp(int fd)
{
	off_t len = lseek(fd, 0, SEEK_END);
	assert_true(len >= 0);
	char *buf = malloc((size_t)len + 1);
	assert_non_null(buf);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	assert_int_equal(read(fd, buf, (size_t)len), len);
	buf[len] = '\0';
	return buf;
}

static inline int
tu_unlinked_tmp(char *tmpl)
{
	int fd = mkstemp(tmpl);
	assert_true(fd >= 0);
	unlink(tmpl);
	return fd;
}

static inline int
tu_spawn(const char *path, char *const argv[], int out_fd, int err_fd)
{
	int st;
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(out_fd, 1);
		if (err_fd >= 0)
			dup2(err_fd, 2);
		execv(path, argv);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static inline int
tu_popen_read(const char *cmd, char *out, size_t cap)
{
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t n = fread(out, 1, cap - 1, p);
	out[n] = '\0';
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static inline unsigned char *
tu_stripes_rgb(int w, int h, unsigned seed, int fw, int fh)
{
	unsigned char *rgb = malloc((size_t)w * h * 3);
	unsigned r0 = seed * 2654435761u;

	if (rgb == NULL)
		return NULL;
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			unsigned char *p = rgb + ((size_t)y * w + x) * 3;
			int xs = fw > 0 ? x * fw / w : x, ys = fh > 0 ? y * fh / h : y;
			int band = ((xs * (int)(seed % 5 + 1)) / 17 +
			    (ys * (int)(seed % 3 + 1)) / 13) & 1;
			p[0] = (unsigned char)((r0 >> 0) + band * 90 + xs);
			p[1] = (unsigned char)((r0 >> 8) + band * 40 + ys * (seed & 3));
			p[2] = (unsigned char)((r0 >> 16) + (xs ^ ys) * (seed % 7));
		}
	return rgb;
}

static inline unsigned char *
tu_jpeg_encode(const unsigned char *rgb, int w, int h, int quality,
    unsigned long *len)
{
	unsigned char *jpeg = NULL;
	tjhandle tj = tjInitCompress();

	if (tj == NULL)
		return NULL;
	*len = 0;
	if (tjCompress2(tj, rgb, w, 0, h, TJPF_RGB, &jpeg, len, TJSAMP_420,
	    quality, 0) != 0) {
		tjFree(jpeg);
		jpeg = NULL;
	}
	tjDestroy(tj);
	return jpeg;
}

static inline double
tu_cosine_json(const float *a, const cJSON *ref, int n)
{
	double ab = 0, aa = 0, bb = 0;
	assert_int_equal(cJSON_GetArraySize(ref), n);
	for (int i = 0; i < n; i++) {
		double b = cJSON_GetArrayItem(ref, i)->valuedouble;
		ab += a[i] * b;
		aa += (double)a[i] * a[i];
		bb += b * b;
	}
	return ab / sqrt(aa * bb);
}

static inline void
tu_cos_rows(const float *a, const float *b, int rows, int dim, double *worst,
    double *mean)
{
	double w = 1, sum = 0;
	for (int i = 0; i < rows; i++) {
		double c = cdx_vec_dot(a + (size_t)i * dim, b + (size_t)i * dim,
		    dim);
		sum += c;
		w = c < w ? c : w;
	}
	*worst = w;
	*mean = rows > 0 ? sum / rows : 1;
}

static inline void
tu_bin_dir(char *out, size_t n)
{
	char cwd[4096];
	const char *b = getenv("BUILD");
	snprintf(out, n, "%s/%s", getcwd(cwd, sizeof(cwd)), b ? b : "build");
}

static inline void
tu_wait_ready(const char *name, pid_t pid, int (*ready)(void *), void *arg,
    const char *log)
{
	char cmd[600];
	for (int i = 0; i < 400; i++) {
		if (ready(arg))
			return;
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			if (log != NULL) {
				snprintf(cmd, sizeof(cmd), "cat '%s' >&2", log);
				if (system(cmd)) {}
			}
			fail_msg("%s exited at start (status %d)", name, status);
		}
		usleep(50000);
	}
	fail_msg("%s did not answer within 20 s", name);
}

static inline int
tu_stop_child(pid_t pid)
{
	int status = -1;
	kill(pid, SIGTERM);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static inline void
tu_sha256_block(uint32_t h[8], const uint8_t *p)
{
	static const uint32_t k[64] = {
		0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b,
		0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01,
		0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7,
		0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
		0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152,
		0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
		0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
		0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
		0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
		0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08,
		0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f,
		0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
		0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
	};
#define TU_ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
	uint32_t w[64];
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		    (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = TU_ROR(w[i - 15], 7) ^ TU_ROR(w[i - 15], 18) ^
		    (w[i - 15] >> 3);
		uint32_t s1 = TU_ROR(w[i - 2], 17) ^ TU_ROR(w[i - 2], 19) ^
		    (w[i - 2] >> 10);
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5],
	    g = h[6], hh = h[7];
	for (int i = 0; i < 64; i++) {
		uint32_t t1 = hh + (TU_ROR(e, 6) ^ TU_ROR(e, 11) ^
		    TU_ROR(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
		uint32_t t2 = (TU_ROR(a, 2) ^ TU_ROR(a, 13) ^ TU_ROR(a, 22)) +
		    ((a & b) ^ (a & c) ^ (b & c));
		hh = g;
		g = f;
		f = e;
		e = d + t1;
		d = c;
		c = b;
		b = a;
		a = t1 + t2;
	}
#undef TU_ROR
	h[0] += a; h[1] += b; h[2] += c; h[3] += d;
	h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

static inline void
tu_sha256_hex(const void *data, size_t len, char hex[65])
{
	const uint8_t *p = data;
	uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
	size_t i = 0;
	for (; i + 64 <= len; i += 64)
		tu_sha256_block(h, p + i);
	uint8_t tail[128] = {0};
	size_t rest = len - i;
	if (rest > 0)
		memcpy(tail, p + i, rest);
	tail[rest] = 0x80;
	size_t tl = rest + 9 <= 64 ? 64 : 128;
	uint64_t bits = (uint64_t)len * 8;
	for (int k = 0; k < 8; k++)
		tail[tl - 1 - k] = (uint8_t)(bits >> (8 * k));
	tu_sha256_block(h, tail);
	if (tl == 128)
		tu_sha256_block(h, tail + 64);
	for (int k = 0; k < 8; k++)
		snprintf(hex + 8 * k, 9, "%08x", (unsigned)h[k]);
}

/* ---- reference fixtures ---------------------------------------------- */

static inline char *
tu_read_fixture(const char *path, size_t *len)
{
	char *data = tu_read_file(path, len);
	if (data == NULL)
		fail_msg("cannot read %s (run the tests from the repository root)",
		    path);
	return data;
}

static inline cJSON *
tu_read_json(const char *path)
{
	char *text = tu_read_fixture(path, NULL);
	cJSON *j = cJSON_Parse(text);
	free(text);
	if (j == NULL)
		fail_msg("%s: not JSON", path);
	return j;
}

static inline cJSON *
tu_jsonl_next(char **at)
{
	char *line = *at, *nl = strchr(line, '\n');
	if (nl == NULL)
		return NULL;
	*nl = '\0';
	*at = nl + 1;
	cJSON *j = cJSON_Parse(line);
	if (j == NULL)
		fail_msg("not a line of JSON: %.80s", line);
	return j;
}

static inline const cJSON *
tu_jget(const cJSON *o, const char *k)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
	if (j == NULL)
		fail_msg("fixture: no \"%s\"", k);
	return j;
}

static inline int
tu_jint(const cJSON *o, const char *k)
{
	return tu_jget(o, k)->valueint;
}

static inline double
tu_jnum(const cJSON *o, const char *k)
{
	return tu_jget(o, k)->valuedouble;
}

static inline void
tu_json_ids(const cJSON *arr, int32_t *ids, int n)
{
	const cJSON *it;
	int k = 0;
	assert_int_equal(cJSON_GetArraySize(arr), n);
	cJSON_ArrayForEach(it, arr)
		ids[k++] = (int32_t)it->valueint;
}

static inline char *
tu_hex_decode(const char *hex, size_t *len)
{
	size_t n = strlen(hex) / 2;
	char *out = malloc(n + 1);
	assert_non_null(out);
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (char)v;
	}
	out[n] = '\0';
	*len = n;
	return out;
}

static inline void
tu_write_json(const char *dir, const char *name, const cJSON *j)
{
	char path[4096];
	char *s = cJSON_PrintUnformatted(j);
	assert_non_null(s);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_int_equal(tu_write_file(path, s, strlen(s)), 0);
	free(s);
}

static inline double
tu_max_abs_diff(const float *a, const float *b, size_t n)
{
	double m = 0;
	for (size_t i = 0; i < n; i++)
		m = fmax(m, fabs((double)a[i] - b[i]));
	return m;
}

static inline uint64_t
tu_check_weights(const char *path, const cJSON *fx)
{
	size_t len;
	char hex[65];
	char *data = tu_read_fixture(path, &len);
	tu_sha256_hex(data, len, hex);
	assert_int_equal(len, (size_t)tu_jnum(fx, "safetensors_size"));
	assert_string_equal(hex, tu_jget(fx, "safetensors_sha256")->valuestring);
	uint64_t h = XXH3_64bits(data, len);
	free(data);
	return h;
}

/* ---- the encoder ------------------------------------------------------ */

static inline int
tu_tokenize(const clip_tokenizer *tok, const char *text, int32_t *ids)
{
	cdx_error err = { 0 };
	int n = -1;
	int rc = clip_tokenize(tok, text, strlen(text), ids, &n, &err);
	if (rc != 0)
		fail_msg("tokenize(\"%s\"): %s: %s", text, cdx_strerror(rc),
		    err.msg);
	return n;
}

static inline clip_model *
tu_model_load_fp32(const char *dir)
{
	clip_model_params params;
	clip_model *m = NULL;
	cdx_error err = { 0 };
	clip_model_default_params(&params);
	params.precision = CLIP_PRECISION_FP32;   /* exact: the reference */
	if (clip_model_load(dir, &params, &m, &err) != 0)
		fail_msg("clip_model_load: %s", err.msg);
	return m;
}

/* A cdx_log_set sink that appends each line, and a newline, to the
 * buffer of TU_LOG_CAP bytes given as user:
 *     static char log[TU_LOG_CAP];
 *     log[0] = '\0';
 *     cdx_log_set(tu_log_capture, log, CDX_LOG_INFO); */
#define TU_LOG_CAP 4096

static inline void
tu_log_capture(int level, const char *line, void *user)
{
	char *log = user;
	size_t n = strlen(log);

	(void)level;
	snprintf(log + n, TU_LOG_CAP - n, "%s\n", line);
}

/* For suites that use the tiny model in process: makes the folder TMP
 * (a mkdtemp template, changed in place), writes the tiny model into
 * TMP/model (that path in model_dir, of size n) and loads it: 0 and *m,
 * or -1. */
static inline int
tu_tmp_tiny_model(char *tmp, char *model_dir, size_t n, clip_model **m)
{
	tm_recipe r;
	clip_model_params mp;

	if (mkdtemp(tmp) == NULL)
		return -1;
	snprintf(model_dir, n, "%s/model", tmp);
	mkdir(model_dir, 0755);
	tm_recipe_tiny(&r);
	if (tm_write_model(&r, model_dir) != 0)
		return -1;
	clip_model_default_params(&mp);
	return clip_model_load(model_dir, &mp, m, NULL);
}

static inline void
tu_check_model_info(const clip_model_info *in, const tm_recipe *r,
    const char *name, uint64_t hash)
{
	char want_id[200];
	assert_string_equal(in->name, name);
	snprintf(want_id, sizeof(want_id), "%s@%016llx", name,
	    (unsigned long long)hash);
	assert_string_equal(in->id, want_id);
	assert_int_equal(in->image_size, r->vision.image_size);
	assert_int_equal(in->patch_size, r->vision.patch_size);
	assert_int_equal(in->vision_width, r->vision.width);
	assert_int_equal(in->vision_layers, r->vision.layers);
	assert_int_equal(in->vision_heads, r->vision.heads);
	assert_int_equal(in->vision_mlp, r->vision.mlp);
	assert_int_equal(in->text_width, r->text.width);
	assert_int_equal(in->text_layers, r->text.layers);
	assert_int_equal(in->text_heads, r->text.heads);
	assert_int_equal(in->text_mlp, r->text.mlp);
	assert_int_equal(in->vocab_size, r->vocab_size);
	assert_int_equal(in->max_positions, r->max_positions);
}

typedef struct tu_ref_batch {
	int n;                  /* texts or images */
	int32_t *ids;           /* texts: n rows of ctx_len ids */
	float *px;              /* images: n CHW pictures */
	float *emb;             /* n embeddings, from the batch */
	double worst;           /* the lowest cosine to the reference */
} tu_ref_batch;

static inline void
tu_ref_batch_free(tu_ref_batch *b)
{
	free(b->ids);
	free(b->px);
	free(b->emb);
	memset(b, 0, sizeof(*b));
}

/* Embedding i of the batch, checked against item i of ref (cosine at
 * least min_cos); b->worst follows. */
static inline const float *
tu_ref_item(tu_ref_batch *b, const cJSON *ref, int i, int e,
    const char *name, const char *what, double min_cos)
{
	const float *v = b->emb + (size_t)i * e;
	double cs = tu_cosine_json(v, cJSON_GetArrayItem(ref, i), e);
	b->worst = fmin(b->worst, cs);
	if (!(cs >= min_cos))
		fail_msg("%s: %s %d cosine %.7f < %g", name, what, i, cs,
		    min_cos);
	return v;
}

static inline void
tu_check_ref_texts(clip_ctx *ctx, const cJSON *fx, const char *name,
    int ctx_len, int e, tu_ref_batch *b)
{
	const cJSON *ids_j = tu_jget(fx, "text_ids");
	const cJSON *ref = tu_jget(fx, "text_embeddings");
	cdx_error err = { 0 };
	memset(b, 0, sizeof(*b));
	b->n = cJSON_GetArraySize(ids_j);
	assert_true(b->n >= 4);
	b->ids = calloc((size_t)b->n * ctx_len, sizeof(int32_t));
	b->emb = calloc((size_t)b->n * e, sizeof(float));
	float *one = calloc((size_t)e, sizeof(float));
	assert_true(b->ids != NULL && b->emb != NULL && one != NULL);
	for (int i = 0; i < b->n; i++)
		tu_json_ids(cJSON_GetArrayItem(ids_j, i),
		    b->ids + (size_t)i * ctx_len, ctx_len);
	if (clip_encode_text(ctx, b->ids, b->n, b->emb, &err) != 0)
		fail_msg("clip_encode_text: %s", err.msg);
	b->worst = 1;
	for (int i = 0; i < b->n; i++) {
		const float *v = tu_ref_item(b, ref, i, e, name, "text",
		    0.99999);
		double norm = 0;
		for (int k = 0; k < e; k++)
			norm += (double)v[k] * v[k];
		assert_true(fabs(norm - 1.0) < 1e-5);
		assert_int_equal(clip_encode_text(ctx, b->ids + (size_t)i *
		    ctx_len, 1, one, &err), 0);
		assert_true(tu_max_abs_diff(one, v, (size_t)e) < 1e-5);
	}
	free(one);
}

static inline void
tu_check_ref_images(clip_ctx *ctx, const cJSON *fx, const char *name,
    const tm_recipe *r, int e, tu_ref_batch *b)
{
	const cJSON *ref = tu_jget(fx, "image_embeddings");
	int size = r->vision.image_size;
	size_t per = (size_t)3 * size * size;
	cdx_error err = { 0 };
	memset(b, 0, sizeof(*b));
	b->n = tu_jint(fx, "n_images");
	assert_int_equal(b->n, 3);
	b->px = malloc(b->n * per * sizeof(float));
	b->emb = calloc((size_t)b->n * e, sizeof(float));
	float *one = calloc((size_t)e, sizeof(float));
	assert_true(b->px != NULL && b->emb != NULL && one != NULL);
	for (int j = 0; j < b->n; j++)
		assert_int_equal(tm_pixels(r->seed, j, size,
		    tu_jint(fx, "coarse"), (float)tu_jnum(fx, "coarse_scale"),
		    (float)tu_jnum(fx, "pixel_scale"), b->px + j * per), 0);
	if (clip_encode_images(ctx, b->px, b->n, b->emb, &err) != 0)
		fail_msg("clip_encode_images: %s", err.msg);
	b->worst = 1;
	for (int j = 0; j < b->n; j++) {
		const float *v = tu_ref_item(b, ref, j, e, name, "image",
		    0.9999);
		assert_int_equal(clip_encode_images(ctx, b->px + j * per, 1, one,
		    &err), 0);
		assert_true(tu_max_abs_diff(one, v, (size_t)e) < 1e-5);
	}
	free(one);
}

static inline void
tu_check_tiny(clip_ctx *ctx, const int32_t *ids, int e)
{
	enum { SIZE = 64, PER = 3 * SIZE * SIZE };
	float *px = malloc(2 * PER * sizeof(float));
	float *emb = calloc(2 * (size_t)e, sizeof(float));
	cdx_error err = { 0 };
	assert_true(px != NULL && emb != NULL);
	assert_int_equal(tm_pixels(1, 0, SIZE, 4, 1.5f, 0.5f, px), 0);
	assert_int_equal(tm_pixels(1, 1, SIZE, 4, 1.5f, 0.5f, px + PER), 0);
	assert_int_equal(clip_encode_images(ctx, px, 2, emb, &err), 0);
	double dot = 0;
	for (int k = 0; k < e; k++)
		dot += emb[k] * emb[e + k];
	if (!(dot < 0.99))
		fail_msg("tiny: images too similar (cos %f)", dot);
	assert_int_equal(clip_encode_text(ctx, ids, 2, emb, &err), 0);
	dot = 0;
	for (int k = 0; k < e; k++)
		dot += emb[k] * emb[e + k];
	assert_true(dot < 0.99);
	assert_int_equal(clip_encode_text(ctx, ids, 0, emb, &err), 0);
	free(px);
	free(emb);
}

static inline void
tu_write_stripes_jpeg(const char *path, int w, int h, unsigned seed)
{
	unsigned char *rgb = tu_stripes_rgb(w, h, seed, 0, 0), *jpeg;
	unsigned long jlen = 0;

	assert_non_null(rgb);
	jpeg = tu_jpeg_encode(rgb, w, h, 90, &jlen);
	assert_non_null(jpeg);
	assert_int_equal(tu_write_file(path, jpeg, jlen), 0);
	tjFree(jpeg);
	free(rgb);
}

static inline int
tu_lsan_nng(void)
{
	char supp[512], cwd[400];
	if (getcwd(cwd, sizeof(cwd)) == NULL)
		return -1;
	snprintf(supp, sizeof(supp), "suppressions=%s/tests/lsan-nng.supp", cwd);
	setenv("LSAN_OPTIONS", supp, 1);
	return 0;
}

static inline int
tu_suite_dirs(const char *prefix, const char *model_name, char tmp[256],
    char model[300], char photos[300], char store[300], char url[320],
    char log[300])
{
	snprintf(tmp, 256, "/tmp/%s-XXXXXX", prefix);
	if (mkdtemp(tmp) == NULL)
		return -1;
	snprintf(model, 300, "%s/%s", tmp, model_name);
	snprintf(photos, 300, "%s/photos", tmp);
	snprintf(store, 300, "%s/store", tmp);
	snprintf(url, 320, "ipc://%s/d.sock", tmp);
	snprintf(log, 300, "%s/clipdexd.log", tmp);
	return 0;
}

/* A clipdexd for a suite: where its programs, model, store, socket, photos
 * and log are.  http_port 0: no HTTP listener. */
typedef struct tu_daemon {
	const char *bindir, *model, *store, *url, *root, *log;
	int http_port;
} tu_daemon;

/* Starts clipdexd (one thread, a 2 MiB request limit, the root, `extra`
 * flags) with its output appended to d->log; returns its pid.  The caller
 * waits for it (tu_wait_ready) and stops it (tu_stop_child). */
static inline pid_t
tu_daemon_start(const tu_daemon *d, const char *extra)
{
	char http[64] = "", cmd[8192];
	if (d->http_port > 0)
		snprintf(http, sizeof(http), "--http 127.0.0.1:%d", d->http_port);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		snprintf(cmd, sizeof(cmd), "exec %s/clipdexd --model '%s' --store "
		    "'%s' --listen '%s' %s --root '%s' --threads 1 "
		    "--max-request-bytes 2097152 %s >>'%s' 2>&1", d->bindir,
		    d->model, d->store, d->url, http, d->root, extra ? extra : "",
		    d->log);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Runs `clipdex --url URL ARGS` into out; returns its exit status, and
 * prints the output when it is not 0 (shown when a test did not expect
 * it). */
static inline int
tu_cli(const tu_daemon *d, const char *args, char *out, size_t cap)
{
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "%s/clipdex --url '%s' %s 2>&1", d->bindir,
	    d->url, args);
	int rc = tu_popen_read(cmd, out, cap);
	if (rc != 0)
		fprintf(stderr, "clipdex %s: exit %d: %.300s\n", args, rc, out);
	return rc;
}

#endif
