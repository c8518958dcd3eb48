/*
 * web.c - the web page on clipdexd's HTTP port: the page's files (web/,
 * embedded at build time), thumbnails and full images of indexed photos.
 *
 *   GET /, /app.js, /app.css   the page (built in; ETag, revalidated)
 *   GET /thumb/<id>[?v=MTIME]  a JPEG thumbnail of indexed image <id>
 *   GET /image/<id>            the indexed file itself (JPEG or PNG)
 *
 * Only images in the store are served, by id: no request names a path.  The
 * id is decimal digits and nothing else (no sign, no dots, no slashes), so
 * "/image/../../etc/passwd", "%2e%2e" and the like are refused before the
 * store is asked.  The file is served only while its stored (canonical)
 * path still resolves to itself: no symlink on the way, final or not.
 *
 * Access: when the HTTP address is not loopback the daemon has a token
 * (config.c insists) and thumbnails and images need it as
 * "Authorization: Bearer TOKEN", as /api does; the page's own files are
 * public (they hold no data and must load to ask for the token).  Every
 * request passes the browser guard first: a foreign Origin is refused, and
 * on a loopback address so is a Host that is not a loopback name, so a web
 * site cannot read photos through DNS rebinding.  These rules are
 * access.h's, the same for /api (server.c).
 *
 * Threads: nng's HTTP callbacks never decode.  Thumbnail and image requests
 * are queued to a pool of threads owned by this file (one per core, 2 to
 * WEB_THREADS_MAX), so the daemon's workers stay free for searches; a full
 * queue answers 503.  Thumbnails are kept in an LRU cache bounded by
 * the config's web_cache_bytes (64 MiB), keyed by id, file size and mtime, so a changed
 * file gets a new thumbnail.
 *
 * Lifetime: web_add_handlers() starts the pool and registers the handlers;
 * web_stop() (before the HTTP server stops) answers what is queued with
 * 503 and joins the pool.  The shared state is freed when the last of its
 * users (the handlers, freed with the server, and web_stop) lets go.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <turbojpeg.h>
#include <xxhash.h>

#include "common/file.h"
#include "daemon/access.h"
#include "daemon/srv_internal.h"
#include "daemon/web.h"

#define WEB_THREADS_MAX 8
#define WEB_QUEUE_MAX 512
#define WEB_THUMB_MAX 320               /* longer side of a thumbnail */
#define WEB_THUMB_QUALITY 80
#define WEB_CACHE_BUCKETS 4096          /* power of two */
#define WEB_FILE_MAX ((size_t)256 << 20) /* largest file served or decoded */
#define WEB_CACHE_DEFAULT ((size_t)64 << 20) /* cfg->web_cache_bytes 0 */

/* The page's files, embedded by the assembler from web/ (the Makefile makes
 * this object depend on them). */
#define WEB_ASSET(sym, file)                                            \
	"\t.section .rodata\n\t.balign 16\n"                            \
	"\t.globl " #sym "_begin\n\t.hidden " #sym "_begin\n"           \
	#sym "_begin:\n\t.incbin \"" file "\"\n"                        \
	"\t.globl " #sym "_end\n\t.hidden " #sym "_end\n"               \
	#sym "_end:\n\t.byte 0\n\t.previous\n"
__asm__(WEB_ASSET(web_index_html, "web/index.html")
    WEB_ASSET(web_app_js, "web/app.js")
    WEB_ASSET(web_app_css, "web/app.css"));
extern const char web_index_html_begin[], web_index_html_end[];
extern const char web_app_js_begin[], web_app_js_end[];
extern const char web_app_css_begin[], web_app_css_end[];

typedef struct web_asset {
	const char *uri;
	const char *type;
	const char *begin, *end;
	char etag[24];
} web_asset;

static web_asset assets[] = {
	{ "/", "text/html; charset=utf-8", web_index_html_begin,
	    web_index_html_end, "" },
	{ "/app.js", "text/javascript; charset=utf-8", web_app_js_begin,
	    web_app_js_end, "" },
	{ "/app.css", "text/css; charset=utf-8", web_app_css_begin,
	    web_app_css_end, "" },
};
#define N_ASSETS (sizeof(assets) / sizeof(assets[0]))

enum web_kind { WEB_THUMB = 0, WEB_IMAGE = 1 };

typedef struct web_job {
	struct web_job *next;
	nng_aio *aio;
	int kind;               /* enum web_kind */
	uint64_t id;
	int64_t v;              /* ?v= (the mtime the page saw), or -1 */
	char inm[160];          /* If-None-Match, possibly truncated */
} web_job;

/* One cached thumbnail: in a hash chain and in the LRU list. */
typedef struct web_thumb {
	struct web_thumb *hnext;
	struct web_thumb *prev, *next;  /* LRU: head is most recent */
	uint64_t id;
	int64_t mtime_ns, size;
	size_t len;
	uint8_t *jpeg;
} web_thumb;

typedef struct web {
	srv *s;
	int refs;               /* handlers + web_stop; guarded by mu */
	int remote;             /* the HTTP address is not loopback */

	pthread_mutex_t mu;     /* queue, closing, refs */
	pthread_cond_t cv;
	web_job *head, *tail;
	size_t n_queued;
	int closing;
	pthread_t threads[WEB_THREADS_MAX];
	int n_threads;

	pthread_mutex_t cache_mu;
	web_thumb *buckets[WEB_CACHE_BUCKETS];
	web_thumb *lru_head, *lru_tail;
	size_t cache_bytes, cache_max;
	size_t cache_n;
} web;

/* ---- responses ---- */

static void
set_security_headers(nng_http_res *res)
{
	nng_http_res_set_header(res, "Content-Security-Policy",
	    "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
	    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'");
	nng_http_res_set_header(res, "X-Content-Type-Options", "nosniff");
	nng_http_res_set_header(res, "Referrer-Policy", "no-referrer");
	nng_http_res_set_header(res, "X-Frame-Options", "DENY");
	nng_http_res_set_header(res, "Cross-Origin-Resource-Policy",
	    "same-origin");
}

/* Finishes aio with a response; body is copied (may be NULL). */
static void
respond(nng_aio *aio, int status, const char *type, const void *body,
    size_t len, const char *etag, const char *cache)
{
	nng_http_res *res;

	if (nng_http_res_alloc(&res) != 0) {
		nng_aio_finish(aio, NNG_ENOMEM);
		return;
	}
	nng_http_res_set_status(res, (uint16_t)status);
	set_security_headers(res);
	if (type != NULL)
		nng_http_res_set_header(res, "Content-Type", type);
	if (etag != NULL)
		nng_http_res_set_header(res, "ETag", etag);
	nng_http_res_set_header(res, "Cache-Control", cache ? cache : "no-store");
	if (body != NULL && len > 0 && nng_http_res_copy_data(res, body, len) != 0) {
		nng_http_res_free(res);
		nng_aio_finish(aio, NNG_ENOMEM);
		return;
	}
	nng_aio_set_output(aio, 0, res);
	nng_aio_finish(aio, 0);
}

static void
respond_text(nng_aio *aio, int status, const char *msg)
{
	char buf[256];
	int n = snprintf(buf, sizeof(buf), "%d %s\n", status, msg);
	respond(aio, status, "text/plain; charset=utf-8", buf,
	    n < (int)sizeof(buf) ? (size_t)n : sizeof(buf) - 1, NULL, NULL);
}

/* ---- access ---- */

/* 0 when the request may go on; else it has been answered.  The rules are
 * access.h's: the browser guard for every request, and on a non-loopback
 * address the token for thumbnails and images. */
static int
check_access(web *w, nng_aio *aio, nng_http_req *req, int need_token)
{
	if (!access_http_allowed(w->s->cfg->http,
	    nng_http_req_get_header(req, "Host"),
	    nng_http_req_get_header(req, "Origin"))) {
		respond_text(aio, 403, "this daemon answers its own pages on "
		    "loopback host names only");
		return -1;
	}
	if (w->remote && need_token && !access_token_ok(w->s->cfg->token,
	    access_bearer(nng_http_req_get_header(req, "Authorization")))) {
		respond_text(aio, 401, "a valid token is required "
		    "(Authorization: Bearer TOKEN)");
		return -1;
	}
	return 0;
}

/* ---- the page's files ---- */

static void
handle_asset(nng_aio *aio)
{
	nng_http_req *req = nng_aio_get_input(aio, 0);
	nng_http_handler *h = nng_aio_get_input(aio, 1);
	web *w = nng_http_handler_get_data(h);
	const char *uri = nng_http_req_get_uri(req);
	size_t ulen = strcspn(uri, "?#");

	if (check_access(w, aio, req, 0) != 0)
		return;
	for (size_t i = 0; i < N_ASSETS; i++) {
		const web_asset *a = &assets[i];
		if (strlen(a->uri) != ulen || strncmp(a->uri, uri, ulen) != 0)
			continue;
		const char *inm = nng_http_req_get_header(req, "If-None-Match");
		if (inm != NULL && strstr(inm, a->etag) != NULL)
			respond(aio, 304, NULL, NULL, 0, a->etag, "no-cache");
		else
			respond(aio, 200, a->type, a->begin,
			    (size_t)(a->end - a->begin), a->etag, "no-cache");
		return;
	}
	respond_text(aio, 404, "not found");
}

/* ---- request parsing ---- */

/* Parses "<prefix>/<digits>[?query]" from uri.  Returns 0 and the id, or -1
 * for anything else: no digits, another character, more than 20 digits, a
 * value over UINT64_MAX, or 0 (never an id). */
int
web_parse_id(const char *uri, const char *prefix, uint64_t *id, int64_t *v)
{
	size_t pl = strlen(prefix);
	uint64_t x = 0;
	const char *p;
	int nd = 0;

	*v = -1;
	if (strncmp(uri, prefix, pl) != 0 || uri[pl] != '/')
		return -1;
	for (p = uri + pl + 1; *p >= '0' && *p <= '9'; p++, nd++) {
		unsigned d = (unsigned)(*p - '0');
		if (nd >= 20 || x > (UINT64_MAX - d) / 10)
			return -1;
		x = x * 10 + d;
	}
	if (nd == 0 || x == 0 || (*p != '\0' && *p != '?'))
		return -1;
	if (*p == '?') {
		/* Only "v=DIGITS" is understood; anything else is ignored. */
		const char *q = strstr(p, "v=");
		if (q != NULL && (q[-1] == '?' || q[-1] == '&')) {
			int64_t t = 0;
			int n = 0;
			for (q += 2; *q >= '0' && *q <= '9' && n < 18; q++, n++)
				t = t * 10 + (*q - '0');
			if (n > 0 && (*q == '\0' || *q == '&'))
				*v = t;
		}
	}
	*id = x;
	return 0;
}

static void
handle_file(nng_aio *aio, int kind)
{
	nng_http_req *req = nng_aio_get_input(aio, 0);
	nng_http_handler *h = nng_aio_get_input(aio, 1);
	web *w = nng_http_handler_get_data(h);
	web_job *j;

	if (check_access(w, aio, req, 1) != 0)
		return;
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		nng_aio_finish(aio, NNG_ENOMEM);
		return;
	}
	j->aio = aio;
	j->kind = kind;
	if (web_parse_id(nng_http_req_get_uri(req), kind == WEB_THUMB ?
	    "/thumb" : "/image", &j->id, &j->v) != 0) {
		free(j);
		respond_text(aio, 400, "an image is named by its id: a decimal "
		    "number");
		return;
	}
	const char *inm = nng_http_req_get_header(req, "If-None-Match");
	if (inm != NULL)
		snprintf(j->inm, sizeof(j->inm), "%s", inm);

	pthread_mutex_lock(&w->mu);
	if (w->closing || w->n_queued >= WEB_QUEUE_MAX) {
		int closing = w->closing;
		pthread_mutex_unlock(&w->mu);
		free(j);
		respond_text(aio, 503, closing ? "the daemon is shutting down" :
		    "too many image requests; try again");
		return;
	}
	if (w->tail != NULL)
		w->tail->next = j;
	else
		w->head = j;
	w->tail = j;
	w->n_queued++;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static void
handle_thumb(nng_aio *aio)
{
	handle_file(aio, WEB_THUMB);
}

static void
handle_image(nng_aio *aio)
{
	handle_file(aio, WEB_IMAGE);
}

/* ---- the thumbnail cache ---- */

static size_t
bucket_of(uint64_t id)
{
	return (size_t)(XXH3_64bits(&id, sizeof(id)) & (WEB_CACHE_BUCKETS - 1));
}

static void
lru_unlink(web *w, web_thumb *t)
{
	if (t->prev != NULL)
		t->prev->next = t->next;
	else
		w->lru_head = t->next;
	if (t->next != NULL)
		t->next->prev = t->prev;
	else
		w->lru_tail = t->prev;
	t->prev = t->next = NULL;
}

static void
lru_push_front(web *w, web_thumb *t)
{
	t->prev = NULL;
	t->next = w->lru_head;
	if (w->lru_head != NULL)
		w->lru_head->prev = t;
	w->lru_head = t;
	if (w->lru_tail == NULL)
		w->lru_tail = t;
}

/* Removes t from its chain and the list and frees it.  cache_mu held. */
static void
cache_drop_locked(web *w, web_thumb *t)
{
	web_thumb **pp = &w->buckets[bucket_of(t->id)];
	while (*pp != t)
		pp = &(*pp)->hnext;
	*pp = t->hnext;
	lru_unlink(w, t);
	w->cache_bytes -= t->len + sizeof(*t);
	w->cache_n--;
	free(t->jpeg);
	free(t);
}

/* A copy of the cached thumbnail, or NULL.  An entry of the same id with
 * another size or mtime is stale and dropped. */
static uint8_t *
cache_get(web *w, uint64_t id, int64_t mtime_ns, int64_t size, size_t *len)
{
	uint8_t *copy = NULL;

	pthread_mutex_lock(&w->cache_mu);
	for (web_thumb *t = w->buckets[bucket_of(id)]; t != NULL; t = t->hnext) {
		if (t->id != id)
			continue;
		if (t->mtime_ns != mtime_ns || t->size != size) {
			cache_drop_locked(w, t);
			break;
		}
		if ((copy = malloc(t->len)) != NULL) {
			memcpy(copy, t->jpeg, t->len);
			*len = t->len;
			lru_unlink(w, t);
			lru_push_front(w, t);
		}
		break;
	}
	pthread_mutex_unlock(&w->cache_mu);
	return copy;
}

static void
cache_put(web *w, uint64_t id, int64_t mtime_ns, int64_t size,
    const uint8_t *jpeg, size_t len)
{
	web_thumb *t = calloc(1, sizeof(*t));
	size_t b = bucket_of(id);

	if (t == NULL || len + sizeof(*t) > w->cache_max / 4 ||
	    (t->jpeg = malloc(len)) == NULL) {
		free(t);
		return;
	}
	memcpy(t->jpeg, jpeg, len);
	t->len = len;
	t->id = id;
	t->mtime_ns = mtime_ns;
	t->size = size;
	pthread_mutex_lock(&w->cache_mu);
	for (web_thumb *o = w->buckets[b]; o != NULL; o = o->hnext)
		if (o->id == id) {      /* another thread made it meanwhile */
			cache_drop_locked(w, o);
			break;
		}
	t->hnext = w->buckets[b];
	w->buckets[b] = t;
	lru_push_front(w, t);
	w->cache_bytes += len + sizeof(*t);
	w->cache_n++;
	while (w->cache_bytes > w->cache_max && w->lru_tail != t)
		cache_drop_locked(w, w->lru_tail);
	pthread_mutex_unlock(&w->cache_mu);
}

void
web_cache_stats(srv *s, size_t *n, size_t *bytes)
{
	web *w = s->web;
	*n = *bytes = 0;
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->cache_mu);
	*n = w->cache_n;
	*bytes = w->cache_bytes;
	pthread_mutex_unlock(&w->cache_mu);
}

/* ---- making thumbnails ---- */

/* Box-filter downscale of src (sw x sh RGB) into dst (dw x dh RGB), with
 * dw <= sw and dh <= sh: each output pixel is the mean of the source
 * pixels it covers. */
static void
downscale(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh)
{
	for (int oy = 0; oy < dh; oy++) {
		int y0 = (int)((int64_t)oy * sh / dh);
		int y1 = (int)((int64_t)(oy + 1) * sh / dh);
		for (int ox = 0; ox < dw; ox++) {
			int x0 = (int)((int64_t)ox * sw / dw);
			int x1 = (int)((int64_t)(ox + 1) * sw / dw);
			uint32_t sum[3] = { 0, 0, 0 }, n = 0;
			for (int y = y0; y < y1; y++) {
				const uint8_t *p = src + ((size_t)y * sw + x0) * 3;
				for (int x = x0; x < x1; x++, p += 3) {
					sum[0] += p[0];
					sum[1] += p[1];
					sum[2] += p[2];
				}
				n += (uint32_t)(x1 - x0);
			}
			uint8_t *q = dst + ((size_t)oy * dw + ox) * 3;
			for (int c = 0; c < 3; c++)
				q[c] = (uint8_t)((sum[c] + n / 2) / n);
		}
	}
}

/* Decodes data (JPEG at a reduced DCT scale, or PNG), applies EXIF
 * orientation, fits it in WEB_THUMB_MAX squared and encodes a JPEG.  *out is
 * malloc'd. */
int
web_thumbnail(const uint8_t *data, size_t len, uint64_t max_pixels,
    uint8_t **out, size_t *out_len, cdx_error *err)
{
	clip_decode_opts o = { .max_pixels = max_pixels,
	    .min_short = WEB_THUMB_MAX };
	clip_image img;
	uint8_t *small = NULL, *jpeg = NULL;
	unsigned long jlen = 0;
	tjhandle tj;
	int rc;

	if ((rc = clip_image_decode(data, len, &o, &img, err)) != 0)
		return rc;
	int longer = img.width > img.height ? img.width : img.height;
	int dw = img.width, dh = img.height;
	if (longer > WEB_THUMB_MAX) {
		dw = (int)((int64_t)img.width * WEB_THUMB_MAX / longer);
		dh = (int)((int64_t)img.height * WEB_THUMB_MAX / longer);
		dw = dw < 1 ? 1 : dw;
		dh = dh < 1 ? 1 : dh;
	}
	const uint8_t *px = img.rgb;
	if (dw != img.width || dh != img.height) {
		if ((small = malloc((size_t)dw * dh * 3)) == NULL) {
			rc = cdx_error_set(err, CDX_ENOMEM, "out of memory");
			goto out_free_image;
		}
		downscale(img.rgb, img.width, img.height, small, dw, dh);
		px = small;
	}
	if ((tj = tjInitCompress()) == NULL) {
		rc = cdx_error_set(err, CDX_ENOMEM, "cannot start the JPEG "
		    "encoder");
		goto out_free_small;
	}
	if (tjCompress2(tj, px, dw, 0, dh, TJPF_RGB, &jpeg, &jlen, TJSAMP_420,
	    WEB_THUMB_QUALITY, TJFLAG_FASTDCT) != 0) {
		rc = cdx_error_set(err, CDX_EINTERNAL, "JPEG encoding: %s",
		    tjGetErrorStr2(tj));
		goto out_destroy;
	}
	/* tjAlloc'd memory is freed with tjFree: hand out a malloc'd copy. */
	if ((*out = malloc(jlen)) == NULL) {
		rc = cdx_error_set(err, CDX_ENOMEM, "out of memory");
		goto out_destroy;
	}
	memcpy(*out, jpeg, jlen);
	*out_len = jlen;
	rc = 0;
out_destroy:
	tjFree(jpeg);
	tjDestroy(tj);
out_free_small:
	free(small);
out_free_image:
	clip_image_free(&img);
	return rc;
}

/* ---- the pool ---- */

static const char *
image_type(const uint8_t *d, size_t len)
{
	if (len >= 3 && d[0] == 0xff && d[1] == 0xd8 && d[2] == 0xff)
		return "image/jpeg";
	if (len >= 8 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0)
		return "image/png";
	return NULL;
}

static void
serve(web *w, web_job *j)
{
	store_image *img = NULL;
	cdx_error err;
	struct stat st;
	uint8_t *data = NULL, *out = NULL;
	char *buf = NULL;
	size_t len = 0, out_len = 0;
	char etag[96];
	int fd, rc;

	rc = store_image_get(w->s->st, j->id, &img, &err);
	if (rc == CDX_ENOTFOUND) {
		respond_text(j->aio, 404, "no indexed image has this id");
		return;
	}
	if (rc != 0) {
		respond_text(j->aio, 500, err.msg);
		return;
	}
	/* The stored path is canonical: if it no longer is (a folder on the
	 * way was replaced by a symlink), the file is not the one indexed. */
	char canon[PATH_MAX];
	fd = -1;
	if (realpath(img->path, canon) != NULL && strcmp(canon, img->path) == 0)
		fd = open(img->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	store_image_free(img);
	if (fd < 0) {
		respond_text(j->aio, 404, "the image's file is gone");
		return;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		respond_text(j->aio, 404, "the image's file is gone");
		goto out_close;
	}
	if ((uint64_t)st.st_size > WEB_FILE_MAX) {
		respond_text(j->aio, 413, "the file is too large to serve");
		goto out_close;
	}
	int64_t mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 +
	    st.st_mtim.tv_nsec;
	snprintf(etag, sizeof(etag), "\"%c%llu-%llx-%llx\"",
	    j->kind == WEB_THUMB ? 't' : 'i', (unsigned long long)j->id,
	    (unsigned long long)mtime_ns, (unsigned long long)st.st_size);
	/* The page asks for ?v=<mtime in seconds>: while that is the file's,
	 * the URL names these exact bytes and may be cached for good. */
	const char *cache = j->v == (int64_t)st.st_mtim.tv_sec ?
	    "private, max-age=31536000, immutable" : "private, no-cache";
	if (j->inm[0] != '\0' && strstr(j->inm, etag) != NULL) {
		respond(j->aio, 304, NULL, NULL, 0, etag, cache);
		goto out_close;
	}
	if (j->kind == WEB_THUMB &&
	    (out = cache_get(w, j->id, mtime_ns, st.st_size, &out_len)) != NULL) {
		respond(j->aio, 200, "image/jpeg", out, out_len, etag, cache);
		goto out_free;
	}
	if ((rc = cdx_read_fd(fd, "the image", WEB_FILE_MAX, &buf, &len, &err))
	    != 0) {
		respond_text(j->aio, rc == CDX_ENOMEM ? 503 : 500,
		    rc == CDX_ENOMEM ? "out of memory" : "cannot read the file");
		goto out_close;
	}
	data = (uint8_t *)buf;
	if (j->kind == WEB_IMAGE) {
		const char *type = image_type(data, len);
		if (type == NULL)
			respond_text(j->aio, 415, "the file is no longer a JPEG or "
			    "PNG");
		else
			respond(j->aio, 200, type, data, len, etag,
			    cache);
		goto out_free;
	}
	rc = web_thumbnail(data, len, w->s->cfg->max_pixels, &out,
	    &out_len, &err);
	if (rc != 0) {
		respond_text(j->aio, rc == CDX_ENOMEM ? 503 : 422, err.msg);
		goto out_free;
	}
	cache_put(w, j->id, mtime_ns, st.st_size, out, out_len);
	respond(j->aio, 200, "image/jpeg", out, out_len, etag, cache);
out_free:
	free(out);
	free(data);
out_close:
	close(fd);
}

static void *
pool_main(void *arg)
{
	web *w = arg;

	for (;;) {
		pthread_mutex_lock(&w->mu);
		while (w->head == NULL && !w->closing)
			pthread_cond_wait(&w->cv, &w->mu);
		web_job *j = w->closing ? NULL : w->head;
		if (j != NULL) {
			w->head = j->next;
			if (w->head == NULL)
				w->tail = NULL;
			w->n_queued--;
		}
		pthread_mutex_unlock(&w->mu);
		if (j == NULL)
			return NULL;
		serve(w, j);
		free(j);
	}
}

/* ---- lifetime ---- */

static void
web_unref(void *arg)
{
	web *w = arg;
	pthread_mutex_lock(&w->mu);
	int last = --w->refs == 0;
	pthread_mutex_unlock(&w->mu);
	if (!last)
		return;
	while (w->lru_head != NULL)
		cache_drop_locked(w, w->lru_head);
	pthread_mutex_destroy(&w->cache_mu);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
}

/* The page's ETags: a hash of each file, once per process. */
static pthread_once_t assets_once = PTHREAD_ONCE_INIT;

static void
assets_init(void)
{
	for (size_t i = 0; i < N_ASSETS; i++)
		snprintf(assets[i].etag, sizeof(assets[i].etag), "\"%016llx\"",
		    (unsigned long long)XXH3_64bits(assets[i].begin,
		    (size_t)(assets[i].end - assets[i].begin)));
}

int
web_add_handlers(srv *s)
{
	static const struct {
		const char *uri;
		void (*fn)(nng_aio *);
		int tree;
	} routes[] = {
		{ "/", handle_asset, 0 },
		{ "/app.js", handle_asset, 0 },
		{ "/app.css", handle_asset, 0 },
		{ "/thumb", handle_thumb, 1 },
		{ "/image", handle_image, 1 },
	};
	web *w = calloc(1, sizeof(*w));
	int rv = 0;

	if (w == NULL)
		return NNG_ENOMEM;
	w->s = s;
	w->refs = 1;            /* web_stop's */
	w->remote = access_token_needed(access_origin_of_url(s->cfg->http));
	w->cache_max = s->cfg->web_cache_bytes > 0 ? s->cfg->web_cache_bytes :
	    WEB_CACHE_DEFAULT;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	pthread_mutex_init(&w->cache_mu, NULL);
	s->web = w;
	pthread_once(&assets_once, assets_init);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int nthreads = ncpu < 2 ? 2 : ncpu > WEB_THREADS_MAX ? WEB_THREADS_MAX :
	    (int)ncpu;
	for (int i = 0; i < nthreads; i++) {
		if (pthread_create(&w->threads[i], NULL, pool_main, w) != 0) {
			rv = NNG_ENOMEM;
			goto out_stop;
		}
		w->n_threads++;
	}
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		nng_http_handler *h;
		if ((rv = nng_http_handler_alloc(&h, routes[i].uri,
		    routes[i].fn)) != 0)
			goto out_stop;
		nng_http_handler_set_method(h, "GET");
		if (routes[i].tree)
			nng_http_handler_set_tree(h);
		pthread_mutex_lock(&w->mu);
		w->refs++;
		pthread_mutex_unlock(&w->mu);
		nng_http_handler_set_data(h, w, web_unref);
		if ((rv = nng_http_server_add_handler(s->http, h)) != 0) {
			nng_http_handler_free(h);       /* drops its reference */
			goto out_stop;
		}
	}
	cdx_log(CDX_LOG_INFO, "web page on http://%s/", s->cfg->http);
	return 0;

out_stop:
	/* Handlers already added keep their references until the server,
	 * released by the caller, frees them. */
	web_stop(s);
	return rv;
}

void
web_stop(srv *s)
{
	web *w = s->web;

	if (w == NULL)
		return;
	pthread_mutex_lock(&w->mu);
	w->closing = 1;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	for (int i = 0; i < w->n_threads; i++)
		pthread_join(w->threads[i], NULL);
	/* The pool is gone: answer what it left, then let go. */
	while (w->head != NULL) {
		web_job *j = w->head;
		w->head = j->next;
		respond_text(j->aio, 503, "the daemon is shutting down");
		free(j);
	}
	w->tail = NULL;
	w->n_queued = 0;
	s->web = NULL;
	web_unref(w);
}
