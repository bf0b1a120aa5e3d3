/* rcluster.c -- see rcluster.h (the design). */
#include "rcluster.h"
#include "config.h"
#include "log.h"
#include "magpie.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define CONN_BACKOFF_MIN_MS 100 /* a node whose connect failed: as rds.c */
#define CONN_BACKOFF_MAX_MS 2000

/* ---- slots ---------------------------------------------------------------------------------------- */

/* CRC16-XMODEM, bit by bit: keys are short, and a table would be 512 bytes of constants to get right. */
uint16_t rcl_crc16(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

int rcl_keyslot(const void *key, size_t len)
{
    const char *k = key;
    const char *lb = memchr(k, '{', len), *rb;

    if (lb != NULL) {
        rb = memchr(lb + 1, '}', len - (size_t)(lb + 1 - k));
        if (rb != NULL && rb > lb + 1)
            return rcl_crc16(lb + 1, (size_t)(rb - lb - 1)) & (RCL_SLOTS - 1);
    }
    return rcl_crc16(k, len) & (RCL_SLOTS - 1);
}

/* ---- which arguments are keys ----------------------------------------------------------------------- */

enum key_rule {
    KEYS_NONE,    /* no key: any master */
    KEYS_REFUSE,  /* not routed by this client */
    KEYS_RANGE,   /* argv[first] .. argv[argc - 1 - skip_last], every step-th (skip_last -1: the first 2) */
    KEYS_NUMKEYS, /* argv[first] is a count n, the n arguments after it are keys (EVAL, ZUNION...) */
    KEYS_STREAMS, /* after the STREAMS token, the first half of what remains (XREAD, XREADGROUP) */
    KEYS_SUBCMD,  /* argv[2] is the key, after a subcommand (XINFO STREAM key, XGROUP CREATE key...) */
    KEYS_DEST_NUMKEYS, /* argv[1] is a key, then argv[2] is a count n of keys after it (ZUNIONSTORE...) */
};

struct key_spec {
    const char *name;
    enum key_rule rule;
    int first, step, skip_last;
};

/* Commands whose keys are not just argv[1]. Every other command's key is argv[1] (GET, SET, HSET, XADD,
 * XACK, XPENDING, XCLAIM, ZADD, EXPIRE, SPUBLISH...), or it has none when it has no argument. */
static const struct key_spec key_specs[] = {
    {"PING", KEYS_NONE, 0, 0, 0},
    {"ECHO", KEYS_NONE, 0, 0, 0},
    {"TIME", KEYS_NONE, 0, 0, 0},
    {"INFO", KEYS_NONE, 0, 0, 0},
    {"WAIT", KEYS_NONE, 0, 0, 0},
    {"SCRIPT", KEYS_NONE, 0, 0, 0},
    {"FUNCTION", KEYS_NONE, 0, 0, 0},
    {"CLUSTER", KEYS_NONE, 0, 0, 0},
    {"COMMAND", KEYS_NONE, 0, 0, 0},
    {"CONFIG", KEYS_NONE, 0, 0, 0},
    {"DBSIZE", KEYS_NONE, 0, 0, 0},
    {"ROLE", KEYS_NONE, 0, 0, 0},
    {"LASTSAVE", KEYS_NONE, 0, 0, 0},
    {"PUBLISH", KEYS_NONE, 0, 0, 0}, /* a cluster forwards PUBLISH to every node */
    {"MULTI", KEYS_REFUSE, 0, 0, 0},
    {"EXEC", KEYS_REFUSE, 0, 0, 0},
    {"DISCARD", KEYS_REFUSE, 0, 0, 0},
    {"WATCH", KEYS_REFUSE, 0, 0, 0},
    {"UNWATCH", KEYS_REFUSE, 0, 0, 0},
    {"SUBSCRIBE", KEYS_REFUSE, 0, 0, 0},
    {"PSUBSCRIBE", KEYS_REFUSE, 0, 0, 0},
    {"SSUBSCRIBE", KEYS_REFUSE, 0, 0, 0},
    {"UNSUBSCRIBE", KEYS_REFUSE, 0, 0, 0},
    {"PUNSUBSCRIBE", KEYS_REFUSE, 0, 0, 0},
    {"SUNSUBSCRIBE", KEYS_REFUSE, 0, 0, 0},
    {"MONITOR", KEYS_REFUSE, 0, 0, 0},
    {"SELECT", KEYS_REFUSE, 0, 0, 0},
    {"AUTH", KEYS_REFUSE, 0, 0, 0},
    {"HELLO", KEYS_REFUSE, 0, 0, 0},
    {"QUIT", KEYS_REFUSE, 0, 0, 0},
    {"RESET", KEYS_REFUSE, 0, 0, 0},
    {"ASKING", KEYS_REFUSE, 0, 0, 0},
    {"READONLY", KEYS_REFUSE, 0, 0, 0},
    {"READWRITE", KEYS_REFUSE, 0, 0, 0},
    {"MIGRATE", KEYS_REFUSE, 0, 0, 0}, /* an operator's tool, with its keys in two places */
    {"EVAL", KEYS_NUMKEYS, 2, 0, 0},
    {"EVALSHA", KEYS_NUMKEYS, 2, 0, 0},
    {"EVAL_RO", KEYS_NUMKEYS, 2, 0, 0},
    {"EVALSHA_RO", KEYS_NUMKEYS, 2, 0, 0},
    {"FCALL", KEYS_NUMKEYS, 2, 0, 0},
    {"FCALL_RO", KEYS_NUMKEYS, 2, 0, 0},
    {"ZUNION", KEYS_NUMKEYS, 1, 0, 0},
    {"ZINTER", KEYS_NUMKEYS, 1, 0, 0},
    {"ZDIFF", KEYS_NUMKEYS, 1, 0, 0},
    {"ZINTERCARD", KEYS_NUMKEYS, 1, 0, 0},
    {"SINTERCARD", KEYS_NUMKEYS, 1, 0, 0},
    {"LMPOP", KEYS_NUMKEYS, 1, 0, 0},
    {"ZMPOP", KEYS_NUMKEYS, 1, 0, 0},
    {"ZUNIONSTORE", KEYS_DEST_NUMKEYS, 1, 0, 0},
    {"ZINTERSTORE", KEYS_DEST_NUMKEYS, 1, 0, 0},
    {"ZDIFFSTORE", KEYS_DEST_NUMKEYS, 1, 0, 0},
    {"XREAD", KEYS_STREAMS, 0, 0, 0},
    {"XREADGROUP", KEYS_STREAMS, 0, 0, 0},
    {"XINFO", KEYS_SUBCMD, 0, 0, 0},
    {"XGROUP", KEYS_SUBCMD, 0, 0, 0},
    {"OBJECT", KEYS_SUBCMD, 0, 0, 0},
    {"MEMORY", KEYS_SUBCMD, 0, 0, 0},
    {"DEL", KEYS_RANGE, 1, 1, 0},
    {"UNLINK", KEYS_RANGE, 1, 1, 0},
    {"EXISTS", KEYS_RANGE, 1, 1, 0},
    {"TOUCH", KEYS_RANGE, 1, 1, 0},
    {"MGET", KEYS_RANGE, 1, 1, 0},
    {"MSET", KEYS_RANGE, 1, 2, 0},
    {"MSETNX", KEYS_RANGE, 1, 2, 0},
    {"SINTER", KEYS_RANGE, 1, 1, 0},
    {"SUNION", KEYS_RANGE, 1, 1, 0},
    {"SDIFF", KEYS_RANGE, 1, 1, 0},
    {"SINTERSTORE", KEYS_RANGE, 1, 1, 0},
    {"SUNIONSTORE", KEYS_RANGE, 1, 1, 0},
    {"SDIFFSTORE", KEYS_RANGE, 1, 1, 0},
    {"PFCOUNT", KEYS_RANGE, 1, 1, 0},
    {"PFMERGE", KEYS_RANGE, 1, 1, 0},
    {"BLPOP", KEYS_RANGE, 1, 1, 1},
    {"BRPOP", KEYS_RANGE, 1, 1, 1},
    {"BZPOPMIN", KEYS_RANGE, 1, 1, 1},
    {"BZPOPMAX", KEYS_RANGE, 1, 1, 1},
    {"RENAME", KEYS_RANGE, 1, 1, 0}, /* exactly two keys: argc is checked by Redis itself */
    {"RENAMENX", KEYS_RANGE, 1, 1, 0},
    {"RPOPLPUSH", KEYS_RANGE, 1, 1, 0},
    {"SMOVE", KEYS_RANGE, 1, 1, 1},      /* SMOVE src dst member */
    {"LMOVE", KEYS_RANGE, 1, 1, 2},      /* LMOVE src dst LEFT RIGHT */
    {"BLMOVE", KEYS_RANGE, 1, 1, 3},     /* BLMOVE src dst LEFT RIGHT timeout */
    {"BRPOPLPUSH", KEYS_RANGE, 1, 1, 1}, /* BRPOPLPUSH src dst timeout */
    {"COPY", KEYS_RANGE, 1, 1, -1},      /* COPY src dst [DB n] [REPLACE]: the first two */
};

static const struct key_spec *find_spec(const char *name, size_t len)
{
    for (size_t i = 0; i < MP_ARRAY_LEN(key_specs); i++)
        if (strlen(key_specs[i].name) == len && strncasecmp(key_specs[i].name, name, len) == 0)
            return &key_specs[i];
    return NULL;
}

/* The precision that prints a command name of len bytes (it is not NUL-terminated) in an error. */
#define NAME(len) ((int)((len) > 32 ? 32 : (len)))

/* Parse argv[i] as a non-negative count; -1 when it is not one. */
static long parse_count(const char *s, size_t len)
{
    long n = 0;
    if (len == 0 || len > 9)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        n = n * 10 + (s[i] - '0');
    }
    return n;
}

/* Fold key argv[i] into *slot (-1 = none yet); MP_EINVAL when it is in another slot. */
static int add_key(int *slot, const char *key, size_t len, char *why, size_t whylen)
{
    int s = rcl_keyslot(key, len);
    if (*slot >= 0 && *slot != s) {
        snprintf(why, whylen, "keys in different slots (%d and %d): give them one hash tag {...}", *slot, s);
        return MP_EINVAL;
    }
    *slot = s;
    return MP_OK;
}

static int add_range(int *slot, const char **argv, const size_t *argvlen, int from, int to, int step,
                     char *why, size_t whylen)
{
    for (int i = from; i < to; i += step)
        if (add_key(slot, argv[i], argvlen[i], why, whylen) != MP_OK)
            return MP_EINVAL;
    return MP_OK;
}

int rcl_command_slot(int argc, const char **argv, const size_t *argvlen, int *slot, char *why, size_t whylen)
{
    const struct key_spec *ks;
    long n;
    int i, end;

    *slot = -1;
    if (argc < 1) {
        snprintf(why, whylen, "empty command");
        return MP_EINVAL;
    }
    ks = find_spec(argv[0], argvlen[0]);
    if (ks == NULL)
        return argc >= 2 ? add_key(slot, argv[1], argvlen[1], why, whylen) : MP_OK;
    switch (ks->rule) {
    case KEYS_NONE:
        return MP_OK;
    case KEYS_REFUSE:
        snprintf(why, whylen, "%.*s is not supported through the cluster client", NAME(argvlen[0]), argv[0]);
        return MP_EINVAL;
    case KEYS_RANGE:
        end = ks->skip_last >= 0 ? argc - ks->skip_last : (argc < 3 ? argc : 3);
        return add_range(slot, argv, argvlen, ks->first, end, ks->step, why, whylen);
    case KEYS_NUMKEYS:
    case KEYS_DEST_NUMKEYS:
        i = ks->first;
        if (ks->rule == KEYS_DEST_NUMKEYS) {
            if (argc < 3) {
                snprintf(why, whylen, "%.*s without a key count", NAME(argvlen[0]), argv[0]);
                return MP_EINVAL;
            }
            if (add_key(slot, argv[1], argvlen[1], why, whylen) != MP_OK)
                return MP_EINVAL;
            i = 2;
        }
        if (i >= argc || (n = parse_count(argv[i], argvlen[i])) < 0 || n > argc - i - 1) {
            snprintf(why, whylen, "%.*s: the key count does not fit its arguments", NAME(argvlen[0]),
                     argv[0]);
            return MP_EINVAL;
        }
        return add_range(slot, argv, argvlen, i + 1, i + 1 + (int)n, 1, why, whylen);
    case KEYS_STREAMS:
        /* as Redis finds them: skip the arguments of COUNT, BLOCK and GROUP (a group named STREAMS) */
        for (i = 1; i < argc; i++) {
            if (argvlen[i] == 7 && strncasecmp(argv[i], "STREAMS", 7) == 0)
                break;
            if ((argvlen[i] == 5 &&
                 (strncasecmp(argv[i], "COUNT", 5) == 0 || strncasecmp(argv[i], "BLOCK", 5) == 0)))
                i++;
            else if (argvlen[i] == 5 && strncasecmp(argv[i], "GROUP", 5) == 0)
                i += 2;
        }
        n = argc - i - 1; /* keys then as many ids */
        if (i >= argc || n < 2 || n % 2 != 0) {
            snprintf(why, whylen, "%.*s: STREAMS must be followed by keys and as many ids", NAME(argvlen[0]),
                     argv[0]);
            return MP_EINVAL;
        }
        return add_range(slot, argv, argvlen, i + 1, i + 1 + (int)(n / 2), 1, why, whylen);
    case KEYS_SUBCMD:
        /* XINFO HELP, XGROUP HELP, MEMORY STATS...: no key */
        return argc >= 3 ? add_key(slot, argv[2], argvlen[2], why, whylen) : MP_OK;
    }
    return MP_OK;
}

/* ---- the map --------------------------------------------------------------------------------------------
 */

void rcl_map_clear(struct rcl_map *m)
{
    m->nnodes = 0;
    for (int s = 0; s < RCL_SLOTS; s++)
        m->owner[s] = -1;
}

/* Index of host:port in m, adding it when new; -1 when m is full. */
static int map_node(struct rcl_map *m, const char *host, int port)
{
    for (int i = 0; i < m->nnodes; i++)
        if (m->node[i].port == port && strcmp(m->node[i].host, host) == 0)
            return i;
    if (m->nnodes == RCL_MAX_MASTERS)
        return -1;
    snprintf(m->node[m->nnodes].host, RCL_HOST_LEN, "%s", host);
    m->node[m->nnodes].port = port;
    return m->nnodes++;
}

int rcl_map_set_owner(struct rcl_map *m, int slot, const char *host, int port)
{
    int i;
    if (slot < 0 || slot >= RCL_SLOTS || port < 1 || port > 65535 || strlen(host) >= RCL_HOST_LEN)
        return MP_EINVAL;
    if ((i = map_node(m, host, port)) < 0)
        return MP_ERR;
    m->owner[slot] = (int16_t)i;
    return MP_OK;
}

const struct rcl_node *rcl_map_owner(const struct rcl_map *m, int slot)
{
    if (slot < 0 || slot >= RCL_SLOTS || m->owner[slot] < 0)
        return NULL;
    return &m->node[m->owner[slot]];
}

static int fail(struct rcl_map *m, char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(struct rcl_map *m, char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    rcl_map_clear(m);
    return MP_EINVAL;
}

int rcl_map_parse_slots(struct rcl_map *m, const redisReply *r, const char *asked_host, char *why,
                        size_t whylen)
{
    rcl_map_clear(m);
    if (r->type == REDIS_REPLY_ERROR)
        return fail(m, why, whylen, "CLUSTER SLOTS answered an error: %.200s", r->str);
    if (r->type != REDIS_REPLY_ARRAY)
        return fail(m, why, whylen, "CLUSTER SLOTS answered type %d, not an array", r->type);
    for (size_t k = 0, covered = 0; k < r->elements; k++) {
        const redisReply *e = r->element[k], *n;
        const char *host;
        long long lo, hi;
        int idx;

        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER || e->element[2]->type != REDIS_REPLY_ARRAY)
            return fail(m, why, whylen, "CLUSTER SLOTS range %zu is not [start, end, [host, port...]...]", k);
        lo = e->element[0]->integer;
        hi = e->element[1]->integer;
        if (lo < 0 || hi >= RCL_SLOTS || lo > hi)
            return fail(m, why, whylen, "CLUSTER SLOTS range %zu is %lld-%lld (slots are 0-16383)", k, lo,
                        hi);
        /* Each slot is in one range: more in all means overlapping ranges (and bounds the work below). */
        if ((covered += (size_t)(hi - lo + 1)) > RCL_SLOTS)
            return fail(m, why, whylen, "CLUSTER SLOTS ranges overlap (range %zu)", k);
        n = e->element[2];
        if (n->elements < 2 ||
            (n->element[0]->type != REDIS_REPLY_STRING && n->element[0]->type != REDIS_REPLY_NIL) ||
            n->element[1]->type != REDIS_REPLY_INTEGER)
            return fail(m, why, whylen, "CLUSTER SLOTS range %zu: its master is not [host, port...]", k);
        if (n->element[1]->integer < 1 || n->element[1]->integer > 65535)
            return fail(m, why, whylen, "CLUSTER SLOTS range %zu: port %lld", k, n->element[1]->integer);
        if (n->element[0]->type == REDIS_REPLY_STRING && memchr(n->element[0]->str, '\0', n->element[0]->len))
            return fail(m, why, whylen, "CLUSTER SLOTS range %zu: a host with a NUL in it", k);
        /* NULL or "": the node does not know its endpoint, use the one that was asked (Redis' docs) */
        host = n->element[0]->type == REDIS_REPLY_NIL || n->element[0]->len == 0 ? asked_host
                                                                                 : n->element[0]->str;
        if (strlen(host) >= RCL_HOST_LEN)
            return fail(m, why, whylen, "CLUSTER SLOTS range %zu: a host of %zu bytes", k, strlen(host));
        if (strcmp(host, "?") == 0)
            continue; /* no usable endpoint: its slots stay unserved until a refresh names one */
        if ((idx = map_node(m, host, (int)n->element[1]->integer)) < 0)
            return fail(m, why, whylen, "CLUSTER SLOTS names more than %d masters", RCL_MAX_MASTERS);
        for (long long s = lo; s <= hi; s++)
            m->owner[s] = (int16_t)idx;
    }
    return MP_OK;
}

/* ---- what a reply means ---------------------------------------------------------------------------------
 */

/* "<slot> <host>:<port>" after MOVED/ASK into rd; MP_OK or MP_EINVAL. */
static int parse_target(const char *s, size_t len, const char *from_host, struct rcl_redirect *rd)
{
    const char *sp = memchr(s, ' ', len), *colon = NULL, *end = s + len;
    long slot, port;
    size_t hostlen;

    if (sp == NULL || (slot = parse_count(s, (size_t)(sp - s))) < 0 || slot >= RCL_SLOTS)
        return MP_EINVAL;
    for (const char *p = sp + 1; p < end; p++)
        if (*p == ':')
            colon = p;
    if (colon == NULL || (port = parse_count(colon + 1, (size_t)(end - colon - 1))) < 1 || port > 65535)
        return MP_EINVAL;
    hostlen = (size_t)(colon - (sp + 1));
    if (memchr(sp + 1, ' ', hostlen) != NULL || memchr(sp + 1, '\0', hostlen) != NULL)
        return MP_EINVAL;
    if (hostlen == 0) {
        if (strlen(from_host) >= RCL_HOST_LEN)
            return MP_EINVAL;
        snprintf(rd->host, RCL_HOST_LEN, "%s", from_host);
    } else {
        if (hostlen >= RCL_HOST_LEN)
            return MP_EINVAL;
        memcpy(rd->host, sp + 1, hostlen);
        rd->host[hostlen] = '\0';
    }
    rd->slot = (int)slot;
    rd->port = (int)port;
    return MP_OK;
}

/* Does error text s (len bytes) start with the word w ("MOVED" matches "MOVED 1 h:1", not "MOVEDX")? */
static int starts_word(const char *s, size_t len, const char *w)
{
    size_t n = strlen(w);
    return len >= n && memcmp(s, w, n) == 0 && (len == n || s[n] == ' ');
}

enum rcl_kind rcl_classify(const redisReply *r, const char *from_host, struct rcl_redirect *rd)
{
    const char *s;
    size_t len;

    if (r->type != REDIS_REPLY_ERROR || r->str == NULL)
        return RCL_REPLY;
    s = r->str;
    len = r->len;
    if (starts_word(s, len, "MOVED"))
        return len > 6 && parse_target(s + 6, len - 6, from_host, rd) == MP_OK ? RCL_MOVED : RCL_BADREDIRECT;
    if (starts_word(s, len, "ASK"))
        return len > 4 && parse_target(s + 4, len - 4, from_host, rd) == MP_OK ? RCL_ASK : RCL_BADREDIRECT;
    if (starts_word(s, len, "TRYAGAIN") || starts_word(s, len, "UNBLOCKED"))
        return RCL_TRYAGAIN;
    if (starts_word(s, len, "CLUSTERDOWN"))
        return RCL_CLUSTERDOWN;
    return RCL_REPLY;
}

/* ---- the client -----------------------------------------------------------------------------------------
 */

struct seeds {
    struct rcl *c;
    int tried, ok;
    char why[512]; /* why the last seed failed */
};

static struct timeval ms_tv(long long ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return tv;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void set_err(struct rcl *c, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(struct rcl *c, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errstr, sizeof(c->errstr), fmt, ap);
    va_end(ap);
    c->err = err;
}

int rcl_init(struct rcl *c, const struct magpie_config *cfg)
{
    memset(c, 0, sizeof(*c));
    c->cfg = cfg;
    if (cfg->redis.cluster == NULL || cfg->redis.cluster[0] == '\0') {
        set_err(c, MP_EINVAL, "redis.cluster is empty");
        return MP_EINVAL;
    }
    c->map = NULL;
    c->scratch = malloc(sizeof(*c->scratch));
    if (c->scratch == NULL)
        return MP_ENOMEM;
    c->refresh_wanted = 1;
    return MP_OK;
}

/* The pool entry of host:port (created, unconnected, when new); NULL when out of memory. */
static struct rcl_conn *conn_entry(struct rcl *c, const char *host, int port)
{
    struct rcl_conn *n;
    for (int i = 0; i < c->nconns; i++)
        if (c->conns[i].port == port && strcmp(c->conns[i].host, host) == 0)
            return &c->conns[i];
    n = realloc(c->conns, sizeof(*n) * (size_t)(c->nconns + 1));
    if (n == NULL)
        return NULL;
    c->conns = n;
    n = &c->conns[c->nconns++];
    memset(n, 0, sizeof(*n));
    snprintf(n->host, sizeof(n->host), "%s", host);
    n->port = port;
    n->backoff_ms = CONN_BACKOFF_MIN_MS;
    return n;
}

static void conn_drop(struct rcl *c, struct rcl_conn *n, const char *why)
{
    char reason[256];
    snprintf(reason, sizeof(reason), "%s", why); /* why may be n->c->errstr */
    if (n->c != NULL) {
        redisFree(n->c);
        n->c = NULL;
    }
    c->stats.conn_errors++;
    if (n->used) {
        c->used_lost = 1;
        n->used = 0;
    }
    if (!n->down) {
        log_warn("redis cluster node down host=%s port=%d reason=\"%s\"", n->host, n->port, reason);
        n->down = 1;
    }
    n->retry_at_ms = mp_mono_ms() + n->backoff_ms;
    n->backoff_ms = n->backoff_ms * 2 > CONN_BACKOFF_MAX_MS ? CONN_BACKOFF_MAX_MS : n->backoff_ms * 2;
}

/* The live connection to host:port, connecting (and AUTH) if needed; NULL with why filled. */
static redisContext *conn_get(struct rcl *c, const char *host, int port, char *why, size_t whylen)
{
    struct rcl_conn *n = conn_entry(c, host, port);
    redisReply *r;

    if (n == NULL) {
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    if (n->c != NULL)
        return n->c;
    if (mp_mono_ms() < n->retry_at_ms) {
        snprintf(why, whylen, "%s:%d: down, next connect in %lld ms", host, port,
                 (long long)(n->retry_at_ms - mp_mono_ms()));
        return NULL;
    }
    n->c = redisConnectWithTimeout(host, port, ms_tv(c->cfg->redis.connect_timeout_ms));
    if (n->c == NULL || n->c->err) {
        snprintf(why, whylen, "%s:%d: %s", host, port, n->c ? n->c->errstr : "out of memory");
        conn_drop(c, n, why);
        return NULL;
    }
    if (redisSetTimeout(n->c, ms_tv(c->cfg->redis.command_timeout_ms)) != REDIS_OK) {
        snprintf(why, whylen, "%s:%d: cannot set the socket timeout", host, port);
        conn_drop(c, n, why);
        return NULL;
    }
    redisEnableKeepAlive(n->c);
    if (c->cfg->redis.password[0] != '\0') {
        r = redisCommand(n->c, "AUTH %s", c->cfg->redis.password);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            snprintf(why, whylen, "%s:%d: AUTH failed: %s", host, port, r ? r->str : n->c->errstr);
            freeReplyObject(r);
            conn_drop(c, n, why);
            return NULL;
        }
        freeReplyObject(r);
    }
    /* named after the program, as rds.c's connections (CLIENT LIST shows which daemon holds it); an error
     * costs only the name */
    r = redisCommand(n->c, "CLIENT SETNAME %s", program_invocation_short_name);
    if (r == NULL) {
        snprintf(why, whylen, "%s:%d: CLIENT SETNAME failed: %s", host, port, n->c->errstr);
        conn_drop(c, n, why);
        return NULL;
    }
    freeReplyObject(r);
    if (n->down) {
        log_info("redis cluster node back host=%s port=%d", host, port);
        n->down = 0;
    }
    n->backoff_ms = CONN_BACKOFF_MIN_MS;
    return n->c;
}

/* Close the connections to nodes that are neither in the map nor among the seeds' first tries. */
static void prune_conns(struct rcl *c)
{
    int j = 0;
    for (int i = 0; i < c->nconns; i++) {
        int keep = 0;
        for (int k = 0; k < c->map->nnodes && !keep; k++)
            keep = c->map->node[k].port == c->conns[i].port &&
                   strcmp(c->map->node[k].host, c->conns[i].host) == 0;
        if (!keep) {
            if (c->conns[i].c != NULL)
                redisFree(c->conns[i].c);
            continue;
        }
        c->conns[j++] = c->conns[i];
    }
    c->nconns = j;
}

/* Do maps a (may be NULL) and b name the same masters in the same order? */
static int same_masters(const struct rcl_map *a, const struct rcl_map *b)
{
    if (a == NULL || a->nnodes != b->nnodes)
        return 0;
    for (int i = 0; i < a->nnodes; i++)
        if (a->node[i].port != b->node[i].port || strcmp(a->node[i].host, b->node[i].host) != 0)
            return 0;
    return 1;
}

/* Ask host:port for CLUSTER SLOTS; MP_OK with the new map in place, else MP_EAGAIN with why. */
static int refresh_from(struct rcl *c, const char *host, int port, char *why, size_t whylen)
{
    char h[RCL_HOST_LEN];
    redisContext *rc;
    redisReply *r;
    struct rcl_map *old;
    int rv;

    snprintf(h, sizeof(h), "%s", host); /* host may live in the map about to be replaced */
    if ((rc = conn_get(c, h, port, why, whylen)) == NULL)
        return MP_EAGAIN;
    r = redisCommand(rc, "CLUSTER SLOTS");
    if (r == NULL) {
        snprintf(why, whylen, "%.200s:%d: %.200s", h, port, rc->errstr[0] ? rc->errstr : "connection lost");
        conn_drop(c, conn_entry(c, h, port), why);
        return MP_EAGAIN;
    }
    rv = rcl_map_parse_slots(c->scratch, r, h, why, whylen);
    freeReplyObject(r);
    if (rv != MP_OK)
        return MP_EAGAIN;
    old = c->map;
    if (!same_masters(old, c->scratch)) {
        int served = 0;
        for (int s = 0; s < RCL_SLOTS; s++)
            served += c->scratch->owner[s] >= 0;
        log_info("redis cluster map masters=%d slots_served=%d from=%s:%d", c->scratch->nnodes, served, h,
                 port);
    }
    c->map = c->scratch;
    c->scratch = old != NULL ? old : malloc(sizeof(*c->scratch));
    if (c->scratch == NULL) { /* keep the new map; the next refresh allocates again */
        snprintf(why, whylen, "out of memory");
    }
    prune_conns(c);
    return MP_OK;
}

static int seed_try(const char *item, size_t len, void *arg)
{
    struct seeds *sd = arg;
    char buf[300], host[RCL_HOST_LEN];
    int port;
    if (len >= sizeof(buf))
        return 0;
    memcpy(buf, item, len);
    buf[len] = '\0';
    if (config_split_addr(buf, host, sizeof(host), &port) != 0)
        return 0;
    sd->tried++;
    if (refresh_from(sd->c, host, port, sd->why, sizeof(sd->why)) == MP_OK) {
        sd->ok = 1;
        return 1; /* stop */
    }
    return 0;
}

int rcl_refresh(struct rcl *c)
{
    char why[512] = "no master known, no seed to ask";
    struct seeds sd = {c, 0, 0, ""};

    if (c->scratch == NULL && (c->scratch = malloc(sizeof(*c->scratch))) == NULL) {
        set_err(c, MP_EAGAIN, "out of memory");
        return MP_EAGAIN;
    }
    c->stats.refreshes++;
    /* The masters it knows first (a seed may be long gone), each once. */
    for (int i = 0; c->map != NULL && i < c->map->nnodes; i++) {
        struct rcl_node n = c->map->node[i];
        if (refresh_from(c, n.host, n.port, why, sizeof(why)) == MP_OK)
            goto done;
    }
    config_list_each(c->cfg->redis.cluster, seed_try, &sd);
    if (sd.ok)
        goto done;
    c->stats.refresh_failures++;
    set_err(c, MP_EAGAIN, "no cluster node gave a slot map (last: %s)", sd.tried ? sd.why : why);
    if (!c->map_down) { /* once per outage: every failed try of every command refreshes */
        log_warn("redis cluster map refresh failed reason=\"%s\"", c->errstr);
        c->map_down = 1;
    }
    return MP_EAGAIN;
done:
    if (c->map_down) {
        log_info("redis cluster map refreshed again after failures");
        c->map_down = 0;
    }
    c->refresh_wanted = 0;
    c->refreshed_at_ms = mp_mono_ms();
    return MP_OK;
}

/* Split a command hiredis formatted ("*N\r\n" then N times "$L\r\n" L bytes "\r\n") into argv pointing
 * into it. Returns argc, or -1. *argv and *argvlen are malloc'ed (caller frees). */
static int split_formatted(const char *cmd, size_t len, const char ***argv, size_t **argvlen)
{
    const char *p = cmd, *end = cmd + len;
    char *e;
    long n;

    if (len < 4 || *p != '*')
        return -1;
    n = strtol(p + 1, &e, 10);
    if (n < 1 || n > 1024 * 1024 || e + 2 > end || e[0] != '\r')
        return -1;
    p = e + 2;
    *argv = malloc(sizeof(**argv) * (size_t)n);
    *argvlen = malloc(sizeof(**argvlen) * (size_t)n);
    if (*argv == NULL || *argvlen == NULL)
        goto bad;
    for (long i = 0; i < n; i++) {
        long l;
        if (p >= end || *p != '$')
            goto bad;
        l = strtol(p + 1, &e, 10);
        if (l < 0 || e + 2 > end || (size_t)(end - (e + 2)) < (size_t)l + 2)
            goto bad;
        (*argv)[i] = e + 2;
        (*argvlen)[i] = (size_t)l;
        p = e + 2 + l + 2;
    }
    return (int)n;
bad:
    free(*argv);
    free(*argvlen);
    *argv = NULL;
    *argvlen = NULL;
    return -1;
}

/* One try on host:port: the reply, or NULL after dropping the connection (why filled). */
static redisReply *try_once(struct rcl *c, const char *host, int port, int asking, const char *cmd,
                            size_t len, char *why, size_t whylen)
{
    redisContext *rc = conn_get(c, host, port, why, whylen);
    void *r = NULL;

    if (rc == NULL)
        return NULL;
    if ((asking && redisAppendCommand(rc, "ASKING") != REDIS_OK) ||
        redisAppendFormattedCommand(rc, cmd, len) != REDIS_OK)
        goto lost;
    if (asking) {
        if (redisGetReply(rc, &r) != REDIS_OK)
            goto lost;
        freeReplyObject(r); /* +OK; an error here shows again as the command's own answer */
        r = NULL;
    }
    if (redisGetReply(rc, &r) != REDIS_OK)
        goto lost;
    snprintf(c->last_host, sizeof(c->last_host), "%s", host);
    c->last_port = port;
    conn_entry(c, host, port)->used = 1; /* exists: conn_get made it */
    return r;
lost:
    snprintf(why, whylen, "%s:%d: %s", host, port, rc->errstr[0] ? rc->errstr : "connection lost");
    conn_drop(c, conn_entry(c, host, port), why);
    return NULL;
}

/* Where the next try goes: the redirect's target when there is one, else the map's master of slot (any
 * master for -1). 0 with host/port, or -1 with why filled. */
static int pick(struct rcl *c, int slot, const struct rcl_redirect *to, char *host, int *port, char *why,
                size_t whylen)
{
    const struct rcl_node *n = NULL;
    if (to != NULL) {
        snprintf(host, RCL_HOST_LEN, "%s", to->host);
        *port = to->port;
        return 0;
    }
    if (c->map == NULL) {
        snprintf(why, whylen, "no slot map: %.400s", c->errstr);
        return -1;
    }
    if (slot >= 0)
        n = rcl_map_owner(c->map, slot);
    else if (c->map->nnodes > 0)
        n = &c->map->node[c->any_next++ % (unsigned)c->map->nnodes];
    if (n == NULL) {
        snprintf(why, whylen, "no master serves slot %d", slot);
        return -1;
    }
    snprintf(host, RCL_HOST_LEN, "%s", n->host);
    *port = n->port;
    return 0;
}

/* The command (formatted, with its slot) through the cluster: see rcluster.h. */
static redisReply *run(struct rcl *c, const char *cmd, size_t len, int slot)
{
    int64_t deadline = mp_mono_ms() + c->cfg->redis.cluster_retry_ms;
    int backoff = RCL_BACKOFF_MIN_MS, redirects = 0;
    enum rcl_kind last = RCL_REPLY; /* RCL_MOVED / RCL_ASK: the next try goes to rd */
    struct rcl_redirect rd = {0, "", 0};
    char why[512] = "";

    c->stats.commands++;
    if (c->map == NULL || (c->refresh_wanted && mp_mono_ms() - c->refreshed_at_ms >= RCL_REFRESH_MIN_MS))
        rcl_refresh(c); /* on failure: no map is a failed try below; an old map is used as it is */
    for (;;) {
        char host[RCL_HOST_LEN];
        int port;
        redisReply *r = NULL;
        enum rcl_kind k;

        if (pick(c, slot, last == RCL_REPLY ? NULL : &rd, host, &port, why, sizeof(why)) == 0 &&
            (r = try_once(c, host, port, last == RCL_ASK, cmd, len, why, sizeof(why))) != NULL) {
            last = RCL_REPLY;
            switch (k = rcl_classify(r, host, &rd)) {
            case RCL_REPLY:
                return r;
            case RCL_MOVED:
            case RCL_ASK:
                if (k == RCL_MOVED) {
                    c->stats.moved++;
                    if (c->map != NULL)
                        rcl_map_set_owner(c->map, rd.slot, rd.host, rd.port); /* a full map: rd still leads */
                    c->refresh_wanted = 1;
                } else {
                    c->stats.ask++;
                }
                log_debug("redis cluster %s slot=%d from=%s:%d to=%s:%d", k == RCL_MOVED ? "MOVED" : "ASK",
                          rd.slot, host, port, rd.host, rd.port);
                freeReplyObject(r);
                if (++redirects > RCL_MAX_REDIRECTS) {
                    c->refresh_wanted = 1;
                    set_err(c, MP_EAGAIN, "more than %d MOVED/ASK redirects for slot %d", RCL_MAX_REDIRECTS,
                            slot);
                    return NULL;
                }
                last = k;
                continue;
            case RCL_BADREDIRECT:
                c->refresh_wanted = 1;
                set_err(c, MP_EAGAIN, "%s:%d answered a redirect that does not parse: %.200s", host, port,
                        r->str);
                log_warn("redis cluster bad redirect host=%s port=%d reply=\"%.200s\"", host, port, r->str);
                freeReplyObject(r);
                return NULL;
            case RCL_TRYAGAIN:
            case RCL_CLUSTERDOWN:
                if (k == RCL_TRYAGAIN)
                    c->stats.tryagain++;
                else
                    c->stats.clusterdown++;
                snprintf(why, sizeof(why), "%s:%d: %.200s", host, port, r->str);
                freeReplyObject(r);
                break;
            }
        }
        /* a failed try: again after a backoff and a refresh, within the budget */
        last = RCL_REPLY;
        if (mp_mono_ms() + backoff > deadline) {
            set_err(c, MP_EAGAIN, "the cluster did not serve slot %d within %lld ms (last: %s)", slot,
                    c->cfg->redis.cluster_retry_ms, why);
            return NULL;
        }
        sleep_ms(backoff);
        backoff = backoff * 2 > RCL_BACKOFF_MAX_MS ? RCL_BACKOFF_MAX_MS : backoff * 2;
        rcl_refresh(c);
    }
}

/* Route and run a formatted command. */
static redisReply *run_formatted(struct rcl *c, const char *cmd, size_t len)
{
    const char **argv = NULL;
    size_t *argvlen = NULL;
    char why[256];
    int argc = split_formatted(cmd, len, &argv, &argvlen), slot, rv;

    if (argc < 0) {
        set_err(c, MP_EINVAL, "cannot parse the formatted command");
        return NULL;
    }
    rv = rcl_command_slot(argc, argv, argvlen, &slot, why, sizeof(why));
    free(argv);
    free(argvlen);
    if (rv != MP_OK) {
        c->stats.refused++;
        set_err(c, MP_EINVAL, "%s", why);
        return NULL;
    }
    return run(c, cmd, len, slot);
}

redisReply *rcl_cmd(struct rcl *c, const char *fmt, ...)
{
    va_list ap;
    redisReply *r;
    va_start(ap, fmt);
    r = rcl_vcmd(c, fmt, ap);
    va_end(ap);
    return r;
}

redisReply *rcl_vcmd(struct rcl *c, const char *fmt, va_list ap)
{
    char *cmd = NULL;
    int len;
    redisReply *r;

    len = redisvFormatCommand(&cmd, fmt, ap);
    if (len < 0) {
        set_err(c, MP_EINVAL, "cannot format the command");
        return NULL;
    }
    r = run_formatted(c, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return r;
}

redisReply *rcl_cmdargv(struct rcl *c, int argc, const char **argv, const size_t *argvlen)
{
    char *cmd = NULL;
    int len, slot;
    char why[256];
    redisReply *r;

    if (argvlen == NULL) { /* as hiredis: NUL-terminated arguments */
        size_t *lens = malloc(sizeof(*lens) * (size_t)(argc > 0 ? argc : 1));
        if (lens == NULL) {
            set_err(c, MP_EAGAIN, "out of memory");
            return NULL;
        }
        for (int i = 0; i < argc; i++)
            lens[i] = strlen(argv[i]);
        r = rcl_cmdargv(c, argc, argv, lens);
        free(lens);
        return r;
    }
    if (rcl_command_slot(argc, argv, argvlen, &slot, why, sizeof(why)) != MP_OK) {
        c->stats.refused++;
        set_err(c, MP_EINVAL, "%s", why);
        return NULL;
    }
    len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0) {
        set_err(c, MP_EINVAL, "cannot format the command");
        return NULL;
    }
    r = run(c, cmd, (size_t)len, slot);
    redisFreeCommand(cmd);
    return r;
}

/* The slot of a formatted command: MP_OK, or MP_EINVAL with c->err set (counted as refused). */
static int formatted_slot(struct rcl *c, const char *cmd, size_t len, int *slot)
{
    const char **argv = NULL;
    size_t *argvlen = NULL;
    char why[256];
    int argc = split_formatted(cmd, len, &argv, &argvlen), rv;

    if (argc < 0) {
        set_err(c, MP_EINVAL, "cannot parse the formatted command");
        return MP_EINVAL;
    }
    rv = rcl_command_slot(argc, argv, argvlen, slot, why, sizeof(why));
    free(argv);
    free(argvlen);
    if (rv != MP_OK) {
        c->stats.refused++;
        set_err(c, MP_EINVAL, "%s", why);
        return MP_EINVAL;
    }
    return MP_OK;
}

int rcl_pipeline(struct rcl *c, int n, char *const *cmds, const size_t *lens, redisReply **out)
{
    int *slot = malloc(sizeof(*slot) * (size_t)(n > 0 ? n : 1));
    int *node = malloc(sizeof(*node) * (size_t)(n > 0 ? n : 1)); /* index into the snapshot, -1: retry */
    struct rcl_node *nodes = NULL;
    int nnodes = 0, failed = 0;
    char why[512];

    for (int i = 0; i < n; i++)
        out[i] = NULL;
    if (slot == NULL || node == NULL) {
        free(slot);
        free(node);
        set_err(c, MP_EAGAIN, "out of memory");
        return n;
    }
    if (c->map == NULL || (c->refresh_wanted && mp_mono_ms() - c->refreshed_at_ms >= RCL_REFRESH_MIN_MS))
        rcl_refresh(c);
    if (c->map != NULL && (nodes = malloc(sizeof(*nodes) * (size_t)(c->map->nnodes + 1))) != NULL) {
        nnodes = c->map->nnodes; /* a snapshot: a MOVED read below changes the map */
        memcpy(nodes, c->map->node, sizeof(*nodes) * (size_t)nnodes);
    }
    for (int i = 0; i < n; i++) {
        const struct rcl_node *o;
        node[i] = -1;
        if (formatted_slot(c, cmds[i], lens[i], &slot[i]) != MP_OK) {
            slot[i] = -2; /* refused: no try */
            continue;
        }
        if (nodes == NULL)
            continue;
        if (slot[i] < 0)
            node[i] = (int)(c->any_next++ % (unsigned)nnodes);
        else if ((o = rcl_map_owner(c->map, slot[i])) != NULL)
            node[i] = (int)(o - c->map->node);
    }
    /* Write each master's share, then read each master's replies in turn. */
    for (int k = 0; k < nnodes; k++) {
        redisContext *rc = conn_get(c, nodes[k].host, nodes[k].port, why, sizeof(why));
        for (int i = 0; i < n; i++)
            if (node[i] == k && (rc == NULL || redisAppendFormattedCommand(rc, cmds[i], lens[i]) != REDIS_OK))
                node[i] = -1;
    }
    for (int k = 0; k < nnodes; k++) {
        struct rcl_conn *cn = conn_entry(c, nodes[k].host, nodes[k].port);
        int lost = 0;
        for (int i = 0; i < n; i++) {
            void *r = NULL;
            struct rcl_redirect rd;
            enum rcl_kind kind;
            if (node[i] != k)
                continue;
            if (lost || cn == NULL || cn->c == NULL || redisGetReply(cn->c, &r) != REDIS_OK) {
                if (!lost && cn != NULL && cn->c != NULL) {
                    snprintf(why, sizeof(why), "%s:%d: %s", cn->host, cn->port,
                             cn->c->errstr[0] ? cn->c->errstr : "connection lost");
                    conn_drop(c, cn, why);
                }
                lost = 1;
                node[i] = -1;
                continue;
            }
            c->stats.commands++;
            kind = rcl_classify(r, nodes[k].host, &rd);
            if (kind == RCL_REPLY) {
                out[i] = r;
                snprintf(c->last_host, sizeof(c->last_host), "%s", nodes[k].host);
                c->last_port = nodes[k].port;
                cn->used = 1;
                continue;
            }
            if (kind == RCL_MOVED) {
                c->stats.moved++;
                rcl_map_set_owner(c->map, rd.slot, rd.host, rd.port);
            }
            if (kind == RCL_MOVED || kind == RCL_BADREDIRECT)
                c->refresh_wanted = 1;
            freeReplyObject(r);
            node[i] = -1; /* run again below, alone */
        }
    }
    /* The retries, each with rcl_cmd's budget; once one found the cluster not serving, the rest fail at
     * once (a dead master must cost one budget per batch, not one per command). */
    for (int i = 0, gave_up = 0; i < n; i++) {
        if (out[i] == NULL && slot[i] != -2 && !gave_up)
            gave_up = (out[i] = run(c, cmds[i], lens[i], slot[i])) == NULL;
        failed += out[i] == NULL;
    }
    free(nodes);
    free(slot);
    free(node);
    return failed;
}

int rcl_wait(struct rcl *c, int numreplicas, int timeout_ms, long long *acked)
{
    int rc = MP_OK, any = 0;

    *acked = -1;
    if (c->used_lost) {
        c->used_lost = 0;
        set_err(c, MP_EAGAIN, "a connection that carried the writes is gone");
        rc = MP_EAGAIN;
    }
    for (int i = 0; i < c->nconns; i++) {
        struct rcl_conn *n = &c->conns[i];
        redisReply *r;
        if (!n->used)
            continue;
        n->used = 0;
        if (rc != MP_OK || n->c == NULL)
            continue; /* (a dropped one set used_lost) */
        r = redisCommand(n->c, "WAIT %d %d", numreplicas, timeout_ms);
        if (r == NULL) {
            char why[512];
            snprintf(why, sizeof(why), "%s:%d: %s", n->host, n->port,
                     n->c->errstr[0] ? n->c->errstr : "lost");
            conn_drop(c, n, why);
            c->used_lost = 0; /* this call fails now; the next set starts clean */
            set_err(c, MP_EAGAIN, "WAIT: %s", why);
            rc = MP_EAGAIN;
            continue;
        }
        if (r->type != REDIS_REPLY_INTEGER) {
            set_err(c, MP_EAGAIN, "WAIT on %s:%d: %s", n->host, n->port,
                    r->type == REDIS_REPLY_ERROR ? r->str : "not an integer");
            rc = MP_EAGAIN;
        } else if (!any || r->integer < *acked) {
            *acked = r->integer;
            any = 1;
        }
        freeReplyObject(r);
    }
    if (rc == MP_OK && !any) {
        set_err(c, MP_EAGAIN, "no connection carried a write since the last WAIT");
        rc = MP_EAGAIN;
    }
    return rc;
}

int rcl_masters(struct rcl *c, struct rcl_node *out, int max)
{
    int n;
    if (c->map == NULL || (c->refresh_wanted && mp_mono_ms() - c->refreshed_at_ms >= RCL_REFRESH_MIN_MS))
        rcl_refresh(c);
    if (c->map == NULL)
        return -1;
    n = c->map->nnodes < max ? c->map->nnodes : max;
    memcpy(out, c->map->node, sizeof(*out) * (size_t)n);
    return n;
}

redisReply *rcl_cmd_at(struct rcl *c, const char *host, int port, const char *fmt, ...)
{
    va_list ap;
    char *cmd = NULL, why[512];
    int len;
    redisReply *r;

    va_start(ap, fmt);
    len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0) {
        set_err(c, MP_EINVAL, "cannot format the command");
        return NULL;
    }
    c->stats.commands++;
    r = try_once(c, host, port, 0, cmd, (size_t)len, why, sizeof(why));
    if (r == NULL)
        set_err(c, MP_EAGAIN, "%s", why);
    redisFreeCommand(cmd);
    return r;
}

void rcl_close(struct rcl *c)
{
    for (int i = 0; i < c->nconns; i++)
        if (c->conns[i].c != NULL)
            redisFree(c->conns[i].c);
    free(c->conns);
    free(c->map);
    free(c->scratch);
    c->conns = NULL;
    c->nconns = 0;
    c->map = NULL;
    c->scratch = NULL;
}
