/*
 * isolation — `isolation: process`: a plugin instance whose init(),
 * handlers and fini() run in a child process, evbus-plugin-runner, so that
 * an abort, a segfault, a hang or an exit() in the plugin fails only that
 * instance's running delivery instead of taking evbusd down.
 *
 * The host still opens the .so itself (plugin_lib_open: the descriptor,
 * subscribers, config map and upcasters are checked and routed as for any
 * plugin, and upcasters run in the host); only the instance lives in the
 * child, which loads the same file (its SHA-256 must match the host's) and
 * calls init() with the same config, flags and host API.  The instance is
 * an ordinary plugin_instance_t whose calls are forwarded
 * (plugin_instance_new_remote), so dispatch, the verdict, retries and the
 * DLQ treat it as any other: the child only returns each delivery's result
 * and reason, the host decides.
 *
 * A runner (one per instance, shared by the generations that keep its
 * state) has:
 *  - a child, the host's end of its socketpair and the progress page the
 *    child writes (runner_proto.h);
 *  - a pump thread, the only thread that reads from the child: it reads
 *    RESULTs and hands them to the waiting workers, sends what the socket
 *    did not take at once, bounds the running call by its timeout, notices
 *    a death (EOF), reaps the child and restarts it;
 *  - a queue of calls.  A worker thread hands over a batch of calls (one
 *    for a lone call; a whole chunk's with dctx_dispatch_chunk, core/
 *    dispatch.h): it builds their CALL frames and, when nothing is waiting
 *    before them, writes them to the child itself (one send(), no hop
 *    through the pump); otherwise it queues them for the pump, which
 *    writes every queued frame in one send().  Either way it then sleeps on
 *    the batch's condition variable until the pump set the last result:
 *    one wake-up per batch.
 *
 * What a child failure does
 *  - The calls the child finished keep their outcomes, whether their
 *    RESULT reached the socket or only the progress page (runner_proto.h).
 *  - The first call without an outcome is the one that was running: it
 *    fails as EVBUS_RETRY with a reason naming the failure ("killed by
 *    SIGSEGV (signal 11)", "exited with status 3", "was killed after the
 *    call ran 1004 ms, past its timeout of 1000 ms"), which dispatch
 *    counts like any failed call (retry schedule, attempts, dead letter
 *    with that reason at the last attempt).  The timeout is the call's
 *    (its subscription's timeout_ms, else handler_timeout_ms), read from
 *    the page at least every ISOLATION_PUMP_TICK_MS.
 *  - The calls behind it never started: they are sent again to the next
 *    child, waiting at most their own timeout (counted from the death)
 *    for it to come up.
 *  - The child is restarted (a fresh init(): in-memory state is lost, as
 *    after a host restart) after a backoff: ISOLATION_BACKOFF_MIN_MS when
 *    the child that died had answered a call (one bad delivery is not a
 *    crash loop) or lived ISOLATION_BACKOFF_RESET_MS, else twice the last
 *    one, up to ISOLATION_BACKOFF_MAX_MS (a child that dies before it
 *    answers anything, or cannot be restarted, is crash-looping).
 *  - Logged at error level with the instance, counted in
 *    evbus_plugin_runner_crashes_total / evbus_plugin_runner_starts_total.
 *
 * Costs and limits: an instance's calls run one at a time in its child (as
 * with EVBUS_PLUGIN_F_SERIAL); each delivery is copied (raw entry and data
 * JSON), and the child parses it again when the handler first asks for an
 * attribute or the data (core/event.h, `lazy`: a handler that never looks
 * costs no parse); the plugin's constructors and upcasters run in the
 * host.
 *
 * Thread rules: isolation_instance_new and the stop behind
 * plugin_instance_free run on the control thread; calls through
 * plugin_instance_call from any number of worker threads at once;
 * isolation_runner_path from any thread.
 *
 * TSan reasoning: everything a worker and the pump share is read and
 * written under the runner's mutex: the waiting queue and the sent list
 * (its head is the running call, with its start time), each call's result,
 * reason and done flag, a batch's count of calls left, the bytes owed to
 * the child and the write side of the socket (a worker's send() happens
 * under the mutex, so frames never interleave), the child's state, the
 * pump's sleep flag and the call numbers.  The pump alone owns the read
 * side: the socket fd it polls, the input buffer, the count of answers,
 * the child's pid, the backoff and the restart time; it reads the
 * progress page (acquire loads; the child's stores release) and resets it
 * only while no child runs.  The write side is withdrawn (set to -1
 * under the mutex) before the pump closes the socket, so no worker writes
 * to a closed or reused fd.  A call's frame, timeout and event id are
 * written by its worker before it is linked and only read afterwards.
 * Before the pump thread exists the control thread owns all of it; after
 * stop() joined the pump, it owns it again.  The counters are atomic
 * (util/metrics.h).
 */
#ifndef EVBUS_ISOLATION_H
#define EVBUS_ISOLATION_H

#include <stddef.h>
#include <stdint.h>

#include <evbus/plugin.h>

#include "plugin/plugin.h"

#define ISOLATION_BACKOFF_MIN_MS 100
#define ISOLATION_BACKOFF_MAX_MS 30000
#define ISOLATION_BACKOFF_RESET_MS 30000
/* how long init() and fini() in the child may take */
#define ISOLATION_INIT_TIMEOUT_MS 30000
#define ISOLATION_FINI_TIMEOUT_MS 10000
/* how often the pump looks at the running call's deadline at least (so a
 * timeout kill may come this much late) */
#define ISOLATION_PUMP_TICK_MS 50
/* a call's hang bound when the host gave it no deadline */
#define ISOLATION_DEFAULT_TIMEOUT_MS 30000

typedef struct isolation_conf {
    const char *private_dir;  /* where the child keeps its copy of the .so */
    const char *redis_url;    /* api->publish in the child (NULL: refused) */
    const char *redis_cluster; /* a Redis Cluster's seeds for it instead (NULL: none) */
    const char *stream;
    unsigned partitions;      /* the `partitions` setting, for api->publish */
    uint32_t init_flags;      /* EVBUS_INIT_* */
    const evbus_host_api_t *api; /* the table handlers are called with */
} isolation_conf_t;

/*
 * Starts a child for instance `name` of lib, runs init() there with
 * config_json, and on success returns in *out a plugin_instance_t that
 * forwards to it.  Returns -1 with "instance 'NAME' (PATH): ..." in err
 * when the runner cannot be started, the child's .so differs from lib's,
 * init() failed (its message) or the child died or hung in init().
 * Nothing is left running on failure.
 */
int isolation_instance_new(plugin_lib_t *lib, const char *name, const char *config_json,
                           const isolation_conf_t *conf, plugin_instance_t **out, char *err,
                           size_t errlen);

/*
 * The runner executable: $EVBUS_PLUGIN_RUNNER when set, else
 * evbus-plugin-runner beside the running executable when there is one
 * (a build tree), else the installed one (libexecdir/evbus/).
 */
void isolation_runner_path(char *out, size_t len);

#endif
