/*
 * admin_load — keeps C keep-alive HTTP/1.1 connections busy with one GET
 * each, back to back, until SIGTERM/SIGINT; then prints one JSON line:
 * {"requests": N, "failed": F, "status_other": S, "connections": C,
 *  "seconds": T, "requests_per_s": R}.
 * failed counts connection errors and short responses; status_other
 * counts answers other than 200.  tests/bench/admin-load drives it.
 *
 *   admin_load PORT PATH TOKEN CONNECTIONS
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct conn {
    int fd;
    char buf[1 << 16];
    size_t len;
} conn_t;

static volatile sig_atomic_t stop;
static void on_signal(int s) { (void)s; stop = 1; }

static char request[2048];
static size_t request_len;
static struct sockaddr_in addr;
static long long requests, failed, status_other;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int open_conn(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_request(conn_t *c)
{
    c->len = 0;
    return write(c->fd, request, request_len) == (ssize_t)request_len ? 0 : -1;
}

/* 1 when a whole response is in the buffer (headers + Content-Length). */
static int response_done(conn_t *c, int *status)
{
    c->buf[c->len] = '\0';
    char *end = strstr(c->buf, "\r\n\r\n");
    if (!end)
        return 0;
    char *cl = strcasestr(c->buf, "\r\nContent-Length:");
    long body = cl && cl < end ? strtol(cl + 17, NULL, 10) : 0;
    if ((size_t)(end + 4 - c->buf) + (size_t)body > c->len)
        return 0;
    *status = 0;
    sscanf(c->buf, "HTTP/%*s %d", status);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: admin_load PORT PATH TOKEN CONNECTIONS\n");
        return 2;
    }
    int n = atoi(argv[4]);
    if (n < 1 || n > 4000) {
        fprintf(stderr, "admin_load: CONNECTIONS must be 1..4000\n");
        return 2;
    }
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[1]));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    request_len = (size_t)snprintf(request, sizeof request,
                                   "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                                   "%s\r\nConnection: keep-alive\r\n\r\n",
                                   argv[2], argv[3]);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    int ep = epoll_create1(0);
    conn_t *cs = calloc((size_t)n, sizeof *cs);
    for (int i = 0; i < n; i++) {
        cs[i].fd = open_conn();
        if (cs[i].fd < 0 || send_request(&cs[i]) != 0) {
            fprintf(stderr, "admin_load: cannot connect: %s\n", strerror(errno));
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
    }
    double t0 = now_s();
    struct epoll_event evs[256];
    while (!stop) {
        int k = epoll_wait(ep, evs, 256, 200);
        for (int i = 0; i < k; i++) {
            conn_t *c = evs[i].data.ptr;
            ssize_t got = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
            int status;
            if (got > 0) {
                c->len += (size_t)got;
                if (!response_done(c, &status))
                    continue;
                requests++;
                if (status != 200)
                    status_other++;
                if (send_request(c) == 0)
                    continue;
            }
            /* closed or broken: count it, reconnect */
            failed++;
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            c->fd = open_conn();
            if (c->fd < 0 || send_request(c) != 0) {
                stop = 1;
                break;
            }
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
            epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
        }
    }
    double t = now_s() - t0;
    printf("{\"requests\":%lld,\"failed\":%lld,\"status_other\":%lld,\"connections\":%d,"
           "\"seconds\":%.2f,\"requests_per_s\":%.0f}\n",
           requests, failed, status_other, n, t, t > 0 ? (double)requests / t : 0.0);
    for (int i = 0; i < n; i++)
        if (cs[i].fd >= 0)
            close(cs[i].fd);
    free(cs);
    return 0;
}
