/*
 * file.h - reading a whole (small) file into memory, the one place clipdex
 * does so: configuration JSON, tokenizer vocabularies, models, images
 * and uploads.
 *
 * Thread-safety: both functions are thread-safe (no shared state).
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
 * or read(2) failure as cdx_from_errno() translates it. */
int cdx_read_file(const char *path, size_t max, char **data, size_t *len,
    cdx_error *err);

/* The same for a file the caller has already opened: reads fd (a regular
 * file, from its current offset, fstat's size) and leaves it open; name
 * only labels the error messages.  Same results and errors as above. */
int cdx_read_fd(int fd, const char *name, size_t max, char **data,
    size_t *len, cdx_error *err);

#endif
