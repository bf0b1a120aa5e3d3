/* ops.c -- for the operator: GET /healthz (200 when Redis and MySQL answer, else 503 naming which did not)
 * and GET /metrics (Prometheus text; nginx serves it to loopback only). */
#include "call.h"
#include "handlers.h"
#include "magpie.h"
#include "metrics.h"

#include <stdio.h>
#include <string.h>

void ops_healthz(struct call *c)
{
    redisReply *rep = rds_cmd(&c->w->rds, "PING");
    int redis_up = rep != NULL && rep->type == REDIS_REPLY_STATUS;
    int mysql_up = db_exec(&c->w->db, "DO 1", 4) == MP_OK;
    char msg[96];

    freeReplyObject(rep);
    if (redis_up && mysql_up) {
        reply(c, API_OK, json_pack("{s:s, s:s}", "redis", "ok", "mysql", "ok"));
        return;
    }
    snprintf(msg, sizeof(msg), "%s%s%s unavailable", redis_up ? "" : "redis",
             !redis_up && !mysql_up ? " and " : "", mysql_up ? "" : "mysql");
    reply_msg(c, API_UNAVAILABLE, msg,
              json_pack("{s:s, s:s}", "redis", redis_up ? "ok" : "down", "mysql", mysql_up ? "ok" : "down"));
}

void ops_metrics(struct call *c)
{
    size_t len;
    char *text = metrics_render(&len);
    if (text == NULL) {
        reply_unavailable(c, "memory");
        return;
    }
    reply_raw(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}
