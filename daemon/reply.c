/*
 * reply.c - the reply envelope (see reply.h).
 */
#include "daemon/reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
srv_job_free(srv_job *job)
{
	if (job == NULL)
		return;
	free(job->req);
	free(job->auth);
	cJSON_Delete(job->tag);
	free(job);
}

/* Adds v, ok and a copy of tag (may be NULL) to r. */
static void
envelope(cJSON *r, int ok, const cJSON *tag)
{
	cJSON_AddNumberToObject(r, "v", 1);
	cJSON_AddBoolToObject(r, "ok", ok);
	if (tag != NULL)
		cJSON_AddItemToObject(r, "tag", cJSON_Duplicate(tag, 1));
}

char *
reply_error_json(enum cdx_proto_code code, const char *msg, const cJSON *tag)
{
	cJSON *r = cJSON_CreateObject(), *e = cJSON_CreateObject();
	char *out = NULL;

	if (r != NULL && e != NULL) {
		envelope(r, 0, NULL);
		cJSON_AddStringToObject(e, "code", cdx_proto_err_get(code)->name);
		cJSON_AddStringToObject(e, "message", msg);
		cJSON_AddItemToObject(r, "error", e);
		e = NULL;
		if (tag != NULL)
			cJSON_AddItemToObject(r, "tag", cJSON_Duplicate(tag, 1));
		out = cJSON_PrintUnformatted(r);
	}
	cJSON_Delete(e);
	cJSON_Delete(r);
	if (out == NULL) {
		char buf[160];
		snprintf(buf, sizeof(buf), "{\"v\":1,\"ok\":false,\"error\":"
		    "{\"code\":\"%s\",\"message\":\"out of memory\"}}",
		    cdx_proto_err_get(CDX_PROTO_INTERNAL)->name);
		out = strdup(buf);
	}
	return out;
}

void
reply_send(srv_job *job, char *reply, int http_status)
{
	job->fn(job->user, reply, strlen(reply), http_status);
	srv_job_free(job);
}

static void
send_error(srv_job *job, enum cdx_proto_code code, const char *msg)
{
	char *r = reply_error_json(code, msg, job->tag);
	if (r != NULL)
		reply_send(job, r, cdx_proto_err_get(code)->http_status);
	else
		srv_job_free(job);      /* nothing left to answer with */
}

void
reply_ok(srv_job *job, cJSON *r)
{
	char *out = NULL;

	if (r != NULL) {
		envelope(r, 1, job->tag);
		out = cJSON_PrintUnformatted(r);
		cJSON_Delete(r);
	}
	if (out == NULL)
		send_error(job, CDX_PROTO_INTERNAL, "out of memory");
	else
		reply_send(job, out, 200);
}

void
reply_error(srv_job *job, enum cdx_proto_code code, const char *fmt, ...)
{
	char msg[CDX_ERRMSG_MAX + 256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	send_error(job, code, msg);
}
