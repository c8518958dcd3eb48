/*
 * image_gif.c - GIF through giflib: the first frame, composited as
 * Pillow 9.4's GifImagePlugin + convert("RGB") gives it.
 *
 * Rules (docs/IMAGES.md):
 *  - The canvas is the logical screen, enlarged to hold the first frame
 *    where that frame reaches past it (as Pillow does).
 *  - The canvas starts filled with the first frame's transparent index (its
 *    graphic control extension), else index 0; the frame's pixels are
 *    written at its offset; every index is then looked up in the frame's
 *    colour table, else the global one (an index past the table is black).
 *    Without any colour table an index is a grey level (Pillow's mode L).
 *  - Transparency is not composited (convert("RGB") drops it).
 *  - The canvas size is checked against the pixel limit before anything is
 *    allocated; only the records up to the first image are read.
 */
#include "encoder/clip.h"
#include "encoder/image_internal.h"

#include <stdlib.h>
#include <string.h>

#include <gif_lib.h>

struct gif_src {
	const uint8_t *d;
	size_t n, pos;
};

static int
gif_read(GifFileType *g, GifByteType *buf, int len)
{
	struct gif_src *s = g->UserData;
	size_t k = len < 0 ? 0 : (size_t)len;
	if (k > s->n - s->pos)
		k = s->n - s->pos;
	memcpy(buf, s->d + s->pos, k);
	s->pos += k;
	return (int)k;
}

static int
gif_fail(GifFileType *g, const char *what, cdx_error *err)
{
	int e = g != NULL ? g->Error : 0;
	if (e == D_GIF_ERR_NOT_ENOUGH_MEM)
		return cdx_error_set(err, CDX_ENOMEM, "GIF: out of memory");
	const char *m = GifErrorString(e);
	return cdx_error_set(err, CDX_EFORMAT, "corrupt or truncated GIF (%s)%s%s",
	    what, m != NULL ? ": " : "", m != NULL ? m : "");
}

/* Reads the first image's indices into idx (the frame's w x h), rows in
 * display order (interlaced files are stored in four passes). */
static int
gif_read_frame(GifFileType *g, uint8_t *idx, int w, int h, int interlaced)
{
	static const int start[4] = { 0, 4, 2, 1 }, step[4] = { 8, 8, 4, 2 };
	if (!interlaced) {
		for (int y = 0; y < h; y++)
			if (DGifGetLine(g, idx + (size_t)y * w, w) != GIF_OK)
				return -1;
		return 0;
	}
	for (int p = 0; p < 4; p++)
		for (int y = start[p]; y < h; y += step[p])
			if (DGifGetLine(g, idx + (size_t)y * w, w) != GIF_OK)
				return -1;
	return 0;
}

int
clip_gif_decode(const uint8_t *d, size_t n, const clip_decode_opts *opts,
    int probe_only, clip_image_info *info, int *ow, int *oh, uint8_t **orgb,
    cdx_error *err)
{
	struct gif_src src = { d, n, 0 };
	int e = 0, rc, transparent = -1;
	uint8_t *idx = NULL;

	GifFileType *g = DGifOpen(&src, gif_read, &e);
	if (g == NULL) {
		if (e == D_GIF_ERR_NOT_ENOUGH_MEM)
			return cdx_error_set(err, CDX_ENOMEM,
			    "GIF: out of memory");
		return cdx_error_set(err, CDX_EFORMAT,
		    "corrupt GIF header (%zu bytes)", n);
	}
	for (;;) {
		GifRecordType type;
		if (DGifGetRecordType(g, &type) != GIF_OK) {
			rc = gif_fail(g, "records", err);
			goto out_close;
		}
		if (type == TERMINATE_RECORD_TYPE) {
			rc = cdx_error_set(err, CDX_EFORMAT,
			    "GIF without an image");
			goto out_close;
		}
		if (type == EXTENSION_RECORD_TYPE) {
			int code;
			GifByteType *ext;
			if (DGifGetExtension(g, &code, &ext) != GIF_OK) {
				rc = gif_fail(g, "extension", err);
				goto out_close;
			}
			/* Graphic control: flags, delay (2), transparent index */
			if (code == GRAPHICS_EXT_FUNC_CODE && ext != NULL &&
			    ext[0] >= 4)
				transparent = ext[1] & 1 ? ext[4] : -1;
			while (ext != NULL)
				if (DGifGetExtensionNext(g, &ext) != GIF_OK) {
					rc = gif_fail(g, "extension", err);
					goto out_close;
				}
			continue;
		}
		if (type == IMAGE_DESC_RECORD_TYPE)
			break;
	}
	if (DGifGetImageDesc(g) != GIF_OK) {
		rc = gif_fail(g, "image descriptor", err);
		goto out_close;
	}
	GifImageDesc *fd = &g->Image;
	int64_t x1 = (int64_t)fd->Left + fd->Width;
	int64_t y1 = (int64_t)fd->Top + fd->Height;
	int64_t cw = g->SWidth > x1 ? g->SWidth : x1;
	int64_t ch = g->SHeight > y1 ? g->SHeight : y1;
	if (fd->Width <= 0 || fd->Height <= 0 || cw <= 0 || ch <= 0) {
		rc = cdx_error_set(err, CDX_EFORMAT,
		    "corrupt GIF: frame %d x %d on a %d x %d screen",
		    fd->Width, fd->Height, g->SWidth, g->SHeight);
		goto out_close;
	}
	info->width = (int)cw;
	info->height = (int)ch;
	if ((rc = clip_check_limit(opts, CLIP_FORMAT_GIF, (uint64_t)cw,
	    (uint64_t)ch, err)) != 0 || probe_only)
		goto out_close;

	size_t npix = (size_t)cw * (size_t)ch;
	idx = malloc((size_t)fd->Width * (size_t)fd->Height);
	uint8_t *buf = malloc(npix * 3);
	if (idx == NULL || buf == NULL) {
		free(buf);
		rc = cdx_error_set(err, CDX_ENOMEM,
		    "no memory for a %lld x %lld image", (long long)cw,
		    (long long)ch);
		goto out_close;
	}
	if (gif_read_frame(g, idx, fd->Width, fd->Height,
	    fd->Interlace) != 0) {
		free(buf);
		rc = gif_fail(g, "image data", err);
		goto out_close;
	}
	ColorMapObject *cm = fd->ColorMap != NULL ? fd->ColorMap : g->SColorMap;
	uint8_t pal[256 * 3];
	memset(pal, 0, sizeof(pal));
	if (cm == NULL) {
		for (int i = 0; i < 256; i++)
			memset(pal + 3 * i, i, 3);
	} else {
		for (int i = 0; i < cm->ColorCount && i < 256; i++) {
			pal[3 * i] = cm->Colors[i].Red;
			pal[3 * i + 1] = cm->Colors[i].Green;
			pal[3 * i + 2] = cm->Colors[i].Blue;
		}
	}
	int fill = transparent >= 0 ? transparent : 0;
	for (size_t i = 0; i < npix; i++)
		memcpy(buf + 3 * i, pal + 3 * fill, 3);
	for (int y = 0; y < fd->Height; y++) {
		const uint8_t *s = idx + (size_t)y * fd->Width;
		uint8_t *o = buf + (((size_t)fd->Top + y) * (size_t)cw +
		    (size_t)fd->Left) * 3;
		for (int x = 0; x < fd->Width; x++)
			memcpy(o + 3 * x, pal + 3 * s[x], 3);
	}
	*ow = (int)cw;
	*oh = (int)ch;
	*orgb = buf;
	rc = 0;
out_close:
	free(idx);
	DGifCloseFile(g, &e);
	return rc;
}
