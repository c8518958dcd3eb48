/*
 * http.c - the HTTP transport (see http.h), on GNU libmicrohttpd (MHD).
 *
 *   POST /api                  a JSON request into the one dispatch
 *   GET  /, /app.js, /app.css  the page (web.c)
 *   GET  /thumb/<id>, /image/<id>      indexed images (web.c)
 *
 * One MHD thread polls every connection (epoll).  MHD parses the request
 * line and headers strictly (MHD_OPTION_STRICT_FOR_CLIENT) and rejects a
 * Content-Length that is not plain digits, closing the connection.  Then
 * admit() decides, from the headers alone, before a byte of the body is
 * read, in this order:
 *   1. framing: a Transfer-Encoding header (chunked or any other) is
 *      refused with 411, more than one Content-Length with 400;
 *   2. the browser guard (access_http_allowed): 403;
 *   3. the route and method: 404, 405;
 *   4. the token (access.h's rule; "Authorization: Bearer TOKEN" is the
 *      only way to send it over HTTP) on /api, /thumb and /image: 401;
 *   5. the body: on /api at most --max-request-bytes (413 too_large), on
 *      the other routes none (400).
 * Every refusal is answered at once with "Connection: close", so a body
 * that was not read can never be taken for the next request.
 *
 * An admitted request's body is buffered (at most its Content-Length);
 * then the connection is suspended (MHD_suspend_connection) and the route
 * runs: /api queues the job to the workers (srv_submit), web.c queues
 * thumbnails and images to its pool.  Whoever answers calls
 * http_respond(), which resumes the connection; MHD's thread then sends
 * the response.  Nothing blocks MHD's thread, so one slow request never
 * holds up another, and no thread is spent per connection.
 *
 * Limits: --http-connections connections at once (half of them from one
 * address); a connection idle for --http-timeout seconds is closed, at any
 * point of the request, headers included.  MHD 0.9.75 has no separate
 * header timeout: a client that keeps sending a byte now and then stays,
 * but within the connection cap, and its headers within MHD's 32 KiB
 * per-connection memory.  A suspended connection (its request being
 * answered) does not time out.
 */
#include "daemon/http.h"

#include <errno.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "daemon/access.h"
#include "daemon/reply.h"
#include "daemon/srv_internal.h"
#include "daemon/web.h"

#define HTTP_CONNECTIONS_DEFAULT 128
#define HTTP_TIMEOUT_DEFAULT 30         /* seconds */

struct http_server {
	srv *s;
	struct MHD_Daemon *d;
	int origin;             /* enum srv_origin of the --http address */
};

typedef struct route {
	const char *path;
	int tree;               /* also "<path>/..." */
	const char *method;     /* GET also answers HEAD */
	int token;              /* needs the token when the origin does */
	int json;               /* refusals as JSON envelopes */
	void (*fn)(http_call *c);
} route;

static void api_call(http_call *c);

static const route routes[] = {
	{ "/api", 0, "POST", 1, 1, api_call },
	{ "/", 0, "GET", 0, 0, web_route_page },
	{ "/app.js", 0, "GET", 0, 0, web_route_page },
	{ "/app.css", 0, "GET", 0, 0, web_route_page },
	{ "/thumb", 1, "GET", 1, 0, web_route_thumb },
	{ "/image", 1, "GET", 1, 0, web_route_image },
	{ "/video", 1, "GET", 1, 0, web_route_video },
};

enum call_state { CALL_NEW, CALL_BODY, CALL_WAIT, CALL_DONE };

struct http_call {
	http_server *h;
	struct MHD_Connection *conn;
	const route *route;
	enum call_state state;  /* MHD's thread only */
	char *uri;              /* as sent */
	char *body;
	size_t len, cap, want;  /* want: the Content-Length */
	/* the answer, from any thread; published by `answered` */
	struct MHD_Response *res;
	unsigned status;
	atomic_int answered;
};

/* ---- responses ---- */

static void
add_headers(struct MHD_Response *r, const char *type)
{
	MHD_add_response_header(r, "Content-Security-Policy",
	    "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
	    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
	MHD_add_response_header(r, "X-Frame-Options", "DENY");
	MHD_add_response_header(r, "Cross-Origin-Resource-Policy",
	    "same-origin");
	if (type != NULL)
		MHD_add_response_header(r, "Content-Type", type);
}

/* Hands r (may be NULL: the connection is then closed) to c's connection
 * and resumes it.  c belongs to MHD's thread afterwards. */
static void
answer(http_call *c, unsigned status, struct MHD_Response *r)
{
	struct MHD_Connection *conn = c->conn;
	c->res = r;
	c->status = status;
	atomic_store_explicit(&c->answered, 1, memory_order_release);
	MHD_resume_connection(conn);
}

void
http_respond(http_call *c, int status, const char *type, const void *body,
    size_t len, const http_header *hdrs, size_t n)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len,
	    (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
	if (r != NULL) {
		add_headers(r, type);
		for (size_t i = 0; i < n; i++)
			MHD_add_response_header(r, hdrs[i].name, hdrs[i].value);
	}
	answer(c, (unsigned)status, r);
}

void
http_respond_fd(http_call *c, int status, const char *type, int fd,
    uint64_t off, uint64_t len, const http_header *hdrs, size_t n)
{
	struct MHD_Response *r = MHD_create_response_from_fd_at_offset64(len,
	    fd, off);
	if (r == NULL) {
		close(fd);
		r = MHD_create_response_from_buffer(0, NULL,
		    MHD_RESPMEM_PERSISTENT);
		status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		type = NULL;
		n = 0;
	}
	if (r != NULL) {
		add_headers(r, type);
		for (size_t i = 0; i < n; i++)
			MHD_add_response_header(r, hdrs[i].name, hdrs[i].value);
	}
	answer(c, (unsigned)status, r);
}

/* Queues a refusal on c's connection (from the headers: the body, if any,
 * is never read) and closes the connection after it. */
static enum MHD_Result
refuse(http_call *c, int status, enum cdx_proto_code code, const char *msg,
    const char *allow)
{
	struct MHD_Response *r;
	enum MHD_Result ret;
	char text[256];
	char *json = NULL;

	c->state = CALL_DONE;
	if (c->route != NULL && c->route->json &&
	    (json = reply_error_json(code, msg, NULL)) != NULL) {
		r = MHD_create_response_from_buffer(strlen(json), json,
		    MHD_RESPMEM_MUST_FREE);
		if (r == NULL)
			free(json);
	} else {
		int l = snprintf(text, sizeof(text), "%d %s\n", status, msg);
		r = MHD_create_response_from_buffer(l < (int)sizeof(text) ?
		    (size_t)l : sizeof(text) - 1, text, MHD_RESPMEM_MUST_COPY);
		json = NULL;
	}
	if (r == NULL)
		return MHD_NO;
	add_headers(r, json != NULL ? "application/json" :
	    "text/plain; charset=utf-8");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	MHD_add_response_header(r, "Connection", "close");
	if (allow != NULL)
		MHD_add_response_header(r, "Allow", allow);
	ret = MHD_queue_response(c->conn, (unsigned)status, r);
	MHD_destroy_response(r);
	return ret;
}

/* ---- /api ---- */

static void
api_reply(void *user, char *reply, size_t len, int status)
{
	http_call *c = user;
	struct MHD_Response *r = MHD_create_response_from_buffer(len, reply,
	    MHD_RESPMEM_MUST_FREE);
	if (r == NULL)
		free(reply);
	else {
		add_headers(r, "application/json");
		MHD_add_response_header(r, "Cache-Control", "no-store");
	}
	answer(c, (unsigned)status, r);
}

static void
api_call(http_call *c)
{
	char *req = c->body;
	size_t len = c->len;

	/* An empty body is a request like any other (bad_json), never NULL. */
	if (req == NULL && (req = malloc(1)) != NULL)
		len = 0;
	if (req != NULL)
		req[len] = '\0';
	c->body = NULL;
	srv_submit_http(c->h->s, req, req != NULL ? len : 0, c->h->origin,
	    access_bearer(http_call_header(c, "Authorization")), api_reply, c);
}

/* ---- admission ---- */

const char *
http_call_uri(const http_call *c)
{
	return c->uri;
}

const char *
http_call_header(const http_call *c, const char *name)
{
	return MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, name);
}

srv *
http_call_srv(const http_call *c)
{
	return c->h->s;
}

struct framing {
	int n_cl, n_te;
};

static enum MHD_Result
count_framing(void *cls, enum MHD_ValueKind kind, const char *key,
    const char *value)
{
	struct framing *f = cls;
	(void)kind;
	(void)value;
	if (strcasecmp(key, "Content-Length") == 0)
		f->n_cl++;
	else if (strcasecmp(key, "Transfer-Encoding") == 0)
		f->n_te++;
	return MHD_YES;
}

static const route *
route_of(const char *uri)
{
	size_t ul = strcspn(uri, "?#");

	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		size_t pl = strlen(routes[i].path);
		if (strncmp(uri, routes[i].path, pl) != 0)
			continue;
		if (ul == pl || (routes[i].tree && ul > pl && uri[pl] == '/'))
			return &routes[i];
	}
	return NULL;
}

/* The first call for a request: its headers are in, its body is not. */
static enum MHD_Result
admit(http_server *h, http_call *c, const char *method)
{
	const srv_config *cfg = h->s->cfg;
	struct framing f = { 0, 0 };
	const char *cl;
	unsigned long long want = 0;

	c->route = route_of(c->uri);
	MHD_get_connection_values(c->conn, MHD_HEADER_KIND, count_framing, &f);
	if (f.n_te > 0)
		return refuse(c, MHD_HTTP_LENGTH_REQUIRED, CDX_PROTO_BAD_REQUEST,
		    "Transfer-Encoding is not accepted: send Content-Length",
		    NULL);
	if (f.n_cl > 1)
		return refuse(c, MHD_HTTP_BAD_REQUEST, CDX_PROTO_BAD_REQUEST,
		    "more than one Content-Length", NULL);
	if (!access_http_allowed(cfg->http, http_call_header(c, "Host"),
	    http_call_header(c, "Origin")))
		/* a browser on another site, or DNS rebinding */
		return refuse(c, MHD_HTTP_FORBIDDEN, CDX_PROTO_FORBIDDEN,
		    "requests from other web sites are refused", NULL);
	if (c->route == NULL)
		return refuse(c, MHD_HTTP_NOT_FOUND, CDX_PROTO_NOT_FOUND,
		    "not found", NULL);
	if (strcmp(method, c->route->method) != 0 &&
	    !(strcmp(c->route->method, "GET") == 0 &&
	    strcmp(method, "HEAD") == 0))
		return refuse(c, MHD_HTTP_METHOD_NOT_ALLOWED,
		    CDX_PROTO_BAD_REQUEST, "method not allowed",
		    c->route->method);
	if (c->route->token && access_token_needed(h->origin, cfg->token) &&
	    !access_token_ok(cfg->token,
	    access_bearer(http_call_header(c, "Authorization"))))
		return refuse(c, MHD_HTTP_UNAUTHORIZED, CDX_PROTO_UNAUTHORIZED,
		    "a valid token is required (Authorization: Bearer TOKEN)",
		    NULL);
	/* MHD has checked that it is digits only. */
	if ((cl = http_call_header(c, "Content-Length")) != NULL)
		want = strtoull(cl, NULL, 10);
	if (!c->route->json && want > 0)
		return refuse(c, MHD_HTTP_BAD_REQUEST, CDX_PROTO_BAD_REQUEST,
		    "this request takes no body", NULL);
	if (want > cfg->max_request_bytes) {
		char msg[160];
		snprintf(msg, sizeof(msg), "the request is %llu bytes; the limit "
		    "is %zu (--max-request-bytes)", want, cfg->max_request_bytes);
		return refuse(c, MHD_HTTP_CONTENT_TOO_LARGE, CDX_PROTO_TOO_LARGE,
		    msg, NULL);
	}
	c->want = (size_t)want;
	c->state = CALL_BODY;
	return MHD_YES;
}

static int
body_append(http_call *c, const char *data, size_t n)
{
	if (n > c->want - c->len)       /* MHD frames by Content-Length */
		return -1;
	if (c->len + n + 1 > c->cap) {
		size_t cap = c->cap ? c->cap : 4096;
		while (cap < c->len + n + 1)
			cap *= 2;
		if (cap > c->want + 1)
			cap = c->want + 1;
		char *b = realloc(c->body, cap);
		if (b == NULL)
			return -1;
		c->body = b;
		c->cap = cap;
	}
	memcpy(c->body + c->len, data, n);
	c->len += n;
	return 0;
}

/* ---- MHD's callbacks ---- */

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *data, size_t *size,
    void **con_cls)
{
	http_server *h = cls;
	http_call *c = *con_cls;
	(void)url;
	(void)version;

	if (c == NULL)
		return MHD_NO;  /* out of memory at the request line */
	switch (c->state) {
	case CALL_NEW:
		c->conn = conn;
		return admit(h, c, method);
	case CALL_BODY:
		if (*size > 0) {
			if (body_append(c, data, *size) != 0)
				return MHD_NO;
			*size = 0;
			return MHD_YES;
		}
		c->state = CALL_WAIT;
		MHD_suspend_connection(conn);
		c->route->fn(c);        /* answers now or later: answer() */
		return MHD_YES;
	case CALL_WAIT: {
		enum MHD_Result ret;
		if (!atomic_load_explicit(&c->answered, memory_order_acquire))
			return MHD_YES;
		c->state = CALL_DONE;
		if (c->res == NULL)
			return MHD_NO;  /* no memory for the answer: close */
		ret = MHD_queue_response(conn, c->status, c->res);
		MHD_destroy_response(c->res);
		c->res = NULL;
		return ret;
	}
	case CALL_DONE:
		*size = 0;
		return MHD_YES;
	}
	return MHD_NO;
}

static void *
on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	http_call *c = calloc(1, sizeof(*c));
	(void)conn;

	if (c == NULL)
		return NULL;
	if ((c->uri = strdup(uri)) == NULL) {
		free(c);
		return NULL;
	}
	c->h = cls;
	atomic_init(&c->answered, 0);
	return c;
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	http_call *c = *con_cls;
	(void)cls;
	(void)conn;
	(void)toe;

	if (c == NULL)
		return;
	if (c->res != NULL)
		MHD_destroy_response(c->res);
	free(c->body);
	free(c->uri);
	free(c);
	*con_cls = NULL;
}

/* ---- start and stop ---- */

/* "HOST:PORT", "[V6]:PORT" or ":PORT" -> the address to bind. */
static int
resolve(const char *hostport, struct sockaddr_storage *sa, cdx_error *err)
{
	char host[256];
	const char *colon = strrchr(hostport, ':');
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
	    .ai_socktype = SOCK_STREAM,
	    .ai_flags = AI_PASSIVE | AI_NUMERICSERV }, *res, *pick = NULL;
	size_t hl;
	int rv;

	if (colon == NULL || colon[1] == '\0' ||
	    (hl = (size_t)(colon - hostport)) >= sizeof(host))
		return cdx_error_set(err, CDX_EINVAL, "bad --http address '%s' "
		    "(HOST:PORT)", hostport);
	memcpy(host, hostport, hl);
	host[hl] = '\0';
	if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	if ((rv = getaddrinfo(host[0] != '\0' ? host : NULL, colon + 1, &hints,
	    &res)) != 0)
		return cdx_error_set(err, CDX_EINVAL, "bad --http address '%s': "
		    "%s", hostport, gai_strerror(rv));
	for (struct addrinfo *a = res; a != NULL; a = a->ai_next)
		if (pick == NULL || (pick->ai_family != AF_INET &&
		    a->ai_family == AF_INET))
			pick = a;
	memcpy(sa, pick->ai_addr, pick->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

int
http_start(srv *s, http_server **out, cdx_error *err)
{
	const srv_config *cfg = s->cfg;
	struct sockaddr_storage sa;
	unsigned conns = cfg->http_connections > 0 ?
	    (unsigned)cfg->http_connections : HTTP_CONNECTIONS_DEFAULT;
	unsigned timeout = cfg->http_timeout > 0 ? (unsigned)cfg->http_timeout :
	    HTTP_TIMEOUT_DEFAULT;
	unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME;
	http_server *h;
	int rc;

	memset(&sa, 0, sizeof(sa));
	if ((rc = resolve(cfg->http, &sa, err)) != 0)
		return rc;
	if (sa.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return cdx_error_set(err, CDX_ENOMEM, "out of memory");
	h->s = s;
	h->origin = access_origin_of_url(cfg->http);
	errno = 0;
	/* The port is in sa; MHD's own port argument is then ignored. */
	h->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h,
	    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
	    MHD_OPTION_STRICT_FOR_CLIENT, (int)1,
	    MHD_OPTION_CONNECTION_LIMIT, conns,
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT, conns > 1 ? conns / 2 : 1u,
	    MHD_OPTION_CONNECTION_TIMEOUT, timeout,
	    MHD_OPTION_URI_LOG_CALLBACK, on_uri, h,
	    MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
	    MHD_OPTION_END);
	if (h->d == NULL) {
		int e = errno;
		free(h);
		return cdx_error_set(err, e == EADDRINUSE ? CDX_EBUSY : CDX_EIO,
		    "cannot serve HTTP on %s: %s", cfg->http,
		    e != 0 ? strerror(e) : "the HTTP server did not start");
	}
	cdx_log(CDX_LOG_INFO, "HTTP API on http://%s/api (%u connections, "
	    "%u s idle timeout)", cfg->http, conns, timeout);
	*out = h;
	return 0;
}

void
http_stop(http_server *h)
{
	if (h == NULL)
		return;
	MHD_stop_daemon(h->d);
	free(h);
}
