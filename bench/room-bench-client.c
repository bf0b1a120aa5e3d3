/* room-bench-client -- the load client of bench/room_bench.py (issue 6's benchmark): many members of one room
 * in one process, or the room's publisher. A client in C because Python cannot unpack a million room
 * messages a second; it speaks the protocol with libwebsockets (client side) and protobuf-c on the repo's
 * room.proto, and mints its login tokens with libmagpie's auth (the secret comes from the config file).
 *
 *   room-bench-client -c CONF -p PORT -r ROOM -n MEMBERS -u FIRST_UID [-s SRC_ADDR] [-H HOST]
 *   room-bench-client -c CONF -p PORT -r ROOM -u UID --publish -t SECONDS [-R RATE] [-w WINDOW] [-z SIZE]
 *
 * Members connect (at most CONNECTING at a time) and sign in, then print "ready <n> <failed>" on stdout.
 * SIGUSR1 starts a measurement (counters reset); SIGUSR2 ends it with one JSON line on stdout: the frames
 * and messages received, errors, closes, and the publish->receive latency histogram. SIGTERM: exit.
 * The publisher signs in, prints "ready", then sends MESSAGEs of SIZE bytes for SECONDS, each carrying its
 * send time (CLOCK_MONOTONIC, which every process on the host shares): RATE a second (0 = as fast as it
 * can), never more than WINDOW of them not yet back in its own deliveries. Two seconds after the last one
 * it prints its JSON line and exits.
 */
#include "auth.h"
#include "config.h"
#include "magpie.h"
#include "room.pb-c.h"

#include <errno.h>
#include <getopt.h>
#include <libwebsockets.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CONNECTING  200   /* handshakes in flight at once */
#define RX_BUFFER   65536 /* libwebsockets' receive buffer per connection */
#define MAX_MESSAGE (1 << 24)
#define LAT_BUCKETS 2980         /* 10 us steps up to 10 ms, 100 us to 100 ms, 1 ms to 1 s, 50 ms to 10 s */
#define STALL_NS    1000000000LL /* a publisher whose window has not moved for this long stops waiting */
#define TOKEN_TTL_S 86400

struct member {
    struct lws *wsi;
    int signed_in, closed, sign_in_sent;
    unsigned char *rx;
    size_t rx_len, rx_cap;
    char *token;
};

static struct {
    struct lws_context *ctx;
    struct member *m;
    int n, started, connected, signed_in, failed;
    const char *host, *room, *src;
    int port, publish;
    double seconds;
    int window, size;
    double rate;
    int64_t pub_start_ns;
    /* measurement */
    volatile sig_atomic_t go, report, stop;
    int measuring;
    long long frames, messages, errors, closes, bytes, sent, in_flight, own, stalls;
    int64_t progress_ns; /* the publisher's window last moved */
    long long lat[LAT_BUCKETS + 1];
    int64_t pub_until_ns;
    int ready_printed;
} B;

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int bucket_of(int64_t us)
{
    if (us < 0)
        us = 0;
    if (us < 10000)
        return (int)(us / 10);
    if (us < 100000)
        return 1000 + (int)((us - 10000) / 100);
    if (us < 1000000)
        return 1900 + (int)((us - 100000) / 1000);
    if (us < 10000000)
        return 2800 + (int)((us - 1000000) / 50000);
    return LAT_BUCKETS;
}

/* Upper bound in microseconds of a bucket, for the report. */
static int64_t bucket_top(int b)
{
    if (b < 1000)
        return (int64_t)(b + 1) * 10;
    if (b < 1900)
        return 10000 + (int64_t)(b - 1000 + 1) * 100;
    if (b < 2800)
        return 100000 + (int64_t)(b - 1900 + 1) * 1000;
    if (b < LAT_BUCKETS)
        return 1000000 + (int64_t)(b - 2800 + 1) * 50000;
    return INT64_MAX;
}

static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        B.go = 1;
    else if (sig == SIGUSR2)
        B.report = 1;
    else
        B.stop = 1;
}

/* ---- requests ---- */

static int send_req(struct lws *wsi, int type, const void *data, size_t len)
{
    Magpie__Req r = MAGPIE__REQ__INIT;
    size_t n;
    unsigned char *buf;
    int rc;

    r.type = (Magpie__PackageType)type;
    r.data.data = (uint8_t *)data;
    r.data.len = len;
    n = magpie__req__get_packed_size(&r);
    if ((buf = malloc(LWS_PRE + n)) == NULL)
        return -1;
    magpie__req__pack(&r, buf + LWS_PRE);
    rc = lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_BINARY) < (int)n ? -1 : 0;
    free(buf);
    return rc;
}

static int send_sign_in(struct member *m)
{
    Magpie__SignIn s = MAGPIE__SIGN_IN__INIT;
    unsigned char buf[AUTH_MAX_TOKEN + 512];
    size_t n;

    s.token = m->token;
    s.roomid = (char *)B.room;
    n = magpie__sign_in__get_packed_size(&s);
    if (n > sizeof(buf))
        return -1;
    magpie__sign_in__pack(&s, buf);
    m->sign_in_sent = 1;
    return send_req(m->wsi, MAGPIE__PACKAGE_TYPE__SIGN_IN, buf, n);
}

static int send_message(struct member *m)
{
    Magpie__BroadcastRoomReq b = MAGPIE__BROADCAST_ROOM_REQ__INIT;
    unsigned char *msg, *buf;
    size_t n;
    int rc;
    int64_t now = mono_ns();

    if ((msg = calloc(1, (size_t)B.size)) == NULL)
        return -1;
    memcpy(msg, &now, sizeof(now)); /* the send time, read back by every receiver on this host */
    memset(msg + sizeof(now), 'x', (size_t)B.size - sizeof(now));
    b.roomid = (char *)B.room;
    b.data.data = msg;
    b.data.len = (size_t)B.size;
    n = magpie__broadcast_room_req__get_packed_size(&b);
    if ((buf = malloc(n)) == NULL) {
        free(msg);
        return -1;
    }
    magpie__broadcast_room_req__pack(&b, buf);
    rc = send_req(m->wsi, MAGPIE__PACKAGE_TYPE__MESSAGE, buf, n);
    free(buf);
    free(msg);
    if (rc == 0) {
        B.sent++;
        B.in_flight++;
    }
    return rc;
}

/* ---- deliveries ---- */

static void on_frame(struct member *m, const unsigned char *buf, size_t len)
{
    Magpie__Reply *r = magpie__reply__unpack(NULL, len, buf);
    Magpie__BroadcastRoomReq *b;
    int64_t now;

    if (r == NULL) {
        B.errors++;
        return;
    }
    if (r->type == MAGPIE__PACKAGE_TYPE__UNKNOWN) {
        Magpie__Err *e = magpie__err__unpack(NULL, r->data.len, r->data.data);
        if (e != NULL && e->code == 0 && !m->signed_in) {
            m->signed_in = 1;
            B.signed_in++;
        } else {
            B.errors++;
        }
        if (e != NULL)
            magpie__err__free_unpacked(e, NULL);
    } else if (r->type == MAGPIE__PACKAGE_TYPE__MESSAGE &&
               (b = magpie__broadcast_room_req__unpack(NULL, r->data.len, r->data.data)) != NULL) {
        size_t off = 0;
        now = mono_ns();
        B.frames += B.measuring;
        while (off + 4 <= b->data.len) {
            const uint8_t *p = b->data.data + off;
            size_t l = (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
            int64_t sent;
            if (off + 4 + l > b->data.len)
                break;
            if (l >= sizeof(sent)) {
                memcpy(&sent, p + 4, sizeof(sent));
                if (B.measuring) {
                    B.messages++;
                    B.lat[bucket_of((now - sent) / 1000)]++;
                }
                if (B.publish && B.in_flight > 0) {
                    B.in_flight--;
                    B.own++;
                    B.progress_ns = now;
                }
            }
            off += 4 + l;
        }
        magpie__broadcast_room_req__free_unpacked(b, NULL);
        if (B.publish)
            lws_callback_on_writable(m->wsi);
    }
    magpie__reply__free_unpacked(r, NULL);
}

static int on_receive(struct member *m, const void *in, size_t len)
{
    struct lws *wsi = m->wsi;
    B.bytes += (long long)len * B.measuring;
    if (m->rx_len == 0 && lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
        on_frame(m, in, len);
        return 0;
    }
    if (m->rx_len + len > MAX_MESSAGE)
        return -1;
    if (m->rx_len + len > m->rx_cap) {
        size_t cap = m->rx_cap ? m->rx_cap : 4096;
        unsigned char *p;
        while (cap < m->rx_len + len)
            cap *= 2;
        if ((p = realloc(m->rx, cap)) == NULL)
            return -1;
        m->rx = p;
        m->rx_cap = cap;
    }
    memcpy(m->rx + m->rx_len, in, len);
    m->rx_len += len;
    if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
        on_frame(m, m->rx, m->rx_len);
        m->rx_len = 0;
    }
    return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct member *m = lws_get_opaque_user_data(wsi);

    switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        B.connected++;
        lws_callback_on_writable(wsi);
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (m == NULL)
            break;
        if (!m->sign_in_sent)
            return send_sign_in(m);
        if (B.publish && B.in_flight >= B.window && mono_ns() - B.progress_ns > STALL_NS) {
            B.stalls++; /* messages of ours were dropped (we were slow): stop waiting for them */
            B.in_flight = 0;
        }
        if (B.publish && m->signed_in && mono_ns() < B.pub_until_ns && B.in_flight < B.window &&
            (B.rate <= 0 || mono_ns() >= B.pub_start_ns + (int64_t)((double)B.sent * 1e9 / B.rate))) {
            if (B.in_flight == 0)
                B.progress_ns = mono_ns();
            if (send_message(m) != 0)
                return -1;
            lws_callback_on_writable(wsi);
        }
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (m != NULL)
            return on_receive(m, in, len);
        break;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        B.failed++;
        if (m != NULL) {
            m->closed = 1;
            m->wsi = NULL;
        }
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
        B.closes += m != NULL && m->signed_in;
        if (m != NULL) {
            m->closed = 1;
            m->wsi = NULL;
        }
        break;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    {"magpie-room-bench", callback, 0, RX_BUFFER, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void connect_one(struct member *m)
{
    struct lws_client_connect_info i;
    memset(&i, 0, sizeof(i));
    i.context = B.ctx;
    i.address = B.host;
    i.port = B.port;
    i.path = "/room";
    i.host = B.host;
    i.origin = NULL;
    i.iface = B.src;
    i.protocol = NULL;
    i.local_protocol_name = protocols[0].name;
    i.opaque_user_data = m;
    i.pwsi = &m->wsi;
    B.started++;
    if (lws_client_connect_via_info(&i) == NULL) {
        B.failed++;
        m->closed = 1;
    }
}

static void report(void)
{
    printf("{\"members\": %d, \"signed_in\": %d, \"failed\": %d, \"closes\": %lld, \"frames\": %lld, "
           "\"messages\": %lld, \"bytes\": %lld, \"errors\": %lld, \"sent\": %lld, \"own\": %lld, "
           "\"stalls\": %lld, \"lat_us\": [",
           B.n, B.signed_in, B.failed, B.closes, B.frames, B.messages, B.bytes, B.errors, B.sent, B.own,
           B.stalls);
    for (int b = 0, first = 1; b <= LAT_BUCKETS; b++)
        if (B.lat[b] > 0) {
            printf("%s[%lld, %lld]", first ? "" : ", ", (long long)bucket_top(b), B.lat[b]);
            first = 0;
        }
    printf("]}\n");
    fflush(stdout);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: room-bench-client -c CONF -p PORT -r ROOM -u FIRST_UID [-n MEMBERS] [-s SRC] [-H HOST]\n"
            "       [--publish -t SECONDS -w WINDOW -z SIZE]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option longs[] = {{"publish", no_argument, NULL, 'P'}, {NULL, 0, NULL, 0}};
    struct lws_context_creation_info info;
    struct magpie_config cfg;
    struct auth auth;
    char err[CONFIG_ERR_LEN];
    const char *conf = NULL;
    long long uid = 0;
    int c;

    B.host = "127.0.0.1";
    B.n = 1;
    B.window = 64;
    B.size = 64;
    B.seconds = 5;
    while ((c = getopt_long(argc, argv, "c:p:r:n:u:s:H:t:w:z:R:", longs, NULL)) != -1) {
        switch (c) {
        case 'c':
            conf = optarg;
            break;
        case 'p':
            B.port = atoi(optarg);
            break;
        case 'r':
            B.room = optarg;
            break;
        case 'n':
            B.n = atoi(optarg);
            break;
        case 'u':
            uid = atoll(optarg);
            break;
        case 's':
            B.src = optarg;
            break;
        case 'H':
            B.host = optarg;
            break;
        case 't':
            B.seconds = atof(optarg);
            break;
        case 'w':
            B.window = atoi(optarg);
            break;
        case 'z':
            B.size = atoi(optarg);
            break;
        case 'R':
            B.rate = atof(optarg);
            break;
        case 'P':
            B.publish = 1;
            break;
        default:
            usage();
        }
    }
    if (conf == NULL || B.port <= 0 || B.room == NULL || uid <= 0 || B.n <= 0 || B.size < 8)
        usage();
    if (B.publish)
        B.n = 1;
    if (config_load(&cfg, conf, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    if (auth_init(&auth, cfg.auth.secret) != MP_OK) {
        fprintf(stderr, "auth.secret is not usable\n");
        return 2;
    }
    if ((B.m = calloc((size_t)B.n, sizeof(*B.m))) == NULL)
        return 1;
    for (int i = 0; i < B.n; i++)
        if ((B.m[i].token = auth_issue(&auth, AUTH_KIND_LOGIN, uid + i, TOKEN_TTL_S, NULL, NULL)) == NULL)
            return 1;
    auth_clear(&auth);
    config_free(&cfg);
    signal(SIGUSR1, on_signal);
    signal(SIGUSR2, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);

    lws_set_log_level(LLL_ERR, NULL);
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.gid = -1;
    info.uid = -1;
    B.ctx = lws_create_context(&info);
    if (B.ctx == NULL)
        return 1;

    int next = 0;
    while (!B.stop) {
        /* open connections, CONNECTING handshakes at a time */
        while (next < B.n && B.started - B.signed_in - B.failed < CONNECTING)
            connect_one(&B.m[next++]);
        if (!B.ready_printed && next == B.n && B.signed_in + B.failed >= B.n) {
            printf("ready %d %d\n", B.signed_in, B.failed);
            fflush(stdout);
            B.ready_printed = 1;
            if (B.publish) {
                B.measuring = 1;
                B.pub_start_ns = mono_ns();
                B.pub_until_ns = B.pub_start_ns + (int64_t)(B.seconds * 1e9);
                if (B.m[0].wsi != NULL)
                    lws_callback_on_writable(B.m[0].wsi);
            }
        }
        if (B.go) {
            B.go = 0;
            B.measuring = 1;
            B.frames = B.messages = B.bytes = B.errors = B.closes = 0;
            memset(B.lat, 0, sizeof(B.lat));
        }
        if (B.report) {
            B.report = 0;
            B.measuring = 0;
            report();
        }
        if (B.publish && B.measuring && mono_ns() >= B.pub_until_ns + 2000000000LL) {
            report(); /* two seconds for the last messages to come back */
            break;
        }
        if (B.publish && B.measuring && B.m[0].wsi != NULL)
            lws_callback_on_writable(B.m[0].wsi); /* the next message may be due, or the window stalled */
        if (lws_service(B.ctx, B.publish ? 1 : 20) < 0)
            break;
    }
    lws_context_destroy(B.ctx);
    for (int i = 0; i < B.n; i++) {
        free(B.m[i].token);
        free(B.m[i].rx);
    }
    free(B.m);
    return 0;
}
