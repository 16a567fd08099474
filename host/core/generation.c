/*
 * generation — building, sharing and retiring configuration snapshots.
 *
 * Build order follows the cost of failure: config first (cheap, reports
 * positions), then the state_dir's safety, schemas, plugins (every library
 * opened, every instance's config checked against its plugin's config map
 * and every `handler:` name resolved before the first init, which may have
 * side effects), then the router.  Any error undoes everything built so
 * far, in reverse order, so a failed reload leaves no trace.
 */
#include "core/generation.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "config/settings.h"
#include "core/event.h"
#include "isolation/isolation.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/private_dir.h"

static atomic_int peekers; /* generation_peek_begin() minus _end() */

void generation_peek_begin(void) { atomic_fetch_add(&peekers, 1); }
void generation_peek_end(void) { atomic_fetch_sub(&peekers, 1); }

static pthread_mutex_t retired_lock = PTHREAD_MUTEX_INITIALIZER;
static generation_t **retired;
static size_t n_retired, cap_retired;

generation_t *generation_ref(generation_t *g)
{
    atomic_fetch_add(&g->refs, 1);
    return g;
}

void generation_unref(generation_t *g)
{
    if (!g || atomic_fetch_sub(&g->refs, 1) != 1)
        return;
    pthread_mutex_lock(&retired_lock);
    if (n_retired == cap_retired) {
        /* Out of memory here cannot be reported (unref has no error path)
         * and `retired = realloc(retired, ...)` would lose the list and then
         * write through NULL: stop loudly instead, as config.c's oom() does. */
        size_t cap = cap_retired ? cap_retired * 2 : 8;
        generation_t **grown = realloc(retired, cap * sizeof *retired);
        if (!grown) {
            fputs("generation: out of memory\n", stderr);
            abort();
        }
        retired = grown;
        cap_retired = cap;
    }
    retired[n_retired++] = g;
    pthread_mutex_unlock(&retired_lock);
}

int generation_reap(void)
{
    pthread_mutex_lock(&retired_lock);
    generation_t **list = retired;
    size_t n = n_retired;
    retired = NULL;
    n_retired = cap_retired = 0;
    pthread_mutex_unlock(&retired_lock);
    /* a peek lasts a string copy: wait it out before freeing (see the header) */
    while (n && atomic_load(&peekers) > 0)
        sched_yield();
    for (size_t i = 0; i < n; i++) {
        log_info("reload", "generation %llu drained; finalising its plugins",
                 (unsigned long long)list[i]->number);
        generation_destroy(list[i]);
    }
    free(list);
    return (int)n;
}

void generation_destroy(generation_t *g)
{
    if (!g)
        return;
    router_free(g->router);
    for (size_t i = g->n_insts; i-- > 0;)
        plugin_instance_free(g->insts[i]);
    for (size_t i = 0; i < g->n_ffis; i++)
        ffih_close(g->ffis[i]);
    for (size_t i = 0; i < g->n_libs; i++)
        plugin_lib_close(g->libs[i]);
    schema_catalog_free(g->schemas);
    config_free(g->cfg);
    cfg_pending_free(&g->pending_restart);
    free(g->insts);
    free(g->ffis);
    free(g->libs);
    free(g->handlers);
    free(g->upcasters);
    free(g);
}

const gen_handler_t *generation_find_handler(const generation_t *g, const char *name)
{
    for (size_t i = 0; i < g->n_handlers; i++)
        if (strcmp(g->handlers[i].name, name) == 0)
            return &g->handlers[i];
    return NULL;
}

evbus_upcast_fn generation_find_upcaster(const generation_t *g, const char *type, int from)
{
    for (size_t i = 0; i < g->n_upcasters; i++)
        if (g->upcasters[i].from_version == from && strcmp(g->upcasters[i].type, type) == 0)
            return g->upcasters[i].fn;
    return NULL;
}

static const plugin_instance_t *prev_instance(const generation_t *prev, const char *name)
{
    if (!prev)
        return NULL;
    for (size_t i = 0; i < prev->n_insts; i++)
        if (strcmp(plugin_instance_name(prev->insts[i]), name) == 0)
            return prev->insts[i];
    return NULL;
}

/* Effective policy of a subscription: its own settings over the globals. */
static void handler_policy(gen_handler_t *h, const evbus_config_t *cfg,
                           const cfg_subscription_t *s)
{
    h->schema_mode = s && s->has_schema_mode ? s->schema_mode : (schema_mode_t)cfg->schema.mode;
    h->versions = s ? s->versions : NULL;
    h->n_versions = s ? s->n_versions : 0;
    h->retry = s && s->has_retry ? s->retry : cfg->core.retry;
    h->timeout_ms = s && s->timeout_ms ? s->timeout_ms : cfg->core.handler_timeout_ms;
    h->dedup_ttl_s = s ? s->dedup_ttl_s : 0;
    h->per_key = s && s->ordering == CFG_ORDERING_PER_KEY;
}

static int open_lib(generation_t *g, const char *path, const char *private_dir,
                    plugin_lib_t **out, const cfg_pos_t *pos, cfg_errors_t *errs)
{
    for (size_t i = 0; i < g->n_libs; i++)
        if (strcmp(plugin_lib_path(g->libs[i]), path) == 0) {
            *out = g->libs[i];
            return 0;
        }
    char err[1024];
    plugin_lib_t *lib = NULL;
    if (plugin_lib_open(path, private_dir, &lib, err, sizeof err) != 0) {
        cfg_errors_add(errs, pos, "%s", err);
        return -1;
    }
    g->libs[g->n_libs++] = lib;
    *out = lib;
    return 0;
}

static int add_upcasters(generation_t *g, const plugin_lib_t *lib, const cfg_pos_t *pos,
                         cfg_errors_t *errs, size_t *cap)
{
    const evbus_plugin_descriptor_t *d = plugin_lib_descriptor(lib);
    for (size_t k = 0; k < d->n_upcasters; k++) {
        const evbus_upcaster_t *u = &d->upcasters[k];
        evbus_upcast_fn have = generation_find_upcaster(g, u->type, u->from_version);
        if (have == u->upcast)
            continue; /* the same library used by two instances */
        if (have) {
            cfg_errors_add(errs, pos, "two plugins export an upcaster for %s version %d",
                           u->type, u->from_version);
            return -1;
        }
        if (g->n_upcasters == *cap) {
            *cap = *cap ? *cap * 2 : 8;
            g->upcasters = realloc(g->upcasters, *cap * sizeof *g->upcasters);
        }
        g->upcasters[g->n_upcasters++] =
            (gen_upcaster_t){.type = u->type, .from_version = u->from_version, .fn = u->upcast};
    }
    return 0;
}

/* Every `handler:` of ci's subscriptions names a subscriber of lib. */
static int check_handler_names(const plugin_lib_t *lib, const cfg_instance_t *ci,
                               cfg_errors_t *errs)
{
    const evbus_plugin_descriptor_t *d = plugin_lib_descriptor(lib);
    int failed = 0;
    for (size_t k = 0; k < ci->n_subs; k++) {
        const cfg_subscription_t *s = &ci->subs[k];
        if (plugin_lib_find_subscriber(lib, s->handler))
            continue;
        failed = 1;
        if (!s->handler) {
            cfg_errors_add(errs, &s->pos, "plugin '%s' has no handler to subscribe (it offers "
                           "only upcasters)", d->name);
            continue;
        }
        char names[512];
        plugin_lib_subscriber_names(lib, names, sizeof names);
        cfg_errors_add(errs, &s->pos, "plugin '%s' has no handler named '%s' (valid: %s)",
                       d->name, s->handler, names[0] ? names : "none");
    }
    return failed ? -1 : 0;
}

/*
 * First pass over the instances: open each library, or pick the previous
 * generation's instance whose state it will adopt, and check each config
 * against its plugin's config map and each subscription's `handler:`
 * against its subscribers.  No init() runs for a generation whose
 * libraries, configs or handler names are wrong, and every such error is
 * reported.
 * libs[i] receives the library of instance i, adopt[i] the instance to
 * adopt (NULL: call init).
 */
static int resolve_instances(generation_t *g, const generation_t *prev, const char *private_dir,
                             plugin_lib_t **libs, plugin_instance_t **adopt, cfg_errors_t *errs)
{
    const evbus_config_t *cfg = g->cfg;
    int failed = 0;
    for (size_t i = 0; i < cfg->n_instances; i++) {
        const cfg_instance_t *ci = &cfg->instances[i];
        plugin_instance_t *old = (plugin_instance_t *)prev_instance(prev, ci->name);
        plugin_file_id_t fid;
        char err[1024];
        bool same = old && plugin_file_identify(ci->plugin_path, &fid, err, sizeof err) == 0 &&
                    plugin_instance_can_adopt(old, ci->name, &fid, ci->config_json);
        /* state never moves between a runner and the host */
        if (same && plugin_instance_is_remote(old) != (ci->isolation == CFG_ISOLATION_PROCESS)) {
            log_info("reload", "instance '%s': isolation changed to %s; its state starts "
                     "afresh (init runs again)", ci->name,
                     ci->isolation == CFG_ISOLATION_PROCESS ? "process" : "in-process");
            same = false;
        }
        if (same) {
            adopt[i] = old;
            libs[i] = plugin_instance_lib(old);
        } else if (open_lib(g, ci->plugin_path, private_dir, &libs[i], &ci->plugin_pos,
                            errs) != 0) {
            failed = 1;
            continue;
        }
        if (plugin_config_check(libs[i], ci, errs) != 0)
            failed = 1;
        if (check_handler_names(libs[i], ci, errs) != 0)
            failed = 1;
    }
    return failed ? -1 : 0;
}

/*
 * state_dir and its plugin copy folder: created when missing, refused when
 * another user could change them (util/private_dir.h), at every build so
 * that a reload notices a folder opened up since the start.  Reported at
 * the setting's position when a manifest set it.
 */
static int check_state_dir(const evbus_config_t *cfg, cfg_errors_t *errs)
{
    size_t idx = 0;
    const cfg_pos_t *pos = NULL;
    if (cfg_setting_find("state_dir", &idx) && cfg->sources[idx].kind == CFG_SRC_FILE)
        pos = &cfg->sources[idx].pos;
    char copies[1100], err[2048];
    snprintf(copies, sizeof copies, "%s/plugins", cfg->daemon.state_dir);
    if (private_dir_ensure(cfg->daemon.state_dir, "state_dir", err, sizeof err) != 0 ||
        private_dir_ensure(copies, "state_dir's plugin copy folder", err, sizeof err) != 0) {
        cfg_errors_add(errs, pos, "%s", err);
        return -1;
    }
    return 0;
}

static int build_instances(generation_t *g, const generation_t *prev, uint32_t init_flags,
                           cfg_errors_t *errs)
{
    const evbus_config_t *cfg = g->cfg;
    char private_dir[1024];
    snprintf(private_dir, sizeof private_dir, "%s/plugins", cfg->daemon.state_dir);
    size_t ups_cap = 0, n_handlers = 0;
    for (size_t i = 0; i < cfg->n_instances; i++)
        n_handlers += cfg->instances[i].n_subs ? cfg->instances[i].n_subs : EVENT_MAX_HANDLERS;
    for (size_t i = 0; i < cfg->n_foreign; i++)
        n_handlers += cfg->foreign[i].n_subs;
    g->libs = calloc(cfg->n_instances + 1, sizeof *g->libs);
    g->insts = calloc(cfg->n_instances + 1, sizeof *g->insts);
    g->ffis = calloc(cfg->n_foreign + 1, sizeof *g->ffis);
    g->handlers = calloc(n_handlers + 1, sizeof *g->handlers);
    plugin_lib_t **libs = calloc(cfg->n_instances + 1, sizeof *libs);
    plugin_instance_t **adopt = calloc(cfg->n_instances + 1, sizeof *adopt);
    if (!g->libs || !g->insts || !g->ffis || !g->handlers || !libs || !adopt) {
        cfg_errors_add(errs, NULL, "out of memory building generation");
        free(libs);
        free(adopt);
        return -1;
    }
    int failed = resolve_instances(g, prev, private_dir, libs, adopt, errs) != 0;
    /* no init() when any library or config is wrong; foreign entries are
     * still checked so that every error is reported at once */
    size_t n_init = failed ? 0 : cfg->n_instances;
    uint32_t seq = 0;
    for (size_t i = 0; i < n_init; i++) {
        const cfg_instance_t *ci = &cfg->instances[i];
        plugin_lib_t *lib = libs[i];
        plugin_instance_t *inst = NULL;
        char err[1024];
        if (adopt[i]) {
            if (plugin_instance_adopt(adopt[i], &inst, err, sizeof err) != 0) {
                cfg_errors_add(errs, &ci->pos, "%s", err);
                failed = 1;
                continue;
            }
            log_info("reload", "instance '%s' keeps its state (file and config unchanged)",
                     ci->name);
        } else {
            isolation_conf_t iso = {.private_dir = private_dir,
                                    .redis_url = cfg->core.redis_url,
                                    .redis_cluster = core_redis_cluster(cfg),
                                    .stream = cfg->core.stream,
                                    .partitions = cfg->core.partitions,
                                    .init_flags = init_flags,
                                    .api = event_host_api()};
            int rc = ci->isolation == CFG_ISOLATION_PROCESS
                         ? isolation_instance_new(lib, ci->name, ci->config_json, &iso, &inst,
                                                  err, sizeof err)
                         : plugin_instance_new(lib, ci->name, ci->config_json, event_host_api(),
                                               init_flags, &inst, err, sizeof err);
            if (rc != 0) {
                /* at `config:`, or at the entry when it has none */
                cfg_errors_add(errs, ci->config_pos.file ? &ci->config_pos : &ci->pos, "%s",
                               err);
                failed = 1;
                continue;
            }
        }
        g->insts[g->n_insts++] = inst;
        lib = plugin_instance_lib(inst);
        if (add_upcasters(g, lib, &ci->plugin_pos, errs, &ups_cap) != 0) {
            failed = 1;
            continue;
        }
        const evbus_plugin_descriptor_t *d = plugin_lib_descriptor(lib);
        if (ci->n_subs) {
            for (size_t k = 0; k < ci->n_subs; k++) {
                const cfg_subscription_t *s = &ci->subs[k];
                /* found: resolve_instances checked every name before any init */
                const evbus_subscriber_t *sub = plugin_instance_find_subscriber(inst, s->handler);
                gen_handler_t *h = &g->handlers[g->n_handlers++];
                snprintf(h->name, sizeof h->name, "%s/%s", ci->name, sub->name);
                h->kind = GEN_HANDLER_PLUGIN;
                h->inst = inst;
                h->sub = sub;
                h->pattern = s->pattern;
                h->priority = s->has_priority ? s->priority : sub->priority;
                h->seq = seq++;
                handler_policy(h, cfg, s);
            }
        } else {
            for (size_t k = 0; k < d->n_subscribers && k < EVENT_MAX_HANDLERS; k++) {
                const evbus_subscriber_t *sub = &d->subscribers[k];
                gen_handler_t *h = &g->handlers[g->n_handlers++];
                snprintf(h->name, sizeof h->name, "%s/%s", ci->name, sub->name);
                h->kind = GEN_HANDLER_PLUGIN;
                h->inst = inst;
                h->sub = sub;
                h->pattern = sub->pattern;
                h->priority = sub->priority;
                h->seq = seq++;
                handler_policy(h, cfg, NULL);
            }
        }
    }
    for (size_t i = 0; i < cfg->n_foreign; i++) {
        const cfg_foreign_t *cf = &cfg->foreign[i];
        ffih_t *f = ffih_open(cf, errs);
        if (!f) {
            failed = 1;
            continue;
        }
        g->ffis[g->n_ffis++] = f;
        for (size_t k = 0; k < cf->n_subs; k++) {
            const cfg_subscription_t *s = &cf->subs[k];
            gen_handler_t *h = &g->handlers[g->n_handlers++];
            snprintf(h->name, sizeof h->name, "%s", cf->name);
            h->kind = GEN_HANDLER_FOREIGN;
            h->ffi = f;
            h->pattern = s->pattern;
            h->priority = s->has_priority ? s->priority : 100;
            h->seq = seq++;
            handler_policy(h, cfg, s);
        }
    }
    for (size_t i = 0; i < g->n_handlers; i++)
        g->per_key |= g->handlers[i].per_key;
    free(libs);
    free(adopt);
    return failed ? -1 : 0;
}

static void hex(const unsigned char *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* The content digest of what this generation runs (see generation.h). */
static void digest_generation(generation_t *g)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        snprintf(g->digest, sizeof g->digest, "unknown");
        return;
    }
    const evbus_config_t *c = g->cfg;
    for (size_t i = 0; i < c->n_files; i++) {
        const char *slash = strrchr(c->files[i], '/');
        const char *name = slash ? slash + 1 : c->files[i];
        EVP_DigestUpdate(md, name, strlen(name) + 1);
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", c->dir, name);
        FILE *f = fopen(path, "rb");
        char buf[8192];
        size_t n;
        while (f && (n = fread(buf, 1, sizeof buf, f)) > 0)
            EVP_DigestUpdate(md, buf, n);
        if (f)
            fclose(f);
        EVP_DigestUpdate(md, "", 1);
    }
    for (size_t i = 0; i < g->n_insts; i++) {
        const char *name = plugin_instance_name(g->insts[i]);
        EVP_DigestUpdate(md, name, strlen(name) + 1);
        EVP_DigestUpdate(md, plugin_lib_digest(plugin_instance_lib(g->insts[i])),
                         PLUGIN_DIGEST_LEN);
    }
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    EVP_DigestFinal_ex(md, d, &dl);
    EVP_MD_CTX_free(md);
    char h[2 * EVP_MAX_MD_SIZE + 1];
    hex(d, dl, h);
    snprintf(g->digest, sizeof g->digest, "sha256:%.64s", h);
}

json_t *generation_describe(const generation_t *g)
{
    json_t *files = json_array(), *insts = json_array();
    for (size_t i = 0; i < g->cfg->n_files; i++)
        json_array_append_new(files, json_string(g->cfg->files[i]));
    for (size_t i = 0; i < g->n_insts; i++) {
        const plugin_lib_t *lib = plugin_instance_lib(g->insts[i]);
        const evbus_plugin_descriptor_t *d = plugin_lib_descriptor(lib);
        char h[2 * PLUGIN_DIGEST_LEN + 1];
        hex(plugin_lib_digest(lib), PLUGIN_DIGEST_LEN, h);
        json_array_append_new(
            insts, json_pack("{s:s, s:s, s:s, s:s+, s:s}", "name",
                             plugin_instance_name(g->insts[i]), "plugin", d->name, "version",
                             d->version ? d->version : "", "so_digest", "sha256:", h, "isolation",
                             plugin_instance_is_remote(g->insts[i]) ? "process" : "in-process"));
    }
    return json_pack("{s:I, s:s, s:I, s:o, s:o}", "generation", (json_int_t)g->number,
                     "digest", g->digest, "built_ms", (json_int_t)g->built_ms, "files", files,
                     "instances", insts);
}

int generation_build(const char *conf_dir, const generation_t *prev, uint64_t number, bool check,
                     generation_t **out, cfg_errors_t *errs)
{
    size_t errs_before = errs->count;
    generation_t *g = calloc(1, sizeof *g);
    if (!g) {
        cfg_errors_add(errs, NULL, "out of memory");
        return -1;
    }
    atomic_init(&g->refs, 1);
    g->number = number;
    g->cfg = config_load(conf_dir, errs);
    if (!g->cfg)
        goto fail;
    /* before anything uses the settings: restart-class ones stay as they run */
    if (prev)
        g->live_changes = config_reload_merge(prev->cfg, g->cfg, &g->pending_restart);
    if (check_state_dir(g->cfg, errs) != 0)
        goto fail;
    g->schemas = schema_catalog_load(g->cfg->schema.dir, g->cfg->schema.format_assert, errs);
    if (!g->schemas)
        goto fail;
    if (build_instances(g, prev, check ? EVBUS_INIT_CHECK : 0, errs) != 0)
        goto fail;
    /* a checked generation never serves: it takes no metrics slot */
    for (size_t i = 0; !check && i < g->n_handlers; i++) {
        gen_handler_t *h = &g->handlers[i];
        h->metrics_slot = metrics_handler_slot(
            h->kind == GEN_HANDLER_PLUGIN ? plugin_instance_name(h->inst) : h->name);
    }
    g->router = router_new();
    if (!g->router)
        goto fail;
    for (size_t i = 0; i < g->n_handlers; i++) {
        gen_handler_t *h = &g->handlers[i];
        char err[256];
        if (router_add(g->router, h->pattern, h->priority, h->seq, h, err, sizeof err) != 0) {
            cfg_errors_add(errs, NULL, "handler %s: pattern '%s': %s", h->name, h->pattern, err);
            goto fail;
        }
    }
    router_freeze(g->router);
    if (errs->count != errs_before)
        goto fail;
    digest_generation(g);
    g->built_ms = clock_wall_ms();
    *out = g;
    return 0;
fail:
    if (errs->count == errs_before)
        cfg_errors_add(errs, NULL, "building the configuration failed");
    generation_destroy(g);
    return -1;
}
