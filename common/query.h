/*
 * query.h - the query syntax of the command line and the web page, the one
 * definition of it (docs/CLI.md):
 *
 *   QUERY := TERM { (" + " | " - ") TERM }
 *   TERM  := [WEIGHT ":"] SOURCE
 *   SOURCE:= "img:" FILE | "@" FILE | "path:" PATH | "id:" DIGITS |
 *            "learned:" NAME | TEXT
 *
 * "beach - 0.7:people + 0.5:@example.jpg": terms are separated by " + " or
 * " - " (a space on each side; " - " negates the next term); leading and
 * trailing spaces of a term are dropped.  `img:FILE` and `@FILE` name a
 * local file (CDX_TERM_FILE), `path:PATH` a file on the daemon's machine
 * (CDX_TERM_PATH), `id:N` an indexed image (CDX_TERM_ID), `learned:NAME` a
 * classifier made by the `learn` operation (CDX_TERM_LEARNED: the daemon
 * checks the name); anything else is text.
 *
 * libclipdex exports the parser as cdx_query_parse() (client/clipdex.h),
 * which keeps its message for cdx_client_errmsg(NULL); the daemon can link
 * this file alone.
 *
 * Thread-safety: no shared state; thread-safe.
 */
#ifndef CDX_QUERY_H
#define CDX_QUERY_H

#include <stddef.h>
#include <stdint.h>

#include "common/cdx.h"

/* client/clipdex.h (installed, self-contained) repeats these types under
 * the same guard; tests/client_header.sh checks the two copies agree. */
#ifndef CDX_TERMS_DEFINED
#define CDX_TERMS_DEFINED
enum cdx_term_kind {
	CDX_TERM_TEXT = 0,   /* text: UTF-8 */
	CDX_TERM_IMAGE = 1,  /* data/len: JPEG or PNG bytes (uploaded) */
	CDX_TERM_PATH = 2,   /* text: a path on the daemon's machine */
	CDX_TERM_ID = 3,     /* id: an indexed image */
	CDX_TERM_FILE = 4,   /* text: a local file, read by the library when
	                        the request is made and uploaded as IMAGE */
	CDX_TERM_LEARNED = 5, /* text: the name of a learned classifier; its
	                        direction w/|w| (docs/PROTOCOL.md, learn) */
};

typedef struct cdx_term {
	int kind;            /* enum cdx_term_kind */
	const char *text;
	const void *data;
	size_t len;
	uint64_t id;
	float weight;        /* may be negative; 0 is treated as 1 */
} cdx_term;

typedef struct cdx_terms {
	size_t n;
	cdx_term *terms;     /* n terms; their strings live in the same block */
} cdx_terms;
#endif

/* Parses query into *out: one allocation, owned by the caller, freed with
 * cdx_terms_free().  On failure *out is untouched.  Errors: CDX_EINVAL
 * (syntax: an empty term, a weight of 0 or out of +-1e6, a bad id, a
 * `learned:` without a name; err->msg
 * says what, for people), CDX_ENOMEM. */
int cdx_query_syntax_parse(const char *query, cdx_terms **out,
    cdx_error *err);

/* Frees a parsed query; NULL is a no-op. */
void cdx_terms_free(cdx_terms *t);

#endif
