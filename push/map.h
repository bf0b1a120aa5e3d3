/* map.h -- a hash map from 64-bit integers (user ids) to pointers, for the loop thread's indexes.
 *
 * Open addressing with linear probing and backward-shift deletion: no tombstones, so a map that churns
 * (users connecting and leaving all day) never degrades. It grows when 3/4 full and never shrinks below
 * its initial size. Values must not be NULL (NULL marks an empty slot). Not thread-safe.
 */
#ifndef PUSH_MAP_H
#define PUSH_MAP_H

#include <stddef.h>
#include <stdint.h>

struct map_slot {
    uint64_t key;
    void *value;
};

struct map {
    struct map_slot *slots;
    size_t cap; /* a power of two, or 0 before the first insert */
    size_t len;
};

/* An empty map; allocates on the first insert. */
void map_init(struct map *m);

/* Free the slots (not the values). The map is empty and usable again. */
void map_free(struct map *m);

/* The value for key, or NULL. */
void *map_get(const struct map *m, uint64_t key);

/* Insert or replace. Returns MP_OK, MP_EINVAL for a NULL value, or MP_ENOMEM (the map is unchanged). */
int map_put(struct map *m, uint64_t key, void *value);

/* Remove key; returns its value, or NULL if it was not there. */
void *map_del(struct map *m, uint64_t key);

/* Iterate: for (size_t i = 0; map_next(m, &i, &key, &value);) ... Do not insert or delete while iterating. */
int map_next(const struct map *m, size_t *pos, uint64_t *key, void **value);

#endif
