/*
 * bad-descriptor — one source, built several times with BAD_CASE set, each
 * build breaking one descriptor rule the loader must catch:
 *   1 an invalid subscriber pattern     4 a struct_size below ABI v1's
 *   2 two subscribers with one name     5 a config map row: ENUM without names
 *   3 a non-zero reserved slot          6 a config map without its flag
 */
#include <evbus/plugin.h>

static int bad_init(const evbus_host_api_t *api, const char *config_json, void **state,
                    char *err, size_t errlen)
{
    (void)api, (void)config_json, (void)state, (void)err, (void)errlen;
    return 0;
}

static evbus_result_t bad_handle(const evbus_event_t *ev, void *state)
{
    (void)ev, (void)state;
    return EVBUS_OK;
}

static const evbus_subscriber_t bad_subscribers[] = {
    {.name = "main", .pattern = BAD_CASE == 1 ? "approval..x" : "approval.**", .priority = 1,
     .handler = bad_handle},
    {.name = BAD_CASE == 2 ? "main" : "second", .pattern = "**", .priority = 2,
     .handler = bad_handle},
};

static const evbus_config_key_t bad_config_map[] = {
    {.key = "mode", .type = BAD_CASE == 5 ? EVBUS_CONFIG_ENUM : EVBUS_CONFIG_STRING},
};

static const evbus_plugin_descriptor_t bad_descriptor = {
    .abi_version = EVBUS_ABI_VERSION,
    .struct_size = BAD_CASE == 4 ? 24 : sizeof(evbus_plugin_descriptor_t),
    .name = "bad-descriptor",
    .version = "0.0.1",
    .init = bad_init,
    .subscribers = bad_subscribers,
    .n_subscribers = 2,
    .flags = BAD_CASE == 5 ? EVBUS_PLUGIN_F_CONFIG_MAP : 0,
    .config_map = BAD_CASE == 5 || BAD_CASE == 6 ? bad_config_map : 0,
    .n_config_map = BAD_CASE == 5 || BAD_CASE == 6 ? 1 : 0,
    .reserved = {[5] = BAD_CASE == 3 ? (void *)bad_subscribers : 0},
};

EVBUS_PLUGIN_EXPORT const evbus_plugin_descriptor_t *evbus_plugin_descriptor(void)
{
    return &bad_descriptor;
}
