/*
 * evbusctl status / reload — talk to a running evbusd: its admin endpoint
 * (GET /health, POST /reload) or, for reload, a signal to its pidfile.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "ctl/ctl.h"

/* One HTTP/1.0 request to host:port; returns the status code and the body
 * (malloc'd) or -1 with err. */
static int http_request(const char *addr, const char *method, const char *path, char **body,
                        char *err, size_t errlen)
{
    char host[128];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host) {
        snprintf(err, errlen, "admin address '%s' is not host:port", addr);
        return -1;
    }
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        snprintf(err, errlen, "admin address '%s': host must be an IPv4 address", addr);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        snprintf(err, errlen, "cannot reach evbusd at %s: %s", addr, strerror(errno));
        close(fd);
        return -1;
    }
    char req[512];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: %s\r\nContent-Length: 0\r\n\r\n",
                     method, path, addr);
    if (write(fd, req, (size_t)n) != n) {
        snprintf(err, errlen, "writing to %s: %s", addr, strerror(errno));
        close(fd);
        return -1;
    }
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    ssize_t r;
    while ((r = read(fd, buf + len, cap - len - 1)) > 0) {
        len += (size_t)r;
        if (len + 1 >= cap)
            buf = realloc(buf, cap *= 2);
    }
    close(fd);
    buf[len] = '\0';
    int status = 0;
    if (sscanf(buf, "HTTP/%*s %d", &status) != 1) {
        snprintf(err, errlen, "no HTTP response from %s", addr);
        free(buf);
        return -1;
    }
    char *sep = strstr(buf, "\r\n\r\n");
    *body = strdup(sep ? sep + 4 : "");
    free(buf);
    return status;
}

int cmd_status(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"admin", required_argument, NULL, 'a'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    bool json = false;
    const char *admin = NULL;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'j': json = true; break;
        case 'a': admin = optarg; break;
        case 'h':
            printf("Usage: evbusctl status [--admin HOST:PORT] [--json]\n\n"
                   "Shows the running evbusd's health (GET /health on admin.listen).\n"
                   "Exit status: 0 ok or degraded, 1 unhealthy or unreachable, 2 usage.\n");
            return CTL_OK;
        default: return ctl_usage_error("status", "unknown option");
        }
    }
    if (optind < argc)
        return ctl_usage_error("status", "unexpected argument '%s'", argv[optind]);
    if (!admin)
        admin = ctl_env()->admin_listen;
    if (!admin)
        return ctl_usage_error("status", "no admin endpoint: set admin.listen in the "
                                         "configuration or pass --admin HOST:PORT");
    char *body = NULL, err[256];
    int code = http_request(admin, "GET", "/health", &body, err, sizeof err);
    if (code < 0)
        return ctl_fail("status", "%s", err);
    json_error_t jerr;
    json_t *h = json_loads(body, 0, &jerr);
    if (!h) {
        free(body);
        return ctl_fail("status", "evbusd answered with invalid JSON: %s", jerr.text);
    }
    const char *st = json_string_value(json_object_get(h, "status"));
    if (json) {
        printf("%s\n", body);
    } else {
        json_t *rl = json_object_get(h, "reload"), *dlq = json_object_get(h, "dlq"),
               *redis = json_object_get(h, "redis");
        printf("status:       %s\n", st ? st : "?");
        printf("generation:   %lld\n", (long long)json_integer_value(json_object_get(h, "generation")));
        printf("consumer:     %s/%s on %s\n",
               json_string_value(json_object_get(h, "group")),
               json_string_value(json_object_get(h, "consumer")),
               json_string_value(json_object_get(h, "stream")));
        printf("redis:        %s\n", json_is_true(json_object_get(redis, "circuit_open"))
                                         ? "circuit open"
                                     : json_integer_value(json_object_get(redis, "consecutive_failures"))
                                         ? "failing"
                                         : "ok");
        printf("dlq:          %lld / %lld (%s)\n",
               (long long)json_integer_value(json_object_get(dlq, "length")),
               (long long)json_integer_value(json_object_get(dlq, "capacity")),
               json_string_value(json_object_get(dlq, "level")));
        const char *le = json_string_value(json_object_get(rl, "last_error"));
        printf("last reload:  %s\n", json_is_true(json_object_get(rl, "last_ok")) ? "ok" : "FAILED");
        if (le)
            printf("reload error:\n%s\n", le);
    }
    int rc = st && strcmp(st, "unhealthy") != 0 ? CTL_OK : CTL_FAIL;
    json_decref(h);
    free(body);
    return rc;
}

int cmd_reload(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"admin", required_argument, NULL, 'a'},
                                         {"pidfile", required_argument, NULL, 'p'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    bool json = false;
    const char *admin = NULL, *pidfile = NULL;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'j': json = true; break;
        case 'a': admin = optarg; break;
        case 'p': pidfile = optarg; break;
        case 'h':
            printf("Usage: evbusctl reload [--pidfile PATH | --admin HOST:PORT] [--json]\n\n"
                   "Asks the running evbusd to reload conf.d and its plugins: SIGHUP to the\n"
                   "pid in PATH (default STATE_DIR/evbusd.pid), or POST /reload on the admin\n"
                   "endpoint when --admin is given or admin.listen is configured.  The reload\n"
                   "itself runs in evbusd; see `evbusctl status` for its outcome.\n");
            return CTL_OK;
        default: return ctl_usage_error("reload", "unknown option");
        }
    }
    if (optind < argc)
        return ctl_usage_error("reload", "unexpected argument '%s'", argv[optind]);
    if (!admin && !pidfile)
        admin = ctl_env()->admin_listen;
    if (admin && !pidfile) {
        char *body = NULL, err[256];
        int code = http_request(admin, "POST", "/reload", &body, err, sizeof err);
        if (code < 0)
            return ctl_fail("reload", "%s", err);
        if (code != 202) {
            fprintf(stderr, "%s\n", body);
            free(body);
            return ctl_fail("reload", "evbusd answered HTTP %d", code);
        }
        printf(json ? "{\"reload\":\"scheduled\",\"via\":\"admin\"}\n" : "reload scheduled\n");
        free(body);
        return CTL_OK;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s", pidfile ? pidfile : "");
    if (!pidfile)
        snprintf(path, sizeof path, "%s/evbusd.pid", ctl_env()->state_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return ctl_fail("reload", "cannot read pidfile %s: %s", path, strerror(errno));
    long pid = 0;
    int ok = fscanf(f, "%ld", &pid);
    fclose(f);
    if (ok != 1 || pid <= 1)
        return ctl_fail("reload", "pidfile %s holds no valid pid", path);
    if (kill((pid_t)pid, SIGHUP) != 0)
        return ctl_fail("reload", "cannot signal pid %ld: %s", pid, strerror(errno));
    if (json)
        printf("{\"reload\":\"signalled\",\"pid\":%ld}\n", pid);
    else
        printf("SIGHUP sent to evbusd (pid %ld)\n", pid);
    return CTL_OK;
}
