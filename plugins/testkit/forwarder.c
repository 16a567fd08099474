/*
 * forwarder: a handler that publishes through the host API.  For each
 * event it publishes `forwarded.happened` with the same tenant and
 * {"from": <the event's id>} as data, and fails the delivery (RETRY, with
 * the host's message as its reason) when the publish is refused: the tests
 * of api->publish (tests/integration/partitions) read the forwarded events
 * and the dead letters.  Subscribe it to a pattern that does not match its
 * own output.
 */
#include <stdio.h>
#include <string.h>

#include <evbus/plugin.h>

static int forwarder_init(const evbus_host_api_t *api, const char *config_json, void **state,
                          char *err, size_t errlen)
{
    (void)api, (void)config_json, (void)err, (void)errlen;
    *state = NULL; /* stateless */
    return 0;
}

static void forwarder_fini(void *state) { (void)state; }

static evbus_result_t forward(const evbus_host_api_t *api, const evbus_event_t *ev, void *state)
{
    (void)state;
    const char *id = api->event_id(ev);
    char data[300], out[64], err[300] = "";
    snprintf(data, sizeof data, "{\"from\":\"%s\"}", id ? id : "");
    if (api->publish("forwarded.happened", api->event_tenant(ev), data, NULL, out, sizeof out,
                     err, sizeof err) != 0) {
        api->set_reason(ev, "publish refused: %s", err);
        return EVBUS_RETRY;
    }
    return EVBUS_OK;
}

static const evbus_subscriber_t forwarder_subscribers[] = {
    EVBUS_SUBSCRIBER("main", "origin.**", 100, forward),
};

EVBUS_PLUGIN("forwarder", "1.0.0", 0, .init = forwarder_init, .fini = forwarder_fini,
             EVBUS_SUBSCRIBERS(forwarder_subscribers));
