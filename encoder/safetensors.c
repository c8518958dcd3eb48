/*
 * safetensors.c - a strict reader for the safetensors format: an 8-byte
 * little-endian header length, a JSON object naming every tensor's dtype,
 * shape and byte range, then the data.  Nothing in the header is trusted
 * until all of it has been checked.
 */
#include "common/vec.h"
#include "encoder/model_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* A header larger than this is refused (real CLIP headers are < 100 KiB). */
#define SFT_HEADER_MAX (100u * 1024u * 1024u)

static const struct {
	const char *name;
	int dtype;
	int size;
} sft_dtypes[] = {
	{"F32", SFT_F32, 4}, {"F16", SFT_F16, 2}, {"BF16", SFT_BF16, 2},
	{"F64", SFT_F64, 8}, {"I64", SFT_I64, 8}, {"I32", SFT_I32, 4},
	{"I16", SFT_I16, 2}, {"I8", SFT_I8, 1}, {"U64", SFT_U64, 8},
	{"U32", SFT_U32, 4}, {"U16", SFT_U16, 2}, {"U8", SFT_U8, 1},
	{"BOOL", SFT_BOOL, 1}, {"F8_E4M3", SFT_F8_E4M3, 1},
	{"F8_E5M2", SFT_F8_E5M2, 1},
};

static int
sft_dtype_lookup(const char *s, int *dtype, int *size)
{
	for (size_t i = 0; i < sizeof(sft_dtypes) / sizeof(sft_dtypes[0]); i++) {
		if (strcmp(s, sft_dtypes[i].name) == 0) {
			*dtype = sft_dtypes[i].dtype;
			*size = sft_dtypes[i].size;
			return 1;
		}
	}
	return 0;
}

static const char *
sft_dtype_name(int dtype)
{
	for (size_t i = 0; i < sizeof(sft_dtypes) / sizeof(sft_dtypes[0]); i++)
		if (sft_dtypes[i].dtype == dtype)
			return sft_dtypes[i].name;
	return "?";
}

/* A JSON number that is a non-negative integer below 2^53. */
static int
sft_json_uint(const cJSON *j, uint64_t *out)
{
	if (!cJSON_IsNumber(j))
		return 0;
	double d = j->valuedouble;
	if (!(d >= 0.0 && d <= 9007199254740992.0) || floor(d) != d)
		return 0;
	*out = (uint64_t)d;
	return 1;
}

static int
sft_parse_tensor(sft_file *f, const cJSON *item, uint64_t data_size,
    const uint8_t *data, sft_tensor *t, cdx_error *err)
{
	const char *name = item->string;
	if (!cJSON_IsObject(item))
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: header entry '%s' is not an object", f->path, name);
	const cJSON *jd = cJSON_GetObjectItemCaseSensitive(item, "dtype");
	const cJSON *js = cJSON_GetObjectItemCaseSensitive(item, "shape");
	const cJSON *jo = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
	if (!cJSON_IsString(jd) || !cJSON_IsArray(js) || !cJSON_IsArray(jo))
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: tensor '%s' lacks dtype, shape or data_offsets",
		    f->path, name);
	int esize;
	if (!sft_dtype_lookup(jd->valuestring, &t->dtype, &esize))
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: tensor '%s' has unknown dtype '%.32s'", f->path, name,
		    jd->valuestring);
	int nd = cJSON_GetArraySize(js);
	if (nd > SFT_MAX_DIMS)
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: tensor '%s' has %d dimensions (at most %d)", f->path,
		    name, nd, SFT_MAX_DIMS);
	t->ndim = nd;
	uint64_t numel = 1;
	int overflow = 0;
	for (int i = 0; i < nd; i++) {
		uint64_t dim;
		if (!sft_json_uint(cJSON_GetArrayItem(js, i), &dim))
			return cdx_error_set(err, CDX_EFORMAT,
			    "%s: tensor '%s' has an invalid shape", f->path, name);
		t->shape[i] = (int64_t)dim;
		if (dim != 0 && numel > UINT64_MAX / dim)
			overflow = 1;
		else
			numel *= dim;
	}
	uint64_t begin, end;
	if (cJSON_GetArraySize(jo) != 2 ||
	    !sft_json_uint(cJSON_GetArrayItem(jo, 0), &begin) ||
	    !sft_json_uint(cJSON_GetArrayItem(jo, 1), &end) || begin > end)
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: tensor '%s' has invalid data_offsets", f->path, name);
	if (end > data_size)
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: tensor '%s' data [%llu, %llu) lies outside the data "
		    "region (%llu bytes; file truncated?)", f->path, name,
		    (unsigned long long)begin, (unsigned long long)end,
		    (unsigned long long)data_size);
	if (overflow || numel > UINT64_MAX / (uint64_t)esize ||
	    numel * (uint64_t)esize != end - begin)
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: tensor '%s' shape and dtype %s need a different byte "
		    "count than its data_offsets give (%llu)", f->path, name,
		    jd->valuestring, (unsigned long long)(end - begin));
	t->numel = numel;
	t->data = data + begin;
	t->nbytes = end - begin;
	t->name = strdup(name);
	if (t->name == NULL)
		return cdx_error_set(err, CDX_ENOMEM, "out of memory");
	return 0;
}

static int
sft_parse_header(sft_file *f, const char *hdr, size_t hlen, uint64_t data_size,
    const uint8_t *data, cdx_error *err)
{
	cJSON *root = cJSON_ParseWithLength(hdr, hlen);
	int rc = 0;
	if (root == NULL)
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: header is not valid JSON", f->path);
	if (!cJSON_IsObject(root)) {
		rc = cdx_error_set(err, CDX_EFORMAT,
		    "%s: header is not a JSON object", f->path);
		goto out_free_json;
	}
	size_t n = (size_t)cJSON_GetArraySize(root);
	f->tensors = calloc(n ? n : 1, sizeof(*f->tensors));
	if (f->tensors == NULL) {
		rc = cdx_error_set(err, CDX_ENOMEM, "out of memory");
		goto out_free_json;
	}
	const cJSON *item;
	cJSON_ArrayForEach(item, root) {
		if (item->string == NULL) {
			rc = cdx_error_set(err, CDX_EFORMAT,
			    "%s: header entry without a name", f->path);
			goto out_free_json;
		}
		if (strcmp(item->string, "__metadata__") == 0)
			continue;
		rc = sft_parse_tensor(f, item, data_size, data,
		    &f->tensors[f->n_tensors], err);
		if (rc != 0)
			goto out_free_json;
		f->n_tensors++;
	}
out_free_json:
	cJSON_Delete(root);
	return rc;
}

int
sft_open(sft_file *f, const char *path, cdx_error *err)
{
	memset(f, 0, sizeof(*f));
	f->path = path;
	int rc;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		return cdx_error_set(err, cdx_from_errno(e), "%s: %s", path,
		    strerror(e));
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int e = errno;
		rc = cdx_error_set(err, cdx_from_errno(e), "%s: %s", path,
		    strerror(e));
		goto out_close_fd;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = cdx_error_set(err, CDX_EFORMAT, "%s: not a regular file",
		    path);
		goto out_close_fd;
	}
	size_t size = (size_t)st.st_size;
	if (size < 8) {
		rc = cdx_error_set(err, CDX_EFORMAT,
		    "%s: file too short for a safetensors header (%zu bytes)",
		    path, size);
		goto out_close_fd;
	}
	void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		int e = errno;
		rc = cdx_error_set(err, cdx_from_errno(e), "%s: mmap: %s", path,
		    strerror(e));
		goto out_close_fd;
	}
	close(fd);
	f->map = map;
	f->size = size;
	const uint8_t *p = map;
	uint64_t hlen = 0;
	for (int i = 7; i >= 0; i--)
		hlen = (hlen << 8) | p[i];
	if (hlen > size - 8) {
		rc = cdx_error_set(err, CDX_EFORMAT,
		    "%s: header length %llu exceeds the file size %zu", path,
		    (unsigned long long)hlen, size);
		goto out_unmap;
	}
	if (hlen > SFT_HEADER_MAX) {
		rc = cdx_error_set(err, CDX_EFORMAT,
		    "%s: header length %llu is over the limit", path,
		    (unsigned long long)hlen);
		goto out_unmap;
	}
	rc = sft_parse_header(f, (const char *)p + 8, (size_t)hlen,
	    size - 8 - hlen, p + 8 + hlen, err);
	if (rc != 0)
		goto out_unmap;
	return 0;

out_unmap:
	sft_close(f);
	f->path = path;
	return rc;
out_close_fd:
	close(fd);
	return rc;
}

void
sft_close(sft_file *f)
{
	if (f == NULL)
		return;
	for (size_t i = 0; i < f->n_tensors; i++)
		free(f->tensors[i].name);
	free(f->tensors);
	if (f->map != NULL)
		munmap((void *)f->map, f->size);
	memset(f, 0, sizeof(*f));
}

const sft_tensor *
sft_find(const sft_file *f, const char *name)
{
	for (size_t i = 0; i < f->n_tensors; i++)
		if (strcmp(f->tensors[i].name, name) == 0)
			return &f->tensors[i];
	return NULL;
}

static void
sft_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape)
{
	size_t used = 0;
	buf[0] = '\0';
	used += (size_t)snprintf(buf, cap, "[");
	for (int i = 0; i < ndim && used < cap; i++)
		used += (size_t)snprintf(buf + used, cap - used, "%s%lld",
		    i ? ", " : "", (long long)shape[i]);
	if (used < cap)
		snprintf(buf + used, cap - used, "]");
}

int
sft_check(const sft_file *f, const char *name, int ndim, const int64_t *shape,
    cdx_error *err)
{
	const sft_tensor *t = sft_find(f, name);
	if (t == NULL)
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: tensor '%s' is missing", f->path, name);
	int same = t->ndim == ndim;
	for (int i = 0; same && i < ndim; i++)
		same = t->shape[i] == shape[i];
	if (!same) {
		char want[96], got[96];
		sft_shape_str(want, sizeof(want), ndim, shape);
		sft_shape_str(got, sizeof(got), t->ndim, t->shape);
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: tensor '%s' has shape %s, config.json implies %s",
		    f->path, name, got, want);
	}
	if (t->dtype != SFT_F32 && t->dtype != SFT_F16 && t->dtype != SFT_BF16)
		return cdx_error_set(err, CDX_EFORMAT,
		    "%s: tensor '%s' has dtype %s (F32, F16 or BF16 needed)",
		    f->path, name, sft_dtype_name(t->dtype));
	return 0;
}

size_t
sft_dtype_size(int dtype)
{
	switch (dtype) {
	case SFT_F32:
		return 4;
	case SFT_F16:
	case SFT_BF16:
		return 2;
	default:
		return 0;
	}
}

void
sft_widen(int dtype, const uint8_t *p, size_t n, float *dst)
{
	switch (dtype) {
	case SFT_F32:
		/* little-endian host (x86-64, arm64) */
		memcpy(dst, p, n * 4);
		break;
	case SFT_F16:
		for (size_t i = 0; i < n; i++)
			dst[i] = cdx_f32_from_f16(
			    (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
		break;
	case SFT_BF16:
		for (size_t i = 0; i < n; i++) {
			uint32_t bits = (uint32_t)(p[2 * i] | (p[2 * i + 1] << 8))
			    << 16;
			memcpy(&dst[i], &bits, sizeof(float));
		}
		break;
	default:
		/* sft_check admits only the three above */
		memset(dst, 0, n * sizeof(float));
		break;
	}
}

int
sft_load_f32(const sft_file *f, const char *name, int ndim,
    const int64_t *shape, float *dst, cdx_error *err)
{
	int rc = sft_check(f, name, ndim, shape, err);
	if (rc != 0)
		return rc;
	const sft_tensor *t = sft_find(f, name);
	sft_widen(t->dtype, t->data, t->numel, dst);
	return 0;
}
