/* chatpkt.c -- see chatpkt.h. */
#include "chatpkt.h"
#include "bus.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GEO_MAX_LAT 85.05112878 /* Redis GEO stores only this band (Web Mercator) */

const char *chatpkt_parse(const char *buf, size_t len, struct chatpkt *p)
{
    json_t *v;
    const char *s;

    memset(p, 0, sizeof(*p));
    p->id = "";
    p->root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(p->root))
        return CHAT_E_MALFORMED;
    p->to = json_object_get(p->root, "to");
    p->msg = json_object_get(p->root, "msg");

    v = json_object_get(p->root, "id");
    if (!json_is_string(v) || json_string_length(v) < 1 || json_string_length(v) > CHAT_MAX_ID)
        return CHAT_E_BAD_ID;
    p->id = json_string_value(v);
    p->id_len = json_string_length(v);

    v = json_object_get(p->root, "type");
    if (!json_is_string(v) || json_string_length(v) != 1)
        return CHAT_E_BAD_TYPE;
    s = json_string_value(v);
    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
        return CHAT_E_BAD_TYPE;
    p->type = s[0];
    return NULL;
}

void chatpkt_free(struct chatpkt *p)
{
    json_decref(p->root);
    memset(p, 0, sizeof(*p));
    p->id = "";
}

size_t chatpkt_utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            n++;
    return n;
}

/* A positive id from a JSON integer or a string of 1..max_digits digits that fits an int64_t; 0 when it is
 * neither. User ids take up to 18 digits; message ids up to 19 (mids travel as strings, SPEC §4). */
static int64_t positive_id(const json_t *v, size_t max_digits)
{
    if (json_is_integer(v))
        return json_integer_value(v) > 0 ? json_integer_value(v) : 0;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        int64_t id = 0;
        if (n < 1 || n > max_digits || strspn(s, "0123456789") != n)
            return 0;
        for (size_t i = 0; i < n; i++) {
            if (id > (INT64_MAX - (s[i] - '0')) / 10)
                return 0;
            id = id * 10 + (s[i] - '0');
        }
        return id;
    }
    return 0;
}

static int64_t uid_of(const json_t *v)
{
    return positive_id(v, 18);
}

const char *chatpkt_message(const struct chatpkt *p, int64_t self, struct chat_msg *out)
{
    size_t max = p->type == 'i' ? CHAT_MAX_IMAGE : CHAT_MAX_TEXT;

    memset(out, 0, sizeof(*out));
    if (!json_is_integer(p->to) || json_integer_value(p->to) <= 0)
        return CHAT_E_BAD_TO;
    out->to = json_integer_value(p->to);
    if (out->to == self)
        return CHAT_E_TO_SELF;
    if (!json_is_string(p->msg))
        return CHAT_E_BAD_MSG;
    out->body = json_string_value(p->msg);
    out->body_len = json_string_length(p->msg);
    if (out->body_len == 0)
        return CHAT_E_EMPTY;
    /* max characters of at most 4 UTF-8 bytes each always fit the stream's MQ_MAX_BODY (4096) */
    if (out->body_len > max * 4 || chatpkt_utf8_chars(out->body, out->body_len) > max)
        return CHAT_E_TOO_LONG;
    return NULL;
}

const char *chatpkt_online(const struct chatpkt *p, int64_t *uid)
{
    *uid = uid_of(p->msg);
    return *uid > 0 ? NULL : CHAT_E_BAD_UID;
}

const char *chatpkt_history(const struct chatpkt *p, struct chat_history *out)
{
    json_t *since, *with, *limit;

    out->since = 0;
    out->with = 0;
    out->limit = CHAT_HISTORY_DEFAULT;
    if (json_is_integer(p->msg)) {
        since = p->msg;
    } else if (json_is_object(p->msg)) {
        since = json_object_get(p->msg, "since");
        with = json_object_get(p->msg, "with");
        limit = json_object_get(p->msg, "limit");
        if (with != NULL && !json_is_null(with) && (out->with = uid_of(with)) <= 0)
            return CHAT_E_BAD_HISTORY;
        if (limit != NULL && !json_is_null(limit)) {
            if (!json_is_integer(limit) || json_integer_value(limit) < 1 ||
                json_integer_value(limit) > CHAT_HISTORY_MAX)
                return CHAT_E_BAD_HISTORY;
            out->limit = (int)json_integer_value(limit);
        }
    } else {
        return CHAT_E_BAD_HISTORY;
    }
    if (!json_is_integer(since) || json_integer_value(since) < 0)
        return CHAT_E_BAD_HISTORY;
    out->since = json_integer_value(since);
    return NULL;
}

const char *chatpkt_sync(const struct chatpkt *p, struct chat_sync *out)
{
    json_t *after, *limit;

    out->after = 0;
    out->limit = CHAT_SYNC_DEFAULT;
    if (!json_is_object(p->msg))
        return CHAT_E_BAD_SYNC;
    after = json_object_get(p->msg, "after");
    limit = json_object_get(p->msg, "limit");
    if (!json_is_integer(after) || json_integer_value(after) < 0)
        return CHAT_E_BAD_SYNC;
    if (limit != NULL && !json_is_null(limit)) {
        if (!json_is_integer(limit) || json_integer_value(limit) < 1 ||
            json_integer_value(limit) > CHAT_SYNC_MAX)
            return CHAT_E_BAD_SYNC;
        out->limit = (int)json_integer_value(limit);
    }
    out->after = json_integer_value(after);
    return NULL;
}

const char *chatpkt_read(const struct chatpkt *p, int64_t self, struct chat_read *out)
{
    json_t *with, *group;

    memset(out, 0, sizeof(*out));
    if (!json_is_object(p->msg))
        return CHAT_E_BAD_READ;
    with = json_object_get(p->msg, "with");
    group = json_object_get(p->msg, "group");
    if ((with != NULL) == (group != NULL))
        return CHAT_E_BAD_READ;
    if (with != NULL && ((out->with = uid_of(with)) <= 0 || out->with == self))
        return CHAT_E_BAD_READ;
    if (group != NULL && (out->group = uid_of(group)) <= 0)
        return CHAT_E_BAD_READ;
    if ((out->mid = positive_id(json_object_get(p->msg, "mid"), 19)) <= 0)
        return CHAT_E_BAD_READ;
    return NULL;
}

const char *chatpkt_order(const struct chatpkt *p, char *order, size_t order_size)
{
    if (json_is_integer(p->msg) && json_integer_value(p->msg) > 0) {
        snprintf(order, order_size, "%lld", (long long)json_integer_value(p->msg));
        return NULL;
    }
    if (json_is_string(p->msg)) {
        const char *s = json_string_value(p->msg);
        size_t n = json_string_length(p->msg);
        if (n < 1 || n > CHAT_MAX_ORDER || n >= order_size)
            return CHAT_E_BAD_ORDER;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
                return CHAT_E_BAD_ORDER;
        memcpy(order, s, n + 1);
        return NULL;
    }
    return CHAT_E_BAD_ORDER;
}

/* A finite JSON number (integer or real). */
static int number_of(const json_t *v, double *out)
{
    if (!json_is_number(v))
        return -1;
    *out = json_number_value(v);
    return isfinite(*out) ? 0 : -1;
}

const char *chatpkt_site(const struct chatpkt *p, double *lon, double *lat)
{
    json_t *x;
    if (!json_is_object(p->msg))
        return CHAT_E_BAD_SITE;
    x = json_object_get(p->msg, "longitude");
    if (x == NULL)
        x = json_object_get(p->msg, "longtitude");
    if (number_of(x, lon) != 0 || number_of(json_object_get(p->msg, "latitude"), lat) != 0)
        return CHAT_E_BAD_SITE;
    if (*lon < -180 || *lon > 180 || *lat < -GEO_MAX_LAT || *lat > GEO_MAX_LAT)
        return CHAT_E_BAD_SITE;
    return NULL;
}

/* ---- server packets ---- */

static char *dump(json_t *obj, size_t *len)
{
    char *s = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (s != NULL && len != NULL)
        *len = strlen(s);
    return s;
}

char *chatpkt_reply_ex(const char *id, size_t id_len, char type, json_t *msg, json_t *extra, size_t *len)
{
    char t[2] = {type, '\0'};
    json_t *obj = json_pack("{s:s%,s:i,s:s,s:o}", "id", id ? id : "", id ? id_len : 0, "from", 0, "type", t,
                            "msg", msg ? msg : json_null());
    if (obj != NULL && extra != NULL && json_object_update(obj, extra) != 0) {
        json_decref(obj);
        obj = NULL;
    }
    json_decref(extra);
    return dump(obj, len);
}

char *chatpkt_reply(const char *id, size_t id_len, char type, json_t *msg, size_t *len)
{
    return chatpkt_reply_ex(id, id_len, type, msg, NULL, len);
}

/* ---- between nodes ---- */

char *chatpkt_delivery(int64_t to, int64_t from, int64_t ts, const char *packet, size_t len, size_t *out_len)
{
    char head[80];
    int n = snprintf(head, sizeof(head), "%lld %lld %lld\n", (long long)to, (long long)from, (long long)ts);
    char *p = malloc((size_t)n + len);
    if (p == NULL)
        return NULL;
    memcpy(p, head, (size_t)n);
    memcpy(p + n, packet, len);
    *out_len = (size_t)n + len;
    return p;
}

/* A decimal number of 1..18 digits at *s (before end), followed by sep; advances *s past sep. */
static int take_number(const char **s, const char *end, char sep, int64_t *out)
{
    int64_t v = 0;
    int digits = 0;
    while (*s < end && **s >= '0' && **s <= '9' && digits < 18) {
        v = v * 10 + (**s - '0');
        (*s)++;
        digits++;
    }
    if (digits == 0 || *s == end || **s != sep)
        return -1;
    (*s)++;
    *out = v;
    return 0;
}

int chatpkt_delivery_parse(const char *payload, size_t len, struct chat_delivery *d)
{
    const char *s = payload, *end = payload + len;
    if (take_number(&s, end, ' ', &d->from_seq) != 0 || take_number(&s, end, ' ', &d->to_seq) != 0 ||
        take_number(&s, end, ' ', &d->to) != 0 || take_number(&s, end, ' ', &d->from) != 0 ||
        take_number(&s, end, '\n', &d->ts) != 0 || d->to <= 0 || d->from <= 0 || d->from_seq < 0 ||
        d->to_seq < 0 || (d->from_seq == 0 && d->to_seq == 0))
        return -1;
    d->packet = s;
    d->packet_len = (size_t)(end - s);
    return 0;
}

int chatpkt_user_packet_parse(const char *payload, size_t len, int64_t *uid, const char **packet,
                              size_t *packet_len)
{
    const char *s = payload, *end = payload + len;
    if (len < 2 || s[0] != 'u' || s[1] != ' ')
        return -1;
    s += 2;
    if (take_number(&s, end, '\n', uid) != 0 || *uid <= 0 || s == end)
        return -1;
    *packet = s;
    *packet_len = (size_t)(end - s);
    return 0;
}

int chatpkt_control_parse(const char *payload, size_t len, struct chat_control *out)
{
    const char *what;
    json_t *uid;

    memset(out, 0, sizeof(*out));
    out->root = json_loadb(payload, len, 0, NULL);
    what = json_string_value(json_object_get(out->root, "cmd"));
    uid = json_object_get(out->root, "uid");
    if (what == NULL || !json_is_integer(uid) || json_integer_value(uid) <= 0)
        return -1;
    out->uid = json_integer_value(uid);
    if (strcmp(what, BUS_CMD_KICK) == 0) {
        out->cmd = CHAT_CTL_KICK;
    } else if (strcmp(what, BUS_CMD_LOGOUT) == 0) {
        out->cmd = CHAT_CTL_LOGOUT;
        out->sid = json_string_value(json_object_get(out->root, "sid"));
        if (out->sid == NULL || out->sid[0] == '\0')
            return -1;
    } else if (strcmp(what, BUS_CMD_DELIVER) == 0) {
        out->cmd = CHAT_CTL_DELIVER;
        out->packet = json_object_get(out->root, "packet");
        if (!json_is_object(out->packet))
            return -1;
    } else {
        return -2;
    }
    return 0;
}

void chatpkt_control_free(struct chat_control *c)
{
    json_decref(c->root);
    memset(c, 0, sizeof(*c));
}

/* A positive decimal number at *p (before end) without sign or leading spaces, advanced past it; -1 when
 * there is none or it overflows. */
static int64_t read_positive(const char **p, const char *end)
{
    int64_t v = 0;
    const char *s = *p;
    if (s >= end || *s < '1' || *s > '9')
        return -1;
    for (; s < end && *s >= '0' && *s <= '9'; s++) {
        if (v > (INT64_MAX - (*s - '0')) / 10)
            return -1;
        v = v * 10 + (*s - '0');
    }
    *p = s;
    return v;
}

int chatpkt_group_pair_next(const char **p, const char *end, int64_t *uid, int64_t *seq)
{
    const char *s = *p;
    if (s >= end)
        return 0;
    if ((*uid = read_positive(&s, end)) < 0 || s >= end || *s++ != ' ' || (*seq = read_positive(&s, end)) < 0)
        return -1;
    if (s < end && *s++ != ' ')
        return -1;
    *p = s;
    return 1;
}

int chatpkt_group_delivery_parse(const char *payload, size_t len, struct group_delivery *d)
{
    const char *end = payload + len, *p = payload, *nl;
    int64_t uid, seq;
    int rc;

    if (len < 2 || payload[0] != 'g' || payload[1] != ' ')
        return -1;
    p += 2;
    if ((d->ts = read_positive(&p, end)) < 0 || p >= end || *p++ != '\n')
        return -1;
    if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL || nl + 1 >= end)
        return -1;
    d->pairs = p;
    d->pairs_len = (size_t)(nl - p);
    while ((rc = chatpkt_group_pair_next(&p, nl, &uid, &seq)) == 1)
        ;
    if (rc < 0)
        return -1;
    d->packet = nl + 1;
    d->packet_len = (size_t)(end - nl - 1);
    return 0;
}
