/*
 * plugin.c — loading, checking and calling evbus plugins (see plugin.h).
 *
 * The loader trusts nothing in a descriptor until it has checked it: the
 * ABI version and struct size are read first, then every pointer and
 * string the host will later dereference.  A plugin's config is checked
 * against its config map (config_map.c) before init(); without a map the
 * plugin's init alone judges it.  This module does not route events.
 */
#include "plugin/plugin.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plugin/config_map.h"
#include "router/router.h"
#include "util/log.h"
#include "util/private_dir.h"

/* ABI minor 1 turned reserved[0] and reserved[1] into config_map and
 * n_config_map: a descriptor built before them must keep its size and
 * have them exactly where its reserved slots were. */
_Static_assert(sizeof(size_t) == sizeof(void *), "n_config_map must fill a reserved slot");
_Static_assert(sizeof(evbus_plugin_descriptor_t) ==
                   offsetof(evbus_plugin_descriptor_t, config_map) + 8 * sizeof(void *),
               "config_map, n_config_map and reserved[] must span the old reserved[8]");
/* ABI minor 3 put handler_api beside handler in a union: a subscriber row
 * keeps the size and layout of 1.0, so arrays of old plugins read right. */
_Static_assert(sizeof(evbus_subscriber_t) == 4 * sizeof(void *) &&
                   offsetof(evbus_subscriber_t, handler) ==
                       offsetof(evbus_subscriber_t, handler_api),
               "a subscriber row must keep the ABI 1.0 layout");

struct plugin_lib {
    char *path;
    void *handle;
    const evbus_plugin_descriptor_t *desc;
    plugin_file_id_t file;
    atomic_int refs; /* open/ref references + live instances */
};

/* State shared by an instance and the instances that adopted it. */
typedef struct plugin_state_box {
    atomic_int refs;
    void *state;
    bool serial;
    uint32_t init_flags; /* EVBUS_INIT_* of the init() that made state */
    pthread_mutex_t mu;  /* held around handler calls of SERIAL plugins */
    /* a remote instance's forwarding (plugin_instance_new_remote): state
     * is then the remote, and fini() is ops->stop */
    const plugin_remote_ops_t *remote_ops;
} plugin_state_box_t;

struct plugin_instance {
    plugin_lib_t *lib;
    char *name;
    char *config_json;
    const evbus_host_api_t *api; /* what init() got; handler_api gets it too */
    plugin_state_box_t *box;
};

static __thread const char *plugin_tls_current;
static __thread uint32_t plugin_tls_init_flags;

void plugin_set_current(const char *instance_name) { plugin_tls_current = instance_name; }

const char *plugin_current(void) { return plugin_tls_current; }

uint32_t plugin_current_init_flags(void) { return plugin_tls_init_flags; }

/* ---- file identity and private copies --------------------------------- */

/* Reads fd to the end, hashing and (when out_fd >= 0) copying the bytes. */
static int plugin_copy_hash(int in_fd, int out_fd, unsigned char digest[PLUGIN_DIGEST_LEN],
                            const char *what, char *err, size_t errlen)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        snprintf(err, errlen, "%s: cannot initialise SHA-256", what);
        EVP_MD_CTX_free(md);
        return -1;
    }
    char buf[65536];
    int rc = -1;
    for (;;) {
        ssize_t n = read(in_fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            snprintf(err, errlen, "%s: read: %s", what, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        EVP_DigestUpdate(md, buf, (size_t)n);
        for (ssize_t off = 0; out_fd >= 0 && off < n;) {
            ssize_t w = write(out_fd, buf + off, (size_t)(n - off));
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                snprintf(err, errlen, "%s: writing private copy: %s", what, strerror(errno));
                goto out;
            }
            off += w;
        }
    }
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(md, digest, &len) != 1 || len != PLUGIN_DIGEST_LEN) {
        snprintf(err, errlen, "%s: SHA-256 failed", what);
        goto out;
    }
    rc = 0;
out:
    EVP_MD_CTX_free(md);
    return rc;
}

static void plugin_fill_stat(plugin_file_id_t *id, const struct stat *st)
{
    id->dev = st->st_dev;
    id->ino = st->st_ino;
    id->mtime = st->st_mtim;
    id->size = st->st_size;
}

int plugin_file_identify(const char *path, plugin_file_id_t *out, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: stat: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    plugin_fill_stat(out, &st);
    int rc = plugin_copy_hash(fd, -1, out->digest, path, err, errlen);
    close(fd);
    return rc;
}

bool plugin_file_same_content(const plugin_file_id_t *a, const plugin_file_id_t *b)
{
    return memcmp(a->digest, b->digest, PLUGIN_DIGEST_LEN) == 0;
}

/* Copies path to a fresh file in private_dir, hashing it on the way. */
static int plugin_private_copy(const char *path, const char *private_dir, char *copy,
                               size_t copylen, plugin_file_id_t *id, char *err, size_t errlen)
{
    static atomic_uint counter;
    char derr[1024];
    if (private_dir_ensure(private_dir, "plugin copy folder", derr, sizeof derr) != 0) {
        snprintf(err, errlen, "%s: %s", path, derr);
        return -1;
    }
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(in, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(in);
        return -1;
    }
    plugin_fill_stat(id, &st);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    int n = snprintf(copy, copylen, "%s/%s.%ld.%u.so", private_dir, base, (long)getpid(),
                     atomic_fetch_add(&counter, 1));
    if (n < 0 || (size_t)n >= copylen) {
        snprintf(err, errlen, "%s: private copy path too long", path);
        close(in);
        return -1;
    }
    int out = open(copy, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
    if (out < 0) {
        snprintf(err, errlen, "%s: cannot create private copy %s: %s", path, copy,
                 strerror(errno));
        close(in);
        return -1;
    }
    int rc = plugin_copy_hash(in, out, id->digest, path, err, errlen);
    close(in);
    if (close(out) != 0 && rc == 0) {
        snprintf(err, errlen, "%s: writing private copy %s: %s", path, copy, strerror(errno));
        rc = -1;
    }
    if (rc != 0)
        unlink(copy);
    return rc;
}

/* ---- descriptor checks ------------------------------------------------- */

static int plugin_check_subscribers(const char *path, const evbus_plugin_descriptor_t *d,
                                    char *err, size_t errlen)
{
    if (d->n_subscribers > 0 && !d->subscribers) {
        snprintf(err, errlen, "%s: n_subscribers is %zu but subscribers is NULL", path,
                 d->n_subscribers);
        return -1;
    }
    for (size_t i = 0; i < d->n_subscribers; i++) {
        const evbus_subscriber_t *s = &d->subscribers[i];
        if (!s->name || !s->name[0]) {
            snprintf(err, errlen, "%s: subscriber %zu has no name", path, i);
            return -1;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(d->subscribers[j].name, s->name) == 0) {
                snprintf(err, errlen, "%s: subscriber name '%s' is used twice (%zu and %zu)",
                         path, s->name, j, i);
                return -1;
            }
        }
        bool with_api = d->flags & EVBUS_PLUGIN_F_HANDLER_API;
        if (with_api ? !s->handler_api : !s->handler) {
            snprintf(err, errlen, "%s: subscriber '%s' has no handler", path, s->name);
            return -1;
        }
        char perr[256];
        if (!s->pattern) {
            snprintf(err, errlen, "%s: subscriber '%s' has no pattern", path, s->name);
            return -1;
        }
        if (router_pattern_check(s->pattern, perr, sizeof perr) != 0) {
            snprintf(err, errlen, "%s: subscriber '%s': invalid pattern '%s': %s", path,
                     s->name, s->pattern, perr);
            return -1;
        }
        if (s->priority < 0) {
            snprintf(err, errlen, "%s: subscriber '%s': priority %d is negative", path,
                     s->name, s->priority);
            return -1;
        }
    }
    return 0;
}

static int plugin_check_upcasters(const char *path, const evbus_plugin_descriptor_t *d,
                                  char *err, size_t errlen)
{
    if (d->n_upcasters > 0 && !d->upcasters) {
        snprintf(err, errlen, "%s: n_upcasters is %zu but upcasters is NULL", path,
                 d->n_upcasters);
        return -1;
    }
    for (size_t i = 0; i < d->n_upcasters; i++) {
        const evbus_upcaster_t *u = &d->upcasters[i];
        char terr[256];
        if (!u->type || router_type_check(u->type, terr, sizeof terr) != 0) {
            snprintf(err, errlen, "%s: upcaster %zu: invalid event type '%s': %s", path, i,
                     u->type ? u->type : "(null)", u->type ? terr : "type is NULL");
            return -1;
        }
        if (u->from_version < 1) {
            snprintf(err, errlen, "%s: upcaster for %s: from_version %d is below 1", path,
                     u->type, u->from_version);
            return -1;
        }
        if (!u->upcast) {
            snprintf(err, errlen, "%s: upcaster for %s v%d has no function", path, u->type,
                     u->from_version);
            return -1;
        }
        for (size_t j = 0; j < i; j++) {
            if (d->upcasters[j].from_version == u->from_version &&
                strcmp(d->upcasters[j].type, u->type) == 0) {
                snprintf(err, errlen, "%s: two upcasters for %s from version %d", path,
                         u->type, u->from_version);
                return -1;
            }
        }
    }
    return 0;
}

static int plugin_check_descriptor(const char *path, const evbus_plugin_descriptor_t *d,
                                   char *err, size_t errlen)
{
    if (!d) {
        snprintf(err, errlen, "%s: %s() returned NULL", path, EVBUS_PLUGIN_DESCRIPTOR_SYMBOL);
        return -1;
    }
    if (d->abi_version != EVBUS_ABI_VERSION) {
        snprintf(err, errlen, "%s: ABI version %u, host supports %u", path, d->abi_version,
                 EVBUS_ABI_VERSION);
        return -1;
    }
    if (d->struct_size < sizeof(evbus_plugin_descriptor_t)) {
        snprintf(err, errlen,
                 "%s: descriptor struct_size is %u bytes, ABI version %u needs at least %zu",
                 path, d->struct_size, EVBUS_ABI_VERSION, sizeof(evbus_plugin_descriptor_t));
        return -1;
    }
    for (size_t i = 0; i < sizeof d->reserved / sizeof d->reserved[0]; i++) {
        if (d->reserved[i]) {
            snprintf(err, errlen, "%s: descriptor reserved[%zu] is not zero", path, i);
            return -1;
        }
    }
    const uint32_t known = EVBUS_PLUGIN_F_SERIAL | EVBUS_PLUGIN_F_KEEP_STATE |
                           EVBUS_PLUGIN_F_CONFIG_MAP | EVBUS_PLUGIN_F_HANDLER_API;
    if (d->flags & ~known) {
        snprintf(err, errlen, "%s: unknown descriptor flags 0x%x", path, d->flags & ~known);
        return -1;
    }
    if (!d->name || !d->name[0]) {
        snprintf(err, errlen, "%s: descriptor has no name", path);
        return -1;
    }
    if (!d->version) {
        snprintf(err, errlen, "%s: plugin '%s' has no version", path, d->name);
        return -1;
    }
    if (!d->init) {
        snprintf(err, errlen, "%s: plugin '%s' has no init function", path, d->name);
        return -1;
    }
    if (plugin_check_subscribers(path, d, err, errlen) != 0 ||
        plugin_check_upcasters(path, d, err, errlen) != 0 ||
        config_map_check_descriptor(path, d, err, errlen) != 0)
        return -1;
    if (d->n_subscribers == 0 && d->n_upcasters == 0) {
        snprintf(err, errlen, "%s: plugin '%s' offers neither subscribers nor upcasters", path,
                 d->name);
        return -1;
    }
    return 0;
}

/* ---- libraries --------------------------------------------------------- */

/*
 * dlerror()'s text names the private copy, a file that no longer exists
 * and that the operator never wrote: drop its "<copy>: " prefix and put
 * the original path wherever else the copy is named.
 */
static void plugin_dl_message(const char *msg, const char *copy, const char *path, char *out,
                              size_t outlen)
{
    if (!msg)
        msg = "unknown error";
    size_t cl = strlen(copy), o = 0;
    if (strncmp(msg, copy, cl) == 0 && strncmp(msg + cl, ": ", 2) == 0)
        msg += cl + 2;
    out[0] = '\0';
    for (const char *p = msg; *p && o + 1 < outlen;) {
        bool is_copy = strncmp(p, copy, cl) == 0;
        size_t n = is_copy ? strlen(path) : 1;
        if (n > outlen - 1 - o)
            n = outlen - 1 - o;
        memcpy(out + o, is_copy ? path : p, n);
        o += n;
        p += is_copy ? cl : 1;
    }
    out[o] = '\0';
}

int plugin_lib_open(const char *path, const char *private_dir, plugin_lib_t **out, char *err,
                    size_t errlen)
{
    char copy[4096];
    plugin_file_id_t id;
    if (plugin_private_copy(path, private_dir, copy, sizeof copy, &id, err, errlen) != 0)
        return -1;
    dlerror();
    void *handle = dlopen(copy, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        char msg[1024];
        plugin_dl_message(dlerror(), copy, path, msg, sizeof msg);
        snprintf(err, errlen, "%s: dlopen failed: %s", path, msg);
        unlink(copy);
        return -1;
    }
    /* The mapping keeps the code alive; the name must not be found again. */
    unlink(copy);

    /* dlerror() would only name the private copy: say what to change. */
    void *sym = dlsym(handle, EVBUS_PLUGIN_DESCRIPTOR_SYMBOL);
    if (!sym) {
        snprintf(err, errlen,
                 "%s: missing symbol %s: the library exports no function of that name; "
                 "define it with EVBUS_PLUGIN() from <evbus/plugin.h>, or mark it "
                 "EVBUS_PLUGIN_EXPORT when building with -fvisibility=hidden",
                 path, EVBUS_PLUGIN_DESCRIPTOR_SYMBOL);
        dlclose(handle);
        return -1;
    }
    evbus_plugin_descriptor_fn fn;
    /* POSIX guarantees a dlsym'd function pointer converts this way. */
    *(void **)&fn = sym;
    const evbus_plugin_descriptor_t *desc = fn();
    if (plugin_check_descriptor(path, desc, err, errlen) != 0) {
        dlclose(handle);
        return -1;
    }
    plugin_lib_t *lib = calloc(1, sizeof *lib);
    char *p = strdup(path);
    if (!lib || !p) {
        snprintf(err, errlen, "%s: out of memory", path);
        free(lib);
        free(p);
        dlclose(handle);
        return -1;
    }
    lib->path = p;
    lib->handle = handle;
    lib->desc = desc;
    lib->file = id;
    atomic_init(&lib->refs, 1);
    *out = lib;
    return 0;
}

plugin_lib_t *plugin_lib_ref(plugin_lib_t *lib)
{
    atomic_fetch_add(&lib->refs, 1);
    return lib;
}

void plugin_lib_close(plugin_lib_t *lib)
{
    if (!lib || atomic_fetch_sub(&lib->refs, 1) != 1)
        return;
    dlclose(lib->handle);
    free(lib->path);
    free(lib);
}

const evbus_plugin_descriptor_t *plugin_lib_descriptor(const plugin_lib_t *lib)
{
    return lib->desc;
}

const char *plugin_lib_path(const plugin_lib_t *lib) { return lib->path; }

const unsigned char *plugin_lib_digest(const plugin_lib_t *lib) { return lib->file.digest; }

const plugin_file_id_t *plugin_lib_file_id(const plugin_lib_t *lib) { return &lib->file; }

/* ---- instances --------------------------------------------------------- */

static plugin_instance_t *plugin_instance_alloc(plugin_lib_t *lib, const char *name,
                                                const char *config_json)
{
    plugin_instance_t *inst = calloc(1, sizeof *inst);
    if (!inst)
        return NULL;
    inst->name = strdup(name);
    inst->config_json = strdup(config_json ? config_json : "{}");
    if (!inst->name || !inst->config_json) {
        free(inst->name);
        free(inst->config_json);
        free(inst);
        return NULL;
    }
    inst->lib = plugin_lib_ref(lib);
    return inst;
}

static void plugin_instance_release(plugin_instance_t *inst)
{
    plugin_lib_close(inst->lib);
    free(inst->name);
    free(inst->config_json);
    free(inst);
}

typedef struct plugin_first_problem {
    char text[512];
} plugin_first_problem_t;

/* Keeps the first problem config_map_check() reports. */
static void plugin_keep_first(void *arg, const char *key, config_map_at_t at, const char *msg)
{
    (void)key, (void)at;
    plugin_first_problem_t *first = arg;
    if (!first->text[0])
        snprintf(first->text, sizeof first->text, "%s", msg);
}

/* Reports each problem at the position of the key, of its value or of the
 * whole `config:` (the instance's entry when there is none). */
typedef struct plugin_config_where {
    const cfg_instance_t *ci;
    cfg_errors_t *errs;
} plugin_config_where_t;

static void plugin_positioned_problem(void *arg, const char *key, config_map_at_t at,
                                      const char *msg)
{
    const plugin_config_where_t *w = arg;
    const cfg_pos_t *pos = w->ci->config_pos.file ? &w->ci->config_pos : &w->ci->pos;
    for (size_t i = 0; key && i < w->ci->n_config_keys; i++) {
        const cfg_config_key_t *k = &w->ci->config_keys[i];
        if (strcmp(k->key, key) == 0) {
            pos = at == CONFIG_MAP_AT_KEY ? &k->key_pos : &k->value_pos;
            break;
        }
    }
    cfg_errors_add(w->errs, pos, "%s", msg);
}

int plugin_config_check(const plugin_lib_t *lib, const cfg_instance_t *ci, cfg_errors_t *errs)
{
    plugin_config_where_t w = {.ci = ci, .errs = errs};
    size_t problems =
        config_map_check(lib->desc, ci->name, ci->config_json, plugin_positioned_problem, &w);
    return problems == 0 ? 0 : -1;
}

int plugin_instance_new(plugin_lib_t *lib, const char *name, const char *config_json,
                        const evbus_host_api_t *api, uint32_t init_flags,
                        plugin_instance_t **out, char *err, size_t errlen)
{
    plugin_first_problem_t first = {.text = ""};
    size_t problems = config_map_check(lib->desc, name, config_json, plugin_keep_first, &first);
    if (problems > 0) {
        if (problems == 1)
            snprintf(err, errlen, "instance '%s' (%s): %s", name, lib->path, first.text);
        else
            snprintf(err, errlen, "instance '%s' (%s): %s (and %zu more)", name, lib->path,
                     first.text, problems - 1);
        return -1;
    }
    plugin_instance_t *inst = plugin_instance_alloc(lib, name, config_json);
    plugin_state_box_t *box = calloc(1, sizeof *box);
    if (!inst || !box) {
        snprintf(err, errlen, "instance '%s' (%s): out of memory", name, lib->path);
        if (inst)
            plugin_instance_release(inst);
        free(box);
        return -1;
    }
    inst->api = api;
    atomic_init(&box->refs, 1);
    box->serial = (lib->desc->flags & EVBUS_PLUGIN_F_SERIAL) != 0;
    box->init_flags = init_flags;
    pthread_mutex_init(&box->mu, NULL);

    char perr[512] = "";
    const char *saved = plugin_current();
    plugin_set_current(inst->name);
    plugin_tls_init_flags = init_flags;
    int rc = lib->desc->init(api, inst->config_json, &box->state, perr, sizeof perr);
    plugin_tls_init_flags = 0;
    plugin_set_current(saved);
    if (rc != 0) {
        perr[sizeof perr - 1] = '\0';
        if (perr[0])
            snprintf(err, errlen, "instance '%s' (%s): init failed: %s", name, lib->path, perr);
        else
            snprintf(err, errlen, "instance '%s' (%s): init failed (returned %d) and gave no "
                     "message", name, lib->path, rc);
        pthread_mutex_destroy(&box->mu);
        free(box);
        plugin_instance_release(inst);
        return -1;
    }
    inst->box = box;
    *out = inst;
    return 0;
}

int plugin_instance_new_remote(plugin_lib_t *lib, const char *name, const char *config_json,
                               const plugin_remote_ops_t *ops, void *remote,
                               plugin_instance_t **out, char *err, size_t errlen)
{
    plugin_instance_t *inst = plugin_instance_alloc(lib, name, config_json);
    plugin_state_box_t *box = calloc(1, sizeof *box);
    if (!inst || !box) {
        snprintf(err, errlen, "instance '%s' (%s): out of memory", name, lib->path);
        if (inst)
            plugin_instance_release(inst);
        free(box);
        ops->stop(remote);
        return -1;
    }
    atomic_init(&box->refs, 1);
    box->state = remote;
    box->remote_ops = ops;
    pthread_mutex_init(&box->mu, NULL);
    inst->box = box;
    *out = inst;
    return 0;
}

bool plugin_instance_is_remote(const plugin_instance_t *inst)
{
    return inst->box->remote_ops != NULL;
}

void *plugin_call_prepare(plugin_instance_t *inst, const evbus_subscriber_t *sub,
                          const evbus_event_t *ev, unsigned flags)
{
    plugin_state_box_t *box = inst->box;
    if (!box->remote_ops)
        return NULL;
    return box->remote_ops->prepare(box->state, (size_t)(sub - inst->lib->desc->subscribers),
                                    ev, flags);
}

void plugin_call_run(plugin_instance_t *inst, void *const *calls, size_t n)
{
    inst->box->remote_ops->run(inst->box->state, calls, n);
}

evbus_result_t plugin_call_outcome(const plugin_instance_t *inst, void *call,
                                   const char **reason, int64_t *took_ms)
{
    return inst->box->remote_ops->outcome(call, reason, took_ms);
}

void plugin_call_release(const plugin_instance_t *inst, void *call)
{
    inst->box->remote_ops->release(call);
}

int plugin_instance_adopt(plugin_instance_t *old, plugin_instance_t **out, char *err,
                          size_t errlen)
{
    if (!(old->lib->desc->flags & EVBUS_PLUGIN_F_KEEP_STATE)) {
        snprintf(err, errlen, "instance '%s' (%s): plugin does not set KEEP_STATE",
                 old->name, old->lib->path);
        return -1;
    }
    plugin_instance_t *inst = plugin_instance_alloc(old->lib, old->name, old->config_json);
    if (!inst) {
        snprintf(err, errlen, "instance '%s' (%s): out of memory", old->name,
                 old->lib->path);
        return -1;
    }
    atomic_fetch_add(&old->box->refs, 1);
    inst->api = old->api;
    inst->box = old->box;
    *out = inst;
    return 0;
}

bool plugin_instance_can_adopt(const plugin_instance_t *old, const char *name,
                               const plugin_file_id_t *file, const char *config_json)
{
    return strcmp(old->name, name) == 0 &&
           (old->lib->desc->flags & EVBUS_PLUGIN_F_KEEP_STATE) &&
           plugin_file_same_content(&old->lib->file, file) &&
           strcmp(old->config_json, config_json ? config_json : "{}") == 0;
}

void plugin_instance_free(plugin_instance_t *inst)
{
    if (!inst)
        return;
    plugin_state_box_t *box = inst->box;
    if (atomic_fetch_sub(&box->refs, 1) == 1) {
        if (box->remote_ops) {
            box->remote_ops->stop(box->state);
        } else if (inst->lib->desc->fini) {
            const char *saved = plugin_current();
            plugin_set_current(inst->name);
            plugin_tls_init_flags = box->init_flags;
            inst->lib->desc->fini(box->state);
            plugin_tls_init_flags = 0;
            plugin_set_current(saved);
        }
        pthread_mutex_destroy(&box->mu);
        free(box);
    }
    plugin_instance_release(inst);
}

const char *plugin_instance_name(const plugin_instance_t *inst) { return inst->name; }

const char *plugin_instance_config(const plugin_instance_t *inst) { return inst->config_json; }

void *plugin_instance_state(const plugin_instance_t *inst) { return inst->box->state; }

plugin_lib_t *plugin_instance_lib(const plugin_instance_t *inst) { return inst->lib; }

const evbus_subscriber_t *plugin_lib_find_subscriber(const plugin_lib_t *lib, const char *name)
{
    const evbus_plugin_descriptor_t *d = lib->desc;
    if (!name)
        return d->n_subscribers > 0 ? &d->subscribers[0] : NULL;
    for (size_t i = 0; i < d->n_subscribers; i++)
        if (strcmp(d->subscribers[i].name, name) == 0)
            return &d->subscribers[i];
    return NULL;
}

const evbus_subscriber_t *plugin_instance_find_subscriber(const plugin_instance_t *inst,
                                                          const char *name)
{
    return plugin_lib_find_subscriber(inst->lib, name);
}

void plugin_lib_subscriber_names(const plugin_lib_t *lib, char *out, size_t len)
{
    const evbus_plugin_descriptor_t *d = lib->desc;
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < d->n_subscribers && used < len; i++) {
        int n = snprintf(out + used, len - used, "%s%s", i ? ", " : "", d->subscribers[i].name);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

evbus_result_t plugin_instance_call(plugin_instance_t *inst, const evbus_subscriber_t *sub,
                                    const evbus_event_t *ev)
{
    plugin_state_box_t *box = inst->box;
    if (box->remote_ops)
        return box->remote_ops->call(box->state, (size_t)(sub - inst->lib->desc->subscribers),
                                     ev);
    const char *saved = plugin_current();
    plugin_set_current(inst->name);
    if (box->serial)
        pthread_mutex_lock(&box->mu);
    /* In C an enum holds any value of its integer type, so a plugin
     * returning 7 is representable and merely needs mapping. */
    int r = inst->lib->desc->flags & EVBUS_PLUGIN_F_HANDLER_API
                ? (int)sub->handler_api(inst->api, ev, box->state)
                : (int)sub->handler(ev, box->state);
    if (box->serial)
        pthread_mutex_unlock(&box->mu);
    plugin_set_current(saved);
    if (r != EVBUS_OK && r != EVBUS_RETRY && r != EVBUS_REJECT) {
        log_warn("plugin", "instance '%s' handler '%s' returned %d, treated as RETRY",
                 inst->name, sub->name, r);
        return EVBUS_RETRY;
    }
    return (evbus_result_t)r;
}
