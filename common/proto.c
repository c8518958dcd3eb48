#include "common/proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cdx.h"

static const cdx_proto_err table[CDX_PROTO_NCODES] = {
	{ CDX_PROTO_BAD_JSON, "bad_json", 400, CDX_EPROTO },
	{ CDX_PROTO_BAD_REQUEST, "bad_request", 400, CDX_EINVAL },
	{ CDX_PROTO_UNKNOWN_OP, "unknown_op", 400, CDX_EPROTO },
	{ CDX_PROTO_UNSUPPORTED_VERSION, "unsupported_version", 400, CDX_EPROTO },
	{ CDX_PROTO_UNAUTHORIZED, "unauthorized", 401, CDX_EPERM },
	{ CDX_PROTO_FORBIDDEN, "forbidden", 403, CDX_EPERM },
	{ CDX_PROTO_NOT_FOUND, "not_found", 404, CDX_ENOTFOUND },
	{ CDX_PROTO_TOO_LARGE, "too_large", 413, CDX_ETOOBIG },
	{ CDX_PROTO_BAD_IMAGE, "bad_image", 422, CDX_EFORMAT },
	{ CDX_PROTO_INTERNAL, "internal", 500, CDX_EINTERNAL },
	{ CDX_PROTO_BUSY, "busy", 503, CDX_EBUSY },
};

const cdx_proto_err *
cdx_proto_err_get(enum cdx_proto_code code)
{
	if ((unsigned)code >= CDX_PROTO_NCODES)
		code = CDX_PROTO_INTERNAL;
	return &table[code];
}

const cdx_proto_err *
cdx_proto_err_by_name(const char *name)
{
	for (int i = 0; name != NULL && i < CDX_PROTO_NCODES; i++)
		if (strcmp(table[i].name, name) == 0)
			return &table[i];
	return NULL;
}

enum cdx_proto_code
cdx_proto_code_of(int cdx)
{
	switch (cdx) {
	case CDX_EINVAL: case CDX_EUTF8: return CDX_PROTO_BAD_REQUEST;
	case CDX_ENOTFOUND: return CDX_PROTO_NOT_FOUND;
	case CDX_EPERM: return CDX_PROTO_FORBIDDEN;
	case CDX_ETOOBIG: return CDX_PROTO_TOO_LARGE;
	case CDX_EFORMAT: return CDX_PROTO_BAD_IMAGE;
	case CDX_EBUSY: return CDX_PROTO_BUSY;
	}
	return CDX_PROTO_INTERNAL;
}

const char *
cdx_proto_default_url(char *buf, size_t len)
{
	const char *env = getenv("CLIPDEX_URL");
	const char *rt = getenv("XDG_RUNTIME_DIR");

	if (env != NULL && env[0] != '\0' && strlen(env) < len) {
		memcpy(buf, env, strlen(env) + 1);
		return buf;
	}
	if (rt != NULL && rt[0] == '/' &&
	    (size_t)snprintf(buf, len, "ipc://%s/clipdex.sock", rt) < len)
		return buf;
	snprintf(buf, len, "ipc:///tmp/clipdex-%u.sock", (unsigned)getuid());
	return buf;
}
