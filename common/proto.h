/*
 * proto.h - what the daemon and its clients must agree on, written once:
 * the protocol's error codes (docs/PROTOCOL.md) and the default address.
 *
 * Error codes: the daemon names a failure with an enum cdx_proto_code and
 * never with a string literal, so a misspelled code cannot compile; the
 * table gives each code its wire name, its HTTP status and the CDX_E*
 * code libclipdex maps it back to.  A name the table lacks (a newer
 * daemon) maps to CDX_EPROTO on the client side.
 *
 * Everything here is constant or reads only the environment: thread-safe.
 * Part of libclipdex.
 */
#ifndef CDX_PROTO_H
#define CDX_PROTO_H

#include <stddef.h>

enum cdx_proto_code {
	CDX_PROTO_BAD_JSON,            /* 400 the request is not JSON */
	CDX_PROTO_BAD_REQUEST,         /* 400 a field is missing or wrong */
	CDX_PROTO_UNKNOWN_OP,          /* 400 no such "op" */
	CDX_PROTO_UNSUPPORTED_VERSION, /* 400 "v" is not 1 */
	CDX_PROTO_UNAUTHORIZED,        /* 401 token missing or wrong */
	CDX_PROTO_FORBIDDEN,           /* 403 path outside the roots, ... */
	CDX_PROTO_NOT_FOUND,           /* 404 no such id or path */
	CDX_PROTO_TOO_LARGE,           /* 413 a configured limit */
	CDX_PROTO_BAD_IMAGE,           /* 422 not a decodable image */
	CDX_PROTO_INTERNAL,            /* 500 a bug or an unexpected failure */
	CDX_PROTO_BUSY,                /* 503 queue full, shutting down, ... */
	CDX_PROTO_NCODES
};

typedef struct cdx_proto_err {
	enum cdx_proto_code code;
	const char *name;       /* on the wire: "bad_request" */
	int http_status;        /* 400 */
	int cdx;                /* CDX_EINVAL: what a client returns */
} cdx_proto_err;

/* The entry for code (CDX_PROTO_INTERNAL's for an out-of-range value). */
const cdx_proto_err *cdx_proto_err_get(enum cdx_proto_code code);

/* The entry named name, or NULL for a name not in the table. */
const cdx_proto_err *cdx_proto_err_by_name(const char *name);

/* The code a daemon replies with when an operation failed with the
 * CDX_E* code cdx (CDX_EINVAL -> bad_request, CDX_ENOTFOUND -> not_found,
 * anything unexpected -> internal). */
enum cdx_proto_code cdx_proto_code_of(int cdx);

/* The address clients dial and the daemon listens on when none is given:
 * $CLIPDEX_URL if set and not empty, else ipc://$XDG_RUNTIME_DIR/
 * clipdex.sock when XDG_RUNTIME_DIR is an absolute path, else
 * ipc:///tmp/clipdex-<uid>.sock.  Writes it into buf (len bytes, at
 * least 64) and returns buf; a value too long for buf falls through to
 * the next rule. */
const char *cdx_proto_default_url(char *buf, size_t len);

#endif
