/* resume.c -- a subscription's place in its user's timeline, and the stored session position (design:
 * resume.h). */
#include "resume.h"
#include "chat.h"
#include "dlist.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "push.h"
#include "rdsa.h"
#include "stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RESUME_SEQ_ASK "4000000000000000000" /* Y after this: no entries, only the latest seq */

/* Raise a session's position (never lower it), renew the key's TTL, and keep the hash bounded: fields
 * written longer than the TTL ago go, and past the cap the one written longest ago. KEYS: the hash. ARGV:
 * field, acked, sent, sub, ttl_s, now_s, max_sessions (0: no cap). The value is "<acked> <sent> <sub> <ts>";
 * an older "<acked>" is read as acked = sent. */
static struct rdsa_script store_lua = {
    "resume_store",
    LUA_SHEBANG
    "local a, s = 0, 0\n"
    "local old = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "if old then\n"
    "  local x, y, t = string.match(old, '^(%d+) (%d+) %S+ (%d+)$')\n"
    "  if x and tonumber(t) + tonumber(ARGV[5]) >= tonumber(ARGV[6]) then\n"
    "    a, s = tonumber(x), tonumber(y)\n"
    "  elseif not x then\n"
    "    a = tonumber(string.match(old, '^(%d+)') or '0'); s = a\n"
    "  end\n"
    "end\n"
    "a = math.max(a, tonumber(ARGV[2])); s = math.max(s, tonumber(ARGV[3]), a)\n"
    "redis.call('HSET', KEYS[1], ARGV[1], string.format('%d %d %s %s', a, s, ARGV[4], ARGV[6]))\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[5])\n"
    "local cap = tonumber(ARGV[7])\n"
    "if cap > 0 and redis.call('HLEN', KEYS[1]) > cap then\n"
    "  local all, oldest, oldest_t = redis.call('HGETALL', KEYS[1]), nil, nil\n"
    "  for i = 1, #all, 2 do\n"
    "    local t = tonumber(string.match(all[i + 1], ' (%d+)$') or '0')\n"
    "    if all[i] ~= ARGV[1] then\n"
    "      if t + tonumber(ARGV[5]) < tonumber(ARGV[6]) then redis.call('HDEL', KEYS[1], all[i])\n"
    "      elseif oldest_t == nil or t < oldest_t then oldest, oldest_t = all[i], t end\n"
    "    end\n"
    "  end\n"
    "  if redis.call('HLEN', KEYS[1]) > cap and oldest then redis.call('HDEL', KEYS[1], oldest) end\n"
    "end\n"
    "return 0\n",
    ""};

void resume_init(void)
{
    rdsa_script(&store_lua);
}

void resume_tag(char tag[RESUME_TAG_LEN], const char *client_id, size_t len)
{
    unsigned h = 2166136261u; /* FNV-1a, 32 bits */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)client_id[i]) * 16777619u;
    snprintf(tag, RESUME_TAG_LEN, ".%08x-", h);
}

void resume_setup(struct resume *r, const struct resume_ops *ops, struct conn *c, const char *prefix,
                  size_t prefix_len)
{
    r->ops = ops;
    r->c = c;
    r->prefix = prefix;
    r->prefix_len = prefix_len;
    r->state = RESUME_OFF;
    r->sent_upto = r->acked_upto = r->stored = r->sent_before = -1;
}

/* ---- acknowledgements ---- */

/* Move acked_upto over the acks held past it. */
static void absorb_ahead(struct resume *r)
{
    int k = 0;
    if (r->nahead == 0)
        return;
    while (k < r->nahead && r->ahead[k] <= r->acked_upto + 1) {
        if (r->ahead[k] == r->acked_upto + 1)
            r->acked_upto++;
        k++;
    }
    memmove(r->ahead, r->ahead + k, (size_t)(r->nahead - k) * sizeof(r->ahead[0]));
    r->nahead -= k;
}

void resume_ack_one(struct resume *r, int64_t seq)
{
    int i;
    if (r->ack == RESUME_ACK_NONE || r->acked_upto < 0 || seq <= r->acked_upto)
        return;
    if (seq == r->acked_upto + 1) {
        r->acked_upto = seq;
        absorb_ahead(r);
        return;
    }
    for (i = 0; i < r->nahead && r->ahead[i] < seq; i++)
        ;
    if (i < r->nahead && r->ahead[i] == seq)
        return;
    if (r->ahead == NULL && (r->ahead = malloc(RESUME_ACK_WINDOW * sizeof(r->ahead[0]))) == NULL)
        return; /* forgotten, as past the window */
    if (r->nahead == RESUME_ACK_WINDOW) {
        if (i == r->nahead)
            return; /* forgotten: it comes again on the next connect */
        r->nahead--;
    }
    memmove(r->ahead + i + 1, r->ahead + i, (size_t)(r->nahead - i) * sizeof(r->ahead[0]));
    r->ahead[i] = seq;
    r->nahead++;
}

int resume_unacked(const struct resume *r, int64_t seq)
{
    if (r->state == RESUME_OFF || r->ack == RESUME_ACK_NONE || r->acked_upto < 0 || seq <= r->acked_upto ||
        seq > r->sent_upto)
        return 0;
    for (int i = 0; i < r->nahead; i++)
        if (r->ahead[i] == seq)
            return 0;
    return 1;
}

void resume_ack_upto(struct resume *r, int64_t seq)
{
    if (r->ack == RESUME_ACK_NONE || r->acked_upto < 0 || seq <= r->acked_upto)
        return;
    r->acked_upto = seq;
    absorb_ahead(r);
}

/* ---- the stored position ---- */

void resume_store(struct resume *r, int force)
{
    char key[64], acked[24], sent[24], sub[16], ttl[24], now[24], cap[24];
    const char *argv[8];
    size_t argvlen[8];
    int64_t a = r->acked_upto > 0 ? r->acked_upto : 0,
            s = r->sent_upto > r->sent_before ? r->sent_upto : r->sent_before;

    if (r->field == NULL || r->c->uid == 0 || (!force && r->acked_upto <= r->stored))
        return;
    if (r->acked_upto < 0 && r->ack != RESUME_ACK_NONE)
        return; /* a tracked position not known yet (still loading): what is stored stays */
    r->ops->key(key, sizeof(key), r->c->uid);
    snprintf(acked, sizeof(acked), "%lld", (long long)a);
    snprintf(sent, sizeof(sent), "%lld", (long long)(s > a ? s : a));
    snprintf(sub, sizeof(sub), "%d", r->sub);
    snprintf(ttl, sizeof(ttl), "%lld", r->ttl_s);
    snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
    snprintf(cap, sizeof(cap), "%lld", r->max_sessions);
    argv[0] = key;
    argv[1] = r->field;
    argv[2] = acked;
    argv[3] = sent;
    argv[4] = sub;
    argv[5] = ttl;
    argv[6] = now;
    argv[7] = cap;
    for (int i = 0; i < 8; i++)
        argvlen[i] = strlen(argv[i]);
    /* Not waited for: a write that is lost leaves the older position, so those entries come again. */
    if (rdsa_eval(&store_lua, NULL, NULL, 1, 8, argv, argvlen) == MP_OK && r->acked_upto > r->stored)
        r->stored = r->acked_upto;
}

struct load {
    struct conn *c;
    resume_loaded_fn fn;
    long long ttl_s;
};

static void on_loaded(redisReply *rep, void *arg)
{
    struct load *l = arg;
    struct conn *c = l->c;

    if (conn_open(c)) {
        if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
            l->fn(c, -1, 0, 0, 0);
        } else if (rep->type != REDIS_REPLY_STRING) {
            l->fn(c, 0, 0, 0, 0);
        } else {
            long long a = 0, s = 0, t = 0;
            int sub = 0, n = sscanf(rep->str, "%lld %lld %d %lld", &a, &s, &sub, &t);
            if (n == 4 && t + l->ttl_s < (long long)time(NULL))
                l->fn(c, 0, 0, 0, 0); /* expired: the session is gone */
            else if (n >= 1 && a >= 0)
                l->fn(c, 1, a, n >= 2 && s >= a ? s : a, n >= 3 ? sub : 0);
            else
                l->fn(c, 0, 0, 0, 0);
        }
    }
    conn_release(c);
    free(l);
}

int resume_load(struct conn *c, const struct resume_ops *ops, const char *field, long long ttl_s,
                resume_loaded_fn fn)
{
    char k[64];
    struct load *l = malloc(sizeof(*l));
    if (l == NULL)
        return MP_ENOMEM;
    l->c = c;
    l->fn = fn;
    l->ttl_s = ttl_s;
    ops->key(k, sizeof(k), c->uid);
    conn_hold(c);
    if (rdsa_cmd(on_loaded, l, "HGET %s %s", k, field) != MP_OK) {
        conn_release(c);
        free(l);
        return MP_EAGAIN;
    }
    return MP_OK;
}

void resume_forget(const struct resume_ops *ops, int64_t uid, const char *field)
{
    char k[64];
    ops->key(k, sizeof(k), uid);
    (void)rdsa_cmd(NULL, NULL, "HDEL %s %s", k, field); /* lost: the old session is found once more */
}

/* ---- deliveries ---- */

static int64_t json_int(json_t *o, const char *name, int64_t def)
{
    json_t *v = json_object_get(o, name);
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_string(v)) /* mid travels as a decimal string */
        return strtoll(json_string_value(v), NULL, 10);
    return def;
}

/* The session's own message: sent by a connection of this user with this tag ("<pp><digits><tag>..."),
 * whose ack told the client. */
static int own(const struct resume *r, json_t *pkt)
{
    const char *id = json_string_value(json_object_get(pkt, "id"));
    if (json_int(pkt, "from", 0) != r->c->uid || id == NULL || strncmp(id, r->ops->proto, 2) != 0)
        return 0;
    id += 2 + strspn(id + 2, "0123456789");
    return strncmp(id, r->tag, strlen(r->tag)) == 0;
}

static void ask_y(struct resume *r, const char *after)
{
    char id[96], body[96];
    struct chatpkt p;

    snprintf(id, sizeof(id), "%.*sy%llu", (int)r->prefix_len, r->prefix, (unsigned long long)++r->y_n);
    snprintf(body, sizeof(body), "{\"after\":%s,\"limit\":%d}", after, RESUME_SYNC_LIMIT);
    memset(&p, 0, sizeof(p));
    if ((p.root = json_pack("{s:s,s:i,s:s,s:o}", "id", id, "to", 0, "type", "Y", "msg",
                            json_loads(body, 0, NULL))) == NULL) {
        conn_abort(r->c, "out of memory");
        return;
    }
    p.id = json_string_value(json_object_get(p.root, "id"));
    p.id_len = strlen(p.id);
    p.type = 'Y';
    p.to = json_object_get(p.root, "to");
    p.msg = json_object_get(p.root, "msg");
    chat_handle(r->c, &p); /* the answer comes through resume_reply */
    chatpkt_free(&p);
}

static void held_clear(struct resume *r);

static void catch_up(struct resume *r)
{
    char after[24];
    held_clear(r); /* the Y brings what was held */
    r->state = RESUME_CATCHUP;
    snprintf(after, sizeof(after), "%lld", (long long)r->sent_upto);
    ask_y(r, after);
}

/* Send one tracked entry (seq = sent_upto + 1); returns MP_OK when it went out. */
static int send_entry(struct resume *r, json_t *pkt, const char *text, size_t len, int64_t seq)
{
    int again = seq <= r->sent_before;
    if (again) {
        r->redelivered++;
        stats_redelivered(r->ops->proto);
    }
    return r->ops->send(r, pkt, text, len, seq, again);
}

/* ---- entries held behind a gap until it fills or is caught up (resume.h) ---- */

struct resume_held {
    int64_t seq;
    json_t *pkt; /* a reference; NULL: the session's own seq */
    char *text;
    size_t len;
};

static void gap_unlink(struct resume *r);

/* 1 when the seqs missing before seq -- past sent_upto, less the below_held entries held below it -- are no
 * more than this connection's sends in flight: their A may still bring them. */
static int ours_can_fill(const struct resume *r, int64_t seq, int below_held)
{
    return (uint64_t)(seq - r->sent_upto - 1 - below_held) <= r->own_pending;
}

/* Remember how far the timeline is known to go (seq, and what is held) before the held entries are let go:
 * the catch-up asks again until it has them. */
static void remember_held(struct resume *r, int64_t seq)
{
    if (seq > r->seen_max)
        r->seen_max = seq;
    if (r->nheld > 0 && r->held[r->nheld - 1].seq > r->seen_max)
        r->seen_max = r->held[r->nheld - 1].seq;
}

static void held_clear(struct resume *r)
{
    for (int i = 0; i < r->nheld; i++) {
        json_decref(r->held[i].pkt);
        free(r->held[i].text);
    }
    r->nheld = 0;
    gap_unlink(r);
}

/* The node's subscriptions holding entries behind a gap, each due for a catch-up at gap_due unless the
 * gap is filled first (resume.h); one timer for all of them. */
static struct {
    struct resume *head;
    uv_timer_t timer;
    int timer_ready, timer_on;
} G;

static void gap_unlink(struct resume *r)
{
    if (r->gap_due == 0)
        return;
    DLIST_UNLINK(G.head, r, gap_prev, gap_next);
    r->gap_due = 0;
}

static void on_gap_timer(uv_timer_t *t)
{
    (void)t;
    G.timer_on = 0;
    resume_gap_sweep(push_now());
}

static void gap_timer_arm(uint64_t in_ms)
{
    if (G.timer_on || push.loop == NULL)
        return;
    if (!G.timer_ready) {
        uv_timer_init(push.loop, &G.timer);
        G.timer_ready = 1;
    }
    uv_timer_start(&G.timer, on_gap_timer, in_ms, 0);
    G.timer_on = 1;
}

static void gap_link(struct resume *r)
{
    uint64_t wait = (uint64_t)push.cfg->push.resume_gap_ms;
    if (r->gap_due != 0 || wait == 0)
        return; /* without grace, our sends' answers alone settle the gap (held_drain) */
    r->gap_due = push_now() + wait;
    DLIST_PUSH(G.head, r, gap_prev, gap_next);
    gap_timer_arm(wait);
}

/* Hold seq behind the gap before it (in order, once): 1 when held. pkt NULL: seq is the session's own (an
 * A that came before an entry it follows), held to be passed over in its turn. 0 when the gap is not
 * waited for (push.resume_gap_ms 0 and no own send in flight could fill it) or there is no room. */
static int hold(struct resume *r, json_t *pkt, const char *text, size_t len, int64_t seq)
{
    int i;
    for (i = 0; i < r->nheld && r->held[i].seq < seq; i++)
        ;
    if (i < r->nheld && r->held[i].seq == seq)
        return 1; /* already held */
    if (push.cfg->push.resume_gap_ms == 0 && !ours_can_fill(r, seq, i))
        return 0; /* more missing before it than our sends in flight, and no grace */
    if (r->nheld == RESUME_HOLD_MAX)
        return 0;
    if (r->held == NULL && (r->held = malloc(RESUME_HOLD_MAX * sizeof(r->held[0]))) == NULL)
        return 0;
    char *copy = NULL;
    if (pkt != NULL) {
        if ((copy = malloc(len + 1)) == NULL)
            return 0;
        memcpy(copy, text, len);
        copy[len] = '\0';
    }
    memmove(r->held + i + 1, r->held + i, (size_t)(r->nheld - i) * sizeof(r->held[0]));
    r->held[i] = (struct resume_held){seq, pkt != NULL ? json_incref(pkt) : NULL, copy, len};
    r->nheld++;
    stats_held(r->ops->proto);
    gap_link(r);
    return 1;
}

static void catch_up_from_gap(struct resume *r, int64_t seq)
{
    stats_catchup(r->ops->proto);
    remember_held(r, seq);
    held_clear(r);
    catch_up(r);
}

static int live_entry(struct resume *r, json_t *pkt, const char *text, size_t len, int64_t seq);

/* Send what the gap held as far as it is filled. What is still missing is waited for until gap_due
 * (resume_gap_sweep), or caught up at once when there is no grace and our sends cannot fill it any more. */
static void held_drain(struct resume *r)
{
    while (r->nheld > 0 && r->state == RESUME_LIVE) {
        struct resume_held h = r->held[0];
        if (h.seq > r->sent_upto + 1) {
            if (push.cfg->push.resume_gap_ms == 0 && !ours_can_fill(r, h.seq, 0))
                catch_up_from_gap(r, h.seq);
            return;
        }
        memmove(r->held, r->held + 1, (size_t)(r->nheld - 1) * sizeof(r->held[0]));
        r->nheld--;
        if (h.seq == r->sent_upto + 1)
            live_entry(r, h.pkt, h.text, h.len, h.seq);
        json_decref(h.pkt);
        free(h.text);
    }
    if (r->nheld == 0)
        gap_unlink(r);
}

void resume_gap_sweep(uint64_t now)
{
    struct resume *r = G.head, *next;
    uint64_t soonest = 0;
    for (; r != NULL; r = next) {
        next = r->gap_next;
        if (r->nheld == 0) {
            gap_unlink(r);
            continue;
        }
        if (r->gap_due > now) {
            if (soonest == 0 || r->gap_due < soonest)
                soonest = r->gap_due;
            continue;
        }
        if (ours_can_fill(r, r->held[0].seq, 0)) {
            /* our own sends can still fill it: their A comes (or an E, and then the grace starts over) */
            r->gap_due = now + (uint64_t)push.cfg->push.resume_gap_ms;
            if (soonest == 0 || r->gap_due < soonest)
                soonest = r->gap_due;
            continue;
        }
        catch_up_from_gap(r, r->held[0].seq); /* unlinks */
    }
    if (soonest != 0)
        gap_timer_arm(soonest > now ? soonest - now : 1);
}

void resume_stop(void)
{
    if (G.timer_ready) {
        uv_timer_stop(&G.timer);
        uv_close((uv_handle_t *)&G.timer, NULL);
        G.timer_ready = G.timer_on = 0;
    }
}

/* A seq-carrying entry at the LIVE position: the next one goes out, an old one is dropped, a newer one is
 * held behind the gap (hold: while own sends may fill it, or push.resume_gap_ms), else starts a catch-up;
 * no room moves to WAIT. pkt NULL: an own send's seq. Returns MP_OK when it was sent or held. */
static int live_entry(struct resume *r, json_t *pkt, const char *text, size_t len, int64_t seq)
{
    if (seq <= r->sent_upto)
        return MP_EAGAIN;
    if (seq > r->sent_upto + 1) {
        int mine = pkt == NULL || own(r, pkt);
        if (hold(r, mine ? NULL : pkt, text, len, seq))
            return mine ? MP_EAGAIN : MP_OK;
        catch_up_from_gap(r, seq);
        return MP_EAGAIN;
    }
    if (pkt == NULL || own(r, pkt)) { /* the session's own message (its ack, or another connection's copy) */
        r->sent_upto = seq;
        resume_ack_one(r, seq);
        if (r->ops->room == NULL) /* a protocol with a window stores on its own clock */
            resume_store(r, 0);
        return MP_EAGAIN;
    }
    if (r->ops->room != NULL && !r->ops->room(r, seq)) {
        remember_held(r, seq);
        held_clear(r); /* resume_room() catches up from sent_upto: they come again */
        r->state = RESUME_WAIT;
        return MP_EAGAIN;
    }
    r->sent_upto = seq;
    return send_entry(r, pkt, text, len, seq);
}

int resume_deliver(struct resume *r, struct frame *f)
{
    json_t *pkt;
    int64_t seq;
    int rc = MP_EAGAIN;

    if (r->state == RESUME_OFF)
        return MP_EAGAIN;
    if ((pkt = json_loadb((const char *)frame_payload(f), f->len, 0, NULL)) == NULL)
        return MP_EAGAIN;
    seq = json_int(pkt, "seq", -1);
    if (seq < 0) {
        if (r->state != RESUME_LOADING)
            rc = r->ops->send(r, pkt, (const char *)frame_payload(f), f->len, -1, 0);
    } else if (r->state != RESUME_LIVE) {
        if (seq > r->seen_max) /* CATCHUP, WAIT or still loading: a later Y brings it */
            r->seen_max = seq;
        if (r->state == RESUME_LOADING && (r->seen_min == 0 || seq < r->seen_min))
            r->seen_min = seq;
    } else {
        rc = live_entry(r, pkt, (const char *)frame_payload(f), f->len, seq);
        held_drain(r);
    }
    json_decref(pkt);
    return rc;
}

void resume_own_begin(struct resume *r)
{
    r->own_pending++;
}

void resume_own_sent(struct resume *r, int64_t seq)
{
    if (r->own_pending > 0)
        r->own_pending--;
    if (seq <= 0 || r->state == RESUME_OFF) {
        held_drain(r);
        return;
    }
    if (r->state == RESUME_LIVE)
        live_entry(r, NULL, NULL, 0, seq);
    else if (seq > r->seen_max)
        r->seen_max = seq;
    if (r->state == RESUME_LOADING && (r->seen_min == 0 || seq < r->seen_min))
        r->seen_min = seq;
    held_drain(r);
}

void resume_own_refused(struct resume *r)
{
    if (r->own_pending > 0)
        r->own_pending--;
    held_drain(r);
}

void resume_room(struct resume *r)
{
    if (r->state == RESUME_WAIT)
        catch_up(r);
}

/* ---- starting, and the catch-up's answers ---- */

void resume_begin(struct resume *r, enum resume_ack ack)
{
    held_clear(r);
    r->ack = ack;
    r->sent_upto = r->acked_upto = r->stored = -1;
    if (r->state != RESUME_LOADING) /* else what came during resume_loading() counts */
        r->seen_max = r->seen_min = 0;
    r->nahead = 0;
    r->state = RESUME_LOADING;
    ask_y(r, RESUME_SEQ_ASK); /* live from here: the timeline's end now is where it starts */
}

void resume_from(struct resume *r, enum resume_ack ack, int64_t acked, int64_t sent)
{
    r->ack = ack;
    r->sent_upto = r->acked_upto = r->stored = acked;
    r->sent_before = sent;
    if (r->state != RESUME_LOADING)
        r->seen_max = r->seen_min = 0;
    r->nahead = 0;
    stats_resumed(r->ops->proto);
    catch_up(r);
}

void resume_loading(struct resume *r, enum resume_ack ack)
{
    held_clear(r);
    r->ack = ack;
    r->sent_upto = r->acked_upto = r->stored = -1;
    r->seen_max = r->seen_min = 0;
    r->nahead = 0;
    r->state = RESUME_LOADING;
    r->y_n++; /* an answer to an earlier subscription's Y is not this one's */
}

void resume_end(struct resume *r)
{
    held_clear(r);
    r->state = RESUME_OFF;
    r->ack = RESUME_ACK_NONE;
}

void resume_free(struct resume *r)
{
    held_clear(r);
    free(r->held);
    r->held = NULL;
    free(r->ahead);
    r->ahead = NULL;
    r->nahead = 0;
}

/* The answer to a Y: {"messages": [...], "more", "max"}, or E. */
static void on_y(struct resume *r, char type, json_t *msg)
{
    json_t *list = json_object_get(msg, "messages"), *pkt;
    int64_t before = r->sent_upto;
    size_t i;

    if (type != 'Y' || !json_is_array(list)) {
        log_info("%s catch-up failed conn=%llu uid=%lld", r->ops->proto, (unsigned long long)r->c->id,
                 (long long)r->c->uid);
        r->ops->failed(r);
        return;
    }
    if (r->state == RESUME_LOADING) { /* asked for the position only */
        int64_t start = json_int(msg, "max", 0);
        if (r->seen_min > 0 && r->seen_min - 1 < start) /* delivered after the subscription began */
            start = r->seen_min - 1;
        r->sent_upto = r->acked_upto = start;
        r->state = RESUME_LIVE;
        if (r->ack != RESUME_ACK_NONE)
            resume_store(r, 1); /* the session starts here: what comes from now on is kept for it */
        r->stored = r->acked_upto;
        if (r->seen_max > r->sent_upto)
            catch_up(r);
        return;
    }
    json_array_foreach(list, i, pkt)
    {
        int64_t seq = json_int(pkt, "seq", -1);
        char *text;
        if (seq <= r->sent_upto)
            continue;
        if (own(r, pkt)) {
            r->sent_upto = seq;
            resume_ack_one(r, seq);
            continue;
        }
        if (r->ops->room != NULL && !r->ops->room(r, seq)) {
            r->state = RESUME_WAIT; /* resume_room() asks again from sent_upto */
            if (seq > r->seen_max)
                r->seen_max = seq;
            return;
        }
        r->sent_upto = seq;
        if ((text = json_dumps(pkt, JSON_COMPACT)) == NULL) {
            conn_abort(r->c, "out of memory");
            return;
        }
        send_entry(r, pkt, text, strlen(text), seq);
        free(text);
    }
    if (r->ops->room == NULL)
        resume_store(r, 0);
    if (json_is_true(json_object_get(msg, "more")) || r->seen_max > r->sent_upto) {
        if (r->sent_upto == before) {
            /* nothing served (timeline.h: an entry neither Redis nor MySQL has yet): the client retries */
            r->ops->failed(r);
            return;
        }
        catch_up(r);
        return;
    }
    r->state = RESUME_LIVE;
    if (r->redelivered > 0) {
        log_info("%s session caught up conn=%llu uid=%lld redelivered=%llu upto=%lld", r->ops->proto,
                 (unsigned long long)r->c->id, (long long)r->c->uid, (unsigned long long)r->redelivered,
                 (long long)r->sent_upto);
        r->redelivered = 0;
    }
}

int resume_reply(struct resume *r, const char *rest, char type, json_t *msg)
{
    if (rest[0] != 'y')
        return 0;
    if (strtoull(rest + 1, NULL, 10) == r->y_n && r->state != RESUME_OFF && r->state != RESUME_LIVE &&
        r->state != RESUME_WAIT)
        on_y(r, type, msg);
    return 1;
}
