/*
 * `evbusctl publish` and `evbusctl dlq` as a user runs them: the real
 * binary, a real redis-server, checking stdout, exit codes (0 done,
 * 1 Redis/not found, 2 usage) and what landed in Redis.
 */
#include <criterion/criterion.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"

#define STREAM "evbus:events"
#define DLQ "evbus:events:dlq"

static harness_redis_t R;
static redisContext *rc_;
static char *ctl;
static char *tmp;

static void setup(void)
{
    ctl = harness_build_path("host/ctl/evbusctl");
    cr_assert(access(ctl, X_OK) == 0, "evbusctl is not built at %s", ctl);
    cr_assert_eq(harness_redis_start(&R, false), 0, "redis-server did not start");
    rc_ = harness_redis_connect(&R);
    cr_assert_not_null(rc_);
    tmp = harness_tmpdir("cli");
}

static void teardown(void)
{
    redisFree(rc_);
    harness_redis_stop(&R);
    harness_rmrf(tmp);
    free(tmp);
    free(ctl);
}

TestSuite(cli, .init = setup, .fini = teardown, .timeout = 60);

struct run {
    int status;
    char *out, *err;
};

/* evbusctl --redis URL <args...>; args NULL-terminated. */
static struct run run_ctl_url(const char *url, const char *input, const char *const *args)
{
    char *argv[32];
    int n = 0;
    argv[n++] = ctl;
    argv[n++] = "--redis";
    argv[n++] = (char *)url;
    for (size_t i = 0; args[i]; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    struct run r = {0};
    r.status = harness_run(argv, NULL, input, &r.out, &r.err, 30000);
    if (!r.out)
        r.out = strdup("");
    if (!r.err)
        r.err = strdup("");
    return r;
}

#define RUN(input, ...) run_ctl_url(R.url, input, (const char *const[]){__VA_ARGS__, NULL})

static void run_free(struct run *r)
{
    free(r->out);
    free(r->err);
}

static bool matches(const char *re, const char *s)
{
    regex_t rx;
    cr_assert_eq(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB | REG_NEWLINE), 0);
    bool ok = regexec(&rx, s, 0, NULL, 0) == 0;
    regfree(&rx);
    return ok;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static json_t *stored_event(const char *id)
{
    redisReply *r = redisCommand(rc_, "XRANGE %s %s %s", STREAM, id, id);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1, "no entry %s", id);
    json_t *ev = json_loads(r->element[0]->element[1]->element[1]->str, 0, NULL);
    freeReplyObject(r);
    cr_assert_not_null(ev);
    return ev;
}

Test(cli, help_exits_0)
{
    struct run r = RUN(NULL, "publish", "--help");
    cr_assert_eq(r.status, 0);
    cr_assert(strstr(r.out, "usage: evbusctl publish") != NULL);
    run_free(&r);
    r = RUN(NULL, "dlq", "--help");
    cr_assert_eq(r.status, 0);
    cr_assert(strstr(r.out, "evbusctl dlq list") != NULL);
    run_free(&r);
}

Test(cli, publish_from_flags_prints_the_stream_id)
{
    struct run r = RUN(NULL, "publish", "--type", "order.created", "--tenant", "acme", "--data",
                       "{\"n\":7}", "--correlation", "c-1");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert(matches("^[0-9]+-[0-9]+\n$", r.out), "stdout: %s", r.out);
    r.out[strlen(r.out) - 1] = '\0';
    json_t *ev = stored_event(r.out);
    cr_assert_str_eq(json_string_value(json_object_get(ev, "type")), "order.created");
    cr_assert_str_eq(json_string_value(json_object_get(ev, "tenantid")), "acme");
    cr_assert_str_eq(json_string_value(json_object_get(ev, "correlationid")), "c-1");
    cr_assert_str_eq(json_string_value(json_object_get(ev, "source")), "evbusctl");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(ev, "data"), "n")), 7);
    json_decref(ev);
    run_free(&r);
}

Test(cli, publish_json_output_parses)
{
    struct run r = RUN(NULL, "publish", "--type", "a.b", "--tenant", "t", "--data", "[1]", "--id",
                       "ev-9", "--json");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    json_t *o = json_loads(r.out, 0, NULL);
    cr_assert_not_null(o, "not JSON: %s", r.out);
    cr_assert_str_eq(json_string_value(json_object_get(o, "id")), "ev-9");
    const char *sid = json_string_value(json_object_get(o, "stream_id"));
    cr_assert(sid && matches("^[0-9]+-[0-9]+$", sid));
    json_decref(o);
    run_free(&r);
}

static const char *three =
    "{\"type\":\"a.one\",\"tenantid\":\"t\"}\n"
    "\n"
    "{\"type\":\"a.two\",\"tenantid\":\"t\",\"data\":{}}\n"
    "{\"specversion\":\"1.0\",\"type\":\"a.three\",\"tenantid\":\"t\",\"id\":\"x\"}\n";

static void check_three(const char *out)
{
    cr_assert_eq(count_lines(out), 3, "stdout: %s", out);
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 3);
    char *copy = strdup(out), *save = NULL;
    const char *types[] = {"a.one", "a.two", "a.three"};
    int i = 0;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *ev = stored_event(line);
        cr_assert_str_eq(json_string_value(json_object_get(ev, "type")), types[i++]);
        json_decref(ev);
    }
    free(copy);
}

Test(cli, publish_from_an_ndjson_file)
{
    cr_assert_eq(harness_write_file(tmp, "ev.ndjson", three), 0);
    char path[512];
    snprintf(path, sizeof path, "%s/ev.ndjson", tmp);
    struct run r = RUN(NULL, "publish", "--file", path);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    check_three(r.out);
    run_free(&r);
}

Test(cli, publish_from_stdin)
{
    struct run r = RUN(three, "publish");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    check_three(r.out);
    run_free(&r);
}

Test(cli, publish_from_stdin_dash_with_json_lines)
{
    struct run r = RUN(three, "publish", "--file", "-", "--json");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert_eq(count_lines(r.out), 3);
    char *save = NULL;
    for (char *line = strtok_r(r.out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *o = json_loads(line, 0, NULL);
        cr_assert(o && json_is_string(json_object_get(o, "id")) &&
                      json_is_string(json_object_get(o, "stream_id")),
                  "line: %s", line);
        json_decref(o);
    }
    run_free(&r);
}

Test(cli, publish_many_lines_in_batches)
{
    enum { N = 2500 };
    size_t cap = N * 64;
    char *in = malloc(cap), *p = in;
    for (int i = 0; i < N; i++)
        p += sprintf(p, "{\"type\":\"bulk.x\",\"tenantid\":\"t\",\"data\":{\"i\":%d}}\n", i);
    struct run r = RUN(in, "publish");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert_eq(count_lines(r.out), N);
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), N);
    run_free(&r);

    free(in);
}

Test(cli, publish_invalid_line_names_it_exits_2_and_publishes_nothing)
{
    const char *in = "{\"type\":\"a.b\",\"tenantid\":\"t\"}\n"
                     "{\"type\":\"a.b\"}\n"
                     "not json\n";
    struct run r = RUN(in, "publish");
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "stdin:2: tenantid:") != NULL, "stderr: %s", r.err);
    cr_assert(strstr(r.err, "stdin:3: invalid JSON") != NULL, "stderr: %s", r.err);
    cr_assert_str_eq(r.out, "");
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 0);
    run_free(&r);
}

Test(cli, publish_live_from_stdin_and_a_file)
{
    struct run r = RUN(three, "publish", "--live");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    check_three(r.out);
    run_free(&r);

    redisReply *d = redisCommand(rc_, "DEL %s", STREAM);
    freeReplyObject(d);
    cr_assert_eq(harness_write_file(tmp, "live.ndjson", three), 0);
    char path[512];
    snprintf(path, sizeof path, "%s/live.ndjson", tmp);
    r = RUN(NULL, "publish", "--live", "--file", path);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    check_three(r.out);
    run_free(&r);
}

Test(cli, publish_live_stops_at_an_invalid_line_keeping_the_ones_before)
{
    const char *in = "{\"type\":\"a.one\",\"tenantid\":\"t\"}\n"
                     "{\"type\":\"a.two\",\"tenantid\":\"t\"}\n"
                     "\n"
                     "{\"type\":\"a.bad\"}\n"
                     "{\"type\":\"a.four\",\"tenantid\":\"t\"}\n";
    struct run r = RUN(in, "publish", "--live");
    cr_assert_eq(r.status, 2, "exit %d, stderr: %s", r.status, r.err);
    cr_assert(strstr(r.err, "stdin:4: tenantid:") != NULL, "stderr: %s", r.err);
    cr_assert(strstr(r.err, "the 2 events before it were published") != NULL, "stderr: %s",
              r.err);
    cr_assert_eq(count_lines(r.out), 2, "stdout: %s", r.out);
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 2);
    run_free(&r);
}

/* Reads one line from fd within ms; its length, or -1. */
static int read_line_within(int fd, char *buf, size_t cap, int ms)
{
    size_t n = 0;
    while (n + 1 < cap) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, ms) <= 0)
            return -1;
        if (read(fd, buf + n, 1) != 1)
            return -1;
        if (buf[n++] == '\n') {
            buf[n] = '\0';
            return (int)n;
        }
    }
    return -1;
}

/* Starts `evbusctl publish --live` with its stdin and stdout on pipes:
 * *feed writes to it, *ids reads what it prints; stderr goes to errfd
 * (-1: inherited). */
static pid_t spawn_live_err(int *feed, int *ids, int errfd)
{
    int in[2], out[2];
    cr_assert_eq(pipe(in), 0);
    cr_assert_eq(pipe(out), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        if (errfd >= 0)
            dup2(errfd, 2);
        close(in[1]);
        close(out[0]);
        execl(ctl, ctl, "--redis", R.url, "publish", "--live", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    *feed = in[1];
    *ids = out[0];
    return pid;
}

static pid_t spawn_live(int *feed, int *ids)
{
    return spawn_live_err(feed, ids, -1);
}

/* Writes one event line to the feed; the id --live prints for it (within
 * 10 s, while the feed stays open) must arrive. */
static void feed_expect_id(int feed, int ids, const char *type)
{
    char ev[128], line[128];
    int len = snprintf(ev, sizeof ev, "{\"type\":\"%s\",\"tenantid\":\"t\"}\n", type);
    cr_assert_eq(write(feed, ev, (size_t)len), (ssize_t)len);
    cr_assert_gt(read_line_within(ids, line, sizeof line, 10000), 0,
                 "no id printed for %s while the feed stayed open", type);
    cr_assert(matches("^[0-9]+-[0-9]+\n$", line), "stdout: %s", line);
}

static void expect_exit_0(pid_t pid)
{
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
}

Test(cli, publish_live_publishes_what_arrived_while_the_feed_waits)
{
    int feed, ids;
    pid_t pid = spawn_live(&feed, &ids);
    /* The feed sends one event and stays open: the event must be published
     * and its id printed without waiting for more input or for EOF. */
    feed_expect_id(feed, ids, "feed.one");
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 1);
    feed_expect_id(feed, ids, "feed.two");
    close(feed);
    expect_exit_0(pid);
    close(ids);
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 2);
}

Test(cli, publish_live_stops_cleanly_on_sigterm)
{
    int feed, ids;
    pid_t pid = spawn_live(&feed, &ids);
    feed_expect_id(feed, ids, "feed.one");
    /* The feed stays open; SIGTERM ends the publish, not the process. */
    cr_assert_eq(kill(pid, SIGTERM), 0);
    expect_exit_0(pid);
    close(feed);
    close(ids);
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 1);
}

/* A line the feed had not finished when the signal came is not published,
 * and stderr says so. */
Test(cli, publish_live_reports_an_unfinished_line_on_sigterm)
{
    char errpath[] = "/tmp/evbus-live-err.XXXXXX";
    int errfd = mkstemp(errpath);
    cr_assert_geq(errfd, 0);
    int feed, ids;
    pid_t pid = spawn_live_err(&feed, &ids, errfd);
    feed_expect_id(feed, ids, "feed.one");
    const char partial[] = "{\"type\":\"feed.two\",\"ten";
    cr_assert_eq(write(feed, partial, sizeof partial - 1), (ssize_t)(sizeof partial - 1));
    usleep(300 * 1000); /* read by the publisher, which waits for the rest */
    cr_assert_eq(kill(pid, SIGTERM), 0);
    expect_exit_0(pid);
    close(feed);
    close(ids);
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 1);
    char err[1024] = "";
    ssize_t n = pread(errfd, err, sizeof err - 1, 0);
    cr_assert_gt(n, 0);
    err[n] = '\0';
    const char *want = "the unfinished last line (23 bytes, no newline yet) was not published";
    cr_assert(strstr(err, want) != NULL, "stderr: %s", err);
    close(errfd);
    unlink(errpath);
}

Test(cli, publish_bad_flags_exit_2)
{
    const char *const cases[][9] = {
        {"publish", "--type", "a.b", "--tenant", "t", NULL},                    /* no --data */
        {"publish", "--type", "a.b", "--tenant", "t", "--data", "{", NULL},     /* bad JSON */
        {"publish", "--type", "A.B", "--tenant", "t", "--data", "1", NULL},     /* bad type */
        {"publish", "--bogus", NULL},
        {"publish", "--maxlen", "50", NULL}, /* gone: publishers never trim */
        {"publish", "--type", "a.b", "--file", "x", NULL},
        {"publish", "--file", "/nonexistent/evbus.ndjson", NULL},
        {"publish", "--live", "--parallel", "2", NULL},
        {"publish", "--live", "--type", "a.b", "--tenant", "t", "--data", "1", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct run r = run_ctl_url(R.url, NULL, cases[i]);
        cr_assert_eq(r.status, 2, "case %zu exited %d: %s", i, r.status, r.err);
        cr_assert_neq(r.err[0], '\0', "case %zu printed no reason", i);
        run_free(&r);
    }
    struct run r = RUN(NULL, "publish", "--type", "A.B", "--tenant", "t", "--data", "1");
    cr_assert(strstr(r.err, "type") != NULL, "stderr: %s", r.err);
    run_free(&r);
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 0);
}

Test(cli, publish_with_redis_down_exits_1)
{
    char url[128];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", harness_free_port());
    struct run r = run_ctl_url(
        url, NULL,
        (const char *const[]){"publish", "--type", "a.b", "--tenant", "t", "--data", "{}", NULL});
    cr_assert_eq(r.status, 1, "stderr: %s", r.err);
    cr_assert(strstr(r.err, "redis") != NULL, "stderr: %s", r.err);
    run_free(&r);
    r = run_ctl_url(url, "{\"type\":\"a.b\",\"tenantid\":\"t\"}\n",
                    (const char *const[]){"publish", NULL});
    cr_assert_eq(r.status, 1, "stderr: %s", r.err);
    run_free(&r);
}

/* NDJSON of n events "par.x" whose tenant is t<i % tenants>, with
 * data.seq = i; with keys > 0 each also carries partitionkey k<i % keys>. */
static char *par_input(int n, int tenants, int keys)
{
    char *in = malloc((size_t)n * 96), *p = in;
    for (int i = 0; i < n; i++) {
        p += sprintf(p, "{\"type\":\"par.x\",\"tenantid\":\"t%d\",", i % tenants);
        if (keys)
            p += sprintf(p, "\"partitionkey\":\"k%d\",", i % keys);
        p += sprintf(p, "\"data\":{\"seq\":%d}}\n", i);
    }
    return in;
}

/* Walks the whole stream in order: per group (tenant, or partitionkey when
 * by_key), seq must only grow; counts[g] gets the events of group g.
 * Returns the number of entries. */
static size_t par_check_order(bool by_key, int groups, size_t *counts)
{
    redisReply *r = redisCommand(rc_, "XRANGE %s - +", STREAM);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    long long *last = malloc((size_t)groups * sizeof *last);
    for (int g = 0; g < groups; g++) {
        last[g] = -1;
        counts[g] = 0;
    }
    for (size_t i = 0; i < r->elements; i++) {
        json_t *ev = json_loads(r->element[i]->element[1]->element[1]->str, 0, NULL);
        cr_assert_not_null(ev);
        const char *g_s = json_string_value(json_object_get(ev, by_key ? "partitionkey"
                                                                        : "tenantid"));
        cr_assert_not_null(g_s);
        int g = atoi(g_s + 1);
        cr_assert(g >= 0 && g < groups, "group %s", g_s);
        long long seq = json_integer_value(json_object_get(json_object_get(ev, "data"), "seq"));
        cr_assert_gt(seq, last[g], "%s: seq %lld after %lld (stream entry %zu)", g_s, seq,
                     last[g], i);
        last[g] = seq;
        counts[g]++;
        json_decref(ev);
    }
    size_t n = r->elements;
    freeReplyObject(r);
    free(last);
    return n;
}

Test(cli, publish_parallel_keeps_each_tenants_order)
{
    enum { N = 5000, TENANTS = 10 };
    char *in = par_input(N, TENANTS, 0);
    cr_assert_eq(harness_write_file(tmp, "par.ndjson", in), 0);
    char path[512];
    snprintf(path, sizeof path, "%s/par.ndjson", tmp);
    struct run r = RUN(NULL, "publish", "--file", path, "--parallel", "4");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert_eq(count_lines(r.out), N);
    size_t counts[TENANTS];
    cr_assert_eq(par_check_order(false, TENANTS, counts), N);
    for (int g = 0; g < TENANTS; g++)
        cr_assert_eq(counts[g], N / TENANTS, "tenant t%d: %zu events", g, counts[g]);
    /* Every printed id is an entry of the stream, each once. */
    size_t found = 0;
    for (char *line = strtok(r.out, "\n"); line; line = strtok(NULL, "\n")) {
        redisReply *x = redisCommand(rc_, "XRANGE %s %s %s", STREAM, line, line);
        found += x && x->type == REDIS_REPLY_ARRAY && x->elements == 1;
        freeReplyObject(x);
    }
    cr_assert_eq(found, N);
    run_free(&r);
    free(in);
}

Test(cli, publish_parallel_partitions_by_partitionkey_before_tenant)
{
    /* Tenants cycle over 50 values, keys over 3: order holds per key. */
    enum { N = 3000, KEYS = 3 };
    char *in = par_input(N, 50, KEYS);
    struct run r = RUN(in, "publish", "--parallel", "3", "--json");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert_eq(count_lines(r.out), N);
    cr_assert(matches("^\\{\"id\":\"[0-9a-f-]{36}\",\"stream_id\":\"[0-9]+-[0-9]+\"\\}$", r.out));
    size_t counts[KEYS];
    cr_assert_eq(par_check_order(true, KEYS, counts), N);
    for (int g = 0; g < KEYS; g++)
        cr_assert_eq(counts[g], N / KEYS);
    run_free(&r);
    free(in);
}

Test(cli, publish_parallel_invalid_line_publishes_nothing)
{
    enum { N = 3000 };
    char *in = par_input(N, 10, 0);
    /* Line 2001 loses its tenantid: every partition is affected. */
    char *line = in;
    for (int i = 0; i < 2000; i++)
        line = strchr(line, '\n') + 1;
    memcpy(strstr(line, "tenantid"), "tenantXX", 8);
    struct run r = RUN(in, "publish", "--parallel", "4");
    cr_assert_eq(r.status, 2, "stderr: %s", r.err);
    cr_assert(strstr(r.err, "stdin:2001: tenantid: missing") != NULL, "stderr: %s", r.err);
    cr_assert(strstr(r.err, "nothing was published") != NULL, "stderr: %s", r.err);
    cr_assert_str_eq(r.out, "");
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 0);
    run_free(&r);

    cr_assert_eq(harness_write_file(tmp, "bad.ndjson", in), 0);
    char path[512];
    snprintf(path, sizeof path, "%s/bad.ndjson", tmp);
    r = RUN(NULL, "publish", "--parallel", "2", "--file", path);
    cr_assert_eq(r.status, 2, "stderr: %s", r.err);
    cr_assert(strstr(r.err, "bad.ndjson:2001:") != NULL, "stderr: %s", r.err);
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 0);
    run_free(&r);
    free(in);
}

Test(cli, publish_parallel_counts_match_with_blank_lines_and_more_threads_than_keys)
{
    /* 2 tenants over 8 threads: some threads get nothing to do; the last
     * line has no newline. */
    const char *in = "{\"type\":\"a.b\",\"tenantid\":\"x\",\"data\":{\"seq\":0}}\n"
                     "\n"
                     "   \n"
                     "{\"type\":\"a.b\",\"tenantid\":\"y\",\"data\":{\"seq\":1}}\n"
                     "{\"type\":\"a.b\",\"tenantid\":\"x\",\"data\":{\"seq\":2}}";
    struct run r = RUN(in, "publish", "--parallel=8");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert_eq(count_lines(r.out), 3);
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 3);
    run_free(&r);
}

Test(cli, publish_parallel_bad_values_exit_2)
{
    const char *const cases[][9] = {
        {"publish", "--parallel", "0", NULL},
        {"publish", "--parallel", "65", NULL},
        {"publish", "--parallel", "two", NULL},
        {"publish", "--parallel", "-1", NULL},
        {"publish", "--parallel", NULL},
        {"publish", "--type", "a.b", "--tenant", "t", "--data", "1", "--parallel=2", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct run r = run_ctl_url(R.url, "{\"type\":\"a.b\",\"tenantid\":\"t\"}\n", cases[i]);
        cr_assert_eq(r.status, 2, "case %zu exited %d: %s", i, r.status, r.err);
        cr_assert(strstr(r.err, "--parallel") != NULL, "case %zu: %s", i, r.err);
        run_free(&r);
    }
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 0);
}

Test(cli, publish_parallel_with_redis_down_exits_1)
{
    char url[128];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", harness_free_port());
    char *in = par_input(100, 10, 0);
    struct run r = run_ctl_url(url, in, (const char *const[]){"publish", "--parallel", "4", NULL});
    cr_assert_eq(r.status, 1, "status %d, stderr: %s", r.status, r.err);
    cr_assert(strstr(r.err, "redis") != NULL, "stderr: %s", r.err);
    cr_assert_str_eq(r.out, "");
    run_free(&r);
    free(in);
}

static void add_dead(const char *type, const char *tenant, char out[32])
{
    redisReply *r = redisCommand(
        rc_,
        "XADD %s * event {\"type\":\"%s\",\"tenantid\":\"%s\"} stream %s id 1-1 event_id e type "
        "%s tenant %s reason reject handlers [\"i/s\"] attempts 2 error %s first_failure "
        "2026-11-26T22:00:00.000Z last_failure 2026-11-26T22:00:01.000Z",
        DLQ, type, tenant, STREAM, type, tenant, "handler said no");
    cr_assert(r && r->type == REDIS_REPLY_STRING);
    snprintf(out, 32, "%s", r->str);
    freeReplyObject(r);
}

Test(cli, dlq_list_limit_over_10000_exits_2)
{
    struct run r = RUN(NULL, "dlq", "list", "--limit", "10001");
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "limit") != NULL, "stderr: %s", r.err);
    run_free(&r);
}

Test(cli, dlq_list_table_and_json)
{
    char id[32];
    for (int i = 0; i < 5; i++)
        add_dead("order.failed", i % 2 ? "acme" : "globex", id);
    struct run r = RUN(NULL, "dlq", "list");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert(strstr(r.out, "DLQ ID") && strstr(r.out, "handler said no"), "%s", r.out);
    cr_assert(strstr(r.out, id) != NULL);
    run_free(&r);

    r = RUN(NULL, "dlq", "list", "--tenant", "acme", "--limit", "1", "--json");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    json_t *o = json_loads(r.out, 0, NULL);
    cr_assert_not_null(o, "not JSON: %s", r.out);
    cr_assert_eq(json_integer_value(json_object_get(o, "count")), 2);
    json_t *items = json_object_get(o, "items");
    cr_assert_eq(json_array_size(items), 1);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(items, 0), "tenant")),
                     "acme");
    json_decref(o);
    run_free(&r);
}

Test(cli, dlq_show_retry_delete)
{
    char a[32], b[32];
    add_dead("order.failed", "acme", a);
    add_dead("order.failed", "acme", b);

    struct run r = RUN(NULL, "dlq", "show", a, "--tenant", "globex");
    cr_assert_eq(r.status, 1, "another tenant's entry must be not found");
    cr_assert(strstr(r.err, "not found") != NULL);
    run_free(&r);

    r = RUN(NULL, "dlq", "show", a, "--json");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    json_t *o = json_loads(r.out, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(o, "dlq_id")), a);
    json_decref(o);
    run_free(&r);

    r = RUN(NULL, "dlq", "retry", a, "--tenant", "acme");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert(matches("^[0-9]+-[0-9]+\n$", r.out), "stdout: %s", r.out);
    r.out[strlen(r.out) - 1] = '\0';
    redisReply *x = redisCommand(rc_, "XRANGE %s %s %s", STREAM, r.out, r.out);
    cr_assert_eq(x->elements, 1);
    cr_assert_str_eq(x->element[0]->element[1]->element[2]->str, "retried_from");
    cr_assert_str_eq(x->element[0]->element[1]->element[3]->str, a);
    freeReplyObject(x);
    run_free(&r);

    r = RUN(NULL, "dlq", "retry", a);
    cr_assert_eq(r.status, 1, "retried entry is gone");
    run_free(&r);

    r = RUN(NULL, "dlq", "delete", b, "--json");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    o = json_loads(r.out, 0, NULL);
    cr_assert(json_is_true(json_object_get(o, "deleted")));
    json_decref(o);
    run_free(&r);
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", DLQ), 0);

    r = RUN(NULL, "dlq", "show", "not-an-id");
    cr_assert_eq(r.status, 2);
    run_free(&r);
}

Test(cli, dlq_purge_needs_yes_without_a_terminal)
{
    char id[32];
    add_dead("order.failed", "acme", id);
    add_dead("user.created", "acme", id);
    struct run r = RUN(NULL, "dlq", "purge", "--tenant", "acme");
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "--yes") != NULL, "stderr: %s", r.err);
    run_free(&r);
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", DLQ), 2);

    char archive[512];
    snprintf(archive, sizeof archive, "%s/archive.jsonl", tmp);
    r = RUN(NULL, "dlq", "purge", "--type", "order.**", "--yes", "--json", "--archive", archive);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    json_t *o = json_loads(r.out, 0, NULL);
    cr_assert_eq(json_integer_value(json_object_get(o, "purged")), 1);
    json_decref(o);
    run_free(&r);
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", DLQ), 1);
}

/* A dead letter with every field chosen; id "*" or an explicit "ms-seq". */
static void add_dead_full(const char *id, const char *type, const char *tenant,
                          const char *reason, const char *handlers, const char *stream)
{
    redisReply *r = redisCommand(rc_,
                                 "XADD %s %s event {\"type\":\"%s\",\"tenantid\":\"%s\"} "
                                 "stream %s id 1-1 event_id e type %s tenant %s reason %s "
                                 "handlers %s attempts 1 error boom",
                                 DLQ, id, type, tenant, stream, type, tenant, reason, handlers);
    cr_assert(r && r->type == REDIS_REPLY_STRING, "XADD: %s", r ? r->str : "no reply");
    freeReplyObject(r);
}

/* How many entries of the main stream came from a retry, and whether all
 * of them are tenant's. */
static long long retried_of(const char *tenant, bool *only_tenant)
{
    redisReply *r = redisCommand(rc_, "XRANGE %s - +", STREAM);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    long long n = 0;
    *only_tenant = true;
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *kv = r->element[i]->element[1];
        bool retried = kv->elements >= 4 && strcmp(kv->element[2]->str, "retried_from") == 0;
        n += retried;
        char want[64];
        snprintf(want, sizeof want, "\"tenantid\":\"%s\"", tenant);
        *only_tenant = *only_tenant && retried && strstr(kv->element[1]->str, want);
    }
    freeReplyObject(r);
    return n;
}

static json_t *json_out(const struct run *r)
{
    json_t *o = json_loads(r->out, 0, NULL);
    cr_assert_not_null(o, "not JSON: %s (stderr: %s)", r->out, r->err);
    return o;
}

static long long jint(const json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

/* The incident: 100 dead letters of one tenant among others, and a bulk
 * retry of that tenant must retry all 100 (not one page) and nothing else. */
Test(cli, dlq_bulk_retry_by_tenant_retries_all_of_it_and_nothing_else)
{
    for (int i = 0; i < 160; i++)
        add_dead_full("*", "order.failed", i % 8 < 5 ? "acme" : "globex", "reject",
                      "[\"i/s\"]", STREAM);
    struct run r = RUN(NULL, "dlq", "retry", "--tenant", "acme", "--rate", "0");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_expect_str_eq(r.out, "retried 100 of 100 matching (0 failed)\n");
    run_free(&r);
    bool only_acme;
    cr_expect_eq(retried_of("acme", &only_acme), 100);
    cr_expect(only_acme, "a retried event is not acme's");
    cr_expect_eq(harness_redis_int(rc_, "XLEN %s", DLQ), 60);
    r = RUN(NULL, "dlq", "list", "--tenant", "acme", "--json");
    json_t *o = json_out(&r);
    cr_expect_eq(jint(o, "count"), 0);
    json_decref(o);
    run_free(&r);
}

Test(cli, dlq_bulk_dry_run_counts_and_changes_nothing)
{
    for (int i = 0; i < 30; i++)
        add_dead_full("*", "order.failed", i < 12 ? "acme" : "globex", "reject", "[]", STREAM);
    const char *subs[] = {"retry", "delete", "purge"};
    for (size_t i = 0; i < 3; i++) {
        struct run r = RUN(NULL, "dlq", subs[i], "--tenant", "acme", "--dry-run", "--json");
        cr_assert_eq(r.status, 0, "%s: %s", subs[i], r.err);
        json_t *o = json_out(&r);
        cr_expect_eq(jint(o, "matching"), 12, "%s", subs[i]);
        cr_expect(json_is_true(json_object_get(o, "dry_run")));
        json_decref(o);
        run_free(&r);
    }
    struct run r = RUN(NULL, "dlq", "delete", "--all", "--dry-run");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "would delete 30 dead letters") != NULL, "%s", r.out);
    run_free(&r);
    cr_expect_eq(harness_redis_int(rc_, "XLEN %s", DLQ), 30);
    cr_expect_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 0);
}

/* Every filter at once narrows to exactly the entries matching them all. */
Test(cli, dlq_bulk_filters_combine)
{
    /* dead-lettered 2026-11-26T10:00:00Z + i minutes */
    const long long t0 = 1795687200000LL;
    int want = 0;
    for (int i = 0; i < 40; i++) {
        char id[32];
        snprintf(id, sizeof id, "%lld-0", t0 + i * 60000LL);
        const char *tenant = i % 2 ? "acme" : "globex";
        const char *type = i % 3 ? "order.created" : "user.created";
        const char *reason = i % 4 < 2 ? "reject" : "retries_exhausted";
        const char *handlers = i % 5 ? "[\"audit/main\"]" : "[\"mail/send\"]";
        add_dead_full(id, type, tenant, reason, handlers, STREAM);
        want += strcmp(tenant, "acme") == 0 && strcmp(type, "order.created") == 0 &&
                strcmp(reason, "reject") == 0 && i % 5 && i >= 5 && i < 35;
    }
    cr_assert_gt(want, 0);
    struct run r = RUN(NULL, "dlq", "delete", "--tenant", "acme", "--type", "order.**",
                       "--reason", "reject", "--handler", "audit", "--since",
                       "2026-11-26T10:05:00Z", "--until", "2026-11-26T10:35:00Z", "--yes",
                       "--json");
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *o = json_out(&r);
    cr_expect_eq(jint(o, "matching"), want);
    cr_expect_eq(jint(o, "deleted"), want);
    cr_expect(json_is_null(json_object_get(o, "marked_purged")), "no PostgreSQL here");
    json_decref(o);
    run_free(&r);
    cr_expect_eq(harness_redis_int(rc_, "XLEN %s", DLQ), 40 - want);
}

Test(cli, dlq_summary_counts_by_tenant_type_reason_and_handler)
{
    add_dead_full("*", "order.created", "acme", "reject", "[\"audit/main\",\"mail/send\"]",
                  STREAM);
    add_dead_full("*", "order.created", "acme", "poison", "[\"audit/main\"]", STREAM);
    add_dead_full("*", "user.created", "globex", "reject", "[\"mail/send\"]", STREAM);
    struct run r = RUN(NULL, "dlq", "summary", "--json");
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *o = json_out(&r);
    cr_expect_eq(jint(o, "total"), 3);
    cr_expect_eq(jint(json_object_get(o, "by_tenant"), "acme"), 2);
    cr_expect_eq(jint(json_object_get(o, "by_tenant"), "globex"), 1);
    cr_expect_eq(jint(json_object_get(o, "by_type"), "order.created"), 2);
    cr_expect_eq(jint(json_object_get(o, "by_reason"), "reject"), 2);
    cr_expect_eq(jint(json_object_get(o, "by_reason"), "poison"), 1);
    cr_expect_eq(jint(json_object_get(o, "by_handler"), "audit/main"), 2);
    cr_expect_eq(jint(json_object_get(o, "by_handler"), "mail/send"), 2);
    cr_expect(json_is_string(json_object_get(o, "oldest")));
    json_decref(o);
    run_free(&r);

    r = RUN(NULL, "dlq", "summary", "--reason", "reject", "--json");
    o = json_out(&r);
    cr_expect_eq(jint(o, "total"), 2);
    cr_expect_eq(json_object_size(json_object_get(o, "by_tenant")), 2);
    json_decref(o);
    run_free(&r);

    r = RUN(NULL, "dlq", "summary", "--tenant", "acme");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(matches("^2 dead letters matching tenant acme", r.out), "%s", r.out);
    cr_expect(matches("^audit/main +2$", r.out), "%s", r.out);
    cr_expect(matches("^poison +1$", r.out), "%s", r.out);
    run_free(&r);
}

/* --limit up to 10,000 and a cursor: pages of 100 over 250 dead letters
 * cover each once, newest first, and the last page has no next_cursor. */
Test(cli, dlq_list_pages_with_a_cursor)
{
    for (int i = 0; i < 250; i++)
        add_dead_full("*", "order.failed", "acme", "reject", "[]", STREAM);
    char cursor[64] = "";
    char prev[64] = "";
    int seen = 0, pages = 0;
    for (;;) {
        struct run r = cursor[0] ? RUN(NULL, "dlq", "list", "--limit", "100", "--cursor",
                                       cursor, "--json")
                                 : RUN(NULL, "dlq", "list", "--limit", "100", "--json");
        cr_assert_eq(r.status, 0, "%s", r.err);
        json_t *o = json_out(&r);
        json_t *items = json_object_get(o, "items"), *it;
        size_t i;
        json_array_foreach(items, i, it)
        {
            const char *id = json_string_value(json_object_get(it, "dlq_id"));
            cr_assert(!prev[0] || strcmp(id, prev) < 0 || strlen(id) < strlen(prev),
                      "%s after %s", id, prev);
            snprintf(prev, sizeof prev, "%s", id);
            seen++;
        }
        pages++;
        cr_expect_eq(jint(o, "count"), 250);
        json_t *next = json_object_get(o, "next_cursor");
        bool last = json_is_null(next);
        if (!last)
            snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
        json_decref(o);
        run_free(&r);
        if (last)
            break;
        cr_assert_lt(pages, 5);
    }
    cr_expect_eq(seen, 250);
    cr_expect_eq(pages, 3);

    struct run r = RUN(NULL, "dlq", "list", "--limit", "10000", "--json");
    json_t *o = json_out(&r);
    cr_expect_eq(json_array_size(json_object_get(o, "items")), 250);
    cr_expect(json_is_null(json_object_get(o, "next_cursor")));
    json_decref(o);
    run_free(&r);

    r = RUN(NULL, "dlq", "list", "--limit", "100");
    cr_expect(matches("^showing 1-100 of 250; next page: --cursor [0-9]+-[0-9]+$", r.out), "%s",
              r.out);
    run_free(&r);
}

Test(cli, dlq_purge_archives_what_it_removes)
{
    for (int i = 0; i < 7; i++)
        add_dead_full("*", "order.failed", i < 4 ? "acme" : "globex", "reject", "[\"i/s\"]",
                      STREAM);
    char archive[512];
    snprintf(archive, sizeof archive, "%s/archive.jsonl", tmp);
    struct run r = RUN(NULL, "dlq", "purge", "--tenant", "acme", "--yes", "--archive", archive);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(matches("^purged 4 of 4 matching \\(0 failed\\); archived to ", r.out), "%s",
              r.out);
    run_free(&r);
    cr_expect_eq(harness_count_lines(archive), 4);
    char *text = harness_read_file(archive);
    cr_expect(strstr(text, "\"tenant\":\"acme\"") && !strstr(text, "globex"), "%s", text);
    cr_expect(strncmp(text, "{\"dlq_id\":\"", 11) == 0, "%s", text);
    free(text);
    cr_expect_eq(harness_redis_int(rc_, "XLEN %s", DLQ), 3);

    /* an archive that cannot be written: nothing is removed, exit 1 */
    r = RUN(NULL, "dlq", "purge", "--all", "--yes", "--archive", "/nonexistent-dir/a.jsonl");
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "/nonexistent-dir/a.jsonl") != NULL, "%s", r.err);
    run_free(&r);
    cr_expect_eq(harness_redis_int(rc_, "XLEN %s", DLQ), 3);
}

Test(cli, dlq_bad_filters_and_options_exit_2_with_a_message)
{
    char id[32];
    add_dead("order.failed", "acme", id);
    struct {
        const char *args[6];
        const char *says;
    } cases[] = {
        {{"list", "--since", "yesterday"}, "--since"},
        {{"list", "--until", "2026-13-01T00:00:00Z"}, "--until"},
        {{"summary", "--reason", "rejected"}, "retries_exhausted"},
        {{"retry", "--type", "order.*"}, "--type"},
        {{"retry", "--handler", "a/b/c"}, "--handler"},
        {{"delete", "--since", "2026-11-27T00:00:00Z", "--until", "2026-11-26T00:00:00Z"},
         "--since"},
        {{"retry", "--tenant", "acme", "--rate", "fast"}, "--rate"},
        {{"retry", "--tenant", "acme", "--limit", "0"}, "--limit"},
        {{"list", "--offset", "5", "--cursor", "1-1"}, "--cursor"},
        {{"list", "--cursor", "not-an-id"}, "cursor"},
        {{"retry", id, "--type", "order.failed"}, "bulk form"},
        {{"show", id, "--dry-run"}, "--dry-run"},
        {{"retry", "--tenant", "acme", "--all"}, "--all"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *const *a = cases[i].args;
        struct run r = run_ctl_url(R.url, NULL,
                                   (const char *const[]){"dlq", a[0], a[1], a[2], a[3], a[4],
                                                         a[5], NULL});
        cr_expect_eq(r.status, 2, "case %zu exited %d: %s", i, r.status, r.err);
        cr_expect(strstr(r.err, cases[i].says) != NULL, "case %zu: %s", i, r.err);
        run_free(&r);
    }
    cr_expect_eq(harness_redis_int(rc_, "XLEN %s", DLQ), 1);
    cr_expect_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 0);
}

Test(cli, dlq_bulk_without_filters_needs_all)
{
    char id[32];
    for (int i = 0; i < 3; i++)
        add_dead("order.failed", i ? "acme" : "globex", id);
    const char *subs[] = {"retry", "delete", "purge"};
    for (size_t i = 0; i < 3; i++) {
        /* --yes confirms a removal; it does not stand for --all */
        struct run r = i ? RUN(NULL, "dlq", subs[i], "--yes") : RUN(NULL, "dlq", subs[i]);
        cr_expect_eq(r.status, 2, "%s", subs[i]);
        cr_expect(strstr(r.err, "--all") != NULL, "%s: %s", subs[i], r.err);
        run_free(&r);
    }
    cr_expect_eq(harness_redis_int(rc_, "XLEN %s", DLQ), 3);
    struct run r = RUN(NULL, "dlq", "retry", "--all", "--json");
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *o = json_out(&r);
    cr_expect_eq(jint(o, "retried"), 3);
    json_decref(o);
    run_free(&r);
    cr_expect_eq(harness_redis_int(rc_, "XLEN %s", DLQ), 0);
    cr_expect_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 3);
}

/* One dead letter that cannot be retried (its stream is not a stream):
 * the others are retried, it stays, and the exit status says so. */
Test(cli, dlq_bulk_retry_with_a_failure_exits_1_and_keeps_it)
{
    freeReplyObject(redisCommand(rc_, "SET broken:key x"));
    for (int i = 0; i < 5; i++)
        add_dead_full("*", "order.failed", "acme", "reject", "[]",
                      i == 2 ? "broken:key" : STREAM);
    struct run r = RUN(NULL, "dlq", "retry", "--tenant", "acme");
    cr_expect_eq(r.status, 1, "stderr: %s", r.err);
    cr_expect_str_eq(r.out, "retried 4 of 5 matching (1 failed)\n");
    cr_expect(strstr(r.err, "not a stream") != NULL, "%s", r.err);
    run_free(&r);
    cr_expect_eq(harness_redis_int(rc_, "XLEN %s", DLQ), 1);
    cr_expect_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 4);
}

Test(cli, dlq_bulk_respects_the_rate)
{
    for (int i = 0; i < 30; i++)
        add_dead_full("*", "order.failed", "acme", "reject", "[]", STREAM);
    long long t = harness_now_ms();
    struct run r = RUN(NULL, "dlq", "retry", "--tenant", "acme", "--rate", "50/s");
    long long took = harness_now_ms() - t;
    cr_assert_eq(r.status, 0, "%s", r.err);
    run_free(&r);
    /* the 30th starts 29/50 s after the first */
    cr_expect_geq(took, 580, "30 retries at 50/s took %lld ms", took);
    cr_expect_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 30);
}

Test(cli, dlq_bulk_limit_takes_the_oldest)
{
    for (int i = 0; i < 10; i++) {
        char id[32];
        snprintf(id, sizeof id, "%d-0", 1000 + i);
        add_dead_full(id, "order.failed", "acme", "reject", "[]", STREAM);
    }
    struct run r = RUN(NULL, "dlq", "delete", "--tenant", "acme", "--limit", "3", "--yes");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect_str_eq(r.out, "deleted 3 of 10 matching (0 failed)\n");
    run_free(&r);
    redisReply *x = redisCommand(rc_, "XRANGE %s - + COUNT 1", DLQ);
    cr_expect_str_eq(x->element[0]->element[0]->str, "1003-0");
    freeReplyObject(x);
}

/* Writes n NDJSON events of about 130 bytes (data.i = line number - 1)
 * to path; lines listed in bad (1-based, 0-terminated) get a bad type. */
static void write_events(const char *path, int n, const int *bad)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < n; i++) {
        bool b = false;
        for (const int *k = bad; *k; k++)
            b = b || *k == i + 1;
        fprintf(f, "{\"type\":\"%s\",\"tenantid\":\"t%d\",\"data\":{\"i\":%d,\"pad\":"
                   "\"0123456789012345678901234567890123456789012345678901234567\"}}\n",
                b ? "Bad Type" : "bulk.x", i % 7, i);
    }
    cr_assert_eq(fclose(f), 0);
}

/* A file past the size that is checked by several threads: line numbers
 * in the messages are the file's, whichever thread saw the line, and
 * a valid file lands whole and in order. */
Test(cli, publish_big_file_checked_in_parallel_reports_file_line_numbers_and_keeps_order)
{
    enum { N = 40000 }; /* about 5 MiB */
    char path[512];
    snprintf(path, sizeof path, "%s/big.ndjson", tmp);
    const int bad[] = {3, 20001, 39999, 0};
    write_events(path, N, bad);
    struct run r = RUN(NULL, "publish", "--file", path);
    cr_assert_eq(r.status, 2, "stderr: %s", r.err);
    char want[600];
    for (const int *k = bad; *k; k++) {
        snprintf(want, sizeof want, "%s:%d: type:", path, *k);
        cr_assert(strstr(r.err, want) != NULL, "no '%s' in: %s", want, r.err);
    }
    cr_assert(strstr(r.err, "3 invalid lines") != NULL, "stderr: %s", r.err);
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), 0);
    run_free(&r);

    const int none[] = {0};
    write_events(path, N, none);
    r = RUN(NULL, "publish", "--file", path);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert_eq(count_lines(r.out), N);
    cr_assert_eq(harness_redis_int(rc_, "XLEN %s", STREAM), N);
    /* the stream holds the file in input order ... */
    redisReply *x = redisCommand(rc_, "XRANGE %s - +", STREAM);
    cr_assert(x && x->type == REDIS_REPLY_ARRAY && x->elements == N);
    for (size_t i = 0; i < x->elements; i++) {
        json_t *ev = json_loads(x->element[i]->element[1]->element[1]->str, 0, NULL);
        cr_assert_not_null(ev);
        cr_assert_eq(json_integer_value(json_object_get(json_object_get(ev, "data"), "i")),
                     (json_int_t)i, "entry %zu is out of order", i);
        json_decref(ev);
    }
    /* ... and the printed ids are its entries, in the same order */
    size_t k = 0;
    for (const char *p = r.out; *p; k++) {
        const char *nl = strchr(p, '\n');
        cr_assert_not_null(nl);
        cr_assert_eq((size_t)(nl - p), strlen(x->element[k]->element[0]->str));
        cr_assert(strncmp(p, x->element[k]->element[0]->str, (size_t)(nl - p)) == 0,
                  "printed id %zu is not the stream's", k);
        p = nl + 1;
    }
    cr_assert_eq(k, (size_t)N);
    freeReplyObject(x);
    run_free(&r);
}
