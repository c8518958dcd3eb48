/*
 * daemon/server.c: the daemon's lifecycle and transports, in this process
 * with the tiny test model: start and stop, nng listeners (ipc and
 * inproc), the default address, an address in use, srv_handle(), and a
 * waiting "add" answered by the indexer with its tag.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "daemon/daemon.h"
#include "tests/testmodel.h"
#include "tests/testutil.h"

/* nng 1.5.2 leaks endpoints of failed handshakes (tests/lsan-nng.supp). */
const char *__lsan_default_suppressions(void);
const char *
__lsan_default_suppressions(void)
{
	return "leak:libnng.so\n";
}

typedef struct fixture {
	char tmp[256], model[300], store[300], photos[300], sock[320];
	srv_config cfg;
	srv *s;
} fixture;

static char model_dir[300];     /* written once for the suite */
static char suite_tmp[200];

static int
group_setup(void **state)
{
	tm_recipe r;
	(void)state;
	snprintf(suite_tmp, sizeof(suite_tmp), "/tmp/cdx-server-XXXXXX");
	if (mkdtemp(suite_tmp) == NULL)
		return -1;
	snprintf(model_dir, sizeof(model_dir), "%s/model", suite_tmp);
	mkdir(model_dir, 0755);
	tm_recipe_tiny(&r);
	return tm_write_model(&r, model_dir);
}

static int
group_teardown(void **state)
{
	(void)state;
	tm_rmtree(suite_tmp);
	return 0;
}

/* A fresh folder, store and config (not started). */
static int
setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	snprintf(f->tmp, sizeof(f->tmp), "%s/t-XXXXXX", suite_tmp);
	if (mkdtemp(f->tmp) == NULL)
		return -1;
	snprintf(f->store, sizeof(f->store), "%s/store", f->tmp);
	snprintf(f->photos, sizeof(f->photos), "%s/photos", f->tmp);
	snprintf(f->sock, sizeof(f->sock), "ipc://%s/s.sock", f->tmp);
	mkdir(f->photos, 0755);
	srv_config_init(&f->cfg);
	f->cfg.model_dir = strdup(model_dir);
	f->cfg.store_dir = strdup(f->store);
	f->cfg.threads = 1;
	f->cfg.workers = 2;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	fixture *f = *state;
	srv_stop(f->s);
	srv_config_free(&f->cfg);
	tm_rmtree(f->tmp);
	free(f);
	return 0;
}

static void
start(fixture *f)
{
	cdx_error err;
	CDX_ASSERT_OK(srv_config_finish(&f->cfg, &err), err.msg);
	CDX_ASSERT_OK(srv_start(&f->cfg, &f->s, &err), err.msg);
}

/* One request over nng REQ to url; the parsed reply, or NULL when the
 * daemon cannot be reached within a second. */
static cJSON *
nng_call(const char *url, const char *json)
{
	nng_socket sock;
	char *buf = NULL;
	size_t len = 0;
	cJSON *r = NULL;

	if (nng_req0_open(&sock) != 0)
		return NULL;
	nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, 5000);
	nng_socket_set_ms(sock, NNG_OPT_SENDTIMEO, 1000);
	if (nng_dial(sock, url, NULL, 0) == 0 &&
	    nng_send(sock, (void *)json, strlen(json), 0) == 0 &&
	    nng_recv(sock, &buf, &len, NNG_FLAG_ALLOC) == 0) {
		r = cJSON_ParseWithLength(buf, len);
		nng_free(buf, len);
	}
	nng_close(sock);
	return r;
}

static void
expect_status_ok(const char *url)
{
	cJSON *r = nng_call(url, "{\"op\":\"status\",\"tag\":[\"s\",1]}");
	if (r == NULL)
		fail_msg("no reply on %s", url);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(r, "ok")));
	assert_string_equal(cJSON_GetObjectItem(r, "version")->valuestring,
	    SRV_VERSION);
	cJSON *tag = cJSON_GetObjectItem(r, "tag");
	assert_true(cJSON_IsArray(tag) && cJSON_GetArraySize(tag) == 2);
	cJSON_Delete(r);
}

/* Every listener answers; after srv_stop nothing does, and the socket
 * file is gone. */
static void
test_listeners(void **state)
{
	fixture *f = *state;
	struct stat st;

	f->cfg.listen[f->cfg.n_listen++] = strdup(f->sock);
	f->cfg.listen[f->cfg.n_listen++] = strdup("inproc://daemon-server");
	start(f);
	expect_status_ok(f->sock);
	expect_status_ok("inproc://daemon-server");
	/* an error over nng: the envelope, the code, the tag */
	cJSON *r = nng_call(f->sock, "{\"op\":\"nope\",\"tag\":5}");
	assert_non_null(r);
	assert_true(cJSON_IsFalse(cJSON_GetObjectItem(r, "ok")));
	assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "error"),
	    "code")->valuestring, "unknown_op");
	assert_int_equal(cJSON_GetObjectItem(r, "tag")->valueint, 5);
	cJSON_Delete(r);

	srv_stop(f->s);
	f->s = NULL;
	assert_null(nng_call("inproc://daemon-server", "{\"op\":\"status\"}"));
	assert_int_not_equal(stat(f->sock + 6, &st), 0);
	srv_stop(NULL);         /* a no-op */
}

/* connections: two clients hold connections to an address capped at 2;
 * a third cannot get an answer until one of them leaves. */
static void
test_connection_cap(void **state)
{
	fixture *f = *state;
	nng_socket held[2];

	f->cfg.listen[f->cfg.n_listen++] = strdup(f->sock);
	f->cfg.connections = 2;
	start(f);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(nng_req0_open(&held[i]), 0);
		assert_int_equal(nng_dial(held[i], f->sock, NULL, 0), 0);
	}
	usleep(200000);         /* both pipes added */
	nng_socket third;
	char *buf = NULL;
	size_t len = 0;
	assert_int_equal(nng_req0_open(&third), 0);
	nng_socket_set_ms(third, NNG_OPT_RECVTIMEO, 1000);
	nng_socket_set_ms(third, NNG_OPT_SENDTIMEO, 1000);
	nng_dial(third, f->sock, NULL, NNG_FLAG_NONBLOCK);
	int rv = nng_send(third, "{\"op\":\"status\"}", 15, 0);
	if (rv == 0)
		rv = nng_recv(third, &buf, &len, NNG_FLAG_ALLOC);
	if (rv == 0) {
		nng_free(buf, len);
		fail_msg("a third connection was served past the cap of 2");
	}
	nng_close(third);
	nng_close(held[0]);
	usleep(200000);
	expect_status_ok(f->sock);      /* a slot is free again */
	nng_close(held[1]);
}

/* With no --listen the daemon takes the default address, the one
 * libclipdex dials ($CLIPDEX_URL here). */
static void
test_default_url(void **state)
{
	fixture *f = *state;
	char *old = getenv("CLIPDEX_URL") ? strdup(getenv("CLIPDEX_URL")) : NULL;

	setenv("CLIPDEX_URL", f->sock, 1);
	assert_string_equal(srv_default_url(), f->sock);
	start(f);
	expect_status_ok(f->sock);
	if (old != NULL)
		setenv("CLIPDEX_URL", old, 1);
	else
		unsetenv("CLIPDEX_URL");
	free(old);
}

/* A second daemon on a live address fails with CDX_EBUSY and a hint, and
 * leaves the first one serving. */
static void
test_address_in_use(void **state)
{
	fixture *f = *state;
	srv_config c2;
	srv *s2 = NULL;
	cdx_error err;
	char store2[320];

	f->cfg.listen[f->cfg.n_listen++] = strdup(f->sock);
	start(f);
	srv_config_init(&c2);
	snprintf(store2, sizeof(store2), "%s/store2", f->tmp);
	c2.model_dir = strdup(model_dir);
	c2.store_dir = strdup(store2);
	c2.threads = 1;
	c2.listen[c2.n_listen++] = strdup(f->sock);
	CDX_ASSERT_OK(srv_config_finish(&c2, &err), err.msg);
	assert_int_equal(srv_start(&c2, &s2, &err), CDX_EBUSY);
	assert_null(s2);
	assert_non_null(strstr(err.msg, f->sock));
	srv_config_free(&c2);
	expect_status_ok(f->sock);
}

/* A daemon that cannot load its model does not start, and says why. */
static void
test_bad_model(void **state)
{
	fixture *f = *state;
	cdx_error err;
	srv *s = NULL;

	free(f->cfg.model_dir);
	f->cfg.model_dir = strdup(f->photos);   /* an empty folder */
	f->cfg.listen[f->cfg.n_listen++] = strdup(f->sock);
	CDX_ASSERT_OK(srv_config_finish(&f->cfg, &err), err.msg);
	assert_int_not_equal(srv_start(&f->cfg, &s, &err), 0);
	assert_null(s);
	assert_true(err.msg[0] != '\0');
}

/* A waiting "add" is answered by the indexing thread, with the counts and
 * the request's tag; srv_handle() waits for it. */
static void
test_add_wait(void **state)
{
	fixture *f = *state;
	char path[400], req[600];
	unsigned long jlen = 0;
	size_t len;
	char *reply;
	int status;

	f->cfg.listen[f->cfg.n_listen++] = strdup("inproc://daemon-server-add");
	for (int i = 0; i < 3; i++) {
		unsigned char *rgb = tu_stripes_rgb(96, 80, (unsigned)i + 1, 24, 16);
		unsigned char *jpeg = tu_jpeg_encode(rgb, 96, 80, 90, &jlen);
		snprintf(path, sizeof(path), "%s/p%d.jpg", f->photos, i);
		assert_int_equal(tu_write_file(path, jpeg, jlen), 0);
		tjFree(jpeg);
		free(rgb);
	}
	start(f);
	snprintf(req, sizeof(req), "{\"op\":\"add\",\"path\":\"%s\","
	    "\"wait\":true,\"tag\":\"mine\"}", f->photos);
	srv_handle(f->s, req, strlen(req), SRV_ORIGIN_LOCAL, &reply, &len,
	    &status);
	assert_int_equal(status, 200);
	cJSON *r = cJSON_Parse(reply);
	free(reply);
	assert_non_null(r);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(r, "ok")));
	assert_int_equal(cJSON_GetObjectItem(r, "added")->valueint, 3);
	assert_string_equal(cJSON_GetObjectItem(r, "tag")->valuestring, "mine");
	cJSON_Delete(r);
	/* the folder became a root: its files may be named by path */
	snprintf(req, sizeof(req), "{\"op\":\"search\",\"path\":\"%s/p1.jpg\","
	    "\"k\":1}", f->photos);
	srv_handle(f->s, req, strlen(req), SRV_ORIGIN_LOOPBACK, &reply, &len,
	    &status);
	if (status != 200)
		fail_msg("%s", reply);
	free(reply);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_listeners, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_cap, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_default_url, setup, teardown),
		cmocka_unit_test_setup_teardown(test_address_in_use, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_bad_model, setup, teardown),
		cmocka_unit_test_setup_teardown(test_add_wait, setup, teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
