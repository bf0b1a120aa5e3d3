/* server.c -- see server.h. */
#include "server.h"
#include "chat.h"
#include "config.h"
#include "conn.h"
#include "log.h"
#include "magpie.h"
#include "push.h"
#include "room.h"
#include "stomp.h"
#include "mqtt.h"

#include <malloc.h>
#include <string.h>
#include <sys/resource.h>

/* What this node serves: path (proto->path) and offered subprotocol -> protocol (see proto.h). SPEC §4.3:
 * on /ws none or magpie.v1 is the JSON chat protocol, v12.stomp (v11.stomp, v10.stomp: what STOMP clients
 * offer) STOMP 1.2, mqtt MQTT 3.1.1; /room takes none. */
const struct proto_route push_routes[] = {
    {&chat_proto, NULL},         {&chat_proto, "magpie.v1"},
    {&stomp_proto, "v12.stomp"}, {&stomp_proto, "v11.stomp"},
    {&stomp_proto, "v10.stomp"}, {&mqtt_proto, "mqtt"},
    {&room_proto, NULL},         {NULL, NULL},
};

#define SERVER_ROUTES (sizeof(push_routes) / sizeof(push_routes[0]))

/* Bytes libwebsockets allocates per connection to receive into. Most packets fit; a larger message
 * arrives in pieces that conn.c joins (up to push.max_frame). Smaller means less memory per idle
 * connection, which is what a node holding 20,000 of them is made of. */
#define SERVER_RX_BUFFER 1024

/* Header tables (one per connection still in its HTTP handshake) libwebsockets may have at once;
 * more handshakes wait for one. */
#define SERVER_HEADER_POOL 1024

/* File descriptors the node keeps for itself besides its clients and push.db_threads MySQL connections:
 * stdio, the log, the listeners, two Redis connections, libuv's and libwebsockets' own (epoll, signal
 * pipe, async handles), with room to spare. */
#define SERVER_FD_RESERVE 64

/* The lws protocol list: one entry per subprotocol name of push_routes, so that libwebsockets selects
 * (and names in its 101 answer) exactly the one handshake.c chose; all share one callback, and conn.c
 * picks the Magpie protocol at the upgrade. The first is the vhost's default, which a client that offers
 * no subprotocol gets (libwebsockets then names none). */
static struct lws_protocols protocols[SERVER_ROUTES + 1];

static void protocols_fill(void)
{
    size_t n = 0;
    for (const struct proto_route *r = push_routes; r->proto != NULL; r++) {
        size_t i;
        if (r->subprotocol == NULL)
            continue;
        for (i = 0; i < n && strcmp(protocols[i].name, r->subprotocol) != 0; i++)
            ;
        if (i < n)
            continue;
        protocols[n].name = r->subprotocol;
        protocols[n].callback = conn_lws_callback;
        protocols[n].rx_buffer_size = SERVER_RX_BUFFER;
        n++;
    }
    if (n == 0) { /* no names at all: one nameless default, which no offered name can match */
        protocols[0].name = "";
        protocols[0].callback = conn_lws_callback;
        protocols[0].rx_buffer_size = SERVER_RX_BUFFER;
    }
}

/* Header tables are push.max_header_bytes each (36 KiB by default, to hold what nginx passes on), and a
 * connect storm holds up to SERVER_HEADER_POOL of them at once. From the heap, glibc keeps what they
 * freed: after 10,000 connections opened 512 at a time, 180 bytes more per idle connection than with
 * 4 KiB tables (bench idle, 2026-11-25: 3,160 vs 2,980 bytes per connection). Allocations of that size are
 * mmapped instead, so a table costs only the pages a request touches and goes back to the system when
 * freed (2,780-2,870 bytes per connection in the same run). Larger allocations on the node's paths are
 * rare (a message over 36 KiB being joined, a long history reply). */
static void server_header_tables_mmapped(void)
{
    if (mallopt(M_MMAP_THRESHOLD, (int)push.cfg->push.max_header_bytes) != 1) /* a sanitizer's allocator */
        log_info("header tables come from the heap (mallopt M_MMAP_THRESHOLD refused)");
}

/* push.max_conns, or what the open-file limit leaves after the node's own descriptors. */
static size_t max_conns(void)
{
    struct rlimit rl;
    long long reserve = SERVER_FD_RESERVE + push.cfg->push.db_threads;

    if (push.cfg->push.max_conns > 0)
        return (size_t)push.cfg->push.max_conns;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        (long long)rl.rlim_cur <= reserve)
        return (size_t)1 << 20;
    return (size_t)((long long)rl.rlim_cur - reserve);
}

static lws_retry_bo_t retry;
static int destroying; /* lws_context_destroy() was called (by us, or by lws on a failed start) */

static void lws_log(int level, const char *line)
{
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    if (level & LLL_ERR)
        log_error("libwebsockets: %.*s", (int)n, line);
    else if (level & LLL_WARN)
        log_warn("libwebsockets: %.*s", (int)n, line);
    else
        log_debug("libwebsockets: %.*s", (int)n, line);
}

int server_start(void)
{
    struct lws_context_creation_info info;
    void *loops[1] = {push.loop};
    char host[256];
    int port;

    if (config_split_addr(push.cfg->push.listen, host, sizeof(host), &port) != 0) {
        log_error("bad push.listen addr=%s", push.cfg->push.listen);
        return MP_ERR;
    }
    lws_set_log_level(LLL_ERR | LLL_WARN | (log_enabled(LOG_LEVEL_DEBUG) ? LLL_NOTICE : 0), lws_log);

    /* No validity timers from libwebsockets (0 = none): conn.c pings and closes silent connections itself,
     * because 4.1.6 re-sorts a connection's validity timer on every frame it receives (see on_idle_sweep). */
    retry.secs_since_valid_ping = 0;
    retry.secs_since_valid_hangup = 0;

    memset(&info, 0, sizeof(info));
    info.options = LWS_SERVER_OPTION_LIBUV;
    info.foreign_loops = loops;
    info.pcontext = &push.lws;
    info.port = port;
    info.iface = host[0] ? host : NULL;
    info.protocols = protocols;
    info.vhost_name = "magpie";
    info.server_string = "magpie-push";
    info.gid = -1;
    info.uid = -1;
    info.count_threads = 1;
    info.timeout_secs = (unsigned)push.cfg->push.handshake_timeout_s;
    info.timeout_secs_ah_idle = (unsigned)push.cfg->push.handshake_timeout_s;
    info.retry_and_idle_policy = &retry;
    info.max_http_header_pool = SERVER_HEADER_POOL;
    /* Held only while a handshake is in progress (libwebsockets frees a header table when no handshake
     * waits for one), so an established connection costs nothing for it. */
    info.max_http_header_data2 = (unsigned)push.cfg->push.max_header_bytes;
    server_header_tables_mmapped();
    protocols_fill();
    push.max_conns = max_conns();

    push.lws = lws_create_context(&info);
    /* With a foreign libuv loop, a context whose listener failed (address in use) comes back non-NULL,
     * already being destroyed on the loop: only the missing vhost tells. */
    if (push.lws == NULL || lws_get_vhost_by_name(push.lws, "magpie") == NULL) {
        destroying = 1;
        log_error("cannot listen addr=%s (address in use, or the libwebsockets-evlib-uv plugin is missing)",
                  push.cfg->push.listen);
        return MP_ERR;
    }
    return MP_OK;
}

void server_stop(void)
{
    if (push.lws != NULL && !destroying) {
        destroying = 1;
        lws_context_destroy(push.lws);
    }
}

void server_free(void)
{
    if (push.lws != NULL)
        lws_context_destroy(push.lws);
    push.lws = NULL;
}
