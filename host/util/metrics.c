/* metrics — storage and Prometheus text rendering; see metrics.h. */
#include "util/metrics.h"

#include <stdio.h>
#include <stdlib.h>

evbus_metrics_t g_metrics;

char *metrics_render(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
#define X(field, name, help)                                                               \
    fprintf(f, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,        \
            (unsigned long long)METRIC_GET(field));
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
