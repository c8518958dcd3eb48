/*
 * request.h - a request being handled (srv_call), and reading it: the
 * envelope (JSON object, tag, token, "v", "op") is parsed and checked in
 * one place, request_parse(), and operations read their fields with the
 * srv_get_* helpers, which turn a wrong field into the protocol's error.
 *
 * Errors: a function that fails records the protocol error in the call
 * (srv_fail) and returns -1; the dispatch answers it (with the tag).
 * Thread-safety: a call belongs to the worker thread handling it.
 */
#ifndef CDX_SRV_REQUEST_H
#define CDX_SRV_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "common/proto.h"
#include "daemon/reply.h"

struct srv;
struct srv_worker;

/* A request being handled on a worker: the parsed JSON and, when an
 * operation fails, the protocol error to report.  An operation either
 * answers (srv_reply_ok, which clears job) and returns 0, hands the job on
 * (clearing job) and returns 0, or returns -1 after srv_fail*(). */
typedef struct srv_call {
	struct srv *s;
	struct srv_worker *w;   /* its clip_ctx encodes the request's terms */
	srv_job *job;
	cJSON *req;             /* owned; freed by the dispatch */
	const cJSON *tag;       /* in req, or NULL */
	const char *op;         /* in req, after request_parse() */
	enum cdx_proto_code ecode;      /* protocol error when failing */
	char emsg[CDX_ERRMSG_MAX + 64];
} srv_call;

/* Parses c->job's bytes (job->len of them; no terminating NUL needed)
 * into c->req and checks the envelope, in this order:
 *   - one JSON object and nothing after it but whitespace, parsed
 *     strictly by RFC 8259 where cJSON is lenient (numbers such as "01",
 *     "1.", "+1", ".5"; control characters in strings; whitespace other
 *     than space, tab, CR, LF): bad_json;
 *   - the tag (kept in the job, so every later reply carries it);
 *   - no string, key or value, anywhere in the request, holding a NUL
 *     (raw or "\u0000"), since the daemon reads strings up to their first
 *     NUL: bad_request;
 *   - no object anywhere holding the same key twice: bad_request;
 *   - the token when `token` is not NULL and the job's origin needs one
 *     (unauthorized; a bearer token from HTTP wins over the "token"
 *     field);
 *   - "v" absent or 1 (unsupported_version), an "op" string (bad_request).
 * So every string an operation reads from c->req is the whole string that
 * was sent.  Returns 0 with c->op set, or -1 (srv_fail). */
int request_parse(srv_call *c, const char *token);

/* Records a protocol error and its message; returns -1. */
int srv_fail(srv_call *c, enum cdx_proto_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Records a CDX error with its message, mapped by cdx_proto_code_of(). */
int srv_fail_cdx(srv_call *c, int rc, const cdx_error *err);

/* Optional fields of obj: absent or null leaves *out; wrong type or range
 * fails with bad_request (an integer above hi fails with too_large when
 * toobig, the message's tail, is not NULL). */
int srv_get_int(srv_call *c, const cJSON *obj, const char *name, long lo,
    long hi, const char *toobig, long *out);
int srv_get_num(srv_call *c, const cJSON *obj, const char *name, double lo,
    double hi, int *present, double *out);
/* *out points to the string (owned by obj). */
int srv_get_str(srv_call *c, const cJSON *obj, const char *name,
    const char **out);
/* 1 when the field is true, else 0. */
int srv_get_bool(const cJSON *obj, const char *name);

/* Decodes in[0..len), standard or URL-safe base64 (padding optional,
 * whitespace ignored), into out, which holds at least len / 4 * 3 + 3
 * bytes.  Returns the decoded length, or -1 when malformed. */
long srv_base64_decode(const char *in, size_t len, uint8_t *out);

/* Answers the call with the success object r (adds v, ok, tag; takes r)
 * and clears c->job. */
void srv_reply_ok(srv_call *c, cJSON *r);

#endif
