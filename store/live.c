/*
 * live.c - the live map: which index labels belong to images in LMDB, with
 * the fields filters need, in dense arrays (for fast scans) and an
 * open-addressing hash (label -> slot) with linear probing and
 * backward-shift deletion.
 */
#include <stdlib.h>
#include <string.h>

#include "store/internal.h"

void
live_init(live_map *m)
{
	memset(m, 0, sizeof(*m));
}

void
live_free(live_map *m)
{
	if (!m)
		return;
	free(m->label);
	free(m->id);
	free(m->ctime);
	free(m->mtime_s);
	free(m->hslot);
	live_init(m);
}

void
live_clear(live_map *m)
{
	m->n = 0;
	if (m->hslot)
		memset(m->hslot, 0, m->hcap * sizeof(*m->hslot));
}

static size_t
live_hash(const live_map *m, int64_t label)
{
	uint64_t h = (uint64_t)label * 0x9E3779B97F4A7C15ull;
	h ^= h >> 29;
	return (size_t)h & (m->hcap - 1);
}

long
live_find(const live_map *m, int64_t label)
{
	if (m->hcap == 0)
		return -1;
	for (size_t i = live_hash(m, label);; i = (i + 1) & (m->hcap - 1)) {
		uint32_t v = m->hslot[i];
		if (v == 0)
			return -1;
		if (m->label[v - 1] == label)
			return (long)(v - 1);
	}
}

static void
live_hash_insert(live_map *m, int64_t label, uint32_t slot)
{
	size_t i = live_hash(m, label);
	while (m->hslot[i] != 0)
		i = (i + 1) & (m->hcap - 1);
	m->hslot[i] = slot + 1;
}

static int
live_grow(live_map *m)
{
	size_t cap = m->cap ? m->cap * 2 : 1024;
	void *p;
	if (cap > UINT32_MAX - 1)
		return CDX_ENOMEM;
#define GROW(field)                                                     \
	p = realloc(m->field, cap * sizeof(*m->field));                 \
	if (!p)                                                         \
		return CDX_ENOMEM;                                      \
	m->field = p;
	GROW(label)
	GROW(id)
	GROW(ctime)
	GROW(mtime_s)
#undef GROW
	size_t hcap = cap * 2;
	uint32_t *hs = calloc(hcap, sizeof(*hs));
	if (!hs)
		return CDX_ENOMEM;
	free(m->hslot);
	m->hslot = hs;
	m->hcap = hcap;
	m->cap = cap;
	for (size_t s = 0; s < m->n; s++)
		live_hash_insert(m, m->label[s], (uint32_t)s);
	return 0;
}

int
live_add(live_map *m, int64_t label, uint64_t id, int64_t ctime,
	 int64_t mtime_s)
{
	if (m->n == m->cap) {
		int rc = live_grow(m);
		if (rc)
			return rc;
	}
	size_t s = m->n++;
	m->label[s] = label;
	m->id[s] = id;
	m->ctime[s] = ctime;
	m->mtime_s[s] = mtime_s;
	live_hash_insert(m, label, (uint32_t)s);
	return 0;
}

/* Removes the hash entry at position i, shifting later probes back. */
static void
live_hash_delete_at(live_map *m, size_t i)
{
	size_t mask = m->hcap - 1;
	size_t j = i;
	m->hslot[i] = 0;
	for (;;) {
		j = (j + 1) & mask;
		uint32_t v = m->hslot[j];
		if (v == 0)
			return;
		size_t home = live_hash(m, m->label[v - 1]);
		/* Move v into the hole if its home is not in (i, j]. */
		int in_range = (i <= j) ? (home > i && home <= j)
					: (home > i || home <= j);
		if (!in_range) {
			m->hslot[i] = v;
			m->hslot[j] = 0;
			i = j;
		}
	}
}

static size_t
live_hash_pos(const live_map *m, int64_t label)
{
	size_t i = live_hash(m, label);
	while (m->label[m->hslot[i] - 1] != label)
		i = (i + 1) & (m->hcap - 1);
	return i;
}

void
live_remove(live_map *m, int64_t label)
{
	long s = live_find(m, label);
	if (s < 0)
		return;
	live_hash_delete_at(m, live_hash_pos(m, label));
	size_t last = m->n - 1;
	if ((size_t)s != last) {
		/* Move the last slot into the hole and repoint its hash. */
		size_t hp = live_hash_pos(m, m->label[last]);
		m->label[s] = m->label[last];
		m->id[s] = m->id[last];
		m->ctime[s] = m->ctime[last];
		m->mtime_s[s] = m->mtime_s[last];
		m->hslot[hp] = (uint32_t)s + 1;
	}
	m->n--;
}
