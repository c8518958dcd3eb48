/*
 * access.c - the loopback, token and browser rules (see access.h).
 */
#include "daemon/access.h"

#include <string.h>
#include <strings.h>

/* name followed by ":PORT" or nothing */
static int
host_is(const char *hostport, const char *name)
{
	size_t n = strlen(name);
	return strncmp(hostport, name, n) == 0 &&
	    (hostport[n] == '\0' || hostport[n] == ':');
}

int
access_is_loopback(const char *hostport)
{
	if (hostport == NULL)
		return 0;
	return strncmp(hostport, "127.", 4) == 0 ||
	    host_is(hostport, "localhost") || host_is(hostport, "[::1]");
}

int
access_origin_of_url(const char *url)
{
	const char *h;

	if (strncmp(url, "ipc://", 6) == 0 || strncmp(url, "inproc://", 9) == 0)
		return SRV_ORIGIN_LOCAL;
	h = strstr(url, "://");
	h = h != NULL ? h + 3 : url;
	return access_is_loopback(h) ? SRV_ORIGIN_LOOPBACK : SRV_ORIGIN_REMOTE;
}

int
access_token_needed(int origin)
{
	return origin == SRV_ORIGIN_REMOTE;
}

int
access_token_ok(const char *want, const char *got)
{
	unsigned char diff = 0;

	if (want == NULL || got == NULL || strlen(want) != strlen(got))
		return 0;
	for (size_t i = 0; want[i] != '\0'; i++)
		diff |= (unsigned char)(want[i] ^ got[i]);
	return diff == 0;
}

const char *
access_bearer(const char *authorization)
{
	if (authorization == NULL || strncmp(authorization, "Bearer ", 7) != 0)
		return NULL;
	return authorization + 7;
}

int
access_http_allowed(const char *http_addr, const char *host,
    const char *origin)
{
	/* A browser sends Origin with every cross-site request: it must name
	 * this server, as the Host header does ("http://" + Host). */
	if (origin != NULL && (host == NULL ||
	    strncmp(origin, "http://", 7) != 0 || strcasecmp(origin + 7, host)
	    != 0))
		return 0;
	/* On a loopback address, a foreign Host is DNS rebinding. */
	if (access_is_loopback(http_addr) && !access_is_loopback(host))
		return 0;
	return 1;
}
