/* persist_seq.c -- see persist_seq.h.
 *
 * What is restored, in this order, before KEY_SEQ_RESTORED is set (each step raises or replaces only what
 * is older than MySQL's copy, so a Redis that lost nothing -- the marker deleted by hand -- loses nothing):
 *   1. every user's KEY_SEQ: raised to the highest seq MySQL has for the user, which is the largest of
 *      messages.from_seq (1:1 and g messages sent), messages.to_seq (1:1 received) and
 *      timeline_chunks.last_seq (group entries received; timeline_chunks.h);
 *   2. KEY_GROUP_NEXT: raised to the highest chat_groups.id, deleted groups included (ids are not reused);
 *   3. every group of chat_groups (design: push/group.h), by restore_group_lua, when Redis has no KEY_GROUP
 *      for it or one with a lower ver: a live group gets KEY_GROUP (name, owner, created, ver; j = its
 *      highest join order, n = its highest messages.group_seq, l = the highest mid of its messages rows --
 *      mids grow with time, so that is its latest entry; counters never lowered), KEY_GROUP_MEMBERS and
 *      the group in each member's KEY_USER_GROUPS; a deleted one loses those keys. The old members of a
 *      replaced group leave the group in their KEY_USER_GROUPS first.
 * The conversations (KEY_CONVS, KEY_CONV) and the timelines themselves are not restored: Y reads what Redis
 * lacks from MySQL, and the conversations fill again with the next messages.
 */
#include "persist_seq.h"
#include "keys.h"
#include "log.h"
#include "magpie.h"
#include "timeline_chunks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Commands sent to Redis in one pipeline before their replies are read. */
#define SEQ_PIPELINE 500

/* KEYS: a counter (KEY_SEQ, KEY_GROUP_NEXT). ARGV: the highest value MySQL has. Raises the counter, never
 * lowers it. */
static const char raise_lua[] =
    LUA_SHEBANG "local cur = tonumber(redis.call('GET', KEYS[1]) or '-1')\n"
                "if cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) return 1 end\n"
                "return 0\n";

/* What both group restore scripts write into KEY_GROUP (KEYS[1]) from their ARGV 2 and 4..9: name, owner,
 * created and ver as MySQL has them; j and n raised to MySQL's, never lowered; l raised to MySQL's latest mid
 * (mids grow with time: compared by length, then as strings). */
#define RESTORE_GROUP_HASH_LUA                                                                               \
    "local function atleast(f, v)\n"                                                                         \
    "  local c = redis.call('HGET', KEYS[1], f)\n"                                                           \
    "  if c and tonumber(c) > tonumber(v) then return c end\n"                                               \
    "  return v\n"                                                                                           \
    "end\n"                                                                                                  \
    "redis.call('HSET', KEYS[1], '" GROUP_F_NAME "', ARGV[4], '" GROUP_F_OWNER "', ARGV[5],\n"               \
    "  '" GROUP_F_CREATED "', ARGV[6], '" GROUP_F_VER "', ARGV[2],\n"                                        \
    "  '" GROUP_F_JOINS "', atleast('" GROUP_F_JOINS "', ARGV[7]),\n"                                        \
    "  '" GROUP_F_COUNT "', atleast('" GROUP_F_COUNT "', ARGV[8]))\n"                                        \
    "local l = redis.call('HGET', KEYS[1], '" GROUP_F_LAST "')\n"                                            \
    "if ARGV[9] ~= '' and (not l or #l < #ARGV[9] or (#l == #ARGV[9] and l < ARGV[9])) then\n"               \
    "  redis.call('HSET', KEYS[1], '" GROUP_F_LAST "', ARGV[9])\n"                                           \
    "end\n"

/* KEYS: KEY_GROUP, KEY_GROUP_MEMBERS. ARGV: gid, ver, deleted (1 or 0), name, owner, created, j, n, l (""
 * = none), then uid and "<role> <join order> <joined ms>" of each member. Returns 1 when it wrote, 0 when
 * Redis has that ver or a newer one. The members' KEY_USER_GROUPS are built here, in their shards (keys.h):
 * run as keys_lua's source, which defines S (restore_src). */
static const char restore_group_lua[] = KEY_LUA_LIB
    "local cur = tonumber(redis.call('HGET', KEYS[1], '" GROUP_F_VER "') or '0')\n"
    "if cur >= tonumber(ARGV[2]) then return 0 end\n"
    "local old = redis.call('HKEYS', KEYS[2])\n"
    "for i = 1, #old do redis.call('SREM', mp_key('" KEY_USER_GROUPS_NAME "', old[i]), ARGV[1]) end\n"
    "redis.call('DEL', KEYS[2])\n"
    "if ARGV[3] == '1' then redis.call('DEL', KEYS[1]) return 1 end\n" RESTORE_GROUP_HASH_LUA
    "for i = 10, #ARGV, 2 do\n"
    "  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])\n"
    "  redis.call('SADD', mp_key('" KEY_USER_GROUPS_NAME "', ARGV[i]), ARGV[1])\n"
    "end\n"
    "return 1\n";

/* restore_group_lua at redis.stream_shards > 1, where the members' KEY_USER_GROUPS are in other shards (a
 * cluster refuses a script that touches them): the same KEYS and ARGV, the group's keys only. Returns {1,
 * the old members' uids...} when it wrote, {2} when Redis has this very ver (its members are MySQL's), {0}
 * when Redis has a newer one; restore_group_split (C) then takes the group out of the old members'
 * KEY_USER_GROUPS and puts it into the new ones', one command each, in their shards. */
static const char restore_group_split_lua[] =
    LUA_SHEBANG "local cur = tonumber(redis.call('HGET', KEYS[1], '" GROUP_F_VER "') or '0')\n"
                "if cur > tonumber(ARGV[2]) then return {0} end\n"
                "if cur == tonumber(ARGV[2]) then return {2} end\n"
                "local old = redis.call('HKEYS', KEYS[2])\n"
                "redis.call('DEL', KEYS[2])\n"
                "local out = {1}\n"
                "for i = 1, #old do out[#out + 1] = old[i] end\n"
                "if ARGV[3] == '1' then redis.call('DEL', KEYS[1]) return out end\n" RESTORE_GROUP_HASH_LUA
                "for i = 10, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end\n"
                "return out\n";

static char *restore_src; /* restore_group_lua with S (keys_lua), made at the first restore */

/* Read the replies of n queued commands; MP_OK when none was an error. */
static int drain(struct rds *r, int n)
{
    int rc = MP_OK;
    for (int i = 0; i < n; i++) {
        redisReply *rep = rds_reply(r);
        if (rep == NULL)
            return MP_EAGAIN;
        if (rep->type == REDIS_REPLY_ERROR) {
            log_error("seq restore: redis refused a command reason=\"%s\"", rep->str);
            rc = MP_EAGAIN;
        }
        freeReplyObject(rep);
    }
    return rc;
}

/* Commands queued on the Redis connection, read back every SEQ_PIPELINE. */
struct pipe {
    struct rds *r;
    int queued;
};

/* Each command is one key's (or one group's slot): on a cluster rds_append groups them per master, and
 * their order between slots does not matter (each raises or replaces its own keys only). */
static int pipe_append(struct pipe *p, int argc, const char **argv, const size_t *argvlen)
{
    if (rds_appendargv(p->r, argc, argv, argvlen) != MP_OK)
        return MP_EAGAIN;
    if (++p->queued == SEQ_PIPELINE) {
        p->queued = 0;
        return drain(p->r, SEQ_PIPELINE);
    }
    return MP_OK;
}

static int pipe_flush(struct pipe *p)
{
    int n = p->queued;
    p->queued = 0;
    return n > 0 ? drain(p->r, n) : MP_OK;
}

static int raise_counter(struct pipe *p, const char *key, const char *value)
{
    const char *argv[] = {"EVAL", raise_lua, "1", key, value};
    size_t len[5];
    for (int i = 0; i < 5; i++)
        len[i] = strlen(argv[i]);
    return pipe_append(p, 5, argv, len);
}

/* Run a query whose rows are read with mysql_use_result (streamed: millions of rows are not held at once),
 * or mysql_store_result when store. NULL when it failed (logged). */
static MYSQL_RES *query(struct db *d, MYSQL *m, const char *sql, int store)
{
    MYSQL_RES *res = NULL;
    if (mysql_real_query(m, sql, (unsigned long)strlen(sql)) != 0 ||
        (res = store ? mysql_store_result(m) : mysql_use_result(m)) == NULL) {
        log_error("seq restore: query failed error=\"%s\"", mysql_error(m));
        db_check_error(d);
    }
    return res;
}

/* The end of a streamed result: MP_OK, or MP_EAGAIN when reading its rows failed. */
static int query_end(MYSQL *m, MYSQL_RES *res)
{
    int rc = MP_OK;
    if (mysql_errno(m) != 0) {
        log_error("seq restore: reading the rows failed error=\"%s\"", mysql_error(m));
        rc = MP_EAGAIN;
    }
    mysql_free_result(res);
    return rc;
}

/* Step 1: every user's KEY_SEQ. */
static int restore_counters(struct pipe *p, struct db *d, MYSQL *m, long long *users)
{
    static const char sql[] =
        "SELECT uid, MAX(seq) FROM ("
        "SELECT from_uid AS uid, from_seq AS seq FROM messages WHERE from_seq IS NOT NULL "
        "UNION ALL "
        "SELECT to_uid, to_seq FROM messages WHERE to_seq IS NOT NULL "
        "UNION ALL "
        "SELECT uid, MAX(last_seq) FROM " TL_CHUNKS_TABLE " GROUP BY uid) s GROUP BY uid";
    MYSQL_RES *res = query(d, m, sql, 0);
    MYSQL_ROW row;
    int rc = MP_OK;

    if (res == NULL)
        return MP_EAGAIN;
    while (rc == MP_OK && (row = mysql_fetch_row(res)) != NULL) {
        char key[64];
        if (row[0] == NULL || row[1] == NULL)
            continue;
        key_tagged(key, sizeof(key), KEY_SEQ, strtoll(row[0], NULL, 10));
        rc = raise_counter(p, key, row[1]);
        (*users)++;
    }
    if (query_end(m, res) != MP_OK)
        rc = MP_EAGAIN;
    return rc;
}

/* Step 2: KEY_GROUP_NEXT. */
static int restore_group_next(struct pipe *p, struct db *d, MYSQL *m)
{
    MYSQL_RES *res = query(d, m, "SELECT COALESCE(MAX(id), 0) FROM chat_groups", 1);
    MYSQL_ROW row;
    int rc = MP_OK;
    if (res == NULL)
        return MP_EAGAIN;
    if ((row = mysql_fetch_row(res)) != NULL && row[0] != NULL && strcmp(row[0], "0") != 0)
        rc = raise_counter(p, KEY_GROUP_NEXT, row[0]);
    mysql_free_result(res);
    return rc;
}

/* A group's message count and latest mid, from a stored result ordered by group id. */
struct group_count {
    long long gid;
    const char *n, *l;
};

static const struct group_count *find_count(const struct group_count *c, size_t n, long long gid)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c[mid].gid == gid)
            return &c[mid];
        if (c[mid].gid < gid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* The EVAL of one group being built: argv with room to grow; member strings are malloc'd. */
struct group_cmd {
    const char **argv;
    size_t *len;
    char **owned;
    size_t argc, cap, nowned;
    char key[64], members_key[64], gid[24], j[24];
    long long id, max_join;
};

static int cmd_push(struct group_cmd *c, const char *s, int own)
{
    if (c->argc == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        const char **argv = realloc(c->argv, cap * sizeof(*argv));
        size_t *len;
        char **owned;
        if (argv == NULL)
            return MP_ENOMEM;
        c->argv = argv;
        if ((len = realloc(c->len, cap * sizeof(*len))) == NULL)
            return MP_ENOMEM;
        c->len = len;
        if ((owned = realloc(c->owned, cap * sizeof(*owned))) == NULL)
            return MP_ENOMEM;
        c->owned = owned;
        c->cap = cap;
    }
    if (s == NULL)
        return MP_ENOMEM;
    if (own)
        c->owned[c->nowned++] = (char *)s;
    c->argv[c->argc] = s;
    c->len[c->argc++] = strlen(s);
    return MP_OK;
}

static void cmd_reset(struct group_cmd *c)
{
    for (size_t i = 0; i < c->nowned; i++)
        free(c->owned[i]);
    c->nowned = 0;
    c->argc = 0;
    c->id = 0;
    c->max_join = 0;
}

static void cmd_free(struct group_cmd *c)
{
    cmd_reset(c);
    free(c->argv);
    free(c->len);
    free(c->owned);
}

static char *dup_str(const char *s)
{
    char *p = malloc(strlen(s) + 1);
    if (p != NULL)
        memcpy(p, s, strlen(s) + 1);
    return p;
}

/* Start the EVAL of the group of row (id, ver, deleted, name, owner, created, ...). */
static int cmd_start(struct group_cmd *c, MYSQL_ROW row, const struct group_count *cnt)
{
    int rc = MP_OK;
    c->id = strtoll(row[0], NULL, 10);
    key_tagged(c->key, sizeof(c->key), KEY_GROUP, c->id);
    key_tagged(c->members_key, sizeof(c->members_key), KEY_GROUP_MEMBERS, c->id);
    snprintf(c->gid, sizeof(c->gid), "%lld", c->id);
    const char *head[] = {"EVAL", restore_src, "2", c->key, c->members_key, c->gid};
    for (size_t i = 0; i < MP_ARRAY_LEN(head) && rc == MP_OK; i++)
        rc = cmd_push(c, head[i], 0);
    if (rc == MP_OK)
        rc = cmd_push(c, dup_str(row[1] ? row[1] : "0"), 1); /* ver */
    if (rc == MP_OK)
        rc = cmd_push(c, row[2] && row[2][0] == '1' ? "1" : "0", 0); /* deleted */
    for (int i = 3; i <= 5 && rc == MP_OK; i++)                      /* name, owner, created */
        rc = cmd_push(c, dup_str(row[i] ? row[i] : ""), 1);
    if (rc == MP_OK)
        rc = cmd_push(c, c->j, 0); /* j: filled in cmd_send */
    if (rc == MP_OK)
        rc = cmd_push(c, dup_str(cnt && cnt->n ? cnt->n : "0"), 1);
    if (rc == MP_OK)
        rc = cmd_push(c, dup_str(cnt && cnt->l ? cnt->l : ""), 1);
    return rc;
}

/* Add the member of row (uid, role, join order, joined ms in columns 6..9) when there is one. */
static int cmd_member(struct group_cmd *c, MYSQL_ROW row)
{
    char v[80];
    long long order;
    int rc;
    if (row[6] == NULL || row[7] == NULL || row[8] == NULL || row[9] == NULL)
        return MP_OK; /* a group without members (a deleted one) */
    order = strtoll(row[8], NULL, 10);
    if (order > c->max_join)
        c->max_join = order;
    snprintf(v, sizeof(v), "%s %s %s", row[7], row[8], row[9]);
    if ((rc = cmd_push(c, dup_str(row[6]), 1)) != MP_OK)
        return rc;
    return cmd_push(c, dup_str(v), 1);
}

/* The first member's uid in a group_cmd's argv (then its value, the next uid, ...). */
#define CMD_FIRST_MEMBER 14

static int ugrp_cmd(struct pipe *p, const char *op, const char *uid, const char *gid)
{
    char key[64];
    const char *argv[3] = {op, key, gid};
    size_t len[3];
    key_tagged(key, sizeof(key), KEY_USER_GROUPS, strtoll(uid, NULL, 10));
    for (int i = 0; i < 3; i++)
        len[i] = strlen(argv[i]);
    return pipe_append(p, 3, argv, len);
}

/* The group of c at redis.stream_shards > 1 (restore_group_split_lua): the group's script alone, read at
 * once (the pipeline flushed first), then the members' KEY_USER_GROUPS one command each. */
static int restore_group_split(struct group_cmd *c, struct pipe *p)
{
    redisReply *rep;
    int rc = pipe_flush(p);

    if (rc != MP_OK)
        return rc;
    c->argv[1] = restore_group_split_lua;
    c->len[1] = strlen(restore_group_split_lua);
    rep = rds_cmdargv(p->r, (int)c->argc, c->argv, c->len);
    if (rep == NULL)
        return MP_EAGAIN;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 || rep->element[0]->type != REDIS_REPLY_INTEGER) {
        log_error("seq restore: the group script failed group=%lld reason=\"%s\"", c->id,
                  rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
        freeReplyObject(rep);
        return MP_EAGAIN;
    }
    for (size_t i = 1; i < rep->elements && rc == MP_OK; i++)
        if (rep->element[i]->type == REDIS_REPLY_STRING)
            rc = ugrp_cmd(p, "SREM", rep->element[i]->str, c->gid);
    if (rep->element[0]->integer != 0 && c->argv[7][0] != '1')
        for (size_t i = CMD_FIRST_MEMBER; i + 1 < c->argc && rc == MP_OK; i += 2)
            rc = ugrp_cmd(p, "SADD", c->argv[i], c->gid);
    freeReplyObject(rep);
    return rc;
}

static int cmd_send(struct group_cmd *c, struct pipe *p)
{
    int rc;
    /* argv[11] is j (after EVAL, script, numkeys, 2 keys, gid, ver, deleted, name, owner, created) */
    snprintf(c->j, sizeof(c->j), "%lld", c->max_join);
    c->len[11] = strlen(c->j);
    rc = key_shards() > 1 ? restore_group_split(c, p) : pipe_append(p, (int)c->argc, c->argv, c->len);
    cmd_reset(c);
    return rc;
}

/* Step 3: every group. */
static int restore_groups(struct pipe *p, struct db *d, MYSQL *m, long long *groups)
{
    static const char counts_sql[] = "SELECT group_id, MAX(group_seq), MAX(id) FROM messages "
                                     "WHERE group_id IS NOT NULL GROUP BY group_id ORDER BY group_id";
    static const char groups_sql[] =
        "SELECT g.id, g.ver, g.deleted_ms IS NOT NULL, g.name, g.owner, g.created_ms, "
        "m.uid, m.role, m.join_order, m.joined_ms FROM chat_groups g "
        "LEFT JOIN group_members m ON m.group_id = g.id ORDER BY g.id";
    MYSQL_RES *counts = query(d, m, counts_sql, 1), *res;
    struct group_count *cnt = NULL;
    struct group_cmd c = {0};
    size_t ncnt = 0;
    MYSQL_ROW row;
    int rc = MP_OK;

    if (counts == NULL)
        return MP_EAGAIN;
    if (mysql_num_rows(counts) > 0 && (cnt = calloc((size_t)mysql_num_rows(counts), sizeof(*cnt))) == NULL) {
        mysql_free_result(counts);
        return MP_ENOMEM;
    }
    while ((row = mysql_fetch_row(counts)) != NULL)
        if (row[0] != NULL)
            cnt[ncnt++] = (struct group_count){strtoll(row[0], NULL, 10), row[1], row[2]};
    if ((res = query(d, m, groups_sql, 0)) == NULL) {
        rc = MP_EAGAIN;
        goto out;
    }
    while (rc == MP_OK && (row = mysql_fetch_row(res)) != NULL) {
        if (row[0] == NULL)
            continue;
        if (c.argc > 0 && strtoll(row[0], NULL, 10) != c.id)
            rc = cmd_send(&c, p);
        if (rc == MP_OK && c.argc == 0) {
            rc = cmd_start(&c, row, find_count(cnt, ncnt, strtoll(row[0], NULL, 10)));
            (*groups)++;
        }
        if (rc == MP_OK)
            rc = cmd_member(&c, row);
    }
    if (query_end(m, res) != MP_OK && rc == MP_OK)
        rc = MP_EAGAIN;
    if (rc == MP_OK && c.argc > 0)
        rc = cmd_send(&c, p);
out:
    cmd_free(&c);
    free(cnt);
    mysql_free_result(counts);
    return rc;
}

/* EXISTS (what == 0) or SET to the time now (what == 1) of every shard's KEY_SEQ_RESTORED, one command per
 * shard in one pipeline (each marker is in its shard's slot: a cluster refuses one command over several).
 * Returns how many exist (0) or were set (1), or -1 when Redis is unavailable or refused one. The markers
 * are set only once everything is restored, so a marker set without the others (persist stopped in
 * between) is harmless: the next start counts fewer than S and restores again. */
static int restored_keys(struct rds *r, int what)
{
    int n = key_shards(), count = 0, queued = 0;
    char key[48], now[24];

    snprintf(now, sizeof(now), "%lld", (long long)mp_now_ms());
    for (int i = 0; i < n; i++, queued++) {
        snprintf(key, sizeof(key), KEY_SEQ_RESTORED, i);
        const char *argv[] = {what == 0 ? "EXISTS" : "SET", key, now};
        if (rds_appendargv(r, what == 0 ? 2 : 3, argv, NULL) != MP_OK)
            goto failed;
    }
    for (; queued > 0; queued--) {
        redisReply *rep = rds_reply(r);
        if (rep == NULL)
            goto failed;
        if (rep->type == REDIS_REPLY_INTEGER)
            count += (int)rep->integer;
        else if (rep->type == REDIS_REPLY_STATUS)
            count++;
        else
            log_error("seq restore: redis refused a command reason=\"%s\"",
                      rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
        int bad = rep->type != REDIS_REPLY_INTEGER && rep->type != REDIS_REPLY_STATUS;
        freeReplyObject(rep);
        if (bad) {
            queued--;
            goto failed;
        }
    }
    return count;
failed:
    if (queued > 0)
        rds_discard(r);
    return -1;
}

int persist_seq_restore(struct rds *r, struct db *d, long long *restored)
{
    struct pipe p = {r, 0};
    MYSQL *m;
    int rc;
    long long users = 0, groups = 0;

    *restored = -1;
    if (restore_src == NULL && (restore_src = keys_lua(restore_group_lua)) == NULL)
        return MP_EAGAIN;
    int have = restored_keys(r, 0);
    if (have < 0)
        return MP_EAGAIN;
    if (have == key_shards())
        return MP_OK;
    log_warn("seq counters: " KEY_SEQ_RESTORED " is missing (a new Redis, or one that lost its data): "
             "restoring every user's counter and every group from MySQL; until then messages of users "
             "without a counter are refused",
             0);
    if ((m = db_conn(d)) == NULL)
        return MP_EAGAIN;
    rc = restore_counters(&p, d, m, &users);
    if (rc == MP_OK)
        rc = restore_group_next(&p, d, m);
    if (rc == MP_OK)
        rc = restore_groups(&p, d, m, &groups);
    if (rc == MP_OK)
        rc = pipe_flush(&p);
    if (rc != MP_OK) {
        rds_discard(r); /* replies may be left unread */
        return rc == MP_ENOMEM ? MP_EAGAIN : rc;
    }
    if (restored_keys(r, 1) != key_shards())
        return MP_EAGAIN;
    *restored = users;
    log_info("seq counters and groups restored from MySQL users=%lld groups=%lld", users, groups);
    return MP_OK;
}
