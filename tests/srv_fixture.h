/*
 * The in-process daemon of the daemon_* suites: a temporary folder with
 * the tiny test model (tests/testmodel.h) in <tmp>/model and the store at
 * <tmp>/store, a srv_config on them listening on one inproc address, and
 * srv_start/srv_stop.  Every function is static inline.
 *
 *     static tu_srv fx;
 *     tu_srv_dirs(&fx, "learn");              // /tmp/cdx-learn-XXXXXX
 *     tu_srv_config(&fx, NULL, "inproc://daemon-learn-test");
 *     fx.cfg.threads = 1;                     // any other settings
 *     tu_srv_start(&fx, &err);                // fx.srv
 *     ...
 *     tu_srv_teardown(&fx);                   // stops it, removes tmp
 */
#ifndef CDX_TESTS_SRV_FIXTURE_H
#define CDX_TESTS_SRV_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon/srv_internal.h"
#include "encoder/clip.h"
#include "store/store.h"
#include "tests/testmodel.h"

typedef struct tu_srv {
	char tmp[256], model_dir[300], store_dir[300];
	srv_config cfg;   /* borrowed by the daemon until srv_stop */
	srv *srv;         /* NULL when not running */
} tu_srv;

/* Makes /tmp/cdx-TAG-XXXXXX with the tiny model in its "model" folder
 * and names its "store" folder (not made): 0, or -1. */
static inline int
tu_srv_dirs(tu_srv *f, const char *tag)
{
	tm_recipe r;

	memset(f, 0, sizeof(*f));
	snprintf(f->tmp, sizeof(f->tmp), "/tmp/cdx-%s-XXXXXX", tag);
	if (mkdtemp(f->tmp) == NULL)
		return -1;
	snprintf(f->model_dir, sizeof(f->model_dir), "%s/model", f->tmp);
	snprintf(f->store_dir, sizeof(f->store_dir), "%s/store", f->tmp);
	if (mkdir(f->model_dir, 0755) != 0)
		return -1;
	tm_recipe_tiny(&r);
	return tm_write_model(&r, f->model_dir);
}

/* Starts f->cfg afresh on model folder MODEL_DIR (NULL: f->model_dir),
 * the store f->store_dir and the one listen address LISTEN, 1 thread. */
static inline void
tu_srv_config(tu_srv *f, const char *model_dir, const char *listen)
{
	srv_config_init(&f->cfg);
	f->cfg.model_dir = strdup(model_dir != NULL ? model_dir : f->model_dir);
	f->cfg.store_dir = strdup(f->store_dir);
	f->cfg.listen[f->cfg.n_listen++] = strdup(listen);
	f->cfg.threads = 1;
}

/* srv_config_finish and srv_start on f->cfg: 0 and f->srv, or the error
 * (in *err, and on stderr) with f->cfg freed and cleared. */
static inline int
tu_srv_start(tu_srv *f, cdx_error *err)
{
	int rc = srv_config_finish(&f->cfg, err);
	if (rc == 0)
		rc = srv_start(&f->cfg, &f->srv, err);
	if (rc != 0) {
		fprintf(stderr, "daemon: %s\n", err->msg);
		f->srv = NULL;
		srv_config_free(&f->cfg);
		srv_config_init(&f->cfg);
	}
	return rc;
}

/* Stops the daemon, if running, and frees its configuration. */
static inline void
tu_srv_stop(tu_srv *f)
{
	if (f->srv != NULL) {
		srv_stop(f->srv);
		f->srv = NULL;
		srv_config_free(&f->cfg);
		srv_config_init(&f->cfg);
	}
}

/* tu_srv_stop, then removes the temporary folder. */
static inline void
tu_srv_teardown(tu_srv *f)
{
	tu_srv_stop(f);
	if (f->tmp[0] != '\0')
		tm_rmtree(f->tmp);
}

/* Loads the model in f->model_dir and opens a flat store for it at
 * f->store_dir, to put embeddings into before the daemon starts: 0, *m
 * and *st (the caller closes the store, then frees the model), or -1. */
static inline int
tu_srv_store_open(const tu_srv *f, clip_model **m, store **st)
{
	clip_model_params mp;
	cdx_error err;

	*m = NULL;
	*st = NULL;
	clip_model_default_params(&mp);
	if (clip_model_load(f->model_dir, &mp, m, &err) != 0) {
		fprintf(stderr, "clip_model_load: %s\n", err.msg);
		return -1;
	}
	const clip_model_info *info = clip_model_get_info(*m);
	store_params sp = store_default_params();
	sp.dim = info->embed_dim;
	sp.model_id = info->key;
	sp.model_family = clip_family_name(info->family);
	sp.index_kind = "flat";
	if (store_open(f->store_dir, &sp, st, &err) != 0) {
		fprintf(stderr, "store_open: %s\n", err.msg);
		clip_model_free(*m);
		*m = NULL;
		return -1;
	}
	return 0;
}

#endif
