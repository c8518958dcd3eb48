/*
 * clipdex.h - the clipdex client library (libclipdex).
 *
 * Talks to a running clipdexd over nng REQ/REP (docs/PROTOCOL.md).  Link
 * with `pkg-config --libs clipdex`.  This header is self-contained and
 * compiles as C and C++.
 *
 * Errors: functions return 0 or a negative CDX_E* code (cdx_strerror()
 * names it).  The daemon's structured errors map to codes (bad_request ->
 * CDX_EINVAL, not_found -> CDX_ENOTFOUND, forbidden/unauthorized ->
 * CDX_EPERM, too_large -> CDX_ETOOBIG, bad_image -> CDX_EFORMAT, busy ->
 * CDX_EBUSY, internal -> CDX_EINTERNAL, bad_json, unknown_op,
 * unsupported_version and unknown codes -> CDX_EPROTO); the daemon's
 * message, or a local one, is then available from cdx_client_errmsg().
 * Transport: CDX_ECLOSED when the daemon cannot be reached within the
 * connect timeout, CDX_ETIMEDOUT when no reply came within the request
 * timeout (a late reply is discarded).  A request whose connection drops
 * before its reply (a restarted daemon) is sent again on the next
 * connection, up to four times in all and within the same timeouts: every
 * operation of protocol v1 is safe to repeat.  A request the daemon keeps
 * dropping fails with CDX_ECLOSED.  A reply that is not the JSON the
 * protocol promises is CDX_EPROTO.  Out-parameters are untouched on
 * failure.
 *
 * Ids travel as JSON numbers: ids above 2^53 are not represented exactly.
 *
 * Ownership: result structs are allocated by the library and freed with
 * their *_free() function; every *_free() accepts NULL.  Strings inside a
 * result live as long as the result.
 *
 * Thread-safety: a cdx_client may be used by several threads at once; each
 * call is one request on its own nng context.  cdx_client_errmsg() returns
 * the message of the calling thread's last failed call on that client.
 * cdx_client_close() must not race with other calls on the same client.
 */
#ifndef CLIPDEX_H
#define CLIPDEX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef CDX_ERR_ENUM_DEFINED
#define CDX_ERR_ENUM_DEFINED
/* The same codes as the daemon and every clipdex module. */
enum cdx_err {
	CDX_OK = 0,
	CDX_ENOMEM = -1,
	CDX_EINVAL = -2,
	CDX_EIO = -3,
	CDX_ENOTFOUND = -4,
	CDX_EEXIST = -5,
	CDX_ECORRUPT = -6,
	CDX_EFORMAT = -7,
	CDX_ETOOBIG = -8,
	CDX_EMODEL = -9,
	CDX_EFULL = -10,
	CDX_EBUSY = -11,
	CDX_EPERM = -12,
	CDX_EUTF8 = -13,
	CDX_EINDEX = -14,
	CDX_ESTORE = -15,
	CDX_ETIMEDOUT = -16,
	CDX_EPROTO = -17,
	CDX_ECLOSED = -18,
	CDX_EINTERNAL = -19,
};
const char *cdx_strerror(int code);
#endif

/* The address clients use when none is given: $CLIPDEX_URL if set, else
 * the daemon's default, ipc://$XDG_RUNTIME_DIR/clipdex.sock (or
 * ipc:///tmp/clipdex-<uid>.sock without XDG_RUNTIME_DIR). */
const char *cdx_default_url(void);

typedef struct cdx_client cdx_client;

/* Connects to url (NULL: cdx_default_url()).  The connection is made in
 * the background (a daemon started later is picked up, and a restarted one
 * is reconnected to); requests wait for it up to the connect timeout.
 * Errors: CDX_EINVAL (bad url), CDX_ENOMEM, CDX_EIO; the message is then
 * available from cdx_client_errmsg(NULL) on the calling thread.
 *
 * A cluster (docs/SCALE.md): url "nats://HOST:PORT[,nats://HOST:PORT...]",
 * the NATS servers of clipdexd --nats.  The client connects at once
 * (CDX_EIO when no server answers, or no clipdexd has joined them within
 * 2 s) and reconnects by itself.  cdx_search asks the shards itself: a
 * member embeds the query, then every shard is asked and the answers are
 * merged here, with a 2 s deadline; results carry their `shard`, and
 * `partial` and `missing` name the shards that did not answer.  Every
 * other call is answered by whichever clipdexd --nats takes it
 * (clipdex.api): calls about one store (status, similar, remove, ...)
 * answer for that member's.  With a token set, members started with one
 * check it.  Collapsing, tags and learned classifiers search one store:
 * CDX_EINVAL on a cluster.  On nats:// the connect timeout is not used
 * (a request waits up to the request timeout: CDX_ETIMEDOUT), CDX_ECLOSED
 * means no member answers, a request over the servers' max_payload (1 MB
 * by default: mind uploaded images) is CDX_ETOOBIG and a reply over it
 * too_large (CDX_ETOOBIG), and the shards' deadline is the 2 s after the
 * plan, whatever the request timeout. */
int cdx_client_open(const char *url, cdx_client **out);
/* Closes the connection; NULL is a no-op.  In-flight calls on other
 * threads must have returned. */
void cdx_client_close(cdx_client *c);

/* Request timeout in milliseconds (default 30000; <= 0: wait forever).
 * It covers sending, the daemon's work and the reply.  Both timeouts may
 * be changed while other threads use c; requests that start afterwards
 * use the new value. */
void cdx_client_set_timeout(cdx_client *c, int ms);
/* How long a request waits for the connection to the daemon before failing
 * with CDX_ECLOSED ("cannot connect"), in milliseconds.  Default 3000 (a
 * local daemon answers in milliseconds: 3 s means it is not running, as
 * for the clipdex command).  -1: as long as the request timeout.  0: fail
 * at once when not connected. */
void cdx_client_set_connect_timeout(cdx_client *c, int ms);
/* Token sent with every request (for TCP daemons that require one); the
 * string is copied.  NULL clears it.  Errors: CDX_ENOMEM. */
int cdx_client_set_token(cdx_client *c, const char *token);

/* Message of this thread's last failed call on c ("" if none); with c ==
 * NULL, of this thread's last failed cdx_client_open() or cdx_query_parse().
 * The string is valid until this thread's next call into the library. */
const char *cdx_client_errmsg(const cdx_client *c);

/* Sends one raw JSON request and returns the raw JSON reply (malloc'd,
 * NUL-terminated; free with free()).  Returns 0 when a reply arrived,
 * whatever it says.  The bytes are sent as they are (even if they are not
 * JSON), except that if a token is set and json is a JSON object without
 * "token", the token is added.  Errors: CDX_ETIMEDOUT (no reply in time),
 * CDX_ECLOSED (not connected within the connect timeout), CDX_ENOMEM,
 * CDX_EIO (transport). */
int cdx_request(cdx_client *c, const char *json, char **reply);

/* Like cdx_request(), but a reply with "ok": false is an error: the
 * daemon's error code is mapped (see the top of this file), its message is
 * kept for cdx_client_errmsg() and *reply is untouched.  A reply that is
 * not a JSON object with a boolean "ok" is CDX_EPROTO. */
int cdx_call(cdx_client *c, const char *json, char **reply);

/* ---- queries ---- */

/* common/query.h repeats these types under the same guard;
 * tests/client_header.sh checks the two copies agree. */
#ifndef CDX_TERMS_DEFINED
#define CDX_TERMS_DEFINED
enum cdx_term_kind {
	CDX_TERM_TEXT = 0,   /* text: UTF-8 */
	CDX_TERM_IMAGE = 1,  /* data/len: JPEG or PNG bytes (uploaded) */
	CDX_TERM_PATH = 2,   /* text: a path on the daemon's machine */
	CDX_TERM_ID = 3,     /* id: an indexed image */
	CDX_TERM_FILE = 4,   /* text: a local file, read by the library when
	                        the request is made and uploaded as IMAGE */
	CDX_TERM_LEARNED = 5, /* text: the name of a learned classifier; its
	                        direction w/|w| (docs/PROTOCOL.md, learn) */
};

typedef struct cdx_term {
	int kind;            /* enum cdx_term_kind */
	const char *text;
	const void *data;
	size_t len;
	uint64_t id;
	float weight;        /* may be negative; 0 is treated as 1 */
} cdx_term;

typedef struct cdx_terms {
	size_t n;
	cdx_term *terms;     /* n terms; their strings live in the same block */
} cdx_terms;
#endif

enum cdx_time_field { CDX_TIME_NONE = 0, CDX_TIME_CAPTURE = 1, CDX_TIME_MTIME = 2 };

/* One tag of an image: a label of a tag set that applies to it, with its
 * probability (docs/CLASSIFY.md). */
typedef struct cdx_tag {
	const char *set;
	const char *label;
	double prob;
} cdx_tag;

typedef struct cdx_query {
	const cdx_term *terms;
	size_t n_terms;
	int k;               /* 0: 10 */
	int offset;
	int has_min_score;
	float min_score;
	const char *path_prefix;  /* NULL: none */
	int time_field;      /* enum cdx_time_field */
	int64_t time_from, time_to;  /* inclusive, s since the epoch; 0: open */
	float collapse;      /* 0: off */
	int exact;           /* exact image preprocessing */
	/* Drop results whose match probability is below min_prob (0..1).
	 * Only for text queries of a model trained with the sigmoid loss
	 * (SigLIP); others get CDX_EINVAL (bad_request). */
	int has_min_prob;
	float min_prob;
	/* Rank by the learned classifier of this name (cdx_learn()), highest
	 * probability first; results then carry its probability in `prob`.
	 * The query has no terms then (n_terms 0); for a classifier combined
	 * with other terms use a CDX_TERM_LEARNED term.  NULL: none. */
	const char *learned;
	/* Tag filters: only images with every tag of tags and none of
	 * not_tags.  A tag is "LABEL" (that label of any set) or "SET/LABEL".
	 * At most 32 of each. */
	const char *const *tags;
	size_t n_tags;
	const char *const *not_tags;
	size_t n_not_tags;
} cdx_query;

typedef struct cdx_result {
	uint64_t id;
	float score;
	const char *path;
	uint32_t width, height;
	int64_t size;
	int64_t mtime;
	int64_t capture_time;   /* INT64_MIN when unknown */
	int64_t added;
	/* The calibrated probability that the image matches the text query,
	 * sigmoid(exp(logit_scale) * score + logit_bias): present (not NAN)
	 * for text queries of SigLIP models; NAN for CLIP models (trained
	 * with a softmax over a batch, their scores have no absolute scale)
	 * and for queries with image terms. */
	double prob;
	/* The image's tags (search and similar), by set, then highest
	 * probability first; n_tags 0 when it has none. */
	size_t n_tags;
	const cdx_tag *tags;
	/* A frame of a video clip (path is the clip's): its time in the
	 * clip in seconds; -1 for an image. */
	double time;
	/* A cluster's search (clipdexd --nats): the shard that holds it (ids
	 * are per shard); NULL from a single daemon. */
	const char *shard;
} cdx_result;

typedef struct cdx_results {
	size_t n;
	cdx_result *results;
	double took_ms;
	int64_t no_capture_time; /* a capture time filter left the page short:
				    the images it could not match (no
				    capture time); -1 when not reported */
	/* A cluster's search: the shards asked, and whether some of them did
	 * not answer in time (partial), named in missing ("a,b"); shards 0,
	 * partial 0 and missing NULL from a single daemon. */
	size_t shards;
	int partial;
	const char *missing;
} cdx_results;

/* search: the query's terms combined; similar: the images most like the
 * indexed image `id` (the query's terms are ignored, its options used). */
int cdx_search(cdx_client *c, const cdx_query *q, cdx_results **out);
int cdx_similar(cdx_client *c, uint64_t id, const cdx_query *opts,
    cdx_results **out);
/* similar by the path of an indexed image on the daemon's machine
 * (absolute, inside the daemon's roots). */
int cdx_similar_path(cdx_client *c, const char *path, const cdx_query *opts,
    cdx_results **out);
/* Frees a result list (one allocation, strings included); NULL is a no-op. */
void cdx_results_free(cdx_results *r);

/* ---- the query syntax of the command line and web page (docs/CLI.md) ----
 *
 * "beach - 0.7:people + 0.5:@example.jpg": terms separated by " + " or
 * " - " (a space on each side; " - " negates the next term), each
 * [WEIGHT:]SOURCE with SOURCE `img:FILE` or `@FILE` (CDX_TERM_FILE),
 * `path:PATH` (CDX_TERM_PATH), `id:N` (CDX_TERM_ID), `learned:NAME`
 * (CDX_TERM_LEARNED, a classifier made by cdx_learn()) or text.  Leading and
 * trailing spaces of a term are dropped.  The types cdx_term and cdx_terms
 * are above.  (The parser is common/query.c, also linked by the daemon.) */

/* Parses query into *out (free with cdx_terms_free()).  Needs no client
 * and no connection; thread-safe.  Errors: CDX_EINVAL (syntax: an empty
 * term, a weight of 0, a bad id; the message, for people, is in
 * cdx_client_errmsg(NULL)), CDX_ENOMEM. */
int cdx_query_parse(const char *query, cdx_terms **out);
/* Frees a parsed query (one allocation); NULL is a no-op. */
void cdx_terms_free(cdx_terms *t);

/* The embedding of the query's terms (combined as for search).  *out is
 * malloc'd, *dim floats; free with free(). */
int cdx_embed(cdx_client *c, const cdx_query *q, float **out, int *dim);

/* ---- collection ---- */

typedef struct cdx_add_result {
	int64_t added, updated, unchanged, failed;
} cdx_add_result;

/* Indexes a file or folder (an absolute path on the daemon's machine).
 * wait = 0 returns once queued (res, if not NULL, is zeroed); wait = 1
 * returns when done (mind the timeout for big folders). */
int cdx_add(cdx_client *c, const char *path, int wait, cdx_add_result *res);
/* Forgets the image at path or every image under folder path. */
int cdx_remove(cdx_client *c, const char *path, int64_t *removed);

typedef struct cdx_status {
	char version[32];
	double uptime_s;
	int64_t images, failures, seq;
	char model_id[160];
	int dim;
	char index_kind[128];
	int64_t index_vectors;
	int64_t queue_pending, queue_done;
	double rate;           /* images per second while indexing */
	int64_t rss_bytes;
	/* indexer progress (docs/INDEXER.md); zero from older daemons */
	int64_t queue_remaining; /* files queued, not yet done */
	double eta_s;          /* estimated seconds left, < 0 when unknown */
	int scanning;          /* 1 while a folder walk is in progress */
	char warning[256];     /* e.g. the inotify watch limit; "" if none */
	int64_t clips, frames; /* video clips and their frames (of images) */
} cdx_status;

/* The daemon's status; string fields are truncated to fit. */
int cdx_get_status(cdx_client *c, cdx_status *out);

typedef struct cdx_failure {
	const char *path;
	const char *reason;
	int64_t size, mtime, when;
} cdx_failure;

typedef struct cdx_failures {
	size_t n;
	int64_t total;
	cdx_failure *items;
	int store_full;      /* 1: the store's disk is full; files not yet
	                        stored wait for space (no records for them) */
} cdx_failures;

/* Up to limit (<= 0: the daemon's default) recorded failures, newest
 * first as the daemon orders them; total is the number recorded. */
int cdx_get_failures(cdx_client *c, int limit, cdx_failures **out);
/* Frees a failure list (one allocation); NULL is a no-op. */
void cdx_failures_free(cdx_failures *f);

/* ---- one call ---- */

/* Searches for the images most like text (taken as it is, one text term:
 * no query syntax) and returns the best k (<= 0: 10).  c may be NULL: the
 * call then connects to cdx_default_url() with the default timeouts,
 * searches and disconnects, and a failure's message is available from
 * cdx_client_errmsg(NULL).  Results as cdx_search(); same errors. */
int cdx_search_text(cdx_client *c, const char *text, int k,
    cdx_results **out);

/* ---- curation: duplicates, "already indexed?", retrieval (docs/DUPES.md) ----
 *
 * The results of these calls are single allocations like cdx_results: one
 * free function releases the struct, its arrays and their strings. */

enum cdx_dupes_kind {
	CDX_DUPES_NEAR = 0,     /* the same picture re-encoded, resized, ... */
	CDX_DUPES_EXACT = 1,    /* identical bytes at different paths */
	CDX_DUPES_SIMILAR = 2,  /* similar shots (bursts), not near duplicates */
};

typedef struct cdx_dupes_opts {
	int kind;               /* enum cdx_dupes_kind */
	float threshold;        /* cosine in (0, 1]; 0: the daemon's default
	                           for kind; ignored for exact */
	float near_threshold;   /* similar only: 0: the daemon's default */
	int64_t offset;         /* the first group of the page */
	int limit;              /* groups per page, 1..1000; 0: 100 */
	const char *path_prefix;  /* only images under it; NULL: all */
} cdx_dupes_opts;

typedef struct cdx_dupes_group {
	int kind;               /* enum cdx_dupes_kind */
	uint64_t keep;          /* the suggested keeper: members[0].id */
	const char *reason;     /* why it was chosen ("largest resolution ...") */
	size_t n;
	cdx_result *members;    /* the keeper first, then by decreasing score,
	                           the similarity to the keeper */
} cdx_dupes_group;

typedef struct cdx_dupes_page {
	int kind;               /* enum cdx_dupes_kind */
	double threshold;       /* the threshold used */
	int64_t seq;            /* the collection state the groups are of */
	int64_t total_groups, total_images;
	int64_t next_offset;    /* offset of the next page; -1 on the last */
	double took_ms;
	size_t n;
	cdx_dupes_group *groups;
} cdx_dupes_page;

/* One page of duplicate groups (opts NULL: near duplicates, the first
 * 100 groups), largest first.  Page with opts->offset = next_offset until
 * it is -1.  Errors as for cdx_search; CDX_EINVAL for an unknown kind. */
int cdx_dupes(cdx_client *c, const cdx_dupes_opts *opts,
    cdx_dupes_page **out);
/* Frees a page (one allocation); NULL is a no-op. */
void cdx_dupes_page_free(cdx_dupes_page *p);

typedef struct cdx_check_opts {
	float threshold;        /* near-duplicate cosine; 0: as cdx_dupes */
	int k;                  /* at most k near duplicates (1..1000); 0: 10 */
} cdx_check_opts;

typedef struct cdx_check_result {
	int duplicate;          /* 1 when exact or near is not empty */
	size_t n_exact;
	cdx_result *exact;      /* indexed images with identical bytes */
	size_t n_near;
	cdx_result *near;       /* indexed images at least threshold similar,
	                           best first (exact copies included) */
} cdx_check_result;

/* Is the image already in the collection?  image is one term of kind
 * CDX_TERM_IMAGE (bytes), CDX_TERM_FILE (a local file, uploaded) or
 * CDX_TERM_PATH (a file on the daemon's machine, inside its roots); the
 * image need not be indexed.  opts may be NULL.  Errors as for
 * cdx_search; CDX_EINVAL for another kind of term. */
int cdx_check(cdx_client *c, const cdx_term *image,
    const cdx_check_opts *opts, cdx_check_result **out);
/* Frees a check result (one allocation); NULL is a no-op. */
void cdx_check_result_free(cdx_check_result *r);

/* One prompt of a retrieval: its terms combined as in search.  A single
 * text term of weight 1 is sent as a plain string (so that text prompts
 * are encoded in one batch). */
typedef struct cdx_prompt {
	const cdx_term *terms;
	size_t n_terms;
} cdx_prompt;

typedef struct cdx_retrieve_req {
	const cdx_prompt *prompts;  /* 1..1000 */
	size_t n_prompts;
	const cdx_term *negatives;  /* subtracted from every prompt; may be 0 */
	size_t n_negatives;
	int has_negative_weight;
	float negative_weight;  /* 0..10; without it the daemon's 0.5 */
	int k;                  /* results per prompt, 1..100000; 0: 10 */
	int has_min_score;
	float min_score;        /* a prompt's results stop below it */
	float dedupe;           /* in (0, 1]: drop results this similar to one
	                           already kept; 0: off */
	int allow_repeats;      /* 1: an image may appear under several
	                           prompts (the protocol's "unique": false) */
	int64_t offset;         /* the page of the result stream */
	int limit;              /* results per page, 1..1000; 0: 500 */
} cdx_retrieve_req;

typedef struct cdx_retrieve_hit {
	size_t prompt;          /* index in prompts */
	int64_t rank;           /* position within the prompt's kept results,
	                           from 1 (as search's ranks) */
	cdx_result result;
} cdx_retrieve_hit;

typedef struct cdx_retrieve_page {
	int64_t total;          /* results in the whole stream */
	int64_t next_offset;    /* offset of the next page; -1 on the last */
	double took_ms;
	size_t n;
	cdx_retrieve_hit *hits; /* prompt by prompt, best first */
} cdx_retrieve_page;

/* One page of the results of many prompts at once (dataset curation):
 * send the same request with offset = next_offset until it is -1; the
 * daemon computes the stream once and keeps it for the following pages.
 * Errors as for cdx_search. */
int cdx_retrieve(cdx_client *c, const cdx_retrieve_req *req,
    cdx_retrieve_page **out);
/* Frees a page (one allocation); NULL is a no-op. */
void cdx_retrieve_page_free(cdx_retrieve_page *p);

/* ---- learned classifiers and relevance feedback (docs/PROTOCOL.md) ----
 *
 * An example is a cdx_term: CDX_TERM_ID (an indexed image), CDX_TERM_PATH
 * (on the daemon's machine: an indexed image, or a folder: every indexed
 * image under it), CDX_TERM_IMAGE (bytes) or CDX_TERM_FILE (a local file,
 * uploaded); weights are ignored. */

typedef struct cdx_learn_req {
	const char *name;       /* the classifier's name: [A-Za-z0-9_.-]{1,64} */
	const cdx_term *positive;       /* at least 2 images in all */
	size_t n_positive;
	const cdx_term *negative;       /* 0: random images of the collection
	                                   serve as unlabeled negatives */
	size_t n_negative;
	int has_threshold;
	float threshold;        /* tags an image at this probability; 0.5 */
	double l2;              /* L2 penalty; 0: the daemon's default */
	/* 1: fit the classifier `name` again from the examples it was learned
	 * from (kept by the daemon as paths: a folder's images as they are
	 * now, for the daemon's model); no examples then. */
	int refit;
} cdx_learn_req;

typedef struct cdx_learn_result {
	int64_t n_pos, n_neg;   /* images the probe was fitted on */
	int unlabeled_negatives;        /* 1: the negatives were random images */
	int folds;              /* cross-validation folds */
	double cv_accuracy;     /* mean held-out accuracy, 0..1 */
	int64_t tagged;         /* images of the collection it applies to */
	double threshold;
	int64_t missing;        /* refit: example paths with no image now */
} cdx_learn_result;

/* Fits a linear probe (L2-regularised logistic regression) on the
 * examples' embeddings, stores it as a tag set named req->name (replacing
 * one of that name; `tags list` shows it, origin "learned") and tags the
 * collection with it.  Search with cdx_query.learned or a
 * CDX_TERM_LEARNED term.  Errors: CDX_EINVAL (fewer than 2 positive
 * images, a bad name, an empty folder), CDX_ENOTFOUND (an unknown id or
 * path), and as cdx_search. */
int cdx_learn(cdx_client *c, const cdx_learn_req *req, cdx_learn_result *out);

typedef struct cdx_rerank_req {
	/* The query (terms and/or learned) and the search options (k,
	 * filter, ...); its terms may be empty when 2 positives are marked. */
	const cdx_query *query;
	const uint64_t *positive;       /* ids marked right: at least 1 */
	size_t n_positive;
	const uint64_t *negative;       /* ids marked wrong: at least 1 */
	size_t n_negative;
} cdx_rerank_req;

/* Relevance feedback: fits a probe on the marked ids (nothing stored)
 * and returns the best images by its probability, as cdx_search (prob is
 * the probe's).  With one positive the query's own vector is a second
 * positive; with one negative, random images of the collection are added
 * as negatives (docs/PROTOCOL.md).  Errors as cdx_learn. */
int cdx_rerank(cdx_client *c, const cdx_rerank_req *req, cdx_results **out);
/* ---- classification and tags (docs/CLASSIFY.md) ----
 *
 * Results are single allocations like cdx_results. */

/* Zero-shot labels, or a stored tag set (set != NULL, labels unused). */
typedef struct cdx_classify_req {
	/* The images, in order: CDX_TERM_ID or CDX_TERM_PATH (an indexed
	 * image, scored from its stored embedding), CDX_TERM_IMAGE (bytes)
	 * or CDX_TERM_FILE (a local file, uploaded).  1..1000. */
	const cdx_term *items;
	size_t n_items;
	const char *const *labels;   /* 1..1000 labels */
	size_t n_labels;
	const char *const *templates;  /* each holds "{}"; 0: the default
	                                  "a photo of a {}." */
	size_t n_templates;
	const char *template_set;    /* "imagenet", "default"; NULL: none */
	const char *set;             /* a tag set's name instead of labels */
	int top;                     /* labels kept per image; 0: all */
	int exact;                   /* exact preprocessing of uploads */
} cdx_classify_req;

typedef struct cdx_label_prob {
	const char *label;
	double prob;
} cdx_label_prob;

typedef struct cdx_classified {
	uint64_t id;            /* indexed images; 0 for an upload */
	const char *path;       /* indexed images; "" for an upload */
	size_t n;
	cdx_label_prob *labels; /* highest probability first */
} cdx_classified;

typedef struct cdx_classify_result {
	int sigmoid;            /* 1: per-label sigmoid (multi-label, SigLIP,
	                           a learned set); 0: softmax over the labels */
	double took_ms;
	size_t n;
	cdx_classified *items;  /* in the order of req->items */
} cdx_classify_result;

/* Classifies images.  Errors as for cdx_search: CDX_EINVAL (bad labels or
 * templates: empty, duplicate, too many, a template without "{}"; the
 * daemon's message says which), CDX_ENOTFOUND (an unknown id, path or
 * set, named in the message). */
int cdx_classify(cdx_client *c, const cdx_classify_req *req,
    cdx_classify_result **out);
/* Frees a result (one allocation); NULL is a no-op. */
void cdx_classify_result_free(cdx_classify_result *r);

/* A zero-shot tag set: every indexed image is tagged with it, and every
 * image indexed later. */
typedef struct cdx_tagset_def {
	const char *name;       /* [A-Za-z0-9_.-], 1..64 bytes */
	const char *const *labels;
	size_t n_labels;
	const char *const *templates;
	size_t n_templates;
	const char *template_set;
	int has_threshold;
	float threshold;        /* 0..1; without it 0.5 */
	int multi;              /* 1: every label at or over the threshold
	                           applies; 0: the model's default (CLIP: the
	                           top label when it reaches the threshold;
	                           SigLIP: multi-label) */
} cdx_tagset_def;

/* Defines (or replaces) a tag set and re-tags the collection; *tagged
 * (may be NULL) receives the number of images tagged.  Errors as for
 * cdx_classify. */
int cdx_tags_define(cdx_client *c, const cdx_tagset_def *def,
    int64_t *tagged);

typedef struct cdx_tag_count {
	const char *set;
	const char *label;
	int64_t images;         /* images with this tag; -1: not reported */
} cdx_tag_count;

typedef struct cdx_tagset {
	const char *name;
	const char *origin;     /* "zero-shot" or "learned" */
	int sigmoid;            /* as cdx_classify_result */
	int multi;
	double threshold;
	const char *model;      /* the model that made it */
	int current;            /* 0: made by another model, tags nothing */
	size_t n_labels;
	cdx_tag_count *labels;  /* cdx_tags_show: with their counts */
	size_t n_templates;
	const char **templates; /* cdx_tags_show only */
} cdx_tagset;

typedef struct cdx_tagsets {
	size_t n;
	cdx_tagset *sets;
} cdx_tagsets;

/* Every tag set, by name (no counts, no templates). */
int cdx_tags_list(cdx_client *c, cdx_tagsets **out);
/* One set with its templates and images per label; CDX_ENOTFOUND. */
int cdx_tags_show(cdx_client *c, const char *name, cdx_tagsets **out);
/* Frees a list (one allocation); NULL is a no-op. */
void cdx_tagsets_free(cdx_tagsets *t);
/* Deletes a set and its tags; CDX_ENOTFOUND. */
int cdx_tags_delete(cdx_client *c, const char *name);

typedef struct cdx_tag_counts {
	size_t n;
	cdx_tag_count *counts;  /* by set, then label */
} cdx_tag_counts;

/* Images per label of set name (NULL: of every set). */
int cdx_tags_counts(cdx_client *c, const char *name, cdx_tag_counts **out);
/* Frees counts (one allocation); NULL is a no-op. */
void cdx_tag_counts_free(cdx_tag_counts *t);

#ifdef __cplusplus
}
#endif
#endif
