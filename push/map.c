/* map.c -- see map.h. */
#include "map.h"
#include "magpie.h"

#include <stdlib.h>

#define MAP_MIN_CAP 64

/* splitmix64's finalizer: user ids are sequential, this spreads them over the table. */
static size_t slot_of(const struct map *m, uint64_t key)
{
    key ^= key >> 30;
    key *= 0xbf58476d1ce4e5b9ULL;
    key ^= key >> 27;
    key *= 0x94d049bb133111ebULL;
    key ^= key >> 31;
    return (size_t)key & (m->cap - 1);
}

void map_init(struct map *m)
{
    m->slots = NULL;
    m->cap = 0;
    m->len = 0;
}

void map_free(struct map *m)
{
    free(m->slots);
    map_init(m);
}

void *map_get(const struct map *m, uint64_t key)
{
    size_t i;
    if (m->cap == 0)
        return NULL;
    for (i = slot_of(m, key); m->slots[i].value != NULL; i = (i + 1) & (m->cap - 1))
        if (m->slots[i].key == key)
            return m->slots[i].value;
    return NULL;
}

/* Place key/value in a table known to have room and not to hold key. */
static void place(struct map *m, uint64_t key, void *value)
{
    size_t i = slot_of(m, key);
    while (m->slots[i].value != NULL)
        i = (i + 1) & (m->cap - 1);
    m->slots[i].key = key;
    m->slots[i].value = value;
}

static int grow(struct map *m)
{
    size_t cap = m->cap ? m->cap * 2 : MAP_MIN_CAP, old_cap = m->cap;
    struct map_slot *old = m->slots, *slots = calloc(cap, sizeof(*slots));
    if (slots == NULL)
        return MP_ENOMEM;
    m->slots = slots;
    m->cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].value != NULL)
            place(m, old[i].key, old[i].value);
    free(old);
    return MP_OK;
}

int map_put(struct map *m, uint64_t key, void *value)
{
    size_t i;
    if (value == NULL)
        return MP_EINVAL;
    if (m->cap != 0)
        for (i = slot_of(m, key); m->slots[i].value != NULL; i = (i + 1) & (m->cap - 1))
            if (m->slots[i].key == key) {
                m->slots[i].value = value;
                return MP_OK;
            }
    if ((m->len + 1) * 4 > m->cap * 3 && grow(m) != MP_OK)
        return MP_ENOMEM;
    place(m, key, value);
    m->len++;
    return MP_OK;
}

void *map_del(struct map *m, uint64_t key)
{
    size_t i, j, home, mask = m->cap - 1;
    void *value;
    if (m->cap == 0)
        return NULL;
    for (i = slot_of(m, key); m->slots[i].value != NULL && m->slots[i].key != key; i = (i + 1) & mask)
        ;
    if ((value = m->slots[i].value) == NULL)
        return NULL;
    /* Backward shift: pull later members of the probe run into the hole when their home slot allows. */
    for (j = (i + 1) & mask; m->slots[j].value != NULL; j = (j + 1) & mask) {
        home = slot_of(m, m->slots[j].key);
        /* Move j to i unless its home lies cyclically in (i, j]. */
        if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i].value = NULL;
    m->slots[i].key = 0;
    m->len--;
    return value;
}

int map_next(const struct map *m, size_t *pos, uint64_t *key, void **value)
{
    for (; *pos < m->cap; (*pos)++)
        if (m->slots[*pos].value != NULL) {
            if (key != NULL)
                *key = m->slots[*pos].key;
            if (value != NULL)
                *value = m->slots[*pos].value;
            (*pos)++;
            return 1;
        }
    return 0;
}
