/*
 * web.c - the web page on clipdexd's HTTP port: the page's files (web/,
 * embedded at build time), thumbnails and full images of indexed photos.
 *
 *   GET /, /app.js, /app.css   the page (built in; ETag, revalidated)
 *   GET /thumb/<id>[?v=MTIME]  a JPEG thumbnail of indexed image <id>
 *   GET /image/<id>            the indexed file itself where browsers
 *                              show its format (JPEG, PNG, WebP, AVIF,
 *                              GIF, BMP); for HEIC/HEIF, TIFF and camera
 *                              RAW a JPEG rendition (orientation applied)
 *   GET /image/<id>?original=1 the file itself, whatever its format
 *   GET /video/<id>            the video clip of frame <id>, with HTTP
 *                              range requests (206), so that <video>
 *                              can seek; sent from the file, never read
 *                              into memory; /thumb and /image of a
 *                              frame give the frame as a JPEG, and
 *                              /image/<id>?original=1 the clip
 *
 * Only images in the store are served, by id: no request names a path.  The
 * id is decimal digits and nothing else (no sign, no dots, no slashes), so
 * "/image/../../etc/passwd", "%2e%2e" and the like are refused before the
 * store is asked.  The file is served only while its stored (canonical)
 * path still resolves to itself: no symlink on the way, final or not.
 *
 * Access is decided before these handlers run, by http.c from the
 * request's headers, the same way for every route: the browser guard
 * (a foreign Origin, or on a loopback address a Host that is not a
 * loopback name, is refused, so a web site cannot read photos through DNS
 * rebinding), and when the HTTP address is not loopback the token
 * ("Authorization: Bearer TOKEN") for thumbnails and images as for /api;
 * the page's own files are public (they hold no data and must load to ask
 * for the token).
 *
 * Threads: the handlers run on the HTTP thread and never decode or read
 * files.  Thumbnail and image requests
 * are queued to a pool of threads owned by this file (one per core, 2 to
 * WEB_THREADS_MAX), so the daemon's workers stay free for searches; a full
 * queue answers 503.  Thumbnails are kept in an LRU cache bounded by
 * the config's web_cache_bytes (64 MiB), keyed by id, file size and mtime, so a changed
 * file gets a new thumbnail.
 *
 * Lifetime: web_start() starts the pool (before the HTTP server);
 * web_stop() (before the HTTP server stops) joins the pool and answers
 * what is queued with 503, and later requests at once with 503;
 * web_free(), after the HTTP server has stopped, frees the rest.
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
#include "encoder/video.h"
#include "daemon/http.h"
#include "daemon/srv_internal.h"
#include "daemon/web.h"

#define WEB_THREADS_MAX 8
#define WEB_QUEUE_MAX 512
#define WEB_THUMB_MAX 320               /* longer side of a thumbnail */
#define WEB_THUMB_QUALITY 80
#define WEB_CACHE_BUCKETS 4096          /* power of two */
#define WEB_FILE_MAX ((size_t)256 << 20) /* largest file served or decoded */
#define WEB_RENDITION_MAX 4096          /* longer side of a JPEG rendition */
#define WEB_RENDITION_MIN_SHORT 1080    /* a RAW preview this large will do */
#define WEB_RENDITION_QUALITY 90
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

enum web_kind { WEB_THUMB = 0, WEB_IMAGE = 1, WEB_VIDEO = 2 };

typedef struct web_job {
	struct web_job *next;
	http_call *call;
	int kind;               /* enum web_kind */
	uint64_t id;
	int64_t v;              /* ?v= (the mtime the page saw), or -1 */
	int original;           /* /image ?original=1: the file, never a
	                           rendition */
	char inm[160];          /* If-None-Match, possibly truncated */
	char range[64];         /* /video: the Range header ("" if none) */
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

	pthread_mutex_t mu;     /* queue, closing */
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

/* Answers c (http.c adds the security headers); body is copied (may be
 * NULL). */
static void
respond(http_call *c, int status, const char *type, const void *body,
    size_t len, const char *etag, const char *cache)
{
	http_header h[2];
	size_t n = 0;

	if (etag != NULL)
		h[n++] = (http_header){ "ETag", etag };
	h[n++] = (http_header){ "Cache-Control", cache ? cache : "no-store" };
	http_respond(c, status, type, body, len, h, n);
}

static void
respond_text(http_call *c, int status, const char *msg)
{
	char buf[256];
	int n = snprintf(buf, sizeof(buf), "%d %s\n", status, msg);
	respond(c, status, "text/plain; charset=utf-8", buf,
	    n < (int)sizeof(buf) ? (size_t)n : sizeof(buf) - 1, NULL, NULL);
}

/* ---- the page's files ---- */

void
web_route_page(http_call *c)
{
	const char *uri = http_call_uri(c);
	size_t ulen = strcspn(uri, "?#");

	for (size_t i = 0; i < N_ASSETS; i++) {
		const web_asset *a = &assets[i];
		if (strlen(a->uri) != ulen || strncmp(a->uri, uri, ulen) != 0)
			continue;
		const char *inm = http_call_header(c, "If-None-Match");
		if (inm != NULL && strstr(inm, a->etag) != NULL)
			respond(c, 304, NULL, NULL, 0, a->etag, "no-cache");
		else
			respond(c, 200, a->type, a->begin,
			    (size_t)(a->end - a->begin), a->etag, "no-cache");
		return;
	}
	respond_text(c, 404, "not found");
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
handle_file(http_call *c, int kind)
{
	web *w = http_call_srv(c)->web;
	web_job *j;

	if ((j = calloc(1, sizeof(*j))) == NULL) {
		respond_text(c, 503, "out of memory");
		return;
	}
	j->call = c;
	j->kind = kind;
	if (web_parse_id(http_call_uri(c), kind == WEB_THUMB ? "/thumb" :
	    kind == WEB_IMAGE ? "/image" : "/video", &j->id, &j->v) != 0) {
		free(j);
		respond_text(c, 400, "an image is named by its id: a decimal "
		    "number");
		return;
	}
	const char *q = strchr(http_call_uri(c), '?');
	if (kind == WEB_IMAGE && q != NULL) {
		const char *o = strstr(q, "original=1");
		j->original = o != NULL && (o[-1] == '?' || o[-1] == '&') &&
		    (o[10] == '\0' || o[10] == '&');
	}
	const char *inm = http_call_header(c, "If-None-Match");
	if (inm != NULL)
		snprintf(j->inm, sizeof(j->inm), "%s", inm);
	const char *range = http_call_header(c, "Range");
	if (range != NULL && strlen(range) < sizeof(j->range))
		snprintf(j->range, sizeof(j->range), "%s", range);

	pthread_mutex_lock(&w->mu);
	if (w->closing || w->n_queued >= WEB_QUEUE_MAX) {
		int closing = w->closing;
		pthread_mutex_unlock(&w->mu);
		free(j);
		respond_text(c, 503, closing ? "the daemon is shutting down" :
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

void
web_route_thumb(http_call *c)
{
	handle_file(c, WEB_THUMB);
}

void
web_route_image(http_call *c)
{
	handle_file(c, WEB_IMAGE);
}

void
web_route_video(http_call *c)
{
	handle_file(c, WEB_VIDEO);
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

/* Decodes data in fast mode with min_short (a JPEG at a reduced DCT scale,
 * a RAW's preview; every format clip_image_decode reads), orientation
 * applied, fits it in max_side squared and encodes a JPEG of `quality`.
 * *out is malloc'd. */
static int jpeg_of(const clip_image *img, int max_side, int quality,
    uint8_t **out, size_t *out_len, cdx_error *err);

static int
render_jpeg(const uint8_t *data, size_t len, uint64_t max_pixels,
    int min_short, int max_side, int quality, uint8_t **out, size_t *out_len,
    cdx_error *err)
{
	clip_decode_opts o = { .max_pixels = max_pixels,
	    .min_short = min_short };
	clip_image img;
	int rc;

	if ((rc = clip_image_decode(data, len, &o, &img, err)) != 0)
		return rc;
	rc = jpeg_of(&img, max_side, quality, out, out_len, err);
	clip_image_free(&img);
	return rc;
}

/* Fits img in max_side squared and encodes a JPEG of `quality`; *out is
 * malloc'd. */
static int
jpeg_of(const clip_image *cimg, int max_side, int quality, uint8_t **out,
    size_t *out_len, cdx_error *err)
{
	const clip_image img = *cimg;
	uint8_t *small = NULL, *jpeg = NULL;
	unsigned long jlen = 0;
	tjhandle tj;
	int rc;

	int longer = img.width > img.height ? img.width : img.height;
	int dw = img.width, dh = img.height;
	if (longer > max_side) {
		dw = (int)((int64_t)img.width * max_side / longer);
		dh = (int)((int64_t)img.height * max_side / longer);
		dw = dw < 1 ? 1 : dw;
		dh = dh < 1 ? 1 : dh;
	}
	const uint8_t *px = img.rgb;
	if (dw != img.width || dh != img.height) {
		if ((small = malloc((size_t)dw * dh * 3)) == NULL)
			return cdx_error_set(err, CDX_ENOMEM, "out of memory");
		downscale(img.rgb, img.width, img.height, small, dw, dh);
		px = small;
	}
	if ((tj = tjInitCompress()) == NULL) {
		rc = cdx_error_set(err, CDX_ENOMEM, "cannot start the JPEG "
		    "encoder");
		goto out_free_small;
	}
	if (tjCompress2(tj, px, dw, 0, dh, TJPF_RGB, &jpeg, &jlen, TJSAMP_420,
	    quality, TJFLAG_FASTDCT) != 0) {
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
	return rc;
}

int
web_thumbnail(const uint8_t *data, size_t len, uint64_t max_pixels,
    uint8_t **out, size_t *out_len, cdx_error *err)
{
	return render_jpeg(data, len, max_pixels, WEB_THUMB_MAX,
	    WEB_THUMB_MAX, WEB_THUMB_QUALITY, out, out_len, err);
}

int
web_rendition(const uint8_t *data, size_t len, uint64_t max_pixels,
    uint8_t **out, size_t *out_len, cdx_error *err)
{
	return render_jpeg(data, len, max_pixels, WEB_RENDITION_MIN_SHORT,
	    WEB_RENDITION_MAX, WEB_RENDITION_QUALITY, out, out_len, err);
}

/* ---- the pool ---- */

/* The file's media type by content (clip_image_sniff), or NULL; *show: 1
 * where browsers show the format, 0 where /image serves a rendition. */
static const char *
image_type(const uint8_t *d, size_t len, int *show)
{
	static const char *const types[] = {
		[CLIP_FORMAT_JPEG] = "image/jpeg",
		[CLIP_FORMAT_PNG] = "image/png",
		[CLIP_FORMAT_HEIF] = "image/heic",
		[CLIP_FORMAT_AVIF] = "image/avif",
		[CLIP_FORMAT_WEBP] = "image/webp",
		[CLIP_FORMAT_TIFF] = "image/tiff",
		[CLIP_FORMAT_GIF] = "image/gif",
		[CLIP_FORMAT_BMP] = "image/bmp",
		[CLIP_FORMAT_RAW] = "application/octet-stream",
	};
	int f = clip_image_sniff(d, len, NULL);
	*show = f != CLIP_FORMAT_HEIF && f != CLIP_FORMAT_TIFF &&
	    f != CLIP_FORMAT_RAW;
	return f > 0 && f < (int)(sizeof(types) / sizeof(types[0])) ?
	    types[f] : NULL;
}

/* A clip's media type by its first bytes. */
static const char *
clip_type(int fd)
{
	uint8_t d[64];
	ssize_t n = pread(fd, d, sizeof(d), 0);
	if (n >= 12 && memcmp(d + 4, "ftyp", 4) == 0)
		return memcmp(d + 8, "qt  ", 4) == 0 ? "video/quicktime" :
		    "video/mp4";
	if (n >= 4 && memcmp(d, "\x1a\x45\xdf\xa3", 4) == 0)
		return memmem(d, (size_t)n, "webm", 4) != NULL ? "video/webm" :
		    "video/x-matroska";
	return "application/octet-stream";
}

/* Parses "bytes=A-B", "bytes=A-" or "bytes=-N" against size: 1 and the
 * inclusive range, 0 when there is no range to honour (absent or not
 * understood, as "bytes=5", "bytes=9-3" or several ranges: the whole
 * file, as RFC 9110 says of a Range header that is ignored), -1 when it
 * cannot be satisfied. */
static int
parse_range(const char *r, int64_t size, int64_t *from, int64_t *to)
{
	long long a = -1, b = -1;
	int n = -1;
	if (r[0] == '\0' || strncmp(r, "bytes=", 6) != 0 || strchr(r, ',') != NULL)
		return 0;
	r += 6;
	if (r[0] == '-') {
		if (sscanf(r + 1, "%lld%n", &b, &n) != 1 || n < 0 ||
		    r[1 + n] != '\0' || b <= 0)
			return b == 0 ? -1 : 0;
		*from = size - b < 0 ? 0 : size - b;
		*to = size - 1;
		return size > 0 ? 1 : -1;
	}
	/* %n is set only when the dash was there. */
	if (sscanf(r, "%lld-%n", &a, &n) != 1 || n < 0 || a < 0)
		return 0;
	if (r[n] != '\0') {
		int m = -1;
		if (sscanf(r + n, "%lld%n", &b, &m) != 1 || m < 0 ||
		    r[n + m] != '\0' || b < a)
			return 0;
	}
	if (a >= size)
		return -1;
	*from = a;
	*to = b < 0 || b >= size ? size - 1 : b;
	return 1;
}

/* Serves the clip open at fd: the whole file, or the part a Range header
 * asks for (206).  MHD sends it from a duplicate of fd: nothing is read
 * into memory, whatever the clip's size. */
static void
serve_clip(web_job *j, int fd, const struct stat *st, const char *etag,
    const char *cache)
{
	int64_t size = st->st_size, from = 0, to = size - 1;
	int part = parse_range(j->range, size, &from, &to);
	char cr[96];
	http_header h[4];
	size_t nh = 0;

	(void)cache;
	if (part < 0) {
		snprintf(cr, sizeof(cr), "bytes */%lld", (long long)size);
		h[nh++] = (http_header){ "Content-Range", cr };
		http_respond(j->call, 416, "text/plain; charset=utf-8",
		    "416 range not satisfiable\n", 26, h, nh);
		return;
	}
	const char *type = clip_type(fd);
	int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (dfd < 0) {
		respond_text(j->call, errno == EMFILE || errno == ENFILE ? 503 :
		    500, "cannot open the clip");
		return;
	}
	h[nh++] = (http_header){ "ETag", etag };
	h[nh++] = (http_header){ "Cache-Control", "private, no-cache" };
	h[nh++] = (http_header){ "Accept-Ranges", "bytes" };
	if (part) {
		snprintf(cr, sizeof(cr), "bytes %lld-%lld/%lld", (long long)from,
		    (long long)to, (long long)size);
		h[nh++] = (http_header){ "Content-Range", cr };
	}
	http_respond_fd(j->call, part ? 206 : 200, type, dfd, (uint64_t)from,
	    (uint64_t)(to - from + 1), h, nh);
}

/* The frame of a clip at time_ms (the clip open at fd) as a JPEG: a
 * thumbnail or the full frame. */
static void
serve_frame(web *w, web_job *j, int fd, int64_t time_ms, int64_t mtime_ns,
    int64_t size, const char *etag, const char *cache)
{
	char proc[64];
	clip_image img;
	uint8_t *out = NULL;
	size_t out_len = 0;
	cdx_error err;
	int rc;

	if (j->kind == WEB_THUMB &&
	    (out = cache_get(w, j->id, mtime_ns, size, &out_len)) != NULL) {
		respond(j->call, 200, "image/jpeg", out, out_len, etag, cache);
		free(out);
		return;
	}
	/* The file already opened (no symlink on the way), by its fd. */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if ((rc = clip_video_frame(proc, time_ms, w->s->cfg->max_pixels, &img,
	    &err)) != 0) {
		respond_text(j->call, rc == CDX_ENOMEM ? 503 : 422, err.msg);
		return;
	}
	rc = j->kind == WEB_THUMB ? jpeg_of(&img, WEB_THUMB_MAX,
	    WEB_THUMB_QUALITY, &out, &out_len, &err) : jpeg_of(&img,
	    WEB_RENDITION_MAX, WEB_RENDITION_QUALITY, &out, &out_len, &err);
	clip_image_free(&img);
	if (rc != 0) {
		respond_text(j->call, rc == CDX_ENOMEM ? 503 : 500, err.msg);
		return;
	}
	if (j->kind == WEB_THUMB)
		cache_put(w, j->id, mtime_ns, size, out, out_len);
	respond(j->call, 200, "image/jpeg", out, out_len, etag, cache);
	free(out);
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
		respond_text(j->call, 404, "no indexed image has this id");
		return;
	}
	if (rc != 0) {
		respond_text(j->call, 500, err.msg);
		return;
	}
	int frame = img->kind == STORE_KIND_FRAME;
	int64_t time_ms = img->time_ms;
	if (j->kind == WEB_VIDEO && !frame) {
		store_image_free(img);
		respond_text(j->call, 404, "no video clip has this id");
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
		respond_text(j->call, 404, "the image's file is gone");
		return;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		respond_text(j->call, 404, "the image's file is gone");
		goto out_close;
	}
	if (!frame && (uint64_t)st.st_size > WEB_FILE_MAX) {
		respond_text(j->call, 413, "the file is too large to serve");
		goto out_close;
	}
	int64_t mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 +
	    st.st_mtim.tv_nsec;
	int clip = j->kind == WEB_VIDEO || (frame && j->original);
	snprintf(etag, sizeof(etag), "\"%c%llu-%llx-%llx\"",
	    clip ? 'v' : j->kind == WEB_THUMB ? 't' : j->original ? 'o' : 'i',
	    (unsigned long long)j->id,
	    (unsigned long long)mtime_ns, (unsigned long long)st.st_size);
	/* The page asks for ?v=<mtime in seconds>: while that is the file's,
	 * the URL names these exact bytes and may be cached for good. */
	const char *cache = j->v == (int64_t)st.st_mtim.tv_sec ?
	    "private, max-age=31536000, immutable" : "private, no-cache";
	if (j->inm[0] != '\0' && strstr(j->inm, etag) != NULL && !(clip &&
	    j->range[0] != '\0')) {
		respond(j->call, 304, NULL, NULL, 0, etag, cache);
		goto out_close;
	}
	if (clip) {
		serve_clip(j, fd, &st, etag, cache);
		goto out_close;
	}
	if (frame) {
		serve_frame(w, j, fd, time_ms, mtime_ns, st.st_size, etag,
		    cache);
		goto out_close;
	}
	if (j->kind == WEB_THUMB &&
	    (out = cache_get(w, j->id, mtime_ns, st.st_size, &out_len)) != NULL) {
		respond(j->call, 200, "image/jpeg", out, out_len, etag, cache);
		goto out_free;
	}
	if ((rc = cdx_read_fd(fd, "the image", WEB_FILE_MAX, &buf, &len, &err))
	    != 0) {
		respond_text(j->call, rc == CDX_ENOMEM ? 503 : 500,
		    rc == CDX_ENOMEM ? "out of memory" : "cannot read the file");
		goto out_close;
	}
	data = (uint8_t *)buf;
	if (j->kind == WEB_IMAGE) {
		int show;
		const char *type = image_type(data, len, &show);
		if (type == NULL) {
			respond_text(j->call, 415, "the file is no longer an "
			    "image clipdex reads");
			goto out_free;
		}
		if (show || j->original) {
			respond(j->call, 200, type, data, len, etag, cache);
			goto out_free;
		}
		/* browsers cannot show it: a JPEG rendition */
		rc = web_rendition(data, len, w->s->cfg->max_pixels, &out,
		    &out_len, &err);
		if (rc != 0)
			respond_text(j->call, rc == CDX_ENOMEM ? 503 : 422,
			    err.msg);
		else
			respond(j->call, 200, "image/jpeg", out, out_len, etag,
			    cache);
		goto out_free;
	}
	rc = web_thumbnail(data, len, w->s->cfg->max_pixels, &out,
	    &out_len, &err);
	if (rc != 0) {
		respond_text(j->call, rc == CDX_ENOMEM ? 503 : 422, err.msg);
		goto out_free;
	}
	cache_put(w, j->id, mtime_ns, st.st_size, out, out_len);
	respond(j->call, 200, "image/jpeg", out, out_len, etag, cache);
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
web_start(srv *s, cdx_error *err)
{
	web *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return cdx_error_set(err, CDX_ENOMEM, "out of memory");
	w->s = s;
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
		if (pthread_create(&w->threads[i], NULL, pool_main, w) != 0)
			return cdx_error_set(err, CDX_ENOMEM, "cannot start a "
			    "thread");  /* srv_stop() stops the others */
		w->n_threads++;
	}
	cdx_log(CDX_LOG_INFO, "web page on http://%s/", s->cfg->http);
	return 0;
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
	w->n_threads = 0;
	/* The pool is gone: answer what it left.  Requests from now on are
	 * answered 503 by handle_file(). */
	pthread_mutex_lock(&w->mu);
	web_job *j = w->head;
	w->head = w->tail = NULL;
	w->n_queued = 0;
	pthread_mutex_unlock(&w->mu);
	while (j != NULL) {
		web_job *next = j->next;
		respond_text(j->call, 503, "the daemon is shutting down");
		free(j);
		j = next;
	}
}

void
web_free(srv *s)
{
	web *w = s->web;

	if (w == NULL)
		return;
	web_stop(s);
	while (w->lru_head != NULL)
		cache_drop_locked(w, w->lru_head);
	pthread_mutex_destroy(&w->cache_mu);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	s->web = NULL;
	free(w);
}
