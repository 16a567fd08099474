/*
 * runbook — the commands of the runbook in docs/operations.md, read from
 * the markdown itself so the test runs what an operator would read.
 *
 * The runbook is the section from the heading `## Runbook` to the next
 * `## ` heading.  Each `### ` heading in it starts a procedure; every
 * non-blank line inside a fenced ```sh block of a procedure is one
 * command.  For comparison a command is normalised: a trailing shell
 * comment (`#` starting a word outside quotes) is removed and runs of
 * blanks outside quotes become one space.  A placeholder is `<NAME>`,
 * NAME in capitals, digits and `_`.
 *
 * Refused, so that no command can hide from the test: a fenced block in
 * the runbook that is not ```sh, a command before the first procedure, a
 * line continued with a backslash, an unterminated fence.
 *
 * Not thread-safe; plain data, freed with runbook_free.
 */
#ifndef EVBUS_TEST_RUNBOOK_H
#define EVBUS_TEST_RUNBOOK_H

#include <stddef.h>

typedef struct runbook_proc {
    char *title;  /* the `### ` heading's text */
    char **cmds;  /* normalised command lines, in order */
    size_t n_cmds;
} runbook_proc_t;

typedef struct runbook {
    runbook_proc_t *procs;
    size_t n_procs;
} runbook_t;

/* Parse the markdown in `text`.  0, or -1 with err ("line N: why"). */
int runbook_parse(const char *text, runbook_t *rb, char *err, size_t errlen);
/* Read and parse the file at path.  0 or -1 with err. */
int runbook_load(const char *path, runbook_t *rb, char *err, size_t errlen);
void runbook_free(runbook_t *rb);
/* The procedure with this title, or NULL. */
const runbook_proc_t *runbook_find(const runbook_t *rb, const char *title);

/* One command line normalised as above; malloc'd. */
char *runbook_normalise(const char *line);

/* Placeholder values: a small map, owned (values are copied). */
typedef struct runbook_vars {
    char *names[32];
    char *values[32];
    size_t n;
} runbook_vars_t;

/* Set (or replace) NAME's value. */
void runbook_var_set(runbook_vars_t *v, const char *name, const char *value);
/* NAME's value, or NULL. */
const char *runbook_var(const runbook_vars_t *v, const char *name);
void runbook_vars_free(runbook_vars_t *v);

/* text with every <NAME> replaced by its value; malloc'd.  NULL, with err
 * naming the placeholder, when one has no value. */
char *runbook_fill(const char *text, const runbook_vars_t *v, char *err, size_t errlen);

#endif
