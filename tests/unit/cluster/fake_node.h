/*
 * fake_node — a scripted Redis Cluster node for the cluster client's unit
 * tests: a small RESP server on a free loopback port, in a thread of the
 * test, that answers each command as the test's function says (MOVED,
 * ASK, TRYAGAIN, CLUSTERDOWN, a CLUSTER SLOTS map, or closing the
 * connection) and logs what it received.  Redirects can then be tested
 * exactly, which a real cluster only produces by chance.
 *
 * Threads: the answer function runs on the node's thread under the node's
 * lock; fake_node_count and fake_node_set take the same lock, so a test
 * reads counts and changes the script from its own thread safely.
 */
#ifndef EVBUS_TEST_FAKE_NODE_H
#define EVBUS_TEST_FAKE_NODE_H

#include <stddef.h>

typedef struct fake_node fake_node_t;

/* What one connection has seen so far (per connection, reset on accept). */
typedef struct fake_conn {
    int asking; /* the previous command on this connection was ASKING */
} fake_conn_t;

/*
 * Answers one command (argv[0..argc), NUL-terminated copies): writes the
 * RESP text of the reply into out (at most outlen bytes) and returns 0, or
 * returns 1 to close the connection without answering.  `state` is the
 * test's (fake_node_set), read and written under the node's lock.
 */
typedef int (*fake_answer_fn)(fake_node_t *n, fake_conn_t *conn, int argc, char **argv,
                              void *state, char *out, size_t outlen);

/* Starts a node answering with fn; NULL on failure. */
fake_node_t *fake_node_start(fake_answer_fn fn, void *state);
/* Stops the thread and closes the port (later connects are refused). */
void fake_node_stop(fake_node_t *n);
int fake_node_port(const fake_node_t *n);

/* How many commands received so far start with `prefix` (the command
 * line: arguments joined by single spaces, e.g. "GET k"); NULL: all. */
size_t fake_node_count(fake_node_t *n, const char *prefix);

/* Runs fn(state) under the node's lock (to change the script). */
void fake_node_with_lock(fake_node_t *n, void (*fn)(void *state), void *state);

/* A CLUSTER SLOTS reply with one entry per range: lo[i]..hi[i] served by
 * 127.0.0.1:port[i]; slot numbers as strings when as_strings. */
void fake_slots_reply(char *out, size_t outlen, int n, const int *lo, const int *hi,
                      const int *port, int as_strings);

#endif
