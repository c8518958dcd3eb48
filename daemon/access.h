/*
 * access.h - who may ask the daemon what: the loopback rule, the token
 * rule and the browser guard (Host/Origin), each written once here and
 * called by every transport and by the configuration check.
 *
 * The loopback rule (access_is_loopback, which every other decision here
 * calls): the host is parsed, not matched by prefix, and is loopback only
 * when it is
 *   - a numeric IPv4 address in 127.0.0.0/8, all four octets in decimal
 *     ("127.0.0.1", "127.1.2.3"; not "127.1", "127.0.0.1.evil.example",
 *     "127.attacker.test", "127.0.0.1@evil"),
 *   - a bracketed IPv6 loopback address ("[::1]"), or
 *   - "localhost", in any case ("LOCALHOST"),
 * followed by nothing or ":PORT", PORT 1 to 5 digits up to 65535 (so
 * "127.0.0.1:80, evil" and "localhost:" are not).  Anything else, the
 * empty string included, is not loopback: it needs the token.
 * It decides, identically: config.c's --listen and --http checks, the
 * origin of nng tcp/ws listeners, and for HTTP the Host/Origin guard and
 * the token on /api, /image and /thumb.
 *
 * Further rules:
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

/* 1 when hostport ("HOST", "HOST:PORT", "[V6]", "[V6]:PORT") names a
 * loopback address by the rule above, else 0 (NULL gives 0). */
int access_is_loopback(const char *hostport);

/* The origin (enum srv_origin) of requests arriving at a listening
 * address: SRV_ORIGIN_LOCAL for ipc:// and inproc://, SRV_ORIGIN_LOOPBACK
 * when the host is loopback (after "scheme://" the authority, up to any
 * "/path"; without a scheme, as --http, the whole string), else
 * SRV_ORIGIN_REMOTE (NULL too). */
int access_origin_of_url(const char *url);

/* 1 when requests of this origin must carry the daemon's token (NULL:
 * it has none): remote ones always (a remote listener is refused without
 * one), the cluster's (clipdex.api) when it has one - without, whoever
 * may publish on the NATS servers is trusted, as with the shards'
 * subjects, and the servers' own accounts are the boundary. */
int access_token_needed(int origin, const char *token);

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
