/*
 * metrics without a daemon: every family in the exposition is documented
 * in docs/metrics.md, a handler slot keeps its counters under its name, and
 * the tenant label shows exactly the listed tenants plus "other".
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evbus_build_config.h"
#include "util/metrics.h"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *b = calloc(1, (size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

Test(metrics, every_family_is_described_in_docs_metrics_md)
{
    char *doc = slurp(EVBUS_SOURCE_ROOT "/docs/metrics.md");
    cr_assert_not_null(doc);
    char *m = metrics_render();
    int families = 0;
    for (char *p = strstr(m, "# TYPE "); p; p = strstr(p + 1, "# TYPE ")) {
        char name[128], want[140];
        cr_assert_eq(sscanf(p, "# TYPE %127s", name), 1);
        snprintf(want, sizeof want, "| `%s` |", name);
        cr_expect(strstr(doc, want), "docs/metrics.md has no row for %s", name);
        families++;
    }
    cr_expect_gt(families, 60);
    free(m);
    free(doc);
}

Test(metrics, a_handler_slot_is_found_again_by_name_and_keeps_its_counts)
{
    uint16_t a = metrics_handler_slot("inst-a");
    uint16_t b = metrics_handler_slot("inst-b");
    cr_expect_neq(a, b);
    cr_expect_neq(a, 0, "slot 0 is the overflow");
    metrics_handler_outcome(a, 0, METRICS_OUTCOME_REJECT);
    metrics_handler_duration_ms(a, 7);
    cr_expect_eq(metrics_handler_slot("inst-a"), a, "a reload finds the same slot");
    metrics_handler_counts_t c;
    metrics_handler_read(a, &c);
    cr_expect_eq(c.outcome[METRICS_OUTCOME_REJECT], 1);
    cr_expect_eq(c.duration_count, 1);
    cr_expect_eq(c.duration_sum_ms, 7);
}

Test(metrics, only_live_slots_are_shown_and_tenants_outside_the_list_are_other)
{
    uint16_t a = metrics_handler_slot("shown");
    uint16_t gone = metrics_handler_slot("gone");
    METRIC_SET(generation, 7);
    metrics_handler_set_live(a, 7);
    metrics_handler_set_live(gone, 6);
    metrics_set_tenant_labels("acme,initech");
    cr_expect_eq(metrics_tenant_label("globex"), 0);
    cr_expect_eq(metrics_tenant_label(NULL), 0);
    unsigned acme = metrics_tenant_label("acme");
    cr_expect_gt(acme, 0);
    metrics_handler_outcome(a, acme, METRICS_OUTCOME_OK);
    metrics_handler_outcome(a, metrics_tenant_label("globex"), METRICS_OUTCOME_OK);
    char *m = metrics_render();
    cr_expect(strstr(m, "evbus_events_processed_total{handler=\"shown\",outcome=\"ok\","
                        "tenant=\"acme\"} 1\n"), "%s", m);
    cr_expect(strstr(m, "evbus_events_processed_total{handler=\"shown\",outcome=\"ok\","
                        "tenant=\"other\"} 1\n"));
    cr_expect(strstr(m, "tenant=\"initech\"} 0\n"));
    cr_expect_null(strstr(m, "handler=\"gone\""), "a handler of an older generation is hidden");
    cr_expect_null(strstr(m, "tenant=\"globex\""));
    free(m);
    /* the list dropped: no tenant label at all, counts summed */
    metrics_set_tenant_labels(NULL);
    m = metrics_render();
    cr_expect(strstr(m, "evbus_events_processed_total{handler=\"shown\",outcome=\"ok\"} 2\n"),
              "%s", m);
    cr_expect_null(strstr(m, "tenant="));
    free(m);
}
