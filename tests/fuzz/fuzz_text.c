/*
 * fuzz_text — libevbus's text events: the fast scanner path of
 * evbus_event_text_check against the slow path it stands in for (jansson
 * with JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, then evbus_event_complete).
 * Both must accept, or both reject with the same message; the partition
 * key hash must be the slow path's.  An accepted text is also completed
 * (evbus_event_text_complete and the two-pass check_keep/complete_checked):
 * the published bytes must be one JSON object holding every member of the
 * input unchanged plus the completed attributes the event reports.
 */
#include <jansson.h>
#include <stdbool.h>

#include "client/evbus_client.h"
#include "fuzz_util.h"

#define FLAGS (JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES)

static evbus_client_t *client;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[256];
    /* never connects: the client only supplies the source and id kind */
    client = evbus_client_new("redis://127.0.0.1:1", "fuzz", err, sizeof err);
    if (!client)
        fuzz_fail("evbus_client_new: %s", err);
    evbus_client_set_source(client, "/fuzz");
    return 0;
}

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 14695981039346656037u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211u;
    }
    return h;
}

/* The slow path's verdict, written from evbus_client.h's contract. */
static int slow(const char *text, size_t len, uint64_t *hash, char *err, size_t errlen)
{
    json_error_t je;
    json_t *j = json_loadb(text, len, FLAGS, &je);
    if (!j) {
        snprintf(err, errlen, "invalid JSON: %s (column %d)", je.text, je.column);
        return EVBUS_CLIENT_EINVAL;
    }
    json_t *k = json_object_get(j, "partitionkey");
    if (!json_is_string(k))
        k = json_object_get(j, "tenantid");
    *hash = json_is_string(k) ? fnv1a(json_string_value(k), json_string_length(k)) : fnv1a("", 0);
    int rc = evbus_event_complete(client, j, err, errlen);
    json_decref(j);
    return rc;
}

static void check_published(const char *what, const char *text, size_t len,
                            const evbus_text_event_t *ev)
{
    char *out = malloc(ev->head_len + ev->tail_len + 1);
    if (!out)
        abort();
    memcpy(out, ev->head, ev->head_len);
    if (ev->tail_len)
        memcpy(out + ev->head_len, ev->tail, ev->tail_len);
    size_t n = ev->head_len + ev->tail_len;
    json_error_t je;
    json_t *in = json_loadb(text, len, FLAGS, NULL);
    json_t *pub = json_loadb(out, n, FLAGS, &je);
    if (!in || !pub)
        fuzz_fail("%s: published text does not parse (%s): %.*s", what, pub ? "" : je.text,
                  (int)n, out);
    /* by length: a member name may hold U+0000 */
    for (void *it = json_object_iter(in); it; it = json_object_iter_next(in, it)) {
        const char *key = json_object_iter_key(it);
        size_t klen = json_object_iter_key_len(it);
        if (!json_equal(json_object_iter_value(it), json_object_getn(pub, key, klen)))
            fuzz_fail("%s: member \"%s\" changed in the published text", what, key);
    }
    const char *names[] = {"id", "type", "tenantid", "source", "correlationid", "time"};
    const char *got[] = {ev->id, ev->type, ev->tenantid, ev->source, ev->correlationid, ev->time};
    for (size_t i = 0; i < 6; i++) {
        const char *p = json_string_value(json_object_get(pub, names[i]));
        if (!p || strcmp(p, got[i]) != 0)
            fuzz_fail("%s: attribute %s is \"%s\" in the text, \"%s\" reported", what, names[i],
                      p ? p : "(none)", got[i]);
    }
    json_decref(in);
    json_decref(pub);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy: the scanner must never read past len */
    char *text = malloc(size ? size : 1);
    if (!text)
        abort();
    memcpy(text, data, size);
    char fe[512] = "", se[512] = "";
    uint64_t fh = 0, sh = 0;
    int f = evbus_event_text_check_key(client, text, size, &fh, fe, sizeof fe);
    int s = slow(text, size, &sh, se, sizeof se);
    if (f != s || (f != 0 && strcmp(fe, se) != 0))
        fuzz_fail("text check %d \"%s\", slow path %d \"%s\"", f, fe, s, se);
    if (f == 0 && fh != sh)
        fuzz_fail("partition key hashes differ");
    if (evbus_event_text_check(client, text, size, fe, sizeof fe) != f)
        fuzz_fail("evbus_event_text_check and _check_key disagree");

    evbus_text_event_t ev;
    int c = evbus_event_text_complete(client, text, size, &ev, fe, sizeof fe);
    if (c != f)
        fuzz_fail("complete %d, check %d", c, f);
    if (c == 0)
        check_published("complete", text, size, &ev);
    evbus_text_event_clear(&ev);

    evbus_text_checked_t chk;
    uint64_t kh = 0;
    if (evbus_event_text_check_keep(client, text, size, &kh, &chk, fe, sizeof fe) != f)
        fuzz_fail("check_keep disagrees with check");
    if (f == 0) {
        if (kh != fh)
            fuzz_fail("check_keep's hash differs");
        if (evbus_event_text_complete_checked(client, text, size, &chk, &ev, fe, sizeof fe) != 0)
            fuzz_fail("complete_checked rejects a checked text: %s", fe);
        check_published("complete_checked", text, size, &ev);
        evbus_text_event_clear(&ev);
    }
    free(text);
    return 0;
}
