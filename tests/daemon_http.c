/*
 * The HTTP transport (daemon/http.c) over raw sockets: request framing
 * (every smuggling shape of issue 14 item 4 is refused, its connection
 * closed, and nothing after it runs), access decided from the headers
 * before the body is read, empty bodies, the connection caps and the idle
 * timeout.  The daemon runs in this process (srv_start) with the tiny
 * generated model; each test starts its own, so each runs alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "daemon/srv_internal.h"
#include "tests/srv_fixture.h"
#include "tests/testmodel.h"
#include "tests/testutil.h"

static tu_srv fx;
static int port;

static const char status_json[] = "{\"op\":\"status\"}";   /* 15 bytes */

/* ---- the daemon ---- */

/* Starts the daemon on HOST:<free port> with the given idle timeout,
 * connection cap and token (NULL: none). */
static void
start(const char *host, int timeout, int conns, const char *token)
{
	cdx_error err;
	char hp[64];

	tu_srv_config(&fx, NULL, "inproc://daemon-http-test");
	fx.cfg.http_timeout = timeout;
	fx.cfg.http_connections = conns;
	if (token != NULL)
		fx.cfg.token = strdup(token);
	for (int attempt = 0; attempt < 20; attempt++) {
		port = 20000 + (getpid() * 11 + attempt * 137) % 40000;
		snprintf(hp, sizeof(hp), "%s:%d", host, port);
		free(fx.cfg.http);
		fx.cfg.http = strdup(hp);
		CDX_ASSERT_OK(srv_config_finish(&fx.cfg, &err), err.msg);
		int rc = srv_start(&fx.cfg, &fx.srv, &err);
		if (rc == 0)
			return;
		if (strstr(err.msg, "HTTP") == NULL)
			fail_msg("srv_start: %s", err.msg);
	}
	fail_msg("no free port for HTTP");
}

static void
stop(void)
{
	tu_srv_stop(&fx);
}

static int
setup(void **state)
{
	(void)state;
	return tu_srv_dirs(&fx, "http");
}

static int
teardown(void **state)
{
	(void)state;
	tu_srv_teardown(&fx);
	return 0;
}

static int
after_each(void **state)
{
	(void)state;
	if (fx.srv != NULL)
		stop();
	return 0;
}

/* ---- raw connections ---- */

/* A connection to the daemon from 127.0.0.<src> (0: any), or -1. */
static int
conn_open(int src)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
	    .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		return -1;
	if (src > 0) {
		struct sockaddr_in b = { .sin_family = AF_INET };
		b.sin_addr.s_addr = htonl(INADDR_LOOPBACK - 1 + (unsigned)src);
		if (bind(fd, (struct sockaddr *)&b, sizeof(b)) != 0) {
			close(fd);
			return -1;
		}
	}
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

typedef struct reply {
	char buf[65536];
	size_t len;
	int closed;     /* the daemon closed the connection */
	int status;     /* of the first response, or 0 */
	int n_responses;
	int n_not_4xx;  /* responses with another status than 4xx */
	double secs;    /* until closed, or until the wait ended */
} reply;

/* Reads from fd until the daemon closes it or wait_s passes with nothing
 * new. */
static void
conn_read(int fd, double wait_s, reply *r)
{
	struct timeval tv = { .tv_sec = 0, .tv_usec = 100000 };
	double t0 = tu_now_s(), last = t0;

	memset(r, 0, sizeof(*r));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (;;) {
		ssize_t n = recv(fd, r->buf + r->len, sizeof(r->buf) - 1 - r->len,
		    0);
		if (n > 0) {
			r->len += (size_t)n;
			last = tu_now_s();
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR)) {
			r->closed = 1;
			break;
		}
		if (tu_now_s() - last > wait_s)
			break;
	}
	r->secs = tu_now_s() - t0;
	r->buf[r->len] = '\0';
	sscanf(r->buf, "HTTP/1.%*d %d", &r->status);
	for (const char *p = r->buf; (p = strstr(p, "HTTP/1.")) != NULL; p++) {
		int st = 0;
		sscanf(p, "HTTP/1.%*d %d", &st);
		r->n_responses++;
		r->n_not_4xx += st < 400 || st > 499;
	}
}

/* Sends req (len bytes) on a new connection and reads what comes back. */
static void
exchange(const char *req, size_t len, double wait_s, reply *r)
{
	int fd = conn_open(0);
	assert_true(fd >= 0);
	assert_int_equal(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
	conn_read(fd, wait_s, r);
	close(fd);
}

/* "POST /api" with the given extra headers and body on a new connection,
 * followed on the same connection by a well-formed status request: what
 * a smuggler would run. */
static void
smuggle(const char *headers, const char *body, reply *r)
{
	char req[2048];
	int n = snprintf(req, sizeof(req), "POST /api HTTP/1.1\r\nHost: "
	    "127.0.0.1:%d\r\n%s\r\n%sPOST /api HTTP/1.1\r\nHost: 127.0.0.1:%d"
	    "\r\nContent-Length: 15\r\n\r\n%s", port, headers, body, port,
	    status_json);
	exchange(req, (size_t)n, 1.5, r);
}

/* ---- tests ---- */

/* The harness itself: two good requests on one connection get two 200s
 * (so one response below really means the second request never ran). */
static void
test_keep_alive_control(void **state)
{
	(void)state;
	reply r;
	start("127.0.0.1", 5, 0, NULL);
	smuggle("Content-Length: 15\r\n", status_json, &r);
	if (r.n_responses != 2 || r.status != 200)
		fail_msg("two requests: %d responses, first %d:\n%s",
		    r.n_responses, r.status, r.buf);
	assert_non_null(strstr(r.buf, "\"ok\":true"));
}

/* A body of many packets (1 MiB, written slowly in pieces) is buffered
 * whole and answered once. */
static void
test_big_body(void **state)
{
	(void)state;
	enum { PAD = 1 << 20 };
	char head[256];
	char *body = malloc(PAD + sizeof(status_json));
	reply r;

	assert_non_null(body);
	memset(body, ' ', PAD);         /* JSON allows leading white space */
	memcpy(body + PAD, status_json, sizeof(status_json));
	start("127.0.0.1", 5, 0, NULL);
	int n = snprintf(head, sizeof(head), "POST /api HTTP/1.1\r\nHost: "
	    "127.0.0.1:%d\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n",
	    port, (size_t)PAD + strlen(status_json));
	int fd = conn_open(0);
	assert_true(fd >= 0);
	assert_int_equal(send(fd, head, (size_t)n, MSG_NOSIGNAL), n);
	size_t total = PAD + strlen(status_json);
	for (size_t off = 0; off < total; off += 256 << 10) {
		size_t k = total - off < (256u << 10) ? total - off : 256u << 10;
		assert_int_equal(send(fd, body + off, k, MSG_NOSIGNAL), (ssize_t)k);
		usleep(20000);
	}
	conn_read(fd, 2.0, &r);
	close(fd);
	free(body);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.n_responses, 1);
	assert_non_null(strstr(r.buf, "\"ok\":true"));
}

/* Every framing trick of item 4: refused with 4xx, the connection closed,
 * the request behind it never run.  (For a bad Content-Length MHD 0.9.75
 * writes its 400's header block twice: still one refusal.) */
static void
test_framing(void **state)
{
	(void)state;
	static const struct {
		const char *what, *headers, *body;
	} cases[] = {
		{ "Content-Length with Transfer-Encoding",
		    "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
		    "0\r\n\r\n" },
		{ "a chunked body",
		    "Transfer-Encoding: chunked\r\n",
		    "f\r\n{\"op\":\"status\"}\r\n0\r\n\r\n" },
		{ "Transfer-Encoding: xchunked",
		    "Transfer-Encoding: xchunked\r\nContent-Length: 15\r\n",
		    "{\"op\":\"status\"}" },
		{ "Content-Length: abc", "Content-Length: abc\r\n", "" },
		{ "Content-Length: +15", "Content-Length: +15\r\n",
		    "{\"op\":\"status\"}" },
		{ "Content-Length: -1", "Content-Length: -1\r\n", "" },
		{ "two Content-Lengths",
		    "Content-Length: 15\r\nContent-Length: 0\r\n",
		    "{\"op\":\"status\"}" },
	};
	reply r;

	start("127.0.0.1", 5, 0, NULL);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		smuggle(cases[i].headers, cases[i].body, &r);
		if (!r.closed || r.n_not_4xx > 0 || strstr(r.buf, "\"ok\":true") ||
		    (cases[i].headers[0] == 'T' && r.status != 411))
			fail_msg("%s: closed %d, %d responses, status %d:\n%s",
			    cases[i].what, r.closed, r.n_responses, r.status,
			    r.buf);
		print_message("%-40s -> %d, closed\n", cases[i].what, r.status);
	}
	/* the daemon still answers */
	smuggle("Content-Length: 15\r\n", status_json, &r);
	assert_int_equal(r.status, 200);
}

/* Bare LF line endings: MHD 0.9.75 reads a lone LF as a line end (RFC
 * 9112 section 2.2 allows a recipient to), and it is the only parser on
 * the way, so a request means one thing: a header hidden behind a bare LF
 * is a header like any other, and a second Content-Length that way is
 * refused like any other.  (Refusing bare LF needs MHD 0.9.77's
 * MHD_OPTION_CLIENT_DISCIPLINE_LVL.) */
static void
test_bare_lf(void **state)
{
	(void)state;
	char req[512];
	reply r;

	start("127.0.0.1", 5, 0, NULL);
	int n = snprintf(req, sizeof(req), "POST /api HTTP/1.1\nHost: "
	    "127.0.0.1:%d\nContent-Length: 15\nConnection: close\n\n%s", port,
	    status_json);
	exchange(req, (size_t)n, 1.5, &r);
	assert_int_equal(r.n_responses, 1);
	assert_true(r.closed);
	n = snprintf(req, sizeof(req), "POST /api HTTP/1.1\r\nHost: "
	    "127.0.0.1:%d\r\nX-A: 1\nContent-Length: 0\r\nContent-Length: "
	    "15\r\n\r\n%s", port, status_json);
	exchange(req, (size_t)n, 1.5, &r);
	if (r.status != 400 || !r.closed || r.n_not_4xx > 0)
		fail_msg("Content-Length behind a bare LF: closed %d, status %d:"
		    "\n%s", r.closed, r.status, r.buf);
}

/* Content-Length: 0 (and no Content-Length) is a clean bad_json, never a
 * NULL body (the UBSan build aborted on memcpy(copy, NULL, 0)). */
static void
test_empty_body(void **state)
{
	(void)state;
	char req[512];
	reply r;

	start("127.0.0.1", 5, 0, NULL);
	for (int with_cl = 0; with_cl < 2; with_cl++) {
		int n = snprintf(req, sizeof(req), "POST /api HTTP/1.1\r\nHost: "
		    "127.0.0.1:%d\r\n%sConnection: close\r\n\r\n", port,
		    with_cl ? "Content-Length: 0\r\n" : "");
		exchange(req, (size_t)n, 1.5, &r);
		if (r.status != 400 || strstr(r.buf, "\"bad_json\"") == NULL)
			fail_msg("empty body (Content-Length %s): %s",
			    with_cl ? "0" : "absent", r.buf);
	}
}

/* Routes: a GET on /api and a body on a GET are refused, closing. */
static void
test_methods(void **state)
{
	(void)state;
	char req[512];
	reply r;

	start("127.0.0.1", 5, 0, NULL);
	int n = snprintf(req, sizeof(req), "GET /api HTTP/1.1\r\nHost: "
	    "127.0.0.1:%d\r\n\r\n", port);
	exchange(req, (size_t)n, 1.5, &r);
	assert_int_equal(r.status, 405);
	assert_true(r.closed);
	n = snprintf(req, sizeof(req), "GET /app.css HTTP/1.1\r\nHost: "
	    "127.0.0.1:%d\r\nContent-Length: 15\r\n\r\n%s", port, status_json);
	exchange(req, (size_t)n, 1.5, &r);
	assert_int_equal(r.status, 400);
	assert_true(r.closed);
	assert_int_equal(r.n_responses, 1);
}

/* The answer to a body that must not be read comes from the headers
 * alone: 60 MiB announced, nothing sent, the refusal at once. */
static void
test_refused_before_body(void **state)
{
	(void)state;
	static const struct {
		const char *what, *extra;
		int status;
		const char *code;
	} cases[] = {
		{ "no token", "", 401, "\"unauthorized\"" },
		{ "a wrong token", "Authorization: Bearer s3cret-tokeN\r\n", 401,
		    "\"unauthorized\"" },
		{ "a foreign Origin", "Authorization: Bearer s3cret-token\r\n"
		    "Origin: http://evil.example\r\n", 403, "\"forbidden\"" },
		{ "over --max-request-bytes",
		    "Authorization: Bearer s3cret-token\r\n", 413,
		    "\"too_large\"" },
	};
	char req[1024];
	reply r;

	start("0.0.0.0", 5, 0, "s3cret-token");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int n = snprintf(req, sizeof(req), "POST /api HTTP/1.1\r\nHost: "
		    "127.0.0.1:%d\r\n%sContent-Length: %d\r\n\r\n", port,
		    cases[i].extra, 60 << 20);
		exchange(req, (size_t)n, 2.0, &r);
		if (r.status != cases[i].status || !r.closed || r.secs > 1.0 ||
		    strstr(r.buf, cases[i].code) == NULL)
			fail_msg("%s: status %d, closed %d after %.2f s:\n%s",
			    cases[i].what, r.status, r.closed, r.secs, r.buf);
	}
	/* with the token a request goes through */
	int n = snprintf(req, sizeof(req), "POST /api HTTP/1.1\r\nHost: "
	    "127.0.0.1:%d\r\nAuthorization: Bearer s3cret-token\r\n"
	    "Connection: close\r\nContent-Length: 15\r\n\r\n%s", port,
	    status_json);
	exchange(req, (size_t)n, 2.0, &r);
	assert_int_equal(r.status, 200);
	/* over HTTP the token is a header: the body's "token" is not read
	 * before the decision */
	n = snprintf(req, sizeof(req), "POST /api HTTP/1.1\r\nHost: "
	    "127.0.0.1:%d\r\nConnection: close\r\nContent-Length: 44\r\n\r\n"
	    "{\"op\":\"status\",\"token\":\"s3cret-token\"}  ", port);
	exchange(req, (size_t)n, 2.0, &r);
	assert_int_equal(r.status, 401);
}

/* At most --http-connections connections, half of them from one address:
 * one over the address's half is closed without an answer; one over the
 * cap waits, unserved, until a connection goes (MHD leaves it in the
 * listen backlog). */
static void
test_connection_limit(void **state)
{
	(void)state;
	enum { CAP = 8 };
	int fds[CAP], n = 0, extra;
	char req[256];
	reply r;

	start("127.0.0.1", 30, CAP, NULL);
	int len = snprintf(req, sizeof(req), "POST /api HTTP/1.1\r\nHost: "
	    "127.0.0.1:%d\r\nContent-Length: 15\r\n\r\n%s", port, status_json);
	/* half from 127.0.0.1: the next one from there is refused */
	for (; n < CAP / 2; n++)
		assert_true((fds[n] = conn_open(1)) >= 0);
	usleep(100000);
	assert_true((extra = conn_open(1)) >= 0);
	send(extra, req, (size_t)len, MSG_NOSIGNAL);
	conn_read(extra, 1.0, &r);
	close(extra);
	if (!r.closed || r.status != 0)
		fail_msg("connection %d from one address: closed %d, %s", n + 1,
		    r.closed, r.buf);
	/* the other half from 127.0.0.2; then the cap is reached */
	for (; n < CAP; n++)
		assert_true((fds[n] = conn_open(2)) >= 0);
	usleep(100000);
	assert_true((extra = conn_open(3)) >= 0);
	send(extra, req, (size_t)len, MSG_NOSIGNAL);
	conn_read(extra, 1.0, &r);
	if (r.status != 0)
		fail_msg("connection %d served: %s", CAP + 1, r.buf);
	/* one of them goes: the waiting client is served */
	close(fds[0]);
	conn_read(extra, 2.0, &r);
	close(extra);
	assert_int_equal(r.status, 200);
	for (int i = 1; i < CAP; i++)
		close(fds[i]);
}

/* A connection that stops sending, in the middle of its headers or after
 * them, is closed after --http-timeout; an active one is not. */
static void
test_idle_timeout(void **state)
{
	(void)state;
	static const char *const partial[] = {
		"",                                     /* nothing at all */
		"POST /api HTTP/1.1\r\nHo",             /* half a header */
		("POST /api HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 15"
		    "\r\n\r\n{\"op\""),                /* half a body */
	};
	reply r;

	start("127.0.0.1", 1, 0, NULL);
	for (size_t i = 0; i < sizeof(partial) / sizeof(partial[0]); i++) {
		int fd = conn_open(0);
		assert_true(fd >= 0);
		send(fd, partial[i], strlen(partial[i]), MSG_NOSIGNAL);
		conn_read(fd, 4.0, &r);
		close(fd);
		if (!r.closed || r.secs < 0.5 || r.secs > 3.5 ||
		    strstr(r.buf, " 200 ") != NULL)
			fail_msg("idle connection %zu: closed %d after %.2f s: %s",
			    i, r.closed, r.secs, r.buf);
		print_message("idle connection %zu closed after %.2f s\n", i,
		    r.secs);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_keep_alive_control, after_each),
		cmocka_unit_test_teardown(test_big_body, after_each),
		cmocka_unit_test_teardown(test_framing, after_each),
		cmocka_unit_test_teardown(test_bare_lf, after_each),
		cmocka_unit_test_teardown(test_empty_body, after_each),
		cmocka_unit_test_teardown(test_methods, after_each),
		cmocka_unit_test_teardown(test_refused_before_body, after_each),
		cmocka_unit_test_teardown(test_connection_limit, after_each),
		cmocka_unit_test_teardown(test_idle_timeout, after_each),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
