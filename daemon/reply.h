/*
 * reply.h - a request waiting for its answer (srv_job) and the reply
 * envelope of docs/PROTOCOL.md, built in one place:
 *   {"v":1, "ok":true, ...fields..., "tag":T}
 *   {"v":1, "ok":false, "error":{"code":NAME, "message":TEXT}, "tag":T}
 * Every reply to a job carries the job's tag (srv_job.tag, set when the
 * request is parsed, request.h), errors included; a request that never
 * parsed (not JSON, over the size limit, refused "busy" by a full queue)
 * has none.  Error codes are enum cdx_proto_code; common/proto.h gives
 * their names and HTTP statuses.
 *
 * Ownership: each reply_* function that answers a job frees it; the job
 * must not be used afterwards.  Thread-safety: a job belongs to one thread
 * at a time; the functions share no state.
 */
#ifndef CDX_SRV_REPLY_H
#define CDX_SRV_REPLY_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "common/proto.h"
#include "daemon/daemon.h"

/* One queued request (server.c queues it, dispatch.c answers it). */
typedef struct srv_job {
	struct srv_job *next;
	char *req;              /* the request's bytes (owned), or NULL */
	size_t len;
	int origin;             /* enum srv_origin */
	char *auth;             /* bearer token from HTTP (owned), or NULL */
	cJSON *tag;             /* the request's tag (owned), once parsed */
	srv_reply_fn fn;
	void *user;
} srv_job;

/* Frees the job and what it owns, without answering.  NULL is a no-op. */
void srv_job_free(srv_job *job);

/* The error envelope as malloc'd text (with tag when not NULL).  Never
 * NULL unless even a fixed out-of-memory reply cannot be allocated. */
char *reply_error_json(enum cdx_proto_code code, const char *msg,
    const cJSON *tag);

/* Answers job with reply (malloc'd text; taken) and status, frees job. */
void reply_send(srv_job *job, char *reply, int http_status);

/* Answers job with the success envelope around r (an object; taken):
 * adds v, ok and the job's tag.  Frees job. */
void reply_ok(srv_job *job, cJSON *r);

/* Answers job with an error (HTTP status from the code's table entry)
 * and the job's tag.  Frees job. */
void reply_error(srv_job *job, enum cdx_proto_code code, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));

#endif
