/*
 * private_dir — folders that only the daemon's user may change.
 *
 * evbusd copies plugin .so files into state_dir/plugins and dlopen()s the
 * copies: whoever can write there between the copy and the dlopen runs
 * code as evbusd.  So, as OpenSSH checks ~/.ssh before trusting a key in
 * it, state_dir and its plugin folder must be directories owned by the
 * effective user of this process and not writable by group or others.
 * (Root is no exception: a folder of another user is theirs to change.)
 * Parent folders are not checked.
 *
 * Thread rules: none (no state); may run on any thread.
 */
#ifndef EVBUS_UTIL_PRIVATE_DIR_H
#define EVBUS_UTIL_PRIVATE_DIR_H

#include <stddef.h>

/*
 * Creates `dir` when missing (with its missing parents, mode 0700), then
 * checks it.  `what` names it in messages ("state_dir").  Returns 0, or -1
 * with one of these in err:
 *   "<what> <dir> cannot be created: <folder>: <strerror>", or "<what>
 *    <dir> cannot be read: <strerror>"
 *   "<what> <dir> is not a directory"
 *   "<what> <dir> is owned by uid U, not by uid E that evbusd runs as:
 *    chown E <dir>, or run evbusd as uid U"
 *   "<what> <dir> is writable by group or others (mode 0775); plugin
 *    copies are loaded from it: chmod go-w <dir>"
 */
int private_dir_ensure(const char *dir, const char *what, char *err, size_t errlen);

#endif
