/* clipdexd's settings: flags, config file, checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "tests/cdx_assert.h"
#include "encoder/clip.h"

static int
parse(srv_config *c, cdx_error *err, ...)
{
	char *argv[32] = { "clipdexd" };
	int argc = 1;
	va_list ap;
	va_start(ap, err);
	for (char *a; (a = va_arg(ap, char *)) != NULL;)
		argv[argc++] = a;
	va_end(ap);
	srv_config_init(c);
	int rc = srv_config_parse_args(c, argc, argv, err);
	if (rc == 0)
		rc = srv_config_finish(c, err);
	return rc;
}

static void
test_defaults_and_flags(void **state)
{
	srv_config c;
	cdx_error err;
	(void)state;

	CDX_ASSERT_OK(parse(&c, &err, "--model", "/m", "--store", "/s", NULL),
	    err.msg);
	assert_string_equal(c.model_dir, "/m");
	assert_int_equal(c.workers, 2);
	assert_int_equal(c.precision, CLIP_PRECISION_AUTO);
	assert_int_equal(c.n_listen, 0);
	assert_int_equal(c.max_request_bytes, (size_t)32 << 20);
	srv_config_free(&c);

	CDX_ASSERT_OK(parse(&c, &err, "--model=/m", "--store", "/s",
	    "--listen", "ipc:///tmp/a.sock", "--listen", "tcp://127.0.0.1:9",
	    "--root", "/tmp/", "--threads", "3", "--log-level", "debug",
	    "--reembed", "--max-pixels", "1000", "--precision", "int8", NULL),
	    err.msg);
	assert_int_equal(c.precision, CLIP_PRECISION_INT8);
	assert_int_equal(c.n_listen, 2);
	assert_string_equal(c.roots[0], "/tmp");       /* canonical */
	assert_int_equal(c.threads, 3);
	assert_int_equal(c.log_level, CDX_LOG_DEBUG);
	assert_int_equal(c.reembed, 1);
	assert_int_equal(c.max_pixels, 1000);
	srv_config_free(&c);
}

static void
test_errors_are_clear(void **state)
{
	srv_config c;
	cdx_error err;
	(void)state;

	assert_int_equal(parse(&c, &err, "--store", "/s", NULL), CDX_EINVAL);
	assert_non_null(strstr(err.msg, "--model"));
	srv_config_free(&c);
	assert_int_equal(parse(&c, &err, "--model", "/m", "--store", "/s",
	    "--threads", "zero", NULL), CDX_EINVAL);
	assert_non_null(strstr(err.msg, "threads"));
	srv_config_free(&c);
	assert_int_equal(parse(&c, &err, "--model", "/m", "--store", "/s",
	    "--precision", "fp16", NULL), CDX_EINVAL);
	assert_non_null(strstr(err.msg, "precision"));
	srv_config_free(&c);
	/* the indexer's own bound (WATCH_VIDEO_MAX_FRAMES), refused at parse
	 * time rather than when the indexer starts */
	assert_int_equal(parse(&c, &err, "--model", "/m", "--store", "/s",
	    "--video-frames", "257", NULL), CDX_EINVAL);
	assert_non_null(strstr(err.msg, "video-frames"));
	srv_config_free(&c);
	CDX_ASSERT_OK(parse(&c, &err, "--model", "/m", "--store", "/s",
	    "--video-frames", "256", NULL), err.msg);
	srv_config_free(&c);
	assert_int_equal(parse(&c, &err, "--model", "/m", "--colour", "red",
	    NULL), CDX_EINVAL);
	assert_non_null(strstr(err.msg, "colour"));
	srv_config_free(&c);
	assert_int_equal(parse(&c, &err, "--model", "/m", "--store", "/s",
	    "--root", "/no/such/folder", NULL), CDX_ENOTFOUND);
	srv_config_free(&c);
	/* Non-loopback listeners need a token. */
	unsetenv("CLIPDEX_TOKEN");
	assert_int_equal(parse(&c, &err, "--model", "/m", "--store", "/s",
	    "--listen", "tcp://0.0.0.0:7000", NULL), CDX_EINVAL);
	assert_non_null(strstr(err.msg, "--token"));
	srv_config_free(&c);
	/* ... whatever the transport, by the one loopback rule
	 * (daemon/access.h): a host that only starts like 127.x is not
	 * loopback, "LOCALHOST" is */
	assert_int_equal(parse(&c, &err, "--model", "/m", "--store", "/s",
	    "--listen", "ws://0.0.0.0:7000/x", NULL), CDX_EINVAL);
	assert_non_null(strstr(err.msg, "--token"));
	srv_config_free(&c);
	static const char *const not_loopback[] = { "127.foo.lan:7000",
	    "127.0.0.1.evil.example:7000", "127.attacker.test:7000",
	    "127.0.0.1@evil:7000", "127.0.0.1:7000, evil", "127.1:7000",
	    "127.0.0.1:70000", "127.0.0.1:", "" };
	for (size_t i = 0; i < sizeof(not_loopback) / sizeof(not_loopback[0]);
	    i++) {
		char url[64];
		if (parse(&c, &err, "--model", "/m", "--store", "/s", "--http",
		    not_loopback[i], NULL) != CDX_EINVAL ||
		    strstr(err.msg, "--token") == NULL)
			fail_msg("--http %s ran without a token", not_loopback[i]);
		srv_config_free(&c);
		snprintf(url, sizeof(url), "tcp://%s", not_loopback[i]);
		if (parse(&c, &err, "--model", "/m", "--store", "/s", "--listen",
		    url, NULL) != CDX_EINVAL || strstr(err.msg, "--token") == NULL)
			fail_msg("--listen %s ran without a token", url);
		srv_config_free(&c);
	}
	CDX_ASSERT_OK(parse(&c, &err, "--model", "/m", "--store", "/s",
	    "--http", "LOCALHOST:7000", "--listen", "tcp://LocalHost:7001",
	    "--listen", "tcp://127.1.2.3:7002", NULL), err.msg);
	srv_config_free(&c);
	CDX_ASSERT_OK(parse(&c, &err, "--model", "/m", "--store", "/s",
	    "--http", "localhost:7000", "--listen", "tcp://[::1]:7001",
	    "--listen", "ipc:///tmp/x.sock", NULL), err.msg);
	srv_config_free(&c);
	CDX_ASSERT_OK(parse(&c, &err, "--model", "/m", "--store", "/s",
	    "--http", "0.0.0.0:7000", "--token", "s3cret", NULL),
	    err.msg);
	srv_config_free(&c);
	setenv("CLIPDEX_TOKEN", "fromenv", 1);
	CDX_ASSERT_OK(parse(&c, &err, "--model", "/m", "--store", "/s",
	    "--http", "0.0.0.0:7000", NULL),
	    err.msg);
	assert_string_equal(c.token, "fromenv");
	unsetenv("CLIPDEX_TOKEN");
	srv_config_free(&c);
	/* --help */
	srv_config_init(&c);
	char *argv[] = { "clipdexd", "--help", NULL };
	assert_int_equal(srv_config_parse_args(&c, 2, argv, &err), 1);
	assert_non_null(strstr(srv_config_help(), "--config FILE"));
	srv_config_free(&c);
}

/* The cluster's flags: --shard and --worker need --nats, are two
 * processes, and a worker needs no store. */
static void
test_cluster_flags(void **state)
{
	srv_config c;
	cdx_error err;
	(void)state;

	assert_int_equal(parse(&c, &err, "--model", "/m", "--store", "/s",
	    "--shard", "s1", NULL), CDX_EINVAL);
	assert_non_null(strstr(err.msg, "--nats"));
	srv_config_free(&c);
	assert_int_equal(parse(&c, &err, "--model", "/m", "--worker", NULL),
	    CDX_EINVAL);
	assert_non_null(strstr(err.msg, "--nats"));
	srv_config_free(&c);
	assert_int_equal(parse(&c, &err, "--model", "/m", "--store", "/s",
	    "--nats", "nats://127.0.0.1:4222", "--worker", "--shard", "s1",
	    NULL), CDX_EINVAL);
	assert_non_null(strstr(err.msg, "two processes"));
	srv_config_free(&c);
	assert_int_equal(parse(&c, &err, "--model", "/m", "--nats",
	    "nats://h:4222", "--worker", "--nats-ack-wait", "5", NULL),
	    CDX_EINVAL);
	assert_non_null(strstr(err.msg, "nats-ack-wait"));
	srv_config_free(&c);
	CDX_ASSERT_OK(parse(&c, &err, "--model", "/m", "--nats",
	    "nats://a:4222,nats://b:4222", "--worker", "--nats-replicas", "3",
	    "--nats-ack-wait", "1500", "--nats-timeout", "900", NULL), err.msg);
	assert_int_equal(c.worker, 1);
	assert_null(c.store_dir);
	assert_string_equal(c.nats, "nats://a:4222,nats://b:4222");
	assert_int_equal(c.nats_replicas, 3);
	assert_int_equal(c.nats_ack_wait_ms, 1500);
	assert_int_equal(c.nats_timeout_ms, 900);
	srv_config_free(&c);
	CDX_ASSERT_OK(parse(&c, &err, "--model", "/m", "--store", "/s",
	    "--nats", "nats://a:4222", "--shard", "eu-1", NULL), err.msg);
	assert_string_equal(c.shard, "eu-1");
	assert_int_equal(c.worker, 0);
	srv_config_free(&c);
}

static void
test_config_file_then_flags(void **state)
{
	char path[] = "/tmp/cdx-conf-XXXXXX";
	srv_config c;
	cdx_error err;
	(void)state;

	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *text = "# clipdexd settings\n"
	    "model = /models/clip\n"
	    "store=/var/lib/clipdex   # trailing comment\n"
	    "\n"
	    "root = /tmp\n"
	    "workers = 3\n"
	    "reembed = 1\n";
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	/* flags override the file */
	CDX_ASSERT_OK(parse(&c, &err, "--config", path, "--workers", "5",
	    NULL),
	    err.msg);
	assert_string_equal(c.model_dir, "/models/clip");
	assert_string_equal(c.store_dir, "/var/lib/clipdex");
	assert_int_equal(c.workers, 5);
	assert_int_equal(c.reembed, 1);
	assert_int_equal(c.n_roots, 1);
	srv_config_free(&c);

	FILE *f = fopen(path, "w");
	fputs("model = /m\nthis line has no equals sign\n", f);
	fclose(f);
	assert_int_equal(parse(&c, &err, "--config", path, NULL), CDX_EINVAL);
	assert_non_null(strstr(err.msg, ":2:"));
	srv_config_free(&c);
	assert_int_equal(parse(&c, &err, "--config", "/no/such/file", NULL),
	    CDX_ENOTFOUND);
	srv_config_free(&c);
	unlink(path);
}

static void
test_default_url(void **state)
{
	(void)state;
	setenv("CLIPDEX_URL", "tcp://127.0.0.1:1234", 1);
	assert_string_equal(srv_default_url(), "tcp://127.0.0.1:1234");
	unsetenv("CLIPDEX_URL");
	setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1);
	assert_string_equal(srv_default_url(), "ipc:///run/user/1000/clipdex.sock");
	unsetenv("XDG_RUNTIME_DIR");
	char want[64];
	snprintf(want, sizeof(want), "ipc:///tmp/clipdex-%u.sock",
	    (unsigned)getuid());
	assert_string_equal(srv_default_url(), want);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_and_flags),
		cmocka_unit_test(test_errors_are_clear),
		cmocka_unit_test(test_cluster_flags),
		cmocka_unit_test(test_config_file_then_flags),
		cmocka_unit_test(test_default_url),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
