#include "common/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int
cdx_read_file(const char *path, size_t max, char **data, size_t *len,
    cdx_error *err)
{
	int rc, fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		int e = errno;
		return cdx_error_set(err, cdx_from_errno(e), "%s: %s", path,
		    strerror(e));
	}
	rc = cdx_read_fd(fd, path, max, data, len, err);
	close(fd);
	return rc;
}

int
cdx_read_fd(int fd, const char *name, size_t max, char **data, size_t *len,
    cdx_error *err)
{
	struct stat st;
	char *buf;
	size_t n, got = 0;
	int rc;

	if (fstat(fd, &st) != 0) {
		int e = errno;
		return cdx_error_set(err, cdx_from_errno(e), "%s: %s", name,
		    strerror(e));
	}
	if (!S_ISREG(st.st_mode))
		return cdx_error_set(err, CDX_EIO, "%s: not a regular file",
		    name);
	if ((unsigned long long)st.st_size > max ||
	    (unsigned long long)st.st_size >= SIZE_MAX) {
		if (max >= (1u << 20) && max % (1u << 20) == 0)
			return cdx_error_set(err, CDX_ETOOBIG,
			    "%s: larger than %zu MiB", name, max >> 20);
		return cdx_error_set(err, CDX_ETOOBIG,
		    "%s: larger than %zu bytes", name, max);
	}
	n = (size_t)st.st_size;
	buf = malloc(n + 1);
	if (buf == NULL)
		return cdx_error_set(err, CDX_ENOMEM, "%s: out of memory", name);
	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			rc = cdx_error_set(err, cdx_from_errno(e), "%s: %s", name,
			    strerror(e));
			goto out_free_buf;
		}
		if (r == 0) {
			rc = cdx_error_set(err, CDX_EIO,
			    "%s: short read (%zu of %zu bytes)", name, got, n);
			goto out_free_buf;
		}
		got += (size_t)r;
	}
	buf[n] = '\0';
	*data = buf;
	*len = n;
	return 0;
out_free_buf:
	free(buf);
	return rc;
}
