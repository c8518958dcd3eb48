/*
 * image.c - the public decode path (clip_image_probe/decode/load): the
 * format named by clip_image_sniff() (image_sniff.c) picks its decoder,
 * whose pixels are then turned upright here.  JPEG (libjpeg-turbo's
 * TurboJPEG API) and PNG (libspng) are decoded in this file; the other
 * formats each in image_<format>.c (image_internal.h).
 *
 * Rules (docs/IMAGES.md):
 *  - The format is detected from the first bytes, never from a name.
 *  - The pixel limit is checked on the header's full size before any pixel
 *    buffer is allocated.
 *  - A JPEG must contain an end-of-image marker after its scan data; without
 *    one it is truncated (CDX_EFORMAT) rather than grey-filled.  libjpeg's
 *    other warnings (extraneous bytes, corrupt entropy data inside a
 *    complete file) are accepted, as Pillow accepts them.
 *  - CMYK/YCCK JPEGs are read as Adobe (inverted) CMYK, as Pillow does, and
 *    converted with Pillow's cmyk2rgb formula.
 *  - Fast mode, progressive JPEGs: only the scans that carry coefficients
 *    the DCT-scaled inverse DCT reads are decoded (libjpeg API); the pixels
 *    equal a full decode at the same scale (see skip_plan()).
 *  - 16-bit PNG samples keep their high byte.
 *  - Alpha is dropped without compositing.
 */
#include "encoder/clip.h"
#include "encoder/image_internal.h"
#include "common/file.h"

#include <limits.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <spng.h>
#include <turbojpeg.h>

static int
unknown_format(size_t n, int content, cdx_error *err)
{
	if (n == 0)
		return cdx_error_set(err, CDX_EFORMAT, "empty file (0 bytes)");
	if (content == CLIP_CONTENT_VIDEO)
		return cdx_error_set(err, CDX_EFORMAT,
		    "a video, not an image (%zu bytes)", n);
	if (content == CLIP_CONTENT_IMAGE_OTHER)
		return cdx_error_set(err, CDX_EFORMAT,
		    "an image format clipdex does not read (%zu bytes)", n);
	return cdx_error_set(err, CDX_EFORMAT,
	    "not an image clipdex reads (unrecognised signature, %zu bytes)",
	    n);
}

int
clip_check_limit(const clip_decode_opts *opts, int fmt, uint64_t w,
    uint64_t h, cdx_error *err)
{
	uint64_t max = opts != NULL && opts->max_pixels != 0 ?
	    opts->max_pixels : CLIP_DEFAULT_MAX_PIXELS;
	/* w, h < 2^32 each: the product cannot wrap */
	if (w > UINT32_MAX || h > UINT32_MAX || w * h > max)
		return cdx_error_set(err, CDX_ETOOBIG,
		    "%s image is %llu x %llu (%llu pixels), over the limit of "
		    "%llu pixels", clip_image_format_name(fmt),
		    (unsigned long long)w, (unsigned long long)h,
		    (unsigned long long)(w * h), (unsigned long long)max);
	return 0;
}

/* ---- JPEG ---------------------------------------------------------------- */

/* TurboJPEG's TJFLAG_LIMITSCANS refuses files with more scans than this;
 * the scan-skipping path leaves such files to it. */
#define JPEG_MAX_SCANS 500

/* One scan of a progressive JPEG: its bytes run from the SOS marker at
 * `start` to the end of its entropy-coded data at `end`. */
struct jpeg_scan {
	size_t start, end;
	uint8_t ncomp;         /* 1..4 */
	uint8_t comp[4];       /* indices into the frame's components */
	uint8_t ss, se, ah, al;
};

/* What a walk over a JPEG's markers finds. */
struct jpeg_layout {
	const uint8_t *exif;   /* APP1 payload starting "Exif\0\0", or NULL */
	size_t exif_len;
	int sof_w, sof_h, sof_comps; /* from the first SOFn, 0 if none */
	int sof_marker;        /* that SOFn's marker byte (0xC2: progressive) */
	uint8_t comp_id[4];    /* its component ids (the first 4) */
	int complete;          /* an EOI marker follows scan data */
	size_t eoi;            /* offset of that EOI marker */
	int nscans;            /* SOS markers seen */
	/* Filled only when the caller passes room for them and the frame is
	 * progressive Huffman (SOF2): */
	struct jpeg_scan *scans;  /* JPEG_MAX_SCANS entries, or NULL */
	int scans_ok;          /* every scan header was recorded and valid */
};

static int
is_sof(uint8_t m)
{
	return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
}

/* Records the SOS segment seg[0..len) of scan number L->nscans - 1
 * starting at `start`; clears L->scans_ok when it is not a scan header
 * libjpeg would accept for a progressive frame. */
static void
jpeg_record_scan(struct jpeg_layout *L, const uint8_t *seg, size_t len,
    size_t start)
{
	int i = L->nscans - 1;
	if (i >= JPEG_MAX_SCANS || len < 1) {
		L->scans_ok = 0;
		return;
	}
	struct jpeg_scan *s = &L->scans[i];
	memset(s, 0, sizeof(*s));
	s->start = s->end = start;
	s->ncomp = seg[0];
	if (s->ncomp < 1 || s->ncomp > 4 || len != 4 + 2 * (size_t)s->ncomp) {
		L->scans_ok = 0;
		return;
	}
	for (int c = 0; c < s->ncomp; c++) {
		int k = 0;
		while (k < L->sof_comps && k < 4 &&
		    L->comp_id[k] != seg[1 + 2 * c])
			k++;
		if (k >= L->sof_comps || k >= 4) {
			L->scans_ok = 0;
			return;
		}
		for (int e = 0; e < c; e++)
			if (s->comp[e] == k)
				L->scans_ok = 0;
		s->comp[c] = (uint8_t)k;
	}
	const uint8_t *q = seg + 1 + 2 * s->ncomp;
	s->ss = q[0];
	s->se = q[1];
	s->ah = q[2] >> 4;
	s->al = q[2] & 15;
	/* libjpeg's rules for a progressive scan (jdphuff.c) */
	if (s->ss > s->se || s->se > 63 || (s->ss == 0 && s->se != 0) ||
	    (s->ss != 0 && s->ncomp != 1) || s->ah > 13 || s->al > 13 ||
	    (s->ah != 0 && s->al != s->ah - 1))
		L->scans_ok = 0;
}

/* Walks the marker segments and skips entropy-coded data (where 0xFF is
 * followed by 0x00 or a restart marker) up to the EOI marker, or only up to
 * the first scan when stop_at_sos.  Tolerates stray bytes between segments
 * as libjpeg does.  With `scans` (room for JPEG_MAX_SCANS) and a
 * progressive Huffman frame, records every scan. */
static void
jpeg_walk(const uint8_t *d, size_t n, int stop_at_sos,
    struct jpeg_scan *scans, struct jpeg_layout *L)
{
	size_t p = 2;
	int saw_sos = 0, open_scan = 0;

	memset(L, 0, sizeof(*L));
	while (p < n) {
		if (d[p] != 0xFF) {
			const uint8_t *q = memchr(d + p, 0xFF, n - p);
			if (q == NULL)
				return;
			p = (size_t)(q - d);
			continue;
		}
		if (p + 1 >= n)
			return;
		uint8_t m = d[p + 1];
		if (m == 0xFF) {
			p++;
			continue;
		}
		if (m == 0x00 || m == 0x01 || m == 0xD8 ||
		    (m >= 0xD0 && m <= 0xD7)) {
			p += 2;
			continue;
		}
		/* Any other marker ends the entropy-coded data of a scan. */
		if (open_scan && L->scans_ok)
			L->scans[L->nscans - 1].end = p;
		open_scan = 0;
		if (m == 0xD9) {
			L->complete = saw_sos;
			L->eoi = p;
			return;
		}
		if (p + 4 > n)
			return;
		size_t len = (size_t)d[p + 2] << 8 | d[p + 3];
		if (len < 2)
			return;
		const uint8_t *seg = d + p + 4;
		size_t avail = n - (p + 4) < len - 2 ? n - (p + 4) : len - 2;
		if (m == 0xE1 && L->exif == NULL && avail == len - 2 &&
		    avail >= 6 && memcmp(seg, "Exif\0\0", 6) == 0) {
			L->exif = seg;
			L->exif_len = avail;
		}
		if (is_sof(m) && L->sof_comps == 0 && avail >= 6) {
			L->sof_h = seg[1] << 8 | seg[2];
			L->sof_w = seg[3] << 8 | seg[4];
			L->sof_comps = seg[5];
			L->sof_marker = m;
			for (int c = 0; c < 4 && c < seg[5] &&
			    6 + 3 * (size_t)c < avail; c++)
				L->comp_id[c] = seg[6 + 3 * c];
			L->scans = scans;
			L->scans_ok = scans != NULL && m == 0xC2 &&
			    seg[5] >= 1 && seg[5] <= 4 &&
			    avail >= 6 + 3 * (size_t)seg[5];
		}
		if (m == 0xDA) {
			if (stop_at_sos)
				return;
			saw_sos = 1;
			L->nscans++;
			if (L->scans_ok && avail == len - 2)
				jpeg_record_scan(L, seg, avail, p);
			else
				L->scans_ok = 0;
			open_scan = 1;
		}
		p += 2 + len;
	}
}

/* TurboJPEG's scaled size: ceil(dim * num / denom). */
static int
tj_scaled(int dim, tjscalingfactor sf)
{
	return (int)(((int64_t)dim * sf.num + sf.denom - 1) / sf.denom);
}

/* The smallest factor <= 1 whose scaled shorter side stays >= min_short. */
static tjscalingfactor
jpeg_pick_scale(int w, int h, int min_short)
{
	tjscalingfactor best = { 1, 1 };
	if (min_short <= 0)
		return best;
	int nsf = 0;
	tjscalingfactor *sf = tjGetScalingFactors(&nsf);
	for (int i = 0; sf != NULL && i < nsf; i++) {
		if (sf[i].num <= 0 || sf[i].denom <= 0 ||
		    sf[i].num > sf[i].denom)
			continue;
		int sw = tj_scaled(w, sf[i]), sh = tj_scaled(h, sf[i]);
		if ((sw < sh ? sw : sh) < min_short)
			continue;
		/* sf[i] < best  <=>  num_i * denom_b < num_b * denom_i */
		if ((int64_t)sf[i].num * best.denom <
		    (int64_t)best.num * sf[i].denom)
			best = sf[i];
	}
	return best;
}

static int
jpeg_header(tjhandle tj, const uint8_t *d, size_t n,
    const struct jpeg_layout *L, int *w, int *h, int *cmyk, cdx_error *err)
{
	int subsamp = 0, cs = 0;
	if (n > ULONG_MAX)
		return cdx_error_set(err, CDX_ETOOBIG, "JPEG too large");
	/* A warning (extraneous bytes before a marker) still yields the
	 * header. */
	if (tjDecompressHeader3(tj, d, (unsigned long)n, w, h, &subsamp,
	    &cs) == 0 || (tjGetErrorCode(tj) == TJERR_WARNING && *w > 0 &&
	    *h > 0)) {
		*cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
		return 0;
	}
	/* TurboJPEG 2.x refuses unusual sampling factors in the header call
	 * only; the decoder itself handles them. */
	if (L->sof_comps > 0 && L->sof_w > 0 && L->sof_h > 0 &&
	    strstr(tjGetErrorStr2(tj), "subsampling") != NULL) {
		*w = L->sof_w;
		*h = L->sof_h;
		*cmyk = L->sof_comps == 4;
		return 0;
	}
	return cdx_error_set(err, CDX_EFORMAT, "corrupt JPEG header: %s",
	    tjGetErrorStr2(tj));
}

/* Adobe (inverted) CMYK to RGB as Pillow: C = 255 - c etc., then
 * R = 255 - K - C * (255 - K) / 255 with its rounding.  In place: each
 * 4-byte input becomes a 3-byte output at a lower address. */
void
clip_cmyk_to_rgb(uint8_t *buf, size_t npix)
{
	for (size_t i = 0; i < npix; i++) {
		const uint8_t *in = buf + 4 * i;
		int nk = in[3]; /* 255 - (255 - k) */
		uint8_t o[3];
		for (int c = 0; c < 3; c++) {
			int t = (255 - in[c]) * nk + 128;
			int v = nk - (((t >> 8) + t) >> 8);
			o[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
		}
		memcpy(buf + 3 * i, o, 3);
	}
}

/* ---- fast mode: decoding only the scans a scaled IDCT needs ------------- */

/* The scans of the last JPEG decoded on this thread. */
static _Thread_local int last_scans_total, last_scans_decoded;

void
clip_jpeg_last_scans(int *total, int *decoded)
{
	if (total != NULL)
		*total = last_scans_total;
	if (decoded != NULL)
		*decoded = last_scans_decoded;
}

/* jpeg_natural_order: zigzag index -> row-major position in a block. */
static const uint8_t zz_natural[64] = {
	0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
	12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
	35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
	58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
};

/* The coefficients (bit k: zigzag index k) that libjpeg-turbo's inverse
 * DCT producing s x s pixels per block reads: jpeg_idct_1x1 only the DC;
 * jidctred.c's 2x2 rows and columns 0, 1, 3, 5, 7, and its 4x4 all but
 * row and column 4 (the SIMD versions compute the same); jidctint.c's
 * 3x3, 5x5, 6x6, 7x7 the top-left s x s; 8x8 and the enlarging ones
 * (9..16) all 64. */
static uint64_t
idct_reads(int s)
{
	unsigned lines;        /* bit r: row (and column) r is read */
	if (s == 1)
		lines = 0x01;
	else if (s == 2)
		lines = 0xAB;
	else if (s == 4)
		lines = 0xEF;
	else if (s > 0 && s < 8)
		lines = (1u << s) - 1;
	else
		lines = 0xFF;
	uint64_t m = 0;
	for (int k = 0; k < 64; k++)
		if ((lines >> (zz_natural[k] / 8) & 1) &&
		    (lines >> (zz_natural[k] % 8) & 1))
			m |= (uint64_t)1 << k;
	return m;
}

/* Zigzag indices ss..se (0 <= ss <= se <= 63) as a mask. */
static uint64_t
band_mask(int ss, int se)
{
	return (~(uint64_t)0 >> (63 - se)) & (~(uint64_t)0 << ss);
}

/*
 * Which scans of a progressive file a scaled decode needs.  need[c] holds
 * the coefficients (zigzag mask) that the inverse DCT of frame component c
 * reads.  Sets keep[i] and returns how many scans are kept, or -1 when the
 * file must be decoded in full.  The rule:
 *  - the file must complete every coefficient of every component
 *    (successive approximation down to Al = 0, as libjpeg's coef_bits
 *    would end): then a full decode applies no block smoothing, and the
 *    decode of the kept scans is run with smoothing off;
 *  - a scan is kept when it carries a needed coefficient of one of its
 *    components.  The first pass over a band (Ah = 0) is decoded without
 *    history, but a refinement scan (Ah > 0) is parsed with the history of
 *    its whole band (which coefficients are already nonzero), so keeping
 *    one makes its whole band needed, and with it every scan over that
 *    band; repeated to a fixed point.
 * Every coefficient the IDCT reads then holds the same value as in the
 * full decode, and so do the pixels.
 */
static int
skip_plan(const struct jpeg_scan *sc, int n, int ncomp, uint64_t need[4],
    uint8_t *keep)
{
	uint64_t done[4] = { 0, 0, 0, 0 }, seen[4] = { 0, 0, 0, 0 };
	for (int i = 0; i < n; i++) {
		uint64_t band = band_mask(sc[i].ss, sc[i].se);
		for (int c = 0; c < sc[i].ncomp; c++) {
			int k = sc[i].comp[c];
			seen[k] |= band;
			if (sc[i].al == 0)
				done[k] |= band;
			else
				done[k] &= ~band;
		}
	}
	for (int c = 0; c < ncomp; c++)
		if (seen[c] != ~(uint64_t)0 || done[c] != ~(uint64_t)0)
			return -1;
	int changed = 1;
	while (changed) {
		changed = 0;
		for (int i = 0; i < n; i++) {
			uint64_t band = band_mask(sc[i].ss, sc[i].se);
			int hit = 0;
			for (int c = 0; c < sc[i].ncomp; c++)
				hit |= (need[sc[i].comp[c]] & band) != 0;
			if (!hit || sc[i].ah == 0)
				continue;
			for (int c = 0; c < sc[i].ncomp; c++) {
				uint64_t *m = &need[sc[i].comp[c]];
				if ((*m | band) != *m) {
					*m |= band;
					changed = 1;
				}
			}
		}
	}
	int kept = 0;
	for (int i = 0; i < n; i++) {
		uint64_t band = band_mask(sc[i].ss, sc[i].se);
		keep[i] = 0;
		for (int c = 0; c < sc[i].ncomp; c++)
			if (need[sc[i].comp[c]] & band)
				keep[i] = 1;
		kept += keep[i];
	}
	return kept;
}

/* libjpeg errors jump back to skip_run(); warnings are counted (any makes
 * the caller decode in full, as today); nothing is printed. */
struct skip_err {
	struct jpeg_error_mgr pub;
	jmp_buf jb;
	int warnings;
};

static void
skip_error_exit(j_common_ptr ci)
{
	longjmp(((struct skip_err *)(void *)ci->err)->jb, 1);
}

static void
skip_emit_message(j_common_ptr ci, int level)
{
	if (level < 0)
		((struct skip_err *)(void *)ci->err)->warnings++;
}

static void
skip_output_message(j_common_ptr ci)
{
	(void)ci;
}

/* One scan-skipping decode.  What libjpeg may longjmp over lives here. */
struct skip_job {
	struct jpeg_decompress_struct ci;
	struct skip_err err;
	const uint8_t *d;
	size_t n;
	const struct jpeg_layout *L;
	tjscalingfactor sf;
	int cmyk, sw, sh;
	uint8_t *out;          /* sw * sh * (cmyk ? 4 : 3) bytes, the caller's */
	uint8_t *subset;       /* the kept scans as one JPEG stream */
	JSAMPROW *rows;
	int kept;
	uint8_t keep[JPEG_MAX_SCANS];
};

static int
skip_scaled_size(const jpeg_component_info *c)
{
#if JPEG_LIB_VERSION >= 70
	return c->DCT_h_scaled_size > c->DCT_v_scaled_size ?
	    c->DCT_h_scaled_size : c->DCT_v_scaled_size;
#else
	return c->DCT_scaled_size;
#endif
}

/* The body of skip_run(): 0 when j->out holds the image, 1 when the file
 * is left to the full decode. */
static int
skip_body(struct skip_job *j)
{
	struct jpeg_decompress_struct *ci = &j->ci;
	const struct jpeg_layout *L = j->L;
	uint64_t need[4] = { 0, 0, 0, 0 };

	jpeg_create_decompress(ci);
	/* The header, for the IDCT size libjpeg picks for each component. */
	jpeg_mem_src(ci, j->d, (unsigned long)j->n);
	if (jpeg_read_header(ci, TRUE) != JPEG_HEADER_OK ||
	    !ci->progressive_mode || ci->num_components != L->sof_comps)
		return 1;
	ci->scale_num = (unsigned)j->sf.num;
	ci->scale_denom = (unsigned)j->sf.denom;
	jpeg_calc_output_dimensions(ci);
	if (ci->output_width != (JDIMENSION)j->sw ||
	    ci->output_height != (JDIMENSION)j->sh)
		return 1;
	for (int c = 0; c < ci->num_components; c++) {
		if (ci->comp_info[c].component_id != L->comp_id[c])
			return 1;
		need[c] = idct_reads(skip_scaled_size(&ci->comp_info[c]));
	}
	j->kept = skip_plan(L->scans, L->nscans, ci->num_components, need,
	    j->keep);
	if (j->kept <= 0 || j->kept == L->nscans || !j->keep[0])
		return 1;

	/* The stream without the other scans: headers, kept scans, every
	 * marker segment between scans (tables), EOI. */
	size_t len = L->scans[0].start;
	j->subset = malloc(j->n + 2);
	j->rows = malloc((size_t)j->sh * sizeof(*j->rows));
	if (j->subset == NULL || j->rows == NULL)
		return 1;
	memcpy(j->subset, j->d, len);
	for (int i = 0; i < L->nscans; i++) {
		const struct jpeg_scan *s = &L->scans[i];
		size_t next = i + 1 < L->nscans ? L->scans[i + 1].start : L->eoi;
		size_t from = j->keep[i] ? s->start : s->end;
		memcpy(j->subset + len, j->d + from, next - from);
		len += next - from;
	}
	j->subset[len++] = 0xFF;
	j->subset[len++] = 0xD9;

	jpeg_abort_decompress(ci);
	jpeg_mem_src(ci, j->subset, (unsigned long)len);
	if (jpeg_read_header(ci, TRUE) != JPEG_HEADER_OK)
		return 1;
	/* As tjDecompress2 sets them, but without block smoothing. */
	ci->scale_num = (unsigned)j->sf.num;
	ci->scale_denom = (unsigned)j->sf.denom;
	ci->out_color_space = j->cmyk ? JCS_CMYK : JCS_EXT_RGB;
	ci->dct_method = JDCT_ISLOW;
	ci->do_fancy_upsampling = TRUE;
	ci->do_block_smoothing = FALSE;
	jpeg_start_decompress(ci);
	if (ci->output_width != (JDIMENSION)j->sw ||
	    ci->output_height != (JDIMENSION)j->sh ||
	    ci->output_components != (j->cmyk ? 4 : 3))
		return 1;
	size_t stride = (size_t)j->sw * (size_t)ci->output_components;
	for (int y = 0; y < j->sh; y++)
		j->rows[y] = j->out + (size_t)y * stride;
	while (ci->output_scanline < ci->output_height)
		jpeg_read_scanlines(ci, j->rows + ci->output_scanline,
		    ci->output_height - ci->output_scanline);
	jpeg_finish_decompress(ci);
	return j->err.warnings != 0;
}

static int
skip_run(struct skip_job *j)
{
	if (setjmp(j->err.jb) != 0)
		return 1;
	return skip_body(j);
}

/*
 * Fast mode for a progressive JPEG: decodes into out (sw x sh, RGB or
 * CMYK) only the scans that skip_plan() keeps for scale sf.  Returns 0 on
 * success, 1 when the file is left to the full decode: no scan can be
 * skipped, the layout is not one the plan covers, or libjpeg reported an
 * error or a warning (the full decode then gives today's result).
 */
static int
jpeg_decode_skipping(const uint8_t *d, size_t n, const struct jpeg_layout *L,
    tjscalingfactor sf, int cmyk, int sw, int sh, uint8_t *out)
{
	struct skip_job *j = calloc(1, sizeof(*j));
	if (j == NULL)
		return 1;
	j->d = d;
	j->n = n;
	j->L = L;
	j->sf = sf;
	j->cmyk = cmyk;
	j->sw = sw;
	j->sh = sh;
	j->out = out;
	j->ci.err = jpeg_std_error(&j->err.pub);
	j->err.pub.error_exit = skip_error_exit;
	j->err.pub.emit_message = skip_emit_message;
	j->err.pub.output_message = skip_output_message;
	int rc = skip_run(j);
	jpeg_destroy_decompress(&j->ci);
	if (rc == 0)
		last_scans_decoded = j->kept;
	free(j->subset);
	free(j->rows);
	free(j);
	return rc;
}

int
clip_jpeg_decode(const uint8_t *d, size_t n, const clip_decode_opts *opts,
    int probe_only, clip_image_info *info, int *ow, int *oh, uint8_t **orgb,
    cdx_error *err)
{
	struct jpeg_layout L;
	int w = 0, h = 0, cmyk = 0, rc;

	/* Room for the scan list only where a fast-mode decode may use it. */
	struct jpeg_scan *scans = NULL;
	if (!probe_only && opts != NULL && opts->min_short > 0 &&
	    !opts->all_scans)
		scans = malloc(JPEG_MAX_SCANS * sizeof(*scans));
	jpeg_walk(d, n, probe_only, scans, &L);
	if (!probe_only)
		last_scans_total = last_scans_decoded = L.nscans;
	info->format = CLIP_FORMAT_JPEG;
	clip_exif_read(L.exif, L.exif_len, &info->orientation,
	    &info->capture_time);

	tjhandle tj = tjInitDecompress();
	if (tj == NULL) {
		free(scans);
		return cdx_error_set(err, CDX_ENOMEM,
		    "cannot create a JPEG decoder");
	}
	rc = jpeg_header(tj, d, n, &L, &w, &h, &cmyk, err);
	if (rc != 0)
		goto out_destroy;
	if (w <= 0 || h <= 0) {
		rc = cdx_error_set(err, CDX_EFORMAT,
		    "corrupt JPEG header: size %d x %d", w, h);
		goto out_destroy;
	}
	int swap = info->orientation >= 5;
	info->width = swap ? h : w;
	info->height = swap ? w : h;
	if ((rc = clip_check_limit(opts, CLIP_FORMAT_JPEG, (uint64_t)w,
	    (uint64_t)h, err)) != 0)
		goto out_destroy;
	if (probe_only)
		goto out_destroy;
	if (!L.complete) {
		rc = cdx_error_set(err, CDX_EFORMAT,
		    "truncated JPEG (%zu bytes): no end-of-image marker after "
		    "the image data", n);
		goto out_destroy;
	}

	tjscalingfactor sf = jpeg_pick_scale(w, h,
	    opts != NULL ? opts->min_short : 0);
	int sw = tj_scaled(w, sf), sh = tj_scaled(h, sf);
	int pf = cmyk ? TJPF_CMYK : TJPF_RGB;
	size_t bpp = (size_t)tjPixelSize[pf];
	uint8_t *buf = malloc((size_t)sw * (size_t)sh * bpp);
	if (buf == NULL) {
		rc = cdx_error_set(err, CDX_ENOMEM,
		    "no memory for a %d x %d image", sw, sh);
		goto out_destroy;
	}
	if (L.scans_ok && L.nscans <= JPEG_MAX_SCANS && sf.num < sf.denom &&
	    jpeg_decode_skipping(d, n, &L, sf, cmyk, sw, sh, buf) == 0) {
		/* decoded from the scans the scaled IDCT needs */
	} else if (tjDecompress2(tj, d, (unsigned long)n, buf, sw, 0, sh, pf,
	    TJFLAG_LIMITSCANS) != 0 && tjGetErrorCode(tj) != TJERR_WARNING) {
		rc = cdx_error_set(err, CDX_EFORMAT, "corrupt JPEG: %s",
		    tjGetErrorStr2(tj));
		free(buf);
		goto out_destroy;
	}
	if (cmyk) {
		clip_cmyk_to_rgb(buf, (size_t)sw * sh);
		uint8_t *shrunk = realloc(buf, (size_t)sw * sh * 3);
		if (shrunk != NULL)
			buf = shrunk;
	}
	*ow = sw;
	*oh = sh;
	*orgb = buf;
	rc = 0;
out_destroy:
	tjDestroy(tj);
	free(scans);
	return rc;
}

/* ---- PNG ----------------------------------------------------------------- */

static int
png_error(int e, cdx_error *err)
{
	if (e == SPNG_EMEM)
		return cdx_error_set(err, CDX_ENOMEM, "PNG: out of memory");
	if (e == SPNG_EOF)
		return cdx_error_set(err, CDX_EFORMAT,
		    "truncated PNG: the data ends early");
	return cdx_error_set(err, CDX_EFORMAT, "corrupt PNG: %s",
	    spng_strerror(e));
}

/* Expands decoded 16-bit gray (host-endian) to RGB, keeping the high byte. */
static void
gray16_to_rgb(const uint16_t *in, uint8_t *out, size_t npix)
{
	for (size_t i = 0; i < npix; i++) {
		uint8_t v = (uint8_t)(in[i] >> 8);
		out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = v;
	}
}

/* As Pillow's getexif(): without an EXIF Orientation tag, the last text
 * chunk (before IDAT) keyed "XML:com.adobe.xmp" may give one. */
static int
png_xmp_orientation(spng_ctx *ctx)
{
	uint32_t n = 0;
	int o = 0;
	if (spng_get_text(ctx, NULL, &n) != 0 || n == 0 || n > 4096)
		return 1;
	struct spng_text *t = calloc(n, sizeof(*t));
	if (t == NULL)
		return 1;
	if (spng_get_text(ctx, t, &n) == 0)
		for (uint32_t i = 0; i < n; i++)
			if (strcmp(t[i].keyword, "XML:com.adobe.xmp") == 0)
				o = clip_xmp_orientation(t[i].text,
				    t[i].length);
	free(t);
	return o >= 1 && o <= 8 ? o : 1;
}

int
clip_png_decode(const uint8_t *d, size_t n, const clip_decode_opts *opts,
    int probe_only, clip_image_info *info, int *ow, int *oh, uint8_t **orgb,
    cdx_error *err)
{
	struct spng_ihdr ihdr;
	struct spng_exif exif;
	int rc, e;

	info->format = CLIP_FORMAT_PNG;
	spng_ctx *ctx = spng_ctx_new(0);
	if (ctx == NULL)
		return cdx_error_set(err, CDX_ENOMEM,
		    "cannot create a PNG decoder");
	spng_set_chunk_limits(ctx, (size_t)1 << 26, (size_t)1 << 26);
	if ((e = spng_set_png_buffer(ctx, d, n)) != 0 ||
	    (e = spng_get_ihdr(ctx, &ihdr)) != 0) {
		rc = png_error(e, err);
		goto out_free_ctx;
	}
	if (ihdr.width == 0 || ihdr.height == 0 || ihdr.width > INT_MAX ||
	    ihdr.height > INT_MAX) {
		rc = cdx_error_set(err, CDX_EFORMAT,
		    "corrupt PNG header: size %u x %u", ihdr.width,
		    ihdr.height);
		goto out_free_ctx;
	}
	int has_orientation = 0;
	if (spng_get_exif(ctx, &exif) == 0)
		has_orientation = clip_exif_read((const uint8_t *)exif.data,
		    exif.length, &info->orientation, &info->capture_time);
	if (!has_orientation)
		info->orientation = png_xmp_orientation(ctx);
	int w = (int)ihdr.width, h = (int)ihdr.height;
	int swap = info->orientation >= 5;
	info->width = swap ? h : w;
	info->height = swap ? w : h;
	if ((rc = clip_check_limit(opts, CLIP_FORMAT_PNG, ihdr.width, ihdr.height,
	    err)) != 0 || probe_only)
		goto out_free_ctx;

	int gray16 = ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE &&
	    ihdr.bit_depth == 16;
	int fmt = gray16 ? SPNG_FMT_PNG : SPNG_FMT_RGB8;
	size_t size = 0;
	if ((e = spng_decoded_image_size(ctx, fmt, &size)) != 0) {
		rc = png_error(e, err);
		goto out_free_ctx;
	}
	size_t npix = (size_t)w * (size_t)h;
	uint8_t *buf = malloc(size > npix * 3 ? size : npix * 3);
	if (buf == NULL) {
		rc = cdx_error_set(err, CDX_ENOMEM,
		    "no memory for a %d x %d image", w, h);
		goto out_free_ctx;
	}
	if ((e = spng_decode_image(ctx, buf, size, fmt, 0)) != 0) {
		rc = png_error(e, err);
		free(buf);
		goto out_free_ctx;
	}
	if (gray16) {
		uint8_t *rgb = malloc(npix * 3);
		if (rgb == NULL) {
			free(buf);
			rc = cdx_error_set(err, CDX_ENOMEM,
			    "no memory for a %d x %d image", w, h);
			goto out_free_ctx;
		}
		gray16_to_rgb((const uint16_t *)(void *)buf, rgb, npix);
		free(buf);
		buf = rgb;
	}
	*ow = w;
	*oh = h;
	*orgb = buf;
	rc = 0;
out_free_ctx:
	spng_ctx_free(ctx);
	return rc;
}

/* ---- orientation ----------------------------------------------------------- */

/* Returns a new w x h (as displayed) buffer holding `src` (sw x sh, as
 * stored) turned upright for EXIF orientation o (2..8), or NULL. */
uint8_t *
clip_orient(const uint8_t *src, int sw, int sh, int o, int *ow, int *oh)
{
	int swap = o >= 5;
	int w = swap ? sh : sw, h = swap ? sw : sh;
	/* Source address of output pixel (x, y) = base + x * dx + y * dy. */
	ptrdiff_t px = 3, row = (ptrdiff_t)sw * 3;
	ptrdiff_t first = 0, dx = px, dy = row;
	switch (o) {
	case 2: first = (ptrdiff_t)(sw - 1) * px; dx = -px; dy = row; break;
	case 3: first = (ptrdiff_t)(sh - 1) * row + (ptrdiff_t)(sw - 1) * px;
		dx = -px; dy = -row; break;
	case 4: first = (ptrdiff_t)(sh - 1) * row; dx = px; dy = -row; break;
	case 5: first = 0; dx = row; dy = px; break;
	case 6: first = (ptrdiff_t)(sh - 1) * row; dx = -row; dy = px; break;
	case 7: first = (ptrdiff_t)(sh - 1) * row + (ptrdiff_t)(sw - 1) * px;
		dx = -row; dy = -px; break;
	case 8: first = (ptrdiff_t)(sw - 1) * px; dx = row; dy = -px; break;
	}
	uint8_t *out = malloc((size_t)w * (size_t)h * 3);
	if (out == NULL)
		return NULL;
	/* Tiles keep both the reads and the writes in cache for transposes. */
	enum { T = 32 };
	for (int by = 0; by < h; by += T) {
		int ey = by + T < h ? by + T : h;
		for (int bx = 0; bx < w; bx += T) {
			int ex = bx + T < w ? bx + T : w;
			for (int y = by; y < ey; y++) {
				const uint8_t *s = src + first + y * dy + bx * dx;
				uint8_t *dst = out + ((size_t)y * w + bx) * 3;
				for (int x = bx; x < ex; x++) {
					dst[0] = s[0];
					dst[1] = s[1];
					dst[2] = s[2];
					dst += 3;
					s += dx;
				}
			}
		}
	}
	*ow = w;
	*oh = h;
	return out;
}

/* ---- public ------------------------------------------------------------------ */

static int
decode_any(const void *data, size_t len, const clip_decode_opts *opts,
    int probe_only, clip_image_info *info, int *w, int *h, uint8_t **rgb,
    cdx_error *err)
{
	const uint8_t *d = data;
	if (data == NULL && len != 0)
		return cdx_error_set(err, CDX_EINVAL, "no data");
	memset(info, 0, sizeof(*info));
	info->orientation = 1;
	info->capture_time = INT64_MIN;
	int content, rc, fmt = clip_image_sniff(d, len, &content);
	if (fmt == CLIP_FORMAT_UNKNOWN)
		return unknown_format(len, content, err);
	static const clip_format_decoder dec[] = {
		[CLIP_FORMAT_JPEG] = clip_jpeg_decode,
		[CLIP_FORMAT_PNG] = clip_png_decode,
		[CLIP_FORMAT_HEIF] = clip_heif_decode,
		[CLIP_FORMAT_AVIF] = clip_heif_decode,
		[CLIP_FORMAT_WEBP] = clip_webp_decode,
		[CLIP_FORMAT_TIFF] = clip_tiff_decode,
		[CLIP_FORMAT_GIF] = clip_gif_decode,
		[CLIP_FORMAT_BMP] = clip_bmp_decode,
		[CLIP_FORMAT_RAW] = clip_raw_decode,
	};
	info->format = fmt;
	rc = dec[fmt](d, len, opts, probe_only, info, w, h, rgb, err);
	/* No decoder leaves a size a caller could trip over. */
	if (rc == 0 && !probe_only && (*w <= 0 || *h <= 0 || *rgb == NULL)) {
		free(*rgb);
		*rgb = NULL;
		rc = cdx_error_set(err, CDX_EINTERNAL, "%s decoder gave no "
		    "pixels", clip_image_format_name(fmt));
	}
	return rc;
}

int
clip_image_probe(const void *data, size_t len, clip_image_info *out,
    cdx_error *err)
{
	clip_image_info info;
	int w, h;
	uint8_t *rgb = NULL;
	if (out == NULL)
		return cdx_error_set(err, CDX_EINVAL, "probe: no output");
	/* The probe accepts any size: only decoding is limited. */
	clip_decode_opts o = { .max_pixels = UINT64_MAX, .min_short = 0 };
	int rc = decode_any(data, len, &o, 1, &info, &w, &h, &rgb, err);
	if (rc == 0)
		*out = info;
	return rc;
}

int
clip_image_decode(const void *data, size_t len, const clip_decode_opts *opts,
    clip_image *out, cdx_error *err)
{
	clip_image_info info;
	int w = 0, h = 0;
	uint8_t *rgb = NULL;
	if (out == NULL)
		return cdx_error_set(err, CDX_EINVAL, "decode: no output");
	last_scans_total = last_scans_decoded = 0;
	int rc = decode_any(data, len, opts, 0, &info, &w, &h, &rgb, err);
	if (rc != 0)
		return rc;
	if (info.orientation != 1) {
		int ow, oh;
		uint8_t *up = clip_orient(rgb, w, h, info.orientation, &ow, &oh);
		free(rgb);
		if (up == NULL)
			return cdx_error_set(err, CDX_ENOMEM,
			    "no memory to rotate a %d x %d image", w, h);
		rgb = up;
		w = ow;
		h = oh;
	}
	out->width = w;
	out->height = h;
	out->rgb = rgb;
	out->info = info;
	return 0;
}

/* Files larger than this are refused before reading (no image within the
 * default pixel limit needs it). */
#define CLIP_MAX_FILE_BYTES ((size_t)1 << 30)

int
clip_image_load(const char *path, const clip_decode_opts *opts,
    clip_image *out, cdx_error *err)
{
	char *buf;
	size_t len;

	if (path == NULL || out == NULL)
		return cdx_error_set(err, CDX_EINVAL, "load: no path or output");
	/* read(), not mmap(): a file shrinking under us must not SIGBUS. */
	int rc = cdx_read_file(path, CLIP_MAX_FILE_BYTES, &buf, &len, err);
	if (rc != 0)
		return rc;
	rc = clip_image_decode(buf, len, opts, out, err);
	if (rc != 0 && err != NULL) {
		char msg[CDX_ERRMSG_MAX];
		memcpy(msg, err->msg, sizeof(msg));
		cdx_error_set(err, rc, "%s: %s", path, msg);
	}
	free(buf);
	return rc;
}

void
clip_image_free(clip_image *img)
{
	if (img == NULL)
		return;
	free(img->rgb);
	img->rgb = NULL;
	img->width = img->height = 0;
}
