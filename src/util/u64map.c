#include "u64map.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum slot_state { SLOT_EMPTY = 0, SLOT_USED = 1, SLOT_DELETED = 2 };

struct u64map {
	uint64_t *keys, *values;
	uint8_t *state;
	size_t capacity; /* a power of two */
	size_t used;	 /* SLOT_USED */
	size_t filled;	 /* SLOT_USED + SLOT_DELETED: what lengthens probes */
};

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

uint64_t u64map_hash_bytes(const void *data, size_t len, uint64_t seed)
{
	const uint8_t *p = data;
	uint64_t h = 0xcbf29ce484222325ull ^ seed;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return mix(h);
}

static int alloc_table(struct u64map *m, size_t capacity)
{
	m->keys = calloc(capacity, sizeof(*m->keys));
	m->values = calloc(capacity, sizeof(*m->values));
	m->state = calloc(capacity, 1);
	if (!m->keys || !m->values || !m->state) {
		free(m->keys);
		free(m->values);
		free(m->state);
		return -ENOMEM;
	}
	m->capacity = capacity;
	m->used = m->filled = 0;
	return 0;
}

struct u64map *u64map_new(size_t expected)
{
	struct u64map *m = calloc(1, sizeof(*m));
	size_t capacity = 16;

	if (!m)
		return NULL;
	while (capacity < expected * 2)
		capacity *= 2;
	if (alloc_table(m, capacity)) {
		free(m);
		return NULL;
	}
	return m;
}

void u64map_free(struct u64map *m)
{
	if (!m)
		return;
	free(m->keys);
	free(m->values);
	free(m->state);
	free(m);
}

/* The slot holding key, or the slot to insert it in. */
static size_t find_slot(const struct u64map *m, uint64_t key, bool *found)
{
	size_t mask = m->capacity - 1, i = (size_t)mix(key) & mask, insert = (size_t)-1;

	for (size_t probes = 0; probes < m->capacity; probes++, i = (i + 1) & mask) {
		if (m->state[i] == SLOT_EMPTY) {
			*found = false;
			return insert != (size_t)-1 ? insert : i;
		}
		if (m->state[i] == SLOT_DELETED) {
			if (insert == (size_t)-1)
				insert = i;
			continue;
		}
		if (m->keys[i] == key) {
			*found = true;
			return i;
		}
	}
	*found = false;
	return insert;
}

static int grow(struct u64map *m)
{
	struct u64map old = *m;
	size_t capacity = m->used * 4 > m->capacity ? m->capacity * 2 : m->capacity;

	if (alloc_table(m, capacity)) {
		*m = old;
		return -ENOMEM;
	}
	for (size_t i = 0; i < old.capacity; i++)
		if (old.state[i] == SLOT_USED)
			u64map_put(m, old.keys[i], old.values[i]);
	free(old.keys);
	free(old.values);
	free(old.state);
	return 0;
}

int u64map_put(struct u64map *m, uint64_t key, uint64_t value)
{
	bool found;
	size_t i;

	/* keep at most half the slots filled so that probes stay short */
	if ((m->filled + 1) * 2 > m->capacity && grow(m))
		return -ENOMEM;
	i = find_slot(m, key, &found);
	if (!found) {
		if (m->state[i] == SLOT_EMPTY)
			m->filled++;
		m->state[i] = SLOT_USED;
		m->keys[i] = key;
		m->used++;
	}
	m->values[i] = value;
	return 0;
}

bool u64map_get(const struct u64map *m, uint64_t key, uint64_t *value)
{
	bool found;
	size_t i = find_slot(m, key, &found);

	if (found && value)
		*value = m->values[i];
	return found;
}

bool u64map_del(struct u64map *m, uint64_t key, uint64_t *value)
{
	bool found;
	size_t i = find_slot(m, key, &found);

	if (!found)
		return false;
	if (value)
		*value = m->values[i];
	m->state[i] = SLOT_DELETED;
	m->used--;
	return true;
}

size_t u64map_count(const struct u64map *m)
{
	return m->used;
}

size_t u64map_bytes(const struct u64map *m)
{
	return m->capacity * (2 * sizeof(uint64_t) + 1);
}

void u64map_each(const struct u64map *m, void (*fn)(uint64_t key, uint64_t value, void *ctx),
		 void *ctx)
{
	for (size_t i = 0; i < m->capacity; i++)
		if (m->state[i] == SLOT_USED)
			fn(m->keys[i], m->values[i], ctx);
}
