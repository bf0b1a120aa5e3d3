/* packet.c -- see packet.h. */
#include "packet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *packet_chat_json(const char *id, size_t id_len, int64_t from, int64_t to, char type, const char *body,
                         size_t body_len, int64_t ts, int64_t mid)
{
    char t[2] = {type, '\0'}, m[24];
    snprintf(m, sizeof(m), "%lld", (long long)mid);
    return json_pack("{s:s%,s:I,s:I,s:s,s:s%,s:I,s:s}", "id", id, id_len, "from", (json_int_t)from, "to",
                     (json_int_t)to, "type", t, "msg", body, body_len, "ts", (json_int_t)ts, "mid", m);
}

char *packet_chat(const char *id, size_t id_len, int64_t from, int64_t to, char type, const char *body,
                  size_t body_len, int64_t ts, int64_t mid, size_t *len)
{
    json_t *obj = packet_chat_json(id, id_len, from, to, type, body, body_len, ts, mid);
    char *s = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (s != NULL && len != NULL)
        *len = strlen(s);
    return s;
}

char *packet_event(int64_t gid, const char *event, size_t event_len, int64_t ts, int64_t mid, size_t *len)
{
    char m[24];
    json_t *ev = json_loadb(event, event_len, JSON_REJECT_DUPLICATES, NULL), *obj = NULL;
    char *s = NULL;

    snprintf(m, sizeof(m), "%lld", (long long)mid);
    if (json_is_object(ev))
        obj = json_pack("{s:s,s:i,s:I,s:s,s:O,s:I,s:s}", "id", m, "from", 0, "to", (json_int_t)gid, "type", "s",
                        "msg", ev, "ts", (json_int_t)ts, "mid", m);
    if (obj != NULL)
        s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    json_decref(ev);
    if (s != NULL && len != NULL)
        *len = strlen(s);
    return s;
}

char *packet_with_seq(const char *packet, size_t len, int64_t seq, size_t *out_len)
{
    char tail[40];
    int n;
    char *out;

    if (len < 2 || packet[0] != '{' || packet[len - 1] != '}')
        return NULL;
    n = snprintf(tail, sizeof(tail), "%s\"seq\":%lld}", len > 2 ? "," : "", (long long)seq);
    if ((out = malloc(len - 1 + (size_t)n + 1)) == NULL)
        return NULL;
    memcpy(out, packet, len - 1);
    memcpy(out + len - 1, tail, (size_t)n + 1);
    *out_len = len - 1 + (size_t)n;
    return out;
}

static int64_t num(const char *s)
{
    return s ? (int64_t)strtoll(s, NULL, 10) : 0;
}

char *packet_from_row(MYSQL_ROW row, const unsigned long *lens, size_t *len)
{
    if (row[4] != NULL && row[4][0] == 's')
        return packet_event(num(row[3]), row[5] ? row[5] : "", lens[5], num(row[6]), num(row[0]), len);
    return packet_chat(row[1] ? row[1] : "", lens[1], num(row[2]), num(row[3]),
                       row[4] && row[4][0] ? row[4][0] : 't', row[5] ? row[5] : "", lens[5], num(row[6]),
                       num(row[0]), len);
}
