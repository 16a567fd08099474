/*
 * testkit — a plugin for host tests (never installed).
 *
 * Its config map (testkit_config_map, checked by the host) has `out`
 * (required), `tag` and `init_sleep_ms`, which makes init() sleep that
 * long (reload tests signal in the middle of a slow reload).  init() logs
 * "testkit <version> ready", or on a check (EVBUS_INIT_CHECK, which opens
 * no `out`) "testkit <version> checked" and at fini "... check done".
 *
 * Subscriber "record" (pattern "**", priority 100) appends one line per
 * event to config `out`:
 *   <instance>\t<tag>\t<event id>\t<type>\t<is_replay>\t<schema_version>\t<data_json>\n
 * where <tag> is config `tag` ("-" when absent), so tests can tell which
 * instance or binding saw an event, and in what order.  Each line is one
 * O_APPEND write, so lines of concurrent handlers never interleave.
 *
 * It also exports the upcaster approval.item.approved 1 -> 2: v1's
 * approverId becomes decidedBy {id, kind: "user"}; an upcaster sees only
 * `data`, so decisionAt is kept when present and otherwise set to the fixed
 * "1970-01-01T00:00:00Z".  The other fields are kept.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <evbus/plugin.h>

typedef struct testkit {
    const evbus_host_api_t *api;
    char *instance;
    char *tag;
    int fd;
} testkit_t;

static void testkit_free(testkit_t *s)
{
    if (s->fd >= 0)
        close(s->fd);
    free(s->instance);
    free(s->tag);
    free(s);
}

/* The host checked config_json against testkit_config_map. */
static int testkit_init(const evbus_host_api_t *api, const char *config_json, void **state,
                        char *err, size_t errlen)
{
    testkit_t *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->api = api;
    s->fd = -1;
    json_t *cfg = json_loads(config_json, 0, NULL);
    const char *out = json_string_value(json_object_get(cfg, "out"));
    const char *tag = json_string_value(json_object_get(cfg, "tag"));
    /* init_sleep_ms: a slow init, so reload tests can signal mid-reload */
    json_int_t nap = json_integer_value(json_object_get(cfg, "init_sleep_ms"));
    if (nap > 0)
        usleep((useconds_t)nap * 1000);
    const char *iname = api->instance_name ? api->instance_name() : NULL;
    bool check = (api->init_flags() & EVBUS_INIT_CHECK) != 0;
    int rc = -1;
    if (!(s->instance = strdup(iname ? iname : "?")) || !(s->tag = strdup(tag ? tag : "-"))) {
        snprintf(err, errlen, "out of memory");
    } else if (!out) {
        snprintf(err, errlen, "missing 'out'");
    } else if (check) {
        rc = 0; /* a check creates no `out` */
    } else if ((s->fd = open(out, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)) < 0) {
        snprintf(err, errlen, "%s: %s", out, strerror(errno));
    } else {
        rc = 0;
    }
    json_decref(cfg);
    /* reload tests read "ready", check tests "checked" (also at fini) */
    if (rc == 0)
        api->log(EVBUS_LOG_INFO, "testkit %s %s", TESTKIT_VERSION, check ? "checked" : "ready");
    if (rc != 0) {
        testkit_free(s);
        return -1;
    }
    *state = s;
    return 0;
}

static void testkit_fini(void *state)
{
    testkit_t *s = state;
    if (s->api->init_flags() & EVBUS_INIT_CHECK)
        s->api->log(EVBUS_LOG_INFO, "testkit %s check done", TESTKIT_VERSION);
    testkit_free(s);
}

static evbus_result_t testkit_record(const evbus_event_t *ev, void *state)
{
    testkit_t *s = state;
    const evbus_host_api_t *a = s->api;
    size_t dlen = 0;
    const char *data = a->event_data_json(ev, &dlen);
    const char *id = a->event_id(ev), *type = a->event_type(ev);
    int head = snprintf(NULL, 0, "%s\t%s\t%s\t%s\t%d\t%d\t", s->instance, s->tag,
                        id ? id : "-", type ? type : "-", a->event_is_replay(ev),
                        a->event_schema_version(ev));
    if (!data) {
        data = "null";
        dlen = 4;
    }
    size_t n = (size_t)head + dlen + 1;
    char *line = malloc(n + 1);
    if (!line)
        return EVBUS_RETRY;
    snprintf(line, (size_t)head + 1, "%s\t%s\t%s\t%s\t%d\t%d\t", s->instance, s->tag,
             id ? id : "-", type ? type : "-", a->event_is_replay(ev),
             a->event_schema_version(ev));
    for (size_t i = 0; i < dlen; i++)
        line[(size_t)head + i] = (data[i] == '\n' || data[i] == '\t') ? ' ' : data[i];
    line[n - 1] = '\n';
    ssize_t w = write(s->fd, line, n);
    free(line);
    if (w != (ssize_t)n) {
        a->log(EVBUS_LOG_ERROR, "testkit: write: %s", w < 0 ? strerror(errno) : "short write");
        return EVBUS_RETRY;
    }
    return EVBUS_OK;
}

static int testkit_upcast_approved_v1(const evbus_host_api_t *api, const char *data_json,
                                      size_t len, evbus_buf_t *out, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *data = json_loadb(data_json, len, 0, &jerr);
    if (!json_is_object(data)) {
        snprintf(err, errlen, "v1 data is not a JSON object: %s", data ? "" : jerr.text);
        json_decref(data);
        return -1;
    }
    json_t *approver = json_object_get(data, "approverId");
    if (!json_is_string(approver)) {
        snprintf(err, errlen, "v1 data has no string approverId");
        json_decref(data);
        return -1;
    }
    json_t *decided = json_pack("{s:O, s:s}", "id", approver, "kind", "user");
    json_object_set_new(data, "decidedBy", decided);
    json_object_del(data, "approverId");
    if (!json_object_get(data, "decisionAt"))
        json_object_set_new(data, "decisionAt", json_string("1970-01-01T00:00:00Z"));
    char *text = json_dumps(data, JSON_COMPACT);
    json_decref(data);
    int rc = text ? api->buf_append(out, text, strlen(text)) : -1;
    if (rc != 0)
        snprintf(err, errlen, "cannot write the v2 data");
    free(text);
    return rc;
}

static const evbus_subscriber_t testkit_subscribers[] = {
    {.name = "record", .pattern = "**", .priority = 100, .handler = testkit_record},
};

static const evbus_upcaster_t testkit_upcasters[] = {
    {.type = "approval.item.approved", .from_version = 1, .upcast = testkit_upcast_approved_v1},
};

static const evbus_config_key_t testkit_config_map[] = {
    {.key = "out", .type = EVBUS_CONFIG_STRING, .required = 1,
     .description = "the file to record events in"},
    {.key = "tag", .type = EVBUS_CONFIG_STRING, .description = "the second column"},
    {.key = "init_sleep_ms", .type = EVBUS_CONFIG_INT, .min = 0, .max = 60000,
     .description = "how long init() sleeps"},
};

static const evbus_plugin_descriptor_t testkit_descriptor = {
    .abi_version = EVBUS_ABI_VERSION,
    .struct_size = sizeof(evbus_plugin_descriptor_t),
    .name = "testkit",
    .version = TESTKIT_VERSION,
    .flags = EVBUS_PLUGIN_F_CONFIG_MAP,
    .init = testkit_init,
    .fini = testkit_fini,
    .subscribers = testkit_subscribers,
    .n_subscribers = 1,
    .upcasters = testkit_upcasters,
    .n_upcasters = 1,
    .config_map = testkit_config_map,
    .n_config_map = sizeof testkit_config_map / sizeof testkit_config_map[0],
};

EVBUS_PLUGIN_EXPORT const evbus_plugin_descriptor_t *evbus_plugin_descriptor(void)
{
    return &testkit_descriptor;
}
