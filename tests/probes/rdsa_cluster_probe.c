/* rdsa-cluster-probe -- magpie-push's Redis client (push/rdsa.c with its cluster backend,
 * push/rdsa_cluster.c) on a libuv loop against a real Redis Cluster, without the daemon, for
 * tests/integration/test_rdsa_cluster.py (built by make, not installed). The test moves slots, flushes
 * scripts and kills masters around it and reads what it answers. With a config naming one Redis
 * (no redis.cluster) it drives rdsa on that Redis (tests/integration/test_rdsa_pubsub.py); the answers'
 * node is then "?:0".
 *
 *   rdsa-cluster-probe -c magpie.conf        (redis.cluster names the seeds, or redis.host the one Redis)
 *
 * Each line on standard input is one request, its words separated by single spaces; each gets one line on
 * standard output, in order (the next request is read once the answer is out):
 *   COMMAND ARGS...        through rdsa_cmdargv: "<host>:<port> STR <v>" | "... INT <n>" | "... NIL" |
 *                          "... STATUS <t>" | "... ERROR <t>" | "... ARRAY <n>" (the node that answered),
 *                          "NULL <ms>" (fn got NULL after ms), "FAIL EAGAIN" | "FAIL EINVAL" (refused)
 *   .fmt COMMAND ARGS...   the same through rdsa_cmd (printf-style: the formatted path)
 *   .eval NAME NUMKEYS ARGS...  rdsa_eval of a registered script: setget (KEYS[1] = ARGV[1], returns
 *                          GET KEYS[1]) or pair (SET KEYS[1] and KEYS[2] to ARGV[1], returns 2); as above
 *   .setwait KEY VALUE     SET, then rdsa_wait from its reply callback: "<host>:<port> WAIT <ok>"
 *   .waitout               rdsa_wait outside a reply callback: "WAIT <ok>"
 *   .ready SECONDS         "READY" once every slot is served (the state callbacks said 1), or "FAIL timeout"
 *   .state                 "STATE told=<last told 0|1> ready=<rdsa_ready()> ups=<n> downs=<n>"
 *   .sub CHANNEL           rdsa_subscribe_ready: "SUBSCRIBED" when Redis first confirmed it
 *   .ssub CHANNEL          rdsa_ssubscribe_ready (sharded): the same
 *   .unsub CHANNEL         rdsa_unsubscribe or rdsa_sunsubscribe, as it was subscribed: "UNSUBSCRIBED"
 *                          (its counts stay readable with .msgs; it cannot be subscribed again)
 *   .msgs CHANNEL          "MSGS <n> readies=<n> last=<payload>"
 *   .load ID PREFIX CONC   start a load: CONC setget EVALSHAs outstanding at all times on keys PREFIX:0..49
 *                          (put a hash tag in PREFIX to aim at one slot), each checked: "STARTED"
 *   .stopload ID           stop it and, once its commands answered: "LOAD ok=.. null=.. null_fast=..
 *                          null_slow=.. errors=.. wrong=.. eagain=.. max_gap_ms=.. min_null_ms=..
 *                          first_error=<text>" (null_fast: NULL sooner than redis.cluster_retry_ms after
 *                          the call; max_gap_ms: the longest time without a right answer)
 *   .stats                 "STATS commands=.. moved=.. ..." (rdsac_stats)
 * Logs go to standard error. At end of input it stops rdsa, closes the loop and exits 0.
 */
#include "cli.h"
#include "config.h"
#include "log.h"
#include "magpie.h"
#include "rdsa.h"
#include "rdsa_cluster.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define MAX_WORDS    64
#define MAX_CHANNELS 256
#define MAX_LOADS    4
#define LOAD_KEYS    50

static struct rdsa_script setget_lua = {"setget",
                                        "redis.call('SET', KEYS[1], ARGV[1])\n"
                                        "return redis.call('GET', KEYS[1])\n",
                                        ""};
static struct rdsa_script pair_lua = {"pair",
                                      "redis.call('SET', KEYS[1], ARGV[1])\n"
                                      "redis.call('SET', KEYS[2], ARGV[1])\n"
                                      "return 2\n",
                                      ""};

struct channel {
    char name[128];
    long msgs, readies;
    char last[256];
    int answer_ready; /* .sub waits for the first confirmation */
    int sharded, gone;
};

struct load {
    int used, stopping, answer;
    char id[32], prefix[128];
    int conc, outstanding;
    uint64_t seq;
    long ok, null, null_fast, null_slow, errors, wrong, eagain;
    int64_t last_ok_ms, max_gap_ms, min_null_ms;
    char first_error[200];
};

struct op {
    struct load *l;
    int64_t start_ms;
    char value[32];
};

static struct {
    uv_loop_t *loop;
    struct magpie_config cfg;
    uv_pipe_t in;
    uv_timer_t tick; /* tops loads up, and .ready's deadline */
    char *buf;       /* input not yet split into lines */
    size_t len, cap;
    int busy; /* a request is waiting for its answer */
    int eof;
    int told, ups, downs;
    int64_t ready_deadline_ms; /* .ready waiting; 0: not */
    struct channel ch[MAX_CHANNELS];
    int nch;
    struct load loads[MAX_LOADS];
} P;

static void next_request(void);

static int64_t now_ms(void)
{
    return (int64_t)uv_now(P.loop);
}

static void answer(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void answer(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    P.busy = 0;
}

static void print_reply(const redisReply *r)
{
    char host[256];
    int port = 0;
    if (rdsac_reply_node(host, sizeof(host), &port) != MP_OK)
        snprintf(host, sizeof(host), "?");
    switch (r->type) {
    case REDIS_REPLY_STRING:
        answer("%s:%d STR %.*s", host, port, (int)r->len, r->str);
        break;
    case REDIS_REPLY_INTEGER:
        answer("%s:%d INT %lld", host, port, r->integer);
        break;
    case REDIS_REPLY_NIL:
        answer("%s:%d NIL", host, port);
        break;
    case REDIS_REPLY_STATUS:
        answer("%s:%d STATUS %s", host, port, r->str);
        break;
    case REDIS_REPLY_ERROR:
        answer("%s:%d ERROR %s", host, port, r->str);
        break;
    case REDIS_REPLY_ARRAY:
        answer("%s:%d ARRAY %zu", host, port, r->elements);
        break;
    default:
        answer("%s:%d TYPE %d", host, port, r->type);
    }
}

static void on_reply(redisReply *r, void *arg)
{
    int64_t *start = arg;
    if (r == NULL)
        answer("NULL %lld", (long long)(now_ms() - *start));
    else
        print_reply(r);
    free(start);
    next_request();
}

static void on_wait(int ok, void *arg)
{
    char *node = arg;
    if (node[0])
        answer("%s WAIT %d", node, ok);
    else
        answer("WAIT %d", ok);
    free(node);
    next_request();
}

static void on_setwait_reply(redisReply *r, void *arg)
{
    char *node = malloc(300);
    char host[256];
    int port;
    free(arg);
    if (node == NULL || r == NULL || r->type == REDIS_REPLY_ERROR) {
        free(node);
        answer("FAIL SET %s", r ? r->str : "NULL");
        next_request();
        return;
    }
    if (rdsac_reply_node(host, sizeof(host), &port) == MP_OK)
        snprintf(node, 300, "%s:%d", host, port);
    else
        snprintf(node, 300, "?:0");
    rdsa_wait(on_wait, node);
}

static void on_state(int ready, void *arg)
{
    (void)arg;
    P.told = ready;
    if (ready)
        P.ups++;
    else
        P.downs++;
    if (ready && P.ready_deadline_ms != 0) {
        P.ready_deadline_ms = 0;
        answer("READY");
        next_request();
    }
}

/* ---- pub/sub ---- */

static struct channel *channel_get(const char *name)
{
    for (int i = 0; i < P.nch; i++)
        if (strcmp(P.ch[i].name, name) == 0)
            return &P.ch[i];
    return NULL;
}

static void on_message(const char *channel, const char *payload, size_t len, void *arg)
{
    struct channel *c = arg;
    (void)channel;
    c->msgs++;
    snprintf(c->last, sizeof(c->last), "%.*s", (int)(len < 200 ? len : 200), payload);
}

static void on_subscribed(const char *channel, void *arg)
{
    struct channel *c = arg;
    (void)channel;
    c->readies++;
    if (c->answer_ready) {
        c->answer_ready = 0;
        answer("SUBSCRIBED");
        next_request();
    }
}

/* ---- loads ---- */

static void load_issue(struct load *l);

static void load_finish_maybe(struct load *l)
{
    if (!l->stopping || l->outstanding > 0 || !l->answer)
        return;
    answer("LOAD ok=%ld null=%ld null_fast=%ld null_slow=%ld errors=%ld wrong=%ld eagain=%ld max_gap_ms=%lld "
           "min_null_ms=%lld first_error=%s",
           l->ok, l->null, l->null_fast, l->null_slow, l->errors, l->wrong, l->eagain,
           (long long)l->max_gap_ms, (long long)(l->null ? l->min_null_ms : -1),
           l->first_error[0] ? l->first_error : "-");
    l->used = 0;
    next_request();
}

static void on_load_reply(redisReply *r, void *arg)
{
    struct op *o = arg;
    struct load *l = o->l;
    int64_t now = now_ms(), took = now - o->start_ms;

    l->outstanding--;
    if (r == NULL) {
        l->null++;
        if (took < P.cfg.redis.cluster_retry_ms)
            l->null_fast++;
        else
            l->null_slow++;
        if (l->null == 1 || took < l->min_null_ms)
            l->min_null_ms = took;
    } else if (r->type == REDIS_REPLY_ERROR) {
        if (l->errors++ == 0)
            snprintf(l->first_error, sizeof(l->first_error), "%.150s", r->str);
    } else if (r->type != REDIS_REPLY_STRING || strcmp(r->str, o->value) != 0) {
        l->wrong++;
    } else {
        l->ok++;
        if (now - l->last_ok_ms > l->max_gap_ms)
            l->max_gap_ms = now - l->last_ok_ms;
        l->last_ok_ms = now;
    }
    free(o);
    if (l->stopping)
        load_finish_maybe(l);
    else
        load_issue(l);
}

static void load_issue(struct load *l)
{
    while (!l->stopping && l->outstanding < l->conc) {
        struct op *o = malloc(sizeof(*o));
        char key[160];
        const char *argv[2];
        if (o == NULL)
            return;
        o->l = l;
        o->start_ms = now_ms();
        snprintf(o->value, sizeof(o->value), "v%llu", (unsigned long long)l->seq);
        snprintf(key, sizeof(key), "%s:%llu", l->prefix, (unsigned long long)(l->seq % LOAD_KEYS));
        l->seq++;
        argv[0] = key;
        argv[1] = o->value;
        if (rdsa_eval(&setget_lua, on_load_reply, o, 1, 2, argv, NULL) != MP_OK) {
            l->eagain++;
            free(o);
            return; /* the tick tries again */
        }
        l->outstanding++;
    }
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
    for (int i = 0; i < MAX_LOADS; i++)
        if (P.loads[i].used && !P.loads[i].stopping)
            load_issue(&P.loads[i]);
    if (P.ready_deadline_ms != 0 && now_ms() > P.ready_deadline_ms) {
        P.ready_deadline_ms = 0;
        answer("FAIL timeout");
        next_request();
    }
}

static struct load *load_find(const char *id)
{
    for (int i = 0; i < MAX_LOADS; i++)
        if (P.loads[i].used && strcmp(P.loads[i].id, id) == 0)
            return &P.loads[i];
    return NULL;
}

/* ---- requests ---- */

static void stats_line(void)
{
    struct rdsac_stats s;
    rdsac_stats_get(&s);
    answer(
        "STATS commands=%llu moved=%llu ask=%llu tryagain=%llu clusterdown=%llu noscript=%llu retries=%llu "
        "gave_up=%llu lost_in_flight=%llu refused=%llu refreshes=%llu refresh_failures=%llu "
        "node_losses=%llu sub_moved=%llu masters=%d masters_ready=%d",
        (unsigned long long)s.commands, (unsigned long long)s.moved, (unsigned long long)s.ask,
        (unsigned long long)s.tryagain, (unsigned long long)s.clusterdown, (unsigned long long)s.noscript,
        (unsigned long long)s.retries, (unsigned long long)s.gave_up, (unsigned long long)s.lost_in_flight,
        (unsigned long long)s.refused, (unsigned long long)s.refreshes,
        (unsigned long long)s.refresh_failures, (unsigned long long)s.node_losses,
        (unsigned long long)s.sub_moved, s.masters, s.masters_ready);
}

/* rdsa_cmd with a format of argc "%b"s: the printf-style path. */
static int fmt_cmd(int argc, const char **argv, const size_t *len, void *start)
{
    switch (argc) {
    case 1:
        return rdsa_cmd(on_reply, start, "%b", argv[0], len[0]);
    case 2:
        return rdsa_cmd(on_reply, start, "%b %b", argv[0], len[0], argv[1], len[1]);
    case 3:
        return rdsa_cmd(on_reply, start, "%b %b %b", argv[0], len[0], argv[1], len[1], argv[2], len[2]);
    case 4:
        return rdsa_cmd(on_reply, start, "%b %b %b %b", argv[0], len[0], argv[1], len[1], argv[2], len[2],
                        argv[3], len[3]);
    case 5:
        return rdsa_cmd(on_reply, start, "%b %b %b %b %b", argv[0], len[0], argv[1], len[1], argv[2], len[2],
                        argv[3], len[3], argv[4], len[4]);
    }
    return MP_EINVAL;
}

static const char *rc_name(int rc)
{
    return rc == MP_EINVAL ? "EINVAL" : rc == MP_EAGAIN ? "EAGAIN" : "ERR";
}

/* Handle one request line; returns 1 when its answer comes later (P.busy stays set). */
static int request(char *line)
{
    const char *argv[MAX_WORDS];
    size_t argvlen[MAX_WORDS];
    char *save = NULL;
    int argc = 0, rc = MP_OK;
    int64_t *start;

    for (char *w = strtok_r(line, " ", &save); w != NULL && argc < MAX_WORDS;
         w = strtok_r(NULL, " ", &save)) {
        argv[argc] = w;
        argvlen[argc++] = strlen(w);
    }
    P.busy = 1;
    if (argc == 0) {
        answer("FAIL EINVAL empty line");
        return 0;
    }
    if (strcmp(argv[0], ".stats") == 0) {
        stats_line();
        return 0;
    }
    if (strcmp(argv[0], ".state") == 0) {
        answer("STATE told=%d ready=%d ups=%d downs=%d", P.told, rdsa_ready(), P.ups, P.downs);
        return 0;
    }
    if (strcmp(argv[0], ".ready") == 0 && argc == 2) {
        if (P.told) {
            answer("READY");
            return 0;
        }
        P.ready_deadline_ms = now_ms() + atoi(argv[1]) * 1000;
        return 1;
    }
    if (strcmp(argv[0], ".waitout") == 0) {
        char *node = calloc(1, 1);
        if (node == NULL) {
            answer("FAIL ENOMEM");
            return 0;
        }
        rdsa_wait(on_wait, node);
        return P.busy;
    }
    if (strcmp(argv[0], ".setwait") == 0 && argc == 3) {
        const char *av[3] = {"SET", argv[1], argv[2]};
        if ((start = malloc(sizeof(*start))) == NULL ||
            (rc = rdsa_cmdargv(on_setwait_reply, start, 3, av, NULL)) != MP_OK) {
            free(start);
            answer("FAIL %s", start ? rc_name(rc) : "ENOMEM");
            return 0;
        }
        return 1;
    }
    if ((strcmp(argv[0], ".sub") == 0 || strcmp(argv[0], ".ssub") == 0) && argc == 2) {
        struct channel *c = channel_get(argv[1]);
        int sharded = argv[0][1] == 's' && argv[0][2] == 's';
        if (c != NULL || P.nch == MAX_CHANNELS || strlen(argv[1]) >= sizeof(c->name)) {
            answer("FAIL EINVAL subscribed already, or too many channels");
            return 0;
        }
        c = &P.ch[P.nch++];
        snprintf(c->name, sizeof(c->name), "%s", argv[1]);
        c->answer_ready = 1;
        c->sharded = sharded;
        if ((sharded ? rdsa_ssubscribe_ready : rdsa_subscribe_ready)(c->name, on_message, on_subscribed, c) !=
            MP_OK) {
            answer("FAIL ENOMEM");
            return 0;
        }
        return 1;
    }
    if (strcmp(argv[0], ".unsub") == 0 && argc == 2) {
        struct channel *c = channel_get(argv[1]);
        if (c == NULL || c->gone) {
            answer("FAIL EINVAL not subscribed");
            return 0;
        }
        if (c->sharded)
            rdsa_sunsubscribe(c->name);
        else
            rdsa_unsubscribe(c->name);
        c->gone = 1;
        answer("UNSUBSCRIBED");
        return 0;
    }
    if (strcmp(argv[0], ".msgs") == 0 && argc == 2) {
        struct channel *c = channel_get(argv[1]);
        if (c == NULL)
            answer("FAIL EINVAL not subscribed");
        else
            answer("MSGS %ld readies=%ld last=%s", c->msgs, c->readies, c->last[0] ? c->last : "-");
        return 0;
    }
    if (strcmp(argv[0], ".load") == 0 && argc == 4) {
        struct load *l = NULL;
        for (int i = 0; i < MAX_LOADS && l == NULL; i++)
            if (!P.loads[i].used)
                l = &P.loads[i];
        if (l == NULL || load_find(argv[1]) != NULL) {
            answer("FAIL EINVAL too many loads, or that id runs");
            return 0;
        }
        memset(l, 0, sizeof(*l));
        l->used = 1;
        snprintf(l->id, sizeof(l->id), "%s", argv[1]);
        snprintf(l->prefix, sizeof(l->prefix), "%s", argv[2]);
        l->conc = atoi(argv[3]) > 0 ? atoi(argv[3]) : 1;
        l->last_ok_ms = now_ms();
        load_issue(l);
        answer("STARTED");
        return 0;
    }
    if (strcmp(argv[0], ".stopload") == 0 && argc == 2) {
        struct load *l = load_find(argv[1]);
        if (l == NULL) {
            answer("FAIL EINVAL no such load");
            return 0;
        }
        l->stopping = 1;
        l->answer = 1;
        load_finish_maybe(l);
        return P.busy;
    }
    if (strcmp(argv[0], ".eval") == 0 && argc >= 3) {
        struct rdsa_script *s = strcmp(argv[1], "setget") == 0 ? &setget_lua
                                : strcmp(argv[1], "pair") == 0 ? &pair_lua
                                                               : NULL;
        if (s == NULL) {
            answer("FAIL EINVAL unknown script");
            return 0;
        }
        if ((start = malloc(sizeof(*start))) == NULL) {
            answer("FAIL ENOMEM");
            return 0;
        }
        *start = now_ms();
        if ((rc = rdsa_eval(s, on_reply, start, atoi(argv[2]), argc - 3, argv + 3, argvlen + 3)) != MP_OK) {
            free(start);
            answer("FAIL %s", rc_name(rc));
            return 0;
        }
        return 1;
    }
    if (strcmp(argv[0], ".fmt") == 0 && argc >= 2) {
        if ((start = malloc(sizeof(*start))) == NULL) {
            answer("FAIL ENOMEM");
            return 0;
        }
        *start = now_ms();
        if ((rc = fmt_cmd(argc - 1, argv + 1, argvlen + 1, start)) != MP_OK) {
            free(start);
            answer("FAIL %s", rc_name(rc));
            return 0;
        }
        return 1;
    }
    if (argv[0][0] == '.') {
        answer("FAIL EINVAL unknown probe request %s", argv[0]);
        return 0;
    }
    if ((start = malloc(sizeof(*start))) == NULL) {
        answer("FAIL ENOMEM");
        return 0;
    }
    *start = now_ms();
    if ((rc = rdsa_cmdargv(on_reply, start, argc, argv, argvlen)) != MP_OK) {
        free(start);
        answer("FAIL %s", rc_name(rc));
        return 0;
    }
    return 1;
}

/* ---- input ---- */

static void shutdown_probe(void)
{
    for (int i = 0; i < MAX_LOADS; i++)
        P.loads[i].stopping = 1;
    rdsa_stop();
    uv_timer_stop(&P.tick);
    uv_close((uv_handle_t *)&P.tick, NULL);
    if (!uv_is_closing((uv_handle_t *)&P.in))
        uv_close((uv_handle_t *)&P.in, NULL);
}

/* Handle buffered lines until one waits for its answer. */
static void next_request(void)
{
    char *nl;
    while (!P.busy && (nl = memchr(P.buf, '\n', P.len)) != NULL) {
        size_t n = (size_t)(nl - P.buf);
        char *line = malloc(n + 1);
        if (line == NULL)
            return;
        memcpy(line, P.buf, n);
        line[n] = '\0';
        if (n > 0 && line[n - 1] == '\r')
            line[n - 1] = '\0';
        memmove(P.buf, nl + 1, P.len - n - 1);
        P.len -= n + 1;
        request(line);
        free(line);
    }
    if (!P.busy && P.eof && P.buf != NULL && memchr(P.buf, '\n', P.len) == NULL) { /* a last line without
                                                                                     its newline: dropped */
        free(P.buf);
        P.buf = NULL;
        shutdown_probe();
    }
}

static void on_alloc(uv_handle_t *h, size_t want, uv_buf_t *b)
{
    (void)h;
    if (P.cap - P.len < want) {
        char *grown = realloc(P.buf, P.len + want);
        if (grown == NULL) {
            *b = uv_buf_init(NULL, 0);
            return;
        }
        P.buf = grown;
        P.cap = P.len + want;
    }
    *b = uv_buf_init(P.buf + P.len, (unsigned)(P.cap - P.len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    if (n < 0) {
        uv_read_stop(s);
        P.eof = 1;
        if (P.buf == NULL && (P.buf = malloc(1)) == NULL)
            return;
        next_request();
        return;
    }
    P.len += (size_t)n;
    next_request();
}

int main(int argc, char **argv)
{
    int rc = cli_start(argc, argv, NULL, NULL, NULL, NULL, &P.cfg);

    if (rc >= 0)
        return rc;
    log_open("rdsa-cluster-probe", P.cfg.log.level, "");
    P.loop = uv_default_loop();
    rdsa_script(&setget_lua);
    rdsa_script(&pair_lua);
    rdsa_on_state(on_state, NULL);
    if (rdsa_start(P.loop, &P.cfg) != MP_OK) {
        fprintf(stderr, "rdsa-cluster-probe: rdsa_start failed (is redis.cluster set?)\n");
        config_free(&P.cfg);
        return 1;
    }
    uv_timer_init(P.loop, &P.tick);
    uv_timer_start(&P.tick, on_tick, 5, 5);
    uv_pipe_init(P.loop, &P.in, 0);
    if (uv_pipe_open(&P.in, 0) != 0 || uv_read_start((uv_stream_t *)&P.in, on_alloc, on_read) != 0) {
        fprintf(stderr, "rdsa-cluster-probe: standard input must be a pipe\n");
        return 1;
    }
    uv_run(P.loop, UV_RUN_DEFAULT);
    uv_loop_close(P.loop);
    free(P.buf);
    config_free(&P.cfg);
    return 0;
}
