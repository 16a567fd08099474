/*
 * evbus-plugin-runner — the child side of `isolation: process` (see
 * isolation.h and runner_proto.h).  evbusd starts it with its socket on fd
 * 3; it is not meant to be run by hand.
 *
 * It loads the plugin the way evbusd does (a private copy under the
 * state_dir, the same descriptor checks), refuses a file whose SHA-256
 * differs from the host's, runs init() with the host API of this process
 * (the same table evbusd hands in-process plugins: logging goes to the
 * stderr it shares with evbusd, prefixed with the instance name; publish
 * opens its own Redis connection), then runs each CALL on a copy of the
 * delivery and answers with the result and the reason.  One thread: calls
 * run one after another, in the order they came.
 *
 * It inherits evbusd's signal mask, with SIGHUP, SIGTERM and SIGINT
 * blocked: a `systemctl stop` or a Ctrl-C to the process group does not
 * cut a handler short.  It stops when evbusd sends FINI (fini() runs),
 * when its socket closes, or with evbusd (PR_SET_PDEATHSIG).
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/event.h"
#include "core/jarena.h"
#include "isolation/runner_proto.h"
#include "plugin/plugin.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/strcopy.h"

typedef struct child {
    runner_buf_t in, out;
    plugin_lib_t *lib;
    plugin_instance_t *inst;
    char name[160];
    struct evbus_event ev;
    jarena_t arena;      /* ev's envelope tree, as a dispatch thread has */
    char reason[512];
    /* the entry ev was parsed from (its own copy: ev points into it), so
     * that the next handler of the same entry reuses the parse, as
     * dispatch does in-process */
    runner_buf_t entry;
    size_t sid_len;
    bool entry_own_data;
    runner_shm_t *shm;    /* the progress page (runner_proto.h) */
    size_t unsent;        /* RESULTs in out, not yet written */
    int64_t unsent_since; /* clock_mono_ms() of the oldest of them */
} child_t;

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "evbus-plugin-runner: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(2);
}

/* Write the whole out buffer (blocking). */
static void flush(child_t *c)
{
    size_t off = 0;
    while (off < c->out.len) {
        ssize_t n = send(RUNNER_FD, c->out.data + off, c->out.len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            exit(0); /* the host is gone */
        off += (size_t)n;
    }
    c->out.len = 0;
    c->unsent = 0;
}

static void reply_str(child_t *c, runner_kind_t kind, uint64_t seq, const char *s)
{
    size_t at = runner_buf_begin_frame(&c->out, kind, seq);
    if (s)
        runner_buf_put_str(&c->out, s, strlen(s));
    runner_buf_end_frame(&c->out, at);
    flush(c);
}

static void do_init(child_t *c, const char *payload, size_t len)
{
    runner_reader_t rd;
    runner_reader_init(&rd, payload, len);
    runner_init_t fixed;
    runner_read(&rd, &fixed, sizeof fixed);
    const char *name = runner_read_str(&rd, NULL);
    const char *path = runner_read_str(&rd, NULL);
    const char *private_dir = runner_read_str(&rd, NULL);
    const char *config = runner_read_str(&rd, NULL);
    const char *redis_url = runner_read_str(&rd, NULL);
    const char *cluster = runner_read_str(&rd, NULL);
    const char *stream = runner_read_str(&rd, NULL);
    size_t dlen = 0;
    const char *digest = runner_read_str(&rd, &dlen);
    char err[1200];
    if (rd.bad || fixed.proto != RUNNER_PROTO_VERSION || dlen != PLUGIN_DIGEST_LEN) {
        snprintf(err, sizeof err, "the runner speaks protocol %u and got a malformed INIT "
                 "(protocol %u): is it from another build than evbusd?", RUNNER_PROTO_VERSION,
                 fixed.proto);
        reply_str(c, RUNNER_INIT_FAILED, 0, err);
        exit(2);
    }
    snprintf(c->name, sizeof c->name, "%s", name);
    log_set_level(fixed.log_level);
    log_set_format(fixed.log_format);
    if ((redis_url[0] || cluster[0]) && stream[0])
        event_host_api_configure(redis_url[0] ? redis_url : NULL, cluster, stream,
                                 fixed.partitions);
    if (plugin_lib_open(path, private_dir, &c->lib, err, sizeof err) != 0) {
        reply_str(c, RUNNER_INIT_FAILED, 0, err);
        exit(2);
    }
    if (memcmp(plugin_lib_digest(c->lib), digest, PLUGIN_DIGEST_LEN) != 0) {
        snprintf(err, sizeof err, "%s changed on disk since evbusd loaded it; reload to use "
                 "the new file", path);
        reply_str(c, RUNNER_INIT_FAILED, 0, err);
        exit(2);
    }
    if (plugin_instance_new(c->lib, c->name, config, event_host_api(), fixed.init_flags,
                            &c->inst, err, sizeof err) != 0) {
        reply_str(c, RUNNER_INIT_FAILED, 0, err);
        exit(2);
    }
    reply_str(c, RUNNER_INIT_OK, 0, NULL);
}

/* One delivery on this process's copy of the event, as dispatch would
 * present it: parsed envelope, the data at the handler's version, the
 * attempt and the deadline counted from now. */
static void do_call(child_t *c, uint64_t seq, const char *payload, size_t len)
{
    runner_reader_t rd;
    runner_reader_init(&rd, payload, len);
    runner_call_t fixed;
    runner_read(&rd, &fixed, sizeof fixed);
    const char *sid = runner_read_str(&rd, NULL);
    size_t raw_len = 0, data_len = 0;
    const char *raw = runner_read_str(&rd, &raw_len);
    const char *data = runner_read_str(&rd, &data_len);
    const char *job = runner_read_str(&rd, NULL);
    const evbus_plugin_descriptor_t *d = plugin_lib_descriptor(c->lib);
    if (rd.bad || fixed.sub_index >= d->n_subscribers) {
        fprintf(stderr, "evbus-plugin-runner: malformed CALL from evbusd\n");
        exit(2);
    }
    struct evbus_event *ev = &c->ev;
    bool own = (fixed.flags & RUNNER_CALL_OWN_DATA) != 0;
    size_t sid_len = strlen(sid);
    bool same = own && c->entry_own_data && c->entry.len == sid_len + 1 + raw_len &&
                c->sid_len == sid_len && memcmp(c->entry.data, sid, sid_len) == 0 &&
                memcmp(c->entry.data + sid_len + 1, raw, raw_len) == 0;
    if (!same) {
        event_reset(ev);
        c->entry.len = 0;
        runner_buf_put(&c->entry, sid, sid_len + 1);
        runner_buf_put(&c->entry, raw, raw_len);
        c->sid_len = sid_len;
        c->entry_own_data = own;
        ev->stream_id = c->entry.data;
        ev->raw = c->entry.data + sid_len + 1;
        ev->raw_len = raw_len;
        /* parsed when the handler first asks for an attribute or the data
         * (core/event.h): a handler that never looks costs no parse */
        atomic_store_explicit(&ev->lazy, true, memory_order_relaxed);
    }
    /* (in this frame, alive during the call; NULL: the envelope's own) */
    ev->lazy_data = own ? NULL : data;
    ev->lazy_data_len = data_len;
    ev->attempt = fixed.attempt;
    ev->schema_version = fixed.schema_version;
    ev->is_replay = (fixed.flags & RUNNER_CALL_REPLAY) != 0;
    free(ev->replay_job);
    ev->replay_job = job[0] ? strdup(job) : NULL;
    c->reason[0] = '\0';
    ev->reason = c->reason;
    ev->reason_len = sizeof c->reason;
    /* answers wait at most RUNNER_FLUSH_MS, and never more than the
     * progress page can hold */
    int64_t start = clock_mono_ms();
    if (c->unsent && (c->unsent >= RUNNER_FLUSH_RESULTS ||
                      start - c->unsent_since >= RUNNER_FLUSH_MS))
        flush(c);
    runner_shm_t *shm = c->shm;
    atomic_store_explicit(&shm->running_since_ms, start, memory_order_relaxed);
    atomic_store_explicit(&shm->running_timeout_ms, fixed.timeout_ms, memory_order_relaxed);
    atomic_store_explicit(&shm->running_seq, seq, memory_order_release);
    ev->deadline_ms = clock_coarse_ms() + fixed.timeout_ms;
    evbus_result_t r = plugin_instance_call(c->inst, &d->subscribers[fixed.sub_index], ev);
    ev->reason = NULL;
    ev->reason_len = 0;
    int64_t ran = clock_mono_ms() - start;
    runner_result_t res = {.result = (uint32_t)r,
                           .ran_ms = ran < 0 ? 0 : ran > UINT32_MAX ? UINT32_MAX : (uint32_t)ran};
    /* the outcome first in the page (it survives this process), then the
     * count that makes it visible */
    uint64_t done = atomic_load_explicit(&shm->done, memory_order_relaxed);
    runner_slot_t *slot = &shm->slots[done % RUNNER_SLOTS];
    slot->seq = seq;
    slot->result = res.result;
    slot->ran_ms = res.ran_ms;
    str_copy(slot->reason, sizeof slot->reason, c->reason);
    atomic_store_explicit(&shm->done, done + 1, memory_order_release);
    atomic_store_explicit(&shm->running_seq, 0, memory_order_release);
    size_t at = runner_buf_begin_frame(&c->out, RUNNER_RESULT, seq);
    runner_buf_put(&c->out, &res, sizeof res);
    runner_buf_put_str(&c->out, c->reason, strlen(c->reason));
    runner_buf_end_frame(&c->out, at);
    if (!c->unsent++)
        c->unsent_since = clock_mono_ms();
}

static void do_fini(child_t *c)
{
    plugin_instance_free(c->inst);
    c->inst = NULL;
    plugin_lib_close(c->lib);
    c->lib = NULL;
    reply_str(c, RUNNER_FINI_DONE, 0, NULL);
    event_reset(&c->ev);
    if (c->ev.arena)
        jarena_destroy(&c->arena);
    runner_buf_free(&c->entry);
    runner_buf_free(&c->in);
    runner_buf_free(&c->out);
    exit(0);
}

int main(int argc, char **argv)
{
    (void)argc, (void)argv;
    /* die with evbusd even when a handler never returns */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (fcntl(RUNNER_FD, F_GETFD) < 0)
        die("%s", "fd 3 is not open: this program is started by evbusd for instances with "
                  "`isolation: process`, not by hand");
    static child_t c;
    c.shm = mmap(NULL, sizeof *c.shm, PROT_READ | PROT_WRITE, MAP_SHARED, RUNNER_SHM_FD, 0);
    if (c.shm == MAP_FAILED)
        die("fd 4 is not the progress page evbusd maps: %s", strerror(errno));
    close(RUNNER_SHM_FD); /* the mapping stays */
    close_range(RUNNER_FD + 1, ~0u, 0);
    signal(SIGPIPE, SIG_IGN);
    jarena_install(); /* before init() can start a thread, as evbusd does */
    if (jarena_init(&c.arena) == 0)
        c.ev.arena = &c.arena;
    event_reset(&c.ev);
    bool inited = false;
    for (;;) {
        runner_frame_hdr_t hdr;
        /* every whole frame read so far, in order */
        size_t off = 0;
        while (c.in.len - off >= sizeof hdr) {
            memcpy(&hdr, c.in.data + off, sizeof hdr);
            if (hdr.len > RUNNER_FRAME_MAX)
                die("%s", "frame too large: protocol error");
            if (c.in.len - off < sizeof hdr + hdr.len)
                break;
            const char *payload = c.in.data + off + sizeof hdr;
            if (!inited && hdr.kind != RUNNER_INIT)
                die("%s", "first frame is not INIT: protocol error");
            switch (hdr.kind) {
            case RUNNER_INIT:
                do_init(&c, payload, hdr.len);
                inited = true;
                break;
            case RUNNER_CALL:
                do_call(&c, hdr.seq, payload, hdr.len);
                break;
            case RUNNER_FINI:
                do_fini(&c);
                break;
            default:
                die("%s", "unknown frame kind: protocol error");
            }
            off += sizeof hdr + hdr.len;
        }
        if (off) {
            memmove(c.in.data, c.in.data + off, c.in.len - off);
            c.in.len -= off;
        }
        /* every CALL read so far has run: answer them before waiting */
        if (c.unsent)
            flush(&c);
        /* straight into the input buffer: no copy through the stack */
        if (c.in.cap - c.in.len < 65536)
            runner_buf_reserve(&c.in, c.in.len + 2 * 65536);
        ssize_t n = read(RUNNER_FD, c.in.data + c.in.len, c.in.cap - c.in.len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            exit(0); /* evbusd closed its end: it stopped or died */
        c.in.len += (size_t)n;
    }
}
