/*
 * evbusd as a system service: the sd_notify protocol driven without
 * systemd (a datagram socket of our own as $NOTIFY_SOCKET), the watchdog
 * rule, the unit file through `systemd-analyze verify`, log.format json,
 * secrets kept out of the log, and --version.  Real redis-server, real
 * evbusd.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "util/redact.h"

static fx_t F;

static void setup(void) { fx_start(&F, false); }
static void teardown(void) { fx_stop(&F); }

TestSuite(service, .init = setup, .fini = teardown, .timeout = 300);

/* ---- a notify socket of our own ----------------------------------------- */

#define RX_MAX 4096

typedef struct rx {
    int fd;
    size_t n;
    long long at[RX_MAX]; /* harness_now_ms() when received */
    char *msg[RX_MAX];
} rx_t;

static rx_t RX;

/* Bind a datagram socket at `name` (a path, or "@name": abstract). */
static void rx_bind(rx_t *r, const char *name)
{
    memset(r, 0, sizeof *r);
    r->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert(r->fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(name);
    cr_assert(len < sizeof sa.sun_path);
    memcpy(sa.sun_path, name, len);
    if (name[0] == '@')
        sa.sun_path[0] = '\0';
    cr_assert_eq(bind(r->fd, (struct sockaddr *)&sa,
                      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)),
                 0, "bind %s: %s", name, strerror(errno));
}

static void rx_close(rx_t *r)
{
    close(r->fd);
    for (size_t i = 0; i < r->n; i++)
        free(r->msg[i]);
    r->n = 0;
}

/* Receive until a datagram containing `want` arrives (true) or timeout.
 * Every datagram is kept. */
static bool rx_wait(rx_t *r, const char *want, int timeout_ms)
{
    long long until = harness_now_ms() + timeout_ms;
    for (;;) {
        long long left = until - harness_now_ms();
        if (left <= 0)
            return false;
        struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
        setsockopt(r->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        char buf[4096];
        ssize_t got = recv(r->fd, buf, sizeof buf - 1, 0);
        if (got < 0)
            continue;
        buf[got] = '\0';
        cr_assert(r->n < RX_MAX);
        r->at[r->n] = harness_now_ms();
        r->msg[r->n++] = strdup(buf);
        if (strstr(buf, want))
            return true;
    }
}

/* Index of the first datagram at or after `from` with a line `line`. */
static long rx_find(const rx_t *r, size_t from, const char *line)
{
    size_t l = strlen(line);
    for (size_t i = from; i < r->n; i++)
        for (const char *p = r->msg[i]; (p = strstr(p, line)); p += l)
            if ((p == r->msg[i] || p[-1] == '\n') && (p[l] == '\n' || p[l] == '\0' || p[l - 1] == '='))
                return (long)i;
    return -1;
}

static size_t rx_count(const rx_t *r, size_t from, const char *line)
{
    size_t n = 0;
    for (long i = (long)from; (i = rx_find(r, (size_t)i, line)) >= 0; i++)
        n++;
    return n;
}

static void start_evbusd_env(const char *notify_socket, const char *watchdog_usec)
{
    char *bin = harness_build_path("host/daemon/evbusd");
    char *argv[] = {bin, "-c", F.conf, NULL};
    char ns[300], wd[64];
    snprintf(ns, sizeof ns, "NOTIFY_SOCKET=%s", notify_socket);
    snprintf(wd, sizeof wd, "WATCHDOG_USEC=%s", watchdog_usec ? watchdog_usec : "");
    char *envp[] = {ns, watchdog_usec ? wd : NULL, NULL};
    cr_assert_eq(harness_spawn(&F.d, argv, envp, F.log), 0);
    free(bin);
}

/* ---- the notify protocol ------------------------------------------------- */

Test(service, notify_ready_reload_watchdog_status_and_stopping)
{
    fx_host_conf(&F, "c1", NULL);
    char sock[600];
    fx_path(&F, "notify.sock", sock, sizeof sock);
    rx_bind(&RX, sock);
    start_evbusd_env(sock, "400000"); /* 400 ms: a keep-alive at least every 100 ms */

    cr_assert(rx_wait(&RX, "READY=1", 20000), "no READY=1 after start");
    long ready = rx_find(&RX, 0, "READY=1");
    cr_expect(fx_log_has(&F, " started (pid "), "READY=1 came before the generation was live");
    cr_expect(strstr(RX.msg[ready], "STATUS=ok: generation 1, "), "READY=1 without STATUS: %s",
              RX.msg[ready]);
    cr_expect_eq(rx_find(&RX, 0, "RELOADING=1"), -1);

    /* keep-alives while idle-blocking: ~10 in a second */
    long long t0 = harness_now_ms();
    while (harness_now_ms() - t0 < 1000)
        rx_wait(&RX, "\x01", 100);
    size_t wd = rx_count(&RX, (size_t)ready, "WATCHDOG=1");
    cr_expect_geq(wd, 5, "only %zu WATCHDOG=1 in a second with WATCHDOG_USEC=400000", wd);

    /* events handled show in STATUS= */
    fx_publish(&F, "s", 3, "bulk.x", "t", "{\"i\":%d}");
    cr_expect(rx_wait(&RX, "3 events handled", 10000), "STATUS= never counted the events");

    /* a reload: RELOADING=1 with MONOTONIC_USEC, then READY=1 */
    size_t before = RX.n;
    kill(F.d.pid, SIGHUP);
    cr_assert(rx_wait(&RX, "RELOADING=1", 10000), "no RELOADING=1 after SIGHUP");
    long rl = rx_find(&RX, before, "RELOADING=1");
    const char *mono = strstr(RX.msg[rl], "MONOTONIC_USEC=");
    cr_assert(mono, "RELOADING=1 without MONOTONIC_USEC: %s", RX.msg[rl]);
    unsigned long long usec = strtoull(mono + 15, NULL, 10);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    unsigned long long now_usec = (unsigned long long)now.tv_sec * 1000000u + now.tv_nsec / 1000u;
    cr_expect(usec > 0 && usec <= now_usec && now_usec - usec < 10000000u,
              "MONOTONIC_USEC=%llu is not CLOCK_MONOTONIC now (%llu)", usec, now_usec);
    cr_assert(rx_wait(&RX, "READY=1", 10000), "no READY=1 after the reload");
    long again = rx_find(&RX, (size_t)rl + 1, "READY=1");
    cr_expect_gt(again, rl);
    cr_expect(strstr(RX.msg[again], "generation 2"), "STATUS after reload: %s", RX.msg[again]);

    /* stop: STOPPING=1, then a clean exit */
    before = RX.n;
    kill(F.d.pid, SIGTERM);
    cr_assert(rx_wait(&RX, "STOPPING=1", 10000), "no STOPPING=1 after SIGTERM");
    cr_expect_eq(fx_evbusd_wait(&F, 20000), 0);
    F.d.pid = 0;
    cr_expect_eq(rx_find(&RX, before, "READY=1"), -1, "READY=1 while stopping");
    rx_close(&RX);
}

Test(service, notify_to_an_abstract_socket)
{
    fx_host_conf(&F, "c1", NULL);
    char name[108];
    snprintf(name, sizeof name, "@evbus-test-notify-%ld-%lld", (long)getpid(), harness_now_ms());
    rx_bind(&RX, name);
    start_evbusd_env(name, NULL);
    cr_assert(rx_wait(&RX, "READY=1", 20000), "no READY=1 on %s", name);
    /* no WATCHDOG_USEC: no keep-alives, only STATUS= */
    sleep(1);
    rx_wait(&RX, "\x01", 200);
    cr_expect_eq(rx_find(&RX, 0, "WATCHDOG=1"), -1, "WATCHDOG=1 without WATCHDOG_USEC");
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0);
    F.d.pid = 0;
    rx_close(&RX);
}

Test(service, a_watchdog_for_another_pid_is_ignored)
{
    fx_host_conf(&F, "c1", NULL);
    char sock[600];
    fx_path(&F, "notify.sock", sock, sizeof sock);
    rx_bind(&RX, sock);
    char *bin = harness_build_path("host/daemon/evbusd");
    char *argv[] = {bin, "-c", F.conf, NULL};
    char ns[700];
    snprintf(ns, sizeof ns, "NOTIFY_SOCKET=%s", sock);
    char *envp[] = {ns, "WATCHDOG_USEC=200000", "WATCHDOG_PID=1", NULL};
    cr_assert_eq(harness_spawn(&F.d, argv, envp, F.log), 0);
    free(bin);
    cr_assert(rx_wait(&RX, "READY=1", 20000));
    sleep(1);
    rx_wait(&RX, "\x01", 200);
    cr_expect_eq(rx_find(&RX, 0, "WATCHDOG=1"), -1);
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0);
    F.d.pid = 0;
    rx_close(&RX);
}

/* A handler hung past its timeout while nothing else is acknowledged: the
 * keep-alives stop (systemd would restart evbusd), and resume once the
 * handler returns. */
Test(service, keepalives_stop_while_a_handler_hangs_past_its_timeout)
{
    fx_host_conf(&F, "c1", NULL);
    char buf[1024];
    snprintf(buf, sizeof buf,
             "plugins:\n"
             "  - name: slow\n"
             "    plugin: %s\n"
             "    subscriptions: [ { pattern: \"bulk.**\", timeout_ms: 100 } ]\n",
             fx_plugin("plugins/chaos/chaos.so"));
    fx_conf(&F, "10-slow.yaml", buf);
    char sock[600];
    fx_path(&F, "notify.sock", sock, sizeof sock);
    rx_bind(&RX, sock);
    start_evbusd_env(sock, "600000"); /* keep-alives stop 300 ms after the last sign of life */
    cr_assert(rx_wait(&RX, "READY=1", 20000));
    cr_assert(rx_wait(&RX, "WATCHDOG=1", 5000));

    fx_publish(&F, "hang", 1, "bulk.x", "t", "{\"fault\":\"sleep:3000\",\"i\":%d}");
    cr_assert(fx_wait_log(&F, "watchdog keep-alives withheld", 10000),
              "keep-alives went on while the handler hung");
    rx_wait(&RX, "\x01", 150); /* what was queued before the log line was written */
    size_t from = RX.n;
    /* the gap: no keep-alive for most of the rest of the hang */
    long long t0 = harness_now_ms();
    while (harness_now_ms() - t0 < 1000)
        rx_wait(&RX, "\x01", 100);
    cr_expect_eq(rx_find(&RX, from, "WATCHDOG=1"), -1, "WATCHDOG=1 during the hang");
    cr_assert(fx_wait_log(&F, "consumer loop live again", 10000));
    cr_expect(rx_wait(&RX, "WATCHDOG=1", 5000), "keep-alives did not resume");
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0);
    F.d.pid = 0;
    rx_close(&RX);
}

/* ---- the unit file -------------------------------------------------------- */

static bool have_systemd_analyze(void)
{
    return access("/usr/bin/systemd-analyze", X_OK) == 0 ||
           access("/bin/systemd-analyze", X_OK) == 0;
}

Test(service, the_unit_passes_systemd_analyze_verify)
{
    if (!have_systemd_analyze()) {
        /* CI installs it (.ci/run, Debian package `systemd`): never skip there */
        cr_assert(!getenv("EVBUS_CI"), "systemd-analyze is missing (apt-get install systemd)");
        cr_skip_test("systemd-analyze is not installed (Debian package systemd)");
    }
    char *unit_in = harness_build_path("host/daemon/evbusd.service");
    char *unit = harness_read_file(unit_in);
    cr_assert(unit, "%s was not generated", unit_in);
    cr_expect(strstr(unit, "\nType=notify\n"));
    cr_expect(strstr(unit, "\nWatchdogSec="));
    cr_expect(strstr(unit, "\nExecReload=/bin/kill -HUP $MAINPID\n"));
    cr_expect(strstr(unit, "\nUser=evbus\n"));
    cr_expect(strstr(unit, "\nCapabilityBoundingSet=\n"));
    /* the installed ExecStart path does not exist in a build tree: point
     * it at the built evbusd, leave every other line as installed */
    char *bin = harness_build_path("host/daemon/evbusd");
    char *exec = strstr(unit, "\nExecStart=");
    cr_assert(exec);
    char *args = strstr(exec + 1, " -c ");
    cr_assert(args);
    size_t cap = strlen(unit) + strlen(bin) + 64;
    char *copy = malloc(cap);
    snprintf(copy, cap, "%.*s\nExecStart=%s%s", (int)(exec - unit), unit, bin, args);
    cr_assert_eq(harness_write_file(F.dir, "evbusd.service", copy), 0);
    char path[700];
    fx_path(&F, "evbusd.service", path, sizeof path);
    char *argv[] = {"/usr/bin/systemd-analyze", "verify", "--man=no", path, NULL};
    if (access(argv[0], X_OK) != 0)
        argv[0] = "/bin/systemd-analyze";
    char *out = NULL, *err = NULL;
    int rc = harness_run(argv, NULL, NULL, &out, &err, 60000);
    cr_expect_eq(rc, 0, "systemd-analyze verify: %s%s", out ? out : "", err ? err : "");
    cr_expect(!err || !*err, "systemd-analyze verify warned: %s", err);
    free(out);
    free(err);
    free(copy);
    free(bin);
    free(unit);
    free(unit_in);
}

Test(service, the_sysusers_snippet_declares_the_evbus_user)
{
    char *p = harness_source_path("host/daemon/evbus.sysusers");
    char *s = harness_read_file(p);
    cr_assert(s);
    cr_expect(strstr(s, "\nu evbus "), "%s", s);
    free(s);
    free(p);
}

/* ---- logs ------------------------------------------------------------------ */

Test(service, json_logs_are_one_object_per_line_with_event_fields)
{
    char buf[1024];
    fx_host_conf(&F, "c1", "log: { format: json }\n");
    snprintf(buf, sizeof buf,
             "plugins:\n"
             "  - name: flaky\n"
             "    plugin: %s\n"
             "    subscriptions: [ { pattern: \"bulk.**\" } ]\n",
             fx_plugin("plugins/chaos/chaos.so"));
    fx_conf(&F, "10-flaky.yaml", buf);
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_log(&F, " started (pid ", 20000));
    fx_publish(&F, "j", 1, "bulk.x", "tenant-a", "{\"fault\":\"retry:1\",\"q\":\"\\\"\\u00e9\"}");
    fx_publish(&F, "k", 1, "bulk.x", "tenant-b", "{\"fault\":\"reject\"}");
    cr_assert(fx_wait_drained(&F, 20000));
    cr_assert(fx_wait_log(&F, "dead-lettered", 10000));
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0);
    F.d.pid = 0;

    char *log = harness_read_file(F.log);
    cr_assert(log);
    size_t lines = 0;
    bool retry_seen = false, dead_seen = false;
    for (char *save = NULL, *line = strtok_r(log, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        lines++;
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        cr_assert(json_is_object(o), "not a JSON object: %s (%s)", line, je.text);
        const char *t = json_string_value(json_object_get(o, "time"));
        cr_expect(t && strlen(t) == 24 && t[10] == 'T' && t[19] == '.' && t[23] == 'Z',
                  "time is not RFC 3339 with ms: %s", line);
        const char *lv = json_string_value(json_object_get(o, "level"));
        cr_expect(lv && strspn(lv, "debuginfowarnror") == strlen(lv), "level: %s", line);
        cr_expect(json_is_string(json_object_get(o, "component")), "%s", line);
        cr_expect(json_is_string(json_object_get(o, "message")), "%s", line);
        const char *msg = json_string_value(json_object_get(o, "message"));
        if (msg && strstr(msg, "event j-0") && strstr(msg, "retried in")) {
            retry_seen = true;
            cr_expect_str_eq(json_string_value(json_object_get(o, "event_id")), "j-0");
            cr_expect_str_eq(json_string_value(json_object_get(o, "type")), "bulk.x");
            cr_expect_str_eq(json_string_value(json_object_get(o, "tenant")), "tenant-a");
            cr_expect_str_eq(json_string_value(json_object_get(o, "handler")), "flaky/main");
        }
        if (msg && strstr(msg, "event k-0") && strstr(msg, "dead-lettered")) {
            dead_seen = true;
            cr_expect_str_eq(json_string_value(json_object_get(o, "event_id")), "k-0");
            cr_expect_str_eq(json_string_value(json_object_get(o, "tenant")), "tenant-b");
        }
        json_decref(o);
    }
    cr_expect_gt(lines, 3);
    cr_expect(retry_seen, "no json line for the retry of j-0");
    cr_expect(dead_seen, "no json line for the dead letter of k-0");
    free(log);
}

Test(service, text_logs_keep_the_plain_format_by_default)
{
    fx_host_conf(&F, "c1", NULL);
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_log(&F, " started (pid ", 20000));
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0);
    F.d.pid = 0;
    char *log = harness_read_file(F.log);
    cr_assert(log);
    /* 2026-11-26T22:06:42.123Z INFO  [evbusd] evbusd 0.1.0 started */
    const char *l = strstr(log, "Z INFO  [evbusd] evbusd ");
    cr_expect(l && l - log >= 23 && l[-4] == '.', "%s", log);
    cr_expect(log[0] != '{');
    free(log);
}

/* ---- secrets ---------------------------------------------------------------- */

#define REDIS_PW "s3cr3t-redis-pw-xyzzy"

static redisContext *authed(void)
{
    redisContext *c = harness_redis_connect(&F.redis);
    cr_assert(c);
    redisReply *r = redisCommand(c, "AUTH %s", REDIS_PW);
    cr_assert(r && r->type == REDIS_REPLY_STATUS, "AUTH failed");
    freeReplyObject(r);
    return c;
}

/* Everything evbusd writes while connected with a password, losing Redis
 * (the reconnect warnings name the URL) and stopping: never the password. */
static void run_with_password(const char *format)
{
    redisContext *c = harness_redis_connect(&F.redis);
    cr_assert(c);
    redisReply *r = redisCommand(c, "CONFIG SET requirepass %s", REDIS_PW);
    cr_assert(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    redisFree(c);
    /* the fixture's URL is redis://127.0.0.1:PORT/0: put the password in */
    char extra[512];
    snprintf(F.redis.url, sizeof F.redis.url, "redis://:%s@127.0.0.1:%d/0", REDIS_PW,
             F.redis.port);
    snprintf(extra, sizeof extra, "log_level: debug\nlog: { format: %s }\n", format);
    fx_host_conf(&F, "c1", extra);
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_log(&F, " started (pid ", 20000));
    c = authed();
    const char *ev = "{\"specversion\":\"1.0\",\"id\":\"pw-1\",\"source\":\"/t\",\"type\":"
                     "\"bulk.x\",\"time\":\"2026-11-26T10:00:00.000Z\",\"tenantid\":\"t\","
                     "\"data\":{}}";
    r = redisCommand(c, "XADD t:events * event %s", ev);
    cr_assert(r && r->type == REDIS_REPLY_STRING);
    freeReplyObject(r);
    redisFree(c);
    /* an outage: evbusd logs its reconnect attempts with the URL */
    harness_redis_stop(&F.redis);
    cr_assert(fx_wait_log(&F, "connect to redis://", 20000), "no reconnect warning");
    cr_assert_eq(harness_redis_start_again(&F.redis), 0);
    c = harness_redis_connect(&F.redis);
    r = redisCommand(c, "CONFIG SET requirepass %s", REDIS_PW);
    freeReplyObject(r);
    redisFree(c);
    cr_assert(fx_wait_log(&F, "reconnected to Redis", 20000));
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0);
    F.d.pid = 0;
    char *log = harness_read_file(F.log);
    cr_assert(log);
    cr_expect(!strstr(log, REDIS_PW), "the Redis password is in the %s log:\n%s", format, log);
    cr_expect(strstr(log, "redis://:***@127.0.0.1:"), "the masked URL is not logged (%s)", format);
    free(log);
}

Test(service, the_redis_password_never_reaches_the_text_log) { run_with_password("text"); }
Test(service, the_redis_password_never_reaches_the_json_log) { run_with_password("json"); }

static void expect_redacted(const char *in, const char *want)
{
    char out[512];
    redact_secrets(in, strlen(in), out, sizeof out);
    cr_expect_str_eq(out, want, "redact(%s)", in);
}

Test(service, redaction_masks_every_password_form)
{
    expect_redacted("connect to redis://:pw@h:6379/0 failed", "connect to redis://:***@h:6379/0 failed");
    expect_redacted("redis://user:p@ss@h/0", "redis://user:***@h/0");
    expect_redacted("rediss://onlypassword@h:1", "rediss://***@h:1");
    expect_redacted("postgres://u:pw@db/x?sslmode=require", "postgres://u:***@db/x?sslmode=require");
    expect_redacted("postgresql://u@db/x", "postgresql://u@db/x");
    expect_redacted("host=db user=u password=secret dbname=x", "host=db user=u password=*** dbname=x");
    expect_redacted("password='se cret' x", "password=*** x");
    expect_redacted("postgres://db/x?password=pw&user=u", "postgres://db/x?password=***&user=u");
    expect_redacted("Authorization: Bearer evb_abc123", "Authorization: Bearer ***");
    expect_redacted("no secrets: http://example.org/a@b", "no secrets: http://example.org/a@b");
    expect_redacted("redis://h:6379", "redis://h:6379");
}

/* ---- --version ------------------------------------------------------------- */

static void expect_version(const char *rel, const char *name)
{
    char *bin = harness_build_path(rel);
    char *argv[] = {bin, "--version", NULL};
    char *out = NULL;
    cr_expect_eq(harness_run(argv, NULL, NULL, &out, NULL, 10000), 0);
    char want[64];
    snprintf(want, sizeof want, "%s ", name);
    cr_expect(out && !strncmp(out, want, strlen(want)), "%s", out ? out : "");
    const char *abi = out ? strstr(out, "(plugin ABI ") : NULL;
    cr_expect(abi && isdigit((unsigned char)abi[12]) && strchr(abi, '.'), "%s", out ? out : "");
    free(out);
    free(bin);
}

Test(service, version_names_the_plugin_abi)
{
    expect_version("host/daemon/evbusd", "evbusd");
    expect_version("host/ctl/evbusctl", "evbusctl");
}
