/* rcluster-probe -- shared/rcluster.c driven line by line, for tests/integration/test_rcluster.py (built by
 * make, not installed). It is the real client against the real cluster; the test moves slots and kills
 * masters around it and reads what it answers.
 *
 *   rcluster-probe -c magpie.conf        (redis.cluster names the seeds)
 *
 * Each line on standard input is one request, its words separated by single spaces; each gets one line
 * on standard output:
 *   COMMAND ARGS...   a Redis command through the cluster client:
 *                     "<host>:<port> STR <value>" | "... INT <n>" | "... NIL" | "... STATUS <text>" |
 *                     "... ERROR <text>" | "... ARRAY <n>" (the node that answered first), or
 *                     "FAIL EAGAIN|EINVAL <why>" when the client gave no reply
 *   .slot KEY         "INT <slot>" as the client computes it
 *   .owner SLOT       "NODE <host>:<port>" from the client's map, or "NONE"
 *   .refresh          "OK" or "FAIL EAGAIN <why>"
 *   .pipe CMD ARGS... | CMD ARGS... | ...   the commands through rcl_pipeline (one batch):
 *                     "PIPE <answer> | <answer> | ..." in order, each "STR <value>", "INT <n>", "NIL",
 *                     "STATUS <text>", "ERROR <text>", "ARRAY <n>" or "FAIL" (no reply)
 *   .stats            "STATS commands=.. moved=.. ask=.. tryagain=.. clusterdown=.. conn_errors=..
 *                     refreshes=.. refresh_failures=.. refused=.."
 * Logs go to standard error. At end of input it closes the client and exits 0.
 */
#include "cli.h"
#include "config.h"
#include "log.h"
#include "magpie.h"
#include "rcluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WORDS 256

static const char *err_name(int err)
{
    return err == MP_EINVAL ? "EINVAL" : "EAGAIN";
}

static void print_reply(const struct rcl *c, const redisReply *r)
{
    printf("%s:%d ", c->last_host, c->last_port);
    switch (r->type) {
    case REDIS_REPLY_STRING:
        printf("STR %.*s\n", (int)r->len, r->str);
        break;
    case REDIS_REPLY_INTEGER:
        printf("INT %lld\n", r->integer);
        break;
    case REDIS_REPLY_NIL:
        printf("NIL\n");
        break;
    case REDIS_REPLY_STATUS:
        printf("STATUS %s\n", r->str);
        break;
    case REDIS_REPLY_ERROR:
        printf("ERROR %s\n", r->str);
        break;
    case REDIS_REPLY_ARRAY:
        printf("ARRAY %zu\n", r->elements);
        break;
    default:
        printf("TYPE %d\n", r->type);
    }
}

/* .pipe: the words split at "|" into commands, run as one rcl_pipeline. */
static void pipe_request(struct rcl *c, int argc, const char **argv, const size_t *argvlen)
{
    char *cmds[MAX_WORDS];
    size_t lens[MAX_WORDS];
    redisReply *out[MAX_WORDS];
    int n = 0;

    for (int i = 0; i < argc; n++) {
        int j = i;
        while (j < argc && strcmp(argv[j], "|") != 0)
            j++;
        lens[n] = (size_t)redisFormatCommandArgv(&cmds[n], j - i, argv + i, argvlen + i);
        i = j + 1;
    }
    rcl_pipeline(c, n, cmds, lens, out);
    printf("PIPE");
    for (int i = 0; i < n; i++) {
        const redisReply *r = out[i];
        printf("%s", i > 0 ? " |" : "");
        if (r == NULL)
            printf(" FAIL");
        else if (r->type == REDIS_REPLY_STRING)
            printf(" STR %.*s", (int)r->len, r->str);
        else if (r->type == REDIS_REPLY_INTEGER)
            printf(" INT %lld", r->integer);
        else if (r->type == REDIS_REPLY_NIL)
            printf(" NIL");
        else if (r->type == REDIS_REPLY_STATUS)
            printf(" STATUS %s", r->str);
        else if (r->type == REDIS_REPLY_ERROR)
            printf(" ERROR %s", r->str);
        else
            printf(" ARRAY %zu", r->elements);
        if (r != NULL)
            freeReplyObject(out[i]);
        redisFreeCommand(cmds[i]);
    }
    printf("\n");
}

static void request(struct rcl *c, char *line)
{
    const char *argv[MAX_WORDS];
    size_t argvlen[MAX_WORDS];
    char *save = NULL;
    int argc = 0;

    for (char *w = strtok_r(line, " ", &save); w != NULL && argc < MAX_WORDS;
         w = strtok_r(NULL, " ", &save)) {
        argv[argc] = w;
        argvlen[argc++] = strlen(w);
    }
    if (argc == 0) {
        printf("FAIL EINVAL empty line\n");
    } else if (strcmp(argv[0], ".slot") == 0 && argc == 2) {
        printf("INT %d\n", rcl_keyslot(argv[1], argvlen[1]));
    } else if (strcmp(argv[0], ".owner") == 0 && argc == 2) {
        const struct rcl_node *n = c->map ? rcl_map_owner(c->map, atoi(argv[1])) : NULL;
        if (n != NULL)
            printf("NODE %s:%d\n", n->host, n->port);
        else
            printf("NONE\n");
    } else if (strcmp(argv[0], ".refresh") == 0) {
        if (rcl_refresh(c) == MP_OK)
            printf("OK\n");
        else
            printf("FAIL EAGAIN %s\n", c->errstr);
    } else if (strcmp(argv[0], ".stats") == 0) {
        const struct rcl_stats *s = &c->stats;
        printf("STATS commands=%llu moved=%llu ask=%llu tryagain=%llu clusterdown=%llu conn_errors=%llu "
               "refreshes=%llu refresh_failures=%llu refused=%llu\n",
               (unsigned long long)s->commands, (unsigned long long)s->moved, (unsigned long long)s->ask,
               (unsigned long long)s->tryagain, (unsigned long long)s->clusterdown,
               (unsigned long long)s->conn_errors, (unsigned long long)s->refreshes,
               (unsigned long long)s->refresh_failures, (unsigned long long)s->refused);
    } else if (strcmp(argv[0], ".pipe") == 0) {
        pipe_request(c, argc - 1, argv + 1, argvlen + 1);
    } else if (argv[0][0] == '.') {
        printf("FAIL EINVAL unknown probe request %s\n", argv[0]);
    } else {
        redisReply *r = rcl_cmdargv(c, argc, argv, argvlen);
        if (r == NULL) {
            printf("FAIL %s %s\n", err_name(c->err), c->errstr);
        } else {
            print_reply(c, r);
            freeReplyObject(r);
        }
    }
    fflush(stdout);
}

int main(int argc, char **argv)
{
    struct magpie_config cfg;
    struct rcl c;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = cli_start(argc, argv, NULL, NULL, NULL, NULL, &cfg);

    if (rc >= 0)
        return rc;
    log_open("rcluster-probe", cfg.log.level, "");
    if (rcl_init(&c, &cfg) != MP_OK) {
        fprintf(stderr, "rcluster-probe: %s\n", c.errstr);
        config_free(&cfg);
        return 1;
    }
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        request(&c, line);
    }
    free(line);
    rcl_close(&c);
    config_free(&cfg);
    return 0;
}
