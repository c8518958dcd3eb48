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
/* The "queue" object of the status reply. */
cJSON *ingest_status_json(struct srv *s);

#endif
