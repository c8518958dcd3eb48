/*
 * indexer_test.h - hooks for the indexer's tests, not part of its API
 * (indexer.h).  Only tests include this header.
 *
 * Thread-safety: as indexer.h (any thread, until watch_stop()).
 */
#ifndef CDX_INDEXER_TEST_H
#define CDX_INDEXER_TEST_H

#include "indexer/indexer.h"

/* 1 stops reading inotify events (they queue in the kernel, as when the
 * control thread falls behind), 0 resumes. */
void watch_pause_events(watch *w, int paused);

#endif
