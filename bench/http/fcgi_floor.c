/* fcgi_floor.c -- the floor of the nginx -> FastCGI path on this machine: a libfcgi responder that does no
 * work, answering every request with a body the size of POST /IM/token's answer. bench/http/run.sh puts it
 * behind an nginx with the site's own configuration and measures it with the same wrk load as magpie-http,
 * so the report shows how much of a request's cost is the path itself and how much is magpie-http's work.
 *
 * Built and run by bench/http/run.sh only (not installed): fcgi_floor SOCKET_PATH THREADS
 * It handles connections the way magpie-http's FastCGI front-end does (http/fcgi_front.c), so that the two
 * pay the same per-connection cost and the difference is the application's work: THREADS threads take
 * whichever connection is ready from one epoll set (the listener and every idle connection nginx keeps
 * open, FCGI_KEEP_CONN, each one-shot); a connection nginx does not ask to keep is closed outright after
 * its answer (detached: no lingering close on a unix socket).
 */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <fcgiapp.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_THREADS 256

static int listen_fd, ep;

/* POST /IM/token's answer is this long with the dev stack's tokens. */
#define BODY_LEN  349
#define BODY_HEAD "{\"code\":0,\"message\":\"ok\",\"result\":{\"wstoken\":\""
#define BODY_TAIL "\",\"expires_in\":120}}"

static char answer[512];
static int answer_len;

/* The CGI head and a body of BODY_LEN bytes: the fixed JSON around a ticket of 'x's. */
static void make_answer(void)
{
    char body[BODY_LEN + 1];
    memset(body, 'x', BODY_LEN);
    memcpy(body, BODY_HEAD, strlen(BODY_HEAD));
    memcpy(body + BODY_LEN - strlen(BODY_TAIL), BODY_TAIL, strlen(BODY_TAIL));
    body[BODY_LEN] = '\0';
    answer_len = snprintf(answer, sizeof(answer),
                          "Status: 200 OK\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
                          "Content-Length: %d\r\n\r\n%s",
                          BODY_LEN, body);
}

static int arm(int fd, int op)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.fd = fd};
    return epoll_ctl(ep, op, fd, &ev);
}

static void *serve(void *arg)
{
    FCGX_Request rq;
    char buf[4096];
    (void)arg;
    if (FCGX_InitRequest(&rq, -1, 0) != 0)
        return NULL;
    for (;;) {
        struct epoll_event ev;
        int fd, op = EPOLL_CTL_MOD;
        if (epoll_wait(ep, &ev, 1, -1) != 1)
            continue;
        fd = ev.data.fd;
        if (fd == listen_fd) {
            fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
            arm(listen_fd, EPOLL_CTL_MOD);
            if (fd < 0)
                continue;
            op = EPOLL_CTL_ADD;
        }
        rq.ipcFd = fd;
        rq.keepConnection = 1; /* FCGX_Accept_r's finish of the previous request leaves fd open */
        rq.detached = 1;
        if (FCGX_Accept_r(&rq) != 0) {
            rq.ipcFd = -1; /* closed by libfcgi */
            continue;
        }
        /* As magpie-http does on a kept connection: read the input to its end. */
        if (rq.keepConnection)
            while (FCGX_GetStr(buf, sizeof(buf), rq.in) > 0)
                ;
        FCGX_PutStr(answer, answer_len, rq.out);
        FCGX_Finish_r(&rq);
        fd = rq.ipcFd;
        rq.ipcFd = -1;
        if (fd >= 0 && arm(fd, op) != 0)
            close(fd);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t t[MAX_THREADS];
    int n = argc == 3 ? atoi(argv[2]) : 0;

    if (n < 1 || n > MAX_THREADS) {
        fprintf(stderr, "usage: fcgi_floor SOCKET_PATH THREADS(1..%d)\n", MAX_THREADS);
        return 2;
    }
    make_answer();
    if (FCGX_Init() != 0)
        return 1;
    unlink(argv[1]);
    listen_fd = FCGX_OpenSocket(argv[1], 4096); /* exits the process when it cannot bind */
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (listen_fd < 0 || chmod(argv[1], 0666) != 0 || ep < 0 ||
        fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) | O_NONBLOCK) != 0 ||
        arm(listen_fd, EPOLL_CTL_ADD) != 0) {
        fprintf(stderr, "fcgi_floor: cannot listen on %s\n", argv[1]);
        return 1;
    }
    for (int i = 0; i < n; i++)
        if (pthread_create(&t[i], NULL, serve, NULL) != 0)
            return 1;
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    return 0;
}
