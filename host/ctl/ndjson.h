/*
 * ndjson — the NDJSON input of `evbusctl publish`: reading it line by
 * line, keeping a pipe in a spool file, and the first of the two passes.
 *
 * The input is read twice so that nothing is published when any line is
 * bad (a typo on line 9000 must not leave 8999 events half-sent):
 *
 *     ndjson_input_t in;
 *     ndjson_input_open(&in, path);          0, or -1 with errno
 *     ndjson_input_spool(&in);               0, or -1 with errno
 *     ndjson_input_check(&in, nparts);       NDJSON_OK or NDJSON_E*, with in.report
 *     ndjson_input_rewind(&in, &rd);         0, or -1 with errno
 *     ndjson_lines_t l = {.rd = &rd};
 *     while (ndjson_lines_next(&l, &len))    l.cur[0..len): event l.event - 1
 *         ... publish it, using ndjson_checked(&in.checks, l.event - 1) ...
 *     ndjson_reader_free(&rd);
 *     ndjson_input_close(&in);
 *
 * The first pass (ndjson_input_check) checks every line with libevbus
 * (evbus_event_text_check_keep) and keeps what it learned, so the second
 * pass completes an unchanged line without scanning it again.  A pipe
 * cannot be read twice: the first pass copies it to an anonymous temporary
 * file, so memory stays bounded whatever the input size.  A regular file
 * of 4 MiB or more is checked by several threads, since nothing else runs
 * until the first pass ends.  `--live` skips the first pass and reads the
 * input once with an ndjson_reader_t of its own.
 *
 * Nothing here prints: failures come back as return codes (and, for the
 * first pass, as in.report), and the command words the messages.
 *
 * Thread rules: every object here belongs to one thread at a time.
 * ndjson_input_check starts threads of its own (at most NDJSON_SPLIT_MAX)
 * and joins them before it returns; they check lines without a client,
 * which libevbus allows concurrently.
 */
#ifndef EVBUS_CTL_NDJSON_H
#define EVBUS_CTL_NDJSON_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

#include "client/evbus_client.h"

/* Invalid lines the report keeps (with their message) besides the count. */
#define NDJSON_MAX_REPORTED 50
/* Events whose first-pass findings are kept (64 bytes each, so at most
 * 64 MiB); later events are scanned again in the second pass. */
#define NDJSON_MAX_CHECKED (1u << 20)
/* Partitions at most: an event's partition is kept in one byte. */
#define NDJSON_MAX_PARTS 256
/* Threads checking one file at most. */
#define NDJSON_SPLIT_MAX 4

/* Return codes of ndjson_input_check (the other calls use 0 / -1 + errno). */
enum {
    NDJSON_OK = 0,
    NDJSON_EINVAL = -1, /* some lines are not events: report.bad, report.shown */
    NDJSON_EREAD = -2,  /* the input could not be read: report.read_errno */
    NDJSON_ENOMEM = -3, /* the findings did not fit in memory */
};

/* ------------------------------------------------------------- reading */

/*
 * Lines read from a descriptor into one growing buffer, 1 MiB at a time
 * (stdio's 4 KiB reads cost a system call per ten events, CPU that Redis
 * wants on a small machine).  Zero it, then set the public fields.
 */
typedef struct ndjson_reader {
    /* Public: set before the first read. */
    int fd;    /* not owned: never closed here */
    bool seq;  /* read(2) from the current position instead of pread at off */
    off_t off; /* where pread reads next (advanced by each read) */
    /* When set, runs before a read that would block, on the calling
     * thread: a live feed gets what it sent so far published before
     * evbusctl waits for more. */
    void (*idle)(void *ud);
    void *idle_ud;
    /* When set and nonzero (a signal handler sets it), reading stops: the
     * wait after idle is in poll, which a signal interrupts. */
    volatile sig_atomic_t *stop;
    /* Private. */
    char *buf;
    size_t cap, pos, len;
} ndjson_reader_t;

/*
 * The next line, with its '\n' when it has one, at *line: its length; 0 at
 * the end of the input or when *stop is set; -1 on a read error or when
 * memory runs out (errno says which).  *line points into the reader's
 * buffer and is valid until the next call.  The last line may lack its
 * '\n'; after a stop, an unfinished line stays unread.
 */
ssize_t ndjson_read_line(ndjson_reader_t *r, const char **line);

/* Bytes read but not returned as a line: after a stop, the unfinished
 * last line. */
size_t ndjson_reader_unread(const ndjson_reader_t *r);

/* Frees the buffer (not the descriptor); the reader is zeroed. */
void ndjson_reader_free(ndjson_reader_t *r);

/* The non-blank lines of a reader's input, numbered as the input is
 * (blank lines count as lines, not as events). */
typedef struct ndjson_lines {
    ndjson_reader_t *rd; /* set by the caller; not owned */
    const char *cur;     /* the current line, as ndjson_read_line */
    size_t lineno;       /* of cur, from 1 */
    size_t event;        /* non-blank lines so far: cur is event `event - 1` */
    int read_errno;      /* nonzero: the input ended on this error */
} ndjson_lines_t;

/* 1 with the next non-blank line (cur[0..*len)), 0 at the end, after a
 * stop or on a read error (read_errno then). */
int ndjson_lines_next(ndjson_lines_t *l, size_t *len);

/* --------------------------------------------------- first-pass results */

/* Event i's partition is of[i] < n, for i < len. */
typedef struct ndjson_parts {
    unsigned char *of;
    size_t len;
    size_t n;   /* partitions (0: none wanted) */
    size_t cap; /* private */
} ndjson_parts_t;

/* One checking thread's findings, in input order (private). */
struct ndjson_chkarr {
    evbus_text_checked_t *of;
    size_t len, cap;
};

/* What the first pass learned about the first NDJSON_MAX_CHECKED events.
 * Private: read it through ndjson_checked. */
typedef struct ndjson_checks {
    /* The threads' arrays one after the other, taken over rather than
     * copied: for 200,000 events that copy was 12.8 MB written while Redis
     * waited. */
    struct ndjson_chkarr seg[NDJSON_SPLIT_MAX];
    size_t nseg, len;
} ndjson_checks_t;

/* The first pass's findings about event number i (from 0), for
 * evbus_event_text_complete_checked; NULL when none were kept (chks may be
 * NULL).  Borrowed from chks. */
const evbus_text_checked_t *ndjson_checked(const ndjson_checks_t *chks, size_t i);

/* What was wrong with the input when ndjson_input_check failed. */
typedef struct ndjson_report {
    size_t bad; /* invalid lines */
    /* The first NDJSON_MAX_REPORTED of them, in input order. */
    struct {
        size_t line; /* from 1, blank lines included */
        char msg[256];
    } shown[NDJSON_MAX_REPORTED];
    size_t n_shown;
    int read_errno; /* nonzero: reading failed */
} ndjson_report_t;

/* ------------------------------------------------------------ the input */

typedef struct ndjson_input {
    /* Read-only for the caller. */
    const char *name;       /* "stdin" or the path: for messages; borrowed */
    size_t events;          /* after ndjson_input_check: events in the input */
    ndjson_checks_t checks; /* after ndjson_input_check (see ndjson_checked) */
    ndjson_parts_t parts;   /* after ndjson_input_check with nparts > 1 */
    ndjson_report_t report; /* after ndjson_input_check failed */
    /* Private. */
    FILE *in;
    bool own_in;
    FILE *spool;
    off_t start;
} ndjson_input_t;

/* Opens path, or stdin when path is NULL or "-" (path is kept, not
 * copied).  0, or -1 with errno and nothing to close. */
int ndjson_input_open(ndjson_input_t *in, const char *path);

/* The descriptor to read once (--live), with its own ndjson_reader_t
 * (seq set).  Owned by in. */
int ndjson_input_fd(const ndjson_input_t *in);

/* Prepares two passes: when the input is not a regular file, creates the
 * temporary file the first pass copies it to.  0, or -1 with errno. */
int ndjson_input_spool(ndjson_input_t *in);

/*
 * The first pass: reads the whole input (copying it to the spool, if
 * any), checks every line, and keeps the findings in in->checks and, when
 * nparts > 1 (at most NDJSON_MAX_PARTS), each event's partition in
 * in->parts: events with the same key (evbus_event_text_check_key) get
 * the same partition, in every run.  NDJSON_OK with in->events, or an
 * NDJSON_E* code with in->report; when lines are bad, findings are no
 * longer kept (nothing will be published) but every line is still
 * checked, so the report counts them all.  Once per input.
 */
int ndjson_input_check(ndjson_input_t *in, size_t nparts);

/* Sets *rd up (zeroing it first) to read the checked input again from its
 * first line: the spool from its start, else the input from where the
 * first pass began (a file given on stdin may start past its first byte).
 * 0, or -1 with errno (the spool could not be flushed); either way *rd
 * is to be freed with ndjson_reader_free.  Only after NDJSON_OK. */
int ndjson_input_rewind(ndjson_input_t *in, ndjson_reader_t *rd);

/* Frees the findings, the spool, and the input unless it is stdin. */
void ndjson_input_close(ndjson_input_t *in);

#endif
