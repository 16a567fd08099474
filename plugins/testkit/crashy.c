/*
 * crashy — a test plugin that dies on demand, for `isolation: process`.
 *
 * data.crash picks what the handler does: "abort" calls abort(), "segv"
 * writes to an unmapped address, "hang" never returns, "exit" calls
 * exit(3), "reject" returns REJECT with a reason; anything else (or no
 * data.crash) returns OK.
 *
 * With config `out` (a path), it appends one line per event to that file
 * with a single O_APPEND write before acting:
 *   "call <event id> <attempt> <pid> <n> <crash or ->"
 * where pid is the process the handler runs in (a runner child when
 * isolated) and n counts the calls this state has seen (KEEP_STATE keeps
 * it over a reload).  init writes "init <pid> <flags>", fini "fini <pid>
 * <n>" — except on a check (EVBUS_INIT_CHECK), which leaves no trace.
 * It also logs each call through api->log, so tests can see the child's
 * lines in evbusd's log under the instance's name.  With config
 * `init_crash: true`, init() itself calls abort() — on a check too, since
 * that is what a check of an isolated instance must survive.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <evbus/plugin.h>

typedef struct crashy {
    int fd; /* -1 without `out` or on a check */
    long calls;
} crashy_t;

static void crashy_line(const crashy_t *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void crashy_line(const crashy_t *s, const char *fmt, ...)
{
    if (s->fd < 0)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof line && write(s->fd, line, (size_t)n) != n)
        return;
}

static int crashy_init(const evbus_host_api_t *api, const char *config_json, void **state,
                       char *err, size_t errlen)
{
    crashy_t *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->fd = -1;
    uint32_t flags = api->init_flags();
    json_t *cfg = json_loads(config_json, 0, NULL);
    if (json_is_true(json_object_get(cfg, "init_crash")))
        abort();
    const char *out = json_string_value(json_object_get(cfg, "out"));
    if (out && !(flags & EVBUS_INIT_CHECK)) {
        s->fd = open(out, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (s->fd < 0) {
            snprintf(err, errlen, "out %s: %s", out, strerror(errno));
            json_decref(cfg);
            free(s);
            return -1;
        }
    }
    json_decref(cfg);
    crashy_line(s, "init %d %u\n", (int)getpid(), flags);
    *state = s;
    return 0;
}

static void crashy_fini(void *state)
{
    crashy_t *s = state;
    crashy_line(s, "fini %d %ld\n", (int)getpid(), s->calls);
    if (s->fd >= 0)
        close(s->fd);
    free(s);
}

static evbus_result_t crashy_handle(const evbus_host_api_t *api, const evbus_event_t *ev,
                                    void *state)
{
    crashy_t *s = state;
    size_t len = 0;
    const char *data = api->event_data_json(ev, &len);
    json_t *root = data ? json_loadb(data, len, 0, NULL) : NULL;
    const char *crash = json_string_value(json_object_get(root, "crash"));
    char what[32];
    snprintf(what, sizeof what, "%s", crash ? crash : "-");
    json_decref(root);
    const char *id = api->event_id(ev);
    s->calls++;
    crashy_line(s, "call %s %d %d %ld %s\n", id ? id : "-", api->event_attempt(ev),
                (int)getpid(), s->calls, what);
    api->log(EVBUS_LOG_INFO, "crashy: event %s attempt %d: %s", id ? id : "-",
             api->event_attempt(ev), what);
    if (strcmp(what, "abort") == 0)
        abort();
    if (strcmp(what, "segv") == 0) {
        /* a real fault, and the process dies of it even when a sanitizer
         * runtime would catch it (sanitized test builds); not at NULL,
         * which UBSan reports and exits on instead */
        signal(SIGSEGV, SIG_DFL);
        volatile int *volatile p = (volatile int *)(uintptr_t)8;
        *p = 1;
    }
    if (strcmp(what, "hang") == 0)
        for (;;)
            pause();
    if (strcmp(what, "exit") == 0)
        exit(3);
    if (strcmp(what, "reject") == 0) {
        api->set_reason(ev, "crashy was asked to reject");
        return EVBUS_REJECT;
    }
    return EVBUS_OK;
}

static const evbus_subscriber_t crashy_subscribers[] = {
    EVBUS_SUBSCRIBER("main", "**", 100, crashy_handle),
};

static const evbus_config_key_t crashy_config_map[] = {
    {.key = "out", .type = EVBUS_CONFIG_STRING, .description = "file the calls are listed in"},
    {.key = "init_crash", .type = EVBUS_CONFIG_BOOL, .description = "abort() in init"},
};

EVBUS_PLUGIN("crashy", "1.0.0", EVBUS_PLUGIN_F_KEEP_STATE | EVBUS_PLUGIN_F_CONFIG_MAP,
             .init = crashy_init, .fini = crashy_fini, EVBUS_SUBSCRIBERS(crashy_subscribers),
             EVBUS_CONFIG_MAP(crashy_config_map));
