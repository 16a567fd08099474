/*
 * event — envelope parsing, per-event state and the host API table.
 *
 * Parsing happens once per entry: the jansson tree built here is shared by
 * validation, routing, foreign handlers and every plugin handler.  The
 * envelope check is hand-written rather than a schema validation because it
 * runs for every entry and must stay in the tens of nanoseconds.
 */
#include "core/event.h"

#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/evbus_client.h"
#include "fastjson/fastjson.h"
#include "plugin/plugin.h"
#include "router/router.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/strcopy.h"

const char *event_status_name(event_status_t s)
{
    switch (s) {
    case EV_STATUS_PROCESSING: return "PROCESSING";
    case EV_STATUS_COMPLETED: return "COMPLETED";
    case EV_STATUS_RETRYING: return "RETRYING";
    case EV_STATUS_DEAD_LETTERED: return "DEAD_LETTERED";
    case EV_STATUS_IGNORED: return "IGNORED";
    }
    return "UNKNOWN";
}

void event_reset(struct evbus_event *ev)
{
    /* An arena-parsed tree is dropped with its arena; only a tree that
     * overflowed into the heap needs the walk (arena nodes are ignored). */
    if (ev->env && (!ev->arena || ev->arena->overflowed))
        json_decref(ev->env);
    if (ev->arena)
        jarena_reset(ev->arena);
    for (size_t i = 0; i < sizeof ev->data_versions / sizeof ev->data_versions[0]; i++)
        if (ev->data_versions[i])
            json_decref(ev->data_versions[i]);
    free(ev->data_json);
    free(ev->retry_target);
    free(ev->replay_job);
    if (ev->attempt_errors)
        json_decref(ev->attempt_errors);
    memset(ev, 0, offsetof(struct evbus_event, attr_buf));
    ev->attempt = 0;
    ev->first_failure_ms = 0;
    ev->key_owner = false;
    ev->retry_target = NULL;
    ev->attempt_errors = NULL;
    ev->replay_job = NULL;
    ev->is_replay = false;
    ev->status = EV_STATUS_PROCESSING;
    ev->dlq_reason = EVBUS_DLQ_NONE;
    ev->error[0] = '\0';
    ev->n_failed = 0;
    ev->n_outcomes = 0;
    ev->orig_sid[0] = '\0';
}

void event_set_error(struct evbus_event *ev, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ev->error, sizeof ev->error, fmt, ap);
    va_end(ap);
}

void event_note_outcome(struct evbus_event *ev, const char *handler, const char *outcome)
{
    if (ev->n_outcomes < EVENT_MAX_HANDLERS) {
        ev->outcomes[ev->n_outcomes].handler = handler;
        ev->outcomes[ev->n_outcomes++].outcome = outcome;
    }
}

/* Appends s as a JSON string at buf[*off]; false (nothing kept) when
 * it does not fit in len - 2 bytes, which leaves room to close. */
static bool json_put_string(char *buf, size_t len, size_t *off, const char *s)
{
    size_t o = *off;
    if (o + 1 > len - 2)
        return false;
    buf[o++] = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\') {
            if (o + 1 > len - 2)
                return false;
            buf[o++] = (char)c;
            continue;
        }
        if (o + 6 > len - 2)
            return false;
        static const char hex[] = "0123456789abcdef";
        buf[o++] = '\\';
        if (c == '"' || c == '\\') {
            buf[o++] = (char)c;
        } else {
            memcpy(buf + o, "u00", 3);
            buf[o + 3] = hex[c >> 4];
            buf[o + 4] = hex[c & 15];
            o += 5;
        }
    }
    if (o + 1 > len - 2)
        return false;
    buf[o++] = '"';
    *off = o;
    return true;
}

/* Called for every event when metadata is on: plain byte copies, no
 * printf (three snprintf calls per event were a measurable share of a
 * worker's time). */
void event_outcomes_json(const struct evbus_event *ev, char *buf, size_t len)
{
    if (len < 3) {
        if (len)
            buf[0] = '\0';
        return;
    }
    size_t off = 0;
    buf[off++] = '{';
    for (uint8_t i = 0; i < ev->n_outcomes; i++) {
        size_t mark = off;
        if (i)
            buf[off++] = ',';
        if (!json_put_string(buf, len, &off, ev->outcomes[i].handler) || off + 1 > len - 2 ||
            (buf[off++] = ':', !json_put_string(buf, len, &off, ev->outcomes[i].outcome))) {
            off = mark; /* truncated: keep the outcomes that fit whole */
            break;
        }
    }
    buf[off++] = '}';
    buf[off] = '\0';
}

static bool digits(const char *s, int n)
{
    for (int i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

bool event_is_rfc3339(const char *s)
{
    /* YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM) */
    if (strlen(s) < 20 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' ||
        !digits(s + 8, 2) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        !digits(s + 11, 2) || s[13] != ':' || !digits(s + 14, 2) || s[16] != ':' ||
        !digits(s + 17, 2))
        return false;
    int mon = (s[5] - '0') * 10 + (s[6] - '0'), day = (s[8] - '0') * 10 + (s[9] - '0');
    int hh = (s[11] - '0') * 10 + (s[12] - '0'), mm = (s[14] - '0') * 10 + (s[15] - '0');
    int ss = (s[17] - '0') * 10 + (s[18] - '0');
    if (mon < 1 || mon > 12 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60)
        return false;
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return false;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
        return true;
    if ((*p == '+' || *p == '-') && digits(p + 1, 2) && p[3] == ':' && digits(p + 4, 2) &&
        p[6] == '\0')
        return true;
    return false;
}

/* A string attribute's value; NULL when absent, not a string, or holding
 * U+0000 (C code would read a shorter value than the event carries). */
static const char *str_value(const json_t *v)
{
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
        return NULL;
    return json_string_value(v);
}

static const char *str_attr(json_t *env, const char *key)
{
    return str_value(json_object_get(env, key));
}

/* The envelope members event_parse() reads, NULL when absent. */
struct env_members {
    json_t *specversion, *id, *source, *type, *time, *tenantid, *correlationid, *data;
    json_t *schemaversion, *dataschema;
};

/* One walk over the envelope's members instead of a hashed lookup per
 * attribute: every entry needs ten, and hashing each name was most of
 * the envelope check's cost.  A member name appears once (the parse
 * refuses duplicates). */
static void env_members(json_t *env, struct env_members *m)
{
    memset(m, 0, sizeof *m);
    for (void *it = json_object_iter(env); it; it = json_object_iter_next(env, it)) {
        const char *k = json_object_iter_key(it);
        json_t **slot = NULL;
        switch (json_object_iter_key_len(it)) {
        case 2: slot = !memcmp(k, "id", 2) ? &m->id : NULL; break;
        case 4:
            slot = !memcmp(k, "type", 4)   ? &m->type
                   : !memcmp(k, "time", 4) ? &m->time
                   : !memcmp(k, "data", 4) ? &m->data
                                           : NULL;
            break;
        case 6: slot = !memcmp(k, "source", 6) ? &m->source : NULL; break;
        case 8: slot = !memcmp(k, "tenantid", 8) ? &m->tenantid : NULL; break;
        case 10: slot = !memcmp(k, "dataschema", 10) ? &m->dataschema : NULL; break;
        case 11: slot = !memcmp(k, "specversion", 11) ? &m->specversion : NULL; break;
        case 13:
            slot = !memcmp(k, "correlationid", 13)   ? &m->correlationid
                   : !memcmp(k, "schemaversion", 13) ? &m->schemaversion
                                                     : NULL;
            break;
        }
        if (slot)
            *slot = json_object_iter_value(it);
    }
}

static int fail(struct evbus_event *ev, evbus_dlq_reason_t reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct evbus_event *ev, evbus_dlq_reason_t reason, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ev->error, sizeof ev->error, fmt, ap);
    va_end(ap);
    ev->dlq_reason = reason;
    return -1;
}

static int parse_retry_meta(struct evbus_event *ev)
{
    json_error_t jerr;
    json_t *m = json_loads(ev->retry_meta, 0, &jerr);
    if (!json_is_object(m)) {
        json_decref(m);
        return fail(ev, EVBUS_DLQ_UNPARSEABLE, "retry metadata is not a JSON object: %s",
                    jerr.text);
    }
    const char *h = str_attr(m, "h");
    json_t *a = json_object_get(m, "a");
    if (!h || !json_is_integer(a)) {
        json_decref(m);
        return fail(ev, EVBUS_DLQ_UNPARSEABLE, "retry metadata lacks handler or attempt");
    }
    ev->retry_target = strdup(h);
    ev->attempt = (int)json_integer_value(a);
    ev->first_failure_ms = json_integer_value(json_object_get(m, "ff"));
    ev->key_owner = json_is_true(json_object_get(m, "ko")) ||
                    json_integer_value(json_object_get(m, "ko")) == 1;
    const char *sid = str_attr(m, "sid");
    if (sid)
        str_copy(ev->orig_sid, sizeof ev->orig_sid, sid);
    /* a retry's earlier errors: kept as parsed (a reference), read only
     * if this attempt fails too */
    json_t *ae = json_object_get(m, "ae");
    if (json_is_array(ae))
        ev->attempt_errors = json_incref(ae);
    const char *rj = str_attr(m, "rj");
    if (rj) {
        ev->replay_job = strdup(rj);
        ev->is_replay = true;
    }
    json_decref(m);
    return 0;
}

int event_parse(struct evbus_event *ev)
{
    if (!ev->raw)
        return fail(ev, EVBUS_DLQ_UNPARSEABLE, "entry has no 'event' field");
    json_error_t jerr;
    jarena_enter(ev->arena);
    /* json_loadb's tree, faster.  U+0000 in a string is valid JSON (RFC
     * 8259); a member name twice is not taken one way or the other: another
     * consumer of the stream could take the other value */
    ev->env = fj_parse(ev->raw, ev->raw_len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &jerr);
    jarena_leave();
    if (!ev->env && json_error_code(&jerr) == json_error_duplicate_key)
        return fail(ev, EVBUS_DLQ_INVALID_ENVELOPE, "a member name appears twice (line %d column "
                    "%d): %s", jerr.line, jerr.column, jerr.text);
    if (!ev->env)
        return fail(ev, EVBUS_DLQ_UNPARSEABLE, "invalid JSON at line %d column %d: %s",
                    jerr.line, jerr.column, jerr.text);
    if (!json_is_object(ev->env))
        return fail(ev, EVBUS_DLQ_UNPARSEABLE, "event is not a JSON object");
    struct env_members m;
    env_members(ev->env, &m);
    const char *spec = str_value(m.specversion);
    if (!spec || strcmp(spec, "1.0") != 0)
        return fail(ev, EVBUS_DLQ_INVALID_ENVELOPE, "specversion: must be \"1.0\"");
    ev->id = str_value(m.id);
    if (!ev->id || !*ev->id)
        return fail(ev, EVBUS_DLQ_INVALID_ENVELOPE, "id: required non-empty string");
    ev->source = str_value(m.source);
    if (!ev->source || !*ev->source)
        return fail(ev, EVBUS_DLQ_INVALID_ENVELOPE, "source: required non-empty string");
    ev->type = str_value(m.type);
    char terr[128];
    if (!ev->type)
        return fail(ev, EVBUS_DLQ_INVALID_ENVELOPE, "type: required string");
    if (router_type_check(ev->type, terr, sizeof terr) != 0)
        return fail(ev, EVBUS_DLQ_INVALID_ENVELOPE, "type: %s", terr);
    ev->time = str_value(m.time);
    if (!ev->time || !event_is_rfc3339(ev->time))
        return fail(ev, EVBUS_DLQ_INVALID_ENVELOPE, "time: required RFC 3339 date-time");
    ev->tenant = str_value(m.tenantid);
    if (!ev->tenant || !*ev->tenant)
        return fail(ev, EVBUS_DLQ_INVALID_ENVELOPE, "tenantid: required non-empty string");
    ev->correlation_id = str_value(m.correlationid);
    ev->data = m.data;
    ev->schemaversion = m.schemaversion;
    ev->dataschema = m.dataschema;
    if (ev->retry_meta && parse_retry_meta(ev) != 0)
        return -1;
    if (ev->attempt <= 0)
        ev->attempt = 1;
    if (!ev->orig_sid[0] && ev->stream_id)
        str_copy(ev->orig_sid, sizeof ev->orig_sid, ev->stream_id);
    return 0;
}

/* ---- host API ---------------------------------------------------------- */

static void api_log(evbus_log_level_t level, const char *fmt, ...)
{
    char comp[160];
    const char *cur = plugin_current();
    snprintf(comp, sizeof comp, "plugin:%s", cur ? cur : "?");
    va_list ap;
    va_start(ap, fmt);
    int lvl = level <= EVBUS_LOG_DEBUG ? LOG_DEBUG
              : level == EVBUS_LOG_INFO ? LOG_INFO
              : level == EVBUS_LOG_WARN ? LOG_WARN
                                        : LOG_ERROR;
    log_vmsg(lvl, comp, fmt, ap);
    va_end(ap);
}

/* The event with its envelope parsed (event.h, `lazy`): a no-op but for
 * one load in evbusd, where events are parsed before any handler runs. */
static pthread_mutex_t lazy_mu = PTHREAD_MUTEX_INITIALIZER;

static struct evbus_event *parsed(const evbus_event_t *cev)
{
    struct evbus_event *ev = (struct evbus_event *)cev;
    if (!atomic_load_explicit(&ev->lazy, memory_order_acquire))
        return ev;
    pthread_mutex_lock(&lazy_mu);
    if (atomic_load_explicit(&ev->lazy, memory_order_relaxed)) {
        /* evbusd checked these bytes: only the tree and attributes matter */
        event_parse(ev);
        if (ev->lazy_data) {
            json_t *v = json_loadb(ev->lazy_data, ev->lazy_data_len,
                                   JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
            if (v) {
                ev->data_versions[0] = v; /* owned by the event: event_reset frees it */
                ev->data = v;
            }
        }
        atomic_store_explicit(&ev->lazy, false, memory_order_release);
    }
    pthread_mutex_unlock(&lazy_mu);
    return ev;
}

static const char *api_id(const evbus_event_t *ev) { return parsed(ev)->id; }
static const char *api_type(const evbus_event_t *ev) { return parsed(ev)->type; }
static const char *api_source(const evbus_event_t *ev) { return parsed(ev)->source; }
static const char *api_time(const evbus_event_t *ev) { return parsed(ev)->time; }
static const char *api_tenant(const evbus_event_t *ev) { return parsed(ev)->tenant; }
static const char *api_corr(const evbus_event_t *ev) { return parsed(ev)->correlation_id; }
static const char *api_stream_id(const evbus_event_t *ev) { return ev->stream_id; }

static const char *api_attr(const evbus_event_t *cev, const char *name)
{
    struct evbus_event *ev = parsed(cev);
    json_t *v = json_object_get(ev->env, name);
    if (!v)
        return NULL;
    if (json_is_string(v))
        return json_string_value(v);
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s)
        return NULL;
    snprintf(ev->attr_buf, sizeof ev->attr_buf, "%s", s);
    free(s);
    return ev->attr_buf;
}

static const char *api_data_json(const evbus_event_t *cev, size_t *len)
{
    struct evbus_event *ev = parsed(cev);
    if (!ev->data) {
        if (len)
            *len = 4;
        return "null";
    }
    if (!ev->data_json) {
        ev->data_json = json_dumps(ev->data, JSON_COMPACT | JSON_ENCODE_ANY);
        ev->data_json_len = ev->data_json ? strlen(ev->data_json) : 0;
    }
    if (len)
        *len = ev->data_json_len;
    return ev->data_json;
}

static const char *api_raw(const evbus_event_t *ev, size_t *len)
{
    if (len)
        *len = ev->raw_len;
    return ev->raw;
}

static const void *api_data_jansson(const evbus_event_t *ev) { return parsed(ev)->data; }
static int api_schema_version(const evbus_event_t *ev) { return ev->schema_version; }
static int api_attempt(const evbus_event_t *ev) { return ev->attempt; }
static int api_is_replay(const evbus_event_t *ev) { return ev->is_replay ? 1 : 0; }
static const char *api_replay_job(const evbus_event_t *ev) { return ev->replay_job; }
static const char *api_instance_name(void) { return plugin_current(); }

static int64_t api_event_deadline_ms(const evbus_event_t *ev)
{
    if (!ev || !ev->deadline_ms)
        return INT64_MAX;
    return ev->deadline_ms - clock_coarse_ms();
}

static int api_set_reason(const evbus_event_t *cev, const char *fmt, ...)
{
    struct evbus_event *ev = (struct evbus_event *)cev;
    if (!ev || !ev->reason || !ev->reason_len)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ev->reason, ev->reason_len, fmt, ap);
    va_end(ap);
    /* it lands in log lines and stream fields: one line, no escapes */
    for (char *p = ev->reason; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    return 0;
}

static int api_buf_append(evbus_buf_t *b, const char *bytes, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p)
            return -1;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, bytes, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

/* Publishing from handlers: one client per thread, made on first use. */
static pthread_mutex_t pub_lock = PTHREAD_MUTEX_INITIALIZER;
static char *pub_url, *pub_cluster, *pub_stream; /* pub_cluster: seeds, over pub_url */
static unsigned pub_partitions = 1; /* under pub_lock */
static pthread_key_t pub_key;
static pthread_once_t pub_once = PTHREAD_ONCE_INIT;

static void pub_client_free(void *p) { evbus_client_free(p); }
static void pub_key_make(void) { pthread_key_create(&pub_key, pub_client_free); }

static atomic_uint pub_wait_n, pub_wait_ms;

void event_host_api_set_wait(unsigned replicas, uint32_t timeout_ms)
{
    atomic_store(&pub_wait_ms, timeout_ms);
    atomic_store(&pub_wait_n, replicas);
}

void event_host_api_configure(const char *redis_url, const char *cluster, const char *stream,
                              unsigned partitions)
{
    pthread_once(&pub_once, pub_key_make);
    pthread_mutex_lock(&pub_lock);
    free(pub_url);
    free(pub_cluster);
    free(pub_stream);
    pub_url = redis_url ? strdup(redis_url) : NULL;
    pub_cluster = cluster && *cluster ? strdup(cluster) : NULL;
    pub_stream = stream ? strdup(stream) : NULL;
    pub_partitions = partitions ? partitions : 1;
    pthread_mutex_unlock(&pub_lock);
}

static int api_publish(const char *type, const char *tenant, const char *data_json,
                       const char *correlation_id, char *out_id, size_t out_len, char *err,
                       size_t errlen)
{
    pthread_once(&pub_once, pub_key_make);
    evbus_client_t *c = pthread_getspecific(pub_key);
    if (!c) {
        pthread_mutex_lock(&pub_lock);
        if (pub_cluster && pub_stream)
            c = evbus_client_new_cluster(pub_cluster, pub_stream, err, errlen);
        else if (pub_url && pub_stream)
            c = evbus_client_new(pub_url, pub_stream, err, errlen);
        else
            snprintf(err, errlen, "publish: the host API cannot publish here (no redis.url "
                     "or redis.cluster)");
        /* A handler waiting for room would hold the very worker whose acks
         * make room: the host API never blocks on a full stream, it is
         * refused at once (the guard still reads the caps evbusd publishes). */
        if (c)
            evbus_client_set_retention(c, 0, 0, 0);
        /* each event to its partition stream, the count checked against
         * the recorded one as every publisher's is (docs/scale-out.md) */
        if (c && pub_partitions > 1 &&
            evbus_client_set_partitions(c, pub_partitions) != EVBUS_CLIENT_OK) {
            snprintf(err, errlen, "publish: partitions: %u is out of range", pub_partitions);
            evbus_client_free(c);
            c = NULL;
        }
        pthread_mutex_unlock(&pub_lock);
        if (!c)
            return -1;
        pthread_setspecific(pub_key, c);
    }
    json_error_t jerr;
    json_t *data = data_json ? json_loads(data_json, JSON_DECODE_ANY, &jerr) : json_null();
    if (!data) {
        snprintf(err, errlen, "publish: data is not JSON: %s", jerr.text);
        return -1;
    }
    json_t *ev = json_pack("{s:s, s:s, s:o}", "type", type ? type : "", "tenantid",
                           tenant ? tenant : "", "data", data);
    if (correlation_id)
        json_object_set_new(ev, "correlationid", json_string(correlation_id));
    const char *cur = plugin_current();
    char src[200];
    snprintf(src, sizeof src, "/evbus/plugin/%s", cur ? cur : "unknown");
    json_object_set_new(ev, "source", json_string(src));
    unsigned wait_n = atomic_load(&pub_wait_n);
    evbus_client_set_wait_replicas(c, wait_n, atomic_load(&pub_wait_ms));
    uint64_t waits0 = 0, short0 = evbus_client_wait_short(c, &waits0), waits1 = 0;
    int rc = evbus_publish(c, ev, out_id, out_len, err, errlen);
    json_decref(ev);
    uint64_t short1 = evbus_client_wait_short(c, &waits1);
    METRIC_ADD(redis_waits, waits1 - waits0);
    METRIC_ADD(redis_wait_short, short1 - short0);
    if (rc == 0)
        METRIC_INC(published);
    else if (rc == EVBUS_CLIENT_EFULL)
        METRIC_INC(publish_refused_full);
    return rc == 0 ? 0 : -1;
}

static const evbus_host_api_t host_api = {
    .abi_version = EVBUS_ABI_VERSION,
    .struct_size = sizeof(evbus_host_api_t),
    .log = api_log,
    .event_id = api_id,
    .event_type = api_type,
    .event_source = api_source,
    .event_time = api_time,
    .event_tenant = api_tenant,
    .event_correlation_id = api_corr,
    .event_stream_id = api_stream_id,
    .event_attr = api_attr,
    .event_data_json = api_data_json,
    .event_raw = api_raw,
    .event_data_jansson = api_data_jansson,
    .event_schema_version = api_schema_version,
    .event_attempt = api_attempt,
    .event_is_replay = api_is_replay,
    .event_replay_job = api_replay_job,
    .publish = api_publish,
    .buf_append = api_buf_append,
    .instance_name = api_instance_name,
    .event_deadline_ms = api_event_deadline_ms,
    .set_reason = api_set_reason,
    .init_flags = plugin_current_init_flags,
};

const evbus_host_api_t *event_host_api(void) { return &host_api; }
