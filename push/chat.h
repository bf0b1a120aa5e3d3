/* chat.h -- the chat protocol of seed 001 (SPEC §4) on /ws: one JSON packet per text frame.
 *
 * chat.c does the handshake (the single-use ticket) and dispatches packets through a table, type letter ->
 * handler; each handler lives in its own file: chat_send.c (t, i), chat_online.c (O), chat_history.c (H),
 * chat_order.c (T), chat_site.c (S); P is answered in chat.c. Handlers that wait for Redis or MySQL copy
 * what they need from the packet (it is freed when the handler returns) and hold the connection.
 */
#ifndef PUSH_CHAT_H
#define PUSH_CHAT_H

#include "chatpkt.h"
#include "conn.h"

#include <hiredis/hiredis.h>
#include "proto.h"
#include "stats.h"

extern const struct proto chat_proto;

/* A request waiting for Redis or MySQL: the connection (held) and the packet id to answer with. */
struct chat_req {
    struct conn *c;
    char id[CHAT_MAX_ID + 1];
    size_t id_len;
};

/* Fill r from the packet and hold the connection. */
void chat_req_init(struct chat_req *r, struct conn *c, const struct chatpkt *p);
/* Release the connection (r itself belongs to the caller). */
void chat_req_done(struct chat_req *r);

/* Send {"id", "from": 0, "type", "msg"} (msg stolen, extra stolen and merged; either may be NULL).
 * Does nothing when c is no longer open. */
void chat_reply(struct conn *c, const char *id, size_t id_len, char type, json_t *msg, json_t *extra);

/* Send a server packet already built as JSON (malloc'd, adopted): through c->proto->reply like chat_reply,
 * for answers that splice stored packets into their text (H, Y). Does nothing when c is not open. */
void chat_reply_str(struct conn *c, char *packet, size_t len);

/* Send E with the reason; counts it under r. Malformed packets and unknown types also use one of the
 * connection's bad-packet allowance. */
void chat_error(struct conn *c, const char *id, size_t id_len, const char *reason, enum stats_reason r);

/* Serve one parsed packet through the packet table (the core every protocol on /ws calls, proto.h): the
 * answer comes through c->proto->reply. An unknown type gets E "unknown type". */
void chat_handle(struct conn *c, const struct chatpkt *p);

/* The packet handlers. */
void chat_send(struct conn *c, const struct chatpkt *p);       /* t, i */
void chat_online(struct conn *c, const struct chatpkt *p);     /* O */
void chat_history(struct conn *c, const struct chatpkt *p);    /* H */
void timeline_sync(struct conn *c, const struct chatpkt *p);   /* Y (timeline.c) */
void chat_read(struct conn *c, const struct chatpkt *p);       /* R */
void chat_take_order(struct conn *c, const struct chatpkt *p); /* T */
void chat_site(struct conn *c, const struct chatpkt *p);       /* S */

/* The deliveries a send script returned instead of PUBLISHing them, when the sender WAITs for replicas
 * first (chat_send.c, group_send.c; shared/sentinel.h): a payload and the channels of the nodes it goes to.
 */
struct chat_pubs {
    char *payload;
    size_t len;
    char **chans;
    size_t n;
};

/* Copy them from elements first (the payload), first + 1, ... (the channels) of a script's array reply r;
 * none when r ends before first. MP_OK or MP_ENOMEM (then chat_pubs_free what was kept). */
int chat_pubs_keep(struct chat_pubs *p, const redisReply *r, size_t first);
/* PUBLISH them (fire and forget, in order on the command connection). */
void chat_pubs_send(const struct chat_pubs *p);
void chat_pubs_free(struct chat_pubs *p);

/* Register the Lua scripts of the handlers (before rdsa_start). */
void chat_send_init(void);

/* The Redis key remembering (from, id) of a t, i or g: KEY_DEDUP with the client's id appended by length,
 * since the id may hold any bytes. Returns its length (0 when it does not fit); buf holds at least
 * 64 + CHAT_MAX_ID bytes. */
size_t chat_dedup_key(char *buf, size_t size, int64_t from, const char *id, size_t id_len);

/* The E reason for a ticket auth_verify refused (any protocol's login): expired, wrong kind, or bad. */
const char *chat_ticket_refusal(enum auth_result r);

/* The A fields of a retried t, i or g from its dedup key's "<mid> <seq>" (just "<mid>" when it was accepted
 * before timelines): {"mid", "seq"?}. */
json_t *chat_retry_extra(const char *first);

/* The answer to a t, i or g once rdsa_wait said whether it is durable (ok): E "temporarily unavailable", the
 * A of a retry (retry = its dedup key's "<mid> <seq>"), or the A of a new message (mid, seq). Returns 1 for
 * a new message that was acked: the caller delivers it now; 0 otherwise. */
int chat_durable_ack(const struct chat_req *r, int ok, const char *retry, const char *mid, int64_t seq);

/* Bytes of the first notify.preview_chars characters of a valid UTF-8 body: a notification's preview. */
size_t chat_preview_len(const char *body, size_t len);

void chat_online_init(void);
void chat_order_init(void);
void chat_site_init(void);
void chat_read_init(void);

/* Deliver a chat message frame to uid's open chat connections here, except `except` (may be NULL);
 * ts is the message's acceptance time, for the delivery latency metric. */
void chat_deliver(int64_t uid, struct frame *f, const struct conn *except, int64_t ts);

/* The same for a stored message: packet (without seq) gets uid's seq in that message (chatpkt_with_seq).
 * Builds the frame only when uid has a connection here. */
void chat_deliver_seq(int64_t uid, const char *packet, size_t len, int64_t seq, const struct conn *except,
                      int64_t ts);

#endif
