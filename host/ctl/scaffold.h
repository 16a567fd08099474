/*
 * scaffold — a new plugin project from the plugin template
 * (`evbusctl plugin new`).
 *
 * The template (plugin-api/template, installed as share/evbus/plugin-template)
 * is a working plugin named `example`.  Scaffolding copies its regular files
 * into a new folder and renames the plugin: every occurrence of the word
 * `example` in file names and contents that is not part of a longer word
 * (no letter or digit right before or after it: `example.c`,
 * `example_init`, `"example"`, `example-plugin`, but not `examples`)
 * becomes the new name.  That one rule covers the C identifiers, the
 * EVBUS_PLUGIN() name, the meson project and the Makefile; the template is
 * written so that it holds.
 *
 * Thread rules: none shared; every function is safe to call from any
 * thread, on distinct folders.
 */
#ifndef EVBUS_CTL_SCAFFOLD_H
#define EVBUS_CTL_SCAFFOLD_H

#include <stddef.h>

/* The name the template's plugin has. */
#define SCAFFOLD_TEMPLATE_NAME "example"
/* The longest plugin name scaffold_name_check() accepts. */
#define SCAFFOLD_NAME_MAX 32

/* What scaffold_name_check() accepts, said once for messages and --help. */
#define SCAFFOLD_NAME_RULE                                                                      \
    "1 to 32 characters: a lowercase letter, then lowercase letters, digits or '_'; not a C "   \
    "keyword"

/* 0 when name may name a plugin (SCAFFOLD_NAME_RULE: it becomes a file name
 * and the prefix of C identifiers), else -1 with why in err. */
int scaffold_name_check(const char *name, char *err, size_t errlen);

/*
 * Copy the regular files of template_dir into a new folder dest_dir (made
 * with mode 0755; its parent must exist) with the plugin renamed to name.
 * A subfolder in the template is an error: nothing is dropped silently.
 * Files keep their permission bits, plus the owner's write bit (an
 * installed template is often read-only).
 *
 * Returns 0 with *files set to a malloc'd, NULL-terminated array of the
 * created files' names (sorted; the caller frees each and the array), or:
 *   -2  the input is wrong: a bad name, dest_dir exists, the template is
 *       missing or not a folder, or has a subfolder;
 *   -1  reading the template or writing the copy failed.
 * On any error err says which path and why, and nothing is left behind:
 * a folder this call made is removed with what it wrote.
 */
int scaffold_plugin(const char *template_dir, const char *dest_dir, const char *name,
                    char ***files, char *err, size_t errlen);

/* The text `in` (len bytes) with the template's name replaced by name as
 * described above; malloc'd and NUL-terminated, *out_len its length.  NULL
 * when out of memory. */
char *scaffold_rename(const char *in, size_t len, const char *name, size_t *out_len);

#endif
