/*
 * access.h - who may ask the daemon what: the loopback rule, the token
 * rule and the browser guard (Host/Origin), each written once here and
 * called by every transport and by the configuration check.
 *
 * Where the daemon's earlier copies of these rules disagreed, the
 * strictest one was kept:
 *   - loopback host names: "127." followed by anything (as before; the
 *     hardening issue narrows it here), "localhost" in lower case only,
 *     "[::1]"; the last two are followed by ":PORT" or nothing.
 *     ("LOCALHOST" used to be loopback for the web page's files and images
 *     but not for /api; it is now refused, or needs the token, on both.)
 *   - a listening URL other than ipc:// and inproc:// that is not loopback
 *     needs --token, whatever its transport (tcp://, ws://, ...).
 *   - the browser guard (an Origin header must name this server, and on a
 *     loopback address the Host header must be loopback) applies to every
 *     HTTP request: /api, the page's files, /thumb and /image.  Browsers
 *     send Origin only with cross-origin or non-GET requests, so the
 *     page's own GETs are unaffected.
 *
 * Everything here is a pure function of its arguments: no allocation, no
 * state, thread-safe.  Errors are return values as documented.
 */
#ifndef CDX_SRV_ACCESS_H
#define CDX_SRV_ACCESS_H

#include "daemon/daemon.h"

/* 1 when hostport ("HOST", "HOST:PORT", "[V6]:PORT") names a loopback
 * address by the rule above, else 0 (NULL gives 0). */
int access_is_loopback(const char *hostport);

/* The origin (enum srv_origin) of requests arriving at a listening
 * address: SRV_ORIGIN_LOCAL for ipc:// and inproc://, SRV_ORIGIN_LOOPBACK
 * for a loopback host (with or without a "scheme://"), else
 * SRV_ORIGIN_REMOTE. */
int access_origin_of_url(const char *url);

/* 1 when requests of this origin must carry the token. */
int access_token_needed(int origin);

/* 1 when got equals want (compared in constant time for a given length);
 * 0 when either is NULL or they differ. */
int access_token_ok(const char *want, const char *got);

/* The token of an "Authorization: Bearer TOKEN" header value, pointing
 * into it, or NULL when the header is NULL or not a bearer token. */
const char *access_bearer(const char *authorization);

/* The browser guard for an HTTP request to the daemon serving on http_addr
 * ("HOST:PORT"), given its Host and Origin headers (NULL when absent):
 * 1 when it may go on, 0 when it must be refused with 403. */
int access_http_allowed(const char *http_addr, const char *host,
    const char *origin);

#endif
