/*
 * abi-v1-0 — a plugin built the way plugins were before config maps and
 * handlers that receive the host API (ABI 1, minor 0).  Its descriptor and
 * subscriber rows are spelled out below as that header had them, with
 * reserved[8] all zero and a handler of (event, state), so the loader
 * tests prove that such a plugin still loads, that its instances take any
 * config, and that its handler is called the old way: init() keeps the
 * config text as its state, and the handler returns RETRY when that text
 * mentions "retry", else OK.
 */
#include <stdlib.h>
#include <string.h>

#include <evbus/plugin.h>

typedef struct abi_v1_0_subscriber {
    const char *name;
    const char *pattern;
    int priority;
    evbus_result_t (*handler)(const evbus_event_t *ev, void *state);
} abi_v1_0_subscriber_t;

typedef struct abi_v1_0_descriptor {
    uint32_t abi_version;
    uint32_t struct_size;
    const char *name;
    const char *version;
    uint32_t flags;
    int (*init)(const evbus_host_api_t *api, const char *config_json, void **state,
                char *errbuf, size_t errlen);
    void (*fini)(void *state);
    const abi_v1_0_subscriber_t *subscribers;
    size_t n_subscribers;
    const evbus_upcaster_t *upcasters;
    size_t n_upcasters;
    void *reserved[8];
} abi_v1_0_descriptor_t;

_Static_assert(sizeof(abi_v1_0_descriptor_t) == sizeof(evbus_plugin_descriptor_t),
               "minor versions must not change the descriptor's size");
_Static_assert(sizeof(abi_v1_0_subscriber_t) == sizeof(evbus_subscriber_t),
               "minor versions must not change a subscriber row's size");

static int v10_init(const evbus_host_api_t *api, const char *config_json, void **state,
                    char *err, size_t errlen)
{
    (void)api, (void)err, (void)errlen;
    *state = strdup(config_json);
    return *state ? 0 : -1;
}

static void v10_fini(void *state) { free(state); }

static evbus_result_t v10_handle(const evbus_event_t *ev, void *state)
{
    (void)ev;
    return strstr(state, "retry") ? EVBUS_RETRY : EVBUS_OK;
}

static const abi_v1_0_subscriber_t v10_subscribers[] = {
    {.name = "main", .pattern = "**", .priority = 100, .handler = v10_handle},
};

static const abi_v1_0_descriptor_t v10_descriptor = {
    .abi_version = 1,
    .struct_size = sizeof(abi_v1_0_descriptor_t),
    .name = "abi-v1-0",
    .version = "1.0.0",
    .init = v10_init,
    .fini = v10_fini,
    .subscribers = v10_subscribers,
    .n_subscribers = 1,
};

EVBUS_PLUGIN_EXPORT const abi_v1_0_descriptor_t *evbus_plugin_descriptor(void)
{
    return &v10_descriptor;
}
