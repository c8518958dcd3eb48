/* Tests of the client's base64 encoder (client/base64.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/client_run.h"

#include <stdlib.h>
#include <string.h>

#include "client/client_priv.h"

static void
check(const char *in, size_t n, const char *want)
{
	char out[64];
	assert_int_equal(cdxi_base64_len(n), strlen(want));
	assert_int_equal(cdxi_base64_encode(in, n, out), strlen(want));
	assert_string_equal(out, want);
}

/* RFC 4648, section 10. */
static void
test_rfc4648_vectors(void **state)
{
	(void)state;
	check("", 0, "");
	check("f", 1, "Zg==");
	check("fo", 2, "Zm8=");
	check("foo", 3, "Zm9v");
	check("foob", 4, "Zm9vYg==");
	check("fooba", 5, "Zm9vYmE=");
	check("foobar", 6, "Zm9vYmFy");
}

/* An independent reference: emit the input bit by bit, six at a time. */
static void
reference_encode(const unsigned char *in, size_t n, char *out)
{
	static const char *abc =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t bits = n * 8, o = 0;
	for (size_t b = 0; b < bits; b += 6) {
		int v = 0;
		for (int j = 0; j < 6; j++) {
			size_t bit = b + (size_t)j;
			int x = bit < bits ? (in[bit / 8] >> (7 - bit % 8)) & 1 : 0;
			v = v << 1 | x;
		}
		out[o++] = abc[v];
	}
	while (o % 4)
		out[o++] = '=';
	out[o] = '\0';
}

static void
test_matches_bitwise_reference(void **state)
{
	unsigned char in[300];
	char got[512], want[512];
	uint32_t x = 12345;
	(void)state;
	for (size_t n = 0; n <= sizeof(in); n++) {
		for (size_t i = 0; i < n; i++) {
			x = x * 1664525u + 1013904223u;
			in[i] = (unsigned char)(n < 256 && i < 256 ? (i * 7 + n) : x >> 24);
		}
		reference_encode(in, n, want);
		assert_int_equal(cdxi_base64_encode(in, n, got), strlen(want));
		assert_string_equal(got, want);
		assert_int_equal(cdxi_base64_len(n), strlen(want));
	}
}

static void
test_every_byte_value_and_big_input(void **state)
{
	size_t n = 3 * 1000 * 1000 + 1;
	unsigned char *in = malloc(n);
	char *got, *want;
	(void)state;
	assert_non_null(in);
	for (size_t i = 0; i < n; i++)
		in[i] = (unsigned char)(i * 131 + (i >> 8));
	got = malloc(cdxi_base64_len(n) + 1);
	want = malloc(cdxi_base64_len(n) + 1);
	assert_non_null(got);
	assert_non_null(want);
	reference_encode(in, n, want);
	assert_int_equal(cdxi_base64_encode(in, n, got), 4000004);
	assert_memory_equal(got, want, 4000005);
	free(in);
	free(got);
	free(want);
}

static void
test_length_overflow(void **state)
{
	(void)state;
	assert_int_equal(cdxi_base64_len(SIZE_MAX), (size_t)-1);
	assert_int_equal(cdxi_base64_len(SIZE_MAX / 4 * 3 - 3), SIZE_MAX / 4 * 4 - 4);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc4648_vectors),
		cmocka_unit_test(test_matches_bitwise_reference),
		cmocka_unit_test(test_every_byte_value_and_big_input),
		cmocka_unit_test(test_length_overflow),
	};
	return CLIENT_RUN_TESTS(tests, NULL, NULL);
}
