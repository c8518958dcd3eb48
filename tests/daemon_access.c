/* daemon/access.c: the loopback rule, the token rule and the browser
 * guard, each a table of cases.  Where the daemon's earlier copies
 * disagreed, the strictest answer is the expected one (see access.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "daemon/access.h"

static void
test_loopback(void **state)
{
	static const struct { const char *hostport; int want; } cases[] = {
		{ "127.0.0.1:8080", 1 },
		{ "127.0.0.1", 1 },
		{ "127.1.2.3:1", 1 },
		{ "localhost:8080", 1 },
		{ "localhost", 1 },
		{ "[::1]:8080", 1 },
		{ "[::1]", 1 },
		{ "127.255.255.255:65535", 1 },
		{ "[0:0:0:0:0:0:0:1]:80", 1 },
		/* "localhost" in any case (issue 14) */
		{ "LOCALHOST:8080", 1 },
		{ "Localhost", 1 },
		{ "[::1]x:80", 0 },
		/* never loopback */
		{ "localhost.evil.example:80", 0 },
		{ "localhostx:80", 0 },
		{ "localhost.:80", 0 },
		{ "0.0.0.0:8080", 0 },
		{ "192.168.1.2:8080", 0 },
		{ "128.0.0.1:8080", 0 },
		{ "evil.example:8080", 0 },
		{ "[::]:8080", 0 },
		{ "[::12]:8080", 0 },
		{ "[::ffff:127.0.0.1]:80", 0 },
		{ "[::1", 0 },
		{ "::1", 0 },
		{ "", 0 },
		/* DNS rebinding: names that only start like a loopback address
		 * (issue 14; the "127." prefix rule took them all) */
		{ "127.0.0.1.evil.example", 0 },
		{ "127.0.0.1.evil.example:8080", 0 },
		{ "127.attacker.test:8080", 0 },
		{ "127.foo.lan", 0 },
		{ "127.0.0.1@evil:80", 0 },
		{ "127.0.0.1:8080, evil", 0 },
		{ "127.1", 0 },
		{ "127.0.0.256:80", 0 },
		{ " 127.0.0.1:80", 0 },
		{ "127.0.0.1 :80", 0 },
		/* garbage ports */
		{ "127.0.0.1:", 0 },
		{ "127.0.0.1:abc", 0 },
		{ "127.0.0.1:+80", 0 },
		{ "127.0.0.1:-1", 0 },
		{ "127.0.0.1:80 ", 0 },
		{ "127.0.0.1:80:80", 0 },
		{ "127.0.0.1:65536", 0 },
		{ "127.0.0.1:123456", 0 },
		{ "localhost:8080x", 0 },
		{ "[::1]:", 0 },
		{ "[::1]:8o", 0 },
		{ NULL, 0 },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (access_is_loopback(cases[i].hostport) != cases[i].want)
			fail_msg("access_is_loopback(\"%s\") is not %d",
			    cases[i].hostport ? cases[i].hostport : "(null)",
			    cases[i].want);
}

static void
test_origin_of_url(void **state)
{
	static const struct { const char *url; int want; } cases[] = {
		{ "ipc:///tmp/x.sock", SRV_ORIGIN_LOCAL },
		{ "inproc://x", SRV_ORIGIN_LOCAL },
		{ "tcp://127.0.0.1:5555", SRV_ORIGIN_LOOPBACK },
		{ "tcp://localhost:5555", SRV_ORIGIN_LOOPBACK },
		{ "tcp://[::1]:5555", SRV_ORIGIN_LOOPBACK },
		{ "ws://127.0.0.1:5555/x", SRV_ORIGIN_LOOPBACK },
		{ "127.0.0.1:8080", SRV_ORIGIN_LOOPBACK },      /* --http */
		{ "tcp://0.0.0.0:5555", SRV_ORIGIN_REMOTE },
		{ "tcp://LOCALHOST:5555", SRV_ORIGIN_LOOPBACK },
		{ "tcp://127.foo.lan:5555", SRV_ORIGIN_REMOTE },
		{ "tcp://127.0.0.1.evil.example:5555", SRV_ORIGIN_REMOTE },
		{ "ws://127.0.0.1@evil:80/x", SRV_ORIGIN_REMOTE },
		{ "127.foo.lan:8080", SRV_ORIGIN_REMOTE },      /* --http */
		{ "127.0.0.1:8080/x", SRV_ORIGIN_REMOTE },      /* --http */
		{ "tcp://:5555", SRV_ORIGIN_REMOTE },
		{ "", SRV_ORIGIN_REMOTE },
		{ "ws://example.org:80/x", SRV_ORIGIN_REMOTE },
		{ "0.0.0.0:8080", SRV_ORIGIN_REMOTE },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (access_origin_of_url(cases[i].url) != cases[i].want)
			fail_msg("access_origin_of_url(\"%s\") is %d, not %d",
			    cases[i].url, access_origin_of_url(cases[i].url),
			    cases[i].want);
	assert_int_equal(access_origin_of_url(NULL), SRV_ORIGIN_REMOTE);
	assert_false(access_token_needed(SRV_ORIGIN_LOCAL, "t"));
	assert_false(access_token_needed(SRV_ORIGIN_LOOPBACK, "t"));
	assert_true(access_token_needed(SRV_ORIGIN_REMOTE, "t"));
	assert_true(access_token_needed(SRV_ORIGIN_REMOTE, NULL));
	/* clipdex.api: the token when the daemon has one */
	assert_true(access_token_needed(SRV_ORIGIN_CLUSTER, "t"));
	assert_false(access_token_needed(SRV_ORIGIN_CLUSTER, NULL));
}

static void
test_token(void **state)
{
	(void)state;
	assert_true(access_token_ok("s3cret", "s3cret"));
	assert_false(access_token_ok("s3cret", "s3cre"));
	assert_false(access_token_ok("s3cret", "s3cretx"));
	assert_false(access_token_ok("s3cret", "S3cret"));
	assert_false(access_token_ok("s3cret", ""));
	assert_false(access_token_ok("s3cret", NULL));
	assert_false(access_token_ok(NULL, "s3cret"));
	assert_false(access_token_ok(NULL, NULL));

	assert_string_equal(access_bearer("Bearer abc"), "abc");
	assert_string_equal(access_bearer("Bearer "), "");
	assert_null(access_bearer("Basic abc"));
	assert_null(access_bearer("bearer abc"));
	assert_null(access_bearer("Bearerabc"));
	assert_null(access_bearer(NULL));
}

/* The browser guard: Host and Origin headers against the daemon's HTTP
 * address, for every request (/api, the page, /thumb, /image). */
static void
test_http_guard(void **state)
{
	static const struct {
		const char *addr, *host, *origin;
		int want;
	} cases[] = {
		/* a loopback daemon: its own page, and clients without Origin */
		{ "127.0.0.1:8080", "127.0.0.1:8080", NULL, 1 },
		{ "127.0.0.1:8080", "localhost:8080", NULL, 1 },
		{ "127.0.0.1:8080", "localhost", NULL, 1 },
		{ "127.0.0.1:8080", "[::1]:8080", NULL, 1 },
		{ "127.0.0.1:8080", "127.0.0.1:8080", "http://127.0.0.1:8080", 1 },
		{ "127.0.0.1:8080", "localhost:8080", "http://LOCALHOST:8080", 1 },
		{ "localhost:8080", "localhost:8080", "http://localhost:8080", 1 },
		/* DNS rebinding: a foreign Host on a loopback address */
		{ "127.0.0.1:8080", "evil.example:8080", NULL, 0 },
		{ "127.0.0.1:8080", "evil.example:8080", "http://evil.example:8080",
		    0 },
		{ "127.0.0.1:8080", "LOCALHOST:8080", NULL, 1 },
		{ "127.0.0.1:8080", "127.0.0.1.evil.example:8080", NULL, 0 },
		{ "127.0.0.1:8080", "127.0.0.1.evil.example:8080",
		    "http://127.0.0.1.evil.example:8080", 0 },
		{ "127.0.0.1:8080", "127.attacker.test:8080",
		    "http://127.attacker.test:8080", 0 },
		{ "127.0.0.1:8080", "127.0.0.1@evil:8080", NULL, 0 },
		{ "127.0.0.1:8080", "127.0.0.1:8080, evil", NULL, 0 },
		{ "localhost:8080", "127.0.0.1.evil.example", NULL, 0 },
		{ "[::1]:8080", "127.foo.lan:8080", NULL, 0 },
		{ "127.0.0.1:8080", NULL, NULL, 0 },
		{ "127.0.0.1:8080", "", NULL, 0 },
		/* another site (CSRF): Origin is not this server */
		{ "127.0.0.1:8080", "127.0.0.1:8080", "http://evil.example", 0 },
		{ "127.0.0.1:8080", "127.0.0.1:8080", "null", 0 },
		{ "127.0.0.1:8080", "127.0.0.1:8080", "http://127.0.0.1:1", 0 },
		{ "127.0.0.1:8080", "127.0.0.1:8080", "https://127.0.0.1:8080", 0 },
		{ "127.0.0.1:8080", "127.0.0.1:8080", "", 0 },
		{ "127.0.0.1:8080", NULL, "http://127.0.0.1:8080", 0 },
		/* a public daemon (token): any Host, but Origin must match it */
		{ "0.0.0.0:8080", "photos.example:8080", NULL, 1 },
		{ "0.0.0.0:8080", "photos.example:8080",
		    "http://photos.example:8080", 1 },
		{ "0.0.0.0:8080", "photos.example:8080", "http://evil.example",
		    0 },
		{ "127.foo.lan:8080", "evil.example:8080", NULL, 1 },
		{ "LOCALHOST:8080", "evil.example:8080", NULL, 0 },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (access_http_allowed(cases[i].addr, cases[i].host,
		    cases[i].origin) != cases[i].want)
			fail_msg("case %zu: --http %s, Host %s, Origin %s: not %d",
			    i, cases[i].addr, cases[i].host ? cases[i].host :
			    "(none)", cases[i].origin ? cases[i].origin : "(none)",
			    cases[i].want);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_loopback),
		cmocka_unit_test(test_origin_of_url),
		cmocka_unit_test(test_token),
		cmocka_unit_test(test_http_guard),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
