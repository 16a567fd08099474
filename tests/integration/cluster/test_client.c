/*
 * libevbus on a real local Redis Cluster (tests/support/harness_cluster.h;
 * 3 masters, and 1 replica each where WAIT is checked): every publish
 * path puts each event in its partition's stream on the master serving
 * that partition's slot, in publish order per key; the recorded partition count and the retention
 * guard hold on a cluster; WAIT goes to every master a call wrote to; a
 * slot moved mid-publishing loses nothing; the dead-letter operations run
 * on each partition's node; evbusctl publish and dlq run with a
 * redis.cluster configuration.  Every test starts its own cluster.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/cluster.h"
#include "client/evbus_client.h"
#include "client/partition.h"
#include "harness.h"
#include "harness_cluster.h"

#define STREAM "cc"
enum { P = 6, KEYS = 12 };

static harness_cluster_t HC;

/* Without replicas (a cluster starts in half the time), but for the
 * suite that checks WAIT. */
static void cluster_up(void)
{
    cr_assert_eq(harness_cluster_start(&HC, 3, 0), 0, "cluster did not start (logs in %s)",
                 HC.dir);
}

static void cluster_up_with_replicas(void)
{
    cr_assert_eq(harness_cluster_start(&HC, 3, 1), 0, "cluster did not start (logs in %s)",
                 HC.dir);
}

/* evbusd of the operator API test, stopped even when an assertion ends
 * the test early */
static harness_proc_t admin_host;
static bool admin_started;

static void cluster_down(void)
{
    if (admin_started)
        harness_kill(&admin_host, SIGKILL, 10000);
    harness_cluster_stop(&HC);
}

TestSuite(cluster_client, .init = cluster_up, .fini = cluster_down, .timeout = 120);
TestSuite(cluster_client_replicas, .init = cluster_up_with_replicas, .fini = cluster_down,
          .timeout = 120);

static evbus_client_t *client(unsigned partitions)
{
    char err[300];
    evbus_client_t *c = evbus_client_new_cluster(HC.seeds, STREAM, err, sizeof err);
    cr_assert(c, "%s", err);
    cr_assert(evbus_client_is_cluster(c));
    cr_assert_eq(evbus_client_set_partitions(c, partitions), 0);
    return c;
}

static void part_name(char *out, size_t len, unsigned p, const char *suffix)
{
    evbus_partition_key_name(out, len, STREAM, p, true, suffix);
}

/* The node (index) of the master serving key's slot, asked of the
 * cluster itself (CLUSTER NODES through a fresh handle). */
static int master_of(const char *key)
{
    char err[300], owner[64];
    evbus_cluster_t *cl = evbus_cluster_new(HC.seeds, NULL, err, sizeof err);
    cr_assert(cl, "%s", err);
    cr_assert_eq(evbus_cluster_refresh(cl, err, sizeof err), 0, "%s", err);
    cr_assert_eq(evbus_cluster_slot_owner(cl, evbus_cluster_keyslot(key, strlen(key)), owner,
                                          sizeof owner),
                 0);
    evbus_cluster_free(cl);
    int node = harness_cluster_node_of_port(&HC, atoi(strrchr(owner, ':') + 1));
    cr_assert_geq(node, 0);
    return node;
}

/* A command on node i, asserted to succeed; the reply (caller frees). */
static redisReply *on(int i, const char *fmt, ...)
{
    char why[600];
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = harness_cluster_vcommand(&HC, i, why, sizeof why, fmt, ap);
    va_end(ap);
    cr_assert(r, "%s", why);
    return r;
}

static char *event_text(int key, int seq)
{
    char *t = NULL;
    cr_assert_geq(asprintf(&t,
                           "{\"specversion\":\"1.0\",\"id\":\"e-%d-%d\",\"source\":\"/t\","
                           "\"type\":\"a.b\",\"tenantid\":\"t\",\"partitionkey\":\"k%d\","
                           "\"data\":{\"seq\":%d}}",
                           key, seq, key, seq),
                  0);
    return t;
}

/* What every partition stream holds, read on the master that serves it
 * (a direct connection: a stream on the wrong node would answer MOVED):
 * each event in the partition of its key, and per key in seq order.
 * Returns how many events there are in all; seen[key] counts them. */
static size_t check_streams(int seen[KEYS], int last[KEYS])
{
    size_t total = 0;
    for (int k = 0; k < KEYS; k++)
        seen[k] = 0, last[k] = -1;
    for (unsigned p = 0; p < P; p++) {
        char s[64];
        part_name(s, sizeof s, p, "");
        redisReply *r = on(master_of(s), "XRANGE %s - +", s);
        cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
        for (size_t i = 0; i < r->elements; i++) {
            redisReply *f = r->element[i]->element[1];
            cr_assert_str_eq(f->element[0]->str, "event");
            json_t *ev = json_loads(f->element[1]->str, 0, NULL);
            cr_assert(ev, "%s", f->element[1]->str);
            const char *pk = json_string_value(json_object_get(ev, "partitionkey"));
            int k = atoi(pk + 1);
            int seq = (int)json_integer_value(json_object_get(json_object_get(ev, "data"), "seq"));
            cr_assert_eq(evbus_partition_of(pk, strlen(pk), P), p, "%s in partition %u", pk, p);
            cr_assert_gt(seq, last[k], "key %s: seq %d after %d", pk, seq, last[k]);
            last[k] = seq;
            seen[k]++;
            total++;
            json_decref(ev);
        }
        freeReplyObject(r);
    }
    return total;
}

/* Publishes seq [from, to) of every key through `how`: 0 one at a time
 * (json and raw in turn), 1 a json batch, 2 evbus_publish_texts, 3 a
 * pipeline (text and json in turn). */
typedef struct piped {
    uint64_t answered, failed;
} piped_t;

static void on_reply(void *ud, uint64_t seq, int rc, const char *text)
{
    piped_t *p = ud;
    cr_assert_eq(seq, p->answered, "replies in the order added");
    p->answered++;
    if (rc != 0) {
        p->failed++;
        cr_log_error("pipeline event %llu: %s", (unsigned long long)seq, text);
    }
}

static void publish(evbus_client_t *c, int how, int from, int to)
{
    char err[400] = "", id[EVBUS_STREAM_ID_LEN];
    size_t n = (size_t)(to - from) * KEYS, i = 0;
    char **texts = calloc(n, sizeof *texts);
    for (int s = from; s < to; s++)
        for (int k = 0; k < KEYS; k++)
            texts[i++] = event_text(k, s);
    if (how == 0) {
        for (i = 0; i < n; i++) {
            if (i % 2) {
                cr_assert_eq(evbus_publish_raw(c, texts[i], strlen(texts[i]), NULL, id,
                                               sizeof id, err, sizeof err),
                             0, "%s", err);
            } else {
                json_t *ev = json_loads(texts[i], 0, NULL);
                cr_assert_eq(evbus_publish(c, ev, id, sizeof id, err, sizeof err), 0, "%s", err);
                json_decref(ev);
            }
        }
    } else if (how == 1 || how == 2) {
        char(*ids)[EVBUS_STREAM_ID_LEN] = calloc(n, sizeof *ids);
        int *rc = calloc(n, sizeof *rc);
        ssize_t got;
        if (how == 1) {
            json_t **evs = calloc(n, sizeof *evs);
            for (i = 0; i < n; i++)
                evs[i] = json_loads(texts[i], 0, NULL);
            got = evbus_publish_batch(c, evs, n, ids, rc, err, sizeof err);
            for (i = 0; i < n; i++)
                json_decref(evs[i]);
            free(evs);
        } else {
            evbus_text_t *ts = calloc(n, sizeof *ts);
            for (i = 0; i < n; i++)
                ts[i] = (evbus_text_t){texts[i], strlen(texts[i])};
            got = evbus_publish_texts(c, ts, n, ids, rc, err, sizeof err);
            free(ts);
        }
        cr_assert_eq(got, (ssize_t)n, "%s", err);
        for (i = 0; i < n; i++)
            cr_assert(rc[i] == 0 && ids[i][0], "event %zu", i);
        free(ids);
        free(rc);
    } else {
        piped_t pd = {0};
        evbus_pipeline_t *pl = evbus_pipeline_new(c, on_reply, &pd, err, sizeof err);
        cr_assert(pl, "%s", err);
        for (i = 0; i < n; i++) {
            if (i % 2) {
                evbus_text_event_t te;
                cr_assert_eq(evbus_event_text_complete(c, texts[i], strlen(texts[i]), &te, err,
                                                       sizeof err),
                             0, "%s", err);
                cr_assert_eq(evbus_pipeline_add_text(pl, &te, err, sizeof err), 0, "%s", err);
                evbus_text_event_clear(&te);
            } else {
                json_t *ev = json_loads(texts[i], 0, NULL);
                cr_assert_eq(evbus_pipeline_add(pl, ev, err, sizeof err), 0, "%s", err);
                json_decref(ev);
            }
        }
        cr_assert_eq(evbus_pipeline_wait(pl, err, sizeof err), 0, "%s", err);
        cr_assert_eq(evbus_pipeline_unanswered(pl), 0);
        evbus_pipeline_free(pl);
        cr_assert_eq(pd.answered, n);
        cr_assert_eq(pd.failed, 0);
    }
    for (i = 0; i < n; i++)
        free(texts[i]);
    free(texts);
}

/* How many distinct masters serve the P partitions. */
static int masters_of_partitions(void)
{
    bool seen[HARNESS_CLUSTER_MAX] = {0};
    int n = 0;
    for (unsigned p = 0; p < P; p++) {
        char s[64];
        part_name(s, sizeof s, p, "");
        int m = master_of(s);
        n += !seen[m];
        seen[m] = true;
    }
    return n;
}

Test(cluster_client_replicas, every_publish_path_puts_each_event_on_its_partitions_master_in_order)
{
    evbus_client_t *c = client(P);
    evbus_client_set_wait_replicas(c, 1, 2000);
    uint64_t waits = 0;
    publish(c, 0, 0, 2);
    evbus_client_wait_short(c, &waits);
    cr_assert_eq(waits, 2 * KEYS, "one WAIT per single publish");
    publish(c, 1, 2, 6);
    uint64_t before = waits;
    evbus_client_wait_short(c, &waits);
    int masters = masters_of_partitions();
    cr_assert_geq(masters, 2, "the partitions spread over the masters");
    cr_assert_eq(waits - before, (uint64_t)masters, "a batch WAITs once on every master written");
    publish(c, 2, 6, 10);
    publish(c, 3, 10, 1200 / KEYS + 10); /* over two pipeline chunks */
    cr_assert_eq(evbus_client_wait_short(c, &waits), 0, "every WAIT reached the replica");
    int seen[KEYS], last[KEYS];
    size_t total = check_streams(seen, last);
    cr_assert_eq(total, (size_t)KEYS * (1200 / KEYS + 10));
    for (int k = 0; k < KEYS; k++)
        cr_assert_eq(last[k], 1200 / KEYS + 9, "key %d ends with its last event", k);
    cr_assert_null(evbus_client_redis(c), "no one connection on a cluster");
    evbus_client_free(c);
}

Test(cluster_client, a_partition_count_that_differs_from_the_record_is_refused)
{
    evbus_client_t *c = client(P);
    publish(c, 0, 0, 1); /* records P */
    evbus_client_free(c);
    char err[400] = "", id[EVBUS_STREAM_ID_LEN];
    char *t = event_text(1, 1);
    c = client(4);
    cr_assert_eq(evbus_publish_raw(c, t, strlen(t), NULL, id, sizeof id, err, sizeof err),
                 EVBUS_CLIENT_EREDIS);
    cr_assert(strstr(err, "publishes with 4 partitions") && strstr(err, "6"), "%s", err);
    evbus_client_free(c);
    c = client(1);
    cr_assert_eq(evbus_publish_raw(c, t, strlen(t), NULL, id, sizeof id, err, sizeof err),
                 EVBUS_CLIENT_EINVAL);
    cr_assert(strstr(err, "2 or more"), "%s", err);
    evbus_client_free(c);
    free(t);
}

Test(cluster_client, the_retention_guard_refuses_a_full_partition_and_reloads_on_noscript)
{
    evbus_client_t *c = client(P);
    evbus_client_set_retention(c, P, 0, 0); /* one entry a partition */
    char err[400] = "", id[EVBUS_STREAM_ID_LEN];
    char *a1 = event_text(0, 0), *a2 = event_text(0, 1);
    cr_assert_eq(evbus_publish_raw(c, a1, strlen(a1), NULL, id, sizeof id, err, sizeof err), 0,
                 "%s", err);
    cr_assert_eq(evbus_publish_raw(c, a2, strlen(a2), NULL, id, sizeof id, err, sizeof err),
                 EVBUS_CLIENT_EFULL, "%s", err);
    /* every master forgets its scripts: the guard is loaded again where
     * NOSCRIPT answers, and still refuses */
    for (int i = 0; i < HC.n; i++)
        if (harness_cluster_is_master(&HC, i))
            freeReplyObject(on(i, "SCRIPT FLUSH"));
    cr_assert_eq(evbus_publish_raw(c, a2, strlen(a2), NULL, id, sizeof id, err, sizeof err),
                 EVBUS_CLIENT_EFULL, "%s", err);
    /* a key of another partition still has room, on any master */
    int other = 1;
    char pk[16];
    snprintf(pk, sizeof pk, "k%d", other);
    while (evbus_partition_of(pk, strlen(pk), P) == evbus_partition_of("k0", 2, P))
        snprintf(pk, sizeof pk, "k%d", ++other);
    char *b = event_text(other, 0);
    cr_assert_eq(evbus_publish_raw(c, b, strlen(b), NULL, id, sizeof id, err, sizeof err), 0,
                 "%s", err);
    /* a batch: the full partition's event refused, the other published */
    for (int i = 0; i < HC.n; i++)
        if (harness_cluster_is_master(&HC, i))
            freeReplyObject(on(i, "SCRIPT FLUSH"));
    char *b2 = event_text(other + 100, 0); /* k<other+100>: wherever it goes */
    evbus_text_t ts[2] = {{a2, strlen(a2)}, {b2, strlen(b2)}};
    char ids[2][EVBUS_STREAM_ID_LEN];
    int rc[2];
    evbus_publish_texts(c, ts, 2, ids, rc, err, sizeof err);
    cr_assert_eq(rc[0], EVBUS_CLIENT_EFULL, "%s", err);
    char pk2[16];
    snprintf(pk2, sizeof pk2, "k%d", other + 100);
    unsigned p2 = evbus_partition_of(pk2, strlen(pk2), P);
    bool p2_full = p2 == evbus_partition_of("k0", 2, P) || p2 == evbus_partition_of(pk, strlen(pk), P);
    cr_assert_eq(rc[1], p2_full ? EVBUS_CLIENT_EFULL : 0, "%s", err);
    free(a1);
    free(a2);
    free(b);
    free(b2);
    evbus_client_free(c);
}

/* Moves `slot` from master src to master dst (harness_cluster_move_slot),
 * fn(ud, stage) after each step. */
static void move_slot(unsigned slot, int src, int dst, void (*fn)(void *, int), void *ud)
{
    char why[600];
    cr_assert_eq(harness_cluster_move_slot(&HC, slot, src, dst, fn, ud, why, sizeof why), 0,
                 "%s", why);
}

typedef struct moving {
    evbus_client_t *c;
    int seq;
} moving_t;

/* At each stage of the move: one event per key by every path. */
static void publish_at_stage(void *ud, int stage)
{
    moving_t *m = ud;
    (void)stage;
    for (int how = 0; how < 4; how++) {
        publish(m->c, how, m->seq, m->seq + 1);
        m->seq++;
    }
}

Test(cluster_client, a_slot_moved_while_publishing_loses_no_event)
{
    evbus_client_t *c = client(P);
    moving_t m = {.c = c};
    publish_at_stage(&m, 0); /* the client knows the map */
    char s0[64];
    part_name(s0, sizeof s0, 0, "");
    int src = master_of(s0), dst = -1;
    for (int i = 0; i < HC.n && dst < 0; i++)
        if (i != src && harness_cluster_is_master(&HC, i))
            dst = i;
    cr_assert_geq(dst, 0);
    move_slot(evbus_cluster_keyslot(s0, strlen(s0)), src, dst, publish_at_stage, &m);
    cr_assert_eq(master_of(s0), dst, "partition 0 moved");
    int seen[KEYS], last[KEYS];
    size_t total = check_streams(seen, last);
    cr_assert_eq(total, (size_t)KEYS * (size_t)m.seq, "no event lost");
    for (int k = 0; k < KEYS; k++)
        cr_assert_eq(seen[k], m.seq, "key %d: every event once", k);
    evbus_client_free(c);
}

/* Dead letter i, written as evbusd writes it into its partition's
 * dead-letter stream, with the id "<1000 + i>-1" so that their order
 * across partitions is known. */
static void add_dead(evbus_cluster_t *cl, int i)
{
    unsigned p = (unsigned)i % P;
    char dlq[64], stream[64], id[32], event[200], err[300];
    part_name(dlq, sizeof dlq, p, ":dlq");
    part_name(stream, sizeof stream, p, "");
    snprintf(id, sizeof id, "%d-1", 1000 + i);
    snprintf(event, sizeof event,
             "{\"specversion\":\"1.0\",\"id\":\"dead-%d\",\"type\":\"a.b\",\"tenantid\":\"t\","
             "\"source\":\"/t\",\"time\":\"2026-12-07T00:00:00Z\",\"data\":{}}",
             i);
    const char *argv[] = {"XADD", dlq, id, "event", event, "stream", stream, "id", "1-1",
                          "type", "a.b", "tenant", "t", "reason", "failed", "attempts", "3"};
    redisReply *r = evbus_cluster_command(cl, 17, argv, NULL, err, sizeof err);
    cr_assert(r && r->type == REDIS_REPLY_STRING, "XADD %s: %s", dlq,
              r ? r->str : err);
    freeReplyObject(r);
}

Test(cluster_client, dead_letters_are_listed_merged_and_retried_and_deleted_on_their_node)
{
    enum { N = 14 };
    char err[400] = "";
    evbus_cluster_t *cl = evbus_cluster_new(HC.seeds, NULL, err, sizeof err);
    cr_assert(cl, "%s", err);
    for (int i = 0; i < N; i++)
        add_dead(cl, i);
    evbus_cluster_free(cl);
    evbus_client_t *c = client(P);
    char names[P][64];
    const char *dlqs[P];
    for (unsigned p = 0; p < P; p++) {
        part_name(names[p], sizeof names[p], p, ":dlq");
        dlqs[p] = names[p];
    }
    /* newest first across the partitions, in pages of 4 with the cursor */
    char cursor[EVBUS_DLQ_MERGED_CURSOR_LEN] = "";
    int expect = N - 1, pages = 0;
    do {
        evbus_dlq_entry_t *es = NULL;
        size_t n = 0, from[4];
        char next[EVBUS_DLQ_MERGED_CURSOR_LEN];
        cr_assert_eq(evbus_dlq_page_merged(c, dlqs, P, NULL, cursor, 4, &es, &n, from, next, err,
                                           sizeof err),
                     0, "%s", err);
        for (size_t k = 0; k < n; k++, expect--) {
            char want[32];
            snprintf(want, sizeof want, "%d-1", 1000 + expect);
            cr_assert_str_eq(es[k].dlq_id, want, "page %d entry %zu", pages, k);
            cr_assert_eq(from[k], (size_t)expect % P);
        }
        evbus_dlq_list_free(es, n);
        snprintf(cursor, sizeof cursor, "%s", next);
        pages++;
    } while (cursor[0]);
    cr_assert_eq(expect, -1, "every dead letter listed once");
    cr_assert_eq(pages, (N + 3) / 4);
    /* show, retry into the partition's stream, delete */
    evbus_dlq_entry_t e;
    cr_assert_eq(evbus_dlq_get(c, dlqs[5 % P], "1005-1", NULL, &e, err, sizeof err), 0, "%s",
                 err);
    cr_assert(strstr(e.event, "dead-5"));
    evbus_dlq_entry_free(&e);
    char new_id[EVBUS_STREAM_ID_LEN];
    cr_assert_eq(evbus_dlq_retry(c, dlqs[5 % P], "1005-1", NULL, new_id, sizeof new_id, err,
                                 sizeof err),
                 0, "%s", err);
    char s5[64];
    part_name(s5, sizeof s5, 5 % P, "");
    redisReply *r = on(master_of(s5), "XRANGE %s %s %s", s5, new_id, new_id);
    cr_assert_eq(r->elements, 1, "the retried event is in its partition's stream");
    cr_assert(strstr(r->element[0]->element[1]->element[1]->str, "dead-5"));
    freeReplyObject(r);
    cr_assert_eq(evbus_dlq_get(c, dlqs[5 % P], "1005-1", NULL, &e, err, sizeof err), 1);
    cr_assert_eq(evbus_dlq_delete(c, dlqs[6 % P], "1006-1", NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq(evbus_dlq_delete(c, dlqs[6 % P], "1006-1", NULL, err, sizeof err), 1);
    ssize_t total = 0;
    for (unsigned p = 0; p < P; p++) {
        ssize_t k = evbus_dlq_count(c, dlqs[p], NULL, err, sizeof err);
        cr_assert_geq(k, 0, "%s", err);
        total += k;
    }
    cr_assert_eq(total, N - 2);
    evbus_client_free(c);
}

/* A conf.d for evbusctl in a new folder, with one handler instance
 * "ko": `redis` is the YAML of the redis: mapping's contents. */
static char *write_conf(const char *redis, char *conf, size_t len)
{
    char *dir = harness_tmpdir("cluster-ctl");
    cr_assert(dir);
    char *schemas = harness_source_path("schemas");
    char *keyed = harness_build_path("plugins/testkit/keyed.so");
    char yaml[4096];
    snprintf(conf, len, "%s/conf.d", dir);
    snprintf(yaml, sizeof yaml,
             "redis: { %s }\npartitions: %d\nstream: " STREAM "\nstate_dir: %s/state\n"
             "schemas: { dir: %s }\n"
             "plugins:\n  - name: ko\n    plugin: %s\n    config: { out: %s/calls }\n"
             "    subscriptions: [ { pattern: \"nothing.**\" } ]\n",
             redis, P, dir, schemas, keyed, dir);
    free(keyed);
    free(schemas);
    cr_assert_eq(harness_write_file(conf, "00-host.yaml", yaml), 0);
    return dir;
}

/* Runs evbusctl with args (NULL-terminated) after `pre` (global options,
 * NULL-terminated); its exit status, stdout in *out, stderr in *err. */
static int ctl(char **pre, char **args, const char *input, char **out, char **err)
{
    char *argv[32];
    int n = 0;
    argv[n++] = harness_build_path("host/ctl/evbusctl");
    for (int i = 0; pre[i]; i++)
        argv[n++] = pre[i];
    for (int i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    *out = *err = NULL;
    int st = harness_run(argv, NULL, input, out, err, 60000);
    free(argv[0]);
    return st;
}

/* NDJSON of seq [from, to) of every key, into dir/name; returns the path. */
static char *ndjson(const char *dir, const char *name, int from, int to)
{
    size_t cap = (size_t)(to - from) * KEYS * 256 + 1, len = 0;
    char *text = malloc(cap);
    for (int s = from; s < to; s++)
        for (int k = 0; k < KEYS; k++) {
            char *t = event_text(k, s);
            len += (size_t)snprintf(text + len, cap - len, "%s\n", t);
            free(t);
        }
    cr_assert_eq(harness_write_file(dir, name, text), 0);
    free(text);
    char *path = NULL;
    cr_assert_geq(asprintf(&path, "%s/%s", dir, name), 0);
    return path;
}

/* One page of a merged dead-letter listing (evbusctl's or the API's
 * items): entries "<1000 + k>-1:<k % P>" for k = expect, expect - 1, ...,
 * newest first across the partitions.  The next k expected. */
static int expect_newest_first(const json_t *items, int expect)
{
    size_t i;
    const json_t *it;
    json_array_foreach(items, i, it)
    {
        char want[32];
        snprintf(want, sizeof want, "%d-1:%d", 1000 + expect, expect % P);
        cr_assert_str_eq(json_string_value(json_object_get(it, "dlq_id")), want);
        expect--;
    }
    return expect;
}

Test(cluster_client, evbusctl_publishes_and_manages_dead_letters_on_a_configured_cluster)
{
    /* redis.cluster: the seeds as a YAML list */
    char list[1200] = "cluster: [", conf[600];
    const char *s = HC.seeds;
    while (*s) {
        const char *e = strchr(s, ',');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s\"%.*s\"",
                 s == HC.seeds ? "" : ", ", (int)n, s);
        s += n + (e != NULL);
    }
    strcat(list, "]");
    char *dir = write_conf(list, conf, sizeof conf);
    char *pre[] = {"-c", conf, NULL}, *out, *err;

    /* publish: --file, --file --parallel, --live from stdin */
    char *f1 = ndjson(dir, "a.ndjson", 0, 10), *f2 = ndjson(dir, "b.ndjson", 10, 20);
    char *p1[] = {"publish", "--file", f1, NULL};
    cr_assert_eq(ctl(pre, p1, NULL, &out, &err), 0, "%s", err);
    free(out), free(err);
    char *p2[] = {"publish", "--file", f2, "--parallel", "3", NULL};
    cr_assert_eq(ctl(pre, p2, NULL, &out, &err), 0, "%s", err);
    free(out), free(err);
    char *f3 = ndjson(dir, "c.ndjson", 20, 30), *live = harness_read_file(f3);
    char *p3[] = {"publish", "--live", NULL};
    cr_assert_eq(ctl(pre, p3, live, &out, &err), 0, "%s", err);
    free(out), free(err), free(live);
    int seen[KEYS], last[KEYS];
    cr_assert_eq(check_streams(seen, last), (size_t)KEYS * 30, "every event once");
    for (int k = 0; k < KEYS; k++)
        cr_assert_eq(last[k], 29);

    /* dlq list: pages of 3, newest first across partitions, ID:PARTITION */
    char e2[300];
    evbus_cluster_t *cl = evbus_cluster_new(HC.seeds, NULL, e2, sizeof e2);
    cr_assert(cl, "%s", e2);
    for (int i = 0; i < 7; i++)
        add_dead(cl, i);
    evbus_cluster_free(cl);
    char cursor[128] = "";
    int expect = 6;
    for (int page = 0; page < 5; page++) {
        char *l[] = {"dlq", "list", "--json", "--limit", "3", cursor[0] ? "--cursor" : NULL,
                     cursor, NULL};
        cr_assert_eq(ctl(pre, l, NULL, &out, &err), 0, "%s", err);
        json_t *doc = json_loads(out, 0, NULL);
        cr_assert(doc, "%s", out);
        expect = expect_newest_first(json_object_get(doc, "items"), expect);
        const char *next = json_string_value(json_object_get(doc, "next_cursor"));
        snprintf(cursor, sizeof cursor, "%s", next ? next : "");
        json_decref(doc);
        free(out), free(err);
        if (!cursor[0])
            break;
    }
    cr_assert_eq(expect, -1, "every dead letter listed once");

    /* dlq retry ID:PARTITION: back into its partition's stream */
    char *r[] = {"dlq", "retry", "1003-1:3", NULL};
    cr_assert_eq(ctl(pre, r, NULL, &out, &err), 0, "%s", err);
    free(out), free(err);
    char s3[64];
    part_name(s3, sizeof s3, 3, "");
    redisReply *x = on(master_of(s3), "XREVRANGE %s + - COUNT 1", s3);
    cr_assert(x->elements == 1 && strstr(x->element[0]->element[1]->element[1]->str, "dead-3"));
    freeReplyObject(x);

    /* --redis-cluster over a configuration's redis.url */
    char conf2[600];
    char *dir2 = write_conf("url: \"redis://127.0.0.1:1\"", conf2, sizeof conf2);
    char *pre2[] = {"-c", conf2, "--redis-cluster", HC.seeds, NULL};
    char *c2[] = {"dlq", "list", "--json", NULL};
    cr_assert_eq(ctl(pre2, c2, NULL, &out, &err), 0, "%s", err);
    json_t *doc = json_loads(out, 0, NULL);
    cr_assert_eq(json_array_size(json_object_get(doc, "items")), 6, "%s", out);
    json_decref(doc);
    free(out), free(err);

    /* handlers pause: every partition's pause copy, each on its master */
    char *hp[] = {"handlers", "pause", "ko", "--reason", "maintenance", NULL};
    cr_assert_eq(ctl(pre, hp, NULL, &out, &err), 0, "%s", err);
    free(out), free(err);
    for (unsigned p = 0; p < P; p++) {
        char paused[64];
        part_name(paused, sizeof paused, p, ":paused");
        x = on(master_of(paused), "HGET %s ko", paused);
        cr_assert(x->type == REDIS_REPLY_STRING && strstr(x->str, "maintenance"),
                  "partition %u's pause copy", p);
        freeReplyObject(x);
    }
    char *hl[] = {"handlers", "list", "--json", NULL};
    cr_assert_eq(ctl(pre, hl, NULL, &out, &err), 0, "%s", err);
    cr_assert(strstr(out, "maintenance"), "%s", out);
    free(out), free(err);
    char *hr[] = {"handlers", "resume", "ko", NULL};
    cr_assert_eq(ctl(pre, hr, NULL, &out, &err), 0, "%s", err);
    free(out), free(err);
    for (unsigned p = 0; p < P; p++) {
        char paused[64];
        part_name(paused, sizeof paused, p, ":paused");
        x = on(master_of(paused), "HEXISTS %s ko", paused);
        cr_assert_eq(x->integer, 0, "partition %u resumed", p);
        freeReplyObject(x);
    }

    /* pending list and quarantine: the group evbus in every partition (as
     * evbusd makes it), an entry read and not acked in partitions 2 and 5,
     * each asked of its own master */
    for (unsigned p = 0; p < P; p++) {
        char s[64];
        part_name(s, sizeof s, p, "");
        freeReplyObject(on(master_of(s), "XGROUP CREATE %s evbus $ MKSTREAM", s));
    }
    unsigned parts[2] = {2, 5};
    char entry[2][40];
    for (int k = 0; k < 2; k++) {
        char s[64];
        part_name(s, sizeof s, parts[k], "");
        int m = master_of(s);
        redisReply *a = on(m, "XADD %s * event {\"id\":\"stuck-%d\"}", s, k);
        snprintf(entry[k], sizeof entry[k], "%s", a->str);
        freeReplyObject(a);
        freeReplyObject(on(m, "XREADGROUP GROUP evbus gone COUNT 1 STREAMS %s >", s));
    }
    char *pl[] = {"pending", "list", "--json", NULL};
    cr_assert_eq(ctl(pre, pl, NULL, &out, &err), 0, "%s", err);
    doc = json_loads(out, 0, NULL);
    cr_assert_eq(json_array_size(doc), 2, "%s", out);
    for (int k = 0; k < 2; k++) {
        char want[128];
        snprintf(want, sizeof want, "\"%s:%u\"", entry[k], parts[k]);
        cr_assert(strstr(out, want), "%s in %s", want, out);
    }
    json_decref(doc);
    free(out), free(err);
    char q[80];
    snprintf(q, sizeof q, "%s:5", entry[1]);
    char *pq[] = {"pending", "quarantine", q, "--json", NULL};
    cr_assert_eq(ctl(pre, pq, NULL, &out, &err), 0, "%s", err);
    free(out), free(err);
    char d5[64], s5[64];
    part_name(d5, sizeof d5, 5, ":dlq");
    part_name(s5, sizeof s5, 5, "");
    x = on(master_of(d5), "XREVRANGE %s + - COUNT 1", d5);
    cr_assert(x->elements == 1 && strstr(x->element[0]->element[1]->element[1]->str, "stuck-1"),
              "the entry is a dead letter of partition 5");
    freeReplyObject(x);
    x = on(master_of(s5), "XPENDING %s evbus", s5);
    cr_assert_eq(x->element[0]->integer, 0, "and no longer pending");
    freeReplyObject(x);
    harness_rmrf(dir2);
    free(dir2);
    free(f1), free(f2), free(f3);
    harness_rmrf(dir);
    free(dir);
}

/* ---- the operator API on a cluster ----------------------------------------- */

#define TOKEN "evb_test_cluster_operator_0123456789abcdef"

static int admin_port;

static bool admin_up(void *ud)
{
    (void)ud;
    int st = 0;
    char *body = harness_http_get(admin_port, "/health", &st);
    free(body);
    return st == 200;
}

/* One request to evbusd's operator API; the JSON reply, status in *st. */
static json_t *api(const char *method, const char *path, const char *body, int *st)
{
    char *text = harness_http(admin_port, method, path, TOKEN, body, NULL, st, NULL);
    cr_assert(text, "%s %s: no answer", method, path);
    json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
    cr_assert(j || !*text, "%s %s: not JSON: %s", method, path, text);
    free(text);
    return j;
}

/*
 * evbusd on the cluster (P partitions, the operator API on a free port
 * with TOKEN, an operator and publisher of every tenant), in a new
 * folder it returns; `plugins` is the YAML of its plugins: list (NULL: a
 * handler of nothing).  Waits until /health answers; its log is *log.
 */
static char *start_evbusd(const char *plugins, char *log, size_t loglen)
{
    char *dir = harness_tmpdir("cluster-evbusd"), conf[600], state[600];
    cr_assert(dir);
    snprintf(conf, sizeof conf, "%s/conf.d", dir);
    snprintf(state, sizeof state, "%s/state", dir);
    snprintf(log, loglen, "%s/evbusd.log", dir);
    admin_port = harness_free_port();
    char hash[72];
    harness_token_hash(TOKEN, hash);
    char *keyed = harness_build_path("plugins/testkit/keyed.so");
    char *schemas = harness_source_path("schemas");
    char *nothing = NULL, *yaml = NULL;
    cr_assert_geq(asprintf(&nothing,
                           "  - name: ko\n    plugin: %s\n    config: { out: %s/calls }\n"
                           "    subscriptions:\n      - { pattern: \"nothing.**\" }\n",
                           keyed, dir),
                  0);
    cr_assert_geq(asprintf(&yaml,
                           "redis: { cluster: \"%s\" }\nstream: " STREAM "\npartitions: %d\n"
                           "state_dir: %s\nschemas: { dir: %s, mode: off }\n"
                           "block_ms: 50\n"
                           "admin:\n  listen: \"127.0.0.1:%d\"\n  tokens:\n"
                           "    - { name: op, hash: \"%s\", roles: [operator, publisher], "
                           "tenant: \"*\" }\n"
                           "plugins:\n%s",
                           HC.seeds, P, state, schemas, admin_port, hash,
                           plugins ? plugins : nothing),
                  0);
    free(nothing);
    free(keyed);
    free(schemas);
    cr_assert_eq(harness_write_file(conf, "10-evbusd.yaml", yaml), 0);
    free(yaml);
    char *evbusd = harness_build_path("host/daemon/evbusd");
    char *argv[] = {evbusd, "-c", conf, NULL};
    cr_assert_eq(harness_spawn(&admin_host, argv, NULL, log), 0);
    admin_started = true;
    free(evbusd);
    cr_assert(harness_wait_until(admin_up, NULL, 30000), "evbusd did not come up (%s)", log);
    return dir;
}

Test(cluster_client, the_operator_api_manages_dead_letters_and_publishes_on_a_cluster)
{
    char e2[300];
    evbus_cluster_t *cl = evbus_cluster_new(HC.seeds, NULL, e2, sizeof e2);
    cr_assert(cl, "%s", e2);
    for (int i = 0; i < 7; i++)
        add_dead(cl, i);
    evbus_cluster_free(cl);

    char log[600];
    char *dir = start_evbusd(NULL, log, sizeof log);

    /* GET /api/v1/dlq: pages of 3 through next_cursor, newest first */
    int st, expect = 6;
    char path[300] = "/api/v1/dlq?limit=3";
    for (int page = 0; page < 5; page++) {
        json_t *doc = api("GET", path, NULL, &st);
        cr_assert_eq(st, 200, "GET %s: %d", path, st);
        if (page == 0)
            cr_assert_eq(json_integer_value(json_object_get(doc, "total")), 7);
        expect = expect_newest_first(json_object_get(doc, "items"), expect);
        const char *next = json_string_value(json_object_get(doc, "next_cursor"));
        if (next)
            snprintf(path, sizeof path, "/api/v1/dlq?limit=3&cursor=%s", next);
        json_decref(doc);
        if (!next)
            break;
    }
    cr_assert_eq(expect, -1, "every dead letter listed once");
    /* retry one, delete another, each on its partition's node */
    json_t *j = api("POST", "/api/v1/dlq/1003-1:3/retry", NULL, &st);
    cr_assert_eq(st, 200, "retry: %d", st);
    json_decref(j);
    char s3[64];
    part_name(s3, sizeof s3, 3, "");
    redisReply *x = on(master_of(s3), "XREVRANGE %s + - COUNT 1", s3);
    cr_assert(x->elements == 1 && strstr(x->element[0]->element[1]->element[1]->str, "dead-3"));
    freeReplyObject(x);
    j = api("DELETE", "/api/v1/dlq/1004-1:4", NULL, &st);
    cr_assert(st == 200 || st == 204, "delete: %d", st);
    json_decref(j);
    j = api("GET", "/api/v1/dlq/1004-1:4", NULL, &st);
    cr_assert_eq(st, 404);
    json_decref(j);
    /* a re-drive of the 5 left: each back into its partition's stream by
     * the job thread's cluster client */
    j = api("POST", "/api/v1/dlq/redrive", "{\"filter\":{},\"dry_run\":true}", &st);
    cr_assert_eq(st, 200, "dry run: %d", st);
    cr_assert_eq(json_integer_value(json_object_get(j, "count")), 5);
    char body[512];
    snprintf(body, sizeof body, "{\"filter\":{},\"confirm\":\"%s\",\"rate\":1000}",
             json_string_value(json_object_get(j, "confirm")));
    json_decref(j);
    j = api("POST", "/api/v1/dlq/redrive", body, &st);
    cr_assert_eq(st, 202, "re-drive: %d", st);
    char job[300];
    snprintf(job, sizeof job, "/api/v1/dlq/redrive/%s", json_string_value(json_object_get(j, "id")));
    json_decref(j);
    long long end = harness_now_ms() + 20000;
    for (;;) {
        j = api("GET", job, NULL, &st);
        const char *state = json_string_value(json_object_get(j, "state"));
        if (strcmp(state ? state : "", "running") != 0 || harness_now_ms() > end)
            break;
        json_decref(j);
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    cr_assert_str_eq(json_string_value(json_object_get(j, "state")), "done");
    cr_assert_eq(json_integer_value(json_object_get(j, "done")), 5);
    json_decref(j);
    for (int i = 0; i < 7; i++) {
        if (i == 3 || i == 4)
            continue;
        char s[64], want[32];
        part_name(s, sizeof s, (unsigned)i % P, "");
        snprintf(want, sizeof want, "\"dead-%d\"", i);
        x = on(master_of(s), "XRANGE %s - +", s);
        bool found = false;
        for (size_t k = 0; k < x->elements && !found; k++)
            found = strstr(x->element[k]->element[1]->element[1]->str, want) != NULL;
        cr_assert(found, "dead-%d re-driven into %s", i, s);
        freeReplyObject(x);
    }

    /* POST /api/v1/events: into the event's partition stream */
    char *ev = event_text(5, 0);
    j = api("POST", "/api/v1/events", ev, &st);
    cr_assert_eq(st, 201, "publish: %d", st);
    json_decref(j);
    free(ev);
    char s5[64];
    part_name(s5, sizeof s5, evbus_partition_of("k5", 2, P), "");
    x = on(master_of(s5), "XREVRANGE %s + - COUNT 1", s5);
    cr_assert(x->elements == 1 && strstr(x->element[0]->element[1]->element[1]->str, "e-5-0"),
              "the published event is in its partition's stream");
    freeReplyObject(x);
    cr_assert_eq(harness_kill(&admin_host, SIGTERM, 20000), 0, "evbusd stops cleanly (%s)", log);
    admin_started = false;
    harness_rmrf(dir);
    free(dir);
}

/* How many forwarded.happened events every partition stream holds, each
 * asserted to be in the partition of its tenant (its key). */
static int forwarded_in_place(void)
{
    int n = 0;
    for (unsigned p = 0; p < P; p++) {
        char s[64];
        part_name(s, sizeof s, p, "");
        redisReply *r = on(master_of(s), "XRANGE %s - +", s);
        for (size_t i = 0; i < r->elements; i++) {
            json_t *ev = json_loads(r->element[i]->element[1]->element[1]->str, 0, NULL);
            const char *type = json_string_value(json_object_get(ev, "type"));
            const char *tenant = json_string_value(json_object_get(ev, "tenantid"));
            if (type && !strcmp(type, "forwarded.happened")) {
                cr_assert_eq(evbus_partition_of(tenant, strlen(tenant), P), p,
                             "forwarded event of %s in partition %u", tenant, p);
                n++;
            }
            json_decref(ev);
        }
        freeReplyObject(r);
    }
    return n;
}

static bool all_forwarded(void *ud)
{
    return forwarded_in_place() >= *(int *)ud;
}

Test(cluster_client, plugins_publish_through_the_host_api_on_a_cluster_in_process_and_isolated)
{
    char *fwd = harness_build_path("plugins/testkit/forwarder.so");
    char *plugins = NULL;
    cr_assert_geq(asprintf(&plugins,
                           "  - name: fwd-in\n    plugin: %s\n"
                           "    subscriptions: [ { pattern: \"origin.in.**\" } ]\n"
                           "  - name: fwd-iso\n    plugin: %s\n    isolation: process\n"
                           "    subscriptions: [ { pattern: \"origin.iso.**\" } ]\n",
                           fwd, fwd),
                  0);
    free(fwd);
    char log[600];
    char *dir = start_evbusd(plugins, log, sizeof log);
    free(plugins);
    evbus_client_t *c = client(P);
    enum { N = 24 };
    for (int i = 0; i < N; i++) {
        char t[300], err[300], id[EVBUS_STREAM_ID_LEN];
        snprintf(t, sizeof t,
                 "{\"specversion\":\"1.0\",\"id\":\"o-%d\",\"source\":\"/t\","
                 "\"type\":\"origin.%s.step\",\"tenantid\":\"t%d\","
                 "\"time\":\"2026-12-07T00:00:00Z\",\"data\":{}}",
                 i, i % 2 ? "iso" : "in", i % 7);
        cr_assert_eq(evbus_publish_raw(c, t, strlen(t), NULL, id, sizeof id, err, sizeof err), 0,
                     "%s", err);
    }
    evbus_client_free(c);
    int want = N;
    cr_assert(harness_wait_until(all_forwarded, &want, 20000),
              "%d of %d events forwarded by the plugins (log %s)", forwarded_in_place(), N, log);
    cr_assert_eq(forwarded_in_place(), N, "each forwarded once");
    cr_assert_eq(harness_kill(&admin_host, SIGTERM, 20000), 0, "evbusd stops cleanly (%s)", log);
    admin_started = false;
    harness_rmrf(dir);
    free(dir);
}
