/*
 * daemon.h - clipdexd: the warm daemon that owns one model and one store and
 * answers the JSON protocol of docs/PROTOCOL.md over nng REQ/REP and HTTP.
 *
 * Structure (each file with its header; none calls back into server.c):
 *   srv_config   flags and config file (config.c)
 *   srv          the running daemon's lifecycle and transports: model,
 *                store, workers, nng listeners (server.c)
 *   http.c       the HTTP transport (libmicrohttpd): /api and web.c's
 *                routes, access decided from the headers
 *   dispatch.c   the operation table, one for every transport
 *   request.c    parsing and checking a request's envelope and fields
 *   reply.c      the reply envelope (v, ok, error, tag)
 *   roots.c      the roots, "path under a root", reading files
 *   access.c     loopback, token and Host/Origin decisions
 *   ingest.c     the indexer behind "add" and the watched folders
 *   web.c        the web page, thumbnails and images over HTTP
 *
 * Errors: 0 or a negative CDX_E* code with an optional cdx_error message.
 *
 * Thread-safety: srv_config_* functions are not thread-safe (they run before
 * the daemon starts).  srv_handle() is thread-safe and may be called from
 * any thread while the daemon runs.  srv_start()/srv_stop() are called by
 * one controlling thread.
 */
#ifndef CDX_DAEMON_H
#define CDX_DAEMON_H

#include <stddef.h>
#include <stdint.h>

#include "common/cdx.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SRV_MAX_LISTEN 8
#define SRV_MAX_ROOTS 64
#define SRV_MAX_EXCLUDE 64
#define SRV_VERSION "0.1.0"

/* Hard protocol limits (docs/PROTOCOL.md). */
#define SRV_K_MAX 1000
#define SRV_WINDOW_MAX 10000
#define SRV_TERMS_MAX 16

typedef struct srv_config {
	char *model_dir;            /* required */
	char *store_dir;            /* required */
	char *listen[SRV_MAX_LISTEN]; /* nng URLs; none: srv_default_url() */
	int n_listen;
	char *http;                 /* "HOST:PORT" or NULL (no HTTP) */
	int http_timeout;           /* idle seconds before an HTTP connection
	                               is closed (0: 30) */
	int http_connections;       /* HTTP connections at once, half of
	                               them per client address (0: 128) */
	int connections;            /* nng connections at once on each
	                               listening address (0: 128); more are
	                               closed as they connect */
	char *roots[SRV_MAX_ROOTS]; /* canonical folders path requests may use */
	int n_roots;
	char *token;                /* required from non-loopback TCP/HTTP */
	char *index_kind;           /* store index kind ("auto") */
	int threads;                /* OpenBLAS/OpenMP threads (0: all cores);
	                               main() sets them (common/threads.h) */
	int precision;              /* enum clip_precision (0: auto) */
	int workers;                /* query workers (default 2) */
	int reembed;                /* accept a store made by another model */
	int log_level;              /* CDX_LOG_* */
	size_t max_request_bytes;   /* default 32 MiB */
	size_t max_image_bytes;     /* decoded upload limit, default 24 MiB */
	uint64_t max_pixels;        /* default CLIP_DEFAULT_MAX_PIXELS */
	int batch;                  /* images per encoder batch (default 16) */
	/* indexer (daemon/ingest.c, docs/INDEXER.md) */
	char *watch[SRV_MAX_ROOTS]; /* folders to index and keep watching */
	int n_watch;
	char *exclude[SRV_MAX_EXCLUDE]; /* fnmatch patterns left out */
	int n_exclude;
	int min_side;               /* skip smaller images (default 64 px) */
	int hidden;                 /* index hidden files and folders */
	int follow_symlinks;        /* follow symbolic links (never looping) */
	int decode_threads;         /* indexer decode workers (0: cores) */
	int video;                  /* index video clips (1; --no-video) */
	int video_interval_s;       /* a frame every this many s (2) */
	int video_frames;           /* at most this many per clip (32) */
	int video_limit_s;          /* longer clips spread (0: frames x
	                               interval) */
	int index_nice;             /* indexer threads' nice increment (10) */
	size_t web_cache_bytes;     /* thumbnail cache bound (0: 64 MiB; no
	                               flag: tests set it) */
	/* cluster on NATS (cluster/cluster.h, docs/SCALE.md) */
	char *nats;                 /* server URLs, comma-separated, or NULL */
	char *shard;                /* serve as this shard (with nats) */
	int worker;                 /* encode the work queue (with nats) */
	int nats_replicas;          /* of the stream and bucket (1) */
	int nats_timeout_ms;        /* scatter deadline (2000) */
	int nats_ack_wait_ms;       /* a worker's job comes again after (60000) */
} srv_config;

/* Fills c with defaults (every pointer NULL). */
void srv_config_init(srv_config *c);
/* Frees what the config owns (the struct itself is the caller's). */
void srv_config_free(srv_config *c);

/* Parses command-line arguments (argv[0] skipped) into c, reading any
 * --config FILE first so that flags override it.  Returns 0, 1 when --help
 * was asked (the help text is written to `help`), or CDX_EINVAL with a
 * message in err. */
int srv_config_parse_args(srv_config *c, int argc, char **argv, cdx_error *err);
/* Reads a config file of "key = value" lines (# comments); keys are the
 * long flag names without "--". */
int srv_config_load_file(srv_config *c, const char *path, cdx_error *err);
/* Checks required fields and canonicalises paths. */
int srv_config_finish(srv_config *c, cdx_error *err);
/* The --help text. */
const char *srv_config_help(void);

/* The default listening address; the same as the client library's default
 * (ipc://$XDG_RUNTIME_DIR/clipdex.sock, else ipc:///tmp/clipdex-<uid>.sock,
 * or $CLIPDEX_URL when set).  Returns a static buffer. */
const char *srv_default_url(void);

typedef struct srv srv;

/* Loads the model, opens the store, starts the workers, the indexing
 * thread and every listener.  *out is owned by the caller and released
 * with srv_stop().  Errors: the model's, the store's, CDX_EIO/CDX_EBUSY for
 * addresses that cannot be listened on. */
int srv_start(const srv_config *c, srv **out, cdx_error *err);

/* Stops listening, lets in-flight requests finish (queued ones are
 * answered with "busy"), finishes the indexing batch in progress, saves
 * the index and closes the store.  NULL is a no-op. */
void srv_stop(srv *s);

/* Where a request came from, for the token and roots rules. */
enum srv_origin {
	SRV_ORIGIN_LOCAL = 0,   /* owner-only ipc socket, or in-process */
	SRV_ORIGIN_LOOPBACK = 1,/* TCP/HTTP on a loopback address */
	SRV_ORIGIN_REMOTE = 2,  /* TCP/HTTP on another address: token needed */
	SRV_ORIGIN_CLUSTER = 3, /* clipdex.api on NATS: the token when the
	                           daemon has one (docs/SCALE.md) */
};

/* Called exactly once per submitted request, from a worker or the indexing
 * thread, with the JSON reply (malloc'd, NUL-terminated; the callee owns
 * it) and the HTTP status that goes with it. */
typedef void (*srv_reply_fn)(void *user, char *reply, size_t len,
    int http_status);

/* Queues one JSON request for the workers.  Takes ownership of req (a
 * malloc'd buffer of len bytes).  Requests that decode images (uploads,
 * paths, "add") go to a separate queue from text and id queries, so a slow
 * upload never stalls text search.  Never fails: every problem becomes an
 * error reply through fn. */
void srv_submit(srv *s, char *req, size_t len, int origin, srv_reply_fn fn,
    void *user);

/* srv_submit() and wait: returns the reply in *reply (caller frees). */
void srv_handle(srv *s, const char *req, size_t len, int origin,
    char **reply, size_t *reply_len, int *http_status);

#ifdef __cplusplus
}
#endif
#endif
