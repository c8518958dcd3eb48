/*
 * indexer.h - keeps a store in step with folders on disk: scans them,
 * watches them with inotify, and feeds new and changed images through a
 * decode -> encode -> write pipeline.  See docs/INDEXER.md.
 *
 * Threads (all started by watch_start, all at a lower priority than the
 * caller: nice + params.nice):
 *   control   walks folders, reads inotify events, pairs renames, expires
 *             quiet-period timers, completes tasks;
 *   decode    params.decode_threads workers: read, hash, reuse an
 *             embedding of the same bytes, or probe, decode, preprocess;
 *   encode    one thread with its own clip_ctx: batches of params.batch;
 *   write     one thread: many records per store transaction.
 * Bounded queues join the stages, so memory does not grow with the number
 * of files.
 *
 * Errors: 0 or a negative CDX_E* code with a message in err (common/cdx.h).
 *
 * Thread-safety: every function taking a watch * is thread-safe, except
 * watch_stop() which must be the last call.  Done callbacks run on the
 * control thread (or, for tasks cut short, on the thread calling
 * watch_stop()); they must not call watch_stop().
 */
#ifndef CDX_INDEXER_H
#define CDX_INDEXER_H

#include <stddef.h>
#include <stdint.h>

#include "common/cdx.h"
#include "encoder/clip.h"
#include "store/store.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WATCH_MAX_EXCLUDE 64

typedef struct watch_params {
	int batch;              /* images per encoder batch (default 16) */
	int decode_threads;     /* decode workers; 0 (default): the number of
				   online CPUs */
	int min_side;           /* skip images whose shorter side (from the
				   header) is below this; default 64, 0: none */
	int hidden;             /* 1: index hidden files and folders (names
				   starting with '.'); default 0 */
	int follow_symlinks;    /* 1: follow symbolic links (never in a loop:
				   a folder already on the walk's path or
				   already walked is skipped); default 0 */
	const char *exclude[WATCH_MAX_EXCLUDE]; /* fnmatch(3) patterns, borrowed
				   until watch_stop: a pattern without '/'
				   is matched against each name, one with '/'
				   against the whole path */
	int n_exclude;
	uint64_t max_pixels;    /* decode limit (0: CLIP_DEFAULT_MAX_PIXELS) */
	size_t max_file_bytes;  /* larger files are failures (default 512 MiB) */
	int fast_decode;        /* 1 (default): JPEGs at a reduced DCT scale */
	int live;               /* 1 (default): inotify watching; 0: scans only */
	int quiet_ms;           /* a file modified without being closed is
				   indexed after this long without change
				   (default 1000) */
	int encode_threads;     /* OpenMP threads of the encoder's bf16/int8
				   GEMMs; 0 (default): the process default
				   (every core, or --threads): the encoder's
				   row tiles leave room for the decoders
				   (docs/INDEXER.md) */
	int nice;               /* added to the indexer threads' nice value
				   (default 10; 0: same priority as queries) */
	int event_limit;        /* more than this many events in one read is
				   handled as a queue overflow (a rescan);
				   0 (default): only the kernel's overflow */
	int max_watches;        /* 0 (default): the kernel's limit; else a
				   smaller limit (for tests) */
	int retry_ms;           /* a temporary failure (see below) is looked
				   at again after this long, doubling with
				   each failure of the same file up to 64
				   times as long (default 30000) */
	/* Video clips (MP4, MOV, MKV, WebM; encoder/video.h): one record
	 * per sampled frame (store.h's frames).  A clip is not read into
	 * memory, so max_file_bytes does not apply to it; max_pixels
	 * applies to its frame size. */
	int video;              /* 1 (default): index clips; 0: skip them
				   (counted as WATCH_SKIP_VIDEO) */
	double video_interval_s; /* a frame every this long (default 2) */
	int video_max_frames;   /* at most this many per clip (default 32,
				   1..WATCH_VIDEO_MAX_FRAMES: a clip's
				   preprocessed frames, ~600 KB each, are
				   all held until it is encoded) */
	double video_limit_s;   /* longer clips are spread over
				   video_max_frames (0, the default:
				   max_frames x interval) */
} watch_params;

/* The most frames per clip watch_start accepts (video_max_frames). */
#define WATCH_VIDEO_MAX_FRAMES 256

/* Temporary failures.  An error that may go away by itself (no file
 * descriptors or memory left, permission denied, an I/O error, a busy
 * resource: CDX_ENOMEM, CDX_EIO, CDX_EPERM, CDX_EBUSY, CDX_ETIMEDOUT) is a
 * failure record whose reason starts with WATCH_TEMPORARY; the file, or
 * the folder that could not be read, is retried after retry_ms (backing
 * off), by every scan (watch_add, whatever its mtime), and on restart.
 * Any other failure (bytes that do not decode) stands until the file
 * changes.  A full store (CDX_EFULL at commit) writes nothing: the files
 * wait (watch_progress.store_full, watch_result.store_full) and are
 * retried, backing off, until the store has room again. */
#define WATCH_TEMPORARY "temporary: "

/* Defaults as documented above. */
void watch_default_params(watch_params *p);

typedef struct watch watch;

/* Starts the indexer on store st with model m (both borrowed; they must
 * outlive the watch).  No folder is scanned until watch_add().  On success
 * *out is owned by the caller and released with watch_stop().
 * Errors: CDX_EINVAL (bad params), CDX_ENOMEM, CDX_EIO (inotify). */
int watch_start(store *st, const clip_model *m, const watch_params *p,
    watch **out, cdx_error *err);

/* Cuts the current work short: the batch being encoded and every decoded
 * record are committed, queued files are dropped (a restart's scan finds
 * them again), unfinished tasks are completed with interrupted = 1.
 * Joins every thread and frees w.  NULL is a no-op. */
void watch_stop(watch *w);

/* What one watch_add() did, given to its callback. */
typedef struct watch_result {
	int64_t added, updated, unchanged, failed;
	int64_t moved;          /* embeddings reused for moved or copied bytes */
	int interrupted;        /* 1: cut short by watch_stop() */
	int store_full;         /* 1: some files were not stored, the store
				   being full; they are retried (above) */
} watch_result;

typedef void (*watch_done_fn)(void *user, const char *path,
    const watch_result *r);

/* Queues a scan of canonical path path (a folder or a file): its files are
 * compared with the store (size and mtime, then the content hash), new and
 * changed images indexed, records of files gone from under it forgotten.
 * When live is 1 and path is a folder, it also becomes a watched root:
 * every folder under it is watched from then on.  fn (may be NULL) is
 * called once when the scan's files are all committed.
 * Errors: CDX_EINVAL (not absolute), CDX_ENOMEM, CDX_ECLOSED (stopping). */
int watch_add(watch *w, const char *path, int live, watch_done_fn fn,
    void *user);

/* Stops watching a root (and every folder under it).  Records are kept:
 * forgetting them is the caller's choice.  Errors: CDX_ENOTFOUND. */
int watch_remove(watch *w, const char *path);

/* Queues a rescan of every watched root (as after a queue overflow). */
void watch_rescan(watch *w);

/* Why a file was skipped: no record, no failure (watch_progress). */
enum watch_skip {
	WATCH_SKIP_EMPTY = 0,   /* 0 bytes (nothing written yet) */
	WATCH_SKIP_EXCLUDED,    /* matched an exclude pattern */
	WATCH_SKIP_SMALL,       /* an image under min_side (an icon) */
	WATCH_SKIP_VIDEO,       /* a video container, with video = 0 */
	WATCH_SKIP_IMAGE_OTHER, /* an image format the encoder does not read */
	WATCH_SKIP_OTHER,       /* anything else: not an image */
	WATCH_SKIP_KINDS
};

/* The name of a watch_skip in status replies ("empty", "excluded",
 * "small", "video", "image_other", "other"); static storage. */
const char *watch_skip_name(int why);

typedef struct watch_progress {
	int64_t queued;         /* files sent into the pipeline */
	int64_t done;           /* of those, finished (any outcome) */
	int64_t remaining;      /* queued - done, plus folders left to scan
				   are not counted */
	int64_t encoded;        /* images (and frames) run through the
				   encoder */
	int64_t clips;          /* video clips sampled */
	int64_t frames;         /* frames of them stored */
	int64_t reused;         /* embeddings reused (same bytes) */
	int64_t failed;         /* failure records written */
	int64_t skipped;        /* not images, too small, excluded */
	int64_t skipped_by[WATCH_SKIP_KINDS]; /* the same by why (sums to
				   skipped) */
	int64_t renamed;        /* records moved by inotify rename pairs */
	int64_t deleted;        /* records forgotten */
	int64_t overflows;      /* event queue overflows (each a rescan) */
	int64_t watches;        /* folders watched */
	double rate;            /* images per second while busy */
	double eta_s;           /* remaining / rate, or -1 when unknown */
	int scanning;           /* 1 while a folder walk is in progress */
	int idle;               /* 1 when nothing is queued or in flight */
	char warning[256];      /* e.g. the inotify watch limit; "" if none */
	int store_full;         /* 1 while the last commit found the store
				   full (files wait for space) */
} watch_progress;

/* A consistent-enough snapshot of the counters (each read atomically). */
void watch_get_progress(watch *w, watch_progress *out);

#ifdef __cplusplus
}
#endif
#endif
