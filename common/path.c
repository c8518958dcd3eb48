#include "common/path.h"

#include <string.h>

int
cdx_path_under(const char *path, const char *dir)
{
	size_t n;

	if (path == NULL || dir == NULL || dir[0] != '/' || path[0] != '/')
		return 0;
	n = strlen(dir);
	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (n == 1)
		return 1;       /* "/" */
	return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}
