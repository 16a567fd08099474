/*
 * example — an evbus plugin, started from evbus's plugin template.
 *
 * Each event it is given becomes one line "<type> <id>\n" appended to the
 * file named by config `path`.  It shows the parts most plugins need: a
 * config map (the host checks `config:` against it), init() reading the
 * config, a check that leaves no trace (evbusd --check-config), a handler
 * that says why it fails, and fini().
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <evbus/plugin.h>

typedef struct example_state {
    char *path;
    int fd; /* -1 on a check */
} example_state_t;

static void example_free(example_state_t *s)
{
    if (s->fd >= 0)
        close(s->fd);
    free(s->path);
    free(s);
}

/* The host checked config_json against example_config_map already. */
static int example_init(const evbus_host_api_t *api, const char *config_json, void **state,
                        char *err, size_t errlen)
{
    json_t *cfg = json_loads(config_json, 0, NULL);
    const char *path = json_string_value(json_object_get(cfg, "path"));
    example_state_t *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        snprintf(err, errlen, "out of memory");
        free(s);
        json_decref(cfg);
        return -1;
    }
    json_decref(cfg);
    s->fd = -1;
    if (api->init_flags() & EVBUS_INIT_CHECK) {
        /* a dry run: an existing file must be writable; create nothing */
        if (access(s->path, W_OK) != 0 && errno != ENOENT) {
            snprintf(err, errlen, "%s: %s", s->path, strerror(errno));
            example_free(s);
            return -1;
        }
    } else if ((s->fd = open(s->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)) < 0) {
        snprintf(err, errlen, "%s: %s", s->path, strerror(errno));
        example_free(s);
        return -1;
    }
    *state = s;
    return 0;
}

static void example_fini(void *state) { example_free(state); }

/* Runs on worker threads, several at once: one O_APPEND write per event
 * keeps lines whole without a lock. */
static evbus_result_t example_handle(const evbus_host_api_t *api, const evbus_event_t *ev,
                                     void *state)
{
    example_state_t *s = state;
    char line[512];
    int n = snprintf(line, sizeof line, "%s %s\n", api->event_type(ev), api->event_id(ev));
    if (n < 0 || (size_t)n >= sizeof line) {
        api->set_reason(ev, "the type and id do not fit in %zu bytes", sizeof line);
        return EVBUS_REJECT; /* retrying cannot help */
    }
    if (write(s->fd, line, (size_t)n) != n) {
        api->set_reason(ev, "writing %s: %s", s->path, strerror(errno));
        return EVBUS_RETRY; /* a full disk may clear up */
    }
    return EVBUS_OK;
}

static const evbus_subscriber_t example_subscribers[] = {
    EVBUS_SUBSCRIBER("main", "**", 100, example_handle),
};

static const evbus_config_key_t example_config_map[] = {
    {.key = "path", .type = EVBUS_CONFIG_STRING, .required = 1,
     .description = "the file that gets one line per event"},
};

EVBUS_PLUGIN("example", "0.1.0", EVBUS_PLUGIN_F_CONFIG_MAP, .init = example_init,
             .fini = example_fini, EVBUS_SUBSCRIBERS(example_subscribers),
             EVBUS_CONFIG_MAP(example_config_map));
