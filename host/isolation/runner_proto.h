/*
 * runner_proto — the wire between evbusd and an evbus-plugin-runner child
 * (`isolation: process`).  This header is the whole contract of the
 * protocol; isolation.h is the host side's, runner_main.c the child's.
 *
 * Transport
 *  - One AF_UNIX SOCK_STREAM socketpair per child, made by the host with
 *    SOCK_CLOEXEC.  The child's end is dup2'ed to fd RUNNER_FD (3) by
 *    posix_spawn; the host keeps the other end, non-blocking.  The child
 *    closes every other fd above 2 at start, so host sockets (Redis, the
 *    admin listener) never live on in a runner.
 *  - Who uses which end: in the child, its only thread.  On the host the
 *    runner's pump thread alone reads; writes happen under the runner's
 *    mutex, by the pump or by a worker thread sending its own CALL (so
 *    frames never interleave).  The INIT and FINI exchanges are made by
 *    the thread that owns the runner then: the control thread before the
 *    pump exists, the pump for restarts and the stop (isolation.h).
 *  - The host writes with MSG_NOSIGNAL: a dead child is an EOF or EPIPE,
 *    never a SIGPIPE.  The child dies with the host (PR_SET_PDEATHSIG) and
 *    exits on EOF.
 *
 * Framing
 *  - A frame is a runner_frame_hdr_t followed by `len` payload bytes.  All
 *    integers are in the host's byte order: both ends are the same build on
 *    the same machine (the INIT frame carries RUNNER_PROTO_VERSION and the
 *    child refuses another).  Frames larger than RUNNER_FRAME_MAX are a
 *    protocol error: the reader drops the connection.
 *  - A payload is a fixed struct (below, per kind) then zero or more
 *    strings, each a uint32 length, the bytes and a NUL that the length
 *    does not count, so the reader uses them in place.
 *
 * Conversation
 *  host -> child: INIT once, then CALL any number of times, then FINI.
 *  child -> host: INIT_OK or INIT_FAILED, one RESULT per CALL in the order
 *  of the CALLs (seq echoes the CALL's), FINI_DONE after fini() returned.
 *  The child runs CALLs one at a time, in the order it read them.
 *  Batching: while the child is busy, CALLs queue on the host and the pump
 *  writes all of them in one send(); the child reads as much as the socket
 *  holds at once.  An idle child gets a CALL straight from the worker.
 *  The child answers in batches too: it writes its RESULTs when it has
 *  run every CALL it had read, when RUNNER_FLUSH_RESULTS wait or when the
 *  oldest waiting one is RUNNER_FLUSH_MS old (checked before each call) —
 *  one send() per batch.
 *
 * The progress page (runner_shm_t)
 *  A RESULT still in the child's buffer when it dies would be lost, and
 *  the host could not tell which CALL was running.  So the child also
 *  records its progress in a page of shared memory (a memfd the host
 *  creates and maps, the child's fd RUNNER_SHM_FD): before a call, which
 *  CALL runs since when and with which timeout; after it, the outcome in
 *  slot (done % RUNNER_SLOTS), then done + 1 (a release store: the slot is
 *  complete before the host can see the count).  The host reads it with
 *  acquire loads: its pump bounds the running call by its timeout, and
 *  after a death it takes from the slots the outcomes the socket did not
 *  carry (at most RUNNER_FLUSH_RESULTS, fewer than RUNNER_SLOTS, so none
 *  was overwritten), then blames the running call.  The host resets the
 *  page before each child starts; only that child writes it.
 */
#ifndef EVBUS_ISOLATION_RUNNER_PROTO_H
#define EVBUS_ISOLATION_RUNNER_PROTO_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RUNNER_PROTO_VERSION 3u
#define RUNNER_FD 3
#define RUNNER_FRAME_MAX (64u << 20) /* an event entry is far smaller */
#define RUNNER_SHM_FD 4
#define RUNNER_SLOTS 1024
#define RUNNER_FLUSH_RESULTS 256 /* < RUNNER_SLOTS */
#define RUNNER_FLUSH_MS 5
#define RUNNER_REASON_MAX 512

typedef enum runner_kind {
    RUNNER_INIT = 1,         /* runner_init_t; strings: instance, plugin path,
                                private dir, config JSON, redis url, redis
                                cluster seeds ("" when none), stream,
                                expected SHA-256 of the .so (32 bytes) */
    RUNNER_CALL = 2,         /* runner_call_t; strings: stream id, raw entry,
                                data JSON (at the handler's version), replay job */
    RUNNER_FINI = 3,         /* no payload */
    RUNNER_INIT_OK = 16,     /* no payload */
    RUNNER_INIT_FAILED = 17, /* string: what failed (plugin's init message) */
    RUNNER_RESULT = 18,      /* runner_result_t; string: reason (may be empty) */
    RUNNER_FINI_DONE = 19,   /* no payload */
} runner_kind_t;

typedef struct runner_frame_hdr {
    uint32_t len;  /* payload bytes after this header */
    uint32_t kind; /* runner_kind_t */
    uint64_t seq;  /* CALL: the host's number; RESULT: the CALL's; else 0 */
} runner_frame_hdr_t;

typedef struct runner_init {
    uint32_t proto;      /* RUNNER_PROTO_VERSION */
    uint32_t init_flags; /* EVBUS_INIT_* for init() and fini() */
    int32_t log_level;   /* util/log.h, the host's at spawn time */
    int32_t log_format;
    uint32_t partitions; /* the `partitions` setting: api->publish's partition streams */
    uint32_t reserved;
} runner_init_t;

#define RUNNER_CALL_REPLAY 0x1u
/* the data is the raw envelope's own: the data JSON string is empty and
 * the child takes `data` from its parse of the raw entry */
#define RUNNER_CALL_OWN_DATA 0x2u

typedef struct runner_call {
    uint32_t sub_index;  /* into the descriptor's subscribers */
    int32_t attempt;
    int32_t schema_version;
    uint32_t flags;      /* RUNNER_CALL_* */
    uint32_t timeout_ms; /* the call's deadline, counted from its start in the child */
    uint32_t reserved;
} runner_call_t;

typedef struct runner_result {
    uint32_t result;     /* evbus_result_t as the handler returned it (mapped) */
    uint32_t ran_ms;     /* how long the call ran in the child */
} runner_result_t;

/* One call's outcome in the progress page. */
typedef struct runner_slot {
    uint64_t seq;
    uint32_t result;
    uint32_t ran_ms;
    char reason[RUNNER_REASON_MAX]; /* NUL-terminated */
} runner_slot_t;

typedef struct runner_shm {
    _Atomic uint64_t done;             /* calls this child finished */
    _Atomic uint64_t running_seq;      /* the CALL running now; 0 between calls */
    _Atomic int64_t running_since_ms;  /* clock_mono_ms() at its start */
    _Atomic uint32_t running_timeout_ms;
    runner_slot_t slots[RUNNER_SLOTS];
} runner_shm_t;

/* A growing byte buffer frames are written into.  Owned by one thread. */
typedef struct runner_buf {
    char *data;
    size_t len, cap;
} runner_buf_t;

/* Appends a frame header for `kind`/`seq` whose payload follows; returns
 * the header's offset for runner_buf_end_frame().  Out of memory aborts
 * (both ends treat it as the crash it would be). */
size_t runner_buf_begin_frame(runner_buf_t *b, runner_kind_t kind, uint64_t seq);
void runner_buf_put(runner_buf_t *b, const void *bytes, size_t len);
/* Makes room for `total` bytes in all, exactly (a buffer that will hold
 * one frame of known size need not grow, nor take the default 4 KiB). */
void runner_buf_reserve(runner_buf_t *b, size_t total);
/* A string: length, bytes, NUL.  NULL is written as the empty string. */
void runner_buf_put_str(runner_buf_t *b, const char *s, size_t len);
/* Sets the length of the frame begun at `at`. */
void runner_buf_end_frame(runner_buf_t *b, size_t at);
void runner_buf_free(runner_buf_t *b);

/* Reads a payload: the fixed struct, then strings, in place. */
typedef struct runner_reader {
    const char *p, *end;
    bool bad; /* set by a read past the end: the frame is malformed */
} runner_reader_t;

void runner_reader_init(runner_reader_t *r, const void *payload, size_t len);
/* Copies `len` bytes into dst (zeros and sets bad when short). */
void runner_read(runner_reader_t *r, void *dst, size_t len);
/* A string in place (NUL-terminated in the payload); "" and bad when short. */
const char *runner_read_str(runner_reader_t *r, size_t *len);

#endif
