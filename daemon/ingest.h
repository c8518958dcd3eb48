/*
 * ingest.h - the daemon's side of the indexer (indexer/indexer.h).
 * ingest_start() starts it and rescans every watched folder (--watch and
 * the folders added before, kept in the store under "indexer.roots").
 * Thread-safety: ingest_start/ingest_stop on the controlling thread; the
 * others from any thread while the daemon runs.
 */
#ifndef CDX_SRV_INGEST_H
#define CDX_SRV_INGEST_H

#include <cjson/cJSON.h>

#include "common/cdx.h"
#include "daemon/reply.h"

struct srv;

int ingest_start(struct srv *s, cdx_error *err);
void ingest_stop(struct srv *s);
/* Queues the indexing of a canonical path (a folder becomes a watched
 * root); when waiter is not NULL it is answered once done, with its tag.
 * Takes ownership of waiter. */
void ingest_enqueue(struct srv *s, const char *canon, srv_job *waiter);
/* Stops watching the watched roots at or under path (remove op). */
void ingest_unwatch(struct srv *s, const char *path);
/* The "queue" object of the status reply.  Its rate is the files finished
 * per second over the last INGEST_RATE_WINDOW_S seconds (sampled once a
 * second by a thread of ingest_start's), 0 while idle or when nothing
 * finished in the window; eta_s is remaining / that rate, -1 when
 * unknown. */
cJSON *ingest_status_json(struct srv *s);
/* 1 while the store's disk is full and files wait for space. */
int ingest_store_full(struct srv *s);
/* The watched folders (the indexed ones: "add"ed or --watch, minus those
 * removed) as a JSON array of strings; NULL when out of memory. */
cJSON *ingest_folders_json(struct srv *s);

#define INGEST_RATE_WINDOW_S 10

#endif
