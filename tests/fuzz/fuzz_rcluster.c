/* fuzz_rcluster.c -- what the Redis Cluster client (shared/rcluster.c) reads from a server it does not
 * control: a CLUSTER SLOTS answer (rcl_map_parse_slots) and any reply that may be a redirect
 * (rcl_classify), after hiredis' own reader made replies of the bytes; and the commands it routes
 * (rcl_command_slot), which come from Magpie's own code but hold user ids inside their keys.
 *
 * Input: byte 0 even: the rest is RESP, every reply in it is parsed as a CLUSTER SLOTS answer and
 * classified; odd: the rest is a command, its arguments separated by '\n'.
 *
 * Invariants: a map that parsed names at most RCL_MAX_MASTERS masters, each with a host that fits and a
 * port in 1..65535, and every slot's owner is one of them or none; one that did not parse is empty and says
 * why. A MOVED or ASK gives a slot in 0..16383, a port in 1..65535 and a host that fits. A command's slot is
 * -1 or in 0..16383, and a refusal says why.
 */
#include "fuzz.h"
#include "magpie.h"
#include "rcluster.h"

#include <string.h>

#define MAX_ARGS 256

static struct rcl_map map;

/* A reply as a CLUSTER SLOTS answer. */
static void check_map(const redisReply *r)
{
    char why[256] = "";

    if (rcl_map_parse_slots(&map, r, "127.0.0.1", why, sizeof(why)) == MP_OK) {
        FUZZ_CHECK(map.nnodes >= 0 && map.nnodes <= RCL_MAX_MASTERS);
        for (int i = 0; i < map.nnodes; i++) {
            FUZZ_CHECK(strlen(map.node[i].host) < RCL_HOST_LEN);
            FUZZ_CHECK(map.node[i].port >= 1 && map.node[i].port <= 65535);
        }
        for (int s = 0; s < RCL_SLOTS; s++)
            FUZZ_CHECK(map.owner[s] >= -1 && map.owner[s] < map.nnodes);
    } else {
        FUZZ_CHECK(map.nnodes == 0 && why[0] != '\0');
        FUZZ_CHECK(rcl_map_owner(&map, 0) == NULL);
    }
}

/* A reply, and every reply inside it, as a possible redirect. */
static void check_redirect(const redisReply *r)
{
    struct rcl_redirect rd;
    enum rcl_kind k = rcl_classify(r, "127.0.0.1", &rd);

    if (k == RCL_MOVED || k == RCL_ASK) {
        FUZZ_CHECK(rd.slot >= 0 && rd.slot < RCL_SLOTS);
        FUZZ_CHECK(rd.port >= 1 && rd.port <= 65535);
        FUZZ_CHECK(strlen(rd.host) < RCL_HOST_LEN && rd.host[0] != '\0');
    }
    if (r->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < r->elements; i++)
            check_redirect(r->element[i]);
}

static void check_command(const char *data, size_t size)
{
    const char *argv[MAX_ARGS];
    size_t argvlen[MAX_ARGS];
    int argc = 0, slot = -2, rv;
    char why[256] = "";
    const char *p = data, *end = data + size;

    while (p <= end && argc < MAX_ARGS) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        argv[argc] = p;
        argvlen[argc++] = (size_t)(e - p);
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    rv = rcl_command_slot(argc, argv, argvlen, &slot, why, sizeof(why));
    if (rv == MP_OK)
        FUZZ_CHECK(slot >= -1 && slot < RCL_SLOTS);
    else
        FUZZ_CHECK(rv == MP_EINVAL && why[0] != '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf;

    if (size < 1)
        return 0;
    /* exactly the input's bytes, so a read past them is a sanitizer report */
    buf = malloc(size - 1 ? size - 1 : 1);
    FUZZ_CHECK(buf != NULL);
    memcpy(buf, data + 1, size - 1);
    if (data[0] % 2 == 0) {
        redisReader *rd = redisReaderCreate();
        void *r = NULL;
        FUZZ_CHECK(rd != NULL);
        if (redisReaderFeed(rd, buf, size - 1) == REDIS_OK)
            while (redisReaderGetReply(rd, &r) == REDIS_OK && r != NULL) {
                check_map(r);
                check_redirect(r);
                freeReplyObject(r);
                r = NULL;
            }
        redisReaderFree(rd);
    } else {
        check_command(buf, size - 1);
    }
    free(buf);
    return 0;
}
