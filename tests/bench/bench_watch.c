/*
 * bench_watch — times how long a running evbusd takes to drain a stream,
 * from the outside, the way an operator would see it: polls
 * `XINFO GROUPS STREAM` every 5 ms until the group's entries-read reaches
 * UNTIL and its pending count is 0 (everything read was acknowledged), and
 * samples VmHWM / VmRSS of PID from /proc on every poll.
 *
 *   bench_watch HOST PORT STREAM GROUP UNTIL TIMEOUT_S PID T0_NS
 *
 * T0_NS is the CLOCK_REALTIME nanosecond at which the caller started PID
 * (`date +%s%N` just before launching it), so total_s covers start-up too;
 * 0 means "now".  Prints one JSON object:
 *   total_s     T0 -> drained;  startup_s  T0 -> entries-read first moved;
 *   drain_s     first move -> drained;
 *   events_per_s / drain_events_per_s   events read in this watch / total_s
 *                                       and / drain_s;
 *   vmhwm_kb, vmrss_kb                  at the end.
 * Exit status 1 when PID exits, Redis fails or TIMEOUT_S passes first.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


static double realtime(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* VmHWM and VmRSS of pid in kB; -1 when the process is gone or a zombie. */
static int proc_mem(long pid, long *hwm, long *rss)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int alive = 1;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "State:", 6) && strchr(line, 'Z'))
            alive = 0;
        sscanf(line, "VmHWM: %ld", hwm);
        sscanf(line, "VmRSS: %ld", rss);
    }
    fclose(f);
    return alive ? 0 : -1;
}

/* entries-read and pending of group; both 0 while the group does not exist. */
static int group_state(redisContext *c, const char *stream, const char *group, long long *read,
                       long long *pending)
{
    *read = *pending = 0;
    redisReply *r = redisCommand(c, "XINFO GROUPS %s", stream);
    if (!r)
        return -1;
    if (r->type == REDIS_REPLY_ARRAY) {
        for (size_t g = 0; g < r->elements; g++) {
            redisReply *e = r->element[g];
            int mine = 0;
            for (size_t k = 0; k + 1 < e->elements; k += 2) {
                const char *key = e->element[k]->str;
                redisReply *v = e->element[k + 1];
                if (!strcmp(key, "name"))
                    mine = v->type == REDIS_REPLY_STRING && !strcmp(v->str, group);
                else if (mine && !strcmp(key, "entries-read") && v->type == REDIS_REPLY_INTEGER)
                    *read = v->integer;
                else if (mine && !strcmp(key, "pending"))
                    *pending = v->integer;
            }
            if (mine)
                break;
        }
    }
    freeReplyObject(r);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 9) {
        fprintf(stderr, "usage: bench_watch HOST PORT STREAM GROUP UNTIL TIMEOUT_S PID T0_NS\n");
        return 2;
    }
    const char *stream = argv[3], *group = argv[4];
    long long until = strtoll(argv[5], NULL, 10);
    double timeout = strtod(argv[6], NULL);
    long pid = strtol(argv[7], NULL, 10);
    long long t0_ns = strtoll(argv[8], NULL, 10);
    double t0 = t0_ns > 0 ? (double)t0_ns / 1e9 : realtime();
    redisContext *c = redisConnect(argv[1], atoi(argv[2]));
    if (!c || c->err) {
        fprintf(stderr, "bench_watch: connect: %s\n", c ? c->errstr : "out of memory");
        return 1;
    }
    long long read0 = -1, read = 0, pending = 0;
    long hwm = 0, rss = 0;
    double t_first = 0, t_end;
    for (;;) {
        if (proc_mem(pid, &hwm, &rss) != 0) {
            fprintf(stderr, "bench_watch: process %ld exited (entries-read %lld of %lld)\n", pid,
                    read, until);
            return 1;
        }
        if (group_state(c, stream, group, &read, &pending) != 0) {
            fprintf(stderr, "bench_watch: XINFO GROUPS: %s\n", c->errstr);
            return 1;
        }
        double now = realtime();
        if (read0 < 0)
            read0 = read;
        if (t_first == 0 && read != read0)
            t_first = now;
        if (read >= until && pending == 0) {
            t_end = now;
            break;
        }
        if (now - t0 > timeout) {
            fprintf(stderr,
                    "bench_watch: timeout after %.0f s (entries-read %lld of %lld, pending %lld)\n",
                    timeout, read, until, pending);
            return 1;
        }
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    if (t_first == 0)
        t_first = t_end;
    double total = t_end - t0, drain = t_end - t_first;
    double n = (double)(until - read0);
    printf("{\"events\":%.0f,\"total_s\":%.6f,\"startup_s\":%.6f,\"drain_s\":%.6f,"
           "\"events_per_s\":%.0f,\"drain_events_per_s\":%.0f,\"vmhwm_kb\":%ld,"
           "\"vmrss_kb\":%ld}\n",
           n, total, t_first - t0, drain, total > 0 ? n / total : 0.0,
           drain > 0 ? n / drain : 0.0, hwm, rss);
    redisFree(c);
    return 0;
}
