/*
 * http.h - the daemon's HTTP transport: GNU libmicrohttpd on the --http
 * address, serving POST /api (into the one dispatch, srv_submit) and
 * web.c's routes (the page, /thumb/<id>, /image/<id>).
 *
 * Access is decided from the request's headers, before any byte of its
 * body is read: framing (no Transfer-Encoding, one Content-Length), the
 * browser guard and the token (access.h), the size limit.  A refusal is
 * answered at once and the connection is closed.  See the top of http.c.
 *
 * A call (http_call) is one request.  A route's handler runs on the HTTP
 * thread and must not block: it answers with http_respond(), there or
 * later from any thread, exactly once.  http_call_uri() and
 * http_call_header() may be used only inside the handler.
 *
 * Errors: http_start() returns 0 or a CDX_E* code with a message.
 * Thread-safety: http_start()/http_stop() are called by srv_start() and
 * srv_stop(); http_respond() from any thread.
 */
#ifndef CDX_SRV_HTTP_H
#define CDX_SRV_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "common/cdx.h"

struct srv;
typedef struct http_server http_server;
typedef struct http_call http_call;

typedef struct http_header {
	const char *name, *value;
} http_header;

/* Serves HTTP on s->cfg->http.  *out is released with http_stop(). */
int http_start(struct srv *s, http_server **out, cdx_error *err);

/* Stops the server.  Every call must have been answered (the workers and
 * web.c's pool have stopped).  NULL is a no-op. */
void http_stop(http_server *h);

/* The request target as the client sent it (not unescaped, with its
 * query), and a request header (case-insensitive name) or NULL. */
const char *http_call_uri(const http_call *c);
const char *http_call_header(const http_call *c, const char *name);
/* The daemon serving c. */
struct srv *http_call_srv(const http_call *c);

/* Answers c: status, Content-Type (NULL: none), body (copied; may be
 * NULL) and n extra headers.  The daemon's security headers are added.
 * c must not be used afterwards. */
void http_respond(http_call *c, int status, const char *type,
    const void *body, size_t len, const http_header *hdrs, size_t n);

/* As http_respond, the body being len bytes of the file open at fd from
 * offset off, which MHD sends from the file (nothing is read into memory;
 * a HEAD request sends none).  fd becomes the response's: it is closed
 * when the response is done, or here when it cannot be made. */
void http_respond_fd(http_call *c, int status, const char *type, int fd,
    uint64_t off, uint64_t len, const http_header *hdrs, size_t n);

#endif
