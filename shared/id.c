/* id.c -- see id.h. */
#include "id.h"
#include "magpie.h"

#include <time.h>

int id_init(struct id_gen *g, int node)
{
    if (node < 0 || node > ID_MAX_NODE)
        return MP_EINVAL;
    g->node = node;
    g->last_ms = 0;
    g->seq = 0;
    return MP_OK;
}

int64_t id_next_at(struct id_gen *g, int64_t now_ms)
{
    int64_t ms = now_ms - ID_EPOCH_MS;
    if (ms < 0)
        ms = 0;
    if (ms > g->last_ms) {
        g->last_ms = ms;
        g->seq = 0;
    } else if (++g->seq >= (1 << ID_SEQ_BITS)) {
        g->last_ms++;
        g->seq = 0;
    }
    return (g->last_ms << (ID_NODE_BITS + ID_SEQ_BITS)) | ((int64_t)g->node << ID_SEQ_BITS) | g->seq;
}

int64_t id_next(struct id_gen *g)
{
    return id_next_at(g, mp_now_ms());
}

int64_t id_time_ms(int64_t id)
{
    return (id >> (ID_NODE_BITS + ID_SEQ_BITS)) + ID_EPOCH_MS;
}

int id_node(int64_t id)
{
    return (int)((id >> ID_SEQ_BITS) & ID_MAX_NODE);
}

int id_seq(int64_t id)
{
    return (int)(id & ((1 << ID_SEQ_BITS) - 1));
}
