/*
 * evbusctl status / reload — talk to a running evbusd: its admin endpoint
 * (GET /health, POST /api/v1/reload with EVBUS_TOKEN) or, for reload, a signal to its
 * pidfile.
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
#include <time.h>
#include <unistd.h>

#include "ctl/ctl.h"

int ctl_http_request(const char *addr, const char *method, const char *path, char **body,
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
    /* the operator API's bearer token comes from the environment only: a
     * command-line argument would show in ps(1) */
    const char *token = getenv("EVBUS_TOKEN");
    char auth[1200] = "";
    if (token && *token && strlen(token) < 1024 && !strpbrk(token, "\r\n"))
        snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", token);
    char req[2048];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.0\r\nHost: %s\r\n%sContent-Length: 0\r\n\r\n", method,
                     path, addr, auth);
    if (write(fd, req, (size_t)n) != n) {
        snprintf(err, errlen, "writing to %s: %s", addr, strerror(errno));
        close(fd);
        return -1;
    }
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    ssize_t r;
    /* `buf = realloc(buf, ...)` lost the buffer and then read into NULL
     * when memory ran out (cppcheck memleakOnRealloc): fail the request. */
    while (buf && (r = read(fd, buf + len, cap - len - 1)) > 0) {
        len += (size_t)r;
        if (len + 1 >= cap) {
            char *grown = realloc(buf, cap *= 2);
            if (!grown)
                free(buf);
            buf = grown;
        }
    }
    close(fd);
    if (!buf) {
        snprintf(err, errlen, "reading from %s: out of memory", addr);
        return -1;
    }
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

/* With partitions: the caps every partition keeps (its share of the
 * stream's, from partition 0's trimmer; all partitions share one policy). */
static void print_partition_policy(const json_t *part)
{
    const json_t *pol = json_object_get(json_object_get(part, "retention"), "policy");
    const json_t *str = json_object_get(pol, "stream");
    long long me = json_integer_value(json_object_get(pol, "max_entries"));
    long long mb = json_integer_value(json_object_get(pol, "max_bytes"));
    long long ma = json_integer_value(json_object_get(pol, "max_age_ms"));
    long long n = json_integer_value(json_object_get(str, "partitions"));
    char ents[96] = "none", byts[96] = "none";
    if (me)
        snprintf(ents, sizeof ents, "%lld (%lld / %lld partitions)", me,
                 (long long)json_integer_value(json_object_get(str, "max_entries")), n);
    if (mb)
        snprintf(byts, sizeof byts, "%lld (%lld / %lld partitions)", mb,
                 (long long)json_integer_value(json_object_get(str, "max_bytes")), n);
    printf("  retention:  each partition: max_age %llds, max_entries %s, max_bytes %s%s%s\n",
           ma / 1000, ents, byts, me || mb ? ", on_full " : "",
           me || mb ? json_string_value(json_object_get(pol, "on_full")) : "");
}

/* One partition's trimmer in a few words: entries kept (of the cap), and
 * what stops trimming when it does. */
static void partition_trim_text(const json_t *ret, char *out, size_t len)
{
    const json_t *pol = json_object_get(ret, "policy");
    long long me = json_integer_value(json_object_get(pol, "max_entries"));
    long long mb = json_integer_value(json_object_get(pol, "max_bytes"));
    int n = snprintf(out, len, "%lld", (long long)json_integer_value(json_object_get(ret, "entries")));
    if (me && n >= 0 && (size_t)n < len)
        n += snprintf(out + n, len - (size_t)n, " of %lld", me);
    if (n >= 0 && (size_t)n < len)
        n += snprintf(out + n, len - (size_t)n, " entries");
    if (mb && n >= 0 && (size_t)n < len)
        n += snprintf(out + n, len - (size_t)n, ", ~%lld of %lld bytes",
                      (long long)json_integer_value(json_object_get(ret, "bytes")), mb);
    const char *level = json_string_value(json_object_get(ret, "level"));
    const char *fg = json_string_value(json_object_get(ret, "floor_group"));
    const json_t *arc = json_object_get(ret, "archive");
    if (n >= 0 && (size_t)n < len && level && strcmp(level, "ok") != 0)
        n += snprintf(out + n, len - (size_t)n, " (%s)", level);
    if (n >= 0 && (size_t)n < len && json_is_true(json_object_get(ret, "full")))
        n += snprintf(out + n, len - (size_t)n, "; FULL: publishers are refused");
    if (n >= 0 && (size_t)n < len && json_is_true(json_object_get(ret, "blocked")))
        n += snprintf(out + n, len - (size_t)n, "; group %s holds the floor", fg ? fg : "?");
    if (n >= 0 && (size_t)n < len && json_is_true(json_object_get(arc, "trim_waiting")))
        n += snprintf(out + n, len - (size_t)n, "; trimming waits for the archive%s%s",
                      json_string_value(json_object_get(arc, "last_error")) ? ": " : "",
                      json_string_value(json_object_get(arc, "last_error"))
                          ? json_string_value(json_object_get(arc, "last_error"))
                          : "");
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
                   "Shows the running evbusd's health (GET /health on admin.listen), with the\n"
                   "handler instances it holds paused (`evbusctl handlers` changes them).\n"
                   "Exit status: 0 ok or degraded, 1 unhealthy or unreachable, 2 usage.\n");
            return CTL_OK;
        default: return ctl_usage_error("status", "unknown option");
        }
    }
    if (optind < argc)
        return ctl_usage_error("status", "unexpected argument '%s'", argv[optind]);
    /* with --admin the configuration is not even read */
    const ctl_env_t *env = admin ? NULL : ctl_env();
    if (env && !env->cfg)
        return ctl_no_config("status", "the admin endpoint", "--admin HOST:PORT");
    if (env)
        admin = env->admin_listen;
    if (!admin)
        return ctl_usage_error("status", "no admin endpoint: set admin.listen in %s or pass "
                                         "--admin HOST:PORT", env->conf_dir);
    char *body = NULL, err[256];
    int code = ctl_http_request(admin, "GET", "/health", &body, err, sizeof err);
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
        json_t *live = json_object_get(h, "config");
        if (json_is_object(live)) {
            long long built = json_integer_value(json_object_get(live, "built_ms"));
            time_t secs = (time_t)(built / 1000);
            struct tm tm;
            char at[64] = "?";
            if (built && gmtime_r(&secs, &tm))
                strftime(at, sizeof at, "%Y-%m-%dT%H:%M:%SZ", &tm);
            printf("config:       %s (loaded %s)\n",
                   json_string_value(json_object_get(live, "digest")), at);
            const char *pd = json_string_value(json_object_get(live, "previous_digest"));
            if (pd)
                printf("  previous:   %s\n", pd);
            size_t i;
            json_t *in;
            json_array_foreach(json_object_get(live, "instances"), i, in)
            {
                printf("  instance:   %s = %s %s (%.19s…)\n",
                       json_string_value(json_object_get(in, "name")),
                       json_string_value(json_object_get(in, "plugin")),
                       json_string_value(json_object_get(in, "version")),
                       json_string_value(json_object_get(in, "so_digest")));
            }
        }
        printf("consumer:     %s/%s on %s\n",
               json_string_value(json_object_get(h, "group")),
               json_string_value(json_object_get(h, "consumer")),
               json_string_value(json_object_get(h, "stream")));
        printf("redis:        %s\n", json_is_false(json_object_get(redis, "reachable"))
                                         ? "UNREACHABLE"
                                     : json_is_true(json_object_get(redis, "circuit_open"))
                                         ? "circuit open"
                                     : json_integer_value(json_object_get(redis, "consecutive_failures"))
                                         ? "failing"
                                         : "ok");
        json_t *pg = json_object_get(h, "postgres"), *in = json_object_get(h, "inhost");
        if (json_is_object(pg))
            printf("postgres:     %s%s%s\n",
                   json_is_true(json_object_get(pg, "connected")) ? "connected" : "UNREACHABLE",
                   json_string_value(json_object_get(pg, "last_error")) ? ": " : "",
                   json_string_value(json_object_get(pg, "last_error"))
                       ? json_string_value(json_object_get(pg, "last_error"))
                       : "");
        if (json_is_object(in)) {
            printf("in host:      %lld read, not yet acknowledged; oldest %lld ms\n",
                   (long long)json_integer_value(json_object_get(in, "pending")),
                   (long long)json_integer_value(json_object_get(in, "oldest_ms")));
            size_t i;
            json_t *w;
            json_array_foreach(json_object_get(in, "stuck"), i, w)
            {
                printf("  stuck:      %s in %s for %lld ms (timeout %lld ms)\n",
                       json_string_value(json_object_get(w, "worker")),
                       json_string_value(json_object_get(w, "handler")),
                       (long long)json_integer_value(json_object_get(w, "running_ms")),
                       (long long)json_integer_value(json_object_get(w, "timeout_ms")));
            }
        }
        /* with partitions, each partition has its trimmer: listed below */
        json_t *parts = json_object_get(h, "partitions");
        json_t *ret = parts ? NULL : json_object_get(h, "retention");
        if (ret) {
            json_t *pol = json_object_get(ret, "policy");
            char caps[160] = "";
            long long me = json_integer_value(json_object_get(pol, "max_entries"));
            long long mb = json_integer_value(json_object_get(pol, "max_bytes"));
            long long ma = json_integer_value(json_object_get(pol, "max_age_ms"));
            snprintf(caps, sizeof caps, "max_age %llds, max_entries %s, max_bytes %s",
                     ma / 1000, me ? "" : "none", mb ? "" : "none");
            if (me || mb)
                snprintf(caps, sizeof caps, "max_age %llds, max_entries %lld, max_bytes %lld, "
                         "on_full %s", ma / 1000, me, mb,
                         json_string_value(json_object_get(pol, "on_full")));
            printf("retention:    %lld entries, ~%lld bytes, oldest %llds (%s)\n",
                   (long long)json_integer_value(json_object_get(ret, "entries")),
                   (long long)json_integer_value(json_object_get(ret, "bytes")),
                   (long long)json_integer_value(json_object_get(ret, "oldest_entry_age_s")),
                   json_string_value(json_object_get(ret, "level")));
            printf("  policy:     %s\n", caps);
            const char *fg = json_string_value(json_object_get(ret, "floor_group"));
            printf("  floor:      %s%s%s%s\n", json_string_value(json_object_get(ret, "floor")),
                   fg ? " (group " : "", fg ? fg : "", fg ? ")" : "");
            if (json_is_true(json_object_get(ret, "blocked")))
                printf("  blocked:    group %s has not read or acknowledged entries the policy "
                       "would trim%s\n", fg ? fg : "?",
                       json_is_true(json_object_get(ret, "full")) ? "; the stream is FULL: "
                                                                   "publishers are refused"
                                                                 : "");
            json_t *arc = json_object_get(ret, "archive");
            const char *mode = json_string_value(json_object_get(arc, "mode"));
            if (mode && strcmp(mode, "off") != 0) {
                const char *err = json_string_value(json_object_get(arc, "last_error"));
                const char *st = json_string_value(json_object_get(arc, "state"));
                const char *wm = json_string_value(json_object_get(arc, "watermark"));
                printf("  archive:    %s, %s, watermark %s, ~%lld entries behind%s%s%s\n", mode,
                       st ? st : "no archiver", wm && *wm ? wm : "none",
                       (long long)json_integer_value(json_object_get(arc, "lag_entries")),
                       json_is_true(json_object_get(arc, "trim_waiting")) ? "; trimming waits"
                                                                          : "",
                       err ? ": " : "", err ? err : "");
            }
        }
        /* paused handler instances as this evbusd enforces them */
        json_t *paused = json_object_get(h, "paused");
        if (json_is_object(paused)) {
            printf("paused:%s\n", json_object_size(paused) ? "" : "       none");
            const char *pname;
            json_t *prec;
            json_object_foreach(paused, pname, prec)
            {
                const char *by = json_string_value(json_object_get(prec, "by"));
                const char *since = json_string_value(json_object_get(prec, "since"));
                const char *why = json_string_value(json_object_get(prec, "reason"));
                printf("  %-12s since %s by %s%s%s\n", pname, since ? since : "?",
                       by && *by ? by : "?", why && *why ? ": " : "", why && *why ? why : "");
            }
        }
        printf("dlq:          %lld / %lld (%s)\n",
               (long long)json_integer_value(json_object_get(dlq, "length")),
               (long long)json_integer_value(json_object_get(dlq, "capacity")),
               json_string_value(json_object_get(dlq, "level")));
        if (parts) {
            printf("partitions:   %zu (lag, pending, retries, dead letters, entries kept)\n",
                   json_array_size(parts));
            print_partition_policy(json_array_get(parts, 0));
        }
        for (size_t i = 0; parts && i < json_array_size(parts); i++) {
            json_t *o = json_array_get(parts, i);
            char v[4][24];
            const char *keys[4] = {"lag", "pending", "retry_scheduled", "dlq_length"};
            for (int k = 0; k < 4; k++) {
                json_t *x = json_object_get(o, keys[k]);
                if (json_is_integer(x))
                    snprintf(v[k], sizeof v[k], "%lld", (long long)json_integer_value(x));
                else
                    snprintf(v[k], sizeof v[k], "?");
            }
            char owner[200] = "";
            json_t *who = json_object_get(o, "owner");
            if (json_object_get(o, "epoch"))
                snprintf(owner, sizeof owner, ", owner %s (epoch %lld%s%s)",
                         json_is_string(who) ? json_string_value(who) : "none",
                         (long long)json_integer_value(json_object_get(o, "epoch")),
                         json_object_get(o, "held_epoch") ? ", here: " : "",
                         json_object_get(o, "held_epoch")
                             ? json_string_value(json_object_get(o, "state"))
                             : "");
            char trim[400];
            partition_trim_text(json_object_get(o, "retention"), trim, sizeof trim);
            printf("  %-24s lag %s, pending %s, retries %s, dlq %s%s, %s\n",
                   json_string_value(json_object_get(o, "stream")), v[0], v[1], v[2], v[3],
                   owner, trim);
        }
        json_t *own = json_object_get(h, "ownership");
        if (json_is_true(json_object_get(own, "enabled"))) {
            json_t *hs = json_object_get(own, "hosts");
            printf("hosts:        %zu live:", json_array_size(hs));
            for (size_t k = 0; k < json_array_size(hs); k++)
                printf(" %s", json_string_value(json_array_get(hs, k)));
            printf("; this host holds %zu partition%s\n",
                   json_array_size(json_object_get(own, "owned")),
                   json_array_size(json_object_get(own, "owned")) == 1 ? "" : "s");
        }
        const char *le = json_string_value(json_object_get(rl, "last_error"));
        const json_t *pend = json_object_get(rl, "pending_restart");
        printf("last reload:  %s\n", !json_is_true(json_object_get(rl, "last_ok")) ? "FAILED"
                                      : json_array_size(pend)                  ? "partial"
                                                                               : "ok");
        size_t i;
        const json_t *p;
        json_array_foreach(pend, i, p)
        {
            printf("  pending restart: %s at %s (running %s, files say %s)\n",
                   json_string_value(json_object_get(p, "key")),
                   json_string_value(json_object_get(p, "at")),
                   json_string_value(json_object_get(p, "running")),
                   json_string_value(json_object_get(p, "configured")));
        }
        if (le)
            printf("reload error:\n%s\n", le);
        if (env)
            printf("config:       %s (%s)%s\n", env->conf_dir, env->conf_origin,
                   env->conf_errors ? ": broken, see the warning above" : "");
    }
    int rc = st && strcmp(st, "unhealthy") != 0 ? CTL_OK : CTL_FAIL;
    json_decref(h);
    free(body);
    return rc;
}

/* ---- reload ---------------------------------------------------------- */

/* The running daemon's {generation, reload} now: from GET /health on the
 * admin endpoint, or from the file evbusd keeps in its state dir.  NULL
 * when neither answers (err says why). */
static json_t *reload_state(const char *admin, const char *running_file, char *err,
                            size_t errlen)
{
    json_t *doc = NULL;
    if (admin) {
        char *body = NULL;
        int code = ctl_http_request(admin, "GET", "/health", &body, err, errlen);
        if (code < 0)
            return NULL;
        doc = json_loads(body, 0, NULL);
        free(body);
    } else {
        json_error_t jerr;
        doc = json_load_file(running_file, 0, &jerr);
        if (!doc)
            snprintf(err, errlen, "%s", jerr.text);
    }
    if (doc && !json_is_object(json_object_get(doc, "reload"))) {
        snprintf(err, errlen, "no reload section in evbusd's answer");
        json_decref(doc);
        doc = NULL;
    }
    return doc;
}

static long long reload_count(const json_t *doc)
{
    const json_t *r = json_object_get(doc, "reload");
    return json_integer_value(json_object_get(r, "ok_total")) +
           json_integer_value(json_object_get(r, "failed_total")) +
           json_integer_value(json_object_get(r, "partial_total"));
}

/* Print the outcome; the exit status: 0 ok, 3 partial, 1 failed. */
static int reload_report(const json_t *doc, bool json)
{
    const json_t *r = json_object_get(doc, "reload");
    const char *status = json_string_value(json_object_get(r, "status"));
    const json_t *pend = json_object_get(r, "pending_restart");
    bool failed = !json_is_true(json_object_get(r, "last_ok"));
    int rc = failed ? CTL_FAIL : json_array_size(pend) > 0 ? CTL_PARTIAL : CTL_OK;
    if (json) {
        json_t *out = json_pack("{s:s, s:I, s:O}", "reload",
                                failed ? "failed" : status ? status : "ok", "generation",
                                json_integer_value(json_object_get(doc, "generation")),
                                "pending_restart", pend ? (json_t *)pend : json_array());
        if (failed)
            json_object_set(out, "error", json_object_get(r, "last_error"));
        char *s = json_dumps(out, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
        json_decref(out);
        return rc;
    }
    if (failed) {
        const char *le = json_string_value(json_object_get(r, "last_error"));
        fprintf(stderr, "%s\n", le ? le : "(no message)");
        fprintf(stderr, "evbusctl reload: the reload failed; generation %lld keeps serving\n",
                (long long)json_integer_value(json_object_get(doc, "generation")));
        return rc;
    }
    size_t i;
    const json_t *p;
    json_array_foreach(pend, i, p)
    {
        printf("%s: %s: needs a restart: running %s, files say %s\n",
               json_string_value(json_object_get(p, "at")),
               json_string_value(json_object_get(p, "key")),
               json_string_value(json_object_get(p, "running")),
               json_string_value(json_object_get(p, "configured")));
    }
    printf("reload %s: generation %lld live%s\n", rc == CTL_PARTIAL ? "partial" : "ok",
           (long long)json_integer_value(json_object_get(doc, "generation")),
           rc == CTL_PARTIAL ? "; the settings above keep their running value until a restart"
                             : "");
    return rc;
}

int cmd_reload(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"admin", required_argument, NULL, 'a'},
                                         {"pidfile", required_argument, NULL, 'p'},
                                         {"no-wait", no_argument, NULL, 'n'},
                                         {"timeout", required_argument, NULL, 't'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    bool json = false, wait = true;
    const char *admin = NULL, *pidfile = NULL;
    long timeout_s = 60;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'j': json = true; break;
        case 'a': admin = optarg; break;
        case 'p': pidfile = optarg; break;
        case 'n': wait = false; break;
        case 't': {
            char *end;
            timeout_s = strtol(optarg, &end, 10);
            if (*end || timeout_s < 1 || timeout_s > 3600)
                return ctl_usage_error("reload", "--timeout: expected seconds (1..3600), got "
                                                 "'%s'", optarg);
            break;
        }
        case 'h':
            printf("Usage: evbusctl reload [--pidfile PATH | --admin HOST:PORT] [--no-wait]\n"
                   "                       [--timeout S] [--json]\n\n"
                   "Asks the running evbusd to reload conf.d and its plugins: POST\n"
                   "/api/v1/reload on the admin endpoint (--admin, or admin.listen) with the\n"
                   "token in EVBUS_TOKEN (admin role); without EVBUS_TOKEN, SIGHUP to the pid\n"
                   "in PATH (default STATE_DIR/evbusd.pid).  Then waits\n"
                   "(up to --timeout, default 60 s) for the outcome and prints it: every\n"
                   "changed setting that needs a restart with its file:line:column, or the\n"
                   "errors of a failed reload.  --no-wait only asks.\n"
                   "Exit status: 0 reloaded, 3 reloaded but some changed settings wait for a\n"
                   "restart (partial), 1 the reload failed or evbusd is unreachable, 2 usage.\n");
            return CTL_OK;
        default: return ctl_usage_error("reload", "unknown option");
        }
    }
    if (optind < argc)
        return ctl_usage_error("reload", "unexpected argument '%s'", argv[optind]);
    if (!admin && !pidfile)
        admin = ctl_env()->admin_listen;
    char running[1100] = "", err[256] = "";
    /* POST /api/v1/reload needs a token with the admin role; without
     * EVBUS_TOKEN a configured admin.listen is not used for the request
     * (the pidfile is), an explicit --admin is an error */
    bool have_token = getenv("EVBUS_TOKEN") && *getenv("EVBUS_TOKEN");
    if (admin && !pidfile && !have_token && admin != ctl_env()->admin_listen)
        return ctl_usage_error("reload", "--admin needs EVBUS_TOKEN (a token with the admin "
                                         "role; see evbusctl token create)");
    const char *via_admin = admin && !pidfile && have_token ? admin : NULL;
    /* --admin and --pidfile need no configuration at all */
    if (!via_admin && !pidfile) {
        if (!ctl_env()->state_dir)
            return ctl_no_config("reload", "evbusd", "--admin HOST:PORT or --pidfile PATH");
        snprintf(running, sizeof running, "%s/%s", ctl_env()->state_dir, EVBUS_RUNNING_FILE);
    }
    /* the count of finished reloads before asking: the outcome is the next one */
    json_t *before = wait ? reload_state(via_admin, running, err, sizeof err) : NULL;
    long long seen = before ? reload_count(before) : -1;
    json_decref(before);
    long pid = 0;
    if (via_admin) {
        char *body = NULL;
        int code = ctl_http_request(admin, "POST", "/api/v1/reload", &body, err, sizeof err);
        if (code < 0)
            return ctl_fail("reload", "%s", err);
        /* 200 reloaded, 422 the reload failed: either way the outcome is
         * recorded and reported below */
        if (code != 200 && code != 422) {
            fprintf(stderr, "%s\n", body);
            free(body);
            return ctl_fail("reload", "evbusd answered HTTP %d", code);
        }
        free(body);
    } else {
        char path[1024];
        snprintf(path, sizeof path, "%s", pidfile ? pidfile : "");
        if (!pidfile)
            snprintf(path, sizeof path, "%s/evbusd.pid", ctl_env()->state_dir);
        FILE *f = fopen(path, "r");
        if (!f)
            return ctl_fail("reload", "cannot read pidfile %s: %s", path, strerror(errno));
        int ok = fscanf(f, "%ld", &pid);
        fclose(f);
        if (ok != 1 || pid <= 1)
            return ctl_fail("reload", "pidfile %s holds no valid pid", path);
        if (pidfile) {
            /* the running file sits next to the pidfile evbusd wrote */
            char *slash = strrchr(path, '/');
            if (slash)
                snprintf(running, sizeof running, "%.*s/%s", (int)(slash - path), path,
                         EVBUS_RUNNING_FILE);
            else
                snprintf(running, sizeof running, "%s", EVBUS_RUNNING_FILE);
            if (wait) {
                json_t *b = reload_state(NULL, running, err, sizeof err);
                seen = b ? reload_count(b) : -1;
                json_decref(b);
            }
        }
        if (kill((pid_t)pid, SIGHUP) != 0)
            return ctl_fail("reload", "cannot signal pid %ld: %s", pid, strerror(errno));
    }
    if (!wait || seen < 0) {
        if (wait)
            fprintf(stderr, "evbusctl reload: cannot follow the outcome (%s); see `evbusctl "
                    "status`\n", err);
        if (json)
            printf(via_admin ? "{\"reload\":\"scheduled\",\"via\":\"admin\"}\n"
                             : "{\"reload\":\"signalled\",\"pid\":%ld}\n", pid);
        else if (via_admin)
            printf("reload scheduled\n");
        else
            printf("SIGHUP sent to evbusd (pid %ld)\n", pid);
        return CTL_OK;
    }
    for (long waited = 0; waited < timeout_s * 20; waited++) {
        json_t *now = reload_state(via_admin, running, err, sizeof err);
        if (now && reload_count(now) > seen) {
            int rc = reload_report(now, json);
            json_decref(now);
            return rc;
        }
        json_decref(now);
        usleep(50 * 1000);
    }
    return ctl_fail("reload", "asked, but no outcome within %ld s; see `evbusctl status`",
                    timeout_s);
}
