/* main.c -- magpie-bench: the parent process. Parses the options, prepares the target, forks the workers,
 * drives them through the phases of a scenario, merges their reports and prints the result (a summary on
 * standard error, JSON on standard output or in --json FILE). How to run it: bench/README.md.
 */
#include "bench.h"
#include "config.h"
#include "keys.h"
#include "magpie.h"
#include "memstat.h"
#include "rds.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROCS        256
#define FRIENDS_PIPELINE 512 /* Redis commands in flight while setting up friendships */

struct worker_proc {
    pid_t pid;
    int ctl; /* parent writes commands */
    int rep; /* parent reads reports */
    long first, count;
};

struct run {
    struct bench_opts o;
    struct magpie_config cfg;
    int have_cfg;
    const char *conf_path;
    struct worker_proc procs[MAX_PROCS];
    int nprocs;
    long total; /* connections of all workers */
    json_t *out;
};

static const char *usage_text =
    "usage: magpie-bench -s idle|chat|room|group -p PROTO -u URL [options]\n"
    "       magpie-bench token [-c FILE] --uid N [--kind login|websocket] [--ttl S]\n"
    "\n"
    "  -s, --scenario S        idle (hold connections), chat (pairs of users), room (one room, fan-out),\n"
    "                          group (members of existing groups send g: --group-ids)\n"
    "  -p, --proto P           magpie-chat, magpie-room, nats (WebSocket listener), nchan,\n"
    "                          magpie-stomp, magpie-mqtt (SPEC 4.3 on /ws: idle, chat, room),\n"
    "                          mosquitto (plain MQTT over TCP: idle, room)\n"
    "  -u, --url URL           ws://127.0.0.1:PORT/path, tcp://127.0.0.1:PORT for mosquitto (repeat:\n"
    "                          connections take the URLs in turn)\n"
    "      --pub-url URL       nchan: http://127.0.0.1:PORT/pub/ (publishers POST <url><channel>)\n"
    "  -c, --config FILE       magpie.conf (Magpie: the secret to mint tickets, Redis for friendships)\n"
    "  -n, --conns N           idle: connections; chat: users (pairs x 2); room: receiving members [100]\n"
    "      --publishers K      room: publishing connections [ceil(rate-max / pub-rate-max)]\n"
    "      --pub-rate-max R    room, group: at most this many messages/s per sender [40]\n"
    "      --group-ids ID,...  group: the groups (made by bench/run over HTTP: members are users\n"
    "                          uid-base + g * members .. + members - 1 of the g-th id, the first the owner)\n"
    "      --members M         group: members per group [500]; --conns is groups x members\n"
    "      --group-senders K   group: the first K members of each group send [ceil(rate-max / groups /\n"
    "                          pub-rate-max)]\n"
    "  -P, --procs N           worker processes [max(2, what the fd limit needs)]\n"
    "  -r, --rate R            messages/s of all senders together (first step) [100]\n"
    "      --rate-max R        ramp: last step's rate at most R [= rate]\n"
    "      --step-factor F     ramp: each step's rate = previous x F [2; 1 when rate-max = rate]\n"
    "  -d, --step-s S          seconds each step sends [5]\n"
    "      --drain-s S         after a step, late messages still count for this long [1]\n"
    "      --p99-bound-ms MS   ramp stops after the first step whose p99 exceeds this [100]\n"
    "      --size B            message payload bytes [100]\n"
    "      --level L           room: msgLv of published messages (0 normal, 1 important) [0]\n"
    "      --mqtt-qos Q        room over MQTT: QoS of the publishes (and of mosquitto's subscriptions;\n"
    "                          Magpie grants 0) (0 or 1) [0]\n"
    "      --connect-rate R    new connections/s (all workers) [2000; 0 = unpaced]\n"
    "      --connect-inflight N  per worker [256]\n"
    "      --connect-timeout-s S [60]\n"
    "      --settle-s S        pause after connecting, before measuring or sending [1]\n"
    "      --hold-s S          idle: how long the connections are held [5]\n"
    "      --heartbeat-s S     room: HEARTBEAT interval [20]\n"
    "      --sync-rate R       chat: Y requests/s (all users together) while each step runs; each from a "
    "user\n"
    "                          that has seen --sync-limit entries, `after` that many back; answers timed "
    "and\n"
    "                          checked (SPEC 4.1) [0 = none]\n"
    "      --offline-frac F    chat: this fraction of the pairs send each to a user of its own that never "
    "connects\n"
    "                          (stored, and queued for notification when notify.webhook_url is set) [0]\n"
    "      --sync-limit N      chat: entries each Y asks for [100]\n"
    "      --src-ips N         client addresses 127.0.0.2 .. 127.0.0.(N+1) [16; 0 = the kernel's choice]\n"
    "      --uid-base N        connection i is user N + i [900000000]\n"
    "      --room NAME         room/channel/subject prefix (the run's nonce is appended) [bench]\n"
    "      --mem LABEL=PID[,PID|@PIDFILE...]  measure this server group's memory (repeatable)\n"
    "      --json FILE         write the result there instead of standard output\n"
    "      --ack-log PREFIX    chat, group: each worker writes one line per A or E for a bench message,\n"
    "                          \"<CLOCK_MONOTONIC ns> A|E <sender uid> <id>\", to PREFIX.<worker>\n"
    "  -q, --quiet             no summary on standard error\n";

enum {
    OPT_PUB_URL = 256,
    OPT_PUBLISHERS,
    OPT_PUB_RATE_MAX,
    OPT_RATE_MAX,
    OPT_STEP_FACTOR,
    OPT_DRAIN,
    OPT_P99,
    OPT_SIZE,
    OPT_LEVEL,
    OPT_CONNECT_RATE,
    OPT_CONNECT_INFLIGHT,
    OPT_CONNECT_TIMEOUT,
    OPT_SETTLE,
    OPT_HOLD,
    OPT_HEARTBEAT,
    OPT_SRC_IPS,
    OPT_UID_BASE,
    OPT_ROOM,
    OPT_MEM,
    OPT_JSON,
    OPT_UID,
    OPT_KIND,
    OPT_TTL,
    OPT_SYNC_RATE,
    OPT_OFFLINE_FRAC,
    OPT_SYNC_LIMIT,
    OPT_GROUP_IDS,
    OPT_MEMBERS,
    OPT_GROUP_SENDERS,
    OPT_MQTT_QOS,
    OPT_ACK_LOG,
};

static const struct option long_opts[] = {
    {"scenario", required_argument, NULL, 's'},
    {"proto", required_argument, NULL, 'p'},
    {"url", required_argument, NULL, 'u'},
    {"pub-url", required_argument, NULL, OPT_PUB_URL},
    {"config", required_argument, NULL, 'c'},
    {"conns", required_argument, NULL, 'n'},
    {"publishers", required_argument, NULL, OPT_PUBLISHERS},
    {"pub-rate-max", required_argument, NULL, OPT_PUB_RATE_MAX},
    {"procs", required_argument, NULL, 'P'},
    {"rate", required_argument, NULL, 'r'},
    {"rate-max", required_argument, NULL, OPT_RATE_MAX},
    {"step-factor", required_argument, NULL, OPT_STEP_FACTOR},
    {"step-s", required_argument, NULL, 'd'},
    {"drain-s", required_argument, NULL, OPT_DRAIN},
    {"p99-bound-ms", required_argument, NULL, OPT_P99},
    {"size", required_argument, NULL, OPT_SIZE},
    {"level", required_argument, NULL, OPT_LEVEL},
    {"connect-rate", required_argument, NULL, OPT_CONNECT_RATE},
    {"connect-inflight", required_argument, NULL, OPT_CONNECT_INFLIGHT},
    {"connect-timeout-s", required_argument, NULL, OPT_CONNECT_TIMEOUT},
    {"settle-s", required_argument, NULL, OPT_SETTLE},
    {"hold-s", required_argument, NULL, OPT_HOLD},
    {"heartbeat-s", required_argument, NULL, OPT_HEARTBEAT},
    {"src-ips", required_argument, NULL, OPT_SRC_IPS},
    {"uid-base", required_argument, NULL, OPT_UID_BASE},
    {"room", required_argument, NULL, OPT_ROOM},
    {"mem", required_argument, NULL, OPT_MEM},
    {"json", required_argument, NULL, OPT_JSON},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {"uid", required_argument, NULL, OPT_UID},
    {"kind", required_argument, NULL, OPT_KIND},
    {"ttl", required_argument, NULL, OPT_TTL},
    {"sync-rate", required_argument, NULL, OPT_SYNC_RATE},
    {"offline-frac", required_argument, NULL, OPT_OFFLINE_FRAC},
    {"sync-limit", required_argument, NULL, OPT_SYNC_LIMIT},
    {"group-ids", required_argument, NULL, OPT_GROUP_IDS},
    {"members", required_argument, NULL, OPT_MEMBERS},
    {"group-senders", required_argument, NULL, OPT_GROUP_SENDERS},
    {"mqtt-qos", required_argument, NULL, OPT_MQTT_QOS},
    {"ack-log", required_argument, NULL, OPT_ACK_LOG},
    {NULL, 0, NULL, 0},
};

static int say_quiet;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    if (say_quiet)
        return;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

static int die_usage(const char *what, const char *arg)
{
    fprintf(stderr, "magpie-bench: %s%s%s\n\n%s", what, arg ? ": " : "", arg ? arg : "", usage_text);
    return 2;
}

/* Parse a number option within [lo, hi]. Returns 0 or -1. */
static int num(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

/* "ws://A.B.C.D:PORT/path", "http://..." or "tcp://A.B.C.D:PORT". Numeric IPv4 only: the benchmark runs on
 * loopback. */
static int parse_url(const char *url, struct endpoint *ep)
{
    const char *p;
    int default_port;
    memset(ep, 0, sizeof(*ep));
    if (strncmp(url, "ws://", 5) == 0) {
        p = url + 5;
        default_port = 80;
    } else if (strncmp(url, "http://", 7) == 0) {
        p = url + 7;
        default_port = 80;
    } else if (strncmp(url, "tcp://", 6) == 0) {
        p = url + 6;
        default_port = 1883; /* MQTT's */
    } else {
        return -1;
    }
    const char *slash = strchr(p, '/');
    size_t hl = slash ? (size_t)(slash - p) : strlen(p);
    char host[64];
    if (hl == 0 || hl >= sizeof(host))
        return -1;
    memcpy(host, p, hl);
    host[hl] = '\0';
    int port = default_port;
    char *colon = strchr(host, ':');
    if (colon != NULL) {
        char *end;
        long v = strtol(colon + 1, &end, 10);
        if (*end != '\0' || v <= 0 || v > 65535)
            return -1;
        port = (int)v;
        *colon = '\0';
    }
    ep->addr.sin_family = AF_INET;
    ep->addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &ep->addr.sin_addr) != 1)
        return -1;
    snprintf(ep->hostport, sizeof(ep->hostport), "%s:%d", host, port);
    snprintf(ep->path, sizeof(ep->path), "%s", slash ? slash : "/");
    ep->tcp = strncmp(url, "tcp://", 6) == 0;
    return 0;
}

static int load_config(struct run *R)
{
    char err[CONFIG_ERR_LEN];
    const char *env = getenv("MAGPIE_CONF");
    const char *path = R->conf_path ? R->conf_path : env && *env ? env : SYSCONFDIR "/magpie/magpie.conf";
    if (config_load(&R->cfg, path, err, sizeof(err)) != 0) {
        fprintf(stderr, "magpie-bench: %s\n", err);
        return -1;
    }
    R->have_cfg = 1;
    if (auth_init(&R->o.auth, R->cfg.auth.secret) != MP_OK) {
        fprintf(stderr, "magpie-bench: %s: auth.secret is missing or shorter than %d bytes\n", path,
                AUTH_MIN_SECRET);
        return -1;
    }
    R->o.ticket_ttl_s = R->cfg.auth.ws_ticket_ttl_s;
    return 0;
}

/* magpie-bench token: print a token for one user (the http scenario gives it to wrk). */
static int cmd_token(int argc, char **argv)
{
    struct run *R = calloc(1, sizeof(*R));
    long long uid = 0, ttl = 3600;
    enum auth_kind kind = AUTH_KIND_LOGIN;
    int c, rc = 1;
    double v;
    if (R == NULL)
        return 1;
    optind = 2;
    while ((c = getopt_long(argc, argv, "c:h", long_opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            R->conf_path = optarg;
            break;
        case OPT_UID:
            if (num(optarg, 1, 9e15, &v) != 0)
                goto usage;
            uid = (long long)v;
            break;
        case OPT_TTL:
            if (num(optarg, 1, 31536000, &v) != 0)
                goto usage;
            ttl = (long long)v;
            break;
        case OPT_KIND:
            if (strcmp(optarg, "login") == 0)
                kind = AUTH_KIND_LOGIN;
            else if (strcmp(optarg, "websocket") == 0)
                kind = AUTH_KIND_WEBSOCKET;
            else
                goto usage;
            break;
        default:
            goto usage;
        }
    }
    if (uid <= 0)
        goto usage;
    if (load_config(R) == 0) {
        char *tok = auth_issue(&R->o.auth, kind, uid, ttl, NULL, NULL);
        if (tok != NULL) {
            printf("%s\n", tok);
            free(tok);
            rc = 0;
        }
    }
    goto out;
usage:
    rc = die_usage("token: bad or missing option", NULL);
out:
    auth_clear(&R->o.auth);
    if (R->have_cfg)
        config_free(&R->cfg);
    free(R);
    return rc;
}

static int parse_args(struct run *R, int argc, char **argv)
{
    struct bench_opts *o = &R->o;
    int c, have_scenario = 0, have_proto = 0, have_pubs = 0, have_factor = 0, have_conns = 0;
    double v, pub_rate_max = 40;
    const char *why;

    o->conns = 100;
    o->rate = 100;
    o->rate_max = -1;
    o->step_factor = 2;
    o->step_s = 5;
    o->drain_s = 1;
    o->p99_bound_ms = 100;
    o->settle_s = 1;
    o->hold_s = 5;
    o->size = 100;
    o->connect_rate = 2000;
    o->connect_inflight = 256;
    o->connect_timeout_s = 60;
    o->heartbeat_s = 20;
    o->sync_limit = 100;
    o->src_ips = 16;
    o->uid_base = 900000000;
    o->members = 500;
    snprintf(o->room, sizeof(o->room), "bench");

    while ((c = getopt_long(argc, argv, "s:p:u:c:n:P:r:d:qh", long_opts, NULL)) != -1) {
        switch (c) {
        case 's':
            have_scenario = 1;
            if (strcmp(optarg, "idle") == 0)
                o->scenario = SC_IDLE;
            else if (strcmp(optarg, "chat") == 0)
                o->scenario = SC_CHAT;
            else if (strcmp(optarg, "room") == 0)
                o->scenario = SC_ROOM;
            else if (strcmp(optarg, "group") == 0)
                o->scenario = SC_GROUP;
            else
                return die_usage("unknown scenario", optarg);
            break;
        case 'p':
            have_proto = 1;
            if (strcmp(optarg, "magpie-chat") == 0)
                o->proto = PROTO_MAGPIE_CHAT;
            else if (strcmp(optarg, "magpie-room") == 0)
                o->proto = PROTO_MAGPIE_ROOM;
            else if (strcmp(optarg, "nats") == 0)
                o->proto = PROTO_NATS;
            else if (strcmp(optarg, "nchan") == 0)
                o->proto = PROTO_NCHAN;
            else if (strcmp(optarg, "magpie-stomp") == 0)
                o->proto = PROTO_MAGPIE_STOMP;
            else if (strcmp(optarg, "magpie-mqtt") == 0)
                o->proto = PROTO_MAGPIE_MQTT;
            else if (strcmp(optarg, "mosquitto") == 0)
                o->proto = PROTO_MOSQUITTO;
            else
                return die_usage("unknown protocol", optarg);
            break;
        case 'u':
            if (o->nurls == BENCH_MAX_URLS)
                return die_usage("too many --url", NULL);
            if (parse_url(optarg, &o->urls[o->nurls]) != 0)
                return die_usage("bad URL (ws://A.B.C.D:PORT/path)", optarg);
            o->nurls++;
            break;
        case OPT_PUB_URL:
            if (parse_url(optarg, &o->pub_url) != 0)
                return die_usage("bad --pub-url (http://A.B.C.D:PORT/path)", optarg);
            break;
        case 'c':
            R->conf_path = optarg;
            break;
        case 'n':
            if (num(optarg, 1, 10000000, &v) != 0)
                return die_usage("bad --conns", optarg);
            o->conns = (long)v;
            have_conns = 1;
            break;
        case OPT_PUBLISHERS:
            if (num(optarg, 1, 100000, &v) != 0)
                return die_usage("bad --publishers", optarg);
            o->publishers = (int)v;
            have_pubs = 1;
            break;
        case OPT_PUB_RATE_MAX:
            if (num(optarg, 0.001, 1e9, &pub_rate_max) != 0)
                return die_usage("bad --pub-rate-max", optarg);
            break;
        case 'P':
            if (num(optarg, 1, MAX_PROCS, &v) != 0)
                return die_usage("bad --procs", optarg);
            o->procs = (int)v;
            break;
        case 'r':
            if (num(optarg, 0.001, 1e9, &o->rate) != 0)
                return die_usage("bad --rate", optarg);
            break;
        case OPT_RATE_MAX:
            if (num(optarg, 0.001, 1e9, &o->rate_max) != 0)
                return die_usage("bad --rate-max", optarg);
            break;
        case OPT_STEP_FACTOR:
            if (num(optarg, 1, 100, &o->step_factor) != 0)
                return die_usage("bad --step-factor", optarg);
            have_factor = 1;
            break;
        case 'd':
            if (num(optarg, 0.1, 86400, &o->step_s) != 0)
                return die_usage("bad --step-s", optarg);
            break;
        case OPT_DRAIN:
            if (num(optarg, 0, 600, &o->drain_s) != 0)
                return die_usage("bad --drain-s", optarg);
            break;
        case OPT_P99:
            if (num(optarg, 0.001, 1e7, &o->p99_bound_ms) != 0)
                return die_usage("bad --p99-bound-ms", optarg);
            break;
        case OPT_SIZE:
            if (num(optarg, PAYLOAD_MIN, PAYLOAD_MAX, &v) != 0)
                return die_usage("bad --size (64..65536)", optarg);
            o->size = (size_t)v;
            break;
        case OPT_LEVEL:
            if (num(optarg, 0, 1, &v) != 0)
                return die_usage("bad --level", optarg);
            o->level = (int)v;
            break;
        case OPT_MQTT_QOS:
            if (num(optarg, 0, 1, &v) != 0 || v != floor(v))
                return die_usage("bad --mqtt-qos (0 or 1)", optarg);
            o->mqtt_qos = (int)v;
            break;
        case OPT_CONNECT_RATE:
            if (num(optarg, 0, 1e9, &o->connect_rate) != 0)
                return die_usage("bad --connect-rate", optarg);
            break;
        case OPT_CONNECT_INFLIGHT:
            if (num(optarg, 1, 1000000, &v) != 0)
                return die_usage("bad --connect-inflight", optarg);
            o->connect_inflight = (int)v;
            break;
        case OPT_CONNECT_TIMEOUT:
            if (num(optarg, 0.1, 86400, &o->connect_timeout_s) != 0)
                return die_usage("bad --connect-timeout-s", optarg);
            break;
        case OPT_SETTLE:
            if (num(optarg, 0, 3600, &o->settle_s) != 0)
                return die_usage("bad --settle-s", optarg);
            break;
        case OPT_HOLD:
            if (num(optarg, 0, 86400, &o->hold_s) != 0)
                return die_usage("bad --hold-s", optarg);
            break;
        case OPT_HEARTBEAT:
            if (num(optarg, 0.1, 3600, &o->heartbeat_s) != 0)
                return die_usage("bad --heartbeat-s", optarg);
            break;
        case OPT_OFFLINE_FRAC:
            if (num(optarg, 0, 1, &o->offline_frac) != 0)
                return die_usage("bad --offline-frac (0 to 1)", optarg);
            break;
        case OPT_SYNC_RATE:
            if (num(optarg, 0, 1e6, &o->sync_rate) != 0)
                return die_usage("bad --sync-rate", optarg);
            break;
        case OPT_SYNC_LIMIT:
            if (num(optarg, 1, 500, &v) != 0) /* SPEC §4.1: Y's limit is at most 500 */
                return die_usage("bad --sync-limit (1..500)", optarg);
            o->sync_limit = (int)v;
            break;
        case OPT_GROUP_IDS: {
            char *end;
            const char *q = optarg;
            o->ngroups = 0;
            while (*q) {
                errno = 0;
                long long id = strtoll(q, &end, 10);
                if (errno != 0 || end == q || id <= 0 || (*end != ',' && *end != '\0') ||
                    o->ngroups == BENCH_MAX_GROUPS)
                    return die_usage("bad --group-ids (comma-separated group ids)", optarg);
                o->group_ids[o->ngroups++] = id;
                q = *end == ',' ? end + 1 : end;
            }
            break;
        }
        case OPT_MEMBERS:
            if (num(optarg, 2, 100000, &v) != 0)
                return die_usage("bad --members (2..100000)", optarg);
            o->members = (int)v;
            break;
        case OPT_GROUP_SENDERS:
            if (num(optarg, 1, 100000, &v) != 0)
                return die_usage("bad --group-senders", optarg);
            o->group_senders = (int)v;
            break;
        case OPT_SRC_IPS:
            if (num(optarg, 0, 250, &v) != 0)
                return die_usage("bad --src-ips (0..250)", optarg);
            o->src_ips = (int)v;
            break;
        case OPT_UID_BASE:
            if (num(optarg, 1, 9e15, &v) != 0)
                return die_usage("bad --uid-base", optarg);
            o->uid_base = (int64_t)v;
            break;
        case OPT_ROOM:
            if (strlen(optarg) == 0 || strlen(optarg) > 64 ||
                strspn(optarg, "abcdefghijklmnopqrstuvwxyz"
                               "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != strlen(optarg))
                return die_usage("bad --room (1-64 letters, digits, _)", optarg);
            snprintf(o->room, sizeof(o->room), "%s", optarg);
            break;
        case OPT_MEM:
            if (o->nmem == BENCH_MAX_MEM)
                return die_usage("too many --mem", NULL);
            if (memstat_parse_group(optarg, &o->mem[o->nmem], &why) != 0)
                return die_usage(why, optarg);
            o->nmem++;
            break;
        case OPT_JSON:
            o->json_path = optarg;
            break;
        case OPT_ACK_LOG:
            o->ack_log = optarg;
            break;
        case 'q':
            o->quiet = 1;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        default:
            return die_usage("unknown option", NULL);
        }
    }
    if (optind < argc)
        return die_usage("unexpected argument", argv[optind]);
    if (!have_scenario || !have_proto || o->nurls == 0)
        return die_usage("--scenario, --proto and --url are required", NULL);
    int magpie_ws =
        o->proto == PROTO_MAGPIE_CHAT || o->proto == PROTO_MAGPIE_STOMP || o->proto == PROTO_MAGPIE_MQTT;
    if (o->scenario == SC_CHAT && !magpie_ws)
        return die_usage("the chat scenario speaks magpie-chat, magpie-stomp or magpie-mqtt", NULL);
    if (o->scenario == SC_GROUP && o->proto != PROTO_MAGPIE_CHAT)
        return die_usage("the group scenario speaks magpie-chat only", NULL);
    if (o->sync_rate > 0 && o->proto != PROTO_MAGPIE_CHAT)
        return die_usage("--sync-rate is for magpie-chat (Y packets)", NULL);
    for (int i = 0; i < o->nurls; i++)
        if ((o->proto == PROTO_MOSQUITTO) != o->urls[i].tcp)
            return die_usage(o->proto == PROTO_MOSQUITTO ? "mosquitto needs tcp:// URLs"
                                                         : "tcp:// URLs are for mosquitto",
                             NULL);
    if (o->scenario == SC_GROUP) {
        if (o->ngroups == 0)
            return die_usage("the group scenario needs --group-ids (bench/run makes the groups)", NULL);
        if (have_conns && o->conns != (long)o->ngroups * o->members)
            return die_usage("group: --conns must be groups x --members (or left out)", NULL);
        o->conns = (long)o->ngroups * o->members;
        if (o->size > 1023)
            return die_usage("group texts are at most 1023 characters (SPEC §4.2): --size", NULL);
    }
    if (o->scenario == SC_ROOM && o->proto == PROTO_MAGPIE_CHAT)
        return die_usage(
            "the room scenario speaks magpie-room, magpie-stomp, magpie-mqtt, nats, nchan or mosquitto",
            NULL);
    if (o->scenario == SC_ROOM && o->proto == PROTO_NCHAN && o->pub_url.hostport[0] == '\0')
        return die_usage("nchan rooms need --pub-url", NULL);
    if (o->scenario == SC_CHAT && o->conns % 2 != 0)
        return die_usage("chat needs an even --conns (pairs of users)", NULL);
    if (o->offline_frac > 0 && o->scenario != SC_CHAT)
        return die_usage("--offline-frac is for the chat scenario", NULL);
    if (o->sync_rate > 0 && o->scenario != SC_CHAT)
        return die_usage("--sync-rate is for the chat scenario", NULL);
    if (o->scenario == SC_CHAT && o->size > 1023)
        return die_usage("chat texts are at most 1023 characters (SPEC §4): --size", NULL);
    if (o->rate_max < 0)
        o->rate_max = o->rate;
    if (o->rate_max < o->rate)
        return die_usage("--rate-max is below --rate", NULL);
    if (!have_factor && o->rate_max == o->rate)
        o->step_factor = 1;
    if (o->scenario == SC_ROOM && !have_pubs)
        o->publishers = (int)ceil(o->rate_max / pub_rate_max);
    if (o->scenario == SC_GROUP) {
        if (o->group_senders == 0)
            o->group_senders = (int)ceil(o->rate_max / o->ngroups / pub_rate_max);
        if (o->group_senders > o->members)
            return die_usage("group: more --group-senders than --members", NULL);
    }
    if (o->scenario != SC_ROOM)
        o->publishers = 0;
    say_quiet = o->quiet;
    return -1;
}

/* ---- Magpie chat: friendships ------------------------------------------------------------------------ */

/* Make pairs (2k, 2k+1) friends in Redis (SPEC §4: t only between friends), or remove them again. The
 * friend sets are the keys magpie-push checks (keys.h KEY_FRIENDS). Returns 0 or -1. */
static int chat_friends(struct run *R, int add)
{
    struct rds r;
    int rc = 0;
    long pending = 0;
    keys_set_shards((int)R->cfg.redis.stream_shards); /* the friend sets' shard tags (keys.h) */
    rds_init(&r, &R->cfg);
    redisReply *ping = rds_cmd(&r, "PING");
    if (ping == NULL) {
        fprintf(stderr, "magpie-bench: Redis %s:%lld is not reachable (needed to make the pairs friends)\n",
                R->cfg.redis.host, R->cfg.redis.port);
        rds_close(&r);
        return -1;
    }
    freeReplyObject(ping);
    for (long i = 0; i < R->o.conns && rc == 0; i++) {
        long long me = (long long)(R->o.uid_base + i), other = (long long)(R->o.uid_base + (i ^ 1));
        char key[64];
        key_tagged(key, sizeof(key), KEY_FRIENDS, me);
        if (add)
            rds_append(&r, "SADD %s %lld", key, other);
        else
            rds_append(&r, "DEL %s", key);
        pending++;
        if (bench_offline(&R->o, (uint32_t)i)) {
            /* Its offline recipient (bench.h bench_recipient), a friend both ways. */
            long long ghost = (long long)bench_recipient(&R->o, (uint32_t)i);
            char gkey[64];
            key_tagged(gkey, sizeof(gkey), KEY_FRIENDS, ghost);
            if (add) {
                rds_append(&r, "SADD %s %lld", key, ghost);
                rds_append(&r, "SADD %s %lld", gkey, me);
                pending += 2;
            } else {
                rds_append(&r, "DEL %s", gkey);
                pending++;
            }
        }
        while (pending > 0 && (pending >= FRIENDS_PIPELINE || i == R->o.conns - 1)) {
            redisReply *reply = rds_reply(&r);
            if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
                fprintf(stderr, "magpie-bench: Redis: %s\n", reply ? reply->str : "connection lost");
                rc = -1;
            }
            if (reply)
                freeReplyObject(reply);
            pending--;
            if (rc != 0)
                break;
        }
    }
    rds_close(&r);
    return rc;
}

/* magpie-push limits each connection to push.rate packets/s (SPEC §8): a schedule over it measures the
 * limiter, not the server. Say so before starting rather than report refused messages afterwards. */
static void warn_rate_limit(const struct run *R)
{
    const struct bench_opts *o = &R->o;
    long senders = o->scenario == SC_CHAT    ? o->conns
                   : o->scenario == SC_ROOM  ? o->publishers
                   : o->scenario == SC_GROUP ? (long)o->ngroups * o->group_senders
                                             : 0;
    if (senders == 0)
        return;
    /* Y requests (chat --sync-rate) count against the same limit. */
    double per = (o->rate_max + (o->scenario == SC_CHAT ? o->sync_rate : 0)) / (double)senders;
    if (per > (double)R->cfg.push.rate)
        fprintf(
            stderr,
            "magpie-bench: warning: each sender would send up to %.1f messages/s, over push.rate (%lld/s) "
            "in %s: the excess will be refused; use more %s\n",
            per, R->cfg.push.rate, R->conf_path ? R->conf_path : "the config",
            o->scenario == SC_CHAT    ? "users (--conns)"
            : o->scenario == SC_GROUP ? "senders (--group-senders)"
                                      : "publishers (--publishers)");
}

/* ---- workers ----------------------------------------------------------------------------------------- */

static void kill_workers(struct run *R)
{
    for (int i = 0; i < R->nprocs; i++)
        if (R->procs[i].pid > 0)
            kill(R->procs[i].pid, SIGTERM);
}

static int start_workers(struct run *R)
{
    struct rlimit rl;
    long per = 20000;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        per = (long)rl.rlim_cur;
    per -= BENCH_FD_RESERVE;
    if (per < 1) {
        fprintf(stderr, "magpie-bench: the open-file limit is too low\n");
        return -1;
    }
    R->total = R->o.conns + R->o.publishers;
    int need = (int)((R->total + per - 1) / per);
    int n = R->o.procs > 0 ? R->o.procs : need > 2 ? need : 2;
    if (n < need) {
        fprintf(stderr, "magpie-bench: %ld connections need at least %d workers (%ld files each)\n", R->total,
                need, per);
        return -1;
    }
    if (n > MAX_PROCS)
        n = MAX_PROCS;
    /* Chat pairs never straddle two workers (a pair's messages are counted in one place). */
    long unit = R->o.scenario == SC_CHAT ? 2 : 1, units = R->total / unit;
    if (n > units)
        n = (int)units;
    R->o.procs = n;
    long first = 0;
    for (int i = 0; i < n; i++) {
        long count = unit * (units / n + (i < units % n ? 1 : 0));
        int ctl[2], rep[2];
        if (pipe2(ctl, O_CLOEXEC) != 0 || pipe2(rep, O_CLOEXEC) != 0) {
            perror("magpie-bench: pipe");
            return -1;
        }
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
            perror("magpie-bench: fork");
            return -1;
        }
        if (pid == 0) {
            close(ctl[1]);
            close(rep[0]);
            for (int j = 0; j < i; j++) {
                close(R->procs[j].ctl);
                close(R->procs[j].rep);
            }
            if (R->out)
                json_decref(R->out);
            worker_main(&R->o, i, first, count, ctl[0], rep[1]);
        }
        close(ctl[0]);
        close(rep[1]);
        R->procs[i] =
            (struct worker_proc){.pid = pid, .ctl = ctl[1], .rep = rep[0], .first = first, .count = count};
        R->nprocs++;
        first += count;
    }
    return 0;
}

static void report_merge(struct bench_report *dst, const struct bench_report *src)
{
    dst->ready += src->ready;
    for (int i = 0; i < FR_COUNT; i++)
        dst->failed[i] += src->failed[i];
    dst->dropped += src->dropped;
    if (src->last_status)
        dst->last_status = src->last_status;
    if (src->last_error[0])
        memcpy(dst->last_error, src->last_error, sizeof(dst->last_error));
    if (src->first_start_ns && (dst->first_start_ns == 0 || src->first_start_ns < dst->first_start_ns))
        dst->first_start_ns = src->first_start_ns;
    if (src->last_ready_ns > dst->last_ready_ns)
        dst->last_ready_ns = src->last_ready_ns;
    dst->sent += src->sent;
    dst->send_skipped += src->send_skipped;
    dst->send_errors += src->send_errors;
    dst->acked += src->acked;
    dst->acked_offline += src->acked_offline;
    dst->acked_refused += src->acked_refused;
    dst->ack_dups += src->ack_dups;
    dst->delivered += src->delivered;
    dst->gaps += src->gaps;
    dst->dups += src->dups;
    dst->late += src->late;
    dst->foreign += src->foreign;
    dst->frames += src->frames;
    dst->proto_errors += src->proto_errors;
    dst->cpu_ns += src->cpu_ns;
    dst->syncs_sent += src->syncs_sent;
    dst->syncs_ok += src->syncs_ok;
    dst->syncs_short += src->syncs_short;
    dst->sync_msgs += src->sync_msgs;
    dst->sync_errors += src->sync_errors;
    dst->sync_wrong += src->sync_wrong;
    dst->sync_skipped += src->sync_skipped;
    dst->sync_late += src->sync_late;
    hist_merge(&dst->sync, &src->sync);
    hist_merge(&dst->lat, &src->lat);
    hist_merge(&dst->ack, &src->ack);
    hist_merge(&dst->lag, &src->lag);
}

static int read_full(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Send cmd to every worker and merge their reports into *sum. Returns 0, or -1 when a worker died. */
static int phase(struct run *R, const struct bench_cmd *cmd, struct bench_report *sum)
{
    struct bench_report *one = malloc(sizeof(*one));
    if (one == NULL)
        return -1;
    memset(sum, 0, sizeof(*sum));
    hist_init(&sum->lat);
    hist_init(&sum->ack);
    hist_init(&sum->lag);
    hist_init(&sum->sync);
    for (int i = 0; i < R->nprocs; i++)
        if (write(R->procs[i].ctl, cmd, sizeof(*cmd)) != (ssize_t)sizeof(*cmd)) {
            free(one);
            return -1;
        }
    for (int i = 0; i < R->nprocs; i++) {
        if (read_full(R->procs[i].rep, one, sizeof(*one)) != 0) {
            fprintf(stderr, "magpie-bench: worker %d died\n", i);
            free(one);
            return -1;
        }
        report_merge(sum, one);
    }
    free(one);
    return 0;
}

static void stop_workers(struct run *R)
{
    struct bench_cmd quit = {.op = OP_QUIT};
    for (int i = 0; i < R->nprocs; i++) {
        if (write(R->procs[i].ctl, &quit, sizeof(quit)) != (ssize_t)sizeof(quit))
            kill(R->procs[i].pid, SIGTERM);
        close(R->procs[i].ctl);
    }
    for (int i = 0; i < R->nprocs; i++) {
        int st;
        waitpid(R->procs[i].pid, &st, 0);
        close(R->procs[i].rep);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fprintf(stderr, "magpie-bench: worker %d ended abnormally (status %d)\n", i, st);
    }
}

/* ---- results ----------------------------------------------------------------------------------------- */

static double ms(int64_t ns)
{
    return (double)ns / 1e6;
}

static double round3(double v)
{
    return round(v * 1000.0) / 1000.0;
}

static json_t *hist_json(const struct hist *h)
{
    return json_pack("{s:I,s:f,s:f,s:f,s:f,s:f,s:f,s:f}", "count", (json_int_t)h->count, "p50_ms",
                     round3(ms(hist_percentile(h, 50))), "p90_ms", round3(ms(hist_percentile(h, 90))),
                     "p99_ms", round3(ms(hist_percentile(h, 99))), "p999_ms",
                     round3(ms(hist_percentile(h, 99.9))), "max_ms", round3(ms(h->count ? h->max : 0)),
                     "mean_ms", round3(hist_mean(h) / 1e6), "min_ms", round3(ms(h->count ? h->min : 0)));
}

static const char *fail_names[FR_COUNT] = {"connect", "handshake", "login", "protocol", "closed", "timeout"};

static json_t *connect_json(const struct bench_report *s, long wanted)
{
    json_t *failed = json_object();
    uint64_t nfail = 0;
    for (int i = 0; i < FR_COUNT; i++) {
        json_object_set_new(failed, fail_names[i], json_integer((json_int_t)s->failed[i]));
        nfail += s->failed[i];
    }
    double secs =
        s->last_ready_ns > s->first_start_ns ? (double)(s->last_ready_ns - s->first_start_ns) / 1e9 : 0;
    return json_pack("{s:I,s:I,s:I,s:o,s:f,s:f,s:o,s:i,s:s}", "wanted", (json_int_t)wanted, "ready",
                     (json_int_t)s->ready, "failed_total", (json_int_t)nfail, "failed", failed, "seconds",
                     round3(secs), "rate_per_s", secs > 0 ? round3((double)s->ready / secs) : 0.0, "latency",
                     hist_json(&s->lat), "last_status", s->last_status, "last_error", s->last_error);
}

static json_t *mem_json(const struct memgroup *g, const struct memsample *before,
                        const struct memsample *after, uint64_t conns)
{
    double per_pss = conns ? ((double)after->pss_kb - (double)before->pss_kb) * 1024.0 / (double)conns : 0;
    double per_rss = conns ? ((double)after->rss_kb - (double)before->rss_kb) * 1024.0 / (double)conns : 0;
    return json_pack("{s:s,s:i,s:I,s:I,s:I,s:I,s:f,s:f}", "label", g->label, "procs", after->nprocs,
                     "before_rss_kb", (json_int_t)before->rss_kb, "before_pss_kb", (json_int_t)before->pss_kb,
                     "after_rss_kb", (json_int_t)after->rss_kb, "after_pss_kb", (json_int_t)after->pss_kb,
                     "bytes_per_conn_pss", round(per_pss), "bytes_per_conn_rss", round(per_rss));
}

static void sleep_s(double s)
{
    struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - floor(s)) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static const char *proto_name(enum proto_kind p)
{
    static const char *names[] = {"magpie-chat",  "magpie-room", "nats",     "nchan",
                                  "magpie-stomp", "magpie-mqtt", "mosquitto"};
    return names[p];
}

static const char *scenario_name(enum scenario s)
{
    static const char *names[] = {"idle", "chat", "room", "group"};
    return names[s];
}

static json_t *settings_json(const struct run *R)
{
    const struct bench_opts *o = &R->o;
    json_t *urls = json_array();
    for (int i = 0; i < o->nurls; i++) {
        char u[400];
        snprintf(u, sizeof(u), "%s%s", o->urls[i].hostport, o->urls[i].path);
        json_array_append_new(urls, json_string(u));
    }
    json_t *j = json_pack("{s:o,s:I,s:i,s:i,s:f,s:f,s:f,s:f,s:f,s:f,s:I,s:i,s:f,s:i,s:f,s:i,s:f,s:i}", "urls",
                          urls, "conns", (json_int_t)o->conns, "publishers", o->publishers, "procs", o->procs,
                          "rate", o->rate, "rate_max", o->rate_max, "step_factor", o->step_factor, "step_s",
                          o->step_s, "drain_s", o->drain_s, "p99_bound_ms", o->p99_bound_ms, "size",
                          (json_int_t)o->size, "level", o->level, "connect_rate", o->connect_rate, "src_ips",
                          o->src_ips, "settle_s", o->settle_s, "connect_inflight", o->connect_inflight,
                          "sync_rate", o->sync_rate, "sync_limit", o->sync_limit);
    if (o->scenario == SC_GROUP) {
        json_t *ids = json_array();
        for (int i = 0; i < o->ngroups; i++)
            json_array_append_new(ids, json_integer((json_int_t)o->group_ids[i]));
        json_object_set_new(j, "group_ids", ids);
        json_object_set_new(j, "members", json_integer(o->members));
        json_object_set_new(j, "group_senders", json_integer(o->group_senders));
        json_object_set_new(j, "uid_base", json_integer((json_int_t)o->uid_base));
    }
    json_object_set_new(j, "offline_frac", json_real(o->offline_frac));
    return j;
}

/* One step of the rate ramp as JSON; *ok tells whether nothing was lost or duplicated. */
static json_t *step_json(const struct run *R, const struct bench_report *s, double rate, uint64_t receivers,
                         int *ok)
{
    const struct bench_opts *o = &R->o;
    uint64_t accepted = s->sent > s->send_errors ? s->sent - s->send_errors : 0;
    int acks = o->scenario == SC_CHAT || o->scenario == SC_GROUP; /* senders get A */
    /* group: every acked g reaches every other member (receivers = members - 1) */
    uint64_t expected = o->scenario == SC_CHAT    ? s->acked - s->acked_offline - s->acked_refused
                        : o->scenario == SC_GROUP ? s->acked * receivers
                                                  : accepted * receivers;
    int64_t lost = (int64_t)expected - (int64_t)s->delivered;
    int64_t unanswered =
        acks ? (int64_t)s->sent - (int64_t)s->acked - (int64_t)s->send_errors + (int64_t)s->acked_refused : 0;
    int64_t sync_unanswered =
        (int64_t)s->syncs_sent - (int64_t)s->syncs_ok - (int64_t)s->sync_errors - (int64_t)s->sync_wrong;
    *ok = lost == 0 && s->dups == 0 && s->ack_dups == 0 && unanswered == 0 && s->dropped == 0 &&
          s->proto_errors == 0 && s->sent > 0 && s->send_errors == 0 && s->sync_errors == 0 &&
          s->sync_wrong == 0 && sync_unanswered == 0;
    json_t *j = json_pack(
        "{s:f,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f,s:o,s:o,s:s}", "rate", rate, "sent",
        (json_int_t)s->sent, "send_errors", (json_int_t)s->send_errors, "send_skipped",
        (json_int_t)s->send_skipped, "receivers", (json_int_t)receivers, "expected", (json_int_t)expected,
        "delivered", (json_int_t)s->delivered, "lost", (json_int_t)lost, "duplicated", (json_int_t)s->dups,
        "gaps", (json_int_t)s->gaps, "late", (json_int_t)s->late, "frames", (json_int_t)s->frames,
        "dropped_conns", (json_int_t)s->dropped, "proto_errors", (json_int_t)s->proto_errors,
        "deliveries_per_s", round3((double)s->delivered / o->step_s), "deliveries_per_frame",
        s->frames ? round3((double)s->delivered / (double)s->frames) : 0.0, "latency", hist_json(&s->lat),
        "sender_lag", hist_json(&s->lag), "last_error", s->last_error);
    /* CPU the generator used over the step and its drain, in cores: near the machine's core count, it was
     * the generator that was measured. */
    json_object_set_new(j, "generator_cores",
                        json_real(round3((double)s->cpu_ns / 1e9 / (o->step_s + o->drain_s))));
    if (acks) {
        json_object_set_new(j, "acked", json_integer((json_int_t)s->acked));
        json_object_set_new(j, "acked_offline", json_integer((json_int_t)s->acked_offline));
        json_object_set_new(j, "acked_refused", json_integer((json_int_t)s->acked_refused));
        json_object_set_new(j, "ack_duplicated", json_integer((json_int_t)s->ack_dups));
        json_object_set_new(j, "unanswered", json_integer((json_int_t)unanswered));
        json_object_set_new(j, "acks_per_s", json_real(round3((double)s->acked / o->step_s)));
        json_object_set_new(j, "ack_latency", hist_json(&s->ack));
    }
    if (o->sync_rate > 0)
        json_object_set_new(
            j, "sync",
            json_pack("{s:f,s:i,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:o}", "rate", o->sync_rate, "limit",
                      o->sync_limit, "sent", (json_int_t)s->syncs_sent, "ok", (json_int_t)s->syncs_ok,
                      "short", (json_int_t)s->syncs_short, "errors", (json_int_t)s->sync_errors, "wrong",
                      (json_int_t)s->sync_wrong, "unanswered", (json_int_t)sync_unanswered, "skipped",
                      (json_int_t)s->sync_skipped, "late", (json_int_t)s->sync_late, "messages",
                      (json_int_t)s->sync_msgs, "messages_per_answer",
                      s->syncs_ok ? round3((double)s->sync_msgs / (double)s->syncs_ok) : 0.0, "latency",
                      hist_json(&s->sync)));
    json_object_set_new(j, "ok", json_boolean(*ok));
    return j;
}

static void print_step(const struct run *R, int step, double rate, const struct bench_report *s, json_t *j)
{
    say("step %d: %.0f msg/s offered, sent %llu, delivered %llu (%.0f/s, %.1f per frame), lost %lld, dup "
        "%llu, "
        "p50 %.2f p99 %.2f p99.9 %.2f max %.2f ms, sender lag p99 %.2f ms, generator %.2f cores",
        step, rate, (unsigned long long)s->sent, (unsigned long long)s->delivered,
        json_real_value(json_object_get(j, "deliveries_per_s")),
        json_real_value(json_object_get(j, "deliveries_per_frame")),
        (long long)json_integer_value(json_object_get(j, "lost")), (unsigned long long)s->dups,
        ms(hist_percentile(&s->lat, 50)), ms(hist_percentile(&s->lat, 99)),
        ms(hist_percentile(&s->lat, 99.9)), ms(s->lat.max), ms(hist_percentile(&s->lag, 99)),
        json_real_value(json_object_get(j, "generator_cores")));
    if (R->o.scenario == SC_CHAT || R->o.scenario == SC_GROUP)
        say(", acked %llu, ack p50 %.2f p99 %.2f p99.9 %.2f ms", (unsigned long long)s->acked,
            ms(hist_percentile(&s->ack, 50)), ms(hist_percentile(&s->ack, 99)),
            ms(hist_percentile(&s->ack, 99.9)));
    if (R->o.sync_rate > 0)
        say(", Y sent %llu ok %llu (%.1f messages each, %llu short) errors %llu wrong %llu skipped %llu, Y "
            "p50 "
            "%.2f p99 %.2f p99.9 %.2f ms",
            (unsigned long long)s->syncs_sent, (unsigned long long)s->syncs_ok,
            s->syncs_ok ? (double)s->sync_msgs / (double)s->syncs_ok : 0.0,
            (unsigned long long)s->syncs_short, (unsigned long long)s->sync_errors,
            (unsigned long long)s->sync_wrong, (unsigned long long)s->sync_skipped,
            ms(hist_percentile(&s->sync, 50)), ms(hist_percentile(&s->sync, 99)),
            ms(hist_percentile(&s->sync, 99.9)));
    say("\n");
    if (s->last_error[0])
        say("  last error: %s\n", s->last_error);
}

/* The rate ramp (or a single step): returns 0, or -1 when a worker died. */
static int run_steps(struct run *R, uint64_t receivers)
{
    const struct bench_opts *o = &R->o;
    struct bench_report *s = malloc(sizeof(*s));
    json_t *steps = json_array(), *best = NULL;
    int rc = 0, all_ok = 1;
    const char *stop = "rate-max reached";
    if (s == NULL)
        return -1;
    for (int step = 0;; step++) {
        double rate = o->rate * pow(o->step_factor, step);
        if (step > 0 && (o->step_factor <= 1 || rate > o->rate_max * 1.000001))
            break;
        int64_t t0 = bench_now_ns() + 100000000LL; /* every worker has the command by then */
        struct bench_cmd cmd = {.op = OP_RUN,
                                .step = step,
                                .rate = rate,
                                .t0_ns = t0,
                                .t_end_ns = t0 + (int64_t)(o->step_s * 1e9),
                                .report_ns = t0 + (int64_t)((o->step_s + o->drain_s) * 1e9)};
        if (phase(R, &cmd, s) != 0) {
            rc = -1;
            break;
        }
        int ok;
        json_t *j = step_json(R, s, rate, receivers, &ok);
        /* When the step ran (CLOCK_MONOTONIC, which bench/run's samplers read too) and how busy the machine
         * was: a shared machine's load is part of every figure. */
        double load[3] = {0, 0, 0};
        json_object_set_new(j, "t0_ns", json_integer((json_int_t)cmd.t0_ns));
        json_object_set_new(j, "t_end_ns", json_integer((json_int_t)cmd.t_end_ns));
        json_object_set_new(j, "report_ns", json_integer((json_int_t)cmd.report_ns));
        if (getloadavg(load, 3) == 3)
            json_object_set_new(j, "loadavg",
                                json_pack("[f,f,f]", round3(load[0]), round3(load[1]), round3(load[2])));
        print_step(R, step, rate, s, j);
        all_ok &= ok;
        json_array_append_new(steps, j);
        double p99 = ms(hist_percentile(&s->lat, 99));
        if (ok && p99 <= o->p99_bound_ms)
            best = j;
        if (!ok) {
            stop = "messages lost, duplicated, refused or connections dropped";
            break;
        }
        if (p99 > o->p99_bound_ms) {
            stop = "p99 over the bound";
            break;
        }
        if (ms(hist_percentile(&s->lag, 99)) > o->p99_bound_ms / 2) {
            stop = "the generator could not keep its schedule (sender lag p99 over half the bound)";
            break;
        }
    }
    free(s);
    json_object_set_new(R->out, "steps", steps);
    json_object_set(R->out, "best", best ? best : json_null());
    json_object_set_new(R->out, "stopped", json_string(stop));
    json_object_set_new(R->out, "ok", json_boolean(all_ok && rc == 0));
    return rc;
}

static int run_scenario(struct run *R)
{
    const struct bench_opts *o = &R->o;
    struct bench_report *s = malloc(sizeof(*s));
    struct memsample before[BENCH_MAX_MEM], after[BENCH_MAX_MEM], held[BENCH_MAX_MEM];
    int rc = 0;
    if (s == NULL)
        return -1;

    for (int i = 0; i < o->nmem; i++)
        if (memstat_sample(&o->mem[i], &before[i]) != 0) {
            fprintf(stderr, "magpie-bench: --mem %s: no such process\n", o->mem[i].label);
            free(s);
            return -1;
        }

    uint64_t machine_before = memstat_machine_used_kb();
    say("magpie-bench: %s over %s, %ld connections (+%d publishers) in %d processes, run %08x\n",
        scenario_name(o->scenario), proto_name(o->proto), o->conns, o->publishers, o->procs, o->run);
    struct bench_cmd cmd = {.op = OP_CONNECT};
    if (phase(R, &cmd, s) != 0) {
        free(s);
        return -1;
    }
    json_t *cj = connect_json(s, R->total);
    json_object_set_new(R->out, "connect", cj);
    say("connect: %llu of %ld ready in %.2f s (%.0f/s), connect->ready p50 %.2f p99 %.2f ms",
        (unsigned long long)s->ready, R->total, json_real_value(json_object_get(cj, "seconds")),
        json_real_value(json_object_get(cj, "rate_per_s")), ms(hist_percentile(&s->lat, 50)),
        ms(hist_percentile(&s->lat, 99)));
    say("%s%s\n", s->ready < (uint64_t)R->total ? "; last error: " : "",
        s->ready < (uint64_t)R->total ? s->last_error : "");
    uint64_t ready = s->ready;
    uint64_t machine_after = memstat_machine_used_kb();
    json_object_set_new(
        R->out, "machine_memory",
        json_pack("{s:I,s:I,s:f}", "used_before_kb", (json_int_t)machine_before, "used_after_kb",
                  (json_int_t)machine_after, "bytes_per_conn",
                  ready ? round(((double)machine_after - (double)machine_before) * 1024.0 / (double)ready)
                        : 0.0));
    say("machine memory in use: %llu -> %llu MiB (all processes and the kernel, generator included)\n",
        (unsigned long long)machine_before / 1024, (unsigned long long)machine_after / 1024);
    if (ready == 0) {
        json_object_set_new(R->out, "ok", json_false());
        free(s);
        return 0;
    }
    sleep_s(o->settle_s);

    if (o->scenario == SC_IDLE) {
        json_t *mem = json_array();
        for (int i = 0; i < o->nmem; i++)
            memstat_sample(&o->mem[i], &after[i]);
        sleep_s(o->hold_s);
        cmd.op = OP_STATUS;
        if (phase(R, &cmd, s) != 0) {
            free(s);
            return -1;
        }
        for (int i = 0; i < o->nmem; i++) {
            memstat_sample(&o->mem[i], &held[i]);
            json_t *m = mem_json(&o->mem[i], &before[i], &after[i], ready);
            json_object_set_new(m, "after_hold_pss_kb", json_integer((json_int_t)held[i].pss_kb));
            json_array_append_new(mem, m);
            say("memory %s: PSS %llu -> %llu kB (%.0f bytes/conn), RSS %llu -> %llu kB (%.0f bytes/conn)\n",
                o->mem[i].label, (unsigned long long)before[i].pss_kb, (unsigned long long)after[i].pss_kb,
                json_real_value(json_object_get(m, "bytes_per_conn_pss")),
                (unsigned long long)before[i].rss_kb, (unsigned long long)after[i].rss_kb,
                json_real_value(json_object_get(m, "bytes_per_conn_rss")));
        }
        json_object_set_new(R->out, "memory", mem);
        json_object_set_new(R->out, "hold",
                            json_pack("{s:f,s:I,s:I}", "seconds", o->hold_s, "ready_after",
                                      (json_int_t)s->ready, "dropped", (json_int_t)s->dropped));
        say("held %.1f s: %llu still ready, %llu dropped\n", o->hold_s, (unsigned long long)s->ready,
            (unsigned long long)s->dropped);
        json_object_set_new(
            R->out, "ok", json_boolean(ready == (uint64_t)R->total && s->ready == ready && s->dropped == 0));
    } else {
        uint64_t receivers = o->scenario == SC_ROOM    ? ready - (uint64_t)o->publishers
                             : o->scenario == SC_GROUP ? (uint64_t)o->members - 1
                                                       : ready;
        if (ready < (uint64_t)R->total) {
            fprintf(stderr, "magpie-bench: only %llu of %ld connections are ready; not sending\n",
                    (unsigned long long)ready, R->total);
            json_object_set_new(R->out, "ok", json_false());
        } else {
            rc = run_steps(R, receivers);
        }
    }
    free(s);
    return rc;
}

static int write_result(struct run *R)
{
    int flags = JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(9);
    if (R->o.json_path) {
        if (json_dump_file(R->out, R->o.json_path, flags) != 0) {
            fprintf(stderr, "magpie-bench: cannot write %s\n", R->o.json_path);
            return -1;
        }
        return 0;
    }
    json_dumpf(R->out, stdout, flags);
    fputc('\n', stdout);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "token") == 0)
        return cmd_token(argc, argv);

    struct run *R = calloc(1, sizeof(*R));
    int rc;
    if (R == NULL)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    if ((rc = parse_args(R, argc, argv)) >= 0)
        goto out_free;
    rc = 1;
    if (RAND_bytes((unsigned char *)&R->o.run, sizeof(R->o.run)) != 1)
        goto out_free;
    if ((R->o.proto == PROTO_MAGPIE_CHAT || R->o.proto == PROTO_MAGPIE_ROOM ||
         R->o.proto == PROTO_MAGPIE_STOMP || R->o.proto == PROTO_MAGPIE_MQTT) &&
        load_config(R) != 0)
        goto out_free;
    if (R->have_cfg)
        warn_rate_limit(R);
    if (R->o.scenario == SC_CHAT && chat_friends(R, 1) != 0)
        goto out_free;

    R->out = json_object();
    if (start_workers(R) != 0) {
        kill_workers(R);
        goto out_friends;
    }
    json_object_set_new(R->out, "scenario", json_string(scenario_name(R->o.scenario)));
    json_object_set_new(R->out, "proto", json_string(proto_name(R->o.proto)));
    char run[16];
    snprintf(run, sizeof(run), "%08x", R->o.run);
    json_object_set_new(R->out, "run", json_string(run));
    json_object_set_new(R->out, "settings", settings_json(R));

    if (run_scenario(R) != 0) {
        kill_workers(R);
        stop_workers(R);
        goto out_friends;
    }
    stop_workers(R);
    rc = write_result(R) == 0 ? 0 : 1;
out_friends:
    if (R->o.scenario == SC_CHAT)
        chat_friends(R, 0);
out_free:
    if (R->out)
        json_decref(R->out);
    auth_clear(&R->o.auth);
    if (R->have_cfg)
        config_free(&R->cfg);
    free(R);
    return rc;
}
