/*
 * ctl — evbusctl's commands and the plumbing they share.
 *
 * evbusctl [-c DIR] [--redis URL | --redis-cluster SEEDS] [--postgres URL]
 *          [--stream NAME] COMMAND ...
 * Global options come before the command.  Connection settings resolve in
 * this order: the global flags, then EVBUS_REDIS_URL / EVBUS_REDIS_CLUSTER
 * / EVBUS_POSTGRES_URL, then the configuration directory (-c, else $EVBUS_CONF_DIR, else the
 * installed conf.d when it exists).  With no configuration directory at all
 * evbusctl never guesses a server: a command that needs one and was not
 * given it refuses (ctl_no_config).  On a Redis Cluster (redis_cluster)
 * the commands that need Redis (`publish`, `dlq`, `pending`, `handlers`)
 * run through libevbus's cluster client, each partition's commands on its
 * node (evbus_client_redis_key).
 *
 * A broken file in the configuration directory does not stop the commands
 * that only talk to Redis, PostgreSQL or the admin endpoint: they use the
 * settings that parsed (config_load_partial) after one warning line, and
 * the settings the files could not settle come from the running evbusd's
 * record of the same directory (STATE_DIR/evbusd-running.json) when there
 * is one.  Commands whose output is the configuration itself use
 * ctl_env_valid() and still refuse.
 *
 * Exit codes shared by every subcommand: 0 success, 1 the operation ran
 * but failed (Redis or PostgreSQL down, not found, `validate` found invalid
 * lines), 2 usage, configuration or input error (bad flags, an event that
 * cannot be published, a file that cannot be read).
 * Thread rules: not thread-safe; calls must be serialized (`publish --parallel`
 * calls them from its threads under one lock).
 */
#ifndef EVBUS_CTL_H
#define EVBUS_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "client/evbus_client.h"
#include "config/config.h"

/* CTL_PARTIAL: `reload` only: applied, but changed settings wait for a
 * restart. */
enum { CTL_OK = 0, CTL_FAIL = 1, CTL_USAGE = 2, CTL_PARTIAL = 3 };

/*
 * The commands main.c dispatches to, one cmd_*.c per family.  argv[0] is
 * the command's name and argv[1..] its own arguments (the global options
 * are gone); each parses them itself and returns one of the exit codes
 * above.  Declared here once so that main.c's table and the definitions
 * cannot drift apart.
 */
int cmd_publish(int argc, char **argv);  /* cmd_publish.c */
int cmd_dlq(int argc, char **argv);      /* cmd_dlq.c */
int cmd_validate(int argc, char **argv); /* cmd_validate.c */
int cmd_migrate(int argc, char **argv);  /* cmd_migrate.c */
int cmd_events(int argc, char **argv);   /* cmd_events.c */
int cmd_replay(int argc, char **argv);   /* cmd_replay.c */
int cmd_status(int argc, char **argv);   /* cmd_status.c */
int cmd_reload(int argc, char **argv);   /* cmd_status.c */
int cmd_config(int argc, char **argv);   /* cmd_config.c */
int cmd_pending(int argc, char **argv);  /* cmd_pending.c */
int cmd_token(int argc, char **argv);    /* cmd_token.c */
int cmd_handlers(int argc, char **argv); /* cmd_handlers.c */
int cmd_plugin(int argc, char **argv);   /* cmd_plugin.c */

/* The global options as given (NULL when absent): set by main.c before
 * the command runs, read by ctl_env(). */
extern const char *ctl_opt_conf_dir, *ctl_opt_redis, *ctl_opt_redis_cluster, *ctl_opt_postgres,
    *ctl_opt_stream;

typedef struct ctl_env {
    const char *conf_dir;      /* NULL when none was found            */
    const char *conf_origin;   /* how conf_dir was chosen: "from -c", "from
                                  EVBUS_CONF_DIR", "the installed default" */
    evbus_config_t *cfg;       /* NULL when no conf dir was used      */
    size_t conf_errors;        /* errors in conf_dir (cfg holds what parsed) */
    char *redis_url;           /* NULL when nothing names one Redis server */
    char *redis_cluster;       /* the seeds of a Redis Cluster (then redis_url is NULL):
                                  --redis-cluster, else the configuration's
                                  redis.cluster (EVBUS_REDIS_CLUSTER over it), else
                                  EVBUS_REDIS_CLUSTER without a configuration; --redis
                                  names one server over all of them */
    char *postgres_url;        /* NULL when not configured            */
    char *stream;
    unsigned partitions;       /* `partitions` (1 without a configuration) */
    char *group;
    char *dlq_stream;
    char *state_dir;           /* NULL when no conf dir was used      */
    char *dlq_archive;         /* dlq.archive, else <state_dir>/dlq-archive.jsonl; NULL when
                                  no conf dir was used */
    char *admin_listen;        /* NULL when not configured            */
} ctl_env_t;

/* The configuration directory evbusctl uses (NULL: none) and how it was
 * chosen (*origin, as in ctl_env_t); reads nothing. */
const char *ctl_conf_dir(const char **origin);

/* The resolved settings; loads the configuration on first use.  A broken
 * file costs one warning line on stderr, not the command; a directory that
 * cannot be read at all exits with status 2 after printing why. */
const ctl_env_t *ctl_env(void);

/* ctl_env() for commands that show the configuration itself (`config show
 * --files`): NULL after printing every error of a broken conf.d (the
 * caller exits 2). */
const ctl_env_t *ctl_env_valid(const char *cmd);

/* "evbusctl CMD: no configuration ..." telling to pass -c DIR, set
 * EVBUS_CONF_DIR or give `flags` (e.g. "--redis URL"), for a command that
 * needs `what` (e.g. "Redis") when no configuration directory exists;
 * returns CTL_USAGE. */
int ctl_no_config(const char *cmd, const char *what, const char *flags);

/* A client of env's Redis (one server, or the cluster of redis_cluster)
 * and stream with env's partition count (evbus_client_set_partitions);
 * NULL with the reason in err. */
evbus_client_t *ctl_client(const ctl_env_t *env, char *err, size_t errlen);

/* The usage error of a command that needs PostgreSQL and has no URL. */
int ctl_no_postgres(const char *cmd);

/* Enforce the configuration's retention cap (retention.max_entries /
 * max_bytes, on_full) on a client, so publishing refuses what does not fit
 * even while evbusd is stopped; without a cap in the files the client
 * follows the policy evbusd publishes in Redis. */
void ctl_apply_retention(evbus_client_t *c);
/* redis.wait_replicas / redis.wait_timeout_ms of the configuration (when
 * there is one) for a client that publishes. */
void ctl_apply_wait(evbus_client_t *c);

/* Print "evbusctl CMD: message" + a hint to stderr; returns CTL_USAGE. */
int ctl_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The arguments every subcommand group shares: --json and -h/--help
 * anywhere in argv[1..argc); the others go, in order, to rest (at most
 * cap).  Returns -1 to go on, else the exit status to return at once
 * (CTL_OK after printing usage to stdout, CTL_USAGE for too many). */
int ctl_group_args(int argc, char **argv, const char *cmd, void (*usage)(FILE *), bool *json,
                   char **rest, int cap, int *nrest);
/* Print "evbusctl CMD: message" to stderr; returns CTL_FAIL. */
int ctl_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Matches argv[*i] against "--name VALUE" or "--name=VALUE" and advances
 * *i past VALUE.  Returns 1 when matched (*val set), 0 when argv[*i] is
 * another option, -1 when the value is missing. */
int ctl_opt_value(int argc, char **argv, int *i, const char *name, const char **val);

/* One HTTP/1.0 request to an IPv4 host:port (5 s timeouts); returns the
 * status code with the body (malloc'd, the caller frees it) in *body, or
 * -1 with err. */
int ctl_http_request(const char *addr, const char *method, const char *path, char **body,
                     char *err, size_t errlen);

/* True when stdout/stderr is a terminal (progress bars only then). */
bool ctl_stdout_tty(void);
bool ctl_stderr_tty(void);

/* Draw/refresh a one-line progress bar on stderr when it is a terminal. */
void ctl_progress(const char *label, uint64_t done, uint64_t total);
void ctl_progress_end(void);

#endif
