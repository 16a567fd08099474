/*
 * crash — see crash.h.  Everything the signal handler touches is static
 * and preformatted: it may only call async-signal-safe functions (write,
 * open, close, raise, sigaction) plus backtrace_symbols_fd, whose library
 * is loaded by a first backtrace() at init so it does not allocate later.
 */
#include "core/crash.h"

#include <execinfo.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/log.h"
#include "util/metrics.h"

#define SLOTS 64
#define KEEP 64 /* crash records kept in memory for crash_handler_for */

typedef struct slot {
    char who[32];
    _Atomic(const char *) handler, event, entry;
} slot_t;

static slot_t slots[SLOTS];
static atomic_int n_slots;
static _Thread_local int my_slot = -1;
static char record_path[1100];
static bool installed;

typedef struct record {
    long long at_ms;
    int sig;
    char entry[48], handler[160], event[128];
} record_t;

static record_t recent[KEEP];
static int n_recent;
static long long crashes_total, starts_total;

/* ---- async-signal-safe formatting ------------------------------------ */

typedef struct out {
    char buf[2048];
    size_t len;
} out_t;

static void put(out_t *o, const char *s)
{
    for (; s && *s && o->len < sizeof o->buf - 1; s++)
        o->buf[o->len++] = *s;
}

/* At most n bytes of s, stopping at a control character. */
static void put_n(out_t *o, const char *s, size_t n)
{
    for (size_t i = 0; s && i < n && s[i] && (unsigned char)s[i] >= 0x20 &&
                       o->len < sizeof o->buf - 1;
         i++)
        o->buf[o->len++] = s[i];
}

static void put_num(out_t *o, long long v)
{
    char tmp[24];
    int n = 0;
    bool neg = v < 0;
    unsigned long long u = neg ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u && n < 23);
    if (neg)
        put(o, "-");
    while (n-- > 0 && o->len < sizeof o->buf - 1)
        o->buf[o->len++] = tmp[n];
}

static const char *sig_name(int sig)
{
    switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    default: return "signal";
    }
}

static void put_running(out_t *o, const slot_t *s)
{
    const char *h = atomic_load_explicit(&s->handler, memory_order_relaxed);
    if (!h) {
        put(o, " (no handler running)");
        return;
    }
    put(o, " running handler ");
    put_n(o, h, 160);
    put(o, " on event ");
    put_n(o, atomic_load_explicit(&s->event, memory_order_relaxed), 128);
    put(o, " (stream entry ");
    put_n(o, atomic_load_explicit(&s->entry, memory_order_relaxed), 48);
    put(o, ")");
}

static void on_fatal(int sig)
{
    out_t o = {.len = 0};
    put(&o, "FATAL [crash] signal ");
    put_num(&o, sig);
    put(&o, " (");
    put(&o, sig_name(sig));
    put(&o, ") in ");
    int me = my_slot;
    if (me >= 0) {
        put(&o, slots[me].who);
        put_running(&o, &slots[me]);
    } else {
        put(&o, "a thread that runs no handler");
    }
    /* every other thread in a handler: the crash may be theirs (memory) */
    int n = atomic_load(&n_slots);
    for (int i = 0; i < n; i++) {
        if (i == me || !atomic_load_explicit(&slots[i].handler, memory_order_relaxed))
            continue;
        put(&o, "; also ");
        put(&o, slots[i].who);
        put_running(&o, &slots[i]);
    }
    put(&o, "\n");
    ssize_t w = write(STDERR_FILENO, o.buf, o.len);
    void *frames[32];
    int nf = backtrace(frames, 32);
    backtrace_symbols_fd(frames, nf, STDERR_FILENO);
    if (record_path[0]) {
        out_t r = {.len = 0};
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        put_num(&r, (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
        put(&r, " ");
        put_num(&r, sig);
        put(&r, " ");
        const slot_t *s = me >= 0 ? &slots[me] : NULL;
        const char *h = s ? atomic_load_explicit(&s->handler, memory_order_relaxed) : NULL;
        put_n(&r, h ? atomic_load_explicit(&s->entry, memory_order_relaxed) : "-", 48);
        put(&r, " ");
        put_n(&r, h ? h : "-", 160);
        put(&r, " ");
        put_n(&r, h ? atomic_load_explicit(&s->event, memory_order_relaxed) : "-", 128);
        put(&r, "\n");
        int fd = open(record_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0) {
            w = write(fd, r.buf, r.len);
            close(fd);
        }
    }
    (void)w;
    signal(sig, SIG_DFL);
    raise(sig);
}

/* ---- the record ------------------------------------------------------ */

static void read_records(void)
{
    FILE *f = fopen(record_path, "r");
    if (!f)
        return;
    char line[600];
    while (fgets(line, sizeof line, f)) {
        record_t r = {0};
        if (sscanf(line, "%lld %d %47s %159s %127s", &r.at_ms, &r.sig, r.entry, r.handler,
                   r.event) < 2)
            continue;
        crashes_total++;
        if (n_recent == KEEP) {
            memmove(recent, recent + 1, (KEEP - 1) * sizeof *recent);
            n_recent--;
        }
        recent[n_recent++] = r;
    }
    fclose(f);
}

static void count_start(const char *state_dir)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/evbusd-starts", state_dir);
    FILE *f = fopen(path, "r");
    if (f) {
        if (fscanf(f, "%lld", &starts_total) != 1)
            starts_total = 0;
        fclose(f);
    }
    starts_total++;
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    f = fopen(tmp, "w");
    if (!f || fprintf(f, "%lld\n", starts_total) < 0 || fclose(f) != 0 || rename(tmp, path) != 0)
        log_warn("crash", "cannot record this start in %s", path);
}

void crash_init(const char *state_dir)
{
    if (installed)
        return;
    installed = true;
    snprintf(record_path, sizeof record_path, "%s/evbusd-crashes.log", state_dir);
    read_records();
    count_start(state_dir);
    METRIC_SET(process_starts, (uint64_t)starts_total);
    METRIC_SET(process_crashes, (uint64_t)crashes_total);
    if (n_recent) {
        const record_t *r = &recent[n_recent - 1];
        log_warn("crash", "%lld crash%s recorded in %s; the last: signal %d %lld s ago, handler "
                 "%s on stream entry %s", crashes_total, crashes_total == 1 ? "" : "es",
                 record_path, r->sig, (clock_wall_ms() - r->at_ms) / 1000, r->handler,
                 r->entry);
    }
    void *frames[4];
    (void)backtrace(frames, 4); /* loads the unwinder now, not in the handler */
    static const int sigs[] = {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_fatal;
        sa.sa_flags = SA_RESETHAND | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[i], &sa, NULL);
    }
}

int crash_slot_claim(const char *who)
{
    int i = atomic_fetch_add(&n_slots, 1);
    if (i >= SLOTS)
        return -1;
    snprintf(slots[i].who, sizeof slots[i].who, "%s", who);
    return i; /* the thread that runs with it is known at crash_slot_enter */
}

void crash_slot_enter(int slot, const char *handler, const char *event_id, const char *entry)
{
    if (slot < 0 || slot >= SLOTS)
        return;
    my_slot = slot;
    atomic_store_explicit(&slots[slot].event, event_id ? event_id : "?", memory_order_relaxed);
    atomic_store_explicit(&slots[slot].entry, entry ? entry : "?", memory_order_relaxed);
    atomic_store_explicit(&slots[slot].handler, handler, memory_order_release);
}

void crash_slot_leave(int slot)
{
    if (slot >= 0 && slot < SLOTS)
        atomic_store_explicit(&slots[slot].handler, NULL, memory_order_release);
}

const char *crash_handler_for(const char *entry)
{
    for (int i = n_recent; i-- > 0;)
        if (!strcmp(recent[i].entry, entry) && strcmp(recent[i].handler, "-"))
            return recent[i].handler;
    return NULL;
}

json_t *crash_health(void)
{
    json_t *last = json_null();
    if (n_recent) {
        const record_t *r = &recent[n_recent - 1];
        last = json_pack("{s:I, s:i, s:s, s:s, s:s}", "at_ms", (json_int_t)r->at_ms, "signal",
                         r->sig, "entry", r->entry, "handler", r->handler, "event", r->event);
    }
    return json_pack("{s:I, s:I, s:o}", "starts_total", (json_int_t)starts_total,
                     "crashes_total", (json_int_t)crashes_total, "last_crash", last);
}
