/*
 * web.h - the web page, thumbnails and images on the HTTP server (see the
 * top of web.c).  web_add_handlers() returns 0 or an nng error; web_stop()
 * runs before the HTTP server stops and accepts a daemon without it.
 * Access (loopback, Host/Origin, token) is decided by access.h.
 */
#ifndef CDX_SRV_WEB_H
#define CDX_SRV_WEB_H

#include <stddef.h>
#include <stdint.h>

#include "common/cdx.h"

struct srv;

int web_add_handlers(struct srv *s);
void web_stop(struct srv *s);
/* What the thumbnail cache holds now (for tests); its bound is the
 * config's web_cache_bytes. */
void web_cache_stats(struct srv *s, size_t *n, size_t *bytes);
/* For tests: "<prefix>/<id>[?v=N]" -> id (0 or -1), and one thumbnail. */
int web_parse_id(const char *uri, const char *prefix, uint64_t *id,
    int64_t *v);
int web_thumbnail(const uint8_t *data, size_t len, uint64_t max_pixels,
    uint8_t **out, size_t *out_len, cdx_error *err);

#endif
