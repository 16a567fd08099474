/* metrics — storage and Prometheus text rendering; see metrics.h. */
#include "util/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

evbus_metrics_t g_metrics;

/* One counter series.  A labelled series ("family{label=...}") shares the
 * HELP/TYPE header of the same family printed just before it. */
static void counter(FILE *f, char *family, size_t family_len, const char *name,
                    const char *help, uint64_t value)
{
    size_t fl = strcspn(name, "{");
    if (fl != strlen(family) || strncmp(family, name, fl) != 0) {
        fprintf(f, "# HELP %.*s %s\n# TYPE %.*s counter\n", (int)fl, name, help, (int)fl, name);
        snprintf(family, family_len, "%.*s", (int)fl, name);
    }
    fprintf(f, "%s %llu\n", name, (unsigned long long)value);
}

char *metrics_render(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    char family[128] = "";
#define X(field, name, help) counter(f, family, sizeof family, name, help, METRIC_GET(field));
    METRICS_COUNTERS(X)
#undef X
#define X(field, name, help)                                                               \
    fprintf(f, "# HELP %s %s\n# TYPE %s gauge\n%s %llu\n", name, help, name, name,          \
            (unsigned long long)METRIC_GET(field));
    METRICS_GAUGES(X)
#undef X
    fclose(f);
    return buf;
}
