/* relay.h -- what reaches this node over Redis pub/sub (keys.h, bus.h).
 *
 * CHAN_NODE(<shard>, <this node>), one sharded channel per shard (relay.c): chat deliveries published by the
 * send, read and group scripts run for another node or for magpie-http, payload "<to> <from> <ts>\n<packet
 * JSON>" (the packet goes to every open chat connection of <to> and of <from>, the sender's other devices,
 * held here), "u <uid>\n<packet>" or a group delivery (push/chatpkt.h).
 * CHAN_CONTROL: magpie-http's commands (bus.h): kick, logout, deliver.
 */
#ifndef PUSH_RELAY_H
#define PUSH_RELAY_H

#include <stddef.h>

/* CHAN_NODE's payload is built and parsed by chatpkt_delivery / chatpkt_delivery_parse, CHAN_CONTROL's parsed
 * by chatpkt_control_parse (chatpkt.h): pure functions, unit-tested and fuzzed (tests/fuzz). */

/* Subscribe this node's CHAN_NODE of every shard and CHAN_CONTROL (before or after rdsa_start; after
 * keys_set_shards). Returns MP_OK or MP_ENOMEM. */
int relay_start(void);

/* Handle one payload of CHAN_NODE / CHAN_CONTROL; exposed for the subscriber and for tests. */
void relay_delivery(const char *payload, size_t len);
void relay_control(const char *payload, size_t len);

#endif
