/* room_hub.c -- the rooms of this node (room.h): members, channel subscriptions, batches and fan-out.
 *
 * Rooms are found by a hash of their id (map.h keys are 64-bit; ids that hash alike are chained). A room
 * exists while it has members here and for ROOM_LINGER_MS after the last one left.
 *
 * Batches: merging saves frames (a frame costs about the same to send whatever it carries) but makes messages
 * wait, so a room merges only while it has to: while a send is still in progress, or while messages come
 * faster than frames can leave -- Nagle's algorithm, with push.room_flush_ms as the bound of the wait. When
 * the first message of a batch arrives, the batch leaves
 *   - at the end of this loop pass when the room is idle: most of its members have nothing waiting in their
 *     outgoing queues, and its last batch began at least push.room_flush_ms ago and at least
 *     ROOM_CALM_FACTOR times that batch's fan-out time ago. What else this pass reads for the room rides
 *     along (Redis hands over all it has in one read);
 *   - otherwise push.room_flush_ms after its first message, as every batch did before: either its last batch
 *     is more recent than that (messages come faster than one per push.room_flush_ms, or faster than this
 *     node can send a frame for each: merging is what lets it keep up), or most members still have frames
 *     waiting in their queues (a send is still in progress: a batch sent now would only queue behind it).
 *     So a room never sends frames more often than the old rule did (one batch per push.room_flush_ms at
 *     most): at high rates it merges exactly as before, and only a message that finds the room idle leaves
 *     sooner. Not sooner once the room is calm: a fan-out that only queued its frames was quick without any
 *     frame having left, and busy rooms that sent more often than before did worse at 800,000 deliveries/s
 *     (bench/results/2026-11-26-rooms-adaptive-flush.md, 2026-11-26-rooms-quiet-ab.md);
 *   - at once, whichever of these applies, when it fills up (push.room_batch messages, or the next message
 *     would take it past push.room_batch_bytes).
 * A waiting room sits in the flush heap (ordered by when its batch is due); one timer, armed for the head,
 * serves every room.
 *
 * Fan-out: a batch is packed once per wire form, when the first member that needs it comes up -- the room
 * protocol's Reply for /room connections, and the bridge's frames for STOMP and MQTT subscriptions
 * (room_bridge.h) -- and that one frame is queued to every member of the form.
 */
#include "dlist.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "map.h"
#include "push.h"
#include "rdsa.h"
#include "room.h"
#include "room_bridge.h"
#include "stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A room is calm again once its last batch began this many times the fan-out's duration ago: sending every
 * message at once past that point would keep the loop on this room's fan-out more than half of the time,
 * and the other rooms, the members' requests and the Redis replies wait behind it. */
#define ROOM_CALM_FACTOR    2
#define ROOM_FLUSH_HEAP_MIN 64 /* rooms the flush heap has room for when it first grows */

struct room {
    char id[ROOM_MAX_ID + 1];
    char channel[ROOM_MAX_ID + 32]; /* CHAN_ROOM */
    uint64_t hash;
    struct room *same_hash;
    struct member *head; /* members here (JOINING and IN) */
    int count;
    int subscribed; /* Redis confirmed the channel subscription */
    struct roombatch batch;
    uint64_t due_ms; /* in the flush heap: when its batch goes */
    size_t flush_at; /* its place in the heap */
    int in_flush;
    uint64_t calm_ms;  /* loop time from which a batch may leave at once (the top of this file) */
    uint64_t empty_ms; /* lingering: when the last member left */
    struct room *linger_prev, *linger_next;
    int lingering;
    int dirty; /* count changed since it was last written to Redis */
    struct room *dirty_next;
    long long others; /* members on other nodes, read at others_ms */
    uint64_t others_ms;
    int others_read;
};

struct room_list {
    struct room *head, *tail;
};

/* Rooms whose batch waits, ordered by due_ms (a binary min-heap; each room knows its place). */
struct flush_heap {
    struct room **v;
    size_t n, cap;
};

static struct {
    struct map rooms; /* hash of the id -> first room with it */
    struct flush_heap flush;
    struct room_list linger;
    struct room *dirty;
    uv_timer_t flush_timer, tick_timer;
    int started;
    int stopping;
    long nrooms, nmembers;
} H;

/* ---- lookup ---- */

/* FNV-1a; room ids that collide only make a chain longer. */
static uint64_t id_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

static struct room *room_find(const char *id, uint64_t hash)
{
    struct room *r = map_get(&H.rooms, hash);
    while (r != NULL && strcmp(r->id, id) != 0)
        r = r->same_hash;
    return r;
}

const char *room_name(const struct room *r)
{
    return r->id;
}

const char *room_channel(const struct room *r)
{
    return r->channel;
}

int room_local_members(const struct room *r)
{
    return r->count;
}

int room_others(const struct room *r, long long *n)
{
    if (!r->others_read || push_now() - r->others_ms > ROOM_COUNT_CACHE_MS)
        return 0;
    *n = r->others;
    return 1;
}

void room_set_others(struct room *r, long long n)
{
    r->others = n;
    r->others_ms = push_now();
    r->others_read = 1;
}

static void gauges(void)
{
    stats_room_gauges(H.nrooms, H.nmembers);
}

/* ---- the flush heap ---- */

static void heap_put(size_t i, struct room *r)
{
    H.flush.v[i] = r;
    r->flush_at = i;
}

/* Move the room at i towards the root while it is due before its parent. */
static void heap_up(size_t i)
{
    struct room *r = H.flush.v[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (H.flush.v[parent]->due_ms <= r->due_ms)
            break;
        heap_put(i, H.flush.v[parent]);
        i = parent;
    }
    heap_put(i, r);
}

/* Move the room at i towards the leaves while a child is due before it. */
static void heap_down(size_t i)
{
    struct room *r = H.flush.v[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= H.flush.n)
            break;
        if (child + 1 < H.flush.n && H.flush.v[child + 1]->due_ms < H.flush.v[child]->due_ms)
            child++;
        if (r->due_ms <= H.flush.v[child]->due_ms)
            break;
        heap_put(i, H.flush.v[child]);
        i = child;
    }
    heap_put(i, r);
}

/* Put r (not in the heap) in it at r->due_ms. Returns MP_OK or MP_ENOMEM (r is left out). */
static int flush_add(struct room *r)
{
    if (H.flush.n == H.flush.cap) {
        size_t cap = H.flush.cap > 0 ? 2 * H.flush.cap : ROOM_FLUSH_HEAP_MIN;
        struct room **v = realloc(H.flush.v, cap * sizeof(*v));
        if (v == NULL)
            return MP_ENOMEM;
        H.flush.v = v;
        H.flush.cap = cap;
    }
    heap_put(H.flush.n, r);
    H.flush.n++;
    heap_up(r->flush_at);
    r->in_flush = 1;
    return MP_OK;
}

static void flush_remove(struct room *r)
{
    size_t i = r->flush_at;
    struct room *last = H.flush.v[--H.flush.n];
    r->in_flush = 0;
    if (last == r)
        return;
    heap_put(i, last);
    heap_down(i);
    heap_up(last->flush_at);
}

/* ---- batches and fan-out ---- */

/* The room protocol's delivery frame of a batch (one reference), or NULL when out of memory. */
static struct frame *room_frame(const struct roombatch *b, const char *room)
{
    size_t n = roombatch_packed_size(b, room);
    struct frame *f = frame_alloc(n, 1);
    if (f != NULL && roombatch_pack(b, room, frame_payload(f)) != n) {
        frame_unref(f);
        f = NULL;
    }
    return f;
}

/* Send r's batch to every member here: one shared frame per wire form. Then note when the room is calm
 * again, from how long the fan-out took (the top of this file). */
static void room_flush(struct room *r)
{
    struct roombatch *b = &r->batch;
    size_t limit = (size_t)push.cfg->push.room_normal_queue;
    struct room_bridge_batch bb;
    struct frame *f = NULL;
    long delivered = 0, dropped = 0, cut = 0, lost = 0;
    uint64_t began_ns, calm_in_ms;

    if (limit > (size_t)push.cfg->push.queue_cap)
        limit = (size_t)push.cfg->push.queue_cap; /* a small push.queue_cap lowers it */
    if (r->in_flush)
        flush_remove(r);
    if (b->count == 0)
        return;
    began_ns = uv_hrtime();
    room_bridge_batch_init(&bb, b, r->id);
    for (struct member *m = r->head; m != NULL; m = m->next) {
        struct frame *mf;
        int rc;
        if (m->state != MEMBER_IN || !conn_open(m->c))
            continue;
        if (m->kind != MEMBER_ROOM)
            mf = room_bridge_batch_frame(&bb, m);
        else
            mf = f != NULL ? f : (f = room_frame(b, r->id));
        if (mf == NULL) {
            lost++;
            continue;
        }
        rc = b->important ? conn_send(m->c, mf) : conn_send_droppable(m->c, mf, limit);
        if (rc == MP_OK)
            delivered++;
        else if (rc == MP_EAGAIN)
            dropped++;
        else
            cut++; /* important and over push.queue_cap: the member is being disconnected */
    }
    if (lost > 0) {
        log_error("room batch lost: out of memory room=\"%s\" messages=%d members=%ld", r->id, b->count,
                  lost);
        stats_room_drop(b->important, lost * b->count);
    }
    stats_room_batch(delivered * b->count);
    if (dropped > 0)
        stats_room_drop(0, dropped * b->count);
    if (cut > 0)
        stats_room_drop(1, cut * b->count);
    frame_unref(f);
    room_bridge_batch_free(&bb);
    roombatch_clear(b);
    /* The fan-out's time in whole milliseconds, the loop clock's unit. push_now() is this loop pass's time,
     * at or before the fan-out began. A message within push.room_flush_ms of this batch waits to merge with
     * the next ones, as every message did before; a fan-out longer than half of that stretches the wait. */
    calm_in_ms = ROOM_CALM_FACTOR * ((uv_hrtime() - began_ns + 999999) / 1000000);
    if (calm_in_ms < (uint64_t)push.cfg->push.room_flush_ms)
        calm_in_ms = (uint64_t)push.cfg->push.room_flush_ms;
    r->calm_ms = push_now() + calm_in_ms;
}

static void on_flush_timer(uv_timer_t *t)
{
    uint64_t now = push_now();
    while (H.flush.n > 0 && H.flush.v[0]->due_ms <= now)
        room_flush(H.flush.v[0]);
    if (H.flush.n > 0)
        uv_timer_start(&H.flush_timer, on_flush_timer, H.flush.v[0]->due_ms - now, 0);
}

/* Do most of r's members still have frames waiting in their queues, not yet written to their sockets? Then a
 * send is in progress: a batch sent now would wait behind it anyway. A walk over the members, once per
 * batch: a fraction of what the batch's fan-out costs. */
static int room_sending(const struct room *r)
{
    long in = 0, waiting = 0;
    for (const struct member *m = r->head; m != NULL; m = m->next) {
        if (m->state != MEMBER_IN || !conn_open(m->c))
            continue;
        in++;
        if (conn_backlogged(m->c))
            waiting++;
    }
    return 2 * waiting > in;
}

/* r's batch got its first message: decide when it goes (the top of this file). */
static void batch_schedule(struct room *r)
{
    uint64_t now = push_now(), bound = now + (uint64_t)push.cfg->push.room_flush_ms;

    if (r->calm_ms > now || room_sending(r))
        r->due_ms = bound; /* busy: as long as a batch always waited */
    else
        r->due_ms = now; /* idle: the timer runs once this loop pass has read what else came */
    if (flush_add(r) != MP_OK) {
        log_error("room message sent unmerged: out of memory room=\"%s\"", r->id);
        room_flush(r); /* nowhere to wait: it goes now, alone */
        return;
    }
    if (H.flush.v[0] == r)
        uv_timer_start(&H.flush_timer, on_flush_timer, r->due_ms - now, 0);
}

/* A broadcast on the room's channel (bus.h): one message for the batch. */
static void on_room_message(const char *channel, const char *payload, size_t len, void *arg)
{
    struct room *r = arg;
    Magpie__BroadcastRoomReq *b = roompkt_bus_parse(payload, len);
    int important;

    if (b == NULL) {
        log_debug("room: bad broadcast payload room=\"%s\" len=%zu", r->id, len);
        return;
    }
    if (r->count == 0) { /* lingering: nobody here to deliver to */
        magpie__broadcast_room_req__free_unpacked(b, NULL);
        return;
    }
    stats_room_in();
    important = b->msglv == MAGPIE__MSG_LEVEL__IMPORTANT;
    if (r->batch.count > 0 &&
        r->batch.len + ROOM_LEN_PREFIX + b->data.len > (size_t)push.cfg->push.room_batch_bytes)
        room_flush(r); /* the batch is full by size: this message starts the next one */
    if (roombatch_add(&r->batch, b->data.data, b->data.len, important) != MP_OK) {
        log_error("room message lost: out of memory room=\"%s\"", r->id);
        stats_room_drop(important, r->count);
    } else if (r->batch.count >= push.cfg->push.room_batch ||
               r->batch.len >= (size_t)push.cfg->push.room_batch_bytes) {
        room_flush(r);
    } else if (r->batch.count == 1 && H.started) {
        batch_schedule(r);
    } else if (!H.started) {
        room_flush(r);
    }
    magpie__broadcast_room_req__free_unpacked(b, NULL);
}

/* ---- membership ---- */

/* m's room is ready: its own protocol tells the client. */
static void member_ready(struct member *m)
{
    if (m->kind == MEMBER_ROOM)
        room_member_ready(m);
    else
        room_bridge_ready(m);
}

static void on_subscribed(const char *channel, void *arg)
{
    struct room *r = arg;
    struct member *m, *next;
    if (r->subscribed)
        return; /* again after a reconnect */
    r->subscribed = 1;
    for (m = r->head; m != NULL; m = next) {
        next = m->next;
        if (m->state == MEMBER_JOINING)
            member_ready(m);
    }
}

static void mark_dirty(struct room *r)
{
    if (!r->dirty) {
        r->dirty = 1;
        r->dirty_next = H.dirty;
        H.dirty = r;
    }
}

static struct room *room_new(const char *id, uint64_t hash)
{
    struct room *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    snprintf(r->id, sizeof(r->id), "%s", id);
    snprintf(r->channel, sizeof(r->channel), CHAN_ROOM, id);
    r->hash = hash;
    r->same_hash = map_get(&H.rooms, hash);
    if (map_put(&H.rooms, hash, r) != MP_OK) {
        free(r);
        return NULL;
    }
    if (rdsa_ssubscribe_ready(r->channel, on_room_message, on_subscribed, r) != MP_OK) {
        if (r->same_hash != NULL)
            map_put(&H.rooms, hash, r->same_hash); /* replaces a value: cannot fail */
        else
            map_del(&H.rooms, hash);
        free(r);
        return NULL;
    }
    H.nrooms++;
    log_debug("room open here room=\"%s\"", r->id);
    return r;
}

/* Forget r: unsubscribe, unlink, free. Its batch (messages for nobody) goes with it. */
static void room_free(struct room *r)
{
    struct room *head = map_get(&H.rooms, r->hash);
    if (head == r) {
        if (r->same_hash != NULL)
            map_put(&H.rooms, r->hash, r->same_hash); /* replaces a value: cannot fail */
        else
            map_del(&H.rooms, r->hash);
    } else {
        while (head->same_hash != r)
            head = head->same_hash;
        head->same_hash = r->same_hash;
    }
    if (r->in_flush)
        flush_remove(r);
    if (r->lingering)
        DLIST_REMOVE(H.linger, r, linger_prev, linger_next);
    if (r->dirty) {
        struct room **pp = &H.dirty;
        while (*pp != r)
            pp = &(*pp)->dirty_next;
        *pp = r->dirty_next;
    }
    rdsa_sunsubscribe(r->channel);
    roombatch_clear(&r->batch);
    H.nrooms--;
    log_debug("room closed here room=\"%s\"", r->id);
    free(r);
    gauges();
}

int room_join(struct member *m, const char *id)
{
    uint64_t hash = id_hash(id);
    struct room *r = room_find(id, hash);

    if (r == NULL && (r = room_new(id, hash)) == NULL)
        return MP_ENOMEM;
    if (r->lingering) {
        DLIST_REMOVE(H.linger, r, linger_prev, linger_next);
        r->lingering = 0;
    }
    m->room = r;
    DLIST_PUSH(r->head, m, prev, next);
    r->count++;
    H.nmembers++;
    mark_dirty(r);
    gauges();
    if (r->subscribed)
        member_ready(m);
    return MP_OK;
}

void room_leave(struct member *m)
{
    struct room *r = m->room;
    if (r == NULL)
        return;
    DLIST_UNLINK(r->head, m, prev, next);
    m->room = NULL;
    r->count--;
    H.nmembers--;
    gauges();
    if (r->count > 0) {
        mark_dirty(r);
        return;
    }
    if (H.stopping) {
        room_free(r); /* nothing more is written or delivered */
        return;
    }
    mark_dirty(r);
    r->empty_ms = push_now();
    DLIST_APPEND(H.linger, r, linger_prev, linger_next);
    r->lingering = 1;
}

/* ---- sending ---- */

/* A member's message is of normal level whatever its protocol asks: important messages (never dropped for a
 * slow member) come from the app's server through POST /msg, so one chatty client cannot make its chatter
 * undroppable for everyone. */
int room_publish(const struct room *r, const void *msg, size_t len, rdsa_reply_fn fn, void *arg)
{
    const char *argv[3];
    size_t argvlen[3], plen;
    uint8_t *payload = roompkt_bus_pack(r->id, 0, msg, len, &plen);
    int rc;

    if (payload == NULL)
        return MP_ENOMEM;
    argv[0] = "SPUBLISH"; /* a sharded channel (shared/bus.h) */
    argvlen[0] = 8;
    argv[1] = r->channel;
    argvlen[1] = strlen(r->channel);
    argv[2] = (const char *)payload;
    argvlen[2] = plen;
    if ((rc = rdsa_cmdargv(fn, arg, 3, argv, argvlen)) == MP_OK)
        stats_room_published();
    free(payload);
    return rc == MP_OK ? MP_OK : MP_EAGAIN;
}

/* ---- member counts ---- */

/* Write the counts that changed; then free the rooms that have lingered long enough (their 0 is written
 * first, so Redis never keeps the count of a room this node forgot). */
static void write_counts(void)
{
    const char *rooms[ROOM_COUNT_BATCH];
    int counts[ROOM_COUNT_BATCH], n = 0;

    while (H.dirty != NULL) {
        struct room *r = H.dirty;
        H.dirty = r->dirty_next;
        r->dirty = 0;
        r->dirty_next = NULL;
        rooms[n] = r->id;
        counts[n] = r->count;
        if (++n == ROOM_COUNT_BATCH) {
            room_count_write(rooms, counts, n);
            n = 0;
        }
    }
    if (n > 0)
        room_count_write(rooms, counts, n);
}

static void on_tick(uv_timer_t *t)
{
    uint64_t now = push_now();
    if (push.stopping)
        return; /* the node is leaving the cluster, which removes its entries */
    write_counts();
    while (H.linger.head != NULL && now - H.linger.head->empty_ms >= ROOM_LINGER_MS)
        room_free(H.linger.head);
}

/* After a Redis reconnect room_count.c cleared this node's entries: write every room again. */
static void resync(void)
{
    uint64_t key;
    void *v;
    for (size_t pos = 0; map_next(&H.rooms, &pos, &key, &v);)
        for (struct room *r = v; r != NULL; r = r->same_hash)
            if (r->count > 0)
                mark_dirty(r);
    write_counts();
}

int room_hub_start(void)
{
    map_init(&H.rooms);
    uv_timer_init(push.loop, &H.flush_timer);
    uv_timer_init(push.loop, &H.tick_timer);
    H.started = 1;
    uv_timer_start(&H.tick_timer, on_tick, ROOM_TICK_MS, ROOM_TICK_MS);
    return room_count_start(resync);
}

void room_hub_stop(void)
{
    uint64_t key;
    void *v;
    int again = 1;

    if (!H.started)
        return;
    H.started = 0;
    H.stopping = 1;
    uv_timer_stop(&H.flush_timer);
    uv_timer_stop(&H.tick_timer);
    uv_close((uv_handle_t *)&H.flush_timer, NULL);
    uv_close((uv_handle_t *)&H.tick_timer, NULL);
    while (H.flush.n > 0)
        flush_remove(H.flush.v[H.flush.n - 1]);
    /* Free the empty rooms (each free changes the map, so look again after one). */
    while (again) {
        again = 0;
        for (size_t pos = 0; map_next(&H.rooms, &pos, &key, &v);) {
            for (struct room *r = v; r != NULL; r = r->same_hash)
                if (r->count == 0) {
                    room_free(r);
                    again = 1;
                    break;
                }
            if (again)
                break;
        }
    }
}

/* The last room went with its last member (see room_leave while stopping); free the index. */
void room_hub_free(void)
{
    map_free(&H.rooms);
    free(H.flush.v);
    H.flush.v = NULL;
    H.flush.n = H.flush.cap = 0;
    room_bridge_free();
}
