/*
 * file.h - reading a whole (small) file into memory, the one place clipdex
 * does so: configuration JSON, tokenizer vocabularies and models.
 *
 * Thread-safety: cdx_read_file() is thread-safe (no shared state).
 * Not part of libclipdex.
 */
#ifndef CDX_FILE_H
#define CDX_FILE_H

#include <stddef.h>

#include "common/cdx.h"

/* Reads the whole regular file at path, of at most max bytes, with read(2)
 * (EINTR is retried).
 *
 * On success *data is a malloc'd copy of the file's bytes followed by a
 * NUL (not counted in *len), owned by the caller, who frees it with
 * free(3); *len is the file's size.  On failure *data and *len are left
 * untouched.
 *
 * Errors, each with err->msg naming path: CDX_ENOTFOUND (no such file or
 * directory), CDX_EPERM (permission denied), CDX_EIO (not a regular file,
 * a read error, or a short read: the file shrank while being read),
 * CDX_ETOOBIG (larger than max bytes), CDX_ENOMEM; any other open(2)
 * failure as cdx_from_errno() translates it. */
int cdx_read_file(const char *path, size_t max, char **data, size_t *len,
    cdx_error *err);

#endif
