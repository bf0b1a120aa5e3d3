/* resume.h -- a standard-protocol subscription to its user's timeline that keeps its place by seq, and the
 * session position kept in Redis so that a later connection resumes where the last one stopped (SPEC §4.3:
 * STOMP ack:client / client-individual, MQTT clean session 0). stomp.c and mqtt.c each hold one struct
 * resume per connection and pass their deliveries, the core's Y answers and the client's acknowledgements
 * through it; what goes out is written by the protocol (ops->send). There is one copy of these rules.
 *
 * Where a new subscription starts (resume_begin): at the timeline's end, the latest seq a Y answers -- or
 * before the lowest seq delivered to the connection while that Y was out, which came after the subscription
 * began and so is the subscription's.
 *
 * Order, by seq (timeline.h). sent_upto: every seq of the user's timeline up to it has been sent on this
 * connection (or is one this session sent itself, on this or an earlier connection: own messages are not
 * sent back, the protocol's ack told the client). In LIVE a delivery with seq sent_upto + 1 goes out; an
 * older one is a duplicate and dropped; a newer one means one is missing (a delivery from another node not
 * here yet, or an own send's seq) and the subscription catches up: CATCHUP sends Y after sent_upto through
 * chat_handle (id <prefix>y<n>), drops live deliveries meanwhile (remembering the highest seq seen), sends
 * each entry of the answer, and asks again while the answer has more or a higher seq was seen; then LIVE
 * again. So every entry goes out once per connection, in seq order. Deliveries without seq (a read mark r,
 * an order event s) go out as they come, untracked. Before a catch-up, a gap is waited for: the entries past
it are held, in seq order, at most RESUME_HOLD_MAX of them, and go out as the gap fills. Two paths race
into one timeline: an own send's seq comes with its A on this node's Redis connection (an own message is
not delivered back to the session), a message from another node on pub/sub; either often overtakes the
other by a moment, and a catch-up per overtaking costs a Y each, Redis work that grows with the load. So a
gap is held while the connection's own sends in flight (own_pending: handed to the core, no A or E yet)
can fill it, and otherwise for push.resume_gap_ms (gap_due; one node-wide timer, resume_gap_sweep); then,
or when the hold is full, the subscription catches up as above and the held entries are dropped (the Y
brings them). With push.resume_gap_ms 0 only own sends are waited for. WAIT: the protocol has no room for
another tracked
 * entry (ops->room: MQTT's in-flight window); deliveries are dropped as in CATCHUP, and resume_room() catches
 * up from sent_upto when room is back.
 *
 * Acknowledgement. RESUME_ACK_NONE (STOMP ack:auto, MQTT QoS 0) keeps no position. The other two keep
 * acked_upto: every seq up to it was acknowledged -- cumulatively (STOMP client: resume_ack_upto) or one by
 * one (STOMP client-individual, MQTT PUBACK: resume_ack_one), the acks past a gap held in a window of
 * RESUME_ACK_WINDOW (more are forgotten: those come again on the next connect); own messages count as
 * acknowledged. acked_upto only moves over a contiguous prefix.
 *
 * The stored position: a hash per user (ops->key: KEY_STOMP_ACKED, KEY_MQTT_SESSION), field = the session's
 * client id, value "<acked> <sent> <sub> <ts>": acked_upto, the highest seq sent to the session (so a later
 * connection knows what it sends again: MQTT's DUP flag, the redelivery counter), a number the protocol owns
 * (MQTT: the QoS of the session's me/inbox subscription, -1 none) and the write's unix time. The store
 * script only ever raises acked and sent, renews the key's TTL, treats a field older than the TTL as gone
 * (each session expires on its own, not only the whole key) and, past max_sessions fields, drops the one
 * written longest ago. A value written before sent/sub/ts existed ("<acked>") still loads. Writes are not
 * waited for: one that is lost leaves the older position, so those entries come again (at-least-once across
 * connections).
 */
#ifndef PUSH_RESUME_H
#define PUSH_RESUME_H

#include "conn.h"
#include "frame.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define RESUME_ACK_WINDOW                                                                                    \
    256                       /* acks held past a gap; more are forgotten (sent again on the next connect)   \
                               */
#define RESUME_SYNC_LIMIT 100 /* entries per catch-up Y */
#define RESUME_HOLD_MAX   64  /* entries held behind a gap an own send in flight will fill */
#define RESUME_TAG_LEN    16  /* ".<8 hex>-" and its NUL */

enum resume_ack { RESUME_ACK_NONE, RESUME_ACK_CUMULATIVE, RESUME_ACK_INDIVIDUAL };
enum resume_state { RESUME_OFF, RESUME_LOADING, RESUME_CATCHUP, RESUME_LIVE, RESUME_WAIT };

struct resume;
struct resume_held;

struct resume_ops {
    const char *proto; /* "stomp", "mqtt": logs and metric labels; also the first two letters of the ids */
    /* The hash of a user's sessions (shared/keys.h) into buf. */
    void (*key)(char *buf, size_t size, int64_t uid);
    /* Write one entry for the client: pkt is the §4 packet (text its JSON), seq its seq (-1: none, an
     * untracked delivery), again: it was sent to the session before, on an earlier connection. Returns
     * MP_OK when it was queued. */
    int (*send)(struct resume *r, json_t *pkt, const char *text, size_t len, int64_t seq, int again);
    /* May one more tracked entry (this seq) go out now? NULL: always. */
    int (*room)(struct resume *r, int64_t seq);
    /* The catch-up cannot be served (Redis or MySQL down): tell the client and close. */
    void (*failed)(struct resume *r);
};

/* Part of the protocol's per-connection state; zeroed, then resume_setup(). */
struct resume {
    const struct resume_ops *ops;
    struct conn *c;
    const char *prefix; /* the ids of this connection's requests to the core; Y ids are <prefix>y<n> */
    size_t prefix_len;
    char tag[RESUME_TAG_LEN]; /* what every connection of the session puts in its ids (resume_tag) */
    const char *field;        /* the session's client id (hash field); NULL: the position is not kept */
    long long ttl_s;          /* of the stored position */
    long long max_sessions;   /* fields per user at most; 0: no cap */
    int sub;                  /* stored with the position: the protocol's (MQTT: me/inbox QoS, -1 none) */
    enum resume_state state;
    enum resume_ack ack;
    int64_t sent_upto; /* -1: not known yet */
    int64_t seen_max;
    int64_t seen_min;           /* LOADING: the lowest seq delivered meanwhile (0: none) */
    int64_t acked_upto, stored; /* -1: not known yet */
    int64_t sent_before;        /* seqs up to it went to the session on an earlier connection */
    int64_t *ahead; /* acks past a gap, ascending; allocated (RESUME_ACK_WINDOW) at the first one */
    int nahead;
    unsigned own_pending;               /* sends of this connection handed to the core, not answered yet */
    uint64_t gap_due;                   /* loop ms: the held entries' gap is caught up then; 0: not waiting */
    struct resume *gap_prev, *gap_next; /* the node's subscriptions holding entries (resume_gap_sweep) */
    struct resume_held *held; /* entries past a gap, ascending seq; allocated (RESUME_HOLD_MAX) when needed */
    int nheld;
    uint64_t y_n;
    uint64_t redelivered; /* entries sent again on this connection (logs) */
};

/* Register the store script (before rdsa_start). */
void resume_init(void);

/* The session's tag from its client id: ".<8 hex of FNV-1a>-", which the protocol puts in its ids after
 * "<proto[0..1]><digits>" so that the session knows its own messages on every connection it makes. */
void resume_tag(char tag[RESUME_TAG_LEN], const char *client_id, size_t len);

/* Bind r to its connection and protocol (prefix is the protocol's, lives as long as r). State OFF. */
void resume_setup(struct resume *r, const struct resume_ops *ops, struct conn *c, const char *prefix,
                  size_t prefix_len);

/* Start at the timeline's end: asks Y for the latest seq (LOADING), then LIVE. */
void resume_begin(struct resume *r, enum resume_ack ack);

/* Resume a stored session: CATCHUP after acked (what was not acknowledged and what came since), entries up
 * to sent marked as sent before. */
void resume_from(struct resume *r, enum resume_ack ack, int64_t acked, int64_t sent);

/* The protocol is reading the stored position (resume_load): deliveries meanwhile are remembered; then
 * resume_from() or resume_begin(). */
void resume_loading(struct resume *r, enum resume_ack ack);

/* Stop (unsubscribed): no more deliveries, no acknowledgement tracked (what is stored stays). */
void resume_end(struct resume *r);

/* The connection is gone: free what r holds (not r). */
void resume_free(struct resume *r);

/* proto->deliver for a subscribed connection: the JSON packet in f. Returns MP_OK when something was sent. */
int resume_deliver(struct resume *r, struct frame *f);

/* The core answered a request whose id is <prefix><rest>: returns 1 when it was this subscription's Y (and
 * serves it), 0 when it is the protocol's. */
int resume_reply(struct resume *r, const char *rest, char type, json_t *msg);

/* A send of this connection goes to the core (chat_handle): its A brings the session's own seq. Call
 * resume_own_sent or resume_own_refused exactly once for each, when its answer comes. */
void resume_own_begin(struct resume *r);

/* The core accepted a send of this connection with this seq (its A; -1: the A carried none): the session's
 * own entry. */
void resume_own_sent(struct resume *r, int64_t seq);

/* The core refused a send of this connection (E): no seq comes for it. */
void resume_own_refused(struct resume *r);

/* What the node's gap timer does at loop time now: every subscription whose held entries' gap is due and
 * that its own sends in flight cannot fill any more catches up. Exposed for the unit tests. */
void resume_gap_sweep(uint64_t now);

/* Shutdown: close the gap timer. */
void resume_stop(void);

/* The client acknowledged seq alone, or everything up to seq (ignored when not tracking, or not sent). */
void resume_ack_one(struct resume *r, int64_t seq);
void resume_ack_upto(struct resume *r, int64_t seq);

/* 1 when seq was sent on this connection and an acknowledgement of it would move the position (not
 * acknowledged yet); 0 otherwise, and when not tracking. What a protocol's unmetered ack check asks. */
int resume_unacked(const struct resume *r, int64_t seq);

/* The protocol has room again (after ops->room said no): WAIT catches up. */
void resume_room(struct resume *r);

/* Write the position when it moved (force: also when it did not; the sub and sent positions go with it).
 * Nothing when r->field is NULL or the position is not known. */
void resume_store(struct resume *r, int force);

/* A stored session: found 1 (acked, sent, sub set), 0 none (or expired), -1 Redis could not say. */
typedef void (*resume_loaded_fn)(struct conn *c, int found, int64_t acked, int64_t sent, int sub);

/* Read the session (ops->key of c's uid, field) for c; fn is called when c is still open. Returns MP_OK, or
 * another code when the request could not be sent (fn is not called). */
int resume_load(struct conn *c, const struct resume_ops *ops, const char *field, long long ttl_s,
                resume_loaded_fn fn);

/* Drop a stored session (MQTT clean session 1). Not waited for. */
void resume_forget(const struct resume_ops *ops, int64_t uid, const char *field);

#endif
