/*
 * private_dir — see private_dir.h.  It creates what is missing with mode
 * 0700 and never changes the mode or owner of what exists: a folder an
 * operator made unsafe is reported, not silently repaired.
 */
#include "util/private_dir.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* mkdir -p, mode 0700 for what it creates. */
static int make_parents(const char *dir, const char *what, char *err, size_t errlen)
{
    char tmp[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof tmp) {
        snprintf(err, errlen, "%s '%.200s' is empty or too long", what, dir);
        return -1;
    }
    memcpy(tmp, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0')
            continue;
        tmp[i] = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "%s %s cannot be created: %s: %s", what, dir, tmp,
                     strerror(errno));
            return -1;
        }
        tmp[i] = i == n ? '\0' : '/';
    }
    return 0;
}

int private_dir_ensure(const char *dir, const char *what, char *err, size_t errlen)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (errno != ENOENT) {
            snprintf(err, errlen, "%s %s cannot be read: %s", what, dir, strerror(errno));
            return -1;
        }
        if (make_parents(dir, what, err, errlen) != 0)
            return -1;
        if (stat(dir, &st) != 0) {
            snprintf(err, errlen, "%s %s cannot be read: %s", what, dir, strerror(errno));
            return -1;
        }
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s %s is not a directory", what, dir);
        return -1;
    }
    uid_t me = geteuid();
    if (st.st_uid != me) {
        snprintf(err, errlen, "%s %s is owned by uid %lu, not by uid %lu that evbusd runs as: "
                 "chown %lu %s, or run evbusd as uid %lu", what, dir,
                 (unsigned long)st.st_uid, (unsigned long)me, (unsigned long)me, dir,
                 (unsigned long)st.st_uid);
        return -1;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        snprintf(err, errlen, "%s %s is writable by group or others (mode %04o); plugin copies "
                 "are loaded from it: chmod go-w %s", what, dir, (unsigned)(st.st_mode & 07777),
                 dir);
        return -1;
    }
    return 0;
}
