/*
 * The protocol's error codes, round trip: for every code of the table in
 * common/proto.h that a request can provoke, a request to a real clipdexd
 * (through libclipdex's cdx_request and cdx_call) gets that wire name, and
 * the CDX_E* code libclipdex returns is the table's.  internal (a bug) and
 * busy (a full queue or a shutdown) cannot be provoked on demand and are
 * listed as such: a code added to the table without a case here fails.
 *
 * The daemon runs once for the suite (a read-only group fixture: no test
 * changes its state), with a token and, when this machine has a
 * non-loopback IPv4 address, a TCP listener on it where the token is
 * required.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/client_run.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/clipdex.h"
#include "common/cdx.h"
#include "common/proto.h"
#include "tests/testutil.h"

#define TOKEN "round-trip-token"

static char tmp[256], model_dir[300], photos[300], store_dir[300], url[320];
static char logpath[300], bindir[256], tcp_url[128], outside[400];
static pid_t daemon_pid;
static cdx_client *cli;

/* A non-loopback IPv4 address of this machine ("" if none). */
static void
remote_address(char *out, size_t len)
{
	struct ifaddrs *ifs, *i;
	out[0] = '\0';
	if (getifaddrs(&ifs) != 0)
		return;
	for (i = ifs; i != NULL && out[0] == '\0'; i = i->ifa_next) {
		if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET ||
		    !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK))
			continue;
		inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr,
		    out, (socklen_t)len);
	}
	freeifaddrs(ifs);
}

static int
setup(void **state)
{
	char addr[64], extra[512];
	(void)state;
	if (tu_lsan_nng() != 0)
		return -1;
	tu_bin_dir(bindir, sizeof(bindir));
	if (tu_suite_dirs("cdx-errors", "model", tmp, model_dir, photos,
	    store_dir, url, logpath) != 0)
		return -1;
	tm_recipe r;
	tm_recipe_tiny(&r);
	mkdir(model_dir, 0755);
	if (tm_write_model(&r, model_dir) != 0 || mkdir(photos, 0755) != 0)
		return -1;
	/* A file outside the daemon's root. */
	snprintf(outside, sizeof(outside), "%s/outside.jpg", tmp);
	tu_write_stripes_jpeg(outside, 32, 32, 1);
	remote_address(addr, sizeof(addr));
	snprintf(extra, sizeof(extra), "--token %s", TOKEN);
	if (addr[0] != '\0') {
		snprintf(tcp_url, sizeof(tcp_url), "tcp://%s:%d", addr,
		    20000 + (getpid() + 7919) % 20000);
		snprintf(extra, sizeof(extra), "--token %s --listen %s", TOKEN,
		    tcp_url);
	}
	if (cdx_client_open(url, &cli) != 0)
		return -1;
	cdx_client_set_timeout(cli, 20000);
	tu_daemon d = { bindir, model_dir, store_dir, url, photos, logpath, 0 };
	daemon_pid = tu_daemon_up(&d, extra, cli);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	tu_suite_end(&daemon_pid, cli, tmp);
	return 0;
}

/* Sends json on c: the raw reply names `code`, and cdx_call returns the
 * table's CDX_E* code for it with the daemon's message. */
static void
round_trip(cdx_client *c, const char *json, enum cdx_proto_code code)
{
	const cdx_proto_err *want = cdx_proto_err_get(code);
	char *reply = NULL;

	CDX_ASSERT_OK(cdx_request(c, json, &reply), cdx_client_errmsg(c));
	cJSON *j = cJSON_Parse(reply);
	const char *got = cJSON_GetStringValue(cJSON_GetObjectItem(
	    cJSON_GetObjectItem(j, "error"), "code"));
	if (got == NULL || strcmp(got, want->name) != 0)
		fail_msg("%.80s: expected %s, got %s", json, want->name, reply);
	cJSON_Delete(j);
	free(reply);

	reply = NULL;
	int rc = cdx_call(c, json, &reply);
	if (rc != want->cdx)
		fail_msg("%.80s: %s should be %d (%s), libclipdex returned %d (%s)",
		    json, want->name, want->cdx, cdx_strerror(want->cdx), rc,
		    cdx_strerror(rc));
	assert_null(reply);
	assert_true(cdx_client_errmsg(c)[0] != '\0');
}

/* Every code a request can provoke over the local socket. */
static void
test_codes_over_ipc(void **state)
{
	char req[600];
	(void)state;
	round_trip(cli, "this is not json", CDX_PROTO_BAD_JSON);
	round_trip(cli, "{\"op\":42}", CDX_PROTO_BAD_REQUEST);
	round_trip(cli, "{\"op\":\"fly\"}", CDX_PROTO_UNKNOWN_OP);
	round_trip(cli, "{\"op\":\"status\",\"v\":2}",
	    CDX_PROTO_UNSUPPORTED_VERSION);
	snprintf(req, sizeof(req), "{\"op\":\"search\",\"path\":\"%s\"}", outside);
	round_trip(cli, req, CDX_PROTO_FORBIDDEN);
	round_trip(cli, "{\"op\":\"search\",\"id\":999999}", CDX_PROTO_NOT_FOUND);
	round_trip(cli, "{\"op\":\"search\",\"text\":\"x\",\"k\":1e12}",
	    CDX_PROTO_TOO_LARGE);
	round_trip(cli, "{\"op\":\"search\",\"image\":\"bm90IGFuIGltYWdl\"}",
	    CDX_PROTO_BAD_IMAGE);
}

/* unauthorized: over TCP from a non-loopback address without the token;
 * with it the same request succeeds. */
static void
test_unauthorized_over_tcp(void **state)
{
	cdx_client *c = NULL;
	char *reply = NULL;
	(void)state;
	if (tcp_url[0] == '\0')
		skip();         /* no non-loopback address on this machine */
	CDX_ASSERT_OK(cdx_client_open(tcp_url, &c), cdx_client_errmsg(NULL));
	cdx_client_set_timeout(c, 20000);
	round_trip(c, "{\"op\":\"status\"}", CDX_PROTO_UNAUTHORIZED);
	round_trip(c, "{\"op\":\"status\",\"token\":\"wrong\"}",
	    CDX_PROTO_UNAUTHORIZED);
	CDX_ASSERT_OK(cdx_client_set_token(c, TOKEN), cdx_client_errmsg(c));
	CDX_ASSERT_OK(cdx_call(c, "{\"op\":\"status\"}", &reply),
	    cdx_client_errmsg(c));
	free(reply);
	cdx_client_close(c);
}

/* The cases above cover the table but for the codes that cannot be
 * provoked; a new code needs a case. */
static void
test_every_code_has_a_case(void **state)
{
	static const enum cdx_proto_code covered[] = { CDX_PROTO_BAD_JSON,
		CDX_PROTO_BAD_REQUEST, CDX_PROTO_UNKNOWN_OP,
		CDX_PROTO_UNSUPPORTED_VERSION, CDX_PROTO_UNAUTHORIZED,
		CDX_PROTO_FORBIDDEN, CDX_PROTO_NOT_FOUND, CDX_PROTO_TOO_LARGE,
		CDX_PROTO_BAD_IMAGE };
	static const enum cdx_proto_code not_provokable[] = {
		CDX_PROTO_INTERNAL, CDX_PROTO_BUSY };
	(void)state;
	for (int code = 0; code < CDX_PROTO_NCODES; code++) {
		int n = 0;
		for (size_t i = 0; i < sizeof(covered) / sizeof(covered[0]); i++)
			n += covered[i] == (enum cdx_proto_code)code;
		for (size_t i = 0; i < sizeof(not_provokable) /
		    sizeof(not_provokable[0]); i++)
			n += not_provokable[i] == (enum cdx_proto_code)code;
		if (n != 1)
			fail_msg("%s: no round-trip case",
			    cdx_proto_err_get((enum cdx_proto_code)code)->name);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_codes_over_ipc),
		cmocka_unit_test(test_unauthorized_over_tcp),
		cmocka_unit_test(test_every_code_has_a_case),
	};
	return CLIENT_RUN_TESTS(tests, setup, teardown);
}
