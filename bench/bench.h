/* bench.h -- magpie-bench's shared types: options, the worker's connections, the protocol table, and the
 * report a worker process sends its parent.
 *
 * Shape of a run: the parent process parses the options, prepares what the target needs (friendships for
 * chat), forks --procs workers and drives them through phases over a pipe each (connect, run a step of the
 * rate ramp, status, quit). Each worker holds its share of the connections on one epoll loop; a connection
 * speaks one protocol (struct proto). After each phase every worker writes a struct bench_report (plain data,
 * histograms included) back, and the parent merges them. Timestamps are CLOCK_MONOTONIC nanoseconds, which
 * every process of the machine shares, so a message sent by one worker can be timed by another.
 */
#ifndef BENCH_H
#define BENCH_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "hist.h"
#include "payload.h"
#include "resp.h"
#include "syncans.h"
#include "wsframe.h"

#define BENCH_MAX_URLS   16
#define BENCH_MAX_MEM    8
#define BENCH_MAX_PIDS   64
#define BENCH_FD_RESERVE 64         /* fds a worker keeps for itself (epoll, timer, pipes, stdio) */
#define BENCH_READ_CHUNK 65536      /* bytes read per read(2) */
#define BENCH_MAX_MSG    (1 << 20)  /* largest WebSocket message accepted from a server */
#define BENCH_TX_CAP     (16 << 20) /* output a connection may queue before sends are refused (counted) */

enum scenario { SC_IDLE, SC_CHAT, SC_ROOM, SC_GROUP };

#define BENCH_MAX_GROUPS 1024

enum proto_kind {
    PROTO_MAGPIE_CHAT,
    PROTO_MAGPIE_ROOM,
    PROTO_NATS,
    PROTO_NCHAN,
    PROTO_MAGPIE_STOMP, /* STOMP 1.2 over WebSocket (SPEC §4.3) */
    PROTO_MAGPIE_MQTT,  /* MQTT 3.1.1 over WebSocket (SPEC §4.3) */
    PROTO_MOSQUITTO,    /* MQTT 3.1.1 over plain TCP (a broker: mosquitto) */
};

/* Why a connection never became ready. */
enum fail_reason { FR_CONNECT, FR_HANDSHAKE, FR_LOGIN, FR_PROTOCOL, FR_CLOSED, FR_TIMEOUT, FR_COUNT };

struct endpoint {
    struct sockaddr_in addr;
    char hostport[80]; /* for the Host header */
    char path[256];    /* path prefix from the URL */
    int tcp;           /* a tcp:// URL: plain TCP, no WebSocket (mosquitto) */
};

/* A group of server processes whose memory is measured (their children are included: nginx workers). */
struct memgroup {
    char label[32];
    int pids[BENCH_MAX_PIDS];
    int npids;
};

struct bench_opts {
    enum scenario scenario;
    enum proto_kind proto;
    struct endpoint urls[BENCH_MAX_URLS]; /* connection i uses urls[i % nurls] */
    int nurls;
    struct endpoint pub_url; /* nchan: where publishers POST */
    long conns;              /* idle: connections; chat: users (pairs * 2); room: receivers; group: members */
    int publishers;          /* room: publishing connections (in addition to conns) */
    int procs;
    double rate;        /* messages/s of the first step (all senders together) */
    double rate_max;    /* last step's rate at most this */
    double step_factor; /* next step's rate = rate * factor; 1 = a single step */
    double step_s;
    double drain_s;       /* after a step, how long late messages still count for it */
    double p99_bound_ms;  /* the ramp stops after the first step whose p99 is over this */
    double settle_s;      /* pause after connecting, before measuring memory or sending */
    double hold_s;        /* idle: how long the connections are held */
    size_t size;          /* bytes of each message's payload */
    double connect_rate;  /* new connections/s, all workers together */
    int connect_inflight; /* per worker */
    double connect_timeout_s;
    double heartbeat_s;  /* room: HEARTBEAT interval */
    double sync_rate;    /* chat: Y requests/s of all users together while a step runs (0 = none) */
    int sync_limit;      /* chat: entries each Y asks for, `after` that many back from the user's latest */
    double offline_frac; /* chat: fraction of the pairs sending to users never connected (bench_offline) */
    int src_ips;         /* client addresses 127.0.0.2 .. 127.0.0.(1 + src_ips); 0 = kernel's */
    int64_t uid_base;    /* connection i is user uid_base + i */
    /* group: connection i is member i % members of group_ids[i / members] (bench/run made the groups over
     * HTTP with exactly these uids); the first group_senders members of each group send. */
    int64_t group_ids[BENCH_MAX_GROUPS];
    int ngroups;
    int members;
    int group_senders;
    char room[96];    /* room / channel / subject name (the run nonce is appended) */
    uint32_t run;     /* nonce of this run */
    int level;        /* room: msgLv of published messages */
    int mqtt_qos;     /* mosquitto room: QoS of the members' subscription and of the publishes */
    struct auth auth; /* Magpie: mints tickets and tokens */
    int64_t ticket_ttl_s;
    struct memgroup mem[BENCH_MAX_MEM];
    int nmem;
    const char *json_path;
    const char *ack_log; /* chat: each worker writes "<CLOCK_MONOTONIC ns> A|E <sender uid> <id>" of every
                          * answer to its bench message to <ack_log>.<worker> (bench/failover reads them) */
    int quiet;
};

enum conn_state {
    CS_NEW,        /* not started */
    CS_CONNECTING, /* TCP connect in progress */
    CS_HANDSHAKE,  /* upgrade request sent */
    CS_OPEN,       /* WebSocket open (or TCP for a raw publisher); logging in */
    CS_READY,      /* logged in / subscribed: counts as held */
    CS_DONE,       /* failed or closed */
};

struct conn {
    int fd;
    uint32_t idx;  /* global index: uid = uid_base + idx */
    uint8_t state; /* enum conn_state */
    uint8_t publisher;
    uint8_t raw;      /* no WebSocket: plain HTTP (nchan publisher) or plain TCP (mosquitto) */
    uint8_t want_out; /* EPOLLOUT registered */
    struct resp_upgrade *hs;
    struct wsf_reader wr;
    uint8_t *rx; /* input kept for the next read (a partial frame) */
    uint32_t rx_len, rx_cap;
    uint8_t *tx; /* output the kernel did not take yet */
    uint32_t tx_off, tx_len, tx_cap;
    int64_t t_start;   /* connect started */
    int64_t last_tx;   /* last heartbeat sent (room) */
    uint64_t seq;      /* next send sequence (senders) */
    uint64_t ack_next; /* next expected ack sequence (chat senders) */
    uint64_t *rx_next; /* receivers: next expected sequence, per sender slot */
    int64_t tl_max;    /* chat: the highest timeline seq this user was shown (A, t, Y's max) */
    int64_t y_sched;   /* chat: when the Y in flight was due (0 = none in flight) */
    int64_t y_after;   /* chat: its after */
    int32_t y_step;    /* chat: the step it was sent in */
    void *ps;          /* protocol state (natsp, resp_stream), freed by proto->release */
};

/* The report of one phase from one worker (plain data: it crosses a pipe). */
struct bench_report {
    int32_t worker;
    int32_t step;
    uint64_t ready;            /* connections ready now */
    uint64_t failed[FR_COUNT]; /* connections that never became ready, by reason */
    uint64_t dropped;          /* ready connections lost (closed by the server, errors) */
    int32_t last_status;       /* HTTP status of the last refused upgrade */
    char last_error[160];      /* the last error a server sent or a protocol violation, for the operator */
    int64_t first_start_ns;    /* connect phase: first connect started */
    int64_t last_ready_ns;     /* connect phase: last connection ready */
    uint64_t sent;             /* messages sent in this step */
    uint64_t send_skipped;     /* scheduled but the sender was not ready / its buffer was full */
    uint64_t send_errors;      /* refused by the server (chat E, room Err, nats -ERR, nchan non-2xx) */
    uint64_t acked;            /* chat: A received for this step's messages */
    uint64_t acked_offline;    /* chat: of those, messages to an offline user (no delivery expected) */
    uint64_t acked_refused;    /* chat over MQTT: PUBACKs of refused PUBLISHes (SPEC §4.3: PUBACK, then the
                                * refusal on me/errors), in acked and in send_errors alike */
    uint64_t ack_dups;
    uint64_t delivered;    /* this step's messages received by receivers, each once */
    uint64_t gaps;         /* sequence numbers skipped (a message missing, or reordered) */
    uint64_t dups;         /* a sequence number seen again (or older than one already seen) */
    uint64_t late;         /* messages of an earlier step that arrived after its report */
    uint64_t foreign;      /* data frames that are not ours (other runs, unparsable) */
    uint64_t frames;       /* data frames receivers got (deliveries / frames shows batching) */
    uint64_t proto_errors; /* malformed server packets (counted; see last_error) */
    int64_t cpu_ns;        /* CPU time the worker used in this phase (is the generator the bottleneck?) */
    struct hist lat;       /* run: send->deliver; connect phase: connect->ready */
    struct hist ack;       /* chat: send->ack */
    struct hist lag;       /* how late the generator sent, against its own schedule */
    /* chat --sync-rate: Y requests of this step */
    uint64_t syncs_sent;
    uint64_t syncs_ok;     /* answered right (syncans.h) */
    uint64_t syncs_short;  /* of those, fewer than asked but "more": true (the server's byte cap) */
    uint64_t sync_msgs;    /* messages in the right answers */
    uint64_t sync_errors;  /* answered E */
    uint64_t sync_wrong;   /* answered wrong: a gap, a duplicate, a count or "more" that does not add up */
    uint64_t sync_skipped; /* due, but no user of the worker had sync_limit entries seen and no Y in flight */
    uint64_t sync_late;    /* answers that came after their step's report */
    struct hist sync;      /* due -> Y answer */
};

struct worker;

/* One protocol: how a connection logs in, reads what the server sends and sends a bench message. */
struct proto {
    const char *name;
    /* The WebSocket subprotocol offered in the upgrade, which the server must name in its 101; NULL: none. */
    const char *subprotocol;
    /* Path (and query) of the upgrade request for c; may mint a ticket. Returns 0, or -1 (c fails). */
    int (*path)(struct worker *w, struct conn *c, char *buf, size_t cap);
    /* The connection is open: log in / subscribe. conn_ready() once the server confirmed. */
    void (*on_open)(struct worker *w, struct conn *c);
    /* A WebSocket message (TEXT or BINARY). */
    void (*on_message)(struct worker *w, struct conn *c, int opcode, const uint8_t *data, size_t len);
    /* Bytes of a raw (HTTP) connection. */
    void (*on_raw)(struct worker *w, struct conn *c, const uint8_t *data, size_t len);
    /* Send one bench message whose text is text (payload p). Returns 0, or -1 (not sent). */
    int (*send)(struct worker *w, struct conn *c, const struct payload *p, const char *text, size_t len);
    /* Send Y {after, limit} (chat --sync-rate). Returns 0, or -1 (not sent). May be NULL. */
    int (*sync)(struct worker *w, struct conn *c, int64_t after, int limit);
    /* Once a second for each ready connection (heartbeats); may be NULL. */
    void (*tick)(struct worker *w, struct conn *c, int64_t now);
    /* Free c->ps; may be NULL. */
    void (*release)(struct conn *c);
};

extern const struct proto proto_magpie_chat, proto_magpie_room, proto_nats, proto_nchan;
extern const struct proto proto_magpie_stomp, proto_magpie_mqtt, proto_mosquitto;

/* ---- the worker side (loop.c), for the protocols ---- */

/* The options of the run. */
const struct bench_opts *worker_opts(const struct worker *w);
/* The current phase's report, for counting. */
struct bench_report *worker_report(struct worker *w);

int64_t bench_now_ns(void);

/* c logged in: it now counts as held. */
void conn_ready(struct worker *w, struct conn *c);
/* c failed (before ready: counted by reason; after: as dropped). detail goes to last_error. */
void conn_fail(struct worker *w, struct conn *c, enum fail_reason why, const char *detail);
/* Queue bytes for c. Returns 0, or -1 (c failed, or its output is over BENCH_TX_CAP). */
int conn_write(struct worker *w, struct conn *c, const void *data, size_t len);
/* Send one WebSocket message (masked). Returns as conn_write. */
int conn_ws_send(struct worker *w, struct conn *c, int opcode, const void *data, size_t len);

/* A receiver got a bench message's text: check it is ours, track its sequence, time it. */
void bench_delivered(struct worker *w, struct conn *c, const uint8_t *text, size_t len, int64_t now);
/* A chat sender got the ack of the message with this payload. */
/* chat --offline-frac F: pair k (users 2k, 2k+1) is an offline pair when floor((k+1)F) > floor(kF), which
 * spreads round(pairs x F) such pairs evenly. Both users of an offline pair stay connected and send, but
 * each to a user of its own that never connects (uid_base + conns + idx, made its friend), so that message
 * is stored and, with notify.webhook_url set, queued as a notification event (SPEC §6) instead of
 * delivered. Acks are timed as for any message; no delivery is expected for it. */
static inline int bench_offline(const struct bench_opts *o, uint32_t idx)
{
    double k = (double)(idx / 2u);
    return o->offline_frac > 0 && (long)((k + 1) * o->offline_frac) > (long)(k * o->offline_frac);
}

/* The user idx sends its messages to. */
static inline int64_t bench_recipient(const struct bench_opts *o, uint32_t idx)
{
    if (bench_offline(o, idx))
        return o->uid_base + (int64_t)o->conns + (int64_t)idx;
    return o->uid_base + (int64_t)(idx ^ 1u);
}

void bench_acked(struct worker *w, struct conn *c, const struct payload *p, int64_t now);
/* The server refused bench message p (chat E): noted in --ack-log when there is one. */
void bench_refused(struct worker *w, const struct payload *p, int64_t now);
/* A Y answer (msg, NULL when it was E with the text err) came for c's Y in flight. */
void bench_synced(struct worker *w, struct conn *c, const json_t *msg, const char *err, int64_t now);
/* Record a server's error text (counted by the caller). */
void bench_note_error(struct worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Room/channel name of this run (the --room option with the run nonce). */
const char *bench_room(const struct worker *w);
/* Slot of a message's sender in a receiver's rx_next (chat: always 0). */
int bench_sender_slot(const struct worker *w, uint32_t pub);

/* Worker process entry: serves the connections [first, first + count) and the commands on ctl_in, writes
 * reports to rep_out; exits the process. */
void worker_main(const struct bench_opts *o, int id, long first, long count, int ctl_in, int rep_out)
    __attribute__((noreturn));

/* Commands from the parent. */
enum bench_op { OP_CONNECT = 1, OP_RUN, OP_STATUS, OP_QUIT };

struct bench_cmd {
    int32_t op;
    int32_t step;
    double rate;       /* OP_RUN: messages/s of all senders together */
    int64_t t0_ns;     /* OP_RUN: first message scheduled at */
    int64_t t_end_ns;  /* OP_RUN: none scheduled from here on */
    int64_t report_ns; /* OP_RUN: report at (t_end + drain) */
};

#endif
