/* server.h -- the libwebsockets context of this node: one vhost on push.listen, on the daemon's libuv loop
 * (LWS_SERVER_OPTION_LIBUV with a foreign loop: libwebsockets loads its evlib_uv plugin and runs inside
 * the loop the daemon owns, next to hiredis and the timers).
 */
#ifndef PUSH_SERVER_H
#define PUSH_SERVER_H

/* Create the context and start listening. Returns MP_OK, or MP_ERR after logging why. */
int server_start(void);

/* Begin destroying the context: remaining connections are closed; the rest happens on the loop. */
void server_stop(void);

/* After the loop has ended: free what is left of the context. */
void server_free(void);

#endif
