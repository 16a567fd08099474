/*
 * fake_host.c — see fake_host.h.  Accessors read the fake event's fields;
 * publish always fails (no bus here).
 */
#include "fake_host.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/plugin.h"

static pthread_mutex_t fake_log_mu = PTHREAD_MUTEX_INITIALIZER;
static char fake_log_text[65536];

static void fake_log(evbus_log_level_t level, const char *fmt, ...)
{
    static const char *const names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *who = plugin_current();
    pthread_mutex_lock(&fake_log_mu);
    size_t used = strlen(fake_log_text);
    snprintf(fake_log_text + used, sizeof fake_log_text - used, "%s %s: %s\n",
             (unsigned)level < 4 ? names[level] : "?", who ? who : "-", msg);
    pthread_mutex_unlock(&fake_log_mu);
}

const char *fake_host_log(void) { return fake_log_text; }

void fake_host_log_clear(void) { fake_log_text[0] = '\0'; }

static const char *fake_id(const evbus_event_t *ev) { return ev->id; }
static const char *fake_type(const evbus_event_t *ev) { return ev->type; }
static const char *fake_null(const evbus_event_t *ev)
{
    (void)ev;
    return NULL;
}
static const char *fake_tenant(const evbus_event_t *ev) { return ev->tenant; }
static const char *fake_attr(const evbus_event_t *ev, const char *name)
{
    (void)ev;
    (void)name;
    return NULL;
}
static const char *fake_data(const evbus_event_t *ev, size_t *len)
{
    if (ev->data_json && len)
        *len = strlen(ev->data_json);
    return ev->data_json;
}
static const char *fake_raw(const evbus_event_t *ev, size_t *len)
{
    if (ev->raw && len)
        *len = strlen(ev->raw);
    return ev->raw;
}
static const void *fake_jansson(const evbus_event_t *ev)
{
    (void)ev;
    return NULL;
}
static int fake_version(const evbus_event_t *ev) { return ev->schema_version; }
static int fake_attempt(const evbus_event_t *ev) { return ev->attempt; }
static int fake_replay(const evbus_event_t *ev) { return ev->is_replay; }

static int fake_set_reason(const evbus_event_t *cev, const char *fmt, ...)
{
    evbus_event_t *ev = (evbus_event_t *)cev;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ev->reason, sizeof ev->reason, fmt, ap);
    va_end(ap);
    return 0;
}

static int fake_publish(const char *type, const char *tenant, const char *data_json,
                        const char *correlation_id, char *out_id, size_t out_len, char *err,
                        size_t errlen)
{
    (void)type, (void)tenant, (void)data_json, (void)correlation_id, (void)out_id,
        (void)out_len;
    snprintf(err, errlen, "the fake host has no bus");
    return -1;
}

static int fake_buf_append(evbus_buf_t *buf, const char *bytes, size_t len)
{
    char *p = realloc(buf->bytes, buf->len + len + 1);
    if (!p)
        return -1;
    memcpy(p + buf->len, bytes, len);
    buf->len += len;
    p[buf->len] = '\0';
    buf->bytes = p;
    return 0;
}

const evbus_host_api_t fake_host_api = {
    .abi_version = EVBUS_ABI_VERSION,
    .struct_size = sizeof(evbus_host_api_t),
    .log = fake_log,
    .event_id = fake_id,
    .event_type = fake_type,
    .event_source = fake_null,
    .event_time = fake_null,
    .event_tenant = fake_tenant,
    .event_correlation_id = fake_null,
    .event_stream_id = fake_null,
    .event_attr = fake_attr,
    .event_data_json = fake_data,
    .event_raw = fake_raw,
    .event_data_jansson = fake_jansson,
    .event_schema_version = fake_version,
    .event_attempt = fake_attempt,
    .event_is_replay = fake_replay,
    .event_replay_job = fake_null,
    .publish = fake_publish,
    .buf_append = fake_buf_append,
    .instance_name = plugin_current,
    .set_reason = fake_set_reason,
    .init_flags = plugin_current_init_flags,
};
