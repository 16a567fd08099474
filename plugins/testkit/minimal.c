/* minimal: the smallest complete evbus plugin; it counts events. */
#include <stdatomic.h>
#include <stdlib.h>

#include <evbus/plugin.h>

static int minimal_init(const evbus_host_api_t *api, const char *config_json,
                        void **state, char *err, size_t errlen)
{
    (void)api, (void)config_json, (void)err, (void)errlen;
    *state = calloc(1, sizeof(atomic_long)); /* handlers run concurrently */
    return *state ? 0 : -1;
}

static void minimal_fini(void *state) { free(state); }

static evbus_result_t minimal_handle(const evbus_host_api_t *api, const evbus_event_t *ev,
                                     void *state)
{
    (void)api, (void)ev;
    atomic_fetch_add((atomic_long *)state, 1);
    return EVBUS_OK;
}

static const evbus_subscriber_t minimal_subscribers[] = {
    EVBUS_SUBSCRIBER("main", "approval.**", 100, minimal_handle),
};

EVBUS_PLUGIN("minimal", "1.0.0", 0, .init = minimal_init, .fini = minimal_fini,
             EVBUS_SUBSCRIBERS(minimal_subscribers));
