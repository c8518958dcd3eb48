/*
 * demo_render.h - a second renderer of the demo world (header-only,
 * prefix dr_), written apart from tools/train_demo.py so that held-out
 * figures do not share the training renderer's quirks:
 *   - shapes by analytic membership (a point is in a circle, a turned
 *     square, a diamond, a triangle, a five-pointed star or a cross), with
 *     4 x 4 supersampling for anti-aliased edges (the training renderer
 *     draws aliased PIL polygons);
 *   - its own colour values near the named colours, with a little noise;
 *   - plain, striped, dotted, checkered and gradient backgrounds in muted
 *     tones drawn from a wider range, with other periods and angles;
 *   - sizes, positions and rotations drawn at random (a square or diamond
 *     turns at most 20 degrees, so that it stays what it is named).
 * Scenes come from a seed (splitmix64), so a test is reproducible.
 * Used by tests/demo_zeroshot.c and bench/classify_eval.c.
 * Ownership: dr_render writes into the caller's buffer.  Thread-safety:
 * no shared state.  No errors: every function succeeds.
 */
#ifndef TESTS_DEMO_RENDER_H
#define TESTS_DEMO_RENDER_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define DR_MAX_OBJS 4
#define DR_SUB 4               /* supersampling per axis */

enum { DR_CIRCLE, DR_SQUARE, DR_TRIANGLE, DR_STAR, DR_DIAMOND, DR_CROSS,
       DR_N_SHAPES };
enum { DR_PLAIN, DR_STRIPED, DR_DOTTED, DR_CHECKERED, DR_GRADIENT,
       DR_N_BGS };
#define DR_N_COLOURS 8

static const char *const dr_shapes[DR_N_SHAPES] = { "circle", "square",
	"triangle", "star", "diamond", "cross" };
static const char *const dr_shapes_plural[DR_N_SHAPES] = { "circles",
	"squares", "triangles", "stars", "diamonds", "crosses" };
static const char *const dr_colours[DR_N_COLOURS] = { "red", "green",
	"blue", "yellow", "orange", "purple", "white", "black" };
static const char *const dr_bgs[DR_N_BGS] = { "plain", "striped", "dotted",
	"checkered", "gradient" };
static const char *const dr_counts[4] = { "one", "two", "three", "four" };
static const char *const dr_positions[9] = { "top left", "top", "top right",
	"left", "center", "right", "bottom left", "bottom", "bottom right" };

/* This renderer's own values of the named colours. */
static const uint8_t dr_rgb[DR_N_COLOURS][3] = {
	{ 205, 40, 40 }, { 45, 160, 65 }, { 45, 80, 210 }, { 235, 215, 55 },
	{ 238, 135, 35 }, { 130, 50, 170 }, { 244, 244, 238 }, { 28, 26, 30 },
};

typedef struct dr_obj {
	double cx, cy, r, rot; /* centre and radius as fractions of the side */
} dr_obj;

typedef struct dr_scene {
	int shape, colour, bg, count; /* count 1..4 */
	int large;                    /* 1: large objects (count <= 2) */
	int pos;                      /* one object: its 3 x 3 cell 0..8
	                                 (dr_positions), else -1 */
	dr_obj obj[DR_MAX_OBJS];
	double fg[3];                 /* the object colour, noise included */
	double tone[2][3];            /* background tones */
	double period, angle, phase;  /* background pattern */
} dr_scene;

/* splitmix64: the next 64 random bits of *s. */
static inline uint64_t
dr_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [lo, hi). */
static inline double
dr_uni(uint64_t *s, double lo, double hi)
{
	return lo + (hi - lo) * (double)(dr_next(s) >> 11) * 0x1.0p-53;
}

static inline int
dr_int(uint64_t *s, int n)
{
	return (int)(dr_next(s) % (uint64_t)n);
}

/* A muted tone: grey-ish, value 0.3..0.85, at least `far` (L1, 0..765)
 * from the object colour. */
static inline void
dr_tone(uint64_t *s, const double fg[3], double far, double out[3])
{
	for (;;) {
		double v = dr_uni(s, 0.3, 0.85) * 255, sat = dr_uni(s, 0, 0.35);
		double d = 0;
		for (int c = 0; c < 3; c++) {
			out[c] = v * (1 - sat * dr_uni(s, 0, 1));
			d += fabs(out[c] - fg[c]);
		}
		if (d > far)
			return;
	}
}

/* A random scene from *seed. */
static inline void
dr_scene_random(uint64_t *seed, dr_scene *sc)
{
	static const double turn[DR_N_SHAPES] = { 0, 0.35, 3.1416, 3.1416,
		0.35, 0.5 };
	memset(sc, 0, sizeof *sc);
	sc->shape = dr_int(seed, DR_N_SHAPES);
	sc->colour = dr_int(seed, DR_N_COLOURS);
	sc->bg = dr_int(seed, DR_N_BGS);
	sc->count = 1 + dr_int(seed, 4);
	sc->large = sc->count <= 2 && dr_int(seed, 2);
	sc->pos = -1;
	for (int c = 0; c < 3; c++)
		sc->fg[c] = fmin(255, fmax(0, dr_rgb[sc->colour][c] +
		    dr_uni(seed, -12, 12)));
	dr_tone(seed, sc->fg, 170, sc->tone[0]);
	double sign = dr_int(seed, 2) ? 1 : -1, delta = dr_uni(seed, 45, 85);
	for (int c = 0; c < 3; c++)
		sc->tone[1][c] = fmin(255, fmax(0, sc->tone[0][c] +
		    sign * delta));
	sc->period = dr_uni(seed, 0.1, 0.17);
	sc->angle = dr_uni(seed, 0, 3.1416);
	sc->phase = dr_uni(seed, 0, 1);
	double r_lo = sc->large ? 0.17 : 0.07, r_hi = sc->large ? 0.24 : 0.11;
	if (sc->count == 1) {
		sc->pos = dr_int(seed, 9);
		double r = dr_uni(seed, r_lo, r_hi);
		double cx = (sc->pos % 3 + 0.5) / 3 + dr_uni(seed, -0.07, 0.07);
		double cy = (sc->pos / 3 + 0.5) / 3 + dr_uni(seed, -0.07, 0.07);
		sc->obj[0] = (dr_obj){ fmin(fmax(cx, r + 0.02), 0.98 - r),
			fmin(fmax(cy, r + 0.02), 0.98 - r), r,
			dr_uni(seed, -turn[sc->shape], turn[sc->shape]) };
		return;
	}
	for (int placed = 0, tries = 0; placed < sc->count; tries++) {
		if (tries > 5000)
			placed = tries = 0; /* crowded: start over */
		double r = dr_uni(seed, r_lo, r_hi);
		dr_obj o = { dr_uni(seed, r + 0.02, 0.98 - r),
			dr_uni(seed, r + 0.02, 0.98 - r), r,
			dr_uni(seed, -turn[sc->shape], turn[sc->shape]) };
		int ok = 1;
		for (int k = 0; k < placed; k++)
			ok &= hypot(o.cx - sc->obj[k].cx, o.cy - sc->obj[k].cy) >
			    1.2 * (o.r + sc->obj[k].r);
		if (ok)
			sc->obj[placed++] = o;
	}
}

/* Whether (x, y), in units of the radius around the centre and already
 * turned into the shape's frame (y down), is inside the shape. */
static inline int
dr_inside(int shape, double x, double y)
{
	double ax = fabs(x), ay = fabs(y);
	switch (shape) {
	case DR_CIRCLE:
		return x * x + y * y <= 1;
	case DR_SQUARE:
		return ax <= M_SQRT1_2 && ay <= M_SQRT1_2;
	case DR_DIAMOND:
		return ax / 0.7 + ay <= 1;
	case DR_CROSS:
		return (ax <= 0.36 && ay <= 1) || (ay <= 0.36 && ax <= 1);
	case DR_TRIANGLE: {
		/* apex up, circumradius 1, centred a little low as the eye
		 * expects: three half-planes */
		double yy = y - 0.12;
		return yy <= 0.5 && yy >= -1 + 1.732 * ax * 1.0 &&
		    yy >= -1;
	}
	default: { /* DR_STAR: five points, inner radius 0.45 */
		double a = atan2(x, -y), rr = hypot(x, y);
		double sector = 2 * M_PI / 5;
		double t = fmod(fmod(a, sector) + sector, sector) / sector;
		double u = fabs(t - 0.5) * 2; /* 1 at a point, 0 between */
		/* the edge from a point (radius 1, angle 0) to an inner
		 * corner (radius 0.45, half a sector away), in polar form */
		double th = (1 - u) * sector / 2;
		double px = 1, py = 0;
		double qx = 0.45 * cos(sector / 2), qy = 0.45 * sin(sector / 2);
		/* ray at angle th from the origin meets the edge p-q */
		double dx = cos(th), dy = sin(th);
		double ex = qx - px, ey = qy - py;
		double den = dx * ey - dy * ex;
		double edge = (px * ey - py * ex) / den;
		return rr <= edge;
	}
	}
}

/* The background's value in [0, 1] (0: tone 0, 1: tone 1) at (x, y),
 * fractions of the side. */
static inline double
dr_bg_mix(const dr_scene *sc, double x, double y)
{
	double c = cos(sc->angle), s = sin(sc->angle), p = sc->period;
	switch (sc->bg) {
	case DR_STRIPED: {
		/* stripes at angle 0 (vertical), 90 degrees or 45 */
		double a = sc->angle < 1.0 ? 0 : sc->angle < 2.0 ? M_PI / 2
		    : M_PI / 4;
		double u = x * cos(a) + y * sin(a);
		return fmod(u / p + sc->phase + 8, 1.0) < 0.45;
	}
	case DR_DOTTED: {
		/* a square grid of dots */
		double u = fmod(x / p + sc->phase + 8, 1.0) - 0.5;
		double v = fmod(y / p + sc->phase + 8, 1.0) - 0.5;
		return u * u + v * v <= 0.22 * 0.22;
	}
	case DR_CHECKERED: {
		double q = p * 1.2;
		int i = (int)floor(x / q + sc->phase), j = (int)floor(y / q);
		return ((i + j) & 1) != 0;
	}
	case DR_GRADIENT: {
		double u = 0.5 + (x - 0.5) * c + (y - 0.5) * s;
		return fmin(1, fmax(0, u));
	}
	default:
		return 0;
	}
}

/* Renders sc as side x side interleaved RGB into rgb (3 * side^2 bytes),
 * each pixel the mean of DR_SUB x DR_SUB samples. */
static inline void
dr_render(const dr_scene *sc, int side, uint8_t *rgb)
{
	double cs[DR_MAX_OBJS], sn[DR_MAX_OBJS];
	for (int k = 0; k < sc->count; k++) {
		cs[k] = cos(sc->obj[k].rot);
		sn[k] = sin(sc->obj[k].rot);
	}
	for (int py = 0; py < side; py++)
		for (int px = 0; px < side; px++) {
			double acc[3] = { 0, 0, 0 };
			for (int sy = 0; sy < DR_SUB; sy++)
				for (int sx = 0; sx < DR_SUB; sx++) {
					double x = (px + (sx + 0.5) / DR_SUB) / side;
					double y = (py + (sy + 0.5) / DR_SUB) / side;
					int in = 0;
					for (int k = 0; k < sc->count && !in; k++) {
						const dr_obj *o = &sc->obj[k];
						double dx = (x - o->cx) / o->r;
						double dy = (y - o->cy) / o->r;
						/* every shape lies within 1.1 radii */
						if (dx * dx + dy * dy > 1.21)
							continue;
						in = dr_inside(sc->shape,
						    dx * cs[k] + dy * sn[k],
						    -dx * sn[k] + dy * cs[k]);
					}
					double m = in ? 0 : dr_bg_mix(sc, x, y);
					for (int ch = 0; ch < 3; ch++)
						acc[ch] += in ? sc->fg[ch] :
						    sc->tone[0][ch] * (1 - m) +
						    sc->tone[1][ch] * m;
				}
			for (int ch = 0; ch < 3; ch++)
				rgb[((size_t)py * side + px) * 3 + ch] =
				    (uint8_t)lrint(acc[ch] / (DR_SUB * DR_SUB));
		}
}

/* ---- the zero-shot label sets (as tools/train_demo.py's ZERO_SHOT) ---- */

enum { DR_SET_SHAPE, DR_SET_COLOUR, DR_SET_COUNT, DR_SET_BG, DR_N_SETS };

static const char *const dr_count_labels[4] = { "one shape", "two shapes",
	"three shapes", "four shapes" };

typedef struct dr_labelset {
	const char *name;
	const char *const *labels;
	int n;
	const char *tmpl;  /* the prompt: "{}" is the label */
} dr_labelset;

static const dr_labelset dr_sets[DR_N_SETS] = {
	{ "shape", dr_shapes, DR_N_SHAPES, "a photo of a {}." },
	{ "colour", dr_colours, DR_N_COLOURS, "a photo of a {} shape." },
	{ "count", dr_count_labels, 4, "a photo of {}." },
	{ "background", dr_bgs, DR_N_BGS,
	  "a photo of a shape on a {} background." },
};

/* The index of sc's true label in set `set`. */
static inline int
dr_truth(const dr_scene *sc, int set)
{
	switch (set) {
	case DR_SET_SHAPE:
		return sc->shape;
	case DR_SET_COLOUR:
		return sc->colour;
	case DR_SET_COUNT:
		return sc->count - 1;
	default:
		return sc->bg;
	}
}

#endif
