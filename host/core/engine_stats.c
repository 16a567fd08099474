/*
 * engine_stats — the admin API's documents about a running engine
 * (engine_stats_json, engine_handlers_json; see stats.h).  It only reads:
 * the stats table, the sampled gauges of util/metrics and a pinned
 * generation.  It never talks to Redis: the maintenance thread samples
 * what Redis knows, so a busy admin API adds no load on the dispatch path's
 * server.
 */
#include "core/stats.h"

#include <string.h>

#include "util/metrics.h"

/* A sampled gauge in its unit, or null when it was not read. */
static json_t *sampled(int64_t v, double scale)
{
    if (v == METRICS_UNSET)
        return json_null();
    return scale == 1 ? json_integer((json_int_t)v) : json_real((double)v / scale);
}

json_t *engine_stats_json(engine_t *e, const char *tenant)
{
    json_t *out = stats_json(engine__stats(e), tenant);
    int64_t lag = SAMPLED_GET(consumer_lag);
    json_object_set_new(out, "consumer_group",
                        json_pack("{s:o, s:b, s:o, s:o}", "lag", sampled(lag, 1), "lag_known",
                                  lag != METRICS_UNSET, "pending",
                                  sampled(SAMPLED_GET(pending), 1), "oldest_pending_age_s",
                                  sampled(SAMPLED_GET(oldest_pending_age_ms), 1000)));
    json_object_set_new(out, "dlq",
                        json_pack("{s:o, s:I, s:o}", "entries",
                                  sampled(SAMPLED_GET(dlq_entries), 1), "capacity",
                                  (json_int_t)METRIC_GET(dlq_capacity), "ratio",
                                  sampled(SAMPLED_GET(dlq_capacity_ratio_ppm), 1000000)));
    json_object_set_new(out, "retries_scheduled", sampled(SAMPLED_GET(retry_scheduled), 1));
    return out;
}

json_t *engine_stats_history_json(engine_t *e, const char *tenant)
{
    return stats_history_json(engine__history(e), engine__stats(e), tenant,
                              engine__history_period_ms(e));
}

/* The instance's entry in list, created on first use. */
static json_t *instance_entry(json_t *list, const gen_handler_t *h)
{
    bool plugin = h->kind == GEN_HANDLER_PLUGIN;
    const char *name = plugin ? plugin_instance_name(h->inst) : h->name;
    size_t i;
    json_t *it;
    json_array_foreach(list, i, it)
    {
        if (!strcmp(json_string_value(json_object_get(it, "instance")), name))
            return it;
    }
    const char *lib =
        plugin ? plugin_lib_descriptor(plugin_instance_lib(h->inst))->name : NULL;
    metrics_handler_counts_t c;
    metrics_handler_read(h->metrics_slot, &c);
    json_t *counters = json_object();
    for (int o = 0; o < METRICS_N_OUTCOMES; o++)
        json_object_set_new(counters, metrics_outcome_name(o),
                            json_integer((json_int_t)c.outcome[o]));
    it = json_pack("{s:s, s:s, s:o, s:[], s:o, s:{s:I, s:f}}", "instance", name, "kind",
                   plugin ? "plugin" : "foreign", "plugin", lib ? json_string(lib) : json_null(),
                   "subscriptions", "counters", counters, "duration", "count",
                   (json_int_t)c.duration_count, "sum_s", (double)c.duration_sum_ms / 1000.0);
    json_array_append_new(list, it);
    return it;
}

json_t *engine_handlers_json(engine_t *e)
{
    json_t *paused = engine_paused_json(e);
    generation_t *g = engine_current(e);
    json_t *list = json_array();
    for (size_t i = 0; i < g->n_handlers; i++) {
        const gen_handler_t *h = &g->handlers[i];
        json_t *it = instance_entry(list, h);
        json_array_append_new(
            json_object_get(it, "subscriptions"),
            json_pack("{s:o, s:s, s:s, s:i, s:i, s:i}", "subscriber",
                      h->kind == GEN_HANDLER_PLUGIN ? json_string(h->sub->name) : json_null(),
                      "handler", h->name, "pattern", h->pattern ? h->pattern : "", "priority",
                      h->priority, "timeout_ms", (int)h->timeout_ms, "max_attempts",
                      (int)h->retry.max_attempts));
    }
    size_t i;
    json_t *it;
    json_array_foreach(list, i, it)
    {
        json_t *rec = json_object_get(paused, json_string_value(json_object_get(it, "instance")));
        json_object_set_new(it, "configured", json_true());
        json_object_set_new(it, "state", json_string(rec ? "paused" : "running"));
        json_object_set(it, "paused", rec ? rec : json_null());
        if (rec)
            json_object_del(paused, json_string_value(json_object_get(it, "instance")));
    }
    /* paused names a reload removed: still listed, so they can be resumed */
    const char *name;
    json_t *rec;
    json_object_foreach(paused, name, rec)
        json_array_append_new(list, json_pack("{s:s, s:n, s:b, s:s, s:O, s:[]}", "instance", name,
                                              "kind", "configured", 0, "state", "paused",
                                              "paused", rec, "subscriptions"));
    json_decref(paused);
    json_t *out = json_pack("{s:I, s:o}", "generation", (json_int_t)g->number, "handlers", list);
    generation_unref(g);
    return out;
}
