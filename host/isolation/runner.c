/*
 * runner — the host side of `isolation: process` (see isolation.h): spawns
 * evbus-plugin-runner, hands it the instance (INIT), feeds it the calls
 * that worker threads queue, and contains its deaths.
 *
 * It does not decide what a failed delivery becomes (dispatch and the
 * verdict do), and it never runs plugin code.
 */
#include "isolation/isolation.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "evbus_build_config.h"
#include "isolation/runner_proto.h"
#include "util/clock.h"
#include "util/strcopy.h"
#include "util/log.h"
#include "util/metrics.h"

extern char **environ;

/* The calls a worker handed over together: it sleeps until all are done. */
typedef struct rbatch {
    size_t remaining;
    pthread_cond_t cv;   /* signalled when remaining reaches 0 */
} rbatch_t;

/* One delivery on its way through the child.  Made by runner_prepare,
 * freed by runner_release; the runner only links it while its worker
 * waits in runner_run. */
typedef struct rcall {
    struct rcall *next;
    runner_buf_t frame;  /* the CALL frame, written before queueing */
    uint64_t seq;
    uint32_t timeout_ms;
    int64_t queued_ms;   /* bounds the wait for a child that is down */
    int64_t ran_ms;      /* how long it ran in the child (its outcome's) */
    char event_id[128];  /* for the log line of a crash */
    rbatch_t *batch;     /* while in runner_run */
    /* set by the pump, under the mutex */
    bool done;
    evbus_result_t result;
    char reason[512];
} rcall_t;

typedef enum runner_state {
    RUNNER_UP = 0,       /* a child is running the instance */
    RUNNER_DOWN = 1,     /* it died; restart_at says when to try again */
    RUNNER_STOPPED = 2,  /* stop() ran: no child, the pump has exited */
} runner_state_t;

typedef struct runner {
    char *name, *plugin_path;
    const evbus_host_api_t *api;
    runner_buf_t init_frame; /* INIT, kept for restarts */

    pthread_mutex_t mu;
    /* under mu */
    rcall_t *queued, *queued_tail; /* not yet written to this child */
    rcall_t *sent, *sent_tail;     /* written, in the order the child runs them;
                                      the head is the oldest without an outcome */
    int wfd;                 /* the child's socket for writing; -1 when down */
    runner_buf_t out;        /* bytes owed to the child */
    size_t out_off;
    runner_state_t state;
    bool stopping;
    bool pump_asleep;        /* the pump is (about to be) in poll() */
    char last_failure[256];
    uint64_t next_seq;

    /* the pump's (the control thread's before the pump exists) */
    pthread_t pump;
    bool pump_started;
    int wake_fd;             /* eventfd: a worker queued a call */
    int fd;                  /* the host's end of the socketpair; -1 when down */
    pid_t pid;
    int shm_fd;              /* the progress page (runner_proto.h), mapped at shm */
    runner_shm_t *shm;
    uint64_t answered;       /* outcomes of this child taken (socket or page) */
    runner_buf_t in;         /* bytes read, not yet a whole frame */
    int64_t up_since_ms, restart_at_ms, backoff_ms;
    int64_t running_for_ms;  /* how long the call it killed had run */
    char kill_reason[160];   /* why the pump killed the child, else "" */
} runner_t;

void isolation_runner_path(char *out, size_t len)
{
    const char *env = getenv("EVBUS_PLUGIN_RUNNER");
    if (env && env[0]) {
        snprintf(out, len, "%s", env);
        return;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            snprintf(out, len, "%s/evbus-plugin-runner", self);
            if (access(out, X_OK) == 0)
                return;
        }
    }
    snprintf(out, len, "%s", EVBUS_RUNNER_PATH);
}

/* ---- the child's life ---------------------------------------------------- */

/* "killed by SIGSEGV (signal 11)", "exited with status 3". */
static void describe_status(int status, char *out, size_t len)
{
    if (WIFSIGNALED(status)) {
        const char *abbrev = sigabbrev_np(WTERMSIG(status));
        snprintf(out, len, "killed by SIG%s (signal %d)%s", abbrev ? abbrev : "?",
                 WTERMSIG(status), WCOREDUMP(status) ? ", core dumped" : "");
    } else if (WIFEXITED(status)) {
        snprintf(out, len, "exited with status %d", WEXITSTATUS(status));
    } else {
        snprintf(out, len, "ended (wait status 0x%x)", (unsigned)status);
    }
}

/* Wait for the child to be gone, killing it after wait_ms.  Describes how
 * it ended into out. */
static void reap(runner_t *r, int wait_ms, char *out, size_t len)
{
    if (r->pid <= 0) {
        snprintf(out, len, "not running");
        return;
    }
    int status = 0;
    int64_t end = clock_mono_ms() + wait_ms;
    for (;;) {
        pid_t p = waitpid(r->pid, &status, WNOHANG);
        if (p == r->pid)
            break;
        if (p < 0 && errno != EINTR) {
            snprintf(out, len, "could not be waited for: %s", strerror(errno));
            r->pid = -1;
            return;
        }
        if (p == 0 && clock_mono_ms() >= end) {
            kill(r->pid, SIGKILL);
            end = INT64_MAX;
        }
        struct timespec ts = {0, 2 * 1000000L};
        nanosleep(&ts, NULL);
    }
    describe_status(status, out, len);
    r->pid = -1;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Write all of b to fd (non-blocking), polling up to end_ms. */
static int write_all(int fd, const char *p, size_t len, int64_t end_ms)
{
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN)
            return -1;
        int64_t left = end_ms - clock_mono_ms();
        if (left <= 0)
            return -1;
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        poll(&pfd, 1, (int)(left > 1000 ? 1000 : left));
    }
    return 0;
}

/* Read into r->in until one whole frame is there (up to end_ms).  Returns
 * 1 with *hdr and the payload at r->in.data + sizeof *hdr, 0 on EOF or
 * error, -1 on timeout. */
static int read_frame(runner_t *r, runner_frame_hdr_t *hdr, int64_t end_ms)
{
    for (;;) {
        if (r->in.len >= sizeof *hdr) {
            memcpy(hdr, r->in.data, sizeof *hdr);
            if (hdr->len > RUNNER_FRAME_MAX)
                return 0;
            if (r->in.len >= sizeof *hdr + hdr->len)
                return 1;
        }
        char buf[65536];
        ssize_t n = recv(r->fd, buf, sizeof buf, 0);
        if (n > 0) {
            runner_buf_put(&r->in, buf, (size_t)n);
            continue;
        }
        if (n == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return 0;
        int64_t left = end_ms - clock_mono_ms();
        if (left <= 0)
            return -1;
        struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
        poll(&pfd, 1, (int)(left > 1000 ? 1000 : left));
    }
}

/* Drop the first frame of r->in. */
static void consume_frame(runner_t *r, const runner_frame_hdr_t *hdr)
{
    size_t n = sizeof *hdr + hdr->len;
    memmove(r->in.data, r->in.data + n, r->in.len - n);
    r->in.len -= n;
}

static void close_child_fd(runner_t *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    r->in.len = 0;
}

/*
 * Spawn a child and run INIT.  0 with the child up, or -1 with what went
 * wrong in err (the child is gone then).  Runs on the control thread for
 * the first start, on the pump for restarts.
 */
static int start_child(runner_t *r, char *err, size_t errlen)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        snprintf(err, errlen, "socketpair: %s", strerror(errno));
        return -1;
    }
    /* dup2 onto the same number would keep FD_CLOEXEC: move it first */
    if (sv[1] == RUNNER_FD) {
        int moved = fcntl(sv[1], F_DUPFD_CLOEXEC, RUNNER_FD + 1);
        close(sv[1]);
        sv[1] = moved;
    }
    char path[PATH_MAX];
    isolation_runner_path(path, sizeof path);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, sv[1], RUNNER_FD);
    posix_spawn_file_actions_adddup2(&fa, r->shm_fd, RUNNER_SHM_FD);
    memset(r->shm, 0, sizeof *r->shm); /* no child writes it now */
    r->answered = 0;
    r->running_for_ms = 0;
    char *argv[] = {path, "--instance", r->name, NULL};
    pid_t pid = -1;
    int rc = posix_spawn(&pid, path, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(sv[1]);
    if (rc != 0) {
        close(sv[0]);
        snprintf(err, errlen, "cannot start %.400s: %s", path, strerror(rc));
        return -1;
    }
    r->pid = pid;
    r->fd = sv[0];
    set_nonblock(r->fd);
    r->in.len = 0;
    int64_t end = clock_mono_ms() + ISOLATION_INIT_TIMEOUT_MS;
    runner_frame_hdr_t hdr;
    int got = -1;
    if (write_all(r->fd, r->init_frame.data, r->init_frame.len, end) == 0)
        got = read_frame(r, &hdr, end);
    else
        got = 0;
    if (got == 1 && hdr.kind == RUNNER_INIT_OK) {
        consume_frame(r, &hdr);
        r->up_since_ms = clock_mono_ms();
        METRIC_INC(runner_starts);
        return 0;
    }
    char how[160];
    if (got == 1 && hdr.kind == RUNNER_INIT_FAILED) {
        runner_reader_t rd;
        runner_reader_init(&rd, r->in.data + sizeof hdr, hdr.len);
        snprintf(err, errlen, "%s", runner_read_str(&rd, NULL));
        consume_frame(r, &hdr);
        close_child_fd(r);
        reap(r, ISOLATION_FINI_TIMEOUT_MS, how, sizeof how);
        return -1;
    }
    if (got == -1)
        kill(r->pid, SIGKILL);
    close_child_fd(r);
    reap(r, got == -1 ? 0 : 1000, how, sizeof how);
    if (got == -1)
        snprintf(err, errlen, "runner %.400s did not finish init within %d ms: killed", path,
                 ISOLATION_INIT_TIMEOUT_MS);
    else
        snprintf(err, errlen, "runner %.400s %.150s during init", path, how);
    return -1;
}

/* ---- calls (mu held) --------------------------------------------------------- */

static void finish(rcall_t *c, evbus_result_t res, const char *reason)
{
    c->done = true;
    c->result = res;
    str_copy(c->reason, sizeof c->reason, reason);
    /* one wake-up per batch, not per call */
    if (c->batch && --c->batch->remaining == 0)
        pthread_cond_signal(&c->batch->cv);
}

/* Link c at the end of the sent list; the first one starts running now. */
static void link_sent(runner_t *r, rcall_t *c, int64_t now)
{
    (void)now;
    c->next = NULL;
    if (!r->sent)
        r->sent = c;
    else
        r->sent_tail->next = c;
    r->sent_tail = c;
}

/* Send what r->out holds, without blocking; what the socket does not take
 * stays for the pump (POLLOUT).  -1 when the child is gone. */
static int send_out(runner_t *r)
{
    while (r->out_off < r->out.len) {
        ssize_t n = send(r->wfd, r->out.data + r->out_off, r->out.len - r->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            r->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        return -1;
    }
    r->out.len = r->out_off = 0;
    return 0;
}

/* Move the waiting calls to the sent list and their frames to the child. */
static int take_queued(runner_t *r, int64_t now)
{
    while (r->queued) {
        rcall_t *c = r->queued;
        r->queued = c->next;
        if (!r->queued)
            r->queued_tail = NULL;
        runner_buf_put(&r->out, c->frame.data, c->frame.len);
        link_sent(r, c, now);
    }
    return send_out(r);
}

/* A RESULT for the running call: finish it; the next one starts now. */
static void take_result(runner_t *r, const runner_frame_hdr_t *hdr, const char *payload,
                        int64_t now)
{
    rcall_t *c = r->sent;
    if (!c || c->seq != hdr->seq) {
        log_error("isolation", "instance '%s': runner answered call %llu out of order; "
                  "restarting it", r->name, (unsigned long long)hdr->seq);
        snprintf(r->kill_reason, sizeof r->kill_reason, "broke the protocol");
        kill(r->pid, SIGKILL);
        return;
    }
    runner_reader_t rd;
    runner_reader_init(&rd, payload, hdr->len);
    runner_result_t res;
    runner_read(&rd, &res, sizeof res);
    const char *reason = runner_read_str(&rd, NULL);
    (void)now;
    r->sent = c->next;
    r->answered++;
    if (!r->sent)
        r->sent_tail = NULL;
    c->ran_ms = res.ran_ms;
    finish(c,
           res.result == EVBUS_OK       ? EVBUS_OK
           : res.result == EVBUS_REJECT ? EVBUS_REJECT
                                        : EVBUS_RETRY,
           reason);
}

/* The child died (or was killed): blame the running call, send the others
 * again to the next child, schedule the restart.  Pump, mu not held. */
static bool take_input(runner_t *r);

static void child_died(runner_t *r, int64_t now)
{
    pthread_mutex_lock(&r->mu);
    r->wfd = -1; /* no worker writes to it from here on */
    r->out.len = r->out_off = 0;
    pthread_mutex_unlock(&r->mu);
    char how[160];
    if (r->pid > 0 && r->kill_reason[0])
        kill(r->pid, SIGKILL);
    reap(r, 1000, how, sizeof how);
    /* the answers it wrote before it died, then the ones only the
     * progress page has */
    if (r->fd >= 0)
        take_input(r);
    close_child_fd(r);
    pthread_mutex_lock(&r->mu);
    uint64_t done = atomic_load_explicit(&r->shm->done, memory_order_acquire);
    while (r->sent && r->answered < done) {
        const runner_slot_t *slot = &r->shm->slots[r->answered % RUNNER_SLOTS];
        rcall_t *c = r->sent;
        if (slot->seq != c->seq)
            break; /* cannot be: the page and the sent list follow one order */
        r->sent = c->next;
        if (!r->sent)
            r->sent_tail = NULL;
        r->answered++;
        c->ran_ms = slot->ran_ms;
        char reason[RUNNER_REASON_MAX];
        str_copy(reason, sizeof reason, slot->reason);
        finish(c,
               slot->result == EVBUS_OK       ? EVBUS_OK
               : slot->result == EVBUS_REJECT ? EVBUS_REJECT
                                              : EVBUS_RETRY,
               reason);
    }
    pthread_mutex_unlock(&r->mu);
    char what[256];
    if (r->kill_reason[0])
        snprintf(what, sizeof what, "%.150s (%.90s)", r->kill_reason, how);
    else
        snprintf(what, sizeof what, "%s", how);
    r->kill_reason[0] = '\0';
    METRIC_INC(runner_crashes);

    pthread_mutex_lock(&r->mu);
    rcall_t *blamed = r->sent;
    char event_id[128] = "";
    if (blamed) {
        r->sent = blamed->next;
        snprintf(event_id, sizeof event_id, "%s", blamed->event_id);
        char reason[400];
        snprintf(reason, sizeof reason, "plugin runner of instance '%s' %s while handling this "
                 "event", r->name, what);
        blamed->ran_ms = r->running_for_ms;
        if (!blamed->ran_ms &&
            atomic_load_explicit(&r->shm->running_seq, memory_order_acquire) == blamed->seq)
            blamed->ran_ms =
                now - atomic_load_explicit(&r->shm->running_since_ms, memory_order_relaxed);
        finish(blamed, EVBUS_RETRY, reason);
    }
    /* never started: first in line for the next child */
    if (r->sent) {
        r->sent_tail->next = r->queued;
        if (!r->queued)
            r->queued_tail = r->sent_tail;
        r->queued = r->sent;
    }
    r->sent = r->sent_tail = NULL;
    /* their wait for the next child starts now, not behind the call
     * that hung or crashed */
    for (rcall_t *c = r->queued; c; c = c->next)
        c->queued_ms = now;
    /* a child that answered calls was healthy: one bad delivery is not a
     * crash loop, so the next start is quick again */
    bool healthy = r->answered > 0 || now - r->up_since_ms >= ISOLATION_BACKOFF_RESET_MS;
    if (healthy || r->backoff_ms < ISOLATION_BACKOFF_MIN_MS)
        r->backoff_ms = ISOLATION_BACKOFF_MIN_MS;
    else if (r->backoff_ms < ISOLATION_BACKOFF_MAX_MS)
        r->backoff_ms = r->backoff_ms * 2 > ISOLATION_BACKOFF_MAX_MS ? ISOLATION_BACKOFF_MAX_MS
                                                                     : r->backoff_ms * 2;
    r->restart_at_ms = now + r->backoff_ms;
    r->state = RUNNER_DOWN;
    snprintf(r->last_failure, sizeof r->last_failure, "%s", what);
    int64_t backoff = r->backoff_ms;
    pthread_mutex_unlock(&r->mu);
    if (event_id[0])
        log_event(LOG_ERROR, "isolation", event_id, NULL, NULL, NULL,
                  "instance '%s': plugin runner %s while handling event %s; the delivery is "
                  "retried, the runner restarts in %lld ms", r->name, what, event_id,
                  (long long)backoff);
    else
        log_error("isolation", "instance '%s': plugin runner %s; it restarts in %lld ms",
                  r->name, what, (long long)backoff);
}

/* While the child is down: calls that waited longer than their timeout
 * give up (RETRY), naming the failure that keeps it down. */
static void expire_waiting(runner_t *r, int64_t now)
{
    rcall_t **pp = &r->queued;
    r->queued_tail = NULL;
    while (*pp) {
        rcall_t *c = *pp;
        if (now - c->queued_ms >= (int64_t)c->timeout_ms) {
            *pp = c->next;
            char reason[450];
            snprintf(reason, sizeof reason, "plugin runner of instance '%s' is restarting "
                     "(it %s) and did not come back within %u ms", r->name, r->last_failure,
                     c->timeout_ms);
            finish(c, EVBUS_RETRY, reason);
            continue;
        }
        r->queued_tail = c;
        pp = &c->next;
    }
}

/* ---- the pump -------------------------------------------------------------- */

static void stop_child(runner_t *r)
{
    if (r->fd < 0)
        return;
    pthread_mutex_lock(&r->mu);
    r->wfd = -1;
    pthread_mutex_unlock(&r->mu);
    runner_buf_t b = {0};
    size_t at = runner_buf_begin_frame(&b, RUNNER_FINI, 0);
    runner_buf_end_frame(&b, at);
    int64_t end = clock_mono_ms() + ISOLATION_FINI_TIMEOUT_MS;
    runner_frame_hdr_t hdr;
    int got = 0;
    if (write_all(r->fd, b.data, b.len, end) == 0) {
        r->in.len = 0;
        while ((got = read_frame(r, &hdr, end)) == 1 && hdr.kind != RUNNER_FINI_DONE)
            consume_frame(r, &hdr);
    }
    runner_buf_free(&b);
    if (got != 1)
        log_warn("isolation", "instance '%s': plugin runner did not finish fini() within %d "
                 "ms; killed", r->name, ISOLATION_FINI_TIMEOUT_MS);
    close_child_fd(r);
    char how[160];
    reap(r, got == 1 ? 2000 : 0, how, sizeof how);
}

/* Restart a child that is down.  Pump, mu not held. */
static void restart(runner_t *r)
{
    char err[600];
    if (start_child(r, err, sizeof err) == 0) {
        pthread_mutex_lock(&r->mu);
        r->state = RUNNER_UP;
        r->wfd = r->fd;
        pthread_mutex_unlock(&r->mu);
        log_info("isolation", "instance '%s': plugin runner restarted (pid %d)", r->name,
                 (int)r->pid);
        return;
    }
    METRIC_INC(runner_crashes);
    pthread_mutex_lock(&r->mu);
    r->backoff_ms = r->backoff_ms * 2 > ISOLATION_BACKOFF_MAX_MS ? ISOLATION_BACKOFF_MAX_MS
                                                                 : r->backoff_ms * 2;
    r->restart_at_ms = clock_mono_ms() + r->backoff_ms;
    snprintf(r->last_failure, sizeof r->last_failure, "failed to restart: %.200s", err);
    int64_t backoff = r->backoff_ms;
    pthread_mutex_unlock(&r->mu);
    log_error("isolation", "instance '%s': plugin runner could not be restarted: %s; next try "
              "in %lld ms", r->name, err, (long long)backoff);
}

/* Read what the child wrote and hand out the RESULTs.  false when the
 * child is gone (EOF, error, a protocol breach). */
static bool take_input(runner_t *r)
{
    bool alive = true;
    /* everything the child wrote before it died is read first */
    for (;;) {
        char buf[65536];
        ssize_t n = recv(r->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            runner_buf_put(&r->in, buf, (size_t)n);
            if ((size_t)n < sizeof buf)
                break;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 || errno != EAGAIN)
            alive = false;
        break;
    }
    int64_t now = clock_mono_ms();
    pthread_mutex_lock(&r->mu);
    runner_frame_hdr_t hdr;
    /* every whole frame, then one move of the rest (not one per frame: a
     * batch of answers would cost its size squared) */
    size_t off = 0;
    while (r->in.len - off >= sizeof hdr) {
        memcpy(&hdr, r->in.data + off, sizeof hdr);
        if (hdr.len > RUNNER_FRAME_MAX || hdr.kind != RUNNER_RESULT) {
            snprintf(r->kill_reason, sizeof r->kill_reason, "broke the protocol");
            kill(r->pid, SIGKILL);
            alive = false;
            break;
        }
        if (r->in.len - off < sizeof hdr + hdr.len)
            break;
        take_result(r, &hdr, r->in.data + off + sizeof hdr, now);
        off += sizeof hdr + hdr.len;
    }
    if (off) {
        memmove(r->in.data, r->in.data + off, r->in.len - off);
        r->in.len -= off;
    }
    pthread_mutex_unlock(&r->mu);
    return alive;
}

static void *pump_main(void *arg)
{
    runner_t *r = arg;
    pthread_setname_np(pthread_self(), "evbus-runner");
    for (;;) {
        int64_t now = clock_mono_ms();
        pthread_mutex_lock(&r->mu);
        if (r->stopping) {
            pthread_mutex_unlock(&r->mu);
            break;
        }
        bool up = r->state == RUNNER_UP, dead = false;
        if (up)
            dead = take_queued(r, now) != 0;
        else
            expire_waiting(r, now);
        /* the next moment something is due: the running call's deadline,
         * the restart, the first waiting call's give-up */
        int64_t due = INT64_MAX;
        /* the running call, as the child says (the progress page) */
        bool running = up && r->sent &&
                       atomic_load_explicit(&r->shm->running_seq, memory_order_acquire);
        int64_t since = 0;
        uint32_t limit = 0;
        if (running) {
            since = atomic_load_explicit(&r->shm->running_since_ms, memory_order_relaxed);
            limit = atomic_load_explicit(&r->shm->running_timeout_ms, memory_order_relaxed);
            due = since + limit;
        }
        if (!up) {
            due = r->restart_at_ms;
            for (rcall_t *c = r->queued; c; c = c->next)
                if (c->queued_ms + (int64_t)c->timeout_ms < due)
                    due = c->queued_ms + (int64_t)c->timeout_ms;
        }
        if (running && now >= due) {
            r->running_for_ms = now - since;
            snprintf(r->kill_reason, sizeof r->kill_reason,
                     "was killed after the call ran %lld ms, past its timeout of %u ms",
                     (long long)(now - since), limit);
        }
        bool want_out = r->out_off < r->out.len;
        r->pump_asleep = !dead && !(running && now >= due);
        pthread_mutex_unlock(&r->mu);

        if (dead) {
            child_died(r, now);
            continue;
        }
        if (!up && now >= r->restart_at_ms) {
            restart(r);
            continue;
        }
        if (running && now >= due) {
            child_died(r, now); /* kills it first: kill_reason is set */
            continue;
        }

        struct pollfd pfd[2] = {{.fd = r->wake_fd, .events = POLLIN},
                                {.fd = r->fd, .events = POLLIN | (want_out ? POLLOUT : 0)}};
        /* a worker may have sent a call straight to the child since `due`
         * was taken: look again within ISOLATION_PUMP_TICK_MS, which is how
         * late a timeout can be noticed */
        int64_t cap = up ? ISOLATION_PUMP_TICK_MS : 1000;
        int64_t wait = due == INT64_MAX ? cap : due - now;
        wait = wait > cap ? cap : wait < 0 ? 0 : wait;
        poll(pfd, up ? 2 : 1, (int)wait);
        pthread_mutex_lock(&r->mu);
        r->pump_asleep = false;
        if (up && (pfd[1].revents & POLLOUT) && send_out(r) != 0)
            dead = true;
        pthread_mutex_unlock(&r->mu);
        if (pfd[0].revents & POLLIN) {
            uint64_t v;
            ssize_t n = read(r->wake_fd, &v, sizeof v);
            (void)n;
        }
        if (up && (pfd[1].revents & (POLLIN | POLLHUP | POLLERR)) && !take_input(r))
            dead = true;
        if (dead)
            child_died(r, clock_mono_ms());
    }
    /* stopping: no call is in flight (the generation drained) */
    stop_child(r);
    pthread_mutex_lock(&r->mu);
    for (rcall_t *c = r->queued; c; c = c->next)
        finish(c, EVBUS_RETRY, "the instance is stopping");
    r->queued = r->queued_tail = NULL;
    r->state = RUNNER_STOPPED;
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ---- plugin_remote_ops_t ---------------------------------------------------- */

/* A call with its CALL frame, built from the event now (nothing of ev is
 * kept).  Heap-allocated: a prepared call outlives the event it read. */
static void *runner_prepare(void *remote, size_t sub_index, const evbus_event_t *ev,
                            unsigned flags)
{
    runner_t *r = remote;
    const evbus_host_api_t *api = r->api;
    /* (not calloc: the reason and event id buffers need no zeroing) */
    rcall_t *c = malloc(sizeof *c);
    if (!c) {
        fprintf(stderr, "evbus isolation: out of memory\n");
        abort();
    }
    c->next = NULL;
    c->frame = (runner_buf_t){0};
    c->queued_ms = c->ran_ms = 0;
    c->batch = NULL;
    c->done = false;
    c->result = EVBUS_OK;
    c->reason[0] = '\0';
    int64_t left = api->event_deadline_ms(ev);
    c->timeout_ms = left == INT64_MAX            ? ISOLATION_DEFAULT_TIMEOUT_MS
                    : left < 1                   ? 1
                    : left > (int64_t)UINT32_MAX ? UINT32_MAX
                                                 : (uint32_t)left;
    const char *id = api->event_id(ev);
    str_copy(c->event_id, sizeof c->event_id, id ? id : "?");
    runner_call_t fixed = {
        .sub_index = (uint32_t)sub_index,
        .attempt = api->event_attempt(ev),
        .schema_version = api->event_schema_version(ev),
        .flags = (api->event_is_replay(ev) ? RUNNER_CALL_REPLAY : 0) |
                 (flags & PLUGIN_CALL_OWN_DATA ? RUNNER_CALL_OWN_DATA : 0),
        .timeout_ms = c->timeout_ms,
    };
    size_t raw_len = 0, data_len = 0;
    const char *raw = api->event_raw(ev, &raw_len);
    /* the child parses the raw entry anyway: the data need not travel twice */
    const char *data = flags & PLUGIN_CALL_OWN_DATA ? "" : api->event_data_json(ev, &data_len);
    const char *sid = api->event_stream_id(ev);
    const char *job = api->event_replay_job(ev);
    pthread_mutex_lock(&r->mu);
    c->seq = ++r->next_seq; /* unique; the sent list keeps the send order */
    pthread_mutex_unlock(&r->mu);
    size_t sid_len = sid ? strlen(sid) : 0, job_len = job ? strlen(job) : 0;
    runner_buf_reserve(&c->frame, sizeof(runner_frame_hdr_t) + sizeof fixed +
                                      4 * (sizeof(uint32_t) + 1) + sid_len + raw_len +
                                      data_len + job_len);
    size_t at = runner_buf_begin_frame(&c->frame, RUNNER_CALL, c->seq);
    runner_buf_put(&c->frame, &fixed, sizeof fixed);
    runner_buf_put_str(&c->frame, sid, sid_len);
    runner_buf_put_str(&c->frame, raw, raw_len);
    runner_buf_put_str(&c->frame, data, data_len);
    runner_buf_put_str(&c->frame, job, job_len);
    runner_buf_end_frame(&c->frame, at);
    return c;
}

static void wake_pump(runner_t *r)
{
    if (!r->pump_asleep)
        return;
    r->pump_asleep = false;
    uint64_t one = 1;
    ssize_t n = write(r->wake_fd, &one, sizeof one);
    (void)n;
}

/* Hand n prepared calls to the child in one go and wait until every one
 * has its outcome. */
static void runner_run(void *remote, void *const *calls, size_t n)
{
    runner_t *r = remote;
    rbatch_t batch = {.remaining = n};
    pthread_cond_init(&batch.cv, NULL);
    for (size_t i = 0; i < n; i++)
        ((rcall_t *)calls[i])->batch = &batch;
    pthread_mutex_lock(&r->mu);
    int64_t now = clock_mono_ms();
    if (r->state == RUNNER_STOPPED) {
        for (size_t i = 0; i < n; i++)
            finish(calls[i], EVBUS_RETRY, "the instance has stopped");
    } else if (r->state == RUNNER_UP && r->wfd >= 0 && !r->queued && r->out_off == r->out.len) {
        /* the fast way: straight to the child, the pump only reads the
         * answers (what the socket does not take now, the pump sends) */
        for (size_t i = 0; i < n; i++) {
            rcall_t *c = calls[i];
            c->queued_ms = now;
            runner_buf_put(&r->out, c->frame.data, c->frame.len);
            link_sent(r, c, now);
        }
        /* a failed send: the pump sees the death on its read side */
        if (send_out(r) == 0 && r->out_off < r->out.len)
            wake_pump(r);
    } else {
        for (size_t i = 0; i < n; i++) {
            rcall_t *c = calls[i];
            c->queued_ms = now;
            c->next = NULL;
            if (r->queued_tail)
                r->queued_tail->next = c;
            else
                r->queued = c;
            r->queued_tail = c;
        }
        wake_pump(r);
    }
    while (batch.remaining)
        pthread_cond_wait(&batch.cv, &r->mu);
    for (size_t i = 0; i < n; i++)
        ((rcall_t *)calls[i])->batch = NULL;
    pthread_mutex_unlock(&r->mu);
    pthread_cond_destroy(&batch.cv);
}

static evbus_result_t runner_outcome(void *call, const char **reason, int64_t *took_ms)
{
    rcall_t *c = call;
    if (reason)
        *reason = c->reason;
    if (took_ms)
        *took_ms = c->ran_ms;
    return c->result;
}

static void runner_release(void *call)
{
    rcall_t *c = call;
    if (!c)
        return;
    runner_buf_free(&c->frame);
    free(c);
}

static evbus_result_t runner_call(void *remote, size_t sub_index, const evbus_event_t *ev)
{
    runner_t *r = remote;
    void *c = runner_prepare(remote, sub_index, ev, 0);
    runner_run(remote, &c, 1);
    const char *reason = NULL;
    evbus_result_t res = runner_outcome(c, &reason, NULL);
    if (reason[0])
        r->api->set_reason(ev, "%s", reason);
    runner_release(c);
    return res;
}

/* The progress page: a memfd at an fd above the ones posix_spawn sets up
 * in the child (3, 4), mapped here. */
static int make_shm(runner_t *r)
{
    int fd = memfd_create("evbus-runner", MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    if (fd <= RUNNER_SHM_FD) {
        int moved = fcntl(fd, F_DUPFD_CLOEXEC, RUNNER_SHM_FD + 1);
        close(fd);
        if (moved < 0)
            return -1;
        fd = moved;
    }
    r->shm_fd = fd;
    if (ftruncate(fd, (off_t)sizeof *r->shm) != 0)
        return -1;
    void *p = mmap(NULL, sizeof *r->shm, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return -1;
    r->shm = p;
    return 0;
}

static void runner_free(runner_t *r)
{
    if (r->wake_fd >= 0)
        close(r->wake_fd);
    runner_buf_free(&r->init_frame);
    if (r->shm)
        munmap(r->shm, sizeof *r->shm);
    if (r->shm_fd >= 0)
        close(r->shm_fd);
    runner_buf_free(&r->out);
    runner_buf_free(&r->in);
    pthread_mutex_destroy(&r->mu);
    free(r->name);
    free(r->plugin_path);
    free(r);
}

static void runner_stop(void *remote)
{
    runner_t *r = remote;
    if (r->pump_started) {
        pthread_mutex_lock(&r->mu);
        r->stopping = true;
        uint64_t one = 1;
        ssize_t n = write(r->wake_fd, &one, sizeof one);
        (void)n;
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->pump, NULL);
    } else {
        stop_child(r);
    }
    runner_free(r);
}

static const plugin_remote_ops_t runner_ops = {.call = runner_call,
                                               .stop = runner_stop,
                                               .prepare = runner_prepare,
                                               .run = runner_run,
                                               .outcome = runner_outcome,
                                               .release = runner_release};

int isolation_instance_new(plugin_lib_t *lib, const char *name, const char *config_json,
                           const isolation_conf_t *conf, plugin_instance_t **out, char *err,
                           size_t errlen)
{
    runner_t *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "instance '%s' (%s): out of memory", name, plugin_lib_path(lib));
        return -1;
    }
    r->fd = -1;
    r->wfd = -1;
    r->pid = -1;
    r->shm_fd = -1;
    r->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (make_shm(r) != 0) {
        snprintf(err, errlen, "instance '%s' (%s): cannot make its runner's progress page: %s",
                 name, plugin_lib_path(lib), strerror(errno));
        if (r->wake_fd >= 0)
            close(r->wake_fd);
        r->wake_fd = -1;
        runner_free(r);
        return -1;
    }
    r->name = strdup(name);
    r->plugin_path = strdup(plugin_lib_path(lib));
    r->api = conf->api;
    r->backoff_ms = ISOLATION_BACKOFF_MIN_MS;
    pthread_mutex_init(&r->mu, NULL);
    if (r->wake_fd < 0 || !r->name || !r->plugin_path) {
        snprintf(err, errlen, "instance '%s' (%s): cannot set up its runner: %s", name,
                 plugin_lib_path(lib), r->wake_fd < 0 ? strerror(errno) : "out of memory");
        runner_free(r);
        return -1;
    }
    runner_init_t fixed = {.proto = RUNNER_PROTO_VERSION,
                           .init_flags = conf->init_flags,
                           .partitions = conf->partitions,
                           .log_level = log_get_level(),
                           .log_format = log_get_format()};
    const char *cfg = config_json ? config_json : "{}";
    size_t at = runner_buf_begin_frame(&r->init_frame, RUNNER_INIT, 0);
    runner_buf_put(&r->init_frame, &fixed, sizeof fixed);
    runner_buf_put_str(&r->init_frame, name, strlen(name));
    runner_buf_put_str(&r->init_frame, r->plugin_path, strlen(r->plugin_path));
    runner_buf_put_str(&r->init_frame, conf->private_dir, strlen(conf->private_dir));
    runner_buf_put_str(&r->init_frame, cfg, strlen(cfg));
    runner_buf_put_str(&r->init_frame, conf->redis_url,
                       conf->redis_url ? strlen(conf->redis_url) : 0);
    runner_buf_put_str(&r->init_frame, conf->redis_cluster,
                       conf->redis_cluster ? strlen(conf->redis_cluster) : 0);
    runner_buf_put_str(&r->init_frame, conf->stream, conf->stream ? strlen(conf->stream) : 0);
    runner_buf_put_str(&r->init_frame, (const char *)plugin_lib_digest(lib), PLUGIN_DIGEST_LEN);
    runner_buf_end_frame(&r->init_frame, at);

    char why[600];
    if (start_child(r, why, sizeof why) != 0) {
        snprintf(err, errlen, "instance '%s' (%s): isolation: process: %s", name,
                 plugin_lib_path(lib), why);
        runner_free(r);
        return -1;
    }
    r->state = RUNNER_UP;
    r->wfd = r->fd;
    if (pthread_create(&r->pump, NULL, pump_main, r) != 0) {
        snprintf(err, errlen, "instance '%s' (%s): cannot start its runner's thread", name,
                 plugin_lib_path(lib));
        stop_child(r);
        runner_free(r);
        return -1;
    }
    r->pump_started = true;
    log_info("isolation", "instance '%s': plugin runner started (pid %d)", name, (int)r->pid);
    return plugin_instance_new_remote(lib, name, config_json, &runner_ops, r, out, err, errlen);
}
