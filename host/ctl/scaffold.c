/*
 * scaffold — a plugin project from the template; see scaffold.h.
 *
 * Everything is read before the new folder is made, so a template that
 * cannot be read leaves nothing behind, and a failed write removes the
 * folder again.  It copies files, never runs a build.
 */
#include "ctl/scaffold.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A template file larger than this is not a source file of a plugin
 * project: refuse it rather than copy it blindly. */
#define SCAFFOLD_FILE_MAX (1024 * 1024)

/* A plugin name is a C identifier in its own right (an author may well
 * write `struct NAME`), so the lowercase keywords of C11, C23 and GNU C are
 * out. */
static const char *const c_keywords[] = {
    "alignas", "alignof", "asm", "auto", "bool", "break", "case", "char", "const", "constexpr",
    "continue", "default", "do", "double", "else", "enum", "extern", "false", "float", "for",
    "goto", "if", "inline", "int", "long", "nullptr", "register", "restrict", "return", "short",
    "signed", "sizeof", "static", "static_assert", "struct", "switch", "thread_local", "true",
    "typedef", "typeof", "typeof_unqual", "union", "unsigned", "void", "volatile", "while",
};

static bool is_word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

int scaffold_name_check(const char *name, char *err, size_t errlen)
{
    size_t n = strlen(name);
    if (n == 0 || n > SCAFFOLD_NAME_MAX) {
        snprintf(err, errlen, "'%s' is %zu characters long: a plugin name is %s", name, n,
                 SCAFFOLD_NAME_RULE);
        return -1;
    }
    if (!(name[0] >= 'a' && name[0] <= 'z')) {
        snprintf(err, errlen, "'%s' does not start with a lowercase letter: a plugin name is %s",
                 name, SCAFFOLD_NAME_RULE);
        return -1;
    }
    for (size_t i = 1; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
            snprintf(err, errlen, "'%s' has '%c' at position %zu: a plugin name is %s "
                     "(it names NAME.c, NAME.so and the C functions in NAME.c)",
                     name, c, i + 1, SCAFFOLD_NAME_RULE);
            return -1;
        }
    }
    for (size_t i = 0; i < sizeof c_keywords / sizeof *c_keywords; i++)
        if (strcmp(name, c_keywords[i]) == 0) {
            snprintf(err, errlen, "'%s' is a C keyword: a plugin name is %s", name,
                     SCAFFOLD_NAME_RULE);
            return -1;
        }
    return 0;
}

char *scaffold_rename(const char *in, size_t len, const char *name, size_t *out_len)
{
    static const char from[] = SCAFFOLD_TEMPLATE_NAME;
    const size_t flen = sizeof from - 1, nlen = strlen(name);
    size_t hits = 0;
    for (size_t i = 0; i + flen <= len; i++)
        if (memcmp(in + i, from, flen) == 0)
            hits++;
    /* at most every occurrence is replaced: this bounds the result */
    size_t cap = len + hits * (nlen > flen ? nlen - flen : 0) + 1;
    char *out = malloc(cap), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len;) {
        if (i + flen <= len && memcmp(in + i, from, flen) == 0 &&
            (i == 0 || !is_word_char(in[i - 1])) &&
            (i + flen == len || !is_word_char(in[i + flen]))) {
            memcpy(o, name, nlen);
            o += nlen;
            i += flen;
        } else {
            *o++ = in[i++];
        }
    }
    *o = '\0';
    *out_len = (size_t)(o - out);
    return out;
}

typedef struct tfile {
    char *name; /* in the new folder */
    char *text;
    size_t len;
    mode_t mode;
} tfile_t;

static void tfiles_free(tfile_t *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(f[i].name);
        free(f[i].text);
    }
    free(f);
}

static int cmp_tfile(const void *a, const void *b)
{
    return strcmp(((const tfile_t *)a)->name, ((const tfile_t *)b)->name);
}

/* The whole of path into *text (malloc'd).  0 or -1 with err. */
static int read_small(const char *path, char **text, size_t *len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (st.st_size > SCAFFOLD_FILE_MAX) {
        snprintf(err, errlen, "%s: %lld bytes, more than a template file may have (%d)", path,
                 (long long)st.st_size, SCAFFOLD_FILE_MAX);
        close(fd);
        return -1;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (buf && got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(err, errlen, "%s: %s", path, n < 0 ? strerror(errno) : "shorter than stat said");
            free(buf);
            close(fd);
            return -1;
        }
        got += (size_t)n;
    }
    close(fd);
    if (!buf) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    buf[got] = '\0';
    *text = buf;
    *len = got;
    return 0;
}

/* The template's files, renamed, sorted by name.  0, -2 (bad input) or -1. */
static int read_template(const char *dir, const char *name, tfile_t **out, size_t *nout,
                         char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        snprintf(err, errlen, "template %s: %s", dir, strerror(e));
        return e == ENOENT || e == ENOTDIR ? -2 : -1;
    }
    tfile_t *files = NULL;
    size_t n = 0;
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (stat(path, &st) != 0) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            rc = -1;
            break;
        }
        if (!S_ISREG(st.st_mode)) {
            snprintf(err, errlen, "%s: not a regular file (a template holds only files)", path);
            rc = -2;
            break;
        }
        tfile_t *grown = realloc(files, (n + 1) * sizeof *files);
        if (!grown) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
            break;
        }
        files = grown;
        tfile_t *f = &files[n];
        memset(f, 0, sizeof *f);
        f->mode = (st.st_mode & 0777) | S_IWUSR;
        size_t nl;
        char *raw = NULL;
        size_t rawlen = 0;
        f->name = scaffold_rename(de->d_name, strlen(de->d_name), name, &nl);
        n++;
        if (!f->name || read_small(path, &raw, &rawlen, err, errlen) != 0) {
            if (!f->name)
                snprintf(err, errlen, "out of memory");
            rc = -1;
            break;
        }
        f->text = scaffold_rename(raw, rawlen, name, &f->len);
        free(raw);
        if (!f->text) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
        }
    }
    closedir(d);
    if (rc == 0 && n == 0) {
        snprintf(err, errlen, "template %s: empty folder", dir);
        rc = -2;
    }
    if (rc != 0) {
        tfiles_free(files, n);
        return rc;
    }
    qsort(files, n, sizeof *files, cmp_tfile);
    *out = files;
    *nout = n;
    return 0;
}

static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int scaffold_plugin(const char *template_dir, const char *dest_dir, const char *name,
                    char ***files_out, char *err, size_t errlen)
{
    if (scaffold_name_check(name, err, errlen) != 0)
        return -2;
    tfile_t *files;
    size_t n;
    int rc = read_template(template_dir, name, &files, &n, err, errlen);
    if (rc != 0)
        return rc;
    if (mkdir(dest_dir, 0755) != 0) {
        int e = errno;
        if (e == EEXIST)
            snprintf(err, errlen, "%s already exists: a new plugin gets a new folder (give "
                     "another with --dir, or remove it)", dest_dir);
        else if (e == ENOENT)
            snprintf(err, errlen, "cannot make %s: its parent folder does not exist", dest_dir);
        else
            snprintf(err, errlen, "cannot make %s: %s", dest_dir, strerror(e));
        tfiles_free(files, n);
        return e == EEXIST || e == ENOENT || e == ENOTDIR ? -2 : -1;
    }
    size_t written = 0;
    for (; written < n; written++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dest_dir, files[written].name);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, files[written].mode);
        if (fd < 0) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            rc = -1;
            break;
        }
        int bad = write_all(fd, files[written].text, files[written].len);
        int e = errno;
        if (close(fd) != 0 && !bad) {
            bad = -1;
            e = errno;
        }
        if (bad) {
            snprintf(err, errlen, "%s: %s", path, strerror(e));
            written++; /* created: removed below with the others */
            rc = -1;
            break;
        }
    }
    char **names = rc == 0 ? calloc(n + 1, sizeof *names) : NULL;
    if (rc == 0 && !names) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    }
    if (rc != 0) {
        for (size_t i = 0; i < written; i++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", dest_dir, files[i].name);
            unlink(path);
        }
        rmdir(dest_dir);
        tfiles_free(files, n);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        names[i] = files[i].name;
        files[i].name = NULL;
    }
    tfiles_free(files, n);
    *files_out = names;
    return 0;
}
