/*
 * dlq_archive — the one writer of the DLQ archive format (evbus_client.h,
 * ARCHIVE): evbusd appends what its capacity trimming removes, evbusctl
 * what a purge removes, and both go through here so the two can never
 * write different lines.  It only appends; reading the archive back is
 * left to jq and friends, one line per dead letter.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client_internal.h"

static bool is_str(const redisReply *r)
{
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

static bool is_entry(const redisReply *e)
{
    if (!e || e->type != REDIS_REPLY_ARRAY || e->elements != 2 || !is_str(e->element[0]))
        return false;
    const redisReply *kv = e->element[1];
    if (kv->type == REDIS_REPLY_NIL)
        return true;
    if (kv->type != REDIS_REPLY_ARRAY)
        return false;
    for (size_t k = 0; k < kv->elements; k++)
        if (!is_str(kv->element[k]))
            return false;
    return true;
}

/* s[0..n) in base64 (RFC 4648, padded) as a JSON string; NULL on OOM. */
static json_t *base64_string(const unsigned char *s, size_t n)
{
    static const char digits[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((n + 2) / 3 * 4 + 1), *p = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)s[i] << 16 | (i + 1 < n ? (unsigned)s[i + 1] << 8 : 0) |
                     (i + 2 < n ? s[i + 2] : 0);
        *p++ = digits[v >> 18 & 63];
        *p++ = digits[v >> 12 & 63];
        *p++ = i + 1 < n ? digits[v >> 6 & 63] : '=';
        *p++ = i + 2 < n ? digits[v & 63] : '=';
    }
    *p = '\0';
    json_t *j = json_string(out);
    free(out);
    return j;
}

/* One field into o: the value as a string, or, when it is not UTF-8 (an
 * unparseable event's bytes can be anything), as "<field>_base64" so the
 * archive still holds every byte.  0 or -1 (OOM). */
static int archive_field(json_t *o, const redisReply *k, const redisReply *v)
{
    json_t *j = json_stringn(v->str, v->len);
    if (j)
        return json_object_setn_new(o, k->str, k->len, j);
    char key[256];
    int kl = snprintf(key, sizeof key, "%.*s_base64", (int)k->len, k->str);
    if (kl < 0 || (size_t)kl >= sizeof key)
        return -1;
    return json_object_set_new(o, key, base64_string((const unsigned char *)v->str, v->len));
}

/* The entry's line without the newline; NULL when memory runs out. */
static char *archive_line(const redisReply *e)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    int rc = json_object_set_new(o, "dlq_id", json_stringn(e->element[0]->str, e->element[0]->len));
    const redisReply *kv = e->element[1];
    for (size_t k = 0; rc == 0 && kv->type == REDIS_REPLY_ARRAY && k + 1 < kv->elements; k += 2)
        rc = archive_field(o, kv->element[k], kv->element[k + 1]);
    char *line = rc == 0 ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return line;
}

int evbus_dlq_archive_append(const char *path, redisReply *const *entries, size_t n, char *err,
                             size_t errlen)
{
    for (size_t i = 0; i < n; i++)
        if (!is_entry(entries[i]))
            return evbus__fail(NULL, err, errlen, EVBUS_CLIENT_EINVAL,
                               "dlq archive: entry %zu is not a stream entry", i);
    if (n == 0)
        return 0;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    FILE *f = fd < 0 ? NULL : fdopen(fd, "a");
    if (!f) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return evbus__fail(NULL, err, errlen, EVBUS_CLIENT_EIO, "dlq archive %s: %s", path,
                           strerror(e));
    }
    bool ok = true;
    for (size_t i = 0; ok && i < n; i++) {
        char *line = archive_line(entries[i]);
        ok = line && fprintf(f, "%s\n", line) >= 0;
        free(line);
    }
    int e = ok ? 0 : errno ? errno : ENOMEM;
    if (ok && (fflush(f) != 0 || fsync(fileno(f)) != 0)) {
        ok = false;
        e = errno;
    }
    if (fclose(f) != 0 && ok) {
        ok = false;
        e = errno;
    }
    if (!ok)
        return evbus__fail(NULL, err, errlen, EVBUS_CLIENT_EIO, "dlq archive %s: %s", path,
                           strerror(e));
    return 0;
}
