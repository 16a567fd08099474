/* log — see log.h.  Deliberately no buffering: a crash must not eat lines. */
#include "util/log.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "util/redact.h"

static atomic_int g_level = LOG_INFO;
static atomic_int g_format = LOG_FORMAT_TEXT;
static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
static const char *const level_json[] = {"debug", "info", "warn", "error"};

void log_set_level(int level) { atomic_store(&g_level, level); }
int log_get_level(void) { return atomic_load(&g_level); }
void log_set_format(int format) { atomic_store(&g_format, format); }
int log_get_format(void) { return atomic_load(&g_format); }

int log_format_parse(const char *name)
{
    if (name && !strcmp(name, "text"))
        return LOG_FORMAT_TEXT;
    if (name && !strcmp(name, "json"))
        return LOG_FORMAT_JSON;
    return -1;
}

typedef struct line {
    char buf[8192];
    size_t n;
} line_t;

static void add(line_t *l, const char *s, size_t n)
{
    if (n > sizeof l->buf - 1 - l->n)
        n = sizeof l->buf - 1 - l->n;
    memcpy(l->buf + l->n, s, n);
    l->n += n;
}

static void adds(line_t *l, const char *s) { add(l, s, strlen(s)); }

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlongs,
 * no surrogates, at most U+10FFFF), 0 when it is not one. */
static size_t utf8_len(const unsigned char *s, size_t left)
{
    unsigned c = s[0];
    size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                                                  : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || n > left || (n == 2 && c < 0xC2) || (n == 4 && c > 0xF4))
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if (n == 3 && ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0)))
        return 0;
    if (n == 4 && ((c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] >= 0x90)))
        return 0;
    return n;
}

/* s as a JSON string, quotes included. */
static void add_json(line_t *l, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    adds(l, "\"");
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        size_t n = utf8_len((const unsigned char *)s + i, len - i);
        if (n == 0) {
            adds(l, "\\ufffd");
            i++;
        } else if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            add(l, e, 2);
            i++;
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            if (c == '\n')
                add(l, "\\n", 2);
            else if (c == '\t')
                add(l, "\\t", 2);
            else
                add(l, e, 6);
            i++;
        } else {
            add(l, s + i, n);
            i += n;
        }
    }
    adds(l, "\"");
}

static void add_field(line_t *l, const char *key, const char *value)
{
    if (!value)
        return;
    char v[256];
    size_t n = redact_secrets(value, strlen(value), v, sizeof v);
    adds(l, ",\"");
    adds(l, key);
    adds(l, "\":");
    add_json(l, v, n);
}

typedef struct fields {
    const char *event_id, *type, *tenant, *handler;
} fields_t;

static void emit(int level, const char *component, const fields_t *f, const char *fmt,
                 va_list ap)
{
    if (level < atomic_load(&g_level))
        return;
    if (level < LOG_DEBUG || level > LOG_ERROR)
        level = LOG_ERROR;
    if (!component)
        component = "evbus";
    char raw[2048], msg[2048];
    int m = vsnprintf(raw, sizeof raw, fmt, ap);
    size_t rlen = m < 0 ? 0 : (size_t)m >= sizeof raw ? sizeof raw - 1 : (size_t)m;
    size_t mlen = redact_secrets(raw, rlen, msg, sizeof msg);

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[96];
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(tv.tv_usec / 1000));

    line_t l;
    l.n = 0;
    if (atomic_load(&g_format) == LOG_FORMAT_JSON) {
        adds(&l, "{\"time\":\"");
        adds(&l, ts);
        adds(&l, "\",\"level\":\"");
        adds(&l, level_json[level]);
        adds(&l, "\"");
        add_field(&l, "component", component);
        adds(&l, ",\"message\":");
        add_json(&l, msg, mlen);
        if (f) {
            add_field(&l, "event_id", f->event_id);
            add_field(&l, "type", f->type);
            add_field(&l, "tenant", f->tenant);
            add_field(&l, "handler", f->handler);
        }
        /* a line cut at the buffer's end must still close: keep room */
        if (l.n > sizeof l.buf - 8) {
            l.n = 0;
            adds(&l, "{\"time\":\"");
            adds(&l, ts);
            adds(&l, "\",\"level\":\"");
            adds(&l, level_json[level]);
            adds(&l, "\",\"message\":");
            add_json(&l, msg, mlen > 600 ? 600 : mlen);
        }
        adds(&l, "}");
    } else {
        char head[160];
        int n = snprintf(head, sizeof head, "%s %-5s [%.100s] ", ts, level_names[level],
                         component);
        add(&l, head, n < 0 ? 0 : (size_t)n);
        add(&l, msg, mlen);
    }
    l.buf[l.n++] = '\n';
    ssize_t w = write(STDERR_FILENO, l.buf, l.n);
    (void)w;
}

void log_vmsg(int level, const char *component, const char *fmt, va_list ap)
{
    emit(level, component, NULL, fmt, ap);
}

void log_msg(int level, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(level, component, NULL, fmt, ap);
    va_end(ap);
}

void log_event(int level, const char *component, const char *event_id, const char *type,
               const char *tenant, const char *handler, const char *fmt, ...)
{
    fields_t f = {event_id, type, tenant, handler};
    va_list ap;
    va_start(ap, fmt);
    emit(level, component, &f, fmt, ap);
    va_end(ap);
}
