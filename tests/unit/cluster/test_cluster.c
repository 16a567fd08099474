/*
 * The cluster client (host/client/cluster.h) without a cluster: key slots
 * against the specification's examples, command key positions, seed
 * checks, and every redirect rule against scripted fake nodes
 * (fake_node.h) that answer MOVED, ASK, TRYAGAIN and CLUSTERDOWN exactly
 * when the test says.  The same hashing is checked against a real
 * cluster's CLUSTER KEYSLOT in tests/integration/cluster.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "client/cluster.h"
#include "client/evbus_client.h"
#include "fake_node.h"

/* ---- slots and keys ---------------------------------------------------- */

Test(cluster_slots, crc16_matches_the_specifications_check_value)
{
    cr_assert_eq(evbus_cluster_crc16("123456789", 9), 0x31C3);
}

Test(cluster_slots, keyslot_matches_the_specifications_examples)
{
    cr_assert_eq(evbus_cluster_keyslot("foo", 3), 12182);
    cr_assert_eq(evbus_cluster_keyslot("", 0), 0);
    /* a non-empty tag hashes alone */
    cr_assert_eq(evbus_cluster_keyslot("{user1000}.following", 20),
                 evbus_cluster_keyslot("user1000", 8));
    cr_assert_eq(evbus_cluster_keyslot("{user1000}.followers", 20),
                 evbus_cluster_keyslot("{user1000}.following", 20));
    /* the first '{' and the first '}' after it */
    cr_assert_eq(evbus_cluster_keyslot("foo{{bar}}zap", 13), evbus_cluster_keyslot("{bar", 4));
    cr_assert_eq(evbus_cluster_keyslot("foo{bar}{zap}", 13), evbus_cluster_keyslot("bar", 3));
    /* an empty tag, or no closing brace: the whole key */
    cr_assert_eq(evbus_cluster_keyslot("foo{}{bar}", 10),
                 evbus_cluster_crc16("foo{}{bar}", 10) & 16383);
    cr_assert_eq(evbus_cluster_keyslot("foo{bar", 7), evbus_cluster_crc16("foo{bar", 7) & 16383);
}

Test(cluster_slots, same_slot_refuses_crossslot_naming_both_keys)
{
    char err[400];
    const char *same[] = {"{p3}:stream", "{p3}:retry", "{p3}:dlq"};
    cr_assert_eq(evbus_cluster_same_slot(3, same, NULL, err, sizeof err),
                 (int)evbus_cluster_keyslot("p3", 2));
    const char *cross[] = {"{p3}:stream", "{p4}:retry"};
    cr_assert_eq(evbus_cluster_same_slot(2, cross, NULL, err, sizeof err), EVBUS_CLIENT_EINVAL);
    cr_assert(strstr(err, "CROSSSLOT"), "%s", err);
    cr_assert(strstr(err, "\"{p3}:stream\"") && strstr(err, "\"{p4}:retry\""), "%s", err);
    cr_assert(strstr(err, "hash tag"), "%s", err);
}

static int keys_of(const char *line, int *idx)
{
    static char buf[512];
    static const char *argv[32];
    snprintf(buf, sizeof buf, "%s", line);
    int argc = 0;
    for (char *t = strtok(buf, " "); t && argc < 32; t = strtok(NULL, " "))
        argv[argc++] = t;
    return evbus_cluster_command_keys(argc, argv, NULL, idx, 8);
}

Test(cluster_slots, command_keys_follow_each_commands_layout)
{
    int idx[8];
    cr_assert_eq(keys_of("xadd s * event x", idx), 1);
    cr_assert_eq(idx[0], 1);
    cr_assert_eq(keys_of("XGROUP CREATE s g 0 MKSTREAM", idx), 1);
    cr_assert_eq(idx[0], 2);
    cr_assert_eq(keys_of("EVALSHA abc 2 k1 k2 a1 a2", idx), 2);
    cr_assert(idx[0] == 3 && idx[1] == 4);
    cr_assert_eq(keys_of("EVAL s 0 a1", idx), 0);
    cr_assert_eq(keys_of("XREADGROUP GROUP g c COUNT 10 STREAMS s1 s2 > >", idx), 2);
    cr_assert(idx[0] == 7 && idx[1] == 8);
    cr_assert_eq(keys_of("MSET a 1 b 2", idx), 2);
    cr_assert(idx[0] == 1 && idx[1] == 3);
    cr_assert_eq(keys_of("DEL a b c", idx), 3);
    cr_assert_eq(keys_of("PING", idx), 0);
    cr_assert_eq(keys_of("WAIT 1 100", idx), 0);
    /* not routable: unknown, transactions, malformed */
    cr_assert_eq(keys_of("FOO a", idx), EVBUS_CLIENT_EINVAL);
    cr_assert_eq(keys_of("MULTI", idx), EVBUS_CLIENT_EINVAL);
    cr_assert_eq(keys_of("EVAL s 3 a", idx), EVBUS_CLIENT_EINVAL);
    cr_assert_eq(keys_of("XREAD STREAMS s1 s2 0", idx), EVBUS_CLIENT_EINVAL);
}

Test(cluster_slots, seeds_are_tcp_urls_of_database_0)
{
    char err[300];
    cr_assert_eq(evbus_cluster_seeds_check("redis://127.0.0.1:7000,redis://:pw@h:7001", err,
                                           sizeof err),
                 0, "%s", err);
    cr_assert_eq(evbus_cluster_seeds_check("", err, sizeof err), EVBUS_CLIENT_EINVAL);
    cr_assert_eq(evbus_cluster_seeds_check("redis://a:7000,", err, sizeof err),
                 EVBUS_CLIENT_EINVAL);
    cr_assert(strstr(err, "empty seed"), "%s", err);
    cr_assert_eq(evbus_cluster_seeds_check("unix:///tmp/r.sock", err, sizeof err),
                 EVBUS_CLIENT_EINVAL);
    cr_assert(strstr(err, "redis://"), "%s", err);
    cr_assert_eq(evbus_cluster_seeds_check("redis://a:7000/2", err, sizeof err),
                 EVBUS_CLIENT_EINVAL);
    cr_assert(strstr(err, "database 0"), "%s", err);
    cr_assert_eq(evbus_cluster_seeds_check("redis://a:99999", err, sizeof err),
                 EVBUS_CLIENT_EINVAL);
    cr_assert(strstr(err, "bad port"), "%s", err);
}

/* ---- redirects against fake nodes -------------------------------------- */

/* The script both nodes of a test share: A serves the slots in A's map
 * (all, unless split), B is the other node. */
typedef struct script {
    int port_a, port_b, port_dead;
    int split;       /* A serves 0..8191, B 8192..16383 */
    int strings;     /* CLUSTER SLOTS with string slot numbers */
    int promoted;    /* the map names A for everything (B "failed over") */
    int dead_first;  /* the first map names a dead node */
    int a_get;       /* what A answers to GET: one of the enum below */
    int b_get;
    int limit;       /* how many times A answers a_get before "$1 A" */
    int a_gets;      /* GETs A has answered */
    int a_set_close; /* A closes the connection on SET */
    int moved;       /* A has redirected to B: its map now names B */
} script_t;

enum {
    VALUE = 0,
    MOVED_TO_B,
    MOVED_TO_A,
    ASK_TO_B,
    TRYAGAIN,
    CLUSTERDOWN,
    MOVED_UNLESS_ASKING,
    MOVED_TO_B_NO_HOST
};

static void slots_of(const script_t *s, char *out, size_t len)
{
    if (s->split && !s->promoted) {
        int lo[] = {0, 8192}, hi[] = {8191, 16383}, port[] = {s->port_a, s->port_b};
        fake_slots_reply(out, len, 2, lo, hi, port, s->strings);
    } else {
        int lo[] = {0}, hi[] = {16383};
        int port[] = {s->dead_first && !s->promoted ? s->port_dead
                      : s->moved                    ? s->port_b
                                                    : s->port_a};
        fake_slots_reply(out, len, 1, lo, hi, port, s->strings);
    }
}

static void redirect_text(char *out, size_t len, const char *kind, const char *key, int port)
{
    snprintf(out, len, "-%s %u 127.0.0.1:%d\r\n", kind, evbus_cluster_keyslot(key, strlen(key)),
             port);
}

static int answer(script_t *s, fake_conn_t *conn, int mode, const char *me, int argc,
                  char **argv, char *out, size_t len)
{
    const char *key = argc > 1 ? argv[1] : "";
    switch (mode) {
    case MOVED_TO_B:
        redirect_text(out, len, "MOVED", key, s->port_b);
        s->moved = 1;
        break;
    case MOVED_TO_A:
        redirect_text(out, len, "MOVED", key, s->port_a);
        break;
    case ASK_TO_B:
        redirect_text(out, len, "ASK", key, s->port_b);
        break;
    case MOVED_TO_B_NO_HOST:
        /* a node whose preferred endpoint is unknown names no host */
        snprintf(out, len, "-MOVED %u :%d\r\n", evbus_cluster_keyslot(key, strlen(key)),
                 s->port_b);
        s->moved = 1;
        break;
    case MOVED_UNLESS_ASKING:
        if (conn->asking)
            snprintf(out, len, "$1\r\n%s\r\n", me);
        else
            redirect_text(out, len, "MOVED", key, s->port_a);
        break;
    case TRYAGAIN:
        snprintf(out, len, "-TRYAGAIN Multiple keys request during rehashing of slot\r\n");
        break;
    case CLUSTERDOWN:
        snprintf(out, len, "-CLUSTERDOWN The cluster is down\r\n");
        break;
    default:
        snprintf(out, len, "$1\r\n%s\r\n", me);
    }
    return 0;
}

static int node_a(fake_node_t *n, fake_conn_t *conn, int argc, char **argv, void *state,
                  char *out, size_t len)
{
    (void)n;
    script_t *s = state;
    if (!strcasecmp(argv[0], "CLUSTER")) {
        slots_of(s, out, len);
        return 0;
    }
    if (!strcasecmp(argv[0], "SET") && s->a_set_close) {
        s->a_set_close = 0;
        return 1;
    }
    if (!strcasecmp(argv[0], "GET")) {
        int mode = s->limit && s->a_gets >= s->limit ? VALUE : s->a_get;
        s->a_gets++;
        return answer(s, conn, mode, "A", argc, argv, out, len);
    }
    if (!strcasecmp(argv[0], "SET")) {
        snprintf(out, len, "+A\r\n");
        return 0;
    }
    snprintf(out, len, "-ERR unknown command in the fake node\r\n");
    return 0;
}

static int node_b(fake_node_t *n, fake_conn_t *conn, int argc, char **argv, void *state,
                  char *out, size_t len)
{
    (void)n;
    script_t *s = state;
    if (!strcasecmp(argv[0], "CLUSTER")) {
        slots_of(s, out, len);
        return 0;
    }
    if (!strcasecmp(argv[0], "GET"))
        return answer(s, conn, s->b_get, "B", argc, argv, out, len);
    if (!strcasecmp(argv[0], "SET")) {
        snprintf(out, len, "+B\r\n");
        return 0;
    }
    snprintf(out, len, "-ERR unknown command in the fake node\r\n");
    return 0;
}

static script_t S;
static fake_node_t *A, *B;

static void nodes_up(void)
{
    memset(&S, 0, sizeof S);
    A = fake_node_start(node_a, &S);
    B = fake_node_start(node_b, &S);
    cr_assert(A && B);
    S.port_a = fake_node_port(A);
    S.port_b = fake_node_port(B);
}

static void nodes_down(void)
{
    fake_node_stop(A);
    fake_node_stop(B);
}

static evbus_cluster_t *client(int budget_ms, int max_redirects)
{
    char seeds[64], err[300];
    snprintf(seeds, sizeof seeds, "redis://127.0.0.1:%d", S.port_a);
    evbus_cluster_opts_t o = {.retry_budget_ms = budget_ms, .max_redirects = max_redirects};
    evbus_cluster_t *c = evbus_cluster_new(seeds, &o, err, sizeof err);
    cr_assert(c, "%s", err);
    return c;
}

static redisReply *get(evbus_cluster_t *c, const char *key, char *err, size_t errlen)
{
    const char *argv[] = {"GET", key};
    return evbus_cluster_command(c, 2, argv, NULL, err, errlen);
}

static void assert_value(redisReply *r, const char *want, const char *err)
{
    cr_assert(r, "no reply: %s", err);
    cr_assert_eq(r->type, REDIS_REPLY_STRING, "reply type %d: %s", r->type,
                 r->type == REDIS_REPLY_ERROR ? r->str : "");
    cr_assert_str_eq(r->str, want);
    freeReplyObject(r);
}

static void set_b_is_owner(void *st) { ((script_t *)st)->a_get = MOVED_TO_B; }
static void promote(void *st) { ((script_t *)st)->promoted = 1; }

TestSuite(cluster_redirects, .init = nodes_up, .fini = nodes_down, .timeout = 30);

Test(cluster_redirects, moved_updates_the_map_and_retries_at_the_named_node)
{
    fake_node_with_lock(A, set_b_is_owner, &S);
    evbus_cluster_t *c = client(0, 0);
    char err[400] = "", owner[64];
    assert_value(get(c, "k", err, sizeof err), "B", err);
    /* the map now sends the slot to B: A sees no second GET */
    assert_value(get(c, "k", err, sizeof err), "B", err);
    cr_assert_eq(fake_node_count(A, "GET k"), 1);
    cr_assert_eq(fake_node_count(B, "GET k"), 2);
    cr_assert_eq(evbus_cluster_slot_owner(c, evbus_cluster_keyslot("k", 1), owner, sizeof owner),
                 0);
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%d", S.port_b);
    cr_assert_str_eq(owner, want);
    evbus_cluster_stats_t st;
    evbus_cluster_stats(c, &st);
    cr_assert_eq(st.moved, 1);
    evbus_cluster_free(c);
}

Test(cluster_redirects, a_moved_without_a_host_means_the_host_that_answered)
{
    S.a_get = MOVED_TO_B_NO_HOST;
    evbus_cluster_t *c = client(0, 0);
    char err[400] = "";
    assert_value(get(c, "k", err, sizeof err), "B", err);
    cr_assert_eq(fake_node_count(B, "GET k"), 1);
    evbus_cluster_free(c);
}

Test(cluster_redirects, ask_sends_asking_then_the_command_once_and_keeps_the_map)
{
    S.a_get = ASK_TO_B;
    S.b_get = MOVED_UNLESS_ASKING;
    evbus_cluster_t *c = client(0, 0);
    char err[400] = "", owner[64], want[64];
    assert_value(get(c, "k", err, sizeof err), "B", err);
    cr_assert_eq(fake_node_count(B, "ASKING"), 1);
    cr_assert_eq(fake_node_count(B, "GET k"), 1);
    /* no map change: the next command starts at A again */
    assert_value(get(c, "k", err, sizeof err), "B", err);
    cr_assert_eq(fake_node_count(A, "GET k"), 2);
    cr_assert_eq(fake_node_count(B, "ASKING"), 2);
    snprintf(want, sizeof want, "127.0.0.1:%d", S.port_a);
    evbus_cluster_slot_owner(c, evbus_cluster_keyslot("k", 1), owner, sizeof owner);
    cr_assert_str_eq(owner, want);
    evbus_cluster_stats_t st;
    evbus_cluster_stats(c, &st);
    cr_assert_eq(st.ask, 2);
    cr_assert_eq(st.moved, 0);
    evbus_cluster_free(c);
}

Test(cluster_redirects, tryagain_is_retried_after_a_backoff)
{
    S.a_get = TRYAGAIN;
    S.limit = 2;
    evbus_cluster_t *c = client(0, 0);
    char err[400] = "";
    assert_value(get(c, "k", err, sizeof err), "A", err);
    cr_assert_eq(fake_node_count(A, "GET k"), 3);
    evbus_cluster_stats_t st;
    evbus_cluster_stats(c, &st);
    cr_assert_eq(st.tryagain, 2);
    evbus_cluster_free(c);
}

Test(cluster_redirects, clusterdown_is_retried_with_the_map_read_again)
{
    S.a_get = CLUSTERDOWN;
    S.limit = 1;
    evbus_cluster_t *c = client(0, 0);
    char err[400] = "";
    assert_value(get(c, "k", err, sizeof err), "A", err);
    cr_assert_eq(fake_node_count(A, "GET k"), 2);
    cr_assert_eq(fake_node_count(A, "CLUSTER SLOTS"), 2, "the map is read again");
    evbus_cluster_stats_t st;
    evbus_cluster_stats(c, &st);
    cr_assert_eq(st.clusterdown, 1);
    evbus_cluster_free(c);
}

Test(cluster_redirects, tryagain_gives_up_when_the_budget_is_spent_naming_the_node)
{
    S.a_get = TRYAGAIN;
    evbus_cluster_t *c = client(200, 0);
    char err[400] = "", node[64];
    cr_assert_null(get(c, "k", err, sizeof err));
    snprintf(node, sizeof node, "redis 127.0.0.1:%d: TRYAGAIN", S.port_a);
    cr_assert(strstr(err, node), "%s", err);
    cr_assert(strstr(err, "GET (slot "), "%s", err);
    cr_assert(strstr(err, "retry budget"), "%s", err);
    cr_assert_eq(evbus_cluster_errcode(c), EVBUS_CLIENT_EREDIS, "the cluster's failure");
    cr_assert_gt(fake_node_count(A, "GET k"), 2);
    cr_assert_str_eq(evbus_cluster_error(c), err);
    evbus_cluster_free(c);
}

Test(cluster_redirects, a_redirect_loop_stops_at_the_limit)
{
    S.a_get = MOVED_TO_B;
    S.b_get = MOVED_TO_A;
    evbus_cluster_t *c = client(0, 5);
    char err[400] = "";
    cr_assert_null(get(c, "k", err, sizeof err));
    cr_assert(strstr(err, "more than 5 redirects"), "%s", err);
    cr_assert(strstr(err, "MOVED"), "%s", err);
    cr_assert_eq(fake_node_count(A, "GET k") + fake_node_count(B, "GET k"), 6);
    evbus_cluster_free(c);
}

Test(cluster_redirects, crossslot_is_refused_before_anything_is_sent)
{
    evbus_cluster_t *c = client(0, 0);
    char err[400] = "";
    const char *cross[] = {"EVAL", "return 1", "2", "{a}x", "{b}x"};
    cr_assert_eq(evbus_cluster_errcode(c), 0);
    cr_assert_null(evbus_cluster_command(c, 5, cross, NULL, err, sizeof err));
    cr_assert(strstr(err, "CROSSSLOT refused before sending"), "%s", err);
    cr_assert_eq(evbus_cluster_errcode(c), EVBUS_CLIENT_EINVAL, "the caller's input");
    cr_assert_eq(fake_node_count(A, NULL), 0, "nothing reached the node");
    cr_assert_eq(fake_node_count(B, NULL), 0);
    const char *unknown[] = {"FROB", "k"};
    cr_assert_null(evbus_cluster_command(c, 2, unknown, NULL, err, sizeof err));
    cr_assert(strstr(err, "FROB: not a command the cluster client can route"), "%s", err);
    cr_assert_eq(fake_node_count(A, NULL), 0);
    evbus_cluster_free(c);
}

Test(cluster_redirects, slot_numbers_given_as_strings_are_accepted)
{
    S.split = 1;
    S.strings = 1;
    evbus_cluster_t *c = client(0, 0);
    char err[400] = "", owner[64], want[64];
    cr_assert_eq(evbus_cluster_refresh(c, err, sizeof err), 0, "%s", err);
    snprintf(want, sizeof want, "127.0.0.1:%d", S.port_b);
    cr_assert_eq(evbus_cluster_slot_owner(c, 16383, owner, sizeof owner), 0);
    cr_assert_str_eq(owner, want);
    snprintf(want, sizeof want, "127.0.0.1:%d", S.port_a);
    evbus_cluster_slot_owner(c, 0, owner, sizeof owner);
    cr_assert_str_eq(owner, want);
    cr_assert_eq(evbus_cluster_master(c, 1, owner, sizeof owner), 0);
    cr_assert_eq(evbus_cluster_master(c, 2, owner, sizeof owner), -1, "two masters");
    evbus_cluster_free(c);
}

Test(cluster_redirects, an_unreachable_master_makes_the_map_be_read_again)
{
    /* the first map names a node that is down (a master that died); the
     * next map names A (its replica, promoted) */
    int fd_port;
    {
        fake_node_t *gone = fake_node_start(node_b, &S);
        fd_port = fake_node_port(gone);
        fake_node_stop(gone);
    }
    S.port_dead = fd_port;
    S.dead_first = 1;
    evbus_cluster_t *c = client(2000, 0);
    char err[400] = "";
    cr_assert_eq(evbus_cluster_refresh(c, err, sizeof err), 0, "%s", err);
    fake_node_with_lock(A, promote, &S);
    assert_value(get(c, "k", err, sizeof err), "A", err);
    evbus_cluster_stats_t st;
    evbus_cluster_stats(c, &st);
    cr_assert_geq(st.conn_errors, 1);
    cr_assert_eq(st.refreshes, 2);
    evbus_cluster_free(c);
}

Test(cluster_redirects, a_lost_reply_is_not_retried_and_the_next_command_reconnects)
{
    S.a_set_close = 1;
    evbus_cluster_t *c = client(0, 0);
    char err[400] = "";
    const char *set[] = {"SET", "k", "v"};
    cr_assert_null(evbus_cluster_command(c, 3, set, NULL, err, sizeof err));
    cr_assert(strstr(err, "reply is lost"), "%s", err);
    cr_assert_eq(fake_node_count(A, "SET k"), 1, "not resent");
    redisReply *r = evbus_cluster_command(c, 3, set, NULL, err, sizeof err);
    cr_assert(r && r->type == REDIS_REPLY_STATUS, "%s", err);
    cr_assert_str_eq(r->str, "A");
    freeReplyObject(r);
    evbus_cluster_free(c);
}

Test(cluster_redirects, a_pipeline_groups_commands_by_node_and_keeps_append_order)
{
    S.split = 1;
    evbus_cluster_t *c = client(0, 0);
    evbus_cluster_pipe_t *p = evbus_cluster_pipe_new(c);
    char err[400] = "";
    const char *keys[12];
    char names[12][16];
    for (int i = 0; i < 12; i++) {
        snprintf(names[i], sizeof names[i], "key%d", i);
        keys[i] = names[i];
        const char *set[] = {"SET", keys[i], "v"};
        cr_assert_eq(evbus_cluster_pipe_append(p, 3, set, NULL, err, sizeof err), 0, "%s", err);
    }
    const char *cross[] = {"DEL", "{a}", "{b}"};
    cr_assert_eq(evbus_cluster_pipe_append(p, 3, cross, NULL, err, sizeof err),
                 EVBUS_CLIENT_EINVAL);
    cr_assert_eq(evbus_cluster_pipe_exec(p, err, sizeof err), 0, "%s", err);
    cr_assert_eq(evbus_cluster_pipe_count(p), 12);
    size_t on_a = 0;
    for (int i = 0; i < 12; i++) {
        redisReply *r = evbus_cluster_pipe_reply(p, (size_t)i);
        cr_assert(r && r->type == REDIS_REPLY_STATUS);
        const char *want = evbus_cluster_keyslot(keys[i], strlen(keys[i])) < 8192 ? "A" : "B";
        cr_assert_str_eq(r->str, want, "%s", keys[i]);
        on_a += *want == 'A';
    }
    cr_assert(on_a > 0 && on_a < 12, "the keys spread over both nodes");
    cr_assert_eq(fake_node_count(A, "SET"), on_a);
    cr_assert_eq(fake_node_count(B, "SET"), 12 - on_a);
    evbus_cluster_pipe_free(p);
    evbus_cluster_free(c);
}

Test(cluster_redirects, a_pipeline_runs_an_unreachable_nodes_commands_after_reading_the_map)
{
    S.split = 1;
    evbus_cluster_t *c = client(2000, 0);
    char err[400] = "";
    cr_assert_eq(evbus_cluster_refresh(c, err, sizeof err), 0, "%s", err);
    /* B dies; A took its slots over */
    fake_node_stop(B);
    B = fake_node_start(node_b, &S); /* for nodes_down; a new port nobody uses */
    fake_node_with_lock(A, promote, &S);
    evbus_cluster_pipe_t *p = evbus_cluster_pipe_new(c);
    for (int i = 0; i < 8; i++) {
        char k[16];
        snprintf(k, sizeof k, "key%d", i);
        const char *set[] = {"SET", k, "v"};
        evbus_cluster_pipe_append(p, 3, set, NULL, err, sizeof err);
    }
    cr_assert_eq(evbus_cluster_pipe_exec(p, err, sizeof err), 0, "%s",
                 evbus_cluster_pipe_error(p, 0));
    for (size_t i = 0; i < 8; i++)
        cr_assert_str_eq(evbus_cluster_pipe_reply(p, i)->str, "A");
    cr_assert_eq(fake_node_count(A, "SET"), 8);
    evbus_cluster_stats_t st;
    evbus_cluster_stats(c, &st);
    cr_assert_eq(st.refreshes, 2);
    evbus_cluster_pipe_free(p);
    evbus_cluster_free(c);
}

Test(cluster_redirects, a_redirected_pipeline_command_is_run_again_alone)
{
    S.a_get = MOVED_TO_B;
    evbus_cluster_t *c = client(0, 0);
    evbus_cluster_pipe_t *p = evbus_cluster_pipe_new(c);
    char err[400] = "";
    const char *get1[] = {"GET", "k"};
    const char *set1[] = {"SET", "k", "v"};
    evbus_cluster_pipe_append(p, 2, get1, NULL, err, sizeof err);
    evbus_cluster_pipe_append(p, 3, set1, NULL, err, sizeof err);
    cr_assert_eq(evbus_cluster_pipe_exec(p, err, sizeof err), 0, "%s", err);
    redisReply *r = evbus_cluster_pipe_reply(p, 0);
    cr_assert(r && r->type == REDIS_REPLY_STRING);
    cr_assert_str_eq(r->str, "B");
    cr_assert_str_eq(evbus_cluster_pipe_reply(p, 1)->str, "A", "SET was not redirected");
    evbus_cluster_pipe_free(p);
    evbus_cluster_free(c);
}
