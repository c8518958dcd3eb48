/*
 * request.c - parsing and checking requests (see request.h).
 */
#include "daemon/request.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "daemon/access.h"

int
srv_fail(srv_call *c, enum cdx_proto_code code, const char *fmt, ...)
{
	va_list ap;
	c->ecode = code;
	va_start(ap, fmt);
	vsnprintf(c->emsg, sizeof(c->emsg), fmt, ap);
	va_end(ap);
	return -1;
}

int
srv_fail_cdx(srv_call *c, int rc, const cdx_error *err)
{
	return srv_fail(c, cdx_proto_code_of(rc), "%s",
	    err != NULL && err->code == rc ? err->msg : cdx_strerror(rc));
}

static int
check_token(srv_call *c, const char *want)
{
	const cJSON *tok = cJSON_GetObjectItemCaseSensitive(c->req, "token");
	const char *got = c->job->auth;

	if (!access_token_needed(c->job->origin))
		return 0;
	if (got == NULL && cJSON_IsString(tok))
		got = tok->valuestring;
	if (!access_token_ok(want, got))
		return srv_fail(c, CDX_PROTO_UNAUTHORIZED, "a valid token is "
		    "required");
	return 0;
}

int
request_parse(srv_call *c, const char *token)
{
	srv_job *job = c->job;
	const cJSON *v, *op;

	if (job->req == NULL)
		return srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
	c->req = cJSON_ParseWithLength(job->req, job->len);
	if (c->req == NULL || !cJSON_IsObject(c->req))
		return srv_fail(c, CDX_PROTO_BAD_JSON, "the request is not a JSON "
		    "object");
	c->tag = cJSON_GetObjectItemCaseSensitive(c->req, "tag");
	if (c->tag != NULL && job->tag == NULL &&
	    (job->tag = cJSON_Duplicate(c->tag, 1)) == NULL)
		return srv_fail(c, CDX_PROTO_INTERNAL, "out of memory");
	if (check_token(c, token) != 0)
		return -1;
	v = cJSON_GetObjectItemCaseSensitive(c->req, "v");
	if (v != NULL && !(cJSON_IsNumber(v) && v->valuedouble == 1))
		return srv_fail(c, CDX_PROTO_UNSUPPORTED_VERSION, "this daemon "
		    "speaks protocol version 1");
	op = cJSON_GetObjectItemCaseSensitive(c->req, "op");
	if (!cJSON_IsString(op))
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "the request needs an "
		    "'op' string");
	c->op = op->valuestring;
	return 0;
}

int
srv_get_int(srv_call *c, const cJSON *obj, const char *name, long lo, long hi,
    const char *toobig, long *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
	if (v == NULL || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'%s' must be an "
		    "integer", name);
	if (v->valuedouble > (double)hi && toobig != NULL)
		return srv_fail(c, CDX_PROTO_TOO_LARGE, "'%s' is %.0f; %s", name,
		    v->valuedouble, toobig);
	if (v->valuedouble < (double)lo || v->valuedouble > (double)hi)
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'%s' must be in "
		    "%ld..%ld", name, lo, hi);
	*out = (long)v->valuedouble;
	return 0;
}

int
srv_get_num(srv_call *c, const cJSON *obj, const char *name, double lo,
    double hi, int *present, double *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
	if (v == NULL || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) ||
	    v->valuedouble < lo || v->valuedouble > hi)
		return srv_fail(c, CDX_PROTO_BAD_REQUEST, "'%s' must be a number "
		    "in %g..%g", name, lo, hi);
	*out = v->valuedouble;
	if (present != NULL)
		*present = 1;
	return 0;
}

int
srv_get_bool(const cJSON *obj, const char *name)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, name));
}

void
srv_reply_ok(srv_call *c, cJSON *r)
{
	reply_ok(c->job, r);
	c->job = NULL;
}
