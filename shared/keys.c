/* keys.c -- the shard helpers of keys.h. */
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "rds.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int shards = 1;

int key_shards(void)
{
    return shards;
}

void keys_set_shards(int s)
{
    shards = s >= 1 && s <= KEY_SHARDS_MAX ? s : 1;
}

int key_shard(long long id)
{
    unsigned long long u = id < 0 ? 0ULL - (unsigned long long)id : (unsigned long long)id;
    return (int)(u % (unsigned long long)shards);
}

void key_msg_prefix(char *buf, size_t len, int shard)
{
    int n = snprintf(buf, len, KEY_MSG, shard, 0LL);
    if (n > 0 && (size_t)n < len && buf[n - 1] == '0')
        buf[n - 1] = '\0'; /* the id 0 */
}

char *keys_lua(const char *src)
{
    size_t len = strlen(src) + 64;
    char *out = malloc(len);
    if (out != NULL)
        snprintf(out, len, "local " KEY_LUA_SHARDS " = %d\n%s", shards, src);
    return out;
}

int keys_shards_reply(const redisReply *rep, int *missing)
{
    long long have;
    char *end;

    *missing = 0;
    if (rep == NULL)
        return MP_EAGAIN;
    if (rep->type == REDIS_REPLY_NIL) {
        *missing = 1;
        return MP_OK;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        log_error("redis refused GET %s error=\"%s\"", KEY_SHARDS, rep->str);
        return MP_EAGAIN;
    }
    if (rep->type != REDIS_REPLY_STRING || (have = strtoll(rep->str, &end, 10)) < 1 || *end != '\0') {
        log_error("%s in Redis is not a shard count; refusing to start", KEY_SHARDS);
        return MP_ERR;
    }
    if (have != shards) {
        log_error("redis.stream_shards is %d, but the data in Redis was written with %lld shards (%s): it "
                  "cannot change once data exists (every user's keys would move); set redis.stream_shards = "
                  "%lld, or start from an empty Redis",
                  shards, have, KEY_SHARDS, have);
        return MP_ERR;
    }
    return MP_OK;
}

int keys_startup_check(const struct magpie_config *cfg)
{
    struct rds r;
    int rc;
    rds_init(&r, cfg);
    rc = keys_check_shards(&r);
    rds_close(&r);
    return rc;
}

int keys_check_shards(struct rds *r)
{
    redisReply *rep = rds_cmd(r, "GET %s", KEY_SHARDS);
    int missing = 0, rc = keys_shards_reply(rep, &missing);

    if (rep != NULL)
        freeReplyObject(rep);
    if (rc != MP_OK || !missing)
        return rc;
    /* SET NX: of two daemons starting at once with different configs, the second sees the first's. */
    if ((rep = rds_cmd(r, "SET %s %d NX", KEY_SHARDS, shards)) == NULL)
        return MP_EAGAIN;
    freeReplyObject(rep);
    rep = rds_cmd(r, "GET %s", KEY_SHARDS);
    rc = keys_shards_reply(rep, &missing);
    if (rep != NULL)
        freeReplyObject(rep);
    return rc == MP_OK && missing ? MP_EAGAIN : rc; /* gone again at once: a FLUSHALL; try later */
}

/* ---- the upgrade from the names without tags (keys_upgrade) ---- */

enum old_kind {
    OLD_ID,     /* "<old prefix><id>" -> fmt(shard(id), id) */
    OLD_ID_M,   /* "<old prefix><id>:m" -> fmt(shard(id), id) */
    OLD_DEDUP,  /* "<old prefix><uid>:<client id>" -> KEY_DEDUP */
    OLD_MSG,    /* "<old prefix><mid>": a copy in every shard (each reader's shard has one) */
    OLD_STREAM, /* the exact old name -> fmt(0): the old streams become shard 0's */
    OLD_DROP,   /* the exact old name: deleted */
};

static const struct old_name {
    const char *old;
    enum old_kind kind;
    const char *name; /* the new name's part after the tag: KEY_SEQ_NAME... */
} old_names[] = {
    {"mp:friends:", OLD_ID, KEY_FRIENDS_NAME},
    {"mp:presence:", OLD_ID, KEY_PRESENCE_NAME},
    {"mp:dedup:", OLD_DEDUP, KEY_DEDUP_NAME},
    {"mp:seq:restored", OLD_DROP, NULL},
    {"mp:seq:", OLD_ID, KEY_SEQ_NAME},
    {"mp:tl:", OLD_ID, KEY_TL_NAME},
    {"mp:msg:", OLD_MSG, KEY_MSG_NAME},
    {"mp:convs:", OLD_ID, KEY_CONVS_NAME},
    {"mp:conv:", OLD_ID, KEY_CONV_NAME},
    {"mp:stomp:", OLD_ID, KEY_STOMP_NAME},
    {"mp:mqtt:", OLD_ID, KEY_MQTT_NAME},
    {"mp:ugrp:", OLD_ID, KEY_USER_GROUPS_NAME},
    {"mp:grp:", OLD_ID_M, KEY_GROUP_NAME},
    {"mp:grp:", OLD_ID, KEY_GROUP_NAME},
    {"mp:mq:dead", OLD_STREAM, KEY_MQ_DEAD_NAME},
    {"mp:mq", OLD_STREAM, KEY_MQ_NAME},
    {"mp:notify:dead", OLD_STREAM, KEY_NOTIFY_DEAD_NAME},
    {"mp:notify", OLD_STREAM, KEY_NOTIFY_NAME},
};

/* The digits of an id at s (1..18 of them, so it fits a long long), and where they end. */
static int old_id(const char *s, long long *id, const char **end)
{
    size_t n = strspn(s, "0123456789");
    if (n == 0 || n > 18)
        return 0;
    *id = strtoll(s, NULL, 10);
    *end = s + n;
    return 1;
}

/* Which old name key is: its table entry, or NULL (not an old name: a new one, or a key that kept its
 * name). For OLD_ID* and OLD_MSG *id is the id; for OLD_DEDUP *rest the client id. */
static const struct old_name *old_match(const char *key, long long *id, const char **rest)
{
    for (size_t i = 0; i < sizeof(old_names) / sizeof(old_names[0]); i++) {
        const struct old_name *o = &old_names[i];
        size_t n = strlen(o->old);
        const char *end;
        if (strncmp(key, o->old, n) != 0)
            continue;
        switch (o->kind) {
        case OLD_STREAM:
        case OLD_DROP:
            if (key[n] == '\0')
                return o;
            break;
        case OLD_ID:
        case OLD_MSG:
            if (old_id(key + n, id, &end) && *end == '\0')
                return o;
            break;
        case OLD_ID_M:
            if (old_id(key + n, id, &end) && strcmp(end, GROUP_MEMBERS_SUFFIX) == 0)
                return o;
            break;
        case OLD_DEDUP:
            if (old_id(key + n, id, &end) && *end == ':') {
                *rest = end + 1;
                return o;
            }
            break;
        }
    }
    return NULL;
}

/* The integer answer of rep (freed), or -1; *rc = MP_EAGAIN when there was none. */
static long long answer(redisReply *rep, int *rc)
{
    long long v = -1;
    if (rep == NULL) {
        *rc = MP_EAGAIN;
        return -1;
    }
    if (rep->type == REDIS_REPLY_INTEGER)
        v = rep->integer;
    else if (rep->type == REDIS_REPLY_ERROR)
        log_error("redis refused a command of the key upgrade error=\"%s\"", rep->str);
    freeReplyObject(rep);
    return v;
}

/* Move one old key (keys_upgrade). MP_OK (moved, *moved = 1; or left, logged) or MP_EAGAIN. */
static int upgrade_key(struct rds *r, const char *key, int *moved)
{
    const char *rest = NULL;
    long long id = 0;
    const struct old_name *o = old_match(key, &id, &rest);
    char to[512];
    int rc = MP_OK;

    *moved = 0;
    if (o == NULL)
        return MP_OK;
    switch (o->kind) {
    case OLD_DROP:
        answer(rds_cmd(r, "DEL %s", key), &rc);
        return rc;
    case OLD_MSG:
        /* Every shard's copy (the readers' shards are not known here: a t's two users are in its packet,
         * a group's members are not): COPY keeps the TTL. */
        for (int s = 0; s < shards && rc == MP_OK; s++) {
            snprintf(to, sizeof(to), KEY_TAGGED("%s"), s, o->name, id);
            answer(rds_cmd(r, "COPY %s %s", key, to), &rc);
        }
        if (rc == MP_OK)
            answer(rds_cmd(r, "DEL %s", key), &rc);
        *moved = rc == MP_OK;
        return rc;
    case OLD_STREAM:
        snprintf(to, sizeof(to), KEY_SHARDED("%s"), 0, o->name);
        break;
    case OLD_DEDUP:
        snprintf(to, sizeof(to), KEY_TAGGED("%s") ":%s", key_shard(id), o->name, id, rest);
        break;
    case OLD_ID:
        snprintf(to, sizeof(to), KEY_TAGGED("%s"), key_shard(id), o->name, id);
        break;
    case OLD_ID_M:
        snprintf(to, sizeof(to), KEY_TAGGED("%s") GROUP_MEMBERS_SUFFIX, key_shard(id), o->name, id);
        break;
    }
    if (answer(rds_cmd(r, "RENAMENX %s %s", key, to), &rc) == 1)
        *moved = 1;
    else if (rc == MP_OK)
        log_warn("key upgrade: the new name exists already (written since the upgrade began); the old key is "
                 "left as it is old=%s new=%s",
                 key, to);
    return rc;
}

struct upgrade_walk {
    struct rds *r;
    long long renamed, found;
};

/* One key of keys_upgrade's SCAN: moved (one Redis), or counted when it has an old name (a cluster). */
static int upgrade_each(const char *key, size_t len, void *arg)
{
    struct upgrade_walk *u = arg;
    const char *rest = NULL;
    long long id = 0;
    int moved = 0, rc;
    if (strlen(key) != len || len >= 400)
        return MP_OK;
    if (u->r->cluster) {
        u->found += old_match(key, &id, &rest) != NULL;
        return MP_OK;
    }
    rc = upgrade_key(u->r, key, &moved);
    u->renamed += moved;
    return rc;
}

int keys_upgrade(struct rds *r, long long *renamed)
{
    struct upgrade_walk u = {r, 0, 0};
    redisReply *rep = rds_cmd(r, "EXISTS %s", KEY_TAGGED_MARK);
    int rc = MP_OK;

    *renamed = 0;
    if (answer(rep, &rc) != 0)
        return rc; /* done before (1), or Redis unavailable */
    log_info(
        "key upgrade: looking for keys under the names before the shard tags (shared/keys.h) shards=%d%s",
        shards, r->cluster ? " (Redis Cluster: every master)" : "");
    rc = rds_scan(r, "mp:*", upgrade_each, &u);
    *renamed = u.renamed;
    if (rc != MP_OK)
        return rc;
    if (u.found > 0) {
        /* Renaming "mp:seq:42" to "mp:{0}:seq:42" moves a key to another slot: a cluster refuses that
         * (CROSSSLOT), and the daemons never ran on a cluster before the tags. */
        log_error(
            "key upgrade: a Redis Cluster holds keys under the names before the shard tags, which "
            "cannot be renamed on a cluster (each would move to another slot) found=%lld; upgrade them on "
            "one Redis first (magpie-persist with redis.host), then move the data into the cluster",
            u.found);
        return MP_ERR;
    }
    answer(rds_cmd(r, "SET %s 1", KEY_TAGGED_MARK), &rc);
    if (rc == MP_OK)
        log_info("key upgrade: done renamed=%lld", *renamed);
    return rc;
}
