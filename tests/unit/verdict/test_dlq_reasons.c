/*
 * Dead-letter reasons: one X-macro list (EVBUS_DLQ_REASONS in
 * client/evbus_client.h) that the daemon writes into every dead letter and
 * docs/operations.md shows as its reason table.  These tests fail when the
 * names drift from the wire format or the guide's table from the list.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/evbus_client.h"

static const struct {
    evbus_dlq_reason_t id;
    const char *name, *meaning;
} REASONS[] = {
#define ROW(id, name, meaning) {EVBUS_DLQ_##id, name, meaning},
    EVBUS_DLQ_REASONS(ROW)
#undef ROW
};
#define N_REASONS (sizeof REASONS / sizeof REASONS[0])

Test(dlq_reasons, each_is_written_under_its_listed_name)
{
    for (size_t i = 0; i < N_REASONS; i++)
        cr_expect_str_eq(evbus_dlq_reason_name(REASONS[i].id), REASONS[i].name);
}

Test(dlq_reasons, none_and_unknown_values_have_no_name)
{
    cr_expect_null(evbus_dlq_reason_name(EVBUS_DLQ_NONE));
    cr_expect_null(evbus_dlq_reason_name((evbus_dlq_reason_t)(N_REASONS + 1)));
    cr_expect_null(evbus_dlq_reason_name((evbus_dlq_reason_t)-1));
}

/* Stored dead letters and operators' scripts carry these strings: renaming
 * one is a wire-format change, not a refactoring. */
Test(dlq_reasons, the_wire_names_stay_as_released)
{
    static const char *const released[] = {
        "reject",          "retries_exhausted", "unparseable", "invalid_envelope",
        "schema_invalid",  "no_schema",         "unknown_version", "upcast_failed",
        "poison",          "handler_gone",
    };
    size_t n = sizeof released / sizeof released[0];
    cr_assert_geq(N_REASONS, n, "a reason was removed");
    for (size_t i = 0; i < n; i++)
        cr_expect_str_eq(REASONS[i].name, released[i], "reason %zu", i);
}

/* The rows of the table under the "| reason | meaning |" header of
 * docs/operations.md, one malloc'd line each (without the newline). */
static size_t doc_rows(char **rows, size_t cap)
{
    const char *root = getenv("EVBUS_SOURCE_ROOT");
    cr_assert_not_null(root, "EVBUS_SOURCE_ROOT must be set (meson test does)");
    char path[4096];
    snprintf(path, sizeof path, "%s/docs/operations.md", root);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    char *line = NULL;
    size_t len = 0, n = 0;
    bool in_table = false;
    while (getline(&line, &len, f) >= 0) {
        line[strcspn(line, "\n")] = '\0';
        if (!in_table) {
            in_table = strcmp(line, "| reason | meaning |") == 0;
            continue;
        }
        if (line[0] != '|')
            break;
        if (strncmp(line, "|---", 4) == 0)
            continue;
        cr_assert_lt(n, cap, "more rows than reasons in %s", path);
        rows[n++] = strdup(line);
    }
    free(line);
    fclose(f);
    cr_assert(in_table, "%s has no \"| reason | meaning |\" table", path);
    return n;
}

Test(dlq_reasons, the_operations_guide_lists_them_as_the_code_does)
{
    char *rows[N_REASONS + 8];
    size_t n = doc_rows(rows, sizeof rows / sizeof rows[0]);
    for (size_t i = 0; i < N_REASONS; i++) {
        char want[512];
        snprintf(want, sizeof want, "| `%s` | %s |", REASONS[i].name, REASONS[i].meaning);
        cr_expect(i < n, "docs/operations.md lacks the row: %s", want);
        if (i < n)
            cr_expect_str_eq(rows[i], want, "row %zu of the reason table", i + 1);
    }
    cr_expect_eq(n, N_REASONS, "the table has %zu rows, EVBUS_DLQ_REASONS %zu", n, N_REASONS);
    for (size_t i = 0; i < n; i++)
        free(rows[i]);
}
