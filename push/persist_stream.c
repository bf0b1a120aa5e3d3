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

/* The streams this process works on (persist_stream_bind): one per shard (keys.h), magpie-persist's chat
 * streams unless bound. key and dead are the KEY_SHARDED names (KEY_MQ_NAME...). */
static struct {
    const char *key, *group, *dead, *dead_maxlen;
} bound = {KEY_MQ_NAME, MQ_GROUP, KEY_MQ_DEAD_NAME, STR(MQ_DEAD_MAXLEN)};

void persist_stream_bind(const char *key, const char *group, const char *dead, const char *dead_maxlen)
{
    bound.key = key;
    bound.group = group;
    bound.dead = dead;
    bound.dead_maxlen = dead_maxlen;
}

/* ---- shards (persist_stream.h: entry ids "<id>@<shard>" when there are several) ---- */

#define KEY_BUF 64

static int multi(void)
{
    return key_shards() > 1;
}

static const char *stream_key(int shard, char *buf)
{
    snprintf(buf, KEY_BUF, KEY_SHARDED("%s"), shard, bound.key);
    return buf;
}

void persist_stream_describe(char *buf, size_t len)
{
    char first[KEY_BUF];
    if (multi())
        snprintf(buf, len, "%s (and the other %d shards' streams)", stream_key(0, first), key_shards() - 1);
    else
        snprintf(buf, len, "%s", stream_key(0, first));
}

/* Split an id as handed out into the stream's own id (raw, PERSIST_SID_MAX bytes) and its shard. An id
 * without "@" is shard 0's. MP_EINVAL when the shard is not one of ours or the id is too long. */
static int split_id(const char *id, char *raw, int *shard)
{
    const char *at = strchr(id, '@');
    size_t n = at ? (size_t)(at - id) : strlen(id);
    char *end;
    long v = 0;

    if (at != NULL &&
        ((v = strtol(at + 1, &end, 10)) < 0 || v >= key_shards() || *end != '\0' || end == at + 1))
        return MP_EINVAL;
    if (n >= PERSIST_SID_MAX)
        return MP_EINVAL;
    memcpy(raw, id, n);
    raw[n] = '\0';
    *shard = (int)v;
    return MP_OK;
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
    free(rd->own);
    memset(rd, 0, sizeof(*rd));
}

/* Check that entries is an array of [id, fields-or-nil]. */
static int check_entries(const redisReply *entries)
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
    return MP_OK;
}

/* Check entries and point rd at them. */
static int take_entries(struct persist_read *rd, redisReply *entries)
{
    if (check_entries(entries) != MP_OK)
        return MP_ERR;
    rd->entries = entries->element;
    rd->n = entries->elements;
    return MP_OK;
}

/* One entry handed out with the id "<its id>@<shard>": its own [id, fields] reply pointing at the fields
 * of the read's reply (which rd keeps). */
struct relabeled {
    redisReply entry, id;
    redisReply *pair[2];
    char str[PERSIST_SID_MAX];
};

/* Entries of several shards' streams, as one list in rd: n entries, entry i of list[i] in shard[i].
 * MP_ERR when an id with its shard does not fit PERSIST_SID_MAX. */
static int relabel(struct persist_read *rd, redisReply *const *list, const int *shard, size_t n)
{
    struct relabeled *own;
    redisReply **entries;

    if (n == 0)
        return MP_OK;
    if ((own = calloc(1, n * (sizeof(*own) + sizeof(*entries)))) == NULL)
        return MP_ENOMEM;
    entries = (redisReply **)(own + n);
    for (size_t i = 0; i < n; i++) {
        const redisReply *orig = list[i];
        int len = snprintf(own[i].str, sizeof(own[i].str), "%s@%d", orig->element[0]->str, shard[i]);
        if (len < 0 || (size_t)len >= sizeof(own[i].str)) {
            free(own);
            return MP_ERR;
        }
        own[i].id.type = REDIS_REPLY_STRING;
        own[i].id.str = own[i].str;
        own[i].id.len = (size_t)len;
        own[i].pair[0] = &own[i].id;
        own[i].pair[1] = orig->element[1];
        own[i].entry.type = REDIS_REPLY_ARRAY;
        own[i].entry.elements = 2;
        own[i].entry.element = own[i].pair;
        entries[i] = &own[i].entry;
    }
    rd->own = own;
    rd->entries = entries;
    rd->n = n;
    return MP_OK;
}

/* The entries of one stream's array in rd, relabeled with shard when there are several shards. */
static int take_shard(struct persist_read *rd, redisReply *entries, int shard)
{
    int *shards;
    int rc;

    if (!multi())
        return take_entries(rd, entries);
    if (check_entries(entries) != MP_OK)
        return MP_ERR;
    if (entries->elements == 0)
        return MP_OK;
    if ((shards = malloc(entries->elements * sizeof(*shards))) == NULL)
        return MP_ENOMEM;
    for (size_t i = 0; i < entries->elements; i++)
        shards[i] = shard;
    rc = relabel(rd, entries->element, shards, entries->elements);
    free(shards);
    return rc;
}

int persist_stream_create_group(struct rds *r, int *created)
{
    char key[KEY_BUF];
    *created = 0;
    for (int i = 0; i < key_shards(); i++) {
        redisReply *reply = rds_cmd(r, "XGROUP CREATE %s %s 0 MKSTREAM", stream_key(i, key), bound.group);
        if (reply == NULL)
            return MP_EAGAIN;
        if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "BUSYGROUP", 9) == 0) {
            freeReplyObject(reply);
            continue;
        }
        if (check(reply, "XGROUP CREATE") != MP_OK)
            return MP_ERR;
        *created = 1;
        freeReplyObject(reply);
    }
    return MP_OK;
}

/* The shard of a stream key named in a reply: -1 when it is none of ours. */
static int key_shard_of(const redisReply *name)
{
    char key[KEY_BUF];
    const char *brace = is_str(name) ? strchr(name->str, '{') : NULL;
    long v = brace ? strtol(brace + 1, NULL, 10) : -1;
    if (v < 0 || v >= key_shards() || strcmp(stream_key((int)v, key), name->str) != 0)
        return -1;
    return (int)v;
}

static int take_all(struct persist_read *rd, redisReply *reply);

/* New entries of every shard's stream in one XREADGROUP, as one list. COUNT is per stream in Redis: count
 * is split over the streams (rounded down; the caller sends a count below the shard count to read_new_each),
 * so a read returns at most count entries (persist.batch and magpie-notify's notify.max_pending keep their
 * meaning). */
static int read_new_all(struct rds *r, const char *consumer, long long count, long long block_ms,
                        struct persist_read *rd)
{
    int n = key_shards(), argc = 0, rc = MP_OK;
    char num[2][24], (*keys)[KEY_BUF] = calloc((size_t)n, sizeof(*keys));
    const char **argv = calloc((size_t)(2 * n + 10), sizeof(*argv));
    redisReply *reply = NULL;

    if (keys == NULL || argv == NULL) {
        rc = MP_ENOMEM;
        goto done;
    }
    snprintf(num[0], sizeof(num[0]), "%lld", count / n);
    snprintf(num[1], sizeof(num[1]), "%lld", block_ms);
    argv[argc++] = "XREADGROUP";
    argv[argc++] = "GROUP";
    argv[argc++] = bound.group;
    argv[argc++] = consumer;
    argv[argc++] = "COUNT";
    argv[argc++] = num[0];
    argv[argc++] = "BLOCK";
    argv[argc++] = num[1];
    argv[argc++] = "STREAMS";
    for (int i = 0; i < n; i++)
        argv[argc++] = stream_key(i, keys[i]);
    for (int i = 0; i < n; i++)
        argv[argc++] = ">";
    reply = rds_cmdargv(r, argc, argv, NULL);
    if ((rc = check(reply, "XREADGROUP")) != MP_OK)
        goto done;
    rc = take_all(rd, reply);
done:
    free(keys);
    free(argv);
    return rc;
}

/* A multi-stream XREADGROUP reply (nil, or [[key, entries]...]) into rd, which takes reply. */
static int take_all(struct persist_read *rd, redisReply *reply)
{
    redisReply **list = NULL;
    int *shards = NULL, rc;
    size_t total = 0, k = 0;

    rd->reply = reply;
    if (reply->type == REDIS_REPLY_NIL)
        return MP_OK; /* BLOCK timed out: nothing new */
    rc = MP_ERR;
    if (reply->type != REDIS_REPLY_ARRAY)
        goto bad;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *st = reply->element[i];
        if (st->type != REDIS_REPLY_ARRAY || st->elements != 2 || key_shard_of(st->element[0]) < 0 ||
            check_entries(st->element[1]) != MP_OK)
            goto bad;
        total += st->element[1]->elements;
    }
    if (total == 0) {
        rc = MP_OK;
        goto done;
    }
    if (!multi()) { /* one shard (read_new_each on a cluster): the ids as they are, as a single read */
        if ((rc = take_entries(rd, reply->element[0]->element[1])) != MP_OK)
            goto bad;
        goto done;
    }
    list = malloc(total * sizeof(*list));
    shards = malloc(total * sizeof(*shards));
    if (list == NULL || shards == NULL) {
        rc = MP_ENOMEM;
        persist_read_free(rd);
        goto done;
    }
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *st = reply->element[i];
        int shard = key_shard_of(st->element[0]);
        for (size_t j = 0; j < st->element[1]->elements; j++, k++) {
            list[k] = st->element[1]->element[j];
            shards[k] = shard;
        }
    }
    if ((rc = relabel(rd, list, shards, total)) != MP_OK) {
        log_error("cannot take the entries read entries=%zu rc=%d", total, rc);
        persist_read_free(rd);
    }
    goto done;
bad:
    log_error("unexpected XREADGROUP reply type=%d", reply->type);
    persist_read_free(rd);
done:
    free(list);
    free(shards);
    return rc;
}

/* read_new_all on a cluster (rds.h), where the shards' streams are in different slots and one XREADGROUP
 * over them is CROSSSLOT: each shard's stream is read alone without BLOCK (COUNT split over the shards and
 * never more than what is left of count, so a read returns at most count entries), starting one shard
 * further each time so a small count starves none; when none had anything, one shard, in turn, is read
 * with BLOCK block_ms / shards, so a message in any shard waits about block_ms at most, as with one
 * command. The replies are put together as one multi-stream reply for take_all. Used on a cluster with one
 * shard too (the same path, tested there: an idle read costs two commands instead of one), and on one
 * Redis for a count below the shard count (magpie-notify with little room left), which one XREADGROUP
 * cannot bound: its COUNT is per stream. */
static int read_new_each(struct rds *r, const char *consumer, long long count, long long block_ms,
                         struct persist_read *rd)
{
    static unsigned next; /* the shard read first next time */
    int n = key_shards(), first = (int)(__atomic_fetch_add(&next, 1, __ATOMIC_RELAXED) % (unsigned)n),
        rc = MP_OK;
    /* left: never more than count entries in all (notify.max_pending counts on it): each shard's COUNT is
     * its share, and no more than what the shards read before it left. */
    long long per = count > n ? (count + n - 1) / n : 1, block = block_ms / n > 0 ? block_ms / n : 1,
              left = count;
    redisReply *all = calloc(1, sizeof(*all));
    char key[KEY_BUF];

    if (all == NULL || (all->element = calloc((size_t)n, sizeof(*all->element))) == NULL) {
        free(all);
        return MP_ENOMEM;
    }
    all->type = REDIS_REPLY_ARRAY;
    for (int pass = 0; pass < 2 && all->elements == 0 && rc == MP_OK; pass++)
        for (int i = 0; i < (pass == 0 ? n : 1) && rc == MP_OK && left > 0; i++) {
            int s = (first + i) % n;
            long long want = per < left ? per : left;
            redisReply *one = pass == 0
                                  ? rds_cmd(r, "XREADGROUP GROUP %s %s COUNT %lld STREAMS %s >", bound.group,
                                            consumer, want, stream_key(s, key))
                                  : rds_cmd(r, "XREADGROUP GROUP %s %s COUNT %lld BLOCK %lld STREAMS %s >",
                                            bound.group, consumer, want, block, stream_key(s, key));
            if ((rc = check(one, "XREADGROUP")) != MP_OK)
                break;
            if (one->type == REDIS_REPLY_ARRAY && one->elements == 1) {
                redisReply *got = one->element[0];
                if (got->type == REDIS_REPLY_ARRAY && got->elements == 2 &&
                    got->element[1]->type == REDIS_REPLY_ARRAY)
                    left -= (long long)got->element[1]->elements;
                all->element[all->elements++] = one->element[0]; /* [key, entries]: moved into all */
                one->elements = 0;
            } else if (one->type != REDIS_REPLY_NIL) {
                log_error("unexpected XREADGROUP reply type=%d", one->type);
                rc = MP_ERR;
            }
            freeReplyObject(one);
        }
    if (rc != MP_OK) {
        freeReplyObject(all);
        return rc;
    }
    return take_all(rd, all);
}

int persist_stream_read(struct rds *r, const char *consumer, const char *id, long long count,
                        long long block_ms, struct persist_read *rd)
{
    char key[KEY_BUF], raw[PERSIST_SID_MAX];
    redisReply *reply;
    int rc, shard;

    memset(rd, 0, sizeof(*rd));
    if (strcmp(id, ">") == 0 && (r->cluster || (multi() && count < key_shards())))
        return read_new_each(r, consumer, count, block_ms, rd);
    if (strcmp(id, ">") == 0 && multi())
        return read_new_all(r, consumer, count, block_ms, rd);
    if (strcmp(id, ">") == 0) {
        reply = rds_cmd(r, "XREADGROUP GROUP %s %s COUNT %lld BLOCK %lld STREAMS %s >", bound.group, consumer,
                        count, block_ms, stream_key(0, key));
        shard = 0;
    } else {
        /* Our pending entries after id, shard after shard: the next shard's from its start once one has
         * no more. */
        if (split_id(id, raw, &shard) != MP_OK) {
            log_error("not a stream entry id of ours id=%s", id);
            return MP_ERR;
        }
        for (;;) {
            reply = rds_cmd(r, "XREADGROUP GROUP %s %s COUNT %lld STREAMS %s %s", bound.group, consumer,
                            count, stream_key(shard, key), raw);
            if (!multi() || shard + 1 >= key_shards() || reply == NULL || reply->type != REDIS_REPLY_ARRAY ||
                reply->elements != 1 || reply->element[0]->type != REDIS_REPLY_ARRAY ||
                reply->element[0]->elements != 2 ||
                reply->element[0]->element[1]->type != REDIS_REPLY_ARRAY ||
                reply->element[0]->element[1]->elements > 0)
                break;
            freeReplyObject(reply);
            shard++;
            snprintf(raw, sizeof(raw), "0");
        }
    }
    if ((rc = check(reply, "XREADGROUP")) != MP_OK)
        return rc;
    rd->reply = reply;
    if (reply->type == REDIS_REPLY_NIL)
        return MP_OK; /* BLOCK timed out: nothing new */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 1 ||
        reply->element[0]->type != REDIS_REPLY_ARRAY || reply->element[0]->elements != 2 ||
        take_shard(rd, reply->element[0]->element[1], shard) != MP_OK) {
        log_error("unexpected XREADGROUP reply type=%d", reply->type);
        persist_read_free(rd);
        return MP_ERR;
    }
    return MP_OK;
}

int persist_stream_claim(struct rds *r, const char *consumer, long long min_idle_ms, const char *cursor,
                         long long count, struct persist_read *rd)
{
    char key[KEY_BUF], raw[PERSIST_SID_MAX];
    redisReply *reply;
    int rc, shard;

    memset(rd, 0, sizeof(*rd));
    /* Several shards: the cursor "<cursor>@<shard>" goes through one shard's stream after the other, and
     * is "0-0" only after the last one's full pass. */
    if (split_id(cursor, raw, &shard) != MP_OK) {
        log_error("not a claim cursor of ours cursor=%s", cursor);
        return MP_ERR;
    }
    reply = rds_cmd(r, "XAUTOCLAIM %s %s %s %lld %s COUNT %lld", stream_key(shard, key), bound.group,
                    consumer, min_idle_ms, raw, count);
    if ((rc = check(reply, "XAUTOCLAIM")) != MP_OK)
        return rc;
    rd->reply = reply;
    /* Redis 7: [next cursor, entries, ids of deleted entries] */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 || !is_str(reply->element[0]) ||
        reply->element[0]->len >= PERSIST_SID_MAX || take_shard(rd, reply->element[1], shard) != MP_OK) {
        log_error("unexpected XAUTOCLAIM reply type=%d", reply->type);
        persist_read_free(rd);
        return MP_ERR;
    }
    if (!multi())
        memcpy(rd->cursor, reply->element[0]->str, reply->element[0]->len + 1);
    else if (strcmp(reply->element[0]->str, "0-0") != 0)
        snprintf(rd->cursor, sizeof(rd->cursor), "%s@%d", reply->element[0]->str, shard);
    else if (shard + 1 < key_shards())
        snprintf(rd->cursor, sizeof(rd->cursor), "0-0@%d", shard + 1);
    else
        snprintf(rd->cursor, sizeof(rd->cursor), "0-0");
    if (reply->elements >= 3 && reply->element[2]->type == REDIS_REPLY_ARRAY)
        rd->deleted = reply->element[2]->elements;
    return MP_OK;
}

/* cmd (XACK with the group, or XDEL) of ids on their shards' streams: one command per shard that has any.
 * An id that is not ours is logged and skipped. */
static int by_shard(struct rds *r, const char *cmd, const char *const *ids, size_t n)
{
    const char **argv = malloc((n + 3) * sizeof(*argv));
    char(*raw)[PERSIST_SID_MAX] = malloc(n * sizeof(*raw)), key[KEY_BUF];
    int *shard = malloc(n * sizeof(*shard)), rc = MP_OK, head = strcmp(cmd, "XACK") == 0 ? 3 : 2;
    size_t done = 0;

    if (argv == NULL || raw == NULL || shard == NULL) {
        rc = MP_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if (split_id(ids[i], raw[i], &shard[i]) != MP_OK) {
            log_error("not a stream entry id of ours cmd=%s id=%s", cmd, ids[i]);
            shard[i] = -1;
            done++;
        }
    for (int s = 0; done < n && s < key_shards(); s++) {
        int argc = head;
        redisReply *reply;
        argv[0] = cmd;
        argv[1] = stream_key(s, key);
        argv[2] = bound.group; /* XACK's; an XDEL's first id overwrites it */
        for (size_t i = 0; i < n; i++)
            if (shard[i] == s)
                argv[argc++] = raw[i];
        if (argc == head)
            continue;
        done += (size_t)(argc - head);
        reply = rds_cmdargv(r, argc, argv, NULL);
        if ((rc = check(reply, cmd)) != MP_OK)
            goto out;
        freeReplyObject(reply);
    }
out:
    free(argv);
    free(raw);
    free(shard);
    return rc;
}

int persist_stream_ack(struct rds *r, const char *const *ids, size_t n)
{
    return n == 0 ? MP_OK : by_shard(r, "XACK", ids, n);
}

int persist_stream_del(struct rds *r, const char *const *ids, size_t n)
{
    return n == 0 ? MP_OK : by_shard(r, "XDEL", ids, n);
}

int persist_stream_fence(struct rds *r, const char *consumer, const struct persist_read *rd)
{
    const char *id = NULL;
    char key[KEY_BUF], raw[PERSIST_SID_MAX];
    redisReply *reply;
    int rc, shard;

    for (size_t i = rd->n; i-- > 0 && id == NULL;)
        if (rd->entries[i]->element[1]->type == REDIS_REPLY_ARRAY)
            id = rd->entries[i]->element[0]->str;
    if (id == NULL)
        return MP_OK; /* only deleted entries: nothing to store */
    if (split_id(id, raw, &shard) != MP_OK)
        return MP_ERR;
    /* One write after the read covers the entries of every shard's stream it returned. */
    reply = rds_cmd(r, "XCLAIM %s %s %s 0 %s JUSTID", stream_key(shard, key), bound.group, consumer, raw);
    if ((rc = check(reply, "XCLAIM")) != MP_OK)
        return rc;
    freeReplyObject(reply);
    return MP_OK;
}

int persist_stream_deliveries(struct rds *r, const char *id, long long *count)
{
    char key[KEY_BUF], raw[PERSIST_SID_MAX];
    redisReply *reply;
    int rc, shard;
    *count = 0;
    if (split_id(id, raw, &shard) != MP_OK)
        return MP_ERR;
    reply = rds_cmd(r, "XPENDING %s %s %s %s 1", stream_key(shard, key), bound.group, raw, raw);
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

/* KEYS: the dead-letter stream, the stream (one shard's: one slot). ARGV: its MAXLEN ~, the group, the
 * entry's id, the reason, then the entry's fields. The dead letter and the XACK in one script, so that on a
 * cluster too (no MULTI there: rds.h) an entry is never acked without its dead letter, nor dead twice; a
 * refused XADD raises before the XACK. */
static const char dead_letter_lua[] =
    LUA_SHEBANG "local a = {'XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', '" MQ_F_DEAD_REASON
                "', ARGV[4], '" MQ_F_DEAD_ID "', ARGV[3]}\n"
                "for i = 5, #ARGV do a[#a + 1] = ARGV[i] end\n"
                "redis.call(unpack(a))\n"
                "return redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])\n";

int persist_stream_dead_letter(struct rds *r, const char *id, const redisReply *fields, const char *reason)
{
    enum { HEAD = 9 };
    size_t nf = fields != NULL && fields->type == REDIS_REPLY_ARRAY ? fields->elements : 0;
    const char **argv = malloc((HEAD + nf) * sizeof(*argv));
    size_t *lens = malloc((HEAD + nf) * sizeof(*lens));
    redisReply *reply;
    char key[KEY_BUF], dead[KEY_BUF], raw[PERSIST_SID_MAX];
    int rc = MP_OK, argc = 0, shard;

    if (argv == NULL || lens == NULL || split_id(id, raw, &shard) != MP_OK) {
        free(argv);
        free(lens);
        return argv == NULL || lens == NULL ? MP_ENOMEM : MP_ERR;
    }
    snprintf(dead, sizeof(dead), KEY_SHARDED("%s"), shard, bound.dead); /* next to its stream: one slot */
    argv[argc++] = "EVAL";
    argv[argc++] = dead_letter_lua;
    argv[argc++] = "2";
    argv[argc++] = dead;
    argv[argc++] = stream_key(shard, key);
    argv[argc++] = bound.dead_maxlen;
    argv[argc++] = bound.group;
    argv[argc++] = raw; /* the entry's id in its shard's stream */
    argv[argc++] = reason;
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    for (size_t i = 0; i < nf; i++, argc++) {
        argv[argc] = fields->element[i]->str;
        lens[argc] = fields->element[i]->len;
    }
    reply = rds_cmdargv(r, argc, argv, lens);
    free(argv);
    free(lens);
    if (reply == NULL)
        return MP_EAGAIN;
    if (reply->type == REDIS_REPLY_ERROR) {
        log_error("redis refused the dead letter id=%s error=\"%s\"", id, reply->str);
        rc = MP_ERR;
    }
    freeReplyObject(reply);
    return rc;
}

static int forget_in(struct rds *r, int shard, const char *self, long long idle_ms, int *removed);

int persist_stream_forget_consumers(struct rds *r, const char *self, long long idle_ms, int *removed)
{
    int rc = MP_OK;
    *removed = 0;
    for (int i = 0; i < key_shards() && rc == MP_OK; i++)
        rc = forget_in(r, i, self, idle_ms, removed);
    return rc;
}

/* persist_stream_forget_consumers on one shard's stream; *removed is added to. */
static int forget_in(struct rds *r, int shard, const char *self, long long idle_ms, int *removed)
{
    char key[KEY_BUF];
    redisReply *reply = rds_cmd(r, "XINFO CONSUMERS %s %s", stream_key(shard, key), bound.group);
    int rc;

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
        del = rds_cmd(r, "XGROUP DELCONSUMER %s %s %s", key, bound.group, name->str);
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
static int group_floor(struct rds *r, const char *key, const redisReply *group, struct persist_sid *floor,
                       long long *pending)
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
    reply = rds_cmd(r, "XPENDING %s %s", key, name->str);
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
static int floor_age(struct rds *r, const char *key, const struct persist_sid *floor, int64_t *age)
{
    char id[PERSIST_SID_MAX];
    redisReply *reply;
    struct persist_sid first;
    int64_t now_ms;
    int rc;

    *age = 0;
    persist_sid_format(floor, id, sizeof(id));
    reply = rds_cmd(r, "XRANGE %s %s + COUNT 1", key, id);
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

/* persist_stream_state of one stream. */
static int state_of(struct rds *r, const char *key, struct persist_stream_state *st)
{
    redisReply *groups, *len;
    int rc;

    memset(st, 0, sizeof(*st));
    groups = rds_cmd(r, "XINFO GROUPS %s", key);
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
        if ((rc = group_floor(r, key, groups->element[i], &floor, &pending)) != MP_OK) {
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
    len = rds_cmd(r, "XLEN %s", key);
    if ((rc = check(len, "XLEN")) != MP_OK)
        return rc;
    st->length = len->type == REDIS_REPLY_INTEGER ? len->integer : 0;
    freeReplyObject(len);
    if (st->have_own_floor)
        return floor_age(r, key, &st->own_floor, &st->lag_ms);
    return MP_OK;
}

int persist_stream_state(struct rds *r, struct persist_stream_state *st)
{
    char key[KEY_BUF];
    int rc;

    if (!multi())
        return state_of(r, stream_key(0, key), st);
    /* Several shards: the sums (length, pending) and the largest lag, for the gauges. The floors are each
     * stream's own: persist_stream_trim reads them again per stream. */
    memset(st, 0, sizeof(*st));
    for (int i = 0; i < key_shards(); i++) {
        struct persist_stream_state one;
        if ((rc = state_of(r, stream_key(i, key), &one)) != MP_OK)
            return rc;
        st->length += one.length;
        st->pending += one.pending;
        if (one.groups > st->groups)
            st->groups = one.groups;
        if (one.lag_ms > st->lag_ms)
            st->lag_ms = one.lag_ms;
    }
    return MP_OK;
}

static int trim_to(struct rds *r, const char *key, const struct persist_sid *floor, long long *trimmed)
{
    char id[PERSIST_SID_MAX];
    redisReply *reply;
    int rc;

    persist_sid_format(floor, id, sizeof(id));
    reply = rds_cmd(r, "XTRIM %s MINID %s", key, id);
    if ((rc = check(reply, "XTRIM")) != MP_OK)
        return rc;
    if (reply->type == REDIS_REPLY_INTEGER)
        *trimmed += reply->integer;
    freeReplyObject(reply);
    return MP_OK;
}

/* Trim one stream by its state st; *trimmed is added to. */
static int trim_one(struct rds *r, const char *key, const struct persist_stream_state *st, long long maxlen,
                    long long *trimmed)
{
    long long before = *trimmed;
    int rc;
    if (!st->have_all_floor)
        return MP_OK;
    if ((rc = trim_to(r, key, &st->all_floor, trimmed)) != MP_OK)
        return rc;
    if (st->have_own_floor && st->length - (*trimmed - before) > maxlen &&
        persist_sid_cmp(&st->own_floor, &st->all_floor) > 0)
        return trim_to(r, key, &st->own_floor, trimmed);
    return MP_OK;
}

int persist_stream_trim(struct rds *r, const struct persist_stream_state *st, long long maxlen,
                        long long *trimmed)
{
    char key[KEY_BUF];
    int rc = MP_OK;

    *trimmed = 0;
    if (!multi())
        return trim_one(r, stream_key(0, key), st, maxlen, trimmed);
    /* Several shards: each stream by its own floors, read again here (st holds only the sums). */
    for (int i = 0; i < key_shards() && rc == MP_OK; i++) {
        struct persist_stream_state one;
        if ((rc = state_of(r, stream_key(i, key), &one)) == MP_OK)
            rc = trim_one(r, key, &one, maxlen, trimmed);
    }
    return rc;
}
