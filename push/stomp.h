/* stomp.h -- STOMP 1.2 on /ws (SPEC §4.3). The design is the comment at the top of stomp.c; the frames are
 * stompframe.h. */
#ifndef PUSH_STOMP_H
#define PUSH_STOMP_H

#include "proto.h"

extern const struct proto stomp_proto;

/* Register the session script and start the heart-beat sweep (before rdsa_start). Returns MP_OK. */
int stomp_start(void);

/* SIGTERM is done with the connections: stop the sweep. */
void stomp_stop(void);

#endif
