/*
 * fake_node — the scripted RESP server of fake_node.h.  It parses only
 * what hiredis sends (arrays of bulk strings) and serves a few connections
 * at once with poll(); it is a test fixture, not a Redis.
 */
#include "fake_node.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

enum { MAX_CONNS = 16, BUF = 65536 };

typedef struct conn {
    int fd;
    char in[BUF];
    size_t len;
    fake_conn_t st;
} conn_t;

struct fake_node {
    int lfd, port, stop_pipe[2];
    pthread_t thread;
    pthread_mutex_t lock;
    fake_answer_fn fn;
    void *state;
    char **log;
    size_t n_log, cap_log;
    conn_t conns[MAX_CONNS];
    char out[BUF]; /* the reply being written (the node's thread only) */
};

/* Parses one command from c->in; argc (> 0) with argv filled, 0 when
 * incomplete, -1 when malformed. */
static int parse(conn_t *c, char **argv, int max, size_t *used)
{
    const char *p = c->in, *end = c->in + c->len;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl)
        return 0;
    if (*p != '*')
        return -1;
    int argc = atoi(p + 1);
    if (argc < 1 || argc > max)
        return -1;
    p = nl + 1;
    for (int i = 0; i < argc; i++) {
        nl = p < end ? memchr(p, '\n', (size_t)(end - p)) : NULL;
        if (!nl)
            goto partial;
        if (*p != '$')
            goto bad;
        size_t n = (size_t)atol(p + 1);
        p = nl + 1;
        if ((size_t)(end - p) < n + 2)
            goto partial;
        argv[i] = strndup(p, n);
        p += n + 2;
        continue;
    partial:
        for (int k = 0; k < i; k++)
            free(argv[k]);
        return 0;
    bad:
        for (int k = 0; k < i; k++)
            free(argv[k]);
        return -1;
    }
    *used = (size_t)(p - c->in);
    return argc;
}

static void log_cmd(fake_node_t *n, int argc, char **argv)
{
    size_t len = 0;
    for (int i = 0; i < argc; i++)
        len += strlen(argv[i]) + 1;
    char *line = malloc(len + 1), *o = line;
    for (int i = 0; i < argc; i++)
        o += sprintf(o, "%s%s", i ? " " : "", argv[i]);
    if (n->n_log == n->cap_log) {
        n->cap_log = n->cap_log ? n->cap_log * 2 : 64;
        n->log = realloc(n->log, n->cap_log * sizeof *n->log);
    }
    n->log[n->n_log++] = line;
}

static void drop(conn_t *c)
{
    close(c->fd);
    c->fd = -1;
    c->len = 0;
}

/* Answers every complete command buffered on c; false when c was closed. */
static int serve(fake_node_t *n, conn_t *c)
{
    for (;;) {
        char *argv[64];
        size_t used = 0;
        int argc = parse(c, argv, 64, &used);
        if (argc == 0)
            return 1;
        if (argc < 0) {
            drop(c);
            return 0;
        }
        memmove(c->in, c->in + used, c->len - used);
        c->len -= used;
        char *out = n->out;
        pthread_mutex_lock(&n->lock);
        log_cmd(n, argc, argv);
        int close_it;
        if (!strcasecmp(argv[0], "ASKING")) {
            snprintf(out, BUF, "+OK\r\n");
            close_it = 0;
        } else {
            close_it = n->fn(n, &c->st, argc, argv, n->state, out, BUF);
        }
        c->st.asking = !strcasecmp(argv[0], "ASKING");
        pthread_mutex_unlock(&n->lock);
        for (int i = 0; i < argc; i++)
            free(argv[i]);
        if (close_it) {
            drop(c);
            return 0;
        }
        size_t len = strlen(out), off = 0;
        while (off < len) {
            ssize_t w = write(c->fd, out + off, len - off);
            if (w <= 0) {
                drop(c);
                return 0;
            }
            off += (size_t)w;
        }
    }
}

static void *run(void *arg)
{
    fake_node_t *n = arg;
    for (;;) {
        struct pollfd pf[MAX_CONNS + 2];
        int map[MAX_CONNS + 2], np = 0;
        pf[np] = (struct pollfd){.fd = n->stop_pipe[0], .events = POLLIN};
        map[np++] = -2;
        pf[np] = (struct pollfd){.fd = n->lfd, .events = POLLIN};
        map[np++] = -1;
        for (int i = 0; i < MAX_CONNS; i++)
            if (n->conns[i].fd >= 0) {
                pf[np] = (struct pollfd){.fd = n->conns[i].fd, .events = POLLIN};
                map[np++] = i;
            }
        if (poll(pf, (nfds_t)np, -1) < 0)
            continue;
        if (pf[0].revents)
            return NULL;
        for (int k = 1; k < np; k++) {
            if (!pf[k].revents)
                continue;
            if (map[k] == -1) {
                int fd = accept(n->lfd, NULL, NULL);
                int slot = -1;
                for (int i = 0; i < MAX_CONNS && slot < 0; i++)
                    if (n->conns[i].fd < 0)
                        slot = i;
                if (fd >= 0 && slot < 0)
                    close(fd);
                else if (fd >= 0)
                    n->conns[slot] = (conn_t){.fd = fd};
                continue;
            }
            conn_t *c = &n->conns[map[k]];
            ssize_t r = read(c->fd, c->in + c->len, sizeof c->in - c->len);
            if (r <= 0) {
                drop(c);
                continue;
            }
            c->len += (size_t)r;
            serve(n, c);
        }
    }
}

fake_node_t *fake_node_start(fake_answer_fn fn, void *state)
{
    fake_node_t *n = calloc(1, sizeof *n);
    n->fn = fn;
    n->state = state;
    for (int i = 0; i < MAX_CONNS; i++)
        n->conns[i].fd = -1;
    pthread_mutex_init(&n->lock, NULL);
    n->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (n->lfd < 0 || bind(n->lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(n->lfd, (struct sockaddr *)&a, &al) != 0 || listen(n->lfd, 16) != 0 ||
        pipe(n->stop_pipe) != 0) {
        free(n);
        return NULL;
    }
    n->port = ntohs(a.sin_port);
    pthread_create(&n->thread, NULL, run, n);
    return n;
}

void fake_node_stop(fake_node_t *n)
{
    if (!n)
        return;
    if (write(n->stop_pipe[1], "x", 1) != 1)
        abort();
    pthread_join(n->thread, NULL);
    close(n->lfd);
    close(n->stop_pipe[0]);
    close(n->stop_pipe[1]);
    for (int i = 0; i < MAX_CONNS; i++)
        if (n->conns[i].fd >= 0)
            close(n->conns[i].fd);
    for (size_t i = 0; i < n->n_log; i++)
        free(n->log[i]);
    free(n->log);
    pthread_mutex_destroy(&n->lock);
    free(n);
}

int fake_node_port(const fake_node_t *n)
{
    return n->port;
}

size_t fake_node_count(fake_node_t *n, const char *prefix)
{
    size_t k = 0;
    pthread_mutex_lock(&n->lock);
    for (size_t i = 0; i < n->n_log; i++)
        k += !prefix || !strncmp(n->log[i], prefix, strlen(prefix));
    pthread_mutex_unlock(&n->lock);
    return k;
}

void fake_node_with_lock(fake_node_t *n, void (*fn)(void *state), void *state)
{
    pthread_mutex_lock(&n->lock);
    fn(state);
    pthread_mutex_unlock(&n->lock);
}

void fake_slots_reply(char *out, size_t outlen, int n, const int *lo, const int *hi,
                      const int *port, int as_strings)
{
    size_t o = (size_t)snprintf(out, outlen, "*%d\r\n", n);
    for (int i = 0; i < n && o < outlen; i++) {
        char a[16], b[16];
        int la = snprintf(a, sizeof a, "%d", lo[i]), lb = snprintf(b, sizeof b, "%d", hi[i]);
        if (as_strings)
            o += (size_t)snprintf(out + o, outlen - o, "*3\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", la, a,
                                  lb, b);
        else
            o += (size_t)snprintf(out + o, outlen - o, "*3\r\n:%s\r\n:%s\r\n", a, b);
        if (o < outlen)
            o += (size_t)snprintf(out + o, outlen - o,
                                  "*3\r\n$9\r\n127.0.0.1\r\n:%d\r\n$4\r\nnode\r\n", port[i]);
    }
}
