/*
 * abi-mismatch — a plugin built for a future ABI (999), so loader tests can
 * check that it is refused before anything else in it is read.
 */
#include <evbus/plugin.h>

static const evbus_plugin_descriptor_t mismatch_descriptor = {
    .abi_version = 999,
    .struct_size = sizeof(evbus_plugin_descriptor_t),
    .name = "abi-mismatch",
    .version = "0.0.1",
};

EVBUS_PLUGIN_EXPORT const evbus_plugin_descriptor_t *evbus_plugin_descriptor(void)
{
    return &mismatch_descriptor;
}
