/* relay.h -- what reaches this node over Redis pub/sub (keys.h, bus.h).
 *
 * CHAN_NODE(<this node>): chat deliveries published by chat_send.c's script on another node, payload
 * "<to> <from> <ts>\n<packet JSON>": the packet goes to every open chat connection of <to> and of <from>
 * (the sender's other devices) held here.
 * CHAN_CONTROL: magpie-http's commands (bus.h): kick, logout, deliver.
 */
#ifndef PUSH_RELAY_H
#define PUSH_RELAY_H

#include <stddef.h>

/* CHAN_NODE's payload is built and parsed by chatpkt_delivery / chatpkt_delivery_parse, CHAN_CONTROL's parsed
 * by chatpkt_control_parse (chatpkt.h): pure functions, unit-tested and fuzzed (tests/fuzz). */

/* Subscribe both channels (before or after rdsa_start). Returns MP_OK or MP_ENOMEM. */
int relay_start(void);

/* Handle one payload of CHAN_NODE / CHAN_CONTROL; exposed for the subscriber and for tests. */
void relay_delivery(const char *payload, size_t len);
void relay_control(const char *payload, size_t len);

#endif
