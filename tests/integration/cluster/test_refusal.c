/*
 * redis.cluster in the configuration, where evbus does not run on it:
 * evbusd needs partitions: 2 or more on a cluster (`--check-config` says
 * so, `evbusd` refuses to start with exit status 2 instead of putting the
 * whole stream on one master) and accepts the archive there; evbusctl,
 * which runs on a cluster (test_client.c), refuses one with a single
 * partition.  Real binaries, no cluster needed (the engine on a real
 * cluster: test_engine.c).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static char *dir;
static char conf[512];

static void setup(void)
{
    dir = harness_tmpdir("cluster-conf");
    cr_assert(dir);
    char *schemas = harness_source_path("schemas");
    char yaml[2048];
    snprintf(conf, sizeof conf, "%s/conf.d", dir);
    snprintf(yaml, sizeof yaml,
             "redis: { cluster: [\"redis://127.0.0.1:7000\", \"redis://127.0.0.1:7001\"] }\n"
             "state_dir: %s/state\n"
             "schemas: { dir: %s }\n",
             dir, schemas);
    free(schemas);
    cr_assert_eq(harness_write_file(conf, "00-host.yaml", yaml), 0);
}

static void teardown(void)
{
    harness_rmrf(dir);
    free(dir);
}

TestSuite(cluster_config, .init = setup, .fini = teardown, .timeout = 60);

static int run(const char *bin, char **extra, char **out, char **err)
{
    char *path = harness_build_path(bin);
    char *argv[16] = {path, "-c", conf};
    int n = 3;
    for (int i = 0; extra[i] && n < 15; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    int rc = harness_run(argv, NULL, NULL, out, err, 20000);
    free(path);
    return rc;
}

Test(cluster_config, check_config_accepts_it_and_says_one_partition_will_not_start)
{
    char *out = NULL, *err = NULL;
    char *extra[] = {"--check-config", NULL};
    cr_assert_eq(run("host/daemon/evbusd", extra, &out, &err), 0, "%s", err);
    cr_assert(out && strstr(out, "OK"));
    cr_assert(err && strstr(err, "redis.cluster (") && strstr(err, "00-host.yaml:1:19)"), "%s",
              err);
    cr_assert(strstr(err, "evbusd will not start with it: ") &&
                  strstr(err, "set partitions: 2 or more"),
              "%s", err);
    free(out);
    free(err);
}

Test(cluster_config, evbusd_refuses_one_partition_on_a_cluster)
{
    char *out = NULL, *err = NULL;
    char *extra[] = {NULL};
    cr_assert_eq(run("host/daemon/evbusd", extra, &out, &err), 2, "%s", err);
    cr_assert(err && strstr(err, "with partitions: 1 (default)"), "%s", err);
    cr_assert(strstr(err, "00-host.yaml:1:19"), "%s", err);
    free(out);
    free(err);
}

Test(cluster_config, check_config_accepts_the_archive_on_a_cluster)
{
    /* the archive runs on a cluster (test_jobs.c): nothing refuses it */
    cr_assert_eq(harness_write_file(conf, "10-more.yaml",
                                    "partitions: 6\n"
                                    "postgres: { url: \"postgresql://127.0.0.1:1/x\" }\n"
                                    "retention: { archive: postgres }\n"),
                 0);
    char *out = NULL, *err = NULL;
    char *extra[] = {"--check-config", NULL};
    cr_assert_eq(run("host/daemon/evbusd", extra, &out, &err), 0, "%s", err);
    cr_assert(out && strstr(out, "OK"), "%s", out ? out : "");
    cr_assert(!err || !strstr(err, "will not start"), "%s", err);
    cr_assert(!err || !strstr(err, "retention.archive"), "%s", err);
    free(out);
    free(err);
}

Test(cluster_config, evbusctl_refuses_a_cluster_with_one_partition)
{
    /* never the default redis.url instead, and never one stream on a
     * cluster: every command that needs Redis says what is missing */
    char *cmds[][8] = {{"pending", "list", NULL},
                       {"handlers", "list", NULL},
                       {"dlq", "list", NULL},
                       {"publish", "--type", "a.b", "--tenant", "t", "--data", "{}", NULL}};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char *out = NULL, *err = NULL;
        char **args = cmds[i];
        cr_assert_eq(run("host/ctl/evbusctl", args, &out, &err), 2, "%s: %s", cmds[i][0], err);
        cr_assert(err && strstr(err, "a Redis Cluster is named, but the configuration has "
                                     "partitions: 1"),
                  "%s: %s", cmds[i][0], err);
        free(out);
        free(err);
    }
}
