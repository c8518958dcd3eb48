/* Tests of the query syntax parser, cdx_query_parse() (client/query.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/client_run.h"

#include <string.h>

#include "client/clipdex.h"

static cdx_terms *
parse_ok(const char *q, size_t n)
{
	cdx_terms *t = NULL;
	int rc = cdx_query_parse(q, &t);
	if (rc != 0)
		fail_msg("'%s': %s", q, cdx_client_errmsg(NULL));
	assert_non_null(t);
	assert_int_equal(t->n, n);
	return t;
}

static void
parse_fails(const char *q, const char *msg_part)
{
	cdx_terms *t = (cdx_terms *)(uintptr_t)1;
	assert_int_equal(cdx_query_parse(q, &t), CDX_EINVAL);
	assert_ptr_equal(t, (cdx_terms *)(uintptr_t)1);   /* untouched */
	if (strstr(cdx_client_errmsg(NULL), msg_part) == NULL)
		fail_msg("'%s': message '%s' lacks '%s'", q, cdx_client_errmsg(NULL),
		    msg_part);
}

static void
assert_term(const cdx_term *t, int kind, const char *text, float weight)
{
	assert_int_equal(t->kind, kind);
	if (text != NULL)
		assert_string_equal(t->text, text);
	assert_float_equal(t->weight, weight, 1e-6);
}

static void
test_single_text(void **state)
{
	(void)state;
	cdx_terms *t = parse_ok("  a dog on the beach ", 1);
	assert_term(&t->terms[0], CDX_TERM_TEXT, "a dog on the beach", 1.0f);
	cdx_terms_free(t);
}

static void
test_minus_and_plus_with_weights(void **state)
{
	(void)state;
	cdx_terms *t = parse_ok("beach - 0.7:people + 0.5:@example.jpg", 3);
	assert_term(&t->terms[0], CDX_TERM_TEXT, "beach", 1.0f);
	assert_term(&t->terms[1], CDX_TERM_TEXT, "people", -0.7f);
	assert_term(&t->terms[2], CDX_TERM_FILE, "example.jpg", 0.5f);
	cdx_terms_free(t);

	t = parse_ok("beach - people", 2);
	assert_term(&t->terms[1], CDX_TERM_TEXT, "people", -1.0f);
	cdx_terms_free(t);

	/* A negative weight after " - " flips back. */
	t = parse_ok("a - -2:b", 2);
	assert_term(&t->terms[1], CDX_TERM_TEXT, "b", 2.0f);
	cdx_terms_free(t);
}

static void
test_sources(void **state)
{
	(void)state;
	cdx_terms *t = parse_ok("img:/x/a b.png + id:42 + path:/photos/c.jpg + "
	    "2:@rel.jpg + .5:id:18446744073709551615", 5);
	assert_term(&t->terms[0], CDX_TERM_FILE, "/x/a b.png", 1.0f);
	assert_term(&t->terms[1], CDX_TERM_ID, NULL, 1.0f);
	assert_true(t->terms[1].id == 42);
	assert_term(&t->terms[2], CDX_TERM_PATH, "/photos/c.jpg", 1.0f);
	assert_term(&t->terms[3], CDX_TERM_FILE, "rel.jpg", 2.0f);
	assert_term(&t->terms[4], CDX_TERM_ID, NULL, 0.5f);
	assert_true(t->terms[4].id == UINT64_MAX);
	cdx_terms_free(t);
}

static void
test_signs_need_spaces(void **state)
{
	(void)state;
	/* Hyphens and plus signs inside words are text. */
	cdx_terms *t = parse_ok("spider-man +1 c++ -x a -b", 1);
	assert_term(&t->terms[0], CDX_TERM_TEXT, "spider-man +1 c++ -x a -b", 1.0f);
	cdx_terms_free(t);
	/* Extra spaces around a sign are fine. */
	t = parse_ok("sunset   -   clouds", 2);
	assert_term(&t->terms[0], CDX_TERM_TEXT, "sunset", 1.0f);
	assert_term(&t->terms[1], CDX_TERM_TEXT, "clouds", -1.0f);
	cdx_terms_free(t);
	/* A leading sign applies to the first term. */
	/* The query is trimmed first: a trailing sign is text. */
	t = parse_ok("a + ", 1);
	assert_term(&t->terms[0], CDX_TERM_TEXT, "a +", 1.0f);
	cdx_terms_free(t);
	t = parse_ok("- people + beach", 2);
	assert_term(&t->terms[0], CDX_TERM_TEXT, "people", -1.0f);
	assert_term(&t->terms[1], CDX_TERM_TEXT, "beach", 1.0f);
	cdx_terms_free(t);
}

static void
test_weights_only_when_numeric(void **state)
{
	(void)state;
	cdx_terms *t = parse_ok("note: a dog + 1e3:x + inf:y + 3:  spaced ", 4);
	assert_term(&t->terms[0], CDX_TERM_TEXT, "note: a dog", 1.0f);
	assert_term(&t->terms[1], CDX_TERM_TEXT, "1e3:x", 1.0f);
	assert_term(&t->terms[2], CDX_TERM_TEXT, "inf:y", 1.0f);
	assert_term(&t->terms[3], CDX_TERM_TEXT, "spaced", 3.0f);
	cdx_terms_free(t);
	/* "1:" protects a text that starts with a number and a colon. */
	t = parse_ok("1:10:30 meeting", 1);
	assert_term(&t->terms[0], CDX_TERM_TEXT, "10:30 meeting", 1.0f);
	cdx_terms_free(t);
}

/* learned:NAME (a classifier made by learn) combines with text, takes a
 * weight and a sign; the name's own rule is the daemon's. */
static void
test_learned(void **state)
{
	(void)state;
	cdx_terms *t = parse_ok("beach + learned:red_things", 2);
	assert_term(&t->terms[0], CDX_TERM_TEXT, "beach", 1.0f);
	assert_term(&t->terms[1], CDX_TERM_LEARNED, "red_things", 1.0f);
	cdx_terms_free(t);
	t = parse_ok("learned:a.b - 0.5:learned:c-d + 2:learned:e", 3);
	assert_term(&t->terms[0], CDX_TERM_LEARNED, "a.b", 1.0f);
	assert_term(&t->terms[1], CDX_TERM_LEARNED, "c-d", -0.5f);
	assert_term(&t->terms[2], CDX_TERM_LEARNED, "e", 2.0f);
	cdx_terms_free(t);
	/* only as a term's start: inside a text it is text */
	t = parse_ok("what I learned:x", 1);
	assert_term(&t->terms[0], CDX_TERM_TEXT, "what I learned:x", 1.0f);
	cdx_terms_free(t);
	parse_fails("learned:", "names no classifier");
	parse_fails("beach - learned:", "names no classifier");
	parse_fails("0:learned:x", "weight of 0");
}

static void
test_errors(void **state)
{
	(void)state;
	parse_fails("", "empty");
	parse_fails("   ", "empty");
	parse_fails("a - - b", "empty term");
	parse_fails("a +  + b", "empty term");
	parse_fails("0:x", "weight of 0");
	parse_fails("a - 0.0:b", "weight of 0");
	/* found by query_fuzz: not 0 as a double, 0 as the term's float */
	parse_fails("a + .0000000000000000000000000000000000000000000000001:b",
	    "weight of 0");
	parse_fails("2:", "");
	parse_fails("5555555555555555555555555555555555555555555555555550.7:x",
	    "out of range");
	parse_fails("1000000.5:x", "out of range");
	parse_fails("id:", "not an image id");
	parse_fails("id:12x", "not an image id");
	parse_fails("id:-1", "not an image id");
	parse_fails("id:18446744073709551616", "not an image id");
	parse_fails("@", "names no file");
	parse_fails("x + img:", "names no file");
	assert_int_equal(cdx_query_parse(NULL, NULL), CDX_EINVAL);
	cdx_terms_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_text),
		cmocka_unit_test(test_minus_and_plus_with_weights),
		cmocka_unit_test(test_sources),
		cmocka_unit_test(test_signs_need_spaces),
		cmocka_unit_test(test_weights_only_when_numeric),
		cmocka_unit_test(test_learned),
		cmocka_unit_test(test_errors),
	};
	return CLIENT_RUN_TESTS(tests, NULL, NULL);
}
