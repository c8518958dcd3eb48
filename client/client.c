/*
 * libclipdex: the connection to clipdexd (nng req0, one context per
 * request), JSON requests and replies (cJSON), error mapping.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client/client_priv.h"
#include "cluster/cluster.h"
#include "common/cdx.h"
#include "common/file.h"
#include "common/proto.h"

#define DEFAULT_TIMEOUT_MS 30000
/* Connecting to a local daemon takes milliseconds: 3 s means "not running". */
#define DEFAULT_CONNECT_TIMEOUT_MS 3000
/* Replies bigger than this are refused by nng (a k=1000 search is ~200 KB). */
#define MAX_REPLY_BYTES ((size_t)256 << 20)
/* Local image files bigger than this are not read (the daemon's own limit
 * is lower and configurable; this only guards the client's memory). */
#define MAX_FILE_BYTES ((size_t)1 << 30)

/* A dialer that has not connected for this long is replaced (see
 * wait_connected). */
#define REDIAL_MS 1000

struct cdx_client {
	nng_socket sock;
	char *url;
	pthread_mutex_t mu;     /* guards npipes, dialed_ms, token */
	pthread_cond_t cv;      /* signalled when npipes changes */
	int npipes;
	int64_t dialed_ms;      /* when the dialer last started or its pipe
	                           came or went */
	pthread_mutex_t dial_mu;        /* guards dialer */
	nng_dialer dialer;
	char *token;
	_Atomic int timeout_ms; /* settable while other threads use c */
	_Atomic int connect_ms;
	uint64_t serial;        /* unique per process: tells clients apart in
	                           thread-local error messages after a free */
	clu *clu;               /* a nats:// URL: the cluster, and no socket */
};

static _Atomic uint64_t next_serial = 1;

/* ---- per-thread error messages ---- */

static _Thread_local char tl_msg[512];
static _Thread_local uint64_t tl_serial;  /* 0: open/parse */
static _Thread_local int tl_set;

int
cdxi_fail(const cdx_client *c, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(tl_msg, sizeof(tl_msg), fmt, ap);
	va_end(ap);
	tl_serial = c ? c->serial : 0;
	tl_set = 1;
	return code;
}

const char *
cdx_client_errmsg(const cdx_client *c)
{
	return tl_set && tl_serial == (c ? c->serial : 0) ? tl_msg : "";
}

static int
err_from_nng(int rv)
{
	switch (rv) {
	case 0: return CDX_OK;
	case NNG_ENOMEM: return CDX_ENOMEM;
	case NNG_ETIMEDOUT: return CDX_ETIMEDOUT;
	case NNG_ECLOSED: case NNG_ECONNREFUSED: case NNG_ECONNRESET:
	case NNG_ECONNSHUT: return CDX_ECLOSED;
	case NNG_EINVAL: case NNG_EADDRINVAL: case NNG_ENOTSUP: return CDX_EINVAL;
	case NNG_EMSGSIZE: return CDX_ETOOBIG;
	case NNG_EPERM: return CDX_EPERM;
	}
	return CDX_EIO;
}

/* ---- addresses and connections ---- */

const char *
cdx_default_url(void)
{
	static _Thread_local char buf[4096 + 32];
	return cdx_proto_default_url(buf, sizeof(buf));
}

int64_t
cdxi_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	cdx_client *c = arg;
	(void)p;
	pthread_mutex_lock(&c->mu);
	if (ev == NNG_PIPE_EV_ADD_POST)
		c->npipes++;
	else if (ev == NNG_PIPE_EV_REM_POST && c->npipes > 0)
		c->npipes--;
	c->dialed_ms = cdxi_now_ms();   /* the redial clock starts again */
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

/* Starts a dialer for c->url in the background (it keeps redialling). */
static int
dial(cdx_client *c, nng_dialer *d)
{
	int rv;
	if ((rv = nng_dialer_create(d, c->sock, c->url)) != 0)
		return rv;
	if ((rv = nng_dialer_start(*d, NNG_FLAG_NONBLOCK)) != 0)
		nng_dialer_close(*d);
	return rv;
}

/* Replaces c's dialer.  nng 1.5.2's dialer stops for good when the
 * connection handshake fails with NNG_ECLOSED (the daemon closed the
 * connection before the client wrote its header: a daemon stopping, or
 * replacing a listener); a fresh dialer starts over. */
static void
redial(cdx_client *c)
{
	nng_dialer d;
	pthread_mutex_lock(&c->dial_mu);
	nng_dialer_close(c->dialer);
	if (dial(c, &d) == 0)
		c->dialer = d;
	pthread_mutex_unlock(&c->dial_mu);
}

int
cdx_client_open(const char *url, cdx_client **out)
{
	cdx_client *c;
	pthread_condattr_t ca;
	int rv, rc;

	if (out == NULL)
		return cdxi_fail(NULL, CDX_EINVAL, "no place for the client");
	if (url == NULL)
		url = cdx_default_url();
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return cdxi_fail(NULL, CDX_ENOMEM, "out of memory");
	c->timeout_ms = DEFAULT_TIMEOUT_MS;
	c->connect_ms = DEFAULT_CONNECT_TIMEOUT_MS;
	c->serial = next_serial++;
	c->url = strdup(url);
	if (c->url == NULL) {
		rc = cdxi_fail(NULL, CDX_ENOMEM, "out of memory");
		goto out_free_client;
	}
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&c->mu, NULL);
	pthread_mutex_init(&c->dial_mu, NULL);

	if (strncmp(url, "nats://", 7) == 0) {
		/* a cluster: requests go to any member on clipdex.api, and
		 * searches to the shards themselves (cdx_search) */
		clu_params p;
		cdx_error err;
		clu_default_params(&p);
		p.urls = url;
		p.asker = 1;
		if ((rc = clu_open(&p, &c->clu, &err)) == 0) {
			*out = c;
			return 0;
		}
		rc = cdxi_fail(NULL, rc == CDX_ENOMEM ? CDX_ENOMEM : CDX_EIO,
		    "%s", err.msg);
		goto out_free_sync;
	}
	if ((rv = nng_req0_open(&c->sock)) != 0) {
		rc = cdxi_fail(NULL, err_from_nng(rv) == CDX_ENOMEM ? CDX_ENOMEM :
		    CDX_EIO, "cannot open a req0 socket: %s", nng_strerror(rv));
		goto out_free_sync;
	}
	/* A request is never sent twice: `add` must not run twice. */
	nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, MAX_REPLY_BYTES);
	nng_socket_set_ms(c->sock, NNG_OPT_RECONNMINT, 20);
	nng_socket_set_ms(c->sock, NNG_OPT_RECONNMAXT, 500);
	if ((rv = nng_pipe_notify(c->sock, NNG_PIPE_EV_ADD_POST, pipe_event, c)) ||
	    (rv = nng_pipe_notify(c->sock, NNG_PIPE_EV_REM_POST, pipe_event, c))) {
		rc = cdxi_fail(NULL, CDX_EIO, "nng_pipe_notify: %s", nng_strerror(rv));
		goto out_close_socket;
	}
	c->dialed_ms = cdxi_now_ms();
	if ((rv = dial(c, &c->dialer)) != 0) {
		rc = err_from_nng(rv);
		if (rc != CDX_ENOMEM)
			rc = CDX_EINVAL;
		cdxi_fail(NULL, rc, "cannot dial '%s': %s", url, nng_strerror(rv));
		goto out_close_socket;
	}
	*out = c;
	return 0;

out_close_socket:
	nng_close(c->sock);
out_free_sync:
	pthread_mutex_destroy(&c->dial_mu);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c->url);
out_free_client:
	free(c);
	return rc;
}

void
cdx_client_close(cdx_client *c)
{
	if (c == NULL)
		return;
	if (c->clu != NULL)
		clu_close(c->clu);
	else
		nng_close(c->sock);
	pthread_mutex_destroy(&c->dial_mu);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c->token);
	free(c->url);
	free(c);
}

void
cdx_client_set_timeout(cdx_client *c, int ms)
{
	if (c != NULL)
		c->timeout_ms = ms;
}

void
cdx_client_set_connect_timeout(cdx_client *c, int ms)
{
	if (c != NULL)
		c->connect_ms = ms;
}

int
cdx_client_set_token(cdx_client *c, const char *token)
{
	char *copy = NULL;
	if (c == NULL)
		return CDX_EINVAL;
	if (token != NULL && (copy = strdup(token)) == NULL)
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	pthread_mutex_lock(&c->mu);
	free(c->token);
	c->token = copy;
	pthread_mutex_unlock(&c->mu);
	return 0;
}

/* ---- one request ---- */

/* Waits until a pipe is up or deadline (ms, CLOCK_MONOTONIC; < 0: forever)
 * passes, replacing a dialer that has not connected for REDIAL_MS.
 * Returns whether connected. */
static int
wait_connected(cdx_client *c, int64_t deadline)
{
	int up;
	pthread_mutex_lock(&c->mu);
	while (c->npipes == 0) {
		int64_t now = cdxi_now_ms(), until = c->dialed_ms + REDIAL_MS;
		if (deadline >= 0 && now >= deadline)
			break;
		if (now >= until) {
			c->dialed_ms = now;
			pthread_mutex_unlock(&c->mu);
			redial(c);
			pthread_mutex_lock(&c->mu);
			continue;
		}
		if (deadline >= 0 && deadline < until)
			until = deadline;
		struct timespec ts = { (time_t)(until / 1000),
		    (long)(until % 1000) * 1000000 };
		pthread_cond_timedwait(&c->cv, &c->mu, &ts);
	}
	up = c->npipes > 0;
	pthread_mutex_unlock(&c->mu);
	return up;
}

/* Remaining time until deadline as an nng duration. */
static nng_duration
remaining(int64_t deadline)
{
	if (deadline < 0)
		return NNG_DURATION_INFINITE;
	int64_t left = deadline - cdxi_now_ms();
	if (left < 1)
		left = 1;
	return left > INT32_MAX ? INT32_MAX : (nng_duration)left;
}

/* One request on a fresh context: sends body[0..len) and receives the
 * reply into a malloc'd, NUL-terminated buffer.  Returns an nng code. */
static int
attempt(cdx_client *c, const char *body, size_t len, int64_t deadline,
    char **reply, size_t *reply_len)
{
	nng_ctx ctx;
	nng_aio *aio;
	nng_msg *msg = NULL;
	int rv;

	if ((rv = nng_ctx_open(&ctx, c->sock)) != 0)
		return rv;
	if ((rv = nng_aio_alloc(&aio, NULL, NULL)) != 0)
		goto out_close_ctx;
	if ((rv = nng_msg_alloc(&msg, 0)) != 0 ||
	    (rv = nng_msg_append(msg, body, len)) != 0) {
		if (msg != NULL)
			nng_msg_free(msg);
		goto out_free_aio;
	}
	nng_aio_set_msg(aio, msg);
	nng_aio_set_timeout(aio, remaining(deadline));
	nng_ctx_send(ctx, aio);
	nng_aio_wait(aio);
	if ((rv = nng_aio_result(aio)) != 0) {
		nng_msg_free(nng_aio_get_msg(aio));
		goto out_free_aio;
	}
	nng_aio_set_timeout(aio, remaining(deadline));
	nng_ctx_recv(ctx, aio);
	nng_aio_wait(aio);
	if ((rv = nng_aio_result(aio)) != 0)
		goto out_free_aio;
	msg = nng_aio_get_msg(aio);
	size_t n = nng_msg_len(msg);
	char *buf = malloc(n + 1);
	if (buf == NULL) {
		nng_msg_free(msg);
		rv = NNG_ENOMEM;
		goto out_free_aio;
	}
	memcpy(buf, nng_msg_body(msg), n);
	buf[n] = '\0';
	nng_msg_free(msg);
	*reply = buf;
	if (reply_len != NULL)
		*reply_len = n;
out_free_aio:
	nng_aio_free(aio);
out_close_ctx:
	nng_ctx_close(ctx);
	return rv;
}

/* Waits for the connection, then makes the request.  A request whose
 * connection drops before its reply (the daemon restarted or replaced its
 * listener, or the pipe was stale) is made again, up to ATTEMPTS times in
 * all: every v1 operation is safe to repeat. */
#define ATTEMPTS 4

static int
transact(cdx_client *c, const char *body, size_t len, char **reply,
    size_t *reply_len)
{
	int timeout = c->timeout_ms, connect_ms = c->connect_ms;
	int64_t start = cdxi_now_ms();
	int64_t deadline = timeout > 0 ? start + timeout : -1;
	int64_t conn_deadline = deadline;
	int rv, rc, n = 1;

	if (c->clu != NULL) {
		cdx_error err;
		size_t rl = 0;
		if ((rc = clu_api_request(c->clu, body, len, timeout, reply, &rl,
		    &err)) != 0)
			return cdxi_fail(c, rc, "%s", err.msg);
		if (reply_len != NULL)
			*reply_len = rl;
		return 0;
	}
	if (connect_ms >= 0 && (deadline < 0 || start + connect_ms < deadline))
		conn_deadline = start + connect_ms;
	if (!wait_connected(c, conn_deadline))
		return cdxi_fail(c, CDX_ECLOSED, "cannot connect to clipdexd at %s "
		    "(is it running?)", c->url);
	rv = attempt(c, body, len, deadline, reply, reply_len);
	for (; (rv == NNG_ECONNRESET || rv == NNG_ECONNSHUT) && n < ATTEMPTS &&
	    (deadline < 0 || cdxi_now_ms() < deadline); n++) {
		int64_t again = cdxi_now_ms() + (connect_ms >= 0 ? connect_ms : timeout);
		if (deadline >= 0 && (connect_ms < 0 || again > deadline))
			again = deadline;
		if (!wait_connected(c, timeout > 0 || connect_ms >= 0 ? again : -1))
			return cdxi_fail(c, CDX_ECLOSED, "lost the connection to "
			    "clipdexd at %s", c->url);
		rv = attempt(c, body, len, deadline, reply, reply_len);
	}
	if (rv == 0)
		return 0;
	if (rv == NNG_ECONNRESET || rv == NNG_ECONNSHUT)
		return cdxi_fail(c, CDX_ECLOSED, "clipdexd at %s closed the "
		    "connection %d times before replying (is the %zu-byte request "
		    "over its --max-request-bytes?)", c->url, n, len);
	rc = err_from_nng(rv);
	if (rc == CDX_ETIMEDOUT)
		return cdxi_fail(c, rc, "no reply from clipdexd at %s within %d ms",
		    c->url, timeout);
	if (rc == CDX_ENOMEM)
		return cdxi_fail(c, rc, "out of memory for a %zu-byte request or its "
		    "reply", len);
	return cdxi_fail(c, rc, "request to %s failed: %s", c->url,
	    nng_strerror(rv));
}

/* Adds the client's token to an object request that has none. */
static int
add_token(cdx_client *c, cJSON *req)
{
	int rc = 0;
	pthread_mutex_lock(&c->mu);
	if (c->token != NULL && !cJSON_HasObjectItem(req, "token") &&
	    cJSON_AddStringToObject(req, "token", c->token) == NULL)
		rc = cdxi_fail(c, CDX_ENOMEM, "out of memory");
	pthread_mutex_unlock(&c->mu);
	return rc;
}

static int
has_token(cdx_client *c)
{
	pthread_mutex_lock(&c->mu);
	int has = c->token != NULL;
	pthread_mutex_unlock(&c->mu);
	return has;
}

/* Checks a parsed reply: 0 for "ok": true, else the mapped error. */
static int
check_reply(cdx_client *c, const cJSON *rep)
{
	const cJSON *ok = cJSON_GetObjectItemCaseSensitive(rep, "ok");
	if (!cJSON_IsObject(rep) || !cJSON_IsBool(ok))
		return cdxi_fail(c, CDX_EPROTO, "clipdexd sent a reply without "
		    "\"ok\"");
	if (cJSON_IsTrue(ok))
		return 0;
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(rep, "error");
	const char *code = cJSON_GetStringValue(
	    cJSON_GetObjectItemCaseSensitive(e, "code"));
	const char *msg = cJSON_GetStringValue(
	    cJSON_GetObjectItemCaseSensitive(e, "message"));
	const cdx_proto_err *pe = cdx_proto_err_by_name(code);
	return cdxi_fail(c, pe ? pe->cdx : CDX_EPROTO, "%s", msg ? msg :
	    code ? code : "clipdexd reported an error without a code");
}

int
cdx_request(cdx_client *c, const char *json, char **reply)
{
	char *with_token = NULL;
	int rc;

	if (c == NULL || json == NULL || reply == NULL)
		return c ? cdxi_fail(c, CDX_EINVAL, "no request") : CDX_EINVAL;
	if (has_token(c)) {
		cJSON *req = cJSON_Parse(json);
		if (cJSON_IsObject(req) && !cJSON_HasObjectItem(req, "token")) {
			if ((rc = add_token(c, req)) != 0) {
				cJSON_Delete(req);
				return rc;
			}
			with_token = cJSON_PrintUnformatted(req);
			if (with_token == NULL) {
				cJSON_Delete(req);
				return cdxi_fail(c, CDX_ENOMEM, "out of memory");
			}
		}
		cJSON_Delete(req);
	}
	const char *body = with_token ? with_token : json;
	rc = transact(c, body, strlen(body), reply, NULL);
	free(with_token);
	return rc;
}

int
cdx_call(cdx_client *c, const char *json, char **reply)
{
	char *r = NULL;
	int rc;

	if (c == NULL || json == NULL || reply == NULL)
		return c ? cdxi_fail(c, CDX_EINVAL, "no request") : CDX_EINVAL;
	if ((rc = cdx_request(c, json, &r)) != 0)
		return rc;
	cJSON *rep = cJSON_Parse(r);
	if (rep == NULL)
		rc = cdxi_fail(c, CDX_EPROTO, "clipdexd sent a reply that is not "
		    "JSON");
	else
		rc = check_reply(c, rep);
	cJSON_Delete(rep);
	if (rc != 0) {
		free(r);
		return rc;
	}
	*reply = r;
	return 0;
}

/* Sends req (consumed: deleted in every case) and returns the parsed,
 * successful reply in *out. */
int
cdxi_call_json(cdx_client *c, cJSON *req, cJSON **out)
{
	char *body, *r = NULL;
	size_t rlen = 0;
	int rc;

	if (req == NULL)
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	if ((rc = add_token(c, req)) != 0) {
		cJSON_Delete(req);
		return rc;
	}
	body = cJSON_PrintUnformatted(req);
	cJSON_Delete(req);
	if (body == NULL)
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	rc = transact(c, body, strlen(body), &r, &rlen);
	free(body);
	if (rc != 0)
		return rc;
	cJSON *rep = cJSON_ParseWithLength(r, rlen);
	free(r);
	if (rep == NULL)
		return cdxi_fail(c, CDX_EPROTO, "clipdexd sent a reply that is not "
		    "JSON");
	if ((rc = check_reply(c, rep)) != 0) {
		cJSON_Delete(rep);
		return rc;
	}
	*out = rep;
	return 0;
}

/* ---- building requests ---- */

int
cdxi_add_strings(cJSON *obj, const char *name, const char *const *v,
    size_t n)
{
	cJSON *a = cJSON_AddArrayToObject(obj, name);
	if (a == NULL || (n > 0 && v == NULL))
		return CDX_EINVAL;
	for (size_t i = 0; i < n; i++) {
		cJSON *e = v[i] ? cJSON_CreateString(v[i]) : NULL;
		if (e == NULL || !cJSON_AddItemToArray(a, e)) {
			cJSON_Delete(e);
			return CDX_EINVAL;
		}
	}
	return 0;
}

cJSON *
cdxi_new_request(const char *op)
{
	cJSON *req = cJSON_CreateObject();
	if (req != NULL && (cJSON_AddStringToObject(req, "op", op) == NULL ||
	    cJSON_AddNumberToObject(req, "v", 1) == NULL)) {
		cJSON_Delete(req);
		return NULL;
	}
	return req;
}

/* Reads a whole local file into a malloc'd buffer. */
static int
read_file(cdx_client *c, const char *path, char **buf, size_t *len)
{
	cdx_error err;
	int rc = cdx_read_file(path, MAX_FILE_BYTES, buf, len, &err);
	return rc == 0 ? 0 : cdxi_fail(c, rc, "%s", err.msg);
}

/* Adds "image": base64(data) to obj. */
static int
add_image(cdx_client *c, cJSON *obj, const void *data, size_t len)
{
	size_t blen = cdxi_base64_len(len);
	char *b64;
	if (blen == (size_t)-1 || (b64 = malloc(blen + 1)) == NULL)
		return cdxi_fail(c, CDX_ENOMEM, "out of memory encoding an image");
	cdxi_base64_encode(data, len, b64);
	cJSON *s = cJSON_AddStringToObject(obj, "image", b64);
	free(b64);
	return s ? 0 : cdxi_fail(c, CDX_ENOMEM, "out of memory");
}

int
cdxi_add_term(cdx_client *c, cJSON *terms, const cdx_term *t, size_t i)
{
	cJSON *o = cJSON_CreateObject();
	int rc = 0;

	if (o == NULL || !cJSON_AddItemToArray(terms, o)) {
		cJSON_Delete(o);
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	}
	switch (t->kind) {
	case CDX_TERM_TEXT:
	case CDX_TERM_PATH:
	case CDX_TERM_LEARNED:
		if (t->text == NULL)
			return cdxi_fail(c, CDX_EINVAL, "term %zu has no text", i);
		if (cJSON_AddStringToObject(o, t->kind == CDX_TERM_TEXT ? "text" :
		    t->kind == CDX_TERM_PATH ? "path" : "learned", t->text) == NULL)
			return cdxi_fail(c, CDX_ENOMEM, "out of memory");
		break;
	case CDX_TERM_IMAGE:
		if (t->data == NULL || t->len == 0)
			return cdxi_fail(c, CDX_EINVAL, "term %zu has no image bytes", i);
		if ((rc = add_image(c, o, t->data, t->len)) != 0)
			return rc;
		break;
	case CDX_TERM_FILE: {
		char *buf = NULL;
		size_t len = 0;
		if (t->text == NULL)
			return cdxi_fail(c, CDX_EINVAL, "term %zu has no file name", i);
		if ((rc = read_file(c, t->text, &buf, &len)) != 0)
			return rc;
		if (len == 0)
			rc = cdxi_fail(c, CDX_EFORMAT, "%s: the file is empty", t->text);
		else
			rc = add_image(c, o, buf, len);
		free(buf);
		if (rc != 0)
			return rc;
		break;
	}
	case CDX_TERM_ID:
		if (cJSON_AddNumberToObject(o, "id", (double)t->id) == NULL)
			return cdxi_fail(c, CDX_ENOMEM, "out of memory");
		break;
	default:
		return cdxi_fail(c, CDX_EINVAL, "term %zu has an unknown kind %d", i,
		    t->kind);
	}
	if (t->weight != 0.0f && t->weight != 1.0f &&
	    cJSON_AddNumberToObject(o, "weight", (double)t->weight) == NULL)
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	return 0;
}

static int
add_terms(cdx_client *c, cJSON *req, const cdx_query *q)
{
	cJSON *terms;
	int rc;

	if (q == NULL || q->n_terms == 0 || q->terms == NULL)
		return cdxi_fail(c, CDX_EINVAL, "the query has no terms");
	if ((terms = cJSON_AddArrayToObject(req, "terms")) == NULL)
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	for (size_t i = 0; i < q->n_terms; i++)
		if ((rc = cdxi_add_term(c, terms, &q->terms[i], i)) != 0)
			return rc;
	return 0;
}

/* Adds the search options of q (NULL: none). */
static int
add_options(cdx_client *c, cJSON *req, const cdx_query *q)
{
	int ok = 1;
	if (q == NULL)
		return 0;
	if (q->k != 0)
		ok &= cJSON_AddNumberToObject(req, "k", q->k) != NULL;
	if (q->offset != 0)
		ok &= cJSON_AddNumberToObject(req, "offset", q->offset) != NULL;
	if (q->has_min_score)
		ok &= cJSON_AddNumberToObject(req, "min_score",
		    (double)q->min_score) != NULL;
	if (q->has_min_prob)
		ok &= cJSON_AddNumberToObject(req, "min_prob",
		    (double)q->min_prob) != NULL;
	if (q->collapse != 0.0f)
		ok &= cJSON_AddNumberToObject(req, "collapse",
		    (double)q->collapse) != NULL;
	if (q->exact)
		ok &= cJSON_AddTrueToObject(req, "exact") != NULL;
	if (q->n_tags > 0)
		ok &= cdxi_add_strings(req, "tags", q->tags, q->n_tags) == 0;
	if (q->n_not_tags > 0)
		ok &= cdxi_add_strings(req, "not_tags", q->not_tags,
		    q->n_not_tags) == 0;
	if (q->path_prefix != NULL || q->time_field != CDX_TIME_NONE) {
		cJSON *f = cJSON_AddObjectToObject(req, "filter");
		ok &= f != NULL;
		if (f != NULL && q->path_prefix != NULL)
			ok &= cJSON_AddStringToObject(f, "path_prefix",
			    q->path_prefix) != NULL;
		if (f != NULL && q->time_field != CDX_TIME_NONE) {
			if (q->time_field != CDX_TIME_CAPTURE &&
			    q->time_field != CDX_TIME_MTIME)
				return cdxi_fail(c, CDX_EINVAL, "unknown time field %d",
				    q->time_field);
			ok &= cJSON_AddStringToObject(f, "time",
			    q->time_field == CDX_TIME_CAPTURE ? "capture" : "mtime") !=
			    NULL;
			if (q->time_from != 0)
				ok &= cJSON_AddNumberToObject(f, "from",
				    (double)q->time_from) != NULL;
			if (q->time_to != 0)
				ok &= cJSON_AddNumberToObject(f, "to",
				    (double)q->time_to) != NULL;
		}
	}
	return ok ? 0 : cdxi_fail(c, CDX_ENOMEM, "out of memory");
}

/* ---- reading replies ---- */

int64_t
cdxi_get_i64(const cJSON *o, const char *name, int64_t def)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	if (!cJSON_IsNumber(v))
		return def;
	double d = v->valuedouble;
	if (d != d)
		return def;
	if (d >= 9223372036854775807.0)
		return INT64_MAX;
	if (d <= -9223372036854775808.0)
		return INT64_MIN;
	return (int64_t)d;
}

double
cdxi_get_f64(const cJSON *o, const char *name, double def)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	return cJSON_IsNumber(v) ? v->valuedouble : def;
}

/* A double from the wire as a float, without undefined overflow. */
static float
to_float(double d)
{
	if (d != d)
		return 0.0f;
	if (d > FLT_MAX)
		return FLT_MAX;
	if (d < -FLT_MAX)
		return -FLT_MAX;
	return (float)d;
}

const char *
cdxi_get_str(const cJSON *o, const char *name)
{
	const char *s = cJSON_GetStringValue(
	    cJSON_GetObjectItemCaseSensitive(o, name));
	return s ? s : "";
}

static uint32_t
get_u32(const cJSON *o, const char *name)
{
	int64_t v = cdxi_get_i64(o, name, 0);
	return v < 0 ? 0 : v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* The hit's "tags" entries that are objects (the others are skipped). */
static size_t
tag_entries(const cJSON *it, size_t *strbytes)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(it, "tags"), *t;
	size_t n = 0;

	if (!cJSON_IsArray(arr))
		return 0;
	cJSON_ArrayForEach(t, arr) {
		if (!cJSON_IsObject(t))
			continue;
		n++;
		*strbytes += strlen(cdxi_get_str(t, "set")) + 1 +
		    strlen(cdxi_get_str(t, "label")) + 1;
	}
	return n;
}

const char *
cdxi_pool_str(char **pool, const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = memcpy(*pool, s, n);
	*pool += n;
	return p;
}

size_t
cdxi_result_strbytes(const cJSON *it)
{
	size_t bytes = strlen(cdxi_get_str(it, "path")) + 1 +
	    strlen(cdxi_get_str(it, "shard")) + 1;
	size_t n = tag_entries(it, &bytes);
	if (n > 0)      /* the tags' array, aligned in the pool */
		bytes += _Alignof(cdx_tag) - 1 + n * sizeof(cdx_tag);
	return bytes;
}

void
cdxi_result_fill(const cJSON *it, cdx_result *x, char **pool)
{
	x->path = cdxi_pool_str(pool, cdxi_get_str(it, "path"));
	x->id = (uint64_t)cdxi_get_i64(it, "id", 0);
	x->score = to_float(cdxi_get_f64(it, "score", 0.0));
	x->width = get_u32(it, "width");
	x->height = get_u32(it, "height");
	x->size = cdxi_get_i64(it, "size", 0);
	x->mtime = cdxi_get_i64(it, "mtime", 0);
	x->capture_time = cdxi_get_i64(it, "capture_time", INT64_MIN);
	x->added = cdxi_get_i64(it, "added", 0);
	x->prob = cdxi_get_f64(it, "prob", NAN);
	x->time = cdxi_get_f64(it, "time", -1.0);
	x->shard = *cdxi_get_str(it, "shard") ?
	    cdxi_pool_str(pool, cdxi_get_str(it, "shard")) : NULL;
	size_t sb = 0, n = tag_entries(it, &sb);
	x->n_tags = n;
	x->tags = NULL;
	if (n == 0)
		return;
	uintptr_t a = ((uintptr_t)*pool + _Alignof(cdx_tag) - 1) &
	    ~(uintptr_t)(_Alignof(cdx_tag) - 1);
	cdx_tag *tags = (cdx_tag *)a;
	*pool = (char *)(tags + n);
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(it, "tags"), *t;
	size_t i = 0;
	cJSON_ArrayForEach(t, arr) {
		if (!cJSON_IsObject(t))
			continue;
		tags[i].set = cdxi_pool_str(pool, cdxi_get_str(t, "set"));
		tags[i].label = cdxi_pool_str(pool, cdxi_get_str(t, "label"));
		tags[i++].prob = cdxi_get_f64(t, "prob", NAN);
	}
	x->tags = tags;
}

/* Turns the reply's "results" into one allocation. */
int
cdxi_parse_results(cdx_client *c, const cJSON *rep, cdx_results **out)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(rep, "results");
	const cJSON *it;
	size_t n = 0, strbytes = 0;

	if (!cJSON_IsArray(arr))
		return cdxi_fail(c, CDX_EPROTO, "clipdexd sent no \"results\"");
	cJSON_ArrayForEach(it, arr) {
		if (!cJSON_IsObject(it))
			return cdxi_fail(c, CDX_EPROTO, "a result is not an object");
		n++;
		strbytes += cdxi_result_strbytes(it);
	}
	/* a cluster's missing shards, joined with ',' */
	const cJSON *miss = cJSON_GetObjectItemCaseSensitive(rep, "missing"), *m;
	size_t mbytes = 1;
	cJSON_ArrayForEach(m, miss)
		if (cJSON_IsString(m))
			mbytes += strlen(m->valuestring) + 1;
	cdx_results *r = malloc(sizeof(*r) + n * sizeof(cdx_result) + strbytes +
	    mbytes);
	if (r == NULL)
		return cdxi_fail(c, CDX_ENOMEM, "out of memory for %zu results", n);
	r->n = n;
	r->results = (cdx_result *)(r + 1);
	r->took_ms = cdxi_get_f64(rep, "took_ms", 0.0);
	r->no_capture_time = cdxi_get_i64(rep, "no_capture_time", -1);
	r->shards = (size_t)cdxi_get_i64(rep, "shards", 0);
	r->partial = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rep,
	    "partial"));
	char *pool = (char *)(r->results + n);
	size_t i = 0;
	cJSON_ArrayForEach(it, arr)
		cdxi_result_fill(it, &r->results[i++], &pool);
	r->missing = NULL;
	if (mbytes > 1) {
		char *p = pool;
		r->missing = p;
		cJSON_ArrayForEach(m, miss)
			if (cJSON_IsString(m))
				p += sprintf(p, "%s%s", p == r->missing ? "" : ",",
				    m->valuestring);
	}
	*out = r;
	return 0;
}

/* ---- operations ---- */

static int
run_results(cdx_client *c, cJSON *req, cdx_results **out)
{
	cJSON *rep;
	int rc = cdxi_call_json(c, req, &rep);
	if (rc != 0)
		return rc;
	rc = cdxi_parse_results(c, rep, out);
	cJSON_Delete(rep);
	return rc;
}

int
cdxi_query_request(cdx_client *c, const char *op, const cdx_query *q,
    int terms_optional, cJSON **out)
{
	cJSON *req;
	int rc;

	if ((req = cdxi_new_request(op)) == NULL)
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	/* a learned ranking needs no terms (with terms, the daemon refuses) */
	rc = q != NULL && q->learned != NULL ?
	    cdxi_add_learned(c, req, q->learned) : 0;
	if (q != NULL && q->learned != NULL)
		terms_optional = 1;
	if (rc == 0 && (!terms_optional || (q != NULL && q->n_terms > 0)))
		rc = add_terms(c, req, q);
	if (rc != 0 || (rc = add_options(c, req, q)) != 0) {
		cJSON_Delete(req);
		return rc;
	}
	*out = req;
	return 0;
}

int
cdxi_run_results(cdx_client *c, cJSON *req, cdx_results **out)
{
	return run_results(c, req, out);
}

int
cdx_search(cdx_client *c, const cdx_query *q, cdx_results **out)
{
	cJSON *req;
	int rc;

	if (c == NULL || out == NULL)
		return c ? cdxi_fail(c, CDX_EINVAL, "no place for results") :
		    CDX_EINVAL;
	if (c->clu != NULL)
		return cdxi_cluster_search(c, c->clu, q, out);
	if ((rc = cdxi_query_request(c, "search", q, 0, &req)) != 0)
		return rc;
	return run_results(c, req, out);
}

static int
similar(cdx_client *c, const char *path, uint64_t id, const cdx_query *opts,
    cdx_results **out)
{
	cJSON *req;
	int rc, ok;

	if (c == NULL || out == NULL)
		return c ? cdxi_fail(c, CDX_EINVAL, "no place for results") :
		    CDX_EINVAL;
	if ((req = cdxi_new_request("similar")) == NULL)
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	if (path != NULL)
		ok = cJSON_AddStringToObject(req, "path", path) != NULL;
	else
		ok = cJSON_AddNumberToObject(req, "id", (double)id) != NULL;
	if (!ok) {
		cJSON_Delete(req);
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	}
	if ((rc = add_options(c, req, opts)) != 0) {
		cJSON_Delete(req);
		return rc;
	}
	return run_results(c, req, out);
}

int
cdx_similar(cdx_client *c, uint64_t id, const cdx_query *opts,
    cdx_results **out)
{
	return similar(c, NULL, id, opts, out);
}

int
cdx_similar_path(cdx_client *c, const char *path, const cdx_query *opts,
    cdx_results **out)
{
	if (path == NULL)
		return c ? cdxi_fail(c, CDX_EINVAL, "no path") : CDX_EINVAL;
	return similar(c, path, 0, opts, out);
}

void
cdx_results_free(cdx_results *r)
{
	free(r);
}

int
cdx_embed(cdx_client *c, const cdx_query *q, float **out, int *dim)
{
	cJSON *req, *rep;
	int rc;

	if (c == NULL || out == NULL || dim == NULL)
		return c ? cdxi_fail(c, CDX_EINVAL, "no place for the embedding") :
		    CDX_EINVAL;
	if ((req = cdxi_new_request("embed")) == NULL)
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	if ((rc = add_terms(c, req, q)) != 0 ||
	    (q->exact && cJSON_AddTrueToObject(req, "exact") == NULL &&
	    (rc = cdxi_fail(c, CDX_ENOMEM, "out of memory")) != 0)) {
		cJSON_Delete(req);
		return rc;
	}
	if ((rc = cdxi_call_json(c, req, &rep)) != 0)
		return rc;
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(rep, "embedding");
	int n = cJSON_GetArraySize(arr);
	int64_t d = cdxi_get_i64(rep, "dim", n);
	if (!cJSON_IsArray(arr) || n == 0 || d != n) {
		rc = cdxi_fail(c, CDX_EPROTO, "clipdexd sent a bad \"embedding\"");
		goto out_free_reply;
	}
	float *e = malloc(sizeof(float) * (size_t)n);
	if (e == NULL) {
		rc = cdxi_fail(c, CDX_ENOMEM, "out of memory");
		goto out_free_reply;
	}
	const cJSON *it;
	int i = 0;
	cJSON_ArrayForEach(it, arr) {
		if (!cJSON_IsNumber(it)) {
			free(e);
			rc = cdxi_fail(c, CDX_EPROTO, "clipdexd sent a bad \"embedding\"");
			goto out_free_reply;
		}
		e[i++] = to_float(it->valuedouble);
	}
	*out = e;
	*dim = n;
out_free_reply:
	cJSON_Delete(rep);
	return rc;
}

int
cdx_add(cdx_client *c, const char *path, int wait, cdx_add_result *res)
{
	cJSON *req, *rep;
	int rc;

	if (c == NULL || path == NULL)
		return c ? cdxi_fail(c, CDX_EINVAL, "no path") : CDX_EINVAL;
	if ((req = cdxi_new_request("add")) == NULL ||
	    cJSON_AddStringToObject(req, "path", path) == NULL ||
	    (wait && cJSON_AddTrueToObject(req, "wait") == NULL)) {
		cJSON_Delete(req);
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	}
	if ((rc = cdxi_call_json(c, req, &rep)) != 0)
		return rc;
	if (res != NULL) {
		res->added = cdxi_get_i64(rep, "added", 0);
		res->updated = cdxi_get_i64(rep, "updated", 0);
		res->unchanged = cdxi_get_i64(rep, "unchanged", 0);
		res->failed = cdxi_get_i64(rep, "failed", 0);
	}
	cJSON_Delete(rep);
	return 0;
}

int
cdx_remove(cdx_client *c, const char *path, int64_t *removed)
{
	cJSON *req, *rep;
	int rc;

	if (c == NULL || path == NULL)
		return c ? cdxi_fail(c, CDX_EINVAL, "no path") : CDX_EINVAL;
	if ((req = cdxi_new_request("remove")) == NULL ||
	    cJSON_AddStringToObject(req, "path", path) == NULL) {
		cJSON_Delete(req);
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	}
	if ((rc = cdxi_call_json(c, req, &rep)) != 0)
		return rc;
	if (removed != NULL)
		*removed = cdxi_get_i64(rep, "removed", 0);
	cJSON_Delete(rep);
	return 0;
}

int
cdx_get_status(cdx_client *c, cdx_status *out)
{
	cJSON *rep;
	int rc;

	if (c == NULL || out == NULL)
		return c ? cdxi_fail(c, CDX_EINVAL, "no place for the status") :
		    CDX_EINVAL;
	if ((rc = cdxi_call_json(c, cdxi_new_request("status"), &rep)) != 0)
		return rc;
	const cJSON *model = cJSON_GetObjectItemCaseSensitive(rep, "model");
	const cJSON *index = cJSON_GetObjectItemCaseSensitive(rep, "index");
	const cJSON *queue = cJSON_GetObjectItemCaseSensitive(rep, "queue");
	cdx_status s;
	memset(&s, 0, sizeof(s));
	snprintf(s.version, sizeof(s.version), "%s", cdxi_get_str(rep, "version"));
	s.uptime_s = cdxi_get_f64(rep, "uptime_s", 0.0);
	s.images = cdxi_get_i64(rep, "images", 0);
	s.failures = cdxi_get_i64(rep, "failures", 0);
	s.clips = cdxi_get_i64(rep, "clips", 0);
	s.frames = cdxi_get_i64(rep, "frames", 0);
	s.seq = cdxi_get_i64(rep, "seq", 0);
	snprintf(s.model_id, sizeof(s.model_id), "%s", cdxi_get_str(model, "id"));
	s.dim = (int)cdxi_get_i64(model, "dim", 0);
	snprintf(s.index_kind, sizeof(s.index_kind), "%s", cdxi_get_str(index, "kind"));
	s.index_vectors = cdxi_get_i64(index, "vectors", 0);
	s.queue_pending = cdxi_get_i64(queue, "pending", 0);
	s.queue_done = cdxi_get_i64(queue, "done", 0);
	s.rate = cdxi_get_f64(queue, "rate", 0.0);
	s.queue_remaining = cdxi_get_i64(queue, "remaining", s.queue_pending);
	s.eta_s = cdxi_get_f64(queue, "eta_s", -1.0);
	s.scanning = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(queue,
	    "scanning"));
	snprintf(s.warning, sizeof(s.warning), "%s", cdxi_get_str(queue, "warning"));
	s.rss_bytes = cdxi_get_i64(rep, "rss_bytes", 0);
	cJSON_Delete(rep);
	*out = s;
	return 0;
}

int
cdx_get_failures(cdx_client *c, int limit, cdx_failures **out)
{
	cJSON *req, *rep;
	const cJSON *arr, *it;
	size_t n = 0, strbytes = 0;
	int rc;

	if (c == NULL || out == NULL)
		return c ? cdxi_fail(c, CDX_EINVAL, "no place for the failures") :
		    CDX_EINVAL;
	if ((req = cdxi_new_request("failures")) == NULL ||
	    (limit > 0 && cJSON_AddNumberToObject(req, "limit", limit) == NULL)) {
		cJSON_Delete(req);
		return cdxi_fail(c, CDX_ENOMEM, "out of memory");
	}
	if ((rc = cdxi_call_json(c, req, &rep)) != 0)
		return rc;
	arr = cJSON_GetObjectItemCaseSensitive(rep, "failures");
	if (!cJSON_IsArray(arr)) {
		rc = cdxi_fail(c, CDX_EPROTO, "clipdexd sent no \"failures\"");
		goto out_free_reply;
	}
	cJSON_ArrayForEach(it, arr) {
		n++;
		strbytes += strlen(cdxi_get_str(it, "path")) + strlen(cdxi_get_str(it,
		    "reason")) + 2;
	}
	cdx_failures *f = malloc(sizeof(*f) + n * sizeof(cdx_failure) + strbytes);
	if (f == NULL) {
		rc = cdxi_fail(c, CDX_ENOMEM, "out of memory");
		goto out_free_reply;
	}
	f->n = n;
	f->total = cdxi_get_i64(rep, "total", (int64_t)n);
	f->store_full = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rep,
	    "store_full"));
	f->items = (cdx_failure *)(f + 1);
	char *pool = (char *)(f->items + n);
	size_t i = 0;
	cJSON_ArrayForEach(it, arr) {
		cdx_failure *x = &f->items[i++];
		x->path = cdxi_pool_str(&pool, cdxi_get_str(it, "path"));
		x->reason = cdxi_pool_str(&pool, cdxi_get_str(it, "reason"));
		x->size = cdxi_get_i64(it, "size", 0);
		x->mtime = cdxi_get_i64(it, "mtime", 0);
		x->when = cdxi_get_i64(it, "when", 0);
	}
	*out = f;
out_free_reply:
	cJSON_Delete(rep);
	return rc;
}

void
cdx_failures_free(cdx_failures *f)
{
	free(f);
}
