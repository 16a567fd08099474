/*
 * The engine's pause API, as the admin API's routes call it: an engine
 * built in this process from a real conf.d (the testkit plugin, instance
 * "rec") against a private redis-server.  engine_handler_pause takes
 * effect on this host before it returns, writes the state where every
 * other host and evbusctl read it, refuses names the generation lacks, and
 * a resume delivers what waited.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/engine.h"
#include "core/stats.h"
#include "core/event.h"
#include "core/generation.h"
#include "fixture.h"

static fx_t F;
static engine_t *E;
static char rec_path[700];

static void setup(void)
{
    fx_start(&F, false);
    fx_host_conf(&F, "c1", NULL);
    fx_path(&F, "rec.tsv", rec_path, sizeof rec_path);
    char plugins[2048];
    snprintf(plugins, sizeof plugins,
             "plugins:\n"
             "  - name: rec\n"
             "    plugin: %s\n"
             "    config: { out: %s }\n"
             "    subscriptions:\n"
             "      - { pattern: \"test.**\" }\n",
             fx_plugin("plugins/testkit/testkit.so"), rec_path);
    fx_conf(&F, "10-plugins.yaml", plugins);
    generation_t *gen = NULL;
    cfg_errors_t errs = {0};
    int rc = generation_build(F.conf, NULL, 1, false, &gen, &errs);
    cr_assert_eq(rc, 0, "generation: %s", errs.count ? errs.msgs[0] : "?");
    cfg_errors_free(&errs);
    event_host_api_configure(gen->cfg->core.redis_url, NULL, gen->cfg->core.stream, 1);
    char err[512];
    E = engine_new(gen, NULL, err, sizeof err);
    cr_assert_not_null(E, "%s", err);
    cr_assert_eq(engine_start(E, err, sizeof err), 0, "%s", err);
}

static void teardown(void)
{
    if (E) {
        engine_stop(E, 10000);
        engine_free(E);
        generation_reap();
    }
    E = NULL;
    fx_stop(&F);
}

TestSuite(pause_engine, .init = setup, .fini = teardown, .timeout = 60);

static long long parked(void)
{
    redisContext *c = harness_redis_connect(&F.redis);
    long long n = harness_redis_int(c, "ZCOUNT t:events:retry 1000000000000000 +inf");
    redisFree(c);
    return n;
}

static bool five_parked(void *ud)
{
    (void)ud;
    return parked() == 5;
}

Test(pause_engine, pause_holds_at_once_and_resume_delivers_what_waited)
{
    char err[512] = "";
    cr_assert_eq(engine_handler_pause(E, "rec", true, "oncall", NULL, err, sizeof err), 0, "%s", err);
    /* on this host before the call returns: no poll to wait for */
    json_t *p = engine_paused_json(E);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(p, "rec"), "by")),
                     "oncall");
    json_decref(p);
    /* and in Redis, for the other hosts and evbusctl */
    redisContext *c = harness_redis_connect(&F.redis);
    cr_assert_eq(harness_redis_int(c, "HEXISTS t:events:paused rec"), 1);
    redisFree(c);
    json_t *h = engine_health(E);
    cr_expect(json_object_get(json_object_get(h, "paused"), "rec"), "health lacks the pause");
    json_decref(h);
    json_t *list = engine_handlers_json(E),
           *first = json_array_get(json_object_get(list, "handlers"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(first, "instance")), "rec");
    cr_expect(json_is_object(json_object_get(first, "paused")));
    cr_expect_str_eq(json_string_value(json_object_get(first, "state")), "paused");
    cr_expect_str_eq(json_string_value(json_object_get(
                         json_array_get(json_object_get(first, "subscriptions"), 0), "handler")),
                     "rec/record");
    json_decref(list);

    fx_publish(&F, "e", 5, "test.engine.paused", "t1", "{}");
    cr_assert(harness_wait_until(five_parked, NULL, 10000), "parked: %lld", parked());
    cr_expect_eq(harness_count_lines(rec_path), 0, "a paused handler was called");

    /* a second pause is no error and keeps the first record */
    cr_expect_eq(engine_handler_pause(E, "rec", true, "someone-else", NULL, err, sizeof err), 0);
    p = engine_paused_json(E);
    cr_expect_str_eq(json_string_value(json_object_get(json_object_get(p, "rec"), "by")),
                     "oncall");
    json_decref(p);

    cr_assert_eq(engine_handler_pause(E, "rec", false, "oncall", NULL, err, sizeof err), 0, "%s", err);
    p = engine_paused_json(E);
    cr_expect_eq(json_object_size(p), 0);
    json_decref(p);
    cr_assert(fx_wait_lines(rec_path, 5, 10000), "rec saw %zu of 5",
              harness_count_lines(rec_path));
    cr_expect_eq(parked(), 0);
}

Test(pause_engine, an_instance_the_generation_lacks_is_refused)
{
    char err[512] = "";
    cr_expect_eq(engine_handler_pause(E, "nope", true, "oncall", NULL, err, sizeof err), -2);
    cr_expect(strstr(err, "no handler instance 'nope'") && strstr(err, "rec"), "err: %s", err);
    cr_expect_eq(engine_handler_pause(E, "nope", false, "oncall", NULL, err, sizeof err), -2);
    cr_expect_eq(engine_handler_pause(E, "../x", true, "oncall", NULL, err, sizeof err), -2);
    cr_expect(strstr(err, "not an instance name"), "err: %s", err);
    redisContext *c = harness_redis_connect(&F.redis);
    cr_expect_eq(harness_redis_int(c, "EXISTS t:events:paused"), 0);
    redisFree(c);
}
