/*
 * path.h - the one rule for "is this path inside that folder".
 *
 * Paths are compared as strings of components, never by prefix alone:
 * "/photos2/a.jpg" is not under "/photos".  Both arguments are expected to
 * be absolute and canonical (realpath(3)'s output: no "//", "." or "..");
 * a trailing '/' on dir is ignored, and "/" contains every absolute path.
 * No filesystem access, no allocation; thread-safe.  Part of libclipdex.
 */
#ifndef CDX_PATH_H
#define CDX_PATH_H

/* 1 when path is dir itself or lies below it, else 0.  An empty or
 * relative dir contains nothing; NULL arguments give 0. */
int cdx_path_under(const char *path, const char *dir);

#endif
