/* persist_stream.c -- see persist_stream.h. */
#include "persist_stream.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XSTR(x) #x
#define STR(x)  XSTR(x)

/* The stream this process works on (persist_stream_bind); magpie-persist's chat stream unless bound. */
static struct {
    const char *key, *group, *dead, *dead_maxlen;
} bound = {KEY_MQ, MQ_GROUP, KEY_MQ_DEAD, STR(MQ_DEAD_MAXLEN)};

void persist_stream_bind(const char *key, const char *group, const char *dead, const char *dead_maxlen)
{
    bound.key = key;
    bound.group = group;
    bound.dead = dead;
    bound.dead_maxlen = dead_maxlen;
}

/* MP_OK when reply is usable; otherwise frees it and says what went wrong. */
static int check(redisReply *reply, const char *what)
{
    if (reply == NULL)
        return MP_EAGAIN;
    if (reply->type != REDIS_REPLY_ERROR)
        return MP_OK;
    if (strncmp(reply->str, "NOGROUP", 7) == 0 || strstr(reply->str, "no such key") != NULL) {
        freeReplyObject(reply);
        return MP_ENOENT;
    }
    if (strncmp(reply->str, "LOADING", 7) == 0) { /* a restarted Redis reading its AOF: not up yet */
        log_debug("redis is loading its data cmd=%s", what);
        freeReplyObject(reply);
        return MP_EAGAIN;
    }
    log_error("redis refused a command cmd=%s error=\"%s\"", what, reply->str);
    freeReplyObject(reply);
    return MP_ERR;
}

static int is_str(const redisReply *r)
{
    return r != NULL && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

/* The value of field name in a RESP2 "map" (an array of name, value, name, value ...); NULL if absent. */
static const redisReply *map_get(const redisReply *map, const char *name)
{
    if (map == NULL || map->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < map->elements; i += 2)
        if (is_str(map->element[i]) && strcmp(map->element[i]->str, name) == 0)
            return map->element[i + 1];
    return NULL;
}

static long long map_int(const redisReply *map, const char *name)
{
    const redisReply *v = map_get(map, name);
    if (v == NULL)
        return 0;
    if (v->type == REDIS_REPLY_INTEGER)
        return v->integer;
    return is_str(v) ? strtoll(v->str, NULL, 10) : 0;
}

void persist_read_free(struct persist_read *rd)
{
    if (rd->reply != NULL)
        freeReplyObject(rd->reply);
    memset(rd, 0, sizeof(*rd));
}

/* Check that entries is an array of [id, fields-or-nil] and point rd at it. */
static int take_entries(struct persist_read *rd, redisReply *entries)
{
    if (entries == NULL || entries->type != REDIS_REPLY_ARRAY)
        return MP_ERR;
    for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements != 2 || !is_str(e->element[0]) ||
            e->element[0]->len >= PERSIST_SID_MAX ||
            (e->element[1]->type != REDIS_REPLY_ARRAY && e->element[1]->type != REDIS_REPLY_NIL))
            return MP_ERR;
        if (e->element[1]->type == REDIS_REPLY_ARRAY)
            for (size_t k = 0; k < e->element[1]->elements; k++)
                if (!is_str(e->element[1]->element[k]))
                    return MP_ERR;
    }
    rd->entries = entries->element;
    rd->n = entries->elements;
    return MP_OK;
}

int persist_stream_create_group(struct rds *r, int *created)
{
    redisReply *reply = rds_cmd(r, "XGROUP CREATE %s %s 0 MKSTREAM", bound.key, bound.group);
    *created = 0;
    if (reply == NULL)
        return MP_EAGAIN;
    if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "BUSYGROUP", 9) == 0) {
        freeReplyObject(reply);
        return MP_OK;
    }
    if (check(reply, "XGROUP CREATE") != MP_OK)
        return MP_ERR;
    *created = 1;
    freeReplyObject(reply);
    return MP_OK;
}

int persist_stream_read(struct rds *r, const char *consumer, const char *id, long long count,
                        long long block_ms, struct persist_read *rd)
{
    redisReply *reply;
    int rc;

    memset(rd, 0, sizeof(*rd));
    if (strcmp(id, ">") == 0)
        reply = rds_cmd(r, "XREADGROUP GROUP %s %s COUNT %lld BLOCK %lld STREAMS %s >", bound.group, consumer,
                        count, block_ms, bound.key);
    else
        reply = rds_cmd(r, "XREADGROUP GROUP %s %s COUNT %lld STREAMS %s %s", bound.group, consumer, count,
                        bound.key, id);
    if ((rc = check(reply, "XREADGROUP")) != MP_OK)
        return rc;
    rd->reply = reply;
    if (reply->type == REDIS_REPLY_NIL)
        return MP_OK; /* BLOCK timed out: nothing new */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 1 ||
        reply->element[0]->type != REDIS_REPLY_ARRAY || reply->element[0]->elements != 2 ||
        take_entries(rd, reply->element[0]->element[1]) != MP_OK) {
        log_error("unexpected XREADGROUP reply type=%d", reply->type);
        persist_read_free(rd);
        return MP_ERR;
    }
    return MP_OK;
}

int persist_stream_claim(struct rds *r, const char *consumer, long long min_idle_ms, const char *cursor,
                         long long count, struct persist_read *rd)
{
    redisReply *reply;
    int rc;

    memset(rd, 0, sizeof(*rd));
    reply = rds_cmd(r, "XAUTOCLAIM %s %s %s %lld %s COUNT %lld", bound.key, bound.group, consumer,
                    min_idle_ms, cursor, count);
    if ((rc = check(reply, "XAUTOCLAIM")) != MP_OK)
        return rc;
    rd->reply = reply;
    /* Redis 7: [next cursor, entries, ids of deleted entries] */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 || !is_str(reply->element[0]) ||
        reply->element[0]->len >= PERSIST_SID_MAX || take_entries(rd, reply->element[1]) != MP_OK) {
        log_error("unexpected XAUTOCLAIM reply type=%d", reply->type);
        persist_read_free(rd);
        return MP_ERR;
    }
    memcpy(rd->cursor, reply->element[0]->str, reply->element[0]->len + 1);
    if (reply->elements >= 3 && reply->element[2]->type == REDIS_REPLY_ARRAY)
        rd->deleted = reply->element[2]->elements;
    return MP_OK;
}

int persist_stream_ack(struct rds *r, const char *const *ids, size_t n)
{
    const char **argv;
    size_t *lens;
    redisReply *reply;
    int rc;

    if (n == 0)
        return MP_OK;
    argv = malloc((n + 3) * sizeof(*argv));
    lens = malloc((n + 3) * sizeof(*lens));
    if (argv == NULL || lens == NULL) {
        free(argv);
        free(lens);
        return MP_ENOMEM;
    }
    argv[0] = "XACK";
    argv[1] = bound.key;
    argv[2] = bound.group;
    for (size_t i = 0; i < n; i++)
        argv[i + 3] = ids[i];
    for (size_t i = 0; i < n + 3; i++)
        lens[i] = strlen(argv[i]);
    reply = rds_cmdargv(r, (int)(n + 3), argv, lens);
    free(argv);
    free(lens);
    if ((rc = check(reply, "XACK")) != MP_OK)
        return rc;
    freeReplyObject(reply);
    return MP_OK;
}

int persist_stream_fence(struct rds *r, const char *consumer, const struct persist_read *rd)
{
    const char *id = NULL;
    redisReply *reply;
    int rc;

    for (size_t i = rd->n; i-- > 0 && id == NULL;)
        if (rd->entries[i]->element[1]->type == REDIS_REPLY_ARRAY)
            id = rd->entries[i]->element[0]->str;
    if (id == NULL)
        return MP_OK; /* only deleted entries: nothing to store */
    reply = rds_cmd(r, "XCLAIM %s %s %s 0 %s JUSTID", bound.key, bound.group, consumer, id);
    if ((rc = check(reply, "XCLAIM")) != MP_OK)
        return rc;
    freeReplyObject(reply);
    return MP_OK;
}

int persist_stream_deliveries(struct rds *r, const char *id, long long *count)
{
    redisReply *reply = rds_cmd(r, "XPENDING %s %s %s %s 1", bound.key, bound.group, id, id);
    int rc;
    *count = 0;
    if ((rc = check(reply, "XPENDING")) != MP_OK)
        return rc;
    /* [[id, consumer, idle ms, deliveries]] or [] */
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
        reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements == 4 &&
        reply->element[0]->element[3]->type == REDIS_REPLY_INTEGER)
        *count = reply->element[0]->element[3]->integer;
    freeReplyObject(reply);
    return MP_OK;
}

int persist_stream_dead_letter(struct rds *r, const char *id, const redisReply *fields, const char *reason)
{
    enum { HEAD = 10 };
    size_t nf = fields != NULL && fields->type == REDIS_REPLY_ARRAY ? fields->elements : 0;
    const char **argv = malloc((HEAD + nf) * sizeof(*argv));
    size_t *lens = malloc((HEAD + nf) * sizeof(*lens));
    redisContext *c;
    redisReply *replies[4] = {NULL, NULL, NULL, NULL};
    int rc = MP_OK, argc = 0;

    if (argv == NULL || lens == NULL) {
        free(argv);
        free(lens);
        return MP_ENOMEM;
    }
    argv[argc++] = "XADD";
    argv[argc++] = bound.dead;
    argv[argc++] = "MAXLEN";
    argv[argc++] = "~";
    argv[argc++] = bound.dead_maxlen;
    argv[argc++] = "*";
    argv[argc++] = MQ_F_DEAD_REASON;
    argv[argc++] = reason;
    argv[argc++] = MQ_F_DEAD_ID;
    argv[argc++] = id;
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    for (size_t i = 0; i < nf; i++, argc++) {
        argv[argc] = fields->element[i]->str;
        lens[argc] = fields->element[i]->len;
    }
    c = rds_conn(r);
    if (c == NULL) {
        free(argv);
        free(lens);
        return MP_EAGAIN;
    }
    redisAppendCommand(c, "MULTI");
    redisAppendCommandArgv(c, argc, argv, lens);
    redisAppendCommand(c, "XACK %s %s %s", bound.key, bound.group, id);
    redisAppendCommand(c, "EXEC");
    free(argv);
    free(lens);
    for (int i = 0; i < 4; i++)
        replies[i] = rds_reply(r);
    for (int i = 0; i < 4; i++)
        if (replies[i] == NULL)
            rc = MP_EAGAIN;
    if (rc == MP_OK) {
        const redisReply *exec = replies[3];
        if (exec->type != REDIS_REPLY_ARRAY || exec->elements != 2 ||
            exec->element[0]->type == REDIS_REPLY_ERROR || exec->element[1]->type == REDIS_REPLY_ERROR) {
            log_error("redis refused the dead letter id=%s error=\"%s\"", id,
                      exec->type == REDIS_REPLY_ERROR ? exec->str : "transaction failed");
            rc = MP_ERR;
        }
    }
    for (int i = 0; i < 4; i++)
        if (replies[i] != NULL)
            freeReplyObject(replies[i]);
    return rc;
}

int persist_stream_forget_consumers(struct rds *r, const char *self, long long idle_ms, int *removed)
{
    redisReply *reply = rds_cmd(r, "XINFO CONSUMERS %s %s", bound.key, bound.group);
    int rc;

    *removed = 0;
    if ((rc = check(reply, "XINFO CONSUMERS")) != MP_OK)
        return rc;
    if (reply->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(reply);
        return MP_ERR;
    }
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *cons = reply->element[i];
        const redisReply *name = map_get(cons, "name");
        long long pending = map_int(cons, "pending"), idle = map_int(cons, "idle");
        redisReply *del;
        if (!is_str(name) || strcmp(name->str, self) == 0 || pending != 0 || idle <= idle_ms)
            continue;
        del = rds_cmd(r, "XGROUP DELCONSUMER %s %s %s", bound.key, bound.group, name->str);
        if ((rc = check(del, "XGROUP DELCONSUMER")) != MP_OK) {
            freeReplyObject(reply);
            return rc;
        }
        /* A consumer that got an entry since XINFO would have it taken from its PEL: check the reply. */
        if (del->type == REDIS_REPLY_INTEGER && del->integer > 0)
            log_warn("removed a consumer that had just read entries consumer=%s entries=%lld", name->str,
                     del->integer);
        log_info("removed a gone consumer consumer=%s idle_ms=%lld", name->str, idle);
        freeReplyObject(del);
        (*removed)++;
    }
    freeReplyObject(reply);
    return MP_OK;
}

/* The floor of one group: its oldest pending entry, else the id after the last one it was given. */
static int group_floor(struct rds *r, const redisReply *group, struct persist_sid *floor, long long *pending)
{
    const redisReply *name = map_get(group, "name"), *last = map_get(group, "last-delivered-id");
    redisReply *reply;
    int rc;

    *pending = map_int(group, "pending");
    if (!is_str(name) || !is_str(last) || persist_sid_parse(floor, last->str, last->len) != MP_OK)
        return MP_ERR;
    if (*pending == 0) {
        persist_sid_next(floor);
        return MP_OK;
    }
    reply = rds_cmd(r, "XPENDING %s %s", bound.key, name->str);
    if ((rc = check(reply, "XPENDING")) != MP_OK)
        return rc;
    /* [count, smallest id, greatest id, [[consumer, count] ...]]; the smallest is nil when all were acked
     * since XINFO GROUPS: then the floor after the last delivered entry is right. */
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 4 && is_str(reply->element[1]))
        rc = persist_sid_parse(floor, reply->element[1]->str, reply->element[1]->len);
    else
        persist_sid_next(floor);
    freeReplyObject(reply);
    return rc;
}

/* Age in ms of the first entry at or after floor (0 when there is none). */
static int floor_age(struct rds *r, const struct persist_sid *floor, int64_t *age)
{
    char id[PERSIST_SID_MAX];
    redisReply *reply;
    struct persist_sid first;
    int64_t now_ms;
    int rc;

    *age = 0;
    persist_sid_format(floor, id, sizeof(id));
    reply = rds_cmd(r, "XRANGE %s %s + COUNT 1", bound.key, id);
    if ((rc = check(reply, "XRANGE")) != MP_OK)
        return rc;
    rc = MP_OK;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
        reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements == 2 &&
        is_str(reply->element[0]->element[0]) &&
        persist_sid_parse(&first, reply->element[0]->element[0]->str, reply->element[0]->element[0]->len) ==
            MP_OK) {
        redisReply *t = rds_cmd(r, "TIME");
        if ((rc = check(t, "TIME")) == MP_OK) {
            if (t->type == REDIS_REPLY_ARRAY && t->elements == 2 && is_str(t->element[0]) &&
                is_str(t->element[1])) {
                now_ms = strtoll(t->element[0]->str, NULL, 10) * 1000 +
                         strtoll(t->element[1]->str, NULL, 10) / 1000;
                *age = now_ms > (int64_t)first.ms ? now_ms - (int64_t)first.ms : 0;
            }
            freeReplyObject(t);
        }
    }
    freeReplyObject(reply);
    return rc;
}

int persist_stream_state(struct rds *r, struct persist_stream_state *st)
{
    redisReply *groups, *len;
    int rc;

    memset(st, 0, sizeof(*st));
    groups = rds_cmd(r, "XINFO GROUPS %s", bound.key);
    rc = check(groups, "XINFO GROUPS");
    if (rc == MP_ENOENT)
        return MP_OK; /* no stream: nothing to trim, no lag */
    if (rc != MP_OK)
        return rc;
    if (groups->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(groups);
        return MP_ERR;
    }
    st->groups = (long long)groups->elements;
    for (size_t i = 0; i < groups->elements; i++) {
        const redisReply *name = map_get(groups->element[i], "name");
        struct persist_sid floor;
        long long pending;
        if ((rc = group_floor(r, groups->element[i], &floor, &pending)) != MP_OK) {
            freeReplyObject(groups);
            return rc == MP_ENOENT ? MP_OK : rc; /* a group deleted meanwhile: try again next time */
        }
        if (!st->have_all_floor || persist_sid_cmp(&floor, &st->all_floor) < 0)
            st->all_floor = floor;
        st->have_all_floor = 1;
        if (strcmp(name->str, bound.group) == 0) {
            st->own_floor = floor;
            st->have_own_floor = 1;
            st->pending = pending;
        }
    }
    freeReplyObject(groups);
    len = rds_cmd(r, "XLEN %s", bound.key);
    if ((rc = check(len, "XLEN")) != MP_OK)
        return rc;
    st->length = len->type == REDIS_REPLY_INTEGER ? len->integer : 0;
    freeReplyObject(len);
    if (st->have_own_floor)
        return floor_age(r, &st->own_floor, &st->lag_ms);
    return MP_OK;
}

static int trim_to(struct rds *r, const struct persist_sid *floor, long long *trimmed)
{
    char id[PERSIST_SID_MAX];
    redisReply *reply;
    int rc;

    persist_sid_format(floor, id, sizeof(id));
    reply = rds_cmd(r, "XTRIM %s MINID %s", bound.key, id);
    if ((rc = check(reply, "XTRIM")) != MP_OK)
        return rc;
    if (reply->type == REDIS_REPLY_INTEGER)
        *trimmed += reply->integer;
    freeReplyObject(reply);
    return MP_OK;
}

int persist_stream_trim(struct rds *r, const struct persist_stream_state *st, long long maxlen,
                        long long *trimmed)
{
    int rc;
    *trimmed = 0;
    if (!st->have_all_floor)
        return MP_OK;
    if ((rc = trim_to(r, &st->all_floor, trimmed)) != MP_OK)
        return rc;
    if (st->have_own_floor && st->length - *trimmed > maxlen &&
        persist_sid_cmp(&st->own_floor, &st->all_floor) > 0)
        return trim_to(r, &st->own_floor, trimmed);
    return MP_OK;
}
