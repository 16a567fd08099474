/*
 * file-sink — appends every handled event, as its raw JSON on one line, to
 * a file.
 *
 * Config (declared in fsink_config_map, so the host refuses typos, wrong
 * types and ranges with their manifest position): path (required); buffer:
 * "line" (default: one write per event), "none" (the same: an event is
 * always one line) or a byte count (lines are gathered and written when
 * the buffer would overflow, at least every flush_interval_ms (default
 * 1000), and at fini); fsync: "never" (default), "always" (after every
 * write) or "interval" (every fsync_interval_ms, default 1000, whenever
 * something was written since the last sync).
 *
 * The intervals are kept by a thread of the instance, not by the next
 * event: a handler returns OK (and the event is acknowledged) once its
 * line is buffered or written, so a quiet stream must not leave the last
 * lines unwritten or unsynced for longer than the configured interval.
 * The thread only runs when a byte buffer or fsync "interval" asks for it,
 * and fini stops it before the last flush (before the host unloads the
 * library).
 *
 * Two instances must never interleave their buffered writes in one file,
 * so a registry of open files keyed by (st_dev, st_ino) refuses a second
 * instance on the same file.  The registry lives in this library's static
 * data, which the host copies per load: it covers the instances of one
 * loaded copy (one generation), so a new generation may reopen the file
 * while the old one drains.  It does not rotate files.
 *
 * On a check (evbusd --check-config, EVBUS_INIT_CHECK) init only makes
 * sure the file could be opened for appending: it creates, opens and
 * starts nothing, so fini has nothing to flush.  Two instances naming one
 * file are then caught only when the file exists already.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <evbus/plugin.h>

typedef enum { FSYNC_NEVER, FSYNC_ALWAYS, FSYNC_INTERVAL } fsink_fsync_t;

typedef struct fsink {
    const evbus_host_api_t *api;
    char *path;
    char *instance;
    int fd;
    dev_t dev;
    ino_t ino;
    pthread_mutex_t mu;
    char *buf; /* NULL when unbuffered */
    size_t buf_len, buf_cap;
    fsink_fsync_t fsync_mode;
    int64_t fsync_interval_ms;
    int64_t flush_interval_ms;
    int64_t last_sync_ms;
    bool dirty;          /* written since the last fdatasync */
    bool check_only;     /* EVBUS_INIT_CHECK: nothing was opened */
    /* the interval thread (see the top of the file) */
    pthread_t timer;
    bool timer_running, timer_stop;
    pthread_cond_t timer_cv;
    struct fsink *next; /* registry link */
} fsink_t;

static pthread_mutex_t fsink_registry_mu = PTHREAD_MUTEX_INITIALIZER;
static fsink_t *fsink_registry;

static int64_t fsink_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fsink_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Writes the buffer out and syncs per policy; caller holds s->mu. */
static int fsink_flush_locked(fsink_t *s)
{
    if (s->buf_len > 0) {
        if (fsink_write_all(s->fd, s->buf, s->buf_len) != 0)
            return -1;
        s->buf_len = 0;
        s->dirty = true;
    }
    return 0;
}

/* After a write: fsync "always" syncs now; "interval" syncs when the
 * interval has passed (else the timer thread will).  Caller holds s->mu. */
static int fsink_sync_locked(fsink_t *s)
{
    s->dirty = true;
    if (s->fsync_mode == FSYNC_ALWAYS) {
        s->dirty = false;
        return fdatasync(s->fd);
    }
    if (s->fsync_mode == FSYNC_INTERVAL) {
        int64_t now = fsink_now_ms();
        if (now - s->last_sync_ms >= s->fsync_interval_ms) {
            s->last_sync_ms = now;
            s->dirty = false;
            return fdatasync(s->fd);
        }
    }
    return 0;
}

/* The interval thread: every tick writes out a buffer older than
 * flush_interval_ms and syncs what was written fsync_interval_ms ago. */
static void *fsink_timer_main(void *arg)
{
    fsink_t *s = arg;
    int64_t tick = s->fsync_mode == FSYNC_INTERVAL ? s->fsync_interval_ms : s->flush_interval_ms;
    if (s->buf && s->flush_interval_ms < tick)
        tick = s->flush_interval_ms;
    int64_t last_flush = fsink_now_ms();
    pthread_mutex_lock(&s->mu);
    while (!s->timer_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t ns = ts.tv_nsec + (tick % 1000) * 1000000;
        ts.tv_sec += (time_t)(tick / 1000 + ns / 1000000000);
        ts.tv_nsec = (long)(ns % 1000000000);
        pthread_cond_timedwait(&s->timer_cv, &s->mu, &ts);
        if (s->timer_stop)
            break;
        int64_t now = fsink_now_ms();
        if (s->buf && now - last_flush >= s->flush_interval_ms) {
            last_flush = now;
            if (fsink_flush_locked(s) != 0 && s->api->log)
                s->api->log(EVBUS_LOG_ERROR, "file-sink: writing %s: %s", s->path,
                            strerror(errno));
        }
        if (s->fsync_mode == FSYNC_INTERVAL && s->dirty &&
            now - s->last_sync_ms >= s->fsync_interval_ms) {
            s->last_sync_ms = now;
            s->dirty = false;
            if (fdatasync(s->fd) != 0 && s->api->log)
                s->api->log(EVBUS_LOG_ERROR, "file-sink: fdatasync %s: %s", s->path,
                            strerror(errno));
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* The host checked config_json against fsink_config_map (types, ranges,
 * required path, no unknown key); what is left is reading it. */
static int fsink_parse_config(fsink_t *s, const char *config_json, char *err, size_t errlen)
{
    json_t *cfg = json_loads(config_json, 0, NULL);
    const char *path = json_string_value(json_object_get(cfg, "path"));
    if (!path || !path[0]) {
        snprintf(err, errlen, "'path' must not be empty");
        json_decref(cfg);
        return -1;
    }
    s->path = strdup(path);
    json_t *buffer = json_object_get(cfg, "buffer");
    if (json_is_integer(buffer))
        s->buf_cap = (size_t)json_integer_value(buffer);
    const char *fsync_mode = json_string_value(json_object_get(cfg, "fsync"));
    s->fsync_mode = FSYNC_NEVER;
    if (fsync_mode && strcmp(fsync_mode, "always") == 0)
        s->fsync_mode = FSYNC_ALWAYS;
    else if (fsync_mode && strcmp(fsync_mode, "interval") == 0)
        s->fsync_mode = FSYNC_INTERVAL;
    json_t *iv = json_object_get(cfg, "fsync_interval_ms");
    s->fsync_interval_ms = iv ? json_integer_value(iv) : 1000;
    iv = json_object_get(cfg, "flush_interval_ms");
    s->flush_interval_ms = iv ? json_integer_value(iv) : 1000;
    json_decref(cfg);
    if (!s->path) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static void fsink_destroy(fsink_t *s)
{
    if (s->fd >= 0)
        close(s->fd);
    pthread_cond_destroy(&s->timer_cv);
    pthread_mutex_destroy(&s->mu);
    free(s->buf);
    free(s->path);
    free(s->instance);
    free(s);
}

/* Adds s to the registry unless its file is already there. */
static int fsink_register(fsink_t *s, char *err, size_t errlen)
{
    int rc = 0;
    pthread_mutex_lock(&fsink_registry_mu);
    for (fsink_t *o = fsink_registry; o; o = o->next) {
        if (o->dev == s->dev && o->ino == s->ino) {
            snprintf(err, errlen, "%s is already written by instance '%s' (as %s); "
                     "two file-sink instances may not share a file",
                     s->path, o->instance, o->path);
            rc = -1;
            break;
        }
    }
    if (rc == 0) {
        s->next = fsink_registry;
        fsink_registry = s;
    }
    pthread_mutex_unlock(&fsink_registry_mu);
    return rc;
}

static void fsink_unregister(fsink_t *s)
{
    pthread_mutex_lock(&fsink_registry_mu);
    for (fsink_t **pp = &fsink_registry; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    pthread_mutex_unlock(&fsink_registry_mu);
}

/* Whether open(path, O_WRONLY | O_APPEND | O_CREAT) would succeed, found
 * without creating anything (for a check). */
static int fsink_could_open(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            snprintf(err, errlen, "%s: %s", path, strerror(EISDIR));
            return -1;
        }
        if (access(path, W_OK) != 0) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            return -1;
        }
        return 0;
    }
    if (errno != ENOENT) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else
        snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    if (access(dir, W_OK | X_OK) != 0) {
        snprintf(err, errlen, "%s: cannot be created in %s: %s", path, dir, strerror(errno));
        return -1;
    }
    return 0;
}

static int fsink_init(const evbus_host_api_t *api, const char *config_json, void **state,
                      char *err, size_t errlen)
{
    fsink_t *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->api = api;
    s->fd = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->timer_cv, &ca);
    pthread_condattr_destroy(&ca);
    const char *iname = api->instance_name ? api->instance_name() : NULL;
    s->instance = strdup(iname ? iname : "?");
    if (!s->instance || fsink_parse_config(s, config_json, err, errlen) != 0)
        goto fail;
    s->check_only = (api->init_flags() & EVBUS_INIT_CHECK) != 0;
    if (s->check_only) {
        struct stat st;
        if (fsink_could_open(s->path, err, errlen) != 0)
            goto fail;
        if (stat(s->path, &st) == 0) {
            s->dev = st.st_dev;
            s->ino = st.st_ino;
            if (fsink_register(s, err, errlen) != 0)
                goto fail;
        }
        *state = s;
        return 0;
    }
    if (s->buf_cap > 0 && !(s->buf = malloc(s->buf_cap))) {
        snprintf(err, errlen, "out of memory for a %zu byte buffer", s->buf_cap);
        goto fail;
    }
    s->fd = open(s->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    struct stat st;
    if (s->fd < 0 || fstat(s->fd, &st) != 0) {
        snprintf(err, errlen, "%s: %s", s->path, strerror(errno));
        goto fail;
    }
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    s->last_sync_ms = fsink_now_ms();
    if (fsink_register(s, err, errlen) != 0)
        goto fail;
    if (s->buf || s->fsync_mode == FSYNC_INTERVAL) {
        int e = pthread_create(&s->timer, NULL, fsink_timer_main, s);
        if (e != 0) {
            fsink_unregister(s);
            snprintf(err, errlen, "cannot start the flush thread: %s", strerror(e));
            goto fail;
        }
        s->timer_running = true;
    }
    *state = s;
    return 0;
fail:
    fsink_destroy(s);
    return -1;
}

static void fsink_fini(void *state)
{
    fsink_t *s = state;
    fsink_unregister(s);
    if (s->check_only) {
        fsink_destroy(s);
        return;
    }
    if (s->timer_running) {
        pthread_mutex_lock(&s->mu);
        s->timer_stop = true;
        pthread_cond_signal(&s->timer_cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->timer, NULL);
    }
    pthread_mutex_lock(&s->mu);
    if (fsink_flush_locked(s) != 0 && s->api->log)
        s->api->log(EVBUS_LOG_ERROR, "file-sink: flushing %s at shutdown: %s", s->path,
                    strerror(errno));
    if (s->fsync_mode != FSYNC_NEVER)
        fdatasync(s->fd);
    pthread_mutex_unlock(&s->mu);
    fsink_destroy(s);
}

static evbus_result_t fsink_handle(const evbus_host_api_t *api, const evbus_event_t *ev,
                                   void *state)
{
    fsink_t *s = state;
    size_t len = 0;
    const char *raw = api->event_raw(ev, &len);
    if (!raw) {
        api->set_reason(ev, "the host gave no raw event bytes");
        return EVBUS_RETRY;
    }
    /* One event per line: raw newlines can only be JSON whitespace (inside
     * strings they are escaped), so turning them into spaces keeps the JSON. */
    char *line = malloc(len + 1);
    if (!line) {
        api->set_reason(ev, "out of memory for a %zu byte line", len + 1);
        return EVBUS_RETRY;
    }
    for (size_t i = 0; i < len; i++)
        line[i] = (raw[i] == '\n' || raw[i] == '\r') ? ' ' : raw[i];
    line[len] = '\n';
    size_t n = len + 1;

    evbus_result_t r = EVBUS_OK;
    pthread_mutex_lock(&s->mu);
    if (s->buf && s->buf_len + n <= s->buf_cap) {
        memcpy(s->buf + s->buf_len, line, n);
        s->buf_len += n;
    } else if (fsink_flush_locked(s) != 0 || fsink_write_all(s->fd, line, n) != 0 ||
               fsink_sync_locked(s) != 0) {
        api->set_reason(ev, "writing %s: %s", s->path, strerror(errno));
        r = EVBUS_RETRY;
    }
    pthread_mutex_unlock(&s->mu);
    free(line);
    return r;
}

static const evbus_subscriber_t fsink_subscribers[] = {
    EVBUS_SUBSCRIBER("main", "**", 100, fsink_handle),
};

static const char *const fsink_buffer_names[] = {"line", "none", NULL};
static const char *const fsink_fsync_names[] = {"never", "always", "interval", NULL};

static const evbus_config_key_t fsink_config_map[] = {
    {.key = "path", .type = EVBUS_CONFIG_STRING, .required = 1,
     .description = "the file to append events to"},
    {.key = "buffer", .type = EVBUS_CONFIG_INT | EVBUS_CONFIG_ENUM, .min = 1, .max = 1 << 30,
     .enum_values = fsink_buffer_names, .description = "line, none or a byte count"},
    {.key = "flush_interval_ms", .type = EVBUS_CONFIG_INT, .min = 1, .max = 86400000,
     .description = "write a byte buffer out at least this often"},
    {.key = "fsync", .type = EVBUS_CONFIG_ENUM, .enum_values = fsink_fsync_names,
     .description = "when to fdatasync the file"},
    {.key = "fsync_interval_ms", .type = EVBUS_CONFIG_INT, .min = 1, .max = 86400000,
     .description = "fsync: interval syncs this often"},
};

EVBUS_PLUGIN("file-sink", "1.0.0", EVBUS_PLUGIN_F_CONFIG_MAP, .init = fsink_init,
             .fini = fsink_fini, EVBUS_SUBSCRIBERS(fsink_subscribers),
             EVBUS_CONFIG_MAP(fsink_config_map));
