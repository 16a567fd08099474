/* bench_validate.c - throughput of the jsonschema validator on one core.
 *
 * Validates a ~350-byte CloudEvent approval decision against an inline
 * schema (8 top-level properties: types, required, enum, const, pattern,
 * date-time and uuid formats asserted, additionalProperties false, a nested
 * data object) and reports validations per second for an already-parsed
 * instance ("validate-only") and for parse + validate + free
 * ("parse+validate").  --json prints one JSON object instead of text.
 * Each figure is the best of 3 runs of about 1 s.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fastjson/fastjson.h"
#include "jsonschema/jsonschema.h"

static const char schema_text[] =
    "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\","
    "\"$id\":\"https://schemas.evbus.example/approval-decision.json\","
    "\"type\":\"object\","
    "\"required\":[\"specversion\",\"id\",\"source\",\"type\",\"time\",\"data\"],"
    "\"properties\":{"
    "\"specversion\":{\"const\":\"1.0\"},"
    "\"id\":{\"type\":\"string\",\"format\":\"uuid\"},"
    "\"source\":{\"type\":\"string\",\"minLength\":1},"
    "\"type\":{\"type\":\"string\",\"pattern\":\"^com\\\\.evbus\\\\.[a-z.]+$\"},"
    "\"time\":{\"type\":\"string\",\"format\":\"date-time\"},"
    "\"datacontenttype\":{\"enum\":[\"application/json\"]},"
    "\"subject\":{\"type\":\"string\",\"maxLength\":128},"
    "\"data\":{\"type\":\"object\","
    "\"required\":[\"request_id\",\"decision\",\"approver\"],"
    "\"properties\":{"
    "\"request_id\":{\"type\":\"string\",\"pattern\":\"^REQ-[0-9]{4}-[0-9]{6}$\"},"
    "\"decision\":{\"enum\":[\"approved\",\"rejected\",\"escalated\"]},"
    "\"approver\":{\"type\":\"string\",\"minLength\":3},"
    "\"reason\":{\"type\":\"string\"},"
    "\"amount\":{\"type\":\"number\",\"minimum\":0}},"
    "\"additionalProperties\":false}},"
    "\"additionalProperties\":false}";

static const char payload[] =
    "{\"specversion\":\"1.0\",\"id\":\"5b1c7a0e-3f2d-4c1b-9a8e-2d4f6b8c0a1e\","
    "\"source\":\"/approvals/service\",\"type\":\"com.evbus.approval.decision\","
    "\"time\":\"2026-11-26T10:15:30.123Z\",\"datacontenttype\":\"application/json\","
    "\"subject\":\"request/8731\",\"data\":{\"request_id\":\"REQ-2026-008731\","
    "\"decision\":\"approved\",\"approver\":\"j.doe@example.com\","
    "\"reason\":\"within budget\",\"amount\":1250.5}}";

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* runs batches until ~1 s has passed; returns operations per second */
static double rate(const js_schema_t *s, const json_t *inst, int parse)
{
    long ops = 0;
    double t0 = now(), t;
    do {
        for (int i = 0; i < 10000; i++) {
            int ok;
            if (parse) {
                /* parse == 1: the host's parser (fj_parse); 2: jansson's, for reference */
                json_t *v = parse == 1 ? fj_parse(payload, sizeof payload - 1, 0, NULL)
                                       : json_loadb(payload, sizeof payload - 1, 0, NULL);
                ok = v && js_validate(s, v, NULL, 0) == 1;
                json_decref(v);
            } else {
                ok = js_validate(s, inst, NULL, 0) == 1;
            }
            if (!ok) {
                fprintf(stderr, "bench-validate: payload did not validate\n");
                exit(1);
            }
        }
        ops += 10000;
        t = now();
    } while (t - t0 < 1.0);
    return (double)ops / (t - t0);
}

int main(int argc, char **argv)
{
    int as_json = argc > 1 && !strcmp(argv[1], "--json");
    js_options_t opts = {1, NULL, NULL};
    js_registry_t *reg = js_registry_new(&opts);
    char err[256];
    json_t *doc = json_loads(schema_text, 0, NULL);
    const js_schema_t *s = NULL;
    if (!doc || js_registry_add(reg, NULL, doc, err, sizeof err) ||
        !(s = js_compile(reg, "https://schemas.evbus.example/approval-decision.json", err,
                         sizeof err))) {
        fprintf(stderr, "bench-validate: schema: %s\n", doc ? err : "does not parse");
        return 1;
    }
    json_t *inst = json_loadb(payload, sizeof payload - 1, 0, NULL);
    double v = 0, pv = 0, pj = 0;
    for (int i = 0; i < 3; i++) {
        double a = rate(s, inst, 0), b = rate(s, inst, 1), c = rate(s, inst, 2);
        v = a > v ? a : v;
        pv = b > pv ? b : pv;
        pj = c > pj ? c : pj;
    }
    if (as_json)
        printf("{\"payload_bytes\":%zu,\"validate_per_s\":%.0f,\"parse_validate_per_s\":%.0f,"
               "\"parse_validate_jansson_per_s\":%.0f}\n",
               sizeof payload - 1, v, pv, pj);
    else
        printf("payload %zu bytes\nvalidate-only:  %10.0f /s\nparse+validate: %10.0f /s "
               "(fj_parse, the host's parser)\nparse+validate: %10.0f /s (json_loadb, reference)\n",
               sizeof payload - 1, v, pv, pj);
    json_decref(inst);
    json_decref(doc);
    js_registry_free(reg);
    return 0;
}
