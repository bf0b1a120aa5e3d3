/* fronts.h -- the two front-ends that carry requests to http_dispatch().
 *
 * FastCGI (fcgi_front.c, libfcgi): behind nginx, the production path, on one unix socket: the one
 * magpie-http creates at http.fcgi_socket (mode http.fcgi_socket_mode), or a listening socket inherited on
 * fd 0 the way spawn-fcgi passes it. http.threads threads take the next connection with a request ready
 * from one epoll set; connections nginx keeps open (fastcgi_keep_conn) wait there between requests
 * without holding a thread.
 *
 * Standalone (mhd_front.c, libmicrohttpd): the same handlers on http.listen, for running without nginx; a
 * pool of http.threads epoll threads. The client address is the peer's (no proxy is trusted here).
 *
 * Both park /session_login in the long poll (longpoll.h) instead of holding a thread.
 * Each start function returns MP_OK (also when its front-end is turned off in the config) or MP_ERR after
 * logging why. Shutdown is two steps: stop accepting (new connections are refused), then stop (in-flight
 * requests are answered first).
 */
#ifndef MAGPIE_HTTP_FRONTS_H
#define MAGPIE_HTTP_FRONTS_H

int fcgi_front_start(void);
int fcgi_front_active(void);
void fcgi_front_stop_accepting(void);
void fcgi_front_stop(void);

int mhd_front_start(void);
int mhd_front_active(void);
void mhd_front_stop_accepting(void);
void mhd_front_stop(void);

#endif
