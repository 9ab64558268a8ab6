/* A hash map from 64-bit keys to 64-bit values (open addressing, grows by doubling), the one
 * associative container of the profile: stacks by hash, pages by address, sites and strings by
 * their hash. */
#ifndef PMS_U64MAP_H
#define PMS_U64MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct u64map;

/* A map for about `expected` entries; NULL on ENOMEM. */
struct u64map *u64map_new(size_t expected);
void u64map_free(struct u64map *m);

/* Inserts or replaces. 0 or -ENOMEM. */
int u64map_put(struct u64map *m, uint64_t key, uint64_t value);
/* True and *value when key is present. */
bool u64map_get(const struct u64map *m, uint64_t key, uint64_t *value);
/* Removes key; true and *value (if value is not NULL) when it was present. */
bool u64map_del(struct u64map *m, uint64_t key, uint64_t *value);
size_t u64map_count(const struct u64map *m);
/* Bytes the map holds, for the profiler's own-cost figures. */
size_t u64map_bytes(const struct u64map *m);

/* Calls fn for every entry (in no order); fn must not change the map. */
void u64map_each(const struct u64map *m, void (*fn)(uint64_t key, uint64_t value, void *ctx),
		 void *ctx);

/* A 64-bit hash of bytes (FNV-1a, then mixed). */
uint64_t u64map_hash_bytes(const void *data, size_t len, uint64_t seed);

#endif
