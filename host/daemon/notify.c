/* notify — see notify.h. */
#include "daemon/notify.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int make_addr(const char *name, struct sockaddr_un *sa, socklen_t *len)
{
    size_t n = strlen(name);
    if ((name[0] != '/' && name[0] != '@') || n < 2 || n >= sizeof sa->sun_path)
        return -1;
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, name, n);
    if (name[0] == '@') /* abstract: a leading NUL, and the length says where it ends */
        sa->sun_path[0] = '\0';
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (name[0] == '/'));
    return 0;
}

int notify_open(notify_t *n, char *err, size_t errlen)
{
    memset(n, 0, sizeof *n);
    n->fd = -1;
    const char *wd = getenv("WATCHDOG_USEC"), *wpid = getenv("WATCHDOG_PID");
    if (wd && (!wpid || strtoll(wpid, NULL, 10) == (long long)getpid())) {
        char *end;
        unsigned long long v = strtoull(wd, &end, 10);
        n->watchdog_usec = (*wd && !*end) ? (uint64_t)v : 0;
    }
    const char *sock = getenv("NOTIFY_SOCKET");
    int rc = 0;
    if (sock && *sock) {
        struct sockaddr_un sa;
        socklen_t len;
        snprintf(n->addr, sizeof n->addr, "%s", sock);
        if (make_addr(sock, &sa, &len) != 0) {
            snprintf(err, errlen, "NOTIFY_SOCKET '%s': expected an absolute path or "
                     "@abstract name shorter than %zu bytes", sock, sizeof sa.sun_path);
            rc = -1;
        } else if ((n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0) {
            snprintf(err, errlen, "NOTIFY_SOCKET: socket: %s", strerror(errno));
            rc = -1;
        }
    }
    if (n->fd < 0)
        n->watchdog_usec = 0; /* nobody to tell we are alive */
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    return rc;
}

bool notify_enabled(const notify_t *n) { return n->fd >= 0; }

int notify_send(const notify_t *n, const char *fmt, ...)
{
    if (n->fd < 0)
        return 0;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (len < 0)
        return -1;
    if ((size_t)len >= sizeof msg)
        len = sizeof msg - 1;
    struct sockaddr_un sa;
    socklen_t salen;
    if (make_addr(n->addr, &sa, &salen) != 0) {
        errno = EINVAL;
        return -1;
    }
    ssize_t w;
    do
        w = sendto(n->fd, msg, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT,
                   (struct sockaddr *)&sa, salen);
    while (w < 0 && errno == EINTR);
    return w == len ? 0 : -1;
}

void notify_close(notify_t *n)
{
    if (n->fd >= 0)
        close(n->fd);
    n->fd = -1;
}

uint64_t notify_monotonic_usec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
