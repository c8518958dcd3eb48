/*
 * The web endpoints of clipdexd (daemon/web.c): the page's files, thumbnails
 * and full images over a real HTTP socket, their headers, path-traversal
 * attempts, the token rule and the thumbnail cache.  The daemon runs in
 * this process (srv_start) with a tiny generated model and generated photos.
 *
 * With "--fixture DIR" the program only writes DIR/model and DIR/photos
 * (the same generated model and photos) and exits: tests/web_browser.sh
 * uses it to set up the browser test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "daemon/srv_internal.h"
#include "daemon/web.h"
#include "tests/testmodel.h"
#include "tests/testutil.h"

#define N_SMALL 12      /* small photos, two folders */
#define N_BIG 4         /* 12 MP photos */

static char tmp[256], model_dir[300], photos[300], store_dir[300];
static char fixtures[512];
static int port;
static srv_config cfg;
static srv *daemon_srv;
static uint64_t ids[N_SMALL + N_BIG + 1];
static char paths[N_SMALL + N_BIG + 1][400];
static int n_ids;
static size_t cfg_cache_bytes;  /* the next start()'s web_cache_bytes */
static int cfg_min_side = -1;   /* and its min_side, where >= 0 */

/* ---- fixtures ---- */

/* The whole file in *data (caller frees); 0, or -1 on error. */
static int
read_all(const char *path, uint8_t **data, size_t *len)
{
	*data = (uint8_t *)tu_read_file(path, len);
	return *data != NULL ? 0 : -1;
}

/* A photo-like JPEG: smooth colour fields with stripes, different per
 * seed, so that the tiny model tells them apart. */
static int
write_jpeg(const char *path, int w, int h, unsigned seed)
{
	unsigned char *rgb = tu_stripes_rgb(w, h, seed, 96, 72), *jpeg = NULL;
	unsigned long jlen = 0;
	int rc = -1;

	if (rgb != NULL)
		jpeg = tu_jpeg_encode(rgb, w, h, 88, &jlen);
	if (jpeg != NULL)
		rc = tu_write_file(path, jpeg, jlen);
	tjFree(jpeg);
	free(rgb);
	return rc;
}

/* DIR/model (the tiny test model) and DIR/photos/{beach,city}/... */
static int
make_fixtures(const char *dir, int big)
{
	char p[600];
	tm_recipe r;

	snprintf(p, sizeof(p), "%s/model", dir);
	mkdir(p, 0755);
	tm_recipe_tiny(&r);
	if (tm_write_model(&r, p) != 0)
		return -1;
	snprintf(p, sizeof(p), "%s/photos", dir);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/photos/beach", dir);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/photos/city", dir);
	mkdir(p, 0755);
	for (int i = 0; i < N_SMALL; i++) {
		snprintf(p, sizeof(p), "%s/photos/%s/photo %02d.jpg", dir,
		    i % 2 ? "city" : "beach", i);
		if (write_jpeg(p, 160 + 24 * i, 120 + 16 * (i % 3), (unsigned)i + 1))
			return -1;
		/* beach/ is from 2001, city/ from 2011 */
		time_t t = (i % 2 ? 1300000000 : 1000000000) + i * 86400;
		struct timespec ts[2] = { { t, 0 }, { t, 0 } };
		utimensat(AT_FDCWD, p, ts, 0);
	}
	for (int i = 0; big && i < N_BIG; i++) {
		snprintf(p, sizeof(p), "%s/photos/city/big %d.jpg", dir, i);
		if (write_jpeg(p, 4000, 3000, 100u + (unsigned)i))
			return -1;
	}
	/* a file that cannot be indexed: a failure with its reason */
	snprintf(p, sizeof(p), "%s/photos/beach/broken.jpg", dir);
	if (tu_write_file(p, "\xff\xd8\xff\xe0 not really a jpeg", 23) != 0)
		return -1;
	/* the same photo twice: a duplicate group */
	uint8_t *d;
	size_t n;
	snprintf(p, sizeof(p), "%s/photos/beach/photo 00.jpg", dir);
	if (read_all(p, &d, &n) != 0)
		return -1;
	snprintf(p, sizeof(p), "%s/photos/city/copy of photo 00.jpg", dir);
	int rc = tu_write_file(p, d, n);
	free(d);
	return rc;
}

/* ---- a minimal HTTP client ---- */

typedef struct http_res {
	int status;
	char headers[4096];
	uint8_t *body;
	size_t len;
} http_res;

/* Sends raw request bytes to 127.0.0.1:port and reads the whole reply
 * (the request says "Connection: close"). */
static int
http_raw(int p, const char *req, http_res *out)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(p) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	size_t cap = 1 << 16, got = 0;
	uint8_t *buf = malloc(cap);

	memset(out, 0, sizeof(*out));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || buf == NULL ||
	    connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		free(buf);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		close(fd);
		free(buf);
		return -1;
	}
	for (;;) {
		if (got == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
		}
		ssize_t n = read(fd, buf + got, cap - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	uint8_t *end = memmem(buf, got, "\r\n\r\n", 4);
	if (end == NULL || sscanf((char *)buf, "HTTP/1.1 %d", &out->status) != 1) {
		free(buf);
		return -1;
	}
	size_t hl = (size_t)(end - buf);
	if (hl >= sizeof(out->headers))
		hl = sizeof(out->headers) - 1;
	memcpy(out->headers, buf, hl);
	out->headers[hl] = '\0';
	out->len = got - (size_t)(end + 4 - buf);
	out->body = malloc(out->len + 1);
	memcpy(out->body, end + 4, out->len);
	out->body[out->len] = '\0';
	free(buf);
	return 0;
}

static int
http_get(const char *path, const char *extra, http_res *out)
{
	char req[2048];
	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
	    "Connection: close\r\n%s\r\n", path, port, extra ? extra : "");
	return http_raw(port, req, out);
}

/* The value of a header (case-insensitive name), copied into buf. */
static const char *
header(const http_res *r, const char *name, char *buf, size_t n)
{
	size_t nl = strlen(name);
	for (const char *l = strstr(r->headers, "\r\n"); l != NULL;
	    l = strstr(l + 2, "\r\n")) {
		if (strncasecmp(l + 2, name, nl) == 0 && l[2 + nl] == ':') {
			const char *v = l + 3 + nl;
			while (*v == ' ')
				v++;
			size_t vl = strcspn(v, "\r\n");
			snprintf(buf, n, "%.*s", (int)vl, v);
			return buf;
		}
	}
	return NULL;
}

static void
http_res_free(http_res *r)
{
	free(r->body);
	r->body = NULL;
}

/* ---- the daemon ---- */

static void
api(const char *json, cJSON **out)
{
	char *reply = NULL;
	size_t len;
	int st;
	srv_handle(daemon_srv, json, strlen(json), SRV_ORIGIN_LOCAL, &reply, &len,
	    &st);
	assert_int_equal(st, 200);
	*out = cJSON_Parse(reply);
	free(reply);
	assert_non_null(*out);
}

static int
start(const char *host, const char *token, srv **out)
{
	char hp[64];
	cdx_error err;

	srv_config_init(&cfg);
	cfg.model_dir = strdup(model_dir);
	cfg.store_dir = strdup(store_dir);
	cfg.roots[cfg.n_roots++] = strdup(photos);
	cfg.listen[cfg.n_listen++] = strdup("inproc://daemon-web-test");
	cfg.threads = 1;
	cfg.web_cache_bytes = cfg_cache_bytes;
	if (cfg_min_side >= 0)
		cfg.min_side = cfg_min_side;
	if (token != NULL)
		cfg.token = strdup(token);
	for (int attempt = 0; attempt < 20; attempt++) {
		port = 20000 + (getpid() * 7 + attempt * 131) % 40000;
		snprintf(hp, sizeof(hp), "%s:%d", host, port);
		free(cfg.http);
		cfg.http = strdup(hp);
		if (srv_config_finish(&cfg, &err) != 0)
			fail_msg("config: %s", err.msg);
		int rc = srv_start(&cfg, out, &err);
		if (rc == 0)
			return 0;
		if (strstr(err.msg, "HTTP") == NULL)
			fail_msg("srv_start: %s", err.msg);
	}
	return -1;
}

static void
stop(void)
{
	srv_stop(daemon_srv);
	daemon_srv = NULL;
	srv_config_free(&cfg);
}

static int
setup(void **state)
{
	(void)state;
	snprintf(tmp, sizeof(tmp), "/tmp/cdx-web-XXXXXX");
	if (mkdtemp(tmp) == NULL)
		return -1;
	snprintf(model_dir, sizeof(model_dir), "%s/model", tmp);
	snprintf(photos, sizeof(photos), "%s/photos", tmp);
	snprintf(store_dir, sizeof(store_dir), "%s/store", tmp);
	if (make_fixtures(tmp, 1) != 0)
		return -1;
	if (start("127.0.0.1", NULL, &daemon_srv) != 0)
		return -1;
	char req[600];
	cJSON *r, *res;
	snprintf(req, sizeof(req), "{\"op\":\"add\",\"path\":\"%s\",\"wait\":true}",
	    photos);
	api(req, &r);
	cJSON_Delete(r);
	/* every id and path, by a search that returns them all */
	api("{\"op\":\"search\",\"text\":\"a photo\",\"k\":100}", &r);
	res = cJSON_GetObjectItem(r, "results");
	cJSON *h;
	cJSON_ArrayForEach(h, res) {
		if (n_ids == N_SMALL + N_BIG + 1)
			break;
		ids[n_ids] = (uint64_t)cJSON_GetObjectItem(h, "id")->valuedouble;
		snprintf(paths[n_ids], sizeof(paths[0]), "%s",
		    cJSON_GetObjectItem(h, "path")->valuestring);
		n_ids++;
	}
	cJSON_Delete(r);
	return n_ids == N_SMALL + N_BIG + 1 ? 0 : -1;
}

static int
teardown(void **state)
{
	(void)state;
	if (daemon_srv != NULL)
		stop();
	tm_rmtree(tmp);
	return 0;
}

static int
index_of_big(void)
{
	for (int i = 0; i < n_ids; i++)
		if (strstr(paths[i], "/big ") != NULL)
			return i;
	return -1;
}

/* ---- tests: pure functions ---- */

static void
test_parse_id(void **state)
{
	(void)state;
	uint64_t id;
	int64_t v;
	assert_int_equal(web_parse_id("/thumb/42", "/thumb", &id, &v), 0);
	assert_true(id == 42 && v == -1);
	assert_int_equal(web_parse_id("/thumb/7?v=1700000000", "/thumb", &id,
	    &v), 0);
	assert_true(id == 7 && v == 1700000000);
	assert_int_equal(web_parse_id("/image/18446744073709551615", "/image",
	    &id, &v), 0);
	assert_true(id == UINT64_MAX);
	static const char *const bad[] = {
		"/image/../../etc/passwd", "/image/%2e%2e/%2e%2e/etc/passwd",
		"/image/", "/image", "/image/abc", "/image/-1", "/image/+1",
		"/image/1.0", "/image/1/", "/image/1/../2", "/image/0",
		"/image/18446744073709551616", "/image/99999999999999999999999",
		"/image/000000000000000000001", "/image/ 1", "/image/1%00",
		"/image//etc/passwd", "/imagex/1", "/thumb/1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (web_parse_id(bad[i], "/image", &id, &v) != -1)
			fail_msg("'%s' was accepted", bad[i]);
}

/* Decodes a JPEG to RGB: *w, *h and a malloc'd buffer. */
static uint8_t *
decode_jpeg(const uint8_t *d, size_t n, int *w, int *h)
{
	tjhandle tj = tjInitDecompress();
	int ss, cs;
	uint8_t *rgb = NULL;
	if (tjDecompressHeader3(tj, d, n, w, h, &ss, &cs) == 0) {
		rgb = malloc((size_t)*w * *h * 3);
		if (tjDecompress2(tj, d, n, rgb, *w, 0, *h, TJPF_RGB, 0) != 0) {
			free(rgb);
			rgb = NULL;
		}
	}
	tjDestroy(tj);
	return rgb;
}

static double
mean_abs_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += abs((int)a[i] - (int)b[i]);
	return s / (double)n;
}

/* EXIF orientation 6 (rotate 90 degrees): the thumbnail is upright.  The
 * reference pixels were made by Pillow (exif_transpose + convert RGB). */
static void
test_thumbnail_orientation(void **state)
{
	(void)state;
	uint8_t *d, *ref, *th, *px;
	size_t n, rn, tn;
	int w, h;
	clip_image_info info;
	cdx_error err;

	assert_int_equal(read_all("tests/fixtures/images/j_orient6.jpg", &d, &n),
	    0);
	assert_int_equal(read_all("tests/fixtures/images/j_orient6_jpg.rgb",
	    &ref, &rn), 0);
	CDX_ASSERT_OK(clip_image_probe(d, n, &info, &err), err.msg);
	assert_int_equal(info.orientation, 6);
	CDX_ASSERT_OK(web_thumbnail(d, n, 0, &th, &tn, &err), err.msg);
	px = decode_jpeg(th, tn, &w, &h);
	assert_non_null(px);
	/* the displayed size, not the stored one */
	assert_int_equal(w, info.width);
	assert_int_equal(h, info.height);
	assert_int_equal(rn, (size_t)w * h * 3);
	/* JPEG re-encoding of a tiny busy image costs a few levels; turned the
	 * other way (the reference rotated by 180 degrees) it is far off. */
	uint8_t *rot = malloc(rn);
	for (size_t i = 0; i < rn / 3; i++)
		memcpy(rot + i * 3, ref + (rn / 3 - 1 - i) * 3, 3);
	double mad = mean_abs_diff(px, ref, rn);
	double mad_rot = mean_abs_diff(px, rot, rn);
	free(rot);
	if (!(mad < 10.0 && mad * 3 < mad_rot))
		fail_msg("mean abs diff %.2f, rotated by 180: %.2f", mad, mad_rot);
	free(px);
	free(th);
	free(ref);
	free(d);
}

/* A 12 MP JPEG becomes 320x240 and matches a box filter of the full-size
 * decode; a PNG that already fits keeps its size. */
static void
test_thumbnail_sizes(void **state)
{
	(void)state;
	int bi = index_of_big();
	uint8_t *d, *th, *px;
	size_t n, tn;
	int w, h;
	cdx_error err;
	clip_image full;

	assert_true(bi >= 0);
	assert_int_equal(read_all(paths[bi], &d, &n), 0);
	double t0 = srv_now();
	CDX_ASSERT_OK(web_thumbnail(d, n, 0, &th, &tn, &err), err.msg);
	double dt = srv_now() - t0;
	print_message("thumbnail of a 4000x3000 JPEG (%zu bytes): %.1f ms, "
	    "%zu bytes\n", n, dt * 1e3, tn);
	px = decode_jpeg(th, tn, &w, &h);
	assert_non_null(px);
	assert_int_equal(w, 320);
	assert_int_equal(h, 240);
	/* reference: full decode, mean over each 12.5 x 12.5 block */
	CDX_ASSERT_OK(clip_image_decode(d, n, NULL, &full, &err), err.msg);
	uint8_t *ref = malloc(320 * 240 * 3);
	for (int oy = 0; oy < 240; oy++)
		for (int ox = 0; ox < 320; ox++)
			for (int c = 0; c < 3; c++) {
				double s = 0;
				int cnt = 0;
				for (int y = oy * 3000 / 240; y < (oy + 1) * 3000 / 240; y++)
					for (int x = ox * 4000 / 320; x < (ox + 1) * 4000 / 320;
					    x++, cnt++)
						s += full.rgb[((size_t)y * 4000 + x) * 3 + c];
				ref[((size_t)oy * 320 + ox) * 3 + c] =
				    (uint8_t)(s / cnt + 0.5);
			}
	assert_true(mean_abs_diff(px, ref, 320 * 240 * 3) < 8.0);
	clip_image_free(&full);
	free(ref);
	free(px);
	free(th);
	free(d);

	/* PNG, 256x192: no upscaling */
	assert_int_equal(read_all("tests/fixtures/images/j_big_jpg_224_256x192.png",
	    &d, &n), 0);
	CDX_ASSERT_OK(web_thumbnail(d, n, 0, &th, &tn, &err), err.msg);
	px = decode_jpeg(th, tn, &w, &h);
	assert_non_null(px);
	assert_int_equal(w, 256);
	assert_int_equal(h, 192);
	CDX_ASSERT_OK(clip_image_decode(d, n, NULL, &full, &err), err.msg);
	assert_true(mean_abs_diff(px, full.rgb, 256 * 192 * 3) < 6.0);
	clip_image_free(&full);
	free(px);
	free(th);
	free(d);

	/* not an image, and a pixel limit */
	assert_int_equal(web_thumbnail((const uint8_t *)"hello", 5, 0, &th, &tn,
	    &err), CDX_EFORMAT);
	assert_int_equal(read_all(paths[bi], &d, &n), 0);
	assert_int_equal(web_thumbnail(d, n, 1000000, &th, &tn, &err),
	    CDX_ETOOBIG);
	free(d);
}

/* ---- tests: over HTTP ---- */

static void
check_security_headers(const http_res *r)
{
	char v[512];
	assert_non_null(header(r, "Content-Security-Policy", v, sizeof(v)));
	assert_non_null(strstr(v, "default-src 'self'"));
	assert_non_null(strstr(v, "frame-ancestors 'none'"));
	assert_non_null(header(r, "X-Content-Type-Options", v, sizeof(v)));
	assert_string_equal(v, "nosniff");
	assert_non_null(header(r, "Referrer-Policy", v, sizeof(v)));
	assert_string_equal(v, "no-referrer");
}

static void
test_page(void **state)
{
	(void)state;
	http_res r;
	char v[256], etag[64], extra[128];

	assert_int_equal(http_get("/", NULL, &r), 0);
	assert_int_equal(r.status, 200);
	check_security_headers(&r);
	assert_non_null(header(&r, "Content-Type", v, sizeof(v)));
	assert_string_equal(v, "text/html; charset=utf-8");
	assert_non_null(strstr((char *)r.body, "<!doctype html>"));
	/* no external resources */
	assert_null(strstr((char *)r.body, "http://"));
	assert_null(strstr((char *)r.body, "https://"));
	assert_non_null(header(&r, "ETag", etag, sizeof(etag)));
	http_res_free(&r);

	snprintf(extra, sizeof(extra), "If-None-Match: %s\r\n", etag);
	assert_int_equal(http_get("/", extra, &r), 0);
	assert_int_equal(r.status, 304);
	assert_int_equal(r.len, 0);
	http_res_free(&r);

	assert_int_equal(http_get("/?q=beach%20-%20people", NULL, &r), 0);
	assert_int_equal(r.status, 200);
	http_res_free(&r);

	assert_int_equal(http_get("/app.js", NULL, &r), 0);
	assert_int_equal(r.status, 200);
	assert_non_null(header(&r, "Content-Type", v, sizeof(v)));
	assert_string_equal(v, "text/javascript; charset=utf-8");
	assert_true(r.len > 1000);
	assert_null(strstr((char *)r.body, "https://"));
	http_res_free(&r);

	assert_int_equal(http_get("/app.css", NULL, &r), 0);
	assert_int_equal(r.status, 200);
	assert_non_null(header(&r, "Content-Type", v, sizeof(v)));
	assert_string_equal(v, "text/css; charset=utf-8");
	http_res_free(&r);

	assert_int_equal(http_get("/nothing-here", NULL, &r), 0);
	assert_int_equal(r.status, 404);
	http_res_free(&r);

	/* the JSON API is still there */
	char req[512];
	snprintf(req, sizeof(req), "POST /api HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
	    "Connection: close\r\nContent-Length: 15\r\n\r\n{\"op\":\"status\"}",
	    port);
	assert_int_equal(http_raw(port, req, &r), 0);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr((char *)r.body, "\"ok\":true"));
	http_res_free(&r);

	/* ... but not for other web sites (CSRF) or foreign host names (DNS
	 * rebinding); the page's own origin is fine */
	static const char *const heads[][2] = {
		{ "127.0.0.1:%d", "Origin: http://evil.example\r\n" },
		{ "127.0.0.1:%d", "Origin: null\r\n" },
		{ "127.0.0.1:%d", "Origin: http://127.0.0.1:1\r\n" },
		{ "evil.example:%d", "" },
		{ "127.0.0.1:%d", "Origin: http://127.0.0.1:%d\r\n" },
		{ "localhost:%d", "Origin: http://localhost:%d\r\n" },
	};
	for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
		char host[64], origin[96];
		snprintf(host, sizeof(host), heads[i][0], port);
		snprintf(origin, sizeof(origin), heads[i][1], port);
		snprintf(req, sizeof(req), "POST /api HTTP/1.1\r\nHost: %s\r\n%s"
		    "Connection: close\r\nContent-Type: text/plain\r\n"
		    "Content-Length: 15\r\n\r\n{\"op\":\"status\"}", host, origin);
		assert_int_equal(http_raw(port, req, &r), 0);
		if (r.status != (i < 4 ? 403 : 200))
			fail_msg("Host %s, %s: status %d", host, origin, r.status);
		if (i < 4)
			assert_non_null(strstr((char *)r.body, "\"forbidden\""));
		http_res_free(&r);
	}
}

static void
test_thumb_and_image(void **state)
{
	(void)state;
	http_res r;
	char path[64], v[256], etag[96], extra[160];
	struct stat st;
	int w, h;

	for (int i = 0; i < n_ids; i++) {
		assert_int_equal(stat(paths[i], &st), 0);
		snprintf(path, sizeof(path), "/thumb/%llu",
		    (unsigned long long)ids[i]);
		assert_int_equal(http_get(path, NULL, &r), 0);
		assert_int_equal(r.status, 200);
		check_security_headers(&r);
		assert_non_null(header(&r, "Content-Type", v, sizeof(v)));
		assert_string_equal(v, "image/jpeg");
		assert_non_null(header(&r, "Cache-Control", v, sizeof(v)));
		assert_string_equal(v, "private, no-cache");
		uint8_t *px = decode_jpeg(r.body, r.len, &w, &h);
		assert_non_null(px);
		free(px);
		assert_true(w <= 320 && h <= 320 && (w == 320 || h == 320 ||
		    (w >= 160 && h >= 120)));
		assert_non_null(header(&r, "ETag", etag, sizeof(etag)));
		http_res_free(&r);

		/* revalidation */
		snprintf(extra, sizeof(extra), "If-None-Match: %s\r\n", etag);
		assert_int_equal(http_get(path, extra, &r), 0);
		assert_int_equal(r.status, 304);
		http_res_free(&r);

		/* ?v= the current mtime: cacheable for good */
		snprintf(path, sizeof(path), "/thumb/%llu?v=%lld",
		    (unsigned long long)ids[i], (long long)st.st_mtime);
		assert_int_equal(http_get(path, NULL, &r), 0);
		assert_int_equal(r.status, 200);
		assert_non_null(header(&r, "Cache-Control", v, sizeof(v)));
		assert_string_equal(v, "private, max-age=31536000, immutable");
		http_res_free(&r);

		/* the full image: the file's bytes */
		uint8_t *d;
		size_t n;
		snprintf(path, sizeof(path), "/image/%llu",
		    (unsigned long long)ids[i]);
		assert_int_equal(http_get(path, NULL, &r), 0);
		assert_int_equal(r.status, 200);
		check_security_headers(&r);
		assert_non_null(header(&r, "Content-Type", v, sizeof(v)));
		assert_string_equal(v, "image/jpeg");
		assert_int_equal(read_all(paths[i], &d, &n), 0);
		assert_int_equal(r.len, n);
		assert_memory_equal(r.body, d, n);
		free(d);
		http_res_free(&r);
	}
}

struct fetch_arg {
	uint64_t id;
	int status;
	size_t len;
};

static void *
fetch_thumb(void *arg)
{
	struct fetch_arg *a = arg;
	char path[64];
	http_res r;
	snprintf(path, sizeof(path), "/thumb/%llu", (unsigned long long)a->id);
	if (http_get(path, NULL, &r) == 0) {
		a->status = r.status;
		a->len = r.len;
		http_res_free(&r);
	}
	return NULL;
}

/* A changed file gets a new thumbnail (the cache is keyed by mtime and
 * size); a page's worth of concurrent requests all succeed. */
static void
test_cache_and_concurrency(void **state)
{
	(void)state;
	int bi = index_of_big();
	char path[64], etag1[96], etag2[96];
	http_res r;

	snprintf(path, sizeof(path), "/thumb/%llu", (unsigned long long)ids[bi]);
	assert_int_equal(http_get(path, NULL, &r), 0);
	assert_int_equal(r.status, 200);
	header(&r, "ETag", etag1, sizeof(etag1));
	uint8_t *before = r.body;
	size_t before_len = r.len;
	/* the same path, other content, other mtime */
	assert_int_equal(write_jpeg(paths[bi], 3000, 4000, 999), 0);
	struct timespec ts[2] = { { 1500000000, 0 }, { 1500000000, 0 } };
	assert_int_equal(utimensat(AT_FDCWD, paths[bi], ts, 0), 0);
	assert_int_equal(http_get(path, NULL, &r), 0);
	assert_int_equal(r.status, 200);
	header(&r, "ETag", etag2, sizeof(etag2));
	assert_string_not_equal(etag1, etag2);
	int w, h;
	uint8_t *px = decode_jpeg(r.body, r.len, &w, &h);
	assert_non_null(px);
	assert_int_equal(w, 240);       /* now portrait */
	assert_int_equal(h, 320);
	assert_true(before_len != r.len || memcmp(before, r.body, r.len) != 0);
	free(px);
	free(before);
	http_res_free(&r);

	/* 50 requests at once (a page of results), big photos among them */
	enum { N = 50 };
	pthread_t th[N];
	struct fetch_arg a[N];
	double t0 = srv_now();
	for (int i = 0; i < N; i++) {
		a[i] = (struct fetch_arg){ ids[i % n_ids], 0, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, fetch_thumb, &a[i]), 0);
	}
	for (int i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(a[i].status, 200);
		assert_true(a[i].len > 100);
	}
	print_message("50 concurrent thumbnail requests (cached): %.1f ms\n",
	    (srv_now() - t0) * 1e3);
}

static void
test_traversal(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"/image/../../etc/passwd", "/thumb/../../etc/passwd",
		"/image/%2e%2e/%2e%2e/etc/passwd", "/image/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
		"/image/..%2f..%2fetc%2fpasswd", "/image//etc/passwd",
		"/image/%2fetc%2fpasswd", "/image/abc", "/image/-1", "/image/1.5",
		"/image/0", "/image/1e3", "/image/0x10",
		"/image/99999999999999999999999999999999",
		"/image/18446744073709551616", "/image/18446744073709551615",
		"/thumb/4294967297", "/image/1%00.jpg", "/image/1;/etc/passwd",
		"/image/1/../../../etc/passwd", "/image/..", "/image/.",
		"/thumb/", "/thumb", "/image", "/etc/passwd", "/../etc/passwd",
		"/%2e%2e/etc/passwd",
	};
	http_res r;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(http_get(bad[i], NULL, &r), 0);
		if (r.status == 200 || (r.body && strstr((char *)r.body, "root:")))
			fail_msg("%s: status %d", bad[i], r.status);
		assert_true(r.status >= 400 && r.status < 500);
		http_res_free(&r);
	}
	/* a number that is no image's id */
	assert_int_equal(http_get("/image/123456789", NULL, &r), 0);
	assert_int_equal(r.status, 404);
	http_res_free(&r);

	/* a foreign Host (DNS rebinding) is refused; so is another method */
	char path[64], req[256];
	snprintf(path, sizeof(path), "/thumb/%llu", (unsigned long long)ids[0]);
	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: evil.example:%d\r\n"
	    "Connection: close\r\n\r\n", path, port);
	assert_int_equal(http_raw(port, req, &r), 0);
	assert_int_equal(r.status, 403);
	http_res_free(&r);
	snprintf(req, sizeof(req), "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	    "Connection: close\r\nContent-Length: 0\r\n\r\n", path);
	assert_int_equal(http_raw(port, req, &r), 0);
	assert_int_equal(r.status, 405);
	http_res_free(&r);
}

/* An indexed file replaced by a symlink is not followed.  (Last: the
 * daemon's indexer may notice the change and forget the image, which also
 * answers 404.  The original is moved out of the watched folder, so that
 * the indexer cannot follow it as a rename, which keeps the id.) */
static void
test_symlink_not_followed(void **state)
{
	(void)state;
	char link[512], target[512], path[64];
	http_res r;

	if (daemon_srv == NULL)
		assert_int_equal(start("127.0.0.1", NULL, &daemon_srv), 0);
	uint8_t *d;
	size_t n;
	snprintf(target, sizeof(target), "%s/secret.jpg", tmp);
	assert_int_equal(read_all(paths[1], &d, &n), 0);
	assert_int_equal(tu_write_file(target, d, n), 0);
	free(d);
	snprintf(link, sizeof(link), "%s/moved-away.jpg", tmp);
	assert_int_equal(rename(paths[1], link), 0);
	assert_int_equal(symlink(target, paths[1]), 0);
	snprintf(path, sizeof(path), "/image/%llu", (unsigned long long)ids[1]);
	assert_int_equal(http_get(path, NULL, &r), 0);
	assert_int_equal(r.status, 404);
	http_res_free(&r);
	unlink(paths[1]);
	assert_int_equal(rename(link, paths[1]), 0);

	/* ... nor a folder on the way: photos/beach -> a copy elsewhere */
	char beach[512], moved[512], copy[300], target2[700];
	int bi = -1;
	for (int i = 0; i < n_ids && bi < 0; i++)
		if (strstr(paths[i], "/beach/photo ") != NULL)
			bi = i;
	assert_true(bi >= 0);
	snprintf(beach, sizeof(beach), "%s/beach", photos);
	snprintf(moved, sizeof(moved), "%s/beach-moved", tmp);
	snprintf(copy, sizeof(copy), "%s/elsewhere", tmp);
	assert_int_equal(mkdir(copy, 0755), 0);
	snprintf(target2, sizeof(target2), "%s/%s", copy,
	    strrchr(paths[bi], '/') + 1);
	assert_int_equal(read_all(paths[bi], &d, &n), 0);
	assert_int_equal(tu_write_file(target2, d, n), 0);
	free(d);
	assert_int_equal(rename(beach, moved), 0);
	assert_int_equal(symlink(copy, beach), 0);
	snprintf(path, sizeof(path), "/image/%llu", (unsigned long long)ids[bi]);
	assert_int_equal(http_get(path, NULL, &r), 0);
	assert_int_equal(r.status, 404);
	http_res_free(&r);
	snprintf(path, sizeof(path), "/thumb/%llu", (unsigned long long)ids[bi]);
	assert_int_equal(http_get(path, NULL, &r), 0);
	assert_int_equal(r.status, 404);
	http_res_free(&r);
	unlink(beach);
	assert_int_equal(rename(moved, beach), 0);
}

/* The cache keeps at most web_cache_bytes (srv_config), dropping the least recently
 * used thumbnails; what it drops is made again. */
static void
test_cache_bound(void **state)
{
	(void)state;
	char path[64];
	http_res r;
	size_t n, bytes, sizes[64] = { 0 };

	stop();
	cfg_cache_bytes = 40000;
	int rc = start("127.0.0.1", NULL, &daemon_srv);
	cfg_cache_bytes = 0;
	assert_int_equal(rc, 0);
	for (int round = 0; round < 2; round++)
		for (int i = 0; i < n_ids; i++) {
			snprintf(path, sizeof(path), "/thumb/%llu",
			    (unsigned long long)ids[i]);
			assert_int_equal(http_get(path, NULL, &r), 0);
			assert_int_equal(r.status, 200);
			if (round == 0)
				sizes[i] = r.len;
			else            /* the same thumbnail, cached or made again */
				assert_int_equal(r.len, sizes[i]);
			http_res_free(&r);
			web_cache_stats(daemon_srv, &n, &bytes);
			assert_true(bytes <= 40000);
		}
	/* (a thumbnail over a quarter of the bound is never kept) */
	web_cache_stats(daemon_srv, &n, &bytes);
	assert_true(n >= 2);
	assert_true(n < (size_t)n_ids);     /* some were dropped */
	print_message("cache bound 40000 bytes: %zu thumbnails, %zu bytes\n", n,
	    bytes);
}

/* Clients that send a request and hang up at once (a page closed while
 * its thumbnails load) leave the daemon serving the next ones. */
static void
test_client_hangs_up(void **state)
{
	(void)state;
	char req[256];
	http_res r;

	for (int i = 0; i < 60; i++) {
		struct sockaddr_in a = { .sin_family = AF_INET,
		    .sin_port = htons(port) };
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		assert_true(fd >= 0);
		assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
		snprintf(req, sizeof(req), "GET /%s/%llu HTTP/1.1\r\nHost: "
		    "localhost\r\n\r\n", i % 3 ? "thumb" : "image",
		    (unsigned long long)ids[i % n_ids]);
		assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
		close(fd);
	}
	snprintf(req, sizeof(req), "/thumb/%llu", (unsigned long long)ids[0]);
	assert_int_equal(http_get(req, NULL, &r), 0);
	assert_int_equal(r.status, 200);
	http_res_free(&r);
}

/* On a non-loopback address the daemon has a token: images need it, the
 * page's files do not. */
static void
test_token(void **state)
{
	(void)state;
	char path[64], extra[128];
	http_res r;
	uint64_t id = ids[0];

	stop();
	assert_int_equal(start("0.0.0.0", "s3cret-token", &daemon_srv), 0);
	snprintf(path, sizeof(path), "/thumb/%llu", (unsigned long long)id);
	assert_int_equal(http_get(path, NULL, &r), 0);
	assert_int_equal(r.status, 401);
	http_res_free(&r);
	assert_int_equal(http_get(path, "Authorization: Bearer s3cret-tokeN\r\n",
	    &r), 0);
	assert_int_equal(r.status, 401);
	http_res_free(&r);
	assert_int_equal(http_get(path, "Authorization: s3cret-token\r\n", &r),
	    0);
	assert_int_equal(r.status, 401);
	http_res_free(&r);
	snprintf(extra, sizeof(extra), "Authorization: Bearer s3cret-token\r\n");
	assert_int_equal(http_get(path, extra, &r), 0);
	assert_int_equal(r.status, 200);
	http_res_free(&r);
	snprintf(path, sizeof(path), "/image/%llu", (unsigned long long)id);
	assert_int_equal(http_get(path, NULL, &r), 0);
	assert_int_equal(r.status, 401);
	http_res_free(&r);
	assert_int_equal(http_get("/", NULL, &r), 0);
	assert_int_equal(r.status, 200);
	http_res_free(&r);
	assert_int_equal(http_get("/app.js", NULL, &r), 0);
	assert_int_equal(r.status, 200);
	http_res_free(&r);
}

/* One guard for every request (daemon/access.c): a foreign Origin or a
 * non-loopback Host is refused on the images as on /api; and the token
 * rule is the same on /image as on /api: "LOCALHOST" is loopback (no
 * token on either), "127.1" (not a four-octet address) is not (the token
 * on both). */
static void
test_one_guard(void **state)
{
	(void)state;
	char path[64], req[512];
	http_res r;
	static const struct { const char *host, *origin; int status; } cases[] = {
		{ "127.0.0.1:%d", "", 200 },
		{ "localhost:%d", "Origin: http://localhost:%d\r\n", 200 },
		{ "127.0.0.1:%d", "Origin: http://evil.example\r\n", 403 },
		{ "LOCALHOST:%d", "", 200 },
		/* DNS rebinding (issue 14): the "127." prefix rule let these in */
		{ "127.0.0.1.evil.example:%d", "", 403 },
		{ "127.attacker.test:%d", "Origin: http://127.attacker.test:%d\r\n",
		    403 },
		{ "127.0.0.1:%d, evil", "", 403 },
	};

	stop();
	assert_int_equal(start("127.0.0.1", NULL, &daemon_srv), 0);
	snprintf(path, sizeof(path), "/thumb/%llu", (unsigned long long)ids[0]);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char host[96], origin[96];
		snprintf(host, sizeof(host), cases[i].host, port);
		snprintf(origin, sizeof(origin), cases[i].origin, port);
		snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\n%s"
		    "Connection: close\r\n\r\n", path, host, origin);
		assert_int_equal(http_raw(port, req, &r), 0);
		if (r.status != cases[i].status)
			fail_msg("Host %s, %s: status %d", host, origin, r.status);
		http_res_free(&r);
	}

	static const struct { const char *addr; int status; } daemons[] = {
		{ "LOCALHOST", 200 },
		{ "127.1", 401 },
	};
	for (size_t i = 0; i < sizeof(daemons) / sizeof(daemons[0]); i++) {
		stop();
		assert_int_equal(start(daemons[i].addr, "s3cret", &daemon_srv), 0);
		for (int k = 0; k < 2; k++) {
			snprintf(path, sizeof(path), k ? "/image/%llu" : "/thumb/%llu",
			    (unsigned long long)ids[0]);
			assert_int_equal(http_get(path, NULL, &r), 0);
			if (r.status != daemons[i].status)
				fail_msg("--http %s: %s without a token: %d",
				    daemons[i].addr, path, r.status);
			http_res_free(&r);
			assert_int_equal(http_get(path, "Authorization: Bearer "
			    "s3cret\r\n", &r), 0);
			assert_int_equal(r.status, 200);
			http_res_free(&r);
		}
		snprintf(req, sizeof(req), "POST /api HTTP/1.1\r\nHost: "
		    "127.0.0.1:%d\r\nConnection: close\r\nContent-Length: 15"
		    "\r\n\r\n{\"op\":\"status\"}", port);
		assert_int_equal(http_raw(port, req, &r), 0);
		if (r.status != daemons[i].status)
			fail_msg("--http %s: /api without a token: %d",
			    daemons[i].addr, r.status);
		http_res_free(&r);
	}
}

/* Stopping the daemon with thumbnail requests in flight answers them all
 * (no hang, no leak under the sanitizers). */
static void
test_stop_in_flight(void **state)
{
	(void)state;
	stop();
	assert_int_equal(start("127.0.0.1", NULL, &daemon_srv), 0);
	enum { N = 24 };
	pthread_t th[N];
	struct fetch_arg a[N];
	for (int i = 0; i < N; i++) {
		a[i] = (struct fetch_arg){ ids[i % n_ids], 0, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, fetch_thumb, &a[i]), 0);
	}
	usleep(20000);
	stop();
	for (int i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		/* answered, refused (503) or cut off: never stuck */
		assert_true(a[i].status == 0 || a[i].status == 200 ||
		    a[i].status == 503);
	}
}

/* Every format the encoder reads has a thumbnail; /image serves the
 * originals browsers show, a JPEG rendition of HEIC, TIFF and RAW, and
 * every original with ?original=1. */
static void
test_other_formats(void **state)
{
	static const struct {
		const char *name, *type;
		int rendition;
	} files[] = {
		{ "h_irot.heic", "image/heic", 1 },
		{ "t_orient6.tif", "image/tiff", 1 },
		{ "r_large16.dng", "application/octet-stream", 1 },
		{ "a_basic.avif", "image/avif", 0 },
		{ "w_orient6.webp", "image/webp", 0 },
		{ "g_basic.gif", "image/gif", 0 },
		{ "b_24.bmp", "image/bmp", 0 },
	};
	enum { N = sizeof(files) / sizeof(files[0]) };
	char dir[400], paths_f[N][600], req[700], path[96], v[128];
	uint64_t fid[N] = { 0 };
	http_res r;
	cJSON *rep;
	(void)state;

	if (daemon_srv != NULL)
		stop();
	cfg_min_side = 16;      /* the fixtures are small */
	assert_int_equal(start("127.0.0.1", NULL, &daemon_srv), 0);
	cfg_min_side = -1;
	snprintf(dir, sizeof(dir), "%s/formats", photos);
	assert_int_equal(mkdir(dir, 0755), 0);
	for (int i = 0; i < N; i++) {
		uint8_t *d;
		size_t n;
		char src[300];
		snprintf(src, sizeof(src), "tests/fixtures/images/formats/%s",
		    files[i].name);
		assert_int_equal(read_all(src, &d, &n), 0);
		/* no extension: the content decides */
		snprintf(paths_f[i], sizeof(paths_f[i]), "%s/file%d", dir, i);
		assert_int_equal(tu_write_file(paths_f[i], d, n), 0);
		free(d);
	}
	snprintf(req, sizeof(req), "{\"op\":\"add\",\"path\":\"%s\","
	    "\"wait\":true}", dir);
	api(req, &rep);
	cJSON_Delete(rep);
	/* every image under dir, whatever its score */
	snprintf(req, sizeof(req), "{\"op\":\"search\",\"text\":\"a photo\","
	    "\"k\":200,\"filter\":{\"path_prefix\":\"%s/\"}}", dir);
	api(req, &rep);
	cJSON *h;
	cJSON_ArrayForEach(h, cJSON_GetObjectItem(rep, "results"))
		for (int i = 0; i < N; i++)
			if (strcmp(cJSON_GetObjectItem(h, "path")->valuestring,
			    paths_f[i]) == 0)
				fid[i] = (uint64_t)cJSON_GetObjectItem(h,
				    "id")->valuedouble;
	cJSON_Delete(rep);
	for (int i = 0; i < N; i++) {
		int w, hh;
		if (fid[i] == 0)
			fail_msg("%s was not indexed", files[i].name);
		snprintf(path, sizeof(path), "/thumb/%llu",
		    (unsigned long long)fid[i]);
		assert_int_equal(http_get(path, NULL, &r), 0);
		assert_int_equal(r.status, 200);
		uint8_t *px = decode_jpeg(r.body, r.len, &w, &hh);
		assert_non_null(px);
		free(px);
		http_res_free(&r);

		/* what the decoder gives in the rendition's mode */
		uint8_t *d;
		size_t n;
		assert_int_equal(read_all(paths_f[i], &d, &n), 0);
		clip_image img;
		clip_decode_opts o = { .min_short = 1080 };
		cdx_error err;
		CDX_ASSERT_OK(clip_image_decode(d, n, &o, &img, &err), err.msg);

		snprintf(path, sizeof(path), "/image/%llu",
		    (unsigned long long)fid[i]);
		assert_int_equal(http_get(path, NULL, &r), 0);
		assert_int_equal(r.status, 200);
		assert_non_null(header(&r, "Content-Type", v, sizeof(v)));
		if (files[i].rendition) {
			assert_string_equal(v, "image/jpeg");
			px = decode_jpeg(r.body, r.len, &w, &hh);
			assert_non_null(px);
			free(px);
			/* upright: the size as displayed */
			assert_int_equal(w, img.width);
			assert_int_equal(hh, img.height);
		} else {
			assert_string_equal(v, files[i].type);
			assert_int_equal(r.len, n);
			assert_memory_equal(r.body, d, n);
		}
		http_res_free(&r);
		clip_image_free(&img);

		/* the original, downloadable */
		snprintf(path, sizeof(path), "/image/%llu?original=1",
		    (unsigned long long)fid[i]);
		assert_int_equal(http_get(path, NULL, &r), 0);
		assert_int_equal(r.status, 200);
		assert_non_null(header(&r, "Content-Type", v, sizeof(v)));
		assert_string_equal(v, files[i].type);
		assert_int_equal(r.len, n);
		assert_memory_equal(r.body, d, n);
		http_res_free(&r);
		free(d);
	}
	uint8_t *out = NULL;
	size_t out_len = 0;
	assert_int_equal(web_rendition((const uint8_t *)"nope", 4, 0, &out,
	    &out_len, NULL), CDX_EFORMAT);
	for (int i = 0; i < N; i++)
		unlink(paths_f[i]);
	rmdir(dir);
}

/* A video clip: its frames are hits with "kind" and "time", /thumb and
 * /image give the frame, /video the clip with range requests. */
static void
test_video(void **state)
{
	char dir[400], clip[600], cmd[1400], req[700], path[96], v[128];
	uint64_t fid[4] = { 0 };
	double ftime[4];
	int nf = 0;
	http_res r;
	cJSON *rep;
	(void)state;

	if (daemon_srv == NULL)
		assert_int_equal(start("127.0.0.1", NULL, &daemon_srv), 0);
	snprintf(dir, sizeof(dir), "%s/clips", photos);
	assert_int_equal(mkdir(dir, 0755), 0);
	snprintf(clip, sizeof(clip), "%s/red then blue.mp4", dir);
	snprintf(cmd, sizeof(cmd), "ffmpeg -nostdin -loglevel error -y -f lavfi "
	    "-i 'color=c=red:size=128x96:rate=10:duration=4[a];color=c=blue:"
	    "size=128x96:rate=10:duration=4[b];[a][b]concat' -c:v libx264 "
	    "-g 10 -pix_fmt yuv420p '%s'", clip);
	assert_int_equal(system(cmd), 0);
	snprintf(req, sizeof(req), "{\"op\":\"add\",\"path\":\"%s\","
	    "\"wait\":true}", dir);
	api(req, &rep);
	cJSON_Delete(rep);
	api("{\"op\":\"status\"}", &rep);
	assert_int_equal(cJSON_GetObjectItem(rep, "clips")->valueint, 1);
	assert_int_equal(cJSON_GetObjectItem(rep, "frames")->valueint, 2);
	cJSON_Delete(rep);
	api("{\"op\":\"search\",\"text\":\"a photo\",\"k\":200}", &rep);
	cJSON *h;
	cJSON_ArrayForEach(h, cJSON_GetObjectItem(rep, "results")) {
		cJSON *k = cJSON_GetObjectItem(h, "kind");
		if (strcmp(cJSON_GetObjectItem(h, "path")->valuestring, clip) != 0) {
			assert_null(k);         /* images carry no kind */
			continue;
		}
		assert_non_null(k);
		assert_string_equal(k->valuestring, "frame");
		assert_true(nf < 4);
		fid[nf] = (uint64_t)cJSON_GetObjectItem(h, "id")->valuedouble;
		ftime[nf++] = cJSON_GetObjectItem(h, "time")->valuedouble;
	}
	cJSON_Delete(rep);
	/* The scene rule: one frame per shot, red at 0 s, blue at 4 s. */
	assert_int_equal(nf, 2);
	int blue = ftime[0] > ftime[1] ? 0 : 1;
	assert_true(ftime[1 - blue] < 0.05 && fabs(ftime[blue] - 4.0) < 0.15);

	int w, hh;
	snprintf(path, sizeof(path), "/thumb/%llu", (unsigned long long)fid[blue]);
	assert_int_equal(http_get(path, NULL, &r), 0);
	assert_int_equal(r.status, 200);
	uint8_t *px = decode_jpeg(r.body, r.len, &w, &hh);
	assert_non_null(px);
	assert_int_equal(w, 128);
	size_t mid = ((size_t)(hh / 2) * (size_t)w + (size_t)w / 2) * 3;
	assert_true(px[mid + 2] > 200 && px[mid] < 60);
	free(px);
	http_res_free(&r);
	snprintf(path, sizeof(path), "/image/%llu", (unsigned long long)fid[1 -
	    blue]);
	assert_int_equal(http_get(path, NULL, &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(header(&r, "Content-Type", v, sizeof(v)),
	    "image/jpeg");
	px = decode_jpeg(r.body, r.len, &w, &hh);
	assert_non_null(px);
	assert_true(px[mid] > 200 && px[mid + 2] < 60);
	free(px);
	http_res_free(&r);

	/* The clip: whole, by ranges, as the original of a frame. */
	uint8_t *d;
	size_t n;
	assert_int_equal(read_all(clip, &d, &n), 0);
	snprintf(path, sizeof(path), "/video/%llu", (unsigned long long)fid[0]);
	assert_int_equal(http_get(path, NULL, &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(header(&r, "Content-Type", v, sizeof(v)),
	    "video/mp4");
	assert_string_equal(header(&r, "Accept-Ranges", v, sizeof(v)), "bytes");
	assert_int_equal(r.len, n);
	assert_memory_equal(r.body, d, n);
	http_res_free(&r);
	assert_int_equal(http_get(path, "Range: bytes=100-199\r\n", &r), 0);
	assert_int_equal(r.status, 206);
	char want[96];
	snprintf(want, sizeof(want), "bytes 100-199/%zu", n);
	assert_string_equal(header(&r, "Content-Range", v, sizeof(v)), want);
	assert_int_equal(r.len, 100);
	assert_memory_equal(r.body, d + 100, 100);
	http_res_free(&r);
	assert_int_equal(http_get(path, "Range: bytes=-10\r\n", &r), 0);
	assert_int_equal(r.status, 206);
	assert_int_equal(r.len, 10);
	assert_memory_equal(r.body, d + n - 10, 10);
	http_res_free(&r);
	char rg[64];
	snprintf(rg, sizeof(rg), "Range: bytes=%zu-\r\n", n);
	assert_int_equal(http_get(path, rg, &r), 0);
	assert_int_equal(r.status, 416);
	http_res_free(&r);
	/* A Range header that names no range is ignored: the whole file
	 * ("bytes=5" is not byte 5), as for several ranges or B < A. */
	static const char *const whole[] = { "bytes=5", "bytes=9-3",
	    "bytes=0-1,5-6", "bytes=x-", "bytes=5-x" };
	for (size_t i = 0; i < sizeof(whole) / sizeof(whole[0]); i++) {
		snprintf(rg, sizeof(rg), "Range: %s\r\n", whole[i]);
		assert_int_equal(http_get(path, rg, &r), 0);
		if (r.status != 200)
			fail_msg("%s: %d", whole[i], r.status);
		assert_null(header(&r, "Content-Range", v, sizeof(v)));
		assert_int_equal(r.len, n);
		assert_memory_equal(r.body, d, n);
		http_res_free(&r);
	}
	/* An end past the file is the file's end. */
	assert_int_equal(http_get(path, "Range: bytes=10-999999999\r\n", &r), 0);
	assert_int_equal(r.status, 206);
	snprintf(want, sizeof(want), "bytes 10-%zu/%zu", n - 1, n);
	assert_string_equal(header(&r, "Content-Range", v, sizeof(v)), want);
	assert_int_equal(r.len, n - 10);
	assert_memory_equal(r.body, d + 10, n - 10);
	http_res_free(&r);
	snprintf(path, sizeof(path), "/image/%llu?original=1",
	    (unsigned long long)fid[1]);
	assert_int_equal(http_get(path, NULL, &r), 0);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.len, n);
	http_res_free(&r);
	free(d);
	/* An image's id names no clip. */
	snprintf(path, sizeof(path), "/video/%llu", (unsigned long long)ids[0]);
	assert_int_equal(http_get(path, NULL, &r), 0);
	assert_int_equal(r.status, 404);
	http_res_free(&r);

	/* dupes of kind "clips": a re-encoded copy is near. */
	char copy[700];
	snprintf(copy, sizeof(copy), "%s/copy.mkv", dir);
	snprintf(cmd, sizeof(cmd), "ffmpeg -nostdin -loglevel error -y -i '%s' "
	    "-c:v libx264 -crf 35 '%s'", clip, copy);
	assert_int_equal(system(cmd), 0);
	api(req, &rep);
	cJSON_Delete(rep);
	api("{\"op\":\"dupes\",\"kind\":\"clips\"}", &rep);
	assert_int_equal(cJSON_GetObjectItem(rep, "total_clips")->valueint, 2);
	cJSON *pr = cJSON_GetArrayItem(cJSON_GetObjectItem(rep, "pairs"), 0);
	assert_non_null(pr);
	assert_string_equal(cJSON_GetObjectItem(pr, "relation")->valuestring,
	    "near");
	assert_int_equal(cJSON_GetObjectItem(pr, "matched")->valueint, 2);
	cJSON_Delete(rep);

	/* A clip past 256 MiB (grown sparse: no disk used) is served whole
	 * and in ranges of any length, from the file (nothing is read into
	 * memory: HEAD answers its length without a body). */
	int64_t big = (int64_t)300 << 20;
	assert_int_equal(truncate(clip, big), 0);
	snprintf(path, sizeof(path), "/video/%llu", (unsigned long long)fid[0]);
	snprintf(req, sizeof(req), "HEAD %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
	    "Connection: close\r\n\r\n", path, port);
	assert_int_equal(http_raw(port, req, &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(header(&r, "Content-Length", v, sizeof(v)),
	    "314572800");
	assert_int_equal(r.len, 0);
	http_res_free(&r);
	snprintf(rg, sizeof(rg), "Range: bytes=1000-%d\r\n", 1000 + (6 << 20) - 1);
	assert_int_equal(http_get(path, rg, &r), 0);
	assert_int_equal(r.status, 206);
	assert_int_equal(r.len, (size_t)6 << 20);
	http_res_free(&r);
	assert_int_equal(http_get(path, "Range: bytes=-10\r\n", &r), 0);
	assert_int_equal(r.status, 206);
	snprintf(want, sizeof(want), "bytes %lld-%lld/%lld", (long long)big - 10,
	    (long long)big - 1, (long long)big);
	assert_string_equal(header(&r, "Content-Range", v, sizeof(v)), want);
	assert_int_equal(r.len, 10);
	assert_memory_equal(r.body, "\0\0\0\0\0\0\0\0\0\0", 10);
	http_res_free(&r);

	unlink(copy);
	unlink(clip);
	rmdir(dir);
}

int
main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--fixture") == 0) {
		snprintf(fixtures, sizeof(fixtures), "%s", argv[2]);
		if (make_fixtures(fixtures, 0) != 0) {
			fprintf(stderr, "cannot write the fixtures in %s\n", fixtures);
			return 1;
		}
		return 0;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_id),
		cmocka_unit_test(test_thumbnail_orientation),
		cmocka_unit_test(test_thumbnail_sizes),
		cmocka_unit_test(test_page),
		cmocka_unit_test(test_thumb_and_image),
		cmocka_unit_test(test_cache_and_concurrency),
		cmocka_unit_test(test_traversal),
		cmocka_unit_test(test_cache_bound),
		cmocka_unit_test(test_client_hangs_up),
		cmocka_unit_test(test_one_guard),
		cmocka_unit_test(test_token),
		cmocka_unit_test(test_stop_in_flight),
		cmocka_unit_test(test_symlink_not_followed),
		cmocka_unit_test(test_other_formats),
		cmocka_unit_test(test_video),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
