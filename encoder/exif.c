/*
 * exif.c - Orientation and DateTimeOriginal from an EXIF blob, with libexif.
 *
 * Malformed EXIF never fails a decode: whatever cannot be read counts as
 * absent (orientation 1, no capture time).
 */
#include "encoder/image_internal.h"

#include <stdlib.h>
#include <string.h>

#include <libexif/exif-data.h>

static const uint8_t exif_ident[6] = { 'E', 'x', 'i', 'f', 0, 0 };

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int
digits(const char *s, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

int64_t
clip_exif_parse_datetime(const char *s, size_t len)
{
	static const int mdays[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30,
		31, 30, 31 };

	if (len < 19 || s[4] != ':' || s[7] != ':' || s[10] != ' ' ||
	    s[13] != ':' || s[16] != ':')
		return INT64_MIN;
	for (size_t i = 19; i < len; i++)
		if (s[i] != '\0' && s[i] != ' ')
			return INT64_MIN;
	int y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
	int h = digits(s + 11, 2), mi = digits(s + 14, 2);
	int se = digits(s + 17, 2);
	if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
	    h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 || se > 60)
		return INT64_MIN;
	int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (mo == 2 && d == 29 && !leap)
		return INT64_MIN;
	return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
}

int
clip_xmp_orientation(const char *s, size_t n)
{
	static const char key[] = "tiff:Orientation";
	const size_t klen = sizeof(key) - 1;
	const char *p = s, *end = s + n;

	if (s == NULL)
		return 0;
	while ((p = memmem(p, (size_t)(end - p), key, klen)) != NULL) {
		const char *q = p + klen;
		if (end - q >= 3 && q[0] == '=' && q[1] == '"' &&
		    q[2] >= '0' && q[2] <= '9')
			return q[2] - '0';
		if (end - q >= 2 && q[0] == '>' && q[1] >= '0' && q[1] <= '9')
			return q[1] - '0';
		p = q;
	}
	return 0;
}

int
clip_exif_read(const uint8_t *data, size_t len, int *orientation,
    int64_t *capture_time)
{
	int has_orientation = 0;

	*orientation = 1;
	*capture_time = INT64_MIN;
	if (data == NULL || len < 8)
		return 0;

	/* libexif wants the APP1 identifier in front of the TIFF header. */
	uint8_t *copy = NULL;
	if (len < sizeof(exif_ident) ||
	    memcmp(data, exif_ident, sizeof(exif_ident)) != 0) {
		if (len > (size_t)1 << 26)
			return 0;
		copy = malloc(len + sizeof(exif_ident));
		if (copy == NULL)
			return 0;
		memcpy(copy, exif_ident, sizeof(exif_ident));
		memcpy(copy + sizeof(exif_ident), data, len);
		data = copy;
		len += sizeof(exif_ident);
	}
	if (len > 0xFFFFFFFFu)
		goto out_free_copy;

	ExifData *ed = exif_data_new();
	if (ed == NULL)
		goto out_free_copy;
	/* Read what is there; do not let libexif add or "fix" entries. */
	exif_data_unset_option(ed, EXIF_DATA_OPTION_FOLLOW_SPECIFICATION);
	exif_data_load_data(ed, data, (unsigned int)len);
	ExifByteOrder bo = exif_data_get_byte_order(ed);

	ExifEntry *e = exif_content_get_entry(ed->ifd[EXIF_IFD_0],
	    EXIF_TAG_ORIENTATION);
	has_orientation = e != NULL;
	if (e != NULL && e->format == EXIF_FORMAT_SHORT &&
	    e->components == 1 && e->data != NULL && e->size >= 2) {
		int o = exif_get_short(e->data, bo);
		if (o >= 1 && o <= 8)
			*orientation = o;
	}
	e = exif_content_get_entry(ed->ifd[EXIF_IFD_EXIF],
	    EXIF_TAG_DATE_TIME_ORIGINAL);
	if (e != NULL && e->format == EXIF_FORMAT_ASCII && e->data != NULL)
		*capture_time = clip_exif_parse_datetime((const char *)e->data,
		    e->size);
	exif_data_unref(ed);
out_free_copy:
	free(copy);
	return has_orientation;
}
