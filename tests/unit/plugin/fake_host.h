/*
 * fake_host — the plugin-facing host API (evbus_host_api_t) over a plain
 * struct, so unit tests can drive real plugins through their public
 * interface without a daemon.  Log lines are kept in memory for asserts.
 * Not thread-safe except for log capture (mutex).
 */
#ifndef EVBUS_TEST_FAKE_HOST_H
#define EVBUS_TEST_FAKE_HOST_H

#include <stddef.h>

#include <evbus/plugin.h>

struct evbus_event {
    const char *id;
    const char *type;
    const char *tenant;
    const char *raw;       /* the whole entry as JSON */
    const char *data_json; /* NULL = absent */
    int schema_version;
    int attempt;
    int is_replay;
    char reason[320]; /* what api->set_reason wrote last */
};

/* A growable byte buffer behind api->buf_append. */
struct evbus_buf {
    char *bytes;
    size_t len;
};

extern const evbus_host_api_t fake_host_api;

/* Everything logged so far, "LEVEL instance: message\n" per line. */
const char *fake_host_log(void);
void fake_host_log_clear(void);

#endif
