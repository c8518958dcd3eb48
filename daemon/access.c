/*
 * access.c - the loopback, token and browser rules (see access.h).
 */
#include "daemon/access.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

/* 1 when p is "" or ":PORT", PORT 1 to 5 digits up to 65535. */
static int
port_ok(const char *p)
{
	unsigned long v = 0;
	size_t n = 0;

	if (*p == '\0')
		return 1;
	if (*p++ != ':')
		return 0;
	for (; p[n] >= '0' && p[n] <= '9'; n++)
		if (n < 5)
			v = v * 10 + (unsigned long)(p[n] - '0');
	return n >= 1 && n <= 5 && p[n] == '\0' && v <= 65535;
}

int
access_is_loopback(const char *hostport)
{
	char host[64];
	const char *end;
	size_t n;

	if (hostport == NULL)
		return 0;
	if (hostport[0] == '[') {               /* "[V6]" or "[V6]:PORT" */
		struct in6_addr a6;
		if ((end = strchr(hostport, ']')) == NULL)
			return 0;
		n = (size_t)(end - hostport - 1);
		if (n >= sizeof(host))
			return 0;
		memcpy(host, hostport + 1, n);
		host[n] = '\0';
		return port_ok(end + 1) && inet_pton(AF_INET6, host, &a6) == 1 &&
		    IN6_IS_ADDR_LOOPBACK(&a6);
	}
	n = strcspn(hostport, ":");             /* "HOST" or "HOST:PORT" */
	if (n == 0 || n >= sizeof(host) || !port_ok(hostport + n))
		return 0;
	memcpy(host, hostport, n);
	host[n] = '\0';
	if (strcasecmp(host, "localhost") == 0)
		return 1;
	/* a dotted quad (all four octets, decimal) in 127.0.0.0/8 */
	struct in_addr a4;
	return inet_pton(AF_INET, host, &a4) == 1 &&
	    ((const unsigned char *)&a4.s_addr)[0] == 127;
}

int
access_origin_of_url(const char *url)
{
	char auth[128];
	const char *h;
	size_t n;

	if (url == NULL)
		return SRV_ORIGIN_REMOTE;
	if (strncmp(url, "ipc://", 6) == 0 || strncmp(url, "inproc://", 9) == 0)
		return SRV_ORIGIN_LOCAL;
	/* After a scheme, the authority ends at a path; without one (--http
	 * HOST:PORT) the whole string is the host and port. */
	h = strstr(url, "://");
	n = h != NULL ? strcspn(h + 3, "/") : strlen(url);
	h = h != NULL ? h + 3 : url;
	if (n >= sizeof(auth))
		return SRV_ORIGIN_REMOTE;
	memcpy(auth, h, n);
	auth[n] = '\0';
	return access_is_loopback(auth) ? SRV_ORIGIN_LOOPBACK : SRV_ORIGIN_REMOTE;
}

int
access_token_needed(int origin, const char *token)
{
	return origin == SRV_ORIGIN_REMOTE ||
	    (origin == SRV_ORIGIN_CLUSTER && token != NULL);
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
	/* On a loopback address, a Host that is not a loopback name is DNS
	 * rebinding. */
	if (access_is_loopback(http_addr) && !access_is_loopback(host))
		return 0;
	return 1;
}
