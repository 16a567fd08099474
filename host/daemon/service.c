/* service — see service.h. */
#include "daemon/service.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/clock.h"
#include "util/log.h"
#include "util/metrics.h"

struct service {
    const notify_t *notify;
    engine_t *engine;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;
};

static long long jint(json_t *o, const char *a, const char *b)
{
    json_t *v = json_object_get(o, a);
    return (long long)json_integer_value(b ? json_object_get(v, b) : v);
}

void service_sample(engine_t *e, service_sample_t *s)
{
    memset(s, 0, sizeof *s);
    json_t *h = engine_health(e);
    s->read = (uint64_t)jint(h, "events", "read");
    s->acked = (uint64_t)jint(h, "events", "acked");
    s->inflight_chunks = jint(h, "events", "inflight_chunks");
    s->inhost_pending = jint(h, "inhost", "pending");
    s->workers_over_timeout = jint(h, "inhost", "workers_over_timeout");
    s->redis_reachable = json_is_true(json_object_get(json_object_get(h, "redis"), "reachable"));
    s->generation = (uint64_t)jint(h, "generation", NULL);
    snprintf(s->status, sizeof s->status, "%s",
             json_string_value(json_object_get(h, "status")) ?: "?");
    snprintf(s->reload_status, sizeof s->reload_status, "%s",
             json_string_value(json_object_get(json_object_get(h, "reload"), "status")) ?: "?");
    json_decref(h);
    /* not in the health document: every failed Redis attempt counts here */
    s->redis_errors = METRIC_GET(redis_errors);
}

bool service_loop_live(const service_sample_t *prev, const service_sample_t *now)
{
    if (now->read != prev->read || now->acked != prev->acked)
        return true;
    if (now->redis_reachable && now->workers_over_timeout == 0)
        return true;
    return !now->redis_reachable && now->redis_errors != prev->redis_errors;
}

void service_status_text(const service_sample_t *s, char *out, size_t len)
{
    snprintf(out, len,
             "%s: generation %llu, %llu events handled (%llu read), %lld in host, Redis %s, "
             "last reload %s",
             s->status, (unsigned long long)s->generation, (unsigned long long)s->acked,
             (unsigned long long)s->read, s->inhost_pending,
             s->redis_reachable ? "reachable" : "unreachable", s->reload_status);
}

static void *service_main(void *arg)
{
    service_t *s = arg;
    pthread_setname_np(pthread_self(), "evbus-service");
    uint64_t wd_ms = s->notify->watchdog_usec / 1000;
    int64_t period = wd_ms ? (int64_t)(wd_ms / 4) : 2000;
    if (period > 1000)
        period = 1000;
    if (period < 10)
        period = 10;
    service_sample_t prev, now;
    service_sample(s->engine, &prev);
    int64_t live_at = clock_mono_ms();
    bool withheld = false;
    char last_status[256] = "";
    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += period / 1000;
        ts.tv_nsec += (period % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        int rc = 0;
        while (!s->stop && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&s->wake, &s->lock, &ts);
        if (s->stop)
            break;
        pthread_mutex_unlock(&s->lock);
        service_sample(s->engine, &now);
        int64_t t = clock_mono_ms();
        if (service_loop_live(&prev, &now))
            live_at = t;
        char status[256];
        service_status_text(&now, status, sizeof status);
        if (wd_ms) {
            if (t - live_at < (int64_t)(wd_ms / 2)) {
                if (withheld)
                    log_info("service", "consumer loop live again; watchdog keep-alives resume");
                withheld = false;
                notify_send(s->notify, "WATCHDOG=1");
            } else if (!withheld) {
                withheld = true;
                log_error("service", "consumer loop shows no progress for %lld ms (%s, %lld "
                          "handler%s past their timeout): watchdog keep-alives withheld",
                          (long long)(t - live_at), status, now.workers_over_timeout,
                          now.workers_over_timeout == 1 ? "" : "s");
            }
        }
        if (strcmp(status, last_status) != 0) {
            notify_send(s->notify, "STATUS=%s", status);
            snprintf(last_status, sizeof last_status, "%s", status);
        }
        prev = now;
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

service_t *service_start(const notify_t *n, engine_t *e)
{
    if (!notify_enabled(n))
        return NULL;
    service_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->notify = n;
    s->engine = e;
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wake, &ca);
    pthread_condattr_destroy(&ca);
    int rc = pthread_create(&s->thread, NULL, service_main, s);
    if (rc != 0) {
        log_warn("service", "cannot start the watchdog thread: %s; no keep-alives will be sent",
                 strerror(rc));
        pthread_cond_destroy(&s->wake);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return NULL;
    }
    return s;
}

void service_stop(service_t *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stop = true;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
