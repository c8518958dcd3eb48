/*
 * roots.c - the daemon's roots and reading files inside them (roots.h).
 */
#include "daemon/roots.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"
#include "common/path.h"

#define ROOTS_KEY "daemon.roots"

/* Persists the roots as newline-separated text.  Called with r->mu held. */
static void
save_locked(srv_roots *r)
{
	size_t len = 0;
	cdx_error err;
	char *buf, *p;

	if (r->st == NULL)
		return;
	for (int i = 0; i < r->n; i++)
		len += strlen(r->dirs[i]) + 1;
	if ((buf = malloc(len + 1)) == NULL)
		return;
	p = buf;
	for (int i = 0; i < r->n; i++)
		p += sprintf(p, "%s\n", r->dirs[i]);
	if (store_kv_put(r->st, ROOTS_KEY, buf, len, &err) != 0)
		cdx_log(CDX_LOG_WARN, "cannot save the roots: %s", err.msg);
	free(buf);
}

static int
contains_locked(srv_roots *r, const char *path)
{
	for (int i = 0; i < r->n; i++)
		if (cdx_path_under(path, r->dirs[i]))
			return 1;
	return 0;
}

/* 1 added, 0 already covered, or a CDX_E* code. */
static int
add_locked(srv_roots *r, const char *canon)
{
	char *copy;

	if (contains_locked(r, canon))
		return 0;
	if (r->n == SRV_MAX_ROOTS)
		return CDX_ETOOBIG;
	if ((copy = strdup(canon)) == NULL)
		return CDX_ENOMEM;
	r->dirs[r->n++] = copy;
	return 1;
}

void
roots_init(srv_roots *r, store *st, const srv_config *cfg)
{
	char *save, *line;
	void *val;
	size_t len;

	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->mu, NULL);
	r->st = st;
	for (int i = 0; cfg != NULL && i < cfg->n_roots; i++)
		add_locked(r, cfg->roots[i]);
	if (st == NULL || store_kv_get(st, ROOTS_KEY, &val, &len, NULL) != 0)
		return;
	for (line = strtok_r(val, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save))
		if (line[0] == '/')
			add_locked(r, line);
	free(val);
}

void
roots_free(srv_roots *r)
{
	for (int i = 0; i < r->n; i++)
		free(r->dirs[i]);
	r->n = 0;
	pthread_mutex_destroy(&r->mu);
}

int
roots_add(srv_roots *r, const char *canon)
{
	pthread_mutex_lock(&r->mu);
	int rc = add_locked(r, canon);
	if (rc == 1) {
		save_locked(r);
		cdx_log(CDX_LOG_INFO, "new root %s", canon);
		rc = 0;
	}
	pthread_mutex_unlock(&r->mu);
	return rc;
}

int
roots_contains(srv_roots *r, const char *path)
{
	pthread_mutex_lock(&r->mu);
	int in = contains_locked(r, path);
	pthread_mutex_unlock(&r->mu);
	return in;
}

int
roots_check(srv_roots *r, const char *path, char *out, size_t outlen,
    int allow_new_root)
{
	char canon[PATH_MAX];

	if (path == NULL || path[0] != '/')
		return CDX_EINVAL;
	if (realpath(path, canon) == NULL)
		return errno == EACCES ? CDX_EPERM : CDX_ENOTFOUND;
	if (strlen(canon) >= outlen)
		return CDX_ETOOBIG;
	if (!allow_new_root && !roots_contains(r, canon))
		return CDX_EPERM;
	memcpy(out, canon, strlen(canon) + 1);
	return 0;
}

cJSON *
roots_json(srv_roots *r)
{
	cJSON *arr = cJSON_CreateArray();

	pthread_mutex_lock(&r->mu);
	for (int i = 0; arr != NULL && i < r->n; i++)
		cJSON_AddItemToArray(arr, cJSON_CreateString(r->dirs[i]));
	pthread_mutex_unlock(&r->mu);
	return arr;
}

int
roots_read_file(const char *canon, size_t max, uint8_t **data, size_t *len,
    cdx_error *err)
{
	struct stat st;
	char *buf;
	int fd = open(canon, O_RDONLY | O_CLOEXEC), rc;

	if (fd < 0)
		return cdx_error_set(err, cdx_from_errno(errno), "%s: %s", canon,
		    strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return cdx_error_set(err, CDX_EINVAL, "%s: not a regular file",
		    canon);
	}
	rc = cdx_read_fd(fd, canon, max, &buf, len, err);
	close(fd);
	if (rc == 0)
		*data = (uint8_t *)buf;
	return rc;
}
