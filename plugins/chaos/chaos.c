/*
 * chaos — a handler whose failures are chosen by the event itself, for
 * demos and tests of retries, dead-lettering and crash recovery.
 *
 * data.fault selects the behaviour: "retry:N" returns RETRY while the
 * delivery attempt (1-based, from the host) is <= N, then OK; "reject"
 * returns REJECT; "crash" calls abort(); "sleep:MS" sleeps MS milliseconds,
 * then OK.  No fault → OK; an unknown fault → REJECT (a broken test should
 * be loud).  Every RETRY and REJECT says why (api->set_reason), so the
 * dead letter and the retry schedule show which fault asked for it.
 * Optional config `count_file` (the only key of chaos_config_map, which
 * the host checks): one line
 * "<instance> <event id> <attempt> <result>\n" is appended per call with a
 * single O_APPEND write (result OK, RETRY, REJECT, or CRASH just before
 * abort()), so tests can count calls across processes; a check (evbusd
 * --check-config) does not create it.
 * Stateless per call, so handlers need no lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <evbus/plugin.h>

typedef struct chaos {
    char *instance;
    int count_fd; /* -1 without count_file */
} chaos_t;

/* The host checked config_json against chaos_config_map. */
static int chaos_init(const evbus_host_api_t *api, const char *config_json, void **state,
                      char *err, size_t errlen)
{
    chaos_t *s = calloc(1, sizeof *s);
    const char *iname = api->instance_name ? api->instance_name() : NULL;
    if (!s || !(s->instance = strdup(iname ? iname : "?"))) {
        snprintf(err, errlen, "out of memory");
        free(s);
        return -1;
    }
    s->count_fd = -1;
    json_t *cfg = json_loads(config_json, 0, NULL);
    const char *count_file = json_string_value(json_object_get(cfg, "count_file"));
    int rc = 0;
    /* a check (evbusd --check-config) creates no count_file */
    if (count_file && !(api->init_flags() & EVBUS_INIT_CHECK)) {
        s->count_fd = open(count_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (s->count_fd < 0) {
            snprintf(err, errlen, "count_file %s: %s", count_file, strerror(errno));
            rc = -1;
        }
    }
    json_decref(cfg);
    if (rc != 0) {
        free(s->instance);
        free(s);
        return -1;
    }
    *state = s;
    return 0;
}

static void chaos_fini(void *state)
{
    chaos_t *s = state;
    if (s->count_fd >= 0)
        close(s->count_fd);
    free(s->instance);
    free(s);
}

static void chaos_count(const evbus_host_api_t *api, const chaos_t *s, const evbus_event_t *ev,
                        int attempt, const char *result)
{
    if (s->count_fd < 0)
        return;
    const char *id = api->event_id(ev);
    char line[512];
    int n = snprintf(line, sizeof line, "%s %s %d %s\n", s->instance, id ? id : "-", attempt,
                     result);
    if (n > 0 && (size_t)n < sizeof line && write(s->count_fd, line, (size_t)n) != n)
        api->log(EVBUS_LOG_WARN, "chaos: count_file write: %s", strerror(errno));
}

/* Parses "<prefix><non-negative integer>"; returns -1 when it does not fit. */
static long chaos_arg(const char *fault, const char *prefix)
{
    size_t pl = strlen(prefix);
    if (strncmp(fault, prefix, pl) != 0 || fault[pl] < '0' || fault[pl] > '9')
        return -1;
    char *end;
    errno = 0;
    long v = strtol(fault + pl, &end, 10);
    return (*end || errno) ? -1 : v;
}

static evbus_result_t chaos_decide(const evbus_host_api_t *a, const chaos_t *s,
                                   const evbus_event_t *ev, const char *fault, int attempt)
{
    long n;
    if (!fault)
        return EVBUS_OK;
    if (strcmp(fault, "reject") == 0) {
        a->set_reason(ev, "data.fault asks for a rejection");
        return EVBUS_REJECT;
    }
    if (strcmp(fault, "crash") == 0) {
        /* Counted first: the call must show up even though it never returns. */
        chaos_count(a, s, ev, attempt, "CRASH");
        abort();
    }
    if ((n = chaos_arg(fault, "retry:")) >= 0) {
        if (attempt > n)
            return EVBUS_OK;
        a->set_reason(ev, "data.fault asks for %ld retries; this was attempt %d", n, attempt);
        return EVBUS_RETRY;
    }
    if ((n = chaos_arg(fault, "sleep:")) >= 0) {
        struct timespec ts = {.tv_sec = n / 1000, .tv_nsec = (n % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        return EVBUS_OK;
    }
    a->set_reason(ev, "unknown data.fault '%s'", fault);
    return EVBUS_REJECT;
}

static evbus_result_t chaos_handle(const evbus_host_api_t *api, const evbus_event_t *ev,
                                   void *state)
{
    chaos_t *s = state;
    int attempt = api->event_attempt(ev);
    size_t len = 0;
    const char *data = api->event_data_json(ev, &len);
    json_t *root = data ? json_loadb(data, len, 0, NULL) : NULL;
    json_t *fault = json_object_get(root, "fault");
    evbus_result_t r;
    if (fault && !json_is_string(fault)) {
        api->set_reason(ev, "data.fault is not a string");
        r = EVBUS_REJECT;
    } else {
        r = chaos_decide(api, s, ev, json_string_value(fault), attempt);
    }
    json_decref(root);
    static const char *const names[] = {"OK", "RETRY", "REJECT"};
    chaos_count(api, s, ev, attempt, names[r]);
    return r;
}

static const evbus_subscriber_t chaos_subscribers[] = {
    EVBUS_SUBSCRIBER("main", "**", 100, chaos_handle),
};

static const evbus_config_key_t chaos_config_map[] = {
    {.key = "count_file", .type = EVBUS_CONFIG_STRING,
     .description = "the file that gets one line per call"},
};

EVBUS_PLUGIN("chaos", "1.0.0", EVBUS_PLUGIN_F_CONFIG_MAP, .init = chaos_init,
             .fini = chaos_fini, EVBUS_SUBSCRIBERS(chaos_subscribers),
             EVBUS_CONFIG_MAP(chaos_config_map));
