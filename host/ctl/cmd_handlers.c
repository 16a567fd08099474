/*
 * evbusctl handlers — the handler instances of the configuration and their
 * pause state, and pausing or resuming one of them.
 *
 *   evbusctl handlers list [--json]
 *   evbusctl handlers pause INSTANCE [--reason TEXT] [--by NAME] [--json]
 *   evbusctl handlers resume INSTANCE [--json]
 *
 * The pause state is the hash <stream>:paused in Redis (with partitions,
 * one copy per partition, {S:p}:paused, all written, partition 0's read),
 * written through libevbus (evbus_handler_pause / evbus_handler_resume),
 * so this works with evbusd running or not; every running evbusd picks the
 * change up within a poll (docs/operations.md, "Pausing a handler").  The
 * instance names come from the configuration directory: evbusctl refuses
 * to pause a name it does not configure, the same rule the admin API
 * applies to the running generation.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/evbus_client.h"
#include "client/partition.h"
#include "ctl/ctl.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: evbusctl handlers list [--json]\n"
            "       evbusctl handlers pause INSTANCE [--reason TEXT] [--by NAME] [--json]\n"
            "       evbusctl handlers resume INSTANCE [--json]\n\n"
            "list: every handler instance of the configuration (plugin instances and foreign\n"
            "handlers) with its subscriptions, whether it is paused (since when, by whom, why)\n"
            "and how many deliveries wait for it in the retry schedule.\n"
            "pause: stop calling INSTANCE on every evbusd of the stream.  Its deliveries go\n"
            "to the retry schedule without spending an attempt; other handlers keep running.\n"
            "The pause lasts across restarts and reloads until `resume`.  --by defaults to\n"
            "evbusctl:$USER.\n"
            "resume: call INSTANCE again; its deferred deliveries are due at once.\n"
            "Exit status: 0 done (also when already in that state), 1 Redis failed,\n"
            "2 usage, unknown instance or no configuration.\n");
}

/* The configured instance names, plugin instances first. */
static size_t configured(const evbus_config_t *cfg, const char **names, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; cfg && i < cfg->n_instances && n < cap; i++)
        names[n++] = cfg->instances[i].name;
    for (size_t i = 0; cfg && i < cfg->n_foreign && n < cap; i++)
        names[n++] = cfg->foreign[i].name;
    return n;
}

static bool is_configured(const evbus_config_t *cfg, const char *instance)
{
    const char *names[512];
    size_t n = configured(cfg, names, 512);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(names[i], instance))
            return true;
    return false;
}

static int unknown_instance(const ctl_env_t *env, const char *instance)
{
    const char *names[512];
    size_t n = configured(env->cfg, names, 512);
    char list[600] = "";
    size_t used = 0;
    for (size_t i = 0; i < n && used < sizeof list; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
                                 names[i]);
    return ctl_usage_error("handlers", "no handler instance '%s' in %s (instances: %s)", instance,
                           env->conf_dir, n ? list : "none");
}

/* A client for the command, with in *r the connection of partition 0's
 * stream (whose pause copy evbusd reads), or NULL after saying why (*rc
 * set).  On a Redis Cluster each partition's keys are on their own node:
 * the commands of partition p go to evbus_client_redis_key(c, streams[p]). */
static evbus_client_t *open_client(const ctl_env_t *env, redisContext **r, int *rc)
{
    if (!env->redis_url && !env->redis_cluster) {
        *rc = ctl_no_config("handlers", "Redis", "--redis URL (or EVBUS_REDIS_URL)");
        return NULL;
    }
    char err[256];
    evbus_client_t *c = ctl_client(env, err, sizeof err);
    if (!c) {
        *rc = ctl_usage_error("handlers", "%s", err);
        return NULL;
    }
    char first[600];
    evbus_partition_key_name(first, sizeof first, env->stream, 0, env->partitions > 1, "");
    if (!(*r = evbus_client_redis_key(c, first))) {
        *rc = ctl_fail("handlers", "%s", evbus_client_error(c));
        evbus_client_free(c);
        return NULL;
    }
    return c;
}

/*
 * The streams whose pause copy and retry schedule a command touches: the
 * stream itself, or with partitions each partition's {S:p}, partition 0's
 * first (evbusd reads that copy; docs/scale-out.md).  NULL when memory
 * runs out; free with free_streams.
 */
static char **pause_streams(const ctl_env_t *env)
{
    unsigned n = env->partitions;
    char **v = calloc(n, sizeof *v);
    for (unsigned p = 0; v && p < n; p++) {
        int len = evbus_partition_key_name(NULL, 0, env->stream, p, n > 1, "");
        if (len < 0 || !(v[p] = malloc((size_t)len + 1))) {
            for (unsigned k = 0; k < p; k++)
                free(v[k]);
            free(v);
            return NULL;
        }
        evbus_partition_key_name(v[p], (size_t)len + 1, env->stream, p, n > 1, "");
    }
    return v;
}

static void free_streams(char **v, unsigned n)
{
    for (unsigned p = 0; v && p < n; p++)
        free(v[p]);
    free(v);
}

/* Parked deliveries per instance, added up over every stream. */
static json_t *parked_counts(evbus_client_t *c, char **streams, unsigned n, char *err,
                             size_t len)
{
    json_t *sum = json_object();
    for (unsigned p = 0; p < n; p++) {
        redisContext *r = evbus_client_redis_key(c, streams[p]);
        json_t *one = r ? evbus_retry_parked_counts(r, streams[p], err, len) : NULL;
        if (!r)
            snprintf(err, len, "%s", evbus_client_error(c));
        if (!one) {
            json_decref(sum);
            return NULL;
        }
        const char *k;
        json_t *v;
        json_object_foreach(one, k, v)
            json_object_set_new(sum, k, json_integer(json_integer_value(json_object_get(sum, k)) +
                                                     json_integer_value(v)));
        json_decref(one);
    }
    return sum;
}

static void print_json(json_t *doc)
{
    char *s = json_dumps(doc, JSON_COMPACT);
    printf("%s\n", s ? s : "null");
    free(s);
}

static const char *str(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

/* One row of `list --json`: instance, kind, configured, subscriptions
 * (patterns; null for a plugin instance that takes its plugin's own),
 * paused (record or null), deferred (parked entries). */
static json_t *row(const char *name, const char *kind, const cfg_subscription_t *subs,
                   size_t n_subs, const json_t *pauses, const json_t *parked)
{
    json_t *patterns = subs ? json_array() : json_null();
    for (size_t i = 0; i < n_subs; i++)
        json_array_append_new(patterns, json_string(subs[i].pattern));
    json_t *rec = json_object_get(pauses, name);
    return json_pack("{s:s, s:s?, s:b, s:o, s:O, s:I}", "instance", name, "kind", kind,
                     "configured", kind != NULL, "subscriptions", patterns, "paused",
                     rec ? rec : json_null(), "deferred",
                     (json_int_t)json_integer_value(json_object_get(parked, name)));
}

static int list(int argc, char **argv)
{
    bool json = false;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = true;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return CTL_OK;
        } else
            return ctl_usage_error("handlers", "unexpected argument '%s'", argv[i]);
    }
    const ctl_env_t *env = ctl_env();
    int rc = CTL_OK;
    redisContext *r;
    evbus_client_t *c = open_client(env, &r, &rc);
    if (!c)
        return rc;
    char err[256];
    char **streams = pause_streams(env);
    if (!streams) {
        evbus_client_free(c);
        return ctl_fail("handlers", "out of memory");
    }
    json_t *pauses = evbus_handler_pauses(r, streams[0], err, sizeof err);
    json_t *parked = pauses ? parked_counts(c, streams, env->partitions, err, sizeof err) : NULL;
    free_streams(streams, env->partitions);
    evbus_client_free(c);
    if (!pauses || !parked) {
        json_decref(pauses);
        return ctl_fail("handlers", "%s", err);
    }
    json_t *rows = json_array();
    const evbus_config_t *cfg = env->cfg;
    for (size_t i = 0; cfg && i < cfg->n_instances; i++)
        json_array_append_new(rows, row(cfg->instances[i].name, "plugin", cfg->instances[i].subs,
                                        cfg->instances[i].n_subs, pauses, parked));
    for (size_t i = 0; cfg && i < cfg->n_foreign; i++)
        json_array_append_new(rows, row(cfg->foreign[i].name, "foreign", cfg->foreign[i].subs,
                                        cfg->foreign[i].n_subs, pauses, parked));
    /* paused names the configuration does not have: a stale pause, shown
     * so that it can be resumed */
    const char *name;
    json_t *rec;
    json_object_foreach(pauses, name, rec)
        if (!is_configured(cfg, name))
            json_array_append_new(rows, row(name, NULL, NULL, 0, pauses, parked));
    if (json) {
        json_t *doc = json_pack("{s:s, s:O}", "stream", env->stream, "instances", rows);
        print_json(doc);
        json_decref(doc);
    } else {
        printf("%-24s %-8s %-7s %8s  %s\n", "INSTANCE", "KIND", "STATE", "DEFERRED",
               "SUBSCRIPTIONS");
        size_t i;
        json_t *it;
        json_array_foreach(rows, i, it)
        {
            char subs[256] = "";
            size_t used = 0, k;
            json_t *p, *ps = json_object_get(it, "subscriptions");
            json_array_foreach(ps, k, p)
                used += (size_t)snprintf(subs + used, used < sizeof subs ? sizeof subs - used : 0,
                                         "%s%s", k ? " " : "", json_string_value(p));
            const json_t *pr = json_object_get(it, "paused");
            printf("%-24s %-8s %-7s %8lld  %s\n", str(it, "instance"),
                   json_is_string(json_object_get(it, "kind")) ? str(it, "kind") : "-",
                   json_is_object(pr) ? "paused" : "running",
                   (long long)json_integer_value(json_object_get(it, "deferred")),
                   json_is_array(ps) ? subs
                   : json_is_true(json_object_get(it, "configured")) ? "(the plugin's own)"
                                                                      : "(not configured)");
            if (json_is_object(pr))
                printf("  paused since %s by %s%s%s\n", str(pr, "since"),
                       str(pr, "by")[0] ? str(pr, "by") : "?", str(pr, "reason")[0] ? ": " : "",
                       str(pr, "reason"));
        }
    }
    json_decref(rows);
    json_decref(pauses);
    json_decref(parked);
    return CTL_OK;
}

static int change_in(const ctl_env_t *env, char **streams, const char *instance, bool pause,
                     const char *by, const char *reason, bool json);

static int change(int argc, char **argv, bool pause)
{
    const char *instance = NULL, *reason = NULL, *by = NULL;
    bool json = false;
    for (int i = 2; i < argc; i++) {
        const char *v;
        int m = pause ? ctl_opt_value(argc, argv, &i, "--reason", &v) : 0;
        if (m < 0)
            return ctl_usage_error("handlers", "--reason needs a text");
        if (m) {
            reason = v;
            continue;
        }
        m = pause ? ctl_opt_value(argc, argv, &i, "--by", &v) : 0;
        if (m < 0)
            return ctl_usage_error("handlers", "--by needs a name");
        if (m)
            by = v;
        else if (!strcmp(argv[i], "--json"))
            json = true;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return CTL_OK;
        } else if (argv[i][0] == '-' || instance)
            return ctl_usage_error("handlers", "unexpected argument '%s'", argv[i]);
        else
            instance = argv[i];
    }
    if (!instance)
        return ctl_usage_error("handlers", "%s needs the INSTANCE (see `evbusctl handlers list`)",
                               argv[1]);
    if (evbus_handler_name_check(instance) != 0)
        return ctl_usage_error("handlers", "'%s' is not an instance name (1 to 64 characters of "
                                           "a-z A-Z 0-9 _ - .)", instance);
    const ctl_env_t *env = ctl_env();
    if (!env->cfg)
        return ctl_no_config("handlers", "the handler instances", "-c DIR");
    char **streams = pause_streams(env);
    if (!streams)
        return ctl_fail("handlers", "out of memory");
    int rc = change_in(env, streams, instance, pause, by, reason, json);
    free_streams(streams, env->partitions);
    return rc;
}

/* change() once the arguments are checked: on every stream of `streams`
 * (pause_streams), partition 0's first. */
static int change_in(const ctl_env_t *env, char **streams, const char *instance, bool pause,
                     const char *by, const char *reason, bool json)
{
    int rc = CTL_OK;
    redisContext *r;
    evbus_client_t *c = NULL;
    char err[256];
    json_t *pauses = NULL;
    if (!is_configured(env->cfg, instance)) {
        /* resuming a paused name the configuration dropped is allowed: it
         * is how a stale pause is cleared */
        if (pause)
            return unknown_instance(env, instance);
        if (!(c = open_client(env, &r, &rc)))
            return rc;
        pauses = evbus_handler_pauses(r, streams[0], err, sizeof err);
        if (!pauses) {
            evbus_client_free(c);
            return ctl_fail("handlers", "%s", err);
        }
        bool paused = json_object_get(pauses, instance) != NULL;
        json_decref(pauses);
        pauses = NULL;
        if (!paused) {
            evbus_client_free(c);
            return unknown_instance(env, instance);
        }
    } else if (!(c = open_client(env, &r, &rc))) {
        return rc;
    }
    char who[160];
    if (!by) {
        const char *user = getenv("USER");
        snprintf(who, sizeof who, "evbusctl:%s", user && *user ? user : "?");
        by = who;
    }
    long long released = 0;
    int changed = 0;
    for (unsigned p = 0; p < env->partitions && changed >= 0; p++) {
        long long k = 0;
        /* each partition's copy on its own node (on one server: r) */
        redisContext *rp = evbus_client_redis_key(c, streams[p]);
        int prc = -1;
        if (!rp)
            snprintf(err, sizeof err, "%s", evbus_client_error(c));
        else
            prc = pause ? evbus_handler_pause(rp, streams[p], instance, by, reason, err,
                                              sizeof err)
                        : evbus_handler_resume(rp, streams[p], instance, &k, err, sizeof err);
        released += k;
        if (p == 0 || prc < 0)
            changed = prc;
    }
    if (changed >= 0 && pause && !(r = evbus_client_redis_key(c, streams[0]))) {
        snprintf(err, sizeof err, "%s", evbus_client_error(c));
        changed = -1;
    }
    if (changed >= 0 && pause)
        pauses = evbus_handler_pauses(r, streams[0], err, sizeof err);
    evbus_client_free(c);
    if (changed < 0 || (pause && !pauses))
        return ctl_fail("handlers", "%s", err);
    json_t *rec = pause ? json_object_get(pauses, instance) : NULL;
    if (json) {
        json_t *doc = json_pack("{s:s, s:b, s:b}", "instance", instance, "paused", pause,
                                "changed", changed == 1);
        if (pause)
            json_object_set(doc, "record", rec ? rec : json_null());
        else
            json_object_set_new(doc, "released", json_integer(released));
        print_json(doc);
        json_decref(doc);
    } else if (pause) {
        printf("%s %s paused (since %s by %s); its deliveries wait in the retry schedule\n",
               instance, changed == 1 ? "is now" : "was already", str(rec, "since"),
               str(rec, "by"));
    } else if (changed == 1) {
        printf("%s resumed; %lld deferred deliver%s due now\n", instance, released,
               released == 1 ? "y is" : "ies are");
    } else {
        printf("%s was not paused%s\n", instance,
               released ? "; stale parked deliveries were released" : "");
    }
    json_decref(pauses);
    return rc;
}

int cmd_handlers(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CTL_USAGE : CTL_OK;
    }
    if (!strcmp(argv[1], "list"))
        return list(argc, argv);
    if (!strcmp(argv[1], "pause"))
        return change(argc, argv, true);
    if (!strcmp(argv[1], "resume"))
        return change(argc, argv, false);
    return ctl_usage_error("handlers", "unknown subcommand '%s' (list | pause | resume)",
                           argv[1]);
}
