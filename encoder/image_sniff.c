/*
 * image_sniff.c - the one place a file's format is told from its content:
 * magic bytes, ISO BMFF `ftyp` brands, and for TIFF-based camera RAW files
 * a look at IFD0.  Never by name.  docs/IMAGES.md lists the rules.
 */
#include "encoder/clip.h"

#include <string.h>

/* Only this much of a file is scanned (a TIFF's IFD0 and first SubIFD
 * are read wherever they lie: a few hundred bytes each). */
#define SNIFF_MAX ((size_t)64 << 10)

static uint32_t
be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

static int
brand_in(const uint8_t *b, const char *const *list)
{
	for (; *list != NULL; list++)
		if (memcmp(b, *list, 4) == 0)
			return 1;
	return 0;
}

/* An ISO BMFF file: the brands of its leading `ftyp` box. */
static int
sniff_ftyp(const uint8_t *d, size_t n, int *content)
{
	static const char *const avif[] = { "avif", "avis", NULL };
	static const char *const heif[] = { "heic", "heix", "heim", "heis",
		"hevc", "hevx", "hevm", "hevs", "mif1", "msf1", NULL };
	static const char *const raw[] = { "crx ", NULL };
	static const char *const video[] = { "isom", "iso2", "iso4", "iso5",
		"iso6", "mp41", "mp42", "avc1", "qt  ", "M4V ", "M4VH", "M4VP",
		"3gp4", "3gp5", "3gp6", "3g2a", "dash", "mmp4", "MSNV", "XAVC",
		NULL };
	static const char *const audio[] = { "M4A ", "M4B ", "M4P ", "F4A ",
		"F4B ", NULL };
	uint32_t size = be32(d);
	if (size < 16 || size % 4 != 0)
		return CLIP_FORMAT_UNKNOWN;
	size_t end = size < n ? size : n;
	int is_avif = 0, is_heif = 0, is_raw = 0, is_video = 0;
	/* the major brand at 8, then compatible brands from 16 */
	for (size_t p = 8; p + 4 <= end; p += p == 8 ? 8 : 4) {
		is_avif |= brand_in(d + p, avif);
		is_heif |= brand_in(d + p, heif);
		is_raw |= brand_in(d + p, raw);
		is_video |= brand_in(d + p, video);
	}
	*content = CLIP_CONTENT_IMAGE;
	if (is_raw)
		return CLIP_FORMAT_RAW;
	if (is_avif)
		return CLIP_FORMAT_AVIF;
	if (is_heif)
		return CLIP_FORMAT_HEIF;
	/* An audio file's major brand (M4A, M4B audiobooks, M4P, F4A,
	 * F4B) says so whatever it is compatible with (isom, mp42). */
	*content = is_video && !brand_in(d + 8, audio) ? CLIP_CONTENT_VIDEO :
	    CLIP_CONTENT_OTHER;
	return CLIP_FORMAT_UNKNOWN;
}

struct tiff_rd {
	const uint8_t *d;
	size_t n;
	int be;
};

static unsigned
tiff_u16(const struct tiff_rd *t, size_t off)
{
	if (off + 2 > t->n)
		return 0;
	const uint8_t *p = t->d + off;
	return t->be ? (unsigned)(p[0] << 8 | p[1]) :
	    (unsigned)(p[1] << 8 | p[0]);
}

static uint32_t
tiff_u32(const struct tiff_rd *t, size_t off)
{
	if (off + 4 > t->n)
		return 0;
	const uint8_t *p = t->d + off;
	return t->be ? be32(p) : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[1] << 8 | p[0];
}

/* A TIFF IFD at `off` within the sniffed bytes: whether it marks a camera
 * RAW file (DNGVersion, a CFA or LinearRaw photometric, a Make of a raw
 * maker with no plain strip of RGB), and its first SubIFD offset. */
static int
tiff_ifd_is_raw(const struct tiff_rd *t, uint32_t off, uint32_t *sub)
{
	unsigned count = tiff_u16(t, off);
	if (off == 0 || count == 0 || count > 512 ||
	    (size_t)off + 2 + 12 * (size_t)count > t->n)
		return 0;
	for (unsigned i = 0; i < count; i++) {
		size_t e = (size_t)off + 2 + 12 * (size_t)i;
		unsigned tag = tiff_u16(t, e), type = tiff_u16(t, e + 2);
		unsigned v16 = tiff_u16(t, e + 8);
		if (tag == 0xC612)              /* DNGVersion */
			return 1;
		if (tag == 0x0106 && type == 3 && (v16 == 32803 ||
		    v16 == 34892))              /* CFA, LinearRaw */
			return 1;
		if (tag == 0x014A && sub != NULL)  /* SubIFDs */
			*sub = tiff_u32(t, e + 4) == 1 ? tiff_u32(t, e + 8) :
			    tiff_u32(t, tiff_u32(t, e + 8));
	}
	return 0;
}

static int
sniff_tiff(const uint8_t *d, size_t n)
{
	struct tiff_rd t = { d, n, d[0] == 'M' };
	/* Canon CR2 marks itself after the header. */
	if (n >= 10 && d[8] == 'C' && d[9] == 'R')
		return CLIP_FORMAT_RAW;
	uint32_t sub = 0;
	if (tiff_ifd_is_raw(&t, tiff_u32(&t, 4), &sub))
		return CLIP_FORMAT_RAW;
	if (sub != 0 && tiff_ifd_is_raw(&t, sub, NULL))
		return CLIP_FORMAT_RAW;
	return CLIP_FORMAT_TIFF;
}

int
clip_image_sniff(const void *data, size_t len, int *content)
{
	const uint8_t *d = data;
	int dummy, fmt = CLIP_FORMAT_UNKNOWN;
	size_t n = len < SNIFF_MAX ? len : SNIFF_MAX;

	if (content == NULL)
		content = &dummy;
	*content = CLIP_CONTENT_OTHER;
	if (d == NULL)
		return CLIP_FORMAT_UNKNOWN;
	if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF)
		fmt = CLIP_FORMAT_JPEG;
	else if (n >= 8 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0)
		fmt = CLIP_FORMAT_PNG;
	else if (n >= 12 && memcmp(d, "RIFF", 4) == 0 &&
	    memcmp(d + 8, "WEBP", 4) == 0)
		fmt = CLIP_FORMAT_WEBP;
	else if (n >= 6 && (memcmp(d, "GIF87a", 6) == 0 ||
	    memcmp(d, "GIF89a", 6) == 0))
		fmt = CLIP_FORMAT_GIF;
	else if (n >= 8 && (memcmp(d, "II*\0", 4) == 0 ||
	    memcmp(d, "MM\0*", 4) == 0))
		fmt = sniff_tiff(d, len);  /* IFDs may lie anywhere */
	else if (n >= 8 && (memcmp(d, "IIRO", 4) == 0 ||
	    memcmp(d, "IIRS", 4) == 0 || memcmp(d, "MMOR", 4) == 0 ||
	    memcmp(d, "IIU\0", 4) == 0))
		fmt = CLIP_FORMAT_RAW;          /* Olympus ORF, Panasonic RW2 */
	else if (n >= 16 && memcmp(d, "FUJIFILMCCD-RAW", 15) == 0)
		fmt = CLIP_FORMAT_RAW;          /* Fujifilm RAF */
	else if (n >= 26 && d[0] == 'B' && d[1] == 'M' &&
	    (d[14] == 12 || d[14] == 40 || d[14] == 52 || d[14] == 56 ||
	    d[14] == 108 || d[14] == 124) && d[15] == 0 && d[16] == 0 &&
	    d[17] == 0)
		fmt = CLIP_FORMAT_BMP;          /* a known DIB header size */
	else if (n >= 16 && memcmp(d + 4, "ftyp", 4) == 0)
		return sniff_ftyp(d, n, content);
	if (fmt != CLIP_FORMAT_UNKNOWN) {
		*content = CLIP_CONTENT_IMAGE;
		return fmt;
	}
	if ((n >= 4 && memcmp(d, "\x1a\x45\xdf\xa3", 4) == 0) ||
	    (n >= 12 && memcmp(d, "RIFF", 4) == 0 &&
	    memcmp(d + 8, "AVI ", 4) == 0))
		*content = CLIP_CONTENT_VIDEO;  /* Matroska/WebM, AVI */
	else if ((n >= 2 && d[0] == 0xFF && d[1] == 0x0A) ||
	    (n >= 12 && memcmp(d, "\0\0\0\x0cJXL \r\n\x87\n", 12) == 0) ||
	    (n >= 4 && memcmp(d, "8BPS", 4) == 0) ||
	    (n >= 6 && memcmp(d, "\0\0\1\0", 4) == 0 && d[4] != 0) ||
	    (n >= 4 && memcmp(d, "\x76\x2f\x31\x01", 4) == 0))
		*content = CLIP_CONTENT_IMAGE_OTHER;  /* JPEG XL, PSD, ICO,
		                                         OpenEXR */
	return CLIP_FORMAT_UNKNOWN;
}

const char *
clip_image_format_name(int format)
{
	static const char *const names[] = { "unknown", "JPEG", "PNG", "HEIF",
		"AVIF", "WebP", "TIFF", "GIF", "BMP", "RAW" };
	if (format < 0 || format >= (int)(sizeof(names) / sizeof(names[0])))
		return "unknown";
	return names[format];
}
