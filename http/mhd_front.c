/* mhd_front.c -- the standalone front-end on libmicrohttpd (see fronts.h).
 *
 * Handlers run on libmicrohttpd's pool threads (http.threads, epoll), each with its own struct worker in
 * thread-local storage. A /session_login that has to wait suspends its connection; the long poll's answer
 * thread stores the response and resumes it, and libmicrohttpd calls us again to send it.
 */
#include "config.h"
#include "fronts.h"
#include "http.h"
#include "log.h"
#include "longpoll.h"
#include "magpie.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MHD_DISCARD_FACTOR 16   /* a chunked body this many times max_body is hostile: drop the connection */
#define MHD_DRAIN_MS       2000 /* at stop, wait this long at most for answers still being written */
#define MHD_DRAIN_STEP_MS  10

/* One request (libmicrohttpd's per-request pointer). */
struct mreq {
    char *body;
    size_t len;
    int too_large;
    size_t discarded;
    struct MHD_Connection *conn;
    pthread_mutex_t lock; /* parked/suspended/delivered/resp, between the pool thread and a long-poll thread;
                           * never held across MHD_resume_connection (see mhd_deliver) */
    int parked;
    int suspended;
    int delivered;
    struct http_resp resp; /* the long poll's answer, until it is queued */
};

static struct {
    struct MHD_Daemon *d;
    pthread_key_t worker_key;
    int key_made;
    pthread_mutex_t lock;
    long active; /* requests begun and not completed */
} mf = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void mhd_deliver(void *ctx, struct http_resp *resp);
static const struct lp_front mhd_lp = {mhd_deliver};

int mhd_front_active(void)
{
    return mf.d != NULL;
}

static void worker_destroy(void *p)
{
    worker_free(p);
}

static struct worker *thread_worker(void)
{
    struct worker *w = pthread_getspecific(mf.worker_key);
    if (w == NULL && (w = worker_new()) != NULL)
        pthread_setspecific(mf.worker_key, w);
    return w;
}

static enum MHD_Result queue(struct MHD_Connection *conn, struct http_resp *resp)
{
    struct MHD_Response *r;
    enum MHD_Result ret;

    if (resp->body_len > 0) {
        r = MHD_create_response_from_buffer(resp->body_len, resp->body, MHD_RESPMEM_MUST_FREE);
        if (r != NULL)
            resp->body = NULL; /* libmicrohttpd frees it */
    } else {
        r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (r == NULL) {
        http_resp_free(resp);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            resp->content_type ? resp->content_type : "text/plain");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    for (int i = 0; i < resp->nheaders; i++)
        MHD_add_response_header(r, resp->headers[i].name, resp->headers[i].value);
    ret = MHD_queue_response(conn, (unsigned)resp->status, r);
    MHD_destroy_response(r);
    http_resp_free(resp);
    return ret;
}

/* The long poll answered a parked request (on a long-poll thread).
 *
 * Once the connection is resumed, m belongs to libmicrohttpd's thread again: MHD_resume_connection only
 * flags the connection and wakes that thread (MHD_USE_ITC), which may then send the answer -- or find the
 * client gone -- and complete the request, so on_completed frees m, before MHD_resume_connection has even
 * returned here. So the lock is released first and nothing touches m after the resume. (Resuming with
 * m->lock held and unlocking it afterwards was issue 21: the unlock wrote into freed, reused memory.)
 * Without the resume (the handler has not suspended yet), run() sees delivered under the lock and queues
 * the answer itself; m lives until that request completes, which cannot happen before run() returns. */
static void mhd_deliver(void *ctx, struct http_resp *resp)
{
    struct mreq *m = ctx;
    struct MHD_Connection *conn;
    int resume;

    pthread_mutex_lock(&m->lock);
    m->resp = *resp;
    memset(resp, 0, sizeof(*resp));
    m->delivered = 1;
    resume = m->suspended;
    conn = m->conn;
    pthread_mutex_unlock(&m->lock);
    if (resume)
        MHD_resume_connection(conn); /* the last use of this request here: m may be gone after it */
}

static void client_ip(struct MHD_Connection *conn, char *buf, size_t n)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    buf[0] = '\0';
    if (sa != NULL && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, (socklen_t)n);
    else if (sa != NULL && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, (socklen_t)n);
}

static const char *header(struct MHD_Connection *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

/* The query string, rebuilt from the arguments libmicrohttpd parsed (it keeps no raw copy): each name and
 * value percent-encoded again, so handlers read one format from either front-end. */
struct query_buf {
    char *p;
    size_t len, cap;
    int over;
};

static void query_add(struct query_buf *q, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; s != NULL && *s != '\0' && !q->over; s++) {
        unsigned char ch = (unsigned char)*s;
        int plain = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    ch == '-' || ch == '_' || ch == '.' || ch == '~';
        if (q->len + (plain ? 1 : 3) >= q->cap) {
            q->over = 1;
            break;
        }
        if (plain) {
            q->p[q->len++] = (char)ch;
        } else {
            q->p[q->len++] = '%';
            q->p[q->len++] = hex[ch >> 4];
            q->p[q->len++] = hex[ch & 15];
        }
    }
    q->p[q->len] = '\0';
}

static enum MHD_Result query_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct query_buf *q = cls;
    (void)kind;
    if (q->len > 0 && q->len + 1 < q->cap)
        q->p[q->len++] = '&';
    query_add(q, key);
    if (value != NULL && q->len + 1 < q->cap) {
        q->p[q->len++] = '=';
        query_add(q, value);
    }
    return q->over ? MHD_NO : MHD_YES;
}

static enum MHD_Result run(struct MHD_Connection *conn, struct mreq *m, const char *url, const char *method)
{
    struct worker *w = thread_worker();
    struct http_req req;
    struct http_resp resp;
    char ip[HTTP_MAX_IP], query[HTTP_MAX_QUERY];
    struct query_buf q = {query, 0, sizeof(query), 0};

    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    if (w == NULL)
        return MHD_NO;
    client_ip(conn, ip, sizeof(ip));
    req.method = method;
    req.path = url;
    query[0] = '\0';
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, query_arg, &q);
    req.query = q.len > 0 && !q.over ? query : NULL; /* longer than any query an endpoint reads: none */
    req.authorization = header(conn, MHD_HTTP_HEADER_AUTHORIZATION);
    req.auth_token = header(conn, "authToken");
    req.cookie = header(conn, MHD_HTTP_HEADER_COOKIE);
    req.user_agent = header(conn, MHD_HTTP_HEADER_USER_AGENT);
    req.client_ip = ip;
    req.body = m->body;
    req.body_len = m->len;
    req.body_too_large = m->too_large;
    req.frontend = "standalone";

    if (http_dispatch(w, &req, &resp, &mhd_lp, m) == 0)
        return queue(conn, &resp);
    /* Parked. The answer may already be there (the long poll was quick); otherwise wait suspended. */
    pthread_mutex_lock(&m->lock);
    m->parked = 1;
    if (!m->delivered) {
        /* Suspended before the lock is released: mhd_deliver resumes only what it saw suspended. */
        MHD_suspend_connection(conn);
        m->suspended = 1;
        pthread_mutex_unlock(&m->lock);
        return MHD_YES;
    }
    pthread_mutex_unlock(&m->lock);
    return queue(conn, &m->resp);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **state)
{
    struct mreq *m = *state;
    size_t max = (size_t)app.cfg.http.max_body;
    (void)cls;
    (void)version;

    if (m == NULL) {
        const char *cl = header(conn, MHD_HTTP_HEADER_CONTENT_LENGTH);
        m = calloc(1, sizeof(*m));
        if (m == NULL)
            return MHD_NO;
        pthread_mutex_init(&m->lock, NULL);
        m->conn = conn;
        *state = m;
        pthread_mutex_lock(&mf.lock);
        mf.active++;
        pthread_mutex_unlock(&mf.lock);
        /* Refuse an announced oversize body before reading it. */
        if (cl != NULL && strtoull(cl, NULL, 10) > max) {
            m->too_large = 1;
            return run(conn, m, url, method);
        }
        return MHD_YES;
    }
    if (m->parked) {
        /* Resumed: the long poll's answer is in m->resp. */
        return queue(conn, &m->resp);
    }
    if (*upload_size > 0) {
        if (m->too_large || m->len + *upload_size > max) {
            /* A chunked body past the limit: keep reading (and dropping) it, answer 413 at its end. */
            m->too_large = 1;
            m->discarded += *upload_size;
            if (m->discarded > max * MHD_DISCARD_FACTOR)
                return MHD_NO;
        } else {
            char *grown = realloc(m->body, m->len + *upload_size);
            if (grown == NULL)
                return MHD_NO;
            m->body = grown;
            memcpy(m->body + m->len, upload, *upload_size);
            m->len += *upload_size;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    return run(conn, m, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **state,
                         enum MHD_RequestTerminationCode toe)
{
    struct mreq *m = *state;
    (void)cls;
    (void)conn;
    (void)toe;
    if (m == NULL)
        return;
    free(m->body);
    http_resp_free(&m->resp);
    pthread_mutex_destroy(&m->lock);
    free(m);
    *state = NULL;
    pthread_mutex_lock(&mf.lock);
    mf.active--;
    pthread_mutex_unlock(&mf.lock);
}

/* libmicrohttpd's own messages, into our log; a message may quote a request line, so tokens are cut. */
static void on_log(void *cls, const char *fmt, va_list ap)
{
    char buf[512];
    size_t len;
    (void)cls;
    vsnprintf(buf, sizeof(buf), fmt, ap);
    len = strlen(buf);
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        buf[--len] = '\0';
    http_redact(buf);
    log_warn("standalone front-end: libmicrohttpd says \"%s\"", buf);
}

int mhd_front_start(void)
{
    const char *addr = app.cfg.http.listen;
    char host[256];
    int port;
    struct addrinfo hints, *ai = NULL;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;

    if (addr[0] == '\0')
        return MP_OK;
    if (config_split_addr(addr, host, sizeof(host), &port) != 0) {
        log_error("bad http.listen addr=%s", addr);
        return MP_ERR;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if (getaddrinfo(host[0] ? host : NULL, "0", &hints, &ai) != 0 || ai == NULL) {
        log_error("cannot resolve http.listen addr=%s", addr);
        return MP_ERR;
    }
    if (ai->ai_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
        ((struct sockaddr_in6 *)ai->ai_addr)->sin6_port = htons((uint16_t)port);
    } else {
        ((struct sockaddr_in *)ai->ai_addr)->sin_port = htons((uint16_t)port);
    }
    if (pthread_key_create(&mf.worker_key, worker_destroy) != 0) {
        freeaddrinfo(ai);
        return MP_ERR;
    }
    mf.key_made = 1;
    mf.d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, NULL, MHD_OPTION_EXTERNAL_LOGGER,
                            on_log, NULL, MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_THREAD_POOL_SIZE,
                            (unsigned)app.cfg.http.threads, MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned)app.cfg.http.max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)app.cfg.http.client_timeout_s, MHD_OPTION_NOTIFY_COMPLETED,
                            on_completed, NULL, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (mf.d == NULL) {
        log_error("cannot listen (address in use?) addr=%s", addr);
        return MP_ERR;
    }
    log_info("standalone listening addr=%s threads=%lld", addr, app.cfg.http.threads);
    return MP_OK;
}

void mhd_front_stop_accepting(void)
{
    if (mf.d != NULL) {
        MHD_socket s = MHD_quiesce_daemon(mf.d);
        if (s != MHD_INVALID_SOCKET)
            close(s);
    }
}

void mhd_front_stop(void)
{
    int waited = 0;
    if (mf.d != NULL) {
        /* Let answers that are being written (resumed long polls among them) go out first. */
        for (;;) {
            long active;
            pthread_mutex_lock(&mf.lock);
            active = mf.active;
            pthread_mutex_unlock(&mf.lock);
            if (active == 0 || waited >= MHD_DRAIN_MS)
                break;
            usleep(MHD_DRAIN_STEP_MS * 1000);
            waited += MHD_DRAIN_STEP_MS;
        }
        MHD_stop_daemon(mf.d);
        mf.d = NULL;
    }
    if (mf.key_made)
        pthread_key_delete(mf.worker_key);
    mf.key_made = 0;
}
