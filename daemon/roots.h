/*
 * roots.h - the folders the daemon may read for "path" requests (its
 * roots), the one "is this path inside a root" decision (cdx_path_under,
 * common/path.h), and reading a file inside them.
 *
 * Roots come from --root, --watch and "add" over the local socket; they
 * are kept in the store ("daemon.roots", one canonical path a line).  A
 * root already covered by another is not added again.
 *
 * Thread-safety: every function may be called from any thread once
 * roots_init() is done (an internal mutex); roots_init/roots_free run on
 * the controlling thread.  Errors: CDX_E* codes as documented.
 */
#ifndef CDX_SRV_ROOTS_H
#define CDX_SRV_ROOTS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "daemon/daemon.h"
#include "store/store.h"

typedef struct srv_roots {
	pthread_mutex_t mu;
	store *st;              /* where the list is kept (not owned) */
	char *dirs[SRV_MAX_ROOTS];      /* canonical, owned */
	int n;
} srv_roots;

/* Starts r with cfg's --root folders and those kept in st (st may be
 * NULL: nothing is read or saved). */
void roots_init(srv_roots *r, store *st, const srv_config *cfg);
/* Frees what r holds (r itself is the caller's). */
void roots_free(srv_roots *r);

/* Adds the canonical folder canon and saves the list.  0 (added, or
 * already inside a root), CDX_ETOOBIG (SRV_MAX_ROOTS reached) or
 * CDX_ENOMEM. */
int roots_add(srv_roots *r, const char *canon);

/* 1 when the absolute path (not resolved: it may be gone) is a root or
 * lies inside one, else 0. */
int roots_contains(srv_roots *r, const char *path);

/* Canonicalises path (realpath) into out (outlen bytes) and checks that it
 * is inside a root (any canonical path when allow_new_root).  Returns 0,
 * CDX_EINVAL (not absolute), CDX_ENOTFOUND, CDX_EPERM (outside the roots,
 * or not readable), CDX_ETOOBIG (longer than outlen). */
int roots_check(srv_roots *r, const char *path, char *out, size_t outlen,
    int allow_new_root);

/* The roots as a JSON array of strings (NULL when out of memory). */
cJSON *roots_json(srv_roots *r);

/* Reads the whole regular file at canon (at most max bytes) into *data
 * (malloc'd, the caller frees).  Errors as cdx_read_file() (common/file.h)
 * except that a path which is not a regular file gives CDX_EINVAL. */
int roots_read_file(const char *canon, size_t max, uint8_t **data,
    size_t *len, cdx_error *err);

#endif
