/* fcgi_front.c -- the FastCGI front-end (see fronts.h). */
#include "fronts.h"
#include "http.h"
#include "log.h"
#include "longpoll.h"
#include "magpie.h"

#include <errno.h>
#include <fcgiapp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define FCGI_INHERITED_FD 0 /* spawn-fcgi and the FastCGI spec put the listening socket on fd 0 */

static struct {
    int fd;
    int created; /* we made the socket file (and remove it at exit) */
    int local; /* the listener is a unix socket: a finished connection is closed at once (finish) */
    pthread_t *threads;
    int nthreads;
} fc = {.fd = -1};

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

/* End rq and close its connection. libfcgi's own close shuts the socket down for writing and then waits
 * for the web server to close its end first (a lingering close, which keeps a TCP peer from being reset
 * while it still sends). That costs a poll, a read and a wake-up per request. On a unix socket nothing
 * is reset -- the peer reads everything written before it sees the close -- so there the request is
 * detached first, which makes libfcgi close the connection outright. (A responder that does no work gets
 * about 25 % more requests/s through nginx this way on a 2-core machine; bench/http/fcgi_floor.c.) */
static void finish(FCGX_Request *rq)
{
    if (fc.local)
        FCGX_Detach(rq);
    FCGX_Finish_r(rq);
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

/* A parked /session_login is answered: from a long-poll thread, which now owns rq. */
static void fcgi_deliver(void *ctx, struct http_resp *resp)
{
    FCGX_Request *rq = ctx;
    write_resp(rq, resp);
    http_resp_free(resp);
    finish(rq);
    free(rq);
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

/* Serve one accepted request. Returns 1 when it was parked (rq now belongs to the long poll). */
static int serve(struct worker *w, FCGX_Request *rq)
{
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

    if (http_dispatch(w, &req, &resp, &fcgi_lp, rq) == 1) {
        free(body);
        return 1;
    }
    write_resp(rq, &resp);
    http_resp_free(&resp);
    free(body);
    return 0;
}

static FCGX_Request *new_request(void)
{
    FCGX_Request *rq = calloc(1, sizeof(*rq));
    if (rq != NULL && FCGX_InitRequest(rq, fc.fd, 0) != 0) {
        free(rq);
        rq = NULL;
    }
    return rq;
}

static void *fcgi_thread(void *arg)
{
    struct worker *w = worker_new();
    FCGX_Request *rq = new_request();
    (void)arg;
    if (w == NULL || rq == NULL) {
        log_error("FastCGI thread out of memory");
        goto done;
    }
    /* FCGX_Accept_r fails once the listening socket is shut down: that is how we stop. */
    while (FCGX_Accept_r(rq) == 0) {
        if (serve(w, rq) == 0) {
            finish(rq);
            continue;
        }
        rq = new_request();
        if (rq == NULL) {
            log_error("FastCGI thread out of memory");
            break;
        }
    }
done:
    if (rq != NULL) {
        FCGX_Finish_r(rq);
        free(rq);
    }
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
    /* Wakes every thread blocked in accept(); they see an error and leave their loop. */
    if (fc.fd >= 0)
        shutdown(fc.fd, SHUT_RDWR);
}

void fcgi_front_stop(void)
{
    for (int i = 0; i < fc.nthreads; i++)
        pthread_join(fc.threads[i], NULL);
    free(fc.threads);
    fc.threads = NULL;
    fc.nthreads = 0;
    if (fc.fd >= 0)
        close(fc.fd);
    if (fc.created)
        unlink(app.cfg.http.fcgi_socket);
    fc.fd = -1;
    fc.created = 0;
}
