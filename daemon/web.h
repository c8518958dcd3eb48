/*
 * web.h - the web page, thumbnails and images, served by http.c's server
 * (see the top of web.c).  web_start() runs before the HTTP server starts
 * and returns 0 or a CDX_E* code; web_stop() before it stops (queued
 * requests are answered 503, later ones at once); web_free() after it has
 * stopped.  All three accept a daemon without HTTP (s->web NULL).
 * Access (loopback, Host/Origin, token) is decided by http.c, with
 * access.h's rules, before a handler runs.
 */
#ifndef CDX_SRV_WEB_H
#define CDX_SRV_WEB_H

#include <stddef.h>
#include <stdint.h>

#include "common/cdx.h"
#include "daemon/http.h"

struct srv;

int web_start(struct srv *s, cdx_error *err);
void web_stop(struct srv *s);
void web_free(struct srv *s);
/* http.c's routes (handlers: see http.h): GET /, /app.js, /app.css;
 * GET /thumb/<id>; GET /image/<id>[?original=1]. */
void web_route_page(http_call *c);
void web_route_thumb(http_call *c);
void web_route_image(http_call *c);
void web_route_video(http_call *c);
/* What the thumbnail cache holds now (for tests); its bound is the
 * config's web_cache_bytes. */
void web_cache_stats(struct srv *s, size_t *n, size_t *bytes);
/* For tests: "<prefix>/<id>[?v=N]" -> id (0 or -1), and one thumbnail. */
int web_parse_id(const char *uri, const char *prefix, uint64_t *id,
    int64_t *v);
int web_thumbnail(const uint8_t *data, size_t len, uint64_t max_pixels,
    uint8_t **out, size_t *out_len, cdx_error *err);
/* The JPEG /image/<id> serves for HEIC, TIFF and RAW (browsers show none):
 * fast-mode decode (a RAW's preview when its shorter side is at least
 * 1080), orientation applied, the longer side at most 4096, quality 90. */
int web_rendition(const uint8_t *data, size_t len, uint64_t max_pixels,
    uint8_t **out, size_t *out_len, cdx_error *err);

#endif
