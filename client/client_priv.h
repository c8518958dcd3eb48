/*
 * client_priv.h - libclipdex internals shared by the client .c files and tested by
 * tests/client_*.c.  Not installed.  Private names start with cdxi_.
 */
#ifndef CDX_CLIENT_PRIV_H
#define CDX_CLIENT_PRIV_H

#include <stddef.h>

#include "client/clipdex.h"

/* Not exported from libclipdex.so. */
#pragma GCC visibility push(hidden)

/* Length of the standard (RFC 4648, padded) base64 encoding of n bytes, not
 * counting a terminating NUL; (size_t)-1 if it would overflow size_t. */
size_t cdxi_base64_len(size_t n);

/* Writes the base64 encoding of src[0..n) and a NUL into dst, which must
 * hold cdxi_base64_len(n) + 1 bytes.  Returns the length written. */
size_t cdxi_base64_encode(const void *src, size_t n, char *dst);

/* Sets the calling thread's message for client c (NULL: for open/parse),
 * returns code. */
int cdxi_fail(const cdx_client *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#pragma GCC visibility pop
#endif
