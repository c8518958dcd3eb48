/*
 * config.c - clipdexd's settings: flags, and the same settings in a config
 * file of "key = value" lines.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/access.h"
#include "daemon/daemon.h"
#include "encoder/clip.h"
#include "indexer/indexer.h"

static const char help_text[] =
"usage: clipdexd --model DIR --store DIR [options]\n"
"       clipdexd --model DIR --nats URLS --worker [options]\n"
"\n"
"The clipdex daemon: loads one CLIP model folder, opens one store, and\n"
"answers search requests (docs/PROTOCOL.md) until SIGTERM, SIGINT or\n"
"SIGHUP.\n"
"\n"
"  --model DIR            Hugging Face CLIP folder (config.json,\n"
"                         model.safetensors, vocab.json, merges.txt)\n"
"  --store DIR            the store (created if missing)\n"
"  --listen URL           nng address to answer on; repeatable. Default:\n"
"                         ipc://$XDG_RUNTIME_DIR/clipdex.sock, else\n"
"                         ipc:///tmp/clipdex-UID.sock (owner-only), or\n"
"                         $CLIPDEX_URL. tcp://HOST:PORT for TCP.\n"
"  --http HOST:PORT       also serve the JSON API on http://HOST:PORT/api\n"
"  --http-timeout S       close an HTTP connection idle for S seconds (30)\n"
"  --http-connections N   HTTP connections at once (128; half of them\n"
"                         from one address)\n"
"  --connections N        nng connections at once on each --listen address\n"
"                         (128); more are closed as they connect\n"
"  --root DIR             folder that path requests may name; repeatable.\n"
"                         Folders added over the local socket become roots.\n"
"  --token TOKEN          required from non-loopback TCP/HTTP clients\n"
"                         (also $CLIPDEX_TOKEN); such listeners need one\n"
"  --index-kind KIND      auto (default), flat, hnsw, ivf, ivfpq (PQ\n"
"                         codes, re-ranked exactly), or a FAISS\n"
"                         index_factory string\n"
"  --reembed              open a store made by another model: its images\n"
"                         are forgotten and must be added again\n"
"  --threads N            OpenBLAS/oneDNN/FAISS threads (default: all\n"
"                         cores)\n"
"  --precision P          the encoder's linear layers: auto (default:\n"
"                         bf16 where the CPU has native bf16, else\n"
"                         fp32), fp32, bf16, int8 or int8-mixed\n"
"                         (docs/ENCODER.md)\n"
"  --workers N            request workers (default 2; one of them only\n"
"                         takes text and id queries)\n"
"  --batch N              images per encoder batch when indexing (16)\n"
"  --watch DIR            index DIR and keep it in step with the disk\n"
"                         (inotify); repeatable; also a --root. Folders\n"
"                         added with 'clipdex add' are watched too.\n"
"  --exclude GLOB         leave out names (or, with a '/', paths) that\n"
"                         match; repeatable (e.g. '*.tmp', '*/cache/*')\n"
"  --min-side N           skip images whose shorter side is below N\n"
"                         pixels (icons; default 64, 0: none)\n"
"  --hidden               index hidden files and folders (.name)\n"
"  --follow-symlinks      follow symbolic links (loops are skipped)\n"
"  --decode-threads N     indexer decode workers (default: all cores)\n"
"  --no-video             skip video clips (MP4, MOV, MKV, WebM) instead of\n"
"                         indexing a record per sampled frame\n"
"  --video-interval S     a frame every S seconds of a clip (default 2)\n"
"  --video-frames N       at most N frames per clip (default 32, at most 256)\n"
"  --video-limit S        clips longer than S seconds are spread over\n"
"                         their N frames (default 0: N x interval)\n"
"  --index-nice N         nice increment of the indexer's threads, so\n"
"                         that queries go first (default 10, 0..19)\n"
"  --nats URLS            join the cluster on these NATS servers\n"
"                         (nats://HOST:PORT, comma-separated): search\n"
"                         then asks every shard and merges their top k\n"
"                         (docs/SCALE.md)\n"
"  --shard NAME           with --nats: serve this store as shard NAME\n"
"                         (letters, digits, '-', '_'): answer the\n"
"                         cluster's searches, store what workers encode,\n"
"                         and hand over records other shards own\n"
"  --worker               with --nats: encode the images named on the\n"
"                         work queue ('clipdex enqueue') for their shards;\n"
"                         no store, no listener\n"
"  --nats-replicas N      JetStream replicas of the work queue and the\n"
"                         membership bucket, when this process makes\n"
"                         them (default 1; 3 on a 3-node cluster)\n"
"  --nats-timeout MS      how long a search waits for the shards (2000)\n"
"  --nats-ack-wait MS     a job a worker took but did not finish comes\n"
"                         again after MS (default 60000)\n"
"  --max-request-bytes N  largest request (default 33554432)\n"
"  --max-image-bytes N    largest uploaded or read image (default 25165824)\n"
"  --max-pixels N         largest image in pixels (default 100000000)\n"
"  --log-level LEVEL      error, warn, info (default) or debug\n"
"  --config FILE          read settings from FILE first; flags override it\n"
"  -h, --help             this text\n"
"\n"
"Config file: one setting per line, the long flag name without '--',\n"
"'=' and the value (\"model = /srv/models/clip-vit-base-patch32\");\n"
"'root', 'listen', 'watch' and 'exclude' may repeat; reembed = 1,\n"
"hidden = 1, follow-symlinks = 1, worker = 1; '#' starts a comment.\n"
"\n"
"Signals: SIGTERM, SIGINT and SIGHUP (a closed terminal) all stop the\n"
"daemon cleanly: requests in flight are answered, the batch being\n"
"indexed is committed and the index is saved; a second signal is only\n"
"logged.  Exit status 0 then, 1 when it cannot start, 2 for bad usage.\n"
"\n"
"Environment: CLIPDEX_URL, CLIPDEX_TOKEN (above); CLIPDEXD_PARENT_DEATH=1\n"
"stops the daemon (as SIGTERM) when the process that started it ends\n"
"(tools/run.sh sets it).  The soft limit on open files is raised to the\n"
"hard one at start.\n";

const char *
srv_config_help(void)
{
	return help_text;
}

void
srv_config_init(srv_config *c)
{
	memset(c, 0, sizeof(*c));
	c->workers = 2;
	c->batch = 16;
	c->min_side = 64;
	c->index_nice = 10;
	c->video = 1;
	c->video_interval_s = 2;
	c->video_frames = 32;
	c->log_level = CDX_LOG_INFO;
	c->max_request_bytes = (size_t)32 << 20;
	c->max_image_bytes = (size_t)24 << 20;
	c->max_pixels = CLIP_DEFAULT_MAX_PIXELS;
}

void
srv_config_free(srv_config *c)
{
	if (c == NULL)
		return;
	free(c->model_dir);
	free(c->store_dir);
	for (int i = 0; i < c->n_listen; i++)
		free(c->listen[i]);
	free(c->http);
	for (int i = 0; i < c->n_roots; i++)
		free(c->roots[i]);
	free(c->token);
	free(c->index_kind);
	free(c->nats);
	free(c->shard);
	for (int i = 0; i < c->n_watch; i++)
		free(c->watch[i]);
	for (int i = 0; i < c->n_exclude; i++)
		free(c->exclude[i]);
	memset(c, 0, sizeof(*c));
}

static int
set_str(char **dst, const char *v)
{
	char *copy = strdup(v);
	if (copy == NULL)
		return CDX_ENOMEM;
	free(*dst);
	*dst = copy;
	return 0;
}

static int
parse_u64(const char *key, const char *v, uint64_t lo, uint64_t hi,
    uint64_t *out, cdx_error *err)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || v[0] == '-' || n < lo ||
	    n > hi)
		return cdx_error_set(err, CDX_EINVAL, "%s: '%s' is not a number "
		    "in %llu..%llu", key, v, (unsigned long long)lo,
		    (unsigned long long)hi);
	*out = n;
	return 0;
}

/* Applies one setting.  `key` is the flag name without dashes. */
static int
apply(srv_config *c, const char *key, const char *v, cdx_error *err)
{
	uint64_t n;
	int rc = 0;

	if (strcmp(key, "model") == 0)
		rc = set_str(&c->model_dir, v);
	else if (strcmp(key, "store") == 0)
		rc = set_str(&c->store_dir, v);
	else if (strcmp(key, "http") == 0)
		rc = set_str(&c->http, v);
	else if (strcmp(key, "token") == 0)
		rc = set_str(&c->token, v);
	else if (strcmp(key, "index-kind") == 0)
		rc = set_str(&c->index_kind, v);
	else if (strcmp(key, "nats") == 0)
		rc = set_str(&c->nats, v);
	else if (strcmp(key, "shard") == 0)
		rc = set_str(&c->shard, v);
	else if (strcmp(key, "worker") == 0)
		c->worker = v == NULL || strcmp(v, "1") == 0 ||
		    strcmp(v, "true") == 0 || strcmp(v, "yes") == 0;
	else if (strcmp(key, "nats-replicas") == 0) {
		if ((rc = parse_u64(key, v, 1, 5, &n, err)) == 0)
			c->nats_replicas = (int)n;
	} else if (strcmp(key, "nats-timeout") == 0) {
		if ((rc = parse_u64(key, v, 1, 600000, &n, err)) == 0)
			c->nats_timeout_ms = (int)n;
	} else if (strcmp(key, "nats-ack-wait") == 0) {
		if ((rc = parse_u64(key, v, 100, 86400000, &n, err)) == 0)
			c->nats_ack_wait_ms = (int)n;
	}
	else if (strcmp(key, "listen") == 0) {
		if (c->n_listen == SRV_MAX_LISTEN)
			return cdx_error_set(err, CDX_EINVAL, "at most %d --listen",
			    SRV_MAX_LISTEN);
		if ((c->listen[c->n_listen] = strdup(v)) == NULL)
			return CDX_ENOMEM;
		c->n_listen++;
	} else if (strcmp(key, "root") == 0) {
		if (c->n_roots == SRV_MAX_ROOTS)
			return cdx_error_set(err, CDX_EINVAL, "at most %d --root",
			    SRV_MAX_ROOTS);
		if ((c->roots[c->n_roots] = strdup(v)) == NULL)
			return CDX_ENOMEM;
		c->n_roots++;
	} else if (strcmp(key, "watch") == 0) {
		if (c->n_watch == SRV_MAX_ROOTS)
			return cdx_error_set(err, CDX_EINVAL, "at most %d --watch",
			    SRV_MAX_ROOTS);
		if ((c->watch[c->n_watch] = strdup(v)) == NULL)
			return CDX_ENOMEM;
		c->n_watch++;
	} else if (strcmp(key, "exclude") == 0) {
		if (c->n_exclude == SRV_MAX_EXCLUDE)
			return cdx_error_set(err, CDX_EINVAL, "at most %d --exclude",
			    SRV_MAX_EXCLUDE);
		if ((c->exclude[c->n_exclude] = strdup(v)) == NULL)
			return CDX_ENOMEM;
		c->n_exclude++;
	} else if (strcmp(key, "hidden") == 0 ||
	    strcmp(key, "follow-symlinks") == 0) {
		int on = v == NULL || strcmp(v, "1") == 0 ||
		    strcmp(v, "true") == 0 || strcmp(v, "yes") == 0;
		if (key[0] == 'h')
			c->hidden = on;
		else
			c->follow_symlinks = on;
	} else if (strcmp(key, "min-side") == 0) {
		if ((rc = parse_u64(key, v, 0, 65535, &n, err)) == 0)
			c->min_side = (int)n;
	} else if (strcmp(key, "no-video") == 0) {
		c->video = !(v == NULL || strcmp(v, "1") == 0 ||
		    strcmp(v, "true") == 0 || strcmp(v, "yes") == 0);
	} else if (strcmp(key, "video-interval") == 0) {
		if ((rc = parse_u64(key, v, 1, 3600, &n, err)) == 0)
			c->video_interval_s = (int)n;
	} else if (strcmp(key, "video-frames") == 0) {
		if ((rc = parse_u64(key, v, 1, WATCH_VIDEO_MAX_FRAMES, &n,
		    err)) == 0)
			c->video_frames = (int)n;
	} else if (strcmp(key, "video-limit") == 0) {
		if ((rc = parse_u64(key, v, 0, 10000000, &n, err)) == 0)
			c->video_limit_s = (int)n;
	} else if (strcmp(key, "decode-threads") == 0) {
		if ((rc = parse_u64(key, v, 1, 256, &n, err)) == 0)
			c->decode_threads = (int)n;
	} else if (strcmp(key, "index-nice") == 0) {
		if ((rc = parse_u64(key, v, 0, 19, &n, err)) == 0)
			c->index_nice = (int)n;
	} else if (strcmp(key, "reembed") == 0) {
		c->reembed = v == NULL || strcmp(v, "1") == 0 ||
		    strcmp(v, "true") == 0 || strcmp(v, "yes") == 0;
	} else if (strcmp(key, "log-level") == 0) {
		int l = cdx_log_level_parse(v);
		if (l < 0)
			return cdx_error_set(err, CDX_EINVAL, "log-level: '%s' is not "
			    "error, warn, info or debug", v);
		c->log_level = l;
	} else if (strcmp(key, "precision") == 0) {
		if (v == NULL || clip_precision_parse(v, &c->precision) != 0)
			return cdx_error_set(err, CDX_EINVAL, "precision: '%s' is "
			    "not auto, fp32, bf16, int8 or int8-mixed", v ? v : "");
	} else if (strcmp(key, "threads") == 0) {
		if ((rc = parse_u64(key, v, 1, 256, &n, err)) == 0)
			c->threads = (int)n;
	} else if (strcmp(key, "workers") == 0) {
		if ((rc = parse_u64(key, v, 1, 64, &n, err)) == 0)
			c->workers = (int)n;
	} else if (strcmp(key, "batch") == 0) {
		if ((rc = parse_u64(key, v, 1, 256, &n, err)) == 0)
			c->batch = (int)n;
	} else if (strcmp(key, "http-timeout") == 0) {
		if ((rc = parse_u64(key, v, 1, 3600, &n, err)) == 0)
			c->http_timeout = (int)n;
	} else if (strcmp(key, "http-connections") == 0) {
		if ((rc = parse_u64(key, v, 2, 4096, &n, err)) == 0)
			c->http_connections = (int)n;
	} else if (strcmp(key, "connections") == 0) {
		if ((rc = parse_u64(key, v, 1, 4096, &n, err)) == 0)
			c->connections = (int)n;
	} else if (strcmp(key, "max-request-bytes") == 0) {
		if ((rc = parse_u64(key, v, 1024, (uint64_t)1 << 32, &n, err)) == 0)
			c->max_request_bytes = (size_t)n;
	} else if (strcmp(key, "max-image-bytes") == 0) {
		if ((rc = parse_u64(key, v, 1024, (uint64_t)1 << 32, &n, err)) == 0)
			c->max_image_bytes = (size_t)n;
	} else if (strcmp(key, "max-pixels") == 0) {
		if ((rc = parse_u64(key, v, 1, (uint64_t)1 << 40, &n, err)) == 0)
			c->max_pixels = n;
	} else {
		return cdx_error_set(err, CDX_EINVAL, "unknown setting '%s'", key);
	}
	if (rc == CDX_ENOMEM)
		return cdx_error_set(err, rc, "out of memory");
	return rc;
}

static char *
trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

int
srv_config_load_file(srv_config *c, const char *path, cdx_error *err)
{
	FILE *f = fopen(path, "r");
	char line[4096];
	int lineno = 0, rc = 0;

	if (f == NULL)
		return cdx_error_set(err, cdx_from_errno(errno), "%s: %s", path,
		    strerror(errno));
	while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		char *hash = strchr(line, '#');
		if (hash != NULL)
			*hash = '\0';
		char *s = trim(line);
		if (*s == '\0')
			continue;
		char *eq = strchr(s, '=');
		if (eq == NULL) {
			rc = cdx_error_set(err, CDX_EINVAL, "%s:%d: expected "
			    "'key = value'", path, lineno);
			break;
		}
		*eq = '\0';
		char *key = trim(s), *val = trim(eq + 1);
		cdx_error e2;
		if ((rc = apply(c, key, val, &e2)) != 0)
			cdx_error_set(err, rc, "%s:%d: %s", path, lineno, e2.msg);
	}
	fclose(f);
	return rc;
}

int
srv_config_parse_args(srv_config *c, int argc, char **argv, cdx_error *err)
{
	int rc;

	/* --config first, so that flags override the file. */
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0) {
			if (i + 1 >= argc)
				return cdx_error_set(err, CDX_EINVAL, "--config needs a "
				    "file");
			if ((rc = srv_config_load_file(c, argv[i + 1], err)) != 0)
				return rc;
		}
	}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
			return 1;
		if (strncmp(a, "--", 2) != 0)
			return cdx_error_set(err, CDX_EINVAL, "unexpected argument "
			    "'%s'", a);
		const char *key = a + 2;
		if (strcmp(key, "reembed") == 0) {
			c->reembed = 1;
			continue;
		}
		if (strcmp(key, "hidden") == 0 ||
		    strcmp(key, "follow-symlinks") == 0 ||
		    strcmp(key, "no-video") == 0 || strcmp(key, "worker") == 0) {
			if ((rc = apply(c, key, NULL, err)) != 0)
				return rc;
			continue;
		}
		/* --key=value or --key value */
		char kbuf[64];
		const char *val = strchr(key, '=');
		if (val != NULL) {
			snprintf(kbuf, sizeof(kbuf), "%.*s", (int)(val - key), key);
			key = kbuf;
			val++;
		} else {
			if (i + 1 >= argc)
				return cdx_error_set(err, CDX_EINVAL, "%s needs a value",
				    a);
			val = argv[++i];
		}
		if (strcmp(key, "config") == 0)
			continue;
		if ((rc = apply(c, key, val, err)) != 0)
			return rc;
	}
	return 0;
}

int
srv_config_finish(srv_config *c, cdx_error *err)
{
	const char *env = getenv("CLIPDEX_TOKEN");

	if (c->model_dir == NULL)
		return cdx_error_set(err, CDX_EINVAL, "--model DIR is required "
		    "(a Hugging Face CLIP folder; see the README)");
	if ((c->shard != NULL || c->worker) && c->nats == NULL)
		return cdx_error_set(err, CDX_EINVAL, "--%s needs --nats URLS",
		    c->worker ? "worker" : "shard");
	if (c->worker && c->shard != NULL)
		return cdx_error_set(err, CDX_EINVAL, "--worker and --shard are "
		    "two processes");
	if (c->worker)
		return 0;       /* a worker has no store and no listener */
	if (c->store_dir == NULL)
		return cdx_error_set(err, CDX_EINVAL, "--store DIR is required");
	if (c->token == NULL && env != NULL && *env != '\0' &&
	    set_str(&c->token, env) != 0)
		return cdx_error_set(err, CDX_ENOMEM, "out of memory");
	for (int i = 0; i < c->n_roots; i++) {
		char canon[PATH_MAX];
		if (realpath(c->roots[i], canon) == NULL)
			return cdx_error_set(err, CDX_ENOTFOUND, "--root %s: %s",
			    c->roots[i], strerror(errno));
		if (set_str(&c->roots[i], canon) != 0)
			return cdx_error_set(err, CDX_ENOMEM, "out of memory");
	}
	for (int i = 0; i < c->n_watch; i++) {
		char canon[PATH_MAX];
		if (realpath(c->watch[i], canon) == NULL)
			return cdx_error_set(err, CDX_ENOTFOUND, "--watch %s: %s",
			    c->watch[i], strerror(errno));
		if (set_str(&c->watch[i], canon) != 0)
			return cdx_error_set(err, CDX_ENOMEM, "out of memory");
	}
	for (int i = 0; i < c->n_listen; i++) {
		const char *u = c->listen[i];
		if (access_token_needed(access_origin_of_url(u), NULL) &&
		    c->token == NULL)
			return cdx_error_set(err, CDX_EINVAL, "--listen %s is not a "
			    "loopback address: set --token (or CLIPDEX_TOKEN)", u);
	}
	if (c->http != NULL && access_token_needed(access_origin_of_url(c->http), NULL)
	    && c->token == NULL)
		return cdx_error_set(err, CDX_EINVAL, "--http %s is not a loopback "
		    "address: set --token (or CLIPDEX_TOKEN)", c->http);
	return 0;
}
