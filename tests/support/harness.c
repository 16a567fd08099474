/*
 * harness — see harness.h.  Real redis-server processes on free loopback
 * ports in private temp folders; child processes with captured output.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

long long harness_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int harness_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        close(fd);
        return -1;
    }
    int port = ntohs(a.sin_port);
    close(fd);
    return port;
}

char *harness_tmpdir(const char *prefix)
{
    char tmpl[256];
    snprintf(tmpl, sizeof tmpl, "/tmp/evbus-test-%s-XXXXXX", prefix);
    if (!mkdtemp(tmpl))
        return NULL;
    chmod(tmpl, 0777);
    return strdup(tmpl);
}

void harness_rmrf(const char *path)
{
    if (!path || strncmp(path, "/tmp/evbus-test-", 16) != 0)
        return;
    char *argv[] = {"/bin/rm", "-rf", (char *)path, NULL};
    harness_run(argv, NULL, NULL, NULL, NULL, 30000);
}

char *harness_build_path(const char *rel)
{
    const char *root = getenv("EVBUS_BUILD_ROOT");
    char *p = NULL;
    if (asprintf(&p, "%s/%s", root ? root : ".", rel) < 0)
        return NULL;
    return p;
}

char *harness_source_path(const char *rel)
{
    const char *root = getenv("EVBUS_SOURCE_ROOT");
    char *p = NULL;
    if (asprintf(&p, "%s/%s", root ? root : ".", rel) < 0)
        return NULL;
    return p;
}

int harness_write_file(const char *dir, const char *name, const char *content)
{
    char path[1024];
    mkdir(dir, 0777);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(content, f);
    return fclose(f) == 0 ? 0 : -1;
}

char *harness_read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, len = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            buf = realloc(buf, cap);
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

size_t harness_count_lines(const char *path)
{
    char *s = harness_read_file(path);
    if (!s)
        return 0;
    size_t n = 0;
    for (char *p = s; *p; p++)
        n += *p == '\n';
    free(s);
    return n;
}

int harness_spawn(harness_proc_t *p, char *const argv[], char *const envp[], const char *log_path)
{
    memset(p, 0, sizeof *p);
    if (log_path)
        snprintf(p->log_path, sizeof p->log_path, "%s", log_path);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        setpgid(0, 0);
        int fd = open(log_path ? log_path : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) {
            dup2(nul, 0);
            close(nul);
        }
        if (envp)
            for (size_t i = 0; envp[i]; i++)
                putenv(envp[i]);
        execv(argv[0], argv);
        _exit(127);
    }
    p->pid = pid;
    return 0;
}

static int decode_status(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

int harness_wait(harness_proc_t *p, int timeout_ms)
{
    if (p->pid <= 0)
        return -1;
    long long deadline = harness_now_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) {
            p->pid = 0;
            return decode_status(st);
        }
        if (r < 0)
            return -1;
        if (harness_now_ms() >= deadline)
            return -1;
        sleep_ms(10);
    }
}

int harness_kill(harness_proc_t *p, int sig, int timeout_ms)
{
    if (p->pid <= 0)
        return -1;
    kill(p->pid, sig);
    return harness_wait(p, timeout_ms);
}

int harness_run(char *const argv[], char *const envp[], const char *input, char **out,
                char **err, int timeout_ms)
{
    int inpipe[2], outpipe[2], errpipe[2];
    if (pipe(inpipe) || pipe(outpipe) || pipe(errpipe))
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(inpipe[0], 0);
        dup2(outpipe[1], 1);
        dup2(errpipe[1], 2);
        /* close every original end, or a daemon the child leaves behind
         * keeps the pipes open and the caller waits for its timeout */
        close(inpipe[0]);
        close(inpipe[1]);
        close(outpipe[0]);
        close(outpipe[1]);
        close(errpipe[0]);
        close(errpipe[1]);
        if (envp)
            for (size_t i = 0; envp[i]; i++)
                putenv(envp[i]);
        execvp(argv[0], argv); /* a bare name is looked up in PATH */
        _exit(127);
    }
    close(inpipe[0]);
    close(outpipe[1]);
    close(errpipe[1]);
    size_t in_len = input ? strlen(input) : 0, in_off = 0;
    if (!input) {
        close(inpipe[1]);
        inpipe[1] = -1;
    }
    char *bufs[2] = {NULL, NULL};
    size_t lens[2] = {0, 0}, caps[2] = {0, 0};
    int fds[2] = {outpipe[0], errpipe[0]};
    long long deadline = harness_now_ms() + timeout_ms;
    int open_fds = 2;
    signal(SIGPIPE, SIG_IGN);
    while (open_fds > 0 || inpipe[1] >= 0) {
        struct pollfd pf[3];
        int n = 0;
        int map[3];
        for (int i = 0; i < 2; i++)
            if (fds[i] >= 0) {
                pf[n].fd = fds[i];
                pf[n].events = POLLIN;
                map[n++] = i;
            }
        if (inpipe[1] >= 0) {
            pf[n].fd = inpipe[1];
            pf[n].events = POLLOUT;
            map[n++] = 2;
        }
        long long left = deadline - harness_now_ms();
        if (left <= 0)
            break;
        if (poll(pf, (nfds_t)n, (int)left) <= 0)
            continue;
        for (int k = 0; k < n; k++) {
            if (!pf[k].revents)
                continue;
            int i = map[k];
            if (i == 2) {
                ssize_t w = write(inpipe[1], input + in_off, in_len - in_off);
                if (w > 0)
                    in_off += (size_t)w;
                if (w < 0 || in_off >= in_len) {
                    close(inpipe[1]);
                    inpipe[1] = -1;
                }
                continue;
            }
            if (lens[i] + 4096 + 1 > caps[i]) {
                caps[i] = caps[i] ? caps[i] * 2 : 8192;
                bufs[i] = realloc(bufs[i], caps[i]);
            }
            ssize_t r = read(fds[i], bufs[i] + lens[i], caps[i] - lens[i] - 1);
            if (r <= 0) {
                close(fds[i]);
                fds[i] = -1;
                open_fds--;
            } else {
                lens[i] += (size_t)r;
            }
            bufs[i][lens[i]] = '\0';
        }
    }
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    if (inpipe[1] >= 0)
        close(inpipe[1]);
    harness_proc_t p = {.pid = pid};
    int rc = harness_wait(&p, (int)(deadline - harness_now_ms() > 0 ? deadline - harness_now_ms() : 1));
    if (rc == -1)
        harness_kill(&p, SIGKILL, 5000);
    for (int i = 0; i < 2; i++)
        if (!bufs[i])
            bufs[i] = strdup("");
    if (out)
        *out = bufs[0];
    else
        free(bufs[0]);
    if (err)
        *err = bufs[1];
    else
        free(bufs[1]);
    return rc;
}

bool harness_wait_until(bool (*cond)(void *ud), void *ud, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;
    for (;;) {
        if (cond(ud))
            return true;
        if (harness_now_ms() >= deadline)
            return false;
        sleep_ms(20);
    }
}

redisContext *harness_redis_connect(const harness_redis_t *r)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    return c;
}

long long harness_redis_int(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!rep)
        return -1;
    long long v = rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    freeReplyObject(rep);
    return v;
}

static int redis_launch(harness_redis_t *r)
{
    char port[16], logp[512];
    snprintf(port, sizeof port, "%d", r->port);
    snprintf(logp, sizeof logp, "%s/redis.log", r->dir);
    char *argv[] = {"/usr/bin/redis-server", "--port", port, "--bind", "127.0.0.1",
                    "--dir", r->dir, "--save", "", "--appendonly", r->aof ? "yes" : "no",
                    "--appendfsync", "always", "--daemonize", "no", "--logfile", logp, NULL};
    harness_proc_t p;
    if (harness_spawn(&p, argv, NULL, NULL) != 0)
        return -1;
    r->pid = p.pid;
    long long deadline = harness_now_ms() + 10000;
    while (harness_now_ms() < deadline) {
        redisContext *c = harness_redis_connect(r);
        if (c) {
            redisReply *rep = redisCommand(c, "PING");
            int ok = rep && rep->type == REDIS_REPLY_STATUS;
            if (rep)
                freeReplyObject(rep);
            redisFree(c);
            if (ok)
                return 0;
        }
        sleep_ms(20);
    }
    return -1;
}

int harness_redis_start(harness_redis_t *r, bool aof)
{
    memset(r, 0, sizeof *r);
    r->aof = aof;
    char *d = harness_tmpdir("redis");
    if (!d)
        return -1;
    snprintf(r->dir, sizeof r->dir, "%s", d);
    free(d);
    for (int attempt = 0; attempt < 5; attempt++) {
        r->port = harness_free_port();
        snprintf(r->url, sizeof r->url, "redis://127.0.0.1:%d/0", r->port);
        if (redis_launch(r) == 0)
            return 0;
        harness_proc_t p = {.pid = r->pid};
        harness_kill(&p, SIGKILL, 2000);
    }
    return -1;
}

void harness_redis_stop(harness_redis_t *r)
{
    if (r->pid > 0) {
        harness_proc_t p = {.pid = r->pid};
        if (harness_kill(&p, SIGTERM, 10000) < 0)
            harness_kill(&p, SIGKILL, 5000);
        r->pid = 0;
    }
}

int harness_redis_start_again(harness_redis_t *r)
{
    return redis_launch(r);
}

int harness_redis_restart(harness_redis_t *r)
{
    harness_redis_stop(r);
    return redis_launch(r);
}

static char *http_request(int port, const char *method, const char *path, const char *token,
                          const char *body, const char *ctype, int timeout_s, int *status,
                          char **headers);

char *harness_http_get(int port, const char *path, int *status)
{
    return http_request(port, "GET", path, NULL, NULL, NULL, 5, status, NULL);
}

char *harness_http(int port, const char *method, const char *path, const char *token,
                   const char *body, const char *ctype, int *status, char **headers)
{
    return http_request(port, method, path, token, body, ctype, 10, status, headers);
}

static char *http_request(int port, const char *method, const char *path, const char *token,
                          const char *body, const char *ctype, int timeout_s, int *status,
                          char **headers)
{
    if (status)
        *status = -1;
    if (headers)
        *headers = NULL;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return NULL;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {timeout_s, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return NULL;
    }
    size_t blen = body ? strlen(body) : 0;
    char *req = malloc(blen + 4096);
    int n = snprintf(req, 4096, "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n", method, path);
    if (token)
        n += snprintf(req + n, 4096 - (size_t)n, "Authorization: Bearer %s\r\n", token);
    if (body)
        n += snprintf(req + n, 4096 - (size_t)n, "Content-Type: %s\r\nContent-Length: %zu\r\n",
                      ctype ? ctype : "application/json", blen);
    n += snprintf(req + n, 4096 - (size_t)n, "\r\n");
    if (body)
        memcpy(req + n, body, blen);
    size_t total = (size_t)n + blen, off = 0;
    while (off < total) {
        /* the server may answer (413) and close before the body is sent */
        ssize_t w = send(fd, req + off, total - off, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    free(req);
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 4096 >= cap)
            buf = realloc(buf, cap *= 2);
        ssize_t got = read(fd, buf + len, cap - len - 1);
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    close(fd);
    buf[len] = '\0';
    char *sep = strstr(buf, "\r\n\r\n");
    int code = -1;
    char *out = NULL;
    if (sep && sscanf(buf, "HTTP/%*s %d", &code) == 1) {
        out = strdup(sep + 4);
        if (headers)
            *headers = strndup(buf, (size_t)(sep - buf) + 2);
    }
    if (status)
        *status = out ? code : -1;
    free(buf);
    return out;
}

void harness_token_hash(const char *token, char out[72])
{
    unsigned char h[32];
    unsigned int hl = sizeof h;
    EVP_Digest(token, strlen(token), h, &hl, EVP_sha256(), NULL);
    int n = snprintf(out, 72, "sha256:");
    for (int i = 0; i < 32; i++)
        n += snprintf(out + n, 72 - (size_t)n, "%02x", h[i]);
}
