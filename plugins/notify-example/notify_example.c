/*
 * notify-example — an ordinary C library that knows nothing of evbus, to
 * show foreign handlers: a manifest binds notify() to events through
 * libffi, mapping event fields to its parameters.
 *
 * notify() appends "tenant approval_id amount\n" to the file named by the
 * environment variable NOTIFY_EXAMPLE_OUT (default /tmp/notify-example.out)
 * and returns 0, or -1 when amount is negative (a permanent failure the
 * manifest maps to REJECT) or the file cannot be written.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((visibility("default"))) int notify(const char *tenant, const char *approval_id,
                                                  int64_t amount);

int notify(const char *tenant, const char *approval_id, int64_t amount)
{
    if (amount < 0)
        return -1;
    const char *path = getenv("NOTIFY_EXAMPLE_OUT");
    int fd = open(path && *path ? path : "/tmp/notify-example.out",
                  O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    char line[1024];
    int n = snprintf(line, sizeof line, "%s %s %" PRId64 "\n", tenant, approval_id, amount);
    int rc = (n > 0 && (size_t)n < sizeof line && write(fd, line, (size_t)n) == n) ? 0 : -1;
    close(fd);
    return rc;
}
