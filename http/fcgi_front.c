/* fcgi_front.c -- the FastCGI front-end (see fronts.h).
 *
 * Connections, not threads, wait. nginx with `fastcgi_keep_conn on` (the site conf) keeps a connection
 * open after a request (FCGI_KEEP_CONN) and sends a later request on it. libfcgi alone would keep the
 * handler thread in a blocking read on that connection until nginx closes it, so every idle kept
 * connection held a thread and requests on other connections queued behind them (tried 2026-11: a p99 of
 * ~1 s, bench/README.md). Here the listening socket and every connection between two requests sit in one
 * epoll set, each armed one-shot, and whichever handler thread is free takes the next one that is ready:
 * a connection is served by one thread at a time, and an idle one holds nothing but its fd. libfcgi still
 * parses and writes every request (FCGX_Accept_r reads a request on the connection it is handed when the
 * FCGX_Request has one open; its listening socket is -1 here, so it never accepts by itself).
 *
 * A web server that does not ask to keep the connection (no FCGI_KEEP_CONN) gets it closed after each
 * answer, as before. An idle kept connection is closed by nginx only (its upstream keepalive_timeout):
 * closing one ourselves could cross a request nginx is already sending on it, which nginx cannot retry
 * (a POST) and would answer 502.
 */
#include "fronts.h"
#include "http.h"
#include "log.h"
#include "longpoll.h"
#include "magpie.h"

#include <errno.h>
#include <fcgiapp.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define FCGI_INHERITED_FD 0   /* spawn-fcgi and the FastCGI spec put the listening socket on fd 0 */
#define ACCEPT_BACKOFF_MS 100 /* out of file descriptors: wait this long before accepting again */

static struct {
    int fd;
    int created; /* we made the socket file (and remove it at exit) */
    int local;   /* the listener is a unix socket: a connection is closed at once, not lingering (finish) */
    int ep;      /* epoll: the listener, the stop eventfd and every idle connection, each one-shot */
    int stop_fd;
    atomic_int stopping;
    pthread_mutex_t ep_lock; /* long-poll threads hand connections back under it; stop closes ep under it */
    const char *allowed;     /* FCGI_WEB_SERVER_ADDRS on a TCP listener: the web servers' IPv4 addresses */
    pthread_t *threads;
    int nthreads;
} fc = {.fd = -1, .ep = -1, .stop_fd = -1, .ep_lock = PTHREAD_MUTEX_INITIALIZER};

/* One request on one connection. A handler thread reuses its own; a parked /session_login takes it along
 * to the long poll (and the thread makes a new one). */
struct fconn {
    FCGX_Request rq;
    int in_set; /* the connection's fd is in fc.ep (disarmed while it is served) */
    int synced; /* the request's input was read to its end: the next request may follow on this connection */
};

static void fcgi_deliver(void *ctx, struct http_resp *resp);
static const struct lp_front fcgi_lp = {fcgi_deliver};

int fcgi_front_active(void)
{
    return fc.fd >= 0;
}

/* Is fd 0 a listening socket (we were started by spawn-fcgi or a FastCGI-aware supervisor)? */
static int inherited_listener(void)
{
    int v = 0;
    socklen_t len = sizeof(v);
    return getsockopt(FCGI_INHERITED_FD, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0 && v == 1;
}

/* Create, bind and listen on the unix socket at path with the given mode. A leftover socket file from a
 * previous run is replaced; a socket some live process still answers on is not. */
static int make_socket(const char *path, int mode)
{
    struct sockaddr_un sa;
    struct stat st;
    int fd;

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa.sun_path)) {
        log_error("http.fcgi_socket is too long for a unix socket path=%s", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    if (lstat(path, &st) == 0) {
        int probe;
        if (!S_ISSOCK(st.st_mode)) {
            log_error("http.fcgi_socket exists and is not a socket path=%s", path);
            return -1;
        }
        probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            close(probe);
            log_error("another process is serving http.fcgi_socket path=%s", path);
            return -1;
        }
        if (probe >= 0)
            close(probe);
        unlink(path);
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_error("cannot create the FastCGI socket errno=%d", errno);
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        log_error("cannot bind the FastCGI socket path=%s errno=%d", path, errno);
        close(fd);
        return -1;
    }
    /* bind() applied the umask; the configured mode is what nginx's user needs. */
    if (chmod(path, (mode_t)mode) != 0 || listen(fd, SOMAXCONN) != 0) {
        log_error("cannot set up the FastCGI socket path=%s errno=%d", path, errno);
        close(fd);
        unlink(path);
        return -1;
    }
    return fd;
}

/* Arm fd in the epoll set for its next request (one-shot: one thread gets it). 0, or -1 with errno. */
static int arm(int fd, int in_set)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.fd = fd};
    return epoll_ctl(fc.ep, in_set ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
}

/* End the request. libfcgi writes FCGI_END_REQUEST, then closes the connection unless the web server asked
 * to keep it (FCGI_KEEP_CONN) and the request's input was read to its end; a kept connection goes back to
 * the epoll set. On a unix socket the request is detached (fcgi_thread), which makes libfcgi close
 * outright: its own close shuts the socket down for writing and waits for the peer to close first (a
 * lingering close, which keeps a TCP peer from being reset while it still sends), a poll, a read and a
 * wake-up per connection, and on a unix socket nothing is reset -- the peer reads everything written
 * before it sees the close. from_longpoll: called on a long-poll thread, which may run after the handler
 * threads stopped. */
static void finish(struct fconn *c, int from_longpoll)
{
    FCGX_Request *rq = &c->rq;
    int fd;

    if (!c->synced)
        rq->keepConnection = 0;
    FCGX_Finish_r(rq); /* rq->detached was set when the connection was taken (fcgi_thread) */
    fd = rq->ipcFd;    /* still open: kept */
    rq->ipcFd = -1;
    if (fd < 0)
        return;
    if (from_longpoll)
        pthread_mutex_lock(&fc.ep_lock);
    if (atomic_load(&fc.stopping) || arm(fd, c->in_set) != 0) {
        /* Stopping: the connection ends here (nginx sees it close before it sends on it again, or answers
         * a request it sent meanwhile with 502 -> 503, retry later). */
        if (!atomic_load(&fc.stopping))
            log_error("cannot keep a FastCGI connection; closing it errno=%d", errno);
        close(fd);
    }
    if (from_longpoll)
        pthread_mutex_unlock(&fc.ep_lock);
}

/* libfcgi's FCGI_WEB_SERVER_ADDRS, kept now that we accept ourselves: with it set, a TCP connection is taken
 * only from one of the comma-separated IPv4 addresses it lists (libfcgi's rule; without it, from anyone). */
static int peer_allowed(int fd)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    char peer[INET_ADDRSTRLEN];
    const char *p;
    size_t n;

    if (fc.allowed == NULL)
        return 1;
    if (getpeername(fd, (struct sockaddr *)&sa, &len) != 0 || sa.sin_family != AF_INET ||
        inet_ntop(AF_INET, &sa.sin_addr, peer, sizeof(peer)) == NULL)
        return 0;
    n = strlen(peer);
    for (p = fc.allowed; *p != '\0'; p += strcspn(p, ",")) {
        p += strspn(p, ", ");
        if (strncmp(p, peer, n) == 0 && (p[n] == '\0' || p[n] == ',' || p[n] == ' '))
            return 1;
    }
    return 0;
}

static int is_unix_socket(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    return getsockname(fd, (struct sockaddr *)&ss, &len) == 0 && ss.ss_family == AF_UNIX;
}

static const char *param(FCGX_Request *rq, const char *name)
{
    return FCGX_GetParam(name, rq->envp);
}

/* libfcgi's own printf knows no %zu and more: the head is formatted here and written as bytes. */
static void write_resp(FCGX_Request *rq, struct http_resp *resp)
{
    char head[2048];
    int n = snprintf(head, sizeof(head), "Status: %d %s\r\nContent-Type: %s\r\nCache-Control: no-store\r\n",
                     resp->status, http_reason(resp->status),
                     resp->content_type ? resp->content_type : "text/plain");
    for (int i = 0; i < resp->nheaders && n > 0 && (size_t)n < sizeof(head); i++)
        n += snprintf(head + n, sizeof(head) - (size_t)n, "%s: %s\r\n", resp->headers[i].name,
                      resp->headers[i].value);
    if (n > 0 && (size_t)n < sizeof(head))
        n += snprintf(head + n, sizeof(head) - (size_t)n, "Content-Length: %zu\r\n\r\n", resp->body_len);
    if (n <= 0 || (size_t)n >= sizeof(head)) {
        /* Our own headers never get this long; answer something well-formed rather than a cut head. */
        n = snprintf(head, sizeof(head), "Status: 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
        FCGX_PutStr(head, n, rq->out);
        return;
    }
    FCGX_PutStr(head, n, rq->out);
    if (resp->body_len > 0)
        FCGX_PutStr(resp->body, (int)resp->body_len, rq->out);
}

/* A parked /session_login is answered: from a long-poll thread, which now owns the request. */
static void fcgi_deliver(void *ctx, struct http_resp *resp)
{
    struct fconn *c = ctx;
    write_resp(&c->rq, resp);
    http_resp_free(resp);
    finish(c, 1);
    free(c);
}

/* Read the body into *body (malloc'd; NULL when empty). Bodies over http.max_body are not read. */
static void read_body(FCGX_Request *rq, struct http_req *req, char **body)
{
    const char *cl = param(rq, "CONTENT_LENGTH");
    char *end;
    unsigned long long len = cl && *cl ? strtoull(cl, &end, 10) : 0;
    size_t got = 0;

    *body = NULL;
    if (len == 0)
        return;
    if (len > (unsigned long long)app.cfg.http.max_body) {
        req->body_too_large = 1;
        return;
    }
    *body = malloc((size_t)len);
    if (*body == NULL)
        return;
    while (got < len) {
        int n = FCGX_GetStr(*body + got, (int)(len - got), rq->in);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    req->body = *body;
    req->body_len = got;
}

/* Read what is left of the request's input up to its end (the web server's empty FCGI_STDIN record), so
 * that the next request on a kept connection starts at a record boundary: a body that was not read (over
 * http.max_body, or a handler that takes none) and the end-of-input record. Usually already buffered by
 * libfcgi, so no read. More than http.max_body bytes left, or an error: 0, and the connection is closed
 * after the answer instead. */
static int drain_input(FCGX_Request *rq)
{
    char buf[4096];
    long long left = app.cfg.http.max_body;
    int n;

    while ((n = FCGX_GetStr(buf, sizeof(buf), rq->in)) > 0) {
        left -= n;
        if (left < 0)
            return 0;
    }
    return FCGX_GetError(rq->in) == 0;
}

/* The path without its query: nginx passes it decoded as DOCUMENT_URI (site conf); other servers may give
 * only SCRIPT_NAME or REQUEST_URI. */
static const char *request_path(FCGX_Request *rq, char *buf, size_t n)
{
    const char *p = param(rq, "DOCUMENT_URI");
    if (p == NULL || *p == '\0')
        p = param(rq, "SCRIPT_NAME");
    if (p == NULL || *p == '\0') {
        const char *uri = param(rq, "REQUEST_URI");
        size_t len = uri ? strcspn(uri, "?") : 0;
        if (len >= n)
            len = n - 1;
        memcpy(buf, uri ? uri : "", len);
        buf[len] = '\0';
        p = buf;
    }
    return p;
}

/* Serve one accepted request. Returns 1 when it was parked (c now belongs to the long poll). */
static int serve(struct worker *w, struct fconn *c)
{
    FCGX_Request *rq = &c->rq;
    struct http_req req;
    struct http_resp resp;
    char pathbuf[1024], *body = NULL;

    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    req.method = param(rq, "REQUEST_METHOD");
    if (req.method == NULL)
        req.method = "GET";
    req.path = request_path(rq, pathbuf, sizeof(pathbuf));
    req.authorization = param(rq, "HTTP_AUTHORIZATION");
    req.auth_token = param(rq, "HTTP_AUTHTOKEN");
    req.query = param(rq, "QUERY_STRING");
    req.cookie = param(rq, "HTTP_COOKIE");
    req.user_agent = param(rq, "HTTP_USER_AGENT");
    /* nginx sets X-Real-IP to the client's address (site conf), overriding what the client sent. */
    req.client_ip = param(rq, "HTTP_X_REAL_IP");
    if (req.client_ip == NULL || *req.client_ip == '\0')
        req.client_ip = param(rq, "REMOTE_ADDR");
    req.frontend = "fcgi";
    read_body(rq, &req, &body);
    c->synced = rq->keepConnection && drain_input(rq);

    if (http_dispatch(w, &req, &resp, &fcgi_lp, c) == 1) {
        free(body);
        return 1;
    }
    write_resp(rq, &resp);
    http_resp_free(&resp);
    free(body);
    return 0;
}

static struct fconn *new_conn(void)
{
    struct fconn *c = calloc(1, sizeof(*c));
    /* No listening socket: FCGX_Accept_r reads the connection it is given and never accepts by itself. */
    if (c != NULL && FCGX_InitRequest(&c->rq, -1, 0) != 0) {
        free(c);
        c = NULL;
    }
    return c;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Wait for the next connection with a request to read: a new one (*in_set = 0) or a kept one that became
 * readable (*in_set = 1; a request, or nginx closing it). -1 when we stop. */
static int next_connection(int *in_set)
{
    struct epoll_event ev;
    for (;;) {
        int n = epoll_wait(fc.ep, &ev, 1, -1), fd, err;
        if (n < 0 && errno != EINTR) {
            log_error("FastCGI thread cannot wait for connections errno=%d", errno);
            return -1;
        }
        if (n <= 0)
            continue;
        if (ev.data.fd == fc.stop_fd) {
            arm(fc.stop_fd, 1); /* pass the news on: wakes the next thread still waiting */
            return -1;
        }
        if (ev.data.fd != fc.fd) {
            *in_set = 1;
            return ev.data.fd;
        }
        fd = accept4(fc.fd, NULL, NULL, SOCK_CLOEXEC);
        err = errno;
        if (fd < 0 && (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM)) {
            /* The connection stays queued; accepting again at once would only spin. */
            log_error("cannot accept a FastCGI connection (out of descriptors or memory) errno=%d", err);
            sleep_ms(ACCEPT_BACKOFF_MS);
        }
        if (!atomic_load(&fc.stopping))
            arm(fc.fd, 1); /* the next connection can be accepted by another thread meanwhile */
        if (fd >= 0 && !peer_allowed(fd)) {
            log_warn("FastCGI connection refused: not from FCGI_WEB_SERVER_ADDRS");
            close(fd);
            continue;
        }
        if (fd >= 0) {
            int one = 1;
            if (!fc.local) /* as libfcgi does: an answer goes out at once */
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            *in_set = 0;
            return fd;
        }
        /* EAGAIN (another thread took it, or it went away), ECONNABORTED, EINTR: wait again. A listener
         * that was shut down (stop) reports an error too; the stop event follows. */
    }
}

static void *fcgi_thread(void *arg)
{
    struct worker *w = worker_new();
    struct fconn *c = new_conn();
    int fd, in_set;
    (void)arg;
    if (w == NULL || c == NULL) {
        log_error("FastCGI thread out of memory");
        goto done;
    }
    while ((fd = next_connection(&in_set)) >= 0) {
        FCGX_Request *rq = &c->rq;
        rq->ipcFd = fd;
        /* FCGX_Accept_r begins by finishing the previous request: keepConnection makes that leave fd open.
         * Detached, a connection it drops (closed by nginx, or not FastCGI) is closed outright. */
        rq->keepConnection = 1;
        rq->detached = fc.local;
        c->in_set = in_set;
        if (FCGX_Accept_r(rq) != 0) {
            rq->ipcFd = -1; /* libfcgi closed it */
            continue;
        }
        if (serve(w, c) == 0) {
            finish(c, 0);
            continue;
        }
        c = new_conn();
        if (c == NULL) {
            log_error("FastCGI thread out of memory");
            break;
        }
    }
done:
    free(c);
    worker_free(w);
    return NULL;
}

int fcgi_front_start(void)
{
    const char *path = app.cfg.http.fcgi_socket;
    int i;

    if (inherited_listener()) {
        fc.fd = FCGI_INHERITED_FD;
        log_info("fastcgi listening on the inherited socket fd=%d", FCGI_INHERITED_FD);
    } else if (path[0] != '\0') {
        fc.fd = make_socket(path, (int)app.cfg.http.fcgi_socket_mode);
        if (fc.fd < 0)
            return MP_ERR;
        fc.created = 1;
        log_info("fastcgi listening socket=%s mode=%04llo", path, app.cfg.http.fcgi_socket_mode);
    } else {
        return MP_OK;
    }
    fc.local = is_unix_socket(fc.fd);
    if (FCGX_Init() != 0) {
        log_error("cannot initialise libfcgi");
        return MP_ERR;
    }
    if (!fc.local && (fc.allowed = getenv("FCGI_WEB_SERVER_ADDRS")) != NULL)
        log_info("FastCGI connections only from FCGI_WEB_SERVER_ADDRS=%s", fc.allowed);
    /* Nonblocking listener: a connection that went away between the wake-up and accept4 is EAGAIN, not a
     * thread stuck in accept. Connections themselves stay blocking (libfcgi reads and writes them). */
    fc.ep = epoll_create1(EPOLL_CLOEXEC);
    fc.stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fc.ep < 0 || fc.stop_fd < 0 || fcntl(fc.fd, F_SETFL, fcntl(fc.fd, F_GETFL) | O_NONBLOCK) != 0 ||
        arm(fc.fd, 0) != 0 || arm(fc.stop_fd, 0) != 0) {
        log_error("cannot set up the FastCGI connection set errno=%d", errno);
        return MP_ERR;
    }
    fc.threads = calloc((size_t)app.cfg.http.threads, sizeof(*fc.threads));
    if (fc.threads == NULL)
        return MP_ERR;
    for (i = 0; i < app.cfg.http.threads; i++) {
        if (pthread_create(&fc.threads[i], NULL, fcgi_thread, NULL) != 0) {
            log_error("cannot start a FastCGI thread errno=%d", errno);
            return MP_ERR;
        }
        fc.nthreads++;
    }
    return MP_OK;
}

void fcgi_front_stop_accepting(void)
{
    uint64_t one = 1;
    if (fc.fd < 0)
        return;
    /* Every handler thread leaves its loop once it is done with the request it serves: the stop event
     * wakes one waiting thread, which re-arms it for the next. Connections finished from now on are
     * closed, not kept; idle kept ones close when we exit. */
    atomic_store(&fc.stopping, 1);
    if (fc.stop_fd >= 0 && write(fc.stop_fd, &one, sizeof(one)) < 0)
        log_error("cannot wake the FastCGI threads errno=%d", errno);
    shutdown(fc.fd, SHUT_RDWR); /* new connections are refused */
}

void fcgi_front_stop(void)
{
    for (int i = 0; i < fc.nthreads; i++)
        pthread_join(fc.threads[i], NULL);
    free(fc.threads);
    fc.threads = NULL;
    fc.nthreads = 0;
    pthread_mutex_lock(&fc.ep_lock); /* a long-poll thread may be handing a connection back */
    if (fc.ep >= 0)
        close(fc.ep);
    fc.ep = -1;
    pthread_mutex_unlock(&fc.ep_lock);
    if (fc.stop_fd >= 0)
        close(fc.stop_fd);
    fc.stop_fd = -1;
    if (fc.fd >= 0)
        close(fc.fd);
    if (fc.created)
        unlink(app.cfg.http.fcgi_socket);
    fc.fd = -1;
    fc.created = 0;
}
