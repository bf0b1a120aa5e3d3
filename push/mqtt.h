/* mqtt.h -- MQTT 3.1.1 on /ws (SPEC §4.3). The design is the comment at the top of mqtt.c; the packets are
 * mqttpkt.h. */
#ifndef PUSH_MQTT_H
#define PUSH_MQTT_H

#include "proto.h"

extern const struct proto mqtt_proto;

/* Start the keep-alive sweep. Returns MP_OK. */
int mqtt_start(void);

/* SIGTERM is done with the connections: stop the sweep. */
void mqtt_stop(void);

#endif
