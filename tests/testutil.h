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
#include <sys/types.h>
#include <sys/wait.h>
#include <turbojpeg.h>
#include <unistd.h>

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
