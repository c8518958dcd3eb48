#include "common/cdx.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

const char *
cdx_strerror(int code)
{
	switch (code) {
	case CDX_OK: return "success";
	case CDX_ENOMEM: return "out of memory";
	case CDX_EINVAL: return "invalid argument";
	case CDX_EIO: return "input/output error";
	case CDX_ENOTFOUND: return "not found";
	case CDX_EEXIST: return "already exists";
	case CDX_ECORRUPT: return "data is corrupt";
	case CDX_EFORMAT: return "malformed or unsupported format";
	case CDX_ETOOBIG: return "input exceeds a limit";
	case CDX_EMODEL: return "wrong or mismatched model";
	case CDX_EFULL: return "storage is full";
	case CDX_EBUSY: return "resource is busy";
	case CDX_EPERM: return "permission denied";
	case CDX_EUTF8: return "invalid UTF-8";
	case CDX_EINDEX: return "vector index error";
	case CDX_ESTORE: return "record store error";
	case CDX_ETIMEDOUT: return "timed out";
	case CDX_EPROTO: return "protocol error";
	case CDX_ECLOSED: return "closed";
	case CDX_EINTERNAL: return "internal error";
	}
	return "unknown error";
}

int
cdx_error_set(cdx_error *err, int code, const char *fmt, ...)
{
	if (err != NULL) {
		va_list ap;
		err->code = code;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return code;
}

int
cdx_from_errno(int e)
{
	switch (e) {
	case 0: return CDX_OK;
	case ENOMEM: return CDX_ENOMEM;
	case EINVAL: return CDX_EINVAL;
	case ENOENT: case ENOTDIR: return CDX_ENOTFOUND;
	case EEXIST: return CDX_EEXIST;
	case EACCES: case EPERM: case EROFS: return CDX_EPERM;
	case ENOSPC: case EDQUOT: return CDX_EFULL;
	case EAGAIN: case EBUSY: return CDX_EBUSY;
	case EFBIG: case E2BIG: return CDX_ETOOBIG;
	case ETIMEDOUT: return CDX_ETIMEDOUT;
	}
	return CDX_EIO;
}

static cdx_log_fn log_fn;
static void *log_user;
static int log_max = CDX_LOG_INFO;

void
cdx_log_set(cdx_log_fn fn, void *user, int max_level)
{
	log_fn = fn;
	log_user = user;
	log_max = max_level;
}

void
cdx_log(int level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if (log_fn == NULL || level > log_max)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log_fn(level, line, log_user);
}

static const char *const level_names[] = { "error", "warn", "info", "debug" };

const char *
cdx_log_level_name(int level)
{
	if (level < 0 || level > CDX_LOG_DEBUG)
		return "?";
	return level_names[level];
}

int
cdx_log_level_parse(const char *name)
{
	for (int i = 0; i <= CDX_LOG_DEBUG; i++)
		if (strcasecmp(name, level_names[i]) == 0)
			return i;
	return -1;
}
