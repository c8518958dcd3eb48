/*
 * probe.c - few-shot linear probes (classify.h, cls_probe_fit and
 * cls_probe_set): L2-regularised logistic regression fitted by Newton's
 * method, and its stratified k-fold cross-validation.
 *
 * Parameters t = (w, b), D = dim + 1 of them; each example's row is
 * (x, 1).  The objective, in double precision,
 *   f(t) = sum_i [softplus(z_i) - y_i z_i] + l2/2 |w|^2,  z_i = w.x_i + b
 * has gradient X^T (p - y) + l2 (w, 0) and Hessian X^T S X + diag(l2..l2,
 * 0) with S = diag(p_i (1 - p_i)).  Each Newton step builds the Hessian
 * with DSYRKs (blocks of rows scaled by sqrt(s_i)), factors it with the blocked
 * Cholesky below (DTRSM and DSYRK per block) and solves with two DTRSVs;
 * a backtracking line search keeps f decreasing.  It stops when |grad|
 * falls below PROBE_GTOL * n.  The cross-validation folds start from the
 * fit on every example (a few steps each).  Memory: the n x D examples
 * in double, a D x D Hessian and PROBE_ROW_BLOCK x D scratch.
 */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "classify/classify.h"

#define PROBE_GTOL 1e-6        /* gradient norm per example at the stop */
#define PROBE_MAX_ITER 50
#define PROBE_FOLDS 5
#define PROBE_L2_PER_EXAMPLE 1e-2
#define PROBE_ROW_BLOCK 256    /* rows scaled at once for the Hessian */
/* The intercept's own ridge: keeps the Hessian positive definite when
 * every example is fitted with certainty (p (1 - p) underflows). */
#define PROBE_B_RIDGE 1e-9

/* Scratch of one fit over at most n rows of D. */
struct fit {
	size_t n, D;
	double *x;        /* n x D rows (x_i, 1) */
	double *y;        /* n */
	double *z;        /* n: the logits X t */
	double *zs;       /* PROBE_ROW_BLOCK x D: rows scaled by sqrt(s_i) */
	double *h;        /* D x D */
	double *g, *d, *t_new; /* D */
	double *p;        /* n: the residuals p - y */
};

static void fit_free(struct fit *f)
{
	free(f->x);
	free(f->y);
	free(f->z);
	free(f->zs);
	free(f->h);
	free(f->g);
	free(f->d);
	free(f->t_new);
	free(f->p);
}

static int fit_alloc(struct fit *f, size_t n, size_t D)
{
	memset(f, 0, sizeof(*f));
	if (n > SIZE_MAX / sizeof(double) / D ||
	    D > SIZE_MAX / sizeof(double) / D)
		return CDX_ENOMEM;
	f->x = malloc(n * D * sizeof(double));
	f->zs = malloc(PROBE_ROW_BLOCK * D * sizeof(double));
	f->h = malloc(D * D * sizeof(double));
	f->y = malloc(n * sizeof(double));
	f->z = malloc(n * sizeof(double));
	f->p = malloc(n * sizeof(double));
	f->g = malloc(D * sizeof(double));
	f->d = malloc(D * sizeof(double));
	f->t_new = malloc(D * sizeof(double));
	if (!f->x || !f->zs || !f->h || !f->y || !f->z || !f->p || !f->g ||
	    !f->d || !f->t_new) {
		fit_free(f);
		return CDX_ENOMEM;
	}
	f->n = n;
	f->D = D;
	return 0;
}

static double softplus(double z)
{
	return (z > 0 ? z : 0) + log1p(exp(-fabs(z)));
}

static double sigmoid(double z)
{
	if (z >= 0)
		return 1.0 / (1.0 + exp(-z));
	double e = exp(z);
	return e / (1.0 + e);
}

/* z = X t (f->n rows) and the objective at t. */
static double objective(struct fit *f, const double *t, double l2)
{
	size_t n = f->n, D = f->D;
	double obj = 0, ww = 0;

	cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)D, 1.0, f->x,
		    (int)D, t, 1, 0.0, f->z, 1);
	for (size_t i = 0; i < n; i++)
		obj += softplus(f->z[i]) - f->y[i] * f->z[i];
	for (size_t k = 0; k + 1 < D; k++)
		ww += t[k] * t[k];
	return obj + 0.5 * l2 * ww;
}

/* The unblocked Cholesky factor of a's leading m x m upper triangle (row
 * stride D), in place: each column's rank-1 update of the trailing
 * triangle is one DSYR.  Returns 0, or -1 when a pivot is not positive. */
static int cholesky_unblocked(double *a, size_t m, size_t D)
{
	for (size_t i = 0; i < m; i++) {
		double piv = a[i * D + i];
		size_t rest = m - i - 1;

		if (!(piv > 0) || !isfinite(piv))
			return -1;
		piv = sqrt(piv);
		a[i * D + i] = piv;
		for (size_t j = i + 1; j < m; j++)
			a[i * D + j] /= piv;
		if (rest)
			cblas_dsyr(CblasRowMajor, CblasUpper, (int)rest, -1.0,
				   a + i * D + i + 1, 1,
				   a + (i + 1) * D + i + 1, (int)D);
	}
	return 0;
}

/* The Cholesky factor U (upper, U^T U = A) of the D x D row-major upper
 * triangle of a, in place, by blocks of CHOL_BLOCK columns: factor the
 * diagonal block, solve the panel beside it (DTRSM), update the trailing
 * triangle (DSYRK), so that most of the work is level-3 BLAS.  Returns
 * 0, or -1 when the matrix is not positive definite. */
#define CHOL_BLOCK 64
static int cholesky_upper(double *a, size_t D)
{
	for (size_t j = 0; j < D; j += CHOL_BLOCK) {
		size_t jb = D - j < CHOL_BLOCK ? D - j : CHOL_BLOCK;
		size_t rest = D - j - jb;
		double *a11 = a + j * D + j;

		if (cholesky_unblocked(a11, jb, D) != 0)
			return -1;
		if (!rest)
			break;
		/* U12 = U11^-T A12;  A22 -= U12^T U12 */
		cblas_dtrsm(CblasRowMajor, CblasLeft, CblasUpper, CblasTrans,
			    CblasNonUnit, (int)jb, (int)rest, 1.0, a11, (int)D,
			    a11 + jb, (int)D);
		cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)rest,
			    (int)jb, -1.0, a11 + jb, (int)D, 1.0,
			    a + (j + jb) * D + j + jb, (int)D);
	}
	return 0;
}

/* Newton's method on f's n rows from the D parameters in t, which
 * receives the result.  Returns the steps taken, or -1 when the Hessian
 * cannot be factored. */
static int newton(struct fit *f, double l2, int max_iter, double *t)
{
	size_t n = f->n, D = f->D;
	double obj;
	int it;

	obj = objective(f, t, l2);
	for (it = 0; it < max_iter; it++) {
		double gn = 0, slope = 0, step = 1, obj_new = obj;
		int tries;

		/* the residuals p - y and the gradient */
		for (size_t i = 0; i < n; i++)
			f->p[i] = sigmoid(f->z[i]) - f->y[i];
		cblas_dgemv(CblasRowMajor, CblasTrans, (int)n, (int)D, 1.0,
			    f->x, (int)D, f->p, 1, 0.0, f->g, 1);
		for (size_t k = 0; k + 1 < D; k++)
			f->g[k] += l2 * t[k];
		for (size_t k = 0; k < D; k++)
			gn += f->g[k] * f->g[k];
		if (sqrt(gn) <= PROBE_GTOL * (double)n)
			break;

		/* H = sum over blocks of rows scaled by sqrt(s_i) of
		 * Zs^T Zs, + diag(l2, .., l2, ridge); solve H d = g */
		for (size_t r0 = 0; r0 < n; r0 += PROBE_ROW_BLOCK) {
			size_t rb = n - r0 < PROBE_ROW_BLOCK ? n - r0
							     : PROBE_ROW_BLOCK;
			for (size_t r = 0; r < rb; r++) {
				double p = sigmoid(f->z[r0 + r]);
				double s = sqrt(p * (1 - p));
				const double *xr = f->x + (r0 + r) * D;
				for (size_t k = 0; k < D; k++)
					f->zs[r * D + k] = s * xr[k];
			}
			cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans,
				    (int)D, (int)rb, 1.0, f->zs, (int)D,
				    r0 ? 1.0 : 0.0, f->h, (int)D);
		}
		for (size_t k = 0; k + 1 < D; k++)
			f->h[k * D + k] += l2;
		f->h[(D - 1) * D + D - 1] += PROBE_B_RIDGE;
		if (cholesky_upper(f->h, D) != 0)
			return -1;
		memcpy(f->d, f->g, D * sizeof(double));
		cblas_dtrsv(CblasRowMajor, CblasUpper, CblasTrans,
			    CblasNonUnit, (int)D, f->h, (int)D, f->d, 1);
		cblas_dtrsv(CblasRowMajor, CblasUpper, CblasNoTrans,
			    CblasNonUnit, (int)D, f->h, (int)D, f->d, 1);

		/* backtracking (Armijo) along -d */
		for (size_t k = 0; k < D; k++)
			slope += f->g[k] * f->d[k];
		for (tries = 0; tries < 40; tries++) {
			for (size_t k = 0; k < D; k++)
				f->t_new[k] = t[k] - step * f->d[k];
			obj_new = objective(f, f->t_new, l2);
			if (obj_new <= obj - 1e-4 * step * slope)
				break;
			step *= 0.5;
		}
		if (tries == 40) {
			/* no decrease left at float64: converged as far as
			 * it goes; z must match t again */
			objective(f, t, l2);
			break;
		}
		memcpy(t, f->t_new, D * sizeof(double));
		obj = obj_new;
	}
	return it;
}

/* Loads rows rows[0..m-1] of the examples into f (m <= f's capacity). */
static void load_rows(struct fit *f, const float *x, const uint8_t *y,
		      size_t dim, const size_t *rows, size_t m)
{
	f->n = m;
	for (size_t r = 0; r < m; r++) {
		const float *src = x + rows[r] * dim;
		double *dst = f->x + r * f->D;
		for (size_t k = 0; k < dim; k++)
			dst[k] = (double)src[k];
		dst[dim] = 1.0;
		f->y[r] = y[rows[r]] ? 1.0 : 0.0;
	}
}

static double l2_for(const cls_probe_opts *o, size_t n)
{
	return o && o->l2 > 0 ? o->l2 : PROBE_L2_PER_EXAMPLE * (double)n;
}

/* A fixed pseudo-random permutation step (splitmix64). */
static uint64_t mix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

int cls_probe_fit(const float *x, const uint8_t *y, size_t n, size_t dim,
		  const cls_probe_opts *opts, float *w, float *b,
		  cls_probe_report *rep, cdx_error *err)
{
	size_t n_pos = 0, n_neg = 0, D = dim + 1, small, *fold = NULL;
	size_t *rows = NULL, *order = NULL;
	int max_iter, folds, iters, rc;
	double *t = NULL, *t_fold = NULL, acc = 0;
	struct fit f = { 0 };
	uint64_t seed = 0x636c6970646578ull; /* fixed: folds are repeatable */

	if (!x || !y || !w || !b || dim == 0 || dim >= INT32_MAX ||
	    n >= INT32_MAX)
		return cdx_error_set(err, CDX_EINVAL, "nothing to learn from");
	for (size_t i = 0; i < n; i++) {
		if (y[i] > 1)
			return cdx_error_set(err, CDX_EINVAL,
					     "example %zu: label %u is not 0 "
					     "or 1", i, (unsigned)y[i]);
		n_pos += y[i];
	}
	n_neg = n - n_pos;
	if (n_pos < 2)
		return cdx_error_set(err, CDX_EINVAL,
				     "learning needs at least 2 positive "
				     "examples (%zu given)", n_pos);
	if (n_neg < 2)
		return cdx_error_set(err, CDX_EINVAL,
				     "learning needs at least 2 negative "
				     "examples (%zu given)", n_neg);
	for (size_t i = 0; i < n * dim; i++)
		if (!isfinite(x[i]))
			return cdx_error_set(err, CDX_EINVAL,
					     "example %zu is not finite",
					     i / dim);
	max_iter = opts && opts->max_iter > 0 ? opts->max_iter
					      : PROBE_MAX_ITER;
	small = n_pos < n_neg ? n_pos : n_neg;
	folds = opts && opts->folds > 0 ? opts->folds : PROBE_FOLDS;
	if (opts && opts->folds == 1)
		return cdx_error_set(err, CDX_EINVAL,
				     "cross-validation needs 2 folds or more");
	if ((size_t)folds > small)
		folds = (int)small;

	rc = fit_alloc(&f, n, D);
	t = malloc(D * sizeof(double));
	t_fold = malloc(D * sizeof(double));
	rows = malloc(n * sizeof(size_t));
	order = malloc(n * sizeof(size_t));
	fold = malloc(n * sizeof(size_t));
	if (rc || !t || !t_fold || !rows || !order || !fold) {
		rc = cdx_error_set(err, CDX_ENOMEM,
				   "a probe of %zu examples of %zu floats", n,
				   dim);
		goto out_free;
	}

	/* Stratified folds: each class in a fixed shuffled order, dealt
	 * round-robin, so every fold holds n_class / folds (+1) of each. */
	for (int cls = 0; cls <= 1; cls++) {
		size_t m = 0;
		for (size_t i = 0; i < n; i++)
			if (y[i] == cls)
				order[m++] = i;
		for (size_t i = m; i > 1; i--) {
			size_t j = (size_t)(mix(&seed) % i), tmp = order[i - 1];
			order[i - 1] = order[j];
			order[j] = tmp;
		}
		for (size_t r = 0; r < m; r++)
			fold[order[r]] = r % (size_t)folds;
	}
	/* the fit on every example, then each fold's from there */
	for (size_t i = 0; i < n; i++)
		rows[i] = i;
	load_rows(&f, x, y, dim, rows, n);
	memset(t, 0, D * sizeof(double));
	iters = newton(&f, l2_for(opts, n), max_iter, t);
	if (iters < 0)
		goto out_singular;
	for (int k = 0; k < folds; k++) {
		size_t m = 0, held = 0, right = 0;

		for (size_t i = 0; i < n; i++)
			if (fold[i] != (size_t)k)
				rows[m++] = i;
		load_rows(&f, x, y, dim, rows, m);
		memcpy(t_fold, t, D * sizeof(double));
		if (newton(&f, l2_for(opts, m), max_iter, t_fold) < 0)
			goto out_singular;
		for (size_t i = 0; i < n; i++) {
			double z = t_fold[dim];
			if (fold[i] != (size_t)k)
				continue;
			for (size_t c = 0; c < dim; c++)
				z += t_fold[c] * (double)x[i * dim + c];
			held++;
			right += (z >= 0) == (y[i] == 1);
		}
		acc += held ? (double)right / (double)held : 0;
	}
	for (size_t c = 0; c < dim; c++)
		w[c] = (float)t[c];
	*b = (float)t[dim];
	if (rep) {
		rep->n_pos = n_pos;
		rep->n_neg = n_neg;
		rep->folds = folds;
		rep->cv_accuracy = acc / folds;
		rep->iterations = iters;
	}
	rc = 0;
	goto out_free;

out_singular:
	rc = cdx_error_set(err, CDX_EINTERNAL,
			   "the probe's Hessian is not positive definite");
out_free:
	fit_free(&f);
	free(t);
	free(t_fold);
	free(rows);
	free(order);
	free(fold);
	return rc;
}

int cls_probe_set(const char *name, const float *w, float b, size_t dim,
		  const uint64_t *pos, size_t n_pos, const uint64_t *neg,
		  size_t n_neg, float threshold, cls_set **out,
		  cdx_error *err)
{
	cls_set *c = NULL;
	int rc;

	if (!w || !out || (n_pos && !pos) || (n_neg && !neg))
		return cdx_error_set(err, CDX_EINVAL, "no probe");
	if (threshold < 0)
		threshold = 0.5f;
	if (!(threshold <= 1))
		return cdx_error_set(err, CDX_EINVAL,
				     "threshold %g is not in [0, 1]",
				     (double)threshold);
	rc = cls_set_new(name, 1, dim, 0, n_pos, n_neg, &c, err);
	if (rc)
		return rc;
	rc = cls_set_label(c, 0, name, err);
	if (rc) {
		cls_set_free(c);
		return rc;
	}
	c->kind = CLS_SIGMOID;
	c->origin = CLS_LEARNED;
	c->multi = 1;
	c->scale = 1.0f;
	c->threshold = threshold;
	memcpy(c->w, w, dim * sizeof(float));
	c->bias[0] = b;
	if (n_pos)
		memcpy(c->pos, pos, n_pos * sizeof(uint64_t));
	if (n_neg)
		memcpy(c->neg, neg, n_neg * sizeof(uint64_t));
	*out = c;
	return 0;
}
