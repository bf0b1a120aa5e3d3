/* packet.h -- a stored chat message as clients get it (SPEC §4, §4.1): {"id", "from", "to", "type", "msg",
 * "ts", "mid"} and, for the user it is served to, "seq". Built here for every place that serves one:
 * delivery and Y in magpie-push, H, GET /conversations in magpie-http.
 */
#ifndef MAGPIE_PACKET_H
#define MAGPIE_PACKET_H

#include <jansson.h>
#include <mysql.h>
#include <stddef.h>
#include <stdint.h>

/* The message as a JSON object (caller owns the reference); NULL when out of memory or the strings are not
 * UTF-8. mid travels as a decimal string (JavaScript numbers cannot hold it). */
json_t *packet_chat_json(const char *id, size_t id_len, int64_t from, int64_t to, char type, const char *body,
                         size_t body_len, int64_t ts, int64_t mid);

/* The same as a malloc'd compact JSON string (caller frees) and its length; NULL as above. */
char *packet_chat(const char *id, size_t id_len, int64_t from, int64_t to, char type, const char *body,
                  size_t body_len, int64_t ts, int64_t mid, size_t *len);

/* A group event as members get it (SPEC §4.2, push/group.h): {"id": "<mid>", "from": 0, "to": gid, "type":
 * "s", "msg": event, "ts", "mid"}, event being the JSON text of the event object. A malloc'd compact string
 * (caller frees) and its length; NULL when out of memory or event is not a JSON object. */
char *packet_event(int64_t gid, const char *event, size_t event_len, int64_t ts, int64_t mid, size_t *len);

/* A packet (a compact JSON object, as packet_chat makes) with ,"seq":seq added before its closing brace, as
 * the connections of one user get it. Returns a malloc'd string (caller frees) and its length, or NULL when
 * out of memory or packet is not an object. */
char *packet_with_seq(const char *packet, size_t len, int64_t seq, size_t *out_len);

/* The columns of the messages table a packet is made of, in the order packet_from_row reads them. */
#define PACKET_COLS  "id, client_id, from_uid, to_uid, type, body, created_ms"
#define PACKET_NCOLS 7

/* The packet of one row of PACKET_COLS (lens from mysql_fetch_lengths), like packet_chat; a row of type 's'
 * (a group event, body = the event's JSON) like packet_event. */
char *packet_from_row(MYSQL_ROW row, const unsigned long *lens, size_t *len);

#endif
