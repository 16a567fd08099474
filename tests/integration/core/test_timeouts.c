/*
 * Timeouts never multiply side effects: a handler that overruns its
 * timeout but succeeds runs exactly once per event and counts as OK (the
 * verdict unit tests cover a late failure: the timeout's retry).  Real
 * redis-server and evbusd, the
 * chaos plugin sleeping as each event says.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"

static fx_t F;

static void setup(void) { fx_start(&F, false); }
static void teardown(void) { fx_stop(&F); }

TestSuite(timeouts, .init = setup, .fini = teardown, .timeout = 120);

/* Lines of the count file for one result ("OK", "RETRY"...). */
static int count_result(const char *path, const char *result)
{
    char *s = harness_read_file(path);
    int n = 0;
    for (char *line = s ? strtok(s, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        const char *last = strrchr(line, ' ');
        n += last && !strcmp(last + 1, result);
    }
    free(s);
    return n;
}

Test(timeouts, a_late_success_runs_once_and_counts_as_ok)
{
    char calls[600], buf[2048];
    fx_path(&F, "calls.txt", calls, sizeof calls);
    F.admin_port = harness_free_port();
    snprintf(buf, sizeof buf, "admin: { listen: \"127.0.0.1:%d\" }\n", F.admin_port);
    fx_host_conf(&F, "c1", buf);
    snprintf(buf, sizeof buf,
             "plugins:\n"
             "  - name: slow\n"
             "    plugin: %s\n"
             "    config: { count_file: %s }\n"
             "    subscriptions: [ { pattern: \"bulk.**\", timeout_ms: 150 } ]\n",
             fx_plugin("plugins/chaos/chaos.so"), calls);
    fx_conf(&F, "10-slow.yaml", buf);
    fx_evbusd(&F, NULL, NULL);
    cr_assert(fx_wait_log(&F, " started (pid ", 20000));
    fx_publish(&F, "late", 4, "bulk.x", "t", "{\"fault\":\"sleep:600\",\"i\":%d}");
    cr_assert(fx_wait_lines(calls, 4, 20000));
    cr_assert(fx_wait_drained(&F, 20000));
    sleep(1); /* a retry would be due by now (retry.base_ms 50) */
    cr_expect_eq(harness_count_lines(calls), 4, "exactly one call per event");
    cr_expect_eq(count_result(calls, "OK"), 4);
    cr_expect_eq(fx_xlen(&F, "t:events:dlq"), 0);
    cr_expect(fx_log_has(&F, "late, but it succeeded: counted as OK, not retried"));
    int st;
    char *m = harness_http_get(F.admin_port, "/metrics", &st);
    cr_expect(m && strstr(m, "evbus_handler_late_ok_total 4\n"), "%s", m ? m : "");
    cr_expect(m && strstr(m, "evbus_handler_timeouts_total 4\n"));
    free(m);
    cr_assert_eq(harness_kill(&F.d, SIGTERM, 20000), 0);
}
