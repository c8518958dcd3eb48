/*
 * A stand-in for clipdexd for the client tests: an nng rep0 socket on a
 * private ipc:// address, answering on one thread with canned replies
 * derived from each request, and keeping the last request for inspection.
 *
 * Replies by op:
 *   status    a fixed status object (images 1234, model "m@1", dim 4 ...)
 *   search    k results (default 10): id 100+i, path "/p/<i>.jpg", score
 *             0.9 - 0.1*i, width 640+i, height 480, capture_time null for
 *             odd i; a first term with text "ERR:<code>[ more]" gets the
 *             error <code> with message "fake <code>[ more]"; text "SLEEP" replies after
 *             fakesrv.sleep_ms; text "EMPTY" gets zero results.
 *   similar   like search, 3 results
 *   embed     dim 4, embedding [0.5, -0.5, 0.5, -0.5]
 *   add       {"added":3,"updated":2,"unchanged":1,"failed":0} or {"queued":true}
 *   remove    {"removed":7}
 *   failures  2 failures, total 5
 *   anything else: error unknown_op; bytes that are not JSON: bad_json.
 * With fakesrv.canned set, every request gets that string as its reply.
 */
#ifndef CLIENT_FAKESRV_H
#define CLIENT_FAKESRV_H

#include <cjson/cJSON.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* LeakSanitizer's suppressions for a test program that hosts a fake
 * server: tests/lsan-nng.supp's one line.  CLI children exit whenever they
 * are done, some in the middle of nng's connection handshake, and nng
 * 1.5.2 never frees a listener closed (at teardown) while it holds such a
 * connection.  The daemons the suites start get the same line through
 * LSAN_OPTIONS (tu_lsan_nng); a program cannot set that for itself. */
const char *__lsan_default_suppressions(void);
const char *
__lsan_default_suppressions(void)
{
	return "leak:libnng.so\n";
}

struct fakesrv {
	nng_socket sock;
	pthread_t thread;
	char url[256];
	char path[256];
	pthread_mutex_t mu;
	char *last;          /* the last request, as received */
	int requests;
	int sleep_ms;
	const char *canned;  /* if set: the reply to every request, verbatim */
};

static inline void
fakesrv_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

static inline cJSON *
fakesrv_error(const char *code, const char *msg)
{
	cJSON *r = cJSON_CreateObject();
	cJSON_AddNumberToObject(r, "v", 1);
	cJSON_AddFalseToObject(r, "ok");
	cJSON *e = cJSON_AddObjectToObject(r, "error");
	cJSON_AddStringToObject(e, "code", code);
	cJSON_AddStringToObject(e, "message", msg);
	return r;
}

static inline cJSON *
fakesrv_results(int k)
{
	cJSON *r = cJSON_CreateObject();
	cJSON_AddNumberToObject(r, "v", 1);
	cJSON_AddTrueToObject(r, "ok");
	cJSON_AddNumberToObject(r, "took_ms", 1.5);
	cJSON *a = cJSON_AddArrayToObject(r, "results");
	for (int i = 0; i < k; i++) {
		char p[64];
		cJSON *o = cJSON_CreateObject();
		snprintf(p, sizeof(p), "/p/%d.jpg", i);
		cJSON_AddNumberToObject(o, "id", 100 + i);
		cJSON_AddStringToObject(o, "path", p);
		cJSON_AddNumberToObject(o, "score", 0.9 - 0.1 * i);
		cJSON_AddNumberToObject(o, "width", 640 + i);
		cJSON_AddNumberToObject(o, "height", 480);
		cJSON_AddNumberToObject(o, "size", 1000 * (i + 1));
		cJSON_AddNumberToObject(o, "mtime", 1600000000 + i);
		if (i % 2)
			cJSON_AddNullToObject(o, "capture_time");
		else
			cJSON_AddNumberToObject(o, "capture_time", 1500000000 + i);
		cJSON_AddNumberToObject(o, "added", 1700000000);
		cJSON_AddItemToArray(a, o);
	}
	return r;
}

static inline cJSON *
fakesrv_ok(void)
{
	cJSON *r = cJSON_CreateObject();
	cJSON_AddNumberToObject(r, "v", 1);
	cJSON_AddTrueToObject(r, "ok");
	return r;
}

static inline cJSON *
fakesrv_answer(struct fakesrv *s, const char *body, size_t len)
{
	cJSON *req = cJSON_ParseWithLength(body, len), *r;
	const char *op = cJSON_GetStringValue(cJSON_GetObjectItem(req, "op"));
	if (!cJSON_IsObject(req)) {
		r = fakesrv_error("bad_json", "the request is not a JSON object");
	} else if (op == NULL) {
		r = fakesrv_error("bad_request", "no op");
	} else if (strcmp(op, "status") == 0) {
		r = cJSON_Parse("{\"v\":1,\"ok\":true,\"version\":\"0.1.0\","
		    "\"uptime_s\":12.5,\"images\":1234,\"failures\":2,\"seq\":99,"
		    "\"model\":{\"id\":\"m@1\",\"dim\":4},\"index\":{\"kind\":"
		    "\"IDMap2,Flat\",\"vectors\":1234},\"queue\":{\"pending\":3,"
		    "\"done\":1200,\"rate\":25.5},\"roots\":[\"/photos\"],"
		    "\"rss_bytes\":400000000}");
	} else if (strcmp(op, "search") == 0) {
		cJSON *t0 = cJSON_GetArrayItem(cJSON_GetObjectItem(req, "terms"), 0);
		const char *text = cJSON_GetStringValue(cJSON_GetObjectItem(t0, "text"));
		cJSON *k = cJSON_GetObjectItem(req, "k");
		if (text != NULL && strncmp(text, "ERR:", 4) == 0) {
			char msg[128], code[64];
			snprintf(msg, sizeof(msg), "fake %s", text + 4);
			snprintf(code, sizeof(code), "%.*s", (int)strcspn(text + 4, " "),
			    text + 4);
			r = fakesrv_error(code, msg);
		} else {
			if (text != NULL && strcmp(text, "SLEEP") == 0)
				fakesrv_sleep_ms(s->sleep_ms);
			int n = cJSON_IsNumber(k) ? k->valueint : 10;
			if (text != NULL && strcmp(text, "EMPTY") == 0)
				n = 0;
			r = fakesrv_results(n);
			/* "CLIPS": the odd hits are frames of a video clip */
			cJSON *h;
			int i = 0;
			if (text != NULL && strcmp(text, "CLIPS") == 0)
				cJSON_ArrayForEach(h, cJSON_GetObjectItem(r,
				    "results")) {
					if (i++ % 2 == 0)
						continue;
					cJSON_ReplaceItemInObject(h, "path",
					    cJSON_CreateString("/v/clip.mp4"));
					cJSON_AddStringToObject(h, "kind", "frame");
					cJSON_AddNumberToObject(h, "time",
					    i == 2 ? 102.5 : 3725.0);
				}
		}
	} else if (strcmp(op, "similar") == 0) {
		r = fakesrv_results(3);
	} else if (strcmp(op, "embed") == 0) {
		r = cJSON_Parse("{\"v\":1,\"ok\":true,\"dim\":4,\"model\":\"m@1\","
		    "\"embedding\":[0.5,-0.5,0.5,-0.5]}");
	} else if (strcmp(op, "add") == 0) {
		r = fakesrv_ok();
		if (cJSON_IsTrue(cJSON_GetObjectItem(req, "wait"))) {
			cJSON_AddNumberToObject(r, "added", 3);
			cJSON_AddNumberToObject(r, "updated", 2);
			cJSON_AddNumberToObject(r, "unchanged", 1);
			cJSON_AddNumberToObject(r, "failed", 0);
		} else {
			cJSON_AddTrueToObject(r, "queued");
		}
	} else if (strcmp(op, "remove") == 0) {
		r = fakesrv_ok();
		cJSON_AddNumberToObject(r, "removed", 7);
	} else if (strcmp(op, "failures") == 0) {
		r = cJSON_Parse("{\"v\":1,\"ok\":true,\"total\":5,"
		    "\"store_full\":true,\"failures\":["
		    "{\"path\":\"/a/bad.jpg\",\"reason\":\"not a JPEG\",\"size\":10,"
		    "\"mtime\":1600000000,\"when\":1700000000},"
		    "{\"path\":\"/a/worse.png\",\"reason\":\"CRC error\",\"size\":20,"
		    "\"mtime\":1600000001,\"when\":1700000001}]}");
	} else {
		r = fakesrv_error("unknown_op", "no such operation");
	}
	cJSON *tag = cJSON_GetObjectItem(req, "tag");
	if (tag != NULL)
		cJSON_AddItemToObject(r, "tag", cJSON_Duplicate(tag, 1));
	cJSON_Delete(req);
	return r;
}

static inline void *
fakesrv_main(void *arg)
{
	struct fakesrv *s = arg;
	for (;;) {
		nng_msg *m;
		if (nng_recvmsg(s->sock, &m, 0) != 0)
			break;
		size_t len = nng_msg_len(m);
		char *copy = malloc(len + 1);
		memcpy(copy, nng_msg_body(m), len);
		copy[len] = '\0';
		pthread_mutex_lock(&s->mu);
		free(s->last);
		s->last = copy;
		s->requests++;
		pthread_mutex_unlock(&s->mu);
		pthread_mutex_lock(&s->mu);
		const char *canned = s->canned;
		pthread_mutex_unlock(&s->mu);
		char *out;
		if (canned != NULL) {
			out = strdup(canned);
		} else {
			cJSON *r = fakesrv_answer(s, copy, len);
			out = cJSON_PrintUnformatted(r);
			cJSON_Delete(r);
		}
		nng_msg_clear(m);
		nng_msg_append(m, out, strlen(out));
		free(out);
		if (nng_sendmsg(s->sock, m, 0) != 0)
			nng_msg_free(m);
	}
	return NULL;
}

/* The address a fake server numbered n will listen on. */
static inline void
fakesrv_address(int n, char *url, size_t size)
{
	snprintf(url, size, "ipc:///tmp/cdx-client-test-%d-%d.sock", (int)getpid(),
	    n);
}

static inline int
fakesrv_start(struct fakesrv *s, int n)
{
	memset(s, 0, sizeof(*s));
	fakesrv_address(n, s->url, sizeof(s->url));
	snprintf(s->path, sizeof(s->path), "%s", s->url + strlen("ipc://"));
	pthread_mutex_init(&s->mu, NULL);
	s->sleep_ms = 500;
	if (nng_rep0_open(&s->sock) != 0)
		return -1;
	nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, 64 << 20);
	if (nng_listen(s->sock, s->url, NULL, 0) != 0) {
		nng_close(s->sock);
		return -1;
	}
	return pthread_create(&s->thread, NULL, fakesrv_main, s) == 0 ? 0 : -1;
}

static inline void
fakesrv_stop(struct fakesrv *s)
{
	nng_close(s->sock);
	pthread_join(s->thread, NULL);
	pthread_mutex_destroy(&s->mu);
	free(s->last);
	unlink(s->path);
}

static inline void
fakesrv_set_canned(struct fakesrv *s, const char *reply)
{
	pthread_mutex_lock(&s->mu);
	s->canned = reply;
	pthread_mutex_unlock(&s->mu);
}

/* The last request, parsed (caller deletes). */
static inline cJSON *
fakesrv_last(struct fakesrv *s)
{
	pthread_mutex_lock(&s->mu);
	cJSON *j = s->last ? cJSON_Parse(s->last) : NULL;
	pthread_mutex_unlock(&s->mu);
	return j;
}

#endif
