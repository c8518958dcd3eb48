/*
 * cdx.h - what every clipdex module shares: error codes, error details,
 * logging.
 *
 * Error codes: every fallible function in clipdex returns an int, 0 on
 * success or one of the negative CDX_E* codes below.  Each dependency's
 * own codes (errno, LMDB, FAISS, nng, libjpeg-turbo ...) are translated
 * into these in exactly one place, the module that calls the dependency.
 * cdx_strerror() names any code.
 *
 * Error details: functions whose failures need more than a code (which
 * tensor is missing, which byte of the header is wrong) take an optional
 * `cdx_error *err` as their last argument.  When a function fails and err
 * is not NULL, err->code is the returned code and err->msg a complete,
 * human-readable sentence fragment ("model.safetensors: tensor
 * 'text_model.final_layer_norm.weight' is missing").  On success err is
 * left untouched.  cdx_error is a plain value: no ownership, no cleanup.
 *
 * Logging: library code never prints.  It calls cdx_log(), which hands the
 * line to the callback installed with cdx_log_set() (none by default, so
 * libraries are silent unless a program asks otherwise).
 *
 * Thread-safety: cdx_strerror() and cdx_error_set() are thread-safe.
 * cdx_log_set() must be called before other threads start logging; cdx_log()
 * is thread-safe if the installed callback is.
 */
#ifndef CDX_H
#define CDX_H

#include <stdarg.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* client/clipdex.h (the installed, self-contained client header) repeats
 * this enum under the same guard; tests/client_api.c checks they agree. */
#ifndef CDX_ERR_ENUM_DEFINED
#define CDX_ERR_ENUM_DEFINED
enum cdx_err {
	CDX_OK = 0,
	CDX_ENOMEM = -1,    /* out of memory */
	CDX_EINVAL = -2,    /* invalid argument or request */
	CDX_EIO = -3,       /* read, write or filesystem error */
	CDX_ENOTFOUND = -4, /* no such record, file or key */
	CDX_EEXIST = -5,    /* already exists */
	CDX_ECORRUPT = -6,  /* data failed a consistency check */
	CDX_EFORMAT = -7,   /* malformed or unsupported file format */
	CDX_ETOOBIG = -8,   /* input exceeds a configured limit */
	CDX_EMODEL = -9,    /* wrong or mismatched model */
	CDX_EFULL = -10,    /* storage is full */
	CDX_EBUSY = -11,    /* resource in use (locked by another process) */
	CDX_EPERM = -12,    /* permission denied */
	CDX_EUTF8 = -13,    /* invalid UTF-8 text */
	CDX_EINDEX = -14,   /* vector index (FAISS) failure */
	CDX_ESTORE = -15,   /* record store (LMDB) failure */
	CDX_ETIMEDOUT = -16,/* operation timed out */
	CDX_EPROTO = -17,   /* protocol error */
	CDX_ECLOSED = -18,  /* object or connection closed */
	CDX_EINTERNAL = -19,/* internal error (a bug) */
};
/* A static, never-NULL description of any code (unknown codes included). */
const char *cdx_strerror(int code);
#endif
#define CDX_ERR_MIN (-19)

#define CDX_ERRMSG_MAX 256

typedef struct cdx_error {
	int code;
	char msg[CDX_ERRMSG_MAX];
} cdx_error;

/* Fills *err (if err is not NULL) with code and the formatted message,
 * truncating it to fit.  Returns code, so callers can write
 * `return cdx_error_set(err, CDX_EFORMAT, "...", ...);`. */
int cdx_error_set(cdx_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Translates an errno value to a CDX_E* code. */
int cdx_from_errno(int e);

enum cdx_log_level {
	CDX_LOG_ERROR = 0,
	CDX_LOG_WARN = 1,
	CDX_LOG_INFO = 2,
	CDX_LOG_DEBUG = 3,
};

typedef void (*cdx_log_fn)(int level, const char *line, void *user);

/* Installs the log callback (NULL silences logging) and the most verbose
 * level passed to it. */
void cdx_log_set(cdx_log_fn fn, void *user, int max_level);

/* Formats one line (no trailing newline needed) and passes it to the
 * callback, if the level is enabled. */
void cdx_log(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Name of a level ("error", "warn", "info", "debug"); parses one back.
 * cdx_log_level_parse returns -1 for an unknown name. */
const char *cdx_log_level_name(int level);
int cdx_log_level_parse(const char *name);

#ifdef __cplusplus
}
#endif
#endif
