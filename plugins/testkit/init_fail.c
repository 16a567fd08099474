/*
 * init-fail — a plugin whose init always fails, so loader tests can check
 * how the host reports init errors: with a fixed message, or (when its
 * config mentions "silent") returning 3 without any message.
 */
#include <stdio.h>
#include <string.h>

#include <evbus/plugin.h>

static int init_fail_init(const evbus_host_api_t *api, const char *config_json, void **state,
                          char *err, size_t errlen)
{
    (void)api;
    (void)state;
    if (strstr(config_json, "silent"))
        return 3;
    snprintf(err, errlen, "init refused: missing 'path'");
    return -1;
}

static evbus_result_t init_fail_handle(const evbus_event_t *ev, void *state)
{
    (void)ev;
    (void)state;
    return EVBUS_OK;
}

static const evbus_subscriber_t init_fail_subscribers[] = {
    {.name = "main", .pattern = "**", .priority = 100, .handler = init_fail_handle},
};

static const evbus_plugin_descriptor_t init_fail_descriptor = {
    .abi_version = EVBUS_ABI_VERSION,
    .struct_size = sizeof(evbus_plugin_descriptor_t),
    .name = "init-fail",
    .version = "0.0.1",
    .init = init_fail_init,
    .subscribers = init_fail_subscribers,
    .n_subscribers = 1,
};

EVBUS_PLUGIN_EXPORT const evbus_plugin_descriptor_t *evbus_plugin_descriptor(void)
{
    return &init_fail_descriptor;
}
