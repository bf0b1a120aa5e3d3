/* fcgi_floor.c -- the floor of the nginx -> FastCGI path on this machine: a libfcgi responder that does no
 * work, answering every request with a body the size of POST /IM/token's answer. bench/http/run.sh puts it
 * behind an nginx like the site's and measures it with the same wrk load as magpie-http, so the report
 * shows how much of a request's cost is the path itself and how much is magpie-http's work.
 *
 * Built and run by bench/http/run.sh only (not installed): fcgi_floor SOCKET_PATH THREADS
 * Like magpie-http's FastCGI front-end it closes a finished unix-socket connection outright
 * (FCGX_Detach before FCGX_Finish_r), so the two pay the same per-connection cost.
 */
#include <fcgiapp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_THREADS 256

static int listen_fd;

/* POST /IM/token's answer is this long with the dev stack's tokens. */
#define BODY_LEN 349
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

static void *serve(void *arg)
{
    FCGX_Request rq;
    (void)arg;
    if (FCGX_InitRequest(&rq, listen_fd, 0) != 0)
        return NULL;
    while (FCGX_Accept_r(&rq) == 0) {
        FCGX_PutStr(answer, answer_len, rq.out);
        FCGX_Detach(&rq);
        FCGX_Finish_r(&rq);
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
    if (listen_fd < 0 || chmod(argv[1], 0666) != 0) {
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
